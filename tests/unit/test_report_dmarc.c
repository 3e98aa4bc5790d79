/*
 * test_report_dmarc: `sluice report dmarc` without sockets: which
 * sluice-dmarc lines count (tools/report_dmarc_agg), grouping identical
 * rows, the split per policy domain and period, the XML (validated here
 * against the RFC 9990 and RFC 7489 XSDs in tests/data/dmarc/schema with
 * libxml2's schema validator), gzip, file names, and from
 * tools/report_dmarc_send: rua= parsing, external destination verification
 * over a fake DNS, the suppress list, bounces found in the log, the mail.
 * The sluice-dmarc line is the real one of tests/unit/test_report.c (a run
 * of tests/integration/test_report_dmarc.py), varied field by field.
 *
 * XXX: the Makefile links unit tests with libsluice.a/libmta.a only, not
 * tools/; the modules are compiled in here, as test_report.c does.
 */
#include "tools/report_dmarc_agg.c"
#include "tools/report_dmarc_send.c"
#include "tools/report_map.c"
#include "tools/report_parse.c"
#include "tools/report_time.c"

#include <libxml/parser.h>
#include <libxml/xmlschemas.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>
#include <cmocka.h>

/* the real line, with %s slots: time "Dec  2 09:39:51", result, policy_domain, disposition, client_ip, extra */
static char *line(const char *stamp, const char *res, const char *pdom, const char *disp,
		  const char *ip, const char *extra)
{
	return xasprintf(
		"%s vm sluice-dmarc[11300]: 4jfXm75Snvz4Ly: milter=dmarc action=reject dmarc=%s "
		"enforced=yes header_from=%s from_domains=1 policy_domain=%s org_domain=- "
		"discovery=treewalk p=reject sp=- np=- adkim=r aspf=r t=n psd=u pct=100 fo=- "
		"rua=mailto:agg@%s ruf=- policy_applied=p policy=reject disposition=%s override=none "
		"spf_aligned=fail dkim_aligned=fail dns_queries=1 reason=\"no aligned spf or dkim "
		"pass for x; policy p=reject at x\" client_ip=%s helo=client.test "
		"envelope_from=reject.example envelope_to=example.com spf=reject.example/mfrom/fail "
		"spf_source=self dkim=none dkim_source=self%s",
		stamp, res, pdom, pdom, pdom, disp, ip, extra ? extra : "");
}

static enum rda_verdict feed(struct rda *a, struct rp_parser *p, const char *l)
{
	struct rp_event ev;
	rp_parse_line(p, l, strlen(l), &ev);
	return rda_add(a, &ev);
}

static enum rda_verdict feed_free(struct rda *a, struct rp_parser *p, char *l)
{
	enum rda_verdict v = feed(a, p, l);
	free(l);
	return v;
}

static const struct rda_meta meta9990 = { "Test Org", "dmarc@mx.test", "mx.test", "sluice test",
					  RDA_RFC9990 };
static const struct rda_meta meta7489 = { "Test Org", "dmarc@mx.test", "mx.test", "sluice test",
					  RDA_RFC7489 };

static void test_kv_past_rp_max_kv(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rda *a = rda_new(86400, 0, 0);
	char *l = line("Dec  2 09:39:51", "fail", "reject.example", "reject", "127.0.0.3",
		       " note=\"has spf=bogus inside\" last=\"q\\\"x\"");
	struct rp_event ev;
	rp_parse_line(p, l, strlen(l), &ev);
	/* every key of a long sluice-dmarc line, quoted values with escapes included */
	assert_true(ev.nkv <= RP_MAX_KV);
	assert_string_equal(rda_kv(a, &ev, "spf"), "reject.example/mfrom/fail");
	assert_string_equal(rda_kv(a, &ev, "dkim"), "none");
	assert_string_equal(rda_kv(a, &ev, "client_ip"), "127.0.0.3");
	assert_string_equal(rda_kv(a, &ev, "note"), "has spf=bogus inside");
	assert_string_equal(rda_kv(a, &ev, "last"), "q\"x");
	assert_string_equal(rda_kv(a, &ev, "policy_domain"), "reject.example");
	assert_null(rda_kv(a, &ev, "absent"));
	free(l);
	rda_free(&a);
	rp_parser_free(&p);
}

static void test_grouping(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rda *a = rda_new(86400, 0, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(feed_free(a, p, line("Dec  2 09:39:51", "fail", "reject.example",
						     "reject", "127.0.0.3", NULL)), RDA_COUNTED);
	assert_int_equal(feed_free(a, p, line("Dec  2 10:00:00", "pass", "reject.example", "none",
					      "127.0.0.2", NULL)), RDA_COUNTED);
	/* another client address is another row */
	assert_int_equal(feed_free(a, p, line("Dec  2 11:00:00", "fail", "Reject.Example", "reject",
					      "127.0.0.4", NULL)), RDA_COUNTED);
	size_t n;
	struct rda_report *const *r = rda_reports(a, &n);
	assert_int_equal(n, 1);
	assert_string_equal(r[0]->domain, "reject.example");
	assert_int_equal(r[0]->messages, 5);
	assert_int_equal(r[0]->rows.n, 3);
	size_t nr;
	struct rmap_row *rows = rmap_sorted(&r[0]->rows, 0, &nr);
	assert_int_equal(rows[0].e->c[0], 3);
	assert_true(strncmp(rows[0].e->key, "127.0.0.3\tfail\treject\treject\tyes\t", 33) == 0);
	assert_int_equal(rows[1].e->c[0], 1);
	assert_int_equal(rows[2].e->c[0], 1);
	free(rows);
	assert_int_equal(rda_count(a, RDA_COUNTED), 5);
	rda_free(&a);
	rp_parser_free(&p);
}

static void test_period_and_domain_split(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rda *a = rda_new(86400, 0, 0);
	/* ISO stamps in UTC: two days, two domains */
	const char *st[] = { "2026-12-01T23:59:59Z", "2026-12-02T00:00:00Z", "2026-12-02T12:00:00Z" };
	for (size_t i = 0; i < 3; i++) {
		feed_free(a, p, line(st[i], "fail", "b.example", "reject", "192.0.2.1", NULL));
		feed_free(a, p, line(st[i], "fail", "a.example", "reject", "192.0.2.1", NULL));
	}
	size_t n;
	struct rda_report *const *r = rda_reports(a, &n);
	assert_int_equal(n, 4);
	const long long d1 = 1796083200;	/* 2026-12-01T00:00:00Z */
	assert_string_equal(r[0]->domain, "a.example");
	assert_int_equal(r[0]->begin, d1);
	assert_int_equal(r[0]->end, d1 + 86399);
	assert_int_equal(r[0]->messages, 1);
	assert_string_equal(r[1]->domain, "a.example");
	assert_int_equal(r[1]->begin, d1 + 86400);
	assert_int_equal(r[1]->messages, 2);
	assert_string_equal(r[2]->domain, "b.example");
	assert_int_equal(r[3]->begin, d1 + 86400);
	rda_free(&a);

	/* hours, and since <= t < until */
	a = rda_new(3600, (double)d1 + 86400, (double)d1 + 86400 + 12 * 3600);
	for (size_t i = 0; i < 3; i++)
		feed_free(a, p, line(st[i], "fail", "a.example", "reject", "192.0.2.1", NULL));
	r = rda_reports(a, &n);
	assert_int_equal(n, 1);
	assert_int_equal(r[0]->begin, d1 + 86400);
	assert_int_equal(r[0]->end, d1 + 86400 + 3599);
	assert_int_equal(rda_count(a, RDA_OUT_OF_RANGE), 2);
	rda_free(&a);
	rp_parser_free(&p);
}

static void test_what_counts(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rda *a = rda_new(86400, 0, 0);
	const char *S = "Dec  2 09:39:51";
	assert_int_equal(feed_free(a, p, line(S, "none", "-", "none", "192.0.2.1", NULL)), RDA_NO_POLICY);
	assert_int_equal(feed_free(a, p, line(S, "pass", "-", "none", "192.0.2.1", NULL)), RDA_NO_POLICY);
	assert_int_equal(feed_free(a, p, line(S, "temperror", "x.example", "none", "192.0.2.1", NULL)),
			 RDA_NOT_EVALUATED);
	assert_int_equal(feed_free(a, p, line(S, "fail", "../etc", "reject", "192.0.2.1", NULL)),
			 RDA_BAD_VALUE);
	assert_int_equal(feed_free(a, p, line(S, "fail", "x.example", "reject", "unknown", NULL)),
			 RDA_BAD_VALUE);
	static const char *const other[] = {
		"Dec  2 09:39:51 vm sluice-dmarc[1]: Q1: milter=dmarc action=reject dmarc=permerror "
		"from_error=\"no From\" enforced=yes client_ip=192.0.2.1 helo=h",
		"Dec  2 09:39:51 vm sluice-dmarc[1]: Q1: milter=dmarc action=accept dmarc=none skipped=ignored_host",
		"Dec  2 09:39:51 vm sluice-dmarc[1]: Q1: milter=dmarc failure_report=sent header_from=x.example "
		"ruf=a@x.example verification=internal bytes=100",
		"Dec  2 09:39:51 vm sluice-dkim[1]: Q1: milter=dkim action=accept dkim=pass d=x.example",
		"Dec  2 09:39:51 mx postfix/qmgr[79]: 3F2A1C9D0B: from=<joe@Example.ORG>, size=1234, nrcpt=2 (queue active)",
		"not a log line",
	};
	enum rda_verdict want[] = { RDA_NOT_EVALUATED, RDA_NOT_EVALUATED, RDA_NOT_DMARC,
				    RDA_NOT_DMARC, RDA_NOT_DMARC, RDA_NOT_DMARC };
	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
		assert_int_equal(feed(a, p, other[i]), want[i]);
	/* log_format = json carries the same text */
	const char *js = "{\"time\":\"2026-12-02T09:39:51.123Z\",\"host\":\"vm\",\"program\":\"sluice-dmarc\","
			 "\"pid\":5,\"queue_id\":\"4jfXm\",\"message\":\"milter=dmarc action=accept "
			 "dmarc=pass enforced=yes header_from=j.example policy_domain=j.example p=none "
			 "policy=none disposition=none override=none spf_aligned=pass dkim_aligned=fail "
			 "client_ip=192.0.2.9 envelope_from=j.example spf=j.example/mfrom/pass dkim=none\"}";
	assert_int_equal(feed(a, p, js), RDA_COUNTED);
	size_t n;
	struct rda_report *const *r = rda_reports(a, &n);
	assert_int_equal(n, 1);
	assert_string_equal(r[0]->domain, "j.example");
	assert_int_equal(r[0]->begin, 1796169600);
	rda_free(&a);
	rp_parser_free(&p);
}

/* validate doc against an XSD of tests/data/dmarc/schema; 0 = valid */
static int validate(const char *xml, size_t len, const char *xsd)
{
	xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(xsd);
	xmlSchemaPtr schema = xmlSchemaParse(pc);
	assert_non_null(schema);
	xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(schema);
	xmlDocPtr doc = xmlReadMemory(xml, (int)len, "report.xml", NULL, XML_PARSE_NONET);
	assert_non_null(doc);
	int rc = xmlSchemaValidateDoc(vc, doc);
	xmlFreeDoc(doc);
	xmlSchemaFreeValidCtxt(vc);
	xmlSchemaFree(schema);
	xmlSchemaFreeParserCtxt(pc);
	return rc;
}

/* l with the first "from" replaced by "to"; frees l */
static char *subst(char *l, const char *from, const char *to)
{
	char *x = strstr(l, from);
	assert_non_null(x);
	char *r = xasprintf("%.*s%s%s", (int)(x - l), l, to, x + strlen(from));
	free(l);
	return r;
}

static struct rda *sample(struct rp_parser *p)
{
	struct rda *a = rda_new(86400, 0, 0);
	const char *S = "Dec  2 09:39:51";
	feed_free(a, p, line(S, "fail", "reject.example", "reject", "127.0.0.3", NULL));
	feed_free(a, p, line(S, "fail", "reject.example", "reject", "127.0.0.3", NULL));
	/* pass with DKIM, null path, IPv6, two signatures */
	char *l = line(S, "pass", "reject.example", "none", "2001:db8::7", NULL);
	l = subst(l, "envelope_from=reject.example", "envelope_from=<>");
	l = subst(l, "dkim=none", "dkim=other.example/-/fail,esp.example/e1/pass,"
				"mail.reject.example/m1/pass,reject.example/s1/pass");
	feed_free(a, p, l);
	/* t=y: policy_test_mode; not enforced: local policy */
	l = line(S, "fail", "reject.example", "quarantine", "192.0.2.5", NULL);
	feed_free(a, p, subst(l, "override=none", "override=policy_test_mode"));
	l = line(S, "fail", "reject.example", "reject", "192.0.2.6", NULL);
	feed_free(a, p, subst(l, "enforced=yes", "enforced=no"));
	/* a From domain in U-labels, and bytes that are not UTF-8 (never in the XML) */
	l = line(S, "fail", "reject.example", "reject", "192.0.2.7", NULL);
	feed_free(a, p, subst(l, "header_from=reject.example", "header_from=b\xc3\xbc" "cher.reject.example"));
	l = line(S, "fail", "reject.example", "reject", "192.0.2.8", NULL);
	feed_free(a, p, subst(l, "header_from=reject.example", "header_from=x\xff\xc3#\x01.reject.example"));
	return a;
}

static void test_xml_rfc9990(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rda *a = sample(p);
	size_t n, len;
	struct rda_report *const *r = rda_reports(a, &n);
	assert_int_equal(n, 1);
	const char *err = NULL;
	char *xml = rda_xml(r[0], &meta9990, &len, &err);
	assert_non_null(xml);
	assert_int_equal(strlen(xml), len);
	assert_int_equal(validate(xml, len, "tests/data/dmarc/schema/rua-rfc9990.xsd"), 0);
	assert_non_null(strstr(xml, "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">"));
	assert_non_null(strstr(xml, "<report_id>1796169600.reject.example@mx.test</report_id>"));
	assert_non_null(strstr(xml, "<begin>1796169600</begin>"));
	assert_non_null(strstr(xml, "<end>1796255999</end>"));
	assert_non_null(strstr(xml, "<generator>sluice test</generator>"));
	assert_non_null(strstr(xml, "<discovery_method>treewalk</discovery_method>"));
	/* the grouped row first (count 2), then the others */
	const char *c2 = strstr(xml, "<count>2</count>");
	assert_non_null(c2);
	assert_true(c2 < strstr(xml, "<count>1</count>"));
	assert_non_null(strstr(xml, "<source_ip>2001:db8::7</source_ip>"));
	assert_non_null(strstr(xml, "<disposition>pass</disposition>"));	/* pass under p=reject */
	assert_non_null(strstr(xml, "<envelope_from></envelope_from>"));
	/* RFC 9990 2.1.6 order: strict, relaxed, other pass, the rest */
	const char *s1 = strstr(xml, "<selector>s1</selector>"), *m1 = strstr(xml, "<selector>m1</selector>");
	const char *e1 = strstr(xml, "<selector>e1</selector>"), *o = strstr(xml, "<domain>other.example</domain>");
	assert_true(s1 && m1 && e1 && o && s1 < m1 && m1 < e1 && e1 < o);
	assert_non_null(strstr(xml, "<selector></selector>"));	/* required in 9990 */
	assert_non_null(strstr(xml, "<type>policy_test_mode</type>"));
	assert_non_null(strstr(xml, "<type>local_policy</type>"));
	assert_non_null(strstr(xml, "<header_from>b\xc3\xbc" "cher.reject.example</header_from>"));
	assert_non_null(strstr(xml, "<header_from>x?" "?#?.reject.example</header_from>"));
	/* the same input, the same bytes */
	size_t len2;
	char *again = rda_xml(r[0], &meta9990, &len2, &err);
	assert_int_equal(len, len2);
	assert_memory_equal(xml, again, len);
	free(again);
	/* gzip round trip */
	size_t glen;
	unsigned char *gz = rda_gzip(xml, len, &glen);
	assert_non_null(gz);
	assert_int_equal(gz[0], 0x1f);
	assert_int_equal(gz[1], 0x8b);
	assert_true(gz[4] == 0 && gz[5] == 0 && gz[6] == 0 && gz[7] == 0);	/* mtime 0 */
	char *plain = xmalloc(len + 16);
	z_stream z;
	memset(&z, 0, sizeof z);
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = gz;
	z.avail_in = (uInt)glen;
	z.next_out = (Bytef *)plain;
	z.avail_out = (uInt)(len + 16);
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	assert_int_equal(z.total_out, len);
	assert_memory_equal(plain, xml, len);
	inflateEnd(&z);
	free(plain);
	free(gz);
	free(xml);
	rda_free(&a);
	rp_parser_free(&p);
}

static void test_xml_rfc7489(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rda *a = sample(p);
	size_t n, len;
	struct rda_report *const *r = rda_reports(a, &n);
	const char *err = NULL;
	char *xml = rda_xml(r[0], &meta7489, &len, &err);
	assert_non_null(xml);
	assert_int_equal(validate(xml, len, "tests/data/dmarc/schema/rua-rfc7489.xsd"), 0);
	assert_non_null(strstr(xml, "<dmarc:feedback xmlns:dmarc=\"http://dmarc.org/dmarc-xml/0.1\">"));
	assert_non_null(strstr(xml, "<source_ip>2001:db8:0:0:0:0:0:7</source_ip>"));
	assert_null(strstr(xml, "<disposition>pass</disposition>"));
	assert_non_null(strstr(xml, "<sp>reject</sp>"));	/* sp defaults to p */
	assert_non_null(strstr(xml, "<pct>100</pct>"));
	assert_non_null(strstr(xml, "<fo>0</fo>"));
	assert_non_null(strstr(xml, "<scope>mfrom</scope>"));
	assert_null(strstr(xml, "<generator>"));
	assert_null(strstr(xml, "<selector></selector>"));
	free(xml);
	rda_free(&a);
	rp_parser_free(&p);
}

static void test_names(void **state)
{
	(void)state;
	struct rda_report r = { 0 };
	r.domain = (char *)"example.com";
	r.begin = 1013662812;
	r.end = 1013749130;
	const struct rda_meta m = { "x", "a@mail.receiver.example", "mail.receiver.example", NULL,
				    RDA_RFC9990 };
	char *f = rda_filename(&r, &m, 1);
	/* the example of RFC 9990 2.5.2 */
	assert_string_equal(f, "mail.receiver.example!example.com!1013662812!1013749130.xml.gz");
	free(f);
	f = rda_filename(&r, &m, 0);
	assert_string_equal(f, "mail.receiver.example!example.com!1013662812!1013749130.xml");
	free(f);
	f = rda_report_id(&r, &m);
	assert_string_equal(f, "1013662812.example.com@mail.receiver.example");
	free(f);
	assert_true(rda_domain_ok("a-b.example_x.com"));
	assert_false(rda_domain_ok("a/b"));
	assert_false(rda_domain_ok(".."));
	assert_false(rda_domain_ok("a..b"));
	assert_false(rda_domain_ok("-a"));
	assert_false(rda_domain_ok(""));
}

struct rua_case {
	const char *name, *rua;
	const char *want;	/* addresses (and !size) joined by ' ' */
};

static const struct rua_case rua_cases[] = {
	{ "one", "mailto:agg@reject.example", "agg@reject.example" },
	{ "two with spaces", "mailto:a@x.example , MAILTO:b@Y.Example", "a@x.example b@y.example" },
	{ "size", "mailto:a@x.example!10m", "a@x.example!10485760" },
	{ "percent", "mailto:a%2Bb@x.example", "a+b@x.example" },
	{ "other scheme", "https://x.example/r,mailto:a@x.example", "a@x.example" },
	{ "duplicate", "mailto:a@x.example,mailto:A@x.example", "a@x.example" },
	{ "bad local", "mailto:\"a b\"@x.example", "" },
	{ "no dot", "mailto:a@localhost", "" },
	{ "bad size", "mailto:a@x.example!10q", "" },
	{ "none", "-", "" },
	{ "hfields", "mailto:a@x.example?subject=x", "a@x.example" },
};

static void test_rua_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof rua_cases / sizeof rua_cases[0]; i++) {
		struct rds_dest d[RDS_MAX_DEST];
		size_t n = rds_rua_parse(rua_cases[i].rua, d, RDS_MAX_DEST);
		struct sbuf b;
		sbuf_init(&b);
		for (size_t k = 0; k < n; k++) {
			sbuf_printf(&b, "%s%s", k ? " " : "", d[k].addr);
			if (d[k].max_bytes)
				sbuf_printf(&b, "!%llu", d[k].max_bytes);
		}
		sbuf_addc(&b, 0);
		if (strcmp(b.buf, rua_cases[i].want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", rua_cases[i].name, b.buf, rua_cases[i].want);
		sbuf_free(&b);
	}
}

/* fake DNS: TXT answers by name; "servfail" as the text = SERVFAIL */
static const char *const fake_zone[][2] = {
	{ "p.example._report._dmarc.ok.example", "v=DMARC1" },
	{ "p.example._report._dmarc.over.example", "v=DMARC1; rua=mailto:other@over.example" },
	{ "p.example._report._dmarc.away.example", "v=DMARC1; rua=mailto:x@elsewhere.example" },
	{ "p.example._report._dmarc.notdmarc.example", "v=spf1 -all" },
	{ "p.example._report._dmarc.temp.example", "servfail" },
};
static int fake_queries;

static struct dns_answer *fake_lookup(void *arg, const char *name, enum dns_type type)
{
	(void)arg;
	fake_queries++;
	struct dns_answer *a = xcalloc(1, sizeof *a);
	a->qname = xstrdup(name);
	a->qtype = type;
	a->status = DNS_NXDOMAIN;
	for (size_t i = 0; i < sizeof fake_zone / sizeof fake_zone[0]; i++) {
		if (strcmp(fake_zone[i][0], name) != 0)
			continue;
		if (!strcmp(fake_zone[i][1], "servfail")) {
			a->status = DNS_SERVFAIL;
			break;
		}
		a->status = DNS_OK;
		a->n = 1;
		a->rr = xcalloc(1, sizeof *a->rr);
		a->rr[0].type = DNS_T_TXT;
		a->rr[0].u.txt.data = xstrdup(fake_zone[i][1]);
		a->rr[0].u.txt.len = strlen(fake_zone[i][1]);
		a->rr[0].u.txt.nstrings = 1;
	}
	return a;
}

static void test_verify(void **state)
{
	(void)state;
	struct rds_dest d[RDS_MAX_DEST];
	size_t n = rds_rua_parse("mailto:a@p.example,mailto:b@sub.p.example,mailto:c@ok.example,"
				 "mailto:d@over.example,mailto:e@away.example,mailto:f@nothing.example,"
				 "mailto:g@notdmarc.example,mailto:h@temp.example", d, RDS_MAX_DEST);
	assert_int_equal(n, 8);
	fake_queries = 0;
	rds_verify(d, n, "p.example", "-", fake_lookup, NULL);
	static const enum rds_verdict want[] = { RDS_INTERNAL, RDS_INTERNAL, RDS_VERIFIED, RDS_VERIFIED,
						 RDS_REFUSED, RDS_REFUSED, RDS_REFUSED, RDS_TEMPERROR };
	for (size_t i = 0; i < n; i++)
		if (d[i].verdict != want[i])
			fail_msg("%s: %s, want %s", d[i].addr, rds_verdict_name(d[i].verdict),
				 rds_verdict_name(want[i]));
	assert_int_equal(fake_queries, 6);	/* none for the internal ones */
	assert_string_equal(d[3].addr, "other@over.example");	/* same-host override */
	/* an Organizational Domain that sluice-dmarc logged also makes it internal */
	n = rds_rua_parse("mailto:a@reports.org.example", d, RDS_MAX_DEST);
	rds_verify(d, n, "p.sub.org.example", "org.example", fake_lookup, NULL);
	assert_int_equal(d[0].verdict, RDS_INTERNAL);
}

static void test_suppress(void **state)
{
	(void)state;
	char path[] = "/tmp/test_report_dmarc_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "# listed by hand\nOld@X.example\n\n  spaced@y.example  # why\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char *err = NULL;
	struct rds_suppress *s = rds_suppress_load(path, &err);
	assert_non_null(s);
	assert_true(rds_suppress_has(s, "old@x.example"));
	assert_true(rds_suppress_has(s, "spaced@y.example"));
	assert_false(rds_suppress_has(s, "new@z.example"));
	assert_int_equal(rds_suppress_add(s, "new@z.example", "bounced", &err), 1);
	assert_int_equal(rds_suppress_add(s, "NEW@z.example", "bounced", &err), 0);
	rds_suppress_free(&s);
	s = rds_suppress_load(path, &err);
	assert_true(rds_suppress_has(s, "new@z.example"));
	rds_suppress_free(&s);
	unlink(path);
	/* none configured: empty, cannot be added to */
	s = rds_suppress_load("", &err);
	assert_false(rds_suppress_has(s, "a@b.example"));
	assert_int_equal(rds_suppress_add(s, "a@b.example", "x", &err), -1);
	free(err);
	rds_suppress_free(&s);
}

static void test_bounces(void **state)
{
	(void)state;
	static const char *const log[] = {
		"Dec  2 08:00:01 mx sluice/qmgr[3]: 4jfXm75Snvz4Ly: from=<dmarc@mx.test>, size=1000, nrcpt=1 (queue active)",
		"Dec  2 08:00:01 mx sluice/qmgr[3]: 3F2A1C9D0B: from=<joe@x.example>, size=1000, nrcpt=1 (queue active)",
		"Dec  2 08:00:02 mx sluice/smtp[4]: 4jfXm75Snvz4Ly: to=<Agg@Bad.example>, relay=mx.bad.example[192.0.2.20]:25, "
		"delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (host said: 550 5.1.1 unknown)",
		"Dec  2 08:00:02 mx sluice/smtp[4]: 3F2A1C9D0B: to=<other@bad.example>, relay=mx.bad.example[192.0.2.20]:25, "
		"delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (host said: 550 5.1.1 unknown)",
		"Dec  2 08:00:02 mx sluice/qmgr[3]: 4jfXm75Snvz4Ly: removed",
		"Dec  2 08:00:03 mx sluice/smtp[4]: 4jfXm75Snvz4Ly: to=<late@bad.example>, relay=none, delay=1, "
		"delays=0/0/0/1, dsn=5.1.1, status=bounced (gone)",
	};
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rmap ids = { 0 }, out = { 0 };
	for (size_t i = 0; i < sizeof log / sizeof log[0]; i++) {
		struct rp_event ev;
		rp_parse_line(p, log[i], strlen(log[i]), &ev);
		rds_bounces_feed(&ids, &out, &ev, "dmarc@mx.test");
	}
	assert_int_equal(out.n, 1);
	assert_non_null(rmap_get(&out, "agg@bad.example", 0));
	assert_int_equal(ids.n, 0);
	rmap_free(&ids, NULL);
	rmap_free(&out, NULL);
	rp_parser_free(&p);
}

static void test_message(void **state)
{
	(void)state;
	const unsigned char gz[] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3, 1, 2, 3, 4, 5 };
	struct rds_mail m = { "dmarc@mx.test", "agg@reject.example", "mx.test",
			      "1796169600.reject.example@mx.test",
			      "mx.test!reject.example!1796169600!1796255999.xml.gz", "reject.example",
			      1796169600, 1796255999, 3, 2, gz, sizeof gz, 1796200000 };
	size_t len;
	char *msg = rds_message(&m, &len);
	assert_int_equal(strlen(msg), len);
	assert_non_null(strstr(msg, "From: dmarc@mx.test\nTo: agg@reject.example\n"));
	assert_non_null(strstr(msg, "Subject: Report Domain: reject.example\n Submitter: mx.test\n"
				    " Report-ID: <1796169600.reject.example@mx.test>\n"));
	assert_non_null(strstr(msg, "Message-ID: <1796169600.reject.example@mx.test>\n"));
	assert_non_null(strstr(msg, "Date: Wed, 2 Dec 2026 08:26:40 +0000\n"));
	assert_non_null(strstr(msg, "Content-Type: application/gzip; name=\"mx.test!reject.example!"
				    "1796169600!1796255999.xml.gz\"\n"));
	/* base64 of the 15 bytes */
	unsigned char b64[32];
	EVP_EncodeBlock(b64, gz, sizeof gz);
	assert_non_null(strstr(msg, (char *)b64));
	free(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kv_past_rp_max_kv),
		cmocka_unit_test(test_grouping),
		cmocka_unit_test(test_period_and_domain_split),
		cmocka_unit_test(test_what_counts),
		cmocka_unit_test(test_xml_rfc9990),
		cmocka_unit_test(test_xml_rfc7489),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_rua_parse),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_suppress),
		cmocka_unit_test(test_bounces),
		cmocka_unit_test(test_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
