/* value.c -- see value.h */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "config/value.h"

#define MAX_DURATION	(100LL * 365 * 86400)	/* 100 years, exclusive */

/*
 * Reads the digits at *sp into *out and advances *sp.  At least one digit;
 * -1 on overflow of uint64_t.
 */
static int
read_number(const char **sp, uint64_t *out)
{
	const char	*s = *sp;
	uint64_t	 n = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*sp = s;
	*out = n;
	return 0;
}

static int
unit_seconds(char c, int64_t *secs, int *rank)
{
	switch (c) {
	case 'w':	*secs = 7 * 86400;	*rank = 5;	return 0;
	case 'd':	*secs = 86400;		*rank = 4;	return 0;
	case 'h':	*secs = 3600;		*rank = 3;	return 0;
	case 'm':	*secs = 60;		*rank = 2;	return 0;
	case 's':	*secs = 1;		*rank = 1;	return 0;
	}
	return -1;
}

int
value_duration(const char *s, int64_t *out)
{
	uint64_t	 n;
	int64_t		 total = 0, mult;
	int		 rank, last_rank = 6, parts = 0;

	if (s == NULL)
		return -1;
	while (isspace((unsigned char)*s))
		s++;
	while (*s != '\0') {
		if (read_number(&s, &n) == -1)
			return -1;
		if (*s == '\0' || isspace((unsigned char)*s)) {
			/* A bare number: seconds, only as the whole value. */
			if (parts > 0)
				return -1;
			mult = 1;
			rank = 0;
		} else {
			if (unit_seconds(*s, &mult, &rank) == -1)
				return -1;
			/* Units go from large to small, each at most once. */
			if (rank >= last_rank)
				return -1;
			s++;
		}
		if (n >= (uint64_t)MAX_DURATION / (uint64_t)mult + 1)
			return -1;
		total += (int64_t)n * mult;
		if (total >= MAX_DURATION)
			return -1;
		last_rank = rank;
		parts++;
		while (isspace((unsigned char)*s))
			s++;
	}
	if (parts == 0 || total <= 0)
		return -1;
	*out = total;
	return 0;
}

int
value_size(const char *s, uint64_t *out)
{
	uint64_t	n, mult = 1;

	if (s == NULL)
		return -1;
	if (read_number(&s, &n) == -1)
		return -1;
	while (*s == ' ')
		s++;
	switch (*s) {
	case 'k': case 'K':	mult = 1ULL << 10;	s++;	break;
	case 'm': case 'M':	mult = 1ULL << 20;	s++;	break;
	case 'g': case 'G':	mult = 1ULL << 30;	s++;	break;
	}
	if (*s == 'b' || *s == 'B')
		s++;
	if (*s != '\0')
		return -1;
	if (n > UINT64_MAX / mult)
		return -1;
	*out = n * mult;
	return 0;
}

int
value_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t	i;

	if (s == NULL)
		return -1;
	for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

int
value_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t	n;

	if (s == NULL || read_number(&s, &n) == -1 || *s != '\0')
		return -1;
	if (n < min || n > max)
		return -1;
	*out = n;
	return 0;
}

int
value_port(const char *s, unsigned *out)
{
	uint64_t	n;

	if (value_uint(s, 1, 65535, &n) == -1)
		return -1;
	*out = (unsigned)n;
	return 0;
}

int
value_fingerprint(const char *s, char out[96])
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char	 b[32];
	size_t		 len, i, step;
	int		 hi, lo;

	if (s == NULL)
		return -1;
	len = strlen(s);
	if (len == 64)
		step = 2;		/* "AABB..." */
	else if (len == 95)
		step = 3;		/* "AA:BB:..." */
	else
		return -1;
	for (i = 0; i < 32; i++) {
		const char *p = s + i * step;

		if (!isxdigit((unsigned char)p[0]) ||
		    !isxdigit((unsigned char)p[1]))
			return -1;
		if (step == 3 && i < 31 && p[2] != ':')
			return -1;
		hi = isdigit((unsigned char)p[0]) ? p[0] - '0' :
		    toupper((unsigned char)p[0]) - 'A' + 10;
		lo = isdigit((unsigned char)p[1]) ? p[1] - '0' :
		    toupper((unsigned char)p[1]) - 'A' + 10;
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	for (i = 0; i < 32; i++) {
		out[i * 3] = hex[b[i] >> 4];
		out[i * 3 + 1] = hex[b[i] & 0xf];
		out[i * 3 + 2] = i < 31 ? ':' : '\0';
	}
	return 0;
}

int
value_address(const char *s)
{
	const char	*at = NULL, *p;
	size_t		 len;

	if (s == NULL)
		return -1;
	len = strlen(s);
	if (len == 0 || len > 254)
		return -1;
	for (p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f || c == ' ' || c == '<' || c == '>')
			return -1;
		if (c == '@') {
			if (at != NULL)
				return -1;
			at = p;
		}
	}
	if (at == NULL || at == s || at[1] == '\0')
		return -1;
	return 0;
}

/*
 * Optimal string alignment distance (Levenshtein plus adjacent
 * transpositions), case-sensitive.  Strings longer than DIST_MAX get
 * max(len a, len b), an upper bound, rather than an allocation.
 */
#define DIST_MAX	63

int
value_distance(const char *a, const char *b)
{
	int	rows[3][DIST_MAX + 1];
	int	*pp, *p, *c, *t;
	size_t	la = strlen(a), lb = strlen(b), i, j;
	int	best, v;

	if (la > DIST_MAX || lb > DIST_MAX)
		return (int)(la > lb ? la : lb);
	pp = rows[0];
	p = rows[1];
	c = rows[2];
	for (j = 0; j <= lb; j++)
		p[j] = (int)j;
	for (i = 1; i <= la; i++) {
		c[0] = (int)i;
		for (j = 1; j <= lb; j++) {
			int cost = a[i - 1] == b[j - 1] ? 0 : 1;

			best = p[j] + 1;
			if ((v = c[j - 1] + 1) < best)
				best = v;
			if ((v = p[j - 1] + cost) < best)
				best = v;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && (v = pp[j - 2] + 1) < best)
				best = v;
			c[j] = best;
		}
		t = pp;
		pp = p;
		p = c;
		c = t;
	}
	return p[lb];
}
