/* progress.c -- is a running pass getting anywhere; see progress.h. */
#include "fetch/service/progress.h"

#define STEP_MIN_MS	250
#define NO_PROC_FACTOR	5	/* without /proc/PID/io: 5 x the limit */

/* How often to look: a quarter of the limit, not more often than
   STEP_MIN_MS. */
static int64_t
step(const struct progress *p)
{
	int64_t	s = p->limit_ms / 4;

	return s < STEP_MIN_MS ? STEP_MIN_MS : s;
}

void
progress_start(struct progress *p, const struct worker *w, int64_t limit_ms,
    int64_t now)
{
	p->limit_ms = limit_ms;
	p->started_ms = p->progress_ms = now;
	p->stop_ms = 0;
	p->io_known = worker_io(w, &p->io) == 0;
	p->check_ms = now + step(p);
}

enum progress_verdict
progress_check(struct progress *p, const struct worker *w, int64_t grace_ms,
    int64_t now)
{
	uint64_t	io;

	if (now < p->check_ms)
		return PROGRESS_OK;
	p->check_ms = now + step(p);
	if (worker_io(w, &io) == 0) {
		if (!p->io_known || io != p->io)
			p->progress_ms = now;
		p->io = io;
		p->io_known = true;
	} else if (now - p->started_ms < p->limit_ms * NO_PROC_FACTOR) {
		p->progress_ms = now;
	}
	if (p->stop_ms != 0) {
		/* stopping: killed grace_ms after the later of the SIGTERM
		   and its last progress, so a worker that resumed (ending
		   the message in flight) is not killed while it moves */
		int64_t	from = p->progress_ms > p->stop_ms ? p->progress_ms :
		    p->stop_ms;

		if (now - from >= grace_ms)
			return PROGRESS_KILL;
		if (from + grace_ms < p->check_ms)
			p->check_ms = from + grace_ms;
		return PROGRESS_OK;
	}
	return now - p->progress_ms >= p->limit_ms ? PROGRESS_STOP :
	    PROGRESS_OK;
}

void
progress_stopped(struct progress *p, int64_t grace_ms, int64_t now)
{
	p->stop_ms = now;
	p->check_ms = now + (grace_ms < step(p) ? grace_ms : step(p));
}

int64_t
progress_next(const struct progress *p)
{
	return p->check_ms;
}
