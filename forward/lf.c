/* lf.c -- see lf.h */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "forward/lf.h"

#define LF_CHUNK	65536

void
lf_open(struct lf_reader *r, const char *received, int fd)
{
	memset(r, 0, sizeof *r);
	r->received = received;
	r->rlen = received != NULL ? strlen(received) : 0;
	r->fd = fd;
}

/*
 * Converts in[0..n) into out (room for n + 1 bytes: a held CR may come
 * out first); returns the bytes written.  Spans without a CR are copied
 * whole.
 */
static size_t
convert(struct lf_reader *r, const unsigned char *in, size_t n,
    unsigned char *out)
{
	const unsigned char	*cr;
	size_t			 i = 0, o = 0, end;

	while (i < n) {
		if (r->cr) {
			r->cr = false;
			if (in[i] != '\n')
				out[o++] = '\r';
		}
		cr = memchr(in + i, '\r', n - i);
		end = cr != NULL ? (size_t)(cr - in) : n;
		memcpy(out + o, in + i, end - i);
		o += end - i;
		i = end;
		if (cr != NULL) {	/* held: dropped before a LF */
			r->cr = true;
			i++;
		}
	}
	return o;
}

/*
 * To CRLF: in[0..n) into out (room for 2n); returns the bytes written.
 * Spans without a LF are copied whole.
 */
static size_t
convert_crlf(struct lf_reader *r, const unsigned char *in, size_t n,
    unsigned char *out)
{
	const unsigned char	*nl;
	size_t			 i = 0, o = 0, end;

	while (i < n) {
		nl = memchr(in + i, '\n', n - i);
		end = nl != NULL ? (size_t)(nl - in) : n;
		if (end > i) {
			memcpy(out + o, in + i, end - i);
			o += end - i;
			r->cr = in[end - 1] == '\r';
		}
		if (nl == NULL)
			break;
		if (!r->cr)
			out[o++] = '\r';
		out[o++] = '\n';
		r->cr = false;
		i = end + 1;
	}
	return o;
}

/* Up to max raw bytes of received, then of the file; 0 at the end. */
static ssize_t
raw_read(struct lf_reader *r, unsigned char *buf, size_t max)
{
	ssize_t	n;

	if (r->rpos < r->rlen) {
		n = (ssize_t)(r->rlen - r->rpos < max ? r->rlen - r->rpos :
		    max);
		memcpy(buf, r->received + r->rpos, (size_t)n);
		r->rpos += (size_t)n;
		return n;
	}
	do
		n = pread(r->fd, buf, max, r->off);
	while (n == -1 && errno == EINTR);
	if (n > 0)
		r->off += n;
	return n;
}

ssize_t
lf_read(struct lf_reader *r, void *buf, size_t cap)
{
	unsigned char	raw[LF_CHUNK], *out = buf;
	size_t		 o = 0, max;
	ssize_t		 n;

	if (cap < 2) {
		errno = EINVAL;
		return -1;
	}
	max = r->crlf ? cap / 2 : cap - 1;	/* what one raw byte may become */
	if (max > sizeof raw)
		max = sizeof raw;
	while (o == 0 && !r->eof) {
		if ((n = raw_read(r, raw, max)) == -1)
			return -1;
		if (n == 0) {
			r->eof = true;
			if (r->cr && !r->crlf) {	/* a CR at the very end */
				r->cr = false;
				out[o++] = '\r';
			}
			break;
		}
		o = r->crlf ? convert_crlf(r, raw, (size_t)n, out) :
		    convert(r, raw, (size_t)n, out);
	}
	return (ssize_t)o;
}

void
lf_open_crlf(struct lf_reader *r, const char *received, int fd)
{
	lf_open(r, received, fd);
	r->crlf = true;
}

/* Reads r to its end, counting. */
static int
size_of(struct lf_reader *r, uint64_t *size)
{
	unsigned char	buf[LF_CHUNK];
	ssize_t		n;

	*size = 0;
	while ((n = lf_read(r, buf, sizeof buf)) > 0)
		*size += (uint64_t)n;
	return n == -1 ? -1 : 0;
}

int
lf_size(const char *received, int fd, uint64_t *size)
{
	struct lf_reader	r;

	lf_open(&r, received, fd);
	return size_of(&r, size);
}

int
lf_size_crlf(const char *received, int fd, uint64_t *size)
{
	struct lf_reader	r;

	lf_open_crlf(&r, received, fd);
	return size_of(&r, size);
}
