/*
 * table: Postfix-style lookup tables. See table.h for the contract.
 * A table is a spec plus its content (struct table_data); reload builds new
 * content beside the old and swaps only on success. Files are read with
 * conf_lines, so comments and continuation lines follow Postfix everywhere.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "conf/table.h"
#include "conf/conf.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <pcre2.h>
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_MAX_FILE_BYTES ((size_t)256 * 1024 * 1024)
#define TABLE_MAX_GROUPS 10			/* $0..$9 */
#define TABLE_PCRE_MATCH_LIMIT 1000000
#define TABLE_PCRE_DEPTH_LIMIT 10000
#define TABLE_PCRE_HEAP_LIMIT_KB 20000
#define TABLE_MAX_PATTERN_BYTES 65536

enum table_type { T_HASH, T_CIDR, T_REGEXP, T_PCRE, T_STATIC, T_INLINE };

/* hash-like content: open addressing, keys lowercased, first entry wins */
struct kv {
	char *key;		/* key, NUL, value, NUL in one allocation */
	const char *val;
};
struct kv_map {
	struct kv *slot;
	size_t cap, n;
};

struct cidr_rule {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int prefix;
	char *val;
};

enum { RE_MATCH, RE_IF, RE_ENDIF };
struct re_rule {
	int kind;
	int negate;
	regex_t posix;		/* regexp: */
	pcre2_code *pcre;	/* pcre: */
	char *val;		/* RE_MATCH: result text with $n */
	int lineno;
	size_t endif;		/* RE_IF: index of the matching RE_ENDIF */
};

struct table_data {
	struct kv_map map;
	struct cidr_rule *cidr;
	size_t n_cidr;
	struct re_rule *re;
	size_t n_re;
	char *static_val;
};

struct table {
	char *spec;
	enum table_type type;
	char *name;		/* the part after "type:" */
	struct table_data d;
	struct sbuf result;	/* $n substitution output */
	struct sbuf key;	/* lowercased key */
	pcre2_match_data *md;
	pcre2_match_context *mctx;
};

static int is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* ------------------------------------------------------------ kv map */

static size_t kv_hash(const char *s)
{
	size_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct kv *kv_slot(const struct kv_map *m, const char *key)
{
	size_t i = kv_hash(key) & (m->cap - 1);
	while (m->slot[i].key && strcmp(m->slot[i].key, key) != 0)
		i = (i + 1) & (m->cap - 1);
	return &m->slot[i];
}

static void kv_grow(struct kv_map *m)
{
	struct kv_map old = *m;
	m->cap = old.cap ? old.cap * 2 : 64;
	m->slot = xcalloc(m->cap, sizeof *m->slot);
	for (size_t i = 0; i < old.cap; i++)
		if (old.slot[i].key)
			*kv_slot(m, old.slot[i].key) = old.slot[i];
	free(old.slot);
}

/* kv_put - key must be lowercased already; a duplicate key is ignored. */
static void kv_put(struct kv_map *m, const char *key, const char *val)
{
	if ((m->n + 1) * 2 > m->cap)
		kv_grow(m);
	struct kv *s = kv_slot(m, key);
	if (s->key)
		return;
	size_t kl = strlen(key), vl = strlen(val);
	s->key = xmalloc(kl + vl + 2);
	memcpy(s->key, key, kl + 1);
	memcpy(s->key + kl + 1, val, vl + 1);
	s->val = s->key + kl + 1;
	m->n++;
}

static const char *kv_get(const struct kv_map *m, const char *key)
{
	if (m->cap == 0)
		return NULL;
	return kv_slot(m, key)->val;
}

static void kv_free(struct kv_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slot[i].key);
	free(m->slot);
	memset(m, 0, sizeof *m);
}

static void data_free(struct table_data *d)
{
	kv_free(&d->map);
	for (size_t i = 0; i < d->n_cidr; i++)
		free(d->cidr[i].val);
	free(d->cidr);
	for (size_t i = 0; i < d->n_re; i++) {
		struct re_rule *r = &d->re[i];
		if (r->pcre)
			pcre2_code_free(r->pcre);
		else if (r->kind != RE_ENDIF)
			regfree(&r->posix);
		free(r->val);
	}
	free(d->re);
	free(d->static_val);
	memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------- hash/texthash */

/* "key value": key up to white space, value the rest. */
static int hash_line(struct table_data *d, const char *file, int lineno, const char *line,
		     char **err_out)
{
	size_t kl = 0;
	while (line[kl] && !is_ws((unsigned char)line[kl]))
		kl++;
	const char *v = line + kl;
	while (is_ws((unsigned char)*v))
		v++;
	if (!*v) {
		*err_out = xasprintf("%s:%d: expected format: key whitespace value", file, lineno);
		return -1;
	}
	char *key = xstrndup(line, kl);
	ascii_lower(key);
	kv_put(&d->map, key, v);
	free(key);
	return 0;
}

/* ---------------------------------------------------------------- cidr */

/* parse_ip - text (optionally in [ ]) -> family + 16 bytes; v4-mapped v6 -> v4. */
static int parse_ip(const char *s, size_t n, int *family_out, unsigned char *addr)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
		s++, n -= 2;
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family_out = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, addr) != 1)
		return -1;
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (memcmp(addr, mapped, 12) == 0) {
		memmove(addr, addr + 12, 4);
		memset(addr + 4, 0, 12);
		*family_out = AF_INET;
		return 0;
	}
	*family_out = AF_INET6;
	return 0;
}

/* prefix_match - do the first bits of a and b agree? */
static int prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
	int whole = bits / 8, rest = bits % 8;
	if (memcmp(a, b, (size_t)whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* parse_cidr - "addr", "addr/len", "[v6]/len", "[v6/len]" into r. */
static const char *parse_cidr(const char *pat, struct cidr_rule *r)
{
	size_t n = strlen(pat);
	char *tmp = xstrdup(pat), *slash;
	if (n >= 2 && tmp[0] == '[' && tmp[n - 1] == ']')
		tmp[n - 1] = 0, memmove(tmp, tmp + 1, n - 1);
	slash = strchr(tmp, '/');
	size_t alen = slash ? (size_t)(slash - tmp) : strlen(tmp);
	const char *why = NULL;
	if (parse_ip(tmp, alen, &r->family, r->addr) < 0 ||
	    (strchr(pat, ':') == NULL) != (r->family == AF_INET))
		why = "bad network address";
	int max = r->family == AF_INET ? 32 : 128;
	r->prefix = max;
	if (!why && slash) {
		char *end;
		long p = slash[1] >= '0' && slash[1] <= '9' ? strtol(slash + 1, &end, 10) : -1;
		if (p < 0 || p > max || *end)
			why = "bad network prefix length";
		else
			r->prefix = (int)p;
	}
	if (!why) {
		unsigned char masked[16] = { 0 };
		for (int b = 0; b < r->prefix; b++)
			masked[b / 8] |= r->addr[b / 8] & (0x80 >> (b % 8));
		if (memcmp(masked, r->addr, 16) != 0)
			why = "non-null host address bits (the network address must end in zeros)";
	}
	free(tmp);
	return why;
}

static int cidr_line(struct table_data *d, const char *file, int lineno, const char *line,
		     char **err_out)
{
	size_t pl = 0;
	while (line[pl] && !is_ws((unsigned char)line[pl]))
		pl++;
	const char *v = line + pl;
	while (is_ws((unsigned char)*v))
		v++;
	char *pat = xstrndup(line, pl);
	struct cidr_rule r;
	const char *why = *v ? parse_cidr(pat, &r) : "expected format: network/prefix result";
	if (why) {
		*err_out = xasprintf("%s:%d: %s: \"%s\"", file, lineno, why, pat);
		free(pat);
		return -1;
	}
	free(pat);
	r.val = xstrdup(v);
	d->cidr = xrealloc(d->cidr, (d->n_cidr + 1) * sizeof *d->cidr);
	d->cidr[d->n_cidr++] = r;
	return 0;
}

static const char *cidr_lookup(const struct table_data *d, const char *key)
{
	int family;
	unsigned char addr[16];
	if (parse_ip(key, strlen(key), &family, addr) < 0)
		return NULL;
	for (size_t i = 0; i < d->n_cidr; i++) {
		const struct cidr_rule *r = &d->cidr[i];
		if (r->family == family && prefix_match(r->addr, addr, r->prefix))
			return r->val;
	}
	return NULL;
}

/* ------------------------------------------------------ regexp / pcre */

/*
 * subst_check - result text: "$$", "$n" and "${n}" (n = 1..9; $0 too) with
 * n no larger than the pattern's group count. NULL if fine, else reason.
 */
static const char *subst_check(const char *res, int ngroups, int negate)
{
	for (const char *s = res; *s; s++) {
		if (*s != '$')
			continue;
		if (s[1] == '$') {
			s++;
			continue;
		}
		int braced = s[1] == '{';
		const char *p = s + 1 + braced;
		if (*p < '0' || *p > '9' || (braced && p[1] != '}'))
			return "bad $ substitution in result (use $1..$9 or $$)";
		if (negate)
			return "$number substitution in the result of a negated pattern";
		if (*p - '0' > ngroups)
			return "$number in result larger than the number of ( ) groups";
		s = p + braced;
	}
	return NULL;
}

/* subst_apply - expand res with groups so/eo of key (-1 = unset) into out. */
static void subst_apply(struct sbuf *out, const char *res, const char *key, const long *so,
			const long *eo)
{
	sbuf_reset(out);
	for (const char *s = res; *s; s++) {
		if (*s != '$') {
			sbuf_addc(out, *s);
			continue;
		}
		if (s[1] == '$') {
			sbuf_addc(out, '$');
			s++;
			continue;
		}
		int braced = s[1] == '{';
		int g = s[1 + braced] - '0';	/* checked by subst_check */
		if (so[g] >= 0 && eo[g] >= so[g])
			sbuf_add(out, key + so[g], (size_t)(eo[g] - so[g]));
		s += 1 + 2 * braced;
	}
	sbuf_adds(out, "");
}

struct re_pat {
	int negate;
	char *pattern;
	char flags[16];
	const char *rest;	/* text after the flags, trimmed at the front */
};

/* parse_pattern - "!/pattern/flags rest" with any non-alphanumeric delimiter. */
static const char *parse_pattern(const char *s, struct re_pat *rp)
{
	memset(rp, 0, sizeof *rp);
	if (*s == '!') {
		rp->negate = 1;
		s++;
	}
	char delim = *s;
	if (!delim || is_ws((unsigned char)delim) || delim == '\\' ||
	    (delim >= '0' && delim <= '9') || ((delim | 32) >= 'a' && (delim | 32) <= 'z'))
		return "expected /pattern/";
	const char *p = s + 1;
	while (*p && *p != delim)
		p += (p[0] == '\\' && p[1]) ? 2 : 1;
	if (!*p)
		return "missing closing delimiter of /pattern/";
	if ((size_t)(p - s - 1) > TABLE_MAX_PATTERN_BYTES)
		return "pattern too long";
	rp->pattern = xstrndup(s + 1, (size_t)(p - s - 1));
	size_t nf = 0;
	for (p++; *p && !is_ws((unsigned char)*p); p++) {
		if (nf + 1 >= sizeof rp->flags)
			return "too many pattern flags";
		rp->flags[nf++] = *p;
	}
	while (is_ws((unsigned char)*p))
		p++;
	rp->rest = p;
	return NULL;
}

/* compile_posix - regexp_table(5) flags: i (icase, on), x (extended, on), m (newline, off). */
static char *compile_posix(struct re_rule *r, const struct re_pat *rp, int *ngroups_out)
{
	int icase = 1, ext = 1, nl = 0;
	for (const char *f = rp->flags; *f; f++) {
		if (*f == 'i')
			icase = !icase;
		else if (*f == 'x')
			ext = !ext;
		else if (*f == 'm')
			nl = !nl;
		else
			return xasprintf("unknown regexp flag \"%c\"", *f);
	}
	int cflags = (icase ? REG_ICASE : 0) | (ext ? REG_EXTENDED : 0) | (nl ? REG_NEWLINE : 0);
	int rc = regcomp(&r->posix, rp->pattern, cflags);
	if (rc != 0) {
		char buf[256];
		regerror(rc, &r->posix, buf, sizeof buf);
		regfree(&r->posix);
		return xasprintf("bad regular expression /%s/: %s", rp->pattern, buf);
	}
	*ngroups_out = (int)r->posix.re_nsub;
	return NULL;
}

/* pcre_flag - pcre_table(5) flag letter -> PCRE2 option (0 = unknown). */
static uint32_t pcre_flag(char f)
{
	switch (f) {
	case 'i': return PCRE2_CASELESS;
	case 'm': return PCRE2_MULTILINE;
	case 's': return PCRE2_DOTALL;
	case 'x': return PCRE2_EXTENDED;
	case 'A': return PCRE2_ANCHORED;
	case 'E': return PCRE2_DOLLAR_ENDONLY;
	case 'U': return PCRE2_UNGREEDY;
	}
	return 0;
}

static char *compile_pcre(struct re_rule *r, const struct re_pat *rp, int *ngroups_out)
{
	uint32_t opts = PCRE2_CASELESS;
	for (const char *f = rp->flags; *f; f++) {
		if (*f == 'X')	/* PCRE1 "extra": no PCRE2 equivalent; accepted */
			continue;
		if (!pcre_flag(*f))
			return xasprintf("unknown pcre flag \"%c\"", *f);
		opts ^= pcre_flag(*f);
	}
	int ec;
	PCRE2_SIZE off;
	r->pcre = pcre2_compile((PCRE2_SPTR)rp->pattern, PCRE2_ZERO_TERMINATED, opts, &ec, &off,
				NULL);
	if (!r->pcre) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		return xasprintf("bad regular expression /%s/ at offset %zu: %s", rp->pattern,
				 (size_t)off, (char *)msg);
	}
	uint32_t n = 0;
	pcre2_pattern_info(r->pcre, PCRE2_INFO_CAPTURECOUNT, &n);
	*ngroups_out = (int)n;
	return NULL;
}

/* re_rule_parse - one logical line of a regexp:/pcre: file into r. */
static char *re_rule_parse(struct re_rule *r, const char *line, int pcre)
{
	memset(r, 0, sizeof *r);
	if (ascii_strcasecmp(line, "endif") == 0) {
		r->kind = RE_ENDIF;
		return NULL;
	}
	int is_if = ascii_strncasecmp(line, "if", 2) == 0 && is_ws((unsigned char)line[2]);
	if (is_if) {
		r->kind = RE_IF;
		for (line += 2; is_ws((unsigned char)*line); line++)
			;
	}
	struct re_pat rp;
	const char *why = parse_pattern(line, &rp);
	char *err = why ? xstrdup(why) : NULL;
	int ngroups = 0, compiled = 0;
	if (!err)
		err = pcre ? compile_pcre(r, &rp, &ngroups) : compile_posix(r, &rp, &ngroups);
	compiled = !why && !err;
	r->negate = rp.negate;
	if (!err && is_if && *rp.rest)
		why = "text after the pattern of an IF";
	else if (!err && !is_if && !*rp.rest)
		why = "missing result after the pattern";
	else if (!err && !is_if)
		why = subst_check(rp.rest, ngroups, rp.negate);
	if (!err && why)
		err = xstrdup(why);
	if (!err && !is_if)
		r->val = xstrdup(rp.rest);
	if (err && compiled && r->pcre)
		pcre2_code_free(r->pcre);
	else if (err && compiled)
		regfree(&r->posix);
	free(rp.pattern);
	return err;
}

/*
 * re_line - add one rule. *depth counts open IFs; an open IF has
 * .endif == SIZE_MAX until its ENDIF arrives, so the innermost open IF is
 * the last such rule.
 */
static int re_line(struct table_data *d, int pcre, const char *file, int lineno,
		   const char *line, size_t *depth, char **err_out)
{
	struct re_rule r;
	char *why = re_rule_parse(&r, line, pcre);
	if (!why && r.kind == RE_ENDIF && *depth == 0)
		why = xstrdup("ENDIF without IF");
	if (why) {
		*err_out = xasprintf("%s:%d: %s", file, lineno, why);
		free(why);
		return -1;
	}
	r.lineno = lineno;
	d->re = xrealloc(d->re, (d->n_re + 1) * sizeof *d->re);
	d->re[d->n_re] = r;
	if (r.kind == RE_IF) {
		d->re[d->n_re].endif = SIZE_MAX;
		(*depth)++;
	} else if (r.kind == RE_ENDIF) {
		size_t i = d->n_re;
		while (d->re[--i].kind != RE_IF || d->re[i].endif != SIZE_MAX)
			;
		d->re[i].endif = d->n_re;
		(*depth)--;
	}
	d->n_re++;
	return 0;
}

/* rule_match - does rule r (ignoring negation) match key? Fills so/eo. */
static int rule_match(struct table *t, const struct re_rule *r, const char *key, long *so,
		    long *eo)
{
	for (int g = 0; g < TABLE_MAX_GROUPS; g++)
		so[g] = eo[g] = -1;
	if (!r->pcre) {
		regmatch_t pm[TABLE_MAX_GROUPS];
		if (regexec(&r->posix, key, TABLE_MAX_GROUPS, pm, 0) != 0)
			return 0;
		for (int g = 0; g < TABLE_MAX_GROUPS; g++)
			so[g] = pm[g].rm_so, eo[g] = pm[g].rm_eo;
		return 1;
	}
	/* XXX: a match that hits the PCRE2 limits counts as no match (no logging here). */
	int rc = pcre2_match(r->pcre, (PCRE2_SPTR)key, strlen(key), 0, 0, t->md, t->mctx);
	if (rc < 0)
		return 0;
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
	int n = rc == 0 ? TABLE_MAX_GROUPS : (rc < TABLE_MAX_GROUPS ? rc : TABLE_MAX_GROUPS);
	for (int g = 0; g < n; g++)
		if (ov[2 * g] != PCRE2_UNSET)
			so[g] = (long)ov[2 * g], eo[g] = (long)ov[2 * g + 1];
	return 1;
}

static const char *re_lookup(struct table *t, const char *key)
{
	const struct table_data *d = &t->d;
	long so[TABLE_MAX_GROUPS], eo[TABLE_MAX_GROUPS];
	for (size_t i = 0; i < d->n_re; i++) {
		const struct re_rule *r = &d->re[i];
		if (r->kind == RE_ENDIF)
			continue;
		int m = rule_match(t, r, key, so, eo) != r->negate;
		if (r->kind == RE_IF) {
			if (!m)
				i = r->endif;
			continue;
		}
		if (m) {
			subst_apply(&t->result, r->val, key, so, eo);
			return t->result.buf;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------ loading */

/* load_file - read t's file into d (fresh); returns 0 or -1 with *err_out. */
static int load_file(const struct table *t, struct table_data *d, char **err_out)
{
	char *text;
	size_t len;
	if (conf_read_file(t->name, TABLE_MAX_FILE_BYTES, &text, &len, err_out) < 0)
		return -1;
	struct conf_lines *r = conf_lines_new(text, len, t->name, CONF_MAX_LINE_BYTES);
	const char *line;
	int lineno, rc;
	size_t depth = 0;
	while ((rc = conf_lines_next(r, &line, &lineno, err_out)) > 0) {
		if (t->type == T_HASH)
			rc = hash_line(d, t->name, lineno, line, err_out);
		else if (t->type == T_CIDR)
			rc = cidr_line(d, t->name, lineno, line, err_out);
		else
			rc = re_line(d, t->type == T_PCRE, t->name, lineno, line, &depth, err_out);
		if (rc < 0)
			break;
	}
	if (rc == 0 && depth > 0) {
		size_t i = d->n_re;
		while (d->re[--i].kind != RE_IF || d->re[i].endif != SIZE_MAX)
			;
		*err_out = xasprintf("%s:%d: IF without ENDIF", t->name, d->re[i].lineno);
		rc = -1;
	}
	conf_lines_free(&r);
	free(text);
	return rc;
}

/* strip_braces - "{ text }" -> "text" (new string); other text copied. */
static char *strip_braces(const char *s)
{
	size_t n = strlen(s);
	while (n && is_ws((unsigned char)s[n - 1]))
		n--;
	while (n && is_ws((unsigned char)*s))
		s++, n--;
	if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
		s++, n -= 2;
		while (n && is_ws((unsigned char)*s))
			s++, n--;
		while (n && is_ws((unsigned char)s[n - 1]))
			n--;
	}
	return xstrndup(s, n);
}

/* inline_item - "key=value" or "{ key = value }" into d. */
static int inline_item(struct table_data *d, const char *spec, const char *item,
		       char **err_out)
{
	char *s = strip_braces(item), *eq = strchr(s, '=');
	if (!eq || eq == s) {
		*err_out = xasprintf("%s: bad entry \"%s\" (expected key=value)", spec, item);
		free(s);
		return -1;
	}
	char *k = s, *v = eq + 1;
	*eq = 0;
	char *kk = strip_braces(k), *vv = strip_braces(v);
	ascii_lower(kk);
	kv_put(&d->map, kk, vv);
	free(kk);
	free(vv);
	free(s);
	return 0;
}

static int load_inline(const struct table *t, struct table_data *d, char **err_out)
{
	size_t n = strlen(t->name);
	long level = 0;
	for (size_t i = 0; i < n && level >= 0; i++)
		level += t->name[i] == '{' ? 1 : t->name[i] == '}' ? -1 : 0;
	if (n < 2 || t->name[0] != '{' || t->name[n - 1] != '}' || level != 0) {
		*err_out = xasprintf("%s: expected inline:{ key=value, ... } with balanced braces",
				     t->spec);
		return -1;
	}
	char *inner = xstrndup(t->name + 1, n - 2);
	size_t ni;
	char **items = conf_split_list(inner, &ni);
	int rc = 0;
	for (size_t i = 0; i < ni && rc == 0; i++)
		rc = inline_item(d, t->spec, items[i], err_out);
	conf_list_free(items, ni);
	free(inner);
	return rc;
}

static int load_data(const struct table *t, struct table_data *d, char **err_out)
{
	memset(d, 0, sizeof *d);
	int rc;
	if (t->type == T_STATIC) {
		d->static_val = strip_braces(t->name);
		rc = 0;
	} else if (t->type == T_INLINE) {
		rc = load_inline(t, d, err_out);
	} else {
		rc = load_file(t, d, err_out);
	}
	if (rc < 0)
		data_free(d);
	return rc;
}

/*
 * Type names. The Postfix database types whose source is the same text file
 * (btree, lmdb, cdb, dbm, sdbm) are read like hash:, so main.cf lines can be
 * copied unchanged.
 */
static const struct {
	const char *name;
	enum table_type type;
} table_types[] = {
	{ "hash", T_HASH }, { "texthash", T_HASH }, { "btree", T_HASH }, { "lmdb", T_HASH },
	{ "cdb", T_HASH }, { "dbm", T_HASH }, { "sdbm", T_HASH }, { "cidr", T_CIDR },
	{ "regexp", T_REGEXP }, { "pcre", T_PCRE }, { "static", T_STATIC },
	{ "inline", T_INLINE },
};

static int parse_spec(struct table *t, const char *spec, char **err_out)
{
	const char *colon = strchr(spec, ':');
	if (!colon || colon == spec) {
		*err_out = xasprintf("bad table \"%s\" (expected type:name)", spec);
		return -1;
	}
	for (size_t i = 0; i < sizeof table_types / sizeof table_types[0]; i++) {
		const char *n = table_types[i].name;
		if (strlen(n) == (size_t)(colon - spec) && ascii_strncasecmp(n, spec, strlen(n)) == 0) {
			t->type = table_types[i].type;
			t->name = xstrdup(colon + 1);
			if (!*t->name && t->type != T_STATIC) {
				*err_out = xasprintf("bad table \"%s\" (missing name)", spec);
				return -1;
			}
			return 0;
		}
	}
	*err_out = xasprintf("unsupported table type in \"%s\"", spec);
	return -1;
}

struct table *table_open(const char *spec, char **err_out)
{
	struct table *t = xcalloc(1, sizeof *t);
	t->spec = xstrdup(spec);
	sbuf_init(&t->result);
	sbuf_init(&t->key);
	if (parse_spec(t, spec, err_out) < 0 || load_data(t, &t->d, err_out) < 0) {
		table_free(&t);
		return NULL;
	}
	if (t->type == T_PCRE) {
		t->md = pcre2_match_data_create(TABLE_MAX_GROUPS, NULL);
		t->mctx = pcre2_match_context_create(NULL);
		pcre2_set_match_limit(t->mctx, TABLE_PCRE_MATCH_LIMIT);
		pcre2_set_depth_limit(t->mctx, TABLE_PCRE_DEPTH_LIMIT);
		pcre2_set_heap_limit(t->mctx, TABLE_PCRE_HEAP_LIMIT_KB);
	}
	return t;
}

int table_reload(struct table *t, char **err_out)
{
	if (t->type == T_STATIC || t->type == T_INLINE)
		return 0;
	struct table_data fresh;
	if (load_data(t, &fresh, err_out) < 0)
		return -1;
	data_free(&t->d);
	t->d = fresh;
	return 0;
}

void table_free(struct table **tp)
{
	struct table *t = *tp;
	if (!t)
		return;
	data_free(&t->d);
	if (t->md)
		pcre2_match_data_free(t->md);
	if (t->mctx)
		pcre2_match_context_free(t->mctx);
	sbuf_free(&t->result);
	sbuf_free(&t->key);
	free(t->name);
	free(t->spec);
	free(t);
	*tp = NULL;
}

const char *table_spec(const struct table *t)
{
	return t->spec;
}

/* ------------------------------------------------------------ lookups */

int table_lookup(struct table *t, const char *key, const char **val_out)
{
	const char *v = NULL;
	switch (t->type) {
	case T_HASH:
	case T_INLINE:
		sbuf_reset(&t->key);
		sbuf_adds(&t->key, key);	/* always allocates: buf != NULL */
		ascii_lower(t->key.buf);
		v = kv_get(&t->d.map, t->key.buf);
		break;
	case T_CIDR:
		v = cidr_lookup(&t->d, key);
		break;
	case T_REGEXP:
	case T_PCRE:
		v = re_lookup(t, key);
		break;
	case T_STATIC:
		v = t->d.static_val;
		break;
	}
	if (v)
		*val_out = v;
	return v != NULL;
}

/* Tables whose keys are fixed strings (partial keys make sense). */
static int is_fixed(const struct table *t)
{
	return t->type == T_HASH || t->type == T_INLINE || t->type == T_STATIC;
}

/* lookup_n - table_lookup of the first n bytes of key. */
static int lookup_n(struct table *t, const char *key, size_t n, const char **val_out)
{
	char *k = xstrndup(key, n);
	int r = table_lookup(t, k, val_out);
	free(k);
	return r;
}

int table_lookup_domain(struct table *t, const char *domain, const char **val_out)
{
	if (table_lookup(t, domain, val_out))
		return 1;
	if (!is_fixed(t) || domain[0] == '[')
		return 0;
	for (const char *p = strchr(domain + 1, '.'); p && p[1]; p = strchr(p + 1, '.')) {
		if (table_lookup(t, p, val_out) || table_lookup(t, p + 1, val_out))
			return 1;
	}
	return 0;
}

/* XXX: no user+ext@domain -> user@domain step; the header's contract has no delimiter. */
int table_lookup_addr(struct table *t, const char *addr, int flags, const char **val_out)
{
	if (!*addr && (flags & TABLE_ADDR_ACCESS))
		return table_lookup(t, "<>", val_out);
	if (table_lookup(t, addr, val_out))
		return 1;
	const char *at = strrchr(addr, '@');
	if (!is_fixed(t) || !at)
		return 0;
	if (flags & TABLE_ADDR_ACCESS) {
		if (at[1] && table_lookup_domain(t, at + 1, val_out))
			return 1;
		if (at[1] && lookup_n(t, addr, (size_t)(at - addr) + 1, val_out))
			return 1;
	}
	if ((flags & TABLE_ADDR_VIRTUAL) && at != addr && table_lookup(t, at, val_out))
		return 1;
	return 0;
}

int table_lookup_client(struct table *t, const char *hostname, const char *addr,
			const char **val_out)
{
	int have_host = hostname && *hostname && strcmp(hostname, "unknown") != 0;
	if (t->type == T_CIDR)
		return addr && table_lookup(t, addr, val_out);
	if (have_host && table_lookup_domain(t, hostname, val_out))
		return 1;
	if (!addr || !*addr)
		return 0;
	if (table_lookup(t, addr, val_out))
		return 1;
	unsigned char tmp[4];
	if (!is_fixed(t) || inet_pton(AF_INET, addr, tmp) != 1)
		return 0;
	for (size_t n = strlen(addr); n > 0; n--)
		if (addr[n - 1] == '.' && lookup_n(t, addr, n - 1, val_out))
			return 1;
	return 0;
}

/* ---------------------------------------------------------- table sets */

struct table_set {
	struct table **t;
	size_t n;
};

struct table_set *table_set_new(void)
{
	return xcalloc(1, sizeof(struct table_set));
}

struct table *table_set_get(struct table_set *s, const char *spec, char **err_out)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->t[i]->spec, spec) == 0)
			return s->t[i];
	struct table *t = table_open(spec, err_out);
	if (!t)
		return NULL;
	s->t = xrealloc(s->t, (s->n + 1) * sizeof *s->t);
	s->t[s->n++] = t;
	return t;
}

int table_set_reload(struct table_set *s, char **err_out)
{
	int rc = 0;
	for (size_t i = 0; i < s->n; i++) {
		char *err = NULL;
		if (table_reload(s->t[i], &err) == 0)
			continue;
		if (rc == 0)
			*err_out = err;
		else
			free(err);
		rc = -1;
	}
	return rc;
}

void table_set_free(struct table_set **sp)
{
	struct table_set *s = *sp;
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		table_free(&s->t[i]);
	free(s->t);
	free(s);
	*sp = NULL;
}
