/* oauth2.c -- access tokens: the store and the refresh grant (oauth2.h) */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "net/oauth2.h"

#define STORE_MAX	(64 * 1024)
#define EXPIRES_IN_MAX	(10LL * 366 * 86400)	/* an access token's life, at
						   most */

void
oauth2_tokens_free(struct oauth2_tokens *t)
{
	secret_free(t->refresh_token);
	secret_free(t->access_token);
	free(t->scope);
	memset(t, 0, sizeof *t);
}

static char *
store_dir(const char *statedir)
{
	return xasprintf("%s/oauth2", statedir);
}

char *
oauth2_store_path(const char *statedir, const char *name)
{
	return xasprintf("%s/oauth2/%s.json", statedir, name);
}

/* A copy of a JSON string member, or NULL. */
static char *
jstr(json_t *obj, const char *key)
{
	json_t	*v = json_object_get(obj, key);

	return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

int
oauth2_store_load(const char *statedir, const char *name,
    struct oauth2_tokens *t, struct mh_err *err)
{
	char		*path = oauth2_store_path(statedir, name);
	json_error_t	 jerr;
	json_t		*root = NULL, *v;
	int		 rc = -1;

	memset(t, 0, sizeof *t);
	if (access(path, F_OK) == -1 && errno == ENOENT) {
		rc = 0;
		goto out;
	}
	if ((root = json_load_file(path, 0, &jerr)) == NULL ||
	    !json_is_object(root)) {
		/* not jerr.text: it quotes the bytes near the fault, which
		   may be a token's */
		if (root == NULL)
			mh_err_set(err, MH_ERR_LOCAL, "%s: not a token store "
			    "(not JSON at line %d, column %d); run 'mailhaul "
			    "auth %s'", path, jerr.line, jerr.column, name);
		else
			mh_err_set(err, MH_ERR_LOCAL, "%s: not a token store "
			    "(not a JSON object); run 'mailhaul auth %s'",
			    path, name);
		goto out;
	}
	t->refresh_token = jstr(root, "refresh_token");
	t->access_token = jstr(root, "access_token");
	t->scope = jstr(root, "scope");
	if (json_is_integer(v = json_object_get(root, "expires_at")))
		t->expires_at = json_integer_value(v);
	t->revoked = json_is_true(json_object_get(root, "revoked"));
	rc = 0;
out:
	json_decref(root);
	free(path);
	return rc;
}

static int
fsync_dir(const char *dir, struct mh_err *err)
{
	int	fd, rc = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(fd) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: %s", dir, strerror(errno));
		rc = -1;
	}
	if (fd != -1)
		close(fd);
	return rc;
}

static json_t *
tokens_json(const struct oauth2_tokens *t)
{
	json_t	*root = json_object();

	if (t->refresh_token != NULL)
		json_object_set_new(root, "refresh_token",
		    json_string(t->refresh_token));
	if (t->access_token != NULL)
		json_object_set_new(root, "access_token",
		    json_string(t->access_token));
	if (t->expires_at != 0)
		json_object_set_new(root, "expires_at",
		    json_integer(t->expires_at));
	if (t->scope != NULL)
		json_object_set_new(root, "scope", json_string(t->scope));
	if (t->revoked)
		json_object_set_new(root, "revoked", json_true());
	return root;
}

int
oauth2_store_save(const char *statedir, const char *name,
    const struct oauth2_tokens *t, struct mh_err *err)
{
	char	*dir = store_dir(statedir), *path, *tmp, *text = NULL;
	json_t	*root;
	size_t	 len, off = 0;
	ssize_t	 n;
	int	 fd = -1, rc = -1;

	path = oauth2_store_path(statedir, name);
	tmp = xasprintf("%s.tmp", path);
	if (mkdir_p(dir, 0700, err) == -1)
		goto out;
	chmod(dir, 0700);
	root = tokens_json(t);
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (text == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot encode the tokens");
		goto out;
	}
	len = strlen(text);
	unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) == -1)
		goto fail;
	while (off < len) {
		if ((n = write(fd, text + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)n;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto fail;
	rc = fsync_dir(dir, err);
	goto out;
fail:
	mh_err_set(err, MH_ERR_LOCAL, "%s: %s", tmp, strerror(errno));
	unlink(tmp);
out:
	if (fd != -1)
		close(fd);
	if (text != NULL) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	free(tmp);
	free(path);
	free(dir);
	return rc;
}

/* Takes NAME.lock (blocking); returns the fd or -1. */
static int
store_lock(const char *statedir, const char *name, struct mh_err *err)
{
	char	*dir = store_dir(statedir), *path;
	int	 fd = -1;

	path = xasprintf("%s/%s.lock", dir, name);
	if (mkdir_p(dir, 0700, err) == -1)
		goto out;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: %s", path, strerror(errno));
		goto out;
	}
	while (flock(fd, LOCK_EX) == -1) {
		if (errno != EINTR) {
			mh_err_set(err, MH_ERR_LOCAL, "%s: %s", path,
			    strerror(errno));
			close(fd);
			fd = -1;
			break;
		}
	}
out:
	free(path);
	free(dir);
	return fd;
}

int
oauth2_store_replace(const char *statedir, const char *name,
    const struct oauth2_tokens *t, struct mh_err *err)
{
	int	lock, rc;

	if ((lock = store_lock(statedir, name, err)) == -1)
		return -1;
	rc = oauth2_store_save(statedir, name, t, err);
	close(lock);
	return rc;
}

/* Fills t from a token response; 0, or -1 when there is no token. */
static int
parse_tokens(json_t *root, struct oauth2_tokens *t, struct mh_err *err)
{
	json_t		*v;
	char		*s;
	long long	 life = 0;

	if ((s = jstr(root, "access_token")) == NULL || *s == '\0') {
		free(s);
		mh_err_set(err, MH_ERR_PROTO, "the token endpoint answered "
		    "without an access_token");
		return -1;
	}
	secret_free(t->access_token);
	t->access_token = s;
	v = json_object_get(root, "expires_in");
	if (json_is_integer(v))
		life = json_integer_value(v);
	else if (json_is_string(v))
		life = atoll(json_string_value(v));	/* old Microsoft */
	if (life <= 0)
		life = 3600;
	else if (life > EXPIRES_IN_MAX)
		life = EXPIRES_IN_MAX;	/* no overflow from a silly value */
	t->expires_at = (int64_t)time(NULL) + life;
	if ((s = jstr(root, "refresh_token")) != NULL) {
		secret_free(t->refresh_token);
		t->refresh_token = s;
	}
	if ((s = jstr(root, "scope")) != NULL) {
		free(t->scope);
		t->scope = s;
	}
	return 0;
}

/* Copies a short, printable OAuth2 error field. */
static void
copy_code(char *dst, size_t size, const char *src)
{
	size_t	i;

	for (i = 0; src != NULL && src[i] != '\0' && i + 1 < size; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

static void
judge_error(long status, json_t *root, char oerror[64], struct mh_err *err)
{
	json_t	*e = json_object_get(root, "error");
	json_t	*d = json_object_get(root, "error_description");

	copy_code(oerror, 64, json_is_string(e) ? json_string_value(e) : "");
	if (json_is_string(d))
		mh_err_reply(err, json_string_value(d), (size_t)-1);
	if (status == 429 || status >= 500)
		mh_err_set(err, MH_ERR_TEMP, "the token endpoint answered "
		    "HTTP %ld%s%s", status, *oerror ? ": " : "", oerror);
	else if (*oerror)
		mh_err_set(err, MH_ERR_AUTH, "the token endpoint refused: %s",
		    oerror);
	else
		mh_err_set(err, MH_ERR_PROTO, "the token endpoint answered "
		    "HTTP %ld without an OAuth2 error", status);
}

int
oauth2_request(const struct cfg_oauth2 *o, const char *url,
    const char *const *pairs, json_t **out, char oerror[64],
    struct mh_err *err)
{
	struct http_request	 req;
	struct http_response	 resp;
	const char		*all[32];
	char			*secret = NULL, *form = NULL;
	json_t			*root = NULL;
	json_error_t		 jerr;
	size_t			 n = 0, i;
	int			 rc = -1;

	*out = NULL;
	oerror[0] = '\0';
	memset(&resp, 0, sizeof resp);
	if (o->client_secret.password || o->client_secret.command ||
	    o->client_secret.file) {
		char *what = xasprintf("oauth2 %s", o->name);

		secret = cfg_secret_get(&o->client_secret, what, err);
		free(what);
		if (secret == NULL)
			return -1;
	}
	for (i = 0; pairs[i] != NULL && n + 6 < 32; i += 2) {
		all[n++] = pairs[i];
		all[n++] = pairs[i + 1];
	}
	all[n++] = "client_id";
	all[n++] = o->client_id;
	all[n++] = "client_secret";
	all[n++] = secret;
	all[n] = NULL;
	form = http_form(all);
	memset(&req, 0, sizeof req);
	req.method = "POST";
	req.url = url != NULL ? url : o->token_url;
	req.ca_file = o->ca_file;
	req.content_type = "application/x-www-form-urlencoded";
	req.body = form;
	req.body_len = strlen(form);
	req.body_fd = -1;
	req.timeout_ms = 30000;
	if (http_request(&req, &resp, err) == -1)
		goto out;
	root = json_loadb(resp.body, resp.body_len, 0, &jerr);
	if (!json_is_object(root)) {
		mh_err_set(err, resp.status >= 500 ? MH_ERR_TEMP :
		    MH_ERR_PROTO, "%s answered HTTP %ld without JSON",
		    req.url, resp.status);
		goto out;
	}
	if (resp.status < 200 || resp.status > 299) {
		judge_error(resp.status, root, oerror, err);
		goto out;
	}
	*out = root;
	root = NULL;
	rc = 0;
out:
	json_decref(root);
	secret_free(form);
	secret_free(secret);
	http_response_free(&resp);
	return rc;
}

int
oauth2_post(const struct cfg_oauth2 *o, const char *url,
    const char *const *pairs, struct oauth2_tokens *t, char oerror[64],
    struct mh_err *err)
{
	json_t	*root;
	int	 rc;

	if (oauth2_request(o, url, pairs, &root, oerror, err) == -1)
		return -1;
	rc = parse_tokens(root, t, err);
	json_decref(root);
	return rc;
}

static int
from_command(const struct cfg_oauth2 *o, char **token_out, struct mh_err *err)
{
	struct cfg_secret	 s;
	char			*what = xasprintf("oauth2 %s", o->name);

	memset(&s, 0, sizeof s);
	s.command = o->token_command;
	*token_out = cfg_secret_get(&s, what, err);
	free(what);
	if (*token_out == NULL) {
		mh_err_prefix(err, "%s: token_command", o->name);
		return -1;
	}
	return 0;
}

static void
revoked_error(const struct cfg_oauth2 *o, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_AUTH, "%s: the authorization was revoked or "
	    "has expired; run 'mailhaul auth %s'", o->name, o->name);
}

/* invalid_grant: remembered in the store, so nobody asks again. */
static void
mark_revoked(const struct cfg_oauth2 *o, const char *statedir,
    struct oauth2_tokens *t)
{
	struct mh_err	serr;

	secret_free(t->access_token);
	t->access_token = NULL;
	t->expires_at = 0;
	t->revoked = true;
	mh_err_clear(&serr);
	if (oauth2_store_save(statedir, o->name, t, &serr) == -1)
		log_warn("%s: %s", o->name, serr.msg);
}

static int
refresh(const struct cfg_oauth2 *o, const char *statedir,
    struct oauth2_tokens *t, struct mh_err *err)
{
	const char	*pairs[] = { "grant_type", "refresh_token",
	    "refresh_token", t->refresh_token, "scope", o->scope, NULL };
	char		 oerror[64];

	if (oauth2_post(o, NULL, pairs, t, oerror, err) == -1) {
		if (strcmp(oerror, "invalid_grant") == 0) {
			mark_revoked(o, statedir, t);
			revoked_error(o, err);
		} else
			mh_err_prefix(err, "%s: refreshing the access token",
			    o->name);
		return -1;
	}
	t->revoked = false;
	if (oauth2_store_save(statedir, o->name, t, err) == -1) {
		mh_err_prefix(err, "%s: storing the refreshed tokens", o->name);
		return -1;
	}
	if (getenv("MAILHAUL_TEST_KILL_AFTER_TOKEN_STORE") != NULL)
		raise(SIGKILL);		/* the test knob, see oauth2.h */
	return 0;
}

int
oauth2_token(const struct cfg_oauth2 *o, const char *statedir,
    bool force_refresh, char **token_out, struct mh_err *err)
{
	struct oauth2_tokens	 t;
	int			 lock, rc = -1;

	*token_out = NULL;
	mh_err_clear(err);
	if (o->token_command != NULL)
		return from_command(o, token_out, err);
	if ((lock = store_lock(statedir, o->name, err)) == -1)
		return -1;
	if (oauth2_store_load(statedir, o->name, &t, err) == -1)
		goto out;
	if (t.refresh_token == NULL) {
		mh_err_set(err, MH_ERR_AUTH, "%s: no OAuth2 tokens yet; run "
		    "'mailhaul auth %s'", o->name, o->name);
		goto out;
	}
	if (t.revoked && !force_refresh) {
		revoked_error(o, err);
		goto out;
	}
	if (force_refresh || t.access_token == NULL ||
	    t.expires_at - OAUTH2_EXPIRY_MARGIN <= (int64_t)time(NULL)) {
		if (refresh(o, statedir, &t, err) == -1)
			goto out;
	}
	*token_out = xstrdup(t.access_token);
	rc = 0;
out:
	oauth2_tokens_free(&t);
	close(lock);
	return rc;
}

bool
oauth2_needs_auth(const struct cfg_oauth2 *o, const char *statedir)
{
	struct oauth2_tokens	t;
	struct mh_err		err;
	bool			needs;

	if (o->token_command != NULL)
		return false;
	mh_err_clear(&err);
	if (oauth2_store_load(statedir, o->name, &t, &err) == -1)
		return false;
	needs = t.refresh_token == NULL || t.revoked;
	oauth2_tokens_free(&t);
	return needs;
}

int64_t
oauth2_store_stamp(const char *statedir, const char *name)
{
	char		*path = oauth2_store_path(statedir, name);
	struct stat	 st;
	int64_t		 stamp = 0;

	if (stat(path, &st) == 0)
		stamp = (int64_t)st.st_mtim.tv_sec * 1000000000 +
		    st.st_mtim.tv_nsec + (int64_t)st.st_ino;
	free(path);
	return stamp;
}
