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

/* Binds ?1..?5 of s to src's protocol, host, port, user, folder. */
void	seen_sqlite_bind_source(sqlite3_stmt *s, const struct seen_source *src);

/* Sets err from the connection's last error (busy: MH_ERR_TEMP); -1. */
int	seen_sqlite_fail(struct seen_db *db, struct mh_err *err);

#endif
