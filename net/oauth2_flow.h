/*
 * oauth2_flow.h -- `mailhaul auth NAME`: obtaining the first tokens.
 *
 * The authorization-code flow (RFC 6749 + PKCE S256, RFC 7636) with a
 * loopback redirect (RFC 8252): a listener on http://127.0.0.1:PORT/
 * that takes one request carrying our state, answers a small page and
 * closes; or the device flow (RFC 8628).  Both store the tokens with
 * oauth2_store_save() and print what was obtained (scope, lifetime),
 * never a token.  out gets what the user must see (the URL on a line
 * of its own, the device code).
 */
#ifndef MAILHAUL_NET_OAUTH2_FLOW_H
#define MAILHAUL_NET_OAUTH2_FLOW_H

#include <stdio.h>

#include "config/config.h"
#include "util.h"

#define OAUTH2_FLOW_DEVICE	0x1	/* RFC 8628 instead of a browser */
#define OAUTH2_FLOW_NO_BROWSER	0x2	/* never run xdg-open */

/*
 * Runs the flow for o and stores the tokens under statedir.  timeout_s
 * bounds the wait for the user (0: 600 s).  Errors: MH_ERR_AUTH (the
 * user or provider refused; the code expired), MH_ERR_TEMP (network,
 * timeout), MH_ERR_PROTO, MH_ERR_LOCAL (token_command sections, store).
 */
int	oauth2_flow_run(const struct cfg_oauth2 *o, const char *statedir,
	    int flags, int timeout_s, FILE *out, struct mh_err *err);

#endif
