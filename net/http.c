/* http.c -- HTTPS requests with libcurl (see http.h) */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "net/http.h"

#define MAX_BODY_DEFAULT	(1024 * 1024)

struct sink {
	struct http_response	*resp;
	size_t			 cap;		/* allocated */
	size_t			 max;
	bool			 too_big;
};

/* jansson's free: the JSON parsed here holds tokens (oauth2.c). */
static void
json_wiping_free(void *p)
{
	if (p != NULL) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

void
http_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	json_set_alloc_funcs(malloc, json_wiping_free);
}

/*
 * url as it may appear in an error: without its query and fragment (a
 * resumable upload's session URI carries its upload_id there, enough to
 * write into the mailbox).  New string.
 */
static char *
url_for_log(const char *url)
{
	return xasprintf("%.*s", (int)strcspn(url, "?#"), url);
}

static bool
loopback_host(const char *h)
{
	return strcmp(h, "127.0.0.1") == 0 || strcmp(h, "[::1]") == 0 ||
	    strcasecmp(h, "localhost") == 0;
}

/*
 * Parsed by libcurl itself, so that the host checked is the host it
 * connects to: "http://localhost:80@example.com/" is example.com with a
 * user name, which a look at the text after "http://" would take for
 * localhost.  A URL with a user name or password is refused whatever
 * its scheme (none of ours has one).
 */
int
http_url_allowed(const char *url, struct mh_err *err)
{
	CURLU		*u = curl_url();
	char		*scheme = NULL, *host = NULL, *user = NULL, *pw = NULL;
	char		*shown;
	const char	*why = "not an https URL";
	int		 rc = -1;

	if (u == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    host[0] == '\0')
		goto out;
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK) {
		why = "a user name or password in the URL";
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0)
		rc = 0;
	else if (strcasecmp(scheme, "http") == 0) {
		why = "only https, or http to 127.0.0.1, [::1] or localhost";
		if (loopback_host(host))
			rc = 0;
	}
out:
	if (rc == -1) {
		shown = url_for_log(url);
		mh_err_set(err, MH_ERR_LOCAL, "refusing %s: %s", shown, why);
		free(shown);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(pw);
	curl_url_cleanup(u);
	return rc;
}

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	struct sink		*s = arg;
	struct http_response	*r = s->resp;
	size_t			 len = size * n;
	char			*grown;

	if (r->body_len + len > s->max) {
		s->too_big = true;
		return 0;	/* curl stops with CURLE_WRITE_ERROR */
	}
	if (r->body_len + len + 1 > s->cap) {
		s->cap = (r->body_len + len + 1) * 2;
		if (s->cap > s->max + 1)
			s->cap = s->max + 1;
		/* not realloc: what it leaves behind may hold a token */
		grown = xmalloc(s->cap);
		if (r->body != NULL) {
			memcpy(grown, r->body, r->body_len);
			explicit_bzero(r->body, r->body_len);
			free(r->body);
		}
		r->body = grown;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return len;
}

/* The value of header "name:" in data (len bytes) as a new string. */
static char *
header_value(const char *data, size_t len, const char *name)
{
	size_t	n = strlen(name);

	if (len <= n || len > 8192 || strncasecmp(data, name, n) != 0)
		return NULL;
	data += n;
	len -= n;
	while (len > 0 && (*data == ' ' || *data == '\t')) {
		data++;
		len--;
	}
	while (len > 0 && strchr(" \t\r\n", data[len - 1]) != NULL)
		len--;
	return xstrndup(data, len);
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
	struct sink	*s = arg;
	size_t		 len = size * n;
	char		 buf[64], *v1;
	long long	 v;
	char		*end;

	if ((v1 = header_value(data, len, "Location:")) != NULL) {
		free(s->resp->location);
		s->resp->location = v1;
	} else if ((v1 = header_value(data, len, "Range:")) != NULL) {
		free(s->resp->range);
		s->resp->range = v1;
	}

	if (len > 12 && len < sizeof buf + 12 &&
	    strncasecmp(data, "Retry-After:", 12) == 0) {
		memcpy(buf, data + 12, len - 12);
		buf[len - 12] = '\0';
		errno = 0;
		v = strtoll(buf, &end, 10);
		if (errno == 0 && end != buf && v >= 0 && v < 86400 * 7)
			s->resp->retry_after = v;
	}
	return len;
}

/* A body_fd read as a body_read callback (arg: the int fd). */
static ssize_t
read_fd(void *arg, char *buf, size_t len)
{
	const int	*fd = arg;
	ssize_t		 got;

	do
		got = read(*fd, buf, len);
	while (got == -1 && errno == EINTR);
	return got;
}

struct cb_body {
	ssize_t	(*fn)(void *, char *, size_t);
	void	*arg;
	int	(*seek)(void *, uint64_t);	/* NULL: cannot */
	int	 fd;				/* a body_fd, or -1 */
	off_t	 fd_base;			/* where it stood at first */
};

/* libcurl's rewind of an upload (a request sent again on a new
   connection): to offset from the body's start. */
static int
on_seek_cb(void *arg, curl_off_t offset, int origin)
{
	const struct cb_body	*b = arg;

	if (origin != SEEK_SET || offset < 0)
		return CURL_SEEKFUNC_CANTSEEK;
	if (b->fd >= 0)
		return lseek(b->fd, b->fd_base + (off_t)offset, SEEK_SET) ==
		    -1 ? CURL_SEEKFUNC_FAIL : CURL_SEEKFUNC_OK;
	if (b->seek == NULL)
		return CURL_SEEKFUNC_CANTSEEK;
	return b->seek(b->arg, (uint64_t)offset) == 0 ? CURL_SEEKFUNC_OK :
	    CURL_SEEKFUNC_FAIL;
}

static size_t
on_read_cb(char *buf, size_t size, size_t n, void *arg)
{
	const struct cb_body	*b = arg;
	ssize_t			 got = b->fn(b->arg, buf, size * n);

	return got < 0 ? CURL_READFUNC_ABORT : (size_t)got;
}

static enum mh_err_class
curl_class(CURLcode c)
{
	switch (c) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		return MH_ERR_TLS;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_OUT_OF_MEMORY:
	case CURLE_READ_ERROR:
	case CURLE_ABORTED_BY_CALLBACK:
		return MH_ERR_LOCAL;
	default:
		return MH_ERR_TEMP;
	}
}

/* Sets every option of req on h; headers collects what must be freed. */
static int
setup(CURL *h, const struct http_request *req, struct curl_slist **headers,
    char **auth, struct sink *s, int *fd, struct cb_body *cb)
{
	const char *const	*p;
	char			*ct;
	long			 cto, to;
	CURLcode		 c = CURLE_OK;

	cto = req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 30000;
	to = req->timeout_ms > 0 ? req->timeout_ms : 60000;
#define SET(o, v)	do {						\
		if (c == CURLE_OK)					\
			c = curl_easy_setopt(h, o, v);			\
	} while (0)
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (req->ca_file != NULL) {
		SET(CURLOPT_CAINFO, req->ca_file);
		SET(CURLOPT_CAPATH, NULL);
	}
	SET(CURLOPT_CONNECTTIMEOUT_MS, cto);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, (to + 999) / 1000);
	SET(CURLOPT_USERAGENT, "mailhaul");
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, s);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, s);
	if (req->method != NULL && strcmp(req->method, "GET") != 0 &&
	    strcmp(req->method, "POST") != 0)
		SET(CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body != NULL) {
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		SET(CURLOPT_POSTFIELDS, req->body);
	} else if (req->body_fd >= 0 || req->body_read != NULL) {
		cb->fd = -1;
		if (req->body_fd >= 0) {
			*fd = req->body_fd;
			cb->fn = read_fd;
			cb->arg = fd;
			cb->fd = req->body_fd;
			if ((cb->fd_base = lseek(cb->fd, 0, SEEK_CUR)) == -1)
				cb->fd_base = 0;
		} else {
			cb->fn = req->body_read;
			cb->arg = req->body_arg;
			cb->seek = req->body_seek;
		}
		SET(CURLOPT_UPLOAD, 1L);
		SET(CURLOPT_READFUNCTION, on_read_cb);
		SET(CURLOPT_READDATA, cb);
		SET(CURLOPT_SEEKFUNCTION, on_seek_cb);
		SET(CURLOPT_SEEKDATA, cb);
		SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)(req->body_fd >= 0 ?
		    req->body_fd_len : req->body_read_len));
		if (req->method == NULL || strcmp(req->method, "PUT") != 0)
			SET(CURLOPT_CUSTOMREQUEST, req->method != NULL ?
			    req->method : "POST");
	} else if (req->method != NULL && strcmp(req->method, "POST") == 0) {
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_POSTFIELDSIZE, 0L);
		SET(CURLOPT_POSTFIELDS, "");
	}
	if (req->content_type != NULL) {
		ct = xasprintf("Content-Type: %s", req->content_type);
		*headers = curl_slist_append(*headers, ct);
		free(ct);
	}
	if (req->bearer != NULL) {
		*auth = xasprintf("Authorization: Bearer %s", req->bearer);
		*headers = curl_slist_append(*headers, *auth);
	}
	*headers = curl_slist_append(*headers, "Accept: application/json");
	*headers = curl_slist_append(*headers, "Expect:");
	for (p = req->headers; p != NULL && *p != NULL; p++)
		*headers = curl_slist_append(*headers, *p);
	SET(CURLOPT_HTTPHEADER, *headers);
#undef SET
	return c == CURLE_OK ? 0 : -1;
}

struct http_client {
	CURL	*h;		/* NULL until the first request */
};

struct http_client *
http_client_new(void)
{
	return xcalloc(1, sizeof(struct http_client));
}

void
http_client_free(struct http_client *c)
{
	if (c == NULL)
		return;
	if (c->h != NULL)
		curl_easy_cleanup(c->h);
	free(c);
}

int
http_client_request(struct http_client *c, const struct http_request *req,
    struct http_response *resp, struct mh_err *err)
{
	struct curl_slist	*headers = NULL, *h;
	struct sink		 s;
	struct cb_body		 cb;
	char			*auth = NULL, *ct = NULL, *shown;
	CURLcode		 e;
	int			 rc = -1, fd = -1;

	memset(resp, 0, sizeof *resp);
	resp->retry_after = -1;
	if (http_url_allowed(req->url, err) == -1)
		return -1;
	shown = url_for_log(req->url);
	/* a reset keeps the live connections and caches, no option */
	if (c->h != NULL)
		curl_easy_reset(c->h);
	else if ((c->h = curl_easy_init()) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "curl_easy_init failed");
		free(shown);
		return -1;
	}
	memset(&s, 0, sizeof s);
	s.resp = resp;
	s.max = req->max_body > 0 ? req->max_body : MAX_BODY_DEFAULT;
	memset(&cb, 0, sizeof cb);
	if (setup(c->h, req, &headers, &auth, &s, &fd, &cb) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot set up a request to %s",
		    shown);
		goto out;
	}
	if ((e = curl_easy_perform(c->h)) != CURLE_OK) {
		if (s.too_big)
			mh_err_set(err, MH_ERR_PROTO, "%s: the response is "
			    "longer than %zu bytes", shown, s.max);
		else
			mh_err_set(err, curl_class(e), "%s: %s", shown,
			    curl_easy_strerror(e));
		goto out;
	}
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &resp->status);
	if (curl_easy_getinfo(c->h, CURLINFO_CONTENT_TYPE, &ct) ==
	    CURLE_OK && ct != NULL)
		resp->content_type = xstrdup(ct);
	if (resp->body == NULL)
		resp->body = xcalloc(1, 1);
	rc = 0;
out:
	/* nothing of this request's may be used by the handle again; the
	   list's copy of the bearer token is wiped with ours */
	curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, NULL);
	for (h = headers; h != NULL; h = h->next)
		if (strncasecmp(h->data, "Authorization:", 14) == 0)
			explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(headers);
	secret_free(auth);
	free(shown);
	return rc;
}

int
http_request(const struct http_request *req, struct http_response *resp,
    struct mh_err *err)
{
	struct http_client	*c = http_client_new();
	int			 rc;

	rc = http_client_request(c, req, resp, err);
	http_client_free(c);
	return rc;
}

void
http_response_free(struct http_response *resp)
{
	if (resp == NULL)
		return;
	/* a token endpoint's answer holds tokens */
	if (resp->body != NULL)
		explicit_bzero(resp->body, resp->body_len);
	free(resp->body);
	free(resp->content_type);
	free(resp->location);
	free(resp->range);
	memset(resp, 0, sizeof *resp);
	resp->retry_after = -1;
}

char *
http_escape(const char *s)
{
	static const char	 hex[] = "0123456789ABCDEF";
	char			*out = xmalloc(strlen(s) * 3 + 1), *o = out;
	unsigned char		 c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c) != NULL)
			*o++ = (char)c;
		else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

char *
http_form(const char *const *pairs)
{
	char	*out = xcalloc(1, 1), *k, *v, *next;
	size_t	 i;

	for (i = 0; pairs[i] != NULL; i += 2) {
		if (pairs[i + 1] == NULL)
			continue;
		k = http_escape(pairs[i]);
		v = http_escape(pairs[i + 1]);
		next = xasprintf("%s%s%s=%s", out, *out ? "&" : "", k, v);
		secret_free(out);
		secret_free(v);
		free(k);
		out = next;
	}
	return out;
}
