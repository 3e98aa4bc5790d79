/*
 * smtp_path: RFC 5321 4.1.2 Path / Reverse-path parsing with RFC 6531
 * UTF-8, limits from RFC 5321 4.5.3.1. Contract in proto/smtp.h
 * (smtp_parse_path). Pure: no I/O, no globals.
 */
#include "proto/smtp.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_BYTES 256	/* RFC 5321 4.5.3.1.3, incl. "<" ">" */
#define LOCAL_MAX_BYTES 64	/* 4.5.3.1.1 */
#define DOMAIN_MAX_BYTES 255	/* 4.5.3.1.2 */
#define LABEL_MAX_BYTES 63	/* RFC 1035 2.3.4 (ASCII labels) */
#define IPV6_LIT_MAX 45		/* longest textual IPv6 incl. embedded IPv4 */

struct pscan {
	const unsigned char *s;
	size_t i;
	int utf8_ok;
	int has_utf8;
	struct sbuf local;	/* local part with quoting removed */
	const char *err;
};

static int is_alpha(unsigned c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }

/* RFC 5322 atext (ASCII part). */
static int is_atext(unsigned c)
{
	return c && (is_alpha(c) || is_digit(c) || strchr("!#$%&'*+-/=?^_`{|}~", (int)c));
}

/*
 * utf8_seq - length (2..4) of a well-formed UTF-8 character at s (RFC 3629:
 * no overlongs, surrogates or code points above U+10FFFF), 0 if none.
 * Stops at the first bad byte, so never reads past a NUL.
 */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned c = s[0], cp;
	size_t n, k;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2; cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3; cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4; cp = c & 0x07;
	} else {
		return 0;
	}
	for (k = 1; k < n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[k] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* take_utf8 - length of the non-ASCII character at ps->i, 0 (ps->err) if bad or not allowed. */
static size_t take_utf8(struct pscan *ps)
{
	size_t n = utf8_seq(ps->s + ps->i);

	if (n == 0) {
		ps->err = "invalid UTF-8";
	} else if (!ps->utf8_ok) {
		ps->err = "non-ASCII character without SMTPUTF8";
		n = 0;
	} else {
		ps->has_utf8 = 1;
	}
	return n;
}

/* scan_dot_string - unquoted local part; dots are not checked (see smtp.h). */
static int scan_dot_string(struct pscan *ps)
{
	size_t start = ps->i, n;

	for (;;) {
		unsigned c = ps->s[ps->i];
		if (c >= 0x80) {
			if ((n = take_utf8(ps)) == 0)
				return -1;
			sbuf_add(&ps->local, ps->s + ps->i, n);
			ps->i += n;
		} else if (is_atext(c) || c == '.') {
			sbuf_addc(&ps->local, (char)c);
			ps->i++;
		} else {
			break;
		}
	}
	if (ps->i == start) {
		ps->err = "empty local part";
		return -1;
	}
	return 0;
}

/* scan_quoted - RFC 5321 Quoted-string (qtextSMTP, quoted-pairSMTP, RFC 6531 UTF-8). */
static int scan_quoted(struct pscan *ps)
{
	size_t n;

	ps->i++;
	for (;;) {
		unsigned c = ps->s[ps->i];
		if (c == '"') {
			ps->i++;
			return 0;
		}
		if (c == '\\') {
			unsigned d = ps->s[ps->i + 1];
			if (d < 32 || d > 126)
				break;
			sbuf_addc(&ps->local, (char)d);
			ps->i += 2;
		} else if (c >= 0x80) {
			if ((n = take_utf8(ps)) == 0)
				return -1;
			sbuf_add(&ps->local, ps->s + ps->i, n);
			ps->i += n;
		} else if (c >= 32 && c <= 126) {
			sbuf_addc(&ps->local, (char)c);
			ps->i++;
		} else {
			break;
		}
	}
	ps->err = "bad quoted local part";
	return -1;
}

/*
 * scan_domain - dot-separated labels of letters, digits, '-' (not first or
 * last), '_' (Postfix tolerates it) and UTF-8 (U-labels, RFC 6531).
 */
static int scan_domain(struct pscan *ps)
{
	size_t start = ps->i, lab, n;
	int ascii;

	for (;;) {
		lab = ps->i;
		ascii = 1;
		for (;;) {
			unsigned c = ps->s[ps->i];
			if (c >= 0x80) {
				if ((n = take_utf8(ps)) == 0)
					return -1;
				ps->i += n;
				ascii = 0;
			} else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
				ps->i++;
			} else {
				break;
			}
		}
		n = ps->i - lab;
		if (n == 0 || ps->s[lab] == '-' || ps->s[ps->i - 1] == '-' ||
		    (ascii && n > LABEL_MAX_BYTES)) {
			ps->err = "bad domain";
			return -1;
		}
		if (ps->s[ps->i] != '.')
			break;
		ps->i++;
	}
	if (ps->i - start > DOMAIN_MAX_BYTES) {
		ps->err = "domain too long";
		return -1;
	}
	return 0;
}

/* is_ipv4 - RFC 5321 IPv4-address-literal: four Snum (1*3DIGIT, <= 255). */
static int is_ipv4(const unsigned char *s, size_t len)
{
	size_t i = 0, parts = 0;

	while (parts < 4) {
		size_t d = 0;
		unsigned v = 0;
		while (i < len && is_digit(s[i]) && d < 4) {
			v = v * 10 + (s[i++] - '0');
			d++;
		}
		if (d == 0 || d > 3 || v > 255)
			return 0;
		if (++parts < 4 && (i >= len || s[i++] != '.'))
			return 0;
	}
	return i == len;
}

/* scan_literal - "[" IPv4 "]" or "[IPv6:" IPv6 "]"; general literals are refused. */
static int scan_literal(struct pscan *ps)
{
	const unsigned char *in = ps->s + ps->i + 1;
	size_t len = 0;
	char v6[IPV6_LIT_MAX + 1];
	unsigned char bin[16];
	int ok = 0;

	while (in[len] >= 33 && in[len] <= 126 && in[len] != '[' && in[len] != ']' &&
	       in[len] != '\\')
		len++;
	if (in[len] == ']') {
		if (len > 5 && ascii_strncasecmp((const char *)in, "IPv6:", 5) == 0) {
			if (len - 5 <= IPV6_LIT_MAX) {
				memcpy(v6, in + 5, len - 5);
				v6[len - 5] = 0;
				ok = inet_pton(AF_INET6, v6, bin) == 1;
			}
		} else {
			ok = is_ipv4(in, len);
		}
	}
	if (!ok) {
		ps->err = "bad address literal";
		return -1;
	}
	ps->i += len + 2;
	return 0;
}

/* scan_route - RFC 5321 A-d-l ":" (obsolete source route, to be ignored: 4.1.1.3, C). */
static int scan_route(struct pscan *ps)
{
	for (;;) {
		if (ps->s[ps->i] != '@') {
			ps->err = "bad source route";
			return -1;
		}
		ps->i++;
		if (scan_domain(ps) < 0)
			return -1;
		if (ps->s[ps->i] == ':') {
			ps->i++;
			return 0;
		}
		if (ps->s[ps->i] != ',') {
			ps->err = "bad source route";
			return -1;
		}
		ps->i++;
	}
}

/* path_store - copy mailbox, unquoted local part and domain into one block. */
static char *path_store(struct pscan *ps, size_t mbox, size_t dom, size_t end,
			struct smtp_path *out)
{
	size_t mlen = end - mbox, dlen = end - dom;
	char *blk = xmalloc(mlen + 1 + ps->local.len + 1 + dlen + 1), *q = blk;

	memcpy(q, ps->s + mbox, mlen);
	q[mlen] = 0;
	out->addr = q;
	q += mlen + 1;
	memcpy(q, ps->local.buf, ps->local.len + 1);
	out->local = q;
	q += ps->local.len + 1;
	memcpy(q, ps->s + dom, dlen);
	q[dlen] = 0;
	out->domain = q;
	return blk;
}

/* scan_mailbox - Local-part "@" (Domain / address-literal) ">"; fills *dom_out, *end_out. */
static int scan_mailbox(struct pscan *ps, size_t *dom_out, size_t *end_out)
{
	size_t mbox = ps->i;

	if ((ps->s[ps->i] == '"' ? scan_quoted(ps) : scan_dot_string(ps)) < 0)
		return -1;
	if (ps->i - mbox > LOCAL_MAX_BYTES) {
		ps->err = "local part too long";
		return -1;
	}
	if (ps->s[ps->i] != '@') {
		ps->err = "missing @domain";
		return -1;
	}
	*dom_out = ++ps->i;
	if ((ps->s[ps->i] == '[' ? scan_literal(ps) : scan_domain(ps)) < 0)
		return -1;
	*end_out = ps->i;
	if (ps->s[ps->i] != '>') {
		ps->err = "missing >";
		return -1;
	}
	ps->i++;
	if (ps->i > PATH_MAX_BYTES) {
		ps->err = "path too long";
		return -1;
	}
	return 0;
}

int smtp_parse_path(const char *s, int allow_null, int utf8_ok, struct smtp_path *out,
		    char **storage_out, const char **err_out)
{
	struct pscan ps = { .s = (const unsigned char *)s, .i = 1, .utf8_ok = utf8_ok };
	size_t mbox, dom, end;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	*storage_out = NULL;
	sbuf_init(&ps.local);
	sbuf_add(&ps.local, "", 0);
	if (s[0] != '<') {
		ps.err = "missing <";
	} else if (s[1] == '>') {
		if (!allow_null) {
			ps.err = "null path not allowed here";
		} else {
			*storage_out = xstrdup("");
			out->addr = out->local = out->domain = *storage_out;
			out->is_null = 1;
			ret = 2;
		}
	} else if (s[1] == '@' && scan_route(&ps) < 0) {
		/* ps.err set */
	} else {
		out->had_route = s[1] == '@';
		mbox = ps.i;
		if (scan_mailbox(&ps, &dom, &end) == 0) {
			*storage_out = path_store(&ps, mbox, dom, end, out);
			out->has_utf8 = ps.has_utf8;
			ret = (int)ps.i;
		}
	}
	sbuf_free(&ps.local);
	if (ret < 0) {
		memset(out, 0, sizeof(*out));
		*err_out = ps.err;
	}
	return ret;
}
