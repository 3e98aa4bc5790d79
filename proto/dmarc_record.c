/*
 * dmarc_record: the DMARC policy record (RFC 9989 4.7 and 4.8, RFC 7489 6.3
 * and 6.4): tag-list splitting, tag values, reporting URI lists, and the
 * names of the enums. See proto/dmarc.h for the contract.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/dmarc.h"

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_NONE: return "none";
	case DMARC_POLICY_QUARANTINE: return "quarantine";
	case DMARC_POLICY_REJECT: return "reject";
	default: return "unset";
	}
}

static int is_wsp(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int is_alpha(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static char lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* A [s, e) span of the record. */
struct span {
	const char *s;
	const char *e;
};

static void trim(struct span *sp)
{
	while (sp->s < sp->e && is_wsp(*sp->s))
		sp->s++;
	while (sp->e > sp->s && is_wsp(sp->e[-1]))
		sp->e--;
}

static size_t span_len(const struct span *sp)
{
	return (size_t)(sp->e - sp->s);
}

static int span_ieq(const struct span *sp, const char *lit)
{
	size_t n = strlen(lit);

	return span_len(sp) == n && ascii_strncasecmp(sp->s, lit, n) == 0;
}

/*
 * Split "name *WSP = *WSP value" (already trimmed). 0 with name and value
 * (value may be empty), -1 if there is no "=" or the name is not 1*ALPHA.
 */
static int split_tag(const struct span *tag, struct span *name_out, struct span *value_out)
{
	const char *eq = memchr(tag->s, '=', span_len(tag));

	if (!eq)
		return -1;
	name_out->s = tag->s;
	name_out->e = eq;
	trim(name_out);
	if (span_len(name_out) == 0)
		return -1;
	for (const char *p = name_out->s; p < name_out->e; p++)
		if (!is_alpha(*p))
			return -1;
	value_out->s = eq + 1;
	value_out->e = tag->e;
	trim(value_out);
	return 0;
}

/* dmarc-value = %x20-3A / %x3C-7E (no ';' can occur: it separates tags). */
static int value_chars_ok(const struct span *v)
{
	if (span_len(v) == 0)
		return 0;
	for (const char *p = v->s; p < v->e; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return 0;
	return 1;
}

/* The first tag is "v" *WSP "=" *WSP "DMARC1" (case-sensitive value). */
static int version_ok(const struct span *first)
{
	struct span name, value;

	if (split_tag(first, &name, &value) < 0)
		return 0;
	return span_ieq(&name, "v") && span_len(&value) == 6 && memcmp(value.s, "DMARC1", 6) == 0;
}

/* The first ';'-separated part of txt, trimmed. */
static struct span first_part(const char *txt, size_t len)
{
	struct span sp = { txt, txt + len };
	const char *semi = memchr(txt, ';', len);

	if (semi)
		sp.e = semi;
	trim(&sp);
	return sp;
}

int dmarc_record_is_dmarc(const char *txt, size_t len)
{
	if (!txt)
		return 0;
	struct span first = first_part(txt, len);
	return version_ok(&first);
}

static int parse_policy(const struct span *v, enum dmarc_policy *out)
{
	if (span_ieq(v, "none"))
		*out = DMARC_POLICY_NONE;
	else if (span_ieq(v, "quarantine"))
		*out = DMARC_POLICY_QUARANTINE;
	else if (span_ieq(v, "reject"))
		*out = DMARC_POLICY_REJECT;
	else
		return -1;
	return 0;
}

/* One letter out of allowed (lower case); the value is case-insensitive. */
static int parse_letter(const struct span *v, const char *allowed, char *out)
{
	if (span_len(v) != 1 || !strchr(allowed, lower(*v->s)) || *v->s == 0)
		return -1;
	*out = lower(*v->s);
	return 0;
}

/* 1*DIGIT up to max. */
static int parse_uint(const struct span *v, unsigned long max, unsigned long *out)
{
	unsigned long n = 0;

	if (span_len(v) == 0)
		return -1;
	for (const char *p = v->s; p < v->e; p++) {
		if (!is_digit(*p))
			return -1;
		n = n * 10 + (unsigned long)(*p - '0');
		if (n > max)
			return -1;
	}
	*out = n;
	return 0;
}

/*
 * One reporting URI (RFC 3986 URI, roughly): scheme ":" 1*non-WSP, with the
 * obsolete "!" size suffix (1*DIGIT [k/m/g/t]) allowed at the end. A bare
 * "!" or "," inside is not allowed (they must be %-encoded).
 */
static int uri_ok(const struct span *u)
{
	const char *p = u->s, *colon;

	if (span_len(u) == 0 || !is_alpha(*p))
		return 0;
	for (p++; p < u->e && *p != ':'; p++)
		if (!is_alpha(*p) && !is_digit(*p) && *p != '+' && *p != '-' && *p != '.')
			return 0;
	if (p == u->e)
		return 0;
	colon = p;
	const char *end = u->e;
	const char *bang = memchr(colon, '!', (size_t)(u->e - colon));
	if (bang) {
		const char *q = bang + 1;
		const char *d0 = q;
		while (q < u->e && is_digit(*q))
			q++;
		if (q == d0)
			return 0;
		if (q < u->e && strchr("kmgt", lower(*q)))
			q++;
		if (q != u->e)
			return 0;
		end = bang;
	}
	if (end - colon < 2)
		return 0;
	for (p = colon + 1; p < end; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch > 0x7e || ch == ',' || ch == '!' || ch == '"' || ch == '<' ||
		    ch == '>' || ch == '\\' || ch == '^' || ch == '`' || ch == '{' || ch == '|' ||
		    ch == '}')
			return 0;
	}
	return 1;
}

/* Count the valid URIs of a comma-separated list. */
static unsigned uri_list_valid(const struct span *v)
{
	unsigned n = 0;
	const char *p = v->s;

	while (p <= v->e) {
		const char *comma = memchr(p, ',', (size_t)(v->e - p));
		struct span u = { p, comma ? comma : v->e };
		trim(&u);
		if (uri_ok(&u))
			n++;
		if (!comma)
			break;
		p = comma + 1;
	}
	return n;
}

/*
 * fo (9989 4.8): colon-separated "0", "1", "d", "s"; "0" and "1" exclude
 * each other, each at most once. WSP around ":" is tolerated.
 */
static int fo_ok(const struct span *v)
{
	unsigned seen = 0;
	const char *p = v->s;

	for (;;) {
		const char *colon = memchr(p, ':', (size_t)(v->e - p));
		struct span item = { p, colon ? colon : v->e };
		trim(&item);
		if (span_len(&item) != 1)
			return 0;
		const char *opts = "01ds";
		const char *hit = strchr(opts, lower(*item.s));
		if (!hit || *item.s == 0)
			return 0;
		unsigned bit = 1u << (hit - opts);
		if (seen & bit)
			return 0;
		seen |= bit;
		if (!colon)
			break;
		p = colon + 1;
	}
	return (seen & 3) != 3;
}

/*
 * rf (7489 6.3): colon-separated report format keywords; only "afrf" is
 * registered, so a list without it cannot be honoured and is invalid.
 */
static int rf_ok(const struct span *v)
{
	int afrf = 0;
	const char *p = v->s;

	for (;;) {
		const char *colon = memchr(p, ':', (size_t)(v->e - p));
		struct span item = { p, colon ? colon : v->e };
		trim(&item);
		if (span_len(&item) == 0 || !is_alpha(*item.s))
			return 0;
		for (const char *q = item.s; q < item.e; q++)
			if (!is_alpha(*q) && !is_digit(*q) && *q != '-')
				return 0;
		if (span_ieq(&item, "afrf"))
			afrf = 1;
		if (!colon)
			break;
		p = colon + 1;
	}
	return afrf;
}

static char *lower_dup(const struct span *v)
{
	char *s = xstrndup(v->s, span_len(v));
	ascii_lower(s);
	return s;
}

struct tag_def {
	const char *name;
	unsigned bit;
};

static const struct tag_def tags[] = {
	{ "v", DMARC_TAG_V }, { "p", DMARC_TAG_P }, { "sp", DMARC_TAG_SP },
	{ "np", DMARC_TAG_NP }, { "psd", DMARC_TAG_PSD }, { "t", DMARC_TAG_T },
	{ "adkim", DMARC_TAG_ADKIM }, { "aspf", DMARC_TAG_ASPF }, { "pct", DMARC_TAG_PCT },
	{ "rua", DMARC_TAG_RUA }, { "ruf", DMARC_TAG_RUF }, { "fo", DMARC_TAG_FO },
	{ "rf", DMARC_TAG_RF }, { "ri", DMARC_TAG_RI },
};

/* Apply one known tag's value; 0, or -1 if the value is invalid. */
static int apply_tag(struct dmarc_record *r, unsigned bit, const struct span *v)
{
	unsigned long n;

	if (!value_chars_ok(v))
		return -1;
	switch (bit) {
	case DMARC_TAG_V:
		return -1;	/* v= again later in the record */
	case DMARC_TAG_P:
		return parse_policy(v, &r->p);
	case DMARC_TAG_SP:
		return parse_policy(v, &r->sp);
	case DMARC_TAG_NP:
		return parse_policy(v, &r->np);
	case DMARC_TAG_PSD:
		return parse_letter(v, "ynu", &r->psd);
	case DMARC_TAG_T:
		return parse_letter(v, "yn", &r->t);
	case DMARC_TAG_ADKIM:
		return parse_letter(v, "rs", &r->adkim);
	case DMARC_TAG_ASPF:
		return parse_letter(v, "rs", &r->aspf);
	case DMARC_TAG_PCT:
		if (span_len(v) > 3 || parse_uint(v, 100, &n) < 0)
			return -1;
		r->pct = (unsigned)n;
		return 0;
	case DMARC_TAG_RI:
		if (parse_uint(v, 0xffffffffUL, &n) < 0)
			return -1;
		r->ri_s = n;
		return 0;
	case DMARC_TAG_RUA:
		r->rua = xstrndup(v->s, span_len(v));
		r->rua_valid = uri_list_valid(v);
		return r->rua_valid ? 0 : -1;
	case DMARC_TAG_RUF:
		r->ruf = xstrndup(v->s, span_len(v));
		r->ruf_valid = uri_list_valid(v);
		return r->ruf_valid ? 0 : -1;
	case DMARC_TAG_FO:
		if (!fo_ok(v))
			return -1;
		r->fo = lower_dup(v);
		return 0;
	case DMARC_TAG_RF:
		if (!rf_ok(v))
			return -1;
		r->rf = lower_dup(v);
		return 0;
	}
	return -1;
}

static void record_defaults(struct dmarc_record *r)
{
	memset(r, 0, sizeof(*r));
	r->adkim = 'r';
	r->aspf = 'r';
	r->t = 'n';
	r->psd = 'u';
	r->pct = 100;
	r->ri_s = 86400;
}

static void parse_tags(struct dmarc_record *r, const char *txt, size_t len)
{
	const char *p = txt, *end = txt + len;
	int first = 1;

	while (p <= end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		struct span tag = { p, semi ? semi : end }, name, value;
		trim(&tag);
		if (first) {
			first = 0;	/* the v= tag, checked by the caller */
		} else if (span_len(&tag) && split_tag(&tag, &name, &value) == 0) {
			for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
				if (!span_ieq(&name, tags[i].name))
					continue;
				unsigned bit = tags[i].bit;
				if (r->seen_tags & bit) {
					r->dup_tags |= bit;
				} else {
					r->seen_tags |= bit;
					if (apply_tag(r, bit, &value) < 0)
						r->bad_tags |= bit;
				}
				break;
			}
		}
		if (!semi)
			break;
		p = semi + 1;
	}
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *out,
		       const char **err_out)
{
	const char *dummy;

	if (!err_out)
		err_out = &dummy;
	record_defaults(out);
	if (!txt)
		txt = "";
	out->is_dmarc = dmarc_record_is_dmarc(txt, len);
	out->record_text = xstrndup(txt, len > DMARC_RECORD_MAX_BYTES ? DMARC_RECORD_MAX_BYTES : len);
	if (len == 0) {
		*err_out = "empty record";
		return -1;
	}
	if (!out->is_dmarc) {
		*err_out = "not a DMARC record (v=DMARC1 must come first)";
		return -1;
	}
	if (len > DMARC_RECORD_MAX_BYTES) {
		out->broken = 1;
		*err_out = "record too long";
		return -1;
	}
	if (memchr(txt, 0, len)) {
		out->broken = 1;
		*err_out = "NUL byte in record";
		return -1;
	}
	out->seen_tags |= DMARC_TAG_V;
	parse_tags(out, txt, len);
	if (out->bad_tags & DMARC_TAG_P) {
		*err_out = "invalid p= value";
		return -1;
	}
	if (!(out->seen_tags & DMARC_TAG_P)) {
		*err_out = "no p= tag";
		return -1;
	}
	if (out->bad_tags & DMARC_TAG_SP) {
		*err_out = "invalid sp= value";
		return -1;
	}
	if (out->bad_tags & DMARC_TAG_NP) {
		*err_out = "invalid np= value";
		return -1;
	}
	return 0;
}

int dmarc_record_fallback(const struct dmarc_record *r, enum dmarc_mode mode)
{
	int policy_bad;

	if (!r->is_dmarc || r->broken || !r->rua_valid)
		return 0;
	policy_bad = !(r->seen_tags & DMARC_TAG_P) || (r->bad_tags & (DMARC_TAG_P | DMARC_TAG_SP));
	if (mode == DMARC_MODE_DMARCBIS && (r->bad_tags & DMARC_TAG_NP))
		policy_bad = 1;
	return policy_bad;
}

void dmarc_record_free(struct dmarc_record *r)
{
	if (!r)
		return;
	free(r->rua);
	free(r->ruf);
	free(r->fo);
	free(r->rf);
	free(r->record_text);
	memset(r, 0, sizeof(*r));
}

/* ---- names ---- */

const char *dmarc_auth_result_name(enum dmarc_auth_result r)
{
	switch (r) {
	case DMARC_AUTH_PASS: return "pass";
	case DMARC_AUTH_FAIL: return "fail";
	case DMARC_AUTH_SOFTFAIL: return "softfail";
	case DMARC_AUTH_NEUTRAL: return "neutral";
	case DMARC_AUTH_TEMPERROR: return "temperror";
	case DMARC_AUTH_PERMERROR: return "permerror";
	case DMARC_AUTH_POLICY: return "policy";
	default: return "none";
	}
}

const char *dmarc_result_name(enum dmarc_result r)
{
	switch (r) {
	case DMARC_RESULT_PASS: return "pass";
	case DMARC_RESULT_FAIL: return "fail";
	case DMARC_RESULT_TEMPERROR: return "temperror";
	case DMARC_RESULT_PERMERROR: return "permerror";
	default: return "none";
	}
}

const char *dmarc_disposition_name(enum dmarc_disposition d)
{
	switch (d) {
	case DMARC_DISP_QUARANTINE: return "quarantine";
	case DMARC_DISP_REJECT: return "reject";
	default: return "none";
	}
}

enum dmarc_disposition dmarc_disposition_stricter(enum dmarc_disposition a,
						  enum dmarc_disposition b)
{
	return a > b ? a : b;
}

const char *dmarc_applied_name(enum dmarc_applied a)
{
	switch (a) {
	case DMARC_APPLIED_P: return "p";
	case DMARC_APPLIED_SP: return "sp";
	case DMARC_APPLIED_NP: return "np";
	case DMARC_APPLIED_FALLBACK: return "fallback";
	default: return "none";
	}
}

const char *dmarc_override_name(enum dmarc_override o)
{
	switch (o) {
	case DMARC_OVERRIDE_TESTING: return "policy_test_mode";
	case DMARC_OVERRIDE_SAMPLED_OUT: return "sampled_out";
	default: return "none";
	}
}

const char *dmarc_discovery_name(enum dmarc_discovery d)
{
	return d == DMARC_DISCOVERY_PSL ? "psl" : "treewalk";
}
