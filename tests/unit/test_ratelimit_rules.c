/*
 * test_ratelimit_rules: sluice-ratelimit's rule parser (postfwd syntax
 * subset): every operator against attribute values, every action and
 * limit form, logical lines (continuations, '\', comments), table and
 * attribute references, and errors with their file:line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/util.h"
#include "policyd/ratelimit/rl_rules.h"

/* attributes of a fake request: "name=value" strings, NULL-terminated */
static const char *get_attr(void *ctx, const char *name)
{
	const char *const *kv = ctx;
	size_t n = strlen(name);

	for (; *kv; kv++)
		if (!strncmp(*kv, name, n) && (*kv)[n] == '=')
			return *kv + n + 1;
	return NULL;
}

static struct rl_rules *parse_ok(const char *text)
{
	char *err = NULL;
	struct rl_rules *r = rl_rules_parse(text, strlen(text), "rules.cf", &err);
	if (!r)
		fail_msg("unexpected error: %s (for %s)", err, text);
	return r;
}

static const char *const REQ[] = {
	"client_address=192.0.2.77", "client_name=mail.example.net", "sender=Joe@Example.COM",
	"sender_domain=example.com", "recipient=sue@example.org", "recipient_domain=example.org",
	"sasl_username=joe", "size=5000", "recipient_count=3", "helo_name=mail.example.net",
	"protocol_state=RCPT", "client_net=192.0.2.0", NULL,
};

struct mcase {
	const char *name;
	const char *items;
	int want;
};

static const struct mcase match_cases[] = {
	{ "== equal, case-insensitive", "sender==joe@example.com", 1 },
	{ "== different", "sender==bob@example.com", 0 },
	{ "!= different", "sender!=bob@example.com", 1 },
	{ "!= equal", "sender!=JOE@example.com", 0 },
	{ "== missing attribute", "ccert_subject==x", 0 },
	{ "!= missing attribute", "ccert_subject!=x", 1 },
	{ "=~ slashes", "sender=~/@example\\.com$/", 1 },
	{ "=~ no slashes", "sender=~example", 1 },
	{ "=~ no match", "sender=~/^bob@/", 0 },
	{ "!~ match", "sender!~/@example\\.com$/", 0 },
	{ "!~ no match", "sender!~/@example\\.net$/", 1 },
	{ "= string is a regex", "client_name=\\.example\\.net$", 1 },
	{ "= string regex with slashes", "helo_name=/^mail\\./", 1 },
	{ "= address is CIDR", "client_address=192.0.2.0/24", 1 },
	{ "= address CIDR list", "client_address=10.0.0.0/8, 192.0.2.77", 1 },
	{ "= address CIDR list spaces", "client_address=10.0.0.0/8 172.16.0.0/12", 0 },
	{ "= address v6 network misses v4", "client_address=2001:db8::/32", 0 },
	{ "= numeric is >=", "size=5000", 1 },
	{ "= numeric is >= (bigger)", "recipient_count=4", 0 },
	{ "<=", "size<=5000", 1 },
	{ "=<", "size=<4999", 0 },
	{ ">=", "recipient_count>=3", 1 },
	{ "=>", "recipient_count=>4", 0 },
	{ "<", "size<5001", 1 },
	{ ">", "size>5000", 0 },
	{ "!< (not <=)", "size!<4999", 1 },
	{ "!> (not >=)", "size!>5000", 0 },
	{ "!! negation", "sender==!!joe@example.com", 0 },
	{ "!!( ) negation", "client_address=!!(10.0.0.0/8)", 1 },
	{ "same attribute OR'ed", "sender==a@b.c; sender==joe@example.com", 1 },
	{ "different attributes AND'ed", "sender==joe@example.com; sasl_username==bob", 0 },
	{ "negations AND'ed", "sender!=a@b.c; sender!=joe@example.com", 0 },
	{ "$$attribute equal", "client_name==$$helo_name", 1 },
	{ "$$attribute with = is ==", "sender_domain=$$recipient_domain", 0 },
	{ "$$inline table hit", "sender=$$inline:{ joe@example.com=x }", 1 },
	{ "$$table domain order", "sender_domain==$$inline:{ .com=x }", 1 },
	{ "$$table address order", "sender=$$inline:{ example.com=x }", 1 },
	{ "$$table miss", "sasl_username=$$inline:{ bob=x }", 0 },
	{ "!= $$table miss", "sasl_username!=$$inline:{ bob=x }", 1 },
	{ "$$cidr table", "client_address=$$inline:{ 192.0.2.77=x }", 1 },
	{ "no items", "", 1 },
};

static void test_operators(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const struct mcase *c = &match_cases[i];
		char *text = xasprintf("id=t; %s; action=DUNNO\n", c->items);
		struct rl_rules *r = parse_ok(text);
		int got = rl_rule_matches(r, rl_rules_get(r, 0), get_attr, (void *)REQ);
		if (got != c->want)
			fail_msg("%s: %s -> %d, want %d", c->name, c->items, got, c->want);
		rl_rules_free(&r);
		free(text);
	}
}

struct acase {
	const char *text;
	enum rl_kind kind;
	const char *action;
	const char *keys;	/* comma-joined */
	long long max, window_s;
};

static const struct acase action_cases[] = {
	{ "action=OK", RL_KIND_ACCESS, "OK", NULL, 0, 0 },
	{ "action=dunno", RL_KIND_ACCESS, "dunno", NULL, 0, 0 },
	{ "action=REJECT", RL_KIND_ACCESS, "REJECT", NULL, 0, 0 },
	{ "action=REJECT go away", RL_KIND_ACCESS, "REJECT go away", NULL, 0, 0 },
	{ "action=DEFER later", RL_KIND_ACCESS, "DEFER later", NULL, 0, 0 },
	{ "action=DEFER_IF_PERMIT x", RL_KIND_ACCESS, "DEFER_IF_PERMIT x", NULL, 0, 0 },
	{ "action=DEFER_IF_REJECT x", RL_KIND_ACCESS, "DEFER_IF_REJECT x", NULL, 0, 0 },
	{ "action=450 4.7.1 slow down", RL_KIND_ACCESS, "450 4.7.1 slow down", NULL, 0, 0 },
	{ "action=554 5.7.1 no", RL_KIND_ACCESS, "554 5.7.1 no", NULL, 0, 0 },
	{ "action=HOLD", RL_KIND_ACCESS, "HOLD", NULL, 0, 0 },
	{ "action=DISCARD spam", RL_KIND_ACCESS, "DISCARD spam", NULL, 0, 0 },
	{ "action=FILTER smtp:[127.0.0.1]:10025", RL_KIND_ACCESS, "FILTER smtp:[127.0.0.1]:10025", NULL, 0, 0 },
	{ "action=PREPEND X-Rate: high", RL_KIND_ACCESS, "PREPEND X-Rate: high", NULL, 0, 0 },
	{ "action=REDIRECT a@b.c", RL_KIND_ACCESS, "REDIRECT a@b.c", NULL, 0, 0 },
	{ "action=BCC a@b.c", RL_KIND_ACCESS, "BCC a@b.c", NULL, 0, 0 },
	{ "action=WARN hmm", RL_KIND_ACCESS, "WARN hmm", NULL, 0, 0 },
	{ "action=greylist", RL_KIND_GREYLIST, NULL, NULL, 0, 0 },
	{ "action=rate(sasl_username/100/3600/450 4.7.1 too many)", RL_KIND_RATE,
	  "450 4.7.1 too many", "sasl_username", 100, 3600 },
	{ "action=RATE( client_net / 5 / 60 / DEFER slow )", RL_KIND_RATE, "DEFER slow", "client_net", 5, 60 },
	{ "action=rcpt(sasl_username,recipient_domain/500/86400/REJECT a/b (c))", RL_KIND_RCPT,
	  "REJECT a/b (c)", "sasl_username,recipient_domain", 500, 86400 },
	{ "action=size(client_address/1572864/3600/450 4.7.1 max 1.5mb)", RL_KIND_SIZE,
	  "450 4.7.1 max 1.5mb", "client_address", 1572864, 3600 },
	{ "action=rate(global/1000/60/DEFER busy)", RL_KIND_RATE, "DEFER busy", "global", 1000, 60 },
};

static void test_actions(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(action_cases) / sizeof(action_cases[0]); i++) {
		const struct acase *c = &action_cases[i];
		char *text = xasprintf("id=a%zu; sender=~x; %s\n", i, c->text);
		struct rl_rules *r = parse_ok(text);
		const struct rl_rule *rule = rl_rules_get(r, 0);
		assert_int_equal(rule->kind, c->kind);
		if (c->action)
			assert_string_equal(rule->action, c->action);
		else
			assert_null(rule->action);
		if (c->keys) {
			struct sbuf b;
			sbuf_init(&b);
			for (size_t k = 0; k < rule->limit.nkeys; k++)
				sbuf_printf(&b, "%s%s", k ? "," : "", rule->limit.keys[k]);
			assert_string_equal(b.buf, c->keys);
			sbuf_free(&b);
			assert_int_equal(rule->limit.max, c->max);
			assert_int_equal(rule->limit.window_s, c->window_s);
		}
		rl_rules_free(&r);
		free(text);
	}
}

static void test_lines(void **state)
{
	(void)state;
	const char *text =
		"# a comment\n"
		"\n"
		"id=R1; sender==a@b.c; action=REJECT one   # trailing comment\n"
		"id=R2\n"
		"\tclient_address=192.0.2.0/24\n"
		"    sasl_username=~^joe$\n"
		"\taction=rate(sasl_username/3/60/DEFER slow)\n"
		"id=R3; sender==x@y.z; \\\n"
		"  action=DUNNO\n"
		"action=OK\r\n";
	struct rl_rules *r = parse_ok(text);
	assert_int_equal(rl_rules_count(r), 4);
	const struct rl_rule *r1 = rl_rules_get(r, 0), *r2 = rl_rules_get(r, 1);
	assert_string_equal(r1->id, "R1");
	assert_string_equal(r1->action, "REJECT one");
	assert_int_equal(r1->lineno, 3);
	assert_string_equal(r2->id, "R2");
	assert_int_equal(r2->lineno, 4);
	assert_int_equal(r2->kind, RL_KIND_RATE);
	assert_true(rl_rule_matches(r, r2, get_attr, (void *)REQ));
	assert_string_equal(rl_rules_get(r, 2)->action, "DUNNO");
	assert_string_equal(rl_rules_get(r, 3)->id, "line10");
	assert_string_equal(rl_rules_get(r, 3)->action, "OK");
	assert_null(rl_rules_get(r, 4));
	rl_rules_free(&r);
}

struct ecase {
	const char *text;
	const char *err;	/* expected prefix "rules.cf:N: ..." substring */
};

static const struct ecase error_cases[] = {
	{ "id=a; sender==x\n", "rules.cf:1: rule without action=" },
	{ "\n\nid=a; sender=~/(/; action=OK\n", "rules.cf:3: sender=~/(/: bad regular expression" },
	{ "id=a; action=OK\nid=a; action=OK\n", "rules.cf:2: duplicate id a (first at line 1)" },
	{ "id=a\n\tsender==x\n\tbogus stuff\n\taction=OK\n", "rules.cf:3: bogus stuff: expected an operator" },
	{ "id=a; client_address=300.1.1.1; action=OK\n", "rules.cf:1: client_address=300.1.1.1: expected an address" },
	{ "id=a; client_address=10.0.0.0/33; action=OK\n", "rules.cf:1: client_address=10.0.0.0/33: expected an address" },
	{ "id=a; size>=big; action=OK\n", "expected an integer" },
	{ "id=a; action=FOO\n", "action=FOO: not an access(5) action" },
	{ "id=a; action=jump(R2)\n", "not supported" },
	{ "id=a; action=rate5321(sender/1/2/REJECT)\n", "not supported" },
	{ "id=a; action=rate(sender/0/60/REJECT)\n", "the limit must be a positive integer" },
	{ "id=a; action=rate(sender/10/x/REJECT)\n", "the time must be a positive number" },
	{ "id=a; action=rate(sender/10/60)\n", "expected KEY/N/SECONDS/ACTION" },
	{ "id=a; action=rate(sender/10/60/SLOW)\n", "not an access(5) action" },
	{ "id=a; action=rate($$sender/10/60/REJECT)\n", "old $$ syntax" },
	{ "id=a; action=rate(global,sender/10/60/REJECT)\n", "global is a key by itself" },
	{ "id=a; action=rate(sender/10/60/REJECT\n", "unbalanced parentheses" },
	{ "id=a; action=PREPEND\n", "needs a text" },
	{ "id=a; action=OK then\n", "take no text" },
	{ "id=a; action=OK; action=DUNNO\n", "a second action" },
	{ "id=a; id=b; action=OK\n", "a second id" },
	{ "id=a; rbl=zen.spamhaus.org; action=OK\n", "postfwd item rbl is not supported" },
	{ "&&MACRO { sender==x };\n", "postfwd macros" },
	{ "  id=a; action=OK\n", "rules.cf:1: continuation line with nothing to continue" },
	{ "id=a; sender=$$nosuchtype:x; action=OK\n", "rules.cf:1: sender=$$nosuchtype:x:" },
	{ "id=a; size<$$x:y; action=OK\n", "a table reference works with" },
	{ "id=a b; action=OK\n", "an id is 1-64 characters" },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct ecase *c = &error_cases[i];
		char *err = NULL;
		struct rl_rules *r = rl_rules_parse(c->text, strlen(c->text), "rules.cf", &err);
		if (r)
			fail_msg("case %zu parsed: %s", i, c->text);
		if (!strstr(err, c->err))
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, c->err);
		free(err);
	}
	/* NUL byte */
	char *err = NULL;
	assert_null(rl_rules_parse("id=a; action=OK\n\0x\n", 19, "rules.cf", &err));
	assert_non_null(strstr(err, "rules.cf:2: NUL byte"));
	free(err);
	/* a missing file */
	err = NULL;
	assert_null(rl_rules_load("/nonexistent/rules.cf", &err));
	assert_non_null(strstr(err, "/nonexistent/rules.cf"));
	free(err);
}

static void test_action_classes(void **state)
{
	(void)state;
	assert_true(rl_action_is_refusal("REJECT x"));
	assert_true(rl_action_is_refusal("defer_if_permit x"));
	assert_true(rl_action_is_refusal("450 4.7.1 x"));
	assert_false(rl_action_is_refusal("HOLD"));
	assert_false(rl_action_is_refusal("4501 x"));
	assert_true(rl_action_takes_text("HOLD"));
	assert_false(rl_action_takes_text("OK"));
	assert_false(rl_action_takes_text("PREPEND X: y"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_operators),
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_action_classes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
