/*
 * mda.c -- the MDA target: one run of a delivery command per message
 * (procmail, maildrop, dovecot-lda), the message on its standard input.
 *
 * The command runs without a shell: the config splits it into words and
 * %F (the envelope sender, "" for the null sender) and %T (the
 * recipient) are substituted inside those words, each word staying one
 * argument whatever the address holds.  A command the config flagged as
 * needing a shell (pipes, redirections, variables, quotes) runs with
 * /bin/sh -c, and there %F and %T become the shell's quoted positional
 * parameters "$1" and "$2": an address never becomes shell text.
 *
 * The child gets: the message with LF line ends (forward/lf.h) and the
 * Received header on stdin, /dev/null as stdout, a pipe as stderr (its
 * last line becomes the reply), its own process group, every signal at
 * its default and unblocked, no descriptor of ours, and our environment
 * without the variables that hold secrets.
 *
 * Exit 0 after reading the whole message: delivered.  Exit 75
 * (EX_TEMPFAIL), death by a signal, the timeout (the whole process group
 * is killed), a command that cannot be started, or exit 0 without
 * reading the message to its end: temporary.  Any other exit: permanent.
 * The child is always reaped: no zombie.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward/lf.h"
#include "forward/target_impl.h"
#include "util.h"

#define MDA_TEMPFAIL	75		/* EX_TEMPFAIL */
#define MDA_CHUNK	65536
#define MDA_ERR_TAIL	1024		/* stderr bytes kept */

extern char **environ;

enum mda_result {
	MDA_DELIVERED = 0,
	MDA_TEMP,
	MDA_PERM,
};

/* One run: what mda_run needs. */
struct mda_job {
	char *const	*argv;		/* the command's words (not shell);
					   %F %T still in them */
	const char	*shell_cmd;	/* non-NULL: run with /bin/sh -c */
	const char	*from;		/* envelope sender; "" for <> */
	const char	*rcpt;		/* "" when none */
	const char	*received;	/* to prepend; may be NULL */
	int		 fd;		/* the spool file */
	int64_t		 timeout_ms;
};

/* What the parent tracks while the child runs. */
struct mda_io {
	pid_t			 pid;
	int			 in;		/* the child's stdin; -1 closed */
	int			 err;		/* its stderr; -1 at EOF */
	struct lf_reader	 r;
	unsigned char		 buf[MDA_CHUNK];
	size_t			 len, pos;	/* buf[pos..len) to write */
	bool			 fed;		/* everything read */
	bool			 cut;		/* the child closed its stdin
					   before the message's end */
	char			 tail[MDA_ERR_TAIL];
	size_t			 tlen;
	int			 status;
	bool			 exited;
	bool			 lost;		/* exited, but reaped by someone
					   else: status unknown */
};

/*
 * A word with %F and %T replaced by from and rcpt and %% by %; any other
 * % stays.  Returns a new string.
 */
static char *
mda_subst(const char *word, const char *from, const char *rcpt)
{
	size_t		 cap = strlen(word) + strlen(from) + strlen(rcpt) + 1;
	const char	*p;
	char		*out, *o;

	/* each %F can grow by strlen(from): count them */
	for (p = word; (p = strchr(p, '%')) != NULL && p[1] != '\0'; p += 2)
		cap += strlen(from) + strlen(rcpt);
	out = o = xmalloc(cap);
	for (p = word; *p != '\0'; p++) {
		if (p[0] == '%' && (p[1] == 'F' || p[1] == 'T')) {
			const char *v = p[1] == 'F' ? from : rcpt;

			memcpy(o, v, strlen(v));
			o += strlen(v);
			p++;
		} else if (p[0] == '%' && p[1] == '%') {
			*o++ = '%';
			p++;
		} else
			*o++ = *p;
	}
	*o = '\0';
	return out;
}

/*
 * A shell command with %F and %T turned into the positional parameters
 * $1 and $2, quoted for where they stand: "$1" outside quotes, $1 inside
 * double quotes, '"$1"' inside single quotes (closing and reopening
 * them).  %% becomes %.  Returns a new string.
 */
static char *
mda_shell_script(const char *cmd)
{
	enum { Q_NONE, Q_SINGLE, Q_DOUBLE } q = Q_NONE;
	const char	*p;
	char		*out = xmalloc(strlen(cmd) * 3 + 1), *o = out;

	for (p = cmd; *p != '\0'; p++) {
		if (p[0] == '%' && (p[1] == 'F' || p[1] == 'T')) {
			char n = p[1] == 'F' ? '1' : '2';

			if (q == Q_DOUBLE)
				o += sprintf(o, "$%c", n);
			else if (q == Q_SINGLE)
				o += sprintf(o, "'\"$%c\"'", n);
			else
				o += sprintf(o, "\"$%c\"", n);
			p++;
			continue;
		}
		if (p[0] == '%' && p[1] == '%') {
			*o++ = '%';
			p++;
			continue;
		}
		if (*p == '\\' && q != Q_SINGLE && p[1] != '\0') {
			*o++ = *p++;
			*o++ = *p;
			continue;
		}
		if (*p == '\'' && q != Q_DOUBLE)
			q = q == Q_SINGLE ? Q_NONE : Q_SINGLE;
		else if (*p == '"' && q != Q_SINGLE)
			q = q == Q_DOUBLE ? Q_NONE : Q_DOUBLE;
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

/* Whether an environment entry NAME=value holds a secret. */
static bool
mda_secret_var(const char *entry)
{
	static const char *const words[] = {
		"PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL",
	};
	char	name[256];
	size_t	i, n = strcspn(entry, "=");

	if (n >= sizeof name)
		n = sizeof name - 1;
	for (i = 0; i < n; i++)
		name[i] = (char)toupper((unsigned char)entry[i]);
	name[n] = '\0';
	for (i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strstr(name, words[i]) != NULL)
			return true;
	return false;
}

/* Our environment without secrets: a new array (the strings borrowed). */
static char **
mda_env(void)
{
	size_t	 n = 0, k = 0;
	char	**env;

	while (environ != NULL && environ[n] != NULL)
		n++;
	env = xcalloc(n + 1, sizeof *env);
	for (size_t i = 0; i < n; i++)
		if (!mda_secret_var(environ[i]))
			env[k++] = environ[i];
	env[k] = NULL;
	return env;
}

/*
 * The program to execute: cmd itself when it holds a '/', else the first
 * executable cmd in $PATH.  A new string, or NULL with err.
 */
static char *
mda_find(const char *cmd, struct mh_err *err)
{
	const char	*path = getenv("PATH"), *p, *e;
	char		*cand;
	struct stat	 st;

	if (strchr(cmd, '/') != NULL) {
		if (access(cmd, X_OK) == 0)
			return xstrdup(cmd);
		mh_err_set(err, MH_ERR_TEMP, "cannot run %s: %s", cmd,
		    strerror(errno));
		mh_err_scope(err, MH_SCOPE_TARGET);
		return NULL;
	}
	if (path == NULL || *path == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	/* an empty element (the current directory, to a shell) is skipped:
	   which program runs must not depend on where mailhaul was started */
	for (p = path; ; p = e + 1) {
		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		if (e > p) {
			cand = xasprintf("%.*s/%s", (int)(e - p), p, cmd);
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
			    access(cand, X_OK) == 0)
				return cand;
			free(cand);
		}
		if (*e == '\0')
			break;
	}
	mh_err_set(err, MH_ERR_TEMP, "cannot run %s: not found in PATH", cmd);
	mh_err_scope(err, MH_SCOPE_TARGET);
	return NULL;
}

/* Closes descriptors lo..hi (async-signal-safe). */
static void
close_from(unsigned lo, unsigned hi)
{
	long	max;

	if (lo > hi || syscall(SYS_close_range, lo, hi, 0U) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	for (long fd = lo; fd <= (long)hi && fd < (max > 0 ? max : 1024);
	    fd++)
		close((int)fd);
}

/*
 * In the child, between fork and exec (async-signal-safe calls only):
 * its own process group, default signals, the three descriptors, none
 * other.  On failure writes errno to report and exits.
 */
static void
mda_child(const char *prog, char *const *argv, char *const *envp, int in,
    int errw, int report)
{
	struct sigaction	sa;
	sigset_t		none;
	int			e, devnull, sig;

	setpgid(0, 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if ((devnull = open("/dev/null", O_WRONLY)) == -1 ||
	    dup2(in, 0) == -1 || dup2(devnull, 1) == -1 ||
	    dup2(errw, 2) == -1)
		goto fail;
	/* nothing of ours but the report pipe, which closes on exec */
	if (report > 3)
		close_from(3, (unsigned)report - 1);
	close_from((unsigned)report + 1, ~0U);
	child_limits_restore();
	execve(prog, argv, envp);
fail:
	e = errno;
	if (write(report, &e, sizeof e) < 0)
		_exit(127);
	_exit(127);
}

/* Keeps the last MDA_ERR_TAIL bytes the child wrote to stderr. */
static void
tail_add(struct mda_io *io, const char *p, size_t n)
{
	if (n >= sizeof io->tail) {
		p += n - sizeof io->tail;
		n = sizeof io->tail;
	}
	if (io->tlen + n > sizeof io->tail) {
		size_t drop = io->tlen + n - sizeof io->tail;

		memmove(io->tail, io->tail + drop, io->tlen - drop);
		io->tlen -= drop;
	}
	memcpy(io->tail + io->tlen, p, n);
	io->tlen += n;
}

/* The last non-empty line of the child's stderr, as the reply. */
static void
tail_reply(const struct mda_io *io, struct mh_err *err)
{
	size_t	end = io->tlen, start;

	while (end > 0 && (io->tail[end - 1] == '\n' ||
	    io->tail[end - 1] == '\r' || io->tail[end - 1] == ' '))
		end--;
	for (start = end; start > 0 && io->tail[start - 1] != '\n'; start--)
		;
	mh_err_reply(err, io->tail + start, end - start);
}

/* Reads what the child wrote to stderr until it would block. */
static void
drain(struct mda_io *io)
{
	char	b[4096];
	ssize_t	n;

	while (io->err != -1) {
		n = read(io->err, b, sizeof b);
		if (n > 0) {
			tail_add(io, b, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		close(io->err);		/* EOF or an error */
		io->err = -1;
	}
}

/*
 * Writes to the child's stdin until it would block; closes it at the
 * end of the message, or when the child stopped reading (EPIPE: cut,
 * and whatever its exit status, not a delivery).  0, or -1 with err when
 * the spool cannot be read.
 */
static int
feed(struct mda_io *io, struct mh_err *err)
{
	ssize_t	n;

	while (io->in != -1) {
		if (io->pos == io->len) {
			if (io->fed) {
				close(io->in);
				io->in = -1;
				break;
			}
			if ((n = lf_read(&io->r, io->buf, sizeof io->buf)) ==
			    -1) {
				mh_err_set(err, MH_ERR_LOCAL, "cannot read the "
				    "spool file: %s", strerror(errno));
				return -1;
			}
			io->fed = n == 0;
			io->len = (size_t)n;
			io->pos = 0;
			continue;
		}
		n = write(io->in, io->buf + io->pos, io->len - io->pos);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n == -1) {
			close(io->in);
			io->in = -1;
			io->cut = true;
			break;
		}
		io->pos += (size_t)n;
	}
	return 0;
}

/* Whether the child has exited (reaped into io->status). */
static bool
reaped(struct mda_io *io)
{
	pid_t	r;

	if (io->exited)
		return true;
	do
		r = waitpid(io->pid, &io->status, WNOHANG);
	while (r == -1 && errno == EINTR);
	if (r == io->pid || (r == -1 && errno == ECHILD))
		io->exited = true;
	if (r == -1 && errno == ECHILD)
		io->lost = true;	/* never read as "exited 0" */
	return io->exited;
}

/* Kills the child's process group: TERM, then KILL after a grace. */
static void
kill_group(struct mda_io *io)
{
	int64_t	until = now_ms() + 2000;
	pid_t	r;

	kill(-io->pid, SIGTERM);
	kill(io->pid, SIGTERM);
	while (!reaped(io) && now_ms() < until)
		usleep(10 * 1000);
	if (!io->exited) {
		kill(-io->pid, SIGKILL);
		kill(io->pid, SIGKILL);
		while ((r = waitpid(io->pid, &io->status, 0)) == -1 &&
		    errno == EINTR)
			;
		io->exited = true;
		io->lost = r == -1;
	}
	kill(-io->pid, SIGKILL);	/* what the group left behind */
}

/*
 * Feeds the child and collects its stderr until it exits or the
 * deadline passes.  0 when it exited, -1 with err on the timeout or a
 * spool failure (the group killed, the child reaped).
 */
static int
supervise(struct mda_io *io, int pidfd, int64_t timeout_ms,
    struct mh_err *err)
{
	struct pollfd	pf[3];
	int64_t		left, deadline = now_ms() + timeout_ms;
	nfds_t		nf;

	while (!reaped(io)) {
		if ((left = deadline - now_ms()) <= 0) {
			kill_group(io);
			mh_err_set(err, MH_ERR_TEMP, "the command did not "
			    "finish within %lld ms; its process group was "
			    "killed", (long long)timeout_ms);
			return -1;
		}
		nf = 0;
		if (io->in != -1)
			pf[nf++] = (struct pollfd){ io->in, POLLOUT, 0 };
		if (io->err != -1)
			pf[nf++] = (struct pollfd){ io->err, POLLIN, 0 };
		if (pidfd != -1)
			pf[nf++] = (struct pollfd){ pidfd, POLLIN, 0 };
		/* without a pidfd, look at the child every few ms */
		if (poll(pf, nf, pidfd != -1 ? (int)(left < 60000 ? left :
		    60000) : 5) == -1 && errno != EINTR) {
			mh_err_set(err, MH_ERR_TEMP, "poll: %s",
			    strerror(errno));
			kill_group(io);
			return -1;
		}
		if (feed(io, err) == -1) {
			kill_group(io);
			return -1;
		}
		drain(io);
	}
	/*
	 * Exited with the message not all written (a full pipe when it
	 * went): the write that would have met EPIPE is made now.  What
	 * still cannot be written (a process it left holds the pipe and
	 * does not read) was not read either.
	 */
	if (io->in != -1 && feed(io, err) == -1)
		return -1;
	if (io->in != -1) {
		close(io->in);
		io->in = -1;
		io->cut = true;
	}
	drain(io);
	return 0;
}

static void	mda_strv_free(char **);

/* The argv to execute and its program: a new array and strings. */
static char **
mda_argv(const struct mda_job *j, char **prog, struct mh_err *err)
{
	char	**argv;
	size_t	  n = 0, i;

	if (j->shell_cmd != NULL) {
		argv = xcalloc(7, sizeof *argv);
		argv[0] = xstrdup("/bin/sh");
		argv[1] = xstrdup("-c");
		argv[2] = mda_shell_script(j->shell_cmd);
		argv[3] = xstrdup("mailhaul-mda");	/* $0 */
		argv[4] = xstrdup(j->from);
		argv[5] = xstrdup(j->rcpt);
		*prog = xstrdup("/bin/sh");
		return argv;
	}
	while (j->argv[n] != NULL)
		n++;
	argv = xcalloc(n + 1, sizeof *argv);
	for (i = 0; i < n; i++)
		argv[i] = mda_subst(j->argv[i], j->from, j->rcpt);
	if ((*prog = mda_find(argv[0], err)) == NULL) {
		mda_strv_free(argv);
		return NULL;
	}
	return argv;
}

static void
mda_strv_free(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

/* What the exit status means; the reply is stderr's last line. */
static enum mda_result
mda_status(const struct mda_io *io, const char *prog, struct mh_err *err)
{
	int	st = io->status;

	if (io->lost) {
		/* SIGCHLD ignored, or a waitpid(-1) elsewhere: whatever it
		   said, the message cannot be counted delivered */
		mh_err_set(err, MH_ERR_TEMP, "%s: its exit status was lost "
		    "(reaped by someone else)", prog);
		return MDA_TEMP;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && io->cut) {
		/* "if test -d ~/Mail; then procmail; fi" exits 0 having
		   read nothing: a success that stored nothing must not let
		   the message leave its server */
		tail_reply(io, err);
		mh_err_set(err, MH_ERR_TEMP, "%s exited 0 without reading "
		    "the whole message: not counted delivered", prog);
		return MDA_TEMP;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return MDA_DELIVERED;
	tail_reply(io, err);
	if (WIFSIGNALED(st)) {
		mh_err_set(err, MH_ERR_TEMP, "%s was killed by signal %d",
		    prog, WTERMSIG(st));
		return MDA_TEMP;
	}
	if (WEXITSTATUS(st) == MDA_TEMPFAIL) {
		mh_err_set(err, MH_ERR_TEMP, "%s exited with status %d "
		    "(temporary failure)", prog, MDA_TEMPFAIL);
		return MDA_TEMP;
	}
	mh_err_set(err, MH_ERR_PERM, "%s exited with status %d", prog,
	    WEXITSTATUS(st));
	return MDA_PERM;
}

/* pipe2(O_CLOEXEC) without _GNU_SOURCE (we fork from one thread). */
static int
pipe_cloexec(int p[2])
{
	if (pipe(p) == -1)
		return -1;
	if (fcntl(p[0], F_SETFD, FD_CLOEXEC) == -1 ||
	    fcntl(p[1], F_SETFD, FD_CLOEXEC) == -1) {
		close(p[0]);
		close(p[1]);
		p[0] = p[1] = -1;
		return -1;
	}
	return 0;
}

/* Starts the child; 0 with io->pid, or -1 with err (nothing left). */
static int
mda_start(struct mda_io *io, const char *prog, char **argv, char **env,
    struct mh_err *err)
{
	int	in[2] = { -1, -1 }, er[2] = { -1, -1 }, rep[2] = { -1, -1 };
	int	e = 0, rc = -1;
	ssize_t	n;

	if (pipe_cloexec(in) == -1 || pipe_cloexec(er) == -1 ||
	    pipe_cloexec(rep) == -1) {
		mh_err_set(err, MH_ERR_TEMP, "pipe: %s", strerror(errno));
		goto out;
	}
	if ((io->pid = fork()) == -1) {
		mh_err_set(err, MH_ERR_TEMP, "fork: %s", strerror(errno));
		goto out;
	}
	if (io->pid == 0)
		mda_child(prog, argv, env, in[0], er[1], rep[1]);
	setpgid(io->pid, io->pid);	/* either side may win the race */
	close(rep[1]);
	rep[1] = -1;
	/* EOF: exec worked (the pipe closed on exec); else its errno */
	do
		n = read(rep[0], &e, sizeof e);
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)sizeof e) {
		while (waitpid(io->pid, NULL, 0) == -1 && errno == EINTR)
			;
		mh_err_set(err, MH_ERR_TEMP, "cannot run %s: %s", prog,
		    strerror(e));
		mh_err_scope(err, MH_SCOPE_TARGET);
		goto out;
	}
	io->in = in[1];
	io->err = er[0];
	in[1] = er[0] = -1;
	fcntl(io->in, F_SETFL, O_NONBLOCK);
	fcntl(io->err, F_SETFL, O_NONBLOCK);
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] != -1)
			close(in[i]);
		if (er[i] != -1)
			close(er[i]);
		if (rep[i] != -1)
			close(rep[i]);
	}
	return rc;
}

/*
 * Runs the command once with the message on its stdin.  The outcome;
 * for anything but MDA_DELIVERED err says why (MH_ERR_TEMP or
 * MH_ERR_PERM, the command's last stderr line as err->reply).
 */
static enum mda_result
mda_run(const struct mda_job *j, struct mh_err *err)
{
	struct mda_io	*io = xcalloc(1, sizeof *io);
	struct sigaction sa;
	enum mda_result	 res = MDA_TEMP;
	char		*prog = NULL, **argv, **env = NULL;
	int		 pidfd = -1;

	/* a command that stops reading must not kill us */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	io->in = io->err = -1;
	if ((argv = mda_argv(j, &prog, err)) == NULL)
		goto out;
	env = mda_env();
	lf_open(&io->r, j->received, j->fd);
	if (mda_start(io, prog, argv, env, err) == -1)
		goto out;
	pidfd = (int)syscall(SYS_pidfd_open, io->pid, 0);
	if (supervise(io, pidfd, j->timeout_ms, err) == 0)
		res = mda_status(io, prog, err);
	else if (err->cls == MH_ERR_TEMP)
		tail_reply(io, err);
	if (res != MDA_DELIVERED)
		mh_err_prefix(err, "mda");
out:
	if (pidfd != -1)
		close(pidfd);
	if (io->in != -1)
		close(io->in);
	if (io->err != -1)
		close(io->err);
	mda_strv_free(argv);
	free(env);
	free(prog);
	free(io);
	return res;
}

/* --- the target ops ------------------------------------------------ */

/*
 * The destinations: one run per recipient (%T), or one run when the
 * target names none (the destination is then the command).
 */
struct mda_target {
	struct target	 base;		/* first: target_impl.h */
};

static int
mda_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	struct mda_target	*mt;

	if (t->mda.argv == NULL || t->mda.argc == 0) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: no command",
		    t->name);
		return -1;
	}
	mt = xcalloc(1, sizeof *mt);
	*out = &mt->base;
	return 0;
}

/* `mailhaul check`: the program can be found and executed. */
static int
mda_connect(struct target *tg, struct mh_err *err)
{
	const struct cfg_target	*t = tg->cfg;
	char			*prog;

	if (t->mda.shell)
		prog = mda_find("/bin/sh", err);
	else
		prog = mda_find(t->mda.argv[0], err);
	free(prog);
	return prog == NULL ? -1 : 0;
}

/* One run for destination dest (recipient rcpt, "" for none). */
static enum mda_result
mda_one(struct target *tg, const struct target_msg *m, const char *rcpt,
    struct mh_err *err)
{
	const struct cfg_target	*t = tg->cfg;
	struct mda_job		 j;

	memset(&j, 0, sizeof j);
	if (t->mda.shell)
		j.shell_cmd = t->mda.argv[0];
	else
		j.argv = t->mda.argv;
	j.from = m->return_path != NULL ? m->return_path : "";
	j.rcpt = rcpt;
	j.received = t->received ? m->received : NULL;
	j.fd = m->fd;
	j.timeout_ms = (t->mda.timeout > 0 ? t->mda.timeout :
	    TARGET_MDA_TIMEOUT_S) * 1000;
	return mda_run(&j, err);
}

/*
 * Runs the command for every destination not done.  Mixed results as
 * LMTP's: TEMPFAIL when any run was temporary, else PERMFAIL, with the
 * first failure's text.  A command that cannot be started fails the
 * target as a whole; anything else is this message's.
 */
static enum target_outcome
mda_deliver(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	const struct cfg_target	*t = tg->cfg;
	const char		*dest;
	struct mh_err		 e;
	bool			 failed = false, temp = false;
	size_t			 i, n = t->smtp.nrecipients;

	for (i = 0; i < (n > 0 ? n : 1); i++) {
		dest = n > 0 ? t->smtp.recipients[i] : t->mda.command;
		if (target_msg_done(m, dest))
			continue;
		mh_err_clear(&e);
		switch (mda_one(tg, m, n > 0 ? dest : "", &e)) {
		case MDA_DELIVERED:
			target_result_add(res, dest);
			continue;
		case MDA_TEMP:
			temp = true;
			break;
		case MDA_PERM:
			break;
		}
		if (!failed)
			*err = e;
		failed = true;
		if (e.scope == MH_SCOPE_TARGET)
			break;		/* the command cannot be started */
	}
	if (!failed)
		return TARGET_DELIVERED;
	if (err->scope == MH_SCOPE_NONE)
		mh_err_scope(err, MH_SCOPE_MESSAGE);
	err->cls = temp ? MH_ERR_TEMP : MH_ERR_PERM;
	return temp ? TARGET_TEMPFAIL : TARGET_PERMFAIL;
}

static void
mda_close(struct target *tg)
{
	free(tg);
}

const struct target_ops mda_target_ops = {
	.name = "mda",
	.open = mda_open,
	.connect = mda_connect,
	.seen = NULL,			/* an MDA cannot be asked */
	.deliver = mda_deliver,
	.close = mda_close,
};
