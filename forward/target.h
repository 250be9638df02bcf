/*
 * target.h -- where mail goes: the interface the engine (fetch/engine)
 * and `mailhaul check` drive, one implementation per kind in forward/
 * (smtp.c: SMTP and LMTP; maildir.c; mda.c; imap and gmail next), chosen by
 * the target's type in target.c.  forward/ never includes fetch/.
 *
 * The life of a target, one per account pass:
 *
 *   target_new -> { target_seen?, target_deliver }* -> target_close
 *
 * target_new does not connect: a network target connects on the first
 * message and keeps the connection for the pass (SMTP: RSET between
 * messages, QUIT at close); target_connect connects now (check).  A
 * message is a spool file; the delivered bytes are that file's bytes,
 * plus one prepended Received: header unless the target says
 * received = no.
 *
 * Destinations: what "has the message" means for a kind -- a recipient
 * address for SMTP/LMTP (several per message), the folder or label for
 * APPEND-like targets (one), the path for maildir.  A delivery fills a
 * target_result with the destinations that certainly have the message,
 * so that a partial delivery is recorded exactly and only the others
 * are retried (target_msg.done).
 */
#ifndef MAILHAUL_FORWARD_TARGET_H
#define MAILHAUL_FORWARD_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "net/peer.h"
#include "net/sasl.h"
#include "util.h"

struct target;		/* opaque */

/*
 * The longest a delivery may go without moving a byte, other than by a
 * timeout of its own: an MDA's run when its target sets none, and the
 * Gmail API's rate-limit waits for one request, in all.  The service's
 * stall limit (fetch/service/scheduler.c) allows for them.
 */
#define TARGET_MDA_TIMEOUT_S		300
#define TARGET_GMAIL_MAX_WAIT_S		180

/* One message to deliver; every pointer is borrowed for the call. */
struct target_msg {
	int		 fd;		/* spool file, read from offset 0 (pread:
					   the offset is not used); the caller
					   owns it */
	uint64_t	 size;		/* of the file */
	const char	*return_path;	/* from the message, without <>; NULL or
					   "" for the null sender */
	bool		 eightbit;	/* has bytes >= 0x80 */
	const char	*received;	/* full "Received: ...\r\n" header to
					   prepend, or NULL */
	const char	*source_key;	/* names this message at its source,
					   stable across passes and renames:
					   printable ASCII without spaces or
					   '/' (maildir file names, IMAP SEARCH
					   of the trace line) */
	const char	*message_id;	/* "<...>" or NULL if none */
	time_t		 date;		/* the Date: field; 0 if none or bad
					   (IMAP APPEND / Gmail internal date) */
	const char *const *done;	/* destinations that already have it
					   (an earlier partial delivery): not
					   sent to again; NULL when ndone 0 */
	size_t		 ndone;
};

enum target_outcome {
	TARGET_DELIVERED = 0,	/* every destination has it */
	TARGET_TEMPFAIL,	/* a 4xx, a lost connection: retry later */
	TARGET_PERMFAIL,	/* a 5xx: record, keep on the source */
	TARGET_PENDING,		/* batch mode only: sent, the verdict is
				   still on its way (target_collect) */
};

/*
 * What one target_deliver did: the destinations that have the message
 * now (on DELIVERED every one sent to; otherwise those that have it
 * although others refused it or the connection was lost).  The strings
 * are owned by the result; target_deliver empties it first.
 */
struct target_result {
	char	**dests;
	size_t	  ndests;
};

/* Frees the destinations and empties res; safe on a zeroed result. */
void	target_result_clear(struct target_result *res);

/* What `mailhaul check` prints about a target. */
struct target_info {
	char	greeting[256];
	char	capabilities[512];
	bool	tls;
	struct net_peer_info peer;	/* when tls */
};

/*
 * Prepares a target of t's type.  cred's secret is copied (wiped at
 * close) and its kind kept; the user is the config's.  NULL (or a NULL
 * secret) for no AUTH.  Does not connect.  NULL with err (MH_ERR_LOCAL)
 * when the kind cannot be made (not built yet, a bad config).
 */
struct target *target_new(const struct cfg_target *t,
	    const struct sasl_cred *cred, struct mh_err *err);

/*
 * Sets the connect and per-read/write timeout (milliseconds; 0: the
 * default of 60 s) for the next connection or command.
 */
void	target_set_timeout(struct target *tg, int timeout_ms);

/*
 * Connects, TLS, EHLO/LHLO, AUTH now (for check); a local target checks
 * that it can write.  0 or -1 with err.
 */
int	target_connect(struct target *tg, struct mh_err *err);
void	target_get_info(struct target *tg, struct target_info *info);

/*
 * For check, after target_connect: what a delivery needs, without
 * delivering.  SMTP/LMTP: MAIL FROM:<>, RCPT TO each recipient, RSET;
 * IMAP: EXAMINE the folder.  0 with a line for the user in note ("" when
 * the kind has nothing to add: Maildir and MDA are checked by connect),
 * or -1 with err (a refused recipient is MH_ERR_PERM with the reply).
 */
int	target_probe(struct target *tg, char *note, size_t size,
	    struct mh_err *err);

/*
 * Whether the target can be asked if a message is there already
 * (target_seen): maildir, IMAP and Gmail can; SMTP, LMTP and MDA cannot.
 */
bool	target_can_look_up(const struct target *tg);

/*
 * Looks m up in the target by m->source_key / m->message_id: *found is
 * set to true when it is there (delivered before a crash that lost the
 * commit).  -1 with err when the target cannot tell now; -1 with
 * MH_ERR_NONE when the kind cannot be asked at all.
 */
int	target_seen(struct target *tg, const struct target_msg *m,
	    bool *found, struct mh_err *err);

/*
 * Delivers one message (connecting first if needed) to every destination
 * not in m->done, and fills res (see struct target_result).  Returns the
 * outcome; for anything but DELIVERED err holds our text, the server's
 * reply (with mixed results, the first refusal's reply; the outcome is
 * TEMPFAIL if any destination got a 4xx, else PERMFAIL) and the scope:
 * MH_SCOPE_TARGET when no other message will fare better this pass (the
 * target is unreachable, refuses our login or TLS, closes with 421),
 * MH_SCOPE_MESSAGE otherwise.  After a lost connection the next call
 * reconnects.  An outcome is never DELIVERED unless every destination
 * sent to confirmed it; with every destination in m->done it is
 * DELIVERED without a transaction.
 */
enum target_outcome target_deliver(struct target *tg,
	    const struct target_msg *m, struct target_result *res,
	    struct mh_err *err);

/*
 * Sending ahead, outside batch mode (SMTP and LMTP with PIPELINING and
 * CHUNKING): while the engine makes the message before durable,
 * target_prepare sends what m's delivery can send without the target
 * taking m (the envelope, and the data as a BDAT chunk that is not the
 * last) and reads nothing.  The next target_deliver must then be of the
 * same m, its spool file and strings unchanged: it sends what makes the
 * target take m (BDAT 0 LAST) and reads the replies.  Until then no
 * destination has m, and target_close, a crash or a lost connection
 * discards it.  Returns whether anything was sent; false (a kind
 * without it, no connection yet, a message larger than one chunk) sends
 * nothing and target_deliver does it all.  target_can_prepare: whether
 * the kind ever sends ahead.
 */
bool	target_prepare(struct target *tg, const struct target_msg *m);
bool	target_can_prepare(const struct target *tg);

/*
 * Group commit (the engine's batches, for the kinds that can be asked
 * about a message in doubt).  With target_set_batch(tg, true) a kind
 * that can stage deliveries (written, not yet durable; no kind does so
 * today: the Maildir pipelines instead, below) may return DELIVERED
 * from target_deliver before the message is durable; target_flush then
 * makes every such delivery since the last flush durable and visible,
 * all at once.  0: each of
 * them is there for good.  -1 with err (MH_ERR_TEMP, MH_SCOPE_TARGET):
 * none of them may be counted delivered -- they are removed where that
 * is possible, and any left over is a message in doubt (target_seen
 * finds it).  Kinds that cannot stage deliver durably as always and
 * flush is 0.  target_close discards what was staged and not flushed
 * (never delivered).  Batch mode is off after target_new.
 */
void	target_set_batch(struct target *tg, bool on);
int	target_flush(struct target *tg, struct mh_err *err);
/*
 * Pipelining, in batch mode: a kind whose server answers each message
 * on its own (IMAP APPEND) may send a message and return PENDING from
 * target_deliver without waiting for the answer, so that the next
 * message goes out while this one's verdict travels back; the Maildir
 * returns PENDING once the message is in tmp/, and its flusher thread
 * makes it durable in new/ while the next ones are written.  Each PENDING
 * is then settled by one target_collect, in the order they were sent:
 * it fills res and err and returns the outcome as target_deliver would
 * have (never PENDING).  More messages may be sent (PENDING) before the
 * earlier ones are collected, and target_flush may come while some are
 * still PENDING: a kind that pipelines stages nothing, so its flush
 * (if it has one) never concerns them.  The spool file of a
 * PENDING message is not read again: its bytes were sent.  A lost
 * connection settles every PENDING message as TEMPFAIL (it may be
 * there: a message in doubt, as after any lost delivery).
 * target_collect without a PENDING delivery is TEMPFAIL with
 * MH_ERR_LOCAL.  Kinds that do not pipeline never return PENDING.
 */
enum target_outcome target_collect(struct target *tg,
	    struct target_result *res, struct mh_err *err);

/*
 * Sends one command line cmd (no CRLF; printable ASCII, never a secret)
 * on the connected session and reads the reply: *code is its code, and
 * err->reply holds "CODE text" whatever the code (err->cls stays
 * MH_ERR_NONE when a reply came).  For SMTP sessions only (fetch/etrn.c
 * sends ETRN this way).  -1 when the connection is lost (MH_ERR_TEMP,
 * *code 0) or the kind has no commands (MH_ERR_LOCAL).
 */
int	target_command(struct target *tg, const char *cmd, int *code,
	    struct mh_err *err);

/* Ends the session (QUIT) and frees; NULL is a no-op. */
void	target_close(struct target *tg);

#endif
