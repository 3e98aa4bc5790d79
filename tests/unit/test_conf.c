/*
 * test_conf: sluice.conf parsing, expansion, typed validation, lists, overrides.
 * Most tests are case tables; a failing case prints its description.
 */
#include "conf/conf.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

static const struct conf_param params[] = {
	{ "myhostname", CONF_STR, "mx.example.org", 0, 0, NULL, 0 },
	{ "mydomain", CONF_STR, "example.org", 0, 0, NULL, 0 },
	{ "myorigin", CONF_STR, "$mydomain", 0, 0, NULL, 0 },
	{ "smtpd_banner", CONF_STR, "$myhostname ESMTP", 0, 0, NULL, 0 },
	{ "message_size_limit", CONF_SIZE, "10240000", 1, 0, NULL, 0 },
	{ "small_size", CONF_SIZE, "1k", 0, 4096, NULL, 0 },
	{ "smtpd_timeout", CONF_TIME, "300s", 1, 3600, NULL, 0 },
	{ "bounce_queue_lifetime", CONF_TIME, "5d", 0, 0, NULL, 'd' },
	{ "minute_time", CONF_TIME, "2", 0, 0, NULL, 'm' },
	{ "process_limit", CONF_INT, "100", 1, 1000, NULL, 0 },
	{ "offset", CONF_INT, "0", -10, 10, NULL, 0 },
	{ "smtpd_tls_enable", CONF_BOOL, "no", 0, 0, NULL, 0 },
	{ "milter_default_action", CONF_ENUM, "tempfail", 0, 0, "accept|tempfail|reject", 0 },
	{ "smtpd_milters", CONF_LIST, "", 0, 0, NULL, 0 },
	{ "mynetworks", CONF_LIST, "127.0.0.0/8 [::1]/128", 0, 0, NULL, 0 },
	{ "x", CONF_STR, NULL, 0, 0, NULL, 0 },
	{ "y", CONF_STR, NULL, 0, 0, NULL, 0 },
	{ "z", CONF_STR, NULL, 0, 0, NULL, 0 },
	{ "empty", CONF_STR, "", 0, 0, NULL, 0 },
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
static const struct conf_param filter_params[] = {
	{ "dkim_enable", CONF_BOOL, "no", 0, 0, NULL, 0 },
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
static const struct conf_param *const tables[] = { params, filter_params, NULL };
static const char *const ignore[] = { "spf_", "dmarc_", NULL };

static struct conf *load(const char *text, char **err_out)
{
	*err_out = NULL;
	return conf_load_string(text, "/etc/sluice.conf", tables, ignore, err_out);
}

/* must_load - load or fail the test naming the case. */
static struct conf *must_load(const char *desc, const char *text)
{
	char *err;
	struct conf *c = load(text, &err);
	if (!c)
		fail_msg("%s: unexpected error: %s", desc, err);
	return c;
}

/* ------------------------------------------------ parsing & expansion */

struct str_case {
	const char *desc;
	const char *text;
	const char *name;
	const char *want;
};

static const struct str_case str_cases[] = {
	{ "plain value", "x = hello", "x", "hello" },
	{ "no spaces around =", "x=hello", "x", "hello" },
	{ "trailing blanks trimmed", "x =   hello  \t", "x", "hello" },
	{ "empty value", "x =", "x", "" },
	{ "default used", "", "myhostname", "mx.example.org" },
	{ "default with $ref", "", "myorigin", "example.org" },
	{ "default sees file setting", "mydomain = example.net", "myorigin", "example.net" },
	{ "later definition counts (lazy)", "x = $y\ny = late", "x", "late" },
	{ "last definition wins", "x = one\nx = two", "x", "two" },
	{ "continuation joined", "x = a\n  b\n\tc", "x", "a b c" },
	{ "comment inside continuation", "x = a\n# note\n  b", "x", "a b" },
	{ "indented comment inside continuation", "x = a\n   # note\n  b", "x", "a b" },
	{ "blank line inside continuation", "x = a\n\n  b", "x", "a b" },
	{ "# mid-line is not a comment", "x = a # b", "x", "a # b" },
	{ "CRLF line ends", "x = a\r\n  b\r\ny = c\r\n", "x", "a b" },
	{ "CRLF last line", "x = a\r\ny = c\r\n", "y", "c" },
	{ "comment lines skipped", "# x = no\n  # more\nx = yes", "x", "yes" },
	{ "$name", "y = b\nx = a$y", "x", "ab" },
	{ "${name}", "y = b\nx = a${y}c", "x", "abc" },
	{ "$(name)", "y = b\nx = a$(y)c", "x", "abc" },
	{ "$name ends at non-name char", "y = b\nx = $y.d", "x", "b.d" },
	{ "${name?text} set", "y = b\nx = ${y?yes}", "x", "yes" },
	{ "${name?text} empty", "x = ${empty?yes}", "x", "" },
	{ "${name?text} undefined", "x = ${nosuch?yes}", "x", "" },
	{ "${name:text} empty", "x = ${empty:fallback}", "x", "fallback" },
	{ "${name:text} set", "y = b\nx = ${y:fallback}", "x", "" },
	{ "${name?text} text is expanded", "y = b\nz = c\nx = ${y?<$z>}", "x", "<c>" },
	{ "nested conditional", "y = b\nx = ${y?${empty:in}}", "x", "in" },
	{ "$$ is a dollar", "x = a$$b", "x", "a$b" },
	{ "$${y} stays literal", "y = b\nx = $${y}", "x", "${y}" },
	{ "lone $ at end literal", "x = cost$", "x", "cost$" },
	{ "recursive chain", "x = $y\ny = $z!\nz = end", "x", "end!" },
	{ "same name twice (no loop)", "y = b\nx = $y$y", "x", "bb" },
	{ "unknown $name is empty", "x = [$nosuch]", "x", "[]" },
	{ "user-defined macro", "my_nets = 10.0.0.0/8\nx = $my_nets", "x", "10.0.0.0/8" },
	{ "banner default chain", "myhostname = mx.test", "smtpd_banner", "mx.test ESMTP" },
	{ "enum normalised to choice", "milter_default_action = REJECT", "milter_default_action",
	  "reject" },
	{ "bool keeps text for conf_str", "smtpd_tls_enable = On", "smtpd_tls_enable", "On" },
	{ "ignored prefix can be referenced", "spf_x = v\nx = $spf_x", "x", "v" },
};

static void test_expansion(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof str_cases / sizeof str_cases[0]; i++) {
		const struct str_case *k = &str_cases[i];
		struct conf *c = must_load(k->desc, k->text);
		if (strcmp(conf_str(c, k->name), k->want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", k->desc, conf_str(c, k->name),
				 k->want);
		conf_free(&c);
		assert_null(c);
	}
}

/* ------------------------------------------------------------- errors */

struct err_case {
	const char *desc;
	const char *text;
	const char *want;
};

static const struct err_case err_cases[] = {
	{ "size not a number", "# c\n\n\n\n\n\n\n\n\n\n\nmessage_size_limit = ten",
	  "/etc/sluice.conf:12: bad value for message_size_limit: \"ten\" "
	  "(expected a size in bytes (optionally with k, m or g))" },
	{ "size below min", "message_size_limit = 0",
	  "/etc/sluice.conf:1: bad value for message_size_limit: \"0\" (must be at least 1)" },
	{ "size above max", "x=1\nsmall_size = 5k",
	  "/etc/sluice.conf:2: bad value for small_size: \"5k\" (must be between 0 and 4096)" },
	{ "size bad suffix", "small_size = 5q",
	  "/etc/sluice.conf:1: bad value for small_size: \"5q\" "
	  "(expected a size in bytes (optionally with k, m or g))" },
	{ "int not a number", "process_limit = lots",
	  "/etc/sluice.conf:1: bad value for process_limit: \"lots\" (expected a number)" },
	{ "int trailing junk", "process_limit = 10x",
	  "/etc/sluice.conf:1: bad value for process_limit: \"10x\" (expected a number)" },
	{ "int empty", "process_limit =",
	  "/etc/sluice.conf:1: bad value for process_limit: \"\" (expected a number)" },
	{ "int overflow", "process_limit = 99999999999999999999999",
	  "/etc/sluice.conf:1: bad value for process_limit: \"99999999999999999999999\" "
	  "(expected a number)" },
	{ "int above max", "process_limit = 1001",
	  "/etc/sluice.conf:1: bad value for process_limit: \"1001\" (must be between 1 and 1000)" },
	{ "int below negative min", "offset = -11",
	  "/etc/sluice.conf:1: bad value for offset: \"-11\" (must be between -10 and 10)" },
	{ "time bad unit", "smtpd_timeout = 5y",
	  "/etc/sluice.conf:1: bad value for smtpd_timeout: \"5y\" "
	  "(expected a time like 300s, 5m, 2h, 1d or 1w)" },
	{ "time two units", "smtpd_timeout = 5ms",
	  "/etc/sluice.conf:1: bad value for smtpd_timeout: \"5ms\" "
	  "(expected a time like 300s, 5m, 2h, 1d or 1w)" },
	{ "time above max", "smtpd_timeout = 2h",
	  "/etc/sluice.conf:1: bad value for smtpd_timeout: \"2h\" "
	  "(must be between 1s and 3600s)" },
	{ "time zero below min", "smtpd_timeout = 0",
	  "/etc/sluice.conf:1: bad value for smtpd_timeout: \"0\" (must be between 1s and 3600s)" },
	{ "bool bad", "smtpd_tls_enable = maybe",
	  "/etc/sluice.conf:1: bad value for smtpd_tls_enable: \"maybe\" (expected yes or no)" },
	{ "bool of second table", "dkim_enable = sometimes",
	  "/etc/sluice.conf:1: bad value for dkim_enable: \"sometimes\" (expected yes or no)" },
	{ "enum bad", "milter_default_action = discard",
	  "/etc/sluice.conf:1: bad value for milter_default_action: \"discard\" "
	  "(expected one of: accept|tempfail|reject)" },
	{ "list unterminated brace", "smtpd_milters = { inet:a:1, x=1",
	  "/etc/sluice.conf:1: bad value for smtpd_milters: \"{ inet:a:1, x=1\" "
	  "(unbalanced { } in list)" },
	{ "list stray close brace", "smtpd_milters = a }",
	  "/etc/sluice.conf:1: bad value for smtpd_milters: \"a }\" (unbalanced { } in list)" },
	{ "validated after expansion", "n = ten\nprocess_limit = $n",
	  "/etc/sluice.conf:2: bad value for process_limit: \"ten\" (expected a number)" },
	{ "error on continued line names first line", "x = 1\nprocess_limit =\n  lots",
	  "/etc/sluice.conf:2: bad value for process_limit: \"lots\" (expected a number)" },
	{ "missing =", "x = 1\nhello world",
	  "/etc/sluice.conf:2: missing '=' after parameter name" },
	{ "missing name", "= value", "/etc/sluice.conf:1: missing parameter name before '=' \"\"" },
	{ "bad name", "my name = v", "/etc/sluice.conf:1: bad parameter name \"my name\"" },
	{ "leading continuation", "  x = 1",
	  "/etc/sluice.conf:1: continuation line (starts with white space) without a preceding "
	  "line" },
	{ "loop a -> b -> a", "x = $y\ny = $x",
	  "/etc/sluice.conf:2: y: loop in parameter expansion (via $x)" },
	{ "self loop", "x = a$x", "/etc/sluice.conf:1: x: loop in parameter expansion (via $x)" },
	{ "loop via braces", "x = ${y}\ny = ${x?a}",
	  "/etc/sluice.conf:2: y: loop in parameter expansion (via $x)" },
	{ "loop via unknown names", "x = $u1\nu1 = $u2\nu2 = $u1",
	  "/etc/sluice.conf:3: u2: loop in parameter expansion (via $u1)" },
	{ "unterminated ${", "x = ${y",
	  "/etc/sluice.conf:1: x: unterminated \"${\" in value" },
	{ "bad ${} expression", "x = ${y z}",
	  "/etc/sluice.conf:1: x: bad ${...} expression \"${y z}\"" },
	{ "empty ${}", "x = ${}", "/etc/sluice.conf:1: x: bad ${...} expression \"${}\"" },
	{ "expansion bomb", "x = $a9\na0 = 0123456789abcdef\na1 = $a0$a0$a0$a0$a0$a0$a0$a0\n"
	  "a2 = $a1$a1$a1$a1$a1$a1$a1$a1\na3 = $a2$a2$a2$a2$a2$a2$a2$a2\n"
	  "a4 = $a3$a3$a3$a3$a3$a3$a3$a3\na5 = $a4$a4$a4$a4$a4$a4$a4$a4\n"
	  "a6 = $a5$a5$a5$a5$a5$a5$a5$a5\na7 = $a6$a6$a6$a6$a6$a6$a6$a6\n"
	  "a8 = $a7$a7$a7$a7$a7$a7$a7$a7\na9 = $a8$a8$a8$a8$a8$a8$a8$a8",
	  "/etc/sluice.conf:8: a6: expanded value too long (over 1048576 bytes)" },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
		const struct err_case *k = &err_cases[i];
		char *err;
		struct conf *c = load(k->text, &err);
		if (c)
			fail_msg("%s: loaded, want error", k->desc);
		if (!err || strcmp(err, k->want) != 0)
			fail_msg("%s:\n got: %s\nwant: %s", k->desc, err ? err : "(null)", k->want);
		free(err);
	}
}

/* A chain deeper than CONF_MAX_DEPTH is an error, not a stack overflow. */
static void test_deep_chain(void **state)
{
	(void)state;
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, "x = $v0\n");
	for (int i = 0; i < 5000; i++)
		sbuf_printf(&b, "v%d = $v%d\n", i, i + 1);
	char *err;
	struct conf *c = load(b.buf, &err);
	assert_null(c);
	assert_non_null(strstr(err, "nested too deeply"));
	free(err);
	sbuf_free(&b);
}

/* ------------------------------------------------------ typed values */

struct num_case {
	const char *desc;
	const char *text;
	const char *name;
	long long want;
};

static const struct num_case num_cases[] = {
	{ "size default", "", "message_size_limit", 10240000 },
	{ "size plain", "message_size_limit = 52428800", "message_size_limit", 52428800 },
	{ "size k", "message_size_limit = 10k", "message_size_limit", 10240 },
	{ "size M", "message_size_limit = 50M", "message_size_limit", 52428800 },
	{ "size g", "message_size_limit = 1g", "message_size_limit", 1073741824 },
	{ "size at max", "small_size = 4096", "small_size", 4096 },
	{ "time default 300s", "", "smtpd_timeout", 300 },
	{ "time s", "smtpd_timeout = 30s", "smtpd_timeout", 30 },
	{ "time m", "smtpd_timeout = 5m", "smtpd_timeout", 300 },
	{ "time h", "smtpd_timeout = 1h", "smtpd_timeout", 3600 },
	{ "time bare = seconds", "smtpd_timeout = 45", "smtpd_timeout", 45 },
	{ "time d", "bounce_queue_lifetime = 2d", "bounce_queue_lifetime", 2 * 86400 },
	{ "time w", "bounce_queue_lifetime = 1w", "bounce_queue_lifetime", 7 * 86400 },
	{ "time bare in default unit d", "bounce_queue_lifetime = 3", "bounce_queue_lifetime",
	  3 * 86400 },
	{ "time default 5d", "", "bounce_queue_lifetime", 5 * 86400 },
	{ "time bare in default unit m", "minute_time = 10", "minute_time", 600 },
	{ "time explicit s overrides unit", "minute_time = 10s", "minute_time", 10 },
	{ "int", "process_limit = 7", "process_limit", 7 },
	{ "int negative in range", "offset = -10", "offset", -10 },
	{ "int plus sign", "offset = +3", "offset", 3 },
	{ "int via expansion", "n = 42\nprocess_limit = $n", "process_limit", 42 },
};

static long long get_num(const struct conf *c, const char *name)
{
	for (const struct conf_param *p = params; p->name; p++) {
		if (strcmp(p->name, name) != 0)
			continue;
		if (p->type == CONF_SIZE)
			return conf_size(c, name);
		if (p->type == CONF_TIME)
			return conf_time_s(c, name);
		return conf_int(c, name);
	}
	fail_msg("no such test parameter %s", name);
	return 0;
}

static void test_numbers(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof num_cases / sizeof num_cases[0]; i++) {
		const struct num_case *k = &num_cases[i];
		struct conf *c = must_load(k->desc, k->text);
		long long got = get_num(c, k->name);
		if (got != k->want)
			fail_msg("%s: got %lld, want %lld", k->desc, got, k->want);
		conf_free(&c);
	}
}

static void test_bools(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ "yes", 1 }, { "YES", 1 }, { "true", 1 }, { "on", 1 }, { "1", 1 },
		{ "no", 0 }, { "False", 0 }, { "off", 0 }, { "0", 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *text = xasprintf("smtpd_tls_enable = %s", cases[i].text);
		struct conf *c = must_load(cases[i].text, text);
		if (conf_bool(c, "smtpd_tls_enable") != cases[i].want)
			fail_msg("bool %s: wrong value", cases[i].text);
		conf_free(&c);
		free(text);
	}
	struct conf *c = must_load("bool default", "");
	assert_int_equal(conf_bool(c, "smtpd_tls_enable"), 0);
	assert_int_equal(conf_bool(c, "dkim_enable"), 0);
	conf_free(&c);
}

static void test_parse_time(void **state)
{
	(void)state;
	long long s;
	const char *err;
	assert_int_equal(conf_parse_time("300s", 0, &s, &err), 0);
	assert_int_equal(s, 300);
	assert_int_equal(conf_parse_time("5d", 's', &s, &err), 0);
	assert_int_equal(s, 5 * 86400);
	assert_int_equal(conf_parse_time("10", 'h', &s, &err), 0);
	assert_int_equal(s, 36000);
	assert_int_equal(conf_parse_time("", 's', &s, &err), -1);
	assert_int_equal(conf_parse_time("-5s", 's', &s, &err), -1);
	assert_int_equal(conf_parse_time("5 s", 's', &s, &err), -1);
	assert_int_equal(conf_parse_time("s", 's', &s, &err), -1);
	assert_int_equal(conf_parse_time("99999999999999999w", 's', &s, &err), -1);
	assert_non_null(err);
}

/* ---------------------------------------------------------------- lists */

struct list_case {
	const char *desc;
	const char *text;
	const char *want[6];
};

static const struct list_case list_cases[] = {
	{ "empty", "", { NULL } },
	{ "only separators", " ,, \t", { NULL } },
	{ "commas", "a,b,c", { "a", "b", "c", NULL } },
	{ "commas and spaces", " a , b\tc\n d ", { "a", "b", "c", "d", NULL } },
	{ "brace group one item", "{ inet:host:port, connect_timeout=10s }, unix:/x",
	  { "{ inet:host:port, connect_timeout=10s }", "unix:/x", NULL } },
	{ "inline table one item", "check_client_access inline:{ a=b, c=d } permit",
	  { "check_client_access", "inline:{ a=b, c=d }", "permit", NULL } },
	{ "nested braces", "{a {b, c} d},e", { "{a {b, c} d}", "e", NULL } },
	{ "unterminated brace runs to end", "a {b, c", { "a", "{b, c", NULL } },
};

static void test_split_list(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof list_cases / sizeof list_cases[0]; i++) {
		const struct list_case *k = &list_cases[i];
		size_t n, want_n = 0;
		char **v = conf_split_list(k->text, &n);
		while (k->want[want_n])
			want_n++;
		if (n != want_n)
			fail_msg("%s: %zu items, want %zu", k->desc, n, want_n);
		for (size_t j = 0; j < n; j++)
			if (strcmp(v[j], k->want[j]) != 0)
				fail_msg("%s: item %zu \"%s\", want \"%s\"", k->desc, j, v[j],
					 k->want[j]);
		assert_null(v[n]);
		conf_list_free(v, n);
	}
}

static void test_conf_list(void **state)
{
	(void)state;
	struct conf *c = must_load("conf_list",
				   "smtpd_milters = { inet:127.0.0.1:8891, connect_timeout=10s },\n"
				   "   unix:/run/x.sock\n"
				   "net = 10.0.0.0/8\n"
				   "mynetworks = 127.0.0.0/8, $net");
	size_t n;
	const char *const *v = conf_list(c, "smtpd_milters", &n);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], "{ inet:127.0.0.1:8891, connect_timeout=10s }");
	assert_string_equal(v[1], "unix:/run/x.sock");
	v = conf_list(c, "mynetworks", &n);
	assert_int_equal(n, 2);
	assert_string_equal(v[1], "10.0.0.0/8");
	v = conf_list(c, "smtpd_banner", &n);	/* any value can be read as a list */
	assert_int_equal(n, 2);
	assert_string_equal(v[1], "ESMTP");
	v = conf_list(c, "empty", &n);
	assert_int_equal(n, 0);
	conf_free(&c);
}

/* ------------------------------------------------------------- warnings */

struct warn_case {
	const char *desc;
	const char *text;
	const char *want;	/* warnings joined with '\n' */
};

static const struct warn_case warn_cases[] = {
	{ "none", "x = 1", "" },
	{ "unknown parameter", "x = 1\n\nfoo_bar = 2",
	  "/etc/sluice.conf:3: unknown parameter foo_bar" },
	{ "two unknown", "aa = 1\nbb = 2",
	  "/etc/sluice.conf:1: unknown parameter aa\n/etc/sluice.conf:2: unknown parameter bb" },
	{ "ignored prefixes", "spf_timeout = 3\ndmarc_reject = yes", "" },
	{ "prefix of another table is known", "dkim_enable = yes", "" },
	{ "referenced user macro", "nets = 10.0.0.0/8\nmynetworks = $nets", "" },
	{ "undefined reference", "x = $nosuch",
	  "/etc/sluice.conf:1: undefined parameter $nosuch in the value of x (expands to nothing)" },
	{ "conditional on undefined is quiet", "x = ${nosuch?a}${nosuch:b}", "" },
};

static char *join_warnings(const struct conf *c)
{
	size_t n;
	const char *const *w = conf_warnings(c, &n);
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, "");
	for (size_t i = 0; i < n; i++)
		sbuf_printf(&b, "%s%s", i ? "\n" : "", w[i]);
	assert_null(w[n]);
	return sbuf_steal(&b);
}

static void test_warnings(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof warn_cases / sizeof warn_cases[0]; i++) {
		const struct warn_case *k = &warn_cases[i];
		struct conf *c = must_load(k->desc, k->text);
		char *got = join_warnings(c);
		if (strcmp(got, k->want) != 0)
			fail_msg("%s:\n got: %s\nwant: %s", k->desc, got, k->want);
		free(got);
		conf_free(&c);
	}
}

/* ----------------------------------------------- override, is_set, where */

static void test_where_and_is_set(void **state)
{
	(void)state;
	struct conf *c = must_load("where", "# hi\nmyhostname = mx.a\n\nprocess_limit =\n  5");
	assert_true(conf_is_set(c, "myhostname"));
	assert_string_equal(conf_where(c, "myhostname"), "/etc/sluice.conf:2");
	assert_string_equal(conf_where(c, "process_limit"), "/etc/sluice.conf:4");
	assert_false(conf_is_set(c, "mydomain"));
	assert_string_equal(conf_where(c, "mydomain"), "default");
	assert_string_equal(conf_path(c), "/etc/sluice.conf");
	conf_free(&c);
}

static void test_override(void **state)
{
	(void)state;
	struct conf *c = must_load("override", "mydomain = a.example\nprocess_limit = 5");
	char *err = NULL;
	const char *old_origin = conf_str(c, "myorigin");
	assert_string_equal(old_origin, "a.example");
	assert_int_equal(conf_override(c, "mydomain", "b.example", &err), 0);
	assert_string_equal(conf_str(c, "myorigin"), "b.example");	/* re-expanded */
	assert_string_equal(old_origin, "a.example");	/* borrowed pointer still valid */
	assert_string_equal(conf_where(c, "mydomain"), "override");
	assert_int_equal(conf_override(c, "smtpd_timeout", "10m", &err), 0);
	assert_int_equal(conf_time_s(c, "smtpd_timeout"), 600);
	assert_true(conf_is_set(c, "smtpd_timeout"));

	assert_int_equal(conf_override(c, "process_limit", "many", &err), -1);
	assert_string_equal(err, "override: bad value for process_limit: \"many\" "
				 "(expected a number)");
	free(err);
	assert_int_equal(conf_int(c, "process_limit"), 5);	/* old value kept */
	assert_string_equal(conf_where(c, "process_limit"), "/etc/sluice.conf:2");

	assert_int_equal(conf_override(c, "smtpd_tls_enable", "maybe", &err), -1);
	free(err);
	assert_false(conf_is_set(c, "smtpd_tls_enable"));
	assert_int_equal(conf_override(c, "x", "$x", &err), -1);	/* loop */
	free(err);
	assert_int_equal(conf_override(c, "bad name", "v", &err), -1);
	free(err);

	assert_int_equal(conf_override(c, "nosuch", "v", &err), 0);
	char *w = join_warnings(c);
	assert_string_equal(w, "override: unknown parameter nosuch");
	free(w);
	conf_free(&c);
}

/* ---------------------------------------------------------------- files */

static void test_load_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_conf.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/sluice.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("# sluice\r\nmyhostname = mx.file\r\nmessage_size_limit =\r\n  1024\r\n", f);
	fclose(f);
	char *err = NULL;
	struct conf *c = conf_load(path, tables, NULL, &err);
	assert_non_null(c);
	assert_string_equal(conf_str(c, "myhostname"), "mx.file");
	assert_int_equal(conf_size(c, "message_size_limit"), 1024);
	conf_free(&c);
	unlink(path);
	free(path);
	rmdir(dir);
}

static void test_load_file_errors(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_conf.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/sluice.conf", dir);
	char *err = NULL;
	assert_null(conf_load(path, tables, NULL, &err));	/* missing file */
	assert_non_null(strstr(err, "cannot open"));
	free(err);

	FILE *f = fopen(path, "w");
	fwrite("x = 1\ny = a\0b\n", 1, 14, f);
	fclose(f);
	assert_null(conf_load(path, tables, NULL, &err));
	char *want = xasprintf("%s:2: NUL byte in line", path);
	assert_string_equal(err, want);
	free(want);
	free(err);

	f = fopen(path, "w");
	fputs("x = ", f);
	for (int i = 0; i < CONF_MAX_LINE_BYTES + 10; i++)
		fputc('a', f);
	fclose(f);
	assert_null(conf_load(path, tables, NULL, &err));
	assert_non_null(strstr(err, ":1: line too long"));
	free(err);
	unlink(path);
	free(path);
	rmdir(dir);
}

static void test_lines_reader(void **state)
{
	(void)state;
	const char *text = "a 1\n  2\n#c\n\nb\r\n\t# x\n  3\nc";
	struct conf_lines *r = conf_lines_new(text, strlen(text), "t", 0);
	const char *line;
	int no;
	char *err = NULL;
	assert_int_equal(conf_lines_next(r, &line, &no, &err), 1);
	assert_string_equal(line, "a 1 2");
	assert_int_equal(no, 1);
	assert_int_equal(conf_lines_next(r, &line, &no, &err), 1);
	assert_string_equal(line, "b 3");
	assert_int_equal(no, 5);
	assert_int_equal(conf_lines_next(r, &line, &no, &err), 1);
	assert_string_equal(line, "c");
	assert_int_equal(no, 8);
	assert_int_equal(conf_lines_next(r, &line, &no, &err), 0);
	conf_lines_free(&r);
	assert_null(r);
}

/* A bad default in a parameter table is our bug: panic (abort), even with an empty file. */
static void test_bad_default_panics(void **state)
{
	(void)state;
	static const struct conf_param bad[] = {
		{ "limit", CONF_INT, "lots", 0, 0, NULL, 0 },
		{ NULL, 0, NULL, 0, 0, NULL, 0 },
	};
	static const struct conf_param *const bad_tables[] = { bad, NULL };
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *err;
		if (!freopen("/dev/null", "w", stderr))
			_exit(1);
		conf_load_string("limit = 5", "t", bad_tables, NULL, &err);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expansion),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_deep_chain),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_bools),
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_split_list),
		cmocka_unit_test(test_conf_list),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_where_and_is_set),
		cmocka_unit_test(test_override),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_load_file_errors),
		cmocka_unit_test(test_lines_reader),
		cmocka_unit_test(test_bad_default_panics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
