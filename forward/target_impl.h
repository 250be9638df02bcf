/*
 * target_impl.h -- for implementers of a target kind (forward/smtp.c and
 * the kinds to come) only; the engine and the CLI use target.h.
 *
 * Adding a kind: one file forward/KIND.c that defines one
 * `const struct target_ops` and a struct embedding `struct target` as
 * its FIRST member; one entry in target.c's table (by enum
 * cfg_target_type); its keys in config/config.c's key table.  The
 * semantics of each op are those of the public function of the same
 * name in target.h; target.c checks and clears before dispatching
 * (err cleared, res emptied).  Ops a kind lacks may be NULL:
 * set_timeout, connect (then it is a no-op), get_info, seen (the kind
 * cannot be asked), command (the kind has no command line: smtp only),
 * probe (connect says all there is to say), set_batch and flush (the
 * kind delivers durably at once: target.h, group commit), collect (the
 * kind never returns TARGET_PENDING: target.h, pipelining), prepare
 * (the kind sends nothing ahead: target.h, target_prepare).
 */
#ifndef MAILHAUL_FORWARD_TARGET_IMPL_H
#define MAILHAUL_FORWARD_TARGET_IMPL_H

#include "forward/target.h"

struct target_ops {
	const char *name;	/* "smtp" */
	/* *out on 0; err on -1.  cred borrowed (copy its secret). */
	int	(*open)(const struct cfg_target *t,
		    const struct sasl_cred *cred,
		    struct target **out, struct mh_err *err);
	void	(*set_timeout)(struct target *tg, int timeout_ms);
	int	(*connect)(struct target *tg, struct mh_err *err);
	void	(*get_info)(struct target *tg, struct target_info *info);
	int	(*seen)(struct target *tg, const struct target_msg *m,
		    bool *found, struct mh_err *err);
	int	(*probe)(struct target *tg, char *note, size_t size,
		    struct mh_err *err);
	enum target_outcome (*deliver)(struct target *tg,
		    const struct target_msg *m, struct target_result *res,
		    struct mh_err *err);
	bool	(*prepare)(struct target *tg, const struct target_msg *m);
	void	(*close)(struct target *tg);	/* frees; never NULL tg */
	int	(*command)(struct target *tg, const char *cmd, int *code,
		    struct mh_err *err);
	void	(*set_batch)(struct target *tg, bool on);
	int	(*flush)(struct target *tg, struct mh_err *err);
	enum target_outcome (*collect)(struct target *tg,
		    struct target_result *res, struct mh_err *err);
};

/* The base every implementation embeds first; set by the open op. */
struct target {
	const struct target_ops *ops;
	const struct cfg_target *cfg;	/* borrowed from the config */
};

/* Adds a copy of dest to res. */
void	target_result_add(struct target_result *res, const char *dest);

/* Whether dest is in m->done. */
bool	target_msg_done(const struct target_msg *m, const char *dest);

extern const struct target_ops smtp_target_ops;	/* smtp and lmtp */
extern const struct target_ops maildir_target_ops;
extern const struct target_ops mda_target_ops;
extern const struct target_ops imap_target_ops;	/* imap (APPEND) */
extern const struct target_ops gmail_target_ops;	/* gmail (API import) */

#endif
