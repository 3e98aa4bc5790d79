/*
 * spam_html: HTML text and links through libxml2. See spam_html.h.
 */
#include "milters/spam/spam_html.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <string.h>
#include <strings.h>

/* Deep HTML nests are walked iteratively by libxml2's tree; our walk is capped. */
#define HTML_MAX_DEPTH 256

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
};

static void add_text(struct walk *w, const char *s)
{
	/* collapse runs of white space; lines are kept by the block logic */
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f') {
			if (w->text->len && w->text->buf[w->text->len - 1] != ' ' &&
			    w->text->buf[w->text->len - 1] != '\n')
				sbuf_addc(w->text, ' ');
			continue;
		}
		sbuf_addc(w->text, (char)c);
		w->info->text_bytes++;
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

static void attr_link(struct walk *w, xmlNode *n, const char *attr)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)attr);
	if (v == NULL)
		return;
	size_t l = strlen((const char *)v);
	/* trim white space libxml2 leaves in attribute values */
	const char *s = (const char *)v;
	while (l && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
		s++;
		l--;
	}
	while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\n' || s[l - 1] == '\r'))
		l--;
	if (l)
		w->link(s, l, w->arg);
	xmlFree(v);
}

static void walk(struct walk *w, xmlNode *n, int depth)
{
	for (; n; n = n->next) {
		if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
			if (n->content)
				add_text(w, (const char *)n->content);
			continue;
		}
		if (n->type != XML_ELEMENT_NODE || n->name == NULL)
			continue;
		const char *name = (const char *)n->name;
		w->info->tags++;
		if (!strcasecmp(name, "script")) {
			w->info->scripts++;
			attr_link(w, n, "src");
			continue;
		}
		if (!strcasecmp(name, "style"))
			continue;
		if (!strcasecmp(name, "img")) {
			w->info->images++;
			attr_link(w, n, "src");
		} else if (!strcasecmp(name, "a") || !strcasecmp(name, "area") ||
			   !strcasecmp(name, "link")) {
			w->info->links++;
			attr_link(w, n, "href");
		} else if (!strcasecmp(name, "form")) {
			w->info->forms++;
			attr_link(w, n, "action");
		} else if (!strcasecmp(name, "iframe") || !strcasecmp(name, "frame") ||
			   !strcasecmp(name, "embed") || !strcasecmp(name, "source")) {
			w->info->iframes++;
			attr_link(w, n, "src");
		}
		attr_link(w, n, "background");
		int block = is_block(name);
		if (block)
			newline(w);
		if (depth < HTML_MAX_DEPTH)
			walk(w, n->children, depth + 1);
		if (block)
			newline(w);
	}
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
	htmlDocPtr doc = htmlReadMemory(html, (int)len, NULL, "UTF-8",
					HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
					HTML_PARSE_NOWARNING | HTML_PARSE_NONET |
					HTML_PARSE_COMPACT);
	if (doc == NULL)
		return;
	struct walk w = { text, link ? link : no_link, arg, info };
	walk(&w, xmlDocGetRootElement(doc), 0);
	newline(&w);
	xmlFreeDoc(doc);
}
