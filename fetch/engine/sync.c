/*
 * sync.c -- one account, one pass: the sync transaction of DESIGN.md.
 *
 * The order that invariant I1 depends on lives in sync_one() and
 * finish_session() only:
 *
 *   retrieve -> deliver -> commit `delivered` -> mark for deletion
 *   -> source_commit (QUIT/EXPUNGE) -> record the deletions.
 *
 * Anything that goes wrong before source_commit ends in source_abort,
 * which commits no deletion on the server.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetch/state/lock.h"
#include "fetch/source.h"
#include "fetch/state/spool.h"
#include "fetch/engine/sync.h"
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
	struct source			*src;
	struct target			*tg;
	struct seen_set			*seen;
	struct source_list		 list;
	enum plan_action		*action;	/* per list entry */
	enum seen_state			*outcome;	/* per entry: what this
							   pass recorded, or 0 */
	char				**keys;		/* per entry: uid or
							   content key */
	const struct source_msg		**marked;	/* deletions queued */
	size_t				 nmarked;
	bool				 uidvalidity_changed;
	bool				 target_down;
	struct mh_err			 target_err;	/* why it is down */
	int				 spool;
	char				*spool_dir;
	struct seen_run_counts		*counts;
	int64_t				 started_ms;
	int64_t				 progress_ms;
	size_t				 nfetch, done;
};

static int	sync_folder(const struct config *, const struct cfg_account *,
		    const char *, const struct sasl_cred *, struct seen_db *,
		    const struct sync_opts *, struct sync_result *);

/* Set from a signal handler: stop after the message in flight. */
static volatile sig_atomic_t stop_requested;

void
sync_request_stop(void)
{
	stop_requested = 1;
}

void
sync_step(const char *what)
{
	static long	 count, crash_at = -1;
	const char	*s;

	if (crash_at == -1) {
		s = getenv("MAILHAUL_CRASH_AT_STEP");
		crash_at = (s != NULL && *s != '\0') ? strtol(s, NULL, 10) : 0;
	}
	count++;
	log_debug("step %ld: %s", count, what);
	if (crash_at > 0 && count == crash_at) {
		fprintf(stderr, "mailhaul: crash test: stopping dead at step "
		    "%ld (%s)\n", count, what);
		_exit(99);
	}
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

/*
 * The key a message is recorded under: the server's UID, or for a POP3
 * server without UIDL a content key from the header (TOP n 0) and size.
 */
static int
message_key(struct pass *p, const struct source_msg *m, char **key,
    struct mh_err *err)
{
	struct message_info	info;

	if (p->list.has_uids) {
		*key = xstrdup(m->uid);
		return 0;
	}
	if (spool_reset(p->spool, err) == -1)
		return -1;
	if (source_fetch_header(p->src, m, p->spool, err) == -1) {
		if (err->cls == MH_ERR_NONE)
			mh_err_set(err, MH_ERR_PROTO, "the server has neither "
			    "UIDL nor TOP: cannot tell messages apart");
		return -1;
	}
	if (lseek(p->spool, 0, SEEK_SET) == -1 ||
	    message_scan(p->spool, &info, err) == -1)
		return -1;
	*key = xasprintf("h:%s:%" PRIu64, info.header_digest, m->size);
	return 0;
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
 * Without UIDL two copies of one message (same header, same size) have
 * the same content key: the second becomes "<key>#2", the third "#3", in
 * listing order, so that each is delivered.  When a copy goes, the next
 * takes its key, which is recorded already: nothing is fetched again.
 */
static void
number_twin(struct pass *p, size_t i)
{
	size_t		 j, len = strlen(p->keys[i]);
	unsigned	 n = 1;
	char		*k;

	for (j = 0; j < i; j++)
		if (strncmp(p->keys[j], p->keys[i], len) == 0 &&
		    (p->keys[j][len] == '\0' || p->keys[j][len] == '#'))
			n++;
	if (n == 1)
		return;
	k = xasprintf("%s#%u", p->keys[i], n);
	free(p->keys[i]);
	p->keys[i] = k;
}

/* Decides, per listed message, what this pass does with it. */
static int
plan(struct pass *p, struct mh_err *err)
{
	const struct cfg_account *acct = p->acct;
	time_t		 now = time(NULL);
	size_t		 i;

	p->action = xcalloc(p->list.n ? p->list.n : 1, sizeof *p->action);
	p->outcome = xcalloc(p->list.n ? p->list.n : 1, sizeof *p->outcome);
	p->keys = xcalloc(p->list.n ? p->list.n : 1, sizeof *p->keys);
	for (i = 0; i < p->list.n; i++) {
		const struct source_msg *m = &p->list.msgs[i];
		const struct seen_entry *e;

		if (message_key(p, m, &p->keys[i], err) == -1)
			return -1;
		if (!p->list.has_uids)
			number_twin(p, i);
		e = seen_lookup(p->seen, p->keys[i]);
		if (e == NULL || e->state == SEEN_TEMPFAIL) {
			if (p->opts->mode != SYNC_MARK_SEEN &&
			    acct->max_size > 0 && m->size > acct->max_size) {
				if (e == NULL && p->opts->mode == SYNC_NORMAL) {
					struct seen_msg sm = { .uid = p->keys[i],
					    .uidvalidity = p->list.uidvalidity,
					    .size = m->size };
					char why[128];

					snprintf(why, sizeof why, "larger than "
					    "max_size (%" PRIu64 " > %" PRIu64
					    " bytes)", m->size, acct->max_size);
					log_info("%s: skipping message %s: %s",
					    acct->name, m->uid, why);
					if (seen_record_skipped(p->db, p->id,
					    &sm, why, err) == -1)
						return -1;
					p->counts->skipped++;
					p->outcome[i] = SEEN_SKIPPED;
				}
				continue;
			}
			if (p->opts->mode != SYNC_MARK_SEEN &&
			    acct->max_messages > 0 &&
			    p->nfetch >= acct->max_messages)
				continue;
			p->action[i] = PLAN_FETCH;
			p->nfetch++;
		} else if (e->state == SEEN_DELIVERED &&
		    due_for_deletion(acct, e, now))
			p->action[i] = PLAN_DELETE;
	}
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

	for (i = 0; i < t->nrecipients; i++) {
		for (j = 0; j < ndone; j++)
			if (strcmp(done[j], t->recipients[i]) == 0)
				break;
		if (j < ndone)
			continue;
		if (sole != NULL)
			return NULL;
		sole = t->recipients[i];
	}
	return sole;
}

/*
 * One message: retrieve -> deliver -> commit -> mark for deletion.
 * Returns 0 to go on with the next message (also after a per-message
 * failure, which is recorded), -1 to stop the pass (err set).
 */
static int
sync_one(struct pass *p, size_t i, struct mh_err *err)
{
	const struct cfg_account *acct = p->acct;
	const struct cfg_target	*t = acct->target;
	const struct source_msg	*m = &p->list.msgs[i];
	struct message_info	 info;
	struct target_msg	 tm;
	struct seen_msg		 sm;
	struct mh_err		 derr;
	enum target_outcome	 outcome;
	const struct seen_entry	*prev;
	const char *const	*acc;
	char			*received = NULL, buf[1200], **done = NULL;
	size_t			 ndone = 0, nacc;
	bool			 recorded = false;
	int			 rc = -1;

	if (spool_reset(p->spool, err) == -1)
		goto out;
	sync_step("fetch");
	if (source_fetch(p->src, m, p->spool, err) == -1) {
		if (err->cls != MH_ERR_PERM)
			goto out;
		/* this message only: retried next pass, the others go on */
		log_warn("%s: cannot retrieve message %s, will retry: %s",
		    acct->name, m->uid, mh_err_str(err, buf, sizeof buf));
		memset(&sm, 0, sizeof sm);
		sm.uid = p->keys[i];
		sm.uidvalidity = p->list.uidvalidity;
		sm.size = m->size;
		p->counts->tempfailed++;
		if (seen_record_failed(p->db, p->id, &sm, false,
		    mh_err_str(err, buf, sizeof buf), err) == -1)
			goto out;
		mh_err_clear(err);
		rc = 0;
		goto out;
	}
	if (lseek(p->spool, 0, SEEK_SET) == -1 ||
	    message_scan(p->spool, &info, err) == -1)
		goto out;
	p->counts->fetched++;
	p->counts->bytes += info.size;

	memset(&sm, 0, sizeof sm);
	sm.uid = p->keys[i];
	sm.uidvalidity = p->list.uidvalidity;
	sm.size = info.size;
	sm.message_id = info.message_id[0] != '\0' ? info.message_id : NULL;
	sm.digest = info.digest;

	/* A new UIDVALIDITY: what was delivered before keeps its content. */
	if (p->uidvalidity_changed && seen_lookup_content(p->seen,
	    sm.message_id, info.size, info.digest) != NULL) {
		log_info("%s: %s: UID %s was delivered before the UIDVALIDITY "
		    "change; not delivering it again", acct->name, p->folder,
		    m->uid);
		if (seen_record_delivered(p->db, p->id, &sm, err) == -1)
			goto out;
		p->outcome[i] = SEEN_DELIVERED;
		goto delivered;
	}

	/* tried before: some recipients may have it already */
	prev = seen_lookup(p->seen, p->keys[i]);
	if (prev != NULL && prev->state != SEEN_DELIVERED &&
	    seen_delivered_to(p->db, p->id, &sm, &done, &ndone, err) == -1)
		goto out;
	if (t->received)
		received = message_received(acct->name,
		    cfg_protocol_name(acct->protocol), acct->ep.host, m->uid,
		    sole_recipient(t, done, ndone), time(NULL));
	memset(&tm, 0, sizeof tm);
	tm.done = (const char *const *)done;
	tm.ndone = ndone;
	tm.fd = p->spool;
	tm.size = info.size;
	tm.return_path = info.has_return_path ? info.return_path : NULL;
	tm.eightbit = info.eightbit;
	tm.received = received;

	sync_step("deliver");
	mh_err_clear(&derr);
	outcome = target_deliver(p->tg, &tm, &derr);
	acc = target_accepted(p->tg, &nacc);
	if (outcome != TARGET_DELIVERED && nacc > 0) {
		/* some recipients have it: never again to them */
		log_warn("%s: message %s delivered to %zu of the recipients "
		    "of target %s; the others are retried", acct->name, m->uid,
		    nacc, t->name);
		sync_step("record");
		if (seen_record_partial(p->db, p->id, &sm, outcome ==
		    TARGET_PERMFAIL, mh_err_str(&derr, buf, sizeof buf), acc,
		    nacc, err) == -1)
			goto out;
		recorded = true;
	}
	switch (outcome) {
	case TARGET_DELIVERED:
		break;
	case TARGET_PERMFAIL:
		log_warn("%s: message %s refused for good by target %s: %s",
		    acct->name, m->uid, t->name, mh_err_str(&derr, buf,
		    sizeof buf));
		p->counts->failed++;
		if (!recorded && seen_record_failed(p->db, p->id, &sm, true,
		    mh_err_str(&derr, buf, sizeof buf), err) == -1)
			goto out;
		p->outcome[i] = SEEN_FAILED;
		rc = 0;
		goto out;
	case TARGET_TEMPFAIL:
		log_warn("%s: message %s not delivered, will retry: %s",
		    acct->name, m->uid, mh_err_str(&derr, buf, sizeof buf));
		p->counts->tempfailed++;
		if (!recorded && seen_record_failed(p->db, p->id, &sm, false,
		    mh_err_str(&derr, buf, sizeof buf), err) == -1)
			goto out;
		/*
		 * The target is unreachable, refuses our login or TLS, or
		 * closes with 421: no other message will fare better.  Stop
		 * fetching, but end the source session cleanly so that
		 * deletions of what was delivered take effect.
		 */
		if (derr.reply[0] == '\0' || derr.cls == MH_ERR_AUTH ||
		    derr.cls == MH_ERR_TLS || strncmp(derr.reply, "421", 3) == 0) {
			p->target_down = true;
			p->target_err = derr;
		}
		rc = 0;
		goto out;
	}

	/* The target accepted it: commit that before anything else (I1). */
	sync_step("record");
	if (seen_record_delivered(p->db, p->id, &sm, err) == -1)
		goto out;
	p->outcome[i] = SEEN_DELIVERED;
	p->counts->delivered++;
	log_debug("%s: delivered %s (%" PRIu64 " bytes)", acct->name, m->uid,
	    info.size);
delivered:
	if (source_mark_done(p->src, m, err) == -1)
		goto out;
	if ((!acct->keep || acct->move_to != NULL) &&
	    mark_delete(p, m, err) == -1)
		goto out;
	rc = 0;
out:
	seen_strv_free(done, ndone);
	free(received);
	return rc;
}

/* Records what a completed pass deleted, once the server confirmed it. */
static int
finish_session(struct pass *p, struct mh_err *err)
{
	struct mh_err	cerr;
	size_t		i;

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
	for (i = 0; i < p->nmarked; i++) {
		size_t k = (size_t)(p->marked[i] - p->list.msgs);

		if (seen_record_deleted(p->db, p->id, p->keys[k], err) == -1)
			return -1;
		p->counts->deleted++;
	}
	return 0;
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
			bytes += m->size;
		} else if (p->action[i] == PLAN_DELETE) {
			fprintf(f, "%s: would delete %s (delivered before)\n",
			    p->acct->name, m->uid);
			ndel++;
		}
	}
	fprintf(f, "%s: %zu on the server, %zu new (%" PRIu64 " bytes), "
	    "%zu to delete\n", p->acct->name, p->list.n, p->nfetch, bytes,
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
		if (spool_reset(p->spool, err) == -1)
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
		if (seen_record_delivered(p->db, p->id, &sm, err) == -1)
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

/* IMAP: records the folder's UIDVALIDITY and the settled UID. */
static int
save_folder(struct pass *p, uint32_t known_last, struct mh_err *err)
{
	if (p->acct->protocol != CFG_PROTO_IMAP || p->list.uidvalidity == 0)
		return 0;
	return seen_folder_set(p->db, p->id, p->list.uidvalidity,
	    settled_uid(p, p->uidvalidity_changed ? 0 : known_last), err);
}

/* Passes the fetch loop over the planned messages. */
static int
fetch_all(struct pass *p, struct mh_err *err)
{
	const struct source_msg	**order;
	size_t			  i;
	int			  rc = -1;

	order = plan_order(p);
	for (i = 0; i < p->list.n; i++) {
		if (p->action[i] != PLAN_FETCH)
			continue;
		if (sync_one(p, i, err) == -1) {
			/* this one and the rest wait for the next pass */
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
		if (stop_requested) {
			log_info("%s: stopping after %zu of %zu messages, as asked",
			    p->acct->name, p->done, p->nfetch);
			break;
		}
		progress(p, false);
	}
	for (i = 0; i < p->list.n; i++)
		if (p->action[i] == PLAN_DELETE &&
		    mark_delete(p, &p->list.msgs[i], err) == -1)
			goto out;
	rc = 0;
out:
	progress(p, true);
	free(order);
	return rc;
}

static void
pass_free(struct pass *p)
{
	size_t	i;

	if (p->keys != NULL)
		for (i = 0; i < p->list.n; i++)
			free(p->keys[i]);
	free(p->keys);
	free(p->action);
	free(p->outcome);
	free(p->marked);
	source_list_free(&p->list);
	seen_set_free(p->seen);
	if (p->spool != -1)
		close(p->spool);
	free(p->spool_dir);
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

static int
sync_folder(const struct config *cfg, const struct cfg_account *acct,
    const char *folder, const struct sasl_cred *cred, struct seen_db *db,
    const struct sync_opts *opts, struct sync_result *res)
{
	struct mh_err		*err = &res->err;
	struct seen_source	 ident;
	struct pass		 p;
	char			*dir = config_state_dir(cfg), key[32], *tpass = NULL;
	char			 what[300];
	struct sasl_cred	 tcred;
	uint32_t		 known_uv = 0, known_last = 0;
	int64_t			 run = 0;
	int			 lockfd = -1, rc = -1, r;
	bool			 session_open = false;

	memset(&p, 0, sizeof p);
	p.cfg = cfg;
	p.acct = acct;
	p.opts = opts;
	p.db = db;
	p.folder = folder;
	p.spool = -1;
	p.counts = &res->counts;
	p.started_ms = now_ms();

	ident.protocol = cfg_protocol_name(acct->protocol);
	ident.host = acct->ep.host;
	ident.port = acct->ep.port;
	ident.user = acct->ep.user;
	ident.folder = folder;
	/* a dry run records nothing, not even a new source */
	if ((opts->mode == SYNC_DRY_RUN ? seen_source_find(db, &ident, &p.id,
	    err) : seen_source_id(db, &ident, acct->name, &p.id, err)) == -1)
		goto out;
	snprintf(key, sizeof key, "%" PRId64, p.id);
	lockfd = lock_take(dir, key, opts->lock_wait_ms, err);
	if (lockfd == -1)
		goto out;
	if (opts->mode == SYNC_NORMAL &&
	    seen_run_begin(db, p.id, &run, err) == -1)
		goto out;
	if (acct->protocol == CFG_PROTO_IMAP &&
	    seen_folder_get(db, p.id, &known_uv, &known_last, err) == -1)
		goto out;

	p.spool_dir = xasprintf("%s/spool", dir);
	if ((p.spool = spool_open(p.spool_dir, err)) == -1)
		goto out;

	if (source_open(acct, folder, cred, &p.src, err) == -1)
		goto out;
	session_open = true;
	/* Retention needs the whole folder; otherwise only what is new. */
	if (acct->keep && acct->delete_after == 0 && acct->move_to == NULL)
		source_set_known(p.src, known_uv, known_last);
	if (source_list(p.src, &p.list, err) == -1)
		goto out;
	p.counts->listed += (unsigned)p.list.n;
	if (!p.list.has_uids)
		log_info("%s: the server has no UIDL; telling messages apart "
		    "by their header and size", acct->name);
	p.uidvalidity_changed = known_uv != 0 &&
	    known_uv != p.list.uidvalidity;
	if (p.uidvalidity_changed)
		log_warn("%s: %s: UIDVALIDITY changed from %" PRIu32 " to %"
		    PRIu32 "; matching messages by content so that nothing is "
		    "delivered twice", acct->name, folder, known_uv,
		    p.list.uidvalidity);
	if (seen_load(db, p.id, p.list.uidvalidity, &p.seen, err) == -1)
		goto out;
	p.marked = xcalloc(p.list.n ? p.list.n : 1, sizeof *p.marked);
	if (plan(&p, err) == -1)
		goto out;

	switch (opts->mode) {
	case SYNC_DRY_RUN:
		dry_run_report(&p);
		source_abort(p.src);
		session_open = false;
		rc = 0;
		goto out;
	case SYNC_MARK_SEEN:
		if (mark_all_seen(&p, err) == -1)
			goto out;
		source_abort(p.src);
		session_open = false;
		break;
	case SYNC_NORMAL:
		if (p.nfetch > 0 && acct->target->ep.user != NULL) {
			snprintf(what, sizeof what, "target %s",
			    acct->target->name);
			tpass = cfg_secret_get(&acct->target->ep.secret, what,
			    err);
			if (tpass == NULL && err->cls != MH_ERR_NONE)
				goto out;
		}
		endpoint_cred(&acct->target->ep, tpass, &tcred);
		p.tg = target_new(acct->target, &tcred);
		target_set_timeout(p.tg, (int)(cfg->general.timeout * 1000));
		if (fetch_all(&p, err) == -1)
			goto out;
		/* the folder's state first: deletions are recorded against
		   the UIDVALIDITY it names */
		if (save_folder(&p, known_last, err) == -1)
			goto out;
		session_open = false;
		r = finish_session(&p, err);
		/*
		 * The target going down is the news, not what it did to the
		 * source session (postponed deletions): say the latter as a
		 * warning.  A login or TLS failure exits 77/69.
		 */
		if (p.target_down && p.target_err.cls != MH_ERR_NONE &&
		    (p.target_err.cls != MH_ERR_TEMP || r == -1)) {
			if (r == -1) {
				char buf[1200];

				log_warn("%s: %s", acct->name,
				    mh_err_str(err, buf, sizeof buf));
			}
			*err = p.target_err;
			goto out;
		}
		if (r == -1)
			goto out;
		break;
	}
	if (save_folder(&p, known_last, err) == -1)
		goto out;
	rc = 0;
out:
	if (session_open)
		source_abort(p.src);
	source_free(p.src);
	target_close(p.tg);
	secret_free(tpass);
	if (run != 0) {
		struct mh_err	eerr;
		char		buf[1200];

		mh_err_clear(&eerr);
		if (seen_run_end(db, run, p.counts, rc == 0 &&
		    p.counts->tempfailed > 0 ? "tempfail" :
		    result_word(rc == 0 ? MH_ERR_NONE : err->cls),
		    rc == 0 ? NULL : mh_err_str(err, buf, sizeof buf),
		    &eerr) == -1)
			log_warn("%s: cannot record the run: %s", acct->name,
			    eerr.msg);
	}
	lock_release(lockfd);
	pass_free(&p);
	free(dir);
	return rc;
}

int
sync_account(const struct config *cfg, const struct cfg_account *acct,
    struct seen_db *db, const struct sync_opts *opts, struct sync_result *res)
{
	char		*password = NULL, **folders = NULL, buf[1200];
	char		 what[300];
	struct sasl_cred cred;
	int		 rc = -1;

	memset(res, 0, sizeof *res);
	mh_err_clear(&res->err);
	snprintf(what, sizeof what, "account %s", acct->name);
	password = cfg_secret_get(&acct->ep.secret, what, &res->err);
	if (password == NULL) {
		if (res->err.cls == MH_ERR_NONE)
			mh_err_set(&res->err, MH_ERR_AUTH, "no password "
			    "configured");
		goto out;
	}
	endpoint_cred(&acct->ep, password, &cred);
	if (source_folders(acct, &cred, &folders, &res->err) == -1)
		goto out;
	rc = 0;
	for (char **f = folders; *f != NULL; f++) {
		struct sync_result fres;

		memset(&fres, 0, sizeof fres);
		mh_err_clear(&fres.err);
		if (sync_folder(cfg, acct, *f, &cred, db, opts, &fres) == -1) {
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
		res->counts.bytes += fres.counts.bytes;
	}
out:
	source_folders_free(folders);
	secret_free(password);
	return rc;
}
