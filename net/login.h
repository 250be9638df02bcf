/*
 * login.h -- the credential an account or a target logs in with, made in
 * one place from its configured endpoint (config's struct cfg_endpoint):
 * the password source, or -- when the endpoint says oauth2 = NAME and
 * not auth = password -- an OAuth2 access token from oauth2_token(), of
 * kind SASL_SECRET_OAUTH2, so that auth = auto picks OAUTHBEARER, then
 * XOAUTH2 (sasl_choose).
 *
 * A login the server refused with a cached access token is tried once
 * more with a freshly refreshed one (a token can be revoked before it
 * expires): login_retry() says whether, and gets it.
 *
 * The secret never reaches a log or an error text; it is wiped when
 * freed.  Whoever uses tokens calls http_init() once in the process
 * (mailhaul.c does, before any command).
 */
#ifndef MAILHAUL_NET_LOGIN_H
#define MAILHAUL_NET_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "net/sasl.h"
#include "util.h"

struct login {
	struct sasl_cred cred;		/* borrows secret and e's user */
	char		*secret;	/* owned, wiped by login_free; NULL
					   for an endpoint without user */
	const struct cfg_endpoint *ep;	/* borrowed */
	const char	*statedir;	/* borrowed */
	bool		 oauth2;	/* secret is an access token */
	bool		 refreshed;	/* force-refreshed already */
	int64_t		 expires_at;	/* the token's expiry (unix time);
					   0: unknown or a password */
};

/*
 * Fills l for e, whose tokens (if any) live under statedir (both must
 * outlive l); what names the section in errors ("account NAME").  A
 * target without user gets 0 and no secret.  Returns 0, or -1 with err:
 * the password source's errors, or oauth2_token()'s (MH_ERR_AUTH
 * "NAME: the authorization was revoked or has expired; run 'mailhaul
 * auth NAME'" or "no OAuth2 tokens yet", MH_ERR_TEMP for the network).
 */
int	login_get(const struct cfg_endpoint *e, const char *statedir,
	    const char *what, struct login *l, struct mh_err *err);

/*
 * After a login with l failed with err: when the server refused it
 * (MH_ERR_AUTH with its reply) and l holds a built-in OAuth2 token not
 * yet force-refreshed, refreshes it and returns true (err cleared: log
 * in again).  Otherwise returns false with err as it was, or with the
 * refresh's error in err when that failed.
 */
bool	login_retry(struct login *l, struct mh_err *err);

/* Wipes and frees l's secret; l may be all zero. */
void	login_free(struct login *l);

#endif
