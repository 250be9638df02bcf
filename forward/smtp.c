/*
 * smtp.c -- the SMTP and LMTP target (see target.h).  LMTP is SMTP with
 * LHLO and one reply per accepted recipient after the data.
 *
 * libetpan does the greeting, STARTTLS and the reply parsing.  We do by
 * hand what it gets wrong or lacks (notes/libetpan.md Q5):
 *  - EHLO with our own HELO name, MAIL FROM and RCPT TO are sent through
 *    mailsmtp_send_command (no 513-byte buffer, BODY=8BITMIME and SIZE=);
 *  - AUTH PLAIN and LOGIN (no cyrus-sasl);
 *  - the data: streamed from the spool file in chunks with our own
 *    dot-stuffing and terminator (mailsmtp_data_message would add an empty
 *    line to a CRLF-terminated message and needs the whole message in
 *    memory);
 *  - BDAT (RFC 3030) when the server offers CHUNKING (libetpan does not
 *    parse it) and the target's chunking key allows it: the same bytes
 *    as after DATA but without the dot-stuffing and the terminator, in
 *    chunks of at most BDAT_CHUNK bytes, each with its exact size, the
 *    last one "BDAT n LAST".  With PIPELINING the envelope goes in the
 *    same write as the first chunk (RFC 3030 4.2): one round trip for a
 *    message that fits one chunk.  A chunk that is not the last is
 *    answered before the next is sent, so a refusal stops the data
 *    (RFC 3030: no more chunks after a 4xx/5xx); it is a refusal at
 *    "BDAT", classified like one at DATA.  After BDAT LAST the replies
 *    are those after the final dot (LMTP: one per accepted recipient,
 *    RFC 2033).  A transaction never mixes DATA and BDAT.
 *
 * What goes on the wire after DATA: the Received: header, then the file's
 * bytes exactly, except that every line end becomes CRLF: a bare LF, and
 * a run of CRs before LF (CR CR LF: popa3d and Courier serve files
 * stored with CRLF that way; RFC 5321 forbids a bare CR, Postfix and
 * Exim strip it, OpenSMTPD refuses the message, Cyrus LMTP ends the
 * header there).  A CR inside a line (not before LF), NUL and 8-bit
 * bytes are kept: Dovecot stores them, strict MTAs may refuse the
 * message (a permanent refusal of that message).  After DATA a '.' at
 * the start of a line is doubled, and a message not ending in a line
 * end gets CRLF before the final ".\r\n" (with BDAT too, at the end of
 * the last chunk).
 *
 * Outcomes (conservative, so that nothing is delivered twice):
 *  - recipients in m->done already have the message: no RCPT TO for
 *    them; when that is all of them the message is DELIVERED with no
 *    transaction at all.
 *  - the data goes to the recipients that got 2xx at RCPT TO; a refused
 *    one makes the outcome TEMPFAIL (any 4xx) or PERMFAIL.  With none
 *    accepted there is no DATA.
 *  - after the data, DELIVERED only when every reply is 2xx; any 4xx or
 *    a lost connection is TEMPFAIL (the outcome is unknown, the message
 *    stays on the source); otherwise a 5xx is PERMFAIL.
 *  - the result names the recipients that certainly have the
 *    message (their reply after the data was 2xx), so that the caller
 *    can record them and retry only the others: LMTP's 250 + 452 does
 *    not give the first recipient a second copy.  A reply lost after
 *    the data leaves those recipients unknown (not in the list).
 *  - connection-level failures (connect, greeting, EHLO, TLS, AUTH) are
 *    TEMPFAIL with err->cls saying why and scope MH_SCOPE_TARGET, as is
 *    a 421 (the target is going away): the caller stops this pass's
 *    deliveries.  A connection lost during a transaction is TEMPFAIL
 *    for this message only (MH_SCOPE_MESSAGE: some servers close on a
 *    message they do not like); the next message reconnects, and when
 *    that fails, that is the target's failure.  An AUTH or TLS failure is
 *    remembered and repeated without reconnecting for the rest of the
 *    target's life (one pass), so a bad password is not tried for every
 *    message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "config/value.h"
#include "forward/target_impl.h"
#include "log.h"
#include "net/endpoint.h"
#include "net/net.h"
#include "net/sasl.h"

/*
 * Exported by libetpan but declared only in its private header.  The
 * _private one (two arguments in 1.9.4) marks the command unpublishable:
 * libetpan's logger never sees it.
 */
int	mailsmtp_send_command(mailsmtp *session, char *command);
int	mailsmtp_send_command_private(mailsmtp *session, char *command);
int	mailsmtp_read_response(mailsmtp *session);
int	mailesmtp_parse_ehlo(mailsmtp *session);

#define READ_CHUNK	65536
#define OUT_CHUNK	16384
#define BDAT_CHUNK	(1024 * 1024)	/* the most bytes one BDAT carries */
#define DATA_REPLY_MS	5000	/* a reply after a failed write in the data */
#define AHEAD_MAX	(256 * 1024)	/* the largest message sent ahead */
#define AHEAD_WRITE_MS	1000	/* a write ahead that waits longer: given up */

struct smtp_target {
	struct target		 base;		/* first: see target_impl.h */
	const struct cfg_target	*cfg;
	char			*secret;	/* owned, wiped; NULL: no AUTH */
	enum sasl_kind		 kind;
	char			 helo[256];
	int			 timeout_ms;
	mailsmtp		*smtp;		/* NULL when not connected */
	bool			 lmtp;
	unsigned		 ntrans;	/* transactions on this connection */
	struct mh_err		 sticky;	/* an AUTH/TLS failure, for good */
	struct target_info	 info;
	/* the last delivery: recipients sent to */
	size_t			*sent;		/* indexes into cfg->recipients */
	size_t			 nsent;
	bool			 stale;		/* a pipelined RSET got no
						   reply: reconnect, again */
	const char		*refused_rcpt;	/* refused at RCPT TO with none
						   accepted, or NULL */
	bool			 accepted_any;	/* a message this pass */
	bool			 chunking;	/* the server offers CHUNKING */
	char			*chunk;		/* BDAT_CHUNK bytes, or NULL
						   before the first BDAT */
	/* sent ahead (smtp_prepare): up to BDAT LAST, nothing read */
	bool			 ahead;
	char			*ahead_key;	/* its source_key: the next
						   delivery must be of it */
	char			*ahead_from;	/* its MAIL FROM address */
};

/* A transaction sending BDAT chunks (RFC 3030): see bdat_chunk. */
struct bdat {
	struct smtp_target	*tg;
	const struct target_msg	*m;
	const char		*from;
	enum target_outcome	*out;
	struct mh_err		*err;
	bool			 envelope;	/* pipelined: the envelope's
						   replies are still unread */
	bool			 over;		/* the transaction ended:
						   *out and err say how */
	bool			 ahead;		/* smtp_prepare: one chunk, not
						   LAST, no reply read */
	unsigned		 nchunks;
	uint64_t		 bytes;
};

/*
 * Stream writer with dot-stuffing (see the top of this file); with bd
 * set, the same line ends without the dot-stuffing, every full buffer a
 * BDAT chunk.
 */
struct stuffer {
	mailstream	*s;
	bool		 at_bol;
	size_t		 crs;		/* CRs held: a line end if LF follows */
	bool		 failed;
	struct bdat	*bd;		/* NULL: DATA */
	size_t		 olen, cap;
	char		*out;		/* cap bytes, borrowed */
};

static const char *
tname(const struct smtp_target *tg)
{
	return tg->cfg->name != NULL ? tg->cfg->name : "?";
}

/* "CODE text" of the last reply into err->reply. */
static void
set_reply(struct mh_err *err, mailsmtp *smtp)
{
	char	buf[600];

	snprintf(buf, sizeof buf, "%d %s", smtp->response_code,
	    smtp->response != NULL ? smtp->response : "");
	mh_err_reply(err, buf, (size_t)-1);
}

static const char *
stream_reason(struct smtp_target *tg)
{
	const char	*why = NULL;

	if (tg->smtp != NULL && tg->smtp->stream != NULL)
		why = net_error(tg->smtp->stream);
	return why != NULL && *why != '\0' ? why : "connection lost";
}

/* Drops the connection without QUIT. */
static void
drop(struct smtp_target *tg)
{
	if (tg->smtp == NULL)
		return;
	if (tg->smtp->stream != NULL) {
		mailstream_close(tg->smtp->stream);
		tg->smtp->stream = NULL;
	}
	mailsmtp_free(tg->smtp);
	tg->smtp = NULL;
}

/* The reply class: 2, 3, 4, 5, or 0 for none (connection lost). */
static int
reply_class(int code)
{
	return code >= 200 && code < 600 ? code / 100 : 0;
}

/* Sends a command (no CRLF in cmd) and reads the reply; the code or 0. */
static int
command(struct smtp_target *tg, const char *cmd, bool secret)
{
	char	*line;
	int	 r;

	line = xasprintf("%s\r\n", cmd);
	r = mailsmtp_send_command_private(tg->smtp, line);
	if (secret)
		explicit_bzero(line, strlen(line));
	free(line);
	if (r == -1)
		return 0;
	r = mailsmtp_read_response(tg->smtp);
	return reply_class(r) != 0 ? r : 0;
}

static void
default_helo(struct smtp_target *tg)
{
	const char	*src = tg->cfg->smtp.helo;
	char		 host[256];
	size_t		 i;

	if (src == NULL) {
		if (gethostname(host, sizeof host) == -1)
			host[0] = '\0';
		host[sizeof host - 1] = '\0';
		src = host;
	}
	snprintf(tg->helo, sizeof tg->helo, "%s", src);
	for (i = 0; tg->helo[i] != '\0'; i++) {
		unsigned char c = (unsigned char)tg->helo[i];

		if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
			tg->helo[i] = '_';
	}
	if (tg->helo[0] == '\0')
		snprintf(tg->helo, sizeof tg->helo, "localhost");
}

static int
smtp_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	struct smtp_target	*tg = xcalloc(1, sizeof *tg);

	(void)err;
	tg->cfg = t;
	if (cred != NULL && cred->secret != NULL) {
		tg->secret = xstrdup(cred->secret);
		tg->kind = cred->kind;
	}
	tg->lmtp = t->type == CFG_TARGET_LMTP;
	tg->sent = xcalloc(t->smtp.nrecipients + 1, sizeof *tg->sent);
	default_helo(tg);
	*out = &tg->base;
	return 0;
}

static void
smtp_set_timeout(struct target *base, int timeout_ms)
{
	((struct smtp_target *)base)->timeout_ms = timeout_ms;
}

/* EHLO or LHLO; for SMTP falls back to HELO on a 5xx. */
static int
hello(struct smtp_target *tg, struct mh_err *err)
{
	char	*cmd;
	int	 code;

	cmd = xasprintf("%s %s", tg->lmtp ? "LHLO" : "EHLO", tg->helo);
	code = command(tg, cmd, false);
	free(cmd);
	if (code == 250) {
		/*
		 * libetpan 1.9.4's mailesmtp_parse_ehlo loops for ever on a
		 * TAB in an AUTH line (it skips spaces only, and stops an
		 * unknown word at a TAB without moving on): a broken or
		 * hostile server would spin us with no I/O for the timeout
		 * to catch.  A TAB is white space there anyway.  (Found by
		 * the smtp fuzz target.)
		 */
		for (char *c = tg->smtp->response; c != NULL && *c != '\0';
		    c++)
			if (*c == '\t')
				*c = ' ';
		mailesmtp_parse_ehlo(tg->smtp);
		return 0;
	}
	if (code == 0) {
		mh_err_set(err, MH_ERR_TEMP, "target %s: %s after %s",
		    tname(tg), stream_reason(tg), tg->lmtp ? "LHLO" : "EHLO");
		return -1;
	}
	if (!tg->lmtp && code / 100 == 5) {
		cmd = xasprintf("HELO %s", tg->helo);
		code = command(tg, cmd, false);
		free(cmd);
		if (code == 250) {
			tg->smtp->esmtp = 0;
			tg->smtp->auth = MAILSMTP_AUTH_CHECKED;
			return 0;
		}
	}
	set_reply(err, tg->smtp);
	mh_err_set(err, code / 100 == 4 || code == 0 ? MH_ERR_TEMP :
	    MH_ERR_PROTO, "target %s refused %s", tname(tg),
	    tg->lmtp ? "LHLO" : "EHLO");
	return -1;
}

/* ---- AUTH (RFC 4954): the SASL framing for net/sasl ---- */

static int
auth_lost(struct smtp_target *tg, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_TEMP, "%s during AUTH", stream_reason(tg));
	return -1;
}

/* A line marked private: libetpan's logger sees it as such. */
static int
auth_send(void *ctx, const char *line, const char *shown, struct mh_err *err)
{
	struct smtp_target *tg = ctx;
	char		*l = xasprintf("%s\r\n", line);
	int		 r = mailsmtp_send_command_private(tg->smtp, l);

	(void)shown;
	secret_free(l);
	return r == -1 ? auth_lost(tg, err) : 0;
}

static int
auth_read(void *ctx, enum sasl_reply *rep, char *chal, size_t size,
    struct mh_err *err)
{
	struct smtp_target *tg = ctx;
	int		 code = mailsmtp_read_response(tg->smtp);

	if (reply_class(code) == 0)
		return auth_lost(tg, err);
	if (code == 334) {
		*rep = SASL_REPLY_CONT;
		snprintf(chal, size, "%s", tg->smtp->response != NULL ?
		    tg->smtp->response : "");
		chal[strcspn(chal, "\r\n")] = '\0';
	} else if (code == 235)
		*rep = SASL_REPLY_OK;
	else {
		*rep = SASL_REPLY_NO;
		set_reply(err, tg->smtp);
	}
	return 0;
}

/* The AUTH line of the EHLO/LHLO reply still in tg->smtp->response. */
static void
ehlo_offer(struct smtp_target *tg, struct sasl_offer *o)
{
	const char	*r = tg->smtp->response, *nl;
	char		 line[256];

	sasl_offer_init(o);
	for (; r != NULL && *r != '\0'; r = *nl != '\0' ? nl + 1 : nl) {
		nl = r + strcspn(r, "\n");
		if (strncasecmp(r, "AUTH", 4) != 0 || (r[4] != ' ' &&
		    r[4] != '='))
			continue;
		snprintf(line, sizeof line, "%.*s", (int)(nl - r - 5), r + 5);
		sasl_offer_add(o, line);
	}
}

/* AUTH with the mechanism sasl_choose picks; the secret never logged. */
static int
authenticate(struct smtp_target *tg, struct mh_err *err)
{
	const struct cfg_endpoint *e = &tg->cfg->ep;
	struct sasl_cred	 c = { e->user, tg->secret, tg->kind };
	struct sasl_io		 io = { tg, "AUTH", auth_send, auth_read,
	    SIZE_MAX };
	struct sasl_peer	 peer = { e->socket != NULL ? "localhost" :
	    e->host, e->port };
	struct sasl_offer	 o;
	enum sasl_mech		 m;

	if (e->user == NULL || tg->secret == NULL)
		return 0;
	ehlo_offer(tg, &o);
	if (sasl_plaintext_check(net_is_tls(tg->smtp->stream),
	    e->allow_plaintext_auth, &c, err) == -1 ||
	    sasl_choose(endpoint_auth(e), c.kind, &o, &m, err) == -1 ||
	    sasl_authenticate(&io, m, &c, &peer, err) == -1) {
		mh_err_prefix(err, "target %s", tname(tg));
		return -1;
	}
	return 0;
}

static void
fill_info(struct smtp_target *tg)
{
	const char	*r = tg->smtp->response, *nl;
	struct target_info *ti = &tg->info;
	size_t		 len = 0, n;

	ti->tls = net_is_tls(tg->smtp->stream);
	if (ti->tls)
		net_peer_info(tg->smtp->stream, &ti->peer);
	ti->capabilities[0] = '\0';
	if (r == NULL || (nl = strchr(r, '\n')) == NULL)
		return;
	/* the lines after the first of the EHLO/LHLO reply */
	for (r = nl + 1; *r != '\0'; r = nl + 1) {
		if ((nl = strchr(r, '\n')) == NULL)
			nl = r + strlen(r);
		n = (size_t)(nl - r);
		if (len + n + 2 < sizeof ti->capabilities) {
			if (len > 0)
				ti->capabilities[len++] = ' ';
			memcpy(ti->capabilities + len, r, n);
			len += n;
			ti->capabilities[len] = '\0';
		}
		if (*nl == '\0')
			break;
	}
	for (n = 0; n < len; n++)
		if ((unsigned char)ti->capabilities[n] < 0x20)
			ti->capabilities[n] = ' ';
}

/*
 * Whether the EHLO/LHLO reply still in tg->smtp->response names the
 * extension kw (a line that is kw, or kw and parameters).  libetpan's
 * parser knows no CHUNKING.
 */
static bool
ehlo_has(const struct smtp_target *tg, const char *kw)
{
	const char	*r = tg->smtp->response, *nl;
	size_t		 n = strlen(kw);

	if (r == NULL || !tg->smtp->esmtp)
		return false;
	for (; *r != '\0'; r = *nl != '\0' ? nl + 1 : nl) {
		nl = r + strcspn(r, "\n");
		if (strncasecmp(r, kw, n) == 0 && (r + n == nl ||
		    r[n] == ' ' || r[n] == '\r'))
			return true;
	}
	return false;
}

static int
smtp_connect(struct target *base, struct mh_err *err)
{
	struct smtp_target	*tg = (struct smtp_target *)base;
	const struct cfg_target	*t = tg->cfg;
	struct net_params	 np;
	mailstream		*s;
	char			 buf[600];
	int			 r;

	mh_err_clear(err);
	if (tg->sticky.cls != MH_ERR_NONE) {
		*err = tg->sticky;
		return -1;
	}
	if (tg->smtp != NULL)
		return 0;
	endpoint_net_params(&t->ep, tg->timeout_ms, &np);

	if ((s = net_connect(&np, err)) == NULL)
		goto fail;
	/* an SMTP server sends only replies: none may be endless */
	net_set_line_limit(s, NET_LINE_LIMIT);
	if ((tg->smtp = mailsmtp_new(0, NULL)) == NULL) {
		mailstream_close(s);
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		goto fail;
	}
	r = mailsmtp_connect(tg->smtp, s);	/* closes s unless 220 */
	snprintf(buf, sizeof buf, "%d %s", tg->smtp->response_code,
	    tg->smtp->response != NULL ? tg->smtp->response : "");
	mh_err_reply(err, buf, (size_t)-1);
	memcpy(tg->info.greeting, err->reply, sizeof tg->info.greeting - 1);
	tg->info.greeting[sizeof tg->info.greeting - 1] = '\0';
	if (r != MAILSMTP_NO_ERROR) {
		if (tg->smtp->response_code == 0) {
			err->reply[0] = '\0';
			mh_err_set(err, MH_ERR_TEMP, "target %s closed the "
			    "connection before its greeting", tname(tg));
		} else
			mh_err_set(err, tg->smtp->response_code / 100 == 4 ?
			    MH_ERR_TEMP : MH_ERR_PROTO, "target %s refused "
			    "the connection", tname(tg));
		goto fail;
	}
	err->reply[0] = '\0';
	if (hello(tg, err) == -1)
		goto fail;
	if (np.tls == NET_TLS_STARTTLS) {
		if (!(tg->smtp->esmtp & MAILSMTP_ESMTP_STARTTLS)) {
			mh_err_set(err, MH_ERR_TLS, "target %s does not offer "
			    "STARTTLS", tname(tg));
			goto sticky;
		}
		r = mailesmtp_starttls(tg->smtp);
		if (r != MAILSMTP_NO_ERROR) {
			if (tg->smtp->response_code != 0)
				set_reply(err, tg->smtp);
			/* libetpan refuses a 220 followed by more bytes */
			if (tg->smtp->response_code == 220 &&
			    net_plaintext_pending(tg->smtp->stream))
				mh_err_set(err, MH_ERR_TLS, "target %s: STARTTLS "
				    "refused: the server sent data before the "
				    "TLS handshake (an injection attempt?)",
				    tname(tg));
			else
				mh_err_set(err, MH_ERR_TLS, "target %s: STARTTLS "
				    "failed", tname(tg));
			goto sticky;
		}
		if (net_starttls(tg->smtp->stream, &np, err) == -1) {
			if (err->cls == MH_ERR_TEMP)
				goto fail;
			goto sticky;
		}
		if (hello(tg, err) == -1)
			goto fail;
	}
	fill_info(tg);
	tg->chunking = ehlo_has(tg, "CHUNKING");
	if (authenticate(tg, err) == -1) {
		if (err->cls == MH_ERR_AUTH)
			goto sticky;
		goto fail;
	}
	tg->ntrans = 0;
	return 0;
sticky:
	tg->sticky = *err;
fail:
	drop(tg);
	return -1;
}

static void
smtp_get_info(struct target *base, struct target_info *info)
{
	*info = ((struct smtp_target *)base)->info;
}

/* ---- the data --------------------------------------------------------- */

static enum target_outcome refused(struct smtp_target *, int, const char *,
	    const char *, struct mh_err *);
static enum target_outcome lost(struct smtp_target *, const char *,
	    struct mh_err *);
static enum target_outcome worse(struct smtp_target *, enum target_outcome,
	    int, const char *, const char *, struct mh_err *);
static int	envelope_replies(struct smtp_target *,
		    const struct target_msg *, const char *,
		    enum target_outcome *, struct mh_err *);

/*
 * The reply to a BDAT that went with an envelope nobody accepted (MAIL
 * refused, or every RCPT): an error, one line even for LMTP.  A 2xx (a
 * chunk taken without recipients) or no reply: the connection goes.
 */
static void
bdat_unwanted(struct smtp_target *tg)
{
	int	code = mailsmtp_read_response(tg->smtp);

	if (reply_class(code) == 0 || code / 100 == 2)
		drop(tg);
}

/*
 * Sends the buffer as one BDAT chunk (LAST or not).  With the envelope
 * pipelined in front of the first chunk, its replies are read after that
 * chunk went: nothing accepted ends the transaction (bd->over).  A chunk
 * that is not the last is answered at once (the data stops at a refusal:
 * RFC 3030 says no more chunks then); the replies to the last one are
 * the caller's.  A failed write sets st->failed.
 */
static void
bdat_chunk(struct stuffer *st, bool last)
{
	struct bdat		*bd = st->bd;
	struct smtp_target	*tg = bd->tg;
	char			 head[64];
	int			 n, code;

	n = snprintf(head, sizeof head, "BDAT %zu%s\r\n", st->olen,
	    last && !bd->ahead ? " LAST" : "");
	if (mailstream_write(st->s, head, (size_t)n) != n ||
	    (st->olen > 0 && mailstream_write(st->s, st->out, st->olen) !=
	    (ssize_t)st->olen) || mailstream_flush(st->s) == -1) {
		if (bd->envelope) {	/* as a failed envelope write */
			tg->stale = tg->ntrans > 1;
			*bd->out = lost(tg, "MAIL FROM", bd->err);
			bd->over = true;
		}
		st->failed = true;
		return;
	}
	bd->nchunks++;
	bd->bytes += st->olen;
	if (bd->ahead)
		return;		/* every reply is finish_ahead's */
	if (bd->envelope) {
		bd->envelope = false;
		n = envelope_replies(tg, bd->m, bd->from, bd->out, bd->err);
		if (n == 0)
			bdat_unwanted(tg);
		if (n != 1) {
			bd->over = true;
			return;
		}
	}
	if (last)
		return;
	code = mailsmtp_read_response(tg->smtp);
	if (reply_class(code) == 0)
		*bd->out = lost(tg, "BDAT", bd->err);
	else if (code / 100 != 2)
		*bd->out = worse(tg, *bd->out, code, "BDAT", NULL, bd->err);
	else
		return;
	bd->over = true;
}

static void
stuff_flush(struct stuffer *st)
{
	if (st->bd != NULL && st->bd->ahead)
		st->failed = true;	/* a second chunk: not ahead */
	else if (st->bd != NULL) {
		if (!st->failed && !st->bd->over)
			bdat_chunk(st, false);
	} else if (st->olen > 0 && !st->failed &&
	    mailstream_write(st->s, st->out, st->olen) != (ssize_t)st->olen)
		st->failed = true;
	st->olen = 0;
}

static inline void
stuff_put(struct stuffer *st, char c)
{
	if (st->olen == st->cap)
		stuff_flush(st);
	st->out[st->olen++] = c;
}

static void
stuff(struct stuffer *st, const unsigned char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (c == '\r') {
			st->crs++;
			continue;
		}
		if (c != '\n' && st->crs > 0) {	/* CRs inside a line */
			for (; st->crs > 0; st->crs--)
				stuff_put(st, '\r');
			st->at_bol = false;
		}
		if (st->at_bol && c == '.' && st->bd == NULL)
			stuff_put(st, '.');
		if (c == '\n') {			/* CR* LF -> CRLF */
			st->crs = 0;
			stuff_put(st, '\r');
		}
		stuff_put(st, (char)c);
		st->at_bol = c == '\n';
	}
}

/*
 * Ends the data: the missing line end, then ".\r\n" and a flush, or the
 * last BDAT chunk.  0 or -1 (a write failed).
 */
static int
stuff_end(struct stuffer *st)
{
	if (st->crs > 0 || !st->at_bol) {
		stuff_put(st, '\r');
		stuff_put(st, '\n');
	}
	if (st->bd != NULL) {
		if (!st->failed && !st->bd->over)
			bdat_chunk(st, true);
		return st->failed ? -1 : 0;
	}
	stuff_put(st, '.');
	stuff_put(st, '\r');
	stuff_put(st, '\n');
	stuff_flush(st);
	if (!st->failed && mailstream_flush(st->s) == -1)
		st->failed = true;
	return st->failed ? -1 : 0;
}

static bool
stuff_going(const struct stuffer *st)
{
	return !st->failed && (st->bd == NULL || !st->bd->over);
}

/*
 * Streams received + the spool file: dot-stuffed and terminated after
 * DATA (bd NULL), or as BDAT chunks of at most BDAT_CHUNK bytes.
 * 0, -1 with err for a local read error (MH_ERR_LOCAL), 1 when the
 * connection failed, 2 when the BDAT transaction ended early (*bd->out
 * and err say how).
 */
static int
send_body(struct smtp_target *tg, const struct target_msg *m,
    struct bdat *bd, struct mh_err *err)
{
	struct stuffer	 st = { .s = tg->smtp->stream, .at_bol = true,
	    .bd = bd };
	unsigned char	*buf = xmalloc(READ_CHUNK);
	off_t		 off = 0;
	ssize_t		 n;
	int		 rc = 1;

	if (bd != NULL) {
		if (tg->chunk == NULL)
			tg->chunk = xmalloc(BDAT_CHUNK);
		st.out = tg->chunk;
		st.cap = BDAT_CHUNK;
	} else {
		st.out = xmalloc(OUT_CHUNK);
		st.cap = OUT_CHUNK;
	}
	if (m->received != NULL && tg->cfg->received)
		stuff(&st, (const unsigned char *)m->received,
		    strlen(m->received));
	while (stuff_going(&st)) {
		n = pread(m->fd, buf, READ_CHUNK, off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			mh_err_set(err, MH_ERR_LOCAL, "cannot read the spool "
			    "file: %s", strerror(errno));
			rc = -1;
			goto out;
		}
		if (n == 0)
			break;
		stuff(&st, buf, (size_t)n);
		off += n;
	}
	if (stuff_going(&st) && stuff_end(&st) == 0 && stuff_going(&st)) {
		rc = 0;
		if (bd != NULL)
			log_debug("target %s: %llu bytes in %u BDAT chunk(s)",
			    tname(tg), (unsigned long long)bd->bytes,
			    bd->nchunks);
	} else if (bd != NULL && bd->over)
		rc = 2;
out:
	free(buf);
	if (bd == NULL)
		free(st.out);
	return rc;
}

/* ---- the transaction -------------------------------------------------- */

/* Sets err for a reply (4xx TEMP, 5xx PERM) at step; returns the outcome. */
static enum target_outcome
refused(struct smtp_target *tg, int code, const char *step, const char *arg,
    struct mh_err *err)
{
	set_reply(err, tg->smtp);
	mh_err_set(err, code / 100 == 5 ? MH_ERR_PERM : MH_ERR_TEMP,
	    "target %s refused the message at %s%s%s%s", tname(tg), step,
	    arg != NULL ? " <" : "", arg != NULL ? arg : "",
	    arg != NULL ? ">" : "");
	return code / 100 == 5 ? TARGET_PERMFAIL : TARGET_TEMPFAIL;
}

static enum target_outcome
lost(struct smtp_target *tg, const char *step, struct mh_err *err)
{
	err->reply[0] = '\0';
	mh_err_set(err, MH_ERR_TEMP, "target %s: %s at %s", tname(tg),
	    stream_reason(tg), step);
	drop(tg);
	return TARGET_TEMPFAIL;
}

/*
 * The connection failed while we sent the data.  A server that refuses
 * the message in the middle of it (OpenSMTPD: "500 5.0.0 Line too long",
 * then it closes) has usually sent its reply before closing, and it is
 * still in our socket: read it, briefly, so that the refusal is reported
 * and classified (a 5xx refuses this message, not the target).  Without
 * a reply, or with a 2xx we cannot trust after a failed write, the
 * outcome is unknown: TEMPFAIL.  The connection is dropped either way.
 */
static enum target_outcome
failed_data(struct smtp_target *tg, struct mh_err *err)
{
	enum target_outcome	out;
	int			code;

	net_set_timeout(tg->smtp->stream, DATA_REPLY_MS);
	code = mailsmtp_read_response(tg->smtp);
	if (reply_class(code) == 0 || code / 100 == 2)
		return lost(tg, "the end of the data", err);
	log_debug("target %s: %d %s during the data", tname(tg), code,
	    tg->smtp->response != NULL ? tg->smtp->response : "");
	out = refused(tg, code, "the data (it closed the connection)", NULL,
	    err);
	drop(tg);
	return out;
}

static const char *
envelope_from(struct smtp_target *tg, const struct target_msg *m)
{
	const char	*from = "";

	switch (tg->cfg->smtp.envfrom) {
	case CFG_ENVFROM_ORIGINAL:
		from = m->return_path != NULL ? m->return_path : "";
		break;
	case CFG_ENVFROM_EMPTY:
		break;
	case CFG_ENVFROM_ADDRESS:
		from = tg->cfg->smtp.envelope_from != NULL ?
		    tg->cfg->smtp.envelope_from : "";
		break;
	}
	if (*from != '\0' && value_address(from) == -1) {
		log_warn("target %s: the sender address of the message is "
		    "not usable in MAIL FROM; using the null sender <>",
		    tname(tg));
		from = "";
	}
	return from;
}

/* RSET before a transaction that is not the first on a connection. */
static int
reset(struct smtp_target *tg)
{
	if (tg->ntrans == 0)
		return 0;
	return command(tg, "RSET", false) / 100 == 2 ? 0 : -1;
}

/*
 * Folds one refusal into the outcome so far: the first refusal sets err;
 * a 4xx after only 5xx replaces it (TEMPFAIL wins: the message will be
 * retried).
 */
static enum target_outcome
worse(struct smtp_target *tg, enum target_outcome out, int code,
    const char *step, const char *arg, struct mh_err *err)
{
	if (out == TARGET_DELIVERED ||
	    (out == TARGET_PERMFAIL && code / 100 != 5))
		return refused(tg, code, step, arg, err);
	return out;
}

/*
 * Recipient i refused at RCPT TO with code: the outcome so far made
 * worse, and the first refused address kept for the wrong-recipient
 * rule (recipient_config_error; cleared when another one accepts).
 */
static enum target_outcome
rcpt_refused(struct smtp_target *tg, enum target_outcome out, int code,
    size_t i, struct mh_err *err)
{
	const char	*rcpt = tg->cfg->smtp.recipients[i];

	if (tg->refused_rcpt == NULL)
		tg->refused_rcpt = rcpt;
	return worse(tg, out, code, "RCPT TO", rcpt, err);
}

static bool
pipelining(const struct smtp_target *tg)
{
	return (tg->smtp->esmtp & MAILSMTP_ESMTP_PIPELINING) != 0;
}

/* Queues a command on the stream, unflushed (PIPELINING); 0 or -1. */
static int
queue(struct smtp_target *tg, const char *cmd)
{
	char	*line = xasprintf("%s\r\n", cmd);
	size_t	 len = strlen(line);
	ssize_t	 w = mailstream_write(tg->smtp->stream, line, len);

	free(line);
	return w == (ssize_t)len ? 0 : -1;
}

/* Whether this transaction sends BDAT chunks instead of DATA. */
static bool
use_bdat(const struct smtp_target *tg)
{
	return tg->chunking && tg->cfg->smtp.chunking == CFG_CHUNKING_AUTO;
}

/*
 * Queues RSET (after an earlier transaction), MAIL FROM, the RCPT TOs
 * and DATA and writes them at once (RFC 2920); with BDAT (data NULL)
 * they stay queued, to go with the first chunk.  0 or -1 (write failed).
 */
static int
send_envelope(struct smtp_target *tg, const struct target_msg *m,
    const char *mail, const char *data)
{
	const struct cfg_target	*t = tg->cfg;
	char			*cmd;
	size_t			 i;
	int			 r;

	if (tg->ntrans > 1 && queue(tg, "RSET") == -1)
		return -1;
	if (queue(tg, mail) == -1)
		return -1;
	for (i = 0; i < t->smtp.nrecipients; i++) {
		if (target_msg_done(m, t->smtp.recipients[i]))
			continue;
		cmd = xasprintf("RCPT TO:<%s>", t->smtp.recipients[i]);
		r = queue(tg, cmd);
		free(cmd);
		if (r == -1)
			return -1;
	}
	if (data == NULL)
		return 0;
	if (queue(tg, data) == -1)
		return -1;
	return mailstream_flush(tg->smtp->stream) == -1 ? -1 : 0;
}

/*
 * The replies to a pipelined envelope (RSET, MAIL FROM, the RCPT TOs),
 * read in order.  1: some recipient accepted, the data follows; 0: it
 * does not (*out and err say why, the reply to DATA or BDAT is still to
 * be read); -1: the connection was lost (*out set, dropped).  An RSET
 * without a reply, or answered 421 (a server closing a connection idle
 * too long, as Postfix and Exim do), is a connection that went away
 * while idle: tg->stale, and the caller reconnects once.
 */
static int
envelope_replies(struct smtp_target *tg, const struct target_msg *m,
    const char *from, enum target_outcome *out, struct mh_err *err)
{
	const struct cfg_target	*t = tg->cfg;
	int			 code, mcode;
	size_t			 i;

	if (tg->ntrans > 1 && (reply_class(code =
	    mailsmtp_read_response(tg->smtp)) == 0 || code == 421)) {
		tg->stale = true;
		*out = lost(tg, "MAIL FROM", err);
		return -1;
	}
	if (reply_class(mcode = mailsmtp_read_response(tg->smtp)) == 0) {
		*out = lost(tg, "MAIL FROM", err);
		return -1;
	}
	if (mcode / 100 != 2)	/* now: err takes the reply just read */
		*out = refused(tg, mcode, "MAIL FROM", from, err);
	for (i = 0; i < t->smtp.nrecipients; i++) {
		if (target_msg_done(m, t->smtp.recipients[i]))
			continue;
		code = mailsmtp_read_response(tg->smtp);
		if (reply_class(code) == 0) {
			*out = lost(tg, "RCPT TO", err);
			return -1;
		}
		if (mcode / 100 != 2)
			continue;	/* a 503 after the refused MAIL */
		if (code / 100 == 2) {
			tg->sent[tg->nsent++] = i;
			continue;
		}
		*out = rcpt_refused(tg, *out, code, i, err);
	}
	if (tg->nsent > 0)
		tg->refused_rcpt = NULL;	/* some have it: not the address */
	return mcode / 100 == 2 && tg->nsent > 0 ? 1 : 0;
}

/*
 * The envelope with PIPELINING and DATA: sent in one write, then the
 * replies read in order.  1: DATA was answered 354, the data follows;
 * 0: it does not (*out and err say why).
 */
static int
envelope_pipelined(struct smtp_target *tg, const struct target_msg *m,
    const char *mail, const char *from, enum target_outcome *out,
    struct mh_err *err)
{
	int	code, r;

	if (send_envelope(tg, m, mail, "DATA") == -1) {
		tg->stale = tg->ntrans > 1;
		*out = lost(tg, "MAIL FROM", err);
		return 0;
	}
	if ((r = envelope_replies(tg, m, from, out, err)) == -1)
		return 0;
	code = mailsmtp_read_response(tg->smtp);
	if (reply_class(code) == 0) {
		*out = lost(tg, "DATA", err);
		return 0;
	}
	if (r == 1) {
		if (code == 354)
			return 1;
		*out = worse(tg, *out, code, "DATA", NULL, err);
	}
	/* a 354 with nothing to send (a server that should have said 503):
	   no empty message, the connection goes */
	if (code == 354)
		drop(tg);
	return 0;
}

/*
 * The envelope without PIPELINING: MAIL FROM and each RCPT TO answered
 * in turn.  1: some recipient accepted; 0: none did, or the connection
 * was lost (*out and err say why).
 */
static int
envelope_sync(struct smtp_target *tg, const struct target_msg *m,
    const char *mail, const char *from, enum target_outcome *out,
    struct mh_err *err)
{
	const struct cfg_target	*t = tg->cfg;
	char			*cmd;
	size_t			 i;
	int			 code;

	code = command(tg, mail, false);
	if (code == 0) {
		*out = lost(tg, "MAIL FROM", err);
		return 0;
	}
	if (code / 100 != 2) {
		*out = refused(tg, code, "MAIL FROM", from, err);
		return 0;
	}
	/* the data goes to the recipients that accept it */
	for (i = 0; i < t->smtp.nrecipients; i++) {
		if (target_msg_done(m, t->smtp.recipients[i]))
			continue;
		cmd = xasprintf("RCPT TO:<%s>", t->smtp.recipients[i]);
		code = command(tg, cmd, false);
		free(cmd);
		if (code == 0) {
			*out = lost(tg, "RCPT TO", err);
			return 0;
		}
		if (code / 100 == 2) {
			tg->sent[tg->nsent++] = i;
			continue;
		}
		*out = rcpt_refused(tg, *out, code, i, err);
	}
	if (tg->nsent == 0)
		return 0;
	tg->refused_rcpt = NULL;	/* some have it: not the address */
	return 1;
}

/*
 * The replies after the data (the final dot or BDAT LAST): LMTP one per
 * recipient sent to (RFC 2033, for BDAT LAST as for the dot), SMTP one
 * for them all.
 */
static enum target_outcome
end_replies(struct smtp_target *tg, enum target_outcome out,
    struct target_result *res, struct mh_err *err)
{
	const struct cfg_target	*t = tg->cfg;
	const char		*rcpt;
	size_t			 i, j;
	int			 code;

	for (i = 0; i < (tg->lmtp ? tg->nsent : 1); i++) {
		rcpt = tg->lmtp ? t->smtp.recipients[tg->sent[i]] : NULL;
		code = mailsmtp_read_response(tg->smtp);
		if (reply_class(code) == 0)
			return lost(tg, "the end of the data (the outcome is "
			    "unknown)", err);
		log_debug("target %s: %s %d %s", tname(tg),
		    rcpt != NULL ? rcpt : "data", code,
		    tg->smtp->response != NULL ? tg->smtp->response : "");
		if (code / 100 != 2) {
			out = worse(tg, out, code, "the end of the data for",
			    rcpt, err);
			continue;
		}
		if (tg->lmtp)
			target_result_add(res, rcpt);
		else
			for (j = 0; j < tg->nsent; j++)
				target_result_add(res,
				    t->smtp.recipients[tg->sent[j]]);
	}
	return out;
}

/* The bytes of m as sent, before any line end is mended. */
static uint64_t
sent_size(const struct smtp_target *tg, const struct target_msg *m)
{
	return m->size + (m->received != NULL && tg->cfg->received ?
	    strlen(m->received) : 0);
}

/* The MAIL FROM command for m (SIZE, BODY=8BITMIME where offered). */
static char *
mail_command(const struct smtp_target *tg, const struct target_msg *m,
    const char *from)
{
	char	size[40] = "";
	bool	eight = m->eightbit &&
		    (tg->smtp->esmtp & MAILSMTP_ESMTP_8BITMIME);

	if (tg->smtp->esmtp & MAILSMTP_ESMTP_SIZE)
		snprintf(size, sizeof size, " SIZE=%llu",
		    (unsigned long long)sent_size(tg, m));
	return xasprintf("MAIL FROM:<%s>%s%s", from, size,
	    eight ? " BODY=8BITMIME" : "");
}

/*
 * One transaction: the envelope (pipelined or not), then the data after
 * DATA, or as BDAT chunks when the server offers CHUNKING (never both),
 * then the replies to it.
 */
static enum target_outcome
transaction(struct smtp_target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	enum target_outcome	 out = TARGET_DELIVERED;
	struct bdat		 bd = { .tg = tg, .m = m, .out = &out,
	    .err = err };
	const char		*from;
	char			*cmd;
	bool			 bdat = use_bdat(tg);
	int			 code, r;

	tg->ntrans++;
	bd.from = from = envelope_from(tg, m);
	cmd = mail_command(tg, m, from);
	if (pipelining(tg) && bdat) {
		/* RFC 3030 4.2: the envelope goes with the first chunk */
		r = send_envelope(tg, m, cmd, NULL) == 0;
		if (r == 0) {
			tg->stale = tg->ntrans > 1;
			out = lost(tg, "MAIL FROM", err);
		}
		bd.envelope = true;
	} else if (pipelining(tg))
		r = envelope_pipelined(tg, m, cmd, from, &out, err);
	else
		r = envelope_sync(tg, m, cmd, from, &out, err);
	free(cmd);
	if (r == 0)
		return out;
	if (!bdat && !pipelining(tg)) {
		code = command(tg, "DATA", false);
		if (code == 0)
			return lost(tg, "DATA", err);
		if (code != 354)
			return worse(tg, out, code, "DATA", NULL, err);
	}
	r = send_body(tg, m, bdat ? &bd : NULL, err);
	if (r == -1) {
		/* cannot finish the data: drop, nothing is delivered */
		drop(tg);
		return TARGET_TEMPFAIL;
	}
	if (r == 1)
		return failed_data(tg, err);
	if (r == 2)
		return out;
	return end_replies(tg, out, res, err);
}

/*
 * Whether m goes to any recipient: 1; 0 when every one has it already;
 * -1 with err (MH_ERR_LOCAL) when the recipients are not usable.
 */
static int
recipients_check(const struct smtp_target *tg, const struct target_msg *m,
    struct mh_err *err)
{
	const struct cfg_target	*t = tg->cfg;
	size_t			 i;

	for (i = 0; i < t->smtp.nrecipients; i++)
		if (value_address(t->smtp.recipients[i]) == -1) {
			mh_err_set(err, MH_ERR_LOCAL, "target %s: recipient "
			    "%zu is not a usable address", tname(tg), i + 1);
			return -1;
		}
	if (t->smtp.nrecipients == 0) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s has no recipient",
		    tname(tg));
		return -1;
	}
	for (i = 0; i < t->smtp.nrecipients; i++)
		if (!target_msg_done(m, t->smtp.recipients[i]))
			return 1;
	return 0;
}

/* ---- sending ahead (target_prepare) ----------------------------------- */

/*
 * While the engine makes the message before durable, the next one goes
 * out up to what makes the server take it: the envelope (RSET, MAIL
 * FROM, the RCPT TOs) and the data as one BDAT chunk that is not the
 * last, in one write, nothing read (RFC 2920 and 3030 allow a client to
 * send all of it before any reply).  Its delivery then sends "BDAT 0
 * LAST" and reads every reply in order.  Until that LAST the server
 * holds the data without delivering it: a crash or a dropped connection
 * in between discards the transaction (RFC 3030: only LAST ends it), so
 * at most the message before is in doubt, as without sending ahead.
 * Only with PIPELINING and CHUNKING, on a connection already open, and
 * for a message whose data fits one chunk however its line ends grow.
 */

static void
ahead_clear(struct smtp_target *tg)
{
	tg->ahead = false;
	free(tg->ahead_key);
	free(tg->ahead_from);
	tg->ahead_key = tg->ahead_from = NULL;
}

/* Drops a transaction sent ahead and never ended (nothing delivered). */
static void
abort_ahead(struct smtp_target *tg)
{
	if (!tg->ahead)
		return;
	ahead_clear(tg);
	log_debug("target %s: a transaction sent ahead is dropped unended",
	    tname(tg));
	drop(tg);
}

static bool
smtp_prepare(struct target *base, const struct target_msg *m)
{
	struct smtp_target	*tg = (struct smtp_target *)base;
	enum target_outcome	 out = TARGET_DELIVERED;
	struct mh_err		 e;
	struct bdat		 bd = { .tg = tg, .m = m, .out = &out,
	    .err = &e, .ahead = true };
	char			*cmd;
	bool			 ok;

	abort_ahead(tg);
	mh_err_clear(&e);
	if (tg->smtp == NULL || tg->smtp->stream == NULL ||
	    !pipelining(tg) || !use_bdat(tg) || sent_size(tg, m) > AHEAD_MAX ||
	    m->source_key == NULL || recipients_check(tg, m, &e) != 1)
		return false;
	tg->ntrans++;
	tg->ahead_from = xstrdup(envelope_from(tg, m));
	cmd = mail_command(tg, m, tg->ahead_from);
	bd.from = tg->ahead_from;
	/*
	 * The message before waits for its record meanwhile: a server that
	 * does not take the bytes at once gets the message later, whole,
	 * rather than hold that record up for a whole timeout.
	 */
	net_set_timeout(tg->smtp->stream, AHEAD_WRITE_MS);
	ok = send_envelope(tg, m, cmd, NULL) == 0 &&
	    send_body(tg, m, &bd, &e) == 0;
	free(cmd);
	if (!ok) {
		/* the delivery reconnects and sends it whole */
		log_debug("target %s: the next message could not go ahead; "
		    "it goes whole over a new connection", tname(tg));
		ahead_clear(tg);
		drop(tg);
		return false;
	}
	net_set_timeout(tg->smtp->stream, tg->timeout_ms);
	tg->ahead = true;
	tg->ahead_key = xstrdup(m->source_key);
	log_debug("target %s: the next message sent ahead, up to BDAT LAST",
	    tname(tg));
	return true;
}

/*
 * Ends the transaction sent ahead: BDAT 0 LAST, then the replies to the
 * envelope, to the chunk and to LAST.  A transaction nobody takes (MAIL
 * or every RCPT refused, the chunk refused) is answered with errors to
 * the rest: the connection goes instead of reading them, and the next
 * message connects again.
 */
static enum target_outcome
finish_ahead(struct smtp_target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	enum target_outcome	out = TARGET_DELIVERED;
	int			code, r;

	tg->ahead = false;
	if (mailstream_write(tg->smtp->stream, "BDAT 0 LAST\r\n", 13) != 13 ||
	    mailstream_flush(tg->smtp->stream) == -1) {
		/* LAST never went: nothing was delivered, it goes again */
		tg->stale = true;
		return lost(tg, "BDAT", err);
	}
	r = envelope_replies(tg, m, tg->ahead_from, &out, err);
	if (r != 1) {
		/* -1: lost (dropped; tg->stale when at the RSET, before
		   anything of this message was read: deliver sends it again) */
		if (r == 0)
			drop(tg);
		return out;
	}
	code = mailsmtp_read_response(tg->smtp);
	if (reply_class(code) == 0)
		return lost(tg, "BDAT", err);
	if (code / 100 != 2) {
		out = refused(tg, code, "BDAT", NULL, err);
		drop(tg);
		return out;
	}
	return end_replies(tg, out, res, err);
}

static enum target_outcome
deliver(struct smtp_target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	enum target_outcome	out;
	int			r;

	if ((r = recipients_check(tg, m, err)) == -1) {
		abort_ahead(tg);
		return TARGET_TEMPFAIL;
	}
	tg->nsent = 0;
	if (r == 0) {
		abort_ahead(tg);
		log_info("target %s: every recipient already has this message",
		    tname(tg));
		return TARGET_DELIVERED;
	}
	if (tg->ahead && m->source_key != NULL &&
	    strcmp(tg->ahead_key, m->source_key) == 0) {
		tg->stale = false;
		out = finish_ahead(tg, m, res, err);
		ahead_clear(tg);
		/* the connection had gone while idle, before the RSET: the
		   server took nothing of it (its replies come in order), so
		   it goes again, whole, over a new one */
		if (!tg->stale)
			return out;
		mh_err_clear(err);
		target_result_clear(res);
	}
	abort_ahead(tg);	/* another message's, if any: never ended */
	/* a connection idle since the last message may have gone away:
	   one reconnect when the RSET fails */
	if (tg->smtp != NULL && !pipelining(tg) && reset(tg) == -1)
		drop(tg);
	for (int again = 1;; again--) {
		if (tg->smtp == NULL && smtp_connect(&tg->base, err) == -1) {
			mh_err_scope(err, MH_SCOPE_TARGET);
			return TARGET_TEMPFAIL;
		}
		tg->stale = false;
		out = transaction(tg, m, res, err);
		if (!tg->stale || again == 0)
			return out;
		mh_err_clear(err);
	}
}

static bool	about_recipient(const char *);

/*
 * check: MAIL FROM:<> and RCPT TO each recipient, then RSET; no DATA,
 * no message.  A refused recipient (550 5.1.1 from an LMTP server whose
 * auth_username_format does not match it) fails the probe with the
 * server's reply, as delivering would fail every message.
 */
static int
smtp_probe(struct target *base, char *note, size_t size, struct mh_err *err)
{
	struct smtp_target	*tg = (struct smtp_target *)base;
	const struct cfg_target	*t = base->cfg;
	char			*cmd;
	size_t			 i;
	int			 code, rc = -1;

	abort_ahead(tg);
	if (tg->smtp == NULL && smtp_connect(base, err) == -1)
		return -1;
	if (reset(tg) == -1)
		return lost(tg, "RSET", err), -1;
	tg->ntrans++;
	if ((code = command(tg, "MAIL FROM:<>", false)) == 0)
		return lost(tg, "MAIL FROM", err), -1;
	if (code / 100 != 2) {
		refused(tg, code, "MAIL FROM", "", err);
		goto out;
	}
	for (i = 0; i < t->smtp.nrecipients; i++) {
		cmd = xasprintf("RCPT TO:<%s>", t->smtp.recipients[i]);
		code = command(tg, cmd, false);
		free(cmd);
		if (code == 0)
			return lost(tg, "RCPT TO", err), -1;
		if (code / 100 != 2) {
			refused(tg, code, "RCPT TO", t->smtp.recipients[i],
			    err);
			mh_err_set(err, code / 100 != 5 ? MH_ERR_TEMP :
			    about_recipient(err->reply) ? MH_ERR_NOUSER :
			    MH_ERR_PERM, "target %s refuses recipient <%s> "
			    "(is the address right? Dovecot's LMTP looks it "
			    "up with auth_username_format, %%Lu by default: "
			    "see SERVERS in mailhaul.ini(5))", tname(tg),
			    t->smtp.recipients[i]);
			goto out;
		}
	}
	snprintf(note, size, "%zu recipient(s) accepted at RCPT TO, then RSET",
	    t->smtp.nrecipients);
	rc = 0;
out:
	if (command(tg, "RSET", false) / 100 != 2)
		drop(tg);
	return rc;
}

/*
 * Whether a reply to RCPT TO refuses the recipient itself: an enhanced
 * status 5.1.x (RFC 3463: addressing), or a bare 550 without one.
 */
static bool
about_recipient(const char *reply)
{
	const char	*p = reply;

	if (strncmp(p, "55", 2) != 0)
		return false;
	p += 3;
	while (*p == ' ' || *p == '-')
		p++;
	if (p[0] >= '2' && p[0] <= '5' && p[1] == '.')
		return strncmp(p, "5.1.", 4) == 0;
	return strncmp(reply, "550", 3) == 0;
}

/*
 * A recipient refused for good before the target accepted any message of
 * this pass is the configuration's fault (a wrong address; Dovecot's
 * auth_username_format), not the message's: every message would be
 * refused alike.  MH_ERR_NOUSER for the target as a whole, so that the
 * pass stops and records nothing as refused.
 */
static void
recipient_config_error(struct smtp_target *tg, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_NOUSER, "target %s refuses recipient <%s> "
	    "before taking any message: a configuration error, not a bad "
	    "message; nothing more is delivered this pass and nothing is "
	    "recorded as refused (is the address right? Dovecot's LMTP "
	    "looks it up with auth_username_format, %%Lu by default: see "
	    "SERVERS in mailhaul.ini(5))", tname(tg), tg->refused_rcpt);
	mh_err_scope(err, MH_SCOPE_TARGET);
}

/*
 * What the failure says of the target as a whole: not reachable, a
 * refused login or TLS, 421 (the server is going away) or our own side
 * (a recipient, the spool) mean no other message will fare better; a
 * reply to this message, or a connection lost during its transaction,
 * concern this message.
 */
static enum target_outcome
smtp_deliver(struct target *base, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	struct smtp_target	*tg = (struct smtp_target *)base;
	enum target_outcome	 out;

	tg->refused_rcpt = NULL;
	out = deliver(tg, m, res, err);
	if (out == TARGET_DELIVERED || res->ndests > 0)
		tg->accepted_any = true;
	if (out == TARGET_DELIVERED)
		return out;
	if (out == TARGET_PERMFAIL && !tg->accepted_any &&
	    tg->refused_rcpt != NULL && about_recipient(err->reply)) {
		recipient_config_error(tg, err);
		return TARGET_TEMPFAIL;
	}
	/* 530 (RFC 4954): authentication required -- of the client, for
	   every message; never a refusal of this one */
	if (out == TARGET_PERMFAIL && strncmp(err->reply, "530", 3) == 0) {
		mh_err_set(err, MH_ERR_AUTH, "target %s requires "
		    "authentication: set user and a password (or oauth2) in "
		    "its section; nothing is recorded as refused",
		    tname(tg));
		mh_err_scope(err, MH_SCOPE_TARGET);
		return TARGET_TEMPFAIL;
	}
	if (out == TARGET_TEMPFAIL && (err->scope == MH_SCOPE_TARGET ||
	    err->cls == MH_ERR_AUTH || err->cls == MH_ERR_TLS ||
	    err->cls == MH_ERR_LOCAL || strncmp(err->reply, "421", 3) == 0))
		mh_err_scope(err, MH_SCOPE_TARGET);
	else
		mh_err_scope(err, MH_SCOPE_MESSAGE);
	return out;
}

static int
smtp_command(struct target *base, const char *cmd, int *code,
    struct mh_err *err)
{
	struct smtp_target	*tg = (struct smtp_target *)base;

	abort_ahead(tg);
	if (tg->smtp == NULL) {
		mh_err_set(err, MH_ERR_TEMP, "target %s: not connected",
		    tname(tg));
		return -1;
	}
	if ((*code = command(tg, cmd, false)) == 0) {
		mh_err_set(err, MH_ERR_TEMP, "target %s: %s after %.*s",
		    tname(tg), stream_reason(tg), (int)strcspn(cmd, " "), cmd);
		drop(tg);
		return -1;
	}
	set_reply(err, tg->smtp);
	return 0;
}

static void
smtp_close(struct target *base)
{
	struct smtp_target	*tg = (struct smtp_target *)base;

	abort_ahead(tg);
	if (tg->smtp != NULL) {
		if (tg->smtp->stream != NULL)
			command(tg, "QUIT", false);
		drop(tg);
	}
	secret_free(tg->secret);
	free(tg->sent);
	free(tg->chunk);
	free(tg);
}

const struct target_ops smtp_target_ops = {
	.name = "smtp",
	.open = smtp_open,
	.set_timeout = smtp_set_timeout,
	.connect = smtp_connect,
	.get_info = smtp_get_info,
	.seen = NULL,			/* SMTP and LMTP cannot be asked */
	.probe = smtp_probe,
	.deliver = smtp_deliver,
	.prepare = smtp_prepare,
	.close = smtp_close,
	.command = smtp_command,
};
