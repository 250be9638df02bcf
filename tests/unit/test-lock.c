/* test-lock.c -- the account lock and spool files: fetch/state/lock.c, spool.c */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/state/lock.h"
#include "fetch/state/spool.h"
#include "tests/unit/check.h"

static char	tmpdir[64];

static void
setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test-lock.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
}

static void
teardown(void)
{
	char	cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* A child tries the lock we hold; reports its class and text in a pipe. */
static void
t_second_taker_busy(void)
{
	struct mh_err	 err;
	struct stat	 st;
	char		 path[128], buf[600], want[64];
	int		 fd, fds[2], status;
	ssize_t		 n;
	pid_t		 pid;

	setup();
	mh_err_clear(&err);
	fd = lock_take(tmpdir, "12", 0, &err);
	CHECK(fd >= 0);
	snprintf(path, sizeof path, "%s/locks/12.lock", tmpdir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	snprintf(path, sizeof path, "%s/locks", tmpdir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK(pipe(fds) == 0);
	if ((pid = fork()) == 0) {
		int64_t	t0 = now_ms();
		int	cfd;

		close(fds[0]);
		mh_err_clear(&err);
		cfd = lock_take(tmpdir, "12", 300, &err);
		/* It waited (about) the full 300 ms before giving up. */
		snprintf(buf, sizeof buf, "%d %d %d %s", cfd,
		    (int)err.cls, now_ms() - t0 >= 290, err.msg);
		if (write(fds[1], buf, strlen(buf)) < 0)
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	CHECK(pid > 0);
	n = read(fds[0], buf, sizeof buf - 1);
	close(fds[0]);
	buf[n > 0 ? n : 0] = '\0';
	CHECK(waitpid(pid, &status, 0) == pid);
	snprintf(want, sizeof want, "-1 %d 1 account is busy:", MH_ERR_BUSY);
	CHECK(strncmp(buf, want, strlen(want)) == 0);
	snprintf(want, sizeof want, "(pid %ld)", (long)getpid());
	CHECK_CONTAINS(buf, want);
	/* Another key is another lock. */
	{
		int other = lock_take(tmpdir, "13", 0, &err);

		CHECK(other >= 0);
		lock_release(other);
	}
	lock_release(fd);
	/* Released: can be taken again, by us or by another process. */
	fd = lock_take(tmpdir, "12", 0, &err);
	CHECK(fd >= 0);
	lock_release(fd);
	if ((pid = fork()) == 0) {
		int cfd = lock_take(tmpdir, "12", 0, &err);

		_exit(cfd >= 0 ? 0 : 1);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	lock_release(-1);
	teardown();
}

/* The holder lets go while we wait: we get it before the deadline. */
static void
t_wait_then_take(void)
{
	struct mh_err	err;
	int		fd, status;
	pid_t		pid;
	int		fds[2];
	char		c;

	setup();
	CHECK(pipe(fds) == 0);
	if ((pid = fork()) == 0) {
		int cfd = lock_take(tmpdir, "7", 0, &err);

		close(fds[0]);
		if (cfd < 0 || write(fds[1], "x", 1) != 1)
			_exit(1);
		usleep(200 * 1000);
		lock_release(cfd);
		_exit(0);
	}
	close(fds[1]);
	CHECK(read(fds[0], &c, 1) == 1);
	close(fds[0]);
	mh_err_clear(&err);
	fd = lock_take(tmpdir, "7", 5000, &err);
	CHECK(fd >= 0);
	CHECK(err.cls == MH_ERR_NONE);
	lock_release(fd);
	CHECK(waitpid(pid, &status, 0) == pid);
	teardown();
}

static void
t_bad_key(void)
{
	struct mh_err	err;

	setup();
	mh_err_clear(&err);
	CHECK(lock_take(tmpdir, "../x", 0, &err) == -1);
	CHECK(err.cls == MH_ERR_LOCAL);
	CHECK(lock_take(tmpdir, "", 0, &err) == -1);
	teardown();
}

static void
t_spool(void)
{
	struct mh_err	 err;
	struct stat	 st;
	char		 dir[128], buf[16];
	int		 fd, flags;

	setup();
	snprintf(dir, sizeof dir, "%s/spool/x", tmpdir);
	mh_err_clear(&err);
	fd = spool_open(dir, &err);
	CHECK(fd >= 0);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	flags = fcntl(fd, F_GETFD);
	CHECK(flags != -1 && (flags & FD_CLOEXEC));
	CHECK(write(fd, "hello", 5) == 5);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 5);
	CHECK(st.st_nlink == 0);	/* nothing left behind */
	CHECK(spool_reset(fd, &err) == 0);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 0);
	CHECK(write(fd, "ab", 2) == 2);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	CHECK(read(fd, buf, sizeof buf) == 2 && memcmp(buf, "ab", 2) == 0);
	close(fd);
	/* The directory holds no file afterwards. */
	snprintf(buf, sizeof buf, "x");
	{
		char cmd[200];

		snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
		CHECK(system(cmd) == 0);
	}
	/* A file where the directory should be: a clean error. */
	snprintf(dir, sizeof dir, "%s/file", tmpdir);
	close(open(dir, O_CREAT | O_WRONLY, 0600));
	mh_err_clear(&err);
	CHECK(spool_open(dir, &err) == -1);
	CHECK(err.cls == MH_ERR_LOCAL);
	teardown();
}

int
main(void)
{
	RUN(t_second_taker_busy);
	RUN(t_wait_then_take);
	RUN(t_bad_key);
	RUN(t_spool);
	return check_done();
}
