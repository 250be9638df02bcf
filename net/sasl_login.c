/*
 * sasl_login.c -- LOGIN (draft-murchison-sasl-login): the user after the
 * first challenge, the password after the second; whatever the
 * challenges say ("Username:", "Password:" or anything).
 */
#include <string.h>

#include "net/sasl_impl.h"

static int
login_step(const struct sasl_cred *c, unsigned n, const unsigned char *chal,
    size_t len, struct sasl_buf *out, char *note, size_t nsize)
{
	const char	*s;
	size_t		 l;

	(void)chal, (void)len, (void)note, (void)nsize;
	if (n > 1)
		return -1;
	s = n == 0 ? c->user : c->secret;
	l = strlen(s);
	sasl_buf_cat(out, 1, &s, &l);
	return 0;
}

const struct sasl_mech_ops sasl_login_ops = {
	.name = "LOGIN",
	.kind = SASL_SECRET_PASSWORD,
	.first = NULL,
	.step = login_step,
};
