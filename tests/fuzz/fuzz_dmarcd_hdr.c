/*
 * fuzz_dmarcd_hdr: sluice-dmarc's own readers of untrusted header text
 * (DKIM-Signature tags, Received-SPF result and key-value pairs, address
 * domains). The module is compiled in (it lives in milters/dmarc/, not
 * libsluice.a) and uses neither libmilter nor libopendkim.
 */
#include "milters/dmarc/dmarc_hdr.c"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *v = malloc(size + 1);
	memcpy(v, data, size);
	v[size] = 0;
	char out[64], tiny[2];
	static const char *const tags[] = { "d", "b", "v", "" };
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		(void)dmarc_hdr_tag(v, tags[i], out, sizeof(out));
		(void)dmarc_hdr_tag(v, tags[i], tiny, sizeof(tiny));
	}
	dmarc_hdr_rspf_result(v, out, sizeof(out));
	dmarc_hdr_rspf_result(v, tiny, sizeof(tiny));
	static const char *const keys[] = { "identity", "envelope-from", "client-ip", "" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (dmarc_hdr_rspf_field(v, keys[i], out, sizeof(out)) == 0)
			dmarc_hdr_strip_angle(out);
		(void)dmarc_hdr_rspf_field(v, keys[i], tiny, sizeof(tiny));
	}
	(void)dmarc_hdr_addr_domain(v);
	free(v);
	return 0;
}
