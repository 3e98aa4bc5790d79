/*
 * test_reason: lib/reason, the stable reason codes of docs/EVENTS.md
 * (sluiced's sluice_rejects_total{reason} and `sluice report` use them):
 * RFC 7372 codes first, then the reply text, then the content stages.
 */
#include "lib/reason.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_codes(void **state)
{
	(void)state;
	static const struct {
		const char *stage, *dsn, *text, *want;
	} cases[] = {
		{ "RCPT", "5.1.1", "<nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
		  "unknown_recipient" },
		{ "RCPT", "5.7.1", "<a@example.net>: Relay access denied", "relay_denied" },
		{ "RCPT", "5.7.23", "Message rejected due to: SPF fail", "spf" },	/* the DSN decides */
		{ "END-OF-MESSAGE", "5.7.20", "no valid signature", "dkim" },
		{ "CONNECT", "4.7.25", "Client host rejected: cannot find your hostname", "reverse_dns" },
		{ "RCPT", "4.7.1", "Rate limit exceeded (limit OUT-USER: 101 messages in 3600 s)", "ratelimit" },
		{ "RCPT", "4.7.1", "Greylisted, try again later", "greylist" },
		{ "DATA", "5.3.4", "Message size exceeds fixed limit", "size" },
		{ "END-OF-MESSAGE", "5.7.1", "Spam message rejected", "spam" },
		{ "MAIL", "5.1.8", "<a@b>: Sender address rejected: Domain not found", "unknown_domain" },
		{ "header", "5.7.1", "no thanks", "content" },
		{ "RCPT", "5.7.1", "go away", "other" },
		{ NULL, NULL, NULL, "other" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_string_equal(reason_code(cases[i].stage, cases[i].dsn, cases[i].text), cases[i].want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
