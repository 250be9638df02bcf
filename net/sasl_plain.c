/* sasl_plain.c -- PLAIN (RFC 4616): "\0user\0password", no authzid. */
#include <string.h>

#include "net/sasl_impl.h"

static void
plain_first(const struct sasl_cred *c, const struct sasl_peer *p,
    struct sasl_buf *out)
{
	const char	*parts[] = { "", c->user, "", c->secret };
	size_t		 lens[] = { 1, strlen(c->user), 1, strlen(c->secret) };

	(void)p;
	sasl_buf_cat(out, 4, parts, lens);
}

/* The first message was all there is: a further challenge is cancelled. */
static int
plain_step(const struct sasl_cred *c, unsigned n, const unsigned char *chal,
    size_t len, struct sasl_buf *out, char *note, size_t nsize)
{
	(void)c, (void)n, (void)chal, (void)len, (void)out, (void)note;
	(void)nsize;
	return -1;
}

const struct sasl_mech_ops sasl_plain_ops = {
	.name = "PLAIN",
	.kind = SASL_SECRET_PASSWORD,
	.first = plain_first,
	.step = plain_step,
};
