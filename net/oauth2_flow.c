/* oauth2_flow.c -- `mailhaul auth`: authorization code + PKCE, device flow */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "net/oauth2.h"
#include "net/oauth2_flow.h"

#define REQUEST_MAX	8192	/* a redirect's request line */
#define CONN_TIMEOUT_MS	10000	/* a connection must send it within */
#define WAIT_DEFAULT_S	600

static const char page_ok[] =
    "<!doctype html><title>mailhaul</title><p>mailhaul has the "
    "authorization. You can close this window.</p>";
static const char page_err[] =
    "<!doctype html><title>mailhaul</title><p>The authorization was not "
    "given. See the terminal.</p>";

/* base64url without padding of n bytes into a new string. */
static char *
b64url(const unsigned char *in, size_t n)
{
	char	*out = xmalloc(4 * ((n + 2) / 3) + 1), *p;

	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	for (p = out; *p != '\0'; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
		else if (*p == '=') {
			*p = '\0';
			break;
		}
	}
	return out;
}

static char *
random_token(size_t bytes, struct mh_err *err)
{
	unsigned char	buf[64];

	if (bytes > sizeof buf || RAND_bytes(buf, (int)bytes) != 1) {
		mh_err_set(err, MH_ERR_LOCAL, "no random bytes");
		return NULL;
	}
	return b64url(buf, bytes);
}

/* The S256 challenge of verifier (RFC 7636 4.2). */
static char *
pkce_challenge(const char *verifier)
{
	unsigned char	md[EVP_MAX_MD_SIZE];
	unsigned	len = 0;

	EVP_Digest(verifier, strlen(verifier), md, &len, EVP_sha256(), NULL);
	return b64url(md, len);
}

/* ---- the loopback listener ---- */

static int
listen_loopback(unsigned *port, struct mh_err *err)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;
	int			fd;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(fd, 4) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		goto fail;
	*port = ntohs(sin.sin_port);
	return fd;
fail:
	mh_err_set(err, MH_ERR_LOCAL, "loopback listener: %s",
	    strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The decoded value of name in the query q ("a=b&c=d"), or NULL. */
static char *
query_get(const char *q, const char *name)
{
	size_t		 nl = strlen(name), i;
	const char	*p = q, *e;
	char		*out, *o;

	while (p != NULL && *p != '\0') {
		e = p + strcspn(p, "&");
		if ((size_t)(e - p) > nl && strncmp(p, name, nl) == 0 &&
		    p[nl] == '=') {
			o = out = xmalloc((size_t)(e - p) + 1);
			for (i = nl + 1; p + i < e; i++) {
				if (p[i] == '+')
					*o++ = ' ';
				else if (p[i] == '%' && p + i + 2 < e &&
				    hexval(p[i + 1]) >= 0 &&
				    hexval(p[i + 2]) >= 0) {
					*o++ = (char)(hexval(p[i + 1]) * 16 +
					    hexval(p[i + 2]));
					i += 2;
				} else
					*o++ = p[i];
			}
			*o = '\0';
			return out;
		}
		p = *e == '&' ? e + 1 : e;
	}
	return NULL;
}

static void
answer(int fd, int status, const char *reason, const char *body)
{
	char	head[256];
	int	n;

	n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: "
	    "text/html; charset=utf-8\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\nCache-Control: no-store\r\n\r\n", status,
	    reason, strlen(body));
	if (write(fd, head, (size_t)n) == n)
		(void)!write(fd, body, strlen(body));
}

/*
 * Reads one request: its request line into buf (NUL-terminated; it is
 * all we need), then the rest of the head up to its empty line, read and
 * dropped however long it is (a browser's cookies for 127.0.0.1 can fill
 * many KiB), so that closing after the answer does not reset the
 * connection before the browser has shown the page.  0, or -1 when no
 * request line came within size - 1 bytes or in time.  A head that does
 * not end in time still gets its answer.
 */
static int
read_head(int fd, char *buf, size_t size)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLIN };
	int64_t		deadline = now_ms() + CONN_TIMEOUT_MS;
	char		scratch[4096], *p;
	size_t		len = 0, line = 0, i;
	bool		have_line = false;
	ssize_t		n;

	for (;;) {
		int left = (int)(deadline - now_ms());

		if (left <= 0 || poll(&pfd, 1, left) <= 0)
			return have_line ? 0 : -1;
		if (!have_line) {
			if (len + 1 >= size)
				return -1;
			p = buf + len;
			n = read(fd, p, size - 1 - len);
		} else {
			p = scratch;
			n = read(fd, p, sizeof scratch);
		}
		if (n <= 0)
			return have_line ? 0 : -1;
		if (!have_line) {
			len += (size_t)n;
			buf[len] = '\0';
		}
		/* line: the bytes other than CR on the line so far; an LF
		   ending an empty one ends the head */
		for (i = 0; i < (size_t)n; i++) {
			if (p[i] == '\n') {
				if (line == 0 && have_line)
					return 0;
				have_line = true;
				line = 0;
			} else if (p[i] != '\r')
				line++;
		}
	}
}

/*
 * Judges one connection.  Returns 1 with *code set when it carried our
 * state and a code, -1 with err set for an error redirect with our
 * state, 0 for anything else (answered 400/404, keep waiting).
 */
static int
one_request(int c, const char *state, char **code, struct mh_err *err)
{
	char	buf[REQUEST_MAX], *sp, *target, *q, *got_state, *e;

	if (read_head(c, buf, sizeof buf) == -1)
		return 0;
	if (strncmp(buf, "GET ", 4) != 0 ||
	    (sp = strchr(buf + 4, ' ')) == NULL ||
	    strncmp(sp, " HTTP/1.", 8) != 0) {
		answer(c, 400, "Bad Request", page_err);
		return 0;
	}
	*sp = '\0';
	target = buf + 4;
	q = strchr(target, '?');
	if (q == NULL || q != target + 1 || *target != '/') {
		answer(c, 404, "Not Found", page_err);
		return 0;
	}
	q++;
	got_state = query_get(q, "state");
	if (got_state == NULL || strcmp(got_state, state) != 0) {
		answer(c, 400, "Bad Request", page_err);
		free(got_state);
		return 0;
	}
	free(got_state);
	if ((*code = query_get(q, "code")) != NULL && **code != '\0') {
		answer(c, 200, "OK", page_ok);
		return 1;
	}
	free(*code);
	*code = NULL;
	e = query_get(q, "error");
	mh_err_set(err, MH_ERR_AUTH, "the provider refused the authorization: "
	    "%s", e != NULL ? e : "no code and no error");
	if ((sp = query_get(q, "error_description")) != NULL)
		mh_err_reply(err, sp, (size_t)-1);
	free(sp);
	free(e);
	answer(c, 200, "OK", page_err);
	return -1;
}

static int
wait_redirect(int lfd, const char *state, int timeout_s, char **code,
    struct mh_err *err)
{
	struct pollfd	pfd = { .fd = lfd, .events = POLLIN };
	int64_t		deadline = now_ms() + (int64_t)timeout_s * 1000;
	int		c, rc, left;

	*code = NULL;
	for (;;) {
		if ((left = (int)(deadline - now_ms())) <= 0) {
			mh_err_set(err, MH_ERR_TEMP, "no redirect from the "
			    "browser within %d s", timeout_s);
			return -1;
		}
		if (poll(&pfd, 1, left) <= 0)
			continue;
		if ((c = accept(lfd, NULL, NULL)) == -1)
			continue;
		fcntl(c, F_SETFD, FD_CLOEXEC);
		rc = one_request(c, state, code, err);
		close(c);
		if (rc != 0)
			return rc == 1 ? 0 : -1;
	}
}

static void
open_browser(const char *url)
{
	pid_t	pid;
	int	null;

	fflush(NULL);
	if ((pid = fork()) != 0)
		return;		/* reaped by the caller's waitpid loop */
	if ((null = open("/dev/null", O_RDWR)) != -1) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
	}
	setsid();
	child_limits_restore();
	execlp("xdg-open", "xdg-open", url, (char *)NULL);
	_exit(127);
}

static char *
auth_url(const struct cfg_oauth2 *o, const char *redirect,
    const char *state, const char *challenge)
{
	const char	*pairs[] = { "response_type", "code",
	    "client_id", o->client_id, "redirect_uri", redirect,
	    "scope", o->scope, "state", state,
	    "code_challenge", challenge, "code_challenge_method", "S256",
	    "login_hint", o->login_hint,
	    "access_type", o->provider == CFG_OAUTH2_GOOGLE ? "offline" : NULL,
	    "prompt", o->provider == CFG_OAUTH2_GOOGLE ? "consent" : NULL,
	    NULL };
	char		*q = http_form(pairs), *url;

	url = xasprintf("%s%c%s", o->auth_url,
	    strchr(o->auth_url, '?') != NULL ? '&' : '?', q);
	free(q);
	return url;
}

static int
store_and_report(const struct cfg_oauth2 *o, const char *statedir,
    struct oauth2_tokens *t, FILE *out, struct mh_err *err)
{
	char	*path;

	if (t->refresh_token == NULL) {
		mh_err_set(err, MH_ERR_AUTH, "%s: the provider gave no refresh "
		    "token (the scope may lack offline_access)", o->name);
		return -1;
	}
	if (oauth2_store_replace(statedir, o->name, t, err) == -1)
		return -1;
	path = oauth2_store_path(statedir, o->name);
	fprintf(out, "%s: authorized; scope: %s; access token valid for "
	    "%lld s; refresh token stored in %s\n", o->name,
	    t->scope != NULL ? t->scope : o->scope,
	    (long long)(t->expires_at - (int64_t)time(NULL)), path);
	fflush(out);
	free(path);
	return 0;
}

static int
code_flow(const struct cfg_oauth2 *o, const char *statedir, int flags,
    int timeout_s, FILE *out, struct mh_err *err)
{
	struct oauth2_tokens	 t;
	char			*verifier = NULL, *challenge = NULL;
	char			*state = NULL, *redirect = NULL, *url = NULL;
	char			*code = NULL, oerror[64];
	unsigned		 port;
	int			 lfd, rc = -1;
	const char		*display = getenv("DISPLAY");
	const char		*wayland = getenv("WAYLAND_DISPLAY");

	memset(&t, 0, sizeof t);
	if (o->auth_url == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: no auth_url; use --device",
		    o->name);
		return -1;
	}
	if ((lfd = listen_loopback(&port, err)) == -1)
		return -1;
	if ((verifier = random_token(48, err)) == NULL ||
	    (state = random_token(24, err)) == NULL)
		goto out;
	challenge = pkce_challenge(verifier);
	redirect = xasprintf("http://127.0.0.1:%u/", port);
	url = auth_url(o, redirect, state, challenge);
	fprintf(out, "Open this URL in a browser and allow mailhaul:\n%s\n"
	    "Waiting for the browser on %s ...\n", url, redirect);
	fflush(out);
	if (!(flags & OAUTH2_FLOW_NO_BROWSER) &&
	    ((display && *display) || (wayland && *wayland)))
		open_browser(url);
	if (wait_redirect(lfd, state, timeout_s, &code, err) == -1)
		goto out;
	{
		const char *pairs[] = { "grant_type", "authorization_code",
		    "code", code, "redirect_uri", redirect,
		    "code_verifier", verifier, NULL };

		if (oauth2_post(o, NULL, pairs, &t, oerror, err) == -1)
			goto out;
	}
	rc = store_and_report(o, statedir, &t, out, err);
out:
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	close(lfd);
	oauth2_tokens_free(&t);
	secret_free(code);
	secret_free(verifier);
	free(challenge);
	free(state);
	free(redirect);
	free(url);
	return rc;
}

/* ---- RFC 8628 ---- */

static int64_t
jint(json_t *root, const char *key, int64_t dflt)
{
	json_t	*v = json_object_get(root, key);

	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static void
sleep_s(int64_t s)
{
	struct timespec	ts = { .tv_sec = (time_t)s, .tv_nsec = 0 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Polls the token endpoint until the user decides; 0 or -1. */
static int
device_poll(const struct cfg_oauth2 *o, const char *device_code,
    int64_t interval, int64_t deadline, struct oauth2_tokens *t,
    struct mh_err *err)
{
	const char	*pairs[] = { "grant_type",
	    "urn:ietf:params:oauth:grant-type:device_code",
	    "device_code", device_code, NULL };
	char		 oerror[64];

	for (;;) {
		if ((int64_t)time(NULL) + interval > deadline) {
			mh_err_set(err, MH_ERR_AUTH, "%s: the code expired "
			    "before it was entered; run 'mailhaul auth "
			    "--device %s' again", o->name, o->name);
			return -1;
		}
		sleep_s(interval);
		if (oauth2_post(o, NULL, pairs, t, oerror, err) == 0)
			return 0;
		if (strcmp(oerror, "authorization_pending") == 0)
			continue;
		if (strcmp(oerror, "slow_down") == 0) {
			interval += 5;
			continue;
		}
		if (strcmp(oerror, "expired_token") == 0)
			mh_err_set(err, MH_ERR_AUTH, "%s: the code expired "
			    "before it was entered; run 'mailhaul auth "
			    "--device %s' again", o->name, o->name);
		else if (strcmp(oerror, "access_denied") == 0)
			mh_err_set(err, MH_ERR_AUTH, "%s: the authorization "
			    "was denied", o->name);
		return -1;
	}
}

static int
device_flow(const struct cfg_oauth2 *o, const char *statedir, int timeout_s,
    FILE *out, struct mh_err *err)
{
	const char		*pairs[] = { "scope", o->scope, NULL };
	struct oauth2_tokens	 t;
	json_t			*root = NULL, *v;
	char			 oerror[64], *dc = NULL;
	const char		*uri, *user_code, *complete;
	int64_t			 interval, expires;
	int			 rc = -1;

	memset(&t, 0, sizeof t);
	if (o->device_url == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: no device_url for the "
		    "device flow", o->name);
		return -1;
	}
	if (oauth2_request(o, o->device_url, pairs, &root, oerror, err) == -1)
		goto out;
	v = json_object_get(root, "verification_uri");
	if (!json_is_string(v))		/* Google's older name */
		v = json_object_get(root, "verification_url");
	uri = json_string_value(v);
	user_code = json_string_value(json_object_get(root, "user_code"));
	complete = json_string_value(json_object_get(root,
	    "verification_uri_complete"));
	if (json_is_string(json_object_get(root, "device_code")))
		dc = xstrdup(json_string_value(json_object_get(root,
		    "device_code")));
	if (uri == NULL || user_code == NULL || dc == NULL) {
		mh_err_set(err, MH_ERR_PROTO, "%s: the device endpoint "
		    "answered without verification_uri, user_code or "
		    "device_code", o->name);
		goto out;
	}
	interval = jint(root, "interval", 5);
	interval = interval < 1 ? 1 : interval > 60 ? 60 : interval;
	expires = jint(root, "expires_in", 600);
	if (expires > timeout_s)
		expires = timeout_s;
	fprintf(out, "On any device, open\n%s\nand enter the code: %s\n",
	    uri, user_code);
	if (complete != NULL)
		fprintf(out, "(or open %s)\n", complete);
	fprintf(out, "Waiting ...\n");
	fflush(out);
	if (device_poll(o, dc, interval, (int64_t)time(NULL) + expires, &t,
	    err) == -1)
		goto out;
	rc = store_and_report(o, statedir, &t, out, err);
out:
	json_decref(root);
	secret_free(dc);
	oauth2_tokens_free(&t);
	return rc;
}

int
oauth2_flow_run(const struct cfg_oauth2 *o, const char *statedir, int flags,
    int timeout_s, FILE *out, struct mh_err *err)
{
	int	rc;

	mh_err_clear(err);
	if (o->token_command != NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: uses token_command; its "
		    "helper obtains the tokens, not 'mailhaul auth'", o->name);
		return -1;
	}
	if (timeout_s <= 0)
		timeout_s = WAIT_DEFAULT_S;
	if (flags & OAUTH2_FLOW_DEVICE)
		rc = device_flow(o, statedir, timeout_s, out, err);
	else
		rc = code_flow(o, statedir, flags, timeout_s, out, err);
	if (rc == -1 && strncmp(err->msg, o->name, strlen(o->name)) != 0)
		mh_err_prefix(err, "%s", o->name);
	return rc;
}
