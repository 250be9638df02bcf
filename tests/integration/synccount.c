/*
 * synccount.c -- an LD_PRELOAD shim for the integration tests: every
 * fsync(2) and fdatasync(2) of the process appends one line "CALL PATH"
 * (the file the descriptor names, from /proc/self/fd) to the file named
 * by $SYNCCOUNT_OUT, then does the real call.  The tests count a pass's
 * disk syncs by file with it: that is what a delivery costs the disk,
 * and a property a test can hold the code to without timing anything.
 * Likewise every fopen(3) of the file $SYNCCOUNT_WATCH names (OpenSSL
 * reads its CA file so): "fopen PATH".
 *
 * $SYNCCOUNT_SLOW ("MS PATH") makes every fsync of PATH (a file or a
 * directory) take MS milliseconds more: a slow disk at one place, so
 * that a test can have the fetch side get ahead of the delivery side
 * (batches of more than one message) however busy the machine is.
 */
#define _GNU_SOURCE
/* fopen and fopen64 both defined here: no redirection of one to the other */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int	fsync(int);
int	fdatasync(int);
FILE	*fopen(const char *, const char *);
FILE	*fopen64(const char *, const char *);

/* The next definition of name (libc's), as a function. */
static int
(*next(const char *name))(int)
{
	int	(*fn)(int);
	void	*sym = dlsym(RTLD_NEXT, name);

	if (sym == NULL)
		abort();
	memcpy(&fn, &sym, sizeof fn);	/* POSIX: same representation */
	return fn;
}

/* Appends "call path\n" to $SYNCCOUNT_OUT (one write: O_APPEND keeps
   lines of concurrent threads whole). */
static void
note_path(const char *call, const char *path)
{
	const char	*out = getenv("SYNCCOUNT_OUT");
	char		 line[4200];
	int		 o, len;

	if (out == NULL)
		return;
	len = snprintf(line, sizeof line, "%s %s\n", call, path);
	if (len < 0 || (size_t)len >= sizeof line)
		return;
	if ((o = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0600)) == -1)
		return;
	if (write(o, line, (size_t)len) != len)
		abort();	/* a count the test cannot trust */
	close(o);
}

/* Sleeps as $SYNCCOUNT_SLOW says when it names path. */
static void
slow(const char *path)
{
	const char	*s = getenv("SYNCCOUNT_SLOW"), *sp;
	struct timespec	 ts;
	long		 ms;

	if (s == NULL || (sp = strchr(s, ' ')) == NULL ||
	    strcmp(sp + 1, path) != 0)
		return;
	if ((ms = strtol(s, NULL, 10)) <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = ms % 1000 * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* note_path for the file fd names (/proc/self/fd), then slow. */
static void
note(const char *call, int fd)
{
	char		 proc[64], path[4096];
	ssize_t		 n;

	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	if ((n = readlink(proc, path, sizeof path - 1)) < 0)
		n = 0;
	path[n] = '\0';
	note_path(call, path);
	slow(path);
}

int
fsync(int fd)
{
	int	(*real)(int) = next("fsync");

	note("fsync", fd);
	return real(fd);
}

int
fdatasync(int fd)
{
	int	(*real)(int) = next("fdatasync");

	note("fdatasync", fd);
	return real(fd);
}

/* libc's fopen or fopen64, noting the watched file. */
static FILE *
watched_fopen(const char *name, const char *path, const char *mode)
{
	FILE		*(*fn)(const char *, const char *);
	const char	*w = getenv("SYNCCOUNT_WATCH");
	void		*sym = dlsym(RTLD_NEXT, name);

	if (sym == NULL)
		abort();
	memcpy(&fn, &sym, sizeof fn);
	if (w != NULL && path != NULL && strcmp(path, w) == 0)
		note_path("fopen", path);
	return fn(path, mode);
}

FILE *
fopen(const char *path, const char *mode)
{
	return watched_fopen("fopen", path, mode);
}

FILE *
fopen64(const char *path, const char *mode)
{
	return watched_fopen("fopen64", path, mode);
}
