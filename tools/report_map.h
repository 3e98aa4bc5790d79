/*
 * report_map: a string-keyed hash map with a few counters per key, for
 * `sluice report`'s tables (senders, domains, reasons, per-queue-id state).
 * Owns the keys (copied), the open-addressing table (linear probing,
 * deletion by backward shift; the slots' hashes in an array of their own, so
 * that a probe reads one cache line, and keys under RMAP_INLINE bytes copied
 * into their entry, so that a hit needs no other memory access) and sorting
 * entries for output.
 * Leaves what the counters mean, and any ptr's contents, to the caller.
 * Memory: 72 bytes (an entry and its hash) per slot, at most 3/4 of the
 * slots used, plus each key of RMAP_INLINE bytes or more; never shrunk
 * (rmap_del frees the key).
 */
#ifndef SLUICE_REPORT_MAP_H
#define SLUICE_REPORT_MAP_H

#include <stddef.h>
#include <stdint.h>

#define RMAP_NC 2
#define RMAP_INLINE 24

/*
 * 64 bytes, on a 64-byte boundary: a look-up of a key under RMAP_INLINE
 * bytes (queue ids, domains, most addresses) and a bump of its counters read
 * and write one cache line. Small entries keep the large tables (recipients,
 * senders, clients: tens of thousands of keys) within few cache lines;
 * more state per key goes behind ptr.
 */
struct rmap_ent {
	char *key;		/* NULL: free slot */
	void *ptr;		/* the caller's, NULL when created */
	uint32_t len;		/* strlen(key) */
	uint32_t u;		/* the caller's bits, zero when created */
	char kin[RMAP_INLINE];	/* key, when len < RMAP_INLINE (internal) */
	long long c[RMAP_NC];	/* counters, zero when created */
};

/* released by rmap_free() only: it owns v, hv and the keys */
struct rmap {
	struct rmap_ent *v;	/* cap slots; a free slot has key NULL */
	size_t cap, n;		/* zero-initialised = empty */
	uint64_t *hv;		/* internal: hv[i] = the hash of v[i]'s key, 0 for a free slot */
};

/*
 * rmap_get - the entry of key; create: add it when absent (else NULL).
 * The pointer is valid until the next rmap_get(create=1) or rmap_del on m
 * (entries move when the table grows or one before them is deleted); the key
 * string itself stays put.
 */
struct rmap_ent *rmap_get(struct rmap *m, const char *key, int create);

/* rmap_getn - rmap_get of the len bytes at key (no NUL in them; key need not be
   NUL-terminated). */
struct rmap_ent *rmap_getn(struct rmap *m, const char *key, size_t len, int create);

/* rmap_hash - the hash rmap_getn uses for the len bytes at key (never 0):
   worked out once, ahead (in another thread, too), for rmap_getnh. */
uint64_t rmap_hash(const char *key, size_t len);

/* rmap_getnh - rmap_getn with h = rmap_hash(key, len) given. */
struct rmap_ent *rmap_getnh(struct rmap *m, const char *key, size_t len, uint64_t h, int create);

/* rmap_bumpnh - rmap_bumpn with h = rmap_hash(key, len) given. */
struct rmap_ent *rmap_bumpnh(struct rmap *m, const char *key, size_t len, uint64_t h, int col,
			     long long by);

/* rmap_del - remove e (from rmap_get on m); free_ptr(e->ptr) when given. */
void rmap_del(struct rmap *m, struct rmap_ent *e, void (*free_ptr)(void *));

/* rmap_free - every entry (free_ptr on each ptr when given); m is empty after. */
void rmap_free(struct rmap *m, void (*free_ptr)(void *));

/* rmap_bump - c[col] += by for key (created when absent); returns the entry. */
struct rmap_ent *rmap_bump(struct rmap *m, const char *key, int col, long long by);

/* rmap_bumpn - rmap_bump of the len bytes at key (as rmap_getn). */
struct rmap_ent *rmap_bumpn(struct rmap *m, const char *key, size_t len, int col, long long by);

/* rmap_bump2 - c[0] += by for the key "a\tb" (a and b cut at 255 bytes). */
void rmap_bump2(struct rmap *m, const char *a, const char *b, long long by);

struct rmap_row {
	const struct rmap_ent *e;
	int col;
};

/* rmap_sorted - the entries by c[col] descending, then key; *n_out of them; caller frees. */
struct rmap_row *rmap_sorted(const struct rmap *m, int col, size_t *n_out);

/* rmap_top - the first limit rows (all when limit is 0) of rmap_sorted's
   order, without sorting the rest; *n_out of them; caller frees. */
struct rmap_row *rmap_top(const struct rmap *m, int col, size_t limit, size_t *n_out);

#endif
