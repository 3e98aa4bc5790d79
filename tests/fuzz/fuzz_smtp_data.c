/*
 * fuzz_smtp_data: proto/smtp's DATA decoder and BDAT framing on their own.
 * Byte 0: bit 0 policy (REJECT/NORMALIZE), bit 1 DATA or BDAT; bytes 1-2
 * seed the split points. The input is decoded whole and in random pieces;
 * the runs must agree, and:
 *  - DATA ends only if "\r\n" + input contains "\r\n.\r\n" (no smuggling);
 *  - REJECT never yields a CR; NORMALIZE never gives a FATAL;
 *  - content is never longer than the input; BDAT consumes exactly n bytes.
 */
#include "lib/util.h"
#include "proto/smtp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct result {
	struct sbuf content;
	int ends;
	int fatal;
	size_t left;		/* bytes buffered after the run */
};

/* next_split - a small pseudo-random piece length from the seed. */
static size_t next_split(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return 1 + ((*seed >> 16) % 17);
}

static void drain(struct smtp_parser *p, int reject, struct result *r)
{
	struct smtp_item it;

	while (smtp_parser_next(p, &it) == SMTP_ITEM) {
		switch (it.kind) {
		case SMTP_ITEM_DATA:
			if (reject && memchr(it.data, '\r', it.len))
				abort();
			sbuf_add(&r->content, it.data, it.len);
			break;
		case SMTP_ITEM_DATA_END:
			r->ends++;
			break;
		case SMTP_ITEM_FATAL:
			if (!reject)
				abort();
			r->fatal++;
			break;
		default:
			break;	/* commands after the end of data */
		}
	}
}

static void run(const uint8_t *d, size_t n, int bdat, enum smtp_bare_policy bare, uint32_t seed,
		struct result *r)
{
	struct smtp_parser_opts o = { .bare = bare };
	struct smtp_parser *p = smtp_parser_new(&o);
	size_t off = 0, k;

	memset(r, 0, sizeof(*r));
	sbuf_init(&r->content);
	sbuf_add(&r->content, "", 0);
	if (bdat)
		smtp_parser_begin_bdat(p, n, 1);
	else
		smtp_parser_begin_data(p);
	while (off < n) {
		k = seed ? next_split(&seed) : n;
		if (k > n - off)
			k = n - off;
		smtp_parser_feed(p, d + off, k);
		off += k;
		drain(p, bare == SMTP_BARE_REJECT, r);
	}
	drain(p, bare == SMTP_BARE_REJECT, r);
	r->left = smtp_parser_buffered(p);
	smtp_parser_free(&p);
}

/* may_end - "\r\n" + d contains the only valid end of data. */
static int may_end(const uint8_t *d, size_t n)
{
	if (n >= 3 && memcmp(d, ".\r\n", 3) == 0)
		return 1;
	return memmem(d, n, "\r\n.\r\n", 5) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result a, b;
	enum smtp_bare_policy bare;
	int bdat;
	uint32_t seed;

	if (size < 3)
		return 0;
	bare = data[0] & 1 ? SMTP_BARE_NORMALIZE : SMTP_BARE_REJECT;
	bdat = (data[0] >> 1) & 1;
	seed = 1u + data[1] + 256u * data[2];
	data += 3;
	size -= 3;
	run(data, size, bdat, bare, 0, &a);
	run(data, size, bdat, bare, seed, &b);
	if (a.ends != b.ends || a.fatal != b.fatal || a.ends > 1 || a.fatal > 1)
		abort();
	if (a.content.len > size || b.content.len > size)
		abort();
	size_t m = a.content.len < b.content.len ? a.content.len : b.content.len;
	if (memcmp(a.content.buf, b.content.buf, m) != 0 || (!a.fatal && a.content.len != b.content.len))
		abort();
	if (!bdat && a.ends && !may_end(data, size))
		abort();	/* smuggled end of data */
	if (bdat && (a.ends + a.fatal != 1 || a.left != 0))
		abort();	/* the chunk is consumed exactly */
	sbuf_free(&a.content);
	sbuf_free(&b.content);
	return 0;
}
