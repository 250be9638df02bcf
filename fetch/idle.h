/*
 * idle.h -- IMAP IDLE watchers for `mailhaul run` (our own IDLE on the
 * stream: libetpan 1.9.4's mailimap_idle loses an EXISTS sent before the
 * "+", notes/libetpan.md Q4).
 *
 * idle_watch() is the body of one watcher process per account, forked by
 * the scheduler: it resolves the account's folders (source_folders) and
 * forks one child per folder, INBOX first and at most idle_connections of
 * them (idle_pick_folders), that keeps its own connection in IDLE
 * (EXAMINE, then IDLE restarted every 28 minutes), reconnecting with
 * backoff (1 s doubling to 5 min) when the connection drops.  An account
 * with oauth2 = NAME logs in with an access token (net/login.h, tokens
 * under statedir) and logs in again on a new connection before that
 * token expires, so that a connection outlives its tokens.  Children
 * die with their parent (PR_SET_PDEATHSIG).  Events go to wfd as lines
 * (each write is one line, shorter than PIPE_BUF, so lines of several
 * children never mix):
 *
 *   "F <n>"        the folders were resolved: n IDLE connections follow
 *   "C <folder>"   a folder's connection is up and idling
 *   "L <folder>"   a folder's connection was lost (reconnecting)
 *   "N <folder>"   new mail in folder (EXISTS or RECENT > 0)
 *   "U <folder>"   the server has no IDLE: that folder is polled only
 *   "A <folder>"   the login was refused (retried slowly)
 *
 * <folder> is the server's (modified UTF-7) name.  Nothing secret is
 * written or logged.  Environment (tests): MAILHAUL_IDLE_RESTART
 * (seconds) replaces the 28 minutes.
 */
#ifndef MAILHAUL_FETCH_IDLE_H
#define MAILHAUL_FETCH_IDLE_H

#include "config/config.h"

/* Exit status of a watcher whose folders all lack IDLE. */
#define IDLE_EXIT_UNSUPPORTED	3

/*
 * The folders an account watches with IDLE: moves INBOX (any case) to the
 * front of the NULL-terminated folders, the others keeping their order,
 * and returns how many of them to watch: all, but at most max (the
 * account's idle_connections).  The rest are polled.
 */
size_t	idle_pick_folders(char **folders, size_t max);

/*
 * Runs in the watcher process; never returns.  The caller has set the
 * signal dispositions (SIGTERM ends it).  acct must stay valid (it is,
 * in the forked copy of the config).
 */
void	idle_watch(const struct cfg_account *acct, const char *statedir,
	    int wfd) __attribute__((noreturn));

#endif
