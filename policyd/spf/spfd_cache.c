/*
 * spfd_cache: hash table with chaining plus an LRU list; see spfd_cache.h.
 */
#include "policyd/spf/spfd_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

struct centry {
	struct centry *hnext;		/* hash chain */
	struct centry *prev, *next;	/* LRU: head = most recent */
	char *key;			/* lower-cased name */
	enum dns_type type;
	uint32_t hash;
	long long stored_ms, expires_ms;
	struct dns_answer *ans;
};

struct spfd_cache {
	size_t max, count, nbuckets;
	struct centry **buckets;
	struct centry *head, *tail;
	struct spfd_cache_stats st;
};

static uint32_t key_hash(const char *key, enum dns_type type)
{
	uint32_t h = 2166136261u ^ (uint32_t)type;	/* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* Names are compared without case and without one trailing dot. */
static char *key_make(const char *name)
{
	char *k = xstrdup(name ? name : "");
	size_t n = strlen(k);

	if (n > 1 && k[n - 1] == '.')
		k[n - 1] = 0;
	ascii_lower(k);
	return k;
}

struct spfd_cache *spfd_cache_new(size_t max_entries)
{
	struct spfd_cache *c = xcalloc(1, sizeof(*c));

	c->max = max_entries;
	c->nbuckets = 64;
	while (c->nbuckets < max_entries && c->nbuckets < (1u << 24))
		c->nbuckets <<= 1;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	return c;
}

static void lru_unlink(struct spfd_cache *c, struct centry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct spfd_cache *c, struct centry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static void entry_drop(struct spfd_cache *c, struct centry *e)
{
	struct centry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	lru_unlink(c, e);
	dns_answer_free(&e->ans);
	free(e->key);
	free(e);
	c->count--;
}

static struct centry *entry_find(struct spfd_cache *c, const char *key, enum dns_type type,
				 uint32_t h)
{
	for (struct centry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->type == type && !strcmp(e->key, key))
			return e;
	return NULL;
}

void spfd_cache_clear(struct spfd_cache *c)
{
	while (c && c->head)
		entry_drop(c, c->head);
}

void spfd_cache_free(struct spfd_cache **cp)
{
	if (!cp || !*cp)
		return;
	spfd_cache_clear(*cp);
	free((*cp)->buckets);
	free(*cp);
	*cp = NULL;
}

size_t spfd_cache_count(const struct spfd_cache *c)
{
	return c->count;
}

const struct spfd_cache_stats *spfd_cache_stats(const struct spfd_cache *c)
{
	return &c->st;
}

static void rr_copy(struct dns_rr *dst, const struct dns_rr *src)
{
	*dst = *src;
	switch (src->type) {
	case DNS_T_MX:
		dst->u.mx.host = xstrdup(src->u.mx.host ? src->u.mx.host : "");
		break;
	case DNS_T_TXT:
		dst->u.txt.data = xmalloc(src->u.txt.len + 1);
		if (src->u.txt.len)
			memcpy(dst->u.txt.data, src->u.txt.data, src->u.txt.len);
		dst->u.txt.data[src->u.txt.len] = 0;
		break;
	case DNS_T_PTR:
	case DNS_T_CNAME:
	case DNS_T_NS:
		dst->u.name = xstrdup(src->u.name ? src->u.name : "");
		break;
	default:
		break;
	}
}

struct dns_answer *spfd_answer_copy(const struct dns_answer *a)
{
	struct dns_answer *b = xcalloc(1, sizeof(*b));

	b->status = a->status;
	b->qname = xstrdup(a->qname ? a->qname : "");
	b->qtype = a->qtype;
	b->ttl = a->ttl;
	b->n = a->n;
	if (a->n) {
		b->rr = xcalloc(a->n, sizeof(*b->rr));
		for (size_t i = 0; i < a->n; i++)
			rr_copy(&b->rr[i], &a->rr[i]);
	}
	return b;
}

struct dns_answer *spfd_cache_get(struct spfd_cache *c, const char *name, enum dns_type type,
				  long long now_ms)
{
	if (!c->max) {
		c->st.misses++;
		return NULL;
	}
	char *key = key_make(name);
	uint32_t h = key_hash(key, type);
	struct centry *e = entry_find(c, key, type, h);

	free(key);
	if (e && now_ms >= e->expires_ms) {
		entry_drop(c, e);
		c->st.expired++;
		e = NULL;
	}
	if (!e) {
		c->st.misses++;
		return NULL;
	}
	c->st.hits++;
	lru_unlink(c, e);
	lru_push(c, e);
	struct dns_answer *copy = spfd_answer_copy(e->ans);
	long long left_s = (e->expires_ms - now_ms + 999) / 1000;
	copy->ttl = (uint32_t)(left_s > 0 ? left_s : 0);
	for (size_t i = 0; i < copy->n; i++)
		if (copy->rr[i].ttl > copy->ttl)
			copy->rr[i].ttl = copy->ttl;
	return copy;
}

int spfd_cache_put(struct spfd_cache *c, const struct dns_answer *ans, long long now_ms)
{
	if (!c->max || !ans)
		return 0;
	if (ans->status != DNS_OK && ans->status != DNS_NODATA && ans->status != DNS_NXDOMAIN)
		return 0;
	uint32_t ttl = ans->ttl > SPFD_CACHE_MAX_TTL_S ? SPFD_CACHE_MAX_TTL_S : ans->ttl;
	if (!ttl)
		return 0;
	char *key = key_make(ans->qname);
	uint32_t h = key_hash(key, ans->qtype);
	struct centry *e = entry_find(c, key, ans->qtype, h);

	if (e)
		entry_drop(c, e);
	while (c->count >= c->max && c->tail) {
		entry_drop(c, c->tail);
		c->st.evictions++;
	}
	e = xcalloc(1, sizeof(*e));
	e->key = key;
	e->type = ans->qtype;
	e->hash = h;
	e->stored_ms = now_ms;
	e->expires_ms = now_ms + (long long)ttl * 1000;
	e->ans = spfd_answer_copy(ans);
	e->hnext = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	lru_push(c, e);
	c->count++;
	c->st.stores++;
	return 1;
}
