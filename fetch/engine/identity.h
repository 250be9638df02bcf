/*
 * identity.h -- the engine's rules for "is this the same account, the
 * same folder, the same message?" beyond a server's UIDs (issue #16
 * items 2, 4, 5, 15; #17 cross-folder duplicates):
 *
 *   - an account is found by its endpoint with the host compared
 *     case-insensitively; when its endpoint changed (127.0.0.1 ->
 *     localhost, a provider renaming its server) and the new server
 *     lists what the account knew, its state carries over;
 *   - a POP3 UIDL that mailhaul recorded as deleted, listed again, is a
 *     new message unless its content is the old one's;
 *   - IMAP: the move_to folder is no source unless named explicitly; a
 *     message delivered from one folder of the account is not delivered
 *     again from another (same Message-ID, size and digest);
 *   - how many bytes a retrieval may write to the spool.
 */
#ifndef MAILHAUL_FETCH_ENGINE_IDENTITY_H
#define MAILHAUL_FETCH_ENGINE_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "fetch/source.h"
#include "fetch/state/seen.h"
#include "util.h"

/*
 * The source row of ident (display name name): the one with this
 * endpoint in any case of the host (*provisional false); else the
 * account's row under its previous endpoint (seen_ident_predecessor),
 * to be confirmed by identity_adopt once the server's listing is known
 * (*provisional true); else a new row when create, else *id 0.
 */
int	identity_resolve(struct seen_db *db, const struct seen_source *ident,
	    const char *name, bool create, int64_t *id, bool *provisional,
	    struct mh_err *err);

/*
 * With a provisional row pred whose records of l's UIDVALIDITY are
 * known (loaded), decides from l whether the server at ident is the one
 * pred knew: two thirds of the listed messages known by UID with the
 * same non-zero size (nine tenths when every POP3 UIDL is a number).
 * Then pred takes ident's endpoint (logged: the state carries over) and
 * *id is pred; otherwise *id is a new row for ident and the run record
 * run (0: none) moves to it.  *carried says which.  Writes nothing when
 * dry.
 */
int	identity_adopt(struct seen_db *db, const struct seen_source *ident,
	    const char *name, int64_t pred, int64_t run,
	    const struct seen_set *known, const struct source_list *l,
	    bool dry, int64_t *id, bool *carried, struct mh_err *err);

/*
 * Whether a listed message whose record is e is a new message under a
 * reused UIDL: POP3 with UIDL, and mailhaul recorded e's deletion.
 */
bool	identity_reused(const struct cfg_account *acct,
	    const struct source_list *l, const struct seen_entry *e);

/*
 * The folders of folders[] (NULL-terminated, from source_folders) that
 * a pass syncs: acct's move_to folder is dropped unless acct->folders
 * names it literally (not by a pattern).  In place; dropped names are
 * freed.
 */
void	identity_filter_folders(const struct cfg_account *acct,
	    char **folders);

/*
 * The most bytes a retrieval of a message listed at listed bytes may
 * write to the spool: 1.5 times that plus 1 MiB (servers count sizes
 * loosely), and, unless waived (`mailhaul retry` asked for it), no more
 * than 1.5 times max_size plus 1 MiB when max_size is set.
 */
uint64_t identity_fetch_limit(const struct cfg_account *acct,
	    uint64_t listed, bool waived);

/*
 * The limit for a listed message whose record is e (NULL: new): none
 * (UINT64_MAX; the workers' RLIMIT_FSIZE still bounds the spool) when
 * `mailhaul retry` asked for it (a temporary failure with no failure
 * counted since), so that a message whose listed size understates it
 * (Exchange's approximate RFC822.SIZE) can be fetched after its refusal;
 * else identity_fetch_limit, max_size waived for a temporary failure.
 */
uint64_t identity_entry_limit(const struct cfg_account *acct,
	    uint64_t listed, const struct seen_entry *e);

#endif
