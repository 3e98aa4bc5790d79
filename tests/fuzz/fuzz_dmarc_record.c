/*
 * fuzz_dmarc_record: proto/dmarc record parser, and whole checks driven by
 * fuzzed DNS answers.
 * First byte: mode (low 2 bits) and flags; the rest is the data.
 *   0: dmarc_record_parse / dmarc_record_is_dmarc / dmarc_record_fallback
 *      on the data (an exact-size heap copy, so ASan sees overreads)
 *   1: the same, then the data up to the first '\n' and the rest as two
 *      domain names: dmarc_domain_normalize, dmarc_org_domain_psl and
 *      dmarc_aligned_psl (libpsl's built-in list)
 *   2, 3: a whole check (bit 2: RFC 7489 mode). The data, split at '\n':
 *         chunk 0 is the From domain, chunk 1 the SPF domain, chunk 2 the
 *         DKIM domain; the rest are TXT records served at the names asked
 *         (picked by a hash of the name); the hash also picks NXDOMAIN,
 *         NODATA, a temporary failure or several records. Questions are
 *         answered in an order set by the flags.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/dmarc.h"

#define MAX_CHUNKS 24

struct fz {
	const char *chunk[MAX_CHUNKS];
	size_t len[MAX_CHUNKS];
	size_t n;
	unsigned flags;
};

static unsigned name_hash(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)(*s | 0x20)) * 16777619u;
	return h;
}

static void fuzz_record(const uint8_t *d, size_t n)
{
	struct dmarc_record r;
	const char *err;
	char *cp = xmalloc(n ? n : 1);

	memcpy(cp, d, n);
	(void)dmarc_record_is_dmarc(cp, n);
	(void)dmarc_record_parse(cp, n, &r, &err);
	(void)dmarc_record_fallback(&r, DMARC_MODE_DMARCBIS);
	(void)dmarc_record_fallback(&r, DMARC_MODE_RFC7489);
	dmarc_record_free(&r);
	free(cp);
}

static void fuzz_names(const uint8_t *d, size_t n)
{
	const char *nl = memchr(d, '\n', n);
	size_t la = nl ? (size_t)(nl - (const char *)d) : n;
	char *a = xstrndup((const char *)d, la);
	char *b = nl ? xstrndup(nl + 1, n - la - 1) : xstrdup("example.com");
	char out[DMARC_NAME_MAX + 1];

	(void)dmarc_domain_normalize(a, out, sizeof(out));
	(void)dmarc_domain_normalize(a, out, 3);
	(void)dmarc_org_domain_psl(NULL, a, out, sizeof(out));
	(void)dmarc_aligned_psl(NULL, a, b, 0);
	(void)dmarc_aligned_psl(NULL, a, b, 1);
	free(a);
	free(b);
}

static char *chunk_str(const struct fz *f, size_t i, const char *dflt)
{
	if (i >= f->n)
		return xstrdup(dflt);
	char *s = xmalloc(f->len[i] + 1);	/* NULs inside stay: len counts */
	memcpy(s, f->chunk[i], f->len[i]);
	s[f->len[i]] = 0;
	return s;
}

static void serve(struct dmarc_check *c, const struct fz *f, const struct dmarc_query *q)
{
	struct dns_answer a;
	struct dns_rr rr[3];
	unsigned h = name_hash(q->name) ^ f->flags;
	char *bufs[3] = { NULL, NULL, NULL };

	memset(&a, 0, sizeof(a));
	memset(rr, 0, sizeof(rr));
	a.qname = q->name;
	a.qtype = q->type;
	switch (h % 8) {
	case 0: a.status = DNS_NXDOMAIN; break;
	case 1: a.status = DNS_NODATA; break;
	case 2: a.status = (h >> 8) & 1 ? DNS_SERVFAIL : DNS_TIMEOUT; break;
	default: a.status = DNS_OK; break;
	}
	if (a.status == DNS_OK) {
		size_t nrec = (h >> 4) % 7 == 0 ? 2 : 1;
		for (size_t i = 0; i < nrec; i++) {
			rr[i].type = q->type;
			if (q->type == DNS_T_TXT) {
				size_t k = f->n > 3 ? 3 + (h + i) % (f->n - 3) : 0;
				bufs[i] = chunk_str(f, k, "v=DMARC1; p=reject");
				rr[i].u.txt.data = bufs[i];
				rr[i].u.txt.len = k < f->n ? f->len[k] : strlen(bufs[i]);
				rr[i].u.txt.nstrings = 1;
			}
			a.n++;
		}
		a.rr = rr;
	}
	dmarc_check_answer(c, q->id, &a);
	for (int i = 0; i < 3; i++)
		free(bufs[i]);
}

static void fuzz_check(const struct fz *f, int rfc7489)
{
	char *from = chunk_str(f, 0, "example.com");
	char *spfd = chunk_str(f, 1, "example.com");
	char *dkimd = chunk_str(f, 2, "mail.example.com");
	struct dmarc_auth spf = { spfd, NULL, DMARC_AUTH_PASS, DMARC_SCOPE_MFROM };
	struct dmarc_auth dkim[2] = { { dkimd, "s", DMARC_AUTH_PASS, 0 },
				      { "x.example.com", "t", DMARC_AUTH_PASS, 0 } };
	struct dmarc_request req = {
		.from_domain = from, .mode = rfc7489 ? DMARC_MODE_RFC7489 : DMARC_MODE_DMARCBIS,
		.spf = &spf, .nspf = 1, .dkim = dkim, .ndkim = 2, .pct_roll = f->flags,
	};
	struct dmarc_check *c = dmarc_check_new(&req);
	struct dmarc_query pend[8];
	size_t np = 0;

	for (int guard = 0; guard < 1000; guard++) {
		struct dmarc_query q;
		int st = dmarc_check_next(c, &q);
		if (st == DMARC_DONE)
			break;
		if (st == DMARC_NEED_DNS && np < 8) {
			pend[np++] = q;
			continue;
		}
		if (st == DMARC_NEED_DNS) {	/* more than 8 at once: a bug */
			abort();
		}
		for (size_t i = 0; i < np; i++)
			serve(c, f, &pend[(f->flags & 8) ? np - 1 - i : i]);
		np = 0;
	}
	if (dmarc_check_next(c, &pend[0]) != DMARC_DONE)
		abort();
	const struct dmarc_outcome *o = dmarc_check_outcome(c);
	if (o->dns_queries > DMARC_MAX_QUERIES || !o->reason)
		abort();
	if (o->result != DMARC_RESULT_FAIL && o->disposition != DMARC_DISP_NONE)
		abort();
	char buf[64];
	snprintf(buf, sizeof(buf), "%s%s%s%s", o->policy_domain ? o->policy_domain : "",
		 o->org_domain ? o->org_domain : "", o->spf_domain ? o->spf_domain : "",
		 o->record ? o->record->record_text : "");
	dmarc_check_free(&c);
	free(from);
	free(spfd);
	free(dkimd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;

	if (size < 1)
		return 0;
	f.flags = data[0];
	data++;
	size--;
	if ((f.flags & 3) < 2) {
		fuzz_record(data, size);
		if (f.flags & 1)
			fuzz_names(data, size);
		return 0;
	}
	f.n = 0;
	const char *p = (const char *)data, *end = p + size;
	while (p <= end && f.n < MAX_CHUNKS) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		f.chunk[f.n] = p;
		f.len[f.n] = (size_t)((nl ? nl : end) - p);
		f.n++;
		if (!nl)
			break;
		p = nl + 1;
	}
	fuzz_check(&f, (f.flags & 4) != 0);
	return 0;
}
