/*
 * test-mda.c -- the MDA target's mechanics (forward/mda.c, included so
 * that its file-local functions can be driven directly).
 *
 * The program doubles as a well-behaved MDA: run as "test-mda --child
 * WHAT", it reports on stderr what a delivery command inherits
 * (descriptors, signals, environment) and exits 67, so the report
 * becomes the reply.
 */
#include <dirent.h>

/* the library's copy (target.c's table) keeps the name */
#define mda_target_ops	test_mda_target_ops
#include "forward/mda.c"
#undef mda_target_ops
#include "tests/unit/check.h"

static char	tmpdir[64];
static char	self[4096];

static void
setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test-mda.XXXXXX");
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

static int
spool(const void *data, size_t len)
{
	char	path[128];
	int	fd;

	snprintf(path, sizeof path, "%s/spool.XXXXXX", tmpdir);
	fd = mkstemp(path);
	CHECK(fd != -1);
	unlink(path);
	CHECK(write(fd, data, len) == (ssize_t)len);
	return fd;
}

static char *
slurp(const char *path, size_t *len)
{
	char	*buf = malloc(1 << 21);
	ssize_t	 n = -1;
	int	 fd = open(path, O_RDONLY);

	if (fd != -1) {
		n = read(fd, buf, (1 << 21) - 1);
		close(fd);
	}
	CHECK(n >= 0);
	buf[n < 0 ? 0 : n] = '\0';
	*len = n < 0 ? 0 : (size_t)n;
	return buf;
}

/* A job with the given words (NULL-terminated) and a 10 s timeout. */
static struct mda_job
job(char *const *argv, int fd)
{
	struct mda_job	j = { argv, NULL, "sender@example.org",
	    "me@example.org", NULL, fd, 10000 };

	return j;
}

static void
t_subst(void)
{
	char	*s;

	s = mda_subst("-f%F", "a@b", "c@d");
	CHECK_STR(s, "-fa@b");
	free(s);
	s = mda_subst("%T%%F%x%", "a b; rm -rf /", "c@d");
	CHECK_STR(s, "c@d%F%x%");
	free(s);
	s = mda_subst("%F%F%F%T", "xxxxxxxxxx", "yyyyyyyyyy");
	CHECK_STR(s, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyyyyyyyyyy");
	free(s);
	s = mda_subst("%F", "", "");
	CHECK_STR(s, "");
	free(s);
}

static void
t_shell_script(void)
{
	static const char *const cases[][2] = {
		{ "procmail -f %F", "procmail -f \"$1\"" },
		{ "x \"-f%F\" '%T' %%", "x \"-f$1\" ''\"$2\"'' %" },
		{ "a 'b\"' %F \"c'\" %T", "a 'b\"' \"$1\" \"c'\" \"$2\"" },
		{ "a \\\" %F", "a \\\" \"$1\"" },
		{ "a \"\\\"%F\"", "a \"\\\"$1\"" },
	};
	size_t	 i;
	char	*s;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		s = mda_shell_script(cases[i][0]);
		CHECK_STR(s, cases[i][1]);
		free(s);
	}
}

/* Through a real shell: an address with shell syntax stays data. */
static void
t_shell_runs(void)
{
	struct mda_job	 j;
	struct mh_err	 err;
	char		 cmd[600], out[200], *data;
	size_t		 len;
	int		 fd;

	setup();
	fd = spool("a\r\n", 3);
	snprintf(out, sizeof out, "%s/out", tmpdir);
	snprintf(cmd, sizeof cmd, "printf '%%s|%%s' %%F '%%T' > %s && "
	    "cat >> %s", out, out);
	j = job(NULL, fd);
	j.shell_cmd = cmd;
	j.from = "x$(touch /tmp/pwned)'\"`id`";
	j.rcpt = "me@example.org; exit 1";
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_DELIVERED);
	data = slurp(out, &len);
	CHECK_STR(data, "x$(touch /tmp/pwned)'\"`id`|me@example.org; "
	    "exit 1a\n");
	free(data);
	close(fd);
	teardown();
}

static void
t_env_filter(void)
{
	CHECK(mda_secret_var("MAILHAUL_PASSWORD=x"));
	CHECK(mda_secret_var("imap_passwd=x"));
	CHECK(mda_secret_var("OAUTH_TOKEN=x"));
	CHECK(mda_secret_var("Client_Secret=x"));
	CHECK(!mda_secret_var("HOME=/root"));
	CHECK(!mda_secret_var("PATH=/bin"));
	CHECK(!mda_secret_var("MAILHAUL_ACCOUNT=work"));
}

/* The message reaches the command with LF ends and the Received header;
   %T is one argument (a path with a space) found through PATH. */
static void
t_delivered(void)
{
	static const char msg[] = "Subject: s\r\n\r\nline\rx\r\n\0.\r\n";
	static const char want[] = "Received: r\n\tx\nSubject: s\n\nline\rx\n"
	    "\0.\n";
	char *const	 argv[] = { "tee", "%T", NULL };
	struct mda_job	 j;
	struct mh_err	 err;
	char		 out[200], *data;
	size_t		 len;
	int		 fd;

	setup();
	fd = spool(msg, sizeof msg - 1);
	snprintf(out, sizeof out, "%s/the out", tmpdir);
	j = job(argv, fd);
	j.rcpt = out;
	j.received = "Received: r\r\n\tx\r\n";
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_DELIVERED);
	CHECK(err.cls == MH_ERR_NONE);
	data = slurp(out, &len);
	CHECK(len == sizeof want - 1 && memcmp(data, want, len) == 0);
	free(data);
	close(fd);
	teardown();
}

/* A big message to a command that reads none of it and exits 0 ("if
   test -d ~/Mail; then procmail; fi" without ~/Mail): no SIGPIPE for
   us, and not delivered -- it stored nothing.  One that reads it all
   and exits 0 is a delivery, however it throws it away. */
static void
t_stops_reading(void)
{
	char *const	 none[] = { "/bin/true", NULL };
	char *const	 all[] = { "/bin/sh", "-c", "cat >/dev/null", NULL };
	struct mda_job	 j;
	struct mh_err	 err;
	char		*big = malloc(4 << 20);
	int		 fd;

	setup();
	memset(big, 'x', 4 << 20);
	fd = spool(big, 4 << 20);
	free(big);
	j = job(none, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "exited 0 without reading the whole message");
	j = job(all, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_DELIVERED);
	close(fd);
	teardown();
}

static void
t_exit_statuses(void)
{
	char *const	 tmp[] = { "/bin/sh", "-c", "echo busy >&2; exit 75",
	    NULL };
	char *const	 perm[] = { "/bin/sh", "-c", "echo first >&2; "
	    "printf 'no such user: %s\\n\\n' \"$0\" >&2; exit 67", "%T", NULL };
	char *const	 sig[] = { "/bin/sh", "-c", "kill -SEGV $$", NULL };
	char *const	 one[] = { "/bin/sh", "-c", "exit 1", NULL };
	struct mda_job	 j;
	struct mh_err	 err;
	int		 fd;

	setup();
	fd = spool("a\r\n", 3);
	j = job(tmp, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "status 75");
	CHECK_STR(err.reply, "busy");
	j = job(perm, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_PERM);
	CHECK(err.cls == MH_ERR_PERM);
	CHECK_CONTAINS(err.msg, "status 67");
	CHECK_STR(err.reply, "no such user: me@example.org");
	j = job(sig, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK_CONTAINS(err.msg, "signal 11");
	j = job(one, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_PERM);
	CHECK_STR(err.reply, "");
	/* every child reaped */
	CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
	close(fd);
	teardown();
}

/* A child reaped by someone else (here the kernel: SIGCHLD ignored) has
   no exit status to read: never "exited 0", so not delivered. */
static void
t_status_lost(void)
{
	char *const	 ok[] = { "/bin/sh", "-c", "cat >/dev/null", NULL };
	struct sigaction sa, old;
	struct mda_job	 j;
	struct mh_err	 err;
	int		 fd;

	setup();
	fd = spool("a\r\n", 3);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	CHECK(sigaction(SIGCHLD, &sa, &old) == 0);
	j = job(ok, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "exit status was lost");
	CHECK(sigaction(SIGCHLD, &old, NULL) == 0);
	/* the same command, reaped by us: delivered */
	j = job(ok, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_DELIVERED);
	close(fd);
	teardown();
}

/* The timeout kills the whole process group and reaps the child. */
static void
t_timeout(void)
{
	char		 script[300], pidfile[200], buf[32];
	char *const	 argv[] = { "/bin/sh", "-c", script, NULL };
	struct mda_job	 j;
	struct mh_err	 err;
	int64_t		 t0;
	int		 fd, pfd;
	pid_t		 bg;
	ssize_t		 n;

	setup();
	snprintf(pidfile, sizeof pidfile, "%s/pid", tmpdir);
	snprintf(script, sizeof script, "sleep 60 & echo $! > %s; "
	    "echo waiting >&2; wait", pidfile);
	fd = spool("a\r\n", 3);
	j = job(argv, fd);
	j.timeout_ms = 500;
	t0 = now_ms();
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK(now_ms() - t0 < 5000);
	CHECK_CONTAINS(err.msg, "500 ms");
	CHECK_STR(err.reply, "waiting");
	CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
	/* the grandchild went with its group */
	pfd = open(pidfile, O_RDONLY);
	CHECK(pfd != -1);
	n = read(pfd, buf, sizeof buf - 1);
	CHECK(n > 0);
	buf[n > 0 ? n : 0] = '\0';
	close(pfd);
	bg = (pid_t)atoi(buf);
	CHECK(bg > 0);
	for (int i = 0; i < 100 && bg > 0 && kill(bg, 0) == 0; i++) {
		char	stat[64], *st;
		size_t	len;

		/* a zombie waiting for init counts as gone */
		snprintf(stat, sizeof stat, "/proc/%d/stat", (int)bg);
		st = slurp(stat, &len);
		if (len > 0 && strstr(st, ") Z ") != NULL) {
			free(st);
			break;
		}
		free(st);
		usleep(20 * 1000);
		if (i == 99)
			CHECK(!"the background sleep survived");
	}
	close(fd);
	teardown();
}

/* A command that cannot be started is temporary (fix it, retry). */
static void
t_cannot_start(void)
{
	char *const	 missing[] = { "/nonexistent/procmail", NULL };
	char *const	 nopath[] = { "no-such-mda-anywhere", NULL };
	char		 noexec[200];
	char *const	 notexec[] = { noexec, NULL };
	struct mda_job	 j;
	struct mh_err	 err;
	int		 fd;

	setup();
	fd = spool("a\r\n", 3);
	j = job(missing, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK_CONTAINS(err.msg, "/nonexistent/procmail");
	j = job(nopath, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK_CONTAINS(err.msg, "not found in PATH");
	/* executable but not a program: exec itself fails */
	snprintf(noexec, sizeof noexec, "%s/x", tmpdir);
	CHECK(close(open(noexec, O_WRONLY | O_CREAT, 0700)) == 0);
	CHECK(truncate(noexec, 0) == 0);
	{
		int	w = open(noexec, O_WRONLY);

		CHECK(write(w, "\177ELF junk", 9) == 9);
		close(w);
	}
	j = job(notexec, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_TEMP);
	CHECK_CONTAINS(err.msg, "cannot run");
	CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
	close(fd);
	teardown();
}

/* What the command inherits: 0 1 2 only, default signals, no secret. */
static void
t_inherits_nothing(void)
{
	char *const	 argv[] = { self, "--child", NULL };
	struct mda_job	 j;
	struct mh_err	 err;
	int		 fd, leak;

	setup();
	fd = spool("a\r\n", 3);
	leak = dup(fd);			/* not close-on-exec */
	CHECK(leak != -1);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	{
		sigset_t	block;

		sigemptyset(&block);
		sigaddset(&block, SIGUSR1);
		sigprocmask(SIG_BLOCK, &block, NULL);
	}
	setenv("MAILHAUL_PASSWORD", "hunter2", 1);
	setenv("KEEP_ME", "yes", 1);
	j = job(argv, fd);
	mh_err_clear(&err);
	CHECK(mda_run(&j, &err) == MDA_PERM);
	CHECK_STR(err.reply, "fds 0 1 2; signals default; mask empty; "
	    "env clean; pgrp own");
	close(leak);
	close(fd);
	teardown();
}

/* Run as the delivery command by t_inherits_nothing. */
static int
child_report(void)
{
	struct dirent		*de;
	struct sigaction	 sa;
	sigset_t		 mask;
	DIR			*d = opendir("/proc/self/fd");
	char			 fds[1024] = "fds";
	int			 sig;
	bool			 dflt = true;

	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
			continue;
		if (strlen(fds) + strlen(de->d_name) + 2 < sizeof fds) {
			strcat(fds, " ");
			strcat(fds, de->d_name);
		}
	}
	if (d != NULL)
		closedir(d);
	/* the ones mailhaul (and the test) ignore; a sanitizer's runtime
	   sets handlers of its own (SEGV, BUS...) before main */
	const int	 ours[] = { SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGUSR1 };

	for (size_t k = 0; k < sizeof ours / sizeof ours[0]; k++) {
		sig = ours[k];
		if (sigaction(sig, NULL, &sa) == 0 &&
		    sa.sa_handler != SIG_DFL)
			dflt = false;
	}
	sigprocmask(SIG_BLOCK, NULL, &mask);
	fprintf(stderr, "something first\n%s; signals %s; mask %s; env %s; "
	    "pgrp %s\n", fds, dflt ? "default" : "changed",
	    sigismember(&mask, SIGUSR1) ? "blocked" : "empty",
	    getenv("MAILHAUL_PASSWORD") == NULL && getenv("KEEP_ME") != NULL ?
	    "clean" : "leaked", getpgrp() == getpid() ? "own" : "shared");
	return 67;
}

int
main(int argc, char **argv)
{
	ssize_t	n;

	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return child_report();
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	self[n > 0 ? n : 0] = '\0';
	RUN(t_subst);
	RUN(t_shell_script);
	RUN(t_shell_runs);
	RUN(t_env_filter);
	RUN(t_delivered);
	RUN(t_stops_reading);
	RUN(t_exit_statuses);
	RUN(t_status_lost);
	RUN(t_timeout);
	RUN(t_cannot_start);
	RUN(t_inherits_nothing);
	return check_done();
}
