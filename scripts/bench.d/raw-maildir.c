/*
 * scripts/bench.d/raw-maildir.c -- the fetch+write floor of scripts/bench:
 * a raw client in C that fetches a whole mailbox (plain TCP, POP3 or
 * IMAP, pipelined as bench.d/raw-fetch does) and writes every message
 * into a Maildir the way the Maildir protocol wants it durable: CRLF ->
 * LF, a file in tmp/, fsync'ed, renamed into new/, new/ fsync'ed -- with
 * nothing else (no state, no digest, no header).  Three threads, so
 * that the slowest of fetching, writing and the disk's waits sets the
 * pace:
 *
 *   fetch thread (main) -> writer (create, write, start writeback)
 *   -> flusher (fsync a group of up to 32, rename them, fsync new/)
 *
 * That is the least any tool can do to deliver into a Maildir so that a
 * crash loses nothing it reported delivered; it is not a mail client
 * (no UIDs kept, no error recovery, no TLS).  (One syncfs per group
 * instead of the fsyncs, measured on the test bed: no faster.)
 *
 *   raw-maildir pop3|imap PORT USER PASSWORD MAILDIR
 *
 * Prints one line to stderr: messages, bytes, seconds.  Exit 1 on any
 * error.  Bench code only: built by scripts/bench.d/common.sh.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GROUP	32

struct msg {
	char		*buf;	/* LF line ends */
	size_t		 len;
	int		 fd;	/* the writer's tmp/ file */
	char		 name[64];
	struct msg	*next;
};

/* A queue between two threads: the producer appends, NULL ends it. */
struct queue {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	struct msg	*head, *tail;
	size_t		 n;
	int		 closed;
};

static const char	*dir;
static struct queue	 towrite = { PTHREAD_MUTEX_INITIALIZER,
			    PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0 };
static struct queue	 toflush = { PTHREAD_MUTEX_INITIALIZER,
			    PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0 };

static void
die(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	fputs("raw-maildir: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void
q_put(struct queue *q, struct msg *m)
{
	pthread_mutex_lock(&q->mu);
	if (m == NULL)
		q->closed = 1;
	else {
		m->next = NULL;
		if (q->tail != NULL)
			q->tail->next = m;
		else
			q->head = m;
		q->tail = m;
		q->n++;
	}
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

/* Takes everything queued, once at least min are; NULL: closed. */
static struct msg *
q_take_all(struct queue *q, size_t min)
{
	struct msg	*m;

	pthread_mutex_lock(&q->mu);
	while (q->n < min && !q->closed)
		pthread_cond_wait(&q->cv, &q->mu);
	m = q->head;
	q->head = q->tail = NULL;
	q->n = 0;
	pthread_mutex_unlock(&q->mu);
	return m;
}

static void
sync_dir(const char *sub)
{
	char	p[4096];
	int	fd;

	snprintf(p, sizeof p, "%s/%s", dir, sub);
	if ((fd = open(p, O_RDONLY | O_DIRECTORY)) == -1 || fsync(fd) == -1)
		die("%s: %s", p, strerror(errno));
	close(fd);
}

static void *
flusher(void *arg)
{
	struct msg	*m, *group[GROUP];
	char		 a[4096], b[4096];
	size_t		 n, i;

	(void)arg;
	while ((m = q_take_all(&toflush, GROUP)) != NULL) {
		while (m != NULL) {
			for (n = 0; m != NULL && n < GROUP; m = m->next)
				group[n++] = m;
			for (i = 0; i < n; i++)
				if (fsync(group[i]->fd) == -1 ||
				    close(group[i]->fd) == -1)
					die("fsync: %s", strerror(errno));
			for (i = 0; i < n; i++) {
				snprintf(a, sizeof a, "%s/tmp/%s", dir,
				    group[i]->name);
				snprintf(b, sizeof b, "%s/new/%s", dir,
				    group[i]->name);
				if (rename(a, b) == -1)
					die("rename: %s", strerror(errno));
			}
			sync_dir("new");
			for (i = 0; i < n; i++)
				free(group[i]);
		}
	}
	return NULL;
}

static void *
writer(void *arg)
{
	struct msg	*m, *next;
	char		 p[4096];
	unsigned	 q = 0;
	ssize_t		 w;
	size_t		 off;

	(void)arg;
	while ((m = q_take_all(&towrite, 1)) != NULL) {
		for (; m != NULL; m = next) {
			next = m->next;
			snprintf(m->name, sizeof m->name, "%lld.M%uP%d.raw",
			    (long long)time(NULL), q++, (int)getpid());
			snprintf(p, sizeof p, "%s/tmp/%s", dir, m->name);
			if ((m->fd = open(p, O_WRONLY | O_CREAT | O_EXCL |
			    O_CLOEXEC, 0600)) == -1)
				die("%s: %s", p, strerror(errno));
			for (off = 0; off < m->len; off += (size_t)w)
				if ((w = write(m->fd, m->buf + off,
				    m->len - off)) <= 0)
					die("write: %s", strerror(errno));
			(void)sync_file_range(m->fd, 0, 0,
			    SYNC_FILE_RANGE_WRITE);
			free(m->buf);
			m->buf = NULL;
			q_put(&toflush, m);
		}
	}
	q_put(&toflush, NULL);
	return NULL;
}

/* The connection: a growing buffer over the socket. */
static int	 sock;
static char	*rb;
static size_t	 rlen, rcap, rpos;

static void
fill(void)
{
	ssize_t	r;

	/* what was read is dropped, but for the 2 bytes before rpos (the
	   CRLF that POP3's end marker search starts from) */
	if (rpos > (1u << 20)) {
		memmove(rb, rb + rpos - 2, rlen - rpos + 2);
		rlen -= rpos - 2;
		rpos = 2;
	}
	if (rcap - rlen < (1u << 20)) {
		rcap = rcap * 2 + (2u << 20);
		if ((rb = realloc(rb, rcap)) == NULL)
			die("out of memory");
	}
	if ((r = recv(sock, rb + rlen, rcap - rlen, 0)) <= 0)
		die("connection lost");
	rlen += (size_t)r;
}

/* The next line without its CRLF, NUL-terminated in place. */
static char *
line(void)
{
	char	*l, *e;

	for (;;) {
		if ((e = memmem(rb + rpos, rlen - rpos, "\r\n", 2)) != NULL)
			break;
		fill();
	}
	l = rb + rpos;
	*e = '\0';
	rpos = (size_t)(e - rb) + 2;
	return l;
}

static void
say(const char *fmt, ...)
{
	char	buf[1024];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (send(sock, buf, (size_t)n, MSG_NOSIGNAL) != n)
		die("send: %s", strerror(errno));
}

/* A message of n wire bytes at p (CRLF; POP3: dot-stuffed) to the writer. */
static void
hand(const char *p, size_t n, int pop3)
{
	struct msg	*m = calloc(1, sizeof *m);
	char		*o;
	size_t		 i;
	int		 bol = 1;

	if (m == NULL || (m->buf = malloc(n + 1)) == NULL)
		die("out of memory");
	for (o = m->buf, i = 0; i < n; i++) {
		if (pop3 && bol && p[i] == '.') {
			bol = 0;	/* a stuffed dot (the end is cut off) */
			continue;
		}
		bol = 0;
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			continue;
		if (p[i] == '\n')
			bol = 1;
		*o++ = p[i];
	}
	m->len = (size_t)(o - m->buf);
	q_put(&towrite, m);
}

static size_t
pop3(const char *user, const char *pw, size_t *bytes)
{
	size_t	 n, sent = 0, done = 0, k, j, from;
	char	*l, *e, cmds[64 * 16];
	int	 c;

	if (strncmp(line(), "+OK", 3) != 0)
		die("no POP3 greeting");
	say("USER %s\r\n", user);
	if (strncmp(line(), "+OK", 3) != 0)
		die("USER refused");
	say("PASS %s\r\n", pw);
	if (strncmp(line(), "+OK", 3) != 0)
		die("PASS refused");
	say("STAT\r\n");
	l = line();
	if (sscanf(l, "+OK %zu", &n) != 1)
		die("STAT: %s", l);
	while (done < n) {
		if (sent < n && sent - done < 64) {
			k = done + 64 < n ? done + 64 : n;
			for (c = 0, j = sent + 1; j <= k; j++)
				c += snprintf(cmds + c, sizeof cmds - (size_t)c,
				    "RETR %zu\r\n", j);
			if (send(sock, cmds, (size_t)c, MSG_NOSIGNAL) != c)
				die("send: %s", strerror(errno));
			sent = k;
		}
		if (strncmp(line(), "+OK", 3) != 0)
			die("RETR refused");
		/* the message ends at the first CRLF.CRLF, counting the
		   status line's CRLF (rpos - 2) */
		for (from = rpos - 2;; ) {
			e = memmem(rb + from, rlen - from, "\r\n.\r\n", 5);
			if (e != NULL)
				break;
			/* never scan again what was scanned (fill may move
			   the data: from counts from rpos) */
			from = rlen >= rpos + 4 ? rlen - 4 - rpos : 0;
			fill();
			from += rpos;
			if (from < rpos - 2)
				from = rpos - 2;
		}
		k = (size_t)(e - (rb + rpos)) + 2;
		if (e < rb + rpos)
			k = 0;		/* an empty message */
		hand(rb + rpos, k, 1);
		*bytes += k;
		rpos = (size_t)(e - rb) + 5;
		done++;
	}
	say("QUIT\r\n");
	return n;
}

static size_t
imap(const char *user, const char *pw, size_t *bytes)
{
	size_t	 n = 0, lit;
	char	*l, *b;

	if (strncmp(line(), "* OK", 4) != 0)
		die("no IMAP greeting");
	say("a LOGIN %s %s\r\n", user, pw);
	while (strncmp(l = line(), "a ", 2) != 0)
		;
	if (strncmp(l, "a OK", 4) != 0)
		die("LOGIN: %s", l);
	say("b SELECT INBOX\r\n");
	while (strncmp(l = line(), "b ", 2) != 0)
		;
	if (strncmp(l, "b OK", 4) != 0)
		die("SELECT: %s", l);
	say("c UID FETCH 1:* (BODY.PEEK[])\r\n");
	for (;;) {
		l = line();
		if (strncmp(l, "c ", 2) == 0) {
			if (strncmp(l, "c OK", 4) != 0)
				die("FETCH: %s", l);
			break;
		}
		if ((b = strrchr(l, '{')) == NULL || l[strlen(l) - 1] != '}')
			continue;
		lit = strtoul(b + 1, NULL, 10);
		while (rlen - rpos < lit)
			fill();
		hand(rb + rpos, lit, 0);
		*bytes += lit;
		rpos += lit;
		n++;
	}
	say("z LOGOUT\r\n");
	return n;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in	 sa = { .sin_family = AF_INET };
	struct timespec		 t0, t1;
	pthread_t		 tw, tf;
	size_t			 n, bytes = 0;
	char			 p[4096];
	int			 one = 1;
	const char		*sub[] = { "", "/tmp", "/new", "/cur" };

	if (argc != 6)
		die("usage: raw-maildir pop3|imap PORT USER PASSWORD MAILDIR");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	dir = argv[5];
	for (n = 0; n < 4; n++) {
		snprintf(p, sizeof p, "%s%s", dir, sub[n]);
		if (mkdir(p, 0700) == -1 && errno != EEXIST)
			die("%s: %s", p, strerror(errno));
	}
	sa.sin_port = htons((unsigned short)atoi(argv[2]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(sock, (struct sockaddr *)&sa, sizeof sa) == -1)
		die("connect: %s", strerror(errno));
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (pthread_create(&tw, NULL, writer, NULL) != 0 ||
	    pthread_create(&tf, NULL, flusher, NULL) != 0)
		die("cannot start threads");
	if (strcmp(argv[1], "pop3") == 0)
		n = pop3(argv[3], argv[4], &bytes);
	else if (strcmp(argv[1], "imap") == 0)
		n = imap(argv[3], argv[4], &bytes);
	else
		die("pop3 or imap, not %s", argv[1]);
	q_put(&towrite, NULL);
	pthread_join(tw, NULL);
	pthread_join(tf, NULL);
	close(sock);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "raw-maildir: %zu messages, %zu bytes, %.3f s\n", n,
	    bytes, (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
