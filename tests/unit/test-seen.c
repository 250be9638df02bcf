/* test-seen.c -- the state database: fetch/state/seen.c */
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/state/seen.h"
#include "fetch/state/seen_ident.h"
#include "tests/unit/check.h"

static char	tmpdir[64];
static char	dbpath[128];

static const struct seen_source src_a = {
	"imap", "mail.example.org", 993, "alice", "INBOX",
};
static const struct seen_source src_b = {
	"pop3", "pop.example.org", 995, "bob", "",
};

static void
setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test-seen.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(dbpath, sizeof dbpath, "%s/state/sub/state.db", tmpdir);
}

static void
teardown(void)
{
	char	cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static struct seen_db *
open_ok(void)
{
	struct seen_db	*db = NULL;
	struct mh_err	 err;

	mh_err_clear(&err);
	if (seen_open(dbpath, &db, &err) != 0) {
		fprintf(stderr, "  seen_open: %s\n", err.msg);
		CHECK(0);
		teardown();
		_exit(1);
	}
	return db;
}

/* Runs sql on the file directly, behind seen.c's back. */
static void
raw_exec(const char *sql)
{
	sqlite3	*db;
	char	*msg = NULL;

	CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "  %s: %s\n", sql, msg);
		CHECK(0);
	}
	sqlite3_free(msg);
	sqlite3_close(db);
}

static int
raw_int(const char *sql)
{
	sqlite3		*db;
	sqlite3_stmt	*s;
	int		 v = -1;

	CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static int
raw_text(const char *sql, char *buf, size_t size)
{
	sqlite3		*db;
	sqlite3_stmt	*s;
	int		 ok = 0;

	CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
		snprintf(buf, size, "%s", sqlite3_column_text(s, 0));
		ok = 1;
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return ok;
}

static struct seen_msg
msg(const char *uid, uint32_t uv, uint64_t size, const char *mid,
    const char *digest)
{
	struct seen_msg	m = { uid, uv, size, mid, digest };

	return m;
}

static void
t_modes(void)
{
	struct seen_db	*db;
	struct mh_err	 err;
	struct stat	 st;
	struct seen_msg	 m = msg("1", 7, 10, "<a@b>", "d1");
	char		 path[160];
	int64_t		 id;

	setup();
	umask(0277);		/* would give 0500 and 0400 */
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_record_delivered(db, id, &m, &err) == 0);
	CHECK(stat(dbpath, &st) == 0);
	CHECK((st.st_mode & 07777) == 0600);
	snprintf(path, sizeof path, "%s-wal", dbpath);
	CHECK(stat(path, &st) == 0);
	CHECK((st.st_mode & 07777) == 0600);
	snprintf(path, sizeof path, "%s/state/sub", tmpdir);
	CHECK(stat(path, &st) == 0);
	CHECK((st.st_mode & 07777) == 0700);
	CHECK(raw_text("PRAGMA journal_mode", path, sizeof path));
	CHECK_STR(path, "wal");
	seen_close(db);
	umask(022);
	CHECK(raw_int("SELECT count(*) FROM messages") == 1);
	teardown();
}

static void
t_reopen_keeps_data(void)
{
	struct seen_db		*db;
	struct seen_set		*set;
	struct mh_err		 err;
	struct seen_msg		 m = msg("42", 0, 100, NULL, "dd");
	const struct seen_entry	*e;
	int64_t			 id, id2;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	CHECK(seen_record_delivered(db, id, &m, &err) == 0);
	seen_close(db);
	db = open_ok();
	CHECK(seen_source_id(db, &src_b, "b", &id2, &err) == 0);
	CHECK(id == id2);
	CHECK(seen_load(db, id, 0, &set, &err) == 0);
	CHECK(seen_set_count(set) == 1);
	e = seen_lookup(set, "42");
	CHECK(e != NULL && e->state == SEEN_DELIVERED);
	CHECK(e != NULL && e->delivered_at > 0 && !e->deleted);
	CHECK(seen_lookup(set, "43") == NULL);
	seen_set_free(set);
	seen_close(db);
	teardown();
}

static void
t_migration(void)
{
	struct seen_db	*db;
	int		 v;

	setup();
	db = open_ok();
	seen_close(db);
	v = raw_int("PRAGMA user_version");
	CHECK(v >= 2);
	CHECK(raw_int("SELECT count(*) FROM sqlite_master WHERE "
	    "name = 'messages_content'") == 1);
	/* Back to version 1: reopening must migrate it forward. */
	CHECK(raw_int("SELECT count(*) FROM sqlite_master WHERE "
	    "name = 'delivered_to'") == 1);
	raw_exec("ALTER TABLE folders DROP COLUMN remap;");
	raw_exec("DROP TRIGGER messages_unsettle_del;"
	    "DROP TRIGGER messages_unsettle_upd;"
	    "ALTER TABLE sources DROP COLUMN settled_n;"
	    "ALTER TABLE sources DROP COLUMN settled_sha;");
	raw_exec("DROP INDEX messages_gm;"
	    "ALTER TABLE messages DROP COLUMN gm_msgid;");
	raw_exec("ALTER TABLE messages DROP COLUMN first_failed;"
	    "ALTER TABLE messages DROP COLUMN gone_at;"
	    "ALTER TABLE sources DROP COLUMN pruned;"
	    "DROP INDEX messages_uid;"
	    "DROP TABLE intents; DROP TABLE delivered_to; DROP INDEX messages_content;"
	    "DROP INDEX messages_state; DROP INDEX runs_source;"
	    "PRAGMA user_version = 1");
	CHECK(raw_int("PRAGMA user_version") == 1);
	db = open_ok();
	seen_close(db);
	CHECK(raw_int("PRAGMA user_version") == v);
	CHECK(raw_int("SELECT count(*) FROM pragma_table_info('folders') "
	    "WHERE name = 'remap'") == 1);
	CHECK(raw_int("SELECT count(*) FROM sqlite_master WHERE "
	    "name = 'messages_content'") == 1);
	CHECK(raw_int("SELECT count(*) FROM sqlite_master WHERE "
	    "name = 'delivered_to'") == 1);
	CHECK(raw_int("SELECT count(*) FROM sqlite_master WHERE "
	    "name = 'intents'") == 1);
	CHECK(raw_int("SELECT count(*) FROM pragma_table_info('messages')"
	    " WHERE name = 'first_failed'") == 1);
	CHECK(raw_int("SELECT count(*) FROM pragma_table_info('messages')"
	    " WHERE name = 'gm_msgid'") == 1);
	CHECK(raw_int("SELECT count(*) FROM sqlite_master WHERE "
	    "name = 'messages_uid'") == 1);
	CHECK(raw_int("SELECT count(*) FROM pragma_table_info('messages')"
	    " WHERE name = 'gone_at'") == 1);
	CHECK(raw_int("SELECT count(*) FROM pragma_table_info('sources')"
	    " WHERE name = 'settled_sha'") == 1);
	CHECK(raw_int("SELECT count(*) FROM sqlite_master WHERE "
	    "name = 'messages_unsettle_del'") == 1);
	teardown();
}

static void
write_garbage(size_t n)
{
	char	*buf = malloc(n);
	FILE	*f;
	size_t	 i;

	for (i = 0; i < n; i++)
		buf[i] = (char)(i * 7 + 13);
	f = fopen(dbpath, "w");
	CHECK(f != NULL);
	if (f != NULL) {
		CHECK(fwrite(buf, 1, n, f) == n);
		fclose(f);
	}
	free(buf);
}

static void
check_refused(const char *word)
{
	struct seen_db	*db = NULL;
	struct mh_err	 err;

	mh_err_clear(&err);
	CHECK(seen_open(dbpath, &db, &err) == -1);
	CHECK(db == NULL);
	CHECK(err.cls == MH_ERR_LOCAL);
	CHECK_CONTAINS(err.msg, word);
	CHECK_CONTAINS(err.msg, "mark-seen");
	CHECK_CONTAINS(err.msg, dbpath);
	if (getenv("SEEN_TEST_VERBOSE") != NULL)
		fprintf(stderr, "  refused: %s\n", err.msg);
	seen_close(db);
}

static void
t_corrupt_refused(void)
{
	struct stat	st;

	setup();
	seen_close(open_ok());
	write_garbage(8192);
	check_refused("corrupt");
	/* Refused, not recreated: the garbage is still there. */
	CHECK(stat(dbpath, &st) == 0 && st.st_size == 8192);
	write_garbage(50);
	check_refused("corrupt");
	teardown();
}

static void
damaged_refused(int scribble)
{
	struct seen_db	*db;
	struct mh_err	 err;
	struct stat	 st;
	sqlite3		*raw;
	char		*sql;
	int64_t		 id;
	int		 i;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	seen_close(db);
	/* Enough rows for many pages, all in the main file, then cut it. */
	CHECK(sqlite3_open(dbpath, &raw) == SQLITE_OK);
	CHECK(sqlite3_exec(raw, "PRAGMA journal_mode = DELETE; BEGIN", NULL,
	    NULL, NULL) == SQLITE_OK);
	for (i = 0; i < 300; i++) {
		sql = sqlite3_mprintf("INSERT INTO messages (source_id, uid, "
		    "state, first_seen, updated, last_error) VALUES (%lld, "
		    "'%d', 1, 0, 0, printf('%%.600c', 'x'))", (long long)id,
		    i);
		CHECK(sqlite3_exec(raw, sql, NULL, NULL, NULL) == SQLITE_OK);
		sqlite3_free(sql);
	}
	CHECK(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(raw);
	CHECK(stat(dbpath, &st) == 0 && st.st_size > 100000);
	if (scribble) {
		/* Garbage over a page in the middle: only a check sees it. */
		char	junk[4096];
		int	fd = open(dbpath, O_WRONLY);

		memset(junk, 0x5a, sizeof junk);
		CHECK(fd != -1);
		CHECK(pwrite(fd, junk, 1000, 20 * 4096 + 8) == 1000);
		close(fd);
	} else
		CHECK(truncate(dbpath, st.st_size / 2) == 0);
	check_refused("corrupt");
	teardown();
}

static void
t_truncated_refused(void)
{
	damaged_refused(0);
}

static void
t_scribbled_refused(void)
{
	damaged_refused(1);
}

static void
t_newer_refused(void)
{
	setup();
	seen_close(open_ok());
	raw_exec("PRAGMA user_version = 999");
	check_refused("newer");
	teardown();
}

static void
t_record_states(void)
{
	struct seen_db		*db;
	struct seen_set		*set;
	struct mh_err		 err;
	const struct seen_entry	*e;
	struct seen_msg		 d = msg("1", 5, 10, "<1@x>", "aa");
	struct seen_msg		 f = msg("2", 5, 20, "<2@x>", "bb");
	struct seen_msg		 t = msg("3", 5, 30, NULL, "cc");
	struct seen_msg		 s = msg("4", 5, 40, NULL, NULL);
	int64_t			 id;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_record_delivered(db, id, &d, &err) == 0);
	CHECK(seen_record_failed(db, id, &f, true, "550 no such user", &err)
	    == 0);
	CHECK(seen_record_failed(db, id, &f, true, "550 still no", &err)
	    == 0);
	CHECK(seen_record_failed(db, id, &t, false, "451 later", &err) == 0);
	CHECK(seen_record_skipped(db, id, &s, "too big", &err) == 0);
	/* A failure never downgrades a delivered record. */
	CHECK(seen_record_failed(db, id, &d, true, "550 late", &err) == 0);
	CHECK(seen_record_deleted(db, id, "1", &err) == 0);
	CHECK(seen_load(db, id, 5, &set, &err) == 0);
	CHECK(seen_set_count(set) == 4);
	e = seen_lookup(set, "1");
	CHECK(e != NULL && e->state == SEEN_DELIVERED && e->deleted);
	e = seen_lookup(set, "2");
	CHECK(e != NULL && e->state == SEEN_FAILED && e->tries == 2);
	CHECK(e != NULL && e->delivered_at == 0 && !e->deleted);
	e = seen_lookup(set, "3");
	CHECK(e != NULL && e->state == SEEN_TEMPFAIL && e->tries == 1);
	e = seen_lookup(set, "4");
	CHECK(e != NULL && e->state == SEEN_SKIPPED);
	CHECK(seen_lookup(set, "5") == NULL);
	seen_set_free(set);
	seen_close(db);
	teardown();
}

/* Recipients that have a partly delivered message, kept with it. */
static void
t_partial(void)
{
	static const char *const first[] = { "a@x" };
	static const char *const second[] = { "b@x", "a@x" };
	struct seen_db		*db;
	struct seen_set		*set;
	struct mh_err		 err;
	const struct seen_entry	*e;
	struct seen_msg		 m = msg("9", 5, 10, "<9@x>", "ee");
	struct seen_msg		 o = msg("10", 5, 10, "<10@x>", "ff");
	const char		*present[] = { "10" };
	char			**v;
	size_t			 n;
	int64_t			 id;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_delivered_to(db, id, &m, &v, &n, &err) == 0);
	CHECK(n == 0 && v == NULL);
	CHECK(seen_record_partial(db, id, &m, false, "452 full", first, 1,
	    &err) == 0);
	CHECK(seen_record_partial(db, id, &m, true, "550 gone", second, 2,
	    &err) == 0);
	CHECK(seen_delivered_to(db, id, &m, &v, &n, &err) == 0);
	CHECK(n == 2);
	if (n == 2) {
		CHECK_STR(v[0], "a@x");
		CHECK_STR(v[1], "b@x");
	}
	seen_strv_free(v, n);
	/* another message, another uidvalidity: nothing */
	CHECK(seen_delivered_to(db, id, &o, &v, &n, &err) == 0);
	CHECK(n == 0);
	CHECK(seen_load(db, id, 5, &set, &err) == 0);
	e = seen_lookup(set, "9");
	CHECK(e != NULL && e->state == SEEN_FAILED && e->tries == 2);
	seen_set_free(set);
	/* retried and gone from the server: the recipients go with it */
	CHECK(seen_retry(db, id, &(int){0}, &err) == 0);
	CHECK(seen_prune(db, id, present, 1, &err) == 0);
	seen_close(db);
	CHECK(raw_int("SELECT count(*) FROM delivered_to") == 0);
	teardown();
}

static void
t_content_across_uidvalidity(void)
{
	struct seen_db		*db;
	struct seen_set		*set;
	struct mh_err		 err;
	const struct seen_entry	*e;
	struct seen_msg		 a = msg("7", 100, 1234, "<a@x>", "d-a");
	struct seen_msg		 b = msg("8", 100, 99, NULL, "d-b");
	struct seen_msg		 c = msg("9", 100, 55, "<c@x>", "d-c");
	int64_t			 id;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_record_delivered(db, id, &a, &err) == 0);
	CHECK(seen_record_delivered(db, id, &b, &err) == 0);
	CHECK(seen_record_failed(db, id, &c, false, "451", &err) == 0);
	/* UIDVALIDITY changed: uids mean nothing, content still does. */
	CHECK(seen_load(db, id, 200, &set, &err) == 0);
	CHECK(seen_lookup(set, "7") == NULL);
	e = seen_lookup_content(set, "<a@x>", 1234, "d-a");
	CHECK(e != NULL && e->state == SEEN_DELIVERED);
	CHECK(seen_lookup_content(set, NULL, 1234, "d-a") != NULL);
	CHECK(seen_lookup_content(set, "<a@x>", 1235, "d-a") == NULL);
	CHECK(seen_lookup_content(set, "<a@x>", 1234, "d-z") == NULL);
	CHECK(seen_lookup_content(set, "<z@x>", 1234, "d-a") == NULL);
	CHECK(seen_lookup_content(set, NULL, 99, "d-b") != NULL);
	CHECK(seen_lookup_content(set, "<b@x>", 99, "d-b") == NULL);
	/* Only delivered records count, and size alone is no identity. */
	CHECK(seen_lookup_content(set, "<c@x>", 55, "d-c") == NULL);
	CHECK(seen_lookup_content(set, NULL, 99, NULL) == NULL);
	seen_set_free(set);
	/* Same UIDVALIDITY: found by uid too. */
	CHECK(seen_load(db, id, 100, &set, &err) == 0);
	CHECK(seen_lookup(set, "7") != NULL);
	CHECK(seen_lookup(set, "9") != NULL);
	seen_set_free(set);
	seen_close(db);
	teardown();
}

static void
t_retry_forget_prune(void)
{
	struct seen_db		*db;
	struct seen_set		*set;
	struct mh_err		 err;
	const struct seen_entry	*e;
	struct seen_msg		 m1 = msg("u1", 0, 1, NULL, "1");
	struct seen_msg		 m2 = msg("u2", 0, 2, NULL, "2");
	struct seen_msg		 m3 = msg("u3", 0, 3, NULL, "3");
	struct seen_msg		 m4 = msg("u4", 0, 4, NULL, "4");
	const char		*present[] = { "u1" };
	int64_t			 id, other, run, x;
	uint32_t		 uv, last;
	int			 n;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	CHECK(seen_source_id(db, &src_a, "a", &other, &err) == 0);
	CHECK(seen_record_delivered(db, id, &m1, &err) == 0);
	CHECK(seen_record_delivered(db, id, &m2, &err) == 0);
	CHECK(seen_record_failed(db, id, &m3, true, "554 spam", &err) == 0);
	CHECK(seen_record_failed(db, id, &m4, false, "421", &err) == 0);
	CHECK(seen_record_delivered(db, other, &m1, &err) == 0);
	/* Prune: u2 and u4 are gone, the permanent failure u3 stays. */
	CHECK(seen_prune(db, id, present, 1, &err) == 0);
	CHECK(seen_load(db, id, 0, &set, &err) == 0);
	CHECK(seen_set_count(set) == 2);
	CHECK(seen_lookup(set, "u1") != NULL);
	CHECK(seen_lookup(set, "u2") == NULL);
	CHECK(seen_lookup(set, "u4") == NULL);
	e = seen_lookup(set, "u3");
	CHECK(e != NULL && e->state == SEEN_FAILED);
	seen_set_free(set);
	/* Retry: the permanent failure is retried next pass. */
	CHECK(seen_retry(db, id, &n, &err) == 0);
	CHECK(n == 1);
	CHECK(seen_retry(db, id, &n, &err) == 0);
	CHECK(n == 0);
	CHECK(seen_load(db, id, 0, &set, &err) == 0);
	e = seen_lookup(set, "u3");
	CHECK(e != NULL && e->state == SEEN_TEMPFAIL);
	seen_set_free(set);
	/* Forget drops the source, its records, runs and folder. */
	CHECK(seen_run_begin(db, id, &run, &err) == 0);
	CHECK(seen_folder_set(db, id, 9, 10, false, &err) == 0);
	CHECK(seen_forget(db, id, &err) == 0);
	CHECK(seen_source_by_name(db, "b", &x, &err) == -1);
	CHECK(err.cls == MH_ERR_NONE);
	CHECK(seen_folder_get(db, id, &uv, &last, NULL, &err) == 0);
	CHECK(uv == 0 && last == 0);
	CHECK(seen_load(db, id, 0, &set, &err) == 0);
	CHECK(seen_set_count(set) == 0);
	CHECK(seen_lookup(set, "u1") == NULL);
	seen_set_free(set);
	/* The other source is untouched. */
	CHECK(seen_load(db, other, 0, &set, &err) == 0);
	CHECK(seen_set_count(set) == 1);
	seen_set_free(set);
	seen_close(db);
	CHECK(raw_int("SELECT count(*) FROM runs") == 0);
	CHECK(raw_int("SELECT count(*) FROM sources") == 1);
	teardown();
}

static void
t_prune_keeps_old_uidvalidity(void)
{
	struct seen_db	*db;
	struct seen_set	*set;
	struct mh_err	 err;
	struct seen_msg	 old = msg("5", 1, 10, "<o@x>", "do");
	struct seen_msg	 cur = msg("5", 2, 11, "<n@x>", "dn");
	const char	*present[] = { "6" };
	int64_t		 id;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_record_delivered(db, id, &old, &err) == 0);
	CHECK(seen_folder_set(db, id, 2, 5, false, &err) == 0);
	CHECK(seen_record_delivered(db, id, &cur, &err) == 0);
	CHECK(seen_prune(db, id, present, 1, &err) == 0);
	CHECK(seen_load(db, id, 2, &set, &err) == 0);
	CHECK(seen_lookup(set, "5") == NULL);
	CHECK(seen_lookup_content(set, "<o@x>", 10, "do") != NULL);
	seen_set_free(set);
	seen_close(db);
	teardown();
}

struct status_seen {
	int	sources, failures;
	char	names[4][32];
	char	error[128];
	char	result[16];
	unsigned delivered, failed_total;
	uint64_t delivered_total, bytes;
	int	tries;
};

static void
status_src(const struct seen_status *st, void *arg)
{
	struct status_seen *ss = arg;

	if (ss->sources < 4)
		snprintf(ss->names[ss->sources], sizeof ss->names[0], "%s",
		    st->name ? st->name : "(null)");
	ss->sources++;
	if (st->name != NULL && strcmp(st->name, "a") == 0) {
		snprintf(ss->result, sizeof ss->result, "%s",
		    st->last_result ? st->last_result : "(null)");
		ss->delivered = st->last.delivered;
		ss->bytes = st->last.bytes;
		ss->delivered_total = st->delivered_total;
		ss->failed_total = st->failed_total;
		CHECK(st->last_start > 0 && st->last_end >= st->last_start);
		CHECK_STR(st->host, "mail.example.org");
		CHECK(st->port == 993);
	}
	if (st->name != NULL && strcmp(st->name, "b") == 0) {
		CHECK(st->last_result == NULL);
		CHECK(st->last_start == 0);
	}
}

static void
status_fail(const struct seen_status *st, const struct seen_failure *f,
    void *arg)
{
	struct status_seen *ss = arg;

	ss->failures++;
	CHECK_STR(st->name, "a");
	CHECK_STR(f->uid, "66");
	CHECK(f->size == 600);
	snprintf(ss->error, sizeof ss->error, "%s", f->error);
	ss->tries = f->tries;
}

static void
t_runs_and_status(void)
{
	struct seen_db		*db;
	struct mh_err		 err;
	struct status_seen	 ss;
	struct seen_run_counts	 c = { 0 };
	struct seen_msg		 ok = msg("65", 1, 500, "<ok@x>", "d1");
	struct seen_msg		 bad = msg("66", 1, 600, "<bad@x>", "d2");
	int64_t			 a, b, run;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &a, &err) == 0);
	CHECK(seen_source_id(db, &src_b, "b", &b, &err) == 0);
	CHECK(seen_run_begin(db, a, &run, &err) == 0);
	c.listed = 2;
	c.delivered = 1;
	c.failed = 1;
	c.bytes = 500;
	CHECK(seen_run_end(db, run, &c, "tempfail", "connection reset",
	    &err) == 0);
	CHECK(seen_run_begin(db, a, &run, &err) == 0);
	CHECK(seen_record_delivered(db, a, &ok, &err) == 0);
	CHECK(seen_record_failed(db, a, &bad, true,
	    "550 5.1.1 <x@y>: Recipient address rejected", &err) == 0);
	c.delivered = 7;
	c.bytes = 1100;
	CHECK(seen_run_end(db, run, &c, "ok", NULL, &err) == 0);
	memset(&ss, 0, sizeof ss);
	CHECK(seen_status(db, status_src, status_fail, &ss, &err) == 0);
	CHECK(ss.sources == 2);
	CHECK_STR(ss.names[0], "a");
	CHECK_STR(ss.names[1], "b");
	CHECK_STR(ss.result, "ok");
	CHECK(ss.delivered == 7 && ss.bytes == 1100);
	CHECK(ss.delivered_total == 1 && ss.failed_total == 1);
	CHECK(ss.failures == 1);
	CHECK_STR(ss.error, "550 5.1.1 <x@y>: Recipient address rejected");
	CHECK(ss.tries == 1);
	seen_close(db);
	teardown();
}

static void
t_rename_keeps_id(void)
{
	struct seen_db	*db;
	struct mh_err	 err;
	int64_t		 id1, id2, x;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "work", &id1, &err) == 0);
	CHECK(seen_source_by_name(db, "work", &x, &err) == 0 && x == id1);
	CHECK(seen_source_id(db, &src_a, "office", &id2, &err) == 0);
	CHECK(id1 == id2);
	CHECK(seen_source_by_name(db, "office", &x, &err) == 0 && x == id1);
	CHECK(seen_source_by_name(db, "work", &x, &err) == -1);
	CHECK(err.cls == MH_ERR_NONE);
	/* Another folder of the same account is another source. */
	{
		struct seen_source other = src_a;

		other.folder = "Archive";
		CHECK(seen_source_id(db, &other, "office", &x, &err) == 0);
		CHECK(x != id1);
	}
	seen_close(db);
	teardown();
}

/* PRAGMA data_version of a second connection: it changes when any other
   connection commits a write. */
static int64_t
data_version(sqlite3 *peek)
{
	sqlite3_stmt	*s = NULL;
	int64_t		 v = -1;

	if (sqlite3_prepare_v2(peek, "PRAGMA data_version", -1, &s, NULL) ==
	    SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/*
 * A poll with nothing new writes nothing to find its source row: the
 * name and spelling it has already are not written again (no commit, no
 * fdatasync).  A row that must become the one its name finds still is.
 */
static void
t_source_id_unchanged_writes_nothing(void)
{
	struct seen_db		*db;
	struct seen_source	 moved = src_a;
	struct mh_err		 err;
	sqlite3			*peek = NULL;
	int64_t			 id, id2, other, x, v;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(sqlite3_open_v2(dbpath, &peek, SQLITE_OPEN_READONLY, NULL) ==
	    SQLITE_OK);
	v = data_version(peek);
	CHECK(v != -1);
	CHECK(seen_source_id(db, &src_a, "a", &id2, &err) == 0);
	CHECK(id2 == id);
	CHECK(seen_ident_find(db, &src_a, "a", &id2, &err) == 0);
	CHECK(id2 == id);
	CHECK(data_version(peek) == v);
	/* the account moved to another server and back: the old row must
	   become the one "a" finds again */
	moved.host = "imap.example.net";
	CHECK(seen_source_id(db, &moved, "a", &other, &err) == 0);
	CHECK(other != id);
	CHECK(seen_source_by_name(db, "a", &x, &err) == 0 && x == other);
	sleep(1);		/* "named" is in seconds */
	CHECK(seen_source_id(db, &src_a, "a", &id2, &err) == 0);
	CHECK(id2 == id);
	CHECK(seen_source_by_name(db, "a", &x, &err) == 0 && x == id);
	/* another spelling of the host is written */
	v = data_version(peek);
	moved = src_a;
	moved.host = "MAIL.example.org";
	CHECK(seen_ident_find(db, &moved, "a", &id2, &err) == 0);
	CHECK(id2 == id);
	CHECK(data_version(peek) != v);
	sqlite3_close(peek);
	seen_close(db);
	teardown();
}

/* SQLite's fdatasync calls, counted: this definition interposes libc's
   for libsqlite3 (the executable's symbol comes first). */
static unsigned	datasyncs;

int	fdatasync(int);

int
fdatasync(int fd)
{
	datasyncs++;
	return (int)syscall(SYS_fdatasync, fd);
}

/*
 * The run log is written at synchronous = NORMAL (no fdatasync of its
 * own); every write after it is FULL again.
 */
static void
t_run_log_not_synced(void)
{
	struct seen_db		*db;
	struct seen_run_counts	 c;
	struct mh_err		 err;
	int64_t			 id, run;

	setup();
	db = open_ok();
	memset(&c, 0, sizeof c);
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_folder_set(db, id, 7, 1, false, &err) == 0);
	datasyncs = 0;
	CHECK(seen_run_begin(db, id, &run, &err) == 0);
	CHECK(seen_run_end(db, run, &c, "ok", NULL, &err) == 0);
	CHECK(datasyncs == 0);
	CHECK(seen_folder_set(db, id, 7, 2, false, &err) == 0);
	CHECK(datasyncs >= 1);
	seen_close(db);
	teardown();
}

/*
 * Gmail: a pass's X-GM-MSGIDs are recorded in one transaction (one disk
 * sync, not one per message), and another label of the account finds
 * the message by them.
 */
static void
t_gm_one_sync(void)
{
	static const struct seen_source	 label = {
		"imap", "mail.example.org", 993, "alice", "Work",
	};
	struct seen_db		*db;
	struct mh_err		 err;
	struct seen_msg		 m[3] = {
		msg("1", 7, 10, NULL, "d1"), msg("2", 7, 20, NULL, "d2"),
		msg("3", 7, 30, NULL, "d3"),
	};
	const char *const	 uids[] = { "1", "2", "3" };
	const uint64_t		 gm[] = { 101, 102, 103 };
	char			*folder = NULL;
	int64_t			 inbox, work;
	int			 i;

	setup();
	db = open_ok();
	mh_err_clear(&err);
	CHECK(seen_source_id(db, &src_a, "a", &inbox, &err) == 0);
	CHECK(seen_source_id(db, &label, "a", &work, &err) == 0);
	for (i = 0; i < 3; i++)
		CHECK(seen_record_delivered(db, work, &m[i], &err) == 0);
	datasyncs = 0;
	CHECK(seen_ident_set_gm(db, work, 7, uids, gm, 0, &err) == 0);
	CHECK(datasyncs == 0);
	CHECK(seen_ident_set_gm(db, work, 7, uids, gm, 3, &err) == 0);
	CHECK(datasyncs == 1);
	CHECK(raw_int("SELECT count(*) FROM messages WHERE gm_msgid > 100")
	    == 3);
	CHECK(seen_ident_gm_elsewhere(db, inbox, 102, &folder, &err) == 0);
	CHECK(folder != NULL && strcmp(folder, "Work") == 0);
	free(folder);
	CHECK(seen_ident_gm_elsewhere(db, inbox, 999, &folder, &err) == 0);
	CHECK(folder == NULL);
	seen_close(db);
	teardown();
}

static void
t_folder_state(void)
{
	struct seen_db	*db;
	struct mh_err	 err;
	uint32_t	 uv = 1, last = 1;
	bool		 remap = true;
	int64_t		 id;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_folder_get(db, id, &uv, &last, &remap, &err) == 0);
	CHECK(!remap);
	CHECK(uv == 0 && last == 0);
	CHECK(seen_folder_set(db, id, 4000000000u, 17, false, &err) == 0);
	CHECK(seen_folder_set(db, id, 4000000000u, 18, false, &err) == 0);
	CHECK(seen_folder_get(db, id, &uv, &last, &remap, &err) == 0);
	CHECK(uv == 4000000000u && last == 18 && !remap);
	/* a UIDVALIDITY change not matched through is kept with it */
	CHECK(seen_folder_set(db, id, 5, 3, true, &err) == 0);
	CHECK(seen_folder_get(db, id, &uv, &last, &remap, &err) == 0);
	CHECK(uv == 5 && last == 3 && remap);
	CHECK(seen_folder_set(db, id, 5, 9, false, &err) == 0);
	CHECK(seen_folder_get(db, id, &uv, &last, &remap, &err) == 0);
	CHECK(uv == 5 && last == 9 && !remap);
	seen_close(db);
	teardown();
}

#define BIG	200000

static void
t_200k_records(void)
{
	struct seen_db		*db;
	struct seen_set		*set;
	struct mh_err		 err;
	const struct seen_entry	*e;
	sqlite3			*raw;
	sqlite3_stmt		*s;
	char			 uid[32], mid[48], dg[32];
	int64_t			 id;
	int			 i, found = 0, cfound = 0;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	seen_close(db);
	CHECK(sqlite3_open(dbpath, &raw) == SQLITE_OK);
	sqlite3_exec(raw, "BEGIN", NULL, NULL, NULL);
	CHECK(sqlite3_prepare_v2(raw, "INSERT INTO messages (source_id, uid,"
	    " uidvalidity, size, message_id, digest, state, first_seen,"
	    " delivered_at, updated) VALUES (?1, ?2, 0, ?3, ?4, ?5, 1, 1, 1,"
	    " 1)", -1, &s, NULL) == SQLITE_OK);
	for (i = 0; i < BIG; i++) {
		snprintf(uid, sizeof uid, "UID%08d", i);
		snprintf(mid, sizeof mid, "<%d@example.org>", i);
		snprintf(dg, sizeof dg, "%016x", i * 2654435761u);
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, uid, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(s, 3, 1000 + i % 7);
		sqlite3_bind_text(s, 4, mid, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 5, dg, -1, SQLITE_TRANSIENT);
		CHECK(sqlite3_step(s) == SQLITE_DONE);
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	CHECK(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(raw);

	db = open_ok();
	CHECK(seen_load(db, id, 0, &set, &err) == 0);
	CHECK(seen_set_count(set) == BIG);
	for (i = 0; i < BIG; i++) {
		snprintf(uid, sizeof uid, "UID%08d", i);
		if ((e = seen_lookup(set, uid)) != NULL &&
		    e->state == SEEN_DELIVERED)
			found++;
		snprintf(uid, sizeof uid, "NEW%08d", i);
		if (seen_lookup(set, uid) != NULL)
			found = -BIG;
		snprintf(mid, sizeof mid, "<%d@example.org>", i);
		snprintf(dg, sizeof dg, "%016x", i * 2654435761u);
		if (seen_lookup_content(set, mid, 1000 + i % 7, dg) != NULL)
			cfound++;
	}
	CHECK(found == BIG);
	CHECK(cfound == BIG);
	seen_set_free(set);
	seen_close(db);
	teardown();
}

/*
 * A child process that holds the state's write lock (BEGIN EXCLUSIVE)
 * for ms milliseconds, then ends its transaction; returns once it holds
 * the lock.  Its pid (the caller waits for it).
 */
static pid_t
hold_lock(unsigned ms)
{
	int	fds[2];
	char	c = 0;
	pid_t	pid;

	CHECK(pipe(fds) == 0);
	if ((pid = fork()) == 0) {
		sqlite3 *raw;

		close(fds[0]);
		if (sqlite3_open(dbpath, &raw) != SQLITE_OK ||
		    sqlite3_exec(raw, "BEGIN EXCLUSIVE", NULL, NULL, NULL) !=
		    SQLITE_OK)
			_exit(1);
		if (write(fds[1], "x", 1) != 1)
			_exit(1);
		usleep(ms * 1000);
		sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(raw);
		_exit(0);
	}
	close(fds[1]);
	CHECK(pid > 0);
	CHECK(read(fds[0], &c, 1) == 1 && c == 'x');
	close(fds[0]);
	return pid;
}

/* Another process holds the write lock past our busy timeout. */
static void
t_locked_by_other(void)
{
	struct seen_db	*db;
	struct mh_err	 err;
	struct seen_msg	 m = msg("1", 0, 1, NULL, "x");
	int64_t		 id, t0;
	int		 status;
	pid_t		 pid;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	seen_close(db);		/* the child inherits no handle */
	pid = hold_lock(3000);
	db = open_ok();		/* opening only reads */
	seen_set_busy_timeout(db, 200);
	mh_err_clear(&err);
	t0 = now_ms();
	CHECK(seen_record_delivered(db, id, &m, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_STR(err.msg, "state database is locked by another process");
	CHECK(now_ms() - t0 < 2500);	/* it gave up, not waited it out */
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Once released, the same handle works again. */
	CHECK(seen_record_delivered(db, id, &m, &err) == 0);
	seen_close(db);
	teardown();
}

/*
 * A write that finds another process's transaction waits for it and
 * goes on once it ends (the busy handler tries again, many times: the
 * other holds the lock for 300 ms), within the timeout.
 */
static void
t_waits_for_other(void)
{
	struct seen_db	*db;
	struct mh_err	 err;
	struct seen_msg	 m = msg("1", 0, 1, NULL, "x");
	int64_t		 id;
	int		 status;
	pid_t		 pid;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	seen_close(db);
	pid = hold_lock(300);
	db = open_ok();
	mh_err_clear(&err);
	CHECK(seen_record_delivered(db, id, &m, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM messages") == 1);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	seen_close(db);
	teardown();
}

static void
count_intent(const struct seen_intent *in, void *arg)
{
	int	*n = arg;

	CHECK_STR(in->uid, "8");
	CHECK_STR(in->target, "box");
	CHECK(in->uidvalidity == 5 && in->at > 0);
	(*n)++;
}

static void
count_doubt(const struct seen_status *st, void *arg)
{
	unsigned	*n = arg;

	*n += st->in_doubt;
}

/*
 * An intent recorded before a delivery survives a crash (a reopen) and
 * marks the message in doubt; recording the outcome removes it.
 */
static void
t_intents(void)
{
	struct seen_db	*db;
	struct seen_set	*set;
	struct mh_err	 err;
	struct seen_msg	 a = msg("7", 5, 10, NULL, "d7");
	struct seen_msg	 b = msg("8", 5, 20, NULL, "d8");
	struct seen_msg	 c = msg("9", 5, 30, NULL, "d9");
	struct seen_msg	 old = msg("7", 4, 10, NULL, "d7");
	unsigned	 doubt = 0;
	int64_t		 id;
	int		 n = 0;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_intent_begin(db, id, &a, "box", &err) == 0);
	CHECK(seen_intent_begin(db, id, &b, "box", &err) == 0);
	CHECK(seen_intent_begin(db, id, &c, "other", &err) == 0);
	/* again, for another target: replaced, not added */
	CHECK(seen_intent_begin(db, id, &c, "box", &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM intents") == 3);
	seen_close(db);			/* the crash */

	db = open_ok();
	CHECK(seen_load(db, id, 5, &set, &err) == 0);
	CHECK(seen_in_doubt(set, "7") && seen_in_doubt(set, "8") &&
	    seen_in_doubt(set, "9"));
	CHECK(!seen_in_doubt(set, "6") && !seen_in_doubt(set, "10"));
	CHECK(seen_lookup(set, "7") == NULL);	/* no record yet */
	seen_set_free(set);
	/* another UIDVALIDITY's message of the same uid is not in doubt */
	CHECK(seen_load(db, id, 4, &set, &err) == 0);
	CHECK(!seen_in_doubt(set, old.uid));
	seen_set_free(set);

	/* delivered: gone; a permanent refusal: gone; temporary: stays */
	CHECK(seen_record_delivered(db, id, &a, &err) == 0);
	CHECK(seen_record_failed(db, id, &c, false, "421 later", &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM intents") == 2);
	CHECK(seen_record_failed(db, id, &c, true, "550 no", &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM intents") == 1);
	CHECK(seen_status(db, count_doubt, NULL, &doubt, &err) == 0);
	CHECK(doubt == 1);
	CHECK(seen_intents(db, id, count_intent, &n, &err) == 0);
	CHECK(n == 1);
	CHECK(seen_intent_clear(db, id, &b, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM intents") == 0);
	CHECK(raw_int("SELECT state FROM messages WHERE uid = '7'") ==
	    SEEN_DELIVERED);
	seen_close(db);
	teardown();
}

struct stuck_seen {
	unsigned	stuck_total, failed_total;
	int		failures, stuck;
	time_t		first_failed;
};

static void
stuck_src(const struct seen_status *st, void *arg)
{
	struct stuck_seen *ss = arg;

	ss->stuck_total += st->stuck_total;
	ss->failed_total += st->failed_total;
}

static void
stuck_fail(const struct seen_status *st, const struct seen_failure *f,
    void *arg)
{
	struct stuck_seen *ss = arg;

	(void)st;
	ss->failures++;
	if (f->stuck) {
		ss->stuck++;
		ss->first_failed = f->first_failed;
		CHECK_STR(f->uid, "t");
		CHECK_STR(f->error, "451 try later 5");
		CHECK(f->tries == SEEN_STUCK_TRIES);
	}
}

/* The entry of uid, copied out of a fresh load (state 0 when none). */
static struct seen_entry
entry_of(struct seen_db *db, int64_t id, const char *uid)
{
	struct seen_set		*set = NULL;
	const struct seen_entry	*e;
	struct seen_entry	 out;
	struct mh_err		 err;

	memset(&out, 0, sizeof out);
	mh_err_clear(&err);
	CHECK(seen_load(db, id, 0, &set, &err) == 0);
	if (set != NULL && (e = seen_lookup(set, uid)) != NULL)
		out = *e;
	seen_set_free(set);
	return out;
}

/*
 * A message that fails temporarily again and again: its failures are
 * counted from the first; SEEN_STUCK_TRIES of them within less than
 * SEEN_STUCK_SPAN do not make it stuck, spread over more they do; a
 * stuck one is tried only every SEEN_STUCK_RETRY; status lists it after
 * the refusals; retry counts afresh.
 */
static void
t_stuck(void)
{
	struct seen_db		*db;
	struct mh_err		 err;
	struct seen_msg		 t = msg("t", 0, 10, NULL, "dt");
	struct seen_msg		 p = msg("p", 0, 20, NULL, "dp");
	struct seen_entry	 e;
	struct stuck_seen	 ss;
	time_t			 now = time(NULL), first;
	char			 why[32];
	int64_t			 id;
	int			 i, n;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_record_failed(db, id, &p, true, "550 no", &err) == 0);
	for (i = 1; i <= SEEN_STUCK_TRIES; i++) {
		snprintf(why, sizeof why, "451 try later %d", i);
		CHECK(seen_record_failed(db, id, &t, false, why, &err) == 0);
	}
	e = entry_of(db, id, "t");
	CHECK(e.state == SEEN_TEMPFAIL && e.tries == SEEN_STUCK_TRIES);
	CHECK(e.first_failed >= now - 5 && e.first_failed <= e.last_tried);
	CHECK(!seen_stuck(&e));			/* all within a day */
	CHECK(seen_retry_due(&e, now));
	/* the first of them a day and more ago */
	raw_exec("UPDATE messages SET first_failed = first_failed - 90000"
	    " WHERE uid = 't'");
	e = entry_of(db, id, "t");
	first = e.first_failed;
	CHECK(seen_stuck(&e));
	CHECK(!seen_retry_due(&e, now));
	CHECK(!seen_retry_due(&e, e.last_tried + SEEN_STUCK_RETRY - 1));
	CHECK(seen_retry_due(&e, e.last_tried + SEEN_STUCK_RETRY));
	memset(&ss, 0, sizeof ss);
	CHECK(seen_status(db, stuck_src, stuck_fail, &ss, &err) == 0);
	CHECK(ss.stuck_total == 1 && ss.failed_total == 1);
	CHECK(ss.failures == 2 && ss.stuck == 1);
	CHECK(ss.first_failed == first);
	/* another failure keeps the first one's time */
	CHECK(seen_record_failed(db, id, &t, false, "451 again", &err) == 0);
	e = entry_of(db, id, "t");
	CHECK(e.first_failed == first && e.tries == SEEN_STUCK_TRIES + 1);
	/* retry: the refused one and the stuck one, counted afresh */
	CHECK(seen_retry(db, id, &n, &err) == 0);
	CHECK(n == 2);
	e = entry_of(db, id, "t");
	CHECK(e.state == SEEN_TEMPFAIL && e.tries == 0 &&
	    e.first_failed == 0);
	CHECK(!seen_stuck(&e));
	CHECK(seen_record_failed(db, id, &t, false, "451 once", &err) == 0);
	e = entry_of(db, id, "t");
	CHECK(e.tries == 1 && e.first_failed >= now);
	/* delivered at last: never stuck */
	CHECK(seen_record_delivered(db, id, &t, &err) == 0);
	e = entry_of(db, id, "t");
	CHECK(e.state == SEEN_DELIVERED && !seen_stuck(&e));
	seen_close(db);
	teardown();
}

/* prune drops the intents of messages gone from the server, forget all. */
static void
t_intents_prune_forget(void)
{
	struct seen_db		*db;
	struct mh_err		 err;
	struct seen_msg		 a = msg("1", 0, 10, NULL, "d1");
	struct seen_msg		 b = msg("2", 0, 20, NULL, "d2");
	const char *const	 present[] = { "2" };
	int64_t			 id;

	setup();
	db = open_ok();
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	CHECK(seen_intent_begin(db, id, &a, "t", &err) == 0);
	CHECK(seen_intent_begin(db, id, &b, "t", &err) == 0);
	CHECK(seen_prune(db, id, present, 1, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM intents") == 1);
	CHECK(raw_int("SELECT count(*) FROM intents WHERE uid = '2'") == 1);
	CHECK(seen_forget(db, id, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM intents") == 0);
	seen_close(db);
	teardown();
}

/*
 * Recording a deletion finds the message by (source_id, uid): without an
 * index on that, each one scans the source's rows (10k deletions took
 * 36 s).  The statements a pass runs per message use an index, none
 * scans the table.
 */
static void
t_statements_use_indexes(void)
{
	static const char *const names[] = {
		"deleted", "load-one", "delivered", "intent-load",
	};
	struct seen_db	*db;
	struct mh_err	 err;
	char		 plan[1024];
	size_t		 i;

	setup();
	db = open_ok();
	mh_err_clear(&err);
	CHECK(seen_explain(db, "deleted", plan, sizeof plan, &err) == 0);
	CHECK(strstr(plan, "USING INDEX messages_uid (source_id=? AND uid=?)")
	    != NULL || strstr(plan, "USING COVERING INDEX messages_uid "
	    "(source_id=? AND uid=?)") != NULL);
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		CHECK(seen_explain(db, names[i], plan, sizeof plan, &err) ==
		    0);
		if (strstr(plan, "SCAN messages") != NULL ||
		    strstr(plan, "SCAN intents") != NULL) {
			fprintf(stderr, "  %s scans: %s", names[i], plan);
			CHECK(0);
		}
	}
	CHECK(seen_explain(db, "no-such", plan, sizeof plan, &err) == -1);
	seen_close(db);
	teardown();
}

/* Deletions recorded in one call; only the folder's UIDVALIDITY. */
static void
t_deleted_many(void)
{
	struct seen_db		*db;
	struct mh_err		 err;
	struct seen_msg		 a = msg("1", 0, 10, NULL, "d1");
	struct seen_msg		 b = msg("2", 0, 20, NULL, "d2");
	struct seen_msg		 c = msg("3", 0, 30, NULL, "d3");
	const char *const	 uids[] = { "1", "3", "9" };
	int64_t			 id;

	setup();
	db = open_ok();
	mh_err_clear(&err);
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	CHECK(seen_record_delivered(db, id, &a, &err) == 0);
	CHECK(seen_record_delivered(db, id, &b, &err) == 0);
	CHECK(seen_record_delivered(db, id, &c, &err) == 0);
	CHECK(seen_record_deleted_many(db, id, uids, 3, &err) == 0);
	CHECK(seen_record_deleted_many(db, id, uids, 0, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM messages WHERE deleted_at IS NOT"
	    " NULL") == 2);
	CHECK(raw_int("SELECT count(*) FROM messages WHERE uid = '2' AND"
	    " deleted_at IS NULL") == 1);
	CHECK(entry_of(db, id, "1").deleted);
	CHECK(!entry_of(db, id, "2").deleted);
	seen_close(db);
	teardown();
}

/*
 * A pass loads the records of the keys it listed, not the history: a
 * key not listed is not in the set; the delivered records of other
 * UIDVALIDITYs come only when asked for (the content fallback).
 */
static void
t_load_keys(void)
{
	struct seen_db		*db;
	struct seen_set		*set = NULL;
	struct mh_err		 err;
	struct seen_msg		 a = msg("1", 7, 10, "<a@x>", "d1");
	struct seen_msg		 b = msg("2", 7, 20, NULL, "d2");
	struct seen_msg		 old = msg("1", 6, 30, "<o@x>", "d3");
	const char *const	 keys[] = { "2", "5" };
	const struct seen_entry	*e;
	int64_t			 id;

	setup();
	db = open_ok();
	mh_err_clear(&err);
	CHECK(seen_source_id(db, &src_a, "a", &id, &err) == 0);
	CHECK(seen_record_delivered(db, id, &a, &err) == 0);
	CHECK(seen_record_failed(db, id, &b, false, "x", &err) == 0);
	CHECK(seen_record_delivered(db, id, &old, &err) == 0);
	CHECK(seen_intent_begin(db, id, &b, "t", &err) == 0);
	CHECK(seen_load_keys(db, id, 7, keys, 2, false, &set, &err) == 0);
	if (set != NULL) {
		CHECK(seen_set_count(set) == 1);
		e = seen_lookup(set, "2");
		CHECK(e != NULL && e->state == SEEN_TEMPFAIL && e->tries == 1);
		CHECK(seen_lookup(set, "1") == NULL);
		CHECK(seen_lookup(set, "5") == NULL);
		CHECK(seen_in_doubt(set, "2"));
		CHECK(seen_lookup_content(set, "<o@x>", 30, "d3") == NULL);
	}
	seen_set_free(set);
	set = NULL;
	CHECK(seen_load_keys(db, id, 7, keys, 2, true, &set, &err) == 0);
	if (set != NULL) {
		CHECK(seen_set_count(set) == 2);
		CHECK(seen_lookup_content(set, "<o@x>", 30, "d3") != NULL);
		CHECK(seen_lookup(set, "1") == NULL);
	}
	seen_set_free(set);
	set = NULL;
	CHECK(seen_load_keys(db, id, 7, NULL, 0, false, &set, &err) == 0);
	CHECK(set != NULL && seen_set_count(set) == 0);
	seen_set_free(set);
	seen_close(db);
	teardown();
}

/*
 * Pruning: the server emptied, time passes, the rows go (the database
 * stops growing); a message still listed is never pruned, whatever its
 * record says; one back on the server is no longer gone; a pruned key
 * that shows up again is a new message, not a delivered one.
 */
static void
t_prune_gone(void)
{
	struct seen_db		*db;
	struct mh_err		 err;
	struct seen_msg		 m[4] = {
		msg("1", 0, 10, NULL, "d1"), msg("2", 0, 20, NULL, "d2"),
		msg("3", 0, 30, NULL, "d3"), msg("4", 0, 40, NULL, "d4"),
	};
	const char *const	 all[] = { "1", "2", "3", "4" };
	const char *const	 some[] = { "3" };
	const char *const	 back[] = { "2", "3" };
	const char		*rc[] = { "r@x" };
	time_t			 t0 = time(NULL), g = SEEN_PRUNE_GRACE;
	int64_t			 id;
	bool			 due;
	int			 i;

	setup();
	db = open_ok();
	mh_err_clear(&err);
	CHECK(seen_source_id(db, &src_b, "b", &id, &err) == 0);
	for (i = 0; i < 3; i++)
		CHECK(seen_record_delivered(db, id, &m[i], &err) == 0);
	CHECK(seen_record_partial(db, id, &m[3], true, "550 no", rc, 1,
	    &err) == 0);
	/* a new source is stamped when made: nothing it had could be gone */
	CHECK(seen_prune_due(db, id, t0, &due, &err) == 0 && !due);
	CHECK(seen_prune_due(db, id, t0 + SEEN_PRUNE_EVERY + 5, &due, &err) ==
	    0 && due);
	CHECK(seen_prune_gone(db, id, all, 4, t0, 0, &err) == 0);
	CHECK(seen_prune_due(db, id, t0 + 60, &due, &err) == 0 && !due);
	CHECK(seen_prune_due(db, id, t0 + SEEN_PRUNE_EVERY, &due, &err) ==
	    0 && due);
	CHECK(raw_int("SELECT count(*) FROM messages WHERE gone_at IS NOT "
	    "NULL") == 0);
	/* the server keeps only 3, which we deleted long ago (its record
	   says so) but which is still listed */
	raw_exec("UPDATE messages SET deleted_at = 1 WHERE uid = '3'");
	CHECK(seen_prune_gone(db, id, some, 1, t0 + 10, 0, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM messages") == 4);
	CHECK(raw_int("SELECT count(*) FROM messages WHERE gone_at IS NOT "
	    "NULL") == 3);
	/* 2 comes back before the grace is over: no longer gone */
	CHECK(seen_prune_gone(db, id, back, 2, t0 + g / 2, 0, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM messages WHERE uid = '2' AND "
	    "gone_at IS NULL") == 1);
	/* the grace is over for 1 and 4, not for 2 (gone again only now) */
	CHECK(seen_prune_gone(db, id, some, 1, t0 + g + 20, 0, &err) == 0);
	{
		char list[32];

		CHECK(raw_text("SELECT group_concat(uid, ',') FROM (SELECT uid"
		    " FROM messages ORDER BY uid)", list, sizeof list));
		CHECK_STR(list, "2,3");
	}
	CHECK(raw_int("SELECT count(*) FROM delivered_to") == 0);
	/* delete_after longer than the grace keeps them longer */
	CHECK(seen_prune_gone(db, id, some, 1, t0 + 2 * g, 3 * g, &err) ==
	    0);
	CHECK(raw_int("SELECT count(*) FROM messages") == 2);
	CHECK(seen_prune_gone(db, id, some, 1, t0 + 5 * g, 0, &err) == 0);
	CHECK(raw_int("SELECT count(*) FROM messages") == 1);
	/* 1 is listed again: a new message, not a delivered one */
	CHECK(entry_of(db, id, "1").state == 0);
	CHECK(entry_of(db, id, "3").state == SEEN_DELIVERED);
	seen_close(db);
	teardown();
}

int
main(void)
{
	RUN(t_modes);
	RUN(t_reopen_keeps_data);
	RUN(t_migration);
	RUN(t_corrupt_refused);
	RUN(t_truncated_refused);
	RUN(t_scribbled_refused);
	RUN(t_newer_refused);
	RUN(t_record_states);
	RUN(t_partial);
	RUN(t_content_across_uidvalidity);
	RUN(t_retry_forget_prune);
	RUN(t_prune_keeps_old_uidvalidity);
	RUN(t_runs_and_status);
	RUN(t_rename_keeps_id);
	RUN(t_folder_state);
	RUN(t_200k_records);
	RUN(t_locked_by_other);
	RUN(t_waits_for_other);
	RUN(t_intents);
	RUN(t_intents_prune_forget);
	RUN(t_stuck);
	RUN(t_statements_use_indexes);
	RUN(t_deleted_many);
	RUN(t_load_keys);
	RUN(t_prune_gone);
	RUN(t_source_id_unchanged_writes_nothing);
	RUN(t_run_log_not_synced);
	RUN(t_gm_one_sync);
	return check_done();
}
