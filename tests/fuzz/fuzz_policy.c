/* fuzz_policy: the policy request/reply parser never crashes; whole == split. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/policy.h"

static size_t drain(struct policy_parser *p, const uint8_t *d, size_t n, size_t step, int *err)
{
	size_t msgs = 0;
	for (size_t off = 0; off < n && !*err; off += step) {
		policy_parser_feed(p, d + off, off + step > n ? n - off : step);
		struct policy_msg m;
		enum policy_next r;
		while ((r = policy_parser_next(p, &m)) == POLICY_ITEM) {
			msgs++;
			for (size_t i = 0; i < m.n; i++)
				if (!m.attr[i].name[0] || strchr(m.attr[i].value, '\n'))
					abort();
		}
		if (r == POLICY_ERROR)
			*err = 1;
	}
	return msgs;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct policy_parser *a = policy_parser_new(), *b = policy_parser_new();
	int ea = 0, eb = 0;
	size_t ma = drain(a, d, n, n ? n : 1, &ea);
	size_t mb = drain(b, d, n, 1 + (n % 13), &eb);
	if (ea != eb || (!ea && ma != mb))
		abort();
	policy_parser_free(&a);
	policy_parser_free(&b);
	return 0;
}
