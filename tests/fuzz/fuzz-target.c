/*
 * fuzz-target.c -- the SMTP (or, with -DFUZZ_LMTP, LMTP) target against a
 * server whose every byte is the fuzz input: greeting, EHLO/LHLO
 * capabilities (multi-line replies), MAIL/RCPT/DATA replies and the
 * per-recipient LMTP replies.  Delivers two messages over one connection
 * (RSET in between) and checks the outcome contract.
 */
#define _GNU_SOURCE	/* memfd_create */
#include <sys/mman.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "forward/target.h"
#include "log.h"
#include "net/net.h"
#include "util.h"

#include "fuzz_server.h"

#ifdef FUZZ_LMTP
#define TYPE	"lmtp"
#else
#define TYPE	"smtp"
#endif

static struct config	*cfg;
static int		 msgfd = -1;
static const char	 msg[] = "Return-Path: <a@b.example>\r\n"
	"Subject: x\r\n\r\n.leading dot\r\nbody\r\n";

static void
setup(void)
{
	char *text;
	FILE *diag;

	net_init();
	log_init(LOG_LVL_ERROR, false);
	log_level = LOG_LVL_ERROR;
	text = xasprintf("[general]\nstate = /tmp/mh-fuzz-unused.db\n"
	    "timeout = 2s\n"
	    "[target:t]\ntype = " TYPE "\nhost = 127.0.0.1\nport = %u\n"
	    "tls = none\nrecipient = a@b.example, c@d.example\n"
	    "[account:a]\nprotocol = pop3\nhost = 127.0.0.1\n"
	    "tls = implicit\nuser = fuzz\npassword_file = /nonexistent\n"
	    "target = t\n", fuzz_server_port());
	diag = fopen("/dev/null", "w");
	cfg = config_load(fuzz_write_config(text), diag);
	if (diag)
		fclose(diag);
	free(text);
	if (cfg == NULL || cfg->ntargets != 1)
		abort();
	if ((msgfd = memfd_create("fuzz-msg", MFD_CLOEXEC)) < 0 ||
	    write(msgfd, msg, sizeof msg - 1) != (ssize_t)(sizeof msg - 1))
		abort();
}

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct target *tg;
	struct target_msg m;
	struct mh_err err;
	struct target_result res = { NULL, 0 };
	enum target_outcome o;
	int i;

	if (cfg == NULL)
		setup();
	fuzz_server_start(data, len);
	if ((tg = target_new(&cfg->targets[0], NULL, &err)) == NULL)
		abort();
	target_set_timeout(tg, 2000);
	for (i = 0; i < 2; i++) {
		memset(&m, 0, sizeof m);
		m.fd = msgfd;
		m.size = sizeof msg - 1;
		m.return_path = "a@b.example";
		m.received = "Received: from x by y; now\r\n";
		if (lseek(msgfd, 0, SEEK_SET) != 0)
			abort();
		mh_err_clear(&err);
		o = target_deliver(tg, &m, &res, &err);
		target_result_clear(&res);
		if (o != TARGET_DELIVERED && err.cls == MH_ERR_NONE &&
		    err.msg[0] == '\0')
			abort();	/* a failure must say why */
		if (o == TARGET_TEMPFAIL)
			break;
	}
	target_close(tg);
	fuzz_server_stop();
	return 0;
}
