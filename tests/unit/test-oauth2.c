/*
 * test-oauth2.c -- [oauth2:NAME] sections (presets, checks, references,
 * printing), the HTTP helpers that need no server, and the token store.
 * The flows and the refresh grant are tested against a real provider in
 * tests/integration/test_oauth2.py.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "check.h"
#include "config/config.h"
#include "net/http.h"
#include "net/oauth2.h"

static char	tmpdir[] = "/tmp/mh-test-oauth2-XXXXXX";

static const char head[] =
    "[target:t]\ntype = lmtp\nsocket = /tmp/x\nrecipient = a@b.c\n";

/* Loads head + text; *diag gets the diagnostics (caller frees). */
static struct config *
load(const char *text, char **diag)
{
	char		 path[300];
	struct config	*cfg;
	size_t		 len;
	FILE		*f;

	snprintf(path, sizeof path, "%s/c.ini", tmpdir);
	if ((f = fopen(path, "w")) == NULL)
		exit(1);
	fprintf(f, "%s%s", head, text);
	fclose(f);
	chmod(path, 0600);
	f = open_memstream(diag, &len);
	cfg = config_load(path, f);
	fclose(f);
	return cfg;
}

#define ACCOUNT	"[account:a]\nprotocol = imap\nhost = h\nuser = u\n" \
		"target = t\n"

static void
t_presets(void)
{
	char			*diag;
	struct config		*cfg;
	const struct cfg_oauth2	*g, *m;

	cfg = load("[oauth2:g]\nprovider = google\nclient_id = c\n"
	    "[oauth2:m]\nprovider = microsoft\nclient_id = c\n"
	    "tenant = contoso.onmicrosoft.com\n"
	    ACCOUNT "oauth2 = m\n", &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	if (cfg == NULL)
		return;
	g = config_oauth2(cfg, "g");
	m = config_oauth2(cfg, "m");
	CHECK(g != NULL && m != NULL);
	CHECK_STR(g->token_url, "https://oauth2.googleapis.com/token");
	CHECK_STR(g->scope, "https://mail.google.com/");
	CHECK_STR(m->token_url, "https://login.microsoftonline.com/"
	    "contoso.onmicrosoft.com/oauth2/v2.0/token");
	CHECK_STR(m->device_url, "https://login.microsoftonline.com/"
	    "contoso.onmicrosoft.com/oauth2/v2.0/devicecode");
	CHECK_CONTAINS(m->scope, "POP.AccessAsUser.All");
	CHECK_CONTAINS(m->scope, "offline_access");
	CHECK(config_account(cfg, "a")->ep.oauth2 == m);
	config_free(cfg);
	free(diag);
	cfg = load("[oauth2:m]\nprovider = microsoft\nclient_id = c\n"
	    ACCOUNT "oauth2 = m\n", &diag);
	CHECK(cfg != NULL && strstr(config_oauth2(cfg, "m")->auth_url,
	    "/common/oauth2/v2.0/authorize") != NULL);
	config_free(cfg);
	free(diag);
}

static void
t_errors(void)
{
	char		*diag;
	struct config	*cfg;

	cfg = load("[oauth2:x]\nclient_id = c\n"			/* 5 */
	    "[oauth2:y]\nprovider = custom\nclient_id = c\n"		/* 7 */
	    "token_url = http://example.org/t\n"			/* 10 */
	    "[oauth2:z]\ntoken_command = echo t\nprovider = google\n"	/* 11 */
	    "[oauth2:w]\nprovider = google\nclient_id = c\n"		/* 14 */
	    "client_secret = s\nclient_secret_file = /f\ntenant = t\n"	/* 17 */
	    ACCOUNT "oauth2 = q\n", &diag);				/* 25 */
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, "c.ini:5: [oauth2:x] is missing required key "
	    "'provider'");
	CHECK_CONTAINS(diag, "c.ini:10: bad value 'http://example.org/t' "
	    "for 'token_url': expected an https:// URL");
	CHECK_CONTAINS(diag, "c.ini:7: [oauth2:y] with provider = custom "
	    "needs 'auth_url' or 'device_url'");
	CHECK_CONTAINS(diag, "c.ini:7: [oauth2:y] with provider = custom "
	    "needs 'scope'");
	CHECK_CONTAINS(diag, "c.ini:13: 'provider' has no effect with "
	    "token_command (line 12)");
	CHECK_CONTAINS(diag, "c.ini:18: set at most one of client_secret");
	CHECK_CONTAINS(diag, "c.ini:19: 'tenant' is only for provider = "
	    "microsoft");
	CHECK_CONTAINS(diag, "c.ini:25: unknown oauth2 'q' (no [oauth2:q] "
	    "section; known: x, y, z, w)");
	free(diag);
	/* an account without a password source nor oauth2 */
	cfg = load(ACCOUNT, &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, "or 'oauth2')");
	free(diag);
	/* loopback http is fine */
	cfg = load("[oauth2:l]\nprovider = custom\nclient_id = c\n"
	    "token_url = http://127.0.0.1:8080/t\nscope = s\n"
	    "device_url = http://[::1]/d\n" ACCOUNT "oauth2 = l\n", &diag);
	CHECK(cfg != NULL);
	CHECK_STR(diag, "");
	config_free(cfg);
	free(diag);
	/* a user name that looks like a loopback host: the host is
	   example.com, so the secrets would go there in clear */
	cfg = load("[oauth2:u]\nprovider = custom\nclient_id = c\n"
	    "token_url = http://localhost:80@example.com/t\nscope = s\n"
	    "device_url = http://[::1]:1@example.com/d\n"
	    "auth_url = https://user@login.example/a\n"
	    ACCOUNT "oauth2 = u\n", &diag);
	CHECK(cfg == NULL);
	CHECK_CONTAINS(diag, "c.ini:8: bad value "
	    "'http://localhost:80@example.com/t' for 'token_url'");
	CHECK_CONTAINS(diag, "c.ini:10: bad value "
	    "'http://[::1]:1@example.com/d' for 'device_url'");
	CHECK_CONTAINS(diag, "c.ini:11: bad value "
	    "'https://user@login.example/a' for 'auth_url'");
	free(diag);
}

static void
t_print_masks(void)
{
	char		*diag, *out;
	size_t		 len;
	struct config	*cfg;
	FILE		*f;

	cfg = load("[oauth2:g]\nprovider = google\nclient_id = c\n"
	    "client_secret = Oa2-Cs-unit\n" ACCOUNT "oauth2 = g\n", &diag);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	f = open_memstream(&out, &len);
	config_print(cfg, f);
	fclose(f);
	CHECK(strstr(out, "Oa2-Cs-unit") == NULL);
	CHECK_CONTAINS(out, "[oauth2:g]\nprovider = google\nclient_id = c\n"
	    "client_secret = ********\n");
	CHECK_CONTAINS(out, "oauth2 = g\n");
	free(out);
	free(diag);
	config_free(cfg);
}

static void
t_http_helpers(void)
{
	const char	*pairs[] = { "a b", "x&y=z", "skip", NULL, "c", "~._-",
	    NULL };
	struct mh_err	 err;
	char		*s;

	/* the OpenSSL build of libcurl (meson.build links it by soname) */
	CHECK(strncmp(curl_version_info(CURLVERSION_NOW)->ssl_version,
	    "OpenSSL", 7) == 0);
	s = http_form(pairs);
	CHECK_STR(s, "a%20b=x%26y%3Dz&c=~._-");
	free(s);
	CHECK(http_url_allowed("https://login.example/token", &err) == 0);
	CHECK(http_url_allowed("http://127.0.0.1:99/t", &err) == 0);
	CHECK(http_url_allowed("http://[::1]/t", &err) == 0);
	CHECK(http_url_allowed("http://localhost/t", &err) == 0);
	CHECK(http_url_allowed("http://127.0.0.1.evil.example/t", &err) == -1);
	CHECK(http_url_allowed("http://example.org/t", &err) == -1);
	CHECK(http_url_allowed("ftp://example.org/t", &err) == -1);
	CHECK(err.cls == MH_ERR_LOCAL);
	/* the host is what follows a user name: libcurl's parse decides */
	CHECK(http_url_allowed("http://localhost:80@example.com/t", &err) ==
	    -1);
	CHECK(http_url_allowed("http://127.0.0.1:1@example.com/", &err) == -1);
	CHECK(http_url_allowed("http://[::1]:1@example.com/", &err) == -1);
	CHECK(http_url_allowed("https://u:p@login.example/t", &err) == -1);
	CHECK_CONTAINS(err.msg, "a user name or password in the URL");
	CHECK(http_url_allowed("http://LOCALHOST:8/t?a=b", &err) == 0);
	/* a refused URL is named without its query (an upload session's
	   id) */
	CHECK(http_url_allowed("http://example.org/up?upload_id=SECRET",
	    &err) == -1);
	CHECK(strstr(err.msg, "SECRET") == NULL);
	CHECK_CONTAINS(err.msg, "http://example.org/up");
}

/*
 * A plain-HTTP server on 127.0.0.1 for http_request: /big answers 4000
 * bytes, /retry 429 with Retry-After: 7, anything else echoes what came:
 * "METHOD PATH auth=BEARER len=N" (N: body bytes received).
 */
static void
serve(int lfd)
{
	char	buf[65536], out[512], *p, *e;
	size_t	len, want;
	ssize_t	n;
	int	c;

	for (;;) {
		if ((c = accept(lfd, NULL, NULL)) == -1)
			_exit(1);
		len = 0;
		buf[0] = '\0';
		while ((e = strstr(buf, "\r\n\r\n")) == NULL &&
		    (n = read(c, buf + len, sizeof buf - 1 - len)) > 0)
			buf[len += (size_t)n] = '\0';
		if (e == NULL)
			_exit(1);
		p = strstr(buf, "Content-Length:");
		want = p != NULL && p < e ? strtoul(p + 15, NULL, 10) : 0;
		while (len - (size_t)(e + 4 - buf) < want &&
		    (n = read(c, buf + len, sizeof buf - 1 - len)) > 0)
			len += (size_t)n;
		if (strncmp(strchr(buf, ' ') + 1, "/big ", 5) == 0) {
			memset(buf, 'x', 4000);
			snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\n"
			    "Content-Length: 4000\r\nConnection: close\r\n\r\n");
			(void)!write(c, out, strlen(out));
			(void)!write(c, buf, 4000);
		} else if (strncmp(strchr(buf, ' ') + 1, "/retry ", 7) == 0) {
			snprintf(out, sizeof out, "HTTP/1.1 429 Slow\r\n"
			    "Retry-After: 7\r\nContent-Length: 2\r\n"
			    "Connection: close\r\n\r\n{}");
			(void)!write(c, out, strlen(out));
		} else {
			char body[256], *sp = strchr(buf, ' ');

			*strchr(sp + 1, ' ') = '\0';
			p = strstr(sp + 1 + strlen(sp + 1) + 1,
			    "Authorization: Bearer ");
			snprintf(body, sizeof body, "%.*s %.64s auth=%.*s len=%zu",
			    (int)(sp - buf) % 16, buf, sp + 1,
			    p ? (int)strcspn(p + 22, "\r") % 64 : 0, p ? p + 22 : "",
			    len - (size_t)(e + 4 - buf));
			snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\n"
			    "Content-Length: %zu\r\nConnection: close\r\n\r\n"
			    "%s", strlen(body), body);
			(void)!write(c, out, strlen(out));
		}
		close(c);
	}
}

static void
t_http_local(void)
{
	struct http_request	 req;
	struct http_response	 resp;
	struct sockaddr_in	 sin;
	socklen_t		 sl = sizeof sin;
	struct mh_err		 err;
	char			 url[128], path[300];
	int			 lfd, fd;
	pid_t			 pid;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof sin) == 0);
	CHECK(listen(lfd, 8) == 0);
	getsockname(lfd, (struct sockaddr *)&sin, &sl);
	if ((pid = fork()) == 0)
		serve(lfd);
	close(lfd);

	memset(&req, 0, sizeof req);
	req.body_fd = -1;
	req.url = url;
	req.bearer = "tok-1";
	snprintf(url, sizeof url, "http://127.0.0.1:%u/get",
	    ntohs(sin.sin_port));
	CHECK(http_request(&req, &resp, &err) == 0);
	CHECK(resp.status == 200);
	CHECK_STR(resp.body, "GET /get auth=tok-1 len=0");
	http_response_free(&resp);

	/* a form POST */
	req.bearer = NULL;
	req.method = "POST";
	req.body = "a=b&c=d";
	req.body_len = 7;
	req.content_type = "application/x-www-form-urlencoded";
	CHECK(http_request(&req, &resp, &err) == 0);
	CHECK_STR(resp.body, "POST /get auth= len=7");
	http_response_free(&resp);

	/* a body streamed from a file, with PUT */
	snprintf(path, sizeof path, "%s/upload", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(write(fd, "0123456789", 10) == 10);
	lseek(fd, 0, SEEK_SET);
	req.method = "PUT";
	req.body = NULL;
	req.body_fd = fd;
	req.body_fd_len = 10;
	CHECK(http_request(&req, &resp, &err) == 0);
	CHECK_STR(resp.body, "PUT /get auth= len=10");
	http_response_free(&resp);
	close(fd);

	/* Retry-After, and a body over the cap */
	memset(&req, 0, sizeof req);
	req.body_fd = -1;
	req.url = url;
	snprintf(url, sizeof url, "http://127.0.0.1:%u/retry",
	    ntohs(sin.sin_port));
	CHECK(http_request(&req, &resp, &err) == 0);
	CHECK(resp.status == 429 && resp.retry_after == 7);
	http_response_free(&resp);
	snprintf(url, sizeof url, "http://127.0.0.1:%u/big",
	    ntohs(sin.sin_port));
	req.max_body = 1000;
	CHECK(http_request(&req, &resp, &err) == -1);
	CHECK(err.cls == MH_ERR_PROTO);
	CHECK_CONTAINS(err.msg, "longer than 1000 bytes");
	http_response_free(&resp);
	req.max_body = 0;
	CHECK(http_request(&req, &resp, &err) == 0);
	CHECK(resp.body_len == 4000);
	http_response_free(&resp);

	/* nothing listens: temporary */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CHECK(http_request(&req, &resp, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	http_response_free(&resp);
}

static void
t_store(void)
{
	struct oauth2_tokens	 t, t2, u;
	struct cfg_oauth2	 o;
	struct mh_err		 err;
	struct stat		 st;
	char			*path, *dir, *tok, *lockpath;
	pid_t			 pid;
	int			 lfd, status;

	memset(&t, 0, sizeof t);
	t.refresh_token = xstrdup("r1");
	t.access_token = xstrdup("a1");
	t.expires_at = 4102444800;
	CHECK(oauth2_store_save(tmpdir, "n", &t, &err) == 0);
	path = oauth2_store_path(tmpdir, "n");
	dir = xasprintf("%s/oauth2", tmpdir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK(oauth2_store_load(tmpdir, "n", &u, &err) == 0);
	CHECK_STR(u.refresh_token, "r1");
	CHECK(u.expires_at == 4102444800);
	oauth2_tokens_free(&u);
	/* mailhaul auth's save waits while a refresh holds the lock */
	lockpath = xasprintf("%s/n.lock", dir);
	lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	CHECK(lfd != -1 && flock(lfd, LOCK_EX) == 0);
	memset(&t2, 0, sizeof t2);
	t2.refresh_token = "r2";
	if ((pid = fork()) == 0) {
		close(lfd);	/* the lock is the open file's: the parent's */
		_exit(oauth2_store_replace(tmpdir, "n", &t2, &err) == 0 ? 0 :
		    1);
	}
	usleep(200 * 1000);
	CHECK(waitpid(pid, &status, WNOHANG) == 0);	/* still waiting */
	CHECK(oauth2_store_load(tmpdir, "n", &u, &err) == 0);
	CHECK_STR(u.refresh_token, "r1");		/* not replaced yet */
	oauth2_tokens_free(&u);
	close(lfd);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0);
	CHECK(oauth2_store_load(tmpdir, "n", &u, &err) == 0);
	CHECK_STR(u.refresh_token, "r2");
	oauth2_tokens_free(&u);
	CHECK(oauth2_store_save(tmpdir, "n", &t, &err) == 0);
	free(lockpath);
	/* a valid cached token needs no network */
	memset(&o, 0, sizeof o);
	o.name = "n";
	o.client_id = "c";
	o.token_url = "https://127.0.0.1:1/none";
	o.scope = "s";
	CHECK(oauth2_token(&o, tmpdir, false, &tok, &err) == 0);
	CHECK_STR(tok, "a1");
	secret_free(tok);
	/* forced: the endpoint is down -> temporary */
	CHECK(oauth2_token(&o, tmpdir, true, &tok, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP && tok == NULL);
	CHECK(strstr(err.msg, "r1") == NULL && strstr(err.msg, "a1") == NULL);
	/* no tokens at all */
	o.name = "other";
	CHECK(oauth2_token(&o, tmpdir, false, &tok, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "run 'mailhaul auth other'");
	/* a broken store is an error naming the file */
	FILE *f = fopen(path, "w");
	fputs("{not json", f);
	fclose(f);
	o.name = "n";
	CHECK(oauth2_token(&o, tmpdir, false, &tok, &err) == -1);
	CHECK(err.cls == MH_ERR_LOCAL);
	CHECK_CONTAINS(err.msg, path);
	/* a token with a line break pasted into it: the parser's message
	   quotes the text near the fault, which must not reach ours */
	f = fopen(path, "w");
	fputs("{\"refresh_token\": \"1//0gSECRET\nREST\"}", f);
	fclose(f);
	CHECK(oauth2_token(&o, tmpdir, false, &tok, &err) == -1);
	CHECK(err.cls == MH_ERR_LOCAL);
	CHECK_CONTAINS(err.msg, "not a token store (not JSON at line 1");
	CHECK(strstr(err.msg, "SECRET") == NULL);
	free(path);
	free(dir);
	oauth2_tokens_free(&t);
}

static void
t_token_command(void)
{
	struct cfg_oauth2	 o;
	struct mh_err		 err;
	char			*tok;

	memset(&o, 0, sizeof o);
	o.name = "tc";
	o.token_command = "printf 'tok123\\nmore\\n'";
	CHECK(oauth2_token(&o, tmpdir, false, &tok, &err) == 0);
	CHECK_STR(tok, "tok123");
	secret_free(tok);
	o.token_command = "exit 4";
	CHECK(oauth2_token(&o, tmpdir, false, &tok, &err) == -1);
	CHECK_CONTAINS(err.msg, "tc: token_command");
	CHECK_CONTAINS(err.msg, "status 4");
}

int
main(void)
{
	char	cmd[300];
	int	rc;

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	http_init();
	RUN(t_presets);
	RUN(t_errors);
	RUN(t_print_masks);
	RUN(t_http_helpers);
	RUN(t_http_local);
	RUN(t_store);
	RUN(t_token_command);
	rc = check_done();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
