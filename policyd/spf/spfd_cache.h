/*
 * spfd_cache: a bounded DNS answer cache for sluice-spf.
 * Owns: deep copies of answers keyed by (lower-cased name, type), their
 * expiry (positive TTL for answers, RFC 2308 negative TTL for NXDOMAIN and
 * NODATA), and least-recently-used eviction beyond max_entries.
 * Leaves: the clock (callers pass now_ms), DNS I/O (spfd_dns) and what an
 * answer means (proto/spf).
 * Temporary failures (SERVFAIL, TIMEOUT, ERROR) and answers with TTL 0 are
 * never stored. TTLs are capped at SPFD_CACHE_MAX_TTL_S.
 */
#ifndef SLUICE_SPFD_CACHE_H
#define SLUICE_SPFD_CACHE_H

#include <stddef.h>
#include "proto/dns.h"

#define SPFD_CACHE_MAX_TTL_S 86400

struct spfd_cache_stats {
	unsigned long long hits, misses, stores, evictions, expired;
};

struct spfd_cache;

/* spfd_cache_new - max_entries 0 = caching off (every get misses). */
struct spfd_cache *spfd_cache_new(size_t max_entries);
void spfd_cache_free(struct spfd_cache **c);

/*
 * spfd_cache_get - a new copy of the cached answer for (name, type) at
 * now_ms, with ttl lowered by the time it has spent in the cache; NULL on a
 * miss (absent or expired). Caller frees with dns_answer_free.
 */
struct dns_answer *spfd_cache_get(struct spfd_cache *c, const char *name, enum dns_type type,
				  long long now_ms);

/*
 * spfd_cache_put - store a copy of ans (keyed by ans->qname, ans->qtype)
 * if it is cacheable; replaces an older entry for the same key.
 * Returns 1 if stored, 0 if not cacheable.
 */
int spfd_cache_put(struct spfd_cache *c, const struct dns_answer *ans, long long now_ms);

size_t spfd_cache_count(const struct spfd_cache *c);
void spfd_cache_clear(struct spfd_cache *c);
const struct spfd_cache_stats *spfd_cache_stats(const struct spfd_cache *c);

/* spfd_answer_copy - deep copy that dns_answer_free releases. */
struct dns_answer *spfd_answer_copy(const struct dns_answer *a);

#endif
