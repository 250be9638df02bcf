/*
 * spool.h -- temporary files that hold one message between the source
 * and the target.  Unlinked from the start (O_TMPFILE, or mkstemp +
 * unlink), so a crash or kill -9 leaves nothing behind.
 */
#ifndef MAILHAUL_FETCH_SPOOL_H
#define MAILHAUL_FETCH_SPOOL_H

#include "util.h"

/*
 * Opens a new empty read-write file in dir (created 0700 if missing).
 * Returns the fd (close-on-exec; the caller closes it) or -1 with
 * MH_ERR_LOCAL.
 */
int	spool_open(const char *dir, struct mh_err *err);

/* Truncates fd to empty and rewinds it, to reuse it. */
int	spool_reset(int fd, struct mh_err *err);

#endif
