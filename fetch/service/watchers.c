/*
 * watchers.c -- the service's IDLE watchers; see watchers.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/idle.h"
#include "fetch/service/watchers.h"
#include "log.h"
#include "util.h"

#define WATCHER_RETRY_MS	30000

bool
watcher_wanted(const struct cfg_account *acct)
{
	return acct != NULL && acct->idle && acct->protocol == CFG_PROTO_IMAP;
}

static void
forget(struct watcher *w)
{
	w->len = 0;
	w->folders = w->up = w->unsupported = 0;
	w->auth_failed = false;
}

void
watcher_start(struct watcher *w, const struct cfg_account *acct,
    const char *statedir, void (*child_init)(void *arg), void *arg)
{
	sigset_t all, old;
	int	 p[2];
	pid_t	 pid;

	if (cloexec_pipe(p, false) == -1) {
		log_warn("%s: IDLE: pipe: %s", acct->name, strerror(errno));
		w->retry_ms = now_ms() + WATCHER_RETRY_MS;
		return;
	}
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if ((pid = fork()) == 0) {
		signal(SIGCHLD, SIG_DFL);
		signal(SIGHUP, SIG_IGN);
		signal(SIGUSR1, SIG_IGN);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		if (child_init != NULL)
			child_init(arg);
		close(p[0]);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		sigprocmask(SIG_SETMASK, &old, NULL);
		idle_watch(acct, statedir, p[1]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	if (pid == -1) {
		log_warn("%s: IDLE: fork: %s", acct->name, strerror(errno));
		close(p[0]);
		w->retry_ms = now_ms() + WATCHER_RETRY_MS;
		return;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	w->pid = pid;
	w->fd = p[0];
	forget(w);
	w->retry_ms = 0;
}

void
watcher_stop(struct watcher *w)
{
	if (w->pid > 0)
		kill(w->pid, SIGTERM);
	w->pid = 0;
	if (w->fd != -1)
		close(w->fd);
	w->fd = -1;
	forget(w);
}

/* One event line; true when it says new mail. */
static bool
event(struct watcher *w, const char *name, const char *l)
{
	log_debug("%s: IDLE event: %s", name, l);
	switch (l[0]) {
	case 'F':
		w->folders = atoi(l + 1);
		break;
	case 'C':
		w->up++;
		w->auth_failed = false;
		break;
	case 'L':
		if (w->up > 0)
			w->up--;
		break;
	case 'U':
		w->unsupported++;
		break;
	case 'A':
		w->auth_failed = true;
		break;
	case 'N':
		return true;
	default:
		break;
	}
	return false;
}

ssize_t
watcher_read(struct watcher *w, const char *name, bool *new_mail)
{
	ssize_t	 n;
	char	*nl;

	n = read(w->fd, w->buf + w->len, sizeof w->buf - 1 - w->len);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {			/* every watcher process is gone */
		close(w->fd);
		w->fd = -1;
		w->up = 0;
		return 0;
	}
	w->len += (size_t)n;
	w->buf[w->len] = '\0';
	while ((nl = strchr(w->buf, '\n')) != NULL) {
		*nl = '\0';
		if (event(w, name, w->buf))
			*new_mail = true;
		w->len -= (size_t)(nl + 1 - w->buf);
		memmove(w->buf, nl + 1, w->len + 1);
	}
	if (w->len == sizeof w->buf - 1)	/* no line end: drop it */
		w->len = 0;
	return n;
}

void
watcher_reaped(struct watcher *w, const char *name, int st, bool *new_mail)
{
	w->pid = 0;
	while (w->fd != -1 && watcher_read(w, name, new_mail) > 0)
		;			/* the last events */
	if (w->fd != -1)
		close(w->fd);
	w->fd = -1;
	w->up = 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == IDLE_EXIT_UNSUPPORTED) {
		w->retry_ms = INT64_MAX;
		return;			/* polling only */
	}
	w->folders = w->unsupported = 0;
	log_warn("%s: IDLE watcher ended (%s %d); restarting in %d s", name,
	    WIFSIGNALED(st) ? "signal" : "status",
	    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
	    WATCHER_RETRY_MS / 1000);
	w->retry_ms = now_ms() + WATCHER_RETRY_MS;
}

const char *
watcher_state(const struct watcher *w, const struct cfg_account *acct)
{
	if (!watcher_wanted(acct))
		return "off";
	if (w->folders > 0 && w->unsupported >= w->folders)
		return "unsupported";
	if (w->pid == 0)
		return "down";
	if (w->folders == 0 || w->up == 0)
		return w->auth_failed ? "down" : "connecting";
	if (w->up + w->unsupported < w->folders)
		return "partly connected";
	return "connected";
}
