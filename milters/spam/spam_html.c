/*
 * spam_html: HTML text and links through libxml2. See spam_html.h.
 */
#include "milters/spam/spam_html.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <string.h>
#include <strings.h>


void spam_html_init(void)
{
	xmlInitParser();
}

static int is_block(const char *n)
{
	static const char *const blocks[] = {
		"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table",
		"ul", "ol", "blockquote", "pre", "hr", "title", "td", "th", "dd", "dt", NULL,
	};
	for (int i = 0; blocks[i]; i++)
		if (!strcasecmp(n, blocks[i]))
			return 1;
	return 0;
}

struct walk {
	struct sbuf *text;
	void (*link)(const char *, size_t, void *);
	void *arg;
	struct spam_html_info *info;
	int skip;		/* inside script/style: their text is not text */
	int depth;
};

static void add_text(struct walk *w, const char *s, size_t len)
{
	/* collapse runs of white space; lines are kept by the block logic */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f') {
			if (w->text->len && w->text->buf[w->text->len - 1] != ' ' &&
			    w->text->buf[w->text->len - 1] != '\n')
				sbuf_addc(w->text, ' ');
			continue;
		}
		size_t run = 1;
		while (i + run < len && !strchr(" \t\r\n\f", s[i + run]))
			run++;
		sbuf_add(w->text, s + i, run);
		w->info->text_bytes += run;
		i += run - 1;
	}
}

static void newline(struct walk *w)
{
	if (w->text->len && w->text->buf[w->text->len - 1] != '\n') {
		if (w->text->buf[w->text->len - 1] == ' ')
			w->text->len--;
		sbuf_addc(w->text, '\n');
	}
}

static void attr_link(struct walk *w, const xmlChar **atts, const char *attr)
{
	for (size_t i = 0; atts && atts[i]; i += 2) {
		if (strcasecmp((const char *)atts[i], attr) || atts[i + 1] == NULL)
			continue;
		const char *s = (const char *)atts[i + 1];
		size_t l = strlen(s);
		/* trim white space libxml2 leaves in attribute values */
		while (l && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
			s++;
			l--;
		}
		while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\n' || s[l - 1] == '\r'))
			l--;
		if (l)
			w->link(s, l, w->arg);
	}
}

static struct walk *walk_of(void *ctx)
{
	return ((xmlParserCtxtPtr)ctx)->_private;
}

/* SAX: no tree is built (the DOM cost more than everything else here). */
static void on_start(void *ctx, const xmlChar *xname, const xmlChar **atts)
{
	struct walk *w = walk_of(ctx);
	const char *name = (const char *)xname;
	w->info->tags++;
	w->depth++;
	if (!strcasecmp(name, "script")) {
		w->info->scripts++;
		attr_link(w, atts, "src");
		w->skip++;
		return;
	}
	if (!strcasecmp(name, "style")) {
		w->skip++;
		return;
	}
	switch (name[0] | 0x20) {
	case 'i':
		if (!strcasecmp(name, "img")) {
			w->info->images++;
			attr_link(w, atts, "src");
		} else if (!strcasecmp(name, "iframe")) {
			w->info->iframes++;
			attr_link(w, atts, "src");
		}
		break;
	case 'a':
		if (!strcasecmp(name, "a") || !strcasecmp(name, "area")) {
			w->info->links++;
			attr_link(w, atts, "href");
		}
		break;
	case 'l':
		if (!strcasecmp(name, "link")) {
			w->info->links++;
			attr_link(w, atts, "href");
		}
		break;
	case 'f':
		if (!strcasecmp(name, "form")) {
			w->info->forms++;
			attr_link(w, atts, "action");
		} else if (!strcasecmp(name, "frame")) {
			w->info->iframes++;
			attr_link(w, atts, "src");
		}
		break;
	case 'e':
	case 's':
		if (!strcasecmp(name, "embed") || !strcasecmp(name, "source")) {
			w->info->iframes++;
			attr_link(w, atts, "src");
		}
		break;
	default:
		break;
	}
	attr_link(w, atts, "background");
	if (is_block(name))
		newline(w);
}

static void on_end(void *ctx, const xmlChar *xname)
{
	struct walk *w = walk_of(ctx);
	const char *name = (const char *)xname;
	w->depth--;
	if (!strcasecmp(name, "script") || !strcasecmp(name, "style")) {
		if (w->skip > 0)
			w->skip--;
		return;
	}
	if (is_block(name))
		newline(w);
}

static void on_chars(void *ctx, const xmlChar *ch, int len)
{
	struct walk *w = walk_of(ctx);
	if (w->skip == 0 && len > 0)
		add_text(w, (const char *)ch, (size_t)len);
}

static void no_link(const char *u, size_t l, void *a)
{
	(void)u;
	(void)l;
	(void)a;
}

void spam_html_render(const char *html, size_t len, struct sbuf *text,
		      void (*link)(const char *url, size_t len, void *arg), void *arg,
		      struct spam_html_info *info_out)
{
	struct spam_html_info dummy;
	struct spam_html_info *info = info_out ? info_out : &dummy;
	memset(info, 0, sizeof(*info));
	if (len == 0 || len > (size_t)0x7fffffff)
		return;
	htmlParserCtxtPtr ctxt = htmlNewParserCtxt();
	if (ctxt == NULL)
		return;
	struct walk w = { text, link ? link : no_link, arg, info, 0, 0 };
	htmlSAXHandler sax;
	memset(&sax, 0, sizeof(sax));
	sax.startElement = on_start;
	sax.endElement = on_end;
	sax.characters = on_chars;
	sax.cdataBlock = on_chars;
	memcpy(ctxt->sax, &sax, sizeof(sax));
	ctxt->_private = &w;
	htmlDocPtr doc = htmlCtxtReadMemory(ctxt, html, (int)len, NULL, "UTF-8",
					    HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
					    HTML_PARSE_NOWARNING | HTML_PARSE_NONET);
	if (doc)
		xmlFreeDoc(doc);	/* none without SAX tree callbacks; defensive */
	htmlFreeParserCtxt(ctxt);
	newline(&w);
}
