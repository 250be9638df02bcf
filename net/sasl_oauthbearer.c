/*
 * sasl_oauthbearer.c -- OAUTHBEARER (RFC 7628): the GS2 header "n,a=U,"
 * then "\x01host=H\x01port=P\x01auth=Bearer T\x01\x01".  On failure the
 * server sends a JSON error as a challenge; the client answers with a
 * single \x01 (section 3.2.3) and the server then refuses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/sasl_impl.h"

/* The GS2 authzid: ',' and '=' become =2C and =3D (RFC 5801). */
static char *
gs2_escape(const char *user)
{
	char	*out = xmalloc(3 * strlen(user) + 1), *o = out;

	for (; *user != '\0'; user++) {
		if (*user == ',' || *user == '=') {
			memcpy(o, *user == ',' ? "=2C" : "=3D", 3);
			o += 3;
		} else
			*o++ = *user;
	}
	*o = '\0';
	return out;
}

static void
oauthbearer_first(const struct sasl_cred *c, const struct sasl_peer *p,
    struct sasl_buf *out)
{
	char		 port[16], *user = gs2_escape(c->user);
	const char	*host = p != NULL && p->host != NULL ? p->host : "";
	const char	*parts[] = { "n,a=", user, ",\x01" "host=", host,
	    "\x01" "port=", port, "\x01" "auth=Bearer ", c->secret,
	    "\x01\x01" };
	size_t		 lens[9];

	snprintf(port, sizeof port, "%u", p != NULL ? p->port : 0);
	for (size_t i = 0; i < 9; i++)
		lens[i] = strlen(parts[i]);
	lens[8] = 2;
	sasl_buf_cat(out, 9, parts, lens);
	free(user);
}

static int
oauthbearer_step(const struct sasl_cred *c, unsigned n,
    const unsigned char *chal, size_t len, struct sasl_buf *out, char *note,
    size_t nsize)
{
	const char	*kv = "\x01";
	size_t		 one = 1;

	(void)c;
	if (n > 0)
		return -1;
	sasl_oauth_note(chal, len, note, nsize);
	sasl_buf_cat(out, 1, &kv, &one);
	return 0;
}

const struct sasl_mech_ops sasl_oauthbearer_ops = {
	.name = "OAUTHBEARER",
	.kind = SASL_SECRET_OAUTH2,
	.first = oauthbearer_first,
	.step = oauthbearer_step,
};
