/* internal.h -- shared between the files of config/ only. */
#ifndef MAILHAUL_CONFIG_INTERNAL_H
#define MAILHAUL_CONFIG_INTERNAL_H

/* "~/x", "$HOME/x" -> "/home/me/x"; anything else copied.  New string. */
char	*cfg_expand_tilde(const char *path);

/*
 * A path from the config file made absolute: a leading "~", "$HOME" or
 * "${HOME}" (alone or before a '/') becomes the home directory; any other
 * relative path is taken against the directory of cfgpath, the config
 * file (itself against the current directory when relative).  New
 * string, or NULL with errno EINVAL for "~user" (not supported), or
 * getcwd's errno.
 */
char	*cfg_resolve_path(const char *cfgpath, const char *path);

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* The key tables: one row per key (config.c reads and prints them). */
enum ktype {
	K_STR,		/* char * */
	K_PATH,		/* char *, "~/" expanded */
	K_SECRET,	/* char *, an inline password: never printed */
	K_DURATION,	/* int64_t seconds */
	K_SIZE,		/* uint64_t bytes */
	K_BOOL,		/* bool */
	K_PORT,		/* unsigned */
	K_UINT,		/* unsigned, min..max */
	K_UINT64,	/* uint64_t, min..max */
	K_ENUM,		/* an int-sized enum, from choices */
	K_FPR,		/* char *, normalised sha256 */
	K_ADDRS,	/* char ** at off, size_t at off2 */
	K_FOLDERS,	/* char ** at off, size_t at off2 */
	K_ENVFROM,	/* enum cfg_envfrom at off, char * at off2 */
	K_FLAGS,	/* char ** at off, size_t at off2: IMAP flags */
	K_LOG,		/* enum cfg_log at off, char * (the file) at off2 */
};

#define KF_REQUIRED	0x1
#define KF_IMAP		0x2	/* accounts: imap only */
#define KF_ACCOUNT_REQUIRED 0x4	/* endpoint: required in accounts */
#define KF_TARGET_ONLY	0x8	/* endpoint: targets only */

struct choice {
	const char	*name;
	int		 value;
};

struct keydef {
	const char		*name;
	enum ktype		 type;
	size_t			 off;
	size_t			 off2;
	int			 flags;
	const struct choice	*choices;
	uint64_t		 min, max;
};

struct load;	/* config.c's parse state */
struct psect;	/* one section as parsed */

/* An error "FILE:LINE: text" for the loader to report. */
void	cfg_err(struct load *l, int line, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/* The line where key name was set in s (negative: set but bad), 0 if
   it was not. */
int	cfg_keyline(const struct psect *s, const char *name);

/* config/oauth2.c: the [oauth2:NAME] section. */
extern const struct keydef cfg_oauth2_keys[];

/* Fills defaults (provider presets) and checks o; s is its section. */
void	cfg_oauth2_check(struct load *l, const struct psect *s,
	    struct cfg_oauth2 *o);

/* Resolves an "oauth2 = NAME" reference set on line; reports an unknown
   name with the known ones.  Returns the section or NULL. */
const struct cfg_oauth2 *cfg_oauth2_resolve(struct load *l,
	    const struct config *cfg, const char *name, int line);

/* Whether u is https://..., or http:// to a loopback host (tests). */
bool	cfg_url_ok(const char *u);

/* Frees o's fields (not o). */
void	cfg_oauth2_free(struct cfg_oauth2 *o);

#endif
