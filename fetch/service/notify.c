/*
 * notify.c -- notify_command; see notify.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/service/notify.h"
#include "log.h"
#include "util.h"

#define NOTIFY_DEADLINE_MS	30000

static void __attribute__((noreturn))
notify_exec(const char *cmd, const char *account, unsigned count,
    const char *error)
{
	char	num[32];
	int	fd;

	setpgid(0, 0);
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	snprintf(num, sizeof num, "%u", count);
	setenv("MAILHAUL_ACCOUNT", account, 1);
	setenv("MAILHAUL_COUNT", num, 1);
	if (error != NULL)
		setenv("MAILHAUL_ERROR", error, 1);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

void
notify_start(struct notify_pool *np, const char *cmd, const char *account,
    unsigned count, const char *error, void (*child_init)(void *arg),
    void *arg)
{
	static const int sigs[] = { SIGCHLD, SIGHUP, SIGUSR1, SIGTERM, SIGINT };
	struct notifier	*slot = NULL;
	sigset_t	 all, old;
	pid_t		 pid;

	if (cmd == NULL || *cmd == '\0')
		return;
	for (size_t i = 0; i < NOTIFY_MAX; i++)
		if (np->slot[i].pid == 0)
			slot = &np->slot[i];
	if (slot == NULL) {
		log_warn("%s: notify_command skipped: %d still running",
		    account, NOTIFY_MAX);
		return;
	}
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if ((pid = fork()) == 0) {
		for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
			signal(sigs[i], SIG_DFL);
		if (child_init != NULL)
			child_init(arg);
		sigprocmask(SIG_SETMASK, &old, NULL);
		notify_exec(cmd, account, count, error);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		log_warn("%s: notify_command: fork: %s", account,
		    strerror(errno));
		return;
	}
	slot->pid = pid;
	slot->deadline_ms = now_ms() + NOTIFY_DEADLINE_MS;
}

bool
notify_reaped(struct notify_pool *np, pid_t pid, int st)
{
	for (size_t i = 0; i < NOTIFY_MAX; i++) {
		if (np->slot[i].pid != pid)
			continue;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			log_warn("service: notify_command ended with %s %d",
			    WIFEXITED(st) ? "status" : "signal",
			    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		np->slot[i].pid = 0;
		return true;
	}
	return false;
}

void
notify_kill_overdue(struct notify_pool *np, int64_t now)
{
	for (size_t i = 0; i < NOTIFY_MAX; i++)
		if (np->slot[i].pid > 0 && now >= np->slot[i].deadline_ms) {
			log_warn("service: notify_command still running after "
			    "%d s; killing it", NOTIFY_DEADLINE_MS / 1000);
			kill(-np->slot[i].pid, SIGKILL);
			kill(np->slot[i].pid, SIGKILL);
			np->slot[i].deadline_ms = INT64_MAX;
		}
}
