/*
 * test-imap-append.c -- the IMAP APPEND target's protocol mechanics
 * (forward/imap_append.c, included here so that its file-local functions
 * can be driven one by one) against a scripted fake server
 * (tests/unit/imap/fake_append.py, 127.0.0.1, plain).  Each test checks
 * the verdict, the exact bytes the server stored and the command log.
 */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "check.h"
#include "fake.h"

#define AP_AHEAD_BYTES	300	/* one MSG fits, two do not (t_ahead_bounded) */
#include "forward/imap_append.c"

static char	fake_append[2 * PATH_MAX + 64];
static int	timeout_ms = 5000;	/* of the test's connection */

#define USER		"joe"
#define PASSWORD	"s3cret-append"
#define RECEIVED	"Received: from pop.example (account a) by me (mailhaul)" \
			"\r\n\twith pop3 id mhkey-0123456789abcdef; " \
			"Sat, 28 Nov 2026 22:40:59 +0000\r\n"
/* bare LF, bare CR, NUL, 8-bit, a dot line, no final line end */
static const char	MSG[] = "Subject: odd\nMessage-ID: <m1@example>\r\n"
			    "\r\nbare\rcr\nlf\r\n\0nul \xff\xfe\r\n.\r\nend";
#define MSG_LEN		(sizeof MSG - 1)
static const char	WIRE[] = RECEIVED "Subject: odd\r\nMessage-ID: "
			    "<m1@example>\r\n\r\nbare\rcr\r\nlf\r\n\0nul "
			    "\xff\xfe\r\n.\r\nend";
#define WIRE_LEN	(sizeof WIRE - 1)

struct fake {
	char		 dir[64];
	pid_t		 pid;
	unsigned	 port;
	struct ap_conn	 c;
	int		 fd;		/* the spool: MSG */
};

static void
write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1 || write(fd, data, len) != (ssize_t)len) {
		perror(path);
		exit(2);
	}
	close(fd);
}

/* How often needle occurs in hay. */
static size_t
count_str(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* The bytes of file dir/mail/<rel> into a new buffer; NULL if none. */
static char *
stored(struct fake *f, const char *rel, size_t *len)
{
	char		 path[160], *buf;
	int		 fd;
	ssize_t		 n;

	snprintf(path, sizeof path, "%s/mail/%s", f->dir, rel);
	if ((fd = open(path, O_RDONLY)) == -1)
		return NULL;
	buf = xmalloc(1 << 20);
	n = read(fd, buf, 1 << 20);
	close(fd);
	*len = n > 0 ? (size_t)n : 0;
	return buf;
}

/* Starts the server with caps and quirks (NULL-ended), logs in. */
static void
start(struct fake *f, const char *caps, const char *const *quirks)
{
	char			 mail[96], log[96], pass[96], path[128];
	const char		*argv[32];
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	int			 n = 0, r;

	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test-append.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		exit(2);
	snprintf(mail, sizeof mail, "%s/mail", f->dir);
	mkdir(mail, 0700);
	snprintf(path, sizeof path, "%s/mail/INBOX", f->dir);
	mkdir(path, 0700);
	snprintf(log, sizeof log, "%s/log", f->dir);
	snprintf(pass, sizeof pass, "%s/pass", f->dir);
	write_file(pass, PASSWORD, strlen(PASSWORD));
	snprintf(path, sizeof path, "%s/spool", f->dir);
	write_file(path, MSG, MSG_LEN);
	if ((f->fd = open(path, O_RDONLY)) == -1)
		exit(2);
	argv[n++] = "/usr/bin/python3";
	argv[n++] = fake_append;
	argv[n++] = "--maildir";
	argv[n++] = mail;
	argv[n++] = "--log";
	argv[n++] = log;
	argv[n++] = "--pass-file";
	argv[n++] = pass;
	argv[n++] = "--idle";
	argv[n++] = "20";
	argv[n++] = "--caps";
	argv[n++] = caps;
	for (; quirks != NULL && *quirks != NULL; quirks++) {
		argv[n++] = "--quirk";
		argv[n++] = *quirks;
	}
	argv[n] = NULL;
	f->pid = fake_spawn(argv, &f->port);

	memset(&p, 0, sizeof p);
	p.host = "127.0.0.1";
	p.port = f->port;
	p.tls = NET_TLS_NONE;
	p.timeout_ms = timeout_ms;
	if ((s = net_connect(&p, &err)) == NULL) {
		fprintf(stderr, "  connect: %s\n", err.msg);
		exit(2);
	}
	net_set_line_limit(s, NET_LINE_LIMIT);
	f->c.imap = mailimap_new(0, NULL);
	r = mailimap_connect(f->c.imap, s);
	if (r != MAILIMAP_NO_ERROR_NON_AUTHENTICATED ||
	    mailimap_login(f->c.imap, USER, PASSWORD) != MAILIMAP_NO_ERROR ||
	    mailimap_capability(f->c.imap, &(struct mailimap_capability_data *)
	    { NULL }) != MAILIMAP_NO_ERROR) {
		fprintf(stderr, "  login failed (%d)\n", r);
		exit(2);
	}
	f->c.line = mmap_string_new("");
}

static void
stop(struct fake *f)
{
	if (f->c.line != NULL)
		mmap_string_free(f->c.line);
	if (f->c.imap != NULL) {
		net_cancel(f->c.imap->imap_stream);
		mailimap_free(f->c.imap);
	}
	close(f->fd);
	fake_stop_dir(f->pid, f->dir);
}

static struct ap_msg
msg(struct fake *f, const char *folder_q)
{
	struct ap_msg m = { 0 };

	m.folder = folder_q;
	m.flags = "";
	m.received = RECEIVED;
	m.fd = f->fd;
	return m;
}

/* Delivers MSG once; returns the outcome, res/err filled. */
static enum target_outcome
deliver(struct fake *f, const struct ap_msg *m, bool *created,
    struct ap_result *res, struct mh_err *err)
{
	mh_err_clear(err);
	ap_deliver(&f->c, m, "t", created, res, err);
	return res->outcome;
}

/* ---- tests --------------------------------------------------------------- */

/* LITERAL+: one round trip, the bytes exact, flags and date on the line. */
static void
t_literal_plus(void)
{
	static const char *const q[] = { NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;
	char			*got, *log, want[160];
	size_t			 len;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	m.flags = "(\\Seen $Work)";
	m.date = 1767582245;		/* 2026-01-05 03:04:05 UTC */
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK_STR(res.id, "77/1");
	CHECK(!res.target_down && !f.c.broken && !created);
	got = stored(&f, "INBOX/1", &len);
	CHECK(got != NULL && len == WIRE_LEN &&
	    memcmp(got, WIRE, WIRE_LEN) == 0);
	free(got);
	log = fake_read_log(f.dir);
	snprintf(want, sizeof want, "mhT1 APPEND \"INBOX\" (\\Seen $Work) "
	    "\" 5-Jan-2026 03:04:05 +0000\" {%zu+}\r\n", WIRE_LEN);
	CHECK_CONTAINS(log, want);
	free(log);
	/* the same connection serves the next one */
	m.flags = "";
	m.date = 0;
	m.received = NULL;
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK_STR(res.id, "77/2");
	log = fake_read_log(f.dir);
	snprintf(want, sizeof want, "mhT2 APPEND \"INBOX\" {%zu+}\r\n",
	    WIRE_LEN - strlen(RECEIVED));
	CHECK_CONTAINS(log, want);
	free(log);
	stop(&f);
}

/* No LITERAL+: a synchronizing literal, sent after the "+". */
static void
t_sync_literal(void)
{
	static const char *const q[] = { NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;
	char			*got, *log, want[80];
	size_t			 len;

	start(&f, "IMAP4rev1", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK_STR(res.id, "77/1");
	got = stored(&f, "INBOX/1", &len);
	CHECK(got != NULL && len == WIRE_LEN &&
	    memcmp(got, WIRE, WIRE_LEN) == 0);
	free(got);
	log = fake_read_log(f.dir);
	snprintf(want, sizeof want, "APPEND \"INBOX\" {%zu}\r\n", WIRE_LEN);
	CHECK_CONTAINS(log, want);
	free(log);
	stop(&f);
}

/* LITERAL-: non-synchronizing up to 4096 bytes only. */
static void
t_literal_minus(void)
{
	static const char *const q[] = { NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;
	char			*log, want[80], *big;
	int			 fd;

	start(&f, "IMAP4rev1 LITERAL-", q);
	m = msg(&f, "\"INBOX\"");
	m.received = NULL;
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	big = xmalloc(5000);
	memset(big, 'x', 5000);
	snprintf(want, sizeof want, "%s/big", f.dir);
	write_file(want, big, 5000);
	free(big);
	fd = open(want, O_RDONLY);
	m.fd = fd;
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	close(fd);
	log = fake_read_log(f.dir);
	snprintf(want, sizeof want, "APPEND \"INBOX\" {%zu+}\r\n",
	    WIRE_LEN - strlen(RECEIVED));
	CHECK_CONTAINS(log, want);
	CHECK_CONTAINS(log, "APPEND \"INBOX\" {5000}\r\n");
	free(log);
	stop(&f);
}

/* TRYCREATE: CREATE and SUBSCRIBE once, then APPEND again. */
static void
t_trycreate(void)
{
	static const char *const q[] = { NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;
	char			*log, *got;
	size_t			 len;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	m = msg(&f, "\"Arch \\\"iv\\\"\"");
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK(created);
	CHECK_STR(res.id, "77/1");
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK_STR(res.id, "77/2");
	got = stored(&f, "Arch \"iv\"/2", &len);
	CHECK(got != NULL && len == WIRE_LEN);
	free(got);
	log = fake_read_log(f.dir);
	CHECK(count_str(log, " CREATE \"Arch \\\"iv\\\"\"\r\n") == 1);
	CHECK(count_str(log, " SUBSCRIBE \"Arch \\\"iv\\\"\"\r\n") == 1);
	CHECK(count_str(log, " APPEND ") == 3);
	free(log);
	stop(&f);
}

/* CREATE refused: temporary for the target, and not tried again. */
static void
t_create_no(void)
{
	static const char *const q[] = { "create_no", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;
	char			*log;

	start(&f, "IMAP4rev1 LITERAL+", q);
	m = msg(&f, "\"Missing\"");
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_TEMPFAIL);
	CHECK(res.target_down && err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.reply, "NOPERM");
	/* the second message: TRYCREATE again is an ordinary refusal */
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_PERMFAIL);
	CHECK_CONTAINS(err.reply, "TRYCREATE");
	log = fake_read_log(f.dir);
	CHECK(count_str(log, " CREATE ") == 1);
	free(log);
	stop(&f);
}

/* Each NO maps to its verdict; the connection stays usable. */
static void
t_no_mapping(void)
{
	static const struct {
		const char		*quirk;
		enum target_outcome	 out;
		enum mh_err_class	 cls;
		bool			 down;
	} cases[] = {
		{ "append_no=[TOOBIG] Message too large", TARGET_PERMFAIL,
		    MH_ERR_PERM, false },
		{ "append_no=[LIMIT] Too many messages", TARGET_PERMFAIL,
		    MH_ERR_PERM, false },
		{ "append_no=[OVERQUOTA] Quota exceeded", TARGET_TEMPFAIL,
		    MH_ERR_TEMP, true },
		{ "append_no=[UNAVAILABLE] Backend down", TARGET_TEMPFAIL,
		    MH_ERR_TEMP, false },
		{ "append_no=Message refused: spam", TARGET_PERMFAIL,
		    MH_ERR_PERM, false },
	};
	size_t	i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *const	 q[] = { cases[i].quirk, NULL };
		struct fake		 f;
		struct ap_msg		 m;
		struct ap_result	 res;
		struct mh_err		 err;
		bool			 created = false;

		start(&f, "IMAP4rev1 LITERAL+", q);
		m = msg(&f, "\"INBOX\"");
		CHECK(deliver(&f, &m, &created, &res, &err) == cases[i].out);
		CHECK(err.cls == cases[i].cls);
		CHECK(res.target_down == cases[i].down);
		CHECK(!f.c.broken);
		CHECK_CONTAINS(err.reply, strchr(cases[i].quirk, '=') + 1);
		CHECK(strstr(err.msg, PASSWORD) == NULL);
		stop(&f);
	}
}

/* A synchronizing literal refused before the data: never sent. */
static void
t_refused_before_data(void)
{
	static const char *const q[] = { "refuse_over=100", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;
	char			*log;

	start(&f, "IMAP4rev1", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_PERMFAIL);
	CHECK_CONTAINS(err.reply, "TOOBIG");
	CHECK(!f.c.broken);
	m.received = NULL;
	m.fd = open("/dev/null", O_RDONLY);
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	close(m.fd);
	log = fake_read_log(f.dir);
	CHECK(strstr(log, "bare") == NULL);	/* no byte of the data */
	free(log);
	stop(&f);
}

/* A dropped connection: temporary, the connection marked broken. */
static void
t_drop(void)
{
	static const char *const q[] = { "drop_append", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;

	start(&f, "IMAP4rev1 LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_TEMP && res.target_down && f.c.broken);
	CHECK_CONTAINS(err.msg, "checked next pass");
	stop(&f);
}

/* Untagged data, one with a literal holding our tag, and no APPENDUID. */
static void
t_untagged(void)
{
	static const char *const q[] = { "untagged", "no_appenduid", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;

	start(&f, "IMAP4rev1 LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK_STR(res.id, "");
	CHECK(!f.c.broken);
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	stop(&f);
}

/* The lookup: by the Received: key, by Message-ID and size. */
static void
t_lookup(void)
{
	static const char *const q[] = { NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_result	 res;
	struct mh_err		 err;
	bool			 created = false;
	char			 id[32];
	uint64_t		 len = 0;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(ap_lookup(&f.c, "\"INBOX\"", "mhkey-0123456789abcdef", NULL, 0,
	    "t", id, sizeof id, &err) == 0);
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK(ap_lookup(&f.c, "\"INBOX\"", "mhkey-0123456789abcdef", NULL, 0,
	    "t", id, sizeof id, &err) == 1);
	CHECK_STR(id, "1/1");		/* fake_imapd's UIDVALIDITY is 1 */
	CHECK(ap_lookup(&f.c, "\"INBOX\"", "mhkey-ffff", NULL, 0, "t", id,
	    sizeof id, &err) == 0);
	CHECK(ap_lookup(&f.c, "\"Nope\"", "mhkey-0123456789abcdef", NULL, 0,
	    "t", id, sizeof id, &err) == 0);
	/* without Received: the Message-ID at exactly the size */
	m.received = NULL;
	CHECK(ap_literal_len(&m, &len, &err) == 0);
	CHECK(len == WIRE_LEN - strlen(RECEIVED));
	CHECK(ap_lookup(&f.c, "\"INBOX\"", NULL, "<m1@example>", len, "t",
	    id, sizeof id, &err) == 0);	/* only the bigger copy is there */
	CHECK(deliver(&f, &m, &created, &res, &err) == TARGET_DELIVERED);
	CHECK(ap_lookup(&f.c, "\"INBOX\"", NULL, "<m1@example>", len, "t",
	    id, sizeof id, &err) == 1);
	CHECK_STR(id, "1/2");
	CHECK(!f.c.broken);
	stop(&f);
}

/* A server that cannot search: an error, never "not there". */
static void
t_lookup_fails(void)
{
	static const char *const q[] = { "search_no", NULL };
	struct fake		 f;
	struct mh_err		 err;
	char			 id[32];

	start(&f, "IMAP4rev1", q);
	mh_err_clear(&err);
	CHECK(ap_lookup(&f.c, "\"INBOX\"", "mhkey-1", NULL, 0, "t", id,
	    sizeof id, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.reply, "UNAVAILABLE");
	stop(&f);
}

/* lf.h the other way: to CRLF, in chunks of any size, length exact. */
static void
t_crlf_reader(void)
{
	struct lf_reader	 r;
	char			 path[] = "/tmp/test-append-crlf.XXXXXX";
	char			*out = xmalloc(WIRE_LEN + 16);
	uint64_t		 size = 0;
	size_t			 o = 0;
	ssize_t			 n;
	int			 fd = mkstemp(path);

	CHECK(fd != -1 && write(fd, MSG, MSG_LEN) == (ssize_t)MSG_LEN);
	unlink(path);
	lf_open_crlf(&r, RECEIVED, fd);
	while ((n = lf_read(&r, out + o, 3)) > 0)	/* 1 raw byte a time */
		o += (size_t)n;
	CHECK(n == 0 && o == WIRE_LEN && memcmp(out, WIRE, WIRE_LEN) == 0);
	CHECK(lf_size_crlf(RECEIVED, fd, &size) == 0 && size == WIRE_LEN);
	close(fd);
	free(out);
}

/* Sends m ahead up to n times: how many went. */
static size_t
send_ahead(struct fake *f, const struct ap_msg *m, size_t n)
{
	struct mh_err	err;
	uint64_t	len = 0;
	size_t		k;

	mh_err_clear(&err);
	CHECK(ap_literal_len(m, &len, &err) == 0);
	for (k = 0; k < n; k++)
		if (ap_append_ahead(&f->c, m, len, &err) != 0)
			break;
	return k;
}

/*
 * Sent ahead: three APPENDs go out before any reply (the server holds
 * its replies until three wait, then answers newest first); each
 * verdict still reaches its own message.
 */
static void
t_ahead(void)
{
	static const char *const q[] = { "hold=3", "reverse", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_reply		 r = { 0 };
	struct mh_err		 err;
	char			*got, *log, id[32];
	size_t			 len;
	uint32_t		 k;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(send_ahead(&f, &m, 3) == 3);
	CHECK(f.c.nahead == 3);
	for (k = 1; k <= 3; k++) {
		CHECK(ap_collect(&f.c, &r) == 0);
		CHECK(r.status == AP_OK && r.uidvalidity == 77 && r.uid == k);
	}
	CHECK(ap_collect(&f.c, &r) == -1);	/* nothing more ahead */
	CHECK(!f.c.broken);
	got = stored(&f, "INBOX/3", &len);
	CHECK(got != NULL && len == WIRE_LEN &&
	    memcmp(got, WIRE, WIRE_LEN) == 0);
	free(got);
	log = fake_read_log(f.dir);
	CHECK(count_str(log, " APPEND \"INBOX\" {") == 3);
	CHECK_CONTAINS(log, "mhT3 APPEND");
	free(log);
	/* the connection goes on */
	mh_err_clear(&err);
	CHECK(ap_lookup(&f.c, "\"INBOX\"", "mhkey-0123456789abcdef", NULL, 0,
	    "t", id, sizeof id, &err) == 1);
	stop(&f);
}

/* One refused amid those sent ahead: only that one, with its reason. */
static void
t_ahead_refused(void)
{
	static const char *const q[] = { "hold=3",
	    "append_no_nth=2:[TOOBIG] Too big for us", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_reply		 r;
	struct ap_result	 res;
	struct mh_err		 err;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(send_ahead(&f, &m, 3) == 3);
	CHECK(ap_collect(&f.c, &r) == 0 && r.status == AP_OK && r.uid == 1);
	CHECK(ap_collect(&f.c, &r) == 0 && r.status == AP_NO);
	mh_err_clear(&err);
	memset(&res, 0, sizeof res);
	ap_verdict(&f.c, &r, "t", &res, &err);
	CHECK(res.outcome == TARGET_PERMFAIL && !res.target_down);
	CHECK_CONTAINS(err.reply, "Too big for us");
	CHECK(ap_collect(&f.c, &r) == 0 && r.status == AP_OK && r.uid == 2);
	stop(&f);
}

/*
 * The connection breaks with replies due: every message sent ahead is
 * lost (temporary, for the whole target, "may be in the folder"), none
 * is taken for delivered.
 */
static void
t_ahead_drop(void)
{
	static const char *const q[] = { "hold=3", "drop_after=2", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_reply		 r;
	struct ap_result	 res;
	struct mh_err		 err;
	size_t			 k, sent;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	/* the third may still go into the socket, or find it closed */
	sent = send_ahead(&f, &m, 3);
	CHECK(sent >= 2);
	for (k = 0; k < sent; k++) {
		CHECK(ap_collect(&f.c, &r) == 0);
		CHECK(r.status == AP_LOST && r.why[0] != '\0');
		mh_err_clear(&err);
		memset(&res, 0, sizeof res);
		ap_verdict(&f.c, &r, "t", &res, &err);
		CHECK(res.outcome == TARGET_TEMPFAIL && res.target_down);
		CHECK_CONTAINS(err.msg, "during APPEND");
	}
	CHECK(f.c.broken);
	stop(&f);
}

/*
 * Untagged data amid the answers to APPENDs sent ahead, its literals
 * holding lines tagged as those APPENDs: none is taken for an answer.
 */
static void
t_ahead_untagged(void)
{
	static const char *const q[] = { "hold=2", "untagged", NULL };
	struct fake		 f;
	struct ap_msg		 m;
	struct ap_reply		 r;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	m = msg(&f, "\"INBOX\"");
	CHECK(send_ahead(&f, &m, 2) == 2);
	CHECK(ap_collect(&f.c, &r) == 0 && r.status == AP_OK && r.uid == 1);
	CHECK(ap_collect(&f.c, &r) == 0 && r.status == AP_OK && r.uid == 2);
	CHECK(!f.c.broken);
	stop(&f);
}

/* The target's own verbs on f's connection: target.c's clearing first. */
static enum target_outcome
tdeliver(struct target *tg, const struct target_msg *tm,
    struct target_result *res, struct mh_err *err)
{
	mh_err_clear(err);
	target_result_clear(res);
	return imap_deliver(tg, tm, res, err);
}

static enum target_outcome
tcollect(struct target *tg, struct target_result *res, struct mh_err *err)
{
	mh_err_clear(err);
	target_result_clear(res);
	return imap_collect(tg, res, err);
}

/*
 * An IMAP target on f's logged-in connection (imap_connect keeps it),
 * folder INBOX, in batch mode; tm: the fake's message with a Received:
 * line.  target_off gives the connection back to f and stops both.
 */
static struct imap_target *
target_on(struct fake *f, struct cfg_target *t, struct target_msg *tm)
{
	struct imap_target	*it = xcalloc(1, sizeof *it);

	memset(t, 0, sizeof *t);
	t->name = "t";
	t->imap.folder = "INBOX";
	t->received = true;
	it->base.ops = &imap_target_ops;
	it->base.cfg = t;
	it->folder_q = xstrdup("\"INBOX\"");
	it->flags = xstrdup("");
	it->c = f->c;
	imap_set_batch(&it->base, true);
	memset(tm, 0, sizeof *tm);
	tm->fd = f->fd;
	tm->received = RECEIVED;
	tm->source_key = "mh.1";
	return it;
}

static void
target_off(struct fake *f, struct imap_target *it)
{
	f->c = it->c;		/* stop() closes it (NULL when dropped) */
	it->c.imap = NULL;
	it->c.line = NULL;
	imap_close(&it->base);
	stop(f);
}

/*
 * The target in batch mode: the first APPEND goes alone (the folder may
 * need creating), the next ones ahead.  The folder vanishes after the
 * second: the third's NO [TRYCREATE] is temporary, and the next message
 * goes alone again and makes the folder anew.
 */
static void
t_ahead_folder_gone(void)
{
	static const char *const q[] = { "gone_after=2", NULL };
	struct fake		 f;
	struct cfg_target	 t;
	struct imap_target	*it;
	struct target_msg	 tm;
	struct target_result	 res = { 0 };
	struct mh_err		 err;
	char			*log;

	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	it = target_on(&f, &t, &tm);
	CHECK(tdeliver(&it->base, &tm, &res, &err) == TARGET_DELIVERED);
	CHECK(tdeliver(&it->base, &tm, &res, &err) == TARGET_PENDING);
	CHECK(res.ndests == 0);
	CHECK(tdeliver(&it->base, &tm, &res, &err) == TARGET_PENDING);
	CHECK(tcollect(&it->base, &res, &err) == TARGET_DELIVERED);
	CHECK(res.ndests == 1 && strcmp(res.dests[0], "INBOX") == 0);
	CHECK(tcollect(&it->base, &res, &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_TEMP && err.scope == MH_SCOPE_MESSAGE);
	CHECK_CONTAINS(err.reply, "TRYCREATE");
	CHECK(res.ndests == 0);
	CHECK(tcollect(&it->base, &res, &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_LOCAL);		/* nothing ahead */
	CHECK(tdeliver(&it->base, &tm, &res, &err) == TARGET_DELIVERED);
	log = fake_read_log(f.dir);
	CHECK(count_str(log, "CREATE \"INBOX\"") == 1);
	CHECK(count_str(log, " APPEND ") == 5);
	free(log);
	target_result_clear(&res);
	target_off(&f, it);
}

/*
 * At most AP_AHEAD_BYTES (300 here) of literals go unanswered: the
 * second message waits for the first's answer.  This server answers
 * only when two wait, so the first's never comes: the connection times
 * out before the second is sent, and that says so.
 */
static void
t_ahead_bounded(void)
{
	static const char *const q[] = { "hold=2", NULL };
	struct fake		 f;
	struct cfg_target	 t;
	struct imap_target	*it;
	struct target_msg	 tm;
	struct target_result	 res = { 0 };
	struct mh_err		 err;
	char			*log;

	CHECK(WIRE_LEN <= AP_AHEAD_BYTES && 2 * WIRE_LEN > AP_AHEAD_BYTES);
	timeout_ms = 1000;
	start(&f, "IMAP4rev1 UIDPLUS LITERAL+", q);
	it = target_on(&f, &t, &tm);
	it->folder_ok = true;		/* as after a first APPEND */
	CHECK(tdeliver(&it->base, &tm, &res, &err) == TARGET_PENDING);
	CHECK(tdeliver(&it->base, &tm, &res, &err) == TARGET_TEMPFAIL);
	CHECK(err.cls == MH_ERR_TEMP && err.scope == MH_SCOPE_TARGET);
	CHECK_CONTAINS(err.msg, "before the message's APPEND was sent");
	CHECK(tcollect(&it->base, &res, &err) == TARGET_TEMPFAIL);
	CHECK_CONTAINS(err.msg, "the message may be in the folder");
	log = fake_read_log(f.dir);
	CHECK(count_str(log, " APPEND ") == 1);
	free(log);
	target_off(&f, it);
}

/* The small pieces: quoting, flags, the date-time, reply parsing. */
static void
t_pieces(void)
{
	char			*s;
	const char		*bad = NULL;
	char			 d[40];
	struct ap_reply		 r;
	char *const		 ok[] = { "\\Seen", "$Work", "\\Flagged" };
	char *const		 ko[] = { "\\Seen", "a b" };
	char *const		 rec[] = { "\\Recent" };

	s = imap_session_quote("a\"b\\c");
	CHECK_STR(s, "\"a\\\"b\\\\c\"");
	free(s);
	CHECK(imap_session_quote("a\r\nb") == NULL);
	CHECK(imap_session_quote("caf\xc3\xa9") == NULL);
	s = ap_flag_list(ok, 3, &bad);
	CHECK_STR(s, "(\\Seen $Work \\Flagged)");
	free(s);
	s = ap_flag_list(ok, 0, &bad);
	CHECK_STR(s, "");
	free(s);
	CHECK(ap_flag_list(ko, 2, &bad) == NULL);
	CHECK_STR(bad, "a b");
	CHECK(ap_flag_list(rec, 1, &bad) == NULL);
	ap_date(0, d, sizeof d);
	CHECK_STR(d, " 1-Jan-1970 00:00:00 +0000");
	ap_date(1796156190, d, sizeof d);
	CHECK_STR(d, " 1-Dec-2026 20:16:30 +0000");
	memset(&r, 0, sizeof r);
	ap_parse_tagged("OK [APPENDUID 38505 3955] APPEND completed", &r);
	CHECK(r.status == AP_OK && r.uidvalidity == 38505 && r.uid == 3955);
	memset(&r, 0, sizeof r);
	ap_parse_tagged("no [overquota] full", &r);
	CHECK(r.status == AP_NO);
	CHECK_STR(r.code, "OVERQUOTA");
	memset(&r, 0, sizeof r);
	ap_parse_tagged("OK [APPENDUID 1 2:4] multi", &r);
	CHECK(r.uid == 0);
	memset(&r, 0, sizeof r);
	ap_parse_tagged("BAD", &r);
	CHECK(r.status == AP_BAD);
	memset(&r, 0, sizeof r);
	ap_parse_search(" 4 9 (MODSEQ 17)", &r);
	CHECK(r.nfound == 2 && r.found == 4);
}

int
main(void)
{
	snprintf(fake_append, sizeof fake_append, "%s/imap/fake_append.py",
	    TEST_SRCDIR);
	net_init();
	RUN(t_pieces);
	RUN(t_crlf_reader);
	RUN(t_literal_plus);
	RUN(t_sync_literal);
	RUN(t_literal_minus);
	RUN(t_trycreate);
	RUN(t_create_no);
	RUN(t_no_mapping);
	RUN(t_refused_before_data);
	RUN(t_drop);
	RUN(t_untagged);
	RUN(t_lookup);
	RUN(t_lookup_fails);
	RUN(t_ahead);
	RUN(t_ahead_refused);
	RUN(t_ahead_drop);
	RUN(t_ahead_folder_gone);
	RUN(t_ahead_untagged);
	RUN(t_ahead_bounded);
	return check_done();
}
