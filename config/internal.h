/* internal.h -- shared between the files of config/ only. */
#ifndef MAILHAUL_CONFIG_INTERNAL_H
#define MAILHAUL_CONFIG_INTERNAL_H

/* "~/x" -> "$HOME/x"; anything else copied.  New string. */
char	*cfg_expand_tilde(const char *path);

#endif
