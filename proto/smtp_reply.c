/*
 * smtp_reply: client-side reply parser. Contract in smtp_reply.h.
 */
#include "proto/smtp_reply.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

struct smtp_reply_parser {
	struct sbuf in;		/* unconsumed input */
	size_t off;		/* consumed prefix of in */
	struct sbuf text;	/* the reply being assembled */
	int code;		/* of the reply being assembled, 0 = none yet */
	char dsn[16];
	size_t nlines;
	int dead;
	const char *err;
};

struct smtp_reply_parser *smtp_reply_parser_new(void)
{
	struct smtp_reply_parser *p = xcalloc(1, sizeof *p);
	sbuf_init(&p->in);
	sbuf_init(&p->text);
	return p;
}

void smtp_reply_parser_free(struct smtp_reply_parser **pp)
{
	struct smtp_reply_parser *p = *pp;
	if (!p)
		return;
	sbuf_free(&p->in);
	sbuf_free(&p->text);
	free(p);
	*pp = NULL;
}

void smtp_reply_feed(struct smtp_reply_parser *p, const void *buf, size_t len)
{
	if (p->dead)
		return;
	if (p->off > 0 && p->off == p->in.len) {
		sbuf_reset(&p->in);
		p->off = 0;
	} else if (p->off > 65536) {
		memmove(p->in.buf, p->in.buf + p->off, p->in.len - p->off);
		p->in.len -= p->off;
		p->off = 0;
	}
	sbuf_add(&p->in, buf, len);
}

size_t smtp_reply_buffered(const struct smtp_reply_parser *p)
{
	return p->in.len - p->off;
}

/* "X.Y.Z" at s with X in 2,4,5, Y 1..3 digits, Z 1..3 digits, then SP or end. */
static size_t enhanced_code(const char *s, size_t n, char cls)
{
	size_t i = 0, d;
	if (n < 5 || s[0] != cls || s[1] != '.')
		return 0;
	i = 2;
	for (d = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++, d++)
		;
	if (d < 1 || d > 3 || i >= n || s[i] != '.')
		return 0;
	i++;
	for (d = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++, d++)
		;
	if (d < 1 || d > 3 || (i < n && s[i] != ' '))
		return 0;
	return i;
}

static int fail(struct smtp_reply_parser *p, const char *why, const char **err_out)
{
	p->dead = 1;
	p->err = why;
	if (err_out)
		*err_out = why;
	return SMTP_REPLY_ERROR;
}

int smtp_reply_next(struct smtp_reply_parser *p, struct smtp_reply *out, const char **err_out)
{
	if (p->dead) {
		if (err_out)
			*err_out = p->err;
		return SMTP_REPLY_ERROR;
	}
	for (;;) {
		const char *s = p->in.buf ? p->in.buf + p->off : NULL;
		size_t avail = p->in.len - p->off;
		const char *nl = avail ? memchr(s, '\n', avail) : NULL;
		if (!nl) {
			if (avail > SMTP_REPLY_MAX_LINE)
				return fail(p, "reply line too long", err_out);
			return SMTP_REPLY_NEED_MORE;
		}
		size_t n = (size_t)(nl - s);
		p->off += n + 1;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (n > SMTP_REPLY_MAX_LINE)
			return fail(p, "reply line too long", err_out);
		if (n < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' ||
		    s[2] > '9' || (n > 3 && s[3] != ' ' && s[3] != '-'))
			return fail(p, "malformed reply line", err_out);
		for (size_t i = 0; i < n; i++)
			if (s[i] == 0)
				return fail(p, "NUL in reply", err_out);
		int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
		int more = n > 3 && s[3] == '-';
		const char *t = n > 4 ? s + 4 : s + n;
		size_t tn = n > 4 ? n - 4 : 0;
		if (p->code == 0) {
			p->code = code;
			sbuf_reset(&p->text);
			p->nlines = 0;
			p->dsn[0] = 0;
			size_t e = enhanced_code(t, tn, s[0]);
			if (e) {
				memcpy(p->dsn, t, e);
				p->dsn[e] = 0;
			}
		} else {
			if (code != p->code)
				return fail(p, "reply code changed within a multi-line reply", err_out);
			sbuf_addc(&p->text, '\n');
		}
		if (++p->nlines > SMTP_REPLY_MAX_LINES)
			return fail(p, "too many reply lines", err_out);
		sbuf_add(&p->text, t, tn);
		if (!more) {
			sbuf_addc(&p->text, 0);
			p->text.len--;
			out->code = p->code;
			memcpy(out->dsn, p->dsn, sizeof out->dsn);
			out->text = p->text.buf;
			out->nlines = p->nlines;
			p->code = 0;
			return SMTP_REPLY_ITEM;
		}
	}
}
