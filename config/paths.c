/* paths.c -- XDG default paths (see config.h) */
#include <errno.h>
#include <pwd.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/internal.h"

/* $HOME, or the password database's idea of it, or "/". */
static const char *
home_dir(void)
{
	const char	*h;
	struct passwd	*pw;

	if ((h = getenv("HOME")) != NULL && h[0] == '/')
		return h;
	if ((pw = getpwuid(getuid())) != NULL && pw->pw_dir != NULL &&
	    pw->pw_dir[0] == '/')
		return pw->pw_dir;
	return "/";
}

/*
 * $VAR/mailhaul/file when VAR holds an absolute path (the XDG spec says
 * to ignore relative ones), else ~/fallback/mailhaul/file.
 */
static char *
xdg_path(const char *var, const char *fallback, const char *file)
{
	const char	*v = getenv(var);

	if (v != NULL && v[0] == '/')
		return xasprintf("%s/mailhaul/%s", v, file);
	return xasprintf("%s/%s/mailhaul/%s", home_dir(), fallback, file);
}

char *
config_default_path(void)
{
	return xdg_path("XDG_CONFIG_HOME", ".config", "config.ini");
}

char *
config_default_state_path(void)
{
	return xdg_path("XDG_STATE_HOME", ".local/state", "state.db");
}

/* The length of a leading "~", "$HOME" or "${HOME}" that ends at a '/'
   or at the end of path; 0 when there is none. */
static size_t
home_prefix(const char *path)
{
	static const char *const forms[] = { "~", "$HOME", "${HOME}" };
	size_t	i, n;

	for (i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		n = strlen(forms[i]);
		if (strncmp(path, forms[i], n) == 0 &&
		    (path[n] == '/' || path[n] == '\0'))
			return n;
	}
	return 0;
}

char *
cfg_expand_tilde(const char *path)
{
	size_t	n = home_prefix(path);

	if (n > 0)
		return xasprintf("%s%s", home_dir(), path + n);
	return xstrdup(path);
}

char *
cfg_resolve_path(const char *cfgpath, const char *path)
{
	char		 cwd[4096], *dir, *slash, *out;
	size_t		 n;

	if ((n = home_prefix(path)) > 0)
		return xasprintf("%s%s", home_dir(), path + n);
	if (path[0] == '~') {
		errno = EINVAL;
		return NULL;
	}
	if (path[0] == '/')
		return xstrdup(path);
	if (cfgpath[0] == '/')
		dir = xstrdup(cfgpath);
	else if (getcwd(cwd, sizeof cwd) != NULL)
		dir = xasprintf("%s/%s", cwd, cfgpath);
	else
		return NULL;
	slash = strrchr(dir, '/');
	*slash = '\0';
	out = xasprintf("%s/%s", dir, path);
	free(dir);
	return out;
}

char *
config_state_dir(const struct config *cfg)
{
	char	*copy = xstrdup(cfg->general.state);
	char	*dir = xstrdup(dirname(copy));

	free(copy);
	return dir;
}
