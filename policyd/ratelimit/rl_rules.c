/*
 * rl_rules: see rl_rules.h.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "policyd/ratelimit/rl_rules.h"

#include <ctype.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/table.h"
#include "lib/util.h"
#include "policyd/ratelimit/rl_net.h"

#define RL_PCRE_MATCH_LIMIT 1000000
#define RL_PCRE_DEPTH_LIMIT 10000

enum cmp { C_EQ, C_RE, C_CIDR, C_LE, C_GE, C_LT, C_GT, C_TABLE };

struct rl_item {
	char *attr;
	enum cmp cmp;
	int neg;
	int lineno;
	char *str;		/* C_EQ value, or the attribute name of a $$ reference */
	int is_ref;		/* str names another attribute */
	long long num;
	pcre2_code *re;
	struct rl_net *nets;
	size_t nnets;
	struct table *tab;
};

struct rl_rules {
	char *name;
	struct rl_rule *rules;
	size_t n;
	struct table_set *tables;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	struct sbuf scratch;
};

/* ------------------------------------------------------------ small helpers */

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = 0;
	return s;
}

static int parse_ll(const char *s, long long *out)
{
	char *end;

	if (!*s || !(isdigit((unsigned char)*s) || *s == '-'))
		return -1;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int attr_name_ok(const char *s)
{
	if (!*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.'))
			return 0;
	return 1;
}

static int is_cidr_attr(const char *a)
{
	size_t n = strlen(a);
	return !strcmp(a, "client_net") || (n >= 8 && !strcmp(a + n - 8, "_address"));
}

static int is_numeric_attr(const char *a)
{
	return !strcmp(a, "size") || !strcmp(a, "recipient_count") ||
	       !strcmp(a, "encryption_keysize");
}

/* is_code_attr - client_country, client_asn: codes, so "=" is exact (not a pattern) */
static int is_code_attr(const char *a)
{
	return !strcmp(a, "client_country") || !strcmp(a, "client_asn");
}

static const char *const unsupported_items[] = {
	"rbl", "rhsbl", "rhsbl_client", "rhsbl_sender", "rhsbl_helo", "rhsbl_reverse_client",
	"rblcount", "rhsblcount", "date", "time", "days", "months", "score", "request_score",
	"helo_address", "sender_ns_names", "sender_ns_addrs", "sender_mx_names",
	"sender_mx_addrs", "version", NULL,
};

/* ------------------------------------------------------------ actions */

static const char *const access_words[] = {
	"OK", "DUNNO", "REJECT", "DEFER", "DEFER_IF_PERMIT", "DEFER_IF_REJECT", "HOLD",
	"DISCARD", "FILTER", "PREPEND", "REDIRECT", "BCC", "WARN", "INFO", NULL,
};

static size_t word_len(const char *a)
{
	size_t n = 0;
	while (a[n] && a[n] != ' ' && a[n] != '\t')
		n++;
	return n;
}

static int word_is(const char *a, const char *w)
{
	size_t n = word_len(a);
	return n == strlen(w) && !ascii_strncasecmp(a, w, n);
}

static int is_code(const char *a)
{
	return (a[0] == '4' || a[0] == '5') && isdigit((unsigned char)a[1]) &&
	       isdigit((unsigned char)a[2]) && (a[3] == 0 || a[3] == ' ');
}

int rl_action_is_refusal(const char *a)
{
	return is_code(a) || word_is(a, "REJECT") || word_is(a, "DEFER") ||
	       word_is(a, "DEFER_IF_PERMIT") || word_is(a, "DEFER_IF_REJECT");
}

int rl_action_takes_text(const char *a)
{
	return rl_action_is_refusal(a) || word_is(a, "HOLD") || word_is(a, "DISCARD") ||
	       word_is(a, "WARN") || word_is(a, "INFO");
}

/* check_access - NULL when a is an access(5) action we pass on, else why not. */
static const char *check_access(const char *a)
{
	if (!*a)
		return "empty action";
	if (is_code(a))
		return NULL;
	for (size_t i = 0; access_words[i]; i++) {
		if (!word_is(a, access_words[i]))
			continue;
		int needs_text = word_is(a, "FILTER") || word_is(a, "PREPEND") ||
				 word_is(a, "REDIRECT") || word_is(a, "BCC") ||
				 word_is(a, "DEFER_IF_PERMIT") || word_is(a, "DEFER_IF_REJECT");
		if (needs_text && !a[word_len(a)])
			return "this action needs a text or an argument";
		if ((word_is(a, "OK") || word_is(a, "DUNNO")) && a[word_len(a)])
			return "OK and DUNNO take no text";
		return NULL;
	}
	if (strchr(a, '('))
		return "not an access(5) action (postfwd commands other than rate, rcpt, size "
		       "are not supported)";
	return "not an access(5) action";
}

/* parse_limit - "KEY/N/SECONDS/ACTION" into r; NULL or the reason. */
static const char *parse_limit(struct rl_rule *r, char *arg)
{
	char *f[4];
	char *p = arg;

	for (int i = 0; i < 3; i++) {
		char *sl = strchr(p, '/');
		if (!sl)
			return "expected KEY/N/SECONDS/ACTION";
		*sl = 0;
		f[i] = trim(p);
		p = sl + 1;
	}
	f[3] = trim(p);
	if (f[0][0] == '$')
		return "the key is an attribute name (postfwd's old $$ syntax is not supported)";
	size_t nk = 0;
	char *save = NULL;
	for (char *k = strtok_r(f[0], ",", &save); k; k = strtok_r(NULL, ",", &save)) {
		k = trim(k);
		if (!attr_name_ok(k))
			return "bad attribute name in the key";
		if (nk == RL_RULES_MAX_KEYS)
			return "too many attributes in the key";
		r->limit.keys[nk++] = xstrdup(k);
		r->limit.nkeys = nk;	/* so rule_free frees them on a later error */
	}
	if (!nk)
		return "empty key";
	for (size_t i = 0; i < nk; i++)
		if (!strcmp(r->limit.keys[i], "global") && nk > 1)
			return "global is a key by itself";
	if (parse_ll(f[1], &r->limit.max) < 0 || r->limit.max <= 0)
		return "the limit must be a positive integer";
	if (parse_ll(f[2], &r->limit.window_s) < 0 || r->limit.window_s <= 0 ||
	    r->limit.window_s > 366LL * 86400)
		return "the time must be a positive number of seconds (at most a year)";
	const char *why = check_access(f[3]);
	if (why)
		return why;
	r->action = xstrdup(f[3]);
	return NULL;
}

static const char *parse_action(struct rl_rule *r, char *v)
{
	size_t n = word_len(v);
	char *paren = strchr(v, '(');

	if (word_is(v, "greylist") && !v[n]) {
		r->kind = RL_KIND_GREYLIST;
		return NULL;
	}
	if (paren && (size_t)(paren - v) <= n) {
		size_t cmdlen = (size_t)(paren - v);
		char *close = strrchr(v, ')');
		if (!close || close[1] != 0)
			return "unbalanced parentheses in the action";
		if (cmdlen == 4 && !ascii_strncasecmp(v, "rate", 4))
			r->kind = RL_KIND_RATE;
		else if (cmdlen == 4 && !ascii_strncasecmp(v, "rcpt", 4))
			r->kind = RL_KIND_RCPT;
		else if (cmdlen == 4 && !ascii_strncasecmp(v, "size", 4))
			r->kind = RL_KIND_SIZE;
		else
			return "not supported (actions: access(5) actions, rate(), rcpt(), size(), "
			       "greylist)";
		*close = 0;
		return parse_limit(r, paren + 1);
	}
	const char *why = check_access(v);
	if (why)
		return why;
	r->kind = RL_KIND_ACCESS;
	r->action = xstrdup(v);
	return NULL;
}

/* ------------------------------------------------------------ items */

static void item_free(struct rl_item *it)
{
	free(it->attr);
	free(it->str);
	if (it->re)
		pcre2_code_free(it->re);
	free(it->nets);
}

/* parse_value - fill it from value text for its comparison; NULL or why not. */
static const char *parse_value(struct rl_rules *rs, struct rl_item *it, char *v, char **err_out)
{
	if (!strncmp(v, "!!", 2)) {
		it->neg = !it->neg;
		v = trim(v + 2);
		size_t n = strlen(v);
		if (n >= 2 && v[0] == '(' && v[n - 1] == ')') {
			v[n - 1] = 0;
			v = trim(v + 1);
		}
	}
	if (!strncmp(v, "$$", 2)) {
		const char *ref = v + 2;
		if (strchr(ref, ':')) {
			if (it->cmp != C_EQ && it->cmp != C_RE && it->cmp != C_CIDR)
				return "a table reference works with =, == and !=";
			it->cmp = C_TABLE;
			it->tab = table_set_get(rs->tables, ref, err_out);
			return it->tab ? NULL : "";
		}
		if (!attr_name_ok(ref))
			return "bad attribute name after $$";
		if (it->cmp == C_RE || it->cmp == C_CIDR)
			it->cmp = C_EQ;	/* postfwd: "=" with a variable is "==" */
		it->is_ref = 1;
		it->str = xstrdup(ref);
		return NULL;
	}
	switch (it->cmp) {
	case C_EQ:
		it->str = xstrdup(v);
		return NULL;
	case C_LE: case C_GE: case C_LT: case C_GT:
		if (parse_ll(v, &it->num) < 0)
			return "expected an integer";
		return NULL;
	case C_CIDR: {
		char *save = NULL;
		for (char *t = strtok_r(v, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
			it->nets = xrealloc(it->nets, (it->nnets + 1) * sizeof(*it->nets));
			if (rl_net_parse(t, &it->nets[it->nnets]) < 0)
				return "expected an address or network (a.b.c.d/nn, v6/nn)";
			it->nnets++;
		}
		return it->nnets ? NULL : "empty address list";
	}
	case C_RE: {
		size_t n = strlen(v);
		if (n >= 2 && v[0] == '/' && v[n - 1] == '/') {
			v[n - 1] = 0;
			v++;
		}
		int ec;
		PCRE2_SIZE off;
		it->re = pcre2_compile((PCRE2_SPTR)v, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec,
				       &off, NULL);
		if (!it->re) {
			PCRE2_UCHAR msg[160];
			pcre2_get_error_message(ec, msg, sizeof msg);
			*err_out = xasprintf("bad regular expression at offset %zu: %s", (size_t)off,
					     (char *)msg);
			return "";
		}
		return NULL;
	}
	case C_TABLE:
		break;
	}
	return "internal: bad comparison";
}

/* One "name OP value" item; NULL or why not (with *err_out for details). */
static const char *parse_item(struct rl_rules *rs, struct rl_rule *r, char *s, int lineno,
			      char **err_out)
{
	static const struct { const char *op; enum cmp cmp; int neg; } ops[] = {
		{ "==", C_EQ, 0 }, { "!=", C_EQ, 1 }, { "=~", C_RE, 0 }, { "!~", C_RE, 1 },
		{ "<=", C_LE, 0 }, { "=<", C_LE, 0 }, { ">=", C_GE, 0 }, { "=>", C_GE, 0 },
		{ "!<", C_LE, 1 }, { "!>", C_GE, 1 }, { "<", C_LT, 0 }, { ">", C_GT, 0 },
		{ "=", C_EQ, 0 },
	};
	size_t nl = 0;

	while (s[nl] && (isalnum((unsigned char)s[nl]) || s[nl] == '_' || s[nl] == '-' ||
			 s[nl] == '.'))
		nl++;
	if (!nl) {
		if (s[0] == '&' && s[1] == '&')
			return "postfwd macros (&&NAME) are not supported";
		return "expected attribute OP value";
	}
	char *name = xstrndup(s, nl);
	char *p = s + nl;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t k;
	for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
		if (!strncmp(p, ops[k].op, strlen(ops[k].op)))
			break;
	if (k == sizeof(ops) / sizeof(ops[0])) {
		free(name);
		return "expected an operator (==, !=, =~, !~, <=, >=, <, >, =)";
	}
	char *value = trim(p + strlen(ops[k].op));
	const char *why = NULL;

	if (!strcmp(name, "id")) {
		if (k != sizeof(ops) / sizeof(ops[0]) - 1 && strcmp(ops[k].op, "=="))
			why = "id takes =";
		else if (r->id)
			why = "a second id";
		else if (!*value || strlen(value) > RL_RULES_MAX_ID_BYTES || strpbrk(value, " \t,/"))
			why = "an id is 1-64 characters without spaces, ',' or '/'";
		else
			r->id = xstrdup(value);
		free(name);
		return why;
	}
	if (!strcmp(name, "action")) {
		if (strcmp(ops[k].op, "="))
			why = "action takes =";
		else if (r->action || r->kind != RL_KIND_ACCESS)
			why = "a second action";
		else
			why = parse_action(r, value);
		free(name);
		return why;
	}
	for (size_t i = 0; unsupported_items[i]; i++)
		if (!strcmp(name, unsupported_items[i])) {
			*err_out = xasprintf("postfwd item %s is not supported", name);
			free(name);
			return "";
		}
	struct rl_item it = { .attr = name, .cmp = ops[k].cmp, .neg = ops[k].neg, .lineno = lineno };
	if (!strcmp(ops[k].op, "=")) {
		if (is_cidr_attr(name))
			it.cmp = C_CIDR;
		else if (is_numeric_attr(name))
			it.cmp = C_GE;
		else if (is_code_attr(name))
			it.cmp = C_EQ;
		else
			it.cmp = C_RE;
	}
	why = parse_value(rs, &it, value, err_out);
	if (why) {
		item_free(&it);
		return why;
	}
	r->items = xrealloc(r->items, (r->nitems + 1) * sizeof(*r->items));
	r->items[r->nitems++] = it;
	return NULL;
}

/* ------------------------------------------------------------ rules and lines */

/* A logical line with the physical line number of each joined piece. */
struct lline {
	struct sbuf text;
	size_t *off;
	int *line;
	size_t n;
};

static void lline_add(struct lline *l, const char *s, size_t len, int lineno)
{
	l->off = xrealloc(l->off, (l->n + 1) * sizeof(*l->off));
	l->line = xrealloc(l->line, (l->n + 1) * sizeof(*l->line));
	l->off[l->n] = l->text.len;
	l->line[l->n] = lineno;
	l->n++;
	sbuf_add(&l->text, s, len);
}

static int lline_lineno(const struct lline *l, size_t off)
{
	int line = l->n ? l->line[0] : 0;
	for (size_t i = 0; i < l->n && l->off[i] <= off; i++)
		line = l->line[i];
	return line;
}

static void lline_reset(struct lline *l)
{
	sbuf_reset(&l->text);
	l->n = 0;
}

static void rule_free(struct rl_rule *r)
{
	for (size_t i = 0; i < r->nitems; i++)
		item_free(&r->items[i]);
	free(r->items);
	free((char *)r->id);
	free((char *)r->action);
	for (size_t i = 0; i < r->limit.nkeys; i++)
		free((char *)r->limit.keys[i]);
}

/* parse_rule - one logical line into a new rule; 0 or -1 with *err_out. */
static int parse_rule(struct rl_rules *rs, struct lline *l, char **err_out)
{
	struct rl_rule r = { .file = rs->name, .lineno = l->line[0], .kind = RL_KIND_ACCESS };
	char *text = l->text.buf;
	size_t len = l->text.len, start = 0;
	int depth = 0, in_action = 0;

	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? text[i] : ';';
		if (i == start) {
			/* only an action's parentheses group (rate(.../REJECT a; b)) */
			size_t b = start;
			while (b < len && (text[b] == ' ' || text[b] == '\t'))
				b++;
			in_action = !strncmp(text + b, "action", 6);
		}
		if (in_action && c == '(')
			depth++;
		else if (in_action && c == ')' && depth > 0)
			depth--;
		if (c != ';' || (depth > 0 && i < len))
			continue;
		text[i] = 0;
		size_t lead = start;
		while (lead < i && (text[lead] == ' ' || text[lead] == '\t'))
			lead++;
		char *item = trim(text + start);
		int lineno = lline_lineno(l, lead);
		start = i + 1;
		if (!*item)
			continue;
		char *detail = NULL, *shown = xstrdup(item);
		const char *why = parse_item(rs, &r, item, lineno, &detail);
		if (why) {
			*err_out = xasprintf("%s:%d: %.80s: %s", rs->name, lineno, shown,
					     detail ? detail : why);
			free(shown);
			free(detail);
			rule_free(&r);
			return -1;
		}
		free(shown);
	}
	if (!r.action && r.kind != RL_KIND_GREYLIST) {
		*err_out = xasprintf("%s:%d: rule without action=", rs->name, r.lineno);
		rule_free(&r);
		return -1;
	}
	if (!r.id)
		r.id = xasprintf("line%d", r.lineno);
	for (size_t i = 0; i < rs->n; i++)
		if (!strcmp(rs->rules[i].id, r.id)) {
			*err_out = xasprintf("%s:%d: duplicate id %s (first at line %d)", rs->name,
					     r.lineno, r.id, rs->rules[i].lineno);
			rule_free(&r);
			return -1;
		}
	rs->rules = xrealloc(rs->rules, (rs->n + 1) * sizeof(*rs->rules));
	rs->rules[rs->n++] = r;
	return 0;
}

/* comment_start - '#' at the line start or after white space. */
static size_t strip_comment(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t'))
			return i;
	return len;
}

static int flush(struct rl_rules *rs, struct lline *l, char **err_out)
{
	int rc = l->text.len ? parse_rule(rs, l, err_out) : 0;
	lline_reset(l);
	return rc;
}

struct rl_rules *rl_rules_parse(const char *text, size_t len, const char *name, char **err_out)
{
	struct rl_rules *rs = xcalloc(1, sizeof(*rs));
	struct lline l = { 0 };
	int lineno = 0, joining = 0, rc = 0;
	size_t pos = 0;

	rs->name = xstrdup(name);
	rs->tables = table_set_new();
	sbuf_init(&l.text);
	sbuf_init(&rs->scratch);
	while (pos < len && rc == 0) {
		const char *s = text + pos;
		const char *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos;
		pos += n + (nl ? 1 : 0);
		lineno++;
		if (memchr(s, 0, n)) {
			*err_out = xasprintf("%s:%d: NUL byte", name, lineno);
			rc = -1;
			break;
		}
		n = strip_comment(s, n);
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
			n--;
		size_t lead = 0;
		while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
			lead++;
		if (lead == n) {
			if (joining)
				joining = 0;
			continue;
		}
		int more = s[n - 1] == '\\';
		if (more)
			n--;
		if (joining) {
			lline_add(&l, s + lead, n - lead, lineno);
		} else if (lead) {
			if (!l.text.len) {
				*err_out = xasprintf("%s:%d: continuation line with nothing to continue",
						     name, lineno);
				rc = -1;
				break;
			}
			size_t e = l.text.len;
			while (e && (l.text.buf[e - 1] == ' ' || l.text.buf[e - 1] == '\t'))
				e--;
			if (!e || l.text.buf[e - 1] != ';')
				sbuf_addc(&l.text, ';');
			lline_add(&l, s + lead, n - lead, lineno);
		} else {
			rc = flush(rs, &l, err_out);
			lline_add(&l, s, n, lineno);
		}
		joining = more;
	}
	if (rc == 0)
		rc = flush(rs, &l, err_out);
	sbuf_free(&l.text);
	free(l.off);
	free(l.line);
	if (rc < 0) {
		rl_rules_free(&rs);
		return NULL;
	}
	rs->md = pcre2_match_data_create(1, NULL);
	rs->mctx = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(rs->mctx, RL_PCRE_MATCH_LIMIT);
	pcre2_set_depth_limit(rs->mctx, RL_PCRE_DEPTH_LIMIT);
	return rs;
}

struct rl_rules *rl_rules_load(const char *path, char **err_out)
{
	char *text;
	size_t len;

	if (conf_read_file(path, RL_RULES_MAX_FILE_BYTES, &text, &len, err_out) < 0)
		return NULL;
	struct rl_rules *rs = rl_rules_parse(text, len, path, err_out);
	free(text);
	return rs;
}

void rl_rules_free(struct rl_rules **rp)
{
	if (!rp || !*rp)
		return;
	struct rl_rules *rs = *rp;
	for (size_t i = 0; i < rs->n; i++)
		rule_free(&rs->rules[i]);
	free(rs->rules);
	table_set_free(&rs->tables);
	if (rs->md)
		pcre2_match_data_free(rs->md);
	if (rs->mctx)
		pcre2_match_context_free(rs->mctx);
	sbuf_free(&rs->scratch);
	free(rs->name);
	free(rs);
	*rp = NULL;
}

size_t rl_rules_count(const struct rl_rules *r)
{
	return r->n;
}

const struct rl_rule *rl_rules_get(const struct rl_rules *r, size_t i)
{
	return i < r->n ? &r->rules[i] : NULL;
}

/* ------------------------------------------------------------ matching */

static int table_hit(struct rl_item *it, const char *v)
{
	const char *res;

	if (!*v)
		return 0;
	if (!strcmp(it->attr, "client_address"))
		return table_lookup_client(it->tab, NULL, v, &res);
	if (!strcmp(it->attr, "sender") || !strcmp(it->attr, "recipient") ||
	    !strcmp(it->attr, "sasl_sender") || !strcmp(it->attr, "original_recipient"))
		return table_lookup_addr(it->tab, v, TABLE_ADDR_ACCESS, &res);
	if (!strcmp(it->attr, "client_name") || !strcmp(it->attr, "reverse_client_name") ||
	    !strcmp(it->attr, "helo_name") || !strcmp(it->attr, "sender_domain") ||
	    !strcmp(it->attr, "recipient_domain"))
		return table_lookup_domain(it->tab, v, &res);
	return table_lookup(it->tab, v, &res);
}

/* item_true - the comparison before negation. */
static int item_true(struct rl_rules *rs, struct rl_item *it, rl_attr_fn get, void *ctx)
{
	const char *v = get(ctx, it->attr);

	if (!v)
		v = "";
	switch (it->cmp) {
	case C_EQ: {
		const char *want = it->is_ref ? get(ctx, it->str) : it->str;
		return *v && want && !ascii_strcasecmp(v, want);
	}
	case C_RE: {
		int rc = pcre2_match(it->re, (PCRE2_SPTR)v, strlen(v), 0, 0, rs->md, rs->mctx);
		return rc >= 0;
	}
	case C_CIDR:
		for (size_t i = 0; i < it->nnets; i++)
			if (rl_net_contains(&it->nets[i], v))
				return 1;
		return 0;
	case C_LE: case C_GE: case C_LT: case C_GT: {
		long long x = 0, want = it->num;
		if (*v && parse_ll(v, &x) < 0)
			return 0;
		if (it->is_ref) {
			const char *w = get(ctx, it->str);
			want = 0;
			if (w && *w && parse_ll(w, &want) < 0)
				return 0;
		}
		return it->cmp == C_LE ? x <= want : it->cmp == C_GE ? x >= want :
		       it->cmp == C_LT ? x < want : x > want;
	}
	case C_TABLE:
		return table_hit(it, v);
	}
	return 0;
}

int rl_rule_matches(struct rl_rules *rs, const struct rl_rule *rule, rl_attr_fn get, void *ctx)
{
	struct rl_item *items = rule->items;

	for (size_t i = 0; i < rule->nitems; i++)
		if (items[i].neg && item_true(rs, &items[i], get, ctx))
			return 0;
	for (size_t i = 0; i < rule->nitems; i++) {
		if (items[i].neg)
			continue;
		size_t j;
		for (j = 0; j < i; j++)
			if (!items[j].neg && !strcmp(items[j].attr, items[i].attr))
				break;
		if (j < i)
			continue;	/* this attribute's group was decided already */
		int any = 0;
		for (j = i; j < rule->nitems && !any; j++)
			if (!items[j].neg && !strcmp(items[j].attr, items[i].attr))
				any = item_true(rs, &items[j], get, ctx);
		if (!any)
			return 0;
	}
	return 1;
}
