/*
 * fake.h -- for unit tests that run a scripted fake server (Python, under
 * tests/unit/<dir>/): where those scripts are, and starting one.
 *
 * TEST_SRCDIR is tests/unit in the source tree (set by meson).
 */
#ifndef MAILHAUL_TESTS_FAKE_H
#define MAILHAUL_TESTS_FAKE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TEST_SRCDIR
#error "TEST_SRCDIR must be defined (tests/unit/meson.build does)"
#endif

/*
 * Forks and execs argv (argv[0] a path) with its stdout on a pipe and
 * reads the first line, the port it listens on.  Returns the pid and
 * stores the port; exits the test (status 2) if the server does not start.
 */
static inline pid_t
fake_spawn(const char *const *argv, unsigned *port)
{
	char	buf[32];
	int	p[2];
	pid_t	pid;
	ssize_t	r = 0;
	size_t	o = 0;

	if (pipe(p) == -1 || (pid = fork()) == -1) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {			/* the port, up to its newline */
		r = read(p[0], buf + o, sizeof buf - 1 - o);
		if (r <= 0 || (o += (size_t)r) == sizeof buf - 1 ||
		    memchr(buf, '\n', o) != NULL)
			break;
	}
	close(p[0]);
	if (o == 0) {
		fprintf(stderr, "%s did not start\n", argv[1] ? argv[1] :
		    argv[0]);
		exit(2);
	}
	buf[o] = '\0';
	*port = (unsigned)atoi(buf);
	return pid;
}

/* Stops the server pid (if > 0) and removes its directory dir. */
static inline void
fake_stop_dir(pid_t pid, const char *dir)
{
	char cmd[128];

	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* dir/log, the server's command log, as one string (caller frees). */
static inline char *
fake_read_log(const char *dir)
{
	char	 path[96], *s = calloc(1, 1 << 20);
	int	 fd;
	ssize_t	 r;

	if (s == NULL)
		abort();
	snprintf(path, sizeof path, "%s/log", dir);
	if ((fd = open(path, O_RDONLY)) == -1)
		return s;
	r = read(fd, s, (1 << 20) - 1);
	s[r > 0 ? r : 0] = '\0';
	close(fd);
	return s;
}

#endif
