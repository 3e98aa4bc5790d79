/*
 * fuzz_dns_answer: dns_answer_decode() on arbitrary bytes.
 * The first input byte picks the asked type and whether the question name
 * comes from the caller or from the packet; the rest is the packet.
 * Every decoded record is read in full so ASan sees bad lengths.
 */
#include "proto/dns.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static const enum dns_type types[] = {
	DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TXT, DNS_T_PTR, DNS_T_CNAME, DNS_T_NS, DNS_T_SOA,
};

static volatile unsigned sink;

static void touch(const struct dns_answer *a)
{
	sink += (unsigned)strlen(a->qname) + a->ttl + (unsigned)a->status;
	for (size_t i = 0; i < a->n; i++) {
		const struct dns_rr *rr = &a->rr[i];
		switch (rr->type) {
		case DNS_T_MX:
			sink += rr->u.mx.pref + (unsigned)strlen(rr->u.mx.host);
			break;
		case DNS_T_TXT:
			for (size_t k = 0; k <= rr->u.txt.len; k++)	/* data[len] == 0 */
				sink += (unsigned char)rr->u.txt.data[k];
			sink += (unsigned)rr->u.txt.nstrings;
			break;
		case DNS_T_PTR:
		case DNS_T_CNAME:
		case DNS_T_NS:
			sink += (unsigned)strlen(rr->u.name);
			break;
		default:
			sink += rr->ttl;
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum dns_type t = types[data[0] % (sizeof(types) / sizeof(types[0]))];
	const char *qname = (data[0] & 0x80) ? NULL : "a.example";
	struct dns_answer *a = dns_answer_decode(data + 1, size - 1, qname, t);
	if (!a)
		__builtin_trap();
	if (a->n > DNS_MAX_RR || (a->n && a->status != DNS_OK))
		__builtin_trap();
	touch(a);
	dns_answer_free(&a);
	return 0;
}
