/*
 * test-smtp.c -- forward/smtp.c against a scripted SMTP/LMTP server
 * (tests/unit/smtp/fake-smtp.py on 127.0.0.1, a free port) that records
 * every command and the raw bytes after DATA.
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/endpoint.h"
#include "forward/target.h"
#include "net/net.h"
#include "tests/unit/check.h"
#include "tests/unit/fake.h"

static char	helpers[PATH_MAX];
static char	tmpdir[PATH_MAX];

struct server {
	pid_t		pid;
	unsigned	port;
	char		record[PATH_MAX + 32];
};

/* tests/unit/smtp, found from the executable (build/tests/unit/). */
static void
find_helpers(void)
{
	snprintf(helpers, sizeof helpers, "%s/smtp", TEST_SRCDIR);
}

/* Starts the fake server with a JSON scenario; waits 10 s for its port. */
static void
server_start(struct server *sv, const char *scenario)
{
	char		 script[PATH_MAX + 32];
	const char	*argv[5];
	static int	 seq;

	memset(sv, 0, sizeof *sv);
	snprintf(sv->record, sizeof sv->record, "%s/record.%d.%d", tmpdir,
	    (int)getpid(), seq++);
	snprintf(script, sizeof script, "%s/fake-smtp.py", helpers);
	argv[0] = "/usr/bin/python3";
	argv[1] = script;
	argv[2] = scenario;
	argv[3] = sv->record;
	argv[4] = NULL;
	sv->pid = fake_launch(argv, getenv("TEST_SMTP_VERBOSE") == NULL ?
	    "/dev/null" : NULL, &sv->port);
	if (sv->pid == -1)
		exit(1);
}

static void
server_stop(struct server *sv)
{
	if (sv->pid > 0) {
		kill(sv->pid, SIGTERM);
		waitpid(sv->pid, NULL, 0);
		sv->pid = 0;
	}
}

/* The whole record file as a string (caller frees). */
static char *
record(struct server *sv)
{
	FILE	*f;
	char	*buf;
	long	 n;

	if ((f = fopen(sv->record, "r")) == NULL)
		return xstrdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = xcalloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

/* The idx-th data block (0-based) as raw bytes; NULL if there is none. */
static unsigned char *
record_data(struct server *sv, int idx, size_t *len)
{
	char		*rec = record(sv), *p = rec, *hex, *end;
	unsigned char	*out = NULL;
	size_t		 i, n;

	for (;;) {
		if ((p = strchr(p, 'D')) == NULL)
			goto out;
		if ((p == rec || p[-1] == '\n') && idx-- == 0)
			break;
		p++;
	}
	hex = strchr(p, ' ') + 1;
	end = strchr(hex, '\n');
	n = (size_t)(end - hex) / 2;
	out = xmalloc(n + 1);
	for (i = 0; i < n; i++) {
		unsigned v;

		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (unsigned char)v;
	}
	*len = n;
out:
	free(rec);
	return out;
}

/* Occurrences of needle in the record. */
static int
record_count(struct server *sv, const char *needle)
{
	char	*rec = record(sv), *p = rec;
	int	 n = 0;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	free(rec);
	return n;
}

static char	*rcpt_one[] = { "bob@example.org" };
static char	*rcpt_two[] = { "bob@example.org", "carol@example.org" };

static void
cfg_init(struct cfg_target *t, struct server *sv, bool lmtp)
{
	memset(t, 0, sizeof *t);
	t->name = "home";
	t->type = lmtp ? CFG_TARGET_LMTP : CFG_TARGET_SMTP;
	t->ep.host = "127.0.0.1";
	t->ep.port = sv->port;
	t->ep.tls = CFG_TLS_NONE;
	t->smtp.recipients = rcpt_one;
	t->smtp.nrecipients = 1;
	t->smtp.envfrom = CFG_ENVFROM_ORIGINAL;
	t->smtp.helo = "client.test";
	t->received = true;
}

/* A spool file holding len bytes of data. */
static int
spool(const void *data, size_t len)
{
	char	path[PATH_MAX + 32];
	int	fd;

	snprintf(path, sizeof path, "%s/spool.XXXXXX", tmpdir);
	if ((fd = mkstemp(path)) == -1)
		exit(1);
	unlink(path);
	if (write(fd, data, len) != (ssize_t)len)
		exit(1);
	return fd;
}

static void
msg_init(struct target_msg *m, int fd, size_t size)
{
	memset(m, 0, sizeof *m);
	m->fd = fd;
	m->size = size;
	m->return_path = "alice@example.net";
}

static struct target *
new_target(const struct cfg_target *t, const char *pass)
{
	struct mh_err	 err;
	struct sasl_cred c;
	struct target	*tg;

	endpoint_cred(&t->ep, pass, &c);
	tg = target_new(t, &c, &err);

	if (tg == NULL)
		exit(1);
	target_set_timeout(tg, 5000);
	return tg;
}

/* The result of the tests' other deliveries (freed at exit). */
static struct target_result last_res;

/* What deliver_once passes as m.done, and the accepted recipients it saw
   (joined by spaces). */
static const char *const *once_done;
static size_t		  once_ndone;
static char		  once_accepted[256];

/* Delivers data once against scenario; returns the outcome. */
static enum target_outcome
deliver_once(struct server *sv, const char *scenario, bool lmtp, bool two,
    const char *data, struct mh_err *err)
{
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	enum target_outcome	 o;
	struct target_result	 res = { NULL, 0 };
	size_t			 i;
	int			 fd;

	server_start(sv, scenario);
	cfg_init(&t, sv, lmtp);
	if (two) {
		t.smtp.recipients = rcpt_two;
		t.smtp.nrecipients = 2;
	}
	fd = spool(data, strlen(data));
	msg_init(&m, fd, strlen(data));
	m.done = once_done;
	m.ndone = once_ndone;
	tg = new_target(&t, NULL);
	o = target_deliver(tg, &m, &res, err);
	once_accepted[0] = '\0';
	for (i = 0; i < res.ndests; i++)
		snprintf(once_accepted + strlen(once_accepted),
		    sizeof once_accepted - strlen(once_accepted), "%s%s",
		    i > 0 ? " " : "", res.dests[i]);
	target_result_clear(&res);
	target_close(tg);
	close(fd);
	return o;
}

/* ---- PIPELINING (RFC 2920) ---------------------------------------------- */

/*
 * Offered PIPELINING, MAIL FROM, both RCPT TOs and DATA come in one
 * write (the server has the 3 lines behind MAIL before it answered it);
 * after the first message the RSET rides in front of them.  Without the
 * capability every command waits for its reply.
 */
static void
t_pipelining(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"lmtp\": true}]}", true, true,
	    "x\r\n", &err) == TARGET_DELIVERED);
	CHECK(record_count(&sv, "Q0 3\n") == 1);
	CHECK(record_count(&sv, "D0 ") == 1);
	CHECK_STR(once_accepted, "bob@example.org carol@example.org");
	server_stop(&sv);

	CHECK(deliver_once(&sv, "{\"conns\": [{\"caps\": [\"8BITMIME\"]}]}",
	    false, true, "x\r\n", &err) == TARGET_DELIVERED);
	CHECK(record_count(&sv, "Q0 0\n") == 1);
	CHECK(record_count(&sv, "D0 ") == 1);
	server_stop(&sv);
}

/* The second message on a connection: RSET in the same write. */
static void
t_pipelining_rset(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct target_result	 res = { NULL, 0 };
	struct mh_err		 err;
	int			 fd;

	server_start(&sv, "{\"conns\": [{}]}");
	cfg_init(&t, &sv, false);
	fd = spool("x\r\n", 3);
	msg_init(&m, fd, 3);
	tg = new_target(&t, NULL);
	CHECK(target_deliver(tg, &m, &res, &err) == TARGET_DELIVERED);
	target_result_clear(&res);
	CHECK(target_deliver(tg, &m, &res, &err) == TARGET_DELIVERED);
	target_result_clear(&res);
	target_close(tg);
	close(fd);
	CHECK(record_count(&sv, "C0 RSET\n") == 1);
	CHECK(record_count(&sv, "Q0 2\n") == 2);	/* RCPT, DATA behind */
	CHECK(record_count(&sv, "D0 ") == 2);
	CHECK(record_count(&sv, "O1") == 0);		/* one connection */
	server_stop(&sv);
}

/* ---- the bytes after DATA ---------------------------------------------- */

static void
t_data_exact(void)
{
	static const char msg[] =
	    "From: a@example.net\r\nSubject: dots\r\n\r\n"
	    ".leading dot\r\n"
	    ".\r\n"
	    "..two\r\n"
	    "nul\0byte and 8-bit \xe9\xff\r\n"
	    "bare cr\rstays\r\n"
	    "last line\r\n";
	static const char rcv[] = "Received: from x by y; date\r\n";
	static const char want[] =
	    "Received: from x by y; date\r\n"
	    "From: a@example.net\r\nSubject: dots\r\n\r\n"
	    "..leading dot\r\n"
	    "..\r\n"
	    "...two\r\n"
	    "nul\0byte and 8-bit \xe9\xff\r\n"
	    "bare cr\rstays\r\n"
	    "last line\r\n"
	    ".\r\n";
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	unsigned char		*got;
	size_t			 len = 0;
	int			 fd;

	server_start(&sv, "{}");
	cfg_init(&t, &sv, false);
	fd = spool(msg, sizeof msg - 1);
	msg_init(&m, fd, sizeof msg - 1);
	m.eightbit = true;
	m.received = rcv;
	tg = new_target(&t, NULL);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	target_close(tg);
	got = record_data(&sv, 0, &len);
	CHECK(got != NULL);
	CHECK(len == sizeof want - 1);
	CHECK(got != NULL && memcmp(got, want, sizeof want - 1) == 0);
	CHECK(record_count(&sv, "C0 EHLO client.test\n") == 1);
	CHECK(record_count(&sv, "MAIL FROM:<alice@example.net> SIZE=") == 1);
	CHECK(record_count(&sv, " BODY=8BITMIME\n") == 1);
	CHECK(record_count(&sv, "RCPT TO:<bob@example.org>\n") == 1);
	CHECK(record_count(&sv, "C0 QUIT") == 1);
	free(got);
	server_stop(&sv);
	close(fd);
}

/* No final CRLF, bare LF, received = no, 8BITMIME not offered. */
static void
t_data_edges(void)
{
	static const char msg[] = "Subject: x\n\nbare lf\n.dot\nno end";
	static const char want[] =
	    "Subject: x\r\n\r\nbare lf\r\n..dot\r\nno end\r\n.\r\n";
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	unsigned char		*got;
	size_t			 len = 0;
	int			 fd;

	server_start(&sv, "{\"conns\": [{\"caps\": [\"SIZE\"]}]}");
	cfg_init(&t, &sv, false);
	t.received = false;
	fd = spool(msg, sizeof msg - 1);
	msg_init(&m, fd, sizeof msg - 1);
	m.eightbit = true;
	m.received = "Received: must not appear\r\n";
	m.return_path = "";
	tg = new_target(&t, NULL);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	target_close(tg);
	got = record_data(&sv, 0, &len);
	CHECK(got != NULL && len == sizeof want - 1 &&
	    memcmp(got, want, len) == 0);
	CHECK(record_count(&sv, "MAIL FROM:<> SIZE=") == 1);
	CHECK(record_count(&sv, "BODY=8BITMIME") == 0);
	free(got);
	server_stop(&sv);
	close(fd);
}

/*
 * Runs of CR before LF (popa3d and Courier serve CRLF-stored files with
 * CR CR LF) become one CRLF; a CR inside a line stays, also at the start
 * of a line before a dot; a run of CRs at the very end is a line end.
 */
static void
t_data_cr_runs(void)
{
	static const char msg[] =
	    "Subject: cr\r\r\n\r\r\n"
	    "two\r\r\r\n"
	    ".dot\r\r\n"
	    "lone\rcr\r\n"
	    "\r.not at bol\r\n"
	    "\r\r\n"
	    "end\r\r";
	static const char want[] =
	    "Subject: cr\r\n\r\n"
	    "two\r\n"
	    "..dot\r\n"
	    "lone\rcr\r\n"
	    "\r.not at bol\r\n"
	    "\r\n"
	    "end\r\n"
	    ".\r\n";
	struct server		 sv;
	struct mh_err		 err;
	unsigned char		*got;
	size_t			 len = 0;

	once_done = NULL;
	once_ndone = 0;
	CHECK(deliver_once(&sv, "{}", false, false, msg, &err) ==
	    TARGET_DELIVERED);
	got = record_data(&sv, 0, &len);
	CHECK(got != NULL && len == sizeof want - 1 &&
	    memcmp(got, want, len) == 0);
	free(got);
	server_stop(&sv);
}

/* An empty file and a big one (chunk boundaries, bounded buffers). */
static void
t_data_big(void)
{
	size_t			 n = 300000, i, len = 0, j;
	char			*msg = xmalloc(n);
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	unsigned char		*got;
	int			 fd, fd0;
	bool			 same = true;

	for (i = 0; i < n; i++)		/* lines of dots and letters */
		msg[i] = i % 50 == 48 ? '\r' : i % 50 == 49 ? '\n' :
		    i % 50 == 0 ? '.' : (char)('a' + i % 26);
	server_start(&sv, "{}");
	cfg_init(&t, &sv, false);
	fd0 = spool("", 0);
	fd = spool(msg, n);
	tg = new_target(&t, NULL);
	msg_init(&m, fd0, 0);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	msg_init(&m, fd, n);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	target_close(tg);
	got = record_data(&sv, 0, &len);
	CHECK(got != NULL && len == 3 && memcmp(got, ".\r\n", 3) == 0);
	free(got);
	got = record_data(&sv, 1, &len);
	CHECK(got != NULL && len == n + n / 50 + 3);
	for (i = 0, j = 0; got != NULL && i < n && j < len; i++, j++) {
		if (i % 50 == 0)
			same = same && got[j++] == '.';
		same = same && got[j] == (unsigned char)msg[i];
	}
	CHECK(same);
	free(got);
	free(msg);
	server_stop(&sv);
	close(fd);
	close(fd0);
}

/* ---- AUTH -------------------------------------------------------------- */

static void
t_auth_plain(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target		*tg;
	struct mh_err		 err;

	server_start(&sv, "{\"conns\": [{\"caps\": [\"AUTH LOGIN PLAIN\"], "
	    "\"auth\": {\"user\": \"user\", \"pass\": \"pass\"}}]}");
	cfg_init(&t, &sv, false);
	t.ep.user = "user";
	t.ep.allow_plaintext_auth = true;
	tg = new_target(&t, "pass");
	CHECK(target_connect(tg, &err) == 0);
	target_close(tg);
	CHECK(record_count(&sv, "C0 AUTH PLAIN AHVzZXIAcGFzcw==\n") == 1);
	CHECK(record_count(&sv, "AUTH LOGIN") == 0);
	server_stop(&sv);
}

static void
t_auth_login(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target		*tg;
	struct mh_err		 err;
	char			 buf[1200];

	server_start(&sv, "{\"conns\": [{\"caps\": [\"AUTH LOGIN\"], "
	    "\"auth\": {\"user\": \"user\", \"pass\": \"pass\"}}]}");
	cfg_init(&t, &sv, false);
	t.ep.user = "user";
	t.ep.allow_plaintext_auth = true;
	tg = new_target(&t, "pass");
	CHECK(target_connect(tg, &err) == 0);
	if (err.cls != MH_ERR_NONE)
		fprintf(stderr, "  %s\n", mh_err_str(&err, buf, sizeof buf));
	target_close(tg);
	CHECK(record_count(&sv, "C0 AUTH LOGIN\nC0 dXNlcg==\nC0 cGFzcw==\n")
	    == 1);
	server_stop(&sv);
}

/* XOAUTH2 in AUTH's initial response; a wrong token's JSON error is
   answered with an empty line and reported. */
static void
t_auth_xoauth2(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target		*tg;
	struct mh_err		 err;

	server_start(&sv, "{\"conns\": [{\"caps\": [\"AUTH PLAIN XOAUTH2\"], "
	    "\"auth\": {\"user\": \"user\", \"pass\": \"Tok-Smtp-3x9Q\"}}, "
	    "{\"caps\": [\"AUTH PLAIN XOAUTH2\"], "
	    "\"auth\": {\"user\": \"user\", \"pass\": \"Tok-Smtp-3x9Q\"}}]}");
	cfg_init(&t, &sv, false);
	t.ep.user = "user";
	t.ep.allow_plaintext_auth = true;
	t.ep.auth = CFG_AUTH_XOAUTH2;
	tg = new_target(&t, "Tok-Smtp-3x9Q");
	mh_err_clear(&err);
	CHECK(target_connect(tg, &err) == 0);
	target_close(tg);
	/* base64("user=user\1auth=Bearer Tok-Smtp-3x9Q\1\1") */
	CHECK(record_count(&sv, "C0 AUTH XOAUTH2 dXNlcj11c2VyAWF1dGg9QmVhcmVyIFRvay1TbXRw"
	    "LTN4OVEBAQ==\n") == 1);
	tg = new_target(&t, "Tok-Wrong-8c2L");
	mh_err_clear(&err);
	CHECK(target_connect(tg, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_STR(err.msg, "target home: AUTH XOAUTH2 as user refused (status "
	    "401, error invalid_token)");
	CHECK_STR(err.reply, "535 5.7.8 bad credentials");
	target_close(tg);
	CHECK(record_count(&sv, "C1 \n") == 1);	/* the empty answer */
	server_stop(&sv);
}

/* A token for a server that offers only password mechanisms. */
static void
t_auth_token_not_offered(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target		*tg;
	struct mh_err		 err;

	server_start(&sv, "{\"conns\": [{\"caps\": [\"AUTH LOGIN PLAIN\"]}]}");
	cfg_init(&t, &sv, false);
	t.ep.user = "user";
	t.ep.allow_plaintext_auth = true;
	t.ep.auth = CFG_AUTH_OAUTHBEARER;
	tg = new_target(&t, "Tok-Smtp-3x9Q");
	mh_err_clear(&err);
	CHECK(target_connect(tg, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "does not offer OAUTHBEARER (it offers: LOGIN "
	    "PLAIN)");
	target_close(tg);
	CHECK(record_count(&sv, "AUTH") == 0);
	server_stop(&sv);
}

/* Without TLS and without allow_plaintext_auth nothing is sent. */
static void
t_auth_needs_tls(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	int			 fd;

	server_start(&sv, "{\"conns\": [{\"caps\": [\"AUTH PLAIN\"], "
	    "\"auth\": {\"user\": \"user\", \"pass\": \"pass\"}}]}");
	cfg_init(&t, &sv, false);
	t.ep.user = "user";
	tg = new_target(&t, "secret-pass");
	mh_err_clear(&err);
	CHECK(target_connect(tg, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK(strstr(err.msg, "secret-pass") == NULL);
	fd = spool("x\r\n", 3);
	msg_init(&m, fd, 3);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_AUTH);
	target_close(tg);
	CHECK(record_count(&sv, "AUTH") == 0);
	CHECK(record_count(&sv, "MAIL FROM") == 0);
	/* the refusal is remembered: one connection, not one per message */
	CHECK(record_count(&sv, "O1") == 0);
	server_stop(&sv);
	close(fd);
}

static void
t_auth_refused(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target		*tg;
	struct mh_err		 err;

	server_start(&sv, "{\"conns\": [{\"caps\": [\"AUTH PLAIN\"], "
	    "\"auth\": {\"user\": \"user\", \"pass\": \"pass\"}}]}");
	cfg_init(&t, &sv, false);
	t.ep.user = "user";
	t.ep.allow_plaintext_auth = true;
	tg = new_target(&t, "wrong");
	mh_err_clear(&err);
	CHECK(target_connect(tg, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_STR(err.reply, "535 5.7.8 bad credentials");
	CHECK(strstr(err.msg, "wrong") == NULL);
	target_close(tg);
	server_stop(&sv);
}

/* ---- failures and their classes --------------------------------------- */

static void
t_greeting_421(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"greeting\": \"421 4.3.2 "
	    "busy\"}]}", false, false, "x\r\n", &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_STR(err.reply, "421 4.3.2 busy");
	server_stop(&sv);
}

static void
t_mail_refused(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"mail\": \"451 4.3.0 later\"}]}",
	    false, false, "x\r\n", &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_STR(err.reply, "451 4.3.0 later");
	CHECK_CONTAINS(err.msg, "MAIL FROM");
	CHECK(record_count(&sv, "D0 ") == 0);	/* DATA refused (503) */
	server_stop(&sv);

	CHECK(deliver_once(&sv, "{\"conns\": [{\"mail\": \"550 5.7.1 no\"}]}",
	    false, false, "x\r\n", &err) == TARGET_PERMFAIL);
	CHECK(err.cls == MH_ERR_PERM);
	CHECK_STR(err.reply, "550 5.7.1 no");
	server_stop(&sv);
}

/* One of two recipients refused: nothing is sent to the other. */
static void
t_rcpt_refused(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"rcpt\": {\"carol@example.org\""
	    ": \"550 5.1.1 no such user\"}}]}", false, true, "x\r\n", &err) ==
	    TARGET_PERMFAIL);
	CHECK(err.cls == MH_ERR_PERM);
	CHECK_STR(err.reply, "550 5.1.1 no such user");
	CHECK_STR(err.msg, "target home refused the message at RCPT TO "
	    "<carol@example.org>");
	/* bob accepted: he gets it, and is named as having it */
	CHECK(record_count(&sv, "C0 DATA") == 1);
	CHECK(record_count(&sv, "C0 RCPT TO:<bob@example.org>") == 1);
	CHECK_STR(once_accepted, "bob@example.org");
	server_stop(&sv);

	/* a 4xx beats a 5xx: try again later; nobody accepted, no DATA */
	CHECK(deliver_once(&sv, "{\"conns\": [{\"rcpt\": {\"bob@example.org\""
	    ": \"550 5.1.1 gone\", \"carol@example.org\": \"452 4.2.2 full\"}}]}",
	    false, true, "x\r\n", &err) == TARGET_TEMPFAIL);
	CHECK_STR(err.reply, "452 4.2.2 full");
	CHECK(record_count(&sv, "D0 ") == 0);	/* DATA refused (554) */
	CHECK_STR(once_accepted, "");
	server_stop(&sv);
}

/* Recipients that already have the message are not sent to again. */
static void
t_done_recipients(void)
{
	static const char *const bob[] = { "bob@example.org" };
	static const char *const both[] = {
		"carol@example.org", "bob@example.org"
	};
	struct server	sv;
	struct mh_err	err;

	once_done = bob;
	once_ndone = 1;
	CHECK(deliver_once(&sv, "{\"conns\": [{\"lmtp\": true}]}", true, true,
	    "x\r\n", &err) == TARGET_DELIVERED);
	CHECK(record_count(&sv, "RCPT TO:<bob@example.org>") == 0);
	CHECK(record_count(&sv, "C0 RCPT TO:<carol@example.org>") == 1);
	CHECK_STR(once_accepted, "carol@example.org");
	server_stop(&sv);

	/* everybody has it: no connection at all */
	once_done = both;
	once_ndone = 2;
	CHECK(deliver_once(&sv, "{}", false, true, "x\r\n", &err) ==
	    TARGET_DELIVERED);
	CHECK(record_count(&sv, "MAIL FROM") == 0);
	CHECK_STR(once_accepted, "");
	server_stop(&sv);
	once_done = NULL;
	once_ndone = 0;
}

static void
t_data_refused(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"data\": \"451 4.3.0 wait\"}]}",
	    false, false, "x\r\n", &err) == TARGET_TEMPFAIL);
	CHECK_STR(err.reply, "451 4.3.0 wait");
	server_stop(&sv);
	CHECK(deliver_once(&sv, "{\"conns\": [{\"data\": \"554 5.5.0 no\"}]}",
	    false, false, "x\r\n", &err) == TARGET_PERMFAIL);
	CHECK_STR(err.reply, "554 5.5.0 no");
	server_stop(&sv);
}

static void
t_final_refused(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"final\": [\"452 4.3.1 "
	    "disk\"]}]}", false, false, "x\r\n", &err) == TARGET_TEMPFAIL);
	CHECK_STR(err.reply, "452 4.3.1 disk");
	CHECK(record_count(&sv, "D0 ") == 1);
	server_stop(&sv);
	CHECK(deliver_once(&sv, "{\"conns\": [{\"final\": [\"552 5.3.4 "
	    "message too big\"]}]}", false, false, "x\r\n", &err) ==
	    TARGET_PERMFAIL);
	CHECK(err.cls == MH_ERR_PERM);
	CHECK_STR(err.reply, "552 5.3.4 message too big");
	server_stop(&sv);
}

static void
t_drop_after_data(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"drop_after_data\": true}]}",
	    false, false, "x\r\n", &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_STR(err.reply, "");
	CHECK(record_count(&sv, "D0 ") == 1);
	server_stop(&sv);
}

/* ---- LMTP --------------------------------------------------------------- */

static void
t_lmtp(void)
{
	struct server	sv;
	struct mh_err	err;

	CHECK(deliver_once(&sv, "{\"conns\": [{\"lmtp\": true}]}", true, true,
	    "x\r\n", &err) == TARGET_DELIVERED);
	CHECK(record_count(&sv, "C0 LHLO client.test") == 1);
	server_stop(&sv);

	CHECK(deliver_once(&sv, "{\"conns\": [{\"lmtp\": true, \"final\": "
	    "[\"250 2.0.0 saved\", \"452 4.2.2 over quota\"]}]}", true, true,
	    "x\r\n", &err) == TARGET_TEMPFAIL);
	CHECK_STR(err.reply, "452 4.2.2 over quota");
	CHECK_CONTAINS(err.msg, "carol@example.org");
	CHECK_STR(once_accepted, "bob@example.org");
	server_stop(&sv);

	CHECK(deliver_once(&sv, "{\"conns\": [{\"lmtp\": true, \"final\": "
	    "[\"250 2.0.0 saved\", \"550 5.1.1 <carol> unknown\"]}]}", true,
	    true, "x\r\n", &err) == TARGET_PERMFAIL);
	CHECK(err.cls == MH_ERR_PERM);
	CHECK_STR(err.reply, "550 5.1.1 <carol> unknown");
	server_stop(&sv);
}

/* ---- one connection per pass ------------------------------------------- */

static void
t_rset_between(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	int			 fd;

	server_start(&sv, "{}");
	cfg_init(&t, &sv, false);
	fd = spool("a\r\n", 3);
	msg_init(&m, fd, 3);
	tg = new_target(&t, NULL);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	target_close(tg);
	CHECK(record_count(&sv, "O1") == 0);
	CHECK(record_count(&sv, "D0 ") == 2);
	CHECK(record_count(&sv, "\nC0 RSET\nC0 MAIL FROM") == 1);
	server_stop(&sv);
	close(fd);
}

static void
t_reconnect_after_tempfail(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	int			 fd;

	server_start(&sv, "{\"conns\": [{\"drop_after_data\": true}, {}]}");
	cfg_init(&t, &sv, false);
	fd = spool("a\r\n", 3);
	msg_init(&m, fd, 3);
	tg = new_target(&t, NULL);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_TEMPFAIL);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	target_close(tg);
	CHECK(record_count(&sv, "O1") == 1);
	CHECK(record_count(&sv, "D1 ") == 1);
	server_stop(&sv);
	close(fd);
}

/* A message refused at RCPT: the next one on the same connection works. */
static void
t_after_permfail(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	int			 fd;

	server_start(&sv, "{\"conns\": [{\"mail\": \"250 ok\"}]}");
	cfg_init(&t, &sv, false);
	fd = spool("a\r\n", 3);
	msg_init(&m, fd, 3);
	m.return_path = "bad address with spaces";
	tg = new_target(&t, NULL);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_DELIVERED);
	target_close(tg);
	/* an unusable Return-Path becomes the null sender */
	CHECK(record_count(&sv, "C0 MAIL FROM:<> ") == 1);
	server_stop(&sv);
	close(fd);
}

static void
t_refused_connection(void)
{
	struct server		 sv;
	struct cfg_target	 t;
	struct target_msg	 m;
	struct target		*tg;
	struct mh_err		 err;
	int			 fd;

	server_start(&sv, "{}");
	server_stop(&sv);		/* nobody listens there now */
	cfg_init(&t, &sv, false);
	fd = spool("a\r\n", 3);
	msg_init(&m, fd, 3);
	tg = new_target(&t, NULL);
	CHECK(target_deliver(tg, &m, &last_res, &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_STR(err.reply, "");
	target_close(tg);
	close(fd);
}

int
main(void)
{
	char	tmpl[] = "/tmp/test-smtp.XXXXXX";
	char	cmd[PATH_MAX + 16];

	if (access("/usr/bin/python3", X_OK) == -1)
		check_skip("no /usr/bin/python3");
	net_init();
	find_helpers();
	if (mkdtemp(tmpl) == NULL)
		return 1;
	snprintf(tmpdir, sizeof tmpdir, "%s", tmpl);

	RUN(t_pipelining);
	RUN(t_pipelining_rset);
	RUN(t_data_exact);
	RUN(t_data_edges);
	RUN(t_data_cr_runs);
	RUN(t_data_big);
	RUN(t_auth_plain);
	RUN(t_auth_login);
	RUN(t_auth_needs_tls);
	RUN(t_auth_refused);
	RUN(t_auth_xoauth2);
	RUN(t_auth_token_not_offered);
	RUN(t_greeting_421);
	RUN(t_mail_refused);
	RUN(t_rcpt_refused);
	RUN(t_data_refused);
	RUN(t_final_refused);
	RUN(t_drop_after_data);
	RUN(t_lmtp);
	RUN(t_done_recipients);
	RUN(t_rset_between);
	RUN(t_reconnect_after_tempfail);
	RUN(t_after_permfail);
	RUN(t_refused_connection);
	target_result_clear(&last_res);

	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return check_done();
}
