/*
 * spam_mime: one message taken apart for scoring, with GMime 3.
 * Owns: the top-level header list (raw unfolded values and RFC 2047
 * decoded UTF-8 values), every MIME part (type, charset, transfer
 * encoding, attachment name), the text of text/plain and text/html parts
 * decoded to UTF-8 (rendered through spam_html for HTML, raw for rawbody
 * rules), the URLs of the message (spam_url, de-duplicated), and the
 * Received chain.
 * Limits: only the first max_scan_bytes are parsed (the rest passes
 * unscanned, flag SPAM_MIME_TRUNCATED); at most max_parts parts and
 * max_depth nesting levels (GMime parses nested multiparts recursively,
 * so input past the max_parts-th multipart/message header is not given to
 * it at all), max_urls URLs, max_headers headers.
 * Leaves: rules and scoring to spam_rules/spam_scan, the milter to main.c.
 * Input is untrusted: a broken message gives a result, never a crash.
 */
#ifndef SLUICE_SPAM_MIME_H
#define SLUICE_SPAM_MIME_H

#include <stddef.h>

#include "milters/spam/spam_html.h"
#include "milters/spam/spam_url.h"

struct spam_mime_limits {
	size_t max_scan_bytes;	/* spam_max_scan_size, default 1 MiB */
	size_t max_parts;	/* default 200 */
	size_t max_depth;	/* default 20 */
	size_t max_urls;	/* default 1000 */
	size_t max_headers;	/* default 1000 */
};
/* spam_mime_limits_default - the defaults above. */
void spam_mime_limits_default(struct spam_mime_limits *l);

struct spam_hdr {
	char *name;	/* as written */
	char *raw;	/* unfolded value, leading white space removed, no CRLF */
	char *value;	/* RFC 2047 decoded, valid UTF-8 */
};

struct spam_part {
	char *type;	/* "text/plain", lower case ("text/plain" when absent) */
	char *charset;	/* lower case, or NULL */
	char *encoding;	/* Content-Transfer-Encoding, lower case, or NULL */
	char *filename;	/* attachment name (UTF-8), or NULL */
	int attachment;	/* Content-Disposition: attachment, or a file name */
	unsigned depth;	/* 0 = the message body itself */
	size_t decoded_bytes;	/* text parts: UTF-8 bytes after decoding */
};

struct spam_relay {
	char *ip;	/* from the first [...] of the from clause, or NULL */
	char *rdns;	/* the reverse name the receiver recorded, or NULL */
	char *helo;	/* the name after "from", or NULL */
	char *by;	/* the receiver, or NULL */
};

#define SPAM_MIME_TRUNCATED	0x01	/* message larger than max_scan_bytes */
#define SPAM_MIME_TOO_MANY_PARTS 0x02
#define SPAM_MIME_TOO_DEEP	0x04
#define SPAM_MIME_BAD_CHARSET	0x08	/* a charset iconv does not know (read as Latin-1/UTF-8) */
#define SPAM_MIME_NO_BODY	0x10	/* GMime found no MIME structure at all */
#define SPAM_MIME_BAD_HEADER	0x20	/* a header line without a colon, or too many headers */

struct spam_mime {
	size_t size;		/* whole message, bytes */
	char *scanned;		/* the first min(size, max_scan_bytes) bytes, NUL-terminated */
	size_t scanned_len;
	struct spam_hdr *hdrs;
	size_t nhdrs;
	size_t body_offset;	/* offset of the body in scanned */
	char *text;		/* rendered text of all text parts (UTF-8) */
	char *rawtext;		/* decoded text parts, HTML not rendered (UTF-8) */
	struct spam_part *parts;
	size_t nparts;
	struct spam_url *urls;
	size_t nurls;
	struct spam_relay *relays;	/* Received headers, newest (top) first */
	size_t nrelays;
	unsigned text_parts, html_parts, attachments;
	struct spam_html_info html;	/* summed over HTML parts */
	unsigned flags;			/* SPAM_MIME_* */
};

/* spam_mime_init - once per process before threads (g_mime_init, libxml2). */
void spam_mime_init(void);

/*
 * spam_mime_parse - msg (len bytes, any content) -> new analysis. lim may
 * be NULL (defaults). Never fails; free with spam_mime_free.
 */
struct spam_mime *spam_mime_parse(const char *msg, size_t len, const struct spam_mime_limits *lim);
void spam_mime_free(struct spam_mime **m);

/*
 * spam_mime_header - the i-th (0-based) header named name
 * (case-insensitive), or NULL. Borrowed until spam_mime_free.
 */
const struct spam_hdr *spam_mime_header(const struct spam_mime *m, const char *name, size_t i);

/* spam_relay_parse - one Received value -> *out (strings new). */
void spam_relay_parse(const char *value, struct spam_relay *out);
void spam_relay_clear(struct spam_relay *r);

#endif
