/* endpoint.c -- see endpoint.h. */
#include <stdbool.h>
#include <string.h>

#include "log.h"
#include "net/endpoint.h"

void
endpoint_net_params(const struct cfg_endpoint *e, int timeout_ms,
    struct net_params *p)
{
	memset(p, 0, sizeof *p);
	p->host = e->socket != NULL ? NULL : e->host;
	p->port = e->port;
	p->unix_path = e->socket;
	p->tls = e->tls == CFG_TLS_IMPLICIT ? NET_TLS_IMPLICIT :
	    e->tls == CFG_TLS_STARTTLS ? NET_TLS_STARTTLS : NET_TLS_NONE;
	p->ca_file = e->ca_file;
	p->fingerprint = e->fingerprint;
	p->trust = e->trust;
	p->timeout_ms = timeout_ms;
	p->connect_timeout_ms = timeout_ms;
}

/* Whether e's connections verify with the system's CAs. */
static bool
uses_system_cas(const struct cfg_endpoint *e)
{
	return e->tls != CFG_TLS_NONE && e->ca_file == NULL &&
	    (e->host != NULL || e->socket != NULL);
}

struct net_trust *
endpoint_trust_attach(struct config *cfg)
{
	struct net_trust	*t = NULL;
	struct mh_err		 err;
	size_t			 i;
	bool			 need = false;

	for (i = 0; i < cfg->naccounts; i++)
		need |= uses_system_cas(&cfg->accounts[i].ep);
	for (i = 0; i < cfg->ntargets; i++)
		need |= uses_system_cas(&cfg->targets[i].ep);
	if (!need)
		return NULL;
	mh_err_clear(&err);
	if ((t = net_trust_load(&err)) == NULL) {
		log_debug("%s; each connection loads them", err.msg);
		return NULL;
	}
	for (i = 0; i < cfg->naccounts; i++)
		if (uses_system_cas(&cfg->accounts[i].ep))
			cfg->accounts[i].ep.trust = t;
	for (i = 0; i < cfg->ntargets; i++)
		if (uses_system_cas(&cfg->targets[i].ep))
			cfg->targets[i].ep.trust = t;
	return t;
}

enum sasl_auth
endpoint_auth(const struct cfg_endpoint *e)
{
	switch (e->auth) {
	case CFG_AUTH_AUTO:		return SASL_AUTH_AUTO;
	case CFG_AUTH_PASSWORD:		return SASL_AUTH_PASSWORD;
	case CFG_AUTH_XOAUTH2:		return SASL_AUTH_XOAUTH2;
	case CFG_AUTH_OAUTHBEARER:	return SASL_AUTH_OAUTHBEARER;
	}
	return SASL_AUTH_AUTO;
}

void
endpoint_cred(const struct cfg_endpoint *e, const char *secret,
    struct sasl_cred *c)
{
	c->user = e->user;
	c->secret = secret;
	c->kind = e->auth == CFG_AUTH_XOAUTH2 ||
	    e->auth == CFG_AUTH_OAUTHBEARER ||
	    (e->oauth2 != NULL && e->auth != CFG_AUTH_PASSWORD) ?
	    SASL_SECRET_OAUTH2 : SASL_SECRET_PASSWORD;
}
