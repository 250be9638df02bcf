/* keys.c -- see keys.h */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/engine/keys.h"
#include "fetch/state/spool.h"
#include "net/net.h"

int
keys_message_key(struct source *src, const struct source_list *l,
    const struct source_msg *msg, int spool, char **key, struct mh_err *err)
{
	struct message_info	info;

	if (l->has_uids) {
		*key = xstrdup(msg->uid);
		return 0;
	}
	if (spool_reset(spool, err) == -1)
		return -1;
	if (source_fetch_header(src, msg, spool, err) == -1) {
		if (err->cls == MH_ERR_NONE)
			mh_err_set(err, MH_ERR_PROTO, "the server has neither "
			    "UIDL nor TOP: cannot tell messages apart");
		return -1;
	}
	if (lseek(spool, 0, SEEK_SET) == -1 ||
	    message_scan(spool, &info, err) == -1)
		return -1;
	*key = xasprintf("h:%s:%" PRIu64, info.header_digest, msg->size);
	return 0;
}

void
keys_number_twin(char **keys, size_t i)
{
	size_t		 j, len = strlen(keys[i]);
	unsigned	 n = 1;
	char		*k;

	for (j = 0; j < i; j++)
		if (strncmp(keys[j], keys[i], len) == 0 &&
		    (keys[j][len] == '\0' || keys[j][len] == '#'))
			n++;
	if (n == 1)
		return;
	k = xasprintf("%s#%u", keys[i], n);
	free(keys[i]);
	keys[i] = k;
}

void
keys_digest(char *const *keys, size_t n, char out[65])
{
	struct net_sha256	*h = net_sha256_new();
	char			 buf[16384];
	size_t			 i, len, used = 0;

	/* in blocks: one update per key costs more than the hashing */
	for (i = 0; i < n; i++) {
		len = strlen(keys[i]);
		if (used + len + 1 > sizeof buf) {
			net_sha256_update(h, buf, used);
			used = 0;
		}
		if (len + 1 > sizeof buf) {
			net_sha256_update(h, keys[i], len);
			net_sha256_update(h, "\n", 1);
			continue;
		}
		memcpy(buf + used, keys[i], len);
		buf[used + len] = '\n';
		used += len + 1;
	}
	net_sha256_update(h, buf, used);
	net_sha256_final(h, out);
}

char *
keys_source_key(int64_t source_id, uint32_t uidvalidity, const char *key)
{
	char	*out, *p;
	size_t	 i;

	out = xmalloc(64 + 3 * strlen(key));
	p = out + sprintf(out, "mh.%" PRId64 ".%" PRIu32 ".", source_id,
	    uidvalidity);
	for (i = 0; key[i] != '\0'; i++) {
		unsigned char c = (unsigned char)key[i];

		if (c <= 0x20 || c >= 0x7f || c == '/' || c == ':' ||
		    c == '%')
			p += sprintf(p, "%%%02X", c);
		else
			*p++ = (char)c;
	}
	*p = '\0';
	return out;
}

const struct seen_entry *
keys_match_content(const struct seen_set *seen,
    const struct message_info *info)
{
	return seen_lookup_content(seen, info->message_id[0] != '\0' ?
	    info->message_id : NULL, info->size, info->digest);
}
