/*
 * source_impl.h -- for implementers of a source (pop3.c, imap.c) only.
 *
 * Each implementation defines one `const struct source_ops` and a struct
 * that embeds `struct source` as its FIRST member; source.c dispatches.
 * The semantics of each op are those of the public function of the same
 * name in source.h.  Ops that an implementation lacks may be NULL
 * (fetch_header, folders, select, usable, set_known, mark_done,
 * fetched_in_vain, requested, list_sizes: then lists never have
 * sizes_pending; uids: then source_imap_uids fails).
 */
#ifndef MAILHAUL_FETCH_SOURCE_IMPL_H
#define MAILHAUL_FETCH_SOURCE_IMPL_H

#include "fetch/source.h"
#include "net/endpoint.h"
#include "net/net.h"

struct source_ops {
	const char *name;	/* "pop3" */
	int	(*open)(const struct cfg_account *acct, const char *folder,
		    const struct sasl_cred *cred, struct source **out,
		    struct mh_err *err);
	int	(*folders)(const struct cfg_account *acct,
		    const struct sasl_cred *cred, struct source **session,
		    char ***out, struct mh_err *err);
	int	(*select)(struct source *src, const char *folder,
		    struct mh_err *err);
	bool	(*usable)(const struct source *src);
	void	(*set_known)(struct source *src, uint32_t uidvalidity,
		    uint32_t last_uid);
	void	(*get_info)(struct source *src, struct source_info *info);
	int	(*list)(struct source *src, struct source_list *out,
		    struct mh_err *err);
	int	(*fetch_header)(struct source *src,
		    const struct source_msg *msg, int fd, struct mh_err *err);
	void	(*plan)(struct source *src,
		    const struct source_msg *const *msgs, size_t n);
	bool	(*requested)(const struct source *src,
		    const struct source_msg *msg);
	int	(*fetch)(struct source *src, const struct source_msg *msg,
		    int fd, struct mh_err *err);
	int	(*mark_done)(struct source *src,
		    const struct source_msg *msg, struct mh_err *err);
	int	(*mark_delete)(struct source *src,
		    const struct source_msg *msg, struct mh_err *err);
	int	(*commit)(struct source *src, struct mh_err *err);
	void	(*abort)(struct source *src);
	void	(*free)(struct source *src);
	void	(*fetched_in_vain)(struct source *src, size_t ahead,
		    size_t failed);
	int	(*list_sizes)(struct source *src, struct source_list *l,
		    const bool *want, struct mh_err *err);
	int	(*uids)(struct source *src, bool seen_only,
		    uint32_t *uidvalidity, uint32_t **uids, size_t *n,
		    struct mh_err *err);
};

/* The base every implementation embeds first; set by source_open. */
struct source {
	const struct source_ops *ops;
	bool			 spent;	/* committed or aborted (for
					   implementations without usable) */
};

/*
 * The connection parameters of acct (host, port, tls, ca_file, pin,
 * timeouts); p's strings are borrowed from acct.
 */
void	source_net_params(const struct cfg_account *acct,
	    struct net_params *p);

/* acct's per-operation timeout in milliseconds; 0: net's default. */
int	source_timeout_ms(const struct cfg_account *acct);

extern const struct source_ops pop3_source_ops;
extern const struct source_ops imap_source_ops;
extern const struct source_ops etrn_source_ops;	/* asks, fetches nothing */

#endif
