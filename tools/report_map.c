/*
 * report_map: see report_map.h.
 */
#include "tools/report_map.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 8 bytes a step, then a final mix so that the low bits (the slot) depend on
   every byte; never 0 (the free-slot mark of hv) */
static uint64_t hash_mem(const char *s, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;
	for (; n >= 8; n -= 8, s += 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	w = 0;
	for (size_t i = 0; i < n; i++)
		w |= (uint64_t)(unsigned char)s[i] << (8 * i);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 29;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 32;
	return h ? h : 1;
}

static void rmap_grow(struct rmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 64;
	struct rmap_ent *nv = xcalloc(ncap, sizeof *nv);
	uint64_t *nh = xcalloc(ncap, sizeof *nh);
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->v[i].key)
			continue;
		size_t j = m->v[i].h & (ncap - 1);
		while (nh[j])
			j = (j + 1) & (ncap - 1);
		nv[j] = m->v[i];
		nh[j] = m->v[i].h;
	}
	free(m->v);
	free(m->hv);
	m->v = nv;
	m->hv = nh;
	m->cap = ncap;
}

static int same_key(const struct rmap_ent *e, const char *key, size_t len)
{
	if (e->len != len)
		return 0;
	return memcmp(len < RMAP_INLINE ? e->kin : e->key, key, len) == 0;
}

struct rmap_ent *rmap_get(struct rmap *m, const char *key, int create)
{
	if (create && (m->n + 1) * 4 > m->cap * 3)
		rmap_grow(m);
	if (!m->cap)
		return NULL;
	size_t len = strlen(key), mask = m->cap - 1;
	uint64_t h = hash_mem(key, len);
	size_t j = h & mask;
	for (uint64_t s; (s = m->hv[j]); j = (j + 1) & mask)
		if (s == h && same_key(&m->v[j], key, len))
			return &m->v[j];
	if (!create)
		return NULL;
	struct rmap_ent *e = &m->v[j];
	e->key = xmalloc(len + 1);
	memcpy(e->key, key, len + 1);
	e->h = h;
	e->len = (uint32_t)len;
	if (len < RMAP_INLINE)
		memcpy(e->kin, key, len + 1);
	m->hv[j] = h;
	m->n++;
	return e;
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
		if (!m->v[i].key)
			continue;
		free(m->v[i].key);
		if (free_ptr)
			free_ptr(m->v[i].ptr);
	}
	free(m->v);
	free(m->hv);
	memset(m, 0, sizeof *m);
}

struct rmap_ent *rmap_bump(struct rmap *m, const char *key, int col, long long by)
{
	struct rmap_ent *e = rmap_get(m, key, 1);
	e->c[col] += by;
	return e;
}

/* "a\tb" (each cut to 255 bytes) */
void rmap_bump2(struct rmap *m, const char *a, const char *b, long long by)
{
	char key[512];
	size_t la = strnlen(a, 255), lb = strnlen(b, 255);
	memcpy(key, a, la);
	key[la] = '\t';
	memcpy(key + la + 1, b, lb);
	key[la + 1 + lb] = 0;
	rmap_bump(m, key, 0, by);
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
		if (m->v[i].key)
			r[n++] = (struct rmap_row){ &m->v[i], col };
	qsort(r, n, sizeof *r, row_cmp);
	*n_out = n;
	return r;
}
