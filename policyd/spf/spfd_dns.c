/*
 * spfd_dns: cache + merged in-flight look-ups over proto/dns; see spfd_dns.h.
 */
#include "policyd/spf/spfd_dns.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "lib/metrics.h"
#include "lib/util.h"
#include "policyd/spf/spfd_cache.h"

#define FLIGHT_BUCKETS 1024

struct flight;

struct spfd_dns_req {
	struct spfd_dns *d;
	struct spfd_dns_req *next;	/* waiters of one flight */
	struct flight *flight;		/* NULL for a cache hit */
	struct event *ev;		/* cache hit: deliver from the loop */
	struct dns_answer *ans;		/* cache hit: the copy */
	dns_cb cb;
	void *arg;
	int cancelled;
};

struct flight {
	struct flight *hnext;
	struct spfd_dns *d;
	char *key;
	enum dns_type type;
	unsigned bucket;
	struct dns_req *dreq;
	struct spfd_dns_req *waiters;
};

struct spfd_dns {
	struct event_base *base;
	struct dns_resolver *r;
	struct spfd_cache *cache;
	struct flight *flights[FLIGHT_BUCKETS];
	size_t nflights;
	struct spfd_dns_stats st;
};

struct spfd_dns *spfd_dns_new(struct event_base *base, const struct dns_opts *o,
			      size_t cache_entries, char **err_out)
{
	struct dns_resolver *r = dns_new(base, o, err_out);

	if (!r)
		return NULL;
	struct spfd_dns *d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->r = r;
	d->cache = spfd_cache_new(cache_entries);
	return d;
}

static void req_free(struct spfd_dns_req *q)
{
	if (q->ev)
		event_free(q->ev);
	dns_answer_free(&q->ans);
	free(q);
}

void spfd_dns_free(struct spfd_dns **dp)
{
	if (!dp || !*dp)
		return;
	struct spfd_dns *d = *dp;

	for (size_t b = 0; b < FLIGHT_BUCKETS; b++) {
		while (d->flights[b]) {
			struct flight *f = d->flights[b];
			d->flights[b] = f->hnext;
			dns_cancel(f->dreq);
			while (f->waiters) {
				struct spfd_dns_req *q = f->waiters;
				f->waiters = q->next;
				req_free(q);
			}
			free(f->key);
			free(f);
		}
	}
	/* Cache-hit requests still scheduled belong to their owners' cancel. */
	dns_free(&d->r);
	spfd_cache_free(&d->cache);
	free(d);
	*dp = NULL;
}

static unsigned bucket_of(const char *key, enum dns_type type)
{
	uint32_t h = 2166136261u ^ (uint32_t)type;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % FLIGHT_BUCKETS;
}

static char *key_make(const char *name)
{
	char *k = xstrdup(name);
	size_t n = strlen(k);

	if (n > 1 && k[n - 1] == '.')
		k[n - 1] = 0;
	ascii_lower(k);
	return k;
}

static void hit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spfd_dns_req *q = arg;

	(void)fd, (void)what;
	q->cb(q->arg, q->ans);
	req_free(q);
}

static void flight_cb(void *arg, const struct dns_answer *ans)
{
	struct flight *f = arg;
	struct spfd_dns *d = f->d;
	struct flight **pp = &d->flights[f->bucket];

	while (*pp && *pp != f)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = f->hnext;
	d->nflights--;
	if (ans && ans->status == DNS_TIMEOUT)
		metrics_filter_dns_timeout();
	spfd_cache_put(d->cache, ans, now_ms());
	/* Deliver in arrival order; a callback may start new queries (new flights). */
	struct spfd_dns_req *list = NULL;
	while (f->waiters) {
		struct spfd_dns_req *q = f->waiters;
		f->waiters = q->next;
		q->next = list;
		list = q;
	}
	while (list) {
		struct spfd_dns_req *q = list;
		list = q->next;
		if (!q->cancelled)
			q->cb(q->arg, ans);
		req_free(q);
	}
	free(f->key);
	free(f);
}

struct spfd_dns_req *spfd_dns_query(struct spfd_dns *d, const char *name, enum dns_type type,
				    dns_cb cb, void *arg)
{
	struct spfd_dns_req *q = xcalloc(1, sizeof(*q));

	q->d = d;
	q->cb = cb;
	q->arg = arg;
	d->st.queries++;
	q->ans = spfd_cache_get(d->cache, name, type, now_ms());
	if (q->ans) {
		d->st.cache_hits++;
		q->ev = evtimer_new(d->base, hit_cb, q);
		if (!q->ev)
			panic("spfd_dns: evtimer_new failed");
		struct timeval zero = { 0, 0 };
		evtimer_add(q->ev, &zero);
		return q;
	}
	char *key = key_make(name);
	unsigned b = bucket_of(key, type);
	struct flight *f;

	for (f = d->flights[b]; f; f = f->hnext)
		if (f->type == type && !strcmp(f->key, key))
			break;
	if (f) {
		free(key);
		d->st.merged++;
	} else {
		f = xcalloc(1, sizeof(*f));
		f->d = d;
		f->key = key;
		f->type = type;
		f->bucket = b;
		f->hnext = d->flights[b];
		d->flights[b] = f;
		d->nflights++;
		d->st.sent++;
		metrics_filter_dns_query();
		f->dreq = dns_query(d->r, name, type, flight_cb, f);
	}
	q->flight = f;
	q->next = f->waiters;
	f->waiters = q;
	return q;
}

void spfd_dns_cancel(struct spfd_dns_req *q)
{
	if (!q)
		return;
	if (!q->flight) {
		req_free(q);
		return;
	}
	q->cancelled = 1;	/* freed when its flight lands */
}

const struct spfd_dns_stats *spfd_dns_stats(const struct spfd_dns *d)
{
	return &d->st;
}

struct spfd_cache *spfd_dns_cache(struct spfd_dns *d)
{
	return d->cache;
}

size_t spfd_dns_pending(const struct spfd_dns *d)
{
	return d->nflights;
}
