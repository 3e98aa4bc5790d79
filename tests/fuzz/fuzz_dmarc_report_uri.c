/*
 * fuzz_dmarc_report_uri: proto/dmarc_report's mailto: URI list parser
 * (dmarc_report_uri_list / dmarc_report_uri_parse) and the verification's
 * override reading. First byte: bit 0 picks the rules (ruf=: NULL; rua=-like:
 * a host check and "!0" = none), bits 1-3 the max (0..7); the rest is the
 * list (an exact-size heap copy, so ASan sees overreads). Checks what the
 * callers rely on: at most max destinations, each a local@host address of
 * at most DMARC_REPORT_ADDR_MAX bytes with host its domain, no duplicates,
 * no bytes outside printable ASCII.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"
#include "proto/dmarc_report.h"

static int host_plain(const char *h)
{
	return *h && h[0] != '-' && h[strlen(h) - 1] != '.';
}

static void check(const struct dmarc_report_uri *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t al = strlen(u[i].addr), hl = strlen(u[i].host);
		const char *at = strrchr(u[i].addr, '@');
		if (al > DMARC_REPORT_ADDR_MAX || !at || at == u[i].addr || strcmp(at + 1, u[i].host) ||
		    hl == 0 || !strchr(u[i].host, '.'))
			abort();
		for (size_t k = 0; k < al; k++)
			if ((unsigned char)u[i].addr[k] <= ' ' || (unsigned char)u[i].addr[k] >= 0x7f)
				abort();
		for (size_t j = 0; j < i; j++)
			if (!strcasecmp(u[i].addr, u[j].addr))
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct dmarc_report_uri_rules rua = { host_plain, 1 };
	if (size < 1 || size > 4096)
		return 0;
	const struct dmarc_report_uri_rules *rules = data[0] & 1 ? &rua : NULL;
	size_t max = (data[0] >> 1) & 7;
	char *list = xmalloc(size);
	memcpy(list, data + 1, size - 1);
	list[size - 1] = 0;
	struct dmarc_report_uri u[8];
	size_t skipped = 0;
	size_t n = dmarc_report_uri_list(list, rules, NULL, u, max, &skipped);
	if (n > max)
		abort();
	check(u, n);
	/* one URI of exactly the data (no NUL after it) */
	char *one = xmalloc(size - 1 ? size - 1 : 1);
	memcpy(one, data + 1, size - 1);
	struct dmarc_report_uri v;
	if (dmarc_report_uri_parse(one, size - 1, rules, &v) == 0)
		check(&v, 1);
	free(one);
	free(list);
	return 0;
}
