/* imap_utf7.c -- modified UTF-7 mailbox names; see imap_utf7.h */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/imap_utf7.h"
#include "util.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int	b64_value(char c);
static size_t	put_utf8(char *out, uint32_t cp);
static int	get_utf8(const unsigned char **p, uint32_t *cp);

static int
b64_value(char c)
{
	const char *p;

	if (c == '\0' || (p = strchr(b64, c)) == NULL)
		return -1;
	return (int)(p - b64);
}

static size_t
put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

char *
imap_utf7_decode(const char *name)
{
	size_t		 len = strlen(name), o = 0;
	char		*out = xmalloc(len * 3 + 1);
	const char	*p = name;

	while (*p != '\0') {
		uint32_t	bits = 0, hi = 0;
		int		nbits = 0, v;

		if (*p != '&') {
			if ((unsigned char)*p < 0x20 ||
			    (unsigned char)*p > 0x7e)
				goto bad;
			out[o++] = *p++;
			continue;
		}
		p++;
		if (*p == '-') {
			out[o++] = '&';
			p++;
			continue;
		}
		for (; *p != '-'; p++) {
			if ((v = b64_value(*p)) == -1)
				goto bad;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t u = (bits >> nbits) & 0xffff;
			if (hi != 0) {
				if (u < 0xdc00 || u > 0xdfff)
					goto bad;
				o += put_utf8(out + o, 0x10000 +
				    ((hi - 0xd800) << 10) + (u - 0xdc00));
				hi = 0;
			} else if (u >= 0xd800 && u <= 0xdbff)
				hi = u;
			else if (u >= 0xdc00 && u <= 0xdfff)
				goto bad;
			else
				o += put_utf8(out + o, u);
		}
		if (hi != 0 || nbits >= 6 ||
		    (bits & ((1u << nbits) - 1)) != 0)
			goto bad;
		p++;		/* '-' */
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return xstrdup(name);
}

/* Reads one UTF-8 code point; -1 on an invalid sequence. */
static int
get_utf8(const unsigned char **pp, uint32_t *cp)
{
	const unsigned char	*p = *pp;
	uint32_t		 c = *p, min;
	int			 n;

	if (c < 0x80) {
		n = 0;
		min = 0;
	} else if ((c & 0xe0) == 0xc0) {
		n = 1;
		c &= 0x1f;
		min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 2;
		c &= 0x0f;
		min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 3;
		c &= 0x07;
		min = 0x10000;
	} else
		return -1;
	for (int i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return -1;
	*cp = c;
	*pp = p + n + 1;
	return 0;
}

char *
imap_utf7_encode(const char *name)
{
	const unsigned char	*p = (const unsigned char *)name;
	size_t			 len = strlen(name), o = 0;
	char			*out = xmalloc(len * 5 + 8);

	while (*p != '\0') {
		uint32_t	bits = 0;
		int		nbits = 0;

		if (*p >= 0x20 && *p <= 0x7e) {
			out[o++] = (char)*p;
			if (*p++ == '&')
				out[o++] = '-';
			continue;
		}
		out[o++] = '&';
		while (*p != '\0' && (*p < 0x20 || *p > 0x7e)) {
			uint32_t	cp, units[2];
			int		nu = 1;

			if (get_utf8(&p, &cp) == -1) {
				free(out);
				return NULL;
			}
			if (cp >= 0x10000) {
				cp -= 0x10000;
				units[0] = 0xd800 + (cp >> 10);
				units[1] = 0xdc00 + (cp & 0x3ff);
				nu = 2;
			} else
				units[0] = cp;
			for (int i = 0; i < nu; i++) {
				bits = (bits << 16) | units[i];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					out[o++] = b64[(bits >> nbits) & 0x3f];
				}
			}
		}
		if (nbits > 0)
			out[o++] = b64[(bits << (6 - nbits)) & 0x3f];
		out[o++] = '-';
	}
	out[o] = '\0';
	return out;
}

char *
imap_wire_name(const char *canon, bool utf8)
{
	return utf8 ? imap_utf7_decode(canon) : xstrdup(canon);
}

char *
imap_canon_name(const char *wire, bool utf8)
{
	for (const char *p = wire; utf8 && *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return imap_utf7_encode(wire);
	return xstrdup(wire);
}
