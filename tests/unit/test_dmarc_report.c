/*
 * test_dmarc_report: proto/dmarc_report (RFC 9990 section 4 external
 * destination verification, steps 4-9) over a fake DNS: verified, the
 * record's own rua=/ruf= override kept (same host) or refused (another
 * host), not found (NXDOMAIN, NODATA, TXT that is not DMARC), temperror
 * (SERVFAIL, timeout, error), names over 253 bytes (nothing asked). Whether
 * a destination is internal is the callers' decision (tested in
 * test_report_dmarc and test_dmarc_failrep). The mailto: URI parser under
 * both rule sets (ruf=: sluice-dmarc, rua=-like: sluice report) and the list
 * into a caller's own struct layout (skipped count, duplicates, max).
 */
#include "proto/dmarc_report.h"
#include "lib/util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

/* ---- fake DNS: one name, its status and TXT strings ---- */

struct zone {
	const char *name;
	enum dns_status st;
	const char *txt[3];
};

static const struct zone *zone;
static unsigned nqueries;
static char asked[300];

static struct dns_answer *fake_lookup(void *arg, const char *name, enum dns_type type)
{
	(void)arg;
	nqueries++;
	snprintf(asked, sizeof asked, "%s", name);
	struct dns_answer *a = xcalloc(1, sizeof *a);
	a->qname = xstrdup(name);
	a->qtype = type;
	a->status = DNS_NXDOMAIN;
	if (zone && type == DNS_T_TXT && !strcasecmp(zone->name, name)) {
		a->status = zone->st;
		for (size_t i = 0; zone->st == DNS_OK && i < 3 && zone->txt[i]; i++) {
			a->rr = xrealloc(a->rr, (a->n + 1) * sizeof *a->rr);
			struct dns_rr *r = &a->rr[a->n++];
			memset(r, 0, sizeof *r);
			r->type = DNS_T_TXT;
			r->u.txt.data = xstrdup(zone->txt[i]);
			r->u.txt.len = strlen(zone->txt[i]);
			r->u.txt.nstrings = 1;
		}
	}
	return a;
}

/* o: the destination before (addr "orig@<host>", max_bytes 7); *have: it was overridden */
static enum dmarc_report_verdict run(const struct zone *z, const char *pdom, const char *host,
				     enum dmarc_report_tag tag, struct dmarc_report_uri *o, int *have)
{
	zone = z;
	nqueries = 0;
	asked[0] = 0;
	memset(o, 0, sizeof *o);
	snprintf(o->addr, sizeof o->addr, "orig@%.100s", host);
	o->max_bytes = 7;
	enum dmarc_report_verdict v = dmarc_report_verify(pdom, host, tag, NULL, fake_lookup, NULL,
							  o->addr, sizeof o->addr, &o->max_bytes);
	*have = strncmp(o->addr, "orig@", 5) != 0 || o->max_bytes != 7;
	return v;
}

static void test_verified(void **state)
{
	(void)state;
	struct dmarc_report_uri o;
	int have;
	static const struct zone z = { "example.com._report._dmarc.reports.example.net", DNS_OK,
				       { "v=DMARC1" } };
	assert_int_equal(run(&z, "example.com", "reports.example.net", DMARC_REPORT_RUA, &o, &have),
			 DMARC_REPORT_VERIFIED);
	assert_int_equal(nqueries, 1);
	assert_string_equal(asked, "example.com._report._dmarc.reports.example.net");
	assert_int_equal(have, 0);
	/* other TXT strings before the DMARC one do not matter; the first DMARC one decides */
	static const struct zone z2 = { "example.com._report._dmarc.reports.example.net", DNS_OK,
					{ "some-verification=abc", "v=DMARC1; p=none",
					  "v=DMARC1; rua=mailto:x@elsewhere.example" } };
	assert_int_equal(run(&z2, "example.com", "reports.example.net", DMARC_REPORT_RUA, &o, &have),
			 DMARC_REPORT_VERIFIED);
	assert_int_equal(have, 0);
	assert_string_equal(dmarc_report_verdict_name(DMARC_REPORT_VERIFIED), "verified");
}

static void test_override(void **state)
{
	(void)state;
	struct dmarc_report_uri o;
	int have;
	/* same host: kept, the first one replaces the destination */
	static const struct zone kept = { "example.com._report._dmarc.example.net", DNS_OK,
					  { "v=DMARC1; rua=mailto:agg@Example.NET!10,"
					    "mailto:agg2@example.net; ruf=mailto:fr@example.net!20" } };
	assert_int_equal(run(&kept, "example.com", "example.net", DMARC_REPORT_RUA, &o, &have),
			 DMARC_REPORT_VERIFIED);
	assert_int_equal(have, 1);
	assert_string_equal(o.addr, "agg@example.net");
	assert_int_equal(o.max_bytes, 10);
	/* the tag asked for is the one read */
	assert_int_equal(run(&kept, "example.com", "example.net", DMARC_REPORT_RUF, &o, &have),
			 DMARC_REPORT_VERIFIED);
	assert_int_equal(have, 1);
	assert_string_equal(o.addr, "fr@example.net");
	assert_int_equal(o.max_bytes, 20);
	/* another host anywhere in the list: refused (step 9, MUST NOT) */
	static const struct zone away = { "example.com._report._dmarc.example.net", DNS_OK,
					  { "v=DMARC1; rua=mailto:agg@example.net,"
					    "mailto:agg@other.example; ruf=mailto:fr@example.net" } };
	assert_int_equal(run(&away, "example.com", "example.net", DMARC_REPORT_RUA, &o, &have),
			 DMARC_REPORT_ELSEWHERE);
	assert_int_equal(have, 0);
	assert_int_equal(run(&away, "example.com", "example.net", DMARC_REPORT_RUF, &o, &have),
			 DMARC_REPORT_VERIFIED);
	assert_int_equal(have, 1);
	/* URIs the parser does not give (other schemes) do not count */
	static const struct zone https = { "example.com._report._dmarc.example.net", DNS_OK,
					   { "v=DMARC1; rua=https://other.example/x" } };
	assert_int_equal(run(&https, "example.com", "example.net", DMARC_REPORT_RUA, &o, &have),
			 DMARC_REPORT_VERIFIED);
	assert_int_equal(have, 0);
	/* addr and max_bytes may be NULL */
	zone = &away;
	assert_int_equal(dmarc_report_verify("example.com", "example.net", DMARC_REPORT_RUA, NULL,
					     fake_lookup, NULL, NULL, 0, NULL),
			 DMARC_REPORT_ELSEWHERE);
	assert_int_equal(dmarc_report_verify("example.com", "example.net", DMARC_REPORT_RUF, NULL,
					     fake_lookup, NULL, NULL, 0, NULL),
			 DMARC_REPORT_VERIFIED);
	/* a small addr buffer: truncated, never overrun */
	char small[8];
	strcpy(small, "x");
	assert_int_equal(dmarc_report_verify("example.com", "example.net", DMARC_REPORT_RUF, NULL,
					     fake_lookup, NULL, small, sizeof small, NULL),
			 DMARC_REPORT_VERIFIED);
	assert_string_equal(small, "fr@exam");
}

static void test_not_found(void **state)
{
	(void)state;
	struct dmarc_report_uri o;
	int have;
	static const struct zone none = { "nothing.example", DNS_OK, { "v=DMARC1" } };
	assert_int_equal(run(&none, "example.com", "example.net", DMARC_REPORT_RUA, &o, &have),
			 DMARC_REPORT_NOT_FOUND);
	assert_int_equal(nqueries, 1);
	static const struct zone nodata = { "example.com._report._dmarc.example.net", DNS_NODATA,
					    { NULL } };
	assert_int_equal(run(&nodata, "example.com", "example.net", DMARC_REPORT_RUF, &o, &have),
			 DMARC_REPORT_NOT_FOUND);
	static const struct zone spf = { "example.com._report._dmarc.example.net", DNS_OK,
					 { "v=spf1 -all", "hello v=DMARC1" } };
	assert_int_equal(run(&spf, "example.com", "example.net", DMARC_REPORT_RUA, &o, &have),
			 DMARC_REPORT_NOT_FOUND);
	assert_int_equal(have, 0);
}

static void test_temperror(void **state)
{
	(void)state;
	struct dmarc_report_uri o;
	int have;
	static const enum dns_status st[] = { DNS_SERVFAIL, DNS_TIMEOUT, DNS_ERROR };
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
		struct zone z = { "example.com._report._dmarc.example.net", st[i], { NULL } };
		assert_int_equal(run(&z, "example.com", "example.net", DMARC_REPORT_RUA, &o, &have),
				 DMARC_REPORT_TEMPERROR);
		assert_int_equal(nqueries, 1);
		assert_int_equal(have, 0);
	}
	assert_string_equal(dmarc_report_verdict_name(DMARC_REPORT_TEMPERROR), "temperror");
}

static void test_too_long(void **state)
{
	(void)state;
	struct dmarc_report_uri o;
	int have;
	/* "<p>._report._dmarc.<h>": 15 + strlen(p) + 1 + strlen(h); 253 is the limit */
	char p[200], h[200];
	memset(p, 'a', sizeof p);
	memset(h, 'b', sizeof h);
	p[100] = 0;
	size_t hl = 253 - 100 - strlen("._report._dmarc.");
	h[hl] = 0;
	static const struct zone z = { "-", DNS_NXDOMAIN, { NULL } };
	assert_int_equal(run(&z, p, h, DMARC_REPORT_RUA, &o, &have), DMARC_REPORT_NOT_FOUND);
	assert_int_equal(nqueries, 1);
	assert_int_equal(strlen(asked), 253);
	h[hl] = 'b';
	h[hl + 1] = 0;
	assert_int_equal(run(&z, p, h, DMARC_REPORT_RUF, &o, &have), DMARC_REPORT_TOO_LONG);
	assert_int_equal(nqueries, 0);
	assert_int_equal(have, 0);
	h[199] = 0;
	p[199] = 0;
	assert_int_equal(run(&z, p, h, DMARC_REPORT_RUA, &o, &have), DMARC_REPORT_TOO_LONG);
	assert_int_equal(nqueries, 0);
	assert_string_equal(dmarc_report_verdict_name(DMARC_REPORT_TOO_LONG), "too-long");
}

/* ---- the URI list ---- */

/* like sluice report's rda_domain_ok: no leading '-', no empty label, no trailing dot, '_' allowed */
static int host_no_dash(const char *h)
{
	return *h && h[0] != '-' && h[0] != '.' && !strstr(h, "..") && h[strlen(h) - 1] != '.' &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
		       strlen(h);
}

static void test_uri_parse(void **state)
{
	(void)state;
	struct dmarc_report_uri u;
	static const struct dmarc_report_uri_rules rua = { host_no_dash, 1 };
	static const struct {
		const char *uri;
		int rc, rc_rua;			/* ruf rules (NULL), the rua-like rules above */
		const char *addr;		/* with the ruf rules */
		unsigned long long max, max_rua;
	} c[] = {
		{ "mailto:a@example.com", 0, 0, "a@example.com", 0, 0 },
		{ "MAILTO:First.Last@Example.COM", 0, 0, "First.Last@example.com", 0, 0 },
		{ "mailto:a%2Bb@example.com?subject=x", 0, 0, "a+b@example.com", 0, 0 },
		{ "mailto:a@example.com!10k", 0, 0, "a@example.com", 10240, 10240 },
		{ "mailto:a@example.com!2M", 0, 0, "a@example.com", 2 << 20, 2 << 20 },
		{ "mailto:a@example.com!0", 0, 0, "a@example.com", 1, 0 },
		{ "mailto:a@example.com!99999999999999999999999", 0, -1, "a@example.com", ~0ULL, 0 },
		{ "mailto:a@example.com!", -1, -1, NULL, 0, 0 },
		{ "mailto:a@example.com!10x", -1, -1, NULL, 0, 0 },
		{ "mailto:a@example.com!10kb", -1, -1, NULL, 0, 0 },
		{ "https://example.com/r", 1, 1, NULL, 0, 0 },
		{ "mailto:example.com", -1, -1, NULL, 0, 0 },
		{ "mailto:a..b@example.com", -1, -1, NULL, 0, 0 },
		{ "mailto:.a@example.com", -1, -1, NULL, 0, 0 },
		{ "mailto:\"a b\"@example.com", -1, -1, NULL, 0, 0 },
		{ "mailto:a%20b@example.com", -1, -1, NULL, 0, 0 },
		{ "mailto:a%0d%0aBcc:x@example.com", -1, -1, NULL, 0, 0 },
		{ "mailto:a%zz@example.com", -1, -1, NULL, 0, 0 },
		{ "mailto:a@localhost", -1, -1, NULL, 0, 0 },
		{ "mailto:a@ex_ample.com", -1, 0, NULL, 0, 0 },
		{ "mailto:a@example.com.", 0, -1, "a@example.com", 0, 0 },
		{ "mailto:a@-example.com", 0, -1, "a@-example.com", 0, 0 },
		{ "mailto:a@exa..mple.com", -1, -1, NULL, 0, 0 },
		{ "mailto:a@\xc3\xa9xample.com", -1, -1, NULL, 0, 0 },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		int rc = dmarc_report_uri_parse(c[i].uri, strlen(c[i].uri), NULL, &u);
		if (rc != c[i].rc)
			fail_msg("%s: %d, want %d", c[i].uri, rc, c[i].rc);
		if (rc == 0) {
			assert_string_equal(u.addr, c[i].addr);
			assert_string_equal(u.host, strrchr(c[i].addr, '@') + 1);
			assert_true(u.max_bytes == c[i].max);
		}
		rc = dmarc_report_uri_parse(c[i].uri, strlen(c[i].uri), &rua, &u);
		if (rc != c[i].rc_rua)
			fail_msg("%s (rua rules): %d, want %d", c[i].uri, rc, c[i].rc_rua);
		if (rc == 0)
			assert_true(u.max_bytes == c[i].max_rua);
	}
	/* 254 bytes of address at most */
	char local[300], big[400];
	memset(local, 'x', sizeof local);
	int n = snprintf(big, sizeof big, "mailto:%.242s@example.com", local);
	assert_int_equal(dmarc_report_uri_parse(big, (size_t)n, NULL, &u), 0);
	assert_int_equal(strlen(u.addr), 254);
	n = snprintf(big, sizeof big, "mailto:%.243s@example.com", local);
	assert_int_equal(dmarc_report_uri_parse(big, (size_t)n, NULL, &u), -1);
	/* len bounds the URI: no NUL needed */
	assert_int_equal(dmarc_report_uri_parse("mailto:a@example.com,mailto:b", 20, NULL, &u), 0);
	assert_string_equal(u.addr, "a@example.com");
}

/* a caller's own destination type, laid out unlike struct dmarc_report_uri */
struct dest {
	int verdict;
	unsigned long long max_bytes;
	char host[20];
	char addr[24];
};

static void test_uri_list(void **state)
{
	(void)state;
	static const struct dmarc_report_layout lay = {
		sizeof(struct dest), offsetof(struct dest, addr), sizeof(((struct dest *)0)->addr),
		offsetof(struct dest, host), sizeof(((struct dest *)0)->host),
		offsetof(struct dest, max_bytes),
	};
	struct dest d[3];
	size_t skipped = 99;
	memset(d, 0x55, sizeof d);
	size_t n = dmarc_report_uri_list(" mailto:a@example.com!1k ,, https://x.example/ ,"
					 "mailto:A@EXAMPLE.com,\tmailto:bad, mailto:b@example.net\t,"
					 "mailto:a-very-long-local-part@example.org,"
					 "mailto:c@example.org, mailto:d@example.org",
					 NULL, &lay, d, 3, &skipped);
	assert_int_equal(n, 3);
	/* other scheme, duplicate, malformed, too long for this layout, past max */
	assert_int_equal(skipped, 5);
	assert_int_equal(d[0].verdict, 0);
	assert_string_equal(d[0].addr, "a@example.com");
	assert_string_equal(d[0].host, "example.com");
	assert_true(d[0].max_bytes == 1024);
	assert_string_equal(d[1].addr, "b@example.net");
	assert_string_equal(d[2].addr, "c@example.org");
	assert_int_equal(dmarc_report_uri_list(NULL, NULL, &lay, d, 3, &skipped), 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(dmarc_report_uri_list(" , ", NULL, &lay, d, 3, &skipped), 0);
	assert_int_equal(skipped, 0);
	struct dmarc_report_uri u[2];
	assert_int_equal(dmarc_report_uri_list("mailto:x@example.com", NULL, NULL, u, 2, NULL), 1);
	assert_string_equal(u[0].host, "example.com");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verified),
		cmocka_unit_test(test_override),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_temperror),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_uri_parse),
		cmocka_unit_test(test_uri_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
