/*
 * test-pop3.c -- the POP3 source against a scripted fake server
 * (tests/unit/pop3/fake_pop3d.py, 127.0.0.1, plain).  Each test writes
 * the exact message bytes into a directory, starts the server with the
 * quirks it needs, drives the source like sync.c does, and checks both
 * what came back and what the server saw (its command and event log).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "net/endpoint.h"
#include "check.h"
#include "fake.h"
#include "fetch/source_impl.h"
#include "net/net.h"

#define PASSWORD	"s3cret-pw"

/* A credential from a's endpoint and pw (one at a time: static). */
static const struct sasl_cred *
cred(const struct cfg_account *a, const char *pw)
{
	static struct sasl_cred	c;

	endpoint_cred(&a->ep, pw, &c);
	return &c;
}

static char	fake_pop3d[2 * PATH_MAX + 64];

/* Lets this test link without fetch/imap.c (weak). */
__attribute__((weak)) const struct source_ops imap_source_ops = {
	.name = "imap-missing",
};

struct fake {
	char		 dir[64];
	pid_t		 pid;
	unsigned	 port;
	unsigned	 nmsgs;
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

static void
fake_init(struct fake *f)
{
	char path[128];

	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test-pop3.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(path, sizeof path, "%s/msgs", f->dir);
	mkdir(path, 0700);
}

/* Adds the next message with exactly these bytes. */
static void
add_msg(struct fake *f, const void *data, size_t len)
{
	char path[128];

	snprintf(path, sizeof path, "%s/msgs/%u", f->dir, ++f->nmsgs);
	write_file(path, data, len);
}

static void
add_str(struct fake *f, const char *s)
{
	add_msg(f, s, strlen(s));
}

static void
msg_path(struct fake *f, unsigned n, char *buf, size_t size)
{
	snprintf(buf, size, "%s/msgs/%u", f->dir, n);
}

/* Starts the server; then quirks, NULL-terminated. */
static void
fake_start(struct fake *f, const char *caps, ...)
{
	char		 dir[96], log[96];
	const char	*argv[32], *q;
	int		 n = 0;
	va_list		 ap;

	snprintf(dir, sizeof dir, "%s/msgs", f->dir);
	snprintf(log, sizeof log, "%s/log", f->dir);
	argv[n++] = "/usr/bin/python3";
	argv[n++] = fake_pop3d;
	argv[n++] = "--dir";
	argv[n++] = dir;
	argv[n++] = "--log";
	argv[n++] = log;
	argv[n++] = "--password";
	argv[n++] = PASSWORD;
	argv[n++] = "--idle";
	argv[n++] = "20";
	argv[n++] = "--caps";
	argv[n++] = caps != NULL ? caps : "USER,UIDL,TOP";
	va_start(ap, caps);
	while ((q = va_arg(ap, const char *)) != NULL && n < 28) {
		argv[n++] = "--quirk";
		argv[n++] = q;
	}
	va_end(ap);
	argv[n] = NULL;
	f->pid = fake_spawn(argv, &f->port);
}

static void
fake_stop(struct fake *f)
{
	fake_stop_dir(f->pid, f->dir);
}

/* The server's command log as one string (caller frees). */
static char *
fake_log(struct fake *f)
{
	return fake_read_log(f->dir);
}

/* The log once it contains what (waits up to 5 s for the server). */
static char *
fake_log_wait(struct fake *f, const char *what)
{
	char *s = NULL;

	for (int i = 0; i < 100; i++) {
		free(s);
		s = fake_log(f);
		if (strstr(s, what) != NULL)
			break;
		usleep(50000);
	}
	return s;
}

static struct cfg_account
account(struct fake *f)
{
	struct cfg_account a = { 0 };

	a.name = "test";
	a.protocol = CFG_PROTO_POP3;
	a.ep.host = "127.0.0.1";
	a.ep.port = f->port;
	a.ep.tls = CFG_TLS_NONE;
	a.ep.user = "joe";
	a.keep = true;
	a.ep.allow_plaintext_auth = true;
	a.timeout = 30;	/* generous: a loaded machine is not a fault */
	return a;
}

static struct source *
open_ok(const struct cfg_account *a)
{
	struct source	*src = NULL;
	struct mh_err	 err;
	char		 buf[1100];

	mh_err_clear(&err);
	if (source_open(a, "", cred(a, PASSWORD), &src, &err) == -1) {
		fprintf(stderr, "  open: %s\n", mh_err_str(&err, buf,
		    sizeof buf));
		return NULL;
	}
	return src;
}

/* True when the two files have the same bytes (read in chunks). */
static bool
same_files(int fa, const char *pb)
{
	static char	 a[65536], b[65536];
	int		 fb = open(pb, O_RDONLY);
	bool		 same = fb != -1;

	if (lseek(fa, 0, SEEK_SET) == -1)
		same = false;
	while (same) {
		ssize_t ra = read(fa, a, sizeof a), rb, got = 0;

		while (ra > 0 && got < ra &&
		    (rb = read(fb, b + got, (size_t)(ra - got))) > 0)
			got += rb;
		if (ra < 0 || got != ra || memcmp(a, b, (size_t)ra) != 0) {
			same = false;
			break;
		}
		if (ra == 0) {
			same = read(fb, b, 1) == 0;
			break;
		}
	}
	if (fb != -1)
		close(fb);
	return same;
}

static int
tmpfd(void)
{
	char	tmpl[] = "/tmp/test-pop3-out.XXXXXX";
	int	fd = mkstemp(tmpl);

	if (fd == -1) {
		perror("mkstemp");
		exit(2);
	}
	unlink(tmpl);
	return fd;
}

/* Fetches m and compares it with message file n. */
static bool
fetch_matches(struct fake *f, struct source *src, const struct source_msg *m,
    struct mh_err *err)
{
	char	path[128], buf[1100];
	int	fd = tmpfd();
	bool	ok;

	msg_path(f, m->num, path, sizeof path);
	if (source_fetch(src, m, fd, err) == -1) {
		fprintf(stderr, "  fetch %u: %s\n", m->num,
		    mh_err_str(err, buf, sizeof buf));
		close(fd);
		return false;
	}
	ok = same_files(fd, path);
	if (!ok)
		fprintf(stderr, "  message %u differs\n", m->num);
	close(fd);
	return ok;
}

static void
add_plain(struct fake *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char b[128];

		snprintf(b, sizeof b, "Subject: m%u\r\nMessage-ID: <%u@x>\r\n"
		    "\r\nbody %u\r\n", f->nmsgs + 1, f->nmsgs + 1,
		    f->nmsgs + 1);
		add_str(f, b);
	}
}

/* ---- listing ------------------------------------------------------------- */

static void
t_list_good(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct source_info	 info;
	struct mh_err		 err;

	fake_init(&f);
	add_plain(&f, 3);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		source_get_info(src, &info);
		CHECK_CONTAINS(info.greeting, "fake POP3 ready");
		CHECK_CONTAINS(info.capabilities, "UIDL");
		CHECK(!info.tls && !info.pipelining);
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 3 && l.has_uids && l.sizes_pending);
		/* UIDL alone: sizes come when asked, here all of them */
		CHECK(source_list_sizes(src, &l, NULL, &err) == 0);
		CHECK(!l.sizes_pending);
		for (size_t i = 0; i < l.n && i < 3; i++) {
			char		want[128];
			struct stat	st;

			snprintf(want, sizeof want, "uid-%zu", i + 1);
			CHECK_STR(l.msgs[i].uid, want);
			CHECK(l.msgs[i].num == i + 1);
			msg_path(&f, (unsigned)i + 1, want, sizeof want);
			CHECK(stat(want, &st) == 0 &&
			    l.msgs[i].size == (uint64_t)st.st_size);
		}
		source_list_free(&l);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	fake_stop(&f);
}

/*
 * Sizes for a few messages only: `LIST n` for each, pipelined; the
 * others stay unknown, and the mailbox is not listed twice.  Many
 * wanted: one LIST.
 */
static void
t_list_some(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	bool			 want[20] = { false };
	char			*log, path[128];
	struct stat		 st;

	fake_init(&f);
	add_plain(&f, 20);
	fake_start(&f, "USER,UIDL,TOP,PIPELINING", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src == NULL) {
		fake_stop(&f);
		return;
	}
	CHECK(source_list(src, &l, &err) == 0 && l.n == 20);
	want[4] = want[11] = true;
	CHECK(l.n == 20 && source_list_sizes(src, &l, want, &err) == 0);
	CHECK(l.sizes_pending);
	for (size_t i = 0; i < l.n && i < 20; i++) {
		msg_path(&f, (unsigned)i + 1, path, sizeof path);
		CHECK(stat(path, &st) == 0 && l.msgs[i].size ==
		    (want[i] ? (uint64_t)st.st_size : 0));
	}
	/* more than one in eight: the whole LIST */
	for (size_t i = 0; i < 5; i++)
		want[i] = true;
	CHECK(source_list_sizes(src, &l, want, &err) == 0);
	CHECK(!l.sizes_pending && l.msgs[19].size > 0);
	source_list_free(&l);
	CHECK(source_commit(src, &err) == 0);
	source_free(src);
	log = fake_log_wait(&f, "* COMMIT");
	CHECK_CONTAINS(log, "UIDL\nLIST 5\nLIST 12\nLIST\nQUIT\n");
	fake_stop(&f);
	free(log);
}

/* The list's arena: many UIDs over several blocks, one longer than any
   block, each intact until source_list_free (run under ASan too). */
static void
t_list_arena(void)
{
	struct source_list	 l;
	char			 b[32], *big = xmalloc(3 << 20);
	size_t			 i, n = 150000;

	memset(&l, 0, sizeof l);
	memset(big, 'x', (3 << 20) - 1);
	big[(3 << 20) - 1] = '\0';
	l.msgs = xcalloc(n + 1, sizeof *l.msgs);
	for (i = 0; i < n; i++) {
		snprintf(b, sizeof b, "uid-%zu", i);
		l.msgs[i].uid = source_list_strdup(&l, b, strlen(b));
		if (i == n / 2)
			l.msgs[n].uid = source_list_strdup(&l, big, strlen(big));
	}
	l.n = n + 1;
	CHECK(l.arena != NULL);
	for (i = 0; i < n; i++) {
		snprintf(b, sizeof b, "uid-%zu", i);
		CHECK(strcmp(l.msgs[i].uid, b) == 0);
	}
	CHECK(strcmp(l.msgs[n].uid, big) == 0);
	source_list_free(&l);
	CHECK(l.arena == NULL && l.msgs == NULL && l.n == 0);
	free(big);
}

/* Every broken listing is a protocol error, not a crash. */
static void
t_list_bad(void)
{
	static const char *quirks[] = { "uidl-zero", "uidl-gap", "uidl-range",
	    "uidl-dup", "uidl-nonprint", "uidl-long", "list-zero" };

	for (size_t i = 0; i < sizeof quirks / sizeof *quirks; i++) {
		struct fake		 f;
		struct cfg_account	 a;
		struct source		*src;
		struct source_list	 l;
		struct mh_err		 err;
		char			 buf[1100];

		fake_init(&f);
		add_plain(&f, 3);
		fake_start(&f, NULL, quirks[i], NULL);
		a = account(&f);
		CHECK((src = open_ok(&a)) != NULL);
		if (src != NULL) {
			mh_err_clear(&err);
			/* LIST comes with the sizes, after UIDL */
			if (strcmp(quirks[i], "list-zero") == 0) {
				CHECK(source_list(src, &l, &err) == 0);
				CHECK(source_list_sizes(src, &l, NULL,
				    &err) == -1);
				source_list_free(&l);
			} else if (source_list(src, &l, &err) != -1)
				err.cls = MH_ERR_NONE;
			if (err.cls != MH_ERR_PROTO) {
				fprintf(stderr, "  %s: not refused\n",
				    quirks[i]);
				check_child_failed = 1;
			} else
				fprintf(stderr, "  %s: %s\n", quirks[i],
				    mh_err_str(&err, buf, sizeof buf));
			CHECK(l.n == 0 && l.msgs == NULL);
			source_abort(src);
			source_free(src);
		}
		fake_stop(&f);
	}
}

static void
t_no_uidl(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*log;
	int			 fd;

	fake_init(&f);
	add_plain(&f, 2);
	add_str(&f, "Subject: three\r\n.dot: header\r\n\r\nbody\r\n.\r\n");
	fake_start(&f, "USER,TOP", "no-uidl", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 3 && !l.has_uids);
		if (l.n == 3) {
			char got[256] = "";

			CHECK_STR(l.msgs[0].uid, "#1");
			CHECK_STR(l.msgs[2].uid, "#3");
			fd = tmpfd();
			CHECK(source_fetch_header(src, &l.msgs[2], fd,
			    &err) == 0);
			CHECK(pread(fd, got, sizeof got - 1, 0) > 0);
			CHECK_STR(got, "Subject: three\r\n.dot: header\r\n"
			    "\r\n");
			close(fd);
			CHECK(fetch_matches(&f, src, &l.msgs[2], &err));
		}
		source_list_free(&l);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	log = fake_log(&f);
	CHECK_CONTAINS(log, "TOP 3 0\n");
	free(log);
	fake_stop(&f);
}

/* ---- retrieval ------------------------------------------------------------ */

static void
t_retr_tricky(void)
{
	static const char m1[] = "Subject: dots\r\n\r\n.x\r\n.\r\n..two\r\n"
	    "...\r\nend .\r\n";
	static const char m2[] = "Subject: nul\r\n\r\na\0b\r\n\0\r\n.\0\r\n";
	static const char m3[] = "Subject: cr lf\r\n\r\nbare\rcr\r\n\r.\r\n"
	    "bare\nlf\n.lfdot\n.\n\r\n";
	static const char m4[] = "Subject: 8bit\r\n\r\n\xff\xfe\x80\xc3\xa9"
	    "\r\n.\xff\r\n";
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*big;
	size_t			 bl = 100 * 1024;

	fake_init(&f);
	add_msg(&f, m1, sizeof m1 - 1);
	add_msg(&f, m2, sizeof m2 - 1);
	add_msg(&f, m3, sizeof m3 - 1);
	add_msg(&f, m4, sizeof m4 - 1);
	big = xmalloc(bl + 32);		/* one 100 kB line */
	memcpy(big, "Subject: long\r\n\r\n.", 18);
	for (size_t i = 18; i < bl; i++)
		big[i] = (char)('a' + i % 26);
	memcpy(big + bl, "\r\n", 2);
	add_msg(&f, big, bl + 2);
	free(big);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 5);
		for (size_t i = 0; i < l.n; i++)
			CHECK(fetch_matches(&f, src, &l.msgs[i], &err));
		source_list_free(&l);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	fake_stop(&f);
}

/* A 30 MB message goes through with bounded memory. */
static void
t_retr_big(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	struct rusage		 ru0, ru1;
	char			 path[128], chunk[65536];
	int			 fd;

	fake_init(&f);
	add_str(&f, "Subject: small\r\n\r\nx\r\n");
	snprintf(path, sizeof path, "%s/msgs/2", f.dir);
	f.nmsgs++;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1)
		exit(2);
	for (size_t i = 0; i < sizeof chunk; i++)	/* lines of 64 */
		chunk[i] = i % 64 == 62 ? '\r' : i % 64 == 63 ? '\n' :
		    i % 64 == 0 && i % 128 == 0 ? '.' :
		    (char)(0x20 + (i * 7) % 95);
	CHECK(write(fd, "Subject: big\r\n\r\n", 16) == 16);
	for (int i = 0; i < 30 * 16; i++)
		CHECK(write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk);
	close(fd);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 2);
		if (l.n == 2) {
			CHECK(fetch_matches(&f, src, &l.msgs[0], &err));
			getrusage(RUSAGE_SELF, &ru0);
			CHECK(fetch_matches(&f, src, &l.msgs[1], &err));
			getrusage(RUSAGE_SELF, &ru1);
			fprintf(stderr, "  maxrss %ld kB -> %ld kB\n",
			    ru0.ru_maxrss, ru1.ru_maxrss);
			CHECK(ru1.ru_maxrss - ru0.ru_maxrss < 16 * 1024);
		}
		source_list_free(&l);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	fake_stop(&f);
}

/* With PIPELINING, RETRs go out ahead; results stay right and in order. */
static void
t_pipelined(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct source_info	 info;
	struct mh_err		 err;
	char			*log, *q;

	fake_init(&f);
	add_plain(&f, 12);
	fake_start(&f, "USER,UIDL,TOP,PIPELINING", "pipeline-wait", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		source_get_info(src, &info);
		CHECK(info.pipelining);
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 12);
		if (l.n == 12) {
			const struct source_msg *plan[12];

			for (size_t i = 0; i < 12; i++)
				plan[i] = &l.msgs[i];
			source_plan(src, plan, 12);
			for (size_t i = 0; i < 12; i++) {
				CHECK(fetch_matches(&f, src, plan[i], &err));
				if (i % 2 == 0)
					CHECK(source_mark_delete(src, plan[i],
					    &err) == 0);
			}
		}
		source_list_free(&l);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	log = fake_log_wait(&f, "* COMMIT");
	CHECK_CONTAINS(log, "* COMMIT 1,3,5,7,9,11\n");
	q = strstr(log, "* QUEUED ");
	CHECK(q != NULL && atoi(q + 9) >= 4);
	fake_stop(&f);
	free(log);
}

/* Plans and fetches every message of f; CHECKs each one's bytes. */
static void
fetch_planned_all(struct fake *f, unsigned nmsgs)
{
	struct cfg_account	 a = account(f);
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;

	CHECK((src = open_ok(&a)) != NULL);
	if (src == NULL)
		return;
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(source_list_sizes(src, &l, NULL, &err) == 0);
	CHECK(l.n == nmsgs);
	if (l.n == nmsgs) {
		const struct source_msg **plan = xcalloc(l.n, sizeof *plan);

		for (size_t i = 0; i < l.n; i++)
			plan[i] = &l.msgs[i];
		source_plan(src, plan, l.n);
		for (size_t i = 0; i < l.n; i++)
			CHECK(fetch_matches(f, src, plan[i], &err));
		free(plan);
	}
	source_list_free(&l);
	CHECK(source_commit(src, &err) == 0);
	source_free(src);
}

/* The RETR window is sized in bytes: 40 small messages go out at once
   (a window of messages, 8 before, would hold them back). */
static void
t_window_deep(void)
{
	struct fake	 f;
	char		*log, *q;

	fake_init(&f);
	add_plain(&f, 40);
	fake_start(&f, "USER,UIDL,TOP,PIPELINING", "pipeline-wait", NULL);
	fetch_planned_all(&f, 40);
	log = fake_log_wait(&f, "* COMMIT");
	q = strstr(log, "* QUEUED ");
	CHECK(q != NULL && atoi(q + 9) == 39);
	fake_stop(&f);
	free(log);
}

/* ... and bounded in bytes: of 1.5 MB messages, two fit the 4 MiB
   window, which is refilled once half of it was read. */
static void
t_window_bytes(void)
{
	struct fake	 f;
	char		*log, *q, *big = xmalloc(1500000);

	fake_init(&f);
	memset(big, 'x', 1500000);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	for (size_t i = 100; i <= 1500000; i += 100)
		memcpy(big + i - 2, "\r\n", 2);
	for (int i = 0; i < 4; i++)
		add_msg(&f, big, 1500000);
	free(big);
	fake_start(&f, "USER,UIDL,TOP,PIPELINING", "pipeline-wait", NULL);
	fetch_planned_all(&f, 4);
	log = fake_log_wait(&f, "* COMMIT");
	q = strstr(log, "* QUEUED ");
	CHECK(q != NULL && atoi(q + 9) == 1);
	CHECK_CONTAINS(log, "RETR 1\n* QUEUED 1\nRETR 2\nRETR 3\nRETR 4\n");
	fake_stop(&f);
	free(log);
}

/*
 * A RETR sent ahead and then abandoned (the engine fetched in vain) is
 * read away at commit no further than its fetch would have read: a
 * server that streams on without end does not hold the pass.
 */
static void
t_discard_bounded(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*big = xmalloc(1500000);

	fake_init(&f);
	memset(big, 'x', 1500000);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	for (size_t i = 100; i <= 1500000; i += 100)
		memcpy(big + i - 2, "\r\n", 2);
	add_plain(&f, 1);
	add_msg(&f, big, 1500000);
	add_plain(&f, 1);
	free(big);
	fake_start(&f, "USER,UIDL,TOP,PIPELINING", NULL, NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(source_list_sizes(src, &l, NULL, &err) == 0);
		CHECK(l.n == 3);
		if (l.n == 3) {
			const struct source_msg *plan[3] = { &l.msgs[0],
			    &l.msgs[1], &l.msgs[2] };

			l.msgs[1].limit = 20000;
			source_plan(src, plan, 3);
			CHECK(fetch_matches(&f, src, plan[0], &err));
			source_fetched_in_vain(src, 2, 0);
			mh_err_clear(&err);
			CHECK(source_commit(src, &err) == -1);
			CHECK_CONTAINS(err.msg, "sent more than 20000 bytes");
		}
		source_list_free(&l);
		source_free(src);
	}
	fake_stop(&f);
}

/* A connection dropped mid-RETR fails fast and does not hang. */
static void
t_drop_mid_retr(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			 big[20000];

	fake_init(&f);
	add_plain(&f, 1);
	memset(big, 'x', sizeof big);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	memcpy(big + sizeof big - 2, "\r\n", 2);
	add_msg(&f, big, sizeof big);
	fake_start(&f, NULL, "drop-retr=2", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 2);
		if (l.n == 2) {
			int	fd = tmpfd();
			int64_t	t0;

			CHECK(source_mark_delete(src, &l.msgs[0], &err) == 0);
			t0 = now_ms();
			CHECK(source_fetch(src, &l.msgs[1], fd, &err) == -1);
			CHECK(now_ms() - t0 < 3000);
			CHECK(err.cls == MH_ERR_TEMP);
			CHECK_CONTAINS(err.msg, "connection lost");
			close(fd);
		}
		source_list_free(&l);
		source_abort(src);
		source_free(src);
	}
	fake_stop(&f);
}

static void
t_err_retr(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;

	fake_init(&f);
	add_plain(&f, 3);
	fake_start(&f, NULL, "err-retr=2", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 3);
		if (l.n == 3) {
			int fd = tmpfd();

			CHECK(fetch_matches(&f, src, &l.msgs[0], &err));
			mh_err_clear(&err);
			CHECK(source_fetch(src, &l.msgs[1], fd, &err) == -1);
			CHECK(err.cls != MH_ERR_NONE);
			CHECK_CONTAINS(err.reply, "no such message");
			close(fd);
		}
		source_list_free(&l);
		source_abort(src);
		source_free(src);
	}
	fake_stop(&f);
}

/* ---- ending --------------------------------------------------------------- */

static void
t_commit_deletes(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	add_plain(&f, 3);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		if (l.n == 3) {
			CHECK(source_mark_delete(src, &l.msgs[0], &err) == 0);
			CHECK(source_mark_delete(src, &l.msgs[2], &err) == 0);
		}
		source_list_free(&l);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	log = fake_log_wait(&f, "* COMMIT");
	CHECK_CONTAINS(log, "DELE 1\nDELE 3\nQUIT\n* COMMIT 1,3\n");
	CHECK(strstr(log, "* NOQUIT") == NULL);
	free(log);
	fake_stop(&f);
}

static void
t_quit_err(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;

	fake_init(&f);
	add_plain(&f, 2);
	fake_start(&f, NULL, "quit-err", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		if (l.n == 2)
			CHECK(source_mark_delete(src, &l.msgs[0], &err) == 0);
		source_list_free(&l);
		mh_err_clear(&err);
		CHECK(source_commit(src, &err) == -1);
		CHECK(err.cls != MH_ERR_NONE);
		CHECK_CONTAINS(err.reply, "cannot commit");
		source_free(src);
	}
	fake_stop(&f);
}

/* abort sends no QUIT, so the server deletes nothing. */
static void
t_abort_no_quit(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	add_plain(&f, 2);
	fake_start(&f, "USER,UIDL,PIPELINING", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		if (l.n == 2) {
			CHECK(fetch_matches(&f, src, &l.msgs[0], &err));
			CHECK(source_mark_delete(src, &l.msgs[0], &err) == 0);
			CHECK(source_mark_delete(src, &l.msgs[1], &err) == 0);
		}
		source_list_free(&l);
		source_abort(src);
		source_abort(src);		/* twice is harmless */
		CHECK(source_commit(src, &err) == -1);
		source_free(src);
	}
	log = fake_log_wait(&f, "* NOQUIT");
	CHECK_CONTAINS(log, "* NOQUIT\n");
	CHECK(strstr(log, "\nQUIT") == NULL);
	CHECK(strstr(log, "* COMMIT") == NULL);
	free(log);
	fake_stop(&f);
}

/* ---- login ---------------------------------------------------------------- */

static void
t_plaintext_refused(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	a.ep.allow_plaintext_auth = false;
	mh_err_clear(&err);
	CHECK(source_open(&a, "", cred(&a, PASSWORD), &src, &err) == -1);
	CHECK(src == NULL);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "refusing to send the password");
	log = fake_log_wait(&f, "* NOQUIT");
	CHECK(strstr(log, "USER") == NULL && strstr(log, "PASS") == NULL);
	free(log);
	fake_stop(&f);
}

static void
t_wrong_password(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;

	fake_init(&f);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	mh_err_clear(&err);
	CHECK(source_open(&a, "", cred(&a, "wrong-pw"), &src, &err) == -1);
	CHECK(src == NULL);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.reply, "Authentication failed");
	CHECK(strstr(err.msg, "wrong-pw") == NULL);
	CHECK(strstr(err.reply, "wrong-pw") == NULL);
	fake_stop(&f);
}

/* A locked mailbox is a temporary failure, not a wrong password. */
static void
t_in_use(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;

	fake_init(&f);
	fake_start(&f, NULL, "in-use", NULL);
	a = account(&f);
	mh_err_clear(&err);
	CHECK(source_open(&a, "", cred(&a, PASSWORD), &src, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.reply, "[IN-USE] Mailbox is locked");
	fake_stop(&f);
}

/* CAPA with SASL PLAIN and no USER: AUTH PLAIN by hand. */
static void
t_auth_plain(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct source_list	 l;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	add_plain(&f, 1);
	fake_start(&f, "UIDL,SASL LOGIN PLAIN", NULL);
	a = account(&f);
	mh_err_clear(&err);
	CHECK(source_open(&a, "", cred(&a, "wrong-pw"), &src, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.reply, "Authentication failed");
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_list(src, &l, &err) == 0);
		CHECK(l.n == 1);
		source_list_free(&l);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	log = fake_log_wait(&f, "* COMMIT");
	/* base64("\0joe\0s3cret-pw") */
	CHECK_CONTAINS(log, "AUTH PLAIN AGpvZQBzM2NyZXQtcHc=\n");
	CHECK(strstr(log, "USER") == NULL);
	free(log);
	fake_stop(&f);
}


/* XOAUTH2 over POP3: the two-step form only (Microsoft refuses the
   one-line form, and so does the fake server). */
static void
t_auth_xoauth2(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	add_plain(&f, 1);
	fake_start(&f, "UIDL,SASL PLAIN XOAUTH2", NULL);
	a = account(&f);
	a.ep.auth = CFG_AUTH_XOAUTH2;
	CHECK((src = open_ok(&a)) != NULL);
	if (src != NULL) {
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	/* a wrong token: the JSON error challenge, answered empty */
	mh_err_clear(&err);
	CHECK(source_open(&a, "", cred(&a, "Tok-Wrong-8c2L"), &src,
	    &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "AUTH XOAUTH2 as joe refused (status 401, "
	    "error invalid_token)");
	CHECK_CONTAINS(err.reply, "Authentication failed");
	CHECK(strstr(err.msg, "Tok-Wrong-8c2L") == NULL);
	log = fake_log_wait(&f, "# sasl-error-answer");
	/* base64("user=joe\1auth=Bearer s3cret-pw\1\1") */
	CHECK_CONTAINS(log, "AUTH XOAUTH2\n# sasl dXNlcj1qb2UBYXV0aD1CZWFyZXIgczNj"
	    "cmV0LXB3AQE=\n");
	CHECK_CONTAINS(log, "# sasl-error-answer \n");
	CHECK(strstr(log, "USER") == NULL && strstr(log, "AUTH PLAIN") == NULL);
	free(log);
	fake_stop(&f);
}

/* auth = auto with a token: OAUTHBEARER when offered; a server offering
   neither OAuth2 mechanism is an error naming what it offers. */
static void
t_auth_auto_token(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct sasl_cred	 c = { "joe", PASSWORD, SASL_SECRET_OAUTH2 };
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	add_plain(&f, 1);
	fake_start(&f, "UIDL,SASL PLAIN XOAUTH2 OAUTHBEARER", NULL);
	a = account(&f);
	mh_err_clear(&err);
	CHECK(source_open(&a, "", &c, &src, &err) == 0);
	if (src != NULL) {
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	log = fake_log_wait(&f, "* COMMIT");
	CHECK_CONTAINS(log, "AUTH OAUTHBEARER\n# sasl ");
	free(log);
	fake_stop(&f);

	fake_init(&f);
	fake_start(&f, "USER,UIDL,SASL PLAIN CRAM-MD5", NULL);
	a = account(&f);
	src = NULL;
	mh_err_clear(&err);
	CHECK(source_open(&a, "", &c, &src, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "does not offer OAUTHBEARER or XOAUTH2 (it "
	    "offers: PLAIN CRAM-MD5)");
	log = fake_log_wait(&f, "* NOQUIT");
	CHECK(strstr(log, "USER") == NULL && strstr(log, "AUTH") == NULL);
	free(log);
	fake_stop(&f);
}

/* tls = starttls and no STLS offered: no fallback to plain text. */
static void
t_starttls_missing(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	a.ep.tls = CFG_TLS_STARTTLS;
	mh_err_clear(&err);
	CHECK(source_open(&a, "", cred(&a, PASSWORD), &src, &err) == -1);
	CHECK(err.cls == MH_ERR_TLS);
	log = fake_log_wait(&f, "* NOQUIT");
	CHECK(strstr(log, "USER") == NULL && strstr(log, "PASS") == NULL);
	free(log);
	fake_stop(&f);
}

static void
find_fake(void)
{
	snprintf(fake_pop3d, sizeof fake_pop3d, "%s/pop3/fake_pop3d.py", TEST_SRCDIR);
}

int
main(void)
{
	net_init();
	find_fake();
	if (access(fake_pop3d, R_OK) != 0 ||
	    access("/usr/bin/python3", X_OK) != 0)
		check_skip("no python3 or fake_pop3d.py");
	RUN(t_list_good);
	RUN(t_list_some);
	RUN(t_list_bad);
	RUN(t_list_arena);
	RUN(t_no_uidl);
	RUN(t_retr_tricky);
	RUN(t_retr_big);
	RUN(t_pipelined);
	RUN(t_window_deep);
	RUN(t_window_bytes);
	RUN(t_discard_bounded);
	RUN(t_drop_mid_retr);
	RUN(t_err_retr);
	RUN(t_commit_deletes);
	RUN(t_quit_err);
	RUN(t_abort_no_quit);
	RUN(t_plaintext_refused);
	RUN(t_wrong_password);
	RUN(t_in_use);
	RUN(t_auth_plain);
	RUN(t_auth_xoauth2);
	RUN(t_auth_auto_token);
	RUN(t_starttls_missing);
	return check_done();
}
