/*
 * imap_session.h -- opening an IMAP session the one way mailhaul does, for
 * the source (fetch/imap.c), the IDLE watchers (fetch/idle.c) and the
 * IMAP APPEND target (forward/imap_append.c).
 *
 * net/ connects (TLS verified there), libetpan reads the greeting and
 * does CAPABILITY, STARTTLS and LOGIN; AUTHENTICATE is ours (libetpan's
 * needs cyrus-sasl): net/sasl.c's mechanisms over this file's framing,
 * used for OAuth2 tokens and where the server announces LOGINDISABLED.  The password is never sent without TLS unless the
 * account says allow_plaintext_auth, and never logged: libetpan marks
 * LOGIN's arguments private, and our AUTHENTICATE response is written
 * with privacy off, so a logger sees it as private data.
 */
#ifndef MAILHAUL_NET_IMAP_SESSION_H
#define MAILHAUL_NET_IMAP_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include <libetpan/libetpan.h>

#include "config/config.h"
#include "net/sasl.h"
#include "util.h"

/* A mailimap logger (mailimap_set_logger's callback). */
typedef void imap_logger_fn(mailimap *, int, const char *, size_t, void *);

struct imap_open {
	/* in: set on the session before the greeting; NULL for none */
	imap_logger_fn	*logger;
	void		*logger_ctx;
	/* in: say ENABLE UTF8=ACCEPT where offered (the source does; the
	   APPEND target and IDLE keep modified UTF-7 names, which every
	   server takes without it) */
	bool		 want_utf8;
	/* out: the greeting line ("" if none came) and whether the
	   session is encrypted */
	char		 greeting[256];
	bool		 tls;
	/* out: the server enabled UTF8=ACCEPT (RFC 6855): mailbox names
	   on this session are UTF-8, not modified UTF-7 (imap_utf7.h's
	   imap_wire_name and imap_canon_name translate) */
	bool		 utf8;
};

/*
 * Connects to ep's server (timeout_ms for the connect and every read and
 * write; 0: net's defaults) and logs in with cred (borrowed): LOGIN
 * for a password unless LOGINDISABLED, else AUTHENTICATE with the
 * mechanism sasl_choose picks (SASL-IR when offered).  On success *out
 * is an authenticated session whose capabilities are fresh (CAPABILITY
 * after login), freed with imap_session_kill or mailimap_logout +
 * mailimap_free.  With o->want_utf8, where the server offers ENABLE and
 * UTF8=ACCEPT (or UTF8=ONLY) the session says ENABLE UTF8=ACCEPT and
 * o->utf8 tells
 * whether the server enabled it (a NO is no error: names stay modified
 * UTF-7).  On failure returns -1 with everything freed and err
 * set: MH_ERR_AUTH (refused login, or no way to log in that the account
 * allows), MH_ERR_TLS (STARTTLS missing or failing, a certificate),
 * MH_ERR_TEMP (network, a BYE greeting), MH_ERR_PROTO (an unparsable
 * reply); err->reply holds the server's line when there is one.
 */
int	imap_session_open(const struct cfg_endpoint *ep, int timeout_ms,
	    const struct sasl_cred *cred, struct imap_open *o, mailimap **out,
	    struct mh_err *err);

/* CAPABILITY again (libetpan caches the list); a MAILIMAP_ result. */
int	imap_session_caps(mailimap *imap);

/* Whether the cached capabilities hold name ("AUTH=PLAIN" works too). */
bool	imap_session_has_cap(mailimap *imap, const char *name);

/*
 * s as an IMAP quoted string ("..." with \ and " escaped) into a new
 * string the caller frees, or NULL when s cannot be one: CR, LF, NUL and
 * every other control or 8-bit byte (a folder name goes through
 * imap_wire_name's modified UTF-7 first).
 */
char	*imap_session_quote(const char *s);

/* Why the stream failed: net's reason, or a generic text. */
const char *imap_session_reason(mailimap *imap);

/*
 * Maps libetpan's result r for the command `what` into err and returns
 * -1: a stream error is MH_ERR_TEMP with net's reason, a parse error
 * MH_ERR_PROTO, anything else (a tagged NO/BAD) MH_ERR_TEMP with the
 * server's text as the reply.
 */
int	imap_session_fail(mailimap *imap, int r, const char *what,
	    struct mh_err *err);

/* Frees a session without waiting for LOGOUT; NULL is a no-op. */
void	imap_session_kill(mailimap *imap);

/*
 * Ends a session that is in order without a round trip: sends LOGOUT,
 * does not wait for the server's BYE and OK (LOGOUT commits nothing:
 * every expunge was a command of its own, answered), closes the
 * connection (TLS's close_notify sent, not waited for) and frees imap.
 * A pass ends one round trip sooner.  NULL is a no-op.
 */
void	imap_session_logout(mailimap *imap);

#endif
