#include "milters/dkim/dkim_dns.h"
#include "lib/metrics.h"
#include "lib/util.h"

#include <opendkim/dkim.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* longest time an answer stays in the query cache, whatever its TTL */
#define CACHE_MAX_TTL_S 86400

/* One cached answer: OK (records), NODATA or NXDOMAIN until expires (monotonic s). */
struct cache_ent {
	struct cache_ent *next;
	char *name;		/* lower case */
	enum dns_status st;
	uint64_t expires;
	size_t n;
	char **txt;
	size_t *lens;
};

struct dkim_dns {
	struct dns_opts opts;
	char **servers;
	pthread_mutex_t lock;
	struct dns_resolver **free_list;	/* idle resolvers */
	size_t nfree, capfree;
	dkim_dns_fake_fn fake;
	void *fake_arg;
	/* query cache (OpenDKIM's QueryCache): chained hash, guarded by lock */
	size_t cache_max, cache_n, nbuckets;
	struct cache_ent **buckets;
};

struct dkim_dns_query {
	int status;		/* DKIM_DNS_SUCCESS / _ERROR / _EXPIRED */
	size_t len;		/* reply bytes written into libopendkim's buffer */
};

static void cache_init(struct dkim_dns *d, size_t max)
{
	d->cache_max = max;
	if (max == 0)
		return;
	d->nbuckets = 64;
	while (d->nbuckets < max && d->nbuckets < ((size_t)1 << 24))
		d->nbuckets <<= 1;
	d->buckets = xcalloc(d->nbuckets, sizeof(*d->buckets));
}

static void ent_free(struct cache_ent *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->txt[i]);
	free(e->txt);
	free(e->lens);
	free(e->name);
	free(e);
}

static uint64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static size_t name_hash(const char *name)
{
	size_t h = 5381;
	for (const char *p = name; *p; p++)
		h = h * 33 + (unsigned char)*p;
	return h;
}

/* drop expired entries; everything when all = 1. Lock held. */
static void cache_sweep(struct dkim_dns *d, uint64_t now, int all)
{
	for (size_t b = 0; b < d->nbuckets; b++) {
		struct cache_ent **pp = &d->buckets[b];
		while (*pp) {
			struct cache_ent *e = *pp;
			if (all || e->expires <= now) {
				*pp = e->next;
				ent_free(e);
				d->cache_n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* cache_get - a copy of a live entry's records (caller frees as in dns_start); 0 = hit. */
static int cache_get(struct dkim_dns *d, const char *lname, enum dns_status *st, char ***txt,
		     size_t **lens, size_t *n)
{
	if (d->cache_max == 0)
		return -1;
	uint64_t now = mono_s();
	int hit = -1;
	pthread_mutex_lock(&d->lock);
	for (struct cache_ent **pp = &d->buckets[name_hash(lname) & (d->nbuckets - 1)]; *pp;
	     pp = &(*pp)->next) {
		struct cache_ent *e = *pp;
		if (strcmp(e->name, lname) != 0)
			continue;
		if (e->expires <= now) {
			*pp = e->next;
			ent_free(e);
			d->cache_n--;
			break;
		}
		*st = e->st;
		*n = e->n;
		*txt = xcalloc(e->n + 1, sizeof(char *));
		*lens = xcalloc(e->n + 1, sizeof(size_t));
		for (size_t i = 0; i < e->n; i++) {
			(*txt)[i] = xmalloc(e->lens[i] + 1);
			memcpy((*txt)[i], e->txt[i], e->lens[i] + 1);
			(*lens)[i] = e->lens[i];
		}
		hit = 0;
		break;
	}
	pthread_mutex_unlock(&d->lock);
	return hit;
}

static void cache_put(struct dkim_dns *d, const char *lname, enum dns_status st, uint32_t ttl,
		      char *const *txt, const size_t *lens, size_t n)
{
	if (d->cache_max == 0 || ttl == 0)
		return;
	struct cache_ent *e = xcalloc(1, sizeof(*e));
	e->name = xstrdup(lname);
	e->st = st;
	uint64_t now = mono_s();
	e->expires = now + (ttl > CACHE_MAX_TTL_S ? CACHE_MAX_TTL_S : ttl);
	e->n = n;
	e->txt = xcalloc(n + 1, sizeof(char *));
	e->lens = xcalloc(n + 1, sizeof(size_t));
	for (size_t i = 0; i < n; i++) {
		e->txt[i] = xmalloc(lens[i] + 1);
		memcpy(e->txt[i], txt[i], lens[i]);
		e->txt[i][lens[i]] = 0;
		e->lens[i] = lens[i];
	}
	pthread_mutex_lock(&d->lock);
	struct cache_ent **head = &d->buckets[name_hash(lname) & (d->nbuckets - 1)];
	for (struct cache_ent **pp = head; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, lname) == 0) {	/* another thread asked too: keep the newer */
			struct cache_ent *old = *pp;
			e->next = old->next;
			*pp = e;
			ent_free(old);
			pthread_mutex_unlock(&d->lock);
			return;
		}
	}
	if (d->cache_n >= d->cache_max) {
		cache_sweep(d, now, 0);
		if (d->cache_n >= d->cache_max)
			cache_sweep(d, now, 1);	/* full of live entries: start again */
	}
	e->next = *head;
	*head = e;
	d->cache_n++;
	pthread_mutex_unlock(&d->lock);
}

struct dkim_dns *dkim_dns_new(const struct dns_opts *o, size_t cache_size, char **err_out)
{
	struct dkim_dns *d = xcalloc(1, sizeof(*d));
	cache_init(d, cache_size);
	d->opts = *o;
	d->servers = xcalloc(o->nservers + 1, sizeof(char *));
	for (size_t i = 0; i < o->nservers; i++)
		d->servers[i] = xstrdup(o->servers[i]);
	d->opts.servers = (const char *const *)d->servers;
	pthread_mutex_init(&d->lock, NULL);
	/* Validate the server list now (start-up error, not a mail-time one). */
	struct dns_resolver *r = dns_new(NULL, &d->opts, err_out);
	if (r == NULL) {
		dkim_dns_free(&d);
		return NULL;
	}
	d->free_list = xcalloc(4, sizeof(*d->free_list));
	d->capfree = 4;
	d->free_list[d->nfree++] = r;
	return d;
}

struct dkim_dns *dkim_dns_new_fake(dkim_dns_fake_fn fn, void *arg)
{
	struct dkim_dns *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->fake = fn;
	d->fake_arg = arg;
	return d;
}

void dkim_dns_free(struct dkim_dns **dp)
{
	struct dkim_dns *d = *dp;
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->nfree; i++)
		dns_free(&d->free_list[i]);
	if (d->buckets) {
		cache_sweep(d, 0, 1);
		free(d->buckets);
	}
	free(d->free_list);
	for (size_t i = 0; i < d->opts.nservers; i++)
		free(d->servers[i]);
	free(d->servers);
	pthread_mutex_destroy(&d->lock);
	free(d);
	*dp = NULL;
}

static struct dns_resolver *pool_take(struct dkim_dns *d)
{
	struct dns_resolver *r = NULL;
	pthread_mutex_lock(&d->lock);
	if (d->nfree > 0)
		r = d->free_list[--d->nfree];
	pthread_mutex_unlock(&d->lock);
	if (r == NULL) {
		char *err = NULL;
		r = dns_new(NULL, &d->opts, &err);
		if (r == NULL) {
			free(err);	/* the list was valid at start-up; out of fds or memory */
			return NULL;
		}
	}
	return r;
}

static void pool_give(struct dkim_dns *d, struct dns_resolver *r)
{
	pthread_mutex_lock(&d->lock);
	if (d->nfree == d->capfree) {
		d->capfree *= 2;
		d->free_list = xrealloc(d->free_list, d->capfree * sizeof(*d->free_list));
	}
	d->free_list[d->nfree++] = r;
	pthread_mutex_unlock(&d->lock);
}

static void put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

size_t dkim_dns_build_reply(const char *qname, int rcode, char *const *txt, const size_t *txt_len,
			    size_t n, unsigned char *buf, size_t buflen)
{
	size_t o = 12;
	if (buflen < 12 + 256 + 4)
		return 0;
	memset(buf, 0, 12);
	/* question name in wire form */
	const char *p = qname;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > 63 || o + l + 1 > 12 + 255)
			return 0;
		buf[o++] = (unsigned char)l;
		memcpy(buf + o, p, l);
		o += l;
		p += l;
		if (*p == '.')
			p++;
	}
	buf[o++] = 0;
	put16(buf + o, 16);	/* TXT */
	put16(buf + o + 2, 1);	/* IN */
	o += 4;
	unsigned ancount = 0;
	int tc = 0;
	for (size_t i = 0; i < n; i++) {
		size_t nstr = txt_len[i] / 255 + (txt_len[i] % 255 != 0 || txt_len[i] == 0);
		size_t rdlen = txt_len[i] + nstr;
		if (rdlen > 65535 || o + 12 + rdlen > buflen) {
			tc = 1;
			break;
		}
		put16(buf + o, 0xc00c);
		put16(buf + o + 2, 16);
		put16(buf + o + 4, 1);
		memset(buf + o + 6, 0, 4);	/* TTL 0 */
		put16(buf + o + 10, (unsigned)rdlen);
		o += 12;
		size_t left = txt_len[i];
		const char *s = txt[i];
		do {
			size_t c = left > 255 ? 255 : left;
			buf[o++] = (unsigned char)c;
			memcpy(buf + o, s, c);
			o += c;
			s += c;
			left -= c;
		} while (left > 0);
		ancount++;
	}
	buf[2] = (unsigned char)(0x81 | (tc ? 0x02 : 0));	/* QR, RD, TC */
	buf[3] = (unsigned char)(0x80 | (rcode & 0x0f));	/* RA, RCODE */
	put16(buf + 4, 1);
	put16(buf + 6, ancount);
	return o;
}

static int dns_start(void *srv, int type, unsigned char *query, unsigned char *buf, size_t buflen,
		     void **qh)
{
	struct dkim_dns *d = srv;
	struct dkim_dns_query *q = xcalloc(1, sizeof(*q));
	const char *name = (const char *)query;
	enum dns_status st;
	char **txt = NULL;
	size_t *lens = NULL, n = 0;
	struct dns_answer *ans = NULL;

	*qh = q;
	if (type != 16) {
		q->status = DKIM_DNS_INVALID;
		return 0;
	}
	char lname[256];
	size_t nl = strlen(name);
	if (nl >= sizeof(lname)) {
		q->status = DKIM_DNS_INVALID;
		return 0;
	}
	for (size_t i = 0; i <= nl; i++)
		lname[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
	int owned = 1;		/* txt[i] are ours to free (fake and cache); else ans owns them */
	if (cache_get(d, lname, &st, &txt, &lens, &n) == 0) {
		/* hit */
	} else if (d->fake) {
		st = d->fake(d->fake_arg, name, &txt, &n);
		lens = xcalloc(n + 1, sizeof(size_t));
		for (size_t i = 0; i < n; i++)
			lens[i] = strlen(txt[i]);
	} else {
		struct dns_resolver *r = pool_take(d);
		if (r == NULL) {
			q->status = DKIM_DNS_ERROR;
			return 0;
		}
		ans = dns_query_sync(r, name, DNS_T_TXT, 0);
		pool_give(d, r);
		st = ans->status;
		metrics_filter_dns_query();
		if (st == DNS_TIMEOUT)
			metrics_filter_dns_timeout();
		owned = 0;
		if (st == DNS_OK) {
			n = ans->n;
			txt = xcalloc(n + 1, sizeof(char *));
			lens = xcalloc(n + 1, sizeof(size_t));
			for (size_t i = 0; i < n; i++) {
				txt[i] = ans->rr[i].u.txt.data;
				lens[i] = ans->rr[i].u.txt.len;
			}
		}
		if (st == DNS_OK || st == DNS_NODATA || st == DNS_NXDOMAIN)
			cache_put(d, lname, st, ans->ttl, txt, lens, st == DNS_OK ? n : 0);
	}
	int rcode = 0;
	switch (st) {
	case DNS_OK:
	case DNS_NODATA:
		break;
	case DNS_NXDOMAIN:
		rcode = 3;
		break;
	case DNS_TIMEOUT:
		q->status = DKIM_DNS_EXPIRED;
		goto out;
	default:
		q->status = DKIM_DNS_ERROR;
		goto out;
	}
	q->len = dkim_dns_build_reply(name, rcode, txt, lens, st == DNS_OK ? n : 0, buf, buflen);
	q->status = q->len > 0 ? DKIM_DNS_SUCCESS : DKIM_DNS_ERROR;
out:
	if (owned && txt)
		for (size_t i = 0; i < n; i++)
			free(txt[i]);
	free(txt);
	free(lens);
	dns_answer_free(&ans);
	return 0;
}

static int dns_cancel_q(void *srv, void *qh)
{
	(void)srv;
	free(qh);
	return 0;
}

static int dns_wait(void *srv, void *qh, struct timeval *to, size_t *bytes, int *error, int *dnssec)
{
	(void)srv;
	(void)to;
	struct dkim_dns_query *q = qh;
	if (bytes)
		*bytes = q->len;
	if (error)
		*error = 0;
	if (dnssec)
		*dnssec = DKIM_DNSSEC_UNKNOWN;
	return q->status;
}

static int dns_init_noop(void **srv)
{
	(void)srv;
	return 0;
}

static void dns_close_noop(void *srv)
{
	(void)srv;
}

void dkim_dns_attach(struct dkim_dns *d, void *dkim_lib)
{
	DKIM_LIB *lib = dkim_lib;
	dkim_dns_set_query_service(lib, d);
	dkim_dns_set_query_start(lib, dns_start);
	dkim_dns_set_query_cancel(lib, dns_cancel_q);
	dkim_dns_set_query_waitreply(lib, dns_wait);
	dkim_dns_set_init(lib, dns_init_noop);
	dkim_dns_set_close(lib, dns_close_noop);
}
