/*
 * fuzz_dkim_hdr: sluice-dkim's own readers of untrusted text: the
 * authserv-id of Authentication-Results, the From address, OpenDKIM
 * KeyTable/SigningTable lines and their values, glob patterns, and the
 * A-R writer. The modules are compiled in (they live in milters/dkim/, not
 * libsluice.a) and use neither libmilter nor libopendkim.
 */
#include "milters/dkim/dkim_hdr.c"
#include "milters/dkim/dkim_keys.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[256], local[256];
	const char *v = (const char *)data;
	(void)authres_authserv_id(v, size, out, sizeof(out));
	if (dkim_hdr_from_domain(v, size, out, sizeof(out), local, sizeof(local)) == 0) {
		struct dkim_hdr_sig s = { .res = DKIM_RES_PASS, .d = out, .i = local, .b = local };
		char *ar = dkim_hdr_ar_format(out, &s, 1, 0);
		free(ar);
	}
	struct dkim_tab_line *lines;
	char *err = NULL;
	long n = dkim_keys_parse_table(v, size, "fuzz", &lines, &err);
	if (n >= 0) {
		for (long i = 0; i < n; i++) {
			char *d, *s, *k;
			const char *why;
			if (dkim_keys_parse_keyvalue(lines[i].value, &d, &s, &k, &why) == 0) {
				free(d);
				free(s);
				free(k);
			}
			(void)dkim_keys_glob(lines[i].key, lines[i].value);
		}
		dkim_keys_lines_free(lines, (size_t)n);
	} else {
		free(err);
	}
	return 0;
}
