/*
 * imap.c -- the IMAP source; see source.h and notes/libetpan.md Q4.
 *
 * imap_session.c opens the session (connect, STARTTLS, LOGIN or our
 * AUTHENTICATE PLAIN); libetpan does SELECT, LIST, UID FETCH parsing,
 * STORE and UID EXPUNGE; we add the streaming fetch: bodies go through libetpan's body handler into private unlinked
 * temp files, one per message of a batch, so memory stays bounded and
 * source_fetch() can hand out one message at a time: the file itself,
 * not a copy (give_fd), the caller's empty file taken in exchange.
 */
#define _GNU_SOURCE		/* mkostemp */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <libetpan/libetpan.h>

#include "net/imap_session.h"
#include "net/imap_utf7.h"
#include "fetch/source_impl.h"
#include "log.h"
#include "net/net.h"

/*
 * UID FETCH batches: the first is small, so that the first deliveries
 * start soon (sync overlaps them with the fetching); each next one is
 * twice as big, up to BATCH_MAX_MSGS or BATCH_MAX_BYTES.  The bodies are
 * spooled to files, never held in memory.  A batch's reply is read
 * whole before any of it is handed out, so a batch is kept small next to
 * the pipeline's budget (PIPELINE_MAX_BYTES): while one is read the
 * delivery side still has the one before it to work on, and the fetch
 * and the delivery overlap instead of taking turns.  AHEAD_MAX batches
 * after it are always sent ahead (next_send), so the server has the next
 * commands before it finishes the current one: their bytes in flight
 * cover a round trip (a few MB, more than one small batch moves in 50
 * ms), so the round trips do not show.
 */
#define BATCH_FIRST_MSGS 16
#define BATCH_MAX_MSGS	64	/* a spooled file each: fds */
#define BATCH_MAX_BYTES	(2u * 1024 * 1024)
#define AHEAD_MAX	3	/* batches sent ahead of the current one */
#define DELETE_CHUNK	1000	/* UIDs per STORE/EXPUNGE command */
#define HDR_BATCH	500	/* UIDs per header FETCH (fetch_header) */
#define HDR_MAX		4096	/* bytes of a Message-ID field kept */
#define SPARE_MAX	BATCH_MAX_MSGS	/* empty spool files kept */

enum imap_mode { MODE_NONE, MODE_LIST, MODE_BODY };

struct slot {
	uint32_t	uid;
	int		fd;	/* spooled body, -1 until it arrived */
	uint64_t	limit;	/* source_msg.limit */
	uint64_t	size;	/* source_msg.size, as listed */
};

/* One message's Message-ID field, as fetch_header's batch got it. */
struct hdr {
	uint32_t	 uid;
	char		*text;		/* NULL: not returned */
	size_t		 len;
};

struct imap_source {
	struct source		 base;		/* first */
	const struct cfg_account *acct;		/* borrowed */
	mailimap		*imap;
	char			*folder;
	char			 greeting[256];
	bool			 tls;
	bool			 utf8;		/* UTF8=ACCEPT enabled: names
						   are UTF-8 on the wire */
	bool			 failed;	/* session unusable */
	struct mh_err		 fail_err;	/* why, when a batch broke it */
	uint32_t		 known_uidvalidity, known_last;
	bool			 known_kept;	/* set_known since the last
						   select or listing: the
						   next select keeps it */
	/*
	 * The listing sent with the SELECT/EXAMINE (select_listing), in
	 * lmsgs, of the UIDs from listed_first up: imap_list's own when it
	 * would ask from there.
	 */
	bool			 listed;
	uint32_t		 listed_first;

	/* the fetch plan (borrowed) and the current batch */
	const struct source_msg *const *plan;
	size_t			 nplan, cursor;
	struct slot		*batch;
	size_t			 nbatch;
	size_t			 batch_cap;	/* messages in the next one */
	char			 batch_reply[256];	/* a tagged NO/BAD's
						   text, else "" */
	size_t			 batch_end;	/* plan index after it */
	/*
	 * The batches after it, in order, their UID FETCH already sent so
	 * that the server streams them while the current one is consumed:
	 * one round trip per mailbox, not one per batch.
	 */
	struct ahead {
		struct slot	*v;
		size_t		 n;
		size_t		 end;		/* plan index after it */
		int		 tag;		/* of its command */
	}			 ahead[AHEAD_MAX];
	size_t			 nahead;

	/* handler state */
	enum imap_mode		 mode;
	int			 cur_fd;	/* body being received */
	uint64_t		 cur_bytes;	/* of it, so far */
	uint32_t		 too_big;	/* the UID whose body went past
						   its limit (0: none) */
	uint64_t		 too_big_limit;
	int			 io_errno;
	struct source_msg	*lmsgs;		/* MODE_LIST results */
	size_t			 ln, lcap;
	uint32_t		 lmin;		/* keep uids >= lmin */

	/*
	 * Empty files for the next bodies: the caller's files that
	 * imap_fetch took in exchange for the spooled bodies it handed
	 * over (give_fd), so that a body is written once and no file is
	 * made per message; in memory or not, as they are (util.h).
	 */
	int			 spare[SPARE_MAX];	/* files */
	size_t			 nspare;
	int			 spare_mem[SPARE_MAX];	/* in memory */
	size_t			 nspare_mem;

	struct hdr		*hdrs;		/* fetch_header's batch */
	size_t			 nhdrs;

	uint32_t		*del;		/* queued deletions */
	size_t			 ndel, delcap;
	uint32_t		*seen;		/* queued \Seen (mark_seen) */
	size_t			 nseen, seencap;
};

static int	session_open(const struct cfg_account *, const struct sasl_cred *,
		    struct imap_source **, struct mh_err *);
static void	session_kill(struct imap_source *);
static int	imap_fail(struct imap_source *, int, struct mh_err *,
		    const char *, ...) __attribute__((format(printf, 4, 5)));
static int	do_select(struct imap_source *, bool, struct mh_err *);
static void	list_drop(struct imap_source *);
static bool	has_cap(struct imap_source *, const char *);
static void	set_handlers(struct imap_source *, enum imap_mode);
static void	att_handler(struct mailimap_msg_att *, void *);
static bool	body_handler(int, struct mailimap_msg_att_body_section *,
		    const char *, size_t, void *);
static void	progress_dummy(size_t, size_t, void *);
static int	spool_tmp(struct imap_source *);
static void	batch_drop(struct imap_source *);
static void	batches_drop(struct imap_source *);
static void	hdrs_drop(struct imap_source *);
static int	batch_fetch(struct imap_source *, const struct source_msg *,
		    struct mh_err *);
static int	cmp_msg(const void *, const void *);
static int	cmp_u32(const void *, const void *);
static struct mailimap_set *set_from(const uint32_t *, size_t);
static int	delete_chunk(struct imap_source *, const uint32_t *, size_t,
		    const char *, struct mh_err *);
static void	imap_free(struct source *);

/*
 * Maps a libetpan result to err: stream errors are temporary, parse
 * errors are the server's, a tagged NO/BAD keeps the server's text.
 */
static int
imap_fail(struct imap_source *s, int r, struct mh_err *err,
    const char *fmt, ...)
{
	char	what[256];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	/* FATAL: a BYE, after which the server closes the connection */
	if (r == MAILIMAP_ERROR_STREAM || r == MAILIMAP_ERROR_PARSE ||
	    r == MAILIMAP_ERROR_MEMORY || r == MAILIMAP_ERROR_FATAL)
		s->failed = true;
	if (r == MAILIMAP_ERROR_MEMORY && s->io_errno != 0) {
		/* a spool write in the body handler failed */
		mh_err_set(err, MH_ERR_LOCAL, "%s: %s", what,
		    strerror(s->io_errno));
		return -1;
	}
	imap_session_fail(s->imap, r, what, err);
	return -1;
}

static bool
has_cap(struct imap_source *s, const char *name)
{
	return imap_session_has_cap(s->imap, name);
}

/*
 * Debug transcript.  libetpan marks LOGIN's arguments (and our
 * AUTHENTICATE response, written with privacy off) as private; message
 * bodies are not logged.
 */
static void
transcript(mailimap *imap, int type, const char *str, size_t size,
    void *ctx)
{
	struct imap_source *s = ctx;

	switch (type) {
	case MAILSTREAM_LOG_TYPE_DATA_SENT_PRIVATE:
		log_transcript(s->acct->name, true, true, str, size);
		break;
	case MAILSTREAM_LOG_TYPE_DATA_SENT:
		log_transcript(s->acct->name, true, false, str, size);
		break;
	case MAILSTREAM_LOG_TYPE_DATA_RECEIVED:
		if (s->mode != MODE_BODY)
			log_transcript(s->acct->name, false, false, str,
			    size > 2048 ? 2048 : size);
		break;
	default:
		break;
	}
}

static void
session_kill(struct imap_source *s)
{
	imap_session_kill(s->imap);
	s->imap = NULL;
}

/*
 * Connects, TLS, logs in; on failure frees everything and returns -1.
 */
static int
session_open(const struct cfg_account *acct, const struct sasl_cred *cred,
    struct imap_source **out, struct mh_err *err)
{
	struct imap_source	*s = xcalloc(1, sizeof *s);
	struct imap_open	 o;

	s->acct = acct;
	s->cur_fd = -1;
	memset(&o, 0, sizeof o);
	o.want_utf8 = true;
	if (log_level >= LOG_LVL_DEBUG) {
		o.logger = transcript;
		o.logger_ctx = s;
	}
	if (imap_session_open(&acct->ep, source_timeout_ms(acct), cred, &o,
	    &s->imap, err) == -1) {
		free(s);
		return -1;
	}
	snprintf(s->greeting, sizeof s->greeting, "%s", o.greeting);
	s->tls = o.tls;
	s->utf8 = o.utf8;
	*out = s;
	return 0;
}

/* The listing select_listing kept, dropped. */
static void
list_drop(struct imap_source *s)
{
	free(s->lmsgs);
	s->lmsgs = NULL;
	s->ln = s->lcap = 0;
	s->listed = false;
}

/*
 * Reads the tagged reply tag (mailimap_read_line, then the parser, which
 * reads on as the reply needs): a libetpan code; *ok whether it was OK.
 * libetpan takes the reply to the last tag it sent for the end of a
 * response, so it is told the one expected while another is out.
 */
static int
reply_read(struct imap_source *s, int tag, bool *ok)
{
	struct mailimap_response	*resp = NULL;
	int				 last = s->imap->imap_tag, r;

	*ok = false;
	s->imap->imap_tag = tag;
	if (mailimap_read_line(s->imap) == NULL)
		r = MAILIMAP_ERROR_STREAM;
	else
		r = mailimap_parse_response(s->imap, &resp);
	s->imap->imap_tag = last;
	if (r != MAILIMAP_NO_ERROR)
		return r;
	*ok = resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->
	    rsp_type == MAILIMAP_RESP_COND_STATE_OK;
	mailimap_response_free(resp);
	return MAILIMAP_NO_ERROR;
}

/*
 * reply_read of a UID FETCH, its FETCH items going through the handlers
 * of mode (att_handler, body_handler) as they are parsed, none kept.
 */
static int
fetch_reply(struct imap_source *s, int tag, enum imap_mode mode, bool *ok)
{
	struct mailimap_response_info	*ri;
	int				 r;

	set_handlers(s, mode);
	r = reply_read(s, tag, ok);
	set_handlers(s, MODE_NONE);
	if ((ri = s->imap->imap_response_info) != NULL &&
	    ri->rsp_fetch_list != NULL) {
		mailimap_fetch_list_free(ri->rsp_fetch_list);
		ri->rsp_fetch_list = NULL;
	}
	return r;
}

/*
 * SELECT (or EXAMINE) of quoted, and in the same write the listing
 * imap_list would send after it, from the UID after what set_known said
 * (all of them when it knew nothing): one round trip for both, as RFC
 * 3501 5.5 allows (a listing after a refused SELECT is answered BAD or
 * NO, and dropped).  The SELECT's reply is taken as mailimap_select
 * takes it (a new selection info, the session's state); its text, when
 * it is not OK, goes to reply.  The listing's goes through the att
 * handler into lmsgs (s->listed); imap_list uses it when it would ask
 * from the same UID, that is unless UIDVALIDITY changed.  A libetpan
 * code, as mailimap_select's.
 */
static int
select_listing(struct imap_source *s, bool readonly, const char *quoted,
    char *reply, size_t replysz)
{
	mailimap	*imap = s->imap;
	mailstream	*st = imap->imap_stream;
	uint32_t	 first = s->known_uidvalidity != 0 ?
			    s->known_last + 1 : 1;
	char		 cmd[96];
	int		 r, sel, tag;
	bool		 ok, listed;

	if (imap->imap_state != MAILIMAP_STATE_AUTHENTICATED &&
	    imap->imap_state != MAILIMAP_STATE_SELECTED)
		return MAILIMAP_ERROR_BAD_STATE;
	if ((r = mailimap_send_current_tag(imap)) != MAILIMAP_NO_ERROR)
		return r;
	tag = imap->imap_tag;
	if (mailstream_write(st, readonly ? "EXAMINE " : "SELECT ",
	    readonly ? 8 : 7) == -1 ||
	    mailstream_write(st, quoted, strlen(quoted)) == -1 ||
	    mailstream_write(st, "\r\n", 2) == -1)
		return MAILIMAP_ERROR_STREAM;
	if ((r = mailimap_send_current_tag(imap)) != MAILIMAP_NO_ERROR)
		return r;
	/*
	 * Up to the highest UID there can be, not `*`: Dovecot walks the
	 * whole folder for a UID set with `*` above its last UID (a poll
	 * with nothing new took 0.11 s instead of 0.03 s at 100,000
	 * messages), and since nothing above first is left out, the `n:*`
	 * rule's highest message is not needed.  A server that refuses the
	 * number only makes imap_list ask again, with `*`.
	 */
	snprintf(cmd, sizeof cmd, "UID FETCH %u:4294967295 (UID RFC822.SIZE "
	    "INTERNALDATE%s)\r\n", first,
	    has_cap(s, "X-GM-EXT-1") ? " X-GM-MSGID" : "");
	if (mailstream_write(st, cmd, strlen(cmd)) == -1 ||
	    mailstream_flush(st) == -1)
		return MAILIMAP_ERROR_STREAM;

	if (imap->imap_selection_info != NULL)
		mailimap_selection_info_free(imap->imap_selection_info);
	imap->imap_selection_info = mailimap_selection_info_new();
	/* libetpan: MAILIMAP_ERROR_PROTOCOL is a tagged BAD (or another
	   tag), answered as a NO is: the listing's reply still follows */
	if ((sel = reply_read(s, tag, &ok)) != MAILIMAP_NO_ERROR &&
	    sel != MAILIMAP_ERROR_PROTOCOL)
		return sel;
	if (ok)
		imap->imap_state = MAILIMAP_STATE_SELECTED;
	else {
		mailimap_selection_info_free(imap->imap_selection_info);
		imap->imap_selection_info = NULL;
		imap->imap_state = MAILIMAP_STATE_AUTHENTICATED;
		if (imap->imap_response != NULL)
			snprintf(reply, replysz, "%s", imap->imap_response);
	}

	/* read in any case, so that the session stays in step; a listing
	   refused (NO, BAD) is only dropped: imap_list asks again */
	list_drop(s);
	s->lmin = first;
	r = fetch_reply(s, imap->imap_tag, MODE_LIST, &listed);
	if (r != MAILIMAP_NO_ERROR || !ok || !listed)
		list_drop(s);
	else {
		s->listed = true;
		s->listed_first = first;
	}
	if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_PROTOCOL)
		return r;	/* the stream broke, or BYE */
	if (ok)
		return MAILIMAP_NO_ERROR;
	return sel != MAILIMAP_NO_ERROR ? sel : readonly ?
	    MAILIMAP_ERROR_EXAMINE : MAILIMAP_ERROR_SELECT;
}

/*
 * SELECT when the session may change the folder (deletions, moves,
 * flags), EXAMINE when it only reads; with_listing: the listing goes out
 * with it (select_listing).
 */
static int
do_select(struct imap_source *s, bool with_listing, struct mh_err *err)
{
	bool	 readonly = s->acct->keep && s->acct->delete_after == 0 &&
		    s->acct->move_to == NULL && !s->acct->mark_seen;
	char	*shown, *q, *wire = imap_wire_name(s->folder, s->utf8);
	char	 reply[sizeof err->reply] = "";
	int	 r;

	/* what the state knows says where the listing starts: it goes out
	   with the SELECT (a name that cannot be quoted, 8-bit with
	   UTF8=ACCEPT, goes the usual way) */
	if (with_listing && s->known_last != UINT32_MAX &&
	    (q = imap_session_quote(wire)) != NULL) {
		r = select_listing(s, readonly, q, reply, sizeof reply);
		free(q);
	} else
		r = readonly ? mailimap_examine(s->imap, wire) :
		    mailimap_select(s->imap, wire);
	if (r != MAILIMAP_NO_ERROR && reply[0] == '\0' &&
	    s->imap->imap_response != NULL)
		snprintf(reply, sizeof reply, "%s", s->imap->imap_response);
	/*
	 * Courier IMAP 5 enables UTF8=ACCEPT yet knows its folders only by
	 * their modified UTF-7 names (RFC 6855 sec 3 says it must take
	 * UTF-8): after a NO to the UTF-8 name, try the other once.
	 */
	if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_STREAM &&
	    r != MAILIMAP_ERROR_PARSE && r != MAILIMAP_ERROR_MEMORY &&
	    r != MAILIMAP_ERROR_FATAL && strcmp(wire, s->folder) != 0) {
		log_info("%s: the server refused the UTF-8 name of folder %s "
		    "after enabling UTF8=ACCEPT (a server bug); trying its "
		    "modified UTF-7 name", s->acct->name, wire);
		r = readonly ? mailimap_examine(s->imap, s->folder) :
		    mailimap_select(s->imap, s->folder);
		reply[0] = '\0';
		if (r != MAILIMAP_NO_ERROR && s->imap->imap_response != NULL)
			snprintf(reply, sizeof reply, "%s",
			    s->imap->imap_response);
	}
	free(wire);
	if (r == MAILIMAP_NO_ERROR)
		return 0;
	/* the session's end (a BYE too), not the folder's */
	if (r == MAILIMAP_ERROR_STREAM || r == MAILIMAP_ERROR_PARSE ||
	    r == MAILIMAP_ERROR_MEMORY || r == MAILIMAP_ERROR_FATAL)
		return imap_fail(s, r, err, "%s %s",
		    readonly ? "EXAMINE" : "SELECT", s->folder);
	shown = imap_utf7_decode(s->folder);
	mh_err_set(err, MH_ERR_PERM, "folder %s does not exist or cannot "
	    "be opened", shown);
	mh_err_scope(err, MH_SCOPE_FOLDER);
	free(shown);
	if (reply[0] != '\0')
		mh_err_reply(err, reply, (size_t)-1);
	return -1;
}

/*
 * Opens folder on the session (the first, or the next one: what the
 * previous folder queued was committed or dropped before).
 */
static int
imap_select(struct source *src, const char *folder, struct mh_err *err)
{
	struct imap_source *s = (struct imap_source *)src;
	bool		    kept = s->known_kept;

	batches_drop(s);
	hdrs_drop(s);
	s->plan = NULL;
	s->nplan = s->cursor = 0;
	s->ndel = s->nseen = 0;
	if (!kept)
		s->known_uidvalidity = s->known_last = 0;
	s->known_kept = false;
	list_drop(s);
	free(s->folder);
	s->folder = xstrdup(folder != NULL && folder[0] != '\0' ? folder :
	    "INBOX");
	if (s->failed || s->imap == NULL) {
		mh_err_set(err, MH_ERR_TEMP, "IMAP session already failed");
		return -1;
	}
	return do_select(s, kept, err);
}

static bool
imap_usable(const struct source *src)
{
	const struct imap_source *s = (const struct imap_source *)src;

	return s->imap != NULL && !s->failed;
}

static int
imap_open(const struct cfg_account *acct, const char *folder,
    const struct sasl_cred *cred, struct source **out, struct mh_err *err)
{
	struct imap_source *s;

	if (session_open(acct, cred, &s, err) == -1)
		return -1;
	if (folder != NULL && imap_select(&s->base, folder, err) == -1) {
		session_kill(s);
		free(s->folder);
		free(s);
		return -1;
	}
	*out = &s->base;
	return 0;
}

/* Adds name to the NULL-terminated array *v unless it is there. */
static void
names_add(char ***v, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i], name) == 0)
			return;
	*v = xrealloc(*v, (*n + 2) * sizeof **v);
	(*v)[(*n)++] = xstrdup(name);
	(*v)[*n] = NULL;
}

static bool
noselect(const struct mailimap_mailbox_list *mb)
{
	clistiter *it;

	if (mb->mb_flag == NULL)
		return false;
	if (mb->mb_flag->mbf_type == MAILIMAP_MBX_LIST_FLAGS_SFLAG &&
	    mb->mb_flag->mbf_sflag == MAILIMAP_MBX_LIST_SFLAG_NOSELECT)
		return true;
	if (mb->mb_flag->mbf_oflags == NULL)
		return false;
	for (it = clist_begin(mb->mb_flag->mbf_oflags); it != NULL;
	    it = clist_next(it)) {
		struct mailimap_mbx_list_oflag *of = clist_content(it);

		if (of->of_type == MAILIMAP_MBX_LIST_OFLAG_FLAG_EXT &&
		    of->of_flag_ext != NULL &&
		    (strcasecmp(of->of_flag_ext, "Noselect") == 0 ||
		    strcasecmp(of->of_flag_ext, "NonExistent") == 0))
			return true;
	}
	return false;
}

static int
list_pattern(struct imap_source *s, const char *pattern, char ***v,
    size_t *n, struct mh_err *err)
{
	clist		*res = NULL;
	clistiter	*it;
	size_t		 before = *n;
	char		*wire = imap_wire_name(pattern, s->utf8);
	int		 r;

	r = mailimap_list(s->imap, "", wire, &res);
	free(wire);
	if (r != MAILIMAP_NO_ERROR)
		return imap_fail(s, r, err, "LIST %s", pattern);
	for (it = clist_begin(res); it != NULL; it = clist_next(it)) {
		struct mailimap_mailbox_list	*mb = clist_content(it);
		char				*shown, *canon;

		if (noselect(mb))
			continue;
		if ((canon = imap_canon_name(mb->mb_name, s->utf8)) == NULL) {
			log_warn("%s: the server listed a folder whose name "
			    "is not UTF-8; skipped", s->acct->name);
			continue;
		}
		names_add(v, n, canon);
		free(canon);
		shown = imap_utf7_decode(mb->mb_name);
		log_debug("%s: folder %s", s->acct->name, shown);
		free(shown);
	}
	mailimap_list_result_free(res);
	if (*n == before)
		log_warn("%s: folder pattern \"%s\" matches nothing",
		    s->acct->name, pattern);
	return 0;
}

/*
 * The folders of acct; a session is needed only for patterns (LIST): the
 * caller's *session when it has one, else a new one, left in *session
 * for the caller's first folder (session NULL: closed here).
 */
static int
imap_folders(const struct cfg_account *acct, const struct sasl_cred *cred,
    struct source **session, char ***out, struct mh_err *err)
{
	struct imap_source	*s = NULL;
	char			**v = xcalloc(1, sizeof *v), *wire;
	size_t			  n = 0;
	int			  rc = -1;
	bool			  mine = false;

	for (size_t i = 0; i < acct->nfolders; i++) {
		const char *f = acct->folders[i];

		if ((wire = imap_utf7_encode(f)) == NULL) {
			mh_err_set(err, MH_ERR_LOCAL, "folder name \"%s\" is "
			    "not valid UTF-8", f);
			goto out;
		}
		if (strpbrk(f, "*%") == NULL) {
			names_add(&v, &n, wire);
			free(wire);
			continue;
		}
		if (s == NULL && session != NULL && *session != NULL &&
		    imap_usable(*session))
			s = (struct imap_source *)*session;
		if (s == NULL && session_open(acct, cred, &s, err) == -1) {
			free(wire);
			goto out;
		}
		if (s->base.ops == NULL) {
			s->base.ops = &imap_source_ops;
			mine = true;
		}
		if (list_pattern(s, wire, &v, &n, err) == -1) {
			free(wire);
			goto out;
		}
		free(wire);
	}
	if (acct->nfolders == 0)
		names_add(&v, &n, "INBOX");
	rc = 0;
out:
	if (mine && session != NULL && *session == NULL)
		*session = &s->base;		/* the caller goes on with it */
	else if (mine)
		imap_free(&s->base);
	if (rc == 0)
		*out = v;
	else
		source_folders_free(v);
	return rc;
}

static void
imap_set_known(struct source *src, uint32_t uidvalidity, uint32_t last_uid)
{
	struct imap_source *s = (struct imap_source *)src;

	s->known_uidvalidity = uidvalidity;
	s->known_last = last_uid;
	s->known_kept = true;
}

static void
imap_get_info(struct source *src, struct source_info *info)
{
	struct imap_source	*s = (struct imap_source *)src;
	struct mailimap_capability_data *cd;
	size_t			 o = 0;

	memset(info, 0, sizeof *info);
	snprintf(info->greeting, sizeof info->greeting, "%s", s->greeting);
	info->tls = s->tls;
	if (s->tls && s->imap != NULL && s->imap->imap_stream != NULL)
		net_peer_info(s->imap->imap_stream, &info->peer);
	if (s->imap == NULL || s->imap->imap_connection_info == NULL ||
	    (cd = s->imap->imap_connection_info->imap_capability) == NULL)
		return;
	for (clistiter *it = clist_begin(cd->cap_list); it != NULL;
	    it = clist_next(it)) {
		struct mailimap_capability	*c = clist_content(it);
		int				 w;

		if (c->cap_type == MAILIMAP_CAPABILITY_AUTH_TYPE)
			w = snprintf(info->capabilities + o,
			    sizeof info->capabilities - o, "%sAUTH=%s",
			    o ? " " : "", c->cap_data.cap_auth_type);
		else
			w = snprintf(info->capabilities + o,
			    sizeof info->capabilities - o, "%s%s",
			    o ? " " : "", c->cap_data.cap_name);
		if (w < 0 || (size_t)w >= sizeof info->capabilities - o) {
			info->capabilities[o] = '\0';
			break;
		}
		o += (size_t)w;
	}
}

/* ---- FETCH handlers ---------------------------------------------- */

static void
progress_dummy(size_t cur, size_t max, void *ctx)
{
	/* libetpan only calls the att handler when a progress fn is set */
}

static void
set_handlers(struct imap_source *s, enum imap_mode mode)
{
	s->mode = mode;
	if (mode == MODE_NONE) {
		mailimap_set_progress_callback(s->imap, NULL, NULL, NULL);
		mailimap_set_msg_att_handler(s->imap, NULL, NULL);
		mailimap_set_msg_body_handler(s->imap, NULL, NULL);
		return;
	}
	mailimap_set_progress_callback(s->imap, NULL, progress_dummy, s);
	mailimap_set_msg_att_handler(s->imap, att_handler, s);
	if (mode == MODE_BODY)
		mailimap_set_msg_body_handler(s->imap, body_handler, s);
}

/*
 * Whether the body about to arrive is spooled in memory (util.h): when
 * the message expected next (the first of the batch not arrived: bodies
 * come in the order asked for) is small, as the pipeline decides for
 * the file it takes in exchange, so that spares of each kind come back.
 * A server that answers in another order only puts a body in the other
 * kind of spool; a big one in memory moves to a file past the cap
 * (mh_memspool_bound).
 */
static bool
body_in_memory(const struct imap_source *s)
{
	for (size_t i = 0; i < s->nbatch; i++)
		if (s->batch[i].fd == -1)
			return s->batch[i].size <= MH_SPOOL_MEM_MAX;
	return true;
}

/* An empty file for a body, in memory or not (body_in_memory): a spare
   one, else a new one. */
static int
spool_tmp(struct imap_source *s)
{
	int	fd;

	if (body_in_memory(s)) {
		if (s->nspare_mem > 0)
			return s->spare_mem[--s->nspare_mem];
		if ((fd = mh_memspool_open()) != -1)
			return fd;
	} else if (s->nspare > 0)
		return s->spare[--s->nspare];
	return mh_tmpfile();
}

/*
 * The most bytes the body being received may have: the largest limit of
 * the messages of the batch (and of the one sent ahead) that have not
 * arrived, 0 when one of them has none.  Which message a body is for is
 * only known when its FETCH ends, and a server may leave a message out
 * (or answer in another order): the first one not arrived is not always
 * the one being received, so its limit alone would refuse a big message
 * that follows a small one left out.
 */
static uint64_t
body_limit(const struct imap_source *s)
{
	uint64_t	max = 0;

	for (size_t b = 0; b <= s->nahead; b++) {
		const struct slot *v = b ? s->ahead[b - 1].v : s->batch;
		size_t n = b ? s->ahead[b - 1].n : s->nbatch;

		for (size_t i = 0; i < n; i++) {
			if (v[i].fd != -1)
				continue;
			if (v[i].limit == 0)
				return 0;
			if (v[i].limit > max)
				max = v[i].limit;
		}
	}
	return max;
}

/*
 * Whether len more bytes take the body being received past body_limit.
 * Bodies arrive in the order asked for unless the server leaves one out,
 * so the one refused (s->too_big) is taken to be the first of the batch
 * that has not arrived, not the others.
 */
static bool
past_limit(struct imap_source *s, size_t len)
{
	uint64_t	limit = body_limit(s);

	if (limit > 0 && limit - s->cur_bytes < len) {
		for (size_t i = 0; i < s->nbatch; i++) {
			if (s->batch[i].fd != -1)
				continue;
			s->too_big = s->batch[i].uid;
			s->too_big_limit = s->batch[i].limit;
			return true;
		}
	}
	s->cur_bytes += len;
	return false;
}

/* The error for the message whose body went past its limit. */
static int
too_big_err(struct imap_source *s, struct mh_err *err)
{
	mh_err_clear(err);
	mh_err_set(err, MH_ERR_PROTO, "IMAP %s: the server sent more than "
	    "%" PRIu64 " bytes for UID %u of %s, listed much smaller (max_size "
	    "%" PRIu64 "); not retrieved, it stays on the server",
	    s->acct->ep.host, s->too_big_limit, s->too_big, s->folder,
	    s->acct->max_size);
	mh_err_scope(err, MH_SCOPE_MESSAGE);
	return -1;
}

static bool
body_handler(int type, struct mailimap_msg_att_body_section *section,
    const char *bytes, size_t len, void *ctx)
{
	struct imap_source *s = ctx;

	if (s->mode != MODE_BODY || type != MAILIMAP_MSG_ATT_BODY_SECTION)
		return true;
	if (s->cur_fd == -1) {
		if ((s->cur_fd = spool_tmp(s)) == -1) {
			s->io_errno = errno;
			return false;
		}
		s->cur_bytes = 0;
	}
	if (past_limit(s, len))
		return false;		/* stops the FETCH: see batch_fetch */
	if (mh_memspool_bound(s->cur_fd, s->cur_bytes - len, len) == -1) {
		s->io_errno = errno;
		return false;
	}
	while (len > 0) {
		ssize_t w = write(s->cur_fd, bytes, len);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->io_errno = w == -1 ? errno : EIO;
			return false;
		}
		bytes += w;
		len -= (size_t)w;
	}
	net_line_reset(s->imap->imap_stream);	/* a literal's: any length */
	return true;
}

/* An INTERNALDATE as a time; 0 when it is none. */
static time_t
internaldate(const struct mailimap_date_time *d)
{
	struct tm	tm;
	time_t		t;
	int		zone;

	if (d == NULL || d->dt_month < 1 || d->dt_month > 12 ||
	    d->dt_day < 1 || d->dt_day > 31 || d->dt_year < 1970)
		return 0;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = d->dt_year - 1900;
	tm.tm_mon = d->dt_month - 1;
	tm.tm_mday = d->dt_day;
	tm.tm_hour = d->dt_hour;
	tm.tm_min = d->dt_min;
	tm.tm_sec = d->dt_sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return 0;
	zone = d->dt_zone;		/* +0130 is 130 */
	return t - (time_t)((zone / 100) * 3600 + (zone % 100) * 60);
}

/*
 * Binds the body that arrived for slot sl (fd: its spool file, or -1
 * when no byte came: BODY[] NIL, "" or {0}).  An empty body for a
 * message listed with a size is not bound: the slot stays "not
 * returned" (imap_fetch), never an empty message delivered in its
 * place -- and then deleted from the server.
 */
static void
bind_body(struct imap_source *s, struct slot *sl, int fd)
{
	if (fd == -1 && sl->size > 0) {
		log_debug("%s: UID %u came with an empty body (listed %" PRIu64
		    " bytes)", s->acct->name, sl->uid, sl->size);
		return;
	}
	if (fd == -1 && (fd = spool_tmp(s)) == -1) {	/* empty, as listed */
		s->io_errno = errno;
		return;
	}
	sl->fd = fd;
}

/* X-GM-MSGID of a FETCH item, else was. */
static uint64_t
xgm_msgid(const struct mailimap_extension_data *ext, uint64_t was)
{
	if (ext == NULL || ext->ext_extension == NULL ||
	    ext->ext_extension->ext_id != MAILIMAP_EXTENSION_XGMMSGID ||
	    ext->ext_data == NULL)
		return was;
	return *(const uint64_t *)ext->ext_data;
}

static void
att_handler(struct mailimap_msg_att *att, void *ctx)
{
	struct imap_source	*s = ctx;
	time_t			 date = 0;
	uint32_t		 uid = 0, size = 0;
	uint64_t		 gm_msgid = 0;
	bool			 has_size = false, has_body = false;
	int			 fd;

	for (clistiter *it = clist_begin(att->att_list); it != NULL;
	    it = clist_next(it)) {
		struct mailimap_msg_att_item	*item = clist_content(it);
		struct mailimap_msg_att_static	*st;

		if (item->att_type == MAILIMAP_MSG_ATT_ITEM_EXTENSION)
			gm_msgid = xgm_msgid(item->att_data.att_extension_data,
			    gm_msgid);
		if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC ||
		    (st = item->att_data.att_static) == NULL)
			continue;
		if (st->att_type == MAILIMAP_MSG_ATT_UID)
			uid = st->att_data.att_uid;
		else if (st->att_type == MAILIMAP_MSG_ATT_RFC822_SIZE) {
			size = st->att_data.att_rfc822_size;
			has_size = true;
		} else if (st->att_type == MAILIMAP_MSG_ATT_BODY_SECTION)
			has_body = true;
		else if (st->att_type == MAILIMAP_MSG_ATT_INTERNALDATE)
			date = internaldate(st->att_data.att_internal_date);
	}
	if (s->mode == MODE_LIST) {
		/* unsolicited FETCH (FLAGS ...) carries no size: skip */
		if (uid == 0 || !has_size || uid < s->lmin)
			return;
		if (s->ln == s->lcap) {
			s->lcap = s->lcap ? s->lcap * 2 : 64;
			s->lmsgs = xrealloc(s->lmsgs,
			    s->lcap * sizeof *s->lmsgs);
		}
		s->lmsgs[s->ln].uid = NULL;	/* filled after dedup */
		s->lmsgs[s->ln].num = uid;
		s->lmsgs[s->ln].size = size;
		s->lmsgs[s->ln].date = date;
		s->lmsgs[s->ln].gm_msgid = gm_msgid;
		s->ln++;
		return;
	}
	if (s->mode != MODE_BODY || !has_body)
		return;
	fd = s->cur_fd;
	s->cur_fd = -1;
	for (size_t i = 0; uid != 0 && i < s->nbatch; i++) {
		if (s->batch[i].uid != uid)
			continue;
		if (s->batch[i].fd == -1) {
			bind_body(s, &s->batch[i], fd);
			return;
		}
		log_debug("%s: UID %u sent twice; keeping the first",
		    s->acct->name, uid);
		goto drop;
	}
	/* the batches sent ahead: a server may interleave the replies */
	for (size_t b = 0; uid != 0 && b < s->nahead; b++)
		for (size_t i = 0; i < s->ahead[b].n; i++)
			if (s->ahead[b].v[i].uid == uid &&
			    s->ahead[b].v[i].fd == -1) {
				bind_body(s, &s->ahead[b].v[i], fd);
				return;
			}
drop:
	if (fd != -1)
		close(fd);	/* a duplicate, or not asked for */
}

/* ---- listing ----------------------------------------------------- */

static int
cmp_msg(const void *a, const void *b)
{
	const struct source_msg *x = a, *y = b;

	return x->num < y->num ? -1 : x->num > y->num;
}

static int
imap_list(struct source *src, struct source_list *out, struct mh_err *err)
{
	struct imap_source		*s = (struct imap_source *)src;
	struct mailimap_selection_info	*si = s->imap->imap_selection_info;
	struct mailimap_fetch_type	*ft;
	struct mailimap_set		*set;
	clist				*res = NULL;
	uint32_t			 uv, first = 1;
	size_t				 n = 0;
	int				 r;
	bool				 known;

	memset(out, 0, sizeof *out);
	s->known_kept = false;	/* set_known after the select: used here */
	uv = si != NULL ? si->sel_uidvalidity : 0;
	if ((known = uv != 0 && uv == s->known_uidvalidity)) {
		if (s->known_last == UINT32_MAX)
			goto done;
		first = s->known_last + 1;
	} else if (s->known_uidvalidity != 0)
		log_info("%s: %s: UIDVALIDITY changed (%u -> %u): listing all",
		    s->acct->name, s->folder, s->known_uidvalidity, uv);
	/* sent with the SELECT, from the same UID: here already */
	if (s->listed && s->listed_first == first)
		goto sort;
	list_drop(s);
	/* UIDNEXT (RFC 3501) has not moved past what is settled: nothing
	   is new, and no round trip is needed to see it */
	if (known && si->sel_uidnext != 0 && si->sel_uidnext <= first) {
		log_debug("%s: %s: UIDNEXT %u: nothing new", s->acct->name,
		    s->folder, si->sel_uidnext);
		goto done;
	}
	/*
	 * One round trip when nothing is new.  `first:*` returns the
	 * highest message even when it is below first: filter it.  The att
	 * handler streams the listing, so a 100k folder is no big clist.
	 */
	s->lmin = first;
	ft = mailimap_fetch_type_new_fetch_att_list_empty();
	mailimap_fetch_type_new_fetch_att_list_add(ft,
	    mailimap_fetch_att_new_uid());
	mailimap_fetch_type_new_fetch_att_list_add(ft,
	    mailimap_fetch_att_new_rfc822_size());
	mailimap_fetch_type_new_fetch_att_list_add(ft,
	    mailimap_fetch_att_new_internaldate());
	/* Gmail: one message with several labels is in several folders */
	if (has_cap(s, "X-GM-EXT-1"))
		mailimap_fetch_type_new_fetch_att_list_add(ft,
		    mailimap_fetch_att_new_xgmmsgid());
	set = mailimap_set_new_interval(first, 0);
	set_handlers(s, MODE_LIST);
	r = mailimap_uid_fetch(s->imap, set, ft, &res);
	set_handlers(s, MODE_NONE);
	if (r == MAILIMAP_NO_ERROR && res != NULL)	/* else freed, dangling */
		mailimap_fetch_list_free(res);
	mailimap_set_free(set);
	mailimap_fetch_type_free(ft);
	if (r != MAILIMAP_NO_ERROR) {
		list_drop(s);
		return imap_fail(s, r, err, "UID FETCH %u:* (listing %s)",
		    first, s->folder);
	}
sort:
	if (s->ln > 0)		/* qsort(NULL, 0, ...) is undefined */
		qsort(s->lmsgs, s->ln, sizeof *s->lmsgs, cmp_msg);
	for (size_t i = 0; i < s->ln; i++) {
		if (n > 0 && s->lmsgs[n - 1].num == s->lmsgs[i].num)
			continue;	/* a FETCH sent twice */
		s->lmsgs[n] = s->lmsgs[i];
		s->lmsgs[n].uid = xasprintf("%u", s->lmsgs[i].num);
		n++;
	}
	out->msgs = s->lmsgs;
	out->n = n;
	s->lmsgs = NULL;
done:
	list_drop(s);		/* one not used: none left for later */
	out->has_uids = true;
	out->uidvalidity = uv;
	out->on_server = si != NULL ? si->sel_exists : 0;
	return 0;
}

/* ---- fetching ---------------------------------------------------- */

static void
imap_plan(struct source *src, const struct source_msg *const *msgs,
    size_t n)
{
	struct imap_source *s = (struct imap_source *)src;

	batches_drop(s);
	hdrs_drop(s);
	s->plan = msgs;
	s->nplan = n;
	s->cursor = 0;
	s->batch_cap = 0;
}

static void
slots_close(struct slot *slots, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (slots[i].fd >= 0)		/* -2: handed out */
			close(slots[i].fd);
	free(slots);
}

/* The current batch goes (what was not handed out is closed). */
static void
batch_drop(struct imap_source *s)
{
	slots_close(s->batch, s->nbatch);
	s->batch = NULL;
	s->nbatch = 0;
}

/*
 * The messages of a batch from plan index start (the first one always),
 * bounded by cap and BATCH_MAX_BYTES; *end is the plan index after it.
 */
static struct slot *
batch_build(struct imap_source *s, size_t start, size_t cap, size_t *n,
    size_t *end)
{
	struct slot	*b = xcalloc(cap, sizeof *b);
	uint64_t	 bytes = 0;
	size_t		 k;

	for (k = start; k < s->nplan && *n < cap; k++) {
		if (*n > 0 && (bytes >= BATCH_MAX_BYTES ||
		    s->plan[k]->size > BATCH_MAX_BYTES - bytes))
			break;
		bytes += s->plan[k]->size;
		b[*n].uid = s->plan[k]->num;
		b[*n].limit = s->plan[k]->limit;
		b[*n].size = s->plan[k]->size;
		b[(*n)++].fd = -1;
	}
	*end = k;
	return b;
}

static size_t
batch_grow(size_t cap)
{
	return cap == 0 ? BATCH_FIRST_MSGS : cap * 2 > BATCH_MAX_MSGS ?
	    BATCH_MAX_MSGS : cap * 2;
}

/*
 * Sends `UID FETCH <uids> (UID BODY.PEEK[])` without reading the reply;
 * *tag is its tag.  libetpan writes the tag, we the rest (its sender
 * functions are not public).  A libetpan error code.
 */
static int
batch_send(struct imap_source *s, const struct slot *b, size_t n, int *tag)
{
	mailstream	*st = s->imap->imap_stream;
	char		 num[32];
	int		 r;

	if ((r = mailimap_send_current_tag(s->imap)) != MAILIMAP_NO_ERROR)
		return r;
	*tag = s->imap->imap_tag;
	if (mailstream_write(st, "UID FETCH ", 10) == -1)
		return MAILIMAP_ERROR_STREAM;
	for (size_t i = 0; i < n; i++) {
		size_t j = i;

		while (j + 1 < n && b[j + 1].uid == b[j].uid + 1)
			j++;
		if (j > i)
			snprintf(num, sizeof num, "%s%u:%u", i ? "," : "",
			    b[i].uid, b[j].uid);
		else
			snprintf(num, sizeof num, "%s%u", i ? "," : "",
			    b[i].uid);
		if (mailstream_write(st, num, strlen(num)) == -1)
			return MAILIMAP_ERROR_STREAM;
		i = j;
	}
	if (mailstream_write(st, " (UID BODY.PEEK[])\r\n", 20) == -1 ||
	    mailstream_flush(st) == -1)
		return MAILIMAP_ERROR_STREAM;
	return MAILIMAP_NO_ERROR;
}

/*
 * Reads the reply to the UID FETCH tagged tag, the bodies going through
 * the handlers into s->batch: MAILIMAP_NO_ERROR, MAILIMAP_ERROR_UID_FETCH
 * for a tagged NO (its text in imap_response), else the error.  libetpan
 * checks a reply's tag against the last one sent, so it is told the one
 * expected while another command is outstanding.
 */
static int
batch_recv(struct imap_source *s, int tag)
{
	bool	ok;
	int	r;

	s->io_errno = 0;
	s->too_big = 0;
	/* message lines may be of any length (body_handler restarts the
	   line limit's count after each literal chunk); the rest of the
	   reply -- a quoted body, a line that never ends -- may not */
	r = fetch_reply(s, tag, MODE_BODY, &ok);
	if (r == MAILIMAP_NO_ERROR && !ok)
		r = MAILIMAP_ERROR_UID_FETCH;
	return r;
}

/* Whether the first batch sent ahead holds uid. */
static bool
next_has(const struct imap_source *s, uint32_t uid)
{
	for (size_t i = 0; s->nahead > 0 && i < s->ahead[0].n; i++)
		if (s->ahead[0].v[i].uid == uid)
			return true;
	return false;
}

/*
 * The first batch sent ahead becomes the current one (the current one
 * dropped); its tag.
 */
static int
ahead_pop(struct imap_source *s)
{
	int	tag = s->ahead[0].tag;

	batch_drop(s);
	s->batch = s->ahead[0].v;
	s->nbatch = s->ahead[0].n;
	s->batch_end = s->ahead[0].end;
	s->nahead--;
	memmove(s->ahead, s->ahead + 1, s->nahead * sizeof *s->ahead);
	return tag;
}

/* The batches sent ahead are forgotten unread: nothing more comes. */
static void
ahead_close(struct imap_source *s)
{
	for (size_t b = 0; b < s->nahead; b++)
		slots_close(s->ahead[b].v, s->ahead[b].n);
	s->nahead = 0;
}

/*
 * The batches sent ahead are no longer wanted (another plan, a command
 * of another kind to come): their replies are read and their bodies
 * dropped, so the session is back in step.  -1 when that broke the
 * session.
 */
static int
next_drain(struct imap_source *s, struct mh_err *err)
{
	int	r = MAILIMAP_NO_ERROR;

	while (s->nahead > 0 && (r == MAILIMAP_NO_ERROR ||
	    r == MAILIMAP_ERROR_UID_FETCH)) {
		int tag = ahead_pop(s);

		if (s->imap == NULL || s->failed) {
			ahead_close(s);
			batch_drop(s);
			return 0;
		}
		r = batch_recv(s, tag);
		if (s->cur_fd != -1) {
			close(s->cur_fd);
			s->cur_fd = -1;
		}
		batch_drop(s);
		if (s->too_big != 0 || s->io_errno != 0)
			s->failed = true;	/* in the middle of a literal */
		if (s->failed)
			break;
	}
	if (r == MAILIMAP_NO_ERROR || r == MAILIMAP_ERROR_UID_FETCH) {
		if (s->failed)
			ahead_close(s);
		return s->failed ? -1 : 0;
	}
	ahead_close(s);
	return imap_fail(s, r, err, "UID FETCH sent ahead");
}

/* Drains for the callers with nowhere to put an error (logged). */
static void
next_forget(struct imap_source *s)
{
	struct mh_err	e;
	char		buf[512];

	mh_err_clear(&e);
	if (next_drain(s, &e) == -1)
		log_debug("%s: %s", s->acct->name, mh_err_str(&e, buf,
		    sizeof buf));
}

/* All batches go: the ones sent ahead read and dropped first. */
static void
batches_drop(struct imap_source *s)
{
	next_forget(s);
	batch_drop(s);
}

/*
 * Sends the UID FETCH of the batch after the last one sent, if the plan
 * goes on and fewer than AHEAD_MAX are ahead.  A failed write breaks the
 * session: -1 with the error code.
 */
static int
next_send(struct imap_source *s, size_t cap)
{
	struct ahead	*a;
	size_t		 start = s->nahead > 0 ? s->ahead[s->nahead - 1].end :
			    s->batch_end;
	int		 r;

	if (s->nahead == AHEAD_MAX || start >= s->nplan || s->batch_end == 0)
		return MAILIMAP_NO_ERROR;
	a = &s->ahead[s->nahead];
	a->n = 0;
	a->v = batch_build(s, start, cap, &a->n, &a->end);
	if ((r = batch_send(s, a->v, a->n, &a->tag)) != MAILIMAP_NO_ERROR) {
		slots_close(a->v, a->n);
		return r;
	}
	s->nahead++;
	return MAILIMAP_NO_ERROR;
}

/* The plan index of msg, from the cursor on, else before it; nplan. */
static size_t
plan_find(const struct imap_source *s, const struct source_msg *msg)
{
	for (size_t i = s->cursor; i < s->nplan; i++)
		if (s->plan[i] == msg || s->plan[i]->num == msg->num)
			return i;
	for (size_t i = 0; i < s->cursor && i < s->nplan; i++)
		if (s->plan[i]->num == msg->num)
			return i;
	return s->nplan;
}

/*
 * The batch that holds msg becomes the current one: the one sent ahead
 * when it holds msg, else a new one from msg on.  Then the batch after
 * it is sent ahead, and the current one's reply read.  A libetpan code.
 */
static int
batch_start(struct imap_source *s, const struct source_msg *msg,
    struct mh_err *err)
{
	size_t	start;
	int	tag, r;

	s->batch_cap = batch_grow(s->batch_cap);
	if (next_has(s, msg->num)) {
		tag = ahead_pop(s);
	} else {
		if (next_drain(s, err) == -1)
			return MAILIMAP_ERROR_STREAM;
		batch_drop(s);
		if ((start = plan_find(s, msg)) < s->nplan) {
			s->cursor = start;
			s->batch = batch_build(s, start, s->batch_cap,
			    &s->nbatch, &s->batch_end);
		} else {		/* not planned: alone */
			s->batch = xcalloc(1, sizeof *s->batch);
			s->batch[0].uid = msg->num;
			s->batch[0].fd = -1;
			s->batch[0].limit = msg->limit;
			s->batch[0].size = msg->size;
			s->nbatch = 1;
			s->batch_end = 0;
		}
		if ((r = batch_send(s, s->batch, s->nbatch, &tag)) !=
		    MAILIMAP_NO_ERROR)
			return r;
	}
	/* the ones ahead topped up, each bigger than the one before */
	for (size_t cap = s->batch_cap; s->nahead < AHEAD_MAX; ) {
		size_t had = s->nahead;

		cap = batch_grow(cap);
		if ((r = next_send(s, cap)) != MAILIMAP_NO_ERROR)
			return r;
		if (s->nahead == had)
			break;		/* the plan ends */
	}
	return batch_recv(s, tag);
}

/*
 * A UID FETCH that failed with r (not a tagged NO).  What arrived whole
 * before the session broke is kept: imap_fetch hands it out, then fails
 * with err (0).  Else -1, err set (too_big_err's when msg was too big).
 */
static int
batch_failed(struct imap_source *s, const struct source_msg *msg, int r,
    struct mh_err *err)
{
	size_t	arrived = 0;

	imap_fail(s, r, err, "UID FETCH of %zu messages", s->nbatch);
	if (s->too_big != 0)
		s->failed = true;	/* in the middle of a literal */
	if (s->failed)		/* nothing more comes */
		ahead_close(s);
	for (size_t i = 0; i < s->nbatch; i++)
		if (s->batch[i].fd >= 0)
			arrived++;
	if (arrived == 0 || !s->failed) {
		batch_drop(s);
		return s->too_big == msg->num ? too_big_err(s, err) : -1;
	}
	log_debug("%s: %s; %zu message(s) arrived before that",
	    s->acct->name, err->msg, arrived);
	s->fail_err = *err;
	mh_err_clear(err);
	return 0;
}

/*
 * The UID FETCH of the batch that holds msg, read (see batch_start): what
 * arrived is in s->batch, a tagged NO's text in s->batch_reply.
 */
static int
batch_fetch(struct imap_source *s, const struct source_msg *msg,
    struct mh_err *err)
{
	int	r;

	r = batch_start(s, msg, err);
	if (s->cur_fd != -1) {		/* a body with no complete FETCH */
		close(s->cur_fd);
		s->cur_fd = -1;
	}
	s->batch_reply[0] = '\0';
	if (r == MAILIMAP_ERROR_UID_FETCH && s->imap->imap_response != NULL)
		snprintf(s->batch_reply, sizeof s->batch_reply, "%s",
		    s->imap->imap_response);
	if (s->io_errno != 0 && r == MAILIMAP_NO_ERROR)
		r = MAILIMAP_ERROR_MEMORY;
	/* a body past its limit: the rest of the literal was not read */
	if (s->too_big != 0 && r == MAILIMAP_NO_ERROR)
		r = MAILIMAP_ERROR_STREAM;
	/* a tagged NO/BAD is not fatal: what arrived is good */
	if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_UID_FETCH)
		return batch_failed(s, msg, r, err);
	log_debug("%s: fetched a batch of %zu%s", s->acct->name, s->nbatch,
	    s->nahead > 0 ? ", the next ones sent ahead" : "");
	return 0;
}

/*
 * Hands the spooled body in from over to the caller's file to, instead
 * of copying it: when to is an empty regular file, to is made to refer
 * to from's file (its offset at the end, as after a copy; to's
 * close-on-exec flag kept) and to's empty file is kept as a spare for a
 * next body.  Else, or when no descriptor can be made, the body is
 * copied.  The caller closes from either way.  0, or -1 with errno.
 */
static int
give_fd(struct imap_source *s, int from, int to)
{
	struct stat	st;
	int		empty, fl;

	if (fstat(to, &st) == -1 || (fl = fcntl(to, F_GETFD)) == -1)
		return -1;
	if (st.st_size != 0 || !S_ISREG(st.st_mode) ||
	    (empty = fcntl(to, F_DUPFD_CLOEXEC, 0)) == -1)
		return mh_copy_fd(from, to);
	if (dup3(from, to, (fl & FD_CLOEXEC) ? O_CLOEXEC : 0) == -1) {
		close(empty);
		return mh_copy_fd(from, to);
	}
	if (!mh_is_memspool(empty)) {
		if (s->nspare < SPARE_MAX)
			s->spare[s->nspare++] = empty;
		else
			close(empty);
	} else if (s->nspare_mem < SPARE_MAX)
		s->spare_mem[s->nspare_mem++] = empty;
	else
		close(empty);
	return 0;
}

static struct slot *
batch_find(struct imap_source *s, uint32_t uid)
{
	for (size_t i = 0; i < s->nbatch; i++)
		if (s->batch[i].uid == uid)
			return &s->batch[i];
	return NULL;
}

static int
imap_fetch(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	struct imap_source	*s = (struct imap_source *)src;
	struct slot		*sl;
	int			 rc;

	sl = batch_find(s, msg->num);
	if (s->failed || s->imap == NULL) {
		if (sl != NULL && sl->fd >= 0)
			goto copy;	/* arrived before the session broke */
		if (s->too_big != 0 && s->too_big == msg->num)
			return too_big_err(s, err);
		if (s->fail_err.cls != MH_ERR_NONE)
			*err = s->fail_err;
		else
			mh_err_set(err, MH_ERR_TEMP, "IMAP session already "
			    "failed");
		return -1;
	}
	if (sl == NULL || sl->fd == -2) {
		if (batch_fetch(s, msg, err) == -1)
			return -1;
		sl = batch_find(s, msg->num);
		if (s->too_big != 0 && s->too_big == msg->num)
			return too_big_err(s, err);
	}
	if (sl == NULL || sl->fd < 0) {
		/* this message only: the session goes on (source.h) */
		mh_err_set(err, MH_ERR_PERM, "the server did not return "
		    "message UID %u of %s", msg->num, s->folder);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		mh_err_reply(err, s->batch_reply, (size_t)-1);
		if (sl != NULL)
			sl->fd = -2;	/* asked again next time */
		return -1;
	}
copy:
	rc = give_fd(s, sl->fd, fd);
	if (rc == -1)
		mh_err_set(err, MH_ERR_LOCAL, "writing UID %u to the spool: "
		    "%s", msg->num, strerror(errno));
	close(sl->fd);
	sl->fd = -2;
	return rc;
}

static void
hdrs_drop(struct imap_source *s)
{
	for (size_t i = 0; i < s->nhdrs; i++)
		free(s->hdrs[i].text);
	free(s->hdrs);
	s->hdrs = NULL;
	s->nhdrs = 0;
}

/* The first static item of type in att, or NULL. */
static struct mailimap_msg_att_static *
att_find(struct mailimap_msg_att *att, int type)
{
	clistiter	*it;

	for (it = clist_begin(att->att_list); it != NULL; it = clist_next(it)) {
		struct mailimap_msg_att_item *item = clist_content(it);

		if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC &&
		    item->att_data.att_static != NULL &&
		    item->att_data.att_static->att_type == type)
			return item->att_data.att_static;
	}
	return NULL;
}

/* Keeps the header section of one FETCH result in s->hdrs. */
static void
hdrs_take(struct imap_source *s, struct mailimap_msg_att *att)
{
	struct mailimap_msg_att_body_section	*sec = NULL;
	struct mailimap_msg_att_static		*st;
	uint32_t				 uid = 0;

	if ((st = att_find(att, MAILIMAP_MSG_ATT_UID)) != NULL)
		uid = st->att_data.att_uid;
	if ((st = att_find(att, MAILIMAP_MSG_ATT_BODY_SECTION)) != NULL)
		sec = st->att_data.att_body_section;
	if (uid == 0 || sec == NULL || sec->sec_body_part == NULL)
		return;
	for (size_t i = 0; i < s->nhdrs; i++) {
		size_t n = sec->sec_length < HDR_MAX ? sec->sec_length :
		    HDR_MAX;

		if (s->hdrs[i].uid != uid || s->hdrs[i].text != NULL)
			continue;
		s->hdrs[i].text = xmalloc(n + 1);
		memcpy(s->hdrs[i].text, sec->sec_body_part, n);
		s->hdrs[i].len = n;
		return;
	}
}

/*
 * One `UID FETCH set (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])` for
 * msg and up to HDR_BATCH messages after it in the plan.
 */
static int
hdrs_fetch(struct imap_source *s, const struct source_msg *msg,
    struct mh_err *err)
{
	struct mailimap_fetch_type	*ft;
	struct mailimap_set		*set = mailimap_set_new_empty();
	clist				*fields = clist_new(), *res = NULL;
	size_t				 start;
	int				 r;

	if (next_drain(s, err) == -1) {
		mailimap_set_free(set);
		clist_free(fields);
		return -1;
	}
	hdrs_drop(s);
	start = plan_find(s, msg);
	s->hdrs = xcalloc(HDR_BATCH, sizeof *s->hdrs);
	s->hdrs[s->nhdrs++].uid = msg->num;
	for (size_t k = start + 1; k < s->nplan && s->nhdrs < HDR_BATCH; k++)
		s->hdrs[s->nhdrs++].uid = s->plan[k]->num;
	for (size_t i = 0; i < s->nhdrs; i++)
		mailimap_set_add_single(set, s->hdrs[i].uid);
	clist_append(fields, xstrdup("MESSAGE-ID"));
	ft = mailimap_fetch_type_new_fetch_att_list_empty();
	mailimap_fetch_type_new_fetch_att_list_add(ft,
	    mailimap_fetch_att_new_uid());
	mailimap_fetch_type_new_fetch_att_list_add(ft,
	    mailimap_fetch_att_new_body_peek_section(
	    mailimap_section_new_header_fields(
	    mailimap_header_list_new(fields))));
	r = mailimap_uid_fetch(s->imap, set, ft, &res);
	mailimap_set_free(set);
	mailimap_fetch_type_free(ft);
	if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_UID_FETCH)
		return imap_fail(s, r, err, "UID FETCH of %zu headers",
		    s->nhdrs);
	if (r == MAILIMAP_NO_ERROR && res != NULL) {
		for (clistiter *it = clist_begin(res); it != NULL;
		    it = clist_next(it))
			hdrs_take(s, clist_content(it));
		mailimap_fetch_list_free(res);
	}
	return 0;
}

/*
 * The Message-ID field of msg (the only header field fetched), written
 * to fd; fetched in batches along the plan (source_plan).  A message the
 * server did not return: MH_ERR_PERM, MH_SCOPE_MESSAGE.
 */
static int
imap_fetch_header(struct source *src, const struct source_msg *msg, int fd,
    struct mh_err *err)
{
	struct imap_source	*s = (struct imap_source *)src;
	struct hdr		*h = NULL;

	if (s->failed || s->imap == NULL) {
		mh_err_set(err, MH_ERR_TEMP, "IMAP session already failed");
		return -1;
	}
	for (int pass = 0; pass < 2 && h == NULL; pass++) {
		for (size_t i = 0; i < s->nhdrs && h == NULL; i++)
			if (s->hdrs[i].uid == msg->num)
				h = &s->hdrs[i];
		if (h == NULL && pass == 0 && hdrs_fetch(s, msg, err) == -1)
			return -1;
	}
	if (h == NULL || h->text == NULL) {
		mh_err_set(err, MH_ERR_PERM, "the server did not return the "
		    "header of UID %u", msg->num);
		mh_err_scope(err, MH_SCOPE_MESSAGE);
		return -1;
	}
	for (size_t o = 0; o < h->len; ) {
		ssize_t w = write(fd, h->text + o, h->len - o);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			mh_err_set(err, MH_ERR_LOCAL, "writing a header to the "
			    "spool: %s", strerror(errno));
			return -1;
		}
		o += (size_t)w;
	}
	return 0;
}

/* ---- deletion and the end of the session ------------------------- */

/*
 * Queues msg to leave this folder at commit: moved to acct->move_to when
 * set (sync calls mark_delete for that policy too), else deleted.
 */
static int
imap_mark_delete(struct source *src, const struct source_msg *msg,
    struct mh_err *err)
{
	struct imap_source *s = (struct imap_source *)src;

	if (s->ndel == s->delcap) {
		s->delcap = s->delcap ? s->delcap * 2 : 64;
		s->del = xrealloc(s->del, s->delcap * sizeof *s->del);
	}
	s->del[s->ndel++] = msg->num;
	return 0;
}

/* mark_seen = yes: \Seen is set on delivered messages at commit. */
static int
imap_mark_done(struct source *src, const struct source_msg *msg,
    struct mh_err *err)
{
	struct imap_source *s = (struct imap_source *)src;

	if (!s->acct->mark_seen)
		return 0;
	if (s->nseen == s->seencap) {
		s->seencap = s->seencap ? s->seencap * 2 : 64;
		s->seen = xrealloc(s->seen, s->seencap * sizeof *s->seen);
	}
	s->seen[s->nseen++] = msg->num;
	return 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* A set of sorted UIDs, runs compressed into ranges. */
static struct mailimap_set *
set_from(const uint32_t *uids, size_t n)
{
	struct mailimap_set *set = mailimap_set_new_empty();

	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j + 1 < n && uids[j + 1] <= uids[j] + 1)
			j++;
		mailimap_set_add_interval(set, uids[i], uids[j]);
		i = j + 1;
	}
	return set;
}

/*
 * Moves (move_to != NULL) or deletes n UIDs.  UID MOVE when offered,
 * else (UID COPY and) STORE \Deleted + UID EXPUNGE.
 */
static int
delete_chunk(struct imap_source *s, const uint32_t *uids, size_t n,
    const char *move_to, struct mh_err *err)
{
	struct mailimap_set		*set = set_from(uids, n);
	struct mailimap_flag_list	*fl;
	struct mailimap_store_att_flags	*sa;
	int				 r, rc = -1;

	if (move_to != NULL && has_cap(s, "MOVE")) {
		if ((r = mailimap_uid_move(s->imap, set, move_to)) !=
		    MAILIMAP_NO_ERROR)
			imap_fail(s, r, err, "UID MOVE to %s", move_to);
		else
			rc = 0;
		goto out;
	}
	if (move_to != NULL && (r = mailimap_uid_copy(s->imap, set,
	    move_to)) != MAILIMAP_NO_ERROR) {
		imap_fail(s, r, err, "UID COPY to %s", move_to);
		goto out;
	}
	fl = mailimap_flag_list_new_empty();
	mailimap_flag_list_add(fl, mailimap_flag_new_deleted());
	sa = mailimap_store_att_flags_new_add_flags_silent(fl);
	r = mailimap_uid_store(s->imap, set, sa);
	mailimap_store_att_flags_free(sa);
	if (r != MAILIMAP_NO_ERROR) {
		imap_fail(s, r, err, "UID STORE +FLAGS (\\Deleted)");
		goto out;
	}
	if ((r = mailimap_uid_expunge(s->imap, set)) != MAILIMAP_NO_ERROR) {
		imap_fail(s, r, err, "UID EXPUNGE");
		goto out;
	}
	rc = 0;
out:
	mailimap_set_free(set);
	return rc;
}

/* UID STORE +FLAGS.SILENT (\Seen) on n sorted UIDs. */
static int
seen_chunk(struct imap_source *s, const uint32_t *uids, size_t n,
    struct mh_err *err)
{
	struct mailimap_set		*set = set_from(uids, n);
	struct mailimap_flag_list	*fl = mailimap_flag_list_new_empty();
	struct mailimap_store_att_flags	*sa;
	int				 r, rc = 0;

	mailimap_flag_list_add(fl, mailimap_flag_new_seen());
	sa = mailimap_store_att_flags_new_add_flags_silent(fl);
	if ((r = mailimap_uid_store(s->imap, set, sa)) != MAILIMAP_NO_ERROR) {
		imap_fail(s, r, err, "UID STORE +FLAGS (\\Seen)");
		rc = -1;
	}
	mailimap_store_att_flags_free(sa);
	mailimap_set_free(set);
	return rc;
}

static int
imap_commit(struct source *src, struct mh_err *err)
{
	struct imap_source	*s = (struct imap_source *)src;
	const char		*move_to = s->acct->move_to;
	char			*wire = NULL;
	int			 rc = 0;

	batches_drop(s);
	if (s->failed || s->imap == NULL) {
		mh_err_set(err, MH_ERR_TEMP, "IMAP session already failed");
		return -1;
	}
	if (s->nseen > 0) {
		qsort(s->seen, s->nseen, sizeof *s->seen, cmp_u32);
		for (size_t i = 0; i < s->nseen && rc == 0; i += DELETE_CHUNK)
			rc = seen_chunk(s, s->seen + i,
			    s->nseen - i < DELETE_CHUNK ? s->nseen - i :
			    DELETE_CHUNK, err);
		s->nseen = 0;
		if (rc != 0)
			goto out;
	}
	if (move_to != NULL && (move_to = wire = s->utf8 ? xstrdup(move_to) :
	    imap_utf7_encode(move_to)) == NULL) {
		mh_err_set(err, MH_ERR_LOCAL, "move_to is not valid UTF-8");
		rc = -1;
	} else if (s->ndel > 0 && !has_cap(s, "UIDPLUS") &&
	    !(move_to != NULL && has_cap(s, "MOVE"))) {
		/* a plain EXPUNGE would remove other clients' \Deleted */
		mh_err_set(err, MH_ERR_PERM, "the server has no UIDPLUS%s: "
		    "%zu %s in %s not done (messages kept)",
		    move_to != NULL ? " nor MOVE" : "", s->ndel,
		    move_to != NULL ? "move(s)" : "deletion(s)", s->folder);
		mh_err_scope(err, MH_SCOPE_ACCOUNT);
		rc = -1;
	} else if (s->ndel > 0) {
		qsort(s->del, s->ndel, sizeof *s->del, cmp_u32);
		for (size_t i = 0; i < s->ndel && rc == 0; i += DELETE_CHUNK)
			rc = delete_chunk(s, s->del + i,
			    s->ndel - i < DELETE_CHUNK ? s->ndel - i :
			    DELETE_CHUNK, move_to, err);
	}
	s->ndel = 0;
	free(wire);
out:
	/* the session stays for the next folder (LOGOUT at imap_free) */
	if (s->failed)
		session_kill(s);
	return rc;
}

/*
 * Forgets what was queued (nothing of it was sent: deletions and flags
 * go out at commit only); a session that failed is dropped, a sound one
 * stays for the next folder.
 */
static void
imap_abort(struct source *src)
{
	struct imap_source *s = (struct imap_source *)src;

	batches_drop(s);
	s->ndel = s->nseen = 0;
	if (s->failed)
		session_kill(s);
}

static void
imap_free(struct source *src)
{
	struct imap_source *s = (struct imap_source *)src;

	batches_drop(s);
	if (s->imap != NULL && !s->failed) {
		imap_session_logout(s->imap);	/* commits nothing */
		s->imap = NULL;
	}
	session_kill(s);
	if (s->cur_fd != -1)
		close(s->cur_fd);
	while (s->nspare > 0)
		close(s->spare[--s->nspare]);
	while (s->nspare_mem > 0)
		close(s->spare_mem[--s->nspare_mem]);
	hdrs_drop(s);
	free(s->lmsgs);
	free(s->del);
	free(s->seen);
	free(s->folder);
	free(s);
}

/*
 * A folder's UIDs are asked for UIDS_CHUNK messages at a time, by
 * sequence number (the last range open-ended): a SEARCH reply is one
 * line, a line may not exceed NET_LINE_LIMIT (64 KiB: 5000 UIDs of 10
 * digits and a space take 55,000 bytes), and libetpan holds a reply as
 * small allocations, some 40 bytes a UID.  Sequence numbers shift when
 * the server announces an EXPUNGE (another client's) during the walk;
 * then the walk starts again, once, and fails (MH_ERR_TEMP) if the
 * folder keeps changing: a UID missed or counted twice would make an
 * import or a prune wrong.
 */
#define UIDS_CHUNK	5000

/* UID SEARCH of the messages first..last (0: "*"), SEEN ones only or all,
   appended to *uids (*n of *cap).  *shifted when the server announced
   an EXPUNGE meanwhile. */
static int
uids_range(struct imap_source *s, uint32_t first, uint32_t last,
    bool seen_only, uint32_t **uids, size_t *n, size_t *cap, bool *shifted,
    struct mh_err *err)
{
	struct mailimap_search_key	*key, *range, *seen;
	struct mailimap_response_info	*ri;
	clist				*res = NULL;
	char				 set[32];
	size_t				 more;
	int				 r;

	key = range = mailimap_search_key_new_set(
	    mailimap_set_new_interval(first, last));
	if (seen_only) {
		seen = mailimap_search_key_new(MAILIMAP_SEARCH_KEY_SEEN, NULL,
		    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		    NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0,
		    NULL, NULL, NULL);
		key = mailimap_search_key_new_multiple(clist_new());
		mailimap_search_key_multiple_add(key, range);
		mailimap_search_key_multiple_add(key, seen);
	}
	r = mailimap_uid_search(s->imap, NULL, key, &res);
	mailimap_search_key_free(key);
	if (r != MAILIMAP_NO_ERROR) {
		if (last == 0)
			snprintf(set, sizeof set, "%" PRIu32 ":*", first);
		else
			snprintf(set, sizeof set, "%" PRIu32 ":%" PRIu32, first,
			    last);
		return imap_fail(s, r, err, "UID SEARCH %s%s (%s)", set,
		    seen_only ? " SEEN" : "", s->folder);
	}
	more = (size_t)clist_count(res);
	if (*n + more > *cap) {
		*cap = *n + more + UIDS_CHUNK;
		*uids = xrealloc(*uids, *cap * sizeof **uids);
	}
	for (clistiter *it = clist_begin(res); it != NULL; it = clist_next(it))
		(*uids)[(*n)++] = *(uint32_t *)clist_content(it);
	mailimap_search_result_free(res);
	ri = s->imap->imap_response_info;	/* this command's, libetpan's */
	*shifted = ri != NULL && ri->rsp_expunged != NULL &&
	    clist_count(ri->rsp_expunged) > 0;
	return 0;
}

static int
imap_uids(struct source *src, bool seen_only, uint32_t *uidvalidity,
    uint32_t **uids, size_t *n, struct mh_err *err)
{
	struct imap_source		*s = (struct imap_source *)src;
	struct mailimap_selection_info	*si;
	uint32_t			 exists, first;
	size_t				 cap;
	bool				 last, shifted = false;

	if (s->failed || s->imap == NULL) {
		mh_err_set(err, MH_ERR_TEMP, "IMAP session already failed");
		return -1;
	}
	si = s->imap->imap_selection_info;
	*uidvalidity = si != NULL ? si->sel_uidvalidity : 0;
	exists = si != NULL ? si->sel_exists : 0;
	cap = (size_t)exists + 1;
	*uids = xcalloc(cap, sizeof **uids);
	for (int walk = 0; walk < 2; walk++) {
		*n = 0;
		exists = si != NULL ? si->sel_exists : 0;
		if (exists == 0)	/* "1:*" names no message: BAD */
			return 0;
		for (first = 1; ; first += UIDS_CHUNK) {
			last = exists - first < UIDS_CHUNK;
			if (uids_range(s, first, last ? 0 : first +
			    UIDS_CHUNK - 1, seen_only, uids, n, &cap,
			    &shifted, err) == -1)
				goto fail;
			if (shifted || last)
				break;
		}
		if (!shifted)
			return 0;
	}
	mh_err_set(err, MH_ERR_TEMP, "the folder %s changed during the UID "
	    "SEARCH (messages expunged by another client)", s->folder);
fail:
	free(*uids);
	*uids = NULL;
	*n = 0;
	return -1;
}

const struct source_ops imap_source_ops = {
	.name = "imap",
	.open = imap_open,
	.folders = imap_folders,
	.select = imap_select,
	.usable = imap_usable,
	.set_known = imap_set_known,
	.mark_done = imap_mark_done,
	.get_info = imap_get_info,
	.list = imap_list,
	.fetch_header = imap_fetch_header,
	.plan = imap_plan,
	.fetch = imap_fetch,
	.mark_delete = imap_mark_delete,
	.commit = imap_commit,
	.abort = imap_abort,
	.free = imap_free,
	.uids = imap_uids,
};
