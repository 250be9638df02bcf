/*
 * message.h -- what mailhaul reads from a spooled message: never parsed
 * as MIME, only the header fields it needs (Message-ID, Return-Path,
 * Date), whether it is 8-bit, and a digest of every byte and of the
 * header (which the engine's keys use: fetch/engine/keys.h), all in one
 * pass; and the Received: header a target prepends.
 */
#ifndef MAILHAUL_FORWARD_MESSAGE_H
#define MAILHAUL_FORWARD_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util.h"

struct message_info {
	uint64_t	size;
	char		digest[65];		/* sha256 hex of all bytes */
	char		header_digest[65];	/* sha256 hex of the header */
	char		message_id[256];	/* "<...>" or "" if none */
	char		return_path[256];	/* without <>; "" for <> or none */
	time_t		date;			/* the Date: field; 0 if none or
						   not a date */
	bool		has_return_path;
	bool		eightbit;		/* a byte >= 0x80 anywhere */
};

/*
 * Reads the file fd from offset 0 to its end, once, in bounded memory,
 * and fills info.  Header fields are unfolded; the first occurrence wins;
 * over-long values are cut, not trusted.  Leaves the offset at the end.
 */
int	message_scan(int fd, struct message_info *info, struct mh_err *err);

/*
 * The same on a buffer (the header of a TOP reply, fuzz targets).
 */
void	message_scan_buf(const void *buf, size_t len, struct message_info *info);

/*
 * A Received: header naming the account and how the message came:
 *   Received: from HOST by HELO (mailhaul) with PROTO
 *	id UID (TOKEN) for <RCPT>; DATE\r\n
 * folded at 78 columns; every argument is sanitised (no CR/LF, no
 * control bytes).  rcpt may be NULL.  TOKEN is message_key_token() of
 * source_key (the target_msg's), left out when source_key is NULL: a
 * target that can be searched (IMAP) finds a message in doubt by it.
 * Returns a new string.
 */
char	*message_received(const char *account, const char *protocol,
	    const char *host, const char *uid, const char *source_key,
	    const char *rcpt, time_t when);

/*
 * The token that stands for source_key in a delivered copy: "mh-" and
 * 32 lower-case hex digits of its sha256.  Fixed length and nothing but
 * [a-z0-9-], so that a substring search (IMAP SEARCH HEADER) finds
 * exactly it, never a longer key that starts the same.
 */
#define MESSAGE_TOKEN_SIZE	36	/* with the NUL */
void	message_key_token(const char *source_key,
	    char out[MESSAGE_TOKEN_SIZE]);

#endif
