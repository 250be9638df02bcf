/*
 * test-net.c -- net/: our mailstream_low drivers against scripted local
 * servers (tests/unit/net/tls-server.py) with certificates made at test
 * time (tests/unit/net/mkcerts.sh): verification failures, pinning,
 * STARTTLS injection, EOF mid-line, stalls, cancel, unix sockets.
 */
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "net/net.h"
#include "tests/unit/check.h"
#include "tests/unit/fake.h"

static char	tmpdir[64];
static char	helpers[PATH_MAX];

struct server {
	pid_t		pid;
	unsigned	port;
	char		record[PATH_MAX];
};

/* tests/unit/net, found from the executable (build/tests/unit/). */
static void
find_helpers(void)
{
	snprintf(helpers, sizeof helpers, "%s/net", TEST_SRCDIR);
}

static const char *
tmp(const char *name)
{
	static char	buf[4][PATH_MAX + 64];
	static int	i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
	return buf[i];
}

/*
 * Starts tls-server.py MODE; cert is "good", "self", ... or NULL for
 * plain; unix_path NULL for TCP.  Waits at most 10 s for its port.
 */
static int
server_start(struct server *sv, const char *mode, const char *cert,
    const char *unix_path)
{
	char		 script[PATH_MAX + 32], pem[PATH_MAX];
	char		 key[PATH_MAX];
	const char	*argv[16];
	int		 argc = 0;
	static int	 seq;

	memset(sv, 0, sizeof *sv);
	snprintf(sv->record, sizeof sv->record, "%s/record.%d.%d", tmpdir,
	    (int)getpid(), seq++);
	snprintf(script, sizeof script, "%s/tls-server.py", helpers);
	argv[argc++] = "/usr/bin/python3";
	argv[argc++] = script;
	argv[argc++] = mode;
	argv[argc++] = "--record";
	argv[argc++] = sv->record;
	if (cert != NULL) {
		snprintf(pem, sizeof pem, "%s/%s.pem", tmpdir, cert);
		snprintf(key, sizeof key, "%s/%s.key", tmpdir, cert);
		argv[argc++] = "--cert";
		argv[argc++] = pem;
		argv[argc++] = "--key";
		argv[argc++] = key;
	}
	if (unix_path != NULL) {
		argv[argc++] = "--unix";
		argv[argc++] = unix_path;
	}
	argv[argc] = NULL;
	sv->pid = fake_launch(argv, getenv("TEST_NET_VERBOSE") == NULL ?
	    tmp("server.log") : NULL, &sv->port);
	return sv->pid == -1 ? -1 : 0;
}

static void
server_stop(struct server *sv)
{
	if (sv->pid > 0) {
		kill(sv->pid, SIGTERM);
		waitpid(sv->pid, NULL, 0);
		sv->pid = 0;
	}
}

/* Bytes the server recorded after its handshake. */
static long
server_recorded(struct server *sv)
{
	struct stat	st;

	return stat(sv->record, &st) == 0 ? (long)st.st_size : 0;
}

static void
params_init(struct net_params *p, unsigned port, enum net_tls tls)
{
	memset(p, 0, sizeof *p);
	p->host = "localhost";
	p->port = port;
	p->tls = tls;
	p->ca_file = tmp("ca.pem");
	p->connect_timeout_ms = 5000;
	p->timeout_ms = 5000;
}

/* Reads one line without its CRLF into buf; -1 on failure. */
static int
read_line(mailstream *s, char *buf, size_t size)
{
	MMAPString	*str = mmap_string_new("");
	int		 rc = -1;

	if (mailstream_read_line_remove_eol(s, str) != NULL) {
		snprintf(buf, size, "%s", str->str);
		rc = 0;
	}
	mmap_string_free(str);
	return rc;
}

static int
send_line(mailstream *s, const char *line)
{
	if (mailstream_write(s, line, strlen(line)) < 0 ||
	    mailstream_write(s, "\r\n", 2) < 0)
		return -1;
	return mailstream_flush(s);
}

/* "SHA256 Fingerprint=AA:..." of a test certificate, from the CLI. */
static void
fingerprint_of(const char *cert, char *out, size_t size)
{
	char	 cmd[PATH_MAX + 128], line[256], *eq;
	FILE	*fp;

	out[0] = '\0';
	snprintf(cmd, sizeof cmd,
	    "openssl x509 -noout -fingerprint -sha256 -in %s/%s.pem",
	    tmpdir, cert);
	if ((fp = popen(cmd, "r")) == NULL)
		return;
	if (fgets(line, sizeof line, fp) != NULL &&
	    (eq = strchr(line, '=')) != NULL) {
		eq[strcspn(eq, "\r\n")] = '\0';
		snprintf(out, size, "%s", eq + 1);
	}
	pclose(fp);
}

/* An echo round trip over s. */
static void
check_echo(mailstream *s)
{
	char	line[256];

	CHECK(read_line(s, line, sizeof line) == 0);
	CHECK_STR(line, "+OK hello");
	CHECK(send_line(s, "HELLO there") == 0);
	CHECK(read_line(s, line, sizeof line) == 0);
	CHECK_STR(line, "+OK HELLO there");
}

static void
tls_ok(const char *host)
{
	struct server		 sv;
	struct net_params	 p;
	struct net_peer_info	 info;
	struct mh_err		 err;
	mailstream		*s;
	carray			*chain;

	CHECK(server_start(&sv, "echo", "good", NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	p.host = host;
	mh_err_clear(&err);
	s = net_connect(&p, &err);
	if (s == NULL)
		fprintf(stderr, "  net_connect: %s\n", err.msg);
	CHECK(s != NULL);
	if (s != NULL) {
		CHECK(net_is_tls(s));
		check_echo(s);
		CHECK(net_peer_info(s, &info) == 0);
		CHECK_CONTAINS(info.subject, "localhost");
		CHECK_CONTAINS(info.issuer, "mailhaul test CA");
		CHECK(strlen(info.sha256) == 95);
		CHECK(strncmp(info.version, "TLSv1.", 6) == 0);
		CHECK(info.cipher[0] != '\0');
		CHECK(info.not_after > time(NULL));
		CHECK(info.not_before <= time(NULL));
		chain = mailstream_get_certificate_chain(s);
		CHECK(chain != NULL && carray_count(chain) >= 1);
		if (chain != NULL)
			mailstream_certificate_chain_free(chain);
		CHECK_STR(net_error(s), "");
		mailstream_close(s);
	}
	server_stop(&sv);
}

static void
t_tls_good_localhost(void)
{
	tls_ok("localhost");
}

static void
t_tls_good_ip(void)
{
	tls_ok("127.0.0.1");
}

/* Connects to a server with cert; expects a TLS refusal naming why. */
static void
tls_refused_trust(const char *cert, const char *host, const char *ca_file,
    const char *pin, struct net_trust *trust, const char *why)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;

	CHECK(server_start(&sv, "echo", cert, NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	p.host = host;
	p.ca_file = ca_file;
	p.fingerprint = pin;
	p.trust = trust;
	mh_err_clear(&err);
	s = net_connect(&p, &err);
	CHECK(s == NULL);
	if (s != NULL)
		mailstream_close(s);
	CHECK(err.cls == MH_ERR_TLS);
	CHECK_CONTAINS(err.msg, why);
	if (getenv("TEST_NET_VERBOSE") != NULL)
		fprintf(stderr, "  refused: %s\n", err.msg);
	server_stop(&sv);
	/* Nothing protocol-level reached the server. */
	CHECK(server_recorded(&sv) == 0);
}

static void
tls_refused(const char *cert, const char *host, const char *ca_file,
    const char *pin, const char *why)
{
	tls_refused_trust(cert, host, ca_file, pin, NULL, why);
}

static void
t_tls_self_signed(void)
{
	tls_refused("self", "localhost", tmp("ca.pem"), NULL,
	    "TLS certificate verification failed for localhost:");
	tls_refused("self", "localhost", tmp("ca.pem"), NULL,
	    ": self-signed certificate");
}

static void
t_tls_wrong_host(void)
{
	tls_refused("wronghost", "localhost", tmp("ca.pem"), NULL,
	    "hostname mismatch");
	tls_refused("wronghost", "127.0.0.1", tmp("ca.pem"), NULL,
	    "IP address mismatch");
}

static void
t_tls_untrusted_ca(void)
{
	unsetenv("SSL_CERT_FILE");
	unsetenv("SSL_CERT_DIR");
	tls_refused("good", "localhost", NULL, NULL,
	    "unable to get local issuer certificate (untrusted CA)");
}

/*
 * The system's CAs loaded once (net_trust_load) are what a connection
 * with p.trust verifies with: the store read while SSL_CERT_FILE named
 * the test CA accepts the test server, whatever the environment says
 * at connect time, and keeps doing so after net_trust_free (each
 * connection holds a reference); the store read without it refuses.
 */
static void
t_tls_shared_trust(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct net_trust	*with_ca, *system;
	struct mh_err		 err;
	mailstream		*s;

	unsetenv("SSL_CERT_DIR");
	setenv("SSL_CERT_FILE", tmp("ca.pem"), 1);
	mh_err_clear(&err);
	with_ca = net_trust_load(&err);
	CHECK(with_ca != NULL);
	unsetenv("SSL_CERT_FILE");
	system = net_trust_load(&err);
	CHECK(system != NULL);
	if (with_ca == NULL || system == NULL)
		goto out;

	CHECK(server_start(&sv, "echo", "good", NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	p.ca_file = NULL;
	p.trust = with_ca;
	s = net_connect(&p, &err);
	if (s == NULL)
		fprintf(stderr, "  net_connect: %s\n", err.msg);
	CHECK(s != NULL);
	net_trust_free(with_ca);
	with_ca = NULL;
	if (s != NULL) {
		check_echo(s);
		mailstream_close(s);
	}
	server_stop(&sv);

	/* the environment names the test CA now, the store does not */
	setenv("SSL_CERT_FILE", tmp("ca.pem"), 1);
	tls_refused_trust("good", "localhost", NULL, NULL, system,
	    "untrusted CA");
	unsetenv("SSL_CERT_FILE");
out:
	net_trust_free(with_ca);
	net_trust_free(system);
}

static void
t_tls_expired(void)
{
	tls_refused("expired", "localhost", tmp("ca.pem"), NULL,
	    "certificate has expired");
}

static void
t_tls_pin_match(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct net_peer_info	 info;
	struct mh_err		 err;
	mailstream		*s;
	char			 pin[128];

	fingerprint_of("self", pin, sizeof pin);
	CHECK(strlen(pin) == 95);
	CHECK(server_start(&sv, "echo", "self", NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	p.ca_file = NULL;
	p.fingerprint = pin;		/* untrusted, but pinned */
	mh_err_clear(&err);
	s = net_connect(&p, &err);
	if (s == NULL)
		fprintf(stderr, "  net_connect: %s\n", err.msg);
	CHECK(s != NULL);
	if (s != NULL) {
		check_echo(s);
		CHECK(net_peer_info(s, &info) == 0);
		CHECK_STR(info.sha256, pin);
		mailstream_close(s);
	}
	server_stop(&sv);
}

static void
t_tls_pin_mismatch(void)
{
	char	pin[128];

	/* Even a chain our CA vouches for fails a pin it does not match. */
	fingerprint_of("self", pin, sizeof pin);
	CHECK(strlen(pin) == 95);
	tls_refused("good", "localhost", tmp("ca.pem"), pin,
	    "certificate fingerprint mismatch: expected ");
	tls_refused("wronghost", "localhost", NULL, pin,
	    "fingerprint mismatch");
}

static void
t_starttls_injection(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256];

	CHECK(server_start(&sv, "starttls-inject", NULL, NULL) == 0);
	params_init(&p, sv.port, NET_TLS_STARTTLS);
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		CHECK(!net_is_tls(s));
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK ready");
		CHECK(send_line(s, "STLS") == 0);
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK begin TLS");
		CHECK(net_starttls(s, &p, &err) == -1);
		CHECK(err.cls == MH_ERR_PROTO);
		CHECK_CONTAINS(err.msg, "STARTTLS response injection: ");
		CHECK_CONTAINS(err.msg, "plaintext bytes buffered");
		CHECK(!net_is_tls(s));
		mailstream_close(s);
	}
	server_stop(&sv);
}

static void
t_starttls_ok(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256];

	CHECK(server_start(&sv, "starttls", "good", NULL) == 0);
	params_init(&p, sv.port, NET_TLS_STARTTLS);
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK ready");
		CHECK(send_line(s, "STLS") == 0);
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK begin TLS");
		CHECK(net_starttls(s, &p, &err) == 0);
		CHECK(net_is_tls(s));
		check_echo(s);
		mailstream_close(s);
	}
	server_stop(&sv);
}

static void
t_starttls_bad_cert(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256];

	CHECK(server_start(&sv, "starttls", "self", NULL) == 0);
	params_init(&p, sv.port, NET_TLS_STARTTLS);
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK(send_line(s, "STLS") == 0);
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK(net_starttls(s, &p, &err) == -1);
		CHECK(err.cls == MH_ERR_TLS);
		CHECK_CONTAINS(err.msg, "self-signed certificate");
		CHECK(!net_is_tls(s));
		mailstream_close(s);	/* the old low still owns the fd */
	}
	server_stop(&sv);
}

static void
close_midline(const char *cert)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256];
	int			 i, rc = 0;

	CHECK(server_start(&sv, "midline", cert, NULL) == 0);
	params_init(&p, sv.port, cert ? NET_TLS_IMPLICIT : NET_TLS_NONE);
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		/* the closed connection is the reason, not a timeout */
		CHECK(read_line(s, line, sizeof line) == -1);
		CHECK(net_error(s)[0] != '\0');
		CHECK(strstr(net_error(s), "timed out") == NULL);
		if (cert == NULL)
			CHECK_STR(net_error(s), "connection closed by peer");
		/* And again: still -1, never 0, never a hang. */
		CHECK(mailstream_read(s, line, 1) == -1);
		/* Writing to the closed peer fails; no SIGPIPE kills us. */
		for (i = 0; i < 20 && rc != -1; i++) {
			rc = send_line(s, "NOOP");
			usleep(20000);
		}
		CHECK(rc == -1);
		mailstream_close(s);
	}
	server_stop(&sv);
}

static void
t_close_midline_plain(void)
{
	close_midline(NULL);
}

static void
t_close_midline_tls(void)
{
	close_midline("good");
}

static void
stall(const char *cert)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256];
	int64_t			 t0, dt;

	CHECK(server_start(&sv, "stall", cert, NULL) == 0);
	params_init(&p, sv.port, cert ? NET_TLS_IMPLICIT : NET_TLS_NONE);
	p.timeout_ms = 500;
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK hello");
		t0 = now_ms();
		CHECK(read_line(s, line, sizeof line) == -1);
		dt = now_ms() - t0;
		CHECK(dt >= 450);	/* not before its time; how soon after
					   is a benchmark's question */
		CHECK_CONTAINS(net_error(s), "timed out after 0.5 s");
		net_set_timeout(s, 200);
		t0 = now_ms();
		CHECK(mailstream_read(s, line, 1) == -1);
		dt = now_ms() - t0;
		CHECK(dt >= 150);
		CHECK_CONTAINS(net_error(s), "timed out after 0.2 s");
		mailstream_close(s);
	}
	server_stop(&sv);
}

static void
t_stall_timeout_plain(void)
{
	stall(NULL);
}

static void
t_stall_timeout_tls(void)
{
	stall("good");
}

/*
 * A server that trickles a byte every 50 ms never trips the per-read
 * timeout; the low-speed limit ends it (issue #16, 10).
 */
static void
t_low_speed(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256], c;
	int			 i, rc = 0;

	CHECK(server_start(&sv, "trickle", NULL, NULL) == 0);
	params_init(&p, sv.port, NET_TLS_NONE);
	p.timeout_ms = 3000;
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK hello");
		net_set_low_speed(s, 100, 1000);
		/* 20 bytes a second: at most a few seconds' worth of reads */
		for (i = 0; i < 200 && rc != -1; i++)
			rc = (int)mailstream_read(s, &c, 1);
		CHECK(rc == -1);
		CHECK(i < 100);
		CHECK_CONTAINS(net_error(s), "the server sent less than 100 "
		    "bytes in ");
		mailstream_close(s);
	}
	server_stop(&sv);
}

/* Implicit TLS to a plaintext server: refused, nothing sent. */
/* A line that never ends fails the read once it passes the limit. */
static void
t_line_limit(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256];

	CHECK(server_start(&sv, "longline", NULL, NULL) == 0);
	params_init(&p, sv.port, NET_TLS_NONE);
	p.timeout_ms = 3000;
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		net_set_line_limit(s, 65536);
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK hello");
		CHECK(read_line(s, line, sizeof line) == -1);
		CHECK_STR(net_error(s),
		    "the server sent a line longer than 65536 bytes");
		mailstream_close(s);
	}
	server_stop(&sv);
}

static void
t_tls_to_plain_server(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;

	CHECK(server_start(&sv, "echo", NULL, NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	mh_err_clear(&err);
	s = net_connect(&p, &err);
	CHECK(s == NULL);
	if (s != NULL)
		mailstream_close(s);
	CHECK(err.cls == MH_ERR_TLS);
	CHECK_CONTAINS(err.msg, "TLS handshake with localhost:");
	CHECK_CONTAINS(err.msg, "wrong version number");
	server_stop(&sv);
}

/* A server that accepts and never answers the ClientHello. */
static void
t_handshake_timeout(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	int64_t			 t0, dt;

	CHECK(server_start(&sv, "silent", NULL, NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	p.connect_timeout_ms = 500;
	mh_err_clear(&err);
	t0 = now_ms();
	s = net_connect(&p, &err);
	dt = now_ms() - t0;
	CHECK(s == NULL);
	if (s != NULL)
		mailstream_close(s);
	CHECK(dt >= 450);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "timed out after 0.5 s");
	server_stop(&sv);
}

static void
t_connect_refused(void)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof sin;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	int			 fd;
	char			 want[64];

	/* A port that was free a moment ago and has no listener. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	close(fd);
	params_init(&p, ntohs(sin.sin_port), NET_TLS_IMPLICIT);
	p.host = "127.0.0.1";
	mh_err_clear(&err);
	s = net_connect(&p, &err);
	CHECK(s == NULL);
	CHECK(err.cls == MH_ERR_TEMP);
	snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%u: ",
	    p.port);
	CHECK_CONTAINS(err.msg, want);
	CHECK_CONTAINS(err.msg, "Connection refused");

	p.host = NULL;
	p.unix_path = tmp("no-such-socket");
	mh_err_clear(&err);
	CHECK(net_connect(&p, &err) == NULL);
	CHECK(err.cls == MH_ERR_TEMP);
	CHECK_CONTAINS(err.msg, "no-such-socket");
}

/* A loopback listener on addr; backlog 0 and, with fill, one queued
   connection, so that further SYNs go unanswered (a dropping host). */
static int
listener(const char *addr, bool fill, struct sockaddr_in *sin, int *filler)
{
	socklen_t	len = sizeof *sin;
	int		fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(sin, 0, sizeof *sin);
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin->sin_addr);
	CHECK(bind(fd, (struct sockaddr *)sin, sizeof *sin) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)sin, &len) == 0);
	CHECK(listen(fd, 0) == 0);
	*filler = -1;
	if (fill) {
		*filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(connect(*filler, (struct sockaddr *)sin, sizeof *sin)
		    == 0);
	}
	return fd;
}

/*
 * Happy eyeballs (issue #16, 9): the first address drops SYNs, the
 * second answers: the race connects to the second long before the
 * deadline (the old loop spent the whole deadline on the first).
 */
static void
t_race_connect(void)
{
	struct sockaddr_in	 dead, live, peer;
	struct addrinfo		 a[2], *addrs[2];
	socklen_t		 len = sizeof peer;
	int			 ldead, llive, filler, filler2, fd, last = 0;
	int64_t			 deadline;

	ldead = listener("127.0.0.2", true, &dead, &filler);
	llive = listener("127.0.0.1", false, &live, &filler2);
	memset(a, 0, sizeof a);
	a[0].ai_family = a[1].ai_family = AF_INET;
	a[0].ai_addr = (struct sockaddr *)&dead;
	a[1].ai_addr = (struct sockaddr *)&live;
	a[0].ai_addrlen = a[1].ai_addrlen = sizeof dead;
	addrs[0] = &a[0];
	addrs[1] = &a[1];

	deadline = now_ms() + 20000;
	fd = net_race_connect(addrs, 2, deadline, &last);
	CHECK(fd >= 0);		/* the dead one did not use up the deadline */
	if (fd >= 0) {
		CHECK(getpeername(fd, (struct sockaddr *)&peer, &len) == 0);
		CHECK(peer.sin_addr.s_addr == live.sin_addr.s_addr &&
		    peer.sin_port == live.sin_port);
		close(fd);
	}

	/* only the dropping address: a timeout, said as such */
	deadline = now_ms() + 600;
	CHECK(net_race_connect(addrs, 1, deadline, &last) == -1);
	CHECK(last == ETIMEDOUT);

	/* a refused first address hands over at once */
	close(llive);
	llive = listener("127.0.0.1", false, &live, &filler2);
	close(ldead);
	close(filler);
	ldead = listener("127.0.0.2", false, &dead, &filler);
	close(ldead);			/* now refused */
	a[1].ai_addr = (struct sockaddr *)&live;
	fd = net_race_connect(addrs, 2, now_ms() + 20000, &last);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	close(llive);
}

static void
t_unix_socket(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 path[PATH_MAX];

	snprintf(path, sizeof path, "%s/sock.%d", tmpdir, (int)getpid());
	CHECK(server_start(&sv, "echo", NULL, path) == 0);
	params_init(&p, 0, NET_TLS_NONE);
	p.host = NULL;
	p.unix_path = path;
	mh_err_clear(&err);
	s = net_connect(&p, &err);
	if (s == NULL)
		fprintf(stderr, "  net_connect: %s\n", err.msg);
	CHECK(s != NULL);
	if (s != NULL) {
		CHECK(!net_is_tls(s));
		CHECK(mailstream_get_certificate_chain(s) == NULL);
		check_echo(s);
		mailstream_close(s);
	}
	server_stop(&sv);
}

static mailstream *volatile cancel_target;

static void
on_alarm(int sig)
{
	net_cancel(cancel_target);
}

static void
t_cancel(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	struct itimerval	 it;
	mailstream		*s;
	char			 line[256];
	int64_t			 t0, dt;

	CHECK(server_start(&sv, "stall", "good", NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	p.timeout_ms = 10000;
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		CHECK(read_line(s, line, sizeof line) == 0);
		cancel_target = s;
		signal(SIGALRM, on_alarm);
		memset(&it, 0, sizeof it);
		it.it_value.tv_usec = 300000;
		setitimer(ITIMER_REAL, &it, NULL);
		t0 = now_ms();
		CHECK(read_line(s, line, sizeof line) == -1);
		dt = now_ms() - t0;
		CHECK(dt >= 250);	/* the alarm, not the 10 s timeout: */
		CHECK_STR(net_error(s), "cancelled");
		/* Writes fail at once too: the abort-without-QUIT path. */
		CHECK(send_line(s, "QUIT") == -1);
		mailstream_close(s);
	}
	server_stop(&sv);
	CHECK(server_recorded(&sv) == 0);	/* QUIT never left */
}

static void
t_wait_readable(void)
{
	struct server		 sv;
	struct net_params	 p;
	struct mh_err		 err;
	mailstream		*s;
	char			 line[256];
	int			 wake[2];
	int64_t			 t0;

	CHECK(pipe(wake) == 0);
	CHECK(server_start(&sv, "echo", "good", NULL) == 0);
	params_init(&p, sv.port, NET_TLS_IMPLICIT);
	mh_err_clear(&err);
	CHECK((s = net_connect(&p, &err)) != NULL);
	if (s != NULL) {
		CHECK(net_wait_readable(s, 3000, -1) == 1);
		CHECK(read_line(s, line, sizeof line) == 0);
		t0 = now_ms();
		CHECK(net_wait_readable(s, 200, wake[0]) == 0);
		CHECK(now_ms() - t0 >= 150);
		CHECK(write(wake[1], "x", 1) == 1);
		CHECK(net_wait_readable(s, 3000, wake[0]) == 2);
		/* Two lines in one segment: the second is already buffered. */
		CHECK(mailstream_write(s, "A\r\nB\r\n", 6) == 6);
		CHECK(mailstream_flush(s) == 0);
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK A");
		CHECK(net_wait_readable(s, 3000, -1) == 1);
		CHECK(read_line(s, line, sizeof line) == 0);
		CHECK_STR(line, "+OK B");
		mailstream_close(s);
	}
	server_stop(&sv);
	close(wake[0]);
	close(wake[1]);
}

static void
t_sha256(void)
{
	struct net_sha256	*h;
	char			 out[65];

	h = net_sha256_new();
	net_sha256_update(h, "abc", 3);
	net_sha256_final(h, out);
	CHECK_STR(out, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
	h = net_sha256_new();
	net_sha256_update(h, "a", 1);
	net_sha256_update(h, "", 0);
	net_sha256_update(h, "bc", 2);
	net_sha256_final(h, out);
	CHECK_STR(out, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
	h = net_sha256_new();
	net_sha256_final(h, out);
	CHECK_STR(out, "e3b0c44298fc1c149afbf4c8996fb924"
	    "27ae41e4649b934ca495991b7852b855");
}

static void
t_base64(void)
{
	static const char	*enc[] = { "", "Zg==", "Zm8=", "Zm9v",
				    "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	static const char	 raw[] = "foobar";
	static const char	*bad[] = { "Zm9", "Zm=v", "====", "Z===",
				    "Zm9v!A==", "Zm9vY g=" };
	unsigned char		 bin[3] = { 0x00, 0xff, 0x80 };
	unsigned char		*dec;
	char			*s;
	size_t			 i, len;

	for (i = 0; i < sizeof enc / sizeof enc[0]; i++) {
		s = net_base64(raw, i);
		CHECK_STR(s, enc[i]);
		free(s);
		dec = net_unbase64(enc[i], &len);
		CHECK(dec != NULL && len == i && memcmp(dec, raw, i) == 0);
		free(dec);
	}
	s = net_base64(bin, 3);
	dec = net_unbase64(s, &len);
	CHECK(dec != NULL && len == 3 && memcmp(dec, bin, 3) == 0);
	free(dec);
	free(s);
	/* "\0user\0pass", SASL PLAIN style: NULs survive. */
	dec = net_unbase64("AHVzZXIAcGFzcw==", &len);
	CHECK(dec != NULL && len == 10 && memcmp(dec, "\0user\0pass", 10) == 0);
	free(dec);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		dec = net_unbase64(bad[i], &len);
		if (dec != NULL)
			fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
		CHECK(dec == NULL);
		free(dec);
	}
}

int
main(void)
{
	char	cmd[3 * PATH_MAX];
	int	rc;

	net_init();
	find_helpers();
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test-net.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(cmd, sizeof cmd, "/bin/sh %s/mkcerts.sh %s", helpers,
	    tmpdir);
	if (system(cmd) != 0) {
		fprintf(stderr, "cannot make test certificates (%s)\n", cmd);
		return 1;
	}
	RUN(t_sha256);
	RUN(t_base64);
	RUN(t_tls_good_localhost);
	RUN(t_line_limit);
	RUN(t_tls_good_ip);
	RUN(t_tls_self_signed);
	RUN(t_tls_wrong_host);
	RUN(t_tls_untrusted_ca);
	RUN(t_tls_shared_trust);
	RUN(t_tls_expired);
	RUN(t_tls_pin_match);
	RUN(t_tls_pin_mismatch);
	RUN(t_starttls_injection);
	RUN(t_starttls_ok);
	RUN(t_starttls_bad_cert);
	RUN(t_close_midline_plain);
	RUN(t_close_midline_tls);
	RUN(t_stall_timeout_plain);
	RUN(t_stall_timeout_tls);
	RUN(t_low_speed);
	RUN(t_tls_to_plain_server);
	RUN(t_handshake_timeout);
	RUN(t_connect_refused);
	RUN(t_race_connect);
	RUN(t_unix_socket);
	RUN(t_cancel);
	RUN(t_wait_readable);
	rc = check_done();
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return rc;
}
