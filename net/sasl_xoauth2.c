/*
 * sasl_xoauth2.c -- XOAUTH2 (Google's, also Microsoft's):
 * "user=U\x01auth=Bearer T\x01\x01".  On failure the server sends a base64
 * JSON error as a challenge; the client answers with an empty line and
 * the server then refuses.
 */
#include <string.h>

#include "net/sasl_impl.h"

static void
xoauth2_first(const struct sasl_cred *c, const struct sasl_peer *p,
    struct sasl_buf *out)
{
	const char	*parts[] = { "user=", c->user, "\x01" "auth=Bearer ",
	    c->secret, "\x01\x01" };
	size_t		 lens[] = { 5, strlen(c->user), 13, strlen(c->secret),
	    2 };

	(void)p;
	sasl_buf_cat(out, 5, parts, lens);
}

static int
xoauth2_step(const struct sasl_cred *c, unsigned n, const unsigned char *chal,
    size_t len, struct sasl_buf *out, char *note, size_t nsize)
{
	(void)c;
	if (n > 0)
		return -1;
	sasl_oauth_note(chal, len, note, nsize);
	sasl_buf_cat(out, 0, NULL, NULL);		/* the empty answer */
	return 0;
}

const struct sasl_mech_ops sasl_xoauth2_ops = {
	.name = "XOAUTH2",
	.kind = SASL_SECRET_OAUTH2,
	.first = xoauth2_first,
	.step = xoauth2_step,
};
