/*
 * test-maildir.c -- the Maildir target's mechanics (forward/maildir.c,
 * included so that its file-local functions can be driven directly) and
 * the line-end rule (forward/lf.c).
 */
#define _GNU_SOURCE		/* maildir.c's sync_file_range */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>

#include <errno.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * maildir.c's fsync, for faults: the n-th call (fsync_fail_at, 1-based;
 * 0 never) fails with EIO, every call takes fsync_delay_ms more, and
 * the calls on directories are counted.  The flusher thread calls it.
 */
static atomic_int	fsync_calls, fsync_dir_calls, fsync_fail_at,
			fsync_delay_ms;

static int
test_fsync(int fd)
{
	struct stat	st;
	int		n = atomic_fetch_add(&fsync_calls, 1) + 1;

	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		atomic_fetch_add(&fsync_dir_calls, 1);
	if (atomic_load(&fsync_delay_ms) > 0)
		usleep((useconds_t)atomic_load(&fsync_delay_ms) * 1000);
	if (n == atomic_load(&fsync_fail_at)) {
		errno = EIO;
		return -1;
	}
	return fsync(fd);
}

/* maildir.c's readdir: fails with EIO while readdir_fail is set (a disk
   or NFS error in the middle of a directory). */
static atomic_int	readdir_fail;

static struct dirent *
test_readdir(DIR *d)
{
	if (atomic_load(&readdir_fail)) {
		errno = EIO;
		return NULL;
	}
	return readdir(d);
}

/* the library's copy (target.c's table) keeps the name */
#define maildir_target_ops	test_maildir_target_ops
#define fsync			test_fsync
#define readdir			test_readdir
#include "forward/maildir.c"
#undef readdir
#undef fsync
#undef maildir_target_ops
#include "tests/unit/check.h"

static char	tmpdir[64];

static void
setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test-maildir.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
}

static void
teardown(void)
{
	char	cmd[256];

	snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s'; rm -rf '%s'", tmpdir,
	    tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* A spool file holding len bytes of data. */
static int
spool(const void *data, size_t len)
{
	char	path[128];
	int	fd;

	snprintf(path, sizeof path, "%s/spool.XXXXXX", tmpdir);
	fd = mkstemp(path);
	CHECK(fd != -1);
	unlink(path);
	CHECK(write(fd, data, len) == (ssize_t)len);
	return fd;
}

/* How many entries sub/ of the Maildir holds; *one gets the last name. */
static int
count(const char *md, const char *sub, char *one, size_t size)
{
	char		 path[512];
	struct dirent	*de;
	DIR		*d;
	int		 n = 0;

	snprintf(path, sizeof path, "%s/%s", md, sub);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		if (one != NULL)
			snprintf(one, size, "%s", de->d_name);
	}
	closedir(d);
	return n;
}

/* The whole file sub/name, NUL-terminated; *len its length. */
static char *
slurp(const char *md, const char *sub, const char *name, size_t *len)
{
	char	 path[1024], *buf = malloc(1 << 20);
	ssize_t	 n;
	int	 fd;

	snprintf(path, sizeof path, "%s/%s/%s", md, sub, name);
	fd = open(path, O_RDONLY);
	CHECK(fd != -1);
	n = read(fd, buf, (1 << 20) - 1);
	CHECK(n >= 0);
	buf[n < 0 ? 0 : n] = '\0';
	*len = n < 0 ? 0 : (size_t)n;
	close(fd);
	return buf;
}

static struct mdir *
md_new(const char *path)
{
	struct mdir	*md = xcalloc(1, sizeof *md);

	md->path = xstrdup(path);
	md_hostname(md->host, sizeof md->host);
	return md;
}

static void
md_free(struct mdir *md)
{
	md_stop(md);
	free(md->path);
	free(md);
}

/* The rule: CRLF -> LF, a bare CR stays, whatever the chunk size. */
static void
t_lf_rule(void)
{
	static const char in[] = "a\r\nb\rc\r\r\n\n\0x\r\n\r";
	static const char want[] = "a\nb\rc\r\n\n\0x\n\r";
	struct lf_reader	 r;
	char			 out[64];
	size_t			 cap, o;
	ssize_t			 n;
	uint64_t		 size;
	int			 fd;

	setup();
	fd = spool(in, sizeof in - 1);
	for (cap = 2; cap < 20; cap++) {
		lf_open(&r, NULL, fd);
		o = 0;
		while ((n = lf_read(&r, out + o, cap)) > 0)
			o += (size_t)n;
		CHECK(n == 0);
		CHECK(o == sizeof want - 1);
		CHECK(memcmp(out, want, sizeof want - 1) == 0);
	}
	/* the Received header first, converted the same way */
	lf_open(&r, "Received: x\r\n\ty\r\n", fd);
	o = 0;
	while ((n = lf_read(&r, out + o, 7)) > 0)
		o += (size_t)n;
	CHECK(o == 15 + sizeof want - 1);
	CHECK(memcmp(out, "Received: x\n\ty\n", 15) == 0);
	CHECK(memcmp(out + 15, want, sizeof want - 1) == 0);
	CHECK(lf_size("Received: x\r\n\ty\r\n", fd, &size) == 0);
	CHECK(size == 15 + sizeof want - 1);
	close(fd);
	teardown();
}

/* The rule, byte by byte: the reference the reader must agree with. */
static size_t
ref_convert(const unsigned char *in, size_t n, unsigned char *out, bool crlf)
{
	size_t	i, o = 0;

	for (i = 0; i < n; i++) {
		if (crlf) {
			if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
				out[o++] = '\r';
			out[o++] = in[i];
		} else if (in[i] != '\r' || i + 1 == n || in[i + 1] != '\n') {
			out[o++] = in[i];
		}
	}
	return o;
}

/*
 * Random runs of CR, LF, dots and letters, read back at every chunk size
 * up to 40 and at one bigger than the reader's own, both ways: the same
 * bytes as the byte-by-byte rule (spans and chunk edges, a CR held over
 * an edge).
 */
static void
t_lf_random(void)
{
	static const char	 alpha[] = "\r\n\r\n.ab";
	unsigned char		*in, *want, *got;
	struct lf_reader	 r;
	size_t			 n = 5000, caps[42], c, o, wn;
	ssize_t			 k;
	unsigned		 seed = 7;
	int			 fd, dir;

	setup();
	in = xmalloc(n);
	want = xmalloc(2 * n);
	got = xmalloc(2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		/* runs: mostly letters, now and then line ends */
		in[i] = (unsigned char)((seed >> 16) % 4 == 0 ?
		    alpha[(seed >> 20) % 4] : alpha[4 + (seed >> 20) % 3]);
	}
	fd = spool((const char *)in, n);
	for (c = 0; c < 40; c++)
		caps[c] = c + 2;
	caps[40] = 70000;
	caps[41] = 2 * n + 1;
	for (dir = 0; dir < 2; dir++) {
		wn = ref_convert(in, n, want, dir == 1);
		for (c = 0; c < 42; c++) {
			(dir == 1 ? lf_open_crlf : lf_open)(&r, NULL, fd);
			o = 0;
			while (o < 2 * n && (k = lf_read(&r, got + o,
			    caps[c] < 2 * n + 1 - o ? caps[c] : 2 * n + 1 -
			    o)) > 0)
				o += (size_t)k;
			CHECK(o == wn);
			CHECK(memcmp(got, want, wn) == 0);
		}
	}
	close(fd);
	free(in);
	free(want);
	free(got);
	teardown();
}

/* A missing Maildir is created 0700 with tmp/ new/ cur/. */
static void
t_created(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	struct stat	 st;
	char		 path[256], sub[300];
	int		 fd;

	setup();
	snprintf(path, sizeof path, "%s/Mail/INBOX", tmpdir);
	md = md_new(path);
	fd = spool("Subject: x\r\n\r\nhi\r\n", 19);
	umask(022);
	mh_err_clear(&err);
	CHECK(md_deliver(md, "k1", NULL, fd, &err) == 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
	snprintf(sub, sizeof sub, "%s/cur", path);
	CHECK(stat(sub, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 0777) == 0700);
	CHECK(count(path, "new", NULL, 0) == 1);
	CHECK(count(path, "tmp", NULL, 0) == 0);
	CHECK(count(path, "cur", NULL, 0) == 0);
	close(fd);
	md_free(md);
	teardown();
}

/* The file in new/: converted bytes, its name's parts, ",S=" exact. */
static void
t_delivered_bytes_and_name(void)
{
	static const char msg[] = "From: a@b\r\nSubject: s\r\n\r\nline\rx\r\n.\r\n";
	static const char want[] = "Received: by test\n\tfor me\n"
	    "From: a@b\nSubject: s\n\nline\rx\n.\n";
	struct mdir	*md;
	struct mh_err	 err;
	struct stat	 st;
	char		 name[512], path[600], expect[64], tag[MD_TAG_LEN + 1];
	char		*data;
	size_t		 len;
	int		 fd;

	setup();
	md = md_new(tmpdir);
	fd = spool(msg, sizeof msg - 1);
	CHECK(md_deliver(md, "imap://u@h/INBOX;UIDVALIDITY=7/;UID=42",
	    "Received: by test\r\n\tfor me\r\n", fd, &err) == 0);
	CHECK(count(tmpdir, "new", name, sizeof name) == 1);
	data = slurp(tmpdir, "new", name, &len);
	CHECK(len == sizeof want - 1 && memcmp(data, want, len) == 0);
	free(data);
	snprintf(expect, sizeof expect, ",S=%zu", sizeof want - 1);
	CHECK(strlen(name) > strlen(expect) &&
	    strcmp(name + strlen(name) - strlen(expect), expect) == 0);
	snprintf(path, sizeof path, "%s/new/%s", tmpdir, name);
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == sizeof want - 1);
	CHECK((st.st_mode & 0777) == 0600);
	snprintf(expect, sizeof expect, "P%ldQ1K", (long)getpid());
	CHECK_CONTAINS(name, expect);
	CHECK_CONTAINS(name, ".M");
	md_tag("imap://u@h/INBOX;UIDVALIDITY=7/;UID=42", tag);
	CHECK(md_name_has(name, tag));
	CHECK_CONTAINS(name, md->host);
	close(fd);
	md_free(md);
	teardown();
}

/* Two deliveries in one second get two names. */
static void
t_unique(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	int		 fd, i;

	setup();
	md = md_new(tmpdir);
	fd = spool("a\r\n", 3);
	for (i = 0; i < 50; i++)
		CHECK(md_deliver(md, "same-key", NULL, fd, &err) == 0);
	CHECK(count(tmpdir, "new", NULL, 0) == 50);
	close(fd);
	md_free(md);
	teardown();
}

/* The lookup finds the digest in new/ and cur/, and only that one. */
static void
t_lookup(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 name[512], from[1200], to[1200], tag[MD_TAG_LEN + 1];
	int		 fd, tfd;

	setup();
	md = md_new(tmpdir);
	fd = spool("a\r\n", 3);
	mh_err_clear(&err);
	CHECK(md_lookup(md, "key-1", &err) == 0);	/* no Maildir yet */
	CHECK(md_deliver(md, "key-1", NULL, fd, &err) == 0);
	CHECK(md_lookup(md, "key-1", &err) == 1);
	CHECK(md_lookup(md, "key-2", &err) == 0);
	/* a mail reader moves it to cur/ and adds flags */
	CHECK(count(tmpdir, "new", name, sizeof name) == 1);
	snprintf(from, sizeof from, "%s/new/%s", tmpdir, name);
	snprintf(to, sizeof to, "%s/cur/%s:2,S", tmpdir, name);
	CHECK(rename(from, to) == 0);
	CHECK(md_lookup(md, "key-1", &err) == 1);
	/* a crash left key-2 in tmp/: not delivered, and cleaned away */
	md_tag("key-2", tag);
	snprintf(from, sizeof from, "%s/tmp/1.M1P1Q1K%s.h,S=3", tmpdir, tag);
	tfd = open(from, O_WRONLY | O_CREAT, 0600);
	CHECK(tfd != -1);
	close(tfd);
	CHECK(md_lookup(md, "key-2", &err) == 0);
	CHECK(count(tmpdir, "tmp", NULL, 0) == 0);
	/* a host name that looks like a tag is not one */
	CHECK(!md_name_has("1.M1P1Q1.K0123456789abcdef.x,S=1",
	    "0123456789abcdef"));
	CHECK(md_name_has("1.M1P1Q1K0123456789abcdef.x,S=1:2,",
	    "0123456789abcdef"));
	close(fd);
	md_free(md);
	teardown();
}

/* A directory that cannot be read to its end is no answer: "not there"
   would deliver a message in doubt again. */
static void
t_lookup_read_fails(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	int		 fd;

	setup();
	md = md_new(tmpdir);
	fd = spool("a\r\n", 3);
	mh_err_clear(&err);
	CHECK(md_deliver(md, "key-1", NULL, fd, &err) == 0);
	atomic_store(&readdir_fail, 1);
	mh_err_clear(&err);
	CHECK(md_lookup(md, "key-1", &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "cannot read");
	CHECK_CONTAINS(err.msg, "Input/output error");
	mh_err_clear(&err);
	CHECK(md_lookup(md, "key-2", &err) == -1);
	atomic_store(&readdir_fail, 0);
	mh_err_clear(&err);
	CHECK(md_lookup(md, "key-1", &err) == 1);
	CHECK(md_lookup(md, "key-2", &err) == 0);
	close(fd);
	md_free(md);
	teardown();
}

/* A write that fails (the file size limit: a full disk) is temporary and
   leaves nothing in tmp/ or new/. */
static void
t_write_fails(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	struct rlimit	 rl = { 100, 100 };
	char		 big[4096];
	int		 fd;

	setup();
	md = md_new(tmpdir);
	memset(big, 'x', sizeof big);
	fd = spool(big, sizeof big);
	CHECK(md_prepare(md, &err) == 0);
	signal(SIGXFSZ, SIG_IGN);
	CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
	mh_err_clear(&err);
	CHECK(md_deliver(md, "k", NULL, fd, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, tmpdir);
	CHECK_CONTAINS(err.msg, "File too large");
	CHECK(count(tmpdir, "new", NULL, 0) == 0);
	CHECK(count(tmpdir, "tmp", NULL, 0) == 0);
	close(fd);
	md_free(md);
	teardown();
}

/* new/ unusable (not a directory): temporary, tmp/ file removed. */
static void
t_rename_fails(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 path[256];
	int		 fd;

	setup();
	md = md_new(tmpdir);
	fd = spool("a\r\n", 3);
	CHECK(md_prepare(md, &err) == 0);
	snprintf(path, sizeof path, "%s/new", tmpdir);
	CHECK(rmdir(path) == 0);
	CHECK(close(open(path, O_WRONLY | O_CREAT, 0600)) == 0);
	mh_err_clear(&err);
	CHECK(md_deliver(md, "k", NULL, fd, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "new/");
	CHECK(count(tmpdir, "tmp", NULL, 0) == 0);
	/* and the next delivery checks the directories again */
	mh_err_clear(&err);
	CHECK(md_deliver(md, "k", NULL, fd, &err) == -1);
	CHECK_CONTAINS(err.msg, "new");
	close(fd);
	md_free(md);
	teardown();
}

/* A Maildir that cannot be created is a temporary failure. */
static void
t_cannot_create(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 path[256];
	int		 fd;

	setup();
	snprintf(path, sizeof path, "%s/file", tmpdir);
	CHECK(close(open(path, O_WRONLY | O_CREAT, 0600)) == 0);
	snprintf(path, sizeof path, "%s/file/Maildir", tmpdir);
	md = md_new(path);
	fd = spool("a\r\n", 3);
	mh_err_clear(&err);
	CHECK(md_deliver(md, "k", NULL, fd, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "file");
	close(fd);
	md_free(md);
	teardown();
}

/*
 * Batch mode: each delivery is written to tmp/ and handed to the
 * flusher (1); the verdicts come back in the order handed over, each
 * message in new/ by then, and one collect too many is a local error.
 * Fewer than MD_GROUP wait for the first collect, then go as one group.
 */
static void
t_batch_flusher(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 key[16];
	int		 fd, i;

	setup();
	md = md_new(tmpdir);
	md->batch = true;
	fd = spool("a\r\nb\r\n", 6);
	for (i = 0; i < 3; i++) {
		snprintf(key, sizeof key, "key-%d", i);
		mh_err_clear(&err);
		CHECK(md_deliver(md, key, NULL, fd, &err) == 1);
	}
	/* not a group yet, and nobody waits: all three still in tmp/ */
	CHECK(count(tmpdir, "tmp", NULL, 0) == 3);
	CHECK(count(tmpdir, "new", NULL, 0) == 0);
	for (i = 0; i < 3; i++) {
		mh_err_clear(&err);
		CHECK(md_collect(md, &err) == 0);
		CHECK(count(tmpdir, "new", NULL, 0) == 3);
	}
	CHECK(count(tmpdir, "tmp", NULL, 0) == 0);
	mh_err_clear(&err);
	CHECK(md_collect(md, &err) == -1);
	CHECK(err.cls == MH_ERR_LOCAL);
	/* MD_GROUP handed over: the flusher goes without a collect */
	for (i = 0; i < MD_GROUP; i++) {
		snprintf(key, sizeof key, "more-%d", i);
		CHECK(md_deliver(md, key, NULL, fd, &err) == 1);
	}
	for (i = 0; i < 500 && count(tmpdir, "new", NULL, 0) < 3 + MD_GROUP;
	    i++)
		usleep(10000);
	CHECK(count(tmpdir, "new", NULL, 0) == 3 + MD_GROUP);
	for (i = 0; i < MD_GROUP; i++)
		CHECK(md_collect(md, &err) == 0);
	close(fd);
	md_free(md);
	teardown();
}

/* A Maildir in tmpdir in batch mode, *fd a spool file of one line,
   and n messages (k1, k2 ...) handed to the flusher. */
static struct mdir *
batch_setup(int *fd, int n)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 key[16];

	setup();
	md = md_new(tmpdir);
	md->batch = true;
	*fd = spool("a\r\n", 3);
	for (int i = 1; i <= n; i++) {
		snprintf(key, sizeof key, "k%d", i);
		mh_err_clear(&err);
		CHECK(md_deliver(md, key, NULL, *fd, &err) == 1);
	}
	return md;
}

/*
 * A group that cannot reach new/ fails as a whole: every verdict is
 * temporary and names new/, nothing is left in tmp/ or new/, and the
 * next delivery checks the directories again.
 */
static void
t_batch_group_fails(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 path[256];
	int		 fd;

	md = batch_setup(&fd, 2);
	/* the flusher has not taken them (no group, no collect yet) */
	snprintf(path, sizeof path, "%s/new", tmpdir);
	CHECK(rmdir(path) == 0);
	CHECK(close(open(path, O_WRONLY | O_CREAT, 0600)) == 0);
	mh_err_clear(&err);
	CHECK(md_collect(md, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "new/");
	CHECK_CONTAINS(err.msg, tmpdir);
	mh_err_clear(&err);
	CHECK(md_collect(md, &err) == -1);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK(count(tmpdir, "tmp", NULL, 0) == 0);
	close(fd);
	md_free(md);
	teardown();
}

/* Open descriptors of this process. */
static int
open_fds(void)
{
	struct dirent	*de;
	DIR		*d = opendir("/proc/self/fd");
	int		 n = 0;

	CHECK(d != NULL);
	while (d != NULL && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	return n;
}

/*
 * Verdicts go to their own messages: a group that works, then one whose
 * second file cannot be fsync'ed: that one's verdict names its failure,
 * the other two say they were in the same flush, all three are gone
 * from tmp/ and never in new/, no descriptor is left open, and the
 * directories are checked again before the next delivery, which works.
 */
static void
t_batch_verdicts(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 key[16];
	int		 fd, i, fds;

	md = batch_setup(&fd, 3);
	for (i = 1; i <= 3; i++) {
		mh_err_clear(&err);
		CHECK(md_collect(md, &err) == 0);
	}
	fds = open_fds();
	atomic_store(&fsync_fail_at, atomic_load(&fsync_calls) + 2);
	for (i = 4; i <= 6; i++) {
		snprintf(key, sizeof key, "k%d", i);
		CHECK(md_deliver(md, key, NULL, fd, &err) == 1);
	}
	mh_err_clear(&err);
	CHECK(md_collect(md, &err) == -1);		/* k4 */
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "Input/output error");
	CHECK_CONTAINS(err.msg, "in the same flush as this message");
	CHECK(!md->ready);
	mh_err_clear(&err);
	CHECK(md_collect(md, &err) == -1);		/* k5: the one */
	CHECK_CONTAINS(err.msg, "cannot write tmp/");
	CHECK_CONTAINS(err.msg, "Input/output error");
	CHECK(strstr(err.msg, "same flush") == NULL);
	mh_err_clear(&err);
	CHECK(md_collect(md, &err) == -1);		/* k6 */
	CHECK_CONTAINS(err.msg, "in the same flush as this message");
	CHECK(count(tmpdir, "tmp", NULL, 0) == 0);
	CHECK(count(tmpdir, "new", NULL, 0) == 3);
	CHECK(open_fds() == fds);	/* the three written are closed */
	atomic_store(&fsync_fail_at, 0);
	CHECK(md_lookup(md, "k4", &err) == 0);
	CHECK(md_lookup(md, "k1", &err) == 1);
	CHECK(md_deliver(md, "k7", NULL, fd, &err) == 1);
	CHECK(md->ready);
	CHECK(md_collect(md, &err) == 0);
	CHECK(count(tmpdir, "new", NULL, 0) == 4);
	close(fd);
	md_free(md);
	teardown();
}

/*
 * A collect that comes while a group is being flushed waits for it; one
 * that waits for a message the flusher has not taken makes it go: 33
 * messages, MD_GROUP then 1, in two groups (two fsyncs of new/), every
 * verdict good.  And after md_stop, still in batch mode, the next
 * delivery starts a flusher again.
 */
static void
t_batch_collect_mid_group(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	char		 key[16];
	int		 fd, i, k, dirs, calls;

	setup();
	md = md_new(tmpdir);
	md->batch = true;
	fd = spool("a\r\n", 3);
	dirs = atomic_load(&fsync_dir_calls);
	calls = atomic_load(&fsync_calls);
	atomic_store(&fsync_delay_ms, 5);
	for (i = 0; i <= MD_GROUP; i++) {
		snprintf(key, sizeof key, "m%d", i);
		CHECK(md_deliver(md, key, NULL, fd, &err) == 1);
		/* the last one after the flusher took the first MD_GROUP */
		for (k = 0; i == MD_GROUP - 1 && k < 10000 &&
		    atomic_load(&fsync_calls) == calls; k++)
			usleep(1000);
	}
	for (i = 0; i <= MD_GROUP; i++) {
		mh_err_clear(&err);
		CHECK(md_collect(md, &err) == 0);
	}
	atomic_store(&fsync_delay_ms, 0);
	CHECK(atomic_load(&fsync_dir_calls) - dirs == 2);
	CHECK(count(tmpdir, "new", NULL, 0) == MD_GROUP + 1);
	md_stop(md);
	CHECK(!md->running && md->batch);
	CHECK(md_deliver(md, "again", NULL, fd, &err) == 1);
	CHECK(md->running);
	CHECK(md_collect(md, &err) == 0);
	CHECK(count(tmpdir, "new", NULL, 0) == MD_GROUP + 2);
	close(fd);
	md_free(md);
	teardown();
}

/* Stopping the flusher (batch mode off, close) settles what was handed
   over and not collected: in new/ (in doubt to the engine, found on the
   next pass), nothing left in tmp/. */
static void
t_batch_stop_uncollected(void)
{
	struct mdir	*md;
	struct mh_err	 err;
	int		 fd;

	md = batch_setup(&fd, 2);
	md_stop(md);
	CHECK(!md->running);
	CHECK(count(tmpdir, "new", NULL, 0) == 2);
	CHECK(count(tmpdir, "tmp", NULL, 0) == 0);
	CHECK(md_lookup(md, "k1", &err) == 1);
	/* and out of batch mode a delivery is durable at once */
	md->batch = false;
	CHECK(md_deliver(md, "k3", NULL, fd, &err) == 0);
	CHECK(count(tmpdir, "new", NULL, 0) == 3);
	close(fd);
	md_free(md);
	teardown();
}

int
main(void)
{
	RUN(t_lf_rule);
	RUN(t_lf_random);
	RUN(t_created);
	RUN(t_delivered_bytes_and_name);
	RUN(t_unique);
	RUN(t_lookup);
	RUN(t_lookup_read_fails);
	RUN(t_write_fails);
	RUN(t_rename_fails);
	RUN(t_cannot_create);
	RUN(t_batch_flusher);
	RUN(t_batch_group_fails);
	RUN(t_batch_stop_uncollected);
	RUN(t_batch_verdicts);
	RUN(t_batch_collect_mid_group);
	return check_done();
}
