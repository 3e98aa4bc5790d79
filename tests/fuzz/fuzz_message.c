/* fuzz_message: the header/body model milters edit; render(parse(x)) == x. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/milter_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct mc_message m;
	mc_message_parse(&m, (const char *)d, n);
	struct sbuf out;
	sbuf_init(&out);
	mc_message_render(&m, &out);
	if (out.len != n || (n && memcmp(out.buf, d, n) != 0))
		abort();
	sbuf_free(&out);
	mc_message_free(&m);
	return 0;
}
