/*
 * scheduler.c -- `mailhaul run`; see scheduler.h.
 *
 * One process, no threads: poll() on a self-pipe (signals) and on the
 * IDLE watchers' pipes, waitpid(WNOHANG) for workers, timers on the
 * monotonic clock.  Each pass runs in a fork()ed worker that opens its
 * own state database and reports back through a pipe (one struct
 * worker_report, written once before _exit); the parent never opens
 * SQLite while children exist.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "fetch/idle.h"
#include "fetch/service/scheduler.h"
#include "fetch/state/seen.h"
#include "fetch/engine/sync.h"
#include "log.h"

#define BACKOFF_CAP_S		3600
#define STOP_GRACE_MS		30000
#define IDLE_DEBOUNCE_MS	250
#define NOTIFY_MAX		16
#define NOTIFY_DEADLINE_MS	30000
#define WATCHER_RETRY_MS	30000
#define MIN_INTERVAL_S		1

/* The self-pipe's write end, for the signal handler (a signal flag). */
static volatile sig_atomic_t sig_fd = -1;

enum wexit {		/* a worker's exit status byte */
	WEXIT_OK = 0,
	WEXIT_FAILED = 10,	/* + enum mh_err_class */
	WEXIT_CRASH_HOOK = 99,	/* sync_step's MAILHAUL_CRASH_AT_STEP */
};

struct worker_report {
	int			rc;
	enum mh_err_class	cls;
	struct seen_run_counts	counts;
	char			msg[1100];
};

struct acct {
	char		*name;
	const struct cfg_account *cfg;	/* borrowed; NULL once removed */
	int64_t		 next_ms;	/* the next scheduled pass */
	int64_t		 trigger_ms;	/* IDLE or SIGUSR1: a pass soon */
	unsigned	 failures;
	bool		 backoff;	/* next_ms is a backoff time */
	bool		 auth_failed;
	/* the running pass */
	pid_t		 worker;
	int		 report_fd;
	int64_t		 deadline_ms;
	int64_t		 limit_ms;	/* the deadline's length */
	bool		 killed;
	/* the last pass */
	char		 last[16];
	time_t		 last_end;
	unsigned	 last_delivered;
	/* IDLE */
	pid_t		 watcher;
	int		 watch_fd;
	char		 wbuf[1024];
	size_t		 wlen;
	int		 idle_folders, idle_up, idle_unsupported;
	bool		 idle_auth;
	int64_t		 watcher_retry_ms;
};

struct notifier {
	pid_t	pid;
	int64_t	deadline_ms;
};

struct sched {
	struct config	*cfg;
	int		 verbosity;
	char		*dir;		/* the state directory */
	int		 lockfd;
	struct acct	*accts;
	size_t		 nacct;
	unsigned	 running;
	int		 sigpipe[2];
	bool		 stopping;
	int64_t		 stop_deadline_ms;
	bool		 dirty;
	time_t		 started;
	int64_t		 worker_deadline_ms;	/* 0: per account */
	int64_t		 stop_grace_ms;
	struct notifier	 notif[NOTIFY_MAX];
};

/* ---- small helpers ------------------------------------------------------- */

static void
on_signal(int sig)
{
	int		saved = errno;
	unsigned char	c = (unsigned char)sig;

	if (sig_fd >= 0 && write(sig_fd, &c, 1) == -1) {
		/* a full pipe already holds a wake-up */
	}
	errno = saved;
}

/* pipe2() is a GNU extension: pipe, then close-on-exec (and O_NONBLOCK
   on the read end when asked). */
static int
cloexec_pipe(int p[2], bool nonblock)
{
	if (pipe(p) == -1)
		return -1;
	for (int i = 0; i < 2; i++)
		if (fcntl(p[i], F_SETFD, FD_CLOEXEC) == -1 ||
		    (nonblock && fcntl(p[i], F_SETFL, O_NONBLOCK) == -1)) {
			close(p[0]);
			close(p[1]);
			return -1;
		}
	return 0;
}

static int64_t
env_ms(const char *name, int64_t dflt)
{
	const char	*e = getenv(name);
	double		 s;

	if (e != NULL && (s = atof(e)) > 0)
		return (int64_t)(s * 1000.0);
	return dflt;
}


static int64_t
interval_s(const struct sched *s, const struct cfg_account *a)
{
	int64_t	i = a->interval > 0 ? a->interval : s->cfg->general.interval;

	return i < MIN_INTERVAL_S ? MIN_INTERVAL_S : i;
}

/* interval +-10%, in ms. */
static int64_t
jittered(int64_t secs)
{
	int64_t	ms = secs * 1000, span = ms / 5;

	if (span <= 0)
		return ms;
	return ms - span / 2 + (int64_t)(random() % (long)(span + 1));
}

static time_t
wall(int64_t mono_ms)
{
	return time(NULL) + (time_t)((mono_ms - now_ms()) / 1000);
}

static void
block_signals(sigset_t *old)
{
	sigset_t all;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, old);
}

/*
 * In a new child: default or ignored signals, nothing of the parent's
 * loop, and death with the parent (watchers).  Then unblocks.
 */
/* A worker's SIGTERM: finish the message in flight, then end the pass. */
static void
on_worker_term(int sig)
{
	(void)sig;
	sync_request_stop();
}

static void
child_setup(struct sched *s, bool worker, const sigset_t *old)
{
	signal(SIGCHLD, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	/* a worker finishes the message in flight (sync_request_stop); the
	   parent decides when to kill */
	signal(SIGTERM, worker ? on_worker_term : SIG_DFL);
	signal(SIGINT, worker ? SIG_IGN : SIG_DFL);
	sig_fd = -1;
	close(s->sigpipe[0]);
	close(s->sigpipe[1]);
	if (s->lockfd != -1)
		close(s->lockfd);
	for (size_t i = 0; i < s->nacct; i++) {
		if (s->accts[i].watch_fd != -1)
			close(s->accts[i].watch_fd);
		if (s->accts[i].report_fd != -1)
			close(s->accts[i].report_fd);
	}
	if (!worker)
		prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigprocmask(SIG_SETMASK, old, NULL);
}

/* ---- service.json ---------------------------------------------------------- */

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static const char *
idle_word(const struct acct *a)
{
	if (a->cfg == NULL || !a->cfg->idle ||
	    a->cfg->protocol != CFG_PROTO_IMAP)
		return "off";
	if (a->idle_folders > 0 && a->idle_unsupported >= a->idle_folders)
		return "unsupported";
	if (a->watcher == 0)
		return "down";
	if (a->idle_folders == 0 || a->idle_up == 0)
		return a->idle_auth ? "down" : "connecting";
	if (a->idle_up + a->idle_unsupported < a->idle_folders)
		return "partly connected";
	return "connected";
}

static void
write_status(struct sched *s)
{
	char	*tmp = xasprintf("%s/service.json.tmp", s->dir);
	char	*path = xasprintf("%s/service.json", s->dir);
	FILE	*f;
	int	 fd;

	s->dirty = false;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		log_warn("service: cannot write %s: %s", tmp, strerror(errno));
		if (fd != -1)
			close(fd);
		goto out;
	}
	fprintf(f, "{\"pid\":%ld,\"started\":%lld,\"updated\":%lld,"
	    "\"stopping\":%s,\"running\":%u,\"accounts\":[\n", (long)getpid(),
	    (long long)s->started, (long long)time(NULL),
	    s->stopping ? "true" : "false", s->running);
	for (size_t i = 0, k = 0; i < s->nacct; i++) {
		const struct acct *a = &s->accts[i];

		if (a->cfg == NULL)
			continue;
		fprintf(f, "%s{\"account\":", k++ ? ",\n" : "");
		json_str(f, a->name);
		fprintf(f, ",\"running\":%s,\"next\":%lld,\"failures\":%u,"
		    "\"backoff_until\":%lld,\"auth_failed\":%s,\"idle\":\"%s\","
		    "\"idle_folders\":%d,\"idle_connected\":%d,"
		    "\"last_result\":\"%s\",\"last_end\":%lld,"
		    "\"last_delivered\":%u}",
		    a->worker > 0 ? "true" : "false",
		    a->worker > 0 || s->stopping ? 0LL :
		    (long long)wall(a->trigger_ms && a->trigger_ms < a->next_ms ?
		    a->trigger_ms : a->next_ms),
		    a->failures, a->backoff ? (long long)wall(a->next_ms) : 0LL,
		    a->auth_failed ? "true" : "false", idle_word(a),
		    a->idle_folders, a->idle_up, a->last,
		    (long long)a->last_end, a->last_delivered);
	}
	fprintf(f, "\n]}\n");
	if (fclose(f) != 0 || rename(tmp, path) == -1)
		log_warn("service: cannot write %s: %s", path, strerror(errno));
out:
	free(tmp);
	free(path);
}

/* ---- accounts ---------------------------------------------------------------- */

static struct acct *
find_acct(struct acct *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].name != NULL && strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static void
acct_init(struct acct *a, const char *name)
{
	memset(a, 0, sizeof *a);
	a->name = xstrdup(name);
	a->report_fd = -1;
	a->watch_fd = -1;
}

static void
stop_watcher(struct acct *a)
{
	if (a->watcher > 0)
		kill(a->watcher, SIGTERM);
	a->watcher = 0;
	if (a->watch_fd != -1)
		close(a->watch_fd);
	a->watch_fd = -1;
	a->wlen = 0;
	a->idle_folders = a->idle_up = a->idle_unsupported = 0;
	a->idle_auth = false;
}

/*
 * (Re)builds the account table for s->cfg: enabled accounts keep their
 * state by name; removed ones stay only while their worker runs.
 */
static void
build_accounts(struct sched *s)
{
	const struct config *cfg = s->cfg;
	struct acct	*old = s->accts, *v, *o;
	size_t		 nold = s->nacct, n = 0;
	int64_t		 now = now_ms();

	v = xcalloc(cfg->naccounts + nold + 1, sizeof *v);
	for (size_t i = 0; i < cfg->naccounts; i++) {
		const struct cfg_account *c = &cfg->accounts[i];
		int64_t	first;

		if (!c->enabled)
			continue;
		if ((o = find_acct(old, nold, c->name)) != NULL) {
			v[n] = *o;
			o->name = NULL;		/* moved */
			o->watch_fd = o->report_fd = -1;
			o->worker = o->watcher = 0;
			first = now + interval_s(s, c) * 1000;
			if (v[n].auth_failed || (!v[n].backoff &&
			    v[n].next_ms > first))
				v[n].next_ms = v[n].auth_failed ? now : first;
		} else {
			acct_init(&v[n], c->name);
			v[n].next_ms = now;	/* first pass right at start */
		}
		v[n].cfg = c;
		n++;
	}
	for (size_t i = 0; i < nold; i++) {
		o = &old[i];
		if (o->name == NULL)
			continue;
		if (o->worker > 0) {	/* removed, still running */
			v[n] = *o;
			v[n].cfg = NULL;
			stop_watcher(&v[n]);
			n++;
			continue;
		}
		stop_watcher(o);
		free(o->name);
	}
	free(old);
	s->accts = v;
	s->nacct = n;
	s->dirty = true;
}

/* ---- workers -------------------------------------------------------------- */

static void __attribute__((noreturn))
worker_main(struct sched *s, struct acct *a, int wfd)
{
	struct worker_report	 rep;
	struct sync_opts	 opts;
	struct sync_result	 res;
	struct seen_db		*db = NULL;
	const char		*ab = getenv("MAILHAUL_TEST_WORKER_ABORT");
	char			 buf[1200];

	if (ab != NULL && strcmp(ab, a->name) == 0)
		abort();
	memset(&rep, 0, sizeof rep);
	memset(&opts, 0, sizeof opts);
	memset(&res, 0, sizeof res);
	opts.mode = SYNC_NORMAL;
	opts.lock_wait_ms = 0;		/* busy: skip, the next pass comes */
	mh_err_clear(&res.err);
	if (seen_open(s->cfg->general.state, &db, &res.err) == -1) {
		rep.rc = -1;
	} else {
		rep.rc = sync_account(s->cfg, a->cfg, db, &opts, &res);
		seen_close(db);
	}
	rep.cls = res.err.cls;
	rep.counts = res.counts;
	snprintf(rep.msg, sizeof rep.msg, "%s",
	    mh_err_str(&res.err, buf, sizeof buf));
	if (write(wfd, &rep, sizeof rep) != (ssize_t)sizeof rep) {
		/* the exit status still says how it went */
	}
	_exit(rep.rc == 0 ? WEXIT_OK : WEXIT_FAILED + (int)rep.cls);
}

static void
start_worker(struct sched *s, struct acct *a)
{
	sigset_t old;
	int	 p[2];
	pid_t	 pid;

	if (cloexec_pipe(p, true) == -1) {
		log_error("%s: cannot start a pass: pipe: %s", a->name,
		    strerror(errno));
		a->next_ms = now_ms() + 10000;
		return;
	}
	block_signals(&old);
	if ((pid = fork()) == 0) {
		child_setup(s, true, &old);
		close(p[0]);
		worker_main(s, a, p[1]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	if (pid == -1) {
		log_error("%s: cannot start a pass: fork: %s", a->name,
		    strerror(errno));
		close(p[0]);
		a->next_ms = now_ms() + 10000;
		return;
	}
	log_debug("%s: pass started (worker %ld)", a->name, (long)pid);
	a->worker = pid;
	a->report_fd = p[0];
	a->killed = false;
	a->trigger_ms = 0;
	a->limit_ms = s->worker_deadline_ms;
	if (a->limit_ms == 0) {		/* the account's timeout x 10 */
		a->limit_ms = (a->cfg->timeout > 0 ? a->cfg->timeout :
		    s->cfg->general.timeout) * 10 * 1000;
		if (a->limit_ms < 60000)
			a->limit_ms = 60000;
	}
	a->deadline_ms = now_ms() + a->limit_ms;
	s->running++;
	s->dirty = true;
}

static void
notify(struct sched *s, const struct acct *a, unsigned count)
{
	const char	*cmd = s->cfg->general.notify_command;
	struct notifier	*slot = NULL;
	sigset_t	 old;
	char		 num[32];
	pid_t		 pid;
	int		 fd;

	if (cmd == NULL || *cmd == '\0')
		return;
	for (size_t i = 0; i < NOTIFY_MAX; i++)
		if (s->notif[i].pid == 0)
			slot = &s->notif[i];
	if (slot == NULL) {
		log_warn("%s: notify_command skipped: %d still running",
		    a->name, NOTIFY_MAX);
		return;
	}
	snprintf(num, sizeof num, "%u", count);
	block_signals(&old);
	if ((pid = fork()) == 0) {
		child_setup(s, false, &old);
		prctl(PR_SET_PDEATHSIG, 0);
		setpgid(0, 0);
		signal(SIGHUP, SIG_DFL);
		signal(SIGUSR1, SIG_DFL);
		if ((fd = open("/dev/null", O_RDWR)) != -1) {
			dup2(fd, STDIN_FILENO);
			if (fd > STDERR_FILENO)
				close(fd);
		}
		setenv("MAILHAUL_ACCOUNT", a->name, 1);
		setenv("MAILHAUL_COUNT", num, 1);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		log_warn("%s: notify_command: fork: %s", a->name,
		    strerror(errno));
		return;
	}
	slot->pid = pid;
	slot->deadline_ms = now_ms() + NOTIFY_DEADLINE_MS;
}

/* A pass ended: read its report, log, reschedule. */
static void
worker_done(struct sched *s, struct acct *a, int st)
{
	struct worker_report rep;
	int64_t	 now = now_ms(), ival, delay;
	ssize_t	 n;
	char	 why[1200];
	bool	 failed = true;
	int	 code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;

	memset(&rep, 0, sizeof rep);
	n = read(a->report_fd, &rep, sizeof rep);
	close(a->report_fd);
	a->report_fd = -1;
	a->worker = 0;
	s->running--;
	s->dirty = true;
	a->last_end = time(NULL);
	a->last_delivered = 0;
	if (a->cfg == NULL)		/* removed by a reload */
		return;
	ival = interval_s(s, a->cfg);
	if (WIFSIGNALED(st)) {
		if (a->killed)
			snprintf(why, sizeof why, "killed: the pass was still "
			    "running after %lld s", (long long)
			    (a->limit_ms / 1000));
		else
			snprintf(why, sizeof why, "the worker crashed (signal "
			    "%d)", WTERMSIG(st));
		snprintf(a->last, sizeof a->last, "%s", a->killed ? "killed" :
		    "crashed");
		log_error("%s: %s", a->name, why);
	} else if (n != (ssize_t)sizeof rep) {
		snprintf(a->last, sizeof a->last, "crashed");
		log_error("%s: the worker ended with status %d and no report",
		    a->name, code);
	} else if (rep.rc == 0) {
		failed = false;
		snprintf(a->last, sizeof a->last, "ok");
		a->last_delivered = rep.counts.delivered;
		if (rep.counts.delivered > 0 || rep.counts.failed > 0 ||
		    rep.counts.tempfailed > 0)
			log_info("%s: %u delivered, %u deleted, %u refused, "
			    "%u to retry", a->name, rep.counts.delivered,
			    rep.counts.deleted, rep.counts.failed,
			    rep.counts.tempfailed);
		else
			log_debug("%s: nothing new", a->name);
		if (a->failures > 0 || a->auth_failed)
			log_info("%s: working again", a->name);
		a->failures = 0;
		a->auth_failed = false;
		if (rep.counts.delivered > 0)
			notify(s, a, rep.counts.delivered);
	} else if (rep.cls == MH_ERR_BUSY) {
		failed = false;
		snprintf(a->last, sizeof a->last, "busy");
		log_info("%s: %s; trying again at the next pass", a->name,
		    rep.msg);
	} else if (rep.cls == MH_ERR_AUTH) {
		snprintf(a->last, sizeof a->last, "failed");
		if (!a->auth_failed)
			log_error("%s: login refused: %s -- fix the "
			    "credentials and reload (SIGHUP); retrying every "
			    "%lld min meanwhile", a->name, rep.msg, (long long)
			    (ival > BACKOFF_CAP_S ? ival : BACKOFF_CAP_S) / 60);
		a->auth_failed = true;
		a->failures++;
		a->backoff = true;
		a->next_ms = now + (ival > BACKOFF_CAP_S ? ival :
		    BACKOFF_CAP_S) * 1000;
		return;
	} else {
		snprintf(a->last, sizeof a->last, "failed");
		log_warn("%s: pass failed (%s): %s", a->name,
		    mh_err_class_name(rep.cls), rep.msg);
	}
	if (!failed) {
		a->backoff = false;
		a->next_ms = now + jittered(ival);
		return;
	}
	a->failures++;
	delay = ival;
	for (unsigned i = 0; i < a->failures && delay < BACKOFF_CAP_S; i++)
		delay *= 2;
	if (delay > (ival > BACKOFF_CAP_S ? ival : BACKOFF_CAP_S))
		delay = ival > BACKOFF_CAP_S ? ival : BACKOFF_CAP_S;
	a->backoff = true;
	a->next_ms = now + jittered(delay);
	log_info("%s: %u failed passes in a row; next try in %lld s",
	    a->name, a->failures, (long long)(a->next_ms - now) / 1000);
}

/* ---- IDLE watchers ------------------------------------------------------- */

static void
start_watcher(struct sched *s, struct acct *a)
{
	sigset_t old;
	int	 p[2];
	pid_t	 pid;

	if (cloexec_pipe(p, false) == -1) {
		log_warn("%s: IDLE: pipe: %s", a->name, strerror(errno));
		a->watcher_retry_ms = now_ms() + WATCHER_RETRY_MS;
		return;
	}
	block_signals(&old);
	if ((pid = fork()) == 0) {
		child_setup(s, false, &old);
		close(p[0]);
		idle_watch(a->cfg, p[1]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	if (pid == -1) {
		log_warn("%s: IDLE: fork: %s", a->name, strerror(errno));
		close(p[0]);
		a->watcher_retry_ms = now_ms() + WATCHER_RETRY_MS;
		return;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	a->watcher = pid;
	a->watch_fd = p[0];
	a->wlen = 0;
	a->idle_folders = a->idle_up = a->idle_unsupported = 0;
	a->watcher_retry_ms = 0;
	s->dirty = true;
}

static bool
wants_watcher(const struct acct *a)
{
	return a->cfg != NULL && a->cfg->idle &&
	    a->cfg->protocol == CFG_PROTO_IMAP;
}

static void
watch_event(struct sched *s, struct acct *a, const char *l)
{
	log_debug("%s: IDLE event: %s", a->name, l);
	s->dirty = true;
	switch (l[0]) {
	case 'F':
		a->idle_folders = atoi(l + 1);
		break;
	case 'C':
		a->idle_up++;
		a->idle_auth = false;
		break;
	case 'L':
		if (a->idle_up > 0)
			a->idle_up--;
		break;
	case 'U':
		a->idle_unsupported++;
		break;
	case 'A':
		a->idle_auth = true;
		break;
	case 'N':
		if (a->trigger_ms == 0 && !a->auth_failed)
			a->trigger_ms = now_ms() + IDLE_DEBOUNCE_MS;
		break;
	default:
		break;
	}
}

/* Reads and handles what the watcher wrote; returns the bytes read. */
static ssize_t
watch_read(struct sched *s, struct acct *a)
{
	ssize_t	 n;
	char	*nl;

	n = read(a->watch_fd, a->wbuf + a->wlen, sizeof a->wbuf - 1 - a->wlen);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {			/* every watcher process is gone */
		close(a->watch_fd);
		a->watch_fd = -1;
		a->idle_up = 0;
		s->dirty = true;
		return 0;
	}
	a->wlen += (size_t)n;
	a->wbuf[a->wlen] = '\0';
	while ((nl = strchr(a->wbuf, '\n')) != NULL) {
		*nl = '\0';
		watch_event(s, a, a->wbuf);
		a->wlen -= (size_t)(nl + 1 - a->wbuf);
		memmove(a->wbuf, nl + 1, a->wlen + 1);
	}
	if (a->wlen == sizeof a->wbuf - 1)	/* no line end: drop it */
		a->wlen = 0;
	return n;
}

/* ---- the loop ---------------------------------------------------------------- */

static void
reap(struct sched *s)
{
	pid_t	pid;
	int	st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (size_t i = 0; i < s->nacct; i++) {
			struct acct *a = &s->accts[i];

			if (a->worker == pid) {
				worker_done(s, a, st);
				break;
			}
			if (a->watcher == pid) {
				a->watcher = 0;
				s->dirty = true;
				while (a->watch_fd != -1 &&
				    watch_read(s, a) > 0)
					;	/* the last events */
				if (a->watch_fd != -1)
					close(a->watch_fd);
				a->watch_fd = -1;
				a->idle_up = 0;
				if (WIFEXITED(st) && WEXITSTATUS(st) ==
				    IDLE_EXIT_UNSUPPORTED) {
					a->watcher_retry_ms = INT64_MAX;
					break;	/* polling only */
				}
				a->idle_folders = a->idle_unsupported = 0;
				log_warn("%s: IDLE watcher ended (%s %d); "
				    "restarting in %d s", a->name,
				    WIFSIGNALED(st) ? "signal" : "status",
				    WIFSIGNALED(st) ? WTERMSIG(st) :
				    WEXITSTATUS(st), WATCHER_RETRY_MS / 1000);
				a->watcher_retry_ms = now_ms() +
				    WATCHER_RETRY_MS;
				break;
			}
		}
		for (size_t i = 0; i < NOTIFY_MAX; i++)
			if (s->notif[i].pid == pid) {
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
					log_warn("service: notify_command "
					    "ended with %s %d",
					    WIFEXITED(st) ? "status" :
					    "signal", WIFEXITED(st) ?
					    WEXITSTATUS(st) : WTERMSIG(st));
				s->notif[i].pid = 0;
			}
	}
	/* removed accounts whose worker ended */
	for (size_t i = 0; i < s->nacct; ) {
		if (s->accts[i].cfg == NULL && s->accts[i].worker == 0) {
			free(s->accts[i].name);
			s->accts[i] = s->accts[--s->nacct];
			continue;
		}
		i++;
	}
}

static int64_t
due_ms(const struct acct *a)
{
	if (a->trigger_ms != 0 && a->trigger_ms < a->next_ms)
		return a->trigger_ms;
	return a->next_ms;
}

/* Starts due passes (earliest first) and watchers; returns the next
   time something is due. */
static int64_t
schedule(struct sched *s)
{
	int64_t	now = now_ms(), next = now + 60000;

	for (;;) {
		struct acct *best = NULL;

		if (s->stopping || s->running >= s->cfg->general.concurrency)
			break;
		for (size_t i = 0; i < s->nacct; i++) {
			struct acct *a = &s->accts[i];

			if (a->cfg == NULL || a->worker > 0 ||
			    due_ms(a) > now)
				continue;
			if (best == NULL || due_ms(a) < due_ms(best))
				best = a;
		}
		if (best == NULL)
			break;
		start_worker(s, best);
	}
	for (size_t i = 0; i < s->nacct; i++) {
		struct acct *a = &s->accts[i];

		if (!s->stopping && wants_watcher(a) && a->watcher == 0 &&
		    a->watcher_retry_ms <= now)
			start_watcher(s, a);
		if (a->cfg != NULL && a->worker == 0 && due_ms(a) < next)
			next = due_ms(a);
		if (a->worker > 0 && a->deadline_ms < next)
			next = a->deadline_ms;
		if (a->watcher_retry_ms > now && a->watcher_retry_ms < next)
			next = a->watcher_retry_ms;
	}
	return next;
}

static void
kill_overdue(struct sched *s)
{
	int64_t	now = now_ms();

	for (size_t i = 0; i < s->nacct; i++) {
		struct acct *a = &s->accts[i];

		if (a->worker > 0 && !a->killed && now >= a->deadline_ms) {
			log_error("%s: the pass (worker %ld) outlived its "
			    "deadline of %lld s; killing it", a->name,
			    (long)a->worker, (long long)(a->limit_ms / 1000));
			kill(a->worker, SIGKILL);
			a->killed = true;
		}
	}
	for (size_t i = 0; i < NOTIFY_MAX; i++)
		if (s->notif[i].pid > 0 && now >= s->notif[i].deadline_ms) {
			log_warn("service: notify_command still running after "
			    "%d s; killing it", NOTIFY_DEADLINE_MS / 1000);
			kill(-s->notif[i].pid, SIGKILL);
			kill(s->notif[i].pid, SIGKILL);
			s->notif[i].deadline_ms = INT64_MAX;
		}
}

static void
reload(struct sched *s)
{
	struct config	*ncfg;
	char		*text = NULL, *line, *save = NULL;
	size_t		 len = 0;
	FILE		*diag = open_memstream(&text, &len);
	enum log_level	 lvl;

	log_info("service: reloading %s", s->cfg->path);
	ncfg = config_load(s->cfg->path, diag != NULL ? diag : stderr);
	if (diag != NULL)
		fclose(diag);
	for (line = text != NULL ? strtok_r(text, "\n", &save) : NULL;
	    line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (ncfg == NULL)
			log_error("service: %s", line);
		else
			log_warn("service: %s", line);
	}
	free(text);
	if (ncfg == NULL) {
		log_error("service: the new config has errors; keeping the "
		    "old one");
		return;
	}
	if (strcmp(ncfg->general.state, s->cfg->general.state) != 0) {
		log_error("service: the state file cannot change on reload "
		    "(%s -> %s); keeping the old config; restart instead",
		    s->cfg->general.state, ncfg->general.state);
		config_free(ncfg);
		return;
	}
	lvl = (enum log_level)ncfg->general.log_level;
	if (s->verbosity > 0)
		lvl = LOG_LVL_DEBUG;
	else if (s->verbosity < 0)
		lvl = LOG_LVL_ERROR;
	log_init(lvl, ncfg->general.log == CFG_LOG_SYSLOG);
	/* watchers hold pointers into the old config's copy: restart */
	for (size_t i = 0; i < s->nacct; i++) {
		stop_watcher(&s->accts[i]);
		s->accts[i].watcher_retry_ms = 0;
	}
	config_free(s->cfg);
	s->cfg = ncfg;
	build_accounts(s);
	log_info("service: config reloaded, %zu accounts", s->nacct);
}

static void
begin_stop(struct sched *s, int sig)
{
	if (s->stopping) {
		log_warn("service: second signal: killing %u running "
		    "passes now", s->running);
		s->stop_deadline_ms = 0;
		return;
	}
	s->stopping = true;
	s->stop_deadline_ms = now_ms() + s->stop_grace_ms;
	s->dirty = true;
	log_info("service: %s: stopping%s", strsignal(sig), s->running ?
	    "; the running passes stop after the message in flight" : "");
	for (size_t i = 0; i < s->nacct; i++)
		if (s->accts[i].worker > 0)
			kill(s->accts[i].worker, SIGTERM);
	for (size_t i = 0; i < s->nacct; i++)
		stop_watcher(&s->accts[i]);
}

static void
handle_signals(struct sched *s)
{
	unsigned char	buf[64];
	ssize_t		n;

	while ((n = read(s->sigpipe[0], buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			switch (buf[i]) {
			case SIGTERM:
			case SIGINT:
				begin_stop(s, buf[i]);
				break;
			case SIGHUP:
				if (!s->stopping)
					reload(s);
				break;
			case SIGUSR1:
				log_info("service: SIGUSR1: polling every "
				    "account now");
				for (size_t j = 0; j < s->nacct; j++)
					s->accts[j].trigger_ms = now_ms();
				s->dirty = true;
				break;
			default:		/* SIGCHLD: reap() runs anyway */
				break;
			}
		}
	}
}

static void
loop(struct sched *s)
{
	struct pollfd	*pfd = NULL;
	size_t		 cap = 0;

	for (;;) {
		int64_t	 next, wait;
		size_t	 n = 0;

		reap(s);
		if (s->stopping) {
			if (s->running == 0)
				break;
			if (now_ms() >= s->stop_deadline_ms)
				for (size_t i = 0; i < s->nacct; i++)
					if (s->accts[i].worker > 0 &&
					    !s->accts[i].killed) {
						log_warn("%s: killing the "
						    "pass to stop",
						    s->accts[i].name);
						kill(s->accts[i].worker,
						    SIGKILL);
						s->accts[i].killed = true;
					}
		}
		kill_overdue(s);
		next = schedule(s);
		if (s->stopping && s->stop_deadline_ms < next)
			next = s->stop_deadline_ms;
		if (s->dirty)
			write_status(s);
		if (cap < s->nacct + 1) {
			cap = s->nacct + 1;
			pfd = xrealloc(pfd, cap * sizeof *pfd);
		}
		pfd[n].fd = s->sigpipe[0];
		pfd[n++].events = POLLIN;
		for (size_t i = 0; i < s->nacct; i++)
			if (s->accts[i].watch_fd != -1) {
				pfd[n].fd = s->accts[i].watch_fd;
				pfd[n++].events = POLLIN;
			}
		wait = next - now_ms();
		if (wait < 0)
			wait = 0;
		if (wait > 60000)
			wait = 60000;
		if (poll(pfd, n, (int)wait) == -1 && errno != EINTR) {
			log_error("service: poll: %s", strerror(errno));
			sleep(1);
		}
		handle_signals(s);
		for (size_t i = 0; i < s->nacct; i++)
			if (s->accts[i].watch_fd != -1)
				for (size_t k = 1; k < n; k++)
					if (pfd[k].fd ==
					    s->accts[i].watch_fd &&
					    pfd[k].revents != 0) {
						watch_read(s, &s->accts[i]);
						break;
					}
	}
	free(pfd);
}

/* ---- start and stop -------------------------------------------------------- */

/* The service lock; -1 with *holder set when another service has it. */
static int
take_service_lock(const char *dir, long *holder)
{
	char	*path = xasprintf("%s/service.lock", dir), buf[32];
	int	 fd;
	ssize_t	 n;

	*holder = 0;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(path);
	if (fd == -1)
		return -2;
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if ((n = pread(fd, buf, sizeof buf - 1, 0)) > 0) {
			buf[n] = '\0';
			*holder = strtol(buf, NULL, 10);
		}
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n) {
		close(fd);
		return -2;
	}
	return fd;
}

static int
setup_signals(struct sched *s)
{
	struct sigaction sa;
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD };

	if (cloexec_pipe(s->sigpipe, true) == -1)
		return -1;
	sig_fd = s->sigpipe[1];
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (sigaction(sigs[i], &sa, NULL) == -1)
			return -1;
	return 0;
}

int
scheduler_run(struct config **cfgp, int verbosity)
{
	struct sched	 s;
	struct seen_db	*db = NULL;
	struct mh_err	 err;
	char		 buf[1200], *path;
	long		 holder;
	int		 rc = EX_OK;

	memset(&s, 0, sizeof s);
	s.cfg = *cfgp;
	s.verbosity = verbosity;
	s.lockfd = -1;
	s.sigpipe[0] = s.sigpipe[1] = -1;
	s.dir = config_state_dir(s.cfg);
	s.started = time(NULL);
	s.worker_deadline_ms = env_ms("MAILHAUL_WORKER_DEADLINE", 0);
	s.stop_grace_ms = env_ms("MAILHAUL_STOP_GRACE", STOP_GRACE_MS);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	mh_err_clear(&err);
	if (mkdir_p(s.dir, 0700, &err) == -1) {
		log_error("service: %s", mh_err_str(&err, buf, sizeof buf));
		rc = EX_IOERR;
		goto out;
	}
	if ((s.lockfd = take_service_lock(s.dir, &holder)) < 0) {
		if (s.lockfd == -1) {
			log_error("another mailhaul run (pid %ld) serves this "
			    "state file (%s)", holder, s.cfg->general.state);
			rc = SCHED_EXIT_RUNNING;
		} else {
			log_error("service: cannot lock %s/service.lock: %s",
			    s.dir, strerror(errno));
			rc = EX_IOERR;
		}
		s.lockfd = -1;
		goto out;
	}
	/* fail early on a broken database; closed before any fork */
	if (seen_open(s.cfg->general.state, &db, &err) == -1) {
		log_error("service: %s", mh_err_str(&err, buf, sizeof buf));
		rc = EX_IOERR;
		goto out;
	}
	seen_close(db);
	if (setup_signals(&s) == -1) {
		log_error("service: signals: %s", strerror(errno));
		rc = EX_OSERR;
		goto out;
	}
	build_accounts(&s);
	log_info("service: started (pid %ld), %zu enabled accounts, state %s",
	    (long)getpid(), s.nacct, s.cfg->general.state);
	loop(&s);
	log_info("service: stopped");
out:
	for (size_t i = 0; i < s.nacct; i++) {
		stop_watcher(&s.accts[i]);
		free(s.accts[i].name);
	}
	free(s.accts);
	if (s.lockfd != -1) {
		path = xasprintf("%s/service.json", s.dir);
		unlink(path);
		free(path);
		if (ftruncate(s.lockfd, 0) == -1) {
			/* the lock goes with the fd anyway */
		}
		close(s.lockfd);
	}
	sig_fd = -1;
	if (s.sigpipe[0] != -1) {
		close(s.sigpipe[0]);
		close(s.sigpipe[1]);
	}
	free(s.dir);
	*cfgp = s.cfg;
	return rc;
}

/* ---- mailhaul status ---------------------------------------------------------- */

/* The value after "key": in line (a number or a string), or NULL. */
static const char *
json_field(const char *line, const char *key, char *out, size_t size)
{
	char		 pat[64];
	const char	*p;
	size_t		 n = 0;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	if ((p = strstr(line, pat)) == NULL)
		return NULL;
	p += strlen(pat);
	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"' && n + 1 < size; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			out[n++] = *p;
		}
	} else {
		while (*p != '\0' && *p != ',' && *p != '}' && n + 1 < size)
			out[n++] = *p++;
	}
	out[n] = '\0';
	return out;
}

static long long
json_num(const char *line, const char *key)
{
	char	v[64];

	return json_field(line, key, v, sizeof v) ? atoll(v) : 0;
}

int
scheduler_status(const struct config *cfg, struct sched_status *st)
{
	char	*dir = config_state_dir(cfg), *path, *line = NULL, v[64];
	size_t	 cap = 0, len = 0;
	FILE	*f = NULL, *mem;
	int	 fd, rc = 0;
	ssize_t	 n;

	memset(st, 0, sizeof *st);
	path = xasprintf("%s/service.lock", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd == -1)
		goto out;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
		close(fd);		/* nobody serves this state */
		goto out;
	}
	close(fd);
	rc = -1;
	path = xasprintf("%s/service.json", dir);
	f = fopen(path, "re");
	free(path);
	if (f == NULL)
		goto out;
	if ((mem = open_memstream(&st->json, &len)) == NULL)
		goto out;
	while ((n = getline(&line, &cap, f)) > 0) {
		fwrite(line, 1, (size_t)n, mem);
		if (strncmp(line, "{\"pid\":", 7) == 0) {
			st->pid = (long)json_num(line, "pid");
			st->started = (time_t)json_num(line, "started");
		} else if (strncmp(line, "{\"account\":", 11) == 0) {
			struct sched_status_account *a;

			st->accounts = xrealloc(st->accounts,
			    (st->naccounts + 1) * sizeof *st->accounts);
			a = &st->accounts[st->naccounts++];
			memset(a, 0, sizeof *a);
			json_field(line, "account", a->name, sizeof a->name);
			json_field(line, "idle", a->idle, sizeof a->idle);
			json_field(line, "last_result", a->last_result,
			    sizeof a->last_result);
			a->running = json_field(line, "running", v, sizeof v) &&
			    strcmp(v, "true") == 0;
			a->auth_failed = json_field(line, "auth_failed", v,
			    sizeof v) && strcmp(v, "true") == 0;
			a->next = (time_t)json_num(line, "next");
			a->failures = (unsigned)json_num(line, "failures");
			a->backoff_until = (time_t)json_num(line,
			    "backoff_until");
			a->last_end = (time_t)json_num(line, "last_end");
		}
	}
	fclose(mem);
	/* trim the trailing newline so it embeds in other JSON */
	while (len > 0 && st->json[len - 1] == '\n')
		st->json[--len] = '\0';
	rc = st->pid > 0 ? 1 : -1;
out:
	if (f != NULL)
		fclose(f);
	free(line);
	free(dir);
	if (rc != 1)
		scheduler_status_free(st);
	return rc;
}

void
scheduler_status_free(struct sched_status *st)
{
	free(st->accounts);
	free(st->json);
	memset(st, 0, sizeof *st);
}
