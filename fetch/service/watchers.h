/*
 * watchers.h -- the service's IDLE watchers: one process per IMAP
 * account with idle = yes (its body is fetch/idle.h's idle_watch), and
 * what the service knows of it from its event lines.
 *
 * A watcher dies with the service (PR_SET_PDEATHSIG SIGTERM).  A watcher
 * that ends is restarted 30 s later, except when none of its folders has
 * IDLE (the account is then polled only).
 */
#ifndef MAILHAUL_FETCH_SERVICE_WATCHERS_H
#define MAILHAUL_FETCH_SERVICE_WATCHERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

/* One account's watcher; embedded, zeroed and fd = -1 to start. */
struct watcher {
	pid_t	 pid;		/* 0: none */
	int	 fd;		/* its event pipe's read end; -1 none */
	char	 buf[1024];	/* a partial event line */
	size_t	 len;
	int	 folders, up, unsupported;	/* from its events */
	bool	 auth_failed;			/* "A": login refused */
	int64_t	 retry_ms;	/* start again at; INT64_MAX never */
};

/* True when acct (NULL: a removed account) should have a watcher. */
bool	watcher_wanted(const struct cfg_account *acct);

/*
 * Forks the watcher of acct (its OAuth2 tokens under statedir);
 * child_init(arg), when not NULL, runs first
 * in the child to close what the parent holds.  On failure it logs and
 * sets w->retry_ms.  acct must stay valid until watcher_stop (the child
 * has its own copy).
 */
void	watcher_start(struct watcher *w, const struct cfg_account *acct,
	    const char *statedir, void (*child_init)(void *arg), void *arg);

/* Ends the watcher (SIGTERM) and forgets what it said. */
void	watcher_stop(struct watcher *w);

/*
 * Reads and handles what the watcher wrote (name for the logs).  Returns
 * the bytes read (0 when there was nothing or the pipe closed); *new_mail
 * is set when an event said new mail arrived.
 */
ssize_t	watcher_read(struct watcher *w, const char *name, bool *new_mail);

/* After waitpid() returned w->pid with status: reads its last events,
   logs, and sets when it restarts.  *new_mail as watcher_read. */
void	watcher_reaped(struct watcher *w, const char *name, int status,
	    bool *new_mail);

/* The IDLE state in one word for `mailhaul status`: off | connecting |
   connected | partly connected | down | unsupported. */
const char *watcher_state(const struct watcher *w,
	    const struct cfg_account *acct);

#endif
