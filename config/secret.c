/* secret.c -- resolving a password source (see config.h) */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"

#define SECRET_MAX	4096		/* longest first line we keep */
#define OUTPUT_MAX	(1024 * 1024)	/* we drain at most this much */
#define COMMAND_TIMEOUT	30000		/* ms */

/*
 * Keeps the first line of what is appended to buf: stops storing at the
 * first '\n'.  *done is set at the newline.  Returns -1 when the line is
 * longer than SECRET_MAX - 1 bytes: a secret is never silently cut.
 */
static int
first_line_add(char *buf, size_t *len, bool *done, const char *data,
    size_t n)
{
	size_t	i;

	for (i = 0; i < n && !*done; i++) {
		if (data[i] == '\n') {
			*done = true;
			break;
		}
		if (*len + 1 >= SECRET_MAX) {
			buf[*len] = '\0';
			return -1;
		}
		buf[(*len)++] = data[i];
	}
	buf[*len] = '\0';
	return 0;
}

/* Strips a trailing CR (files written on Windows). */
static void
strip_cr(char *buf, size_t *len)
{
	if (*len > 0 && buf[*len - 1] == '\r')
		buf[--*len] = '\0';
}

static char *
secret_from_file(const char *path, const char *what, struct mh_err *err)
{
	char	*buf, chunk[512];
	size_t	 len = 0;
	bool	 done = false;
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "password_file for %s: %s: %s",
		    what, path, strerror(errno));
		return NULL;
	}
	buf = xmalloc(SECRET_MAX);
	buf[0] = '\0';
	while (!done) {
		if ((n = read(fd, chunk, sizeof chunk)) == -1) {
			if (errno == EINTR)
				continue;
			mh_err_set(err, MH_ERR_LOCAL,
			    "password_file for %s: %s: %s", what, path,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		if (first_line_add(buf, &len, &done, chunk, (size_t)n) == -1) {
			mh_err_set(err, MH_ERR_LOCAL, "password_file for %s: "
			    "%s: the first line is longer than %d bytes", what,
			    path, SECRET_MAX - 1);
			goto fail;
		}
	}
	explicit_bzero(chunk, sizeof chunk);
	close(fd);
	strip_cr(buf, &len);
	if (len == 0) {
		mh_err_set(err, MH_ERR_LOCAL,
		    "password_file for %s: %s: the first line is empty",
		    what, path);
		secret_free(buf);
		return NULL;
	}
	return buf;
fail:
	explicit_bzero(chunk, sizeof chunk);
	close(fd);
	secret_free(buf);
	return NULL;
}

/*
 * The child: its own process group (a timeout kills the whole command),
 * stdin from /dev/null, stdout to the pipe, stderr as ours, and every
 * signal as a fresh process has it (a worker ignores SIGTERM and SIGINT;
 * the command must not inherit that).
 */
static void
child_exec(const char *command, int out)
{
	sigset_t	set;
	int		null, sig;

	setpgid(0, 0);
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);

	if ((null = open("/dev/null", O_RDONLY)) != -1) {
		dup2(null, STDIN_FILENO);
		if (null != STDIN_FILENO)
			close(null);
	}
	if (out != STDOUT_FILENO) {
		dup2(out, STDOUT_FILENO);
		close(out);
	}
	child_limits_restore();
	execl("/bin/sh", "sh", "-c", command, (char *)NULL);
	_exit(127);
}

static char *
secret_from_command(const char *command, const char *what, int timeout_ms,
    struct mh_err *err)
{
	char		*buf = NULL, chunk[512];
	size_t		 len = 0, total = 0;
	bool		 done = false, timed_out = false, too_much = false;
	bool		 too_long = false, reaped = false;
	int		 fds[2], status = 0, left;
	int64_t		 deadline;
	ssize_t		 n;
	pid_t		 pid;
	struct pollfd	 pfd;

	if (pipe(fds) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s: "
		    "pipe: %s", what, strerror(errno));
		return NULL;
	}
	fflush(NULL);
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	if ((pid = fork()) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s: "
		    "fork: %s", what, strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}
	if (pid == 0) {
		close(fds[0]);
		child_exec(command, fds[1]);
	}
	close(fds[1]);
	setpgid(pid, pid);	/* both sides: no race with the kill below */

	buf = xmalloc(SECRET_MAX);
	buf[0] = '\0';
	deadline = now_ms() + timeout_ms;
	/*
	 * Drain what follows the first line (so the command never dies of
	 * SIGPIPE) until EOF, or, once the first line is in, until the
	 * command itself has exited: a child it left in the background may
	 * hold the pipe open for ever.
	 */
	for (;;) {
		left = (int)(deadline - now_ms());
		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (done) {
			if (waitpid(pid, &status, WNOHANG) == pid) {
				reaped = true;
				break;
			}
			if (left > 50)
				left = 50;
		}
		pfd.fd = fds[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, left) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd.revents == 0)
			continue;
		if ((n = read(fds[0], chunk, sizeof chunk)) == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			break;
		}
		if (n == 0)
			break;
		if (!done && first_line_add(buf, &len, &done, chunk,
		    (size_t)n) == -1) {
			too_long = true;
			break;
		}
		if ((total += (size_t)n) > OUTPUT_MAX) {
			too_much = true;
			break;
		}
	}
	explicit_bzero(chunk, sizeof chunk);
	close(fds[0]);
	if (timed_out || too_much || too_long)
		kill(-pid, SIGKILL);
	while (!reaped && waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			mh_err_set(err, MH_ERR_LOCAL, "password_command for "
			    "%s: waitpid: %s", what, strerror(errno));
			goto fail;
		}
	}
	if (timed_out) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s timed "
		    "out after %d s", what, (timeout_ms + 999) / 1000);
		goto fail;
	}
	if (too_long) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s printed "
		    "a first line longer than %d bytes", what, SECRET_MAX - 1);
		goto fail;
	}
	if (too_much) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s printed "
		    "more than %d bytes", what, OUTPUT_MAX);
		goto fail;
	}
	if (WIFSIGNALED(status)) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s was "
		    "killed by signal %d", what, WTERMSIG(status));
		goto fail;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s exited "
		    "with status %d", what, WEXITSTATUS(status));
		goto fail;
	}
	strip_cr(buf, &len);
	if (len == 0) {
		mh_err_set(err, MH_ERR_LOCAL, "password_command for %s printed "
		    "an empty first line", what);
		goto fail;
	}
	return buf;
fail:
	secret_free(buf);
	return NULL;
}

char *
cfg_secret_get_timeout(const struct cfg_secret *s, const char *what,
    int timeout_ms, struct mh_err *err)
{
	mh_err_clear(err);
	if (s->password != NULL)
		return xstrdup(s->password);
	if (s->file != NULL)
		return secret_from_file(s->file, what, err);
	if (s->command != NULL)
		return secret_from_command(s->command, what, timeout_ms, err);
	return NULL;
}

char *
cfg_secret_get(const struct cfg_secret *s, const char *what,
    struct mh_err *err)
{
	return cfg_secret_get_timeout(s, what, COMMAND_TIMEOUT, err);
}
