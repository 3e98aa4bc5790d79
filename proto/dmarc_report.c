/*
 * dmarc_report: see dmarc_report.h.
 */
#include "proto/dmarc_report.h"
#include "lib/util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dmarc_report_verdict_name(enum dmarc_report_verdict v)
{
	switch (v) {
	case DMARC_REPORT_VERIFIED: return "verified";
	case DMARC_REPORT_NOT_FOUND: return "not-found";
	case DMARC_REPORT_ELSEWHERE: return "elsewhere";
	case DMARC_REPORT_TOO_LONG: return "too-long";
	case DMARC_REPORT_TEMPERROR: return "temperror";
	}
	return "unknown";
}

/* ---- mailto: URIs ---- */

int dmarc_report_atext(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* dot-atom-text (RFC 5322 3.2.3) */
static int dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(dmarc_report_atext((unsigned char)s[i]) || (s[i] == '.' && s[i + 1] != '.')))
			return 0;
	return 1;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 1*DIGIT [k/m/g/t] (after "!") -> bytes; -1 if malformed */
static int parse_size(const char *s, size_t len, int zero_is_none, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i = 0;
	int sat = 0;

	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (zero_is_none && v > (1ULL << 40))
			return -1;
		if (v > (~0ULL - 9) / 10)
			sat = 1;
		else
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (i == 0)
		return -1;
	unsigned shift = 0;
	if (i < len) {
		const char *k = strchr("kmgt", s[i] | 0x20);
		if (!k || !*k || i + 1 != len)
			return -1;
		shift = 10 * (unsigned)(k - "kmgt" + 1);
	}
	if (zero_is_none) {
		*out = v << shift;	/* v <= 2^44: no more than the old unchecked product */
		return 0;
	}
	if (sat || (shift && v > (~0ULL >> shift)))
		v = ~0ULL;
	else
		v <<= shift;
	*out = v ? v : 1;	/* "!0": nothing fits */
	return 0;
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

int dmarc_report_uri_parse(const char *u, size_t len, const struct dmarc_report_uri_rules *rules,
			   struct dmarc_report_uri *out)
{
	static const struct dmarc_report_uri_rules ruf_rules = { NULL, 0 };
	if (!rules)
		rules = &ruf_rules;
	memset(out, 0, sizeof *out);
	if (len < 7 || ascii_strncasecmp(u, "mailto:", 7) != 0)
		return 1;	/* another scheme */
	const char *bang = memchr(u, '!', len);
	size_t ulen = bang ? (size_t)(bang - u) : len;
	if (bang && parse_size(bang + 1, len - ulen - 1, rules->zero_is_none, &out->max_bytes) < 0)
		return -1;
	/* addr-spec up to "?" hfields, percent-decoded */
	char dec[DMARC_REPORT_ADDR_MAX + 1];
	size_t n = 0;
	for (size_t i = 7; i < ulen && u[i] != '?'; i++) {
		int c = (unsigned char)u[i];
		if (c == '%') {
			if (i + 2 >= ulen || hexval(u[i + 1]) < 0 || hexval(u[i + 2]) < 0)
				return -1;
			c = hexval(u[i + 1]) * 16 + hexval(u[i + 2]);
			i += 2;
		}
		if (n >= DMARC_REPORT_ADDR_MAX || c <= ' ' || c >= 0x7f)
			return -1;
		dec[n++] = (char)c;
	}
	dec[n] = 0;
	char *at = strrchr(dec, '@');
	if (!at || !dot_atom(dec, (size_t)(at - dec)))
		return -1;
	if (rules->host_ok) {
		if (!rules->host_ok(at + 1))
			return -1;
		snprintf(out->host, sizeof out->host, "%s", at + 1);
		lower(out->host);
	} else if (dmarc_domain_normalize(at + 1, out->host, sizeof out->host) < 0 ||
		   strchr(out->host, '_')) {	/* a DNS name but no mail domain */
		return -1;
	}
	if (!strchr(out->host, '.'))
		return -1;
	*at = 0;
	if (snprintf(out->addr, sizeof out->addr, "%s@%s", dec, out->host) >= (int)sizeof out->addr)
		return -1;
	return 0;
}

static const struct dmarc_report_layout uri_layout = {
	sizeof(struct dmarc_report_uri),
	offsetof(struct dmarc_report_uri, addr), sizeof(((struct dmarc_report_uri *)0)->addr),
	offsetof(struct dmarc_report_uri, host), sizeof(((struct dmarc_report_uri *)0)->host),
	offsetof(struct dmarc_report_uri, max_bytes),
};

size_t dmarc_report_uri_list(const char *list, const struct dmarc_report_uri_rules *rules,
			     const struct dmarc_report_layout *lay, void *out, size_t max,
			     size_t *skipped_out)
{
	size_t n = 0, skipped = 0;
	unsigned char *base = out;

	if (!lay)
		lay = &uri_layout;
	for (const char *p = list; p;) {
		const char *comma = strchr(p, ',');
		const char *e = comma ? comma : p + strlen(p);
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		struct dmarc_report_uri u;
		int ok = e > p && dmarc_report_uri_parse(p, (size_t)(e - p), rules, &u) == 0 &&
			 strlen(u.addr) < lay->addr_size && strlen(u.host) < lay->host_size;
		for (size_t i = 0; ok && i < n; i++)
			if (ascii_strcasecmp((char *)base + i * lay->elem_size + lay->addr_off,
					     u.addr) == 0)
				ok = 0;	/* a duplicate */
		if (ok && n < max) {
			unsigned char *el = base + n++ * lay->elem_size;
			memset(el, 0, lay->elem_size);
			memcpy(el + lay->addr_off, u.addr, strlen(u.addr) + 1);
			memcpy(el + lay->host_off, u.host, strlen(u.host) + 1);
			memcpy(el + lay->max_bytes_off, &u.max_bytes, sizeof u.max_bytes);
		} else if (e > p) {
			skipped++;
		}
		p = comma ? comma + 1 : NULL;
	}
	if (skipped_out)
		*skipped_out = skipped;
	return n;
}

/* step 9: the record's own destinations; ELSEWHERE or VERIFIED */
static enum dmarc_report_verdict override(const struct dmarc_record *r, const char *dest_host,
					  enum dmarc_report_tag tag,
					  const struct dmarc_report_uri_rules *rules, char *addr,
					  size_t addr_size, unsigned long long *max_bytes)
{
	struct dmarc_report_uri o[DMARC_REPORT_MAX_DEST];
	size_t n = dmarc_report_uri_list(tag == DMARC_REPORT_RUF ? r->ruf : r->rua, rules, NULL, o,
					 DMARC_REPORT_MAX_DEST, NULL);
	for (size_t i = 0; i < n; i++)
		if (strcmp(o[i].host, dest_host) != 0)
			return DMARC_REPORT_ELSEWHERE;	/* MUST NOT, to either */
	if (n > 0) {
		if (addr && addr_size)
			snprintf(addr, addr_size, "%s", o[0].addr);
		if (max_bytes)
			*max_bytes = o[0].max_bytes;
	}
	return DMARC_REPORT_VERIFIED;
}

enum dmarc_report_verdict dmarc_report_verify(const char *policy_domain, const char *dest_host,
					      enum dmarc_report_tag tag,
					      const struct dmarc_report_uri_rules *rules,
					      dmarc_report_lookup_fn lookup, void *lookup_arg,
					      char *addr, size_t addr_size,
					      unsigned long long *max_bytes)
{
	char q[DMARC_NAME_MAX + 1];
	int ql = snprintf(q, sizeof q, "%s._report._dmarc.%s", policy_domain, dest_host);
	if (ql < 0 || ql > DMARC_NAME_MAX)
		return DMARC_REPORT_TOO_LONG;	/* step 4: over DNS limits */

	struct dns_answer *a = lookup(lookup_arg, q, DNS_T_TXT);
	enum dmarc_report_verdict v = DMARC_REPORT_NOT_FOUND;
	if (dns_status_is_temp(a->status)) {
		v = DMARC_REPORT_TEMPERROR;
	} else {
		for (size_t k = 0; a->status == DNS_OK && k < a->n; k++) {
			const struct dns_rr *rr = &a->rr[k];
			if (rr->type != DNS_T_TXT || !dmarc_record_is_dmarc(rr->u.txt.data, rr->u.txt.len))
				continue;
			struct dmarc_record r;
			dmarc_record_parse(rr->u.txt.data, rr->u.txt.len, &r, NULL);
			v = override(&r, dest_host, tag, rules, addr, addr_size, max_bytes);
			dmarc_record_free(&r);
			break;
		}
	}
	dns_answer_free(&a);
	return v;
}
