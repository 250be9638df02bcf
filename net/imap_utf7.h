/*
 * imap_utf7.h -- IMAP mailbox names in modified UTF-7 (RFC 3501 5.1.3).
 * The IMAP source (fetch/imap.c) and the IMAP target use it.
 */
#ifndef MAILHAUL_NET_IMAP_UTF7_H
#define MAILHAUL_NET_IMAP_UTF7_H

#include <stdbool.h>

/*
 * Decodes a server's mailbox name to UTF-8 for display.  Returns a new
 * string; a name that is not valid modified UTF-7 is returned unchanged
 * (a copy).  Never NULL.
 */
char	*imap_utf7_decode(const char *name);

/*
 * Encodes a UTF-8 name (from the config) into modified UTF-7 for the
 * wire.  ASCII names come back unchanged ("&" becomes "&-").  Returns a
 * new string, or NULL when name is not valid UTF-8.
 */
char	*imap_utf7_encode(const char *name);

/*
 * mailhaul keeps every mailbox name as the server spells it without
 * UTF-8 (modified UTF-7: folder lists, the state DB's source identity),
 * whatever the session, so that a server that starts offering
 * UTF8=ACCEPT (RFC 6855) refetches nothing.  These translate at the
 * wire of a session with UTF8=ACCEPT enabled (utf8 true); without it
 * they copy.  New strings.
 *
 * imap_wire_name: the name to send for canon (never NULL).
 * imap_canon_name: the name to keep for one the server sent (LIST);
 * NULL when a UTF-8 session sent a name that is not valid UTF-8.  An
 * ASCII name is kept as sent even on a UTF-8 session: Courier IMAP 5
 * goes on listing modified UTF-7 after ENABLED UTF8=ACCEPT, and such a
 * name must keep its identity (a name with a literal '&' from a server
 * that does switch is then kept as "A&B", not "A&-B": harmless, it is
 * sent back as it came).
 */
char	*imap_wire_name(const char *canon, bool utf8);
char	*imap_canon_name(const char *wire, bool utf8);

#endif
