/*
 * workers.c -- the pool of forked passes; see workers.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/engine/sync.h"
#include "fetch/service/workers.h"
#include "log.h"

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
	if (seen_open_flags(cfg->general.state, SEEN_OPEN_NOCHECK, &db,
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
	w->killed = false;
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
	w->killed = false;
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

/* The pool's bookkeeping for one account. */
struct slot {
	struct worker		w;
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

int
worker_pool_run(const struct config *cfg,
    const struct cfg_account *const *accts, size_t n,
    unsigned concurrency, const struct worker_opts *o,
    void (*done)(size_t i, enum worker_end end,
    const struct worker_report *rep, int status, void *arg),
    void *arg, struct mh_err *err)
{
	struct slot	*v = xcalloc(n + 1, sizeof *v);
	size_t		 started = 0, reported = 0;
	unsigned	 running = 0;
	int		 rc = 0;

	if (concurrency == 0)
		concurrency = 1;
	while (reported < started || (rc == 0 && started < n)) {
		while (rc == 0 && started < n && running < concurrency) {
			if (worker_start(&v[started].w, cfg, accts[started], o,
			    err) == -1) {
				rc = -1;
				break;
			}
			started++;
			running++;
		}
		while (reported < started && v[reported].ended) {
			done(reported, v[reported].end, &v[reported].rep,
			    v[reported].status, arg);
			reported++;
		}
		if (reported == started)
			continue;
		if (pool_reap(v, started) == -1)
			break;		/* no child left: cannot happen */
		running = 0;
		for (size_t i = 0; i < started; i++)
			running += v[i].w.pid > 0;
	}
	free(v);
	return rc;
}
