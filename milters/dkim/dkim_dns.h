/*
 * dkim_dns: libopendkim's DNS hooks (dkim_dns_set_query_*) over proto/dns,
 * so key look-ups honour dns_servers, dns_timeout and dns_tries.
 * Owns: the query cache, a pool of blocking c-ares resolvers (libmilter runs one thread per
 * connection: a thread takes a resolver from the pool for one query and
 * gives it back), and turning a decoded answer back into the DNS reply
 * packet libopendkim parses (header, question, TXT answers split into
 * character-strings of at most 255 bytes).
 * Leaves: what the record means to libopendkim.
 * SERVFAIL, REFUSED, malformed answers -> DKIM_DNS_ERROR and a timeout ->
 * DKIM_DNS_EXPIRED: libopendkim reports both as DKIM_SIGERROR_KEYFAIL
 * (temperror). NXDOMAIN and NODATA -> "no key" (permerror).
 */
#ifndef SLUICE_DKIM_DNS_H
#define SLUICE_DKIM_DNS_H

#include "proto/dns.h"

#include <stddef.h>

struct dkim_dns;

/*
 * dkim_dns_new - pool over real DNS; NULL with *err_out on a bad server list.
 * cache_size: answers kept in the query cache (0 = no cache). Like
 * OpenDKIM's QueryCache, key records (OK), NODATA and NXDOMAIN are kept for
 * their TTL (negative TTL per RFC 2308; capped at one day; TTL 0 is not
 * kept); errors and timeouts never are. When full, expired entries go, and
 * if none has expired the cache starts again empty.
 */
struct dkim_dns *dkim_dns_new(const struct dns_opts *o, size_t cache_size, char **err_out);

/*
 * A look-up function for tests (no network): returns a dns_status and, for
 * DNS_OK, n TXT records (each one RR's concatenated strings, NUL-terminated,
 * allocated with malloc; the caller frees them and the array).
 */
typedef enum dns_status (*dkim_dns_fake_fn)(void *arg, const char *name, char ***txt_out,
					    size_t *n_out);
struct dkim_dns *dkim_dns_new_fake(dkim_dns_fake_fn fn, void *arg);

/* dkim_dns_attach - install the hooks on a libopendkim library handle (DKIM_LIB *). */
void dkim_dns_attach(struct dkim_dns *d, void *dkim_lib);

/* dkim_dns_free - only when no thread uses it any more (after its DKIM_LIB is closed). */
void dkim_dns_free(struct dkim_dns **d);

/*
 * dkim_dns_build_reply - the reply packet for qname / TXT with the given
 * rcode and records into buf; returns its length, or 0 if buf is too small
 * for even the question. Records that do not fit are left out and TC set.
 * Exposed for tests.
 */
size_t dkim_dns_build_reply(const char *qname, int rcode, char *const *txt, const size_t *txt_len,
			    size_t n, unsigned char *buf, size_t buflen);

#endif
