/*
 * pipeline.h -- overlaps fetching with delivery: a fetch thread retrieves
 * the planned messages, in order, into spool files while the caller
 * (the delivery side) takes them one by one.  The pipeline is bounded in
 * bytes, not messages: the fetch side waits while the messages fetched
 * and not yet released hold more than PIPELINE_MAX_BYTES (announced
 * size) or PIPELINE_MAX_SLOTS spool files, so the slower side sets the
 * pace.  A message bigger than the budget still goes through, alone.
 * The bytes are in spool files (a small message's in memory, util.h, a
 * bigger one's on disk), never in the process's heap.  Each message is
 * also scanned on the fetch thread (message_scan: its digest and header
 * fields), so that reading it once more is not the delivery side's.
 *
 * The fetch thread is the only user of the source (libetpan connections
 * are used by one thread only) from pipeline_start to pipeline_stop: the
 * caller must not touch the source in between (deletions, \Seen, commit
 * wait for pipeline_stop).  The fetch function runs on the fetch thread
 * and must touch nothing else the caller uses (no state DB).
 *
 * Invariant I1 is not the pipeline's business: it only retrieves; what
 * leaves the source is still decided by the caller, after the pipeline
 * stopped.
 */
#ifndef MAILHAUL_FETCH_ENGINE_PIPELINE_H
#define MAILHAUL_FETCH_ENGINE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "forward/message.h"
#include "util.h"

#define PIPELINE_MAX_BYTES	(8u * 1024 * 1024)
#define PIPELINE_MAX_SLOTS	64

struct pipeline;	/* opaque */

/*
 * Retrieves planned message k (0-based, in plan order) into fd (empty,
 * at offset 0).  0, or -1 with err: an error of scope MH_SCOPE_MESSAGE
 * and class MH_ERR_PERM names message k only and the pipeline goes on
 * with k + 1; after any other error the fetch thread stops (the session
 * is unusable).  1: the plan ends before k (nothing fetched, nothing
 * handed out; the fetch thread ends as if the plan were done).
 */
typedef int (*pipeline_fetch_fn)(void *ctx, size_t k, int fd,
    struct mh_err *err);

/* One fetched message, as pipeline_next hands it out. */
struct pipeline_item {
	size_t		k;	/* its index in the plan */
	int		fd;	/* the spool file (owned by the pipeline,
				   valid until pipeline_release), at offset
				   0; -1 when rc is -1 */
	int		rc;	/* what the fetch function returned */
	struct mh_err	err;	/* when rc is -1 */
	struct message_info info; /* rc 0: message_scan of fd, made on
				   the fetch thread (the digest of every
				   byte is off the delivery side's path) */
};

/*
 * Starts and joins an idle thread, twice: the dynamic linker's lazy
 * bindings that a process's first pthread_create resolves (a walk over
 * every loaded library's symbols), on a new stack and on a cached one,
 * are then resolved in the caller, a parent about to fork workers, not
 * again in each worker's first pipeline (which takes the cached stack).
 */
void	pipeline_warm(void);

/*
 * Starts the fetch thread over n planned messages whose announced sizes
 * are size[k] (borrowed until pipeline_stop), with spool files in
 * spool_dir (copied).  fetch(ctx, k, ...) is called for k = 0, 1, ...
 * on the fetch thread.  NULL with err (MH_ERR_LOCAL) when the thread
 * cannot be started; then nothing was fetched.
 */
struct pipeline *pipeline_start(const uint64_t *size, size_t n,
	    const char *spool_dir, pipeline_fetch_fn fetch, void *ctx,
	    struct mh_err *err);

/*
 * Waits for the next message in plan order.  1 with *item filled (give
 * it back with pipeline_release before asking for the next one); 0 when
 * every message was handed out, or the fetch thread stopped after a
 * failure that was handed out.  A spool file that cannot be made, or
 * read back for message_scan, is a failure of the fetch side (rc -1,
 * MH_ERR_LOCAL: the fetch thread stops).
 */
int	pipeline_next(struct pipeline *pl, struct pipeline_item *item);

/*
 * pipeline_next without waiting: 1 with *item when the next message is
 * fetched already, else 0 (not yet, or none left).  Several items may
 * be held at once (a delivery batch); the fetch side then waits for
 * their release when the bound is reached, so the caller must not wait
 * for more while holding items (use this, not pipeline_next).
 */
int	pipeline_try_next(struct pipeline *pl, struct pipeline_item *item);

/*
 * Empties the item's spool file and gives it back to the fetch side
 * (nothing may read it after this): here, on the caller's thread and
 * outside the lock, so that freeing a message's pages is off the fetch
 * thread's path.  A file that cannot be emptied is closed; the fetch
 * side makes a new one.  The fetch function is always given an empty
 * file at offset 0.
 */
void	pipeline_release(struct pipeline *pl, struct pipeline_item *item);

/*
 * How many messages were handed out so far (whatever their rc: the first
 * that many of the plan); on the caller's thread, before pipeline_stop.
 * NULL: 0.
 */
size_t	pipeline_handed(const struct pipeline *pl);

/*
 * Stops the fetch thread (after the retrieval in progress) and waits for
 * it, closes the spool files and frees.  Returns how many messages were
 * retrieved but never handed out (fetched ahead in vain).  NULL: 0.
 */
size_t	pipeline_stop(struct pipeline *pl);

#endif
