/*
 * http.h -- a small HTTPS client over libcurl (the OpenSSL build), for
 * OAuth2 token endpoints and the Gmail API.  No HTTP is written
 * by hand here: libcurl speaks it.
 *
 * Rules every request follows:
 *  - https only, except for http://127.0.0.1, http://[::1] and
 *    http://localhost (tests, local helpers); anything else is refused
 *    before a byte is sent (MH_ERR_LOCAL);
 *  - certificates are always verified (peer and host name), against the
 *    system store or req->ca_file; redirects are not followed;
 *  - a connect timeout and a low-speed limit (no progress for
 *    timeout_ms) bound every request;
 *  - the response body is kept in memory up to max_body bytes; a longer
 *    one fails the request (MH_ERR_PROTO).
 * A response with any status code is a success of http_request(): the
 * caller judges the status.  Errors: MH_ERR_TEMP (connection, timeout,
 * DNS), MH_ERR_TLS (certificate), MH_ERR_LOCAL (bad URL, file), with our
 * text only (never a header value or a body we sent).
 */
#ifndef MAILHAUL_NET_HTTP_H
#define MAILHAUL_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

struct http_request {
	const char	*method;	/* "GET", "POST", "PUT", ...; NULL: GET */
	const char	*url;
	const char	*ca_file;	/* NULL: the system store */
	const char	*bearer;	/* NULL, or "Authorization: Bearer" */
	const char	*content_type;	/* with a body */
	const char	*body;		/* in memory, body_len bytes, or NULL */
	size_t		 body_len;
	int		 body_fd;	/* -1, or a body streamed from this fd */
	int64_t		 body_fd_len;	/* its length (-1: chunked) */
	/* or a body produced by a callback (when body_read is set and body
	   and body_fd are not): returns the bytes put in buf (at most len),
	   0 at the end, -1 to abort the request (MH_ERR_LOCAL) */
	ssize_t		(*body_read)(void *arg, char *buf, size_t len);
	void		*body_arg;
	int64_t		 body_read_len;	/* its length (-1: chunked) */
	/* with body_read: makes the next body_read start at byte offset of
	   the body again, 0 or -1; for a request libcurl sends again on a
	   new connection when a kept-alive one was closed under it, which
	   may repeat a request the server applied: set it only for an
	   idempotent one.  NULL: such a request fails (MH_ERR_TEMP).  A
	   body_fd is sought by itself (from where it stood when the
	   request began). */
	int		(*body_seek)(void *arg, uint64_t offset);
	const char	*const *headers; /* extra "Name: value", NULL-ended */
	int		 connect_timeout_ms;	/* 0: 30 s */
	int		 timeout_ms;		/* no progress; 0: 60 s */
	size_t		 max_body;		/* 0: 1 MiB */
};

struct http_response {
	long	 status;	/* 200, 400, ... */
	char	*body;		/* NUL-terminated, body_len bytes; owned */
	size_t	 body_len;
	int64_t	 retry_after;	/* seconds from Retry-After, -1 if none */
	char	*content_type;	/* owned, or NULL */
	char	*location;	/* the Location header, owned, or NULL */
	char	*range;		/* the Range header (a 308 of a resumable
				   upload), owned, or NULL */
};

/* Once per process (net_init() does not do it): curl_global_init. */
void	http_init(void);

/* 0 if url may be used: https://, or http:// to a loopback host. */
int	http_url_allowed(const char *url, struct mh_err *err);

/*
 * Sends req and fills resp (which the caller frees with
 * http_response_free, also after a failure).  Returns 0 when a response
 * came back (any status), -1 with err set otherwise.  One request, on a
 * connection of its own.
 */
int	http_request(const struct http_request *req,
	    struct http_response *resp, struct mh_err *err);

/*
 * A client for a run of requests (the Gmail target's pass): its
 * requests reuse its connections (HTTP/1.1 keep-alive, TLS sessions)
 * and the CA certificates read for them, instead of a TCP and TLS
 * handshake and a read of the CA file (some 20 ms of CPU for the
 * system's) per request.  Nothing but connections is carried from one
 * request to the next: every option, header and token is set anew.
 * One thread at a time.  http_client_new never fails (the handle is
 * made at the first request); http_client_free(NULL) is a no-op.
 */
struct http_client;
struct http_client *http_client_new(void);
void	http_client_free(struct http_client *c);

/* http_request, through c's connections. */
int	http_client_request(struct http_client *c,
	    const struct http_request *req, struct http_response *resp,
	    struct mh_err *err);

/* Frees resp's fields and resets it; NULL fields are fine. */
void	http_response_free(struct http_response *resp);

/*
 * "a=b&c=d" from NULL-ended pairs {name, value, name, value, ..., NULL},
 * each part form-urlencoded; a NULL value skips its pair.  New string,
 * caller frees (secret_free when it holds a secret).
 */
char	*http_form(const char *const *pairs);

/* URL-encodes s (RFC 3986 unreserved kept).  New string. */
char	*http_escape(const char *s);

#endif
