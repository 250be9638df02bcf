/*
 * fuzz-config.c -- config_load on arbitrary file contents: inih's line
 * handling, every key's value parser, the cross-checks and the secret
 * masking of config_print.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "log.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static char path[64];
	static FILE *devnull;
	struct config *cfg;
	int fd;

	if (devnull == NULL) {
		log_init(LOG_LVL_ERROR, false);
		snprintf(path, sizeof path, "/tmp/mh-fuzz-config-%ld.ini",
		    (long)getpid());
		if ((devnull = fopen("/dev/null", "w")) == NULL)
			abort();
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) < 0)
		abort();
	if (len && write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
	cfg = config_load(path, devnull);
	if (cfg != NULL) {
		config_print(cfg, devnull);
		config_free(cfg);
	}
	return 0;
}
