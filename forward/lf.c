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
 * out first); returns the bytes written.
 */
static size_t
convert(struct lf_reader *r, const unsigned char *in, size_t n,
    unsigned char *out)
{
	size_t	i, o = 0;

	for (i = 0; i < n; i++) {
		if (r->cr) {
			r->cr = false;
			if (in[i] != '\n')
				out[o++] = '\r';
		}
		if (in[i] == '\r')
			r->cr = true;
		else
			out[o++] = in[i];
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
	max = cap - 1 < sizeof raw ? cap - 1 : sizeof raw;
	while (o == 0 && !r->eof) {
		if ((n = raw_read(r, raw, max)) == -1)
			return -1;
		if (n == 0) {
			r->eof = true;
			if (r->cr) {		/* a CR at the very end */
				r->cr = false;
				out[o++] = '\r';
			}
			break;
		}
		o = convert(r, raw, (size_t)n, out);
	}
	return (ssize_t)o;
}

int
lf_size(const char *received, int fd, uint64_t *size)
{
	struct lf_reader	r;
	unsigned char		buf[LF_CHUNK];
	ssize_t			n;

	*size = 0;
	lf_open(&r, received, fd);
	while ((n = lf_read(&r, buf, sizeof buf)) > 0)
		*size += (uint64_t)n;
	return n == -1 ? -1 : 0;
}
