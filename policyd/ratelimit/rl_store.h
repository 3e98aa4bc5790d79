/*
 * rl_store: where counters and greylist cells live, behind one interface
 * with two backends of the same semantics (rl_plan_apply, atomically):
 *   embedded - an LMDB file (ratelimit_state_file): survives restarts;
 *              written without fsync, flushed every ratelimit_state_sync_time
 *              and at exit ("" = memory only: a private file removed at once)
 *   redis    - a Redis server shared by several daemons (rl_redis.c)
 * Owns: cells by key, their expiry, listing and resetting for the admin.
 * Leaves: which cells a request touches and what they mean (rl_engine,
 * rl_plan, rl_limit).
 */
#ifndef SLUICE_RL_STORE_H
#define SLUICE_RL_STORE_H

#include "policyd/ratelimit/rl_cfg.h"
#include "policyd/ratelimit/rl_plan.h"

struct event_base;
struct rl_store;
struct rl_store_job;

/*
 * rl_store_cb - the plan ran (err NULL; results are in the plan) or could
 * not (err says why; valid for the call only).
 */
typedef void (*rl_store_cb)(void *arg, const char *err);

/* rl_store_embedded_new - open (create) the LMDB file; NULL with *err_out (caller frees). */
struct rl_store *rl_store_embedded_new(const char *path, long long map_bytes, long long sync_ms,
				       char **err_out);
/*
 * rl_store_redis_new - connect to cfg->redis_server within base (the
 * connection is made in the background and re-made with back-off; requests
 * meanwhile fail with an error). NULL with *err_out on a bad address.
 */
struct rl_store *rl_store_redis_new(struct event_base *base, const struct rl_cfg *cfg,
				    char **err_out);

/*
 * rl_store_run - apply p (rl_plan_apply semantics) and call cb once. The
 * embedded store calls cb before returning and returns NULL; Redis returns
 * a job, valid until cb runs or rl_store_cancel.
 */
struct rl_store_job *rl_store_run(struct rl_store *s, struct rl_plan *p, rl_store_cb cb,
				  void *arg);
/* rl_store_cancel - cb will not run (the plan is not touched any more); NULL ignored. */
void rl_store_cancel(struct rl_store_job *j);

/* rl_store_tick - housekeeping, about once a second (now_ms: wall clock): flush, drop expired cells. */
void rl_store_tick(struct rl_store *s, long long now_ms);
void rl_store_free(struct rl_store **s);

/* Listing and reset (synchronous; for `sluice-ratelimit show/reset`). */
typedef void (*rl_store_each_fn)(void *arg, const char *key, const struct rl_cell *c);
int rl_store_list(struct rl_store *s, const char *prefix, long long now_ms, rl_store_each_fn fn,
		  void *arg, char **err_out);
/* rl_store_reset - remove one key; 1 removed, 0 absent, -1 with *err_out. */
int rl_store_reset(struct rl_store *s, const char *key, char **err_out);

/* Backend interface (rl_lmdb.c, rl_redis.c). */
struct rl_store_ops {
	struct rl_store_job *(*run)(struct rl_store *s, struct rl_plan *p, rl_store_cb cb, void *arg);
	void (*cancel)(struct rl_store_job *j);
	void (*tick)(struct rl_store *s, long long now_ms);
	void (*free)(struct rl_store *s);
	int (*list)(struct rl_store *s, const char *prefix, long long now_ms, rl_store_each_fn fn,
		    void *arg, char **err_out);
	int (*reset)(struct rl_store *s, const char *key, char **err_out);
};

struct rl_store {
	const struct rl_store_ops *ops;
};

#endif
