/*
 * spam_rules_impl: the inside of struct spam_rules, shared by spam_rules.c
 * (file syntax) and spam_compile.c (scores, metas, regexes, Vectorscan).
 * Not a contract for other modules: use spam_rules.h.
 */
#ifndef SLUICE_SPAM_RULES_IMPL_H
#define SLUICE_SPAM_RULES_IMPL_H

#include "milters/spam/spam_rules.h"

#include <hs/hs.h>

/* a small string -> index map (FNV-1a, open addressing) */
struct hmap {
	char **keys;
	size_t *vals;
	size_t cap, n;
};
long spam_hm_get(const struct hmap *m, const char *k);	/* -1 when absent */
void spam_hm_put(struct hmap *m, const char *k, size_t v);	/* k copied */
void spam_hm_free(struct hmap *m);

enum skip_reason { SKIP_NONE, SKIP_EVAL, SKIP_TYPE, SKIP_BLOCK };

struct attrs {			/* score/describe/tflags, by name */
	double score[4];
	int nscores;
	char *describe;
	unsigned tflags;
	unsigned maxhits;
};

struct spam_rules {
	int score_set;
	struct spam_rule *rules;
	int *dead;		/* redefined away (eval, later definition elsewhere) */
	size_t n, cap;
	struct hmap by_name;	/* name -> rule index (live definition; (size_t)-1 when skipped) */
	struct attrs *attrs;
	size_t nattrs, capattrs;
	struct hmap attr_idx;	/* name -> attrs index */
	struct hmap skipped;	/* name -> enum skip_reason */
	struct hmap replace;	/* names listed in replace_rules -> 1 */
	struct hmap tags;	/* replace tag "name" / "<kind>:name" -> index into tagvals */
	char **tagvals;
	int *tagkind;		/* 0 tag, 1 pre, 2 inter, 3 post */
	size_t ntags;
	char **files;
	size_t nfiles;
	size_t *meta_order;
	size_t n_meta_order;
	size_t *kind_idx[6];
	size_t n_kind[6];
	hs_database_t *hs[12];	/* [kind]: matching; [6 + kind]: prefilter for PCRE2 rules */
	struct spam_rules_stats st;
	int compiled;
	unsigned gen;
	char *cache_dir;	/* Vectorscan database cache, or NULL */		/* unique per compiled set: per-thread scratch is sized once per set */
};

#endif
