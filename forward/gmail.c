/*
 * gmail.c -- type = gmail: each message goes into the mailbox through the
 * Gmail API's users.messages.import (see target.h, target_impl.h).
 *
 * Per pass: one HTTP client, whose connections the pass's requests
 * share (keep-alive: no TCP and TLS handshake per message), an access
 * token (net/oauth2.h, cached here for the pass), the label names
 * resolved to IDs with one labels.list (a missing user
 * label is made with labels.create), then one import per message: a
 * multipart upload (metadata JSON + message/rfc822) below 5 MB, a
 * resumable upload (metadata POST -> session URI -> one streamed PUT,
 * resumed after a break with a status query) above.  Both stream the
 * spool file through a read callback: memory stays bounded whatever the
 * message size.
 *
 * Answers: 200 with an id -> delivered (the destination recorded is
 * "gmail:ID"); 401 -> the token is refreshed once and the request sent
 * again, then an auth error for the whole target; 429 and 403
 * rateLimitExceeded / userRateLimitExceeded -> wait (Retry-After, else
 * exponential backoff with jitter) and retry, at most MAX_TRIES times and
 * MAX_WAIT seconds in all, then temporary; 5xx and the network ->
 * temporary; 400 -> permanent with Google's message as the reply; 413 ->
 * permanent, too large; 403 otherwise (scope, API disabled) -> an auth
 * error for the whole target; any other status temporary.
 *
 * The look-up op (a message in doubt after a crash): messages.list with
 * q=rfc822msgid:ID (spam and trash included).  A message without a
 * Message-ID cannot be found that way: it is reported not found, so it is
 * imported again (at most one duplicate per crash).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "forward/target_impl.h"
#include "log.h"
#include "net/http.h"
#include "net/oauth2.h"

#define MULTIPART_MAX	(5 * 1024 * 1024)	/* resumable above */
#define MAX_TRIES	5	/* per request, rate limits and 401 */
#define MAX_WAIT	TARGET_GMAIL_MAX_WAIT_S	/* seconds of waiting per request,
					   in all */
#define MAX_RESUMES	3	/* status queries after a broken upload */
#define IMPORT_PATH	"/upload/gmail/v1/users/me/messages/import"
#define API_PATH	"/gmail/v1/users/me"

struct gmail {
	struct target	  base;		/* first */
	const struct cfg_target *t;
	int		  timeout_ms;
	char		 *token;	/* secret; this pass's access token */
	struct http_client *http;	/* the pass's connections to Google */
	char		**label_ids;	/* resolved once per pass */
	size_t		  nlabel_ids;
	bool		  labels_done;
	long		  api_status;	/* api_json's last HTTP status; 0:
					   none came */
	char		  email[256];	/* users.getProfile, for check */
	char		  labels_text[512];
};

/*
 * A request body: head, then the spool file's bytes, then tail, read
 * from pos on (a resumed upload starts past 0).  Nothing is copied but
 * what curl asks for.
 */
struct body {
	const char	*head;
	size_t		 head_len;
	int		 fd;
	uint64_t	 fsize;
	const char	*tail;
	size_t		 tail_len;
	uint64_t	 start;		/* where each try begins */
	uint64_t	 pos;
};

static uint64_t
body_len(const struct body *b)
{
	return b->head_len + b->fsize + b->tail_len;
}

/* Copies what lies in [off, off+len) of a piece at base..base+n. */
static size_t
piece(const char *p, uint64_t base, uint64_t n, uint64_t pos, char *buf,
    size_t len)
{
	uint64_t	k;

	if (pos < base || pos >= base + n)
		return 0;
	k = base + n - pos;
	if (k > len)
		k = len;
	memcpy(buf, p + (pos - base), (size_t)k);
	return (size_t)k;
}

static ssize_t
body_read(void *arg, char *buf, size_t len)
{
	struct body	*b = arg;
	uint64_t	 fend = b->head_len + b->fsize;
	size_t		 k;
	ssize_t		 got;

	if (b->pos < b->head_len)
		k = piece(b->head, 0, b->head_len, b->pos, buf, len);
	else if (b->pos < fend) {
		k = len;
		if (k > fend - b->pos)
			k = (size_t)(fend - b->pos);
		do
			got = pread(b->fd, buf, k,
			    (off_t)(b->pos - b->head_len));
		while (got == -1 && errno == EINTR);
		if (got <= 0)
			return -1;	/* the spool file shrank or failed */
		k = (size_t)got;
	} else
		k = piece(b->tail, fend, b->tail_len, b->pos, buf, len);
	b->pos += k;
	return (ssize_t)k;
}

/* req.body_seek: the body again from offset (past b->start). */
static int
body_seek(void *arg, uint64_t offset)
{
	struct body	*b = arg;

	if (offset > body_len(b) - b->start)
		return -1;
	b->pos = b->start + offset;
	return 0;
}

/* ---- requests ---- */

static void
sleep_s(double s)
{
	struct timespec	ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Google's error.message, or "" (into buf). */
static const char *
google_message(const struct http_response *r, char *buf, size_t size)
{
	json_t		*j, *m;

	buf[0] = '\0';
	if ((j = json_loadb(r->body, r->body_len, 0, NULL)) == NULL)
		return buf;
	m = json_object_get(json_object_get(j, "error"), "message");
	if (json_is_string(m))
		snprintf(buf, size, "%s", json_string_value(m));
	json_decref(j);
	return buf;
}

/* Whether r is a 403 whose reason is a rate limit. */
static bool
rate_limited(const struct http_response *r)
{
	json_t	*j, *errs, *e;
	size_t	 i;
	bool	 yes = false;
	const char *reason;

	if (r->status == 429)
		return true;
	if (r->status != 403 ||
	    (j = json_loadb(r->body, r->body_len, 0, NULL)) == NULL)
		return false;
	errs = json_object_get(json_object_get(j, "error"), "errors");
	json_array_foreach(errs, i, e) {
		reason = json_string_value(json_object_get(e, "reason"));
		if (reason != NULL && (strcmp(reason, "rateLimitExceeded") == 0
		    || strcmp(reason, "userRateLimitExceeded") == 0))
			yes = true;
	}
	json_decref(j);
	return yes;
}

/* The wait before try n (1-based) after a rate limit: r's Retry-After,
   else 2^n s (at most 32) plus up to a second of jitter. */
static double
backoff(const struct http_response *r, int n)
{
	unsigned	rnd = 0;

	if (r->retry_after >= 0)
		return (double)r->retry_after;
	if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
		rnd = (unsigned)time(NULL);
	return (double)(1u << (n < 5 ? n : 5)) + (double)(rnd % 1000) / 1000;
}

static int
get_token(struct gmail *g, bool force, struct mh_err *err)
{
	secret_free(g->token);
	g->token = NULL;
	if (oauth2_token(g->t->ep.oauth2, g->t->gmail.state_dir, force,
	    &g->token, err) == -1) {
		mh_err_prefix(err, "target %s", g->t->name);
		mh_err_scope(err, MH_SCOPE_TARGET);
		return -1;
	}
	return 0;
}

/*
 * Sends req (the bearer added here), its body b (NULL: none) from
 * b->start on each try.  A 401 gets one forced token refresh and a new
 * try; a rate limit waits and tries again (bounded).  Returns 0 with
 * resp for any other answer (the caller judges it), -1 with err: the
 * network (TEMP), 401 twice (AUTH, scope target), rate limits that did
 * not end (TEMP, scope target).
 */
static int
call(struct gmail *g, struct http_request *req, struct body *b,
    struct http_response *resp, struct mh_err *err)
{
	double	waited = 0, w;
	bool	refreshed = false;
	int	n;

	for (n = 1; n <= MAX_TRIES; n++) {
		if (g->token == NULL && get_token(g, false, err) == -1)
			return -1;
		req->bearer = g->token;
		req->timeout_ms = g->timeout_ms;
		req->connect_timeout_ms = g->timeout_ms;
		req->ca_file = g->t->ep.ca_file;
		if (b != NULL)
			b->pos = b->start;
		http_response_free(resp);
		if (http_client_request(g->http, req, resp, err) == -1)
			return -1;
		if (resp->status == 401 && !refreshed) {
			refreshed = true;
			if (get_token(g, true, err) == -1)
				return -1;
			continue;
		}
		if (resp->status == 401) {
			mh_err_set(err, MH_ERR_AUTH, "target %s: the Gmail API "
			    "refuses a fresh token of [oauth2:%s]; run "
			    "'mailhaul auth %s' (a gmail scope is needed)",
			    g->t->name, g->t->ep.oauth2->name, g->t->ep.oauth2->name);
			mh_err_scope(err, MH_SCOPE_TARGET);
			return -1;
		}
		if (!rate_limited(resp))
			return 0;
		w = backoff(resp, n);
		if (n == MAX_TRIES || waited + w > MAX_WAIT)
			break;
		log_info("target %s: rate limited (HTTP %ld); waiting %.1fs",
		    g->t->name, resp->status, w);
		sleep_s(w);
		waited += w;
	}
	mh_err_set(err, MH_ERR_TEMP, "target %s: the Gmail API's rate limit "
	    "did not end within %d tries", g->t->name, MAX_TRIES);
	mh_err_scope(err, MH_SCOPE_TARGET);
	return -1;
}

/* A GET or POST of JSON to API_PATH + path; *out the 2xx JSON answer. */
static int
api_json(struct gmail *g, const char *method, const char *path,
    json_t *send, json_t **out, struct mh_err *err)
{
	struct http_request	 req;
	struct http_response	 resp;
	char			*url, *body = NULL, msg[300];
	int			 rc = -1;

	*out = NULL;
	g->api_status = 0;
	memset(&req, 0, sizeof req);
	memset(&resp, 0, sizeof resp);
	url = xasprintf("%s%s%s", g->t->gmail.api_url, API_PATH, path);
	req.method = method;
	req.url = url;
	req.body_fd = -1;
	if (send != NULL) {
		body = json_dumps(send, JSON_COMPACT);
		req.body = body;
		req.body_len = strlen(body);
		req.content_type = "application/json; charset=UTF-8";
	}
	if (call(g, &req, NULL, &resp, err) == -1)
		goto out;
	g->api_status = resp.status;
	if (resp.status < 200 || resp.status > 299) {
		mh_err_reply(err, google_message(&resp, msg, sizeof msg),
		    (size_t)-1);
		mh_err_set(err, resp.status >= 500 ? MH_ERR_TEMP :
		    MH_ERR_PROTO, "target %s: %s %s: HTTP %ld", g->t->name,
		    method, path, resp.status);
		mh_err_scope(err, MH_SCOPE_TARGET);
		goto out;
	}
	if ((*out = json_loadb(resp.body, resp.body_len, 0, NULL)) == NULL ||
	    !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		mh_err_set(err, MH_ERR_PROTO, "target %s: %s %s: not a JSON "
		    "object", g->t->name, method, path);
		mh_err_scope(err, MH_SCOPE_TARGET);
		goto out;
	}
	rc = 0;
out:
	http_response_free(&resp);
	free(body);
	free(url);
	return rc;
}

/* ---- labels ---- */

/*
 * The ID of the label called name in a labels.list answer, or NULL: the
 * label of that very name, else one whose name differs only in case
 * (Gmail's label names are unique without regard to case: creating
 * "work" where "Work" exists is refused with 409, so the configured
 * name means the existing label; so do INBOX, UNREAD, STARRED...).
 */
static const char *
label_find(json_t *labels, const char *name)
{
	json_t		*l;
	size_t		 i;
	const char	*n;

	json_array_foreach(labels, i, l) {
		n = json_string_value(json_object_get(l, "name"));
		if (n != NULL && strcmp(n, name) == 0)
			return json_string_value(json_object_get(l, "id"));
	}
	json_array_foreach(labels, i, l) {
		n = json_string_value(json_object_get(l, "name"));
		if (n != NULL && strcasecmp(n, name) == 0)
			return json_string_value(json_object_get(l, "id"));
	}
	return NULL;
}

static int
label_create(struct gmail *g, const char *name, struct mh_err *err)
{
	json_t		*send, *got;
	const char	*id;

	send = json_pack("{s:s, s:s, s:s}", "name", name,
	    "labelListVisibility", "labelShow", "messageListVisibility",
	    "show");
	if (api_json(g, "POST", "/labels", send, &got, err) == -1) {
		json_decref(send);
		mh_err_prefix(err, "creating label '%s'", name);
		return -1;
	}
	json_decref(send);
	if ((id = json_string_value(json_object_get(got, "id"))) == NULL) {
		json_decref(got);
		mh_err_set(err, MH_ERR_PROTO, "target %s: labels.create "
		    "answered without an id", g->t->name);
		return -1;
	}
	log_info("target %s: created the Gmail label '%s'", g->t->name, name);
	g->label_ids[g->nlabel_ids++] = xstrdup(id);
	json_decref(got);
	return 0;
}

static void
labels_free(struct gmail *g)
{
	size_t	i;

	for (i = 0; i < g->nlabel_ids; i++)
		free(g->label_ids[i]);
	free(g->label_ids);
	g->label_ids = NULL;
	g->nlabel_ids = 0;
}

/*
 * After a 409 to creating name: lists the labels again into *got (the
 * old list freed) and takes name's ID from it.  0, or -1 with err as it
 * was (the 409) when it is still not there, or the new listing's error.
 */
static int
labels_relist(struct gmail *g, json_t **got, const char *name,
    struct mh_err *err)
{
	json_t		*again;
	const char	*id;
	struct mh_err	 lerr;

	mh_err_clear(&lerr);
	if (api_json(g, "GET", "/labels", NULL, &again, &lerr) == -1) {
		*err = lerr;
		return -1;
	}
	json_decref(*got);
	*got = again;
	if ((id = label_find(json_object_get(again, "labels"), name)) == NULL)
		return -1;
	log_info("target %s: the Gmail label '%s' was created meanwhile; "
	    "using it", g->t->name, name);
	g->label_ids[g->nlabel_ids++] = xstrdup(id);
	return 0;
}

/* Resolves the configured label names to IDs, once per pass. */
static int
labels_resolve(struct gmail *g, struct mh_err *err)
{
	const struct cfg_target_gmail *c = &g->t->gmail;
	json_t		*got;
	const char	*id;
	size_t		 i, len = 0;
	int		 rc = -1;

	if (g->labels_done)
		return 0;
	if (api_json(g, "GET", "/labels", NULL, &got, err) == -1)
		return -1;
	labels_free(g);		/* what a failed attempt left */
	g->label_ids = xcalloc(c->nlabels + 1, sizeof *g->label_ids);
	for (i = 0; i < c->nlabels; i++) {
		id = label_find(json_object_get(got, "labels"), c->labels[i]);
		if (id != NULL)
			g->label_ids[g->nlabel_ids++] = xstrdup(id);
		else if (label_create(g, c->labels[i], err) == -1) {
			/* 409: it exists now (another pass of this account's
			   target made it since the list): list again */
			if (g->api_status != 409 || labels_relist(g, &got,
			    c->labels[i], err) == -1)
				goto out;
		}
		if (len < sizeof g->labels_text)
			len += (size_t)snprintf(g->labels_text + len,
			    sizeof g->labels_text - len, "%s%s=%s",
			    i ? ", " : "", c->labels[i],
			    g->label_ids[g->nlabel_ids - 1]);
	}
	g->labels_done = true;
	rc = 0;
out:
	json_decref(got);
	return rc;
}

/* ---- import ---- */

/* The import URL for uploadType (query parameters as Google names them). */
static char *
import_url(const struct gmail *g, const char *upload_type)
{
	const struct cfg_target_gmail *c = &g->t->gmail;

	return xasprintf("%s%s?uploadType=%s&internalDateSource=%s"
	    "&neverMarkSpam=%s&processForCalendar=%s", c->api_url,
	    IMPORT_PATH, upload_type,
	    c->internal_date == CFG_GMAIL_DATE_RECEIVED ? "receivedTime" :
	    "dateHeader", c->never_mark_spam ? "true" : "false",
	    c->process_for_calendar ? "true" : "false");
}

/* {"labelIds": [...]} as a new string. */
static char *
metadata(const struct gmail *g)
{
	json_t	*ids = json_array(), *o;
	char	*s;
	size_t	 i;

	for (i = 0; i < g->nlabel_ids; i++)
		json_array_append_new(ids, json_string(g->label_ids[i]));
	o = json_pack("{s:o}", "labelIds", ids);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/*
 * Judges an import's answer: 200 with an id -> DELIVERED (res gets
 * "gmail:ID"); otherwise the outcome and err.
 */
static enum target_outcome
judge(struct gmail *g, const struct http_response *r,
    struct target_result *res, struct mh_err *err)
{
	json_t		*j;
	const char	*id;
	char		 msg[400], *dest;

	if (r->status == 200 || r->status == 201) {
		j = json_loadb(r->body, r->body_len, 0, NULL);
		id = json_string_value(json_object_get(j, "id"));
		if (id != NULL) {
			dest = xasprintf("gmail:%s", id);
			target_result_add(res, dest);
			free(dest);
			json_decref(j);
			return TARGET_DELIVERED;
		}
		json_decref(j);
		mh_err_set(err, MH_ERR_TEMP, "target %s: the import answered "
		    "HTTP %ld without a message id", g->t->name, r->status);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		return TARGET_TEMPFAIL;
	}
	mh_err_reply(err, google_message(r, msg, sizeof msg), (size_t)-1);
	if (r->status == 413) {
		mh_err_set(err, MH_ERR_PERM, "target %s: the message is too "
		    "large for Gmail (HTTP 413)", g->t->name);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		return TARGET_PERMFAIL;
	}
	if (r->status == 400) {
		mh_err_set(err, MH_ERR_PERM, "target %s: Gmail refused the "
		    "message (HTTP 400)", g->t->name);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		return TARGET_PERMFAIL;
	}
	if (r->status == 403) {
		/* not a rate limit (call() waited those out): the token's
		   scope, the API not enabled -- the setup, not the message */
		mh_err_set(err, MH_ERR_AUTH, "target %s: the Gmail API refuses "
		    "the import (HTTP 403): does [oauth2:%s] have the gmail."
		    "modify scope and the project the Gmail API enabled?",
		    g->t->name, g->t->ep.oauth2->name);
		mh_err_scope(err, MH_SCOPE_TARGET);
		return TARGET_TEMPFAIL;
	}
	mh_err_set(err, MH_ERR_TEMP, "target %s: the Gmail API answered "
	    "HTTP %ld", g->t->name, r->status);
	mh_err_scope(err, MH_SCOPE_TARGET);	/* 5xx, 404, 408... */
	return TARGET_TEMPFAIL;
}

/* A network failure or a refusal before any answer: the outcome. */
static enum target_outcome
failed(struct mh_err *err)
{
	if (err->scope == MH_SCOPE_NONE)
		mh_err_scope(err, err->cls == MH_ERR_LOCAL ? MH_SCOPE_MESSAGE :
		    MH_SCOPE_TARGET);
	if (err->cls == MH_ERR_AUTH || err->cls == MH_ERR_TLS)
		return TARGET_TEMPFAIL;		/* the target, not the message */
	if (err->cls != MH_ERR_TEMP && err->cls != MH_ERR_LOCAL)
		err->cls = MH_ERR_TEMP;
	return TARGET_TEMPFAIL;
}

static enum target_outcome
import_multipart(struct gmail *g, const struct target_msg *m,
    const char *rcvd, struct target_result *res, struct mh_err *err)
{
	struct http_request	 req;
	struct http_response	 resp;
	struct body		 b;
	unsigned char		 rnd[16];
	char			 bnd[48], ctype[96], *meta, *head, *tail, *url;
	enum target_outcome	 out;
	size_t			 i;

	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
		memset(rnd, 0x5a, sizeof rnd);
	snprintf(bnd, sizeof bnd, "mailhaul_");
	for (i = 0; i < sizeof rnd; i++)
		snprintf(bnd + 9 + 2 * i, 3, "%02x", rnd[i]);
	snprintf(ctype, sizeof ctype, "multipart/related; boundary=%s", bnd);
	meta = metadata(g);
	head = xasprintf("--%s\r\nContent-Type: application/json; "
	    "charset=UTF-8\r\n\r\n%s\r\n--%s\r\nContent-Type: message/rfc822"
	    "\r\n\r\n%s", bnd, meta, bnd, rcvd);
	tail = xasprintf("\r\n--%s--\r\n", bnd);
	memset(&b, 0, sizeof b);
	b.head = head;
	b.head_len = strlen(head);
	b.fd = m->fd;
	b.fsize = m->size;
	b.tail = tail;
	b.tail_len = strlen(tail);
	url = import_url(g, "multipart");
	memset(&req, 0, sizeof req);
	memset(&resp, 0, sizeof resp);
	req.method = "POST";
	req.url = url;
	req.body_fd = -1;
	req.content_type = ctype;
	req.body_read = body_read;
	/* no body_seek: an import that may have been applied is not sent
	   again blindly on a new connection (it fails, the message is in
	   doubt and looked up) */
	req.body_arg = &b;
	req.body_read_len = (int64_t)body_len(&b);
	if (call(g, &req, &b, &resp, err) == -1)
		out = failed(err);
	else
		out = judge(g, &resp, res, err);
	http_response_free(&resp);
	free(url);
	free(tail);
	free(head);
	free(meta);
	return out;
}

/*
 * Starts a resumable session: the metadata POSTed with the upload's type
 * and length.  0 with the answer in resp (200 with a Location: the
 * session URI); -1 with err when there was no answer.
 */
static int
resumable_start(struct gmail *g, uint64_t len, struct http_response *resp,
    struct mh_err *err)
{
	struct http_request	 req;
	char			 hlen[64], *url, *meta;
	const char		*hdrs[3];
	int			 rc;

	snprintf(hlen, sizeof hlen, "X-Upload-Content-Length: %llu",
	    (unsigned long long)len);
	hdrs[0] = "X-Upload-Content-Type: message/rfc822";
	hdrs[1] = hlen;
	hdrs[2] = NULL;
	url = import_url(g, "resumable");
	meta = metadata(g);
	memset(&req, 0, sizeof req);
	req.method = "POST";
	req.url = url;
	req.body_fd = -1;
	req.body = meta;
	req.body_len = strlen(meta);
	req.content_type = "application/json; charset=UTF-8";
	req.headers = hdrs;
	rc = call(g, &req, NULL, resp, err);
	free(meta);
	free(url);
	return rc;
}

/*
 * After a broken PUT: asks the session how much it has (PUT with
 * Content-Range: bytes * / N).  308 -> *next is the first byte it lacks;
 * 200/201 -> the upload is complete and resp holds the answer (*next =
 * N).  -1 with err otherwise.
 */
static int
resumable_status(struct gmail *g, const char *session, uint64_t n,
    uint64_t *next, struct http_response *resp, struct mh_err *err)
{
	struct http_request	 req;
	char			 cr[80];
	const char		*hdrs[3], *dash;

	snprintf(cr, sizeof cr, "Content-Range: bytes */%llu",
	    (unsigned long long)n);
	hdrs[0] = cr;
	hdrs[1] = "Content-Length: 0";
	hdrs[2] = NULL;
	memset(&req, 0, sizeof req);
	req.method = "PUT";
	req.url = session;
	req.body_fd = -1;
	req.headers = hdrs;
	if (call(g, &req, NULL, resp, err) == -1)
		return -1;
	if (resp->status == 200 || resp->status == 201) {
		*next = n;
		return 0;
	}
	if (resp->status != 308) {
		mh_err_set(err, MH_ERR_TEMP, "target %s: the upload session "
		    "answered HTTP %ld to a status query", g->t->name,
		    resp->status);
		return -1;
	}
	*next = 0;
	if (resp->range != NULL && (dash = strchr(resp->range, '-')) != NULL)
		*next = strtoull(dash + 1, NULL, 10) + 1;
	if (*next > n)
		*next = n;
	return 0;
}

/* PUTs the bytes of b from b->start to the session; resp the answer. */
static int
resumable_put(struct gmail *g, const char *session, struct body *b,
    struct http_response *resp, struct mh_err *err)
{
	struct http_request	 req;
	char			 cr[100];
	const char		*hdrs[2] = { NULL, NULL };
	uint64_t		 n = body_len(b);

	if (b->start > 0) {
		snprintf(cr, sizeof cr, "Content-Range: bytes %llu-%llu/%llu",
		    (unsigned long long)b->start, (unsigned long long)(n - 1),
		    (unsigned long long)n);
		hdrs[0] = cr;
	}
	memset(&req, 0, sizeof req);
	req.method = "PUT";
	req.url = session;
	req.body_fd = -1;
	req.content_type = "message/rfc822";
	req.headers = hdrs;
	req.body_read = body_read;
	req.body_seek = body_seek;
	req.body_arg = b;
	req.body_read_len = (int64_t)(n - b->start);
	return call(g, &req, b, resp, err);
}

static enum target_outcome
import_resumable(struct gmail *g, const struct target_msg *m,
    const char *rcvd, struct target_result *res, struct mh_err *err)
{
	struct http_response	 resp;
	struct body		 b;
	char			*session = NULL;
	enum target_outcome	 out;
	uint64_t		 next;
	int			 i, r;

	memset(&b, 0, sizeof b);
	memset(&resp, 0, sizeof resp);
	b.head = rcvd;
	b.head_len = strlen(rcvd);
	b.fd = m->fd;
	b.fsize = m->size;
	if (resumable_start(g, body_len(&b), &resp, err) == -1) {
		out = failed(err);
		goto out;
	}
	if (resp.status != 200 || resp.location == NULL) {
		if (resp.status == 200)
			resp.status = 502;	/* no session URI: temporary */
		out = judge(g, &resp, res, err);
		goto out;
	}
	if (http_url_allowed(resp.location, err) == -1) {
		out = failed(err);
		goto out;
	}
	session = xstrdup(resp.location);
	r = resumable_put(g, session, &b, &resp, err);
	for (i = 0; i < MAX_RESUMES && (r == -1 || resp.status >= 500); i++) {
		if (r == -1 && err->cls != MH_ERR_TEMP)
			break;
		log_info("target %s: the upload broke; asking the session "
		    "how much it has", g->t->name);
		mh_err_clear(err);
		if (resumable_status(g, session, body_len(&b), &next, &resp,
		    err) == -1) {
			r = -1;
			break;
		}
		if (next == body_len(&b))
			break;	/* complete: resp holds the answer */
		b.start = next;
		r = resumable_put(g, session, &b, &resp, err);
	}
	out = r == -1 ? failed(err) : judge(g, &resp, res, err);
out:
	http_response_free(&resp);
	free(session);
	return out;
}

/* ---- ops ---- */

static int
gmail_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	struct gmail	*g;

	(void)cred;	/* no AUTH: a bearer token per request */
	if (t->ep.oauth2 == NULL || t->gmail.api_url == NULL ||
	    t->gmail.state_dir == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: a gmail target needs "
		    "oauth2 = NAME", t->name);
		return -1;
	}
	g = xcalloc(1, sizeof *g);
	g->t = t;
	g->timeout_ms = 60000;
	g->http = http_client_new();
	*out = &g->base;
	return 0;
}

static void
gmail_set_timeout(struct target *tg, int timeout_ms)
{
	((struct gmail *)(void *)tg)->timeout_ms = timeout_ms > 0 ?
	    timeout_ms : 60000;
}

/* check: the token, the profile's address, the labels. */
static int
gmail_connect(struct target *tg, struct mh_err *err)
{
	struct gmail	*g = (struct gmail *)(void *)tg;
	json_t		*got;
	const char	*addr;

	if (api_json(g, "GET", "/profile", NULL, &got, err) == -1)
		return -1;
	addr = json_string_value(json_object_get(got, "emailAddress"));
	snprintf(g->email, sizeof g->email, "%s", addr != NULL ? addr : "?");
	json_decref(got);
	return labels_resolve(g, err);
}

static void
gmail_get_info(struct target *tg, struct target_info *info)
{
	struct gmail	*g = (struct gmail *)(void *)tg;

	snprintf(info->greeting, sizeof info->greeting, "Gmail API %.100s, "
	    "mailbox %.120s", g->t->gmail.api_url, g->email[0] ? g->email :
	    "?");
	snprintf(info->capabilities, sizeof info->capabilities, "labels: "
	    "%.480s", g->labels_text);
	info->tls = false;	/* curl verified it; no peer details here */
}

static int
gmail_seen(struct target *tg, const struct target_msg *m, bool *found,
    struct mh_err *err)
{
	struct gmail	*g = (struct gmail *)(void *)tg;
	json_t		*got, *msgs;
	char		*id, *q, *path;
	size_t		 len;
	int		 rc;

	*found = false;
	if (m->message_id == NULL || (len = strlen(m->message_id)) < 3 ||
	    m->message_id[0] != '<' || m->message_id[len - 1] != '>' ||
	    strpbrk(m->message_id, " \t\"") != NULL)
		return 0;	/* cannot be searched: imported again */
	id = xasprintf("rfc822msgid:%.*s", (int)(len - 2), m->message_id + 1);
	q = http_escape(id);
	path = xasprintf("/messages?q=%s&includeSpamTrash=true", q);
	rc = api_json(g, "GET", path, NULL, &got, err);
	if (rc == 0) {
		msgs = json_object_get(got, "messages");
		*found = json_is_array(msgs) && json_array_size(msgs) > 0;
		json_decref(got);
	}
	free(path);
	free(q);
	free(id);
	return rc;
}

static enum target_outcome
gmail_deliver(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	struct gmail	*g = (struct gmail *)(void *)tg;
	const char	*rcvd;

	if (m->ndone > 0) {
		target_result_add(res, m->done[0]);
		return TARGET_DELIVERED;
	}
	if (labels_resolve(g, err) == -1)
		return failed(err);
	rcvd = g->t->received && m->received != NULL ? m->received : "";
	if (m->size + strlen(rcvd) < MULTIPART_MAX)
		return import_multipart(g, m, rcvd, res, err);
	return import_resumable(g, m, rcvd, res, err);
}

static void
gmail_close(struct target *tg)
{
	struct gmail	*g = (struct gmail *)(void *)tg;

	secret_free(g->token);
	labels_free(g);
	http_client_free(g->http);
	free(g);
}

const struct target_ops gmail_target_ops = {
	.name = "gmail",
	.open = gmail_open,
	.set_timeout = gmail_set_timeout,
	.connect = gmail_connect,
	.get_info = gmail_get_info,
	.seen = gmail_seen,
	.deliver = gmail_deliver,
	.close = gmail_close,
};
