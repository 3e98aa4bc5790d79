/*
 * spam_rules: SpamAssassin rule files -> compiled rule set. See spam_rules.h.
 */
#include "milters/spam/spam_rules_impl.h"
#include "milters/spam/spam_meta.h"
#include "conf/conf.h"
#include "lib/util.h"

#include <ctype.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULES_MAX_FILE_BYTES (16 * 1024 * 1024)
#define RULES_MAX_IF_DEPTH 64
#define RULES_MAX_NAME 128

/* ---- a small string -> index map ---- */

static size_t spam_hm_hash(const char *s)
{
	size_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

long spam_hm_get(const struct hmap *m, const char *k)
{
	if (m->cap == 0)
		return -1;
	for (size_t i = spam_hm_hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == NULL)
			return -1;
		if (!strcmp(m->keys[i], k))
			return (long)m->vals[i];
	}
}

static void spam_hm_grow(struct hmap *m)
{
	struct hmap o = *m;
	m->cap = o.cap ? o.cap * 2 : 256;
	m->keys = xcalloc(m->cap, sizeof(*m->keys));
	m->vals = xcalloc(m->cap, sizeof(*m->vals));
	m->n = 0;
	for (size_t i = 0; i < o.cap; i++)
		if (o.keys[i]) {
			spam_hm_put(m, o.keys[i], o.vals[i]);
			free(o.keys[i]);
		}
	free(o.keys);
	free(o.vals);
}

void spam_hm_put(struct hmap *m, const char *k, size_t v)
{
	if ((m->n + 1) * 2 > m->cap)
		spam_hm_grow(m);
	for (size_t i = spam_hm_hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == NULL) {
			m->keys[i] = xstrdup(k);
			m->vals[i] = v;
			m->n++;
			return;
		}
		if (!strcmp(m->keys[i], k)) {
			m->vals[i] = v;
			return;
		}
	}
}

void spam_hm_free(struct hmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* ---- the rule set ---- */

struct spam_rules *spam_rules_new(int score_set)
{
	struct spam_rules *rs = xcalloc(1, sizeof(*rs));
	rs->score_set = score_set < 0 || score_set > 3 ? 0 : score_set;
	return rs;
}

static void rule_clear(struct spam_rule *r)
{
	free(r->name);
	free(r->field);
	free(r->if_unset);
	free(r->pattern);
	if (r->re)
		pcre2_code_free(r->re);
	free(r->meta_expr);
	spam_meta_free(&r->meta);
	memset(r, 0, sizeof(*r));
}

void spam_rules_free(struct spam_rules **rsp)
{
	struct spam_rules *rs = rsp ? *rsp : NULL;
	if (rs == NULL)
		return;
	for (size_t i = 0; i < rs->n; i++)
		rule_clear(&rs->rules[i]);
	free(rs->rules);
	free(rs->dead);
	for (size_t i = 0; i < rs->nattrs; i++)
		free(rs->attrs[i].describe);
	free(rs->attrs);
	spam_hm_free(&rs->by_name);
	spam_hm_free(&rs->attr_idx);
	spam_hm_free(&rs->skipped);
	spam_hm_free(&rs->replace);
	spam_hm_free(&rs->tags);
	for (size_t i = 0; i < rs->ntags; i++)
		free(rs->tagvals[i]);
	free(rs->tagvals);
	free(rs->tagkind);
	for (size_t i = 0; i < rs->nfiles; i++)
		free(rs->files[i]);
	free(rs->files);
	free(rs->meta_order);
	free(rs->cache_dir);
	for (int k = 0; k < 6; k++)
		free(rs->kind_idx[k]);
	for (int k = 0; k < 12; k++)
		if (rs->hs[k])
			hs_free_database(rs->hs[k]);
	free(rs);
	*rsp = NULL;
}

static struct attrs *attrs_of(struct spam_rules *rs, const char *name)
{
	long i = spam_hm_get(&rs->attr_idx, name);
	if (i >= 0)
		return &rs->attrs[i];
	if (rs->nattrs == rs->capattrs) {
		rs->capattrs = rs->capattrs ? rs->capattrs * 2 : 256;
		rs->attrs = xrealloc(rs->attrs, rs->capattrs * sizeof(*rs->attrs));
	}
	memset(&rs->attrs[rs->nattrs], 0, sizeof(rs->attrs[0]));
	spam_hm_put(&rs->attr_idx, name, rs->nattrs);
	return &rs->attrs[rs->nattrs++];
}

/* define - a new live definition of r->name (takes over r's strings). */
static void define(struct spam_rules *rs, struct spam_rule *r)
{
	long old = spam_hm_get(&rs->by_name, r->name);
	if (old >= 0)
		rs->dead[old] = 1;
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 256;
		rs->rules = xrealloc(rs->rules, rs->cap * sizeof(*rs->rules));
		rs->dead = xrealloc(rs->dead, rs->cap * sizeof(*rs->dead));
	}
	rs->rules[rs->n] = *r;
	rs->dead[rs->n] = 0;
	spam_hm_put(&rs->by_name, r->name, rs->n);
	rs->n++;
}

/* skip - name is defined in a form we do not run; an earlier live definition goes away. */
static void skip(struct spam_rules *rs, const char *name, enum skip_reason why)
{
	long old = spam_hm_get(&rs->by_name, name);
	if (old >= 0 && why != SKIP_BLOCK) {
		rs->dead[old] = 1;
		spam_hm_put(&rs->by_name, name, (size_t)-1);
	}
	long prev = spam_hm_get(&rs->skipped, name);
	if (prev < 0 || (prev == SKIP_BLOCK && why != SKIP_BLOCK))
		spam_hm_put(&rs->skipped, name, why);
}

/* ---- line helpers ---- */

struct ctx {
	struct spam_rules *rs;
	const char *file;
	int line;
	char **err;
};

static int fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = xvasprintf(fmt, ap);
	va_end(ap);
	*c->err = xasprintf("%s:%d: %s", c->file, c->line, m);
	free(m);
	return -1;
}

/* next_word - the next white-space separated word of *p (new string) or NULL. */
static char *next_word(const char **p)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == 0) {
		*p = s;
		return NULL;
	}
	const char *e = s;
	while (*e && *e != ' ' && *e != '\t')
		e++;
	*p = e;
	while (**p == ' ' || **p == '\t')
		(*p)++;
	return xstrndup(s, (size_t)(e - s));
}

static int valid_name(const char *n)
{
	if (n == NULL || *n == 0 || strlen(n) > RULES_MAX_NAME)
		return 0;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && *n != '_')
			return 0;
	return 1;
}

static void rtrim(char *s)
{
	size_t l = strlen(s);
	while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r'))
		s[--l] = 0;
}

/*
 * parse_regex - "/re/flags" or "m{re}flags" (any m-delimiter) -> pattern and
 * PCRE2 options. The closing delimiter is the last one on the line, as in
 * SpamAssassin. Returns 0 or -1 with *why (static).
 */
static int parse_regex(const char *s, char **pat_out, uint32_t *opts_out, const char **why)
{
	while (*s == ' ' || *s == '\t')
		s++;
	char open, close;
	if (*s == '/') {
		open = close = '/';
		s++;
	} else if (*s == 'm' && s[1] && !isalnum((unsigned char)s[1]) && s[1] != '_' &&
		   s[1] != ' ' && s[1] != '\t') {
		open = s[1];
		close = open == '{' ? '}' : open == '(' ? ')' : open == '[' ? ']' : open == '<' ? '>' : open;
		s += 2;
	} else {
		*why = "expected a regular expression /.../ or m{...}";
		return -1;
	}
	(void)open;
	const char *end = strrchr(s, close);
	if (end == NULL) {
		*why = "unterminated regular expression";
		return -1;
	}
	uint32_t opts = 0;
	for (const char *f = end + 1; *f; f++) {
		switch (*f) {
		case 'i': opts |= PCRE2_CASELESS; break;
		case 's': opts |= PCRE2_DOTALL; break;
		case 'm': opts |= PCRE2_MULTILINE; break;
		case 'x': opts |= PCRE2_EXTENDED; break;
		case 'g': case 'o': case 'a': case 'u': case 'l': case 'n': case 'p': break;
		case ' ': case '\t': case '\r': break;
		default:
			*why = "unknown regular expression flag";
			return -1;
		}
	}
	*pat_out = xstrndup(s, (size_t)(end - s));
	*opts_out = opts;
	return 0;
}

/* ---- if / ifplugin ---- */

struct ifexp {
	const char *s;
	int bad;
};

static void ie_ws(struct ifexp *e)
{
	while (*e->s == ' ' || *e->s == '\t')
		e->s++;
}

static double ie_or(struct ifexp *e);

static double ie_call(struct ifexp *e, const char *fn)
{
	ie_ws(e);
	if (*e->s != '(') {
		e->bad = 1;
		return 0;
	}
	const char *st = ++e->s;
	while (*e->s && *e->s != ')')
		e->s++;
	if (*e->s != ')') {
		e->bad = 1;
		return 0;
	}
	char *arg = xstrndup(st, (size_t)(e->s - st));
	e->s++;
	double v = 0;
	if (!strcmp(fn, "plugin"))
		v = strstr(arg, "::ReplaceTags") != NULL;
	else if (!strcmp(fn, "can"))
		v = strstr(arg, "::Conf::") != NULL && strstr(arg, "feature_capture_rules") == NULL;
	else
		e->bad = 1;
	free(arg);
	return v;
}

static double ie_unary(struct ifexp *e)
{
	ie_ws(e);
	if (*e->s == '!' && e->s[1] != '=') {
		e->s++;
		return ie_unary(e) == 0;
	}
	if (*e->s == '(') {
		e->s++;
		double v = ie_or(e);
		ie_ws(e);
		if (*e->s == ')')
			e->s++;
		else
			e->bad = 1;
		return v;
	}
	if (isdigit((unsigned char)*e->s)) {
		char *end;
		double v = strtod(e->s, &end);
		e->s = end;
		return v;
	}
	if (!strncmp(e->s, "version", 7)) {
		e->s += 7;
		return 4.000000;
	}
	if (!strncmp(e->s, "perl_version", 12)) {
		e->s += 12;
		return 5.036;
	}
	if (!strncmp(e->s, "plugin", 6)) {
		e->s += 6;
		return ie_call(e, "plugin");
	}
	if (!strncmp(e->s, "can", 3)) {
		e->s += 3;
		return ie_call(e, "can");
	}
	e->bad = 1;
	return 0;
}

static double ie_cmp(struct ifexp *e)
{
	double a = ie_unary(e);
	ie_ws(e);
	static const char *const ops[] = { ">=", "<=", "==", "!=", ">", "<" };
	for (int i = 0; i < 6; i++) {
		size_t l = strlen(ops[i]);
		if (!strncmp(e->s, ops[i], l)) {
			e->s += l;
			double b = ie_unary(e);
			switch (i) {
			case 0: return a >= b;
			case 1: return a <= b;
			case 2: return a == b;
			case 3: return a != b;
			case 4: return a > b;
			default: return a < b;
			}
		}
	}
	return a;
}

static double ie_and(struct ifexp *e)
{
	double a = ie_cmp(e);
	for (;;) {
		ie_ws(e);
		if (strncmp(e->s, "&&", 2))
			return a;
		e->s += 2;
		double b = ie_cmp(e);
		a = a != 0 && b != 0;
	}
}

static double ie_or(struct ifexp *e)
{
	double a = ie_and(e);
	for (;;) {
		ie_ws(e);
		if (strncmp(e->s, "||", 2))
			return a;
		e->s += 2;
		double b = ie_and(e);
		a = a != 0 || b != 0;
	}
}

/* ---- directives ---- */

static const char *const skipped_types[] = {
	"mimeheader", "uri_detail", "askdns", "urirhssub", "urirhsbl", "urinsrhsbl",
	"urinsrhssub", "urifullnsrhsbl", "urifullnsrhssub", "uridnsbl", "uridnssub",
	"urirhsbl", "check_rbl", "hashbl", "header_eval", NULL,
};

/* SpamAssassin settings that configure its plugins or its own output: accepted, ignored. */
static const char *const ignored_prefixes[] = {
	"bayes_", "dns_", "util_rb_", "def_whitelist", "def_welcomelist", "whitelist_",
	"welcomelist_", "blacklist_", "blocklist_", "unwhitelist_", "unwelcomelist_",
	"unblacklist_", "unblocklist_", "txrep_", "clear_", "report", "unsafe_report",
	"freemail_", "url_shortener", "enlist_", "delist_", "uridnsbl_", "adsp_override",
	"redirector_pattern", "add_header", "remove_header", "rewrite_header",
	"originating_ip_headers", "required_score", "ok_locales", "ok_languages", "fns_",
	"asn_", "loadplugin", "tryplugin", "require_version", "trusted_networks",
	"internal_networks", "msa_networks", "use_bayes", "skip_rbl_checks", "lock_method",
	"envelope_sender_header", "shortcircuit", "priority", "reuse", "test", "lang",
	"use_auto_whitelist", "use_auto_welcomelist", "auto_whitelist", "auto_welcomelist",
	"normalize_charset", "body_part_scan_size", "rawbody_part_scan_size", "pyzor_",
	"razor_", "dcc_", "use_pyzor", "use_razor2", "use_dcc", "urirhsbl_", "hashcash_",
	"spamcop_", "textcat_", "inactive_", "dkim_", "spf_", "unwhitelist", "score_set",
	"parse_dkim_uris", "allow_user_rules", "user_scores_", "fold_headers",
	"uri_block_", "mimeheader_", "clear", "ignore_always_matching_regexps",
	"check_rbl_", "geodb_", "country_db_", "olevba_", "uuencode_", "extract_",
	"decode_short", "url_shortener_", "url_redirect", "short_url",
	NULL,
};

static int is_ignored_setting(const char *w)
{
	for (int i = 0; ignored_prefixes[i]; i++)
		if (!strncmp(w, ignored_prefixes[i], strlen(ignored_prefixes[i])))
			return 1;
	return 0;
}

static int parse_score(struct ctx *c, const char *rest)
{
	const char *p = rest;
	char *name = next_word(&p);
	if (!valid_name(name)) {
		free(name);
		return fail(c, "score: expected a rule name");
	}
	double v[4];
	int n = 0;
	while (*p && n < 4) {
		char *w = next_word(&p);
		if (w == NULL)
			break;
		const char *num = w;
		if (*num == '(')	/* "(1.0)": SpamAssassin's untuned-score notation */
			num++;
		char *end;
		v[n] = strtod(num, &end);
		if (end == num || (*end && *end != ')')) {
			int rc = fail(c, "score: \"%s\" is not a number", num);
			free(w);
			free(name);
			return rc;
		}
		n++;
		free(w);
	}
	if (n != 1 && n != 4) {
		free(name);
		return fail(c, "score: expected 1 or 4 numbers");
	}
	struct attrs *a = attrs_of(c->rs, name);
	for (int i = 0; i < 4; i++)
		a->score[i] = v[n == 1 ? 0 : i];
	a->nscores = n;
	free(name);
	return 0;
}

static int parse_tflags(struct ctx *c, const char *rest)
{
	const char *p = rest;
	char *name = next_word(&p);
	if (!valid_name(name)) {
		free(name);
		return fail(c, "tflags: expected a rule name");
	}
	struct attrs *a = attrs_of(c->rs, name);
	a->tflags = 0;
	char *w;
	while ((w = next_word(&p)) != NULL) {
		if (!strcmp(w, "multiple"))
			a->tflags |= SPAM_TF_MULTIPLE;
		else if (!strcmp(w, "nice"))
			a->tflags |= SPAM_TF_NICE;
		else if (!strcmp(w, "net"))
			a->tflags |= SPAM_TF_NET;
		else if (!strcmp(w, "learn") || !strcmp(w, "noautolearn"))
			a->tflags |= SPAM_TF_LEARN;
		else if (!strncmp(w, "maxhits=", 8))
			a->maxhits = (unsigned)strtoul(w + 8, NULL, 10);
		/* userconf, autolearn_force, a, range=, domains_only, ...: accepted, no meaning here */
		free(w);
	}
	free(name);
	return 0;
}

static int parse_header_rule(struct ctx *c, struct spam_rule *r, const char *spec)
{
	if (!strncmp(spec, "exists:", 7)) {
		char *f = xstrdup(spec + 7);
		rtrim(f);
		if (*f == 0 || strchr(f, ' ')) {
			free(f);
			return fail(c, "header %s: exists: needs one header name", r->name);
		}
		r->field = f;
		r->exists = 1;
		return 0;
	}
	const char *op = strstr(spec, "=~");
	const char *nop = strstr(spec, "!~");
	if (nop && (!op || nop < op)) {
		op = nop;
		r->negate = 1;
	}
	if (op == NULL)
		return fail(c, "header %s: expected \"Field =~ /re/\" or \"exists:Field\"", r->name);
	char *field = xstrndup(spec, (size_t)(op - spec));
	rtrim(field);
	if (*field == 0 || strchr(field, ' ')) {
		free(field);
		return fail(c, "header %s: bad header field name", r->name);
	}
	char *colon = strchr(field, ':');
	while (colon) {
		*colon = 0;
		char *mod = colon + 1;
		char *next = strchr(mod, ':');
		if (next)
			*next = 0;
		if (!strcmp(mod, "raw"))
			r->hdr_mods |= SPAM_HDR_RAW;
		else if (!strcmp(mod, "addr"))
			r->hdr_mods |= SPAM_HDR_ADDR;
		else if (!strcmp(mod, "name"))
			r->hdr_mods |= SPAM_HDR_NAME;
		else if (!strcmp(mod, "host"))
			r->hdr_mods |= SPAM_HDR_HOST;
		else if (!strcmp(mod, "domain"))
			r->hdr_mods |= SPAM_HDR_DOMAIN;
		else if (!strcmp(mod, "first"))
			r->hdr_mods |= SPAM_HDR_FIRST;
		else if (!strcmp(mod, "last"))
			r->hdr_mods |= SPAM_HDR_LAST;
		else {
			int rc = fail(c, "header %s: unknown header modifier :%s", r->name, mod);
			free(field);
			return rc;
		}
		colon = next;
	}
	r->field = field;
	char *re = xstrdup(op + 2);
	rtrim(re);
	/* [if-unset: text] at the end */
	size_t rl = strlen(re);
	if (rl && re[rl - 1] == ']') {
		char *iu = strstr(re, "[if-unset:");
		if (iu) {
			char *v = iu + 10;
			while (*v == ' ')
				v++;
			r->if_unset = xstrndup(v, (size_t)(re + rl - 1 - v));
			rtrim(r->if_unset);
			*iu = 0;
			rtrim(re);
		}
	}
	const char *why;
	int rc = parse_regex(re, &r->pattern, &r->re_opts, &why);
	free(re);
	if (rc < 0)
		return fail(c, "header %s: %s", r->name, why);
	return 0;
}

static int parse_rule(struct ctx *c, enum spam_rule_kind kind, const char *kw, const char *rest)
{
	const char *p = rest;
	char *name = next_word(&p);
	if (!valid_name(name)) {
		free(name);
		return fail(c, "%s: expected a rule name", kw);
	}
	if (*p == 0) {
		int rc = fail(c, "%s %s: missing definition", kw, name);
		free(name);
		return rc;
	}
	if (kind != SPAM_RULE_META &&
	    (!strncmp(p, "eval:", 5) || !strncmp(p, "rbleval:", 8))) {
		skip(c->rs, name, SKIP_EVAL);
		free(name);
		return 0;
	}
	struct spam_rule r;
	memset(&r, 0, sizeof(r));
	r.name = name;
	r.kind = kind;
	r.file = c->rs->files[c->rs->nfiles - 1];
	r.line = c->line;
	int rc = 0;
	if (kind == SPAM_RULE_META) {
		r.meta_expr = xstrdup(p);
		rtrim(r.meta_expr);
		const char *why;
		r.meta = spam_meta_parse(r.meta_expr, &why);
		if (r.meta == NULL)
			rc = fail(c, "meta %s: %s", name, why);
	} else if (kind == SPAM_RULE_HEADER) {
		rc = parse_header_rule(c, &r, p);
	} else {
		const char *why;
		if (parse_regex(p, &r.pattern, &r.re_opts, &why) < 0)
			rc = fail(c, "%s %s: %s", kw, name, why);
	}
	if (rc < 0) {
		rule_clear(&r);
		return -1;
	}
	define(c->rs, &r);
	return 0;
}

static int add_tag(struct ctx *c, int kind, const char *rest)
{
	const char *p = rest;
	char *name = next_word(&p);
	if (!valid_name(name)) {
		free(name);
		return fail(c, "replace tag: expected a tag name");
	}
	char *v = xstrdup(p);
	rtrim(v);
	struct spam_rules *rs = c->rs;
	long i = spam_hm_get(&rs->tags, name);
	if (i < 0 || rs->tagkind[i] != kind) {
		rs->tagvals = xrealloc(rs->tagvals, (rs->ntags + 1) * sizeof(*rs->tagvals));
		rs->tagkind = xrealloc(rs->tagkind, (rs->ntags + 1) * sizeof(*rs->tagkind));
		i = (long)rs->ntags++;
		rs->tagvals[i] = NULL;
		rs->tagkind[i] = kind;
		/* pre/inter/post names live beside plain tags: key "kind:name" */
		char *k = kind ? xasprintf("%d:%s", kind, name) : xstrdup(name);
		spam_hm_put(&rs->tags, k, (size_t)i);
		free(k);
	}
	free(rs->tagvals[i]);
	rs->tagvals[i] = v;
	free(name);
	return 0;
}

static int directive(struct ctx *c, const char *kw, const char *rest)
{
	static const struct { const char *kw; enum spam_rule_kind kind; } kinds[] = {
		{ "header", SPAM_RULE_HEADER }, { "body", SPAM_RULE_BODY },
		{ "rawbody", SPAM_RULE_RAWBODY }, { "uri", SPAM_RULE_URI },
		{ "full", SPAM_RULE_FULL }, { "meta", SPAM_RULE_META },
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(kw, kinds[i].kw))
			return parse_rule(c, kinds[i].kind, kw, rest);
	if (!strcmp(kw, "score"))
		return parse_score(c, rest);
	if (!strcmp(kw, "tflags"))
		return parse_tflags(c, rest);
	if (!strcmp(kw, "describe")) {
		const char *p = rest;
		char *name = next_word(&p);
		if (!valid_name(name)) {
			free(name);
			return fail(c, "describe: expected a rule name");
		}
		struct attrs *a = attrs_of(c->rs, name);
		free(a->describe);
		a->describe = xstrdup(p);
		rtrim(a->describe);
		free(name);
		return 0;
	}
	if (!strcmp(kw, "replace_tag"))
		return add_tag(c, 0, rest);
	if (!strcmp(kw, "replace_pre"))
		return add_tag(c, 1, rest);
	if (!strcmp(kw, "replace_inter"))
		return add_tag(c, 2, rest);
	if (!strcmp(kw, "replace_post"))
		return add_tag(c, 3, rest);
	if (!strcmp(kw, "replace_rules")) {
		const char *p = rest;
		char *w;
		while ((w = next_word(&p)) != NULL) {
			spam_hm_put(&c->rs->replace, w, 1);
			free(w);
		}
		return 0;
	}
	if (!strcmp(kw, "include"))
		return fail(c, "include is not supported: list the file in spam_rules_files");
	for (int i = 0; skipped_types[i]; i++)
		if (!strcmp(kw, skipped_types[i])) {
			const char *p = rest;
			char *name = next_word(&p);
			if (valid_name(name))
				skip(c->rs, name, SKIP_TYPE);
			free(name);
			return 0;
		}
	if (is_ignored_setting(kw)) {
		c->rs->st.ignored_settings++;
		return 0;
	}
	return fail(c, "unknown directive \"%s\"", kw);
}

/* block_rule - a rule definition inside a false if-block: remember the name. */
static void block_rule(struct ctx *c, const char *kw, const char *rest)
{
	static const char *const defs[] = { "header", "body", "rawbody", "uri", "full", "meta", NULL };
	int is_def = 0;
	for (int i = 0; defs[i]; i++)
		if (!strcmp(kw, defs[i]))
			is_def = 1;
	for (int i = 0; skipped_types[i]; i++)
		if (!strcmp(kw, skipped_types[i]))
			is_def = 1;
	if (!is_def)
		return;
	const char *p = rest;
	char *name = next_word(&p);
	/* an eval: test in a plugin block is counted as eval: it would need the plugin's code */
	int eval = !strncmp(p, "eval:", 5) || !strncmp(p, "rbleval:", 8);
	int type = 0;
	for (int i = 0; skipped_types[i]; i++)
		if (!strcmp(kw, skipped_types[i]))
			type = 1;
	if (valid_name(name))
		skip(c->rs, name, eval ? SKIP_EVAL : type ? SKIP_TYPE : SKIP_BLOCK);
	free(name);
}

int spam_rules_load_string(struct spam_rules *rs, const char *text, const char *name,
			   char **err_out)
{
	if (rs->compiled) {
		*err_out = xasprintf("%s: rule set already compiled", name);
		return -1;
	}
	rs->files = xrealloc(rs->files, (rs->nfiles + 1) * sizeof(*rs->files));
	rs->files[rs->nfiles++] = xstrdup(name);
	rs->st.files++;
	struct ctx c = { rs, rs->files[rs->nfiles - 1], 0, err_out };
	int stack[RULES_MAX_IF_DEPTH];	/* 1 = this level active */
	int cond[RULES_MAX_IF_DEPTH];	/* the level's own condition (for else) */
	int depth = 0;
	const char *s = text;
	while (*s) {
		c.line++;
		const char *eol = strchr(s, '\n');
		size_t ll = eol ? (size_t)(eol - s) : strlen(s);
		char *line = xstrndup(s, ll);
		s += eol ? ll + 1 : ll;
		/* comments: '#' unless escaped as \# (then it stands for '#') */
		char *w = line;
		for (char *q = line; *q; q++) {
			if (*q == '\\' && q[1] == '#') {
				*w++ = '#';
				q++;
				continue;
			}
			if (*q == '#')
				break;
			*w++ = *q;
		}
		*w = 0;
		rtrim(line);
		const char *p = line;
		char *kw = next_word(&p);
		if (kw == NULL) {
			free(line);
			continue;
		}
		int active = depth == 0 || stack[depth - 1];
		int rc = 0;
		if (!strcmp(kw, "if") || !strcmp(kw, "ifplugin")) {
			if (depth == RULES_MAX_IF_DEPTH) {
				rc = fail(&c, "if blocks nested too deeply");
			} else {
				int v;
				if (!strcmp(kw, "ifplugin")) {
					v = strstr(p, "::ReplaceTags") != NULL;
				} else {
					struct ifexp e = { p, 0 };
					v = ie_or(&e) != 0;
					ie_ws(&e);
					if (e.bad || *e.s)
						rc = fail(&c, "if: cannot evaluate \"%s\"", p);
				}
				cond[depth] = v;
				stack[depth] = active && v;
				depth++;
			}
		} else if (!strcmp(kw, "else")) {
			if (depth == 0) {
				rc = fail(&c, "else without if");
			} else {
				int parent = depth == 1 || stack[depth - 2];
				cond[depth - 1] = !cond[depth - 1];
				stack[depth - 1] = parent && cond[depth - 1];
			}
		} else if (!strcmp(kw, "endif")) {
			if (depth == 0)
				rc = fail(&c, "endif without if");
			else
				depth--;
		} else if (!active) {
			block_rule(&c, kw, p);
		} else {
			rc = directive(&c, kw, p);
		}
		free(kw);
		free(line);
		if (rc < 0)
			return -1;
	}
	if (depth) {
		*err_out = xasprintf("%s:%d: if block not closed by endif", name, c.line);
		return -1;
	}
	return 0;
}

int spam_rules_load_file(struct spam_rules *rs, const char *path, char **err_out)
{
	char *text;
	size_t len;
	if (conf_read_file(path, RULES_MAX_FILE_BYTES, &text, &len, err_out) < 0)
		return -1;
	if (memchr(text, 0, len)) {
		free(text);
		*err_out = xasprintf("%s: NUL byte in rule file", path);
		return -1;
	}
	int rc = spam_rules_load_string(rs, text, path, err_out);
	free(text);
	return rc;
}

int spam_rules_load_globs(struct spam_rules *rs, const char *const *globs, size_t n,
			  char **err_out)
{
	for (size_t i = 0; i < n; i++) {
		glob_t g;
		int rc = glob(globs[i], GLOB_ERR, NULL, &g);
		if (rc != 0) {
			*err_out = xasprintf("%s: no rule file matches", globs[i]);
			if (rc != GLOB_NOMATCH)
				globfree(&g);
			return -1;
		}
		for (size_t k = 0; k < g.gl_pathc; k++)
			if (spam_rules_load_file(rs, g.gl_pathv[k], err_out) < 0) {
				globfree(&g);
				return -1;
			}
		globfree(&g);
	}
	return 0;
}
