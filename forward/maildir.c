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
 * Batch mode (target.h, pipelining): a delivery is written to tmp/,
 * handed to the flusher thread and PENDING; target_collect waits for
 * its verdict.  The flusher takes the messages handed over since its
 * last round as one group, once MD_GROUP of them wait or a verdict is
 * awaited: fsyncs them one after another, renames them all into new/
 * and fsyncs new/ once; a failure removes the whole group.  So the
 * disk's waits (the journal commit, the cache flush) pass while the
 * next messages are written, and the more the disk lags, the more
 * messages share one commit.  (A verdict awaited before MD_GROUP wait
 * takes the messages written after it into its group: fewer commits,
 * at the cost of that wait; measured, the wall time is the same as a
 * flusher that goes whenever it is idle, with a third of the commits.)
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
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "forward/lf.h"
#include "forward/target_impl.h"
#include "log.h"
#include "net/net.h"
#include "util.h"

#define MD_TAG_LEN	16	/* hex digits of the key's sha256 kept */
#define MD_TRIES	20	/* names tried when one exists already */
#define MD_CHUNK	65536
#define MD_GROUP	32	/* the flusher's round, unless a verdict is
				   awaited or the flusher is told to stop */

/* A message written to tmp/, not yet durable nor in new/. */
struct md_staged {
	int		 fd;		/* open for the fsync, or -1 */
	char		*name;		/* in tmp/; new/ adds ,S=size */
	uint64_t	 size;		/* as written */
};

/* A message handed to the flusher (batch mode), and then its verdict. */
struct md_job {
	struct md_staged st;
	struct md_job	*next;		/* handed over after this one */
	bool		 done;		/* the flusher's verdict is in */
	struct mh_err	 err;		/* done and not delivered: why */
};

struct mdir {
	struct target	 base;		/* first: target_impl.h */
	char		*path;		/* the Maildir (config: absolute) */
	char		 host[256];	/* this host, escaped for a name */
	unsigned	 counter;	/* Q<n>: deliveries by this process */
	bool		 ready;		/* tmp/ new/ cur/ checked */
	bool		 batch;		/* deliveries go to the flusher */
	bool		 warned;	/* that no flusher could start */

	/* the flusher, while running: mu guards what follows it */
	pthread_t	 flusher;
	bool		 running;
	pthread_mutex_t	 mu;
	pthread_cond_t	 work;		/* to the flusher: jobs, or stop */
	pthread_cond_t	 settled;	/* from it: a job is done */
	bool		 stop;		/* go when nothing is left */
	bool		 waiting;	/* md_collect waits for a verdict */
	struct md_job	*head, *tail;	/* handed over, not yet collected */
	struct md_job	*unflushed;	/* the first the flusher has not taken */
	size_t		 nunflushed;	/* from it to tail */
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
 * Forgets the n messages of v: closes each still open and, with failed
 * (not delivered after all), removes each from tmp/ and the first
 * nmoved (renamed already) from new/.  Their names stay (the caller's).
 */
static void
md_drop(const struct mdir *md, struct md_staged *const *v, size_t n,
    size_t nmoved, bool failed)
{
	char	*tmp, *dst;
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (v[i]->fd != -1)
			close(v[i]->fd);
		v[i]->fd = -1;
		if (!failed)
			continue;
		md_paths(md, v[i], &tmp, &dst);
		unlink(tmp);
		if (i < nmoved)
			unlink(dst);
		free(tmp);
		free(dst);
	}
}

/*
 * Makes the n messages of v durable and visible, as one group: each
 * file fsync'ed (one after another: the journal commit of the first
 * carries the others), renamed into new/, new/ fsync'ed once.  0, or -1
 * with err, *failed the index of the message that failed (n: new/), and
 * every one of them removed (none is delivered).  Touches nothing of md
 * but its path: the flusher thread calls it.
 */
static int
md_group(const struct mdir *md, struct md_staged *const *v, size_t n,
    size_t *failed, struct mh_err *err)
{
	char	*tmp, *dst, *newdir = xasprintf("%s/new", md->path);
	size_t	 i, moved = 0;
	int	 rc = -1, saved;

	*failed = n;		/* none in particular (new/) */
	for (i = 0; i < n; i++) {
		rc = fsync(v[i]->fd);
		saved = errno;
		if (close(v[i]->fd) == -1 && rc == 0) {
			rc = -1;
			saved = errno;
		}
		v[i]->fd = -1;
		if (rc == -1) {
			errno = saved;
			*failed = i;
			md_fail(md, err, "cannot write tmp/", v[i]->name);
			goto out;
		}
	}
	for (moved = 0; moved < n; moved++) {
		md_paths(md, v[moved], &tmp, &dst);
		rc = rename(tmp, dst);
		saved = errno;
		free(tmp);
		free(dst);
		if (rc == -1) {
			errno = saved;
			*failed = moved;
			md_fail(md, err, "cannot move into new/",
			    v[moved]->name);
			goto out;
		}
	}
	rc = -1;
	if (n > 0 && md_sync_dir(newdir) == -1) {
		/* not known to be on disk: not delivered, and not left */
		md_fail(md, err, "cannot fsync", "new/");
		goto out;
	}
	rc = 0;
out:
	md_drop(md, v, n, moved, rc == -1);
	free(newdir);
	return rc;
}

/*
 * The flusher thread: takes every job handed over and not yet taken,
 * makes them durable as one group (md_group) and settles each; until
 * told to stop with none left.  It waits for MD_GROUP of them, or for
 * md_collect to wait: one journal commit for many files, as long as
 * nobody waits for it.
 */
static void *
md_flusher(void *arg)
{
	struct mdir	 *md = arg;
	struct md_job	 *j, *first;
	struct md_staged **v = NULL;
	struct mh_err	  err;
	size_t		  n, cap = 0, i, failed;
	int		  rc;

	pthread_mutex_lock(&md->mu);
	for (;;) {
		while (md->unflushed == NULL ? !md->stop :
		    md->nunflushed < MD_GROUP && !md->waiting && !md->stop)
			pthread_cond_wait(&md->work, &md->mu);
		if (md->unflushed == NULL)
			break;
		first = md->unflushed;
		md->unflushed = NULL;
		md->nunflushed = 0;
		for (n = 0, j = first; j != NULL; j = j->next) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				v = xrealloc(v, cap * sizeof *v);
			}
			v[n++] = &j->st;
		}
		pthread_mutex_unlock(&md->mu);
		mh_err_clear(&err);
		rc = md_group(md, v, n, &failed, &err);
		pthread_mutex_lock(&md->mu);
		for (i = 0, j = first; i < n; i++, j = j->next) {
			if (rc == -1 && (i == failed || failed == n))
				j->err = err;
			else if (rc == -1)
				mh_err_set(&j->err, MH_ERR_TEMP, "%s (in "
				    "the same flush as this message, which "
				    "is not delivered either)", err.msg);
			j->done = true;
		}
		pthread_cond_broadcast(&md->settled);
	}
	pthread_mutex_unlock(&md->mu);
	free(v);
	return NULL;
}

/* Starts the flusher unless it runs: 0, or -1 (no thread: errno). */
static int
md_start(struct mdir *md)
{
	int	e;

	if (md->running)
		return 0;
	pthread_mutex_init(&md->mu, NULL);
	pthread_cond_init(&md->work, NULL);
	pthread_cond_init(&md->settled, NULL);
	md->stop = md->waiting = false;
	md->nunflushed = 0;
	if ((e = mh_thread_start(&md->flusher, md_flusher, md)) != 0) {
		pthread_cond_destroy(&md->settled);
		pthread_cond_destroy(&md->work);
		pthread_mutex_destroy(&md->mu);
		errno = e;
		return -1;
	}
	md->running = true;
	return 0;
}

/*
 * Lets the flusher finish every job handed over and stops it; the jobs
 * not collected are forgotten (each is in new/ or removed: a message in
 * doubt, looked up on the next pass).
 */
static void
md_stop(struct mdir *md)
{
	struct md_job	*j;

	if (!md->running)
		return;
	pthread_mutex_lock(&md->mu);
	md->stop = true;
	pthread_cond_signal(&md->work);
	pthread_mutex_unlock(&md->mu);
	pthread_join(md->flusher, NULL);
	md->running = false;
	while ((j = md->head) != NULL) {
		md->head = j->next;
		free(j->st.name);
		free(j);
	}
	md->tail = NULL;
	pthread_cond_destroy(&md->settled);
	pthread_cond_destroy(&md->work);
	pthread_mutex_destroy(&md->mu);
}

/* Hands st over to the flusher (which owns it now). */
static void
md_hand_over(struct mdir *md, const struct md_staged *st)
{
	struct md_job	*j = xcalloc(1, sizeof *j);

	j->st = *st;
	pthread_mutex_lock(&md->mu);
	if (md->tail != NULL)
		md->tail->next = j;
	else
		md->head = j;
	md->tail = j;
	if (md->unflushed == NULL)
		md->unflushed = j;
	if (++md->nunflushed == MD_GROUP)
		pthread_cond_signal(&md->work);
	pthread_mutex_unlock(&md->mu);
}

/*
 * Waits for the verdict of the oldest job not collected: 0 delivered
 * (in new/, on disk), -1 with err (MH_ERR_TEMP: removed), -1 with
 * MH_ERR_LOCAL when there is none.
 */
static int
md_collect(struct mdir *md, struct mh_err *err)
{
	struct md_job	*j;
	int		 rc;

	/* head: only this thread changes it (md_hand_over, here, md_stop) */
	if (!md->running || (j = md->head) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "maildir %s: no delivery to "
		    "collect", md->path);
		return -1;
	}
	pthread_mutex_lock(&md->mu);
	if (!j->done) {
		md->waiting = true;
		pthread_cond_signal(&md->work);
		while (!j->done)
			pthread_cond_wait(&md->settled, &md->mu);
		md->waiting = false;
	}
	if ((md->head = j->next) == NULL)
		md->tail = NULL;
	pthread_mutex_unlock(&md->mu);
	rc = j->err.cls == MH_ERR_NONE ? 0 : -1;
	if (rc == -1) {
		*err = j->err;
		md->ready = false;	/* check the directories again */
	}
	free(j->st.name);
	free(j);
	return rc;
}

/*
 * Delivers one message: received (may be NULL) and the spool file fd,
 * under the digest of key.  Written to tmp/; then, in batch mode,
 * handed to the flusher: 1 (md_collect has the verdict); otherwise
 * made durable in new/ at once: 0.  -1 with err (MH_ERR_TEMP, or
 * MH_ERR_LOCAL for the spool) and neither a tmp/ file nor a new/ file
 * left of this message.
 */
static int
md_deliver(struct mdir *md, const char *key, const char *received,
    int fd, struct mh_err *err)
{
	struct md_staged	 st = { .fd = -1 }, *one = &st;
	char			 tag[MD_TAG_LEN + 1], *tmp;
	size_t			 failed;
	int			 rc = -1;

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
		goto out;
	}
	if (md->batch && md_start(md) == -1 && !md->warned) {
		log_warn("maildir %s: cannot start the flusher thread (%s): "
		    "each message is made durable on its own", md->path,
		    strerror(errno));
		md->warned = true;
	}
	if (md->batch && md->running) {
		/* start writing it out now, so that the flusher's fsyncs
		   find little left to wait for (a hint: failure changes
		   nothing) */
		(void)sync_file_range(st.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		md_hand_over(md, &st);
		return 1;
	}
	/* no flusher (none could be started: the same, only slower) */
	if ((rc = md_group(md, &one, 1, &failed, err)) == -1)
		md->ready = false;	/* check the directories again */
out:
	free(st.name);
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
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			/* an error is not the end: "not there" would send
			   a message in doubt again */
			if (errno != 0 && found == 0)
				found = md_fail(md, err, "cannot read", dir);
			break;
		}
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
 * new/ or cur/?  1 yes (and that directory fsync'ed), 0 no, -1 with err
 * (MH_ERR_TEMP).  A tmp/ file with it (a crash before the rename: never
 * delivered) is removed.
 */
static int
md_lookup(struct mdir *md, const char *key, struct mh_err *err)
{
	static const char *const where[] = { "new", "cur" };
	char	tag[MD_TAG_LEN + 1], *dir;
	int	r;

	md_tag(key, tag);
	for (size_t i = 0; i < 2; i++) {
		if ((r = md_scan(md, where[i], tag, false, err)) != 1) {
			if (r == -1)
				return -1;
			continue;
		}
		/* a crash may have come between the rename and the fsync
		   of the directory: make the name durable before the
		   message counts as delivered (and leaves the server) */
		dir = xasprintf("%s/%s", md->path, where[i]);
		r = md_sync_dir(dir) == -1 ? md_fail(md, err, "cannot fsync",
		    dir) : 1;
		free(dir);
		return r;
	}
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
 * cannot be read is this message's.  In batch mode PENDING once the
 * message is written to tmp/ (maildir_collect).
 */
static enum target_outcome
maildir_deliver(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	struct mdir	*md = (struct mdir *)tg;
	int		 r;

	if (target_msg_done(m, md->path)) {
		target_result_add(res, md->path);
		return TARGET_DELIVERED;
	}
	if ((r = md_deliver(md, m->source_key, tg->cfg->received ?
	    m->received : NULL, m->fd, err)) == -1) {
		mh_err_scope(err, err->cls == MH_ERR_TEMP ? MH_SCOPE_TARGET :
		    MH_SCOPE_MESSAGE);
		err->cls = MH_ERR_TEMP;
		return TARGET_TEMPFAIL;
	}
	if (r == 1)
		return TARGET_PENDING;
	target_result_add(res, md->path);
	return TARGET_DELIVERED;
}

static enum target_outcome
maildir_collect(struct target *tg, struct target_result *res,
    struct mh_err *err)
{
	struct mdir	*md = (struct mdir *)tg;

	if (md_collect(md, err) == -1) {
		if (err->cls == MH_ERR_TEMP)
			mh_err_scope(err, MH_SCOPE_TARGET);
		return TARGET_TEMPFAIL;
	}
	target_result_add(res, md->path);
	return TARGET_DELIVERED;
}

static void
maildir_close(struct target *tg)
{
	struct mdir	*md = (struct mdir *)tg;

	md_stop(md);
	free(md->path);
	free(md);
}

/* Off: every message handed over is settled first (md_stop). */
static void
maildir_set_batch(struct target *tg, bool on)
{
	struct mdir	*md = (struct mdir *)tg;

	if (!on)
		md_stop(md);
	md->batch = on;
}

const struct target_ops maildir_target_ops = {
	.name = "maildir",
	.open = maildir_open,
	.connect = maildir_connect,
	.seen = maildir_seen,
	.deliver = maildir_deliver,
	.close = maildir_close,
	.set_batch = maildir_set_batch,
	.collect = maildir_collect,
};
