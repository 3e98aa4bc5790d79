/*
 * smtp_testlib: helpers shared by tests/unit/test_smtp*.c (header-only,
 * static inline so each test binary takes what it uses).
 * A tiny scripted "session" drives the parser: it switches to DATA after a
 * valid DATA command and to BDAT after a valid BDAT command, and writes one
 * text line per item into a log so runs can be compared as strings.
 * Consecutive DATA items are merged, so the log does not depend on how the
 * input was split.
 */
#ifndef SLUICE_TESTS_SMTP_TESTLIB_H
#define SLUICE_TESTS_SMTP_TESTLIB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/smtp.h"

/* st_escape - append s[0..n) with CR, LF, NUL, '\\' and non-ASCII escaped. */
static inline void st_escape(struct sbuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			sbuf_adds(b, "\\r");
		else if (c == '\n')
			sbuf_adds(b, "\\n");
		else if (c == '\\')
			sbuf_adds(b, "\\\\");
		else if (c < 32 || c >= 127)
			sbuf_printf(b, "\\x%02x", c);
		else
			sbuf_addc(b, (char)c);
	}
}

static inline void st_describe_path(struct sbuf *b, const struct smtp_path *p)
{
	sbuf_printf(b, " <%s> L=%s D=%s", p->addr, p->local, p->domain);
	if (p->is_null)
		sbuf_adds(b, " null");
	if (p->has_utf8)
		sbuf_adds(b, " utf8");
	if (p->had_route)
		sbuf_adds(b, " route");
}

static inline void st_describe_cmd(struct sbuf *b, const struct smtp_cmd *c)
{
	static const char *body[] = { "", "7BIT", "8BITMIME", "BINARYMIME" };

	sbuf_adds(b, smtp_verb_name(c->verb));
	if (c->verb == SMTP_VERB_MAIL || c->verb == SMTP_VERB_RCPT)
		st_describe_path(b, &c->path);
	else if (*c->arg)
		sbuf_printf(b, " [%s]", c->arg);
	if (c->verb == SMTP_VERB_MAIL) {
		if (c->mail.size >= 0)
			sbuf_printf(b, " SIZE=%lld", c->mail.size);
		if (c->mail.body)
			sbuf_printf(b, " BODY=%s", body[c->mail.body]);
		if (c->mail.smtputf8)
			sbuf_adds(b, " SMTPUTF8");
		if (c->mail.ret)
			sbuf_printf(b, " RET=%s", c->mail.ret);
		if (c->mail.envid)
			sbuf_printf(b, " ENVID=%s", c->mail.envid);
		if (c->mail.auth)
			sbuf_printf(b, " AUTH=%s", c->mail.auth);
	}
	if (c->verb == SMTP_VERB_RCPT && c->rcpt.notify)
		sbuf_printf(b, " NOTIFY=%u", c->rcpt.notify);
	if (c->verb == SMTP_VERB_RCPT && c->rcpt.orcpt)
		sbuf_printf(b, " ORCPT=%s", c->rcpt.orcpt);
	if (c->verb == SMTP_VERB_BDAT)
		sbuf_printf(b, " n=%llu%s", c->bdat_size, c->bdat_last ? " LAST" : "");
	if (c->verb == SMTP_VERB_AUTH && c->auth_mech)
		sbuf_printf(b, " mech=%s ir=%s", c->auth_mech, c->auth_initial ? c->auth_initial : "-");
}

/* st_describe - one item as text (no trailing newline). */
static inline void st_describe(struct sbuf *b, const struct smtp_item *it)
{
	switch (it->kind) {
	case SMTP_ITEM_COMMAND:
		st_describe_cmd(b, &it->cmd);
		break;
	case SMTP_ITEM_BAD_COMMAND:
		sbuf_printf(b, "BAD %d %s %s", it->code, it->dsn, it->text);
		break;
	case SMTP_ITEM_FATAL:
		sbuf_printf(b, "FATAL %d %s %s", it->code, it->dsn, it->text);
		break;
	case SMTP_ITEM_DATA:
		sbuf_adds(b, "DATA ");
		st_escape(b, it->data, it->len);
		break;
	case SMTP_ITEM_DATA_END:
		sbuf_adds(b, it->bdat_last ? "END LAST" : "END");
		break;
	case SMTP_ITEM_LINE:
		sbuf_adds(b, "LINE ");
		st_escape(b, it->data, it->len);
		break;
	}
}

/* A scripted session: log of items, DATA items merged. */
struct st_drv {
	struct sbuf log;
	int in_data;		/* last logged item was DATA (no newline yet) */
	int n_end;		/* DATA_END items seen */
	int n_fatal;
	int auto_mode;		/* switch to DATA/BDAT after those commands */
	int dead;
};

static inline void st_drv_init(struct st_drv *d, int auto_mode)
{
	memset(d, 0, sizeof(*d));
	sbuf_init(&d->log);
	sbuf_add(&d->log, "", 0);
	d->auto_mode = auto_mode;
}

static inline void st_log_item(struct st_drv *d, const struct smtp_item *it)
{
	if (it->kind == SMTP_ITEM_DATA && d->in_data) {
		st_escape(&d->log, it->data, it->len);
		return;
	}
	if (d->in_data)
		sbuf_addc(&d->log, '\n');
	st_describe(&d->log, it);
	d->in_data = it->kind == SMTP_ITEM_DATA;
	if (!d->in_data)
		sbuf_addc(&d->log, '\n');
}

/* st_drive - pull items until NEED_MORE or ERROR. */
static inline void st_drive(struct st_drv *d, struct smtp_parser *p)
{
	struct smtp_item it;
	enum smtp_next r;

	while ((r = smtp_parser_next(p, &it)) == SMTP_ITEM) {
		st_log_item(d, &it);
		if (it.kind == SMTP_ITEM_DATA_END)
			d->n_end++;
		if (it.kind == SMTP_ITEM_FATAL)
			d->n_fatal++;
		if (!d->auto_mode || it.kind != SMTP_ITEM_COMMAND)
			continue;
		if (it.cmd.verb == SMTP_VERB_DATA)
			smtp_parser_begin_data(p);
		else if (it.cmd.verb == SMTP_VERB_BDAT)
			smtp_parser_begin_bdat(p, it.cmd.bdat_size, it.cmd.bdat_last);
	}
	if (r == SMTP_ERROR)
		d->dead = 1;
}

/* st_finish - the log as a string (caller frees). */
static inline char *st_finish(struct st_drv *d)
{
	if (d->in_data)
		sbuf_addc(&d->log, '\n');
	d->in_data = 0;
	return sbuf_steal(&d->log);
}

/*
 * st_run - feed input (len bytes) to a new parser in pieces of step bytes
 * (0 = all at once), driving after each piece. Optional begin: 'D' starts in
 * DATA mode. Returns the log (caller frees); *drv_out gets counters.
 */
static inline char *st_run(const char *in, size_t len, size_t step, enum smtp_bare_policy bare,
			   int begin, struct st_drv *drv_out)
{
	struct smtp_parser_opts o = { .max_line_bytes = 0, .bare = bare };
	struct smtp_parser *p = smtp_parser_new(&o);
	struct st_drv d;
	size_t off = 0;
	char *log;

	st_drv_init(&d, 1);
	if (begin == 'D')
		smtp_parser_begin_data(p);
	if (step == 0)
		step = len ? len : 1;
	while (off < len) {
		size_t n = len - off < step ? len - off : step;
		smtp_parser_feed(p, in + off, n);
		off += n;
		st_drive(&d, p);
	}
	st_drive(&d, p);
	smtp_parser_free(&p);
	log = st_finish(&d);
	if (drv_out)
		*drv_out = d;
	return log;
}

/* st_expect - fail with the case name when got != want. */
#define st_expect(name, got, want) do { \
	if (strcmp((got), (want)) != 0) { \
		print_error("case \"%s\":\n got: %s\nwant: %s\n", (name), (got), (want)); \
		fail(); \
	} \
} while (0)

#endif
