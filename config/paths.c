/* paths.c -- XDG default paths (see config.h) */
#include <pwd.h>
#include <libgen.h>
#include <stdlib.h>
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

char *
cfg_expand_tilde(const char *path)
{
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0'))
		return xasprintf("%s%s", home_dir(), path + 1);
	return xstrdup(path);
}

char *
config_state_dir(const struct config *cfg)
{
	char	*copy = xstrdup(cfg->general.state);
	char	*dir = xstrdup(dirname(copy));

	free(copy);
	return dir;
}
