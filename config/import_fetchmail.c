/*
 * import_fetchmail.c -- ~/.fetchmailrc and ~/.fetchids into the import
 * model (import.h).
 *
 * The rc file is a small keyword language: words, "double" or 'single'
 * quoted strings (C escapes), # comments, and the punctuation , : ;
 * which is noise like the words and, with, has, wants, options.  A
 * quoted string is never a keyword.  Entries start with poll (server),
 * skip (an entry not polled unless named) or defaults (options for the
 * entries after it); set statements are global.  Server options come
 * first, then one or more user descriptions, each with its options.
 * Each (entry, user) pair becomes one mailhaul account.
 *
 * .fetchids holds lines "remoteuser@host UID" for POP3 messages seen
 * and kept on the server (fetchmail 6.4 keeps no IMAP UIDs: it tracks
 * IMAP messages by the server's \Seen flag).
 */
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/import.h"

struct tok {
	char	*s;
	bool	 quoted;
	int	 line;
};

struct toks {
	struct tok	*v;
	size_t		 n;
	const char	*path;
};

/* A list of consecutive tokens. */
struct span {
	size_t	first, n;
};

/* What fetchmail knows of one user of one entry; strings borrowed from
   the tokens, so that a defaults entry can be copied with memcpy. */
struct fm_user {
	const char	*remote, *password, *mda, *smtpname, *smtpaddress;
	const char	*sslproto, *sslcertfile, *sslfingerprint;
	struct span	 locals, folders, smtphosts;
	int		 keep, fetchall, flush, ssl, sslcertck, idle, lmtp;
	int		 line;
	uint64_t	 limit, fetchlimit;
	const char	*ignored[12];	/* keywords with no equivalent */
	size_t		 nignored;
};

struct fm_server {
	const char	*poll, *via, *proto;
	unsigned	 port;
	bool		 skip;
	int		 line;
	const char	*ignored[12];
	size_t		 nignored;
};

struct fm_parse {
	struct toks	*t;
	size_t		 i;
	struct import	*imp;
	struct fm_server dserver;	/* defaults */
	struct fm_user	 duser;
	struct mh_err	*err;
};

/* --- tokenizer ----------------------------------------------------------- */

static void
tok_add(struct toks *t, char *s, bool quoted, int line)
{
	t->v = xrealloc(t->v, (t->n + 1) * sizeof *t->v);
	t->v[t->n].s = s;
	t->v[t->n].quoted = quoted;
	t->v[t->n].line = line;
	t->n++;
}

/* One escape after '\\' at *p (advanced); the byte it stands for. */
static char
unescape(const char **p)
{
	char	c = *(*p)++;
	int	v = 0, k;

	switch (c) {
	case 'n':	return '\n';
	case 't':	return '\t';
	case 'r':	return '\r';
	case 'b':	return '\b';
	case 'x':
		for (k = 0; k < 2 && isxdigit((unsigned char)**p); k++, (*p)++)
			v = v * 16 + (isdigit((unsigned char)**p) ? **p - '0' :
			    (tolower((unsigned char)**p) - 'a' + 10));
		return (char)v;
	case '0': case '1': case '2': case '3':
		v = c - '0';
		for (k = 0; k < 2 && **p >= '0' && **p <= '7'; k++, (*p)++)
			v = v * 8 + (**p - '0');
		return (char)v;
	default:	return c;
	}
}

/* A quoted string at *p (on the quote); -1 when it does not end. */
static int
lex_string(const char **p, int *line, char **out)
{
	char		 q = *(*p)++, *buf;
	size_t		 n = 0;

	buf = xmalloc(strlen(*p) + 1);
	while (**p != '\0' && **p != q) {
		if (**p == '\n')
			(*line)++;
		if (**p == '\\' && (*p)[1] != '\0') {
			(*p)++;
			buf[n++] = unescape(p);
		} else
			buf[n++] = *(*p)++;
	}
	buf[n] = '\0';
	if (**p != q) {
		free(buf);
		return -1;
	}
	(*p)++;
	*out = buf;
	return 0;
}

static int
tokenize(const char *text, struct toks *t, struct mh_err *err)
{
	const char	*p = text, *start;
	int		 line = 1, at;
	char		*s;

	while (*p != '\0') {
		if (*p == '\n')
			line++;
		if (isspace((unsigned char)*p) || *p == ',' || *p == ':' ||
		    *p == ';') {
			p++;
		} else if (*p == '#') {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (*p == '"' || *p == '\'') {
			at = line;
			if (lex_string(&p, &line, &s) == -1) {
				mh_err_set(err, MH_ERR_PERM, "%s:%d: a quoted "
				    "string does not end", t->path, at);
				return -1;
			}
			tok_add(t, s, true, at);
		} else {
			/* fetchmail's word: [^=;:, \t\r\n]+ -- a '#' or a
			   quote inside it is part of it (a password "pa#ss"
			   is not "pa" and a comment) */
			start = p;
			while (*p != '\0' && !isspace((unsigned char)*p) &&
			    strchr(",:;", *p) == NULL)
				p++;
			tok_add(t, xstrndup(start, (size_t)(p - start)), false,
			    line);
		}
	}
	return 0;
}

static void
toks_free(struct toks *t)
{
	for (size_t i = 0; i < t->n; i++)
		secret_free(t->v[i].s);	/* passwords among them */
	free(t->v);
}

/* --- keywords -------------------------------------------------------------- */

enum kw_arg { A_FLAG, A_ONE, A_LIST };

/* Every keyword fetchmail 6.4 knows, so that lists end at the next one
   and a value is never taken for a keyword. */
static const struct { const char *name; enum kw_arg arg; } keywords[] = {
	{ "poll", A_ONE }, { "server", A_ONE }, { "skip", A_ONE },
	{ "defaults", A_FLAG }, { "set", A_FLAG }, { "no", A_FLAG },
	{ "via", A_ONE }, { "proto", A_ONE }, { "protocol", A_ONE },
	{ "port", A_ONE }, { "service", A_ONE }, { "auth", A_ONE },
	{ "authenticate", A_ONE }, { "timeout", A_ONE }, { "envelope", A_ONE },
	{ "qvirtual", A_ONE }, { "aka", A_LIST }, { "local", A_LIST },
	{ "localdomains", A_LIST }, { "interface", A_ONE },
	{ "monitor", A_ONE }, { "plugin", A_ONE }, { "plugout", A_ONE },
	{ "dns", A_FLAG }, { "checkalias", A_FLAG }, { "uidl", A_FLAG },
	{ "interval", A_ONE }, { "tracepolls", A_FLAG },
	{ "principal", A_ONE }, { "esmtpname", A_ONE },
	{ "esmtppassword", A_ONE }, { "bad-header", A_ONE },
	{ "badheader", A_ONE }, { "retrieve-error", A_ONE },
	{ "user", A_ONE }, { "username", A_ONE }, { "is", A_LIST },
	{ "to", A_LIST }, { "pass", A_ONE }, { "password", A_ONE },
	{ "ssl", A_FLAG }, { "sslcert", A_ONE }, { "sslkey", A_ONE },
	{ "sslcertck", A_FLAG }, { "sslcertfile", A_ONE },
	{ "sslcertpath", A_ONE }, { "sslcommonname", A_ONE },
	{ "sslfingerprint", A_ONE }, { "sslproto", A_ONE },
	{ "folder", A_LIST }, { "folders", A_LIST }, { "smtphost", A_LIST },
	{ "smtphosts", A_LIST }, { "fetchdomains", A_LIST },
	{ "smtpaddress", A_ONE }, { "smtpname", A_ONE },
	{ "antispam", A_LIST }, { "mda", A_ONE }, { "bsmtp", A_ONE },
	{ "lmtp", A_FLAG }, { "preconnect", A_ONE }, { "postconnect", A_ONE },
	{ "keep", A_FLAG }, { "flush", A_FLAG }, { "limitflush", A_FLAG },
	{ "fetchall", A_FLAG }, { "rewrite", A_FLAG }, { "stripcr", A_FLAG },
	{ "forcecr", A_FLAG }, { "pass8bits", A_FLAG },
	{ "dropstatus", A_FLAG }, { "dropdelivered", A_FLAG },
	{ "mimedecode", A_FLAG }, { "idle", A_FLAG }, { "limit", A_ONE },
	{ "warnings", A_ONE }, { "batchlimit", A_ONE },
	{ "fetchlimit", A_ONE }, { "fetchsizelimit", A_ONE },
	{ "fastuidl", A_ONE }, { "expunge", A_ONE }, { "properties", A_ONE },
	{ "showdots", A_FLAG }, { "here", A_FLAG }, { "there", A_FLAG },
	{ "and", A_FLAG }, { "with", A_FLAG }, { "has", A_FLAG },
	{ "wants", A_FLAG }, { "options", A_FLAG }, { "daemon", A_ONE },
	{ "logfile", A_ONE }, { "idfile", A_ONE }, { "pidfile", A_ONE },
	{ "postmaster", A_ONE }, { "bouncemail", A_FLAG },
	{ "spambounce", A_FLAG }, { "softbounce", A_FLAG },
	{ "syslog", A_FLAG }, { "invisible", A_FLAG },
};

/* The keyword table entry of token k, or -1 (a value). */
static int
kw_find(const struct tok *k)
{
	if (k->quoted)
		return -1;
	for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
		if (strcasecmp(k->s, keywords[i].name) == 0)
			return (int)i;
	return -1;
}

static bool
is_kw(const struct fm_parse *p, size_t i, const char *name)
{
	return i < p->t->n && !p->t->v[i].quoted &&
	    strcasecmp(p->t->v[i].s, name) == 0;
}

static bool
noise(const struct fm_parse *p, size_t i)
{
	return is_kw(p, i, "and") || is_kw(p, i, "with") ||
	    is_kw(p, i, "has") || is_kw(p, i, "wants") ||
	    is_kw(p, i, "options") || is_kw(p, i, "here") ||
	    is_kw(p, i, "there");
}

/* The value after keyword token p->i (moved past it); NULL at the end
   or when a keyword follows. */
static const char *
value(struct fm_parse *p)
{
	if (p->i + 1 >= p->t->n || kw_find(&p->t->v[p->i + 1]) != -1) {
		mh_err_set(p->err, MH_ERR_PERM, "%s:%d: '%s' needs a value",
		    p->t->path, p->t->v[p->i].line, p->t->v[p->i].s);
		return NULL;
	}
	p->i++;
	return p->t->v[p->i].s;
}

/* The values after keyword token p->i, up to the next keyword. */
static struct span
list(struct fm_parse *p)
{
	struct span	s = { p->i + 1, 0 };

	while (p->i + 1 < p->t->n && kw_find(&p->t->v[p->i + 1]) == -1) {
		p->i++;
		s.n++;
	}
	return s;
}

static int
number(struct fm_parse *p, uint64_t *out)
{
	const char	*v = value(p);
	char		*end;

	if (v == NULL)
		return -1;
	errno = 0;
	*out = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v) {
		mh_err_set(p->err, MH_ERR_PERM, "%s:%d: '%s' is not a number",
		    p->t->path, p->t->v[p->i].line, v);
		return -1;
	}
	return 0;
}

static void
ignore(const char **v, size_t *n, const char *kw)
{
	for (size_t i = 0; i < *n; i++)
		if (strcasecmp(v[i], kw) == 0)
			return;
	if (*n < 12)
		v[(*n)++] = kw;
}

/* --- statements ---------------------------------------------------------- */

/* A user option at p->i with negation neg; 1 if it was none. */
static int
user_option(struct fm_parse *p, struct fm_user *u, bool neg)
{
	const char	*k = p->t->v[p->i].s;
	int		 on = neg ? 0 : 1;

	if (!strcasecmp(k, "keep"))		u->keep = on;
	else if (!strcasecmp(k, "fetchall"))	u->fetchall = on;
	else if (!strcasecmp(k, "flush"))	u->flush = on;
	else if (!strcasecmp(k, "ssl"))		u->ssl = on;
	else if (!strcasecmp(k, "sslcertck"))	u->sslcertck = on;
	else if (!strcasecmp(k, "idle"))	u->idle = on;
	else if (!strcasecmp(k, "lmtp"))	u->lmtp = on;
	else if (!strcasecmp(k, "pass") || !strcasecmp(k, "password"))
		return (u->password = value(p)) == NULL ? -1 : 0;
	else if (!strcasecmp(k, "mda"))
		return (u->mda = value(p)) == NULL ? -1 : 0;
	else if (!strcasecmp(k, "smtpname"))
		return (u->smtpname = value(p)) == NULL ? -1 : 0;
	else if (!strcasecmp(k, "smtpaddress"))
		return (u->smtpaddress = value(p)) == NULL ? -1 : 0;
	else if (!strcasecmp(k, "sslproto"))
		return (u->sslproto = value(p)) == NULL ? -1 : 0;
	else if (!strcasecmp(k, "sslcertfile"))
		return (u->sslcertfile = value(p)) == NULL ? -1 : 0;
	else if (!strcasecmp(k, "sslfingerprint"))
		return (u->sslfingerprint = value(p)) == NULL ? -1 : 0;
	else if (!strcasecmp(k, "folder") || !strcasecmp(k, "folders"))
		u->folders = list(p);
	else if (!strcasecmp(k, "smtphost") || !strcasecmp(k, "smtphosts"))
		u->smtphosts = list(p);
	else if (!strcasecmp(k, "limit"))
		return number(p, &u->limit);
	else if (!strcasecmp(k, "fetchlimit"))
		return number(p, &u->fetchlimit);
	else
		return 1;
	return 0;
}

/* The user description at p->i ("user NAME [there|here] [is L here]"). */
static int
user_start(struct fm_parse *p, struct fm_user *u)
{
	const char	*name;

	u->line = p->t->v[p->i].line;
	if ((name = value(p)) == NULL)
		return -1;
	if (is_kw(p, p->i + 1, "here")) {	/* user LOCAL here is REMOTE */
		p->i++;
		u->locals.first = p->i - 1;
		u->locals.n = 1;
		if (is_kw(p, p->i + 1, "is") || is_kw(p, p->i + 1, "to")) {
			p->i++;
			if ((u->remote = value(p)) == NULL)
				return -1;
		}
		return 0;
	}
	u->remote = name;
	return 0;
}

/* Skips a keyword with no equivalent and its value(s). */
static void
skip_kw(struct fm_parse *p, const char **ign, size_t *nign)
{
	int	k = kw_find(&p->t->v[p->i]);

	ignore(ign, nign, p->t->v[p->i].s);
	if (k == -1)
		return;
	if (keywords[k].arg == A_ONE && p->i + 1 < p->t->n &&
	    kw_find(&p->t->v[p->i + 1]) == -1)
		p->i++;
	else if (keywords[k].arg == A_LIST)
		(void)list(p);
}

static int server_option(struct fm_parse *, struct fm_server *, bool);
static int entry_end(struct fm_parse *, struct fm_server *,
	    struct fm_user *, size_t);

/*
 * One entry (poll, skip or defaults at p->i) up to the next entry or
 * set: its server options, then its users.
 */
static int
entry(struct fm_parse *p)
{
	struct fm_server s = p->dserver;
	struct fm_user	*users = NULL, cur = p->duser;
	size_t		 nusers = 0;
	bool		 defaults = is_kw(p, p->i, "defaults"), neg = false;
	int		 rc;

	s.skip = is_kw(p, p->i, "skip");
	s.line = p->t->v[p->i].line;
	if (!defaults && (s.poll = value(p)) == NULL)
		return -1;
	for (p->i++; p->i < p->t->n; p->i++) {
		if (is_kw(p, p->i, "poll") || is_kw(p, p->i, "server") ||
		    is_kw(p, p->i, "skip") || is_kw(p, p->i, "defaults") ||
		    is_kw(p, p->i, "set"))
			break;
		if (noise(p, p->i))
			continue;
		if (is_kw(p, p->i, "no")) {
			neg = true;
			continue;
		}
		if (is_kw(p, p->i, "user") || is_kw(p, p->i, "username")) {
			if (nusers > 0 || cur.remote != NULL ||
			    cur.locals.n != 0) {
				users = xrealloc(users, ++nusers *
				    sizeof *users);
				users[nusers - 1] = cur;
			}
			cur = p->duser;
			if (user_start(p, &cur) == -1)
				goto fail;
		} else if (is_kw(p, p->i, "is") || is_kw(p, p->i, "to")) {
			cur.locals = list(p);
		} else if ((rc = user_option(p, &cur, neg)) == -1) {
			goto fail;
		} else if (rc == 1 && server_option(p, &s, neg) == -1)
			goto fail;
		neg = false;
	}
	users = xrealloc(users, ++nusers * sizeof *users);
	users[nusers - 1] = cur;
	if (defaults) {
		p->dserver = s;
		p->duser = users[nusers - 1];
		p->dserver.poll = NULL;
		free(users);
		return 0;
	}
	rc = entry_end(p, &s, users, nusers);
	free(users);
	return rc;
fail:
	free(users);
	return -1;
}

static int
server_option(struct fm_parse *p, struct fm_server *s, bool neg)
{
	const char	*k = p->t->v[p->i].s;
	uint64_t	 port;

	if (p->t->v[p->i].quoted || kw_find(&p->t->v[p->i]) == -1) {
		mh_err_set(p->err, MH_ERR_PERM, "%s:%d: unexpected '%s'",
		    p->t->path, p->t->v[p->i].line, k);
		return -1;
	}
	if (!strcasecmp(k, "via"))
		return (s->via = value(p)) == NULL ? -1 : 0;
	if (!strcasecmp(k, "proto") || !strcasecmp(k, "protocol"))
		return (s->proto = value(p)) == NULL ? -1 : 0;
	if (!strcasecmp(k, "port") || !strcasecmp(k, "service")) {
		if (number(p, &port) == -1 || port == 0 || port > 65535) {
			mh_err_set(p->err, MH_ERR_PERM, "%s:%d: bad port",
			    p->t->path, p->t->v[p->i].line);
			return -1;
		}
		s->port = (unsigned)port;
		return 0;
	}
	if (!strcasecmp(k, "uidl") || !strcasecmp(k, "dns") ||
	    !strcasecmp(k, "rewrite") || !strcasecmp(k, "bouncemail"))
		return 0;	/* mailhaul always does the like, or never */
	if (neg) {	/* "no envelope" and the like take no value */
		ignore(s->ignored, &s->nignored, k);
		return 0;
	}
	skip_kw(p, s->ignored, &s->nignored);
	return 0;
}

/* --- conversion -------------------------------------------------------- */

static const char *
tok_s(const struct fm_parse *p, struct span s, size_t k)
{
	return k < s.n ? p->t->v[s.first + k].s : NULL;
}

/* The local user fetchmail delivered to: "is NAME here", else the user
   running it. */
static const char *
local_user(const struct fm_parse *p, const struct fm_user *u)
{
	const struct passwd	*pw;

	if (u->locals.n > 0)
		return tok_s(p, u->locals, 0);
	if ((pw = getpwuid(getuid())) != NULL)
		return pw->pw_name;
	return getenv("USER") != NULL ? getenv("USER") : "root";
}

/* s with every "%T" replaced by local (mailhaul substitutes %T only as
   a whole word, and with an address). */
static char *
mda_command(const char *s, const char *local)
{
	char	*out = xstrdup(""), *n;
	const char *p;

	while ((p = strstr(s, "%T")) != NULL) {
		n = xasprintf("%s%.*s%s", out, (int)(p - s), s, local);
		free(out);
		out = n;
		s = p + 2;
	}
	n = xasprintf("%s%s", out, s);
	free(out);
	return n;
}

/* Where fetchmail delivered: mda, smtphost (lmtp), or localhost:25. */
static void
convert_target(const struct fm_parse *p, const struct fm_user *u,
    struct imp_account *a)
{
	struct imp_target	*t = &a->target;
	const char		*local = local_user(p, u), *h, *slash, *dom;

	if (u->mda != NULL) {
		t->type = CFG_TARGET_MDA;
		t->command = mda_command(u->mda, local);
		return;
	}
	t->type = u->lmtp == 1 ? CFG_TARGET_LMTP : CFG_TARGET_SMTP;
	h = u->smtphosts.n > 0 ? tok_s(p, u->smtphosts, 0) : "localhost";
	if (u->smtphosts.n > 1)
		imp_note(&a->notes, "smtphost: fetchmail tried %zu hosts in "
		    "turn; the target is the first", u->smtphosts.n);
	if (h[0] == '/') {
		t->socket = xstrdup(h);
		dom = "localhost";
	} else if ((slash = strchr(h, '/')) != NULL) {
		t->host = xstrndup(h, (size_t)(slash - h));
		t->port = (unsigned)strtoul(slash + 1, NULL, 10);
		dom = t->host;
	} else {
		t->host = xstrdup(h);
		t->port = t->type == CFG_TARGET_SMTP ? 25 : 0;
		dom = h;
	}
	if (u->smtpaddress != NULL)
		dom = u->smtpaddress;
	if (u->smtpname != NULL && strchr(u->smtpname, '@') != NULL)
		t->recipient = xstrdup(u->smtpname);
	else
		t->recipient = xasprintf("%s@%s", u->smtpname != NULL ?
		    u->smtpname : local, dom);
	if (t->type == CFG_TARGET_LMTP && t->port == 0 && t->socket == NULL)
		t->port = 24;
}

/* 64 hex digits, colons allowed: a sha256 fingerprint. */
static bool
is_sha256(const char *s)
{
	size_t	n = 0;

	for (; *s != '\0'; s++) {
		if (*s == ':')
			continue;
		if (!isxdigit((unsigned char)*s))
			return false;
		n++;
	}
	return n == 64;
}

static void
convert_tls(const struct fm_user *u, struct imp_account *a)
{
	if (u->ssl == 1)
		a->tls = CFG_TLS_IMPLICIT;
	else if (u->sslproto != NULL && u->sslproto[0] == '\0') {
		a->tls = CFG_TLS_NONE;
		a->plaintext = true;
	} else {
		a->tls = CFG_TLS_STARTTLS;
		if (u->sslproto == NULL)
			imp_note(&a->notes, "fetchmail used STARTTLS when the "
			    "server offered it and went on in clear text when "
			    "not; mailhaul insists on it");
	}
	if (u->sslcertck == 0)
		imp_note(&a->notes, "no sslcertck: mailhaul always verifies "
		    "the certificate; pin it with fingerprint = (`mailhaul "
		    "check` shows it) or trust its CA with ca_file =");
	if (u->sslcertfile != NULL)
		a->ca_file = imp_expand_home(u->sslcertfile);
	if (u->sslfingerprint != NULL && is_sha256(u->sslfingerprint))
		a->fingerprint = xstrdup(u->sslfingerprint);
	else if (u->sslfingerprint != NULL)
		imp_note(&a->notes, "sslfingerprint %s is an MD5 fingerprint; "
		    "mailhaul pins sha256 (fingerprint =): `mailhaul check` "
		    "shows it", u->sslfingerprint);
}

static void
convert_protocol(const struct fm_server *s, struct imp_account *a)
{
	const char	*pr = s->proto != NULL ? s->proto : "auto";

	if (!strcasecmp(pr, "imap"))
		a->protocol = CFG_PROTO_IMAP;
	else if (!strcasecmp(pr, "pop3") || !strcasecmp(pr, "apop"))
		a->protocol = CFG_PROTO_POP3;
	else if (!strcasecmp(pr, "auto")) {
		a->protocol = CFG_PROTO_POP3;
		a->proto_guessed = true;
		imp_note(&a->notes, "protocol auto: fetchmail tried IMAP, then "
		    "POP3; this account says pop3 (say imap if it is)");
	} else {
		a->protocol = CFG_PROTO_POP3;
		a->enabled = false;
		imp_note(&a->notes, "protocol %s: mailhaul speaks POP3 and "
		    "IMAP only; the account is disabled", pr);
	}
	if (!strcasecmp(pr, "apop"))
		imp_note(&a->notes, "APOP: mailhaul logs in with USER/PASS or "
		    "SASL PLAIN over TLS instead");
}

static void
convert_disposal(const struct fm_parse *p, const struct fm_user *u,
    struct imp_account *a)
{
	a->keep = u->keep == 1;
	if (u->fetchall == 1 && a->keep)
		imp_note(&a->notes, "fetchall: fetchmail fetched every message "
		    "again on each poll; mailhaul delivers each one once");
	if (u->flush == 1)
		imp_note(&a->notes, "flush: fetchmail deleted old messages "
		    "before fetching; mailhaul never deletes what it did not "
		    "deliver (see delete_after)");
	a->max_size = u->limit;
	a->max_messages = u->fetchlimit;
	for (size_t k = 0; k < u->folders.n; k++) {
		if (a->protocol != CFG_PROTO_IMAP) {
			imp_note(&a->notes, "folder %s: POP3 has no folders",
			    tok_s(p, u->folders, k));
			continue;
		}
		a->folders = xrealloc(a->folders, (a->nfolders + 1) *
		    sizeof *a->folders);
		a->folders[a->nfolders++] = xstrdup(tok_s(p, u->folders, k));
	}
	if (u->idle == 1 && a->protocol == CFG_PROTO_IMAP)
		a->idle = true;
	/* fetchmail fetches IMAP messages without \Seen (all with
	   fetchall) and sets \Seen on them: with keep, what carries it now
	   is what it delivered.  Without keep it deleted what it fetched:
	   a \Seen message still there was read elsewhere and never
	   fetched, so nothing is adopted (keep = no would expunge it) */
	if (a->protocol == CFG_PROTO_IMAP && !a->keep)
		imp_note(&a->notes, "keep no: fetchmail deleted what it "
		    "fetched, so the messages still on the server (\\Seen "
		    "or not) were never delivered; mailhaul fetches them all");
	if (a->protocol == CFG_PROTO_IMAP && a->keep) {
		a->adopt_flags = true;
		a->adopt_all = u->fetchall == 1;
		imp_note(&a->notes, "fetchmail kept no UIDs for IMAP: it "
		    "fetched what had no \\Seen flag and set it.  `mailhaul "
		    "import` recorded the messages that carried \\Seen%s as "
		    "delivered when it ran", a->adopt_all ?
		    " (fetchall: all of them)" : "");
	}
}

static void
note_ignored(char **notes, const char *const *v, size_t n)
{
	char	*s, *t;

	if (n == 0)
		return;
	s = xstrdup("");
	for (size_t i = 0; i < n; i++) {
		t = xasprintf("%s%s%s", s, i ? ", " : "", v[i]);
		free(s);
		s = t;
	}
	imp_note(notes, "no mailhaul equivalent, left out: %s", s);
	free(s);
}

static void
convert(struct fm_parse *p, const struct fm_server *s, const struct fm_user *u,
    size_t nusers)
{
	struct imp_account	*a = imp_account_add(p->imp);
	char			*base;

	base = nusers > 1 ? xasprintf("%s-%s", s->poll, u->remote) :
	    xstrdup(s->poll);
	a->name = imp_name(p->imp, base);
	free(base);
	imp_note(&a->notes, "from %s:%d (poll %s, user %s)", p->t->path,
	    u->line ? u->line : s->line, s->poll, u->remote);
	a->host = xstrdup(s->via != NULL ? s->via : s->poll);
	a->port = s->port;
	a->user = xstrdup(u->remote);
	if (u->password != NULL)
		a->password = xstrdup(u->password);
	convert_protocol(s, a);
	convert_tls(u, a);
	convert_disposal(p, u, a);
	convert_target(p, u, a);
	if (u->locals.n > 1)
		imp_note(&a->notes, "multidrop: fetchmail sorted this mailbox "
		    "to %zu local users; mailhaul delivers it all to the "
		    "recipient of the target", u->locals.n);
	if (s->skip) {
		a->enabled = false;
		imp_note(&a->notes, "skip: fetchmail polled it only when "
		    "named on its command line; the account is disabled");
	}
	note_ignored(&a->notes, s->ignored, s->nignored);
	note_ignored(&a->notes, u->ignored, u->nignored);
}

static int
entry_end(struct fm_parse *p, struct fm_server *s, struct fm_user *users,
    size_t nusers)
{
	const char	*login = local_user(p, &p->duser);

	for (size_t k = 0; k < nusers; k++) {
		if (users[k].remote == NULL)	/* fetchmail: the login name */
			users[k].remote = login;
		convert(p, s, &users[k], nusers);
	}
	return 0;
}

/*
 * proto auto with keep and not one UID in .fetchids: fetchmail most
 * likely spoke IMAP (tried first) and kept no UIDs, so as POP3 the
 * account would deliver the whole mailbox again (I2): disabled.
 */
static void
auto_unknown(struct imp_account *a)
{
	if (!a->proto_guessed || !a->keep || a->nseen > 0 || !a->enabled)
		return;
	a->enabled = false;
	imp_note(&a->notes, "protocol auto with keep and no UID in .fetchids: "
	    "fetchmail most likely used IMAP, whose state it does not keep; "
	    "the account is disabled so that it does not deliver the "
	    "mailbox again: set protocol, run `mailhaul mark-seen %s` after "
	    "fetchmail's last run, then enable it", a->name);
}

/* --- set, the file, .fetchids -------------------------------------------- */

/* "set [no] KEYWORD [VALUE]" at p->i; *idfile may be set. */
static int
set_stmt(struct fm_parse *p, const char **idfile)
{
	const char	*k, *v = NULL;
	bool		 neg = false;
	uint64_t	 n;
	int		 kw;

	if (++p->i < p->t->n && is_kw(p, p->i, "no")) {
		neg = true;
		p->i++;
	}
	if (p->i >= p->t->n) {
		mh_err_set(p->err, MH_ERR_PERM, "%s: 'set' at the end",
		    p->t->path);
		return -1;
	}
	k = p->t->v[p->i].s;
	if (!strcasecmp(k, "daemon")) {
		if (number(p, &n) == -1)
			return -1;
		p->imp->interval = (int64_t)n;
	} else if (!strcasecmp(k, "idfile")) {
		if ((*idfile = value(p)) == NULL)
			return -1;
	} else {
		kw = kw_find(&p->t->v[p->i]);
		if (!neg && kw != -1 && keywords[kw].arg == A_ONE &&
		    (v = value(p)) == NULL)
			return -1;
		if (strcasecmp(k, "syslog") != 0 &&
		    strcasecmp(k, "bouncemail") != 0 &&
		    strcasecmp(k, "pidfile") != 0)
			imp_note(&p->imp->notes, "set %s%s%s%s: no mailhaul "
			    "equivalent", neg ? "no " : "", k, v ? " " : "",
			    v ? v : "");
	}
	p->i++;
	return 0;
}

static int
parse(struct fm_parse *p, const char **idfile)
{
	memset(&p->dserver, 0, sizeof p->dserver);
	memset(&p->duser, 0, sizeof p->duser);
	p->duser.keep = p->duser.fetchall = p->duser.flush = -1;
	p->duser.ssl = p->duser.sslcertck = p->duser.idle = -1;
	p->duser.lmtp = -1;
	p->i = 0;
	while (p->i < p->t->n) {
		if (is_kw(p, p->i, "set")) {
			if (set_stmt(p, idfile) == -1)
				return -1;
		} else if (is_kw(p, p->i, "poll") || is_kw(p, p->i, "server") ||
		    is_kw(p, p->i, "skip") || is_kw(p, p->i, "defaults")) {
			if (entry(p) == -1)
				return -1;
		} else {
			mh_err_set(p->err, MH_ERR_PERM, "%s:%d: expected poll, "
			    "skip, defaults or set, not '%s'", p->t->path,
			    p->t->v[p->i].line, p->t->v[p->i].s);
			return -1;
		}
	}
	return 0;
}

static int
read_text(const char *path, char **out, struct mh_err *err)
{
	FILE	*f;
	char	*text = NULL;
	size_t	 len = 0, cap = 0, r;

	if ((f = fopen(path, "re")) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: %s", path, strerror(errno));
		return -1;
	}
	do {
		if (cap - len < 4096)
			text = xrealloc(text, cap += 65536);
		r = fread(text + len, 1, cap - len - 1, f);
		len += r;
	} while (r > 0);
	if (ferror(f)) {
		mh_err_set(err, MH_ERR_LOCAL, "%s: read error", path);
		fclose(f);
		free(text);
		return -1;
	}
	fclose(f);
	text[len] = '\0';
	*out = text;
	return 0;
}

/* The accounts a "user@host" of .fetchids belongs to get uid. */
static size_t
ids_match(struct import *imp, size_t from, const char *user, const char *host,
    const char *uid)
{
	size_t	hits = 0;

	for (size_t i = from; i < imp->n; i++) {
		struct imp_account *a = &imp->accts[i];

		if (a->protocol != CFG_PROTO_POP3 ||
		    strcasecmp(a->user, user) != 0 ||
		    strcasecmp(a->host, host) != 0)
			continue;
		imp_seen_add(a, "", 0, uid);
		hits++;
	}
	return hits;
}

/*
 * .fetchids: "user@host UID" per line.  user may hold spaces and '@'
 * (fetchmail splits at the first space after the first '@', then the
 * user at the last '@' before it), UID has no white space.
 */
static int
read_ids(struct import *imp, size_t from, const char *path,
    struct mh_err *err)
{
	char	*text, *line, *save = NULL, *at, *sp, *uid, *end;
	size_t	 orphans = 0;

	if (access(path, F_OK) == -1 && errno == ENOENT)
		return 0;	/* fetchmail deletes it when nothing is kept */
	if (read_text(path, &text, err) == -1)
		return -1;
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		line += strspn(line, " \t");
		if ((at = strchr(line, '@')) == NULL ||
		    (sp = strchr(at, ' ')) == NULL)
			continue;
		*sp = '\0';
		uid = sp + 1 + strspn(sp + 1, " ");
		end = uid + strcspn(uid, " \t\r");
		*end = '\0';
		at = strrchr(line, '@');
		*at = '\0';
		if (*uid != '\0' && ids_match(imp, from, line, at + 1,
		    uid) == 0)
			orphans++;
	}
	free(text);
	if (orphans > 0)
		imp_note(&imp->notes, "%zu UIDs of %s belong to no POP3 entry "
		    "of the rc file and were not imported", orphans, path);
	return 0;
}

/*
 * Whether home/.fetchmail.pid names a live fetchmail (its daemon): what
 * it fetched after the import would be delivered again by mailhaul.
 * -1 (MH_ERR_BUSY, saying so) when it does.
 */
static int
fetchmail_stopped(const char *home, struct mh_err *err)
{
	char	*path = xasprintf("%s/.fetchmail.pid", home);
	FILE	*f = fopen(path, "r");
	long	 pid = 0;
	int	 rc = 0;

	if (f != NULL && fscanf(f, "%ld", &pid) == 1 && pid > 0 &&
	    (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
		mh_err_set(err, MH_ERR_BUSY, "fetchmail is running (pid %ld, "
		    "%s): stop it first (fetchmail --quit, its cron job or "
		    "unit), then import; what it fetches after the import "
		    "would be delivered twice", pid, path);
		rc = -1;
	}
	if (f != NULL)
		fclose(f);
	free(path);
	return rc;
}

int
import_fetchmail(const struct import_opts *opts, struct import *imp,
    struct mh_err *err)
{
	struct toks	 t = { 0 };
	struct fm_parse	 p = { 0 };
	const char	*home = getenv("FETCHMAILHOME"), *idfile = NULL;
	char		*rc, *ids = NULL, *text = NULL;
	size_t		 from = imp->n;
	int		 ret = -1;

	if (home == NULL)
		home = getenv("HOME") != NULL ? getenv("HOME") : ".";
	imp->tool = "fetchmail";
	if (fetchmail_stopped(home, err) == -1)
		return -1;
	rc = opts->nrc > 0 ? xstrdup(opts->rc[0]) :
	    xasprintf("%s/.fetchmailrc", home);
	if (read_text(rc, &text, err) == -1)
		goto out;
	t.path = rc;
	if (tokenize(text, &t, err) == -1)
		goto out;
	p.t = &t;
	p.imp = imp;
	p.err = err;
	if (parse(&p, &idfile) == -1)
		goto out;
	ids = opts->state != NULL ? xstrdup(opts->state) : idfile != NULL ?
	    imp_expand_home(idfile) : xasprintf("%s/.fetchids", home);
	if ((ret = read_ids(imp, from, ids, err)) == 0)
		for (size_t i = from; i < imp->n; i++)
			auto_unknown(&imp->accts[i]);
out:
	toks_free(&t);
	secret_free(text);
	free(rc);
	free(ids);
	return ret;
}
