/*
 * log.h -- leveled logging to stderr or syslog.
 *
 * Callers name the account themselves: log_info("%s: 3 delivered", name).
 * Nothing logged may contain a secret; protocol transcripts (debug level)
 * go through log_transcript(), which redacts credentials.
 */
#ifndef MAILHAUL_LOG_H
#define MAILHAUL_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* The process-wide level (one of the two permitted globals). */
extern enum log_level log_level;

/* Chooses the sink; with syslog, ident is the program name. */
void	log_init(enum log_level level, bool use_syslog);

/*
 * log = FILE: from now on, lines are appended to path (opened with
 * O_APPEND, so that forked workers' lines never overwrite each other),
 * with a time stamp; 0, or -1 with errno.  Lines also carry a time stamp
 * on stderr when it is not a terminal (and not journald's stream).
 */
int	log_to_file(const char *path);

/* Parses "error|warn|info|debug"; -1 on anything else. */
int	log_level_parse(const char *s, enum log_level *out);

void	log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Debug-level protocol transcript of one chunk sent (sent=true) or
 * received.  Lines that carry credentials (PASS, AUTH, LOGIN, and
 * continuation lines after an AUTH challenge when secret=true) are logged
 * with their argument replaced by "<redacted>".
 */
void	log_transcript(const char *who, bool sent, bool secret,
	    const char *data, size_t len);

#endif
