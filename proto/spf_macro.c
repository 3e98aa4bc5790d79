/*
 * spf_macro: macro-string syntax and expansion (RFC 7208 7), domain-spec
 * syntax (7.1) and the name checks of 4.3 and 7.3. See proto/spf.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/spf.h"

#define MACRO_MAX_DIGITS 128	/* more parts than any name can have */

static int is_alpha(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

static int is_delim(int ch)
{
	return ch != 0 && strchr(".-+,/_=", ch) != NULL;
}

/* One parsed "%{...}" (or %% %_ %-). */
struct macro_tok {
	char letter;		/* lower case; '%', '_', '-' for the escapes */
	int upper;		/* URL-escape the value */
	unsigned digits;	/* 0 = all parts */
	int reverse;
	char delims[8];		/* NUL-terminated set; "" = "." */
	size_t len;		/* bytes consumed */
};

/*
 * Parse the macro at s[0] == '%'. Returns 0 or -1 with *err_out. Letters c r
 * t only with SPF_MACRO_EXP (7.1).
 */
static int macro_tok_parse(const char *s, size_t len, int flags, struct macro_tok *t,
			   const char **err_out)
{
	memset(t, 0, sizeof(*t));
	if (len < 2 || (s[1] != '{' && s[1] != '%' && s[1] != '_' && s[1] != '-')) {
		*err_out = "'%' not followed by '{', '%', '_' or '-'";
		return -1;
	}
	if (s[1] != '{') {
		t->letter = s[1];
		t->len = 2;
		return 0;
	}
	size_t i = 2;
	if (i >= len || !strchr("slodiphcrtvSLODIPHCRTV", s[i]) || s[i] == 0) {
		*err_out = "unknown macro letter";
		return -1;
	}
	t->upper = s[i] >= 'A' && s[i] <= 'Z';
	t->letter = (char)(t->upper ? s[i] - 'A' + 'a' : s[i]);
	if (!(flags & SPF_MACRO_EXP) && strchr("crt", t->letter)) {
		*err_out = "macro letters c, r, t are only allowed in explanations";
		return -1;
	}
	i++;
	int have_digits = 0;
	unsigned n = 0;
	for (; i < len && is_digit(s[i]); i++) {
		have_digits = 1;
		n = n * 10 + (unsigned)(s[i] - '0');
		if (n > MACRO_MAX_DIGITS)
			n = MACRO_MAX_DIGITS;
	}
	if (have_digits && n == 0) {
		*err_out = "macro transformer digits must be nonzero";
		return -1;
	}
	t->digits = n;
	if (i < len && (s[i] == 'r' || s[i] == 'R')) {
		t->reverse = 1;
		i++;
	}
	size_t nd = 0;
	for (; i < len && is_delim(s[i]); i++)
		if (!strchr(t->delims, s[i]) && nd < sizeof(t->delims) - 1)
			t->delims[nd++] = s[i];
	if (i >= len || s[i] != '}') {
		*err_out = "unterminated or malformed macro";
		return -1;
	}
	t->len = i + 1;
	return 0;
}

/* Scan s; *last_macro_end_out = offset just past the last macro-expand. */
static int macro_scan(const char *s, size_t len, int flags, size_t *last_macro_end_out,
		      const char **err_out)
{
	size_t i = 0;

	*last_macro_end_out = (size_t)-1;
	while (i < len) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '%') {
			struct macro_tok t;
			if (macro_tok_parse(s + i, len - i, flags, &t, err_out) < 0)
				return -1;
			i += t.len;
			*last_macro_end_out = i;
		} else if ((ch >= 0x21 && ch <= 0x7e) || (ch == ' ' && (flags & SPF_MACRO_EXP))) {
			i++;
		} else {
			*err_out = "invalid character in macro-string";
			return -1;
		}
	}
	return 0;
}

int spf_macro_check(const char *s, size_t len, int flags, const char **err_out)
{
	size_t end;

	return macro_scan(s, len, flags, &end, err_out);
}

/* toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static int toplabel_valid(const char *s, size_t len)
{
	int alpha = 0, dash = 0;

	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (is_alpha(s[i]))
			alpha = 1;
		else if (s[i] == '-')
			dash = 1;
		else if (!is_digit(s[i]))
			return 0;
	}
	if (dash)
		return s[0] != '-' && s[len - 1] != '-';
	return alpha;
}

int spf_domain_spec_check(const char *s, size_t len, const char **err_out)
{
	size_t last_macro;

	if (len == 0) {
		*err_out = "empty domain-spec";
		return -1;
	}
	if (macro_scan(s, len, 0, &last_macro, err_out) < 0)
		return -1;
	if (last_macro == len)
		return 0;	/* domain-end = macro-expand */
	size_t end = len;
	if (s[end - 1] == '.')
		end--;
	size_t start = end;
	while (start > 0 && s[start - 1] != '.')
		start--;
	if (start == 0 || !toplabel_valid(s + start, end - start)) {
		*err_out = "domain-spec does not end in a valid top label or macro";
		return -1;
	}
	return 0;
}

int spf_macro_uses_p(const char *s, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++)
		if (s[i] == '%') {
			if (s[i + 1] == '{' && (s[i + 2] == 'p' || s[i + 2] == 'P'))
				return 1;
			i++;	/* skip the escaped char of %% */
		}
	return 0;
}

static const char *macro_value(const struct spf_macro_ctx *m, char letter, char *tbuf,
			       size_t tlen)
{
	const char *v = NULL;

	switch (letter) {
	case 's': v = m->s; break;
	case 'l': v = m->l; break;
	case 'o': v = m->o; break;
	case 'd': v = m->d; break;
	case 'i': v = m->i; break;
	case 'c': v = m->c; break;
	case 'v': v = m->v; break;
	case 'h': v = m->h; break;
	case 'p': v = m->p ? m->p : "unknown"; break;
	case 'r': v = m->r ? m->r : "unknown"; break;
	case 't':
		snprintf(tbuf, tlen, "%lld", m->t);
		v = tbuf;
		break;
	}
	return v ? v : "";
}

/* Split val on delims, reverse, keep the right-most digits parts, join with '.' (7.3). */
static void macro_transform(const struct macro_tok *t, const char *val, struct sbuf *out)
{
	const char *delims = t->delims[0] ? t->delims : ".";
	size_t vlen = strlen(val), nparts = 1;

	for (size_t i = 0; i < vlen; i++)
		if (strchr(delims, val[i]))
			nparts++;
	size_t *start = xmalloc(nparts * sizeof(*start));
	size_t *plen = xmalloc(nparts * sizeof(*plen));
	size_t k = 0, from = 0;
	for (size_t i = 0; i <= vlen; i++)
		if (i == vlen || strchr(delims, val[i])) {
			start[k] = from;
			plen[k++] = i - from;
			from = i + 1;
		}
	size_t keep = t->digits && t->digits < nparts ? t->digits : nparts;
	for (size_t j = nparts - keep; j < nparts; j++) {
		size_t idx = t->reverse ? nparts - 1 - j : j;
		if (j > nparts - keep)
			sbuf_addc(out, '.');
		sbuf_add(out, val + start[idx], plen[idx]);
	}
	free(start);
	free(plen);
}

static int is_unreserved(int ch)
{
	return is_alpha(ch) || is_digit(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static void macro_emit(const struct macro_tok *t, const char *val, struct sbuf *out)
{
	if (!t->upper) {
		macro_transform(t, val, out);
		return;
	}
	struct sbuf tmp;
	sbuf_init(&tmp);
	macro_transform(t, val, &tmp);
	for (size_t i = 0; i < tmp.len; i++) {
		unsigned char ch = (unsigned char)tmp.buf[i];
		if (is_unreserved(ch))
			sbuf_addc(out, (char)ch);
		else
			sbuf_printf(out, "%%%02X", ch);
	}
	sbuf_free(&tmp);
}

int spf_macro_expand(const struct spf_macro_ctx *m, const char *s, size_t len, int flags,
		     struct sbuf *out, const char **err_out)
{
	size_t i = 0;
	char tbuf[32];

	while (i < len) {
		unsigned char ch = (unsigned char)s[i];
		if (ch != '%') {
			if (!((ch >= 0x21 && ch <= 0x7e) || (ch == ' ' && (flags & SPF_MACRO_EXP)))) {
				*err_out = "invalid character in macro-string";
				return -1;
			}
			sbuf_addc(out, s[i++]);
			continue;
		}
		struct macro_tok t;
		if (macro_tok_parse(s + i, len - i, flags, &t, err_out) < 0)
			return -1;
		i += t.len;
		if (t.letter == '%')
			sbuf_addc(out, '%');
		else if (t.letter == '_')
			sbuf_addc(out, ' ');
		else if (t.letter == '-')
			sbuf_adds(out, "%20");
		else
			macro_emit(&t, macro_value(m, t.letter, tbuf, sizeof(tbuf)), out);
		if (out->len > SPF_MACRO_MAX_OUT) {
			*err_out = "macro expansion too long";
			return -1;
		}
	}
	return 0;
}

/* Labels 1..63 bytes, no empty label; a trailing dot is already gone. */
static int labels_valid(const char *s, size_t len, size_t *nlabels_out)
{
	size_t lab = 0, n = 1;

	if (len == 0 || len > SPF_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (lab == 0)
				return 0;
			lab = 0;
			n++;
		} else if (++lab > 63) {
			return 0;
		}
	}
	if (nlabels_out)
		*nlabels_out = n;
	return lab > 0;
}

int spf_target_name(struct sbuf *name)
{
	size_t off = 0;

	if (name->len == 0 || !name->buf)
		return -1;
	while (name->len - off > SPF_NAME_MAX) {
		const char *dot = memchr(name->buf + off, '.', name->len - off);
		if (!dot)
			return -1;
		off = (size_t)(dot - name->buf) + 1;
	}
	if (off) {
		memmove(name->buf, name->buf + off, name->len - off);
		name->len -= off;
		name->buf[name->len] = 0;
	}
	if (name->len && name->buf[name->len - 1] == '.')
		name->buf[--name->len] = 0;
	if (memchr(name->buf, 0, name->len))
		return -1;
	return labels_valid(name->buf, name->len, NULL) ? 0 : -1;
}

int spf_domain_valid(const char *name)
{
	size_t len = strlen(name), n;

	if (len && name[len - 1] == '.')
		len--;
	if (!labels_valid(name, len, &n) || n < 2)
		return 0;
	int alpha_tld = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch <= 0x20 || ch >= 0x7f || ch == '[' || ch == ']' || ch == '@')
			return 0;
	}
	for (size_t i = len; i > 0 && name[i - 1] != '.'; i--)
		if (!is_digit(name[i - 1]))
			alpha_tld = 1;
	return alpha_tld;	/* an all-numeric TLD is an address, not a domain */
}
