/*
 * fuzz_spam_rules: untrusted bytes as a rule file (SpamAssassin syntax)
 * into sluice-spam's rule parser and compiler (if blocks, ReplaceTags,
 * metas, PCRE2, Vectorscan), then the compiled set over a fixed message.
 * Errors are fine; crashes, leaks and hangs are not.
 *
 * Needs GMime/libxml2/Vectorscan flags and libd-spam.a (see docs/SPAM.md);
 * without the GMime headers it builds as a stub that says so.
 */
#if __has_include(<gmime/gmime.h>)
#include "milters/spam/spam_mime.h"
#include "milters/spam/spam_rules.h"
#include "milters/spam/spam_scan.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct spam_mime *msg;

static const char message[] =
	"Received: from a.example (a.example [192.0.2.9]) by mx.example.org; Mon, 1 Jan 2024 00:00:00 +0000\n"
	"From: \"Free\" <free@example.com>\nTo: b@example.org\nSubject: free money\n"
	"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
	"free money now http://x.example.biz/a\n--b\nContent-Type: text/html\n\n"
	"<p>free <a href=\"http://y.example.net/\">money</a></p>\n--b--\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (msg == NULL) {
		spam_mime_init();
		msg = spam_mime_parse(message, sizeof(message) - 1, NULL);
	}
	if (size > 16384)
		return 0;	/* Vectorscan compile time grows with the pattern text */
	char *text = xstrndup((const char *)data, size);	/* NUL ends the file, as conf_read_file rejects it */
	struct spam_rules *rs = spam_rules_new(0);
	char *err = NULL;
	if (spam_rules_load_string(rs, text, "fuzz.cf", &err) == 0 && spam_rules_compile(rs, &err) == 0) {
		char *s = spam_rules_summary(rs);
		free(s);
		struct spam_result res;
		spam_scan(rs, msg, NULL, &res);
		spam_result_clear(&res);
	}
	free(err);
	spam_rules_free(&rs);
	free(text);
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
		fprintf(stderr, "fuzz_spam_rules: built without GMime flags: a stub (docs/SPAM.md)\n");
	return 0;
}
#endif
