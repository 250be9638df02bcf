/*
 * oauth2.h -- OAuth2 access tokens for the accounts and targets that say
 * "oauth2 = NAME" (config.h, struct cfg_oauth2).
 *
 * The token store: one file per [oauth2:NAME] section,
 * STATEDIR/oauth2/NAME.json, mode 0600 in a 0700 directory, holding the
 * refresh token, the cached access token and its expiry.  Every write is
 * tmp + fsync + rename + fsync(dir): a refresh token the provider rotated
 * is durable before the new access token is used.  A lock file beside it
 * (NAME.lock, flock) keeps two processes from refreshing at once.
 * Tokens never reach a log, an error text or the state database.
 *
 * Hidden test knob (environment): MAILHAUL_TEST_KILL_AFTER_TOKEN_STORE
 * makes the process kill itself (SIGKILL) right after a refresh stored
 * its tokens, to show that a rotated refresh token survives.
 */
#ifndef MAILHAUL_NET_OAUTH2_H
#define MAILHAUL_NET_OAUTH2_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "config/config.h"
#include "net/http.h"
#include "util.h"

/* An access token is used until this many seconds before it expires. */
#define OAUTH2_EXPIRY_MARGIN	60

struct oauth2_tokens {
	char	*refresh_token;		/* owned, secret; may be NULL */
	char	*access_token;		/* owned, secret; may be NULL */
	int64_t	 expires_at;		/* unix time; 0: unknown */
	char	*scope;			/* granted scope, or NULL */
	bool	 revoked;		/* the provider said invalid_grant:
					   wait for `mailhaul auth` */
};

/*
 * An access token for o.  With token_command: runs it (as a password
 * command: /bin/sh -c, first line, 30 s) every time.  Otherwise: the
 * cached access token if it is valid for more than
 * OAUTH2_EXPIRY_MARGIN seconds and !force_refresh, else a refresh-token
 * grant (scope always sent: Microsoft needs it); a rotated refresh token
 * is stored before returning.  *token_out is a new string, freed by the
 * caller with secret_free().
 * Errors: MH_ERR_AUTH when there is no stored token or the provider
 * answers invalid_grant ("NAME: the authorization was revoked or has
 * expired; run 'mailhaul auth NAME'"); that answer is remembered in the
 * store (revoked), and later calls give the same error without asking
 * the provider again, unless force_refresh, until `mailhaul auth` stores
 * new tokens; MH_ERR_TEMP for the network and
 * 5xx/429; MH_ERR_PROTO for a malformed answer; MH_ERR_LOCAL for the
 * store.  force_refresh is for a login refused with a cached token.
 */
int	oauth2_token(const struct cfg_oauth2 *o, const char *statedir,
	    bool force_refresh, char **token_out, struct mh_err *err);

/*
 * Whether o waits for `mailhaul auth NAME`: built-in OAuth2 (not
 * token_command) whose store holds no refresh token or was marked
 * revoked by an invalid_grant answer.  Reads the store only.
 */
bool	oauth2_needs_auth(const struct cfg_oauth2 *o, const char *statedir);

/*
 * The store file's modification time in nanoseconds (0: no store), to
 * notice that `mailhaul auth NAME` stored new tokens.
 */
int64_t	oauth2_store_stamp(const char *statedir, const char *name);

/* The store's path for o: STATEDIR/oauth2/NAME.json (new string). */
char	*oauth2_store_path(const char *statedir, const char *name);

/* Reads the store; a missing file gives 0 and empty tokens. */
int	oauth2_store_load(const char *statedir, const char *name,
	    struct oauth2_tokens *t, struct mh_err *err);

/*
 * Writes the store durably (see above).  The caller holds the store's
 * lock (a refresh does); oauth2_store_replace takes it.
 */
int	oauth2_store_save(const char *statedir, const char *name,
	    const struct oauth2_tokens *t, struct mh_err *err);

/*
 * oauth2_store_save under the store's lock (STATEDIR/oauth2/NAME.lock,
 * waited for), for a writer that does not hold it: `mailhaul auth`,
 * whose new grant must neither be overwritten by a refresh that loaded
 * the old one nor share its temporary file.  0, or -1 with err.
 */
int	oauth2_store_replace(const char *statedir, const char *name,
	    const struct oauth2_tokens *t, struct mh_err *err);

/* Frees and wipes t's fields. */
void	oauth2_tokens_free(struct oauth2_tokens *t);

/*
 * POSTs a form to url (NULL: o's token endpoint): pairs plus client_id
 * and the client secret when o has one.  A 2xx JSON object answer is
 * put in *out (the caller json_decref()s it) and 0 returned; otherwise
 * -1, err set (MH_ERR_AUTH for an OAuth2 error, MH_ERR_TEMP for the
 * network, 5xx and 429, MH_ERR_PROTO) and oerror holding the OAuth2
 * "error" code or "".
 */
int	oauth2_request(const struct cfg_oauth2 *o, const char *url,
	    const char *const *pairs, json_t **out, char oerror[64],
	    struct mh_err *err);

/*
 * POSTs a form to o's token endpoint (or to url when not NULL): pairs
 * (name, value, ..., NULL; see http_form) plus client_id and the client
 * secret when o has one.  On a 2xx JSON answer fills t (a missing
 * refresh_token leaves t->refresh_token alone) and returns 0.  On an
 * OAuth2 error answer returns -1 with *oerror set to its "error" code
 * (static string copy in oerror[64]; "" when there was none) and err set.
 */
int	oauth2_post(const struct cfg_oauth2 *o, const char *url,
	    const char *const *pairs, struct oauth2_tokens *t,
	    char oerror[64], struct mh_err *err);

#endif
