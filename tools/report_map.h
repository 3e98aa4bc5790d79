/*
 * report_map: a string-keyed hash map with a few counters per key, for
 * `sluice report`'s tables (senders, domains, reasons, per-queue-id state).
 * Owns the keys (copied), the open-addressing table (linear probing,
 * deletion by backward shift; the slots' hashes in an array of their own, so
 * that a probe reads one cache line, and short keys copied into their entry,
 * so that a hit needs no second memory access) and sorting entries for output.
 * Leaves what the counters mean, and any ptr's contents, to the caller.
 * Memory: one entry per distinct key, never shrunk (rmap_del frees the key).
 */
#ifndef SLUICE_REPORT_MAP_H
#define SLUICE_REPORT_MAP_H

#include <stddef.h>
#include <stdint.h>

#define RMAP_NC 6
#define RMAP_INLINE 20

/* a look-up reads key, h, len and kin, at the start, next to the first counters */
struct rmap_ent {
	char *key;		/* NULL: free slot */
	uint64_t h;
	void *ptr;		/* the caller's, NULL when created */
	uint32_t len;		/* strlen(key) */
	char kin[RMAP_INLINE];	/* key, when len < RMAP_INLINE (internal) */
	long long c[RMAP_NC];	/* counters, zero when created */
	double d[2];		/* two reals (delay sum/max), zero when created */
};

/* released by rmap_free() only: it owns v, hv and the keys */
struct rmap {
	struct rmap_ent *v;	/* cap slots; a free slot has key NULL */
	size_t cap, n;		/* zero-initialised = empty */
	uint64_t *hv;		/* internal: hv[i] = v[i].h, 0 for a free slot */
};

/*
 * rmap_get - the entry of key; create: add it when absent (else NULL).
 * The pointer is valid until the next rmap_get(create=1) or rmap_del on m
 * (entries move when the table grows); the key string itself stays put.
 */
struct rmap_ent *rmap_get(struct rmap *m, const char *key, int create);

/* rmap_del - remove e (from rmap_get on m); free_ptr(e->ptr) when given. */
void rmap_del(struct rmap *m, struct rmap_ent *e, void (*free_ptr)(void *));

/* rmap_free - every entry (free_ptr on each ptr when given); m is empty after. */
void rmap_free(struct rmap *m, void (*free_ptr)(void *));

/* rmap_bump - c[col] += by for key (created when absent); returns the entry. */
struct rmap_ent *rmap_bump(struct rmap *m, const char *key, int col, long long by);

/* rmap_bump2 - c[0] += by for the key "a\tb" (a and b cut at 255 bytes). */
void rmap_bump2(struct rmap *m, const char *a, const char *b, long long by);

struct rmap_row {
	const struct rmap_ent *e;
	int col;
};

/* rmap_sorted - the entries by c[col] descending, then key; *n_out of them; caller frees. */
struct rmap_row *rmap_sorted(const struct rmap *m, int col, size_t *n_out);

#endif
