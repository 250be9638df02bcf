/*
 * servercap.h -- how many passes may talk to one server at once.
 *
 * `concurrency` bounds the passes a `sync` or the service runs at once;
 * `concurrency_per_server` bounds those whose accounts name the same
 * server (the account's host, compared without regard to case), so that
 * twenty accounts at one provider do not open twenty connections to it
 * at once (providers limit connections per address and per user:
 * Dovecot's default is 10 per user and address, Gmail's 15 per user).
 * A pass holds one connection to its server (one login serves all its
 * folders); the service's IDLE watchers are not counted.
 */
#ifndef MAILHAUL_FETCH_SERVICE_SERVERCAP_H
#define MAILHAUL_FETCH_SERVICE_SERVERCAP_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* Whether a and b name the same server (both hosts set and equal without
   regard to case). */
bool	server_same(const struct cfg_account *a, const struct cfg_account *b);

/*
 * Whether a pass of acct may start while the passes of running[0..n)
 * run: fewer than cap of them are on acct's server.  cap 0 is no limit.
 * NULL entries in running are skipped.
 */
bool	server_has_room(const struct cfg_account *acct,
	    const struct cfg_account *const *running, size_t n, unsigned cap);

#endif
