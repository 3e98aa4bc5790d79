/*
 * report_map: see report_map.h.
 */
#include "tools/report_map.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void rmap_grow(struct rmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 64;
	struct rmap_ent *nv = xcalloc(ncap, sizeof *nv);
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->v[i].key)
			continue;
		size_t j = m->v[i].h & (ncap - 1);
		while (nv[j].key)
			j = (j + 1) & (ncap - 1);
		nv[j] = m->v[i];
	}
	free(m->v);
	m->v = nv;
	m->cap = ncap;
}

struct rmap_ent *rmap_get(struct rmap *m, const char *key, int create)
{
	if (create && (m->n + 1) * 4 > m->cap * 3)
		rmap_grow(m);
	if (!m->cap)
		return NULL;
	uint64_t h = hash_str(key);
	size_t j = h & (m->cap - 1);
	while (m->v[j].key) {
		if (m->v[j].h == h && strcmp(m->v[j].key, key) == 0)
			return &m->v[j];
		j = (j + 1) & (m->cap - 1);
	}
	if (!create)
		return NULL;
	m->v[j].key = xstrdup(key);
	m->v[j].h = h;
	m->n++;
	return &m->v[j];
}

/* delete e (linear probing: shift the following run back) */
void rmap_del(struct rmap *m, struct rmap_ent *e, void (*free_ptr)(void *))
{
	size_t i = (size_t)(e - m->v), mask = m->cap - 1;
	free(e->key);
	if (free_ptr)
		free_ptr(e->ptr);
	memset(e, 0, sizeof *e);
	m->n--;
	for (size_t j = (i + 1) & mask; m->v[j].key; j = (j + 1) & mask) {
		size_t home = m->v[j].h & mask;
		/* can entry j move to the hole at i? (is i cyclically in [home, j)?) */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->v[i] = m->v[j];
			memset(&m->v[j], 0, sizeof m->v[j]);
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
