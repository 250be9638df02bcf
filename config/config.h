/*
 * config.h -- the typed configuration every other module reads.
 *
 * config_load() reads an ini file (inih) into a struct config, validates
 * every key and cross-reference, and either returns a complete config or
 * none at all.  Once loaded the config is read-only (const everywhere); a
 * reload builds a new one and swaps it only if it loaded cleanly.
 *
 * The file format, as config_load() enforces it:
 *  - sections [general], [target:NAME], [account:NAME], [oauth2:NAME];
 *    NAME is letters,
 *    digits and . _ - @ +, a whole header at most 49 bytes; a section may
 *    appear once; anything else is an error.
 *  - "key = value" (or "key: value"); a line is at most 4096 bytes.
 *  - inih rules the user must know: a ';' after white space starts a
 *    comment, so "password = ab ;cd" is "ab" -- a password holding " ;"
 *    belongs in password_file or password_command.  Quotes are not
 *    special.  An indented line continues the previous key, which we
 *    reject ("duplicate key ... indented line"): do not indent keys.
 *
 * Defaults and decisions:
 *  - target: tls defaults to implicit for smtp (port 465; starttls 587,
 *    none 25) and imap (993; 143 otherwise) and to none for lmtp (port
 *    24): LMTP is a local protocol, usually on a unix socket.  socket is
 *    lmtp only, excludes host, port and any tls other than none.  user
 *    needs one password source and a password source needs user.
 *  - target kinds: each key belongs to the kinds that use it (the
 *    endpoint keys to smtp, lmtp and imap; recipient is required for
 *    smtp and lmtp, optional for mda, refused for maildir and imap;
 *    path is maildir's, command and timeout mda's, folder and flags
 *    imap's; labels, internal_date, never_mark_spam,
 *    process_for_calendar and api_url gmail's, which also takes oauth2
 *    (required, without user) and ca_file); a key set for another kind
 *    is an error at its line.
 *  - account: tls defaults to implicit; port 995/993 with implicit,
 *    110/143 with starttls or none.
 *  - protocol = etrn (RFC 1985) asks an SMTP server to flush its queue
 *    for etrn_domains (required, its own key); it fetches and delivers
 *    nothing, so it takes no target, keep, delete_after, max_size or
 *    max_messages; user, password and the tls = none rule are as for a
 *    target's (AUTH only with user); ports as an smtp target's (465,
 *    587 with starttls, 25 with none).  Exactly one password source, or
 *    oauth2 = NAME (then a password source is optional).  A target's
 *    user needs a password source or oauth2.
 *    folders, idle, idle_connections, move_to, mark_seen are imap only.  timeout defaults
 *    to general's; interval stays 0 (= general's).
 *  - provider = gmail | outlook | office365 | yahoo | icloud | fastmail
 *    (accounts, smtp and imap targets) fills in host, tls (so the port)
 *    and auth from a table, each only when its key is not set; a
 *    provider without the protocol (iCloud has no POP3) is an error.
 *  - auth = auto | password | xoauth2 | oauthbearer (default auto).
 *    With xoauth2 or oauthbearer the secret (password, password_command,
 *    password_file) is an OAuth2 access token, e.g. printed by an
 *    external helper; auto and password send it as a password.
 *  - tls = none with a password (every account; a target with user)
 *    requires allow_plaintext_auth = yes.  ca_file/fingerprint with
 *    tls = none is an error.
 *  - keep = no deletes right after delivery; delete_after = D keeps the
 *    mail on the source for D after delivery: setting both is an error.
 *    move_to moves the message after delivery; it cannot be combined
 *    with keep = no or delete_after.
 */
#ifndef MAILHAUL_CONFIG_H
#define MAILHAUL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

struct net_trust;	/* net/net.h */

enum cfg_tls { CFG_TLS_IMPLICIT = 0, CFG_TLS_STARTTLS, CFG_TLS_NONE };
enum cfg_protocol { CFG_PROTO_POP3 = 0, CFG_PROTO_IMAP, CFG_PROTO_ETRN };
enum cfg_target_type { CFG_TARGET_SMTP = 0, CFG_TARGET_LMTP,
	CFG_TARGET_MAILDIR, CFG_TARGET_MDA, CFG_TARGET_IMAP, CFG_TARGET_GMAIL };
enum cfg_envfrom { CFG_ENVFROM_ORIGINAL = 0, CFG_ENVFROM_EMPTY,
	CFG_ENVFROM_ADDRESS };
/* The `chunking` key: BDAT (RFC 3030) when the server offers CHUNKING,
   or DATA always. */
enum cfg_chunking { CFG_CHUNKING_AUTO = 0, CFG_CHUNKING_NO };
enum cfg_log { CFG_LOG_STDERR = 0, CFG_LOG_SYSLOG, CFG_LOG_FILE };
/* The `auth` key; the same order as net/sasl.h's enum sasl_auth. */
enum cfg_auth { CFG_AUTH_AUTO = 0, CFG_AUTH_PASSWORD, CFG_AUTH_XOAUTH2,
	CFG_AUTH_OAUTHBEARER };
/* The `provider` key of accounts and targets: a mail provider's
   servers (config.c's preset table). */
enum cfg_provider { CFG_PROVIDER_NONE = 0, CFG_PROVIDER_GMAIL,
	CFG_PROVIDER_OUTLOOK, CFG_PROVIDER_OFFICE365, CFG_PROVIDER_YAHOO,
	CFG_PROVIDER_ICLOUD, CFG_PROVIDER_FASTMAIL };

/* Where a password comes from: exactly one of the three, or none. */
struct cfg_secret {
	char	*password;	/* inline */
	char	*command;	/* run with /bin/sh -c; first line of stdout */
	char	*file;		/* first line of the file */
};

/* The keys of one kind of target (struct cfg_target's per-kind part). */
struct cfg_target_smtp {		/* smtp and lmtp */
	char			**recipients;	/* at least one */
	size_t			 nrecipients;
	enum cfg_envfrom	 envfrom;
	char			*envelope_from;	/* with CFG_ENVFROM_ADDRESS */
	char			*helo;		/* NULL: the host name */
	enum cfg_chunking	 chunking;	/* BDAT when offered (auto) */
};

struct cfg_target_maildir {
	char			*path;		/* absolute: ~ expanded, a
						   relative path resolved
						   against the config file's
						   directory */
};

struct cfg_target_mda {
	char			*command;	/* as written */
	char			**argv;		/* the command split at white
						   space (NULL-terminated);
						   with shell, one element:
						   the whole command */
	size_t			 argc;
	bool			 shell;		/* the command needs a shell
						   (| ; & < > $ ` or quotes):
						   run /bin/sh -c argv[0] */
	int64_t			 timeout;	/* seconds, default 300 */
	/* recipients (optional, for %T) are in smtp.recipients; the
	   words %F (sender) and %T (recipient) are left as they are for
	   the target to substitute as whole arguments */
};

struct cfg_target_imap {
	char			*folder;	/* default "INBOX" (UTF-8) */
	char			**flags;	/* \\Seen, keywords; may be none */
	size_t			 nflags;
};

enum cfg_gmail_date { CFG_GMAIL_DATE_HEADER = 0, CFG_GMAIL_DATE_RECEIVED };

/* type = gmail: users.messages.import through the Gmail API. */
struct cfg_target_gmail {
	char			**labels;	/* names; default INBOX, UNREAD */
	size_t			 nlabels;
	enum cfg_gmail_date	 internal_date;	/* internalDateSource */
	bool			 never_mark_spam;	/* default no */
	bool			 process_for_calendar;	/* default no */
	char			*api_url;	/* default
						   https://gmail.googleapis.com,
						   no trailing '/' */
	char			*state_dir;	/* set by config_load: the
						   directory of the OAuth2 token
						   store (config_state_dir) */
};

enum cfg_oauth2_provider { CFG_OAUTH2_NONE = 0, CFG_OAUTH2_GOOGLE,
	CFG_OAUTH2_MICROSOFT, CFG_OAUTH2_CUSTOM };

/*
 * [oauth2:NAME]: where an account's or target's access tokens come from.
 * Either token_command (an external helper prints an access token; the
 * other keys must not be set) or built-in OAuth2: client_id, an optional
 * client secret, and the endpoints and scope -- filled in from the
 * provider preset when not set, so after config_load() auth_url,
 * token_url and scope are never NULL without token_command (device_url
 * may be NULL for a custom provider, which needs token_url, scope and
 * auth_url or device_url).
 */
struct cfg_oauth2 {
	char				*name;		/* from [oauth2:NAME] */
	int				 line;
	enum cfg_oauth2_provider	 provider;
	char				*client_id;
	struct cfg_secret		 client_secret;	/* optional */
	char				*tenant;	/* microsoft */
	char				*scope;		/* space-separated */
	char				*auth_url;
	char				*token_url;
	char				*device_url;
	char				*ca_file;
	char				*login_hint;
	char				*token_command;
};

/*
 * Where a server is and how to log in to it: the same keys, parsed and
 * checked by the same code, for accounts and targets.  net/endpoint.h
 * maps it into net_params and a credential.
 */
struct cfg_endpoint {
	enum cfg_provider	 provider;	/* presets host, tls, auth */
	char			*host;		/* NULL with socket */
	unsigned		 port;		/* defaulted by kind and tls */
	char			*socket;	/* unix path (lmtp targets) */
	enum cfg_tls		 tls;
	char			*ca_file;
	char			*fingerprint;
	char			*user;		/* targets: NULL for no AUTH */
	struct cfg_secret	 secret;
	enum cfg_auth		 auth;		/* default auto */
	bool			 allow_plaintext_auth;
	char			*oauth2_name;	/* oauth2 = NAME, or NULL */
	const struct cfg_oauth2	*oauth2;	/* resolved, borrowed */
	struct net_trust	*trust;		/* not from the file: the
						   system CAs its connections
						   share, borrowed (net/
						   endpoint.h); NULL: each
						   connection loads them */
};

struct cfg_target {
	char			*name;		/* from [target:NAME] */
	int			 line;		/* of its section header */
	enum cfg_target_type	 type;
	struct cfg_endpoint	 ep;		/* smtp, lmtp and imap */
	/* every kind */
	bool			 received;	/* prepend Received: (yes) */
	/* the kind's own keys; recipients also for mda (%T) */
	struct cfg_target_smtp	 smtp;
	struct cfg_target_maildir maildir;
	struct cfg_target_mda	 mda;
	struct cfg_target_imap	 imap;
	struct cfg_target_gmail	 gmail;	/* oauth2 required; ca_file too */
};

/* IDLE connections an account keeps at most by default: well below the
   usual per-user connection limits (Dovecot's 10, Gmail's 15). */
#define CFG_IDLE_CONNECTIONS	3

struct cfg_account {
	char			*name;		/* from [account:NAME] */
	int			 line;
	enum cfg_protocol	 protocol;
	struct cfg_endpoint	 ep;		/* port defaulted by protocol
						   and tls; host, user needed */
	char			*target_name;
	const struct cfg_target	*target;	/* resolved, borrowed */
	bool			 keep;		/* default yes */
	int64_t			 delete_after;	/* seconds; 0 = not set */
	uint64_t		 max_size;	/* bytes; 0 = no limit */
	uint64_t		 max_messages;	/* per pass; 0 = no limit */
	char			**folders;	/* imap; default {"INBOX"} */
	size_t			 nfolders;
	bool			 idle;
	unsigned		 idle_connections; /* imap: at most this
						   many in IDLE; default
						   CFG_IDLE_CONNECTIONS */
	int64_t			 interval;	/* seconds; 0 = general's */
	bool			 enabled;	/* default yes */
	int64_t			 timeout;	/* seconds, per operation */
	char			*move_to;	/* imap: move after delivery */
	bool			 mark_seen;	/* imap: \Seen after delivery */
	char			**etrn_domains;	/* etrn: what to ask for, as
						   written ("example.org",
						   "@example.net") */
	size_t			 netrn_domains;
};

/* [general] concurrency and concurrency_per_server when not set: passes
   wait on their servers, not the CPU, so more may run than there are
   cores; one provider sees at most 4 connections of ours at once. */
#define CFG_CONCURRENCY_DEFAULT			32
#define CFG_CONCURRENCY_PER_SERVER_DEFAULT	4

struct cfg_general {
	char		*state;		/* state.db path (XDG default) */
	int64_t		 interval;	/* seconds, default 300 */
	unsigned	 concurrency;	/* CFG_CONCURRENCY_DEFAULT */
	/* passes on one server (host) at once: servercap.h */
	unsigned	 concurrency_per_server;
	enum cfg_log	 log;
	char		*log_file;	/* CFG_LOG_FILE: appended to */
	int		 log_level;	/* enum log_level */
	char		*notify_command;
	int64_t		 timeout;	/* seconds, default 60 */
};

struct config {
	char			*path;
	struct cfg_general	 general;
	struct cfg_target	*targets;
	size_t			 ntargets;
	struct cfg_account	*accounts;
	size_t			 naccounts;
	struct cfg_oauth2	*oauth2s;
	size_t			 noauth2s;
	bool			 has_inline_secret;
};

/*
 * The default config path: $XDG_CONFIG_HOME/mailhaul/config.ini, or
 * ~/.config/mailhaul/config.ini.  Returns a new string.
 */
char	*config_default_path(void);

/*
 * Loads and validates path.  Every problem is written to diag as one
 * line "FILE:LINE: message" (all of them, not only the first); warnings
 * (e.g. a password in a file readable by others) are written there too,
 * prefixed "warning: ".  Returns the config (caller frees with
 * config_free) or NULL when there was at least one error.
 */
struct config *config_load(const char *path, FILE *diag);

/* Frees everything; NULL is a no-op.  Wipes inline passwords. */
void	config_free(struct config *cfg);

/* Finds an account by section name; NULL if none. */
const struct cfg_account *config_account(const struct config *cfg,
	    const char *name);

/*
 * Prints the effective configuration (defaults filled in) as ini text;
 * every secret is printed as "********" and commands are shown as-is
 * (they are not secrets; their output is).
 */
void	config_print(const struct config *cfg, FILE *out);

/*
 * Resolves a secret: the inline password, the first line of the file, or
 * the first line of the command's stdout (command run with /bin/sh -c,
 * its exit status checked, at most 30 s).  Returns a new string the
 * caller frees with secret_free(), or NULL with err set (MH_ERR_AUTH or
 * MH_ERR_LOCAL; the text names the source, never the secret).  A secret
 * with no source returns NULL with err->cls == MH_ERR_NONE.  what names
 * the owner for the error text, e.g. "account old-isp" gives
 * "password_command for account old-isp exited with status 1".
 */
char	*cfg_secret_get(const struct cfg_secret *s, const char *what,
	    struct mh_err *err);

/* cfg_secret_get with a command time limit in milliseconds (tests). */
char	*cfg_secret_get_timeout(const struct cfg_secret *s, const char *what,
	    int timeout_ms, struct mh_err *err);

/* Finds an [oauth2:NAME] section by name; NULL if none. */
const struct cfg_oauth2 *config_oauth2(const struct config *cfg,
	    const char *name);

/* Names for printing. */
const char *cfg_tls_name(enum cfg_tls t);
const char *cfg_protocol_name(enum cfg_protocol p);
const char *cfg_target_type_name(enum cfg_target_type t);
const char *cfg_auth_name(enum cfg_auth a);

/* The directory that holds the state database (locks, spool, service
   files). New string. */
char	*config_state_dir(const struct config *cfg);

/* The default state path: $XDG_STATE_HOME/mailhaul/state.db. New string. */
char	*config_default_state_path(void);

#endif
