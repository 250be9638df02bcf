/*
 * adopt.c -- another tool's seen UIDs into the state.  See adopt.h.
 */
#include <stdlib.h>
#include <string.h>

#include "fetch/engine/adopt.h"
#include "net/imap_utf7.h"

/* The uids of a's seen list for folder/uidvalidity (borrowed). */
static const char **
uids_of(const struct imp_account *a, const char *folder, uint32_t uv,
    size_t *n)
{
	const char	**v = xcalloc(a->nseen + 1, sizeof *v);

	*n = 0;
	for (size_t i = 0; i < a->nseen; i++)
		if (strcmp(a->seen[i].folder, folder) == 0 &&
		    a->seen[i].uidvalidity == uv)
			v[(*n)++] = a->seen[i].uid;
	return v;
}

/* Whether seen[i] starts a run of its folder and UIDVALIDITY (the
   readers add them a file at a time; a group met twice is recorded
   twice, which changes nothing). */
static bool
first_of_group(const struct imp_account *a, size_t i)
{
	return i == 0 || strcmp(a->seen[i - 1].folder, a->seen[i].folder) !=
	    0 || a->seen[i - 1].uidvalidity != a->seen[i].uidvalidity;
}

/* One folder and UIDVALIDITY of a, into account acct's source row. */
static int
adopt_group(const struct cfg_account *acct, struct seen_db *db,
    const struct imp_account *a, const struct imp_seen *g, size_t *added,
    struct mh_err *err)
{
	struct seen_source	 ident;
	const char		**uids;
	char			*wire = NULL;
	int64_t			 id;
	uint32_t		 uv, last;
	size_t			 n, k = 0;
	int			 rc = -1;

	ident.protocol = cfg_protocol_name(acct->protocol);
	ident.host = acct->ep.host;
	ident.port = acct->ep.port;
	ident.user = acct->ep.user;
	ident.folder = "";
	if (acct->protocol == CFG_PROTO_IMAP) {
		if ((wire = imap_utf7_encode(g->folder)) == NULL) {
			mh_err_set(err, MH_ERR_LOCAL, "folder name \"%s\" is "
			    "not valid UTF-8", g->folder);
			return -1;
		}
		ident.folder = wire;
	}
	uids = uids_of(a, g->folder, g->uidvalidity, &n);
	if (seen_source_id(db, &ident, acct->name, &id, err) == -1 ||
	    seen_record_imported(db, id, g->uidvalidity, uids, n, &k,
	    err) == -1)
		goto out;
	*added += k;
	if (acct->protocol == CFG_PROTO_IMAP) {
		if (seen_folder_get(db, id, &uv, &last, err) == -1)
			goto out;
		if (uv == 0 && seen_folder_set(db, id, g->uidvalidity, 0,
		    err) == -1)
			goto out;
	}
	rc = 0;
out:
	free(uids);
	free(wire);
	return rc;
}

int
adopt_import(const struct config *cfg, struct seen_db *db,
    const struct import *imp, size_t *added, struct mh_err *err)
{
	const struct cfg_account	*acct;

	*added = 0;
	for (size_t i = 0; i < imp->n; i++) {
		const struct imp_account *a = &imp->accts[i];

		if (a->nseen == 0)
			continue;
		if ((acct = config_account(cfg, a->name)) == NULL) {
			mh_err_set(err, MH_ERR_LOCAL, "%s has no [account:%s]",
			    cfg->path, a->name);
			return -1;
		}
		for (size_t k = 0; k < a->nseen; k++)
			if (first_of_group(a, k) && adopt_group(acct, db, a,
			    &a->seen[k], added, err) == -1)
				return -1;
	}
	return 0;
}
