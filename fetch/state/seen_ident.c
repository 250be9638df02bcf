/* seen_ident.c -- see seen_ident.h */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fetch/state/seen_ident.h"
#include "fetch/state/seen_impl.h"

/* Prepares sql (rare statements: not cached); NULL with err. */
static sqlite3_stmt *
prep(struct seen_db *db, const char *sql, struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;

	if (sqlite3_prepare_v2(seen_sqlite(db), sql, -1, &s, NULL) !=
	    SQLITE_OK) {
		seen_sqlite_fail(db, err);
		sqlite3_finalize(s);
		return NULL;
	}
	return s;
}

/* Steps s to its end (no rows wanted), finalizes it. */
static int
finish(struct seen_db *db, sqlite3_stmt *s, struct mh_err *err)
{
	int	rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		seen_sqlite_fail(db, err);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Steps s once: *id is its first column, or 0 without a row. */
static int
first_id(struct seen_db *db, sqlite3_stmt *s, int64_t *id,
    struct mh_err *err)
{
	int	rc = sqlite3_step(s);

	*id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		seen_sqlite_fail(db, err);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* The id of the first row of sql on sources, with ?1..?5 src and ?6
   name; *id 0 when none. */
static int
source_query(struct seen_db *db, const char *sql,
    const struct seen_source *src, const char *name, int64_t *id,
    struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = prep(db, sql, err)) == NULL)
		return -1;
	seen_sqlite_bind_source(s, src);
	if (name != NULL)
		sqlite3_bind_text(s, 6, name, -1, SQLITE_STATIC);
	return first_id(db, s, id, err);
}

int
seen_ident_find(struct seen_db *db, const struct seen_source *src,
    const char *name, int64_t *id, struct mh_err *err)
{
	sqlite3_stmt	*s;

	/* the exact spelling first, then any case (the newest row) */
	if (source_query(db, "SELECT id FROM sources WHERE protocol = ?1"
	    " AND host = ?2 COLLATE NOCASE AND port = ?3 AND user = ?4"
	    " AND folder = ?5 ORDER BY host = ?2 DESC, id DESC LIMIT 1",
	    src, NULL, id, err) == -1)
		return -1;
	if (*id == 0 || name == NULL)	/* NULL: only look (a dry run) */
		return 0;
	/* the row takes the spelling in use (no other row has it); no
	   write when it has them already (a poll with nothing new) */
	s = prep(db, "UPDATE OR IGNORE sources SET host = ?2,"
	    " name = coalesce(?3, name) WHERE id = ?1 AND"
	    " (host IS NOT ?2 OR name IS NOT coalesce(?3, name))", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, *id);
	sqlite3_bind_text(s, 2, src->host, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
	return finish(db, s, err);
}

int
seen_ident_predecessor(struct seen_db *db, const struct seen_source *src,
    const char *name, int64_t *id, struct mh_err *err)
{
	return source_query(db, "SELECT id FROM sources WHERE name = ?6"
	    " AND protocol = ?1 AND user = ?4 AND folder = ?5"
	    " AND NOT (host = ?2 COLLATE NOCASE AND port = ?3)"
	    " ORDER BY named DESC, id DESC LIMIT 1", src, name, id, err);
}

int
seen_ident_move(struct seen_db *db, int64_t id, const struct seen_source *src,
    struct mh_err *err)
{
	sqlite3_stmt	*s;

	s = prep(db, "UPDATE sources SET host = ?2, port = ?3 WHERE id = ?1",
	    err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, src->host, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, src->port);
	return finish(db, s, err);
}

int
seen_ident_run_move(struct seen_db *db, int64_t run, int64_t id,
    struct mh_err *err)
{
	sqlite3_stmt	*s;

	if ((s = prep(db, "UPDATE runs SET source_id = ?2 WHERE id = ?1",
	    err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, run);
	sqlite3_bind_int64(s, 2, id);
	return finish(db, s, err);
}

int
seen_ident_set_aside(struct seen_db *db, int64_t id, const char *uid,
    struct mh_err *err)
{
	static const char *const sql[] = {
		/* the old message's recipients and intent go */
		"DELETE FROM delivered_to WHERE source_id = ?1"
		" AND uidvalidity = 0 AND uid = ?2",
		"DELETE FROM intents WHERE source_id = ?1"
		" AND uidvalidity = 0 AND uid = ?2",
		"UPDATE OR REPLACE messages SET uid = uid || '~' || deleted_at"
		" WHERE source_id = ?1 AND uidvalidity = 0 AND uid = ?2"
		" AND deleted_at IS NOT NULL",
	};
	sqlite3_stmt	*s;
	size_t		 i;

	if (sqlite3_exec(seen_sqlite(db), "BEGIN IMMEDIATE", NULL, NULL,
	    NULL) != SQLITE_OK)
		return seen_sqlite_fail(db, err);
	for (i = 0; i < sizeof sql / sizeof sql[0]; i++) {
		if ((s = prep(db, sql[i], err)) == NULL)
			break;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, uid, -1, SQLITE_STATIC);
		if (finish(db, s, err) == -1)
			break;
	}
	if (i == sizeof sql / sizeof sql[0]) {
		if (sqlite3_exec(seen_sqlite(db), "COMMIT", NULL, NULL,
		    NULL) == SQLITE_OK)
			return 0;
		seen_sqlite_fail(db, err);
	}
	sqlite3_exec(seen_sqlite(db), "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

int
seen_ident_undelete(struct seen_db *db, int64_t id, const char *uid,
    struct mh_err *err)
{
	sqlite3_stmt	*s;

	s = prep(db, "UPDATE messages SET deleted_at = NULL, updated = ?3"
	    " WHERE source_id = ?1 AND uidvalidity = 0 AND uid = ?2", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, uid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, time(NULL));
	return finish(db, s, err);
}

int
seen_ident_skipped_low(struct seen_db *db, int64_t id, uint32_t uidvalidity,
    uint32_t *uid, struct mh_err *err)
{
	sqlite3_stmt	*s;
	int64_t		 low;

	s = prep(db, "SELECT min(CAST(uid AS INTEGER)) FROM messages"
	    " WHERE source_id = ?1 AND uidvalidity = ?2 AND state = 3"
	    " AND deleted_at IS NULL", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, uidvalidity);
	if (first_id(db, s, &low, err) == -1)
		return -1;
	*uid = low > 0 && low <= UINT32_MAX ? (uint32_t)low : 0;
	return 0;
}

/* The other folders (o) of source me's account: same login and section
   name (two sections on one login are two accounts). */
#define SIBLING_SOURCES							\
	"sources me JOIN sources o"					\
	"  ON o.protocol = me.protocol AND o.host = me.host COLLATE NOCASE" \
	"  AND o.port = me.port AND o.user = me.user AND o.id <> me.id"	\
	"  AND o.name IS me.name"

/* The other folders of source ?1's account, with messages. */
#define SIBLINGS							\
	"SELECT o.folder FROM " SIBLING_SOURCES				\
	" JOIN messages m ON m.source_id = o.id"			\
	" WHERE me.id = ?1 AND m.state = 1 "

int
seen_ident_siblings(struct seen_db *db, int64_t id, bool *any,
    struct mh_err *err)
{
	sqlite3_stmt	*s;
	int64_t		 one;

	*any = false;
	s = prep(db, "SELECT 1 FROM " SIBLING_SOURCES " WHERE me.id = ?1"
	    " LIMIT 1", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	if (first_id(db, s, &one, err) == -1)
		return -1;
	*any = one != 0;
	return 0;
}

/* The kept statements (seen_sqlite_kept): asked for every message. */
enum { KEPT_ELSEWHERE, KEPT_GM_ELSEWHERE };

/* Steps the kept statement s once: *folder is a new string of its first
   column, or NULL. */
static int
first_folder(struct seen_db *db, sqlite3_stmt *s, char **folder,
    struct mh_err *err)
{
	int	rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		*folder = xstrdup((const char *)sqlite3_column_text(s, 0) ?
		    (const char *)sqlite3_column_text(s, 0) : "");
	else if (rc != SQLITE_DONE)
		seen_sqlite_fail(db, err);
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int
seen_ident_set_gm(struct seen_db *db, int64_t id, uint32_t uidvalidity,
    const char *const *uids, const uint64_t *gm, size_t n,
    struct mh_err *err)
{
	sqlite3_stmt	*s = NULL;
	size_t		 i;
	int		 rc = -1;

	if (n == 0)
		return 0;
	if (seen_sqlite_begin(db, err) != 0)
		return -1;
	s = prep(db, "UPDATE messages SET gm_msgid = ?4 WHERE source_id = ?1"
	    " AND uidvalidity = ?2 AND uid = ?3", err);
	if (s == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, uidvalidity);
		sqlite3_bind_text(s, 3, uids[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)gm[i]);
		if (sqlite3_step(s) != SQLITE_DONE) {
			seen_sqlite_fail(db, err);
			goto out;
		}
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return seen_sqlite_end(db, rc, err);
}

int
seen_ident_gm_elsewhere(struct seen_db *db, int64_t id, uint64_t gm_msgid,
    char **folder, struct mh_err *err)
{
	sqlite3_stmt	*s;

	*folder = NULL;
	if ((s = seen_sqlite_kept(db, KEPT_GM_ELSEWHERE, SIBLINGS
	    "AND m.gm_msgid = ?2 LIMIT 1", err)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)gm_msgid);
	return first_folder(db, s, folder, err);
}

int
seen_ident_elsewhere(struct seen_db *db, int64_t id, const char *message_id,
    uint64_t size, const char *digest, char **folder, struct mh_err *err)
{
	sqlite3_stmt	*s;

	*folder = NULL;
	if (digest == NULL)
		return 0;
	/* (message_id, size, digest): the messages_content index; the
	   same digest means the same bytes, the same Message-ID or none */
	s = seen_sqlite_kept(db, KEPT_ELSEWHERE, SIBLINGS "AND m.message_id"
	    " IS ?4 AND m.size = ?2 AND m.digest = ?3 LIMIT 1", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)size);
	sqlite3_bind_text(s, 3, digest, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, message_id, -1, SQLITE_STATIC);
	return first_folder(db, s, folder, err);
}
