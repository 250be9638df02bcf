/*
 * import_getmail.c -- getmail6 rc files and their oldmail-* state into
 * the import model (import.h).
 *
 * A getmailrc is an ini file (read with inih) with [retriever],
 * [destination] and [options]; values may be Python tuples such as
 * ("INBOX", "Sent").  getmail keeps what it delivered in its directory,
 * one file per retriever (and per IMAP mailbox):
 *
 *   oldmail-SERVER-PORT-USER           POP3: "UIDL\0TIMESTAMP" lines
 *   oldmail-SERVER-PORT-USER-MAILBOX   IMAP: "UIDVALIDITY/UID\0TIMESTAMP"
 *
 * where the characters / \ : ; < > | become '-' in the first part and
 * '.' in the mailbox (getmail6 _retrieverbases.py).  getmail writes a
 * POP3 UIDL's '/' as '-'.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/import.h"

struct kv {
	char	*section, *key, *value;
	int	 line;
};

struct rc {
	const char	*path;
	struct kv	*v;
	size_t		 n;
};

static int
on_kv(void *arg, const char *section, const char *key, const char *value)
{
	struct rc	*rc = arg;

	rc->v = xrealloc(rc->v, (rc->n + 1) * sizeof *rc->v);
	rc->v[rc->n].section = xstrdup(section);
	rc->v[rc->n].key = xstrdup(key);
	rc->v[rc->n].value = xstrdup(value != NULL ? value : "");
	rc->n++;
	return 1;
}

static void
rc_free(struct rc *rc)
{
	for (size_t i = 0; i < rc->n; i++) {
		free(rc->v[i].section);
		free(rc->v[i].key);
		secret_free(rc->v[i].value);
	}
	free(rc->v);
}

static const char *
get(const struct rc *rc, const char *section, const char *key)
{
	for (size_t i = 0; i < rc->n; i++)
		if (strcasecmp(rc->v[i].section, section) == 0 &&
		    strcasecmp(rc->v[i].key, key) == 0)
			return rc->v[i].value;
	return NULL;
}

static bool
get_bool(const struct rc *rc, const char *section, const char *key, bool def)
{
	const char	*v = get(rc, section, key);

	if (v == NULL)
		return def;
	return !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
	    !strcasecmp(v, "on") || !strcmp(v, "1");
}

static uint64_t
get_num(const struct rc *rc, const char *section, const char *key)
{
	const char	*v = get(rc, section, key);

	return v != NULL ? strtoull(v, NULL, 10) : 0;
}

/*
 * A Python tuple or a single value: ("a", 'b', c) -> a, b, c.  *n items,
 * NULL-terminated array of new strings (free with strv_free).
 */
static char **
tuple(const char *s, size_t *n)
{
	char	**v = xcalloc(1, sizeof *v), *item;
	size_t	  len;
	char	  q;

	*n = 0;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '(' || *s == '[')
		s++;
	for (;;) {
		s += strspn(s, " \t,");
		if (*s == '\0' || *s == ')' || *s == ']')
			break;
		if (*s == '"' || *s == '\'') {
			q = *s++;
			item = xmalloc(strlen(s) + 1);
			for (len = 0; *s != '\0' && *s != q; s++) {
				if (*s == '\\' && s[1] != '\0')
					s++;
				item[len++] = *s;
			}
			item[len] = '\0';
			if (*s == q)
				s++;
		} else {
			len = strcspn(s, ",)]");
			while (len > 0 && isspace((unsigned char)s[len - 1]))
				len--;
			item = xstrndup(s, len);
			s += len;
		}
		v = xrealloc(v, (*n + 2) * sizeof *v);
		v[(*n)++] = item;
		v[*n] = NULL;
	}
	return v;
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* Words joined for /bin/sh -c, each quoted when it needs it. */
static char *
shell_join(char **v)
{
	char	*out = xstrdup(""), *n, *q;
	size_t	 k;

	for (size_t i = 0; v[i] != NULL; i++) {
		if (v[i][0] != '\0' && strspn(v[i], "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+%@~") ==
		    strlen(v[i]))
			q = xstrdup(v[i]);
		else {
			q = xmalloc(strlen(v[i]) * 4 + 3);
			k = 0;
			q[k++] = '\'';
			for (const char *c = v[i]; *c != '\0'; c++) {
				if (*c == '\'') {
					memcpy(q + k, "'\\''", 4);
					k += 4;
				} else
					q[k++] = *c;
			}
			q[k++] = '\'';
			q[k] = '\0';
		}
		n = xasprintf("%s%s%s", out, i ? " " : "", q);
		free(q);
		free(out);
		out = n;
	}
	return out;
}

/* getmail's STRIP_CHAR_RE: runs of / \ : ; < > | become rep. */
static char *
strip_chars(const char *s, char rep)
{
	char	*out = xmalloc(strlen(s) + 1);
	size_t	 k = 0;

	while (*s != '\0') {
		if (strchr("/\\:;<>|", *s) != NULL) {
			while (*s != '\0' && strchr("/\\:;<>|", *s) != NULL)
				s++;
			out[k++] = rep;
		} else
			out[k++] = *s++;
	}
	out[k] = '\0';
	return out;
}

/* --- the retriever -------------------------------------------------------- */

static const struct {
	const char	*type;
	enum cfg_protocol proto;
	bool		 ssl;
	unsigned	 port;
} retrievers[] = {
	{ "SimplePOP3Retriever", CFG_PROTO_POP3, false, 110 },
	{ "SimplePOP3SSLRetriever", CFG_PROTO_POP3, true, 995 },
	{ "BrokenUIDLPOP3Retriever", CFG_PROTO_POP3, false, 110 },
	{ "BrokenUIDLPOP3SSLRetriever", CFG_PROTO_POP3, true, 995 },
	{ "MultidropPOP3Retriever", CFG_PROTO_POP3, false, 110 },
	{ "MultidropPOP3SSLRetriever", CFG_PROTO_POP3, true, 995 },
	{ "SimpleIMAPRetriever", CFG_PROTO_IMAP, false, 143 },
	{ "SimpleIMAPSSLRetriever", CFG_PROTO_IMAP, true, 993 },
	{ "MultidropIMAPRetriever", CFG_PROTO_IMAP, false, 143 },
	{ "MultidropIMAPSSLRetriever", CFG_PROTO_IMAP, true, 993 },
};

/* The retriever keys this file converts; the others become a note. */
static const char *const known_retriever_keys[] = { "type", "server",
	"port", "username", "password", "password_command", "mailboxes",
	"ssl_ca_certs", "ssl_fingerprints", "envelope_recipient", NULL };

static void
note_unknown(const struct rc *rc, const char *section,
    const char *const *known, struct imp_account *a)
{
	for (size_t i = 0; i < rc->n; i++) {
		size_t k;

		if (strcasecmp(rc->v[i].section, section) != 0)
			continue;
		for (k = 0; known[k] != NULL; k++)
			if (strcasecmp(known[k], rc->v[i].key) == 0)
				break;
		if (known[k] == NULL)
			imp_note(&a->notes, "[%s] %s: no mailhaul equivalent, "
			    "left out", section, rc->v[i].key);
	}
}

static void
convert_tls(const struct rc *rc, bool ssl, struct imp_account *a)
{
	const char	*ca = get(rc, "retriever", "ssl_ca_certs");
	const char	*fp = get(rc, "retriever", "ssl_fingerprints");
	char		**v;
	size_t		  n;

	if (ssl)
		a->tls = CFG_TLS_IMPLICIT;
	else {
		a->tls = CFG_TLS_NONE;
		a->plaintext = true;
	}
	if (ssl && ca == NULL && fp == NULL)
		imp_note(&a->notes, "getmail did not verify the server's "
		    "certificate; mailhaul does: if `mailhaul check` fails,\n"
		    "pin it with the fingerprint = line it shows");
	if (ca != NULL)
		a->ca_file = imp_expand_home(ca);
	if (fp != NULL) {
		v = tuple(fp, &n);
		if (n > 0)
			a->fingerprint = xstrdup(v[0]);
		if (n > 1)
			imp_note(&a->notes, "ssl_fingerprints: mailhaul pins "
			    "one certificate, the first");
		strv_free(v);
	}
}

static int
convert_retriever(const struct rc *rc, struct imp_account *a,
    struct mh_err *err)
{
	const char	*type = get(rc, "retriever", "type"), *v;
	size_t		 i, n;
	char		**mb;

	for (i = 0; type != NULL && i < sizeof retrievers /
	    sizeof retrievers[0]; i++)
		if (strcasecmp(type, retrievers[i].type) == 0)
			break;
	if (type == NULL || i == sizeof retrievers / sizeof retrievers[0]) {
		mh_err_set(err, MH_ERR_PERM, "%s: [retriever] type %s is not "
		    "one mailhaul can convert (Simple/BrokenUIDL/Multidrop "
		    "POP3 and IMAP)", rc->path, type ? type : "missing");
		return -1;
	}
	if (get(rc, "retriever", "server") == NULL ||
	    get(rc, "retriever", "username") == NULL) {
		mh_err_set(err, MH_ERR_PERM, "%s: [retriever] needs server "
		    "and username", rc->path);
		return -1;
	}
	a->protocol = retrievers[i].proto;
	a->host = xstrdup(get(rc, "retriever", "server"));
	a->user = xstrdup(get(rc, "retriever", "username"));
	a->port = (v = get(rc, "retriever", "port")) != NULL ?
	    (unsigned)strtoul(v, NULL, 10) : retrievers[i].port;
	if (strncasecmp(type, "Multidrop", 9) == 0)
		imp_note(&a->notes, "%s: mailhaul delivers the whole mailbox "
		    "to the recipient of the target (no envelope sorting)",
		    type);
	convert_tls(rc, retrievers[i].ssl, a);
	if ((v = get(rc, "retriever", "password")) != NULL)
		a->password = xstrdup(v);
	if ((v = get(rc, "retriever", "password_command")) != NULL) {
		mb = tuple(v, &n);
		if (n > 0)
			a->password_command = shell_join(mb);
		strv_free(mb);
	}
	if (a->protocol == CFG_PROTO_IMAP) {
		v = get(rc, "retriever", "mailboxes");
		mb = tuple(v != NULL ? v : "(\"INBOX\",)", &n);
		if (n == 1 && strcmp(mb[0], "ALL") == 0) {
			free(mb[0]);
			mb[0] = xstrdup("*");
		}
		a->folders = mb;
		a->nfolders = n;
	}
	note_unknown(rc, "retriever", known_retriever_keys, a);
	return 0;
}

/* --- the destination ----------------------------------------------------- */

/* One destination: a section name "[sect]" or a path (MultiDestination). */
static bool
convert_one_dest(const struct rc *rc, const char *sect, struct imp_account *a)
{
	const char	*type = get(rc, sect, "type"), *v;
	struct imp_target *t = &a->target;
	char		**args, **argv;
	size_t		  n;

	if (type == NULL)
		return false;
	if (!strcasecmp(type, "Maildir") && get(rc, sect, "path") != NULL) {
		t->type = CFG_TARGET_MAILDIR;
		t->path = imp_expand_home(get(rc, sect, "path"));
		return true;
	}
	if (!strcasecmp(type, "MDA_external") && get(rc, sect, "path")) {
		t->type = CFG_TARGET_MDA;
		args = tuple((v = get(rc, sect, "arguments")) ? v : "()", &n);
		argv = xcalloc(n + 2, sizeof *argv);
		argv[0] = xstrdup(get(rc, sect, "path"));
		memcpy(argv + 1, args, n * sizeof *args);
		free(args);
		t->command = shell_join(argv);
		strv_free(argv);
		if (strstr(t->command, "%(") != NULL)
			imp_note(&a->notes, "the MDA arguments use getmail's "
			    "%%(name) substitutions; mailhaul knows %%F (sender) "
			    "and %%T (recipient): adapt the command");
		return true;
	}
	if (!strcasecmp(type, "MDA_lmtp") && get(rc, sect, "host")) {
		t->type = CFG_TARGET_LMTP;
		v = get(rc, sect, "host");
		if (v[0] == '/')
			t->socket = xstrdup(v);
		else {
			t->host = xstrdup(v);
			t->port = (unsigned)get_num(rc, sect, "port");
			if (t->port == 0)
				t->port = 24;
		}
		v = get(rc, sect, "override");
		t->recipient = xstrdup(v != NULL ? v : a->user);
		if (strchr(t->recipient, '@') == NULL) {
			char *r = xasprintf("%s@localhost", t->recipient);

			free(t->recipient);
			t->recipient = r;
		}
		return true;
	}
	return false;
}

static void
convert_destination(const struct rc *rc, struct imp_account *a)
{
	const char	*type = get(rc, "destination", "type");
	char		**d, *sect;
	size_t		  n;
	bool		  ok = false;

	if (type != NULL && !strcasecmp(type, "MultiDestination")) {
		d = tuple(get(rc, "destination", "destinations") ?
		    get(rc, "destination", "destinations") : "()", &n);
		if (n > 1)
			imp_note(&a->notes, "MultiDestination: mailhaul "
			    "delivers to one target; the first of %zu", n);
		if (n > 0 && d[0][0] == '[') {
			sect = xstrndup(d[0] + 1, strcspn(d[0] + 1, "]"));
			ok = convert_one_dest(rc, sect, a);
			free(sect);
		} else if (n > 0) {
			a->target.type = CFG_TARGET_MAILDIR;
			a->target.path = imp_expand_home(d[0]);
			ok = d[0][0] != '\0' && d[0][strlen(d[0]) - 1] == '/';
		}
		strv_free(d);
	} else
		ok = convert_one_dest(rc, "destination", a);
	if (ok)
		return;
	free(a->target.path);
	a->target.type = CFG_TARGET_MAILDIR;
	a->target.path = imp_expand_home("~/Maildir/");
	a->enabled = false;
	imp_note(&a->notes, "destination type %s cannot be converted (mbox, "
	    "sorters): the target below is a placeholder and the account is "
	    "disabled", type != NULL ? type : "missing");
}

/* --- options, oldmail ---------------------------------------------------- */

static const char *const known_option_keys[] = { "delete", "delete_after",
	"read_all", "max_message_size", "max_messages_per_session",
	"verbose", "message_log", "message_log_syslog", "message_log_verbose",
	NULL };

static void
convert_options(const struct rc *rc, struct imp_account *a)
{
	uint64_t	days = get_num(rc, "options", "delete_after");

	a->keep = !get_bool(rc, "options", "delete", false);
	if (a->keep && days > 0)
		a->delete_after = (int64_t)days * 86400;
	if (get_bool(rc, "options", "read_all", true))
		imp_note(&a->notes, "read_all: getmail delivered every message "
		    "on each run; mailhaul delivers each one once");
	a->max_size = get_num(rc, "options", "max_message_size");
	a->max_messages = get_num(rc, "options", "max_messages_per_session");
	note_unknown(rc, "options", known_option_keys, a);
}

/* s with every '-' as '/', in place. */
static char *
slashes(char *s)
{
	for (char *p = s; *p != '\0'; p++)
		if (*p == '-')
			*p = '/';
	return s;
}

/* Records the ids of one oldmail file; a missing file is none. */
static int
read_oldmail(struct imp_account *a, const char *path, const char *folder,
    struct mh_err *err)
{
	FILE		*f;
	char		*line = NULL, *nul, *slash, *end;
	size_t		 cap = 0;
	ssize_t		 len;
	unsigned long	 uv;

	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		mh_err_set(err, MH_ERR_LOCAL, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		if ((nul = memchr(line, '\0', (size_t)len)) == NULL ||
		    nul == line)
			continue;	/* malformed: getmail skips it too */
		if (a->protocol == CFG_PROTO_POP3) {
			imp_seen_add(a, "", 0, line);
			if (strchr(line, '-') != NULL)	/* getmail wrote '/'
							   as '-': both */
				imp_seen_add(a, "", 0, slashes(line));
			continue;
		}
		if ((slash = strchr(line, '/')) == NULL)
			continue;
		*slash = '\0';
		errno = 0;
		uv = strtoul(line, &end, 10);
		if (errno != 0 || *end != '\0' || uv == 0 || uv > UINT32_MAX ||
		    strchr(slash + 1, '/') != NULL)
			continue;
		imp_seen_add(a, folder, (uint32_t)uv, slash + 1);
	}
	free(line);
	fclose(f);
	return 0;
}

static int
read_state(const struct rc *rc, struct imp_account *a, const char *dir,
    struct mh_err *err)
{
	char	*base, *raw, *path, *mb;
	int	 r = 0;

	raw = xasprintf("oldmail-%s-%u-%s", a->host, a->port, a->user);
	base = strip_chars(raw, '-');
	free(raw);
	if (a->protocol == CFG_PROTO_POP3) {
		path = xasprintf("%s/%s", dir, base);
		r = read_oldmail(a, path, "", err);
		free(path);
	}
	for (size_t i = 0; r == 0 && a->protocol == CFG_PROTO_IMAP &&
	    i < a->nfolders; i++) {
		if (strpbrk(a->folders[i], "*%") != NULL) {
			/* enabled, it would deliver every folder's mail
			   again (I2) */
			a->enabled = false;
			imp_note(&a->notes, "mailboxes = ALL: the state of "
			    "each mailbox is not imported, so the account is "
			    "disabled; run `mailhaul mark-seen %s` after "
			    "getmail's last run, then enable it", a->name);
			continue;
		}
		mb = strip_chars(a->folders[i], '.');
		path = xasprintf("%s/%s-%s", dir, base, mb);
		r = read_oldmail(a, path, a->folders[i], err);
		free(path);
		free(mb);
	}
	free(base);
	return r;
}

/* The default rc: getmail6's XDG place, else the old ~/.getmail. */
static char *
default_rc(void)
{
	const char	*home = getenv("HOME") ? getenv("HOME") : ".";
	const char	*xdg = getenv("XDG_CONFIG_HOME");
	char		*p;

	p = xdg != NULL && *xdg == '/' ? xasprintf("%s/getmail/getmailrc",
	    xdg) : xasprintf("%s/.config/getmail/getmailrc", home);
	if (access(p, F_OK) == 0)
		return p;
	free(p);
	return xasprintf("%s/.getmail/getmailrc", home);
}

static int
import_one(const char *path, const struct import_opts *opts,
    struct import *imp, struct mh_err *err)
{
	struct rc		 rc = { path, NULL, 0 };
	struct imp_account	*a;
	const char		*slash = strrchr(path, '/');
	char			*dir, *name;
	int			 r = -1;

	if ((r = ini_parse(path, on_kv, &rc)) != 0) {
		if (r < 0)
			mh_err_set(err, MH_ERR_LOCAL, "%s: %s", path,
			    strerror(errno));
		else
			mh_err_set(err, MH_ERR_PERM, "%s:%d: not an ini line",
			    path, r);
		rc_free(&rc);
		return -1;
	}
	dir = opts->state != NULL ? xstrdup(opts->state) : slash != NULL ?
	    xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
	a = imp_account_add(imp);
	name = xstrdup(slash != NULL ? slash + 1 : path);
	if (strcmp(name, "getmailrc") == 0 && get(&rc, "retriever", "server")) {
		free(name);
		name = xasprintf("%s", get(&rc, "retriever", "server"));
	}
	a->name = imp_name(imp, name);
	imp_note(&a->notes, "from %s", path);
	r = -1;		/* not ini_parse's 0: a retriever refused is an error */
	if (convert_retriever(&rc, a, err) == 0) {
		convert_destination(&rc, a);
		convert_options(&rc, a);
		r = read_state(&rc, a, dir, err);
	}
	free(name);
	free(dir);
	rc_free(&rc);
	return r;
}

int
import_getmail(const struct import_opts *opts, struct import *imp,
    struct mh_err *err)
{
	char	*def;
	int	 r;

	imp->tool = "getmail";
	if (opts->nrc == 0) {
		def = default_rc();
		r = import_one(def, opts, imp, err);
		free(def);
		return r;
	}
	for (size_t i = 0; i < opts->nrc; i++)
		if (import_one(opts->rc[i], opts, imp, err) == -1)
			return -1;
	return 0;
}
