/*
 * test-sync.c -- the engine in process: an in-memory source and an
 * in-memory target, each a real ops table behind the real dispatchers
 * (fetch/source.c, forward/target.c), drive sync_account() against a
 * temporary state database.  The ops tables take the names source.c and
 * target.c look for (pop3_source_ops, imap_source_ops, smtp_target_ops):
 * no protocol code is linked.
 *
 * The mailbox and the target's script are file-static; each test runs
 * in its own forked child (check.h), so they start fresh.
 */
#define _GNU_SOURCE		/* dup3 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fetch/engine/identity.h"
#include "fetch/engine/pipeline.h"
#include "fetch/engine/sync.h"
#include "fetch/source_impl.h"
#include "fetch/state/seen.h"
#include "forward/target_impl.h"

#define NMSG	8
#define NRCPT	2

/* ---- the in-memory mailbox -------------------------------------------- */

struct mem_msg {
	const char	*uid;
	char		 data[256];
	bool		 present;	/* on the server */
	bool		 retr_fails;	/* the server refuses this one */
};

static struct mem_msg	box[NMSG];
static size_t		nbox;
static uint64_t		stated_size;	/* LIST says this; 0: the truth */
static unsigned		ncommits;	/* deletions confirmed */
static atomic_uint	nfetched;	/* retrievals (the fetch thread) */
static atomic_bool	delivering;	/* a delivery began */
static bool		gate_after_first;	/* message 2 on is fetched once
						   a delivery began (5 s at
						   most) */
static bool		in_memory[NMSG];	/* its spool (util.h) */
static uint64_t		announced;	/* LIST size of every message, or 0:
					   its real size */
static atomic_uint	in_vain;	/* fetched_in_vain's ahead */
static atomic_uint	in_vain_failed;	/* and its failed */

struct mem_source {
	struct source		 base;
	size_t			 del[NMSG];	/* queued deletions */
	size_t			 ndel;
};

static void
box_add(const char *uid, const char *mid)
{
	struct mem_msg	*m = &box[nbox++];

	m->uid = uid;
	snprintf(m->data, sizeof m->data, "Message-ID: <%s>\r\n"
	    "Return-Path: <sender@example.net>\r\n"
	    "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n"
	    "Subject: %s\r\n\r\nbody of %s\r\n", mid, uid, uid);
	m->present = true;
}

static size_t
box_present(void)
{
	size_t	i, n = 0;

	for (i = 0; i < nbox; i++)
		n += box[i].present;
	return n;
}

static int
src_open(const struct cfg_account *acct, const char *folder,
    const struct sasl_cred *cred, struct source **out, struct mh_err *err)
{
	struct mem_source *s = xcalloc(1, sizeof *s);

	(void)acct; (void)folder; (void)cred; (void)err;
	*out = &s->base;
	return 0;
}

static void
src_get_info(struct source *src, struct source_info *info)
{
	(void)src;
	memset(info, 0, sizeof *info);
}

static int
src_list(struct source *src, struct source_list *out, struct mh_err *err)
{
	size_t	i;

	(void)src; (void)err;
	memset(out, 0, sizeof *out);
	out->msgs = xcalloc(NMSG, sizeof *out->msgs);
	out->has_uids = true;
	for (i = 0; i < nbox; i++) {
		if (!box[i].present)
			continue;
		out->msgs[out->n].uid = xstrdup(box[i].uid);
		out->msgs[out->n].num = (unsigned)i + 1;
		out->msgs[out->n].size = stated_size != 0 ? stated_size :
		    announced != 0 ? announced :
		    strlen(box[i].data);
		out->n++;
	}
	return 0;
}

static void
src_plan(struct source *src, const struct source_msg *const *msgs, size_t n)
{
	(void)src; (void)msgs; (void)n;
}

static int
src_fetch(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	const struct mem_msg	*m = &box[msg->num - 1];
	size_t			 len = strlen(m->data);

	(void)src;
	for (int t = 0; gate_after_first && msg->num > 1 && t < 5000 &&
	    !delivering; t++)
		usleep(1000);
	nfetched++;
	in_memory[msg->num - 1] = mh_is_memspool(fd);
	if (m->retr_fails) {
		mh_err_set(err, MH_ERR_PERM, "RETR %u refused", msg->num);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		return -1;
	}
	if (write(fd, m->data, len) != (ssize_t)len) {
		mh_err_set(err, MH_ERR_LOCAL, "write: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int
src_mark_delete(struct source *src, const struct source_msg *msg,
    struct mh_err *err)
{
	struct mem_source *s = (struct mem_source *)src;

	(void)err;
	s->del[s->ndel++] = msg->num - 1;
	return 0;
}

static int
src_commit(struct source *src, struct mh_err *err)
{
	struct mem_source	*s = (struct mem_source *)src;
	size_t			 i;

	(void)err;
	for (i = 0; i < s->ndel; i++)
		box[s->del[i]].present = false;
	s->ndel = 0;
	ncommits++;
	return 0;
}

static void
src_abort(struct source *src)
{
	((struct mem_source *)src)->ndel = 0;
}

static void
src_free(struct source *src)
{
	free(src);
}

static void
src_fetched_in_vain(struct source *src, size_t ahead, size_t failed)
{
	(void)src;
	in_vain += (unsigned)ahead;
	in_vain_failed += (unsigned)failed;
}

/* source.c picks one of these by protocol: both are the mailbox. */
#define MEM_SOURCE_OPS {						\
	.name = "mem", .open = src_open, .get_info = src_get_info,	\
	.list = src_list, .plan = src_plan, .fetch = src_fetch,		\
	.mark_delete = src_mark_delete, .commit = src_commit,		\
	.abort = src_abort, .free = src_free,				\
	.fetched_in_vain = src_fetched_in_vain }
const struct source_ops pop3_source_ops = MEM_SOURCE_OPS;

/* IMAP: every folder of the account lists the same mailbox (a message
   with several Gmail labels); the folders are the account's. */
static int
mem_folders(const struct cfg_account *acct, const struct sasl_cred *cred,
    struct source **session, char ***out, struct mh_err *err)
{
	size_t	i;

	(void)cred; (void)session; (void)err;
	*out = xcalloc(acct->nfolders + 1, sizeof **out);
	for (i = 0; i < acct->nfolders; i++)
		(*out)[i] = xstrdup(acct->folders[i]);
	return 0;
}

static int
mem_select(struct source *src, const char *folder, struct mh_err *err)
{
	(void)src; (void)folder; (void)err;
	return 0;
}

static bool
mem_usable(const struct source *src)
{
	(void)src;
	return true;
}

const struct source_ops imap_source_ops = {
	.name = "mem", .open = src_open, .get_info = src_get_info,
	.list = src_list, .plan = src_plan, .fetch = src_fetch,
	.mark_delete = src_mark_delete, .commit = src_commit,
	.abort = src_abort, .free = src_free, .folders = mem_folders,
	.select = mem_select, .usable = mem_usable };

/* ---- the in-memory target --------------------------------------------- */

/* LOST: the connection went away during this message's transaction
   (no reply; smtp.c says so for this message only). */
enum reply { REPLY_OK = 0, REPLY_TEMP, REPLY_PERM, REPLY_DOWN, REPLY_LOST };

static const char	*rcpts[NRCPT] = { "me@example.org", "you@example.org" };
static enum reply	 script[NMSG][NRCPT];	/* per message, recipient */
static unsigned		 got[NMSG][NRCPT];	/* copies delivered */
static unsigned		 attempts[NMSG];	/* deliveries tried */
static bool		 unreachable;		/* target_connect fails */
static unsigned		 wait_fetched;		/* deliveries wait (5 s at
						   most) until this many
						   were fetched */
static unsigned		 fetched_at[NMSG];	/* nfetched at delivery */

/* The mailbox index of the message in m (its body names its uid). */
static size_t
msg_index(const struct target_msg *m)
{
	char	buf[512];
	ssize_t	n;
	size_t	i;

	n = pread(m->fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	for (i = 0; i < nbox; i++)
		if (strcmp(buf, box[i].data) == 0)
			return i;
	fprintf(stderr, "  the target got a message not in the box\n");
	exit(1);
}

static int
tgt_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	(void)t; (void)cred; (void)err;
	*out = xcalloc(1, sizeof **out);
	return 0;
}

static int
tgt_connect(struct target *tg, struct mh_err *err)
{
	(void)tg;
	if (!unreachable)
		return 0;
	mh_err_set(err, MH_ERR_TEMP, "target mem: cannot connect: "
	    "connection refused");
	return -1;
}

static enum target_outcome
tgt_deliver(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	size_t			 i = msg_index(m), r;
	enum target_outcome	 out = TARGET_DELIVERED;

	attempts[i]++;
	delivering = true;
	for (int t = 0; t < 5000 && nfetched < wait_fetched; t++)
		usleep(1000);
	/* counted as src_fetch begins: give the fetch thread the moment it
	   takes to hand the last one over to the pipeline */
	if (wait_fetched > 0)
		usleep(20 * 1000);
	fetched_at[i] = nfetched;
	CHECK(m->source_key != NULL && strncmp(m->source_key, "mh.", 3) == 0);
	CHECK(m->message_id != NULL && m->message_id[0] == '<');
	CHECK(m->date == 1796115600);	/* Tue, 1 Dec 2026 09:00:00 UTC */
	CHECK_STR(m->return_path, "sender@example.net");
	for (r = 0; r < tg->cfg->smtp.nrecipients; r++) {
		if (target_msg_done(m, rcpts[r]))
			continue;
		switch (script[i][r]) {
		case REPLY_OK:
			got[i][r]++;
			target_result_add(res, rcpts[r]);
			break;
		case REPLY_TEMP:
			mh_err_set(err, MH_ERR_TEMP, "452 mailbox busy");
			mh_err_scope(err, MH_SCOPE_MESSAGE);
			out = TARGET_TEMPFAIL;
			break;
		case REPLY_PERM:
			mh_err_set(err, MH_ERR_PERM, "550 no such user");
			mh_err_scope(err, MH_SCOPE_MESSAGE);
			if (out == TARGET_DELIVERED)
				out = TARGET_PERMFAIL;
			break;
		case REPLY_DOWN:
			mh_err_set(err, MH_ERR_TEMP, "connection refused");
			mh_err_scope(err, MH_SCOPE_TARGET);
			return TARGET_TEMPFAIL;
		case REPLY_LOST:
			mh_err_set(err, MH_ERR_TEMP, "connection reset by "
			    "peer at the end of the data");
			mh_err_scope(err, MH_SCOPE_MESSAGE);
			return TARGET_TEMPFAIL;
		}
	}
	return out;
}

/*
 * Sending ahead (target_prepare), when ahead_on: the message is marked
 * sent ahead; its delivery must be the very next one, and finds the
 * record of the message before committed.  The engine looks ahead for
 * every target with the op, so every test here runs its look-ahead;
 * only ahead_on makes it send (tgt_deliver_smtp checks the order).
 */
static bool		ahead_on;
static int		ahead = -1;		/* sent ahead, not ended */
static unsigned		prepared[NMSG];
static unsigned		aborted;		/* closed with one sent ahead */
static enum seen_state	prev_at_prepare[NMSG];	/* the record before's */

static enum seen_state state_of(const char *uid);

static bool
tgt_prepare(struct target *tg, const struct target_msg *m)
{
	size_t	i = msg_index(m);

	(void)tg;
	if (!ahead_on)
		return false;
	CHECK(ahead == -1);
	prepared[i]++;
	prev_at_prepare[i] = i > 0 ? state_of(box[i - 1].uid) : 0;
	ahead = (int)i;
	return true;
}

static enum target_outcome
tgt_deliver_smtp(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	size_t	i = msg_index(m);

	if (ahead != -1) {
		CHECK(ahead == (int)i);		/* no other message between */
		/* the end goes only once the message before is recorded */
		CHECK(i > 0 && state_of(box[i - 1].uid) == SEEN_DELIVERED);
		ahead = -1;
	}
	return tgt_deliver(tg, m, res, err);
}

static void
tgt_close(struct target *tg)
{
	if (ahead != -1)
		aborted++;
	ahead = -1;
	free(tg);
}

const struct target_ops smtp_target_ops = {
	.name = "mem",
	.open = tgt_open,
	.connect = tgt_connect,
	.deliver = tgt_deliver_smtp,
	.prepare = tgt_prepare,
	.close = tgt_close,
};

/*
 * A kind this test does not drive: the dispatcher's table links, and a
 * target of it cannot be made -- as a kind not built yet (t_kind_not_built).
 */
static int
missing_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_LOCAL, "target %s: not built yet in this test",
	    t->name);
	return -1;
}

/*
 * With imap_is_mem, an IMAP-like kind: the in-memory target, but one
 * that can be asked (seen: the copies it has) and stages deliveries
 * until a flush (group commit); the flush counts what it made durable
 * and can be told to fail.  Without, a kind not built.
 */
static bool		 imap_is_mem;
static unsigned		 nstaged;		/* delivered, not flushed */
static unsigned		 nflushes;		/* flushes of something */
static unsigned		 batch_max;		/* most in one flush */
static int		 flush_fails_with = -1;	/* the flush of this
						   message fails */
static bool		 in_flush[NMSG];	/* staged for the next */

static int
imap_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	if (!imap_is_mem)
		return missing_open(t, cred, out, err);
	return tgt_open(t, cred, out, err);
}

static int
tgt_seen(struct target *tg, const struct target_msg *m, bool *found,
    struct mh_err *err)
{
	(void)tg; (void)err;
	*found = got[msg_index(m)][0] > 0;
	return 0;
}

static enum target_outcome
tgt_deliver_staged(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	enum target_outcome out = tgt_deliver(tg, m, res, err);

	if (out == TARGET_DELIVERED) {
		nstaged++;
		in_flush[msg_index(m)] = true;
	}
	return out;
}

/*
 * With imap_pends, the kind also pipelines (target.h): in batch mode each
 * delivery is PENDING, its real verdict kept in order for tgt_collect.
 */
static bool			 imap_pends;
static bool			 batch_on;
static struct pend {
	enum target_outcome	 out;
	struct mh_err		 err;
	struct target_result	 res;
	size_t			 i;		/* the message */
}				 pends[NMSG];
static size_t			 npends, ncollected;
static size_t			 collect_order[2 * NMSG];	/* over passes */
static size_t			 npends_at_first;	/* when the first
							   verdict is collected */
static bool			 intents_short;		/* one was sent
							   without its intent */

static int	raw_count(const char *table);

static void
tgt_set_batch(struct target *tg, bool on)
{
	(void)tg;
	batch_on = on;
}

static enum target_outcome
tgt_deliver_ahead(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	struct pend	*p;

	if (!imap_pends || !batch_on)
		return tgt_deliver_staged(tg, m, res, err);
	CHECK(npends < NMSG);
	/* I2: this one's intent, and those of every one still due, are
	   committed before it goes */
	if (raw_count("intents") < (int)npends + 1)
		intents_short = true;
	p = &pends[npends++];
	memset(p, 0, sizeof *p);
	p->i = msg_index(m);
	mh_err_clear(&p->err);
	p->out = tgt_deliver(tg, m, &p->res, &p->err);
	return TARGET_PENDING;
}

static enum target_outcome
tgt_collect(struct target *tg, struct target_result *res,
    struct mh_err *err)
{
	enum target_outcome	 out;

	(void)tg;
	CHECK(npends > 0 && ncollected < 2 * NMSG);
	if (npends == 0 || ncollected == 2 * NMSG)
		return TARGET_TEMPFAIL;
	/* I1: nothing leaves the source before its verdict is in */
	CHECK(ncommits == 0);
	if (ncollected == 0)
		npends_at_first = npends;
	collect_order[ncollected++] = pends[0].i;
	out = pends[0].out;
	*res = pends[0].res;		/* the destinations move to res */
	*err = pends[0].err;
	npends--;
	memmove(pends, pends + 1, npends * sizeof *pends);
	return out;
}

static int
tgt_flush(struct target *tg, struct mh_err *err)
{
	bool	fail;

	(void)tg;
	if (nstaged == 0)
		return 0;
	nflushes++;
	if (nstaged > batch_max)
		batch_max = nstaged;
	nstaged = 0;
	/* I1: nothing leaves the source before the batch is committed */
	CHECK(ncommits == 0);
	fail = flush_fails_with >= 0 && in_flush[flush_fails_with];
	memset(in_flush, 0, sizeof in_flush);
	if (!fail)
		return 0;
	mh_err_set(err, MH_ERR_TEMP, "cannot fsync");
	mh_err_scope(err, MH_SCOPE_TARGET);
	return -1;
}

const struct target_ops imap_target_ops = {
	.name = "imap-mem",
	.open = imap_open,
	.connect = tgt_connect,
	.seen = tgt_seen,
	.deliver = tgt_deliver_ahead,
	.flush = tgt_flush,
	.close = tgt_close,
	.set_batch = tgt_set_batch,
	.collect = tgt_collect,
};

/* ---- the pass ---------------------------------------------------------- */

static char		 tmpdir[64];
static char		 statepath[128];
static struct config	 cfg;
static struct cfg_target tgt;
static struct cfg_account account;
static struct seen_db	*db;

static void
setup(size_t nrcpt, bool keep)
{
	struct mh_err	err;

	snprintf(tmpdir, sizeof tmpdir, "/tmp/test-sync.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		exit(1);
	snprintf(statepath, sizeof statepath, "%s/state.db", tmpdir);
	memset(&cfg, 0, sizeof cfg);
	cfg.general.state = statepath;
	cfg.general.timeout = 5;
	stated_size = announced = 0;	/* what one case set, the next not */
	wait_fetched = in_vain = in_vain_failed = 0;
	delivering = gate_after_first = false;
	imap_pends = batch_on = ahead_on = false;
	ahead = -1;
	aborted = 0;
	memset(prepared, 0, sizeof prepared);
	npends = ncollected = npends_at_first = 0;
	intents_short = false;
	memset(fetched_at, 0, sizeof fetched_at);
	memset(in_memory, 0, sizeof in_memory);
	memset(&tgt, 0, sizeof tgt);
	tgt.name = "mem";
	tgt.type = CFG_TARGET_SMTP;
	tgt.smtp.recipients = (char **)rcpts;
	tgt.smtp.nrecipients = nrcpt;
	tgt.received = true;
	memset(&account, 0, sizeof account);
	account.name = "account";
	account.protocol = CFG_PROTO_POP3;
	account.ep.host = "mem.example";
	account.ep.port = 110;
	account.ep.user = "u";
	account.ep.secret.password = "not-a-secret";
	account.target = &tgt;
	account.keep = keep;
	account.enabled = true;
	mh_err_clear(&err);
	if (seen_open(statepath, &db, &err) == -1) {
		fprintf(stderr, "  seen_open: %s\n", err.msg);
		exit(1);
	}
}

static void
teardown(void)
{
	char	cmd[128];

	seen_close(db);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static int
pass(struct sync_result *res)
{
	struct sync_opts opts;

	memset(&opts, 0, sizeof opts);
	opts.mode = SYNC_NORMAL;
	return sync_account(&cfg, &account, db, &opts, res);
}

/* The state of uid for the source at host:port (folder ""), or 0. */
static enum seen_state
state_at(const char *host, unsigned port, const char *uid)
{
	struct seen_source	 ident = { "pop3", host, port, "u", "" };
	struct seen_set		*set = NULL;
	const struct seen_entry	*e;
	struct mh_err		 err;
	enum seen_state		 st = 0;
	int64_t			 id = 0;

	mh_err_clear(&err);
	if (seen_source_find(db, &ident, &id, &err) == -1 || id == 0 ||
	    seen_load(db, id, 0, &set, &err) == -1)
		return 0;
	if ((e = seen_lookup(set, uid)) != NULL)
		st = e->state;
	seen_set_free(set);
	return st;
}

/* The state of uid in the database, or 0 when it has no record. */
static enum seen_state
state_of(const char *uid)
{
	return state_at("mem.example", 110, uid);
}

/* Delivered, recorded; a second pass delivers nothing again. */
static void
t_delivered_recorded(void)
{
	struct sync_result res;

	setup(1, true);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 2);
	CHECK(got[0][0] == 1 && got[1][0] == 1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	CHECK(state_of("u2") == SEEN_DELIVERED);
	CHECK(box_present() == 2);		/* keep = yes */
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 0);
	CHECK(attempts[0] == 1 && attempts[1] == 1);
	teardown();
}

/* A refusal for good: recorded with the reply, kept, not retried. */
static void
t_permfail_kept(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	script[1][0] = REPLY_PERM;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1);
	CHECK(res.counts.failed == 1);
	CHECK(state_of("u2") == SEEN_FAILED);
	CHECK(!box[0].present);			/* delivered: deleted */
	CHECK(box[1].present);			/* refused: kept */
	script[1][0] = REPLY_OK;
	CHECK(pass(&res) == 0);
	CHECK(attempts[1] == 1);		/* not retried every pass */
	CHECK(got[1][0] == 0);
	CHECK(box[1].present);
	teardown();
}

/* A temporary failure is retried next pass, and delivered once. */
static void
t_tempfail_retried(void)
{
	struct sync_result res;

	setup(1, true);
	box_add("u1", "1@x");
	script[0][0] = REPLY_TEMP;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.tempfailed == 1);
	CHECK(state_of("u1") == SEEN_TEMPFAIL);
	script[0][0] = REPLY_OK;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	CHECK(got[0][0] == 1);
	CHECK(attempts[0] == 2);
	teardown();
}

/* One destination took it, the other not yet: only the other is retried. */
static void
t_partial(void)
{
	struct sync_result res;

	setup(2, false);
	box_add("u1", "1@x");
	script[0][1] = REPLY_TEMP;
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 1 && got[0][1] == 0);
	CHECK(state_of("u1") == SEEN_TEMPFAIL);
	CHECK(box[0].present);			/* not whole: kept */
	script[0][1] = REPLY_OK;
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 1);			/* no second copy */
	CHECK(got[0][1] == 1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	CHECK(!box[0].present);
	teardown();
}

/* keep = no deletes only what was committed as delivered. */
static void
t_delete_committed_only(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	box_add("u4", "4@x");
	script[1][0] = REPLY_TEMP;
	box[2].retr_fails = true;		/* message-scoped source error */
	CHECK(pass(&res) == 0);
	CHECK(ncommits == 1);
	CHECK(!box[0].present);
	CHECK(box[1].present);
	CHECK(box[2].present);
	CHECK(!box[3].present);
	CHECK(state_of("u3") == SEEN_TEMPFAIL);
	CHECK(res.counts.delivered == 2 && res.counts.tempfailed == 2);
	teardown();
}

/* The target down (scope target): the pass stops delivering at once
and fails (the service backs off), what was delivered before is still
deleted, nothing counts against the message. */
static void
t_target_down(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	script[1][0] = REPLY_DOWN;
	CHECK(pass(&res) == -1);
	CHECK(res.err.cls == MH_ERR_TEMP);
	CHECK(res.err.scope == MH_SCOPE_TARGET);
	CHECK_CONTAINS(res.err.msg, "connection refused");
	CHECK(attempts[2] == 0);		/* not tried: the target is down */
	CHECK(!box[0].present);
	CHECK(box[1].present && box[2].present);
	CHECK(state_of("u2") == 0);		/* not held against it */
	CHECK(state_of("u3") == 0);
	CHECK(res.counts.failed == 0);
	teardown();
}

/*
 * One message the target fails temporarily -- a reply, or a connection
 * lost in its transaction (issue 15: a server that closes on a message
 * it does not like) -- does not keep the messages after it: they are
 * delivered (and deleted) in the same pass, it stays for the next.
 */
static void
t_tempfail_goes_on(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	box_add("u4", "4@x");
	box_add("u5", "5@x");
	script[0][0] = REPLY_LOST;
	script[2][0] = REPLY_TEMP;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 3 && res.counts.tempfailed == 2);
	/* retrieved, not delivered: told (Gmail's POP would hide them) */
	CHECK(in_vain == 0 && in_vain_failed == 2);
	CHECK(got[1][0] == 1 && got[3][0] == 1 && got[4][0] == 1);
	CHECK(box[0].present && box[2].present);
	CHECK(!box[1].present && !box[3].present && !box[4].present);
	CHECK(state_of("u1") == SEEN_TEMPFAIL);
	CHECK(state_of("u3") == SEEN_TEMPFAIL);
	/* the next pass tries the two again, and only them */
	script[0][0] = REPLY_OK;
	script[2][0] = REPLY_OK;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 2);
	CHECK(attempts[0] == 2 && attempts[1] == 1 && attempts[2] == 2);
	CHECK(box_present() == 0);
	teardown();
}

/* A target that loses the connection for every message is down after
   a few of them: the rest are not fetched in vain. */
static void
t_lost_in_a_row(void)
{
	struct sync_result res;
	size_t		   i;

	setup(1, true);
	for (i = 0; i < 6; i++) {
		static const char *const uids[] = { "u1", "u2", "u3", "u4",
		    "u5", "u6" };
		static const char *const mids[] = { "1@x", "2@x", "3@x",
		    "4@x", "5@x", "6@x" };

		box_add(uids[i], mids[i]);
		script[i][0] = REPLY_LOST;
	}
	script[1][0] = REPLY_OK;		/* a success starts afresh */
	(void)pass(&res);
	CHECK(attempts[0] == 1 && attempts[1] == 1);
	CHECK(attempts[2] == 1 && attempts[3] == 1 && attempts[4] == 1);
	CHECK(attempts[5] == 0);
	/* three lost, then the target is down: u6 waits too */
	CHECK(res.counts.delivered == 1 && res.counts.tempfailed == 5);
	CHECK(state_of("u5") == 0);		/* the target's, not its */
	CHECK(state_of("u6") == 0);
	teardown();
}

/* Backdates the failures of every message by secs (a day passes). */
static void raw_exec(const char *sql);
static int raw_count(const char *table);
static void
age_failures(long secs)
{
	char	sql[200];

	snprintf(sql, sizeof sql, "UPDATE messages SET first_failed ="
	    " first_failed - %ld, updated = updated - %ld WHERE state = 4",
	    secs, secs);
	raw_exec(sql);
}

/*
 * A message that keeps failing, over more than a day, is stuck: kept on
 * the source, no longer tried every pass (the others still are), tried
 * again every few hours, and `retry` tries it at once.
 */
static void
t_stuck(void)
{
	struct sync_result res;
	struct mh_err	   err;
	int64_t		   id = 0;
	int		   i, n = 0;

	setup(1, true);
	box_add("u1", "1@x");
	script[0][0] = REPLY_TEMP;
	for (i = 0; i < SEEN_STUCK_TRIES; i++) {
		if (i > 0)
			age_failures(SEEN_STUCK_SPAN /
			    (SEEN_STUCK_TRIES - 1) + 1);
		CHECK(pass(&res) == 0);
	}
	CHECK(attempts[0] == SEEN_STUCK_TRIES);
	/* stuck now: not tried, while a new message is delivered */
	box_add("u2", "2@x");
	CHECK(pass(&res) == 0);
	CHECK(attempts[0] == SEEN_STUCK_TRIES);
	CHECK(res.counts.delivered == 1 && got[1][0] == 1);
	CHECK(res.counts.tempfailed == 0);
	CHECK(state_of("u1") == SEEN_TEMPFAIL);
	CHECK(box[0].present);
	/* a few hours later it is tried once more */
	age_failures(SEEN_STUCK_RETRY);
	CHECK(pass(&res) == 0);
	CHECK(attempts[0] == SEEN_STUCK_TRIES + 1);
	CHECK(pass(&res) == 0);
	CHECK(attempts[0] == SEEN_STUCK_TRIES + 1);
	/* `mailhaul retry`: tried at the next pass, and delivered */
	mh_err_clear(&err);
	CHECK(seen_source_by_name(db, "account", &id, &err) == 0);
	CHECK(seen_retry(db, id, &n, &err) == 0);
	CHECK(n == 1);
	script[0][0] = REPLY_OK;
	CHECK(pass(&res) == 0);
	CHECK(attempts[0] == SEEN_STUCK_TRIES + 2 && got[0][0] == 1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	teardown();
}

/*
 * A target that cannot be reached (issue 16 item 11): the pass fails
 * (the service backs off) and fetches nothing -- no message is
 * downloaded for a target known to be down; what was due for deletion
 * is still deleted.
 */
static void
t_target_unreachable(void)
{
	struct sync_result res;

	setup(1, true);
	box_add("u1", "1@x");
	CHECK(pass(&res) == 0);			/* delivered, kept */
	account.keep = false;			/* ... and now due */
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	unreachable = true;
	nfetched = 0;
	CHECK(pass(&res) == -1);
	CHECK(res.err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(res.err.msg, "connection refused");
	CHECK(nfetched == 0);
	CHECK(attempts[1] == 0 && attempts[2] == 0);
	CHECK(res.counts.tempfailed == 2 && res.counts.fetched == 0);
	CHECK(state_of("u2") == 0 && state_of("u3") == 0);
	CHECK(!box[0].present);			/* its deletion went on */
	CHECK(box[1].present && box[2].present);
	unreachable = false;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 2 && box_present() == 0);
	teardown();
}

/* A kind with keys but no implementation yet says so, delivers nothing. */
static void
t_kind_not_built(void)
{
	struct sync_result res;

	setup(1, true);
	tgt.type = CFG_TARGET_IMAP;
	box_add("u1", "1@x");
	CHECK(pass(&res) == -1);
	CHECK_CONTAINS(res.err.msg, "not built yet");
	CHECK(attempts[0] == 0);
	CHECK(state_of("u1") == 0);
	CHECK(box[0].present);
	teardown();
}

/* setup(1, false) with messages u1.. (Message-IDs 1@x..) in the box. */
static void
setup_box(size_t n)
{
	static const char *const uids[NMSG] = { "u1", "u2", "u3", "u4", "u5",
	    "u6", "u7", "u8" };
	static const char *const mids[NMSG] = { "1@x", "2@x", "3@x", "4@x",
	    "5@x", "6@x", "7@x", "8@x" };
	size_t	i;

	setup(1, false);
	for (i = 0; i < n; i++)
		box_add(uids[i], mids[i]);
}

/*
 * NMSG messages for the IMAP-like target: the first batch is the first
 * message alone (the others are fetched only once its delivery began),
 * and its delivery waits until all of them were fetched, so the second
 * batch takes the other NMSG - 1 at once.
 */
static void
batch_setup(void)
{
	setup_box(NMSG);
	tgt.type = CFG_TARGET_IMAP;
	imap_is_mem = true;
	wait_fetched = NMSG;
	gate_after_first = true;
}

/*
 * Group commit, for a target that can be asked: what was fetched ahead
 * goes in one batch (batch_setup: the second batch takes the other 7 at
 * once), one flush each, every message once, and no intent left.
 */
static void
t_batch_commit(void)
{
	struct sync_result res;
	size_t		   i;

	batch_setup();
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == NMSG && box_present() == 0);
	for (i = 0; i < NMSG; i++)
		CHECK(got[i][0] == 1 && attempts[i] == 1);
	CHECK(batch_max == NMSG - 1 && nflushes == 2);
	CHECK(raw_count("intents") == 0);
	teardown();
}

/*
 * A flush that fails leaves its whole batch in doubt (intents kept,
 * nothing deleted, the pass fails as for a target that is down); the
 * next pass asks the target, records them and delivers none again.
 */
static void
t_batch_flush_fails(void)
{
	struct sync_result res;
	size_t		   i, left;

	batch_setup();
	flush_fails_with = NMSG - 1;	/* the batch of the last message */
	CHECK(pass(&res) == -1);
	left = box_present();		/* that batch; the ones before went */
	CHECK(left == NMSG - 1);
	CHECK(res.counts.delivered == NMSG - left);
	CHECK(raw_count("intents") == (int)left);
	CHECK(state_of("u8") == 0);
	flush_fails_with = -1;
	ncommits = 0;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == left && box_present() == 0);
	for (i = 0; i < NMSG; i++)
		CHECK(got[i][0] == 1 && attempts[i] == 1);
	CHECK(raw_count("intents") == 0);
	CHECK(state_of("u8") == SEEN_DELIVERED);
	teardown();
}

/*
 * A target that pipelines (every delivery of a batch PENDING, the
 * verdicts collected after): each verdict goes to its own message, in
 * the order sent -- delivered ones recorded and deleted, a refused one
 * kept and recorded refused, a temporary one kept and retried.
 */
static void
t_batch_pending(void)
{
	struct sync_result res;
	size_t		   i;

	batch_setup();
	imap_pends = true;
	script[2][0] = REPLY_PERM;
	script[4][0] = REPLY_TEMP;
	CHECK(pass(&res) == 0);
	CHECK(npends == 0 && ncollected == NMSG);
	for (i = 0; i < NMSG; i++)
		CHECK(collect_order[i] == i);
	CHECK(res.counts.delivered == NMSG - 2);
	CHECK(state_of("u3") == SEEN_FAILED);
	CHECK(state_of("u5") != SEEN_DELIVERED);
	CHECK(state_of("u8") == SEEN_DELIVERED);
	CHECK(box_present() == 2);		/* u3 and u5 */
	CHECK(raw_count("intents") == 1);	/* u5's: in doubt */
	teardown();
}

/*
 * The pass after a failed one: it succeeds, nothing is left on the
 * source, every message was delivered exactly once over both passes,
 * and no intent is left.
 */
static void
next_pass_all_once(void)
{
	struct sync_result res;

	ncommits = 0;
	CHECK(pass(&res) == 0);
	CHECK(box_present() == 0);
	for (size_t i = 0; i < NMSG; i++)
		CHECK(got[i][0] == 1);
	CHECK(raw_count("intents") == 0);
}

/*
 * Pipelined, the target goes down at the second batch's third verdict:
 * every message sent is still heard, those before and after it that got
 * an OK are recorded, and the next pass delivers the one left, once.
 */
static void
t_batch_pending_down(void)
{
	struct sync_result res;

	batch_setup();
	imap_pends = true;
	script[3][0] = REPLY_DOWN;
	CHECK(pass(&res) == -1);
	CHECK(ncollected == NMSG);		/* every one sent was heard */
	CHECK(in_vain + in_vain_failed == 1);	/* u4 */
	CHECK(state_of("u3") == SEEN_DELIVERED);
	CHECK(state_of("u4") != SEEN_DELIVERED);
	CHECK(state_of("u5") == SEEN_DELIVERED);
	CHECK(state_of("u8") == SEEN_DELIVERED);
	CHECK(box_present() == 1);
	script[3][0] = REPLY_OK;
	next_pass_all_once();
	teardown();
}

/*
 * Pipelined batches overlap: the second batch (the other 7, spooled
 * while the first message was sent) goes out before the first one's
 * verdict is read, each message with its intent committed first, and
 * every verdict still reaches its own message (u6's refusal its own).
 */
static void
t_batch_overlap(void)
{
	struct sync_result res;
	size_t		   i;

	batch_setup();
	imap_pends = true;
	script[5][0] = REPLY_PERM;
	CHECK(pass(&res) == 0);
	CHECK(npends_at_first == NMSG);		/* both batches out */
	CHECK(!intents_short);
	CHECK(ncollected == NMSG);
	for (i = 0; i < NMSG; i++)
		CHECK(collect_order[i] == i);
	CHECK(res.counts.delivered == NMSG - 1 && box_present() == 1);
	CHECK(state_of("u6") == SEEN_FAILED);
	CHECK(state_of("u5") == SEEN_DELIVERED);
	CHECK(state_of("u7") == SEEN_DELIVERED);
	CHECK(raw_count("intents") == 0);
	teardown();
}

/*
 * The second batch's intents cannot be written while the first is due:
 * the first is still heard and recorded, nothing of the second is sent
 * or recorded, and the next pass delivers those, once, and deletes u1.
 */
static void
t_batch_overlap_state_fails(void)
{
	struct sync_result res;
	size_t		   i;

	batch_setup();
	imap_pends = true;
	raw_exec("CREATE TRIGGER full BEFORE INSERT ON intents "
	    "WHEN NEW.uid = 'u2' BEGIN SELECT RAISE(ABORT, 'disk full'); END");
	CHECK(pass(&res) == -1);
	CHECK(npends_at_first == 1 && ncollected == 1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	for (i = 1; i < NMSG; i++)
		CHECK(got[i][0] == 0);
	CHECK(box_present() == NMSG);	/* a pass the state stopped
					   deletes nothing; u1 goes next */
	CHECK(raw_count("intents") == 0);
	raw_exec("DROP TRIGGER full");
	next_pass_all_once();
	teardown();
}

/*
 * The first batch's verdict says the target is down while the second
 * batch is out: the second's verdicts are still read and recorded, the
 * first message stays on the source (it is not in doubt: refused), and
 * the next pass delivers it, once.
 */
static void
t_batch_overlap_down(void)
{
	struct sync_result res;
	size_t		   i;

	batch_setup();
	imap_pends = true;
	script[0][0] = REPLY_DOWN;
	CHECK(pass(&res) == -1);
	CHECK(npends_at_first == NMSG && ncollected == NMSG);
	CHECK(state_of("u1") != SEEN_DELIVERED);
	for (i = 1; i < NMSG; i++)
		CHECK(got[i][0] == 1);
	CHECK(state_of("u2") == SEEN_DELIVERED);
	CHECK(state_of("u8") == SEEN_DELIVERED);
	CHECK(box_present() == 1);
	script[0][0] = REPLY_OK;
	next_pass_all_once();
	teardown();
}

/* ---- sending ahead (SMTP/LMTP) ----------------------------------------- */

static void
ahead_setup(size_t n)
{
	setup_box(n);
	wait_fetched = (unsigned)n;	/* all fetched: each finds the next */
	ahead_on = true;
}

/*
 * Each message after the first is sent ahead while the one before is
 * recorded -- before that record (its state not yet DELIVERED), and
 * ended only after it (tgt_deliver_ahead): every message once, all
 * deleted, no intent left.
 */
static void
t_ahead(void)
{
	struct sync_result res;
	size_t		   i;

	ahead_setup(4);
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 4);
	CHECK(prepared[0] == 0);
	for (i = 1; i < 4; i++) {
		CHECK(prepared[i] == 1);
		CHECK(prev_at_prepare[i] != SEEN_DELIVERED);
		CHECK(got[i][0] == 1 && attempts[i] == 1);
	}
	CHECK(got[0][0] == 1 && aborted == 0);
	CHECK(box_present() == 0);
	CHECK(raw_count("intents") == 0);
	teardown();
}

/*
 * The record of message 1 fails (a full disk) after message 2 was sent
 * ahead: the pass stops, message 2's transaction is never ended (the
 * target is closed with it open: discarded), nothing is deleted; the
 * next pass delivers message 1 again (the one duplicate a crash there
 * may cost where the target cannot be asked) and the others once.
 */
static void
t_ahead_record_fails(void)
{
	struct sync_result res;
	size_t		   i;

	ahead_setup(4);
	raw_exec("CREATE TRIGGER full BEFORE UPDATE ON messages "
	    "WHEN NEW.uid = 'u1' AND NEW.state = 1 "
	    "BEGIN SELECT RAISE(ABORT, 'disk full'); END");
	raw_exec("CREATE TRIGGER full2 BEFORE INSERT ON messages "
	    "WHEN NEW.uid = 'u1' AND NEW.state = 1 "
	    "BEGIN SELECT RAISE(ABORT, 'disk full'); END");
	CHECK(pass(&res) == -1);
	CHECK(got[0][0] == 1 && prepared[1] == 1 && aborted == 1);
	for (i = 1; i < 4; i++)
		CHECK(got[i][0] == 0 && attempts[i] == 0);
	CHECK(state_of("u1") != SEEN_DELIVERED);
	CHECK(box_present() == 4);
	raw_exec("DROP TRIGGER full");
	raw_exec("DROP TRIGGER full2");
	ahead_on = false;
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 2);
	for (i = 1; i < 4; i++)
		CHECK(got[i][0] == 1);
	CHECK(box_present() == 0);
	teardown();
}

/*
 * Message 2, sent ahead, is refused for good and message 3 is lost with
 * the connection: each is recorded as without sending ahead, and
 * message 4 (sent ahead of nothing: the one before failed) is delivered.
 */
static void
t_ahead_failures(void)
{
	struct sync_result res;

	ahead_setup(4);
	script[1][0] = REPLY_PERM;
	script[2][0] = REPLY_LOST;
	CHECK(pass(&res) == 0);
	CHECK(prepared[1] == 1);
	CHECK(prepared[2] == 0 && prepared[3] == 0);	/* after failures */
	CHECK(state_of("u1") == SEEN_DELIVERED);
	CHECK(state_of("u2") == SEEN_FAILED);
	CHECK(state_of("u3") == SEEN_TEMPFAIL);
	CHECK(state_of("u4") == SEEN_DELIVERED);
	CHECK(got[0][0] == 1 && got[3][0] == 1);
	CHECK(box_present() == 2);
	teardown();
}

/* ---- the in-flight intent (I2) ---------------------------------------- */

/* Runs sql on the state database behind seen.c's back. */
static void
raw_exec(const char *sql)
{
	sqlite3	*h;
	char	*msg = NULL;

	CHECK(sqlite3_open(statepath, &h) == SQLITE_OK);
	if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "  %s: %s\n", sql, msg);
		CHECK(0);
	}
	sqlite3_free(msg);
	sqlite3_close(h);
}

static int
raw_count(const char *table)
{
	sqlite3		*h;
	sqlite3_stmt	*s;
	char		 sql[128];
	int		 n = -1;

	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
	CHECK(sqlite3_open(statepath, &h) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return n;
}

/* A crash between the target's acceptance and the commit, replayed: the
   record of uid goes, its intent stays. */
static void
lose_commit(const char *uid)
{
	char	sql[512];

	snprintf(sql, sizeof sql, "INSERT INTO intents (source_id,"
	    " uidvalidity, uid, target, at) SELECT source_id, uidvalidity,"
	    " uid, 'mem', 1 FROM messages WHERE uid = '%s';"
	    "DELETE FROM messages WHERE uid = '%s'", uid, uid);
	raw_exec(sql);
}

/* Files in DIR/new and DIR/cur. */
static int
maildir_count(const char *dir)
{
	static const char *const subs[] = { "new", "cur" };
	struct dirent	*de;
	char		 path[300];
	DIR		*d;
	int		 n = 0;

	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
		if ((d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL)
			n += de->d_name[0] != '.';
		closedir(d);
	}
	return n;
}

static char	mdpath[128];

static void
setup_maildir(bool keep)
{
	setup(1, keep);
	snprintf(mdpath, sizeof mdpath, "%s/Maildir", tmpdir);
	tgt.type = CFG_TARGET_MAILDIR;
	tgt.maildir.path = mdpath;
}

/*
 * Into a Maildir (a target that can be asked): a message whose commit
 * was lost is found by its key digest and recorded, not written again;
 * one whose intent was recorded but never reached the Maildir is
 * delivered.  No intent is left.
 */
static void
t_in_doubt_found(void)
{
	struct sync_result res;

	setup_maildir(false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	CHECK(pass(&res) == 0);
	CHECK(maildir_count(mdpath) == 2);
	CHECK(raw_count("intents") == 0);
	box[1].present = true;		/* its deletion never happened */
	lose_commit("u2");
	box_add("u3", "3@x");
	raw_exec("INSERT INTO intents (source_id, uidvalidity, uid, target,"
	    " at) SELECT id, 0, 'u3', 'mem', 1 FROM sources");
	CHECK(state_of("u2") == 0);
	CHECK(pass(&res) == 0);
	CHECK(maildir_count(mdpath) == 3);	/* u2 not again; u3 once */
	CHECK(state_of("u2") == SEEN_DELIVERED);
	CHECK(state_of("u3") == SEEN_DELIVERED);
	CHECK(res.counts.delivered == 2);
	CHECK(raw_count("intents") == 0);
	CHECK(box_present() == 0);
	teardown();
}

/*
 * Keeping everything, a pass looks up only what follows the head of the
 * listing that was all delivered (issue 14): a temporary failure ends
 * the head; a delivered record that goes (a trigger) unsettles it, and
 * the next pass looks everything up again; the head itself is trusted,
 * not read (a record lost behind the triggers' back is not noticed).
 */
static void
t_settled_head(void)
{
	struct sync_result res;

	setup(1, true);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	script[1][0] = REPLY_TEMP;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 2 && res.counts.tempfailed == 1);
	CHECK(raw_count("sources WHERE settled_n = 1") == 1);
	script[1][0] = REPLY_OK;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1 && got[1][0] == 1);
	CHECK(raw_count("sources WHERE settled_n = 3") == 1);
	box_add("u4", "4@x");
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1 && got[3][0] == 1);
	CHECK(raw_count("sources WHERE settled_n = 4") == 1);
	/* a record that goes unsettles the head: u3 is new again */
	raw_exec("DELETE FROM messages WHERE uid = 'u3'");
	CHECK(raw_count("sources WHERE settled_n IS NULL") == 1);
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1 && got[2][0] == 2);
	CHECK(raw_count("sources WHERE settled_n = 4") == 1);
	/* the head is not looked up */
	raw_exec("DROP TRIGGER messages_unsettle_del;"
	    "DELETE FROM messages WHERE uid = 'u2'");
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 0 && got[1][0] == 1);
	/* nor used once the listing begins otherwise */
	box[0].present = false;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1 && got[1][0] == 2);
	CHECK(raw_count("sources WHERE settled_n = 3") == 1);
	/* a record marked deleted unsettles it; a prune's note does not */
	raw_exec("UPDATE messages SET gone_at = 1 WHERE uid = 'u4'");
	CHECK(raw_count("sources WHERE settled_n = 3") == 1);
	raw_exec("UPDATE messages SET deleted_at = 1 WHERE uid = 'u4'");
	CHECK(raw_count("sources WHERE settled_n IS NULL") == 1);
	raw_exec("UPDATE sources SET settled_n = 3;"
	    "UPDATE messages SET gone_at = 2 WHERE uid = 'u4'");
	CHECK(raw_count("sources WHERE settled_n = 3") == 1);
	teardown();
}

/*
 * A target that cannot be asked (SMTP, LMTP, MDA) gets a message in
 * doubt again -- at most one duplicate per crash -- and a temporary
 * failure there leaves no intent behind (nothing to ask later).
 */
static void
t_in_doubt_cannot_ask(void)
{
	struct sync_result res;

	setup(1, true);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	script[1][0] = REPLY_TEMP;
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 1);
	CHECK(raw_count("intents") == 0);
	lose_commit("u1");
	script[1][0] = REPLY_OK;
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 2 && got[1][0] == 1);
	CHECK(raw_count("intents") == 0);
	teardown();
}

/*
 * A Maildir that fails (new/ is not a directory): temporary, the pass
 * stops, the intent stays (the Maildir is asked next time), and once it
 * is mended the message arrives once.
 */
static void
t_in_doubt_after_tempfail(void)
{
	struct sync_result res;
	char		   path[300];
	FILE		  *f;

	setup_maildir(true);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	CHECK(mkdir(mdpath, 0700) == 0);
	snprintf(path, sizeof path, "%s/new", mdpath);
	CHECK((f = fopen(path, "w")) != NULL);
	if (f != NULL)
		fclose(f);
	CHECK(pass(&res) == -1);		/* checked before fetching */
	CHECK(res.counts.delivered == 0 && res.counts.tempfailed == 2);
	CHECK(state_of("u1") == 0);		/* the target's failure */
	CHECK(state_of("u2") == 0);		/* not tried: target down */
	CHECK(raw_count("intents") == 0);	/* nothing was handed over */
	CHECK(unlink(path) == 0);
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 2);
	CHECK(maildir_count(mdpath) == 2);
	CHECK(raw_count("intents") == 0);
	teardown();
}

/* ---- identity (issue #16 items 1, 2, 4, 5; #17) ----------------------- */

static void
count_skipped(const struct seen_status *st, const struct seen_failure *f,
    void *arg)
{
	(void)st;
	if (f->skipped)
		(*(unsigned *)arg)++;
}

/* Skipped by max_size: listed by status, fetched once the limit allows. */
static void
t_skipped_rejudged(void)
{
	struct sync_result	res;
	struct mh_err		err;
	unsigned		nskipped = 0;

	setup(1, true);
	box_add("u1", "1@x");
	account.max_size = 20;
	CHECK(pass(&res) == 0);
	CHECK(res.counts.skipped == 1 && attempts[0] == 0);
	CHECK(state_of("u1") == SEEN_SKIPPED);
	mh_err_clear(&err);
	CHECK(seen_status(db, NULL, count_skipped, &nskipped, &err) == 0);
	CHECK(nskipped == 1);
	CHECK(pass(&res) == 0);			/* still too big */
	CHECK(attempts[0] == 0);
	account.max_size = 0;			/* the limit is raised */
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1 && got[0][0] == 1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	teardown();
}

/* `retry` fetches a skipped message whatever its size. */
static void
t_skipped_retry(void)
{
	struct sync_result	res;
	struct seen_source	ident = { "pop3", "mem.example", 110, "u", "" };
	struct mh_err		err;
	int64_t			id = 0;
	int			n = 0;

	setup(1, true);
	box_add("u1", "1@x");
	account.max_size = 20;
	CHECK(pass(&res) == 0);
	CHECK(state_of("u1") == SEEN_SKIPPED);
	mh_err_clear(&err);
	CHECK(seen_source_find(db, &ident, &id, &err) == 0 && id != 0);
	CHECK(seen_retry(db, id, &n, &err) == 0 && n == 1);
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	teardown();
}

/* A POP3 server gives a deleted message's UIDL to a new one: delivered;
   the old one back on the server: not delivered again. */
static void
t_uidl_reused(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 1 && !box[0].present);
	box_add("u1", "2@x");			/* the same UIDL, new mail */
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1);
	CHECK(got[1][0] == 1 && !box[1].present);
	CHECK(pass(&res) == 0);
	CHECK(got[0][0] == 1 && got[1][0] == 1);
	box[1].present = true;			/* a deletion that did not hold */
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 0 && got[1][0] == 1);
	CHECK(!box[1].present);			/* deleted again */
	CHECK(raw_count("messages") == 2);	/* the old one set aside */
	teardown();
}

/* The host in another case, then another name for the same server: no
   message again; then another server: its messages are new. */
static void
t_endpoint_change(void)
{
	struct sync_result res;

	setup(1, true);
	account.ep.host = "MEM.Example";
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	CHECK(pass(&res) == 0 && res.counts.delivered == 2);
	account.ep.host = "mem.example";	/* the same host, other case */
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 0);
	account.ep.host = "127.0.0.1";
	account.ep.port = 1110;
	box_add("u3", "3@x");
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 1 && got[2][0] == 1);
	CHECK(got[0][0] == 1 && got[1][0] == 1);
	CHECK(state_at("127.0.0.1", 1110, "u1") == SEEN_DELIVERED);
	CHECK(raw_count("sources") == 1);
	/* another server: nothing of it known */
	box[0].present = box[1].present = box[2].present = false;
	box_add("v1", "4@x");
	box_add("v2", "5@x");
	account.ep.host = "other.example";
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 2 && got[3][0] == 1 && got[4][0] == 1);
	CHECK(raw_count("sources") == 2);
	CHECK(state_at("127.0.0.1", 1110, "u1") == SEEN_DELIVERED);
	teardown();
}

/* The same message in two folders of an account (Gmail labels, a move
   between listed folders): delivered once. */
static void
t_cross_folder(void)
{
	struct sync_result	 res;
	char			*folders[] = { "INBOX", "Other" };

	setup(1, true);
	account.protocol = CFG_PROTO_IMAP;
	account.folders = folders;
	account.nfolders = 2;
	box_add("1", "1@x");
	box_add("2", "2@x");
	CHECK(pass(&res) == 0);
	CHECK(res.counts.delivered == 2);	/* the copies: recorded only */
	CHECK(attempts[0] == 1 && attempts[1] == 1);
	CHECK(got[0][0] == 1 && got[1][0] == 1);
	CHECK(pass(&res) == 0);
	CHECK(attempts[0] == 1 && attempts[1] == 1);
	teardown();
}

/* move_to is no source unless named; the spool bound. */
static void
t_move_to_not_a_source(void)
{
	char	*named[] = { "*", "Archive" }, *pattern[] = { "*" };
	char	**v;

	setup(1, true);
	account.protocol = CFG_PROTO_IMAP;
	account.move_to = "Archive";
	account.folders = pattern;
	account.nfolders = 1;
	v = xcalloc(4, sizeof *v);
	v[0] = xstrdup("INBOX");
	v[1] = xstrdup("Archive");
	v[2] = xstrdup("Sent");
	identity_filter_folders(&account, v);
	CHECK_STR(v[0], "INBOX");
	CHECK_STR(v[1], "Sent");
	CHECK(v[2] == NULL);
	source_folders_free(v);
	account.folders = named;
	account.nfolders = 2;
	v = xcalloc(3, sizeof *v);
	v[0] = xstrdup("INBOX");
	v[1] = xstrdup("Archive");
	identity_filter_folders(&account, v);
	CHECK_STR(v[1], "Archive");
	source_folders_free(v);
	account.max_size = 1000000;
	CHECK(identity_fetch_limit(&account, 100, false) == 100 + 50 +
	    (1u << 20));
	CHECK(identity_fetch_limit(&account, 1u << 30, false) ==
	    1500000 + (1u << 20));
	CHECK(identity_fetch_limit(&account, 1u << 30, true) > (1u << 30));
	CHECK(identity_fetch_limit(&account, UINT64_MAX, true) == UINT64_MAX);
	/* `mailhaul retry` (tempfail, no failure counted): no cap at all,
	   whatever the listed size said; a counted failure keeps it */
	{
		struct seen_entry	r = { .state = SEEN_TEMPFAIL, .tries = 0 };
		struct seen_entry	t = { .state = SEEN_TEMPFAIL, .tries = 2 };

		CHECK(identity_entry_limit(&account, 100, &r) == UINT64_MAX);
		CHECK(identity_entry_limit(&account, 100, &t) ==
		    100 + 50 + (1u << 20));
		CHECK(identity_entry_limit(&account, 1u << 30, NULL) ==
		    1500000 + (1u << 20));
		CHECK(identity_entry_limit(&account, 1u << 30, &t) >
		    (1u << 30));
	}
	teardown();
}

/* A server that states 2^63 bytes per message: the totals saturate
   instead of wrapping (two of them made 0). */
static void
t_sizes_saturate(void)
{
	struct sync_result res;
	struct sync_opts   opts;
	char		  *out = NULL, want[128];
	size_t		   len = 0;

	setup(1, true);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	stated_size = UINT64_C(1) << 63;
	memset(&opts, 0, sizeof opts);
	memset(&res, 0, sizeof res);
	opts.mode = SYNC_DRY_RUN;
	CHECK((opts.report = open_memstream(&out, &len)) != NULL);
	if (opts.report == NULL)
		return;
	CHECK(sync_account(&cfg, &account, db, &opts, &res) == 0);
	fclose(opts.report);
	snprintf(want, sizeof want, "3 new (%" PRIu64 " bytes)", UINT64_MAX);
	CHECK_CONTAINS(out, want);
	free(out);
	CHECK(mh_add_sat(UINT64_MAX - 1, 1) == UINT64_MAX);
	CHECK(mh_add_sat(UINT64_MAX, UINT64_MAX) == UINT64_MAX);
	CHECK(mh_add_sat(1, 2) == 3);
	teardown();
}

/*
 * Fetching overlaps delivery: while the target takes the first message,
 * the next ones are retrieved (the delivery waits for them, bounded; in
 * turns they would never come).  Small messages are spooled in memory.
 */
static void
t_overlap(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	wait_fetched = 3;
	CHECK(pass(&res) == 0);
	CHECK(fetched_at[0] == 3);
	CHECK(res.counts.delivered == 3 && box_present() == 0);
	CHECK(in_vain == 0);
	CHECK(in_memory[0] && in_memory[1] && in_memory[2]);
	teardown();
}

/*
 * The pipeline is bounded in bytes: messages announced at 5 MiB (the
 * budget is 8 MiB) are fetched one at a time, each after the one before
 * it was delivered.  They are spooled in files, not in memory.
 */
static void
t_bytes_bound(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	announced = 5u * 1024 * 1024;
	CHECK(pass(&res) == 0);
	CHECK(fetched_at[0] == 1 && fetched_at[1] == 2 && fetched_at[2] == 3);
	CHECK(res.counts.delivered == 3 && box_present() == 0);
	CHECK(!in_memory[0] && !in_memory[1] && !in_memory[2]);
	teardown();
}

/*
 * The target goes down while messages were fetched ahead: the source is
 * told how many were fetched in vain (POP3 then ends without QUIT), and
 * the marks wait for the fetch thread: nothing fetched ahead is deleted.
 */
static void
t_fetched_in_vain(void)
{
	struct sync_result res;

	setup(1, false);
	box_add("u1", "1@x");
	box_add("u2", "2@x");
	box_add("u3", "3@x");
	box_add("u4", "4@x");
	script[1][0] = REPLY_DOWN;
	wait_fetched = 4;
	CHECK(pass(&res) == -1);
	CHECK(res.err.scope == MH_SCOPE_TARGET);
	CHECK(fetched_at[1] == 4);
	CHECK(in_vain == 2);			/* u3, u4 */
	CHECK(in_vain_failed == 1);		/* u2, handed on */
	CHECK(!box[0].present);
	CHECK(box[1].present && box[2].present && box[3].present);
	CHECK(state_of("u3") == 0 && state_of("u4") == 0);
	teardown();
}

/*
 * A batch given up when its first delivery finds the target down: the
 * messages handed on with it were retrieved and not delivered, and the
 * source is told of every one (Gmail's POP must not see QUIT then).
 */
static void
t_batch_given_up_in_vain(void)
{
	struct sync_result res;

	batch_setup();
	script[1][0] = REPLY_DOWN;
	CHECK(pass(&res) == -1);
	CHECK(state_of("u1") == SEEN_DELIVERED);
	CHECK(state_of("u2") != SEEN_DELIVERED);
	CHECK(in_vain + in_vain_failed == NMSG - 1);
	CHECK(box_present() == NMSG - 1);
	script[1][0] = REPLY_OK;
	next_pass_all_once();
	teardown();
}

/*
 * A spool in memory that would grow past MH_SPOOL_MEM_CAP (a server
 * that sends far more than it announced) moves to a file on the same
 * descriptor: the bytes before and after are all there, in order, and
 * the descriptor stays close-on-exec.  A file of tmpfs (memory too) is
 * not taken for a spool in memory: it is not moved again.
 */
static void
t_memspool_moves(void)
{
	static char	 chunk[10 * 1024], back[sizeof chunk];
	const char	*old = getenv("TMPDIR");
	char		*saved = old != NULL ? xstrdup(old) : NULL;
	size_t		 i, n = 31;	/* 310 KiB in all */
	int		 fd;

	setup(1, false);
	setenv("TMPDIR", tmpdir, 1);
	if ((fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) !=
	    -1) {
		CHECK(!mh_is_memspool(fd));
		close(fd);
	}
	CHECK((fd = mh_memspool_open()) >= 0);
	CHECK(mh_is_memspool(fd));
	for (i = 0; i < n; i++) {
		memset(chunk, 'a' + (int)(i % 26), sizeof chunk);
		CHECK(mh_memspool_bound(fd, i * sizeof chunk, sizeof chunk) ==
		    0);
		/* moved when the cap is crossed, not before */
		CHECK(mh_is_memspool(fd) == ((i + 1) * sizeof chunk <=
		    MH_SPOOL_MEM_CAP));
		CHECK(write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk);
	}
	CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	for (i = 0; i < n; i++) {
		memset(chunk, 'a' + (int)(i % 26), sizeof chunk);
		CHECK(read(fd, back, sizeof back) == (ssize_t)sizeof back);
		CHECK(memcmp(chunk, back, sizeof chunk) == 0);
	}
	CHECK(read(fd, back, sizeof back) == 0);
	close(fd);
	if (saved != NULL)
		setenv("TMPDIR", saved, 1);
	else
		unsetenv("TMPDIR");
	free(saved);
	teardown();
}

/* A source that hands its own spooled bodies over, as the IMAP source
   does (give_fd): each one of the other kind than the file it is given,
   so that kinds change hands all the time. */
static int
swap_fetch(void *ctx, size_t k, int fd, struct mh_err *err)
{
	int	body = mh_is_memspool(fd) ? mh_tmpfile() : mh_memspool_open();
	char	c = (char)('a' + k % 26);

	(void)ctx;
	if (body == -1 || write(body, &c, 1) != 1 ||
	    dup3(body, fd, O_CLOEXEC) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "swap: %s", strerror(errno));
		return -1;
	}
	close(body);
	return 0;
}

/*
 * The pipeline keeps its spare spools by kind (in memory for a small
 * message, a file for a big one) however the source swaps them: 600
 * messages, small and big in turns, each body of the other kind than
 * its spool, all come out whole and in order.
 */
static void
t_spool_kinds_swapped(void)
{
	static uint64_t		 size[600];
	struct pipeline		*pl;
	struct pipeline_item	 it;
	struct mh_err		 err;
	size_t			 k, n_out = 0;
	char			 c;

	setup(1, false);
	for (k = 0; k < 600; k++)
		size[k] = k % 3 == 2 ? 1024 * 1024 : 1000;
	mh_err_clear(&err);
	CHECK((pl = pipeline_start(size, 600, tmpdir, swap_fetch, NULL,
	    &err)) != NULL);
	while (pl != NULL && pipeline_next(pl, &it) == 1) {
		CHECK(it.rc == 0 && it.k == n_out);
		CHECK(it.fd != -1 && read(it.fd, &c, 1) == 1 &&
		    c == (char)('a' + n_out % 26));
		n_out++;
		pipeline_release(pl, &it);
	}
	CHECK(n_out == 600);
	pipeline_stop(pl);
	teardown();
}

/* Counts the spools the fetch thread was given that were not empty. */
struct empty_ctx {
	int	not_empty;
};

/* Checks the spool is empty at offset 0, writes 100 + k bytes; every
   third message then fails alone, its bytes left in the spool. */
static int
empty_fetch(void *ctx, size_t k, int fd, struct mh_err *err)
{
	struct empty_ctx	*c = ctx;
	struct stat		 st;
	char			 buf[512];

	if (fstat(fd, &st) == -1 || st.st_size != 0 ||
	    lseek(fd, 0, SEEK_CUR) != 0)
		c->not_empty++;
	memset(buf, 'a' + (int)(k % 26), sizeof buf);
	if (write(fd, buf, 100 + k % 300) != (ssize_t)(100 + k % 300)) {
		mh_err_set(err, MH_ERR_LOCAL, "write: %s", strerror(errno));
		return -1;
	}
	if (k % 3 == 1) {
		mh_err_set(err, MH_ERR_PERM, "message %zu refused", k);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		return -1;
	}
	return 0;
}

/*
 * A spool comes back to the fetch side empty: emptied when released
 * (on the caller's side), or by the fetch thread after a fetch that
 * failed.  300 messages, small and big, a third of them failing after
 * writing; then, the fetch thread done, a released file is empty at
 * once.
 */
static void
t_spool_empty_each_time(void)
{
	static uint64_t		 size[300];
	struct empty_ctx	 c = { 0 };
	struct pipeline		*pl;
	struct pipeline_item	 it, held[3];
	struct mh_err		 err;
	struct stat		 st;
	size_t			 k, n_out = 0;
	int			 fd, waited;

	setup(1, false);
	for (k = 0; k < 300; k++)
		size[k] = k % 5 == 4 ? 1024 * 1024 : 400;
	mh_err_clear(&err);
	CHECK((pl = pipeline_start(size, 300, tmpdir, empty_fetch, &c,
	    &err)) != NULL);
	while (pl != NULL && pipeline_next(pl, &it) == 1) {
		CHECK(it.k == n_out);
		CHECK(it.rc == (n_out % 3 == 1 ? -1 : 0));
		CHECK(it.rc != 0 || it.info.size == 100 + n_out % 300);
		n_out++;
		pipeline_release(pl, &it);
	}
	CHECK(n_out == 300);
	CHECK(c.not_empty == 0);
	pipeline_stop(pl);

	/* three messages, all taken before any is released (held, so the
	   rest by pipeline_try_next); the plan has no fourth, so nothing
	   takes a released file again */
	size[0] = size[1] = size[2] = 400;
	c.not_empty = 0;
	CHECK((pl = pipeline_start(size, 3, tmpdir, empty_fetch, &c,
	    &err)) != NULL);
	if (pl == NULL)
		goto out;
	CHECK(pipeline_next(pl, &held[0]) == 1);
	for (k = 1, waited = 0; k < 3 && waited < 5000; )
		if (pipeline_try_next(pl, &held[k]) == 1)
			k++;
		else {
			usleep(1000);
			waited++;
		}
	CHECK(k == 3);
	fd = held[0].fd;
	CHECK(fd != -1 && fstat(fd, &st) == 0 && st.st_size == 100);
	pipeline_release(pl, &held[0]);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 0);
	for (n_out = 1; n_out < k; n_out++)	/* [1] failed: no file */
		pipeline_release(pl, &held[n_out]);
	CHECK(c.not_empty == 0);
	pipeline_stop(pl);
out:
	teardown();
}

int
main(void)
{
	RUN(t_delivered_recorded);
	RUN(t_permfail_kept);
	RUN(t_tempfail_retried);
	RUN(t_partial);
	RUN(t_delete_committed_only);
	RUN(t_target_down);
	RUN(t_overlap);
	RUN(t_bytes_bound);
	RUN(t_fetched_in_vain);
	RUN(t_batch_given_up_in_vain);
	RUN(t_tempfail_goes_on);
	RUN(t_lost_in_a_row);
	RUN(t_target_unreachable);
	RUN(t_stuck);
	RUN(t_kind_not_built);
	RUN(t_batch_commit);
	RUN(t_batch_flush_fails);
	RUN(t_batch_pending);
	RUN(t_batch_pending_down);
	RUN(t_batch_overlap);
	RUN(t_batch_overlap_down);
	RUN(t_batch_overlap_state_fails);
	RUN(t_ahead);
	RUN(t_ahead_record_fails);
	RUN(t_ahead_failures);
	RUN(t_in_doubt_found);
	RUN(t_in_doubt_cannot_ask);
	RUN(t_in_doubt_after_tempfail);
	RUN(t_skipped_rejudged);
	RUN(t_skipped_retry);
	RUN(t_uidl_reused);
	RUN(t_endpoint_change);
	RUN(t_cross_folder);
	RUN(t_move_to_not_a_source);
	RUN(t_sizes_saturate);
	RUN(t_settled_head);
	RUN(t_memspool_moves);
	RUN(t_spool_kinds_swapped);
	RUN(t_spool_empty_each_time);
	return check_done();
}
