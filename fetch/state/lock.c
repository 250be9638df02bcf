/* lock.c -- see lock.h */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch/state/lock.h"

#define LOCK_POLL_MS	50

/* The holder's pid as it wrote it, or 0 if unknown. */
static long
lock_holder(int fd)
{
	char	 buf[32];
	ssize_t	 n;
	char	*end;
	long	 pid;

	if ((n = pread(fd, buf, sizeof buf - 1, 0)) <= 0)
		return 0;
	buf[n] = '\0';
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || pid <= 0)
		return 0;
	return pid;
}

static void
sleep_ms(int ms)
{
	struct timespec	ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);	/* a signal only shortens one poll */
}

/* Records our pid so a waiting process can name us. */
static int
lock_write_pid(int fd, const char *path, struct mh_err *err)
{
	char	buf[32];
	int	n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot write lock file %s: %s",
		    path, strerror(errno));
		return -1;
	}
	return 0;
}

int
lock_take(const char *dir, const char *key, int wait_ms, struct mh_err *err)
{
	char	*locks = xasprintf("%s/locks", dir), *path = NULL;
	int64_t	 deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);
	int64_t	 left;
	long	 pid;
	int	 fd = -1;

	if (*key == '\0' || strchr(key, '/') != NULL || key[0] == '.') {
		mh_err_set(err, MH_ERR_LOCAL, "bad lock name \"%s\"", key);
		goto out;
	}
	if (mkdir_p(locks, 0700, err) != 0)
		goto out;
	path = xasprintf("%s/%s.lock", locks, key);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot open lock file %s: %s",
		    path, strerror(errno));
		goto out;
	}
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			mh_err_set(err, MH_ERR_LOCAL, "cannot lock %s: %s",
			    path, strerror(errno));
			goto fail;
		}
		if ((left = deadline - now_ms()) <= 0) {
			if ((pid = lock_holder(fd)) != 0)
				mh_err_set(err, MH_ERR_BUSY, "account is busy: "
				    "another mailhaul process (pid %ld) is "
				    "syncing it", pid);
			else
				mh_err_set(err, MH_ERR_BUSY, "account is busy: "
				    "another mailhaul process is syncing it");
			goto fail;
		}
		sleep_ms(left < LOCK_POLL_MS ? (int)left : LOCK_POLL_MS);
	}
	if (lock_write_pid(fd, path, err) != 0)
		goto fail;
	goto out;
fail:
	close(fd);
	fd = -1;
out:
	free(path);
	free(locks);
	return fd;
}

void
lock_release(int fd)
{
	if (fd == -1)
		return;
	/* Still ours until close: nobody reads a stale pid afterwards. */
	if (ftruncate(fd, 0) == -1) {
		/* nothing to do: the lock goes with the fd anyway */
	}
	close(fd);
}
