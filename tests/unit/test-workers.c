/*
 * test-workers.c -- what the service's workers are held to: their
 * resource limits (worker_limits), and how the scheduler judges their
 * progress (progress.h, on real processes and /proc/PID/io).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fetch/service/progress.h"
#include "fetch/service/workers.h"

#ifndef __has_feature
#define __has_feature(x)	0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define ASAN	1
#else
#define ASAN	0
#endif

static struct cfg_target	tgt;
static struct cfg_account	account_;

static void
account(enum cfg_target_type type)
{
	memset(&tgt, 0, sizeof tgt);
	memset(&account_, 0, sizeof account_);
	tgt.name = "t";
	tgt.type = type;
	account_.name = "a";
	account_.target = &tgt;
}

/* A hostile server cannot make a worker take the machine: no core file,
   a bounded heap, a bounded file that fails a write instead of killing. */
static void
t_limits(void)
{
	struct rlimit	 rl;
	char		 path[] = "/tmp/test-workers.XXXXXX";
	void		*p;
	int		 fd;

	account(CFG_TARGET_SMTP);
	worker_limits(&account_);
	CHECK(getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_cur == 0 &&
	    rl.rlim_max == 0);
	if (!ASAN) {
		CHECK(getrlimit(RLIMIT_DATA, &rl) == 0 &&
		    rl.rlim_cur <= WORKER_DATA_LIMIT);
		p = malloc((size_t)WORKER_DATA_LIMIT * 2);
		CHECK(p == NULL);	/* a 2 GiB "literal": refused */
		free(p);
	}
	CHECK(getrlimit(RLIMIT_FSIZE, &rl) == 0 &&
	    rl.rlim_cur <= WORKER_FSIZE_LIMIT);
	CHECK((fd = mkstemp(path)) != -1);
	if (fd == -1)
		return;
	unlink(path);
	/* past the limit: EFBIG, and the worker lives (SIGXFSZ ignored) */
	CHECK(pwrite(fd, "x", 1, (off_t)WORKER_FSIZE_LIMIT) == -1 &&
	    errno == EFBIG);
	CHECK(pwrite(fd, "x", 1, 4096) == 1);
	close(fd);
}

/* The programs a worker runs (MDA, password and token commands) are not
   workers: before exec they get the memory limit the worker had before. */
static void
t_limits_restored(void)
{
	struct rlimit	before, rl;
	pid_t		pid;
	int		st = -1;

	if (ASAN)
		return;
	CHECK(getrlimit(RLIMIT_DATA, &before) == 0);
	if ((pid = fork()) == 0) {
		account(CFG_TARGET_MDA);
		worker_limits(&account_);
		if (getrlimit(RLIMIT_DATA, &rl) != 0 ||
		    rl.rlim_cur > WORKER_DATA_LIMIT)
			_exit(2);
		child_limits_restore();		/* as mda.c before execve */
		if (getrlimit(RLIMIT_DATA, &rl) != 0)
			_exit(3);
		_exit(rl.rlim_cur == before.rlim_cur &&
		    rl.rlim_max == before.rlim_max ? 0 : 1);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* An MDA's program writes mailboxes of any size: no file size limit. */
static void
t_limits_mda(void)
{
	struct rlimit	before, after;

	account(CFG_TARGET_MDA);
	CHECK(getrlimit(RLIMIT_FSIZE, &before) == 0);
	worker_limits(&account_);
	CHECK(getrlimit(RLIMIT_FSIZE, &after) == 0);
	CHECK(after.rlim_cur == before.rlim_cur);
	CHECK(getrlimit(RLIMIT_CORE, &after) == 0 && after.rlim_cur == 0);
}

/* A child that writes to /dev/null every 50 ms (busy) or sleeps. */
static pid_t
child(bool busy)
{
	pid_t	pid = fork();
	int	fd;

	if (pid != 0)
		return pid;
	fd = open("/dev/null", O_WRONLY);
	for (int i = 0; i < 400; i++) {
		if (busy && write(fd, "x", 1) != 1)
			_exit(1);
		usleep(50000);
	}
	_exit(0);
}

/* Progress is bytes moving: a busy pass lives past the limit, an idle
   one is stopped, then killed after the grace. */
static void
t_progress(void)
{
	struct worker	 busy = { 0, -1, false, false };
	struct worker	 idle = { 0, -1, false, false };
	struct progress	 pb, pi;
	uint64_t	 io;
	int64_t		 t0 = now_ms(), now;
	bool		 stopped = false, killed = false;

	busy.pid = child(true);
	idle.pid = child(false);
	CHECK(worker_io(&busy, &io) == 0);
	progress_start(&pb, &busy, 1000, t0);
	progress_start(&pi, &idle, 1000, t0);
	while ((now = now_ms()) < t0 + 3500) {
		CHECK(progress_check(&pb, &busy, 500, now) == PROGRESS_OK);
		usleep(50000);
		if (killed)		/* the scheduler looks no more */
			continue;
		switch (progress_check(&pi, &idle, 500, now)) {
		case PROGRESS_OK:
			break;
		case PROGRESS_STOP:
			CHECK(!stopped && now - t0 >= 1000);
			progress_stopped(&pi, 500, now);
			stopped = true;
			break;
		case PROGRESS_KILL:
			CHECK(stopped && now - t0 >= 1500);
			killed = true;
			break;
		}
	}
	CHECK(stopped && killed);
	kill(busy.pid, SIGKILL);
	kill(idle.pid, SIGKILL);
	waitpid(busy.pid, NULL, 0);
	waitpid(idle.pid, NULL, 0);
	busy.pid = 0;
	CHECK(worker_io(&busy, &io) == -1);
}

int
main(void)
{
	RUN(t_limits);
	RUN(t_limits_mda);
	RUN(t_limits_restored);
	RUN(t_progress);
	return check_done();
}
