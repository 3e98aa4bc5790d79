#include "proto/policy.h"

#include <stdlib.h>
#include <string.h>

struct policy_parser {
	char *in;
	size_t cap, start, end;
	size_t scan;			/* bytes of the current message already checked */
	struct policy_attr attrs[POLICY_MAX_ATTRS];
	const char *err;
	int dead;
};

struct policy_parser *policy_parser_new(void)
{
	struct policy_parser *p = xcalloc(1, sizeof *p);
	p->cap = 4096;
	p->in = xmalloc(p->cap);
	return p;
}

void policy_parser_free(struct policy_parser **pp)
{
	if (!*pp)
		return;
	free((*pp)->in);
	free(*pp);
	*pp = NULL;
}

void policy_parser_feed(struct policy_parser *p, const void *buf, size_t len)
{
	if (p->dead || !len)
		return;
	if (p->start && p->cap - p->end < len) {
		memmove(p->in, p->in + p->start, p->end - p->start);
		p->end -= p->start;
		p->start = 0;
	}
	if (p->cap - p->end < len) {
		size_t cap = p->cap;
		while (cap - p->end < len)
			cap *= 2;
		p->in = xrealloc(p->in, cap);
		p->cap = cap;
	}
	memcpy(p->in + p->end, buf, len);
	p->end += len;
}

size_t policy_parser_buffered(const struct policy_parser *p)
{
	return p->end - p->start;
}

const char *policy_parser_error(const struct policy_parser *p)
{
	return p->err ? p->err : "no error";
}

static enum policy_next fail(struct policy_parser *p, const char *why)
{
	p->dead = 1;
	p->err = why;
	return POLICY_ERROR;
}

static int name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

/*
 * Find the end of the message starting at p->start: an empty line.
 * Returns the offset just past it, 0 when more input is needed.
 */
static size_t find_end(struct policy_parser *p, const char **why)
{
	const char *b = p->in + p->start;
	size_t avail = p->end - p->start;
	size_t line_start = 0;
	for (size_t i = 0; i < avail; i++) {
		if (b[i] == 0) {
			*why = "NUL byte in policy message";
			return 0;
		}
		if (b[i] != '\n')
			continue;
		size_t len = i - line_start;
		if (len && b[i - 1] == '\r')
			len--;
		if (len > POLICY_MAX_LINE_BYTES) {
			*why = "policy attribute line too long";
			return 0;
		}
		if (len == 0)
			return i + 1;
		line_start = i + 1;
	}
	if (avail - line_start > POLICY_MAX_LINE_BYTES + 1)
		*why = "policy attribute line too long";
	else if (avail > POLICY_MAX_MSG_BYTES)
		*why = "policy message too large";
	return 0;
}

enum policy_next policy_parser_next(struct policy_parser *p, struct policy_msg *out)
{
	if (p->dead)
		return POLICY_ERROR;
	for (;;) {
		const char *why = NULL;
		size_t end = find_end(p, &why);
		if (why)
			return fail(p, why);
		if (!end)
			return POLICY_NEED_MORE;
		if (end > POLICY_MAX_MSG_BYTES)
			return fail(p, "policy message too large");
		char *b = p->in + p->start;
		size_t n = 0, i = 0;
		while (i < end) {
			char *nl = memchr(b + i, '\n', end - i);
			size_t len = (size_t)(nl - (b + i));
			if (len && b[i + len - 1] == '\r')
				b[i + --len] = 0;
			*nl = 0;
			if (len == 0)
				break;
			char *eq = memchr(b + i, '=', len);
			if (!eq || !name_ok(b + i, (size_t)(eq - (b + i))))
				return fail(p, "malformed policy attribute (expected name=value)");
			if (n == POLICY_MAX_ATTRS)
				return fail(p, "too many policy attributes");
			*eq = 0;
			p->attrs[n].name = b + i;
			p->attrs[n].value = eq + 1;
			n++;
			i = (size_t)(nl - b) + 1;
		}
		p->start += end;
		if (n == 0)
			continue;	/* a bare empty line: nothing to report */
		out->n = n;
		out->attr = p->attrs;
		return POLICY_ITEM;
	}
}

const char *policy_msg_get(const struct policy_msg *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->attr[i].name, name) == 0)
			return m->attr[i].value;
	return NULL;
}

void policy_build_attr(struct sbuf *b, const char *name, const char *value)
{
	sbuf_adds(b, name);
	sbuf_addc(b, '=');
	for (const char *v = value ? value : ""; *v; v++)
		sbuf_addc(b, (*v == '\r' || *v == '\n') ? ' ' : *v);
	sbuf_addc(b, '\n');
}

void policy_build_end(struct sbuf *b)
{
	sbuf_addc(b, '\n');
}

void policy_build_reply(struct sbuf *b, const char *action)
{
	policy_build_attr(b, "action", action);
	policy_build_end(b);
}
