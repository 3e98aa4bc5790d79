/*
 * spam_url: URLs found in message text, normalised for uri rules and
 * domain lists.
 * Owns: finding URLs in plain text (scheme://, www., mailto:), and
 * normalising one (percent-decoding, lower-case host, userinfo and port
 * removed, IDNA: UTF-8 labels to punycode "xn--" form, registered domain
 * via libpsl).
 * Leaves: where the text comes from (spam_mime, spam_html) to the callers.
 * Input is untrusted: every length is capped (SPAM_URL_MAX_BYTES).
 */
#ifndef SLUICE_SPAM_URL_H
#define SLUICE_SPAM_URL_H

#include <stddef.h>

#define SPAM_URL_MAX_BYTES 4096

struct spam_url {
	char *url;	/* normalised: scheme://host/path, host lower-case ASCII (punycode) */
	char *host;	/* ASCII host (punycode for IDN), or an IP literal */
	char *domain;	/* registered domain (libpsl), or the host itself for IPs/unknowns */
	char *raw;	/* as found (white space and controls dropped), for uri rules that
			 * look at obfuscation (%-escapes, userinfo, ...) */
};

/*
 * spam_url_normalise - raw URL text (as found) -> *out (all strings new,
 * free with spam_url_clear). "www.x" gets "http://"; "mailto:a@b" keeps
 * the address, host = the domain. Returns 0, or -1 when there is no usable
 * host (out untouched).
 */
int spam_url_normalise(const char *raw, size_t len, struct spam_url *out);
void spam_url_clear(struct spam_url *u);

/*
 * spam_url_scan_text - call cb(raw, len, arg) for every URL-looking run
 * in text (borrowed pointers into text, valid during the call).
 */
void spam_url_scan_text(const char *text, size_t len,
			void (*cb)(const char *raw, size_t len, void *arg), void *arg);

/*
 * spam_url_punycode - RFC 3492 encoding of one UTF-8 label (no "xn--").
 * Returns a new string, or NULL for invalid UTF-8 or an over-long label.
 */
char *spam_url_punycode(const char *label, size_t len);

/* spam_url_registered_domain - libpsl's registrable domain of an ASCII host; new string or NULL. */
char *spam_url_registered_domain(const char *host);

#endif
