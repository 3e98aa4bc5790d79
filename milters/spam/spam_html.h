/*
 * spam_html: text and links of an HTML part, with libxml2's HTML parser.
 * Owns: rendering to plain text (script/style/head dropped, block elements
 * end a line, entities decoded by libxml2), collecting the values of href,
 * src, action and background attributes, and a few counts body rules and
 * the default rules use (images, forms, hidden text).
 * Leaves: charset (the input is UTF-8 from spam_mime) and URL
 * normalisation (spam_url) to the callers.
 * libxml2 must have been initialised (spam_html_init) before threads start.
 */
#ifndef SLUICE_SPAM_HTML_H
#define SLUICE_SPAM_HTML_H

#include <stddef.h>

#include "lib/util.h"

struct spam_html_info {
	unsigned images, forms, links, scripts, iframes;
	unsigned tags;		/* elements seen */
	size_t text_bytes;	/* rendered text bytes */
};

/* spam_html_init - once per process (xmlInitParser). */
void spam_html_init(void);

/*
 * spam_html_render - parse html (UTF-8, len bytes, not NUL-terminated) and
 * append its text to *text; call link(url, len, arg) for each link
 * attribute value (borrowed during the call). *info_out is filled (may be
 * NULL). Never fails: broken HTML gives what libxml2 recovers.
 */
void spam_html_render(const char *html, size_t len, struct sbuf *text,
		      void (*link)(const char *url, size_t len, void *arg), void *arg,
		      struct spam_html_info *info_out);

#endif
