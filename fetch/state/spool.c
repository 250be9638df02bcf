/* spool.c -- see spool.h */
#define _GNU_SOURCE		/* O_TMPFILE, mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch/state/spool.h"

/* The fallback when the file system has no O_TMPFILE. */
static int
spool_mkstemp(const char *dir, struct mh_err *err)
{
	char	*path = xasprintf("%s/.mailhaul-spool.XXXXXX", dir);
	int	 fd;

	if ((fd = mkostemp(path, O_CLOEXEC)) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot create a spool file "
		    "in %s: %s", dir, strerror(errno));
		goto out;
	}
	if (unlink(path) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot unlink spool file %s: "
		    "%s", path, strerror(errno));
		close(fd);
		fd = -1;
	}
out:
	free(path);
	return fd;
}

int
spool_open(const char *dir, struct mh_err *err)
{
	struct stat	st;
	int		fd;

	if (stat(dir, &st) == -1) {
		if (mkdir_p(dir, 0700, err) != 0)
			return -1;
		if (chmod(dir, 0700) == -1) {
			mh_err_set(err, MH_ERR_LOCAL, "cannot chmod %s: %s",
			    dir, strerror(errno));
			return -1;
		}
	}
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd != -1)
		return fd;
	switch (errno) {
	case EOPNOTSUPP:
	case EISDIR:		/* kernel without O_TMPFILE */
	case EINVAL:
	case ENOENT:
		return spool_mkstemp(dir, err);
	}
	mh_err_set(err, MH_ERR_LOCAL, "cannot create a spool file in %s: %s",
	    dir, strerror(errno));
	return -1;
}

int
spool_reset(int fd, struct mh_err *err)
{
	if (ftruncate(fd, 0) == -1 || lseek(fd, 0, SEEK_SET) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot reset spool file: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}
