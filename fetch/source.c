/* source.c -- dispatch to the protocol implementations; see source.h */
#include <stdlib.h>
#include <string.h>

#include "fetch/source_impl.h"

int
source_timeout_ms(const struct cfg_account *acct)
{
	return acct->timeout > 0 ? (int)(acct->timeout * 1000) : 0;
}

void
source_net_params(const struct cfg_account *acct, struct net_params *p)
{
	endpoint_net_params(&acct->ep, source_timeout_ms(acct), p);
}

static const struct source_ops *
ops_for(const struct cfg_account *acct)
{
	return acct->protocol == CFG_PROTO_IMAP ? &imap_source_ops :
	    acct->protocol == CFG_PROTO_ETRN ? &etrn_source_ops :
	    &pop3_source_ops;
}

int
source_open(const struct cfg_account *acct, const char *folder,
    const struct sasl_cred *cred, struct source **out, struct mh_err *err)
{
	const struct source_ops *ops = ops_for(acct);

	*out = NULL;
	if (ops->open(acct, folder, cred, out, err) == -1)
		return -1;
	(*out)->ops = ops;
	return 0;
}

int
source_folders(const struct cfg_account *acct, const struct sasl_cred *cred,
    struct source **session, char ***out, struct mh_err *err)
{
	const struct source_ops *ops = ops_for(acct);

	if (ops->folders != NULL)
		return ops->folders(acct, cred, session, out, err);
	*out = xcalloc(2, sizeof **out);
	(*out)[0] = xstrdup("");
	return 0;
}

void
source_folders_free(char **folders)
{
	if (folders == NULL)
		return;
	for (char **f = folders; *f != NULL; f++)
		free(*f);
	free(folders);
}

int
source_select(struct source *src, const char *folder, struct mh_err *err)
{
	if (src->ops->select != NULL)
		return src->ops->select(src, folder, err);
	if (folder != NULL && folder[0] != '\0') {
		mh_err_set(err, MH_ERR_LOCAL, "%s has no folders",
		    src->ops->name);
		return -1;
	}
	return 0;
}

bool
source_usable(const struct source *src)
{
	if (src->ops->usable != NULL)
		return src->ops->usable(src);
	return !src->spent;
}

void
source_set_known(struct source *src, uint32_t uidvalidity, uint32_t last_uid)
{
	if (src->ops->set_known != NULL)
		src->ops->set_known(src, uidvalidity, last_uid);
}

void
source_get_info(struct source *src, struct source_info *info)
{
	src->ops->get_info(src, info);
}

int
source_list(struct source *src, struct source_list *out, struct mh_err *err)
{
	return src->ops->list(src, out, err);
}

int
source_list_sizes(struct source *src, struct source_list *l,
    const bool *want, struct mh_err *err)
{
	if (!l->sizes_pending || src->ops->list_sizes == NULL)
		return 0;
	return src->ops->list_sizes(src, l, want, err);
}

int
source_imap_uids(struct source *src, bool seen_only, uint32_t *uidvalidity,
    uint32_t **uids, size_t *n, struct mh_err *err)
{
	*uids = NULL;
	*n = 0;
	if (src->ops->uids == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "not an IMAP session");
		return -1;
	}
	return src->ops->uids(src, seen_only, uidvalidity, uids, n, err);
}

/* A block of the arena: the newest first. */
struct source_arena {
	struct source_arena	*next;
	size_t			 used, cap;
	char			 data[];
};

/* The first block's size; each next one twice the last, up to the max. */
#define SOURCE_ARENA_BLOCK	(64 * 1024)
#define SOURCE_ARENA_MAX	(1024 * 1024)

char *
source_list_strdup(struct source_list *l, const char *s, size_t len)
{
	struct source_arena	*a = l->arena;
	char			*d;

	if (a == NULL || a->cap - a->used < len + 1) {
		size_t cap = a == NULL ? SOURCE_ARENA_BLOCK :
		    a->cap >= SOURCE_ARENA_MAX ? a->cap : 2 * a->cap;

		if (cap < len + 1)
			cap = len + 1;
		a = xmalloc(sizeof *a + cap);
		mh_prefault(a, sizeof *a + cap);	/* filled next */
		a->next = l->arena;
		a->used = 0;
		a->cap = cap;
		l->arena = a;
	}
	d = a->data + a->used;
	memcpy(d, s, len);
	d[len] = '\0';
	a->used += len + 1;
	return d;
}

void
source_list_free(struct source_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; l->arena == NULL && i < l->n; i++)
		free(l->msgs[i].uid);
	while (l->arena != NULL) {
		struct source_arena *next = l->arena->next;

		free(l->arena);
		l->arena = next;
	}
	free(l->msgs);
	l->msgs = NULL;
	l->n = 0;
}

int
source_fetch_header(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	if (src->ops->fetch_header == NULL) {
		mh_err_clear(err);
		return -1;
	}
	return src->ops->fetch_header(src, msg, fd, err);
}

void
source_plan(struct source *src, const struct source_msg *const *msgs,
    size_t n)
{
	if (src->ops->plan != NULL)
		src->ops->plan(src, msgs, n);
}

bool
source_requested(const struct source *src, const struct source_msg *msg)
{
	return src->ops->requested != NULL && src->ops->requested(src, msg);
}

int
source_fetch(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	return src->ops->fetch(src, msg, fd, err);
}

void
source_fetched_in_vain(struct source *src, size_t ahead, size_t failed)
{
	if (src->ops->fetched_in_vain != NULL && ahead + failed > 0)
		src->ops->fetched_in_vain(src, ahead, failed);
}

int
source_mark_done(struct source *src, const struct source_msg *msg,
    struct mh_err *err)
{
	if (src->ops->mark_done == NULL)
		return 0;
	return src->ops->mark_done(src, msg, err);
}

int
source_mark_delete(struct source *src, const struct source_msg *msg,
    struct mh_err *err)
{
	return src->ops->mark_delete(src, msg, err);
}

int
source_commit(struct source *src, struct mh_err *err)
{
	src->spent = true;
	return src->ops->commit(src, err);
}

void
source_abort(struct source *src)
{
	src->spent = true;
	src->ops->abort(src);
}

void
source_free(struct source *src)
{
	if (src != NULL)
		src->ops->free(src);
}
