/*
 * import.h -- `mailhaul import fetchmail|getmail`: another tool's config
 * and seen-UID state, read into a neutral model, written out as a
 * mailhaul config.  Recording the seen UIDs in the state database is
 * fetch/engine/adopt.h's job (it needs the loaded config and the state).
 *
 * The model owns every string (freed by import_free).  Passwords read
 * from the old tool's files are held in imp_account.password and wiped
 * by import_free; they are written only where import_write says.
 * Whatever has no mailhaul equivalent becomes a note: a comment line in
 * the written config, above the account (or [general]) it concerns.
 */
#ifndef MAILHAUL_CONFIG_IMPORT_H
#define MAILHAUL_CONFIG_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "util.h"

/* A message the old tool had delivered. */
struct imp_seen {
	char		*folder;	/* IMAP folder (UTF-8) as configured;
					   "" for POP3 */
	uint32_t	 uidvalidity;	/* IMAP; 0 for POP3 */
	char		*uid;		/* POP3 UIDL, IMAP UID (decimal) */
};

/* Where the account's mail went. */
struct imp_target {
	enum cfg_target_type	 type;	/* smtp, lmtp, mda or maildir */
	char			*host;	/* smtp, lmtp: NULL with socket */
	unsigned		 port;	/* 0: the default */
	char			*socket;	/* lmtp over a unix socket */
	char			*recipient;	/* smtp, lmtp; may be NULL */
	char			*command;	/* mda */
	char			*path;		/* maildir */
};

struct imp_account {
	char		*name;		/* section name, [A-Za-z0-9._-] */
	char		*notes;		/* comment lines, '\n'-separated */
	enum cfg_protocol protocol;
	char		*host;
	unsigned	 port;		/* 0: the default */
	char		*user;
	char		*password;	/* from the old file; NULL if none */
	char		*password_command;	/* as a shell command */
	enum cfg_tls	 tls;
	bool		 plaintext;	/* tls = none: allow_plaintext_auth */
	char		*ca_file;
	char		*fingerprint;	/* sha256, "AA:BB:..." */
	bool		 keep;
	int64_t		 delete_after;	/* seconds; 0: not set */
	uint64_t	 max_size;	/* 0: not set */
	uint64_t	 max_messages;	/* 0: not set */
	char		**folders;	/* IMAP, UTF-8; none: INBOX */
	size_t		 nfolders;
	bool		 idle;
	bool		 enabled;
	bool		 adopt_flags;	/* IMAP: the old tool kept no UIDs but
					   set \\Seen: record what carries it */
	bool		 adopt_all;	/* with adopt_flags: every message
					   (fetchmail's fetchall) */
	bool		 proto_guessed;	/* fetchmail's proto auto: IMAP or
					   POP3, whichever answered */
	struct imp_target target;
	struct imp_seen	*seen;
	size_t		 nseen;
};

struct import {
	const char		*tool;		/* "fetchmail" | "getmail" */
	char			*notes;		/* [general] comment lines */
	int64_t			 interval;	/* seconds; 0: not set */
	struct imp_account	*accts;
	size_t			 n;
};

/* Options of `mailhaul import`. */
struct import_opts {
	const char	**rc;		/* rc files; none: the tool's default */
	size_t		  nrc;
	const char	 *state;	/* .fetchids file / getmail's dir */
	const char	 *out;		/* the config to write */
	bool		  keep_passwords;
};

/*
 * Reads ~/.fetchmailrc (or opts->rc[0]) and ~/.fetchids (or
 * opts->state; a missing ids file is no error: nothing was kept) into
 * imp.  -1 with err (MH_ERR_LOCAL: unreadable; MH_ERR_PERM: a syntax
 * error, err->msg names file:line).
 */
int	import_fetchmail(const struct import_opts *opts, struct import *imp,
	    struct mh_err *err);

/*
 * Reads each getmailrc (default ~/.config/getmail/getmailrc, else
 * ~/.getmail/getmailrc) and the oldmail-* files of each in the getmail
 * directory (opts->state, else the rc file's directory) into imp.
 */
int	import_getmail(const struct import_opts *opts, struct import *imp,
	    struct mh_err *err);

/*
 * Writes imp as a mailhaul config to opts->out, created with O_EXCL and
 * mode 0600 (an existing file is never touched: MH_ERR_LOCAL, "exists").
 * A password of the old file goes inline only with keep_passwords;
 * otherwise into a new 0600 file NAME.password beside the config, named
 * by password_file (an account without any password gets an empty such
 * file to fill in).  Every file it created is removed again on failure.
 */
int	import_write(const struct import *imp, const struct import_opts *opts,
	    struct mh_err *err);

/*
 * Writes imp to opts->out again, in place of the file import_write
 * created (an account disabled since, with its note): through a new
 * OUT.new renamed over it.
 */
int	import_rewrite(const struct import *imp, const struct import_opts *opts,
	    struct mh_err *err);

/* Frees every string of imp (passwords wiped); imp itself is the
   caller's. */
void	import_free(struct import *imp);

/* --- for the readers (import_fetchmail.c, import_getmail.c) --- */

/* A new account, zeroed but for keep = yes, enabled = yes, tls =
   implicit; the pointer is valid until the next imp_account_add. */
struct imp_account *imp_account_add(struct import *imp);
/* Appends one comment line (printf-style) to *notes. */
void	imp_note(char **notes, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	imp_seen_add(struct imp_account *a, const char *folder,
	    uint32_t uidvalidity, const char *uid);
/* A section name from s: [A-Za-z0-9._-], others as '-', unique in imp
   (a "-2" suffix...).  New string. */
char	*imp_name(const struct import *imp, const char *s);
/* "~/x" and "$HOME/x" -> absolute; new string. */
char	*imp_expand_home(const char *path);

#endif
