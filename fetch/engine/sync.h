/*
 * sync.h -- one account (one folder), one pass: the sync transaction of
 * DESIGN.md.  The order of invariant I1 lives in sync.c only:
 *
 *   retrieve -> deliver -> commit `delivered` -> only then mark for
 *   deletion on the source -> QUIT/EXPUNGE -> record the deletions.
 */
#ifndef MAILHAUL_FETCH_SYNC_H
#define MAILHAUL_FETCH_SYNC_H

#include <stdbool.h>
#include <stdio.h>

#include "config/config.h"
#include "fetch/state/seen.h"
#include "util.h"

enum sync_mode {
	SYNC_NORMAL = 0,
	SYNC_DRY_RUN,		/* list what would be done; touch nothing */
	SYNC_MARK_SEEN,		/* record everything as delivered, fetch nothing */
};

struct sync_opts {
	enum sync_mode	 mode;
	FILE		*progress;	/* a terminal for the progress line, or NULL */
	FILE		*report;	/* where dry-run lists go (stdout) */
	int		 lock_wait_ms;	/* how long to wait for the account lock */
};

struct sync_result {
	struct seen_run_counts	counts;
	struct mh_err		err;	/* MH_ERR_NONE when the pass was clean */
};

/*
 * Runs one pass of acct (every folder for IMAP) with db open.  Returns 0
 * when the pass completed (possibly with per-message permanent failures,
 * which are counted and recorded), -1 when it stopped early; res->err says
 * why and its class maps to the exit status.  Never deletes a message on
 * the source that is not committed as delivered.
 */
int	sync_account(const struct config *cfg, const struct cfg_account *acct,
	    struct seen_db *db, const struct sync_opts *opts,
	    struct sync_result *res);

/*
 * Asks the running pass to stop after the message in flight: it then ends
 * the source session cleanly (deletions of what was delivered take
 * effect) and returns.  Async-signal-safe: for a SIGTERM handler.
 */
void	sync_request_stop(void);

/*
 * Test hook (invariant tests): when MAILHAUL_CRASH_AT_STEP=N is set in the
 * environment, the process _exit(99)s when the Nth step of the pass is
 * reached.  Steps are counted across the whole process.  With
 * MAILHAUL_CRASH_AT_STEP=NAME:K it is the K-th step named NAME ("record:2":
 * the second commit of delivered messages; K defaults to 1).
 */
void	sync_step(const char *what);

#endif
