/*
 * notify.h -- [general] notify_command: run after a service pass that
 * delivered mail.
 *
 * The command runs through /bin/sh -c in its own process group, stdin
 * /dev/null, with MAILHAUL_ACCOUNT and MAILHAUL_COUNT (the messages
 * delivered) in its environment -- or, after a refused login (a revoked
 * OAuth2 grant among them), MAILHAUL_COUNT=0 and MAILHAUL_ERROR (the
 * error's text, never a secret); the service does not wait for it.  At
 * most NOTIFY_MAX run at once (more are skipped with a warning); one
 * still running after 30 s is killed with its process group.
 */
#ifndef MAILHAUL_FETCH_SERVICE_NOTIFY_H
#define MAILHAUL_FETCH_SERVICE_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NOTIFY_MAX	16

struct notifier {
	pid_t	pid;		/* 0: a free slot */
	int64_t	deadline_ms;
};

/* The running notify_commands; zero it to start. */
struct notify_pool {
	struct notifier	slot[NOTIFY_MAX];
};

/*
 * Starts cmd (NULL or "" does nothing) for account's count new
 * messages, or for an error (NULL: none).  child_init(arg), when not NULL, runs first in the child to
 * close what the parent holds.  Failures are logged.
 */
void	notify_start(struct notify_pool *np, const char *cmd,
	    const char *account, unsigned count, const char *error,
	    void (*child_init)(void *arg), void *arg);

/* After waitpid() returned pid with status: true when pid was one of
   np's (its slot freed, a failure logged). */
bool	notify_reaped(struct notify_pool *np, pid_t pid, int status);

/* Kills the notify_commands past their deadline. */
void	notify_kill_overdue(struct notify_pool *np, int64_t now);

#endif
