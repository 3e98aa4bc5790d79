#include "proto/sasl_dvproto.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sasl_dvproto {
	struct sbuf in;		/* unconsumed input */
	size_t off;		/* start of the next line in in */
	char *line;		/* the current line, split in place */
	size_t line_cap;
	size_t max_line;
	const char *err;
};

struct sasl_dvproto *sasl_dvproto_new(size_t max_line_bytes)
{
	struct sasl_dvproto *p = xcalloc(1, sizeof *p);
	sbuf_init(&p->in);
	p->max_line = max_line_bytes ? max_line_bytes : 16384;
	return p;
}

void sasl_dvproto_free(struct sasl_dvproto **pp)
{
	struct sasl_dvproto *p = *pp;
	if (!p)
		return;
	sbuf_free(&p->in);
	free(p->line);
	free(p);
	*pp = NULL;
}

void sasl_dvproto_feed(struct sasl_dvproto *p, const void *buf, size_t len)
{
	if (p->off && p->off == p->in.len) {
		sbuf_reset(&p->in);
		p->off = 0;
	} else if (p->off > 65536) {
		memmove(p->in.buf, p->in.buf + p->off, p->in.len - p->off);
		p->in.len -= p->off;
		p->off = 0;
	}
	sbuf_add(&p->in, buf, len);
}

/* Dovecot's str_tabunescape: \001 then 1 0 t r n */
static void unescape(char *s)
{
	char *o = s;
	for (char *i = s; *i; i++) {
		if (*i == '\001' && i[1]) {
			i++;
			switch (*i) {
			case '1': *o++ = '\001'; break;
			case 't': *o++ = '\t'; break;
			case 'r': *o++ = '\r'; break;
			case 'n': *o++ = '\n'; break;
			default: *o++ = *i; break;	/* '0' (NUL) cannot live in a C string: keep the digit */
			}
			continue;
		}
		*o++ = *i;
	}
	*o = 0;
}

static int parse_ulong(const char *s, unsigned long *out)
{
	if (!*s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || errno)
		return -1;
	*out = v;
	return 0;
}

static enum sasl_dvproto_next fail(struct sasl_dvproto *p, const char *e, const char **err_out)
{
	p->err = e;
	*err_out = e;
	return SASL_DV_ERROR;
}

enum sasl_dvproto_next sasl_dvproto_next(struct sasl_dvproto *p, struct sasl_dvproto_item *it,
					 const char **err_out)
{
	if (p->err) {
		*err_out = p->err;
		return SASL_DV_ERROR;
	}
	const char *start = p->in.buf + p->off;
	size_t avail = p->in.len - p->off;
	const char *lf = avail ? memchr(start, '\n', avail) : NULL;
	if (!lf) {
		if (avail > p->max_line)
			return fail(p, "line too long", err_out);
		return SASL_DV_NEED_MORE;
	}
	size_t n = (size_t)(lf - start);
	if (n > p->max_line)
		return fail(p, "line too long", err_out);
	if (n + 1 > p->line_cap) {
		p->line_cap = n + 1;
		p->line = xrealloc(p->line, p->line_cap);
	}
	memcpy(p->line, start, n);
	p->line[n] = 0;
	p->off += n + 1;
	if (memchr(p->line, 0, n))
		return fail(p, "NUL in line", err_out);

	char *f[SASL_DV_MAX_ARGS + 1];
	size_t nf = 0;
	for (char *s = p->line;;) {
		if (nf == SASL_DV_MAX_ARGS + 1)
			return fail(p, "too many fields", err_out);
		f[nf++] = s;
		char *t = strchr(s, '\t');
		if (!t)
			break;
		*t = 0;
		s = t + 1;
	}
	memset(it, 0, sizeof *it);
	const char *cmd = f[0];
	size_t first_arg = 1;
	if (!strcmp(cmd, "VERSION")) {
		if (nf < 3 || parse_ulong(f[1], &it->major) < 0 || parse_ulong(f[2], &it->minor) < 0)
			return fail(p, "bad VERSION", err_out);
		it->kind = SASL_DV_VERSION;
		first_arg = 3;
	} else if (!strcmp(cmd, "MECH") || !strcmp(cmd, "SPID") || !strcmp(cmd, "CUID") || !strcmp(cmd, "COOKIE")) {
		if (nf < 2 || !*f[1])
			return fail(p, "missing value", err_out);
		it->kind = cmd[0] == 'M' ? SASL_DV_MECH : cmd[0] == 'S' ? SASL_DV_SPID
			   : cmd[1] == 'U' ? SASL_DV_CUID : SASL_DV_COOKIE;
		unescape(f[1]);
		it->name = f[1];
		first_arg = 2;
	} else if (!strcmp(cmd, "DONE")) {
		it->kind = SASL_DV_DONE;
	} else if (!strcmp(cmd, "OK") || !strcmp(cmd, "FAIL") || !strcmp(cmd, "CONT")) {
		if (nf < 2 || parse_ulong(f[1], &it->id) < 0)
			return fail(p, "bad request id", err_out);
		it->kind = cmd[0] == 'O' ? SASL_DV_OK : cmd[0] == 'F' ? SASL_DV_FAIL : SASL_DV_CONT;
		first_arg = 2;
		if (it->kind == SASL_DV_CONT) {
			if (nf < 3)
				return fail(p, "CONT without data", err_out);
			it->name = f[2];	/* base64: no escapes */
			first_arg = 3;
		}
	} else {
		if (!*cmd)
			return fail(p, "empty line", err_out);
		it->kind = SASL_DV_OTHER;
		it->name = f[0];
	}
	for (size_t i = first_arg; i < nf; i++) {
		unescape(f[i]);
		it->args[it->nargs++] = f[i];
		if (!strncmp(f[i], "user=", 5))
			it->user = f[i] + 5;
		else if (!strncmp(f[i], "reason=", 7))
			it->reason = f[i] + 7;
		else if (!strcmp(f[i], "temp"))
			it->temp = 1;
	}
	return SASL_DV_ITEM;
}
