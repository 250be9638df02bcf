/*
 * fuzz-value.c -- the value parsers of config/value.h.  The first byte
 * picks the parser, the rest (NUL-terminated) is the value.  Checks the
 * contracts that can be checked: on success a fingerprint is
 * NUL-terminated in its 96 bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/value.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char *s, fpr[96];
	int64_t d;
	uint64_t u;
	unsigned port;
	bool b;

	if (len < 1)
		return 0;
	if ((s = malloc(len)) == NULL)
		abort();
	memcpy(s, data + 1, len - 1);
	s[len - 1] = '\0';
	switch (data[0] % 8) {
	case 0:
		if (value_duration(s, &d) == 0 && d < 0)
			abort();
		break;
	case 1:
		value_size(s, &u);
		break;
	case 2:
		value_bool(s, &b);
		break;
	case 3:
		if (value_port(s, &port) == 0 && (port == 0 || port > 65535))
			abort();
		break;
	case 4:
		memset(fpr, 'x', sizeof fpr);
		if (value_fingerprint(s, fpr) == 0 &&
		    memchr(fpr, '\0', sizeof fpr) == NULL)
			abort();
		break;
	case 5:
		value_address(s);
		break;
	case 6:
		value_uint(s, 1, 64, &u);
		break;
	default: {
		char *mid = strchr(s, ' ');
		if (mid != NULL) {
			*mid = '\0';
			value_distance(s, mid + 1);
		}
		break;
	}
	}
	free(s);
	return 0;
}
