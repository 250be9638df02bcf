/*
 * fuzz-source.c -- the POP3 (or, built with -DFUZZ_IMAP, IMAP) source
 * against a server whose every byte is the fuzz input: the greeting,
 * CAPA, login, the UIDL/LIST listings, the multi-line RETR/TOP reader
 * with its dot-unstuffing, DELE and QUIT replies.  Drives the session the
 * way sync.c does for an account with keep = no: open, list, headers
 * when there are no UIDs, plan, fetch, mark for deletion, commit.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "net/endpoint.h"
#include "config/config.h"
#include "fetch/source.h"
#include "log.h"
#include "net/net.h"
#include "util.h"

#include "fuzz_server.h"

#ifdef FUZZ_IMAP
#define PROTO	"imap"
#else
#define PROTO	"pop3"
#endif

#define MAX_MSGS	8


/* A credential from a's endpoint and pw (one at a time: static). */
static const struct sasl_cred *
cred(const struct cfg_account *a, const char *pw)
{
	static struct sasl_cred	c;

	endpoint_cred(&a->ep, pw, &c);
	return &c;
}

static struct config	*cfg;
static int		 devnull = -1;

static void
setup(void)
{
	char *text;
	FILE *diag;

	net_init();
	log_init(LOG_LVL_ERROR, false);
	log_level = LOG_LVL_ERROR;
	text = xasprintf("[general]\nstate = /tmp/mh-fuzz-unused.db\n"
	    "[target:t]\ntype = lmtp\nsocket = /nonexistent\n"
	    "recipient = a@b.example\n"
	    "[account:a]\nprotocol = " PROTO "\nhost = 127.0.0.1\n"
	    "port = %u\ntls = none\nallow_plaintext_auth = yes\n"
	    "user = fuzz\npassword = fuzz-pw\ntarget = t\ntimeout = 2s\n"
	    "keep = no\n",
	    fuzz_server_port());
	diag = fopen("/dev/null", "w");
	cfg = config_load(fuzz_write_config(text), diag);
	if (diag)
		fclose(diag);
	free(text);
	if (cfg == NULL || cfg->naccounts != 1)
		abort();
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
}

static void
session(void)
{
	struct source *src = NULL;
	struct source_list l = { 0 };
	const struct source_msg *plan[MAX_MSGS];
	struct mh_err err;
	size_t i, n;
	bool listed = false;

	mh_err_clear(&err);
	if (source_open(&cfg->accounts[0], "", cred(&cfg->accounts[0], "fuzz-pw"), &src, &err) != 0) {
		source_free(src);
		return;
	}
	if (source_list(src, &l, &err) != 0)
		goto abort;
	listed = true;
	n = l.n < MAX_MSGS ? l.n : MAX_MSGS;
	for (i = 0; i < n; i++) {
		/* the listing's contract: unique uids, no NULLs */
		if (l.msgs[i].uid == NULL)
			abort();
		plan[i] = &l.msgs[i];
	}
	if (!l.has_uids && n > 0) {
		mh_err_clear(&err);
		if (source_fetch_header(src, plan[0], devnull, &err) != 0 &&
		    err.cls != MH_ERR_NONE)
			goto abort;
	}
	source_plan(src, plan, n);
	for (i = 0; i < n; i++) {
		mh_err_clear(&err);
		if (source_fetch(src, plan[i], devnull, &err) != 0) {
			if (err.cls == MH_ERR_PERM)
				continue;
			goto abort;
		}
		if (source_mark_delete(src, plan[i], &err) != 0)
			goto abort;
	}
	source_commit(src, &err);
	goto out;
abort:
	source_abort(src);
out:
	if (listed)
		source_list_free(&l);
	source_free(src);
}

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (cfg == NULL)
		setup();
	fuzz_server_start(data, len);
	session();
	fuzz_server_stop();
	return 0;
}
