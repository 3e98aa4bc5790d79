/*
 * test_smtp_path: smtp_parse_path (RFC 5321 4.1.2 paths, RFC 6531 UTF-8,
 * 4.5.3.1 limits) as a case table.
 */
#include "tests/unit/smtp_testlib.h"

#define NUL_OK 1
#define UTF8_OK 2

struct path_case {
	const char *name;
	const char *in;
	int flags;		/* NUL_OK, UTF8_OK */
	int used;		/* expected return; -1 = error */
	const char *want;	/* st_describe_path() (without leading space), or NULL */
};

static const struct path_case path_cases[] = {
	{ "simple", "<user@example.com>", 0, 18, "<user@example.com> L=user D=example.com" },
	{ "stops at >", "<a@b> SIZE=1", 0, 5, "<a@b> L=a D=b" },
	{ "atext specials", "<!#$%&'*+-/=?^_`{|}~@x>", 0, 23, "<!#$%&'*+-/=?^_`{|}~@x> L=!#$%&'*+-/=?^_`{|}~ D=x" },
	{ "dot-atom", "<first.last@sub.example.org>", 0, 28, "<first.last@sub.example.org> L=first.last D=sub.example.org" },
	{ "doubled dot tolerated", "<a..b.@x>", 0, 9, "<a..b.@x> L=a..b. D=x" },
	{ "quoted with space", "<\"john doe\"@x>", 0, 14, "<\"john doe\"@x> L=john doe D=x" },
	{ "quoted with escapes", "<\"a\\\"b\\\\c\"@x>", 0, 13, "<\"a\\\"b\\\\c\"@x> L=a\"b\\c D=x" },
	{ "quoted with @ and >", "<\"a@b>c\"@x>", 0, 11, "<\"a@b>c\"@x> L=a@b>c D=x" },
	{ "empty quoted local part", "<\"\"@x>", 0, 6, "<\"\"@x> L= D=x" },
	{ "quoted unterminated", "<\"abc@x>", 0, -1, NULL },
	{ "quoted control char", "<\"a\tb\"@x>", 0, -1, NULL },
	{ "quoted escape of control", "<\"a\\\x01\"@x>", 0, -1, NULL },
	{ "ipv4 literal", "<u@[192.0.2.1]>", 0, 15, "<u@[192.0.2.1]> L=u D=[192.0.2.1]" },
	{ "ipv4 literal leading zeros", "<u@[010.0.0.001]>", 0, 17, "<u@[010.0.0.001]> L=u D=[010.0.0.001]" },
	{ "ipv4 literal octet too big", "<u@[256.0.0.1]>", 0, -1, NULL },
	{ "ipv4 literal three parts", "<u@[1.2.3]>", 0, -1, NULL },
	{ "ipv4 literal five parts", "<u@[1.2.3.4.5]>", 0, -1, NULL },
	{ "ipv4 literal four digits", "<u@[1.2.3.1234]>", 0, -1, NULL },
	{ "ipv6 literal", "<u@[IPv6:2001:db8::1]>", 0, 22, "<u@[IPv6:2001:db8::1]> L=u D=[IPv6:2001:db8::1]" },
	{ "ipv6 literal tag case", "<u@[ipv6:::1]>", 0, 14, "<u@[ipv6:::1]> L=u D=[ipv6:::1]" },
	{ "ipv6 literal with ipv4", "<u@[IPv6:::ffff:192.0.2.1]>", 0, 27,
	  "<u@[IPv6:::ffff:192.0.2.1]> L=u D=[IPv6:::ffff:192.0.2.1]" },
	{ "ipv6 literal bad", "<u@[IPv6:2001:db8:::1]>", 0, -1, NULL },
	{ "ipv6 without tag", "<u@[2001:db8::1]>", 0, -1, NULL },
	{ "general literal refused", "<u@[x400:abc]>", 0, -1, NULL },
	{ "literal unterminated", "<u@[1.2.3.4>", 0, -1, NULL },
	{ "source route", "<@a.example,@b.example:u@d>", 0, 27, "<u@d> L=u D=d route" },
	{ "source route single", "<@a:u@d>", 0, 8, "<u@d> L=u D=d route" },
	{ "source route bad", "<@a;u@d>", 0, -1, NULL },
	{ "source route empty hop", "<@a,:u@d>", 0, -1, NULL },
	{ "null path allowed", "<>", NUL_OK, 2, "<> L= D= null" },
	{ "null path refused", "<>", 0, -1, NULL },
	{ "utf8 local and domain", "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>", UTF8_OK, 22,
	  "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a> L=\xe7\x94\xa8\xe6\x88\xb7 "
	  "D=\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a utf8" },
	{ "utf8 in quoted local", "<\"\xc3\xa9 x\"@a>", UTF8_OK, 10, "<\"\xc3\xa9 x\"@a> L=\xc3\xa9 x D=a utf8" },
	{ "utf8 not allowed", "<j\xc3\xb6rg@x>", 0, -1, NULL },
	{ "utf8 overlong", "<\xc0\xaf@x>", UTF8_OK, -1, NULL },
	{ "utf8 surrogate", "<\xed\xa0\x80@x>", UTF8_OK, -1, NULL },
	{ "utf8 truncated", "<\xe4\xbe@x>", UTF8_OK, -1, NULL },
	{ "utf8 in literal", "<u@[\xc3\xa9]>", UTF8_OK, -1, NULL },
	{ "underscore in domain", "<u@my_host.example>", 0, 19, "<u@my_host.example> L=u D=my_host.example" },
	{ "hyphen first in label", "<u@-a.example>", 0, -1, NULL },
	{ "hyphen last in label", "<u@a-.example>", 0, -1, NULL },
	{ "empty label", "<u@a..example>", 0, -1, NULL },
	{ "trailing dot in domain", "<u@example.>", 0, -1, NULL },
	{ "label 63 ok", "<u@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x>", 0, 69,
	  "<u@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x> L=u "
	  "D=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x" },
	{ "label 64 too long", "<u@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x>", 0, -1, NULL },
	{ "local part 64 ok", "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x>", 0, 68,
	  "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x> "
	  "L=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa D=x" },
	{ "local part 65 too long", "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x>", 0, -1, NULL },
	{ "missing <", "user@example.com>", 0, -1, NULL },
	{ "missing >", "<user@example.com", 0, -1, NULL },
	{ "missing domain", "<user>", 0, -1, NULL },
	{ "missing local part", "<@example.com>", 0, -1, NULL },
	{ "empty domain", "<user@>", 0, -1, NULL },
	{ "two @", "<a@b@c>", 0, -1, NULL },
	{ "space inside", "<a b@c>", 0, -1, NULL },
	{ "nested brackets", "<<a@b>>", 0, -1, NULL },
	{ "comment not allowed", "<a(x)@b>", 0, -1, NULL },
	{ "empty input", "", NUL_OK, -1, NULL },
	{ "lone <", "<", NUL_OK, -1, NULL },
	{ "garbage bytes", "<\x01\x02@\x7f>", UTF8_OK, -1, NULL },
};

static void test_path_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];
		struct smtp_path path;
		char *storage = (char *)"junk";
		const char *err = NULL;
		int n = smtp_parse_path(c->in, c->flags & NUL_OK, !!(c->flags & UTF8_OK), &path, &storage, &err);
		if (n != c->used) {
			print_error("case \"%s\": returned %d (err %s), want %d\n", c->name, n,
				    err ? err : "-", c->used);
			fail();
		}
		if (n < 0) {
			assert_null(storage);
			assert_non_null(err);
			continue;
		}
		struct sbuf b;
		sbuf_init(&b);
		st_describe_path(&b, &path);
		st_expect(c->name, b.buf + 1, c->want);
		sbuf_free(&b);
		free(storage);
	}
}

/* 256-octet limit on the whole path incl. <> (RFC 5321 4.5.3.1.3). */
static void test_path_total_length(void **state)
{
	struct smtp_path path;
	char in[400], *storage;
	const char *err;
	size_t n;

	(void)state;
	for (size_t total = 250; total <= 270; total++) {
		/* "<" + "u@" + labels "a...a." + "x" + ">" */
		n = 0;
		in[n++] = '<';
		in[n++] = 'u';
		in[n++] = '@';
		while (n < total - 2) {
			size_t lab = total - 2 - n > 40 ? 40 : total - 2 - n;
			if (lab < 2) {
				in[n++] = 'b';
				continue;
			}
			memset(in + n, 'a', lab - 1);
			n += lab - 1;
			in[n++] = '.';
		}
		in[n++] = 'x';
		in[n++] = '>';
		in[n] = 0;
		assert_int_equal(strlen(in), total);
		int r = smtp_parse_path(in, 0, 0, &path, &storage, &err);
		if (total <= 256) {
			assert_int_equal(r, (int)total);
			free(storage);
		} else {
			assert_int_equal(r, -1);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_table),
		cmocka_unit_test(test_path_total_length),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
