/* identity.c -- see identity.h */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fetch/engine/identity.h"
#include "fetch/state/seen_ident.h"
#include "log.h"
#include "net/imap_utf7.h"

int
identity_resolve(struct seen_db *db, const struct seen_source *ident,
    const char *name, bool create, int64_t *id, bool *provisional,
    struct mh_err *err)
{
	*provisional = false;
	if (seen_ident_find(db, ident, create ? name : NULL, id, err) == -1)
		return -1;
	if (*id != 0)
		return create ? seen_source_id(db, ident, name, id, err) : 0;
	if (seen_ident_predecessor(db, ident, name, id, err) == -1)
		return -1;
	if (*id != 0) {
		*provisional = true;
		return 0;
	}
	return create ? seen_source_id(db, ident, name, id, err) : 0;
}

/* Whether uid looks like a message number (digits only): such UIDs
   coincide between unrelated servers. */
static bool
sequence_like(const char *uid)
{
	size_t	i;

	for (i = 0; uid[i] != '\0'; i++)
		if (uid[i] < '0' || uid[i] > '9')
			return false;
	return i > 0;
}

/*
 * Whether l is clearly what known knew: a listed message counts only
 * when its UID is known with the same, non-zero, size; two thirds of
 * the listing must count, nine tenths when every UID is a mere number
 * without a UIDVALIDITY (POP3 servers numbering their messages).
 */
static bool
listing_matches(const struct seen_set *known, const struct source_list *l)
{
	const struct seen_entry	*e;
	const char		*digest, *mid;
	size_t			 i, matched = 0;
	uint64_t		 size;
	bool			 seq = true;

	if (!l->has_uids || l->n == 0)
		return false;
	for (i = 0; i < l->n; i++) {
		seq = seq && sequence_like(l->msgs[i].uid);
		if ((e = seen_lookup(known, l->msgs[i].uid)) == NULL)
			continue;
		seen_entry_content(e, &size, &digest, &mid);
		if (size != 0 && size == l->msgs[i].size)
			matched++;
	}
	/* IMAP UIDs are numbers by nature, but under a UIDVALIDITY */
	if (seq && l->uidvalidity == 0)
		return matched * 10 >= l->n * 9;
	return matched * 3 >= l->n * 2;
}

int
identity_adopt(struct seen_db *db, const struct seen_source *ident,
    const char *name, int64_t pred, int64_t run,
    const struct seen_set *known, const struct source_list *l, bool dry,
    int64_t *id, bool *carried, struct mh_err *err)
{
	*carried = listing_matches(known, l);
	*id = pred;
	if (*carried) {
		log_warn("%s: the server is now %s:%u; what it lists matches "
		    "what the account knew there before, so its state carries "
		    "over (nothing is delivered again)", name, ident->host,
		    ident->port);
		return dry ? 0 : seen_ident_move(db, pred, ident, err);
	}
	log_info("%s: the server is now %s:%u and lists %s of what the "
	    "account knew before%s: its messages are new to mailhaul", name,
	    ident->host, ident->port, l->n > 0 ? "little" : "none",
	    l->has_uids ? "" : " (no UIDL to compare)");
	if (dry) {
		*id = 0;
		return 0;
	}
	if (seen_source_id(db, ident, name, id, err) == -1)
		return -1;
	return run != 0 ? seen_ident_run_move(db, run, *id, err) : 0;
}

bool
identity_reused(const struct cfg_account *acct, const struct source_list *l,
    const struct seen_entry *e)
{
	return acct->protocol == CFG_PROTO_POP3 && l->has_uids &&
	    e != NULL && e->deleted;
}

/* Whether wire (a folder as the server spells it) is name. */
static bool
same_folder(const char *wire, const char *name)
{
	char	*shown;
	bool	 same;

	if (strcasecmp(name, "INBOX") == 0)
		return strcasecmp(wire, "INBOX") == 0;
	if (strcmp(wire, name) == 0)
		return true;
	shown = imap_utf7_decode(wire);
	same = shown != NULL && strcmp(shown, name) == 0;
	free(shown);
	return same;
}

void
identity_filter_folders(const struct cfg_account *acct, char **folders)
{
	size_t	i, j, k;

	if (acct->protocol != CFG_PROTO_IMAP || acct->move_to == NULL)
		return;
	for (i = 0; i < acct->nfolders; i++)
		if (strpbrk(acct->folders[i], "*%") == NULL &&
		    same_folder(acct->folders[i], acct->move_to))
			return;		/* named: the user wants it */
	for (j = k = 0; folders[j] != NULL; j++) {
		if (same_folder(folders[j], acct->move_to)) {
			log_info("%s: not syncing folder %s: it is where "
			    "move_to puts what was delivered (name it in "
			    "folders to sync it)", acct->name, acct->move_to);
			free(folders[j]);
			continue;
		}
		folders[k++] = folders[j];
	}
	folders[k] = NULL;
}

/* x * 1.5 + 1 MiB, saturated. */
static uint64_t
slack(uint64_t x)
{
	uint64_t	cap = UINT64_MAX - (1u << 20);

	if (x > cap / 3 * 2)
		return UINT64_MAX;
	return x + x / 2 + (1u << 20);
}

uint64_t
identity_fetch_limit(const struct cfg_account *acct, uint64_t listed,
    bool waived)
{
	uint64_t	limit = slack(listed);

	if (!waived && acct->max_size > 0 && slack(acct->max_size) < limit)
		limit = slack(acct->max_size);
	return limit;
}

uint64_t
identity_entry_limit(const struct cfg_account *acct, uint64_t listed,
    const struct seen_entry *e)
{
	/* `mailhaul retry` leaves a record to try again with no failure
	   counted (every failure counts one) */
	if (e != NULL && e->state == SEEN_TEMPFAIL && e->tries == 0)
		return UINT64_MAX;
	return identity_fetch_limit(acct, listed,
	    e != NULL && e->state == SEEN_TEMPFAIL);
}
