/* test-value.c -- the config value parsers (config/value.h) */
#include <stdint.h>

#include "check.h"
#include "config/value.h"

static void
t_duration(void)
{
	int64_t	d = -7;

	CHECK(value_duration("90s", &d) == 0 && d == 90);
	CHECK(value_duration("5m", &d) == 0 && d == 300);
	CHECK(value_duration("2h", &d) == 0 && d == 7200);
	CHECK(value_duration("30d", &d) == 0 && d == 30 * 86400);
	CHECK(value_duration("1w", &d) == 0 && d == 7 * 86400);
	CHECK(value_duration("1h30m", &d) == 0 && d == 5400);
	CHECK(value_duration("1h 30m", &d) == 0 && d == 5400);
	CHECK(value_duration("1w2d3h4m5s", &d) == 0 &&
	    d == 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5);
	CHECK(value_duration("45", &d) == 0 && d == 45);
	CHECK(value_duration("007", &d) == 0 && d == 7);
}

static void
t_duration_bad(void)
{
	int64_t	d = -7;

	CHECK(value_duration("", &d) == -1);
	CHECK(value_duration(" ", &d) == -1);
	CHECK(value_duration("0", &d) == -1);		/* > 0 */
	CHECK(value_duration("0s", &d) == -1);
	CHECK(value_duration("5", &d) == 0 && d == 5);
	d = -7;
	CHECK(value_duration("-5m", &d) == -1);
	CHECK(value_duration("5x", &d) == -1);
	CHECK(value_duration("5M", &d) == -1);		/* months? no */
	CHECK(value_duration("m", &d) == -1);
	CHECK(value_duration("30m1h", &d) == -1);	/* order */
	CHECK(value_duration("1h1h", &d) == -1);	/* twice */
	CHECK(value_duration("1h30", &d) == -1);	/* bare after unit */
	CHECK(value_duration("30 1h", &d) == -1);
	CHECK(value_duration("1.5h", &d) == -1);
	CHECK(value_duration("5m ;", &d) == -1);
	/* 100 years is the exclusive limit; overflow is an error. */
	CHECK(value_duration("5215w", &d) == -1);
	CHECK(value_duration("5214w", &d) == 0);
	CHECK(value_duration("3153600000", &d) == -1);
	CHECK(value_duration("3153599999", &d) == 0 && d == 3153599999LL);
	d = -7;
	CHECK(value_duration("99999999999999999999s", &d) == -1);
	CHECK(value_duration("9999999999999999w", &d) == -1);
	CHECK(value_duration("18446744073709551615s", &d) == -1);
	CHECK(value_duration("18446744073709551616", &d) == -1);
	CHECK(d == -7);		/* untouched on error */
	CHECK(value_duration(NULL, &d) == -1);
}

static void
t_size(void)
{
	uint64_t	n = 7;

	CHECK(value_size("0", &n) == 0 && n == 0);
	CHECK(value_size("1000", &n) == 0 && n == 1000);
	CHECK(value_size("10k", &n) == 0 && n == 10240);
	CHECK(value_size("10K", &n) == 0 && n == 10240);
	CHECK(value_size("10kB", &n) == 0 && n == 10240);
	CHECK(value_size("5M", &n) == 0 && n == 5ULL << 20);
	CHECK(value_size("5m", &n) == 0 && n == 5ULL << 20);
	CHECK(value_size("2G", &n) == 0 && n == 2ULL << 30);
	CHECK(value_size("2 G", &n) == 0 && n == 2ULL << 30);
	CHECK(value_size("100B", &n) == 0 && n == 100);
	CHECK(value_size("18446744073709551615", &n) == 0 &&
	    n == UINT64_MAX);
	CHECK(value_size("17179869183G", &n) == 0 &&
	    n == 17179869183ULL << 30);
	n = 7;
	CHECK(value_size("17179869184G", &n) == -1);	/* 2^64 */
	CHECK(value_size("18446744073709551616", &n) == -1);
	CHECK(value_size("", &n) == -1);
	CHECK(value_size("k", &n) == -1);
	CHECK(value_size("-1", &n) == -1);
	CHECK(value_size("1T", &n) == -1);
	CHECK(value_size("1kk", &n) == -1);
	CHECK(value_size("1.5M", &n) == -1);
	CHECK(value_size(" 1", &n) == -1);
	CHECK(n == 7);
}

static void
t_bool(void)
{
	bool	b = false;

	CHECK(value_bool("yes", &b) == 0 && b);
	CHECK(value_bool("No", &b) == 0 && !b);
	CHECK(value_bool("TRUE", &b) == 0 && b);
	CHECK(value_bool("false", &b) == 0 && !b);
	CHECK(value_bool("on", &b) == 0 && b);
	CHECK(value_bool("off", &b) == 0 && !b);
	CHECK(value_bool("1", &b) == 0 && b);
	CHECK(value_bool("0", &b) == 0 && !b);
	b = true;
	CHECK(value_bool("", &b) == -1);
	CHECK(value_bool("y", &b) == -1);
	CHECK(value_bool("yes ", &b) == -1);
	CHECK(value_bool("2", &b) == -1);
	CHECK(b == true);
}

static void
t_port_uint(void)
{
	unsigned	p = 7;
	uint64_t	u = 7;

	CHECK(value_port("1", &p) == 0 && p == 1);
	CHECK(value_port("65535", &p) == 0 && p == 65535);
	p = 7;
	CHECK(value_port("0", &p) == -1);
	CHECK(value_port("65536", &p) == -1);
	CHECK(value_port("-1", &p) == -1);
	CHECK(value_port("+25", &p) == -1);
	CHECK(value_port(" 25", &p) == -1);
	CHECK(value_port("25x", &p) == -1);
	CHECK(value_port("", &p) == -1);
	CHECK(value_port("4294967321", &p) == -1);	/* 2^32 + 25 */
	CHECK(p == 7);
	CHECK(value_uint("4", 1, 64, &u) == 0 && u == 4);
	CHECK(value_uint("64", 1, 64, &u) == 0 && u == 64);
	CHECK(value_uint("1", 1, 64, &u) == 0 && u == 1);
	u = 7;
	CHECK(value_uint("0", 1, 64, &u) == -1);
	CHECK(value_uint("65", 1, 64, &u) == -1);
	CHECK(value_uint("99999999999999999999", 0, UINT64_MAX, &u) == -1);
	CHECK(u == 7);
	CHECK(value_uint("18446744073709551615", 0, UINT64_MAX, &u) == 0 &&
	    u == UINT64_MAX);
}

static void
t_fingerprint(void)
{
	char	out[96];
	const char *want = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
	    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

	CHECK(value_fingerprint("abcdef0123456789abcdef0123456789"
	    "abcdef0123456789abcdef0123456789", out) == 0);
	CHECK_STR(out, want);
	CHECK(value_fingerprint("ab:cd:ef:01:23:45:67:89:AB:CD:EF:01:23:45:"
	    "67:89:ab:cd:ef:01:23:45:67:89:AB:CD:EF:01:23:45:67:89", out) == 0);
	CHECK_STR(out, want);
	strcpy(out, "untouched");
	/* 63 digits, 65 digits, a non-hex digit, wrong separators. */
	CHECK(value_fingerprint("abcdef0123456789abcdef0123456789"
	    "abcdef0123456789abcdef012345678", out) == -1);
	CHECK(value_fingerprint("abcdef0123456789abcdef0123456789"
	    "abcdef0123456789abcdef01234567890", out) == -1);
	CHECK(value_fingerprint("gbcdef0123456789abcdef0123456789"
	    "abcdef0123456789abcdef0123456789", out) == -1);
	CHECK(value_fingerprint("ab-cd:ef:01:23:45:67:89:AB:CD:EF:01:23:45:"
	    "67:89:ab:cd:ef:01:23:45:67:89:AB:CD:EF:01:23:45:67:89", out)
	    == -1);
	CHECK(value_fingerprint("abc:d:ef:01:23:45:67:89:AB:CD:EF:01:23:45:"
	    "67:89:ab:cd:ef:01:23:45:67:89:AB:CD:EF:01:23:45:67:89", out)
	    == -1);
	CHECK(value_fingerprint("", out) == -1);
	CHECK_STR(out, "untouched");
}

static void
t_address(void)
{
	char	long_addr[300];

	CHECK(value_address("me@example.org") == 0);
	CHECK(value_address("a@b") == 0);
	CHECK(value_address("first.last+tag@sub.example.org") == 0);
	CHECK(value_address("") == -1);
	CHECK(value_address("me") == -1);
	CHECK(value_address("@example.org") == -1);
	CHECK(value_address("me@") == -1);
	CHECK(value_address("me@@example.org") == -1);
	CHECK(value_address("a@b@c") == -1);
	CHECK(value_address("me @example.org") == -1);
	CHECK(value_address("<me@example.org>") == -1);
	CHECK(value_address("me@example.org\r\nRCPT TO:<x@y>") == -1);
	CHECK(value_address("me@exa\tmple.org") == -1);
	CHECK(value_address("me@exa\x7fmple.org") == -1);
	memset(long_addr, 'a', sizeof long_addr);
	long_addr[0] = 'x';
	long_addr[1] = '@';
	long_addr[254] = '\0';		/* 254 bytes: fits */
	CHECK(value_address(long_addr) == 0);
	long_addr[254] = 'a';
	long_addr[255] = '\0';		/* 255 bytes: too long */
	CHECK(value_address(long_addr) == -1);
}

static void
t_distance(void)
{
	CHECK(value_distance("", "") == 0);
	CHECK(value_distance("password", "password") == 0);
	CHECK(value_distance("pasword", "password") == 1);
	CHECK(value_distance("passwrod", "password") == 1);	/* swap */
	CHECK(value_distance("hots", "host") == 1);
	CHECK(value_distance("", "abc") == 3);
	CHECK(value_distance("abc", "") == 3);
	CHECK(value_distance("kitten", "sitting") == 3);
	CHECK(value_distance("port", "protocol") > 2);
	CHECK(value_distance("Host", "host") == 1);
	/* Long strings: an upper bound, no crash. */
	CHECK(value_distance("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaa", "b") >= 64);
}

int
main(void)
{
	RUN(t_duration);
	RUN(t_duration_bad);
	RUN(t_size);
	RUN(t_bool);
	RUN(t_port_uint);
	RUN(t_fingerprint);
	RUN(t_address);
	RUN(t_distance);
	return check_done();
}
