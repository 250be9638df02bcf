/*
 * adopt.h -- records what another tool had delivered (config/import.h's
 * imp_seen lists) in the state database, under the source identity the
 * sync engine uses for the loaded config's account of the same name:
 * the very next pass then delivers exactly what the old tool had not.
 */
#ifndef MAILHAUL_FETCH_ENGINE_ADOPT_H
#define MAILHAUL_FETCH_ENGINE_ADOPT_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "config/import.h"
#include "fetch/state/seen.h"
#include "util.h"

/*
 * For each account of imp with seen UIDs, the account of cfg with its
 * name (MH_ERR_LOCAL if missing): the UIDs are recorded as delivered
 * (seen_record_imported), per IMAP folder with its UIDVALIDITY, which
 * also becomes the folder's known UIDVALIDITY when the state has none
 * (so that a change is noticed at the first pass).  *added counts the
 * records that were new.  Folders are taken as sync spells them
 * (modified UTF-7).
 */
int	adopt_import(const struct config *cfg, struct seen_db *db,
	    const struct import *imp, size_t *added, struct mh_err *err);

/*
 * For an account whose old tool kept no UIDs but set \\Seen (fetchmail
 * over IMAP; imp_account.adopt_flags): logs in as sync would, and in
 * each of acct's folders records the UIDs that carry \\Seen (all of
 * them with all) as delivered, with the folder's UIDVALIDITY.  Folder
 * patterns are refused (MH_ERR_LOCAL).  Errors as source_open's.
 */
int	adopt_flags(const struct cfg_account *acct, const char *statedir,
	    struct seen_db *db, bool all, size_t *added, struct mh_err *err);

/*
 * adopt_flags for every account of imp that asks for it (adopt_flags),
 * adding to *added.  An account whose server could not be asked is
 * disabled in imp, with a note that says why and what to do, a warning
 * is logged, and *changed is set: the caller writes the config again
 * (import_rewrite).
 */
void	adopt_import_flags(const struct config *cfg, struct seen_db *db,
	    struct import *imp, size_t *added, bool *changed);

#endif
