/*
 * seen_impl.h -- for the state room's own modules (seen_ident.c) only:
 * the SQLite handle behind a struct seen_db.
 */
#ifndef MAILHAUL_FETCH_SEEN_IMPL_H
#define MAILHAUL_FETCH_SEEN_IMPL_H

#include <sqlite3.h>

#include "fetch/state/seen.h"

/* db's connection (borrowed; valid until seen_close). */
sqlite3	*seen_sqlite(struct seen_db *db);

/*
 * The statement sql prepared once and kept for db's life in slot (below
 * SEEN_KEPT_MAX; seen_ident.c numbers its own), reset with its bindings
 * cleared: for a statement run for every message.  The caller resets it
 * after use, never finalizes it; NULL with err.
 */
#define SEEN_KEPT_MAX	2
sqlite3_stmt *seen_sqlite_kept(struct seen_db *db, unsigned slot,
	    const char *sql, struct mh_err *err);

/* BEGIN IMMEDIATE; 0, or -1 with err. */
int	seen_sqlite_begin(struct seen_db *db, struct mh_err *err);

/* Ends the transaction seen_sqlite_begin began: COMMIT when rc is 0 (0,
   or -1 with err when the commit fails), else ROLLBACK (-1, err kept). */
int	seen_sqlite_end(struct seen_db *db, int rc, struct mh_err *err);

/* Binds ?1..?5 of s to src's protocol, host, port, user, folder. */
void	seen_sqlite_bind_source(sqlite3_stmt *s, const struct seen_source *src);

/* Sets err from the connection's last error (busy: MH_ERR_TEMP); -1. */
int	seen_sqlite_fail(struct seen_db *db, struct mh_err *err);

#endif
