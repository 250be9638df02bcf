/* endpoint.c -- see endpoint.h. */
#include <string.h>

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
	p->timeout_ms = timeout_ms;
	p->connect_timeout_ms = timeout_ms;
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
