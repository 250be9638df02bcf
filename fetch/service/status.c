/*
 * status.c -- service.json written and parsed; see status.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "fetch/service/status.h"
#include "log.h"

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void
write_account(FILE *f, const struct service_status_account *a)
{
	fprintf(f, "{\"account\":");
	json_str(f, a->name);
	fprintf(f, ",\"running\":%s,\"next\":%lld,\"failures\":%u,"
	    "\"backoff_until\":%lld,\"auth_failed\":%s,\"idle\":\"%s\","
	    "\"idle_folders\":%d,\"idle_connected\":%d,"
	    "\"last_result\":\"%s\",\"last_end\":%lld,"
	    "\"last_delivered\":%u,\"waiting_for_auth\":%s,"
	    "\"last_error\":",
	    a->running ? "true" : "false", (long long)a->next, a->failures,
	    (long long)a->backoff_until, a->auth_failed ? "true" : "false",
	    a->idle, a->idle_folders, a->idle_connected, a->last_result,
	    (long long)a->last_end, a->last_delivered,
	    a->waiting_for_auth ? "true" : "false");
	json_str(f, a->last_error);
	fputc('}', f);
}

int
service_status_write(const char *dir, const struct service_status *st)
{
	char	*tmp = xasprintf("%s/service.json.tmp", dir);
	char	*path = xasprintf("%s/service.json", dir);
	FILE	*f;
	int	 fd, rc = -1;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		log_warn("service: cannot write %s: %s", tmp, strerror(errno));
		if (fd != -1)
			close(fd);
		goto out;
	}
	fprintf(f, "{\"pid\":%ld,\"started\":%lld,\"updated\":%lld,"
	    "\"stopping\":%s,\"running\":%u,\"accounts\":[\n", st->pid,
	    (long long)st->started, (long long)time(NULL),
	    st->stopping ? "true" : "false", st->running);
	for (size_t i = 0; i < st->naccounts; i++) {
		if (i > 0)
			fprintf(f, ",\n");
		write_account(f, &st->accounts[i]);
	}
	fprintf(f, "\n]}\n");
	if (fclose(f) != 0 || rename(tmp, path) == -1)
		log_warn("service: cannot write %s: %s", path, strerror(errno));
	else
		rc = 0;
out:
	free(tmp);
	free(path);
	return rc;
}

void
service_status_remove(const char *dir)
{
	char	*path = xasprintf("%s/service.json", dir);

	unlink(path);
	free(path);
}

/* The value after "key": in line (a number or a string), or NULL. */
static const char *
json_field(const char *line, const char *key, char *out, size_t size)
{
	char		 pat[64];
	const char	*p;
	size_t		 n = 0;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	if ((p = strstr(line, pat)) == NULL)
		return NULL;
	p += strlen(pat);
	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"' && n + 1 < size; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			out[n++] = *p;
		}
	} else {
		while (*p != '\0' && *p != ',' && *p != '}' && n + 1 < size)
			out[n++] = *p++;
	}
	out[n] = '\0';
	return out;
}

static long long
json_num(const char *line, const char *key)
{
	char	v[64];

	return json_field(line, key, v, sizeof v) ? atoll(v) : 0;
}

static bool
json_true(const char *line, const char *key)
{
	char	v[64];

	return json_field(line, key, v, sizeof v) && strcmp(v, "true") == 0;
}

static void
parse_account(struct service_status *st, const char *line)
{
	struct service_status_account *a;

	st->accounts = xrealloc(st->accounts,
	    (st->naccounts + 1) * sizeof *st->accounts);
	a = &st->accounts[st->naccounts++];
	memset(a, 0, sizeof *a);
	json_field(line, "account", a->name, sizeof a->name);
	json_field(line, "idle", a->idle, sizeof a->idle);
	json_field(line, "last_result", a->last_result,
	    sizeof a->last_result);
	a->running = json_true(line, "running");
	a->auth_failed = json_true(line, "auth_failed");
	a->waiting_for_auth = json_true(line, "waiting_for_auth");
	json_field(line, "last_error", a->last_error, sizeof a->last_error);
	a->next = (time_t)json_num(line, "next");
	a->failures = (unsigned)json_num(line, "failures");
	a->backoff_until = (time_t)json_num(line, "backoff_until");
	a->idle_folders = (int)json_num(line, "idle_folders");
	a->idle_connected = (int)json_num(line, "idle_connected");
	a->last_end = (time_t)json_num(line, "last_end");
	a->last_delivered = (unsigned)json_num(line, "last_delivered");
}

/* 1 when a process holds dir/service.lock. */
static int
service_holds(const char *dir)
{
	char	*path = xasprintf("%s/service.lock", dir);
	int	 fd, held;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd == -1)
		return 0;
	held = flock(fd, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

int
service_status_read(const struct config *cfg, struct service_status *st)
{
	char	*dir = config_state_dir(cfg), *path, *line = NULL;
	size_t	 cap = 0, len = 0;
	FILE	*f = NULL, *mem;
	int	 rc = 0;
	ssize_t	 n;

	memset(st, 0, sizeof *st);
	if (!service_holds(dir))
		goto out;		/* nobody serves this state */
	rc = -1;
	path = xasprintf("%s/service.json", dir);
	f = fopen(path, "re");
	free(path);
	if (f == NULL)
		goto out;
	if ((mem = open_memstream(&st->json, &len)) == NULL)
		goto out;
	while ((n = getline(&line, &cap, f)) > 0) {
		fwrite(line, 1, (size_t)n, mem);
		if (strncmp(line, "{\"pid\":", 7) == 0) {
			st->pid = (long)json_num(line, "pid");
			st->started = (time_t)json_num(line, "started");
			st->stopping = json_true(line, "stopping");
			st->running = (unsigned)json_num(line, "running");
		} else if (strncmp(line, "{\"account\":", 11) == 0) {
			parse_account(st, line);
		}
	}
	fclose(mem);
	/* trim the trailing newline so it embeds in other JSON */
	while (len > 0 && st->json[len - 1] == '\n')
		st->json[--len] = '\0';
	rc = st->pid > 0 ? 1 : -1;
out:
	if (f != NULL)
		fclose(f);
	free(line);
	free(dir);
	if (rc != 1)
		service_status_free(st);
	return rc;
}

void
service_status_free(struct service_status *st)
{
	free(st->accounts);
	free(st->json);
	memset(st, 0, sizeof *st);
}
