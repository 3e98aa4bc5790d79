#include "proto/authres.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

/* ---- lexer ---- */

struct ar_lex {
	const char *v;
	size_t len, i;
	char *pool;		/* strings; 2*len+2 bytes are enough: each string comes
				 * from at least one source byte and adds one NUL */
	size_t pool_used;
	const char *err;
};

static int is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Keyword (RFC 8601: ldh-str) plus '_' (leniency 3). */
static int is_kw(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
	       c == '_';
}

/* RFC 2045 token character (US-ASCII, no space, CTLs or tspecials). */
static int is_token(unsigned char c)
{
	return c > ' ' && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* Unquoted value character (leniency 1). */
static int is_lenient(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != '"' && c != '(' && c != ')' && c != ';' && c != '\\';
}

/*
 * skip_cfws - white space, folding and (nested (comments)) from l->i.
 * Returns the number of bytes skipped, or -1 for an unterminated comment.
 */
static long skip_cfws(struct ar_lex *l)
{
	size_t start = l->i;
	while (l->i < l->len) {
		unsigned char c = (unsigned char)l->v[l->i];
		if (is_wsp(c)) {
			l->i++;
		} else if (c == '(') {
			size_t depth = 1;
			for (l->i++; l->i < l->len && depth > 0; l->i++) {
				c = (unsigned char)l->v[l->i];
				if (c == '\\')
					l->i++;	/* quoted-pair; may step past the end */
				else if (c == '(')
					depth++;
				else if (c == ')')
					depth--;
			}
			if (depth > 0) {
				l->err = "unterminated comment";
				return -1;
			}
		} else {
			break;
		}
	}
	return (long)(l->i - start);
}

static char *pool_start(struct ar_lex *l)
{
	return l->pool + l->pool_used;
}

/* pool_end - NUL-terminates the string being written (n bytes) and returns it. */
static const char *pool_end(struct ar_lex *l, size_t n)
{
	char *s = l->pool + l->pool_used;
	s[n] = 0;
	l->pool_used += n + 1;
	return s;
}

/* read_keyword - lower-cased; dots allowed if dots. NULL (no error set) if empty. */
static const char *read_keyword(struct ar_lex *l, int dots)
{
	char *s = pool_start(l);
	size_t n = 0;
	while (l->i < l->len) {
		unsigned char c = (unsigned char)l->v[l->i];
		if (!is_kw(c) && !(dots && c == '.'))
			break;
		s[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
		l->i++;
	}
	if (n == 0)
		return NULL;
	return pool_end(l, n);
}

/*
 * quoted_into - the quoted-string at l->i ('"') unquoted into s; CR and LF
 * (folding) dropped. Returns its length, or -1 (unterminated, NUL).
 */
static long quoted_into(struct ar_lex *l, char *s)
{
	size_t n = 0;
	for (l->i++; l->i < l->len; l->i++) {
		char c = l->v[l->i];
		if (c == '"') {
			l->i++;
			return (long)n;
		}
		if (c == '\\') {
			if (++l->i >= l->len)
				break;
			c = l->v[l->i];
		}
		if (c == '\r' || c == '\n')
			continue;	/* even quoted: folding, not text */
		if (c == 0) {
			l->err = "NUL in a quoted-string";
			return -1;
		}
		s[n++] = c;
	}
	if (l->err == NULL)
		l->err = "unterminated quoted-string";
	return -1;
}

/*
 * read_value - RFC 2045 value: quoted-string (unquoted), or a run of token
 * characters (strict) or of unquoted value characters (leniency 1). A
 * quoted local-part followed by '@' (RFC 8601 pvalue) is kept as written.
 * Returns NULL with l->err set if there is no value.
 */
static const char *read_value(struct ar_lex *l, int strict)
{
	char *s = pool_start(l);
	size_t n = 0;
	if (l->i < l->len && l->v[l->i] == '"') {
		size_t q = l->i;
		long qn = quoted_into(l, s);
		if (qn < 0)
			return NULL;
		if (strict || l->i >= l->len || l->v[l->i] != '@')
			return pool_end(l, (size_t)qn);
		/* "quoted local"@domain: the address as written, folding dropped */
		for (; q < l->i; q++)
			if (l->v[q] != '\r' && l->v[q] != '\n')
				s[n++] = l->v[q];
	}
	while (l->i < l->len) {
		unsigned char c = (unsigned char)l->v[l->i];
		if (strict ? !is_token(c) : !is_lenient(c))
			break;
		s[n++] = (char)c;
		l->i++;
	}
	if (n == 0) {
		l->err = "value expected";
		return NULL;
	}
	return pool_end(l, n);
}

static const char *read_digits(struct ar_lex *l)
{
	char *s = pool_start(l);
	size_t n = 0;
	while (l->i < l->len && is_digit((unsigned char)l->v[l->i]))
		s[n++] = l->v[l->i++];
	if (n == 0)
		return NULL;
	return pool_end(l, n);
}

static int at(const struct ar_lex *l, char c)
{
	return l->i < l->len && l->v[l->i] == c;
}

/* ---- parser ---- */

struct ar_build {
	struct authres *a;
	size_t rcap, pcap, nprops;
	size_t first_prop[AUTHRES_MAX_RESULTS];
};

static int add_result(struct ar_build *b, struct ar_lex *l)
{
	struct authres *a = b->a;
	if (a->nresults >= AUTHRES_MAX_RESULTS) {
		l->err = "too many results";
		return AUTHRES_ELIMIT;
	}
	if (a->nresults == b->rcap) {
		b->rcap = b->rcap ? 2 * b->rcap : 4;
		a->results = xrealloc(a->results, b->rcap * sizeof(*a->results));
	}
	memset(&a->results[a->nresults], 0, sizeof(a->results[0]));
	b->first_prop[a->nresults] = b->nprops;
	a->nresults++;
	return 0;
}

static int add_prop(struct ar_build *b, struct ar_lex *l, const char *ptype, const char *property,
		    const char *value)
{
	struct authres *a = b->a;
	struct authres_result *r = &a->results[a->nresults - 1];
	if (r->nprops >= AUTHRES_MAX_PROPS) {
		l->err = "too many properties in one result";
		return AUTHRES_ELIMIT;
	}
	if (b->nprops == b->pcap) {
		b->pcap = b->pcap ? 2 * b->pcap : 8;
		a->props_ = xrealloc(a->props_, b->pcap * sizeof(*a->props_));
	}
	a->props_[b->nprops++] = (struct authres_prop){ ptype, property, value };
	r->nprops++;
	return 0;
}

/*
 * parse_props - after "method=result": [reason=value] then ptype.property=
 * pvalue (or bare key=value), up to ';' or the end.
 */
static int parse_props(struct ar_build *b, struct ar_lex *l)
{
	struct authres_result *r = &b->a->results[b->a->nresults - 1];
	int first = 1;
	for (;; first = 0) {
		if (skip_cfws(l) < 0)
			return AUTHRES_ESYNTAX;
		if (l->i >= l->len || at(l, ';'))
			return 0;
		const char *ptype = read_keyword(l, 0), *property, *value;
		if (ptype == NULL) {
			l->err = "property expected";
			return AUTHRES_ESYNTAX;
		}
		if (skip_cfws(l) < 0)
			return AUTHRES_ESYNTAX;
		if (at(l, '.')) {
			l->i++;
			if (skip_cfws(l) < 0)
				return AUTHRES_ESYNTAX;
			property = read_keyword(l, 1);
			if (property == NULL) {
				l->err = "property name expected after '.'";
				return AUTHRES_ESYNTAX;
			}
			if (skip_cfws(l) < 0)
				return AUTHRES_ESYNTAX;
		} else {
			property = ptype;	/* bare key=value, or reason= */
			ptype = "";
		}
		if (!at(l, '=')) {
			l->err = "'=' expected after a property";
			return AUTHRES_ESYNTAX;
		}
		l->i++;
		if (skip_cfws(l) < 0)
			return AUTHRES_ESYNTAX;
		if ((value = read_value(l, 0)) == NULL)
			return AUTHRES_ESYNTAX;
		if (first && ptype[0] == 0 && strcmp(property, "reason") == 0) {
			r->reason = value;
			continue;
		}
		int rc = add_prop(b, l, ptype, property, value);
		if (rc < 0)
			return rc;
	}
}

/* parse_resinfo - one resinfo after its ';' (RFC 8601 methodspec and the rest). */
static int parse_resinfo(struct ar_build *b, struct ar_lex *l)
{
	const char *method = read_keyword(l, 0), *mver = NULL, *result;
	if (method == NULL) {
		l->err = "method expected";
		return AUTHRES_ESYNTAX;
	}
	if (skip_cfws(l) < 0)
		return AUTHRES_ESYNTAX;
	if (at(l, '/')) {
		l->i++;
		if (skip_cfws(l) < 0)
			return AUTHRES_ESYNTAX;
		if ((mver = read_digits(l)) == NULL) {
			l->err = "method version expected after '/'";
			return AUTHRES_ESYNTAX;
		}
		if (skip_cfws(l) < 0)
			return AUTHRES_ESYNTAX;
	}
	if (!at(l, '=')) {
		l->err = "'=' expected after the method";
		return AUTHRES_ESYNTAX;
	}
	l->i++;
	if (skip_cfws(l) < 0)
		return AUTHRES_ESYNTAX;
	if ((result = read_keyword(l, 0)) == NULL) {
		l->err = "result expected after '='";
		return AUTHRES_ESYNTAX;
	}
	int rc = add_result(b, l);
	if (rc < 0)
		return rc;
	struct authres_result *r = &b->a->results[b->a->nresults - 1];
	r->method = method;
	r->method_version = mver;
	r->result = result;
	return parse_props(b, l);
}

static int parse_all(struct ar_build *b, struct ar_lex *l)
{
	struct authres *a = b->a;
	if (skip_cfws(l) < 0)
		return AUTHRES_ESYNTAX;
	if ((a->authserv_id = read_value(l, 1)) == NULL || a->authserv_id[0] == 0) {
		l->err = "authserv-id expected";	/* "" identifies nobody */
		return AUTHRES_ESYNTAX;
	}
	long n = skip_cfws(l);
	if (n < 0)
		return AUTHRES_ESYNTAX;
	if (n > 0 && l->i < l->len && is_digit((unsigned char)l->v[l->i])) {
		a->version = read_digits(l);
		if (skip_cfws(l) < 0)
			return AUTHRES_ESYNTAX;
	}
	if (!at(l, ';')) {
		l->err = "';' expected after the authserv-id";
		return AUTHRES_ESYNTAX;
	}
	while (at(l, ';')) {
		l->i++;
		if (skip_cfws(l) < 0)
			return AUTHRES_ESYNTAX;
		if (l->i >= l->len && a->nresults > 0)
			return 0;	/* leniency 4: one ';' after the last result */
		if (a->nresults == 0) {
			/* no-result: "none" alone */
			size_t save = l->i, pool_save = l->pool_used;
			const char *kw = read_keyword(l, 0);
			if (kw != NULL && strcmp(kw, "none") == 0) {
				if (skip_cfws(l) < 0)
					return AUTHRES_ESYNTAX;
				if (l->i >= l->len)
					return 0;
				if (!at(l, '=') && !at(l, '/')) {
					l->err = "nothing may follow \"none\"";
					return AUTHRES_ESYNTAX;
				}
			}
			l->i = save;	/* a method (possibly named "none") */
			l->pool_used = pool_save;
		}
		int rc = parse_resinfo(b, l);
		if (rc < 0)
			return rc;
	}
	if (l->i < l->len) {
		l->err = "';' expected between results";
		return AUTHRES_ESYNTAX;
	}
	return 0;
}

int authres_parse(const char *value, size_t len, struct authres **out, const char **err_out)
{
	*out = NULL;
	if (len > AUTHRES_MAX_BYTES) {
		if (err_out != NULL)
			*err_out = "value too long";
		return AUTHRES_ELIMIT;
	}
	struct authres *a = xcalloc(1, sizeof(*a));
	struct ar_build b = { .a = a };
	struct ar_lex l = { .v = value, .len = len };
	a->pool_ = xmalloc(2 * len + 2);
	l.pool = a->pool_;
	int rc = parse_all(&b, &l);
	if (rc < 0) {
		if (err_out != NULL)
			*err_out = l.err != NULL ? l.err : "syntax error";
		authres_free(&a);
		return rc;
	}
	for (size_t k = 0; k < a->nresults; k++)
		a->results[k].props = a->results[k].nprops ? &a->props_[b.first_prop[k]] : NULL;
	*out = a;
	return AUTHRES_OK;
}

void authres_free(struct authres **ap)
{
	struct authres *a = *ap;
	if (a == NULL)
		return;
	free(a->results);
	free(a->props_);
	free(a->pool_);
	free(a);
	*ap = NULL;
}

const char *authres_prop_get(const struct authres_result *r, const char *ptype,
			     const char *property)
{
	for (size_t k = 0; k < r->nprops; k++)
		if (ascii_strcasecmp(r->props[k].ptype, ptype) == 0 &&
		    ascii_strcasecmp(r->props[k].property, property) == 0)
			return r->props[k].value;
	return NULL;
}

int authres_authserv_id(const char *v, size_t len, char *out, size_t outlen)
{
	struct ar_lex l = { .v = v, .len = len };
	size_t o = 0;
	if (outlen == 0 || skip_cfws(&l) < 0)
		return -1;
	size_t i = l.i;
	if (i < len && v[i] == '"') {
		for (i++; i < len && v[i] != '"'; i++) {
			if (v[i] == '\\' && i + 1 < len)
				i++;
			if (v[i] == '\r' || v[i] == '\n')
				continue;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = v[i];
		}
		if (i >= len)
			return -1;
	} else {
		for (; i < len; i++) {
			unsigned char c = (unsigned char)v[i];
			if (c <= ' ' || c == ';' || c == '(' || c >= 0x7f)
				break;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return o > 0 ? 0 : -1;
}

/* ---- format ---- */

/* RFC 2045 tspecials + space/controls/8-bit: such values must be quoted. */
static int needs_quote(const char *v)
{
	if (*v == 0)
		return 1;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (!is_token(*p))
			return 1;
	return 0;
}

/* pvalue_ok - a domain or [local]@domain that needs no quoting (RFC 8601 2.2 pvalue). */
static int pvalue_ok(const char *v)
{
	int at_seen = 0;
	if (*v == 0)
		return 0;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '@' && !at_seen) {
			at_seen = 1;
			continue;
		}
		if (*p <= ' ' || *p >= 0x7f || strchr("()<>@,;:\\\"[]", *p) != NULL)
			return 0;
	}
	return 1;
}

void authres_quote_value(struct sbuf *b, const char *v)
{
	if (!needs_quote(v)) {
		sbuf_adds(b, v);
		return;
	}
	sbuf_addc(b, '"');
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			sbuf_addc(b, '\\');
		if (*p == '\r' || *p == '\n')
			continue;
		sbuf_addc(b, *p);
	}
	sbuf_addc(b, '"');
}

void authres_fmt_begin(struct authres_fmt *f, struct sbuf *b, const char *authserv_id,
		       int lf_only)
{
	f->b = b;
	f->nl = lf_only ? "\n\t" : "\r\n\t";
	f->nresults = 0;
	sbuf_addc(b, ' ');
	authres_quote_value(b, authserv_id);
	sbuf_addc(b, ';');
}

void authres_fmt_result(struct authres_fmt *f, const char *method, const char *result,
			const char *reason, const char *comment)
{
	struct sbuf *b = f->b;
	if (f->nresults > 0)
		sbuf_addc(b, ';');
	sbuf_adds(b, f->nl);
	sbuf_adds(b, method);
	sbuf_addc(b, '=');
	sbuf_adds(b, result);
	if (reason != NULL) {
		sbuf_adds(b, " reason=");
		authres_quote_value(b, reason);
	}
	if (comment != NULL) {
		sbuf_adds(b, " (");
		for (const char *p = comment; *p; p++) {
			if (*p == '\r' || *p == '\n')
				continue;
			if (*p == '(' || *p == ')' || *p == '\\')
				sbuf_addc(b, '\\');
			sbuf_addc(b, *p);
		}
		sbuf_addc(b, ')');
	}
	f->nresults++;
}

static void fmt_prop_name(struct authres_fmt *f, const char *ptype, const char *property)
{
	if (f->nresults == 0)
		panic("authres_fmt_prop: %s.%s before any result", ptype, property);
	sbuf_addc(f->b, ' ');
	if (ptype[0] != 0) {
		sbuf_adds(f->b, ptype);
		sbuf_addc(f->b, '.');
	}
	sbuf_adds(f->b, property);
	sbuf_addc(f->b, '=');
}

void authres_fmt_prop(struct authres_fmt *f, const char *ptype, const char *property,
		      const char *value)
{
	fmt_prop_name(f, ptype, property);
	if (pvalue_ok(value))
		sbuf_adds(f->b, value);	/* RFC 8601 pvalue: [local-part] "@" domain */
	else
		authres_quote_value(f->b, value);
}

void authres_fmt_prop_value(struct authres_fmt *f, const char *ptype, const char *property,
			    const char *value)
{
	fmt_prop_name(f, ptype, property);
	authres_quote_value(f->b, value);
}

void authres_fmt_end(struct authres_fmt *f)
{
	if (f->nresults == 0) {
		sbuf_adds(f->b, f->nl);
		sbuf_adds(f->b, "none");
	}
}

char *authres_format(const struct authres *a, int lf_only)
{
	struct sbuf b;
	struct authres_fmt f;
	sbuf_init(&b);
	authres_fmt_begin(&f, &b, a->authserv_id, lf_only);
	if (a->version != NULL) {
		/* " id;" -> " id 1;" */
		b.len--;
		b.buf[b.len] = 0;
		sbuf_printf(&b, " %s;", a->version);
	}
	for (size_t k = 0; k < a->nresults; k++) {
		const struct authres_result *r = &a->results[k];
		if (r->method_version != NULL) {
			char *m = xasprintf("%s/%s", r->method, r->method_version);
			authres_fmt_result(&f, m, r->result, r->reason, NULL);
			free(m);
		} else {
			authres_fmt_result(&f, r->method, r->result, r->reason, NULL);
		}
		for (size_t p = 0; p < r->nprops; p++)
			authres_fmt_prop(&f, r->props[p].ptype, r->props[p].property,
					 r->props[p].value);
	}
	authres_fmt_end(&f);
	return sbuf_steal(&b);
}
