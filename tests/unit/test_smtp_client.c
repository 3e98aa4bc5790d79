/*
 * test_smtp_client: the client-side SMTP reply parser (proto/smtp_reply.c)
 * as the SMTP/LMTP client uses it. Every case is fed whole and one byte at
 * a time; both must give the same replies.
 */
#include "proto/smtp_reply.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

struct reply_case {
	const char *name;
	const char *in;
	const char *want;	/* "code|dsn|text|nlines" per reply, ';'-separated; "ERR" on error; "MORE" if incomplete */
};

static const struct reply_case cases[] = {
	{ "single line", "250 ok\r\n", "250||ok|1;MORE" },
	{ "enhanced code", "550 5.1.1 <x@y>: User unknown\r\n", "550|5.1.1|5.1.1 <x@y>: User unknown|1;MORE" },
	{ "multi-line ehlo", "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
	  "250||mx.example\nPIPELINING\nSIZE 1000\n8BITMIME|4;MORE" },
	{ "two replies pipelined", "250 2.1.0 Ok\r\n451 4.3.0 try later\r\n",
	  "250|2.1.0|2.1.0 Ok|1;451|4.3.0|4.3.0 try later|1;MORE" },
	{ "bare code", "220\r\n", "220|||1;MORE" },
	{ "bare LF accepted", "354 go ahead\n", "354||go ahead|1;MORE" },
	{ "class mismatch is no enhanced code", "550 2.1.1 odd\r\n", "550||2.1.1 odd|1;MORE" },
	{ "enhanced code needs three parts", "421 4.4 closing\r\n", "421||4.4 closing|1;MORE" },
	{ "incomplete line", "250 o", "MORE" },
	{ "incomplete multi-line", "250-a\r\n250-b\r\n", "MORE" },
	{ "garbage", "hello world\r\n", "ERR" },
	{ "code out of range", "650 no\r\n", "ERR" },
	{ "code change mid-reply", "250-a\r\n251 b\r\n", "ERR" },
	{ "bad separator", "250+x\r\n", "ERR" },
	{ "NUL byte", "250 a\0b\r\n", "ERR" },
	{ "error is sticky", "xx\r\n250 ok\r\n", "ERR" },
};

/* run the parser over in (split into pieces of step bytes; 0 = whole), log results */
static void run(const char *in, size_t len, size_t step, struct sbuf *out)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	size_t off = 0;
	int err = 0;
	for (;;) {
		struct smtp_reply r;
		const char *why = NULL;
		int rc = smtp_reply_next(p, &r, &why);
		if (rc == SMTP_REPLY_ITEM) {
			sbuf_printf(out, "%d|%s|%s|%zu;", r.code, r.dsn, r.text, r.nlines);
			continue;
		}
		if (rc == SMTP_REPLY_ERROR) {
			assert_non_null(why);
			sbuf_adds(out, "ERR");
			err = 1;
			break;
		}
		if (off >= len)
			break;
		size_t n = step == 0 || len - off < step ? len - off : step;
		smtp_reply_feed(p, in + off, n);
		off += n;
	}
	if (!err)
		sbuf_adds(out, "MORE");
	sbuf_addc(out, 0);
	smtp_reply_parser_free(&p);
	assert_null(p);
}

static size_t case_len(const struct reply_case *c)
{
	/* the NUL case holds a NUL: count up to the final CRLF */
	if (strcmp(c->name, "NUL byte") == 0)
		return 9;
	return strlen(c->in);
}

static void test_cases_whole_and_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct reply_case *c = &cases[i];
		struct sbuf whole, bytes;
		sbuf_init(&whole);
		sbuf_init(&bytes);
		run(c->in, case_len(c), 0, &whole);
		run(c->in, case_len(c), 1, &bytes);
		if (strcmp(whole.buf, c->want) != 0 || strcmp(bytes.buf, c->want) != 0)
			fail_msg("case \"%s\": want \"%s\", whole \"%s\", bytewise \"%s\"", c->name,
				 c->want, whole.buf, bytes.buf);
		sbuf_free(&whole);
		sbuf_free(&bytes);
	}
}

static void test_long_line_is_error(void **state)
{
	(void)state;
	struct sbuf in, out;
	sbuf_init(&in);
	sbuf_init(&out);
	sbuf_adds(&in, "250 ");
	for (int i = 0; i < SMTP_REPLY_MAX_LINE + 10; i++)
		sbuf_addc(&in, 'x');
	run(in.buf, in.len, 0, &out);	/* no newline yet: too long already */
	assert_string_equal(out.buf, "ERR");
	sbuf_free(&in);
	sbuf_free(&out);
}

static void test_too_many_lines_is_error(void **state)
{
	(void)state;
	struct sbuf in, out;
	sbuf_init(&in);
	sbuf_init(&out);
	for (int i = 0; i < SMTP_REPLY_MAX_LINES + 1; i++)
		sbuf_adds(&in, "250-x\r\n");
	sbuf_adds(&in, "250 end\r\n");
	run(in.buf, in.len, 7, &out);
	assert_string_equal(out.buf, "ERR");
	sbuf_free(&in);
	sbuf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases_whole_and_bytewise),
		cmocka_unit_test(test_long_line_is_error),
		cmocka_unit_test(test_too_many_lines_is_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
