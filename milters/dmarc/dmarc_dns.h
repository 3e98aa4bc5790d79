/*
 * dmarc_dns: DNS for sluice-dmarc's libmilter threads, and the loops that
 * drive the proto/spf and proto/dmarc machines with it.
 * Owns: a pool of blocking proto/dns resolvers (a thread takes one for a
 * look-up and gives it back), a fake resolver for tests (no network), the
 * per-message deadline (every question of one message shares it), and
 * building answers by hand (for fakes).
 * Leaves: what the answers mean (proto/spf, proto/dmarc), caching.
 * The answer cache: records, NODATA and NXDOMAIN are kept for their TTL
 * (negative TTL per RFC 2308; at most a day; TTL 0 not kept), errors and
 * time-outs never; when full, expired entries go, and if none has expired
 * the cache starts again empty (sluice-dkim's key cache does the same).
 * sluice-dkim's own cache serves the DKIM key look-ups.
 */
#ifndef SLUICE_DMARC_DNS_H
#define SLUICE_DMARC_DNS_H

#include "proto/dns.h"
#include "proto/dmarc.h"
#include "proto/spf.h"

struct dmarc_dns;

/*
 * dmarc_dns_new - pool over real DNS with a cache of cache_size answers
 * (0 = none); NULL with *err_out (caller frees) on a bad server list.
 */
struct dmarc_dns *dmarc_dns_new(const struct dns_opts *o, size_t cache_size, char **err_out);

/*
 * A look-up function for tests: returns a new answer (never NULL), built
 * with dmarc_dns_answer_new() and the add helpers below.
 */
typedef struct dns_answer *(*dmarc_dns_fake_fn)(void *arg, const char *name, enum dns_type type);
struct dmarc_dns *dmarc_dns_new_fake(dmarc_dns_fake_fn fn, void *arg, size_t cache_size);
/* dmarc_dns_free - only when no thread uses it any more. NULL is ignored. */
void dmarc_dns_free(struct dmarc_dns **d);

/*
 * dmarc_dns_lookup - one blocking look-up that ends by deadline_ms (an
 * absolute now_ms() value): past it, DNS_TIMEOUT without asking. Returns a
 * new answer (free with dns_answer_free). Thread-safe.
 */
struct dns_answer *dmarc_dns_lookup(struct dmarc_dns *d, const char *name, enum dns_type type,
				    long long deadline_ms);
/* Questions asked so far (all threads; cache hits not counted), and cache hits. */
unsigned long dmarc_dns_count(const struct dmarc_dns *d);
unsigned long dmarc_dns_cache_hits(struct dmarc_dns *d);

/*
 * dmarc_dns_run_spf / dmarc_dns_run_dmarc - drive a machine to its end:
 * every step asks all the questions it has outstanding, then answers them.
 * 0 when the machine is done; -1 when the deadline passed first (the caller
 * reports temperror: RFC 7208 4.6.4 for SPF).
 */
int dmarc_dns_run_spf(struct dmarc_dns *d, struct spf_check *c, long long deadline_ms);
int dmarc_dns_run_dmarc(struct dmarc_dns *d, struct dmarc_check *c, long long deadline_ms);

/* Building answers (tests, fakes). name is copied; each add copies its data. */
struct dns_answer *dmarc_dns_answer_new(const char *name, enum dns_type type,
					enum dns_status status);
void dmarc_dns_answer_add_txt(struct dns_answer *a, const char *txt);
/* addr: IPv4 for DNS_T_A, IPv6 for DNS_T_AAAA; -1 if it does not parse. */
int dmarc_dns_answer_add_addr(struct dns_answer *a, const char *addr);
void dmarc_dns_answer_add_mx(struct dns_answer *a, unsigned pref, const char *host);

#endif
