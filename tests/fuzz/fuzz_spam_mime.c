/*
 * fuzz_spam_mime: untrusted bytes as a whole message into sluice-spam's
 * analysis: GMime parts and decoding, libxml2 HTML text and links, URL
 * normalisation, the Received chain, then a small rule set of every kind
 * over the result (pseudo headers included). Also the bytes as one URL and
 * as one HTML document. Nothing may crash, leak or hang.
 *
 * Needs GMime/libxml2/Vectorscan flags and libd-spam.a (see docs/SPAM.md
 * for the build command); without the GMime headers it builds as a stub
 * that says so, so `make fuzz` keeps going.
 */
#if __has_include(<gmime/gmime.h>)
#include "milters/spam/spam_html.h"
#include "milters/spam/spam_mime.h"
#include "milters/spam/spam_rules.h"
#include "milters/spam/spam_scan.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct spam_rules *rules;

static const char rules_text[] =
	"header H1 Subject =~ /free/i\nheader H2 From:addr =~ /@example\\.com$/\n"
	"header H3 exists:X-Mailer\nheader H4 X-Spam-Relays-Untrusted =~ /rdns= /\n"
	"header H5 X-Sluice-Mime =~ /html=[1-9]/\nheader H6 X-Sluice-Attachments =~ /\\.exe$/m\n"
	"header H7 X-Sluice-Date =~ /skew_h=-/\nheader H8 ToCc:name =~ /a/\n"
	"body B1 /money/i\nbody B2 /(\\w)\\1{3}/\nbody B3 /a/\ntflags B3 multiple maxhits=50\n"
	"rawbody R1 /<a\\s/i\nuri U1 /^https?:\\/\\/[^\\/]*\\.biz/\nfull F1 /^Received:/m\n"
	"meta M1 (H1 + B1 + U1 > 1) && !H3 || B3 > 10\n";

static void link_cb(const char *url, size_t len, void *arg)
{
	(void)arg;
	struct spam_url u;
	if (spam_url_normalise(url, len, &u) == 0)
		spam_url_clear(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (rules == NULL) {
		spam_mime_init();
		char *err = NULL;
		rules = spam_rules_new(0);
		if (spam_rules_load_string(rules, rules_text, "fuzz.cf", &err) < 0 ||
		    spam_rules_compile(rules, &err) < 0)
			abort();
	}
	struct spam_mime_limits lim;
	spam_mime_limits_default(&lim);
	lim.max_scan_bytes = 256 * 1024;
	struct spam_mime *m = spam_mime_parse((const char *)data, size, &lim);
	struct spam_env env = { .client_ip = "192.0.2.1", .helo = "h", .now = 1700000000 };
	struct spam_result res;
	spam_scan(rules, m, &env, &res);
	spam_result_clear(&res);
	spam_mime_free(&m);

	struct spam_url u;
	if (spam_url_normalise((const char *)data, size, &u) == 0)
		spam_url_clear(&u);
	struct sbuf text;
	sbuf_init(&text);
	spam_html_render((const char *)data, size, &text, link_cb, NULL, NULL);
	sbuf_free(&text);
	return 0;
}
#else
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int said;
	(void)data;
	(void)size;
	if (!said++)
		fprintf(stderr, "fuzz_spam_mime: built without GMime flags: a stub (docs/SPAM.md)\n");
	return 0;
}
#endif
