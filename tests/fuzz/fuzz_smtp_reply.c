/*
 * fuzz_smtp_reply: proto/smtp_reply fed whole and split at byte 0's value;
 * both runs must produce the same replies and end the same way.
 */
#include "lib/util.h"
#include "proto/smtp_reply.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void run(const uint8_t *d, size_t n, size_t step, struct sbuf *log)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	size_t off = 0;
	for (;;) {
		struct smtp_reply r;
		int rc = smtp_reply_next(p, &r, NULL);
		if (rc == SMTP_REPLY_ITEM) {
			if (r.code < 200 || r.code > 599)
				abort();
			sbuf_printf(log, "%d|%s|%zu|", r.code, r.dsn, r.nlines);
			sbuf_adds(log, r.text);
			sbuf_addc(log, ';');
			continue;
		}
		if (rc == SMTP_REPLY_ERROR) {
			sbuf_adds(log, "ERR");
			break;
		}
		if (off >= n) {
			sbuf_adds(log, "MORE");
			break;
		}
		size_t k = step == 0 || n - off < step ? n - off : step;
		smtp_reply_feed(p, d + off, k);
		off += k;
	}
	smtp_reply_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] % 17 + 1;
	struct sbuf a, b;
	sbuf_init(&a);
	sbuf_init(&b);
	run(data + 1, size - 1, 0, &a);
	run(data + 1, size - 1, step, &b);
	/* a too-long line may be detected before its newline arrives in one run only */
	int long_line = 0;
	for (size_t i = 1, run_len = 0; i < size; i++) {
		run_len = data[i] == '\n' ? 0 : run_len + 1;
		if (run_len > SMTP_REPLY_MAX_LINE)
			long_line = 1;
	}
	if (!long_line && (a.len != b.len || memcmp(a.buf, b.buf, a.len) != 0))
		abort();
	sbuf_free(&a);
	sbuf_free(&b);
	return 0;
}
