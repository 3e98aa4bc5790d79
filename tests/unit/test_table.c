/*
 * test_table: every table type, Postfix lookup orders, reload, table sets.
 * Files are written into a mkdtemp directory and removed at the end.
 */
#include "conf/table.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char tmpdir[64];
static int file_seq;

/* write_file - content (len bytes) into a fresh file; returns its path (caller frees). */
static char *write_file_n(const char *content, size_t len)
{
	char *path = xasprintf("%s/f%d", tmpdir, ++file_seq);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(content, 1, len, f), len);
	fclose(f);
	return path;
}

static char *write_file(const char *content)
{
	return write_file_n(content, strlen(content));
}

/* rewrite - replace the content of an existing path. */
static void rewrite(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static struct table *open_file(const char *type, const char *content, char **path_out)
{
	char *path = write_file(content), *err = NULL;
	char *spec = xasprintf("%s:%s", type, path);
	struct table *t = table_open(spec, &err);
	if (!t)
		fail_msg("%s: %s", spec, err);
	free(spec);
	if (path_out)
		*path_out = path;
	else
		free(path);
	return t;
}

/* expect - one lookup result (*got_p is read after the lookup ran); want NULL = not found. */
static void expect(const char *desc, int found, const char **got_p, const char *want)
{
	const char *got = *got_p;
	if (!want && found)
		fail_msg("%s: found \"%s\", want not found", desc, got);
	if (want && !found)
		fail_msg("%s: not found, want \"%s\"", desc, want);
	if (want && strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", desc, got, want);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_table.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 1; i <= file_seq; i++) {
		char *p = xasprintf("%s/f%d", tmpdir, i);
		unlink(p);
		free(p);
	}
	return rmdir(tmpdir);
}

/* ------------------------------------------------------ access (hash) */

static const char access_file[] =
	"# Postfix access table, as it would be fed to postmap\n"
	"example.com        REJECT\n"
	"boss@example.com   OK boss\n"
	".sub.example.org   OK subdomains\n"
	"    # indented comment\n"
	"user@example.net   DISCARD spam\n"
	"    source\n"
	"\n"
	"postmaster@        OK postmaster\n"
	"<>                 REJECT no bounces\n"
	"Mixed.Case.TLD     OK mixed\n"
	"1.2.3              REJECT net\n"
	"10.0.0.5           OK host\n"
	"client.example.com OK client\n"
	"2001:db8::5        OK v6\n"
	"example.com        OK duplicate ignored\r\n";

struct addr_case {
	const char *desc;
	const char *addr;
	const char *want;
};

static const struct addr_case access_cases[] = {
	{ "user@domain", "user@example.net", "DISCARD spam source" },
	{ "user@domain beats domain", "boss@example.com", "OK boss" },
	{ "domain", "other@example.com", "REJECT" },
	{ "domain beats user@", "postmaster@example.com", "REJECT" },
	{ "parent domain (parent style)", "x@mail.example.com", "REJECT" },
	{ "parent domain (.parent style)", "x@a.b.sub.example.org", "OK subdomains" },
	{ ".parent does not match itself", "x@sub.example.org", NULL },
	{ "user@ localpart", "postmaster@nowhere.test", "OK postmaster" },
	{ "null sender as <>", "", "REJECT no bounces" },
	{ "case-insensitive keys", "USER@Example.NET", "DISCARD spam source" },
	{ "mixed-case key in file", "a@mixed.case.tld", "OK mixed" },
	{ "no match", "nobody@nowhere.test", NULL },
	{ "address literal: no parents", "x@[192.0.2.1]", NULL },
	{ "bare localpart", "postmaster", NULL },
};

static void test_access_order(void **state)
{
	(void)state;
	struct table *t = open_file("hash", access_file, NULL);
	for (size_t i = 0; i < sizeof access_cases / sizeof access_cases[0]; i++) {
		const struct addr_case *k = &access_cases[i];
		const char *v = NULL;
		int r = table_lookup_addr(t, k->addr, TABLE_ADDR_ACCESS, &v);
		expect(k->desc, r, &v, k->want);
	}
	const char *v = NULL;
	expect("plain lookup", table_lookup(t, "EXAMPLE.COM", &v), &v, "REJECT");
	expect("plain lookup misses parent", table_lookup(t, "a.example.com", &v), &v, NULL);
	expect("domain lookup parent", table_lookup_domain(t, "a.b.example.com", &v), &v, "REJECT");
	expect("domain lookup none", table_lookup_domain(t, "example.net", &v), &v, NULL);
	assert_non_null(strstr(table_spec(t), "hash:/tmp/test_table."));
	table_free(&t);
	assert_null(t);
}

static const char virtual_file[] =
	"info@example.com   alice\n"
	"@example.com       catchall\n"
	"@other.test        bob, carol\n";

static const struct addr_case virtual_cases[] = {
	{ "user@domain", "info@example.com", "alice" },
	{ "@domain catch-all", "x@example.com", "catchall" },
	{ "no parent domains for virtual", "x@sub.example.com", NULL },
	{ "other domain", "Y@Other.Test", "bob, carol" },
	{ "no match", "x@nowhere.test", NULL },
	{ "no null-sender key for virtual", "", NULL },
};

static void test_virtual_order(void **state)
{
	(void)state;
	struct table *t = open_file("texthash", virtual_file, NULL);
	for (size_t i = 0; i < sizeof virtual_cases / sizeof virtual_cases[0]; i++) {
		const struct addr_case *k = &virtual_cases[i];
		const char *v = NULL;
		int r = table_lookup_addr(t, k->addr, TABLE_ADDR_VIRTUAL, &v);
		expect(k->desc, r, &v, k->want);
	}
	table_free(&t);
}

/* -------------------------------------------------------------- client */

struct client_case {
	const char *desc;
	const char *type;	/* file type */
	const char *content;
	const char *host, *addr;
	const char *want;
};

static const char client_re[] = "/^mx\\./ host\n/^192\\.0\\.2\\./ addr\n/example\\.com$/ dom\n";

static const struct client_case client_cases[] = {
	{ "hostname", "hash", access_file, "client.example.com", "192.0.2.1", "OK client" },
	{ "hostname parent", "hash", access_file, "mx.example.com", "192.0.2.1", "REJECT" },
	{ "hostname before address", "hash", access_file, "client.example.com", "10.0.0.5",
	  "OK client" },
	{ "unknown hostname skipped", "hash", access_file, "unknown", "10.0.0.5", "OK host" },
	{ "NULL hostname skipped", "hash", access_file, NULL, "10.0.0.5", "OK host" },
	{ "network prefix 1.2.3", "hash", access_file, "unknown", "1.2.3.4", "REJECT net" },
	{ "no shorter prefix match", "hash", access_file, "unknown", "1.2.99.1", NULL },
	{ "ipv6 address", "hash", access_file, "unknown", "2001:db8::5", "OK v6" },
	{ "ipv6 no prefixes", "hash", access_file, "unknown", "2001:db8::6", NULL },
	{ "pcre hostname first", "pcre", client_re, "mx.example.org", "192.0.2.1", "host" },
	{ "pcre then address", "pcre", client_re, "unknown", "192.0.2.1", "addr" },
	{ "pcre full hostname only", "pcre", client_re, "a.example.com", "198.51.100.1", "dom" },
	{ "regexp then address", "regexp", client_re, "other.org", "192.0.2.9", "addr" },
	{ "cidr address only", "cidr", "192.0.2.0/24 net\n", "mx.example.com", "192.0.2.7", "net" },
	{ "cidr no match", "cidr", "192.0.2.0/24 net\n", "192.0.2.7", "198.51.100.1", NULL },
};

static void test_client_order(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof client_cases / sizeof client_cases[0]; i++) {
		const struct client_case *k = &client_cases[i];
		struct table *t = open_file(k->type, k->content, NULL);
		const char *v = NULL;
		int r = table_lookup_client(t, k->host, k->addr, &v);
		expect(k->desc, r, &v, k->want);
		table_free(&t);
	}
}

/* ---------------------------------------------------------------- cidr */

static const char cidr_file[] =
	"# cidr_table(5)\n"
	"192.0.2.0/24       REJECT net24\n"
	"192.0.2.128/25     OK never reached\n"
	"10.1.2.3           OK single\n"
	"2001:db8::/32      REJECT v6\n"
	"[2001:db8:1::]/48  OK never reached\n"
	"::1                OK\n"
	"  loopback6\n"
	"203.0.113.0/31     OK pair\n"
	"0.0.0.0/0          DUNNO all4\n";

static const struct addr_case cidr_cases[] = {
	{ "first match wins", "192.0.2.200", "REJECT net24" },
	{ "bare address is /32", "10.1.2.3", "OK single" },
	{ "neighbour falls through to /0", "10.1.2.4", "DUNNO all4" },
	{ "v6 first match", "2001:db8:1::5", "REJECT v6" },
	{ "bare v6 is /128 (continued result)", "::1", "OK loopback6" },
	{ "v6 no match (no ::/0)", "::2", NULL },
	{ "bracketed key", "[192.0.2.1]", "REJECT net24" },
	{ "v4-mapped v6 key", "::ffff:192.0.2.1", "REJECT net24" },
	{ "odd prefix /31", "203.0.113.1", "OK pair" },
	{ "not an address", "mail.example.com", NULL },
	{ "empty key", "", NULL },
};

static void test_cidr(void **state)
{
	(void)state;
	struct table *t = open_file("cidr", cidr_file, NULL);
	for (size_t i = 0; i < sizeof cidr_cases / sizeof cidr_cases[0]; i++) {
		const char *v = NULL;
		int r = table_lookup(t, cidr_cases[i].addr, &v);
		expect(cidr_cases[i].desc, r, &v, cidr_cases[i].want);
	}
	table_free(&t);
}

/* ------------------------------------------------------ regexp / pcre */

struct re_case {
	const char *desc;
	const char *types;	/* "regexp pcre", "regexp" or "pcre" */
	const char *content;
	const char *key;
	const char *want;
};

static const struct re_case re_cases[] = {
	{ "$1 substitution (case-insensitive by default)", "regexp pcre",
	  "/^(.*)@example\\.com$/ FILTER smtp:[$1.internal]", "Joe@Example.COM",
	  "FILTER smtp:[Joe.internal]" },
	{ "${n} and $$", "regexp pcre", "/^(a)(b)/ ${2}$1$$", "abc", "ba$" },
	{ "$0 whole match", "regexp pcre", "/b+/ <$0>", "abbbc", "<bbb>" },
	{ "unset group is empty", "regexp pcre", "/^(x)?y$/ [$1]", "y", "[]" },
	{ "flag i: case-sensitive", "regexp pcre", "/^abc$/i yes", "ABC", NULL },
	{ "flag i: exact case", "regexp pcre", "/^abc$/i yes", "abc", "yes" },
	{ "first match wins", "regexp pcre", "/a/ one\n/b/ two", "ab", "one" },
	{ "second rule", "regexp pcre", "/a/ one\n/b/ two", "xb", "two" },
	{ "no match", "regexp pcre", "/a/ one", "zzz", NULL },
	{ "negation matches", "regexp pcre", "!/\\.test$/ not test", "x@y.com", "not test" },
	{ "negation does not match", "regexp pcre", "!/\\.test$/ not test", "x@y.test", NULL },
	{ "if block taken", "regexp pcre",
	  "if /@example\\.com$/\n/^admin@/ inside\nendif\n/^admin@/ outside",
	  "admin@example.com", "inside" },
	{ "if block skipped", "regexp pcre",
	  "if /@example\\.com$/\n/^admin@/ inside\nendif\n/^admin@/ outside",
	  "admin@example.org", "outside" },
	{ "if with negation", "regexp pcre", "if !/@example\\.com$/\n/./ foreign\nendif",
	  "a@b.org", "foreign" },
	{ "if with negation skipped", "regexp pcre", "if !/@example\\.com$/\n/./ foreign\nendif",
	  "a@example.com", NULL },
	{ "nested if", "regexp pcre",
	  "IF /^a/\nif /b$/\n/./ ab\nendif\n/./ a-only\nENDIF\n/./ other",
	  "axb", "ab" },
	{ "nested if inner skipped", "regexp pcre",
	  "IF /^a/\nif /b$/\n/./ ab\nendif\n/./ a-only\nENDIF\n/./ other",
	  "axc", "a-only" },
	{ "nested if outer skipped", "regexp pcre",
	  "IF /^a/\nif /b$/\n/./ ab\nendif\n/./ a-only\nENDIF\n/./ other",
	  "zb", "other" },
	{ "comments and continued result", "regexp pcre", "# c\n/^x$/ a\n  # c2\n  b", "x",
	  "a b" },
	{ "other delimiter", "regexp pcre", "|^a/b$| slash", "a/b", "slash" },
	{ "escaped delimiter", "regexp pcre", "/^a\\/b$/ esc", "a/b", "esc" },
	{ "spaces in pattern", "regexp pcre", "/^a b$/ sp", "a b", "sp" },
	{ "regexp x flag: basic RE", "regexp", "/^a+$/x plus", "a+", "plus" },
	{ "pcre x flag: extended", "pcre", "/^a b $/x ab", "ab", "ab" },
	{ "pcre lookahead", "pcre", "/^(?!root@)(.*)@/ user=$1", "joe@x", "user=joe" },
	{ "pcre lookahead negative", "pcre", "/^(?!root@)(.*)@/ user=$1", "root@x", NULL },
	{ "regexp CRLF file", "regexp pcre", "/^a$/ one\r\n/^b$/ two\r\n", "b", "two" },
};

static void test_regexp_pcre(void **state)
{
	(void)state;
	static const char *const types[] = { "regexp", "pcre" };
	for (size_t i = 0; i < sizeof re_cases / sizeof re_cases[0]; i++) {
		const struct re_case *k = &re_cases[i];
		for (int j = 0; j < 2; j++) {
			if (!strstr(k->types, types[j]))
				continue;
			struct table *t = open_file(types[j], k->content, NULL);
			const char *v = NULL;
			char *desc = xasprintf("%s: %s", types[j], k->desc);
			expect(desc, table_lookup(t, k->key, &v), &v, k->want);
			free(desc);
			table_free(&t);
		}
	}
}

static void test_pattern_addr_full_only(void **state)
{
	(void)state;
	struct table *t = open_file("pcre", "/^example\\.com$/ dom\n/^user@$/ lp\n", NULL);
	const char *v = NULL;
	expect("pcre: no domain lookup", table_lookup_addr(t, "u@example.com", TABLE_ADDR_ACCESS,
							   &v), &v, NULL);
	expect("pcre: no user@ lookup", table_lookup_addr(t, "user@x.org", TABLE_ADDR_ACCESS, &v),
	       &v, NULL);
	expect("pcre: full string", table_lookup_addr(t, "example.com", TABLE_ADDR_ACCESS, &v), &v,
	       "dom");
	table_free(&t);
}

/* ------------------------------------------------------ static / inline */

struct spec_case {
	const char *desc;
	const char *spec;
	const char *key;
	const char *want;
};

static const struct spec_case spec_cases[] = {
	{ "static", "static:OK", "anything", "OK" },
	{ "static with braces", "static:{ REJECT go away }", "x", "REJECT go away" },
	{ "static empty", "static:", "x", "" },
	{ "inline", "inline:{ Foo=bar, baz=qux }", "baz", "qux" },
	{ "inline case-insensitive key", "inline:{ Foo=bar, baz=qux }", "FOO", "bar" },
	{ "inline miss", "inline:{ Foo=bar, baz=qux }", "nope", NULL },
	{ "inline braced item with spaces", "inline:{ { k = v, w }, a=b }", "k", "v, w" },
	{ "inline spaces around =", "inline:{ {a = b} }", "a", "b" },
	{ "inline no spaces", "inline:{a=1,b=2}", "b", "2" },
	{ "inline duplicate: first wins", "inline:{a=1,a=2}", "a", "1" },
	{ "type name case-insensitive", "INLINE:{a=1}", "a", "1" },
};

static void test_static_inline(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof spec_cases / sizeof spec_cases[0]; i++) {
		const struct spec_case *k = &spec_cases[i];
		char *err = NULL;
		struct table *t = table_open(k->spec, &err);
		if (!t)
			fail_msg("%s: %s", k->desc, err);
		const char *v = NULL;
		expect(k->desc, table_lookup(t, k->key, &v), &v, k->want);
		assert_int_equal(table_reload(t, &err), 0);
		table_free(&t);
	}
	struct table *t = table_open("static:DUNNO", NULL);
	const char *v = NULL;
	expect("static addr", table_lookup_addr(t, "a@b", TABLE_ADDR_ACCESS, &v), &v, "DUNNO");
	expect("static client", table_lookup_client(t, NULL, "192.0.2.1", &v), &v, "DUNNO");
	table_free(&t);
}

/* --------------------------------------------------------------- errors */

struct err_case {
	const char *desc;
	const char *type;	/* NULL: content is the whole spec */
	const char *content;
	const char *want;	/* after "path:" for files; whole message for specs */
};

static const struct err_case err_cases[] = {
	{ "hash key without value", "hash", "a 1\n\nlonely\n", "3: expected format: key whitespace value" },
	{ "hash leading continuation", "hash", "  a 1\n",
	  "1: continuation line (starts with white space) without a preceding line" },
	{ "cidr host bits", "cidr", "# x\n192.0.2.1/24 REJECT\n",
	  "2: non-null host address bits (the network address must end in zeros): \"192.0.2.1/24\"" },
	{ "cidr bad address", "cidr", "300.1.1.1 x\n", "1: bad network address: \"300.1.1.1\"" },
	{ "cidr hostname", "cidr", "mail.example.com x\n",
	  "1: bad network address: \"mail.example.com\"" },
	{ "cidr prefix too long v4", "cidr", "1.2.3.0/33 x\n",
	  "1: bad network prefix length: \"1.2.3.0/33\"" },
	{ "cidr prefix too long v6", "cidr", "2001:db8::/129 x\n",
	  "1: bad network prefix length: \"2001:db8::/129\"" },
	{ "cidr empty prefix", "cidr", "1.2.3.0/ x\n", "1: bad network prefix length: \"1.2.3.0/\"" },
	{ "cidr junk prefix", "cidr", "1.2.3.0/2a x\n",
	  "1: bad network prefix length: \"1.2.3.0/2a\"" },
	{ "cidr v6 host bits", "cidr", "2001:db8::1/64 x\n",
	  "1: non-null host address bits (the network address must end in zeros): "
	  "\"2001:db8::1/64\"" },
	{ "cidr missing result", "cidr", "1.2.3.4\n",
	  "1: expected format: network/prefix result: \"1.2.3.4\"" },
	{ "regexp bad regex", "regexp", "/a/ ok\n/(/ x\n", "2: bad regular expression /(/: " },
	{ "pcre bad regex", "pcre", "/(/ x\n", "1: bad regular expression /(/ at offset 1: " },
	{ "pcre missing result", "pcre", "/a/\n", "1: missing result after the pattern" },
	{ "pcre missing delimiter", "pcre", "/abc x\n", "1: missing closing delimiter of /pattern/" },
	{ "pcre not a pattern", "pcre", "abc x\n", "1: expected /pattern/" },
	{ "pcre $2 with one group", "pcre", "/(a)/ $2\n",
	  "1: $number in result larger than the number of ( ) groups" },
	{ "regexp $1 without groups", "regexp", "/a/ $1\n",
	  "1: $number in result larger than the number of ( ) groups" },
	{ "pcre $1 in negated", "pcre", "!/(a)/ $1\n",
	  "1: $number substitution in the result of a negated pattern" },
	{ "pcre bad $", "pcre", "/a/ $x\n", "1: bad $ substitution in result (use $1..$9 or $$)" },
	{ "pcre unknown flag", "pcre", "/a/q x\n", "1: unknown pcre flag \"q\"" },
	{ "regexp unknown flag", "regexp", "/a/s x\n", "1: unknown regexp flag \"s\"" },
	{ "endif without if", "pcre", "/a/ b\nendif\n", "2: ENDIF without IF" },
	{ "if without endif", "regexp", "/a/ b\nif /x/\nif /y/\n/z/ q\nendif\n",
	  "2: IF without ENDIF" },
	{ "text after if", "pcre", "if /a/ x\nendif\n", "1: text after the pattern of an IF" },
	{ "unknown type", NULL, "foo:bar", "unsupported table type in \"foo:bar\"" },
	{ "no type", NULL, "nocolon", "bad table \"nocolon\" (expected type:name)" },
	{ "missing name", NULL, "hash:", "bad table \"hash:\" (missing name)" },
	{ "inline no =", NULL, "inline:{ a=b, c }", "inline:{ a=b, c }: bad entry \"c\" (expected key=value)" },
	{ "inline empty key", NULL, "inline:{ =b }", "inline:{ =b }: bad entry \"=b\" (expected key=value)" },
	{ "inline unterminated", NULL, "inline:{ a=b",
	  "inline:{ a=b: expected inline:{ key=value, ... } with balanced braces" },
	{ "inline no braces", NULL, "inline:a=b",
	  "inline:a=b: expected inline:{ key=value, ... } with balanced braces" },
	{ "inline stray brace", NULL, "inline:{ a=b }}{",
	  "inline:{ a=b }}{: expected inline:{ key=value, ... } with balanced braces" },
	{ "missing file", NULL, "hash:/nonexistent/sluice/x",
	  "/nonexistent/sluice/x: cannot open: No such file or directory" },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
		const struct err_case *k = &err_cases[i];
		char *path = k->type ? write_file(k->content) : NULL;
		char *spec = k->type ? xasprintf("%s:%s", k->type, path) : xstrdup(k->content);
		char *want = k->type ? xasprintf("%s:%s", path, k->want) : xstrdup(k->want);
		char *err = NULL;
		struct table *t = table_open(spec, &err);
		if (t)
			fail_msg("%s: opened, want error", k->desc);
		if (!err || strncmp(err, want, strlen(want)) != 0)
			fail_msg("%s:\n got: %s\nwant: %s", k->desc, err ? err : "(null)", want);
		free(err);
		free(want);
		free(spec);
		free(path);
	}
}

static void test_bad_bytes(void **state)
{
	(void)state;
	char *path = write_file_n("a 1\nb 2\0x\n", 10);
	char *spec = xasprintf("texthash:%s", path), *err = NULL;
	assert_null(table_open(spec, &err));
	char *want = xasprintf("%s:2: NUL byte in line", path);
	assert_string_equal(err, want);
	free(err);
	free(want);
	free(spec);
	free(path);

	size_t n = 2 * 1024 * 1024;
	char *big = xmalloc(n + 1);
	memset(big, 'k', n);
	big[n] = 0;
	path = write_file(big);
	spec = xasprintf("pcre:%s", path);
	assert_null(table_open(spec, &err));
	assert_non_null(strstr(err, ":1: line too long"));
	free(err);
	free(spec);
	free(path);
	free(big);
}

/* --------------------------------------------------------------- reload */

static void test_reload(void **state)
{
	(void)state;
	char *path, *err = NULL;
	struct table *t = open_file("hash", "a 1\n", &path);
	const char *v = NULL;
	expect("before reload", table_lookup(t, "a", &v), &v, "1");
	rewrite(path, "a 2\nb 3\n");
	assert_int_equal(table_reload(t, &err), 0);
	expect("reloaded a", table_lookup(t, "a", &v), &v, "2");
	expect("reloaded b", table_lookup(t, "b", &v), &v, "3");

	rewrite(path, "a 9\nbad\n");
	assert_int_equal(table_reload(t, &err), -1);
	char *want = xasprintf("%s:2: expected format: key whitespace value", path);
	assert_string_equal(err, want);
	free(want);
	free(err);
	expect("old content kept", table_lookup(t, "a", &v), &v, "2");

	unlink(path);
	assert_int_equal(table_reload(t, &err), -1);
	assert_non_null(strstr(err, "cannot open"));
	free(err);
	expect("old content kept after unlink", table_lookup(t, "b", &v), &v, "3");
	table_free(&t);
	rewrite(path, "");	/* teardown removes it */
	free(path);
}

static void test_reload_pcre(void **state)
{
	(void)state;
	char *path, *err = NULL;
	struct table *t = open_file("pcre", "/^(a)/ x$1\n", &path);
	const char *v = NULL;
	rewrite(path, "if /a/\n/b/ y\n");
	assert_int_equal(table_reload(t, &err), -1);
	free(err);
	expect("pcre old rules kept", table_lookup(t, "abc", &v), &v, "xa");
	rewrite(path, "/^(a)(b)/ $2$1\n");
	assert_int_equal(table_reload(t, &err), 0);
	expect("pcre new rules", table_lookup(t, "abc", &v), &v, "ba");
	table_free(&t);
	free(path);
}

/* ---------------------------------------------------------- table sets */

static void test_table_set(void **state)
{
	(void)state;
	char *p1 = write_file("a 1\n"), *p2 = write_file("192.0.2.0/24 net\n");
	char *s1 = xasprintf("hash:%s", p1), *s2 = xasprintf("cidr:%s", p2), *err = NULL;
	struct table_set *s = table_set_new();
	struct table *t1 = table_set_get(s, s1, &err);
	struct table *t2 = table_set_get(s, s2, &err);
	assert_non_null(t1);
	assert_non_null(t2);
	rewrite(p1, "a 2\n");
	assert_ptr_equal(table_set_get(s, s1, &err), t1);	/* opened once: not re-read */
	const char *v = NULL;
	expect("set: not re-read", table_lookup(t1, "a", &v), &v, "1");
	assert_null(table_set_get(s, "hash:/nonexistent/x", &err));
	free(err);

	rewrite(p2, "192.0.2.1/24 bad\n");
	err = NULL;
	assert_int_equal(table_set_reload(s, &err), -1);
	assert_non_null(strstr(err, "non-null host address bits"));
	free(err);
	expect("set: good table reloaded", table_lookup(t1, "a", &v), &v, "2");
	expect("set: bad table kept", table_lookup(t2, "192.0.2.9", &v), &v, "net");

	rewrite(p2, "192.0.2.0/25 low\n");
	assert_int_equal(table_set_reload(s, &err), 0);
	expect("set: reload ok", table_lookup(t2, "192.0.2.9", &v), &v, "low");
	table_set_free(&s);
	assert_null(s);
	free(s1);
	free(s2);
	free(p1);
	free(p2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_access_order),
		cmocka_unit_test(test_virtual_order),
		cmocka_unit_test(test_client_order),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_regexp_pcre),
		cmocka_unit_test(test_pattern_addr_full_only),
		cmocka_unit_test(test_static_inline),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_bad_bytes),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_reload_pcre),
		cmocka_unit_test(test_table_set),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
