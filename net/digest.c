/* digest.c -- see net.h: sha256 and base64 through OpenSSL's EVP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "net/net.h"

struct net_sha256 {
	EVP_MD_CTX	*ctx;
};

struct net_sha256 *
net_sha256_new(void)
{
	struct net_sha256	*h = xmalloc(sizeof *h);

	if ((h->ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		fprintf(stderr, "mailhaul: sha256 init failed\n");
		abort();
	}
	return h;
}

void
net_sha256_warm(void)
{
	EVP_MD_free(EVP_MD_fetch(NULL, "SHA256", NULL));
}

void
net_sha256_update(struct net_sha256 *h, const void *data, size_t len)
{
	if (len > 0)
		EVP_DigestUpdate(h->ctx, data, len);
}

void
net_sha256_final(struct net_sha256 *h, char out[65])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 md[EVP_MAX_MD_SIZE];
	unsigned		 n = 0, i;

	if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != 32) {
		fprintf(stderr, "mailhaul: sha256 final failed\n");
		abort();
	}
	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

char *
net_base64(const void *data, size_t len)
{
	char	*out = xmalloc(4 * ((len + 2) / 3) + 1);

	if (len > 0x3fffffff) {
		fprintf(stderr, "mailhaul: base64 input too large\n");
		abort();
	}
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static int
b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

unsigned char *
net_unbase64(const char *b64, size_t *len)
{
	unsigned char	*out;
	size_t		 n = strlen(b64), pad = 0, i;
	int		 r;

	if (n % 4 != 0 || n > 0x3fffffff)
		return NULL;
	while (pad < 2 && pad < n && b64[n - 1 - pad] == '=')
		pad++;
	for (i = 0; i < n - pad; i++)
		if (!b64_char((unsigned char)b64[i]))
			return NULL;
	out = xmalloc(n / 4 * 3 + 1);
	if (n == 0) {
		*len = 0;
		return out;
	}
	r = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
	if (r < 0 || (size_t)r < pad) {
		free(out);
		return NULL;
	}
	*len = (size_t)r - pad;
	out[*len] = '\0';
	return out;
}
