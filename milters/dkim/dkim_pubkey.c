#include "milters/dkim/dkim_pubkey.h"
#include "lib/util.h"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DER 4096		/* larger records (RSA > 16k bits) are not cached */

struct ent {
	uint64_t hash;
	unsigned char *der;
	size_t len;
	EVP_PKEY *key;
};

typedef EVP_PKEY *(*d2i_fn)(BIO *, EVP_PKEY **);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct ent ents[DKIM_PUBKEY_CACHE_MAX];
static size_t nents, hits, misses;
static d2i_fn real_d2i;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void find_real(void)
{
	real_d2i = (d2i_fn)dlsym(RTLD_NEXT, "d2i_PUBKEY_bio");
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

void dkim_pubkey_stats(size_t *h, size_t *m)
{
	pthread_mutex_lock(&mu);
	*h = hits;
	*m = misses;
	pthread_mutex_unlock(&mu);
}

/* Interposes OpenSSL's d2i_PUBKEY_bio (see dkim_pubkey.h). */
EVP_PKEY *d2i_PUBKEY_bio(BIO *bp, EVP_PKEY **a)
{
	pthread_once(&real_once, find_real);
	if (real_d2i == NULL)
		return NULL;	/* cannot happen with libcrypto loaded; decoding fails cleanly */
	char *data = NULL;
	long n = (bp && a == NULL && BIO_method_type(bp) == BIO_TYPE_MEM)
			 ? BIO_get_mem_data(bp, &data)
			 : -1;
	if (n <= 0 || n > MAX_DER || data == NULL)
		return real_d2i(bp, a);
	uint64_t h = fnv1a((const unsigned char *)data, (size_t)n);
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < nents; i++) {
		if (ents[i].hash == h && ents[i].len == (size_t)n && memcmp(ents[i].der, data, (size_t)n) == 0 &&
		    EVP_PKEY_up_ref(ents[i].key) == 1) {
			hits++;
			EVP_PKEY *k = ents[i].key;
			pthread_mutex_unlock(&mu);
			return k;
		}
	}
	misses++;
	pthread_mutex_unlock(&mu);
	unsigned char *copy = xmalloc((size_t)n);
	memcpy(copy, data, (size_t)n);
	EVP_PKEY *k = real_d2i(bp, NULL);
	if (k == NULL || EVP_PKEY_up_ref(k) != 1) {
		free(copy);
		return k;
	}
	pthread_mutex_lock(&mu);
	if (nents == DKIM_PUBKEY_CACHE_MAX) {
		for (size_t i = 0; i < nents; i++) {
			free(ents[i].der);
			EVP_PKEY_free(ents[i].key);
		}
		nents = 0;
	}
	ents[nents].hash = h;
	ents[nents].der = copy;
	ents[nents].len = (size_t)n;
	ents[nents].key = k;	/* the cache's reference */
	nents++;
	pthread_mutex_unlock(&mu);
	return k;
}
