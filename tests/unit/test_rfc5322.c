/*
 * test_rfc5322: proto/rfc5322 as a case table. Every case runs three times:
 * as written, with each space turned into a CRLF fold ("\r\n ") and with each
 * space turned into an LF fold ("\n "; unfolding keeps the WSP, so the
 * results must not change), and each run reads from an exact-size heap copy
 * without a terminating NUL so ASan sees any over-read. Then unfolding
 * cases, the caps, embedded NULs and deep nesting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/rfc5322.h"

enum { F = 0, L = 1 };	/* rfc5322_parse_from, rfc5322_parse_addrlist */

struct rcase {
	const char *name;
	int mode;
	const char *in;
	int err;		/* expected enum rfc5322_err */
	const char *want;	/* describe() of the list, when err == 0 */
	const char *doms;	/* rfc5322_domains joined by ',', when err == 0 */
};

/* describe - "[\"display\" ]local@domain[ lit][ route][ g=group]" joined by " | ". */
static void describe(struct sbuf *b, const struct rfc5322_addrlist *l)
{
	sbuf_add(b, "", 0);
	for (size_t i = 0; i < l->n; i++) {
		const struct rfc5322_addr *a = &l->addr[i];
		if (i)
			sbuf_adds(b, " | ");
		if (a->display)
			sbuf_printf(b, "\"%s\" ", a->display);
		sbuf_printf(b, "%s@%s", a->local, a->domain);
		if (a->domain_literal)
			sbuf_adds(b, " lit");
		if (a->had_route)
			sbuf_adds(b, " route");
		if (a->group)
			sbuf_printf(b, " g=%s", a->group);
	}
}

static const struct rcase cases[] = {
	/* plain forms */
	{ "plain addr-spec", F, "user@example.com", 0, "user@example.com", "example.com" },
	{ "domain lower-cased, local kept", F, "User@Example.COM", 0, "User@example.com", "example.com" },
	{ "angle-addr alone", F, "<user@example.com>", 0, "user@example.com", "example.com" },
	{ "leading and trailing white space", F, "  \t user@example.com \t ", 0, "user@example.com", "example.com" },
	{ "dot-atom local part", F, "first.last@sub.example.org", 0, "first.last@sub.example.org", "sub.example.org" },
	{ "atext specials in local part", F, "!#$%&'*+-/=?^_`{|}~@example.com", 0,
	  "!#$%&'*+-/=?^_`{|}~@example.com", "example.com" },
	{ "atext in domain (RFC 5322 allows it)", F, "u@a_b.example", 0, "u@a_b.example", "a_b.example" },
	/* display names */
	{ "display name one atom", F, "John <john@example.com>", 0, "\"John\" john@example.com", "example.com" },
	{ "display name no space before <", F, "John<john@example.com>", 0, "\"John\" john@example.com", "example.com" },
	{ "display name obs-phrase with dot", F, "John Q. Public <jqp@example.com>", 0,
	  "\"John Q. Public\" jqp@example.com", "example.com" },
	{ "display name quoted with comma", F, "\"Doe, John\" <jd@example.com>", 0,
	  "\"Doe, John\" jd@example.com", "example.com" },
	{ "display name quoted-pairs resolved", F, "\"a \\\"b\\\" c\\\\\" <x@example.com>", 0,
	  "\"a \"b\" c\\\" x@example.com", "example.com" },
	{ "display name atoms and quoted mixed", F, "Dr. \"John\" Doe <d@example.com>", 0,
	  "\"Dr. John Doe\" d@example.com", "example.com" },
	{ "display name white space collapsed", F, "John  \t  Doe   <d@example.com>", 0,
	  "\"John Doe\" d@example.com", "example.com" },
	{ "display name tab inside quotes kept", F, "\"a\tb\" <x@example.com>", 0, "\"a\tb\" x@example.com",
	  "example.com" },
	{ "display name empty quoted string", F, "\"\" <a@example.com>", 0, "\"\" a@example.com", "example.com" },
	{ "display name with colon quoted", F, "\"Re: x\" <a@b.example>", 0, "\"Re: x\" a@b.example", "b.example" },
	/* local parts */
	{ "quoted local part with @", F, "\"a@b\"@example.com", 0, "a@b@example.com", "example.com" },
	{ "quoted local part with spaces", F, "\"john doe\"@example.com", 0, "john doe@example.com", "example.com" },
	{ "quoted local part in angle-addr", F, "Name <\"x y\"@example.com>", 0, "\"Name\" x y@example.com", "example.com" },
	{ "quoted local part with > and <", F, "<\"a>b<c\"@example.com>", 0, "a>b<c@example.com", "example.com" },
	{ "empty quoted local part", F, "\"\"@example.com", 0, "@example.com", "example.com" },
	/* comments */
	{ "comment before", F, "(comment) user@example.com", 0, "user@example.com", "example.com" },
	{ "comment after", F, "user@example.com (comment)", 0, "user@example.com", "example.com" },
	{ "comments inside addr-spec", F, "user(c1)@(c2)example.com(c3)", 0, "user@example.com", "example.com" },
	{ "comments inside angle-addr", F, "John <(c)john@example.com(c)>", 0, "\"John\" john@example.com", "example.com" },
	{ "nested comments", F, "(a (b (c) d) e) u@example.com", 0, "u@example.com", "example.com" },
	{ "comment with quoted-pair parens", F, "u@example.com (a \\) b \\( c)", 0, "u@example.com", "example.com" },
	{ "comment with @ and <> inside", F, "(x@evil.example <y@evil.example>) u@good.example", 0,
	  "u@good.example", "good.example" },
	{ "comment between display words", F, "John (middle) Doe <jd@example.com>", 0, "\"John Doe\" jd@example.com",
	  "example.com" },
	{ "comment around domain dots (obs-domain)", F, "u@example (x) . (y) com", 0, "u@example.com", "example.com" },
	{ "comment with latin-1 bytes", F, "u@example.com (\xe9t\xe9)", 0, "u@example.com", "example.com" },
	/* groups */
	{ "empty group (address-list)", L, "undisclosed-recipients:;", 0, "", "" },
	{ "empty group in From", F, "undisclosed-recipients:;", RFC5322_ERR_GROUP, NULL, NULL },
	{ "group with members", L, "Friends: a@one.example, B <b@two.example>;", 0,
	  "a@one.example g=Friends | \"B\" b@two.example g=Friends", "one.example,two.example" },
	{ "group then mailbox", L, "G: a@x.example;, c@y.example", 0, "a@x.example g=G | c@y.example",
	  "x.example,y.example" },
	{ "group with quoted name", L, "\"My Group\": a@x.example;", 0, "a@x.example g=My Group", "x.example" },
	{ "group obs-group-list (commas only)", L, "G: , ,;", 0, "", "" },
	{ "group with comments everywhere", L, "G (c) : (c) a@x.example (c) ; (c)", 0, "a@x.example g=G", "x.example" },
	{ "group not closed", L, "G: a@x.example", RFC5322_ERR_GROUP, NULL, NULL },
	{ "group nested", L, "A: B: c@d.example;;", RFC5322_ERR_GROUP, NULL, NULL },
	{ "group with member in From", F, "G: a@x.example;", RFC5322_ERR_GROUP, NULL, NULL },
	{ "group without name", L, ":;", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "unquoted colon in From display", F, "Re: x <a@b.example>", RFC5322_ERR_GROUP, NULL, NULL },
	/* several addresses */
	{ "two addresses, distinct domains", F, "a@one.example, b@two.example", 0, "a@one.example | b@two.example",
	  "one.example,two.example" },
	{ "same domain in three cases reported once", F, "a@Example.com, b@EXAMPLE.COM, c@example.com", 0,
	  "a@example.com | b@example.com | c@example.com", "example.com" },
	{ "mixed forms", F, "A <a@x.example>, \"B, C\" <bc@y.example>, d@X.example", 0,
	  "\"A\" a@x.example | \"B, C\" bc@y.example | d@x.example", "x.example,y.example" },
	{ "address-list of mailboxes", L, "a@x.example,b@y.example", 0, "a@x.example | b@y.example",
	  "x.example,y.example" },
	/* obsolete syntax (section 4) */
	{ "obs-mbox-list empty element", F, "a@b.example, , c@d.example", 0, "a@b.example | c@d.example",
	  "b.example,d.example" },
	{ "obs-mbox-list leading comma", F, ", a@b.example", 0, "a@b.example", "b.example" },
	{ "obs-mbox-list trailing comma", F, "a@b.example,", 0, "a@b.example", "b.example" },
	{ "obs-mbox-list only commas", F, " , ,, ", RFC5322_ERR_EMPTY, NULL, NULL },
	{ "obs-local-part CFWS around dots", F, "john . (c) doe@example.com", 0, "john.doe@example.com", "example.com" },
	{ "obs-local-part quoted words", F, "\"john\".\"doe\"@example.com", 0, "john.doe@example.com", "example.com" },
	{ "obs-local-part atom and quoted", F, "john.\"d e\"@example.com", 0, "john.d e@example.com", "example.com" },
	{ "obs-domain white space everywhere", F, "u @ example . com", 0, "u@example.com", "example.com" },
	{ "obs-route", F, "<@relay.example,@other.example:user@example.com>", 0, "user@example.com route",
	  "example.com" },
	{ "obs-route with display name", F, "Joe <@a.example:joe@example.com>", 0, "\"Joe\" joe@example.com route",
	  "example.com" },
	{ "obs-route empty elements", F, "<,@a.example,,@b.example:u@example.com>", 0, "u@example.com route",
	  "example.com" },
	{ "obs-route domain not reported", F, "<@evil.example:u@good.example>", 0, "u@good.example route",
	  "good.example" },
	{ "obs-route without colon", F, "<@a.example u@example.com>", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "obs-route bad domain", F, "<@a..example:u@example.com>", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "obs-phrase must start with a word", F, ". <a@example.com>", RFC5322_ERR_SYNTAX, NULL, NULL },
	/* UTF-8 (RFC 6532) and IDN */
	{ "UTF-8 domain kept", F, "u@b\xc3\xbc" "cher.example", 0, "u@b\xc3\xbc" "cher.example",
	  "b\xc3\xbc" "cher.example" },
	{ "UTF-8 local part and display name", F, "J\xc3\xbcrgen <j\xc3\xbcrgen@example.com>", 0,
	  "\"J\xc3\xbcrgen\" j\xc3\xbcrgen@example.com", "example.com" },
	{ "UTF-8 domain: only ASCII lower-cased", F, "u@B\xc3\x9c" "CHER.Example", 0, "u@b\xc3\x9c" "cher.example",
	  "b\xc3\x9c" "cher.example" },
	{ "A-label lower-cased", F, "u@XN--BCHER-KVA.example", 0, "u@xn--bcher-kva.example", "xn--bcher-kva.example" },
	{ "4-byte UTF-8 in domain", F, "u@\xf0\x9f\x98\x80.example", 0, "u@\xf0\x9f\x98\x80.example",
	  "\xf0\x9f\x98\x80.example" },
	{ "latin-1 byte in domain", F, "u@b\xe9.example", RFC5322_ERR_8BIT, NULL, NULL },
	{ "latin-1 unquoted display name", F, "J\xfcrgen <j@example.com>", RFC5322_ERR_8BIT, NULL, NULL },
	{ "latin-1 in quoted display name passes", F, "\"J\xfcrgen\" <j@example.com>", 0, "\"J\xfcrgen\" j@example.com",
	  "example.com" },
	{ "overlong UTF-8 dot", F, "u@a\xc0\xae" "example", RFC5322_ERR_8BIT, NULL, NULL },
	{ "UTF-8 surrogate", F, "u@\xed\xa0\x80.example", RFC5322_ERR_8BIT, NULL, NULL },
	{ "UTF-8 above U+10FFFF", F, "u@\xf4\x90\x80\x80.example", RFC5322_ERR_8BIT, NULL, NULL },
	{ "truncated UTF-8 at end", F, "u@example.com\xc3", RFC5322_ERR_8BIT, NULL, NULL },
	{ "lone continuation byte", F, "\x80u@example.com", RFC5322_ERR_8BIT, NULL, NULL },
	/* domain literals */
	{ "IPv4 domain literal", F, "u@[192.0.2.1]", 0, "u@[192.0.2.1] lit", "[192.0.2.1]" },
	{ "IPv6 domain literal lower-cased", F, "<u@[IPv6:2001:DB8::1]>", 0, "u@[ipv6:2001:db8::1] lit",
	  "[ipv6:2001:db8::1]" },
	{ "domain literal with FWS", F, "u@[ 192.0.2.1 ]", 0, "u@[192.0.2.1] lit", "[192.0.2.1]" },
	{ "domain literal empty", F, "u@[]", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "domain literal with @", F, "u@[a@evil.example]", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "domain literal unterminated", F, "u@[192.0.2.1", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "domain literal with quoted-pair", F, "u@[a\\]b]", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "domain literal followed by dot", F, "u@[192.0.2.1].example", RFC5322_ERR_TRAILING, NULL, NULL },
	{ "domain literal as display name", F, "[x] <u@example.com>", RFC5322_ERR_SYNTAX, NULL, NULL },
	/* RFC 2047 encoded words are left alone */
	{ "encoded word display name", F, "=?utf-8?q?J=C3=BCrgen?= <j@example.com>", 0,
	  "\"=?utf-8?q?J=C3=BCrgen?=\" j@example.com", "example.com" },
	{ "two encoded words", F, "=?utf-8?b?SsO8?= =?utf-8?b?cmdlbg==?= <j@example.com>", 0,
	  "\"=?utf-8?b?SsO8?= =?utf-8?b?cmdlbg==?=\" j@example.com", "example.com" },
	{ "encoded word inside quotes", F, "\"=?utf-8?q?x?=\" <j@example.com>", 0, "\"=?utf-8?q?x?=\" j@example.com",
	  "example.com" },
	{ "encoded word hiding an address", F, "=?utf-8?q?x=40evil.example?= <u@good.example>", 0,
	  "\"=?utf-8?q?x=40evil.example?=\" u@good.example", "good.example" },
	/* OpenDMARC's historic inputs (CVE-2019-16378 and crashes) */
	{ "unbalanced < (OpenDMARC crash)", F, "<a@b.example", RFC5322_ERR_UNBALANCED_ANGLE, NULL, NULL },
	{ "display name and unbalanced <", F, "Joe <a@b.example", RFC5322_ERR_UNBALANCED_ANGLE, NULL, NULL },
	{ "two domains in one From (CVE-2019-16378)", F, "a@b.example, c@d.example", 0, "a@b.example | c@d.example",
	  "b.example,d.example" },
	{ "quoted address in display name", F, "\"x@evil.example\" <u@good.example>", 0,
	  "\"x@evil.example\" u@good.example", "good.example" },
	{ "addr-spec followed by angle-addr", F, "u@good.example <x@evil.example>", RFC5322_ERR_TRAILING, NULL, NULL },
	{ "unquoted address as display name", F, "x@evil.example <u@good.example>", RFC5322_ERR_TRAILING, NULL, NULL },
	{ "empty value", F, "", RFC5322_ERR_EMPTY, NULL, NULL },
	{ "only white space", F, "   \t ", RFC5322_ERR_EMPTY, NULL, NULL },
	{ "only a comment", F, "(just a comment)", RFC5322_ERR_EMPTY, NULL, NULL },
	{ "only a comment (address-list)", L, "(just a comment)", RFC5322_ERR_EMPTY, NULL, NULL },
	{ "trailing >", F, "a@b.example>", RFC5322_ERR_UNBALANCED_ANGLE, NULL, NULL },
	{ "lone >", F, ">", RFC5322_ERR_UNBALANCED_ANGLE, NULL, NULL },
	{ "lone <", F, "<", RFC5322_ERR_UNBALANCED_ANGLE, NULL, NULL },
	{ "doubled angle brackets", F, "<<a@b.example>>", RFC5322_ERR_UNBALANCED_ANGLE, NULL, NULL },
	{ "angle-addr after angle-addr", F, "<a@b.example> <c@d.example>", RFC5322_ERR_TRAILING, NULL, NULL },
	{ "missing > before comma", F, "<a@b.example, c@d.example>", RFC5322_ERR_UNBALANCED_ANGLE, NULL, NULL },
	{ "missing domain after @", F, "user@", RFC5322_ERR_NO_DOMAIN, NULL, NULL },
	{ "missing @", F, "user", RFC5322_ERR_NO_DOMAIN, NULL, NULL },
	{ "display name without address", F, "John Smith", RFC5322_ERR_NO_DOMAIN, NULL, NULL },
	{ "angle-addr without @", F, "John <user>", RFC5322_ERR_NO_DOMAIN, NULL, NULL },
	{ "angle-addr with empty domain", F, "<user@>", RFC5322_ERR_NO_DOMAIN, NULL, NULL },
	{ "missing local part", F, "@example.com", RFC5322_ERR_NO_LOCAL, NULL, NULL },
	{ "missing local part in angle", F, "Joe <@example.com>", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "empty angle-addr", F, "<>", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "good then bad address", F, "a@good.example, b@", RFC5322_ERR_NO_DOMAIN, NULL, NULL },
	{ "domain with trailing dot", F, "u@example.com.", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "domain with empty label", F, "u@example..com", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "domain with leading dot", F, "u@.example.com", RFC5322_ERR_BAD_DOMAIN, NULL, NULL },
	{ "two @ signs", F, "a@b@c.example", RFC5322_ERR_TRAILING, NULL, NULL },
	{ "quoted domain", F, "a@\"example.com\"", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "domain then atom", F, "a@b.example c", RFC5322_ERR_TRAILING, NULL, NULL },
	{ "unterminated quoted string", F, "\"John <j@example.com>", RFC5322_ERR_UNBALANCED_QUOTE, NULL, NULL },
	{ "quoted string ends in backslash", F, "\"John\\", RFC5322_ERR_UNBALANCED_QUOTE, NULL, NULL },
	{ "unterminated comment", F, "u@example.com (oops", RFC5322_ERR_UNBALANCED_COMMENT, NULL, NULL },
	{ "unterminated nested comment", F, "(a (b) u@example.com", RFC5322_ERR_UNBALANCED_COMMENT, NULL, NULL },
	{ "stray )", F, "u@example.com)", RFC5322_ERR_UNBALANCED_COMMENT, NULL, NULL },
	{ "control character in domain", F, "u@exa\x01mple.com", RFC5322_ERR_CTL, NULL, NULL },
	{ "control character in quoted string", F, "\"a\x01\" <u@example.com>", RFC5322_ERR_CTL, NULL, NULL },
	{ "control character in comment", F, "u@example.com (\x1b)", RFC5322_ERR_CTL, NULL, NULL },
	{ "DEL", F, "u@example.com\x7f", RFC5322_ERR_CTL, NULL, NULL },
	{ "bare CR", F, "u@example.com\rx", RFC5322_ERR_CTL, NULL, NULL },
	{ "line break not followed by WSP", F, "a@b.example\r\nc@d.example", RFC5322_ERR_CTL, NULL, NULL },
	{ "bare LF not followed by WSP", F, "a@b.example\nc@d.example", RFC5322_ERR_CTL, NULL, NULL },
	{ "field's own CRLF at the end ignored", F, "u@example.com\r\n", 0, "u@example.com", "example.com" },
	{ "field's own LF at the end ignored", F, "u@example.com\n", 0, "u@example.com", "example.com" },
	{ "two line ends at the end", F, "u@example.com\r\n\r\n", RFC5322_ERR_CTL, NULL, NULL },
	{ "semicolon between mailboxes", F, "a@b.example; c@d.example", RFC5322_ERR_TRAILING, NULL, NULL },
	{ "backslash outside quotes", F, "a\\b@example.com", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "two words as local part", F, "john doe@example.com", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "local part trailing dot", F, "a.@example.com", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "local part double dot", F, "a..b@example.com", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "local part leading dot", F, ".a@example.com", RFC5322_ERR_SYNTAX, NULL, NULL },
	{ "stray ]", F, "u@example.com]", RFC5322_ERR_TRAILING, NULL, NULL },
	/* folded values (CRLF / LF followed by WSP are unfolded first) */
	{ "folded between display and angle", F, "John Doe\r\n <jd@example.com>", 0, "\"John Doe\" jd@example.com",
	  "example.com" },
	{ "folded inside quoted string", F, "\"John\r\n Doe\" <jd@example.com>", 0, "\"John Doe\" jd@example.com",
	  "example.com" },
	{ "folded inside comment", F, "u@example.com (a\r\n\tb)", 0, "u@example.com", "example.com" },
	{ "folded list, LF only", F, "a@b.example,\n c@d.example", 0, "a@b.example | c@d.example",
	  "b.example,d.example" },
	{ "folded at the start", F, "\r\n u@example.com", 0, "u@example.com", "example.com" },
};

static int run_one(int mode, const char *in, size_t len, struct rfc5322_addrlist *l, const char **err)
{
	/* exact-size copy without a terminating NUL */
	char *buf = xmalloc(len ? len : 1);
	int r;

	memcpy(buf, in, len);
	r = mode == L ? rfc5322_parse_addrlist(buf, len, l, err) : rfc5322_parse_from(buf, len, l, err);
	free(buf);
	return r;
}

static void check_case(const struct rcase *c, const char *in, size_t len, const char *variant)
{
	struct rfc5322_addrlist l = { (struct rfc5322_addr *)1, 99 };	/* junk: need not be initialised */
	const char *err = NULL, *doms[RFC5322_MAX_ADDRS];
	struct sbuf b;
	int r = run_one(c->mode, in, len, &l, &err);

	if (r != c->err) {
		print_error("case \"%s\" (%s): returned %d (%s), want %d (%s)\n", c->name, variant, r,
			    err ? err : "-", c->err, rfc5322_strerror(c->err));
		fail();
	}
	assert_non_null(err);
	assert_string_equal(err, rfc5322_strerror(r));
	if (r) {
		assert_null(l.addr);
		assert_int_equal(l.n, 0);
		return;
	}
	sbuf_init(&b);
	describe(&b, &l);
	if (strcmp(b.buf, c->want) != 0) {
		print_error("case \"%s\" (%s):\n got  %s\n want %s\n", c->name, variant, b.buf, c->want);
		fail();
	}
	size_t n = rfc5322_domains(&l, doms, RFC5322_MAX_ADDRS);
	sbuf_reset(&b);
	for (size_t i = 0; i < n; i++) {
		assert_true(doms[i][0] != '\0');
		assert_null(strchr(doms[i], '@'));
		sbuf_printf(&b, "%s%s", i ? "," : "", doms[i]);
	}
	if (strcmp(b.buf, c->doms) != 0) {
		print_error("case \"%s\" (%s): domains\n got  %s\n want %s\n", c->name, variant, b.buf, c->doms);
		fail();
	}
	if (c->mode == F)
		assert_true(l.n >= 1);
	sbuf_free(&b);
	rfc5322_addrlist_free(&l);
	assert_null(l.addr);
	assert_int_equal(l.n, 0);
	rfc5322_addrlist_free(&l);	/* twice is fine */
}

/* fold - replace every ' ' by the fold string. */
static char *fold(const char *in, const char *fws, size_t *len_out)
{
	struct sbuf b;

	sbuf_init(&b);
	sbuf_add(&b, "", 0);
	for (const char *s = in; *s; s++) {
		if (*s == ' ')
			sbuf_adds(&b, fws);
		else
			sbuf_addc(&b, *s);
	}
	*len_out = b.len;
	return sbuf_steal(&b);
}

static void test_case_table(void **state)
{
	size_t n = sizeof(cases) / sizeof(cases[0]);

	(void)state;
	print_message("%zu cases, each as written, CRLF-folded and LF-folded\n", n);
	for (size_t i = 0; i < n; i++) {
		const struct rcase *c = &cases[i];
		size_t len;
		char *f;

		check_case(c, c->in, strlen(c->in), "as written");
		if (strpbrk(c->in, "\r\n"))
			continue;	/* a fold next to a line end makes a blank line */
		f = fold(c->in, "\r\n ", &len);
		check_case(c, f, len, "CRLF-folded");
		free(f);
		f = fold(c->in, "\n ", &len);
		check_case(c, f, len, "LF-folded");
		free(f);
	}
}

struct ucase {
	const char *name;
	const char *in;
	const char *want;
};

static const struct ucase ucases[] = {
	{ "nothing to unfold", "a b", "a b" },
	{ "CRLF SP", "a\r\n b", "a b" },
	{ "CRLF HTAB", "a\r\n\tb", "a\tb" },
	{ "LF SP", "a\n b", "a b" },
	{ "CRLF not followed by WSP kept", "a\r\nb", "a\r\nb" },
	{ "trailing CRLF kept", "a\r\n", "a\r\n" },
	{ "bare CR SP kept", "a\r b", "a\r b" },
	{ "blank line then fold", "a\r\n\r\n b", "a\r\n b" },
	{ "two folds", "a\r\n \r\n b", "a  b" },
	{ "fold with long WSP run", "a\r\n  \t b", "a  \t b" },
	{ "fold at the start", "\r\n x", " x" },
	{ "CR at the very end", "a\r", "a\r" },
	{ "CRLF SP at the very end", "a\r\n ", "a " },
	{ "empty", "", "" },
};

static void test_unfold(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ucases) / sizeof(ucases[0]); i++) {
		const struct ucase *u = &ucases[i];
		size_t len = strlen(u->in), n;
		char *out = xmalloc(len + 1), *in = xmalloc(len ? len : 1), *dup;

		memcpy(in, u->in, len);
		n = rfc5322_unfold(in, len, out);
		if (n != strlen(u->want) || strcmp(out, u->want) != 0) {
			print_error("unfold case \"%s\": got %zu bytes\n", u->name, n);
			fail();
		}
		dup = rfc5322_unfold_dup(in, len, &n);
		assert_int_equal(n, strlen(u->want));
		assert_string_equal(dup, u->want);
		free(dup);
		/* in place */
		char *inplace = xmalloc(len + 1);
		memcpy(inplace, u->in, len + 1);
		n = rfc5322_unfold(inplace, len, inplace);
		assert_int_equal(n, strlen(u->want));
		assert_string_equal(inplace, u->want);
		free(inplace);
		free(in);
		free(out);
	}
}

static void test_nul(void **state)
{
	static const char v1[] = "u@exa\0mple.com";
	static const char v2[] = "u@example.com\0";
	static const char v3[] = "\"a\0b\" <u@example.com>";
	struct rfc5322_addrlist l;
	const char *err;

	(void)state;
	assert_int_equal(rfc5322_parse_from(v1, sizeof(v1) - 1, &l, &err), RFC5322_ERR_NUL);
	assert_null(l.addr);
	assert_int_equal(rfc5322_parse_from(v2, sizeof(v2) - 1, &l, &err), RFC5322_ERR_NUL);
	assert_int_equal(rfc5322_parse_addrlist(v3, sizeof(v3) - 1, &l, &err), RFC5322_ERR_NUL);
	/* len 0 with a NULL pointer is just empty */
	assert_int_equal(rfc5322_parse_from(NULL, 0, &l, NULL), RFC5322_ERR_EMPTY);
	/* len stops before the NUL: fine */
	assert_int_equal(rfc5322_parse_from(v1, 5, &l, &err), 0);
	assert_string_equal(l.addr[0].domain, "exa");
	rfc5322_addrlist_free(&l);
}

/* count addresses: 100 is fine, 101 is an error (never a truncated list) */
static void test_max_addrs(void **state)
{
	struct rfc5322_addrlist l;
	const char *err, *doms[RFC5322_MAX_ADDRS + 5];
	struct sbuf b;

	(void)state;
	for (int count = RFC5322_MAX_ADDRS - 1; count <= RFC5322_MAX_ADDRS + 1; count++) {
		sbuf_init(&b);
		for (int i = 0; i < count; i++)
			sbuf_printf(&b, "%su%d@d%d.example", i ? ", " : "", i, i % 7);
		int r = rfc5322_parse_from(b.buf, b.len, &l, &err);
		if (count <= RFC5322_MAX_ADDRS) {
			assert_int_equal(r, 0);
			assert_int_equal(l.n, count);
			assert_int_equal(rfc5322_domains(&l, doms, RFC5322_MAX_ADDRS), 7);
			/* too short an array: count still reported, only max stored */
			assert_int_equal(rfc5322_domains(&l, doms, 3), 7);
			assert_int_equal(rfc5322_domains(&l, NULL, 0), 7);
			assert_string_equal(doms[2], "d2.example");
		} else {
			assert_int_equal(r, RFC5322_ERR_TOO_MANY);
			assert_null(l.addr);
		}
		rfc5322_addrlist_free(&l);
		sbuf_free(&b);
	}
	/* the same cap inside groups */
	sbuf_init(&b);
	sbuf_adds(&b, "G: ");
	for (int i = 0; i <= RFC5322_MAX_ADDRS; i++)
		sbuf_printf(&b, "%su@x.example", i ? ", " : "");
	sbuf_adds(&b, ";");
	assert_int_equal(rfc5322_parse_addrlist(b.buf, b.len, &l, &err), RFC5322_ERR_TOO_MANY);
	sbuf_free(&b);
}

/* value cap: 64 KiB parses (a long display name), one byte more does not */
static void test_max_value(void **state)
{
	struct rfc5322_addrlist l;
	const char *err, *tail = " <u@example.com>";
	size_t tl = strlen(tail);
	char *v = xmalloc(RFC5322_MAX_VALUE_BYTES + 2);

	(void)state;
	memset(v, 'a', RFC5322_MAX_VALUE_BYTES + 1);
	memcpy(v + RFC5322_MAX_VALUE_BYTES - tl, tail, tl);
	assert_int_equal(rfc5322_parse_from(v, RFC5322_MAX_VALUE_BYTES, &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(strlen(l.addr[0].display), RFC5322_MAX_VALUE_BYTES - tl);
	rfc5322_addrlist_free(&l);
	memset(v, 'a', RFC5322_MAX_VALUE_BYTES + 1);
	memcpy(v + RFC5322_MAX_VALUE_BYTES + 1 - tl, tail, tl);
	assert_int_equal(rfc5322_parse_from(v, RFC5322_MAX_VALUE_BYTES + 1, &l, &err), RFC5322_ERR_TOO_LONG);
	assert_null(l.addr);
	/* a long value of folds is measured before unfolding */
	for (size_t i = 0; i + 3 <= RFC5322_MAX_VALUE_BYTES + 1; i += 3)
		memcpy(v + i, "\r\n ", 3);
	assert_int_equal(rfc5322_parse_from(v, RFC5322_MAX_VALUE_BYTES + 1, &l, &err), RFC5322_ERR_TOO_LONG);
	free(v);
}

/* domain cap: 255 bytes parse, 256 do not */
static void test_max_domain(void **state)
{
	struct rfc5322_addrlist l;
	const char *err;
	char v[600];

	(void)state;
	for (size_t dl = 250; dl <= 260; dl++) {
		size_t n = 0;
		v[n++] = 'u';
		v[n++] = '@';
		for (size_t k = 0; k < dl; k++)
			v[n++] = (k % 50 == 49 && k + 1 < dl) ? '.' : 'a';
		int r = rfc5322_parse_from(v, n, &l, &err);
		if (dl <= RFC5322_MAX_DOMAIN_BYTES) {
			assert_int_equal(r, 0);
			assert_int_equal(strlen(l.addr[0].domain), dl);
		} else
			assert_int_equal(r, RFC5322_ERR_TOO_LONG);
		rfc5322_addrlist_free(&l);
	}
}

/* deep nesting: no recursion, so no stack exhaustion */
static void test_deep_comments(void **state)
{
	struct rfc5322_addrlist l;
	const char *err;
	size_t depth = 30000, n = 0;
	char *v = xmalloc(2 * depth + 32);

	(void)state;
	for (size_t i = 0; i < depth; i++)
		v[n++] = '(';
	for (size_t i = 0; i < depth; i++)
		v[n++] = ')';
	memcpy(v + n, " u@example.com", 14);
	n += 14;
	assert_int_equal(rfc5322_parse_from(v, n, &l, &err), 0);
	assert_string_equal(l.addr[0].domain, "example.com");
	rfc5322_addrlist_free(&l);
	/* one ')' short */
	memmove(v + depth * 2 - 1, v + depth * 2, n - depth * 2);
	assert_int_equal(rfc5322_parse_from(v, n - 1, &l, &err), RFC5322_ERR_UNBALANCED_COMMENT);
	/* many '<' */
	memset(v, '<', n);
	assert_int_equal(rfc5322_parse_from(v, n, &l, &err), RFC5322_ERR_UNBALANCED_ANGLE);
	free(v);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(rfc5322_strerror(RFC5322_OK), "ok");
	assert_string_equal(rfc5322_strerror(-1), "unknown error");
	assert_string_equal(rfc5322_strerror(1000), "unknown error");
	for (int e = RFC5322_ERR_EMPTY; e <= RFC5322_ERR_TOO_LONG; e++)
		assert_string_not_equal(rfc5322_strerror(e), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_case_table),
		cmocka_unit_test(test_unfold),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_max_addrs),
		cmocka_unit_test(test_max_value),
		cmocka_unit_test(test_max_domain),
		cmocka_unit_test(test_deep_comments),
		cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
