/*
 * rl_lmdb: the embedded rl_store backend (rl_store.h). One LMDB file,
 * one write transaction per request (all its cells, so the plan is atomic
 * even with several processes on one file), MDB_WRITEMAP | MDB_NOSYNC with
 * an explicit flush every sync_ms: a commit is a few memory writes, a
 * crashed process loses nothing (the shared map is the page cache), a
 * crashed machine at most sync_ms of counting. With MDB_WRITEMAP the file
 * is sparse at the map size (ratelimit_state_max_size).
 * Values: struct cellv, native byte order (the file is local).
 */
#include "policyd/ratelimit/rl_store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/util.h"

#define SWEEP_EVERY_MS 60000
#define SWEEP_MAX 100000

struct cellv {
	double a, b, c;
	int64_t expires_ms;
};

struct lmdb_store {
	struct rl_store base;
	MDB_env *env;
	MDB_dbi dbi;
	long long sync_ms, last_sync_ms, last_sweep_ms;
	int dirty;
};

struct io_ctx {
	struct lmdb_store *s;
	MDB_txn *txn;
	long long now_ms;
	int rc;
};

static void io_get(void *arg, const char *key, struct rl_cell *out)
{
	struct io_ctx *x = arg;
	MDB_val k = { strlen(key), (void *)key }, v;

	memset(out, 0, sizeof(*out));
	if (x->rc)
		return;
	int rc = mdb_get(x->txn, x->s->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return;
	if (rc || v.mv_size != sizeof(struct cellv)) {
		x->rc = rc ? rc : MDB_CORRUPTED;
		return;
	}
	struct cellv cv;
	memcpy(&cv, v.mv_data, sizeof cv);
	if (cv.expires_ms <= x->now_ms)
		return;	/* expired: as good as absent */
	out->a = cv.a;
	out->b = cv.b;
	out->c = cv.c;
	out->expires_ms = cv.expires_ms;
	out->exists = 1;
}

static void io_put(void *arg, const char *key, const struct rl_cell *c)
{
	struct io_ctx *x = arg;
	struct cellv cv = { c->a, c->b, c->c, c->expires_ms };
	MDB_val k = { strlen(key), (void *)key }, v = { sizeof cv, &cv };

	if (x->rc)
		return;
	x->rc = mdb_put(x->txn, x->s->dbi, &k, &v, 0);
}

static void sweep(struct lmdb_store *s, long long now_ms);

/* apply - p in one write transaction; 0 or an LMDB error. */
static int apply(struct lmdb_store *s, struct rl_plan *p)
{
	struct io_ctx x = { s, NULL, p->now_ms, 0 };
	struct rl_cell_io io = { io_get, io_put, &x };

	x.rc = mdb_txn_begin(s->env, NULL, 0, &x.txn);
	if (x.rc)
		return x.rc;
	rl_plan_apply(p, &io);
	if (x.rc) {
		mdb_txn_abort(x.txn);
		return x.rc;
	}
	return mdb_txn_commit(x.txn);
}

static struct rl_store_job *lm_run(struct rl_store *base, struct rl_plan *p, rl_store_cb cb,
				   void *arg)
{
	struct lmdb_store *s = (struct lmdb_store *)base;
	int rc = apply(s, p);

	if (rc == MDB_MAP_FULL) {
		/* Full: drop what has expired now rather than at the next sweep, and retry once. */
		sweep(s, p->now_ms);
		rc = apply(s, p);
	}
	if (rc) {
		cb(arg, mdb_strerror(rc));
		return NULL;
	}
	s->dirty = 1;
	cb(arg, NULL);
	return NULL;
}

static void lm_cancel(struct rl_store_job *j)
{
	(void)j;
}

static void sweep(struct lmdb_store *s, long long now_ms)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int n = 0;

	if (mdb_txn_begin(s->env, NULL, 0, &txn))
		return;
	if (mdb_cursor_open(txn, s->dbi, &cur)) {
		mdb_txn_abort(txn);
		return;
	}
	int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0 && n < SWEEP_MAX) {
		struct cellv cv;
		if (v.mv_size == sizeof cv) {
			memcpy(&cv, v.mv_data, sizeof cv);
			if (cv.expires_ms <= now_ms && mdb_cursor_del(cur, 0) == 0)
				n++;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (mdb_txn_commit(txn) == 0 && n)
		s->dirty = 1;
}

static void lm_tick(struct rl_store *base, long long now_ms)
{
	struct lmdb_store *s = (struct lmdb_store *)base;

	if (now_ms - s->last_sweep_ms >= SWEEP_EVERY_MS) {
		s->last_sweep_ms = now_ms;
		sweep(s, now_ms);
	}
	if (s->dirty && now_ms - s->last_sync_ms >= s->sync_ms) {
		mdb_env_sync(s->env, 1);
		s->last_sync_ms = now_ms;
		s->dirty = 0;
	}
}

static void lm_free(struct rl_store *base)
{
	struct lmdb_store *s = (struct lmdb_store *)base;

	mdb_env_sync(s->env, 1);
	mdb_env_close(s->env);
	free(s);
}

static int lm_list(struct rl_store *base, const char *prefix, long long now_ms, rl_store_each_fn fn,
		   void *arg, char **err_out)
{
	struct lmdb_store *s = (struct lmdb_store *)base;
	MDB_txn *txn;
	MDB_cursor *cur;
	size_t plen = strlen(prefix);
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);

	if (rc || (rc = mdb_cursor_open(txn, s->dbi, &cur))) {
		if (txn && !rc)
			mdb_txn_abort(txn);
		*err_out = xasprintf("LMDB: %s", mdb_strerror(rc));
		return -1;
	}
	MDB_val k = { plen, (void *)prefix }, v;
	rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
	while (rc == 0 && k.mv_size >= plen && !memcmp(k.mv_data, prefix, plen)) {
		struct cellv cv;
		if (v.mv_size == sizeof cv) {
			memcpy(&cv, v.mv_data, sizeof cv);
			if (cv.expires_ms > now_ms) {
				struct rl_cell c = { cv.a, cv.b, cv.c, cv.expires_ms, 1 };
				char *key = xstrndup(k.mv_data, k.mv_size);
				fn(arg, key, &c);
				free(key);
			}
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return 0;
}

static int lm_reset(struct rl_store *base, const char *key, char **err_out)
{
	struct lmdb_store *s = (struct lmdb_store *)base;
	MDB_txn *txn;
	MDB_val k = { strlen(key), (void *)key };
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);

	if (!rc) {
		rc = mdb_del(txn, s->dbi, &k, NULL);
		if (rc && rc != MDB_NOTFOUND) {
			mdb_txn_abort(txn);
		} else {
			int found = rc == 0;
			rc = mdb_txn_commit(txn);
			if (!rc) {
				mdb_env_sync(s->env, 1);
				return found;
			}
		}
	}
	*err_out = xasprintf("LMDB: %s", mdb_strerror(rc));
	return -1;
}

static const struct rl_store_ops lmdb_ops = {
	lm_run, lm_cancel, lm_tick, lm_free, lm_list, lm_reset,
};

struct rl_store *rl_store_embedded_new(const char *path, long long map_bytes, long long sync_ms,
				       char **err_out)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	char *tmp = NULL;
	unsigned flags = MDB_NOSUBDIR | MDB_NOSYNC | MDB_WRITEMAP;
	int rc;

	if (!path || !*path) {
		const char *dir = getenv("TMPDIR");
		tmp = xasprintf("%s/sluice-ratelimit.XXXXXX", dir && *dir ? dir : "/tmp");
		int fd = mkstemp(tmp);
		if (fd < 0) {
			*err_out = xasprintf("%s: %s", tmp, strerror(errno));
			free(tmp);
			return NULL;
		}
		close(fd);
		flags |= MDB_NOLOCK;
		path = tmp;
	}
	if ((rc = mdb_env_create(&env))) {
		*err_out = xasprintf("LMDB: %s", mdb_strerror(rc));
		free(tmp);
		return NULL;
	}
	mdb_env_set_mapsize(env, (size_t)map_bytes);
	rc = mdb_env_open(env, path, flags, 0600);
	if (tmp) {
		unlink(tmp);
		char *lock = xasprintf("%s-lock", tmp);
		unlink(lock);
		free(lock);
	}
	if (!rc && !(rc = mdb_txn_begin(env, NULL, 0, &txn))) {
		rc = mdb_dbi_open(txn, NULL, 0, &dbi);
		if (rc)
			mdb_txn_abort(txn);
		else
			rc = mdb_txn_commit(txn);
	}
	if (rc) {
		*err_out = xasprintf("%s: %s", tmp ? "memory state" : path, mdb_strerror(rc));
		mdb_env_close(env);
		free(tmp);
		return NULL;
	}
	free(tmp);
	struct lmdb_store *s = xcalloc(1, sizeof(*s));
	s->base.ops = &lmdb_ops;
	s->env = env;
	s->dbi = dbi;
	s->sync_ms = sync_ms;
	return &s->base;
}
