/*
 * spfd_dns: the resolver layer of sluice-spf: spfd_cache in front of
 * proto/dns, with identical in-flight questions merged into one look-up.
 * Owns: the cache, the merge table, delivery of every answer from the event
 * loop (never before spfd_dns_query returns).
 * Leaves: what answers mean to proto/spf; per-check deadlines to the caller.
 */
#ifndef SLUICE_SPFD_DNS_H
#define SLUICE_SPFD_DNS_H

#include <stddef.h>
#include "proto/dns.h"

struct event_base;
struct spfd_dns;
struct spfd_dns_req;

struct spfd_dns_stats {
	unsigned long long queries;	/* spfd_dns_query calls */
	unsigned long long sent;	/* look-ups sent to proto/dns */
	unsigned long long merged;	/* answered by another request's look-up */
	unsigned long long cache_hits;
};

/*
 * spfd_dns_new - resolver for base with options o (see dns_new) and a cache
 * of cache_entries answers (0 = no cache). NULL with *err_out (caller frees)
 * on a bad server list.
 */
struct spfd_dns *spfd_dns_new(struct event_base *base, const struct dns_opts *o,
			      size_t cache_entries, char **err_out);
/* spfd_dns_free - pending callbacks are not called; not from inside one. */
void spfd_dns_free(struct spfd_dns **d);

/*
 * spfd_dns_query - look up (name, type); cb runs once from the loop with an
 * answer borrowed for the call (cache hits too), unless cancelled first.
 * The handle is valid until the callback has run or spfd_dns_cancel.
 */
struct spfd_dns_req *spfd_dns_query(struct spfd_dns *d, const char *name, enum dns_type type,
				    dns_cb cb, void *arg);
/* spfd_dns_cancel - the callback will not run. NULL is ignored. */
void spfd_dns_cancel(struct spfd_dns_req *req);

const struct spfd_dns_stats *spfd_dns_stats(const struct spfd_dns *d);
struct spfd_cache *spfd_dns_cache(struct spfd_dns *d);
/* spfd_dns_pending - look-ups still in flight (for draining at shutdown). */
size_t spfd_dns_pending(const struct spfd_dns *d);

#endif
