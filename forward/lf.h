/*
 * lf.h -- the line-end rule of the local targets (Maildir, MDA): a
 * message as the protocols carry it (CRLF) becomes what every Maildir
 * reader and MDA expects (LF).  Only a CR directly before an LF goes; a
 * bare CR stays a bare CR, every other byte (NUL, 8bit) is kept.
 *
 * A reader streams the Received: header to prepend (converted the same
 * way) and then a spool file, in bounded memory.
 */
#ifndef MAILHAUL_FORWARD_LF_H
#define MAILHAUL_FORWARD_LF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct lf_reader {
	const char	*received;	/* borrowed; NULL for none */
	size_t		 rlen, rpos;
	int		 fd;		/* borrowed; read with pread */
	off_t		 off;
	bool		 cr;		/* a CR read, its fate unknown yet */
	bool		 eof;
};

/* Starts at the beginning of received (may be NULL), then fd from 0. */
void	lf_open(struct lf_reader *r, const char *received, int fd);

/*
 * Fills buf (cap >= 2) with the next converted bytes.  Returns how many
 * (never 0 before the end), 0 at the end, -1 when reading fd fails
 * (errno set).
 */
ssize_t	lf_read(struct lf_reader *r, void *buf, size_t cap);

/*
 * The converted length of received + fd's bytes (one pass over the
 * file): 0 or -1 (errno set).
 */
int	lf_size(const char *received, int fd, uint64_t *size);

#endif
