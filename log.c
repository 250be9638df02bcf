/* log.c -- see log.h */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum log_level log_level = LOG_LVL_INFO;
static bool use_syslog;
static FILE *log_file;		/* log = FILE, or NULL: stderr */
static bool stamp;		/* a time before each line */

void
log_init(enum log_level level, bool syslog_)
{
	log_level = level;
	use_syslog = syslog_;
	if (use_syslog)
		openlog("mailhaul", LOG_PID | LOG_NDELAY, LOG_MAIL);
	/* a terminal shows the time; journald adds its own */
	stamp = log_file != NULL || (!isatty(STDERR_FILENO) &&
	    getenv("JOURNAL_STREAM") == NULL);
}

int
log_to_file(const char *path)
{
	FILE	*f = fopen(path, "ae");

	if (f == NULL)
		return -1;
	setvbuf(f, NULL, _IOLBF, 0);
	if (log_file != NULL)
		fclose(log_file);
	log_file = f;
	stamp = true;
	use_syslog = false;
	return 0;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	if (strcasecmp(s, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

static void	vlog(enum log_level, const char *, va_list)
		    __attribute__((format(printf, 2, 0)));

static void
vlog(enum log_level lvl, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *const tag[] = { "error: ", "warning: ", "", "debug: " };
	char	buf[2048], when[40] = "";
	time_t	now;
	struct tm tm;

	if (lvl > log_level)
		return;
	vsnprintf(buf, sizeof buf, fmt, ap);
	if (use_syslog) {
		syslog(prio[lvl], "%s", buf);
		return;
	}
	if (stamp) {
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S ", &tm);
	}
	if (stamp)
		fprintf(log_file != NULL ? log_file : stderr,
		    "%smailhaul[%ld]: %s%s\n", when, (long)getpid(), tag[lvl],
		    buf);
	else
		fprintf(stderr, "mailhaul: %s%s\n", tag[lvl], buf);
}

#define LOGFN(name, lvl)					\
void								\
name(const char *fmt, ...)					\
{								\
	va_list	ap;						\
	va_start(ap, fmt);					\
	vlog(lvl, fmt, ap);					\
	va_end(ap);						\
}
LOGFN(log_error, LOG_LVL_ERROR)
LOGFN(log_warn, LOG_LVL_WARN)
LOGFN(log_info, LOG_LVL_INFO)
LOGFN(log_debug, LOG_LVL_DEBUG)
#undef LOGFN

/* Commands whose arguments are credentials. */
static bool
is_secret_command(const char *line, size_t len)
{
	static const char *const cmds[] = { "PASS ", "AUTH ", "APOP ",
	    "LOGIN ", "AUTHENTICATE " };
	size_t	 i, off = 0;

	/* IMAP: skip the tag */
	while (off < len && line[off] != ' ' && off < 16)
		off++;
	for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		size_t n = strlen(cmds[i]);

		if (len >= n && strncasecmp(line, cmds[i], n) == 0)
			return true;
		if (off + 1 + n <= len &&
		    strncasecmp(line + off + 1, cmds[i], n) == 0)
			return true;
	}
	return false;
}

void
log_transcript(const char *who, bool sent, bool secret, const char *data,
    size_t len)
{
	size_t	start = 0, i;

	if (log_level < LOG_LVL_DEBUG)
		return;
	for (i = 0; i <= len; i++) {
		if (i < len && data[i] != '\n')
			continue;
		size_t n = i - start;
		const char *l = data + start;

		if (n > 0 && l[n - 1] == '\r')
			n--;
		if (n > 0 || i < len) {
			if (sent && (secret || is_secret_command(l, n)))
				log_debug("%s >> <redacted>", who);
			else
				log_debug("%s %s %.*s", who,
				    sent ? ">>" : "<<", (int)(n > 300 ? 300 : n), l);
		}
		start = i + 1;
	}
}
