/*
 * rl_store: see rl_store.h; the dispatch to the backend.
 */
#include "policyd/ratelimit/rl_store.h"

#include <stddef.h>

struct rl_store_job *rl_store_run(struct rl_store *s, struct rl_plan *p, rl_store_cb cb, void *arg)
{
	return s->ops->run(s, p, cb, arg);
}

void rl_store_cancel(struct rl_store_job *j)
{
	/* A job starts with its backend's ops pointer (rl_lmdb.c never makes one). */
	if (j)
		(*(const struct rl_store_ops **)j)->cancel(j);
}

void rl_store_tick(struct rl_store *s, long long now_ms)
{
	if (s->ops->tick)
		s->ops->tick(s, now_ms);
}

void rl_store_free(struct rl_store **sp)
{
	if (!sp || !*sp)
		return;
	(*sp)->ops->free(*sp);
	*sp = NULL;
}

int rl_store_list(struct rl_store *s, const char *prefix, long long now_ms, rl_store_each_fn fn,
		  void *arg, char **err_out)
{
	return s->ops->list(s, prefix, now_ms, fn, arg, err_out);
}

int rl_store_reset(struct rl_store *s, const char *key, char **err_out)
{
	return s->ops->reset(s, key, err_out);
}
