/*
 * servercap.c -- the per-server cap on passes; see servercap.h.
 */
#include <strings.h>

#include "fetch/service/servercap.h"

bool
server_same(const struct cfg_account *a, const struct cfg_account *b)
{
	return a->ep.host != NULL && b->ep.host != NULL &&
	    strcasecmp(a->ep.host, b->ep.host) == 0;
}

bool
server_has_room(const struct cfg_account *acct,
    const struct cfg_account *const *running, size_t n, unsigned cap)
{
	unsigned same = 0;

	if (cap == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (running[i] != NULL && server_same(acct, running[i]))
			same++;
	return same < cap;
}
