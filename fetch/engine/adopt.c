/*
 * adopt.c -- another tool's seen UIDs into the state.  See adopt.h.
 */
#include <stdlib.h>
#include <string.h>

#include "fetch/engine/adopt.h"
#include "fetch/source.h"
#include "net/imap_utf7.h"
#include "log.h"
#include "net/login.h"

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
		if (seen_folder_get(db, id, &uv, &last, NULL, err) == -1)
			goto out;
		if (uv == 0 && seen_folder_set(db, id, g->uidvalidity, 0,
		    false, err) == -1)
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

/* The UIDs carrying \\Seen (or all) in folder wire, recorded. */
static int
flags_folder(const struct cfg_account *acct, struct source *src,
    const char *wire, struct seen_db *db, bool all, size_t *added,
    struct mh_err *err)
{
	struct seen_source	 ident;
	uint32_t		*uids = NULL, uv, known, last;
	char			**keys = NULL;
	size_t			 n = 0, k = 0, i;
	int64_t			 id;
	int			 rc = -1;

	if (source_imap_uids(src, !all, &uv, &uids, &n, err) == -1)
		return -1;
	keys = xcalloc(n + 1, sizeof *keys);
	for (i = 0; i < n; i++)
		keys[i] = xasprintf("%u", uids[i]);
	ident.protocol = cfg_protocol_name(acct->protocol);
	ident.host = acct->ep.host;
	ident.port = acct->ep.port;
	ident.user = acct->ep.user;
	ident.folder = wire;
	if (seen_source_id(db, &ident, acct->name, &id, err) == -1 ||
	    seen_record_imported(db, id, uv, (const char *const *)keys, n, &k,
	    err) == -1 || seen_folder_get(db, id, &known, &last, NULL,
	    err) == -1 || (known == 0 && seen_folder_set(db, id, uv, 0, false,
	    err) == -1))
		goto out;
	*added += k;
	rc = 0;
out:
	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	free(uids);
	return rc;
}

int
adopt_flags(const struct cfg_account *acct, const char *statedir,
    struct seen_db *db, bool all, size_t *added, struct mh_err *err)
{
	struct login	 lg;
	struct source	*src = NULL;
	char		*wire = NULL, what[300];
	int		 rc = -1;

	memset(&lg, 0, sizeof lg);
	snprintf(what, sizeof what, "account %s", acct->name);
	if (login_get(&acct->ep, statedir, what, &lg, err) == -1)
		return -1;
	for (size_t i = 0; i < acct->nfolders; i++) {
		free(wire);
		if (strpbrk(acct->folders[i], "*%") != NULL ||
		    (wire = imap_utf7_encode(acct->folders[i])) == NULL) {
			mh_err_set(err, MH_ERR_LOCAL, "folder \"%s\": name "
			    "each folder (no patterns, valid UTF-8)",
			    acct->folders[i]);
			wire = NULL;
			goto out;
		}
		if (src == NULL ? source_open(acct, wire, &lg.cred, &src,
		    err) == -1 : source_select(src, wire, err) == -1)
			goto out;
		if (flags_folder(acct, src, wire, db, all, added, err) == -1)
			goto out;
		source_abort(src);	/* EXAMINE changed nothing */
		if (!source_usable(src)) {
			source_free(src);
			src = NULL;
		}
	}
	rc = 0;
out:
	free(wire);
	if (src != NULL)
		source_free(src);
	login_free(&lg);
	return rc;
}

void
adopt_import_flags(const struct config *cfg, struct seen_db *db,
    struct import *imp, size_t *added, bool *changed)
{
	const struct cfg_account	*acct;
	struct mh_err			 err;
	char				*statedir = config_state_dir(cfg);
	char				 buf[1200];

	*changed = false;
	for (size_t i = 0; i < imp->n; i++) {
		struct imp_account *a = &imp->accts[i];

		if (!a->adopt_flags || !a->enabled ||
		    (acct = config_account(cfg, a->name)) == NULL)
			continue;
		mh_err_clear(&err);
		if (adopt_flags(acct, statedir, db, a->adopt_all, added,
		    &err) == 0)
			continue;
		mh_err_str(&err, buf, sizeof buf);
		log_warn("%s: cannot ask the server which messages %s had "
		    "fetched: %s; the account is disabled", a->name,
		    imp->tool, buf);
		imp_note(&a->notes, "DISABLED: the server could not be asked "
		    "which messages carry \\Seen (%s).  Right after the old "
		    "tool's last run, `mailhaul mark-seen %s`, then enabled = "
		    "yes", buf, a->name);
		a->enabled = false;
		*changed = true;
	}
	free(statedir);
}
