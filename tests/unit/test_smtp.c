/*
 * test_smtp: command lines of proto/smtp (verbs, MAIL/RCPT parameters,
 * error replies), pipelining byte-at-a-time, long lines, STARTTLS discard,
 * bare newlines in command lines, expect_line.
 * DATA/BDAT are in test_smtp_data.c, paths in test_smtp_path.c.
 */
#include "tests/unit/smtp_testlib.h"

struct cmd_case {
	const char *name;
	const char *line;	/* sent with CRLF appended */
	const char *want;	/* st_describe() of the single item */
};

static const struct cmd_case cmd_cases[] = {
	/* HELO / EHLO */
	{ "ehlo", "EHLO mx.example.net", "EHLO [mx.example.net]" },
	{ "ehlo lower case verb", "ehlo mx", "EHLO [mx]" },
	{ "helo mixed case", "HeLo mx", "HELO [mx]" },
	{ "ehlo address literal", "EHLO [192.0.2.1]", "EHLO [[192.0.2.1]]" },
	{ "ehlo trailing blanks trimmed", "EHLO mx  \t", "EHLO [mx]" },
	{ "ehlo without argument", "EHLO", "BAD 501 5.5.4 Syntax: EHLO hostname" },
	{ "ehlo with only a space", "EHLO ", "BAD 501 5.5.4 Syntax: EHLO hostname" },
	{ "helo without argument", "HELO", "BAD 501 5.5.4 Syntax: HELO hostname" },
	/* MAIL */
	{ "mail simple", "MAIL FROM:<a@b.example>", "MAIL <a@b.example> L=a D=b.example" },
	{ "mail lower case", "mail from:<a@b>", "MAIL <a@b> L=a D=b" },
	{ "mail null sender", "MAIL FROM:<>", "MAIL <> L= D= null" },
	{ "mail space after colon (Postfix)", "MAIL FROM: <a@b>", "MAIL <a@b> L=a D=b" },
	{ "mail two spaces after colon", "MAIL FROM:  <a@b>", "MAIL <a@b> L=a D=b" },
	{ "mail trailing space", "MAIL FROM:<a@b> ", "MAIL <a@b> L=a D=b" },
	{ "mail unbracketed", "MAIL FROM:a@b", "BAD 501 5.1.7 Bad sender address syntax" },
	{ "mail no address", "MAIL FROM:", "BAD 501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "mail no FROM", "MAIL <a@b>", "BAD 501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "mail no argument", "MAIL", "BAD 501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "mail space before colon", "MAIL FROM :<a@b>", "BAD 501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "mail bad address", "MAIL FROM:<a@@b>", "BAD 501 5.1.7 Bad sender address syntax" },
	{ "mail junk after path", "MAIL FROM:<a@b>x", "BAD 501 5.1.7 Bad sender address syntax" },
	{ "mail quoted local part", "MAIL FROM:<\"a b\"@c>", "MAIL <\"a b\"@c> L=a b D=c" },
	{ "mail source route", "MAIL FROM:<@r1,@r2:u@d>", "MAIL <u@d> L=u D=d route" },
	{ "mail utf8 path", "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc.example> SMTPUTF8",
	  "MAIL <j\xc3\xb6rg@b\xc3\xbc.example> L=j\xc3\xb6rg D=b\xc3\xbc.example utf8 SMTPUTF8" },
	{ "mail SIZE", "MAIL FROM:<a@b> SIZE=12345", "MAIL <a@b> L=a D=b SIZE=12345" },
	{ "mail size lower case", "MAIL FROM:<a@b> size=0", "MAIL <a@b> L=a D=b SIZE=0" },
	{ "mail SIZE saturates", "MAIL FROM:<a@b> SIZE=123456789012345678901234567890",
	  "MAIL <a@b> L=a D=b SIZE=9223372036854775807" },
	{ "mail SIZE not a number", "MAIL FROM:<a@b> SIZE=12k", "BAD 501 5.5.4 Bad message size syntax" },
	{ "mail SIZE empty", "MAIL FROM:<a@b> SIZE=", "BAD 501 5.5.4 Bad message size syntax" },
	{ "mail SIZE no value", "MAIL FROM:<a@b> SIZE", "BAD 501 5.5.4 Bad message size syntax" },
	{ "mail BODY=8BITMIME", "MAIL FROM:<a@b> BODY=8BITMIME", "MAIL <a@b> L=a D=b BODY=8BITMIME" },
	{ "mail BODY=7bit", "MAIL FROM:<a@b> BODY=7bit", "MAIL <a@b> L=a D=b BODY=7BIT" },
	{ "mail BODY=BINARYMIME", "MAIL FROM:<a@b> BODY=BINARYMIME", "MAIL <a@b> L=a D=b BODY=BINARYMIME" },
	{ "mail BODY bad", "MAIL FROM:<a@b> BODY=9BIT", "BAD 501 5.5.4 Bad BODY keyword syntax" },
	{ "mail SMTPUTF8 with value", "MAIL FROM:<a@b> SMTPUTF8=yes", "BAD 501 5.5.4 Bad SMTPUTF8 parameter syntax" },
	{ "mail RET=HDRS", "MAIL FROM:<a@b> RET=hdrs", "MAIL <a@b> L=a D=b RET=HDRS" },
	{ "mail RET bad", "MAIL FROM:<a@b> RET=ALL", "BAD 501 5.5.4 Bad RET parameter syntax" },
	{ "mail ENVID", "MAIL FROM:<a@b> ENVID=QQ314159+2B1", "MAIL <a@b> L=a D=b ENVID=QQ314159+2B1" },
	{ "mail ENVID bad xtext", "MAIL FROM:<a@b> ENVID=a+zz", "BAD 501 5.5.4 Bad ENVID parameter syntax" },
	{ "mail ENVID too long (101 > 100)", "MAIL FROM:<a@b> ENVID="
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" "x",
	  "BAD 501 5.5.4 Bad ENVID parameter syntax" },
	{ "mail AUTH=<>", "MAIL FROM:<a@b> AUTH=<>", "MAIL <a@b> L=a D=b AUTH=<>" },
	{ "mail AUTH=xtext", "MAIL FROM:<a@b> AUTH=e+3Dmc2@example.com", "MAIL <a@b> L=a D=b AUTH=e+3Dmc2@example.com" },
	{ "mail all parameters", "MAIL FROM:<a@b>  SIZE=1 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x AUTH=<>",
	  "MAIL <a@b> L=a D=b SIZE=1 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x AUTH=<>" },
	{ "mail unknown parameter", "MAIL FROM:<a@b> FOO=bar", "BAD 555 5.5.4 Unsupported option: FOO=bar" },
	{ "mail unknown flag", "MAIL FROM:<a@b> XYZZY", "BAD 555 5.5.4 Unsupported option: XYZZY" },
	{ "mail RCPT-only parameter", "MAIL FROM:<a@b> NOTIFY=NEVER", "BAD 555 5.5.4 Unsupported option: NOTIFY=NEVER" },
	{ "mail unknown value sanitised", "MAIL FROM:<a@b> X=\xc3\xa9", "BAD 555 5.5.4 Unsupported option: X=??" },
	{ "mail bad keyword", "MAIL FROM:<a@b> -X=1", "BAD 501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "mail null path only with <>", "MAIL FROM:< >", "BAD 501 5.1.7 Bad sender address syntax" },
	/* RCPT */
	{ "rcpt simple", "RCPT TO:<u@d.example>", "RCPT <u@d.example> L=u D=d.example" },
	{ "rcpt space after colon", "rcpt to: <u@d>", "RCPT <u@d> L=u D=d" },
	{ "rcpt null path refused", "RCPT TO:<>", "BAD 501 5.1.3 Bad recipient address syntax" },
	{ "rcpt unbracketed", "RCPT TO:u@d", "BAD 501 5.1.3 Bad recipient address syntax" },
	{ "rcpt no TO", "RCPT <u@d>", "BAD 501 5.5.4 Syntax: RCPT TO:<address>" },
	{ "rcpt empty", "RCPT TO:", "BAD 501 5.5.4 Syntax: RCPT TO:<address>" },
	{ "rcpt postmaster without domain", "RCPT TO:<Postmaster>", "RCPT <Postmaster> L=Postmaster D=" },
	{ "rcpt other local without domain", "RCPT TO:<root>", "BAD 501 5.1.3 Bad recipient address syntax" },
	{ "rcpt address literal", "RCPT TO:<u@[192.0.2.1]>", "RCPT <u@[192.0.2.1]> L=u D=[192.0.2.1]" },
	{ "rcpt NOTIFY list", "RCPT TO:<u@d> NOTIFY=SUCCESS,failure,DELAY", "RCPT <u@d> L=u D=d NOTIFY=14" },
	{ "rcpt NOTIFY=NEVER", "RCPT TO:<u@d> NOTIFY=NEVER", "RCPT <u@d> L=u D=d NOTIFY=1" },
	{ "rcpt NOTIFY NEVER combined", "RCPT TO:<u@d> NOTIFY=NEVER,DELAY", "BAD 501 5.5.4 Bad NOTIFY parameter syntax" },
	{ "rcpt NOTIFY empty item", "RCPT TO:<u@d> NOTIFY=SUCCESS,", "BAD 501 5.5.4 Bad NOTIFY parameter syntax" },
	{ "rcpt NOTIFY unknown", "RCPT TO:<u@d> NOTIFY=SOMETIMES", "BAD 501 5.5.4 Bad NOTIFY parameter syntax" },
	{ "rcpt ORCPT", "RCPT TO:<u@d> ORCPT=rfc822;u+40d", "RCPT <u@d> L=u D=d ORCPT=rfc822;u+40d" },
	{ "rcpt ORCPT no type", "RCPT TO:<u@d> ORCPT=u@d", "BAD 501 5.5.4 Bad ORCPT parameter syntax" },
	{ "rcpt ORCPT empty address", "RCPT TO:<u@d> ORCPT=rfc822;", "BAD 501 5.5.4 Bad ORCPT parameter syntax" },
	{ "rcpt MAIL-only parameter", "RCPT TO:<u@d> SIZE=1", "BAD 555 5.5.4 Unsupported option: SIZE=1" },
	/* no-argument verbs */
	{ "data", "DATA", "DATA" },
	{ "data trailing space ok", "DATA ", "DATA" },
	{ "data with argument", "DATA now", "BAD 501 5.5.4 Syntax: DATA" },
	{ "rset", "rset", "RSET" },
	{ "rset with argument", "RSET x", "BAD 501 5.5.4 Syntax: RSET" },
	{ "quit", "QUIT", "QUIT" },
	{ "quit with argument", "QUIT now", "BAD 501 5.5.4 Syntax: QUIT" },
	{ "starttls", "StartTLS", "STARTTLS" },
	{ "starttls with argument", "STARTTLS x", "BAD 501 5.5.4 Syntax: STARTTLS" },
	{ "noop", "NOOP", "NOOP" },
	{ "noop with argument", "NOOP hello there", "NOOP [hello there]" },
	{ "help", "HELP", "HELP" },
	{ "help topic", "HELP MAIL", "HELP [MAIL]" },
	{ "vrfy", "VRFY postmaster", "VRFY [postmaster]" },
	{ "vrfy without argument", "VRFY", "BAD 501 5.5.4 Syntax: VRFY address" },
	{ "expn", "EXPN staff", "EXPN [staff]" },
	/* BDAT */
	{ "bdat", "BDAT 1000", "BDAT [1000] n=1000" },
	{ "bdat last", "BDAT 0 LAST", "BDAT [0 LAST] n=0 LAST" },
	{ "bdat last lower case", "bdat 12 last", "BDAT [12 last] n=12 LAST" },
	{ "bdat no size", "BDAT", "BAD 501 5.5.4 Syntax: BDAT count [LAST]" },
	{ "bdat negative", "BDAT -1", "BAD 501 5.5.4 Syntax: BDAT count [LAST]" },
	{ "bdat junk", "BDAT 10 MORE", "BAD 501 5.5.4 Syntax: BDAT count [LAST]" },
	{ "bdat overflow", "BDAT 99999999999999999999999", "BAD 501 5.5.4 Syntax: BDAT count [LAST]" },
	{ "bdat max", "BDAT 18446744073709551615", "BDAT [18446744073709551615] n=18446744073709551615" },
	/* AUTH */
	{ "auth mechanism", "AUTH LOGIN", "AUTH [LOGIN] mech=LOGIN ir=-" },
	{ "auth initial response", "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
	  "AUTH [PLAIN AGFsaWNlAHNlY3JldA==] mech=PLAIN ir=AGFsaWNlAHNlY3JldA==" },
	{ "auth empty initial response", "AUTH PLAIN =", "AUTH [PLAIN =] mech=PLAIN ir==" },
	{ "auth no mechanism", "AUTH", "BAD 501 5.5.4 Syntax: AUTH mechanism" },
	{ "auth too many words", "AUTH PLAIN a b", "BAD 501 5.5.4 Syntax: AUTH mechanism" },
	{ "auth bad mechanism", "AUTH PL@IN", "BAD 501 5.5.4 Syntax: AUTH mechanism" },
	/* other */
	{ "unknown verb", "XFOO bar", "UNKNOWN [bar]" },
	{ "verb prefix is not a verb", "MAILX FROM:<a@b>", "UNKNOWN [FROM:<a@b>]" },
	{ "leading space", " NOOP", "UNKNOWN [NOOP]" },
	{ "empty line", "", "BAD 500 5.5.2 Error: bad syntax" },
};

/* run_one - feed line + CRLF, expect exactly one item, return its description. */
static char *run_one(const char *line, size_t len)
{
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;
	struct sbuf b;

	sbuf_init(&b);
	smtp_parser_feed(p, line, len);
	smtp_parser_feed(p, "\r\n", 2);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	st_describe(&b, &it);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_NEED_MORE);
	assert_int_equal(smtp_parser_buffered(p), 0);
	smtp_parser_free(&p);
	assert_null(p);
	return sbuf_steal(&b);
}

static void test_cmd_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		char *got = run_one(cmd_cases[i].line, strlen(cmd_cases[i].line));
		st_expect(cmd_cases[i].name, got, cmd_cases[i].want);
		free(got);
	}
}

static void test_cmd_line_field(void **state)
{
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;

	(void)state;
	smtp_parser_feed(p, "MAIL FROM:<a@b>  SIZE=1  \r\n", 27);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_COMMAND);
	assert_string_equal(it.cmd.line, "MAIL FROM:<a@b>  SIZE=1  ");
	assert_string_equal(it.cmd.arg, "FROM:<a@b>  SIZE=1");
	assert_string_equal(smtp_verb_name(it.cmd.verb), "MAIL");
	assert_string_equal(smtp_verb_name(SMTP_VERB_UNKNOWN), "UNKNOWN");
	smtp_parser_free(&p);
	smtp_parser_free(&p);	/* NULL is fine */
}

static void test_cmd_nul(void **state)
{
	char *got;

	(void)state;
	got = run_one("MAIL FROM:<a@b>\0x", 17);
	st_expect("NUL in command", got, "BAD 500 5.5.2 Error: NUL character in command");
	free(got);
}

/* A whole pipelined session: same log fed whole and byte by byte. */
static const char pipelined[] =
	"EHLO client.example\r\n"
	"MAIL FROM:<sender@example.org> SIZE=100 BODY=8BITMIME\r\n"
	"RCPT TO:<rcpt1@example.net> NOTIFY=FAILURE ORCPT=rfc822;rcpt1@example.net\r\n"
	"RCPT TO:<\"quoted user\"@[IPv6:2001:db8::1]>\r\n"
	"RCPT TO:<>\r\n"
	"DATA\r\n"
	"Subject: hi\r\n\r\n..dotted\r\nbody\r\n.\r\n"
	"BDAT 8\r\nab\r\ncd\r\n"
	"BDAT 0 LAST\r\n"
	"VRFY\r\n"
	"AUTH PLAIN dGVzdA==\r\n"
	"NOOP\r\n"
	"RSET\r\n"
	"QUIT\r\n";

static const char pipelined_log[] =
	"EHLO [client.example]\n"
	"MAIL <sender@example.org> L=sender D=example.org SIZE=100 BODY=8BITMIME\n"
	"RCPT <rcpt1@example.net> L=rcpt1 D=example.net NOTIFY=4 ORCPT=rfc822;rcpt1@example.net\n"
	"RCPT <\"quoted user\"@[IPv6:2001:db8::1]> L=quoted user D=[IPv6:2001:db8::1]\n"
	"BAD 501 5.1.3 Bad recipient address syntax\n"
	"DATA\n"
	"DATA Subject: hi\\n\\n.dotted\\nbody\\n\n"
	"END\n"
	"BDAT [8] n=8\n"
	"DATA ab\\ncd\\n\n"
	"END\n"
	"BDAT [0 LAST] n=0 LAST\n"
	"END LAST\n"
	"BAD 501 5.5.4 Syntax: VRFY address\n"
	"AUTH [PLAIN dGVzdA==] mech=PLAIN ir=dGVzdA==\n"
	"NOOP\n"
	"RSET\n"
	"QUIT\n";

static void test_pipelined_whole_and_bytewise(void **state)
{
	size_t len = sizeof(pipelined) - 1;

	(void)state;
	for (int pol = 0; pol < 2; pol++) {
		for (size_t step = 0; step <= 7; step++) {
			char *got = st_run(pipelined, len, step, (enum smtp_bare_policy)pol, 0, NULL);
			st_expect("pipelined session", got, pipelined_log);
			free(got);
		}
	}
}

/* Pipelining check: after each command the rest is still buffered. */
static void test_buffered(void **state)
{
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;

	(void)state;
	assert_int_equal(smtp_parser_buffered(p), 0);
	smtp_parser_feed(p, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDA", 34);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(smtp_parser_buffered(p), 17);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(smtp_parser_buffered(p), 2);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_NEED_MORE);
	assert_int_equal(smtp_parser_buffered(p), 2);
	smtp_parser_feed(p, "TA\r\n", 4);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.cmd.verb, SMTP_VERB_DATA);
	assert_int_equal(smtp_parser_buffered(p), 0);
	smtp_parser_free(&p);
}

/* CVE-2011-0411: commands pipelined after STARTTLS must be dropped. */
static void test_starttls_discard(void **state)
{
	static const char in[] = "STARTTLS\r\nMAIL FROM:<evil@example>\r\nRCPT TO:<x@y>\r\n";
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;

	(void)state;
	smtp_parser_feed(p, in, sizeof(in) - 1);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.cmd.verb, SMTP_VERB_STARTTLS);
	assert_true(smtp_parser_buffered(p) > 0);
	smtp_parser_discard(p);
	assert_int_equal(smtp_parser_buffered(p), 0);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_NEED_MORE);
	/* after the handshake: a fresh EHLO parses normally */
	smtp_parser_feed(p, "EHLO x\r\n", 8);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.cmd.verb, SMTP_VERB_EHLO);
	smtp_parser_free(&p);
}

/* A partial line before STARTTLS's reply is dropped too. */
static void test_discard_partial_line(void **state)
{
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;

	(void)state;
	smtp_parser_feed(p, "STARTTLS\r\nMAIL FR", 17);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_NEED_MORE);
	smtp_parser_discard(p);
	smtp_parser_feed(p, "NOOP\r\n", 6);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.cmd.verb, SMTP_VERB_NOOP);
	smtp_parser_free(&p);
}

/* Line too long: consumed to its end, memory stays near max_line_bytes. */
static void test_line_too_long(void **state)
{
	struct smtp_parser_opts o = { .max_line_bytes = 64 };
	struct smtp_parser *p = smtp_parser_new(&o);
	struct smtp_item it;
	char chunk[100];

	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	smtp_parser_feed(p, "NOOP ", 5);
	for (int i = 0; i < 10000; i++) {
		smtp_parser_feed(p, chunk, sizeof(chunk));
		assert_int_equal(smtp_parser_next(p, &it), SMTP_NEED_MORE);
		assert_true(smtp_parser_buffered(p) <= 64 + 2);
	}
	smtp_parser_feed(p, "\r", 1);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_NEED_MORE);
	smtp_parser_feed(p, "\nNOOP\r\n", 7);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_BAD_COMMAND);
	assert_int_equal(it.code, 500);
	assert_string_equal(it.dsn, "5.5.0");
	assert_string_equal(it.text, "Error: line too long");
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_COMMAND);
	assert_int_equal(it.cmd.verb, SMTP_VERB_NOOP);
	smtp_parser_free(&p);
}

/* Exactly max_line_bytes is fine, one more is too long. */
static void test_line_limit_edge(void **state)
{
	struct smtp_parser_opts o = { .max_line_bytes = 10 };
	struct smtp_parser *p = smtp_parser_new(&o);
	struct smtp_item it;

	(void)state;
	smtp_parser_feed(p, "NOOP 12345\r\nNOOP 123456\r\n", 25);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_COMMAND);
	assert_string_equal(it.cmd.arg, "12345");
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_BAD_COMMAND);
	assert_int_equal(it.code, 500);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_NEED_MORE);
	smtp_parser_free(&p);
}

struct bare_case {
	const char *name;
	const char *in;
	const char *want_reject;
	const char *want_normalize;
};

static const struct bare_case bare_cases[] = {
	{ "bare LF ends MAIL", "MAIL FROM:<a@b>\nQUIT\r\n",
	  "FATAL 521 5.5.2 Error: bare <LF> received\n",
	  "MAIL <a@b> L=a D=b\nQUIT\n" },
	{ "bare CR inside a line", "NOOP a\rb\r\nQUIT\r\n",
	  "FATAL 521 5.5.2 Error: bare <CR> received\n",
	  "NOOP [a\rb]\nQUIT\n" },
	{ "bare LF in a too long line", "NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nQUIT\r\n",
	  "FATAL 521 5.5.2 Error: bare <LF> received\n",
	  "BAD 500 5.5.0 Error: line too long\nQUIT\n" },
	{ "empty line with bare LF", "\nQUIT\r\n",
	  "FATAL 521 5.5.2 Error: bare <LF> received\n",
	  "BAD 500 5.5.2 Error: bad syntax\nQUIT\n" },
	{ "nothing after FATAL", "NOOP\nNOOP\r\nNOOP\r\n",
	  "FATAL 521 5.5.2 Error: bare <LF> received\n",
	  "NOOP\nNOOP\nNOOP\n" },
};

static void test_bare_in_commands(void **state)
{
	struct smtp_parser_opts o = { .max_line_bytes = 100 };

	(void)state;
	for (size_t i = 0; i < sizeof(bare_cases) / sizeof(bare_cases[0]); i++) {
		const struct bare_case *c = &bare_cases[i];
		for (int pol = 0; pol < 2; pol++) {
			struct smtp_parser *p;
			struct st_drv d;
			char *got;
			o.bare = (enum smtp_bare_policy)pol;
			p = smtp_parser_new(&o);
			st_drv_init(&d, 1);
			for (size_t k = 0; c->in[k]; k++) {	/* byte by byte */
				smtp_parser_feed(p, c->in + k, 1);
				st_drive(&d, p);
			}
			got = st_finish(&d);
			st_expect(c->name, got, pol == SMTP_BARE_REJECT ? c->want_reject : c->want_normalize);
			if (pol == SMTP_BARE_REJECT) {
				struct smtp_item it;
				assert_int_equal(smtp_parser_next(p, &it), SMTP_ERROR);
				smtp_parser_feed(p, "NOOP\r\n", 6);
				assert_int_equal(smtp_parser_next(p, &it), SMTP_ERROR);
				assert_int_equal(smtp_parser_buffered(p), 0);
			}
			free(got);
			smtp_parser_free(&p);
		}
	}
}

/* expect_line: AUTH continuation lines come back raw. */
static void test_expect_line(void **state)
{
	struct smtp_parser_opts o = { .max_line_bytes = 16 };
	struct smtp_parser *p = smtp_parser_new(&o);
	struct smtp_item it;

	(void)state;
	smtp_parser_feed(p, "AUTH LOGIN\r\ndXNlcg==\r\nNOOP\r\n", 28);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.cmd.verb, SMTP_VERB_AUTH);
	smtp_parser_expect_line(p);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_LINE);
	assert_int_equal(it.len, 8);
	assert_memory_equal(it.data, "dXNlcg==", 8);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_COMMAND);
	assert_int_equal(it.cmd.verb, SMTP_VERB_NOOP);
	/* too long while expecting a line: 500, back in command mode */
	smtp_parser_expect_line(p);
	smtp_parser_feed(p, "0123456789abcdefXYZ\r\nQUIT\r\n", 27);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_BAD_COMMAND);
	assert_string_equal(it.text, "Error: line too long");
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.cmd.verb, SMTP_VERB_QUIT);
	smtp_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd_table),
		cmocka_unit_test(test_cmd_line_field),
		cmocka_unit_test(test_cmd_nul),
		cmocka_unit_test(test_pipelined_whole_and_bytewise),
		cmocka_unit_test(test_buffered),
		cmocka_unit_test(test_starttls_discard),
		cmocka_unit_test(test_discard_partial_line),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_line_limit_edge),
		cmocka_unit_test(test_bare_in_commands),
		cmocka_unit_test(test_expect_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
