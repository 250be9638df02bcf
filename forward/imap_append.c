/*
 * imap_append.c -- the IMAP target (type = imap): APPEND into a folder of
 * any IMAP server (a hosted mailbox: Fastmail, iCloud, Gmail, Exchange).
 *
 * One logged-in connection serves the whole pass.  libetpan logs in; the
 * commands of this file are written on the session's stream by hand and
 * their replies read line by line (at most NET_LINE_LIMIT bytes a line,
 * set by the session opener), because libetpan's mailimap_append wants
 * the whole message in memory.  Our tags are "mhT<n>", apart from
 * libetpan's numeric ones.
 *
 * What goes on the wire:
 *   mhT1 APPEND "folder" (flags) "dd-Mon-yyyy hh:mm:ss +0000" {N+}
 * then N bytes: the Received: header, then the spool file's bytes with a
 * LF not preceded by CR made CRLF (forward/lf.h: the line end IMAP
 * carries; everything else untouched: a lone CR, NUL and 8-bit bytes are
 * the server's business), then CRLF.  The literal is non-synchronizing ({N+}) when the
 * server offers LITERAL+, or LITERAL- and N <= 4096; otherwise we wait
 * for the "+" continuation, and a server that refuses at once (a NO
 * [TOOBIG] for a 50 MB message) is never sent the data.  The flag list
 * is left out when empty; the date-time when the message has no date.
 *
 * The tagged reply decides (RFC 3501, 4315, 5530):
 *   OK [APPENDUID v uid]  delivered; "v/uid" is the delivery's id
 *   NO [TRYCREATE]        CREATE the folder (and SUBSCRIBE it, so that
 *                         clients show it) once per target, APPEND again
 *   NO [TOOBIG], [LIMIT]  permanent for this message
 *   NO [OVERQUOTA]        temporary, and for the whole target: no other
 *                         message will fare better this pass
 *   another NO, a BAD     permanent, with the server's text
 *   a lost connection     temporary (the message may be in the folder:
 *                         the engine's in-flight intent and the lookup
 *                         below settle that on the next pass)
 *
 * Pipelining (the engine's batches, target.h): once an APPEND into the
 * folder has succeeded on the connection (the folder exists), a message
 * whose literal can be non-synchronizing is sent ahead -- the command
 * and the literal written and flushed, the reply not waited for -- and
 * the next message follows at once (RFC 3501 5.5; RFC 7888: the server
 * reads a {N+} literal whatever it answers).  target_collect reads the
 * tagged replies later, matched by tag, and settles each as above; a
 * NO [TRYCREATE] there (the folder went away meanwhile) is temporary,
 * and the next APPEND goes alone again.  A message that must wait for
 * "+" first reads every reply still due.  A server 50 ms away then takes
 * one round trip per batch of up to 64 messages, not one per message.
 *
 * The lookup (was a message in doubt delivered before a crash?): EXAMINE
 * the folder, then UID SEARCH HEADER Received "<key>" -- mailhaul's own
 * Received: line carries the source key -- or, when the target adds no
 * Received: line, UID SEARCH HEADER Message-ID "<id>" with the exact size
 * (LARGER size-1 SMALLER size+1), since Message-IDs are not unique.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "forward/lf.h"
#include "forward/message.h"
#include "forward/target_impl.h"
#include "log.h"
#include "net/endpoint.h"
#include "net/imap_session.h"
#include "net/imap_utf7.h"
#include "net/net.h"
#include "util.h"

#define AP_TAG			"mhT"
#define AP_MAX_LINES		100000	/* untagged lines waited through */
#define AP_LITERAL_MINUS	4096	/* LITERAL-: non-sync up to this */
#define AP_CHUNK		65536
#define AP_AHEAD_MAX		128	/* APPENDs sent ahead, unanswered
					   (the engine's two batches of at
					   most 64 overlap) */
#ifndef AP_AHEAD_BYTES			/* (a test sets its own) */
#define AP_AHEAD_BYTES		(8u * 1024 * 1024)	/* and their
					   literals: past this, the answers
					   due are read first */
#endif

/* ---- the protocol mechanics -------------------------------------------- */

enum ap_status {
	AP_LOST = 0,	/* no tagged reply: the connection broke */
	AP_OK,
	AP_NO,
	AP_BAD,
	AP_CONT,	/* a "+" continuation (only when asked for) */
};

/* A tagged reply, and what came before it that we keep. */
struct ap_reply {
	enum ap_status	 status;
	char		 code[32];	/* response code atom, upper case */
	uint32_t	 uidvalidity;	/* [APPENDUID v uid], or an
					   untagged [UIDVALIDITY v] */
	uint32_t	 uid;
	char		 text[512];	/* the tagged line without the tag,
					   or a BYE line; for err->reply */
	uint32_t	 found;		/* the first "* SEARCH" number, 0 none */
	size_t		 nfound;	/* how many numbers "* SEARCH" gave */
	char		 why[128];	/* AP_LOST: why (ap_reason then) */
};

/* An APPEND sent ahead: its tag, and its reply once read. */
struct ap_ahead {
	char		 tag[24];
	uint64_t	 len;		/* of its literal */
	bool		 answered;	/* r holds the reply (or AP_LOST) */
	struct ap_reply	 r;
};

/* One IMAP connection as this file uses it. */
struct ap_conn {
	mailimap	*imap;		/* logged in; NULL when not connected */
	unsigned	 tagno;		/* the last tag number used */
	MMAPString	*line;		/* reply line buffer */
	bool		 broken;	/* a read or write failed: drop it */
	struct ap_ahead	 ahead[AP_AHEAD_MAX];	/* oldest first */
	size_t		 nahead;
	char		 bye[512];	/* a "* BYE" line read, for the lost */
};

/* What one APPEND sends. */
struct ap_msg {
	const char	*folder;	/* quoted already (imap_session_quote) */
	const char	*flags;		/* "(\Seen)" or "" */
	time_t		 date;		/* 0: none, the server takes now */
	const char	*received;	/* prepended; NULL for none */
	int		 fd;		/* spool, read from offset 0 */
	uint64_t	 len;		/* the literal's, once counted; 0:
					   not yet (ap_literal_len counts) */
};

static const char *
ap_reason(const struct ap_conn *c)
{
	const char *e = "";

	if (c->imap != NULL && c->imap->imap_stream != NULL)
		e = net_error(c->imap->imap_stream);
	return e[0] != '\0' ? e : "connection lost";
}

/*
 * Whether the server announced cap.  libetpan 1.9.4 crashes on an empty
 * "[CAPABILITY]" (a NULL list): check it first (see imap_session.c).
 */
static bool
ap_has_cap(mailimap *imap, const char *cap)
{
	struct mailimap_capability_data *cd;

	if (imap->imap_connection_info == NULL ||
	    (cd = imap->imap_connection_info->imap_capability) == NULL ||
	    cd->cap_list == NULL)
		return false;
	return mailimap_has_extension(imap, (char *)cap) != 0;
}

/* Whether f is a flag APPEND may set: \Atom or a keyword atom. */
static bool
ap_flag_ok(const char *f)
{
	const char *p = f;

	if (*p == '\\')
		p++;
	if (*p == '\0')
		return false;
	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return strcasecmp(f, "\\Recent") != 0;	/* the server's alone */
}

/*
 * "(\Seen $Work)" from flags, "" for none; NULL (and *bad set) when a
 * flag is not one.  Returns a new string.
 */
static char *
ap_flag_list(char *const *flags, size_t n, const char **bad)
{
	char	*out, *t;
	size_t	 i;

	if (n == 0)
		return xstrdup("");
	out = xstrdup("(");
	for (i = 0; i < n; i++) {
		if (!ap_flag_ok(flags[i])) {
			*bad = flags[i];
			free(out);
			return NULL;
		}
		t = xasprintf("%s%s%s", out, i > 0 ? " " : "", flags[i]);
		free(out);
		out = t;
	}
	t = xasprintf("%s)", out);
	free(out);
	return t;
}

/* The APPEND date-time of when, in UTC: "dd-Mon-yyyy hh:mm:ss +0000". */
static void
ap_date(time_t when, char *buf, size_t size)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&when, &tm) == NULL || tm.tm_mon < 0 || tm.tm_mon > 11 ||
	    tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1) {
		buf[0] = '\0';
		return;
	}
	snprintf(buf, size, "%2d-%s-%04d %02d:%02d:%02d +0000", tm.tm_mday,
	    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec);
}

/* ---- reading replies ---- */

/* Parses "[CODE args]" at p into r (code, APPENDUID). */
static void
ap_parse_code(const char *p, struct ap_reply *r)
{
	size_t		 n = 0;
	unsigned long	 v, u;
	char		*end;

	if (*p != '[')
		return;
	p++;
	while (p[n] != '\0' && p[n] != ' ' && p[n] != ']' &&
	    n < sizeof r->code - 1) {
		r->code[n] = (char)((p[n] >= 'a' && p[n] <= 'z') ?
		    p[n] - 'a' + 'A' : p[n]);
		n++;
	}
	r->code[n] = '\0';
	if (strcmp(r->code, "UIDVALIDITY") == 0 && p[n] == ' ') {
		v = strtoul(p + n + 1, &end, 10);
		if (*end == ']' && v > 0 && v <= UINT32_MAX)
			r->uidvalidity = (uint32_t)v;
		return;
	}
	if (strcmp(r->code, "APPENDUID") != 0 || p[n] != ' ')
		return;
	v = strtoul(p + n + 1, &end, 10);
	if (*end != ' ')
		return;
	u = strtoul(end + 1, &end, 10);
	if ((*end != ']' && *end != ' ') || v == 0 || v > UINT32_MAX ||
	    u == 0 || u > UINT32_MAX)
		return;
	r->uidvalidity = (uint32_t)v;
	r->uid = (uint32_t)u;
}

/* The tagged line after "TAG ": status, code, text. */
static void
ap_parse_tagged(const char *l, struct ap_reply *r)
{
	snprintf(r->text, sizeof r->text, "%s", l);
	if (strncasecmp(l, "OK", 2) == 0 && (l[2] == ' ' || l[2] == '\0'))
		r->status = AP_OK;
	else if (strncasecmp(l, "NO", 2) == 0 && (l[2] == ' ' || l[2] == '\0'))
		r->status = AP_NO;
	else
		r->status = AP_BAD;	/* BAD, or nonsense: the same to us */
	if (l[0] != '\0' && l[1] != '\0' && l[2] == ' ')
		ap_parse_code(l + 3, r);
}

/* "* SEARCH 3 7 (MODSEQ 9)": the numbers into r. */
static void
ap_parse_search(const char *p, struct ap_reply *r)
{
	unsigned long	 n;
	char		*end;

	while (*p == ' ') {
		p++;
		if (*p < '0' || *p > '9')
			break;
		n = strtoul(p, &end, 10);
		if (n > 0 && n <= UINT32_MAX) {
			if (r->nfound++ == 0)
				r->found = (uint32_t)n;
		}
		p = end;
	}
}

/* An untagged "[UIDVALIDITY v]" into r (no other code is kept). */
static void
ap_untagged_code(const char *p, struct ap_reply *r)
{
	struct ap_reply	u;

	memset(&u, 0, sizeof u);
	ap_parse_code(p, &u);
	if (strcmp(u.code, "UIDVALIDITY") == 0 && u.uidvalidity != 0)
		r->uidvalidity = u.uidvalidity;
}

/*
 * When line l ends by announcing a literal ("... {N}"), reads and drops
 * it and reads the line that goes on after it (the same response):
 * that line, or "" when l announces none.  NULL when the stream broke.
 */
static const char *
ap_skip_literal(struct ap_conn *c, const char *l)
{
	size_t		 len = strlen(l);
	const char	*lb;
	char		 buf[4096];
	unsigned long	 n;
	ssize_t		 got;

	if (len < 3 || l[len - 1] != '}' ||
	    (lb = strrchr(l, '{')) == NULL)
		return "";
	n = strtoul(lb + 1, NULL, 10);
	while (n > 0) {
		got = mailstream_read(c->imap->imap_stream, buf,
		    n < sizeof buf ? n : sizeof buf);
		if (got <= 0)
			return NULL;
		n -= (unsigned long)got;
	}
	return mailstream_read_line_remove_eol(c->imap->imap_stream, c->line);
}

/*
 * Reads the next reply.  An untagged one is consumed whole: its data
 * goes into u ("* SEARCH" numbers, a "* BYE" text, also kept in c->bye,
 * an untagged [UIDVALIDITY]), and each literal it announces is skipped
 * with the rest of the response after it, however many there are (a
 * FETCH of BODY[HEADER] and BODY[TEXT]): no byte of a literal is ever
 * taken for a reply.  Returns the line of a tagged reply or a
 * continuation, "*" for an untagged one; NULL when the connection broke
 * (c->broken set, u->why says why).
 */
static const char *
ap_next_line(struct ap_conn *c, struct ap_reply *u)
{
	const char	*l;
	int		 i;

	l = mailstream_read_line_remove_eol(c->imap->imap_stream, c->line);
	if (l == NULL)
		goto broke;
	if (l[0] != '*')
		return l;		/* tagged, or a continuation */
	if (strncasecmp(l, "* SEARCH", 8) == 0)
		ap_parse_search(l + 8, u);
	else if (strncasecmp(l, "* BYE", 5) == 0) {
		snprintf(u->text, sizeof u->text, "%s", l);
		snprintf(c->bye, sizeof c->bye, "%s", l);
	} else if (strncasecmp(l, "* OK [", 6) == 0)
		ap_untagged_code(l + 5, u);
	for (i = 0; i < AP_MAX_LINES; i++) {
		if ((l = ap_skip_literal(c, l)) == NULL)
			goto broke;
		if (l[0] == '\0')
			return "*";
	}
	snprintf(u->why, sizeof u->why, "an untagged response of more "
	    "than %d literals", AP_MAX_LINES);
	c->broken = true;
	return NULL;
broke:
	snprintf(u->why, sizeof u->why, "%s", ap_reason(c));
	c->broken = true;
	return NULL;
}

/* The rest of l after "tag " when l is tagged tag, else NULL. */
static const char *
ap_tagged(const char *l, const char *tag)
{
	size_t	tlen = strlen(tag);

	return strncmp(l, tag, tlen) == 0 && l[tlen] == ' ' ? l + tlen + 1 :
	    NULL;
}

/*
 * Reads until the reply tagged tag (or, with want_cont, a "+"
 * continuation).  Untagged data is skipped ("* SEARCH" numbers and a
 * "* BYE" text are kept).  r->status is AP_LOST when the connection
 * broke.  Nothing may be sent ahead and unanswered (ap_read_ahead).
 */
static void
ap_read_reply(struct ap_conn *c, const char *tag, bool want_cont,
    struct ap_reply *r)
{
	const char	*l, *rest;
	int		 i;

	memset(r, 0, sizeof *r);
	for (i = 0; i < AP_MAX_LINES; i++) {
		if ((l = ap_next_line(c, r)) == NULL)
			return;			/* AP_LOST */
		if (l[0] == '+' && want_cont) {
			r->status = AP_CONT;
			return;
		}
		if ((rest = ap_tagged(l, tag)) != NULL) {
			ap_parse_tagged(rest, r);
			return;
		}
	}
	/* a server that never answers: as if lost */
	snprintf(r->why, sizeof r->why, "no reply in %d lines", AP_MAX_LINES);
	c->broken = true;
}

/*
 * Every APPEND sent ahead and not answered yet counts as lost (the
 * connection broke): why, and a BYE text if one came.
 */
static void
ap_ahead_lost(struct ap_conn *c, const struct ap_reply *u)
{
	size_t	k;

	for (k = 0; k < c->nahead; k++) {
		if (c->ahead[k].answered)
			continue;
		memset(&c->ahead[k].r, 0, sizeof c->ahead[k].r);
		snprintf(c->ahead[k].r.text, sizeof c->ahead[k].r.text, "%s",
		    u->text[0] != '\0' ? u->text : c->bye);
		snprintf(c->ahead[k].r.why, sizeof c->ahead[k].r.why, "%s",
		    u->why[0] != '\0' ? u->why : "connection lost");
		c->ahead[k].answered = true;
	}
}

/*
 * Reads replies until the APPEND sent ahead at index k is answered; the
 * tagged replies of the others are kept as they come (matched by tag:
 * a server may answer out of order).  When the connection breaks first,
 * every one unanswered is AP_LOST.
 */
static void
ap_read_ahead(struct ap_conn *c, size_t k)
{
	struct ap_reply	 u;
	const char	*l, *rest;
	size_t		 j;
	int		 i;

	memset(&u, 0, sizeof u);
	for (i = 0; !c->ahead[k].answered; i++) {
		if (i == AP_MAX_LINES) {
			snprintf(u.why, sizeof u.why, "no reply in %d lines",
			    AP_MAX_LINES);
			c->broken = true;
		}
		if (c->broken || (l = ap_next_line(c, &u)) == NULL) {
			ap_ahead_lost(c, &u);
			return;
		}
		for (j = 0; j < c->nahead; j++)
			if (!c->ahead[j].answered &&
			    (rest = ap_tagged(l, c->ahead[j].tag)) != NULL) {
				ap_parse_tagged(rest, &c->ahead[j].r);
				c->ahead[j].answered = true;
				break;
			}
	}
}

/* The bytes of the literals sent ahead whose answers have not come. */
static uint64_t
ap_unanswered(const struct ap_conn *c)
{
	uint64_t	n = 0;
	size_t		k;

	for (k = 0; k < c->nahead; k++)
		if (!c->ahead[k].answered)
			n += c->ahead[k].len;
	return n;
}

/* Reads the replies to everything sent ahead (kept for ap_collect). */
static void
ap_drain(struct ap_conn *c)
{
	size_t	k;

	for (k = 0; k < c->nahead; k++)
		if (!c->ahead[k].answered)
			ap_read_ahead(c, k);
}

/*
 * The reply to the oldest APPEND sent ahead into r, read first if it has
 * not come yet (AP_LOST when the connection broke).  0, or -1 when
 * nothing was sent ahead.
 */
static int
ap_collect(struct ap_conn *c, struct ap_reply *r)
{
	if (c->nahead == 0)
		return -1;
	if (!c->ahead[0].answered)
		ap_read_ahead(c, 0);
	*r = c->ahead[0].r;
	c->nahead--;
	memmove(c->ahead, c->ahead + 1, c->nahead * sizeof *c->ahead);
	return 0;
}

/* Sends "TAG cmd\r\n" and reads the tagged reply into r. */
static void
ap_command(struct ap_conn *c, const char *cmd, struct ap_reply *r)
{
	char	 tag[24];
	char	*line;
	size_t	 n;

	snprintf(tag, sizeof tag, AP_TAG "%u", ++c->tagno);
	line = xasprintf("%s %s\r\n", tag, cmd);
	n = strlen(line);
	if (mailstream_write(c->imap->imap_stream, line, n) != (ssize_t)n ||
	    mailstream_flush(c->imap->imap_stream) == -1) {
		memset(r, 0, sizeof *r);
		c->broken = true;
	} else
		ap_read_reply(c, tag, false, r);
	free(line);
}

/* ---- the literal ---- */

/* The literal's length for m: received + the spool, to CRLF. */
static int
ap_literal_len(const struct ap_msg *m, uint64_t *len, struct mh_err *err)
{
	if (m->len != 0) {
		*len = m->len;
		return 0;
	}
	if (lf_size_crlf(m->received, m->fd, len) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot read the spool file: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Streams the literal (exactly len bytes) and the CRLF that ends the
 * command.  0; 1 when the stream broke; -1 with err for a local error
 * (the spool unreadable or not the length counted: the connection is in
 * the middle of a literal and must be dropped).
 */
static int
ap_send_literal(struct ap_conn *c, const struct ap_msg *m, uint64_t len,
    struct mh_err *err)
{
	mailstream		*s = c->imap->imap_stream;
	struct lf_reader	 r;
	unsigned char		*buf = xmalloc(AP_CHUNK);
	uint64_t		 sent = 0;
	ssize_t			 n;
	int			 rc = -1;

	lf_open_crlf(&r, m->received, m->fd);
	while ((n = lf_read(&r, buf, AP_CHUNK)) > 0) {
		if (mailstream_write(s, buf, (size_t)n) != n)
			goto broke;
		sent += (uint64_t)n;
	}
	if (n == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot read the spool file: %s",
		    strerror(errno));
		goto out;
	}
	if (sent != len) {
		mh_err_set(err, MH_ERR_LOCAL, "the spool file changed while "
		    "it was sent (%llu bytes instead of %llu)",
		    (unsigned long long)sent, (unsigned long long)len);
		goto out;
	}
	if (mailstream_write(s, "\r\n", 2) != 2 || mailstream_flush(s) == -1)
		goto broke;
	rc = 0;
	goto out;
broke:
	rc = 1;
out:
	free(buf);
	return rc;
}

/* Whether a literal of len bytes may go without waiting for "+". */
static bool
ap_nonsync(const struct ap_conn *c, uint64_t len)
{
	return ap_has_cap(c->imap, "LITERAL+") ||
	    (ap_has_cap(c->imap, "LITERAL-") && len <= AP_LITERAL_MINUS);
}

/* A new tag into tag, and the APPEND command line of m (to free). */
static char *
ap_append_cmd(struct ap_conn *c, const struct ap_msg *m, uint64_t len,
    bool nonsync, char tag[24])
{
	char	date[40] = "";

	if (m->date != 0)
		ap_date(m->date, date, sizeof date);
	snprintf(tag, 24, AP_TAG "%u", ++c->tagno);
	return xasprintf("%s APPEND %s%s%s%s%s%s {%llu%s}\r\n", tag, m->folder,
	    m->flags[0] != '\0' ? " " : "", m->flags,
	    date[0] != '\0' ? " \"" : "", date, date[0] != '\0' ? "\"" : "",
	    (unsigned long long)len, nonsync ? "+" : "");
}

/*
 * One APPEND of m.  Returns 0 with r filled (r->status AP_LOST when the
 * connection broke: the caller drops it), or -1 with err for a local
 * failure after which the connection is unusable too.  Nothing may be
 * sent ahead and unanswered (ap_drain first).
 */
static int
ap_append(struct ap_conn *c, const struct ap_msg *m, struct ap_reply *r,
    struct mh_err *err)
{
	mailstream	*s = c->imap->imap_stream;
	uint64_t	 len;
	char		 tag[24], *cmd = NULL;
	bool		 nonsync;
	size_t		 n;
	int		 rc = -1, sent;

	memset(r, 0, sizeof *r);
	if (ap_literal_len(m, &len, err) == -1)
		return -1;
	nonsync = ap_nonsync(c, len);
	cmd = ap_append_cmd(c, m, len, nonsync, tag);
	n = strlen(cmd);
	if (mailstream_write(s, cmd, n) != (ssize_t)n)
		goto lost;
	if (!nonsync) {
		if (mailstream_flush(s) == -1)
			goto lost;
		ap_read_reply(c, tag, true, r);
		if (r->status != AP_CONT) {
			rc = 0;		/* refused before the data, or lost */
			goto out;
		}
	}
	if ((sent = ap_send_literal(c, m, len, err)) == -1)
		goto out;
	if (sent == 1)
		goto lost;
	ap_read_reply(c, tag, false, r);
	rc = 0;
	goto out;
lost:
	memset(r, 0, sizeof *r);
	c->broken = true;
	rc = 0;
out:
	if (rc == -1)
		c->broken = true;	/* in the middle of a literal */
	free(cmd);
	return rc;
}

/*
 * Sends an APPEND of m (a literal of len bytes, non-synchronizing: the
 * caller checked ap_nonsync) ahead: written and flushed, its reply left
 * for ap_collect.  0 sent; 1 the stream broke (c->broken); -1 with err
 * for a local failure (c->broken: in the middle of a literal).
 */
static int
ap_append_ahead(struct ap_conn *c, const struct ap_msg *m, uint64_t len,
    struct mh_err *err)
{
	struct ap_ahead	*a;
	char		 tag[24], *cmd;
	size_t		 n;
	int		 sent;

	if (c->nahead == AP_AHEAD_MAX) {	/* the caller's bound */
		mh_err_set(err, MH_ERR_LOCAL, "more than %d APPENDs sent "
		    "ahead", AP_AHEAD_MAX);
		return -1;
	}
	cmd = ap_append_cmd(c, m, len, true, tag);
	n = strlen(cmd);
	sent = mailstream_write(c->imap->imap_stream, cmd, n) == (ssize_t)n ?
	    ap_send_literal(c, m, len, err) : 1;
	free(cmd);
	if (sent != 0) {
		c->broken = true;
		return sent;
	}
	a = &c->ahead[c->nahead++];
	memset(a, 0, sizeof *a);
	snprintf(a->tag, sizeof a->tag, "%s", tag);
	a->len = len;
	return 0;
}

/* ---- what a reply means ---- */

/* The verdict of one delivery. */
struct ap_result {
	enum target_outcome	 outcome;
	bool			 target_down;	/* no other message will do
						   better this pass */
	char			 id[24];	/* "uidvalidity/uid" or "" */
};

/* err for a tagged NO/BAD (the server's line as the reply). */
static void
ap_refused(const struct ap_reply *r, enum mh_err_class cls, const char *what,
    const char *name, struct mh_err *err)
{
	mh_err_reply(err, r->text, (size_t)-1);
	mh_err_set(err, cls, "target %s refused %s", name, what);
}

/*
 * The connection broke while the answers still due were read, before m
 * was sent: temporary, for the whole target (m is not in the folder).
 */
static void
ap_lost_unsent(const struct ap_conn *c, const char *name,
    struct ap_result *res, struct mh_err *err)
{
	res->outcome = TARGET_TEMPFAIL;
	res->target_down = true;
	err->reply[0] = '\0';
	if (c->bye[0] != '\0')
		mh_err_reply(err, c->bye, (size_t)-1);
	mh_err_set(err, MH_ERR_TEMP, "target %s: %s before the message's "
	    "APPEND was sent", name, ap_reason(c));
}

/* Maps the reply of an APPEND (TRYCREATE already handled) into res. */
static void
ap_verdict(const struct ap_conn *c, const struct ap_reply *r,
    const char *name, struct ap_result *res, struct mh_err *err)
{
	res->outcome = TARGET_TEMPFAIL;
	switch (r->status) {
	case AP_OK:
		res->outcome = TARGET_DELIVERED;
		if (r->uid != 0)
			snprintf(res->id, sizeof res->id, "%" PRIu32 "/%" PRIu32,
			    r->uidvalidity, r->uid);
		return;
	case AP_LOST:
	case AP_CONT:
		err->reply[0] = '\0';
		if (r->text[0] != '\0')		/* a BYE */
			mh_err_reply(err, r->text, (size_t)-1);
		mh_err_set(err, MH_ERR_TEMP, "target %s: %s during APPEND (the "
		    "message may be in the folder: checked next pass)", name,
		    r->why[0] != '\0' ? r->why : ap_reason(c));
		res->target_down = true;
		return;
	case AP_NO:
	case AP_BAD:
		break;
	}
	if (strcmp(r->code, "OVERQUOTA") == 0) {
		ap_refused(r, MH_ERR_TEMP, "the message: the mailbox is over "
		    "its quota", name, err);
		res->target_down = true;
	} else if (strcmp(r->code, "TOOBIG") == 0 ||
	    strcmp(r->code, "LIMIT") == 0) {
		ap_refused(r, MH_ERR_PERM, "the message as too big or over a "
		    "limit", name, err);
		res->outcome = TARGET_PERMFAIL;
	} else if (strcmp(r->code, "UNAVAILABLE") == 0 ||
	    strcmp(r->code, "INUSE") == 0 ||
	    strcmp(r->code, "SERVERBUG") == 0) {
		/* RFC 5530: try again later */
		ap_refused(r, MH_ERR_TEMP, "the message for now", name, err);
	} else {
		ap_refused(r, MH_ERR_PERM, r->status == AP_BAD ?
		    "the APPEND command (BAD)" : "the message", name, err);
		res->outcome = TARGET_PERMFAIL;
	}
}

/*
 * CREATE the folder after a TRYCREATE, and SUBSCRIBE it (its result does
 * not matter: a client that shows only subscribed folders shows it).
 * An ALREADYEXISTS answer is fine: another client made it meanwhile.
 * 0, or -1 with res/err set.
 */
static int
ap_create(struct ap_conn *c, const char *folder_q, const char *name,
    struct ap_result *res, struct mh_err *err)
{
	struct ap_reply	 r;
	char		*cmd;

	cmd = xasprintf("CREATE %s", folder_q);
	ap_command(c, cmd, &r);
	free(cmd);
	if (r.status == AP_LOST) {
		ap_verdict(c, &r, name, res, err);
		return -1;
	}
	if (r.status != AP_OK && strcmp(r.code, "ALREADYEXISTS") != 0) {
		ap_refused(&r, MH_ERR_TEMP, "to CREATE the folder", name, err);
		res->outcome = TARGET_TEMPFAIL;
		res->target_down = true;	/* every message needs it */
		return -1;
	}
	cmd = xasprintf("SUBSCRIBE %s", folder_q);
	ap_command(c, cmd, &r);
	free(cmd);
	if (r.status == AP_LOST) {
		ap_verdict(c, &r, name, res, err);
		return -1;
	}
	return 0;
}

/*
 * Delivers m: APPEND, and after a first TRYCREATE (*created false) the
 * CREATE and a second APPEND.  Fills res; err for anything but
 * DELIVERED.
 */
static void
ap_deliver(struct ap_conn *c, const struct ap_msg *m, const char *name,
    bool *created, struct ap_result *res, struct mh_err *err)
{
	struct ap_reply	r;

	memset(res, 0, sizeof *res);
	for (;;) {
		if (ap_append(c, m, &r, err) == -1) {
			res->outcome = TARGET_TEMPFAIL;
			return;
		}
		if (r.status != AP_NO || strcmp(r.code, "TRYCREATE") != 0 ||
		    *created)
			break;
		*created = true;
		log_info("target %s: creating folder %s", name, m->folder);
		if (ap_create(c, m->folder, name, res, err) == -1)
			return;
	}
	ap_verdict(c, &r, name, res, err);
}

/*
 * Was this message delivered already (a crash between APPEND and the
 * commit)?  EXAMINE the folder, then search for key in the Received:
 * lines, or with key NULL for message_id at exactly size bytes.
 * 1 found (id set to "uidvalidity/uid" as far as known), 0 not there
 * (also: no such folder), -1 with err when the server could not be asked.
 */
static int
ap_lookup(struct ap_conn *c, const char *folder_q, const char *key,
    const char *message_id, uint64_t size, const char *name, char *id,
    size_t idlen, struct mh_err *err)
{
	struct ap_reply	 r;
	char		*q = NULL, *cmd = NULL;
	uint32_t	 uidvalidity = 0;
	int		 rc = -1;

	id[0] = '\0';
	if ((q = imap_session_quote(key != NULL ? key : message_id)) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: the search key has "
		    "bytes IMAP cannot quote", name);
		goto out;
	}
	cmd = xasprintf("EXAMINE %s", folder_q);
	ap_command(c, cmd, &r);
	if (r.status == AP_NO && (r.code[0] == '\0' ||
	    strcmp(r.code, "NONEXISTENT") == 0 ||
	    strcmp(r.code, "TRYCREATE") == 0)) {
		rc = 0;				/* no folder, no message */
		goto out;
	}
	if (r.status != AP_OK)
		goto fail;
	uidvalidity = r.uidvalidity;
	free(cmd);
	if (key != NULL)
		cmd = xasprintf("UID SEARCH HEADER Received %s", q);
	else if (size > 0)
		cmd = xasprintf("UID SEARCH HEADER Message-ID %s LARGER %llu "
		    "SMALLER %llu", q, (unsigned long long)(size - 1),
		    (unsigned long long)(size + 1));
	else
		cmd = xasprintf("UID SEARCH HEADER Message-ID %s SMALLER 1", q);
	ap_command(c, cmd, &r);
	if (r.status != AP_OK)
		goto fail;
	if (r.nfound > 0)
		snprintf(id, idlen, "%" PRIu32 "/%" PRIu32, uidvalidity,
		    r.found);
	rc = r.nfound > 0;
	goto out;
fail:
	if (r.status == AP_LOST)
		mh_err_set(err, MH_ERR_TEMP, "target %s: %s while looking for "
		    "a message in doubt", name, ap_reason(c));
	else
		ap_refused(&r, MH_ERR_TEMP, "the search for a message in "
		    "doubt", name, err);
out:
	free(cmd);
	free(q);
	return rc;
}

/* ---- the target ------------------------------------------------------- */

struct imap_target {
	struct target		 base;		/* first (target_impl.h) */
	char			*secret;	/* the credential's; wiped */
	enum sasl_kind		 kind;
	int			 timeout_ms;
	struct ap_conn		 c;
	char			*folder_q;	/* the folder, quoted for the wire */
	char			*flags;		/* "(\Seen)" or "" */
	bool			 created;	/* CREATE tried this pass */
	bool			 batch;		/* target_set_batch */
	bool			 folder_ok;	/* an APPEND into it succeeded:
						   the next may go ahead */
	struct mh_err		 sticky;	/* a login/TLS failure, for good */
	struct target_info	 info;
};

static struct imap_target *
imap_of(struct target *tg)
{
	return (struct imap_target *)tg;
}

static const char *
tname(const struct imap_target *it)
{
	return it->base.cfg->name != NULL ? it->base.cfg->name : "?";
}

/*
 * Drops the connection without LOGOUT; an APPEND sent ahead and not
 * answered is lost (its verdict stays for target_collect).
 */
static void
imap_drop(struct imap_target *it)
{
	struct ap_reply	u;

	memset(&u, 0, sizeof u);
	snprintf(u.why, sizeof u.why, "%s", ap_reason(&it->c));
	ap_ahead_lost(&it->c, &u);
	if (it->c.imap != NULL) {
		net_cancel(it->c.imap->imap_stream);
		mailimap_free(it->c.imap);
		it->c.imap = NULL;
	}
	if (it->c.line != NULL) {
		mmap_string_free(it->c.line);
		it->c.line = NULL;
	}
	it->c.broken = false;
}

static int
imap_open(const struct cfg_target *t, const struct sasl_cred *cred,
    struct target **out, struct mh_err *err)
{
	struct imap_target	*it;
	const char		*bad = NULL;
	char			*flags, *wire, *q;

	if ((flags = ap_flag_list(t->imap.flags, t->imap.nflags, &bad)) ==
	    NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: %s is not a flag "
		    "APPEND can set", t->name, bad);
		return -1;
	}
	if ((wire = imap_utf7_encode(t->imap.folder)) == NULL ||
	    (q = imap_session_quote(wire)) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: the folder name is "
		    "not valid UTF-8 or holds control characters", t->name);
		free(wire);
		free(flags);
		return -1;
	}
	free(wire);
	it = xcalloc(1, sizeof *it);
	it->base.ops = &imap_target_ops;
	it->base.cfg = t;
	if (cred != NULL && cred->secret != NULL) {
		it->secret = xstrdup(cred->secret);
		it->kind = cred->kind;
	}
	it->folder_q = q;
	it->flags = flags;
	*out = &it->base;
	return 0;
}

static void
imap_set_timeout(struct target *tg, int timeout_ms)
{
	imap_of(tg)->timeout_ms = timeout_ms;
}

/* The capabilities as `mailhaul check` shows them. */
static void
imap_fill_info(struct imap_target *it, const struct imap_open *o)
{
	struct target_info		*ti = &it->info;
	struct mailimap_capability_data	*cd;
	struct mailimap_capability	*cap;
	clistiter			*cur;
	size_t				 len = 0;
	const char			*name;

	snprintf(ti->greeting, sizeof ti->greeting, "%s", o->greeting);
	ti->tls = o->tls;
	if (ti->tls)
		net_peer_info(it->c.imap->imap_stream, &ti->peer);
	ti->capabilities[0] = '\0';
	if (it->c.imap->imap_connection_info == NULL ||
	    (cd = it->c.imap->imap_connection_info->imap_capability) == NULL ||
	    cd->cap_list == NULL)
		return;
	for (cur = clist_begin(cd->cap_list); cur != NULL;
	    cur = clist_next(cur)) {
		cap = clist_content(cur);
		name = cap->cap_type == MAILIMAP_CAPABILITY_NAME ?
		    cap->cap_data.cap_name : cap->cap_data.cap_auth_type;
		if (name == NULL || len + strlen(name) + 7 >=
		    sizeof ti->capabilities)
			continue;
		len += (size_t)snprintf(ti->capabilities + len,
		    sizeof ti->capabilities - len, "%s%s%s", len ? " " : "",
		    cap->cap_type == MAILIMAP_CAPABILITY_NAME ? "" : "AUTH=",
		    name);
	}
}

/* Connects and logs in (for check, and before the first message). */
static int
imap_connect(struct target *tg, struct mh_err *err)
{
	struct imap_target	*it = imap_of(tg);
	const struct cfg_target	*t = tg->cfg;
	struct sasl_cred	 cred;
	struct imap_open	 o;

	if (it->sticky.cls != MH_ERR_NONE) {
		*err = it->sticky;
		return -1;
	}
	if (it->c.imap != NULL)
		return 0;
	if (t->ep.user == NULL) {	/* config requires it */
		mh_err_set(err, MH_ERR_LOCAL, "target %s has no user",
		    tname(it));
		return -1;
	}
	endpoint_cred(&t->ep, it->secret != NULL ? it->secret : "", &cred);
	cred.kind = it->kind;
	memset(&o, 0, sizeof o);
	if (imap_session_open(&t->ep, it->timeout_ms, &cred, &o, &it->c.imap,
	    err) == -1) {
		mh_err_prefix(err, "target %s", tname(it));
		mh_err_scope(err, MH_SCOPE_TARGET);
		/* a refused login or a bad certificate stays so this pass */
		if (err->cls == MH_ERR_AUTH || err->cls == MH_ERR_TLS)
			it->sticky = *err;
		return -1;
	}
	it->c.line = mmap_string_new("");
	it->c.tagno = 0;
	it->c.broken = false;
	it->c.bye[0] = '\0';
	imap_fill_info(it, &o);
	return 0;
}

/* check: EXAMINE the folder; a missing one is created on delivery. */
static int
imap_probe(struct target *tg, char *note, size_t size, struct mh_err *err)
{
	struct imap_target	*it = imap_of(tg);
	struct ap_reply		 r;
	char			*cmd;

	if (imap_connect(tg, err) == -1)
		return -1;
	cmd = xasprintf("EXAMINE %s", it->folder_q);
	ap_command(&it->c, cmd, &r);
	free(cmd);
	if (r.status == AP_LOST) {
		mh_err_set(err, MH_ERR_TEMP, "target %s: %s at EXAMINE",
		    tname(it), ap_reason(&it->c));
		return -1;
	}
	if (r.status == AP_OK)
		snprintf(note, size, "folder %s: selectable",
		    tg->cfg->imap.folder);
	else if (r.code[0] == '\0' || strcmp(r.code, "NONEXISTENT") == 0 ||
	    strcmp(r.code, "TRYCREATE") == 0)
		snprintf(note, size, "folder %s does not exist yet; the first "
		    "delivery creates it", tg->cfg->imap.folder);
	else {
		ap_refused(&r, MH_ERR_PERM, "EXAMINE of its folder",
		    tname(it), err);
		return -1;
	}
	return 0;
}

static void
imap_get_info(struct target *tg, struct target_info *info)
{
	*info = imap_of(tg)->info;
}

/* The spool message m as this target sends it. */
static void
imap_msg(const struct imap_target *it, const struct target_msg *m,
    struct ap_msg *am)
{
	memset(am, 0, sizeof *am);
	am->folder = it->folder_q;
	am->flags = it->flags;
	am->date = m->date;
	am->received = it->base.cfg->received ? m->received : NULL;
	am->fd = m->fd;
}

/*
 * Is m in the folder already?  By the token of its source key in the
 * Received: line we prepend; without one (received = no), by its
 * Message-ID at exactly the size it had on the wire.  A message with
 * neither cannot be found: not there (at most a duplicate, never a loss).
 */
static int
imap_seen(struct target *tg, const struct target_msg *m, bool *found,
    struct mh_err *err)
{
	struct imap_target	*it = imap_of(tg);
	struct ap_msg		 am;
	char			 token[MESSAGE_TOKEN_SIZE], id[32];
	const char		*key = NULL;
	uint64_t		 len = 0;
	int			 r;

	*found = false;
	imap_msg(it, m, &am);
	if (am.received == NULL && m->message_id == NULL)
		return 0;
	if (imap_connect(tg, err) == -1)
		return -1;
	/* the answers due first (a message in doubt in the engine's next
	   batch is asked about while the batch before is still due): they
	   are kept for imap_collect */
	ap_drain(&it->c);
	if (it->c.broken) {
		mh_err_set(err, MH_ERR_TEMP, "target %s: %s while reading the "
		    "answers to APPENDs sent ahead", tname(it),
		    ap_reason(&it->c));
		mh_err_scope(err, MH_SCOPE_TARGET);
		imap_drop(it);
		return -1;
	}
	if (am.received != NULL && m->source_key != NULL) {
		message_key_token(m->source_key, token);
		key = token;
	} else if (m->message_id == NULL)
		return 0;
	else if (ap_literal_len(&am, &len, err) == -1)
		return -1;
	r = ap_lookup(&it->c, it->folder_q, key, m->message_id, len,
	    tname(it), id, sizeof id, err);
	if (it->c.broken)
		imap_drop(it);
	if (r == -1) {
		mh_err_scope(err, MH_SCOPE_TARGET);
		return -1;
	}
	*found = r == 1;
	if (*found)
		log_info("target %s: the message is in %s already (UID %s)",
		    tname(it), it->base.cfg->imap.folder, id);
	return 0;
}

/* The outcome of a verdict r: res and err's scope as target.h says. */
static enum target_outcome
imap_outcome(struct imap_target *it, const struct ap_result *r,
    struct target_result *res, struct mh_err *err)
{
	const char	*folder = it->base.cfg->imap.folder;

	if (r->outcome == TARGET_DELIVERED) {
		it->folder_ok = true;
		target_result_add(res, folder);
		log_debug("target %s: appended to %s%s%s", tname(it), folder,
		    r->id[0] != '\0' ? " as " : "", r->id);
		return TARGET_DELIVERED;
	}
	mh_err_scope(err, r->target_down ? MH_SCOPE_TARGET : MH_SCOPE_MESSAGE);
	return r->outcome;
}

/*
 * Sends m ahead when that is allowed (batch mode, the folder known to
 * exist, a non-synchronizing literal, room for one more; past
 * AP_AHEAD_BYTES unanswered, the answers due are read first): 1 sent
 * (PENDING), 0 not (deliver it alone: am->len keeps the length counted
 * here), -1 failed (*r and err set).
 */
static int
imap_ahead(struct imap_target *it, struct ap_msg *am, struct ap_result *r,
    struct mh_err *err)
{
	struct ap_reply	 lost;
	uint64_t	 len;
	int		 sent;

	if (!it->batch || !it->folder_ok || it->c.nahead == AP_AHEAD_MAX)
		return 0;
	if (ap_literal_len(am, &len, err) == -1)
		goto local;
	am->len = len;
	if (!ap_nonsync(&it->c, len))
		return 0;
	if (it->c.nahead > 0 && ap_unanswered(&it->c) + len >
	    AP_AHEAD_BYTES) {
		ap_drain(&it->c);
		if (it->c.broken) {
			ap_lost_unsent(&it->c, tname(it), r, err);
			return -1;
		}
	}
	if ((sent = ap_append_ahead(&it->c, am, len, err)) == 0)
		return 1;
	if (sent == -1)
		goto local;
	memset(&lost, 0, sizeof lost);	/* as ap_deliver: the stream broke */
	ap_verdict(&it->c, &lost, tname(it), r, err);
	return -1;
local:
	r->outcome = TARGET_TEMPFAIL;
	mh_err_prefix(err, "target %s", tname(it));
	return -1;
}

static enum target_outcome
imap_deliver(struct target *tg, const struct target_msg *m,
    struct target_result *res, struct mh_err *err)
{
	struct imap_target	*it = imap_of(tg);
	const char		*folder = tg->cfg->imap.folder;
	struct ap_msg		 am;
	struct ap_result	 r;
	int			 ahead;

	if (target_msg_done(m, folder)) {
		target_result_add(res, folder);
		return TARGET_DELIVERED;
	}
	if (imap_connect(tg, err) == -1)
		return TARGET_TEMPFAIL;
	imap_msg(it, m, &am);
	memset(&r, 0, sizeof r);
	if ((ahead = imap_ahead(it, &am, &r, err)) == 1)
		return TARGET_PENDING;
	if (ahead == 0) {
		/* alone: the replies still due first, then this one's */
		ap_drain(&it->c);
		if (it->c.broken)
			ap_lost_unsent(&it->c, tname(it), &r, err);
		else
			ap_deliver(&it->c, &am, tname(it), &it->created, &r,
			    err);
	}
	if (it->c.broken)
		imap_drop(it);
	return imap_outcome(it, &r, res, err);
}

/*
 * The verdict of the oldest APPEND sent ahead.  A NO [TRYCREATE] means
 * the folder went away since: temporary, and the next APPEND goes alone
 * (and creates it).
 */
static enum target_outcome
imap_collect(struct target *tg, struct target_result *res,
    struct mh_err *err)
{
	struct imap_target	*it = imap_of(tg);
	struct ap_reply		 rep;
	struct ap_result	 r;

	if (ap_collect(&it->c, &rep) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "target %s: no APPEND was sent "
		    "ahead", tname(it));
		return TARGET_TEMPFAIL;
	}
	if (it->c.broken)
		imap_drop(it);
	memset(&r, 0, sizeof r);
	if (rep.status == AP_NO && strcmp(rep.code, "TRYCREATE") == 0) {
		it->folder_ok = false;
		it->created = false;
		ap_refused(&rep, MH_ERR_TEMP, "the message: the folder is "
		    "gone; it is made again for the next message", tname(it),
		    err);
		r.outcome = TARGET_TEMPFAIL;
	} else
		ap_verdict(&it->c, &rep, tname(it), &r, err);
	return imap_outcome(it, &r, res, err);
}

static void
imap_set_batch(struct target *tg, bool on)
{
	imap_of(tg)->batch = on;
}

static void
imap_close(struct target *tg)
{
	struct imap_target	*it = imap_of(tg);

	/* every APPEND was answered: LOGOUT commits nothing, not waited */
	if (it->c.imap != NULL && !it->c.broken) {
		imap_session_logout(it->c.imap);
		it->c.imap = NULL;
	}
	imap_drop(it);
	secret_free(it->secret);
	free(it->folder_q);
	free(it->flags);
	free(it);
}

const struct target_ops imap_target_ops = {
	.name = "imap",
	.open = imap_open,
	.set_timeout = imap_set_timeout,
	.connect = imap_connect,
	.get_info = imap_get_info,
	.seen = imap_seen,
	.probe = imap_probe,
	.deliver = imap_deliver,
	.close = imap_close,
	.set_batch = imap_set_batch,
	.collect = imap_collect,
};
