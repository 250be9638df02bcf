/*
 * fuzz-message.c -- message_scan_buf (the header fields mailhaul reads:
 * Message-ID, Return-Path, unfolding, over-long values) and
 * message_received's sanitising of whatever the server called a UID.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forward/message.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct message_info info;
	char *uid, *r;
	const char *p;

	memset(&info, 0xa5, sizeof info);
	message_scan_buf(data, len, &info);
	if (info.size != len ||
	    memchr(info.message_id, '\0', sizeof info.message_id) == NULL ||
	    memchr(info.return_path, '\0', sizeof info.return_path) == NULL ||
	    strlen(info.digest) != 64)
		abort();
	/* the first 200 bytes as a UID in the Received: header */
	uid = strndup((const char *)data, len < 200 ? len : 200);
	if (uid == NULL)
		abort();
	r = message_received("acct", "pop3", "host.example", uid, uid,
	    info.return_path, 0);
	/* one header: CRLF only at folds and at the end, no bare CR/LF */
	for (p = r; *p; p++) {
		if (*p == '\n' && (p == r || p[-1] != '\r'))
			abort();
		if (*p == '\r' && p[1] != '\n')
			abort();
		if (*p == '\n' && p[1] != '\0' && p[1] != ' ' && p[1] != '\t')
			abort();
	}
	free(r);
	free(uid);
	return 0;
}
