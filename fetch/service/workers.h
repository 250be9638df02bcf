/*
 * workers.h -- the pool of forked passes, for `mailhaul run` and
 * `mailhaul sync`.
 *
 * Each pass of an account runs in its own fork()ed worker: it opens its
 * own state database (the parent holds no SQLite handle while workers
 * exist), runs sync_account() and writes one struct worker_report to a
 * pipe before _exit.  A worker that dies (a crash parsing a server's
 * reply, abort(), the crash-test hook) takes only its own account's pass
 * with it; the parent reports it as crashed.
 *
 * The service's workers end the pass after the message in flight on
 * SIGTERM and ignore SIGINT (the service decides when to kill); the
 * command line's die with their parent (PR_SET_PDEATHSIG SIGKILL), so a
 * `mailhaul sync` killed or interrupted takes its passes with it, as one
 * process did.
 *
 * Hidden test knob (environment): MAILHAUL_TEST_WORKER_ABORT=ACCOUNT
 * makes that account's worker abort() before its pass.
 */
#ifndef MAILHAUL_FETCH_SERVICE_WORKERS_H
#define MAILHAUL_FETCH_SERVICE_WORKERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config/config.h"
#include "fetch/state/seen.h"
#include "util.h"

/* A worker's exit status when the crash-test hook stopped it
   (sync_step's MAILHAUL_CRASH_AT_STEP). */
#define WORKER_EXIT_CRASH_HOOK	99

/* What a worker says of its pass. */
struct worker_report {
	int			rc;		/* sync_account()'s 0 / -1 */
	enum mh_err_class	cls;
	struct seen_run_counts	counts;
	int64_t			elapsed_ms;	/* the pass, in the worker */
	char			msg[1200];	/* mh_err_str() of the error */
};

/* How a worker ended. */
enum worker_end {
	WORKER_DONE,		/* it wrote its report */
	WORKER_KILLED,		/* worker_kill() killed it */
	WORKER_CRASHED,		/* a signal killed it */
	WORKER_NO_REPORT,	/* it exited without a report */
};

/*
 * Does in the calling parent what every worker would otherwise do on its
 * own after fork() (OpenSSL's digest tables, SQLite's initialization,
 * the lazy bindings of the first thread): once before the first
 * worker_start; calling it again costs little.
 */
void	worker_prewarm(void);

/* One running worker; owned by the caller, filled by worker_start. */
struct worker {
	pid_t	pid;		/* 0: none */
	int	fd;		/* the report pipe's read end; -1 none */
	bool	killed;		/* worker_kill() was called */
	bool	stopped;	/* worker_stop() was called */
};

struct worker_opts {
	bool	 service;	/* the service's worker (see above) */
	int	 lock_wait_ms;	/* how long the pass waits for the account
				   lock; 0 skips a busy account */
	FILE	*progress;	/* the pass's progress line, or NULL */
	/* The state file's identity when the caller knows it (st_ino 0:
	   unknown): a worker that finds another file there, or none,
	   fails its pass (MH_ERR_LOCAL) instead of creating a new one. */
	dev_t	 state_dev;
	ino_t	 state_ino;
	/* In the child, before the pass: closes what the parent holds
	   (its pipes, locks); may be NULL. */
	void	(*child_init)(void *arg);
	void	*arg;
};

/*
 * Forks a worker for one pass of acct; w is filled.  cfg and acct must
 * stay valid in the parent only until this returns (the child has its
 * copy).  Returns 0, or -1 with err set (pipe or fork failed; no worker).
 */
int	worker_start(struct worker *w, const struct config *cfg,
	    const struct cfg_account *acct, const struct worker_opts *o,
	    struct mh_err *err);

/*
 * After waitpid() returned w->pid with status: reads the report into
 * *rep (zeroed when there is none), closes the pipe, clears w and says
 * how the worker ended.
 */
enum worker_end	worker_collect(struct worker *w, int status,
	    struct worker_report *rep);

/* SIGKILLs a running worker; worker_collect then says WORKER_KILLED. */
void	worker_kill(struct worker *w);

/* SIGTERMs a running worker: a service worker ends its pass after the
   message in flight and reports (a blocked one does not: SIGKILL it
   after a grace time).  A signal that ends it counts as WORKER_KILLED. */
void	worker_stop(struct worker *w);

/*
 * The bytes the worker has read and written so far (rchar + wchar of
 * /proc/PID/io: network, spool, state, target): what moves while a pass
 * makes progress.  0, or -1 when the kernel does not say.
 */
int	worker_io(const struct worker *w, uint64_t *bytes);

/*
 * After a pass of account name ended without a report (killed, crashed):
 * closes the run records it left open as result ("killed" | "crashed"),
 * with error, in every source of the account that no other process is
 * syncing (its lock is free: seen_run_close_open), so that `status`
 * shows the pass.  Returns how many messages those runs had delivered.
 * Opens the state database only while it is the file of o's identity
 * (never creates one) and closes it before returning; failures are
 * logged.
 */
unsigned worker_runs_lost(const struct config *cfg, const char *name,
	    const struct worker_opts *o, const char *result,
	    const char *error);

/*
 * Resource limits of a worker, set in the child before its pass so that
 * a hostile server cannot take the machine: no core files (they would
 * hold secrets), RLIMIT_DATA WORKER_DATA_LIMIT (the pass spools
 * messages to disk; its memory stays small; the soft limit only: the
 * programs a worker runs get theirs back, child_limits_restore), and --
 * except for MDA
 * targets, whose programs write mailboxes of any size --
 * RLIMIT_FSIZE WORKER_FSIZE_LIMIT with SIGXFSZ ignored (a bigger file
 * is a write error, not a dead worker).  Limits only go down.  Builds
 * with AddressSanitizer keep the memory limit off (its shadow memory
 * is terabytes of address space).
 */
#define WORKER_DATA_LIMIT	(UINT64_C(1) << 30)	/* 1 GiB */
#define WORKER_FSIZE_LIMIT	(UINT64_C(4) << 30)	/* 4 GiB */
void	worker_limits(const struct cfg_account *acct);

/*
 * For `mailhaul sync`: runs one pass of each of accts[0..n) in its own
 * worker, up to concurrency at once and up to
 * cfg->general.concurrency_per_server on one server (servercap.h: an
 * account whose server is full waits, the next ones in accts may start
 * before it), and calls done(i, ...) for every
 * account in the order of accts, each as soon as it and those before it
 * have ended (status is the waitpid status).  Returns 0, or -1 with err
 * set when a worker could not be started (done was called for those that
 * ran; the rest were not started).
 */
int	worker_pool_run(const struct config *cfg,
	    const struct cfg_account *const *accts, size_t n,
	    unsigned concurrency, const struct worker_opts *o,
	    void (*done)(size_t i, enum worker_end end,
	    const struct worker_report *rep, int status, void *arg),
	    void *arg, struct mh_err *err);

#endif
