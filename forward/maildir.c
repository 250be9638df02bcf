/*
 * maildir.c -- the Maildir target: the maildir protocol, exactly.
 *
 * A message is written to tmp/ under a name no other delivery can take
 * (seconds, microseconds, pid, a per-process counter, the host name and
 * ",S=" the size), fsync'ed, renamed into new/, and the directory
 * fsync'ed: only then is it reported delivered.  Any failure on the way
 * (a full disk, a read-only or vanished directory) is temporary, removes
 * the tmp/ file and leaves nothing in new/.
 *
 * The name also carries "K" and a digest of the message's source key
 * (sec.M<usec>P<pid>Q<n>K<digest>.host,S=size): a message in doubt after
 * a crash is looked up by that digest in new/ and cur/ (a mail reader
 * moves it there, keeping the name up to ":2,"), so it is never written
 * twice.
 *
 * Bytes: the line-end rule of forward/lf.h (CRLF -> LF, a bare CR stays),
 * the Received: header prepended and converted the same way.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "forward/lf.h"
#include "forward/target_impl.h"
#include "net/net.h"
#include "util.h"

#define MD_TAG_LEN	16	/* hex digits of the key's sha256 kept */
#define MD_TRIES	20	/* names tried when one exists already */
#define MD_CHUNK	65536

struct mdir {
	struct target	 base;		/* first: target_impl.h */
	char		*path;		/* the Maildir (config: absolute) */
	char		 host[256];	/* this host, escaped for a name */
	unsigned	 counter;	/* Q<n>: deliveries by this process */
	bool		 ready;		/* tmp/ new/ cur/ checked */
};

static const char *const md_subdirs[] = { "tmp", "new", "cur" };

/* The host name with '/' ':' ',' escaped as octal (Dovecot's way). */
static void
md_hostname(char *out, size_t size)
{
	char	host[256], *o = out;
	size_t	i;

	if (gethostname(host, sizeof host) == -1 || host[0] == '\0')
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	for (i = 0; host[i] != '\0' && (size_t)(o - out) + 5 < size; i++) {
		if (host[i] == '/' || host[i] == ':' || host[i] == ',') {
			snprintf(o, 5, "\\%03o", (unsigned char)host[i]);
			o += 4;
		} else
			*o++ = host[i];
	}
	*o = '\0';
}

/* The first MD_TAG_LEN hex digits of sha256(key). */
static void
md_tag(const char *key, char tag[MD_TAG_LEN + 1])
{
	struct net_sha256	*h = net_sha256_new();
	char			 hex[65];

	if (key != NULL)
		net_sha256_update(h, key, strlen(key));
	net_sha256_final(h, hex);
	memcpy(tag, hex, MD_TAG_LEN);
	tag[MD_TAG_LEN] = '\0';
}

/* A temporary failure naming the Maildir and errno. */
static int
md_fail(const struct mdir *md, struct mh_err *err, const char *what,
    const char *name)
{
	size_t	n = strlen(what);

	/* "cannot write tmp/" NAME reads as one path */
	mh_err_set(err, MH_ERR_TEMP, "maildir %s: %s%s%s: %s", md->path, what,
	    name && n > 0 && what[n - 1] != '/' ? " " : "", name ? name : "",
	    strerror(errno));
	return -1;
}

/* Creates the Maildir (0700) and its tmp/ new/ cur/ when missing. */
static int
md_prepare(struct mdir *md, struct mh_err *err)
{
	struct stat	 st;
	char		 sub[4096];
	size_t		 i;

	if (md->ready)
		return 0;
	if (mkdir_p(md->path, 0700, err) == -1) {
		err->cls = MH_ERR_TEMP;
		return -1;
	}
	for (i = 0; i < sizeof md_subdirs / sizeof md_subdirs[0]; i++) {
		snprintf(sub, sizeof sub, "%s/%s", md->path, md_subdirs[i]);
		if (mkdir(sub, 0700) == -1 && errno != EEXIST)
			return md_fail(md, err, "cannot create", sub);
		if (stat(sub, &st) == -1)
			return md_fail(md, err, "cannot use", sub);
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return md_fail(md, err, "cannot use", sub);
		}
	}
	md->ready = true;
	return 0;
}

/* fsync of a directory, so that a rename in it is on disk. */
static int
md_sync_dir(const char *dir)
{
	int	fd, rc, saved;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

static int
write_all(int fd, const unsigned char *p, size_t n)
{
	ssize_t	w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Creates tmp/NAME for a new message of size bytes: *name (new; the
 * caller frees) and the fd, or -1 with err.
 */
static int
md_create(struct mdir *md, const char *tag, uint64_t size, char **name,
    struct mh_err *err)
{
	struct timeval	 tv;
	char		*path;
	int		 fd, i;

	for (i = 0; i < MD_TRIES; i++) {
		gettimeofday(&tv, NULL);
		*name = xasprintf("%lld.M%06ldP%ldQ%uK%s.%s,S=%" PRIu64,
		    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
		    ++md->counter, tag, md->host, size);
		path = xasprintf("%s/tmp/%s", md->path, *name);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
		free(path);
		if (fd != -1)
			return fd;
		if (errno != EEXIST)
			break;
		free(*name);
		*name = NULL;
	}
	md_fail(md, err, "cannot create a file in tmp/", NULL);
	free(*name);
	*name = NULL;
	return -1;
}

/* Writes received + fd's bytes, converted, to out; checks the size. */
static int
md_write(struct mdir *md, int out, const char *received, int fd,
    uint64_t size, const char *name, struct mh_err *err)
{
	struct lf_reader	r;
	unsigned char		buf[MD_CHUNK];
	uint64_t		total = 0;
	ssize_t			n;

	lf_open(&r, received, fd);
	while ((n = lf_read(&r, buf, sizeof buf)) > 0) {
		if (write_all(out, buf, (size_t)n) == -1)
			return md_fail(md, err, "cannot write tmp/", name);
		total += (uint64_t)n;
	}
	if (n == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot read the spool file: "
		    "%s", strerror(errno));
		return -1;
	}
	if (total != size) {
		mh_err_set(err, MH_ERR_LOCAL, "the spool file changed while "
		    "it was written to maildir %s", md->path);
		return -1;
	}
	if (fsync(out) == -1)
		return md_fail(md, err, "cannot fsync tmp/", name);
	return 0;
}

/*
 * Delivers one message: received (may be NULL) and the spool file fd,
 * under the digest of key.  0 when the message is in new/ and that is on
 * disk; -1 with err (MH_ERR_TEMP, or MH_ERR_LOCAL for the spool) and
 * neither a tmp/ file nor a new/ file left.
 */
static int
md_deliver(struct mdir *md, const char *key, const char *received,
    int fd, struct mh_err *err)
{
	char		 tag[MD_TAG_LEN + 1], *name = NULL, *tmp = NULL;
	char		*dst = NULL, *newdir = NULL;
	uint64_t	 size;
	int		 out = -1, rc = -1;

	if (md_prepare(md, err) == -1)
		return -1;
	if (lf_size(received, fd, &size) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot read the spool file: "
		    "%s", strerror(errno));
		return -1;
	}
	md_tag(key, tag);
	if ((out = md_create(md, tag, size, &name, err)) == -1) {
		md->ready = false;	/* check the directories again */
		return -1;
	}
	tmp = xasprintf("%s/tmp/%s", md->path, name);
	dst = xasprintf("%s/new/%s", md->path, name);
	newdir = xasprintf("%s/new", md->path);
	if (md_write(md, out, received, fd, size, name, err) == -1)
		goto out;
	if (close(out) == -1) {
		out = -1;
		md_fail(md, err, "cannot write tmp/", name);
		goto out;
	}
	out = -1;
	if (rename(tmp, dst) == -1) {
		md_fail(md, err, "cannot move into new/", name);
		goto out;
	}
	if (md_sync_dir(newdir) == -1) {
		md_fail(md, err, "cannot fsync", "new/");
		/* not known to be on disk: not delivered, and not left */
		unlink(dst);
		goto out;
	}
	rc = 0;
out:
	if (out != -1)
		close(out);
	if (rc == -1)
		unlink(tmp);
	free(name);
	free(tmp);
	free(dst);
	free(newdir);
	return rc;
}

/* Whether a file name carries tag as its "K" part (sec.M..K<tag>.host). */
static bool
md_name_has(const char *name, const char *tag)
{
	const char	*a, *b;

	if ((a = strchr(name, '.')) == NULL || (b = strchr(a + 1, '.')) ==
	    NULL)
		return false;
	if ((size_t)(b - a - 1) < MD_TAG_LEN + 1)
		return false;
	return b[-MD_TAG_LEN - 1] == 'K' &&
	    memcmp(b - MD_TAG_LEN, tag, MD_TAG_LEN) == 0;
}

/*
 * Scans sub/ for a name with tag; with remove, unlinks each one found
 * (tmp/ leftovers of a crashed delivery).  1 found, 0 not, -1 err.
 */
static int
md_scan(struct mdir *md, const char *sub, const char *tag, bool remove,
    struct mh_err *err)
{
	struct dirent	*de;
	DIR		*d;
	char		*dir = xasprintf("%s/%s", md->path, sub), *p;
	int		 found = 0;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			found = 0;
		else
			found = md_fail(md, err, "cannot read", dir);
		free(dir);
		return found;
	}
	while ((de = readdir(d)) != NULL) {
		if (!md_name_has(de->d_name, tag))
			continue;
		found = 1;
		if (!remove)
			break;
		p = xasprintf("%s/%s", dir, de->d_name);
		unlink(p);
		free(p);
	}
	closedir(d);
	free(dir);
	return found;
}

/*
 * The lookup for a message in doubt: is a file with key's digest in
 * new/ or cur/?  1 yes, 0 no, -1 with err (MH_ERR_TEMP).  A tmp/ file
 * with it (a crash before the rename: never delivered) is removed.
 */
static int
md_lookup(struct mdir *md, const char *key, struct mh_err *err)
{
	char	tag[MD_TAG_LEN + 1];
	int	r;

	md_tag(key, tag);
	if ((r = md_scan(md, "new", tag, false, err)) != 0)
		return r;
	if ((r = md_scan(md, "cur", tag, false, err)) != 0)
		return r;
	return md_scan(md, "tmp", tag, true, err) == -1 ? -1 : 0;
}

/* --- the target ops ------------------------------------------------ */

static int
maildir_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	struct mdir	*md;

	if (t->maildir.path == NULL || t->maildir.path[0] == '\0') {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: no path", t->name);
		return -1;
	}
	md = xcalloc(1, sizeof *md);
	md->path = xstrdup(t->maildir.path);
	md_hostname(md->host, sizeof md->host);
	*out = &md->base;
	return 0;
}

/* `mailhaul check`: the Maildir exists (or is made) and is writable. */
static int
maildir_connect(struct target *tg, struct mh_err *err)
{
	struct mdir	*md = (struct mdir *)tg;
	char		 sub[4096];
	size_t		 i;

	md->ready = false;
	if (md_prepare(md, err) == -1)
		return -1;
	for (i = 0; i < 2; i++) {
		snprintf(sub, sizeof sub, "%s/%s", md->path, md_subdirs[i]);
		if (access(sub, W_OK) == -1)
			return md_fail(md, err, "cannot write to", sub);
	}
	return 0;
}

static int
maildir_seen(struct target *tg, const struct target_msg *m, bool *found,
    struct mh_err *err)
{
	int	r = md_lookup((struct mdir *)tg, m->source_key, err);

	if (r == -1) {
		mh_err_scope(err, MH_SCOPE_TARGET);
		return -1;
	}
	*found = r == 1;
	return 0;
}

/*
 * One destination, the Maildir.  A failure to write it is temporary and
 * the target's as a whole (a full disk, a read-only or vanished
 * directory: the next message would not fare better); a spool that
 * cannot be read is this message's.
 */
static enum target_outcome
maildir_deliver(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	struct mdir	*md = (struct mdir *)tg;

	if (target_msg_done(m, md->path)) {
		target_result_add(res, md->path);
		return TARGET_DELIVERED;
	}
	if (md_deliver(md, m->source_key, tg->cfg->received ? m->received :
	    NULL, m->fd, err) == -1) {
		mh_err_scope(err, err->cls == MH_ERR_TEMP ? MH_SCOPE_TARGET :
		    MH_SCOPE_MESSAGE);
		err->cls = MH_ERR_TEMP;
		return TARGET_TEMPFAIL;
	}
	target_result_add(res, md->path);
	return TARGET_DELIVERED;
}

static void
maildir_close(struct target *tg)
{
	struct mdir	*md = (struct mdir *)tg;

	free(md->path);
	free(md);
}

const struct target_ops maildir_target_ops = {
	.name = "maildir",
	.open = maildir_open,
	.connect = maildir_connect,
	.seen = maildir_seen,
	.deliver = maildir_deliver,
	.close = maildir_close,
};
