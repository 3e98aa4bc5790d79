/*
 * report_map: see report_map.h.
 */
#include "tools/report_map.h"
#include "lib/util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t load8(const char *s)
{
	uint64_t w;
	memcpy(&w, s, 8);
	return w;
}

static inline uint64_t load4(const char *s)
{
	uint32_t w;
	memcpy(&w, s, 4);
	return w;
}

/* the last n % 8 bytes (n >= 8: the last 8, overlapping the words before) */
static inline uint64_t tail_word(const char *s, size_t n)
{
	if (n >= 8)
		return load8(s + n - 8);
	if (n >= 4)
		return load4(s) | load4(s + n - 4) << 32;
	uint64_t w = 0;
	if (n)
		w = (uint64_t)(unsigned char)s[0] | (uint64_t)(unsigned char)s[n / 2] << 8 |
		    (uint64_t)(unsigned char)s[n - 1] << 16;
	return w;
}

/* 8 bytes a step, then a final mix so that the low bits (the slot) depend on
   every byte; never 0 (the free-slot mark of hv) */
uint64_t rmap_hash(const char *s, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
	size_t i = 0;
	for (; i + 8 < n; i += 8) {
		h = (h ^ load8(s + i)) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h = (h ^ tail_word(s + i, n - i)) * 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 29;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 32;
	return h ? h : 1;
}

/* a[0..n) == b[0..n), word by word (both readable for n bytes) */
static inline int eq_mem(const char *a, const char *b, size_t n)
{
	if (n >= 8) {
		size_t i = 0;
		for (; i + 8 < n; i += 8)
			if (load8(a + i) != load8(b + i))
				return 0;
		return load8(a + n - 8) == load8(b + n - 8);
	}
	if (n >= 4)
		return load4(a) == load4(b) && load4(a + n - 4) == load4(b + n - 4);
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

_Static_assert(sizeof(struct rmap_ent) == 64, "rmap_ent: one cache line");

static struct rmap_ent *ents_alloc(size_t n)
{
	struct rmap_ent *v = aligned_alloc(64, n * sizeof *v);
	if (!v)
		fatal("out of memory");
	memset(v, 0, n * sizeof *v);
	return v;
}

static void rmap_grow(struct rmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 64;
	struct rmap_ent *nv = ents_alloc(ncap);
	uint64_t *nh = xcalloc(ncap, sizeof *nh);
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->hv[i])
			continue;
		size_t j = m->hv[i] & (ncap - 1);
		while (nh[j])
			j = (j + 1) & (ncap - 1);
		nv[j] = m->v[i];
		nh[j] = m->hv[i];
	}
	free(m->v);
	free(m->hv);
	m->v = nv;
	m->hv = nh;
	m->cap = ncap;
}

static inline int same_key(const struct rmap_ent *e, const char *key, size_t len)
{
	if (e->len != len)
		return 0;
	if (len < RMAP_INLINE)
		return eq_mem(e->kin, key, len);
	return memcmp(e->key, key, len) == 0;
}

struct rmap_ent *rmap_getn(struct rmap *m, const char *key, size_t len, int create)
{
	return rmap_getnh(m, key, len, rmap_hash(key, len), create);
}

struct rmap_ent *rmap_getnh(struct rmap *m, const char *key, size_t len, uint64_t h, int create)
{
	if (create && (m->n + 1) * 4 > m->cap * 3)
		rmap_grow(m);
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	size_t j = h & mask;
	for (uint64_t s; (s = m->hv[j]); j = (j + 1) & mask)
		if (s == h && same_key(&m->v[j], key, len))
			return &m->v[j];
	if (!create)
		return NULL;
	struct rmap_ent *e = &m->v[j];
	e->key = xmalloc(len + 1);
	memcpy(e->key, key, len);
	e->key[len] = 0;
	e->len = (uint32_t)len;
	if (len < RMAP_INLINE)
		memcpy(e->kin, e->key, len + 1);
	m->hv[j] = h;
	m->n++;
	return e;
}

struct rmap_ent *rmap_get(struct rmap *m, const char *key, int create)
{
	return rmap_getn(m, key, strlen(key), create);
}

/* delete e (linear probing: shift the following run back) */
void rmap_del(struct rmap *m, struct rmap_ent *e, void (*free_ptr)(void *))
{
	size_t i = (size_t)(e - m->v), mask = m->cap - 1;
	free(e->key);
	if (free_ptr)
		free_ptr(e->ptr);
	memset(e, 0, sizeof *e);
	m->hv[i] = 0;
	m->n--;
	for (size_t j = (i + 1) & mask; m->hv[j]; j = (j + 1) & mask) {
		size_t home = m->hv[j] & mask;
		/* can entry j move to the hole at i? (is i cyclically in [home, j)?) */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->v[i] = m->v[j];
			m->hv[i] = m->hv[j];
			memset(&m->v[j], 0, sizeof m->v[j]);
			m->hv[j] = 0;
			i = j;
		}
	}
}

void rmap_free(struct rmap *m, void (*free_ptr)(void *))
{
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->hv[i])
			continue;
		free(m->v[i].key);
		if (free_ptr)
			free_ptr(m->v[i].ptr);
	}
	free(m->v);
	free(m->hv);
	memset(m, 0, sizeof *m);
}

struct rmap_ent *rmap_bumpn(struct rmap *m, const char *key, size_t len, int col, long long by)
{
	struct rmap_ent *e = rmap_getn(m, key, len, 1);
	e->c[col] += by;
	return e;
}

struct rmap_ent *rmap_bumpnh(struct rmap *m, const char *key, size_t len, uint64_t h, int col,
			     long long by)
{
	struct rmap_ent *e = rmap_getnh(m, key, len, h, 1);
	e->c[col] += by;
	return e;
}

struct rmap_ent *rmap_bump(struct rmap *m, const char *key, int col, long long by)
{
	return rmap_bumpn(m, key, strlen(key), col, by);
}

/* "a\tb" (each cut to 255 bytes) */
void rmap_bump2(struct rmap *m, const char *a, const char *b, long long by)
{
	char key[512];
	size_t la = strnlen(a, 255), lb = strnlen(b, 255);
	memcpy(key, a, la);
	key[la] = '\t';
	memcpy(key + la + 1, b, lb);
	rmap_bumpn(m, key, la + 1 + lb, 0, by);
}

static int row_cmp(const void *a, const void *b)
{
	const struct rmap_row *x = a, *y = b;
	long long cx = x->e->c[x->col], cy = y->e->c[y->col];
	if (cx != cy)
		return cx > cy ? -1 : 1;
	return strcmp(x->e->key, y->e->key);
}

/* entries sorted by c[col] descending, then key; caller frees */
struct rmap_row *rmap_sorted(const struct rmap *m, int col, size_t *n_out)
{
	struct rmap_row *r = xcalloc(m->n + 1, sizeof *r);
	size_t n = 0;
	for (size_t i = 0; i < m->cap; i++)
		if (m->hv[i])
			r[n++] = (struct rmap_row){ &m->v[i], col };
	qsort(r, n, sizeof *r, row_cmp);
	*n_out = n;
	return r;
}

/* the first limit rows of rmap_sorted's order: a sorted window of the best
   ones so far, an entry that beats the last one inserted into it */
struct rmap_row *rmap_top(const struct rmap *m, int col, size_t limit, size_t *n_out)
{
	if (!limit || limit >= m->n)
		return rmap_sorted(m, col, n_out);
	struct rmap_row *r = xcalloc(limit + 1, sizeof *r);
	size_t n = 0;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->hv[i])
			continue;
		struct rmap_row x = { &m->v[i], col };
		if (n == limit && row_cmp(&x, &r[n - 1]) >= 0)
			continue;
		size_t j = n < limit ? n++ : limit - 1;
		while (j > 0 && row_cmp(&x, &r[j - 1]) < 0) {
			r[j] = r[j - 1];
			j--;
		}
		r[j] = x;
	}
	*n_out = n;
	return r;
}
