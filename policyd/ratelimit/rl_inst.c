/*
 * rl_inst: see rl_inst.h. Chained hash on the instance text plus a FIFO
 * list in arrival order for eviction; keys are kept as 64-bit hashes.
 */
#include "policyd/ratelimit/rl_inst.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

struct cnt {
	uint64_t key;
	long long units;
};

struct ent {
	struct ent *hnext;	/* hash chain */
	struct ent *older, *newer;
	char *instance;
	long long born_ms;
	struct cnt *c;
	size_t n;
};

struct rl_inst {
	struct ent **tab;
	size_t cap, n, max;
	long long ttl_ms;
	struct ent *oldest, *newest;
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct rl_inst *rl_inst_new(size_t max, long long ttl_ms)
{
	struct rl_inst *m = xcalloc(1, sizeof(*m));
	m->cap = 1024;
	while (m->cap < max)
		m->cap *= 2;
	m->tab = xcalloc(m->cap, sizeof(*m->tab));
	m->max = max ? max : 1;
	m->ttl_ms = ttl_ms;
	return m;
}

static void unlink_ent(struct rl_inst *m, struct ent *e)
{
	struct ent **pp = &m->tab[fnv(e->instance) & (m->cap - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		m->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		m->newest = e->older;
	m->n--;
	free(e->instance);
	free(e->c);
	free(e);
}

static void expire(struct rl_inst *m, long long now_ms)
{
	while (m->oldest && (m->n > m->max || now_ms - m->oldest->born_ms > m->ttl_ms))
		unlink_ent(m, m->oldest);
}

static struct ent *find(struct rl_inst *m, const char *instance)
{
	for (struct ent *e = m->tab[fnv(instance) & (m->cap - 1)]; e; e = e->hnext)
		if (!strcmp(e->instance, instance))
			return e;
	return NULL;
}

long long rl_inst_counted(struct rl_inst *m, const char *instance, const char *key, long long now_ms)
{
	expire(m, now_ms);
	struct ent *e = instance && *instance ? find(m, instance) : NULL;
	if (!e)
		return 0;
	uint64_t k = fnv(key);
	for (size_t i = 0; i < e->n; i++)
		if (e->c[i].key == k)
			return e->c[i].units;
	return 0;
}

void rl_inst_add(struct rl_inst *m, const char *instance, const char *key, long long units,
		 long long now_ms)
{
	if (!instance || !*instance)
		return;
	struct ent *e = find(m, instance);
	if (!e) {
		e = xcalloc(1, sizeof(*e));
		e->instance = xstrdup(instance);
		e->born_ms = now_ms;
		size_t h = fnv(instance) & (m->cap - 1);
		e->hnext = m->tab[h];
		m->tab[h] = e;
		e->older = m->newest;
		if (m->newest)
			m->newest->newer = e;
		else
			m->oldest = e;
		m->newest = e;
		m->n++;
	}
	uint64_t k = fnv(key);
	for (size_t i = 0; i < e->n; i++)
		if (e->c[i].key == k) {
			e->c[i].units += units;
			return;
		}
	e->c = xrealloc(e->c, (e->n + 1) * sizeof(*e->c));
	e->c[e->n].key = k;
	e->c[e->n].units = units;
	e->n++;
	expire(m, now_ms);
}

size_t rl_inst_size(const struct rl_inst *m)
{
	return m->n;
}

void rl_inst_free(struct rl_inst **mp)
{
	if (!mp || !*mp)
		return;
	struct rl_inst *m = *mp;
	while (m->oldest)
		unlink_ent(m, m->oldest);
	free(m->tab);
	free(m);
	*mp = NULL;
}
