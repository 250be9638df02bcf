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
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TEST_SRCDIR
#error "TEST_SRCDIR must be defined (tests/unit/meson.build does)"
#endif

/*
 * Forks and execs argv (argv[0] a path) with its stdout on a pipe and
 * reads the first line, the port it listens on (10 s at most).  stderr
 * goes to the file errpath (appended) unless errpath is NULL, so that a
 * test's output stays clean.  Returns the pid and stores the port, or -1
 * (the child killed and reaped) if no port line came.
 */
static inline pid_t
fake_launch(const char *const *argv, const char *errpath, unsigned *port)
{
	char		buf[64];
	int		p[2], fd;
	pid_t		pid;
	ssize_t		r;
	size_t		o = 0;
	struct pollfd	pf;

	if (pipe(p) == -1 || (pid = fork()) == -1) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		dup2(p[1], 1);
		if (errpath != NULL && (fd = open(errpath,
		    O_WRONLY | O_CREAT | O_APPEND, 0600)) != -1)
			dup2(fd, 2);
		close(p[0]);
		close(p[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	while (o < sizeof buf - 1 && memchr(buf, '\n', o) == NULL) {
		pf.fd = p[0];
		pf.events = POLLIN;
		if (poll(&pf, 1, 10000) != 1 ||
		    (r = read(p[0], buf + o, sizeof buf - 1 - o)) <= 0)
			break;
		o += (size_t)r;
	}
	close(p[0]);
	if (memchr(buf, '\n', o) == NULL) {
		fprintf(stderr, "  %s did not start\n", argv[1] != NULL ?
		    argv[1] : argv[0]);
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		return -1;
	}
	buf[o] = '\0';
	*port = (unsigned)strtoul(buf, NULL, 10);
	return pid;
}

/* fake_launch, stderr inherited; exits the test (status 2) on failure. */
static inline pid_t
fake_spawn(const char *const *argv, unsigned *port)
{
	pid_t	pid = fake_launch(argv, NULL, port);

	if (pid == -1)
		exit(2);
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

/*
 * fake_read_log, once it holds needle or 5 s have passed: for what a
 * client sends without waiting for the answer (IMAP LOGOUT), which the
 * server logs after the client has moved on.
 */
static inline char *
fake_read_log_until(const char *dir, const char *needle)
{
	char	*s = fake_read_log(dir);

	for (int i = 0; i < 500 && strstr(s, needle) == NULL; i++) {
		free(s);
		usleep(10 * 1000);
		s = fake_read_log(dir);
	}
	return s;
}

#endif
