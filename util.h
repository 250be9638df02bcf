/*
 * util.h -- the error record every module fills, and small helpers.
 *
 * Convention (all of mailhaul): a function that can fail returns 0 on
 * success and -1 on failure, and fills a caller-owned struct mh_err.
 * Our own explanation goes to err->msg; what a server said goes, verbatim
 * but with control characters replaced, to err->reply.  Neither ever holds
 * a password, token or AUTH argument.
 */
#ifndef MAILHAUL_UTIL_H
#define MAILHAUL_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mh_err_class {
	MH_ERR_NONE = 0,
	MH_ERR_TEMP,	/* network, 4xx, timeout: try again next pass */
	MH_ERR_PERM,	/* 5xx for this message: record, do not retry */
	MH_ERR_AUTH,	/* login refused: report clearly, retry slowly */
	MH_ERR_TLS,	/* certificate or handshake failure: never falls back */
	MH_ERR_PROTO,	/* the server broke the protocol */
	MH_ERR_LOCAL,	/* our side: disk, database, memory, config */
	MH_ERR_BUSY,	/* another process holds the account */
	MH_ERR_NOUSER,	/* the target refuses the recipient itself: our
			   configuration, not the message (exit 67) */
};

/*
 * How much a failure covers, apart from how long it lasts (the class):
 * the caller decides from (scope, class) what goes on, as isync's
 * DRV_MSG_BAD / DRV_BOX_BAD / DRV_STORE_BAD do.  Whoever raises an error
 * that is narrower than "stop" says so with mh_err_scope().
 */
enum mh_err_scope {
	MH_SCOPE_NONE = 0,	/* not said: the whole operation stops */
	MH_SCOPE_MESSAGE,	/* this message only; the session goes on */
	MH_SCOPE_FOLDER,	/* this folder; the account's others go on */
	MH_SCOPE_ACCOUNT,	/* this account's session or server */
	MH_SCOPE_TARGET,	/* the target as a whole: no other message
				   will fare better this pass */
};

struct mh_err {
	enum mh_err_class cls;
	enum mh_err_scope scope;
	char msg[512];		/* our text */
	char reply[512];	/* the server's reply, sanitised; "" if none */
};

/* Resets err to "no error". */
void	mh_err_clear(struct mh_err *err);

/* Sets class and our text (printf-style); keeps err->reply and the
   scope. */
void	mh_err_set(struct mh_err *err, enum mh_err_class cls,
	    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sets the scope; keeps the rest. */
void	mh_err_scope(struct mh_err *err, enum mh_err_scope scope);

/* Puts "<prefix>: " before our text (printf-style); keeps the rest. */
void	mh_err_prefix(struct mh_err *err, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/*
 * Copies a server reply into err->reply: at most len bytes (or up to NUL
 * when len is (size_t)-1), CR/LF/control bytes become spaces, trailing
 * white space is trimmed.
 */
void	mh_err_reply(struct mh_err *err, const char *reply, size_t len);

/* The class as a short word ("temporary", "permanent", ...). */
const char *mh_err_class_name(enum mh_err_class cls);

/* "msg" or "msg: server said: reply" into buf; returns buf. */
const char *mh_err_str(const struct mh_err *err, char *buf, size_t size);

/* Allocation that cannot fail: aborts with a message on out of memory. */
void	*xmalloc(size_t n);
void	*xcalloc(size_t n, size_t m);
/*
 * Hints that all of p[0..len), memory this process allocated, is about
 * to be written: its pages are made present in one call (Linux
 * MADV_POPULATE_WRITE) instead of one page fault each.  Only worth it
 * for a big block written through soon (a 100k-message listing); a
 * no-op where unsupported.
 */
void	 mh_prefault(void *p, size_t len);

/*
 * Spools in memory.  A message announced at most MH_SPOOL_MEM_MAX bytes
 * is spooled (fetch/state/spool.h, fetch/imap.c) in an anonymous memory
 * file (memfd_create), gone with its last descriptor like an unlinked
 * file, that costs no inode of the file system: a new inode per message
 * was the largest part of a small message's cost on the bench machine's
 * ext4.  What one may hold is bounded by the source's fetch limit (1.5
 * times the announced size plus 1 MiB), and how many are in flight by
 * the pipeline's window (fetch/engine/pipeline.h).  Bigger messages go
 * to files.
 *
 * mh_memspool_open: a new empty one (close-on-exec; the caller closes
 * it), or -1 with errno when the kernel has none (then use a file).
 * mh_is_memspool: whether fd is one (not a file, even of tmpfs).
 * mh_memspool_bound: called before more bytes are written to the spool
 * fd that holds at bytes; when fd is in memory and would grow past
 * MH_SPOOL_MEM_CAP (a server that announced a small message and sends a
 * big one), its bytes move to a new mh_tmpfile put on fd's number
 * (dup3), so that memory stays bounded by about twice the announced
 * bytes in flight.  0, or -1 with errno.
 * mh_tmpfile: a new empty unlinked file in $TMPDIR (default /tmp),
 * close-on-exec (an MDA target or a password_command must not inherit a
 * message's body); -1 with errno.
 * mh_copy_fd: appends all of from (read from offset 0, leaving from's
 * offset at its end) to to at to's offset; 0, or -1 with errno.
 */
#define MH_SPOOL_MEM_MAX	(128u * 1024)
#define MH_SPOOL_MEM_CAP	(2 * MH_SPOOL_MEM_MAX)
int	 mh_memspool_open(void);
bool	 mh_is_memspool(int fd);
int	 mh_memspool_bound(int fd, uint64_t at, size_t more);
int	 mh_tmpfile(void);
int	 mh_copy_fd(int from, int to);
void	*xrealloc(void *p, size_t n);
char	*xstrdup(const char *s);
char	*xstrndup(const char *s, size_t n);
char	*xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Zeroes and frees a secret string; NULL is a no-op. */
void	secret_free(char *s);

/* Monotonic clock in milliseconds. */
int64_t	now_ms(void);

/* a + b, saturated at UINT64_MAX: totals of sizes a server states (a
   hostile one says 2^63) never wrap. */
static inline uint64_t
mh_add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* pipe() with both ends close-on-exec, and O_NONBLOCK when nonblock
   (pipe2() is a GNU extension).  0, or -1 with errno set. */
int	cloexec_pipe(int p[2], bool nonblock);

/* mkdir -p with the given mode for every directory it creates. */
int	mkdir_p(const char *path, unsigned mode, struct mh_err *err);

/*
 * In a child about to exec another program (an MDA, a password or token
 * command, a browser): the soft RLIMIT_DATA back to the hard limit.  A
 * worker lowers only the soft one (fetch/service/workers.h), for itself;
 * the programs it starts are not workers.  Async-signal-safe.
 */
void	child_limits_restore(void);

/*
 * pthread_create with every signal blocked in the new thread: signals
 * stay with the thread that handles them (the engine's stop flags).  0,
 * or the error number pthread_create returned.
 */
int	mh_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
