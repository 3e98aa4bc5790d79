/*
 * spam_mime: message analysis with GMime 3. See spam_mime.h.
 */
#include "milters/spam/spam_mime.h"
#include "lib/util.h"

#include <gmime/gmime.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void spam_mime_limits_default(struct spam_mime_limits *l)
{
	l->max_scan_bytes = 1024 * 1024;
	l->max_parts = 200;
	l->max_depth = 20;
	l->max_urls = 1000;
	l->max_headers = 1000;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
	g_mime_init();
	spam_html_init();
}

void spam_mime_init(void)
{
	pthread_once(&init_once, do_init);
}

/* ---- headers, parsed from the raw bytes (GMime reorders nothing, but we want raw values) ---- */

static char *utf8_valid(const char *s, size_t len)
{
	if (g_utf8_validate(s, (gssize)len, NULL))
		return xstrndup(s, len);
	gchar *v = g_utf8_make_valid(s, (gssize)len);
	char *r = xstrdup(v);
	g_free(v);
	return r;
}

static void parse_headers(struct spam_mime *m, size_t max_headers)
{
	const char *s = m->scanned, *end = s + m->scanned_len;
	size_t cap = 0;
	while (s < end) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		size_t ll = eol ? (size_t)(eol - s) : (size_t)(end - s);
		if (ll == 0 || (ll == 1 && s[0] == '\r')) {
			s += eol ? ll + 1 : ll;
			break;	/* end of header */
		}
		if (s[0] == ' ' || s[0] == '\t') {	/* continuation without a header */
			m->flags |= SPAM_MIME_BAD_HEADER;
			s += eol ? ll + 1 : ll;
			continue;
		}
		const char *colon = memchr(s, ':', ll);
		/* a line without a colon ends the header (as in RFC 5322 parsers); the body starts here */
		if (colon == NULL || colon == s) {
			m->flags |= SPAM_MIME_BAD_HEADER;
			break;
		}
		struct sbuf v;
		sbuf_init(&v);
		const char *p = colon + 1;
		const char *lend = s + ll;
		for (;;) {
			size_t n = (size_t)(lend - p);
			if (n && p[n - 1] == '\r')
				n--;
			sbuf_add(&v, p, n);
			s = lend < end ? lend + 1 : end;
			if (s < end && (*s == ' ' || *s == '\t')) {
				eol = memchr(s, '\n', (size_t)(end - s));
				lend = eol ? eol : end;
				p = s;
				continue;
			}
			break;
		}
		if (m->nhdrs >= max_headers) {
			m->flags |= SPAM_MIME_BAD_HEADER;
			sbuf_free(&v);
			continue;
		}
		if (m->nhdrs == cap) {
			cap = cap ? cap * 2 : 32;
			m->hdrs = xrealloc(m->hdrs, cap * sizeof(*m->hdrs));
		}
		struct spam_hdr *h = &m->hdrs[m->nhdrs++];
		/* name: from line start to colon, trailing white space removed */
		const char *ns = colon;
		while (ns > m->scanned && ns[-1] != '\n')
			ns--;
		size_t nl = (size_t)(colon - ns);
		while (nl && (ns[nl - 1] == ' ' || ns[nl - 1] == '\t'))
			nl--;
		h->name = xstrndup(ns, nl);
		const char *vs = v.buf ? v.buf : "";
		while (*vs == ' ' || *vs == '\t')
			vs++;
		h->raw = utf8_valid(vs, strlen(vs));
		char *dec = g_mime_utils_header_decode_text(NULL, h->raw);
		h->value = dec ? utf8_valid(dec, strlen(dec)) : xstrdup(h->raw);
		g_free(dec);
		sbuf_free(&v);
	}
	m->body_offset = (size_t)(s - m->scanned);
}

const struct spam_hdr *spam_mime_header(const struct spam_mime *m, const char *name, size_t i)
{
	for (size_t k = 0; k < m->nhdrs; k++)
		if (!ascii_strcasecmp(m->hdrs[k].name, name) && i-- == 0)
			return &m->hdrs[k];
	return NULL;
}

/* ---- Received ---- */

static int inet_pton_any(const char *s, unsigned char *bin)
{
	return inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1;
}

static char *word_after(const char *v, const char *kw)
{
	size_t kl = strlen(kw);
	for (const char *p = v; *p; p++) {
		if ((p == v || p[-1] == ' ' || p[-1] == '\t' || p[-1] == ')') &&
		    !ascii_strncasecmp(p, kw, kl)) {
			const char *w = p + kl;
			while (*w == ' ' || *w == '\t')
				w++;
			size_t n = strcspn(w, " \t;()[]");
			return n ? xstrndup(w, n) : NULL;
		}
	}
	return NULL;
}

void spam_relay_parse(const char *v, struct spam_relay *out)
{
	memset(out, 0, sizeof(*out));
	out->helo = word_after(v, "from ");
	out->by = word_after(v, "by ");
	const char *from = strstr(v, "from ");
	const char *by = NULL;
	for (const char *p = v; (p = strstr(p, "by ")) != NULL; p++)
		if (p == v || p[-1] == ' ' || p[-1] == ')' || p[-1] == '\t') {
			by = p;
			break;
		}
	const char *lim = by && from && by > from ? by : v + strlen(v);
	for (const char *p = from ? from : v; p < lim; p++) {
		if (*p != '[')
			continue;
		const char *rb = memchr(p, ']', (size_t)(lim - p));
		if (rb == NULL)
			break;
		const char *a = p + 1;
		if (!ascii_strncasecmp(a, "IPv6:", 5))
			a += 5;
		char buf[64];
		size_t n = (size_t)(rb - a);
		if (n == 0 || n >= sizeof(buf))
			continue;
		memcpy(buf, a, n);
		buf[n] = 0;
		unsigned char bin[16];
		if (inet_pton_any(buf, bin)) {
			out->ip = xstrdup(buf);
			/* rDNS: the word just before "[" inside the parentheses */
			const char *q = p;
			while (q > v && (q[-1] == ' ' || q[-1] == '\t'))
				q--;
			const char *ws = q;
			while (ws > v && ws[-1] != '(' && ws[-1] != ' ' && ws[-1] != '\t')
				ws--;
			if (ws > v && ws[-1] == '(' && q > ws && memchr(ws, '.', (size_t)(q - ws)))
				out->rdns = xstrndup(ws, (size_t)(q - ws));
			break;
		}
	}
}

void spam_relay_clear(struct spam_relay *r)
{
	free(r->ip);
	free(r->rdns);
	free(r->helo);
	free(r->by);
	memset(r, 0, sizeof(*r));
}

/* ---- MIME walk ---- */

struct walkst {
	struct spam_mime *m;
	const struct spam_mime_limits *lim;
	struct sbuf text, raw;
	size_t urlcap, partcap;
};

static void add_url(const char *raw, size_t len, void *arg)
{
	struct walkst *w = arg;
	struct spam_mime *m = w->m;
	if (m->nurls >= w->lim->max_urls)
		return;
	struct spam_url u;
	if (spam_url_normalise(raw, len, &u) < 0)
		return;
	for (size_t i = 0; i < m->nurls; i++)
		if (!strcmp(m->urls[i].url, u.url)) {
			spam_url_clear(&u);
			return;
		}
	if (m->nurls == w->urlcap) {
		w->urlcap = w->urlcap ? w->urlcap * 2 : 16;
		m->urls = xrealloc(m->urls, w->urlcap * sizeof(*m->urls));
	}
	m->urls[m->nurls++] = u;
}

static char *lower_dup(const char *s)
{
	if (s == NULL)
		return NULL;
	char *r = xstrdup(s);
	ascii_lower(r);
	return r;
}

/* decode_text - transfer + charset decoding to valid UTF-8; new string, *len_out. */
static char *decode_text(GMimePart *part, const char *charset, unsigned *flags, size_t *len_out)
{
	GMimeDataWrapper *dw = g_mime_part_get_content(part);
	if (dw == NULL) {
		*len_out = 0;
		return xstrdup("");
	}
	GMimeStream *mem = g_mime_stream_mem_new();
	GMimeStream *filt = g_mime_stream_filter_new(mem);
	int convert = charset && ascii_strcasecmp(charset, "utf-8") &&
		      ascii_strcasecmp(charset, "utf8") && ascii_strcasecmp(charset, "us-ascii");
	if (convert) {
		GMimeFilter *f = g_mime_filter_charset_new(charset, "UTF-8");
		if (f) {
			g_mime_stream_filter_add(GMIME_STREAM_FILTER(filt), f);
			g_object_unref(f);
		} else {
			*flags |= SPAM_MIME_BAD_CHARSET;
			convert = 0;
		}
	}
	g_mime_data_wrapper_write_to_stream(dw, filt);
	g_mime_stream_flush(filt);
	GByteArray *ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	char *out;
	const char *d = ba && ba->data ? (const char *)ba->data : "";
	size_t dl = ba ? ba->len : 0;
	if (g_utf8_validate(d, (gssize)dl, NULL)) {
		out = xstrndup(d, dl);
	} else if (!convert) {
		/* undeclared or unknown 8-bit text: Latin-1 is the usual truth */
		gchar *c = g_convert(d, (gssize)dl, "UTF-8", "ISO-8859-1", NULL, NULL, NULL);
		out = c ? xstrdup(c) : utf8_valid(d, dl);
		g_free(c);
	} else {
		out = utf8_valid(d, dl);
	}
	g_object_unref(filt);
	g_object_unref(mem);
	*len_out = strlen(out);
	return out;
}

static void leaf(struct walkst *w, GMimeObject *obj, unsigned depth)
{
	struct spam_mime *m = w->m;
	if (m->nparts >= w->lim->max_parts) {
		m->flags |= SPAM_MIME_TOO_MANY_PARTS;
		return;
	}
	if (m->nparts == w->partcap) {
		w->partcap = w->partcap ? w->partcap * 2 : 8;
		m->parts = xrealloc(m->parts, w->partcap * sizeof(*m->parts));
	}
	struct spam_part *p = &m->parts[m->nparts++];
	memset(p, 0, sizeof(*p));
	p->depth = depth;
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	char *mt = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
	p->type = lower_dup(mt ? mt : "text/plain");
	g_free(mt);
	p->charset = lower_dup(g_mime_object_get_content_type_parameter(obj, "charset"));
	const char *cte = g_mime_object_get_header(obj, "Content-Transfer-Encoding");
	if (cte) {
		while (*cte == ' ' || *cte == '\t')
			cte++;
		p->encoding = lower_dup(cte);
	}
	GMimeContentDisposition *cd = g_mime_object_get_content_disposition(obj);
	const char *fn = GMIME_IS_PART(obj) ? g_mime_part_get_filename(GMIME_PART(obj)) : NULL;
	if (fn)
		p->filename = utf8_valid(fn, strlen(fn));
	p->attachment = (cd && g_mime_content_disposition_is_attachment(cd)) || fn != NULL;
	if (p->attachment)
		m->attachments++;
	if (!GMIME_IS_PART(obj) || p->attachment)
		return;
	int html = !strcmp(p->type, "text/html");
	if (!html && strcmp(p->type, "text/plain") != 0)
		return;
	size_t dl;
	char *d = decode_text(GMIME_PART(obj), p->charset, &m->flags, &dl);
	p->decoded_bytes = dl;
	sbuf_add(&w->raw, d, dl);
	sbuf_addc(&w->raw, '\n');
	if (html) {
		m->html_parts++;
		struct spam_html_info hi;
		spam_html_render(d, dl, &w->text, add_url, w, &hi);
		m->html.images += hi.images;
		m->html.forms += hi.forms;
		m->html.links += hi.links;
		m->html.scripts += hi.scripts;
		m->html.iframes += hi.iframes;
		m->html.tags += hi.tags;
		m->html.text_bytes += hi.text_bytes;
	} else {
		m->text_parts++;
		sbuf_add(&w->text, d, dl);
		sbuf_addc(&w->text, '\n');
	}
	free(d);
}

static void walk(struct walkst *w, GMimeObject *obj, unsigned depth)
{
	if (obj == NULL)
		return;
	if (depth > w->lim->max_depth) {
		w->m->flags |= SPAM_MIME_TOO_DEEP;
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n; i++) {
			if (w->m->nparts >= w->lim->max_parts) {
				w->m->flags |= SPAM_MIME_TOO_MANY_PARTS;
				return;
			}
			walk(w, g_mime_multipart_get_part(mp, i), depth + 1);
		}
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *msg = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		leaf(w, obj, depth);
		if (msg)
			walk(w, g_mime_message_get_mime_part(msg), depth + 1);
	} else {
		leaf(w, obj, depth);
	}
}

/*
 * nest_cut - GMime's parser recurses once per nested multipart or
 * message/rfc822: stop feeding it before the (max_parts + 1)-th such
 * Content-Type so crafted nesting cannot exhaust the stack.
 */
static size_t nest_cut(const char *s, size_t len, size_t max_parts)
{
	size_t seen = 0;
	for (size_t i = 0; i + 10 <= len; i++) {
		char c = s[i];
		if ((c == 'm' || c == 'M') && (!ascii_strncasecmp(s + i, "multipart/", 10) ||
					       (i + 15 <= len && !ascii_strncasecmp(s + i, "message/rfc822", 14)))) {
			if (++seen > max_parts) {
				while (i > 0 && s[i - 1] != '\n')
					i--;
				return i;
			}
		}
	}
	return len;
}

struct spam_mime *spam_mime_parse(const char *msg, size_t len, const struct spam_mime_limits *lim)
{
	struct spam_mime_limits dl;
	if (lim == NULL) {
		spam_mime_limits_default(&dl);
		lim = &dl;
	}
	spam_mime_init();
	struct spam_mime *m = xcalloc(1, sizeof(*m));
	m->size = len;
	size_t n = len;
	if (lim->max_scan_bytes && n > lim->max_scan_bytes) {
		n = lim->max_scan_bytes;
		m->flags |= SPAM_MIME_TRUNCATED;
	}
	m->scanned = xmalloc(n + 1);	/* NULs inside are kept */
	if (n)
		memcpy(m->scanned, msg, n);
	m->scanned[n] = 0;
	m->scanned_len = n;
	parse_headers(m, lim->max_headers);

	size_t cap = 0;
	for (size_t i = 0; i < m->nhdrs; i++) {
		if (ascii_strcasecmp(m->hdrs[i].name, "Received"))
			continue;
		if (m->nrelays == cap) {
			cap = cap ? cap * 2 : 8;
			m->relays = xrealloc(m->relays, cap * sizeof(*m->relays));
		}
		spam_relay_parse(m->hdrs[i].raw, &m->relays[m->nrelays++]);
	}

	struct walkst w = { .m = m, .lim = lim };
	sbuf_init(&w.text);
	sbuf_init(&w.raw);
	size_t feed = nest_cut(m->scanned, n, lim->max_parts);
	if (feed < n)
		m->flags |= SPAM_MIME_TOO_MANY_PARTS;
	GMimeStream *st = g_mime_stream_mem_new_with_buffer(m->scanned, feed);
	GMimeParser *parser = g_mime_parser_new_with_stream(st);
	GMimeMessage *gm = g_mime_parser_construct_message(parser, NULL);
	if (gm && g_mime_message_get_mime_part(gm)) {
		walk(&w, g_mime_message_get_mime_part(gm), 0);
	} else {
		/* no structure: the body as plain text */
		m->flags |= SPAM_MIME_NO_BODY;
		const char *b = m->scanned + m->body_offset;
		size_t bl = m->body_offset <= n ? n - m->body_offset : 0;
		char *t = utf8_valid(b, bl);
		sbuf_adds(&w.text, t);
		sbuf_adds(&w.raw, t);
		free(t);
	}
	if (gm)
		g_object_unref(gm);
	g_object_unref(parser);
	g_object_unref(st);
	spam_url_scan_text(w.text.buf ? w.text.buf : "", w.text.len, add_url, &w);
	m->text = sbuf_steal(&w.text);
	m->rawtext = sbuf_steal(&w.raw);
	return m;
}

void spam_mime_free(struct spam_mime **mp)
{
	struct spam_mime *m = mp ? *mp : NULL;
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nhdrs; i++) {
		free(m->hdrs[i].name);
		free(m->hdrs[i].raw);
		free(m->hdrs[i].value);
	}
	free(m->hdrs);
	for (size_t i = 0; i < m->nparts; i++) {
		free(m->parts[i].type);
		free(m->parts[i].charset);
		free(m->parts[i].encoding);
		free(m->parts[i].filename);
	}
	free(m->parts);
	for (size_t i = 0; i < m->nurls; i++)
		spam_url_clear(&m->urls[i]);
	free(m->urls);
	for (size_t i = 0; i < m->nrelays; i++)
		spam_relay_clear(&m->relays[i]);
	free(m->relays);
	free(m->scanned);
	free(m->text);
	free(m->rawtext);
	free(m);
	*mp = NULL;
}
