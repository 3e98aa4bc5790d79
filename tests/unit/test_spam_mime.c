/*
 * test_spam_mime: sluice-spam's message analysis (spam_mime, spam_html,
 * spam_url): parts, decoding, HTML text and links, URL normalisation,
 * Received chain, limits, and GMime edge cases that must give a result,
 * never a crash.
 */
#include "milters/spam/spam_mime.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static struct spam_mime *parse(const char *msg)
{
	return spam_mime_parse(msg, strlen(msg), NULL);
}

static int has_url(const struct spam_mime *m, const char *url)
{
	for (size_t i = 0; i < m->nurls; i++)
		if (!strcmp(m->urls[i].url, url))
			return 1;
	return 0;
}

static void test_url_normalise(void **state)
{
	(void)state;
	static const struct {
		const char *name, *raw, *url, *host, *domain;
	} cases[] = {
		{ "lower-case host, port and userinfo dropped", "HTTP://user:pw@WWW.Example.COM:8080/A?b=1",
		  "http://www.example.com/A?b=1", "www.example.com", "example.com" },
		{ "www. gets http", "www.example.co.uk/x", "http://www.example.co.uk/x",
		  "www.example.co.uk", "example.co.uk" },
		{ "percent-encoded host", "http://%65xample.org/%7Efoo", "http://example.org/~foo",
		  "example.org", "example.org" },
		{ "IDN to punycode", "http://bücher.example/", "http://xn--bcher-kva.example/",
		  "xn--bcher-kva.example", "xn--bcher-kva.example" },
		{ "IPv4 literal", "http://192.0.2.1/x", "http://192.0.2.1/x", "192.0.2.1", "192.0.2.1" },
		{ "IPv6 literal", "http://[2001:DB8::1]:80/", "http://[2001:db8::1]/", "2001:db8::1",
		  "2001:db8::1" },
		{ "backslash as slash", "http://evil.example.com\\@good.example/",
		  "http://evil.example.com/@good.example/", "evil.example.com", "example.com" },
		{ "mailto", "mailto:Joe@Example.NET?subject=x", "mailto:Joe@example.net",
		  "example.net", "example.net" },
		{ "trailing dot", "https://a.b.example.com./", "https://a.b.example.com/",
		  "a.b.example.com", "example.com" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spam_url u;
		if (spam_url_normalise(cases[i].raw, strlen(cases[i].raw), &u) < 0)
			fail_msg("%s: not a URL", cases[i].name);
		if (strcmp(u.url, cases[i].url) || strcmp(u.host, cases[i].host) ||
		    strcmp(u.domain, cases[i].domain))
			fail_msg("%s: got %s %s %s", cases[i].name, u.url, u.host, u.domain);
		spam_url_clear(&u);
	}
	static const char *const bad[] = { "http://", "http:///x", "notaurl", "http://a b/",
					   "javascript:alert(1)", "http://[::1/" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct spam_url u;
		if (spam_url_normalise(bad[i], strlen(bad[i]), &u) == 0)
			fail_msg("%s: accepted as %s", bad[i], u.url);
	}
}

static void test_punycode(void **state)
{
	(void)state;
	/* RFC 3492 7.1 sample (L) and common names */
	static const struct { const char *in, *out; } cases[] = {
		{ "bücher", "bcher-kva" },
		{ "münchen", "mnchen-3ya" },
		{ "\xe4\xbb\x96\xe4\xbb\xac\xe4\xb8\xba\xe4\xbb\x80\xe4\xb9\x88\xe4\xb8\x8d\xe8\xaf\xb4"
		  "\xe4\xb8\xad\xe6\x96\x87", "ihqwcrb4cv8a8dqg056pqjye" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = spam_url_punycode(cases[i].in, strlen(cases[i].in));
		assert_non_null(p);
		assert_string_equal(p, cases[i].out);
		free(p);
	}
	assert_null(spam_url_punycode("\xff\xfe", 2));
}

static void test_scan_text(void **state)
{
	(void)state;
	struct spam_mime *m = parse("Subject: x\n\nSee http://a.example.com/x, and (www.b.example.org).\n"
				    "Mail mailto:x@c.example.net now; nohttp://d.example\n");
	assert_true(has_url(m, "http://a.example.com/x"));
	assert_true(has_url(m, "http://www.b.example.org"));
	assert_true(has_url(m, "mailto:x@c.example.net"));
	assert_int_equal(m->nurls, 3);
	spam_mime_free(&m);
	assert_null(m);
}

static void test_multipart_alternative(void **state)
{
	(void)state;
	struct spam_mime *m = parse(
		"From: a@example.com\r\nSubject: =?UTF-8?B?SGVsbG8gd8O2cmxk?=\r\n"
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
		"--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 plain\r\n"
		"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		/* <p>Hi <a href="HTTP://Shop.Example.COM/a%20b">there</a><img src="http://img.example.net/i.gif"></p><script>var x="hidden";</script><style>p{}</style> */
		"PHA+SGkgPGEgaHJlZj0iSFRUUDovL1Nob3AuRXhhbXBsZS5DT00vYSUyMGIiPnRoZXJlPC9hPjxp\r\n"
		"bWcgc3JjPSJodHRwOi8vaW1nLmV4YW1wbGUubmV0L2kuZ2lmIj48L3A+PHNjcmlwdD52YXIgeD0i\r\n"
		"aGlkZGVuIjs8L3NjcmlwdD48c3R5bGU+cHt9PC9zdHlsZT4=\r\n"
		"--b1--\r\n");
	assert_int_equal(m->nparts, 2);
	assert_string_equal(m->parts[0].type, "text/plain");
	assert_string_equal(m->parts[0].charset, "iso-8859-1");
	assert_string_equal(m->parts[0].encoding, "quoted-printable");
	assert_string_equal(m->parts[1].type, "text/html");
	assert_int_equal(m->parts[1].depth, 1);
	assert_non_null(strstr(m->text, "Caf\xc3\xa9 plain"));
	assert_non_null(strstr(m->text, "Hi there"));
	assert_null(strstr(m->text, "hidden"));
	assert_null(strstr(m->text, "p{}"));
	assert_non_null(strstr(m->rawtext, "<a href="));
	assert_true(has_url(m, "http://shop.example.com/a b"));
	assert_true(has_url(m, "http://img.example.net/i.gif"));
	assert_int_equal(m->html_parts, 1);
	assert_int_equal(m->text_parts, 1);
	assert_int_equal(m->html.images, 1);
	const struct spam_hdr *h = spam_mime_header(m, "subject", 0);
	assert_non_null(h);
	assert_string_equal(h->raw, "=?UTF-8?B?SGVsbG8gd8O2cmxk?=");
	assert_string_equal(h->value, "Hello w\xc3\xb6rld");
	spam_mime_free(&m);
}

static void test_attachments_nested(void **state)
{
	(void)state;
	struct spam_mime *m = parse(
		"Content-Type: multipart/mixed; boundary=outer\n\n"
		"--outer\nContent-Type: multipart/related; boundary=inner\n\n"
		"--inner\nContent-Type: text/plain\n\nbody text\n"
		"--inner\nContent-Type: image/png; name=\"a.png\"\nContent-Transfer-Encoding: base64\n\niVBORw0K\n"
		"--inner--\n"
		"--outer\nContent-Type: application/octet-stream\nContent-Disposition: attachment; "
		"filename=\"=?UTF-8?Q?r=C3=A9sum=C3=A9.exe?=\"\n\nMZ\n"
		"--outer\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/plain\n\ninner message text\n"
		"--outer--\n");
	assert_int_equal(m->attachments, 2);
	int found_exe = 0, found_png = 0;
	for (size_t i = 0; i < m->nparts; i++) {
		if (m->parts[i].filename && !strcmp(m->parts[i].filename, "r\xc3\xa9sum\xc3\xa9.exe"))
			found_exe = 1;
		if (m->parts[i].filename && !strcmp(m->parts[i].filename, "a.png")) {
			found_png = 1;
			assert_int_equal(m->parts[i].depth, 2);
		}
	}
	assert_true(found_exe);
	assert_true(found_png);
	assert_non_null(strstr(m->text, "body text"));
	assert_non_null(strstr(m->text, "inner message text"));
	spam_mime_free(&m);
}

static void test_received(void **state)
{
	(void)state;
	struct spam_mime *m = parse(
		"Received: from mx.example.net (mx.example.net [192.0.2.7])\n\tby mail.example.org (Postfix) with ESMTP id 1;\n\tMon, 1 Jan 2024 00:00:00 +0000\n"
		"Received: from helo.example ([IPv6:2001:db8::5]) by mx.example.net; Mon, 1 Jan 2024\n"
		"Received: from localhost by x; today\n"
		"Subject: r\n\nbody\n");
	assert_int_equal(m->nrelays, 3);
	assert_string_equal(m->relays[0].ip, "192.0.2.7");
	assert_string_equal(m->relays[0].rdns, "mx.example.net");
	assert_string_equal(m->relays[0].helo, "mx.example.net");
	assert_string_equal(m->relays[0].by, "mail.example.org");
	assert_string_equal(m->relays[1].ip, "2001:db8::5");
	assert_null(m->relays[1].rdns);
	assert_string_equal(m->relays[1].helo, "helo.example");
	assert_null(m->relays[2].ip);
	spam_mime_free(&m);
}

/* Edge cases: each must give a result; the checks say what the result is. */
static void test_edge_cases(void **state)
{
	(void)state;
	static const struct { const char *name, *msg, *text; } cases[] = {
		{ "empty", "", NULL },
		{ "header only", "Subject: x", NULL },
		{ "no header", "\nplain body\n", "plain body" },
		{ "bad boundary (never closed)",
		  "Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\nopen part\n", "open part" },
		{ "boundary never used",
		  "Content-Type: multipart/mixed; boundary=zz\n\njust text\n", NULL },
		{ "missing boundary parameter",
		  "Content-Type: multipart/mixed\n\n--a\n\nx\n--a--\n", NULL },
		{ "broken base64",
		  "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8gd29y!!!***bGQ=\n====\n", "hello" },
		{ "unknown charset",
		  "Content-Type: text/plain; charset=x-no-such-charset\n\ncaf\xe9\n", "caf\xc3\xa9" },
		{ "utf-16 charset",
		  "Content-Type: text/plain; charset=utf-16le\nContent-Transfer-Encoding: base64\n\naABpAA==\n", "hi" },
		{ "undeclared 8-bit", "Subject: x\n\nna\xefve\n", "na\xc3\xafve" },
		{ "bad quoted-printable", "Content-Transfer-Encoding: quoted-printable\n\n=ZZ=\n=4\n", NULL },
		{ "NUL bytes", "Subject: a\n\nx\0y", NULL },
		{ "header line without colon", "Subject: a\nthis is not a header\n\nbody\n", NULL },
		{ "html garbage",
		  "Content-Type: text/html\n\n<<<a href=><</p></div><b><i><table><td>cell</a><!-- unterminated", "cell" },
		{ "uuencode", "Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n#86)C\n`\nend\n", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].msg);
		if (!strcmp(cases[i].name, "NUL bytes"))
			len = 16;
		struct spam_mime *m = spam_mime_parse(cases[i].msg, len, NULL);
		assert_non_null(m);
		assert_non_null(m->text);
		assert_non_null(m->rawtext);
		if (cases[i].text && !strstr(m->text, cases[i].text))
			fail_msg("%s: text \"%s\" lacks \"%s\"", cases[i].name, m->text, cases[i].text);
		spam_mime_free(&m);
	}
}

static void test_limits(void **state)
{
	(void)state;
	struct spam_mime_limits lim;
	spam_mime_limits_default(&lim);
	lim.max_scan_bytes = 100;
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, "Subject: big\n\n");
	for (int i = 0; i < 100; i++)
		sbuf_adds(&b, "line of text\n");
	sbuf_adds(&b, "http://late.example.com/\n");
	struct spam_mime *m = spam_mime_parse(b.buf, b.len, &lim);
	assert_true(m->flags & SPAM_MIME_TRUNCATED);
	assert_int_equal(m->scanned_len, 100);
	assert_int_equal(m->size, b.len);
	assert_int_equal(m->nurls, 0);
	spam_mime_free(&m);

	/* deep nesting: 5,000 levels, cut by max_parts before GMime sees them */
	sbuf_reset(&b);
	for (int i = 0; i < 5000; i++)
		sbuf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
	sbuf_adds(&b, "Content-Type: text/plain\n\ndeep\n");
	spam_mime_limits_default(&lim);
	lim.max_scan_bytes = 0;
	m = spam_mime_parse(b.buf, b.len, &lim);
	assert_true(m->flags & (SPAM_MIME_TOO_DEEP | SPAM_MIME_TOO_MANY_PARTS));
	spam_mime_free(&m);

	/* many parts */
	sbuf_reset(&b);
	sbuf_adds(&b, "Content-Type: multipart/mixed; boundary=x\n\n");
	for (int i = 0; i < 500; i++)
		sbuf_printf(&b, "--x\nContent-Type: text/plain\n\npart %d http://p%d.example.com/\n", i, i);
	sbuf_adds(&b, "--x--\n");
	lim.max_parts = 50;
	lim.max_urls = 10;
	m = spam_mime_parse(b.buf, b.len, &lim);
	assert_true(m->flags & SPAM_MIME_TOO_MANY_PARTS);
	assert_int_equal(m->nparts, 50);
	assert_int_equal(m->nurls, 10);
	spam_mime_free(&m);
	sbuf_free(&b);
}

static void test_sample_corpus(void **state)
{
	(void)state;
	/* every message of the in-tree sample parses */
	static const char *const dirs[] = { "tests/data/spam/spamassassin-sample/spam",
					    "tests/data/spam/spamassassin-sample/ham" };
	size_t n = 0;
	for (size_t d = 0; d < 2; d++) {
		char *cmd = xasprintf("ls %s", dirs[d]);
		FILE *ls = popen(cmd, "r");
		free(cmd);
		assert_non_null(ls);
		char name[512];
		while (fgets(name, sizeof(name), ls)) {
			name[strcspn(name, "\n")] = 0;
			char *path = xasprintf("%s/%s", dirs[d], name);
			FILE *f = fopen(path, "rb");
			assert_non_null(f);
			struct sbuf b;
			sbuf_init(&b);
			char buf[8192];
			size_t r;
			while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
				sbuf_add(&b, buf, r);
			fclose(f);
			struct spam_mime *m = spam_mime_parse(b.buf ? b.buf : "", b.len, NULL);
			assert_non_null(m->text);
			assert_true(m->nhdrs > 0);
			spam_mime_free(&m);
			sbuf_free(&b);
			free(path);
			n++;
		}
		pclose(ls);
	}
	assert_true(n >= 40);
}

int main(void)
{
	spam_mime_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_normalise),
		cmocka_unit_test(test_punycode),
		cmocka_unit_test(test_scan_text),
		cmocka_unit_test(test_multipart_alternative),
		cmocka_unit_test(test_attachments_nested),
		cmocka_unit_test(test_received),
		cmocka_unit_test(test_edge_cases),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_sample_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
