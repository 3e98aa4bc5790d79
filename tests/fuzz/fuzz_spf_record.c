/*
 * fuzz_spf_record: proto/spf record parser, macro expander and whole checks
 * against fuzzed DNS data.
 * First byte: mode (low 2 bits) and flags; the rest is the data.
 *   0: spf_record_parse on the data
 *   1: spf_macro_check / spf_domain_spec_check / spf_macro_expand /
 *      spf_target_name on the data
 *   2, 3: a whole check of example.com; the data, split at '\n', are the TXT
 *      records served (picked by a hash of the name); A, AAAA, MX and PTR
 *      answers and failures are derived from the names asked.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/spf.h"

#define MAX_CHUNKS 16

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
	struct spf_record rec;
	const char *err;
	char problem[32];

	spf_record_parse((const char *)d, n, NULL, &rec, &err, problem, sizeof(problem));
	spf_record_free(&rec);
}

static void fuzz_macro(const uint8_t *d, size_t n, unsigned flags)
{
	static const struct spf_macro_ctx m = {
		.s = "Joe.Bloggs-x+y@Mail.Example.COM", .l = "Joe.Bloggs-x+y", .o = "Mail.Example.COM",
		.d = "example.com", .i = "2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1",
		.c = "2001:db8::1", .v = "ip6", .p = NULL, .h = "helo.example.org", .r = NULL, .t = 1,
	};
	const char *s = (const char *)d, *err;
	struct sbuf b;

	spf_macro_check(s, n, flags & 1, &err);
	spf_domain_spec_check(s, n, &err);
	spf_macro_uses_p(s, n);
	sbuf_init(&b);
	if (spf_macro_expand(&m, s, n, flags & 1, &b, &err) == 0)
		spf_target_name(&b);
	sbuf_free(&b);
}

/* A fabricated answer for q; strings point into static buffers or the input. */
static void fake_answer(const struct fz *z, const struct spf_query *q, struct dns_answer *a,
			struct dns_rr *rr, char names[][40])
{
	unsigned h = name_hash(q->name) ^ (unsigned)q->type;

	memset(a, 0, sizeof(*a));
	a->qname = q->name;
	a->qtype = q->type;
	a->rr = rr;
	switch (h % 11) {
	case 0: a->status = DNS_NXDOMAIN; return;
	case 1: a->status = DNS_NODATA; return;
	case 2: a->status = (z->flags & 4) ? DNS_TIMEOUT : DNS_NXDOMAIN; return;
	default: a->status = DNS_OK; break;
	}
	size_t cnt = 1 + (h >> 8) % 13;
	for (size_t i = 0; i < cnt; i++) {
		rr[i].type = q->type;
		switch (q->type) {
		case DNS_T_TXT: {
			size_t k = (h + i) % (z->n ? z->n : 1);
			rr[i].u.txt.data = (char *)(z->n ? z->chunk[k] : "v=spf1 -all");
			rr[i].u.txt.len = z->n ? z->len[k] : 11;
			rr[i].u.txt.nstrings = 1;
			if ((h >> 4) % 3)
				cnt = 1;	/* usually one record */
			break;
		}
		case DNS_T_A:
			memcpy(&rr[i].u.a, (uint8_t[4]){ 192, 0, 2, (uint8_t)(h + i) }, 4);
			break;
		case DNS_T_AAAA:
			memset(&rr[i].u.aaaa, 0, 16);
			rr[i].u.aaaa.s6_addr[0] = 0x20, rr[i].u.aaaa.s6_addr[1] = 0x01;
			rr[i].u.aaaa.s6_addr[15] = (uint8_t)(h + i);
			break;
		default:	/* MX, PTR: names under example.com, some bad */
			snprintf(names[i], 40, "%s%u.example.com", i % 5 == 4 ? "" : "h", (unsigned)((h + i) % 7));
			rr[i].u.mx.host = names[i];
			rr[i].u.name = names[i];
			break;
		}
	}
	a->n = cnt;
}

static void fuzz_check(const uint8_t *d, size_t n, unsigned flags)
{
	struct fz z = { .flags = flags };
	struct spf_request req = {
		.ip = (flags & 8) ? "2001:db8::1" : ((flags & 16) ? "::ffff:192.0.2.3" : "192.0.2.3"),
		.sender = "joe@example.com", .helo = "helo.example.org", .now_s = 1,
	};
	struct spf_query q, pend[64];
	struct dns_rr rr[16];
	char names[16][40];
	size_t np = 0;

	for (size_t st = 0; st <= n && z.n < MAX_CHUNKS;) {
		const uint8_t *nl = memchr(d + st, '\n', n - st);
		size_t end = nl ? (size_t)(nl - d) : n;
		z.chunk[z.n] = (const char *)d + st;
		z.len[z.n++] = end - st;
		st = end + 1;
	}
	struct spf_check *c = spf_check_new(&req, NULL);
	for (int guard = 0;; guard++) {
		if (guard > 100000)
			abort();	/* a check that never ends is a bug */
		int r = spf_check_next(c, &q);
		if (r == SPF_DONE)
			break;
		if (r == SPF_NEED_DNS) {
			if (np == 64)
				abort();	/* more questions at once than any term asks */
			pend[np++] = q;
			if (!(flags & 32))
				continue;
		}
		if (np == 0)
			abort();	/* waiting with nothing outstanding */
		struct dns_answer a;
		struct spf_query *p = (flags & 64) ? &pend[0] : &pend[np - 1];
		fake_answer(&z, p, &a, rr, names);
		spf_check_answer(c, p->id, &a);
		*p = pend[--np];
	}
	spf_result_name(spf_check_result(c));
	spf_check_reason(c);
	spf_check_explanation(c);
	spf_check_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0] >> 2;
	switch (data[0] & 3) {
	case 0: fuzz_record(data + 1, size - 1); break;
	case 1: fuzz_macro(data + 1, size - 1, flags); break;
	default: fuzz_check(data + 1, size - 1, flags); break;
	}
	return 0;
}
