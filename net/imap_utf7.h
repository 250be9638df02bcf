/*
 * imap_utf7.h -- IMAP mailbox names in modified UTF-7 (RFC 3501 5.1.3).
 * The IMAP source (fetch/imap.c) and the IMAP target use it.
 */
#ifndef MAILHAUL_NET_IMAP_UTF7_H
#define MAILHAUL_NET_IMAP_UTF7_H

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

#endif
