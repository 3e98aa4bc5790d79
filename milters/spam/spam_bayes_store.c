/*
 * spam_bayes_store: LMDB and Redis backends of the Bayes counts.
 *
 * LMDB layout (named databases in one file):
 *   tok:  hash as a native uint64 (MDB_INTEGERKEY: integer compares)
 *         -> uint32 spam, ham, atime_s (host order)
 *   seen: 16-byte digest -> 1 byte class
 *   meta: "salt" -> 16 bytes; "nspam", "nham", "ntokens", "expire" -> 8 bytes
 * Redis layout (P = redis_prefix):
 *   P "t" <8-byte hash>  hash {s, h, t}
 *   P "m" <16-byte digest>  "s" | "h"
 *   P "n"  hash {spam, ham, tokens, expire}
 *   P "salt"  16 bytes
 */
#include "milters/spam/spam_bayes_store.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "lib/daemon.h"
#include "lib/util.h"

struct spam_bayes_store {
	int refs;	/* atomic */
	enum spam_bayes_backend backend;
	uint8_t salt[SPAM_BAYES_SALT_BYTES];
	/* lmdb */
	MDB_env *env;
	MDB_dbi tok, seen, meta;
	/* redis */
	char *host, *unix_path, *password, *prefix;
	int port, db, timeout_ms;
	pthread_mutex_t lock;
	redisContext **pool;
	size_t npool, cappool;
};

void spam_bayes_deltas(enum spam_bayes_class prev, enum spam_bayes_op op, int *dspam_out,
		       int *dham_out, enum spam_bayes_class *new_out)
{
	int ds = 0, dh = 0;
	enum spam_bayes_class nc = prev;

	switch (op) {
	case SPAM_BAYES_LEARN_SPAM:
		if (prev != SPAM_BAYES_SPAM) {
			ds = 1;
			dh = prev == SPAM_BAYES_HAM ? -1 : 0;
			nc = SPAM_BAYES_SPAM;
		}
		break;
	case SPAM_BAYES_LEARN_HAM:
		if (prev != SPAM_BAYES_HAM) {
			dh = 1;
			ds = prev == SPAM_BAYES_SPAM ? -1 : 0;
			nc = SPAM_BAYES_HAM;
		}
		break;
	case SPAM_BAYES_FORGET:
		ds = prev == SPAM_BAYES_SPAM ? -1 : 0;
		dh = prev == SPAM_BAYES_HAM ? -1 : 0;
		nc = SPAM_BAYES_NONE;
		break;
	}
	*dspam_out = ds;
	*dham_out = dh;
	*new_out = nc;
}

static uint32_t clamp_add(uint32_t v, int d)
{
	if (d < 0 && v < (uint32_t)-d)
		return 0;
	if (d > 0 && v > UINT32_MAX - (uint32_t)d)
		return UINT32_MAX;
	return v + d;
}

static void key_be(uint64_t h, unsigned char out[8])
{
	for (int i = 7; i >= 0; i--, h >>= 8)
		out[i] = h & 0xff;
}

static uint64_t key_from_be(const unsigned char *p)
{
	uint64_t h = 0;
	for (int i = 0; i < 8; i++)
		h = h << 8 | p[i];
	return h;
}

static int fill_random(uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

/* ---------------------------------------------------------------- LMDB */

static int lm_err(int rc, char **err_out)
{
	if (rc == MDB_MAP_FULL)
		*err_out = xasprintf("LMDB: %s (raise spam_bayes_db_max_size or lower spam_bayes_max_tokens)",
				     mdb_strerror(rc));
	else
		*err_out = xasprintf("LMDB: %s", mdb_strerror(rc));
	return -1;
}

/*
 * lm_begin - a transaction; when another process grew the map
 * (spam_bayes_db_max_size raised there), adopt its size and retry.
 */
static int lm_begin(struct spam_bayes_store *s, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(s->env, NULL, flags, txn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(s->env, 0);
		rc = mdb_txn_begin(s->env, NULL, flags, txn);
	}
	return rc;
}

static uint64_t lm_meta_u64(struct spam_bayes_store *s, MDB_txn *txn, const char *name)
{
	MDB_val k = { strlen(name), (void *)name }, v;
	uint64_t x = 0;
	if (!mdb_get(txn, s->meta, &k, &v) && v.mv_size == sizeof x)
		memcpy(&x, v.mv_data, sizeof x);
	return x;
}

static int lm_meta_put(struct spam_bayes_store *s, MDB_txn *txn, const char *name, uint64_t x)
{
	MDB_val k = { strlen(name), (void *)name }, v = { sizeof x, &x };
	return mdb_put(txn, s->meta, &k, &v, 0);
}

static void lm_totals(struct spam_bayes_store *s, MDB_txn *txn, struct spam_bayes_totals *t)
{
	t->nspam = lm_meta_u64(s, txn, "nspam");
	t->nham = lm_meta_u64(s, txn, "nham");
	t->ntokens = lm_meta_u64(s, txn, "ntokens");
	t->last_expire_s = (int64_t)lm_meta_u64(s, txn, "expire");
}

static int lm_get_tok(struct spam_bayes_store *s, MDB_txn *txn, uint64_t h,
		      struct spam_bayes_counts *c)
{
	uint32_t w[3];
	MDB_val k = { sizeof h, &h }, v;
	int rc = mdb_get(txn, s->tok, &k, &v);
	if (rc == 0 && v.mv_size == sizeof w) {
		memcpy(w, v.mv_data, sizeof w);
		c->spam = w[0], c->ham = w[1], c->atime_s = w[2];
		return 1;
	}
	memset(c, 0, sizeof *c);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : -rc;
}

static int lm_put_tok(struct spam_bayes_store *s, MDB_txn *txn, uint64_t h,
		      const struct spam_bayes_counts *c)
{
	uint32_t w[3] = { c->spam, c->ham, c->atime_s };
	MDB_val k = { sizeof h, &h }, v = { sizeof w, w };
	return mdb_put(txn, s->tok, &k, &v, 0);
}

static int lm_del_tok(struct spam_bayes_store *s, MDB_txn *txn, uint64_t h)
{
	MDB_val k = { sizeof h, &h };
	return mdb_del(txn, s->tok, &k, NULL);
}

static int lm_open(struct spam_bayes_store *s, const struct spam_bayes_store_opts *o, char **err_out)
{
	MDB_txn *txn;
	int rc;

	if (!o->db_path || !*o->db_path) {
		*err_out = xstrdup("spam_bayes_db: empty path");
		return -1;
	}
	if ((rc = mdb_env_create(&s->env)))
		return lm_err(rc, err_out);
	mdb_env_set_maxdbs(s->env, 4);
	mdb_env_set_mapsize(s->env, o->db_max_bytes ? o->db_max_bytes : (size_t)256 << 20);
	/* no MDB_WRITEMAP: it learns about twice as fast, but with MDB_NOSYNC a
	 * crash of the machine could then corrupt months of learning */
	rc = mdb_env_open(s->env, o->db_path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600);
	if (rc) {
		*err_out = xasprintf("%s: %s", o->db_path, mdb_strerror(rc));
		return -1;
	}
	if ((rc = lm_begin(s, 0, &txn)))
		return lm_err(rc, err_out);
	if ((rc = mdb_dbi_open(txn, "tok", MDB_CREATE | MDB_INTEGERKEY, &s->tok)) ||
	    (rc = mdb_dbi_open(txn, "seen", MDB_CREATE, &s->seen)) ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta))) {
		mdb_txn_abort(txn);
		return lm_err(rc, err_out);
	}
	MDB_val k = { 4, "salt" }, v;
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == 0 && v.mv_size == SPAM_BAYES_SALT_BYTES) {
		memcpy(s->salt, v.mv_data, SPAM_BAYES_SALT_BYTES);
		/* commit, not abort: the handles opened in an aborted transaction close */
		if ((rc = mdb_txn_commit(txn)))
			return lm_err(rc, err_out);
		return 0;
	}
	if (o->new_salt)
		memcpy(s->salt, o->new_salt, SPAM_BAYES_SALT_BYTES);
	else if (fill_random(s->salt, sizeof s->salt) < 0) {
		mdb_txn_abort(txn);
		*err_out = xasprintf("getrandom: %s", strerror(errno));
		return -1;
	}
	v.mv_size = SPAM_BAYES_SALT_BYTES;
	v.mv_data = s->salt;
	if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) || (rc = mdb_txn_commit(txn))) {
		if (rc != 0)
			mdb_txn_abort(txn);
		return lm_err(rc, err_out);
	}
	mdb_env_sync(s->env, 1);
	return 0;
}

static int lm_lookup(struct spam_bayes_store *s, const uint64_t *h, size_t n,
		     struct spam_bayes_counts *counts_out, struct spam_bayes_totals *totals_out,
		     char **err_out)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	int rc = lm_begin(s, MDB_RDONLY, &txn);
	if (rc)
		return lm_err(rc, err_out);
	/* one cursor: LMDB looks on its current page first, and callers pass
	 * the hashes sorted, so neighbours are often found without a descent */
	if (n && (rc = mdb_cursor_open(txn, s->tok, &cur))) {
		mdb_txn_abort(txn);
		return lm_err(rc, err_out);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t key = h[i];
		uint32_t w[3];
		MDB_val k = { sizeof key, &key }, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
		if (rc == 0 && v.mv_size == sizeof w) {
			memcpy(w, v.mv_data, sizeof w);
			counts_out[i].spam = w[0], counts_out[i].ham = w[1], counts_out[i].atime_s = w[2];
		} else if (rc == 0 || rc == MDB_NOTFOUND) {
			memset(&counts_out[i], 0, sizeof counts_out[i]);
		} else {
			mdb_cursor_close(cur);
			mdb_txn_abort(txn);
			return lm_err(rc, err_out);
		}
	}
	if (cur)
		mdb_cursor_close(cur);
	if (totals_out)
		lm_totals(s, txn, totals_out);
	mdb_txn_abort(txn);
	return 0;
}

static int lm_seen(struct spam_bayes_store *s, MDB_txn *txn, const uint8_t *digest,
		   enum spam_bayes_class *c)
{
	MDB_val k = { SPAM_BAYES_DIGEST_BYTES, (void *)digest }, v;
	int rc = mdb_get(txn, s->seen, &k, &v);
	*c = SPAM_BAYES_NONE;
	if (rc == 0 && v.mv_size == 1 && (*(char *)v.mv_data == 's' || *(char *)v.mv_data == 'h'))
		*c = *(char *)v.mv_data == 's' ? SPAM_BAYES_SPAM : SPAM_BAYES_HAM;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int lm_learn(struct spam_bayes_store *s, const uint8_t *digest, enum spam_bayes_op op,
		    const uint64_t *h, size_t n, uint32_t now_s, enum spam_bayes_class *prev_out,
		    char **err_out)
{
	MDB_txn *txn;
	enum spam_bayes_class prev, nc;
	int ds, dh, rc;

	if ((rc = lm_begin(s, 0, &txn)))
		return lm_err(rc, err_out);
	if ((rc = lm_seen(s, txn, digest, &prev)))
		goto fail;
	*prev_out = prev;
	spam_bayes_deltas(prev, op, &ds, &dh, &nc);
	if (!ds && !dh) {
		mdb_txn_abort(txn);
		return 0;
	}
	long long created = 0, removed = 0;
	MDB_cursor *cur;
	if ((rc = mdb_cursor_open(txn, s->tok, &cur)))
		goto fail;
	/* one cursor over the sorted hashes: find, then update in place */
	for (size_t i = 0; i < n; i++) {
		uint64_t key = h[i];
		uint32_t w[3] = { 0, 0, 0 };
		MDB_val k = { sizeof key, &key }, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
		int existed = rc == 0;
		if (rc && rc != MDB_NOTFOUND)
			break;
		if (existed && v.mv_size == sizeof w)
			memcpy(w, v.mv_data, sizeof w);
		w[0] = clamp_add(w[0], ds);
		w[1] = clamp_add(w[1], dh);
		if (ds > 0 || dh > 0)
			w[2] = now_s;
		rc = 0;
		if (!w[0] && !w[1]) {
			if (existed) {
				if ((rc = mdb_cursor_del(cur, 0)))
					break;
				removed++;
			}
			continue;
		}
		MDB_val nv = { sizeof w, w };
		k.mv_size = sizeof key;
		k.mv_data = &key;
		if ((rc = mdb_cursor_put(cur, &k, &nv, existed ? MDB_CURRENT : 0)))
			break;
		created += !existed;
	}
	mdb_cursor_close(cur);
	if (rc)
		goto fail;
	struct spam_bayes_totals t;
	lm_totals(s, txn, &t);
	uint64_t ntok = (long long)t.ntokens + created - removed < 0 ? 0 : t.ntokens + created - removed;
	if ((rc = lm_meta_put(s, txn, "nspam", ds < 0 && !t.nspam ? 0 : t.nspam + ds)) ||
	    (rc = lm_meta_put(s, txn, "nham", dh < 0 && !t.nham ? 0 : t.nham + dh)) ||
	    (rc = lm_meta_put(s, txn, "ntokens", ntok)))
		goto fail;
	MDB_val k = { SPAM_BAYES_DIGEST_BYTES, (void *)digest };
	if (nc == SPAM_BAYES_NONE) {
		rc = mdb_del(txn, s->seen, &k, NULL);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	} else {
		char cv = nc == SPAM_BAYES_SPAM ? 's' : 'h';
		MDB_val v = { 1, &cv };
		rc = mdb_put(txn, s->seen, &k, &v, 0);
	}
	if (rc)
		goto fail;
	if ((rc = mdb_txn_commit(txn)))
		return lm_err(rc, err_out);
	return 1;
fail:
	mdb_txn_abort(txn);
	return lm_err(rc, err_out);
}

static int lm_touch(struct spam_bayes_store *s, const uint64_t *h, size_t n, uint32_t now_s,
		    char **err_out)
{
	MDB_txn *txn;
	int rc;
	if ((rc = lm_begin(s, 0, &txn)))
		return lm_err(rc, err_out);
	for (size_t i = 0; i < n; i++) {
		struct spam_bayes_counts c;
		int got = lm_get_tok(s, txn, h[i], &c);
		if (got < 0) {
			rc = -got;
			goto fail;
		}
		if (got && c.atime_s != now_s) {
			c.atime_s = now_s;
			if ((rc = lm_put_tok(s, txn, h[i], &c)))
				goto fail;
		}
	}
	if ((rc = mdb_txn_commit(txn)))
		return lm_err(rc, err_out);
	return 0;
fail:
	mdb_txn_abort(txn);
	return lm_err(rc, err_out);
}

static int lm_scan(struct spam_bayes_store *s, spam_bayes_store_each_fn fn, void *arg,
		   char **err_out)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = lm_begin(s, MDB_RDONLY, &txn);
	if (rc)
		return lm_err(rc, err_out);
	if ((rc = mdb_cursor_open(txn, s->tok, &cur))) {
		mdb_txn_abort(txn);
		return lm_err(rc, err_out);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint32_t w[3];
		uint64_t h;
		if (k.mv_size != sizeof h || v.mv_size != sizeof w)
			continue;
		memcpy(w, v.mv_data, sizeof w);
		memcpy(&h, k.mv_data, sizeof h);
		struct spam_bayes_counts c = { w[0], w[1], w[2] };
		if (fn(arg, h, &c))
			break;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc && rc != MDB_NOTFOUND)
		return lm_err(rc, err_out);
	return 0;
}

static int lm_delete(struct spam_bayes_store *s, const uint64_t *h, size_t n, int64_t now_s,
		     char **err_out)
{
	MDB_txn *txn;
	int rc;
	uint64_t removed = 0;
	if ((rc = lm_begin(s, 0, &txn)))
		return lm_err(rc, err_out);
	for (size_t i = 0; i < n; i++) {
		rc = lm_del_tok(s, txn, h[i]);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			goto fail;
		removed++;
	}
	uint64_t nt = lm_meta_u64(s, txn, "ntokens");
	if ((rc = lm_meta_put(s, txn, "ntokens", nt > removed ? nt - removed : 0)) ||
	    (rc = lm_meta_put(s, txn, "expire", (uint64_t)now_s)))
		goto fail;
	if ((rc = mdb_txn_commit(txn)))
		return lm_err(rc, err_out);
	mdb_env_sync(s->env, 1);
	return 0;
fail:
	mdb_txn_abort(txn);
	return lm_err(rc, err_out);
}

/* --------------------------------------------------------------- Redis */

/* Keep in step with spam_bayes_deltas() and lm_learn(). */
static const char rd_learn_lua[] =
	"local prev = redis.call('GET', KEYS[1])\n"
	"if prev ~= 's' and prev ~= 'h' then prev = '' end\n"
	"local op = ARGV[1]\n"
	"local ds, dh, nc = 0, 0, prev\n"
	"if op == 'f' then\n"
	"  if prev == 's' then ds = -1 elseif prev == 'h' then dh = -1 end\n"
	"  nc = ''\n"
	"elseif op ~= prev then\n"
	"  if op == 's' then ds = 1; if prev == 'h' then dh = -1 end\n"
	"  else dh = 1; if prev == 's' then ds = -1 end end\n"
	"  nc = op\n"
	"end\n"
	"if ds == 0 and dh == 0 then return {prev, 0} end\n"
	"local created, removed = 0, 0\n"
	"for i = 3, #KEYS do\n"
	"  local k = KEYS[i]\n"
	"  local v = redis.call('HMGET', k, 's', 'h')\n"
	"  local existed = v[1] or v[2]\n"
	"  local s = math.max(0, ((v[1] and tonumber(v[1])) or 0) + ds)\n"
	"  local h = math.max(0, ((v[2] and tonumber(v[2])) or 0) + dh)\n"
	"  if s == 0 and h == 0 then\n"
	"    if redis.call('DEL', k) == 1 and existed then removed = removed + 1 end\n"
	"  else\n"
	"    if not existed then created = created + 1 end\n"
	"    if ds > 0 or dh > 0 then redis.call('HSET', k, 's', s, 'h', h, 't', ARGV[2])\n"
	"    else redis.call('HSET', k, 's', s, 'h', h) end\n"
	"  end\n"
	"end\n"
	"local t = redis.call('HMGET', KEYS[2], 'spam', 'ham', 'tokens')\n"
	"local ns = math.max(0, ((t[1] and tonumber(t[1])) or 0) + ds)\n"
	"local nh = math.max(0, ((t[2] and tonumber(t[2])) or 0) + dh)\n"
	"local nt = math.max(0, ((t[3] and tonumber(t[3])) or 0) + created - removed)\n"
	"redis.call('HSET', KEYS[2], 'spam', ns, 'ham', nh, 'tokens', nt)\n"
	"if nc == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], nc) end\n"
	"return {prev, 1}\n";

static const char rd_touch_lua[] =
	"for i = 1, #KEYS do\n"
	"  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HSET', KEYS[i], 't', ARGV[1]) end\n"
	"end\n"
	"return 0\n";

/* A key: prefix + tag + bin bytes, in buf (caller's, >= plen + 1 + 16). */
static size_t rd_key(const struct spam_bayes_store *s, char *buf, char tag, const void *bin, size_t n)
{
	size_t pl = strlen(s->prefix);
	memcpy(buf, s->prefix, pl);
	buf[pl] = tag;
	if (n)
		memcpy(buf + pl + 1, bin, n);
	return pl + 1 + n;
}

static int rd_reply_err(redisContext *c, redisReply *r, const char *what, char **err_out)
{
	if (!r)
		*err_out = xasprintf("redis: %s: %s", what, c->errstr[0] ? c->errstr : "no reply");
	else
		*err_out = xasprintf("redis: %s: %s", what, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	return -1;
}

static redisContext *rd_connect(struct spam_bayes_store *s, char **err_out)
{
	struct timeval tv = { s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000 };
	redisContext *c = s->unix_path ? redisConnectUnixWithTimeout(s->unix_path, tv)
				       : redisConnectWithTimeout(s->host, s->port, tv);
	redisReply *r;

	if (!c || c->err) {
		*err_out = xasprintf("redis: connect %s: %s", s->unix_path ? s->unix_path : s->host,
				     c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (*s->password) {
		r = redisCommand(c, "AUTH %s", s->password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			rd_reply_err(c, r, "AUTH", err_out);
			goto fail;
		}
		freeReplyObject(r);
	}
	if (s->db) {
		r = redisCommand(c, "SELECT %d", s->db);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			rd_reply_err(c, r, "SELECT", err_out);
			goto fail;
		}
		freeReplyObject(r);
	}
	return c;
fail:
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return NULL;
}

static redisContext *rd_get(struct spam_bayes_store *s, char **err_out)
{
	redisContext *c = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->npool)
		c = s->pool[--s->npool];
	pthread_mutex_unlock(&s->lock);
	return c ? c : rd_connect(s, err_out);
}

/*
 * rd_put - back to the pool after success (returns 0); closed after an
 * error: -2 when the connection itself broke (the pooled ones are dropped
 * too: a restarted or failed-over server broke them all, and the caller
 * retries once on a new one), else -1.
 */
static int rd_put(struct spam_bayes_store *s, redisContext *c, int ok)
{
	if (!ok || c->err) {
		int broken = c->err != 0;
		redisFree(c);
		if (!ok && broken) {
			pthread_mutex_lock(&s->lock);
			for (size_t i = 0; i < s->npool; i++)
				redisFree(s->pool[i]);
			s->npool = 0;
			pthread_mutex_unlock(&s->lock);
		}
		return ok ? 0 : broken ? -2 : -1;
	}
	pthread_mutex_lock(&s->lock);
	if (s->npool == s->cappool) {
		s->cappool = s->cappool ? 2 * s->cappool : 8;
		s->pool = xrealloc(s->pool, s->cappool * sizeof *s->pool);
	}
	s->pool[s->npool++] = c;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int64_t rd_int(const redisReply *r)
{
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return strtoll(r->str, NULL, 10);
	return 0;
}

static void rd_fill_totals(const redisReply *r, struct spam_bayes_totals *t)
{
	int64_t v[4] = { 0, 0, 0, 0 };
	for (size_t i = 0; i < 4 && i < r->elements; i++)
		v[i] = rd_int(r->element[i]);
	t->nspam = v[0] < 0 ? 0 : v[0];
	t->nham = v[1] < 0 ? 0 : v[1];
	t->ntokens = v[2] < 0 ? 0 : v[2];
	t->last_expire_s = v[3];
}

static int rd_salt(struct spam_bayes_store *s, const uint8_t *new_salt, char **err_out)
{
	char key[1024];
	uint8_t fresh[SPAM_BAYES_SALT_BYTES];
	redisContext *c = rd_get(s, err_out);
	redisReply *r;
	int ok = 0;

	if (!c)
		return -1;
	if (new_salt)
		memcpy(fresh, new_salt, sizeof fresh);
	else if (fill_random(fresh, sizeof fresh) < 0) {
		*err_out = xasprintf("getrandom: %s", strerror(errno));
		rd_put(s, c, 1);
		return -1;
	}
	size_t kl = rd_key(s, key, 's', "alt", 3);
	r = redisCommand(c, "SET %b %b NX", key, kl, fresh, sizeof fresh);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		rd_reply_err(c, r, "SET salt", err_out);
		goto out;
	}
	freeReplyObject(r);
	r = redisCommand(c, "GET %b", key, kl);
	if (!r || r->type != REDIS_REPLY_STRING || r->len != SPAM_BAYES_SALT_BYTES) {
		rd_reply_err(c, r, "GET salt", err_out);
		goto out;
	}
	memcpy(s->salt, r->str, SPAM_BAYES_SALT_BYTES);
	ok = 1;
out:
	if (r)
		freeReplyObject(r);
	return rd_put(s, c, ok);
}

static int rd_open(struct spam_bayes_store *s, const struct spam_bayes_store_opts *o, char **err_out)
{
	const char *spec = o->redis_server ? o->redis_server : "";

	if (!strncmp(spec, "unix:", 5)) {
		s->unix_path = xstrdup(spec + 5);
	} else {
		char host[256], port[32];
		if (listen_parse_hostport(spec, host, sizeof host, port, sizeof port) < 0 || !*host ||
		    atoi(port) <= 0 || atoi(port) > 65535) {
			*err_out = xasprintf("spam_redis_server %s: expected host:port or unix:/path", spec);
			return -1;
		}
		s->host = xstrdup(host);
		s->port = atoi(port);
	}
	s->password = xstrdup(o->redis_password ? o->redis_password : "");
	s->prefix = xstrdup(o->redis_prefix ? o->redis_prefix : "sluice:bayes:");
	if (strlen(s->prefix) > 900) {
		*err_out = xstrdup("spam_redis_prefix: too long");
		return -1;
	}
	s->db = o->redis_db;
	s->timeout_ms = o->redis_timeout_ms > 0 ? o->redis_timeout_ms : 1000;
	return rd_salt(s, o->new_salt, err_out);
}

/* Token keys for h[0..n): argv[base + i] (strings in one block, caller frees). */
static char *rd_token_keys(const struct spam_bayes_store *s, const uint64_t *h, size_t n,
			   const char **argv, size_t *argvlen)
{
	size_t kl = strlen(s->prefix) + 9;
	char *block = xmalloc(n * kl + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char kb[8];
		key_be(h[i], kb);
		rd_key(s, block + i * kl, 't', kb, 8);
		argv[i] = block + i * kl;
		argvlen[i] = kl;
	}
	return block;
}

static void rd_append_totals(const struct spam_bayes_store *s, redisContext *c)
{
	char key[1024];
	size_t kl = rd_key(s, key, 'n', NULL, 0);
	redisAppendCommand(c, "HMGET %b spam ham tokens expire", key, kl);
}

static int rd_totals(struct spam_bayes_store *s, struct spam_bayes_totals *out, char **err_out)
{
	redisContext *c = rd_get(s, err_out);
	redisReply *r = NULL;
	if (!c)
		return -1;
	rd_append_totals(s, c);
	if (redisGetReply(c, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_ARRAY) {
		rd_reply_err(c, r, "HMGET totals", err_out);
		if (r)
			freeReplyObject(r);
		return rd_put(s, c, 0);
	}
	rd_fill_totals(r, out);
	freeReplyObject(r);
	rd_put(s, c, 1);
	return 0;
}

static int rd_lookup(struct spam_bayes_store *s, const uint64_t *h, size_t n,
		     struct spam_bayes_counts *counts_out, struct spam_bayes_totals *totals_out,
		     char **err_out)
{
	redisContext *c = rd_get(s, err_out);
	if (!c)
		return -1;
	const char **keys = xmalloc((n + 1) * sizeof *keys);
	size_t *klen = xmalloc((n + 1) * sizeof *klen);
	char *block = rd_token_keys(s, h, n, keys, klen);
	for (size_t i = 0; i < n; i++) {
		const char *argv[5] = { "HMGET", keys[i], "s", "h", "t" };
		size_t argl[5] = { 5, klen[i], 1, 1, 1 };
		redisAppendCommandArgv(c, 5, argv, argl);
	}
	rd_append_totals(s, c);
	int ok = 1;
	for (size_t i = 0; i <= n; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK) {
			if (ok)
				rd_reply_err(c, NULL, "HMGET", err_out);
			ok = 0;
			break;
		}
		if (r->type != REDIS_REPLY_ARRAY) {
			if (ok)
				rd_reply_err(c, r, "HMGET", err_out);
			ok = 0;
		} else if (i < n) {
			int64_t sp = r->elements > 0 ? rd_int(r->element[0]) : 0;
			int64_t hm = r->elements > 1 ? rd_int(r->element[1]) : 0;
			int64_t at = r->elements > 2 ? rd_int(r->element[2]) : 0;
			counts_out[i].spam = sp < 0 ? 0 : sp > UINT32_MAX ? UINT32_MAX : sp;
			counts_out[i].ham = hm < 0 ? 0 : hm > UINT32_MAX ? UINT32_MAX : hm;
			counts_out[i].atime_s = at < 0 ? 0 : at > UINT32_MAX ? UINT32_MAX : at;
		} else if (totals_out) {
			rd_fill_totals(r, totals_out);
		}
		freeReplyObject(r);
	}
	free(block);
	free(keys);
	free(klen);
	return rd_put(s, c, ok);
}

/* rd_eval - EVAL script with keys (2 fixed + n token keys) and args; reply or NULL. */
static redisReply *rd_eval(struct spam_bayes_store *s, redisContext *c, const char *script,
			   const char *k1, size_t k1l, const char *k2, size_t k2l,
			   const uint64_t *h, size_t n, const char *a1, const char *a2)
{
	size_t fixed = !!k1 + !!k2;
	size_t argc = 3 + fixed + n + !!a1 + !!a2;
	const char **argv = xmalloc(argc * sizeof *argv);
	size_t *argl = xmalloc(argc * sizeof *argl);
	char nk[32];
	size_t i = 0;

	snprintf(nk, sizeof nk, "%zu", fixed + n);
	argv[i] = "EVAL", argl[i++] = 4;
	argv[i] = script, argl[i++] = strlen(script);
	argv[i] = nk, argl[i++] = strlen(nk);
	if (k1)
		argv[i] = k1, argl[i++] = k1l;
	if (k2)
		argv[i] = k2, argl[i++] = k2l;
	char *block = rd_token_keys(s, h, n, argv + i, argl + i);
	i += n;
	if (a1)
		argv[i] = a1, argl[i++] = strlen(a1);
	if (a2)
		argv[i] = a2, argl[i++] = strlen(a2);
	redisReply *r = redisCommandArgv(c, (int)argc, argv, argl);
	free(block);
	free(argv);
	free(argl);
	return r;
}

static int rd_learn(struct spam_bayes_store *s, const uint8_t *digest, enum spam_bayes_op op,
		    const uint64_t *h, size_t n, uint32_t now_s, enum spam_bayes_class *prev_out,
		    char **err_out)
{
	char mkey[1024], nkey[1024], now[24];
	size_t ml = rd_key(s, mkey, 'm', digest, SPAM_BAYES_DIGEST_BYTES);
	size_t nl = rd_key(s, nkey, 'n', NULL, 0);
	const char *ops = op == SPAM_BAYES_LEARN_SPAM ? "s" : op == SPAM_BAYES_LEARN_HAM ? "h" : "f";
	redisContext *c = rd_get(s, err_out);
	if (!c)
		return -1;
	snprintf(now, sizeof now, "%u", now_s);
	redisReply *r = rd_eval(s, c, rd_learn_lua, mkey, ml, nkey, nl, h, n, ops, now);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		rd_reply_err(c, r, "learn script", err_out);
		if (r)
			freeReplyObject(r);
		return rd_put(s, c, 0);
	}
	const char *p = r->element[0]->str;
	*prev_out = *p == 's' ? SPAM_BAYES_SPAM : *p == 'h' ? SPAM_BAYES_HAM : SPAM_BAYES_NONE;
	int changed = rd_int(r->element[1]) != 0;
	freeReplyObject(r);
	rd_put(s, c, 1);
	return changed;
}

static int rd_seen(struct spam_bayes_store *s, const uint8_t *digest, enum spam_bayes_class *out,
		   char **err_out)
{
	char key[1024];
	size_t kl = rd_key(s, key, 'm', digest, SPAM_BAYES_DIGEST_BYTES);
	redisContext *c = rd_get(s, err_out);
	if (!c)
		return -1;
	redisReply *r = redisCommand(c, "GET %b", key, kl);
	if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
		rd_reply_err(c, r, "GET", err_out);
		if (r)
			freeReplyObject(r);
		return rd_put(s, c, 0);
	}
	*out = SPAM_BAYES_NONE;
	if (r->type == REDIS_REPLY_STRING && r->len == 1)
		*out = *r->str == 's' ? SPAM_BAYES_SPAM : *r->str == 'h' ? SPAM_BAYES_HAM : SPAM_BAYES_NONE;
	freeReplyObject(r);
	rd_put(s, c, 1);
	return 0;
}

static int rd_touch(struct spam_bayes_store *s, const uint64_t *h, size_t n, uint32_t now_s,
		    char **err_out)
{
	char now[24];
	if (!n)
		return 0;
	redisContext *c = rd_get(s, err_out);
	if (!c)
		return -1;
	snprintf(now, sizeof now, "%u", now_s);
	redisReply *r = rd_eval(s, c, rd_touch_lua, NULL, 0, NULL, 0, h, n, now, NULL);
	int ok = r && r->type != REDIS_REPLY_ERROR;
	if (!ok)
		rd_reply_err(c, r, "touch script", err_out);
	if (r)
		freeReplyObject(r);
	return rd_put(s, c, ok);
}

/* The MATCH pattern for token keys: the prefix with glob characters escaped, then "t*". */
static char *rd_token_pattern(const struct spam_bayes_store *s)
{
	struct sbuf b;
	sbuf_init(&b);
	for (const char *p = s->prefix; *p; p++) {
		if (strchr("*?[]\\", *p))
			sbuf_addc(&b, '\\');
		sbuf_addc(&b, *p);
	}
	sbuf_adds(&b, "t*");
	return sbuf_steal(&b);
}

static int rd_scan(struct spam_bayes_store *s, spam_bayes_store_each_fn fn, void *arg,
		   char **err_out)
{
	redisContext *c = rd_get(s, err_out);
	if (!c)
		return -1;
	char *pat = rd_token_pattern(s);
	char cursor[32] = "0";
	size_t want = strlen(s->prefix) + 9;
	int ok = 1, stop = 0;
	do {
		redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pat);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
			rd_reply_err(c, r, "SCAN", err_out);
			if (r)
				freeReplyObject(r);
			ok = 0;
			break;
		}
		snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
		redisReply *keys = r->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			redisReply *k = keys->element[i];
			if (k->type != REDIS_REPLY_STRING || k->len != want)
				continue;
			const char *argv[5] = { "HMGET", k->str, "s", "h", "t" };
			size_t argl[5] = { 5, k->len, 1, 1, 1 };
			redisAppendCommandArgv(c, 5, argv, argl);
		}
		for (size_t i = 0; i < keys->elements && ok; i++) {
			redisReply *k = keys->element[i], *v = NULL;
			if (k->type != REDIS_REPLY_STRING || k->len != want)
				continue;
			if (redisGetReply(c, (void **)&v) != REDIS_OK || v->type != REDIS_REPLY_ARRAY ||
			    v->elements != 3) {
				rd_reply_err(c, v, "HMGET", err_out);
				ok = 0;
			} else if (!stop && v->element[0]->type != REDIS_REPLY_NIL) {
				struct spam_bayes_counts cn;
				cn.spam = rd_int(v->element[0]);
				cn.ham = rd_int(v->element[1]);
				cn.atime_s = rd_int(v->element[2]);
				stop = fn(arg, key_from_be((const unsigned char *)k->str + want - 8), &cn);
			}
			if (v)
				freeReplyObject(v);
		}
		freeReplyObject(r);
	} while (ok && !stop && strcmp(cursor, "0"));
	free(pat);
	return rd_put(s, c, ok);
}

static int rd_delete(struct spam_bayes_store *s, const uint64_t *h, size_t n, int64_t now_s,
		     char **err_out)
{
	redisContext *c = rd_get(s, err_out);
	if (!c)
		return -1;
	const size_t batch = 1000;
	int ok = 1;
	long long removed = 0;
	for (size_t off = 0; off < n && ok; off += batch) {
		size_t m = n - off < batch ? n - off : batch;
		const char **argv = xmalloc((m + 1) * sizeof *argv);
		size_t *argl = xmalloc((m + 1) * sizeof *argl);
		argv[0] = "DEL", argl[0] = 3;
		char *block = rd_token_keys(s, h + off, m, argv + 1, argl + 1);
		redisReply *r = redisCommandArgv(c, (int)m + 1, argv, argl);
		if (!r || r->type != REDIS_REPLY_INTEGER) {
			rd_reply_err(c, r, "DEL", err_out);
			ok = 0;
		} else {
			removed += r->integer;
		}
		if (r)
			freeReplyObject(r);
		free(block);
		free(argv);
		free(argl);
	}
	if (ok) {
		char key[1024];
		size_t kl = rd_key(s, key, 'n', NULL, 0);
		redisReply *r = redisCommand(c, "HINCRBY %b tokens %lld", key, kl, -removed);
		if (!r || r->type != REDIS_REPLY_INTEGER) {
			ok = 0;
			rd_reply_err(c, r, "HINCRBY", err_out);
		} else if (r->integer < 0) {
			freeReplyObject(r);
			r = redisCommand(c, "HSET %b tokens 0", key, kl);
		}
		if (r)
			freeReplyObject(r);
		if (ok) {
			r = redisCommand(c, "HSET %b expire %lld", key, kl, (long long)now_s);
			if (!r || r->type == REDIS_REPLY_ERROR) {
				ok = 0;
				rd_reply_err(c, r, "HSET", err_out);
			}
			if (r)
				freeReplyObject(r);
		}
	}
	return rd_put(s, c, ok);
}

/* ---------------------------------------------------------- interface */

/*
 * RD_RETRY - run a Redis operation; when its connection broke (-2), once
 * more on a new one: every operation may run twice (learning is recorded
 * by digest, so a learn step that did run is "already" the second time).
 */
#define RD_RETRY(call) do { \
	int rc_ = (call); \
	if (rc_ == -2) { \
		free(*err_out); \
		*err_out = NULL; \
		rc_ = (call); \
	} \
	return rc_ < 0 ? -1 : rc_; \
} while (0)

struct spam_bayes_store *spam_bayes_store_open(const struct spam_bayes_store_opts *o,
					       char **err_out)
{
	struct spam_bayes_store *s = xcalloc(1, sizeof *s);
	int rc;

	s->refs = 1;
	s->backend = o->backend;
	pthread_mutex_init(&s->lock, NULL);
	rc = s->backend == SPAM_BAYES_REDIS ? rd_open(s, o, err_out) : lm_open(s, o, err_out);
	if (rc < 0)
		spam_bayes_store_close(&s);
	return s;
}

void spam_bayes_store_close(struct spam_bayes_store **sp)
{
	struct spam_bayes_store *s = *sp;
	if (!s)
		return;
	*sp = NULL;
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	if (s->env) {
		mdb_env_sync(s->env, 1);
		mdb_env_close(s->env);
	}
	for (size_t i = 0; i < s->npool; i++)
		redisFree(s->pool[i]);
	free(s->pool);
	free(s->host);
	free(s->unix_path);
	free(s->password);
	free(s->prefix);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct spam_bayes_store *spam_bayes_store_ref(struct spam_bayes_store *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	return s;
}

void spam_bayes_store_salt(const struct spam_bayes_store *s, uint8_t salt_out[SPAM_BAYES_SALT_BYTES])
{
	memcpy(salt_out, s->salt, SPAM_BAYES_SALT_BYTES);
}

int spam_bayes_store_totals(struct spam_bayes_store *s, struct spam_bayes_totals *out,
			    char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		RD_RETRY(rd_totals(s, out, err_out));
	return lm_lookup(s, NULL, 0, NULL, out, err_out);
}

int spam_bayes_store_lookup(struct spam_bayes_store *s, const uint64_t *h, size_t n,
			    struct spam_bayes_counts *counts_out, struct spam_bayes_totals *totals_out,
			    char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		RD_RETRY(rd_lookup(s, h, n, counts_out, totals_out, err_out));
	return lm_lookup(s, h, n, counts_out, totals_out, err_out);
}

int spam_bayes_store_learn(struct spam_bayes_store *s, const uint8_t digest[SPAM_BAYES_DIGEST_BYTES],
			   enum spam_bayes_op op, const uint64_t *h, size_t n, uint32_t now_s,
			   enum spam_bayes_class *prev_out, char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		RD_RETRY(rd_learn(s, digest, op, h, n, now_s, prev_out, err_out));
	return lm_learn(s, digest, op, h, n, now_s, prev_out, err_out);
}

int spam_bayes_store_seen(struct spam_bayes_store *s, const uint8_t digest[SPAM_BAYES_DIGEST_BYTES],
			  enum spam_bayes_class *class_out, char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		RD_RETRY(rd_seen(s, digest, class_out, err_out));
	MDB_txn *txn;
	int rc = lm_begin(s, MDB_RDONLY, &txn);
	if (rc)
		return lm_err(rc, err_out);
	rc = lm_seen(s, txn, digest, class_out);
	mdb_txn_abort(txn);
	return rc ? lm_err(rc, err_out) : 0;
}

int spam_bayes_store_touch(struct spam_bayes_store *s, const uint64_t *h, size_t n, uint32_t now_s,
			   char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		RD_RETRY(rd_touch(s, h, n, now_s, err_out));
	return lm_touch(s, h, n, now_s, err_out);
}

int spam_bayes_store_scan(struct spam_bayes_store *s, spam_bayes_store_each_fn fn, void *arg,
			  char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		RD_RETRY(rd_scan(s, fn, arg, err_out));
	return lm_scan(s, fn, arg, err_out);
}

int spam_bayes_store_delete(struct spam_bayes_store *s, const uint64_t *h, size_t n, int64_t now_s,
			    char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		RD_RETRY(rd_delete(s, h, n, now_s, err_out));
	return lm_delete(s, h, n, now_s, err_out);
}

int spam_bayes_store_sync(struct spam_bayes_store *s, char **err_out)
{
	if (s->backend == SPAM_BAYES_REDIS)
		return 0;
	int rc = mdb_env_sync(s->env, 1);
	return rc ? lm_err(rc, err_out) : 0;
}

const char *spam_bayes_store_backend_name(const struct spam_bayes_store *s)
{
	return s->backend == SPAM_BAYES_REDIS ? "redis" : "lmdb";
}
