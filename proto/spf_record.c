/*
 * spf_record: SPF record syntax (RFC 7208 4.5, 4.6, 5, 6, 12) -> terms.
 * See proto/spf.h. The whole record is checked before evaluation starts, so
 * an error anywhere is a permerror (4.6).
 */
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "lib/util.h"
#include "proto/spf.h"

#define DEF_MAX_RECORD 4096
#define DEF_MAX_TERMS 128

/* Where parse_term writes: the term's text and spec copies live in buf. */
struct rec_parse {
	struct spf_record *rec;
	char *text_at;		/* next free byte of the text area */
	char *spec_at;		/* next free byte of the spec area */
	const char *err;
};

int spf_record_is_spf(const char *txt, size_t len)
{
	return len >= 6 && ascii_strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

static const char *store(char **at, const char *s, size_t len)
{
	char *p = *at;

	memcpy(p, s, len);
	p[len] = 0;
	*at = p + len + 1;
	return p;
}

/* "/" 1*DIGIT at s[0], no leading zero, at most max. */
static int cidr_parse(const char *s, size_t len, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (len < 1 || len > 3 || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* Length of a trailing "/" 1*DIGIT of s[0..len), 0 if none. */
static size_t trailing_cidr(const char *s, size_t len)
{
	size_t k = len;

	while (k > 0 && s[k - 1] >= '0' && s[k - 1] <= '9')
		k--;
	if (k == len || k == 0 || s[k - 1] != '/')
		return 0;
	return len - k + 1;
}

/* dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ]; shrinks *len. */
static int dual_cidr(const char *s, size_t *len, struct spf_term *t)
{
	size_t n = trailing_cidr(s, *len);

	if (n && n < *len && s[*len - n - 1] == '/') {
		if (cidr_parse(s + *len - n + 1, n - 1, 128, &t->cidr6) < 0)
			return -1;
		*len -= n + 1;
		n = trailing_cidr(s, *len);
	}
	if (n) {
		if (cidr_parse(s + *len - n + 1, n - 1, 32, &t->cidr4) < 0)
			return -1;
		*len -= n;
	}
	return 0;
}

/* qnum "." qnum "." qnum "." qnum, no leading zeros (5.6). */
static int ip4_parse(const char *s, size_t len, struct in_addr *out)
{
	unsigned char b[4];
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t st = i;
		unsigned v = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9' && i - st < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == st || v > 255 || (i - st > 1 && s[st] == '0'))
			return -1;
		b[part] = (unsigned char)v;
		if (part < 3 && (i >= len || s[i++] != '.'))
			return -1;
	}
	if (i != len)
		return -1;
	memcpy(out, b, 4);
	return 0;
}

static int ip6_parse(const char *s, size_t len, struct in6_addr *out)
{
	char tmp[64];

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = 0;
	return inet_pton(AF_INET6, tmp, out) == 1 ? 0 : -1;
}

/* ip4 / ip6: ":" network [ "/" cidr ] */
static int mech_ip(struct rec_parse *rp, struct spf_term *t, const char *a, size_t len)
{
	int v6 = t->kind == SPF_T_IP6;

	if (len < 2 || a[0] != ':') {
		rp->err = "ip4/ip6 need ':' and an address";
		return -1;
	}
	a++, len--;
	size_t n = trailing_cidr(a, len);
	if (n && cidr_parse(a + len - n + 1, n - 1, v6 ? 128 : 32, v6 ? &t->cidr6 : &t->cidr4) < 0) {
		rp->err = "invalid CIDR length";
		return -1;
	}
	len -= n;
	if (v6 ? ip6_parse(a, len, &t->ip6) : ip4_parse(a, len, &t->ip4)) {
		rp->err = v6 ? "invalid ip6 address" : "invalid ip4 address";
		return -1;
	}
	return 0;
}

/* a / mx / ptr / include / exists: [":" domain-spec] [dual-cidr]. */
static int mech_domain(struct rec_parse *rp, struct spf_term *t, const char *a, size_t len,
		       int need_spec, int cidr_ok)
{
	if (cidr_ok && dual_cidr(a, &len, t) < 0) {
		rp->err = "invalid CIDR length";
		return -1;
	}
	if (len == 0 && !need_spec)
		return 0;
	if (len < 2 || a[0] != ':') {
		rp->err = len == 1 && a[0] == ':' ? "empty domain-spec"
			: need_spec ? "mechanism needs ':' and a domain-spec"
			: "unexpected text after mechanism name";
		return -1;
	}
	if (spf_domain_spec_check(a + 1, len - 1, &rp->err) < 0)
		return -1;
	t->spec = store(&rp->spec_at, a + 1, len - 1);
	return 0;
}

static const struct {
	const char *name;
	enum spf_term_kind kind;
} mech_names[] = {
	{ "all", SPF_T_ALL }, { "include", SPF_T_INCLUDE }, { "a", SPF_T_A },
	{ "mx", SPF_T_MX }, { "ptr", SPF_T_PTR }, { "ip4", SPF_T_IP4 },
	{ "ip6", SPF_T_IP6 }, { "exists", SPF_T_EXISTS },
};

static int mechanism(struct rec_parse *rp, struct spf_term *t, const char *name, size_t nlen,
		     const char *rest, size_t rlen)
{
	size_t i;

	for (i = 0; i < sizeof(mech_names) / sizeof(mech_names[0]); i++)
		if (strlen(mech_names[i].name) == nlen &&
		    ascii_strncasecmp(name, mech_names[i].name, nlen) == 0)
			break;
	if (i == sizeof(mech_names) / sizeof(mech_names[0])) {
		rp->err = "unknown mechanism";
		return -1;
	}
	t->kind = mech_names[i].kind;
	switch (t->kind) {
	case SPF_T_ALL:
		if (rlen) {
			rp->err = "all takes no argument";
			return -1;
		}
		rp->rec->has_all = 1;
		return 0;
	case SPF_T_IP4:
	case SPF_T_IP6:
		return mech_ip(rp, t, rest, rlen);
	case SPF_T_INCLUDE:
	case SPF_T_EXISTS:
		return mech_domain(rp, t, rest, rlen, 1, 0);
	case SPF_T_PTR:
		return mech_domain(rp, t, rest, rlen, 0, 0);
	default:
		return mech_domain(rp, t, rest, rlen, 0, 1);
	}
}

/* name "=" macro-string; redirect/exp take a domain-spec and appear once (6). */
static int modifier(struct rec_parse *rp, struct spf_term *t, const char *name, size_t nlen,
		    const char *val, size_t vlen)
{
	struct spf_record *rec = rp->rec;
	int *slot = NULL;

	if (nlen == 8 && ascii_strncasecmp(name, "redirect", 8) == 0) {
		t->kind = SPF_T_REDIRECT;
		slot = &rec->redirect;
	} else if (nlen == 3 && ascii_strncasecmp(name, "exp", 3) == 0) {
		t->kind = SPF_T_EXP;
		slot = &rec->exp;
	} else {
		t->kind = SPF_T_UNKNOWN_MOD;
		if (spf_macro_check(val, vlen, 0, &rp->err) < 0)
			return -1;
		t->spec = store(&rp->spec_at, val, vlen);
		return 0;
	}
	if (*slot >= 0) {
		rp->err = "redirect= or exp= appears twice";
		return -1;
	}
	if (spf_domain_spec_check(val, vlen, &rp->err) < 0)
		return -1;
	*slot = (int)(t - rec->terms);
	t->spec = store(&rp->spec_at, val, vlen);
	return 0;
}

static int is_name_char(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '_' || ch == '.';
}

static int parse_term(struct rec_parse *rp, struct spf_term *t, const char *s, size_t len)
{
	size_t i = 0;

	memset(t, 0, sizeof(*t));
	t->qual = '+';
	t->cidr4 = 32;
	t->cidr6 = 128;
	t->text = store(&rp->text_at, s, len);
	if (strchr("+-~?", s[0])) {
		t->qual = s[0];
		i = 1;
	}
	size_t n = i;
	while (n < len && is_name_char(s[n]))
		n++;
	if (n < len && s[n] == '=') {
		if (i == 1 || n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) {
			rp->err = "invalid modifier name";
			return -1;
		}
		return modifier(rp, t, s, n, s + n + 1, len - n - 1);
	}
	return mechanism(rp, t, s + i, n - i, s + n, len - n);
}

static void set_problem(char *problem_out, size_t problem_len, const char *s, size_t len)
{
	if (!problem_out || problem_len == 0)
		return;
	if (len >= problem_len)
		len = problem_len - 1;
	memcpy(problem_out, s, len);
	problem_out[len] = 0;
}

static int record_chars_ok(const char *txt, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)txt[i] < 0x20 || (unsigned char)txt[i] > 0x7e)
			return 0;
	return 1;
}

int spf_record_parse(const char *txt, size_t len, const struct spf_limits *lim,
		     struct spf_record *rec, const char **err_out, char *problem_out,
		     size_t problem_len)
{
	size_t max_bytes = lim && lim->max_record_bytes ? lim->max_record_bytes : DEF_MAX_RECORD;
	size_t max_terms = lim && lim->max_terms ? lim->max_terms : DEF_MAX_TERMS;
	struct rec_parse rp = { .rec = rec };

	memset(rec, 0, sizeof(*rec));
	rec->redirect = rec->exp = -1;
	set_problem(problem_out, problem_len, "", 0);
	if (len > max_bytes) {
		*err_out = "SPF record too long";
		return -1;
	}
	if (!spf_record_is_spf(txt, len)) {
		*err_out = "not a v=spf1 record";
		return -1;
	}
	if (!record_chars_ok(txt, len)) {
		*err_out = "control or non-ASCII character in SPF record";
		return -1;
	}
	rec->buf = xmalloc(2 * (len + 1));
	rp.text_at = rec->buf;
	rp.spec_at = rec->buf + len + 1;
	size_t i = 6;
	while (i < len) {
		while (i < len && txt[i] == ' ')
			i++;
		size_t st = i;
		while (i < len && txt[i] != ' ')
			i++;
		if (i == st)
			break;
		if (rec->nterms == max_terms) {
			*err_out = "too many terms in SPF record";
			return -1;
		}
		if (rec->nterms % 16 == 0)
			rec->terms = xrealloc(rec->terms, (rec->nterms + 16) * sizeof(*rec->terms));
		if (parse_term(&rp, &rec->terms[rec->nterms], txt + st, i - st) < 0) {
			*err_out = rp.err;
			set_problem(problem_out, problem_len, txt + st, i - st);
			return -1;
		}
		rec->nterms++;
	}
	return 0;
}

void spf_record_free(struct spf_record *rec)
{
	if (!rec)
		return;
	free(rec->buf);
	free(rec->terms);
	memset(rec, 0, sizeof(*rec));
	rec->redirect = rec->exp = -1;
}
