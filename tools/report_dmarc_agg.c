/*
 * report_dmarc_agg: see report_dmarc_agg.h.
 */
#include "tools/report_dmarc_agg.h"
#include "lib/util.h"
#include "lib/version.h"
#include "proto/dmarc.h"

#include <arpa/inet.h>
#include <libxml/xmlwriter.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* the fields of a row key, in this order, joined by '\t' */
enum {
	RK_IP, RK_DMARC, RK_DISP, RK_POLICY, RK_ENFORCED, RK_OVERRIDE, RK_DKIM_AL, RK_SPF_AL,
	RK_HFROM, RK_EFROM, RK_ETO, RK_SPF, RK_DKIM, RK_N
};

#define RDA_MAX_DKIM 100	/* signatures per row, RFC 9990 2.1.5 */

struct rda {
	long long period_s;
	double since, until;
	struct rmap reports;	/* "domain\tbegin" -> struct rda_report */
	struct rda_report **sorted;
	size_t nsorted;
	long long count[RDA_BAD_VALUE + 1];
};

struct rda *rda_new(long long period_s, double since, double until)
{
	struct rda *a = xcalloc(1, sizeof *a);
	a->period_s = period_s > 0 ? period_s : 86400;
	a->since = since;
	a->until = until;
	return a;
}

static void policy_clear(struct rda_policy *p)
{
	char **f[] = { &p->p, &p->sp, &p->np, &p->adkim, &p->aspf, &p->t, &p->fo, &p->pct,
		       &p->discovery, &p->rua, &p->org_domain };
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		free(*f[i]);
		*f[i] = NULL;
	}
}

static void report_free(void *v)
{
	struct rda_report *r = v;
	free(r->domain);
	policy_clear(&r->pol);
	rmap_free(&r->rows, NULL);
	free(r);
}

void rda_free(struct rda **ap)
{
	struct rda *a = *ap;
	if (!a)
		return;
	rmap_free(&a->reports, report_free);
	free(a->sorted);
	free(a);
	*ap = NULL;
}

long long rda_count(const struct rda *a, enum rda_verdict v)
{
	return (size_t)v < sizeof a->count / sizeof a->count[0] ? a->count[v] : 0;
}

int rda_domain_ok(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_') || ++label > 63)
			return 0;
	}
	return 1;
}

/* ---- key=value ---- */

const char *rda_kv(struct rda *a, const struct rp_event *ev, const char *key)
{
	(void)a;
	return rp_kv_get(ev, key);	/* RP_MAX_KV (64) holds every key sluice-dmarc logs */
}

/* ---- counting ---- */

static const char *val(const char *v)
{
	return v && *v ? v : "-";
}

/* length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, surrogates, > U+10FFFF), else 0 */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	size_t n = s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
		 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return n;
}

/*
 * v as one field of a row key: tabs (the separator), other control
 * characters and bytes that are not UTF-8 become '?' (XML 1.0 allows
 * neither, and libxml2 writes what it is given).
 */
static void key_add(struct sbuf *k, const char *v)
{
	if (k->len)
		sbuf_addc(k, '\t');
	for (const unsigned char *p = (const unsigned char *)val(v); *p;) {
		size_t n = utf8_len(p);
		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
			sbuf_addc(k, '?');
			p++;
		} else {
			sbuf_add(k, p, n);
			p += n;
		}
	}
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

static void set_policy(struct rda *a, struct rda_report *r, const struct rp_event *ev)
{
	static const char *const keys[] = { "p", "sp", "np", "adkim", "aspf", "t", "fo", "pct",
					     "discovery", "rua", "org_domain" };
	struct rda_policy *p = &r->pol;
	char **f[] = { &p->p, &p->sp, &p->np, &p->adkim, &p->aspf, &p->t, &p->fo, &p->pct,
		       &p->discovery, &p->rua, &p->org_domain };
	policy_clear(p);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		*f[i] = xstrdup(val(rda_kv(a, ev, keys[i])));
	p->time = ev->time;
}

enum rda_verdict rda_add(struct rda *a, const struct rp_event *ev)
{
	enum rda_verdict v = RDA_NOT_DMARC;
	const char *m = rp_kv_get(ev, "milter"), *res = rp_kv_get(ev, "dmarc");
	if (ev->kind != RP_EV_FILTER || !m || strcmp(m, "dmarc") != 0 || !res ||
	    rp_kv_get(ev, "failure_report"))
		return RDA_NOT_DMARC;
	const char *pdom = rda_kv(a, ev, "policy_domain");
	char ipbuf[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *ip = rda_kv(a, ev, "client_ip");
	if (!ip)
		ip = rda_kv(a, ev, "source_ip");	/* before 9beb8e2 */
	if (rda_kv(a, ev, "skipped") || rda_kv(a, ev, "from_error") ||
	    (strcmp(res, "pass") != 0 && strcmp(res, "fail") != 0 && strcmp(res, "none") != 0)) {
		v = RDA_NOT_EVALUATED;
	} else if (!strcmp(res, "none") || !pdom || !strcmp(pdom, "-")) {
		v = RDA_NO_POLICY;
	} else if (ev->time <= 0 || (a->since > 0 && ev->time < a->since) ||
		   (a->until > 0 && ev->time >= a->until)) {
		v = RDA_OUT_OF_RANGE;
	} else if (!rda_domain_ok(pdom) || !ip ||
		   (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1)) {
		v = RDA_BAD_VALUE;
	}
	if (v != RDA_NOT_DMARC) {
		a->count[v]++;
		return v;
	}
	/* canonical address text (RFC 5952 for IPv6) */
	if (inet_pton(AF_INET, ip, bin) == 1)
		inet_ntop(AF_INET, bin, ipbuf, sizeof ipbuf);
	else
		inet_ntop(AF_INET6, bin, ipbuf, sizeof ipbuf);

	long long t = (long long)ev->time;
	long long begin = t - ((t % a->period_s) + a->period_s) % a->period_s;
	char *dom = xstrdup(pdom);
	lower(dom);
	char *rkey = xasprintf("%s\t%lld", dom, begin);
	struct rmap_ent *e = rmap_get(&a->reports, rkey, 1);
	free(rkey);
	if (!e->ptr) {
		struct rda_report *r = xcalloc(1, sizeof *r);
		r->domain = dom;
		r->begin = begin;
		r->end = begin + a->period_s - 1;
		e->ptr = r;
		free(a->sorted);	/* the next rda_reports sorts again */
		a->sorted = NULL;
	} else {
		free(dom);
	}
	struct rda_report *r = e->ptr;
	if (!r->pol.p || ev->time >= r->pol.time)
		set_policy(a, r, ev);

	struct sbuf k;
	sbuf_init(&k);
	key_add(&k, ipbuf);
	key_add(&k, res);
	key_add(&k, rda_kv(a, ev, "disposition"));
	key_add(&k, rda_kv(a, ev, "policy"));
	key_add(&k, rda_kv(a, ev, "enforced"));
	key_add(&k, rda_kv(a, ev, "override"));
	key_add(&k, rda_kv(a, ev, "dkim_aligned"));
	key_add(&k, rda_kv(a, ev, "spf_aligned"));
	key_add(&k, rda_kv(a, ev, "header_from"));
	key_add(&k, rda_kv(a, ev, "envelope_from"));
	key_add(&k, rda_kv(a, ev, "envelope_to"));
	key_add(&k, rda_kv(a, ev, "spf"));
	key_add(&k, rda_kv(a, ev, "dkim"));
	sbuf_addc(&k, 0);
	rmap_bump(&r->rows, k.buf, 0, 1);
	sbuf_free(&k);
	r->messages++;
	a->count[RDA_COUNTED]++;
	return RDA_COUNTED;
}

static int report_cmp(const void *x, const void *y)
{
	const struct rda_report *a = *(struct rda_report *const *)x, *b = *(struct rda_report *const *)y;
	int c = strcmp(a->domain, b->domain);
	return c ? c : (a->begin > b->begin) - (a->begin < b->begin);
}

struct rda_report *const *rda_reports(struct rda *a, size_t *n_out)
{
	if (!a->sorted) {
		a->sorted = xcalloc(a->reports.n + 1, sizeof *a->sorted);
		a->nsorted = 0;
		for (size_t i = 0; i < a->reports.cap; i++)
			if (a->reports.v[i].key)
				a->sorted[a->nsorted++] = a->reports.v[i].ptr;
		qsort(a->sorted, a->nsorted, sizeof *a->sorted, report_cmp);
	}
	*n_out = a->nsorted;
	return a->sorted;
}

/* ---- names ---- */

char *rda_report_id(const struct rda_report *r, const struct rda_meta *m)
{
	return xasprintf("%lld.%s@%s", r->begin, r->domain, m->receiver);
}

char *rda_filename(const struct rda_report *r, const struct rda_meta *m, int gz)
{
	return xasprintf("%s!%s!%lld!%lld.%s", m->receiver, r->domain, r->begin, r->end,
			 gz ? "xml.gz" : "xml");
}

/* ---- XML ---- */

struct xw {
	xmlTextWriterPtr w;
	int bad;
};

static void x_start(struct xw *x, const char *name)
{
	if (xmlTextWriterStartElement(x->w, BAD_CAST name) < 0)
		x->bad = 1;
}

static void x_end(struct xw *x)
{
	if (xmlTextWriterEndElement(x->w) < 0)
		x->bad = 1;
}

static void x_elem(struct xw *x, const char *name, const char *text)
{
	if (xmlTextWriterWriteElement(x->w, BAD_CAST name, BAD_CAST text) < 0)
		x->bad = 1;
}

static void x_elemf(struct xw *x, const char *name, long long n)
{
	char b[32];
	snprintf(b, sizeof b, "%lld", n);
	x_elem(x, name, b);
}

static int one_of(const char *v, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(v, *list))
			return 1;
	return 0;
}

static int is(const char *v)
{
	return v && *v && strcmp(v, "-") != 0;
}

static void x_policy(struct xw *x, const struct rda_report *r, enum rda_format f)
{
	static const char *const disp[] = { "none", "quarantine", "reject", NULL };
	static const char *const rs[] = { "r", "s", NULL };
	static const char *const ny[] = { "n", "y", NULL };
	static const char *const disc[] = { "psl", "treewalk", NULL };
	const struct rda_policy *p = &r->pol;
	/* p=- is the fallback of a record with only rua= (RFC 9989 4.10.1): none */
	const char *pp = one_of(p->p, disp) ? p->p : "none";
	x_start(x, "policy_published");
	x_elem(x, "domain", r->domain);
	if (f == RDA_RFC9990) {
		if (one_of(p->discovery, disc))
			x_elem(x, "discovery_method", p->discovery);
		x_elem(x, "p", pp);
		if (one_of(p->sp, disp))
			x_elem(x, "sp", p->sp);
		if (one_of(p->np, disp))
			x_elem(x, "np", p->np);
		if (is(p->fo))
			x_elem(x, "fo", p->fo);
		if (one_of(p->adkim, rs))
			x_elem(x, "adkim", p->adkim);
		if (one_of(p->aspf, rs))
			x_elem(x, "aspf", p->aspf);
		if (one_of(p->t, ny))
			x_elem(x, "testing", p->t);
	} else {
		/* RFC 7489 appendix C: p, sp, pct and fo are required; defaults of 6.3 */
		if (one_of(p->adkim, rs))
			x_elem(x, "adkim", p->adkim);
		if (one_of(p->aspf, rs))
			x_elem(x, "aspf", p->aspf);
		x_elem(x, "p", pp);
		x_elem(x, "sp", one_of(p->sp, disp) ? p->sp : pp);
		char *end;
		long pct = is(p->pct) ? strtol(p->pct, &end, 10) : 100;
		x_elemf(x, "pct", is(p->pct) && !*end && pct >= 0 && pct <= 100 ? pct : 100);
		x_elem(x, "fo", is(p->fo) ? p->fo : "0");
	}
	x_end(x);
}

/* RFC 7489's XSD takes IPv6 only as eight groups: "2001:db8:0:0:0:0:0:1" */
static void ip_text(const char *ip, enum rda_format f, char *out, size_t outlen)
{
	struct in6_addr a6;
	if (f == RDA_RFC7489 && inet_pton(AF_INET6, ip, &a6) == 1) {
		const unsigned char *b = a6.s6_addr;
		snprintf(out, outlen, "%x:%x:%x:%x:%x:%x:%x:%x", b[0] << 8 | b[1], b[2] << 8 | b[3],
			 b[4] << 8 | b[5], b[6] << 8 | b[7], b[8] << 8 | b[9], b[10] << 8 | b[11],
			 b[12] << 8 | b[13], b[14] << 8 | b[15]);
		return;
	}
	snprintf(out, outlen, "%s", ip);
}

static void x_reason(struct xw *x, const char *type, const char *comment)
{
	x_start(x, "reason");
	x_elem(x, "type", type);
	if (comment)
		x_elem(x, "comment", comment);
	x_end(x);
}

static void x_evaluated(struct xw *x, char *const *k, enum rda_format f)
{
	int pass = !strcmp(k[RK_DMARC], "pass");
	int enforced = !strcmp(k[RK_ENFORCED], "yes");
	const char *disp = k[RK_DISP];
	if (strcmp(disp, "quarantine") != 0 && strcmp(disp, "reject") != 0)
		disp = "none";
	int local = !enforced && strcmp(disp, "none") != 0;	/* logged, not applied */
	if (local)
		disp = "none";
	/* RFC 9990: "pass" = no action, passing DMARC with an enforcing policy */
	if (f == RDA_RFC9990 && pass &&
	    (!strcmp(k[RK_POLICY], "quarantine") || !strcmp(k[RK_POLICY], "reject")))
		disp = "pass";
	x_start(x, "policy_evaluated");
	x_elem(x, "disposition", disp);
	x_elem(x, "dkim", !strcmp(k[RK_DKIM_AL], "pass") ? "pass" : "fail");
	x_elem(x, "spf", !strcmp(k[RK_SPF_AL], "pass") ? "pass" : "fail");
	const char *ov = k[RK_OVERRIDE];
	if (!strcmp(ov, "policy_test_mode"))
		x_reason(x, f == RDA_RFC9990 ? "policy_test_mode" : "other",
			 f == RDA_RFC9990 ? NULL : "policy_test_mode (t=y)");
	else if (!strcmp(ov, "sampled_out"))
		x_reason(x, f == RDA_RFC9990 ? "other" : "sampled_out",
			 f == RDA_RFC9990 ? "sampled_out (pct)" : NULL);
	else if (!strcmp(ov, "local_policy") || !strcmp(k[RK_ENFORCED], "ignored_domain"))
		x_reason(x, "local_policy", "domain exempted by the receiver");
	else if (local)
		x_reason(x, "local_policy", "policy evaluated, not enforced by the receiver");
	x_end(x);
}

/* 0: pass, d= is the From domain; 1: pass, same Organizational Domain (PSL); 2: pass; 3: other */
static int sig_rank(const char *d, const char *res, const char *hfrom)
{
	if (strcmp(res, "pass") != 0)
		return 3;
	if (!strcasecmp(d, hfrom))
		return 0;
	char a[256], b[256];
	if (dmarc_org_domain_psl(NULL, d, a, sizeof a) == 0 &&
	    dmarc_org_domain_psl(NULL, hfrom, b, sizeof b) == 0 && !strcmp(a, b))
		return 1;
	return 2;
}

static void x_auth(struct xw *x, char *const *k, enum rda_format f)
{
	static const char *const dkim_res[] = { "none", "pass", "fail", "policy", "neutral",
						"temperror", "permerror", NULL };
	static const char *const spf_res9990[] = { "none", "pass", "fail", "softfail", "policy",
						   "neutral", "temperror", "permerror", NULL };
	static const char *const spf_res7489[] = { "none", "neutral", "pass", "fail", "softfail",
						   "temperror", "permerror", NULL };
	x_start(x, "auth_results");
	/* dkim: "d/s/result,d/s/result"; "none" or "-" = no signature */
	struct sig {
		const char *d, *sel, *res;
	} *sigs = NULL;
	size_t nsig = 0;
	char *list = xstrdup(k[RK_DKIM]);
	for (char *save = NULL, *sig = strtok_r(list, ",", &save); sig; sig = strtok_r(NULL, ",", &save)) {
		char *s1 = strchr(sig, '/'), *s2 = s1 ? strrchr(sig, '/') : NULL;
		if (!s1 || s2 == s1)
			continue;
		*s1 = 0;
		*s2 = 0;
		if (!strcmp(sig, "-") || !*sig)
			continue;
		sigs = xrealloc(sigs, (nsig + 1) * sizeof *sigs);
		sigs[nsig++] = (struct sig){ sig, s1 + 1, s2 + 1 };
	}
	/* RFC 9990 2.1.6 order: pass in strict alignment, pass in relaxed alignment, other pass, the rest */
	int written = 0;
	for (int rank = 0; rank < 4; rank++) {
		for (size_t i = 0; i < nsig && written < RDA_MAX_DKIM; i++) {
			if (sig_rank(sigs[i].d, sigs[i].res, k[RK_HFROM]) != rank)
				continue;
			x_start(x, "dkim");
			x_elem(x, "domain", sigs[i].d);
			if (strcmp(sigs[i].sel, "-") != 0 || f == RDA_RFC9990)	/* required in 9990 */
				x_elem(x, "selector", strcmp(sigs[i].sel, "-") ? sigs[i].sel : "");
			x_elem(x, "result", one_of(sigs[i].res, dkim_res) ? sigs[i].res : "none");
			x_end(x);
			written++;
		}
	}
	free(sigs);
	free(list);
	/* spf: "domain/scope/result" or "-" */
	char *spf = xstrdup(k[RK_SPF]);
	char *s1 = strchr(spf, '/'), *s2 = s1 ? strrchr(spf, '/') : NULL;
	if (s1 && s2 != s1) {
		*s1 = 0;
		*s2 = 0;
		const char *res = s2 + 1;
		x_start(x, "spf");
		x_elem(x, "domain", strcmp(spf, "-") ? spf : "");
		/* RFC 9990 knows only mfrom; for a null path that is postmaster@HELO (RFC 7208 2.4) */
		x_elem(x, "scope", f == RDA_RFC7489 && !strcmp(s1 + 1, "helo") ? "helo" : "mfrom");
		x_elem(x, "result", one_of(res, f == RDA_RFC9990 ? spf_res9990 : spf_res7489) ? res
										 : "none");
		x_end(x);
	} else if (f == RDA_RFC7489) {
		/* required there: SPF was not evaluated */
		x_start(x, "spf");
		x_elem(x, "domain", strcmp(k[RK_EFROM], "<>") && strcmp(k[RK_EFROM], "-") ? k[RK_EFROM] : "");
		x_elem(x, "scope", "mfrom");
		x_elem(x, "result", "none");
		x_end(x);
	}
	free(spf);
	x_end(x);
}

static void x_record(struct xw *x, const char *key, long long count, enum rda_format f)
{
	char *copy = xstrdup(key), *k[RK_N], *s = copy;
	for (int i = 0; i < RK_N; i++) {
		k[i] = s;
		s = strchr(s, '\t');
		if (s)
			*s++ = 0;
		else
			s = k[i] + strlen(k[i]);
	}
	char ip[64];
	ip_text(k[RK_IP], f, ip, sizeof ip);
	x_start(x, "record");
	x_start(x, "row");
	x_elem(x, "source_ip", ip);
	x_elemf(x, "count", count);
	x_evaluated(x, k, f);
	x_end(x);
	x_start(x, "identifiers");
	if (f == RDA_RFC7489 && is(k[RK_ETO]) && !strchr(k[RK_ETO], ','))
		x_elem(x, "envelope_to", k[RK_ETO]);
	/* "<>" (null path): present and empty, RFC 9990 2.1.8 */
	x_elem(x, "envelope_from", strcmp(k[RK_EFROM], "<>") && strcmp(k[RK_EFROM], "-") ? k[RK_EFROM] : "");
	x_elem(x, "header_from", k[RK_HFROM]);
	/* one recipient domain only: the element holds one domain */
	if (f == RDA_RFC9990 && is(k[RK_ETO]) && !strchr(k[RK_ETO], ','))
		x_elem(x, "envelope_to", k[RK_ETO]);
	x_end(x);
	x_auth(x, k, f);
	x_end(x);
	free(copy);
}

char *rda_xml(const struct rda_report *r, const struct rda_meta *m, size_t *len_out,
	      const char **err_out)
{
	xmlBufferPtr buf = xmlBufferCreate();
	xmlTextWriterPtr w = buf ? xmlNewTextWriterMemory(buf, 0) : NULL;
	if (!w) {
		if (buf)
			xmlBufferFree(buf);
		*err_out = "libxml2: cannot create a writer";
		return NULL;
	}
	struct xw x = { w, 0 };
	enum rda_format f = m->format;
	xmlTextWriterSetIndent(w, 1);
	xmlTextWriterSetIndentString(w, BAD_CAST "  ");
	if (xmlTextWriterStartDocument(w, "1.0", "UTF-8", NULL) < 0)
		x.bad = 1;
	if (f == RDA_RFC9990) {
		if (xmlTextWriterStartElementNS(w, NULL, BAD_CAST "feedback",
						BAD_CAST "urn:ietf:params:xml:ns:dmarc-2.0") < 0)
			x.bad = 1;
	} else if (xmlTextWriterStartElementNS(w, BAD_CAST "dmarc", BAD_CAST "feedback",
					       BAD_CAST "http://dmarc.org/dmarc-xml/0.1") < 0) {
		x.bad = 1;
	}
	x_elem(&x, "version", "1.0");
	x_start(&x, "report_metadata");
	x_elem(&x, "org_name", m->org_name);
	x_elem(&x, "email", m->email);
	char *rid = rda_report_id(r, m);
	x_elem(&x, "report_id", rid);
	free(rid);
	x_start(&x, "date_range");
	x_elemf(&x, "begin", r->begin);
	x_elemf(&x, "end", r->end);
	x_end(&x);
	if (f == RDA_RFC9990)
		x_elem(&x, "generator", m->generator ? m->generator : "sluice " SLUICE_VERSION);
	x_end(&x);
	x_policy(&x, r, f);
	size_t n;
	struct rmap_row *rows = rmap_sorted(&r->rows, 0, &n);
	for (size_t i = 0; i < n; i++)
		x_record(&x, rows[i].e->key, rows[i].e->c[0], f);
	free(rows);
	if (xmlTextWriterEndDocument(w) < 0)
		x.bad = 1;
	xmlFreeTextWriter(w);
	char *out = NULL;
	if (!x.bad) {
		*len_out = (size_t)xmlBufferLength(buf);
		out = xmalloc(*len_out + 1);
		memcpy(out, xmlBufferContent(buf), *len_out);
		out[*len_out] = 0;
	} else {
		*err_out = "libxml2: writing the report failed";
	}
	xmlBufferFree(buf);
	return out;
}

unsigned char *rda_gzip(const void *data, size_t len, size_t *len_out)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	/* 15 + 16: gzip wrapper with a zeroed header (no name, mtime 0) */
	if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	size_t cap = deflateBound(&z, (uLong)len) + 32;
	unsigned char *out = xmalloc(cap);
	z.next_in = (Bytef *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int rc = deflate(&z, Z_FINISH);
	*len_out = cap - z.avail_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(out);
		return NULL;
	}
	return out;
}
