/* util.c -- see util.h */
#define _GNU_SOURCE		/* memfd_create, F_GET_SEALS */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

void
mh_err_clear(struct mh_err *err)
{
	err->cls = MH_ERR_NONE;
	err->scope = MH_SCOPE_NONE;
	err->msg[0] = '\0';
	err->reply[0] = '\0';
}

void
mh_err_set(struct mh_err *err, enum mh_err_class cls, const char *fmt, ...)
{
	va_list	ap;

	err->cls = cls;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}

void
mh_err_scope(struct mh_err *err, enum mh_err_scope scope)
{
	err->scope = scope;
}

void
mh_err_prefix(struct mh_err *err, const char *fmt, ...)
{
	char	prefix[256], msg[sizeof err->msg];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(msg, err->msg, sizeof msg);
	mh_err_set(err, err->cls, "%s: %s", prefix, msg);
}

void
mh_err_reply(struct mh_err *err, const char *reply, size_t len)
{
	size_t	i, n = 0;

	if (reply == NULL)
		len = 0;
	for (i = 0; i < len && n + 1 < sizeof err->reply; i++) {
		unsigned char c = (unsigned char)reply[i];

		if (len == (size_t)-1 && c == '\0')
			break;
		err->reply[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	while (n > 0 && err->reply[n - 1] == ' ')
		n--;
	err->reply[n] = '\0';
}

const char *
mh_err_class_name(enum mh_err_class cls)
{
	switch (cls) {
	case MH_ERR_NONE:	return "ok";
	case MH_ERR_TEMP:	return "temporary";
	case MH_ERR_PERM:	return "permanent";
	case MH_ERR_AUTH:	return "authentication";
	case MH_ERR_TLS:	return "tls";
	case MH_ERR_PROTO:	return "protocol";
	case MH_ERR_LOCAL:	return "local";
	case MH_ERR_BUSY:	return "busy";
	case MH_ERR_NOUSER:	return "recipient refused";
	}
	return "unknown";
}

const char *
mh_err_str(const struct mh_err *err, char *buf, size_t size)
{
	if (err->reply[0] != '\0')
		snprintf(buf, size, "%s: server said: %s", err->msg,
		    err->reply);
	else
		snprintf(buf, size, "%s", err->msg);
	return buf;
}

static void
oom(void)
{
	fputs("mailhaul: out of memory\n", stderr);
	abort();
}

void *
xmalloc(size_t n)
{
	void	*p = malloc(n ? n : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xcalloc(size_t n, size_t m)
{
	void	*p = calloc(n ? n : 1, m ? m : 1);

	if (p == NULL)
		oom();
	return p;
}

#define MH_PREFAULT_MIN	(256 * 1024)	/* below: a few faults, no call */

int
mh_memspool_open(void)
{
	/* sealable, and no seal ever set: that is how mh_is_memspool knows
	   it (a tmpfs file and a plain memfd carry F_SEAL_SEAL) */
	return memfd_create("mailhaul-spool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

bool
mh_is_memspool(int fd)
{
	return fcntl(fd, F_GET_SEALS) == 0;
}

int
mh_copy_fd(int from, int to)
{
	char	buf[65536];
	ssize_t	r, w;

	if (lseek(from, 0, SEEK_SET) == -1)
		return -1;
	for (;;) {
		if ((r = read(from, buf, sizeof buf)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			return 0;
		for (ssize_t o = 0; o < r; o += w)
			if ((w = write(to, buf + o, (size_t)(r - o))) == -1) {
				if (errno == EINTR) {
					w = 0;
					continue;
				}
				return -1;
			}
	}
}

int
mh_tmpfile(void)
{
	const char	*dir = getenv("TMPDIR");
	char		*path;
	int		 fd;

	if (dir == NULL || dir[0] == '\0')
		dir = "/tmp";
	path = xasprintf("%s/mailhaul-spool.XXXXXX", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) != -1)
		unlink(path);
	free(path);
	return fd;
}

int
mh_memspool_bound(int fd, uint64_t at, size_t more)
{
	int	to, fl, rc = -1, saved;

	/* once per file: when it first grows past the cap */
	if (at > MH_SPOOL_MEM_CAP || at + more <= MH_SPOOL_MEM_CAP ||
	    !mh_is_memspool(fd))
		return 0;
	if ((fl = fcntl(fd, F_GETFD)) == -1 || (to = mh_tmpfile()) == -1)
		return -1;
	if (mh_copy_fd(fd, to) == -1 ||
	    dup3(to, fd, (fl & FD_CLOEXEC) ? O_CLOEXEC : 0) == -1)
		goto out;
	rc = 0;
out:
	saved = errno;
	close(to);
	errno = saved;
	return rc;
}

void
mh_prefault(void *p, size_t len)
{
#ifdef MADV_POPULATE_WRITE
	uintptr_t	pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t	a = ((uintptr_t)p + pg - 1) & ~(pg - 1);
	uintptr_t	b = ((uintptr_t)p + len) & ~(pg - 1);

	/* whole pages inside the block only: its neighbours are not ours */
	if (len >= MH_PREFAULT_MIN && b > a)
		(void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
	(void)p;
	(void)len;
#endif
}

void *
xrealloc(void *p, size_t n)
{
	void	*q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom();
	return q;
}

char *
xstrdup(const char *s)
{
	char	*p = strdup(s);

	if (p == NULL)
		oom();
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p = strndup(s, n);

	if (p == NULL)
		oom();
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list	 ap;
	char	 small[256], *p;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	p = xmalloc((size_t)n + 1);
	if ((size_t)n < sizeof small) {
		memcpy(p, small, (size_t)n + 1);
		return p;
	}
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void
secret_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

int64_t
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
cloexec_pipe(int p[2], bool nonblock)
{
	if (pipe(p) == -1)
		return -1;
	for (int i = 0; i < 2; i++)
		if (fcntl(p[i], F_SETFD, FD_CLOEXEC) == -1 ||
		    (nonblock &&
		    fcntl(p[i], F_SETFL, O_NONBLOCK) == -1)) {
			int saved = errno;

			close(p[0]);
			close(p[1]);
			errno = saved;
			return -1;
		}
	return 0;
}

int
mkdir_p(const char *path, unsigned mode, struct mh_err *err)
{
	char	*p = xstrdup(path), *s;
	int	 rc = -1;

	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) == -1 && errno != EEXIST) {
			mh_err_set(err, MH_ERR_LOCAL, "cannot create %s: %s",
			    p, strerror(errno));
			goto out;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	rc = 0;
out:
	free(p);
	return rc;
}

void
child_limits_restore(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_DATA, &rl);
	}
}

int
mh_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t	all, old;
	int		r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}
