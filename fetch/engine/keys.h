/*
 * keys.h -- how the engine tells messages apart: the key a message is
 * recorded under in the state (the server's UID, or a content key when a
 * POP3 server has no UIDL), the key a target may look a message up by,
 * and the content match (Message-ID + size + digest) that recognises a
 * message delivered before a UIDVALIDITY change.  Only the engine uses
 * these; forward/message.c only reads the bytes (message_scan).
 */
#ifndef MAILHAUL_FETCH_ENGINE_KEYS_H
#define MAILHAUL_FETCH_ENGINE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "fetch/source.h"
#include "fetch/state/seen.h"
#include "forward/message.h"
#include "util.h"

/*
 * The key msg of list l is recorded under, in *key (a new string): its
 * UID, or without UIDL "h:<header sha256>:<size>" from the header the
 * source gives (POP3 TOP n 0), read through the spool file spool.
 * -1 with err; MH_ERR_PROTO when the server has neither UIDL nor TOP.
 */
int	keys_message_key(struct source *src, const struct source_list *l,
	    const struct source_msg *msg, int spool, char **key,
	    struct mh_err *err);

/*
 * Without UIDL two copies of one message (same header, same size) have
 * the same content key: keys[i] (a new string, replaced) becomes
 * "<key>#2" for the second in keys[0..i), "#3" for the third, in listing
 * order, so that each is delivered.  When a copy goes, the next takes
 * its key, which is recorded already: nothing is fetched again.
 */
void	keys_number_twin(char **keys, size_t i);

/*
 * The sha256 of keys[0..n) in order, each followed by "\n" (lower-case
 * hex into out): the fingerprint of a listing's settled head
 * (seen_settled_get).
 */
void	keys_digest(char *const *keys, size_t n, char out[65]);

/*
 * The name of a message at its source for a target (target_msg
 * .source_key): "mh.<source row>.<uidvalidity>.<key>", with every byte
 * of key that is not printable ASCII, or is a space, '/', ':' or '%', as
 * "%XX".  Stable across passes and section renames.  New string.
 */
char	*keys_source_key(int64_t source_id, uint32_t uidvalidity,
	    const char *key);

/*
 * The record, of any UIDVALIDITY, of a message with info's Message-ID,
 * size and digest that was delivered: the same message seen again under
 * new UIDs.  NULL if none.
 */
const struct seen_entry *keys_match_content(const struct seen_set *seen,
	    const struct message_info *info);

#endif
