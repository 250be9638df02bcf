/*
 * pop3.c -- the POP3 source; see source.h for the contract.
 *
 * libetpan does the greeting, CAPA, STLS and USER/PASS (ours, in one
 * write, when the server offers PIPELINING).  Everything after login is
 * ours, on libetpan's stream (notes/libetpan.md Q3): its LIST and
 * UIDL parsers crash on odd replies, its RETR holds the whole message and
 * cuts lines at NUL, and its QUIT ignores -ERR.  Our commands:
 *
 *   STAT, UIDL, LIST   parsed and validated here; STAT and UIDL in one
 *                      write with PIPELINING; LIST only when sizes
 *                      matter (something is new): `LIST n` for a few
 *   RETR, TOP          streamed to a file through a dot-unstuffing reader
 *                      that keeps every byte and never over-reads
 *   DELE               queued; pipelined with RETR when the server has
 *                      PIPELINING
 *   QUIT               sent by us; only "+OK" means the deletions happened
 *                      (not waited for when no DELE was sent)
 *   UTF8               before login when CAPA announces it (RFC 6856)
 *
 * Every command sent is remembered in a FIFO so that pipelined replies are
 * read back in order.  Dropping a session sends no QUIT, so the server
 * commits no DELE (RFC 1939: deletions take effect in the UPDATE state).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "fetch/source_impl.h"
#include "log.h"
#include "net/endpoint.h"
#include "net/net.h"
#include "net/sasl.h"

/*
 * With PIPELINING, RETRs are kept outstanding by the bytes LIST announced
 * (enough to cover the bandwidth-delay product of a slow link), at most
 * POP3_WINDOW_CMDS of them; they are refilled in batches, one write each,
 * once what is outstanding fell to half the window.
 */
#define POP3_WINDOW_BYTES	(4u * 1024 * 1024)
#define POP3_WINDOW_CMDS	256
#define POP3_MAX_MSGS	10000000	/* a listing longer than this is hostile */
#define POP3_MAX_UID	70		/* RFC 1939 */

enum pop3_cmd { CMD_RETR, CMD_DELE };

struct pop3_pending {
	enum pop3_cmd	 cmd;
	unsigned	 num;
	uint64_t	 size;		/* RETR: as LIST announced it */
	uint64_t	 limit;		/* RETR: source_msg.limit */
};

struct pop3 {
	struct source		  base;		/* first: see source_impl.h */
	const struct cfg_account *acct;		/* borrowed */
	mailpop3		 *p;		/* NULL once ended */
	mailstream		 *s;		/* p's stream */
	bool			  tls, pipelining;
	bool			  has_capa, cap_user, cap_utf8;
	struct sasl_offer	  offer;	/* CAPA's SASL line */
	char			  greeting[256];
	char			  caps[512];
	unsigned		  count;	/* STAT */

	const struct source_msg	*const *plan;	/* borrowed */
	size_t			  nplan, next_send;

	struct pop3_pending	 *fifo;		/* ring of commands sent */
	size_t			  fifo_cap, fifo_head, fifo_len;
	unsigned		  retr_pending;
	uint64_t		  retr_bytes;	/* their announced sizes */
	unsigned		  dele_sent;	/* DELEs this session */
	unsigned		  dele_failed;
	unsigned		 *subst;	/* nums served as a substitute */
	size_t			  nsubst;
	unsigned		  discarded;	/* RETRs read and dropped */
	bool			  hides_served;	/* Gmail's POP: a RETR in a
						   session that ends with
						   QUIT is never listed
						   again */
	char			  dele_reply[512];
	uint64_t		  listed;	/* the size LIST gave the
						   message being read */
};

/* ---- the command layer ------------------------------------------------ */

static int
write_all(int fd, const char *buf, size_t len, struct mh_err *err)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			mh_err_set(err, MH_ERR_LOCAL, "cannot write the spool "
			    "file: %s", n == 0 ? "short write" :
			    strerror(errno));
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
lost(struct pop3 *p, const char *doing, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_TEMP, "POP3 %s:%u: connection lost during %s: "
	    "%s", p->acct->ep.host, p->acct->ep.port, doing, net_error(p->s));
}

static int
send_cmd(struct pop3 *p, const char *line, bool flush, struct mh_err *err)
{
	size_t	len = strlen(line);

	log_transcript(p->acct->name, true, false, line, len);
	if (mailstream_write(p->s, line, len) != (ssize_t)len ||
	    (flush && mailstream_flush(p->s) == -1)) {
		lost(p, "a command", err);
		return -1;
	}
	return 0;
}

/*
 * Reads one status line into buf.  Returns 1 for +OK, 0 for -ERR (the
 * line is in err->reply), -1 when the connection failed or the line is
 * neither.
 */
static int
read_status(struct pop3 *p, const char *doing, char *buf, size_t size,
    struct mh_err *err)
{
	MMAPString	*line = mmap_string_new("");
	int		 rc = -1;

	if (line == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	if (mailstream_read_line_remove_eol(p->s, line) == NULL) {
		lost(p, doing, err);
		goto out;
	}
	log_transcript(p->acct->name, false, false, line->str, line->len);
	snprintf(buf, size, "%.*s", (int)line->len, line->str);
	if (strncmp(line->str, "+OK", 3) == 0) {
		rc = 1;
	} else if (strncmp(line->str, "-ERR", 4) == 0) {
		mh_err_reply(err, line->str, line->len);
		rc = 0;
	} else {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: unexpected reply to %s",
		    p->acct->ep.host, doing);
		mh_err_reply(err, line->str, line->len);
	}
out:
	mmap_string_free(line);
	return rc;
}

/*
 * A message longer than its limit: the rest is not read (the session
 * cannot go on: the caller aborts it) and the message is refused.
 */
static int
too_big(struct pop3 *p, uint64_t limit, struct mh_err *err)
{
	net_set_line_limit(p->s, NET_LINE_LIMIT);
	mh_err_set(err, MH_ERR_PROTO, "POP3 %s: the server sent more than "
	    "%" PRIu64 " bytes for a message it listed as %" PRIu64 " bytes "
	    "(max_size %" PRIu64 "); not retrieved, it stays on the server",
	    p->acct->ep.host, limit, p->listed, p->acct->max_size);
	mh_err_scope(err, MH_SCOPE_MESSAGE);
	return -1;
}

/* A body on its way to the spool file, buffered. */
struct body_out {
	int		 fd;		/* -1: discarded */
	uint64_t	 limit;		/* 0: none */
	uint64_t	 total;		/* written */
	size_t		 olen;
	char		 buf[65536];
};

static int
body_flush(struct body_out *o, struct mh_err *err)
{
	if (o->olen > 0 && o->fd != -1 &&
	    mh_memspool_bound(o->fd, o->total, o->olen) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot move the spool to a "
		    "file: %s", strerror(errno));
		return -1;
	}
	if (o->olen > 0 && o->fd != -1 && write_all(o->fd, o->buf, o->olen,
	    err) == -1)
		return -1;
	o->total += o->olen;
	o->olen = 0;
	return 0;
}

/* Appends s[0..n) to the body; a body over its limit is refused. */
static int
body_put(struct pop3 *p, struct body_out *o, const char *s, size_t n,
    struct mh_err *err)
{
	size_t	k;

	if (o->limit > 0 && o->limit - o->total - o->olen < n)
		return too_big(p, o->limit, err);
	while (n > 0) {
		if (o->olen == sizeof o->buf && body_flush(o, err) == -1)
			return -1;
		k = sizeof o->buf - o->olen < n ? sizeof o->buf - o->olen : n;
		memcpy(o->buf + o->olen, s, k);
		o->olen += k;
		s += k;
		n -= k;
	}
	return 0;
}

enum body_state { BOL, MID, DOT, DOTCR, END };

/*
 * Scans buf[0..len) of a body in state *st, handing the unstuffed bytes
 * to o: whole line spans at a time (memchr), byte by byte only after a
 * dot at the start of a line.  The bytes scanned (up to the terminator
 * when *st becomes END), or -1.
 */
static ssize_t
body_scan(struct pop3 *p, enum body_state *st, const char *buf, size_t len,
    struct body_out *o, struct mh_err *err)
{
	const char	*nl;
	size_t		 i = 0, end;
	char		 c, cr[2];

	while (i < len && *st != END) {
		if (*st == BOL && buf[i] == '.') {
			*st = DOT;
			i++;
		} else if (*st == BOL || *st == MID) {
			nl = memchr(buf + i, '\n', len - i);
			end = nl != NULL ? (size_t)(nl - buf) + 1 : len;
			if (body_put(p, o, buf + i, end - i, err) == -1)
				return -1;
			i = end;
			*st = nl != NULL ? BOL : MID;
		} else if ((c = buf[i++]) == '\n') {	/* ".\n", ".\r\n" */
			*st = END;
		} else if (*st == DOT && c == '\r') {
			*st = DOTCR;
		} else {	/* the dot was stuffing, or ".\rX" (kept) */
			cr[0] = '\r';
			cr[1] = c;
			if (body_put(p, o, *st == DOTCR ? cr : cr + 1,
			    *st == DOTCR ? 2 : 1, err) == -1)
				return -1;
			*st = MID;
		}
	}
	return (ssize_t)i;
}

/*
 * Streams a multi-line body to fd (or discards it when fd is -1),
 * dot-unstuffed, every other byte kept.  Reads only what the stream has
 * buffered, so a pipelined reply that follows stays in the buffer.
 */
static int
read_body(struct pop3 *p, int fd, uint64_t limit, uint64_t *nbytes,
    struct mh_err *err)
{
	enum body_state	 st = BOL;
	struct body_out	*o = xmalloc(sizeof *o);
	char		 sink[8192];
	size_t		 used, n;
	ssize_t		 scanned;
	int		 rc = -1;

	o->fd = fd;
	o->limit = limit;
	o->total = 0;
	o->olen = 0;
	/* a message line may be of any length */
	net_set_line_limit(p->s, 0);
	while (st != END) {
		if (p->s->read_buffer_len == 0 &&
		    mailstream_feed_read_buffer(p->s) <= 0) {
			lost(p, "a message", err);
			goto out;
		}
		if ((scanned = body_scan(p, &st, p->s->read_buffer,
		    p->s->read_buffer_len, o, err)) == -1)
			goto out;
		/* consume exactly what was scanned: no network read */
		for (used = (size_t)scanned; used > 0; used -= n) {
			n = used < sizeof sink ? used : sizeof sink;
			if (mailstream_read(p->s, sink, n) != (ssize_t)n) {
				lost(p, "a message", err);
				goto out;
			}
		}
	}
	net_set_line_limit(p->s, NET_LINE_LIMIT);
	if (body_flush(o, err) == -1)
		goto out;
	if (nbytes != NULL)
		*nbytes = o->total;
	rc = 0;
out:
	free(o);
	return rc;
}

/* Fails an operation on a session that was already ended. */
static int
ended(struct pop3 *p, struct mh_err *err)
{
	if (p->p != NULL)
		return 0;
	mh_err_set(err, MH_ERR_LOCAL, "internal: the POP3 session with %s "
	    "has already ended", p->acct->ep.host);
	return -1;
}

/* ---- the FIFO of commands in flight -------------------------------------- */

static void
fifo_push(struct pop3 *p, enum pop3_cmd cmd, unsigned num, uint64_t size,
    uint64_t limit)
{
	if (p->fifo_len == p->fifo_cap) {
		size_t			 ncap = p->fifo_cap ? p->fifo_cap * 2 : 16;
		struct pop3_pending	*n = xcalloc(ncap, sizeof *n);

		for (size_t i = 0; i < p->fifo_len; i++)
			n[i] = p->fifo[(p->fifo_head + i) % p->fifo_cap];
		free(p->fifo);
		p->fifo = n;
		p->fifo_cap = ncap;
		p->fifo_head = 0;
	}
	p->fifo[(p->fifo_head + p->fifo_len) % p->fifo_cap] =
	    (struct pop3_pending){ cmd, num, size, limit };
	p->fifo_len++;
	if (cmd == CMD_RETR) {
		p->retr_pending++;
		p->retr_bytes += size;
	}
}

static struct pop3_pending
fifo_pop(struct pop3 *p)
{
	struct pop3_pending	c = p->fifo[p->fifo_head];

	p->fifo_head = (p->fifo_head + 1) % p->fifo_cap;
	p->fifo_len--;
	if (c.cmd == CMD_RETR) {
		p->retr_pending--;
		p->retr_bytes -= c.size;
	}
	return c;
}

/* Reads the reply to a DELE at the head of the FIFO. */
static int
read_dele(struct pop3 *p, unsigned num, struct mh_err *err)
{
	char	buf[512];
	int	r = read_status(p, "DELE", buf, sizeof buf, err);

	if (r == -1)
		return -1;
	if (r == 0) {
		p->dele_failed++;
		snprintf(p->dele_reply, sizeof p->dele_reply, "%s", buf);
		log_warn("%s: the server refused to delete message %u: %s",
		    p->acct->name, num, buf);
		mh_err_clear(err);
	}
	return 0;
}

/*
 * Reads replies off the FIFO until the one for RETR num is next (DELE
 * replies met on the way are handled; an earlier RETR's body is
 * discarded).  Then pops it.
 */
static int
drain_until(struct pop3 *p, bool want_retr, unsigned num, struct mh_err *err)
{
	char	buf[512];

	while (p->fifo_len > 0) {
		struct pop3_pending c = p->fifo[p->fifo_head];

		if (want_retr && c.cmd == CMD_RETR && c.num == num)
			return 0;
		fifo_pop(p);
		if (c.cmd == CMD_DELE) {
			if (read_dele(p, c.num, err) == -1)
				return -1;
			continue;
		}
		/* a RETR nobody asked for any more: read and drop it, no
		   more of it than its fetch would have taken (a server that
		   streams on without end must not hold the pass) */
		p->discarded++;
		int r = read_status(p, "RETR", buf, sizeof buf, err);
		if (r == -1)
			return -1;
		p->listed = c.size;	/* for too_big's text */
		if (r == 1 && read_body(p, -1, c.limit, NULL, err) == -1)
			return -1;
	}
	if (want_retr) {
		mh_err_set(err, MH_ERR_LOCAL, "internal: RETR %u was not sent",
		    num);
		return -1;
	}
	return 0;
}

/* ---- listing -------------------------------------------------------------- */

/* Reads a multi-line listing, one callback per line; -1 on error. */
static int
read_listing(struct pop3 *p, const char *what,
    int (*line_cb)(struct pop3 *, const char *, void *, struct mh_err *),
    void *arg, struct mh_err *err)
{
	MMAPString	*line = mmap_string_new("");
	unsigned long	 n = 0;
	int		 rc = -1;

	if (line == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	for (;;) {
		const char *l;

		if (mailstream_read_line_remove_eol(p->s, line) == NULL) {
			lost(p, what, err);
			goto out;
		}
		l = line->str;
		if (strcmp(l, ".") == 0)
			break;
		if (l[0] == '.')
			l++;
		if (++n > (unsigned long)p->count + 1 || n > POP3_MAX_MSGS) {
			mh_err_set(err, MH_ERR_PROTO, "POP3 %s: %s lists more "
			    "messages than STAT announced (%u)", p->acct->ep.host,
			    what, p->count);
			goto out;
		}
		if (line_cb(p, l, arg, err) == -1)
			goto out;
	}
	rc = 0;
out:
	mmap_string_free(line);
	return rc;
}

struct listing {
	struct source_list	*out;
	uint64_t		*sizes;		/* by message number */
	bool			*listed;
	uint32_t		*seen;		/* UIDL: unique_add's table */
	size_t			 seen_mask;	/* its size - 1 */
};

/* Parses "N REST" with 1 <= N <= count; returns REST or NULL. */
static const char *
parse_num(struct pop3 *p, const char *what, const char *l, unsigned *num,
    struct mh_err *err)
{
	char		*end;
	unsigned long	 v;

	errno = 0;
	v = strtoul(l, &end, 10);
	if (!isdigit((unsigned char)l[0]) || errno != 0 || *end != ' ' ||
	    v < 1 || v > p->count) {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: bad %s line (message "
		    "numbers are 1..%u)", p->acct->ep.host, what, p->count);
		mh_err_reply(err, l, (size_t)-1);
		return NULL;
	}
	*num = (unsigned)v;
	while (*end == ' ')
		end++;
	return end;
}

static int
list_line(struct pop3 *p, const char *l, void *arg, struct mh_err *err)
{
	struct listing	*ls = arg;
	const char	*rest;
	char		*end;
	unsigned	 num;
	unsigned long long size;

	if ((rest = parse_num(p, "LIST", l, &num, err)) == NULL)
		return -1;
	errno = 0;
	size = strtoull(rest, &end, 10);
	if (!isdigit((unsigned char)rest[0]) || errno != 0 ||
	    (*end != '\0' && *end != ' ') || ls->listed[num]) {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: bad or repeated LIST "
		    "line", p->acct->ep.host);
		mh_err_reply(err, l, (size_t)-1);
		return -1;
	}
	ls->listed[num] = true;
	ls->sizes[num] = size;
	return 0;
}

/* FNV-1a of a UID, for unique_add's table. */
static uint32_t
uid_hash(const char *s)
{
	uint32_t	h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/*
 * Every UID unique, checked as each arrives (while the server is still
 * sending the rest): ls->seen is an open-addressing table of message
 * numbers (0: empty), sized by STAT's count to be at most half full.
 */
static void
unique_init(struct listing *ls, size_t count)
{
	size_t	cap = 16;

	while (cap < 2 * count)
		cap *= 2;
	ls->seen = xcalloc(cap, sizeof *ls->seen);
	mh_prefault(ls->seen, cap * sizeof *ls->seen);	/* every page is hit */
	ls->seen_mask = cap - 1;
}

static int
unique_add(struct pop3 *p, struct listing *ls, unsigned num,
    struct mh_err *err)
{
	const struct source_msg	*m = ls->out->msgs;
	const char		*uid = m[num - 1].uid;
	size_t			 k;

	for (k = uid_hash(uid) & ls->seen_mask; ls->seen[k] != 0;
	    k = (k + 1) & ls->seen_mask)
		if (strcmp(m[ls->seen[k] - 1].uid, uid) == 0) {
			mh_err_set(err, MH_ERR_PROTO, "POP3 %s: UIDL gives two "
			    "messages the same UID '%s'", p->acct->ep.host, uid);
			return -1;
		}
	ls->seen[k] = num;
	return 0;
}

/*
 * "N UID": the UID into the list's arena, at out->msgs[N - 1] (the list
 * is made with STAT's count of slots before UIDL is read).
 */
static int
uidl_line(struct pop3 *p, const char *l, void *arg, struct mh_err *err)
{
	struct listing	*ls = arg;
	const char	*uid;
	unsigned	 num;
	size_t		 i;

	if ((uid = parse_num(p, "UIDL", l, &num, err)) == NULL)
		return -1;
	for (i = 0; uid[i] != '\0'; i++)
		if ((unsigned char)uid[i] < 0x21 || (unsigned char)uid[i] > 0x7e)
			break;
	if (i == 0 || i > POP3_MAX_UID || uid[i] != '\0' ||
	    ls->out->msgs[num - 1].uid != NULL) {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: bad or repeated UIDL "
		    "line (a UID is 1 to 70 printable characters)",
		    p->acct->ep.host);
		mh_err_reply(err, l, (size_t)-1);
		return -1;
	}
	ls->out->msgs[num - 1].uid = source_list_strdup(ls->out, uid, i);
	return unique_add(p, ls, num, err);
}

/*
 * STAT: the number of messages, which bounds the listings.  With
 * and_uidl, UIDL goes out in the same write (PIPELINING: a round trip
 * less per poll) and its answer is the caller's to read; after a failure
 * here it stays unread, and the session is not used again (a failed
 * listing ends it without QUIT).
 */
static int
stat_count(struct pop3 *p, bool and_uidl, struct mh_err *err)
{
	char		 buf[512];
	unsigned long	 count;
	int		 r;

	if (send_cmd(p, and_uidl ? "STAT\r\nUIDL\r\n" : "STAT\r\n", true,
	    err) == -1 ||
	    (r = read_status(p, "STAT", buf, sizeof buf, err)) == -1)
		return -1;
	if (r == 0 || sscanf(buf, "+OK %lu", &count) != 1 ||
	    count > POP3_MAX_MSGS) {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: bad STAT reply",
		    p->acct->ep.host);
		mh_err_reply(err, buf, (size_t)-1);
		return -1;
	}
	p->count = (unsigned)count;
	return 0;
}

/* LIST of the whole mailbox into ls (sizes, listed: count + 1 each). */
static int
list_all(struct pop3 *p, struct listing *ls, struct mh_err *err)
{
	char	buf[512];
	int	r;

	if (send_cmd(p, "LIST\r\n", true, err) == -1 ||
	    (r = read_status(p, "LIST", buf, sizeof buf, err)) == -1)
		return -1;
	if (r == 0) {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: LIST refused",
		    p->acct->ep.host);
		return -1;
	}
	return read_listing(p, "LIST", list_line, ls, err);
}

/*
 * `LIST n` for each message l->msgs[i] with want[i], into ls: in
 * batches of one write with PIPELINING, one at a time without.
 */
static int
list_some(struct pop3 *p, const struct source_list *l, const bool *want,
    struct listing *ls, struct mh_err *err)
{
	size_t	 i = 0, j, k, batch = p->pipelining ? POP3_WINDOW_CMDS : 1;
	char	*cmds = xmalloc(batch * sizeof "LIST 4294967295\r\n" + 1);
	char	 buf[512], *w;
	const char *rest;
	int	 r, rc = -1;

	while (i < l->n) {
		for (w = cmds, k = 0, j = i; j < l->n && k < batch; j++)
			if (want[j]) {
				w += sprintf(w, "LIST %u\r\n", l->msgs[j].num);
				k++;
			}
		if (k > 0 && send_cmd(p, cmds, true, err) == -1)
			goto out;
		for (; i < j; i++) {
			if (!want[i])
				continue;
			if ((r = read_status(p, "LIST", buf, sizeof buf,
			    err)) == -1)
				goto out;
			for (rest = buf + 3; *rest == ' '; rest++)
				;
			if (r == 0 || list_line(p, rest, ls, err) == -1 ||
			    !ls->listed[l->msgs[i].num]) {
				mh_err_set(err, MH_ERR_PROTO, "POP3 %s: LIST %u "
				    "refused or answered for another message, "
				    "though UIDL listed it", p->acct->ep.host,
				    l->msgs[i].num);
				mh_err_reply(err, buf, (size_t)-1);
				goto out;
			}
		}
	}
	rc = 0;
out:
	free(cmds);
	return rc;
}

/*
 * More than one in POP3_LIST_ALL_RATIO of the messages wanted (or more
 * than a few without PIPELINING): one LIST of the mailbox is cheaper
 * than a command for each.
 */
#define POP3_LIST_ALL_RATIO	8
#define POP3_LIST_ONE_MAX	8

static int
pop3_list_sizes(struct source *src, struct source_list *l, const bool *want,
    struct mh_err *err)
{
	struct pop3	*p = (struct pop3 *)src;
	struct listing	 ls;
	size_t		 i, k = 0;
	int		 rc = -1;

	if (ended(p, err) == -1)
		return -1;
	for (i = 0; i < l->n; i++)
		if (want == NULL || want[i])
			k++;
	if (k == 0)
		return 0;
	memset(&ls, 0, sizeof ls);
	ls.sizes = xcalloc((size_t)p->count + 1, sizeof *ls.sizes);
	ls.listed = xcalloc((size_t)p->count + 1, sizeof *ls.listed);
	if (want == NULL || k * POP3_LIST_ALL_RATIO > l->n ||
	    (!p->pipelining && k > POP3_LIST_ONE_MAX)) {
		if (list_all(p, &ls, err) == -1)
			goto out;
		want = NULL;
	} else if (list_some(p, l, want, &ls, err) == -1)
		goto out;
	for (i = 0; i < l->n; i++) {
		unsigned num = l->msgs[i].num;

		if (want != NULL && !want[i])
			continue;
		if (!ls.listed[num]) {
			mh_err_set(err, MH_ERR_PROTO, "POP3 %s: LIST omits "
			    "message %u of the %u that STAT counted",
			    p->acct->ep.host, num, p->count);
			goto out;
		}
		l->msgs[i].size = ls.sizes[num];
	}
	if (want == NULL)
		l->sizes_pending = false;
	rc = 0;
out:
	free(ls.sizes);
	free(ls.listed);
	return rc;
}

/*
 * STAT, then UIDL alone: the sizes wait for pop3_list_sizes (a poll with
 * nothing new needs none).  Without UIDL, LIST: the content keys need
 * every size.
 */
static int
pop3_list(struct source *src, struct source_list *out, struct mh_err *err)
{
	struct pop3	*p = (struct pop3 *)src;
	struct listing	 ls;
	char		 buf[512];
	unsigned long	 count;
	int		 r, rc = -1;

	memset(out, 0, sizeof *out);
	memset(&ls, 0, sizeof ls);
	if (ended(p, err) == -1 || stat_count(p, p->pipelining, err) == -1)
		return -1;
	count = p->count;
	/* message n at msgs[n - 1]: UIDL writes its UID there */
	out->msgs = xcalloc(count ? count : 1, sizeof *out->msgs);
	mh_prefault(out->msgs, count * sizeof *out->msgs);
	ls.out = out;

	if ((!p->pipelining && send_cmd(p, "UIDL\r\n", true, err) == -1) ||
	    (r = read_status(p, "UIDL", buf, sizeof buf, err)) == -1)
		goto out;
	out->has_uids = r == 1;
	mh_err_clear(err);
	if (r == 0) {
		log_info("%s: %s has no UIDL (%s): telling messages apart by "
		    "their headers", p->acct->name, p->acct->ep.host, buf);
		ls.sizes = xcalloc(count + 1, sizeof *ls.sizes);
		ls.listed = xcalloc(count + 1, sizeof *ls.listed);
		if (list_all(p, &ls, err) == -1)
			goto out;
	} else {
		unique_init(&ls, count);
		if (read_listing(p, "UIDL", uidl_line, &ls, err) == -1)
			goto out;
	}

	for (unsigned long n = 1; n <= count; n++) {
		struct source_msg *m = &out->msgs[n - 1];
		char		   num[24];

		/* nothing was deleted in this session yet: the listing must
		   show every message STAT counted */
		if (out->has_uids ? m->uid == NULL : !ls.listed[n]) {
			mh_err_set(err, MH_ERR_PROTO, "POP3 %s: %s omits "
			    "message %lu of the %lu that STAT counted",
			    p->acct->ep.host, out->has_uids ? "UIDL" : "LIST",
			    n, count);
			goto out;
		}
		m->num = (unsigned)n;
		if (!out->has_uids) {
			m->size = ls.sizes[n];
			snprintf(num, sizeof num, "#%lu", n);
			m->uid = source_list_strdup(out, num, strlen(num));
		}
	}
	out->n = count;
	out->sizes_pending = out->has_uids && out->n > 0;
	rc = 0;
out:
	free(ls.seen);
	free(ls.sizes);
	free(ls.listed);
	if (rc == -1)
		source_list_free(out);
	return rc;
}

/* ---- retrieval ----------------------------------------------------------- */

static int
pop3_fetch_header(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	struct pop3	*p = (struct pop3 *)src;
	char		 cmd[64], buf[512];
	int		 r;

	if (ended(p, err) == -1 || drain_until(p, false, 0, err) == -1)
		return -1;
	snprintf(cmd, sizeof cmd, "TOP %u 0\r\n", msg->num);
	if (send_cmd(p, cmd, true, err) == -1 ||
	    (r = read_status(p, "TOP", buf, sizeof buf, err)) == -1)
		return -1;
	if (r == 0) {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: TOP %u refused",
		    p->acct->ep.host, msg->num);
		return -1;
	}
	return read_body(p, fd, msg->limit, NULL, err);
}

static void
pop3_plan(struct source *src, const struct source_msg *const *msgs, size_t n)
{
	struct pop3	*p = (struct pop3 *)src;

	p->plan = msgs;
	p->nplan = n;
	p->next_send = 0;
}

/*
 * Whether the window takes planned message k now: one RETR at a time
 * without PIPELINING; with it, up to the window (a message bigger than
 * the window goes alone).
 */
static bool
window_takes(const struct pop3 *p, size_t k)
{
	if (p->retr_pending == 0)
		return true;
	return p->pipelining && p->retr_pending < POP3_WINDOW_CMDS &&
	    p->retr_bytes + p->plan[k]->size <= POP3_WINDOW_BYTES;
}

/*
 * Refills the window once what is outstanding fell to half of it (or
 * when the message wanted now was not sent yet): the RETRs of the
 * planned messages that fit, in one write.
 */
static int
send_window(struct pop3 *p, const struct source_msg *want, struct mh_err *err)
{
	char	*batch, *w;
	size_t	 k, n;
	bool	 unsent = p->next_send < p->nplan &&
		    p->plan[p->next_send] == want;

	if (p->retr_pending > 0 && !unsent && (!p->pipelining ||
	    p->retr_bytes > POP3_WINDOW_BYTES / 2 ||
	    p->retr_pending > POP3_WINDOW_CMDS / 2))
		return 0;
	for (k = p->next_send; k < p->nplan && (window_takes(p, k) ||
	    (unsent && k == p->next_send)); k++)
		fifo_push(p, CMD_RETR, p->plan[k]->num, p->plan[k]->size,
		    p->plan[k]->limit);
	if ((n = k - p->next_send) == 0)
		return 0;
	w = batch = xmalloc(n * sizeof "RETR 4294967295\r\n" + 1);
	for (k = p->next_send; k < p->next_send + n; k++)
		w += sprintf(w, "RETR %u\r\n", p->plan[k]->num);
	p->next_send += n;
	log_transcript(p->acct->name, true, false, batch, (size_t)(w - batch));
	if (mailstream_write(p->s, batch, (size_t)(w - batch)) !=
	    (ssize_t)(w - batch) || mailstream_flush(p->s) == -1) {
		free(batch);
		lost(p, "RETR", err);
		return -1;
	}
	free(batch);
	return 0;
}

/* Whether a RETR of num waits in the pipeline for its reply. */
static bool
retr_sent(const struct pop3 *p, unsigned num)
{
	for (size_t i = 0; i < p->fifo_len; i++) {
		const struct pop3_pending *c =
		    &p->fifo[(p->fifo_head + i) % p->fifo_cap];

		if (c->cmd == CMD_RETR && c->num == num)
			return true;
	}
	return false;
}

static bool
pop3_requested(const struct source *src, const struct source_msg *msg)
{
	return retr_sent((const struct pop3 *)src, msg->num);
}

/* Sends RETRs ahead, up to the window, for the planned order. */
static int
send_ahead(struct pop3 *p, const struct source_msg *want, struct mh_err *err)
{
	char	cmd[64];

	/* the caller skipped planned messages: move on to want */
	for (size_t i = p->next_send; i < p->nplan; i++)
		if (p->plan[i] == want) {
			p->next_send = i;
			break;
		}
	/* a message outside the plan (or no plan): just that one */
	if (p->next_send >= p->nplan || p->plan[p->next_send] != want) {
		bool pending = retr_sent(p, want->num);

		if (pending && !p->pipelining)
			return 0;
		if (pending)
			goto window;
		snprintf(cmd, sizeof cmd, "RETR %u\r\n", want->num);
		if (send_cmd(p, cmd, true, err) == -1)
			return -1;
		fifo_push(p, CMD_RETR, want->num, want->size, want->limit);
		return 0;
	}
window:
	return send_window(p, want, err);
}

/*
 * Whether the message written to fd from offset start is Courier's
 * substitute for a message with raw UTF-8 in its header, served to a
 * client that did not say UTF8 (RFC 6856) or to a server that refused
 * it.  Such a message is delivered (it is what the server serves) but
 * never deleted: the original is only on the server.
 */
static bool
is_substitute(int fd, off_t start)
{
	char	 head[2048], *end;
	ssize_t	 n;

	if (start < 0 || (n = pread(fd, head, sizeof head - 1, start)) <= 0)
		return false;
	head[n] = '\0';	/* a NUL in the header only hides a match */
	if ((end = strstr(head, "\r\n\r\n")) != NULL)
		end[2] = '\0';
	return (strncmp(head, "From: Mail Delivery Subsystem", 29) == 0 ||
	    strstr(head, "\nFrom: Mail Delivery Subsystem") != NULL) &&
	    strstr(head, "\nSubject: Cannot display Unicode content\r\n") !=
	    NULL;
}

static bool
is_subst(const struct pop3 *p, unsigned num)
{
	size_t	i;

	for (i = 0; i < p->nsubst; i++)
		if (p->subst[i] == num)
			return true;
	return false;
}

static int
pop3_fetch(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	struct pop3	*p = (struct pop3 *)src;
	char		 buf[512];
	uint64_t	 n = 0;
	off_t		 start;
	int		 r;

	if (ended(p, err) == -1 || send_ahead(p, msg, err) == -1 ||
	    drain_until(p, true, msg->num, err) == -1)
		return -1;
	fifo_pop(p);
	if ((r = read_status(p, "RETR", buf, sizeof buf, err)) == -1)
		return -1;
	if (r == 0) {
		/* this message only; the session goes on */
		mh_err_set(err, MH_ERR_PERM, "POP3 %s: RETR %u refused",
		    p->acct->ep.host, msg->num);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		return -1;
	}
	start = lseek(fd, 0, SEEK_CUR);
	p->listed = msg->size;
	if (read_body(p, fd, msg->limit, &n, err) == -1)
		return -1;
	if (is_substitute(fd, start)) {
		log_warn("%s: the server served message %u as a \"Cannot "
		    "display Unicode content\" notice; the original stays on "
		    "the server", p->acct->name, msg->num);
		p->subst = xrealloc(p->subst, (p->nsubst + 1) *
		    sizeof *p->subst);
		p->subst[p->nsubst++] = msg->num;
	}
	if (n != msg->size)
		log_debug("%s: message %u: %" PRIu64 " bytes, LIST said %"
		    PRIu64, p->acct->name, msg->num, n, msg->size);
	return 0;
}

static int
pop3_mark_delete(struct source *src, const struct source_msg *msg,
    struct mh_err *err)
{
	struct pop3	*p = (struct pop3 *)src;
	char		 cmd[64];

	if (ended(p, err) == -1)
		return -1;
	if (is_subst(p, msg->num)) {
		log_warn("%s: not deleting message %u: the server served a "
		    "substitute for it", p->acct->name, msg->num);
		return 0;
	}
	snprintf(cmd, sizeof cmd, "DELE %u\r\n", msg->num);
	if (p->pipelining) {
		/* rides with the next RETRs, or is flushed at commit */
		if (send_cmd(p, cmd, false, err) == -1)
			return -1;
		p->dele_sent++;
		fifo_push(p, CMD_DELE, msg->num, 0, 0);
		return 0;
	}
	if (drain_until(p, false, 0, err) == -1 ||
	    send_cmd(p, cmd, true, err) == -1)
		return -1;
	p->dele_sent++;
	fifo_push(p, CMD_DELE, msg->num, 0, 0);
	return drain_until(p, false, 0, err);
}

/*
 * Retrieved and not delivered: counted as RETRs read and dropped when
 * never handed on, or on a server that hides what it served.
 */
static void
pop3_fetched_in_vain(struct source *src, size_t ahead, size_t failed)
{
	struct pop3	*p = (struct pop3 *)src;

	p->discarded += (unsigned)ahead;
	if (p->hides_served)
		p->discarded += (unsigned)failed;
}

/* Ends the session without QUIT: the server commits nothing. */
static void
pop3_abort(struct source *src)
{
	struct pop3	*p = (struct pop3 *)src;

	if (p->p == NULL)
		return;
	net_cancel(p->s);
	mailpop3_free(p->p);	/* its QUIT fails on the cancelled stream */
	p->p = NULL;
	p->s = NULL;
}

static int
pop3_commit(struct source *src, struct mh_err *err)
{
	struct pop3	*p = (struct pop3 *)src;
	char		 buf[512];
	int		 r, rc = -1;

	if (ended(p, err) == -1)
		return -1;
	if (mailstream_flush(p->s) == -1) {
		lost(p, "the end of the session", err);
		goto out;
	}
	if (drain_until(p, false, 0, err) == -1)
		goto out;
	/*
	 * Messages were retrieved but not delivered (sent ahead and not
	 * handed on, or handed on and their delivery failed).  Some servers
	 * (Gmail's POP) take a RETR in a session that ends with QUIT as
	 * "downloaded" and never list the message again: end without QUIT.
	 * That is a failure only when it leaves deletions undone (they
	 * wait for the next pass).
	 */
	if (p->discarded > 0) {
		if (p->dele_sent == 0) {
			log_info("POP3 %s: %u retrieved messages were not "
			    "delivered; ending without QUIT, so that the "
			    "server offers them again", p->acct->ep.host,
			    p->discarded);
			rc = 0;
			goto out;
		}
		mh_err_set(err, MH_ERR_TEMP, "POP3 %s: %u retrieved messages "
		    "were not delivered; ending without QUIT, deletions "
		    "postponed", p->acct->ep.host, p->discarded);
		goto out;
	}
	if (send_cmd(p, "QUIT\r\n", true, err) == -1)
		goto out;
	/*
	 * No DELE this session: QUIT commits nothing, and its answer would
	 * only cost a round trip (or, unanswered, the read timeout).
	 */
	if (p->dele_sent == 0) {
		rc = 0;
		goto out;
	}
	if ((r = read_status(p, "QUIT", buf, sizeof buf, err)) == -1)
		goto out;
	if (r == 0) {
		mh_err_set(err, MH_ERR_TEMP, "POP3 %s: QUIT answered -ERR: the "
		    "server may not have deleted anything", p->acct->ep.host);
		goto out;
	}
	if (p->dele_failed > 0) {
		mh_err_set(err, MH_ERR_TEMP, "POP3 %s: the server refused to "
		    "delete %u messages", p->acct->ep.host, p->dele_failed);
		mh_err_reply(err, p->dele_reply, (size_t)-1);
		goto out;
	}
	rc = 0;
out:
	pop3_abort(src);
	return rc;
}

static void
pop3_get_info(struct source *src, struct source_info *info)
{
	struct pop3	*p = (struct pop3 *)src;

	snprintf(info->greeting, sizeof info->greeting, "%s", p->greeting);
	snprintf(info->capabilities, sizeof info->capabilities, "%s",
	    p->caps);
	info->tls = p->tls;
	info->pipelining = p->pipelining;
	if (p->tls && p->s != NULL)
		net_peer_info(p->s, &info->peer);
}

static void
pop3_free(struct source *src)
{
	struct pop3	*p = (struct pop3 *)src;

	pop3_abort(src);
	free(p->fifo);
	free(p->subst);
	free(p);
}

/* ---- opening ---------------------------------------------------------------- */

/* CAPA's "SASL PLAIN LOGIN ..." into o. */
static void
offer_params(struct sasl_offer *o, struct mailpop3_capa *c)
{
	clistiter	*it;

	if (c->cap_param == NULL)
		return;
	for (it = clist_begin(c->cap_param); it != NULL; it = clist_next(it))
		if (clist_content(it) != NULL)
			sasl_offer_add(o, clist_content(it));
}

/* CAPA into p->caps and p->pipelining; a server without CAPA has none. */
static bool
read_caps(struct pop3 *p)
{
	clist		*caps = NULL;
	clistiter	*it;
	bool		 stls = false;
	size_t		 len = 0;

	p->caps[0] = '\0';
	p->pipelining = p->has_capa = p->cap_user = p->cap_utf8 = false;
	sasl_offer_init(&p->offer);
	if (mailpop3_capa(p->p, &caps) != MAILPOP3_NO_ERROR)
		return false;
	p->has_capa = true;
	for (it = clist_begin(caps); it != NULL; it = clist_next(it)) {
		struct mailpop3_capa *c = clist_content(it);

		if (strcasecmp(c->cap_name, "PIPELINING") == 0)
			p->pipelining = true;
		if (strcasecmp(c->cap_name, "USER") == 0)
			p->cap_user = true;
		if (strcasecmp(c->cap_name, "SASL") == 0)
			offer_params(&p->offer, c);
		if (strcasecmp(c->cap_name, "STLS") == 0)
			stls = true;
		if (strcasecmp(c->cap_name, "UTF8") == 0)
			p->cap_utf8 = true;
		if (len + strlen(c->cap_name) + 2 < sizeof p->caps)
			len += (size_t)snprintf(p->caps + len,
			    sizeof p->caps - len, "%s%s", len ? " " : "",
			    c->cap_name);
	}
	mailpop3_capa_resp_free(caps);
	return stls;
}

/*
 * The transcript of libetpan's part (greeting, CAPA, STLS, USER/PASS);
 * switched off after login, when our own commands log themselves and
 * message bodies must not reach the log.
 */
static void
login_logger(mailpop3 *session, int type, const char *str, size_t size,
    void *ctx)
{
	struct pop3	*p = ctx;

	(void)session;
	switch (type) {
	case MAILSTREAM_LOG_TYPE_DATA_RECEIVED:
		log_transcript(p->acct->name, false, false, str, size);
		break;
	case MAILSTREAM_LOG_TYPE_DATA_SENT:
		log_transcript(p->acct->name, true, false, str, size);
		break;
	case MAILSTREAM_LOG_TYPE_DATA_SENT_PRIVATE:
		if (size >= 4 && strncasecmp(str, "USER", 4) == 0)
			log_transcript(p->acct->name, true, true, str, size);
		else
			log_transcript(p->acct->name, true, true,
			    "PASS <redacted>\r\n", 17);
		break;
	default:
		break;
	}
}

/* ---- the SASL framing (RFC 5034): AUTH, "+ " challenges ---- */

static int
sasl_send(void *ctx, const char *line, const char *shown, struct mh_err *err)
{
	struct pop3	*p = ctx;
	size_t		 len = strlen(line);
	char		 s[128];

	snprintf(s, sizeof s, "%s\r\n", shown);
	log_transcript(p->acct->name, true, true, s, strlen(s));
	if (mailstream_write(p->s, line, len) != (ssize_t)len ||
	    mailstream_write(p->s, "\r\n", 2) != 2 ||
	    mailstream_flush(p->s) == -1) {
		lost(p, "AUTH", err);
		return -1;
	}
	return 0;
}

static int
sasl_read(void *ctx, enum sasl_reply *r, char *chal, size_t size,
    struct mh_err *err)
{
	struct pop3	*p = ctx;
	MMAPString	*line = mmap_string_new("");
	int		 rc = 0;

	if (line == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		return -1;
	}
	if (mailstream_read_line_remove_eol(p->s, line) == NULL) {
		lost(p, "AUTH", err);
		rc = -1;
		goto out;
	}
	log_transcript(p->acct->name, false, false, line->str, line->len);
	if (strncmp(line->str, "+OK", 3) == 0)
		*r = SASL_REPLY_OK;
	else if (strncmp(line->str, "-ERR", 4) == 0) {
		*r = SASL_REPLY_NO;
		mh_err_reply(err, line->str, line->len);
	} else if (line->str[0] == '+' && (line->str[1] == ' ' ||
	    line->str[1] == '\0')) {
		*r = SASL_REPLY_CONT;
		snprintf(chal, size, "%s", line->str[1] != '\0' ?
		    line->str + 2 : "");
	} else {
		mh_err_set(err, MH_ERR_PROTO, "POP3 %s: unexpected reply to "
		    "AUTH", p->acct->ep.host);
		mh_err_reply(err, line->str, line->len);
		rc = -1;
	}
out:
	mmap_string_free(line);
	return rc;
}

/*
 * RFC 6856: a server that announces UTF8 may serve a message with raw
 * UTF-8 in its header only to a client that said UTF8 (Courier serves a
 * "Cannot display Unicode content" notice instead).  Sent before login,
 * as the RFC allows; a refusal is logged and the session goes on.
 */
static int
utf8_mode(struct pop3 *p, struct mh_err *err)
{
	char	buf[512];
	int	r;

	if (!p->cap_utf8)
		return 0;
	if (send_cmd(p, "UTF8\r\n", true, err) == -1 ||
	    (r = read_status(p, "UTF8", buf, sizeof buf, err)) == -1)
		return -1;
	if (r == 0) {
		log_info("%s: the server refused UTF8: %s", p->acct->name,
		    err->reply);
		mh_err_clear(err);
	}
	return 0;
}

/*
 * A refused login is an authentication failure, unless the server says
 * the mailbox is busy or it has a temporary problem (RFC 2449 [IN-USE],
 * RFC 3206 [SYS/TEMP]): then try again next pass.
 */
static enum mh_err_class
login_class(const char *reply)
{
	return sasl_refusal_class(reply);
}

static void
response_reply(struct pop3 *p, struct mh_err *err)
{
	if (p->p->pop3_response != NULL)
		mh_err_reply(err, p->p->pop3_response, (size_t)-1);
}

/*
 * USER and PASS in one write, for a server that offers PIPELINING (RFC
 * 2449 allows it; mpop does the same): a round trip less at every login.
 * The replies are read in order; a -ERR to either is the refusal (a
 * server that refuses USER answers PASS with -ERR too).  0 or -1 as
 * login().  The line with the secret is wiped after the write and never
 * logged.
 */
static int
user_pass_pipelined(struct pop3 *p, const struct sasl_cred *cred,
    struct mh_err *err)
{
	const struct cfg_account	*acct = p->acct;
	struct mh_err			 e2;
	char				*line, buf[512];
	size_t				 len;
	int				 r1, r2;
	bool				 sent;

	/* ours from here: libetpan's logger would show the line again */
	mailpop3_set_logger(p->p, NULL, NULL);
	line = xasprintf("USER %s\r\nPASS %s\r\n", cred->user, cred->secret);
	len = strlen(line);
	/* as libetpan's login shows them: neither argument */
	log_transcript(acct->name, true, true, "USER\r\nPASS\r\n", 12);
	sent = mailstream_write(p->s, line, len) == (ssize_t)len &&
	    mailstream_flush(p->s) != -1;
	secret_free(line);
	if (!sent) {
		lost(p, "the login", err);
		return -1;
	}
	/* after a -ERR to USER, err keeps it: PASS's reply is then moot */
	mh_err_clear(&e2);
	if ((r1 = read_status(p, "the login", buf, sizeof buf, err)) == -1 ||
	    (r2 = read_status(p, "the login", buf, sizeof buf, r1 == 1 ? err :
	    &e2)) == -1) {
		mh_err_set(err, MH_ERR_TEMP, "POP3 %s: login as %s failed: "
		    "connection lost", acct->ep.host, cred->user);
		return -1;
	}
	if (r1 == 1 && r2 == 1)
		return 0;
	mh_err_set(err, login_class(err->reply), "POP3 %s: login as %s "
	    "refused", acct->ep.host, cred->user);
	return -1;
}

/*
 * USER/PASS when the server has no CAPA or offers USER, else a SASL
 * mechanism (sasl_choose).  A token goes in the two-step form (AUTH
 * XOAUTH2, "+", the response): Microsoft refuses the one-line form, and a
 * token rarely fits RFC 5034's 255-byte command line anyway.
 */
static int
login(struct pop3 *p, const struct sasl_cred *cred, struct mh_err *err)
{
	const struct cfg_account	*acct = p->acct;
	struct sasl_io			 io = { p, "AUTH", sasl_send, sasl_read,
	    0 };
	struct sasl_peer		 peer = { acct->ep.host, acct->ep.port };
	enum sasl_mech			 m;
	int				 r;

	p->offer.native = !p->has_capa || p->cap_user;
	if (sasl_plaintext_check(p->tls, acct->ep.allow_plaintext_auth, cred,
	    err) == -1 || sasl_choose(endpoint_auth(&acct->ep), cred->kind,
	    &p->offer, &m, err) == -1) {
		mh_err_prefix(err, "POP3 %s", acct->ep.host);
		return -1;
	}
	if (m != SASL_NATIVE) {
		if (cred->kind == SASL_SECRET_PASSWORD)
			io.ir_max = 255 - 2 - 6 - strlen(sasl_mech_name(m));
		if (sasl_authenticate(&io, m, cred, &peer, err) == 0)
			return 0;
		if (err->cls == MH_ERR_AUTH)
			err->cls = login_class(err->reply);
		mh_err_prefix(err, "POP3 %s", acct->ep.host);
		return -1;
	}
	if (p->pipelining)
		return user_pass_pipelined(p, cred, err);
	if ((r = mailpop3_user(p->p, cred->user)) != MAILPOP3_NO_ERROR ||
	    (r = mailpop3_pass(p->p, cred->secret)) != MAILPOP3_NO_ERROR) {
		if (r != MAILPOP3_ERROR_STREAM)
			response_reply(p, err);
		mh_err_set(err, r == MAILPOP3_ERROR_STREAM ? MH_ERR_TEMP :
		    login_class(err->reply), "POP3 %s: login as %s %s",
		    acct->ep.host, cred->user, r == MAILPOP3_ERROR_STREAM ?
		    "failed: connection lost" : "refused");
		return -1;
	}
	return 0;
}

static int
pop3_open(const struct cfg_account *acct, const char *folder,
    const struct sasl_cred *cred, struct source **out, struct mh_err *err)
{
	struct pop3		*p = xcalloc(1, sizeof *p);
	struct net_params	 np;
	int			 r;

	p->acct = acct;
	source_net_params(acct, &np);
	if ((p->s = net_connect(&np, err)) == NULL)
		goto fail;
	/* status and listing lines are short; read_body lifts the limit */
	net_set_line_limit(p->s, NET_LINE_LIMIT);
	p->p = mailpop3_new(0, NULL);
	if (p->p == NULL) {
		mailstream_close(p->s);
		p->s = NULL;
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		goto fail;
	}
	if (log_level >= LOG_LVL_DEBUG)
		mailpop3_set_logger(p->p, login_logger, p);
	r = mailpop3_connect(p->p, p->s);
	/* libetpan says "unauthorized" when the greeting never came: a
	   timeout or a closed connection is temporary, as for IMAP */
	if (r != MAILPOP3_NO_ERROR && net_error(p->s)[0] != '\0')
		r = MAILPOP3_ERROR_STREAM;
	if (r != MAILPOP3_NO_ERROR) {
		mh_err_set(err, r == MAILPOP3_ERROR_STREAM ? MH_ERR_TEMP :
		    MH_ERR_PROTO, "POP3 %s:%u: no valid greeting%s%s",
		    acct->ep.host, acct->ep.port, r == MAILPOP3_ERROR_STREAM ?
		    ": " : "", r == MAILPOP3_ERROR_STREAM ? net_error(p->s) :
		    "");
		response_reply(p, err);
		goto fail;
	}
	snprintf(p->greeting, sizeof p->greeting, "+OK %s",
	    p->p->pop3_response ? p->p->pop3_response : "");
	/* "+OK Gpop ready for requests from ..." */
	p->hides_served = strncmp(p->greeting, "+OK Gpop ", 9) == 0;
	bool stls = read_caps(p);

	if (acct->ep.tls == CFG_TLS_STARTTLS) {
		if (!stls) {
			mh_err_set(err, MH_ERR_TLS, "POP3 %s:%u does not offer "
			    "STLS, and tls = starttls requires it: not "
			    "falling back to plain text", acct->ep.host,
			    acct->ep.port);
			goto fail;
		}
		if ((r = mailpop3_stls(p->p)) != MAILPOP3_NO_ERROR) {
			/* libetpan refuses a +OK followed by more bytes */
			if (net_plaintext_pending(p->s))
				mh_err_set(err, MH_ERR_TLS, "POP3 %s:%u: STLS "
				    "refused: the server sent data before the "
				    "TLS handshake (an injection attempt?)",
				    acct->ep.host, acct->ep.port);
			else
				mh_err_set(err, MH_ERR_TLS, "POP3 %s:%u: STLS "
				    "failed (libetpan error %d)", acct->ep.host,
				    acct->ep.port, r);
			response_reply(p, err);
			goto fail;
		}
		if (net_starttls(p->s, &np, err) == -1)
			goto fail;
		read_caps(p);
	}
	p->tls = net_is_tls(p->s);
	if (utf8_mode(p, err) == -1 || login(p, cred, err) == -1)
		goto fail;
	mailpop3_set_logger(p->p, NULL, NULL);
	(void)folder;
	*out = &p->base;
	return 0;
fail:
	pop3_free(&p->base);
	return -1;
}

const struct source_ops pop3_source_ops = {
	.name = "pop3",
	.open = pop3_open,
	.get_info = pop3_get_info,
	.list = pop3_list,
	.fetch_header = pop3_fetch_header,
	.plan = pop3_plan,
	.requested = pop3_requested,
	.fetch = pop3_fetch,
	.mark_delete = pop3_mark_delete,
	.commit = pop3_commit,
	.abort = pop3_abort,
	.free = pop3_free,
	.fetched_in_vain = pop3_fetched_in_vain,
	.list_sizes = pop3_list_sizes,
};
