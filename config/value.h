/*
 * value.h -- parsers for the typed values of the config file.
 * Each returns 0 and stores the value, or -1 and leaves *out alone.
 * Pure functions: no allocation unless stated, no I/O.  Fuzzed.
 */
#ifndef MAILHAUL_CONFIG_VALUE_H
#define MAILHAUL_CONFIG_VALUE_H

#include <stdbool.h>
#include <stdint.h>

/* "90s", "5m", "2h", "30d", "1w", a bare number of seconds; also
   combinations "1h30m".  > 0 and < 100 years. */
int	value_duration(const char *s, int64_t *out);

/* "1000", "10k", "5M", "2G" (binary multiples, case-insensitive, optional
   trailing "B"); overflow is an error. */
int	value_size(const char *s, uint64_t *out);

/* yes/no, true/false, on/off, 1/0 (case-insensitive). */
int	value_bool(const char *s, bool *out);

/* 1..65535. */
int	value_port(const char *s, unsigned *out);

/* A whole number in [min, max]. */
int	value_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* sha256 fingerprint: 64 hex digits, optionally in colon-separated pairs;
   normalised into out as upper-case "AA:BB:..." (96 bytes). */
int	value_fingerprint(const char *s, char out[96]);

/* An e-mail address fit for MAIL FROM / RCPT TO: 1..254 bytes, no
   control characters, no space, '<' or '>'; one '@' not at either end. */
int	value_address(const char *s);

/* Edit distance, for "did you mean" on unknown keys. */
int	value_distance(const char *a, const char *b);

#endif
