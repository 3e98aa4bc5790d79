/*
 * spam_compile: a loaded rule set made runnable: attributes resolved,
 * ReplaceTags applied, metas bound and ordered, regexes compiled (PCRE2
 * with JIT), body/rawbody/uri patterns in Vectorscan databases.
 * Part of spam_rules (contract in spam_rules.h).
 */
#include "milters/spam/spam_rules_impl.h"
#include "milters/spam/spam_meta.h"
#include "lib/util.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG_MAX_DEPTH 4

/* replace_tags - SpamAssassin's ReplaceTags: <TAG>, <pre X>, <inter X>, <post X>. */
static char *replace_tags(const struct spam_rules *rs, const char *pat, int depth)
{
	struct sbuf out;
	sbuf_init(&out);
	const char *pre = "", *inter = "", *post = "";
	int last_tag = 0;
	for (const char *p = pat; *p;) {
		if (*p == '<') {
			const char *q = p + 1;
			int kind = 0;
			if (!strncmp(q, "pre ", 4)) {
				kind = 1;
				q += 4;
			} else if (!strncmp(q, "inter ", 6)) {
				kind = 2;
				q += 6;
			} else if (!strncmp(q, "post ", 5)) {
				kind = 3;
				q += 5;
			}
			const char *ns = q;
			while (isalnum((unsigned char)*q) || *q == '_')
				q++;
			if (q > ns && *q == '>') {
				char *name = xstrndup(ns, (size_t)(q - ns));
				char *key = kind ? xasprintf("%d:%s", kind, name) : xstrdup(name);
				long t = spam_hm_get(&rs->tags, key);
				free(key);
				free(name);
				if (t >= 0 && rs->tagkind[t] == kind) {
					const char *v = rs->tagvals[t];
					if (kind == 1)
						pre = v;
					else if (kind == 2)
						inter = v;
					else if (kind == 3)
						post = v;
					else {
						if (last_tag)
							sbuf_adds(&out, inter);
						sbuf_adds(&out, pre);
						if (depth < TAG_MAX_DEPTH && strchr(v, '<')) {
							char *e = replace_tags(rs, v, depth + 1);
							sbuf_adds(&out, e);
							free(e);
						} else {
							sbuf_adds(&out, v);
						}
						sbuf_adds(&out, post);
						last_tag = 1;
					}
					p = q + 1;
					continue;
				}
			}
		}
		sbuf_addc(&out, *p++);
		last_tag = 0;
	}
	return sbuf_steal(&out);
}

static int live(const struct spam_rules *rs, size_t i)
{
	return !rs->dead[i] && spam_hm_get(&rs->by_name, rs->rules[i].name) == (long)i;
}

/* resolve_metas - bind references; a meta on a missing/skipped rule is skipped (transitively). */
static void resolve_metas(struct spam_rules *rs, int *unresolved)
{
	int changed = 1;
	while (changed) {
		changed = 0;
		for (size_t i = 0; i < rs->n; i++) {
			struct spam_rule *r = &rs->rules[i];
			if (unresolved[i] || !live(rs, i) || r->kind != SPAM_RULE_META)
				continue;
			for (size_t k = 0; k < spam_meta_nrefs(r->meta); k++) {
				long idx = spam_hm_get(&rs->by_name, spam_meta_ref(r->meta, k));
				if (idx < 0 || unresolved[idx]) {
					unresolved[i] = 1;
					changed = 1;
					break;
				}
				spam_meta_bind(r->meta, k, (size_t)idx);
			}
		}
	}
}

/* visit - mark needed rules; metas in post-order; 1 = loop found (*loop_out). */
static int visit(struct spam_rules *rs, size_t i, char *colour, size_t *order, size_t *norder,
		 size_t *loop_out)
{
	if (colour[i] == 2)
		return 0;
	if (colour[i] == 1) {
		*loop_out = i;
		return 1;
	}
	colour[i] = 1;
	struct spam_rule *r = &rs->rules[i];
	if (r->kind == SPAM_RULE_META)
		for (size_t k = 0; k < spam_meta_nrefs(r->meta); k++) {
			long idx = spam_hm_get(&rs->by_name, spam_meta_ref(r->meta, k));
			if (visit(rs, (size_t)idx, colour, order, norder, loop_out))
				return 1;
		}
	colour[i] = 2;
	r->active = 1;
	if (r->kind == SPAM_RULE_META)
		order[(*norder)++] = i;
	return 0;
}

static unsigned hs_flags(uint32_t o)
{
	unsigned f = HS_FLAG_SINGLEMATCH;
	if (o & PCRE2_CASELESS)
		f |= HS_FLAG_CASELESS;
	if (o & PCRE2_DOTALL)
		f |= HS_FLAG_DOTALL;
	if (o & PCRE2_MULTILINE)
		f |= HS_FLAG_MULTILINE;
	return f;
}

/*
 * hs_heavy - patterns that make Vectorscan's multi-pattern compile slow
 * (seconds for SpamAssassin's set): long ones and wide bounded repeats.
 * They stay with PCRE2. Deterministic, so a rule set always splits alike.
 */
static int hs_heavy(const char *p)
{
	if (strlen(p) > 400)
		return 1;
	for (const char *q = p; *q; q++) {
		if (*q == '\\' && q[1]) {
			q++;
			continue;
		}
		if (*q != '{' || !isdigit((unsigned char)q[1]))
			continue;
		char *e;
		unsigned long hi = strtoul(q + 1, &e, 10);
		if (*e == ',')
			hi = e[1] == '}' ? ULONG_MAX : strtoul(e + 1, &e, 10);
		if (hi > 20)
			return 1;
	}
	return 0;
}

/*
 * The Vectorscan database cache (spam_cache_directory): compiling
 * SpamAssassin's set takes seconds, so a compiled database is kept in a
 * file named after a hash of everything it was built from (the candidate
 * patterns, flags and rule numbers, and the Vectorscan version). The file
 * holds the rule numbers the database kept, then the serialised database.
 */
#define CACHE_MAGIC 0x73706873u	/* "sphs" */

static uint64_t fnv64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static char *cache_path(const struct spam_rules *rs, int kind, const char **exprs,
			const unsigned *flags, const unsigned *ids, size_t m)
{
	if (rs->cache_dir == NULL || *rs->cache_dir == 0)
		return NULL;
	uint64_t h = 1469598103934665603ULL;
	const char *v = hs_version();
	h = fnv64(h, v, strlen(v));
	h = fnv64(h, &kind, sizeof(kind));
	for (size_t i = 0; i < m; i++) {
		h = fnv64(h, exprs[i], strlen(exprs[i]) + 1);
		h = fnv64(h, &flags[i], sizeof(flags[i]));
		h = fnv64(h, &ids[i], sizeof(ids[i]));
	}
	return xasprintf("%s/spam-hs-%d-%016llx.db", rs->cache_dir, (int)kind, (unsigned long long)h);
}

static int cache_load(struct spam_rules *rs, int kind, const char **exprs,
		      const unsigned *flags, const unsigned *ids, size_t m)
{
	char *path = cache_path(rs, kind, exprs, flags, ids, m);
	if (path == NULL)
		return 0;
	FILE *f = fopen(path, "rb");
	free(path);
	if (f == NULL)
		return 0;
	int ok = 0;
	uint32_t hdr[2];
	unsigned *kept = NULL;
	char *blob = NULL;
	long size;
	if (fread(hdr, sizeof(hdr), 1, f) != 1 || hdr[0] != CACHE_MAGIC || hdr[1] == 0 || hdr[1] > m)
		goto out;
	kept = xmalloc(hdr[1] * sizeof(*kept));
	if (fread(kept, sizeof(*kept), hdr[1], f) != hdr[1])
		goto out;
	for (uint32_t i = 0; i < hdr[1]; i++)
		if (kept[i] >= rs->n)
			goto out;
	long start = ftell(f);
	if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f) - start) <= 0 || fseek(f, start, SEEK_SET) < 0)
		goto out;
	blob = xmalloc((size_t)size);
	if (fread(blob, 1, (size_t)size, f) != (size_t)size)
		goto out;
	hs_database_t *db = NULL;
	if (hs_deserialize_database(blob, (size_t)size, &db) != HS_SUCCESS)
		goto out;
	rs->hs[kind] = db;
	for (uint32_t i = 0; i < hdr[1]; i++) {
		if (kind >= 6)
			rs->rules[kept[i]].pf = 1;
		else
			rs->rules[kept[i]].hs = 1;
	}
	if (kind >= 6)
		rs->st.pf_patterns += hdr[1];
	else
		rs->st.hs_patterns += hdr[1];
	rs->st.hs_cached++;
	ok = 1;
out:
	free(kept);
	free(blob);
	fclose(f);
	return ok;
}

static void cache_store(const struct spam_rules *rs, int kind, const unsigned *ids0,
			size_t m0, const unsigned *kept, size_t m)
{
	(void)ids0;
	/* the key is the candidate list: recompute it from the rules (exprs/flags were compacted) */
	const char **exprs = xcalloc(m0 + 1, sizeof(*exprs));
	unsigned *flags = xcalloc(m0 + 1, sizeof(*flags));
	for (size_t i = 0; i < m0; i++) {
		exprs[i] = rs->rules[ids0[i]].pattern;
		flags[i] = hs_flags(rs->rules[ids0[i]].re_opts) | (kind >= 6 ? HS_FLAG_PREFILTER : 0);
	}
	char *path = cache_path(rs, kind, exprs, flags, ids0, m0);
	free(exprs);
	free(flags);
	if (path == NULL)
		return;
	char *bytes = NULL;
	size_t len = 0;
	if (hs_serialize_database(rs->hs[kind], &bytes, &len) != HS_SUCCESS) {
		free(path);
		return;
	}
	char *tmp = xasprintf("%s.%d.tmp", path, (int)getpid());
	FILE *f = fopen(tmp, "wb");
	uint32_t hdr[2] = { CACHE_MAGIC, (uint32_t)m };
	int ok = f && fwrite(hdr, sizeof(hdr), 1, f) == 1 &&
		 fwrite(kept, sizeof(*kept), m, f) == m && fwrite(bytes, 1, len, f) == len;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) < 0)
		unlink(tmp);	/* a cache that cannot be written is only slower */
	free(tmp);
	free(path);
	free(bytes);	/* hs_serialize_database uses the default allocator (malloc) */
}

/*
 * build_hs - the Vectorscan database of one kind (pf = 0: the rules it
 * matches exactly; pf = 1: a prefilter for the kind's PCRE2 rules, built
 * after the first, so most PCRE2 rules never run on a message that cannot
 * match them). Heavy patterns stay out of both: with them in the
 * prefilter SpamAssassin's set took 115 s to compile and scanned slower.
 */
static void build_hs(struct spam_rules *rs, enum spam_rule_kind kind, int pf)
{
	int slot = (int)kind + (pf ? 6 : 0);
	size_t n = rs->n_kind[kind], m = 0;
	const char **exprs = xcalloc(n + 1, sizeof(*exprs));
	unsigned *flags = xcalloc(n + 1, sizeof(*flags));
	unsigned *ids = xcalloc(n + 1, sizeof(*ids));
	for (size_t k = 0; k < n; k++) {
		struct spam_rule *r = &rs->rules[rs->kind_idx[kind][k]];
		if (r->pattern == NULL || r->hs || (r->re_opts & PCRE2_EXTENDED) || hs_heavy(r->pattern))
			continue;
		if (!pf && (r->tflags & SPAM_TF_MULTIPLE))
			continue;
		unsigned f = hs_flags(r->re_opts) | (pf ? HS_FLAG_PREFILTER : 0);
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *cerr = NULL;
		if (hs_expression_info(r->pattern, f, &info, &cerr) != HS_SUCCESS) {
			hs_free_compile_error(cerr);
			continue;
		}
		int ok = info->min_width > 0;
		free(info);
		if (!ok)
			continue;
		exprs[m] = r->pattern;
		flags[m] = f;
		ids[m] = (unsigned)rs->kind_idx[kind][k];
		m++;
	}
	if (m > 0 && cache_load(rs, slot, exprs, flags, ids, m)) {
		free(exprs);
		free(flags);
		free(ids);
		return;
	}
	size_t m0 = m;
	unsigned *ids0 = xmalloc((m0 + 1) * sizeof(*ids0));
	memcpy(ids0, ids, m0 * sizeof(*ids0));
	while (m > 0) {
		hs_database_t *db = NULL;
		hs_compile_error_t *cerr = NULL;
		if (hs_compile_multi(exprs, flags, ids, (unsigned)m, HS_MODE_BLOCK, NULL, &db, &cerr) ==
		    HS_SUCCESS) {
			rs->hs[slot] = db;
			for (size_t k = 0; k < m; k++) {
				if (pf)
					rs->rules[ids[k]].pf = 1;
				else
					rs->rules[ids[k]].hs = 1;
			}
			if (pf)
				rs->st.pf_patterns += m;
			else
				rs->st.hs_patterns += m;
			break;
		}
		int bad = cerr ? cerr->expression : -1;
		hs_free_compile_error(cerr);
		if (bad < 0 || (size_t)bad >= m)
			break;	/* the database as a whole: every pattern stays with PCRE2 */
		memmove(&exprs[bad], &exprs[bad + 1], (m - (size_t)bad - 1) * sizeof(*exprs));
		memmove(&flags[bad], &flags[bad + 1], (m - (size_t)bad - 1) * sizeof(*flags));
		memmove(&ids[bad], &ids[bad + 1], (m - (size_t)bad - 1) * sizeof(*ids));
		m--;
	}
	if (rs->hs[slot])
		cache_store(rs, slot, ids0, m0, ids, m);
	free(ids0);
	free(exprs);
	free(flags);
	free(ids);
}

static int compile_re(struct spam_rule *r, char **err_out, int *too_big_out)
{
	int ec;
	PCRE2_SIZE off;
	r->re = pcre2_compile((PCRE2_SPTR)r->pattern, PCRE2_ZERO_TERMINATED, r->re_opts, &ec, &off,
			      NULL);
	if (r->re == NULL) {
		*too_big_out = ec == PCRE2_ERROR_PATTERN_TOO_LARGE;
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof(msg));
		*err_out = xasprintf("%s:%d: %s: regular expression: %s at offset %zu", r->file,
				     r->line, r->name, (char *)msg, (size_t)off);
		return -1;
	}
	pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE);	/* no JIT: the interpreter still works */
	return 0;
}

int spam_rules_compile(struct spam_rules *rs, char **err_out)
{
	if (rs->compiled)
		return 0;
	rs->compiled = 1;
	static unsigned gens;
	rs->gen = __atomic_add_fetch(&gens, 1, __ATOMIC_SEQ_CST);
	int *unresolved = xcalloc(rs->n + 1, sizeof(int));
	for (size_t i = 0; i < rs->n; i++) {
		struct spam_rule *r = &rs->rules[i];
		if (!live(rs, i))
			continue;
		if (r->pattern && strchr(r->pattern, '<') && spam_hm_get(&rs->replace, r->name) >= 0) {
			char *np = replace_tags(rs, r->pattern, 0);
			free(r->pattern);
			r->pattern = np;
		}
		long a = spam_hm_get(&rs->attr_idx, r->name);
		const struct attrs *at = a >= 0 ? &rs->attrs[a] : NULL;
		if (at && at->nscores)
			r->score = at->score[rs->score_set];
		else if (!strncmp(r->name, "__", 2))
			r->score = 0;
		else if (!strncmp(r->name, "T_", 2))
			r->score = 0.01;
		else
			r->score = 1.0;
		if (!strncmp(r->name, "__", 2))
			r->score = 0;
		r->describe = at ? at->describe : NULL;
		r->tflags = at ? at->tflags : 0;
		r->maxhits = at ? at->maxhits : 0;
		r->reported = r->score != 0;
	}
	resolve_metas(rs, unresolved);
	char *colour = xcalloc(rs->n + 1, 1);
	rs->meta_order = xcalloc(rs->n + 1, sizeof(size_t));
	int rc = 0;
	for (size_t i = 0; i < rs->n && rc == 0; i++) {
		struct spam_rule *r = &rs->rules[i];
		if (!live(rs, i))
			continue;
		if (unresolved[i]) {
			rs->st.skipped_meta++;
			continue;
		}
		if (r->score == 0)
			continue;
		size_t loop;
		if (visit(rs, i, colour, rs->meta_order, &rs->n_meta_order, &loop)) {
			*err_out = xasprintf("%s:%d: meta %s: depends on itself (through %s)", r->file,
					     r->line, r->name, rs->rules[loop].name);
			rc = -1;
		}
	}
	for (size_t i = 0; i < rs->n && rc == 0; i++) {
		struct spam_rule *r = &rs->rules[i];
		if (!live(rs, i) || unresolved[i])
			continue;
		if (!r->active) {
			rs->st.zero_score++;
			continue;
		}
		rs->kind_idx[r->kind] = xrealloc(rs->kind_idx[r->kind],
						 (rs->n_kind[r->kind] + 1) * sizeof(size_t));
		rs->kind_idx[r->kind][rs->n_kind[r->kind]++] = i;
		rs->st.by_kind[r->kind]++;
		rs->st.loaded++;
	}
	free(colour);
	free(unresolved);
	if (rc < 0)
		return -1;
	static const enum spam_rule_kind hs_kinds[] = { SPAM_RULE_BODY, SPAM_RULE_RAWBODY, SPAM_RULE_URI };
	for (int pf = 0; pf < 2; pf++)
		for (int k = 0; k < 3; k++)
			build_hs(rs, hs_kinds[k], pf);
	rs->st.pcre_patterns = 0;
	for (size_t i = 0; i < rs->n; i++) {
		struct spam_rule *r = &rs->rules[i];
		if (!r->active || r->pattern == NULL || r->hs || !live(rs, i))
			continue;
		int big = 0;
		if (compile_re(r, err_out, &big) < 0) {
			if (!big)
				return -1;
			/* XXX: PCRE2's compiled-size limit (LINK_SIZE 2); Vectorscan did not take it either */
			free(*err_out);
			*err_out = NULL;
			r->active = 0;
			rs->st.skipped_regex++;
			rs->st.loaded--;
			rs->st.by_kind[r->kind]--;
			continue;
		}
		rs->st.pcre_patterns++;
	}
	/* skipped names that never got a live definition */
	for (size_t i = 0; i < rs->skipped.cap; i++) {
		const char *k = rs->skipped.keys[i];
		if (k == NULL || spam_hm_get(&rs->by_name, k) >= 0)
			continue;
		switch ((enum skip_reason)rs->skipped.vals[i]) {
		case SKIP_EVAL: rs->st.skipped_eval++; break;
		case SKIP_TYPE: rs->st.skipped_type++; break;
		case SKIP_BLOCK: rs->st.skipped_block++; break;
		default: break;
		}
	}
	return 0;
}

void spam_rules_set_cache_dir(struct spam_rules *rs, const char *dir)
{
	free(rs->cache_dir);
	rs->cache_dir = dir && *dir ? xstrdup(dir) : NULL;
}

const struct spam_rules_stats *spam_rules_stats(const struct spam_rules *rs)
{
	return &rs->st;
}

char *spam_rules_summary(const struct spam_rules *rs)
{
	const struct spam_rules_stats *s = &rs->st;
	return xasprintf("rules: files=%zu, loaded=%zu (header %zu, body %zu, rawbody %zu, uri %zu, "
			 "full %zu, meta %zu; vectorscan %zu (databases from cache %zu), pcre2 %zu (behind a prefilter %zu)), skipped=%zu (eval %zu, "
			 "plugin rule types %zu, if/ifplugin blocks %zu, metas on skipped rules %zu, "
			 "regex too large %zu), "
			 "not run (score 0)=%zu, ignored settings=%zu",
			 s->files, s->loaded, s->by_kind[SPAM_RULE_HEADER], s->by_kind[SPAM_RULE_BODY],
			 s->by_kind[SPAM_RULE_RAWBODY], s->by_kind[SPAM_RULE_URI],
			 s->by_kind[SPAM_RULE_FULL], s->by_kind[SPAM_RULE_META], s->hs_patterns,
			 s->hs_cached, s->pcre_patterns, s->pf_patterns,
			 s->skipped_eval + s->skipped_type + s->skipped_block + s->skipped_meta +
				 s->skipped_regex,
			 s->skipped_eval, s->skipped_type, s->skipped_block, s->skipped_meta,
			 s->skipped_regex,
			 s->zero_score, s->ignored_settings);
}

size_t spam_rules_count(const struct spam_rules *rs)
{
	return rs->n;
}

const struct spam_rule *spam_rules_get(const struct spam_rules *rs, size_t i)
{
	return i < rs->n ? &rs->rules[i] : NULL;
}

long spam_rules_find(const struct spam_rules *rs, const char *name)
{
	return spam_hm_get(&rs->by_name, name);
}

const size_t *spam_rules_meta_order(const struct spam_rules *rs, size_t *n_out)
{
	*n_out = rs->n_meta_order;
	return rs->meta_order;
}

unsigned spam_rules_generation(const struct spam_rules *rs)
{
	return rs->gen;
}

const void *spam_rules_hs_db(const struct spam_rules *rs, enum spam_rule_kind kind)
{
	return rs->hs[kind];
}

const void *spam_rules_pf_db(const struct spam_rules *rs, enum spam_rule_kind kind)
{
	return rs->hs[6 + kind];
}

const size_t *spam_rules_of_kind(const struct spam_rules *rs, enum spam_rule_kind kind,
				 size_t *n_out)
{
	*n_out = rs->n_kind[kind];
	return rs->kind_idx[kind];
}
