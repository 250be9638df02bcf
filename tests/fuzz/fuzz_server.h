/*
 * fuzz_server.h -- a one-shot scripted peer for the protocol fuzz targets:
 * a listening socket on 127.0.0.1 (made once), and per input a thread
 * that accepts one connection, writes the whole input as the server's
 * bytes, shuts its write side and reads until the client closes.  Later
 * connections of the same run are closed at once.
 */
#ifndef MAILHAUL_TESTS_FUZZ_SERVER_H
#define MAILHAUL_TESTS_FUZZ_SERVER_H

#include <stddef.h>
#include <stdint.h>

/* Binds the listener once; returns its port (aborts on failure). */
unsigned	fuzz_server_port(void);

/* Starts serving data (copied) to the next connection. */
void	fuzz_server_start(const uint8_t *data, size_t len);

/* Stops and joins the thread; call after the client closed. */
void	fuzz_server_stop(void);

/* Writes text to a new 0600 temp file; returns its path (static). */
const char *fuzz_write_config(const char *text);

#endif
