/*
 * pipeline.c -- the fetch thread and the bounded queue between it and the
 * delivery side (see pipeline.h).  One mutex and one condition variable
 * guard everything shared; the fetch function runs outside the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/engine/pipeline.h"
#include "fetch/state/spool.h"
#include "forward/message.h"
#include "log.h"

struct pipeline {
	pthread_t		 thread;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;		/* broadcast on every change */
	const uint64_t		*size;		/* borrowed */
	size_t			 n;
	char			*spool_dir;
	pipeline_fetch_fn	 fetch;
	void			*ctx;

	struct pipeline_item	 ring[PIPELINE_MAX_SLOTS];	/* ready */
	size_t			 head, len;
	int			 fds[2 * PIPELINE_MAX_SLOTS];	/* all made */
	size_t			 nfds;
	/* reusable: files, and in memory; any of fds, so as many */
	int			 spare[2 * PIPELINE_MAX_SLOTS];
	size_t			 nspare;
	int			 spare_mem[2 * PIPELINE_MAX_SLOTS];
	size_t			 nspare_mem;
	size_t			 outstanding;	/* fetching, ready, handed
						   out: not released */
	uint64_t		 inflight;	/* their announced bytes */
	size_t			 handed;	/* handed out (any rc);
						   written on the caller's
						   thread only */
	bool			 stop;		/* asked by the caller */
	bool			 ended;		/* the fetch thread is done */
};

/* Whether message k must wait for room (pl->mu held). */
static bool
must_wait(const struct pipeline *pl, size_t k)
{
	if (pl->outstanding == 0)
		return false;	/* a message over the budget goes alone */
	return pl->outstanding >= PIPELINE_MAX_SLOTS ||
	    pl->inflight + pl->size[k] > PIPELINE_MAX_BYTES;
}

/* Closes fd, one of pl->fds (pl->mu held). */
static void
forget_fd(struct pipeline *pl, int fd)
{
	for (size_t i = 0; i < pl->nfds; i++)
		if (pl->fds[i] == fd) {
			pl->fds[i] = pl->fds[--pl->nfds];
			break;
		}
	close(fd);
}

/*
 * fd back among the spares of its kind (pl->mu held), emptied already;
 * else (why: spool_reset's error) closed: a spare is always empty.
 */
static void
give_back(struct pipeline *pl, int fd, const struct mh_err *why)
{
	if (why != NULL) {
		log_debug("%s; a new spool file will be made", why->msg);
		forget_fd(pl, fd);
	} else if (mh_is_memspool(fd))
		pl->spare_mem[pl->nspare_mem++] = fd;
	else
		pl->spare[pl->nspare++] = fd;
}

/*
 * Closes a spare of the other kind than mem when the pipeline holds as
 * many spool files as it may (pl->mu held): at most PIPELINE_MAX_SLOTS
 * are out, so the rest are spares, and none of the kind wanted.
 */
static void
make_room(struct pipeline *pl, bool mem)
{
	int	fd;

	if (pl->nfds < 2 * PIPELINE_MAX_SLOTS)
		return;
	if (mem && pl->nspare > 0)
		fd = pl->spare[--pl->nspare];
	else if (!mem && pl->nspare_mem > 0)
		fd = pl->spare_mem[--pl->nspare_mem];
	else
		abort();	/* more than PIPELINE_MAX_SLOTS out */
	forget_fd(pl, fd);
}

/*
 * An empty spool for message k (pl->mu held): in memory when it is
 * small (util.h), else a file; a spare of that kind when there is one
 * (emptied when it was given back).
 */
static int
take_fd(struct pipeline *pl, size_t k, struct mh_err *err)
{
	bool	mem = pl->size[k] <= MH_SPOOL_MEM_MAX;
	int	fd;

	if (mem && pl->nspare_mem > 0)
		fd = pl->spare_mem[--pl->nspare_mem];
	else if (!mem && pl->nspare > 0)
		fd = pl->spare[--pl->nspare];
	else {
		make_room(pl, mem);
		if ((!mem || (fd = mh_memspool_open()) == -1) &&
		    (fd = spool_open(pl->spool_dir, err)) == -1)
			return -1;
		pl->fds[pl->nfds++] = fd;
		return fd;
	}
	return fd;
}

/* Fetches message k; false when the fetch thread must stop after it. */
static bool
fetch_one(struct pipeline *pl, size_t k)
{
	struct pipeline_item	it;
	struct mh_err		rerr;
	bool			go_on, empty;

	memset(&it, 0, sizeof it);
	it.k = k;
	mh_err_clear(&it.err);
	pthread_mutex_lock(&pl->mu);
	it.fd = take_fd(pl, k, &it.err);
	pthread_mutex_unlock(&pl->mu);
	if (it.fd == -1)
		it.rc = -1;
	else if ((it.rc = pl->fetch(pl->ctx, k, it.fd, &it.err)) == 1) {
		/* the plan ends here: k is not handed out */
		empty = spool_reset(it.fd, &rerr) == 0;
		pthread_mutex_lock(&pl->mu);
		give_back(pl, it.fd, empty ? NULL : &rerr);
		pl->outstanding--;
		pl->inflight -= pl->size[k];
		pthread_mutex_unlock(&pl->mu);
		return false;
	} else if (it.rc == 0 &&
	    message_scan(it.fd, &it.info, &it.err) == -1)
		it.rc = -1;	/* the spool cannot be read: stop */
	else if (it.rc == 0 && lseek(it.fd, 0, SEEK_SET) == -1) {
		mh_err_set(&it.err, MH_ERR_LOCAL, "rewinding the spool: %s",
		    strerror(errno));
		it.rc = -1;
	}
	go_on = it.rc == 0 || (it.err.cls == MH_ERR_PERM &&
	    it.err.scope == MH_SCOPE_MESSAGE);
	empty = it.rc == -1 && it.fd != -1 && spool_reset(it.fd, &rerr) == 0;
	pthread_mutex_lock(&pl->mu);
	if (it.rc == -1 && it.fd != -1) {
		give_back(pl, it.fd, empty ? NULL : &rerr);
		it.fd = -1;
	}
	pl->ring[(pl->head + pl->len) % PIPELINE_MAX_SLOTS] = it;
	pl->len++;
	pthread_cond_broadcast(&pl->cv);
	pthread_mutex_unlock(&pl->mu);
	return go_on;
}

static void *
fetch_thread(void *arg)
{
	struct pipeline	*pl = arg;
	size_t		 k;
	bool		 go_on = true;

	for (k = 0; go_on && k < pl->n; k++) {
		pthread_mutex_lock(&pl->mu);
		while (!pl->stop && must_wait(pl, k))
			pthread_cond_wait(&pl->cv, &pl->mu);
		go_on = !pl->stop;
		if (go_on) {
			pl->outstanding++;
			pl->inflight += pl->size[k];
		}
		pthread_mutex_unlock(&pl->mu);
		if (go_on)
			go_on = fetch_one(pl, k);
	}
	pthread_mutex_lock(&pl->mu);
	pl->ended = true;
	pthread_cond_broadcast(&pl->cv);
	pthread_mutex_unlock(&pl->mu);
	return NULL;
}

static void *
idle_thread(void *arg)
{
	return arg;
}

void
pipeline_warm(void)
{
	pthread_t	t;

	/* twice: the second takes the first's cached stack, as a worker's
	   first thread does, and that path has bindings of its own */
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t, NULL, idle_thread, NULL) == 0)
			pthread_join(t, NULL);
}

struct pipeline *
pipeline_start(const uint64_t *size, size_t n, const char *spool_dir,
    pipeline_fetch_fn fetch, void *ctx, struct mh_err *err)
{
	struct pipeline	*pl = xcalloc(1, sizeof *pl);
	int		 r;

	pl->size = size;
	pl->n = n;
	pl->spool_dir = xstrdup(spool_dir);
	pl->fetch = fetch;
	pl->ctx = ctx;
	pthread_mutex_init(&pl->mu, NULL);
	pthread_cond_init(&pl->cv, NULL);
	if ((r = mh_thread_start(&pl->thread, fetch_thread, pl)) != 0) {
		mh_err_set(err, MH_ERR_LOCAL, "cannot start the fetch thread: "
		    "%s", strerror(r));
		pthread_cond_destroy(&pl->cv);
		pthread_mutex_destroy(&pl->mu);
		free(pl->spool_dir);
		free(pl);
		return NULL;
	}
	return pl;
}

/* The next ready message into *item: 1, or 0 when none (pl->mu held). */
static int
take_ready(struct pipeline *pl, struct pipeline_item *item)
{
	if (pl->len == 0)
		return 0;
	*item = pl->ring[pl->head];
	pl->head = (pl->head + 1) % PIPELINE_MAX_SLOTS;
	pl->len--;
	pl->handed++;
	return 1;
}

int
pipeline_next(struct pipeline *pl, struct pipeline_item *item)
{
	int	rc = 0;

	pthread_mutex_lock(&pl->mu);
	while (pl->len == 0 && !pl->ended)
		pthread_cond_wait(&pl->cv, &pl->mu);
	rc = take_ready(pl, item);
	pthread_mutex_unlock(&pl->mu);
	return rc;
}

int
pipeline_try_next(struct pipeline *pl, struct pipeline_item *item)
{
	int	rc = 0;

	pthread_mutex_lock(&pl->mu);
	rc = take_ready(pl, item);
	pthread_mutex_unlock(&pl->mu);
	return rc;
}

size_t
pipeline_handed(const struct pipeline *pl)
{
	return pl != NULL ? pl->handed : 0;
}

void
pipeline_release(struct pipeline *pl, struct pipeline_item *item)
{
	struct mh_err	err;
	bool		empty;

	/* emptied here, not when the fetch thread takes it again: freeing
	   a message's pages is off the fetch side's path */
	empty = item->fd != -1 && spool_reset(item->fd, &err) == 0;
	pthread_mutex_lock(&pl->mu);
	if (item->fd != -1)
		give_back(pl, item->fd, empty ? NULL : &err);
	item->fd = -1;
	pl->outstanding--;
	pl->inflight -= pl->size[item->k];
	pthread_cond_broadcast(&pl->cv);
	pthread_mutex_unlock(&pl->mu);
}

size_t
pipeline_stop(struct pipeline *pl)
{
	size_t	i, unused = 0;

	if (pl == NULL)
		return 0;
	pthread_mutex_lock(&pl->mu);
	pl->stop = true;
	pthread_cond_broadcast(&pl->cv);
	pthread_mutex_unlock(&pl->mu);
	pthread_join(pl->thread, NULL);
	for (i = 0; i < pl->len; i++)
		if (pl->ring[(pl->head + i) % PIPELINE_MAX_SLOTS].rc == 0)
			unused++;
	for (i = 0; i < pl->nfds; i++)
		close(pl->fds[i]);
	pthread_cond_destroy(&pl->cv);
	pthread_mutex_destroy(&pl->mu);
	free(pl->spool_dir);
	free(pl);
	return unused;
}
