/*
 * status.h -- the service's status file, <statedir>/service.json.
 *
 * The service writes it (tmp + rename, mode 0600) after every change:
 * its pid, start time, and per account the next pass, backoff, failures,
 * IDLE state and the last result; it removes it when it stops.
 * `mailhaul status` reads it back, and only while a service holds the
 * state's service.lock.  One line per object, so the reader needs no
 * JSON library.
 */
#ifndef MAILHAUL_FETCH_SERVICE_STATUS_H
#define MAILHAUL_FETCH_SERVICE_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config/config.h"

/* One account as the running service last described it. */
struct service_status_account {
	char	name[128];
	bool	running;		/* a pass is in progress */
	time_t	next;			/* next scheduled pass; 0 none */
	unsigned failures;		/* consecutive failed passes */
	time_t	backoff_until;		/* 0 when not backing off */
	bool	auth_failed;
	bool	waiting_for_auth;	/* its OAuth2 grant is gone: no
					   pass until `mailhaul auth` */
	char	last_error[256];	/* of the last failed pass, or "" */
	char	idle[32];		/* off | connecting | connected |
					   partly connected | down |
					   unsupported */
	int	idle_folders, idle_connected;
	char	last_result[32];	/* ok | busy | failed | killed |
					   crashed | "" */
	time_t	last_end;
	unsigned last_delivered;
};

struct service_status {
	long	 pid;
	time_t	 started;
	bool	 stopping;
	unsigned running;		/* passes in progress */
	struct service_status_account *accounts;	/* owned when read */
	size_t	 naccounts;
	char	*json;			/* the whole service.json, owned;
					   NULL when writing */
};

/*
 * Writes st as dir/service.json (through dir/service.json.tmp).  A
 * failure is logged as a warning and returns -1; the service goes on.
 */
int	service_status_write(const char *dir, const struct service_status *st);

/* Removes dir/service.json (the service stopped). */
void	service_status_remove(const char *dir);

/*
 * When a service holds cfg's state file: fills st from service.json and
 * returns 1 (free with service_status_free).  0 when no service runs,
 * -1 when service.json cannot be read (st empty).
 */
int	service_status_read(const struct config *cfg,
	    struct service_status *st);
void	service_status_free(struct service_status *st);

#endif
