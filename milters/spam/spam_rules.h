/*
 * spam_rules: rule files in SpamAssassin's syntax, loaded and compiled.
 * Owns: the file syntax (comments with \# escapes, if/ifplugin/else/endif
 * blocks, header/body/rawbody/uri/full/meta definitions, score, describe,
 * tflags, the SpamAssassin settings we accept and ignore), the skip
 * accounting (eval: tests, plugin-only rule types, blocks we cannot honour,
 * metas that depend on a skipped rule), and compilation: PCRE2 with JIT for
 * every regex, and body/rawbody/uri patterns Vectorscan accepts in one
 * multi-pattern database per kind.
 * Leaves: matching a message to spam_scan.c, meta expressions to spam_meta.c.
 *
 * Semantics follow SpamAssassin where they are cheap to follow:
 * - A later definition of a rule replaces the earlier one; score,
 *   describe and tflags may come before or after the definition.
 * - A rule without a score line scores 1.0, "__" rules 0 (never
 *   reported), "T_" rules 0.01. "score NAME a b c d" takes the set chosen
 *   with spam_rules_new(score_set) (0: no Bayes, no network tests).
 * - A rule with score 0 runs only when a meta needs it.
 * - "ifplugin X" is false (no SpamAssassin plugin is loaded); in
 *   "if EXPR", version is 4.000000, plugin(X) is false, can(...Conf::X) is
 *   true (the configuration features exist) except feature_capture_rules,
 *   can(...Plugin::X) is false.
 * Errors name "file:line: reason" and stop loading (the caller stops start-up).
 */
#ifndef SLUICE_SPAM_RULES_H
#define SLUICE_SPAM_RULES_H

#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

struct spam_meta;

enum spam_rule_kind {
	SPAM_RULE_HEADER, SPAM_RULE_BODY, SPAM_RULE_RAWBODY, SPAM_RULE_URI,
	SPAM_RULE_FULL, SPAM_RULE_META,
};

/* header field modifiers: Field:raw, :addr, :name, :host, :domain, :first, :last */
#define SPAM_HDR_RAW	0x01
#define SPAM_HDR_ADDR	0x02
#define SPAM_HDR_NAME	0x04
#define SPAM_HDR_HOST	0x08
#define SPAM_HDR_DOMAIN	0x10
#define SPAM_HDR_FIRST	0x20
#define SPAM_HDR_LAST	0x40

#define SPAM_TF_MULTIPLE 0x01	/* count every match (up to maxhits) */
#define SPAM_TF_NICE	0x02	/* negative score expected */
#define SPAM_TF_NET	0x04
#define SPAM_TF_LEARN	0x08

struct spam_rule {
	char *name;
	enum spam_rule_kind kind;
	char *file;		/* where defined (borrowed from the ruleset's file list) */
	int line;
	/* header rules */
	char *field;		/* "Subject", "ALL", "ToCc", "MESSAGEID", ... */
	unsigned hdr_mods;	/* SPAM_HDR_* */
	int exists;		/* exists:Field */
	int negate;		/* !~ */
	char *if_unset;		/* [if-unset: text] or NULL */
	/* regex rules */
	char *pattern;		/* PCRE2 source */
	uint32_t re_opts;	/* PCRE2_CASELESS, ... */
	pcre2_code *re;
	int hs;			/* 1: matched through the Vectorscan database of its kind */
	int pf;			/* 1: PCRE2 runs only when the kind's prefilter database says so */
	/* meta */
	char *meta_expr;
	struct spam_meta *meta;
	/* after spam_rules_compile */
	double score;
	const char *describe;	/* borrowed, or NULL */
	unsigned tflags;	/* SPAM_TF_* */
	unsigned maxhits;	/* tflags multiple maxhits=N; 0 = no limit (capped) */
	int active;		/* compiled and run */
	int reported;		/* score != 0 and not "__" */
};

struct spam_rules_stats {
	size_t loaded;		/* active rules */
	size_t by_kind[6];	/* active, per spam_rule_kind */
	size_t hs_patterns;	/* in Vectorscan databases */
	size_t pcre_patterns;
	size_t hs_cached;	/* Vectorscan databases read from the cache */
	size_t pf_patterns;	/* PCRE2 rules behind a Vectorscan prefilter */
	size_t skipped_eval;	/* eval: tests */
	size_t skipped_type;	/* plugin-only rule types (mimeheader, askdns, uri_detail, ...) */
	size_t skipped_block;	/* inside if/ifplugin blocks we cannot honour */
	size_t skipped_meta;	/* metas that depend on a skipped or missing rule */
	size_t skipped_regex;	/* too large for PCRE2 and not taken by Vectorscan */
	size_t zero_score;	/* score 0 and no meta needs them: not run */
	size_t ignored_settings;	/* SpamAssassin settings without meaning here */
	size_t files;
};

struct spam_rules;

/* spam_rules_new - empty rule set; score_set 0..3 (see above). */
struct spam_rules *spam_rules_new(int score_set);
void spam_rules_free(struct spam_rules **rs);

/*
 * spam_rules_load_file / _string - add the definitions of one file.
 * Returns 0, or -1 with *err_out = "file:line: reason" (caller frees).
 */
int spam_rules_load_file(struct spam_rules *rs, const char *path, char **err_out);
int spam_rules_load_string(struct spam_rules *rs, const char *text, const char *name,
			   char **err_out);
/*
 * spam_rules_load_globs - every file matching each glob, in glob order
 * (sorted within a glob). A glob matching nothing is an error.
 */
int spam_rules_load_globs(struct spam_rules *rs, const char *const *globs, size_t n,
			  char **err_out);

/*
 * spam_rules_set_cache_dir - keep compiled Vectorscan databases in dir
 * (before spam_rules_compile; NULL or "" = no cache). A database is reused
 * only when its patterns, flags, rule numbers and the Vectorscan version
 * are the same; a cache that cannot be read or written only costs time.
 */
void spam_rules_set_cache_dir(struct spam_rules *rs, const char *dir);

/*
 * spam_rules_compile - resolve scores, metas, compile regexes and the
 * Vectorscan databases. After it the set is read-only and may be shared by
 * threads. Returns 0, or -1 with *err_out (caller frees): a regex PCRE2
 * rejects, a meta loop, ... with file:line.
 */
int spam_rules_compile(struct spam_rules *rs, char **err_out);

const struct spam_rules_stats *spam_rules_stats(const struct spam_rules *rs);
/* spam_rules_summary - the one start-up log line; caller frees. */
char *spam_rules_summary(const struct spam_rules *rs);

/* Rules by index (0 .. count-1), and by name (-1 if none). Borrowed. */
size_t spam_rules_count(const struct spam_rules *rs);
const struct spam_rule *spam_rules_get(const struct spam_rules *rs, size_t i);
long spam_rules_find(const struct spam_rules *rs, const char *name);

/* For spam_scan: the active metas in evaluation order, and the Vectorscan database of a kind. */
const size_t *spam_rules_meta_order(const struct spam_rules *rs, size_t *n_out);
const void *spam_rules_hs_db(const struct spam_rules *rs, enum spam_rule_kind kind);
/* The prefilter database of a kind (HS_FLAG_PREFILTER: may say yes wrongly, never no wrongly). */
const void *spam_rules_pf_db(const struct spam_rules *rs, enum spam_rule_kind kind);
/* spam_rules_generation - unique per compiled set (never 0). */
unsigned spam_rules_generation(const struct spam_rules *rs);
/* Active rule indexes of one kind (all, including Vectorscan ones). */
const size_t *spam_rules_of_kind(const struct spam_rules *rs, enum spam_rule_kind kind,
				 size_t *n_out);

#endif
