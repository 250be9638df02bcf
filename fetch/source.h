/*
 * source.h -- where mail comes from: the interface sync.c drives, with
 * one implementation per protocol (pop3.c, imap.c).
 *
 * A source is one logged-in session on the account's server, one
 * mailbox (IMAP: one folder) at a time.  The life of a session:
 *
 *   source_open -> { [source_select] -> source_list ->
 *     { source_fetch, source_mark_delete }* -> source_commit
 *     (deletions take effect) or source_abort }* -> source_free
 *
 * POP3 has one mailbox: its commit (QUIT) ends the session.  IMAP goes
 * on to the next folder with source_select on the same connection (one
 * login per account pass) while source_usable says the session is sound,
 * and logs out at source_free.
 *
 * source_fetch must be called in the order of the list given to
 * source_plan(); an implementation may pipeline the next retrievals.
 * source_mark_delete only queues a deletion: nothing is removed from the
 * server unless source_commit returns 0 (POP3: QUIT answered +OK).
 * source_abort drops the connection without committing anything.
 * Only pop3.c/imap.c see libetpan's session types.
 */
#ifndef MAILHAUL_FETCH_SOURCE_H
#define MAILHAUL_FETCH_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "net/peer.h"
#include "net/sasl.h"
#include "util.h"

struct source;		/* opaque */
struct source_arena;	/* opaque: the uids of a list, in few blocks */

struct source_msg {
	char		*uid;		/* owned by the list; unique within it */
	unsigned	 num;		/* POP3 message number, IMAP UID */
	uint64_t	 size;		/* as the server announced it */
	time_t		 date;		/* IMAP: its INTERNALDATE (kept as the
					   date of an IMAP APPEND); 0 for POP3
					   or when the server sent none */
	uint64_t	 gm_msgid;	/* IMAP with X-GM-EXT-1: Gmail's id of
					   the message, the same in every
					   folder (label); 0 when none */
	uint64_t	 limit;		/* the most bytes source_fetch may
					   write for it; 0: no bound.  Set by
					   the engine (identity_fetch_limit) */
};

struct source_list {
	struct source_msg	*msgs;	/* server order (oldest first) */
	size_t			 n;
	bool			 has_uids;	/* false: the server has no UIDL;
						   uids are then "#<num>" and
						   sync uses content keys */
	uint32_t		 uidvalidity;	/* IMAP; 0 for POP3 */
	size_t			 on_server;	/* IMAP: the folder's EXISTS,
						   which counts the messages
						   not listed as known too;
						   0 when unknown (POP3: n) */
	bool			 sizes_pending;	/* POP3 with UIDL: the sizes
						   are not listed yet (0);
						   source_list_sizes gets
						   those that matter */
	struct source_arena	*arena;		/* set: every uid lives in it
						   (source_list_strdup), not
						   in a malloc of its own */
};

/* What `mailhaul check` prints about a session. */
struct source_info {
	char	greeting[256];
	char	capabilities[512];	/* space separated */
	bool	tls;
	bool	pipelining;
	struct net_peer_info peer;	/* when tls */
};

/*
 * Connects, does TLS (implicit or STARTTLS), authenticates with cred
 * (borrowed for the call; net/sasl.h: a password or an OAuth2 token,
 * the mechanism chosen by sasl_choose from acct's auth key), then opens
 * folder as source_select does (folder NULL: none yet; POP3 ignores
 * it).  Plain-text credentials on a connection
 * without TLS are refused (MH_ERR_AUTH) unless allow_plaintext_auth.
 * Errors: MH_ERR_TEMP (network), MH_ERR_TLS, MH_ERR_AUTH (the server's
 * reply in err->reply), MH_ERR_PROTO; MH_ERR_PERM with MH_SCOPE_FOLDER
 * for an IMAP folder that does not exist or cannot be opened.
 */
int	source_open(const struct cfg_account *acct, const char *folder,
	    const struct sasl_cred *cred, struct source **out,
	    struct mh_err *err);

/*
 * The folders of acct to sync: POP3 gives one folder "".  IMAP resolves
 * acct->folders (patterns with '*' and '%' via LIST) into names as the
 * server spells them (modified UTF-7); a pattern that matches nothing is
 * reported with log_warn, not an error.  Only patterns need the server:
 * then LIST goes over *session when it holds a usable one, else over a
 * new session (source_open with no folder) that is left in *session for
 * the caller to go on with and free; with session NULL it is closed.
 * *out is a NULL-terminated array the caller frees with
 * source_folders_free.
 */
int	source_folders(const struct cfg_account *acct,
	    const struct sasl_cred *cred, struct source **session,
	    char ***out, struct mh_err *err);
void	source_folders_free(char **folders);

/*
 * Opens folder (IMAP: SELECT, or EXAMINE when the account only reads)
 * on the open session, in place of the previous one, whose queued
 * changes must have been committed or aborted.  "" is INBOX; POP3
 * accepts "" only.  Errors as source_open's.
 */
int	source_select(struct source *src, const char *folder,
	    struct mh_err *err);

/* Whether the session can go on with another folder (IMAP: connected
   and sound); false for POP3 once committed or aborted. */
bool	source_usable(const struct source *src);

/*
 * IMAP: what the state DB knows of this folder.  When uidvalidity equals
 * the server's, source_list returns only messages with UID > last_uid
 * (one round trip when nothing is new; none when the UIDNEXT of the
 * SELECT/EXAMINE reply says so).  Told before source_select of the
 * folder, it holds for that select and the listing after it, and the
 * listing goes out with the SELECT (no round trip of its own); told
 * after, for the next listing; a select it did not precede forgets it.
 * POP3 ignores it.
 */
void	source_set_known(struct source *src, uint32_t uidvalidity,
	    uint32_t last_uid);

/* Fills info from the open session. */
void	source_get_info(struct source *src, struct source_info *info);

/*
 * Lists the mailbox; out is filled, free with source_list_free.  POP3
 * with UIDL lists the UIDs only (out->sizes_pending): a poll with
 * nothing new needs no sizes, and LIST of a big mailbox costs as much as
 * UIDL.
 */
int	source_list(struct source *src, struct source_list *out,
	    struct mh_err *err);
void	source_list_free(struct source_list *l);

/*
 * A copy of s[0..len) and a NUL in l's arena (made on first use): one
 * malloc per 64 KiB of uids instead of one per uid, freed all at once by
 * source_list_free.  A list's uids are either all in its arena or all
 * malloc'd; the implementations choose.  Never fails (xmalloc).
 */
char	*source_list_strdup(struct source_list *l, const char *s, size_t len);

/*
 * When l->sizes_pending: the sizes of the messages l->msgs[i] with
 * want[i] (want NULL: all), as the server lists them.  POP3 asks `LIST
 * n` for each (pipelined), or LIST for the whole mailbox when many are
 * wanted; then every size is known and sizes_pending turns false.  The
 * sizes of the others stay 0.  A no-op when nothing is pending.  Must
 * come before source_plan.  Errors as source_list's (MH_ERR_PROTO: LIST
 * refused or omits a message UIDL listed).
 */
int	source_list_sizes(struct source *src, struct source_list *l,
	    const bool *want, struct mh_err *err);

/*
 * The first line(s) of the header of msg (POP3 TOP n 0), written to fd;
 * used for the no-UIDL fallback key.  Optional: -1 with MH_ERR_NONE when
 * unsupported.
 */
int	source_fetch_header(struct source *src, const struct source_msg *msg,
	    int fd, struct mh_err *err);

/*
 * Whether msg was already asked of the server (a POP3 RETR sent ahead
 * in the pipeline) and not yet read: a pass asked to stop fetches such
 * messages too, rather than leave them read and undelivered (POP3 then
 * cannot QUIT, and this pass's deletions would wait).  False when the
 * source sends nothing ahead.
 */
bool	source_requested(const struct source *src,
	    const struct source_msg *msg);

/* The messages that will be fetched, in order (borrowed until free). */
void	source_plan(struct source *src, const struct source_msg *const *msgs,
	    size_t n);

/*
 * Writes the exact bytes of msg (dot-unstuffed, every byte kept: NUL,
 * bare CR/LF, 8-bit) to fd, which the caller owns.  Memory stays bounded
 * whatever the size.  An error of scope MH_SCOPE_MESSAGE (class
 * MH_ERR_PERM) means this message could not be retrieved (POP3 -ERR to
 * RETR, an IMAP UID the server did not return) and the session goes on; after any other failure the session is
 * unusable and the caller must source_abort.  MH_ERR_PROTO with
 * MH_SCOPE_MESSAGE: the server sent more than msg->limit bytes for it;
 * nothing more of it was read, the session is unusable (abort it), and
 * the message is to be recorded as refused, not fetched every pass.
 */
int	source_fetch(struct source *src, const struct source_msg *msg, int fd,
	    struct mh_err *err);

/*
 * Messages that source_fetch wrote and that were not delivered: ahead,
 * never handed on (the engine fetched them ahead, then the target went
 * down or a stop was asked); failed, handed on and not delivered (a
 * temporary failure, a batch given up).  Some POP3 servers (Gmail's)
 * take a RETR in a session that ends with QUIT as "downloaded" and never
 * list the message again.  POP3 then ends the session without QUIT at
 * commit: always for ahead; for failed only on a server known to hide
 * what it served (elsewhere that would hold back every deletion while
 * one message keeps failing).  Its commit fails when that leaves
 * deletions undone (they wait for the next pass).  IMAP ignores it
 * (BODY.PEEK changes nothing).
 */
void	source_fetched_in_vain(struct source *src, size_t ahead,
	    size_t failed);

/*
 * msg was delivered and that is committed: an IMAP account with
 * mark_seen = yes sets \Seen on it at source_commit.  POP3 does nothing.
 */
int	source_mark_done(struct source *src, const struct source_msg *msg,
	    struct mh_err *err);

/*
 * Queues the deletion of msg (POP3 DELE, may be pipelined); for an IMAP
 * account with move_to, queues its move instead.
 */
int	source_mark_delete(struct source *src, const struct source_msg *msg,
	    struct mh_err *err);

/*
 * Makes the queued deletions (and moves, \Seen) take effect: POP3 ends
 * the session (QUIT); IMAP does them in the selected folder (UID STORE,
 * UID EXPUNGE or MOVE) and keeps the session for the next folder.
 * Returns 0 only when the server confirmed (POP3: QUIT +OK); -1
 * otherwise, and the deletions must be taken as not done.
 */
int	source_commit(struct source *src, struct mh_err *err);
/* (An IMAP server that cannot delete without expunging other clients'
   messages, no UIDPLUS: MH_ERR_PERM, MH_SCOPE_ACCOUNT.) */

/*
 * Commits nothing of what was queued.  POP3 drops the connection; IMAP
 * drops it when it failed and keeps a sound one for the next folder
 * (nothing queued was sent).  Safe after errors.
 */
void	source_abort(struct source *src);

/*
 * Frees; what was queued must have been committed or aborted.  A sound
 * IMAP session is logged out (LOGOUT commits nothing).  NULL is a no-op.
 */
void	source_free(struct source *src);

/*
 * The UIDs of the IMAP folder open on src (UID SEARCH SEEN when
 * seen_only, else ALL), *uids a new array of *n the caller frees, and the
 * folder's UIDVALIDITY: for `mailhaul import`, and for the daily prune of
 * a folder whose passes list only what is new.  Not for POP3
 * (MH_ERR_LOCAL); errors as source_list's.
 */
int	source_imap_uids(struct source *src, bool seen_only,
	    uint32_t *uidvalidity, uint32_t **uids, size_t *n,
	    struct mh_err *err);

#endif
