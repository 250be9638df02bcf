/*
 * sasl_impl.h -- what a SASL mechanism provides to the driver (sasl.c).
 * One file per mechanism (sasl_plain.c, sasl_login.c, sasl_xoauth2.c,
 * sasl_oauthbearer.c), each exporting one const struct sasl_mech_ops
 * that sasl.c's table lists.
 */
#ifndef MAILHAUL_NET_SASL_IMPL_H
#define MAILHAUL_NET_SASL_IMPL_H

#include <stddef.h>

#include "net/sasl.h"

/* Raw bytes to send (before base64); owned, wiped by the driver. */
struct sasl_buf {
	unsigned char	*data;
	size_t		 len;
};

struct sasl_mech_ops {
	const char	*name;		/* as on the wire */
	enum sasl_kind	 kind;		/* the secret it sends */
	/*
	 * The client's first message into out (a new buffer); NULL when
	 * the mechanism waits for the server's first challenge (LOGIN).
	 */
	void	(*first)(const struct sasl_cred *c, const struct sasl_peer *p,
		    struct sasl_buf *out);
	/*
	 * The answer to challenge n (0 = the first challenge after the
	 * first message, or the first of all without one) into out (a new
	 * buffer, len 0 allowed).  A mechanism that learns why it failed
	 * (a JSON error) writes that to note (a sentence, no secret).
	 * Returns 0, or -1 to cancel the exchange.
	 */
	int	(*step)(const struct sasl_cred *c, unsigned n,
		    const unsigned char *chal, size_t len,
		    struct sasl_buf *out, char *note, size_t nsize);
};

extern const struct sasl_mech_ops sasl_plain_ops;
extern const struct sasl_mech_ops sasl_login_ops;
extern const struct sasl_mech_ops sasl_xoauth2_ops;
extern const struct sasl_mech_ops sasl_oauthbearer_ops;

/* A new buffer holding the concatenation of n strings (the helpers of
   the mechanisms; NUL bytes go in with "\0" parts of length 1). */
void	sasl_buf_cat(struct sasl_buf *out, size_t n, const char *const *parts,
	    const size_t *lens);

/*
 * The error of an OAuth2 mechanism (RFC 7628 section 3.2.2, Google's and
 * Microsoft's XOAUTH2): a JSON object; writes "status S" (and "error E"
 * when present) to note, or "an unreadable error" when it is not JSON.
 */
void	sasl_oauth_note(const unsigned char *chal, size_t len, char *note,
	    size_t nsize);

#endif
