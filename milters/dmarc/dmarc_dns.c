#include "milters/dmarc/dmarc_dns.h"
#include "lib/metrics.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One cached answer (see dmarc_dns_new). */
struct centry {
	struct centry *next;
	enum dns_type type;
	char *name;			/* lower-cased */
	struct dns_answer *ans;
	long long expires_ms;		/* now_ms() clock */
};

struct dmarc_dns {
	struct dns_opts opts;
	char **servers;			/* our copy of opts.servers */
	pthread_mutex_t lock;
	struct dns_resolver **idle;	/* resolvers not in use */
	size_t nidle, capidle;
	dmarc_dns_fake_fn fake;
	void *fake_arg;
	unsigned long count;		/* atomic */
	/* the answer cache (under lock) */
	size_t cache_max, cache_n, nbuckets;
	struct centry **buckets;
	unsigned long hits;
};

static void centry_free(struct centry *e)
{
	free(e->name);
	dns_answer_free(&e->ans);
	free(e);
}

static void cache_clear(struct dmarc_dns *d, int expired_only)
{
	long long now = now_ms();
	for (size_t i = 0; i < d->nbuckets; i++) {
		struct centry **pp = &d->buckets[i];
		while (*pp) {
			struct centry *e = *pp;
			if (!expired_only || e->expires_ms <= now) {
				*pp = e->next;
				centry_free(e);
				d->cache_n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

static size_t bucket_of(const struct dmarc_dns *d, const char *lname, enum dns_type t)
{
	unsigned long h = 5381u + (unsigned)t;
	for (const char *p = lname; *p; p++)
		h = h * 33u + (unsigned char)*p;
	return h % d->nbuckets;
}

static struct dns_answer *answer_copy(const struct dns_answer *a)
{
	struct dns_answer *c = dmarc_dns_answer_new(a->qname ? a->qname : "", a->qtype, a->status);
	c->ttl = a->ttl;
	if (a->n) {
		c->rr = xcalloc(a->n, sizeof(*c->rr));
		c->n = a->n;
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct dns_rr *r = &a->rr[i];
		struct dns_rr *o = &c->rr[i];
		*o = *r;
		switch (r->type) {
		case DNS_T_TXT:
			o->u.txt.data = xmalloc(r->u.txt.len + 1);
			memcpy(o->u.txt.data, r->u.txt.data, r->u.txt.len);
			o->u.txt.data[r->u.txt.len] = 0;
			break;
		case DNS_T_MX:
			o->u.mx.host = xstrdup(r->u.mx.host ? r->u.mx.host : "");
			break;
		case DNS_T_PTR:
		case DNS_T_CNAME:
		case DNS_T_NS:
			o->u.name = xstrdup(r->u.name ? r->u.name : "");
			break;
		default:
			break;
		}
	}
	return c;
}

/* cache_get - a copy of a live cached answer, or NULL. Under lock. */
static struct dns_answer *cache_get(struct dmarc_dns *d, const char *lname, enum dns_type t)
{
	if (d->cache_max == 0)
		return NULL;
	for (struct centry *e = d->buckets[bucket_of(d, lname, t)]; e; e = e->next)
		if (e->type == t && strcmp(e->name, lname) == 0) {
			if (e->expires_ms <= now_ms())
				return NULL;
			d->hits++;
			return answer_copy(e->ans);
		}
	return NULL;
}

/*
 * cache_put - keep records, NODATA and NXDOMAIN for their TTL (the negative
 * TTL of RFC 2308 for the latter; at most a day; TTL 0 not kept); errors
 * and time-outs never. Under lock.
 */
static void cache_put(struct dmarc_dns *d, const char *lname, enum dns_type t,
		      const struct dns_answer *a)
{
	if (d->cache_max == 0 || a->ttl == 0 ||
	    (a->status != DNS_OK && a->status != DNS_NODATA && a->status != DNS_NXDOMAIN))
		return;
	uint32_t ttl = a->ttl > 86400 ? 86400 : a->ttl;
	size_t b = bucket_of(d, lname, t);
	for (struct centry **pp = &d->buckets[b]; *pp; pp = &(*pp)->next)
		if ((*pp)->type == t && strcmp((*pp)->name, lname) == 0) {
			struct centry *old = *pp;
			*pp = old->next;
			centry_free(old);
			d->cache_n--;
			break;
		}
	if (d->cache_n >= d->cache_max) {
		cache_clear(d, 1);
		if (d->cache_n >= d->cache_max)
			cache_clear(d, 0);
	}
	struct centry *e = xcalloc(1, sizeof(*e));
	e->type = t;
	e->name = xstrdup(lname);
	e->ans = answer_copy(a);
	e->expires_ms = now_ms() + (long long)ttl * 1000;
	e->next = d->buckets[b];
	d->buckets[b] = e;
	d->cache_n++;
}

static void cache_init(struct dmarc_dns *d, size_t cache_size)
{
	d->cache_max = cache_size;
	d->nbuckets = cache_size ? (cache_size < 64 ? 64 : cache_size) : 1;
	d->buckets = xcalloc(d->nbuckets, sizeof(*d->buckets));
}

struct dmarc_dns *dmarc_dns_new(const struct dns_opts *o, size_t cache_size, char **err_out)
{
	struct dmarc_dns *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	cache_init(d, cache_size);
	d->opts = *o;
	d->servers = xcalloc(o->nservers + 1, sizeof(char *));
	for (size_t i = 0; i < o->nservers; i++)
		d->servers[i] = xstrdup(o->servers[i]);
	d->opts.servers = (const char *const *)d->servers;
	/* one resolver now: a bad server list is a start-up error */
	struct dns_resolver *r = dns_new(NULL, &d->opts, err_out);
	if (r == NULL) {
		dmarc_dns_free(&d);
		return NULL;
	}
	d->capidle = 8;
	d->idle = xcalloc(d->capidle, sizeof(*d->idle));
	d->idle[d->nidle++] = r;
	return d;
}

struct dmarc_dns *dmarc_dns_new_fake(dmarc_dns_fake_fn fn, void *arg, size_t cache_size)
{
	struct dmarc_dns *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	cache_init(d, cache_size);
	d->fake = fn;
	d->fake_arg = arg;
	return d;
}

void dmarc_dns_free(struct dmarc_dns **dp)
{
	struct dmarc_dns *d = *dp;
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->nidle; i++)
		dns_free(&d->idle[i]);
	free(d->idle);
	if (d->buckets) {
		cache_clear(d, 0);
		free(d->buckets);
	}
	if (d->servers) {
		for (char **s = d->servers; *s; s++)
			free(*s);
		free(d->servers);
	}
	pthread_mutex_destroy(&d->lock);
	free(d);
	*dp = NULL;
}

unsigned long dmarc_dns_count(const struct dmarc_dns *d)
{
	return __atomic_load_n(&d->count, __ATOMIC_SEQ_CST);
}

unsigned long dmarc_dns_cache_hits(struct dmarc_dns *d)
{
	pthread_mutex_lock(&d->lock);
	unsigned long h = d->hits;
	pthread_mutex_unlock(&d->lock);
	return h;
}

struct dns_answer *dmarc_dns_lookup(struct dmarc_dns *d, const char *name, enum dns_type type,
				    long long deadline_ms)
{
	long long left_ms = deadline_ms - now_ms();
	if (left_ms <= 0)
		return dmarc_dns_answer_new(name, type, DNS_TIMEOUT);
	char lname[DMARC_NAME_MAX + 2];
	snprintf(lname, sizeof(lname), "%s", name);
	ascii_lower(lname);
	size_t ll = strlen(lname);
	if (ll > 1 && lname[ll - 1] == '.')
		lname[ll - 1] = 0;
	pthread_mutex_lock(&d->lock);
	struct dns_answer *hit = cache_get(d, lname, type);
	pthread_mutex_unlock(&d->lock);
	if (hit)
		return hit;
	__atomic_add_fetch(&d->count, 1, __ATOMIC_SEQ_CST);
	if (d->fake) {
		struct dns_answer *fa = d->fake(d->fake_arg, name, type);
		pthread_mutex_lock(&d->lock);
		cache_put(d, lname, type, fa);
		pthread_mutex_unlock(&d->lock);
		return fa;
	}
	pthread_mutex_lock(&d->lock);
	struct dns_resolver *r = d->nidle ? d->idle[--d->nidle] : NULL;
	pthread_mutex_unlock(&d->lock);
	if (r == NULL) {
		char *err = NULL;
		r = dns_new(NULL, &d->opts, &err);
		if (r == NULL) {	/* the same options worked at start-up */
			free(err);
			return dmarc_dns_answer_new(name, type, DNS_ERROR);
		}
	}
	struct dns_answer *a = dns_query_sync(r, name, type, left_ms > 0x7fffffff ? 0x7fffffff : (int)left_ms);
	metrics_filter_dns_query();
	if (a->status == DNS_TIMEOUT)
		metrics_filter_dns_timeout();
	pthread_mutex_lock(&d->lock);
	cache_put(d, lname, type, a);
	if (d->nidle == d->capidle) {
		d->capidle *= 2;
		d->idle = xrealloc(d->idle, d->capidle * sizeof(*d->idle));
	}
	d->idle[d->nidle++] = r;
	pthread_mutex_unlock(&d->lock);
	return a;
}

/* ---- driving the machines ---- */

struct pending {
	unsigned *id;
	enum dns_type *type;
	char (*name)[DMARC_NAME_MAX + 1];
	size_t n, cap;
};

static void pending_push(struct pending *p, unsigned id, enum dns_type type, const char *name)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 8;
		p->id = xrealloc(p->id, p->cap * sizeof(*p->id));
		p->type = xrealloc(p->type, p->cap * sizeof(*p->type));
		p->name = xrealloc(p->name, p->cap * sizeof(*p->name));
	}
	p->id[p->n] = id;
	p->type[p->n] = type;
	snprintf(p->name[p->n], sizeof(p->name[p->n]), "%s", name);
	p->n++;
}

static void pending_free(struct pending *p)
{
	free(p->id);
	free(p->type);
	free(p->name);
}

int dmarc_dns_run_spf(struct dmarc_dns *d, struct spf_check *c, long long deadline_ms)
{
	struct pending p = { 0 };
	size_t next = 0;
	int rc = 0;
	for (;;) {
		struct spf_query q;
		int st;
		while ((st = spf_check_next(c, &q)) == SPF_NEED_DNS)
			pending_push(&p, q.id, q.type, q.name);
		if (st == SPF_DONE)
			break;
		if (next == p.n)
			panic("spf machine waits with no question outstanding");
		if (now_ms() >= deadline_ms) {
			rc = -1;
			break;
		}
		struct dns_answer *a = dmarc_dns_lookup(d, p.name[next], p.type[next], deadline_ms);
		spf_check_answer(c, p.id[next], a);
		dns_answer_free(&a);
		next++;
	}
	pending_free(&p);
	return rc;
}

int dmarc_dns_run_dmarc(struct dmarc_dns *d, struct dmarc_check *c, long long deadline_ms)
{
	struct pending p = { 0 };
	size_t next = 0;
	int rc = 0;
	for (;;) {
		struct dmarc_query q;
		int st;
		while ((st = dmarc_check_next(c, &q)) == DMARC_NEED_DNS)
			pending_push(&p, q.id, q.type, q.name);
		if (st == DMARC_DONE)
			break;
		if (next == p.n)
			panic("dmarc machine waits with no question outstanding");
		if (now_ms() >= deadline_ms) {
			rc = -1;
			break;
		}
		struct dns_answer *a = dmarc_dns_lookup(d, p.name[next], p.type[next], deadline_ms);
		dmarc_check_answer(c, p.id[next], a);
		dns_answer_free(&a);
		next++;
	}
	pending_free(&p);
	return rc;
}

/* ---- answers by hand ---- */

struct dns_answer *dmarc_dns_answer_new(const char *name, enum dns_type type,
					enum dns_status status)
{
	struct dns_answer *a = xcalloc(1, sizeof(*a));
	a->status = status;
	a->qname = xstrdup(name);
	a->qtype = type;
	a->ttl = 300;
	return a;
}

static struct dns_rr *rr_add(struct dns_answer *a, enum dns_type type)
{
	a->rr = xrealloc(a->rr, (a->n + 1) * sizeof(*a->rr));
	struct dns_rr *rr = &a->rr[a->n++];
	memset(rr, 0, sizeof(*rr));
	rr->type = type;
	rr->ttl = 300;
	a->status = DNS_OK;
	return rr;
}

void dmarc_dns_answer_add_txt(struct dns_answer *a, const char *txt)
{
	struct dns_rr *rr = rr_add(a, DNS_T_TXT);
	rr->u.txt.len = strlen(txt);
	rr->u.txt.data = xstrdup(txt);
	rr->u.txt.nstrings = 1;
}

int dmarc_dns_answer_add_addr(struct dns_answer *a, const char *addr)
{
	struct in_addr v4;
	struct in6_addr v6;
	if (inet_pton(AF_INET, addr, &v4) == 1) {
		rr_add(a, DNS_T_A)->u.a = v4;
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &v6) == 1) {
		rr_add(a, DNS_T_AAAA)->u.aaaa = v6;
		return 0;
	}
	return -1;
}

void dmarc_dns_answer_add_mx(struct dns_answer *a, unsigned pref, const char *host)
{
	struct dns_rr *rr = rr_add(a, DNS_T_MX);
	rr->u.mx.pref = (uint16_t)pref;
	rr->u.mx.host = xstrdup(host);
}
