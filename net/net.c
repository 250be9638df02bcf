/* net.c -- see net.h: our libetpan mailstream_low drivers, plain and TLS. */
#define _GNU_SOURCE		/* pipe2 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "net/net.h"

#define NET_DEFAULT_CONNECT_MS	30000
#define NET_DEFAULT_TIMEOUT_MS	60000
#define NET_STREAM_BUFFER	8192

/* One connection; the data of a mailstream_low (plain or TLS driver). */
struct net_conn {
	int		 fd;		/* owned; -1 once detached */
	SSL		*ssl;		/* owned; NULL for plain */
	int		 timeout_ms;
	int		 cancel_pipe[2];	/* self-pipe */
	atomic_int	 cancelled;
	int		 ssl_dead;	/* no SSL_shutdown after errors */
	size_t		 line_limit;	/* 0: none; see net_set_line_limit */
	size_t		 line_run;	/* bytes read since the last LF */
	size_t		 slow_min;	/* low-speed limit: bytes ... */
	int		 slow_window;	/* ... per this many ms spent
					   reading; 0: twice the timeout */
	bool		 slow_open;	/* a read since our last write */
	int64_t		 slow_waited;	/* ms spent in reads this window */
	size_t		 slow_bytes;	/* bytes read this window */
	char		 label[300];	/* "host:port" or the path */
	char		 error[256];	/* the last failure's reason */
	char		 leaf_sha256[100];	/* the server's certificate, */
	char		 leaf_subject[200];	/* as seen while verifying */
};

enum wait_result { WAIT_READY, WAIT_TIMEOUT, WAIT_CANCEL, WAIT_ERROR };

static ssize_t	 drv_read(mailstream_low *, void *, size_t);
static ssize_t	 drv_write(mailstream_low *, const void *, size_t);
static int	 drv_close(mailstream_low *);
static int	 drv_get_fd(mailstream_low *);
static void	 drv_free(mailstream_low *);
static void	 drv_cancel(mailstream_low *);
static carray	*drv_cert_chain(mailstream_low *);

static mailstream_low_driver net_plain_driver = {
	.mailstream_read = drv_read,
	.mailstream_write = drv_write,
	.mailstream_close = drv_close,
	.mailstream_get_fd = drv_get_fd,
	.mailstream_free = drv_free,
	.mailstream_cancel = drv_cancel,
	.mailstream_get_cancel = NULL,
	.mailstream_get_certificate_chain = drv_cert_chain,
	.mailstream_setup_idle = NULL,
	.mailstream_unsetup_idle = NULL,
	.mailstream_interrupt_idle = NULL,
};

static mailstream_low_driver net_tls_driver = {
	.mailstream_read = drv_read,
	.mailstream_write = drv_write,
	.mailstream_close = drv_close,
	.mailstream_get_fd = drv_get_fd,
	.mailstream_free = drv_free,
	.mailstream_cancel = drv_cancel,
	.mailstream_get_cancel = NULL,
	.mailstream_get_certificate_chain = drv_cert_chain,
	.mailstream_setup_idle = NULL,
	.mailstream_unsetup_idle = NULL,
	.mailstream_interrupt_idle = NULL,
};

void
net_init(void)
{
	signal(SIGPIPE, SIG_IGN);
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS |
	    OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
}

/* --- small helpers ------------------------------------------------------ */

static int
effective_ms(int ms, int dflt)
{
	return ms > 0 ? ms : dflt;
}

static void
format_secs(char *buf, size_t size, int ms)
{
	if (ms % 1000 == 0)
		snprintf(buf, size, "%d s", ms / 1000);
	else
		snprintf(buf, size, "%.1f s", ms / 1000.0);
}

static void
conn_set_error(struct net_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
conn_set_error(struct net_conn *c, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(c->error, sizeof c->error, fmt, ap);
	va_end(ap);
}

/* The text of the newest OpenSSL error, or fallback. */
static void
ssl_error_text(char *buf, size_t size, const char *fallback)
{
	unsigned long	 e = ERR_peek_last_error();
	const char	*reason = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (e == 0)
		snprintf(buf, size, "%s", fallback);
	else if (reason != NULL)
		snprintf(buf, size, "%s", reason);
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
}

static int
is_ip_literal(const char *host)
{
	unsigned char	buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

static struct net_conn *
conn_new(int fd, int timeout_ms)
{
	struct net_conn	*c = xcalloc(1, sizeof *c);

	c->fd = fd;
	c->timeout_ms = effective_ms(timeout_ms, NET_DEFAULT_TIMEOUT_MS);
	c->slow_min = NET_LOW_SPEED_BYTES;
	c->cancel_pipe[0] = c->cancel_pipe[1] = -1;
	atomic_init(&c->cancelled, 0);
	return c;
}

static void
conn_free(struct net_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	if (c->fd != -1)
		close(c->fd);
	if (c->cancel_pipe[0] != -1)
		close(c->cancel_pipe[0]);
	if (c->cancel_pipe[1] != -1)
		close(c->cancel_pipe[1]);
	free(c);
}

/* Our conn behind s, or NULL when s is not one of our streams. */
static struct net_conn *
stream_conn(mailstream *s)
{
	mailstream_low	*low;

	if (s == NULL || (low = s->low) == NULL)
		return NULL;
	if (low->driver != &net_plain_driver && low->driver != &net_tls_driver)
		return NULL;
	return low->data;
}

/*
 * Polls c's fd for events (and the cancel pipe) until deadline (now_ms()
 * based).  On timeout or cancel the reason goes to c->error.
 */
static enum wait_result
conn_wait(struct net_conn *c, short events, int64_t deadline, int total_ms)
{
	struct pollfd	pfd[2];
	int64_t		left;
	int		n;
	char		secs[32];

	for (;;) {
		if (atomic_load(&c->cancelled)) {
			conn_set_error(c, "cancelled");
			return WAIT_CANCEL;
		}
		left = deadline - now_ms();
		if (left <= 0) {
			format_secs(secs, sizeof secs, total_ms);
			conn_set_error(c, "timed out after %s", secs);
			return WAIT_TIMEOUT;
		}
		pfd[0].fd = c->fd;
		pfd[0].events = events;
		pfd[0].revents = 0;
		pfd[1].fd = c->cancel_pipe[0];
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		n = poll(pfd, 2, left > 1000000 ? 1000000 : (int)left);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			conn_set_error(c, "poll: %s", strerror(errno));
			return WAIT_ERROR;
		}
		if (pfd[1].revents != 0 || atomic_load(&c->cancelled)) {
			conn_set_error(c, "cancelled");
			return WAIT_CANCEL;
		}
		if (pfd[0].revents != 0)
			return WAIT_READY;
	}
}

/* The per-operation timeout: libetpan's low timeout (s) wins if set. */
static int
op_timeout_ms(mailstream_low *low, struct net_conn *c)
{
	if (low != NULL && low->timeout > 0 && low->timeout < 86400)
		return (int)low->timeout * 1000;
	return c->timeout_ms;
}

/* --- the driver --------------------------------------------------------- */

/*
 * One SSL or socket step failed with want (POLLIN/POLLOUT) or a final
 * error: returns the events to wait for, or 0 after setting c->error.
 */
static short
ssl_want(struct net_conn *c, int rc, const char *what)
{
	int	e = SSL_get_error(c->ssl, rc);
	char	buf[200];

	switch (e) {
	case SSL_ERROR_WANT_READ:
		return POLLIN;
	case SSL_ERROR_WANT_WRITE:
		return POLLOUT;
	case SSL_ERROR_ZERO_RETURN:
		conn_set_error(c, "connection closed by peer");
		return 0;
	case SSL_ERROR_SYSCALL:
		c->ssl_dead = 1;
		if (errno == 0 || ERR_peek_last_error() != 0) {
			ssl_error_text(buf, sizeof buf,
			    "connection closed by peer");
			conn_set_error(c, "%s", buf);
		} else
			conn_set_error(c, "%s: %s", what, strerror(errno));
		ERR_clear_error();
		return 0;
	default:
		c->ssl_dead = 1;
		ssl_error_text(buf, sizeof buf, "TLS error");
		conn_set_error(c, "TLS error: %s", buf);
		return 0;
	}
}

/* True (with the reason set) when c was cancelled or closed. */
static bool
conn_unusable(struct net_conn *c)
{
	if (atomic_load(&c->cancelled)) {
		conn_set_error(c, "cancelled");
		return true;
	}
	if (c->fd == -1) {
		conn_set_error(c, "connection closed");
		return true;
	}
	return false;
}

/*
 * Counts the bytes of n just read that follow the last LF; fails the read
 * when that run passes the line limit (a server that never ends a line
 * would otherwise grow libetpan's line buffer without bound).
 */
static ssize_t
line_check(struct net_conn *c, const void *buf, ssize_t n)
{
	const char	*lf;

	if (n <= 0)
		return n;
	if ((lf = memrchr(buf, '\n', (size_t)n)) != NULL)
		c->line_run = (size_t)n - (size_t)(lf - (const char *)buf) - 1;
	else
		c->line_run += (size_t)n;
	if (c->line_limit > 0 && c->line_run > c->line_limit) {
		conn_set_error(c, "the server sent a line longer than %zu "
		    "bytes", c->line_limit);
		return -1;
	}
	return n;
}

static ssize_t
drv_read_raw(mailstream_low *low, void *buf, size_t len)
{
	struct net_conn	*c = low->data;
	int		 ms = op_timeout_ms(low, c);
	int64_t		 deadline = now_ms() + ms;
	ssize_t		 n;
	size_t		 got;
	short		 ev;

	if (len == 0)
		return 0;
	for (;;) {
		if (conn_unusable(c))
			return -1;
		if (c->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			n = SSL_read_ex(c->ssl, buf, len, &got);
			if (n == 1)
				return (ssize_t)got;
			if ((ev = ssl_want(c, (int)n, "read")) == 0)
				return -1;
		} else {
			n = recv(c->fd, buf, len, 0);
			if (n > 0)
				return n;
			if (n == 0) {
				conn_set_error(c, "connection closed by peer");
				return -1;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				conn_set_error(c, "read: %s", strerror(errno));
				return -1;
			}
			ev = POLLIN;
		}
		if (conn_wait(c, ev, deadline, ms) != WAIT_READY)
			return -1;
	}
}

/*
 * Counts n bytes that a read which took waited ms returned into the
 * low-speed window (net.h) and fails the read when the window is full of
 * waiting with too few bytes in it.  The first read after a write of ours
 * is not counted: the server may think before it answers.
 */
static ssize_t
speed_check(struct net_conn *c, ssize_t n, int64_t waited)
{
	int64_t	window;
	char	secs[32];

	if (n <= 0 || c->slow_min == 0)
		return n;
	if (!c->slow_open) {
		c->slow_open = true;
		c->slow_waited = 0;
		c->slow_bytes = 0;
		return n;
	}
	window = c->slow_window > 0 ? c->slow_window : 2 * (int64_t)
	    (c->timeout_ms > 0 ? c->timeout_ms : NET_DEFAULT_TIMEOUT_MS);
	c->slow_waited += waited;
	c->slow_bytes += (size_t)n;
	if (c->slow_waited < window)
		return n;
	if (c->slow_bytes < c->slow_min) {
		format_secs(secs, sizeof secs, (int)c->slow_waited);
		conn_set_error(c, "the server sent less than %zu bytes in %s",
		    c->slow_min, secs);
		return -1;
	}
	c->slow_waited = 0;
	c->slow_bytes = 0;
	return n;
}

static ssize_t
drv_read(mailstream_low *low, void *buf, size_t len)
{
	struct net_conn	*c = low->data;
	int64_t		 t0 = now_ms();
	ssize_t		 n;

	n = line_check(c, buf, drv_read_raw(low, buf, len));
	return speed_check(c, n, now_ms() - t0);
}

static ssize_t
drv_write(mailstream_low *low, const void *buf, size_t len)
{
	struct net_conn	*c = low->data;
	int		 ms = op_timeout_ms(low, c);
	int64_t		 deadline = now_ms() + ms;
	ssize_t		 n;
	size_t		 done;
	short		 ev;

	if (len == 0)
		return 0;
	c->slow_open = false;	/* waiting for the reply is not slowness */
	for (;;) {
		if (conn_unusable(c))
			return -1;
		if (c->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			n = SSL_write_ex(c->ssl, buf, len, &done);
			if (n == 1)
				return (ssize_t)done;
			if ((ev = ssl_want(c, (int)n, "write")) == 0)
				return -1;
		} else {
			n = send(c->fd, buf, len, MSG_NOSIGNAL);
			if (n > 0)
				return n;
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && errno != EAGAIN &&
			    errno != EWOULDBLOCK) {
				conn_set_error(c, "write: %s", strerror(errno));
				return -1;
			}
			ev = POLLOUT;
		}
		if (conn_wait(c, ev, deadline, ms) != WAIT_READY)
			return -1;
	}
}

static int
drv_close(mailstream_low *low)
{
	struct net_conn	*c = low->data;

	if (c->fd == -1)
		return 0;
	if (c->ssl != NULL && !c->ssl_dead && !atomic_load(&c->cancelled)) {
		/* One non-blocking try at close_notify; never wait. */
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	close(c->fd);
	c->fd = -1;
	return 0;
}

static int
drv_get_fd(mailstream_low *low)
{
	struct net_conn	*c = low->data;

	return c->fd;
}

static void
drv_free(mailstream_low *low)
{
	conn_free(low->data);
	free(low);
}

/* Async-signal-safe: an atomic store and a write(2). */
static void
drv_cancel(mailstream_low *low)
{
	struct net_conn	*c = low->data;
	int		 saved = errno;

	atomic_store(&c->cancelled, 1);
	if (c->cancel_pipe[1] != -1)
		(void)!write(c->cancel_pipe[1], "x", 1);
	errno = saved;
}

static carray *
drv_cert_chain(mailstream_low *low)
{
	struct net_conn	*c = low->data;
	STACK_OF(X509)	*chain;
	carray		*out;
	MMAPString	*str;
	unsigned char	*der, *p;
	int		 i, len;

	if (c->ssl == NULL ||
	    (chain = SSL_get_peer_cert_chain(c->ssl)) == NULL)
		return NULL;
	if ((out = carray_new(4)) == NULL)
		return NULL;
	for (i = 0; i < sk_X509_num(chain); i++) {
		len = i2d_X509(sk_X509_value(chain, i), NULL);
		if (len <= 0)
			continue;
		der = p = xmalloc((size_t)len);
		i2d_X509(sk_X509_value(chain, i), &p);
		str = mmap_string_new_len((char *)der, (size_t)len);
		free(der);
		if (str != NULL && carray_add(out, str, NULL) != 0)
			mmap_string_free(str);
	}
	return out;
}

/* --- connecting --------------------------------------------------------- */

/* Waits for a non-blocking connect on fd; 0 or -1 with errno. */
static int
wait_connect(int fd, int64_t deadline)
{
	struct pollfd	pfd;
	int64_t		left;
	int		n, soerr;
	socklen_t	len = sizeof soerr;

	for (;;) {
		if ((left = deadline - now_ms()) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		pfd.revents = 0;
		n = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 1)
			break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		return -1;
	if (soerr != 0) {
		errno = soerr;
		return -1;
	}
	return 0;
}

/* A non-blocking socket connected to sa (a unix socket), or -1 with
   errno. */
static int
connect_one(int family, const struct sockaddr *sa, socklen_t salen,
    int64_t deadline)
{
	int	fd, saved;

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	if (connect(fd, sa, salen) == 0)
		return fd;
	if ((errno == EINPROGRESS || errno == EAGAIN || errno == EINTR) &&
	    wait_connect(fd, deadline) == 0)
		return fd;
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/*
 * The addresses of res in the order RFC 8305 (section 4) asks: the
 * first family getaddrinfo preferred, then alternating with the other.
 * Returns a new array of n pointers into res.
 */
static struct addrinfo **
interleave(struct addrinfo *res, size_t *n)
{
	struct addrinfo	**out, *ai, *a = NULL, *b = NULL;
	size_t		  count = 0, i = 0;
	int		  first;

	for (ai = res; ai != NULL; ai = ai->ai_next)
		count++;
	out = xcalloc(count == 0 ? 1 : count, sizeof *out);
	first = res != NULL ? res->ai_family : AF_UNSPEC;
	a = res;
	b = res;
	while (i < count) {
		while (a != NULL && a->ai_family != first)
			a = a->ai_next;
		if (a != NULL) {
			out[i++] = a;
			a = a->ai_next;
		}
		while (b != NULL && b->ai_family == first)
			b = b->ai_next;
		if (b != NULL) {
			out[i++] = b;
			b = b->ai_next;
		}
	}
	*n = count;
	return out;
}

/* Starts a non-blocking connect: the socket, or -1 with errno. */
static int
connect_start(const struct addrinfo *ai)
{
	int	fd, one = 1, saved;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd == -1)
		return -1;
	/* commands and the end of DATA are small writes that must not wait
	   for the peer's delayed ACK (Nagle) */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
	    errno == EINPROGRESS || errno == EAGAIN || errno == EINTR)
		return fd;
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

#define HE_DELAY_MS	250	/* RFC 8305's Connection Attempt Delay */

/*
 * Happy eyeballs (net.h): a host whose IPv6 address drops SYNs is reached
 * over IPv4 within a quarter of a second instead of losing the whole
 * connect timeout on the first address.
 */
int
net_race_connect(struct addrinfo *const *addrs, size_t n, int64_t deadline,
    int *last)
{
	struct pollfd	*pfd;
	size_t		 next = 0, live = 0, i;
	int64_t		 next_at = 0, now, wait;
	int		 fd = -1, soerr, rc;
	socklen_t	 len;

	pfd = xcalloc(n == 0 ? 1 : n, sizeof *pfd);
	for (;;) {
		now = now_ms();
		while (next < n && (now >= next_at || live == 0)) {
			pfd[next].events = POLLOUT;
			if ((pfd[next].fd = connect_start(addrs[next])) == -1) {
				*last = errno;
				next++;
				continue;
			}
			live++;
			next++;
			next_at = now + HE_DELAY_MS;
			break;
		}
		if (live == 0)
			break;
		if ((wait = deadline - now) <= 0) {
			*last = ETIMEDOUT;
			break;
		}
		if (next < n && next_at - now < wait)
			wait = next_at - now;
		for (i = 0; i < next; i++)
			pfd[i].revents = 0;
		rc = poll(pfd, next, (int)(wait > 1000000 ? 1000000 : wait));
		if (rc == -1 && errno != EINTR) {
			*last = errno;
			break;
		}
		for (i = 0; rc > 0 && i < next; i++) {
			if (pfd[i].fd < 0 || pfd[i].revents == 0)
				continue;
			len = sizeof soerr;
			if (getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &soerr,
			    &len) == -1)
				soerr = errno;
			if (soerr == 0) {
				fd = pfd[i].fd;
				pfd[i].fd = -1;
				goto out;
			}
			*last = soerr;
			close(pfd[i].fd);
			pfd[i].fd = -1;
			live--;
			next_at = 0;	/* a failure starts the next at once */
		}
	}
out:
	for (i = 0; i < next; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	free(pfd);
	return fd;
}

static int
connect_tcp(const struct net_params *p, const char *label, int64_t deadline,
    int total_ms, struct mh_err *err)
{
	struct addrinfo	 hints, *res = NULL, **addrs;
	char		 port[16], secs[32];
	int		 fd, rc, last = ECONNREFUSED;
	size_t		 n;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof port, "%u", p->port);
	if ((rc = getaddrinfo(p->host, port, &hints, &res)) != 0) {
		mh_err_set(err, MH_ERR_TEMP, "cannot resolve %s: %s", p->host,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	addrs = interleave(res, &n);
	fd = net_race_connect(addrs, n, deadline, &last);
	free(addrs);
	freeaddrinfo(res);
	if (fd == -1) {
		if (last == ETIMEDOUT) {
			format_secs(secs, sizeof secs, total_ms);
			mh_err_set(err, MH_ERR_TEMP,
			    "cannot connect to %s: timed out after %s", label,
			    secs);
		} else
			mh_err_set(err, MH_ERR_TEMP, "cannot connect to %s: %s",
			    label, strerror(last));
	}
	return fd;
}

static int
connect_unix(const struct net_params *p, int64_t deadline,
    struct mh_err *err)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(p->unix_path) >= sizeof sun.sun_path) {
		mh_err_set(err, MH_ERR_LOCAL, "socket path too long: %s",
		    p->unix_path);
		return -1;
	}
	strcpy(sun.sun_path, p->unix_path);
	fd = connect_one(AF_UNIX, (struct sockaddr *)&sun, sizeof sun,
	    deadline);
	if (fd == -1)
		mh_err_set(err, MH_ERR_TEMP, "cannot connect to %s: %s",
		    p->unix_path, strerror(errno));
	return fd;
}

/* --- TLS ---------------------------------------------------------------- */

/* Parses a pin (64 hex digits, colons allowed) into 32 bytes. */
static int
parse_pin(const char *s, unsigned char out[32])
{
	size_t	n = 0;
	int	hi = -1, v;

	for (; *s != '\0'; s++) {
		if (*s == ':' || *s == ' ')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			return -1;
		if (hi == -1)
			hi = v;
		else {
			if (n == 32)
				return -1;
			out[n++] = (unsigned char)(hi << 4 | v);
			hi = -1;
		}
	}
	return n == 32 && hi == -1 ? 0 : -1;
}

static void
hex_colons(const unsigned char *md, size_t len, char *out, size_t size)
{
	size_t	i, o = 0;

	for (i = 0; i < len && o + 3 < size; i++)
		o += (size_t)snprintf(out + o, size - o, i ? ":%02X" : "%02X",
		    md[i]);
	out[o] = '\0';
}

/*
 * Notes the server's certificate (sha256, subject) in its connection
 * while the chain is verified, so that a failure can show what to pin:
 * OpenSSL keeps no peer certificate after a failed verification.
 */
static void
note_leaf(X509_STORE_CTX *ctx)
{
	SSL		*ssl = X509_STORE_CTX_get_ex_data(ctx,
			    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct net_conn	*c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	X509		*leaf = X509_STORE_CTX_get0_cert(ctx);
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned	 n = 0;

	if (c == NULL || leaf == NULL || c->leaf_sha256[0] != '\0')
		return;
	if (X509_digest(leaf, EVP_sha256(), md, &n) == 1)
		hex_colons(md, n, c->leaf_sha256, sizeof c->leaf_sha256);
	X509_NAME_oneline(X509_get_subject_name(leaf), c->leaf_subject,
	    sizeof c->leaf_subject);
}

/* Verified connections: the chain's verdict, the leaf noted. */
static int
verify_note(int ok, X509_STORE_CTX *ctx)
{
	note_leaf(ctx);
	return ok;
}

/* Pinned connections: remember the chain's verdict, decide after. */
static int
verify_accept_all(int ok, X509_STORE_CTX *ctx)
{
	(void)ok;
	note_leaf(ctx);
	return 1;
}

static const char	*verify_hint(long);

/* What a failed verification adds: the certificate and how to pin it. */
static void
verify_failed(struct net_conn *c, long vr, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_TLS, "TLS certificate verification failed for "
	    "%s: %s%s", c->label, vr != X509_V_OK ?
	    X509_verify_cert_error_string(vr) : "no certificate",
	    verify_hint(vr));
	if (c->leaf_sha256[0] == '\0')
		return;
	mh_err_set(err, MH_ERR_TLS, "TLS certificate verification failed for "
	    "%s: %s%s; its certificate: subject %s, sha256 %s (if you "
	    "trust it: set ca_file to its CA, or pin it: fingerprint = %s)",
	    c->label, X509_verify_cert_error_string(vr), verify_hint(vr),
	    c->leaf_subject, c->leaf_sha256, c->leaf_sha256);
}

/* A hint for a failed handshake, from OpenSSL's reason; "" if none. */
static const char *
handshake_hint(const char *why)
{
	if (strstr(why, "wrong version number") != NULL ||
	    strstr(why, "packet length too long") != NULL ||
	    strstr(why, "unexpected eof") != NULL)
		return " (the server does not speak TLS first on this port: "
		    "for a port that starts in clear (110, 143, 587, 25) "
		    "set tls = starttls, or use the implicit-TLS port: 995 "
		    "POP3S, 993 IMAPS, 465 SMTPS)";
	if (strstr(why, "alert internal error") != NULL)
		return " (the server failed its own side of the handshake: "
		    "OpenSMTPD 6.8 with OpenSSL 3, as in Debian 12, does so "
		    "every time)";
	return "";
}

struct net_trust {
	X509_STORE	*store;
};

struct net_trust *
net_trust_load(struct mh_err *err)
{
	struct net_trust	*t = xcalloc(1, sizeof *t);
	char			 buf[200];

	if ((t->store = X509_STORE_new()) == NULL ||
	    X509_STORE_set_default_paths(t->store) != 1) {
		ssl_error_text(buf, sizeof buf, "out of memory");
		mh_err_set(err, MH_ERR_LOCAL, "cannot load the system's "
		    "CA certificates: %s", buf);
		net_trust_free(t);
		return NULL;
	}
	return t;
}

void
net_trust_free(struct net_trust *t)
{
	if (t == NULL)
		return;
	X509_STORE_free(t->store);
	free(t);
}

static SSL_CTX *
tls_ctx_new(const struct net_params *p, struct mh_err *err)
{
	SSL_CTX	*ctx;
	char	 buf[200];

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER,
	    p->fingerprint != NULL ? verify_accept_all : verify_note);
	if (p->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, p->ca_file, NULL) != 1) {
			ssl_error_text(buf, sizeof buf, "unreadable");
			mh_err_set(err, MH_ERR_LOCAL,
			    "cannot load CA file %s: %s", p->ca_file, buf);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (p->trust != NULL) {
		/* the context takes a reference of its own */
		SSL_CTX_set1_cert_store(ctx, p->trust->store);
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		goto fail;
	return ctx;
fail:
	ssl_error_text(buf, sizeof buf, "out of memory");
	mh_err_set(err, MH_ERR_LOCAL, "TLS setup: %s", buf);
	SSL_CTX_free(ctx);
	return NULL;
}

static const char *
verify_hint(long code)
{
	switch (code) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_UNTRUSTED:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		return " (untrusted CA)";
	default:
		return "";
	}
}

/* After the handshake with a pin: compare the leaf's sha256. */
static int
check_pin(SSL *ssl, const char *pin, struct mh_err *err)
{
	unsigned char	 want[32], got[EVP_MAX_MD_SIZE];
	unsigned	 n = 0;
	char		 ws[100], gs[100];
	X509		*leaf = SSL_get0_peer_certificate(ssl);

	if (parse_pin(pin, want) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "invalid sha256 fingerprint: %s",
		    pin);
		return -1;
	}
	if (leaf == NULL || X509_digest(leaf, EVP_sha256(), got, &n) != 1 ||
	    n != 32) {
		mh_err_set(err, MH_ERR_TLS, "no peer certificate to pin");
		return -1;
	}
	if (CRYPTO_memcmp(want, got, 32) != 0) {
		hex_colons(want, 32, ws, sizeof ws);
		hex_colons(got, 32, gs, sizeof gs);
		mh_err_set(err, MH_ERR_TLS,
		    "certificate fingerprint mismatch: expected %s, got %s",
		    ws, gs);
		return -1;
	}
	return 0;
}

/*
 * Handshakes c (fd set, ssl NULL) as a client of p within deadline and
 * checks the certificate.  On failure err says why and c->ssl is freed.
 */
static int
tls_handshake(struct net_conn *c, const struct net_params *p,
    int64_t deadline, int total_ms, struct mh_err *err)
{
	SSL_CTX			*ctx;
	X509_VERIFY_PARAM	*vp;
	long			 vr;
	int			 rc = -1, r;
	short			 ev;
	char			 buf[200];

	if (p->host == NULL || *p->host == '\0') {
		mh_err_set(err, MH_ERR_LOCAL, "TLS to %s needs a host name",
		    c->label);
		return -1;
	}
	if ((ctx = tls_ctx_new(p, err)) == NULL)
		return -1;
	c->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);		/* the SSL keeps its reference */
	if (c->ssl == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "TLS setup: out of memory");
		return -1;
	}
	SSL_set_app_data(c->ssl, c);
	c->leaf_sha256[0] = '\0';
	vp = SSL_get0_param(c->ssl);
	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (is_ip_literal(p->host))
		r = X509_VERIFY_PARAM_set1_ip_asc(vp, p->host);
	else
		r = X509_VERIFY_PARAM_set1_host(vp, p->host, 0) == 1 &&
		    SSL_set_tlsext_host_name(c->ssl, p->host) == 1;
	if (r != 1 || SSL_set_fd(c->ssl, c->fd) != 1) {
		ssl_error_text(buf, sizeof buf, "bad host name");
		mh_err_set(err, MH_ERR_LOCAL, "TLS setup for %s: %s",
		    c->label, buf);
		goto out;
	}
	for (;;) {
		ERR_clear_error();
		errno = 0;
		if ((r = SSL_connect(c->ssl)) == 1)
			break;
		vr = SSL_get_verify_result(c->ssl);
		if (vr != X509_V_OK && p->fingerprint == NULL) {
			ERR_clear_error();
			verify_failed(c, vr, err);
			goto out;
		}
		if ((ev = ssl_want(c, r, "handshake")) == 0) {
			mh_err_set(err, MH_ERR_TLS,
			    "TLS handshake with %s failed: %s%s", c->label,
			    c->error, handshake_hint(c->error));
			goto out;
		}
		if (conn_wait(c, ev, deadline, total_ms) != WAIT_READY) {
			mh_err_set(err, MH_ERR_TEMP,
			    "TLS handshake with %s: %s", c->label, c->error);
			goto out;
		}
	}
	if (p->fingerprint != NULL) {
		if (check_pin(c->ssl, p->fingerprint, err) == -1)
			goto out;
	} else if ((vr = SSL_get_verify_result(c->ssl)) != X509_V_OK ||
	    SSL_get0_peer_certificate(c->ssl) == NULL) {
		verify_failed(c, vr, err);
		goto out;
	}
	c->error[0] = '\0';
	rc = 0;
out:
	if (rc == -1) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	return rc;
}

/* --- the public API ----------------------------------------------------- */

static int
make_cancel_pipe(struct net_conn *c, struct mh_err *err)
{
	if (pipe2(c->cancel_pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
		mh_err_set(err, MH_ERR_LOCAL, "pipe: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void
make_label(char *buf, size_t size, const struct net_params *p)
{
	if (p->unix_path != NULL)
		snprintf(buf, size, "%s", p->unix_path);
	else if (p->host != NULL && strchr(p->host, ':') != NULL)
		snprintf(buf, size, "[%s]:%u", p->host, p->port);
	else
		snprintf(buf, size, "%s:%u", p->host ? p->host : "?", p->port);
}

mailstream *
net_connect(const struct net_params *p, struct mh_err *err)
{
	struct net_conn	*c = NULL;
	mailstream_low	*low = NULL;
	mailstream	*s = NULL;
	char		 label[300];
	int		 total = effective_ms(p->connect_timeout_ms,
			     NET_DEFAULT_CONNECT_MS);
	int64_t		 deadline = now_ms() + total;
	int		 fd;

	make_label(label, sizeof label, p);
	if (p->unix_path != NULL)
		fd = connect_unix(p, deadline, err);
	else if (p->host == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "no host to connect to");
		fd = -1;
	} else
		fd = connect_tcp(p, label, deadline, total, err);
	if (fd == -1)
		return NULL;
	c = conn_new(fd, p->timeout_ms);
	snprintf(c->label, sizeof c->label, "%s", label);
	if (make_cancel_pipe(c, err) == -1)
		goto out;
	if (p->tls == NET_TLS_IMPLICIT &&
	    tls_handshake(c, p, deadline, total, err) == -1)
		goto out;
	low = mailstream_low_new(c, c->ssl != NULL ? &net_tls_driver :
	    &net_plain_driver);
	if (low == NULL)
		goto nomem;
	c = NULL;			/* low owns it */
	if ((s = mailstream_new(low, NET_STREAM_BUFFER)) == NULL)
		goto nomem;
	low = NULL;
	goto out;
nomem:
	mh_err_set(err, MH_ERR_LOCAL, "out of memory");
out:
	if (low != NULL)
		mailstream_low_free(low);
	conn_free(c);
	return s;
}

int
net_starttls(mailstream *s, const struct net_params *p, struct mh_err *err)
{
	struct net_conn	*old = stream_conn(s), *c = NULL;
	mailstream_low	*oldlow, *low;
	int		 total = effective_ms(p->connect_timeout_ms,
			     NET_DEFAULT_CONNECT_MS);
	int		 rc = -1;

	if (old == NULL || old->ssl != NULL || old->fd == -1) {
		mh_err_set(err, MH_ERR_LOCAL,
		    "STARTTLS on a stream that is not open plain");
		return -1;
	}
	if (net_plaintext_pending(s)) {
		mh_err_set(err, MH_ERR_PROTO,
		    "STARTTLS response injection: %zu plaintext bytes "
		    "buffered", s->read_buffer_len);
		return -1;
	}
	if (s->write_buffer_len != 0) {
		mh_err_set(err, MH_ERR_LOCAL,
		    "STARTTLS with %zu unsent bytes", s->write_buffer_len);
		return -1;
	}
	c = conn_new(old->fd, old->timeout_ms);
	c->line_limit = old->line_limit;
	memcpy(c->label, old->label, sizeof c->label);
	c->cancel_pipe[0] = old->cancel_pipe[0];
	c->cancel_pipe[1] = old->cancel_pipe[1];
	atomic_store(&c->cancelled, atomic_load(&old->cancelled));
	if (tls_handshake(c, p, now_ms() + total, total, err) == -1) {
		/* The fd and pipe still belong to old. */
		c->fd = c->cancel_pipe[0] = c->cancel_pipe[1] = -1;
		goto out;
	}
	if ((low = mailstream_low_new(c, &net_tls_driver)) == NULL) {
		c->fd = c->cancel_pipe[0] = c->cancel_pipe[1] = -1;
		mh_err_set(err, MH_ERR_LOCAL, "out of memory");
		goto out;
	}
	c = NULL;
	oldlow = s->low;
	low->timeout = oldlow->timeout;
	low->privacy = oldlow->privacy;
	low->logger = oldlow->logger;
	low->logger_context = oldlow->logger_context;
	/* Detach: freeing the plain low must not close what TLS now uses. */
	old->fd = old->cancel_pipe[0] = old->cancel_pipe[1] = -1;
	mailstream_set_low(s, low);
	mailstream_low_free(oldlow);
	rc = 0;
out:
	conn_free(c);
	return rc;
}

bool
net_plaintext_pending(mailstream *s)
{
	return s != NULL && s->read_buffer_len != 0;
}

bool
net_is_tls(mailstream *s)
{
	struct net_conn	*c = stream_conn(s);

	return c != NULL && c->ssl != NULL;
}

static time_t
asn1_time(const ASN1_TIME *t)
{
	struct tm	tm;

	memset(&tm, 0, sizeof tm);
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

int
net_peer_info(mailstream *s, struct net_peer_info *info)
{
	struct net_conn	*c = stream_conn(s);
	X509		*leaf;
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned	 n = 0;

	memset(info, 0, sizeof *info);
	if (c == NULL || c->ssl == NULL ||
	    (leaf = SSL_get0_peer_certificate(c->ssl)) == NULL)
		return -1;
	X509_NAME_oneline(X509_get_subject_name(leaf), info->subject,
	    sizeof info->subject);
	X509_NAME_oneline(X509_get_issuer_name(leaf), info->issuer,
	    sizeof info->issuer);
	info->not_before = asn1_time(X509_get0_notBefore(leaf));
	info->not_after = asn1_time(X509_get0_notAfter(leaf));
	if (X509_digest(leaf, EVP_sha256(), md, &n) == 1)
		hex_colons(md, n, info->sha256, sizeof info->sha256);
	snprintf(info->version, sizeof info->version, "%s",
	    SSL_get_version(c->ssl));
	snprintf(info->cipher, sizeof info->cipher, "%s",
	    SSL_get_cipher_name(c->ssl));
	return 0;
}

const char *
net_error(mailstream *s)
{
	struct net_conn	*c = stream_conn(s);

	return c != NULL ? c->error : "";
}

void
net_cancel(mailstream *s)
{
	if (stream_conn(s) != NULL)
		drv_cancel(s->low);
}

void
net_set_timeout(mailstream *s, int timeout_ms)
{
	struct net_conn	*c = stream_conn(s);

	if (c == NULL)
		return;
	c->timeout_ms = effective_ms(timeout_ms, NET_DEFAULT_TIMEOUT_MS);
	s->low->timeout = 0;		/* ours is the one that counts */
}

void
net_set_low_speed(mailstream *s, size_t min_bytes, int window_ms)
{
	struct net_conn	*c = stream_conn(s);

	if (c == NULL)
		return;
	c->slow_min = min_bytes;
	c->slow_window = window_ms;
	c->slow_open = false;
}

void
net_set_line_limit(mailstream *s, size_t max)
{
	struct net_conn	*c = stream_conn(s);

	if (c != NULL)
		c->line_limit = max;
}

void
net_line_reset(mailstream *s)
{
	struct net_conn	*c = stream_conn(s);

	if (c != NULL)
		c->line_run = 0;
}

/*
 * TLS: is there application data (or an error to report) behind the
 * readable socket?  1 yes, 0 only handshake records so far.
 */
static int
tls_has_data(struct net_conn *c)
{
	char	byte;
	size_t	n;
	int	r, e;

	ERR_clear_error();
	if ((r = SSL_peek_ex(c->ssl, &byte, 1, &n)) == 1)
		return 1;
	e = SSL_get_error(c->ssl, r);
	ERR_clear_error();
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : 1;
}

int
net_wait_readable(mailstream *s, int timeout_ms, int fd_wake)
{
	struct net_conn	*c = stream_conn(s);
	struct pollfd	 pfd[3];
	int64_t		 deadline = now_ms() + timeout_ms, left;
	int		 n;

	if (c == NULL || c->fd == -1)
		return -1;
	c->slow_open = false;	/* waiting for news is not slowness */
	if (s->read_buffer_len > 0)
		return 1;
	if (c->ssl != NULL && SSL_pending(c->ssl) > 0)
		return 1;
	for (;;) {
		if (atomic_load(&c->cancelled)) {
			conn_set_error(c, "cancelled");
			return -1;
		}
		left = deadline - now_ms();
		if (left < 0)
			left = 0;
		pfd[0].fd = c->fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = c->cancel_pipe[0];
		pfd[1].events = POLLIN;
		pfd[2].fd = fd_wake;		/* poll ignores fd < 0 */
		pfd[2].events = POLLIN;
		pfd[0].revents = pfd[1].revents = pfd[2].revents = 0;
		n = poll(pfd, 3, left > 1000000 ? 1000000 : (int)left);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			conn_set_error(c, "poll: %s", strerror(errno));
			return -1;
		}
		if (pfd[1].revents != 0) {
			conn_set_error(c, "cancelled");
			return -1;
		}
		if (pfd[0].revents != 0 &&
		    (c->ssl == NULL || tls_has_data(c)))
			return 1;
		if (fd_wake >= 0 && pfd[2].revents != 0)
			return 2;
		if (n == 0 && left == 0)
			return 0;
	}
}
