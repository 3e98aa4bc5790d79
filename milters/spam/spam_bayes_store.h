/*
 * spam_bayes_store: where the Bayes counts live, behind one interface with
 * two backends that give the same results:
 *   lmdb  - one LMDB file (MDB_NOSUBDIR; its lock file is PATH-lock), shared
 *           by the daemon's threads and by `sluice-spam learn` processes;
 *   redis - a Redis server (hiredis, synchronous) shared by several hosts;
 *           a learn step is one Lua script, so it is atomic there too.
 * Owns: token records (64-bit keyed hash -> spam count, ham count, last
 * seen), the totals (messages learned as spam / ham, tokens stored, time
 * of the last expiry), the per-database salt, and the digests of learned
 * messages (sa-learn's "seen" database: a message learned twice counts
 * once; learned as the other class, it moves).
 * Leaves: tokens, hashing, combining and the expiry policy to spam_bayes.
 * No text is stored: tokens arrive hashed, messages as salted digests.
 * Thread-safe: every function may be called from several threads at once
 * (LMDB with MDB_NOTLS; Redis with a mutex-guarded pool of connections).
 */
#ifndef SLUICE_SPAM_BAYES_STORE_H
#define SLUICE_SPAM_BAYES_STORE_H

#include <stddef.h>
#include <stdint.h>

#define SPAM_BAYES_SALT_BYTES	16
#define SPAM_BAYES_DIGEST_BYTES	16

enum spam_bayes_backend { SPAM_BAYES_LMDB, SPAM_BAYES_REDIS };
enum spam_bayes_class { SPAM_BAYES_NONE = 0, SPAM_BAYES_SPAM = 1, SPAM_BAYES_HAM = 2 };
enum spam_bayes_op { SPAM_BAYES_LEARN_SPAM, SPAM_BAYES_LEARN_HAM, SPAM_BAYES_FORGET };

struct spam_bayes_store_opts {
	enum spam_bayes_backend backend;
	const char *db_path;		/* lmdb: the file (spam_bayes_db) */
	size_t db_max_bytes;		/* lmdb: map size (spam_bayes_db_max_size) */
	const char *redis_server;	/* redis: "host:port", "[v6]:port" or "unix:/path" */
	const char *redis_password;	/* "" = no AUTH */
	int redis_db;			/* SELECT n when not 0 */
	const char *redis_prefix;	/* every key starts with it, e.g. "sluice:bayes:" */
	int redis_timeout_ms;		/* connect and command time-out */
	const uint8_t *new_salt;	/* salt of a database created now (16 bytes; NULL =
					 * random); an existing one keeps its own. Two stores
					 * with the same salt hash tokens alike (tests, moves) */
};

/* Per token. atime_s: Unix time it was last learned or used (0: absent). */
struct spam_bayes_counts {
	uint32_t spam, ham, atime_s;
};

struct spam_bayes_totals {
	uint64_t nspam, nham;		/* messages learned */
	uint64_t ntokens;		/* token records stored */
	int64_t last_expire_s;		/* 0: never */
};

struct spam_bayes_store;

/*
 * spam_bayes_store_open - open (create) the store; the salt is created on
 * first use and read back after. Redis: the first connection is made here
 * (an unreachable server is an error); later failures reconnect per call.
 * Returns NULL with *err_out (caller frees).
 */
struct spam_bayes_store *spam_bayes_store_open(const struct spam_bayes_store_opts *o,
					       char **err_out);
/*
 * spam_bayes_store_close - drop one reference; the last one flushes LMDB to
 * disk and closes. NULL ignored; *s = NULL.
 */
void spam_bayes_store_close(struct spam_bayes_store **s);
/*
 * spam_bayes_store_ref - one more reference (each closed once). LMDB must
 * not open one file twice in a process: a new configuration generation
 * shares the open store (spam_bayes_open_shared).
 */
struct spam_bayes_store *spam_bayes_store_ref(struct spam_bayes_store *s);

/* spam_bayes_store_salt - the database's salt (random, made at creation). */
void spam_bayes_store_salt(const struct spam_bayes_store *s, uint8_t salt_out[SPAM_BAYES_SALT_BYTES]);

/* spam_bayes_store_totals - 0, or -1 with *err_out (caller frees). */
int spam_bayes_store_totals(struct spam_bayes_store *s, struct spam_bayes_totals *out,
			    char **err_out);

/*
 * spam_bayes_store_lookup - counts_out[i] for h[i] (zeros when absent) and
 * the totals, read together (one LMDB read transaction, one Redis
 * round trip). 0, or -1 with *err_out (caller frees).
 */
int spam_bayes_store_lookup(struct spam_bayes_store *s, const uint64_t *h, size_t n,
			    struct spam_bayes_counts *counts_out, struct spam_bayes_totals *totals_out,
			    char **err_out);

/*
 * spam_bayes_deltas - what op does to a message last learned as prev:
 * the change of every token's (and the totals') spam and ham counts, and
 * the class recorded after. Learning the same class again changes nothing;
 * learning the other class moves the message; forget undoes.
 */
void spam_bayes_deltas(enum spam_bayes_class prev, enum spam_bayes_op op, int *dspam_out,
		       int *dham_out, enum spam_bayes_class *new_out);

/*
 * spam_bayes_store_learn - atomically: read the class recorded for digest,
 * apply spam_bayes_deltas to the n distinct tokens h (counts never go
 * below 0; a token at 0/0 is removed; atime_s = now_s where a count grew)
 * and to the totals, record the new class. *prev_out = the class before.
 * Returns 1 when something changed, 0 when nothing had to, -1 with
 * *err_out (caller frees; nothing changed).
 */
int spam_bayes_store_learn(struct spam_bayes_store *s, const uint8_t digest[SPAM_BAYES_DIGEST_BYTES],
			   enum spam_bayes_op op, const uint64_t *h, size_t n, uint32_t now_s,
			   enum spam_bayes_class *prev_out, char **err_out);

/* spam_bayes_store_seen - the class recorded for digest (NONE if none); -1 with *err_out. */
int spam_bayes_store_seen(struct spam_bayes_store *s, const uint8_t digest[SPAM_BAYES_DIGEST_BYTES],
			  enum spam_bayes_class *class_out, char **err_out);

/* spam_bayes_store_touch - atime_s = now_s for those of h that exist. 0 or -1 with *err_out. */
int spam_bayes_store_touch(struct spam_bayes_store *s, const uint64_t *h, size_t n, uint32_t now_s,
			   char **err_out);

/*
 * spam_bayes_store_scan - fn(arg, hash, counts) for every token (order
 * unspecified); fn returns 0 to go on, non-zero to stop. 0 or -1 with *err_out.
 */
typedef int (*spam_bayes_store_each_fn)(void *arg, uint64_t h, const struct spam_bayes_counts *c);
int spam_bayes_store_scan(struct spam_bayes_store *s, spam_bayes_store_each_fn fn, void *arg,
			  char **err_out);

/*
 * spam_bayes_store_delete - remove the n tokens h (absent ones ignored),
 * lower ntokens by the number removed and set last_expire_s = now_s.
 * 0 or -1 with *err_out.
 */
int spam_bayes_store_delete(struct spam_bayes_store *s, const uint64_t *h, size_t n, int64_t now_s,
			    char **err_out);

/* spam_bayes_store_sync - LMDB: flush to disk (writes are not fsync'd one by one). */
int spam_bayes_store_sync(struct spam_bayes_store *s, char **err_out);

/* spam_bayes_store_backend_name - "lmdb" or "redis". */
const char *spam_bayes_store_backend_name(const struct spam_bayes_store *s);

#endif
