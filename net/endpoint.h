/*
 * endpoint.h -- a configured endpoint (config's struct cfg_endpoint, the
 * same for accounts and targets) in the terms net/ speaks: the one place
 * that maps it into net_params, a credential and a SASL auth choice.
 */
#ifndef MAILHAUL_NET_ENDPOINT_H
#define MAILHAUL_NET_ENDPOINT_H

#include "config/config.h"
#include "net/net.h"
#include "net/sasl.h"

/*
 * Fills p from e: host (or the unix socket), port, tls, ca_file,
 * fingerprint; timeout_ms (0: net's defaults) for connect and every
 * read/write.  p borrows e's strings.
 */
void	endpoint_net_params(const struct cfg_endpoint *e, int timeout_ms,
	    struct net_params *p);

/*
 * A credential for e's user and secret (both borrowed): an OAuth2 token
 * when e->auth is xoauth2 or oauthbearer, or e has oauth2 = NAME and
 * auth is not password; else a password.  net/login.h makes the secret.
 */
void	endpoint_cred(const struct cfg_endpoint *e, const char *secret,
	    struct sasl_cred *c);

/*
 * When an endpoint of cfg's accounts or targets uses TLS with the
 * system's CAs (no ca_file; with a fingerprint too, whose pin replaces
 * the chain check), loads those CAs once (net_trust_load) and points
 * every such endpoint at them, so that its connections, and those of
 * processes forked after this, do not load them again.  Returns the
 * trust, which the caller frees with net_trust_free after cfg (NULL:
 * none was needed, or it could not be loaded: each connection then
 * loads the CAs itself and reports any failure).
 */
struct net_trust *endpoint_trust_attach(struct config *cfg);

/* e->auth as the SASL module's choice. */
enum sasl_auth endpoint_auth(const struct cfg_endpoint *e);

#endif
