/*
 * test_dmarcd: sluice-dmarc's daemon logic without sockets or network
 * (milters/dmarc: dmarc_cfg, dmarc_msg, dmarc_dns) over a fake DNS: the
 * dmarc_* parameters and their defaults, and the decision table (identifiers,
 * whose results count, enforcement, Authentication-Results, log fields),
 * including OpenDMARC's historic bypasses (CVE-2019-16378 two From fields /
 * two domains, CVE-2019-20790 HELO Received-SPF, CVE-2020-12272 injected
 * A-R, unbalanced From).
 * DKIM signatures are made here with sluice-dkim's signer (an Ed25519 key
 * generated per run) and verified by sluice-dkim's verifier.
 */
#include "milters/dmarc/dmarc_cfg.h"
#include "milters/dmarc/dmarc_dns.h"
#include "milters/dmarc/dmarc_hdr.h"
#include "milters/dmarc/dmarc_msg.h"
#include "milters/dkim/dkim_dns.h"
#include "milters/dkim/dkim_signer.h"
#include "conf/conf.h"
#include "conf/params.h"
#include "lib/util.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
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
	enum dns_type type;
	const char *data;	/* TXT text, address, or MX host */
	enum dns_status st;	/* DNS_OK unless an error is wanted */
};

static char dkim_key_txt[256];

static const struct rr zone[] = {
	{ "_dmarc.reject.example", DNS_T_TXT, "v=DMARC1; p=reject; rua=mailto:agg@reject.example", DNS_OK },
	{ "reject.example", DNS_T_TXT, "v=spf1 ip4:192.0.2.1 -all", DNS_OK },
	{ "reject.example", DNS_T_A, "192.0.2.1", DNS_OK },
	{ "mail.reject.example", DNS_T_TXT, "v=spf1 ip4:192.0.2.1 -all", DNS_OK },
	{ "_dmarc.quar.example", DNS_T_TXT, "v=DMARC1; p=quarantine", DNS_OK },
	{ "quar.example", DNS_T_TXT, "v=spf1 ip4:192.0.2.1 -all", DNS_OK },
	{ "_dmarc.none.example", DNS_T_TXT, "v=DMARC1; p=none", DNS_OK },
	{ "none.example", DNS_T_TXT, "v=spf1 ip4:192.0.2.1 -all", DNS_OK },
	{ "_dmarc.test.example", DNS_T_TXT, "v=DMARC1; p=reject; t=y", DNS_OK },
	{ "nodmarc.example", DNS_T_TXT, "v=spf1 -all", DNS_OK },
	{ "_dmarc.temp.example", DNS_T_TXT, NULL, DNS_SERVFAIL },
	{ "elsewhere.example", DNS_T_TXT, "v=spf1 ip4:198.51.100.9 -all", DNS_OK },
	{ "sel._domainkey.reject.example", DNS_T_TXT, dkim_key_txt, DNS_OK },
	{ "_dmarc.xn--bcher-kva.example", DNS_T_TXT, "v=DMARC1; p=reject", DNS_OK },
	{ "_dmarc.rep.example", DNS_T_TXT, "v=DMARC1; p=quarantine; fo=1; ruf=mailto:fail@rep.example", DNS_OK },
	{ "rep.example", DNS_T_TXT, "v=spf1 ip4:192.0.2.1 -all", DNS_OK },
	{ NULL, 0, NULL, 0 },
};

static struct dns_answer *fake_dns(void *arg, const char *name, enum dns_type type)
{
	(void)arg;
	struct dns_answer *a = NULL;
	int name_seen = 0;
	for (const struct rr *r = zone; r->name; r++) {
		if (ascii_strcasecmp(r->name, name) != 0)
			continue;
		name_seen = 1;
		if (r->type != type)
			continue;
		if (r->st != DNS_OK)
			return dmarc_dns_answer_new(name, type, r->st);
		if (a == NULL)
			a = dmarc_dns_answer_new(name, type, DNS_NODATA);
		if (type == DNS_T_TXT)
			dmarc_dns_answer_add_txt(a, r->data);
		else if (type == DNS_T_MX)
			dmarc_dns_answer_add_mx(a, 10, r->data);
		else
			dmarc_dns_answer_add_addr(a, r->data);
	}
	if (a == NULL)
		a = dmarc_dns_answer_new(name, type, name_seen ? DNS_NODATA : DNS_NXDOMAIN);
	return a;
}

static enum dns_status fake_dkim_dns(void *arg, const char *name, char ***txt_out, size_t *n_out)
{
	(void)arg;
	struct dns_answer *a = fake_dns(NULL, name, DNS_T_TXT);
	enum dns_status st = a->status;
	*n_out = 0;
	*txt_out = NULL;
	if (st == DNS_OK) {
		*txt_out = calloc(a->n, sizeof(char *));
		for (size_t i = 0; i < a->n; i++)
			(*txt_out)[i] = strdup(a->rr[i].u.txt.data);
		*n_out = a->n;
	}
	dns_answer_free(&a);
	return st;
}

/* ---- the key ---- */

static EVP_PKEY *key;

static int setup_key(void **state)
{
	(void)state;
	key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	unsigned char pub[32];
	size_t publen = sizeof(pub);
	EVP_PKEY_get_raw_public_key(key, pub, &publen);
	unsigned char b64[64];
	EVP_EncodeBlock(b64, pub, (int)publen);
	snprintf(dkim_key_txt, sizeof(dkim_key_txt), "v=DKIM1; k=ed25519; p=%s", b64);
	return 0;
}

static int teardown_key(void **state)
{
	(void)state;
	EVP_PKEY_free(key);
	return 0;
}

/* ---- configuration ---- */

static struct conf *conf_of(const char *extra)
{
	char *text = xasprintf("myhostname = mx.test\ndns_servers = 127.0.0.1:9\n%s\n",
			       extra ? extra : "");
	char *err = NULL;
	struct conf *c = conf_load_string(text, "test.conf", params_all, NULL, &err);
	if (c == NULL)
		fail_msg("conf: %s", err);
	free(text);
	return c;
}

static struct dmarc_cfg *cfg_of(const char *extra, struct conf **conf_out)
{
	struct conf *c = conf_of(extra);
	struct dmarc_cfg_test t = { 0 };
	t.dns = dmarc_dns_new_fake(fake_dns, NULL, 0);
	t.dkim_dns = dkim_dns_new_fake(fake_dkim_dns, NULL);
	t.pct_roll = 0;
	char *err = NULL;
	struct dmarc_cfg *cfg = dmarc_cfg_new(c, &t, &err);
	if (cfg == NULL)
		fail_msg("dmarc_cfg_new: %s", err);
	*conf_out = c;
	return cfg;
}

static void test_params_defaults(void **state)
{
	(void)state;
	struct conf *c = conf_of(NULL);
	static const struct { const char *name, *value; } d[] = {
		{ "dmarc_socket", "inet:8893@127.0.0.1" },
		{ "dmarc_pid_file", "" },
		{ "dmarc_mode", "dmarcbis" },
		{ "dmarc_on_temperror", "accept" },
		{ "dmarc_reject_reply", "rejected by DMARC policy for %d" },
		{ "dmarc_quarantine_action", "hold" },
		{ "dmarc_authserv_id", "mx.test" },
		{ "dmarc_trusted_authserv_ids", "mx.test" },
		{ "dmarc_ignore_hosts", "127.0.0.1, ::1" },
		{ "dmarc_ignore_domains", "" },
		{ "dmarc_public_suffix_list", "/usr/share/publicsuffix/public_suffix_list.dat" },
	};
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++)
		if (strcmp(conf_str(c, d[i].name), d[i].value) != 0)
			fail_msg("%s = %s, expected %s", d[i].name, conf_str(c, d[i].name), d[i].value);
	assert_true(conf_bool(c, "dmarc_self_validate"));
	assert_false(conf_bool(c, "dmarc_trust_received_spf"));
	assert_true(conf_bool(c, "dmarc_reject_malformed_from"));
	assert_true(conf_bool(c, "dmarc_enforce"));
	assert_true(conf_bool(c, "dmarc_ignore_authenticated_clients"));
	assert_false(conf_bool(c, "dmarc_failure_reports"));
	assert_true(conf_bool(c, "dmarc_failure_report_redact"));
	assert_int_equal(conf_int(c, "dmarc_failure_report_rate"), 10);
	assert_false(conf_bool(c, "dmarc_enable"));
	conf_free(&c);

	/* bad values are start-up errors naming file:line */
	static const char *const bad[] = {
		"dmarc_mode = dmarc2", "dmarc_on_temperror = reject", "dmarc_quarantine_action = drop",
		"dmarc_self_validate = maybe",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *err = NULL;
		struct conf *b = conf_load_string(bad[i], "t.conf", params_all, NULL, &err);
		if (b != NULL || err == NULL || strstr(err, "t.conf:1:") == NULL)
			fail_msg("%s: accepted or no file:line (%s)", bad[i], err ? err : "");
		free(err);
	}
	/* and what dmarc_cfg_new refuses */
	static const char *const badcfg[] = {
		"dmarc_reject_reply = 100%% %s", "dmarc_ignore_hosts = 300.1.1.1/99",
		"dmarc_mode = rfc7489\ndmarc_public_suffix_list = /nonexistent/psl.dat",
		"dmarc_failure_reports = yes\ndmarc_failure_report_from = not an address",
	};
	for (size_t i = 0; i < sizeof(badcfg) / sizeof(badcfg[0]); i++) {
		struct conf *bc = conf_of(badcfg[i]);
		char *err = NULL;
		struct dmarc_cfg_test t = { 0 };
		t.dns = dmarc_dns_new_fake(fake_dns, NULL, 0);
		t.dkim_dns = dkim_dns_new_fake(fake_dkim_dns, NULL);
		struct dmarc_cfg *cfg = dmarc_cfg_new(bc, &t, &err);
		if (cfg != NULL || err == NULL)
			fail_msg("%s: accepted", badcfg[i]);
		free(err);
		conf_free(&bc);
	}
}

/* ---- messages ---- */

struct mcase {
	const char *desc;
	const char *conf;		/* extra sluice.conf lines */
	const char *ip, *helo, *mail_from;
	int auth;
	const char *headers;		/* "Name: value\n" lines, folds allowed; "%B" = our b= prefix */
	const char *sign_d;		/* sign with d= (s=sel) when not NULL */
	enum dmarc_msg_action action;
	enum dmarc_result result;
	const char *ar;			/* substring of our A-R ("" = any, NULL = no A-R) */
	const char *reply;		/* substring of the reply text, or NULL */
	const char *log;		/* substring of the first log line, or NULL */
	int add_header;
};

#define STD_HDRS "To: bob@example.net\nSubject: hi\nDate: Mon, 1 Dec 2026 10:00:00 +0000\n"

static const struct mcase cases[] = {
	{ "spf pass aligned", NULL, "192.0.2.1", "mail.reject.example", "a@reject.example", 0,
	  "From: A <a@reject.example>\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_PASS,
	  "dmarc=pass (p=reject dis=none) header.from=reject.example policy.dmarc=none",
	  NULL, "header_from=reject.example", 0 },
	{ "spf fail, no dkim: p=reject", NULL, "198.51.100.7", "x.example", "a@reject.example", 0,
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL,
	  "dmarc=fail (p=reject dis=reject) header.from=reject.example policy.dmarc=reject",
	  "rejected by DMARC policy for reject.example", "policy_domain=reject.example", 0 },
	{ "spf pass but not aligned: reject", NULL, "198.51.100.9", "x.example",
	  "b@elsewhere.example", 0, "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT,
	  DMARC_RESULT_FAIL, "spf=pass smtp.mailfrom=b@elsewhere.example", "reject.example",
	  "spf=elsewhere.example/mfrom/pass", 0 },
	{ "aligned dkim pass (self-verified)", NULL, "198.51.100.9", "x.example",
	  "b@elsewhere.example", 0, "From: a@reject.example\n" STD_HDRS, "reject.example",
	  DMARC_MSG_ACCEPT, DMARC_RESULT_PASS, "dkim=pass header.d=reject.example header.s=sel",
	  NULL, "dkim=reject.example/sel/pass", 0 },
	{ "p=quarantine: hold", NULL, "198.51.100.7", "x.example", "a@quar.example", 0,
	  "From: a@quar.example\n" STD_HDRS, NULL, DMARC_MSG_QUARANTINE, DMARC_RESULT_FAIL,
	  "dmarc=fail (p=quarantine dis=quarantine)", NULL, "action=quarantine", 0 },
	{ "p=quarantine: header", "dmarc_quarantine_action = header", "198.51.100.7", "x.example",
	  "a@quar.example", 0, "From: a@quar.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT,
	  DMARC_RESULT_FAIL, "dis=quarantine", NULL, "action=header", 1 },
	{ "p=none fails: accept", NULL, "198.51.100.7", "x.example", "a@none.example", 0,
	  "From: a@none.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_FAIL,
	  "dmarc=fail (p=none dis=none)", NULL, "disposition=none", 0 },
	{ "t=y: reject becomes quarantine", NULL, "198.51.100.7", "x.example", "a@test.example", 0,
	  "From: a@test.example\n" STD_HDRS, NULL, DMARC_MSG_QUARANTINE, DMARC_RESULT_FAIL,
	  "dis=quarantine", NULL, "override=policy_test_mode", 0 },
	{ "no DMARC record", NULL, "198.51.100.7", "x.example", "a@nodmarc.example", 0,
	  "From: a@nodmarc.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_NONE,
	  "dmarc=none header.from=nodmarc.example", NULL, "policy_domain=-", 0 },
	{ "temperror: accept by default", NULL, "198.51.100.7", "x.example", "a@temp.example", 0,
	  "From: a@temp.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_TEMPERROR,
	  "dmarc=temperror", NULL, "dmarc=temperror", 0 },
	{ "temperror: tempfail", "dmarc_on_temperror = tempfail", "198.51.100.7", "x.example",
	  "a@temp.example", 0, "From: a@temp.example\n" STD_HDRS, NULL, DMARC_MSG_TEMPFAIL,
	  DMARC_RESULT_TEMPERROR, "dmarc=temperror", "try again later", NULL, 0 },
	{ "dmarc_enforce = no only reports", "dmarc_enforce = no", "198.51.100.7", "x.example",
	  "a@reject.example", 0, "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT,
	  DMARC_RESULT_FAIL, "dmarc=fail (p=reject dis=reject)", NULL, "enforced=no", 0 },
	/* CVE-2019-16378: several From fields / several domains */
	{ "two From fields: 550", NULL, "198.51.100.7", "x.example", "a@none.example", 0,
	  "From: a@none.example\nFrom: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT,
	  DMARC_RESULT_PERMERROR, "dmarc=permerror", "malformed From header (several From fields)",
	  "from_error=\"several From fields\"", 0 },
	{ "two From fields, reject_malformed = no: permerror", "dmarc_reject_malformed_from = no",
	  "198.51.100.7", "x.example", "a@none.example", 0,
	  "From: a@none.example\nFrom: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT,
	  DMARC_RESULT_PERMERROR, "dmarc=permerror", NULL, "dmarc=permerror", 0 },
	{ "one From, two domains: the strictest", NULL, "192.0.2.1", "x.example", "a@none.example",
	  0, "From: a@none.example, b@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT,
	  DMARC_RESULT_FAIL, "header.from=reject.example", "for reject.example", "from_domains=2", 0 },
	{ "one From, two domains both pass", NULL, "192.0.2.1", "x.example", "a@none.example", 0,
	  "From: a@none.example, b@NONE.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT,
	  DMARC_RESULT_PASS, "dmarc=pass", NULL, "from_domains=1", 0 },
	{ "unbalanced angle: 550", NULL, "198.51.100.7", "x.example", "a@reject.example", 0,
	  "From: <a@b.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_PERMERROR,
	  "dmarc=permerror", "malformed From header", "from_error=", 0 },
	{ "no From: 550", NULL, "198.51.100.7", "x.example", "a@reject.example", 0, STD_HDRS, NULL,
	  DMARC_MSG_REJECT, DMARC_RESULT_PERMERROR, "dmarc=permerror", "no From field", NULL, 0 },
	{ "From group: 550", NULL, "198.51.100.7", "x.example", "a@reject.example", 0,
	  "From: g: a@reject.example;\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_PERMERROR,
	  "dmarc=permerror", "malformed", NULL, 0 },
	/* CVE-2019-20790: a HELO-scope Received-SPF pass */
	{ "HELO Received-SPF pass not trusted (self_validate = no)",
	  "dmarc_self_validate = no\ndmarc_trust_received_spf = yes", "198.51.100.7",
	  "reject.example", "a@reject.example", 0,
	  "Received-SPF: pass (helo) identity=helo; client-ip=198.51.100.7; helo=reject.example; "
	  "envelope-from=\"a@reject.example\"\nFrom: a@reject.example\n" STD_HDRS, NULL,
	  DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "spf=fail", NULL, "spf_source=self", 0 },
	{ "mailfrom Received-SPF trusted when configured",
	  "dmarc_self_validate = no\ndmarc_trust_received_spf = yes", "198.51.100.7", "x.example",
	  "a@reject.example", 0,
	  "Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=198.51.100.7; helo=x.example; "
	  "envelope-from=<a@reject.example>; receiver=mx.test\nFrom: a@reject.example\n" STD_HDRS,
	  NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_PASS, "dmarc=pass", NULL, "spf_source=trusted", 0 },
	{ "Received-SPF for another envelope-from not trusted",
	  "dmarc_self_validate = no\ndmarc_trust_received_spf = yes", "198.51.100.7", "x.example",
	  "a@reject.example", 0,
	  "Received-SPF: pass identity=mailfrom; envelope-from=\"b@reject.example\"\n"
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "", NULL,
	  "spf_source=self", 0 },
	{ "Received-SPF ignored by default (trust_received_spf = no)", "dmarc_self_validate = no",
	  "198.51.100.7", "x.example", "a@reject.example", 0,
	  "Received-SPF: pass identity=mailfrom; envelope-from=a@reject.example\n"
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "", NULL,
	  NULL, 0 },
	{ "Received-SPF ignored when self-validating", "dmarc_trust_received_spf = yes",
	  "198.51.100.7", "x.example", "a@reject.example", 0,
	  "Received-SPF: pass identity=mailfrom; envelope-from=a@reject.example\n"
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "", NULL,
	  NULL, 0 },
	/* CVE-2020-12272: injected Authentication-Results with our authserv-id */
	{ "injected A-R ignored when self-validating", NULL, "198.51.100.7", "x.example",
	  "a@reject.example", 0,
	  "Authentication-Results: mx.test; dkim=pass header.d=reject.example; spf=pass "
	  "smtp.mailfrom=a@reject.example; dmarc=pass header.from=reject.example\n"
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL,
	  "dkim=none", NULL, "spf_source=self", 0 },
	{ "injected dkim=pass without that signature (self_validate = no)",
	  "dmarc_self_validate = no", "198.51.100.7", "x.example", "b@elsewhere.example", 0,
	  "Authentication-Results: mx.test; dkim=pass header.d=reject.example header.b=AAAAAAAA\n"
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "",
	  NULL, "dkim=reject.example/-/permerror", 0 },
	{ "injected dkim=pass naming a broken signature's d= but a wrong b=",
	  "dmarc_self_validate = no", "198.51.100.7", "x.example", "b@elsewhere.example", 0,
	  "Authentication-Results: mx.test; dkim=pass header.d=reject.example header.b=ZZZZZZZZ\n"
	  "From: a@reject.example\n" STD_HDRS, "reject.example", DMARC_MSG_REJECT,
	  DMARC_RESULT_FAIL, "", NULL, NULL, 0 },
	{ "trusted dkim=pass with its signature (self_validate = no)", "dmarc_self_validate = no",
	  "198.51.100.7", "x.example", "b@elsewhere.example", 0,
	  "Authentication-Results: mx.test; dkim=pass header.d=reject.example header.s=sel "
	  "header.b=%B\nFrom: a@reject.example\n" STD_HDRS, "reject.example", DMARC_MSG_ACCEPT,
	  DMARC_RESULT_PASS, "dmarc=pass", NULL, "dkim=reject.example/sel/pass dkim_source=trusted", 0 },
	{ "trusted spf=pass (self_validate = no)", "dmarc_self_validate = no", "198.51.100.7",
	  "x.example", "a@reject.example", 0,
	  "Authentication-Results: mx.test; spf=pass smtp.mailfrom=a@reject.example\n"
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_PASS,
	  "dmarc=pass", NULL, "spf_source=trusted", 0 },
	{ "untrusted authserv-id ignored (self_validate = no)", "dmarc_self_validate = no",
	  "198.51.100.7", "x.example", "a@reject.example", 0,
	  "Authentication-Results: other.example; spf=pass smtp.mailfrom=a@reject.example; "
	  "dkim=pass header.d=reject.example\nFrom: a@reject.example\n" STD_HDRS, NULL,
	  DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "spf=fail", NULL, "spf_source=self", 0 },
	{ "trusted spf=pass for another MAIL FROM domain ignored", "dmarc_self_validate = no",
	  "198.51.100.7", "x.example", "a@reject.example", 0,
	  "Authentication-Results: mx.test; spf=pass smtp.mailfrom=a@elsewhere.example\n"
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "", NULL,
	  "spf_source=self", 0 },
	/* IDNA: the policy of the A-label applies to a U-label From domain */
	{ "U-label From domain checked as its A-label", NULL, "198.51.100.7", "x.example",
	  "a@reject.example", 0, "From: a@b\xc3\xbc" "cher.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT,
	  DMARC_RESULT_FAIL, "header.from=xn--bcher-kva.example", "xn--bcher-kva.example", NULL, 0 },
	{ "U-label and A-label From domains are one", NULL, "198.51.100.7", "x.example",
	  "a@reject.example", 0, "From: a@b\xc3\xbc" "cher.example, b@XN--BCHER-KVA.example\n" STD_HDRS,
	  NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "", NULL, "from_domains=1", 0 },
	/* exemptions */
	{ "ignored host", NULL, "127.0.0.1", "x.example", "a@reject.example", 0,
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_NONE, NULL, NULL,
	  "skipped=ignored_host", 0 },
	{ "no client address: local submission", NULL, "", "x.example", "a@reject.example", 0,
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_NONE, NULL, NULL,
	  "skipped=local_submission", 0 },
	{ "authenticated client", NULL, "198.51.100.7", "x.example", "a@reject.example", 1,
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_NONE, NULL, NULL,
	  "skipped=authenticated_client", 0 },
	{ "authenticated client, not ignored", "dmarc_ignore_authenticated_clients = no",
	  "198.51.100.7", "x.example", "a@reject.example", 1, "From: a@reject.example\n" STD_HDRS,
	  NULL, DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "", NULL, NULL, 0 },
	{ "ignored domain", "dmarc_ignore_domains = Reject.Example", "198.51.100.7", "x.example",
	  "a@reject.example", 0, "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT,
	  DMARC_RESULT_FAIL, "dmarc=fail", NULL, "enforced=ignored_domain", 0 },
	/* SPF identity: HELO when MAIL FROM is null */
	{ "null MAIL FROM: HELO identity", NULL, "192.0.2.1", "reject.example", "", 0,
	  "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT, DMARC_RESULT_PASS,
	  "spf=pass smtp.helo=reject.example", NULL, "spf=reject.example/helo/pass", 0 },
	{ "X-Sluice-DMARC from outside removed", NULL, "192.0.2.1", "x.example", "a@reject.example",
	  0, "X-Sluice-DMARC: pass\nFrom: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_ACCEPT,
	  DMARC_RESULT_PASS, "", NULL, NULL, 0 },
	{ "custom reject reply", "dmarc_reject_reply = go away, %d (100%%)", "198.51.100.7",
	  "x.example", "a@reject.example", 0, "From: a@reject.example\n" STD_HDRS, NULL,
	  DMARC_MSG_REJECT, DMARC_RESULT_FAIL, "", "go away, reject.example (100%)", NULL, 0 },
	{ "rfc7489 mode (PSL)", "dmarc_mode = rfc7489", "198.51.100.7", "x.example",
	  "a@reject.example", 0, "From: a@reject.example\n" STD_HDRS, NULL, DMARC_MSG_REJECT,
	  DMARC_RESULT_FAIL, "", NULL, "discovery=psl", 0 },
};

/* ---- running one message ---- */

struct hdr {
	char name[64];
	char *value;
};

static size_t split_headers(const char *text, struct hdr *h, size_t max)
{
	size_t n = 0;
	const char *p = text;
	while (*p && n < max) {
		const char *colon = strchr(p, ':');
		assert_non_null(colon);
		snprintf(h[n].name, sizeof(h[n].name), "%.*s", (int)(colon - p), p);
		const char *e = colon + 1;
		for (;;) {
			const char *nl = strchr(e, '\n');
			if (nl == NULL) {
				e += strlen(e);
				break;
			}
			e = nl + 1;
			if (*e != ' ' && *e != '\t')
				break;
		}
		size_t vl = (size_t)(e - colon - 1);
		if (vl && colon[vl] == '\n')
			vl--;
		h[n].value = xstrndup(colon + 1, vl);
		n++;
		p = e;
	}
	return n;
}

static const char body[] = "Hello there.\r\n";

/* The DKIM-Signature value for headers h (leading space) and its b= prefix. */
static char *sign(const struct hdr *h, size_t n, const char *d, char *b8)
{
	char *hdrs[] = { "From", "To", "Subject", "Date", NULL };
	char *over[] = { "From", NULL };
	struct dkim_signer *s = dkim_signer_new(key, d, "sel", 0, 0, hdrs, over, 0, 0);
	assert_non_null(s);
	char *lines[64];
	for (size_t i = 0; i < n; i++) {
		lines[i] = xasprintf("%s:%s", h[i].name, h[i].value);
		dkim_signer_header(s, lines[i], strlen(lines[i]));
	}
	dkim_signer_body(s, (const unsigned char *)body, strlen(body));
	char *v = dkim_signer_finish(s);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	dkim_signer_free(&s);
	const char *b = strstr(v, " b=");
	if (b == NULL)
		b = strstr(v, "\tb=");
	if (b == NULL)
		b = strstr(v, ";b=");
	assert_non_null(b);
	b += 3;
	size_t o = 0;
	for (; *b && o < 8; b++)
		if (*b != ' ' && *b != '\t' && *b != '\r' && *b != '\n')
			b8[o++] = *b;
	b8[o] = 0;
	char *out = xasprintf(" %s", v);
	free(v);
	return out;
}

static void run_case(struct dmarc_cfg *cfg, const struct mcase *c, struct dmarc_msg_outcome *out)
{
	struct hdr h[64];
	size_t n = split_headers(c->headers, h, 64);
	char b8[16] = "";
	char *sig = NULL;
	if (c->sign_d) {
		/* sign the headers as they will be (the A-R above the signature is not signed) */
		sig = sign(h, n, c->sign_d, b8);
	}
	struct dmarc_msg_conn ci = { c->ip, c->helo, c->auth };
	struct dmarc_msg *m = dmarc_msg_new(cfg, "QID1", &ci, c->mail_from);
	dmarc_msg_rcpt(m, "bob@example.net");
	dmarc_msg_rcpt(m, "carol@Example.NET");
	if (sig)
		dmarc_msg_header(m, "DKIM-Signature", sig);
	for (size_t i = 0; i < n; i++) {
		char *v = h[i].value;
		char *pct = strstr(v, "%B");
		if (pct) {
			char *nv = xasprintf("%.*s%s%s", (int)(pct - v), v, b8, pct + 2);
			dmarc_msg_header(m, h[i].name, nv);
			free(nv);
		} else {
			dmarc_msg_header(m, h[i].name, v);
		}
	}
	dmarc_msg_eoh(m);
	dmarc_msg_body(m, (const unsigned char *)body, strlen(body));
	dmarc_msg_eom(m, out);
	dmarc_msg_free(&m);
	for (size_t i = 0; i < n; i++)
		free(h[i].value);
	free(sig);
}

static void check_case(const struct mcase *c, const struct dmarc_msg_outcome *out)
{
	const char *ar = out->ar_value ? out->ar_value : "(none)";
	const char *log = out->nlog ? out->log[0] : "(none)";
	if (getenv("TEST_DMARCD_VERBOSE"))
		printf("== %s\n  action=%s reply=%s\n  ar:%s\n  log: %s\n", c->desc,
		       dmarc_msg_action_name(out->action), out->reply_text ? out->reply_text : "-", ar,
		       log);
	if (out->action != c->action)
		fail_msg("%s: action %s, expected %s\n  ar: %s\n  log: %s", c->desc,
			 dmarc_msg_action_name(out->action), dmarc_msg_action_name(c->action), ar, log);
	if (out->result != c->result)
		fail_msg("%s: result %s, expected %s\n  ar: %s\n  log: %s", c->desc,
			 dmarc_result_name(out->result), dmarc_result_name(c->result), ar, log);
	if (c->ar == NULL && out->ar_value != NULL)
		fail_msg("%s: unexpected A-R %s", c->desc, ar);
	if (c->ar && (out->ar_value == NULL || strstr(out->ar_value, c->ar) == NULL)) {
		/* compare unfolded */
		char *u = xstrdup(ar);
		for (char *p = u; *p; p++)
			if (*p == '\n' || *p == '\t')
				*p = ' ';
		char *sq = u;
		for (char *r = u, *w = u; ; r++) {
			if (*r == ' ' && w > sq && w[-1] == ' ')
				continue;
			*w++ = *r;
			if (*r == 0)
				break;
		}
		int ok = strstr(u, c->ar) != NULL;
		free(u);
		if (!ok)
			fail_msg("%s: A-R lacks \"%s\": %s", c->desc, c->ar, ar);
	}
	if (c->reply && (out->reply_text == NULL || strstr(out->reply_text, c->reply) == NULL))
		fail_msg("%s: reply %s lacks \"%s\"", c->desc, out->reply_text ? out->reply_text : "-",
			 c->reply);
	if (out->action == DMARC_MSG_REJECT &&
	    (strcmp(out->reply_code, "550") != 0 || strcmp(out->reply_xcode, "5.7.1") != 0))
		fail_msg("%s: reject is %s %s", c->desc, out->reply_code, out->reply_xcode);
	if (c->log && strstr(log, c->log) == NULL)
		fail_msg("%s: log lacks \"%s\": %s", c->desc, c->log, log);
	if (out->add_header != c->add_header)
		fail_msg("%s: add_header %d", c->desc, out->add_header);
	if (out->nlog == 0)
		fail_msg("%s: no log line", c->desc);
}

static void test_decisions(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct mcase *c = &cases[i];
		struct conf *conf;
		struct dmarc_cfg *cfg = cfg_of(c->conf, &conf);
		struct dmarc_msg_outcome out;
		run_case(cfg, c, &out);
		check_case(c, &out);
		dmarc_msg_outcome_clear(&out);
		dmarc_cfg_unref(&cfg);
		conf_free(&conf);
	}
}

/* The report fields of docs/DMARC.md are all in the line. */
static void test_log_fields(void **state)
{
	(void)state;
	struct conf *conf;
	struct dmarc_cfg *cfg = cfg_of(NULL, &conf);
	struct dmarc_msg_outcome out;
	run_case(cfg, &cases[1], &out);
	static const char *const fields[] = {
		"milter=dmarc ", " action=reject", " dmarc=fail", " enforced=yes",
		" header_from=reject.example", " from_domains=1", " policy_domain=reject.example",
		" org_domain=", " discovery=treewalk", " p=reject", " sp=-", " np=-", " adkim=r",
		" aspf=r", " t=n", " psd=", " pct=100", " fo=-", " rua=mailto:agg@reject.example",
		" ruf=-", " policy_applied=p", " policy=reject", " disposition=reject",
		" override=none", " spf_aligned=fail", " dkim_aligned=fail", " dns_queries=",
		" reason=", " client_ip=198.51.100.7", " helo=x.example",
		" envelope_from=reject.example", " envelope_to=example.net",
		" spf=reject.example/mfrom/fail", " spf_source=self", " dkim=none", " dkim_source=self",
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strstr(out.log[0], fields[i]) == NULL)
			fail_msg("log lacks \"%s\": %s", fields[i], out.log[0]);
	/* the JSON form has them as members (and at most 64 keys) */
	size_t keys = 0;
	for (const char *p = out.log[0]; *p; p++)
		if (*p == '=' && (p == out.log[0] || p[-1] != '='))
			keys++;
	assert_true(keys < 64);
	dmarc_msg_outcome_clear(&out);
	dmarc_cfg_unref(&cfg);
	conf_free(&conf);
}

/* Two messages from one configuration, one after the other: nothing leaks between them. */
static void test_two_messages(void **state)
{
	(void)state;
	struct conf *conf;
	struct dmarc_cfg *cfg = cfg_of(NULL, &conf);
	struct dmarc_msg_outcome out;
	run_case(cfg, &cases[12], &out);	/* two From fields */
	check_case(&cases[12], &out);
	dmarc_msg_outcome_clear(&out);
	run_case(cfg, &cases[0], &out);		/* pass */
	check_case(&cases[0], &out);
	dmarc_msg_outcome_clear(&out);
	run_case(cfg, &cases[3], &out);		/* signed pass */
	check_case(&cases[3], &out);
	dmarc_msg_outcome_clear(&out);
	run_case(cfg, &cases[1], &out);		/* reject */
	check_case(&cases[1], &out);
	dmarc_msg_outcome_clear(&out);
	dmarc_cfg_unref(&cfg);
	conf_free(&conf);
}

/* Crafted From fields (OpenDMARC crashed on some): caps give a malformed From, never a crash. */
static void test_crafted_from(void **state)
{
	(void)state;
	struct conf *conf;
	struct dmarc_cfg *cfg = cfg_of(NULL, &conf);
	struct sbuf many, doms, deep, longv;
	sbuf_init(&many);
	sbuf_init(&doms);
	sbuf_init(&deep);
	sbuf_init(&longv);
	for (int i = 0; i < 101; i++)		/* RFC5322_MAX_ADDRS + 1 addresses, one domain */
		sbuf_printf(&many, "%su%d@none.example", i ? ", " : " ", i);
	for (int i = 0; i < 11; i++)		/* dmarc_max_from_domains + 1 domains */
		sbuf_printf(&doms, "%su@d%d.example", i ? ", " : " ", i);
	sbuf_adds(&deep, " ");
	for (int i = 0; i < 5000; i++)
		sbuf_addc(&deep, '(');
	sbuf_adds(&deep, "a@reject.example");
	sbuf_adds(&longv, " a@reject.example (");
	for (int i = 0; i < 70000; i++)
		sbuf_addc(&longv, 'x');
	sbuf_addc(&longv, ')');
	const struct { const char *desc, *value; const char *why; } t[] = {
		{ "101 addresses", many.buf, "too many" },
		{ "11 domains", doms.buf, "too many From domains" },
		{ "5000 open comments", deep.buf, "" },
		{ "70 kB value", longv.buf, "" },
		{ "NUL-free control char", " a@reject.example\x01", "" },
		{ "empty", "", "" },
		{ "only a group", " undisclosed-recipients:;", "" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct dmarc_msg_conn ci = { "198.51.100.7", "x.example", 0 };
		struct dmarc_msg *m = dmarc_msg_new(cfg, NULL, &ci, "a@none.example");
		dmarc_msg_header(m, "From", t[i].value);
		dmarc_msg_eoh(m);
		struct dmarc_msg_outcome out;
		dmarc_msg_eom(m, &out);
		if (out.action != DMARC_MSG_REJECT || !out.malformed_from ||
		    strstr(out.reply_text, t[i].why) == NULL)
			fail_msg("%s: %s %s", t[i].desc, dmarc_msg_action_name(out.action),
				 out.reply_text ? out.reply_text : "-");
		dmarc_msg_outcome_clear(&out);
		dmarc_msg_free(&m);
	}
	sbuf_free(&many);
	sbuf_free(&doms);
	sbuf_free(&deep);
	sbuf_free(&longv);
	dmarc_cfg_unref(&cfg);
	conf_free(&conf);
}

/* Hostile headers: never a crash, always a decision. */
static void test_hostile_headers(void **state)
{
	(void)state;
	struct conf *conf;
	struct dmarc_cfg *cfg = cfg_of("dmarc_self_validate = no\ndmarc_trust_received_spf = yes",
				       &conf);
	static const char *const vals[] = {
		"", " ", " (", " \"", " <", " >", " @", " a@", " @b", " ;;;;", " mx.test;",
		" mx.test; dkim=", " mx.test; dkim=pass header.d=", " mx.test; spf=pass smtp.mailfrom=",
		" pass (", " pass identity=mailfrom; envelope-from=\"", " v=1; d=; b=", " d", " =",
	};
	static const char *const names[] = { "From", "Authentication-Results", "Received-SPF",
					     "DKIM-Signature" };
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			struct dmarc_msg_conn ci = { "198.51.100.7", "x.example", 0 };
			struct dmarc_msg *m = dmarc_msg_new(cfg, NULL, &ci, "a@reject.example");
			if (k != 0)
				dmarc_msg_header(m, "From", " a@reject.example");
			dmarc_msg_header(m, names[k], vals[i]);
			dmarc_msg_eoh(m);
			struct dmarc_msg_outcome out;
			dmarc_msg_eom(m, &out);
			if (out.action != DMARC_MSG_REJECT)
				fail_msg("%s:%s: %s", names[k], vals[i], dmarc_msg_action_name(out.action));
			dmarc_msg_outcome_clear(&out);
			dmarc_msg_free(&m);
		}
	}
	dmarc_cfg_unref(&cfg);
	conf_free(&conf);
}

/* ---- failure reports wired in (the module itself: test_dmarc_failrep) ---- */

static void test_failure_report(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_dmarcd.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *script = xasprintf("%s/sendmail", dir);
	FILE *f = fopen(script, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\necho \"$@\" > %s/args\ncat > %s/report.eml\n", dir, dir);
	fclose(f);
	chmod(script, 0755);
	char *extra = xasprintf("dmarc_failure_reports = yes\ndmarc_failure_report_sendmail = %s\n"
				"dmarc_failure_report_from = reports@mx.test", script);
	struct conf *conf;
	struct dmarc_cfg *cfg = cfg_of(extra, &conf);
	struct mcase c = { "fo=1 report", NULL, "198.51.100.7", "x.example", "someone@rep.example",
			   0, "From: Someone <someone@rep.example>\n" STD_HDRS, NULL,
			   DMARC_MSG_QUARANTINE, DMARC_RESULT_FAIL, "dmarc=fail", NULL, NULL, 0 };
	struct dmarc_msg_outcome out;
	run_case(cfg, &c, &out);
	check_case(&c, &out);
	assert_int_equal(out.nlog, 2);
	if (strstr(out.log[1], "failure_report=sent") == NULL ||
	    strstr(out.log[1], "ruf=fail@rep.example") == NULL ||
	    strstr(out.log[1], "verification=internal") == NULL)
		fail_msg("report line: %s", out.log[1]);
	dmarc_msg_outcome_clear(&out);
	char *rp = xasprintf("%s/report.eml", dir), *ap = xasprintf("%s/args", dir);
	char buf[16384] = "", args[512] = "";
	f = fopen(rp, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	f = fopen(ap, "r");
	assert_non_null(f);
	n = fread(args, 1, sizeof(args) - 1, f);
	args[n] = 0;
	fclose(f);
	assert_non_null(strstr(args, "-f reports@mx.test -i -- fail@rep.example"));
	assert_non_null(strstr(buf, "Feedback-Type: auth-failure"));
	assert_non_null(strstr(buf, "Reported-Domain: rep.example"));
	assert_non_null(strstr(buf, "Delivery-Result: spam"));
	assert_null(strstr(buf, "someone@"));	/* redacted by default */
	/* a second message: the log says rate limit or sent, never a crash */
	run_case(cfg, &c, &out);
	assert_int_equal(out.nlog, 2);
	dmarc_msg_outcome_clear(&out);
	unlink(rp);
	unlink(ap);
	unlink(script);
	rmdir(dir);
	free(rp);
	free(ap);
	free(script);
	free(extra);
	dmarc_cfg_unref(&cfg);
	conf_free(&conf);
}

/* ---- the answer cache ---- */

static void test_dns_cache(void **state)
{
	(void)state;
	struct dmarc_dns *d = dmarc_dns_new_fake(fake_dns, NULL, 2);
	long long far = now_ms() + 10000;
	static const struct { const char *name; enum dns_type t; enum dns_status st; int hit; } q[] = {
		{ "_dmarc.reject.example", DNS_T_TXT, DNS_OK, 0 },
		{ "_DMARC.Reject.Example.", DNS_T_TXT, DNS_OK, 1 },	/* same name: from the cache */
		{ "_dmarc.reject.example", DNS_T_A, DNS_NODATA, 0 },	/* another type */
		{ "_dmarc.temp.example", DNS_T_TXT, DNS_SERVFAIL, 0 },	/* errors never kept */
		{ "_dmarc.temp.example", DNS_T_TXT, DNS_SERVFAIL, 0 },
	};
	unsigned long asked = 0;
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		struct dns_answer *a = dmarc_dns_lookup(d, q[i].name, q[i].t, far);
		if (a->status != q[i].st)
			fail_msg("%s: %s", q[i].name, dns_status_name(a->status));
		if (a->status == DNS_OK)
			assert_string_equal(a->rr[0].u.txt.data, "v=DMARC1; p=reject; rua=mailto:agg@reject.example");
		dns_answer_free(&a);
		if (!q[i].hit)
			asked++;
		if (dmarc_dns_count(d) != asked)
			fail_msg("%s: %lu questions, expected %lu", q[i].name, dmarc_dns_count(d), asked);
	}
	assert_int_equal(dmarc_dns_cache_hits(d), 1);
	/* full (2 entries): a third starts the cache again; answers stay right */
	for (int round = 0; round < 3; round++) {
		struct dns_answer *a = dmarc_dns_lookup(d, "quar.example", DNS_T_TXT, far);
		assert_int_equal(a->status, DNS_OK);
		assert_string_equal(a->rr[0].u.txt.data, "v=spf1 ip4:192.0.2.1 -all");
		dns_answer_free(&a);
	}
	/* past the deadline: a time-out, not asked, not kept */
	struct dns_answer *a = dmarc_dns_lookup(d, "none.example", DNS_T_TXT, now_ms() - 1);
	assert_int_equal(a->status, DNS_TIMEOUT);
	dns_answer_free(&a);
	dmarc_dns_free(&d);
}

/* ---- header readers (dmarc_hdr) ---- */

static void test_hdr_readers(void **state)
{
	(void)state;
	static const struct { const char *v, *tag, *want; } tags[] = {
		{ "v=1; a=rsa-sha256; d=Example.COM; s=sel; b=abc\r\n\t def;", "d", "Example.COM" },
		{ "v=1; a=rsa-sha256; d=Example.COM; s=sel; b=abc\r\n\t def;", "b", "abcdef" },
		{ "v=1; bh=xyz; b=q", "b", "q" },			/* bh is not b */
		{ "v=1; d =x.example ;", "d", "x.example" },		/* WSP around = */
		{ "d=;", "d", "" },
		{ "v=1; D=upper", "d", NULL },				/* tag names are case-sensitive */
		{ "no tags at all", "d", NULL },
		{ ";;;=;=", "d", NULL },
		{ "", "d", NULL },
	};
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		char out[64] = "unchanged";
		int rc = dmarc_hdr_tag(tags[i].v, tags[i].tag, out, sizeof(out));
		if (tags[i].want == NULL ? rc != -1 : (rc != 0 || strcmp(out, tags[i].want) != 0))
			fail_msg("tag %s of \"%s\": rc %d \"%s\"", tags[i].tag, tags[i].v, rc, out);
	}
	char small[4];
	assert_int_equal(dmarc_hdr_tag("d=a-long-domain.example", "d", small, sizeof(small)), 0);
	assert_string_equal(small, "a-l");	/* cut, never overrun */

	static const struct { const char *v, *key, *want; } f[] = {
		{ " Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.1; envelope-from=\"a@b.example\"",
		  "identity", "mailfrom" },
		{ " Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.1; envelope-from=\"a@b.example\"",
		  "envelope-from", "a@b.example" },
		{ "pass (a (nested; identity=helo) c) Identity = mailfrom", "identity", "mailfrom" },
		{ "pass envelope-from=<a@b>; x=y", "envelope-from", "<a@b>" },
		{ "pass x=\"q\\\"uote\"", "x", "q\"uote" },
		{ "pass (unterminated identity=mailfrom", "identity", NULL },
		{ "pass", "identity", NULL },
		{ "", "identity", NULL },
		{ "pass identity", "identity", NULL },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		char out[64] = "unchanged";
		int rc = dmarc_hdr_rspf_field(f[i].v, f[i].key, out, sizeof(out));
		if (f[i].want == NULL ? rc != -1 : (rc != 0 || strcmp(out, f[i].want) != 0))
			fail_msg("field %s of \"%s\": rc %d \"%s\"", f[i].key, f[i].v, rc, out);
	}
	char w[8];
	dmarc_hdr_rspf_result("  SoftFail (x) a=b", w, sizeof(w));
	assert_string_equal(w, "SoftFai");	/* cut to the buffer */
	dmarc_hdr_rspf_result("", w, sizeof(w));
	assert_string_equal(w, "");
	char a[] = "<a@b>";
	dmarc_hdr_strip_angle(a);
	assert_string_equal(a, "a@b");
	assert_string_equal(dmarc_hdr_addr_domain("x@y@z.example"), "z.example");
	assert_null(dmarc_hdr_addr_domain("postmaster"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params_defaults),
		cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_log_fields),
		cmocka_unit_test(test_two_messages),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_crafted_from),
		cmocka_unit_test(test_hdr_readers),
		cmocka_unit_test(test_dns_cache),
		cmocka_unit_test(test_failure_report),
	};
	return cmocka_run_group_tests(tests, setup_key, teardown_key);
}
