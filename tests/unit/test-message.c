/*
 * test-message.c -- forward/message.c: header fields, digests, the
 * Received: header.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward/message.h"
#include "tests/unit/check.h"

static char	tmpdir[] = "/tmp/test-message.XXXXXX";

static int
spool(const void *data, size_t len)
{
	char	path[64];
	int	fd;

	snprintf(path, sizeof path, "%s/m.XXXXXX", tmpdir);
	if ((fd = mkstemp(path)) == -1)
		exit(1);
	if (write(fd, data, len) != (ssize_t)len)
		exit(1);
	return fd;
}

/* sha256sum of the file as the coreutils tool prints it. */
static void
sha256sum(const void *data, size_t len, char out[65])
{
	char	path[64], cmd[128];
	FILE	*p;
	int	fd;

	snprintf(path, sizeof path, "%s/s.XXXXXX", tmpdir);
	if ((fd = mkstemp(path)) == -1 || write(fd, data, len) !=
	    (ssize_t)len)
		exit(1);
	close(fd);
	snprintf(cmd, sizeof cmd, "sha256sum %s", path);
	out[0] = '\0';
	if ((p = popen(cmd, "r")) != NULL) {
		if (fread(out, 1, 64, p) != 64)
			out[0] = '\0';
		else
			out[64] = '\0';
		pclose(p);
	}
	unlink(path);
}

/* Scans data both ways and checks they agree. */
static void
scan(const void *data, size_t len, struct message_info *info)
{
	struct message_info	b;
	struct mh_err		err;
	int			fd = spool(data, len);

	CHECK(message_scan(fd, info, &err) == 0);
	CHECK(lseek(fd, 0, SEEK_CUR) == (off_t)len);
	close(fd);
	message_scan_buf(data, len, &b);
	CHECK(memcmp(&b, info, sizeof b) == 0);
}

static void
t_basic(void)
{
	static const char m[] =
	    "Return-Path: <alice@example.net>\r\n"
	    "From: a@example.net\r\n"
	    "Message-ID: <abc@example.net>\r\n"
	    "Message-ID: <second@example.net>\r\n"
	    "\r\n"
	    "Message-ID: <body@example.net>\r\n";
	struct message_info	i;
	char			want[65];

	scan(m, sizeof m - 1, &i);
	CHECK(i.size == sizeof m - 1);
	CHECK_STR(i.message_id, "<abc@example.net>");
	CHECK(i.has_return_path);
	CHECK_STR(i.return_path, "alice@example.net");
	CHECK(!i.eightbit);
	sha256sum(m, sizeof m - 1, want);
	CHECK_STR(i.digest, want);
	/* the header digest: the header lines without the empty line */
	sha256sum(m, strstr(m, "\r\n\r\n") + 2 - m, want);
	CHECK_STR(i.header_digest, want);
}

static void
t_folded(void)
{
	static const char m[] =
	    "message-id:\r\n"
	    "   <folded@example.net>\r\n"
	    "RETURN-PATH :  <>  \r\n"
	    "Return-Path: <late@example.net>\r\n"
	    "\r\nbody";
	struct message_info	i;

	scan(m, sizeof m - 1, &i);
	CHECK_STR(i.message_id, "<folded@example.net>");
	CHECK(i.has_return_path);
	CHECK_STR(i.return_path, "");
}

static void
t_none(void)
{
	static const char m[] = "Subject: nothing\r\nX-Message-ID: <no>\r\n"
	    "\r\nMessage-ID: <body@x>\r\n";
	struct message_info	i;

	scan(m, sizeof m - 1, &i);
	CHECK_STR(i.message_id, "");
	CHECK(!i.has_return_path);
	CHECK_STR(i.return_path, "");
}

/* The Date field as a time: zones, no weekday, no seconds, comments;
   none or nonsense is 0. */
static void
t_date(void)
{
	static const struct {
		const char	*hdr;
		time_t		 want;
	} cases[] = {
		{ "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n\r\nx", 1796115600 },
		{ "Date: 1 Dec 2026 04:00:00 -0500 (EST)\r\n\r\n", 1796115600 },
		{ "date:\r\n Tue, 01 Dec 2026 09:00 +0000\r\n\r\n", 1796115600 },
		{ "Date: yesterday\r\n\r\n", 0 },
		{ "Subject: no date\r\n\r\nDate: Tue, 1 Dec 2026 10:00:00 "
		  "+0100\r\n", 0 },
	};
	struct message_info	i;
	size_t			n;

	for (n = 0; n < sizeof cases / sizeof cases[0]; n++) {
		scan(cases[n].hdr, strlen(cases[n].hdr), &i);
		if (i.date != cases[n].want)
			fprintf(stderr, "  case %zu: %lld\n", n,
			    (long long)i.date);
		CHECK(i.date == cases[n].want);
	}
}

/* A header without body and without a final line end; LF line ends. */
static void
t_header_only(void)
{
	static const char m1[] = "Subject: x\nMessage-ID: <lf@x>";
	static const char m2[] = "Subject: x\nMessage-ID: <lf@x>\n";
	static const char m3[] = "Subject: x\nMessage-ID: <lf@x>\n\n";
	struct message_info	a, b, c;
	char			want[65];

	scan(m1, sizeof m1 - 1, &a);
	scan(m2, sizeof m2 - 1, &b);
	scan(m3, sizeof m3 - 1, &c);
	CHECK_STR(a.message_id, "<lf@x>");
	CHECK_STR(b.message_id, "<lf@x>");
	CHECK_STR(c.message_id, "<lf@x>");
	/* with and without the empty line: the same header digest */
	CHECK_STR(b.header_digest, c.header_digest);
	sha256sum(m2, sizeof m2 - 1, want);
	CHECK_STR(b.header_digest, want);
	CHECK(strcmp(a.digest, b.digest) != 0);
}

/* NUL bytes and 8-bit, in the header and the body. */
static void
t_binary(void)
{
	static const char m[] = "Subject: caf\xc3\xa9\r\nMessage-ID: <n\0ul@x>"
	    "\r\n\r\nbody\0with nul\r\n";
	static const char plain[] = "Subject: x\r\n\r\nbody\0\r\n";
	struct message_info	i;
	char			want[65];

	scan(m, sizeof m - 1, &i);
	CHECK(i.eightbit);
	CHECK(i.size == sizeof m - 1);
	CHECK_STR(i.message_id, "<n ul@x>");	/* NUL made harmless */
	sha256sum(m, sizeof m - 1, want);
	CHECK_STR(i.digest, want);
	scan(plain, sizeof plain - 1, &i);
	CHECK(!i.eightbit);
}

/* One 8-bit byte is found wherever it is (every lane of the word scan). */
static void
t_eightbit_anywhere(void)
{
	char			m[300];
	struct message_info	i;

	memset(m, 'a', sizeof m);
	memcpy(m, "S: x\r\n\r\n", 9);
	scan(m, sizeof m, &i);
	CHECK(!i.eightbit);
	for (size_t k = 9; k < sizeof m; k++) {
		m[k] = (char)0x80;
		scan(m, sizeof m, &i);
		CHECK(i.eightbit);
		m[k] = 'a';
	}
}

/* Big bodies and long fields: cut, never overflowing. */
static void
t_big(void)
{
	size_t			 n = 1 << 20, i;
	char			*m = xmalloc(n), want[65];
	struct message_info	 info;
	int			 hl;

	memset(m, 'a', n);
	hl = snprintf(m, 200, "X-Long: ");
	m[hl] = 'a';
	for (i = 1000; i < 200000; i += 1000) {	/* a very long folded field */
		m[i] = '\r';
		m[i + 1] = '\n';
		m[i + 2] = ' ';
	}
	memcpy(m + 200000, "\r\nMessage-ID: <big@x>\r\n\r\n", 25);
	m[n - 1] = '\xff';
	scan(m, n, &info);
	CHECK_STR(info.message_id, "<big@x>");
	CHECK(info.eightbit);
	sha256sum(m, n, want);
	CHECK_STR(info.digest, want);
	free(m);
}

static void
t_received(void)
{
	char	*r, *p, *line;
	size_t	 len;

	r = message_received("old-isp", "pop3", "pop.example\r\nX-Evil: 1",
	    "uid\x01\x7f" "42", "mh.1.0.uid42", "me@example.org",
	    1700000000);
	CHECK(r != NULL);
	CHECK(strncmp(r, "Received: from ", 15) == 0);
	len = strlen(r);
	CHECK(len > 2 && strcmp(r + len - 2, "\r\n") == 0);
	/* no line break but the folds, every fold continues with a tab */
	for (p = r; (p = strchr(p, '\n')) != NULL; p++) {
		CHECK(p[-1] == '\r');
		CHECK(p[1] == '\0' || p[1] == '\t');
	}
	for (p = r; *p != '\0'; p++)
		CHECK(*p == '\r' || *p == '\n' || *p == '\t' ||
		    ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f));
	CHECK(strstr(r, "X-Evil:") == NULL || strstr(r, "\nX-Evil") == NULL);
	CHECK_CONTAINS(r, "old-isp");
	CHECK_CONTAINS(r, "pop3");
	CHECK_CONTAINS(r, "<me@example.org>;");
	CHECK_CONTAINS(r, " for");
	CHECK_CONTAINS(r, "(mailhaul)");
	/* the date is RFC 5322 */
	CHECK(strstr(r, " Nov 2023 ") != NULL);
	/* folded at 78 columns */
	for (line = r; *line != '\0'; line = p + 1) {
		p = strchr(line, '\n');
		CHECK(p != NULL && p - line - 1 <= 78);
		if (p == NULL)
			break;
	}
	free(r);

	r = message_received("a", "imap", "h", "1", NULL, NULL, 0);
	CHECK(r != NULL && strstr(r, " for ") == NULL);
	CHECK_CONTAINS(r, "id 1;");
	free(r);
}

/* The source key's token: fixed length, in the Received: line. */
static void
t_key_token(void)
{
	char	 a[MESSAGE_TOKEN_SIZE], b[MESSAGE_TOKEN_SIZE], *r, *u;
	size_t	 i;

	message_key_token("mh.1.7.12", a);
	message_key_token("mh.1.7.1", b);
	CHECK(strlen(a) == MESSAGE_TOKEN_SIZE - 1 && strncmp(a, "mh-", 3) == 0);
	for (i = 3; a[i] != '\0'; i++)
		CHECK((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'));
	CHECK(strcmp(a, b) != 0);
	message_key_token("mh.1.7.12", b);
	CHECK_STR(a, b);
	r = message_received("a", "imap", "h", "12", "mh.1.7.12", NULL, 0);
	/* unfolded, it holds "id 12 (TOKEN);" */
	u = xstrdup(r);
	for (i = 0; u[i] != '\0'; i++)
		if (u[i] == '\r' || u[i] == '\n' || u[i] == '\t')
			u[i] = ' ';
	free(r);
	r = xasprintf("(%s);", a);
	CHECK_CONTAINS(u, r);
	free(r);
	free(u);
}

int
main(void)
{
	char	cmd[64];

	if (mkdtemp(tmpdir) == NULL)
		return 1;
	RUN(t_basic);
	RUN(t_folded);
	RUN(t_none);
	RUN(t_date);
	RUN(t_header_only);
	RUN(t_binary);
	RUN(t_eightbit_anywhere);
	RUN(t_big);
	RUN(t_received);
	RUN(t_key_token);
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return 1;
	return check_done();
}
