/*
 * rfc5322: header-field unfolding and address lists. See rfc5322.h.
 *
 * The value is unfolded into a private copy, then read by a small lexer
 * (CFWS skipped and remembered as "white space before", atoms, quoted
 * strings, domain literals, dots, single specials) and a recursive-descent
 * parser one address at a time. An element's words are scanned once to see
 * what ends them ('@' = addr-spec, '<' = name-addr, ':' = group), then read
 * again by the matching rule: the grammar of 3.4 is ambiguous only until that
 * character. No recursion beyond one group level; comments nest by counter.
 */
#include "proto/rfc5322.h"

#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

enum tok_kind { T_END, T_ATOM, T_QSTR, T_DOT, T_DLIT, T_SPECIAL };

struct tok {
	enum tok_kind kind;
	size_t b, e;		/* ATOM: the text; QSTR/DLIT: between the delimiters */
	int ws;			/* CFWS came before it */
	char c;			/* T_SPECIAL: the character */
};

struct rp {
	const char *s;		/* unfolded value, NUL-terminated, no NUL inside */
	size_t len, pos;
	int groups_ok;
	struct rfc5322_addrlist *out;
	size_t cap;
	const char *group;	/* display name of the open group, or NULL */
	struct sbuf tmp;
};

static const char *const err_text[] = {
	[RFC5322_OK] = "ok",
	[RFC5322_ERR_EMPTY] = "no address",
	[RFC5322_ERR_SYNTAX] = "syntax error",
	[RFC5322_ERR_UNBALANCED_ANGLE] = "unbalanced angle bracket",
	[RFC5322_ERR_UNBALANCED_QUOTE] = "unterminated quoted string",
	[RFC5322_ERR_UNBALANCED_COMMENT] = "unbalanced comment parenthesis",
	[RFC5322_ERR_NO_DOMAIN] = "address without domain",
	[RFC5322_ERR_NO_LOCAL] = "address without local part",
	[RFC5322_ERR_BAD_DOMAIN] = "malformed domain",
	[RFC5322_ERR_GROUP] = "group not allowed or not closed",
	[RFC5322_ERR_TRAILING] = "trailing garbage after address",
	[RFC5322_ERR_NUL] = "NUL byte",
	[RFC5322_ERR_CTL] = "control character or bare line break",
	[RFC5322_ERR_8BIT] = "invalid 8-bit data",
	[RFC5322_ERR_TOO_MANY] = "too many addresses",
	[RFC5322_ERR_TOO_LONG] = "value or domain too long",
};

const char *rfc5322_strerror(int err)
{
	if (err < 0 || (size_t)err >= sizeof(err_text) / sizeof(err_text[0]) || !err_text[err])
		return "unknown error";
	return err_text[err];
}

size_t rfc5322_unfold(const char *in, size_t len, char *out)
{
	size_t i = 0, o = 0;

	/* o <= i throughout, and in[i..] is read before out[o] is written,
	 * so in == out works */
	while (i < len) {
		char c = in[i];
		if (c == '\r' && i + 2 < len && in[i + 1] == '\n' && (in[i + 2] == ' ' || in[i + 2] == '\t')) {
			i += 2;
			continue;
		}
		if (c == '\n' && i + 1 < len && (in[i + 1] == ' ' || in[i + 1] == '\t')) {
			i++;
			continue;
		}
		out[o++] = c;
		i++;
	}
	out[o] = '\0';
	return o;
}

char *rfc5322_unfold_dup(const char *in, size_t len, size_t *len_out)
{
	char *out = xmalloc(len + 1);
	size_t n = rfc5322_unfold(in, len, out);

	if (len_out)
		*len_out = n;
	return out;
}

/* ---- lexer ---- */

static int is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* ctl - a control character other than HTAB (CR and LF included: after
 * unfolding they are never part of a fold). */
static int is_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* utf8_len - length of the well-formed UTF-8 sequence (RFC 3629 4) at s,
 * 0 if it is not one. n >= 1 bytes are available. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t need, k;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;	/* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;	/* <= U+10FFFF */
	} else
		return 0;
	if (n < need + 1)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (k = 2; k <= need; k++)
		if (s[k] < 0x80 || s[k] > 0xbf)
			return 0;
	return need + 1;
}

/* skip_cfws - 3.2.2: white space and (nested) comments with quoted-pairs.
 * Sets *ws when anything was skipped. */
static int skip_cfws(struct rp *p, int *ws)
{
	const unsigned char *s = (const unsigned char *)p->s;

	for (;;) {
		if (p->pos < p->len && (s[p->pos] == ' ' || s[p->pos] == '\t')) {
			p->pos++;
			*ws = 1;
			continue;
		}
		if (p->pos >= p->len || s[p->pos] != '(')
			return 0;
		*ws = 1;
		size_t depth = 1;
		p->pos++;
		while (depth > 0) {
			if (p->pos >= p->len)
				return RFC5322_ERR_UNBALANCED_COMMENT;
			unsigned char c = s[p->pos];
			if (c == '\\') {
				if (p->pos + 1 >= p->len)
					return RFC5322_ERR_UNBALANCED_COMMENT;
				if (is_ctl(s[p->pos + 1]))
					return RFC5322_ERR_CTL;
				p->pos += 2;
				continue;
			}
			if (is_ctl(c))
				return RFC5322_ERR_CTL;
			if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			/* bytes >= 0x80 in comments: passed over unchecked */
			p->pos++;
		}
	}
}

static int lex_qstr(struct rp *p, struct tok *t)
{
	const unsigned char *s = (const unsigned char *)p->s;

	p->pos++;
	t->b = p->pos;
	for (;;) {
		if (p->pos >= p->len)
			return RFC5322_ERR_UNBALANCED_QUOTE;
		unsigned char c = s[p->pos];
		if (c == '"')
			break;
		if (c == '\\') {
			if (p->pos + 1 >= p->len)
				return RFC5322_ERR_UNBALANCED_QUOTE;
			if (is_ctl(s[p->pos + 1]))
				return RFC5322_ERR_CTL;
			p->pos += 2;
			continue;
		}
		if (is_ctl(c))
			return RFC5322_ERR_CTL;
		p->pos++;
	}
	t->e = p->pos++;
	t->kind = T_QSTR;
	return 0;
}

/* lex_dlit - 3.4.1 domain-literal, restricted to what an address literal can
 * hold (RFC 5321 4.1.3: digits, letters, '.', ':', '-'), FWS allowed. No
 * quoted-pairs (obs-dtext): "[a\]b]" would make a domain with a bracket. */
static int lex_dlit(struct rp *p, struct tok *t)
{
	const unsigned char *s = (const unsigned char *)p->s;

	p->pos++;
	t->b = p->pos;
	for (;;) {
		if (p->pos >= p->len)
			return RFC5322_ERR_BAD_DOMAIN;
		unsigned char c = s[p->pos];
		if (c == ']')
			break;
		if (is_ctl(c))
			return RFC5322_ERR_CTL;
		if (!(c == ' ' || c == '\t' || c == '.' || c == ':' || c == '-' ||
		      (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return c >= 0x80 && !utf8_len(s + p->pos, p->len - p->pos) ?
				RFC5322_ERR_8BIT : RFC5322_ERR_BAD_DOMAIN;
		p->pos++;
	}
	t->e = p->pos++;
	t->kind = T_DLIT;
	return 0;
}

/* lex - the next token after CFWS. */
static int lex(struct rp *p, struct tok *t)
{
	const unsigned char *s = (const unsigned char *)p->s;
	int err;

	t->ws = 0;
	t->c = 0;
	if ((err = skip_cfws(p, &t->ws)) != 0)
		return err;
	t->b = t->e = p->pos;
	if (p->pos >= p->len) {
		t->kind = T_END;
		return 0;
	}
	unsigned char c = s[p->pos];
	if (c == '"')
		return lex_qstr(p, t);
	if (c == '[')
		return lex_dlit(p, t);
	if (c == '.') {
		t->kind = T_DOT;
		t->e = ++p->pos;
		return 0;
	}
	if (is_atext(c) || c >= 0x80) {
		while (p->pos < p->len) {
			c = s[p->pos];
			if (is_atext(c))
				p->pos++;
			else if (c >= 0x80) {
				size_t k = utf8_len(s + p->pos, p->len - p->pos);
				if (!k)
					return RFC5322_ERR_8BIT;
				p->pos += k;
			} else
				break;
		}
		t->e = p->pos;
		t->kind = T_ATOM;
		return 0;
	}
	if (is_ctl(c))
		return RFC5322_ERR_CTL;
	if (c == ')')
		return RFC5322_ERR_UNBALANCED_COMMENT;
	/* < > @ , ; : \ ] */
	t->kind = T_SPECIAL;
	t->c = (char)c;
	t->e = ++p->pos;
	return 0;
}

static int is_special(const struct tok *t, char c)
{
	return t->kind == T_SPECIAL && t->c == c;
}

static int is_word(const struct tok *t)
{
	return t->kind == T_ATOM || t->kind == T_QSTR;
}

/* add_word - append a word's semantic value to p->tmp. */
static void add_word(struct rp *p, const struct tok *t)
{
	if (t->kind == T_QSTR) {
		for (size_t i = t->b; i < t->e; i++) {
			if (p->s[i] == '\\')
				i++;
			sbuf_addc(&p->tmp, p->s[i]);
		}
	} else
		sbuf_add(&p->tmp, p->s + t->b, t->e - t->b);
}

/* ---- grammar ---- */

/* parse_phrase - 3.2.5 phrase / 4.1 obs-phrase: word *(word / "." / CFWS).
 * *out = NULL when there is no word at all. */
static int parse_phrase(struct rp *p, char **out)
{
	struct tok t;
	size_t n = 0, save;
	int err;

	*out = NULL;
	sbuf_reset(&p->tmp);
	for (;;) {
		save = p->pos;
		if ((err = lex(p, &t)) != 0)
			return err;
		if (!is_word(&t) && t.kind != T_DOT) {
			p->pos = save;
			break;
		}
		if (n == 0 && t.kind == T_DOT)
			return RFC5322_ERR_SYNTAX;
		if (t.ws && p->tmp.len > 0)
			sbuf_addc(&p->tmp, ' ');
		if (t.kind == T_DOT)
			sbuf_addc(&p->tmp, '.');
		else
			add_word(p, &t);
		n++;
	}
	if (n)
		*out = xstrndup(p->tmp.buf, p->tmp.len);
	return 0;
}

/* parse_local - 3.4.1 local-part: dot-atom / quoted-string /
 * obs-local-part (word *("." word), CFWS allowed around the dots). */
static int parse_local(struct rp *p, char **out)
{
	struct tok t;
	size_t save;
	int err;

	sbuf_reset(&p->tmp);
	if ((err = lex(p, &t)) != 0)
		return err;
	if (is_special(&t, '@'))
		return RFC5322_ERR_NO_LOCAL;
	if (!is_word(&t))
		return RFC5322_ERR_SYNTAX;
	add_word(p, &t);
	for (;;) {
		save = p->pos;
		if ((err = lex(p, &t)) != 0)
			return err;
		if (t.kind != T_DOT) {
			p->pos = save;
			break;
		}
		if ((err = lex(p, &t)) != 0)
			return err;
		if (!is_word(&t))
			return RFC5322_ERR_SYNTAX;	/* "a.@b", "a..b@c" */
		sbuf_addc(&p->tmp, '.');
		add_word(p, &t);
	}
	*out = xstrndup(p->tmp.buf, p->tmp.len);
	return 0;
}

/* parse_domain - 3.4.1 domain: dot-atom / domain-literal / obs-domain. */
static int parse_domain(struct rp *p, char **out, int *lit_out)
{
	struct tok t;
	size_t save;
	int err;

	*out = NULL;
	*lit_out = 0;
	sbuf_reset(&p->tmp);
	if ((err = lex(p, &t)) != 0)
		return err;
	if (t.kind == T_DLIT) {
		sbuf_addc(&p->tmp, '[');
		for (size_t i = t.b; i < t.e; i++)
			if (p->s[i] != ' ' && p->s[i] != '\t')
				sbuf_addc(&p->tmp, p->s[i]);
		if (p->tmp.len == 1)
			return RFC5322_ERR_BAD_DOMAIN;	/* "[]" */
		sbuf_addc(&p->tmp, ']');
		*lit_out = 1;
	} else if (t.kind == T_ATOM) {
		sbuf_add(&p->tmp, p->s + t.b, t.e - t.b);
		for (;;) {
			save = p->pos;
			if ((err = lex(p, &t)) != 0)
				return err;
			if (t.kind != T_DOT) {
				p->pos = save;
				break;
			}
			if ((err = lex(p, &t)) != 0)
				return err;
			if (t.kind != T_ATOM)
				return RFC5322_ERR_BAD_DOMAIN;	/* "a.", "a..b", "a.[x]" */
			sbuf_addc(&p->tmp, '.');
			sbuf_add(&p->tmp, p->s + t.b, t.e - t.b);
		}
	} else if (t.kind == T_DOT)
		return RFC5322_ERR_BAD_DOMAIN;
	else if (t.kind == T_END || is_special(&t, ',') || is_special(&t, '>') || is_special(&t, ';'))
		return RFC5322_ERR_NO_DOMAIN;
	else
		return RFC5322_ERR_SYNTAX;
	if (p->tmp.len > RFC5322_MAX_DOMAIN_BYTES)
		return RFC5322_ERR_TOO_LONG;
	*out = xstrndup(p->tmp.buf, p->tmp.len);
	ascii_lower(*out);
	return 0;
}

/* parse_addr_spec - local-part "@" domain. */
static int parse_addr_spec(struct rp *p, struct rfc5322_addr *a)
{
	struct tok t;
	int err;

	if ((err = parse_local(p, &a->local)) != 0)
		return err;
	if ((err = lex(p, &t)) != 0)
		return err;
	if (!is_special(&t, '@')) {
		if (t.kind == T_END || is_special(&t, ',') || is_special(&t, '>') ||
		    is_special(&t, ';'))
			return RFC5322_ERR_NO_DOMAIN;
		return RFC5322_ERR_SYNTAX;	/* "John Smith@x", "a\"b\"@x" */
	}
	return parse_domain(p, &a->domain, &a->domain_literal);
}

/* parse_route - 4.4 obs-route = obs-domain-list ":", where obs-domain-list =
 * *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain]). Domains are checked
 * and dropped. */
static int parse_route(struct rp *p)
{
	struct tok t;
	size_t save;
	char *dom;
	int lit, err;

	do {
		if ((err = lex(p, &t)) != 0)
			return err;
	} while (is_special(&t, ','));
	if (!is_special(&t, '@'))
		return RFC5322_ERR_SYNTAX;
	for (;;) {
		if ((err = parse_domain(p, &dom, &lit)) != 0)
			return err;
		free(dom);
		for (;;) {
			if ((err = lex(p, &t)) != 0)
				return err;
			if (is_special(&t, ':'))
				return 0;
			if (!is_special(&t, ','))
				return RFC5322_ERR_SYNTAX;
			save = p->pos;
			if ((err = lex(p, &t)) != 0)
				return err;
			if (is_special(&t, '@'))
				break;
			p->pos = save;
		}
	}
}

/* parse_angle - 3.4 angle-addr / 4.4 obs-angle-addr; at '<'. */
static int parse_angle(struct rp *p, struct rfc5322_addr *a)
{
	struct tok t;
	size_t save;
	int err;

	if ((err = lex(p, &t)) != 0)
		return err;
	if (!is_special(&t, '<'))
		return RFC5322_ERR_SYNTAX;
	save = p->pos;
	if ((err = lex(p, &t)) != 0)
		return err;
	if (is_special(&t, '>'))
		return RFC5322_ERR_SYNTAX;	/* "<>": not a mailbox */
	if (t.kind == T_END || is_special(&t, '<'))
		return RFC5322_ERR_UNBALANCED_ANGLE;	/* "<", "<<a@b>>" */
	p->pos = save;
	if (is_special(&t, '@') || is_special(&t, ',')) {
		if ((err = parse_route(p)) != 0)
			return err;
		a->had_route = 1;
	}
	if ((err = parse_addr_spec(p, a)) != 0)
		return err;
	if ((err = lex(p, &t)) != 0)
		return err;
	if (is_special(&t, '>'))
		return 0;
	if (t.kind == T_END || is_special(&t, '<') || is_special(&t, ',') || is_special(&t, ';'))
		return RFC5322_ERR_UNBALANCED_ANGLE;
	return RFC5322_ERR_SYNTAX;
}

static void addr_clear(struct rfc5322_addr *a)
{
	free(a->display);
	free(a->local);
	free(a->domain);
	free(a->group);
	memset(a, 0, sizeof(*a));
}

static int add_addr(struct rp *p, struct rfc5322_addr *a)
{
	struct rfc5322_addrlist *l = p->out;

	if (l->n >= RFC5322_MAX_ADDRS)
		return RFC5322_ERR_TOO_MANY;
	if (l->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 4;
		l->addr = xrealloc(l->addr, p->cap * sizeof(*l->addr));
	}
	if (p->group)
		a->group = xstrdup(p->group);
	l->addr[l->n++] = *a;
	memset(a, 0, sizeof(*a));
	return 0;
}

static int parse_group(struct rp *p);

/* parse_address - 3.4 address (mailbox / group); in_group: mailbox only. */
static int parse_address(struct rp *p, int in_group)
{
	struct rfc5322_addr a = { 0 };
	struct tok t;
	size_t start = p->pos, nwords = 0;
	int err;

	/* scan the words to the first character that decides the rule */
	for (;;) {
		if ((err = lex(p, &t)) != 0)
			return err;
		if (is_word(&t))
			nwords++;
		else if (t.kind != T_DOT)
			break;
	}
	p->pos = start;
	if (is_special(&t, '@')) {
		err = parse_addr_spec(p, &a);
	} else if (is_special(&t, '<')) {
		err = parse_phrase(p, &a.display);
		if (!err)
			err = parse_angle(p, &a);
	} else if (is_special(&t, ':')) {
		if (in_group || !p->groups_ok)
			return RFC5322_ERR_GROUP;
		return parse_group(p);
	} else if (nwords > 0 && (t.kind == T_END || is_special(&t, ',') || is_special(&t, ';') ||
				  is_special(&t, '>')))
		return RFC5322_ERR_NO_DOMAIN;	/* "user", "John Smith" */
	else if (is_special(&t, '>'))
		return RFC5322_ERR_UNBALANCED_ANGLE;
	else
		return RFC5322_ERR_SYNTAX;
	if (!err)
		err = add_addr(p, &a);
	addr_clear(&a);
	return err;
}

/* after_address - what may follow an address: err for the token t. */
static int after_address(const struct tok *t)
{
	if (is_special(t, '>'))
		return RFC5322_ERR_UNBALANCED_ANGLE;
	return RFC5322_ERR_TRAILING;
}

/* parse_group - 3.4 group = display-name ":" [group-list] ";" [CFWS];
 * group-list = mailbox-list / CFWS / obs-group-list. */
static int parse_group(struct rp *p)
{
	struct tok t;
	char *name;
	size_t save;
	int err;

	if ((err = parse_phrase(p, &name)) != 0)
		return err;
	if (!name)
		return RFC5322_ERR_SYNTAX;	/* ":;" */
	if ((err = lex(p, &t)) != 0 || !is_special(&t, ':')) {
		free(name);
		return err ? err : RFC5322_ERR_SYNTAX;
	}
	p->group = name;
	for (;;) {
		save = p->pos;
		if ((err = lex(p, &t)) != 0)
			break;
		if (is_special(&t, ';'))
			break;
		if (is_special(&t, ','))
			continue;	/* obs-group-list, empty element */
		if (t.kind == T_END) {
			err = RFC5322_ERR_GROUP;
			break;
		}
		p->pos = save;
		if ((err = parse_address(p, 1)) != 0)
			break;
		if ((err = lex(p, &t)) != 0)
			break;
		if (is_special(&t, ';'))
			break;
		if (is_special(&t, ','))
			continue;
		err = t.kind == T_END ? RFC5322_ERR_GROUP : after_address(&t);
		break;
	}
	p->group = NULL;
	free(name);
	return err;
}

/* parse_list - address-list / mailbox-list with obs empty elements (4.4). */
static int parse_list(struct rp *p)
{
	struct tok t;
	size_t save;
	int any = 0, err;

	for (;;) {
		save = p->pos;
		if ((err = lex(p, &t)) != 0)
			return err;
		if (t.kind == T_END)
			break;
		if (is_special(&t, ','))
			continue;
		p->pos = save;
		if ((err = parse_address(p, 0)) != 0)
			return err;
		any = 1;
		if ((err = lex(p, &t)) != 0)
			return err;
		if (t.kind == T_END)
			break;
		if (!is_special(&t, ','))
			return after_address(&t);
	}
	return any ? 0 : RFC5322_ERR_EMPTY;
}

static int parse(const char *value, size_t len, int groups_ok, struct rfc5322_addrlist *out,
		 const char **err_out)
{
	struct rp p = { 0 };
	char *buf = NULL;
	int err;

	out->addr = NULL;
	out->n = 0;
	if (len > RFC5322_MAX_VALUE_BYTES)
		err = RFC5322_ERR_TOO_LONG;
	else if (len && memchr(value, '\0', len))
		err = RFC5322_ERR_NUL;
	else {
		size_t n;
		buf = xmalloc(len + 1);
		n = rfc5322_unfold(len ? value : "", len, buf);
		/* one line end at the very end: the field's own CRLF */
		if (n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n')
			n -= 2;
		else if (n >= 1 && buf[n - 1] == '\n')
			n--;
		buf[n] = '\0';
		p.s = buf;
		p.len = n;
		p.groups_ok = groups_ok;
		p.out = out;
		sbuf_init(&p.tmp);
		sbuf_add(&p.tmp, "", 0);
		err = parse_list(&p);
		if (!err && out->n == 0 && !groups_ok)
			err = RFC5322_ERR_EMPTY;
		sbuf_free(&p.tmp);
		free(buf);
	}
	if (err)
		rfc5322_addrlist_free(out);
	if (err_out)
		*err_out = rfc5322_strerror(err);
	return err;
}

int rfc5322_parse_from(const char *value, size_t len, struct rfc5322_addrlist *out,
		       const char **err_out)
{
	return parse(value, len, 0, out, err_out);
}

int rfc5322_parse_addrlist(const char *value, size_t len, struct rfc5322_addrlist *out,
			   const char **err_out)
{
	return parse(value, len, 1, out, err_out);
}

void rfc5322_addrlist_free(struct rfc5322_addrlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		addr_clear(&l->addr[i]);
	free(l->addr);
	l->addr = NULL;
	l->n = 0;
}

size_t rfc5322_domains(const struct rfc5322_addrlist *l, const char **out, size_t max)
{
	const char *seen[RFC5322_MAX_ADDRS];
	size_t n = 0;

	/* l->n <= RFC5322_MAX_ADDRS for any list we built */
	for (size_t i = 0; i < l->n && i < RFC5322_MAX_ADDRS; i++) {
		const char *d = l->addr[i].domain;
		size_t j;
		for (j = 0; j < n; j++)
			if (strcmp(seen[j], d) == 0)
				break;
		if (j < n)
			continue;
		if (n < max)
			out[n] = d;
		seen[n++] = d;
	}
	return n;
}
