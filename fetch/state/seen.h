/*
 * seen.h -- the state database (SQLite): what was delivered, what failed,
 * and a log of every pass.
 *
 * One file, WAL, busy timeout, mode 0600 in a 0700 directory, schema
 * versioned with PRAGMA user_version and migrated forward.  A source is
 * keyed by its identity (protocol, host, port, user, folder), not by the
 * config section name, so renaming a section refetches nothing.
 *
 * Every seen_record_* call is its own committed transaction: when it
 * returns 0 the fact is on disk (synchronous=FULL), which is what
 * invariant I1 relies on before anything is deleted on the server.
 * No secret is ever stored.
 */
#ifndef MAILHAUL_FETCH_SEEN_H
#define MAILHAUL_FETCH_SEEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util.h"

struct seen_db;		/* opaque */
struct seen_set;	/* opaque: one source's records, hashed */

/* A source's identity.  folder is "" for POP3. */
struct seen_source {
	const char	*protocol;	/* "pop3" | "imap" */
	const char	*host;
	unsigned	 port;
	const char	*user;
	const char	*folder;
};

enum seen_state {
	SEEN_DELIVERED = 1,
	SEEN_FAILED,	/* permanent refusal (5xx): not retried until
			   `mailhaul retry` */
	SEEN_SKIPPED,	/* max_size and the like: not fetched */
	SEEN_TEMPFAIL,	/* temporary failure: retried next pass, or less
			   often once it is stuck (seen_stuck) */
};

/*
 * A message that keeps failing temporarily is "stuck" once it failed
 * SEEN_STUCK_TRIES times over at least SEEN_STUCK_SPAN seconds (from its
 * first failure to its last): it stays on the source, `status` lists it
 * with its last error, and it is tried again only every SEEN_STUCK_RETRY
 * seconds instead of every pass.  `mailhaul retry` (seen_retry) counts
 * its failures afresh.  A few failures in a short time (a target that
 * was away for an hour) never make a message stuck.
 */
#define SEEN_STUCK_TRIES	5
#define SEEN_STUCK_SPAN		(24 * 60 * 60)
#define SEEN_STUCK_RETRY	(4 * 60 * 60)

/* One message as the source lists it and sync records it. */
struct seen_msg {
	const char	*uid;		/* POP3 UIDL, IMAP UID (decimal), or the
					   fallback key when there is no UIDL */
	uint32_t	 uidvalidity;	/* IMAP; 0 for POP3 */
	uint64_t	 size;
	const char	*message_id;	/* NULL if none */
	const char	*digest;	/* sha256 hex of the message; may be NULL */
};

/* What seen_lookup returns (borrowed from the set). */
struct seen_entry {
	enum seen_state	 state;
	time_t		 delivered_at;	/* 0 unless delivered */
	bool		 deleted;	/* known gone from the server */
	int		 tries;		/* failures since the last retry */
	time_t		 first_failed;	/* the first of them; 0 if none */
	time_t		 last_tried;	/* the record's last change */
};

/* Whether e is stuck (see SEEN_STUCK_TRIES). */
bool	seen_stuck(const struct seen_entry *e);

/* Whether a pass at now tries e again: always, unless it is stuck and
   was tried less than SEEN_STUCK_RETRY seconds ago. */
bool	seen_retry_due(const struct seen_entry *e, time_t now);

/*
 * Opens (creating if needed, with parent directories 0700 and the file
 * 0600) and migrates the database at path.  A file that is not a SQLite
 * database, or fails PRAGMA quick_check, is refused with MH_ERR_LOCAL and
 * a text that says how to recover -- never treated as empty.
 */
int	seen_open(const char *path, struct seen_db **out, struct mh_err *err);

/*
 * Initializes the SQLite library (sqlite3_initialize: its allocator and
 * built-in functions), opening nothing: for a parent before it forks
 * workers, each of which would else do it again on its first open.
 */
void	seen_library_init(void);

/*
 * seen_open with flags.  SEEN_OPEN_NOCHECK skips PRAGMA quick_check (it
 * reads the whole file): for the workers of `run` and `sync`, whose
 * parent checked the file once at start.  A file that is no database is
 * still refused.
 */
#define SEEN_OPEN_NOCHECK	0x1
int	seen_open_flags(const char *path, unsigned flags,
	    struct seen_db **out, struct mh_err *err);
void	seen_close(struct seen_db *db);		/* NULL is a no-op */

/*
 * How long a statement waits for another process's write lock before it
 * fails with MH_ERR_TEMP "state database is locked by another process"
 * (default 5000 ms; 0 or less: not at all).  It tries again after 50 us,
 * doubling up to every millisecond, so that a lock released is taken
 * soon after.
 */
void	seen_set_busy_timeout(struct seen_db *db, int ms);

/*
 * Finds or creates the source row for src; updates its display name (the
 * config section name) and returns its id.  Writes nothing when the row
 * exists and is already the one seen_source_by_name finds for name.
 */
int	seen_source_id(struct seen_db *db, const struct seen_source *src,
	    const char *name, int64_t *id, struct mh_err *err);

/*
 * The id of the source row for src without creating it (`sync
 * --dry-run` writes nothing): *id is 0 when there is none.
 */
int	seen_source_find(struct seen_db *db, const struct seen_source *src,
	    int64_t *id, struct mh_err *err);

/*
 * Every source row with that display name (an IMAP account has one per
 * folder): *ids is a new array of *n ids (possibly 0) the caller frees.
 */
int	seen_sources_by_name(struct seen_db *db, const char *name,
	    int64_t **ids, size_t *n, struct mh_err *err);

/* Finds the source row by display name; -1 with MH_ERR_NONE if absent. */
int	seen_source_by_name(struct seen_db *db, const char *name, int64_t *id,
	    struct mh_err *err);

/*
 * Loads every record of source id into a hash (O(n), once per pass).
 * For IMAP, uidvalidity selects the records to key by UID; records of
 * other UIDVALIDITYs are still findable by seen_lookup_content().
 */
int	seen_load(struct seen_db *db, int64_t id, uint32_t uidvalidity,
	    struct seen_set **out, struct mh_err *err);

/*
 * Like seen_load, but only the records a pass needs: those of
 * uidvalidity whose uid is one of keys[0..n) (the listing), plus, when
 * content is true (a UIDVALIDITY change), the delivered records of the
 * other UIDVALIDITYs for seen_lookup_content.  O(n log h): the time of
 * a pass does not grow with the history h.  Without content,
 * seen_lookup_content and seen_lookup_id find nothing, and
 * seen_entry_content knows the content of deleted records only (the
 * reused-UIDL check).
 */
int	seen_load_keys(struct seen_db *db, int64_t id, uint32_t uidvalidity,
	    const char *const *keys, size_t n, bool content,
	    struct seen_set **out, struct mh_err *err);
void	seen_set_free(struct seen_set *set);	/* NULL is a no-op */
/* Records loaded: all of uidvalidity, plus delivered ones of others. */
size_t	seen_set_count(const struct seen_set *set);

/* O(1): the record for uid, or NULL. */
const struct seen_entry *seen_lookup(const struct seen_set *set,
	    const char *uid);

/* What a record of the set (from seen_lookup) knew of its message's
   content: size, digest and Message-ID (NULL when unknown), borrowed
   from the set. */
void	seen_entry_content(const struct seen_entry *e, uint64_t *size,
	    const char **digest, const char **message_id);

/*
 * O(1): a delivered record with the same Message-ID, size and digest
 * (the no-UIDL and UIDVALIDITY-change fallback, invariant I2), or NULL.
 * message_id may be NULL (then size + digest must match).
 */
const struct seen_entry *seen_lookup_content(const struct seen_set *set,
	    const char *message_id, uint64_t size, const char *digest);

/*
 * O(1): a delivered record with that Message-ID (not NULL or "") and
 * size, or NULL; *digest (when digest is not NULL) gets its digest,
 * borrowed from the set.  After a UIDVALIDITY change this recognises a
 * message from its header alone, without fetching its body.
 */
const struct seen_entry *seen_lookup_id(const struct seen_set *set,
	    const char *message_id, uint64_t size, const char **digest);

/*
 * Committed when they return 0.  reply is the server's text (may be NULL).
 * failed/skipped never turn a delivered record back into something else.
 */
int	seen_record_delivered(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, struct mh_err *err);
/* mark-seen: recorded as delivered without a delivery; status counts
   it apart (seen_status's adopted_total). */
int	seen_record_adopted(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, struct mh_err *err);
int	seen_record_failed(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, bool permanent, const char *error,
	    struct mh_err *err);
int	seen_record_skipped(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, const char *reason, struct mh_err *err);

/*
 * A message some recipients of the target accepted and others refused
 * (LMTP's per-recipient replies, an SMTP RCPT refusal): records it as
 * failed (permanent or not, as seen_record_failed) and rcpts[0..n) as
 * having it, in one committed transaction.  Recipients recorded by
 * earlier calls stay.
 */
int	seen_record_partial(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, bool permanent, const char *error,
	    const char *const *rcpts, size_t n, struct mh_err *err);

/*
 * The recipients recorded by seen_record_partial for m (uid and
 * uidvalidity are used): *rcpts is a new array of *n new strings (NULL
 * and 0 when none), freed with seen_strv_free.  The records go with the
 * message's (prune, forget).
 */
int	seen_delivered_to(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, char ***rcpts, size_t *n,
	    struct mh_err *err);
void	seen_strv_free(char **v, size_t n);	/* NULL is a no-op */

/*
 * The in-flight intent (invariant I2).  seen_intent_begin records,
 * committed, that m is being handed to target (its name); a later
 * seen_record_delivered, or a permanent seen_record_failed, removes it in
 * the same transaction, seen_intent_clear otherwise (a temporary failure
 * with a clear answer).  A message whose intent outlives the pass (a
 * crash, a connection lost after the data) is "in doubt": the target may
 * have it, and the next pass asks the target before delivering again.
 * seen_prune and seen_forget drop intents with their messages.
 */
int	seen_intent_begin(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, const char *target, struct mh_err *err);
/*
 * seen_intent_begin with its commit left unsynced (WAL, synchronous
 * NORMAL for this one commit, FULL again before it returns, also on
 * error).  For a target that cannot be asked about a message in doubt
 * (SMTP, LMTP, MDA), where the intent only tells `status` that the
 * message may be in the target: the next pass delivers it again either
 * way.  A crash of mailhaul keeps it (it is in the log, which the kernel
 * writes); the next synchronous commit -- the message's record -- makes
 * it durable along with everything before it in the log.  Only a power
 * loss between the two can lose it, and then the message is delivered
 * again: the one duplicate per crash such a target allows anyway.
 * Half the disk syncs of a message to such a target.
 */
int	seen_intent_begin_unsynced(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, const char *target, struct mh_err *err);
int	seen_intent_clear(struct seen_db *db, int64_t id,
	    const struct seen_msg *m, struct mh_err *err);

/*
 * Group commit: the intents of m[0..n) in one committed transaction, and
 * their delivered records (each removing its intent, as
 * seen_record_delivered) in another.  All or nothing; 0 with n 0.
 */
int	seen_intent_begin_many(struct seen_db *db, int64_t id,
	    const struct seen_msg *const *m, size_t n, const char *target,
	    struct mh_err *err);
int	seen_record_delivered_many(struct seen_db *db, int64_t id,
	    const struct seen_msg *const *m, size_t n, struct mh_err *err);

/* O(log n): whether uid (of the set's UIDVALIDITY) has an intent. */
bool	seen_in_doubt(const struct seen_set *set, const char *uid);

/* Every intent of source id, oldest first (for `status`); the strings
   are valid during the call only. */
struct seen_intent {
	const char	*uid;
	uint32_t	 uidvalidity;
	const char	*target;
	time_t		 at;
};
int	seen_intents(struct seen_db *db, int64_t id,
	    void (*cb)(const struct seen_intent *, void *), void *arg,
	    struct mh_err *err);

/* After a deletion took effect on the server (POP3 QUIT +OK, EXPUNGE);
   uid is taken in the folder's current UIDVALIDITY (seen_folder_set). */
int	seen_record_deleted(struct seen_db *db, int64_t id, const char *uid,
	    struct mh_err *err);

/* seen_record_deleted for uids[0..n), in one committed transaction
   (one fsync, not n). */
int	seen_record_deleted_many(struct seen_db *db, int64_t id,
	    const char *const *uids, size_t n, struct mh_err *err);

/*
 * Pruning, so that the database stops growing.  Given the FULL listing
 * present[0..n) of the folder's current UIDVALIDITY (POP3: the keys),
 * seen_prune_gone, in one transaction: notes when each record went
 * missing from the server (and forgets that when it is listed again);
 * drops the records missing from the server, and deleted by us or
 * missing, for longer than grace seconds (at least SEEN_PRUNE_GRACE; the
 * caller passes delete_after), with their recipients and intents.  A
 * record whose key is listed is never dropped, whatever its state.  A
 * dropped key that shows up again is a new message (I2 holds while it is
 * gone: the grace outlasts a server that hides a message for a while).
 * It stamps the source as pruned at now; seen_prune_due says whether
 * SEEN_PRUNE_EVERY seconds have passed since (a prune costs O(n)).  A
 * source row is stamped when seen_source_id creates it: it has no
 * record yet, so its first prune is due a day later.
 */
#define SEEN_PRUNE_GRACE	(30 * 24 * 60 * 60)
#define SEEN_PRUNE_EVERY	(24 * 60 * 60)
int	seen_prune_due(struct seen_db *db, int64_t id, time_t now, bool *due,
	    struct mh_err *err);
int	seen_prune_gone(struct seen_db *db, int64_t id,
	    const char *const *present, size_t npresent, time_t now,
	    time_t grace, struct mh_err *err);
/* seen_prune_gone with the present UIDs as numbers (IMAP). */
int	seen_prune_gone_uids(struct seen_db *db, int64_t id,
	    const uint32_t *uids, size_t n, time_t now, time_t grace,
	    struct mh_err *err);
/*
 * Stamps the source as pruned at now without pruning: when the listing a
 * prune needs could not be had, it is tried again the next day, not at
 * every pass.
 */
int	seen_prune_postpone(struct seen_db *db, int64_t id, time_t now,
	    struct mh_err *err);

/*
 * The settled head of a POP3 listing: its first *n keys (in listing
 * order), whose sha256 (lower-case hex of the keys, each followed by
 * "\n") is sha, were all recorded delivered and not deleted when a pass
 * ended.  A pass whose listing begins with the same keys, and which
 * deletes nothing delivered (keep, no delete_after), need not look them
 * up: records of delivered messages stay delivered, and a listed key is
 * never pruned; should a delivered record go or change all the same
 * (a prune, a deletion, a record set aside, a hand on the file), a
 * trigger forgets the head.  *n is 0 when none is recorded.
 * seen_settled_set records it (n 0: none); seen_forget drops it with
 * the source.
 */
int	seen_settled_get(struct seen_db *db, int64_t id, size_t *n,
	    char sha[65], struct mh_err *err);
int	seen_settled_set(struct seen_db *db, int64_t id, size_t n,
	    const char *sha, struct mh_err *err);

/*
 * For tests: the query plan (EXPLAIN QUERY PLAN, one detail per line)
 * of the statement named name ("deleted", "load-one", "load-other",
 * "delivered", "intent-load") into out.
 */
int	seen_explain(struct seen_db *db, const char *name, char *out,
	    size_t outsz, struct mh_err *err);

/* Forgets records of messages no longer on the server (uids not in
   present[]), except permanent failures.  present[] must be the FULL
   listing of the folder's current UIDVALIDITY (the seen_folder_get one;
   0 for POP3), not an incremental one.  Of older UIDVALIDITYs only the
   delivered records stay (the I2 content fallback). */
int	seen_prune(struct seen_db *db, int64_t id, const char *const *present,
	    size_t npresent, struct mh_err *err);

/* `mailhaul retry`: refused (failed), skipped (max_size) and stuck
   messages -> retried next pass (a skipped one whatever its size), their
   failures counted afresh.  *count says how many. */
int	seen_retry(struct seen_db *db, int64_t id, int *count,
	    struct mh_err *err);

/* `mailhaul forget`: drops the source and all its records. */
int	seen_forget(struct seen_db *db, int64_t id, struct mh_err *err);

/* The run log. */
struct seen_run_counts {
	unsigned	listed, fetched, delivered, deleted, skipped,
			failed, tempfailed;
	uint64_t	bytes;
};
int	seen_run_begin(struct seen_db *db, int64_t id, int64_t *run,
	    struct mh_err *err);
/* result: "ok" | "tempfail" | "error" | "busy"; error may be NULL. */
int	seen_run_end(struct seen_db *db, int64_t run,
	    const struct seen_run_counts *c, const char *result,
	    const char *error, struct mh_err *err);

/*
 * The runs of source id that began and never ended -- their pass was
 * killed or crashed -- are closed now as result ("killed" | "crashed"),
 * with error (may be NULL), each counting as delivered the messages
 * recorded delivered since it began.  Call it only while holding the
 * source's lock (no pass of it runs).  *delivered gets their sum; 0
 * when no run was open.
 */
int	seen_run_close_open(struct seen_db *db, int64_t id, const char *result,
	    const char *error, unsigned *delivered, struct mh_err *err);

/* For `mailhaul status`: one call per source, then per permanent failure,
   per message skipped by max_size and per stuck message (in that
   order). */
struct seen_status {
	int64_t		 id;
	const char	*name, *protocol, *host, *user, *folder;
	unsigned	 port;
	uint64_t	 delivered_total;
	time_t		 last_start, last_end;	/* 0 if never */
	const char	*last_result;		/* NULL if never */
	const char	*last_error;
	struct seen_run_counts last;
	unsigned	 failed_total;
	unsigned	 in_doubt;		/* intents (seen_intents) */
	unsigned	 stuck_total;		/* seen_stuck messages */
	unsigned	 skipped_total;		/* skipped by max_size, still
						   on the server */
	uint64_t	 adopted_total;		/* recorded by mark-seen, not
						   delivered (not in
						   delivered_total) */
};
struct seen_failure {
	const char	*uid;
	const char	*message_id;
	uint64_t	 size;
	time_t		 when;
	int		 tries;
	const char	*error;
	bool		 stuck;		/* stuck (retried less often), not
					   refused for good */
	bool		 skipped;	/* skipped by max_size (judged again
					   every pass), not refused */
	time_t		 first_failed;	/* when its failures began; 0 if
					   unknown */
};
int	seen_status(struct seen_db *db,
	    void (*source_cb)(const struct seen_status *, void *),
	    void (*failure_cb)(const struct seen_status *,
		const struct seen_failure *, void *),
	    void *arg, struct mh_err *err);

/*
 * IMAP folder state: UIDVALIDITY, the highest UID below which all is
 * settled, and whether a UIDVALIDITY change is still being matched
 * through (remap: some message listed since the change was not yet
 * fetched and compared with what was delivered under the older
 * UIDVALIDITYs).  A folder never set reads 0, 0, false; remap may be
 * NULL.  Set writes all three in one statement.
 */
int	seen_folder_get(struct seen_db *db, int64_t id, uint32_t *uidvalidity,
	    uint32_t *last_uid, bool *remap, struct mh_err *err);
int	seen_folder_set(struct seen_db *db, int64_t id, uint32_t uidvalidity,
	    uint32_t last_uid, bool remap, struct mh_err *err);

/*
 * `mailhaul import`: records uids[0..n) of source id and uidvalidity (0
 * for POP3) as delivered, as `mark-seen` would, in one committed
 * transaction, size 0 and no Message-ID or digest (the old tool kept
 * none) and no delivery time: mailhaul did not deliver them, so
 * delete_after (counted from the delivery) never removes them from the
 * source.  A message already recorded is left as it is, so importing
 * twice changes nothing; *added says how many were new.
 */
int	seen_record_imported(struct seen_db *db, int64_t id,
	    uint32_t uidvalidity, const char *const *uids, size_t n,
	    size_t *added, struct mh_err *err);

#endif
