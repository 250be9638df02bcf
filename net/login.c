/* login.c -- the credential of an endpoint; see login.h. */
#include <string.h>

#include "log.h"
#include "net/endpoint.h"
#include "net/login.h"
#include "net/oauth2.h"

/* Whether e logs in with an OAuth2 access token from [oauth2:NAME]. */
static bool
uses_oauth2(const struct cfg_endpoint *e)
{
	return e->oauth2 != NULL && e->auth != CFG_AUTH_PASSWORD;
}

/* A token for l (force: a fresh one), with its expiry. */
static int
get_token(struct login *l, bool force, struct mh_err *err)
{
	const struct cfg_oauth2	*o = l->ep->oauth2;
	struct oauth2_tokens	 t;
	struct mh_err		 lerr;
	char			*tok;

	if (oauth2_token(o, l->statedir, force, &tok, err) == -1)
		return -1;
	secret_free(l->secret);
	l->secret = tok;
	l->expires_at = 0;
	if (o->token_command == NULL) {
		mh_err_clear(&lerr);
		if (oauth2_store_load(l->statedir, o->name, &t, &lerr) == 0)
			l->expires_at = t.expires_at;
		oauth2_tokens_free(&t);
	}
	return 0;
}

int
login_get(const struct cfg_endpoint *e, const char *statedir,
    const char *what, struct login *l, struct mh_err *err)
{
	memset(l, 0, sizeof *l);
	l->ep = e;
	l->statedir = statedir;
	mh_err_clear(err);
	if (e->user == NULL)
		return 0;
	if (uses_oauth2(e)) {
		l->oauth2 = true;
		if (get_token(l, false, err) == -1)
			return -1;
	} else if ((l->secret = cfg_secret_get(&e->secret, what,
	    err)) == NULL) {
		if (err->cls == MH_ERR_NONE)
			mh_err_set(err, MH_ERR_AUTH, "no password configured");
		return -1;
	}
	endpoint_cred(e, l->secret, &l->cred);
	return 0;
}

bool
login_retry(struct login *l, struct mh_err *err)
{
	if (!l->oauth2 || l->refreshed || l->ep->oauth2->token_command ||
	    err->cls != MH_ERR_AUTH || err->reply[0] == '\0')
		return false;
	l->refreshed = true;
	log_info("%s: the login with the cached access token was refused; "
	    "refreshing it and trying once more", l->ep->oauth2->name);
	if (get_token(l, true, err) == -1)
		return false;
	endpoint_cred(l->ep, l->secret, &l->cred);
	mh_err_clear(err);
	return true;
}

void
login_free(struct login *l)
{
	secret_free(l->secret);
	l->secret = NULL;
	l->cred.secret = NULL;
}
