/*
 * test_why: `sluice why` on log fixtures. The sluiced + sluice-spam +
 * sluice-ratelimit lines are from a real run (tests/integration/test_why.py's
 * traffic, abridged); the session/bounce ones are in sluiced's forms with a
 * sluice-spf line in spfd_server.c's form. Checks the joins (queue id,
 * policy instance, the SMTP session before the queue id, a DSN naming the
 * queue id), the decision sentences, the order, the selector mode, JSON
 * (read back with jansson) and a log_format = json log.
 */
#include "tools/why.c"
#include "tools/report_input.c"
#include "tools/report_map.c"
#include "tools/report_parse.c"
#include "tools/report_time.c"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const char SLUICED[] =
	"Dec  2 12:51:02 vm sluice/master[27098]: daemon started -- listening on 2 address(es), 2 receiver(s), queue /q\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: connect from unknown[127.0.0.2]\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: 4jfd0k5MwczBPT: client=unknown[127.0.0.2]\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: 4jfd0k5MwczBPT: policy instance=69e2.6b101436.5\n"
	"Dec  2 12:51:02 vm sluice-spam[27086]: 4jfd0k5MwczBPT: milter=spam action=no_action score=0.00 required=6.00 bayes=untrained size=183 symbols=none\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: 4jfd0k5MwczBPT: milter=unix:/run/spam.sock stage=end-of-message action=continue\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: disconnect from unknown[127.0.0.2] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27105]: connect from unknown[127.0.0.2]\n"
	"Dec  2 12:51:02 vm sluice/qmgr[27104]: 4jfd0k5MwczBPT: from=<msgs@example.org>, size=301, nrcpt=1 (queue active)\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27105]: 4jfd0k5TTmzBPS: client=unknown[127.0.0.2]\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27105]: 4jfd0k5TTmzBPS: policy instance=69e1.6b101436.3\n"
	"Dec  2 12:51:02 vm sluice/virtual[27104]: 4jfd0k5MwczBPT: to=<alice@example.com>, relay=virtual, delay=0.018, delays=0.01/0/0/0.0077, dsn=2.0.0, status=sent (delivered to maildir)\n"
	"Dec  2 12:51:02 vm sluice/qmgr[27104]: 4jfd0k5MwczBPT: removed\n"
	"Dec  2 12:51:02 vm sluice-spam[27086]: 4jfd0k5TTmzBPS: milter=spam action=reject score=20.00 required=6.00 bayes=untrained size=193 symbols=T_REJECT_ME(20.00)\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27105]: 4jfd0k5TTmzBPS: milter=unix:/run/spam.sock stage=end-of-message action=reject reply=\"550 5.7.1 Message rejected as spam\"\n"
	"Dec  2 12:51:02 vm sluice/cleanup[27105]: 4jfd0k5TTmzBPS: milter-reject: END-OF-MESSAGE from unknown[127.0.0.2]: 550 5.7.1 Message rejected as spam; from=<olga@example.org> proto=ESMTP helo=<client.test>\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: connect from unknown[127.0.0.2]\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: 4jfd0k5YYtzBPT: client=unknown[127.0.0.2]\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: 4jfd0k5YYtzBPT: policy instance=69e2.6b101436.a\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: 4jfd0k5YYtzBPT: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <carol@example.com>: Recipient address rejected: 5.7.1 too many recipients (limit RCPT: 2 recipients per 3600 s for sender=many@example.org, retry in 1800 s); from=<many@example.org> to=<carol@example.com> proto=ESMTP helo=<client.test>\n"
	"Dec  2 12:51:02 vm sluice-spam[27086]: 4jfd0k5YYtzBPT: milter=spam action=no_action score=0.00 required=6.00 bayes=untrained size=158 symbols=none\n"
	"Dec  2 12:51:02 vm sluice/qmgr[27104]: 4jfd0k5YYtzBPT: from=<many@example.org>, size=276, nrcpt=2 (queue active)\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: connect from unknown[127.0.0.2]\n"
	"Dec  2 12:51:02 vm sluice/virtual[27104]: 4jfd0k5YYtzBPT: to=<alice@example.com>, relay=virtual, delay=0.015, delays=0.012/0/0/0, dsn=2.0.0, status=sent (delivered to maildir)\n"
	"Dec  2 12:51:02 vm sluice/virtual[27104]: 4jfd0k5YYtzBPT: to=<bob@example.com>, relay=virtual, delay=0.016, delays=0.012/0/0/0, dsn=2.0.0, status=sent (delivered to maildir)\n"
	"Dec  2 12:51:02 vm sluice/qmgr[27104]: 4jfd0k5YYtzBPT: removed\n"
	"Dec  2 12:51:02 vm sluice/smtpd[27106]: NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 450 4.7.1 <carol@example.com>: Recipient address rejected: 4.7.1 too many messages (limit MSGS: 1 messages per 3600 s for sender=msgs@example.org, retry in 3600 s); from=<msgs@example.org> to=<carol@example.com> proto=ESMTP helo=<client.test>\n"
	"Dec  2 12:51:02 vm sluice/master[27098]: terminating on signal\n";

static const char RATELIMIT[] =
	"Dec  2 12:51:02 vm sluice-ratelimit[27084]: ratelimit: listening on inet:127.0.0.1:42749, backend=embedded\n"
	"Dec  2 12:51:02 vm sluice-ratelimit[27084]: NOQUEUE: ratelimit: state=RCPT, instance=69e2.6b101436.5, client=[127.0.0.2], sasl_username=, from=<msgs@example.org>, to=<alice@example.com>, MSGS=1/1, result=under, action=\"DUNNO\"\n"
	"Dec  2 12:51:02 vm sluice-ratelimit[27084]: NOQUEUE: ratelimit: state=RCPT, instance=69e1.6b101436.3, client=[127.0.0.2], sasl_username=, from=<olga@example.org>, to=<bob@example.com>, result=none, action=\"DUNNO\"\n"
	"Dec  2 12:51:02 vm sluice-ratelimit[27084]: NOQUEUE: ratelimit: state=RCPT, instance=69e2.6b101436.a, client=[127.0.0.2], sasl_username=, from=<many@example.org>, to=<alice@example.com>, RCPT=1/2, result=under, action=\"DUNNO\"\n"
	"Dec  2 12:51:02 vm sluice-ratelimit[27084]: 4jfd0k5YYtzBPT: ratelimit: state=RCPT, instance=69e2.6b101436.a, client=[127.0.0.2], sasl_username=, from=<many@example.org>, to=<bob@example.com>, RCPT=2/2, result=under, action=\"DUNNO\"\n"
	"Dec  2 12:51:02 vm sluice-ratelimit[27084]: 4jfd0k5YYtzBPT: ratelimit: state=RCPT, instance=69e2.6b101436.a, client=[127.0.0.2], sasl_username=, from=<many@example.org>, to=<carol@example.com>, rule=RCPT, limit=rcpt, key=rcpt:2/3600s:sender=many@example.org, used=2, cost=1, max=2, window_s=3600, retry_s=1800, result=over, action=\"REJECT 5.7.1 too many recipients (limit RCPT: 2 recipients per 3600 s for sender=many@example.org; retry in 1800 s)\"\n"
	"Dec  2 12:51:02 vm sluice-ratelimit[27084]: NOQUEUE: ratelimit: state=RCPT, instance=69e2.6b101436.f, client=[127.0.0.2], sasl_username=, from=<msgs@example.org>, to=<carol@example.com>, rule=MSGS, limit=rate, key=rate:1/3600s:sender=msgs@example.org, used=1, cost=1, max=1, window_s=3600, retry_s=3600, result=over, action=\"DEFER_IF_PERMIT 4.7.1 too many messages (limit MSGS: 1 messages per 3600 s for sender=msgs@example.org; retry in 3600 s)\"\n";

/* a session with a NOQUEUE reject and an SPF check before the queue id, another session, a bounce */
static const char SESSION[] =
	"Dec  2 09:00:00 mx sluice/smtpd[100]: connect from client.test[192.0.2.7]\n"
	"Dec  2 09:00:00 mx sluice/smtpd[101]: connect from other.test[192.0.2.8]\n"
	"Dec  2 09:00:00 mx sluice/smtpd[100]: NOQUEUE: reject: RCPT from client.test[192.0.2.7]: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table; from=<ann@example.net> to=<nobody@example.com> proto=ESMTP helo=<client.test>\n"
	"Dec  2 09:00:00 mx sluice/smtpd[101]: NOQUEUE: reject: RCPT from other.test[192.0.2.8]: 554 5.7.1 <x@example.com>: Relay access denied; from=<ann@example.net> to=<x@example.com> proto=ESMTP helo=<other.test>\n"
	"Dec  2 09:00:00 mx sluice-spf[50]: NOQUEUE: spf: identity=ann@example.net, scope=mailfrom, client=[192.0.2.7], helo=client.test, from=<ann@example.net>, result=pass, mechanism=ip4:192.0.2.0/24, reason=\"-\", lookups=1, queries=1, time_ms=2, action=\"PREPEND Received-SPF: pass\"\n"
	"Dec  2 09:00:00 mx sluice/smtpd[100]: 5ABCDEF01: client=client.test[192.0.2.7]\n"
	"Dec  2 09:00:01 mx sluice/cleanup[100]: 5ABCDEF01: message-id=<m1@example.net>\n"
	"Dec  2 09:00:01 mx sluice/qmgr[90]: 5ABCDEF01: from=<ann@example.net>, size=300, nrcpt=1 (queue active)\n"
	"Dec  2 09:00:02 mx sluice/smtp[90]: 5ABCDEF01: to=<x@remote.test>, relay=remote.test[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred (connect to remote.test[198.51.100.1]:25: Connection refused)\n"
	"Dec  2 09:10:02 mx sluice/smtp[90]: 5ABCDEF01: to=<x@remote.test>, relay=remote.test[198.51.100.1]:25, delay=601, delays=600/0/0/1, dsn=5.1.1, status=bounced (host remote.test[198.51.100.1] said: 550 5.1.1 no such user)\n"
	"Dec  2 09:10:02 mx sluice/bounce[90]: 5ABCDEF01: sender non-delivery notification: 5DSNDSN01\n"
	"Dec  2 09:10:02 mx sluice/qmgr[90]: 5ABCDEF01: removed\n"
	"Dec  2 09:10:02 mx sluice/qmgr[90]: 5DSNDSN01: from=<>, size=2000, nrcpt=1 (queue active)\n";

static const char JSONLOG[] =
	"{\"time\":\"2026-12-02T09:00:00.100Z\",\"host\":\"mx\",\"program\":\"sluice/smtpd\",\"pid\":100,\"queue_id\":\"5JSON0001\",\"message\":\"client=unknown[127.0.0.1]\",\"client\":\"unknown[127.0.0.1]\"}\n"
	"{\"time\":\"2026-12-02T09:00:00.250Z\",\"host\":\"mx\",\"program\":\"sluice/virtual\",\"pid\":90,\"queue_id\":\"5JSON0001\",\"message\":\"to=<alice@example.com>, relay=virtual, delay=0.15, delays=0/0/0/0.15, dsn=2.0.0, status=sent (delivered to maildir)\",\"to\":\"<alice@example.com>\"}\n";

/* Postfix with sluice-dkim: its milter-reject has no reply code */
static const char POSTFIX[] =
	"Dec  2 10:00:00 mx postfix/smtpd[200]: connect from client.test[192.0.2.9]\n"
	"Dec  2 10:00:00 mx postfix/smtpd[200]: 7F1A2B3C4D: client=client.test[192.0.2.9]\n"
	"Dec  2 10:00:01 mx sluice-dkim[60]: 7F1A2B3C4D: milter=dkim action=reject dkim=fail, sig1=fail d=example.net s=sel a=rsa-sha256 reason=\"signature did not verify\"\n"
	"Dec  2 10:00:01 mx postfix/cleanup[201]: 7F1A2B3C4D: milter-reject: END-OF-MESSAGE from client.test[192.0.2.9]: 5.7.1 DKIM signature did not verify; from=<a@example.net> to=<b@example.com> proto=ESMTP helo=<client.test>\n"
	"Dec  2 10:00:01 mx postfix/smtpd[200]: disconnect from client.test[192.0.2.9] ehlo=1 mail=1 rcpt=1 data=0/1 quit=1 commands=4/5\n";

static char dir[64];

static char *put(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/test_why.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	return 0;
}

/* why_run on w with the given files; the output (caller frees) and the exit status */
static char *run(struct why *w, const char *const *names, const char *const *texts, int n, int *rc_out)
{
	char **files = xcalloc((size_t)n, sizeof *files);
	for (int i = 0; i < n; i++)
		files[i] = put(names[i], texts[i]);
	w->files = files;
	w->nfiles = n;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_non_null(f);
	*rc_out = why_run(w, f);
	fclose(f);
	for (int i = 0; i < n; i++)
		free(files[i]);
	free(files);
	why_free(w);
	return out;
}

static char *run_qid(const char *qid, int json, int *rc_out)
{
	static const char *const names[] = { "maillog", "ratelimit.log", "session.log" };
	static const char *const texts[] = { SLUICED, RATELIMIT, SESSION };
	struct why w = { 0 };
	w.qid = qid;
	w.json = json;
	return run(&w, names, texts, 3, rc_out);
}

/* the lines after "decisions:" */
static const char *decisions(const char *out)
{
	const char *d = strstr(out, "\ndecisions:\n");
	assert_non_null(d);
	return d + 12;
}

static void test_ratelimit_rcpt_reject(void **state)
{
	(void)state;
	int rc;
	char *out = run_qid("4jfd0k5YYtzBPT", 0, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(decisions(out),
			    "  rejected <carol@example.com> at RCPT by sluice-ratelimit rule RCPT: 3 recipients in 3600 s, "
			    "limit 2 (554 5.7.1 <carol@example.com>: Recipient address rejected: 5.7.1 too many recipients "
			    "(limit RCPT: 2 recipients per 3600 s for sender=many@example.org, retry in 1800 s))\n"
			    "  delivered <alice@example.com> by virtual (relay=virtual, dsn=2.0.0, delay=0.015 s)\n"
			    "  delivered <bob@example.com> by virtual (relay=virtual, dsn=2.0.0, delay=0.016 s)\n");
	/* the NOQUEUE answer (joined by instance) sorts before the line that made the queue id */
	const char *rl = strstr(out, "NOQUEUE: ratelimit: state=RCPT, instance=69e2.6b101436.a");
	const char *client = strstr(out, "4jfd0k5YYtzBPT: client=");
	assert_non_null(rl);
	assert_non_null(client);
	assert_true(rl < client);
	assert_non_null(strstr(rl, "[joined by policy instance]"));
	/* client, instance, reject, spam, qmgr, 2 deliveries, removed; 3 ratelimit lines */
	assert_non_null(strstr(out, "4jfd0k5YYtzBPT: 11 event(s)\n"));
	/* the other messages' instance lines stay out */
	assert_null(strstr(out, "69e2.6b101436.5"));
	assert_null(strstr(out, "69e2.6b101436.f"));
	free(out);
}

static void test_spam_reject_and_delivery(void **state)
{
	(void)state;
	int rc;
	char *out = run_qid("4jfd0k5TTmzBPS", 0, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(decisions(out),
			    "  rejected at END-OF-MESSAGE by sluice-spam: score 20.00, required 6.00, symbols "
			    "T_REJECT_ME(20.00) (550 5.7.1 Message rejected as spam)\n");
	free(out);
	out = run_qid("4jfd0k5MwczBPT", 0, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(decisions(out),
			    "  delivered <alice@example.com> by virtual (relay=virtual, dsn=2.0.0, delay=0.018 s)\n");
	assert_non_null(strstr(out, "MSGS=1/1, result=under, action=\"DUNNO\"  [joined by policy instance]"));
	free(out);
}

static void test_session_and_bounce(void **state)
{
	(void)state;
	int rc;
	char *out = run_qid("5ABCDEF01", 0, &rc);
	assert_int_equal(rc, 0);
	/* this session's NOQUEUE lines (sluiced's reject, sluice-spf without an instance), not the other session's */
	assert_non_null(strstr(out, "<nobody@example.com>: Recipient address rejected: User unknown in virtual "
				    "mailbox table; from=<ann@example.net> to=<nobody@example.com> proto=ESMTP "
				    "helo=<client.test>  [same SMTP session, before the queue id]\n"));
	assert_non_null(strstr(out, "sluice-spf[50]: NOQUEUE: spf: identity=ann@example.net"));
	assert_null(strstr(out, "other.test"));
	/* the DSN's own lines are not this message's; the notice naming it is */
	assert_null(strstr(out, "5DSNDSN01: from=<>"));
	assert_string_equal(decisions(out),
			    "  rejected <nobody@example.com> at RCPT by sluice/smtpd (its own restrictions) (550 5.1.1 "
			    "<nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table)\n"
			    "  bounced <x@remote.test> by smtp (relay=remote.test[198.51.100.1]:25, dsn=5.1.1, "
			    "delay=601 s: host remote.test[198.51.100.1] said: 550 5.1.1 no such user)\n");
	free(out);
	/* the DSN: its own lines and the notice that names it */
	out = run_qid("5DSNDSN01", 0, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "5ABCDEF01: sender non-delivery notification: 5DSNDSN01  [names this queue id]"));
	assert_non_null(strstr(out, "5DSNDSN01: 2 event(s)"));
	free(out);
	/* an id that is not in the logs */
	out = run_qid("5NOTHERE1", 0, &rc);
	assert_int_equal(rc, 1);
	free(out);
}

static void test_json(void **state)
{
	(void)state;
	int rc;
	char *out = run_qid("4jfd0k5YYtzBPT", 1, &rc);
	assert_int_equal(rc, 0);
	json_error_t err;
	json_t *doc = json_loads(out, 0, &err);
	if (!doc)
		fail_msg("%s: %s", err.text, out);
	assert_string_equal(json_string_value(json_object_get(doc, "queue_id")), "4jfd0k5YYtzBPT");
	json_t *evs = json_object_get(doc, "events"), *decs = json_object_get(doc, "decisions");
	assert_int_equal(json_array_size(evs), 11);
	json_t *first = json_array_get(evs, 0);
	assert_string_equal(json_string_value(json_object_get(first, "matched_by")), "instance");
	assert_string_equal(json_string_value(json_object_get(first, "program")), "sluice-ratelimit");
	assert_string_equal(json_string_value(json_object_get(first, "kind")), rp_kind_name(RP_EV_FILTER));
	assert_true(json_is_real(json_object_get(first, "epoch")));
	assert_int_equal(json_array_size(decs), 3);
	json_t *d = json_array_get(decs, 0);
	assert_string_equal(json_string_value(json_object_get(d, "decision")), "rejected");
	assert_string_equal(json_string_value(json_object_get(d, "stage")), "RCPT");
	assert_string_equal(json_string_value(json_object_get(d, "recipient")), "carol@example.com");
	assert_string_equal(json_string_value(json_object_get(d, "by")), "sluice-ratelimit rule RCPT");
	assert_string_equal(json_string_value(json_object_get(d, "filter")), "ratelimit");
	assert_string_equal(json_string_value(json_object_get(d, "rule")), "RCPT");
	assert_string_equal(json_string_value(json_object_get(d, "detail")), "3 recipients in 3600 s, limit 2");
	d = json_array_get(decs, 2);
	assert_string_equal(json_string_value(json_object_get(d, "decision")), "delivered");
	assert_true(json_is_null(json_object_get(d, "stage")));
	json_decref(doc);
	free(out);
}

static void test_selectors(void **state)
{
	(void)state;
	static const char *const names[] = { "maillog", "ratelimit.log", "session.log" };
	static const char *const texts[] = { SLUICED, RATELIMIT, SESSION };
	int rc;
	struct why w = { 0 };
	w.sel_sender = "MSGS@example.org";
	char *out = run(&w, names, texts, 3, &rc);
	assert_int_equal(rc, 0);
	/* the refused message and its verdict; not the verdict of the message that got a queue id */
	assert_non_null(strstr(out, "NOQUEUE events for sender MSGS@example.org: 2\n"));
	assert_null(strstr(out, "69e2.6b101436.5"));
	assert_string_equal(decisions(out),
			    "  temporarily rejected <carol@example.com> at RCPT by sluice-ratelimit rule MSGS: 2 messages "
			    "in 3600 s, limit 1 (450 4.7.1 <carol@example.com>: Recipient address rejected: 4.7.1 too "
			    "many messages (limit MSGS: 1 messages per 3600 s for sender=msgs@example.org, retry in "
			    "3600 s))\n"
			    "messages with a queue id (sluice why QUEUE-ID tells their story):\n"
			    "  4jfd0k5MwczBPT\n");
	free(out);
	/* every selector must match a NOQUEUE line; the queue ids are those all selectors matched */
	memset(&w, 0, sizeof w);
	w.sel_client = "192.0.2.7";
	w.sel_recipient = "nobody@example.com";
	out = run(&w, names, texts, 3, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, ": 1\n"));
	assert_non_null(strstr(out, "  rejected <nobody@example.com> at RCPT by sluice/smtpd (its own restrictions)"));
	assert_null(strstr(out, "messages with a queue id"));
	free(out);
	memset(&w, 0, sizeof w);
	w.sel_client = "192.0.2.7";
	w.json = 1;
	out = run(&w, names, texts, 3, &rc);
	json_t *doc = json_loads(out, 0, NULL);
	assert_non_null(doc);
	json_t *msgs = json_object_get(doc, "messages");
	assert_int_equal(json_array_size(msgs), 1);
	assert_string_equal(json_string_value(json_array_get(msgs, 0)), "5ABCDEF01");
	/* the reject and the SPF verdict of 192.0.2.7 */
	assert_int_equal(json_array_size(json_object_get(doc, "events")), 2);
	json_decref(doc);
	free(out);
}

static void test_json_log_format(void **state)
{
	(void)state;
	static const char *const names[] = { "maillog.json" };
	static const char *const texts[] = { JSONLOG };
	struct why w = { 0 };
	w.qid = "5JSON0001";
	int rc;
	char *out = run(&w, names, texts, 1, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "5JSON0001: 2 event(s)\n"));
	assert_non_null(strstr(out, "sluice/smtpd[100]: 5JSON0001: client=unknown[127.0.0.1]"));
	assert_string_equal(decisions(out),
			    "  delivered <alice@example.com> by virtual (relay=virtual, dsn=2.0.0, delay=0.15 s)\n");
	free(out);
}

static void test_postfix_and_sluice_dkim(void **state)
{
	(void)state;
	static const char *const names[] = { "postfix.log" };
	static const char *const texts[] = { POSTFIX };
	struct why w = { 0 };
	w.qid = "7F1A2B3C4D";
	int rc;
	char *out = run(&w, names, texts, 1, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(decisions(out),
			    "  rejected <b@example.com> at END-OF-MESSAGE by sluice-dkim: DKIM fail: signature did not "
			    "verify (5.7.1 DKIM signature did not verify)\n");
	free(out);
}

static void test_command_line(void **state)
{
	(void)state;
	char *log = put("maillog", SESSION);
	char *a1[] = { "why", NULL };
	assert_int_equal(why_main(1, a1), 2);
	char *a2[] = { "why", "NOQUEUE", log, NULL };
	assert_int_equal(why_main(3, a2), 2);
	char *a3[] = { "why", "not-an-id!", log, NULL };
	assert_int_equal(why_main(3, a3), 2);
	char *missing = xasprintf("%s/missing", dir);
	char *a4[] = { "why", "5ABCDEF01", missing, NULL };
	assert_int_equal(why_main(3, a4), 2);
	char *a5[] = { "why", "--sender", NULL };
	assert_int_equal(why_main(2, a5), 2);
	/* -c FILE: its maillog_file, relative to the config's directory */
	char *conf = put("sluice.conf", "maillog_file = maillog\n");
	char *a6[] = { "why", "-c", conf, "5NOTHERE1", NULL };
	assert_int_equal(why_main(4, a6), 1);
	char *a7[] = { "why", "-c", conf, "--json", "5ABCDEF01", NULL };
	/* its output (to stdout) into a file */
	char *outp = xasprintf("%s/out", dir);
	fflush(stdout);
	int saved = dup(1), fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 1);
	close(fd);
	int rc = why_main(5, a7);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	assert_int_equal(rc, 0);
	json_t *doc = json_load_file(outp, 0, NULL);
	assert_non_null(doc);
	assert_int_equal(json_array_size(json_object_get(doc, "decisions")), 2);
	json_decref(doc);
	free(outp);
	free(conf);
	free(missing);
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ratelimit_rcpt_reject, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spam_reject_and_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_and_bounce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_selectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_log_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_postfix_and_sluice_dkim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_line, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
