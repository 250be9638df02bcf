/*
 * sync.c -- one account, one pass: the sync transaction of DESIGN.md.
 * The engine drives a source (fetch/source.h) and a target
 * (forward/target.h) and records in the state (fetch/state/seen.h); it
 * knows no protocol.
 *
 * A folder's pass, in named steps:
 *   folder_begin (source row, lock, run, spool) -> folder_list (login,
 *   list, scan: each message's key and what to do with it) ->
 *   folder_run (per mode; a normal pass: fetch_all, then
 *   finish_session) -> folder_end.
 * fetch_all overlaps fetching with delivery: a fetch thread
 * (pipeline.h) retrieves the planned messages into spool files ahead of
 * the deliveries, bounded in bytes; it alone uses the source until it
 * stops, so the marks of delivered messages (deletions, \Seen) are
 * queued on the source after it stopped, before source_commit.
 * One message (sync_begin, sync_end), on the delivery side:
 *   step_fetch (takes the retrieved message) -> step_known (after a
 *   UIDVALIDITY change) -> step_ready (look-up, intent) -> deliver ->
 *   step_record -> step_mark; an SMTP/LMTP target is sent the next
 *   message ahead while one is recorded (look_ahead).
 * For a target that can be asked about a message in doubt (maildir,
 * IMAP APPEND, Gmail) the same steps run over batches instead, with
 * one transaction for the intents and one for the records of a batch
 * (group commit: deliver_batched).
 *
 * The order that invariant I1 depends on lives in sync_end(),
 * mark_delivered() (only what step_mark listed: committed deliveries)
 * and finish_session() only:
 *
 *   retrieve -> deliver -> commit `delivered` -> mark for deletion
 *   -> source_commit (QUIT/EXPUNGE) -> record the deletions.
 *
 * Anything that goes wrong before source_commit ends in source_abort,
 * which commits no deletion on the server.  What goes on after a
 * failure is decided from the error's scope and class (util.h): a
 * message-scoped one is recorded and the pass goes on; a target-scoped
 * one stops the deliveries but still ends the source session cleanly.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetch/state/lock.h"
#include "fetch/source.h"
#include "fetch/state/seen_ident.h"
#include "fetch/state/spool.h"
#include "fetch/engine/identity.h"
#include "fetch/engine/keys.h"
#include "fetch/engine/pipeline.h"
#include "fetch/engine/sync.h"
#include "net/login.h"
#include "forward/message.h"
#include "forward/target.h"
#include "log.h"
#include "net/endpoint.h"

/* What the pass decided about one listed message. */
enum plan_action {
	PLAN_NOTHING = 0,
	PLAN_FETCH,		/* new, or a temporary failure to retry */
	PLAN_DELETE,		/* delivered earlier, due for deletion */
};

/* Everything one folder's pass needs; lives on sync_folder's stack. */
struct pass {
	const struct config		*cfg;
	const struct cfg_account	*acct;
	const struct sync_opts		*opts;
	struct seen_db			*db;
	const char			*folder;
	int64_t				 id;	/* the source's row */
	struct source			**session;	/* the account's, shared
							   by its folders */
	struct source			*src;		/* *session, once the
							   folder is open */
	struct target			*tg;
	struct seen_set			*seen;
	struct source_list		 list;
	enum plan_action		*action;	/* per list entry */
	enum seen_state			*outcome;	/* per entry: what this
							   pass recorded, or 0 */
	char				**keys;		/* per entry: uid (the
							   list's, borrowed) or
							   content key (owned) */
	const struct source_msg		**marked;	/* deletions queued */
	size_t				 nmarked;
	bool				 uidvalidity_changed;
	bool				 remap_left;	/* an earlier pass's
							   change not matched
							   through (folders) */
	bool				 remap;		/* match by content
							   what was delivered
							   under older
							   UIDVALIDITYs */
	struct seen_source		 ident;		/* the source's endpoint */
	bool				 provisional;	/* id is the account's row
							   under its previous
							   endpoint (identity.h) */
	bool				 target_down;
	struct mh_err			 target_err;	/* why it is down */
	int				 spool;
	char				*spool_dir;
	char				*state_dir;
	int				 lockfd;
	int64_t				 run;		/* the run's row, or 0 */
	uint32_t			 known_uv;	/* what the state knew */
	uint32_t			 known_last;	/* of the folder (IMAP) */
	bool				 session_open;
	struct login			 tlogin;	/* the target's secret */
	struct login			*login;		/* the account's */
	struct seen_run_counts		*counts;
	int64_t				 started_ms;
	int64_t				 progress_ms;
	size_t				 nfetch, done;
	size_t				 nstuck;	/* stuck, not due */
	unsigned			 lost_in_a_row;	/* see LOST_IN_A_ROW */
	const struct source_msg		**order;	/* the plan, for the
							   fetch thread */
	size_t				*delivered;	/* list entries to mark
							   once it stopped */
	size_t				 ndelivered;
	size_t				 settled;	/* keys[0..settled) were
							   delivered: not looked
							   up (settled_head) */
	struct ahead			*ahead;		/* deliver_fetched's, when
							   the target sends
							   ahead; else NULL */
};

/*
 * A target that loses the connection during this many messages in a row
 * (no reply at all, each time after a fresh connection) is treated as
 * down for the rest of the pass: one message that breaks the connection
 * must not stop the others, a target that breaks it for every message
 * must not be made to take the whole mailbox in vain.
 */
#define LOST_IN_A_ROW	3

static int	sync_folder(const struct config *, const struct cfg_account *,
		    const char *, struct login *, struct source **,
		    struct seen_db *, const struct sync_opts *,
		    struct sync_result *);

static const struct source_msg **plan_order(struct pass *);
struct inflight;
static int	sync_begin(struct pass *, const struct pipeline_item *,
		    struct inflight **, struct mh_err *);

/* Set from a signal handler: stop after the message in flight. */
static volatile sig_atomic_t stop_requested;

void
sync_request_stop(void)
{
	stop_requested = 1;
}

/*
 * MAILHAUL_CRASH_AT_STEP=NAME:K (the crash tests): whether this step,
 * named what, is the K-th (default 1st) step named NAME.
 */
static bool
crash_at_name(const char *spec, const char *what)
{
	static atomic_long	 seen;
	size_t			 n = strcspn(spec, ":");
	long			 k = spec[n] == ':' ? strtol(spec + n + 1, NULL,
				    10) : 1;

	if (strlen(what) != n || strncmp(spec, what, n) != 0)
		return false;
	return atomic_fetch_add(&seen, 1) + 1 == k;
}

void
sync_step(const char *what)
{
	/* atomic: the fetch thread takes steps too */
	static atomic_long	 counter, crash_at = -1;
	/* the delivery side's latest step: where it was when the fetch
	   thread's step stops the process */
	static _Atomic(const char *) delivery_at = "";
	/*
	 * Armed, a step is taken under a lock the stop keeps: the other side
	 * cannot take a step (begin a delivery) between the decision and the
	 * end of the process, so the message says where both sides were.
	 */
	static pthread_mutex_t	 mu = PTHREAD_MUTEX_INITIALIZER;
	const char		*s = getenv("MAILHAUL_CRASH_AT_STEP");
	const char		*other = "";
	char			*end;
	long			 count;
	bool			 armed;

	if (atomic_load(&crash_at) == -1) {
		atomic_store(&crash_at, (s != NULL && *s != '\0') ?
		    strtol(s, &end, 10) : 0);
		if (s != NULL && *s != '\0' && *end != '\0')
			atomic_store(&crash_at, -2);	/* by name */
	}
	if ((armed = atomic_load(&crash_at) != 0))
		pthread_mutex_lock(&mu);
	if (strcmp(what, "fetch") != 0)
		atomic_store(&delivery_at, what);
	else
		other = atomic_load(&delivery_at);
	count = atomic_fetch_add(&counter, 1) + 1;
	log_debug("step %ld: %s", count, what);
	if ((crash_at > 0 && count == crash_at) || (crash_at == -2 &&
	    crash_at_name(s, what))) {
		fprintf(stderr, "mailhaul: crash test: stopping dead at step "
		    "%ld (%s%s%s)\n", count, what, *other != '\0' ?
		    "; delivery side after " : "", other);
		_exit(99);	/* the lock held: no other step begins */
	}
	if (armed)
		pthread_mutex_unlock(&mu);
}

static void
progress(struct pass *p, bool final)
{
	FILE	*f = p->opts->progress;
	int64_t	 now, ms;
	double	 mb, rate;

	if (f == NULL || p->nfetch == 0)
		return;
	now = now_ms();
	if (!final && now - p->progress_ms < 200)
		return;
	p->progress_ms = now;
	ms = now - p->started_ms;
	mb = (double)p->counts->bytes / (1024.0 * 1024.0);
	rate = ms > 0 ? mb * 1000.0 / (double)ms : 0.0;
	fprintf(f, "\r\033[K%s: %zu/%zu messages, %.1f MiB, %.1f MiB/s",
	    p->acct->name, p->done, p->nfetch, mb, rate);
	if (final)
		fputs("\r\033[K", f);
	fflush(f);
}

static bool
due_for_deletion(const struct cfg_account *acct, const struct seen_entry *e,
    time_t now)
{
	if (e->deleted)
		return false;
	if (!acct->keep || acct->move_to != NULL)
		return true;
	if (acct->delete_after > 0 && e->delivered_at > 0 &&
	    now - e->delivered_at >= acct->delete_after)
		return true;
	return false;
}

/*
 * A new message over max_size: recorded skipped (once, in a normal
 * pass) and not fetched.  Returns 1 when it is over, 0 when not, -1.
 */
static int
decide_size(struct pass *p, size_t i, const struct seen_entry *e,
    struct mh_err *err)
{
	const struct source_msg	*m = &p->list.msgs[i];
	struct seen_msg		 sm = { .uid = p->keys[i],
	    .uidvalidity = p->list.uidvalidity, .size = m->size };
	char			 why[128];

	/* a message tried before (or `retry`-ed) is fetched whatever its
	   size; a skipped one is judged again against the current limit */
	if (p->opts->mode == SYNC_MARK_SEEN || p->acct->max_size == 0 ||
	    m->size <= p->acct->max_size ||
	    (e != NULL && e->state == SEEN_TEMPFAIL))
		return 0;
	if (e != NULL || p->opts->mode != SYNC_NORMAL)
		return 1;
	snprintf(why, sizeof why, "larger than max_size (%" PRIu64 " > %"
	    PRIu64 " bytes)", m->size, p->acct->max_size);
	log_info("%s: skipping message %s: %s", p->acct->name, m->uid, why);
	if (seen_record_skipped(p->db, p->id, &sm, why, err) == -1)
		return -1;
	p->counts->skipped++;
	p->outcome[i] = SEEN_SKIPPED;
	return 1;
}

/*
 * Gmail: a new message whose X-GM-MSGID another folder (label) of the
 * account delivered is recorded delivered, not fetched.  1 when it was,
 * 0 when not, -1.
 */
static int
decide_gm(struct pass *p, size_t i, struct mh_err *err)
{
	const struct source_msg	*m = &p->list.msgs[i];
	struct seen_msg		 sm = { .uid = p->keys[i],
	    .uidvalidity = p->list.uidvalidity, .size = m->size };
	char			*other = NULL;

	if (m->gm_msgid == 0 || p->opts->mode != SYNC_NORMAL)
		return 0;
	if (seen_ident_gm_elsewhere(p->db, p->id, m->gm_msgid, &other,
	    err) == -1)
		return -1;
	if (other == NULL)
		return 0;
	log_info("%s: %s: UID %s (X-GM-MSGID %" PRIu64 ") was delivered from "
	    "folder %s already; not fetching it", p->acct->name, p->folder,
	    m->uid, m->gm_msgid, other);
	free(other);
	if (seen_record_delivered(p->db, p->id, &sm, err) == -1)
		return -1;
	p->outcome[i] = SEEN_DELIVERED;
	if (!p->acct->keep || p->acct->move_to != NULL)
		p->action[i] = PLAN_DELETE;
	return 1;
}

/* Decides what this pass does with listed message i (its key is set). */
static int
decide(struct pass *p, size_t i, time_t now, struct mh_err *err)
{
	const struct seen_entry	*e = seen_lookup(p->seen, p->keys[i]);
	int			 r;

	p->list.msgs[i].limit = identity_entry_limit(p->acct,
	    p->list.msgs[i].size, e);
	/* a UIDL given again to a new message? fetched; its content says */
	if (identity_reused(p->acct, &p->list, e))
		e = NULL;
	if (e == NULL && (r = decide_gm(p, i, err)) != 0)
		return r == -1 ? -1 : 0;
	if (e == NULL || e->state == SEEN_TEMPFAIL ||
	    e->state == SEEN_SKIPPED) {
		if ((r = decide_size(p, i, e, err)) != 0)
			return r == -1 ? -1 : 0;
		/* stuck: tried every few hours, not every pass */
		if (e != NULL && p->opts->mode == SYNC_NORMAL &&
		    !seen_retry_due(e, now)) {
			log_debug("%s: message %s is stuck; tried again in "
			    "%lld min", p->acct->name, p->list.msgs[i].uid,
			    (long long)(e->last_tried + SEEN_STUCK_RETRY -
			    now) / 60 + 1);
			p->nstuck++;
			return 0;
		}
		if (p->opts->mode != SYNC_MARK_SEEN &&
		    p->acct->max_messages > 0 &&
		    p->nfetch >= p->acct->max_messages)
			return 0;
		p->action[i] = PLAN_FETCH;
		p->nfetch++;
	} else if (e->state == SEEN_DELIVERED &&
	    due_for_deletion(p->acct, e, now))
		p->action[i] = PLAN_DELETE;
	return 0;
}

/*
 * The pass's own spool file (a header fetched for a key or a remap, a
 * message in the serial loop), made on first use: a pass that needs
 * none creates no file.  Its fd, or -1 with err.
 */
static int
pass_spool(struct pass *p, struct mh_err *err)
{
	if (p->spool == -1)
		p->spool = spool_open(p->spool_dir, err);
	return p->spool;
}

/*
 * Whether planned message i is one delivered before a UIDVALIDITY
 * change, told from its Message-ID (the header alone) and size: 1 when
 * it is (recorded delivered under its new UID), 0 when it is not or
 * cannot be told, -1 when the session broke.
 */
static int
remap_one(struct pass *p, size_t i, struct mh_err *err)
{
	const struct source_msg	*m = &p->list.msgs[i];
	struct message_info	 info;
	struct seen_msg		 sm = { .uid = p->keys[i],
	    .uidvalidity = p->list.uidvalidity, .size = m->size };
	struct mh_err		 herr;
	char			 buf[4096];
	ssize_t			 n;

	mh_err_clear(&herr);
	if (pass_spool(p, err) == -1 || spool_reset(p->spool, err) == -1)
		return -1;
	if (source_fetch_header(p->src, m, p->spool, &herr) == -1) {
		if (herr.cls == MH_ERR_NONE || herr.scope == MH_SCOPE_MESSAGE)
			return 0;	/* unsupported, or not this one */
		*err = herr;
		return -1;
	}
	if ((n = pread(p->spool, buf, sizeof buf, 0)) <= 0)
		return 0;
	message_scan_buf(buf, (size_t)n, &info);
	if (info.message_id[0] == '\0' || seen_lookup_id(p->seen,
	    info.message_id, m->size, &sm.digest) == NULL)
		return 0;
	sm.message_id = info.message_id;
	if (seen_record_delivered(p->db, p->id, &sm, err) == -1)
		return -1;
	p->action[i] = PLAN_NOTHING;
	p->outcome[i] = SEEN_DELIVERED;
	p->nfetch--;
	return 1;
}

/*
 * After a UIDVALIDITY change every message has a new UID: those
 * delivered before are told by their Message-ID and size, fetched from
 * the header only, and their bodies are not fetched again; the others
 * (no Message-ID, no match) are fetched and matched by content
 * (step_known) or delivered.
 */
static int
remap(struct pass *p, struct mh_err *err)
{
	const struct source_msg	**order;
	size_t			  i, matched = 0;
	int			  r = 0;

	if (p->nfetch == 0)
		return 0;
	order = plan_order(p);
	for (i = 0; i < p->list.n && r != -1; i++)
		if (p->action[i] == PLAN_FETCH &&
		    (r = remap_one(p, i, err)) == 1)
			matched++;
	source_plan(p->src, NULL, 0);
	free(order);
	if (matched > 0)
		log_info("%s: %s: %zu message(s) delivered before the "
		    "UIDVALIDITY change recognised by Message-ID and size; "
		    "not fetched again", p->acct->name, p->folder, matched);
	return r == -1 ? -1 : 0;
}

/*
 * A POP3 listing came without sizes (source_list_sizes): they are asked
 * for the messages this pass may fetch only, those that are new, failed
 * temporarily, skipped by max_size, or under a reused UIDL (decide
 * judges them by size); a poll with nothing new asks for none.
 */
static int
list_sizes(struct pass *p, struct mh_err *err)
{
	bool	*want = xcalloc(p->list.n ? p->list.n : 1, sizeof *want);
	size_t	 i;
	int	 rc;

	for (i = p->settled; i < p->list.n; i++) {
		const struct seen_entry *e = seen_lookup(p->seen, p->keys[i]);

		want[i] = e == NULL || identity_reused(p->acct, &p->list, e) ||
		    (e->state != SEEN_DELIVERED && e->state != SEEN_FAILED);
	}
	rc = source_list_sizes(p->src, &p->list, want, err);
	free(want);
	return rc;
}

/*
 * POP3 with UIDL when nothing delivered is ever deleted (keep, no
 * delete_after, no move_to): the head of the listing that the state
 * records as settled (seen_settled_get) is not looked up, only its keys
 * compared.  New mail comes at the end of a POP3 listing, so a poll
 * looks up what is new only.
 */
static bool
settle_applies(const struct pass *p)
{
	const struct cfg_account *a = p->acct;

	return a->protocol == CFG_PROTO_POP3 && p->list.has_uids &&
	    a->keep && a->delete_after == 0 && a->move_to == NULL &&
	    !p->provisional;
}

static int
settled_head(struct pass *p, struct mh_err *err)
{
	char	sha[65], got[65];
	size_t	n;

	p->settled = 0;
	if (p->id == 0 || seen_settled_get(p->db, p->id, &n, sha, err) == -1)
		return p->id == 0 ? 0 : -1;
	if (!settle_applies(p) || n == 0 || n > p->list.n)
		return 0;
	keys_digest(p->keys, n, got);
	if (strcmp(got, sha) == 0)
		p->settled = n;
	return 0;
}

/*
 * After a good pass: records the head of the listing that is all
 * delivered now, for the next pass (settled_head), when it changed.  A
 * failure is a warning: the next pass looks everything up.
 */
static void
settle(struct pass *p)
{
	const struct seen_entry	*e;
	struct mh_err		 serr;
	char			 sha[65];
	size_t			 k = 0, stored;

	mh_err_clear(&serr);
	/* what is recorded now: this pass's prune may have unsettled it */
	if (p->id == 0 || seen_settled_get(p->db, p->id, &stored, sha,
	    &serr) == -1)
		return;
	for (k = 0; settle_applies(p) && k < p->list.n; k++) {
		if (k < p->settled || p->outcome[k] == SEEN_DELIVERED)
			continue;
		e = seen_lookup(p->seen, p->keys[k]);
		if (e == NULL || e->state != SEEN_DELIVERED || e->deleted ||
		    seen_in_doubt(p->seen, p->keys[k]))
			break;
	}
	if (k == p->settled && k == stored)
		return;		/* as recorded */
	if (k > 0)
		keys_digest(p->keys, k, sha);
	if (seen_settled_set(p->db, p->id, k, k > 0 ? sha : NULL,
	    &serr) == -1)
		log_warn("%s: cannot record the settled listing: %s",
		    p->acct->name, serr.msg);
}

/* Scans the listing: each message's key, then what to do with it. */
static int
scan(struct pass *p, struct mh_err *err)
{
	time_t		 now = time(NULL);
	size_t		 i, n = p->list.n ? p->list.n : 1;

	p->action = xcalloc(n, sizeof *p->action);
	p->outcome = xcalloc(n, sizeof *p->outcome);
	p->keys = xcalloc(n, sizeof *p->keys);
	mh_prefault(p->keys, n * sizeof *p->keys);	/* written through */
	if (!p->list.has_uids && p->list.n > 0 && pass_spool(p, err) == -1)
		return -1;
	for (i = 0; i < p->list.n; i++) {
		if (p->list.has_uids) {
			/* the UID itself, borrowed: the list outlives the
			   keys (pass_free); no copy of 100k UIDs per poll */
			p->keys[i] = p->list.msgs[i].uid;
			continue;
		}
		if (keys_message_key(p->src, &p->list, &p->list.msgs[i],
		    p->spool, &p->keys[i], err) == -1)
			return -1;
		keys_number_twin(p->keys, i);
	}
	/* what the state knows of these keys only, not of all history,
	   nor of the settled head of the listing */
	if (settled_head(p, err) == -1 || seen_load_keys(p->db, p->id,
	    p->list.uidvalidity, (const char *const *)p->keys + p->settled,
	    p->list.n - p->settled, p->remap, &p->seen,
	    err) == -1)
		return -1;
	if (p->list.sizes_pending && list_sizes(p, err) == -1)
		return -1;
	for (i = p->settled; i < p->list.n; i++)
		if (decide(p, i, now, err) == -1)
			return -1;
	if (p->remap && p->opts->mode == SYNC_NORMAL && remap(p, err) == -1)
		return -1;
	if (p->nstuck > 0)
		log_info("%s: %zu stuck message(s) not tried this pass (they "
		    "are tried every %d h; `mailhaul status` lists them, "
		    "`mailhaul retry %s` tries them now)", p->acct->name,
		    p->nstuck, SEEN_STUCK_RETRY / 3600, p->acct->name);
	return 0;
}

static int
mark_delete(struct pass *p, const struct source_msg *m, struct mh_err *err)
{
	sync_step("mark-delete");
	if (source_mark_delete(p->src, m, err) == -1)
		return -1;
	p->marked[p->nmarked++] = m;
	return 0;
}

/*
 * The recipient a Received: header may name ("for <...>"): the one this
 * delivery goes to when it goes to exactly one, else NULL (naming one
 * of several would tell the others who else got it).
 */
static const char *
sole_recipient(const struct cfg_target *t, char *const *done, size_t ndone)
{
	const char	*sole = NULL;
	size_t		 i, j;

	for (i = 0; i < t->smtp.nrecipients; i++) {
		for (j = 0; j < ndone; j++)
			if (strcmp(done[j], t->smtp.recipients[i]) == 0)
				break;
		if (j < ndone)
			continue;
		if (sole != NULL)
			return NULL;
		sole = t->smtp.recipients[i];
	}
	return sole;
}

/* The message in flight: what the steps hand each other. */
struct inflight {
	size_t			 i;		/* in p->list */
	const struct source_msg	*m;
	struct message_info	 info;
	struct seen_msg		 sm;
	char			**done;		/* destinations that have it */
	size_t			 ndone;
	int			 fd;		/* its spool file */
	struct target_result	 res;		/* what this delivery did */
	struct mh_err		 derr;		/* why it did not */
	struct target_msg	 tm;		/* build_msg */
	char			*received, *skey;
	enum target_outcome	 out;		/* a batch's (deliver_batch);
						   sync_begin's when settled */
	enum { F_SEND, F_SETTLED, F_KNOWN } state;	/* sync_begin's */
	bool			 staged;	/* delivered in batch mode:
						   durable at target_flush */
	char			 buf[1200];
};

static void
inflight_free(struct inflight *f)
{
	if (f == NULL)
		return;
	seen_strv_free(f->done, f->ndone);
	target_result_clear(&f->res);
	free(f->received);
	free(f->skey);
	free(f);
}

/*
 * For a temporary failure of f's message, before it is recorded: when
 * this failure makes it stuck (seen.h), says so and returns true.
 */
static bool
became_stuck(struct pass *p, struct inflight *f, const char *why)
{
	const struct seen_entry	*prev = seen_lookup(p->seen, p->keys[f->i]);
	struct seen_entry	 e;
	char			 since[32];
	struct tm		 tm;

	memset(&e, 0, sizeof e);
	if (prev != NULL && prev->state == SEEN_TEMPFAIL)
		e = *prev;
	e.state = SEEN_TEMPFAIL;
	e.tries++;
	e.last_tried = time(NULL);
	if (e.first_failed == 0)
		e.first_failed = e.last_tried;
	if (!seen_stuck(&e) || (prev != NULL && seen_stuck(prev)))
		return false;
	localtime_r(&e.first_failed, &tm);
	strftime(since, sizeof since, "%Y-%m-%d %H:%M", &tm);
	log_warn("%s: message %s is stuck: %d failures since %s; it stays on "
	    "the server, is tried again every %d h, and `mailhaul retry %s` "
	    "tries it now; the last one: %s", p->acct->name, f->m->uid,
	    e.tries, since, SEEN_STUCK_RETRY / 3600, p->acct->name, why);
	return true;
}

/*
 * The server sent more for f's message than it may (source.h: its
 * limit): recorded as refused, with the reason, so that it is not
 * downloaded again every pass (`mailhaul retry` tries it again); the
 * session is broken, so the pass stops (-1, err kept).
 */
static int
fetch_refused(struct pass *p, struct inflight *f, struct mh_err *err)
{
	struct mh_err	rerr;

	mh_err_str(err, f->buf, sizeof f->buf);
	log_warn("%s: message %s refused: %s", p->acct->name, f->m->uid,
	    f->buf);
	mh_err_clear(&rerr);
	if (seen_record_failed(p->db, p->id, &f->sm, true, f->buf,
	    &rerr) == -1) {
		*err = rerr;
		return -1;
	}
	p->counts->failed++;
	p->outcome[f->i] = SEEN_FAILED;
	mh_err_scope(err, MH_SCOPE_NONE);
	return -1;
}

/*
 * On the fetch thread (pipeline.h): retrieves planned message k into fd.
 * Touches the source only.
 */
static int
fetch_planned(void *ctx, size_t k, int fd, struct mh_err *err)
{
	struct pass	*p = ctx;

	/* asked to stop: what the server was already asked for (a POP3
	   window) is still retrieved and delivered, nothing more is asked
	   for, so that the session ends with QUIT and deletions hold */
	if (stop_requested) {
		if (!source_requested(p->src, p->order[k]))
			return 1;
		source_plan(p->src, NULL, 0);
	}
	sync_step("fetch");
	return source_fetch(p->src, p->order[k], fd, err);
}

/*
 * Takes message i as the fetch thread retrieved it (it) and reads it.
 * 0: fetched; 1: this message could not be retrieved (recorded; the
 * session goes on); -1: stop the pass.
 */
static int
step_fetch(struct pass *p, struct inflight *f, const struct pipeline_item *it,
    struct mh_err *err)
{
	memset(&f->sm, 0, sizeof f->sm);
	f->sm.uid = p->keys[f->i];
	f->sm.uidvalidity = p->list.uidvalidity;
	f->sm.size = f->m->size;
	f->fd = it->fd;
	if (it->rc == -1) {
		*err = it->err;
		if (err->cls == MH_ERR_PROTO && err->scope == MH_SCOPE_MESSAGE)
			return fetch_refused(p, f, err);
		if (err->cls != MH_ERR_PERM || err->scope != MH_SCOPE_MESSAGE)
			return -1;
		/* this message only: retried next pass, the others go on */
		if (!became_stuck(p, f, mh_err_str(err, f->buf,
		    sizeof f->buf)))
			log_warn("%s: cannot retrieve message %s, will retry: "
			    "%s", p->acct->name, f->m->uid, f->buf);
		p->counts->tempfailed++;
		if (seen_record_failed(p->db, p->id, &f->sm, false,
		    mh_err_str(err, f->buf, sizeof f->buf), err) == -1)
			return -1;
		mh_err_clear(err);
		return 1;
	}
	f->info = it->info;
	p->counts->fetched++;
	p->counts->bytes = mh_add_sat(p->counts->bytes, f->info.size);
	f->sm.size = f->info.size;
	f->sm.message_id = f->info.message_id[0] != '\0' ?
	    f->info.message_id : NULL;
	f->sm.digest = f->info.digest;
	return 0;
}

/*
 * A POP3 UIDL whose deletion mailhaul recorded, listed again: the same
 * content is the same message (the deletion did not hold: recorded on
 * the server again, not delivered), other content a new message under a
 * reused UIDL (the old record is set aside; delivered).  1: known; 0:
 * deliver; -1.
 */
static int
known_reused(struct pass *p, struct inflight *f, struct mh_err *err)
{
	const struct seen_entry	*e = seen_lookup(p->seen, p->keys[f->i]);
	const char		*digest, *mid;
	uint64_t		 size;

	if (!identity_reused(p->acct, &p->list, e))
		return 0;
	seen_entry_content(e, &size, &digest, &mid);
	if (size == f->info.size && digest != NULL &&
	    strcmp(digest, f->info.digest) == 0) {
		log_info("%s: message %s is on the server again after its "
		    "deletion; it was delivered, not delivering it again",
		    p->acct->name, f->m->uid);
		return seen_ident_undelete(p->db, p->id, p->keys[f->i], err) ==
		    -1 ? -1 : 1;
	}
	log_info("%s: the server gave UIDL %s, deleted earlier, to a new "
	    "message; delivering it", p->acct->name, f->m->uid);
	return seen_ident_set_aside(p->db, p->id, p->keys[f->i], err);
}

/*
 * IMAP: a message another folder of the account delivered (a Gmail
 * label, a server-side move) is recorded here, not delivered again.
 */
static int
known_elsewhere(struct pass *p, struct inflight *f, struct mh_err *err)
{
	char	*other = NULL;

	if (p->acct->protocol != CFG_PROTO_IMAP || seen_ident_elsewhere(p->db,
	    p->id, f->sm.message_id, f->info.size, f->info.digest, &other,
	    err) == -1)
		return p->acct->protocol != CFG_PROTO_IMAP ? 0 : -1;
	if (other == NULL)
		return 0;
	log_info("%s: %s: UID %s was delivered from folder %s already; not "
	    "delivering it again", p->acct->name, p->folder, f->m->uid,
	    other);
	free(other);
	return 1;
}

/*
 * After a UIDVALIDITY change, what was delivered before keeps its
 * content: recorded delivered without a delivery.  1 when it was known,
 * 0 when not, -1.
 */
static int
step_known(struct pass *p, struct inflight *f, struct mh_err *err)
{
	int	r;

	if ((r = known_reused(p, f, err)) == 1 ||
	    (r == 0 && (r = known_elsewhere(p, f, err)) == 1))
		goto known;
	if (r == -1 || !p->remap ||
	    keys_match_content(p->seen, &f->info) == NULL)
		return r;
	log_info("%s: %s: UID %s was delivered before the UIDVALIDITY "
	    "change; not delivering it again", p->acct->name, p->folder,
	    f->m->uid);
known:
	if (seen_record_delivered(p->db, p->id, &f->sm, err) == -1)
		return -1;
	p->outcome[f->i] = SEEN_DELIVERED;
	return 1;
}

/*
 * A message an earlier pass began to deliver without recording the
 * outcome (a crash, a connection lost after the data: its intent is
 * still in the state) may be in the target already.  Where the target
 * can be asked, ask it (invariant I2); elsewhere deliver again (at most
 * one duplicate per crash).  1 when it is there (*out DELIVERED: recorded
 * below, not delivered again); 0 when it is not or the target cannot be
 * asked; -1 when the target cannot tell now (*out TEMPFAIL, f->derr).
 */
static int
step_doubt(struct pass *p, struct inflight *f, const struct target_msg *tm,
    enum target_outcome *out)
{
	bool	found = false;

	if (!seen_in_doubt(p->seen, p->keys[f->i]) ||
	    !target_can_look_up(p->tg))
		return 0;
	sync_step("look-up");
	if (target_seen(p->tg, tm, &found, &f->derr) == -1) {
		if (f->derr.scope == MH_SCOPE_NONE)
			mh_err_scope(&f->derr, MH_SCOPE_TARGET);
		f->derr.cls = MH_ERR_TEMP;
		*out = TARGET_TEMPFAIL;
		return -1;
	}
	if (!found)
		return 0;
	log_info("%s: message %s reached target %s before an interruption; "
	    "recording it, not delivering it again", p->acct->name,
	    f->m->uid, p->acct->target->name);
	*out = TARGET_DELIVERED;
	return 1;
}

/*
 * What the target is handed for f's message: f->tm, with f->received
 * and f->skey (freed by inflight_free).  The destinations that have it
 * already (an earlier try) are read first.
 */
static int
build_msg(struct pass *p, struct inflight *f, struct mh_err *err)
{
	const struct cfg_account *acct = p->acct;
	const struct seen_entry	*prev;
	struct target_msg	*tm = &f->tm;

	/* tried before: some destinations may have it already */
	prev = seen_lookup(p->seen, p->keys[f->i]);
	if (prev != NULL && prev->state != SEEN_DELIVERED &&
	    seen_delivered_to(p->db, p->id, &f->sm, &f->done, &f->ndone,
	    err) == -1)
		return -1;
	f->skey = keys_source_key(p->id, p->list.uidvalidity, p->keys[f->i]);
	if (acct->target->received)
		f->received = message_received(acct->name,
		    cfg_protocol_name(acct->protocol), acct->ep.host, f->m->uid,
		    f->skey, sole_recipient(acct->target, f->done, f->ndone),
		    time(NULL));
	memset(tm, 0, sizeof *tm);
	tm->fd = f->fd;
	tm->size = f->info.size;
	tm->return_path = f->info.has_return_path ? f->info.return_path :
	    NULL;
	tm->eightbit = f->info.eightbit;
	tm->received = f->received;
	tm->source_key = f->skey;
	tm->message_id = f->sm.message_id;
	/* IMAP's INTERNALDATE, else the Date: field (else none: now) */
	tm->date = f->m->date != 0 ? f->m->date : f->info.date;
	tm->done = (const char *const *)f->done;
	tm->ndone = f->ndone;
	return 0;
}

/*
 * Readies the message for the target: built, looked up when in doubt
 * (f->state F_SETTLED with f->out when that settled it), else its
 * intent recorded (F_SEND).  0 or -1.
 */
static int
step_ready(struct pass *p, struct inflight *f, struct mh_err *err)
{
	if (build_msg(p, f, err) == -1)
		return -1;
	if (step_doubt(p, f, &f->tm, &f->out) != 0) {
		f->state = F_SETTLED;
		return 0;
	}
	/* an intent the target cannot be asked about: unsynced */
	if ((target_can_look_up(p->tg) ? seen_intent_begin :
	    seen_intent_begin_unsynced)(p->db, p->id, &f->sm,
	    p->acct->target->name, err) == -1)
		return -1;
	f->state = F_SEND;
	return 0;
}

/*
 * Whether a failure that names this message only is the target's after
 * all: a connection lost, with no reply, for LOST_IN_A_ROW messages in a
 * row.
 */
static bool
lost_too_often(struct pass *p, struct inflight *f, bool perm)
{
	if (perm || f->derr.reply[0] != '\0' || f->res.ndests > 0) {
		p->lost_in_a_row = 0;
		return false;
	}
	if (++p->lost_in_a_row < LOST_IN_A_ROW)
		return false;
	log_warn("%s: target %s lost the connection during %u messages in a "
	    "row; treating it as down for this pass", p->acct->name,
	    p->acct->target->name, p->lost_in_a_row);
	return true;
}

/*
 * Records what the target did: the destinations that have it even when
 * others refused (never again to them), a refusal for good, a temporary
 * failure.  A failure of the target as a whole stops the pass's
 * deliveries and never counts against the message (it would make it
 * stuck while the target is away); one of this message only is
 * recorded, and the pass goes on with the next (reconnecting when the
 * connection was lost).  1 when the message was delivered (to be
 * committed and marked), 0 when not, -1.
 */
static int
step_record_failure(struct pass *p, struct inflight *f,
    enum target_outcome out, struct mh_err *err)
{
	const char	*name = p->acct->target->name;
	bool		 down = f->derr.scope == MH_SCOPE_TARGET;
	bool		 perm = out == TARGET_PERMFAIL && !down;
	const char	*why = mh_err_str(&f->derr, f->buf, sizeof f->buf);

	if (!down)
		down = lost_too_often(p, f, perm);
	if (f->res.ndests > 0) {
		log_warn("%s: message %s delivered to %zu of the destinations "
		    "of target %s; the others are retried", p->acct->name,
		    f->m->uid, f->res.ndests, name);
		sync_step("record");
		if (seen_record_partial(p->db, p->id, &f->sm, perm, why,
		    (const char *const *)f->res.dests, f->res.ndests,
		    err) == -1)
			return -1;
	}
	if (perm) {
		log_warn("%s: message %s refused for good by target %s: %s",
		    p->acct->name, f->m->uid, name, why);
		p->counts->failed++;
		p->outcome[f->i] = SEEN_FAILED;
	} else {
		if (down || !became_stuck(p, f, why))
			log_warn("%s: message %s not delivered, will retry: "
			    "%s", p->acct->name, f->m->uid, why);
		p->counts->tempfailed++;
	}
	if (f->res.ndests == 0 && !down &&
	    seen_record_failed(p->db, p->id, &f->sm, perm, why, err) == -1)
		return -1;
	/* in doubt only where the target can be asked about it later */
	if (!perm && !target_can_look_up(p->tg) &&
	    seen_intent_clear(p->db, p->id, &f->sm, err) == -1)
		return -1;
	/*
	 * The target is unreachable, refuses our login or TLS, or is going
	 * away: no other message will fare better.  Stop delivering, but
	 * end the source session cleanly so that deletions of what was
	 * delivered take effect.
	 */
	if (down) {
		p->target_down = true;
		p->target_err = f->derr;
		mh_err_scope(&p->target_err, MH_SCOPE_TARGET);
	}
	return 0;
}

/*
 * Sending ahead (deliver_fetched, for a target with target_prepare:
 * SMTP and LMTP with PIPELINING and CHUNKING).  When message k is
 * accepted, before its record is committed, the next message is taken
 * if the fetch side has it already (pipeline_try_next: never waits),
 * begun (sync_begin: its intent unsynced, riding with k's commit) and
 * sent up to what makes the target take it (target_prepare); k's commit
 * then runs while the server reads it, and its delivery (sync_end) only
 * sends the end.  The end never goes before k's record is durable, so a
 * crash leaves at most one message accepted and not recorded, as
 * without it (I2: one duplicate at most where the target cannot be
 * asked); a crash before the end discards the transaction at the
 * server.  A failure in beginning it is kept for after k's commit.
 */
struct ahead {
	struct pipeline		*pl;
	bool			 taken;		/* it, f, rc, err are set */
	struct pipeline_item	 it;
	struct inflight		*f;
	int			 rc;		/* sync_begin's */
	struct mh_err		 err;		/* when rc is -1 */
};

static void
look_ahead(struct pass *p)
{
	struct ahead	*a = p->ahead;

	if (a->taken || pipeline_try_next(a->pl, &a->it) != 1)
		return;
	a->taken = true;
	mh_err_clear(&a->err);
	a->rc = sync_begin(p, &a->it, &a->f, &a->err);
	if (a->rc == 1 && a->f->state == F_SEND) {
		sync_step("prepare");
		target_prepare(p->tg, &a->f->tm);
	}
}

/* The target accepted it: commit that before anything else (I1). */
static int
step_record(struct pass *p, struct inflight *f, enum target_outcome out,
    struct mh_err *err)
{
	if (out != TARGET_DELIVERED)
		return step_record_failure(p, f, out, err);
	if (p->ahead != NULL)
		look_ahead(p);
	sync_step("record");
	if (seen_record_delivered(p->db, p->id, &f->sm, err) == -1)
		return -1;
	p->outcome[f->i] = SEEN_DELIVERED;
	p->counts->delivered++;
	p->lost_in_a_row = 0;
	log_debug("%s: delivered %s (%" PRIu64 " bytes)", p->acct->name,
	    f->m->uid, f->info.size);
	return 1;
}

/*
 * Committed as delivered: \Seen, and the deletion or move if asked --
 * queued on the source by mark_delivered once the fetch thread stopped.
 */
static int
step_mark(struct pass *p, struct inflight *f)
{
	p->delivered[p->ndelivered++] = f->i;
	return 0;
}

/* The marks of step_mark, on the source (the fetch thread is done). */
static int
mark_delivered(struct pass *p, struct mh_err *err)
{
	size_t	j;

	for (j = 0; j < p->ndelivered; j++) {
		const struct source_msg *m = &p->list.msgs[p->delivered[j]];

		if (source_mark_done(p->src, m, err) == -1)
			return -1;
		if ((!p->acct->keep || p->acct->move_to != NULL) &&
		    mark_delete(p, m, err) == -1)
			return -1;
	}
	return 0;
}

/*
 * One message, up to its delivery: fetch -> known? -> ready (looked up,
 * intent).  1 with *fp: to deliver and record (sync_end); 0 when it is
 * settled already (could not be retrieved: recorded, the pass goes on);
 * -1 to stop the pass (err set).
 */
static int
sync_begin(struct pass *p, const struct pipeline_item *it,
    struct inflight **fp, struct mh_err *err)
{
	struct inflight	*f = xcalloc(1, sizeof *f);
	int		 r;

	*fp = NULL;
	f->m = p->order[it->k];
	f->i = (size_t)(f->m - p->list.msgs);
	mh_err_clear(&f->derr);
	if ((r = step_fetch(p, f, it, err)) != 0) {
		inflight_free(f);
		return r == 1 ? 0 : -1;
	}
	if ((r = step_known(p, f, err)) == 1)
		f->state = F_KNOWN;
	else if (r == -1 || step_ready(p, f, err) == -1) {
		inflight_free(f);
		return -1;
	}
	*fp = f;
	return 1;
}

/*
 * The rest: deliver -> record (commit) -> mark for deletion.  0 to go on
 * with the next message (also after a per-message failure, which is
 * recorded), -1 to stop the pass (err set).  f stays the caller's.
 */
static int
sync_end(struct pass *p, struct inflight *f, struct mh_err *err)
{
	int	r;

	if (f->state == F_SEND) {
		sync_step("deliver");
		f->out = target_deliver(p->tg, &f->tm, &f->res, &f->derr);
	}
	if (f->state != F_KNOWN) {
		if ((r = step_record(p, f, f->out, err)) == -1)
			return -1;
		if (r == 0)
			return 0;
	}
	return step_mark(p, f);
}

/* The deletions the server confirmed, in one transaction. */
static int
record_deleted(struct pass *p, struct mh_err *err)
{
	const char	**uids = xcalloc(p->nmarked + 1, sizeof *uids);
	size_t		  i;
	int		  rc;

	for (i = 0; i < p->nmarked; i++)
		uids[i] = p->keys[p->marked[i] - p->list.msgs];
	rc = seen_record_deleted_many(p->db, p->id, uids, p->nmarked, err);
	if (rc == 0)
		p->counts->deleted += (unsigned)p->nmarked;
	free(uids);
	return rc;
}

/* Records what a completed pass deleted, once the server confirmed it. */
static int
finish_session(struct pass *p, struct mh_err *err)
{
	struct mh_err	cerr;

	sync_step("commit");
	mh_err_clear(&cerr);
	if (source_commit(p->src, &cerr) == -1) {
		/* the error itself is the pass's failure line */
		if (p->nmarked > 0)
			log_warn("%s: %zu deletion(s) not confirmed by the "
			    "server; they are retried next pass (nothing is "
			    "delivered again)", p->acct->name, p->nmarked);
		*err = cerr;
		if (err->cls == MH_ERR_NONE)
			err->cls = MH_ERR_TEMP;
		return -1;
	}
	sync_step("record-deleted");
	return record_deleted(p, err);
}

static void
dry_run_report(struct pass *p)
{
	FILE		*f = p->opts->report ? p->opts->report : stdout;
	uint64_t	 bytes = 0;
	size_t		 i, ndel = 0;

	for (i = 0; i < p->list.n; i++) {
		const struct source_msg *m = &p->list.msgs[i];

		if (p->action[i] == PLAN_FETCH) {
			fprintf(f, "%s: would fetch %s (%" PRIu64 " bytes) and "
			    "deliver it to %s%s\n", p->acct->name, m->uid,
			    m->size, p->acct->target->name,
			    p->acct->keep ? "" : ", then delete it");
			bytes = mh_add_sat(bytes, m->size);
		} else if (p->action[i] == PLAN_DELETE) {
			fprintf(f, "%s: would delete %s (delivered before)\n",
			    p->acct->name, m->uid);
			ndel++;
		}
	}
	fprintf(f, "%s: %zu on the server, %zu new (%" PRIu64 " bytes), "
	    "%zu to delete\n", p->acct->name, p->list.on_server > p->list.n ?
	    p->list.on_server : p->list.n, p->nfetch, bytes,
	    ndel);
}

/* Tells the source the messages to fetch, in order; returns the array
   (borrowed by the source until it is freed), which the caller frees. */
static const struct source_msg **
plan_order(struct pass *p)
{
	const struct source_msg	**order;
	size_t			  i, n = 0;

	order = xcalloc(p->nfetch ? p->nfetch : 1, sizeof *order);
	for (i = 0; i < p->list.n; i++)
		if (p->action[i] == PLAN_FETCH)
			order[n++] = &p->list.msgs[i];
	source_plan(p->src, order, n);
	return order;
}

/*
 * `mailhaul mark-seen`: record every message now on the server as
 * delivered.  Each one is fetched (not delivered) so that its record
 * carries the Message-ID and digest that recognise it after a UIDVALIDITY
 * change or on a server without UIDL.
 */
static int
mark_all_seen(struct pass *p, struct mh_err *err)
{
	struct message_info	 info;
	const struct source_msg	**order;
	size_t			 i;
	int			 rc = -1;

	order = plan_order(p);
	for (i = 0; i < p->list.n; i++) {
		struct seen_msg sm = { .uid = p->keys[i],
		    .uidvalidity = p->list.uidvalidity,
		    .size = p->list.msgs[i].size };

		if (p->action[i] != PLAN_FETCH)
			continue;
		if (stop_requested) {
			log_info("%s: stopping after %zu of %zu messages, as "
			    "asked; the others are not recorded yet",
			    p->acct->name, p->done, p->nfetch);
			p->counts->tempfailed += (unsigned)(p->nfetch - p->done);
			break;
		}
		if (pass_spool(p, err) == -1 || spool_reset(p->spool, err) == -1)
			goto out;
		if (source_fetch(p->src, &p->list.msgs[i], p->spool, err) == 0) {
			if (lseek(p->spool, 0, SEEK_SET) == -1 ||
			    message_scan(p->spool, &info, err) == -1)
				goto out;
			sm.size = info.size;
			sm.message_id = info.message_id[0] ? info.message_id :
			    NULL;
			sm.digest = info.digest;
		} else if (err->cls != MH_ERR_PERM)
			goto out;
		mh_err_clear(err);
		if (seen_record_adopted(p->db, p->id, &sm, err) == -1)
			goto out;
		p->outcome[i] = SEEN_DELIVERED;
		p->counts->delivered++;
		p->done++;
		progress(p, false);
	}
	rc = 0;
out:
	progress(p, true);
	free(order);
	return rc;
}

/* The highest UID below which every message is settled (IMAP). */
static uint32_t
settled_uid(struct pass *p, uint32_t known)
{
	uint32_t	last = known;
	size_t		i;

	for (i = 0; i < p->list.n; i++) {
		const struct seen_entry *e;

		if (p->list.msgs[i].num <= last)
			continue;
		/* what this pass did, else what earlier passes did; a
		   permanent failure is not settled: `retry` must find it */
		if (p->outcome[i] != 0) {
			if (p->outcome[i] != SEEN_DELIVERED &&
			    p->outcome[i] != SEEN_SKIPPED)
				break;
		} else {
			e = seen_lookup(p->seen, p->keys[i]);
			if (e == NULL || (e->state != SEEN_DELIVERED &&
			    e->state != SEEN_SKIPPED))
				break;
		}
		last = p->list.msgs[i].num;
	}
	return last;
}

/*
 * IMAP: records the folder's UIDVALIDITY and the settled UID, and
 * whether matching by content must go on: after a UIDVALIDITY change,
 * until every message listed is settled (a pass that fetched only part
 * of the folder -- max_messages, a target gone, a stop, a failed fetch
 * -- leaves messages that were never compared with what the older
 * UIDVALIDITY delivered; the next pass must still compare them).
 */
static int
save_folder(struct pass *p, uint32_t known_last, struct mh_err *err)
{
	uint32_t	last;
	bool		left;

	if (p->acct->protocol != CFG_PROTO_IMAP || p->list.uidvalidity == 0)
		return 0;
	last = settled_uid(p, p->uidvalidity_changed ? 0 : known_last);
	left = p->remap && p->list.n > 0 &&
	    last < p->list.msgs[p->list.n - 1].num;
	if (p->remap_left && !left)
		log_info("%s: %s: every message is matched through since the "
		    "UIDVALIDITY change", p->acct->name, p->folder);
	return seen_folder_set(p->db, p->id, p->list.uidvalidity, last, left,
	    err);
}

/*
 * Starts the fetch thread over the plan (p->order); NULL when there is
 * nothing to fetch or with err.  *size is the announced sizes, freed by
 * the caller after pipeline_stop.
 */
static struct pipeline *
fetch_start(struct pass *p, uint64_t **size, struct mh_err *err)
{
	size_t	k;

	p->order = plan_order(p);
	p->delivered = xcalloc(p->nfetch ? p->nfetch : 1,
	    sizeof *p->delivered);
	*size = xcalloc(p->nfetch ? p->nfetch : 1, sizeof **size);
	for (k = 0; k < p->nfetch; k++)
		(*size)[k] = p->order[k]->size;
	if (p->nfetch == 0)
		return NULL;
	return pipeline_start(*size, p->nfetch, p->spool_dir, fetch_planned,
	    p, err);
}

/*
 * Asked to stop: the fetch thread ended the plan after what the server
 * was already asked for, all delivered now; says so.
 */
static void
stopped_as_asked(struct pass *p)
{
	if (stop_requested && !p->target_down && p->done < p->nfetch)
		log_info("%s: stopping after %zu of %zu messages, as asked; "
		    "the other %zu stay on the server for the next pass",
		    p->acct->name, p->done, p->nfetch, p->nfetch - p->done);
}

/*
 * Delivers what the fetch thread retrieves, in plan order, until the
 * plan is done, the target is down or a stop is asked.  0, or -1 to
 * stop the pass (err set).
 */
static int
deliver_fetched(struct pass *p, struct pipeline *pl, struct mh_err *err)
{
	struct ahead		 a = { .pl = pl };
	struct pipeline_item	 it;
	struct inflight		*f;
	int			 r, rc = -1;

	p->ahead = target_can_prepare(p->tg) ? &a : NULL;
	for (;;) {
		if (a.taken) {		/* begun while the one before was
					   recorded: look_ahead */
			a.taken = false;
			it = a.it;
			f = a.f;
			if ((r = a.rc) == -1)
				*err = a.err;
		} else if (pipeline_next(pl, &it) == 1)
			r = sync_begin(p, &it, &f, err);
		else
			break;
		if (r == 1)
			r = sync_end(p, f, err);
		inflight_free(f);
		f = NULL;
		pipeline_release(pl, &it);
		if (r == -1) {
			/* this one and the rest wait for the next pass (one
			   taken ahead and settled already is not among them) */
			if (a.taken && (a.rc == 0 || (a.rc == 1 &&
			    a.f->state == F_KNOWN)))
				p->done++;
			p->counts->tempfailed += (unsigned)(p->nfetch -
			    p->done);
			goto out;
		}
		p->done++;
		if (p->target_down) {
			p->counts->tempfailed += (unsigned)(p->nfetch -
			    p->done);
			break;
		}
		progress(p, false);
	}
	stopped_as_asked(p);
	rc = 0;
out:
	if (a.taken) {		/* one begun, never ended: the target
				   drops it unended (target_close) */
		inflight_free(a.f);
		pipeline_release(pl, &a.it);
	}
	p->ahead = NULL;
	return rc;
}

/*
 * Group commit, for the targets that can be asked about a message in
 * doubt (maildir, IMAP APPEND, Gmail; never SMTP/LMTP/MDA, where a
 * message in doubt is delivered again).  A batch is what the fetch
 * thread has spooled when the delivery side is ready for more (at
 * least one message, at most BATCH_MAX, and within the pipeline's byte
 * bound since the batch holds its spool files):
 *
 *   batch_prepare (step_fetch, step_known, build_msg, step_doubt, each
 *   message) -> the intents of all, one transaction -> target_deliver
 *   each (maildir: written to tmp/, PENDING, made durable in new/ by
 *   its flusher thread; IMAP: APPENDs sent ahead, PENDING)
 *   -> target_collect each PENDING (the flusher's verdicts, the
 *   APPENDs' answers, in order) -> target_flush (a kind that stages:
 *   none today) -> the delivered records of all, one transaction
 *   -> step_mark.
 *
 * Nothing is marked on the source before that commit (the marks wait
 * for the fetch thread to stop anyway: mark_delivered).  A crash before
 * it leaves the batch's messages in doubt: the next pass looks each up
 * in the target (step_doubt) instead of delivering it again.  A batch
 * never waits for the source: a slow source makes small batches.
 *
 * Two batches overlap when the target pipelines: while batch k's
 * verdicts travel back (some PENDING), batch k+1 is prepared, its
 * intents committed and its messages sent, if the fetch side has
 * spooled any (pipeline_try_next: verdicts due never wait for the
 * source); only then are k's verdicts collected and k recorded.  So
 * the link to a distant server is never idle for a round trip per
 * batch.  Each message still has its intent committed before it is
 * sent and its record after its own verdict, so a crash leaves both
 * batches in doubt, as one.  A kind that pipelines does not stage
 * (target.h), so k's flush has nothing of k+1's to make durable; should
 * it fail anyway, k+1's messages delivered by then fail with it.  A
 * message in doubt in batch k+1 is looked up (step_doubt) while k is
 * due: the IMAP target reads k's answers first, that one time at the
 * cost of the round trip.
 */
#define BATCH_MAX	64

struct batch {
	struct pipeline		*pl;
	struct pipeline_item	 it[BATCH_MAX];
	bool			 released[BATCH_MAX];
	struct inflight		*f[BATCH_MAX];	/* NULL: settled in prepare */
	size_t			 n;		/* items taken */
	size_t			 ntried;	/* prepared: the rest stays */
	size_t			 ndelivered;	/* verdicts DELIVERED */
	size_t			 npending;	/* sent, verdict due */
	int			 prc;		/* batch_prepare's */
	struct mh_err		 perr;		/* when prc is -1 */
};

/*
 * Gives item k's spool file back as soon as its message is settled or
 * handed to the target (the target has the bytes), so that the fetch
 * thread goes on while the batch is flushed and committed.
 */
static void
batch_release(struct batch *b, size_t k)
{
	if (b->released[k])
		return;
	pipeline_release(b->pl, &b->it[k]);
	b->released[k] = true;
}

/* The batch's messages that go to the target, for the intents/records. */
static size_t
batch_msgs(struct batch *b, bool delivered, const struct seen_msg **sm)
{
	size_t	k, n = 0;

	for (k = 0; k < b->ntried; k++)
		if (b->f[k] != NULL && (delivered ? b->f[k]->out ==
		    TARGET_DELIVERED : b->f[k]->staged))
			sm[n++] = &b->f[k]->sm;
	return n;
}

/*
 * Steps every message of b up to its delivery: settled ones (a fetch
 * failure, known already) are done with; the others get their target
 * message, and staged set when they are to be delivered (not in doubt
 * and found).  -1 stops the pass after what was prepared before.
 */
static int
batch_prepare(struct pass *p, struct batch *b, struct mh_err *err)
{
	struct inflight	*f;
	int		 r;

	for (b->ntried = 0; b->ntried < b->n; b->ntried++) {
		f = b->f[b->ntried] = xcalloc(1, sizeof *f);
		f->m = p->order[b->it[b->ntried].k];
		f->i = (size_t)(f->m - p->list.msgs);
		mh_err_clear(&f->derr);
		if ((r = step_fetch(p, f, &b->it[b->ntried], err)) == 0 &&
		    (r = step_known(p, f, err)) == 1 && step_mark(p, f) == 0)
			r = 2;
		if (r == -1 || (r == 0 && build_msg(p, f, err) == -1))
			goto fail;
		if (r != 0) {		/* settled: recorded above */
			inflight_free(f);
			b->f[b->ntried] = NULL;
			batch_release(b, b->ntried);
			continue;
		}
		f->staged = step_doubt(p, f, &f->tm, &f->out) == 0;
	}
	return 0;
fail:
	inflight_free(b->f[b->ntried]);
	b->f[b->ntried] = NULL;
	return -1;
}

/*
 * Takes f's verdict (not PENDING): a message not delivered is no longer
 * staged, and one refused for the whole target stops the others; *n
 * counts the delivered.
 */
static void
batch_settle(struct pass *p, struct inflight *f, size_t *n)
{
	if (f->out == TARGET_DELIVERED) {
		(*n)++;
		return;
	}
	f->staged = false;
	/* as step_record_failure would: stop the others */
	if (f->derr.scope == MH_SCOPE_TARGET) {
		p->target_down = true;
		p->target_err = f->derr;
	}
}

/*
 * Sends b's staged messages (their intents committed first): f->out for
 * each, PENDING (b->npending of them) when the target pipelines.  A
 * message not tried because the target went down loses its intent (it
 * was never handed over); one sent ahead keeps it until the batch is
 * recorded.  -1 only when the state cannot be written: nothing of b is
 * recorded then, and what it sent stays in doubt.
 */
static int
batch_send(struct pass *p, struct batch *b, struct mh_err *err)
{
	const struct seen_msg	*sm[BATCH_MAX];
	size_t			 k;
	struct inflight		*f;

	b->ndelivered = b->npending = 0;
	if (seen_intent_begin_many(p->db, p->id, sm, batch_msgs(b, false, sm),
	    p->acct->target->name, err) == -1)
		return -1;
	for (k = 0; k < b->ntried; k++) {
		if ((f = b->f[k]) == NULL || !f->staged)
			continue;
		if (p->target_down) {
			f->staged = false;
			f->out = TARGET_TEMPFAIL;
			f->derr = p->target_err;
			if (seen_intent_clear(p->db, p->id, &f->sm, err) == -1)
				return -1;
			continue;
		}
		sync_step("deliver");
		f->out = target_deliver(p->tg, &f->tm, &f->res, &f->derr);
		batch_release(b, k);
		if (f->out == TARGET_PENDING)
			b->npending++;
		else
			batch_settle(p, f, &b->ndelivered);
	}
	return 0;
}

/* A failed flush: none of b's messages delivered since the last one
   counts (target.h); those still PENDING are not concerned. */
static void
batch_unflushed(struct batch *b, const struct mh_err *ferr)
{
	struct inflight	*f;

	for (size_t k = 0; k < b->ntried; k++)
		if ((f = b->f[k]) != NULL && f->staged &&
		    f->out != TARGET_PENDING) {
			f->out = TARGET_TEMPFAIL;
			f->derr = *ferr;
			target_result_clear(&f->res);
		}
}

/*
 * Collects the verdicts of b's messages sent ahead (PENDING, in the
 * order sent) and flushes the target: f->out for each.  next, when not
 * NULL, is the batch sent after b: its messages delivered (not PENDING)
 * fail with a failed flush too.
 */
static void
batch_collect(struct pass *p, struct batch *b, struct batch *next)
{
	struct mh_err	 ferr;
	size_t		 k;
	struct inflight	*f;

	for (k = 0; k < b->ntried && b->npending > 0; k++) {
		if ((f = b->f[k]) == NULL || !f->staged ||
		    f->out != TARGET_PENDING)
			continue;
		sync_step("collect");
		f->out = target_collect(p->tg, &f->res, &f->derr);
		b->npending--;
		batch_settle(p, f, &b->ndelivered);
	}
	sync_step("flush");
	if ((b->ndelivered > 0 || (next != NULL && next->ndelivered > 0)) &&
	    target_flush(p->tg, &ferr) == -1) {
		batch_unflushed(b, &ferr);
		if (next != NULL) {
			batch_unflushed(next, &ferr);
			next->ndelivered = 0;
		}
	}
}

/*
 * Records b's outcomes: the delivered ones in one committed transaction
 * (then marked), each failure as sync_one would.  -1 stops the pass.
 */
static int
batch_record(struct pass *p, struct batch *b, struct mh_err *err)
{
	const struct seen_msg	*sm[BATCH_MAX];
	struct inflight		*f;
	size_t			 k, n = batch_msgs(b, true, sm);
	bool			 was_down = p->target_down;

	sync_step("record");
	if (seen_record_delivered_many(p->db, p->id, sm, n, err) == -1)
		return -1;
	p->target_down = false;	/* step_record_failure decides again */
	for (k = 0; k < b->ntried; k++) {
		if ((f = b->f[k]) == NULL)
			continue;
		if (f->out != TARGET_DELIVERED) {
			if (step_record_failure(p, f, f->out, err) == -1)
				return -1;
			continue;
		}
		p->outcome[f->i] = SEEN_DELIVERED;
		p->counts->delivered++;
		p->lost_in_a_row = 0;
		if (step_mark(p, f) == -1)
			return -1;
	}
	p->target_down = p->target_down || was_down;
	log_debug("%s: a batch of %zu message(s), %zu delivered",
	    p->acct->name, b->ntried, n);
	return 0;
}

/*
 * Takes b's items: the first waiting for the fetch side unless told
 * not to (nowait: a batch's verdicts are due), the rest as spooled
 * already.  0 when there is none (now, or at all).
 */
static size_t
batch_take(struct batch *b, bool nowait)
{
	if ((nowait ? pipeline_try_next(b->pl, &b->it[0]) :
	    pipeline_next(b->pl, &b->it[0])) != 1)
		return 0;
	for (b->n = 1; b->n < BATCH_MAX &&
	    pipeline_try_next(b->pl, &b->it[b->n]) == 1; b->n++)
		;
	memset(b->released, 0, sizeof b->released);
	return b->n;
}

/* Prepares and sends b: 0, or -1 when the state cannot be written. */
static int
batch_start(struct pass *p, struct batch *b, struct mh_err *err)
{
	mh_err_clear(&b->perr);
	b->prc = batch_prepare(p, b, &b->perr);
	return batch_send(p, b, err);
}

/*
 * Collects and records b (unless told not to: its state could not be
 * written, and what it sent stays in doubt, counted to retry), then
 * gives its items back: 0, or -1 to stop the pass (after committing
 * what it can).  next: as for batch_collect.
 */
static int
batch_end(struct pass *p, struct batch *b, struct batch *next, bool record,
    struct mh_err *err)
{
	size_t	k;
	int	rc = 0;

	if (record) {
		batch_collect(p, b, next);
		if (batch_record(p, b, err) == -1)
			rc = -1;
		else if (b->prc == -1) {
			*err = b->perr;
			rc = -1;
		}
	}
	for (k = 0; k < b->n; k++) {
		batch_release(b, k);
		inflight_free(b->f[k]);
		b->f[k] = NULL;
	}
	if (record)
		p->done += b->ntried;
	b->n = b->ntried = 0;
	progress(p, false);
	return rc;
}

/*
 * deliver_fetched in batches (group commit, above), two of them
 * overlapping when the target pipelines.  0, or -1 to stop the pass
 * (err set).
 */
static int
deliver_batched(struct pass *p, struct pipeline *pl, struct mh_err *err)
{
	struct batch	*b[2], *cur, *due = NULL;	/* due: verdicts due */
	struct mh_err	 derr;
	int		 rc = 0;

	b[0] = xcalloc(1, sizeof *b[0]);
	b[1] = xcalloc(1, sizeof *b[1]);
	b[0]->pl = b[1]->pl = pl;
	target_set_batch(p->tg, true);
	while (rc == 0 && !p->target_down) {
		cur = due == b[0] ? b[1] : b[0];
		if (batch_take(cur, due != NULL) == 0) {
			if (due == NULL)
				break;
			rc = batch_end(p, due, NULL, true, err);
			due = NULL;
			continue;
		}
		if (batch_start(p, cur, err) == -1) {
			/* what due sent is still heard; what cur sent stays
			   in doubt, its verdicts unread */
			rc = -1;
			mh_err_clear(&derr);
			if (due != NULL)
				(void)batch_end(p, due, cur, true, &derr);
			due = NULL;
			(void)batch_end(p, cur, NULL, false, &derr);
			break;
		}
		if (due != NULL) {
			rc = batch_end(p, due, cur, true, err);
			due = NULL;
		}
		if (rc == 0 && cur->npending > 0 && cur->prc == 0 &&
		    !p->target_down)
			due = cur;
		else {
			mh_err_clear(&derr);
			if (batch_end(p, cur, NULL, true,
			    rc == 0 ? err : &derr) == -1)
				rc = -1;
		}
	}
	if (due != NULL && batch_end(p, due, NULL, true, err) == -1)
		rc = -1;
	target_set_batch(p->tg, false);
	free(b[0]);
	free(b[1]);
	if (rc == -1 || p->target_down)
		p->counts->tempfailed += (unsigned)(p->nfetch - p->done);
	if (rc == 0)
		stopped_as_asked(p);
	return rc;
}

/*
 * Of the first n messages of the plan (those handed out), how many were
 * not recorded delivered: a failed fetch or delivery, a batch given up.
 */
static size_t
undelivered(const struct pass *p, size_t n)
{
	size_t	k, left = 0;

	for (k = 0; k < n && k < p->nfetch; k++)
		if (p->outcome[p->order[k] - p->list.msgs] != SEEN_DELIVERED)
			left++;
	return left;
}

/* Passes the fetch loop over the planned messages. */
static int
fetch_all(struct pass *p, struct mh_err *err)
{
	struct pipeline	*pl = NULL;
	uint64_t	*size = NULL;
	size_t		 i, handed;
	int		 rc = -1;

	/* the target is down: nothing is fetched in vain */
	if (p->target_down)
		p->counts->tempfailed += (unsigned)p->nfetch;
	else {
		pl = fetch_start(p, &size, err);
		if (pl == NULL && p->nfetch > 0)
			goto out;
		if (pl != NULL && (target_can_look_up(p->tg) ?
		    deliver_batched(p, pl, err) :
		    deliver_fetched(p, pl, err)) == -1)
			goto out;
	}
	/* the source is ours again: what it retrieved and was not
	   delivered, never handed out or handed out and failed, was
	   fetched in vain (a POP3 server may hide it after QUIT) */
	handed = pipeline_handed(pl);
	source_fetched_in_vain(p->src, pipeline_stop(pl),
	    undelivered(p, handed));
	pl = NULL;
	if (mark_delivered(p, err) == -1)
		goto out;
	for (i = 0; i < p->list.n; i++)
		if (p->action[i] == PLAN_DELETE &&
		    mark_delete(p, &p->list.msgs[i], err) == -1)
			goto out;
	rc = 0;
out:
	pipeline_stop(pl);
	progress(p, true);
	free(size);
	return rc;
}

static void
pass_free(struct pass *p)
{
	size_t	i;

	if (p->keys != NULL && !p->list.has_uids)	/* else borrowed */
		for (i = 0; i < p->list.n; i++)
			free(p->keys[i]);
	free(p->keys);
	free(p->action);
	free(p->outcome);
	free(p->marked);
	free(p->order);
	free(p->delivered);
	source_list_free(&p->list);
	seen_set_free(p->seen);
	if (p->spool != -1)
		close(p->spool);
	free(p->spool_dir);
	free(p->state_dir);
}

static const char *
result_word(enum mh_err_class cls)
{
	switch (cls) {
	case MH_ERR_NONE:	return "ok";
	case MH_ERR_TEMP:	return "tempfail";
	case MH_ERR_BUSY:	return "busy";
	default:		return "error";
	}
}

/*
 * Opens the folder's state: its source row (none is created by a dry
 * run), the account lock, the run record, what is known of the folder,
 * the spool.
 */
static int
folder_begin(struct pass *p, struct mh_err *err)
{
	const struct cfg_account *acct = p->acct;
	char			 key[32];

	p->ident.protocol = cfg_protocol_name(acct->protocol);
	p->ident.host = acct->ep.host;
	p->ident.port = acct->ep.port;
	p->ident.user = acct->ep.user;
	p->ident.folder = p->folder;
	if (identity_resolve(p->db, &p->ident, acct->name,
	    p->opts->mode != SYNC_DRY_RUN, &p->id, &p->provisional, err) == -1)
		return -1;
	snprintf(key, sizeof key, "%" PRId64, p->id);
	p->lockfd = lock_take(p->state_dir, key, p->opts->lock_wait_ms, err);
	if (p->lockfd == -1)
		return -1;
	if (p->opts->mode == SYNC_NORMAL &&
	    seen_run_begin(p->db, p->id, &p->run, err) == -1)
		return -1;
	if (acct->protocol == CFG_PROTO_IMAP && seen_folder_get(p->db, p->id,
	    &p->known_uv, &p->known_last, &p->remap_left, err) == -1)
		return -1;
	p->spool_dir = xasprintf("%s/spool", p->state_dir);
	return 0;
}

/*
 * IMAP: lists only what is above the folder's settled UID, or above the
 * lowest one skipped by max_size (judged again every pass).  Told to the
 * session before it selects the folder, so that the listing goes out
 * with the SELECT (source_set_known).
 */
static int
set_known(struct pass *p, struct source *src, struct mh_err *err)
{
	uint32_t	low = 0, from = p->known_last;

	if (p->known_uv != 0 && seen_ident_skipped_low(p->db, p->id,
	    p->known_uv, &low, err) == -1)
		return -1;
	if (low > 0 && low <= from)
		from = low - 1;
	source_set_known(src, p->known_uv, from);
	return 0;
}

/*
 * The pass moved to the row p->id: its lock is taken (without waiting;
 * another process holding it ends this pass, busy) and the old one's
 * released, so that no two processes work on one row (I5).
 */
static int
relock(struct pass *p, struct mh_err *err)
{
	char	key[32];
	int	fd;

	if (p->id == 0)		/* a dry run made no row */
		return 0;
	snprintf(key, sizeof key, "%" PRId64, p->id);
	if ((fd = lock_take(p->state_dir, key, 0, err)) == -1)
		return -1;	/* MH_ERR_BUSY: the next pass */
	lock_release(p->lockfd);
	p->lockfd = fd;
	return 0;
}

/*
 * The folder's row is the account's under its previous endpoint: the
 * listing says whether this is the same server (its state carries over)
 * or another (a row of its own, nothing known).
 */
static int
adopt(struct pass *p, struct mh_err *err)
{
	struct seen_set	*known = NULL;
	bool		 carried;
	int64_t		 id;
	int		 rc = -1;

	if (seen_load(p->db, p->id, p->list.uidvalidity, &known, err) == -1 ||
	    identity_adopt(p->db, &p->ident, p->acct->name, p->id, p->run,
	    known, &p->list, p->opts->mode == SYNC_DRY_RUN, &id, &carried,
	    err) == -1)
		goto out;
	p->provisional = false;
	if (!carried) {
		p->id = id;
		p->known_uv = p->known_last = 0;
		if (relock(p, err) == -1)
			goto out;
	}
	rc = 0;
out:
	seen_set_free(known);
	return rc;
}

/* Logs in, lists, loads what the state knows, decides per message. */
static int
folder_list(struct pass *p, struct mh_err *err)
{
	const struct cfg_account *acct = p->acct;

	/* one login per account pass: the folders share the session while
	   it is sound (an earlier folder's failure may have broken it) */
	if (*p->session != NULL && !source_usable(*p->session)) {
		source_free(*p->session);
		*p->session = NULL;
	}
	while (*p->session == NULL && source_open(acct, NULL,
	    &p->login->cred, p->session, err) == -1)
		if (!login_retry(p->login, err))
			return -1;
	/* Retention needs the whole folder; otherwise only what is new. */
	if (acct->keep && acct->delete_after == 0 && acct->move_to == NULL &&
	    !p->provisional && set_known(p, *p->session, err) == -1)
		return -1;
	if (source_select(*p->session, p->folder, err) == -1)
		return -1;
	p->src = *p->session;
	p->session_open = true;
	if (source_list(p->src, &p->list, err) == -1)
		return -1;
	/* what is on the server, not only what was listed as new */
	p->counts->listed += (unsigned)(p->list.on_server > p->list.n ?
	    p->list.on_server : p->list.n);
	/* telling the server by its listing compares sizes: all of them */
	if (p->provisional && (source_list_sizes(p->src, &p->list, NULL,
	    err) == -1 || adopt(p, err) == -1))
		return -1;
	if (!p->list.has_uids)
		log_info("%s: the server has no UIDL; telling messages apart "
		    "by their header and size", acct->name);
	p->uidvalidity_changed = p->known_uv != 0 &&
	    p->known_uv != p->list.uidvalidity;
	p->remap = p->uidvalidity_changed || p->remap_left;
	if (p->uidvalidity_changed)
		log_warn("%s: %s: UIDVALIDITY changed from %" PRIu32 " to %"
		    PRIu32 "; matching messages by content so that nothing is "
		    "delivered twice", acct->name, p->folder, p->known_uv,
		    p->list.uidvalidity);
	else if (p->remap_left)
		log_info("%s: %s: still matching messages by content against "
		    "those delivered before the UIDVALIDITY change",
		    acct->name, p->folder);
	p->marked = xcalloc(p->list.n ? p->list.n : 1, sizeof *p->marked);
	return scan(p, err);
}

/*
 * The target, made and connected only when there is something to
 * deliver, and before anything is fetched: when it cannot be reached
 * the pass fetches nothing (a big message is not downloaded again and
 * again for a target that is down) and fails (the service backs off).
 * A refused cached OAuth2 token is refreshed and tried once more.
 */
static int
open_target(struct pass *p, struct mh_err *err)
{
	const struct cfg_target	*t = p->acct->target;
	char			 what[300];

	if (p->nfetch == 0)
		return 0;
	snprintf(what, sizeof what, "target %s", t->name);
	if (login_get(&t->ep, p->state_dir, what, &p->tlogin, err) == -1)
		return -1;
	for (;;) {
		if ((p->tg = target_new(t, p->tlogin.secret != NULL ?
		    &p->tlogin.cred : NULL, err)) == NULL)
			return -1;
		target_set_timeout(p->tg,
		    (int)(p->cfg->general.timeout * 1000));
		if (target_connect(p->tg, err) == 0)
			return 0;
		if (!p->tlogin.oauth2 || !login_retry(&p->tlogin, err))
			break;
		target_close(p->tg);
		p->tg = NULL;
	}
	{
		char buf[1200];

		log_warn("%s: target %s cannot take mail now (%s); fetching "
		    "nothing", p->acct->name, t->name,
		    mh_err_str(err, buf, sizeof buf));
	}
	p->target_down = true;
	p->target_err = *err;
	if (p->target_err.cls == MH_ERR_NONE)
		p->target_err.cls = MH_ERR_TEMP;
	mh_err_scope(&p->target_err, MH_SCOPE_TARGET);
	mh_err_clear(err);
	return 0;
}

/* A normal pass: deliver, then end the source session (deletions). */
static int
folder_deliver(struct pass *p, struct mh_err *err)
{
	char	buf[1200];
	int	r;

	if (open_target(p, err) == -1 || fetch_all(p, err) == -1)
		return -1;
	/* the folder's state first: deletions are recorded against the
	   UIDVALIDITY it names */
	if (save_folder(p, p->known_last, err) == -1)
		return -1;
	p->session_open = false;
	r = finish_session(p, err);
	/*
	 * A target that is down fails the pass, whatever the source
	 * session did (the service backs off; a login or TLS failure exits
	 * 77/69).  The target going down is the news, not what it did to
	 * the source session (postponed deletions): say the latter as a
	 * warning.
	 */
	if (p->target_down) {
		if (r == -1)
			log_warn("%s: %s", p->acct->name, mh_err_str(err, buf,
			    sizeof buf));
		*err = p->target_err;
		if (err->cls == MH_ERR_NONE)
			err->cls = MH_ERR_TEMP;
		return -1;
	}
	return r;
}

/*
 * Whether an IMAP folder's records may be pruned at all: only a folder
 * that is its account's only one, by the config (one name, no pattern)
 * and by the state.  In an account of several folders, a message gone
 * from this one may come to another later (a Gmail label added, a
 * move, however long after), and this folder's record is what tells
 * that pass it was delivered (I2): it is kept.
 */
static int
prune_alone(struct pass *p, bool *alone, struct mh_err *err)
{
	const struct cfg_account *acct = p->acct;
	bool			 siblings;

	*alone = false;
	if (acct->nfolders != 1 || strpbrk(acct->folders[0], "*%") != NULL)
		return 0;
	if (seen_ident_siblings(p->db, p->id, &siblings, err) == -1)
		return -1;
	*alone = !siblings;
	return 0;
}

/*
 * After a good pass, at most once a day: drops the records that can no
 * longer matter (seen_prune_gone), so that the state stops growing.  An
 * IMAP folder is pruned only when it is its account's only one
 * (prune_alone; if not, that is asked again a day later).  It needs the
 * whole folder: POP3's listing always is; IMAP's is unless the pass
 * listed only the UIDs above the known ones (keep, no delete_after nor
 * move_to), and then the folder's UIDs are asked for (UID SEARCH, a few
 * bytes a message, once a day).  A failure is only a warning; when the
 * UIDs could not be had, the next try is a day later, not every pass.
 */
static void
prune(struct pass *p)
{
	const struct cfg_account *acct = p->acct;
	struct mh_err		 perr;
	time_t			 now = time(NULL);
	char			 buf[1024];
	uint32_t		*uids = NULL, uv;
	size_t			 n;
	bool			 due, alone;
	int			 r;

	mh_err_clear(&perr);
	if (seen_prune_due(p->db, p->id, now, &due, &perr) == -1)
		goto fail;
	if (!due)
		return;
	/* an IMAP folder of several in its account: its records are what
	   tells another folder that a message came to it later was
	   delivered (a Gmail label given after the grace period): kept,
	   whatever the listing (prune_alone) */
	if (acct->protocol == CFG_PROTO_IMAP) {
		if (prune_alone(p, &alone, &perr) == -1)
			goto fail;
		if (!alone) {
			if (seen_prune_postpone(p->db, p->id, now, &perr) == 0)
				return;
			goto fail;
		}
	}
	if (!(acct->protocol == CFG_PROTO_IMAP && acct->keep &&
	    acct->delete_after == 0 && acct->move_to == NULL &&
	    p->known_uv != 0 && p->known_uv == p->list.uidvalidity)) {
		if (seen_prune_gone(p->db, p->id, (const char *const *)p->keys,
		    p->list.n, now, acct->delete_after, &perr) == 0)
			return;
		goto fail;
	}
	/* an incremental listing, of the account's only folder */
	if (source_imap_uids(p->src, false, &uv, &uids, &n, &perr) == -1) {
		log_warn("%s: cannot prune the state (tried again in a day): "
		    "%s", acct->name, mh_err_str(&perr, buf, sizeof buf));
		mh_err_clear(&perr);
		if (seen_prune_postpone(p->db, p->id, now, &perr) == 0)
			return;
		goto fail;
	}
	r = uv != p->list.uidvalidity ? 0 :	/* the next pass sees it */
	    seen_prune_gone_uids(p->db, p->id, uids, n, now,
	    acct->delete_after, &perr);
	free(uids);
	if (r == 0)
		return;
fail:
	log_warn("%s: cannot prune the state: %s", acct->name,
	    mh_err_str(&perr, buf, sizeof buf));
}

/* Runs the pass's mode on the listed folder. */
static int
folder_run(struct pass *p, struct mh_err *err)
{
	switch (p->opts->mode) {
	case SYNC_DRY_RUN:
		dry_run_report(p);
		source_abort(p->src);
		p->session_open = false;
		return 0;
	case SYNC_MARK_SEEN:
		if (mark_all_seen(p, err) == -1)
			return -1;
		source_abort(p->src);
		p->session_open = false;
		break;
	case SYNC_NORMAL:
		if (folder_deliver(p, err) == -1)
			return -1;
		prune(p);
		settle(p);
		break;
	}
	return save_folder(p, p->known_last, err);
}

/* Gmail: the X-GM-MSGID of what this pass recorded delivered, for the
   other folders (decide_gm).  Without it they still match by content. */
static void
remember_gm(struct pass *p)
{
	struct mh_err	  err;
	const char	**uids;
	uint64_t	 *gm;
	size_t		  i, n = 0;

	if (p->outcome == NULL)
		return;
	for (i = 0; i < p->list.n; i++)
		n += p->outcome[i] == SEEN_DELIVERED &&
		    p->list.msgs[i].gm_msgid != 0;
	if (n == 0)
		return;		/* not Gmail, or nothing delivered */
	uids = xcalloc(n, sizeof *uids);
	gm = xcalloc(n, sizeof *gm);
	for (i = 0, n = 0; i < p->list.n; i++)
		if (p->outcome[i] == SEEN_DELIVERED &&
		    p->list.msgs[i].gm_msgid != 0) {
			uids[n] = p->keys[i];
			gm[n++] = p->list.msgs[i].gm_msgid;
		}
	mh_err_clear(&err);
	if (seen_ident_set_gm(p->db, p->id, p->list.uidvalidity, uids, gm, n,
	    &err) == -1)
		log_warn("%s: cannot record X-GM-MSGID: %s", p->acct->name,
		    err.msg);
	free(uids);
	free(gm);
}

/* Closes everything the pass opened and records the run's end. */
static void
folder_end(struct pass *p, int rc, const struct mh_err *err)
{
	struct mh_err	eerr;
	char		buf[1200];

	remember_gm(p);
	if (p->session_open)
		source_abort(p->src);	/* the session itself is the account's */
	target_close(p->tg);
	login_free(&p->tlogin);
	if (p->run != 0) {
		mh_err_clear(&eerr);
		if (seen_run_end(p->db, p->run, p->counts, rc == 0 &&
		    p->counts->tempfailed > 0 ? "tempfail" :
		    result_word(rc == 0 ? MH_ERR_NONE : err->cls),
		    rc == 0 ? NULL : mh_err_str(err, buf, sizeof buf),
		    &eerr) == -1)
			log_warn("%s: cannot record the run: %s",
			    p->acct->name, eerr.msg);
	}
	lock_release(p->lockfd);
	pass_free(p);
}

static int
sync_folder(const struct config *cfg, const struct cfg_account *acct,
    const char *folder, struct login *login, struct source **session,
    struct seen_db *db, const struct sync_opts *opts, struct sync_result *res)
{
	struct pass	p;
	int		rc = -1;

	memset(&p, 0, sizeof p);
	p.cfg = cfg;
	p.acct = acct;
	p.opts = opts;
	p.db = db;
	p.folder = folder;
	p.session = session;
	p.spool = -1;
	p.lockfd = -1;
	p.counts = &res->counts;
	p.started_ms = now_ms();
	p.state_dir = config_state_dir(cfg);
	p.login = login;
	if (folder_begin(&p, &res->err) == 0 &&
	    folder_list(&p, &res->err) == 0 &&
	    folder_run(&p, &res->err) == 0)
		rc = 0;
	folder_end(&p, rc, &res->err);
	return rc;
}

/*
 * The account's credential or folders could not be had (a revoked
 * OAuth2 grant, a failing password_command, a refused login): record
 * that as a run of the account's first folder, so that `status` shows it.
 */
static void
record_early_failure(const struct cfg_account *acct, struct seen_db *db,
    const struct sync_opts *opts, const struct mh_err *err)
{
	struct seen_source	 ident;
	struct seen_run_counts	 none;
	struct mh_err		 eerr;
	int64_t			 id, run;
	char			 buf[1200];
	bool			 provisional;

	if (opts->mode != SYNC_NORMAL || err->cls == MH_ERR_BUSY)
		return;
	ident.protocol = cfg_protocol_name(acct->protocol);
	ident.host = acct->ep.host;
	ident.port = acct->ep.port;
	ident.user = acct->ep.user;
	ident.folder = acct->protocol == CFG_PROTO_IMAP ? acct->folders[0] :
	    "";
	if (strpbrk(ident.folder, "*%") != NULL)
		return;
	memset(&none, 0, sizeof none);
	mh_err_clear(&eerr);
	if (identity_resolve(db, &ident, acct->name, true, &id, &provisional,
	    &eerr) == -1 || seen_run_begin(db, id, &run, &eerr) == -1 ||
	    seen_run_end(db, run, &none, result_word(err->cls),
	    mh_err_str(err, buf, sizeof buf), &eerr) == -1)
		log_warn("%s: cannot record the run: %s", acct->name,
		    eerr.msg);
}

int
sync_account(const struct config *cfg, const struct cfg_account *acct,
    struct seen_db *db, const struct sync_opts *opts, struct sync_result *res)
{
	char		**folders = NULL, buf[1200], what[300];
	char		 *statedir = config_state_dir(cfg);
	struct login	  login;
	struct source	 *session = NULL;	/* one login for all folders */
	int		  rc = -1;

	memset(res, 0, sizeof *res);
	mh_err_clear(&res->err);
	snprintf(what, sizeof what, "account %s", acct->name);
	if (login_get(&acct->ep, statedir, what, &login, &res->err) == -1)
		goto early;
	while (source_folders(acct, &login.cred, &session, &folders,
	    &res->err) == -1)
		if (!login_retry(&login, &res->err))
			goto early;
	identity_filter_folders(acct, folders);
	rc = 0;
	for (char **f = folders; *f != NULL; f++) {
		struct sync_result fres;

		memset(&fres, 0, sizeof fres);
		mh_err_clear(&fres.err);
		if (sync_folder(cfg, acct, *f, &login, &session, db, opts,
		    &fres) == -1) {
			if (**f != '\0')
				log_warn("%s: folder %s: %s", acct->name, *f,
				    mh_err_str(&fres.err, buf, sizeof buf));
			if (res->err.cls == MH_ERR_NONE) {
				res->err = fres.err;
				/* with several folders, say which one */
				if (**f != '\0' && (f != folders ||
				    f[1] != NULL))
					mh_err_prefix(&res->err, "folder %s",
					    *f);
			}
			rc = -1;
		}
		res->counts.listed += fres.counts.listed;
		res->counts.fetched += fres.counts.fetched;
		res->counts.delivered += fres.counts.delivered;
		res->counts.deleted += fres.counts.deleted;
		res->counts.skipped += fres.counts.skipped;
		res->counts.failed += fres.counts.failed;
		res->counts.tempfailed += fres.counts.tempfailed;
		res->counts.bytes = mh_add_sat(res->counts.bytes,
		    fres.counts.bytes);
		/* the target is down: the other folders wait as well */
		if (fres.err.scope == MH_SCOPE_TARGET && f[1] != NULL) {
			log_info("%s: target %s is down; the other folders "
			    "wait for the next pass", acct->name,
			    acct->target->name);
			break;
		}
		if (stop_requested)
			break;
	}
	goto out;
early:
	record_early_failure(acct, db, opts, &res->err);
out:
	source_free(session);
	source_folders_free(folders);
	login_free(&login);
	free(statedir);
	return rc;
}
