/*
 * metrics_merge: several expositions as one. See metrics_merge.h.
 *
 * Each source is read a line at a time; a family's series collect in a
 * buffer of their own (in source order) and its HELP and TYPE are kept
 * once, so the output is written family by family at the end. Families are
 * found by name in an open-addressing table of MERGE_SLOTS slots.
 */
#include "lib/metrics_merge.h"
#include "lib/metrics.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MERGE_FAMILIES_MAX 4096
#define MERGE_LINE_MAX 65536
/* an input line's room for the label added (name < 64, value escaped < 130): output lines stay below MERGE_LINE_MAX */
#define MERGE_INPUT_LINE_MAX (MERGE_LINE_MAX - 512)
#define MERGE_LABELS_MAX 32
#define MERGE_SLOTS 8192	/* > 2 x MERGE_FAMILIES_MAX, power of two */

enum mg_type { MG_NONE, MG_COUNTER, MG_GAUGE, MG_HISTOGRAM, MG_SUMMARY, MG_UNTYPED };
static const char *const mg_type_name[] = { "", "counter", "gauge", "histogram", "summary", "untyped" };

struct mg_family {
	char *name;
	enum mg_type type;	/* MG_NONE: no TYPE line seen (untyped, none printed) */
	char *help;		/* escaped as in the input; NULL = none seen */
	struct sbuf series;
	size_t nseries;
	int dropped;		/* clashes with a histogram's or summary's sample names */
};

struct mg {
	struct mg_family *fam;
	size_t nfam, cap;
	uint32_t slot[MERGE_SLOTS];	/* family index + 1, 0 = free */
};

/* mg_family_at - the family called name (len bytes); created when create is set and there is room. -1: none. */
static int mg_family_at(struct mg *g, const char *name, size_t len, int create)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
	for (size_t i = h & (MERGE_SLOTS - 1);; i = (i + 1) & (MERGE_SLOTS - 1)) {
		if (!g->slot[i]) {
			if (!create || g->nfam == MERGE_FAMILIES_MAX)
				return -1;
			if (g->nfam == g->cap) {
				g->cap = g->cap ? 2 * g->cap : 64;
				g->fam = xrealloc(g->fam, g->cap * sizeof *g->fam);
			}
			struct mg_family *f = &g->fam[g->nfam];
			memset(f, 0, sizeof *f);
			f->name = xstrndup(name, len);
			sbuf_init(&f->series);
			g->slot[i] = (uint32_t)++g->nfam;
			return (int)g->nfam - 1;
		}
		struct mg_family *f = &g->fam[g->slot[i] - 1];
		if (!strncmp(f->name, name, len) && !f->name[len])
			return (int)g->slot[i] - 1;
	}
}

static int mg_name_char(char c, int first, int colon)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
	       (!first && c >= '0' && c <= '9');
}

/* mg_name - length of the metric (colon set) or label name at s, 0 if none. */
static size_t mg_name(const char *s, size_t len, int colon)
{
	size_t n = 0;
	while (n < len && mg_name_char(s[n], n == 0, colon))
		n++;
	return n;
}

static int mg_digits(const char *s, size_t len, size_t *i)
{
	size_t start = *i;
	while (*i < len && s[*i] >= '0' && s[*i] <= '9')
		(*i)++;
	return *i > start;
}

/* mg_float - whether s (len bytes) is a float as Prometheus writes them: decimal, +Inf, -Inf, Inf, NaN. */
static int mg_float(const char *s, size_t len)
{
	size_t i = 0;
	if (len == 3 && !memcmp(s, "NaN", 3))
		return 1;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		i++;
	if (len - i == 3 && !memcmp(s + i, "Inf", 3))
		return 1;
	int whole = mg_digits(s, len, &i), frac = 0;
	if (i < len && s[i] == '.') {
		i++;
		frac = mg_digits(s, len, &i);
	}
	if (!whole && !frac)
		return 0;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (!mg_digits(s, len, &i))
			return 0;
	}
	return i == len;
}

/* mg_help_ok - HELP text: printable ASCII, backslash only before a backslash or n. */
static int mg_help_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\\' && (i + 1 == len || (s[i + 1] != '\\' && s[i + 1] != 'n')))
			return 0;
		else if (s[i] == '\\')
			i++;
	return 1;
}

struct mg_label {
	const char *name, *value;	/* value: escaped, between the quotes */
	size_t name_len, value_len;
};

/*
 * mg_labels - the label set at s ("{" already read) up to and including
 * "}": *end_out after it. 0 or -1 for anything the format does not allow.
 */
static int mg_labels(const char *s, size_t len, size_t *end_out, struct mg_label *l, size_t *n_out)
{
	size_t i = 0, n = 0;
	for (;;) {
		while (i < len && s[i] == ' ')
			i++;
		if (i < len && s[i] == '}')
			break;
		if (n == MERGE_LABELS_MAX)
			return -1;
		size_t nl = mg_name(s + i, len - i, 0);
		if (!nl)
			return -1;
		l[n].name = s + i;
		l[n].name_len = nl;
		i += nl;
		while (i < len && s[i] == ' ')
			i++;
		if (i + 1 >= len || s[i] != '=' || s[i + 1] != '"')
			return -1;
		i += 2;
		l[n].value = s + i;
		while (i < len && s[i] != '"') {
			if (s[i] == '\\' && (i + 1 == len || (s[i + 1] != '\\' && s[i + 1] != '"' && s[i + 1] != 'n')))
				return -1;
			i += s[i] == '\\' ? 2 : 1;
		}
		if (i >= len)
			return -1;
		l[n].value_len = (size_t)(s + i - l[n].value);
		i++;
		for (size_t k = 0; k < n; k++)
			if (l[k].name_len == nl && !memcmp(l[k].name, l[n].name, nl))
				return -1;
		n++;
		while (i < len && s[i] == ' ')
			i++;
		if (i < len && s[i] == ',')
			i++;
		else if (!(i < len && s[i] == '}'))
			return -1;
	}
	*end_out = i + 1;
	*n_out = n;
	return 0;
}

static const struct mg_label *mg_find_label(const struct mg_label *l, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (l[i].name_len == strlen(name) && !memcmp(l[i].name, name, l[i].name_len))
			return &l[i];
	return NULL;
}

/* mg_suffix - name (len) is base + suffix. */
static int mg_is(const char *name, size_t len, const char *base, const char *suffix)
{
	size_t bl = strlen(base), sl = strlen(suffix);
	return len == bl + sl && !memcmp(name, base, bl) && !memcmp(name + bl, suffix, sl);
}

/* mg_belongs - sample name (len) is one of family f's sample names under type t. */
static int mg_belongs(const char *name, size_t len, const char *fam, enum mg_type t)
{
	if (t == MG_HISTOGRAM)
		return mg_is(name, len, fam, "_bucket") || mg_is(name, len, fam, "_sum") || mg_is(name, len, fam, "_count");
	if (t == MG_SUMMARY)
		return mg_is(name, len, fam, "") || mg_is(name, len, fam, "_sum") || mg_is(name, len, fam, "_count");
	return mg_is(name, len, fam, "");
}

/* what one source's text has declared last: the family its next samples belong to */
struct mg_src {
	const char *label, *daemon;
	int cur;		/* family index, -1 none */
	enum mg_type cur_type;	/* as this source declared it */
	int cur_ok;		/* 0: its TYPE clashed with another source's: its samples are dropped */
};

static void mg_comment(struct mg *g, struct mg_src *src, const char *s, size_t len)
{
	int help = len > 7 && !memcmp(s, "# HELP ", 7), type = len > 7 && !memcmp(s, "# TYPE ", 7);
	if (!help && !type)
		return;	/* another comment */
	size_t nl = mg_name(s + 7, len - 7, 1);
	const char *rest = s + 7 + nl;
	size_t rest_len = len - 7 - nl;
	if (!nl || (rest_len && rest[0] != ' '))
		return;
	if (rest_len) {
		rest++;
		rest_len--;
	}
	if (help) {
		if (!mg_help_ok(rest, rest_len))
			return;
		int fi = mg_family_at(g, s + 7, nl, 1);
		if (fi < 0)
			return;
		if (!g->fam[fi].help)
			g->fam[fi].help = xstrndup(rest, rest_len);
		if (src->cur != fi) {
			src->cur = fi;
			src->cur_type = g->fam[fi].type;
			src->cur_ok = 1;
		}
		return;
	}
	enum mg_type t = MG_NONE;
	for (int k = MG_COUNTER; k <= MG_UNTYPED; k++)
		if (strlen(mg_type_name[k]) == rest_len && !memcmp(rest, mg_type_name[k], rest_len))
			t = (enum mg_type)k;
	if (t == MG_NONE)
		return;
	int fi = mg_family_at(g, s + 7, nl, 1);
	if (fi < 0)
		return;
	struct mg_family *f = &g->fam[fi];
	src->cur = fi;
	src->cur_type = t;
	src->cur_ok = 1;
	if (f->type == t || (f->type == MG_UNTYPED && t == MG_NONE))
		return;
	/* the first declaration wins; samples without one fit a counter, gauge or untyped */
	if (f->type == MG_NONE && (!f->nseries || t == MG_COUNTER || t == MG_GAUGE || t == MG_UNTYPED))
		f->type = t;
	else
		src->cur_ok = 0;
}

static void mg_sample(struct mg *g, struct mg_src *src, const char *s, size_t len)
{
	size_t nl = mg_name(s, len, 1), i = nl;
	if (!nl)
		return;
	struct mg_label l[MERGE_LABELS_MAX];
	size_t nlab = 0;
	if (i < len && s[i] == '{') {
		size_t used;
		if (mg_labels(s + i + 1, len - i - 1, &used, l, &nlab) < 0)
			return;
		i += 1 + used;
	}
	/* value [timestamp] */
	size_t v0 = i;
	while (i < len && s[i] == ' ')
		i++;
	if (i == v0 || i == len)
		return;
	size_t vs = i;
	while (i < len && s[i] != ' ')
		i++;
	size_t ve = i;
	if (!mg_float(s + vs, ve - vs))
		return;
	while (i < len && s[i] == ' ')
		i++;
	size_t ts = i;	/* an optional timestamp: integer milliseconds */
	if (i < len) {
		if (s[i] == '-')
			i++;
		if (!mg_digits(s, len, &i))
			return;
	}
	size_t te = i;
	while (i < len && s[i] == ' ')
		i++;
	if (i != len)
		return;
	/* the family: the one declared last, when the name is one of its samples' */
	int fi = -1;
	enum mg_type t;
	if (src->cur >= 0 && mg_belongs(s, nl, g->fam[src->cur].name, src->cur_type)) {
		if (!src->cur_ok)
			return;
		fi = src->cur;
	} else {
		fi = mg_family_at(g, s, nl, 1);
		if (fi < 0)
			return;
	}
	struct mg_family *f = &g->fam[fi];
	t = f->type;
	if (!mg_belongs(s, nl, f->name, t))
		return;	/* e.g. a histogram's own name */
	/* le on a histogram's buckets only, quantile on a summary's quantiles only */
	const struct mg_label *le = mg_find_label(l, nlab, "le"), *q = mg_find_label(l, nlab, "quantile");
	int bucket = t == MG_HISTOGRAM && mg_is(s, nl, f->name, "_bucket");
	int quant = t == MG_SUMMARY && mg_is(s, nl, f->name, "");
	if (t == MG_HISTOGRAM && (bucket ? !le || !mg_float(le->value, le->value_len) : le != NULL))
		return;
	if (t == MG_SUMMARY && (quant ? !q || !mg_float(q->value, q->value_len) : q != NULL))
		return;
	if (mg_find_label(l, nlab, "__name__") ||
	    (src->daemon && (nlab == MERGE_LABELS_MAX || mg_find_label(l, nlab, src->label))))
		return;
	struct sbuf *b = &f->series;
	sbuf_add(b, s, nl);
	if (src->daemon || nlab) {
		sbuf_addc(b, '{');
		if (src->daemon) {
			char esc[2 * METRICS_VALUE_MAX];
			sbuf_printf(b, "%s=\"", src->label);
			sbuf_add(b, esc, metrics_escape_value(src->daemon, esc));
			sbuf_addc(b, '"');
		}
		for (size_t k = 0; k < nlab; k++) {
			if (k || src->daemon)
				sbuf_addc(b, ',');
			sbuf_add(b, l[k].name, l[k].name_len);
			sbuf_adds(b, "=\"");
			sbuf_add(b, l[k].value, l[k].value_len);
			sbuf_addc(b, '"');
		}
		sbuf_addc(b, '}');
	}
	sbuf_addc(b, ' ');
	sbuf_add(b, s + vs, ve - vs);
	if (te > ts) {
		sbuf_addc(b, ' ');
		sbuf_add(b, s + ts, te - ts);
	}
	sbuf_addc(b, '\n');
	f->nseries++;
}

static void mg_line(struct mg *g, struct mg_src *src, const char *s, size_t len)
{
	if (!len || len > (src->daemon ? MERGE_INPUT_LINE_MAX : MERGE_LINE_MAX))
		return;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return;	/* printable ASCII only: what our daemons write */
	if (s[0] == '#')
		mg_comment(g, src, s, len);
	else
		mg_sample(g, src, s, len);
}

/* mg_clash - a family named base + suffix that is not f: its samples would join the histogram or summary f. */
static void mg_clash(struct mg *g, const struct mg_family *f, const char *suffix)
{
	char *name = xasprintf("%s%s", f->name, suffix);
	int fi = mg_family_at(g, name, strlen(name), 0);
	if (fi >= 0 && &g->fam[fi] != f)
		g->fam[fi].dropped = 1;
	free(name);
}

char *metrics_merge(const char *label, const struct metrics_source *src, size_t n, size_t *len_out)
{
	struct mg *g = xcalloc(1, sizeof *g);
	if (!label || !metrics_name_ok(label, strlen(label)))
		panic("metrics_merge: bad label name");
	for (size_t k = 0; k < n; k++) {
		struct mg_src st = { label, src[k].daemon, -1, MG_NONE, 0 };
		const char *p = src[k].text, *end = p + (p ? src[k].len : 0);
		while (p && p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *e = nl ? nl : end;
			mg_line(g, &st, p, (size_t)(e - p));
			p = e + 1;
		}
	}
	for (size_t i = 0; i < g->nfam; i++) {
		const struct mg_family *f = &g->fam[i];
		if (f->type == MG_HISTOGRAM || f->type == MG_SUMMARY) {
			mg_clash(g, f, "_sum");
			mg_clash(g, f, "_count");
			if (f->type == MG_HISTOGRAM)
				mg_clash(g, f, "_bucket");
		}
	}
	struct sbuf out;
	sbuf_init(&out);
	for (size_t i = 0; i < g->nfam; i++) {
		struct mg_family *f = &g->fam[i];
		if (!f->dropped) {
			if (f->help)
				sbuf_printf(&out, "# HELP %s %s\n", f->name, f->help);
			if (f->type != MG_NONE)
				sbuf_printf(&out, "# TYPE %s %s\n", f->name, mg_type_name[f->type]);
			if (f->series.len)
				sbuf_add(&out, f->series.buf, f->series.len);
		}
		free(f->name);
		free(f->help);
		sbuf_free(&f->series);
	}
	free(g->fam);
	free(g);
	if (len_out)
		*len_out = out.len;
	if (!out.buf)
		sbuf_adds(&out, "");
	return sbuf_steal(&out);
}
