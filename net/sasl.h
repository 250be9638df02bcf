/*
 * sasl.h -- credentials and SASL, written once for POP3, IMAP and
 * SMTP/LMTP.
 *
 * A credential is a user and a secret of a kind: a password, or an
 * OAuth2 bearer token (obtained elsewhere; this module only sends it).
 * The mechanisms (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER) live each in its
 * own file (net/sasl_*.c) with a row in the table of sasl.c; adding one
 * is one file and one row.  Each protocol frames the exchange its own
 * way (POP3 AUTH and "+ ", IMAP AUTHENTICATE with SASL-IR and "+ ",
 * SMTP AUTH and 334) and hands the driver a struct sasl_io that speaks
 * that framing; sasl_authenticate() runs the mechanism over it.
 *
 * Never a secret in err->msg or err->reply: the driver puts only the
 * mechanism, the user and the server's refusal there (for XOAUTH2 and
 * OAUTHBEARER the status/error fields of the server's JSON, never the
 * raw challenge).  Every buffer that held a secret is wiped.
 */
#ifndef MAILHAUL_NET_SASL_H
#define MAILHAUL_NET_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* What a credential's secret is. */
enum sasl_kind {
	SASL_SECRET_PASSWORD = 0,
	SASL_SECRET_OAUTH2,		/* an OAuth2 access (bearer) token */
};

/* A user and a secret; every field borrowed from the caller. */
struct sasl_cred {
	const char	*user;
	const char	*secret;
	enum sasl_kind	 kind;
};

/* The `auth` key of accounts and targets. */
enum sasl_auth {
	SASL_AUTH_AUTO = 0,	/* by the credential's kind and the offer */
	SASL_AUTH_PASSWORD,
	SASL_AUTH_XOAUTH2,
	SASL_AUTH_OAUTHBEARER,
};

/*
 * The ways to log in.  SASL_NATIVE is the protocol's own password
 * command (POP3 USER/PASS, IMAP LOGIN), which the protocol sends itself;
 * the others are SASL mechanisms sasl_authenticate() runs.
 */
enum sasl_mech {
	SASL_NATIVE = 0,
	SASL_PLAIN,
	SASL_LOGIN,
	SASL_XOAUTH2,
	SASL_OAUTHBEARER,
	SASL_NMECH
};

#define SASL_BIT(m)	(1u << (m))

/* What a server offers, as its capabilities said. */
struct sasl_offer {
	unsigned	mechs;		/* SASL_BIT()s of known mechanisms */
	bool		native;		/* the protocol's own login works */
	char		names[256];	/* every announced name, for errors */
};

/* Empties o (nothing offered, native false). */
void	sasl_offer_init(struct sasl_offer *o);

/*
 * Adds the mechanisms of a list separated by spaces ("PLAIN LOGIN
 * XOAUTH2", case-insensitive) to o; unknown names are kept for errors.
 */
void	sasl_offer_add(struct sasl_offer *o, const char *list);

/* "PLAIN", "LOGIN", ...; "password" for SASL_NATIVE. */
const char *sasl_mech_name(enum sasl_mech m);

/*
 * The one mechanism choice.  auth = auto: OAUTHBEARER, then XOAUTH2,
 * when the secret is an OAuth2 token; else the password ways in this
 * order: native, PLAIN, LOGIN.  auth = password/xoauth2/oauthbearer asks
 * for exactly that (password: native, PLAIN or LOGIN).  Returns 0 with
 * *out, or -1 with err (MH_ERR_AUTH): a secret of the wrong kind for
 * auth, or a mechanism the server does not offer -- the text names what
 * the server offers.
 */
int	sasl_choose(enum sasl_auth auth, enum sasl_kind kind,
	    const struct sasl_offer *o, enum sasl_mech *out,
	    struct mh_err *err);

/*
 * The plain-text policy: a credential goes over a connection without
 * TLS only when the configuration says allow_plaintext_auth = yes (which
 * config allows only with tls = none).  Returns 0, or -1 with err
 * (MH_ERR_AUTH) "refusing to send the password for USER over a
 * connection without TLS (...)".
 */
int	sasl_plaintext_check(bool tls, bool allow_plaintext,
	    const struct sasl_cred *c, struct mh_err *err);

/* A server's reply to one step, as a framing reads it. */
enum sasl_reply {
	SASL_REPLY_OK = 0,	/* authenticated */
	SASL_REPLY_NO,		/* refused; the io put its line in err->reply */
	SASL_REPLY_CONT,	/* a challenge (base64 text, maybe "") */
};

/*
 * One protocol's framing.  Every line the driver hands over must be
 * treated as secret (never logged in clear; log shown instead).  Callbacks return -1 with err set (MH_ERR_TEMP for
 * a lost connection, MH_ERR_PROTO for a reply that is none of the
 * three) on failure.
 */
struct sasl_io {
	void	*ctx;
	/* What starts an exchange: "AUTH", or "TAG AUTHENTICATE"; the
	   driver sends "VERB MECH" or "VERB MECH IR" through send. */
	const char *verb;
	/* Sends one line (without CRLF); shown is what a transcript may
	   log in its place ("AUTH PLAIN <redacted>", "<redacted>"). */
	int	(*send)(void *ctx, const char *line, const char *shown,
		    struct mh_err *err);
	/* Reads the next reply: with CONT the challenge text goes to chal
	   (NUL-terminated, truncated to size). */
	int	(*read)(void *ctx, enum sasl_reply *r, char *chal, size_t size,
		    struct mh_err *err);
	/* The longest base64 initial response start may carry; 0: never
	   (the mechanism then sends it after an empty challenge). */
	size_t	 ir_max;
};

/* Where the credential goes (OAUTHBEARER names it). */
struct sasl_peer {
	const char	*host;
	unsigned	 port;
};

/*
 * Runs mechanism m (not SASL_NATIVE) over io.  Returns 0 when the server
 * said OK; -1 with err: MH_ERR_AUTH "MECH as USER refused" (with the
 * JSON error's status when the server sent one; err->reply the server's
 * final line), MH_ERR_PROTO when the server never finished, or what io
 * set.  A challenge the mechanism cannot answer is cancelled with "*".
 */
int	sasl_authenticate(const struct sasl_io *io, enum sasl_mech m,
	    const struct sasl_cred *c, const struct sasl_peer *peer,
	    struct mh_err *err);

/*
 * The class of a login the server refused (USER/PASS, LOGIN or AUTH),
 * from the response code of its reply (reply may start with a tag, "NO "
 * or "-ERR "; case does not matter):
 *   IMAP (RFC 5530) UNAVAILABLE, INUSE, LIMIT, SERVERBUG and POP3
 *   (RFC 2449, RFC 3206) IN-USE, SYS/TEMP, LOGIN-DELAY: MH_ERR_TEMP, the
 *   server cannot take us now (tried again with the normal backoff);
 *   AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, AUTH, SYS/PERM,
 *   any other code or none: MH_ERR_AUTH (fix the credentials).
 * NULL is MH_ERR_AUTH.
 */
enum mh_err_class sasl_refusal_class(const char *reply);

#endif
