/*
 * scheduler.h -- `mailhaul run`: the background service.
 *
 * One process per state file (an flock on <statedir>/service.lock) that
 * polls every enabled account every `interval` (per account, else
 * [general]'s, +-10% jitter, first pass at start), runs up to
 * `concurrency` passes at once, each in its own fork()ed worker (its own
 * seen_open; the parent holds no SQLite handle across a fork).  A pass
 * may take as long as it needs while it makes progress (progress.h: the
 * bytes its worker reads and writes); one that made none for twice the
 * account's timeout (at least 30 s) is asked to stop (SIGTERM: it ends
 * after the message in flight) and killed 5 s later if still there.
 * Its open run records are then closed as killed (or crashed), so that
 * `status` shows the pass.
 * Failures back off per account (interval x 2^n, capped at max(1 h,
 * interval)), except a killed pass that had delivered messages; a
 * refused login is logged once and retried at the cap.
 * The state file must stay the one the service started with: when it is
 * removed or replaced the service stops with EX_IOERR instead of letting
 * a pass create an empty one (which would deliver again every message
 * kept on the servers); a missing state file is created only at start,
 * with a notice.
 * IMAP accounts with idle = yes get watcher processes (fetch/idle.h)
 * whose new-mail events trigger a pass about 0.25 s later.
 *
 * Signals: SIGTERM/SIGINT stop scheduling; running workers (which ignore
 * SIGTERM and SIGINT) finish their pass within 30 s or are SIGKILLed (a
 * second SIGTERM/SIGINT kills them at once; invariant I1 holds either
 * way).  SIGHUP reloads the config: a config that does not load is
 * logged with its errors and the old one kept.  SIGUSR1 polls every
 * account now.
 *
 * The service writes <statedir>/service.json (status.h) after every
 * change: pid, start time, and per account the next pass, backoff,
 * failures, IDLE state and the last result.  After a pass that delivered
 * mail it runs [general] notify_command (notify.h).
 *
 * The rooms: scheduler.c the loop, the account table, timers and backoff;
 * workers.c the forked passes (shared with `mailhaul sync`); watchers.c
 * the IDLE watchers; status.c service.json; notify.c notify_command.
 *
 * Hidden test knobs (environment): MAILHAUL_WORKER_DEADLINE (seconds
 * without progress), MAILHAUL_KILL_GRACE (SIGTERM to SIGKILL) and
 * MAILHAUL_STOP_GRACE (seconds) shorten the deadlines;
 * MAILHAUL_TEST_WORKER_ABORT=ACCOUNT makes that account's worker abort()
 * (workers.h).
 */
#ifndef MAILHAUL_FETCH_SCHEDULER_H
#define MAILHAUL_FETCH_SCHEDULER_H

#include "config/config.h"

/* Exit status of a second `mailhaul run` on the same state (EX_TEMPFAIL). */
#define SCHED_EXIT_RUNNING	75

/*
 * Runs the service in the foreground until SIGTERM/SIGINT.  *cfgp is the
 * loaded config; on SIGHUP it is replaced by the reloaded one (the old
 * one freed), so the caller frees *cfgp afterwards.  verbosity is the
 * command line's (-1 -q, 0 none, 1 -v): it wins over log_level on
 * reloads too.  Returns a sysexits(3) status: 0 after a clean stop,
 * SCHED_EXIT_RUNNING when another service holds the state, EX_IOERR when
 * the state directory or database cannot be used or the state file was
 * removed or replaced while it ran, EX_OSERR.
 */
int	scheduler_run(struct config **cfgp, int verbosity);

#endif
