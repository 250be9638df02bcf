/*
 * config.c -- ini file -> struct config (see config.h).
 *
 * inih does the tokenising; we feed it through our own line reader, which
 * counts lines, rejects over-long lines and NUL bytes, and follows inih's
 * own rules to know which section each key belongs to and which lines are
 * continuations.  inih's section argument (truncated at 49 bytes) and its
 * return value are not trusted; every diagnostic is ours, with its line.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/internal.h"
#include "config/value.h"
#include "log.h"

#define LINE_MAX_LEN	4096	/* longest line we accept */
#define INI_LINE_BUF	8192	/* what we tell inih (>= LINE_MAX_LEN + 3) */
#define FILE_MAX_LEN	(1024 * 1024)	/* a config file is never larger */
#define HEADER_MAX	49	/* longest section header name */
#define NKEYS_MAX	32

_Static_assert(sizeof(enum cfg_tls) == sizeof(int), "enum is an int");

/*
 * The longest per-operation timeout: a day.  Longer makes no sense for
 * one read or write, and every user converts it to int milliseconds.
 */
#define MAX_TIMEOUT	86400

static const struct choice tls_choices[] = {
	{ "implicit", CFG_TLS_IMPLICIT }, { "starttls", CFG_TLS_STARTTLS },
	{ "none", CFG_TLS_NONE }, { NULL, 0 } };
static const struct choice proto_choices[] = {
	{ "pop3", CFG_PROTO_POP3 }, { "imap", CFG_PROTO_IMAP },
	{ "etrn", CFG_PROTO_ETRN }, { NULL, 0 } };
static const struct choice type_choices[] = {
	{ "smtp", CFG_TARGET_SMTP }, { "lmtp", CFG_TARGET_LMTP },
	{ "maildir", CFG_TARGET_MAILDIR }, { "mda", CFG_TARGET_MDA },
	{ "imap", CFG_TARGET_IMAP }, { "gmail", CFG_TARGET_GMAIL },
	{ NULL, 0 } };
static const struct choice gmail_date_choices[] = {
	{ "date-header", CFG_GMAIL_DATE_HEADER },
	{ "received", CFG_GMAIL_DATE_RECEIVED }, { NULL, 0 } };
static const struct choice chunking_choices[] = {
	{ "auto", CFG_CHUNKING_AUTO }, { "no", CFG_CHUNKING_NO },
	{ NULL, 0 } };
static const struct choice level_choices[] = {
	{ "error", LOG_LVL_ERROR }, { "warn", LOG_LVL_WARN },
	{ "info", LOG_LVL_INFO }, { "debug", LOG_LVL_DEBUG }, { NULL, 0 } };

#define G(f)	offsetof(struct cfg_general, f)
#define T(f)	offsetof(struct cfg_target, f)
#define A(f)	offsetof(struct cfg_account, f)

/* One row per key, in the order config_print() prints them. */
static const struct keydef general_keys[] = {
	{ "state", K_PATH, G(state), 0, 0, NULL, 0, 0 },
	{ "interval", K_DURATION, G(interval), 0, 0, NULL, 0, 0 },
	{ "concurrency", K_UINT, G(concurrency), 0, 0, NULL, 1, 64 },
	{ "concurrency_per_server", K_UINT, G(concurrency_per_server), 0, 0,
	    NULL, 1, 64 },
	{ "log", K_LOG, G(log), G(log_file), 0, NULL, 0, 0 },
	{ "log_level", K_ENUM, G(log_level), 0, 0, level_choices, 0, 0 },
	{ "notify_command", K_STR, G(notify_command), 0, 0, NULL, 0, 0 },
	{ "timeout", K_DURATION, G(timeout), 0, 0, NULL, 1, MAX_TIMEOUT },
	{ NULL, 0, 0, 0, 0, NULL, 0, 0 }
};

static const struct choice auth_choices[] = {
	{ "auto", CFG_AUTH_AUTO }, { "password", CFG_AUTH_PASSWORD },
	{ "xoauth2", CFG_AUTH_XOAUTH2 }, { "oauthbearer", CFG_AUTH_OAUTHBEARER },
	{ NULL, 0 } };

static const struct choice provider_choices[] = {
	{ "gmail", CFG_PROVIDER_GMAIL }, { "outlook", CFG_PROVIDER_OUTLOOK },
	{ "office365", CFG_PROVIDER_OFFICE365 },
	{ "yahoo", CFG_PROVIDER_YAHOO }, { "icloud", CFG_PROVIDER_ICLOUD },
	{ "fastmail", CFG_PROVIDER_FASTMAIL }, { NULL, 0 } };

/*
 * provider = NAME: its servers, one row per enum cfg_provider (NULL: the
 * provider has no such server).  IMAP and POP3 use implicit TLS (993,
 * 995); the SMTP port follows smtp_tls (465 implicit, 587 starttls).
 * auth is the default of the `auth` key.
 */
static const struct preset {
	const char	*imap, *pop3, *smtp;
	enum cfg_tls	 smtp_tls;
	enum cfg_auth	 auth;
} presets[] = {
	[CFG_PROVIDER_GMAIL] = { "imap.gmail.com", "pop.gmail.com",
	    "smtp.gmail.com", CFG_TLS_IMPLICIT, CFG_AUTH_AUTO },
	[CFG_PROVIDER_OUTLOOK] = { "outlook.office365.com",
	    "outlook.office365.com", "smtp.office365.com", CFG_TLS_STARTTLS,
	    CFG_AUTH_AUTO },
	[CFG_PROVIDER_OFFICE365] = { "outlook.office365.com",
	    "outlook.office365.com", "smtp.office365.com", CFG_TLS_STARTTLS,
	    CFG_AUTH_AUTO },
	[CFG_PROVIDER_YAHOO] = { "imap.mail.yahoo.com", "pop.mail.yahoo.com",
	    "smtp.mail.yahoo.com", CFG_TLS_IMPLICIT, CFG_AUTH_AUTO },
	[CFG_PROVIDER_ICLOUD] = { "imap.mail.me.com", NULL,
	    "smtp.mail.me.com", CFG_TLS_STARTTLS, CFG_AUTH_PASSWORD },
	[CFG_PROVIDER_FASTMAIL] = { "imap.fastmail.com", "pop.fastmail.com",
	    "smtp.fastmail.com", CFG_TLS_IMPLICIT, CFG_AUTH_AUTO },
};

#define E(f)	offsetof(struct cfg_endpoint, f)

/*
 * The keys of struct cfg_endpoint, once for accounts and targets: a
 * section's keys are its own first row (protocol, type), these, then the
 * rest of its own (key_at).
 */
static const struct keydef endpoint_keys[] = {
	{ "provider", K_ENUM, E(provider), 0, 0, provider_choices, 0, 0 },
	{ "host", K_STR, E(host), 0, KF_ACCOUNT_REQUIRED, NULL, 0, 0 },
	{ "port", K_PORT, E(port), 0, 0, NULL, 0, 0 },
	{ "socket", K_PATH, E(socket), 0, KF_TARGET_ONLY, NULL, 0, 0 },
	{ "tls", K_ENUM, E(tls), 0, 0, tls_choices, 0, 0 },
	{ "ca_file", K_PATH, E(ca_file), 0, 0, NULL, 0, 0 },
	{ "fingerprint", K_FPR, E(fingerprint), 0, 0, NULL, 0, 0 },
	{ "user", K_STR, E(user), 0, KF_ACCOUNT_REQUIRED, NULL, 0, 0 },
	{ "password", K_SECRET, E(secret.password), 0, 0, NULL, 0, 0 },
	{ "password_command", K_STR, E(secret.command), 0, 0, NULL, 0, 0 },
	{ "password_file", K_PATH, E(secret.file), 0, 0, NULL, 0, 0 },
	{ "auth", K_ENUM, E(auth), 0, 0, auth_choices, 0, 0 },
	{ "oauth2", K_STR, E(oauth2_name), 0, 0, NULL, 0, 0 },
	{ "allow_plaintext_auth", K_BOOL, E(allow_plaintext_auth), 0, 0, NULL,
	    0, 0 },
	{ NULL, 0, 0, 0, 0, NULL, 0, 0 }
};

static const struct keydef target_keys[] = {
	{ "type", K_ENUM, T(type), 0, KF_REQUIRED, type_choices, 0, 0 },
	{ "recipient", K_ADDRS, T(smtp.recipients), T(smtp.nrecipients), 0,
	    NULL, 0, 0 },
	{ "envelope_from", K_ENVFROM, T(smtp.envfrom), T(smtp.envelope_from),
	    0, NULL, 0, 0 },
	{ "helo", K_STR, T(smtp.helo), 0, 0, NULL, 0, 0 },
	{ "chunking", K_ENUM, T(smtp.chunking), 0, 0, chunking_choices, 0,
	    0 },
	{ "received", K_BOOL, T(received), 0, 0, NULL, 0, 0 },
	{ "path", K_PATH, T(maildir.path), 0, 0, NULL, 0, 0 },
	{ "command", K_STR, T(mda.command), 0, 0, NULL, 0, 0 },
	{ "timeout", K_DURATION, T(mda.timeout), 0, 0, NULL, 0, 0 },
	{ "folder", K_STR, T(imap.folder), 0, 0, NULL, 0, 0 },
	{ "flags", K_FLAGS, T(imap.flags), T(imap.nflags), 0, NULL, 0, 0 },
	{ "labels", K_FOLDERS, T(gmail.labels), T(gmail.nlabels), 0, NULL, 0,
	    0 },
	{ "internal_date", K_ENUM, T(gmail.internal_date), 0, 0,
	    gmail_date_choices, 0, 0 },
	{ "never_mark_spam", K_BOOL, T(gmail.never_mark_spam), 0, 0, NULL, 0,
	    0 },
	{ "process_for_calendar", K_BOOL, T(gmail.process_for_calendar), 0,
	    0, NULL, 0, 0 },
	{ "api_url", K_STR, T(gmail.api_url), 0, 0, NULL, 0, 0 },
	{ NULL, 0, 0, 0, 0, NULL, 0, 0 }
};

/*
 * Which kinds of target use a key (a bit per enum cfg_target_type); a
 * key not listed is every kind's.  Adding a kind: its keys above, its
 * bit here, its checks in check_target_kind().
 */
#define TK(t)		(1u << (t))
#define TK_SMTP		(TK(CFG_TARGET_SMTP) | TK(CFG_TARGET_LMTP))
#define TK_NET		(TK_SMTP | TK(CFG_TARGET_IMAP))
static const struct {
	const char	*key;
	unsigned	 kinds;
	const char	*what;		/* the kinds, for the error */
} target_key_kinds[] = {
	{ "provider", TK(CFG_TARGET_SMTP) | TK(CFG_TARGET_IMAP),
	    "smtp and imap" },
	{ "host", TK_NET, "smtp, lmtp and imap" },
	{ "port", TK_NET, "smtp, lmtp and imap" },
	{ "socket", TK(CFG_TARGET_LMTP), "lmtp" },
	{ "tls", TK_NET, "smtp, lmtp and imap" },
	{ "ca_file", TK_NET | TK(CFG_TARGET_GMAIL), "smtp, lmtp, imap and "
	    "gmail" },
	{ "fingerprint", TK_NET, "smtp, lmtp and imap" },
	{ "user", TK_NET, "smtp, lmtp and imap" },
	{ "password", TK_NET, "smtp, lmtp and imap" },
	{ "password_command", TK_NET, "smtp, lmtp and imap" },
	{ "password_file", TK_NET, "smtp, lmtp and imap" },
	{ "allow_plaintext_auth", TK_NET, "smtp, lmtp and imap" },
	{ "auth", TK_NET, "smtp, lmtp and imap" },
	{ "oauth2", TK_NET | TK(CFG_TARGET_GMAIL), "smtp, lmtp, imap and "
	    "gmail" },
	{ "recipient", TK_SMTP | TK(CFG_TARGET_MDA), "smtp, lmtp and mda" },
	{ "envelope_from", TK_SMTP, "smtp and lmtp" },
	{ "helo", TK_SMTP, "smtp and lmtp" },
	{ "chunking", TK_SMTP, "smtp and lmtp" },
	{ "path", TK(CFG_TARGET_MAILDIR), "maildir" },
	{ "command", TK(CFG_TARGET_MDA), "mda" },
	{ "timeout", TK(CFG_TARGET_MDA), "mda" },
	{ "folder", TK(CFG_TARGET_IMAP), "imap" },
	{ "flags", TK(CFG_TARGET_IMAP), "imap" },
	{ "labels", TK(CFG_TARGET_GMAIL), "gmail" },
	{ "internal_date", TK(CFG_TARGET_GMAIL), "gmail" },
	{ "never_mark_spam", TK(CFG_TARGET_GMAIL), "gmail" },
	{ "process_for_calendar", TK(CFG_TARGET_GMAIL), "gmail" },
	{ "api_url", TK(CFG_TARGET_GMAIL), "gmail" },
	{ NULL, 0, NULL }
};

/* Whether key is one of type's; *what names the kinds that have it. */
static bool
target_key_ok(const char *key, enum cfg_target_type type, const char **what)
{
	size_t	i;

	for (i = 0; target_key_kinds[i].key != NULL; i++)
		if (strcmp(target_key_kinds[i].key, key) == 0) {
			*what = target_key_kinds[i].what;
			return (target_key_kinds[i].kinds & TK(type)) != 0;
		}
	*what = "every";
	return true;
}

static const struct keydef account_keys[] = {
	{ "protocol", K_ENUM, A(protocol), 0, KF_REQUIRED, proto_choices,
	    0, 0 },
	{ "target", K_STR, A(target_name), 0, 0, NULL, 0, 0 },
	{ "keep", K_BOOL, A(keep), 0, 0, NULL, 0, 0 },
	{ "delete_after", K_DURATION, A(delete_after), 0, 0, NULL, 0, 0 },
	{ "max_size", K_SIZE, A(max_size), 0, 0, NULL, 0, 0 },
	{ "max_messages", K_UINT64, A(max_messages), 0, 0, NULL, 0,
	    UINT32_MAX },
	{ "folders", K_FOLDERS, A(folders), A(nfolders), KF_IMAP, NULL, 0, 0 },
	{ "idle", K_BOOL, A(idle), 0, KF_IMAP, NULL, 0, 0 },
	{ "idle_connections", K_UINT, A(idle_connections), 0, KF_IMAP, NULL,
	    1, 100 },
	{ "move_to", K_STR, A(move_to), 0, KF_IMAP, NULL, 0, 0 },
	{ "mark_seen", K_BOOL, A(mark_seen), 0, KF_IMAP, NULL, 0, 0 },
	{ "interval", K_DURATION, A(interval), 0, 0, NULL, 0, 0 },
	{ "enabled", K_BOOL, A(enabled), 0, 0, NULL, 0, 0 },
	{ "timeout", K_DURATION, A(timeout), 0, 0, NULL, 1, MAX_TIMEOUT },
	{ "etrn_domains", K_FOLDERS, A(etrn_domains), A(netrn_domains), 0,
	    NULL, 0, 0 },
	{ NULL, 0, 0, 0, 0, NULL, 0, 0 }
};

enum skind { S_GENERAL, S_TARGET, S_ACCOUNT, S_OAUTH2 };

/* A section as seen while parsing: where it is and which keys it set. */
struct psect {
	enum skind	 kind;
	size_t		 idx;			/* into targets/accounts */
	int		 line;
	char		*header;		/* "target:home" */
	int		 keyline[NKEYS_MAX];	/* 0: not set */
};

struct diag {
	int	 line;
	char	*text;
};

struct load {
	struct config	*cfg;
	const char	*path;
	FILE		*fp;
	char		*buf;		/* LINE_MAX_LEN + 2 bytes */
	size_t		 total;		/* bytes read so far */
	bool		 too_big;	/* stopped at FILE_MAX_LEN */
	int		 lineno;
	bool		 prev_key;	/* inih's prev_name is set */
	bool		 continuation;	/* the current line continues a key */
	struct psect	*sects;
	size_t		 nsects;
	struct psect	*cur;		/* NULL: before any section */
	bool		 skip;		/* inside a rejected section */
	struct diag	*diags;
	size_t		 ndiags;
	int		 nerrors;
	int		 secret_line;	/* first inline password */
};

static const struct keydef *
own_keys(enum skind k)
{
	switch (k) {
	case S_GENERAL:	return general_keys;
	case S_TARGET:	return target_keys;
	case S_ACCOUNT:	return account_keys;
	case S_OAUTH2:	return cfg_oauth2_keys;
	}
	return NULL;
}

static size_t
endpoint_off(enum skind k)
{
	return k == S_TARGET ? T(ep) : A(ep);
}

/*
 * Key i of a section of kind k, NULL past the last; *off (may be NULL)
 * gets the offset within the section's struct that the row's offsets
 * are relative to.  Targets and accounts: their first own row, the
 * endpoint keys that apply to them, their other rows.
 */
static const struct keydef *
key_at(enum skind k, int i, size_t *off)
{
	const struct keydef	*own = own_keys(k), *e;
	size_t			 dummy;

	if (off == NULL)
		off = &dummy;
	*off = 0;
	if (k == S_GENERAL || k == S_OAUTH2 || i == 0)
		return own[i].name != NULL ? &own[i] : NULL;
	i--;
	for (e = endpoint_keys; e->name != NULL; e++) {
		if (k == S_ACCOUNT && (e->flags & KF_TARGET_ONLY))
			continue;
		if (i-- == 0) {
			*off = endpoint_off(k);
			return e;
		}
	}
	return own[i + 1].name != NULL ? &own[i + 1] : NULL;
}

static bool
key_required(enum skind k, const struct keydef *d)
{
	return (d->flags & KF_REQUIRED) ||
	    (k == S_ACCOUNT && (d->flags & KF_ACCOUNT_REQUIRED));
}

static void *
sect_obj(struct load *l, const struct psect *s)
{
	switch (s->kind) {
	case S_GENERAL:	return &l->cfg->general;
	case S_TARGET:	return &l->cfg->targets[s->idx];
	case S_ACCOUNT:	return &l->cfg->accounts[s->idx];
	case S_OAUTH2:	return &l->cfg->oauth2s[s->idx];
	}
	return NULL;
}

static int
key_index(enum skind k, const char *name)
{
	const struct keydef	*d;
	int			 i;

	for (i = 0; (d = key_at(k, i, NULL)) != NULL; i++)
		if (strcasecmp(d->name, name) == 0)
			return i;
	return -1;
}

/* The line where key name was set in s, 0 if it was not. */
static int
kl(const struct psect *s, const char *name)
{
	int	i = key_index(s->kind, name);

	return i == -1 ? 0 : s->keyline[i];
}

int
cfg_keyline(const struct psect *s, const char *name)
{
	return kl(s, name);
}

static void
diag_add(struct load *l, int line, bool warning, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
diag_add(struct load *l, int line, bool warning, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	msg = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(msg, (size_t)n + 1, fmt, ap);
	va_end(ap);
	l->diags = xrealloc(l->diags, (l->ndiags + 1) * sizeof *l->diags);
	l->diags[l->ndiags].line = line;
	if (warning)
		l->diags[l->ndiags].text = xasprintf("warning: %s:%d: %s",
		    l->path, line, msg);
	else
		l->diags[l->ndiags].text = xasprintf("%s:%d: %s", l->path,
		    line, msg);
	l->ndiags++;
	free(msg);
	if (!warning)
		l->nerrors++;
}

#define ERR(l, line, ...)	diag_add((l), (line), false, __VA_ARGS__)

static void	check_shared_mailboxes(struct load *);

/* An unknown section: what was probably meant, else what there is. */
static void
unknown_section(struct load *l, const char *header)
{
	static const char *const kinds[] = { "general", "target", "account",
	    "oauth2" };
	const char	*colon = strchr(header, ':'), *best = NULL;
	char		 kind[32];
	int		 d, bestd = 3;

	snprintf(kind, sizeof kind, "%.*s", colon != NULL ?
	    (int)(colon - header) : (int)strlen(header), header);
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if ((d = value_distance(kind, kinds[i])) < bestd) {
			bestd = d;
			best = kinds[i];
		}
	if (best != NULL)
		ERR(l, l->lineno, "unknown section [%s]; did you mean [%s%s]?",
		    header, best, colon != NULL && strcmp(best, "general") != 0 ?
		    colon : "");
	else
		ERR(l, l->lineno, "unknown section [%s]; expected [general], "
		    "[target:NAME], [account:NAME] or [oauth2:NAME]", header);
}

void
cfg_err(struct load *l, int line, const char *fmt, ...)
{
	va_list	ap;
	char	msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	ERR(l, line, "%s", msg);
}

/* Writes the diagnostics ordered by line (stable), then frees them. */
static void
diag_flush(struct load *l, FILE *out)
{
	size_t	i, j;

	for (i = 1; i < l->ndiags; i++) {	/* insertion sort: stable */
		struct diag d = l->diags[i];

		for (j = i; j > 0 && l->diags[j - 1].line > d.line; j--)
			l->diags[j] = l->diags[j - 1];
		l->diags[j] = d;
	}
	for (i = 0; i < l->ndiags; i++) {
		if (out != NULL)
			fprintf(out, "%s\n", l->diags[i].text);
		free(l->diags[i].text);
	}
	free(l->diags);
	l->diags = NULL;
	l->ndiags = 0;
}

/* ---- sections ---- */

static bool
valid_name(const char *s)
{
	if (*s == '\0' || *s == '.')
		return false;
	for (; *s != '\0'; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("._-@+", *s) != NULL)
			continue;
		return false;
	}
	return true;
}

static void
section_begin(struct load *l, const char *header)
{
	struct config	*cfg = l->cfg;
	struct psect	*s;
	const char	*name = NULL;
	char		*canon;
	enum skind	 kind;
	size_t		 i, plen;

	l->cur = NULL;
	l->skip = true;
	if (strlen(header) > HEADER_MAX) {
		ERR(l, l->lineno, "section name [%.20s...] is longer than %d "
		    "bytes", header, HEADER_MAX);
		return;
	}
	if (strcasecmp(header, "general") == 0)
		kind = S_GENERAL;
	else if (strncasecmp(header, "target:", 7) == 0) {
		kind = S_TARGET;
		name = header + 7;
	} else if (strncasecmp(header, "account:", 8) == 0) {
		kind = S_ACCOUNT;
		name = header + 8;
	} else if (strncasecmp(header, "oauth2:", 7) == 0) {
		kind = S_OAUTH2;
		name = header + 7;
	} else {
		unknown_section(l, header);
		return;
	}
	if (name != NULL && !valid_name(name)) {
		ERR(l, l->lineno, "bad name '%s' in [%s]: use letters, digits "
		    "and . _ - @ + (not starting with '.')", name, header);
		return;
	}
	/* the kind in lower case: [Account:x] is [account:x] */
	canon = xstrdup(header);
	plen = name != NULL ? (size_t)(name - header) : strlen(header);
	for (i = 0; i < plen; i++)
		canon[i] = (char)tolower((unsigned char)canon[i]);
	for (i = 0; i < l->nsects; i++) {
		if (strcmp(l->sects[i].header, canon) == 0) {
			ERR(l, l->lineno, "duplicate section [%s] (first on "
			    "line %d)", canon, l->sects[i].line);
			free(canon);
			return;
		}
	}
	l->sects = xrealloc(l->sects, (l->nsects + 1) * sizeof *l->sects);
	s = &l->sects[l->nsects++];
	memset(s, 0, sizeof *s);
	s->kind = kind;
	s->line = l->lineno;
	s->header = canon;
	if (kind == S_TARGET) {
		cfg->targets = xrealloc(cfg->targets,
		    (cfg->ntargets + 1) * sizeof *cfg->targets);
		s->idx = cfg->ntargets++;
		memset(&cfg->targets[s->idx], 0, sizeof cfg->targets[0]);
		cfg->targets[s->idx].name = xstrdup(name);
		cfg->targets[s->idx].line = l->lineno;
	} else if (kind == S_ACCOUNT) {
		cfg->accounts = xrealloc(cfg->accounts,
		    (cfg->naccounts + 1) * sizeof *cfg->accounts);
		s->idx = cfg->naccounts++;
		memset(&cfg->accounts[s->idx], 0, sizeof cfg->accounts[0]);
		cfg->accounts[s->idx].name = xstrdup(name);
		cfg->accounts[s->idx].line = l->lineno;
	} else if (kind == S_OAUTH2) {
		cfg->oauth2s = xrealloc(cfg->oauth2s,
		    (cfg->noauth2s + 1) * sizeof *cfg->oauth2s);
		s->idx = cfg->noauth2s++;
		memset(&cfg->oauth2s[s->idx], 0, sizeof cfg->oauth2s[0]);
		cfg->oauth2s[s->idx].name = xstrdup(name);
		cfg->oauth2s[s->idx].line = l->lineno;
	}
	l->cur = s;
	l->skip = false;
}

/* ---- the line reader ---- */

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' ||
	    c == '\n';
}

/* inih's scan: the first of chars, or an inline ';' after white space. */
static const char *
find_chars_or_comment(const char *s, const char *chars)
{
	bool	was_space = false;

	while (*s != '\0' && (chars == NULL || strchr(chars, *s) == NULL) &&
	    !(was_space && *s == ';')) {
		was_space = is_space(*s);
		s++;
	}
	return s;
}

/*
 * Classifies one line the way inih will, tracks sections, and reports
 * what inih would reject.  Returns the text inih should see (line itself,
 * or an empty line in place of a rejected one).
 */
static const char *
classify(struct load *l, char *line)
{
	char		*start = line, *end, *e;
	const char	*p;

	l->continuation = false;
	if (l->lineno == 1 && (unsigned char)start[0] == 0xEF &&
	    (unsigned char)start[1] == 0xBB && (unsigned char)start[2] == 0xBF)
		start += 3;
	while (is_space(*start))
		start++;
	end = start + strlen(start);
	while (end > start && is_space(end[-1]))
		end--;
	if (start == end || *start == ';' || *start == '#')
		return line;
	if (l->prev_key && start > line) {
		l->continuation = true;
		return line;
	}
	if (*start == '[') {
		l->prev_key = false;
		p = find_chars_or_comment(start + 1, "]");
		if (*p != ']') {
			ERR(l, l->lineno, "section header without ']'");
			l->cur = NULL;
			l->skip = true;
			return "[]";
		}
		for (e = (char *)p + 1; e < end && is_space(*e); e++)
			;
		if (e < end && *e != ';' && *e != '#') {
			ERR(l, l->lineno, "text after the section header");
			l->cur = NULL;
			l->skip = true;
			return line;
		}
		{
			char *h = xstrndup(start + 1, (size_t)(p - start - 1));

			section_begin(l, h);
			free(h);
		}
		return line;
	}
	p = find_chars_or_comment(start, "=:");
	if (*p != '=' && *p != ':') {
		ERR(l, l->lineno, "expected 'key = value'");
		return "";
	}
	l->prev_key = true;
	return line;
}

/*
 * Reads one line into l->buf, keeping at most LINE_MAX_LEN + 1 bytes of
 * it (enough to tell that it is too long) and counting the rest.  Returns
 * the line's length, or -1 at the end of the file or past FILE_MAX_LEN
 * (then l->too_big): a config is small, and /dev/zero is not one.
 */
static ssize_t
read_line(struct load *l)
{
	size_t	len = 0;
	int	c;

	if (l->buf == NULL)
		l->buf = xmalloc(LINE_MAX_LEN + 2);
	while ((c = getc(l->fp)) != EOF) {
		if (++l->total > FILE_MAX_LEN) {
			l->too_big = true;
			return -1;
		}
		if (c == '\n')
			break;
		if (len <= LINE_MAX_LEN)
			l->buf[len] = (char)c;
		len++;
	}
	if (c == EOF && len == 0)
		return -1;
	l->buf[len <= LINE_MAX_LEN ? len : LINE_MAX_LEN + 1] = '\0';
	return (ssize_t)len;
}

static char *
reader(char *str, int num, void *stream)
{
	struct load	*l = stream;
	const char	*give;
	ssize_t		 n;
	size_t		 len;

	if ((n = read_line(l)) == -1)
		return NULL;
	l->lineno++;
	len = (size_t)n;
	l->continuation = false;
	if (memchr(l->buf, '\0', len <= LINE_MAX_LEN ? len : LINE_MAX_LEN)
	    != NULL) {
		ERR(l, l->lineno, "NUL byte in line");
		give = "";
	} else if (len > LINE_MAX_LEN || len + 3 > (size_t)num) {
		ERR(l, l->lineno, "line longer than %d bytes", LINE_MAX_LEN);
		give = "";
		if (l->buf[strspn(l->buf, " \t")] == '[') {
			/* A lost header: skip its keys, not blame them. */
			l->cur = NULL;
			l->skip = true;
			l->prev_key = false;
			give = "[]";
		}
	} else
		give = classify(l, l->buf);
	snprintf(str, (size_t)num, "%s\n", give);
	return str;
}

/* ---- values ---- */

static char **
split_list(const char *v, size_t *n)
{
	char		**out = NULL;
	const char	 *p = v, *comma, *s, *e;

	*n = 0;
	for (;;) {
		comma = strchr(p, ',');
		e = comma != NULL ? comma : p + strlen(p);
		for (s = p; s < e && is_space(*s); s++)
			;
		while (e > s && is_space(e[-1]))
			e--;
		out = xrealloc(out, (*n + 1) * sizeof *out);
		out[(*n)++] = xstrndup(s, (size_t)(e - s));
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return out;
}

static void
free_list(char **v, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static const char *
choices_text(const struct choice *c, char *buf, size_t size)
{
	size_t	len = 0;

	buf[0] = '\0';
	for (; c->name != NULL && len < size; c++) {
		snprintf(buf + len, size - len, "%s%s", len ? "|" : "",
		    c->name);
		len = strlen(buf);
	}
	return buf;
}

/*
 * An IMAP flag we may APPEND with: a system flag (\Seen \Answered
 * \Flagged \Draft; \Deleted and \Recent make no sense) or a keyword
 * atom of letters, digits and $ - _ . (RFC 3501's atom, made strict).
 */
static bool
valid_flag(const char *f)
{
	static const char *const sys[] = { "\\Seen", "\\Answered",
	    "\\Flagged", "\\Draft", NULL };
	size_t	i;

	if (f[0] == '\\') {
		for (i = 0; sys[i] != NULL; i++)
			if (strcasecmp(f, sys[i]) == 0)
				return true;
		return false;
	}
	if (f[0] == '\0' || strlen(f) > 64)
		return false;
	for (i = 0; f[i] != '\0'; i++)
		if (!((f[i] >= 'a' && f[i] <= 'z') ||
		    (f[i] >= 'A' && f[i] <= 'Z') ||
		    (f[i] >= '0' && f[i] <= '9') || strchr("$-_.", f[i])))
			return false;
	return true;
}

/*
 * A relative `state` used to be opened against the current directory; it
 * is now taken against the config file's.  When the database exists only
 * the old way, starting would make a new empty one and deliver everything
 * again: refuse, naming both paths and what to write.
 */
static int
check_state_moved(struct load *l, const char *value, const char *resolved)
{
	struct stat	 st;
	char		 cwd[4096];

	if (value[0] == '/' || value[0] == '~' || value[0] == '$' ||
	    stat(resolved, &st) == 0 || stat(value, &st) != 0 ||
	    getcwd(cwd, sizeof cwd) == NULL)
		return 0;
	ERR(l, l->lineno, "'state = %s' is relative: it is taken against "
	    "the config file's directory, as %s, where there is no database, "
	    "but there is one relative to the current directory (%s/%s), "
	    "where older versions looked; write an absolute path (state = "
	    "%s/%s) or one starting with ~/ so that the state is not lost "
	    "(everything would be delivered again)", value, resolved, cwd,
	    value, cwd, value);
	return -1;
}

/* A path key: ~ and $HOME expanded, made absolute (cfg_resolve_path). */
static int
set_path(struct load *l, const struct keydef *k, char **f, const char *value)
{
	if ((*f = cfg_resolve_path(l->path, value)) != NULL)
		return strcmp(k->name, "state") == 0 ?
		    check_state_moved(l, value, *f) : 0;
	if (errno == EINVAL)
		ERR(l, l->lineno, "'%s' starts with '~' but not '~/': write "
		    "the whole path", k->name);
	else
		ERR(l, l->lineno, "cannot resolve the relative '%s': %s",
		    k->name, strerror(errno));
	return -1;
}

/* log = stderr | syslog | a file (absolute or ~/), appended to. */
static int
set_log(struct load *l, const struct keydef *k, const char *value, char *f,
    void *obj)
{
	char	**file = (char **)(void *)((char *)obj + k->off2);

	if (strcasecmp(value, "stderr") == 0 ||
	    strcasecmp(value, "syslog") == 0) {
		*(int *)(void *)f = tolower((unsigned char)value[1]) == 't' ?
		    CFG_LOG_STDERR : CFG_LOG_SYSLOG;
		return 0;
	}
	if (strchr(value, '/') == NULL) {
		ERR(l, l->lineno, "bad value '%s' for '%s': expected stderr, "
		    "syslog or a file (a path with a '/': /path, ~/path, "
		    "./path)", value, k->name);
		return -1;
	}
	free(*file);
	*file = NULL;
	if (set_path(l, k, file, value) == -1)
		return -1;
	*(int *)(void *)f = CFG_LOG_FILE;
	return 0;
}

/* Parses value into obj per k; on error reports and returns -1. */
static int
set_value(struct load *l, const struct keydef *k, void *obj,
    const char *value)
{
	char		*f = (char *)obj + k->off, fpr[96], buf[128];
	char		**list;
	size_t		 n, i;
	uint64_t	 u;
	int64_t		 d;
	int		 line = l->lineno;

	if (*value == '\0') {
		ERR(l, line, "empty value for '%s'", k->name);
		return -1;
	}
	switch (k->type) {
	case K_STR:
		*(char **)f = xstrdup(value);
		return 0;
	case K_PATH:
		return set_path(l, k, (char **)(void *)f, value);
	case K_SECRET:
		*(char **)f = xstrdup(value);
		l->cfg->has_inline_secret = true;
		if (l->secret_line == 0)
			l->secret_line = line;
		return 0;
	case K_DURATION:
		if (value_duration(value, &d) == -1) {
			ERR(l, line, "bad value '%s' for '%s': expected a "
			    "duration such as 90s, 5m, 2h, 30d, 1w or 1h30m",
			    value, k->name);
			return -1;
		}
		/* bounded here, so that no caller's milliseconds overflow */
		if (k->max != 0 && ((uint64_t)d < k->min ||
		    (uint64_t)d > k->max)) {
			ERR(l, line, "bad value '%s' for '%s': expected a "
			    "duration from %llus to %llus", value, k->name,
			    (unsigned long long)k->min,
			    (unsigned long long)k->max);
			return -1;
		}
		*(int64_t *)(void *)f = d;
		return 0;
	case K_SIZE:
		if (value_size(value, (uint64_t *)(void *)f) == 0)
			return 0;
		ERR(l, line, "bad value '%s' for '%s': expected a size such "
		    "as 500000, 512k, 10M or 2G", value, k->name);
		return -1;
	case K_BOOL:
		if (value_bool(value, (bool *)(void *)f) == 0)
			return 0;
		ERR(l, line, "bad value '%s' for '%s': expected yes or no",
		    value, k->name);
		return -1;
	case K_PORT:
		if (value_port(value, (unsigned *)(void *)f) == 0)
			return 0;
		ERR(l, line, "bad value '%s' for '%s': expected a port "
		    "number 1..65535", value, k->name);
		return -1;
	case K_UINT:
	case K_UINT64:
		if (value_uint(value, k->min, k->max, &u) == 0) {
			if (k->type == K_UINT)
				*(unsigned *)(void *)f = (unsigned)u;
			else
				*(uint64_t *)(void *)f = u;
			return 0;
		}
		ERR(l, line, "bad value '%s' for '%s': expected a whole "
		    "number %llu..%llu", value, k->name,
		    (unsigned long long)k->min, (unsigned long long)k->max);
		return -1;
	case K_ENUM:
		for (i = 0; k->choices[i].name != NULL; i++) {
			if (strcasecmp(k->choices[i].name, value) == 0) {
				*(int *)(void *)f = k->choices[i].value;
				return 0;
			}
		}
		ERR(l, line, "bad value '%s' for '%s': expected %s", value,
		    k->name, choices_text(k->choices, buf, sizeof buf));
		return -1;
	case K_FPR:
		if (value_fingerprint(value, fpr) == 0) {
			*(char **)f = xstrdup(fpr);
			return 0;
		}
		ERR(l, line, "bad value '%s' for '%s': expected a sha256 "
		    "fingerprint (64 hex digits, colons allowed)", value,
		    k->name);
		return -1;
	case K_ADDRS:
	case K_FOLDERS:
	case K_FLAGS:
		list = split_list(value, &n);
		for (i = 0; i < n; i++) {
			if (k->type == K_ADDRS && value_address(list[i]) != 0) {
				ERR(l, line, "bad address '%s' in '%s': "
				    "expected user@domain", list[i], k->name);
				break;
			}
			if (k->type == K_FOLDERS && list[i][0] == '\0') {
				ERR(l, line, "empty folder name in '%s'",
				    k->name);
				break;
			}
			if (k->type == K_FLAGS && !valid_flag(list[i])) {
				ERR(l, line, "bad flag '%s' in '%s': expected "
				    "a system flag such as \\Seen or a keyword "
				    "(letters, digits, $ - _ .)", list[i],
				    k->name);
				break;
			}
		}
		if (i < n) {
			free_list(list, n);
			return -1;
		}
		*(char ***)(void *)f = list;
		*(size_t *)(void *)((char *)obj + k->off2) = n;
		return 0;
	case K_ENVFROM:
		if (strcasecmp(value, "original") == 0)
			*(int *)(void *)f = CFG_ENVFROM_ORIGINAL;
		else if (strcasecmp(value, "empty") == 0)
			*(int *)(void *)f = CFG_ENVFROM_EMPTY;
		else if (value_address(value) == 0) {
			*(int *)(void *)f = CFG_ENVFROM_ADDRESS;
			*(char **)(void *)((char *)obj + k->off2) =
			    xstrdup(value);
		} else {
			ERR(l, line, "bad value '%s' for '%s': expected "
			    "original, empty or an address", value, k->name);
			return -1;
		}
		return 0;
	case K_LOG:
		return set_log(l, k, value, f, obj);
	}
	return -1;
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct load		*l = user;
	struct psect		*s = l->cur;
	const struct keydef	*k;
	const char		*best = NULL;
	size_t			 off;
	int			 i, d, bestd = 3;

	(void)section;
	if (l->skip)
		return 1;
	if (s == NULL) {
		ERR(l, l->lineno, "'%s' outside of any section", name);
		return 1;
	}
	if ((i = key_index(s->kind, name)) == -1) {
		if (l->continuation) {
			ERR(l, l->lineno, "indented line continues '%s' from "
			    "a line above; remove the indentation", name);
			return 1;
		}
		for (i = 0; (k = key_at(s->kind, i, NULL)) != NULL; i++) {
			d = value_distance(name, k->name);
			if (d < bestd) {
				bestd = d;
				best = k->name;
			}
		}
		if (best != NULL)
			ERR(l, l->lineno, "unknown key '%s' in [%s]; did you "
			    "mean '%s'?", name, s->header, best);
		else
			ERR(l, l->lineno, "unknown key '%s' in [%s]", name,
			    s->header);
		return 1;
	}
	if (l->continuation) {
		ERR(l, l->lineno, "duplicate key '%s' (an indented line "
		    "continues the previous value; remove the indentation)",
		    name);
		return 1;
	}
	if (s->keyline[i] != 0) {
		ERR(l, l->lineno, "duplicate key '%s' (first set on line %d)",
		    name, s->keyline[i]);
		return 1;
	}
	s->keyline[i] = l->lineno;
	k = key_at(s->kind, i, &off);
	if (set_value(l, k, (char *)sect_obj(l, s) + off, value) == -1)
		s->keyline[i] = -l->lineno;	/* set, but bad */
	return 1;
}

/* ---- validation ---- */

/* Secret keys set in s: count, and the line of the last one. */
static int
secret_count(const struct psect *s, int *last)
{
	static const char *const names[] = { "password", "password_command",
	    "password_file" };
	int	i, n = 0, ln;

	*last = 0;
	for (i = 0; i < 3; i++) {
		if ((ln = kl(s, names[i])) != 0) {
			n++;
			if (abs(ln) > *last)
				*last = abs(ln);
		}
	}
	return n;
}

/* Whether s is an etrn account: it logs in as a target does. */
static bool
is_etrn(const struct load *l, const struct psect *s)
{
	return s->kind == S_ACCOUNT &&
	    l->cfg->accounts[s->idx].protocol == CFG_PROTO_ETRN;
}

static void
check_required(struct load *l, const struct psect *s)
{
	const struct keydef	*k;
	int			 i;

	for (i = 0; (k = key_at(s->kind, i, NULL)) != NULL; i++)
		if (key_required(s->kind, k) && s->keyline[i] == 0 &&
		    !(strcmp(k->name, "host") == 0 && kl(s, "provider")) &&
		    !(strcmp(k->name, "user") == 0 && is_etrn(l, s)))
			ERR(l, s->line, "[%s] is missing required key '%s'",
			    s->header, k->name);
}

static void
check_general(struct load *l, const struct psect *s)
{
	struct cfg_general	*g = &l->cfg->general;

	if (s == NULL || kl(s, "interval") == 0)
		g->interval = 300;
	if (s == NULL || kl(s, "concurrency") == 0)
		g->concurrency = CFG_CONCURRENCY_DEFAULT;
	if (s == NULL || kl(s, "concurrency_per_server") == 0)
		g->concurrency_per_server = CFG_CONCURRENCY_PER_SERVER_DEFAULT;
	if (s == NULL || kl(s, "log_level") == 0)
		g->log_level = LOG_LVL_INFO;
	if (s == NULL || kl(s, "timeout") == 0)
		g->timeout = 60;
	if (g->state == NULL)
		g->state = config_default_state_path();
}

/* Whether a command needs /bin/sh: a pipe, a redirection, quotes... */
static bool
needs_shell(const char *cmd)
{
	return strpbrk(cmd, "|;&<>$`'\"\\") != NULL;
}

/* Splits a command at white space into a NULL-terminated argv. */
static char **
split_words(const char *cmd, size_t *n)
{
	char		**argv = xcalloc(1, sizeof *argv);
	const char	 *p = cmd, *e;

	*n = 0;
	for (;;) {
		while (is_space(*p))
			p++;
		if (*p == '\0')
			break;
		for (e = p; *e != '\0' && !is_space(*e); e++)
			;
		argv = xrealloc(argv, (*n + 2) * sizeof *argv);
		argv[(*n)++] = xstrndup(p, (size_t)(e - p));
		argv[*n] = NULL;
		p = e;
	}
	return argv;
}

/* maildir: path is required (set_value made it absolute). */
static void
check_maildir(struct load *l, const struct psect *s, struct cfg_target *t)
{
	if (t->maildir.path == NULL && kl(s, "path") == 0)
		ERR(l, s->line, "[%s] is missing required key 'path'",
		    s->header);
}

/*
 * mda, a command without the shell: a program named by a path ("~/bin/x",
 * "filters/x") is resolved like the path keys; a bare name is looked up
 * in $PATH when it runs.
 */
static void
mda_program_path(struct load *l, const struct psect *s, struct cfg_target *t)
{
	char	*prog = t->mda.argv[0], *abspath;

	if (prog[0] == '/' || (prog[0] != '~' && strchr(prog, '/') == NULL))
		return;
	if ((abspath = cfg_resolve_path(l->path, prog)) == NULL) {
		ERR(l, abs(kl(s, "command")), "'command' starts with '~' but "
		    "not '~/': write the whole path");
		return;
	}
	free(prog);
	t->mda.argv[0] = abspath;
}

/* mda: the command split into argv, or flagged for the shell. */
static void
check_mda(struct load *l, const struct psect *s, struct cfg_target *t)
{
	const char	*cmd = t->mda.command;

	if (kl(s, "timeout") == 0)
		t->mda.timeout = 300;
	if (cmd == NULL) {
		if (kl(s, "command") == 0)
			ERR(l, s->line, "[%s] is missing required key "
			    "'command'", s->header);
		return;
	}
	t->mda.shell = needs_shell(cmd);
	if (t->mda.shell) {
		t->mda.argv = xcalloc(2, sizeof *t->mda.argv);
		t->mda.argv[0] = xstrdup(cmd);
		t->mda.argc = 1;
	} else
		t->mda.argv = split_words(cmd, &t->mda.argc);
	if (t->mda.argc == 0)
		ERR(l, abs(kl(s, "command")), "'command' is empty");
	else if (!t->mda.shell)
		mda_program_path(l, s, t);
	if (t->mda.timeout <= 0 && kl(s, "timeout") > 0)
		ERR(l, kl(s, "timeout"), "'timeout' must be more than 0s");
}

/*
 * type = gmail: oauth2 required (no user: the token names the mailbox),
 * the default labels INBOX, UNREAD, an https (or loopback) api_url
 * without a trailing '/', and the token store's directory.
 */
static void
check_gmail(struct load *l, const struct psect *s, struct cfg_target *t)
{
	struct cfg_target_gmail	*g = &t->gmail;
	size_t			 n;

	if (t->ep.oauth2_name == NULL && kl(s, "oauth2") == 0)
		ERR(l, s->line, "[%s] is missing required key 'oauth2' (a "
		    "gmail target imports with an OAuth2 token)", s->header);
	else if (t->ep.oauth2_name != NULL)
		t->ep.oauth2 = cfg_oauth2_resolve(l, l->cfg, t->ep.oauth2_name,
		    abs(kl(s, "oauth2")));
	if (g->nlabels == 0 && kl(s, "labels") == 0) {
		g->labels = xcalloc(2, sizeof *g->labels);
		g->labels[0] = xstrdup("INBOX");
		g->labels[1] = xstrdup("UNREAD");
		g->nlabels = 2;
	}
	if (g->api_url == NULL && kl(s, "api_url") == 0)
		g->api_url = xstrdup("https://gmail.googleapis.com");
	if (g->api_url != NULL) {
		n = strlen(g->api_url);
		while (n > 0 && g->api_url[n - 1] == '/')
			g->api_url[--n] = '\0';
		if (!cfg_url_ok(g->api_url))
			ERR(l, abs(kl(s, "api_url")), "bad value '%s' for "
			    "'api_url': expected an https URL (http only to "
			    "127.0.0.1, [::1] or localhost)", g->api_url);
	}
	if (l->cfg->general.state != NULL)
		g->state_dir = config_state_dir(l->cfg);
}

/*
 * The keys of t's kind: a key of another kind is an error at its line;
 * then each kind's own requirements.  Returns false when t is not a
 * network target (no endpoint to check).
 */
static bool
check_target_kind(struct load *l, const struct psect *s, struct cfg_target *t)
{
	const struct keydef	*k;
	const char		*what;
	int			 i;

	/* a bad type says nothing of the other keys; a missing one is
	   reported, and the rest checked as smtp's, the default */
	if (kl(s, "type") < 0)
		return true;
	for (i = 0; (k = key_at(S_TARGET, i, NULL)) != NULL &&
	    kl(s, "type") > 0; i++)
		if (s->keyline[i] != 0 &&
		    !target_key_ok(k->name, t->type, &what))
			ERR(l, abs(s->keyline[i]), "'%s' is not a key of %s "
			    "targets (only of %s)", k->name,
			    cfg_target_type_name(t->type), what);
	switch (t->type) {
	case CFG_TARGET_SMTP:
	case CFG_TARGET_LMTP:
		if (kl(s, "recipient") == 0)
			ERR(l, s->line, "[%s] is missing required key "
			    "'recipient'", s->header);
		return true;
	case CFG_TARGET_MAILDIR:
		check_maildir(l, s, t);
		return false;
	case CFG_TARGET_MDA:
		check_mda(l, s, t);
		return false;
	case CFG_TARGET_IMAP:
		if (t->imap.folder == NULL)
			t->imap.folder = xstrdup("INBOX");
		if (t->ep.user == NULL && kl(s, "user") == 0)
			ERR(l, s->line, "[%s] is missing required key 'user' (an "
			    "imap target logs in)", s->header);
		return true;
	case CFG_TARGET_GMAIL:
		check_gmail(l, s, t);
		return false;
	}
	return true;
}

/*
 * The endpoint keys' rules, written once for accounts and targets: one
 * password source (accounts need one, a target one exactly when it has
 * a user), no credential in clear unless allow_plaintext_auth, no
 * certificate settings without TLS.  Defaults (tls, port) are set by the
 * caller before.
 */
static void
check_endpoint(struct load *l, const struct psect *s, struct cfg_endpoint *e)
{
	bool	account = s->kind == S_ACCOUNT && !is_etrn(l, s);
	int	n, last, at;

	n = secret_count(s, &last);
	if (e->oauth2_name != NULL)
		e->oauth2 = cfg_oauth2_resolve(l, l->cfg, e->oauth2_name,
		    abs(kl(s, "oauth2")));
	if (account && n == 0 && e->oauth2_name == NULL)
		ERR(l, s->line, "[%s] is missing required key 'password' "
		    "(or 'password_command', 'password_file' or 'oauth2')",
		    s->header);
	else if (n > 1)
		ERR(l, last, "set %s one of password, password_command and "
		    "password_file", account ? "only" : "at most");
	if (!account && e->user != NULL && n == 0 && e->oauth2_name == NULL)
		ERR(l, abs(kl(s, "user")), "'user' is set but no password, "
		    "password_command, password_file or oauth2");
	if (!account && e->user == NULL && n > 0 && kl(s, "user") == 0)
		ERR(l, last, "a password is set but no 'user'");
	if (!account && e->user == NULL && e->oauth2_name != NULL &&
	    kl(s, "user") == 0)
		ERR(l, abs(kl(s, "oauth2")), "'oauth2' is set but no 'user'");
	if (e->oauth2_name != NULL && e->auth == CFG_AUTH_PASSWORD && n == 0)
		ERR(l, abs(kl(s, "auth")), "'auth = password' sends a password, "
		    "but only 'oauth2' is set: add password_command (or "
		    "password, password_file) or drop the auth line");
	if (e->tls == CFG_TLS_NONE && (account || e->user != NULL) &&
	    !e->allow_plaintext_auth) {
		at = kl(s, "tls") ? abs(kl(s, "tls")) : abs(kl(s, "user"));
		ERR(l, at, "refusing to send a password in clear: set tls "
		    "or allow_plaintext_auth = yes");
	}
	if (e->tls == CFG_TLS_NONE && (e->ca_file || e->fingerprint))
		ERR(l, abs(kl(s, e->ca_file ? "ca_file" : "fingerprint")),
		    "'%s' has no effect with tls = none",
		    e->ca_file ? "ca_file" : "fingerprint");
}

/*
 * provider = NAME: fills in e's host, tls and auth where their keys are
 * not set, for a server of kind "imap", "pop3" or "smtp".
 */
static void
apply_preset(struct load *l, const struct psect *s, struct cfg_endpoint *e,
    const char *kind)
{
	const struct preset	*p;
	const char		*host;

	if (e->provider == CFG_PROVIDER_NONE)
		return;
	p = &presets[e->provider];
	host = strcmp(kind, "imap") == 0 ? p->imap :
	    strcmp(kind, "pop3") == 0 ? p->pop3 : p->smtp;
	if (host == NULL) {
		ERR(l, abs(kl(s, "provider")), "provider = %s has no %s "
		    "server%s", provider_choices[e->provider - 1].name,
		    kind, e->provider == CFG_PROVIDER_ICLOUD ?
		    " (iCloud Mail offers IMAP only)" : "");
		return;
	}
	if (kl(s, "host") == 0 && e->host == NULL)
		e->host = xstrdup(host);
	if (kl(s, "tls") == 0)
		e->tls = strcmp(kind, "smtp") == 0 ? p->smtp_tls :
		    CFG_TLS_IMPLICIT;
	if (kl(s, "auth") == 0)
		e->auth = p->auth;
}

static void
check_target(struct load *l, const struct psect *s)
{
	struct cfg_target	*t = &l->cfg->targets[s->idx];
	struct cfg_endpoint	*e = &t->ep;

	check_required(l, s);
	if (kl(s, "received") == 0)
		t->received = true;
	if (!check_target_kind(l, s, t))
		return;
	apply_preset(l, s, e, t->type == CFG_TARGET_IMAP ? "imap" : "smtp");
	/* a bad type was reported: what follows from it would mislead */
	if (kl(s, "type") < 0)
		return;
	if (e->socket != NULL && t->type != CFG_TARGET_LMTP && kl(s, "type"))
		ERR(l, abs(kl(s, "socket")), "'socket' is only for lmtp "
		    "targets; %s needs host", cfg_target_type_name(t->type));
	if (e->socket != NULL && e->host != NULL)
		ERR(l, abs(kl(s, "socket")) > abs(kl(s, "host")) ?
		    abs(kl(s, "socket")) : abs(kl(s, "host")),
		    "set host or socket, not both");
	else if (e->socket == NULL && e->host == NULL && kl(s, "host") == 0 &&
	    kl(s, "socket") == 0)
		ERR(l, s->line, "[%s] is missing required key 'host'%s",
		    s->header, t->type == CFG_TARGET_LMTP ? " (or 'socket')" :
		    "");
	if (kl(s, "tls") == 0 && e->provider == CFG_PROVIDER_NONE)
		e->tls = t->type == CFG_TARGET_LMTP ? CFG_TLS_NONE :
		    CFG_TLS_IMPLICIT;
	if (e->socket != NULL) {
		if (e->tls != CFG_TLS_NONE)
			ERR(l, kl(s, "tls") != 0 ? abs(kl(s, "tls")) :
			    abs(kl(s, "socket")), "tls over a unix socket is "
			    "not supported; use tls = none");
		if (kl(s, "port") != 0)
			ERR(l, abs(kl(s, "port")), "'port' makes no sense "
			    "with 'socket'");
	} else if (kl(s, "port") == 0) {
		if (t->type == CFG_TARGET_LMTP)
			e->port = 24;
		else if (t->type == CFG_TARGET_IMAP)
			e->port = e->tls == CFG_TLS_IMPLICIT ? 993 : 143;
		else
			e->port = e->tls == CFG_TLS_IMPLICIT ? 465 :
			    e->tls == CFG_TLS_STARTTLS ? 587 : 25;
	}
	check_endpoint(l, s, e);
}

static const struct cfg_target *
find_target(const struct config *cfg, const char *name)
{
	size_t	i;

	for (i = 0; i < cfg->ntargets; i++)
		if (strcmp(cfg->targets[i].name, name) == 0)
			return &cfg->targets[i];
	return NULL;
}

/* The keys of an account that fetches, which an etrn account refuses
   (and config_print leaves out). */
static const char *const etrn_refused[] = { "target", "keep",
    "delete_after", "max_size", "max_messages", NULL };

static bool
etrn_refuses(const char *key)
{
	for (size_t i = 0; etrn_refused[i] != NULL; i++)
		if (strcmp(etrn_refused[i], key) == 0)
			return true;
	return false;
}

/*
 * protocol = etrn: etrn_domains required, each a domain, "@domain" (it
 * and its subdomains) or "#queue" (RFC 1985 sec 3); the keys of an
 * account that fetches refused.
 */
static void
check_etrn(struct load *l, const struct psect *s, struct cfg_account *a)
{
	const char	*d;
	size_t		 i;

	if (a->netrn_domains == 0 && kl(s, "etrn_domains") == 0)
		ERR(l, s->line, "[%s] is missing required key 'etrn_domains' "
		    "(the domains the server queues mail for)", s->header);
	for (i = 0; i < a->netrn_domains; i++) {
		d = a->etrn_domains[i] + (strchr("@#",
		    a->etrn_domains[i][0]) != NULL);
		if (*d == '\0' || strspn(d, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != strlen(d))
			ERR(l, abs(kl(s, "etrn_domains")), "bad domain '%s' in "
			    "'etrn_domains': expected example.org, @example.org "
			    "(with its subdomains) or #queue",
			    a->etrn_domains[i]);
	}
	for (i = 0; etrn_refused[i] != NULL; i++)
		if (kl(s, etrn_refused[i]) != 0)
			ERR(l, abs(kl(s, etrn_refused[i])), "'%s' makes no "
			    "sense for an etrn account: it fetches and delivers "
			    "nothing", etrn_refused[i]);
}

static void
check_account(struct load *l, const struct psect *s)
{
	struct cfg_account	*a = &l->cfg->accounts[s->idx];
	const struct keydef	*k;
	const char		*best = NULL;
	int			 i, d, bestd = 3;
	size_t			 j;

	check_required(l, s);
	apply_preset(l, s, &a->ep, cfg_protocol_name(a->protocol));
	if (a->protocol == CFG_PROTO_ETRN)
		check_etrn(l, s, a);
	else if (a->target_name == NULL)
		ERR(l, s->line, "[%s] is missing required key 'target'",
		    s->header);
	if (kl(s, "port") == 0 && a->protocol == CFG_PROTO_ETRN)
		a->ep.port = a->ep.tls == CFG_TLS_IMPLICIT ? 465 :
		    a->ep.tls == CFG_TLS_STARTTLS ? 587 : 25;
	else if (kl(s, "port") == 0) {
		if (a->protocol == CFG_PROTO_POP3)
			a->ep.port = a->ep.tls == CFG_TLS_IMPLICIT ? 995 : 110;
		else
			a->ep.port = a->ep.tls == CFG_TLS_IMPLICIT ? 993 : 143;
	}
	check_endpoint(l, s, &a->ep);
	if (a->protocol != CFG_PROTO_IMAP && kl(s, "protocol") > 0) {
		for (i = 0; (k = key_at(S_ACCOUNT, i, NULL)) != NULL; i++)
			if ((k->flags & KF_IMAP) && s->keyline[i] != 0)
				ERR(l, abs(s->keyline[i]), "'%s' is only for "
				    "imap accounts", k->name);
	}
	/* a bad keep was reported: the default, not a contradiction */
	if (kl(s, "keep") <= 0)
		a->keep = true;
	if (kl(s, "enabled") == 0)
		a->enabled = true;
	if (kl(s, "idle_connections") == 0)
		a->idle_connections = CFG_IDLE_CONNECTIONS;
	if (kl(s, "timeout") == 0)
		a->timeout = l->cfg->general.timeout;
	if (!a->keep && kl(s, "delete_after") > 0)
		ERR(l, abs(kl(s, "delete_after")), "'keep = no' (line %d) and "
		    "'delete_after' (line %d) contradict: keep = no deletes "
		    "right after delivery, delete_after keeps mail until then; "
		    "set one", abs(kl(s, "keep")), abs(kl(s, "delete_after")));
	if (kl(s, "move_to") > 0 && !a->keep)
		ERR(l, abs(kl(s, "move_to")), "'move_to' and 'keep = no' "
		    "(line %d) contradict; set one", abs(kl(s, "keep")));
	if (kl(s, "move_to") > 0 && kl(s, "delete_after") > 0)
		ERR(l, abs(kl(s, "move_to")), "'move_to' and 'delete_after' "
		    "(line %d) cannot be combined", abs(kl(s, "delete_after")));
	if (a->protocol == CFG_PROTO_IMAP && a->nfolders == 0 &&
	    kl(s, "folders") == 0) {
		a->folders = xmalloc(sizeof *a->folders);
		a->folders[0] = xstrdup("INBOX");
		a->nfolders = 1;
	}
	if (a->protocol != CFG_PROTO_ETRN && kl(s, "etrn_domains") != 0)
		ERR(l, abs(kl(s, "etrn_domains")), "'etrn_domains' is only "
		    "for etrn accounts");
	if (a->target_name == NULL)
		return;
	if ((a->target = find_target(l->cfg, a->target_name)) != NULL)
		return;
	for (j = 0; j < l->cfg->ntargets; j++) {
		d = value_distance(a->target_name, l->cfg->targets[j].name);
		if (d < bestd) {
			bestd = d;
			best = l->cfg->targets[j].name;
		}
	}
	if (best != NULL)
		ERR(l, abs(kl(s, "target")), "unknown target '%s' (no "
		    "[target:%s] section); did you mean '%s'?",
		    a->target_name, a->target_name, best);
	else
		ERR(l, abs(kl(s, "target")), "unknown target '%s' (no "
		    "[target:%s] section)", a->target_name, a->target_name);
}

static void
validate(struct load *l)
{
	const struct psect	*general = NULL;
	size_t			 i;

	for (i = 0; i < l->nsects; i++)
		if (l->sects[i].kind == S_GENERAL)
			general = &l->sects[i];
	check_general(l, general);
	for (i = 0; i < l->nsects; i++)
		if (l->sects[i].kind == S_OAUTH2)
			cfg_oauth2_check(l, &l->sects[i],
			    &l->cfg->oauth2s[l->sects[i].idx]);
	for (i = 0; i < l->nsects; i++) {
		if (l->sects[i].kind == S_TARGET)
			check_target(l, &l->sects[i]);
		else if (l->sects[i].kind == S_ACCOUNT)
			check_account(l, &l->sects[i]);
	}
	if (l->nerrors == 0)
		check_shared_mailboxes(l);
	if (l->cfg->naccounts == 0 && l->nerrors == 0)
		ERR(l, l->lineno > 0 ? l->lineno : 1,
		    "no [account:NAME] section");
}

/* The folder two accounts both read, or NULL (a pattern reads all). */
static const char *
folder_overlap(const struct cfg_account *a, const struct cfg_account *b)
{
	size_t	i, k;

	if (a->protocol == CFG_PROTO_POP3)
		return "the mailbox";
	for (i = 0; i < a->nfolders; i++)
		for (k = 0; k < b->nfolders; k++) {
			if (strpbrk(a->folders[i], "*%") != NULL)
				return b->folders[k];
			if (strpbrk(b->folders[k], "*%") != NULL ||
			    strcmp(a->folders[i], b->folders[k]) == 0 ||
			    (strcasecmp(a->folders[i], "INBOX") == 0 &&
			    strcasecmp(b->folders[k], "INBOX") == 0))
				return a->folders[i];
		}
	return NULL;
}

/*
 * Two accounts that read the same mailbox share one record of what was
 * delivered from it (the state knows a source by its server, port and
 * user): each message reaches only the target of whichever pass takes
 * it first, and the other target never gets it.  Legal, but rarely
 * meant (copying a mailbox to two places): a warning.
 */
static void
check_shared_mailboxes(struct load *l)
{
	const struct cfg_account	*a, *b;
	const char			*f;
	size_t				 i, k;

	for (i = 0; i < l->cfg->naccounts; i++)
		for (k = i + 1; k < l->cfg->naccounts; k++) {
			a = &l->cfg->accounts[i];
			b = &l->cfg->accounts[k];
			if (a->protocol != b->protocol || a->ep.host == NULL ||
			    b->ep.host == NULL || a->ep.user == NULL ||
			    b->ep.user == NULL || a->ep.port != b->ep.port ||
			    strcasecmp(a->ep.host, b->ep.host) != 0 ||
			    strcmp(a->ep.user, b->ep.user) != 0 ||
			    (f = folder_overlap(a, b)) == NULL)
				continue;
			diag_add(l, b->line, true, "[account:%s] reads %s of "
			    "%s@%s, as [account:%s] (line %d) does: they share "
			    "one record of what was delivered, so each message "
			    "reaches only the target of the pass that takes it "
			    "first", b->name, f, b->ep.user, b->ep.host,
			    a->name, a->line);
		}
}

/* ---- load ---- */

struct config *
config_load(const char *path, FILE *diag)
{
	struct load	 l;
	struct config	*cfg;
	struct stat	 st;
	size_t		 i;
	int		 rc;

	memset(&l, 0, sizeof l);
	cfg = xcalloc(1, sizeof *cfg);
	cfg->path = xstrdup(path);
	l.cfg = cfg;
	l.path = path;
	if ((l.fp = fopen(path, "re")) == NULL) {
		if (diag != NULL)
			fprintf(diag, "%s: %s\n", path, strerror(errno));
		goto fail;
	}

	/* Process-wide knobs of Debian's libinih: pin the rules we mirror. */
	ini_max_line = INI_LINE_BUF;
	ini_use_stack = true;
	ini_allow_multiline = true;
	ini_allow_bom = true;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = (char *)";";
	ini_start_comment_prefixes = (char *)";#";
	ini_stop_on_first_error = false;
	ini_allow_no_value = false;

	rc = ini_parse_stream(reader, &l, handler, &l);
	if (ferror(l.fp))
		ERR(&l, l.lineno, "read error: %s", strerror(errno));
	else if (l.too_big)
		ERR(&l, l.lineno > 0 ? l.lineno : 1, "the file is larger than "
		    "%d bytes: not a mailhaul config", FILE_MAX_LEN);
	else if (rc != 0 && l.nerrors == 0)
		ERR(&l, rc > 0 ? rc : l.lineno, "syntax error");
	validate(&l);

	if (cfg->has_inline_secret && fstat(fileno(l.fp), &st) == 0 &&
	    (st.st_mode & 077) != 0)
		diag_add(&l, l.secret_line, true, "inline password in a file "
		    "readable by group or others (mode %04o); chmod 600 %s or "
		    "use password_command/password_file",
		    (unsigned)(st.st_mode & 07777), path);
	fclose(l.fp);
	free(l.buf);
	for (i = 0; i < l.nsects; i++)
		free(l.sects[i].header);
	free(l.sects);
	rc = l.nerrors;
	diag_flush(&l, diag);
	if (rc == 0)
		return cfg;
fail:
	config_free(cfg);
	return NULL;
}

/* ---- free, lookup, names ---- */

static void
free_secret(struct cfg_secret *s)
{
	secret_free(s->password);
	free(s->command);
	free(s->file);
}

static void
free_endpoint(struct cfg_endpoint *e)
{
	free(e->host);
	free(e->socket);
	free(e->ca_file);
	free(e->fingerprint);
	free(e->user);
	free_secret(&e->secret);
	free(e->oauth2_name);
}

void
config_free(struct config *cfg)
{
	size_t	i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->ntargets; i++) {
		struct cfg_target *t = &cfg->targets[i];

		free(t->name);
		free_endpoint(&t->ep);
		free_list(t->smtp.recipients, t->smtp.nrecipients);
		free(t->smtp.envelope_from);
		free(t->smtp.helo);
		free(t->maildir.path);
		free(t->mda.command);
		free_list(t->mda.argv, t->mda.argc);
		free(t->imap.folder);
		free_list(t->imap.flags, t->imap.nflags);
		free_list(t->gmail.labels, t->gmail.nlabels);
		free(t->gmail.api_url);
		free(t->gmail.state_dir);
	}
	free(cfg->targets);
	for (i = 0; i < cfg->naccounts; i++) {
		struct cfg_account *a = &cfg->accounts[i];

		free(a->name);
		free_endpoint(&a->ep);
		free(a->target_name);
		free_list(a->folders, a->nfolders);
		free(a->move_to);
		free_list(a->etrn_domains, a->netrn_domains);
	}
	free(cfg->accounts);
	for (i = 0; i < cfg->noauth2s; i++)
		cfg_oauth2_free(&cfg->oauth2s[i]);
	free(cfg->oauth2s);
	free(cfg->general.state);
	free(cfg->general.notify_command);
	free(cfg->general.log_file);
	free(cfg->path);
	free(cfg);
}

const struct cfg_account *
config_account(const struct config *cfg, const char *name)
{
	size_t	i;

	for (i = 0; i < cfg->naccounts; i++)
		if (strcmp(cfg->accounts[i].name, name) == 0)
			return &cfg->accounts[i];
	return NULL;
}

const struct cfg_oauth2 *
config_oauth2(const struct config *cfg, const char *name)
{
	size_t	i;

	for (i = 0; i < cfg->noauth2s; i++)
		if (strcmp(cfg->oauth2s[i].name, name) == 0)
			return &cfg->oauth2s[i];
	return NULL;
}

const char *
cfg_auth_name(enum cfg_auth a)
{
	switch (a) {
	case CFG_AUTH_AUTO:		return "auto";
	case CFG_AUTH_PASSWORD:		return "password";
	case CFG_AUTH_XOAUTH2:		return "xoauth2";
	case CFG_AUTH_OAUTHBEARER:	return "oauthbearer";
	}
	return "?";
}

const char *
cfg_tls_name(enum cfg_tls t)
{
	switch (t) {
	case CFG_TLS_IMPLICIT:	return "implicit";
	case CFG_TLS_STARTTLS:	return "starttls";
	case CFG_TLS_NONE:	return "none";
	}
	return "?";
}

const char *
cfg_protocol_name(enum cfg_protocol p)
{
	switch (p) {
	case CFG_PROTO_POP3:	return "pop3";
	case CFG_PROTO_IMAP:	return "imap";
	case CFG_PROTO_ETRN:	return "etrn";
	}
	return "?";
}

const char *
cfg_target_type_name(enum cfg_target_type t)
{
	switch (t) {
	case CFG_TARGET_SMTP:	return "smtp";
	case CFG_TARGET_LMTP:	return "lmtp";
	case CFG_TARGET_MAILDIR: return "maildir";
	case CFG_TARGET_MDA:	return "mda";
	case CFG_TARGET_IMAP:	return "imap";
	case CFG_TARGET_GMAIL:	return "gmail";
	}
	return "?";
}

/* ---- print ---- */

static void
print_duration(FILE *out, int64_t secs)
{
	static const struct { char u; int64_t s; } units[] = {
		{ 'w', 7 * 86400 }, { 'd', 86400 }, { 'h', 3600 },
		{ 'm', 60 }, { 's', 1 } };
	size_t	i;

	for (i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (secs >= units[i].s) {
			fprintf(out, "%lld%c", (long long)(secs / units[i].s),
			    units[i].u);
			secs %= units[i].s;
		}
	}
}

static void
print_size(FILE *out, uint64_t n)
{
	if (n != 0 && n % (1ULL << 30) == 0)
		fprintf(out, "%lluG", (unsigned long long)(n >> 30));
	else if (n != 0 && n % (1ULL << 20) == 0)
		fprintf(out, "%lluM", (unsigned long long)(n >> 20));
	else if (n != 0 && n % (1ULL << 10) == 0)
		fprintf(out, "%lluk", (unsigned long long)(n >> 10));
	else
		fprintf(out, "%llu", (unsigned long long)n);
}

static void
print_list(FILE *out, char **v, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		fprintf(out, "%s%s", i ? ", " : "", v[i]);
}

/*
 * Prints obj's keys from the table; skip_imap drops imap-only keys,
 * interval_default stands in for a 0 duration named "interval".
 */
static void
print_keys(FILE *out, enum skind kind, const void *sect, bool skip_imap,
    int64_t interval_default, int target_type)
{
	const char		*f, *obj, *what;
	const struct keydef	*k;
	int64_t			 d;
	size_t			 i, off;
	int			 v, n;

	for (n = 0; (k = key_at(kind, n, &off)) != NULL; n++) {
		obj = (const char *)sect + off;
		f = obj + k->off;
		if (skip_imap && (k->flags & KF_IMAP))
			continue;
		if (kind == S_ACCOUNT && ((const struct cfg_account *)sect)->
		    protocol == CFG_PROTO_ETRN && etrn_refuses(k->name))
			continue;
		if (target_type != -1 && !target_key_ok(k->name,
		    (enum cfg_target_type)target_type, &what))
			continue;
		switch (k->type) {
		case K_STR:
		case K_PATH:
		case K_FPR:
			if (*(char *const *)(const void *)f != NULL)
				fprintf(out, "%s = %s\n", k->name,
				    *(char *const *)(const void *)f);
			break;
		case K_SECRET:
			if (*(char *const *)(const void *)f != NULL)
				fprintf(out, "%s = ********\n", k->name);
			break;
		case K_DURATION:
			d = *(const int64_t *)(const void *)f;
			if (d == 0 && strcmp(k->name, "interval") == 0)
				d = interval_default;
			if (d == 0)
				break;
			fprintf(out, "%s = ", k->name);
			print_duration(out, d);
			fputc('\n', out);
			break;
		case K_SIZE:
			fprintf(out, "%s = ", k->name);
			print_size(out, *(const uint64_t *)(const void *)f);
			fputc('\n', out);
			break;
		case K_BOOL:
			fprintf(out, "%s = %s\n", k->name,
			    *(const bool *)(const void *)f ? "yes" : "no");
			break;
		case K_PORT:
		case K_UINT:
			if (*(const unsigned *)(const void *)f != 0 ||
			    k->type == K_UINT)
				fprintf(out, "%s = %u\n", k->name,
				    *(const unsigned *)(const void *)f);
			break;
		case K_UINT64:
			fprintf(out, "%s = %llu\n", k->name,
			    (unsigned long long)
			    *(const uint64_t *)(const void *)f);
			break;
		case K_ENUM:
			v = *(const int *)(const void *)f;
			for (i = 0; k->choices[i].name != NULL; i++)
				if (k->choices[i].value == v)
					fprintf(out, "%s = %s\n", k->name,
					    k->choices[i].name);
			break;
		case K_ADDRS:
		case K_FOLDERS:
		case K_FLAGS:
			if (*(const size_t *)(const void *)
			    ((const char *)obj + k->off2) == 0)
				break;
			fprintf(out, "%s = ", k->name);
			print_list(out, *(char **const *)(const void *)f,
			    *(const size_t *)(const void *)
			    ((const char *)obj + k->off2));
			fputc('\n', out);
			break;
		case K_LOG:
			v = *(const int *)(const void *)f;
			fprintf(out, "%s = %s\n", k->name,
			    v == CFG_LOG_SYSLOG ? "syslog" :
			    v == CFG_LOG_STDERR ? "stderr" :
			    *(char *const *)(const void *)
			    ((const char *)obj + k->off2));
			break;
		case K_ENVFROM:
			v = *(const int *)(const void *)f;
			fprintf(out, "%s = %s\n", k->name,
			    v == CFG_ENVFROM_ORIGINAL ? "original" :
			    v == CFG_ENVFROM_EMPTY ? "empty" :
			    *(char *const *)(const void *)
			    ((const char *)obj + k->off2));
			break;
		}
	}
}

void
config_print(const struct config *cfg, FILE *out)
{
	size_t	i;

	fprintf(out, "# effective configuration of %s\n\n[general]\n",
	    cfg->path);
	print_keys(out, S_GENERAL, &cfg->general, false, 0, -1);
	for (i = 0; i < cfg->ntargets; i++) {
		fprintf(out, "\n[target:%s]\n", cfg->targets[i].name);
		print_keys(out, S_TARGET, &cfg->targets[i], false, 0,
		    (int)cfg->targets[i].type);
	}
	for (i = 0; i < cfg->naccounts; i++) {
		const struct cfg_account *a = &cfg->accounts[i];

		fprintf(out, "\n[account:%s]\n", a->name);
		print_keys(out, S_ACCOUNT, a,
		    a->protocol != CFG_PROTO_IMAP, cfg->general.interval, -1);
	}
	for (i = 0; i < cfg->noauth2s; i++) {
		fprintf(out, "\n[oauth2:%s]\n", cfg->oauth2s[i].name);
		print_keys(out, S_OAUTH2, &cfg->oauth2s[i], false, 0, -1);
	}
}
