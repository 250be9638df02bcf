/*
 * import.c -- the model of an imported config and its writer; the
 * readers are import_fetchmail.c and import_getmail.c.  See import.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/import.h"

struct imp_account *
imp_account_add(struct import *imp)
{
	struct imp_account	*a;

	imp->accts = xrealloc(imp->accts, (imp->n + 1) * sizeof *imp->accts);
	a = &imp->accts[imp->n++];
	memset(a, 0, sizeof *a);
	a->keep = true;
	a->enabled = true;
	a->tls = CFG_TLS_IMPLICIT;
	return a;
}

void
imp_note(char **notes, const char *fmt, ...)
{
	va_list	 ap;
	char	 line[1024], *joined;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	joined = xasprintf("%s%s\n", *notes != NULL ? *notes : "", line);
	free(*notes);
	*notes = joined;
}

void
imp_seen_add(struct imp_account *a, const char *folder, uint32_t uidvalidity,
    const char *uid)
{
	struct imp_seen	*s;

	a->seen = xrealloc(a->seen, (a->nseen + 1) * sizeof *a->seen);
	s = &a->seen[a->nseen++];
	s->folder = xstrdup(folder);
	s->uidvalidity = uidvalidity;
	s->uid = xstrdup(uid);
}

static bool
name_taken(const struct import *imp, const char *name)
{
	for (size_t i = 0; i < imp->n; i++)
		if (imp->accts[i].name != NULL &&
		    strcmp(imp->accts[i].name, name) == 0)
			return true;
	return false;
}

char *
imp_name(const struct import *imp, const char *s)
{
	char	*base, *name;
	size_t	 i;
	int	 n;

	base = xstrdup(s != NULL && *s != '\0' ? s : "account");
	for (i = 0; base[i] != '\0'; i++) {
		char c = base[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-'))
			base[i] = '-';
	}
	name = xstrdup(base);
	for (n = 2; name_taken(imp, name); n++) {
		free(name);
		name = xasprintf("%s-%d", base, n);
	}
	free(base);
	return name;
}

char *
imp_expand_home(const char *path)
{
	const char	*home = getenv("HOME");

	if (home == NULL)
		home = "";
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0'))
		return xasprintf("%s%s", home, path + 1);
	if (strncmp(path, "$HOME", 5) == 0 &&
	    (path[5] == '/' || path[5] == '\0'))
		return xasprintf("%s%s", home, path + 5);
	return xstrdup(path);
}

static void
free_account(struct imp_account *a)
{
	free(a->name);
	free(a->notes);
	free(a->host);
	free(a->user);
	secret_free(a->password);
	free(a->password_command);
	free(a->ca_file);
	free(a->fingerprint);
	for (size_t i = 0; i < a->nfolders; i++)
		free(a->folders[i]);
	free(a->folders);
	free(a->target.host);
	free(a->target.socket);
	free(a->target.recipient);
	free(a->target.command);
	free(a->target.path);
	for (size_t i = 0; i < a->nseen; i++) {
		free(a->seen[i].folder);
		free(a->seen[i].uid);
	}
	free(a->seen);
}

void
import_free(struct import *imp)
{
	if (imp == NULL)
		return;
	for (size_t i = 0; i < imp->n; i++)
		free_account(&imp->accts[i]);
	free(imp->accts);
	free(imp->notes);
	imp->accts = NULL;
	imp->notes = NULL;
	imp->n = 0;
}

/* --- writing ------------------------------------------------------------ */

/* Each line of notes as "; line", wrapped at white space before
   column 78. */
static void
put_notes(FILE *f, const char *notes)
{
	const char	*p = notes, *nl, *cut;
	size_t		 len;

	while (p != NULL && *p != '\0') {
		nl = strchr(p, '\n');
		len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		while (len > 76) {
			for (cut = p + 76; cut > p && *cut != ' '; cut--)
				;
			if (cut == p)
				break;
			fprintf(f, "; %.*s\n", (int)(cut - p), p);
			len -= (size_t)(cut + 1 - p);
			p = cut + 1;
		}
		fprintf(f, "; %.*s\n", (int)len, p);
		p = nl != NULL ? nl + 1 : NULL;
	}
}

/* A value mailhaul's ini reader takes back as it is: no " ;", no line
   break, no white space at either end. */
static bool
ini_safe(const char *v)
{
	size_t	n = strlen(v);

	if (n == 0 || strchr(v, '\n') != NULL || strchr(v, '\r') != NULL ||
	    strstr(v, " ;") != NULL || strstr(v, "\t;") != NULL)
		return false;
	return v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' &&
	    v[n - 1] != '\t';
}

static void
put_target(FILE *f, const struct imp_account *a)
{
	const struct imp_target	*t = &a->target;

	fprintf(f, "[target:%s]\ntype = %s\n", a->name,
	    cfg_target_type_name(t->type));
	switch (t->type) {
	case CFG_TARGET_SMTP:
	case CFG_TARGET_LMTP:
		if (t->socket != NULL)
			fprintf(f, "socket = %s\n", t->socket);
		else {
			fprintf(f, "host = %s\n", t->host);
			if (t->port != 0)
				fprintf(f, "port = %u\n", t->port);
			fprintf(f, "tls = none\n");
		}
		break;
	case CFG_TARGET_MDA:
		fprintf(f, "command = %s\n", t->command);
		break;
	case CFG_TARGET_MAILDIR:
		fprintf(f, "path = %s\n", t->path);
		break;
	default:
		break;
	}
	if (t->recipient != NULL)
		fprintf(f, "recipient = %s\n", t->recipient);
	fputc('\n', f);
}

/*
 * The password's lines: inline (keep_passwords and the old file had it
 * and it survives the ini reader), else password_command, else a
 * password_file beside the config (written by write_password_file).
 */
static void
put_password(FILE *f, const struct imp_account *a,
    const struct import_opts *o, const char *pwfile)
{
	if (a->password != NULL && o->keep_passwords && ini_safe(a->password)) {
		fprintf(f, "; the password, as the old file had it "
		    "(--keep-passwords)\npassword = %s\n", a->password);
		return;
	}
	if (a->password_command != NULL) {
		fprintf(f, "password_command = %s\n", a->password_command);
		return;
	}
	if (a->password != NULL)
		fprintf(f, "; the password of the old file was moved to this "
		    "file (mode 0600), not copied\n; into this one; or use "
		    "password_command = pass show ...\n");
	else
		fprintf(f, "; the old file had no password here (it came from "
		    "~/.netrc or a prompt):\n; put it in this file (mode 0600) "
		    "or use password_command = pass show ...\n");
	fprintf(f, "password_file = %s\n", pwfile);
}

static void
put_folders(FILE *f, const struct imp_account *a)
{
	if (a->nfolders == 0)
		return;
	fprintf(f, "folders = ");
	for (size_t i = 0; i < a->nfolders; i++)
		fprintf(f, "%s%s", i ? ", " : "", a->folders[i]);
	fputc('\n', f);
}

static void
put_account(FILE *f, const struct imp_account *a,
    const struct import_opts *o, const char *pwfile)
{
	fprintf(f, "[account:%s]\n", a->name);
	put_notes(f, a->notes);
	fprintf(f, "protocol = %s\nhost = %s\n", cfg_protocol_name(a->protocol),
	    a->host);
	if (a->port != 0)
		fprintf(f, "port = %u\n", a->port);
	fprintf(f, "tls = %s\n", cfg_tls_name(a->tls));
	if (a->tls == CFG_TLS_NONE)
		fprintf(f, "; the old tool sent the password in clear here; "
		    "say tls = starttls if the\n; server offers it\n"
		    "allow_plaintext_auth = yes\n");
	if (a->ca_file != NULL)
		fprintf(f, "ca_file = %s\n", a->ca_file);
	if (a->fingerprint != NULL)
		fprintf(f, "fingerprint = %s\n", a->fingerprint);
	fprintf(f, "user = %s\n", a->user);
	put_password(f, a, o, pwfile);
	fprintf(f, "keep = %s\n", a->keep ? "yes" : "no");
	if (a->delete_after != 0)
		fprintf(f, "delete_after = %llds\n", (long long)a->delete_after);
	if (a->max_size != 0)
		fprintf(f, "max_size = %llu\n", (unsigned long long)a->max_size);
	if (a->max_messages != 0)
		fprintf(f, "max_messages = %llu\n",
		    (unsigned long long)a->max_messages);
	put_folders(f, a);
	if (a->idle)
		fprintf(f, "idle = yes\n");
	if (!a->enabled)
		fprintf(f, "enabled = no\n");
	fprintf(f, "target = %s\n\n", a->name);
}

/* The password file of account a, beside out: "DIR/NAME.password". */
static char *
password_path(const char *out, const struct imp_account *a)
{
	const char	*slash = strrchr(out, '/');

	if (slash == NULL)
		return xasprintf("%s.password", a->name);
	return xasprintf("%.*s/%s.password", (int)(slash - out), out, a->name);
}

/* Whether a gets a password file (see put_password). */
static bool
wants_password_file(const struct imp_account *a, const struct import_opts *o)
{
	if (a->password != NULL && o->keep_passwords && ini_safe(a->password))
		return false;
	return a->password_command == NULL;
}

static int
write_new_file(const char *path, const char *data, size_t len,
    struct mh_err *err)
{
	int	fd, saved;
	ssize_t	w;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: %s%s", path, strerror(errno),
		    errno == EEXIST ? " (never overwritten: choose another "
		    "name with -o, or move it away)" : "");
		return -1;
	}
	while (len > 0) {
		if ((w = write(fd, data, len)) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		data += w;
		len -= (size_t)w;
	}
	if (len != 0 || fsync(fd) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		fd = -1;
	}
	if (fd == -1 || close(fd) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* The whole config text (malloc'd, *len bytes). */
static char *
render(const struct import *imp, const struct import_opts *o, size_t *len)
{
	char	*text = NULL, *pw;
	FILE	*f = open_memstream(&text, len);

	if (f == NULL)
		return NULL;
	fprintf(f, "; mailhaul config converted by `mailhaul import %s`.\n"
	    "; Lines starting with ';' are notes: what the old config said "
	    "that mailhaul does\n; differently or not at all.  Read them, "
	    "then run `mailhaul check`.\n\n[general]\n", imp->tool);
	put_notes(f, imp->notes);
	if (imp->interval != 0)
		fprintf(f, "interval = %llds\n", (long long)imp->interval);
	fputc('\n', f);
	for (size_t i = 0; i < imp->n; i++) {
		pw = password_path(o->out, &imp->accts[i]);
		put_target(f, &imp->accts[i]);
		put_account(f, &imp->accts[i], o, pw);
		free(pw);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void
unlink_passwords(const struct import *imp, const struct import_opts *o,
    size_t upto)
{
	for (size_t i = 0; i < upto; i++) {
		char *pw = password_path(o->out, &imp->accts[i]);

		if (wants_password_file(&imp->accts[i], o))
			unlink(pw);
		free(pw);
	}
}

/*
 * Every value that goes into the ini must come back as it is: the ini
 * has no quoting, so a line break or " ;" in a user name, folder or
 * command would make the config say something else (a folder name
 * "A, B" two folders, an MDA "procmail ; logger" only procmail).  0, or
 * -1 naming the account and key (not the value: it may be a secret's
 * neighbour).
 */
static int
check_values(const struct import *imp, struct mh_err *err)
{
	const char	*key = NULL;
	size_t		 i, k;

	for (i = 0; i < imp->n && key == NULL; i++) {
		const struct imp_account *a = &imp->accts[i];
		const struct imp_target	 *t = &a->target;
		const struct { const char *v, *name; } vals[] = {
			{ a->host, "host" }, { a->user, "user" },
			{ a->ca_file, "ca_file" },
			{ a->fingerprint, "fingerprint" },
			{ a->password_command, "password_command" },
			{ t->host, "the target's host" },
			{ t->socket, "the target's socket" },
			{ t->command, "the MDA command" },
			{ t->path, "the Maildir path" },
			{ t->recipient, "the recipient" },
		};

		for (k = 0; key == NULL && k < sizeof vals / sizeof vals[0];
		    k++)
			if (vals[k].v != NULL && !ini_safe(vals[k].v))
				key = vals[k].name;
		for (k = 0; key == NULL && k < a->nfolders; k++)
			if (!ini_safe(a->folders[k]) ||
			    strchr(a->folders[k], ',') != NULL)
				key = "a folder name";
		if (key != NULL) {
			mh_err_set(err, MH_ERR_PERM, "account %s: %s cannot be "
			    "written into mailhaul's config as it is (a line "
			    "break, \" ;\", a ',' in a folder name or white "
			    "space at an end): nothing imported; change it in "
			    "the old file, or write this account by hand",
			    a->name, key);
			return -1;
		}
	}
	return 0;
}

int
import_write(const struct import *imp, const struct import_opts *o,
    struct mh_err *err)
{
	char	*text, *pw;
	size_t	 len, i;
	int	 rc = -1;

	if (access(o->out, F_OK) == 0 || errno != ENOENT) {
		mh_err_set(err, MH_ERR_LOCAL, "%s exists: it is never "
		    "overwritten (choose another name with -o)", o->out);
		return -1;
	}
	if (check_values(imp, err) == -1)
		return -1;
	if ((text = render(imp, o, &len)) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	for (i = 0; i < imp->n; i++) {
		const struct imp_account *a = &imp->accts[i];

		if (!wants_password_file(a, o))
			continue;
		pw = password_path(o->out, a);
		rc = write_new_file(pw, a->password != NULL ? a->password : "",
		    a->password != NULL ? strlen(a->password) : 0, err);
		free(pw);
		if (rc == -1)
			goto out;
	}
	rc = write_new_file(o->out, text, len, err);
out:
	if (rc == -1)
		unlink_passwords(imp, o, i);
	free(text);
	return rc;
}

int
import_rewrite(const struct import *imp, const struct import_opts *o,
    struct mh_err *err)
{
	char	*text, *tmp;
	size_t	 len;
	int	 rc = -1;

	if ((text = render(imp, o, &len)) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	tmp = xasprintf("%s.new", o->out);
	if (write_new_file(tmp, text, len, err) == 0) {
		if (rename(tmp, o->out) == 0)
			rc = 0;
		else {
			mh_err_set(err, MH_ERR_LOCAL, "%s: %s", o->out,
			    strerror(errno));
			unlink(tmp);
		}
	}
	free(tmp);
	free(text);
	return rc;
}
