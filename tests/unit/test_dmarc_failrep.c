/*
 * test_dmarc_failrep: DMARC failure reports (milters/dmarc/dmarc_failrep)
 * without sockets or network: the fo= decision table (every fo= value with
 * every pass/fail combination of the mechanisms), ruf= parsing, external
 * destination verification over a fake DNS (a table with query counts), the
 * rate limit under a fake clock and several threads, the ARF message parsed
 * back by Python's email package (/usr/bin/python3 through popen) with and
 * without redaction, the whole run with a fake sender, and the sendmail exec
 * helper against small shell scripts standing in for sluice-sendmail.
 */
#include "milters/dmarc/dmarc_failrep.h"
#include "lib/util.h"
#include "lib/version.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- fake DNS ---- */

struct rr {
	const char *name;
	const char *txt;	/* NULL: status only */
	enum dns_status st;
};

static const struct rr *zone;
static unsigned nqueries;
static char asked[64][300];

static struct dns_answer *fake_lookup(void *arg, const char *name, enum dns_type type)
{
	(void)arg;
	if (nqueries < 64)
		snprintf(asked[nqueries], sizeof asked[0], "%s", name);
	nqueries++;
	struct dns_answer *a = xcalloc(1, sizeof *a);
	a->qname = xstrdup(name);
	a->qtype = type;
	a->status = DNS_NXDOMAIN;
	for (const struct rr *z = zone; z && z->name; z++) {
		if (strcasecmp(z->name, name) != 0 || type != DNS_T_TXT)
			continue;
		a->status = z->st;
		if (z->txt) {
			a->rr = xrealloc(a->rr, (a->n + 1) * sizeof *a->rr);
			struct dns_rr *r = &a->rr[a->n++];
			memset(r, 0, sizeof *r);
			r->type = DNS_T_TXT;
			r->u.txt.data = xstrdup(z->txt);
			r->u.txt.len = strlen(z->txt);
			r->u.txt.nstrings = 1;
		}
	}
	if (a->status == DNS_OK && a->n == 0)
		a->status = DNS_NODATA;
	return a;
}

static void use_zone(const struct rr *z)
{
	zone = z;
	nqueries = 0;
	memset(asked, 0, sizeof asked);
}

/* ---- 1. fo= ---- */

static void test_fo_parse(void **state)
{
	(void)state;
	static const struct { const char *fo; unsigned want; } c[] = {
		{ NULL, DMARC_FAILREP_FO_0 },
		{ "", DMARC_FAILREP_FO_0 },
		{ "0", DMARC_FAILREP_FO_0 },
		{ "1", DMARC_FAILREP_FO_1 },
		{ "d", DMARC_FAILREP_FO_D },
		{ "s", DMARC_FAILREP_FO_S },
		{ "0:d", DMARC_FAILREP_FO_0 | DMARC_FAILREP_FO_D },
		{ "d:1", DMARC_FAILREP_FO_1 | DMARC_FAILREP_FO_D },
		{ "1:d:s", DMARC_FAILREP_FO_1 | DMARC_FAILREP_FO_D | DMARC_FAILREP_FO_S },
		{ "s:0:d", DMARC_FAILREP_FO_0 | DMARC_FAILREP_FO_D | DMARC_FAILREP_FO_S },
		{ " 1 : s ", DMARC_FAILREP_FO_1 | DMARC_FAILREP_FO_S },
		{ "0:1", DMARC_FAILREP_FO_0 },		/* exclusive: invalid, default */
		{ "d:d", DMARC_FAILREP_FO_0 },		/* repeated: invalid */
		{ "x", DMARC_FAILREP_FO_0 },
		{ "1:x", DMARC_FAILREP_FO_0 },
		{ "1:", DMARC_FAILREP_FO_0 },
		{ "1;d", DMARC_FAILREP_FO_0 },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		unsigned got = dmarc_failrep_fo_parse(c[i].fo);
		if (got != c[i].want)
			fail_msg("fo=\"%s\": got %#x want %#x", c[i].fo ? c[i].fo : "(null)", got,
				 c[i].want);
	}
}

/* Every valid fo= value against every combination of the four facts. The
 * expectation is written from RFC 9989 4.7's wording, one line per option. */
static void test_fo_table(void **state)
{
	(void)state;
	static const char *const fos[] = { "0", "1", "d", "s", "0:d", "0:s", "0:d:s", "1:d",
					   "1:s", "1:d:s", "d:s" };
	unsigned checked = 0;
	for (size_t f = 0; f < sizeof fos / sizeof fos[0]; f++) {
		unsigned fo = dmarc_failrep_fo_parse(fos[f]);
		for (int bits = 0; bits < 16; bits++) {
			int spf_al = bits & 1, dkim_al = (bits >> 1) & 1;
			int dkim_failed = (bits >> 2) & 1, spf_failed = (bits >> 3) & 1;
			unsigned want = 0;
			if (strchr(fos[f], '0') && !spf_al && !dkim_al)	/* all failed to align */
				want |= DMARC_FAILREP_FO_0;
			if (strchr(fos[f], '1') && (!spf_al || !dkim_al))	/* any failed */
				want |= DMARC_FAILREP_FO_1;
			if (strchr(fos[f], 'd') && dkim_failed)	/* a signature did not verify */
				want |= DMARC_FAILREP_FO_D;
			if (strchr(fos[f], 's') && spf_failed)	/* SPF failed */
				want |= DMARC_FAILREP_FO_S;
			unsigned got = dmarc_failrep_fo_match(fo, spf_al, dkim_al, dkim_failed,
							      spf_failed);
			if (got != want)
				fail_msg("fo=%s spf_aligned=%d dkim_aligned=%d dkim_failed=%d "
					 "spf_failed=%d: got %#x want %#x", fos[f], spf_al, dkim_al,
					 dkim_failed, spf_failed, got, want);
			checked++;
		}
	}
	assert_int_equal(checked, 11 * 16);
	/* named rows, as an admin would read them */
	assert_int_equal(dmarc_failrep_fo_match(DMARC_FAILREP_FO_0, 1, 0, 0, 0), 0); /* dmarc pass: no */
	assert_int_equal(dmarc_failrep_fo_match(DMARC_FAILREP_FO_1, 1, 0, 0, 0), DMARC_FAILREP_FO_1);
	assert_int_equal(dmarc_failrep_fo_match(DMARC_FAILREP_FO_0, 0, 0, 0, 0), DMARC_FAILREP_FO_0);
	assert_int_equal(dmarc_failrep_fo_match(DMARC_FAILREP_FO_D, 1, 1, 1, 0), DMARC_FAILREP_FO_D);
}

/* an outcome around a parsed record */
struct oc {
	struct dmarc_record rec;
	struct dmarc_outcome o;
};

static void oc_make(struct oc *x, const char *record, enum dmarc_result res, int spf_al,
		    int dkim_al)
{
	memset(x, 0, sizeof *x);
	dmarc_record_parse(record, strlen(record), &x->rec, NULL);
	x->o.result = res;
	x->o.disposition = res == DMARC_RESULT_FAIL ? DMARC_DISP_REJECT : DMARC_DISP_NONE;
	x->o.policy = x->rec.p;
	x->o.from_domain = "example.com";
	x->o.policy_domain = "example.com";
	x->o.org_domain = "example.com";
	x->o.record = &x->rec;
	x->o.spf_aligned = spf_al;
	x->o.dkim_aligned = dkim_al;
	x->o.spf_mode = x->o.dkim_mode = 'r';
	x->o.reason = "test";
}

static void test_due(void **state)
{
	(void)state;
	struct dmarc_auth spf_fail = { "example.com", NULL, DMARC_AUTH_FAIL, DMARC_SCOPE_MFROM };
	struct dmarc_auth spf_soft = { "example.com", NULL, DMARC_AUTH_SOFTFAIL, DMARC_SCOPE_MFROM };
	struct dmarc_auth spf_helo = { "helo.example", NULL, DMARC_AUTH_FAIL, DMARC_SCOPE_HELO };
	struct dmarc_auth dkim_pass = { "example.com", "s1", DMARC_AUTH_PASS, 0 };
	struct dmarc_auth dkim_other_fail = { "other.example", "s2", DMARC_AUTH_FAIL, 0 };
	struct dmarc_auth dkim_perm = { "example.com", "s3", DMARC_AUTH_PERMERROR, 0 };
	struct dmarc_auth dkim_neutral = { "example.com", "s4", DMARC_AUTH_NEUTRAL, 0 };
	struct dmarc_auth dk2[2] = { dkim_pass, dkim_other_fail };
	struct oc x;

	oc_make(&x, "v=DMARC1; p=reject; ruf=mailto:f@example.com", DMARC_RESULT_FAIL, 0, 0);
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, NULL, 0), DMARC_FAILREP_FO_0);
	x.o.result = DMARC_RESULT_TEMPERROR;
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, NULL, 0), 0);
	x.o.result = DMARC_RESULT_PERMERROR;
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, NULL, 0), 0);
	dmarc_record_free(&x.rec);

	/* no ruf=: never (fo= is then ignored) */
	oc_make(&x, "v=DMARC1; p=reject; fo=1", DMARC_RESULT_FAIL, 0, 0);
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, NULL, 0), 0);
	dmarc_record_free(&x.rec);
	/* a ruf= with nothing valid */
	oc_make(&x, "v=DMARC1; p=reject; ruf=nonsense", DMARC_RESULT_FAIL, 0, 0);
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, NULL, 0), 0);
	dmarc_record_free(&x.rec);
	/* psd=y: RFC 9991 2, ruf MUST NOT be considered */
	oc_make(&x, "v=DMARC1; p=reject; psd=y; ruf=mailto:f@example.com", DMARC_RESULT_FAIL, 0, 0);
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, NULL, 0), 0);
	dmarc_record_free(&x.rec);
	/* no record at all */
	memset(&x, 0, sizeof x);
	x.o.result = DMARC_RESULT_NONE;
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, NULL, 0), 0);

	/* fo=1: DMARC passes through DKIM, SPF not aligned -> report */
	oc_make(&x, "v=DMARC1; p=reject; fo=1; ruf=mailto:f@example.com", DMARC_RESULT_PASS, 0, 1);
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, &dkim_pass, 1), DMARC_FAILREP_FO_1);
	x.o.spf_aligned = 1;
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, &dkim_pass, 1), 0);
	dmarc_record_free(&x.rec);

	/* fo=d: an unaligned signature that failed counts; permerror counts; neutral does not */
	oc_make(&x, "v=DMARC1; p=none; fo=d; ruf=mailto:f@example.com", DMARC_RESULT_PASS, 1, 1);
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, dk2, 2), DMARC_FAILREP_FO_D);
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, &dkim_perm, 1), DMARC_FAILREP_FO_D);
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, &dkim_neutral, 1), 0);
	assert_int_equal(dmarc_failrep_due(&x.o, NULL, 0, &dkim_pass, 1), 0);
	dmarc_record_free(&x.rec);

	/* fo=s: SPF fail in the MAIL FROM scope; softfail and a HELO result do not */
	oc_make(&x, "v=DMARC1; p=none; fo=s; ruf=mailto:f@example.com", DMARC_RESULT_PASS, 0, 1);
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, NULL, 0), DMARC_FAILREP_FO_S);
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_soft, 1, NULL, 0), 0);
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_helo, 1, NULL, 0), 0);
	dmarc_record_free(&x.rec);

	/* an invalid fo= falls back to 0 */
	oc_make(&x, "v=DMARC1; p=reject; fo=0:1; ruf=mailto:f@example.com", DMARC_RESULT_PASS, 0, 1);
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, NULL, 0), 0);
	x.o.dkim_aligned = 0;
	x.o.result = DMARC_RESULT_FAIL;
	assert_int_equal(dmarc_failrep_due(&x.o, &spf_fail, 1, NULL, 0), DMARC_FAILREP_FO_0);
	dmarc_record_free(&x.rec);
}

/* ---- 2. ruf= ---- */

static void test_ruf_parse(void **state)
{
	(void)state;
	struct dmarc_failrep_dest d[DMARC_FAILREP_MAX_DEST];
	size_t skipped = 99;

	size_t n = dmarc_failrep_ruf_parse(
		"mailto:a@example.com, MAILTO:b@Reports.Example.NET!10m ,https://x.example/r,"
		"mailto:c@x.example!500k,mailto:d@x.example!100,mailto:e@x.example!1G,"
		"mailto:r%2Bf@x.example?subject=hi,ftp://y",
		d, DMARC_FAILREP_MAX_DEST, &skipped);
	assert_int_equal(n, 6);
	assert_int_equal(skipped, 2);
	assert_string_equal(d[0].addr, "a@example.com");
	assert_string_equal(d[0].host, "example.com");
	assert_true(d[0].max_bytes == 0);
	assert_string_equal(d[1].addr, "b@reports.example.net");
	assert_true(d[1].max_bytes == 10ull * 1024 * 1024);
	assert_true(d[2].max_bytes == 500ull * 1024);
	assert_true(d[3].max_bytes == 100);
	assert_true(d[4].max_bytes == 1ull << 30);
	assert_string_equal(d[5].addr, "r+f@x.example");
	for (size_t i = 0; i < n; i++)
		assert_int_equal(d[i].verdict, DMARC_FAILREP_UNCHECKED);

	/* malformed ones are skipped, the good one stays */
	static const char *const bad[] = {
		"mailto:", "mailto:noat", "mailto:@x.example", "mailto:a@", "mailto:a@x..example",
		"mailto:a@x.example!", "mailto:a@x.example!10x", "mailto:a@x.example!k",
		"mailto:a@x.example!10mm", "mailto:\"q r\"@x.example", "mailto:a b@x.example",
		"mailto:a%0d%0aBcc:x@x.example", "mailto:.a@x.example", "mailto:a..b@x.example",
		"mailto:a@-", "mailto:c%40d@x.example", "mailto:a%zz@x.example", "mailto:a@localhost",
		"mailto:a@x_y.example", "mailto:a@[192.0.2.1]", "mailto:a%00@x.example",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char ruf[256];
		snprintf(ruf, sizeof ruf, "%s,mailto:ok@y.example", bad[i]);
		n = dmarc_failrep_ruf_parse(ruf, d, DMARC_FAILREP_MAX_DEST, &skipped);
		if (n != 1 || skipped != 1 || strcmp(d[0].addr, "ok@y.example") != 0)
			fail_msg("ruf \"%s\": n=%zu skipped=%zu", ruf, n, skipped);
	}

	/* duplicates once; more than the cap are skipped; empty items ignored */
	n = dmarc_failrep_ruf_parse("mailto:a@x.example,,mailto:A@X.example, ", d,
				    DMARC_FAILREP_MAX_DEST, &skipped);
	assert_int_equal(n, 1);
	assert_int_equal(skipped, 1);
	char many[1024] = "";
	for (int i = 0; i < 10; i++) {
		char one[64];
		snprintf(one, sizeof one, "%smailto:r%d@x.example", i ? "," : "", i);
		strcat(many, one);
	}
	n = dmarc_failrep_ruf_parse(many, d, DMARC_FAILREP_MAX_DEST, &skipped);
	assert_int_equal(n, DMARC_FAILREP_MAX_DEST);
	assert_int_equal(skipped, 2);
	assert_int_equal(dmarc_failrep_ruf_parse(NULL, d, DMARC_FAILREP_MAX_DEST, NULL), 0);
	/* the reporting address is checked with the same rules */
	assert_int_equal(dmarc_failrep_addr_ok("postmaster@mx.example.net"), 0);
	assert_int_equal(dmarc_failrep_addr_ok("dmarc-reports+x@example.com"), 0);
	static const char *const bad_from[] = { "", "postmaster", "postmaster@localhost", "a b@x.example",
						"a@x.example\n", "-f@x.example!1k", "a%40b@x.example",
						"<a@x.example>", "a@x.example,b@y.example" };
	for (size_t i = 0; i < sizeof bad_from / sizeof bad_from[0]; i++)
		if (dmarc_failrep_addr_ok(bad_from[i]) != -1)
			fail_msg("reporting address \"%s\" accepted", bad_from[i]);

	/* a huge size saturates rather than wrapping */
	n = dmarc_failrep_ruf_parse("mailto:a@x.example!99999999999999999999999t", d, 1, NULL);
	assert_int_equal(n, 1);
	assert_true(d[0].max_bytes == ~0ULL);
}

/* ---- external destination verification ---- */

static enum dmarc_failrep_verdict verify_one(const char *addr_uri, const char *policy_domain,
					     const char *policy_org, enum dmarc_mode mode,
					     char *addr_out)
{
	struct dmarc_failrep_dest d[2];
	assert_int_equal(dmarc_failrep_ruf_parse(addr_uri, d, 2, NULL), 1);
	dmarc_failrep_verify(d, 1, policy_domain, policy_org, mode, NULL, fake_lookup, NULL);
	if (addr_out)
		strcpy(addr_out, d[0].addr);
	return d[0].verdict;
}

static const struct rr zone_verify[] = {
	{ "_dmarc.example.com", "v=DMARC1; p=reject; ruf=mailto:f@example.com", DNS_OK },
	{ "example.com._report._dmarc.thirdparty.example", "v=DMARC1", DNS_OK },
	{ "_dmarc.thirdparty.example", "v=DMARC1; p=none", DNS_OK },
	{ "example.com._report._dmarc.spfonly.example", "v=spf1 -all", DNS_OK },
	{ "example.com._report._dmarc.nodata.example", NULL, DNS_OK },
	{ "example.com._report._dmarc.broken.example", NULL, DNS_SERVFAIL },
	{ "example.com._report._dmarc.override.example", "v=DMARC1; ruf=mailto:new@override.example!2k", DNS_OK },
	{ "example.com._report._dmarc.hijack.example", "v=DMARC1; ruf=mailto:x@elsewhere.example", DNS_OK },
	{ "_dmarc.dept.example.com", "v=DMARC1; p=none; psd=n", DNS_OK },
	{ "example.com._report._dmarc.dept.example.com", NULL, DNS_NXDOMAIN },
	{ "_dmarc.walkfail.example", NULL, DNS_SERVFAIL },
	{ "example.com._report._dmarc.walkfail.example", NULL, DNS_NXDOMAIN },
	{ "_dmarc.walkfail2.example", NULL, DNS_SERVFAIL },
	{ "_dmarc.hijack2.example", NULL, DNS_SERVFAIL },
	{ "example.com._report._dmarc.hijack2.example", "v=DMARC1; ruf=mailto:x@elsewhere.example", DNS_OK },
	{ "example.com._report._dmarc.walkfail2.example", "v=DMARC1;", DNS_OK },
	{ NULL, NULL, 0 },
};

static void test_verify(void **state)
{
	(void)state;
	char addr[DMARC_FAILREP_ADDR_MAX + 1];

	use_zone(zone_verify);
	/* same domain: no question at all */
	assert_int_equal(verify_one("mailto:f@example.com", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_INTERNAL);
	assert_int_equal(nqueries, 0);
	/* a subdomain with the same Organizational Domain (tree walk: _dmarc.sub, _dmarc.example.com, ...) */
	use_zone(zone_verify);
	assert_int_equal(verify_one("mailto:f@reports.example.com", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_INTERNAL);
	for (unsigned i = 0; i < nqueries; i++)
		assert_null(strstr(asked[i], "_report"));
	assert_string_equal(asked[0], "_dmarc.reports.example.com");
	assert_string_equal(asked[1], "_dmarc.example.com");
	/* external with the authorizing record */
	use_zone(zone_verify);
	assert_int_equal(verify_one("mailto:dmarc@thirdparty.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, addr), DMARC_FAILREP_VERIFIED);
	assert_string_equal(addr, "dmarc@thirdparty.example");
	assert_string_equal(asked[nqueries - 1], "example.com._report._dmarc.thirdparty.example");
	/* external: NXDOMAIN, NODATA, not a DMARC record -> refused */
	use_zone(zone_verify);
	assert_int_equal(verify_one("mailto:x@nowhere.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_REFUSED);
	assert_int_equal(verify_one("mailto:x@nodata.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_REFUSED);
	assert_int_equal(verify_one("mailto:x@spfonly.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_REFUSED);
	/* temporary failure of the deciding look-up: not sent */
	assert_int_equal(verify_one("mailto:x@broken.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_TEMPERROR);
	/* the consumer overrides the address at its own host, not elsewhere */
	assert_int_equal(verify_one("mailto:old@override.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, addr), DMARC_FAILREP_VERIFIED);
	assert_string_equal(addr, "new@override.example");
	assert_int_equal(verify_one("mailto:x@hijack.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_REFUSED);
	/* psd=n below the policy's org: its own Organizational Domain -> external */
	use_zone(zone_verify);
	assert_int_equal(verify_one("mailto:x@mx.dept.example.com", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_REFUSED);
	assert_string_equal(asked[nqueries - 1], "example.com._report._dmarc.mx.dept.example.com");
	/* the host's walk failed: the record still verifies; its absence is a temperror */
	assert_int_equal(verify_one("mailto:x@walkfail.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_TEMPERROR);
	assert_int_equal(verify_one("mailto:x@walkfail2.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_VERIFIED);
	/* an override to another host is refused even when the host's walk failed */
	assert_int_equal(verify_one("mailto:x@hijack2.example", "example.com", "example.com",
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_REFUSED);
	/* policy org unknown: determined here */
	use_zone(zone_verify);
	assert_int_equal(verify_one("mailto:f@a.example.com", "example.com", NULL,
				    DMARC_MODE_DMARCBIS, NULL), DMARC_FAILREP_INTERNAL);
	/* the constructed name is too long for DNS: refused without asking */
	use_zone(zone_verify);
	char longdom[300], uri[400];
	snprintf(longdom, sizeof longdom, "%s.%s.%s.example",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		 "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc");
	snprintf(uri, sizeof uri, "mailto:r@%s.far.example",
		 "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
	struct dmarc_failrep_dest d[2];
	assert_int_equal(dmarc_failrep_ruf_parse(uri, d, 2, NULL), 1);
	dmarc_failrep_verify(d, 1, longdom, NULL, DMARC_MODE_DMARCBIS, NULL, fake_lookup, NULL);
	assert_int_equal(d[0].verdict, DMARC_FAILREP_REFUSED);
	for (unsigned i = 0; i < nqueries && i < 64; i++)
		assert_null(strstr(asked[i], "_report"));

	/* RFC 7489 mode: the Public Suffix List decides, no DNS for the org */
	use_zone(zone_verify);
	assert_int_equal(verify_one("mailto:r@mail.example.co.uk", "example.co.uk", "example.co.uk",
				    DMARC_MODE_RFC7489, NULL), DMARC_FAILREP_INTERNAL);
	assert_int_equal(nqueries, 0);
	assert_int_equal(verify_one("mailto:r@thirdparty.example", "example.com", "example.com",
				    DMARC_MODE_RFC7489, NULL), DMARC_FAILREP_VERIFIED);
	assert_int_equal(nqueries, 1);

	/* the question budget: 8 external hosts of 4 questions each stop at 24 */
	use_zone(zone_verify);
	struct dmarc_failrep_dest m8[DMARC_FAILREP_MAX_DEST];
	assert_int_equal(dmarc_failrep_ruf_parse("mailto:r@h1.a.example,mailto:r@h2.a.example,"
						 "mailto:r@h3.a.example,mailto:r@h4.a.example,"
						 "mailto:r@h5.a.example,mailto:r@h6.a.example,"
						 "mailto:r@h7.a.example,mailto:r@h8.a.example",
						 m8, DMARC_FAILREP_MAX_DEST, NULL), 8);
	dmarc_failrep_verify(m8, 8, "example.com", "example.com", DMARC_MODE_DMARCBIS, NULL,
			     fake_lookup, NULL);
	assert_int_equal(nqueries, DMARC_FAILREP_MAX_QUERIES);
	assert_int_equal(m8[0].verdict, DMARC_FAILREP_REFUSED);
	assert_int_equal(m8[5].verdict, DMARC_FAILREP_REFUSED);
	assert_int_equal(m8[6].verdict, DMARC_FAILREP_TEMPERROR);
	assert_int_equal(m8[7].verdict, DMARC_FAILREP_TEMPERROR);

	/* several destinations: one look-up per host */
	use_zone(zone_verify);
	assert_int_equal(dmarc_failrep_ruf_parse("mailto:a@nowhere.example,mailto:b@nowhere.example,"
						 "mailto:c@example.com", d, 2, NULL), 2);
	dmarc_failrep_verify(d, 2, "example.com", "example.com", DMARC_MODE_RFC7489, NULL,
			     fake_lookup, NULL);
	assert_int_equal(d[0].verdict, DMARC_FAILREP_REFUSED);
	assert_int_equal(d[1].verdict, DMARC_FAILREP_REFUSED);
	assert_int_equal(nqueries, 1);
}

/* ---- 3. rate limit ---- */

static long long fake_now;
static long long fake_clock(void *arg)
{
	(void)arg;
	return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

static void test_rate(void **state)
{
	(void)state;
	fake_now = 1000;
	struct dmarc_failrep_rate *r = dmarc_failrep_rate_new(3, fake_clock, NULL);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dmarc_failrep_rate_take(r, "f@example.com"), 1);
	assert_int_equal(dmarc_failrep_rate_take(r, "f@example.com"), 0);
	assert_int_equal(dmarc_failrep_rate_take(r, "F@Example.COM"), 0);	/* same address */
	assert_int_equal(dmarc_failrep_rate_take(r, "g@example.com"), 1);	/* another one */
	fake_now = 1000 + DMARC_FAILREP_RATE_WINDOW_S - 1;
	assert_int_equal(dmarc_failrep_rate_take(r, "f@example.com"), 0);
	fake_now = 1000 + DMARC_FAILREP_RATE_WINDOW_S;
	assert_int_equal(dmarc_failrep_rate_take(r, "f@example.com"), 1);	/* a new hour */
	dmarc_failrep_rate_set(r, 1);
	assert_int_equal(dmarc_failrep_rate_take(r, "f@example.com"), 0);
	dmarc_failrep_rate_set(r, 0);
	assert_int_equal(dmarc_failrep_rate_take(r, "new@example.com"), 0);
	dmarc_failrep_rate_free(&r);
	assert_null(r);
	dmarc_failrep_rate_free(&r);
}

struct rate_thread {
	struct dmarc_failrep_rate *r;
	int ok;
};

static void *rate_worker(void *arg)
{
	struct rate_thread *t = arg;
	for (int i = 0; i < 2000; i++) {
		char key[32];
		t->ok += dmarc_failrep_rate_take(t->r, "shared@example.com");
		snprintf(key, sizeof key, "k%d@example.com", i % 50);
		dmarc_failrep_rate_take(t->r, key);
	}
	return NULL;
}

static void test_rate_threads(void **state)
{
	(void)state;
	fake_now = 5;
	struct dmarc_failrep_rate *r = dmarc_failrep_rate_new(100, fake_clock, NULL);
	pthread_t th[4];
	struct rate_thread t[4];
	for (int i = 0; i < 4; i++) {
		t[i].r = r;
		t[i].ok = 0;
		pthread_create(&th[i], NULL, rate_worker, &t[i]);
	}
	int total = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += t[i].ok;
	}
	assert_int_equal(total, 100);
	dmarc_failrep_rate_free(&r);
}

/* ---- 4. the report, parsed back by Python's email package ---- */

static const char *const py_parse =
	"import sys, email, email.policy, email.utils\n"
	"from email.parser import BytesParser, HeaderParser\n"
	"m = BytesParser(policy=email.policy.compat32).parse(open(sys.argv[1], 'rb'))\n"
	"print('defects=%d' % len(m.defects))\n"
	"print('ctype=%s' % m.get_content_type())\n"
	"print('report-type=%s' % m.get_param('report-type'))\n"
	"for h in ('From', 'To', 'Subject', 'Date', 'Message-ID', 'MIME-Version'):\n"
	"    print('H:%s=%s' % (h, m.get(h)))\n"
	"print('date_ok=%d' % (email.utils.parsedate_to_datetime(m['Date']) is not None))\n"
	"parts = m.get_payload()\n"
	"print('nparts=%d' % len(parts))\n"
	"for i, p in enumerate(parts):\n"
	"    print('part%d=%s defects=%d' % (i, p.get_content_type(), len(p.defects)))\n"
	"pl = parts[1].get_payload()\n"
	"f = pl[0] if isinstance(pl, list) else HeaderParser().parsestr(pl)\n"
	"for k, v in f.items():\n"
	"    print('F:%s=%s' % (k, ' '.join(v.split())))\n"
	"print('T:%s' % ' '.join(parts[0].get_payload().split()))\n"
	"o = HeaderParser().parsestr(parts[2].get_payload())\n"
	"for k, v in o.items():\n"
	"    print('O:%s=%s' % (k, ' '.join(v.split())))\n";

static char *python_parse(const char *msg, size_t len)
{
	char path[] = "/tmp/test_failrep_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, msg, len), (ssize_t)len);
	close(fd);
	char script[] = "/tmp/test_failrep_py_XXXXXX";
	fd = mkstemp(script);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, py_parse, strlen(py_parse)), (ssize_t)strlen(py_parse));
	close(fd);
	char *cmd = xasprintf("/usr/bin/python3 %s %s", script, path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	struct sbuf out;
	sbuf_init(&out);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, p)) > 0)
		sbuf_add(&out, buf, n);
	assert_int_equal(pclose(p), 0);
	unlink(path);
	unlink(script);
	free(cmd);
	return sbuf_steal(&out);
}

static void expect_line(const char *out, const char *line)
{
	char *want = xasprintf("%s\n", line);
	const char *p = out;
	int found = 0;
	while ((p = strstr(p, want)) != NULL) {
		if (p == out || p[-1] == '\n') {
			found = 1;
			break;
		}
		p++;
	}
	if (!found)
		fail_msg("missing line \"%s\" in:\n%s", line, out);
	free(want);
}

static const struct dmarc_failrep_header orig_headers[] = {
	{ "Return-Path", " <bounce+xyz@example.com>" },
	{ "Received", " from mx.sender.example (mx.sender.example [192.0.2.7])\r\n\tby mx.test"
		      " with ESMTP id 4AB12CD\r\n\tfor <bob.rcpt@rcpt.example>; Tue, 1 Dec 2026"
		      " 10:00:00 +0000" },
	{ "DKIM-Signature", " v=1; a=rsa-sha256; d=example.com; s=sel2026; i=signer.user@example.com;\n"
			    "\th=from:to:subject; bh=abc=; b=def=" },
	{ "From", " \"Alice Example\" <alice.smith@example.com>" },
	{ "To", " Bob <bob.rcpt@rcpt.example>, \"carol q\"@rcpt.example" },
	{ "Cc", " undisclosed:;" },
	{ "Subject", " Quarterly numbers\n for dave.doe@example.com" },
	{ "Message-ID", " <msgid-left-part-4711@example.com>" },
	{ "Date", " Tue, 1 Dec 2026 10:00:00 +0000" },
	{ "List-Post", " <mailto:listpost.addr@lists.example>" },
	{ "X-Odd", " value with a bad fold\nInjected: header" },
	{ "Bad Name", " dropped" },
};
static const char *const orig_locals[] = {
	"bounce+xyz", "bob.rcpt", "signer.user", "alice.smith", "carol q", "dave.doe",
	"listpost.addr", "envelope.sender",
};

static void input_make(struct dmarc_failrep_input *in, struct oc *x, struct dmarc_auth *spf,
		       struct dmarc_auth *dkim)
{
	static const char *const rcpts[] = { "bob.rcpt@rcpt.example" };
	oc_make(x, "v=DMARC1; p=reject; fo=1; ruf=mailto:failures@example.com", DMARC_RESULT_FAIL,
		0, 0);
	spf[0] = (struct dmarc_auth){ "example.com", NULL, DMARC_AUTH_FAIL, DMARC_SCOPE_MFROM };
	dkim[0] = (struct dmarc_auth){ "example.com", "sel2026", DMARC_AUTH_FAIL, 0 };
	memset(in, 0, sizeof *in);
	in->outcome = &x->o;
	in->spf = spf;
	in->nspf = 1;
	in->dkim = dkim;
	in->ndkim = 1;
	in->qid = "4AB12CD";
	in->mail_from = "envelope.sender@example.com";
	in->rcpts = rcpts;
	in->nrcpts = 1;
	in->client_ip = "192.0.2.7";
	in->arrival = 1795600800;	/* Wed, 25 Nov 2026 10:00:00 UTC */
	in->headers = orig_headers;
	in->nheaders = sizeof orig_headers / sizeof orig_headers[0];
	in->auth_results = " mx.test;\n\tdkim=fail header.d=example.com header.s=sel2026;\n"
			   "\tspf=fail smtp.mailfrom=envelope.sender@example.com;\n"
			   "\tdmarc=fail (p=reject dis=reject) header.from=example.com";
	in->spf_record = "v=spf1 ip4:198.51.100.0/24 \"-all\"";
	in->delivery = DMARC_FAILREP_REJECT;
}

static const struct dmarc_failrep_opts report_opts = {
	.reporter = "postmaster@mx.test",
	.hostname = "mx.test",
	.redact = 1,
	.now = 1795600900,
};

static void test_report_redacted(void **state)
{
	(void)state;
	struct oc x;
	struct dmarc_auth spf[1], dkim[1];
	struct dmarc_failrep_input in;
	input_make(&in, &x, spf, dkim);

	size_t len = 0;
	char *msg = dmarc_failrep_build(&in, &report_opts, "failures@example.com",
					DMARC_FAILREP_FO_1, &len);
	assert_int_equal(strlen(msg), len);
	char *out = python_parse(msg, len);

	expect_line(out, "defects=0");
	expect_line(out, "ctype=multipart/report");
	expect_line(out, "report-type=feedback-report");
	expect_line(out, "nparts=3");
	expect_line(out, "part0=text/plain defects=0");
	expect_line(out, "part1=message/feedback-report defects=0");
	expect_line(out, "part2=text/rfc822-headers defects=0");
	expect_line(out, "H:From=postmaster@mx.test");
	expect_line(out, "H:To=failures@example.com");
	expect_line(out, "H:MIME-Version=1.0");
	expect_line(out, "date_ok=1");
	assert_non_null(strstr(out, "H:Date=Wed, 25 Nov 2026 10:01:40 +0000"));
	assert_non_null(strstr(out, "H:Message-ID=<"));
	assert_non_null(strstr(out, "H:Subject=FW: Quarterly numbers for "));
	/* the report fields */
	expect_line(out, "F:Feedback-Type=auth-failure");
	expect_line(out, "F:User-Agent=sluice-dmarc/" SLUICE_VERSION);
	expect_line(out, "F:Version=1");
	expect_line(out, "F:Auth-Failure=dmarc");
	expect_line(out, "F:Original-Envelope-Id=4AB12CD");
	expect_line(out, "F:Arrival-Date=Wed, 25 Nov 2026 10:00:00 +0000");
	expect_line(out, "F:Source-IP=192.0.2.7");
	expect_line(out, "F:Reported-Domain=example.com");
	expect_line(out, "F:Identity-Alignment=dkim, spf");
	expect_line(out, "F:Delivery-Result=reject");
	expect_line(out, "F:DKIM-Domain=example.com");
	expect_line(out, "F:DKIM-Identity=@example.com");
	expect_line(out, "F:DKIM-Selector=sel2026");
	expect_line(out, "F:SPF-DNS=txt : example.com : \"v=spf1 ip4:198.51.100.0/24 \\\"-all\\\"\"");
	assert_non_null(strstr(out, "F:Authentication-Results=mx.test; dkim=fail header.d=example.com"));
	assert_non_null(strstr(out, "F:Original-Mail-From=<"));
	assert_non_null(strstr(out, "@example.com>\n"));
	assert_non_null(strstr(out, "F:Original-Rcpt-To=<"));
	/* the original header fields */
	assert_non_null(strstr(out, "O:From=\"Alice Example\" <"));
	expect_line(out, "O:Message-ID=<msgid-left-part-4711@example.com>");
	expect_line(out, "O:Date=Tue, 1 Dec 2026 10:00:00 +0000");
	assert_non_null(strstr(out, "O:X-Odd=value with a bad fold Injected: header"));
	assert_null(strstr(out, "O:Injected"));
	assert_null(strstr(out, "Bad Name"));
	assert_null(strstr(msg, "Bad Name"));

	/* redaction: no local-part anywhere, the domains everywhere, hashes in place */
	for (size_t i = 0; i < sizeof orig_locals / sizeof orig_locals[0]; i++)
		if (strstr(msg, orig_locals[i]))
			fail_msg("local-part \"%s\" left in the report:\n%s", orig_locals[i], msg);
	assert_non_null(strstr(msg, "@rcpt.example"));
	assert_non_null(strstr(msg, "@lists.example"));
	assert_non_null(strstr(msg, "by mx.test"));
	char h[17];
	dmarc_failrep_redact_local("alice.smith", 11, h);
	char *want = xasprintf("O:From=\"Alice Example\" <%s@example.com>", h);
	expect_line(out, want);
	free(want);
	dmarc_failrep_redact_local("bob.rcpt", 8, h);
	want = xasprintf("F:Original-Rcpt-To=<%s@rcpt.example>", h);
	expect_line(out, want);
	free(want);
	dmarc_failrep_redact_local("carol q", 7, h);
	want = xasprintf("%s@rcpt.example", h);
	assert_non_null(strstr(out, want));
	free(want);
	/* the body of the original is never there; our text part says so */
	assert_non_null(strstr(out, "the body is not included"));
	/* line ends: LF only; no line starts with our boundary except the delimiters */
	assert_null(strchr(msg, '\r'));
	free(out);
	free(msg);
	dmarc_record_free(&x.rec);
}

static void test_report_plain(void **state)
{
	(void)state;
	struct oc x;
	struct dmarc_auth spf[1], dkim[1];
	struct dmarc_failrep_input in;
	input_make(&in, &x, spf, dkim);
	struct dmarc_failrep_opts o = report_opts;
	o.redact = 0;
	/* SPF aligned and passing, DKIM failing: only dkim in Identity-Alignment, no SPF-DNS */
	x.o.spf_aligned = 1;
	x.o.result = DMARC_RESULT_PASS;
	spf[0].result = DMARC_AUTH_PASS;
	in.delivery = DMARC_FAILREP_DELIVERED;
	in.auth_results = NULL;
	in.nheaders = 3;	/* no Subject */

	size_t len = 0;
	char *msg = dmarc_failrep_build(&in, &o, "failures@example.com", DMARC_FAILREP_FO_D, &len);
	char *out = python_parse(msg, len);
	expect_line(out, "defects=0");
	expect_line(out, "nparts=3");
	expect_line(out, "F:Auth-Failure=signature");
	expect_line(out, "F:Identity-Alignment=dkim");
	expect_line(out, "F:Delivery-Result=delivered");
	expect_line(out, "F:Authentication-Results=mx.test; dmarc=pass header.from=example.com");
	expect_line(out, "F:Original-Mail-From=<envelope.sender@example.com>");
	expect_line(out, "F:Original-Rcpt-To=<bob.rcpt@rcpt.example>");
	expect_line(out, "H:Subject=FW: DMARC failure report for example.com");
	assert_null(strstr(out, "F:SPF-DNS"));
	assert_non_null(strstr(msg, "bounce+xyz@example.com"));
	assert_non_null(strstr(msg, "signer.user@example.com"));
	free(out);
	free(msg);

	/* both aligned (fo=d on a second, unaligned signature): "none" */
	x.o.dkim_aligned = 1;
	msg = dmarc_failrep_build(&in, &o, "failures@example.com", DMARC_FAILREP_FO_S, &len);
	out = python_parse(msg, len);
	expect_line(out, "F:Identity-Alignment=none");
	expect_line(out, "F:Auth-Failure=spf");
	free(out);
	free(msg);

	/* a long SPF record is folded at its spaces and unfolds to the same text */
	x.o.spf_aligned = 0;
	spf[0].result = DMARC_AUTH_FAIL;
	struct sbuf longrec;
	sbuf_init(&longrec);
	sbuf_adds(&longrec, "v=spf1");
	for (int i = 0; i < 60; i++)
		sbuf_printf(&longrec, " ip4:198.51.%d.0/24", i);
	sbuf_adds(&longrec, " -all");
	in.spf_record = longrec.buf;
	msg = dmarc_failrep_build(&in, &o, "failures@example.com", DMARC_FAILREP_FO_1, &len);
	for (const char *l = msg; *l;) {
		const char *e = strchr(l, '\n');
		assert_non_null(e);
		assert_true(e - l < 100);
		l = e + 1;
	}
	out = python_parse(msg, len);
	char *want_spf = xasprintf("F:SPF-DNS=txt : example.com : \"%s\"", longrec.buf);
	expect_line(out, want_spf);
	free(want_spf);
	sbuf_free(&longrec);
	in.spf_record = "v=spf1 -all";
	free(out);
	free(msg);

	/* a null reverse-path, 8-bit header, the header cap */
	static const struct dmarc_failrep_header h8[] = {
		{ "Subject", " caf\xc3\xa9" },
		{ "X-Long", " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
		{ "X-After", " cut" },
	};
	in.headers = h8;
	in.nheaders = 3;
	in.mail_from = "";
	o.max_header_bytes = 40;
	msg = dmarc_failrep_build(&in, &o, "failures@example.com", DMARC_FAILREP_FO_0, &len);
	out = python_parse(msg, len);
	expect_line(out, "defects=0");
	expect_line(out, "F:Original-Mail-From=<>");
	expect_line(out, "H:Subject=FW: DMARC failure report for example.com");
	assert_non_null(strstr(msg, "Content-Type: text/rfc822-headers; charset=utf-8\n"
				    "Content-Transfer-Encoding: 8bit"));
	assert_null(strstr(msg, "X-Long"));
	assert_null(strstr(msg, "X-After"));
	free(out);
	free(msg);
	dmarc_record_free(&x.rec);
}

static void test_is_auto(void **state)
{
	(void)state;
	static const struct {
		const char *name, *value;
		int want;
	} c[] = {
		{ "Auto-Submitted", " no", 0 },
		{ "auto-submitted", " No (comment)", 0 },
		{ "Auto-Submitted", " auto-generated", 1 },
		{ "Auto-Submitted", " auto-replied", 1 },
		{ "Auto-Submitted", " nope", 1 },
		{ "Content-Type", " multipart/report; report-type=feedback-report;\n\tboundary=x", 1 },
		{ "Content-Type", " Multipart/Report; report-type=\"Feedback-Report\"", 1 },
		{ "Content-Type", " multipart/report; report-type=delivery-status", 0 },
		{ "Content-Type", " text/plain", 0 },
		{ "Subject", " Auto-Submitted: yes", 0 },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		struct dmarc_failrep_header h[2] = { { "From", " a@b.example" }, { c[i].name, c[i].value } };
		if (dmarc_failrep_is_auto(h, 2) != c[i].want)
			fail_msg("%s:%s: want %d", c[i].name, c[i].value, c[i].want);
	}
	assert_int_equal(dmarc_failrep_is_auto(NULL, 0), 0);
}

static void test_redact_forms(void **state)
{
	(void)state;
	char h[17], h2[17];
	dmarc_failrep_redact_local("alice", 5, h);
	assert_int_equal(strlen(h), 16);
	for (int i = 0; i < 16; i++)
		assert_non_null(strchr("0123456789abcdef", h[i]));
	dmarc_failrep_redact_local("alice", 5, h2);
	assert_string_equal(h, h2);	/* stable under one key */
	dmarc_failrep_redact_local("Alice", 5, h2);
	assert_string_not_equal(h, h2);
	/* where local-parts are found; {x} is the hash of x */
	static const struct {
		const char *in, *want;
	} c[] = {
		{ "alice@example.com", "{alice}@example.com" },
		{ "Alice <alice.smith@example.com>", "Alice <{alice.smith}@example.com>" },
		{ "alice @example.com", "{alice} @example.com" },
		{ "alice@ example.com", "{alice}@ example.com" },
		{ "\"carol q\"@x.example", "{carol q}@x.example" },
		{ "\"a\".\"b\"@x.example", "{\"a\".\"b\"}@x.example" },
		{ "a.\"b c\"@x.example", "{a.\"b c\"}@x.example" },
		{ "<@route.example:bob@x.example>", "<@route.example:{bob}@x.example>" },
		{ "u@[192.0.2.1]", "{u}@[192.0.2.1]" },
		{ "smtp.mailfrom=u.v@d.example; header.from=d.example",
		  "smtp.mailfrom={u.v}@d.example; header.from=d.example" },
		{ "i=signer@d.example; b=x", "i={signer}@d.example; b=x" },
		{ "SRS0=ab=cd=example.org=carl@fwd.example", "{SRS0=ab=cd=example.org=carl}@fwd.example" },
		{ "for <a@x.example>, <b@y.example>;", "for <{a}@x.example>, <{b}@y.example>;" },
		{ "@x.example", "@x.example" },
		{ "trailing a@", "trailing a@" },
		{ "a@-x", "a@-x" },
		{ "no at all", "no at all" },
		{ "mailto:list+help@lists.example", "mailto:{list+help}@lists.example" },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		/* expand {...} in want */
		struct sbuf w;
		sbuf_init(&w);
		for (const char *p = c[i].want; *p;) {
			const char *hp = strchr(p, '{');
			if (!hp) {
				sbuf_adds(&w, p);
				break;
			}
			sbuf_add(&w, p, (size_t)(hp - p));
			const char *e = strchr(hp, '}');
			assert_non_null(e);
			char hh[17];
			dmarc_failrep_redact_local(hp + 1, (size_t)(e - hp - 1), hh);
			sbuf_adds(&w, hh);
			p = e + 1;
		}
		char *got = dmarc_failrep_redact_text(c[i].in);
		if (strcmp(got, w.buf) != 0)
			fail_msg("redact \"%s\": got \"%s\" want \"%s\"", c[i].in, got, w.buf);
		free(got);
		sbuf_free(&w);
	}

	unsigned char k[32] = { 1 };
	dmarc_failrep_set_key(k, sizeof k);
	dmarc_failrep_redact_local("alice", 5, h2);
	assert_string_not_equal(h, h2);	/* keyed */
}

/* ---- the whole run, with a fake sender ---- */

struct sent {
	int n;
	char rcpt[8][256];
	char *msg[8];
	int fail;
};

static int fake_send(void *arg, const char *from, const char *rcpt, const char *msg, size_t len,
		     char **err_out)
{
	struct sent *s = arg;
	assert_string_equal(from, "postmaster@mx.test");
	if (s->fail) {
		*err_out = xstrdup("exit 75: cannot connect");
		return -1;
	}
	snprintf(s->rcpt[s->n], sizeof s->rcpt[0], "%s", rcpt);
	s->msg[s->n++] = xstrndup(msg, len);
	return 0;
}

static const struct rr zone_run[] = {
	{ "_dmarc.example.com", "v=DMARC1; p=reject; fo=1; ruf=mailto:failures@example.com", DNS_OK },
	{ "example.com._report._dmarc.thirdparty.example", "v=DMARC1", DNS_OK },
	{ "_dmarc.thirdparty.example", "v=DMARC1; p=none", DNS_OK },
	{ "example.com", "v=spf1 ip4:198.51.100.0/24 -all", DNS_OK },
	{ NULL, NULL, 0 },
};

static void test_run(void **state)
{
	(void)state;
	struct oc x;
	struct dmarc_auth spf[1], dkim[1];
	struct dmarc_failrep_input in;
	input_make(&in, &x, spf, dkim);
	dmarc_record_free(&x.rec);
	const char *rec = "v=DMARC1; p=reject; fo=1; ruf=mailto:failures@example.com,"
			  "mailto:dmarc@thirdparty.example!1m,mailto:x@unrelated.example,"
			  "mailto:small@example.com!1k,https://r.example/";
	dmarc_record_parse(rec, strlen(rec), &x.rec, NULL);
	in.spf_record = NULL;	/* looked up */
	fake_now = 77;
	struct dmarc_failrep_rate *rate = dmarc_failrep_rate_new(1, fake_clock, NULL);
	struct sent s = { 0 };
	struct dmarc_failrep_result res;

	use_zone(zone_run);
	unsigned hit = dmarc_failrep_run(&in, &report_opts, rate, DMARC_MODE_DMARCBIS, NULL,
					 fake_lookup, NULL, fake_send, &s, &res);
	assert_int_equal(hit, DMARC_FAILREP_FO_1);
	assert_int_equal(res.fo_hit, DMARC_FAILREP_FO_1);
	assert_int_equal(res.nskipped, 1);
	assert_int_equal(res.n, 4);
	assert_string_equal(res.dest[0].dest.addr, "failures@example.com");
	assert_int_equal(res.dest[0].dest.verdict, DMARC_FAILREP_INTERNAL);
	assert_int_equal(res.dest[0].status, DMARC_FAILREP_SENT);
	assert_int_equal(res.dest[1].dest.verdict, DMARC_FAILREP_VERIFIED);
	assert_int_equal(res.dest[1].status, DMARC_FAILREP_SENT);
	assert_int_equal(res.dest[2].dest.verdict, DMARC_FAILREP_REFUSED);
	assert_int_equal(res.dest[2].status, DMARC_FAILREP_NOT_VERIFIED);
	assert_int_equal(res.dest[3].status, DMARC_FAILREP_TOO_BIG);
	assert_true(res.dest[3].bytes > 1024);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.rcpt[0], "failures@example.com");
	assert_string_equal(s.rcpt[1], "dmarc@thirdparty.example");
	assert_non_null(strstr(s.msg[0], "To: failures@example.com\n"));
	assert_non_null(strstr(s.msg[0], "SPF-DNS: txt : example.com : \"v=spf1 ip4:198.51.100.0/24 -all\""));
	assert_string_equal(dmarc_failrep_status_name(res.dest[2].status), "not_verified");
	dmarc_failrep_result_clear(&res);

	/* the next message within the hour: rate limited, nothing sent, and the
	 * limited addresses cost no DNS (a flood of forgeries asks nothing for them) */
	use_zone(zone_run);
	hit = dmarc_failrep_run(&in, &report_opts, rate, DMARC_MODE_DMARCBIS, NULL, fake_lookup,
				NULL, fake_send, &s, &res);
	assert_int_equal(res.dest[0].status, DMARC_FAILREP_RATE_LIMITED);
	assert_int_equal(res.dest[1].status, DMARC_FAILREP_RATE_LIMITED);
	assert_int_equal(res.dest[1].dest.verdict, DMARC_FAILREP_UNCHECKED);
	assert_int_equal(res.dest[2].status, DMARC_FAILREP_NOT_VERIFIED);
	for (unsigned i = 0; i < nqueries; i++)
		assert_null(strstr(asked[i], "thirdparty"));
	assert_int_equal(s.n, 2);
	dmarc_failrep_result_clear(&res);

	/* an hour later the sender fails: reported, not fatal */
	fake_now += DMARC_FAILREP_RATE_WINDOW_S;
	s.fail = 1;
	dmarc_failrep_run(&in, &report_opts, rate, DMARC_MODE_DMARCBIS, NULL, fake_lookup, NULL,
			  fake_send, &s, &res);
	assert_int_equal(res.dest[0].status, DMARC_FAILREP_SEND_FAILED);
	assert_string_equal(res.dest[0].err, "exit 75: cannot connect");
	dmarc_failrep_result_clear(&res);
	assert_int_equal(res.n, 0);

	/* the message is itself automatic: suppressed, nothing asked */
	static const struct dmarc_failrep_header auto_h[] = {
		{ "From", " a@example.com" }, { "Auto-Submitted", " auto-replied (vacation)" },
	};
	in.headers = auto_h;
	in.nheaders = 2;
	use_zone(zone_run);
	assert_int_equal(dmarc_failrep_run(&in, &report_opts, rate, DMARC_MODE_DMARCBIS, NULL,
					   fake_lookup, NULL, fake_send, &s, &res), 0);
	assert_int_equal(res.suppressed, 1);
	assert_int_equal(res.fo_hit, DMARC_FAILREP_FO_1);
	assert_int_equal(res.n, 0);
	assert_int_equal(nqueries, 0);
	dmarc_failrep_result_clear(&res);
	in.headers = orig_headers;
	in.nheaders = sizeof orig_headers / sizeof orig_headers[0];

	/* DMARC passed with both aligned, fo=1: nothing is due, nothing asked */
	x.o.spf_aligned = x.o.dkim_aligned = 1;
	x.o.result = DMARC_RESULT_PASS;
	use_zone(zone_run);
	assert_int_equal(dmarc_failrep_run(&in, &report_opts, rate, DMARC_MODE_DMARCBIS, NULL,
					   fake_lookup, NULL, fake_send, &s, &res), 0);
	assert_int_equal(res.n, 0);
	assert_int_equal(nqueries, 0);

	for (int i = 0; i < s.n; i++)
		free(s.msg[i]);
	dmarc_failrep_rate_free(&rate);
	dmarc_record_free(&x.rec);
}

/* ---- 5. sending through an executable ---- */

static char tmpdir[64];

static char *script(const char *name, const char *body)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s", body);
	fclose(f);
	chmod(path, 0755);
	return path;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	struct sbuf b;
	sbuf_init(&b);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		sbuf_add(&b, buf, n);
	fclose(f);
	return sbuf_steal(&b);
}

static void test_send_exec(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_failrep_XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	char *body = xasprintf("printf '%%s\\n' \"$@\" > %s/args\ncat > %s/stdin\nexit 0\n", tmpdir,
			       tmpdir);
	char *ok = script("ok.sh", body);
	free(body);
	struct dmarc_failrep_sendmail sm = { ok, "/etc/x/sluice.conf", 5000 };
	char *err = (char *)"x";
	/* a message bigger than a socket buffer */
	struct sbuf m;
	sbuf_init(&m);
	sbuf_adds(&m, "Subject: t\n\n");
	for (int i = 0; i < 20000; i++)
		sbuf_adds(&m, ".line of the body\n");
	assert_int_equal(dmarc_failrep_send_exec(&sm, "postmaster@mx.test", "-rcpt@x.example",
						 m.buf, m.len, &err), 0);
	assert_null(err);
	char *p = xasprintf("%s/args", tmpdir);
	char *args = slurp(p);
	free(p);
	assert_string_equal(args, "-C\n/etc/x/sluice.conf\n-f\npostmaster@mx.test\n-i\n--\n-rcpt@x.example\n");
	free(args);
	p = xasprintf("%s/stdin", tmpdir);
	char *in = slurp(p);
	free(p);
	assert_string_equal(in, m.buf);
	free(in);

	/* the child fails: its exit code and stderr come back */
	char *bad = script("bad.sh", "cat >/dev/null\necho 'sendmail: cannot connect to x' >&2\nexit 75\n");
	sm.path = bad;
	sm.conf_path = NULL;
	assert_int_equal(dmarc_failrep_send_exec(&sm, "a@b.example", "c@d.example", "x\n", 2, &err), -1);
	assert_string_equal(err, "exit 75: sendmail: cannot connect to x");
	free(err);

	/* the child does not read its input and exits: no SIGPIPE, an error */
	char *deaf = script("deaf.sh", "exit 0\n");
	sm.path = deaf;
	assert_int_equal(dmarc_failrep_send_exec(&sm, "a@b.example", "c@d.example", m.buf, m.len,
						 &err), -1);
	assert_non_null(strstr(err, "exited before reading the whole report"));
	free(err);

	/* the child hangs: killed at the timeout */
	char *hang = script("hang.sh", "exec sleep 30\n");
	sm.path = hang;
	sm.timeout_ms = 300;
	long long t0 = now_ms();
	assert_int_equal(dmarc_failrep_send_exec(&sm, "a@b.example", "c@d.example", "x\n", 2, &err), -1);
	assert_true(now_ms() - t0 < 5000);
	assert_non_null(strstr(err, "timed out"));
	free(err);

	/* no such program */
	sm.path = "/nonexistent/sluice-sendmail";
	assert_int_equal(dmarc_failrep_send_exec(&sm, "a@b.example", "c@d.example", "x\n", 2, &err), -1);
	assert_non_null(err);
	free(err);

	sbuf_free(&m);
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(ok);
	free(bad);
	free(deaf);
	free(hang);
}

/* ---- hostile input: random bytes through every parser (ASan/UBSan in CI) ---- */

static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

static void rnd_text(char *buf, size_t max)
{
	static const char alpha[] = "a@.\"\\ \t\r\n!%?,:;=<>()[]-_0123456789mailto:MAILTO:kmgt\x80\xff";
	size_t n = rnd() % max;
	for (size_t i = 0; i < n; i++)
		buf[i] = rnd() % 4 ? alpha[rnd() % (sizeof alpha - 1)] : (char)(rnd() % 255 + 1);
	buf[n] = 0;
}

static void test_hostile(void **state)
{
	(void)state;
	struct oc x;
	struct dmarc_auth spf[1], dkim[1];
	struct dmarc_failrep_input in;
	input_make(&in, &x, spf, dkim);
	struct dmarc_failrep_opts o = report_opts;
	char a[512], b[512], c[512];
	for (int round = 0; round < 3000; round++) {
		rnd_text(a, sizeof a);
		rnd_text(b, sizeof b);
		rnd_text(c, sizeof c);
		struct dmarc_failrep_dest d[DMARC_FAILREP_MAX_DEST];
		size_t n = dmarc_failrep_ruf_parse(a, d, DMARC_FAILREP_MAX_DEST, NULL);
		for (size_t i = 0; i < n; i++) {
			/* whatever was accepted is a plain address */
			assert_null(strpbrk(d[i].addr, " \t\r\n<>\"(),;"));
			assert_non_null(strchr(d[i].addr, '@'));
		}
		dmarc_failrep_fo_parse(b);
		free(dmarc_failrep_redact_text(a));
		struct dmarc_failrep_header h[3] = { { "Subject", a }, { "From", b }, { "X", c } };
		dmarc_failrep_is_auto(h, 3);
		in.headers = h;
		in.nheaders = 3;
		in.mail_from = b;
		in.spf_record = c;
		o.redact = round & 1;
		size_t len;
		char *msg = dmarc_failrep_build(&in, &o, "failures@example.com", DMARC_FAILREP_FO_1, &len);
		assert_int_equal(strlen(msg), len);
		/* no CR; the boundary delimits exactly three parts */
		assert_null(strchr(msg, '\r'));
		const char *bp = strstr(msg, "boundary=\"");
		assert_non_null(bp);
		bp += 10;
		char bnd[80];
		size_t bl = strcspn(bp, "\"");
		assert_true(bl < sizeof bnd - 3);
		snprintf(bnd, sizeof bnd, "\n--%.*s", (int)bl, bp);
		int delims = 0;
		for (const char *p = strstr(msg, bnd); p; p = strstr(p + 1, bnd))
			delims++;
		assert_int_equal(delims, 4);	/* 3 parts + the close */
		free(msg);
	}
	dmarc_record_free(&x.rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fo_parse),
		cmocka_unit_test(test_fo_table),
		cmocka_unit_test(test_due),
		cmocka_unit_test(test_ruf_parse),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_rate_threads),
		cmocka_unit_test(test_report_redacted),
		cmocka_unit_test(test_report_plain),
		cmocka_unit_test(test_is_auto),
		cmocka_unit_test(test_redact_forms),
		cmocka_unit_test(test_run),
		cmocka_unit_test(test_send_exec),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
