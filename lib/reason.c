/*
 * reason: see reason.h. The table is docs/EVENTS.md's "Reason codes".
 */
#include "lib/reason.h"

#include <stddef.h>
#include <string.h>

const char *reason_code(const char *stage, const char *dsn, const char *text)
{
	/* RFC 7372 enhanced status codes of the authentication checks */
	static const struct {
		const char *dsn, *code;
	} dsns[] = { { "5.7.20", "dkim" }, { "5.7.21", "dkim" }, { "5.7.22", "dkim" },
		     { "5.7.23", "spf" },  { "4.7.23", "spf" },  { "4.7.24", "spf" },
		     { "5.7.24", "spf" },  { "5.7.25", "reverse_dns" }, { "4.7.25", "reverse_dns" } };
	for (size_t i = 0; dsn && i < sizeof dsns / sizeof dsns[0]; i++)
		if (!strcmp(dsn, dsns[i].dsn))
			return dsns[i].code;
	static const struct {
		const char *needle, *code;
	} rules[] = {
		{ "User unknown", "unknown_recipient" },
		{ "Relay access denied", "relay_denied" },
		{ "Domain not found", "unknown_domain" },
		{ "need fully-qualified", "non_fqdn" },
		{ "blocked using", "dnsbl" },
		{ "Helo command rejected", "helo" },
		{ "Message size exceeds", "size" },
		{ "SPF", "spf" },
		{ "Message rejected due to: ", "spf" },	/* policyd-spf / sluice-spf reason_message */
		{ "Message deferred due to: ", "spf" },
		{ "DMARC", "dmarc" },
		{ "DKIM", "dkim" },
		{ "spam", "spam" },
		{ "Spam", "spam" },
		{ "greylist", "greylist" },
		{ "Greylist", "greylist" },
		{ "rate limit", "ratelimit" },
		{ "Rate limit", "ratelimit" },
		{ "too many", "ratelimit" },
		{ "(limit ", "ratelimit" },	/* sluice-ratelimit appends "(limit ID: N ... per S s ...)" */
		{ "Too many", "ratelimit" },
		{ "pipelining", "pipelining" },
		{ "Protocol error", "protocol" },
		{ "bare <LF>", "protocol" },
		{ "Bare <LF>", "protocol" },
		{ "Client host rejected", "client" },
		{ "Sender address rejected", "sender" },
		{ "Recipient address rejected", "recipient" },
		{ "Service unavailable", "access" },
		{ "Access denied", "access" },
	};
	if (!text)
		text = "";
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
		if (strstr(text, rules[i].needle))
			return rules[i].code;
	if (stage && (!strcmp(stage, "header") || !strcmp(stage, "body")))
		return "content";
	return "other";
}
