/*
 * dmarc_failrep: DMARC failure reports (RFC 9991 / RFC 6591 / RFC 5965).
 * See dmarc_failrep.h for the contract.
 */
#include "milters/dmarc/dmarc_failrep.h"
#include "proto/dmarc_report.h"

#include "lib/sendmail_run.h"
#include "lib/util.h"
#include "lib/version.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* ---- 1. fo= ---- */

unsigned dmarc_failrep_fo_parse(const char *fo)
{
	unsigned bits = 0;

	if (!fo || !*fo)
		return DMARC_FAILREP_FO_0;
	for (const char *p = fo; *p;) {
		while (*p == ' ' || *p == '\t')
			p++;
		unsigned b;
		switch (*p) {
		case '0': b = DMARC_FAILREP_FO_0; break;
		case '1': b = DMARC_FAILREP_FO_1; break;
		case 'd': case 'D': b = DMARC_FAILREP_FO_D; break;
		case 's': case 'S': b = DMARC_FAILREP_FO_S; break;
		default: return DMARC_FAILREP_FO_0;
		}
		if (bits & b)
			return DMARC_FAILREP_FO_0;
		bits |= b;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == 0)
			break;
		if (*p != ':')
			return DMARC_FAILREP_FO_0;
		p++;
		if (*p == 0)
			return DMARC_FAILREP_FO_0;	/* "1:" */
	}
	if ((bits & DMARC_FAILREP_FO_0) && (bits & DMARC_FAILREP_FO_1))
		return DMARC_FAILREP_FO_0;
	/* "d" or "s" alone (allowed by the ABNF's second form only with 0/1,
	 * but harmless): they ask for their own reports only. */
	return bits ? bits : DMARC_FAILREP_FO_0;
}

unsigned dmarc_failrep_fo_match(unsigned fo, int spf_aligned, int dkim_aligned,
				int dkim_failed, int spf_failed)
{
	unsigned hit = 0;

	if ((fo & DMARC_FAILREP_FO_0) && !spf_aligned && !dkim_aligned)
		hit |= DMARC_FAILREP_FO_0;
	if ((fo & DMARC_FAILREP_FO_1) && (!spf_aligned || !dkim_aligned))
		hit |= DMARC_FAILREP_FO_1;
	if ((fo & DMARC_FAILREP_FO_D) && dkim_failed)
		hit |= DMARC_FAILREP_FO_D;
	if ((fo & DMARC_FAILREP_FO_S) && spf_failed)
		hit |= DMARC_FAILREP_FO_S;
	return hit;
}

static int auth_failed(enum dmarc_auth_result r)
{
	return r == DMARC_AUTH_FAIL || r == DMARC_AUTH_PERMERROR;
}

unsigned dmarc_failrep_due(const struct dmarc_outcome *o, const struct dmarc_auth *spf,
			   size_t nspf, const struct dmarc_auth *dkim, size_t ndkim)
{
	if (!o || !o->record || !o->record->ruf || o->record->ruf_valid == 0)
		return 0;
	if (o->record->psd == 'y')
		return 0;
	if (o->result != DMARC_RESULT_PASS && o->result != DMARC_RESULT_FAIL)
		return 0;
	int dkim_failed = 0, spf_failed = 0;
	for (size_t i = 0; i < ndkim; i++)
		if (auth_failed(dkim[i].result))
			dkim_failed = 1;
	for (size_t i = 0; i < nspf; i++)
		if (spf[i].scope == DMARC_SCOPE_MFROM && auth_failed(spf[i].result))
			spf_failed = 1;
	return dmarc_failrep_fo_match(dmarc_failrep_fo_parse(o->record->fo), o->spf_aligned,
				      o->dkim_aligned, dkim_failed, spf_failed);
}

/* ---- 2. ruf= ---- */

const char *dmarc_failrep_verdict_name(enum dmarc_failrep_verdict v)
{
	switch (v) {
	case DMARC_FAILREP_UNCHECKED: return "unchecked";
	case DMARC_FAILREP_INTERNAL: return "internal";
	case DMARC_FAILREP_VERIFIED: return "verified";
	case DMARC_FAILREP_REFUSED: return "refused";
	case DMARC_FAILREP_TEMPERROR: return "temperror";
	}
	return "unknown";
}

static const struct dmarc_report_layout ruf_layout = {
	sizeof(struct dmarc_failrep_dest),
	offsetof(struct dmarc_failrep_dest, addr), sizeof(((struct dmarc_failrep_dest *)0)->addr),
	offsetof(struct dmarc_failrep_dest, host), sizeof(((struct dmarc_failrep_dest *)0)->host),
	offsetof(struct dmarc_failrep_dest, max_bytes),
};

size_t dmarc_failrep_ruf_parse(const char *ruf, struct dmarc_failrep_dest *out, size_t max,
			       size_t *skipped_out)
{
	/* NULL rules: proto/dmarc_report's ruf= rules */
	return dmarc_report_uri_list(ruf, NULL, &ruf_layout, out, max, skipped_out);
}

int dmarc_failrep_addr_ok(const char *addr)
{
	struct dmarc_report_uri d;
	size_t n = strlen(addr);
	if (n == 0 || n > DMARC_FAILREP_ADDR_MAX || strpbrk(addr, "%?!,"))
		return -1;
	char uri[DMARC_FAILREP_ADDR_MAX + 8];
	snprintf(uri, sizeof uri, "mailto:%s", addr);
	return dmarc_report_uri_parse(uri, strlen(uri), NULL, &d) == 0 ? 0 : -1;
}

/* ---- external destination verification ---- */

enum { ORG_OK = 0, ORG_TEMP = -1 };

static int dns_temp(const struct dns_answer *a)
{
	return a->status != DNS_OK && a->status != DNS_NODATA && a->status != DNS_NXDOMAIN;
}

/*
 * RFC 9989 4.10.2: the Organizational Domain of name (normalized) by the
 * DNS tree walk into out. ORG_OK, or ORG_TEMP when a look-up failed.
 */
static int org_treewalk(const char *name, char *out, size_t outlen,
			dmarc_failrep_lookup_fn lookup, void *arg)
{
	/* the targets, longest first (4.10.1 steps 3-7) */
	const char *targets[DMARC_MAX_WALK + 1];
	size_t nt = 0, labels = 1;
	for (const char *p = name; *p; p++)
		labels += *p == '.';
	targets[nt++] = name;
	const char *cur = name;
	size_t x = labels;
	while (x > 1 && nt < DMARC_MAX_WALK) {
		if (x > 8) {
			while (x > 7) {
				cur = strchr(cur, '.') + 1;
				x--;
			}
		} else {
			cur = strchr(cur, '.') + 1;
			x--;
		}
		targets[nt++] = cur;
	}
	/* ask, stopping at psd=n/y; remember which had one DMARC record */
	int found[DMARC_MAX_WALK + 1] = { 0 };
	char psd[DMARC_MAX_WALK + 1] = { 0 };
	size_t asked = 0;
	for (size_t i = 0; i < nt; i++) {
		char q[DMARC_NAME_MAX + 16];
		snprintf(q, sizeof q, "_dmarc.%s", targets[i]);
		struct dns_answer *a = lookup(arg, q, DNS_T_TXT);
		asked = i + 1;
		if (dns_temp(a)) {
			dns_answer_free(&a);
			return ORG_TEMP;
		}
		size_t ndm = 0, which = 0;
		for (size_t k = 0; a->status == DNS_OK && k < a->n; k++)
			if (a->rr[k].type == DNS_T_TXT &&
			    dmarc_record_is_dmarc(a->rr[k].u.txt.data, a->rr[k].u.txt.len)) {
				ndm++;
				which = k;
			}
		if (ndm == 1) {
			struct dmarc_record r;
			dmarc_record_parse(a->rr[which].u.txt.data, a->rr[which].u.txt.len, &r, NULL);
			if (!r.broken) {
				found[i] = 1;
				psd[i] = r.psd;
			}
			dmarc_record_free(&r);
		}
		dns_answer_free(&a);
		if (found[i] && (psd[i] == 'n' || psd[i] == 'y'))
			break;
	}
	const char *org = NULL;
	for (size_t i = 0; i < asked && !org; i++) {
		if (!found[i])
			continue;
		if (psd[i] == 'n')
			org = targets[i];
		else if (psd[i] == 'y' && i > 0) {
			/* one label below targets[i] on the way to name */
			const char *below = name;
			for (const char *p = name; p < targets[i]; p = strchr(p, '.') + 1)
				below = p;
			org = below;
		}
	}
	if (!org) {
		for (size_t i = asked; i-- > 0;)
			if (found[i]) {
				org = targets[i];
				break;
			}
	}
	snprintf(out, outlen, "%s", org ? org : name);
	return ORG_OK;
}

static int org_of(const char *name, enum dmarc_mode mode, const void *psl, char *out,
		  size_t outlen, dmarc_failrep_lookup_fn lookup, void *arg)
{
	if (mode == DMARC_MODE_RFC7489)
		return dmarc_org_domain_psl(psl, name, out, outlen) == 0 ? ORG_OK : ORG_TEMP;
	return org_treewalk(name, out, outlen, lookup, arg);
}

static enum dmarc_failrep_verdict verify_host(struct dmarc_failrep_dest *d, const char *policy_domain,
					      const char *policy_org, int host_org_rc,
					      const char *host_org, dmarc_failrep_lookup_fn lookup,
					      void *arg)
{
	if (host_org_rc == ORG_OK && policy_org && strcmp(host_org, policy_org) == 0)
		return DMARC_FAILREP_INTERNAL;
	/* step 9 with ruf: the consumer may name another address at the same host */
	enum dmarc_report_verdict v = dmarc_report_verify(policy_domain, d->host, DMARC_REPORT_RUF,
							  NULL, lookup, arg, d->addr,
							  sizeof d->addr, &d->max_bytes);
	if (v == DMARC_REPORT_VERIFIED)
		return DMARC_FAILREP_VERIFIED;
	/* no record while the host's own Organizational Domain is unknown: it might
	 * have been internal; over DNS limits (step 4) or another host (step 9): refused */
	if (v == DMARC_REPORT_TEMPERROR || (v == DMARC_REPORT_NOT_FOUND && host_org_rc != ORG_OK))
		return DMARC_FAILREP_TEMPERROR;
	return DMARC_FAILREP_REFUSED;
}

/* the caller's look-up under a budget: past it, a timeout without asking */
struct budget {
	dmarc_failrep_lookup_fn fn;
	void *arg;
	unsigned left;
};

static struct dns_answer *budget_lookup(void *arg, const char *name, enum dns_type type)
{
	struct budget *b = arg;
	if (b->left == 0) {
		struct dns_answer *a = xcalloc(1, sizeof *a);
		a->status = DNS_TIMEOUT;
		a->qname = xstrdup(name);
		a->qtype = type;
		return a;
	}
	b->left--;
	return b->fn(b->arg, name, type);
}

void dmarc_failrep_verify(struct dmarc_failrep_dest *d, size_t n, const char *policy_domain,
			  const char *policy_org, enum dmarc_mode mode, const void *psl,
			  dmarc_failrep_lookup_fn lookup_fn, void *lookup_fn_arg)
{
	char pdom[DMARC_NAME_MAX + 1], porg[DMARC_NAME_MAX + 1];
	int porg_ok = 0, porg_tried = 0;
	struct budget bud = { lookup_fn, lookup_fn_arg, DMARC_FAILREP_MAX_QUERIES };
	dmarc_failrep_lookup_fn lookup = budget_lookup;
	void *lookup_arg = &bud;

	if (!policy_domain || dmarc_domain_normalize(policy_domain, pdom, sizeof pdom) < 0) {
		for (size_t i = 0; i < n; i++)
			d[i].verdict = DMARC_FAILREP_REFUSED;
		return;
	}
	if (policy_org && dmarc_domain_normalize(policy_org, porg, sizeof porg) == 0)
		porg_ok = 1;
	for (size_t i = 0; i < n; i++) {
		/* same host as an earlier destination: same verdict, no look-up */
		size_t j;
		for (j = 0; j < i; j++)
			if (strcmp(d[j].host, d[i].host) == 0)
				break;
		if (j < i && d[j].verdict != DMARC_FAILREP_VERIFIED) {
			d[i].verdict = d[j].verdict;
			continue;
		}
		if (strcmp(d[i].host, pdom) == 0 || (porg_ok && strcmp(d[i].host, porg) == 0)) {
			d[i].verdict = DMARC_FAILREP_INTERNAL;
			continue;
		}
		if (!porg_ok && !porg_tried) {
			porg_tried = 1;
			if (org_of(pdom, mode, psl, porg, sizeof porg, lookup, lookup_arg) == ORG_OK)
				porg_ok = 1;
		}
		char horg[DMARC_NAME_MAX + 1] = "";
		int hrc = org_of(d[i].host, mode, psl, horg, sizeof horg, lookup, lookup_arg);
		d[i].verdict = verify_host(&d[i], pdom, porg_ok ? porg : NULL, hrc, horg, lookup,
					   lookup_arg);
	}
}

/* ---- 3. rate limit ---- */

#define RATE_BUCKETS 1024

struct rate_ent {
	struct rate_ent *next;
	long long start_s;
	unsigned count;
	char key[];
};

struct dmarc_failrep_rate {
	pthread_mutex_t mu;
	unsigned per_hour;
	dmarc_failrep_clock_fn clock;
	void *clock_arg;
	size_t nkeys;
	struct rate_ent *b[RATE_BUCKETS];
};

static long long mono_s(void *arg)
{
	(void)arg;
	return now_ms() / 1000;
}

struct dmarc_failrep_rate *dmarc_failrep_rate_new(unsigned per_hour, dmarc_failrep_clock_fn clock,
						  void *clock_arg)
{
	struct dmarc_failrep_rate *r = xcalloc(1, sizeof *r);
	pthread_mutex_init(&r->mu, NULL);
	r->per_hour = per_hour;
	r->clock = clock ? clock : mono_s;
	r->clock_arg = clock_arg;
	return r;
}

void dmarc_failrep_rate_set(struct dmarc_failrep_rate *r, unsigned per_hour)
{
	pthread_mutex_lock(&r->mu);
	r->per_hour = per_hour;
	pthread_mutex_unlock(&r->mu);
}

static unsigned key_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 'A' && c <= 'Z')
			c += 32;
		h = (h ^ c) * 16777619u;
	}
	return h;
}

/* drop entries whose window is over; caller holds mu */
static void rate_expire(struct dmarc_failrep_rate *r, long long now)
{
	for (size_t i = 0; i < RATE_BUCKETS; i++) {
		struct rate_ent **pp = &r->b[i];
		while (*pp) {
			struct rate_ent *e = *pp;
			if (now - e->start_s >= DMARC_FAILREP_RATE_WINDOW_S) {
				*pp = e->next;
				free(e);
				r->nkeys--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* 1 when a take would succeed now (nothing is counted) */
static int rate_peek(struct dmarc_failrep_rate *r, const char *addr)
{
	int ok;

	pthread_mutex_lock(&r->mu);
	long long now = r->clock(r->clock_arg);
	struct rate_ent *e;
	for (e = r->b[key_hash(addr) % RATE_BUCKETS]; e; e = e->next)
		if (ascii_strcasecmp(e->key, addr) == 0)
			break;
	if (!e || now - e->start_s >= DMARC_FAILREP_RATE_WINDOW_S)
		ok = r->per_hour > 0;
	else
		ok = e->count < r->per_hour;
	pthread_mutex_unlock(&r->mu);
	return ok;
}

int dmarc_failrep_rate_take(struct dmarc_failrep_rate *r, const char *addr)
{
	int ok = 0;

	pthread_mutex_lock(&r->mu);
	long long now = r->clock(r->clock_arg);
	unsigned h = key_hash(addr) % RATE_BUCKETS;
	struct rate_ent *e;
	for (e = r->b[h]; e; e = e->next)
		if (ascii_strcasecmp(e->key, addr) == 0)
			break;
	if (e && now - e->start_s >= DMARC_FAILREP_RATE_WINDOW_S) {
		e->start_s = now;
		e->count = 0;
	}
	if (!e && r->per_hour > 0) {
		if (r->nkeys >= DMARC_FAILREP_RATE_MAX_KEYS)
			rate_expire(r, now);
		if (r->nkeys < DMARC_FAILREP_RATE_MAX_KEYS) {
			size_t len = strlen(addr);
			e = xcalloc(1, sizeof *e + len + 1);
			memcpy(e->key, addr, len + 1);
			e->start_s = now;
			e->next = r->b[h];
			r->b[h] = e;
			r->nkeys++;
		}
	}
	if (e && e->count < r->per_hour) {
		e->count++;
		ok = 1;
	}
	pthread_mutex_unlock(&r->mu);
	return ok;
}

void dmarc_failrep_rate_free(struct dmarc_failrep_rate **rp)
{
	struct dmarc_failrep_rate *r = rp ? *rp : NULL;
	if (!r)
		return;
	for (size_t i = 0; i < RATE_BUCKETS; i++) {
		while (r->b[i]) {
			struct rate_ent *e = r->b[i];
			r->b[i] = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&r->mu);
	free(r);
	*rp = NULL;
}

/* ---- 4. the report ---- */

const char *dmarc_failrep_delivery_name(enum dmarc_failrep_delivery d)
{
	switch (d) {
	case DMARC_FAILREP_DELIVERED: return "delivered";
	case DMARC_FAILREP_SPAM: return "spam";
	case DMARC_FAILREP_POLICY: return "policy";
	case DMARC_FAILREP_REJECT: return "reject";
	case DMARC_FAILREP_OTHER: return "other";
	}
	return "other";
}

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t key_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char redact_key[32];

static void key_init(void)
{
	if (RAND_bytes(redact_key, sizeof redact_key) != 1)
		panic("dmarc_failrep: RAND_bytes failed");
}

void dmarc_failrep_set_key(const unsigned char *key, size_t len)
{
	pthread_once(&key_once, key_init);
	pthread_mutex_lock(&key_mu);
	memset(redact_key, 0, sizeof redact_key);
	memcpy(redact_key, key, len < sizeof redact_key ? len : sizeof redact_key);
	pthread_mutex_unlock(&key_mu);
}

void dmarc_failrep_redact_local(const char *local, size_t len, char out[17])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	pthread_once(&key_once, key_init);
	pthread_mutex_lock(&key_mu);
	if (!HMAC(EVP_sha256(), redact_key, sizeof redact_key, (const unsigned char *)local, len,
		  md, &mdlen) || mdlen < 8)
		panic("dmarc_failrep: HMAC-SHA256 failed");
	pthread_mutex_unlock(&key_mu);
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int is_domain_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '[' || c >= 0x80;
}

/*
 * '=' is atext, so "smtp.mailfrom=u@d" (Authentication-Results) or
 * "i=u@d" (DKIM-Signature) walk back to the tag: keep a known tag and its
 * '=' (the local-part starts after it). Anything else stays one local-part
 * (SRS0=...=local is hashed whole).
 */
static size_t keep_tag(const char *s, size_t st, size_t a)
{
	static const char *const tags[] = { "i", "smtp.mailfrom", "smtp.rcptto", "smtp.auth",
					    "header.from", "header.sender", "header.i",
					    "header.reply-to", "envelope-from", "sender", NULL };
	const char *eq = memchr(s + st, '=', a - st);
	if (!eq)
		return st;
	size_t tl = (size_t)(eq - (s + st));
	for (int i = 0; tags[i]; i++)
		if (strlen(tags[i]) == tl && ascii_strncasecmp(s + st, tags[i], tl) == 0)
			return st + tl + 1;
	return st;
}

/*
 * Replace every local-part in s[0..len) (the atext/dot run, or quoted
 * string, right before an '@' followed by a domain) by its keyed hash.
 */
/* the opening quote of the quoted string that ends at s[end - 1]; -1 if none */
static long quote_start(const char *s, size_t lo, size_t end)
{
	for (size_t q = end - 1; q > lo;) {
		q--;
		if (s[q] == '"' && (q == 0 || s[q - 1] != '\\'))
			return (long)q;
	}
	return -1;
}

static int is_wsp(int c)
{
	return c == ' ' || c == '\t';
}

static void redact_into(struct sbuf *out, const char *s, size_t len)
{
	size_t copied = 0;	/* s[0..copied) is in out */
	size_t i = 0;

	while (i < len) {
		const char *at = memchr(s + i, '@', len - i);
		if (!at)
			break;
		size_t a = (size_t)(at - s);
		i = a + 1;
		/* a domain must follow (obsolete syntax allows WSP after '@') */
		size_t d = a + 1;
		while (d < len && is_wsp((unsigned char)s[d]))
			d++;
		if (d >= len || !is_domain_start((unsigned char)s[d]))
			continue;
		/* the local-part ends before '@' (or before WSP, "alice @x") and is a
		 * run of atoms, dots and quoted strings ("a"."b", a."b c") */
		size_t end = a;
		while (end > copied && is_wsp((unsigned char)s[end - 1]))
			end--;
		size_t st = end;
		int words = 0, quoted_only = 0;
		for (;;) {
			if (st > copied && s[st - 1] == '"') {
				long q = quote_start(s, copied, st);
				if (q < 0)
					break;
				quoted_only = words == 0;
				st = (size_t)q;
			} else {
				size_t k = st;
				while (k > copied && (dmarc_report_atext((unsigned char)s[k - 1]) || s[k - 1] == '.'))
					k--;
				if (k == st)
					break;
				quoted_only = 0;
				st = k;
			}
			words++;
		}
		if (st == end)
			continue;
		size_t hs = st, he = end;	/* what is hashed */
		if (quoted_only && words == 1) {
			hs++;	/* "carol q" hashes like the mailbox it names */
			he--;
		} else if (words == 1) {
			st = keep_tag(s, st, end);
			hs = st;
		}
		if (st == end)
			continue;
		char h[17];
		dmarc_failrep_redact_local(s + hs, he - hs, h);
		sbuf_add(out, s + copied, st - copied);
		sbuf_adds(out, h);
		copied = end;
	}
	sbuf_add(out, s + copied, len - copied);
}

char *dmarc_failrep_redact_text(const char *text)
{
	struct sbuf b;
	sbuf_init(&b);
	redact_into(&b, text, strlen(text));
	return sbuf_steal(&b);
}

static char *redact_dup(const char *s, int redact)
{
	struct sbuf b;
	sbuf_init(&b);
	if (redact)
		redact_into(&b, s, strlen(s));
	else
		sbuf_adds(&b, s);
	return sbuf_steal(&b);
}

static void rfc5322_date(time_t t, char *out, size_t outlen)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
		 tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* a header value with folds normalized to LF + WSP, CRs and NULs dropped */
static void add_value(struct sbuf *b, const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p == '\r')
			continue;
		if (*p == '\n') {
			sbuf_addc(b, '\n');
			if (p[1] && p[1] != ' ' && p[1] != '\t' && p[1] != '\r' && p[1] != '\n')
				sbuf_addc(b, '\t');	/* never start a line of our own */
			continue;
		}
		sbuf_addc(b, *p);
	}
}

/* envelope values: printable bytes only (UTF-8 kept), never a line break */
static void add_clean(struct sbuf *b, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p >= 0x20 && *p != 0x7f)
			sbuf_addc(b, (char)*p);
}

static int msgid_field(const char *name)
{
	static const char *const ids[] = { "message-id", "in-reply-to", "references",
					   "resent-message-id", "content-id", NULL };
	for (int i = 0; ids[i]; i++)
		if (ascii_strcasecmp(name, ids[i]) == 0)
			return 1;
	return 0;
}

static int header_name_ok(const char *n)
{
	if (!*n)
		return 0;
	for (; *n; n++)
		if (*n <= 32 || *n >= 127 || *n == ':')
			return 0;
	return 1;
}

/* the From domain and a DKIM/SPF domain are "aligned" for the report's fields:
 * equal, or (relaxed) the same Organizational Domain as far as the outcome
 * knows it. XXX: a psd=n record between them is not seen here. */
static int report_aligned(const struct dmarc_outcome *o, const char *dom, char mode)
{
	if (!dom || !o->from_domain)
		return 0;
	char d[DMARC_NAME_MAX + 1];
	if (dmarc_domain_normalize(dom, d, sizeof d) < 0)
		return 0;
	if (strcmp(d, o->from_domain) == 0)
		return 1;
	if (mode == 's' || !o->org_domain)
		return 0;
	size_t ol = strlen(o->org_domain), dl = strlen(d);
	return strcmp(d, o->org_domain) == 0 ||
	       (dl > ol && d[dl - ol - 1] == '.' && strcmp(d + dl - ol, o->org_domain) == 0);
}

static void header_unfolded(const char *v, char *out, size_t outlen, int *ascii_out)
{
	size_t n = 0;
	int ascii = 1;
	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v && n + 1 < outlen; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '\r' || c == '\n')
			continue;
		if (c >= 0x80 || (c < 32 && c != '\t'))
			ascii = 0;
		out[n++] = c == '\t' ? ' ' : (char)c;
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = 0;
	*ascii_out = ascii;
}

/*
 * DNS zone-file quoting of a TXT string (RFC 1035 5.1). A long record is
 * folded at its own spaces ("\n " unfolds back to " ") so that no line
 * gets near the 998-byte limit.
 */
static void add_dqs(struct sbuf *b, const char *s, size_t col)
{
	sbuf_addc(b, '"');
	col++;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == ' ' && col > 72) {
			sbuf_adds(b, "\n ");
			col = 1;
		} else if (c == '"' || c == '\\') {
			sbuf_printf(b, "\\%c", c);
			col += 2;
		} else if (c < 32 || c >= 127) {
			sbuf_printf(b, "\\%03u", c);
			col += 4;
		} else {
			sbuf_addc(b, (char)c);
			col++;
		}
	}
	sbuf_addc(b, '"');
}

static void feedback_part(struct sbuf *f, const struct dmarc_failrep_input *in,
			  const struct dmarc_failrep_opts *opts, unsigned fo_hit, const char *authserv,
			  const char *arrival)
{
	const struct dmarc_outcome *o = in->outcome;

	sbuf_adds(f, "Feedback-Type: auth-failure\n");
	sbuf_printf(f, "User-Agent: %s\n",
		    opts->user_agent ? opts->user_agent : "sluice-dmarc/" SLUICE_VERSION);
	sbuf_adds(f, "Version: 1\n");
	if (in->qid && *in->qid) {
		sbuf_adds(f, "Original-Envelope-Id: ");
		add_clean(f, in->qid);
		sbuf_addc(f, '\n');
	}
	if (in->mail_from) {
		sbuf_adds(f, "Original-Mail-From: <");
		add_clean(f, in->mail_from);
		sbuf_adds(f, ">\n");
	}
	for (size_t i = 0; i < in->nrcpts && i < DMARC_FAILREP_MAX_RCPT; i++) {
		sbuf_adds(f, "Original-Rcpt-To: <");
		add_clean(f, in->rcpts[i]);
		sbuf_adds(f, ">\n");
	}
	sbuf_printf(f, "Arrival-Date: %s\n", arrival);
	if (in->client_ip && *in->client_ip) {
		sbuf_adds(f, "Source-IP: ");
		add_clean(f, in->client_ip);
		sbuf_addc(f, '\n');
	}
	if (o->from_domain)
		sbuf_printf(f, "Reported-Domain: %s\n", o->from_domain);
	sbuf_adds(f, "Authentication-Results:");
	if (in->auth_results) {
		if (in->auth_results[0] != ' ' && in->auth_results[0] != '\t')
			sbuf_addc(f, ' ');
		add_value(f, in->auth_results);
	} else {
		sbuf_printf(f, " %s; dmarc=%s header.from=%s", authserv,
			    dmarc_result_name(o->result), o->from_domain ? o->from_domain : "");
	}
	sbuf_addc(f, '\n');
	const char *af = (fo_hit & (DMARC_FAILREP_FO_0 | DMARC_FAILREP_FO_1)) ? "dmarc" :
			 (fo_hit & DMARC_FAILREP_FO_D) ? "signature" :
			 (fo_hit & DMARC_FAILREP_FO_S) ? "spf" : "dmarc";
	sbuf_printf(f, "Auth-Failure: %s\n", af);
	/* RFC 9991 4: the mechanisms that failed to authenticate an aligned identity */
	if (o->dkim_aligned && o->spf_aligned)
		sbuf_adds(f, "Identity-Alignment: none\n");
	else if (!o->dkim_aligned && !o->spf_aligned)
		sbuf_adds(f, "Identity-Alignment: dkim, spf\n");
	else
		sbuf_printf(f, "Identity-Alignment: %s\n", o->dkim_aligned ? "spf" : "dkim");
	sbuf_printf(f, "Delivery-Result: %s\n", dmarc_failrep_delivery_name(in->delivery));
	/* DKIM: the failed signature of an aligned identifier, else the first failed one */
	const struct dmarc_auth *dk = NULL;
	for (size_t i = 0; i < in->ndkim && !dk; i++)
		if (in->dkim[i].result != DMARC_AUTH_PASS && in->dkim[i].domain &&
		    report_aligned(o, in->dkim[i].domain, o->dkim_mode))
			dk = &in->dkim[i];
	for (size_t i = 0; i < in->ndkim && !dk && (fo_hit & DMARC_FAILREP_FO_D); i++)
		if (auth_failed(in->dkim[i].result) && in->dkim[i].domain)
			dk = &in->dkim[i];
	char dom[DMARC_NAME_MAX + 1];
	if (dk && dmarc_domain_normalize(dk->domain, dom, sizeof dom) == 0) {
		sbuf_printf(f, "DKIM-Domain: %s\n", dom);
		sbuf_printf(f, "DKIM-Identity: @%s\n", dom);
		if (dk->selector && dmarc_domain_normalize(dk->selector, dom, sizeof dom) == 0)
			sbuf_printf(f, "DKIM-Selector: %s\n", dom);
	}
	/* SPF-DNS for an aligned SPF identifier that did not pass */
	for (size_t i = 0; i < in->nspf && in->spf_record; i++) {
		const struct dmarc_auth *s = &in->spf[i];
		if (s->scope != DMARC_SCOPE_MFROM || s->result == DMARC_AUTH_PASS || !s->domain ||
		    !report_aligned(o, s->domain, o->spf_mode) ||
		    dmarc_domain_normalize(s->domain, dom, sizeof dom) < 0)
			continue;
		size_t l0 = f->len;
		sbuf_printf(f, "SPF-DNS: txt : %s : ", dom);
		add_dqs(f, in->spf_record, f->len - l0);
		sbuf_addc(f, '\n');
		break;
	}
}

static void headers_part(struct sbuf *h, const struct dmarc_failrep_input *in, int redact,
			 size_t cap)
{
	for (size_t i = 0; i < in->nheaders; i++) {
		const struct dmarc_failrep_header *x = &in->headers[i];
		if (!x->name || !x->value || !header_name_ok(x->name))
			continue;
		struct sbuf one;
		sbuf_init(&one);
		sbuf_adds(&one, x->name);
		sbuf_addc(&one, ':');
		add_value(&one, x->value);
		while (one.len > 0 && one.buf[one.len - 1] == '\n')
			one.buf[--one.len] = 0;
		sbuf_addc(&one, '\n');
		if (h->len + one.len > cap) {
			sbuf_free(&one);
			break;	/* XXX: later fields are dropped, the report says so */
		}
		if (redact && !msgid_field(x->name))
			redact_into(h, one.buf, one.len);
		else
			sbuf_add(h, one.buf, one.len);
		sbuf_free(&one);
	}
}

static int has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

char *dmarc_failrep_build(const struct dmarc_failrep_input *in,
			  const struct dmarc_failrep_opts *opts, const char *to, unsigned fo_hit,
			  size_t *len_out)
{
	const struct dmarc_outcome *o = in->outcome;
	const char *fromdom = o->from_domain ? o->from_domain : "unknown";
	const char *host = opts->hostname && *opts->hostname ? opts->hostname : "localhost";
	time_t now = opts->now ? opts->now : time(NULL);
	int redact = opts->redact;
	size_t cap = opts->max_header_bytes ? opts->max_header_bytes : DMARC_FAILREP_MAX_HEADER_BYTES;
	char date[64], arrival[64];
	unsigned char rnd[12];

	rfc5322_date(now, date, sizeof date);
	rfc5322_date(in->arrival ? in->arrival : now, arrival, sizeof arrival);
	char ip[64] = "";
	for (size_t i = 0, k = 0; in->client_ip && in->client_ip[i] && k + 1 < sizeof ip; i++)
		if (strchr("0123456789abcdefABCDEF.:", in->client_ip[i]))
			ip[k++] = in->client_ip[i];
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		panic("dmarc_failrep: RAND_bytes failed");
	char rhex[2 * sizeof rnd + 1];
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(rhex + 2 * i, 3, "%02x", rnd[i]);

	/* the parts */
	struct sbuf text, fb, hdrs, tmp;
	sbuf_init(&text);
	sbuf_init(&fb);
	sbuf_init(&hdrs);
	sbuf_init(&tmp);
	sbuf_printf(&text,
		    "This is a DMARC failure report (RFC 9991) for a message with the\n"
		    "From domain %s, received%s%s on %s.\n\n"
		    "DMARC result: %s (policy domain %s, p=%s, disposition %s)\n"
		    "Aligned SPF pass: %s. Aligned DKIM pass: %s.\n\n"
		    "The original header fields follow%s; the body is not included.\n",
		    fromdom, ip[0] ? " from IP " : "", ip, arrival,
		    dmarc_result_name(o->result), o->policy_domain ? o->policy_domain : "-",
		    dmarc_policy_name(o->policy), dmarc_disposition_name(o->disposition),
		    o->spf_aligned ? "yes" : "no", o->dkim_aligned ? "yes" : "no",
		    redact ? " with the local-parts of addresses replaced by keyed hashes" : "");
	feedback_part(&tmp, in, opts, fo_hit, host, arrival);
	if (redact)
		redact_into(&fb, tmp.buf, tmp.len);
	else
		sbuf_add(&fb, tmp.buf, tmp.len);
	headers_part(&hdrs, in, redact, cap);

	/* Subject: "FW: " + original (RFC 9991 appendix A), when plain ASCII */
	char subj[256] = "";
	int ascii = 0;
	for (size_t i = 0; i < in->nheaders; i++)
		if (in->headers[i].name && in->headers[i].value &&
		    ascii_strcasecmp(in->headers[i].name, "Subject") == 0) {
			header_unfolded(in->headers[i].value, subj, sizeof subj, &ascii);
			break;
		}
	sbuf_reset(&tmp);
	if (ascii && subj[0])
		sbuf_printf(&tmp, "FW: %s", subj);
	else
		sbuf_printf(&tmp, "FW: DMARC failure report for %s", fromdom);
	char *subject = redact_dup(tmp.buf, redact);

	/* a boundary that appears nowhere inside */
	char boundary[64];
	for (unsigned k = 0;; k++) {
		snprintf(boundary, sizeof boundary, "=_sluice_failrep_%s_%u", rhex, k);
		if (!strstr(text.buf, boundary) && !strstr(fb.buf, boundary) &&
		    (!hdrs.buf || !strstr(hdrs.buf, boundary)) && !strstr(subject, boundary))
			break;
	}

	struct sbuf m;
	sbuf_init(&m);
	sbuf_printf(&m, "From: %s\n", opts->reporter);
	sbuf_printf(&m, "To: %s\n", to);
	sbuf_printf(&m, "Subject: %s\n", subject);
	sbuf_printf(&m, "Date: %s\n", date);
	sbuf_printf(&m, "Message-ID: <%s.%lld.failrep@%s>\n", rhex, (long long)now, host);
	sbuf_adds(&m, "MIME-Version: 1.0\n");
	sbuf_adds(&m, "Auto-Submitted: auto-generated\n");
	sbuf_printf(&m, "Content-Type: multipart/report; report-type=feedback-report;\n"
			"\tboundary=\"%s\"\n\n", boundary);
	sbuf_adds(&m, "This is a MIME-formatted message.\n\n");
	sbuf_printf(&m, "--%s\nContent-Type: text/plain; charset=us-ascii\n"
			"Content-Disposition: inline\nContent-Transfer-Encoding: 7bit\n\n", boundary);
	sbuf_add(&m, text.buf, text.len);
	sbuf_printf(&m, "\n--%s\nContent-Type: message/feedback-report\n"
			"Content-Transfer-Encoding: %s\n\n", boundary,
		    has_8bit(fb.buf, fb.len) ? "8bit" : "7bit");
	sbuf_add(&m, fb.buf, fb.len);
	sbuf_printf(&m, "\n--%s\nContent-Type: text/rfc822-headers%s\n"
			"Content-Transfer-Encoding: %s\n\n", boundary,
		    has_8bit(hdrs.buf, hdrs.len) ? "; charset=utf-8" : "",
		    has_8bit(hdrs.buf, hdrs.len) ? "8bit" : "7bit");
	if (hdrs.len)
		sbuf_add(&m, hdrs.buf, hdrs.len);
	sbuf_printf(&m, "\n--%s--\n", boundary);

	free(subject);
	sbuf_free(&text);
	sbuf_free(&fb);
	sbuf_free(&hdrs);
	sbuf_free(&tmp);
	if (len_out)
		*len_out = m.len;
	return sbuf_steal(&m);
}

/* ASCII case-insensitive substring */
static const char *ci_strstr(const char *h, const char *n)
{
	size_t nl = strlen(n);
	for (; *h; h++)
		if (ascii_strncasecmp(h, n, nl) == 0)
			return h;
	return NULL;
}

int dmarc_failrep_is_auto(const struct dmarc_failrep_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!h[i].name || !h[i].value)
			continue;
		if (ascii_strcasecmp(h[i].name, "Auto-Submitted") == 0) {
			const char *v = h[i].value;
			while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
				v++;
			size_t k = strcspn(v, " \t\r\n;(");
			if (!(k == 2 && ascii_strncasecmp(v, "no", 2) == 0))
				return 1;
		}
		if (ascii_strcasecmp(h[i].name, "Content-Type") == 0 &&
		    ci_strstr(h[i].value, "multipart/report") &&
		    ci_strstr(h[i].value, "feedback-report"))
			return 1;
	}
	return 0;
}

/* ---- 5. sending ---- */

int dmarc_failrep_send_exec(void *arg, const char *from, const char *rcpt, const char *msg,
			    size_t len, char **err_out)
{
	const struct dmarc_failrep_sendmail *sm = arg;
	return sendmail_run(sm->path, sm->conf_path, from, rcpt, msg, len, sm->timeout_ms, err_out) == 0
		       ? 0
		       : -1;
}

/* ---- all of it ---- */

const char *dmarc_failrep_status_name(enum dmarc_failrep_status s)
{
	switch (s) {
	case DMARC_FAILREP_SENT: return "sent";
	case DMARC_FAILREP_NOT_VERIFIED: return "not_verified";
	case DMARC_FAILREP_DNS_TEMPERROR: return "temperror";
	case DMARC_FAILREP_RATE_LIMITED: return "rate_limited";
	case DMARC_FAILREP_TOO_BIG: return "too_big";
	case DMARC_FAILREP_SEND_FAILED: return "send_failed";
	}
	return "unknown";
}

void dmarc_failrep_result_clear(struct dmarc_failrep_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->dest[i].err);
	memset(r, 0, sizeof *r);
}

/* the SPF record of the first MAIL FROM SPF domain that is reported in SPF-DNS */
static char *spf_record_lookup(const struct dmarc_failrep_input *in,
			       dmarc_failrep_lookup_fn lookup, void *arg)
{
	const struct dmarc_outcome *o = in->outcome;
	for (size_t i = 0; i < in->nspf; i++) {
		const struct dmarc_auth *s = &in->spf[i];
		if (s->scope != DMARC_SCOPE_MFROM || s->result == DMARC_AUTH_PASS || !s->domain ||
		    !report_aligned(o, s->domain, o->spf_mode))
			continue;
		char dom[DMARC_NAME_MAX + 1];
		if (dmarc_domain_normalize(s->domain, dom, sizeof dom) < 0)
			return NULL;
		struct dns_answer *a = lookup(arg, dom, DNS_T_TXT);
		char *rec = NULL;
		for (size_t k = 0; a->status == DNS_OK && k < a->n && !rec; k++) {
			const struct dns_rr *rr = &a->rr[k];
			if (rr->type == DNS_T_TXT && rr->u.txt.len >= 6 && rr->u.txt.len < 4096 &&
			    ascii_strncasecmp(rr->u.txt.data, "v=spf1", 6) == 0 &&
			    (rr->u.txt.len == 6 || rr->u.txt.data[6] == ' ') &&
			    !memchr(rr->u.txt.data, 0, rr->u.txt.len))
				rec = xstrndup(rr->u.txt.data, rr->u.txt.len);
		}
		dns_answer_free(&a);
		return rec;
	}
	return NULL;
}

unsigned dmarc_failrep_run(const struct dmarc_failrep_input *in,
			   const struct dmarc_failrep_opts *opts, struct dmarc_failrep_rate *rate,
			   enum dmarc_mode mode, const void *psl, dmarc_failrep_lookup_fn lookup,
			   void *lookup_arg, dmarc_failrep_send_fn send, void *send_arg,
			   struct dmarc_failrep_result *res)
{
	memset(res, 0, sizeof *res);
	if (!opts->reporter || !send)
		panic("dmarc_failrep_run: no reporter address or sender");
	const struct dmarc_outcome *o = in->outcome;
	unsigned hit = dmarc_failrep_due(o, in->spf, in->nspf, in->dkim, in->ndkim);
	if (!hit)
		return 0;
	res->fo_hit = hit;
	if (dmarc_failrep_is_auto(in->headers, in->nheaders)) {
		res->suppressed = 1;
		return 0;
	}

	struct dmarc_failrep_dest d[DMARC_FAILREP_MAX_DEST];
	size_t n = dmarc_failrep_ruf_parse(o->record->ruf, d, DMARC_FAILREP_MAX_DEST, &res->nskipped);
	/* an address already at its limit costs no DNS (the flood case) */
	int limited[DMARC_FAILREP_MAX_DEST] = { 0 };
	struct dmarc_failrep_dest v[DMARC_FAILREP_MAX_DEST];
	size_t map[DMARC_FAILREP_MAX_DEST], nv = 0;
	for (size_t i = 0; i < n; i++) {
		if (rate && !rate_peek(rate, d[i].addr)) {
			limited[i] = 1;
			continue;
		}
		v[nv] = d[i];
		map[nv++] = i;
	}
	dmarc_failrep_verify(v, nv, o->policy_domain, o->org_domain, mode, psl, lookup, lookup_arg);
	for (size_t k = 0; k < nv; k++)
		d[map[k]] = v[k];

	struct dmarc_failrep_input in2 = *in;
	char *spf_rec = NULL;
	for (size_t i = 0; i < n && !in2.spf_record; i++)
		if (d[i].verdict == DMARC_FAILREP_INTERNAL || d[i].verdict == DMARC_FAILREP_VERIFIED) {
			spf_rec = spf_record_lookup(in, lookup, lookup_arg);
			in2.spf_record = spf_rec;
			break;
		}

	for (size_t i = 0; i < n; i++) {
		res->dest[i].dest = d[i];
		res->n = i + 1;
		if (limited[i]) {
			res->dest[i].status = DMARC_FAILREP_RATE_LIMITED;
			continue;
		}
		if (d[i].verdict == DMARC_FAILREP_TEMPERROR) {
			res->dest[i].status = DMARC_FAILREP_DNS_TEMPERROR;
			continue;
		}
		if (d[i].verdict != DMARC_FAILREP_INTERNAL && d[i].verdict != DMARC_FAILREP_VERIFIED) {
			res->dest[i].status = DMARC_FAILREP_NOT_VERIFIED;
			continue;
		}
		size_t len = 0;
		char *msg = dmarc_failrep_build(&in2, opts, d[i].addr, hit, &len);
		res->dest[i].bytes = len;
		if (d[i].max_bytes && len > d[i].max_bytes) {
			res->dest[i].status = DMARC_FAILREP_TOO_BIG;
		} else if (rate && !dmarc_failrep_rate_take(rate, d[i].addr)) {
			res->dest[i].status = DMARC_FAILREP_RATE_LIMITED;
		} else if (send(send_arg, opts->reporter, d[i].addr, msg, len, &res->dest[i].err) != 0) {
			res->dest[i].status = DMARC_FAILREP_SEND_FAILED;
			if (!res->dest[i].err)
				res->dest[i].err = xstrdup("failed");
		} else {
			res->dest[i].status = DMARC_FAILREP_SENT;
		}
		free(msg);
	}
	free(spf_rec);
	return hit;
}
