/*
 * test-imap.c -- the IMAP source against a scripted fake server
 * (tests/unit/imap/fake_imapd.py, 127.0.0.1, plain with
 * allow_plaintext_auth).  Each test builds a maildir of exact message
 * bytes, starts the server with the quirks it needs, drives the source
 * like sync.c does, and checks both what came back and what the server
 * was sent (its command log).
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "net/endpoint.h"
#include "check.h"
#include "fake.h"
#include "net/imap_utf7.h"
#include "fetch/idle.h"
#include "fetch/source_impl.h"
#include "net/net.h"


/* A credential from a's endpoint and pw (one at a time: static). */
static const struct sasl_cred *
cred(const struct cfg_account *a, const char *pw)
{
	static struct sasl_cred	c;

	endpoint_cred(&a->ep, pw, &c);
	return &c;
}

static char	fake_imapd[2 * PATH_MAX + 64];	/* tests/unit/imap/fake_imapd.py */

#define PASSWORD	"pa\"ss\\ w {5} \xc3\xa9t\xc3\xa9"

struct fake {
	char		 dir[64];
	pid_t		 pid;
	unsigned	 port;
};

static char	*folders_inbox[] = { "INBOX" };

/* Lets this test link while fetch/pop3.c is still a stub (weak). */
__attribute__((weak)) const struct source_ops pop3_source_ops = {
	.name = "pop3-missing",
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

/* Message uid's exact bytes: headers, NULs, bare CR/LF, 8-bit, size. */
static char *
make_msg(unsigned uid, size_t size, size_t *len)
{
	char	*m = xmalloc(size + 256);
	int	 n = snprintf(m, 256, "Subject: message %u\r\nX-Odd: "
	    "bare\nlf and bare\rcr\r\n\r\n\xff\xfe 8-bit\r\n.\r\n..dots\r\n",
	    uid);

	m[n++] = '\0';
	for (size_t i = 0; i < size; i++)
		m[n++] = (char)((i * 131 + uid) % 251);
	memcpy(m + n, "\r\nend\r\n", 7);
	*len = (size_t)n + 7;
	return m;
}

static void
add_msg(struct fake *f, const char *folder, unsigned uid, size_t size)
{
	char	 path[256];
	size_t	 len;
	char	*m = make_msg(uid, size, &len);

	snprintf(path, sizeof path, "%s/mail/%s", f->dir, folder);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/mail/%s/%u", f->dir, folder, uid);
	write_file(path, m, len);
	free(m);
}

static void
add_folder(struct fake *f, const char *folder, const char *file)
{
	char path[256];

	snprintf(path, sizeof path, "%s/mail/%s", f->dir, folder);
	mkdir(path, 0700);
	if (file != NULL) {
		snprintf(path, sizeof path, "%s/mail/%s/%s", f->dir, folder,
		    file);
		write_file(path, "7", 1);
	}
}

static void
fake_init(struct fake *f)
{
	char path[128];

	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test-imap.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(path, sizeof path, "%s/mail", f->dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/pass", f->dir);
	write_file(path, PASSWORD, strlen(PASSWORD));
	add_folder(f, "INBOX", ".uidvalidity");
}

/* fake_init, and INBOX holding UIDs 1-5 of 10, 20 ... 50 bytes. */
static void
fake_five(struct fake *f)
{
	fake_init(f);
	for (unsigned u = 1; u <= 5; u++)
		add_msg(f, "INBOX", u, 10 * u);
}

/* Starts the server; quirks and caps are extra argv words (NULL ends). */
static void
fake_start(struct fake *f, const char *caps, const char *const *quirks)
{
	char		 mail[96], log[96], pass[96];
	const char	*argv[32];
	int		 n = 0;

	snprintf(mail, sizeof mail, "%s/mail", f->dir);
	snprintf(log, sizeof log, "%s/log", f->dir);
	snprintf(pass, sizeof pass, "%s/pass", f->dir);
	argv[n++] = "/usr/bin/python3";
	argv[n++] = fake_imapd;
	argv[n++] = "--maildir";
	argv[n++] = mail;
	argv[n++] = "--log";
	argv[n++] = log;
	argv[n++] = "--pass-file";
	argv[n++] = pass;
	argv[n++] = "--idle";
	argv[n++] = "20";
	argv[n++] = "--caps";
	argv[n++] = caps != NULL ? caps : "IMAP4rev1 UIDPLUS";
	for (; quirks != NULL && *quirks != NULL; quirks++) {
		argv[n++] = "--quirk";
		argv[n++] = *quirks;
	}
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

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static struct cfg_account
account(struct fake *f)
{
	struct cfg_account a = { 0 };

	a.name = "test";
	a.protocol = CFG_PROTO_IMAP;
	a.ep.host = "127.0.0.1";
	a.ep.port = f->port;
	a.ep.tls = CFG_TLS_NONE;
	a.ep.user = "joe";
	a.keep = true;
	a.folders = folders_inbox;
	a.nfolders = 1;
	a.ep.allow_plaintext_auth = true;
	a.timeout = 30;	/* generous: a loaded machine is not a fault */
	return a;
}

static struct source *
open_ok(const struct cfg_account *a, const char *folder)
{
	struct source	*src = NULL;
	struct mh_err	 err;
	char		 buf[1100];

	mh_err_clear(&err);
	if (source_open(a, folder, cred(a, PASSWORD), &src, &err) == -1) {
		fprintf(stderr, "  open: %s\n", mh_err_str(&err, buf,
		    sizeof buf));
		return NULL;
	}
	return src;
}

/* Fetches msg into a temp file and compares it with make_msg(uid). */
static int
fetch_matches(struct source *src, const struct source_msg *m, size_t size,
    struct mh_err *err)
{
	char	 tmpl[] = "/tmp/test-imap-out.XXXXXX", *want, *got;
	size_t	 wlen;
	off_t	 glen;
	int	 fd, rc = -1;

	if ((fd = mkstemp(tmpl)) == -1)
		return -1;
	unlink(tmpl);
	want = make_msg(m->num, size, &wlen);
	if (source_fetch(src, m, fd, err) == 0) {
		glen = lseek(fd, 0, SEEK_END);
		got = xmalloc((size_t)glen + 1);
		if (pread(fd, got, (size_t)glen, 0) == glen &&
		    (size_t)glen == wlen && memcmp(got, want, wlen) == 0)
			rc = 0;
		else {
			fprintf(stderr, "  UID %u: %lld bytes, want %zu\n",
			    m->num, (long long)glen, wlen);
			rc = -2;
		}
		free(got);
	}
	free(want);
	close(fd);
	return rc;
}

static void
t_list_known(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*log;

	fake_five(&f);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	CHECK((src = open_ok(&a, "INBOX")) != NULL);
	if (src == NULL)
		goto out;
	/* nothing new: UIDNEXT 6 says so, nothing is asked */
	source_set_known(src, 7, 5);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 0);
	CHECK(l.uidvalidity == 7);
	CHECK(l.has_uids);
	source_list_free(&l);
	source_set_known(src, 7, 3);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 2);
	if (l.n == 2) {
		CHECK_STR(l.msgs[0].uid, "4");
		CHECK(l.msgs[0].num == 4);
		CHECK_STR(l.msgs[1].uid, "5");
		CHECK(l.msgs[1].size > 50);
		/* INTERNALDATE 17-Jul-1996 02:44:25 -0700, as a time */
		CHECK(l.msgs[1].date == 837596665);
	}
	source_list_free(&l);
	CHECK(source_commit(src, &err) == 0);
	source_free(src);
	log = fake_log(&f);
	CHECK(strstr(log, "UID FETCH 6:*") == NULL);
	CHECK(count(log, "UID FETCH") == 1);
	CHECK_CONTAINS(log, "UID FETCH 4:* (UID RFC822.SIZE INTERNALDATE)");
	CHECK_CONTAINS(log, "EXAMINE INBOX");	/* keep: read-only */
	CHECK(count(log, "EXPUNGE") == 0);
	free(log);
out:
	fake_stop(&f);
}

static void
t_uidvalidity_change(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;

	fake_init(&f);
	for (unsigned u = 1; u <= 4; u++)
		add_msg(&f, "INBOX", u, 5);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	if ((src = open_ok(&a, "INBOX")) == NULL) {
		CHECK(!"open");
		goto out;
	}
	source_set_known(src, 6, 4);		/* another UIDVALIDITY */
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 4);
	CHECK(l.uidvalidity == 7);
	source_list_free(&l);
	source_set_known(src, 0, 0);		/* never seen */
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 4);
	if (l.n == 4)
		CHECK_STR(l.msgs[0].uid, "1");
	source_list_free(&l);
	source_abort(src);
	source_free(src);
out:
	fake_stop(&f);
}

/* Lists everything, plans it, fetches each; returns how many matched. */
/*
 * What the state knows, told before the SELECT: the listing goes out with
 * it (the fake's probe logs a SELECT with nothing sent after it) and is
 * used, unless UIDVALIDITY changed; a refused SELECT still reports its
 * own reply, not the listing's BAD, and leaves the session in step; a
 * SELECT not preceded by set_known lists everything.
 */
static void
t_list_with_select(void)
{
	const char *const	 q[] = { "pipelined_select", NULL };
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*log;

	fake_five(&f);
	add_msg(&f, "Other", 1, 10);
	fake_start(&f, NULL, q);
	a = account(&f);
	if ((src = open_ok(&a, NULL)) == NULL) {
		CHECK(!"open");
		goto out;
	}
	source_set_known(src, 7, 3);
	CHECK(source_select(src, "INBOX", &err) == 0);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 2 && l.uidvalidity == 7);
	if (l.n == 2) {
		CHECK_STR(l.msgs[0].uid, "4");
		CHECK_STR(l.msgs[1].uid, "5");
		CHECK(l.msgs[1].size > 50);
		CHECK(l.msgs[1].date == 837596665);
	}
	source_list_free(&l);

	/* nothing new: the listing came with the EXAMINE all the same */
	source_set_known(src, 7, 5);
	CHECK(source_select(src, "INBOX", &err) == 0);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 0);
	source_list_free(&l);

	/* UIDVALIDITY changed: what came with the EXAMINE is not enough */
	source_set_known(src, 6, 3);
	CHECK(source_select(src, "INBOX", &err) == 0);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 5);
	source_list_free(&l);

	/* a refused EXAMINE: its reply, and the session goes on */
	source_set_known(src, 7, 3);
	mh_err_clear(&err);
	CHECK(source_select(src, "Nope", &err) == -1);
	CHECK(err.cls == MH_ERR_PERM && err.scope == MH_SCOPE_FOLDER);
	CHECK_CONTAINS(err.reply, "Mailbox doesn't exist");

	/* no set_known before this one: nothing carried over */
	CHECK(source_select(src, "Other", &err) == 0);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 1);
	source_list_free(&l);
	CHECK(source_commit(src, &err) == 0);
	source_free(src);

	log = fake_log(&f);
	/* the probe sees the one SELECT that had nothing to send with it */
	CHECK(count(log, "# not pipelined") == 1);
	CHECK_CONTAINS(log, "# not pipelined after EXAMINE Other");
	/* EXAMINE 4 times, each with its listing (up to the highest UID
	   there can be); then the full one after the UIDVALIDITY change,
	   and Other's, by imap_list (with `*`) */
	CHECK(count(log, "UID FETCH 4:4294967295 (UID RFC822.SIZE "
	    "INTERNALDATE)") == 3);
	CHECK(count(log, "UID FETCH 6:4294967295 (UID RFC822.SIZE "
	    "INTERNALDATE)") == 1);
	CHECK(count(log, "UID FETCH 1:* (UID RFC822.SIZE INTERNALDATE)") == 2);
	CHECK(count(log, "UID FETCH") == 6);
	/* sent by mailhaul with the listing: the name quoted */
	CHECK(count(log, "EXAMINE \"INBOX\"\r\n") == 3);
	CHECK(count(log, "EXAMINE \"Nope\"\r\n") == 1);
	free(log);
out:
	fake_stop(&f);
}

/*
 * The SELECT or the listing sent with it answered BAD (libetpan:
 * MAILIMAP_ERROR_PROTOCOL): the other's reply is read all the same, so
 * the session stays in step and usable.  A BAD SELECT is the folder's
 * error with the server's text; a BAD listing only makes imap_list ask
 * again.
 */
static void
t_select_listing_bad(void)
{
	const char *const	 q[] = { "select_bad=Bad", "list_bad=1", NULL };
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	char			*log;

	fake_five(&f);
	add_folder(&f, "Bad", NULL);
	fake_start(&f, NULL, q);
	a = account(&f);
	if ((src = open_ok(&a, NULL)) == NULL) {
		CHECK(!"open");
		goto out;
	}
	/* the listing refused (list_bad=1): the select stands */
	source_set_known(src, 7, 3);
	mh_err_clear(&err);
	CHECK(source_select(src, "INBOX", &err) == 0);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 2);
	source_list_free(&l);
	CHECK(source_usable(src));

	/* the SELECT refused with BAD: the folder's error, its text */
	source_set_known(src, 7, 3);
	mh_err_clear(&err);
	CHECK(source_select(src, "Bad", &err) == -1);
	CHECK(err.cls == MH_ERR_PERM && err.scope == MH_SCOPE_FOLDER);
	CHECK_CONTAINS(err.reply, "Invalid mailbox name");
	CHECK(source_usable(src));

	/* and the session is in step: the next folder as usual */
	source_set_known(src, 7, 4);
	mh_err_clear(&err);
	CHECK(source_select(src, "INBOX", &err) == 0);
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 1);
	if (l.n == 1)
		CHECK_STR(l.msgs[0].uid, "5");
	source_list_free(&l);
	CHECK(source_commit(src, &err) == 0);
	source_free(src);

	log = fake_log(&f);
	/* the refused listing asked again by imap_list, then Bad's, then
	   the last one's */
	CHECK(count(log, "UID FETCH 4:4294967295 (UID RFC822.SIZE "
	    "INTERNALDATE)") == 2);
	CHECK(count(log, "UID FETCH 4:* (UID RFC822.SIZE INTERNALDATE)") == 1);
	CHECK(count(log, "UID FETCH 5:4294967295 (UID RFC822.SIZE "
	    "INTERNALDATE)") == 1);
	CHECK(count(log, "UID FETCH") == 4);
	free(log);
out:
	fake_stop(&f);
}

/* How many of our descriptors a child would inherit (no FD_CLOEXEC). */
static int
inheritable(void)
{
	DIR		*d = opendir("/proc/self/fd");
	struct dirent	*e;
	int		 n = 0, fd, fl;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || (fd = atoi(e->d_name)) <= 2 ||
		    fd == dirfd(d))
			continue;
		if ((fl = fcntl(fd, F_GETFD)) != -1 && !(fl & FD_CLOEXEC))
			n++;
	}
	closedir(d);
	return n;
}

static int
fetch_all(struct fake *f, const char *caps, const char *const *quirks,
    size_t size, int *failed_uid, char *reply, size_t rsize)
{
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	const struct source_msg	**plan;
	int			 ok = 0, base;

	fake_start(f, caps, quirks);
	a = account(f);
	base = inheritable();
	if ((src = open_ok(&a, "INBOX")) == NULL)
		return -1;
	if (source_list(src, &l, &err) == -1) {
		source_abort(src);
		source_free(src);
		return -1;
	}
	plan = xcalloc(l.n + 1, sizeof *plan);
	for (size_t i = 0; i < l.n; i++)
		plan[i] = &l.msgs[i];
	source_plan(src, plan, l.n);
	for (size_t i = 0; i < l.n; i++) {
		int r = fetch_matches(src, &l.msgs[i], size, &err);

		/* the batch's spool files and the connection stay ours */
		if (i == 0)
			CHECK(inheritable() == base);
		if (r == 0)
			ok++;
		else if (r == -1 && failed_uid != NULL) {
			*failed_uid = (int)l.msgs[i].num;
			snprintf(reply, rsize, "%s | %s", err.msg, err.reply);
		}
	}
	source_abort(src);
	source_free(src);
	source_list_free(&l);
	free(plan);
	return ok;
}

/*
 * fetch_header: the Message-ID field alone, fetched for the message and
 * the ones after it in the plan in one command; a message the server
 * does not return fails alone.
 */
static void
t_fetch_header(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	static const char *const q[] = { "fewer=3", NULL };
	const struct source_msg	*plan[4];
	char			 path[256], *log, buf[256];
	char			 tmpl[] = "/tmp/test-imap-hdr.XXXXXX";
	int			 fd;
	ssize_t			 n;

	fake_init(&f);
	snprintf(path, sizeof path, "%s/mail/INBOX", f.dir);
	mkdir(path, 0700);
	for (unsigned u = 1; u <= 4; u++) {
		char m[256];
		int len = snprintf(m, sizeof m, "Subject: s%u\r\nMessage-ID: "
		    "<m%u@x>\r\n\r\nbody %u\r\n", u, u, u);

		snprintf(path, sizeof path, "%s/mail/INBOX/%u", f.dir, u);
		write_file(path, m, (size_t)len);
	}
	fake_start(&f, NULL, q);
	a = account(&f);
	CHECK((src = open_ok(&a, "INBOX")) != NULL);
	if (src == NULL)
		goto out;
	CHECK(source_list(src, &l, &err) == 0 && l.n == 4);
	for (size_t i = 0; i < 4 && i < l.n; i++)
		plan[i] = &l.msgs[i];
	source_plan(src, plan, l.n < 4 ? l.n : 4);
	CHECK((fd = mkstemp(tmpl)) != -1);
	unlink(tmpl);
	for (size_t i = 0; i < 4 && i < l.n; i++) {
		CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
		mh_err_clear(&err);
		if (i == 2) {
			CHECK(source_fetch_header(src, plan[i], fd, &err) == -1);
			CHECK(err.cls == MH_ERR_PERM &&
			    err.scope == MH_SCOPE_MESSAGE);
			continue;
		}
		CHECK(source_fetch_header(src, plan[i], fd, &err) == 0);
		n = pread(fd, buf, sizeof buf - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		snprintf(path, sizeof path, "Message-ID: <m%zu@x>\r\n\r\n",
		    i + 1);
		CHECK_STR(buf, path);
	}
	close(fd);
	source_list_free(&l);
	source_abort(src);
	source_free(src);
	log = fake_log(&f);
	CHECK(count(log, "HEADER.FIELDS") == 1);
	CHECK_CONTAINS(log, "UID FETCH 1,2,3,4 (UID BODY.PEEK[HEADER.FIELDS "
	    "(MESSAGE-ID)])");
	CHECK(count(log, "BODY.PEEK[]") == 0);
	free(log);
out:
	fake_stop(&f);
}

static void
t_fetch_batch(void)
{
	struct fake	 f;
	char		*log;

	fake_init(&f);
	for (unsigned u = 1; u <= 6; u++)
		add_msg(&f, "INBOX", u * 3, 70000);
	CHECK(fetch_all(&f, NULL, NULL, 70000, NULL, NULL, 0) == 6);
	log = fake_log(&f);
	/* one batch, bodies peeked (\Seen untouched) */
	CHECK(count(log, "BODY.PEEK[]") == 1);
	CHECK_CONTAINS(log, "UID FETCH 3,6,9,12,15,18 (UID BODY.PEEK[])");
	free(log);
	fake_stop(&f);
}

static void
t_fetch_big_batches(void)
{
	struct fake	 f;
	char		*log;

	/* 60 messages: batches of 16, 32, then the 12 left (each batch
	   twice the one before) */
	fake_init(&f);
	for (unsigned u = 1; u <= 60; u++)
		add_msg(&f, "INBOX", u, 100);
	CHECK(fetch_all(&f, NULL, NULL, 100, NULL, NULL, 0) == 60);
	log = fake_log(&f);
	CHECK(count(log, "BODY.PEEK[]") == 3);
	CHECK_CONTAINS(log, "UID FETCH 1:16 (UID BODY.PEEK[])");
	CHECK_CONTAINS(log, "UID FETCH 17:48 (UID BODY.PEEK[])");
	CHECK_CONTAINS(log, "UID FETCH 49:60 (UID BODY.PEEK[])");
	free(log);
	fake_stop(&f);
}

/*
 * A body is handed over, not copied: an empty file given to
 * source_fetch then refers to the spooled body's file, its close-on-exec
 * flag as it was, and the empty file serves a later body; a file that
 * is not empty gets the body written after what it holds.
 */
static void
t_fetch_hands_over(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;
	struct mh_err		 err;
	const struct source_msg	*plan[3];
	char			 tmpl[] = "/tmp/test-imap-ho.XXXXXX", *want;
	char			 got[4000];
	struct stat		 before, after;
	size_t			 wlen;
	int			 fd[3] = { -1, -1, -1 };

	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 3000);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	if ((src = open_ok(&a, "INBOX")) == NULL) {
		CHECK(!"open");
		goto out;
	}
	CHECK(source_list(src, &l, &err) == 0);
	CHECK(l.n == 3);
	if (l.n != 3)
		goto free;
	for (size_t i = 0; i < 3; i++) {
		plan[i] = &l.msgs[i];
		memcpy(tmpl + strlen(tmpl) - 6, "XXXXXX", 6);
		fd[i] = mkstemp(tmpl);
		CHECK(fd[i] != -1);
		if (fd[i] == -1)
			goto free;
		unlink(tmpl);
		if (i == 1)
			CHECK(fcntl(fd[i], F_SETFD, FD_CLOEXEC) == 0);
	}
	CHECK(write(fd[2], "X", 1) == 1);
	source_plan(src, plan, 3);
	for (size_t i = 0; i < 3; i++) {
		CHECK(fstat(fd[i], &before) == 0);
		CHECK(source_fetch(src, plan[i], fd[i], &err) == 0);
		CHECK(fstat(fd[i], &after) == 0);
		want = make_msg(plan[i]->num, 3000, &wlen);
		memset(got, 0, sizeof got);
		if (i < 2) {
			CHECK(after.st_ino != before.st_ino);	/* handed over */
			CHECK(lseek(fd[i], 0, SEEK_CUR) == (off_t)wlen);
			CHECK(pread(fd[i], got, sizeof got, 0) == (ssize_t)wlen);
			CHECK(memcmp(got, want, wlen) == 0);
		} else {			/* not empty: copied after "X" */
			CHECK(after.st_ino == before.st_ino);
			CHECK(pread(fd[i], got, sizeof got, 0) ==
			    (ssize_t)wlen + 1);
			CHECK(got[0] == 'X' && memcmp(got + 1, want, wlen) == 0);
		}
		CHECK(((fcntl(fd[i], F_GETFD) & FD_CLOEXEC) != 0) == (i == 1));
		free(want);
	}
free:
	for (size_t i = 0; i < 3 && l.n == 3; i++)
		if (fd[i] != -1)
			close(fd[i]);
	source_abort(src);
	source_free(src);
	source_list_free(&l);
out:
	fake_stop(&f);
}

static void
t_fetch_unsolicited_and_dup(void)
{
	static const char *const q[] = { "unsolicited", "dup", NULL };
	struct fake f;

	fake_init(&f);
	for (unsigned u = 1; u <= 4; u++)
		add_msg(&f, "INBOX", u, 3000);
	CHECK(fetch_all(&f, NULL, q, 3000, NULL, NULL, 0) == 4);
	fake_stop(&f);
}

static void
t_fetch_tagged_no(void)
{
	static const char *const q[] = { "no_after=2", NULL };
	struct fake	 f;
	int		 failed = 0;
	char		 reply[1100] = "";

	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 500);
	/* 1 and 2 arrive, then NO: 3 is an error, not a silent success */
	CHECK(fetch_all(&f, NULL, q, 500, &failed, reply, sizeof reply) ==
	    2);
	CHECK(failed == 3);
	CHECK_CONTAINS(reply, "UID 3");
	CHECK_CONTAINS(reply, "Backend error");
	fake_stop(&f);
}

static void
t_fetch_fewer(void)
{
	static const char *const q[] = { "fewer=2", NULL };
	struct fake	 f;
	int		 failed = 0;
	char		 reply[1100] = "";

	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 500);
	CHECK(fetch_all(&f, NULL, q, 500, &failed, reply, sizeof reply) ==
	    2);
	CHECK(failed == 2);
	fake_stop(&f);
}

static void
delete_two(struct fake *f, const char *caps, const char *move_to, int *rc,
    struct mh_err *err)
{
	struct cfg_account	 a;
	struct source		*src;
	struct source_list	 l;

	fake_start(f, caps, NULL);
	a = account(f);
	a.keep = move_to != NULL;
	a.move_to = (char *)move_to;
	if ((src = open_ok(&a, "INBOX")) == NULL) {
		*rc = -5;
		return;
	}
	CHECK(source_list(src, &l, err) == 0);
	CHECK(l.n == 3);
	if (l.n == 3) {
		CHECK(source_mark_delete(src, &l.msgs[0], err) == 0);
		CHECK(source_mark_delete(src, &l.msgs[1], err) == 0);
	}
	*rc = source_commit(src, err);
	source_free(src);
	source_list_free(&l);
}

static void
t_delete_uidplus(void)
{
	struct fake	 f;
	struct mh_err	 err;
	char		*log;
	int		 rc;

	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 10);
	delete_two(&f, "IMAP4rev1 UIDPLUS", NULL, &rc, &err);
	CHECK(rc == 0);
	log = fake_read_log_until(f.dir, "LOGOUT");
	CHECK_CONTAINS(log, "SELECT INBOX");
	CHECK_CONTAINS(log, "UID STORE 1:2 +FLAGS.SILENT (\\Deleted)");
	CHECK_CONTAINS(log, "UID EXPUNGE 1:2");
	CHECK_CONTAINS(log, "LOGOUT");
	free(log);
	fake_stop(&f);
}

static void
t_delete_no_uidplus(void)
{
	struct fake	 f;
	struct mh_err	 err;
	char		*log;
	int		 rc;

	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 10);
	mh_err_clear(&err);
	delete_two(&f, "IMAP4rev1", NULL, &rc, &err);
	CHECK(rc == -1);
	CHECK_CONTAINS(err.msg, "UIDPLUS");
	log = fake_log(&f);
	CHECK(count(log, "EXPUNGE") == 0);
	CHECK(count(log, "STORE") == 0);
	free(log);
	fake_stop(&f);
}

static void
t_move(void)
{
	struct fake	 f;
	struct mh_err	 err;
	char		*log;
	int		 rc;

	/* MOVE offered: one UID MOVE, nothing expunged by hand */
	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 10);
	delete_two(&f, "IMAP4rev1 MOVE", "Archive/\xc3\xa9t\xc3\xa9", &rc,
	    &err);
	CHECK(rc == 0);
	log = fake_log(&f);
	CHECK_CONTAINS(log, "SELECT INBOX");
	CHECK_CONTAINS(log, "UID MOVE 1:2 \"Archive/&AOk-t&AOk-\"");
	CHECK(count(log, "EXPUNGE") == 0);
	free(log);
	fake_stop(&f);

	/* no MOVE, UIDPLUS: COPY, then \Deleted and UID EXPUNGE */
	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 10);
	delete_two(&f, "IMAP4rev1 UIDPLUS", "Archive", &rc, &err);
	CHECK(rc == 0);
	log = fake_log(&f);
	CHECK_CONTAINS(log, "UID COPY 1:2 Archive");
	CHECK_CONTAINS(log, "UID STORE 1:2 +FLAGS.SILENT (\\Deleted)");
	CHECK_CONTAINS(log, "UID EXPUNGE 1:2");
	free(log);
	fake_stop(&f);

	/* neither: nothing is done, and commit says so */
	fake_init(&f);
	for (unsigned u = 1; u <= 3; u++)
		add_msg(&f, "INBOX", u, 10);
	delete_two(&f, "IMAP4rev1", "Archive", &rc, &err);
	CHECK(rc == -1);
	log = fake_log(&f);
	CHECK(count(log, "COPY") == 0);
	CHECK(count(log, "EXPUNGE") == 0);
	free(log);
	fake_stop(&f);
}

static void
t_login(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct source_info	 info;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	/* the awkward password is accepted (sent as a literal) */
	CHECK((src = open_ok(&a, "INBOX")) != NULL);
	if (src != NULL) {
		source_get_info(src, &info);
		CHECK_CONTAINS(info.greeting, "fake imapd ready");
		CHECK_CONTAINS(info.capabilities, "UIDPLUS");
		CHECK(!info.tls);
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	/* a wrong password: MH_ERR_AUTH with the server's text */
	mh_err_clear(&err);
	CHECK(source_open(&a, "INBOX", cred(&a, "wrong"), &src, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.reply, "Authentication failed");
	CHECK(strstr(err.msg, "wrong") == NULL);
	/* no TLS and no allow_plaintext_auth: nothing is sent */
	a.ep.allow_plaintext_auth = false;
	mh_err_clear(&err);
	CHECK(source_open(&a, "INBOX", cred(&a, PASSWORD), &src, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	log = fake_log(&f);
	CHECK(count(log, "LOGIN") == 2);
	CHECK(count(log, "login mismatch") == 1);
	free(log);
	fake_stop(&f);
}

/* XOAUTH2 with SASL-IR: the initial response in the command. */
static void
t_authenticate_xoauth2(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	fake_start(&f, "IMAP4rev1 UIDPLUS SASL-IR AUTH=PLAIN AUTH=XOAUTH2",
	    NULL);
	a = account(&f);
	a.ep.auth = CFG_AUTH_XOAUTH2;
	CHECK((src = open_ok(&a, "INBOX")) != NULL);
	if (src != NULL) {
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	log = fake_log(&f);
	CHECK(count(log, "AUTHENTICATE XOAUTH2 ") == 1);
	CHECK(count(log, " LOGIN ") == 0);
	free(log);
	fake_stop(&f);
}

/* OAUTHBEARER without SASL-IR, and its error continuation answered ^A. */
static void
t_authenticate_oauthbearer(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct sasl_cred	 c = { "joe", "Tok-Wrong-8c2L",
	    SASL_SECRET_OAUTH2 };
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	fake_start(&f, "IMAP4rev1 UIDPLUS AUTH=XOAUTH2 AUTH=OAUTHBEARER", NULL);
	a = account(&f);
	a.ep.auth = CFG_AUTH_OAUTHBEARER;
	CHECK((src = open_ok(&a, "INBOX")) != NULL);
	if (src != NULL) {
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	a.ep.auth = CFG_AUTH_AUTO;	/* auto + a token: OAUTHBEARER too */
	mh_err_clear(&err);
	src = NULL;
	CHECK(source_open(&a, "INBOX", &c, &src, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "AUTH OAUTHBEARER as joe refused (status 400)");
	CHECK_CONTAINS(err.reply, "AUTHENTICATIONFAILED");
	CHECK(strstr(err.msg, "Tok-Wrong-8c2L") == NULL);
	log = fake_log(&f);
	CHECK(count(log, "AUTHENTICATE OAUTHBEARER\r\n") == 2);
	CHECK(count(log, "# sasl-error-answer AQ==\n") == 1);
	free(log);
	fake_stop(&f);
}

/* A token and a server with no OAuth2 mechanism: nothing is sent. */
static void
t_authenticate_not_offered(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	fake_start(&f, "IMAP4rev1 UIDPLUS AUTH=PLAIN", NULL);
	a = account(&f);
	a.ep.auth = CFG_AUTH_XOAUTH2;
	mh_err_clear(&err);
	CHECK(source_open(&a, "INBOX", cred(&a, PASSWORD), &src, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	CHECK_CONTAINS(err.msg, "does not offer XOAUTH2 (it offers: PLAIN)");
	log = fake_log(&f);
	CHECK(count(log, "AUTHENTICATE") == 0 && count(log, " LOGIN ") == 0);
	free(log);
	fake_stop(&f);
}

static void
t_authenticate_plain(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src;
	struct mh_err		 err;
	char			*log;

	fake_init(&f);
	fake_start(&f, "IMAP4rev1 UIDPLUS LOGINDISABLED AUTH=PLAIN", NULL);
	a = account(&f);
	CHECK((src = open_ok(&a, "INBOX")) != NULL);
	if (src != NULL) {
		CHECK(source_commit(src, &err) == 0);
		source_free(src);
	}
	mh_err_clear(&err);
	CHECK(source_open(&a, "INBOX", cred(&a, "nope"), &src, &err) == -1);
	CHECK(err.cls == MH_ERR_AUTH);
	log = fake_log(&f);
	CHECK(count(log, "AUTHENTICATE PLAIN") == 2);
	CHECK(count(log, " LOGIN ") == 0);
	free(log);
	fake_stop(&f);
}

/*
 * A refused login is classified by its response code (RFC 5530): a server
 * that cannot take us now is a temporary failure, not wrong credentials;
 * over LOGIN (libetpan keeps the code apart) and AUTHENTICATE alike.
 */
static void
t_login_codes(void)
{
	static const struct {
		const char		*reply;
		enum mh_err_class	 cls;
	} cases[] = {
		{ "[LIMIT] Too many connections", MH_ERR_TEMP },
		{ "[UNAVAILABLE] Backend down", MH_ERR_TEMP },
		{ "[INUSE] Mailbox locked", MH_ERR_TEMP },
		{ "[AUTHENTICATIONFAILED] Bad password", MH_ERR_AUTH },
		{ "[AUTHORIZATIONFAILED] Not yours", MH_ERR_AUTH },
		{ "[EXPIRED] Password expired", MH_ERR_AUTH },
		{ "Go away", MH_ERR_AUTH },
	};
	static const char *const caps[] = { NULL,
	    "IMAP4rev1 UIDPLUS LOGINDISABLED AUTH=PLAIN" };
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;
	char			 q[128], code[32];

	for (size_t c = 0; c < 2; c++)
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			const char *quirks[] = { q, NULL };

			snprintf(q, sizeof q, "login_no=%s", cases[i].reply);
			fake_init(&f);
			fake_start(&f, caps[c], quirks);
			a = account(&f);
			mh_err_clear(&err);
			CHECK(source_open(&a, "INBOX", cred(&a, PASSWORD),
			    &src, &err) == -1);
			if (err.cls != cases[i].cls)
				fprintf(stderr, "%s (%s): class %d\n",
				    cases[i].reply, c ? "AUTHENTICATE" :
				    "LOGIN", (int)err.cls);
			CHECK(err.cls == cases[i].cls);
			snprintf(code, sizeof code, "%.*s",
			    (int)strcspn(cases[i].reply, " "),
			    cases[i].reply);
			CHECK_CONTAINS(err.reply, code);
			fake_stop(&f);
		}
}

/* IDLE on INBOX first and on at most idle_connections folders. */
static void
t_idle_pick(void)
{
	char	*v[] = { "Archive", "Drafts", "inbox", "Sent", "Spam", NULL };
	char	*w[] = { "A", "B", NULL };
	char	*none[] = { NULL };

	CHECK(idle_pick_folders(v, 3) == 3);
	CHECK(strcmp(v[0], "inbox") == 0);
	CHECK(strcmp(v[1], "Archive") == 0);
	CHECK(strcmp(v[2], "Drafts") == 0);
	CHECK(strcmp(v[3], "Sent") == 0 && strcmp(v[4], "Spam") == 0);
	CHECK(v[5] == NULL);
	CHECK(idle_pick_folders(v, 10) == 5);
	CHECK(idle_pick_folders(v, 1) == 1 && strcmp(v[0], "inbox") == 0);
	CHECK(idle_pick_folders(w, 3) == 2);
	CHECK(strcmp(w[0], "A") == 0 && strcmp(w[1], "B") == 0);
	CHECK(idle_pick_folders(none, 3) == 0);
}

static void
t_missing_folder(void)
{
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*src = NULL;
	struct mh_err		 err;

	fake_init(&f);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	mh_err_clear(&err);
	CHECK(source_open(&a, "Gone", cred(&a, PASSWORD), &src, &err) == -1);
	CHECK(src == NULL);
	CHECK(err.cls == MH_ERR_PERM);
	CHECK_CONTAINS(err.msg, "folder Gone does not exist");
	CHECK_CONTAINS(err.reply, "doesn't exist");
	fake_stop(&f);
}

static void
t_folders(void)
{
	static char	*want[] = { "INBOX", "Lists/*", "Archive/2024",
			    "Caf\xc3\xa9" };
	struct fake		 f;
	struct cfg_account	 a;
	struct mh_err		 err;
	char			**out = NULL;
	size_t			 n = 0;

	fake_init(&f);
	add_folder(&f, "Lists", NULL);
	add_folder(&f, "Lists/a", NULL);
	add_folder(&f, "Lists/b", NULL);
	add_folder(&f, "Lists/gone", ".noselect");
	fake_start(&f, NULL, NULL);
	a = account(&f);
	a.folders = want;
	a.nfolders = 4;
	CHECK(source_folders(&a, cred(&a, PASSWORD), NULL, &out, &err) == 0);
	for (; out != NULL && out[n] != NULL; n++)
		;
	CHECK(n == 5);
	if (n == 5) {
		CHECK_STR(out[0], "INBOX");
		CHECK_STR(out[1], "Lists/a");
		CHECK_STR(out[2], "Lists/b");
		CHECK_STR(out[3], "Archive/2024");
		CHECK_STR(out[4], "Caf&AOk-");
	}
	source_folders_free(out);
	fake_stop(&f);
}

/*
 * One session for the account's pass: LIST, then each folder on the
 * same connection (one LOGIN); a folder that cannot be opened leaves the
 * session usable; LOGOUT once, at the end.
 */
static void
t_one_session(void)
{
	static char		*want[] = { "Lists/*", "Gone", "INBOX" };
	struct fake		 f;
	struct cfg_account	 a;
	struct source		*s = NULL;
	struct source_list	 l;
	struct mh_err		 err;
	char			**out = NULL, *log;
	size_t			 n = 0;

	fake_init(&f);
	add_msg(&f, "INBOX", 1, 100);
	add_folder(&f, "Lists", ".noselect");
	add_msg(&f, "Lists/a", 1, 200);
	add_msg(&f, "Lists/a", 2, 300);
	add_msg(&f, "Lists/b", 7, 400);
	fake_start(&f, NULL, NULL);
	a = account(&f);
	a.folders = want;
	a.nfolders = 3;
	mh_err_clear(&err);
	CHECK(source_folders(&a, cred(&a, PASSWORD), &s, &out, &err) == 0);
	CHECK(s != NULL);
	for (; out != NULL && out[n] != NULL; n++)
		;
	CHECK(n == 4);
	for (size_t i = 0; s != NULL && i < n; i++) {
		CHECK(source_usable(s));
		mh_err_clear(&err);
		if (strcmp(out[i], "Gone") == 0) {
			CHECK(source_select(s, out[i], &err) == -1);
			CHECK(err.scope == MH_SCOPE_FOLDER);
			continue;
		}
		CHECK(source_select(s, out[i], &err) == 0);
		CHECK(source_list(s, &l, &err) == 0);
		CHECK(l.n == (strcmp(out[i], "Lists/a") == 0 ? 2u : 1u));
		if (strcmp(out[i], "Lists/b") == 0)
			CHECK(l.n == 1 && l.msgs[0].num == 7);
		source_list_free(&l);
		CHECK(source_commit(s, &err) == 0);
	}
	CHECK(s != NULL && source_usable(s));
	source_free(s);
	source_folders_free(out);
	log = fake_read_log_until(f.dir, " LOGOUT");
	CHECK(count(log, " LOGIN ") == 1);
	CHECK(count(log, " LIST ") == 1);
	CHECK(count(log, " EXAMINE ") == 4);
	CHECK(count(log, " LOGOUT") == 1);
	free(log);
	fake_stop(&f);
}

static void
t_utf7(void)
{
	char *s;

	s = imap_utf7_decode("Entw&APw-rfe");
	CHECK_STR(s, "Entw\xc3\xbcrfe");
	free(s);
	s = imap_utf7_decode("&ZeVnLIqe-");		/* 日本語 */
	CHECK_STR(s, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
	free(s);
	s = imap_utf7_decode("A&-B");
	CHECK_STR(s, "A&B");
	free(s);
	s = imap_utf7_decode("bad&Jjo");		/* unterminated */
	CHECK_STR(s, "bad&Jjo");
	free(s);
	s = imap_utf7_encode("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
	CHECK_STR(s, "&ZeVnLIqe-");
	free(s);
	s = imap_utf7_encode("A&B \xf0\x9f\x98\x80");	/* a surrogate pair */
	CHECK_STR(s, "A&-B &2D3eAA-");
	free(s);
	s = imap_utf7_decode("A&-B &2D3eAA-");
	CHECK_STR(s, "A&B \xf0\x9f\x98\x80");
	free(s);
	CHECK(imap_utf7_encode("\xc3") == NULL);
}

/* The script next to this source, found from the executable's place. */
static void
find_fake(void)
{
	snprintf(fake_imapd, sizeof fake_imapd, "%s/imap/fake_imapd.py", TEST_SRCDIR);
}

int
main(void)
{
	net_init();
	find_fake();
	if (access(fake_imapd, R_OK) != 0 ||
	    access("/usr/bin/python3", X_OK) != 0)
		check_skip("no python3 or fake_imapd.py");
	RUN(t_utf7);
	RUN(t_list_known);
	RUN(t_uidvalidity_change);
	RUN(t_list_with_select);
	RUN(t_select_listing_bad);
	RUN(t_fetch_batch);
	RUN(t_fetch_header);
	RUN(t_fetch_big_batches);
	RUN(t_fetch_hands_over);
	RUN(t_fetch_unsolicited_and_dup);
	RUN(t_fetch_tagged_no);
	RUN(t_fetch_fewer);
	RUN(t_delete_uidplus);
	RUN(t_delete_no_uidplus);
	RUN(t_move);
	RUN(t_login);
	RUN(t_login_codes);
	RUN(t_idle_pick);
	RUN(t_authenticate_plain);
	RUN(t_authenticate_xoauth2);
	RUN(t_authenticate_oauthbearer);
	RUN(t_authenticate_not_offered);
	RUN(t_missing_folder);
	RUN(t_folders);
	RUN(t_one_session);
	return check_done();
}
