/*
 * smtp: the server-side SMTP push parser (contract in proto/smtp.h).
 * This file owns the input buffer, line framing with the bare <CR>/<LF>
 * policy, the DATA decoder and BDAT chunk framing; command lines are
 * handed to smtp_cmd.c.
 *
 * The DATA decoder is a byte state machine whose state (pending CR, pending
 * "." at the start of a line, how the line began) replaces held-back bytes,
 * so content streams out with bounded memory: every call consumes at most
 * SMTP_STEP_BYTES of input and yields what that decoded to.
 */
#include "proto/smtp_int.h"

#include <stdlib.h>
#include <string.h>

#define SMTP_DEFAULT_LINE_BYTES 2048
#define SMTP_STEP_BYTES 65536	/* input consumed per DATA/BDAT item at most */
#define SMTP_MIN_IN_BYTES 4096

#define BARE_LF_TEXT "Error: bare <LF> received"
#define BARE_CR_TEXT "Error: bare <CR> received"

enum smtp_mode { MODE_CMD, MODE_LINE, MODE_DATA, MODE_BDAT, MODE_DEAD };

/* How the current DATA line began: only after a real CRLF can "." end data. */
enum { BOL_NONE, BOL_CRLF, BOL_LF };

struct smtp_data_state {
	int bol;		/* BOL_*: at the start of a line */
	int dot;		/* a "." opened the line, not yet emitted */
	int dot_crlf;		/* ... and that line began after CRLF */
	int cr;			/* a CR was seen, its successor not yet */
	int eod;		/* end of data seen: DATA_END is due */
};

struct smtp_bdat_state {
	unsigned long long left;	/* content bytes of this chunk still to come */
	int last;		/* chunk had LAST */
	int cr;			/* CR pending; survives chunk boundaries */
	int done;		/* chunk consumed: DATA_END (or FATAL) is due */
	const char *bad;	/* REJECT: violation seen in this chunk */
};

struct smtp_parser {
	size_t max_line_bytes;
	enum smtp_bare_policy bare;
	enum smtp_mode mode;
	char *in;		/* unconsumed input is in[in_start, in_end) */
	size_t in_cap, in_start, in_end;
	size_t scan;		/* bytes of the current line already scanned */
	int skipping;		/* current line is too long: dropping it */
	int last_eol_crlf;	/* the last command line ended in CRLF */
	struct smtp_data_state d;
	struct smtp_bdat_state b;
	struct sbuf out;	/* decoded content of the current DATA item */
	struct smtp_cmd_ws ws;
};

struct smtp_parser *smtp_parser_new(const struct smtp_parser_opts *o)
{
	struct smtp_parser *p = xcalloc(1, sizeof(*p));

	p->max_line_bytes = o && o->max_line_bytes ? o->max_line_bytes : SMTP_DEFAULT_LINE_BYTES;
	p->bare = o ? o->bare : SMTP_BARE_REJECT;
	p->mode = MODE_CMD;
	p->last_eol_crlf = 1;
	/* never NULL: pointer arithmetic on it is done before the first feed */
	p->in = xmalloc(SMTP_MIN_IN_BYTES);
	p->in_cap = SMTP_MIN_IN_BYTES;
	sbuf_init(&p->out);
	smtp_cmd_ws_init(&p->ws);
	return p;
}

void smtp_parser_free(struct smtp_parser **pp)
{
	struct smtp_parser *p = pp ? *pp : NULL;

	if (!p)
		return;
	free(p->in);
	sbuf_free(&p->out);
	smtp_cmd_ws_free(&p->ws);
	free(p);
	*pp = NULL;
}

void smtp_parser_feed(struct smtp_parser *p, const void *buf, size_t len)
{
	size_t live = p->in_end - p->in_start;

	if (p->mode == MODE_DEAD || len == 0)
		return;
	if (p->in_cap - p->in_end < len) {
		if (p->in_start) {
			memmove(p->in, p->in + p->in_start, live);
			p->in_start = 0;
			p->in_end = live;
		}
		if (p->in_cap - live < len) {
			size_t cap = p->in_cap ? p->in_cap : SMTP_MIN_IN_BYTES;
			while (cap - live < len)
				cap *= 2;
			p->in = xrealloc(p->in, cap);
			p->in_cap = cap;
		}
	}
	memcpy(p->in + p->in_end, buf, len);
	p->in_end += len;
}

static void consume(struct smtp_parser *p, size_t n)
{
	p->in_start += n;
	if (p->in_start == p->in_end)
		p->in_start = p->in_end = 0;
}

/* die - FATAL item; the parser is dead and drops all input from now on. */
static enum smtp_next die(struct smtp_parser *p, struct smtp_item *it, const char *text)
{
	memset(it, 0, sizeof(*it));
	it->kind = SMTP_ITEM_FATAL;
	it->code = 521;
	it->dsn = "5.5.2";
	it->text = text;
	p->mode = MODE_DEAD;
	p->in_start = p->in_end = 0;
	return SMTP_ITEM;
}

static enum smtp_next simple_item(struct smtp_item *it, enum smtp_item_kind kind)
{
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	return SMTP_ITEM;
}

/* ---- line framing (commands and expect_line) ---- */

enum line_res { LR_MORE, LR_LINE, LR_LONG, LR_BARE_LF, LR_BARE_CR };

/*
 * scan_line - find the end of the line at in_start, resuming at p->scan.
 * LR_LINE/LR_LONG: *len_out content bytes, *used_out bytes incl. line end.
 * A CR is never passed before its successor is known. Once the line is
 * longer than max_line_bytes its scanned bytes are dropped (bounded memory).
 */
static enum line_res scan_line(struct smtp_parser *p, size_t *len_out, size_t *used_out)
{
	const char *b = p->in + p->in_start;
	size_t avail = p->in_end - p->in_start, i;

	for (i = p->scan; i < avail; i++) {
		if (b[i] == '\n') {
			int crlf = i > 0 && b[i - 1] == '\r';
			enum line_res r = p->skipping ? LR_LONG : LR_LINE;
			if (!crlf && p->bare == SMTP_BARE_REJECT)
				return LR_BARE_LF;
			*len_out = crlf ? i - 1 : i;
			*used_out = i + 1;
			p->last_eol_crlf = crlf;
			p->scan = 0;
			p->skipping = 0;
			return r;
		}
		if (b[i] == '\r') {
			if (i + 1 == avail)
				break;
			if (b[i + 1] == '\n')
				continue;
			if (p->bare == SMTP_BARE_REJECT)
				return LR_BARE_CR;
		}
		if (i + 1 > p->max_line_bytes)
			p->skipping = 1;
	}
	p->scan = i;
	if (p->skipping) {
		consume(p, i);
		p->scan = 0;
	}
	return LR_MORE;
}

/* Command parsed: a new transaction forgets a CR left pending by BDAT. */
static void after_command(struct smtp_parser *p, const struct smtp_item *it)
{
	switch (it->cmd.verb) {
	case SMTP_VERB_BDAT: case SMTP_VERB_NOOP: case SMTP_VERB_UNKNOWN:
		break;
	default:
		p->b.cr = 0;
	}
}

static enum smtp_next next_line(struct smtp_parser *p, struct smtp_item *it)
{
	size_t len = 0, used = 0;
	const char *raw = p->in + p->in_start;

	switch (scan_line(p, &len, &used)) {
	case LR_MORE:
		return SMTP_NEED_MORE;
	case LR_BARE_LF:
		return die(p, it, BARE_LF_TEXT);
	case LR_BARE_CR:
		return die(p, it, BARE_CR_TEXT);
	case LR_LONG:
		consume(p, used);
		p->mode = MODE_CMD;
		simple_item(it, SMTP_ITEM_BAD_COMMAND);
		it->code = 500;
		it->dsn = "5.5.0";
		it->text = "Error: line too long";
		return SMTP_ITEM;
	case LR_LINE:
		break;
	}
	if (p->mode == MODE_LINE) {
		simple_item(it, SMTP_ITEM_LINE);
		sbuf_reset(&p->ws.line);
		sbuf_add(&p->ws.line, raw, len);
		it->data = p->ws.line.buf;
		it->len = len;
		p->mode = MODE_CMD;
	} else {
		smtp_cmd_parse(&p->ws, raw, len, it);
		after_command(p, it);
	}
	consume(p, used);
	return SMTP_ITEM;
}

/* ---- DATA decoder (RFC 5321 4.1.1.4, 4.5.2) ---- */

/* data_bare_cr - NORMALIZE: a CR not followed by LF is content, mid-line. */
static void data_bare_cr(struct smtp_parser *p)
{
	p->d.dot = 0;		/* ".<CR>x" is a stuffed line: drop the dot */
	p->d.bol = BOL_NONE;
	sbuf_addc(&p->out, '\r');
}

/* data_eol - a line ended (CRLF if crlf, else a bare LF under NORMALIZE). */
static int data_eol(struct smtp_parser *p, int crlf)
{
	if (p->d.dot && p->d.dot_crlf && crlf)
		return 1;	/* <CRLF>.<CRLF> */
	if (p->d.dot)
		sbuf_addc(&p->out, '.');	/* lone "." that cannot end data: content */
	p->d.dot = 0;
	sbuf_addc(&p->out, '\n');
	p->d.bol = crlf ? BOL_CRLF : BOL_LF;
	return 0;
}

/*
 * data_byte - one input byte through the decoder. Returns 0 to go on, 1 at
 * end of data, -1 with *bad_out on a bare CR/LF under REJECT.
 */
static int data_byte(struct smtp_parser *p, unsigned char c, const char **bad_out)
{
	if (p->d.cr) {
		p->d.cr = 0;
		if (c == '\n')
			return data_eol(p, 1);
		if (p->bare == SMTP_BARE_REJECT) {
			*bad_out = BARE_CR_TEXT;
			return -1;
		}
		data_bare_cr(p);
	}
	if (c == '\r') {
		p->d.cr = 1;
	} else if (c == '\n') {
		if (p->bare == SMTP_BARE_REJECT) {
			*bad_out = BARE_LF_TEXT;
			return -1;
		}
		return data_eol(p, 0);
	} else if (p->d.bol != BOL_NONE && c == '.') {
		p->d.dot = 1;
		p->d.dot_crlf = p->d.bol == BOL_CRLF;
		p->d.bol = BOL_NONE;
	} else {
		p->d.dot = 0;	/* dot-unstuffing */
		p->d.bol = BOL_NONE;
		sbuf_addc(&p->out, (char)c);
	}
	return 0;
}

/* data_run - decode up to SMTP_STEP_BYTES; *used_out bytes consumed. Returns as data_byte. */
static int data_run(struct smtp_parser *p, const char **bad_out, size_t *used_out)
{
	const unsigned char *b = (const unsigned char *)p->in + p->in_start;
	size_t avail = p->in_end - p->in_start, i = 0, j;
	int r = 0;

	if (avail > SMTP_STEP_BYTES)
		avail = SMTP_STEP_BYTES;
	while (i < avail && r == 0) {
		if (!p->d.cr && !p->d.dot && p->d.bol == BOL_NONE) {
			for (j = i; j < avail && b[j] != '\r' && b[j] != '\n'; j++)
				;
			sbuf_add(&p->out, b + i, j - i);
			if ((i = j) == avail)
				break;
		}
		r = data_byte(p, b[i++], bad_out);
	}
	*used_out = i;
	return r;
}

static enum smtp_next next_data(struct smtp_parser *p, struct smtp_item *it)
{
	const char *bad = NULL;
	size_t used;
	int r = 0;

	if (p->d.eod) {
		p->d.eod = 0;
		p->mode = MODE_CMD;
		return simple_item(it, SMTP_ITEM_DATA_END);
	}
	sbuf_reset(&p->out);
	while (p->out.len == 0 && r == 0 && p->in_end > p->in_start) {
		r = data_run(p, &bad, &used);
		consume(p, used);
	}
	if (r < 0)
		return die(p, it, bad);
	if (r > 0) {
		p->d.eod = 1;
		if (p->out.len == 0)
			return next_data(p, it);
	}
	if (p->out.len == 0)
		return SMTP_NEED_MORE;
	simple_item(it, SMTP_ITEM_DATA);
	it->data = p->out.buf;
	it->len = p->out.len;
	return SMTP_ITEM;
}

/* ---- BDAT chunks (RFC 3030): exactly n bytes, CRLF -> LF, no dot-stuffing ---- */

static void bdat_put(struct smtp_parser *p, char c)
{
	if (!p->b.bad)
		sbuf_addc(&p->out, c);
}

/* bdat_bare - a bare CR or LF: content under NORMALIZE, remembered under REJECT. */
static void bdat_bare(struct smtp_parser *p, char c, const char *text)
{
	if (p->bare == SMTP_BARE_NORMALIZE)
		bdat_put(p, c);
	else if (!p->b.bad)
		p->b.bad = text;
}

static void bdat_byte(struct smtp_parser *p, unsigned char c)
{
	if (p->b.cr) {
		p->b.cr = 0;
		if (c == '\n') {
			bdat_put(p, '\n');
			return;
		}
		bdat_bare(p, '\r', BARE_CR_TEXT);
	}
	if (c == '\r')
		p->b.cr = 1;
	else if (c == '\n')
		bdat_bare(p, '\n', BARE_LF_TEXT);
	else
		bdat_put(p, (char)c);
}

/* bdat_run - consume what is buffered of the chunk (at most SMTP_STEP_BYTES). */
static void bdat_run(struct smtp_parser *p)
{
	const unsigned char *b = (const unsigned char *)p->in + p->in_start;
	size_t n = p->in_end - p->in_start, i = 0, j;

	if (n > SMTP_STEP_BYTES)
		n = SMTP_STEP_BYTES;
	if (n > p->b.left)
		n = (size_t)p->b.left;
	while (i < n) {
		if (!p->b.cr && !p->b.bad) {
			for (j = i; j < n && b[j] != '\r' && b[j] != '\n'; j++)
				;
			sbuf_add(&p->out, b + i, j - i);
			if ((i = j) == n)
				break;
		}
		bdat_byte(p, b[i++]);
	}
	consume(p, n);
	p->b.left -= n;
	if (p->b.left == 0) {
		p->b.done = 1;
		if (p->b.last && p->b.cr) {	/* message ends in a bare CR */
			p->b.cr = 0;
			bdat_bare(p, '\r', BARE_CR_TEXT);
		}
	}
}

static enum smtp_next next_bdat(struct smtp_parser *p, struct smtp_item *it)
{
	sbuf_reset(&p->out);
	/* left == 0: "BDAT 0 [LAST]" completes without input */
	while (p->out.len == 0 && !p->b.done && (p->in_end > p->in_start || p->b.left == 0))
		bdat_run(p);
	if (p->out.len > 0 && !p->b.bad) {
		simple_item(it, SMTP_ITEM_DATA);
		it->data = p->out.buf;
		it->len = p->out.len;
		return SMTP_ITEM;
	}
	if (!p->b.done)
		return SMTP_NEED_MORE;
	p->b.done = 0;
	p->mode = MODE_CMD;
	if (p->b.bad)
		return die(p, it, p->b.bad);
	simple_item(it, SMTP_ITEM_DATA_END);
	it->bdat_last = p->b.last;
	return SMTP_ITEM;
}

/* ---- public entry points ---- */

enum smtp_next smtp_parser_next(struct smtp_parser *p, struct smtp_item *it)
{
	switch (p->mode) {
	case MODE_CMD:
	case MODE_LINE:
		return next_line(p, it);
	case MODE_DATA:
		return next_data(p, it);
	case MODE_BDAT:
		return next_bdat(p, it);
	case MODE_DEAD:
		break;
	}
	return SMTP_ERROR;
}

void smtp_parser_begin_data(struct smtp_parser *p)
{
	if (p->mode == MODE_DEAD)
		return;
	p->mode = MODE_DATA;
	p->scan = 0;		/* robust even if called mid-line */
	p->skipping = 0;
	memset(&p->d, 0, sizeof(p->d));
	/* The line end of the DATA command counts, but only if it was CRLF. */
	p->d.bol = p->last_eol_crlf ? BOL_CRLF : BOL_LF;
	p->b.cr = 0;
}

void smtp_parser_begin_bdat(struct smtp_parser *p, unsigned long long n, int last)
{
	if (p->mode == MODE_DEAD)
		return;
	p->mode = MODE_BDAT;
	p->scan = 0;
	p->skipping = 0;
	p->b.left = n;
	p->b.last = last;
	p->b.bad = NULL;
	p->b.done = 0;
}

void smtp_parser_expect_line(struct smtp_parser *p)
{
	if (p->mode != MODE_DEAD)
		p->mode = MODE_LINE;
}

size_t smtp_parser_buffered(const struct smtp_parser *p)
{
	return p->in_end - p->in_start;
}

void smtp_parser_discard(struct smtp_parser *p)
{
	p->in_start = p->in_end = 0;
	p->scan = 0;
	p->skipping = 0;
	p->b.cr = 0;
}
