/* test_milter_client: the message model milters edit (parse/render must be lossless). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "mta/milter_client.h"

static const struct {
	const char *name, *msg;
	size_t nh;
	const char *first_name, *first_value, *body;
} cases[] = {
	{ "simple", "Subject: hi\nFrom: a@b\n\nbody\n", 2, "Subject", " hi", "body\n" },
	{ "folded header keeps its folding", "Subject: one\n\ttwo\n  three\nX: y\n\nb\n", 2, "Subject",
	  " one\n\ttwo\n  three", "b\n" },
	{ "no space after the colon", "X-A:v\n\n", 1, "X-A", "v", "" },
	{ "headers only, no separator", "A: 1\nB: 2\n", 2, "A", " 1", "" },
	{ "body starts without a blank line", "A: 1\nnot a header line\nmore\n", 1, "A", " 1",
	  "not a header line\nmore\n" },
	{ "no headers at all", "\nbody only\n", 0, NULL, NULL, "body only\n" },
	{ "empty message", "", 0, NULL, NULL, "" },
	{ "From_ line is body", "From someone Sat Nov 21\nA: 1\n", 0, NULL, NULL, "From someone Sat Nov 21\nA: 1\n" },
	{ "last line without LF", "A: 1\n\nno newline", 1, "A", " 1", "no newline" },
	{ "binary in the body", "A: 1\n\n\x01\x02\xff\n", 1, "A", " 1", "\x01\x02\xff\n" },
};

static void test_parse_render(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mc_message m;
		mc_message_parse(&m, cases[i].msg, strlen(cases[i].msg));
		if (m.nh != cases[i].nh)
			fail_msg("%s: %zu headers, want %zu", cases[i].name, m.nh, cases[i].nh);
		if (cases[i].first_name) {
			assert_string_equal(m.h[0].name, cases[i].first_name);
			assert_string_equal(m.h[0].value, cases[i].first_value);
		}
		assert_int_equal(m.body.len, strlen(cases[i].body));
		assert_memory_equal(m.body.len ? m.body.buf : "", cases[i].body, m.body.len);
		struct sbuf out;
		sbuf_init(&out);
		mc_message_render(&m, &out);
		if (out.len != strlen(cases[i].msg) || memcmp(out.buf ? out.buf : "", cases[i].msg, out.len) != 0)
			fail_msg("%s: render is not byte-identical: \"%s\"", cases[i].name, out.buf ? out.buf : "");
		sbuf_free(&out);
		mc_message_free(&m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
