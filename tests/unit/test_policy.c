/* test_policy: the policy delegation protocol codec, whole and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "proto/policy.h"

/* Feed input in pieces of step bytes; render every message as "a=b|c=d;" */
static int run(const char *in, size_t len, size_t step, char *out, size_t outlen)
{
	struct policy_parser *p = policy_parser_new();
	out[0] = 0;
	int rc = 0;
	for (size_t off = 0; off < len && rc >= 0; off += step) {
		policy_parser_feed(p, in + off, off + step > len ? len - off : step);
		struct policy_msg m;
		enum policy_next r;
		while ((r = policy_parser_next(p, &m)) == POLICY_ITEM) {
			for (size_t i = 0; i < m.n; i++)
				snprintf(out + strlen(out), outlen - strlen(out), "%s%s=%s", i ? "|" : "",
					 m.attr[i].name, m.attr[i].value);
			snprintf(out + strlen(out), outlen - strlen(out), ";");
		}
		if (r == POLICY_ERROR)
			rc = -1;
	}
	policy_parser_free(&p);
	return rc;
}

static const struct {
	const char *name, *in, *want;
	int rc;
} cases[] = {
	{ "one request", "request=smtpd_access_policy\nprotocol_state=RCPT\n\n",
	  "request=smtpd_access_policy|protocol_state=RCPT;", 0 },
	{ "two requests on one connection", "a=1\n\nb=2\nc=\n\n", "a=1;b=2|c=;", 0 },
	{ "CRLF tolerated", "a=1\r\nb=x y\r\n\r\n", "a=1|b=x y;", 0 },
	{ "value with = signs", "sender=a=b@x\n\n", "sender=a=b@x;", 0 },
	{ "reply", "action=550 5.7.23 Message rejected\n\n", "action=550 5.7.23 Message rejected;", 0 },
	{ "keep-alive empty lines ignored", "\n\na=1\n\n", "a=1;", 0 },
	{ "incomplete message waits", "a=1\nb=2\n", "", 0 },
	{ "line without =", "junk\n\n", "", -1 },
	{ "empty name", "=v\n\n", "", -1 },
	{ "bad name", "a b=c\n\n", "", -1 },
};

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t step = 1; step <= 7; step += 6) {
			char out[2048];
			int rc = run(cases[i].in, strlen(cases[i].in), step, out, sizeof out);
			if (rc != cases[i].rc || (rc == 0 && strcmp(out, cases[i].want) != 0))
				fail_msg("%s (step %zu): rc %d, got \"%s\", want \"%s\"", cases[i].name, step, rc,
					 out, cases[i].want);
		}
	}
}

static void test_binary_and_limits(void **state)
{
	(void)state;
	char out[256];
	const char nul[] = "a=b\0c\n\n";
	assert_int_equal(run(nul, sizeof nul - 1, 3, out, sizeof out), -1);
	static char big[POLICY_MAX_LINE_BYTES + 64];
	memset(big, 'x', sizeof big);
	memcpy(big, "a=", 2);
	assert_int_equal(run(big, sizeof big, 1000, out, sizeof out), -1);	/* no LF at all */
	/* many attributes */
	static char many[(POLICY_MAX_ATTRS + 2) * 8];
	size_t n = 0;
	for (int i = 0; i < POLICY_MAX_ATTRS + 1; i++)
		n += (size_t)sprintf(many + n, "a%d=1\n", i % 10);
	many[n++] = '\n';
	assert_int_equal(run(many, n, 64, out, sizeof out), -1);
}

static void test_build(void **state)
{
	(void)state;
	struct sbuf b;
	sbuf_init(&b);
	policy_build_attr(&b, "helo_name", "evil\r\ninjected=1");
	policy_build_end(&b);
	policy_build_reply(&b, "DUNNO");
	assert_string_equal(b.buf, "helo_name=evil  injected=1\n\naction=DUNNO\n\n");
	char out[256];
	assert_int_equal(run(b.buf, b.len, 1, out, sizeof out), 0);
	assert_string_equal(out, "helo_name=evil  injected=1;action=DUNNO;");
	sbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_binary_and_limits),
		cmocka_unit_test(test_build),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
