/*
 * seen_ident.h -- the state's answers to "which messages and which
 * sources are the same": an account whose server changed its name, a
 * POP3 UIDL the server gave again to a new message, the same message in
 * several IMAP folders of one account, messages set aside by max_size.
 * The engine's identity rules (fetch/engine/identity.c) use these; the
 * rest of the state is seen.h.
 *
 * Every function returns 0 or -1 with err (MH_ERR_LOCAL, or MH_ERR_TEMP
 * when the database is locked); writes are committed when they return 0.
 */
#ifndef MAILHAUL_FETCH_SEEN_IDENT_H
#define MAILHAUL_FETCH_SEEN_IDENT_H

#include <stdint.h>

#include "fetch/state/seen.h"
#include "util.h"

/*
 * The source row for src, whose host is compared case-insensitively
 * (DNS names are): *id is 0 when there is none.  Creates nothing.  The
 * row found takes src's spelling of the host and the display name name;
 * with name NULL nothing is written (a dry run only looks).
 */
int	seen_ident_find(struct seen_db *db, const struct seen_source *src,
	    const char *name, int64_t *id, struct mh_err *err);

/*
 * The account's row before its endpoint changed: the newest source row
 * named name with src's protocol, user and folder but another host or
 * port.  *id is 0 when there is none.
 */
int	seen_ident_predecessor(struct seen_db *db,
	    const struct seen_source *src, const char *name, int64_t *id,
	    struct mh_err *err);

/* Source row id takes src's host and port: its records carry over. */
int	seen_ident_move(struct seen_db *db, int64_t id,
	    const struct seen_source *src, struct mh_err *err);

/* The run record run now belongs to source row id. */
int	seen_ident_run_move(struct seen_db *db, int64_t run, int64_t id,
	    struct mh_err *err);

/*
 * POP3 UIDL reuse: the record of uid (of source id, UIDVALIDITY 0),
 * whose deletion mailhaul recorded, is kept under the uid
 * "<uid>~<deleted_at>" so that the new message under uid is recorded
 * afresh; the old one stays findable by content (invariant I2).
 */
int	seen_ident_set_aside(struct seen_db *db, int64_t id, const char *uid,
	    struct mh_err *err);

/* The record of uid (UIDVALIDITY 0) is on the server again: its
   deletion is forgotten, so that retention applies to it anew. */
int	seen_ident_undelete(struct seen_db *db, int64_t id, const char *uid,
	    struct mh_err *err);

/*
 * Whether source id's account has had other folders (same login and
 * section name; messages or not): their passes tell a message they
 * receive later (a label, a move) by this folder's records.
 */
int	seen_ident_siblings(struct seen_db *db, int64_t id, bool *any,
	    struct mh_err *err);

/*
 * The lowest IMAP UID of uidvalidity that source id recorded skipped
 * (max_size), or 0: the folder is listed from there so that a skipped
 * message is judged again against the current config.
 */
int	seen_ident_skipped_low(struct seen_db *db, int64_t id,
	    uint32_t uidvalidity, uint32_t *uid, struct mh_err *err);

/*
 * Whether another source row of source id's account (same protocol,
 * host in any case, port and user, the same config section name; another
 * folder) has a delivered
 * record of this content: Message-ID (NULL: none; then size and digest
 * alone), size and digest.  *folder is a new string naming that folder
 * (NULL when none is found).
 */
int	seen_ident_elsewhere(struct seen_db *db, int64_t id,
	    const char *message_id, uint64_t size, const char *digest,
	    char **folder, struct mh_err *err);

/*
 * Gmail (X-GM-EXT-1): records gm[i] on the record of uids[i] (of
 * uidvalidity) of source id, for i < n, in one transaction (one disk
 * sync for a pass's messages, not one each); and finds whether another
 * folder of the account has delivered the message with that id (*folder
 * a new string naming it, or NULL): the same message under another
 * label, known before it is downloaded.
 */
int	seen_ident_set_gm(struct seen_db *db, int64_t id, uint32_t uidvalidity,
	    const char *const *uids, const uint64_t *gm, size_t n,
	    struct mh_err *err);
int	seen_ident_gm_elsewhere(struct seen_db *db, int64_t id,
	    uint64_t gm_msgid, char **folder, struct mh_err *err);

#endif
