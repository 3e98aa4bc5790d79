/*
 * fuzz_smtp_cmd: proto/smtp in command mode, driven like a session: DATA
 * switches to the DATA decoder, BDAT to chunk mode, AUTH to expect_line,
 * STARTTLS discards buffered input. Byte 0 picks policy, line limit and the
 * feed split; the same input is run whole and split and the two runs must
 * agree (under REJECT, content streamed before a violation may differ in
 * length only).
 */
#include "lib/util.h"
#include "proto/smtp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct run {
	struct sbuf log;	/* items except content */
	struct sbuf content;	/* all DATA bytes */
	int fatal;
	int starttls;		/* a STARTTLS discarded input: split-dependent */
};

static void check_cmd(const struct smtp_cmd *c, struct sbuf *log)
{
	sbuf_printf(log, "C%s|%s|%s", smtp_verb_name(c->verb), c->line, c->arg);
	if (c->verb == SMTP_VERB_MAIL || c->verb == SMTP_VERB_RCPT)
		sbuf_printf(log, "|%s|%s|%s|%d%d%d", c->path.addr, c->path.local, c->path.domain,
			    c->path.is_null, c->path.has_utf8, c->path.had_route);
	if (c->verb == SMTP_VERB_MAIL)
		sbuf_printf(log, "|%lld|%d|%s|%s|%s", c->mail.size, c->mail.body,
			    c->mail.ret ? c->mail.ret : "", c->mail.envid ? c->mail.envid : "",
			    c->mail.auth ? c->mail.auth : "");
	if (c->verb == SMTP_VERB_RCPT)
		sbuf_printf(log, "|%u|%s", c->rcpt.notify, c->rcpt.orcpt ? c->rcpt.orcpt : "");
	if (c->verb == SMTP_VERB_AUTH)
		sbuf_printf(log, "|%s|%s", c->auth_mech ? c->auth_mech : "",
			    c->auth_initial ? c->auth_initial : "");
	sbuf_addc(log, '\n');
}

/* item - log one item and act like a session. */
static void item(struct smtp_parser *p, const struct smtp_item *it, int reject, struct run *r)
{
	switch (it->kind) {
	case SMTP_ITEM_COMMAND:
		check_cmd(&it->cmd, &r->log);
		if (it->cmd.verb == SMTP_VERB_DATA)
			smtp_parser_begin_data(p);
		else if (it->cmd.verb == SMTP_VERB_BDAT)
			smtp_parser_begin_bdat(p, it->cmd.bdat_size, it->cmd.bdat_last);
		else if (it->cmd.verb == SMTP_VERB_AUTH && !it->cmd.auth_initial)
			smtp_parser_expect_line(p);
		else if (it->cmd.verb == SMTP_VERB_STARTTLS) {
			r->starttls = 1;
			smtp_parser_discard(p);
		}
		break;
	case SMTP_ITEM_DATA:
		if (reject && memchr(it->data, '\r', it->len))
			abort();	/* REJECT never lets a CR through */
		sbuf_add(&r->content, it->data, it->len);
		break;
	case SMTP_ITEM_LINE:
		sbuf_addc(&r->log, 'L');
		sbuf_add(&r->log, it->data, it->len);
		sbuf_addc(&r->log, '\n');
		break;
	case SMTP_ITEM_BAD_COMMAND:
	case SMTP_ITEM_FATAL:
		if (it->code < 500 || it->code > 599 || !it->dsn || !it->text)
			abort();
		if (it->kind == SMTP_ITEM_FATAL && !reject)
			abort();	/* NORMALIZE never gives up */
		r->fatal |= it->kind == SMTP_ITEM_FATAL;
		sbuf_printf(&r->log, "B%d %s %s\n", it->code, it->dsn, it->text);
		break;
	case SMTP_ITEM_DATA_END:
		sbuf_printf(&r->log, "E%d|%zu\n", it->bdat_last, r->content.len);
		break;
	}
}

static void run(const uint8_t *d, size_t n, size_t step, const struct smtp_parser_opts *o, struct run *r)
{
	struct smtp_parser *p = smtp_parser_new(o);
	struct smtp_item it;
	enum smtp_next res = SMTP_NEED_MORE;
	size_t off = 0;

	sbuf_init(&r->log);
	sbuf_init(&r->content);
	sbuf_add(&r->log, "", 0);
	sbuf_add(&r->content, "", 0);
	r->fatal = 0;
	r->starttls = 0;
	while (off < n && res != SMTP_ERROR) {
		size_t k = n - off < step ? n - off : step;
		smtp_parser_feed(p, d + off, k);
		off += k;
		while ((res = smtp_parser_next(p, &it)) == SMTP_ITEM)
			item(p, &it, o->bare == SMTP_BARE_REJECT, r);
		if (smtp_parser_buffered(p) > n)
			abort();
	}
	smtp_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_parser_opts o = { 0 };
	struct run a, b;
	size_t step;

	if (size < 1)
		return 0;
	o.bare = data[0] & 1 ? SMTP_BARE_NORMALIZE : SMTP_BARE_REJECT;
	o.max_line_bytes = data[0] & 2 ? 32 : 0;
	step = 1 + (data[0] >> 2);
	run(data + 1, size - 1, size, &o, &a);
	run(data + 1, size - 1, step, &o, &b);
	/* STARTTLS discards what is buffered, which depends on the split */
	if (!a.starttls && !b.starttls) {
		if (a.fatal != b.fatal || a.log.len != b.log.len || memcmp(a.log.buf, b.log.buf, a.log.len) != 0)
			abort();
		size_t m = a.content.len < b.content.len ? a.content.len : b.content.len;
		/* REJECT: content streamed before a (possibly still pending) BDAT
		 * violation depends on the split; it is discarded anyway */
		if (memcmp(a.content.buf, b.content.buf, m) != 0 ||
		    (o.bare == SMTP_BARE_NORMALIZE && a.content.len != b.content.len))
			abort();
	}
	sbuf_free(&a.log);
	sbuf_free(&a.content);
	sbuf_free(&b.log);
	sbuf_free(&b.content);
	return 0;
}
