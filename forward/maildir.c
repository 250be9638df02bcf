/*
 * maildir.c -- the Maildir target: the maildir protocol, exactly.
 *
 * A message is written to tmp/ under a name no other delivery can take
 * (seconds, microseconds, pid, a per-process counter, the host name),
 * in one pass over the spool file, fsync'ed, renamed into new/ with
 * ",S=" the size written, and the directory fsync'ed: only then is it
 * reported delivered.  Any failure on the way (a full disk, a read-only
 * or vanished directory) is temporary, removes the tmp/ file and leaves
 * nothing in new/.
 *
 * Batch mode (target.h, group commit): deliveries are written to tmp/
 * and staged; the flush fsyncs them one after another, renames them
 * all, and fsyncs new/ once.  A failed flush removes all of them.
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
#define _GNU_SOURCE		/* sync_file_range */
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

/* A message written to tmp/, not yet durable nor in new/ (batch mode). */
struct md_staged {
	int		 fd;		/* open for the fsync, or -1 */
	char		*name;		/* in tmp/; new/ adds ,S=size */
	uint64_t	 size;		/* as written */
};

struct mdir {
	struct target	 base;		/* first: target_impl.h */
	char		*path;		/* the Maildir (config: absolute) */
	char		 host[256];	/* this host, escaped for a name */
	unsigned	 counter;	/* Q<n>: deliveries by this process */
	bool		 ready;		/* tmp/ new/ cur/ checked */
	bool		 batch;		/* stage; durable at md_flush */
	struct md_staged *staged;	/* written, not flushed */
	size_t		 nstaged, cap;
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
 * Creates tmp/NAME for a new message: *name (new; the caller frees) and
 * the fd, or -1 with err.  The size is not known yet (the line ends are
 * converted while writing): new/ gets NAME,S=size (md_name).
 */
static int
md_create(struct mdir *md, const char *tag, char **name, struct mh_err *err)
{
	struct timeval	 tv;
	char		*path;
	int		 fd, i;

	for (i = 0; i < MD_TRIES; i++) {
		gettimeofday(&tv, NULL);
		*name = xasprintf("%lld.M%06ldP%ldQ%uK%s.%s",
		    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
		    ++md->counter, tag, md->host);
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

/*
 * Writes received + fd's bytes, converted, to out, in one pass over the
 * spool file: *size is what was written.
 */
static int
md_write(struct mdir *md, int out, const char *received, int fd,
    const char *name, uint64_t *size, struct mh_err *err)
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
	*size = total;
	return 0;
}

/* The paths of a staged message: tmp/NAME and new/NAME,S=size (new). */
static void
md_paths(const struct mdir *md, const struct md_staged *st, char **tmp,
    char **dst)
{
	*tmp = xasprintf("%s/tmp/%s", md->path, st->name);
	*dst = xasprintf("%s/new/%s,S=%" PRIu64, md->path, st->name,
	    st->size);
}

/*
 * Forgets every staged message: closes it and, with unlink_them (not
 * delivered after all), removes it from tmp/ and, for the first nmoved
 * (renamed already), from new/.  Without: only closes and frees (a
 * flush that worked).
 */
static void
md_unstage(struct mdir *md, size_t nmoved, bool unlink_them)
{
	char	*tmp, *dst;
	size_t	 i;

	for (i = 0; i < md->nstaged; i++) {
		struct md_staged *st = &md->staged[i];

		if (st->fd != -1)
			close(st->fd);
		if (unlink_them) {
			md_paths(md, st, &tmp, &dst);
			unlink(tmp);
			if (i < nmoved)
				unlink(dst);
			free(tmp);
			free(dst);
		}
		free(st->name);
	}
	md->nstaged = 0;
}

/*
 * Makes every staged message durable and visible: each file fsync'ed
 * (one after another: the journal commit of the first carries the
 * others), renamed into new/, new/ fsync'ed once.  0, or -1 with err
 * and every one of them removed (none is delivered).
 */
static int
md_flush(struct mdir *md, struct mh_err *err)
{
	char	*tmp, *dst, *newdir = xasprintf("%s/new", md->path);
	size_t	 i, moved = 0;
	int	 rc = -1;

	for (i = 0; i < md->nstaged; i++) {
		if (fsync(md->staged[i].fd) == -1 || close(md->staged[i].fd) ==
		    -1) {
			md->staged[i].fd = -1;
			md_fail(md, err, "cannot write tmp/",
			    md->staged[i].name);
			goto out;
		}
		md->staged[i].fd = -1;
	}
	for (moved = 0; moved < md->nstaged; moved++) {
		md_paths(md, &md->staged[moved], &tmp, &dst);
		rc = rename(tmp, dst);
		free(tmp);
		free(dst);
		if (rc == -1) {
			md_fail(md, err, "cannot move into new/",
			    md->staged[moved].name);
			goto out;
		}
	}
	rc = -1;
	if (md->nstaged > 0 && md_sync_dir(newdir) == -1) {
		/* not known to be on disk: not delivered, and not left */
		md_fail(md, err, "cannot fsync", "new/");
		goto out;
	}
	rc = 0;
out:
	md_unstage(md, moved, rc == -1);
	free(newdir);
	return rc;
}

/*
 * Delivers one message: received (may be NULL) and the spool file fd,
 * under the digest of key.  Written to tmp/ and staged; unless in batch
 * mode, flushed at once: 0 when the message is in new/ and that is on
 * disk.  In batch mode 0 when it is written to tmp/ (md_flush does the
 * rest).  -1 with err (MH_ERR_TEMP, or MH_ERR_LOCAL for the spool) and
 * neither a tmp/ file nor a new/ file left of this message.
 */
static int
md_deliver(struct mdir *md, const char *key, const char *received,
    int fd, struct mh_err *err)
{
	struct md_staged	 st = { .fd = -1 };
	char			 tag[MD_TAG_LEN + 1], *tmp;

	if (md_prepare(md, err) == -1)
		return -1;
	md_tag(key, tag);
	if ((st.fd = md_create(md, tag, &st.name, err)) == -1) {
		md->ready = false;	/* check the directories again */
		return -1;
	}
	if (md_write(md, st.fd, received, fd, st.name, &st.size, err) ==
	    -1) {
		close(st.fd);
		tmp = xasprintf("%s/tmp/%s", md->path, st.name);
		unlink(tmp);
		free(tmp);
		free(st.name);
		return -1;
	}
	if (md->nstaged == md->cap) {
		md->cap = md->cap ? md->cap * 2 : 16;
		md->staged = xrealloc(md->staged, md->cap *
		    sizeof *md->staged);
	}
	md->staged[md->nstaged++] = st;
	if (!md->batch)
		return md_flush(md, err);
	/* start writing it out now, so that the flush's fsyncs find little
	   left to wait for (a hint: failure changes nothing) */
	(void)sync_file_range(st.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	return 0;
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

	md_unstage(md, 0, true);	/* staged, never flushed: not delivered */
	free(md->staged);
	free(md->path);
	free(md);
}

static void
maildir_set_batch(struct target *tg, bool on)
{
	((struct mdir *)tg)->batch = on;
}

static int
maildir_flush(struct target *tg, struct mh_err *err)
{
	if (md_flush((struct mdir *)tg, err) == -1) {
		mh_err_scope(err, MH_SCOPE_TARGET);
		return -1;
	}
	return 0;
}

const struct target_ops maildir_target_ops = {
	.name = "maildir",
	.open = maildir_open,
	.connect = maildir_connect,
	.seen = maildir_seen,
	.deliver = maildir_deliver,
	.close = maildir_close,
	.set_batch = maildir_set_batch,
	.flush = maildir_flush,
};
