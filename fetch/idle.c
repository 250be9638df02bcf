/*
 * idle.c -- IMAP IDLE watchers; see idle.h and notes/libetpan.md Q4.
 *
 * imap_session.c opens the session (as for fetching: STARTTLS, LOGIN or
 * AUTHENTICATE PLAIN), libetpan does EXAMINE; IDLE itself is ours, on the stream: "tag IDLE", lines until
 * "+", net_wait_readable() noting "* n EXISTS" / "* n RECENT", "DONE",
 * lines until the tagged reply.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "fetch/idle.h"
#include "net/imap_session.h"
#include "fetch/source_impl.h"
#include "fetch/source.h"
#include "log.h"
#include "net/login.h"
#include "net/net.h"
#include "net/oauth2.h"

#define IDLE_TAG		"mhI"
#define IDLE_RESTART_MS		(28 * 60 * 1000)
#define BACKOFF_MIN_MS		1000
#define BACKOFF_MAX_MS		(5 * 60 * 1000)
#define STABLE_MS		(60 * 1000)	/* an IDLE connection up this
						   long resets the backoff */
#define RESTART_MIN_MS		5000		/* a watcher that died: */
#define RESTART_MAX_MS		(60 * 1000)	/* its restart's delay */
#define AUTH_RETRY_MS		(60 * 60 * 1000)
#define MAX_LINES		100000	/* per reply we wait for */

enum idle_rc { IDLE_AGAIN = 0, IDLE_LOST = -1, IDLE_NOTSUP = -2 };

static void	emit(int, char, const char *);
static void	sleep_ms(int64_t);

/* One event line to the scheduler; a gone scheduler ends us. */
static void
emit(int wfd, char kind, const char *arg)
{
	char	buf[300];
	int	n;

	n = snprintf(buf, sizeof buf, "%c %s\n", kind, arg);
	if (n < 0 || (size_t)n >= sizeof buf)
		n = snprintf(buf, sizeof buf, "%c ?\n", kind);
	if (write(wfd, buf, (size_t)n) != n && errno == EPIPE)
		_exit(0);
}

static void
sleep_ms(int64_t ms)
{
	struct timespec	ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int64_t
restart_ms(void)
{
	const char	*e = getenv("MAILHAUL_IDLE_RESTART");
	double		 s;

	if (e != NULL && (s = atof(e)) > 0)
		return (int64_t)(s * 1000.0);
	return IDLE_RESTART_MS;
}

/* Connects, TLS, logs in (imap_session.c), EXAMINE folder. */
static int
idle_open(const struct cfg_account *acct, const struct sasl_cred *cred,
    const char *folder, mailimap **out, struct mh_err *err)
{
	struct imap_open	 o;
	mailimap		*imap;
	int			 r;

	memset(&o, 0, sizeof o);
	if (imap_session_open(&acct->ep, source_timeout_ms(acct), cred, &o,
	    &imap, err) == -1)
		return -1;
	if ((r = mailimap_examine(imap, folder)) != MAILIMAP_NO_ERROR) {
		imap_session_fail(imap, r, "EXAMINE", err);
		imap_session_kill(imap);
		return -1;
	}
	*out = imap;
	return 0;
}

/* "* n EXISTS" or "* n RECENT" with n > 0. */
static bool
is_new_mail(const char *l)
{
	char	*end;
	long	 n;

	if (strncmp(l, "* ", 2) != 0)
		return false;
	n = strtol(l + 2, &end, 10);
	if (end == l + 2 || *end != ' ')
		return false;
	end++;
	if (strncasecmp(end, "EXISTS", 6) == 0)
		return true;
	return strncasecmp(end, "RECENT", 6) == 0 && n > 0;
}

static bool
is_tagged(const char *l)
{
	return strncmp(l, IDLE_TAG " ", strlen(IDLE_TAG) + 1) == 0;
}

static int
send_line(mailstream *st, const char *s)
{
	if (mailstream_write(st, s, strlen(s)) == -1 ||
	    mailstream_flush(st) == -1)
		return -1;
	return 0;
}

/*
 * One IDLE round: until the restart time (or until_ms when it comes
 * first; 0: none), a drop or an error.  New mail is reported on wfd as
 * it comes.
 */
static enum idle_rc
idle_round(const struct cfg_account *acct, mailimap *imap, const char *folder,
    int wfd, int64_t until_ms)
{
	mailstream	*st = imap->imap_stream;
	MMAPString	*line = mmap_string_new("");
	enum idle_rc	 rc = IDLE_LOST;
	int64_t		 deadline, left;
	char		*l;
	int		 i, r;

	if (line == NULL)
		return IDLE_LOST;
	if (send_line(st, IDLE_TAG " IDLE\r\n") == -1)
		goto out;
	for (i = 0; i < MAX_LINES; i++) {
		if ((l = mailstream_read_line_remove_eol(st, line)) == NULL)
			goto out;
		if (l[0] == '+')
			break;
		if (is_new_mail(l))
			emit(wfd, 'N', folder);
		if (is_tagged(l)) {	/* NO/BAD: no IDLE after all */
			log_info("%s: %s: the server refused IDLE: %s",
			    acct->name, folder, l + strlen(IDLE_TAG) + 1);
			rc = IDLE_NOTSUP;
			goto out;
		}
		if (strncasecmp(l, "* BYE", 5) == 0)
			goto out;
	}
	if (i == MAX_LINES)
		goto out;
	deadline = now_ms() + restart_ms();
	if (until_ms != 0 && until_ms < deadline)
		deadline = until_ms;
	while ((left = deadline - now_ms()) > 0) {
		r = net_wait_readable(st, left > 60000 ? 60000 : (int)left,
		    -1);
		if (r == 0)
			continue;
		if (r != 1)
			goto out;
		if ((l = mailstream_read_line_remove_eol(st, line)) == NULL)
			goto out;
		log_debug("%s: %s: IDLE: %s", acct->name, folder, l);
		if (is_new_mail(l))
			emit(wfd, 'N', folder);
		if (strncasecmp(l, "* BYE", 5) == 0 || is_tagged(l))
			goto out;
	}
	if (send_line(st, "DONE\r\n") == -1)
		goto out;
	for (i = 0; i < MAX_LINES; i++) {
		if ((l = mailstream_read_line_remove_eol(st, line)) == NULL)
			goto out;
		if (is_new_mail(l))
			emit(wfd, 'N', folder);
		if (is_tagged(l)) {
			if (strncasecmp(l + strlen(IDLE_TAG) + 1, "OK", 2) == 0)
				rc = IDLE_AGAIN;
			goto out;
		}
	}
out:
	mmap_string_free(line);
	return rc;
}

/*
 * When a connection that logged in with a token expiring at exp (unix
 * time; 0: a password or unknown) must log in again: before the token
 * expires, by OAUTH2_EXPIRY_MARGIN or half its remaining life when that
 * is shorter (then oauth2_token() refreshes it).  0: never.
 */
static int64_t
reauth_at(int64_t exp)
{
	int64_t	left, margin = OAUTH2_EXPIRY_MARGIN * 1000;

	if (exp == 0)
		return 0;
	left = (exp - (int64_t)time(NULL)) * 1000;
	if (margin > left / 2)
		margin = left / 2;
	if (left - margin < 1000)
		return now_ms() + 1000;
	return now_ms() + left - margin;
}

/*
 * Logs in (a password, or a current OAuth2 token: a refused cached one is
 * refreshed and tried once more) and EXAMINEs folder; *reauth_ms gets
 * when to log in again (reauth_at).
 */
static int
folder_connect(const struct cfg_account *acct, const char *statedir,
    const char *folder, mailimap **imap, int64_t *reauth_ms,
    struct mh_err *err)
{
	struct login	login;
	char		what[300];
	int		rc = -1;

	snprintf(what, sizeof what, "account %s", acct->name);
	if (login_get(&acct->ep, statedir, what, &login, err) == -1)
		goto out;
	while (idle_open(acct, &login.cred, folder, imap, err) == -1)
		if (!login_retry(&login, err))
			goto out;
	*reauth_ms = reauth_at(login.expires_at);
	rc = 0;
out:
	login_free(&login);
	return rc;
}

/* Sleeps after a failed connection; returns the next backoff. */
static int64_t
connect_failed(const struct cfg_account *acct, const char *folder, int wfd,
    const struct mh_err *err, int64_t backoff)
{
	char	buf[1200];

	log_warn("%s: %s: IDLE connection: %s; retrying in %lld s",
	    acct->name, folder, mh_err_str(err, buf, sizeof buf),
	    (long long)(err->cls == MH_ERR_AUTH ? AUTH_RETRY_MS :
	    backoff) / 1000);
	if (err->cls == MH_ERR_AUTH) {
		emit(wfd, 'A', folder);
		sleep_ms(AUTH_RETRY_MS);
		return backoff;
	}
	sleep_ms(backoff);
	return backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
}

/*
 * One folder, for ever: connect, IDLE, reconnect with backoff; log in
 * again, without a pause, before an OAuth2 token expires.
 */
static void __attribute__((noreturn))
folder_watch(const struct cfg_account *acct, const char *statedir,
    const char *folder, int wfd)
{
	struct mh_err	 err;
	mailimap	*imap = NULL;
	int64_t		 backoff = BACKOFF_MIN_MS, reauth = 0, up_since;
	bool		 first = true;
	enum idle_rc	 rc;

	for (;;) {
		mh_err_clear(&err);
		if (folder_connect(acct, statedir, folder, &imap, &reauth,
		    &err) == -1) {
			backoff = connect_failed(acct, folder, wfd, &err,
			    backoff);
			continue;
		}
		if (!mailimap_has_idle(imap)) {
			log_info("%s: %s: the server has no IDLE; polling "
			    "every interval instead", acct->name, folder);
			imap_session_kill(imap);
			emit(wfd, 'U', folder);
			_exit(IDLE_EXIT_UNSUPPORTED);
		}
		log_info("%s: %s: IDLE connected", acct->name, folder);
		emit(wfd, 'C', folder);
		if (!first)		/* mail may have come while we were away */
			emit(wfd, 'N', folder);
		first = false;
		/* the backoff is reset by a connection that stays up, not by
		   one that logs in: a server that drops every IDLE at once
		   would otherwise have us log in (and sync) every second */
		up_since = now_ms();
		while ((rc = idle_round(acct, imap, folder, wfd, reauth)) ==
		    IDLE_AGAIN && (reauth == 0 || now_ms() < reauth))
			;
		imap_session_kill(imap);
		imap = NULL;
		if (rc == IDLE_NOTSUP) {
			emit(wfd, 'U', folder);
			_exit(IDLE_EXIT_UNSUPPORTED);
		}
		if (rc == IDLE_AGAIN) {
			log_info("%s: %s: the access token expires; logging "
			    "in again", acct->name, folder);
			continue;
		}
		if (now_ms() - up_since >= STABLE_MS)
			backoff = BACKOFF_MIN_MS;
		log_info("%s: %s: IDLE connection lost; reconnecting in %lld s",
		    acct->name, folder, (long long)backoff / 1000);
		emit(wfd, 'L', folder);
		sleep_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
		    backoff * 2;
	}
}

static pid_t
spawn_folder(const struct cfg_account *acct, const char *statedir,
    const char *folder, int wfd)
{
	pid_t	parent = getpid(), pid;

	if ((pid = fork()) != 0)
		return pid;
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != parent)
		_exit(0);
	folder_watch(acct, statedir, folder, wfd);
}

/* Resolves the folders, retrying with backoff; a refused login waits. */
static char **
resolve_folders(const struct cfg_account *acct, const char *statedir,
    int wfd)
{
	struct mh_err	 err;
	char		**folders = NULL, what[300], buf[1200];
	struct login	 login;
	int64_t		 backoff = BACKOFF_MIN_MS;
	int		 r;

	snprintf(what, sizeof what, "account %s", acct->name);
	for (;;) {
		r = login_get(&acct->ep, statedir, what, &login, &err);
		while (r == 0 && (r = source_folders(acct, &login.cred,
		    NULL, &folders, &err)) == -1 && login_retry(&login, &err))
			;
		login_free(&login);
		if (r == 0)
			return folders;
		log_warn("%s: IDLE: cannot list folders: %s", acct->name,
		    mh_err_str(&err, buf, sizeof buf));
		if (err.cls == MH_ERR_AUTH) {
			emit(wfd, 'A', "*");
			sleep_ms(AUTH_RETRY_MS);
			continue;
		}
		sleep_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
		    backoff * 2;
	}
}

size_t
idle_pick_folders(char **folders, size_t max)
{
	size_t	n = 0, i;
	char	*inbox;

	while (folders[n] != NULL)
		n++;
	for (i = 0; i < n && strcasecmp(folders[i], "INBOX") != 0; i++)
		;
	if (i < n && i > 0) {		/* INBOX first, the others in order */
		inbox = folders[i];
		memmove(folders + 1, folders, i * sizeof *folders);
		folders[0] = inbox;
	}
	return n < max ? n : max;
}

void
idle_watch(const struct cfg_account *acct, const char *statedir, int wfd)
{
	char	**folders = resolve_folders(acct, statedir, wfd);
	pid_t	 *pids;
	int64_t	 *started, *delay;
	size_t	  n, all = 0, done = 0, i;
	char	  num[32];
	int	  st;
	pid_t	  pid;

	n = idle_pick_folders(folders, acct->idle_connections > 0 ?
	    acct->idle_connections : CFG_IDLE_CONNECTIONS);
	while (folders[all] != NULL)
		all++;
	if (n < all)
		log_info("%s: IDLE on %zu of %zu folders (idle_connections); "
		    "%s and the rest are polled every interval", acct->name,
		    n, all, folders[n]);
	snprintf(num, sizeof num, "%zu", n);
	emit(wfd, 'F', num);
	if (n == 0)
		_exit(IDLE_EXIT_UNSUPPORTED);
	pids = xcalloc(n, sizeof *pids);
	started = xcalloc(n, sizeof *started);
	delay = xcalloc(n, sizeof *delay);
	for (i = 0; i < n; i++) {
		pids[i] = spawn_folder(acct, statedir, folders[i], wfd);
		started[i] = now_ms();
		delay[i] = RESTART_MIN_MS;
	}
	while (done < n) {
		if ((pid = waitpid(-1, &st, 0)) == -1) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		for (i = 0; i < n && pids[i] != pid; i++)
			;
		if (i == n)
			continue;
		if (WIFEXITED(st) && WEXITSTATUS(st) == IDLE_EXIT_UNSUPPORTED) {
			pids[i] = 0;
			done++;
			continue;
		}
		log_warn("%s: %s: IDLE watcher ended (%s %d); restarting",
		    acct->name, folders[i], WIFSIGNALED(st) ? "signal" :
		    "status", WIFSIGNALED(st) ? WTERMSIG(st) :
		    WEXITSTATUS(st));
		emit(wfd, 'L', folders[i]);
		/* one that dies at every start is restarted ever more slowly
		   (bounded: the others wait meanwhile) */
		if (now_ms() - started[i] >= STABLE_MS)
			delay[i] = RESTART_MIN_MS;
		sleep_ms(delay[i]);
		delay[i] = delay[i] * 2 > RESTART_MAX_MS ? RESTART_MAX_MS :
		    delay[i] * 2;
		pids[i] = spawn_folder(acct, statedir, folders[i], wfd);
		started[i] = now_ms();
	}
	_exit(IDLE_EXIT_UNSUPPORTED);
}
