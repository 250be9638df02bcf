/*
 * etrn.c -- the ETRN "source" (RFC 1985); see source.h for the contract.
 *
 * An account with protocol = etrn belongs to someone whose provider
 * queues mail for their own domain (a backup MX, a dial-up relay): each
 * pass connects to the provider's SMTP server and asks it, with
 * `ETRN domain` for each of etrn_domains, to start delivering what it
 * holds for that domain to the domain's own servers.  Nothing is fetched
 * or delivered here: the listing is always empty, and the mail arrives
 * by SMTP at the user's MX, outside mailhaul.
 *
 * The SMTP session (greeting, EHLO, STARTTLS per tls =, AUTH when user
 * is set, QUIT) is the SMTP target's (forward/smtp.c) on a target made
 * from the account's endpoint: one SMTP client, not two.  The ETRNs are
 * sent at source_list, so `mailhaul check` (open, no list) starts no
 * queue run.
 *
 * The replies (RFC 1985 sec 5), each logged with the server's text:
 *   250 queuing started, 251 no messages waiting, 252 pending messages
 *   started, 253 N pending messages started: ok;
 *   458 unable to queue, 459 node not allowed, any other 4xx: the pass
 *   fails temporarily (the service retries with its backoff);
 *   500/501/502 (no ETRN, a syntax error) and any other reply: a
 *   permanent failure of the account (MH_ERR_PROTO).
 * Every domain is asked even when an earlier one failed; the pass's
 * error is the worst reply's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/source_impl.h"
#include "forward/target.h"
#include "log.h"

struct etrn {
	struct source		  base;		/* first: see source_impl.h */
	const struct cfg_account *acct;		/* borrowed */
	struct cfg_target	  tcfg;		/* the account's endpoint as an
						   smtp target; strings
						   borrowed from acct */
	struct target		 *tg;		/* NULL once closed */
	struct target_info	  info;
};

static int
etrn_open(const struct cfg_account *acct, const char *folder,
    const struct sasl_cred *cred, struct source **out, struct mh_err *err)
{
	struct etrn	*e = xcalloc(1, sizeof *e);

	(void)folder;
	e->acct = acct;
	e->tcfg.name = acct->ep.host;	/* "target HOST: ..." */
	e->tcfg.line = acct->line;
	e->tcfg.type = CFG_TARGET_SMTP;
	e->tcfg.ep = acct->ep;
	if ((e->tg = target_new(&e->tcfg, cred, err)) == NULL)
		goto fail;
	target_set_timeout(e->tg, source_timeout_ms(acct));
	if (target_connect(e->tg, err) == -1)
		goto fail;
	target_get_info(e->tg, &e->info);
	*out = &e->base;
	return 0;
fail:
	/* the target's words say "target HOST": it is the account's server */
	if (strncmp(err->msg, "target ", 7) == 0)
		memmove(err->msg, err->msg + 7, strlen(err->msg + 7) + 1);
	target_close(e->tg);
	free(e);
	return -1;
}

static void
etrn_get_info(struct source *src, struct source_info *info)
{
	struct etrn	*e = (struct etrn *)src;

	snprintf(info->greeting, sizeof info->greeting, "%s",
	    e->info.greeting);
	snprintf(info->capabilities, sizeof info->capabilities, "%s",
	    e->info.capabilities);
	info->tls = e->info.tls;
	info->peer = e->info.peer;
}

/* How bad a reply is: 0 ok, 1 temporary, 2 permanent. */
static int
etrn_badness(int code)
{
	if (code >= 250 && code <= 253)
		return 0;
	return code / 100 == 4 ? 1 : 2;
}

/* Sends ETRN for one domain; 0, or -1 when the connection is lost. */
static int
etrn_one(struct etrn *e, const char *domain, int *worst, struct mh_err *err)
{
	struct mh_err	 r;
	char		*cmd = xasprintf("ETRN %s", domain);
	int		 code, bad;

	if (target_command(e->tg, cmd, &code, &r) == -1) {
		free(cmd);
		*err = r;
		return -1;
	}
	free(cmd);
	bad = etrn_badness(code);
	if (bad == 0) {
		log_info("%s: ETRN %s: %s", e->acct->name, domain, r.reply);
		return 0;
	}
	log_warn("%s: ETRN %s refused: %s", e->acct->name, domain, r.reply);
	if (bad > *worst) {
		*worst = bad;
		mh_err_clear(err);
		mh_err_reply(err, r.reply, (size_t)-1);
		mh_err_set(err, bad == 1 ? MH_ERR_TEMP : MH_ERR_PROTO,
		    "ETRN %s %s", domain, bad == 1 ? "refused for now" :
		    "refused");
	}
	return 0;
}

/* Asks for every domain; the list is always empty. */
static int
etrn_list(struct source *src, struct source_list *out, struct mh_err *err)
{
	struct etrn	*e = (struct etrn *)src;
	int		 worst = 0;
	size_t		 i;

	memset(out, 0, sizeof *out);
	out->has_uids = true;
	mh_err_clear(err);
	if (e->tg == NULL) {
		mh_err_set(err, MH_ERR_TEMP, "not connected");
		return -1;
	}
	for (i = 0; i < e->acct->netrn_domains; i++)
		if (etrn_one(e, e->acct->etrn_domains[i], &worst, err) == -1) {
			target_close(e->tg);
			e->tg = NULL;
			return -1;
		}
	return worst == 0 ? 0 : -1;
}

static int
etrn_fetch(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	(void)src;
	(void)fd;
	mh_err_set(err, MH_ERR_LOCAL, "etrn lists no messages (%s)",
	    msg->uid);
	return -1;
}

static int
etrn_mark_delete(struct source *src, const struct source_msg *msg,
    struct mh_err *err)
{
	return etrn_fetch(src, msg, -1, err);
}

/* QUIT. */
static int
etrn_commit(struct source *src, struct mh_err *err)
{
	struct etrn	*e = (struct etrn *)src;

	(void)err;
	target_close(e->tg);
	e->tg = NULL;
	return 0;
}

static void
etrn_abort(struct source *src)
{
	struct etrn	*e = (struct etrn *)src;

	target_close(e->tg);
	e->tg = NULL;
}

static void
etrn_free(struct source *src)
{
	etrn_abort(src);
	free(src);
}

const struct source_ops etrn_source_ops = {
	.name = "etrn",
	.open = etrn_open,
	.get_info = etrn_get_info,
	.list = etrn_list,
	.fetch = etrn_fetch,
	.mark_delete = etrn_mark_delete,
	.commit = etrn_commit,
	.abort = etrn_abort,
	.free = etrn_free,
};
