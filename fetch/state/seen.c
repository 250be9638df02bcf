/* seen.c -- see seen.h */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch/state/seen.h"
#include "fetch/state/seen_impl.h"

#define SEEN_BUSY_MS	5000
#define RUNS_KEPT	1000	/* run log rows kept per source */

/*
 * The schema, migrated forward: migrations[i] takes user_version i to
 * i + 1.  Never edit a step that has shipped; append a new one.
 */
static const char *const migrations[] = {
	/* 0 -> 1: the tables */
	"CREATE TABLE sources ("
	"  id INTEGER PRIMARY KEY,"
	"  protocol TEXT NOT NULL,"
	"  host TEXT NOT NULL,"
	"  port INTEGER NOT NULL,"
	"  user TEXT NOT NULL,"
	"  folder TEXT NOT NULL DEFAULT '',"
	"  name TEXT,"
	"  created INTEGER NOT NULL,"
	"  named INTEGER NOT NULL DEFAULT 0,"
	"  UNIQUE (protocol, host, port, user, folder));"
	"CREATE TABLE messages ("
	"  source_id INTEGER NOT NULL"
	"    REFERENCES sources(id) ON DELETE CASCADE,"
	"  uid TEXT NOT NULL,"
	"  uidvalidity INTEGER NOT NULL DEFAULT 0,"
	"  size INTEGER NOT NULL DEFAULT 0,"
	"  message_id TEXT,"
	"  digest TEXT,"
	"  state INTEGER NOT NULL,"
	"  first_seen INTEGER NOT NULL,"
	"  delivered_at INTEGER,"
	"  deleted_at INTEGER,"
	"  tries INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT,"
	"  updated INTEGER NOT NULL,"
	"  PRIMARY KEY (source_id, uidvalidity, uid));"
	"CREATE TABLE runs ("
	"  id INTEGER PRIMARY KEY,"
	"  source_id INTEGER NOT NULL"
	"    REFERENCES sources(id) ON DELETE CASCADE,"
	"  started INTEGER NOT NULL,"
	"  ended INTEGER,"
	"  listed INTEGER NOT NULL DEFAULT 0,"
	"  fetched INTEGER NOT NULL DEFAULT 0,"
	"  delivered INTEGER NOT NULL DEFAULT 0,"
	"  deleted INTEGER NOT NULL DEFAULT 0,"
	"  skipped INTEGER NOT NULL DEFAULT 0,"
	"  failed INTEGER NOT NULL DEFAULT 0,"
	"  tempfailed INTEGER NOT NULL DEFAULT 0,"
	"  bytes INTEGER NOT NULL DEFAULT 0,"
	"  result TEXT,"
	"  error TEXT);"
	"CREATE TABLE folders ("
	"  source_id INTEGER PRIMARY KEY"
	"    REFERENCES sources(id) ON DELETE CASCADE,"
	"  uidvalidity INTEGER NOT NULL,"
	"  last_uid INTEGER NOT NULL);",
	/* 1 -> 2: lookups by content, by state, and the latest run */
	"CREATE INDEX messages_content"
	"  ON messages (source_id, message_id, size, digest);"
	"CREATE INDEX messages_state ON messages (source_id, state);"
	"CREATE INDEX runs_source ON runs (source_id, id);",
	/* 2 -> 3: the recipients that already have a message which some
	   other recipient refused (LMTP 250 + 452), so that a retry does
	   not give it to them twice */
	"CREATE TABLE delivered_to ("
	"  source_id INTEGER NOT NULL,"
	"  uidvalidity INTEGER NOT NULL,"
	"  uid TEXT NOT NULL,"
	"  recipient TEXT NOT NULL,"
	"  at INTEGER NOT NULL,"
	"  PRIMARY KEY (source_id, uidvalidity, uid, recipient),"
	"  FOREIGN KEY (source_id, uidvalidity, uid)"
	"    REFERENCES messages (source_id, uidvalidity, uid)"
	"    ON DELETE CASCADE);",
	/* 3 -> 4: the in-flight intent: a message handed to a target whose
	   outcome is not recorded yet (a crash in between leaves it "in
	   doubt": the next pass asks the target before delivering again) */
	"CREATE TABLE intents ("
	"  source_id INTEGER NOT NULL"
	"    REFERENCES sources(id) ON DELETE CASCADE,"
	"  uidvalidity INTEGER NOT NULL,"
	"  uid TEXT NOT NULL,"
	"  target TEXT NOT NULL,"
	"  at INTEGER NOT NULL,"
	"  PRIMARY KEY (source_id, uidvalidity, uid));",
	/* 4 -> 5: when the current run of failures of a message began, so
	   that one failing again and again over a long time is told apart
	   as stuck (seen_stuck) */
	"ALTER TABLE messages ADD COLUMN first_failed INTEGER;",
	/* 5 -> 6: recording a deletion looks a message up by (source_id,
	   uid), which the primary key (source_id, uidvalidity, uid) cannot
	   serve (10k deletions took 36 s); when a message was last missing
	   from a full listing (seen_prune_gone), and when a source was last
	   pruned */
	"CREATE INDEX IF NOT EXISTS messages_uid ON messages (source_id, uid);"
	"ALTER TABLE messages ADD COLUMN gone_at INTEGER;"
	"ALTER TABLE sources ADD COLUMN pruned INTEGER;",
	/* 6 -> 7: Gmail's X-GM-MSGID of a delivered message, so that the
	   same message under another label (folder) is recognised before
	   it is downloaded (seen_ident.h) */
	"ALTER TABLE messages ADD COLUMN gm_msgid INTEGER;"
	"CREATE INDEX IF NOT EXISTS messages_gm ON messages (gm_msgid)"
	"  WHERE gm_msgid IS NOT NULL;",
	/* 7 -> 8: the settled head of a POP3 listing (seen_settled_get):
	   how many of its first keys were delivered and need no lookup,
	   and the sha256 of those keys */
	"ALTER TABLE sources ADD COLUMN settled_n INTEGER;"
	"ALTER TABLE sources ADD COLUMN settled_sha TEXT;"
	/* a delivered record that goes or changes (a prune, a deletion,
	   a reused UIDL set aside, any hand on the file) unsettles it */
	"CREATE TRIGGER messages_unsettle_del AFTER DELETE ON messages"
	"  WHEN old.state = 1 BEGIN"
	"  UPDATE sources SET settled_n = NULL, settled_sha = NULL"
	"    WHERE id = old.source_id AND settled_n IS NOT NULL; END;"
	"CREATE TRIGGER messages_unsettle_upd AFTER UPDATE ON messages"
	"  WHEN old.state = 1 AND (new.state <> 1 OR"
	"    (old.deleted_at IS NULL AND new.deleted_at IS NOT NULL) OR"
	"    new.uid <> old.uid OR"
	"    new.uidvalidity <> old.uidvalidity OR"
	"    new.source_id <> old.source_id) BEGIN"
	"  UPDATE sources SET settled_n = NULL, settled_sha = NULL"
	"    WHERE id = old.source_id AND settled_n IS NOT NULL; END;",
	/* 8 -> 9: a UIDVALIDITY change not yet matched through (some
	   message listed since was not yet fetched and compared): the
	   records of the older UIDVALIDITYs are still matched by content */
	"ALTER TABLE folders ADD COLUMN remap INTEGER NOT NULL DEFAULT 0;",
};
#define SCHEMA_VERSION	((int)(sizeof migrations / sizeof migrations[0]))

/* Prepared once per connection, on first use. */
enum stmt {
	ST_SOURCE_ID,
	ST_SOURCE_BY_NAME,
	ST_SOURCE_FIND,
	ST_LOAD,
	ST_DELIVERED,
	ST_FAILED,
	ST_SKIPPED,
	ST_DELETED,
	ST_RETRY,
	ST_RUN_BEGIN,
	ST_RUN_TRIM,
	ST_RUN_END,
	ST_FOLDER_GET,
	ST_FOLDER_SET,
	ST_TO_ADD,
	ST_TO_GET,
	ST_INTENT_ADD,
	ST_INTENT_DEL,
	ST_INTENT_LOAD,
	ST_LOAD_ONE,
	ST_LOAD_OTHER,
	ST_COUNT
};

/* The names seen_explain knows (tests: which statements use an index). */
static const char *const stmt_name[ST_COUNT] = {
	[ST_DELETED] = "deleted",
	[ST_LOAD_ONE] = "load-one",
	[ST_LOAD_OTHER] = "load-other",
	[ST_DELIVERED] = "delivered",
	[ST_INTENT_LOAD] = "intent-load",
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_SOURCE_ID] =
	/* a new row is as good as pruned when made: it has no record
	   that could be gone (seen_prune_due) */
	"INSERT INTO sources (protocol, host, port, user, folder, name,"
	"  created, named, pruned)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7)"
	" ON CONFLICT (protocol, host, port, user, folder)"
	" DO UPDATE SET name = excluded.name, named = excluded.named"
	/* not when the row is already the one its name finds
	   (ST_SOURCE_BY_NAME): no write, and no row returned */
	" WHERE sources.name IS NOT excluded.name OR sources.id IS NOT"
	"  (SELECT id FROM sources WHERE name = excluded.name"
	"   ORDER BY named DESC, id DESC LIMIT 1)"
	" RETURNING id",
	[ST_SOURCE_BY_NAME] =
	"SELECT id FROM sources WHERE name = ?1"
	" ORDER BY named DESC, id DESC LIMIT 1",
	[ST_SOURCE_FIND] =
	"SELECT id FROM sources WHERE protocol = ?1 AND host = ?2"
	" AND port = ?3 AND user = ?4 AND folder = ?5",
	[ST_LOAD] =
	"SELECT uid, uidvalidity, size, message_id, digest, state,"
	"  delivered_at, deleted_at, tries, first_failed, updated"
	" FROM messages"
	" WHERE source_id = ?1 AND (uidvalidity = ?2 OR state = 1)",
	/* one listed key (seen_load_keys) */
	[ST_LOAD_ONE] =
	"SELECT uid, uidvalidity, size, message_id, digest, state,"
	"  delivered_at, deleted_at, tries, first_failed, updated"
	" FROM messages"
	" WHERE source_id = ?1 AND uidvalidity = ?2 AND uid = ?3",
	/* the content fallback: what was delivered under other
	   UIDVALIDITYs */
	[ST_LOAD_OTHER] =
	"SELECT uid, uidvalidity, size, message_id, digest, state,"
	"  delivered_at, deleted_at, tries, first_failed, updated"
	" FROM messages"
	" WHERE source_id = ?1 AND state = 1 AND uidvalidity <> ?2",
	[ST_DELIVERED] =
	"INSERT INTO messages (source_id, uid, uidvalidity, size,"
	"  message_id, digest, state, first_seen, delivered_at, tries,"
	"  updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7, 0, ?7)"
	" ON CONFLICT (source_id, uidvalidity, uid) DO UPDATE SET"
	"  size = excluded.size,"
	"  message_id = coalesce(excluded.message_id, message_id),"
	"  digest = coalesce(excluded.digest, digest),"
	"  state = 1, delivered_at = excluded.delivered_at,"
	"  last_error = NULL, updated = excluded.updated",
	/* A failure never downgrades a delivered record (I2). */
	[ST_FAILED] =
	"INSERT INTO messages (source_id, uid, uidvalidity, size,"
	"  message_id, digest, state, first_seen, tries, last_error,"
	"  updated, first_failed)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?8, ?8)"
	" ON CONFLICT (source_id, uidvalidity, uid) DO UPDATE SET"
	"  size = excluded.size,"
	"  message_id = coalesce(excluded.message_id, message_id),"
	"  digest = coalesce(excluded.digest, digest),"
	"  state = excluded.state, tries = tries + 1,"
	"  first_failed = coalesce(first_failed, excluded.first_failed),"
	"  last_error = excluded.last_error, updated = excluded.updated"
	" WHERE state <> 1",
	[ST_SKIPPED] =
	"INSERT INTO messages (source_id, uid, uidvalidity, size,"
	"  message_id, digest, state, first_seen, tries, last_error,"
	"  updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 3, ?7, 0, ?8, ?7)"
	" ON CONFLICT (source_id, uidvalidity, uid) DO UPDATE SET"
	"  size = excluded.size,"
	"  message_id = coalesce(excluded.message_id, message_id),"
	"  digest = coalesce(excluded.digest, digest),"
	"  state = 3, last_error = excluded.last_error,"
	"  updated = excluded.updated"
	" WHERE state <> 1",
	/* The uid of the folder's current UIDVALIDITY (any, for POP3). */
	[ST_DELETED] =
	"UPDATE messages SET deleted_at = ?3, updated = ?3"
	" WHERE source_id = ?1 AND uid = ?2 AND deleted_at IS NULL"
	"  AND (NOT EXISTS (SELECT 1 FROM folders WHERE source_id = ?1)"
	"   OR uidvalidity ="
	"    (SELECT uidvalidity FROM folders WHERE source_id = ?1))",
	/* refused for good, skipped (max_size), or stuck: tried again
	   next pass (whatever its size), counted afresh */
	[ST_RETRY] =
	"UPDATE messages SET state = 4, tries = 0, first_failed = NULL,"
	"  updated = ?2"
	" WHERE source_id = ?1 AND (state IN (2, 3) OR (state = 4 AND"
	"  tries >= ?3 AND updated - first_failed >= ?4))",
	[ST_RUN_BEGIN] =
	"INSERT INTO runs (source_id, started) VALUES (?1, ?2)",
	[ST_RUN_TRIM] =
	"DELETE FROM runs WHERE source_id = ?1 AND id <="
	" (SELECT id FROM runs WHERE source_id = ?1"
	"  ORDER BY id DESC LIMIT 1 OFFSET ?2)",
	[ST_RUN_END] =
	"UPDATE runs SET ended = ?2, listed = ?3, fetched = ?4,"
	"  delivered = ?5, deleted = ?6, skipped = ?7, failed = ?8,"
	"  tempfailed = ?9, bytes = ?10, result = ?11, error = ?12"
	" WHERE id = ?1",
	[ST_FOLDER_GET] =
	"SELECT uidvalidity, last_uid, remap FROM folders"
	" WHERE source_id = ?1",
	[ST_FOLDER_SET] =
	"INSERT INTO folders (source_id, uidvalidity, last_uid, remap)"
	" VALUES (?1, ?2, ?3, ?4) ON CONFLICT (source_id) DO UPDATE SET"
	"  uidvalidity = excluded.uidvalidity,"
	"  last_uid = excluded.last_uid, remap = excluded.remap",
	[ST_TO_ADD] =
	"INSERT OR IGNORE INTO delivered_to (source_id, uid, uidvalidity,"
	"  recipient, at) VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_TO_GET] =
	"SELECT recipient FROM delivered_to WHERE source_id = ?1"
	" AND uid = ?2 AND uidvalidity = ?3 ORDER BY recipient",
	[ST_INTENT_ADD] =
	"INSERT INTO intents (source_id, uid, uidvalidity, target, at)"
	" VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (source_id, uidvalidity,"
	" uid) DO UPDATE SET target = excluded.target, at = excluded.at",
	[ST_INTENT_DEL] =
	"DELETE FROM intents WHERE source_id = ?1 AND uid = ?2"
	" AND uidvalidity = ?3",
	[ST_INTENT_LOAD] =
	"SELECT uid FROM intents WHERE source_id = ?1 AND uidvalidity = ?2"
	" ORDER BY uid",
};

struct seen_db {
	sqlite3		*db;
	char		*path;
	sqlite3_stmt	*stmt[ST_COUNT];
	sqlite3_stmt	*kept[SEEN_KEPT_MAX];	/* seen_sqlite_kept */
	int		 busy_ms;	/* busy_wait's timeout */
	struct timespec	 busy_since;	/* its first call for a lock */
};

/* One loaded record; strings live in the set's arena. */
struct seen_rec {
	struct seen_entry	 e;
	const char		*uid;
	const char		*message_id;
	const char		*digest;
	uint64_t		 size;
	uint32_t		 uidvalidity;
};

struct arena_chunk {
	struct arena_chunk	*next;
	size_t			 used, cap;
	char			 data[];
};

struct seen_set {
	struct seen_rec		*recs;
	size_t			 n, cap;
	uint32_t		 uidvalidity;
	/* Open addressing, linear probing; slots hold index + 1, 0 empty. */
	uint32_t		*uidtab, *ctab, *idtab;
	size_t			 mask;		/* both tables: size - 1 */
	struct arena_chunk	*arena;
	const char		**intents;	/* uids in doubt, sorted */
	size_t			 nintents;
	bool			 by_uid;	/* seen_load_keys without
						   content: only uidtab, and
						   the content of deleted
						   records only (known_reused) */
};

static const char corrupt_hint[] =
    "move it away and run `mailhaul mark-seen ACCOUNT` to adopt the "
    "mailboxes again, or restore a backup; refusing to treat it as empty";

/* --- errors and statements ----------------------------------------- */

static int
db_fail(struct seen_db *db, struct mh_err *err)
{
	int	rc = sqlite3_errcode(db->db) & 0xff;

	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		mh_err_set(err, MH_ERR_TEMP,
		    "state database is locked by another process");
	else
		mh_err_set(err, MH_ERR_LOCAL, "state database: %s",
		    sqlite3_errmsg(db->db));
	return -1;
}

/* *slot, sql prepared once and kept there, reset and with its bindings
   cleared; NULL on error. */
static sqlite3_stmt *
stmt_kept(struct seen_db *db, sqlite3_stmt **slot, const char *sql,
    struct mh_err *err)
{
	if (*slot == NULL && sqlite3_prepare_v3(db->db, sql, -1,
	    SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
		db_fail(db, err);
		sqlite3_finalize(*slot);
		*slot = NULL;
		return NULL;
	}
	sqlite3_reset(*slot);
	sqlite3_clear_bindings(*slot);
	return *slot;
}

/* The statement, reset and with its bindings cleared; NULL on error. */
static sqlite3_stmt *
db_stmt(struct seen_db *db, enum stmt which, struct mh_err *err)
{
	return stmt_kept(db, &db->stmt[which], stmt_sql[which], err);
}

/* Steps s to completion (it must return no rows) and resets it. */
static int
db_done(struct seen_db *db, sqlite3_stmt *s, struct mh_err *err)
{
	int	rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE) {
		db_fail(db, err);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

static int
db_exec(struct seen_db *db, const char *sql, struct mh_err *err)
{
	if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(db, err);
	return 0;
}

static void
db_rollback(struct seen_db *db)
{
	if (!sqlite3_get_autocommit(db->db))
		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

static void
bind_msg(sqlite3_stmt *s, int64_t id, const struct seen_msg *m)
{
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, m->uid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, m->uidvalidity);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)m->size);
	sqlite3_bind_text(s, 5, m->message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, m->digest, -1, SQLITE_STATIC);
}

/* --- open ---------------------------------------------------------- */

static int
is_corrupt(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT;
}

static int
refuse_corrupt(struct seen_db *db, const char *why, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_LOCAL, "state database %s is corrupt (%s): %s",
	    db->path, why, corrupt_hint);
	return -1;
}

/* An error while opening: corruption gets the recovery text. */
static int
open_fail(struct seen_db *db, struct mh_err *err)
{
	if (is_corrupt(sqlite3_errcode(db->db)))
		return refuse_corrupt(db, sqlite3_errmsg(db->db), err);
	return db_fail(db, err);
}

static int
pragma_int(struct seen_db *db, const char *sql, int *out, struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 rc = -1;

	if (sqlite3_prepare_v2(db->db, sql, -1, &s, NULL) != SQLITE_OK) {
		open_fail(db, err);
		goto out;
	}
	if (sqlite3_step(s) != SQLITE_ROW) {
		open_fail(db, err);
		goto out;
	}
	*out = sqlite3_column_int(s, 0);
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

static int
quick_check(struct seen_db *db, struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	const char	*res;
	char		 why[200], *p;
	int		 rc = -1;

	if (sqlite3_prepare_v2(db->db, "PRAGMA quick_check(1)", -1, &s,
	    NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
		open_fail(db, err);
		goto out;
	}
	res = (const char *)sqlite3_column_text(s, 0);
	if (res == NULL || strcmp(res, "ok") != 0) {
		snprintf(why, sizeof why, "quick_check: %s",
		    res ? res : "no answer");
		for (p = why; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		refuse_corrupt(db, why, err);
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

/* Applies the migrations past the file's user_version, in one transaction. */
static int
migrate(struct seen_db *db, struct mh_err *err)
{
	char	sql[64];
	int	v, i;

	if (pragma_int(db, "PRAGMA user_version", &v, err) != 0)
		return -1;
	if (v > SCHEMA_VERSION)
		goto newer;
	if (v == SCHEMA_VERSION)
		return 0;
	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	/* Another process may have migrated while we waited. */
	if (pragma_int(db, "PRAGMA user_version", &v, err) != 0)
		goto fail;
	if (v > SCHEMA_VERSION) {
		db_rollback(db);
		goto newer;
	}
	for (i = v; i < SCHEMA_VERSION; i++)
		if (db_exec(db, migrations[i], err) != 0)
			goto fail;
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
	if (db_exec(db, sql, err) != 0 || db_exec(db, "COMMIT", err) != 0)
		goto fail;
	return 0;
fail:
	db_rollback(db);
	return -1;
newer:
	mh_err_set(err, MH_ERR_LOCAL, "state database %s has schema version "
	    "%d, newer than this mailhaul knows (%d): run a newer mailhaul, "
	    "or move it away and run `mailhaul mark-seen ACCOUNT`; refusing "
	    "to use it", db->path, v, SCHEMA_VERSION);
	return -1;
}

/* Creates the parent directory 0700 and the file 0600, whatever umask. */
static int
create_file(const char *path, struct mh_err *err)
{
	struct stat	 st;
	char		*tmp = xstrdup(path), *dir = dirname(tmp);
	int		 fd = -1, rc = -1;

	if (stat(dir, &st) == -1) {
		if (mkdir_p(dir, 0700, err) != 0)
			goto out;
		if (chmod(dir, 0700) == -1) {
			mh_err_set(err, MH_ERR_LOCAL, "cannot chmod %s: %s",
			    dir, strerror(errno));
			goto out;
		}
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1 || fstat(fd, &st) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot open state database "
		    "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		mh_err_set(err, MH_ERR_LOCAL, "state database %s is not a "
		    "regular file", path);
		goto out;
	}
	if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot chmod %s: %s", path,
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd != -1)
		close(fd);
	free(tmp);
	return rc;
}

int
seen_open(const char *path, struct seen_db **out, struct mh_err *err)
{
	return seen_open_flags(path, 0, out, err);
}

int
seen_open_flags(const char *path, unsigned flags, struct seen_db **out,
    struct mh_err *err)
{
	struct seen_db	*db;
	int		 v;

	*out = NULL;
	if (create_file(path, err) != 0)
		return -1;
	db = xcalloc(1, sizeof *db);
	db->path = xstrdup(path);
	if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		if (db->db == NULL) {
			mh_err_set(err, MH_ERR_LOCAL, "state database %s: "
			    "out of memory", path);
			goto fail;
		}
		open_fail(db, err);
		goto fail;
	}
	sqlite3_extended_result_codes(db->db, 1);
	seen_set_busy_timeout(db, SEEN_BUSY_MS);
	/* Reading the header refuses a file that is not a database. */
	if (pragma_int(db, "PRAGMA user_version", &v, err) != 0)
		goto fail;
	if (v > SCHEMA_VERSION) {
		migrate(db, err);	/* says why */
		goto fail;
	}
	/*
	 * Two processes opening a new database race for the switch to WAL
	 * and the first migration; SQLite answers some of those with
	 * SQLITE_BUSY at once, without the busy handler.  Try again for as
	 * long as the busy timeout would have waited.
	 */
	for (int64_t until = now_ms() + SEEN_BUSY_MS; ; ) {
		mh_err_clear(err);
		if (((flags & SEEN_OPEN_NOCHECK) || quick_check(db, err) == 0) &&
		    db_exec(db, "PRAGMA journal_mode = WAL", err) == 0 &&
		    db_exec(db, "PRAGMA synchronous = FULL", err) == 0 &&
		    db_exec(db, "PRAGMA foreign_keys = ON", err) == 0 &&
		    migrate(db, err) == 0)
			break;
		if (err->cls != MH_ERR_TEMP || now_ms() >= until)
			goto fail;
		usleep(50 * 1000);
	}
	*out = db;
	return 0;
fail:
	seen_close(db);
	return -1;
}

/*
 * SQLite's busy handler when another connection holds the lock: tries
 * again after 50 us, doubling up to 1 ms, until busy_ms have passed
 * since the first try (then SQLITE_BUSY: MH_ERR_TEMP).  SQLite's own
 * (sqlite3_busy_timeout) sleeps 1, 2, 5, 10 ... 25 ms and then 50 and
 * 100: with twenty workers committing a message each in turn, a write
 * lock held for a millisecond cost its waiters up to 25 ms each, a
 * quarter of a second per worker in one 20-account pass.
 */
static int
busy_wait(void *arg, int n)
{
	struct seen_db		*db = arg;
	struct timespec		 now;
	int64_t			 us, step;

	if (db->busy_ms <= 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (n == 0)
		db->busy_since = now;
	us = (int64_t)(now.tv_sec - db->busy_since.tv_sec) * 1000000 +
	    (now.tv_nsec - db->busy_since.tv_nsec) / 1000;
	if (us >= (int64_t)db->busy_ms * 1000)
		return 0;
	step = n < 5 ? 50 << n : 1000;
	if (step > (int64_t)db->busy_ms * 1000 - us)
		step = (int64_t)db->busy_ms * 1000 - us;
	usleep((useconds_t)step);
	return 1;
}

void
seen_library_init(void)
{
	(void)sqlite3_initialize();	/* else the first open does it */
}

void
seen_set_busy_timeout(struct seen_db *db, int ms)
{
	db->busy_ms = ms;
	sqlite3_busy_handler(db->db, busy_wait, db);
}

void
seen_close(struct seen_db *db)
{
	int	i;

	if (db == NULL)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(db->stmt[i]);
	for (i = 0; i < SEEN_KEPT_MAX; i++)
		sqlite3_finalize(db->kept[i]);
	sqlite3_close(db->db);
	free(db->path);
	free(db);
}

/* --- sources ------------------------------------------------------- */

/* ?1..?5: a source's identity. */
static void
bind_source(sqlite3_stmt *s, const struct seen_source *src)
{
	sqlite3_bind_text(s, 1, src->protocol, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, src->host, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, src->port);
	/* "": an account without a login (etrn without user) */
	sqlite3_bind_text(s, 4, src->user ? src->user : "", -1,
	    SQLITE_STATIC);
	sqlite3_bind_text(s, 5, src->folder ? src->folder : "", -1,
	    SQLITE_STATIC);
}

int
seen_source_id(struct seen_db *db, const struct seen_source *src,
    const char *name, int64_t *id, struct mh_err *err)
{
	sqlite3_stmt	*s;
	int		 rc;

	if ((s = db_stmt(db, ST_SOURCE_ID, err)) == NULL)
		return -1;
	bind_source(s, src);
	sqlite3_bind_text(s, 6, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, time(NULL));
	if ((rc = sqlite3_step(s)) == SQLITE_DONE) {
		/* the row is as it was (nothing written): look it up */
		sqlite3_reset(s);
		if (seen_source_find(db, src, id, err) == -1)
			return -1;
		if (*id != 0)
			return 0;
		mh_err_set(err, MH_ERR_LOCAL, "state database: the source "
		    "row vanished");
		return -1;
	}
	if (rc != SQLITE_ROW) {
		db_fail(db, err);
		sqlite3_reset(s);
		return -1;
	}
	*id = sqlite3_column_int64(s, 0);
	return db_done(db, s, err);
}

int
seen_source_find(struct seen_db *db, const struct seen_source *src,
    int64_t *id, struct mh_err *err)
{
	sqlite3_stmt	*s;
	int		 rc;

	*id = 0;
	if ((s = db_stmt(db, ST_SOURCE_FIND, err)) == NULL)
		return -1;
	bind_source(s, src);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(s, 0);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_fail(db, err);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

int
seen_source_by_name(struct seen_db *db, const char *name, int64_t *id,
    struct mh_err *err)
{
	sqlite3_stmt	*s;
	int		 rc;

	mh_err_clear(err);
	if ((s = db_stmt(db, ST_SOURCE_BY_NAME, err)) == NULL)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		return 0;
	}
	if (rc != SQLITE_DONE)
		db_fail(db, err);
	sqlite3_reset(s);
	return -1;
}

int
seen_sources_by_name(struct seen_db *db, const char *name, int64_t **ids,
    size_t *n, struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	size_t		 cap = 0;
	int		 rc;

	*ids = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db->db, "SELECT id FROM sources WHERE name = ?1"
	    " ORDER BY id", -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, err);
		return -1;
	}
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 4;
			*ids = xrealloc(*ids, cap * sizeof **ids);
		}
		(*ids)[(*n)++] = sqlite3_column_int64(s, 0);
	}
	if (rc != SQLITE_DONE) {
		db_fail(db, err);
		sqlite3_finalize(s);
		free(*ids);
		*ids = NULL;
		*n = 0;
		return -1;
	}
	sqlite3_finalize(s);
	return 0;
}

/* --- the loaded set ------------------------------------------------ */

static const char *
arena_dup(struct seen_set *set, const unsigned char *s, int len)
{
	struct arena_chunk	*c = set->arena;
	size_t			 need = (size_t)len + 1, cap;
	char			*p;

	if (s == NULL)
		return NULL;
	if (c == NULL || c->cap - c->used < need) {
		cap = need > 65536 ? need : 65536;
		c = xmalloc(sizeof *c + cap);
		c->cap = cap;
		c->used = 0;
		c->next = set->arena;
		set->arena = c;
	}
	p = c->data + c->used;
	memcpy(p, s, (size_t)len);
	p[len] = '\0';
	c->used += need;
	return p;
}

static uint64_t
fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char	*b = p;

	while (n-- > 0) {
		h ^= *b++;
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_BASIS	0xcbf29ce484222325ULL

static uint64_t
hash_uid(const char *uid)
{
	return fnv1a(FNV_BASIS, uid, strlen(uid));
}

/* Content key: size and digest; the Message-ID is compared, not hashed. */
static uint64_t
hash_content(uint64_t size, const char *digest)
{
	uint64_t	h = fnv1a(FNV_BASIS, &size, sizeof size);

	return digest ? fnv1a(h, digest, strlen(digest)) : h;
}

static void
table_put(uint32_t *tab, size_t mask, uint64_t h, size_t idx)
{
	size_t	i = h & mask;

	while (tab[i] != 0)
		i = (i + 1) & mask;
	tab[i] = (uint32_t)idx + 1;
}

static void
set_index(struct seen_set *set)
{
	size_t	size = 16, i;

	while (size < set->n * 2)
		size <<= 1;
	set->mask = size - 1;
	set->uidtab = xcalloc(size, sizeof *set->uidtab);
	if (!set->by_uid) {
		set->ctab = xcalloc(size, sizeof *set->ctab);
		set->idtab = xcalloc(size, sizeof *set->idtab);
	}
	for (i = 0; i < set->n; i++) {
		const struct seen_rec *r = &set->recs[i];

		if (r->uidvalidity == set->uidvalidity)
			table_put(set->uidtab, set->mask, hash_uid(r->uid), i);
		if (set->by_uid)
			continue;
		if (r->e.state == SEEN_DELIVERED)
			table_put(set->ctab, set->mask,
			    hash_content(r->size, r->digest), i);
		if (r->e.state == SEEN_DELIVERED && r->message_id != NULL)
			table_put(set->idtab, set->mask,
			    hash_content(r->size, r->message_id), i);
	}
}

/* The uids of the source's intents in the set's UIDVALIDITY, sorted. */
static int
load_intents(struct seen_db *db, int64_t id, struct seen_set *set,
    struct mh_err *err)
{
	sqlite3_stmt	*s;
	size_t		 cap = 0;
	const char	*uid;
	int		 rc;

	if ((s = db_stmt(db, ST_INTENT_LOAD, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, set->uidvalidity);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		uid = arena_dup(set, sqlite3_column_text(s, 0),
		    sqlite3_column_bytes(s, 0));
		if (uid == NULL)
			continue;
		if (set->nintents == cap) {
			cap = cap ? cap * 2 : 8;
			set->intents = xrealloc(set->intents,
			    cap * sizeof *set->intents);
		}
		set->intents[set->nintents++] = uid;
	}
	if (rc != SQLITE_DONE) {
		db_fail(db, err);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

/* Appends the row s stands on (ST_LOAD's columns) to set. */
static int
load_row(struct seen_set *set, sqlite3_stmt *s, struct mh_err *err)
{
	struct seen_rec	*r;

	if (set->n == UINT32_MAX - 1) {
		mh_err_set(err, MH_ERR_LOCAL, "state database: too many "
		    "records for one source");
		return -1;
	}
	if (set->n == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 256;
		set->recs = xrealloc(set->recs, set->cap * sizeof *set->recs);
	}
	r = &set->recs[set->n++];
	memset(r, 0, sizeof *r);
	r->uid = arena_dup(set, sqlite3_column_text(s, 0),
	    sqlite3_column_bytes(s, 0));
	if (r->uid == NULL)
		r->uid = "";
	r->uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
	r->size = (uint64_t)sqlite3_column_int64(s, 2);
	r->e.state = (enum seen_state)sqlite3_column_int(s, 5);
	r->e.delivered_at = (time_t)sqlite3_column_int64(s, 6);
	r->e.deleted = sqlite3_column_type(s, 7) != SQLITE_NULL;
	if (!set->by_uid || r->e.deleted) {
		r->message_id = arena_dup(set, sqlite3_column_text(s, 3),
		    sqlite3_column_bytes(s, 3));
		r->digest = arena_dup(set, sqlite3_column_text(s, 4),
		    sqlite3_column_bytes(s, 4));
	}
	r->e.tries = sqlite3_column_int(s, 8);
	r->e.first_failed = (time_t)sqlite3_column_int64(s, 9);
	r->e.last_tried = (time_t)sqlite3_column_int64(s, 10);
	return 0;
}

/* Appends every row of s (bound, reset afterwards) to set. */
static int
load_rows(struct seen_db *db, struct seen_set *set, sqlite3_stmt *s,
    struct mh_err *err)
{
	int	rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (load_row(set, s, err) == -1)
			break;
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return -1;
	if (rc != SQLITE_DONE)
		return db_fail(db, err);
	return 0;
}

int
seen_load(struct seen_db *db, int64_t id, uint32_t uidvalidity,
    struct seen_set **out, struct mh_err *err)
{
	struct seen_set	*set;
	sqlite3_stmt	*s;

	*out = NULL;
	if ((s = db_stmt(db, ST_LOAD, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, uidvalidity);
	set = xcalloc(1, sizeof *set);
	set->uidvalidity = uidvalidity;
	if (load_rows(db, set, s, err) == -1)
		goto fail;
	set_index(set);
	if (load_intents(db, id, set, err) == -1)
		goto fail;
	*out = set;
	return 0;
fail:
	seen_set_free(set);
	return -1;
}

/*
 * One point lookup per key on the primary key, in one read transaction:
 * O(n log h) for n listed keys and h records, so a history of messages
 * long gone from the server costs nothing.
 */
int
seen_load_keys(struct seen_db *db, int64_t id, uint32_t uidvalidity,
    const char *const *keys, size_t n, bool content, struct seen_set **out,
    struct mh_err *err)
{
	struct seen_set	*set;
	sqlite3_stmt	*s;
	size_t		 i;
	int		 rc = -1;

	*out = NULL;
	set = xcalloc(1, sizeof *set);
	set->uidvalidity = uidvalidity;
	/* no content lookups unless asked: no tables, no copies for them */
	set->by_uid = !content;
	set->cap = n > 0 ? n : 1;
	set->recs = xcalloc(set->cap, sizeof *set->recs);
	if (db_exec(db, "BEGIN", err) != 0)
		goto out;
	if ((s = db_stmt(db, ST_LOAD_ONE, err)) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, uidvalidity);
		sqlite3_bind_text(s, 3, keys[i], -1, SQLITE_STATIC);
		if (load_rows(db, set, s, err) == -1)
			goto out;
	}
	if (content) {
		if ((s = db_stmt(db, ST_LOAD_OTHER, err)) == NULL)
			goto out;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, uidvalidity);
		if (load_rows(db, set, s, err) == -1)
			goto out;
	}
	set_index(set);
	if (load_intents(db, id, set, err) == -1)
		goto out;
	rc = 0;
out:
	db_rollback(db);	/* ends the read transaction */
	if (rc == 0)
		*out = set;
	else
		seen_set_free(set);
	return rc;
}

void
seen_set_free(struct seen_set *set)
{
	struct arena_chunk	*c, *next;

	if (set == NULL)
		return;
	for (c = set->arena; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(set->recs);
	free(set->intents);
	free(set->uidtab);
	free(set->ctab);
	free(set->idtab);
	free(set);
}

size_t
seen_set_count(const struct seen_set *set)
{
	return set->n;
}

const struct seen_entry *
seen_lookup(const struct seen_set *set, const char *uid)
{
	const struct seen_rec	*r;
	size_t			 i;

	if (set->uidtab == NULL || uid == NULL)
		return NULL;
	for (i = hash_uid(uid) & set->mask; set->uidtab[i] != 0;
	    i = (i + 1) & set->mask) {
		r = &set->recs[set->uidtab[i] - 1];
		if (strcmp(r->uid, uid) == 0)
			return &r->e;
	}
	return NULL;
}

static int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

const struct seen_entry *
seen_lookup_content(const struct seen_set *set, const char *message_id,
    uint64_t size, const char *digest)
{
	const struct seen_rec	*r;
	size_t			 i;

	/* Size alone is no identity. */
	if (set->ctab == NULL || (message_id == NULL && digest == NULL))
		return NULL;
	for (i = hash_content(size, digest) & set->mask; set->ctab[i] != 0;
	    i = (i + 1) & set->mask) {
		r = &set->recs[set->ctab[i] - 1];
		if (r->size != size || !str_eq(r->digest, digest))
			continue;
		if (message_id != NULL && !str_eq(r->message_id, message_id))
			continue;
		return &r->e;
	}
	return NULL;
}

const struct seen_entry *
seen_lookup_id(const struct seen_set *set, const char *message_id,
    uint64_t size, const char **digest)
{
	const struct seen_rec	*r;
	size_t			 i;

	if (set->idtab == NULL || message_id == NULL || *message_id == '\0')
		return NULL;
	for (i = hash_content(size, message_id) & set->mask;
	    set->idtab[i] != 0; i = (i + 1) & set->mask) {
		r = &set->recs[set->idtab[i] - 1];
		if (r->size != size || !str_eq(r->message_id, message_id))
			continue;
		if (digest != NULL)
			*digest = r->digest;
		return &r->e;
	}
	return NULL;
}

/* --- records ------------------------------------------------------- */

/* Removes m's intent, in the caller's transaction if any. */
static int
intent_del(struct seen_db *db, int64_t id, const struct seen_msg *m,
    struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_INTENT_DEL, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, m->uid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, m->uidvalidity);
	return db_done(db, s, err);
}

/* Commits the open transaction; rolls it back when rc is not 0. */
static int
tx_end(struct seen_db *db, int rc, struct mh_err *err)
{
	if (rc == 0 && db_exec(db, "COMMIT", err) == 0)
		return 0;
	db_rollback(db);
	return -1;
}

/*
 * mark-seen's record (adopted): delivered as far as every pass is
 * concerned, and noted (last_error = ADOPTED, which a real delivery
 * clears) so that status counts it apart from what mailhaul delivered.
 */
#define ADOPTED	"mark-seen"

/* The adopted note on m's record, in the caller's transaction. */
static int
note_adopted(struct seen_db *db, int64_t id, const struct seen_msg *m,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 r;

	if (sqlite3_prepare_v2(db->db, "UPDATE messages SET last_error = '"
	    ADOPTED "' WHERE source_id = ?1 AND uidvalidity = ?2 AND "
	    "uid = ?3", -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, err);
		return -1;
	}
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, m->uidvalidity);
	sqlite3_bind_text(s, 3, m->uid, -1, SQLITE_STATIC);
	r = sqlite3_step(s);
	sqlite3_finalize(s);
	if (r != SQLITE_DONE) {
		db_fail(db, err);
		return -1;
	}
	return 0;
}

/* A delivered record, its intent removed (the caller's transaction). */
static int
delivered_one(struct seen_db *db, int64_t id, const struct seen_msg *m,
    const char *target, struct mh_err *err)
{
	sqlite3_stmt	*s;

	(void)target;
	if ((s = db_stmt(db, ST_DELIVERED, err)) == NULL)
		return -1;
	bind_msg(s, id, m);
	sqlite3_bind_int64(s, 7, time(NULL));
	if (db_done(db, s, err) != 0)
		return -1;
	return intent_del(db, id, m, err);
}

static int
record_delivered(struct seen_db *db, int64_t id, const struct seen_msg *m,
    bool adopted, struct mh_err *err)
{
	int	rc = -1;

	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	if (delivered_one(db, id, m, NULL, err) != 0)
		goto out;
	rc = adopted ? note_adopted(db, id, m, err) : 0;
out:
	return tx_end(db, rc, err);
}

int
seen_record_delivered(struct seen_db *db, int64_t id,
    const struct seen_msg *m, struct mh_err *err)
{
	return record_delivered(db, id, m, false, err);
}

int
seen_record_adopted(struct seen_db *db, int64_t id,
    const struct seen_msg *m, struct mh_err *err)
{
	return record_delivered(db, id, m, true, err);
}

/* The failure record alone, in the caller's transaction. */
static int
record_failed(struct seen_db *db, int64_t id, const struct seen_msg *m,
    bool permanent, const char *error, struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_FAILED, err)) == NULL)
		return -1;
	bind_msg(s, id, m);
	sqlite3_bind_int(s, 7, permanent ? SEEN_FAILED : SEEN_TEMPFAIL);
	sqlite3_bind_int64(s, 8, time(NULL));
	sqlite3_bind_text(s, 9, error, -1, SQLITE_STATIC);
	if (db_done(db, s, err) != 0)
		return -1;
	return permanent ? intent_del(db, id, m, err) : 0;
}

int
seen_record_failed(struct seen_db *db, int64_t id, const struct seen_msg *m,
    bool permanent, const char *error, struct mh_err *err)
{
	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	return tx_end(db, record_failed(db, id, m, permanent, error, err),
	    err);
}

/* --- in-flight intents --------------------------------------------- */

int
seen_intent_begin(struct seen_db *db, int64_t id, const struct seen_msg *m,
    const char *target, struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_INTENT_ADD, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, m->uid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, m->uidvalidity);
	sqlite3_bind_text(s, 4, target, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, time(NULL));
	return db_done(db, s, err);
}

/*
 * A commit that need not wait for the disk (bookkeeping, or an intent
 * no look-up depends on) is made at synchronous = NORMAL: in WAL mode no
 * fdatasync at commit; a power loss may lose it, never corrupt the file
 * nor reorder it after a later FULL commit, which syncs it too.  Every
 * record of delivery stays FULL (I1, I3).  Inside a transaction the level
 * cannot change: such a write stays FULL.  unsynced_end sets FULL again;
 * its failure is the caller's (rc -1, err set when rc was 0): the
 * connection must not go on at NORMAL unnoticed.
 */
static bool
unsynced_begin(struct seen_db *db)
{
	return sqlite3_get_autocommit(db->db) &&
	    sqlite3_exec(db->db, "PRAGMA synchronous = NORMAL", NULL, NULL,
	    NULL) == SQLITE_OK;
}

static int
unsynced_end(struct seen_db *db, bool was_normal, int rc, struct mh_err *err)
{
	struct mh_err	serr;

	if (!was_normal)
		return rc;
	mh_err_clear(&serr);
	if (db_exec(db, "PRAGMA synchronous = FULL", &serr) == 0)
		return rc;
	if (rc == 0)
		*err = serr;
	return -1;
}

int
seen_intent_begin_unsynced(struct seen_db *db, int64_t id,
    const struct seen_msg *m, const char *target, struct mh_err *err)
{
	bool	normal = unsynced_begin(db);

	return unsynced_end(db, normal, seen_intent_begin(db, id, m, target,
	    err), err);
}

int
seen_intent_clear(struct seen_db *db, int64_t id, const struct seen_msg *m,
    struct mh_err *err)
{
	return intent_del(db, id, m, err);
}

/* one(m[i]) for each i in one committed transaction; all or nothing. */
static int
tx_each(struct seen_db *db, int64_t id, const struct seen_msg *const *m,
    size_t n, const char *target, int (*one)(struct seen_db *, int64_t,
    const struct seen_msg *, const char *, struct mh_err *),
    struct mh_err *err)
{
	size_t	i;
	int	rc = 0;

	if (n == 0)
		return 0;
	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	for (i = 0; i < n && rc == 0; i++)
		rc = one(db, id, m[i], target, err);
	return tx_end(db, rc, err);
}

int
seen_intent_begin_many(struct seen_db *db, int64_t id,
    const struct seen_msg *const *m, size_t n, const char *target,
    struct mh_err *err)
{
	return tx_each(db, id, m, n, target, seen_intent_begin, err);
}

int
seen_record_delivered_many(struct seen_db *db, int64_t id,
    const struct seen_msg *const *m, size_t n, struct mh_err *err)
{
	return tx_each(db, id, m, n, NULL, delivered_one, err);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool
seen_stuck(const struct seen_entry *e)
{
	return e->state == SEEN_TEMPFAIL && e->tries >= SEEN_STUCK_TRIES &&
	    e->first_failed > 0 &&
	    e->last_tried - e->first_failed >= SEEN_STUCK_SPAN;
}

bool
seen_retry_due(const struct seen_entry *e, time_t now)
{
	return !seen_stuck(e) || now - e->last_tried >= SEEN_STUCK_RETRY;
}

bool
seen_in_doubt(const struct seen_set *set, const char *uid)
{
	if (set->nintents == 0 || uid == NULL)
		return false;
	return bsearch(&uid, set->intents, set->nintents,
	    sizeof *set->intents, cmp_str) != NULL;
}

int
seen_intents(struct seen_db *db, int64_t id,
    void (*cb)(const struct seen_intent *, void *), void *arg,
    struct mh_err *err)
{
	sqlite3_stmt		*s = NULL;
	struct seen_intent	 in;
	int			 rc;

	if (sqlite3_prepare_v2(db->db, "SELECT uid, uidvalidity, target, at"
	    " FROM intents WHERE source_id = ?1 ORDER BY at, uid", -1, &s,
	    NULL) != SQLITE_OK)
		return db_fail(db, err);
	sqlite3_bind_int64(s, 1, id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		in.uid = (const char *)sqlite3_column_text(s, 0);
		in.uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
		in.target = (const char *)sqlite3_column_text(s, 2);
		in.at = (time_t)sqlite3_column_int64(s, 3);
		cb(&in, arg);
	}
	if (rc != SQLITE_DONE)
		db_fail(db, err);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int
seen_record_partial(struct seen_db *db, int64_t id, const struct seen_msg *m,
    bool permanent, const char *error, const char *const *rcpts, size_t n,
    struct mh_err *err)
{
	sqlite3_stmt	*s;
	size_t		 i;
	int64_t		 now = time(NULL);

	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	if (record_failed(db, id, m, permanent, error, err) != 0)
		goto fail;
	if ((s = db_stmt(db, ST_TO_ADD, err)) == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, m->uid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, m->uidvalidity);
		sqlite3_bind_text(s, 4, rcpts[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, now);
		if (db_done(db, s, err) != 0)
			goto fail;
	}
	if (db_exec(db, "COMMIT", err) != 0)
		goto fail;
	return 0;
fail:
	db_rollback(db);
	return -1;
}

int
seen_delivered_to(struct seen_db *db, int64_t id, const struct seen_msg *m,
    char ***rcpts, size_t *n, struct mh_err *err)
{
	sqlite3_stmt	*s;
	char		**v = NULL;
	size_t		 k = 0;
	int		 rc;

	*rcpts = NULL;
	*n = 0;
	if ((s = db_stmt(db, ST_TO_GET, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, m->uid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, m->uidvalidity);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		v = xrealloc(v, (k + 1) * sizeof *v);
		v[k++] = xstrdup((const char *)sqlite3_column_text(s, 0));
	}
	if (rc != SQLITE_DONE) {
		db_fail(db, err);
		sqlite3_reset(s);
		seen_strv_free(v, k);
		return -1;
	}
	sqlite3_reset(s);
	*rcpts = v;
	*n = k;
	return 0;
}

void
seen_strv_free(char **v, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int
seen_record_skipped(struct seen_db *db, int64_t id, const struct seen_msg *m,
    const char *reason, struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_SKIPPED, err)) == NULL)
		return -1;
	bind_msg(s, id, m);
	sqlite3_bind_int64(s, 7, time(NULL));
	sqlite3_bind_text(s, 8, reason, -1, SQLITE_STATIC);
	return db_done(db, s, err);
}

int
seen_record_deleted(struct seen_db *db, int64_t id, const char *uid,
    struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_DELETED, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, uid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, time(NULL));
	return db_done(db, s, err);
}

int
seen_record_deleted_many(struct seen_db *db, int64_t id,
    const char *const *uids, size_t n, struct mh_err *err)
{
	sqlite3_stmt	*s;
	int64_t		 now = time(NULL);
	size_t		 i;
	int		 rc = -1;

	if (n == 0)
		return 0;
	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	if ((s = db_stmt(db, ST_DELETED, err)) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, uids[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, now);
		if (db_done(db, s, err) != 0)
			goto out;
	}
	rc = 0;
out:
	return tx_end(db, rc, err);
}

int
seen_explain(struct seen_db *db, const char *name, char *out, size_t outsz,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	char		*sql;
	size_t		 o = 0;
	int		 i, rc;

	for (i = 0; i < ST_COUNT; i++)
		if (stmt_name[i] != NULL && strcmp(stmt_name[i], name) == 0)
			break;
	if (i == ST_COUNT || outsz == 0) {
		mh_err_set(err, MH_ERR_LOCAL, "no statement named %s", name);
		return -1;
	}
	sql = xasprintf("EXPLAIN QUERY PLAN %s", stmt_sql[i]);
	rc = sqlite3_prepare_v2(db->db, sql, -1, &s, NULL);
	free(sql);
	if (rc != SQLITE_OK)
		return db_fail(db, err);
	out[0] = '\0';
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && o < outsz - 1) {
		const char *d = (const char *)sqlite3_column_text(s, 3);
		int w = snprintf(out + o, outsz - o, "%s\n", d ? d : "");

		o = w < 0 || (size_t)w >= outsz - o ? outsz - 1 : o + (size_t)w;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_fail(db, err);
	return 0;
}

/* The folder's current UIDVALIDITY (0 for POP3), for ?1. */
#define CUR_UV_SQL \
    "coalesce((SELECT uidvalidity FROM folders WHERE source_id = ?1), 0)"

/* Runs one statement with ?1 bound to id (not cached: rare). */
static int
db_exec_id(struct seen_db *db, const char *sql, int64_t id,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 rc;

	if (sqlite3_prepare_v2(db->db, sql, -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, err);
		return -1;
	}
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		db_fail(db, err);
		return -1;
	}
	return 0;
}

/*
 * Within the folder's current UIDVALIDITY (0 for POP3), records whose uid
 * is not listed go; records of older UIDVALIDITYs are kept only when
 * delivered (they are the I2 fallback by content).  Permanent failures
 * stay until `retry` or `forget`.
 */
int
seen_prune(struct seen_db *db, int64_t id, const char *const *present,
    size_t npresent, struct mh_err *err)
{
	sqlite3_stmt	*ins = NULL, *del = NULL;
	size_t		 i;
	int		 rc = -1;

	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	if (db_exec(db, "CREATE TEMP TABLE IF NOT EXISTS prune_present "
	    "(uid TEXT PRIMARY KEY) WITHOUT ROWID;"
	    "DELETE FROM temp.prune_present", err) != 0)
		goto out;
	if (sqlite3_prepare_v2(db->db, "INSERT OR IGNORE INTO "
	    "temp.prune_present (uid) VALUES (?1)", -1, &ins, NULL) !=
	    SQLITE_OK) {
		db_fail(db, err);
		goto out;
	}
	for (i = 0; i < npresent; i++) {
		sqlite3_bind_text(ins, 1, present[i], -1, SQLITE_STATIC);
		if (db_done(db, ins, err) != 0)
			goto out;
	}
	if (sqlite3_prepare_v2(db->db, "DELETE FROM messages"
	    " WHERE source_id = ?1 AND state <> 2 AND"
	    " (CASE WHEN uidvalidity = coalesce((SELECT uidvalidity"
	    "   FROM folders WHERE source_id = ?1), 0)"
	    "  THEN uid NOT IN (SELECT uid FROM temp.prune_present)"
	    "  ELSE state <> 1 END)", -1, &del, NULL) != SQLITE_OK) {
		db_fail(db, err);
		goto out;
	}
	sqlite3_bind_int64(del, 1, id);
	if (db_done(db, del, err) != 0 ||
	    db_exec_id(db, "DELETE FROM intents WHERE source_id = ?1 AND"
	    " (uidvalidity <> coalesce((SELECT uidvalidity FROM folders"
	    "   WHERE source_id = ?1), 0)"
	    "  OR uid NOT IN (SELECT uid FROM temp.prune_present))", id,
	    err) != 0 ||
	    db_exec(db, "DELETE FROM temp.prune_present", err) != 0 ||
	    db_exec(db, "COMMIT", err) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		db_rollback(db);
	sqlite3_finalize(ins);
	sqlite3_finalize(del);
	return rc;
}

int
seen_prune_due(struct seen_db *db, int64_t id, time_t now, bool *due,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 rc;

	*due = false;
	if (sqlite3_prepare_v2(db->db, "SELECT pruned FROM sources"
	    " WHERE id = ?1", -1, &s, NULL) != SQLITE_OK)
		return db_fail(db, err);
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*due = sqlite3_column_type(s, 0) == SQLITE_NULL ||
		    now - (time_t)sqlite3_column_int64(s, 0) >=
		    SEEN_PRUNE_EVERY || sqlite3_column_int64(s, 0) > now;
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, err);
	return 0;
}

/* ?1 id, ?2 now: the source is pruned as of now. */
#define STAMP_PRUNED	"UPDATE sources SET pruned = ?2 WHERE id = ?1"

/* The statements of seen_prune_gone, in order; ?1 id, ?2 now, ?3 the
   oldest gone_at/deleted_at that stays.  "present" is temp.prune_present
   in the folder's current UIDVALIDITY (0 for POP3). */
static const char *const prune_gone_sql[] = {
	/* back on the server: not gone */
	"UPDATE messages SET gone_at = NULL WHERE source_id = ?1"
	" AND gone_at IS NOT NULL AND uidvalidity = " CUR_UV_SQL
	" AND uid IN (SELECT uid FROM temp.prune_present)",
	/* missing from the listing since now */
	"UPDATE messages SET gone_at = ?2 WHERE source_id = ?1"
	" AND gone_at IS NULL AND (uidvalidity <> " CUR_UV_SQL
	"  OR uid NOT IN (SELECT uid FROM temp.prune_present))",
	/* gone (or deleted by us) long enough, and not on the server */
	"DELETE FROM messages WHERE source_id = ?1"
	" AND gone_at IS NOT NULL"
	" AND min(gone_at, coalesce(deleted_at, gone_at)) < ?3"
	" AND NOT (uidvalidity = " CUR_UV_SQL
	"  AND uid IN (SELECT uid FROM temp.prune_present))",
	"DELETE FROM intents WHERE source_id = ?1 AND"
	" (uidvalidity <> " CUR_UV_SQL
	"  OR uid NOT IN (SELECT uid FROM temp.prune_present))",
	STAMP_PRUNED,
};

/* Fills temp.prune_present with present[0..n), or, when present is NULL,
   with uids[0..n) written in decimal. */
static int
prune_fill(struct seen_db *db, const char *const *present,
    const uint32_t *uids, size_t n, struct mh_err *err)
{
	sqlite3_stmt	*ins = NULL;
	char		 num[16];
	size_t		 i;
	int		 rc = -1;

	if (db_exec(db, "CREATE TEMP TABLE IF NOT EXISTS prune_present "
	    "(uid TEXT PRIMARY KEY) WITHOUT ROWID;"
	    "DELETE FROM temp.prune_present", err) != 0)
		return -1;
	if (sqlite3_prepare_v2(db->db, "INSERT OR IGNORE INTO "
	    "temp.prune_present (uid) VALUES (?1)", -1, &ins, NULL) !=
	    SQLITE_OK)
		return db_fail(db, err);
	for (i = 0; i < n; i++) {
		if (present != NULL)
			sqlite3_bind_text(ins, 1, present[i], -1,
			    SQLITE_STATIC);
		else {
			snprintf(num, sizeof num, "%" PRIu32, uids[i]);
			sqlite3_bind_text(ins, 1, num, -1, SQLITE_TRANSIENT);
		}
		if (db_done(db, ins, err) != 0)
			goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(ins);
	return rc;
}

static int
prune_gone(struct seen_db *db, int64_t id, const char *const *present,
    const uint32_t *uids, size_t npresent, time_t now, time_t grace,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	size_t		 i;
	int		 rc = -1;

	if (grace < SEEN_PRUNE_GRACE)
		grace = SEEN_PRUNE_GRACE;
	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	if (prune_fill(db, present, uids, npresent, err) != 0)
		goto out;
	for (i = 0; i < sizeof prune_gone_sql / sizeof prune_gone_sql[0];
	    i++) {
		if (sqlite3_prepare_v2(db->db, prune_gone_sql[i], -1, &s,
		    NULL) != SQLITE_OK) {
			db_fail(db, err);
			goto out;
		}
		sqlite3_bind_int64(s, 1, id);
		if (sqlite3_bind_parameter_count(s) >= 2)
			sqlite3_bind_int64(s, 2, now);
		if (sqlite3_bind_parameter_count(s) >= 3)
			sqlite3_bind_int64(s, 3, now - grace);
		if (db_done(db, s, err) != 0)
			goto out;
		sqlite3_finalize(s);
		s = NULL;
	}
	if (db_exec(db, "DELETE FROM temp.prune_present", err) != 0 ||
	    db_exec(db, "COMMIT", err) != 0)
		goto out;
	rc = 0;
out:
	sqlite3_finalize(s);
	if (rc != 0)
		db_rollback(db);
	return rc;
}

int
seen_prune_gone(struct seen_db *db, int64_t id, const char *const *present,
    size_t npresent, time_t now, time_t grace, struct mh_err *err)
{
	return prune_gone(db, id, present, NULL, npresent, now, grace, err);
}

int
seen_prune_gone_uids(struct seen_db *db, int64_t id, const uint32_t *uids,
    size_t n, time_t now, time_t grace, struct mh_err *err)
{
	return prune_gone(db, id, NULL, uids, n, now, grace, err);
}

int
seen_prune_postpone(struct seen_db *db, int64_t id, time_t now,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 rc;

	if (sqlite3_prepare_v2(db->db, STAMP_PRUNED, -1, &s, NULL) !=
	    SQLITE_OK)
		return db_fail(db, err);
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, now);
	rc = db_done(db, s, err);
	sqlite3_finalize(s);
	return rc;
}

int
seen_retry(struct seen_db *db, int64_t id, int *count, struct mh_err *err)
{
	sqlite3_stmt	*s;

	*count = 0;
	/*
	 * IMAP lists only UIDs above the folder's last_uid: bring it below
	 * the retried messages, or they would never be listed again.
	 */
	if (db_exec_id(db, "UPDATE folders SET last_uid = MIN(last_uid,"
	    " (SELECT MIN(CAST(uid AS INTEGER)) - 1 FROM messages"
	    "  WHERE source_id = ?1 AND state IN (2, 3)"
	    "  AND uidvalidity = folders.uidvalidity))"
	    " WHERE source_id = ?1 AND EXISTS (SELECT 1 FROM messages"
	    "  WHERE source_id = ?1 AND state IN (2, 3)"
	    "  AND uidvalidity = folders.uidvalidity)", id, err) != 0)
		return -1;
	if ((s = db_stmt(db, ST_RETRY, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, time(NULL));
	sqlite3_bind_int(s, 3, SEEN_STUCK_TRIES);
	sqlite3_bind_int64(s, 4, SEEN_STUCK_SPAN);
	if (db_done(db, s, err) != 0)
		return -1;
	*count = sqlite3_changes(db->db);
	return 0;
}

int
seen_forget(struct seen_db *db, int64_t id, struct mh_err *err)
{
	static const char *const tables[] = {
		"delivered_to", "intents", "messages", "runs", "folders",
	};
	sqlite3_stmt	*s = NULL;
	char		 sql[80];
	size_t		 i;
	int		 rc = -1;

	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	for (i = 0; i <= sizeof tables / sizeof tables[0]; i++) {
		if (i < sizeof tables / sizeof tables[0])
			snprintf(sql, sizeof sql, "DELETE FROM %s WHERE "
			    "source_id = ?1", tables[i]);
		else
			snprintf(sql, sizeof sql, "DELETE FROM sources WHERE "
			    "id = ?1");
		if (sqlite3_prepare_v2(db->db, sql, -1, &s, NULL) !=
		    SQLITE_OK) {
			db_fail(db, err);
			goto out;
		}
		sqlite3_bind_int64(s, 1, id);
		if (db_done(db, s, err) != 0)
			goto out;
		sqlite3_finalize(s);
		s = NULL;
	}
	if (db_exec(db, "COMMIT", err) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		db_rollback(db);
	sqlite3_finalize(s);
	return rc;
}

/* --- runs ---------------------------------------------------------- */

/*
 * The run log is bookkeeping, not a record of delivery: its commits are
 * unsynced (unsynced_begin).
 */
static int
run_begin(struct seen_db *db, int64_t id, int64_t *run, struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_RUN_TRIM, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int(s, 2, RUNS_KEPT - 1);
	if (db_done(db, s, err) != 0)
		return -1;
	if ((s = db_stmt(db, ST_RUN_BEGIN, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, time(NULL));
	if (db_done(db, s, err) != 0)
		return -1;
	*run = sqlite3_last_insert_rowid(db->db);
	return 0;
}

int
seen_run_begin(struct seen_db *db, int64_t id, int64_t *run,
    struct mh_err *err)
{
	bool	normal = unsynced_begin(db);

	return unsynced_end(db, normal, run_begin(db, id, run, err), err);
}

static int
run_end(struct seen_db *db, int64_t run, const struct seen_run_counts *c,
    const char *result, const char *error, struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_RUN_END, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, run);
	sqlite3_bind_int64(s, 2, time(NULL));
	sqlite3_bind_int64(s, 3, c->listed);
	sqlite3_bind_int64(s, 4, c->fetched);
	sqlite3_bind_int64(s, 5, c->delivered);
	sqlite3_bind_int64(s, 6, c->deleted);
	sqlite3_bind_int64(s, 7, c->skipped);
	sqlite3_bind_int64(s, 8, c->failed);
	sqlite3_bind_int64(s, 9, c->tempfailed);
	sqlite3_bind_int64(s, 10, (sqlite3_int64)c->bytes);
	sqlite3_bind_text(s, 11, result, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 12, error, -1, SQLITE_STATIC);
	return db_done(db, s, err);
}

int
seen_run_end(struct seen_db *db, int64_t run, const struct seen_run_counts *c,
    const char *result, const char *error, struct mh_err *err)
{
	bool	normal = unsynced_begin(db);

	return unsynced_end(db, normal, run_end(db, run, c, result, error,
	    err), err);
}

int
seen_run_close_open(struct seen_db *db, int64_t id, const char *result,
    const char *error, unsigned *delivered, struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 rc;

	*delivered = 0;
	if (sqlite3_prepare_v2(db->db, "UPDATE runs SET ended = ?2,"
	    " result = ?3, error = ?4, delivered ="
	    "  (SELECT count(*) FROM messages m WHERE m.source_id = ?1"
	    "   AND m.state = 1 AND m.delivered_at >= runs.started)"
	    " WHERE source_id = ?1 AND ended IS NULL RETURNING delivered",
	    -1, &s, NULL) != SQLITE_OK)
		return db_fail(db, err);
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, time(NULL));
	sqlite3_bind_text(s, 3, result, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, error, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		*delivered += (unsigned)sqlite3_column_int(s, 0);
	if (rc != SQLITE_DONE) {
		db_fail(db, err);
		sqlite3_finalize(s);
		return -1;
	}
	sqlite3_finalize(s);
	return 0;
}

/* --- status -------------------------------------------------------- */

/* A stuck message (seen_stuck), in SQL; the numbers from seen.h. */
#define STR_(x)		#x
#define STR(x)		STR_(x)
#define STUCK_SQL \
    "(state = 4 AND tries >= " STR(SEEN_STUCK_TRIES) \
    " AND updated - first_failed >= " STR(SEEN_STUCK_SPAN) ")"

/* Skipped by max_size and still on the server: judged again every
   pass, listed by `status`. */
#define SKIPPED_SQL	"(state = 3 AND deleted_at IS NULL)"

static const char status_sql[] =
    "SELECT s.id, s.name, s.protocol, s.host, s.port, s.user, s.folder,"
    " (SELECT count(*) FROM messages m WHERE m.source_id = s.id"
    "   AND m.state = 1 AND m.last_error IS NOT '" ADOPTED "'),"
    " (SELECT count(*) FROM messages m WHERE m.source_id = s.id"
    "   AND m.state = 2),"
    " r.started, r.ended, r.result, r.error, r.listed, r.fetched,"
    " r.delivered, r.deleted, r.skipped, r.failed, r.tempfailed, r.bytes,"
    " (SELECT count(*) FROM intents i WHERE i.source_id = s.id),"
    " (SELECT count(*) FROM messages m WHERE m.source_id = s.id"
    "   AND " STUCK_SQL "),"
    " (SELECT count(*) FROM messages m WHERE m.source_id = s.id"
    "   AND " SKIPPED_SQL "),"
    " (SELECT count(*) FROM messages m WHERE m.source_id = s.id"
    "   AND m.state = 1 AND m.last_error IS '" ADOPTED "')"
    " FROM sources s LEFT JOIN runs r ON r.id ="
    "  (SELECT max(id) FROM runs WHERE source_id = s.id)"
    " ORDER BY s.name, s.id";

/* Permanent failures first, then the skipped, then the stuck ones. */
static const char failures_sql[] =
    "SELECT uid, message_id, size, updated, tries, last_error, state,"
    " first_failed"
    " FROM messages WHERE source_id = ?1 AND (state = 2 OR " STUCK_SQL
    "  OR " SKIPPED_SQL ")"
    " ORDER BY state, updated, uid";

static const char *
col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

static void
status_row(sqlite3_stmt *s, struct seen_status *st)
{
	memset(st, 0, sizeof *st);
	st->id = sqlite3_column_int64(s, 0);
	st->name = col_text(s, 1);
	st->protocol = col_text(s, 2);
	st->host = col_text(s, 3);
	st->port = (unsigned)sqlite3_column_int(s, 4);
	st->user = col_text(s, 5);
	st->folder = col_text(s, 6);
	st->delivered_total = (uint64_t)sqlite3_column_int64(s, 7);
	st->failed_total = (unsigned)sqlite3_column_int(s, 8);
	st->last_start = (time_t)sqlite3_column_int64(s, 9);
	st->last_end = (time_t)sqlite3_column_int64(s, 10);
	st->last_result = col_text(s, 11);
	st->last_error = col_text(s, 12);
	st->last.listed = (unsigned)sqlite3_column_int(s, 13);
	st->last.fetched = (unsigned)sqlite3_column_int(s, 14);
	st->last.delivered = (unsigned)sqlite3_column_int(s, 15);
	st->last.deleted = (unsigned)sqlite3_column_int(s, 16);
	st->last.skipped = (unsigned)sqlite3_column_int(s, 17);
	st->last.failed = (unsigned)sqlite3_column_int(s, 18);
	st->last.tempfailed = (unsigned)sqlite3_column_int(s, 19);
	st->last.bytes = (uint64_t)sqlite3_column_int64(s, 20);
	st->in_doubt = (unsigned)sqlite3_column_int(s, 21);
	st->stuck_total = (unsigned)sqlite3_column_int(s, 22);
	st->skipped_total = (unsigned)sqlite3_column_int(s, 23);
	st->adopted_total = (uint64_t)sqlite3_column_int64(s, 24);
}

int
seen_status(struct seen_db *db,
    void (*source_cb)(const struct seen_status *, void *),
    void (*failure_cb)(const struct seen_status *,
	const struct seen_failure *, void *),
    void *arg, struct mh_err *err)
{
	sqlite3_stmt		*src = NULL, *fail = NULL;
	struct seen_status	 st;
	struct seen_failure	 f;
	int			 rc = -1, step;

	if (sqlite3_prepare_v2(db->db, status_sql, -1, &src, NULL) !=
	    SQLITE_OK ||
	    sqlite3_prepare_v2(db->db, failures_sql, -1, &fail, NULL) !=
	    SQLITE_OK) {
		db_fail(db, err);
		goto out;
	}
	/* One read transaction: a consistent picture. */
	if (db_exec(db, "BEGIN", err) != 0)
		goto out;
	while ((step = sqlite3_step(src)) == SQLITE_ROW) {
		status_row(src, &st);
		if (source_cb != NULL)
			source_cb(&st, arg);
		if (failure_cb == NULL ||
		    st.failed_total + st.stuck_total + st.skipped_total == 0)
			continue;
		sqlite3_reset(fail);
		sqlite3_bind_int64(fail, 1, st.id);
		while ((step = sqlite3_step(fail)) == SQLITE_ROW) {
			f.uid = col_text(fail, 0);
			f.message_id = col_text(fail, 1);
			f.size = (uint64_t)sqlite3_column_int64(fail, 2);
			f.when = (time_t)sqlite3_column_int64(fail, 3);
			f.tries = sqlite3_column_int(fail, 4);
			f.error = col_text(fail, 5);
			f.stuck = sqlite3_column_int(fail, 6) == SEEN_TEMPFAIL;
			f.skipped = sqlite3_column_int(fail, 6) == SEEN_SKIPPED;
			f.first_failed = (time_t)sqlite3_column_int64(fail,
			    7);
			failure_cb(&st, &f, arg);
		}
		if (step != SQLITE_DONE) {
			db_fail(db, err);
			goto out;
		}
	}
	if (step != SQLITE_DONE) {
		db_fail(db, err);
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(src);
	sqlite3_finalize(fail);
	db_rollback(db);	/* ends the read transaction */
	return rc;
}

/* --- folders ------------------------------------------------------- */

int
seen_folder_get(struct seen_db *db, int64_t id, uint32_t *uidvalidity,
    uint32_t *last_uid, bool *remap, struct mh_err *err)
{
	sqlite3_stmt	*s;
	int		 rc;

	*uidvalidity = 0;
	*last_uid = 0;
	if (remap != NULL)
		*remap = false;
	if ((s = db_stmt(db, ST_FOLDER_GET, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		*uidvalidity = (uint32_t)sqlite3_column_int64(s, 0);
		*last_uid = (uint32_t)sqlite3_column_int64(s, 1);
		if (remap != NULL)
			*remap = sqlite3_column_int(s, 2) != 0;
	} else if (rc != SQLITE_DONE) {
		db_fail(db, err);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

int
seen_folder_set(struct seen_db *db, int64_t id, uint32_t uidvalidity,
    uint32_t last_uid, bool remap, struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = db_stmt(db, ST_FOLDER_SET, err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, uidvalidity);
	sqlite3_bind_int64(s, 3, last_uid);
	sqlite3_bind_int(s, 4, remap);
	return db_done(db, s, err);
}

/* --- the settled head of a listing ---------------------------------- */

int
seen_settled_get(struct seen_db *db, int64_t id, size_t *n,
    char sha[65], struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 rc;

	*n = 0;
	sha[0] = '\0';
	if (sqlite3_prepare_v2(db->db, "SELECT settled_n, settled_sha FROM"
	    " sources WHERE id = ?1", -1, &s, NULL) != SQLITE_OK)
		return db_fail(db, err);
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0 &&
	    sqlite3_column_bytes(s, 1) == 64) {
		*n = (size_t)sqlite3_column_int64(s, 0);
		memcpy(sha, sqlite3_column_text(s, 1), 65);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, err);
	return 0;
}

int
seen_settled_set(struct seen_db *db, int64_t id, size_t n, const char *sha,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	int		 rc;

	if (sqlite3_prepare_v2(db->db, "UPDATE sources SET settled_n = ?2,"
	    " settled_sha = ?3 WHERE id = ?1", -1, &s, NULL) != SQLITE_OK)
		return db_fail(db, err);
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)n);
	if (n > 0 && sha != NULL)
		sqlite3_bind_text(s, 3, sha, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
	rc = db_done(db, s, err);
	sqlite3_finalize(s);
	return rc;
}

/* --- imported state (`mailhaul import`) ----------------------------- */

int
seen_record_imported(struct seen_db *db, int64_t id, uint32_t uidvalidity,
    const char *const *uids, size_t n, size_t *added, struct mh_err *err)
{
	static const char sql[] =
	    "INSERT INTO messages (source_id, uid, uidvalidity, size, state,"
	    "  first_seen, delivered_at, tries, updated)"
	    " VALUES (?1, ?2, ?3, 0, 1, ?4, NULL, 0, ?4)"
	    " ON CONFLICT (source_id, uidvalidity, uid) DO NOTHING";
	sqlite3_stmt	*s = NULL;
	int		 rc = -1;
	size_t		 i;

	*added = 0;
	if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	if (sqlite3_prepare_v2(db->db, sql, -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, uids[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, uidvalidity);
		sqlite3_bind_int64(s, 4, time(NULL));
		if (sqlite3_step(s) != SQLITE_DONE) {
			db_fail(db, err);
			goto out;
		}
		*added += (size_t)sqlite3_changes(db->db);
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return tx_end(db, rc, err);
}

/* --- for the state room's other modules (seen_impl.h) -------------- */

sqlite3 *
seen_sqlite(struct seen_db *db)
{
	return db->db;
}

int
seen_sqlite_begin(struct seen_db *db, struct mh_err *err)
{
	return db_exec(db, "BEGIN IMMEDIATE", err);
}

int
seen_sqlite_end(struct seen_db *db, int rc, struct mh_err *err)
{
	return tx_end(db, rc, err);
}

sqlite3_stmt *
seen_sqlite_kept(struct seen_db *db, unsigned slot, const char *sql,
    struct mh_err *err)
{
	if (slot >= SEEN_KEPT_MAX)
		abort();	/* a caller's bug */
	return stmt_kept(db, &db->kept[slot], sql, err);
}

int
seen_sqlite_fail(struct seen_db *db, struct mh_err *err)
{
	return db_fail(db, err);
}

void
seen_sqlite_bind_source(sqlite3_stmt *s, const struct seen_source *src)
{
	bind_source(s, src);
}

void
seen_entry_content(const struct seen_entry *e, uint64_t *size,
    const char **digest, const char **message_id)
{
	/* e is the first member of a loaded record */
	const struct seen_rec *r = (const struct seen_rec *)(const void *)e;

	*size = r->size;
	*digest = r->digest;
	*message_id = r->message_id;
}
