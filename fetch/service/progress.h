/*
 * progress.h -- whether a running pass is getting anywhere, for the
 * service's scheduler (issue #16: a fixed deadline killed slow passes
 * that were making progress, and blocked for good an account whose one
 * big message took longer than the deadline to download).
 *
 * Progress is the bytes the worker reads and writes (worker_io: network,
 * spool, state, target).  A worker whose bytes have not moved for the
 * limit is asked to stop (SIGTERM: it ends its pass at the next step
 * boundary, after the message in flight, so that a message the target
 * accepted is committed before the end); one that has not ended
 * grace_ms later, and whose bytes have not moved for grace_ms since, is
 * killed (SIGKILL).  Where the kernel does not say
 * (no /proc/PID/io), a pass counts as progressing for 5 x the limit.
 */
#ifndef MAILHAUL_FETCH_SERVICE_PROGRESS_H
#define MAILHAUL_FETCH_SERVICE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "fetch/service/workers.h"

struct progress {
	int64_t		limit_ms;	/* no progress for this long: stop */
	int64_t		started_ms;
	int64_t		progress_ms;	/* when its bytes last moved */
	int64_t		check_ms;	/* the next look */
	int64_t		stop_ms;	/* SIGTERM sent then; 0 not yet */
	uint64_t	io;
	bool		io_known;
};

enum progress_verdict {
	PROGRESS_OK = 0,
	PROGRESS_STOP,		/* no progress for the limit: SIGTERM it */
	PROGRESS_KILL,		/* SIGTERMed, no progress for grace_ms since */
};

/* A pass started in w just now (now); limit_ms > 0. */
void	progress_start(struct progress *p, const struct worker *w,
	    int64_t limit_ms, int64_t now);

/*
 * Looks at w when its time has come (else PROGRESS_OK at once) and says
 * what to do; the caller does it (worker_stop, worker_kill) and calls
 * progress_stopped() after a PROGRESS_STOP.
 */
enum progress_verdict progress_check(struct progress *p,
	    const struct worker *w, int64_t grace_ms, int64_t now);
void	progress_stopped(struct progress *p, int64_t grace_ms, int64_t now);

/* When progress_check wants to look next (monotonic ms). */
int64_t	progress_next(const struct progress *p);

#endif
