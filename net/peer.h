/*
 * peer.h -- what a TLS connection's peer presented, for `mailhaul check`.
 * Its own header so that source.h and target.h can carry it without
 * pulling in libetpan or OpenSSL.
 */
#ifndef MAILHAUL_NET_PEER_H
#define MAILHAUL_NET_PEER_H

#include <time.h>

struct net_peer_info {
	char	subject[256];
	char	issuer[256];
	time_t	not_before;
	time_t	not_after;
	char	sha256[96];	/* AA:BB:... of the leaf certificate */
	char	version[32];	/* "TLSv1.3" */
	char	cipher[64];
};

#endif
