/*
 * conf: sluice.conf (Postfix main.cf syntax) and typed parameter tables.
 * See conf.h for the contract. Outline:
 *  - conf_lines turns text into logical lines (shared with table.c);
 *  - parsing records the raw text of every "name = value";
 *  - validation expands each known parameter (lazily and recursively, so a
 *    later definition counts, as in Postfix), checks it against its type and
 *    caches the result; getters only read the cache.
 */
#include "conf/conf.h"
#include "lib/privfile.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_MAX_FILE_BYTES (16 * 1024 * 1024)
#define CONF_MAX_VALUE_BYTES (1024 * 1024)	/* one expanded value */
#define CONF_MAX_DEPTH 100			/* $a -> $b -> ... nesting */

static int is_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int is_name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* ---------------------------------------------------------------- files */

int conf_read_file(const char *path, size_t max_bytes, char **text_out, size_t *len_out,
		   char **err_out)
{
	/* plain open(), or through the root helper once a daemon dropped privileges */
	int fd = privfile_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		*err_out = xasprintf("%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct sbuf b;
	sbuf_init(&b);
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*err_out = xasprintf("%s: read error: %s", path, strerror(errno));
			break;
		}
		if (n == 0) {
			close(fd);
			*len_out = b.len;
			*text_out = sbuf_steal(&b);
			return 0;
		}
		if (b.len + (size_t)n > max_bytes) {
			*err_out = xasprintf("%s: file too large (over %zu bytes)", path, max_bytes);
			break;
		}
		sbuf_add(&b, chunk, (size_t)n);
	}
	close(fd);
	sbuf_free(&b);
	return -1;
}

/* ------------------------------------------------------- logical lines */

struct conf_lines {
	const char *text;
	size_t len, pos;
	char *name;
	int lineno;		/* number of the physical line at pos */
	size_t max_bytes;
	struct sbuf line;
};

struct conf_lines *conf_lines_new(const char *text, size_t len, const char *name,
				  size_t max_line_bytes)
{
	struct conf_lines *r = xcalloc(1, sizeof *r);
	r->text = text;
	r->len = len;
	r->name = xstrdup(name);
	r->lineno = 1;
	r->max_bytes = max_line_bytes ? max_line_bytes : CONF_MAX_LINE_BYTES;
	sbuf_init(&r->line);
	return r;
}

void conf_lines_free(struct conf_lines **rp)
{
	if (!*rp)
		return;
	sbuf_free(&(*rp)->line);
	free((*rp)->name);
	free(*rp);
	*rp = NULL;
}

/* One physical line at r->pos: trimmed bounds, and whether it is a continuation. */
struct phys_line {
	const char *p;		/* first non-blank */
	size_t n;		/* length after trimming */
	size_t next;		/* offset of the following line */
	int indented;
};

static int phys_line_at(struct conf_lines *r, struct phys_line *pl, char **err_out)
{
	const char *start = r->text + r->pos;
	const char *nl = memchr(start, '\n', r->len - r->pos);
	size_t n = nl ? (size_t)(nl - start) : r->len - r->pos;
	pl->next = r->pos + n + (nl ? 1 : 0);
	if (memchr(start, 0, n)) {
		*err_out = xasprintf("%s:%d: NUL byte in line", r->name, r->lineno);
		return -1;
	}
	pl->indented = n > 0 && is_blank((unsigned char)start[0]);
	while (n > 0 && is_blank((unsigned char)*start))
		start++, n--;
	while (n > 0 && is_blank((unsigned char)start[n - 1]))
		n--;
	pl->p = start;
	pl->n = n;
	return 0;
}

int conf_lines_next(struct conf_lines *r, const char **line_out, int *lineno_out,
		    char **err_out)
{
	int first = 0;
	sbuf_reset(&r->line);
	while (r->pos < r->len) {
		struct phys_line pl;
		if (phys_line_at(r, &pl, err_out) < 0)
			return -1;
		if (pl.n == 0 || pl.p[0] == '#')
			goto consume;
		if (!pl.indented && first)
			break;	/* the next logical line starts here */
		if (pl.indented && !first) {
			*err_out = xasprintf("%s:%d: continuation line (starts with white space) "
					     "without a preceding line", r->name, r->lineno);
			return -1;
		}
		if (first)
			sbuf_addc(&r->line, ' ');
		else
			first = r->lineno;
		if (r->line.len + pl.n > r->max_bytes) {
			*err_out = xasprintf("%s:%d: line too long (over %zu bytes)", r->name,
					     first, r->max_bytes);
			return -1;
		}
		sbuf_add(&r->line, pl.p, pl.n);
consume:
		r->pos = pl.next;
		r->lineno++;
	}
	if (!first)
		return 0;
	*line_out = r->line.buf;
	*lineno_out = first;
	return 1;
}

/* --------------------------------------------------------------- lists */

static int is_list_sep(int c)
{
	return c == ',' || is_blank(c);
}

/* Length of the item at s (s not at a separator); braces nest. */
static size_t list_item_len(const char *s, int *level_out)
{
	int level = 0;
	size_t i;
	for (i = 0; s[i]; i++) {
		if (s[i] == '{')
			level++;
		else if (s[i] == '}' && level > 0)
			level--;
		else if (level == 0 && is_list_sep((unsigned char)s[i]))
			break;
	}
	if (level_out)
		*level_out = level;
	return i;
}

char **conf_split_list(const char *text, size_t *n_out)
{
	size_t n = 0, cap = 4;
	char **v = xmalloc(cap * sizeof *v);
	const char *s = text;
	for (;;) {
		while (*s && is_list_sep((unsigned char)*s))
			s++;
		if (!*s)
			break;
		size_t len = list_item_len(s, NULL);
		if (n + 1 >= cap)
			v = xrealloc(v, (cap *= 2) * sizeof *v);
		v[n++] = xstrndup(s, len);
		s += len;
	}
	v[n] = NULL;
	*n_out = n;
	return v;
}

void conf_list_free(char **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* list_check - 0 if every '{' has its '}' and no '}' stands alone. */
static int list_check(const char *text)
{
	int level = 0;
	for (const char *s = text; *s; s++) {
		if (*s == '{')
			level++;
		else if (*s == '}' && --level < 0)
			return -1;
	}
	return level == 0 ? 0 : -1;
}

/* ------------------------------------------------------ number parsing */

/* Unsigned decimal digits at *sp into *v_out; advances *sp. -1 on none/overflow. */
static int parse_digits(const char **sp, long long *v_out)
{
	const char *s = *sp;
	long long v = 0;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (LLONG_MAX - (*s - '0')) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	*sp = s;
	*v_out = v;
	return 0;
}

static long long time_unit_s(char u)
{
	switch (u) {
	case 's': case 'S': return 1;
	case 'm': case 'M': return 60;
	case 'h': case 'H': return 3600;
	case 'd': case 'D': return 86400;
	case 'w': case 'W': return 7 * 86400;
	}
	return 0;
}

int conf_parse_time(const char *s, char def_unit, long long *secs_out, const char **err_out)
{
	static const char bad[] = "expected a time like 300s, 5m, 2h, 1d or 1w";
	long long v, mult;
	if (parse_digits(&s, &v) < 0) {
		*err_out = bad;
		return -1;
	}
	if (*s == 0)
		mult = time_unit_s(def_unit ? def_unit : 's');
	else if (s[1] == 0)
		mult = time_unit_s(*s);
	else
		mult = 0;
	if (mult == 0) {
		*err_out = bad;
		return -1;
	}
	if (v > LLONG_MAX / mult) {
		*err_out = "time value too large";
		return -1;
	}
	*secs_out = v * mult;
	return 0;
}

/* parse_size - bytes with optional k/m/g (1024-based) suffix. */
static int parse_size(const char *s, long long *bytes_out)
{
	long long v, mult = 1;
	if (parse_digits(&s, &v) < 0)
		return -1;
	if (*s && s[1] == 0) {
		switch (*s) {
		case 'k': case 'K': mult = 1024; break;
		case 'm': case 'M': mult = 1024 * 1024; break;
		case 'g': case 'G': mult = 1024 * 1024 * 1024; break;
		default: return -1;
		}
	} else if (*s) {
		return -1;
	}
	if (v > LLONG_MAX / mult)
		return -1;
	*bytes_out = v * mult;
	return 0;
}

static int parse_int(const char *s, long long *v_out)
{
	int neg = 0;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (parse_digits(&s, v_out) < 0 || *s)
		return -1;
	if (neg)
		*v_out = -*v_out;
	return 0;
}

static int parse_bool(const char *s, int *v_out)
{
	static const char *const yes[] = { "yes", "true", "on", "1", NULL };
	static const char *const no[] = { "no", "false", "off", "0", NULL };
	for (int i = 0; yes[i]; i++) {
		if (ascii_strcasecmp(s, yes[i]) == 0)
			return *v_out = 1, 0;
		if (ascii_strcasecmp(s, no[i]) == 0)
			return *v_out = 0, 0;
	}
	return -1;
}

/* ------------------------------------------------------------- entries */

struct conf_entry {
	char *name;
	char *raw;		/* explicit setting; NULL = default */
	char *where;		/* "file:line" or "override"; NULL = default */
	const struct conf_param *param;	/* NULL: not in our tables */
	int ignored;		/* name has one of the ignore_prefixes */
	/* Results of the last validation pass: */
	int state;		/* 0 not expanded, 1 expanding, 2 done */
	int referenced;		/* used as $name by some expanded value */
	char *exp;		/* expanded value (ENUM: the choice's spelling) */
	long long num;		/* INT/TIME/SIZE/BOOL */
	char **list;
	size_t n_list;
	struct conf_entry *hnext;
};

struct conf {
	char *path;
	struct conf_entry **bucket;
	size_t n_bucket;
	struct conf_entry **order;	/* definition order: table params, then file */
	size_t n, cap;
	char **ignore;		/* copy of ignore_prefixes, NULL-terminated */
	char **warn;		/* rebuilt by each validation pass */
	size_t n_warn, cap_warn;
	char **retired;		/* old cached values: borrowed pointers stay valid */
	size_t n_retired, cap_retired;
};

static size_t name_hash(const char *s)
{
	size_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct conf_entry *entry_find(const struct conf *c, const char *name, size_t len)
{
	size_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 16777619u;
	for (struct conf_entry *e = c->bucket[h % c->n_bucket]; e; e = e->hnext)
		if (strncmp(e->name, name, len) == 0 && e->name[len] == 0)
			return e;
	return NULL;
}

static void conf_rehash(struct conf *c)
{
	free(c->bucket);
	c->n_bucket = c->n_bucket ? c->n_bucket * 2 : 64;
	c->bucket = xcalloc(c->n_bucket, sizeof *c->bucket);
	for (size_t i = 0; i < c->n; i++) {
		size_t h = name_hash(c->order[i]->name) % c->n_bucket;
		c->order[i]->hnext = c->bucket[h];
		c->bucket[h] = c->order[i];
	}
}

static struct conf_entry *entry_add(struct conf *c, const char *name)
{
	struct conf_entry *e = entry_find(c, name, strlen(name));
	if (e)
		return e;
	e = xcalloc(1, sizeof *e);
	e->name = xstrdup(name);
	if (c->n == c->cap)
		c->order = xrealloc(c->order, (c->cap = c->cap ? c->cap * 2 : 64) * sizeof *c->order);
	c->order[c->n++] = e;
	if (c->n > c->n_bucket) {
		conf_rehash(c);
	} else {
		size_t h = name_hash(name) % c->n_bucket;
		e->hnext = c->bucket[h];
		c->bucket[h] = e;
	}
	return e;
}

static void retire(struct conf *c, char *s)
{
	if (!s)
		return;
	if (c->n_retired == c->cap_retired)
		c->retired = xrealloc(c->retired, (c->cap_retired = c->cap_retired * 2 + 8) *
					  sizeof *c->retired);
	c->retired[c->n_retired++] = s;
}

/* entry_reset - forget the cached results (kept alive in c->retired). */
static void entry_reset(struct conf *c, struct conf_entry *e)
{
	retire(c, e->exp);
	for (size_t i = 0; i < e->n_list; i++)
		retire(c, e->list[i]);
	retire(c, (char *)e->list);
	e->exp = NULL;
	e->list = NULL;
	e->n_list = 0;
	e->state = 0;
	e->referenced = 0;
	e->num = 0;
}

static void conf_warn(struct conf *c, char *msg)
{
	if (c->n_warn + 1 >= c->cap_warn)
		c->warn = xrealloc(c->warn, (c->cap_warn = c->cap_warn * 2 + 8) * sizeof *c->warn);
	c->warn[c->n_warn++] = msg;
	c->warn[c->n_warn] = NULL;
}

static void warnings_clear(struct conf *c)
{
	for (size_t i = 0; i < c->n_warn; i++)
		free(c->warn[i]);
	c->n_warn = 0;
	if (c->warn)
		c->warn[0] = NULL;
}

/* entry_where - for messages: "file:line", "override" or "conf: default for x". */
static char *entry_where(const struct conf *c, const struct conf_entry *e)
{
	if (e->where)
		return xstrdup(e->where);
	return xasprintf("%s: default value", c->path);
}

/* ----------------------------------------------------------- expansion */

struct expand_ctx {
	struct conf *c;
	struct conf_entry *cur;	/* entry whose text is being expanded */
	int depth;
	char *err;		/* first error (caller frees) */
};

static int expand_entry(struct expand_ctx *x, struct conf_entry *e);
static int expand_text(struct expand_ctx *x, const char *s, size_t len, struct sbuf *out);

static int expand_fail(struct expand_ctx *x, const char *fmt, const char *arg)
{
	if (!x->err) {
		char *w = entry_where(x->c, x->cur);
		char *m = xasprintf(fmt, arg);
		x->err = xasprintf("%s: %s: %s", w, x->cur->name, m);
		free(w);
		free(m);
	}
	return -1;
}

/*
 * name_value - the expanded value of $name (NULL if undefined). quiet: no
 * warning for an undefined name (the ${name?..} forms test for that).
 */
static int name_value(struct expand_ctx *x, const char *name, size_t len, int quiet,
		      const char **val_out)
{
	struct conf_entry *e = entry_find(x->c, name, len);
	*val_out = NULL;
	if (!e || (!e->raw && !e->param)) {
		if (!quiet) {
			char *w = entry_where(x->c, x->cur);
			conf_warn(x->c, xasprintf("%s: undefined parameter $%.*s in the value "
						  "of %s (expands to nothing)", w, (int)len, name,
						  x->cur->name));
			free(w);
		}
		return 0;
	}
	e->referenced = 1;
	if (e->state == 1) {
		char *n = xstrndup(name, len);
		expand_fail(x, "loop in parameter expansion (via $%s)", n);
		free(n);
		return -1;
	}
	if (e->state == 0 && expand_entry(x, e) < 0)
		return -1;
	*val_out = e->exp;
	return 0;
}

/* Position of the '}' or ')' that closes s[0] (an opening bracket), or 0. */
static size_t match_close(const char *s, size_t len)
{
	char open = s[0], close = open == '{' ? '}' : ')';
	int level = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == open)
			level++;
		else if (s[i] == close && --level == 0)
			return i;
	}
	return 0;
}

/* ${name}, ${name?text}, ${name:text}; body is what is between the brackets. */
static int expand_braced(struct expand_ctx *x, const char *body, size_t len, struct sbuf *out)
{
	size_t n = 0;
	while (n < len && is_name_char((unsigned char)body[n]))
		n++;
	if (n == 0 || (n < len && body[n] != '?' && body[n] != ':')) {
		char *t = xstrndup(body, len);
		int r = expand_fail(x, "bad ${...} expression \"${%s}\"", t);
		free(t);
		return r;
	}
	const char *val;
	if (name_value(x, body, n, n < len, &val) < 0)
		return -1;
	if (n == len) {
		if (val)
			sbuf_adds(out, val);
		return 0;
	}
	int nonempty = val && *val;
	if ((body[n] == '?') == nonempty)
		return expand_text(x, body + n + 1, len - n - 1, out);
	return 0;
}

/* One "$..." at s (s[0] == '$'); returns bytes consumed or -1. */
static long expand_dollar(struct expand_ctx *x, const char *s, size_t len, struct sbuf *out)
{
	if (len >= 2 && s[1] == '$') {
		sbuf_addc(out, '$');
		return 2;
	}
	if (len >= 2 && (s[1] == '{' || s[1] == '(')) {
		size_t close = match_close(s + 1, len - 1);
		if (close == 0)
			return expand_fail(x, "unterminated \"$%s\" in value", s[1] == '{' ? "{" : "(");
		if (expand_braced(x, s + 2, close - 1, out) < 0)
			return -1;
		return (long)close + 2;
	}
	size_t n = 1;
	while (n < len && is_name_char((unsigned char)s[n]))
		n++;
	if (n == 1) {		/* a lone '$' stays literal */
		sbuf_addc(out, '$');
		return 1;
	}
	const char *val;
	if (name_value(x, s + 1, n - 1, 0, &val) < 0)
		return -1;
	if (val)
		sbuf_adds(out, val);
	return (long)n;
}

static int expand_text(struct expand_ctx *x, const char *s, size_t len, struct sbuf *out)
{
	size_t i = 0;
	while (i < len) {
		const char *d = memchr(s + i, '$', len - i);
		size_t lit = d ? (size_t)(d - (s + i)) : len - i;
		sbuf_add(out, s + i, lit);
		i += lit;
		if (i < len) {
			long used = expand_dollar(x, s + i, len - i, out);
			if (used < 0)
				return -1;
			i += (size_t)used;
		}
		if (out->len > CONF_MAX_VALUE_BYTES)
			return expand_fail(x, "expanded value too long (over %s bytes)", "1048576");
	}
	return 0;
}

/* expand_entry - compute e->exp (state 0 -> 2), recursing through references. */
static int expand_entry(struct expand_ctx *x, struct conf_entry *e)
{
	const char *src = e->raw ? e->raw : (e->param && e->param->def ? e->param->def : "");
	if (x->depth >= CONF_MAX_DEPTH)
		return expand_fail(x, "parameter expansion nested too deeply (at $%s)", e->name);
	struct conf_entry *saved = x->cur;
	struct sbuf out;
	sbuf_init(&out);
	x->cur = e;
	x->depth++;
	e->state = 1;
	int r = expand_text(x, src, strlen(src), &out);
	x->depth--;
	x->cur = saved;
	if (r < 0) {
		e->state = 0;
		sbuf_free(&out);
		return -1;
	}
	e->exp = sbuf_steal(&out);
	e->state = 2;
	return 0;
}

/* ---------------------------------------------------------- validation */

/* enum_choice - the spelling in choices that matches v, into a new string. */
static char *enum_choice(const char *choices, const char *v)
{
	const char *s = choices;
	size_t vlen = strlen(v);
	while (*s) {
		const char *bar = strchr(s, '|');
		size_t n = bar ? (size_t)(bar - s) : strlen(s);
		if (n == vlen && vlen > 0 && ascii_strncasecmp(s, v, n) == 0)
			return xstrndup(s, n);
		s += n + (bar ? 1 : 0);
	}
	return NULL;
}

static char *range_problem(const struct conf_param *p, long long v)
{
	const char *u = p->type == CONF_TIME ? "s" : "";
	if (v < p->min && p->max == 0)
		return xasprintf("must be at least %lld%s", p->min, u);
	if (v < p->min || (p->max != 0 && v > p->max))
		return xasprintf("must be between %lld%s and %lld%s", p->min, u, p->max, u);
	return NULL;
}

/* check_value - NULL if e->exp suits e->param (sets e->num), else the reason. */
static char *check_value(struct conf_entry *e)
{
	const struct conf_param *p = e->param;
	const char *v = e->exp, *terr;
	int b;
	switch (p->type) {
	case CONF_STR:
		return NULL;
	case CONF_LIST:
		return list_check(v) < 0 ? xstrdup("unbalanced { } in list") : NULL;
	case CONF_BOOL:
		if (parse_bool(v, &b) < 0)
			return xstrdup("expected yes or no");
		e->num = b;
		return NULL;
	case CONF_ENUM: {
		char *ch = enum_choice(p->choices ? p->choices : "", v);
		if (!ch)
			return xasprintf("expected one of: %s", p->choices ? p->choices : "");
		free(e->exp);
		e->exp = ch;
		return NULL;
	}
	case CONF_INT:
		if (parse_int(v, &e->num) < 0)
			return xstrdup("expected a number");
		return range_problem(p, e->num);
	case CONF_TIME:
		if (conf_parse_time(v, p->unit, &e->num, &terr) < 0)
			return xstrdup(terr);
		return range_problem(p, e->num);
	case CONF_SIZE:
		if (parse_size(v, &e->num) < 0)
			return xstrdup("expected a size in bytes (optionally with k, m or g)");
		return range_problem(p, e->num);
	}
	panic("conf: parameter %s has bad type %d", p->name, (int)p->type);
}

/* validate_entry - expand, check, and split a known parameter. */
static int validate_entry(struct conf *c, struct conf_entry *e, char **err_out)
{
	struct expand_ctx x = { c, e, 0, NULL };
	if (e->state == 0 && expand_entry(&x, e) < 0) {
		*err_out = x.err;
		return -1;
	}
	char *why = check_value(e);
	if (why) {
		char *w = entry_where(c, e);
		*err_out = xasprintf("%s: bad value for %s: \"%s\" (%s)", w, e->name, e->exp, why);
		free(w);
		free(why);
		return -1;
	}
	e->list = conf_split_list(e->exp, &e->n_list);
	return 0;
}

/*
 * conf_validate - one full pass: every known parameter in definition order,
 * then warnings for unknown, unreferenced settings.
 */
static int conf_validate(struct conf *c, char **err_out)
{
	warnings_clear(c);
	for (size_t i = 0; i < c->n; i++)
		entry_reset(c, c->order[i]);
	for (size_t i = 0; i < c->n; i++) {
		struct conf_entry *e = c->order[i];
		if (e->param && validate_entry(c, e, err_out) < 0)
			return -1;
	}
	for (size_t i = 0; i < c->n; i++) {
		struct conf_entry *e = c->order[i];
		if (!e->param && e->raw && !e->ignored && !e->referenced)
			conf_warn(c, xasprintf("%s: unknown parameter %s", e->where, e->name));
	}
	return 0;
}

/* ------------------------------------------------------------- loading */

static int is_ignored(const struct conf *c, const char *name)
{
	for (size_t i = 0; c->ignore && c->ignore[i]; i++)
		if (strncmp(name, c->ignore[i], strlen(c->ignore[i])) == 0)
			return 1;
	return 0;
}

static struct conf *conf_new(const char *name, const struct conf_param *const *tables,
			     const char *const *ignore_prefixes)
{
	struct conf *c = xcalloc(1, sizeof *c);
	c->path = xstrdup(name);
	conf_rehash(c);
	size_t n = 0;
	while (ignore_prefixes && ignore_prefixes[n])
		n++;
	c->ignore = xcalloc(n + 1, sizeof *c->ignore);
	for (size_t i = 0; i < n; i++)
		c->ignore[i] = xstrdup(ignore_prefixes[i]);
	for (size_t t = 0; tables && tables[t]; t++) {
		for (const struct conf_param *p = tables[t]; p->name; p++) {
			struct conf_entry *e = entry_add(c, p->name);
			if (!e->param)
				e->param = p;
		}
	}
	return c;
}

/* set_entry - name = value from the file or an override. */
static void set_entry(struct conf *c, const char *name, const char *value, char *where)
{
	struct conf_entry *e = entry_add(c, name);
	free(e->raw);
	free(e->where);
	e->raw = xstrdup(value);
	e->where = where;
	e->ignored = !e->param && is_ignored(c, name);
}

/* check_name - NULL if name is a plausible parameter name, else the reason. */
static const char *check_name(const char *name)
{
	if (!*name)
		return "missing parameter name before '='";
	for (const char *s = name; *s; s++)
		if (!is_name_char((unsigned char)*s) && *s != '-' && *s != '.' && *s != '/')
			return "bad parameter name";
	return NULL;
}

/* parse_line - one logical "name = value" line into c. */
static int parse_line(struct conf *c, const char *line, int lineno, char **err_out)
{
	const char *eq = strchr(line, '=');
	if (!eq) {
		*err_out = xasprintf("%s:%d: missing '=' after parameter name", c->path, lineno);
		return -1;
	}
	size_t n = (size_t)(eq - line);
	while (n > 0 && is_blank((unsigned char)line[n - 1]))
		n--;
	char *name = xstrndup(line, n);
	const char *why = check_name(name);
	if (why) {
		*err_out = xasprintf("%s:%d: %s \"%s\"", c->path, lineno, why, name);
		free(name);
		return -1;
	}
	const char *v = eq + 1;
	while (is_blank((unsigned char)*v))
		v++;
	set_entry(c, name, v, xasprintf("%s:%d", c->path, lineno));
	free(name);
	return 0;
}

static int conf_parse(struct conf *c, const char *text, size_t len, char **err_out)
{
	struct conf_lines *r = conf_lines_new(text, len, c->path, CONF_MAX_LINE_BYTES);
	const char *line;
	int lineno, rc;
	while ((rc = conf_lines_next(r, &line, &lineno, err_out)) > 0)
		if (parse_line(c, line, lineno, err_out) < 0) {
			rc = -1;
			break;
		}
	conf_lines_free(&r);
	return rc;
}

/* check_defaults - our tables' defaults must be valid on their own. */
static void check_defaults(const struct conf_param *const *tables)
{
	struct conf *d = conf_new("(defaults)", tables, NULL);
	char *err = NULL;
	if (conf_validate(d, &err) < 0)
		panic("conf: bad default in parameter table: %s", err);
	conf_free(&d);
}

static struct conf *conf_load_mem(const char *text, size_t len, const char *name,
				  const struct conf_param *const *tables,
				  const char *const *ignore_prefixes, char **err_out)
{
	check_defaults(tables);
	struct conf *c = conf_new(name, tables, ignore_prefixes);
	if (conf_parse(c, text, len, err_out) < 0 || conf_validate(c, err_out) < 0) {
		conf_free(&c);
		return NULL;
	}
	return c;
}

struct conf *conf_load_string(const char *text, const char *name,
			      const struct conf_param *const *tables,
			      const char *const *ignore_prefixes, char **err_out)
{
	return conf_load_mem(text, strlen(text), name, tables, ignore_prefixes, err_out);
}

struct conf *conf_load(const char *path, const struct conf_param *const *tables,
		       const char *const *ignore_prefixes, char **err_out)
{
	char *text;
	size_t len;
	if (conf_read_file(path, CONF_MAX_FILE_BYTES, &text, &len, err_out) < 0)
		return NULL;
	struct conf *c = conf_load_mem(text, len, path, tables, ignore_prefixes, err_out);
	free(text);
	return c;
}

/* ------------------------------------------------------- after loading */

int conf_override(struct conf *c, const char *name, const char *value, char **err_out)
{
	const char *why = check_name(name);
	if (why) {
		*err_out = xasprintf("override: %s \"%s\"", why, name);
		return -1;
	}
	struct conf_entry *e = entry_find(c, name, strlen(name));
	char *old_raw = e && e->raw ? xstrdup(e->raw) : NULL;
	char *old_where = e && e->where ? xstrdup(e->where) : NULL;
	set_entry(c, name, value, xstrdup("override"));
	if (conf_validate(c, err_out) == 0) {
		free(old_raw);
		free(old_where);
		return 0;
	}
	e = entry_find(c, name, strlen(name));
	free(e->raw);
	free(e->where);
	e->raw = old_raw;
	e->where = old_where;
	char *err2 = NULL;
	if (conf_validate(c, &err2) < 0)
		panic("conf: revalidation failed after undoing an override: %s", err2);
	return -1;
}

void conf_free(struct conf **cp)
{
	struct conf *c = *cp;
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		struct conf_entry *e = c->order[i];
		entry_reset(c, e);
		free(e->name);
		free(e->raw);
		free(e->where);
		free(e);
	}
	for (size_t i = 0; i < c->n_retired; i++)
		free(c->retired[i]);
	for (size_t i = 0; c->ignore[i]; i++)
		free(c->ignore[i]);
	warnings_clear(c);
	free(c->warn);
	free(c->retired);
	free(c->ignore);
	free(c->order);
	free(c->bucket);
	free(c->path);
	free(c);
	*cp = NULL;
}

const char *const *conf_warnings(const struct conf *c, size_t *n_out)
{
	static const char *const none[] = { NULL };
	*n_out = c->n_warn;
	return c->warn ? (const char *const *)c->warn : none;
}

/* known - the entry for a parameter from our tables; else our bug. */
static const struct conf_entry *known(const struct conf *c, const char *name, int type)
{
	const struct conf_entry *e = entry_find(c, name, strlen(name));
	if (!e || !e->param)
		panic("conf: parameter %s is not in the parameter tables", name);
	if (type >= 0 && (int)e->param->type != type)
		panic("conf: parameter %s read with the wrong type", name);
	return e;
}

const char *conf_str(const struct conf *c, const char *name)
{
	return known(c, name, -1)->exp;
}

long long conf_int(const struct conf *c, const char *name)
{
	return known(c, name, CONF_INT)->num;
}

int conf_bool(const struct conf *c, const char *name)
{
	return (int)known(c, name, CONF_BOOL)->num;
}

long long conf_time_s(const struct conf *c, const char *name)
{
	return known(c, name, CONF_TIME)->num;
}

long long conf_size(const struct conf *c, const char *name)
{
	return known(c, name, CONF_SIZE)->num;
}

const char *const *conf_list(const struct conf *c, const char *name, size_t *n_out)
{
	const struct conf_entry *e = known(c, name, -1);
	*n_out = e->n_list;
	return (const char *const *)e->list;
}

int conf_is_set(const struct conf *c, const char *name)
{
	return known(c, name, -1)->raw != NULL;
}

const char *conf_where(const struct conf *c, const char *name)
{
	const struct conf_entry *e = known(c, name, -1);
	return e->where ? e->where : "default";
}

const char *conf_path(const struct conf *c)
{
	return c->path;
}

/* ------------------------------------------------------- relative paths */

char *conf_abs_path(const char *base, const char *path)
{
	if (path[0] == '/')
		return xstrdup(path);
	if (!strcmp(path, ".") || !*path)
		return xstrdup(base);
	return xasprintf("%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", path);
}

char *conf_base_dir(const struct conf *c, char **err_out)
{
	/* the directory of the file itself */
	char *dir = xstrdup(c->path);
	char *slash = strrchr(dir, '/');
	if (!slash) {
		free(dir);
		dir = xstrdup(".");
	} else {
		slash[slash == dir] = 0;	/* "/sluice.conf" -> "/" */
	}
	const struct conf_entry *e = entry_find(c, "config_directory", strlen("config_directory"));
	const char *set = e && e->param && e->raw ? e->exp : "";
	char *want = *set ? conf_abs_path(dir, set) : xstrdup(dir);
	char *real = realpath(want, NULL);
	if (!real) {
		if (*set)
			*err_out = xasprintf("%s: config_directory %s: %s", e->where ? e->where : c->path, want,
					     strerror(errno));
		else
			*err_out = xasprintf("%s: directory %s: %s", c->path, want, strerror(errno));
	}
	free(want);
	free(dir);
	return real;
}

int conf_enter_base_dir(const struct conf *c, char **err_out)
{
	char *base = conf_base_dir(c, err_out);
	if (!base)
		return -1;
	if (chdir(base) < 0) {
		*err_out = xasprintf("%s: chdir %s: %s", c->path, base, strerror(errno));
		free(base);
		return -1;
	}
	free(base);
	return 0;
}
