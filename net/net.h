/*
 * net.h -- connections for libetpan: our own mailstream_low drivers.
 *
 * Every connection mailhaul makes goes through here (notes/libetpan.md:
 * libetpan's own TLS verifies nothing and its plain socket spins on EOF).
 * The drivers:
 *   - connect non-blocking with a deadline (TCP via getaddrinfo, or a
 *     unix socket), close-on-exec;
 *   - time out every read and write (params.timeout_ms);
 *   - return -1, never 0, on EOF, timeout, TLS error or cancel, and keep
 *     the reason for net_error();
 *   - verify TLS always: TLS >= 1.2, SNI for DNS names, host name or IP
 *     checked, system store or ca_file, optional sha256 pin; a failure
 *     happens inside the handshake, before any protocol byte.
 * SIGPIPE must be ignored process-wide: call net_init() once in main().
 * Only net/ includes OpenSSL.
 */
#ifndef MAILHAUL_NET_H
#define MAILHAUL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <libetpan/libetpan.h>

#include "net/peer.h"
#include "util.h"

enum net_tls {
	NET_TLS_IMPLICIT = 0,	/* TLS from the first byte */
	NET_TLS_STARTTLS,	/* plain, upgraded by net_starttls() */
	NET_TLS_NONE,		/* plain for good (config says so) */
};

struct net_params {
	const char	*host;		/* name or IP literal; NULL with unix_path */
	unsigned	 port;
	const char	*unix_path;	/* AF_UNIX socket instead of host:port */
	enum net_tls	 tls;
	const char	*ca_file;	/* NULL: the system store */
	const char	*fingerprint;	/* NULL, or sha256 of the leaf cert,
					   64 hex digits, colons allowed.
					   Like mpop's tls_fingerprint: when
					   set, it replaces the chain and host
					   checks (a matching self-signed or
					   untrusted cert is accepted) and a
					   mismatch is always refused. */
	int		 connect_timeout_ms;	/* 0: 30 s */
	int		 timeout_ms;		/* per read/write; 0: 60 s */
	struct net_trust *trust;	/* borrowed: the system store, loaded
					   once (net_trust_load), for
					   ca_file NULL; NULL: this
					   connection loads its own */
};

/*
 * The system's trust store -- OpenSSL's default CA file and directory,
 * or SSL_CERT_FILE and SSL_CERT_DIR -- loaded once and shared by every
 * connection whose net_params point to it.  Loading Debian's bundle of
 * some 140 CAs costs about 20 ms of CPU, which each TLS connection paid
 * before; loaded before fork(), it is the children's too.  A
 * connection takes its own reference: the store may be freed while
 * connections made with it are open.  The file is read at load only: a
 * later change to the system's CAs is seen by the next load.
 * net_trust_load returns NULL with err (MH_ERR_LOCAL) when the store
 * cannot be set up; net_trust_free(NULL) is a no-op.
 */
struct net_trust;
struct net_trust *net_trust_load(struct mh_err *err);
void	net_trust_free(struct net_trust *t);

/* The peer's certificate as `mailhaul check` shows it: net/peer.h. */

/* Once per process, before any connection: ignores SIGPIPE, inits OpenSSL. */
void	net_init(void);

/*
 * Connects as p says.  With NET_TLS_IMPLICIT the handshake and every
 * certificate check are done before this returns.  Returns a new stream
 * (libetpan's, with our low driver; its buffer is 8 KiB) that the caller
 * hands to a libetpan session or frees with mailstream_close(); NULL on
 * failure with err filled: MH_ERR_TLS for certificate problems (the text
 * names the reason: self-signed, hostname mismatch, expired, untrusted
 * CA, pin mismatch), MH_ERR_TEMP for refused/unreachable/timeout.
 * p's strings are copied; p may go away after the call.
 */
mailstream *net_connect(const struct net_params *p, struct mh_err *err);

/*
 * After the protocol's STARTTLS command was answered OK: refuses (-1,
 * MH_ERR_PROTO) if any plaintext bytes are buffered in s (response
 * injection), else handshakes over the same fd with p's verification
 * settings and swaps s's low driver to TLS.  On failure the old driver is
 * left in place; the caller closes the session.
 */
/*
 * The connection race of net_connect (RFC 8305): one non-blocking
 * connect per address, in the order given, the next started 250 ms
 * after the last (at once when one fails), all racing until deadline
 * (the now_ms() clock).  Returns the first socket that connected
 * (non-blocking, close-on-exec, TCP_NODELAY; the caller owns it) and
 * closes the others, or -1 with *last_errno (ETIMEDOUT at the deadline).
 * Exposed for the unit tests; everyone else calls net_connect.
 */
struct addrinfo;
int	net_race_connect(struct addrinfo *const *addrs, size_t n,
	    int64_t deadline, int *last_errno);

int	net_starttls(mailstream *s, const struct net_params *p,
	    struct mh_err *err);

/*
 * True when plaintext bytes are buffered in s behind the reply just read:
 * after a STARTTLS/STLS reply that is a response injection (libetpan
 * refuses an OK followed by more bytes, and net_starttls refuses it
 * too).  The one test of it, for every protocol's error text.
 */
bool	net_plaintext_pending(mailstream *s);

/* True when s is one of our streams and is currently TLS. */
bool	net_is_tls(mailstream *s);

/* Fills info for a TLS stream; -1 when s is not TLS. */
int	net_peer_info(mailstream *s, struct net_peer_info *info);

/*
 * The reason of the last failed read/write/connect on s ("timed out
 * after 60 s", "connection closed by peer", a TLS error), or "" if none.
 * Valid until the next operation on s.
 */
const char *net_error(mailstream *s);

/*
 * Makes every pending and future read/write on s fail at once (safe from
 * a signal handler or another thread).  Used to drop a POP3 session
 * without sending QUIT.
 */
void	net_cancel(mailstream *s);

/*
 * Changes the per-operation timeout of an open stream; the low-speed
 * window (below) follows it.
 */
void	net_set_timeout(mailstream *s, int timeout_ms);

/*
 * The low-speed limit: a read fails (net_error: "the server sent less
 * than N bytes in S s") when fewer than min_bytes arrived while window_ms
 * were spent waiting in reads.  Only time inside reads counts (not ours
 * spent elsewhere), and not the wait for the first bytes after a write
 * of ours or in net_wait_readable: a server may think before it answers.
 * A per-read timeout alone lets a server that trickles a byte a second
 * hold a pass (and the account lock) for ever.  Default:
 * NET_LOW_SPEED_BYTES per twice the stream's timeout (window_ms 0);
 * min_bytes 0 lifts the limit.
 */
#define NET_LOW_SPEED_BYTES	256
void	net_set_low_speed(mailstream *s, size_t min_bytes, int window_ms);

/*
 * From now on a read fails (net_error: "the server sent a line longer
 * than N bytes") once more than max bytes arrived without a LF; 0 (the
 * default) lifts the limit, e.g. while a message body with lines of any
 * length is read.  For status and reply lines, whose length a server
 * should keep to a few hundred bytes: without a limit an endless line
 * grows memory until the connection times out, which a trickling server
 * can put off for ever.
 */
#define NET_LINE_LIMIT	65536
void	net_set_line_limit(mailstream *s, size_t max);

/*
 * Starts the line limit's count afresh: what was read so far was a
 * literal's bytes (an IMAP message body, handed on as it arrives),
 * whose lines may be of any length.  Only the bytes read since count
 * against the limit: at most one read (MAX_READ_PROGRESS in libetpan,
 * 64 KiB) of a literal, never a whole reply.
 */
void	net_line_reset(mailstream *s);

/*
 * Waits until s has data to read (already buffered counts) or timeout_ms
 * passes; also returns early when fd_wake (>= 0) becomes readable.
 * 1 data, 0 timeout, 2 woken, -1 error.  For IMAP IDLE.
 */
int	net_wait_readable(mailstream *s, int timeout_ms, int fd_wake);

/* Lower-case hex sha256, for digests of message data (net owns OpenSSL). */
struct net_sha256;
struct net_sha256 *net_sha256_new(void);
/*
 * Sets up what OpenSSL sets up on the first digest of a process (its
 * table of algorithm names and the SHA-256 method): called in a parent
 * before it forks workers, so that each of them does not do it again.
 */
void	net_sha256_warm(void);
void	net_sha256_update(struct net_sha256 *h, const void *data, size_t len);
/* Writes 64 hex digits and a NUL to out and frees h. */
void	net_sha256_final(struct net_sha256 *h, char out[65]);

/* Base64 of len bytes into a new string (for SASL); caller frees. */
char	*net_base64(const void *data, size_t len);
/* Decodes base64; returns a new buffer and its length, NULL if invalid. */
unsigned char *net_unbase64(const char *b64, size_t *len);

#endif
