/*
 * scheduler.c -- `mailhaul run`: the loop, the account table, timers and
 * backoff; see scheduler.h.
 *
 * One process, no threads: poll() on a self-pipe (signals) and on the
 * IDLE watchers' pipes, waitpid(WNOHANG) for the children, timers on the
 * monotonic clock.  The passes run in workers (workers.h), the IDLE
 * watchers in their own processes (watchers.h); service.json is
 * status.h's, notify_command notify.h's.  The parent opens SQLite only
 * briefly, between forks, to close the run records of a killed pass
 * (workers.h worker_runs_lost).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "fetch/service/notify.h"
#include "fetch/service/progress.h"
#include "fetch/service/scheduler.h"
#include "fetch/service/servercap.h"
#include "fetch/service/status.h"
#include "fetch/service/watchers.h"
#include "forward/target.h"
#include "fetch/service/workers.h"
#include "fetch/state/seen.h"
#include "log.h"
#include "net/endpoint.h"
#include "net/oauth2.h"

#define BACKOFF_CAP_S		3600
#define STOP_GRACE_MS		30000
#define KILL_GRACE_MS		5000	/* SIGTERM to SIGKILL of a stalled pass */
#define STALL_MIN_MS		30000	/* no progress: at least this long */
#define STALL_MARGIN_MS		30000	/* added to 2 x the longest wait */
#define IDLE_DEBOUNCE_MS	250
#define MIN_INTERVAL_S		1
#define GRANT_POLL_MS		2000	/* looks for `mailhaul auth` */

/* The self-pipe's write end, for the signal handler (a signal flag). */
static volatile sig_atomic_t sig_fd = -1;

struct acct {
	char		*name;
	const struct cfg_account *cfg;	/* borrowed; NULL once removed */
	int64_t		 next_ms;	/* the next scheduled pass */
	int64_t		 trigger_ms;	/* IDLE or SIGUSR1: a pass soon */
	unsigned	 failures;
	bool		 backoff;	/* next_ms is a backoff time */
	bool		 auth_failed;
	bool		 grant_wait;	/* waits for `mailhaul auth` */
	int64_t		 grant_stamp;	/* the token stores then */
	/* the running pass */
	struct worker	 w;
	struct progress	 prog;
	/* the last pass */
	char		 last[16];
	char		 last_error[256];	/* of a failed pass, or "" */
	time_t		 last_end;
	unsigned	 last_delivered;
	struct watcher	 idle;
};

struct sched {
	struct config	*cfg;
	struct net_trust *trust;	/* cfg's system CAs, or NULL */
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
	int64_t		 kill_grace_ms;
	dev_t		 state_dev;	/* the state file's identity */
	ino_t		 state_ino;
	int		 exit_rc;	/* EX_OK, or why the service stopped */
	struct notify_pool notif;
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

/* In a new child (worker, watcher, notify_command): nothing of the
   parent's loop stays open. */
static void
child_close(void *arg)
{
	struct sched *s = arg;

	sig_fd = -1;
	close(s->sigpipe[0]);
	close(s->sigpipe[1]);
	if (s->lockfd != -1)
		close(s->lockfd);
	for (size_t i = 0; i < s->nacct; i++) {
		if (s->accts[i].idle.fd != -1)
			close(s->accts[i].idle.fd);
		if (s->accts[i].w.fd != -1)
			close(s->accts[i].w.fd);
	}
}

static int64_t
due_ms(const struct acct *a)
{
	if (a->trigger_ms != 0 && a->trigger_ms < a->next_ms)
		return a->trigger_ms;
	return a->next_ms;
}

/* ---- service.json ---------------------------------------------------------- */

static void
write_status(struct sched *s)
{
	struct service_status st;
	size_t	n = 0;

	s->dirty = false;
	memset(&st, 0, sizeof st);
	st.pid = (long)getpid();
	st.started = s->started;
	st.stopping = s->stopping;
	st.running = s->running;
	st.accounts = xcalloc(s->nacct + 1, sizeof *st.accounts);
	for (size_t i = 0; i < s->nacct; i++) {
		const struct acct *a = &s->accts[i];
		struct service_status_account *o = &st.accounts[n];

		if (a->cfg == NULL)
			continue;
		snprintf(o->name, sizeof o->name, "%s", a->name);
		o->running = a->w.pid > 0;
		o->next = a->w.pid > 0 || s->stopping ? 0 : wall(due_ms(a));
		o->failures = a->failures;
		o->backoff_until = a->backoff ? wall(a->next_ms) : 0;
		o->auth_failed = a->auth_failed;
		o->waiting_for_auth = a->grant_wait;
		if (a->grant_wait)
			o->next = 0;
		snprintf(o->last_error, sizeof o->last_error, "%s",
		    a->last_error);
		snprintf(o->idle, sizeof o->idle, "%s",
		    watcher_state(&a->idle, a->cfg));
		o->idle_folders = a->idle.folders;
		o->idle_connected = a->idle.up;
		snprintf(o->last_result, sizeof o->last_result, "%s", a->last);
		o->last_end = a->last_end;
		o->last_delivered = a->last_delivered;
		n++;
	}
	st.naccounts = n;
	service_status_write(s->dir, &st);
	free(st.accounts);
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
	a->w.fd = -1;
	a->idle.fd = -1;
}

/* An enabled account of the new config that the old table knew: its
   state moves over, its first pass comes within one interval. */
static void
acct_move(struct sched *s, struct acct *to, struct acct *o,
    const struct cfg_account *c, int64_t now)
{
	int64_t	first = now + interval_s(s, c) * 1000;

	*to = *o;
	o->name = NULL;			/* moved */
	o->idle.fd = o->w.fd = -1;
	o->w.pid = o->idle.pid = 0;
	if (to->auth_failed || (!to->backoff && to->next_ms > first))
		to->next_ms = to->auth_failed ? now : first;
	to->grant_wait = false;		/* a reload tries again */
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

		if (!c->enabled)
			continue;
		if ((o = find_acct(old, nold, c->name)) != NULL) {
			acct_move(s, &v[n], o, c, now);
		} else {
			acct_init(&v[n], c->name);
			v[n].next_ms = now;	/* first pass right at start */
		}
		v[n++].cfg = c;
	}
	for (size_t i = 0; i < nold; i++) {
		o = &old[i];
		if (o->name == NULL)
			continue;
		watcher_stop(&o->idle);
		if (o->w.pid > 0) {	/* removed, still running */
			v[n] = *o;
			v[n++].cfg = NULL;
			continue;
		}
		free(o->name);
	}
	free(old);
	s->accts = v;
	s->nacct = n;
	s->dirty = true;
}

/* ---- passes ------------------------------------------------------------------ */

/* What every worker of the service is started with. */
static void
worker_opts_init(struct sched *s, struct worker_opts *o)
{
	memset(o, 0, sizeof *o);
	o->service = true;
	o->lock_wait_ms = 0;		/* busy: skip, the next pass comes */
	o->state_dev = s->state_dev;
	o->state_ino = s->state_ino;
	o->child_init = child_close;
	o->arg = s;
}

/*
 * How long a pass may go without progress: twice the longest time one
 * of its operations may legitimately wait without moving a byte (the
 * account's timeout, the general one the target uses, an MDA's run),
 * plus a margin.  Its own timeouts end a stalled operation first,
 * cleanly; this is the backstop (a kill while an MDA still runs in its
 * own process group leaves the message in doubt: delivered again).
 */
static int64_t
stall_limit_ms(const struct config *cfg, const struct cfg_account *ac)
{
	int64_t	t = ac->timeout > cfg->general.timeout ? ac->timeout :
	    cfg->general.timeout;
	int64_t	limit;

	if (ac->target != NULL && ac->target->type == CFG_TARGET_MDA) {
		int64_t	mda = ac->target->mda.timeout > 0 ?
		    ac->target->mda.timeout : TARGET_MDA_TIMEOUT_S;

		if (mda > t)
			t = mda;
	}
	/* a Gmail request may wait out rate limits this long in all */
	if (ac->target != NULL && ac->target->type == CFG_TARGET_GMAIL &&
	    TARGET_GMAIL_MAX_WAIT_S > t)
		t = TARGET_GMAIL_MAX_WAIT_S;
	limit = t * 2 * 1000 + STALL_MARGIN_MS;
	return limit < STALL_MIN_MS ? STALL_MIN_MS : limit;
}

static void
start_pass(struct sched *s, struct acct *a)
{
	struct worker_opts o;
	struct mh_err	 err;
	char		 buf[1200];

	int64_t		 limit = s->worker_deadline_ms;

	worker_opts_init(s, &o);
	mh_err_clear(&err);
	if (worker_start(&a->w, s->cfg, a->cfg, &o, &err) == -1) {
		log_error("%s: %s", a->name, mh_err_str(&err, buf, sizeof buf));
		a->next_ms = now_ms() + 10000;
		return;
	}
	a->trigger_ms = 0;
	if (limit == 0)
		limit = stall_limit_ms(s->cfg, a->cfg);
	progress_start(&a->prog, &a->w, limit, now_ms());
	s->running++;
	s->dirty = true;
}

/* The next pass after a failed one: interval x 2^failures, capped at
   max(1 h, interval). */
static void
back_off(struct acct *a, int64_t ival, int64_t now)
{
	int64_t	delay = ival, cap = ival > BACKOFF_CAP_S ? ival : BACKOFF_CAP_S;

	a->failures++;
	for (unsigned i = 0; i < a->failures && delay < BACKOFF_CAP_S; i++)
		delay *= 2;
	if (delay > cap)
		delay = cap;
	a->backoff = true;
	a->next_ms = now + jittered(delay);
	log_info("%s: %u failed passes in a row; next try in %lld s",
	    a->name, a->failures, (long long)(a->next_ms - now) / 1000);
}

/* A login refused: logged once, retried at the backoff cap. */
static void
auth_refused(struct acct *a, const char *msg, int64_t ival, int64_t now)
{
	int64_t	cap = ival > BACKOFF_CAP_S ? ival : BACKOFF_CAP_S;

	if (!a->auth_failed)
		log_error("%s: login refused: %s -- fix the credentials and "
		    "reload (SIGHUP); retrying every %lld min meanwhile",
		    a->name, msg, (long long)cap / 60);
	a->auth_failed = true;
	a->failures++;
	a->backoff = true;
	a->next_ms = now + cap * 1000;
}

/*
 * The OAuth2 sections acct logs in with (its own and its target's) that
 * use built-in tokens, and the sum of their stores' stamps.
 */
static int64_t
grant_stamp(const struct sched *s, const struct cfg_account *c,
    bool *needs_auth)
{
	const struct cfg_endpoint *ep[2] = { &c->ep,
	    c->target != NULL ? &c->target->ep : NULL };
	int64_t	sum = 0;

	*needs_auth = false;
	for (size_t i = 0; i < 2; i++) {
		if (ep[i] == NULL || ep[i]->oauth2 == NULL ||
		    ep[i]->auth == CFG_AUTH_PASSWORD)
			continue;
		if (oauth2_needs_auth(ep[i]->oauth2, s->dir))
			*needs_auth = true;
		sum += oauth2_store_stamp(s->dir, ep[i]->oauth2->name);
	}
	return sum;
}

/*
 * A refused pass of an account whose OAuth2 grant is gone (revoked, or
 * never made): no pass until `mailhaul auth` stores new tokens or a
 * reload.  False when the grant is not the trouble.
 */
static bool
grant_gone(struct sched *s, struct acct *a, const char *msg)
{
	bool	needs;
	int64_t	stamp = grant_stamp(s, a->cfg, &needs);

	if (!needs)
		return false;
	if (!a->grant_wait)
		log_error("%s: %s -- no pass until then (or a reload)",
		    a->name, msg);
	a->grant_wait = true;
	a->grant_stamp = stamp;
	a->auth_failed = true;
	a->failures++;
	a->backoff = false;
	a->next_ms = INT64_MAX / 2;
	return true;
}

/* Accounts waiting for `mailhaul auth` whose token store changed. */
static bool
grant_check(struct sched *s)
{
	bool	waiting = false, needs;

	for (size_t i = 0; i < s->nacct; i++) {
		struct acct *a = &s->accts[i];

		if (a->cfg == NULL || !a->grant_wait)
			continue;
		if (grant_stamp(s, a->cfg, &needs) == a->grant_stamp) {
			waiting = true;
			continue;
		}
		log_info("%s: new OAuth2 tokens; a pass now", a->name);
		a->grant_wait = false;
		a->next_ms = now_ms();
		s->dirty = true;
		/* an IDLE watcher waits an hour after a refused login: a
		   new one logs in with the new tokens now */
		watcher_stop(&a->idle);
	}
	return waiting;
}

/* Keeps the start of a failed pass's error for service.json. */
static void
set_last_error(struct acct *a, const char *msg)
{
	size_t	n = strnlen(msg, sizeof a->last_error - 1);

	memcpy(a->last_error, msg, n);
	a->last_error[n] = '\0';
}

/* A pass that reported success. */
static void
pass_ok(struct sched *s, struct acct *a, const struct worker_report *rep)
{
	const struct seen_run_counts *c = &rep->counts;

	snprintf(a->last, sizeof a->last, "ok");
	a->last_error[0] = '\0';
	a->last_delivered = c->delivered;
	if (c->delivered > 0 || c->failed > 0 || c->tempfailed > 0)
		log_info("%s: %u delivered, %u deleted, %u refused, "
		    "%u to retry", a->name, c->delivered, c->deleted,
		    c->failed, c->tempfailed);
	else
		log_debug("%s: nothing new", a->name);
	if (a->failures > 0 || a->auth_failed)
		log_info("%s: working again", a->name);
	a->failures = 0;
	a->auth_failed = false;
	if (c->delivered > 0)
		notify_start(&s->notif, s->cfg->general.notify_command,
		    a->name, c->delivered, NULL, child_close, s);
}

/*
 * A worker that ended without a report: killed or crashed.  Its open run
 * records are closed as such (status shows the pass); returns how many
 * messages the pass had delivered.
 */
static unsigned
pass_lost(struct sched *s, struct acct *a, enum worker_end end, int st)
{
	struct worker_opts o;
	char	why[160];

	if (end == WORKER_KILLED) {
		snprintf(a->last, sizeof a->last, "killed");
		snprintf(why, sizeof why, "killed: the pass made no progress "
		    "for %lld s", (long long)(a->prog.limit_ms / 1000));
	} else {
		snprintf(a->last, sizeof a->last, "crashed");
		if (end == WORKER_CRASHED)
			snprintf(why, sizeof why, "the worker crashed "
			    "(signal %d)", WTERMSIG(st));
		else
			snprintf(why, sizeof why, "the worker ended with "
			    "status %d and no report", WIFEXITED(st) ?
			    WEXITSTATUS(st) : -1);
	}
	log_error("%s: %s", a->name, why);
	set_last_error(a, why);
	worker_opts_init(s, &o);
	return worker_runs_lost(s->cfg, a->name, &o, a->last, why);
}

/* A pass ended: read its report, log, reschedule. */
static void
pass_done(struct sched *s, struct acct *a, int st)
{
	struct worker_report rep;
	enum worker_end end = worker_collect(&a->w, st, &rep);
	int64_t	 now = now_ms(), ival;

	s->running--;
	s->dirty = true;
	a->last_end = time(NULL);
	a->last_delivered = 0;
	if (a->cfg == NULL)		/* removed by a reload */
		return;
	ival = interval_s(s, a->cfg);
	if (end != WORKER_DONE) {
		unsigned delivered = pass_lost(s, a, end, st);

		a->last_delivered = delivered;
		if (end == WORKER_KILLED && delivered > 0) {
			/* it was getting somewhere before it stalled */
			log_info("%s: the pass had delivered %u messages; no "
			    "backoff", a->name, delivered);
			a->backoff = false;
			a->next_ms = now + jittered(ival);
			return;
		}
	} else if (rep.rc == 0 || rep.cls == MH_ERR_BUSY) {
		if (rep.rc == 0) {
			pass_ok(s, a, &rep);
		} else {
			snprintf(a->last, sizeof a->last, "busy");
			log_info("%s: %s; trying again at the next pass",
			    a->name, rep.msg);
		}
		a->backoff = false;
		a->next_ms = now + jittered(ival);
		return;
	} else if (rep.cls == MH_ERR_AUTH) {
		snprintf(a->last, sizeof a->last, "failed");
		set_last_error(a, rep.msg);
		if (!grant_gone(s, a, rep.msg))
			auth_refused(a, rep.msg, ival, now);
		notify_start(&s->notif, s->cfg->general.notify_command,
		    a->name, 0, rep.msg, child_close, s);
		return;
	} else {
		snprintf(a->last, sizeof a->last, "failed");
		set_last_error(a, rep.msg);
		log_warn("%s: pass failed (%s): %s", a->name,
		    mh_err_class_name(rep.cls), rep.msg);
	}
	back_off(a, ival, now);
}

/* ---- the loop ---------------------------------------------------------------- */

static void
idle_new_mail(struct sched *s, struct acct *a, bool new_mail)
{
	s->dirty = true;
	if (new_mail && a->trigger_ms == 0 && !a->auth_failed)
		a->trigger_ms = now_ms() + IDLE_DEBOUNCE_MS;
}

static void
reap_one(struct sched *s, pid_t pid, int st)
{
	bool	new_mail = false;

	for (size_t i = 0; i < s->nacct; i++) {
		struct acct *a = &s->accts[i];

		if (a->w.pid == pid) {
			pass_done(s, a, st);
			return;
		}
		if (a->idle.pid == pid) {
			watcher_reaped(&a->idle, a->name, st, &new_mail);
			idle_new_mail(s, a, new_mail);
			return;
		}
	}
	notify_reaped(&s->notif, pid, st);
}

static void
reap(struct sched *s)
{
	pid_t	pid;
	int	st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		reap_one(s, pid, st);
	/* removed accounts whose worker ended */
	for (size_t i = 0; i < s->nacct; ) {
		if (s->accts[i].cfg == NULL && s->accts[i].w.pid == 0) {
			free(s->accts[i].name);
			s->accts[i] = s->accts[--s->nacct];
			continue;
		}
		i++;
	}
}

/* Whether a pass of a may start now: fewer than concurrency_per_server
   passes run on its server (servercap.h; 0 is no limit). */
static bool
server_room(const struct sched *s, const struct acct *a)
{
	unsigned same = 0;

	for (size_t i = 0; i < s->nacct; i++)
		if (s->accts[i].w.pid > 0 && s->accts[i].cfg != NULL &&
		    server_same(a->cfg, s->accts[i].cfg))
			same++;
	return s->cfg->general.concurrency_per_server == 0 ||
	    same < s->cfg->general.concurrency_per_server;
}

/* The due account that waited longest and whose server has room, or
   NULL. */
static struct acct *
next_due(struct sched *s, int64_t now)
{
	struct acct *best = NULL;

	for (size_t i = 0; i < s->nacct; i++) {
		struct acct *a = &s->accts[i];

		if (a->cfg == NULL || a->w.pid > 0 || due_ms(a) > now ||
		    !server_room(s, a))
			continue;
		if (best == NULL || due_ms(a) < due_ms(best))
			best = a;
	}
	return best;
}

/* Starts due passes (earliest first) and watchers; returns the next
   time something is due. */
static int64_t
schedule(struct sched *s)
{
	int64_t	now = now_ms(), next = now + 60000;
	struct acct *a;

	while (!s->stopping && s->running < s->cfg->general.concurrency &&
	    (a = next_due(s, now)) != NULL)
		start_pass(s, a);
	for (size_t i = 0; i < s->nacct; i++) {
		a = &s->accts[i];
		if (!s->stopping && watcher_wanted(a->cfg) &&
		    a->idle.pid == 0 && a->idle.retry_ms <= now) {
			watcher_start(&a->idle, a->cfg, s->dir, child_close, s);
			s->dirty = true;
		}
		/* a due account still waiting waits for a slot: the
		   SIGCHLD of a pass that ends wakes the loop */
		if (a->cfg != NULL && a->w.pid == 0 && due_ms(a) > now &&
		    due_ms(a) < next)
			next = due_ms(a);
		if (a->w.pid > 0 && progress_next(&a->prog) < next)
			next = progress_next(&a->prog);
		if (a->idle.retry_ms > now && a->idle.retry_ms < next)
			next = a->idle.retry_ms;
	}
	return next;
}

/* Passes that made no progress for their limit: SIGTERM, then SIGKILL. */
static void
kill_stalled(struct sched *s)
{
	int64_t	now = now_ms();

	for (size_t i = 0; i < s->nacct; i++) {
		struct acct *a = &s->accts[i];

		if (a->w.pid <= 0 || a->w.killed)
			continue;
		switch (progress_check(&a->prog, &a->w, s->kill_grace_ms,
		    now)) {
		case PROGRESS_OK:
			break;
		case PROGRESS_STOP:
			log_error("%s: the pass (worker %ld) made no progress "
			    "for %lld s; stopping it", a->name,
			    (long)a->w.pid,
			    (long long)(a->prog.limit_ms / 1000));
			worker_stop(&a->w);
			progress_stopped(&a->prog, s->kill_grace_ms, now);
			break;
		case PROGRESS_KILL:
			log_error("%s: the pass (worker %ld) did not stop; "
			    "killing it", a->name, (long)a->w.pid);
			worker_kill(&a->w);
			break;
		}
	}
	notify_kill_overdue(&s->notif, now);
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
		watcher_stop(&s->accts[i].idle);
		s->accts[i].idle.retry_ms = 0;
	}
	config_free(s->cfg);
	s->cfg = ncfg;
	/* loaded again: a change to the system's CAs is seen on reload */
	net_trust_free(s->trust);
	s->trust = endpoint_trust_attach(s->cfg);
	build_accounts(s);
	log_info("service: config reloaded, %zu accounts", s->nacct);
}


static void
begin_stop(struct sched *s, const char *why)
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
	log_info("service: %s: stopping%s", why, s->running ?
	    "; the running passes stop after the message in flight" : "");
	for (size_t i = 0; i < s->nacct; i++)
		if (s->accts[i].w.pid > 0)
			kill(s->accts[i].w.pid, SIGTERM);
	for (size_t i = 0; i < s->nacct; i++)
		watcher_stop(&s->accts[i].idle);
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
				begin_stop(s, strsignal(buf[i]));
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

/* Stopping, past the grace time: the passes still running are killed. */
static void
kill_to_stop(struct sched *s)
{
	if (now_ms() < s->stop_deadline_ms)
		return;
	for (size_t i = 0; i < s->nacct; i++)
		if (s->accts[i].w.pid > 0 && !s->accts[i].w.killed) {
			log_warn("%s: killing the pass to stop",
			    s->accts[i].name);
			worker_kill(&s->accts[i].w);
		}
}

/* Fills pfd with the self-pipe and the watchers' pipes; returns how
   many. */
static size_t
poll_set(struct sched *s, struct pollfd **pfd, size_t *cap)
{
	size_t	n = 0;

	if (*cap < s->nacct + 1) {
		*cap = s->nacct + 1;
		*pfd = xrealloc(*pfd, *cap * sizeof **pfd);
	}
	(*pfd)[n].fd = s->sigpipe[0];
	(*pfd)[n++].events = POLLIN;
	for (size_t i = 0; i < s->nacct; i++)
		if (s->accts[i].idle.fd != -1) {
			(*pfd)[n].fd = s->accts[i].idle.fd;
			(*pfd)[n++].events = POLLIN;
		}
	return n;
}

/* Reads the watchers whose pipes poll() found ready. */
static void
read_watchers(struct sched *s, const struct pollfd *pfd, size_t n)
{
	for (size_t i = 0; i < s->nacct; i++) {
		struct acct *a = &s->accts[i];
		bool	new_mail = false;

		if (a->idle.fd == -1)
			continue;
		for (size_t k = 1; k < n; k++)
			if (pfd[k].fd == a->idle.fd && pfd[k].revents != 0) {
				watcher_read(&a->idle, a->name, &new_mail);
				idle_new_mail(s, a, new_mail);
				break;
			}
	}
}

/*
 * The state file must stay the one the service started with: a removed
 * or replaced file would be recreated empty by the next pass, and every
 * message kept on the servers delivered again.  The service stops with
 * an error instead; only a start creates a new one (with a notice).
 */
static void
state_check(struct sched *s)
{
	struct stat	st;

	if (s->stopping || (stat(s->cfg->general.state, &st) == 0 &&
	    st.st_dev == s->state_dev && st.st_ino == s->state_ino))
		return;
	log_error("service: the state file %s was removed or replaced while "
	    "the service ran; stopping, so that nothing is delivered again "
	    "-- restore it, or start the service again to begin a new one",
	    s->cfg->general.state);
	s->exit_rc = EX_IOERR;
	begin_stop(s, "the state file is gone");
}

static void
loop(struct sched *s)
{
	struct pollfd	*pfd = NULL;
	size_t		 cap = 0;

	for (;;) {
		int64_t	 next, wait;
		size_t	 n;
		bool	 waiting;

		reap(s);
		/* first: a stop it begins is seen in this round */
		state_check(s);
		if (s->stopping) {
			if (s->running == 0)
				break;
			kill_to_stop(s);
		}
		kill_stalled(s);
		waiting = grant_check(s);
		next = schedule(s);
		if (s->stopping && s->stop_deadline_ms < next)
			next = s->stop_deadline_ms;
		if (waiting && next > now_ms() + GRANT_POLL_MS)
			next = now_ms() + GRANT_POLL_MS;
		if (s->dirty)
			write_status(s);
		n = poll_set(s, &pfd, &cap);
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
		read_watchers(s, pfd, n);
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

/* Takes the state directory, the service lock and a look at the
   database; a sysexits(3) status on failure, else EX_OK. */
static int
start(struct sched *s)
{
	struct seen_db	*db = NULL;
	struct mh_err	 err;
	struct stat	 st;
	char		 buf[1200];
	long		 holder;

	mh_err_clear(&err);
	if (mkdir_p(s->dir, 0700, &err) == -1) {
		log_error("service: %s", mh_err_str(&err, buf, sizeof buf));
		return EX_IOERR;
	}
	if ((s->lockfd = take_service_lock(s->dir, &holder)) < 0) {
		int	rc = s->lockfd == -1 ? SCHED_EXIT_RUNNING : EX_IOERR;

		if (s->lockfd == -1)
			log_error("another mailhaul run (pid %ld) serves this "
			    "state file (%s)", holder, s->cfg->general.state);
		else
			log_error("service: cannot lock %s/service.lock: %s",
			    s->dir, strerror(errno));
		s->lockfd = -1;
		return rc;
	}
	/* fail early on a broken database; closed before any fork */
	if (stat(s->cfg->general.state, &st) == -1 && errno == ENOENT)
		log_info("service: no state file yet; creating %s",
		    s->cfg->general.state);
	if (seen_open(s->cfg->general.state, &db, &err) == -1) {
		log_error("service: %s", mh_err_str(&err, buf, sizeof buf));
		return EX_IOERR;
	}
	seen_close(db);
	if (stat(s->cfg->general.state, &st) == -1) {
		log_error("service: %s: %s", s->cfg->general.state,
		    strerror(errno));
		return EX_IOERR;
	}
	s->state_dev = st.st_dev;
	s->state_ino = st.st_ino;
	if (setup_signals(s) == -1) {
		log_error("service: signals: %s", strerror(errno));
		return EX_OSERR;
	}
	return EX_OK;
}

int
scheduler_run(struct config **cfgp, int verbosity)
{
	struct sched	 s;
	int		 rc;

	memset(&s, 0, sizeof s);
	s.cfg = *cfgp;
	s.verbosity = verbosity;
	s.lockfd = -1;
	s.sigpipe[0] = s.sigpipe[1] = -1;
	s.dir = config_state_dir(s.cfg);
	s.started = time(NULL);
	s.worker_deadline_ms = env_ms("MAILHAUL_WORKER_DEADLINE", 0);
	s.stop_grace_ms = env_ms("MAILHAUL_STOP_GRACE", STOP_GRACE_MS);
	s.kill_grace_ms = env_ms("MAILHAUL_KILL_GRACE", KILL_GRACE_MS);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	if ((rc = start(&s)) == EX_OK) {
		/* once, before the passes and watchers are forked */
		s.trust = endpoint_trust_attach(s.cfg);
		worker_prewarm();
		build_accounts(&s);
		log_info("service: started (pid %ld), %zu enabled accounts, "
		    "state %s", (long)getpid(), s.nacct,
		    s.cfg->general.state);
		loop(&s);
		log_info("service: stopped");
		rc = s.exit_rc;
	}
	for (size_t i = 0; i < s.nacct; i++) {
		watcher_stop(&s.accts[i].idle);
		free(s.accts[i].name);
	}
	free(s.accts);
	if (s.lockfd != -1) {
		service_status_remove(s.dir);
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
	/* no connection is made with s.cfg after this */
	net_trust_free(s.trust);
	*cfgp = s.cfg;
	return rc;
}
