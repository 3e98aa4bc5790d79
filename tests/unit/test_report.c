/*
 * test_report: the log reader of `sluice report` (tools/report_parse,
 * report_input) and its counting (tools/report_stats).
 * Every line below is written by hand in the shape Postfix 3.7, sluiced,
 * sluice-dkim, sluice-spf, OpenDKIM 2.11, OpenDMARC 1.4 and policyd-spf 2.0
 * print (addresses from the documentation ranges and example domains).
 *
 * XXX: the Makefile links unit tests with libsluice.a/libmta.a only, not
 * tools/; until it links tools/report*.o into test_report, the modules are
 * compiled in here (tools/report.c too: report_main, no main()).
 */
#include "tools/report.c"
#include "tools/report_html.c"
#include "tools/report_input.c"
#include "tools/report_map.c"
#include "tools/report_parse.c"
#include "tools/report_run.c"
#include "tools/report_time.c"
#include "tools/report_stats.c"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

struct pcase {
	const char *name, *line;
	enum rp_kind kind;
	const char *prog, *service, *qid;
	/* field=value checks, "" for absent (NULL), separated by | */
	const char *checks;
};

static const struct pcase pcases[] = {
	{ "sluiced connect", "Dec  2 08:44:02 mx sluiced[1043]: connect from unknown[127.0.0.1]",
	  RP_EV_CONNECT, "sluiced", "", NULL, "client_name=unknown|client_ip=127.0.0.1" },
	{ "sluiced client", "Dec  2 08:44:02 mx sluiced[1043]: 4jfWWk10BkzNR: client=unknown[127.0.0.1]",
	  RP_EV_CLIENT, "sluiced", "", "4jfWWk10BkzNR", "client_ip=127.0.0.1" },
	{ "future sluice/smtpd form",
	  "Dec  2 08:44:02 mx sluice/smtpd[1043]: 4jfWWk10BkzNR: client=mail.example.org[192.0.2.9], sasl_method=PLAIN, sasl_username=joe",
	  RP_EV_CLIENT, "sluice", "smtpd", "4jfWWk10BkzNR",
	  "client_name=mail.example.org|client_ip=192.0.2.9|sasl_username=joe" },
	{ "postfix submission/smtpd",
	  "Dec  2 08:44:02 mx postfix/submission/smtpd[77]: 3F2A1C9D0B: client=h.example.org[192.0.2.10]",
	  RP_EV_CLIENT, "postfix", "smtpd", "3F2A1C9D0B", "client_ip=192.0.2.10" },
	{ "message-id", "Dec  2 08:44:02 mx postfix/cleanup[78]: 3F2A1C9D0B: message-id=<20261202.1@example.org>",
	  RP_EV_MESSAGE_ID, "postfix", "cleanup", "3F2A1C9D0B", "message_id=<20261202.1@example.org>" },
	{ "qmgr from", "Dec  2 08:44:02 mx postfix/qmgr[79]: 3F2A1C9D0B: from=<joe@Example.ORG>, size=1234, nrcpt=2 (queue active)",
	  RP_EV_FROM, "postfix", "qmgr", "3F2A1C9D0B", "sender=joe@Example.ORG|size=1234|nrcpt=2" },
	{ "null sender", "Dec  2 08:44:02 mx postfix/qmgr[79]: 3F2A1C9D0C: from=<>, size=3000, nrcpt=1 (queue active)",
	  RP_EV_FROM, "postfix", "qmgr", "3F2A1C9D0C", "sender=|size=3000" },
	{ "virtual sent",
	  "Dec  2 08:44:03 mx postfix/virtual[80]: 3F2A1C9D0B: to=<sue@example.net>, relay=virtual, delay=0.12, delays=0.05/0.01/0/0.06, dsn=2.0.0, status=sent (delivered to maildir)",
	  RP_EV_DELIVERY, "postfix", "virtual", "3F2A1C9D0B",
	  "recipient=sue@example.net|relay=virtual|delay=0.12|dsn=2.0.0|status=sent|status_text=delivered to maildir" },
	{ "smtp deferred with orig_to",
	  "Dec  2 08:44:03 mx postfix/smtp[81]: 3F2A1C9D0B: to=<bob@example.com>, orig_to=<team@example.net>, relay=none, delay=31, delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to mx.example.com[192.0.2.20]:25: Connection timed out)",
	  RP_EV_DELIVERY, "postfix", "smtp", "3F2A1C9D0B",
	  "recipient=bob@example.com|orig_to=team@example.net|relay=none|delay=31|status=deferred|status_text=connect to mx.example.com[192.0.2.20]:25: Connection timed out" },
	{ "smtp bounced",
	  "Dec  2 08:44:03 mx postfix/smtp[81]: 3F2A1C9D0D: to=<nobody@example.com>, relay=mx.example.com[192.0.2.20]:25, delay=1.4, delays=0.1/0/0.3/1, dsn=5.1.1, status=bounced (host mx.example.com[192.0.2.20] said: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown (in reply to RCPT TO command))",
	  RP_EV_DELIVERY, "postfix", "smtp", "3F2A1C9D0D",
	  "status=bounced|dsn=5.1.1|relay=mx.example.com[192.0.2.20]:25|status_text=host mx.example.com[192.0.2.20] said: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown (in reply to RCPT TO command)" },
	{ "lmtp sent",
	  "Dec  2 08:44:03 mx postfix/lmtp[82]: 3F2A1C9D0E: to=<sue@example.net>, relay=mail.example.net[private/dovecot-lmtp], delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <sue@example.net> abc Saved)",
	  RP_EV_DELIVERY, "postfix", "lmtp", "3F2A1C9D0E", "status=sent|relay=mail.example.net[private/dovecot-lmtp]" },
	{ "local forwarded",
	  "Dec  2 08:44:03 mx postfix/local[83]: 3F2A1C9D0F: to=<root@mx.example.net>, orig_to=<root>, relay=local, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (forwarded as 4AB2C1D0E)",
	  RP_EV_DELIVERY, "postfix", "local", "3F2A1C9D0F", "status_text=forwarded as 4AB2C1D0E" },
	{ "removed", "Dec  2 08:44:03 mx postfix/qmgr[79]: 3F2A1C9D0B: removed", RP_EV_REMOVED, "postfix",
	  "qmgr", "3F2A1C9D0B", "" },
	{ "pickup", "Dec  2 08:44:03 mx postfix/pickup[84]: 4B7E2A1C0F: uid=1000 from=<joe>", RP_EV_PICKUP,
	  "postfix", "pickup", "4B7E2A1C0F", "sender=joe" },
	{ "NOQUEUE reject RCPT",
	  "Dec  2 08:44:02 mx sluiced[1043]: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@example.net> to=<nobody@example.com> proto=ESMTP helo=<[127.0.0.1]>",
	  RP_EV_REJECT, "sluiced", "", "NOQUEUE",
	  "reject=reject|stage=RCPT|code=550|dsn=5.1.1|reason=<nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table|sender=a@example.net|recipient=nobody@example.com|helo=[127.0.0.1]|proto=ESMTP|client_ip=127.0.0.1" },
	{ "reject CONNECT dnsbl",
	  "Dec  2 08:44:02 mx postfix/smtpd[77]: NOQUEUE: reject: CONNECT from unknown[192.0.2.66]: 554 5.7.1 Service unavailable; Client host [192.0.2.66] blocked using zen.example.org; proto=SMTP",
	  RP_EV_REJECT, "postfix", "smtpd", "NOQUEUE",
	  "stage=CONNECT|code=554|reason=Service unavailable; Client host [192.0.2.66] blocked using zen.example.org|sender=" },
	{ "reject_warning",
	  "Dec  2 08:44:02 mx postfix/smtpd[77]: NOQUEUE: reject_warning: MAIL from unknown[192.0.2.66]: 450 4.1.8 <x@nxdomain.example>: Sender address rejected: Domain not found; from=<x@nxdomain.example> proto=ESMTP helo=<h>",
	  RP_EV_REJECT, "postfix", "smtpd", "NOQUEUE", "reject=reject_warning|stage=MAIL|code=450" },
	{ "smtpd milter-reject at RCPT",
	  "Dec  2 08:44:02 mx postfix/smtpd[77]: NOQUEUE: milter-reject: RCPT from h.example.org[192.0.2.10]: 451 4.7.1 Service unavailable - try again later; from=<a@example.org> to=<sue@example.net> proto=ESMTP helo=<h.example.org>",
	  RP_EV_REJECT, "postfix", "smtpd", "NOQUEUE", "reject=milter-reject|stage=RCPT|code=451|dsn=4.7.1" },
	{ "cleanup milter-reject",
	  "2026-12-02T08:44:02.123456+00:00 mx postfix/cleanup[77]: 3F2A1C9D0B: milter-reject: END-OF-MESSAGE from mail.example.org[192.0.2.9]: 5.7.1 rejected by DMARC policy for example.org; from=<x@example.org> to=<sue@example.net> proto=ESMTP helo=<mail.example.org>",
	  RP_EV_REJECT, "postfix", "cleanup", "3F2A1C9D0B",
	  "reject=milter-reject|stage=END-OF-MESSAGE|code=|dsn=5.7.1|reason=rejected by DMARC policy for example.org|time=1796201042.123456" },
	{ "cleanup milter-hold",
	  "Dec  2 08:44:02 mx postfix/cleanup[77]: 3F2A1C9D0B: milter-hold: END-OF-MESSAGE from mail.example.org[192.0.2.9]: milter triggers HOLD action; from=<x@example.org> to=<sue@example.net> proto=ESMTP helo=<mail.example.org>",
	  RP_EV_REJECT, "postfix", "cleanup", "3F2A1C9D0B", "reject=hold|stage=END-OF-MESSAGE|reason=milter triggers HOLD action" },
	{ "cleanup header_checks reject",
	  "Dec  2 08:44:03 mx postfix/cleanup[77]: 3F2A1C9D0D: reject: header Subject: buy now from mail.example.org[192.0.2.9]; from=<x@example.org> to=<sue@example.net> proto=ESMTP helo=<mail.example.org>: 5.7.1 no thanks",
	  RP_EV_REJECT, "postfix", "cleanup", "3F2A1C9D0D", "stage=header|dsn=5.7.1|reason=no thanks" },
	{ "sluiced size reject",
	  "Dec  2 08:44:03 mx sluiced[1043]: 4jfWWk10BkzNR: reject: END-OF-DATA from unknown[127.0.0.1]: 552 5.3.4 Message size exceeds fixed limit; from=<a@example.net> proto=ESMTP helo=<h>",
	  RP_EV_REJECT, "sluiced", "", "4jfWWk10BkzNR", "stage=END-OF-DATA|code=552|reason=Message size exceeds fixed limit" },
	{ "sluiced hold", "Dec  2 08:44:03 mx sluiced[1043]: 4jfWWk10BkzNR: hold: END-OF-MESSAGE from unknown[127.0.0.1]: <a@example.net>: message placed on hold",
	  RP_EV_REJECT, "sluiced", "", "4jfWWk10BkzNR", "reject=hold|stage=END-OF-MESSAGE|reason=<a@example.net>: message placed on hold" },
	{ "RFC 5424 with PRI and SD",
	  "<22>1 2026-12-02T08:44:02.1Z mx postfix/smtpd 99 - [meta sequenceId=\"1\"] 3F2A1C9D0B: client=mail.example.org[192.0.2.9]",
	  RP_EV_CLIENT, "postfix", "smtpd", "3F2A1C9D0B", "time=1796201042.100000|pid=99|host=mx" },
	{ "RFC 3164 with microseconds (Postfix maillog_file)",
	  "Dec  2 08:44:02.250000 mx postfix-test-2525/qmgr[79]: 3F2A1C9D0B: removed", RP_EV_REMOVED,
	  "postfix-test-2525", "qmgr", "3F2A1C9D0B", "" },
	{ "JSON log line", "{\"time\":\"2026-11-21T21:00:00.123Z\",\"host\":\"mx\",\"program\":\"sluiced\",\"pid\":123,\"queue_id\":\"5F2A1C9D0B\",\"message\":\"from=<a@example.com>, size=1234, nrcpt=1\",\"from\":\"<a@example.com>\",\"size\":\"1234\",\"nrcpt\":\"1\"}",
	  RP_EV_FROM, "sluiced", "", "5F2A1C9D0B", "sender=a@example.com|size=1234|time=1795294800.123000|pid=123" },
	{ "JSON without queue id", "{\"time\":\"2026-11-21T21:00:00Z\",\"host\":\"mx\",\"program\":\"sluice/smtpd\",\"pid\":1,\"message\":\"connect from unknown[192.0.2.1]\"}",
	  RP_EV_CONNECT, "sluice", "smtpd", NULL, "client_ip=192.0.2.1" },
	{ "sluice-dkim verify",
	  "Dec  2 08:44:03 mx sluice-dkim[59]: 4ABC123: milter=dkim action=accept dkim=pass, sig1=pass d=example.com s=sel a=rsa-sha256 bits=2048",
	  RP_EV_FILTER, "sluice-dkim", "", "4ABC123", "filter=dkim|result=pass|action=accept|domain=example.com|selector=sel|mta_milter=0" },
	{ "sluice-dkim fail",
	  "Dec  2 08:44:03 mx sluice-dkim[59]: 4ABC124: milter=dkim action=reject dkim=fail, sig1=fail d=example.com s=sel a=rsa-sha256 reason=\"body hash mismatch\"",
	  RP_EV_FILTER, "sluice-dkim", "", "4ABC124", "result=fail|action=reject|reason=body hash mismatch" },
	{ "sluice-dkim sign",
	  "Dec  2 08:44:03 mx sluice-dkim[59]: 4ABC125: milter=dkim action=accept sign=ok, d=example.net s=s1 a=ed25519-sha256",
	  RP_EV_FILTER, "sluice-dkim", "", "4ABC125", "result=signed|domain=example.net" },
	{ "sluiced milter action",
	  "Dec  2 08:44:03 mx sluiced[60]: 4ABC123: milter=dkim stage=eom action=reject reply=\"550 5.7.1 bad\"",
	  RP_EV_FILTER, "sluiced", "", "4ABC123", "filter=dkim|mta_milter=1|stage=eom|action=reject|reason=550 5.7.1 bad|result=" },
	/* lines of our own daemons from a run of tests/integration/test_report_filters.py */
	{ "real: sluice-dkim signed",
	  "Dec  2 09:04:54 vm sluice-dkim[13949]: 4jfWzp0GlQz5Lk: milter=dkim action=accept sign=ok, d=example.com s=sel a=rsa-sha256",
	  RP_EV_FILTER, "sluice-dkim", "", "4jfWzp0GlQz5Lk", "filter=dkim|result=signed|action=accept|domain=example.com|selector=sel" },
	{ "real: sluice-dkim fail",
	  "Dec  2 09:04:54 vm sluice-dkim[13949]: 4jfWzp0Q7Lz5Lj: milter=dkim action=accept dkim=fail, sig1=fail d=example.org s=s1 a=rsa-sha256 bits=2048 reason=\"body hash did not verify\"",
	  RP_EV_FILTER, "sluice-dkim", "", "4jfWzp0Q7Lz5Lj", "result=fail|domain=example.org|reason=body hash did not verify" },
	{ "real: sluice-dkim none", "Dec  2 09:04:54 vm sluice-dkim[13949]: 4jfWzp0S65z5Lk: milter=dkim action=accept dkim=none",
	  RP_EV_FILTER, "sluice-dkim", "", "4jfWzp0S65z5Lk", "result=none|domain=" },
	{ "real: sluiced milter named by its socket",
	  "Dec  2 09:04:54 vm sluiced[13961]: 4jfWzp0GlQz5Lk: milter=unix:/tmp/run/dkim.sock stage=end-of-message action=continue",
	  RP_EV_FILTER, "sluiced", "", "4jfWzp0GlQz5Lk", "filter=dkim|mta_milter=1|stage=end-of-message|action=continue" },
	{ "real: sluice-spf NOQUEUE",
	  "Dec  2 09:04:53 vm sluice-spf[13955]: NOQUEUE: spf: identity=alice@example.com, scope=mailfrom, client=[127.0.0.1], helo=client.test, from=<alice@example.com>, result=pass, mechanism=ip4:127.0.0.1, reason=\"example.com: matched ip4:127.0.0.1\", lookups=0, queries=2, time_ms=1, action=\"PREPEND Received-SPF: Pass (mx.test: domain of example.com designates 127.0.0.1 as permitted sender) client-ip=127.0.0.1; envelope-from=?alice@example.com?; helo=client.test; receiver=mx.test; mec...\"",
	  RP_EV_FILTER, "sluice-spf", "", "NOQUEUE", "filter=spf|result=pass|action=prepend|domain=example.com" },
	{ "real: sluiced SPF reject",
	  "Dec  2 09:04:54 vm sluiced[13960]: NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 550 5.7.23 <alice@example.com>: Recipient address rejected: Message rejected due to: 127.0.0.2 is not one of example.net's designated mail servers. Please see http://www.openspf.net/Why?s=mfrom;id=eve@example.net;ip=127.0.0.2;r=example.com; from=<eve@example.net> to=<alice@example.com> proto=ESMTP helo=<client.test>",
	  RP_EV_REJECT, "sluiced", "", "NOQUEUE", "stage=RCPT|code=550|dsn=5.7.23|sender=eve@example.net|recipient=alice@example.com|helo=client.test" },
	{ "real: sluice-dmarc reject (test_report_dmarc.py run)",
	  "Dec  2 09:39:51 vm sluice-dmarc[11300]: 4jfXm75Snvz4Ly: milter=dmarc action=reject dmarc=fail enforced=yes header_from=reject.example from_domains=1 policy_domain=reject.example org_domain=- discovery=treewalk p=reject sp=- np=- adkim=r aspf=r t=n psd=u pct=100 fo=- rua=mailto:agg@reject.example ruf=- policy_applied=p policy=reject disposition=reject override=none spf_aligned=fail dkim_aligned=fail dns_queries=1 reason=\"no aligned spf or dkim pass for reject.example; policy p=reject at reject.example\" source_ip=127.0.0.3 helo=client.test envelope_from=reject.example envelope_to=example.com spf=reject.example/mfrom/fail spf_source=self dkim=none dkim_source=self",
	  RP_EV_FILTER, "sluice-dmarc", "", "4jfXm75Snvz4Ly",
	  "filter=dmarc|result=fail|action=reject|domain=reject.example|disposition=reject|mta_milter=0|reason=no aligned spf or dkim pass for reject.example; policy p=reject at reject.example" },
	{ "real: sluiced DMARC milter-reject",
	  "Dec  2 09:39:51 vm sluiced[11372]: 4jfXm75Snvz4Ly: milter-reject: END-OF-MESSAGE from unknown[127.0.0.3]: 550 5.7.1 rejected by DMARC policy for reject.example; from=<a@reject.example> proto=ESMTP helo=<client.test>",
	  RP_EV_REJECT, "sluiced", "", "4jfXm75Snvz4Ly",
	  "reject=milter-reject|stage=END-OF-MESSAGE|code=550|dsn=5.7.1|reason=rejected by DMARC policy for reject.example|sender=a@reject.example" },
	{ "real: sluice-ratelimit over (test_report_ratelimit.py run)",
	  "Dec  2 09:41:56 vm sluice-ratelimit[15430]: NOQUEUE: ratelimit: state=RCPT, instance=3c4d.6b0fe7e4.9, client=[127.0.0.1], sasl_username=dave, from=<dave@example.com>, to=<alice@example.com>, rule=OUT, limit=rate, key=rate:2/3600s:sasl_username=dave, used=2, cost=1, max=2, window_s=3600, retry_s=1800, result=over, action=\"DEFER_IF_PERMIT 4.7.1 sending limit reached (limit OUT: 2 messages per 3600 s for sasl_username=dave; retry in 1800 s)\"",
	  RP_EV_FILTER, "sluice-ratelimit", "", "NOQUEUE", "filter=ratelimit|result=over|action=defer_if_permit|sender=dave@example.com" },
	{ "real: sluice-ratelimit under",
	  "Dec  2 09:41:56 vm sluice-ratelimit[15430]: NOQUEUE: ratelimit: state=RCPT, instance=3c4d.6b0fe7e4.5, client=[127.0.0.1], sasl_username=dave, from=<dave@example.com>, to=<alice@example.com>, OUT=1/2, result=under, action=\"DUNNO\"",
	  RP_EV_FILTER, "sluice-ratelimit", "", "NOQUEUE", "filter=ratelimit|result=under|action=dunno" },
	{ "real: sluice start line", "Dec  2 09:04:53 vm sluice[13948]: dkim ready on unix:/tmp/run/dkim.sock (pid 13949)",
	  RP_EV_OTHER, "sluice", "", NULL, "" },
	{ "sluice-spf",
	  "Dec  2 08:44:03 mx sluice-spf[58]: 4ABC123: spf: identity=joe@example.com, scope=mailfrom, client=[192.0.2.7], helo=client.example.org, from=<joe@example.com>, result=softfail, mechanism=~all, reason=\"example.com: matched ~all\", lookups=1, queries=2, time_ms=1, action=\"PREPEND Received-SPF: Softfail ...\"",
	  RP_EV_FILTER, "sluice-spf", "", "4ABC123",
	  "filter=spf|result=softfail|action=prepend|scope=mailfrom|domain=example.com|sender=joe@example.com|reason=example.com: matched ~all" },
	{ "generic filter line",
	  "Dec  2 08:44:03 mx sluice-spam[61]: 4ABC123: filter=spam result=spam action=reject score=12.5 reason=\"BAYES_99, URIBL_BLACK\"",
	  RP_EV_FILTER, "sluice-spam", "", "4ABC123", "filter=spam|result=spam|action=reject|score=12.5|reason=BAYES_99, URIBL_BLACK" },
	{ "generic dmarc line",
	  "Dec  2 08:44:03 mx sluice-dmarc[62]: 4ABC123: filter=dmarc result=fail header_from=example.org disposition=quarantine policy=quarantine",
	  RP_EV_FILTER, "sluice-dmarc", "", "4ABC123", "result=fail|domain=example.org|disposition=quarantine" },
	/* the shapes sluice-ratelimit, sluice-spam and sluice-dmarc print (their log code) */
	{ "sluice-ratelimit over",
	  "Dec  2 08:44:03 mx sluice-ratelimit[63]: NOQUEUE: ratelimit: state=RCPT, instance=1a2b.3, client=[192.0.2.7], sasl_username=joe, from=<joe@example.com>, to=<x@example.net>, rule=OUT-USER, limit=messages, key=joe, used=101, cost=1, max=100, window_s=3600, retry_s=120, result=over, action=\"DEFER_IF_PERMIT rate limit exceeded\"",
	  RP_EV_FILTER, "sluice-ratelimit", "", "NOQUEUE", "filter=ratelimit|result=over|action=defer_if_permit|sender=joe@example.com" },
	{ "sluice-ratelimit greylist",
	  "Dec  2 08:44:03 mx sluice-ratelimit[63]: NOQUEUE: ratelimit: state=RCPT, client=[192.0.2.8], from=<a@example.org>, to=<b@example.net>, rule=GREY, retry_s=300, result=greylisted, action=\"DEFER_IF_PERMIT Greylisted, try again later\"",
	  RP_EV_FILTER, "sluice-ratelimit", "", "NOQUEUE", "filter=ratelimit|result=greylisted|action=defer_if_permit" },
	{ "sluice-spam",
	  "Dec  2 08:44:03 mx sluice-spam[64]: 4ABC126: milter=spam action=reject score=12.30 required=5.00 size=1234 symbols=BAYES_99(3.50),URIBL_BLACK(1.70)",
	  RP_EV_FILTER, "sluice-spam", "", "4ABC126", "filter=spam|result=spam|action=reject|score=12.3|mta_milter=0" },
	{ "sluice-spam ham",
	  "Dec  2 08:44:03 mx sluice-spam[64]: 4ABC127: milter=spam action=accept score=-0.50 required=5.00 size=999 symbols=none",
	  RP_EV_FILTER, "sluice-spam", "", "4ABC127", "result=ham|score=-0.5" },
	{ "sluice-dmarc",
	  "Dec  2 08:44:03 mx sluice-dmarc[65]: 4ABC128: milter=dmarc action=reject dmarc=fail header_from=example.org from_domains=1 policy_domain=example.org org_domain=example.org discovery=tree p=reject sp=- np=- adkim=r aspf=r t=n psd=u pct=100 fo=0 rua=- ruf=- policy_applied=yes policy=reject disposition=reject override=none spf_aligned=fail dkim_aligned=fail dns_queries=2 reason=\"no aligned identifier\"",
	  RP_EV_FILTER, "sluice-dmarc", "", "4ABC128", "filter=dmarc|result=fail|action=reject|domain=example.org|disposition=reject|reason=no aligned identifier" },
	{ "a daemon line with a colon word is not a verdict",
	  "Dec  2 08:44:03 mx sluice-ratelimit[63]: ratelimit: listening on inet:127.0.0.1:10046, backend=lmdb",
	  RP_EV_OTHER, "sluice-ratelimit", "", NULL, "" },
	/* real: Postfix 3.7.11 through postlogd (day zero-padded), an instance's syslog_name */
	{ "real: postfix client", "Dec 02 13:00:43 mx postfix-test-55545/smtpd[4712]: 692EBA7A059: client=unknown[127.0.0.1]",
	  RP_EV_CLIENT, "postfix-test-55545", "smtpd", "692EBA7A059", "client_name=unknown|client_ip=127.0.0.1" },
	{ "real: postfix reject with queue id",
	  "Dec 02 13:00:43 mx postfix-test-55545/smtpd[4712]: 6ABEFA7A05B: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table; from=<ann@example.net> to=<nobody@example.com> proto=ESMTP helo=<[127.0.0.1]>",
	  RP_EV_REJECT, "postfix-test-55545", "smtpd", "6ABEFA7A05B",
	  "stage=RCPT|code=550|dsn=5.1.1|sender=ann@example.net|recipient=nobody@example.com" },
	{ "real: postfix bounced",
	  "Dec 02 13:00:43 mx postfix-test-55545/smtp[4722]: 70500A7A059: to=<x@bounce.test>, relay=127.0.0.1[127.0.0.1]:41225, delay=0.03, delays=0.01/0.02/0/0.01, dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command))",
	  RP_EV_DELIVERY, "postfix-test-55545", "smtp", "70500A7A059",
	  "recipient=x@bounce.test|dsn=5.3.0|status=bounced|delay=0.03|status_text=host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)" },
	/* real: OpenDKIM 2.11, OpenDMARC 1.4.2, policyd-spf 2.0 through syslog in
	   tests/integration/test_report_thirdparty.py (tests/data/report/thirdparty.log) */
	{ "real: opendkim signed", "Dec  2 13:00:18 mx opendkim[3385]: 4ASIGN0001: DKIM-Signature field added (s=sel, d=example.com)",
	  RP_EV_FILTER, "opendkim", "", "4ASIGN0001", "filter=dkim|result=signed|action=accept|selector=sel|domain=example.com" },
	{ "real: opendkim pass", "Dec  2 13:00:18 mx opendkim[3385]: 4AVRFY0002: DKIM verification successful",
	  RP_EV_FILTER, "opendkim", "", "4AVRFY0002", "filter=dkim|result=pass" },
	{ "real: opendkim SSL line", "Dec  2 13:00:18 mx opendkim[3385]: 4AVRFY0003: s=sel d=example.com a=rsa-sha256 SSL ",
	  RP_EV_FILTER, "opendkim", "", "4AVRFY0003", "result=|selector=sel|domain=example.com" },
	{ "real: opendkim bad signature", "Dec  2 13:00:18 mx opendkim[3385]: 4AVRFY0003: bad signature data",
	  RP_EV_FILTER, "opendkim", "", "4AVRFY0003", "filter=dkim|result=fail" },
	{ "real: opendkim unsigned", "Dec  2 13:00:18 mx opendkim[3385]: 4AVRFY0004: no signature data",
	  RP_EV_FILTER, "opendkim", "", "4AVRFY0004", "filter=dkim|result=none" },
	{ "real: opendkim not a verdict", "Dec  2 13:00:18 mx opendkim[3385]: 4AVRFY0004: external host client.test attempted to send as example.com",
	  RP_EV_OTHER, "opendkim", "", "4AVRFY0004", "" },
	{ "real: opendmarc pass", "Dec  2 13:00:18 mx opendmarc[3388]: 4ADMRC0005: example.org pass",
	  RP_EV_FILTER, "opendmarc", "", "4ADMRC0005", "filter=dmarc|result=pass|domain=example.org" },
	{ "real: opendmarc without macro i", "Dec  2 12:59:25 mx opendmarc[1083]: (unknown-jobid): reject.example fail",
	  RP_EV_FILTER, "opendmarc", "", NULL, "filter=dmarc|result=fail|domain=reject.example" },
	{ "real: opendmarc warning", "Dec  2 12:59:25 mx opendmarc[1083]: WARNING: symbol 'i' not available",
	  RP_EV_OTHER, "opendmarc", "", NULL, "" },
	{ "real: policyd-spf prepend (empty queue_id)",
	  "Dec  2 13:00:17 mx policyd-spf[3380]: : prepend Received-SPF: Softfail (mailfrom) identity=mailfrom; client-ip=198.51.100.9; helo=client.test; envelope-from=ann@soft.example; receiver=example.com ",
	  RP_EV_FILTER, "policyd-spf", "", NULL, "filter=spf|result=softfail|action=prepend|scope=mailfrom|domain=soft.example" },
	{ "real: policyd-spf reject (empty queue_id)",
	  "Dec  2 13:00:17 mx policyd-spf[3379]: : 550 5.7.23 Message rejected due to: SPF fail - not authorized. Please see http://www.openspf.net/Why?s=mfrom;id=mallory@example.org;ip=198.51.100.9;r=example.com",
	  RP_EV_FILTER, "policyd-spf", "", NULL, "filter=spf|result=fail|action=reject" },
	{ "opendkim signed", "Dec  2 08:44:03 mx opendkim[55]: 3F2A1C9D0B: DKIM-Signature field added (s=sel1, d=example.net)",
	  RP_EV_FILTER, "opendkim", "", "3F2A1C9D0B", "filter=dkim|result=signed|selector=sel1|domain=example.net" },
	{ "opendkim pass", "Dec  2 08:44:03 mx opendkim[55]: 3F2A1C9D0B: DKIM verification successful",
	  RP_EV_FILTER, "opendkim", "", "3F2A1C9D0B", "result=pass" },
	{ "opendkim SSL detail", "Dec  2 08:44:03 mx opendkim[55]: 3F2A1C9D0C: s=sel1 d=example.org a=rsa-sha256 SSL error:02000068:rsa routines::bad signature",
	  RP_EV_FILTER, "opendkim", "", "3F2A1C9D0C", "result=|domain=example.org|selector=sel1" },
	{ "opendkim bad sig", "Dec  2 08:44:03 mx opendkim[55]: 3F2A1C9D0C: bad signature data",
	  RP_EV_FILTER, "opendkim", "", "3F2A1C9D0C", "result=fail" },
	{ "opendkim other", "Dec  2 08:44:03 mx opendkim[55]: 3F2A1C9D0C: no signing table match for 'x@example.org'",
	  RP_EV_OTHER, "opendkim", "", "3F2A1C9D0C", "" },
	{ "opendmarc", "Dec  2 08:44:03 mx opendmarc[56]: 3F2A1C9D0C: example.org fail", RP_EV_FILTER,
	  "opendmarc", "", "3F2A1C9D0C", "filter=dmarc|result=fail|domain=example.org" },
	{ "opendmarc SPF line is not DMARC", "Dec  2 08:44:03 mx opendmarc[56]: 3F2A1C9D0C: SPF(mailfrom): example.org pass",
	  RP_EV_OTHER, "opendmarc", "", "3F2A1C9D0C", "" },
	{ "policyd-spf prepend",
	  "Dec  2 08:44:03 mx policyd-spf[57]: 3F2A1C9D0C: prepend Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.9; helo=mail.example.org; envelope-from=<x@example.org>; receiver=<UNKNOWN>",
	  RP_EV_FILTER, "policyd-spf", "", "3F2A1C9D0C", "filter=spf|result=pass|action=prepend|scope=mailfrom|domain=example.org" },
	{ "policyd-spf bare header",
	  "Dec  2 08:44:03 mx policyd-spf[57]: Received-SPF: None (mailfrom) identity=helo; client-ip=192.0.2.9; helo=mail.example.org; envelope-from=<>; receiver=<UNKNOWN>",
	  RP_EV_FILTER, "policyd-spf", "", NULL, "result=none|scope=helo|domain=mail.example.org" },
	{ "policyd-spf reject",
	  "Dec  2 08:44:03 mx policyd-spf[57]: 550 5.7.23 Message rejected due to: SPF fail - not authorized. Please see http://www.open-spf.org/Why;id=x@example.org;ip=192.0.2.8;r=<UNKNOWN>",
	  RP_EV_FILTER, "policyd-spf", "", NULL, "result=fail|action=reject" },
	{ "warning is no queue id", "Dec  2 08:44:03 mx postfix/smtpd[77]: warning: hostname h.example does not resolve to address 192.0.2.5",
	  RP_EV_OTHER, "postfix", "smtpd", NULL, "" },
	{ "disconnect", "Dec  2 08:44:03 mx sluiced[1043]: disconnect from unknown[127.0.0.1] ehlo=1 mail=3 rcpt=3/4 data=2 quit=1 commands=10/11",
	  RP_EV_DISCONNECT, "sluiced", "", NULL, "client_ip=127.0.0.1" },
	{ "not a log line", "hello world", RP_EV_NONE, NULL, "", NULL, "" },
	{ "bad month", "Dez  2 08:44:03 mx postfix/smtpd[77]: connect from x[192.0.2.1]", RP_EV_NONE, NULL, "", NULL, "" },
	{ "no tag", "Dec  2 08:44:03 mx", RP_EV_NONE, NULL, "", NULL, "" },
	{ "broken JSON", "{\"time\":", RP_EV_NONE, NULL, "", NULL, "" },
	{ "JSON without message", "{\"program\":\"sluiced\"}", RP_EV_NONE, NULL, "", NULL, "" },
	{ "CRLF ending", "Dec  2 08:44:02 mx postfix/qmgr[79]: 3F2A1C9D0B: removed\r", RP_EV_REMOVED, "postfix",
	  "qmgr", "3F2A1C9D0B", "" },
};

static const char *field(const struct rp_event *ev, const char *name, char *buf, size_t n)
{
#define S(f) if (!strcmp(name, #f)) return ev->f;
	S(client_name) S(client_ip) S(sasl_username) S(sender) S(recipient) S(orig_to) S(relay)
	S(dsn) S(status_text) S(message_id) S(stage) S(reason) S(helo) S(proto) S(filter)
	S(result) S(action) S(domain) S(selector) S(scope) S(disposition) S(host)
#undef S
	if (!strcmp(name, "size"))
		return snprintf(buf, n, "%lld", ev->size_bytes), buf;
	if (!strcmp(name, "nrcpt"))
		return snprintf(buf, n, "%ld", ev->nrcpt), buf;
	if (!strcmp(name, "pid"))
		return snprintf(buf, n, "%ld", ev->pid), buf;
	if (!strcmp(name, "delay"))
		return snprintf(buf, n, "%g", ev->delay_s), buf;
	if (!strcmp(name, "time"))
		return snprintf(buf, n, "%.6f", ev->time), buf;
	if (!strcmp(name, "code"))
		return ev->code < 0 ? NULL : (snprintf(buf, n, "%d", ev->code), buf);
	if (!strcmp(name, "score"))
		return ev->has_score ? (snprintf(buf, n, "%g", ev->score), buf) : NULL;
	if (!strcmp(name, "mta_milter"))
		return snprintf(buf, n, "%d", ev->mta_milter), buf;
	if (!strcmp(name, "status")) {
		static const char *const st[] = { "", "sent", "deferred", "bounced", "other" };
		return st[ev->status];
	}
	if (!strcmp(name, "reject")) {
		static const char *const rj[] = { "reject", "milter-reject", "reject_warning", "hold",
						  "discard" };
		return rj[ev->reject];
	}
	fail_msg("unknown field %s", name);
	return NULL;
}

static void check_case(struct rp_parser *p, const struct pcase *c)
{
	struct rp_event ev;
	enum rp_kind k = rp_parse_line(p, c->line, strlen(c->line), &ev);
	if (k != c->kind)
		fail_msg("%s: kind %s, want %s", c->name, rp_kind_name(k), rp_kind_name(c->kind));
	if (k == RP_EV_NONE)
		return;
	if (c->prog && strcmp(ev.syslog_name, c->prog))
		fail_msg("%s: program %s", c->name, ev.syslog_name);
	if (strcmp(ev.service, c->service))
		fail_msg("%s: service %s", c->name, ev.service);
	if ((c->qid == NULL) != (ev.qid == NULL) || (c->qid && strcmp(c->qid, ev.qid)))
		fail_msg("%s: qid %s", c->name, ev.qid ? ev.qid : "(null)");
	char checks[1024];
	snprintf(checks, sizeof checks, "%s", c->checks);
	for (char *save, *tok = strtok_r(checks, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
		char *eq = strchr(tok, '=');
		*eq = 0;
		char buf[64];
		const char *got = field(&ev, tok, buf, sizeof buf);
		const char *want = eq + 1;
		/* "field=" means absent or empty (the null sender is "") */
		if (*want ? (!got || strcmp(got, want)) : (got && *got))
			fail_msg("%s: %s = \"%s\", want \"%s\"", c->name, tok, got ? got : "(null)", want);
	}
}

static void test_lines(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	struct rp_parser *p = rp_parser_new(2026, 11);
	for (size_t i = 0; i < sizeof pcases / sizeof pcases[0]; i++)
		check_case(p, &pcases[i]);
	rp_parser_free(&p);
	assert_null(p);
}

/*
 * issue 13's common keys (filter, client_ip, sender, recipient,
 * sasl_username, result, action, reason/reason_code, ms) at the end of each
 * filter's decision line: the line parses to the same event as the older
 * form; the new form may only add what the old one lacked (client_ip,
 * sender of the milters, a reason code where the line had no reason).
 */
static void test_schema_keys(void **state)
{
	(void)state;
	static const struct { const char *old, *new; } pairs[] = {
		{ "Dec  2 09:04:54 vm sluice-dkim[13949]: 4jfWzp0Q7Lz5Lj: milter=dkim action=accept dkim=fail, sig1=fail d=example.org s=s1 a=rsa-sha256 bits=2048 reason=\"body hash did not verify\"",
		  "Dec  2 09:04:54 vm sluice-dkim[13949]: 4jfWzp0Q7Lz5Lj: milter=dkim action=accept dkim=fail, sig1=fail d=example.org s=s1 a=rsa-sha256 bits=2048 reason=\"body hash did not verify\" filter=dkim client_ip=127.0.0.1 sender=a@example.org result=fail reason_code=dkim_fail ms=3" },
		{ "Dec  2 09:04:54 vm sluice-dkim[13949]: 4jfWzp0GlQz5Lk: milter=dkim action=accept sign=ok, d=example.com s=sel a=rsa-sha256",
		  "Dec  2 09:04:54 vm sluice-dkim[13949]: 4jfWzp0GlQz5Lk: milter=dkim action=accept sign=ok, d=example.com s=sel a=rsa-sha256 filter=dkim client_ip=127.0.0.1 sender=\"\" sasl_username=dave result=signed reason=dkim_signed ms=0" },
		{ "Dec  2 09:04:54 vm sluiced[13961]: 4jfWzp0GlQz5Lk: milter=unix:/tmp/run/dkim.sock stage=end-of-message action=continue",
		  "Dec  2 09:04:54 vm sluiced[13961]: 4jfWzp0GlQz5Lk: milter=unix:/tmp/run/dkim.sock stage=end-of-message action=continue filter=dkim" },
		{ "Dec  2 08:44:03 mx sluiced[60]: 4ABC123: milter=dkim stage=eom action=reject reply=\"550 5.7.1 bad\"",
		  "Dec  2 08:44:03 mx sluiced[60]: 4ABC123: milter=dkim stage=eom action=reject reply=\"550 5.7.1 bad\" filter=dkim" },
		{ "Dec  2 09:04:53 vm sluice-spf[13955]: NOQUEUE: spf: identity=alice@example.com, scope=mailfrom, client=[127.0.0.1], helo=client.test, from=<alice@example.com>, result=pass, mechanism=ip4:127.0.0.1, reason=\"example.com: matched ip4:127.0.0.1\", lookups=0, queries=2, time_ms=1, action=\"PREPEND Received-SPF: Pass\", instance=-",
		  "Dec  2 09:04:53 vm sluice-spf[13955]: NOQUEUE: spf: identity=alice@example.com, scope=mailfrom, client=[127.0.0.1], helo=client.test, from=<alice@example.com>, result=pass, mechanism=ip4:127.0.0.1, reason=\"example.com: matched ip4:127.0.0.1\", lookups=0, queries=2, time_ms=1, action=\"PREPEND Received-SPF: Pass\", instance=-, filter=spf, client_ip=127.0.0.1, sender=alice@example.com, recipient=bob@example.com, reason_code=spf_pass, ms=1" },
		{ "Dec  2 09:41:56 vm sluice-ratelimit[15430]: NOQUEUE: ratelimit: state=RCPT, instance=3c4d.6b0fe7e4.9, client=[127.0.0.1], sasl_username=dave, from=<dave@example.com>, to=<alice@example.com>, rule=OUT, limit=rate, key=rate:2/3600s:sasl_username=dave, used=2, cost=1, max=2, window_s=3600, retry_s=1800, result=over, action=\"DEFER_IF_PERMIT 4.7.1 sending limit reached\"",
		  "Dec  2 09:41:56 vm sluice-ratelimit[15430]: NOQUEUE: ratelimit: state=RCPT, instance=3c4d.6b0fe7e4.9, client=[127.0.0.1], sasl_username=dave, from=<dave@example.com>, to=<alice@example.com>, rule=OUT, limit=rate, key=rate:2/3600s:sasl_username=dave, used=2, cost=1, max=2, window_s=3600, retry_s=1800, result=over, action=\"DEFER_IF_PERMIT 4.7.1 sending limit reached\", filter=ratelimit, client_ip=127.0.0.1, sender=dave@example.com, recipient=alice@example.com, reason=ratelimit_over, ms=2" },
		{ "Dec  2 09:39:51 vm sluice-dmarc[11300]: 4jfXm75Snvz4Ly: milter=dmarc action=reject dmarc=fail enforced=yes header_from=reject.example from_domains=1 policy_domain=reject.example org_domain=- discovery=treewalk p=reject policy=reject disposition=reject reason=\"no aligned spf or dkim pass\" client_ip=127.0.0.3 helo=client.test envelope_from=reject.example",
		  "Dec  2 09:39:51 vm sluice-dmarc[11300]: 4jfXm75Snvz4Ly: milter=dmarc action=reject dmarc=fail enforced=yes header_from=reject.example from_domains=1 policy_domain=reject.example org_domain=- discovery=treewalk p=reject policy=reject disposition=reject reason=\"no aligned spf or dkim pass\" client_ip=127.0.0.3 helo=client.test envelope_from=reject.example filter=dmarc sender=a@reject.example result=fail reason_code=dmarc_policy ms=12" },
		{ "Dec  2 09:39:51 vm sluice-spam[11301]: 4jfXm75Snvz4Lz: milter=spam action=reject score=15.50 required=6.00 size=49 symbols=T_FIVE(5.00),T_TEN(10.00)",
		  "Dec  2 09:39:51 vm sluice-spam[11301]: 4jfXm75Snvz4Lz: milter=spam action=reject score=15.50 required=6.00 size=49 symbols=T_FIVE(5.00),T_TEN(10.00) filter=spam client_ip=127.0.0.1 sender=a@example.org result=spam reason=spam_score ms=4" },
	};
	static const char *const same[] = { "filter", "result", "action", "domain", "selector", "scope",
					     "disposition", "stage", "sender", "recipient", "score",
					     "mta_milter", "client_ip", "reason" };
	struct rp_parser *p = rp_parser_new(2026, 11);
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		struct rp_event a, b;
		enum rp_kind ka = rp_parse_line(p, pairs[i].old, strlen(pairs[i].old), &a);
		/* the parser's strings live until the next line: keep the old event's */
		char *va[sizeof same / sizeof same[0]];
		char buf[64];
		for (size_t k = 0; k < sizeof same / sizeof same[0]; k++) {
			const char *v = field(&a, same[k], buf, sizeof buf);
			va[k] = v ? strdup(v) : NULL;
		}
		char *qa = a.qid ? strdup(a.qid) : NULL;
		enum rp_kind kb = rp_parse_line(p, pairs[i].new, strlen(pairs[i].new), &b);
		assert_int_equal(ka, RP_EV_FILTER);
		assert_int_equal(kb, ka);
		assert_string_equal(b.qid, qa);
		for (size_t k = 0; k < sizeof same / sizeof same[0]; k++) {
			const char *vb = field(&b, same[k], buf, sizeof buf);
			if (va[k] && *va[k] && (!vb || strcmp(va[k], vb)))
				fail_msg("pair %zu: %s = \"%s\", old form \"%s\"", i, same[k], vb ? vb : "(null)", va[k]);
			if ((!va[k] || !*va[k]) && vb && *vb && strcmp(same[k], "client_ip") &&
			    strcmp(same[k], "reason") && strcmp(same[k], "sender"))
				fail_msg("pair %zu: %s = \"%s\" only in the new form", i, same[k], vb);
			free(va[k]);
		}
		free(qa);
		/* what a filter's new form adds (sluiced's milter line adds filter= only) */
		if (!b.mta_milter) {
			assert_non_null(b.client_ip);
			assert_non_null(b.reason);
		}
	}
	rp_parser_free(&p);
}

/* every prefix of every case, and bytes 0x00-0xff in place of each byte, parse without harm */
static void test_prefixes_and_bytes(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct rp_event ev;
	for (size_t i = 0; i < sizeof pcases / sizeof pcases[0]; i++) {
		const char *l = pcases[i].line;
		size_t n = strlen(l);
		for (size_t k = 0; k <= n; k++)
			rp_parse_line(p, l, k, &ev);
		char *m = strdup(l);
		for (size_t k = 0; k < n; k += 7) {
			for (int b = 0; b < 256; b += 17) {
				m[k] = (char)b;
				rp_parse_line(p, m, n, &ev);
			}
			m[k] = l[k];
		}
		free(m);
	}
	rp_parser_free(&p);
}

static void test_year_hint(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	struct rp_parser *p = rp_parser_new(2027, 0);	/* January 2027: December is last year */
	struct rp_event ev;
	rp_parse_line(p, pcases[0].line, strlen(pcases[0].line), &ev);
	assert_true(ev.time >= 1796169600.0 && ev.time < 1796256000.0);	/* 2026-12-02 UTC */
	rp_parser_free(&p);
	double t;
	assert_int_equal(rp_time_parse("2026-12-02T00:00:00Z", &t), 0);
	assert_true(t == 1796169600.0);
	assert_int_equal(rp_time_parse("2026-12-02", &t), 0);
	assert_true(t == 1796169600.0);
	assert_int_equal(rp_time_parse("2026-12-02T01:00+01:00", &t), 0);
	assert_true(t == 1796169600.0);
	assert_int_equal(rp_time_parse("@1796169600", &t), 0);
	assert_int_equal(rp_time_parse("yesterday", &t), -1);
	assert_int_equal(rp_time_parse("2026-13-01", &t), -1);
}

static void test_long_line_cut(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	size_t n = RP_MAX_LINE_BYTES * 3;
	char *l = malloc(n + 1);
	const char *head = "Dec  2 08:44:02 mx postfix/cleanup[78]: 3F2A1C9D0B: message-id=<";
	memset(l, 'a', n);
	memcpy(l, head, strlen(head));
	l[n] = 0;
	struct rp_event ev;
	assert_int_equal(rp_parse_line(p, l, n, &ev), RP_EV_MESSAGE_ID);
	assert_true(strlen(ev.message_id) < RP_MAX_LINE_BYTES);
	free(l);
	rp_parser_free(&p);
}

/* ---- report_input: plain, gzip, no final newline, long lines ---- */

static char *tmpfile_path(const char *suffix)
{
	char *path = malloc(256);
	snprintf(path, 256, "/tmp/test_report.%d.%s", (int)getpid(), suffix);
	return path;
}

static void read_all(const char *path, int *lines_out, size_t *maxlen_out, long long *cut_out)
{
	const char *err;
	struct report_input *in = ri_open(path, &err);
	assert_non_null(in);
	const char *l;
	size_t n;
	int k = 0;
	*maxlen_out = 0;
	while (ri_next(in, &l, &n, &err) == 1) {
		k++;
		assert_null(memchr(l, '\n', n));
		if (n > *maxlen_out)
			*maxlen_out = n;
	}
	*lines_out = k;
	*cut_out = ri_cut_lines(in);
	ri_close(&in);
	assert_null(in);
}

static void test_input(void **state)
{
	(void)state;
	char *plain = tmpfile_path("log"), *gz = tmpfile_path("log.gz");
	/* 1000 short lines, one of 20 000 and one of 100 000 bytes, a last line without '\n' */
	FILE *f = fopen(plain, "w");
	gzFile g = gzopen(gz, "wb");
	for (int i = 0; i < 1000; i++) {
		fprintf(f, "line %d\n", i);
		gzprintf(g, "line %d\n", i);
	}
	for (int i = 0; i < 20000; i++) {	/* too long, but inside one read buffer */
		fputc('y', f);
		gzputc(g, 'y');
	}
	fputc('\n', f);
	gzputc(g, '\n');
	for (int i = 0; i < 100000; i++) {	/* longer than the read buffer */
		fputc('x', f);
		gzputc(g, 'x');
	}
	fputs("\nlast", f);
	gzputs(g, "\nlast");
	fclose(f);
	gzclose(g);
	int lines;
	size_t maxlen;
	long long cut;
	read_all(plain, &lines, &maxlen, &cut);
	assert_int_equal(lines, 1003);
	assert_int_equal(maxlen, RP_MAX_LINE_BYTES);
	assert_int_equal(cut, 2);
	read_all(gz, &lines, &maxlen, &cut);
	assert_int_equal(lines, 1003);
	assert_int_equal(cut, 2);
	/* two gzip members back to back (rotated files concatenated) read as one stream */
	g = gzopen(gz, "wb");
	gzputs(g, "first member\n");
	gzclose(g);
	g = gzopen(gz, "ab");
	gzputs(g, "second member\n");
	gzclose(g);
	read_all(gz, &lines, &maxlen, &cut);
	assert_int_equal(lines, 2);
	const char *err = NULL;
	assert_null(ri_open("/nonexistent/x.log", &err));
	assert_non_null(err);
	unlink(plain);
	unlink(gz);
	free(plain);
	free(gz);
}

/* ri_chunk gives the same lines as ri_next (cut the same way), whatever the chunk size */
static void chunk_lines_vs_next(const char *path, size_t cap)
{
	const char *err;
	struct report_input *a = ri_open(path, &err), *b = ri_open(path, &err);
	assert_non_null(a);
	assert_non_null(b);
	char *buf = malloc(cap);
	long n;
	int lines = 0;
	long long cut = 0;
	while ((n = ri_chunk(b, buf, cap, &err)) > 0) {
		assert_true((size_t)n <= cap);
		const char *l = buf, *end = buf + n;
		while (l < end) {
			const char *nl = memchr(l, '\n', (size_t)(end - l));
			size_t len = (size_t)((nl ? nl : end) - l);
			if (len > RP_MAX_LINE_BYTES) {
				cut++;
				len = RP_MAX_LINE_BYTES;
			}
			const char *want;
			size_t wlen;
			assert_int_equal(ri_next(a, &want, &wlen, &err), 1);
			assert_int_equal(len, wlen);
			assert_memory_equal(l, want, len);
			lines++;
			l = (nl ? nl + 1 : end);
			if (!nl)
				break;
		}
	}
	assert_int_equal(n, 0);
	const char *want;
	size_t wlen;
	assert_int_equal(ri_next(a, &want, &wlen, &err), 0);	/* nothing left over */
	assert_int_equal(cut, ri_cut_lines(a));
	assert_true(lines > 1000);
	free(buf);
	ri_close(&a);
	ri_close(&b);
}

static void test_input_chunks(void **state)
{
	(void)state;
	char *plain = tmpfile_path("chunk.log"), *gz = tmpfile_path("chunk.log.gz");
	FILE *f = fopen(plain, "w");
	gzFile g = gzopen(gz, "wb");
	for (int i = 0; i < 3000; i++) {
		/* short lines, a line longer than RP_MAX_LINE_BYTES, a line longer
		   than the smallest chunk, empty lines, a CR */
		int len = i == 700 ? RP_MAX_LINE_BYTES + 10 : i == 1500 ? 3 * RP_MAX_LINE_BYTES : i % 97 == 0 ? 0 : 20 + i % 50;
		for (int k = 0; k < len; k++) {
			char c = (char)('a' + (i + k) % 26);
			fputc(c, f);
			gzputc(g, c);
		}
		if (i % 13 == 0) {
			fputc('\r', f);
			gzputc(g, '\r');
		}
		if (i < 2999) {		/* the last line has no '\n' */
			fputc('\n', f);
			gzputc(g, '\n');
		}
	}
	fclose(f);
	gzclose(g);
	size_t caps[] = { RP_MAX_LINE_BYTES + 1, RP_MAX_LINE_BYTES + 4093, 65536, RR_CHUNK_BYTES };
	for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
		chunk_lines_vs_next(plain, caps[i]);
		chunk_lines_vs_next(gz, caps[i]);
	}
	unlink(plain);
	unlink(gz);
	free(plain);
	free(gz);
}

/* rp_parser_arena / rp_parser_keep: the strings of every kept line stay
   as they were while later lines are parsed (into the same buffer and into
   the next ones), strings are copies (none points into the line), and
   bytes kept after a line's strings stay too */
static void test_parser_arena(void **state)
{
	(void)state;
	struct rp_parser *p = rp_parser_new(2026, 11);
	enum { NB = 64, ROUNDS = 40 };
	size_t cap = RP_ARENA_MIN * 2;
	char *bufs[NB] = { 0 };
	bufs[0] = malloc(cap);
	int cur = 0;
	rp_parser_arena(p, bufs[0], cap);
	size_t nw = sizeof pcases / sizeof pcases[0] * ROUNDS;
	struct rp_event *kept = calloc(nw, sizeof *kept);
	char **want = calloc(nw * (RP_EVENT_HEAD / sizeof(char *)), sizeof *want);
	const char **mine = calloc(nw, sizeof *mine);
	size_t k = 0;
	for (int r = 0; r < ROUNDS; r++) {
		for (size_t c = 0; c < sizeof pcases / sizeof pcases[0]; c++, k++) {
			size_t n = strlen(pcases[c].line);
			char *line = malloc(n);	/* no NUL: parsers must not read past n */
			memcpy(line, pcases[c].line, n);
			rp_parse_line(p, line, n, &kept[k]);
			for (size_t off = 0; off + sizeof(char *) <= RP_EVENT_HEAD; off += sizeof(char *)) {
				const char *q;
				memcpy(&q, (char *)&kept[k] + off, sizeof q);
				assert_false(q >= line && q < line + n);	/* copies */
				if (q >= bufs[cur] && q < bufs[cur] + cap && off != offsetof(struct rp_event, msg))
					want[k * (RP_EVENT_HEAD / sizeof(char *)) + off / sizeof(char *)] = strdup(q);
			}
			memset(line, 'Z', n);
			free(line);
			size_t room;
			char *t = rp_parser_tail(p, &room);
			assert_true(room >= 32);
			snprintf(t, 32, "mine%zu", k);
			mine[k] = t;
			rp_parser_keep(p, strlen(t) + 1);
			if (rp_parser_room(p) < RP_ARENA_MIN) {
				assert_true(cur + 1 < NB);
				bufs[++cur] = malloc(cap);
				rp_parser_arena(p, bufs[cur], cap);
			}
		}
	}
	assert_true(cur >= 1);	/* the lines did fill one buffer */
	for (size_t i = 0; i < k; i++) {
		for (size_t off = 0; off + sizeof(char *) <= RP_EVENT_HEAD; off += sizeof(char *)) {
			char *w = want[i * (RP_EVENT_HEAD / sizeof(char *)) + off / sizeof(char *)];
			if (!w)
				continue;
			const char *q;
			memcpy(&q, (char *)&kept[i] + off, sizeof q);
			assert_string_equal(q, w);
			free(w);
		}
		char m[32];
		snprintf(m, sizeof m, "mine%zu", i);
		assert_string_equal(mine[i], m);
	}
	/* back to its own arena: still parses, and keeping is a no-op there */
	rp_parser_arena(p, NULL, 0);
	struct rp_event ev;
	assert_int_equal(rp_parse_line(p, pcases[0].line, strlen(pcases[0].line), &ev), pcases[0].kind);
	rp_parser_keep(p, 10);
	assert_int_equal(rp_parser_room(p), RP_ARENA_MIN);
	for (int i = 0; i < NB; i++)
		free(bufs[i]);
	free(kept);
	free(want);
	free(mine);
	rp_parser_free(&p);
}

/* ---- report_stats ---- */

static json_t *run(const char *const *lines, size_t n, const struct rs_opts *o, struct report_stats **keep)
{
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct report_stats *st = rs_new(o);
	struct rp_event ev;
	for (size_t i = 0; i < n; i++) {
		rp_parse_line(p, lines[i], strlen(lines[i]), &ev);
		rs_add(st, &ev);
	}
	json_t *doc = rs_json(st);
	if (keep)
		*keep = st;
	else
		rs_free(&st);
	rp_parser_free(&p);
	return doc;
}

static long long jint(json_t *doc, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", path);
	json_t *v = doc;
	for (char *save, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
		if (json_is_array(v))
			v = json_array_get(v, strtoul(t, NULL, 10));
		else
			v = json_object_get(v, t);
	}
	if (!json_is_integer(v))
		fail_msg("%s is not an integer", path);
	return json_integer_value(v);
}

static const char *jstr(json_t *doc, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", path);
	json_t *v = doc;
	for (char *save, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save))
		v = json_is_array(v) ? json_array_get(v, strtoul(t, NULL, 10)) : json_object_get(v, t);
	return json_string_value(v);
}

static const char *const flow[] = {
	/* A: received over SMTP, two recipients delivered, one deferred then delivered */
	"Dec  2 08:00:00 mx postfix/smtpd[1]: connect from mail.example.org[192.0.2.9]",
	"Dec  2 08:00:01 mx postfix/smtpd[1]: 1A2B3C4D5E: client=mail.example.org[192.0.2.9]",
	"Dec  2 08:00:01 mx postfix/cleanup[2]: 1A2B3C4D5E: message-id=<a@example.org>",
	"Dec  2 08:00:01 mx postfix/qmgr[3]: 1A2B3C4D5E: from=<Joe@Example.ORG>, size=1000, nrcpt=3 (queue active)",
	"Dec  2 08:00:02 mx postfix/virtual[4]: 1A2B3C4D5E: to=<sue@example.net>, relay=virtual, delay=1, delays=0.5/0/0/0.5, dsn=2.0.0, status=sent (delivered to maildir)",
	"Dec  2 08:00:02 mx postfix/virtual[4]: 1A2B3C4D5E: to=<bob@Example.NET>, relay=virtual, delay=3, delays=0.5/0/0/2.5, dsn=2.0.0, status=sent (delivered to maildir)",
	"Dec  2 08:00:03 mx postfix/smtp[5]: 1A2B3C4D5E: to=<x@example.com>, relay=none, delay=2, delays=1/0/1/0, dsn=4.4.1, status=deferred (connect to mx.example.com[192.0.2.20]:25: Connection refused)",
	"Dec  2 08:10:03 mx postfix/qmgr[3]: 1A2B3C4D5E: from=<Joe@Example.ORG>, size=1000, nrcpt=3 (queue active)",
	"Dec  2 08:10:04 mx postfix/smtp[5]: 1A2B3C4D5E: to=<x@example.com>, relay=none, delay=603, delays=1/600/2/0, dsn=4.4.1, status=deferred (connect to mx.example.com[192.0.2.20]:25: Connection refused)",
	"Dec  2 09:10:04 mx postfix/smtp[5]: 1A2B3C4D5E: to=<x@example.com>, relay=mx.example.com[192.0.2.20]:25, delay=4203, delays=1/4200/1/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 99)",
	"Dec  2 09:10:04 mx postfix/qmgr[3]: 1A2B3C4D5E: removed",
	/* B: null sender from an unnamed client, bounced */
	"Dec  2 09:20:00 mx postfix/smtpd[1]: 2B3C4D5E6F: client=unknown[192.0.2.10]",
	"Dec  2 09:20:00 mx postfix/qmgr[3]: 2B3C4D5E6F: from=<>, size=500, nrcpt=1 (queue active)",
	"Dec  2 09:20:01 mx postfix/smtp[5]: 2B3C4D5E6F: to=<nobody@example.com>, relay=mx.example.com[192.0.2.20]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.1.1, status=bounced (host mx.example.com[192.0.2.20] said: 550 5.1.1 unknown user (in reply to RCPT TO command))",
	"Dec  2 09:20:01 mx postfix/bounce[6]: 2B3C4D5E6F: sender non-delivery notification: 3C4D5E6F7A",
	"Dec  2 09:20:01 mx postfix/qmgr[3]: 2B3C4D5E6F: removed",
	/* C: rejects */
	"Dec  2 09:30:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.11]: 554 5.7.1 <x@example.net>: Relay access denied; from=<s@example.com> to=<x@elsewhere.example> proto=ESMTP helo=<h>",
	"Dec  2 09:30:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.11]: 550 5.1.1 <y@example.net>: Recipient address rejected: User unknown in virtual mailbox table; from=<s@example.com> to=<y@example.net> proto=ESMTP helo=<h>",
	"Dec  3 00:30:01 mx postfix/cleanup[2]: 4D5E6F7A8B: milter-reject: END-OF-MESSAGE from unknown[192.0.2.11]: 5.7.1 rejected by DMARC policy for example.com; from=<s@example.com> to=<y@example.net> proto=ESMTP helo=<h>",
	"Dec  3 00:30:02 mx postfix/smtpd[1]: NOQUEUE: reject_warning: RCPT from unknown[192.0.2.11]: 450 4.7.1 test; from=<s@example.com> to=<y@example.net> proto=ESMTP helo=<h>",
	/* filters */
	"Dec  3 00:30:03 mx opendkim[7]: 1A2B3C4D5E: DKIM verification successful",
	"Dec  3 00:30:03 mx opendmarc[8]: 1A2B3C4D5E: example.org pass",
	"Dec  3 00:30:03 mx opendmarc[8]: 4D5E6F7A8B: example.com fail",
	"Dec  3 00:30:03 mx sluice-spam[9]: 1A2B3C4D5E: filter=spam result=ham action=accept score=-1.5",
	"Dec  3 00:30:03 mx sluice-spam[9]: 4D5E6F7A8B: filter=spam result=spam action=reject score=12",
	"Dec  3 00:30:03 mx sluice-spam[9]: 4D5E6F7A8C: filter=spam result=spam action=reject score=12.9",
	"Dec  3 00:30:03 mx sluice-ratelimit[10]: NOQUEUE: filter=ratelimit result=over action=defer_if_permit reason=\"OUT-USER\"",
	"garbage",
};

static void test_stats_flow(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	struct report_stats *st;
	json_t *d = run(flow, sizeof flow / sizeof flow[0], NULL, &st);
	assert_int_equal(jint(d, "totals.received"), 2);
	assert_int_equal(jint(d, "totals.delivered"), 3);
	assert_int_equal(jint(d, "totals.deferred"), 1);
	assert_int_equal(jint(d, "totals.deferrals"), 2);
	assert_int_equal(jint(d, "totals.bounced"), 1);
	assert_int_equal(jint(d, "totals.rejected"), 3);
	assert_int_equal(jint(d, "totals.reject_warnings"), 1);
	assert_int_equal(jint(d, "totals.bytes_received"), 1500);
	assert_int_equal(jint(d, "totals.bytes_delivered"), 3000);
	assert_int_equal(jint(d, "totals.senders"), 2);
	assert_int_equal(jint(d, "totals.recipients"), 3);
	assert_int_equal(jint(d, "input.unreadable"), 1);
	/* senders: domain lower-cased, the local part kept; the null sender as pflogsumm names it */
	assert_string_equal(jstr(d, "top.senders.0.address"), "Joe@example.org");
	assert_int_equal(jint(d, "top.senders.0.bytes"), 1000);
	assert_string_equal(jstr(d, "top.senders.1.address"), "from=<>");
	/* the null sender's domain is the client's: unknown -> its IP */
	assert_string_equal(jstr(d, "top.sender_domains.0.domain"), "192.0.2.10");
	assert_string_equal(jstr(d, "top.recipient_domains.0.domain"), "example.net");
	assert_int_equal(jint(d, "top.recipient_domains.0.messages"), 2);
	/* per day and hour */
	assert_string_equal(jstr(d, "per_day.0.date"), "2026-12-02");
	assert_int_equal(jint(d, "per_day.0.rejected"), 2);
	assert_int_equal(jint(d, "per_day.1.rejected"), 1);
	assert_int_equal(jint(d, "per_hour.8.received"), 1);
	assert_int_equal(jint(d, "per_hour.9.delivered"), 1);
	/* rejects */
	assert_int_equal(jint(d, "rejects.by_stage.RCPT"), 2);
	assert_int_equal(jint(d, "rejects.by_stage.END-OF-MESSAGE"), 1);
	assert_int_equal(jint(d, "rejects.by_code.relay_denied"), 1);
	assert_int_equal(jint(d, "rejects.by_code.unknown_recipient"), 1);
	assert_int_equal(jint(d, "rejects.by_code.dmarc"), 1);
	/* delays: virtual 1 and 3 -> p50 1, p95 3; smtp one 4203 */
	json_t *dl = json_object_get(d, "delays");
	assert_int_equal(json_array_size(dl), 2);
	assert_string_equal(jstr(d, "delays.1.transport"), "virtual");
	assert_true(json_real_value(json_object_get(json_array_get(dl, 1), "p50_s")) == 1.0);
	assert_true(json_real_value(json_object_get(json_array_get(dl, 1), "p95_s")) == 3.0);
	/* bounces with DSN text */
	assert_string_equal(jstr(d, "bounces.0.dsn"), "5.1.1");
	assert_int_equal(jint(d, "deferrals.0.count"), 2);
	/* filters */
	assert_int_equal(jint(d, "filters.dkim.results.pass"), 1);
	assert_int_equal(jint(d, "filters.dmarc.results.fail"), 1);
	assert_string_equal(jstr(d, "filters.dmarc.by_domain.0.domain"), "example.com");
	assert_int_equal(jint(d, "filters.spam.actions.reject"), 2);
	assert_int_equal(jint(d, "filters.spam.score_histogram.0.score"), -2);
	assert_int_equal(jint(d, "filters.spam.score_histogram.1.count"), 2);
	assert_int_equal(jint(d, "filters.ratelimit.actions.defer_if_permit"), 1);
	/* A and B were removed; rejects and filter lines keep no per-message state */
	assert_int_equal(rs_pending(st), 0);
	json_decref(d);
	rs_free(&st);
	assert_null(st);
}

static const char *testdata(void)
{
	const char *s = getenv("SLUICE_TESTDATA");
	return s && *s ? s : "tests/data";
}

/* the files of tests/data/report, read as `sluice report` reads them */
static json_t *run_files(const char *const *names, size_t n)
{
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct report_stats *st = rs_new(NULL);
	struct rp_event ev;
	for (size_t i = 0; i < n; i++) {
		char path[512];
		const char *err, *line;
		size_t len;
		snprintf(path, sizeof path, "%s/report/%s", testdata(), names[i]);
		struct report_input *in = ri_open(path, &err);
		if (!in)
			fail_msg("%s: %s", path, err);
		while (ri_next(in, &line, &len, &err) == 1) {
			rp_parse_line(p, line, len, &ev);
			rs_add(st, &ev);
		}
		ri_close(&in);
	}
	json_t *doc = rs_json(st);
	rs_free(&st);
	rp_parser_free(&p);
	return doc;
}

/* logs of real runs (tests/data/report/PROVENANCE.md): the counts the tests sent */
static void test_real_logs(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	static const char *const ours[] = { "sluice-dkim-spf.log", "sluice-dkim-dmarc.log", "sluice-spam.log" };
	json_t *d = run_files(ours, 3);
	assert_int_equal(jint(d, "input.unreadable"), 0);
	assert_int_equal(jint(d, "totals.received"), 11);
	assert_int_equal(jint(d, "totals.delivered"), 8);
	assert_int_equal(jint(d, "totals.rejected"), 4);
	assert_int_equal(jint(d, "totals.connections"), 16);
	assert_int_equal(jint(d, "rejects.by_stage.END-OF-MESSAGE"), 3);
	assert_int_equal(jint(d, "rejects.by_stage.RCPT"), 1);
	assert_int_equal(jint(d, "rejects.by_code.dmarc"), 2);
	assert_int_equal(jint(d, "rejects.by_code.spam"), 1);
	assert_int_equal(jint(d, "rejects.by_code.spf"), 1);
	assert_int_equal(jint(d, "filters.dkim.results.signed"), 2);
	assert_int_equal(jint(d, "filters.spf.results.pass"), 4);
	assert_int_equal(jint(d, "filters.dmarc.results.fail"), 2);
	assert_int_equal(jint(d, "filters.spam.results.spam"), 2);
	assert_int_equal(jint(d, "filters.spam.results.ham"), 1);
	assert_string_equal(jstr(d, "filters.dmarc.by_domain.0.domain"), "reject.example");
	json_decref(d);

	/* Postfix 3.7.11 (its own syslog_name): the grand totals pflogsumm 1.1.5 prints for it */
	static const char *const postfix[] = { "postfix.log" };
	d = run_files(postfix, 1);
	assert_int_equal(jint(d, "input.unreadable"), 0);
	assert_int_equal(jint(d, "totals.received"), 6);
	assert_int_equal(jint(d, "totals.delivered"), 6);
	assert_int_equal(jint(d, "totals.deferred"), 1);
	assert_int_equal(jint(d, "totals.bounced"), 1);
	assert_int_equal(jint(d, "totals.rejected"), 2);
	assert_int_equal(jint(d, "totals.bytes_received"), 1791);
	assert_int_equal(jint(d, "totals.bytes_delivered"), 3544);
	assert_int_equal(jint(d, "totals.senders"), 4);
	assert_int_equal(jint(d, "totals.recipients"), 3);
	assert_string_equal(jstr(d, "bounces.0.dsn"), "5.3.0");
	assert_int_equal(jint(d, "delays.0.count"), 6);
	json_decref(d);

	static const char *const theirs[] = { "thirdparty.log" };
	d = run_files(theirs, 1);
	assert_int_equal(jint(d, "input.unreadable"), 0);
	assert_int_equal(jint(d, "filters.spf.results.pass"), 1);
	assert_int_equal(jint(d, "filters.spf.results.fail"), 1);
	assert_int_equal(jint(d, "filters.spf.results.softfail"), 1);
	assert_int_equal(jint(d, "filters.spf.results.none"), 1);
	assert_int_equal(jint(d, "filters.spf.actions.prepend"), 3);
	assert_int_equal(jint(d, "filters.spf.actions.reject"), 1);
	assert_int_equal(jint(d, "filters.dkim.results.signed"), 1);
	assert_int_equal(jint(d, "filters.dkim.results.pass"), 1);
	assert_int_equal(jint(d, "filters.dkim.results.fail"), 1);
	assert_int_equal(jint(d, "filters.dkim.results.none"), 1);
	assert_string_equal(jstr(d, "filters.dmarc.by_domain.0.domain"), "example.org");
	assert_int_equal(jint(d, "filters.dmarc.by_domain.0.results.pass"), 1);
	assert_string_equal(jstr(d, "filters.dmarc.by_domain.1.domain"), "reject.example");
	assert_int_equal(jint(d, "filters.dmarc.by_domain.1.results.fail"), 1);
	json_decref(d);
}

/* one pass over lines[0, n), as JSON text */
static char *one_pass(const char *const *lines, size_t n)
{
	json_t *d = run(lines, n, NULL, NULL);
	char *t = json_dumps(d, JSON_SORT_KEYS);
	json_decref(d);
	return t;
}

/* lines[0, cut) counted as they are, lines[cut, n) as a later part
   (rs_add_part; what it passes back is re-parsed and given to rs_add_now
   afterwards, in order), then rs_merge: as JSON text */
static char *two_parts(const char *const *lines, size_t n, size_t cut, size_t *passed_back, int *refit)
{
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct report_stats *st = rs_new(NULL), *part = rs_new(NULL);
	struct rp_event ev;
	for (size_t i = 0; i < cut; i++) {
		rp_parse_line(p, lines[i], strlen(lines[i]), &ev);
		rs_add(st, &ev);
	}
	size_t *back = calloc(n + 1, sizeof *back), nb = 0;
	double *now = calloc(n + 1, sizeof *now);
	for (size_t i = cut; i < n; i++) {
		char kb[RS_KEYS_BYTES];
		struct rs_keys k;
		rp_parse_line(p, lines[i], strlen(lines[i]), &ev);
		rs_keys_make(&ev, &k, kb);
		if (rs_add_part(part, &ev, &k, &now[nb]))
			back[nb++] = i;
	}
	if (rs_part_fits(st, part)) {
		for (size_t i = 0; i < nb; i++) {
			rp_parse_line(p, lines[back[i]], strlen(lines[back[i]]), &ev);
			rs_add_now(st, &ev, now[i]);
		}
		rs_merge(st, &part);
		assert_null(part);
	} else {		/* as report_run: the part once more, in one pass */
		rs_free(&part);
		for (size_t i = cut; i < n; i++) {
			rp_parse_line(p, lines[i], strlen(lines[i]), &ev);
			rs_add(st, &ev);
		}
		(*refit)++;
	}
	json_t *d = rs_json(st);
	char *t = json_dumps(d, JSON_SORT_KEYS);
	json_decref(d);
	rs_free(&st);
	rp_parser_free(&p);
	free(back);
	free(now);
	*passed_back = nb;
	return t;
}

/* a log cut at any line into two parts counts as in one pass */
static void test_parts_every_cut(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	/* flow, and flow with its messages' lines spread out: each message's
	   first 7 lines in one round, the rest three rounds later */
	size_t nf = sizeof flow / sizeof flow[0];
	enum { ROUNDS = 6 };
	const char **spread = calloc(nf * (ROUNDS + 3), sizeof *spread);
	char **owned = calloc(nf * ROUNDS, sizeof *owned);
	size_t ns = 0, no = 0;
	for (int r = 0; r < ROUNDS + 3; r++) {
		for (int half = 0; half < 2; half++) {
			int src = half ? r - 3 : r;
			if (src < 0 || src >= ROUNDS)
				continue;
			for (size_t i = half ? 7 : 0; i < (half ? nf : 7); i++) {
				char *l = strdup(flow[i]);
				for (char *q; (q = strstr(l, "1A2B3C4D5E")) || (q = strstr(l, "2B3C4D5E6F"));)
					q[0] = (char)('a' + src), q[1] = (char)('a' + src);
				owned[no++] = l;
				spread[ns++] = l;
			}
		}
	}
	/* flow twice without its "removed" lines: the queue ids come again
	   while still held (rs_part_fits must see it) */
	const char **twice = calloc(2 * nf, sizeof *twice);
	size_t nt = 0;
	for (int r = 0; r < 2; r++)
		for (size_t i = 0; i < nf; i++)
			if (!strstr(flow[i], ": removed"))
				twice[nt++] = flow[i];
	/* lines without a time (JSON without "time") after a stamp of another
	   day: each takes the last stamp before it, also when it is passed back
	   and a stamp of the part came between (fuzz_report found this) */
	static const char *const untimed[] = {
		"{\"time\":\"2026-11-21T21:00:00Z\",\"host\":\"mx\",\"program\":\"sluice/smtpd\",\"pid\":1,\"queue_id\":\"5F2A1C9D0B\",\"message\":\"client=unknown[192.0.2.1]\"}",
		"{\"time\":\"2026-11-21T21:00:01Z\",\"host\":\"mx\",\"program\":\"sluice/qmgr\",\"pid\":2,\"queue_id\":\"5F2A1C9D0B\",\"message\":\"from=<a@example.com>, size=1234, nrcpt=2 (queue active)\"}",
		"{\"host\":\"mx\",\"program\":\"sluice-dkim\",\"pid\":3,\"queue_id\":\"5F2A1C9D0B\",\"message\":\"milter=dkim action=accept dkim=pass\"}",
		"Dec  2 08:44:02 mx postfix/smtpd[9]: connect from mail.example.org[192.0.2.9]",
		"{\"host\":\"mx\",\"program\":\"sluice/virtual\",\"pid\":4,\"queue_id\":\"5F2A1C9D0B\",\"message\":\"to=<b@example.net>, relay=virtual, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (delivered to maildir)\"}",
		"Dec  3 09:00:00 mx postfix/smtpd[9]: connect from mail.example.org[192.0.2.9]",
		"{\"host\":\"mx\",\"program\":\"sluice/virtual\",\"pid\":4,\"queue_id\":\"5F2A1C9D0B\",\"message\":\"to=<c@example.net>, relay=virtual, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (delivered to maildir)\"}",
	};
	const char *const *logs[] = { flow, spread, twice, untimed };
	size_t ns_[] = { nf, ns, nt, sizeof untimed / sizeof untimed[0] };
	size_t total_back = 0;
	int refit = 0;
	for (int L = 0; L < 4; L++) {
		char *want = one_pass(logs[L], ns_[L]);
		for (size_t cut = 0; cut <= ns_[L]; cut++) {
			size_t back;
			char *got = two_parts(logs[L], ns_[L], cut, &back, &refit);
			if (strcmp(got, want))
				fail_msg("log %d cut at line %zu: the parts do not add up to the one pass", L, cut);
			total_back += back;
			free(got);
		}
		free(want);
	}
	assert_true(total_back > 100);	/* lines were passed back, and counted right */
	assert_true(refit > 0);		/* and parts were counted again */
	free(twice);
	for (size_t i = 0; i < no; i++)
		free(owned[i]);
	free(owned);
	free(spread);
}

static void test_since_until(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	struct rs_opts o = { 0 };
	assert_int_equal(rp_time_parse("2026-12-02T09:00:00Z", &o.since), 0);
	assert_int_equal(rp_time_parse("2026-12-03", &o.until), 0);
	json_t *d = run(flow, sizeof flow / sizeof flow[0], &o, NULL);
	assert_int_equal(jint(d, "totals.received"), 1);	/* B only */
	assert_int_equal(jint(d, "totals.delivered"), 1);	/* A's last recipient */
	assert_int_equal(jint(d, "totals.rejected"), 2);
	assert_int_equal(jint(d, "input.out_of_range"), 18);
	json_decref(d);
}

/* memory: per-message state is freed at "removed" and forgotten after RS_EXPIRE_S */
static void test_memory_bound(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct report_stats *st = rs_new(NULL);
	struct rp_event ev;
	char line[256];
	for (int i = 0; i < 200000; i++) {
		/* 100 000 messages removed; 100 000 never removed, 10 s apart (23 days of log) */
		double t = 1796169600.0 + i * 10;
		time_t s = (time_t)t;
		struct tm tm;
		gmtime_r(&s, &tm);
		char stamp[64];
		strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
		snprintf(line, sizeof line, "%s mx postfix/smtpd[1]: %08X1: client=unknown[192.0.2.1]", stamp, i);
		rp_parse_line(p, line, strlen(line), &ev);
		rs_add(st, &ev);
		if (i % 2 == 0) {
			snprintf(line, sizeof line, "%s mx postfix/qmgr[1]: %08X1: removed", stamp, i);
			rp_parse_line(p, line, strlen(line), &ev);
			rs_add(st, &ev);
		}
	}
	/* at most RS_EXPIRE_S of unremoved messages (one per 20 s) plus one sweep interval */
	assert_true(rs_pending(st) <= (size_t)(RS_EXPIRE_S / 20) + 65536);
	assert_true(rs_pending(st) < 100000);
	rs_free(&st);
	rp_parser_free(&p);
}

static void test_reason_codes(void **state)
{
	(void)state;
	assert_string_equal(rs_reason_code("RCPT", "5.1.1", "<a@b>: Recipient address rejected: User unknown in local recipient table"), "unknown_recipient");
	assert_string_equal(rs_reason_code("CONNECT", "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.example"), "dnsbl");
	assert_string_equal(rs_reason_code("header", "5.7.1", "no thanks"), "content");
	assert_string_equal(rs_reason_code("DATA", NULL, NULL), "other");
	assert_string_equal(rs_reason_code("RCPT", "5.7.23", "<a@b>: Recipient address rejected: x"), "spf");
	assert_string_equal(rs_reason_code("RCPT", "5.7.1", "<a@b>: Recipient address rejected: Message rejected due to: 192.0.2.1 is not one of example.net's designated mail servers."), "spf");
}

/* ---- report_map: deletion by backward shift keeps every other key reachable ---- */

static void test_map(void **state)
{
	(void)state;
	struct rmap m = { 0 };
	char key[32];
	enum { N = 5000 };
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof key, "k%d", i);
		rmap_bump(&m, key, 0, i);
	}
	assert_int_equal(m.n, N);
	/* delete every key whose number is not a multiple of 3, in a scrambled order */
	for (int j = 0; j < N; j++) {
		int i = (int)(((long long)j * 7919) % N);
		if (i % 3 == 0)
			continue;
		snprintf(key, sizeof key, "k%d", i);
		struct rmap_ent *e = rmap_get(&m, key, 0);
		assert_non_null(e);
		rmap_del(&m, e, NULL);
	}
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof key, "k%d", i);
		struct rmap_ent *e = rmap_get(&m, key, 0);
		if (i % 3 == 0) {
			assert_non_null(e);
			assert_int_equal(e->c[0], i);
		} else {
			assert_null(e);
		}
	}
	size_t n;
	struct rmap_row *r = rmap_sorted(&m, 0, &n);
	assert_int_equal(n, m.n);
	for (size_t i = 1; i < n; i++)
		assert_true(r[i - 1].e->c[0] >= r[i].e->c[0]);
	free(r);
	rmap_bump2(&m, "a", "b", 2);
	assert_int_equal(rmap_get(&m, "a\tb", 0)->c[0], 2);
	rmap_free(&m, NULL);
	assert_int_equal(m.n, 0);
	assert_null(rmap_get(&m, "k0", 0));
}

/*
 * ---- report_map: keys on both sides of the inline limit (and sharing
 * their first RMAP_INLINE bytes), rmap_getn on bytes that are not
 * NUL-terminated, rmap_top == the head of rmap_sorted (ties broken by key) ----
 */

/* key i: 6 to 65 bytes, 'x's then i in 6 digits; its length */
static int map_key(char *key, int i)
{
	char num[16];
	int len = 6 + i % 60;
	snprintf(num, sizeof num, "%06u", (unsigned)i % 1000000u);
	memset(key, 'x', (size_t)(len - 6));
	memcpy(key + len - 6, num, 6);
	key[len] = 0;
	return len;
}

static void test_map_keys_and_top(void **state)
{
	(void)state;
	struct rmap m = { 0 };
	char key[128];
	enum { N = 3000 };
	for (int i = 0; i < N; i++) {
		map_key(key, i);	/* below, at and past RMAP_INLINE, long shared prefixes */
		rmap_bump(&m, key, 0, i % 7);	/* many ties */
		rmap_bump(&m, key, 1, 1);
	}
	assert_int_equal(m.n, N);
	for (int i = 0; i < N; i++) {
		int len = map_key(key, i);
		key[len] = 'y';	/* not NUL-terminated for rmap_getn */
		struct rmap_ent *e = rmap_getn(&m, key, (size_t)len, 0);
		key[len] = 0;
		assert_non_null(e);
		assert_string_equal(e->key, key);
		assert_int_equal(e->len, len);
		assert_int_equal(e->c[1], 1);
		assert_ptr_equal(rmap_get(&m, key, 0), e);
	}
	key[0] = 'z';
	assert_null(rmap_getn(&m, key, 1, 0));
	size_t ns, nt;
	struct rmap_row *all = rmap_sorted(&m, 0, &ns);
	for (size_t limit = 0; limit <= ns + 1; limit += limit < 40 ? 1 : 997) {
		struct rmap_row *t = rmap_top(&m, 0, limit, &nt);
		assert_int_equal(nt, limit && limit < ns ? limit : ns);
		for (size_t i = 0; i < nt; i++)
			assert_ptr_equal(t[i].e, all[i].e);
		free(t);
	}
	for (size_t i = 1; i < ns; i++)
		assert_true(all[i - 1].e->c[0] > all[i].e->c[0] ||
			    (all[i - 1].e->c[0] == all[i].e->c[0] && strcmp(all[i - 1].e->key, all[i].e->key) < 0));
	free(all);
	rmap_free(&m, NULL);
}

/* ---- report_main: the three formats from one file, bad arguments ---- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static int run_main(const char *const *args)
{
	char *argv[16];
	int argc = 0;
	for (; args[argc]; argc++)
		argv[argc] = (char *)args[argc];
	argv[argc] = NULL;
	return report_main(argc, argv);
}

/* --jobs N gives the same report as --jobs 1, byte for byte, on a log of
   many chunks (plain and gzip'd), with cut lines and no final newline */
static void test_report_jobs(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	char *log = tmpfile_path("jobs.log"), *gz = tmpfile_path("jobs.log.gz"), *out1 = tmpfile_path("o1"),
	     *outn = tmpfile_path("on");
	FILE *f = fopen(log, "w");
	gzFile g = gzopen(gz, "wb");
	const int reps = 900, lag = 200;	/* ~3.8 MB: seven chunks, three parts */
	const size_t nf = sizeof flow / sizeof flow[0];
	for (int r = 0; r < reps + lag; r++) {
		/* round r's first 7 lines (a message received, one recipient
		   deferred), then round r - lag's others: every
		   message's lines spread over ~800 KB, across the parts' cuts */
		for (int half = 0; half < 2; half++) {
			int src = half ? r - lag : r;
			if (src < 0 || src >= reps)
				continue;
			for (size_t i = half ? 7 : 0; i < (half ? nf : 7); i++) {
				char line[2048];
				snprintf(line, sizeof line, "%s", flow[i]);
				/* each round its own queue ids (same length), clients and senders */
				for (char *q; (q = strstr(line, "1A2B3C4D5E")) || (q = strstr(line, "2B3C4D5E6F"));) {
					char id[11];
					snprintf(id, sizeof id, "%c%09X", q[0] == '1' ? 'A' : 'B', src);
					memcpy(q, id, 10);
				}
				char *at = strstr(line, "Joe@");
				if (at)
					at[0] = (char)('A' + src % 26);
				fprintf(f, "%s\n", line);
				gzprintf(g, "%s\n", line);
			}
		}
		if (r == reps / 2) {	/* a line of 100 000 bytes */
			for (int k = 0; k < 100000; k++) {
				fputc('z', f);
				gzputc(g, 'z');
			}
			fputc('\n', f);
			gzputc(g, '\n');
		}
	}
	fputs("Dec  3 23:59:59 mx postfix/smtpd[1]: connect from last.example[192.0.2.99]", f);
	gzputs(g, "Dec  3 23:59:59 mx postfix/smtpd[1]: connect from last.example[192.0.2.99]");
	fclose(f);
	gzclose(g);
	const char *one[] = { "report", "--format", "json", "--jobs", "1", "-o", out1, log, NULL };
	assert_int_equal(run_main(one), 0);
	char *want = strdup(slurp(out1));
	json_error_t e;
	json_t *d = json_loads(want, 0, &e);
	assert_non_null(d);
	assert_int_equal(jint(d, "totals.received"), 2 * reps);
	assert_int_equal(jint(d, "input.cut"), 1);
	assert_int_equal(jint(d, "totals.connections"), reps + 1);
	json_decref(d);
	const char *jobs[] = { "2", "3", "7" };
	for (size_t j = 0; j < 3; j++) {
		const char *n[] = { "report", "--format", "json", "--jobs", jobs[j], "-o", outn, log, NULL };
		assert_int_equal(run_main(n), 0);
		assert_string_equal(slurp(outn), want);
		const char *z[] = { "report", "--format", "json", "--jobs", jobs[j], "-o", outn, gz, NULL };
		assert_int_equal(run_main(z), 0);
		assert_string_equal(slurp(outn), want);
	}
	/* two files (the second a missing one): the same counts, and exit 1 */
	const char *two1[] = { "report", "--format", "json", "--jobs", "1", "-o", out1, log, "/nonexistent/x", gz, NULL };
	assert_int_equal(run_main(two1), 1);
	free(want);
	want = strdup(slurp(out1));
	const char *twon[] = { "report", "--format", "json", "--jobs", "3", "-o", outn, log, "/nonexistent/x", gz, NULL };
	assert_int_equal(run_main(twon), 1);
	assert_string_equal(slurp(outn), want);
	const char *bad[] = { "report", "--jobs", "0", log, NULL };
	assert_int_equal(run_main(bad), 2);
	const char *bad2[] = { "report", "--jobs", "x", log, NULL };
	assert_int_equal(run_main(bad2), 2);
	free(want);
	unlink(log);
	unlink(gz);
	unlink(out1);
	unlink(outn);
	free(log);
	free(gz);
	free(out1);
	free(outn);
}

static void test_report_main(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	char *log = tmpfile_path("flow.log"), *out = tmpfile_path("out");
	FILE *f = fopen(log, "w");
	for (size_t i = 0; i < sizeof flow / sizeof flow[0]; i++)
		fprintf(f, "%s\n", flow[i]);
	fclose(f);
	const char *json_args[] = { "report", "--format", "json", "--top", "5", "-o", out, log, NULL };
	assert_int_equal(run_main(json_args), 0);
	json_error_t e;
	json_t *d = json_loads(slurp(out), 0, &e);
	assert_non_null(d);
	assert_int_equal(jint(d, "totals.received"), 2);
	assert_int_equal(jint(d, "totals.rejected"), 3);
	json_decref(d);
	const char *text_args[] = { "report", "-o", out, log, NULL };
	assert_int_equal(run_main(text_args), 0);
	const char *t = slurp(out);
	assert_non_null(strstr(t, " 2  received\n"));
	assert_non_null(strstr(t, " 3  rejected\n"));
	assert_non_null(strstr(t, "Relay access denied"));
	const char *html_args[] = { "report", "--format=html", "--since", "2026-12-01", "-o", out, log, NULL };
	assert_int_equal(run_main(html_args), 0);
	t = slurp(out);
	assert_non_null(strstr(t, "<svg"));
	assert_null(strstr(t, "<script"));
	const char *bad_format[] = { "report", "--format", "xml", log, NULL };
	assert_int_equal(run_main(bad_format), 2);
	const char *bad_time[] = { "report", "--since", "yesterday", log, NULL };
	assert_int_equal(run_main(bad_time), 2);
	const char *no_file[] = { "report", NULL };
	assert_int_equal(run_main(no_file), 2);
	const char *missing[] = { "report", "-o", out, "/nonexistent/maillog", NULL };
	assert_int_equal(run_main(missing), 1);
	unlink(log);
	unlink(out);
	free(log);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_schema_keys),
		cmocka_unit_test(test_prefixes_and_bytes),
		cmocka_unit_test(test_year_hint),
		cmocka_unit_test(test_long_line_cut),
		cmocka_unit_test(test_input),
		cmocka_unit_test(test_input_chunks),
		cmocka_unit_test(test_parser_arena),
		cmocka_unit_test(test_stats_flow),
		cmocka_unit_test(test_real_logs),
		cmocka_unit_test(test_parts_every_cut),
		cmocka_unit_test(test_since_until),
		cmocka_unit_test(test_memory_bound),
		cmocka_unit_test(test_reason_codes),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_map_keys_and_top),
		cmocka_unit_test(test_report_jobs),
		cmocka_unit_test(test_report_main),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
