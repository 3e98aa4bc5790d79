/* fuzz_dovecot_auth: the Dovecot auth client protocol parser (mta/sasl_dvproto.c), whole and split. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/sasl_dvproto.h"

static void drain(struct sasl_dvproto *p)
{
	struct sasl_dvproto_item it;
	const char *err;
	while (sasl_dvproto_next(p, &it, &err) == SASL_DV_ITEM) {
		if (it.name)
			(void)strlen(it.name);
		for (size_t i = 0; i < it.nargs; i++)
			(void)strlen(it.args[i]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sasl_dvproto *p = sasl_dvproto_new(256);
	sasl_dvproto_feed(p, data, size);
	drain(p);
	sasl_dvproto_free(&p);
	/* the same bytes in two pieces, cut where the first byte says */
	size_t cut = size ? data[0] % (size + 1) : 0;
	p = sasl_dvproto_new(256);
	sasl_dvproto_feed(p, data, cut);
	drain(p);
	sasl_dvproto_feed(p, data + cut, size - cut);
	drain(p);
	sasl_dvproto_free(&p);
	return 0;
}
