/*
 * lock.h -- one process per account at a time (invariant I5): an flock
 * on a file in the state directory named after the source's id.
 */
#ifndef MAILHAUL_FETCH_LOCK_H
#define MAILHAUL_FETCH_LOCK_H

#include <stdint.h>

#include "util.h"

/*
 * Takes the lock of key (a source id) under dir/locks/, waiting up to
 * wait_ms.  Returns the fd that holds it, or -1: MH_ERR_BUSY when another
 * process holds it past the wait (the text names its pid if known),
 * MH_ERR_LOCAL on I/O errors.
 */
int	lock_take(const char *dir, const char *key, int wait_ms,
	    struct mh_err *err);

/* Releases; -1 is a no-op. */
void	lock_release(int fd);

#endif
