/*
 * workers.c -- the pool of forked passes; see workers.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/engine/pipeline.h"
#include "fetch/engine/sync.h"
#include "fetch/state/lock.h"
#include "fetch/service/servercap.h"
#include "fetch/service/workers.h"
#include "log.h"
#include "net/net.h"

enum wexit {		/* a worker's exit status byte */
	WEXIT_OK = 0,
	WEXIT_FAILED = 10,	/* + enum mh_err_class */
};

/* A service worker's SIGTERM: finish the message in flight, then end
   the pass. */
static void
on_worker_term(int sig)
{
	(void)sig;
	sync_request_stop();
}

#ifndef __has_feature
#define __has_feature(x)	0
#endif
/* a sanitizer's shadow memory does not fit a worker's data limit */
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer) || \
    defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define LIMIT_MEMORY	false
#else
#define LIMIT_MEMORY	true
#endif

/* Lowers one limit to at most max (never raises it); with soft only,
   the hard limit stays, so that a child it execs can have its old one
   back (child_limits_restore). */
static void
limit(int res, uint64_t max, bool soft)
{
	struct rlimit	rl;

	if (getrlimit(res, &rl) == -1)
		return;
	if (!soft && (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > max))
		rl.rlim_max = (rlim_t)max;
	if (soft && (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > max))
		rl.rlim_cur = (rlim_t)max;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	if (setrlimit(res, &rl) == -1)
		log_debug("setrlimit(%d): %s", res, strerror(errno));
}

void
worker_limits(const struct cfg_account *acct)
{
	limit(RLIMIT_CORE, 0, false);
	if (LIMIT_MEMORY)
		limit(RLIMIT_DATA, WORKER_DATA_LIMIT, true);
	if (acct->target == NULL || acct->target->type != CFG_TARGET_MDA) {
		signal(SIGXFSZ, SIG_IGN);
		limit(RLIMIT_FSIZE, WORKER_FSIZE_LIMIT, false);
	}
}

/*
 * The state file is still the one the service started with: a removed or
 * replaced file would be recreated empty by seen_open and every message
 * kept on the servers delivered again.
 */
static int
state_same(const char *path, const struct worker_opts *o, struct mh_err *err)
{
	struct stat	st;

	if (o->state_ino == 0)
		return 0;
	if (stat(path, &st) == 0 && st.st_dev == o->state_dev &&
	    st.st_ino == o->state_ino)
		return 0;
	mh_err_set(err, MH_ERR_LOCAL, "the state file %s was removed or "
	    "replaced while the service ran; not creating a new one", path);
	return -1;
}

static void __attribute__((noreturn))
worker_main(const struct config *cfg, const struct cfg_account *acct,
    const struct worker_opts *o, int wfd)
{
	struct worker_report	 rep;
	struct sync_opts	 opts;
	struct sync_result	 res;
	struct seen_db		*db = NULL;
	const char		*ab = getenv("MAILHAUL_TEST_WORKER_ABORT");
	int64_t			 t0 = now_ms();

	if (ab != NULL && strcmp(ab, acct->name) == 0)
		abort();
	memset(&rep, 0, sizeof rep);
	memset(&opts, 0, sizeof opts);
	memset(&res, 0, sizeof res);
	opts.mode = SYNC_NORMAL;
	opts.progress = o->progress;
	opts.lock_wait_ms = o->lock_wait_ms;
	mh_err_clear(&res.err);
	/* the parent checked the file (quick_check) once at start */
	if (state_same(cfg->general.state, o, &res.err) == -1 ||
	    seen_open_flags(cfg->general.state, SEEN_OPEN_NOCHECK, &db,
	    &res.err) == -1) {
		rep.rc = -1;
	} else {
		rep.rc = sync_account(cfg, acct, db, &opts, &res);
		seen_close(db);
	}
	rep.cls = res.err.cls;
	rep.counts = res.counts;
	rep.elapsed_ms = now_ms() - t0;
	mh_err_str(&res.err, rep.msg, sizeof rep.msg);
	if (write(wfd, &rep, sizeof rep) != (ssize_t)sizeof rep) {
		/* the exit status still says how it went */
	}
	_exit(rep.rc == 0 ? WEXIT_OK : WEXIT_FAILED + (int)rep.cls);
}

/* In the new child: its signals, the parent's descriptors closed, then
   the signals the parent blocked around fork() unblocked. */
static void
child_setup(const struct worker_opts *o, pid_t parent, const sigset_t *old)
{
	signal(SIGCHLD, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	if (o->service) {
		/* the parent decides when to kill */
		signal(SIGTERM, on_worker_term);
		signal(SIGINT, SIG_IGN);
	} else {
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent)
			_exit(WEXIT_FAILED + (int)MH_ERR_LOCAL);
	}
	if (o->child_init != NULL)
		o->child_init(o->arg);
	sigprocmask(SIG_SETMASK, old, NULL);
}

void
worker_prewarm(void)
{
	net_sha256_warm();
	seen_library_init();
	pipeline_warm();
}

int
worker_start(struct worker *w, const struct config *cfg,
    const struct cfg_account *acct, const struct worker_opts *o,
    struct mh_err *err)
{
	sigset_t all, old;
	pid_t	 pid, parent = getpid();
	int	 p[2];

	w->pid = 0;
	w->fd = -1;
	w->killed = w->stopped = false;
	if (cloexec_pipe(p, true) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot start a pass: pipe: %s",
		    strerror(errno));
		return -1;
	}
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if ((pid = fork()) == 0) {
		close(p[0]);
		child_setup(o, parent, &old);
		worker_limits(acct);
		worker_main(cfg, acct, o, p[1]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	if (pid == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot start a pass: fork: %s",
		    strerror(errno));
		close(p[0]);
		return -1;
	}
	log_debug("%s: pass started (worker %ld)", acct->name, (long)pid);
	w->pid = pid;
	w->fd = p[0];
	return 0;
}

enum worker_end
worker_collect(struct worker *w, int status, struct worker_report *rep)
{
	ssize_t	n;
	bool	killed = w->killed;

	memset(rep, 0, sizeof *rep);
	n = read(w->fd, rep, sizeof *rep);
	close(w->fd);
	w->fd = -1;
	w->pid = 0;
	killed = killed || (w->stopped && WIFSIGNALED(status) &&
	    (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL));
	w->killed = w->stopped = false;
	if (WIFSIGNALED(status)) {
		memset(rep, 0, sizeof *rep);
		return killed ? WORKER_KILLED : WORKER_CRASHED;
	}
	if (n != (ssize_t)sizeof *rep) {
		memset(rep, 0, sizeof *rep);
		return WORKER_NO_REPORT;
	}
	return WORKER_DONE;
}

void
worker_kill(struct worker *w)
{
	if (w->pid <= 0 || w->killed)
		return;
	kill(w->pid, SIGKILL);
	w->killed = true;
}

void
worker_stop(struct worker *w)
{
	if (w->pid <= 0 || w->killed || w->stopped)
		return;
	kill(w->pid, SIGTERM);
	w->stopped = true;
}

int
worker_io(const struct worker *w, uint64_t *bytes)
{
	char		 path[64], line[128];
	FILE		*f;
	uint64_t	 v;
	int		 found = 0;

	*bytes = 0;
	if (w->pid <= 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%ld/io", (long)w->pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "rchar: %" SCNu64, &v) == 1 ||
		    sscanf(line, "wchar: %" SCNu64, &v) == 1) {
			*bytes = mh_add_sat(*bytes, v);
			found++;
		}
	fclose(f);
	return found == 2 ? 0 : -1;
}

unsigned
worker_runs_lost(const struct config *cfg, const char *name,
    const struct worker_opts *o, const char *result, const char *error)
{
	struct seen_db	*db = NULL;
	struct mh_err	 err;
	int64_t		*ids = NULL;
	size_t		 n = 0;
	unsigned	 total = 0, d;
	char		*dir = config_state_dir(cfg), key[32], buf[1200];
	int		 fd;

	mh_err_clear(&err);
	if (state_same(cfg->general.state, o, &err) == -1 ||
	    seen_open(cfg->general.state, &db, &err) == -1 ||
	    seen_sources_by_name(db, name, &ids, &n, &err) == -1)
		goto out;
	for (size_t i = 0; i < n; i++) {
		snprintf(key, sizeof key, "%" PRId64, ids[i]);
		if ((fd = lock_take(dir, key, 0, &err)) == -1) {
			mh_err_clear(&err);	/* another pass has it */
			continue;
		}
		if (seen_run_close_open(db, ids[i], result, error, &d,
		    &err) == 0)
			total += d;
		lock_release(fd);
		if (err.cls != MH_ERR_NONE)
			break;
	}
out:
	if (err.cls != MH_ERR_NONE)
		log_warn("%s: cannot record the %s pass: %s", name, result,
		    mh_err_str(&err, buf, sizeof buf));
	free(ids);
	seen_close(db);
	free(dir);
	return total;
}

/* The pool's bookkeeping for one account. */
struct slot {
	struct worker		w;
	bool			started;
	bool			ended;
	enum worker_end		end;
	int			status;
	struct worker_report	rep;
};

/* Waits for one worker of v[0..n) and records its end; -1 when none
   runs. */
static int
pool_reap(struct slot *v, size_t n)
{
	pid_t	pid;
	int	st;

	while ((pid = waitpid(-1, &st, 0)) == -1 && errno == EINTR)
		;
	if (pid == -1)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (v[i].w.pid == pid) {
			v[i].end = worker_collect(&v[i].w, st, &v[i].rep);
			v[i].status = st;
			v[i].ended = true;
			return 0;
		}
	return 0;		/* not one of ours */
}

/*
 * The first account not started yet whose server has room (servercap.h)
 * among the running ones, or n.  run is scratch space for n pointers.
 */
static size_t
pool_next(const struct config *cfg, const struct cfg_account *const *accts,
    const struct slot *v, size_t n, const struct cfg_account **run)
{
	size_t	nrun = 0;

	for (size_t i = 0; i < n; i++)
		if (v[i].w.pid > 0)
			run[nrun++] = accts[i];
	for (size_t i = 0; i < n; i++)
		if (!v[i].started && server_has_room(accts[i], run, nrun,
		    cfg->general.concurrency_per_server))
			return i;
	return n;
}

int
worker_pool_run(const struct config *cfg,
    const struct cfg_account *const *accts, size_t n,
    unsigned concurrency, const struct worker_opts *o,
    void (*done)(size_t i, enum worker_end end,
    const struct worker_report *rep, int status, void *arg),
    void *arg, struct mh_err *err)
{
	struct slot	*v = xcalloc(n + 1, sizeof *v);
	const struct cfg_account **run = xcalloc(n + 1, sizeof *run);
	size_t		 reported = 0, i;
	unsigned	 running = 0;
	int		 rc = 0;

	if (concurrency == 0)
		concurrency = 1;
	worker_prewarm();
	for (;;) {
		while (rc == 0 && running < concurrency &&
		    (i = pool_next(cfg, accts, v, n, run)) < n) {
			if (worker_start(&v[i].w, cfg, accts[i], o, err) == -1) {
				rc = -1;
				break;
			}
			v[i].started = true;
			running++;
		}
		/* in config order; after a failed start, those that ran */
		for (; reported < n && (v[reported].ended ||
		    (rc == -1 && !v[reported].started)); reported++)
			if (v[reported].ended)
				done(reported, v[reported].end,
				    &v[reported].rep, v[reported].status, arg);
		if (reported == n || (running == 0 && rc == -1))
			break;
		if (running == 0)
			continue;
		if (pool_reap(v, n) == -1)
			break;		/* no child left: cannot happen */
		running = 0;
		for (size_t k = 0; k < n; k++)
			running += v[k].w.pid > 0;
	}
	free(run);
	free(v);
	return rc;
}
