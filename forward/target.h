/*
 * target.h -- where mail goes: SMTP or LMTP (one module, forward/smtp.c).
 *
 * One connection per pass: target_open connects lazily on the first
 * message, RSET between messages, QUIT at target_close.  A message is a
 * spool file; the delivered bytes are that file's bytes, plus one
 * prepended Received: header unless the target says received = no.
 */
#ifndef MAILHAUL_FORWARD_TARGET_H
#define MAILHAUL_FORWARD_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "net/peer.h"
#include "net/sasl.h"
#include "util.h"

struct target;		/* opaque */

/* One message to deliver. */
struct target_msg {
	int		 fd;		/* spool file, read from offset 0; the
					   caller owns it */
	uint64_t	 size;
	const char	*return_path;	/* from the message, without <>; NULL or
					   "" for the null sender */
	bool		 eightbit;	/* has bytes >= 0x80 */
	const char	*received;	/* full "Received: ...\r\n" header to
					   prepend, or NULL */
	const char *const *done;	/* recipients that already have it
					   (an earlier partial delivery): not
					   sent to again; NULL when ndone 0 */
	size_t		 ndone;
};

enum target_outcome {
	TARGET_DELIVERED = 0,	/* every recipient 2xx */
	TARGET_TEMPFAIL,	/* a 4xx, a lost connection: retry later */
	TARGET_PERMFAIL,	/* a 5xx: record, keep on the source */
};

/* What `mailhaul check` prints about a target. */
struct target_info {
	char	greeting[256];
	char	capabilities[512];
	bool	tls;
	struct net_peer_info peer;	/* when tls */
};

/*
 * Prepares a target.  cred's secret is copied (wiped at close) and its
 * kind kept; the user is the config's.  NULL (or a NULL secret) for no
 * AUTH.  Does not connect.
 */
struct target *target_new(const struct cfg_target *t,
	    const struct sasl_cred *cred);

/*
 * Sets the connect and per-read/write timeout (milliseconds; 0: net's
 * default of 60 s) for the next connection.
 */
void	target_set_timeout(struct target *tg, int timeout_ms);

/* Connects, TLS, EHLO/LHLO, AUTH now (for check); 0 or -1 with err. */
int	target_connect(struct target *tg, struct mh_err *err);
void	target_get_info(struct target *tg, struct target_info *info);

/*
 * Delivers one message (connecting first if needed) to every recipient
 * not in m->done.  Returns the outcome; for anything but DELIVERED err
 * holds our text and the server's reply (with mixed results, the first
 * refusal's reply, and the outcome is TEMPFAIL if any recipient got a
 * 4xx, else PERMFAIL).  After a lost connection the next call
 * reconnects.  An outcome is never DELIVERED unless the final reply
 * after the data was 2xx for every recipient sent to; with every
 * recipient in m->done it is DELIVERED without a transaction.
 */
enum target_outcome target_deliver(struct target *tg,
	    const struct target_msg *m, struct mh_err *err);

/*
 * The recipients (borrowed from the config; valid until the next
 * target_deliver) whose reply after the data of the last target_deliver
 * was 2xx: on DELIVERED every one sent to, otherwise those that have the
 * message although others refused it or the connection was lost.
 */
const char *const *target_accepted(const struct target *tg, size_t *n);

/* QUIT and free; NULL is a no-op. */
void	target_close(struct target *tg);

#endif
