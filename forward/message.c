/*
 * message.c -- see message.h.  One pass over the bytes: a sha256 of all of
 * them, a sha256 of the header, and the two header fields mailhaul needs.
 *
 * The header ends at the first empty line ("\r\n" or "\n" at the start of
 * a line) or at the end of the data.  The header digest covers the header
 * lines with their line ends but not the empty separator line, so that a
 * TOP n 0 reply with or without the blank line gives the same digest.
 * Fields are unfolded (the line end before a space or tab is dropped, the
 * white space kept); each field is kept in a fixed buffer and cut when it
 * is longer, so memory stays bounded whatever the input.
 */
#define _XOPEN_SOURCE 700	/* strptime */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "forward/message.h"
#include "net/net.h"

#define FIELD_MAX	1024	/* an unfolded field beyond this is cut */
#define HBUF_MAX	4096	/* header bytes batched for the digest */
#define READ_CHUNK	65536

struct scan {
	struct message_info	*info;
	struct net_sha256	*all;
	struct net_sha256	*hdr;
	bool			 in_header;
	bool			 at_bol;	/* at the start of a header line */
	bool			 pending_cr;	/* a CR whose meaning is unknown */
	bool			 got_mid;
	bool			 got_date;
	char			 field[FIELD_MAX];
	size_t			 flen;
	unsigned char		 hbuf[HBUF_MAX];
	size_t			 hlen;
};

static void
scan_init(struct scan *sc, struct message_info *info)
{
	memset(info, 0, sizeof *info);
	memset(sc, 0, sizeof *sc);
	sc->info = info;
	sc->all = net_sha256_new();
	sc->hdr = net_sha256_new();
	sc->in_header = true;
	sc->at_bol = true;
}

static void
hdr_digest(struct scan *sc, unsigned char c)
{
	if (sc->hlen == sizeof sc->hbuf) {
		net_sha256_update(sc->hdr, sc->hbuf, sc->hlen);
		sc->hlen = 0;
	}
	sc->hbuf[sc->hlen++] = c;
}

static bool
is_wsp(int c)
{
	return c == ' ' || c == '\t';
}

/* Copies s[0..n) into out (size bytes), control bytes as spaces. */
static void
copy_clean(char *out, size_t size, const char *s, size_t n)
{
	size_t	i;

	if (n > size - 1)
		n = size - 1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	out[n] = '\0';
}

/* Finds "<...>" in v[0..n); returns its start and sets *len, or NULL. */
static const char *
find_angle(const char *v, size_t n, size_t *len)
{
	const char	*lt, *gt;

	if ((lt = memchr(v, '<', n)) == NULL)
		return NULL;
	if ((gt = memchr(lt, '>', n - (size_t)(lt - v))) == NULL)
		return NULL;
	*len = (size_t)(gt - lt) + 1;
	return lt;
}

/*
 * An RFC 5322 date ("[Day, ]DD Mon YYYY HH:MM[:SS] +hhmm", comments
 * after it ignored) as a time_t; 0 when it is not one.
 */
static time_t
parse_date(const char *v, size_t n)
{
	static const char *const fmts[] = { "%a, %d %b %Y %H:%M:%S %z",
	    "%d %b %Y %H:%M:%S %z", "%a, %d %b %Y %H:%M %z",
	    "%d %b %Y %H:%M %z", NULL };
	char		 buf[128];
	struct tm	 tm;
	const char	*end;
	time_t		 t;
	long		 off;
	size_t		 i;

	if (n >= sizeof buf)
		return 0;
	memcpy(buf, v, n);
	buf[n] = '\0';
	for (i = 0; fmts[i] != NULL; i++) {
		memset(&tm, 0, sizeof tm);
		end = strptime(buf, fmts[i], &tm);
		if (end == NULL || (*end != '\0' && *end != ' ' &&
		    *end != '('))
			continue;
		off = tm.tm_gmtoff;	/* timegm() resets it */
		t = timegm(&tm);
		if (t == (time_t)-1)
			return 0;
		return t - off;
	}
	return 0;
}

/* A complete (unfolded) field is in sc->field: keep what we need. */
static void
field_done(struct scan *sc)
{
	struct message_info	*info = sc->info;
	const char		*f = sc->field, *colon, *v, *a;
	size_t			 n = sc->flen, nlen, vlen, alen;

	sc->flen = 0;
	if (n == 0 || (colon = memchr(f, ':', n)) == NULL)
		return;
	nlen = (size_t)(colon - f);
	while (nlen > 0 && is_wsp((unsigned char)f[nlen - 1]))
		nlen--;
	v = colon + 1;
	vlen = n - (size_t)(v - f);
	while (vlen > 0 && is_wsp((unsigned char)*v)) {
		v++;
		vlen--;
	}
	while (vlen > 0 && is_wsp((unsigned char)v[vlen - 1]))
		vlen--;

	if (nlen == 10 && strncasecmp(f, "Message-ID", 10) == 0 &&
	    !sc->got_mid) {
		sc->got_mid = true;
		if ((a = find_angle(v, vlen, &alen)) != NULL)
			copy_clean(info->message_id, sizeof info->message_id,
			    a, alen);
		else if (vlen > 0 && memchr(v, ' ', vlen) == NULL &&
		    memchr(v, '\t', vlen) == NULL &&
		    vlen + 2 < sizeof info->message_id) {
			info->message_id[0] = '<';
			copy_clean(info->message_id + 1,
			    sizeof info->message_id - 2, v, vlen);
			strcat(info->message_id, ">");
		}
	} else if (nlen == 4 && strncasecmp(f, "Date", 4) == 0 &&
	    !sc->got_date) {
		sc->got_date = true;
		info->date = parse_date(v, vlen);
	} else if (nlen == 11 && strncasecmp(f, "Return-Path", 11) == 0 &&
	    !info->has_return_path) {
		info->has_return_path = true;
		if ((a = find_angle(v, vlen, &alen)) != NULL)
			copy_clean(info->return_path, sizeof info->return_path,
			    a + 1, alen - 2);
		else
			copy_clean(info->return_path, sizeof info->return_path,
			    v, vlen);
	}
}

static void
field_add(struct scan *sc, char c)
{
	if (sc->flen < sizeof sc->field)
		sc->field[sc->flen++] = c;
}

/* One content byte of a header line (never CR-before-LF, never LF). */
static void
hdr_content(struct scan *sc, unsigned char c)
{
	if (sc->at_bol) {
		if (!is_wsp(c))
			field_done(sc);
		sc->at_bol = false;
	}
	field_add(sc, (char)c);
	hdr_digest(sc, c);
}

/* A line end in the header: "\r\n" (crlf) or "\n". */
static void
hdr_eol(struct scan *sc, bool crlf)
{
	if (sc->at_bol) {		/* the empty line: end of header */
		field_done(sc);
		sc->in_header = false;
		return;
	}
	if (crlf)
		hdr_digest(sc, '\r');
	hdr_digest(sc, '\n');
	sc->at_bol = true;
}

/* Header bytes from p; returns how many were used (the rest is body). */
static size_t
hdr_feed(struct scan *sc, const unsigned char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len && sc->in_header; i++) {
		unsigned char c = p[i];

		if (sc->pending_cr) {
			sc->pending_cr = false;
			if (c == '\n') {
				hdr_eol(sc, true);
				continue;
			}
			hdr_content(sc, '\r');
		}
		if (c == '\r')
			sc->pending_cr = true;
		else if (c == '\n')
			hdr_eol(sc, false);
		else
			hdr_content(sc, c);
	}
	return i;
}

/* Whether p[0..len) has a byte with the high bit set: 8 at a time. */
static bool
has_8bit(const unsigned char *p, size_t len)
{
	uint64_t	w, acc = 0;
	size_t		i = 0;

	for (; i + 64 <= len; i += 64) {
		for (size_t j = 0; j < 64; j += 8) {
			memcpy(&w, p + i + j, sizeof w);
			acc |= w;
		}
		if (acc & 0x8080808080808080ull)
			return true;
	}
	for (; i < len; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

static void
scan_feed(struct scan *sc, const void *buf, size_t len)
{
	const unsigned char	*p = buf;

	net_sha256_update(sc->all, p, len);
	sc->info->size += len;
	if (!sc->info->eightbit && has_8bit(p, len))
		sc->info->eightbit = true;
	if (sc->in_header)
		hdr_feed(sc, p, len);
}

static void
scan_finish(struct scan *sc)
{
	if (sc->in_header) {
		if (sc->pending_cr)
			hdr_content(sc, '\r');
		field_done(sc);
	}
	if (sc->hlen > 0)
		net_sha256_update(sc->hdr, sc->hbuf, sc->hlen);
	net_sha256_final(sc->all, sc->info->digest);
	net_sha256_final(sc->hdr, sc->info->header_digest);
	sc->all = sc->hdr = NULL;
}

int
message_scan(int fd, struct message_info *info, struct mh_err *err)
{
	struct scan	 sc;
	unsigned char	*buf = NULL;
	ssize_t		 n;
	int		 rc = -1;

	scan_init(&sc, info);
	buf = xmalloc(READ_CHUNK);
	if (lseek(fd, 0, SEEK_SET) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot rewind the spool file: "
		    "%s", strerror(errno));
		goto out;
	}
	for (;;) {
		n = read(fd, buf, READ_CHUNK);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			mh_err_set(err, MH_ERR_LOCAL, "cannot read the spool "
			    "file: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		scan_feed(&sc, buf, (size_t)n);
	}
	rc = 0;
out:
	scan_finish(&sc);
	free(buf);
	return rc;
}

void
message_scan_buf(const void *buf, size_t len, struct message_info *info)
{
	struct scan	sc;

	scan_init(&sc, info);
	scan_feed(&sc, buf, len);
	scan_finish(&sc);
}

/* s with every control byte, space run and non-ASCII byte made safe. */
static char *
sanitise(const char *s, const char *dflt)
{
	char	*out, *o;

	if (s == NULL || *s == '\0')
		s = dflt;
	out = o = xmalloc(strlen(s) + 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			c = '?';
		*o++ = (char)c;
	}
	*o = '\0';
	return out;
}

/* Like sanitise, and no white space or ( ) < > ; at all: a single token. */
static char *
sanitise_token(const char *s, const char *dflt)
{
	char	*out = sanitise(s, dflt), *p;

	for (p = out; *p != '\0'; p++)
		if (isspace((unsigned char)*p) || strchr("()<>;\\\"", *p))
			*p = '_';
	if (p - out > 200)		/* a line stays far below 998 */
		out[200] = '\0';
	return out;
}

struct fold {
	char	*buf;
	size_t	 len, cap, col;
};

static void
fold_raw(struct fold *f, const char *s, size_t n)
{
	if (f->len + n + 1 > f->cap) {
		while (f->len + n + 1 > f->cap)
			f->cap = f->cap ? f->cap * 2 : 256;
		f->buf = xrealloc(f->buf, f->cap);
	}
	memcpy(f->buf + f->len, s, n);
	f->len += n;
	f->buf[f->len] = '\0';
}

/* Adds " word" (or "word" at the start), folding before it past 78. */
static void
fold_word(struct fold *f, const char *w)
{
	size_t	n = strlen(w);

	if (f->col > 0 && f->col + 1 + n > 78) {
		fold_raw(f, "\r\n\t", 3);
		f->col = 8;
	} else if (f->col > 0) {
		fold_raw(f, " ", 1);
		f->col++;
	}
	fold_raw(f, w, n);
	f->col += n;
}

/* RFC 5322 date in local time, independent of the locale. */
static void
rfc5322_date(time_t when, char *buf, size_t size)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed",
	    "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm	tm;
	long		off;

	if (localtime_r(&when, &tm) == NULL || tm.tm_wday < 0 ||
	    tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11) {
		snprintf(buf, size, "Thu, 01 Jan 1970 00:00:00 +0000");
		return;
	}
	off = tm.tm_gmtoff / 60;
	snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

void
message_key_token(const char *source_key, char out[MESSAGE_TOKEN_SIZE])
{
	struct net_sha256	*h = net_sha256_new();
	char			 hex[65];

	net_sha256_update(h, source_key, strlen(source_key));
	net_sha256_final(h, hex);
	snprintf(out, MESSAGE_TOKEN_SIZE, "mh-%.32s", hex);
}

char *
message_received(const char *account, const char *protocol,
    const char *host, const char *uid, const char *source_key,
    const char *rcpt, time_t when)
{
	struct fold	 f = { NULL, 0, 0, 0 };
	char		 date[64], myhost[256], *a, *p, *h, *u, *r, *me, *w;
	char		 token[MESSAGE_TOKEN_SIZE + 2];

	if (gethostname(myhost, sizeof myhost) == -1)
		strcpy(myhost, "localhost");
	myhost[sizeof myhost - 1] = '\0';
	a = sanitise_token(account, "unknown");
	p = sanitise_token(protocol, "unknown");
	h = sanitise_token(host, "unknown");
	u = sanitise_token(uid, "unknown");
	r = rcpt != NULL ? sanitise_token(rcpt, "") : NULL;
	me = sanitise_token(myhost, "localhost");
	rfc5322_date(when, date, sizeof date);

	fold_word(&f, "Received:");
	fold_word(&f, "from");
	fold_word(&f, h);
	w = xasprintf("(account %s)", a);
	fold_word(&f, w);
	free(w);
	fold_word(&f, "by");
	fold_word(&f, me);
	fold_word(&f, "(mailhaul)");
	fold_word(&f, "with");
	fold_word(&f, p);
	fold_word(&f, "id");
	fold_word(&f, u);
	if (source_key != NULL) {
		token[0] = '(';
		message_key_token(source_key, token + 1);
		strcat(token, ")");
		fold_word(&f, token);
	}
	if (r != NULL && *r != '\0') {
		fold_word(&f, "for");
		w = xasprintf("<%s>;", r);
		fold_word(&f, w);
		free(w);
	} else {
		/* the ';' belongs to the last word before the date */
		fold_raw(&f, ";", 1);
		f.col++;
	}
	/* the date as one unit: "Sat, 28 Nov 2026 22:40:59 +0000" */
	fold_word(&f, date);
	fold_raw(&f, "\r\n", 2);
	free(a);
	free(p);
	free(h);
	free(u);
	free(r);
	free(me);
	return f.buf;
}
