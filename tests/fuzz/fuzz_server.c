/*
 * fuzz_server.c -- see fuzz_server.h.
 */
#define _GNU_SOURCE	/* accept4, pipe2 */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_server.h"

static int		 lfd = -1;
static int		 wake[2] = { -1, -1 };	/* stop's byte ends the thread */
static unsigned		 lport;
static pthread_t	 thr;
static atomic_bool	 stopping;
static uint8_t		*buf;
static size_t		 buflen;

unsigned
fuzz_server_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;

	if (lfd >= 0)
		return lport;
	signal(SIGPIPE, SIG_IGN);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		err(1, "socket");
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(lfd, 8) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
		err(1, "bind/listen");
	lport = ntohs(sa.sin_port);
	if (pipe2(wake, O_CLOEXEC) != 0)
		err(1, "pipe");
	return lport;
}

static void
serve(int fd)
{
	size_t off = 0;
	char sink[4096];
	struct pollfd p[2];

	while (off < buflen) {
		ssize_t n = send(fd, buf + off, buflen - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	p[0].fd = fd;
	p[0].events = POLLIN;
	p[1].fd = wake[0];
	p[1].events = POLLIN;
	while (!atomic_load(&stopping)) {
		if (poll(p, 2, -1) <= 0)
			continue;
		if (p[1].revents != 0)
			break;
		if (recv(fd, sink, sizeof sink, 0) <= 0)
			break;
	}
}

static void *
run(void *arg)
{
	struct pollfd p[2];
	int served = 0, fd;

	(void)arg;
	p[0].fd = lfd;
	p[0].events = POLLIN;
	p[1].fd = wake[0];
	p[1].events = POLLIN;
	/*
	 * Blocks until a connection or stop's wake-up byte: a poll timeout
	 * here would cost every input its length in the join.
	 */
	while (!atomic_load(&stopping)) {
		if (poll(p, 2, -1) <= 0)
			continue;
		if (p[1].revents != 0)
			break;
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		if (!served++)
			serve(fd);
		close(fd);
	}
	return NULL;
}

void
fuzz_server_start(const uint8_t *data, size_t len)
{
	fuzz_server_port();
	free(buf);
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		abort();
	if (len)
		memcpy(buf, data, len);
	buflen = len;
	atomic_store(&stopping, false);
	if (pthread_create(&thr, NULL, run, NULL) != 0)
		abort();
}

void
fuzz_server_stop(void)
{
	char c = 0;

	atomic_store(&stopping, true);
	if (write(wake[1], &c, 1) != 1)
		abort();
	pthread_join(thr, NULL);
	/* the byte stays until the thread is gone, so no wake-up is lost */
	if (read(wake[0], &c, 1) != 1)
		abort();
}

const char *
fuzz_write_config(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof path, "/tmp/mh-fuzz-%ld.ini", (long)getpid());
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) < 0)
		err(1, "%s", path);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		err(1, "write %s", path);
	close(fd);
	return path;
}
