/*
 * target.c -- see target.h: the table of kinds and the dispatch.
 */
#include <stdlib.h>
#include <string.h>

#include "forward/target_impl.h"

/*
 * The implementation of each cfg_target_type; NULL: the kind has keys
 * in the config but no implementation in this build yet.
 */
static const struct target_ops *const kinds[] = {
	[CFG_TARGET_SMTP]	= &smtp_target_ops,
	[CFG_TARGET_LMTP]	= &smtp_target_ops,
	[CFG_TARGET_MAILDIR]	= &maildir_target_ops,
	[CFG_TARGET_MDA]	= &mda_target_ops,
	[CFG_TARGET_IMAP]	= &imap_target_ops,
	[CFG_TARGET_GMAIL]	= &gmail_target_ops,
};

void
target_result_clear(struct target_result *res)
{
	size_t	i;

	for (i = 0; i < res->ndests; i++)
		free(res->dests[i]);
	free(res->dests);
	res->dests = NULL;
	res->ndests = 0;
}

void
target_result_add(struct target_result *res, const char *dest)
{
	res->dests = xrealloc(res->dests, (res->ndests + 1) *
	    sizeof *res->dests);
	res->dests[res->ndests++] = xstrdup(dest);
}

bool
target_msg_done(const struct target_msg *m, const char *dest)
{
	size_t	i;

	for (i = 0; i < m->ndone; i++)
		if (strcmp(m->done[i], dest) == 0)
			return true;
	return false;
}

struct target *
target_new(const struct cfg_target *t, const struct sasl_cred *cred,
    struct mh_err *err)
{
	const struct target_ops	*ops = NULL;
	struct target		*tg = NULL;

	mh_err_clear(err);
	if ((size_t)t->type < sizeof kinds / sizeof kinds[0])
		ops = kinds[t->type];
	if (ops == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: type %s is not "
		    "built yet in this version of mailhaul", t->name,
		    cfg_target_type_name(t->type));
		return NULL;
	}
	if (ops->open(t, cred, &tg, err) == -1)
		return NULL;
	tg->ops = ops;
	tg->cfg = t;
	return tg;
}

void
target_set_timeout(struct target *tg, int timeout_ms)
{
	if (tg->ops->set_timeout != NULL)
		tg->ops->set_timeout(tg, timeout_ms);
}

int
target_connect(struct target *tg, struct mh_err *err)
{
	mh_err_clear(err);
	return tg->ops->connect != NULL ? tg->ops->connect(tg, err) : 0;
}

void
target_get_info(struct target *tg, struct target_info *info)
{
	memset(info, 0, sizeof *info);
	if (tg->ops->get_info != NULL)
		tg->ops->get_info(tg, info);
}

int
target_probe(struct target *tg, char *note, size_t size, struct mh_err *err)
{
	mh_err_clear(err);
	if (size > 0)
		note[0] = '\0';
	return tg->ops->probe != NULL ? tg->ops->probe(tg, note, size, err) :
	    0;
}

bool
target_can_look_up(const struct target *tg)
{
	return tg->ops->seen != NULL;
}

int
target_seen(struct target *tg, const struct target_msg *m, bool *found,
    struct mh_err *err)
{
	mh_err_clear(err);
	*found = false;
	if (tg->ops->seen == NULL)
		return -1;
	return tg->ops->seen(tg, m, found, err);
}

enum target_outcome
target_deliver(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	mh_err_clear(err);
	target_result_clear(res);
	return tg->ops->deliver(tg, m, res, err);
}

bool
target_prepare(struct target *tg, const struct target_msg *m)
{
	return tg->ops->prepare != NULL && tg->ops->prepare(tg, m);
}

bool
target_can_prepare(const struct target *tg)
{
	return tg->ops->prepare != NULL;
}

void
target_set_batch(struct target *tg, bool on)
{
	if (tg->ops->set_batch != NULL)
		tg->ops->set_batch(tg, on);
}

int
target_flush(struct target *tg, struct mh_err *err)
{
	mh_err_clear(err);
	return tg->ops->flush != NULL ? tg->ops->flush(tg, err) : 0;
}

enum target_outcome
target_collect(struct target *tg, struct target_result *res,
    struct mh_err *err)
{
	mh_err_clear(err);
	target_result_clear(res);
	if (tg->ops->collect == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: nothing was sent "
		    "ahead to collect", tg->cfg->name);
		return TARGET_TEMPFAIL;
	}
	return tg->ops->collect(tg, res, err);
}

int
target_command(struct target *tg, const char *cmd, int *code,
    struct mh_err *err)
{
	mh_err_clear(err);
	*code = 0;
	if (tg->ops->command == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: a %s target takes "
		    "no commands", tg->cfg->name, tg->ops->name);
		return -1;
	}
	return tg->ops->command(tg, cmd, code, err);
}

void
target_close(struct target *tg)
{
	if (tg != NULL)
		tg->ops->close(tg);
}
