/*
 * adopt.h -- records what another tool had delivered (config/import.h's
 * imp_seen lists) in the state database, under the source identity the
 * sync engine uses for the loaded config's account of the same name:
 * the very next pass then delivers exactly what the old tool had not.
 */
#ifndef MAILHAUL_FETCH_ENGINE_ADOPT_H
#define MAILHAUL_FETCH_ENGINE_ADOPT_H

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

#endif
