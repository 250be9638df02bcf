/*
 * sasl.c -- the SASL driver, the mechanism table, the one mechanism
 * choice and the plain-text policy; see sasl.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "net/net.h"
#include "net/sasl_impl.h"

#define SASL_MAX_STEPS	8	/* challenges we answer before giving up */
#define SASL_CHAL_MAX	4096	/* a longer challenge is cut */

/* Indexed by enum sasl_mech; SASL_NATIVE has no row. */
static const struct sasl_mech_ops *const mechs[SASL_NMECH] = {
	[SASL_PLAIN] = &sasl_plain_ops,
	[SASL_LOGIN] = &sasl_login_ops,
	[SASL_XOAUTH2] = &sasl_xoauth2_ops,
	[SASL_OAUTHBEARER] = &sasl_oauthbearer_ops,
};

const char *
sasl_mech_name(enum sasl_mech m)
{
	if (m > SASL_NATIVE && m < SASL_NMECH)
		return mechs[m]->name;
	return "password";
}

void
sasl_offer_init(struct sasl_offer *o)
{
	memset(o, 0, sizeof *o);
}

static void
offer_one(struct sasl_offer *o, const char *name, size_t len)
{
	size_t	used = strlen(o->names);

	for (int m = SASL_NATIVE + 1; m < SASL_NMECH; m++)
		if (strlen(mechs[m]->name) == len &&
		    strncasecmp(mechs[m]->name, name, len) == 0)
			o->mechs |= SASL_BIT(m);
	if (used + len + 2 < sizeof o->names)
		snprintf(o->names + used, sizeof o->names - used, "%s%.*s",
		    used > 0 ? " " : "", (int)len, name);
}

void
sasl_offer_add(struct sasl_offer *o, const char *list)
{
	const char	*p = list, *e;

	while (p != NULL && *p != '\0') {
		p += strspn(p, " \t");
		e = p + strcspn(p, " \t");
		if (e > p)
			offer_one(o, p, (size_t)(e - p));
		p = e;
	}
}

/* "it offers: PLAIN LOGIN" or "it offers no SASL mechanism". */
static const char *
offered(const struct sasl_offer *o, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s", o->names[0] != '\0' ?
	    "it offers: " : "it offers no SASL mechanism", o->names);
	return buf;
}

static int
choose_password(const struct sasl_offer *o, enum sasl_mech *out,
    struct mh_err *err)
{
	char	buf[400];

	if (o->native)
		*out = SASL_NATIVE;
	else if (o->mechs & SASL_BIT(SASL_PLAIN))
		*out = SASL_PLAIN;
	else if (o->mechs & SASL_BIT(SASL_LOGIN))
		*out = SASL_LOGIN;
	else {
		mh_err_set(err, MH_ERR_AUTH, "the server offers no way to log "
		    "in with a password (neither AUTH PLAIN nor AUTH LOGIN; "
		    "%s)", offered(o, buf, sizeof buf));
		return -1;
	}
	return 0;
}

int
sasl_choose(enum sasl_auth auth, enum sasl_kind kind,
    const struct sasl_offer *o, enum sasl_mech *out, struct mh_err *err)
{
	char		buf[400];
	enum sasl_mech	want;
	bool		automatic = auth == SASL_AUTH_AUTO;

	if (automatic)
		auth = kind == SASL_SECRET_OAUTH2 ? SASL_AUTH_OAUTHBEARER :
		    SASL_AUTH_PASSWORD;
	if ((auth == SASL_AUTH_PASSWORD) != (kind == SASL_SECRET_PASSWORD)) {
		mh_err_set(err, MH_ERR_AUTH, "auth = %s needs %s", auth ==
		    SASL_AUTH_PASSWORD ? "password" : auth == SASL_AUTH_XOAUTH2 ?
		    "xoauth2" : "oauthbearer", auth == SASL_AUTH_PASSWORD ?
		    "a password, not an OAuth2 token" : "an OAuth2 token, "
		    "not a password");
		return -1;
	}
	if (auth == SASL_AUTH_PASSWORD)
		return choose_password(o, out, err);
	want = auth == SASL_AUTH_XOAUTH2 ? SASL_XOAUTH2 : SASL_OAUTHBEARER;
	if (o->mechs & SASL_BIT(want)) {
		*out = want;
		return 0;
	}
	/* auto with a token: OAUTHBEARER, else XOAUTH2 */
	if (automatic && (o->mechs & SASL_BIT(SASL_XOAUTH2))) {
		*out = SASL_XOAUTH2;
		return 0;
	}
	mh_err_set(err, MH_ERR_AUTH, "the server does not offer %s (%s)",
	    automatic ? "OAUTHBEARER or XOAUTH2" : mechs[want]->name,
	    offered(o, buf, sizeof buf));
	return -1;
}

int
sasl_plaintext_check(bool tls, bool allow_plaintext,
    const struct sasl_cred *c, struct mh_err *err)
{
	if (tls || allow_plaintext)
		return 0;
	mh_err_set(err, MH_ERR_AUTH, "refusing to send the %s for %s over a "
	    "connection without TLS (set tls, or allow_plaintext_auth = yes "
	    "with tls = none)", c->kind == SASL_SECRET_OAUTH2 ?
	    "OAuth2 token" : "password", c->user);
	return -1;
}

void
sasl_buf_cat(struct sasl_buf *out, size_t n, const char *const *parts,
    const size_t *lens)
{
	size_t	len = 0, i;

	for (i = 0; i < n; i++)
		len += lens[i];
	out->data = xmalloc(len + 1);
	out->len = 0;
	for (i = 0; i < n; i++) {
		memcpy(out->data + out->len, parts[i], lens[i]);
		out->len += lens[i];
	}
	out->data[out->len] = '\0';
}

static void
buf_wipe(struct sasl_buf *b)
{
	if (b->data != NULL) {
		explicit_bzero(b->data, b->len);
		free(b->data);
	}
	b->data = NULL;
	b->len = 0;
}

/* A JSON string or number field as text; "" when absent. */
static const char *
json_text(json_t *o, const char *key, char *buf, size_t size)
{
	json_t	*v = json_object_get(o, key);

	buf[0] = '\0';
	if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, size, "%lld", (long long)json_integer_value(v));
	for (char *c = buf; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	return buf;
}

void
sasl_oauth_note(const unsigned char *chal, size_t len, char *note,
    size_t nsize)
{
	json_t		*o;
	json_error_t	 je;
	char		 status[64], error[160];

	o = json_loadb((const char *)chal, len, 0, &je);
	if (!json_is_object(o)) {
		snprintf(note, nsize, "the server's error is not JSON");
		json_decref(o);
		return;
	}
	json_text(o, "status", status, sizeof status);
	json_text(o, "error", error, sizeof error);
	snprintf(note, nsize, "status %s%s%s", status[0] != '\0' ? status :
	    "unknown", error[0] != '\0' ? ", error " : "", error);
	json_decref(o);
}

/* Sends a raw response base64-encoded (empty: an empty line). */
static int
send_raw(const struct sasl_io *io, const struct sasl_buf *b,
    struct mh_err *err)
{
	char	*b64 = net_base64(b->data, b->len);
	int	 r = io->send(io->ctx, b64, "<redacted>", err);

	secret_free(b64);
	return r;
}

/* Decodes a challenge and lets the mechanism answer, or cancels. */
static int
answer(const struct sasl_io *io, const struct sasl_mech_ops *ops,
    const struct sasl_cred *c, unsigned n, const char *chal, char *note,
    size_t nsize, struct mh_err *err)
{
	struct sasl_buf	 resp = { NULL, 0 };
	unsigned char	*raw;
	size_t		 len = 0;
	int		 r;

	if ((raw = net_unbase64(chal, &len)) == NULL) {
		snprintf(note, nsize, "the server's challenge is not base64");
		return io->send(io->ctx, "*", "*", err);
	}
	if (ops->step(c, n, raw, len, &resp, note, nsize) == -1)
		r = io->send(io->ctx, "*", "*", err);
	else
		r = send_raw(io, &resp, err);
	buf_wipe(&resp);
	free(raw);
	return r;
}

/* The first message: in the command when it fits, else kept for later. */
static int
start(const struct sasl_io *io, const struct sasl_mech_ops *ops,
    const struct sasl_buf *first, bool *pending, struct mh_err *err)
{
	char	*b64 = NULL, *line, *shown;
	int	 r;

	*pending = false;
	if (first->data != NULL) {
		b64 = net_base64(first->data, first->len);
		if (strlen(b64) > io->ir_max || first->len == 0) {
			secret_free(b64);
			b64 = NULL;
			*pending = true;
		}
	}
	line = xasprintf("%s %s%s%s", io->verb, ops->name, b64 != NULL ?
	    " " : "", b64 != NULL ? b64 : "");
	shown = xasprintf("%s %s%s", io->verb, ops->name, b64 != NULL ?
	    " <redacted>" : "");
	r = io->send(io->ctx, line, shown, err);
	secret_free(line);
	secret_free(b64);
	free(shown);
	return r;
}

static void
refused(const struct sasl_mech_ops *ops, const struct sasl_cred *c,
    const char *note, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_AUTH, "AUTH %s as %s refused%s%s%s", ops->name,
	    c->user, note[0] != '\0' ? " (" : "", note,
	    note[0] != '\0' ? ")" : "");
}

int
sasl_authenticate(const struct sasl_io *io, enum sasl_mech m,
    const struct sasl_cred *c, const struct sasl_peer *peer,
    struct mh_err *err)
{
	const struct sasl_mech_ops	*ops;
	struct sasl_buf			 first = { NULL, 0 };
	enum sasl_reply			 rep;
	char				*chal = xmalloc(SASL_CHAL_MAX);
	char				 note[256] = "";
	unsigned			 n = 0;
	bool				 pending;
	int				 i, rc = -1;

	if (m <= SASL_NATIVE || m >= SASL_NMECH) {
		mh_err_set(err, MH_ERR_LOCAL, "no such SASL mechanism");
		goto out;
	}
	ops = mechs[m];
	if (ops->first != NULL)
		ops->first(c, peer, &first);
	if (start(io, ops, &first, &pending, err) == -1)
		goto out;
	for (i = 0; i < SASL_MAX_STEPS; i++) {
		if (io->read(io->ctx, &rep, chal, SASL_CHAL_MAX, err) == -1)
			goto out;
		if (rep == SASL_REPLY_OK) {
			rc = 0;
			goto out;
		}
		if (rep == SASL_REPLY_NO) {
			refused(ops, c, note, err);
			goto out;
		}
		if (pending) {
			pending = false;
			if (send_raw(io, &first, err) == -1)
				goto out;
		} else if (answer(io, ops, c, n++, chal, note, sizeof note,
		    err) == -1)
			goto out;
	}
	mh_err_set(err, MH_ERR_PROTO, "AUTH %s: the server kept sending "
	    "challenges", ops->name);
out:
	buf_wipe(&first);
	explicit_bzero(chal, SASL_CHAL_MAX);
	free(chal);
	return rc;
}

/* The response code in reply ("[CODE ...]" or "[CODE]"), into code. */
static bool
response_code(const char *reply, char *code, size_t size)
{
	const char	*b = reply;
	size_t		 n;

	/* the code opens the text: before it at most a tag and "NO" */
	for (int words = 0; words < 2 && *b != '[' && *b != '\0'; words++) {
		b += strcspn(b, " ");
		b += strspn(b, " ");
	}
	if (*b++ != '[')
		return false;
	n = strcspn(b, " ]");
	if (n == 0 || n >= size)
		return false;
	memcpy(code, b, n);
	code[n] = '\0';
	return true;
}

enum mh_err_class
sasl_refusal_class(const char *reply)
{
	static const char *const temp[] = {
		"UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG",	/* IMAP */
		"IN-USE", "SYS/TEMP", "LOGIN-DELAY",		/* POP3 */
	};
	char	code[32];

	if (reply == NULL || !response_code(reply, code, sizeof code))
		return MH_ERR_AUTH;
	for (size_t i = 0; i < sizeof temp / sizeof temp[0]; i++)
		if (strcasecmp(code, temp[i]) == 0)
			return MH_ERR_TEMP;
	return MH_ERR_AUTH;
}
