/*
 * imap_session.c -- connect, STARTTLS and log in; see imap_session.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/endpoint.h"
#include "net/imap_session.h"
#include "net/net.h"
#include "net/sasl.h"

#define AUTH_TAG	"mhA1"
#define AUTH_MAX_LINES	1000	/* untagged lines we wait through */

const char *
imap_session_reason(mailimap *imap)
{
	const char *e;

	if (imap == NULL || imap->imap_stream == NULL)
		return "connection closed";
	e = net_error(imap->imap_stream);
	return e[0] != '\0' ? e : "connection failed";
}

int
imap_session_fail(mailimap *imap, int r, const char *what, struct mh_err *err)
{
	switch (r) {
	case MAILIMAP_ERROR_STREAM:
		mh_err_set(err, MH_ERR_TEMP, "%s: %s", what,
		    imap_session_reason(imap));
		break;
	case MAILIMAP_ERROR_PARSE:
		mh_err_set(err, MH_ERR_PROTO, "%s: unparsable server reply",
		    what);
		break;
	case MAILIMAP_ERROR_MEMORY:
		mh_err_set(err, MH_ERR_LOCAL, "%s: out of memory", what);
		break;
	default:
		mh_err_set(err, MH_ERR_TEMP, "%s failed", what);
		if (imap != NULL && imap->imap_response != NULL)
			mh_err_reply(err, imap->imap_response, (size_t)-1);
		break;
	}
	return -1;
}

/*
 * libetpan 1.9.4 keeps the capabilities a server stated, from the
 * greeting, a response code or "* CAPABILITY", in the session.  Two
 * shapes of them crash its readers: none at all (mailimap_capability
 * copies the list after a tagged OK without checking it), and an empty
 * list ("[CAPABILITY]" with no names: the parser stores a NULL list,
 * which mailimap_capability and mailimap_has_extension walk).  Both were
 * found by the imap fuzz target.  So we never call mailimap_capability
 * (it copies the list): imap_session_caps sends CAPABILITY itself and
 * lets libetpan parse the reply, which stores the list in the session,
 * and caps_fix gives a NULL list an empty one before anything reads it.
 * Not mailimap_custom_command either: it sends "CAPABILITY " with a
 * trailing space, which Cyrus answers with BAD.
 */
static int
caps_fix(mailimap *imap)
{
	struct mailimap_capability_data	*cd;

	if (imap->imap_connection_info == NULL ||
	    (cd = imap->imap_connection_info->imap_capability) == NULL ||
	    cd->cap_list != NULL)
		return MAILIMAP_NO_ERROR;
	if ((cd->cap_list = clist_new()) == NULL)
		return MAILIMAP_ERROR_MEMORY;
	return MAILIMAP_NO_ERROR;
}

int
imap_session_caps(mailimap *imap)
{
	static const char		 cmd[] = "CAPABILITY\r\n";
	struct mailimap_response	*resp;
	int				 r, type;

	if ((r = mailimap_send_current_tag(imap)) != MAILIMAP_NO_ERROR)
		return r;
	if (mailstream_write(imap->imap_stream, cmd, sizeof(cmd) - 1) == -1 ||
	    mailstream_flush(imap->imap_stream) == -1 ||
	    mailimap_read_line(imap) == NULL)
		return MAILIMAP_ERROR_STREAM;
	/* a BAD is MAILIMAP_ERROR_PROTOCOL, a BYE MAILIMAP_ERROR_FATAL */
	if ((r = mailimap_parse_response(imap, &resp)) != MAILIMAP_NO_ERROR)
		return r;
	type = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->
	    rsp_type;
	mailimap_response_free(resp);
	if (type != MAILIMAP_RESP_COND_STATE_OK)
		return MAILIMAP_ERROR_CAPABILITY;
	return caps_fix(imap);
}

/*
 * The capabilities the server stated without being asked (in its
 * greeting, or in its reply to LOGIN/AUTHENTICATE as a response code or
 * "* CAPABILITY"), else asked for with CAPABILITY: one round trip less
 * on the way to the mailbox when it did.  A libetpan code.
 */
static int
caps_stated_or_ask(mailimap *imap)
{
	const struct mailimap_capability_data *cd;

	/* an empty "[CAPABILITY]" states nothing: asked */
	if (imap->imap_connection_info != NULL &&
	    (cd = imap->imap_connection_info->imap_capability) != NULL &&
	    cd->cap_list != NULL && !clist_isempty(cd->cap_list))
		return MAILIMAP_NO_ERROR;
	return imap_session_caps(imap);
}

/* Forgets the capabilities stated so far (they change at login). */
static void
caps_forget(mailimap *imap)
{
	if (imap->imap_connection_info == NULL ||
	    imap->imap_connection_info->imap_capability == NULL)
		return;
	mailimap_capability_data_free(imap->imap_connection_info->
	    imap_capability);
	imap->imap_connection_info->imap_capability = NULL;
}

char *
imap_session_quote(const char *s)
{
	char	*out, *o;

	out = o = xmalloc(2 * strlen(s) + 3);
	*o++ = '"';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c >= 0x7f) {
			free(out);
			return NULL;
		}
		if (c == '"' || c == '\\')
			*o++ = '\\';
		*o++ = (char)c;
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

bool
imap_session_has_cap(mailimap *imap, const char *name)
{
	if (imap->imap_connection_info == NULL ||
	    imap->imap_connection_info->imap_capability == NULL ||
	    caps_fix(imap) != MAILIMAP_NO_ERROR)
		return false;
	if (strncmp(name, "AUTH=", 5) == 0)
		return mailimap_has_authentication(imap, name + 5) != 0;
	return mailimap_has_extension(imap, name) != 0;
}

void
imap_session_kill(mailimap *imap)
{
	if (imap == NULL)
		return;
	if (imap->imap_stream != NULL)
		net_cancel(imap->imap_stream);	/* no LOGOUT wait */
	mailimap_free(imap);
}

void
imap_session_logout(mailimap *imap)
{
	static const char	cmd[] = "z LOGOUT\r\n";

	if (imap == NULL)
		return;
	if (imap->imap_stream != NULL) {
		if (mailstream_write(imap->imap_stream, cmd, sizeof cmd - 1) ==
		    (ssize_t)(sizeof cmd - 1))
			(void)mailstream_flush(imap->imap_stream);
		/* closed here: mailimap_free would LOGOUT again and wait */
		mailstream_close(imap->imap_stream);
		imap->imap_stream = NULL;
	}
	mailimap_free(imap);
}

static int
starttls(mailimap *imap, const struct net_params *p, struct mh_err *err)
{
	int r;

	if (!imap_session_has_cap(imap, "STARTTLS")) {
		mh_err_set(err, MH_ERR_TLS, "the server does not offer "
		    "STARTTLS");
		return -1;
	}
	if ((r = mailimap_starttls(imap)) != MAILIMAP_NO_ERROR) {
		if (r == MAILIMAP_ERROR_STARTTLS) {
			/* a NO, or net_plaintext_pending: libetpan cannot
			   tell us which */
			mh_err_set(err, MH_ERR_TLS, "STARTTLS refused or "
			    "data injected before the TLS handshake");
			if (imap->imap_response != NULL)
				mh_err_reply(err, imap->imap_response,
				    (size_t)-1);
			return -1;
		}
		return imap_session_fail(imap, r, "STARTTLS", err);
	}
	if (net_starttls(imap->imap_stream, p, err) == -1)
		return -1;
	/* nothing said before TLS holds after it (RFC 2595 3.1): not the
	   greeting's list, nor one slipped in before STARTTLS's OK; an
	   answer that states none leaves none */
	caps_forget(imap);
	if ((r = imap_session_caps(imap)) != MAILIMAP_NO_ERROR)
		return imap_session_fail(imap, r, "CAPABILITY after STARTTLS",
		    err);
	return 0;
}

/* ---- AUTHENTICATE (RFC 3501, SASL-IR RFC 4959): the SASL framing ---- */

static int
auth_lost(mailimap *imap, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_TEMP, "AUTHENTICATE: %s",
	    imap_session_reason(imap));
	return -1;
}

/* Writes line and CRLF, marked private for libetpan's logger. */
static int
auth_send(void *ctx, const char *line, const char *shown, struct mh_err *err)
{
	mailimap	*imap = ctx;
	mailstream	*st = imap->imap_stream;
	int		 r = 0;

	(void)shown;
	mailstream_set_privacy(st, 0);
	if (mailstream_write(st, line, strlen(line)) == -1 ||
	    mailstream_write(st, "\r\n", 2) == -1 ||
	    mailstream_flush(st) == -1)
		r = -1;
	mailstream_set_privacy(st, 1);
	return r == -1 ? auth_lost(imap, err) : 0;
}

/* Reads past untagged lines to a continuation or our tagged reply. */
static int
auth_read(void *ctx, enum sasl_reply *rep, char *chal, size_t size,
    struct mh_err *err)
{
	mailimap	*imap = ctx;
	MMAPString	*line;
	char		*l;
	int		 i, rc = -1;

	if ((line = mmap_string_new("")) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	for (i = 0; i < AUTH_MAX_LINES; i++) {
		if ((l = mailstream_read_line_remove_eol(imap->imap_stream,
		    line)) == NULL) {
			auth_lost(imap, err);
			goto out;
		}
		if (l[0] == '+') {
			*rep = SASL_REPLY_CONT;
			snprintf(chal, size, "%s", l[1] == ' ' ? l + 2 : "");
			rc = 0;
			goto out;
		}
		if (strncmp(l, AUTH_TAG " ", strlen(AUTH_TAG) + 1) != 0)
			continue;	/* untagged data */
		l += strlen(AUTH_TAG) + 1;
		if (strncasecmp(l, "OK", 2) == 0) {
			imap->imap_state = MAILIMAP_STATE_AUTHENTICATED;
			*rep = SASL_REPLY_OK;
		} else {
			*rep = SASL_REPLY_NO;
			mh_err_reply(err, l, (size_t)-1);
		}
		rc = 0;
		goto out;
	}
	mh_err_set(err, MH_ERR_PROTO, "AUTHENTICATE: no tagged reply");
out:
	mmap_string_free(line);
	return rc;
}

/* The AUTH= capabilities, and whether LOGIN is allowed. */
static void
caps_offer(mailimap *imap, struct sasl_offer *o)
{
	struct mailimap_capability	*c;
	clistiter			*it;

	sasl_offer_init(o);
	o->native = !imap_session_has_cap(imap, "LOGINDISABLED");
	if (imap->imap_connection_info == NULL ||
	    imap->imap_connection_info->imap_capability == NULL ||
	    caps_fix(imap) != MAILIMAP_NO_ERROR)
		return;
	for (it = clist_begin(imap->imap_connection_info->imap_capability->
	    cap_list); it != NULL; it = clist_next(it)) {
		c = clist_content(it);
		if (c->cap_type == MAILIMAP_CAPABILITY_AUTH_TYPE &&
		    c->cap_data.cap_auth_type != NULL)
			sasl_offer_add(o, c->cap_data.cap_auth_type);
	}
}

/*
 * A NO to LOGIN: the server's text with its response code, which libetpan
 * keeps apart ("[LIMIT] text"); the code says whether the credentials are
 * wrong or the server cannot take us now (sasl_refusal_class).
 */
static int
login_refused(mailimap *imap, const struct sasl_cred *cred,
    struct mh_err *err)
{
	const struct mailimap_response_info *ri = imap->imap_response_info;
	const char	*text = imap->imap_response != NULL ?
	    imap->imap_response : "";
	char		*reply;

	if (ri != NULL && ri->rsp_atom != NULL)
		reply = xasprintf("[%s] %s", ri->rsp_atom, text);
	else
		reply = xstrdup(text);
	mh_err_reply(err, reply, (size_t)-1);
	mh_err_set(err, sasl_refusal_class(reply), "LOGIN as %s refused",
	    cred->user);
	free(reply);
	return -1;
}

/* LOGIN when allowed and a password is sent, else AUTHENTICATE. */
static int
login(mailimap *imap, const struct cfg_endpoint *ep,
    const struct sasl_cred *cred, bool tls, struct mh_err *err)
{
	struct sasl_io		 io = { imap, AUTH_TAG " AUTHENTICATE",
	    auth_send, auth_read,
	    imap_session_has_cap(imap, "SASL-IR") ? SIZE_MAX : 0 };
	struct sasl_peer	 peer = { ep->host, ep->port };
	struct sasl_offer	 o;
	enum sasl_mech		 m;
	int			 r;

	caps_offer(imap, &o);
	if (sasl_plaintext_check(tls, ep->allow_plaintext_auth, cred,
	    err) == -1 || sasl_choose(endpoint_auth(ep), cred->kind, &o,
	    &m, err) == -1)
		return -1;
	caps_forget(imap);	/* what the reply states, if anything */
	if (m != SASL_NATIVE) {
		if (sasl_authenticate(&io, m, cred, &peer, err) == -1) {
			if (err->cls == MH_ERR_AUTH)
				err->cls = sasl_refusal_class(err->reply);
			return -1;
		}
	} else if ((r = mailimap_login(imap, cred->user, cred->secret)) !=
	    MAILIMAP_NO_ERROR) {
		if (r == MAILIMAP_ERROR_LOGIN)
			return login_refused(imap, cred, err);
		return imap_session_fail(imap, r, "LOGIN", err);
	}
	/* capabilities often change after login: the reply's, else asked */
	if ((r = caps_stated_or_ask(imap)) != MAILIMAP_NO_ERROR)
		return imap_session_fail(imap, r, "CAPABILITY after login",
		    err);
	return 0;
}

/*
 * RFC 6855: ENABLE UTF8=ACCEPT where the server offers it; o->utf8 says
 * whether it answered ENABLED UTF8=ACCEPT.  Only a broken stream or an
 * unparsable reply is an error.
 */
static int
enable_utf8(mailimap *imap, struct imap_open *o, struct mh_err *err)
{
	struct mailimap_capability_data	*want, *got = NULL;
	struct mailimap_capability	*cap;
	clist				*l;
	clistiter			*it;
	char				*name;
	int				 r;

	o->utf8 = false;
	if (!o->want_utf8 || !imap_session_has_cap(imap, "ENABLE") ||
	    (!imap_session_has_cap(imap, "UTF8=ACCEPT") &&
	    !imap_session_has_cap(imap, "UTF8=ONLY")))
		return 0;
	if ((l = clist_new()) == NULL || (name = strdup("UTF8=ACCEPT")) ==
	    NULL || (cap = mailimap_capability_new(MAILIMAP_CAPABILITY_NAME,
	    NULL, name)) == NULL || clist_append(l, cap) != 0 ||
	    (want = mailimap_capability_data_new(l)) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;	/* (a few bytes leak on the way out) */
	}
	r = mailimap_enable(imap, want, &got);
	mailimap_capability_data_free(want);
	if (r == MAILIMAP_ERROR_STREAM || r == MAILIMAP_ERROR_PARSE)
		return imap_session_fail(imap, r, "ENABLE", err);
	if (r != MAILIMAP_NO_ERROR || got == NULL)
		return 0;
	for (it = clist_begin(got->cap_list); it != NULL;
	    it = clist_next(it)) {
		cap = clist_content(it);
		if (cap->cap_type == MAILIMAP_CAPABILITY_NAME &&
		    strcasecmp(cap->cap_data.cap_name, "UTF8=ACCEPT") == 0)
			o->utf8 = true;
	}
	mailimap_capability_data_free(got);
	return 0;
}

int
imap_session_open(const struct cfg_endpoint *ep, int timeout_ms,
    const struct sasl_cred *cred, struct imap_open *o, mailimap **out,
    struct mh_err *err)
{
	struct net_params	 p;
	mailimap		*imap = NULL;
	mailstream		*st;
	int			 r;
	bool			 preauth;

	*out = NULL;
	o->greeting[0] = '\0';
	o->tls = false;
	o->utf8 = false;
	endpoint_net_params(ep, timeout_ms, &p);
	if ((st = net_connect(&p, err)) == NULL)
		return -1;
	o->tls = net_is_tls(st);
	/* replies are short lines; the body fetch lifts the limit */
	net_set_line_limit(st, NET_LINE_LIMIT);
	if ((imap = mailimap_new(0, NULL)) == NULL) {
		mailstream_close(st);
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	if (o->logger != NULL)
		mailimap_set_logger(imap, o->logger, o->logger_ctx);
	r = mailimap_connect(imap, st);
	if (imap->imap_response != NULL)
		snprintf(o->greeting, sizeof o->greeting, "%s",
		    imap->imap_response);
	if (r != MAILIMAP_NO_ERROR_AUTHENTICATED &&
	    r != MAILIMAP_NO_ERROR_NON_AUTHENTICATED) {
		if (r == MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION) {
			mh_err_set(err, MH_ERR_TEMP, "the server refused the "
			    "connection");
			mh_err_reply(err, o->greeting, (size_t)-1);
		} else
			imap_session_fail(imap, r, "greeting", err);
		goto fail;
	}
	preauth = r == MAILIMAP_NO_ERROR_AUTHENTICATED;
	/* the greeting's [CAPABILITY ...], else asked */
	if ((r = caps_stated_or_ask(imap)) != MAILIMAP_NO_ERROR) {
		imap_session_fail(imap, r, "CAPABILITY", err);
		goto fail;
	}
	if (ep->tls == CFG_TLS_STARTTLS) {
		/* STARTTLS is not allowed once authenticated (RFC 3501
		   6.2.1): a PREAUTH where TLS was asked for would leave the
		   session in the clear or talking to whoever rewrote the
		   greeting (the mutt CVE-2020-14954 pattern) */
		if (preauth) {
			mh_err_set(err, MH_ERR_TLS, "IMAP %s:%u greeted with "
			    "PREAUTH, so STARTTLS is not possible: refused "
			    "(use tls = implicit, or tls = none if the "
			    "connection is trusted)", ep->host, ep->port);
			mh_err_reply(err, o->greeting, (size_t)-1);
			goto fail;
		}
		if (starttls(imap, &p, err) == -1)
			goto fail;
		o->tls = true;
	}
	if (imap->imap_state == MAILIMAP_STATE_NON_AUTHENTICATED &&
	    login(imap, ep, cred, o->tls, err) == -1)
		goto fail;
	if (enable_utf8(imap, o, err) == -1)
		goto fail;
	*out = imap;
	return 0;
fail:
	/* name the server, as POP3's errors and net's TLS errors do */
	if (err->cls != MH_ERR_TLS)
		mh_err_prefix(err, "IMAP %s:%u", ep->host, ep->port);
	imap_session_kill(imap);
	return -1;
}
