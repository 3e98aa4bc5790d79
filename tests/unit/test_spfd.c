/*
 * test_spfd: sluice-spf's daemon logic without sockets: option semantics
 * (policyd-spf's result -> action tables), reply and header texts, skip
 * lists, one result per message, and the DNS answer cache (TTLs, negative
 * TTLs, bounds).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "conf/params.h"
#include "lib/util.h"
#include "policyd/spf/spfd_cache.h"
#include "policyd/spf/spfd_policy.h"

/* ---- helpers ---- */

static struct policy_msg mk_msg(struct policy_attr *a, size_t n)
{
	struct policy_msg m = { n, a };
	return m;
}

/*
 * Run a job where the HELO check gives helo_r and MAIL FROM gives mfrom_r
 * (other checks pass). Returns the action (caller frees).
 */
static char *run_job(const struct spfd_opts *o, const char *ip, const char *sender,
		     const char *helo, enum spf_result helo_r, enum spf_result mfrom_r,
		     unsigned *checks_out)
{
	struct policy_attr a[] = {
		{ "request", "smtpd_access_policy" }, { "client_address", ip },
		{ "sender", sender }, { "helo_name", helo }, { "recipient", "u@example.net" },
	};
	struct policy_msg m = mk_msg(a, 5);
	struct spfd_job *j = spfd_job_new(o, &m, 1700000000);
	struct spf_request req;
	unsigned checks = 0;

	while (spfd_job_next(j, &req) == SPFD_JOB_CHECK) {
		struct spfd_checked r = { 0 };
		checks++;
		r.result = req.scope == SPF_SCOPE_HELO ? helo_r : mfrom_r;
		if (req.domain)	/* domain whitelist check */
			r.result = SPF_FAIL;
		r.mechanism = r.result == SPF_PASS ? "ip4:192.0.2.0/24" : r.result == SPF_FAIL ? "-all" : NULL;
		r.reason = "example.com: something";
		r.explanation = r.result == SPF_FAIL ? "not allowed" : NULL;
		spfd_job_result(j, &r);
	}
	char *act = xstrdup(spfd_job_action(j));
	if (checks_out)
		*checks_out = checks;
	spfd_job_free(&j);
	return act;
}

static int starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* ---- option semantics ---- */

struct table_case {
	const char *name;
	enum spfd_reject mfrom_reject;
	int permerror_reject, temperror_defer;
	enum spf_result mfrom;
	const char *want_prefix;
};

static const struct table_case table_cases[] = {
	{ "fail rejects fail", SPFD_REJ_FAIL, 0, 0, SPF_FAIL, "550 5.7.23 Message rejected due to: not allowed" },
	{ "fail prepends softfail", SPFD_REJ_FAIL, 0, 0, SPF_SOFTFAIL, "PREPEND Received-SPF: SoftFail" },
	{ "softfail rejects softfail", SPFD_REJ_SOFTFAIL, 0, 0, SPF_SOFTFAIL,
	  "550 5.7.23 Message rejected due to: domain owner discourages use of this host" },
	{ "softfail prepends neutral", SPFD_REJ_SOFTFAIL, 0, 0, SPF_NEUTRAL, "PREPEND Received-SPF: Neutral" },
	{ "not_pass rejects neutral", SPFD_REJ_SPF_NOT_PASS, 0, 0, SPF_NEUTRAL,
	  "550 5.7.23 Message rejected due to: access neither permitted nor denied" },
	{ "not_pass prepends none", SPFD_REJ_SPF_NOT_PASS, 0, 0, SPF_NONE, "PREPEND Received-SPF: None" },
	{ "not_pass prepends pass", SPFD_REJ_SPF_NOT_PASS, 0, 0, SPF_PASS, "PREPEND Received-SPF: Pass" },
	{ "false never rejects", SPFD_REJ_FALSE, 1, 1, SPF_FAIL, "PREPEND Received-SPF: Fail" },
	{ "false ignores permerror_reject", SPFD_REJ_FALSE, 1, 1, SPF_PERMERROR, "PREPEND Received-SPF: PermError" },
	{ "null mfrom: fail prepends", SPFD_REJ_NULL, 0, 0, SPF_FAIL, "PREPEND Received-SPF: Fail" },
	{ "permerror prepends by default", SPFD_REJ_FAIL, 0, 0, SPF_PERMERROR, "PREPEND Received-SPF: PermError" },
	{ "permerror_reject", SPFD_REJ_FAIL, 1, 0, SPF_PERMERROR,
	  "550 5.7.24 Message rejected due to: SPF Permanent Error: example.com: something" },
	{ "temperror prepends by default", SPFD_REJ_FAIL, 0, 0, SPF_TEMPERROR, "PREPEND Received-SPF: TempError" },
	{ "temperror_defer", SPFD_REJ_FAIL, 0, 1, SPF_TEMPERROR,
	  "DEFER_IF_PERMIT 4.7.24 Message deferred due to: SPF Temporary Error:" },
};

static void test_result_tables(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(table_cases) / sizeof(table_cases[0]); i++) {
		const struct table_case *tc = &table_cases[i];
		struct spfd_opts o;
		spfd_opts_defaults(&o);
		o.helo_reject = SPFD_REJ_NO_CHECK;
		o.mfrom_reject = tc->mfrom_reject;
		o.permerror_reject = tc->permerror_reject;
		o.temperror_defer = tc->temperror_defer;
		char *act = run_job(&o, "192.0.2.7", "joe@example.com", "mx.example.org", SPF_NONE,
				    tc->mfrom, NULL);
		if (!starts(act, tc->want_prefix))
			fail_msg("%s: got \"%s\", want \"%s...\"", tc->name, act, tc->want_prefix);
		free(act);
		spfd_opts_free(&o);
	}
}

static void test_helo_rules(void **state)
{
	struct spfd_opts o;
	unsigned checks;
	char *act;

	(void)state;
	spfd_opts_defaults(&o);
	/* HELO fail rejects before MAIL FROM is checked */
	act = run_job(&o, "192.0.2.7", "joe@example.com", "mx.example.org", SPF_FAIL, SPF_PASS, &checks);
	assert_true(starts(act, "550 5.7.23"));
	assert_non_null(strstr(act, "s=helo;id=mx.example.org;ip=192.0.2.7;r=example.net"));
	assert_int_equal(checks, 1);
	free(act);
	/* HELO pass + MAIL FROM none: the HELO header is kept (policyd-spf) */
	act = run_job(&o, "192.0.2.7", "joe@example.com", "mx.example.org", SPF_PASS, SPF_NONE, &checks);
	assert_true(starts(act, "PREPEND Received-SPF: Pass (localhost: domain of mx.example.org"));
	assert_non_null(strstr(act, "identity=helo"));
	assert_int_equal(checks, 2);
	free(act);
	/* Null: HELO fail rejects only the null sender */
	o.helo_reject = SPFD_REJ_NULL;
	act = run_job(&o, "192.0.2.7", "joe@example.com", "mx.example.org", SPF_FAIL, SPF_PASS, NULL);
	assert_true(starts(act, "PREPEND Received-SPF: Pass"));
	free(act);
	act = run_job(&o, "192.0.2.7", "", "mx.example.org", SPF_FAIL, SPF_PASS, NULL);
	assert_true(starts(act, "550 5.7.23"));
	free(act);
	/* No_Check for both: nothing checked */
	o.helo_reject = SPFD_REJ_NO_CHECK;
	o.mfrom_reject = SPFD_REJ_NO_CHECK;
	act = run_job(&o, "192.0.2.7", "joe@example.com", "mx.example.org", SPF_FAIL, SPF_FAIL, &checks);
	assert_string_equal(act, "DUNNO");
	assert_int_equal(checks, 0);
	free(act);
	/* missing HELO: the sender's domain stands in */
	o.helo_reject = SPFD_REJ_FAIL;
	o.mfrom_reject = SPFD_REJ_FAIL;
	act = run_job(&o, "192.0.2.7", "", "", SPF_PASS, SPF_PASS, NULL);
	assert_string_equal(act, "DUNNO");	/* no sender and no helo */
	free(act);
	spfd_opts_free(&o);
}

static void test_skips_and_whitelists(void **state)
{
	struct spfd_opts o;
	unsigned checks;
	char *act;

	(void)state;
	spfd_opts_defaults(&o);
	act = run_job(&o, "127.0.0.5", "joe@example.com", "mx", SPF_FAIL, SPF_FAIL, &checks);
	assert_string_equal(act, "PREPEND X-Comment: SPF check N/A for local connections - "
			    "client-ip=127.0.0.5; helo=mx; envelope-from=joe@example.com; receiver=localhost");
	assert_int_equal(checks, 0);
	free(act);
	act = run_job(&o, "::ffff:127.0.0.1", "joe@example.com", "mx", SPF_FAIL, SPF_FAIL, NULL);
	assert_true(starts(act, "PREPEND X-Comment: SPF check N/A"));
	free(act);
	o.whitelist = xcalloc(1, sizeof(*o.whitelist));
	assert_int_equal(spfd_net_parse("[2001:db8::]/32", &o.whitelist[0]), 0);
	o.nwhitelist = 1;
	act = run_job(&o, "2001:db8::25", "joe@example.com", "mx", SPF_FAIL, SPF_FAIL, NULL);
	assert_true(starts(act, "PREPEND X-Comment: SPF skipped for whitelisted relay - client-ip=2001:db8::25;"));
	free(act);
	/* domain whitelist: a failing whitelist check goes on to the real checks */
	o.domain_whitelist = xcalloc(2, sizeof(char *));
	o.domain_whitelist[0] = xstrdup("fwd.example");
	o.ndomain_whitelist = 1;
	act = run_job(&o, "192.0.2.7", "joe@example.com", "mx", SPF_NONE, SPF_PASS, &checks);
	assert_true(starts(act, "PREPEND Received-SPF: Pass"));
	assert_int_equal(checks, 3);
	free(act);
	/* reject_not_pass_domains */
	o.reject_not_pass = xcalloc(2, sizeof(char *));
	o.reject_not_pass[0] = xstrdup("example.com");
	o.nreject_not_pass = 1;
	act = run_job(&o, "192.0.2.7", "joe@sub.example.com", "mx", SPF_NONE, SPF_NEUTRAL, NULL);
	assert_true(starts(act, "550 5.7.23 Message rejected due to: Receiver policy for SPF Neutral."));
	free(act);
	spfd_opts_free(&o);
}

static void test_sasl_and_no_client(void **state)
{
	struct spfd_opts o;
	struct policy_attr a[] = {
		{ "client_address", "192.0.2.7" }, { "sender", "a@example.com" },
		{ "sasl_username", "joe" },
	};
	struct policy_msg m = mk_msg(a, 3);
	struct spf_request req;

	(void)state;
	spfd_opts_defaults(&o);
	struct spfd_job *j = spfd_job_new(&o, &m, 0);
	assert_int_equal(spfd_job_next(j, &req), SPFD_JOB_DONE);
	assert_string_equal(spfd_job_action(j), "DUNNO");
	spfd_job_free(&j);
	o.skip_sasl = 0;
	j = spfd_job_new(&o, &m, 0);
	assert_int_equal(spfd_job_next(j, &req), SPFD_JOB_CHECK);
	spfd_job_free(&j);
	m.n = 0;
	j = spfd_job_new(&o, &m, 0);
	assert_int_equal(spfd_job_next(j, &req), SPFD_JOB_DONE);
	assert_string_equal(spfd_job_action(j), "DUNNO");
	assert_string_equal(spfd_job_reason(j), "no client address");
	spfd_job_free(&j);
	spfd_opts_free(&o);
}

static void test_opts_from_conf(void **state)
{
	char *err = NULL;
	struct spfd_opts o;
	(void)state;
	struct conf *c = conf_load_string(
		"myhostname = mx.test\nspf_helo_reject = spf_not_pass\nspf_mail_from_reject = Softfail\n"
		"spf_permerror_reject = yes\nspf_skip_addresses = 10.0.0.0/8, [::1]\n"
		"spf_header_type = AR\nspf_domain_whitelist = Fwd.Example.\nspf_lookup_time = 5s\n",
		"t.conf", params_all, NULL, &err);
	assert_non_null(c);
	assert_int_equal(spfd_opts_load(c, &o, &err), 0);
	assert_int_equal(o.helo_reject, SPFD_REJ_SPF_NOT_PASS);
	assert_int_equal(o.mfrom_reject, SPFD_REJ_SOFTFAIL);
	assert_true(o.permerror_reject);
	assert_false(o.temperror_defer);
	assert_true(o.skip_sasl);
	assert_int_equal(o.header_type, SPFD_HDR_AR);
	assert_string_equal(o.authserv_id, "mx.test");
	assert_string_equal(o.domain_whitelist[0], "fwd.example");
	assert_int_equal(o.lookup_time_ms, 5000);
	assert_int_equal(o.nskip, 2);
	assert_true(spfd_net_match_any(o.skip, o.nskip, "10.1.2.3"));
	assert_true(spfd_net_match_any(o.skip, o.nskip, "::1"));
	assert_false(spfd_net_match_any(o.skip, o.nskip, "127.0.0.1"));
	spfd_opts_free(&o);
	conf_free(&c);
	c = conf_load_string("spf_whitelist = 192.0.2.0/33\n", "t.conf", params_all, NULL, &err);
	assert_non_null(c);
	assert_int_equal(spfd_opts_load(c, &o, &err), -1);
	assert_non_null(strstr(err, "spf_whitelist"));
	free(err);
	spfd_opts_free(&o);
	conf_free(&c);
	c = conf_load_string("spf_helo_reject = Sometimes\n", "t.conf", params_all, NULL, &err);
	assert_null(c);
	free(err);
}

static void test_net_parse(void **state)
{
	struct spfd_net n;
	(void)state;
	static const char *const good[] = { "127.0.0.0/8", "::1", "[::1]/128", "0.0.0.0/0",
					    "::ffff:10.0.0.0/104", "2001:db8::/32" };
	static const char *const bad[] = { "", "/8", "1.2.3.4/", "1.2.3.4/33", "::/129", "x",
					   "1.2.3.4/8x", "[::1", "1.2.3" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (spfd_net_parse(good[i], &n) != 0)
			fail_msg("rejected %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (spfd_net_parse(bad[i], &n) == 0)
			fail_msg("accepted %s", bad[i]);
	assert_int_equal(spfd_net_parse("::ffff:10.0.0.0/104", &n), 0);
	assert_int_equal(n.v6, 0);
	assert_int_equal(n.prefix, 8);
	assert_true(spfd_net_match_any(&n, 1, "10.9.9.9"));
	assert_true(spfd_net_match_any(&n, 1, "::ffff:10.9.9.9"));
	assert_false(spfd_net_match_any(&n, 1, "11.0.0.1"));
	assert_false(spfd_net_match_any(&n, 1, "not an ip"));
}

/* ---- header texts ---- */

static void test_received_spf_text(void **state)
{
	(void)state;
	struct spfd_checked r = { .result = SPF_PASS, .mechanism = "exists:%{l}.%{d}.%{i}.spf.example.net" };
	char *h = spfd_received_spf(&r, 0, "1.2.3.5", "lyme.eater@example.co.uk", "mail.example.net",
				    "receiver.com");
	assert_string_equal(h, "Pass (receiver.com: domain of example.co.uk designates 1.2.3.5 as "
			    "permitted sender) client-ip=1.2.3.5; envelope-from=\"lyme.eater@example.co.uk\"; "
			    "helo=mail.example.net; receiver=receiver.com; "
			    "mechanism=\"exists:%{l}.%{d}.%{i}.spf.example.net\"; identity=mailfrom");
	free(h);
	struct spfd_checked p = { .result = SPF_PERMERROR, .reason = "exampled.com: bad thing",
				  .problem = "a:examplea.com:8080" };
	h = spfd_received_spf(&p, 0, "66.150.186.79", "chuckvsr@exampled.com", "mail.example.com",
			      "receiver.com");
	assert_string_equal(h, "PermError (receiver.com: permanent error in processing domain of "
			    "exampled.com: bad thing) client-ip=66.150.186.79; "
			    "envelope-from=\"chuckvsr@exampled.com\"; helo=mail.example.com; "
			    "receiver=receiver.com; problem=\"a:examplea.com:8080\"; identity=mailfrom");
	free(h);
	struct spfd_checked n = { .result = SPF_SOFTFAIL, .mechanism = "~all" };
	h = spfd_received_spf(&n, 1, "192.0.2.1", "", "mx\"\x01.example", "r");
	assert_string_equal(h, "SoftFail (r: transitioning domain of mx\"?.example does not designate "
			    "192.0.2.1 as permitted sender) client-ip=192.0.2.1; helo=\"mx\\\"?.example\"; "
			    "receiver=r; mechanism=~all; identity=helo");
	free(h);
	char *a = spfd_auth_results(&r, 0, "1.2.3.5", "x@example.co.uk", "h.example", "mx.test");
	assert_string_equal(a, "mx.test; spf=pass (domain of example.co.uk designates 1.2.3.5 as "
			    "permitted sender) smtp.mailfrom=example.co.uk (client-ip=1.2.3.5; helo=h.example; "
			    "envelope-from=x@example.co.uk; mechanism=exists:%{l}.%{d}.%{i}.spf.example.net)");
	free(a);
}

static void test_quote_value(void **state)
{
	static const char *const cases[][2] = {
		{ "mail.example.com", "mail.example.com" }, { "foo@bar.com", "\"foo@bar.com\"" },
		{ "A:1.2.3.4", "\"A:1.2.3.4\"" }, { "abc\"def", "\"abc\\\"def\"" },
		{ "abc\\def", "\"abc\\\\def\"" }, { "abc..def", "\"abc..def\"" }, { "", "\"\"" },
		{ "-all", "-all" }, { ".x", "\".x\"" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *q = spfd_quote_value(cases[i][0]);
		assert_string_equal(q, cases[i][1]);
		free(q);
	}
}

/* ---- one result per message ---- */

static void test_instances(void **state)
{
	enum spfd_action k;
	const char *a;
	(void)state;
	struct spfd_instances *t = spfd_instances_new(3, 60);

	assert_false(spfd_instances_get(t, "a", 0, &k, &a));
	spfd_instances_put(t, "a", SPFD_ACT_PREPEND, "PREPEND X", 0);
	spfd_instances_put(t, "b", SPFD_ACT_REJECT, "550 5.7.23 no", 0);
	assert_true(spfd_instances_get(t, "a", 10, &k, &a));
	assert_string_equal(spfd_reply_for_instance(k, a), "DUNNO");
	assert_true(spfd_instances_get(t, "b", 10, &k, &a));
	assert_string_equal(spfd_reply_for_instance(k, a), "550 5.7.23 no");
	assert_false(spfd_instances_get(t, "b", 100, &k, &a));	/* expired */
	spfd_instances_put(t, "c", SPFD_ACT_DUNNO, "DUNNO", 0);
	spfd_instances_put(t, "d", SPFD_ACT_DUNNO, "DUNNO", 0);	/* "a" falls out */
	assert_false(spfd_instances_get(t, "a", 1, &k, &a));
	assert_true(spfd_instances_get(t, "d", 1, &k, &a));
	assert_int_equal(spfd_instances_count(t), 3);
	assert_false(spfd_instances_get(t, "", 1, &k, &a));
	spfd_instances_free(&t);
	assert_null(t);
}

/* ---- the DNS answer cache ---- */

static struct dns_answer *mk_txt(const char *name, enum dns_status st, uint32_t ttl, const char *txt)
{
	struct dns_answer *a = xcalloc(1, sizeof(*a));
	a->status = st;
	a->qname = xstrdup(name);
	a->qtype = DNS_T_TXT;
	a->ttl = ttl;
	if (txt) {
		a->n = 1;
		a->rr = xcalloc(1, sizeof(*a->rr));
		a->rr[0].type = DNS_T_TXT;
		a->rr[0].ttl = ttl;
		a->rr[0].u.txt.data = xstrdup(txt);
		a->rr[0].u.txt.len = strlen(txt);
		a->rr[0].u.txt.nstrings = 1;
	}
	return a;
}

static void test_cache_ttl(void **state)
{
	(void)state;
	struct spfd_cache *c = spfd_cache_new(10);
	struct dns_answer *a = mk_txt("Example.COM.", DNS_OK, 60, "v=spf1 -all"), *g;

	assert_int_equal(spfd_cache_put(c, a, 1000), 1);
	g = spfd_cache_get(c, "example.com", DNS_T_TXT, 1000 + 30000);
	assert_non_null(g);
	assert_int_equal(g->status, DNS_OK);
	assert_int_equal(g->n, 1);
	assert_string_equal(g->rr[0].u.txt.data, "v=spf1 -all");
	assert_int_equal(g->ttl, 30);
	assert_int_equal(g->rr[0].ttl, 30);
	dns_answer_free(&g);
	assert_null(spfd_cache_get(c, "example.com", DNS_T_A, 1000));	/* other type */
	assert_null(spfd_cache_get(c, "example.com", DNS_T_TXT, 1000 + 60000));	/* expired */
	assert_int_equal(spfd_cache_count(c), 0);
	dns_answer_free(&a);
	/* negative answers live for their negative TTL */
	a = mk_txt("nx.example", DNS_NXDOMAIN, 5, NULL);
	assert_int_equal(spfd_cache_put(c, a, 0), 1);
	g = spfd_cache_get(c, "NX.example.", DNS_T_TXT, 4999);
	assert_non_null(g);
	assert_int_equal(g->status, DNS_NXDOMAIN);
	dns_answer_free(&g);
	assert_null(spfd_cache_get(c, "nx.example", DNS_T_TXT, 5000));
	dns_answer_free(&a);
	/* never cached: temporary failures, TTL 0 */
	static const enum dns_status temp[] = { DNS_SERVFAIL, DNS_TIMEOUT, DNS_ERROR };
	for (size_t i = 0; i < 3; i++) {
		a = mk_txt("t.example", temp[i], 300, NULL);
		assert_int_equal(spfd_cache_put(c, a, 0), 0);
		dns_answer_free(&a);
	}
	a = mk_txt("z.example", DNS_NODATA, 0, NULL);
	assert_int_equal(spfd_cache_put(c, a, 0), 0);
	dns_answer_free(&a);
	/* huge TTLs are capped */
	a = mk_txt("long.example", DNS_OK, 0x7fffffff, "x");
	assert_int_equal(spfd_cache_put(c, a, 0), 1);
	assert_null(spfd_cache_get(c, "long.example", DNS_T_TXT, (long long)SPFD_CACHE_MAX_TTL_S * 1000));
	dns_answer_free(&a);
	assert_true(spfd_cache_stats(c)->hits >= 2);
	spfd_cache_free(&c);
	assert_null(c);
}

static void test_cache_bounds(void **state)
{
	(void)state;
	struct spfd_cache *c = spfd_cache_new(3);
	char name[32];

	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "n%d.example", i);
		struct dns_answer *a = mk_txt(name, DNS_OK, 100, name);
		spfd_cache_put(c, a, 0);
		dns_answer_free(&a);
	}
	/* touch n0 so n1 is the least recently used */
	struct dns_answer *g = spfd_cache_get(c, "n0.example", DNS_T_TXT, 1);
	dns_answer_free(&g);
	struct dns_answer *a = mk_txt("n3.example", DNS_OK, 100, "n3");
	spfd_cache_put(c, a, 2);
	dns_answer_free(&a);
	assert_int_equal(spfd_cache_count(c), 3);
	assert_null(spfd_cache_get(c, "n1.example", DNS_T_TXT, 3));
	g = spfd_cache_get(c, "n0.example", DNS_T_TXT, 3);
	assert_non_null(g);
	dns_answer_free(&g);
	assert_int_equal(spfd_cache_stats(c)->evictions, 1);
	/* a replaced entry stays one entry */
	a = mk_txt("n3.example", DNS_OK, 100, "new");
	spfd_cache_put(c, a, 4);
	dns_answer_free(&a);
	assert_int_equal(spfd_cache_count(c), 3);
	g = spfd_cache_get(c, "n3.example", DNS_T_TXT, 5);
	assert_string_equal(g->rr[0].u.txt.data, "new");
	dns_answer_free(&g);
	spfd_cache_clear(c);
	assert_int_equal(spfd_cache_count(c), 0);
	spfd_cache_free(&c);
	/* size 0: off */
	c = spfd_cache_new(0);
	a = mk_txt("x.example", DNS_OK, 100, "x");
	assert_int_equal(spfd_cache_put(c, a, 0), 0);
	assert_null(spfd_cache_get(c, "x.example", DNS_T_TXT, 0));
	dns_answer_free(&a);
	spfd_cache_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_result_tables),
		cmocka_unit_test(test_helo_rules),
		cmocka_unit_test(test_skips_and_whitelists),
		cmocka_unit_test(test_sasl_and_no_client),
		cmocka_unit_test(test_opts_from_conf),
		cmocka_unit_test(test_net_parse),
		cmocka_unit_test(test_received_spf_text),
		cmocka_unit_test(test_quote_value),
		cmocka_unit_test(test_instances),
		cmocka_unit_test(test_cache_ttl),
		cmocka_unit_test(test_cache_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
