/* imap.c -- the IMAP source (being written); see source.h */
#include "fetch/source_impl.h"

static int
imap_open(const struct cfg_account *acct, const char *folder,
    const char *password, struct source **out, struct mh_err *err)
{
	mh_err_set(err, MH_ERR_LOCAL, "IMAP is not supported yet");
	return -1;
}

const struct source_ops imap_source_ops = {
	.name = "imap",
	.open = imap_open,
};
