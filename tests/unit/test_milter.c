/*
 * test_milter: proto/milter codec. Build -> parse round trips for every
 * command and reply, golden bytes written by hand from the protocol
 * description, whole vs byte-at-a-time feeding, malformed packets, v6
 * macro lists, step helpers, constants against libmilter's mfdef.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/util.h"
#include "proto/milter.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- describe: one packet as canonical text ---- */

static void put_esc(struct sbuf *o, const void *data, size_t len)
{
	const unsigned char *d = data;

	for (size_t i = 0; i < len; i++) {
		if (d[i] >= 0x20 && d[i] < 0x7f && d[i] != '\\')
			sbuf_addc(o, (char)d[i]);
		else
			sbuf_printf(o, "\\x%02x", d[i]);
	}
}

static void put_s(struct sbuf *o, const char *s)
{
	put_esc(o, s, strlen(s));
}

static void describe_body(struct sbuf *o, const struct milter_packet *k)
{
	unsigned long sum = 0;

	sbuf_printf(o, " len=%zu", k->body_len);
	if (k->body_len <= 64) {
		sbuf_adds(o, " data=");
		put_esc(o, k->body, k->body_len);
		return;
	}
	for (size_t i = 0; i < k->body_len; i++)
		sum = sum * 31 + k->body[i];
	sbuf_printf(o, " sum=%lx", sum);
}

static void describe_args(struct sbuf *o, const struct milter_packet *k)
{
	sbuf_adds(o, " addr=");
	put_s(o, k->env.addr);
	if (k->cmd == '+' || k->cmd == '-')
		return;
	sbuf_adds(o, " args=[");
	for (size_t i = 0; i < k->env.nargs; i++) {
		if (i)
			sbuf_addc(o, '|');
		put_s(o, k->env.args[i]);
	}
	sbuf_addc(o, ']');
}

static void describe_optneg(struct sbuf *o, const struct milter_packet *k)
{
	sbuf_printf(o, " v=%u act=0x%x steps=0x%x", (unsigned)k->optneg.version,
		    (unsigned)k->optneg.actions, (unsigned)k->optneg.steps);
	for (size_t i = 0; i < k->optneg.nlists; i++) {
		sbuf_printf(o, " [%u]=", (unsigned)k->optneg.lists[i].stage);
		put_s(o, k->optneg.lists[i].names);
	}
}

static void describe(struct sbuf *o, const struct milter_packet *k)
{
	sbuf_addc(o, (char)k->cmd);
	switch (k->cmd) {
	case 'O':
		describe_optneg(o, k);
		break;
	case 'D':
		sbuf_printf(o, " stage=%c", k->macro_stage);
		for (size_t i = 0; i < k->nmacros; i++) {
			sbuf_addc(o, ' ');
			put_s(o, k->macros[i].name);
			sbuf_addc(o, '=');
			put_s(o, k->macros[i].value);
		}
		break;
	case 'C':
		sbuf_adds(o, " host=");
		put_s(o, k->connect.hostname);
		sbuf_printf(o, " fam=%c port=%u addr=", k->connect.family,
			    (unsigned)k->connect.port);
		put_s(o, k->connect.address);
		break;
	case 'H': case 'U': case 'q':
		sbuf_adds(o, " str=");
		put_s(o, k->str);
		break;
	case 'M': case 'R': case '+': case '-': case '2': case 'e':
		describe_args(o, k);
		break;
	case 'i': case 'm':
		sbuf_printf(o, " idx=%u", (unsigned)k->header.index);
		/* fall through */
	case 'L': case 'h':
		sbuf_adds(o, " name=");
		put_s(o, k->header.name);
		sbuf_adds(o, " value=");
		put_s(o, k->header.value);
		break;
	case 'B': case 'E': case 'b':
		describe_body(o, k);
		break;
	case 'y':
		sbuf_printf(o, " code=%d text=", k->reply.code);
		put_s(o, k->reply.text);
		break;
	case 'l':
		sbuf_printf(o, " stage=%u names=", (unsigned)k->symlist.stage);
		put_s(o, k->symlist.names);
		break;
	}
}

/*
 * parse_all - feed `in` in pieces of `step` bytes (0 = whole), draining
 * after each piece; descriptions joined by '\n' into *o. Returns the last
 * result (NEED_MORE at a clean end, ERROR with reason appended as "!").
 */
static enum milter_next parse_all(enum milter_side side, size_t max, const void *in,
				  size_t len, size_t step, struct sbuf *o)
{
	struct milter_parser *p = milter_parser_new(side, max);
	struct milter_packet k;
	enum milter_next r = MILTER_NEED_MORE;
	size_t off = 0;

	do {
		size_t n = step == 0 || len - off < step ? len - off : step;
		milter_parser_feed(p, (const char *)in + off, n);
		off += n;
		while ((r = milter_parser_next(p, &k)) == MILTER_ITEM) {
			describe(o, &k);
			sbuf_addc(o, '\n');
		}
		if (r == MILTER_ERROR) {
			assert_non_null(k.error);
			assert_string_equal(k.error, milter_parser_error(p));
			sbuf_printf(o, "!%s\n", k.error);
			break;
		}
	} while (off < len);
	milter_parser_free(&p);
	assert_null(p);
	return r;
}

/* ---- round trips: every command and reply ---- */

static const char *const mail_args[] = { "SIZE=100", "BODY=8BITMIME" };
static const char *const rcpt_args[] = { "NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b@example.net" };
static const struct milter_macro conn_macros[] = {
	{ "j", "mx.example.org" }, { "{daemon_name}", "sluiced" },
	{ "_", "client.example.net [192.0.2.7]" }, { "{client_addr}", "192.0.2.7" },
};
static const struct milter_macro_list three_lists[] = {
	{ MILTER_SMFIM_CONNECT, "j {client_addr} _" },
	{ MILTER_SMFIM_ENVFROM, "i {auth_authen} {mail_addr}" },
	{ MILTER_SMFIM_EOM, "i" },
};

static void b_optneg_mta(struct sbuf *b) { milter_build_optneg(b, 6, 0x1FF, 0x1FFFFF, NULL, 0); }
static void b_macros(struct sbuf *b) { milter_build_macros(b, 'C', conn_macros, 4); }
static void b_macros_none(struct sbuf *b) { milter_build_macros(b, 'E', NULL, 0); }
static void b_conn4(struct sbuf *b) { milter_build_connect(b, "localhost", '4', 25, "127.0.0.1"); }
static void b_conn6(struct sbuf *b) { milter_build_connect(b, "[::1]", '6', 2525, "::1"); }
static void b_connl(struct sbuf *b) { milter_build_connect(b, "localhost", 'L', 0, "/run/s.sock"); }
static void b_connu(struct sbuf *b) { milter_build_connect(b, "unknown", 'U', 0, NULL); }
static void b_helo(struct sbuf *b) { milter_build_helo(b, "client.example.net"); }
static void b_mail(struct sbuf *b) { milter_build_mail(b, "<a@example.org>", mail_args, 2); }
static void b_mail_null(struct sbuf *b) { milter_build_mail(b, "<>", NULL, 0); }
static void b_rcpt(struct sbuf *b) { milter_build_rcpt(b, "<b@example.net>", rcpt_args, 2); }
static void b_data(struct sbuf *b) { milter_build_simple(b, 'T'); }
static void b_header(struct sbuf *b) { milter_build_header(b, "Subject", " hello"); }
static void b_header_empty(struct sbuf *b) { milter_build_header(b, "X-Empty", ""); }
static void b_eoh(struct sbuf *b) { milter_build_simple(b, 'N'); }
static void b_body(struct sbuf *b) { milter_build_body(b, "Hello\r\n\0bin\r\n", 13); }
static void b_body_empty(struct sbuf *b) { milter_build_body(b, "", 0); }
static void b_eob(struct sbuf *b) { milter_build_simple(b, 'E'); }
static void b_eob_data(struct sbuf *b) { milter_build_packet(b, 'E', "tail\r\n", 6); }
static void b_abort(struct sbuf *b) { milter_build_simple(b, 'A'); }
static void b_quit(struct sbuf *b) { milter_build_simple(b, 'Q'); }
static void b_quit_nc(struct sbuf *b) { milter_build_simple(b, 'K'); }
static void b_unknown(struct sbuf *b) { milter_build_unknown(b, "XFOO bar"); }

static void b_optneg_reply(struct sbuf *b) { milter_build_optneg(b, 6, 0x41, 0x1000, NULL, 0); }
static void b_optneg_lists(struct sbuf *b) { milter_build_optneg(b, 6, 0x1FF, 0x1FFFFF, three_lists, 3); }
static void b_continue(struct sbuf *b) { milter_build_simple(b, 'c'); }
static void b_accept(struct sbuf *b) { milter_build_simple(b, 'a'); }
static void b_reject(struct sbuf *b) { milter_build_simple(b, 'r'); }
static void b_tempfail(struct sbuf *b) { milter_build_simple(b, 't'); }
static void b_discard(struct sbuf *b) { milter_build_simple(b, 'd'); }
static void b_skip(struct sbuf *b) { milter_build_simple(b, 's'); }
static void b_progress(struct sbuf *b) { milter_build_simple(b, 'p'); }
static void b_conn_fail(struct sbuf *b) { milter_build_simple(b, 'f'); }
static void b_shutdown(struct sbuf *b) { milter_build_simple(b, '4'); }
static void b_reply(struct sbuf *b) { milter_build_replycode(b, 550, "5.7.1 go away"); }
static void b_reply_bare(struct sbuf *b) { milter_build_replycode(b, 451, ""); }
static void b_reply_multi(struct sbuf *b) { milter_build_replycode(b, 550, "5.7.1 a\r\n550 5.7.1 b"); }
static void b_addhdr(struct sbuf *b) { milter_build_add_header(b, "X-Spam", "no"); }
static void b_inshdr(struct sbuf *b) { milter_build_insert_header(b, 0, "DKIM-Signature", " v=1; a=rsa-sha256"); }
static void b_chghdr(struct sbuf *b) { milter_build_change_header(b, 2, "X-Spam", "yes"); }
static void b_delhdr(struct sbuf *b) { milter_build_change_header(b, 1, "X-Spam", ""); }
static void b_addrcpt(struct sbuf *b) { milter_build_add_rcpt(b, "<c@example.com>"); }
static void b_delrcpt(struct sbuf *b) { milter_build_del_rcpt(b, "<b@example.net>"); }
static void b_addrcpt_par(struct sbuf *b) { milter_build_add_rcpt_par(b, "<d@example.com>", "NOTIFY=NEVER"); }
static void b_addrcpt_noargs(struct sbuf *b) { milter_build_add_rcpt_par(b, "<d@example.com>", NULL); }
static void b_chgfrom(struct sbuf *b) { milter_build_chg_from(b, "<bounce@example.org>", "SIZE=5 BODY=7BIT"); }
static void b_chgfrom_noargs(struct sbuf *b) { milter_build_chg_from(b, "<>", NULL); }
static void b_replbody(struct sbuf *b) { milter_build_replace_body(b, "new body\r\n", 10); }
static void b_quarantine(struct sbuf *b) { milter_build_quarantine(b, "looks like spam"); }
static void b_symlist(struct sbuf *b) { milter_build_symlist(b, MILTER_SMFIM_ENVRCPT, "{rcpt_addr} {rcpt_host}"); }

struct rt_case {
	const char *name;
	enum milter_side side;		/* the side that parses it */
	void (*build)(struct sbuf *);
	const char *want;
};

#define F MILTER_SIDE_FILTER
#define M MILTER_SIDE_MTA
static const struct rt_case rt_cases[] = {
	{ "optneg from MTA", F, b_optneg_mta, "O v=6 act=0x1ff steps=0x1fffff" },
	{ "macros for connect", F, b_macros, "D stage=C j=mx.example.org {daemon_name}=sluiced "
	  "_=client.example.net [192.0.2.7] {client_addr}=192.0.2.7" },
	{ "macros, no pairs", F, b_macros_none, "D stage=E" },
	{ "connect IPv4", F, b_conn4, "C host=localhost fam=4 port=25 addr=127.0.0.1" },
	{ "connect IPv6", F, b_conn6, "C host=[::1] fam=6 port=2525 addr=::1" },
	{ "connect unix", F, b_connl, "C host=localhost fam=L port=0 addr=/run/s.sock" },
	{ "connect unknown family", F, b_connu, "C host=unknown fam=U port=0 addr=" },
	{ "helo", F, b_helo, "H str=client.example.net" },
	{ "mail with ESMTP args", F, b_mail, "M addr=<a@example.org> args=[SIZE=100|BODY=8BITMIME]" },
	{ "mail null sender", F, b_mail_null, "M addr=<> args=[]" },
	{ "rcpt with ESMTP args", F, b_rcpt,
	  "R addr=<b@example.net> args=[NOTIFY=SUCCESS,FAILURE|ORCPT=rfc822;b@example.net]" },
	{ "data", F, b_data, "T" },
	{ "header", F, b_header, "L name=Subject value= hello" },
	{ "header empty value", F, b_header_empty, "L name=X-Empty value=" },
	{ "end of headers", F, b_eoh, "N" },
	{ "body chunk with NUL", F, b_body, "B len=13 data=Hello\\x0d\\x0a\\x00bin\\x0d\\x0a" },
	{ "body chunk empty", F, b_body_empty, "B len=0 data=" },
	{ "end of body", F, b_eob, "E len=0 data=" },
	{ "end of body with data", F, b_eob_data, "E len=6 data=tail\\x0d\\x0a" },
	{ "abort", F, b_abort, "A" },
	{ "quit", F, b_quit, "Q" },
	{ "quit, new connection", F, b_quit_nc, "K" },
	{ "unknown SMTP command", F, b_unknown, "U str=XFOO bar" },

	{ "optneg reply, no lists", M, b_optneg_reply, "O v=6 act=0x41 steps=0x1000" },
	{ "optneg reply, three lists", M, b_optneg_lists, "O v=6 act=0x1ff steps=0x1fffff "
	  "[0]=j {client_addr} _ [2]=i {auth_authen} {mail_addr} [5]=i" },
	{ "continue", M, b_continue, "c" },
	{ "accept", M, b_accept, "a" },
	{ "reject", M, b_reject, "r" },
	{ "tempfail", M, b_tempfail, "t" },
	{ "discard", M, b_discard, "d" },
	{ "skip", M, b_skip, "s" },
	{ "progress", M, b_progress, "p" },
	{ "connection failure", M, b_conn_fail, "f" },
	{ "shutdown", M, b_shutdown, "4" },
	{ "reply code", M, b_reply, "y code=550 text=550 5.7.1 go away" },
	{ "reply code only", M, b_reply_bare, "y code=451 text=451" },
	{ "reply multi-line", M, b_reply_multi, "y code=550 text=550 5.7.1 a\\x0d\\x0a550 5.7.1 b" },
	{ "add header", M, b_addhdr, "h name=X-Spam value=no" },
	{ "insert header at top", M, b_inshdr, "i idx=0 name=DKIM-Signature value= v=1; a=rsa-sha256" },
	{ "change header", M, b_chghdr, "m idx=2 name=X-Spam value=yes" },
	{ "delete header", M, b_delhdr, "m idx=1 name=X-Spam value=" },
	{ "add rcpt", M, b_addrcpt, "+ addr=<c@example.com>" },
	{ "delete rcpt", M, b_delrcpt, "- addr=<b@example.net>" },
	{ "add rcpt with args", M, b_addrcpt_par, "2 addr=<d@example.com> args=[NOTIFY=NEVER]" },
	{ "add rcpt with no args", M, b_addrcpt_noargs, "2 addr=<d@example.com> args=[]" },
	{ "change sender with args", M, b_chgfrom, "e addr=<bounce@example.org> args=[SIZE=5 BODY=7BIT]" },
	{ "change sender to null", M, b_chgfrom_noargs, "e addr=<> args=[]" },
	{ "replace body", M, b_replbody, "b len=10 data=new body\\x0d\\x0a" },
	{ "quarantine", M, b_quarantine, "q str=looks like spam" },
	{ "set macro list", M, b_symlist, "l stage=3 names={rcpt_addr} {rcpt_host}" },
};

static void test_round_trip(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(rt_cases); i++) {
		const struct rt_case *c = &rt_cases[i];
		struct sbuf b, o, want;

		sbuf_init(&b);
		sbuf_init(&o);
		sbuf_init(&want);
		c->build(&b);
		sbuf_printf(&want, "%s\n", c->want);
		if (parse_all(c->side, 0, b.buf, b.len, 0, &o) != MILTER_NEED_MORE ||
		    strcmp(o.buf, want.buf) != 0)
			fail_msg("case \"%s\": got \"%s\", want \"%s\"", c->name, o.buf, want.buf);
		sbuf_free(&b);
		sbuf_free(&o);
		sbuf_free(&want);
	}
}

/* The same case parsed by the other side is an unknown command (except 'O'). */
static void test_wrong_side(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(rt_cases); i++) {
		const struct rt_case *c = &rt_cases[i];
		struct sbuf b, o;
		enum milter_side other = c->side == F ? M : F;

		sbuf_init(&b);
		sbuf_init(&o);
		c->build(&b);
		if (b.buf[4] != 'O') {
			if (parse_all(other, 0, b.buf, b.len, 0, &o) != MILTER_ERROR ||
			    strstr(o.buf, other == F ? "unknown MTA command" : "unknown filter reply") == NULL)
				fail_msg("case \"%s\" on the wrong side: %s", c->name, o.buf);
		}
		sbuf_free(&b);
		sbuf_free(&o);
	}
}

/* ---- golden bytes, written from the protocol description ---- */

struct golden_case {
	const char *name;
	void (*build)(struct sbuf *);
	const char *bytes;
	size_t len;
};

static void g_mail_macros(struct sbuf *b)
{
	static const struct milter_macro m[] = { { "i", "ABC123" } };
	milter_build_macros(b, 'M', m, 1);
}

static void g_optneg_one_list(struct sbuf *b)
{
	static const struct milter_macro_list l[] = { { 2, "{mail_addr}" } };
	milter_build_optneg(b, 6, 0x01, 0x80, l, 1);
}

#define G(s) s, sizeof(s) - 1
static const struct golden_case golden_cases[] = {
	{ "optneg v6, all actions, all steps", b_optneg_mta,
	  G("\x00\x00\x00\x0d" "O" "\x00\x00\x00\x06" "\x00\x00\x01\xff" "\x00\x1f\xff\xff") },
	{ "connect IPv4 127.0.0.1 port 25", b_conn4,
	  G("\x00\x00\x00\x18" "C" "localhost\0" "4" "\x00\x19" "127.0.0.1\0") },
	{ "connect unknown family", b_connu, G("\x00\x00\x00\x0a" "C" "unknown\0" "U") },
	{ "reply 550 5.7.1 go away", b_reply, G("\x00\x00\x00\x13" "y" "550 5.7.1 go away\0") },
	{ "macros for MAIL", g_mail_macros, G("\x00\x00\x00\x0b" "D" "M" "i\0" "ABC123\0") },
	{ "mail null sender", b_mail_null, G("\x00\x00\x00\x04" "M" "<>\0") },
	{ "delete header", b_delhdr, G("\x00\x00\x00\x0d" "m" "\x00\x00\x00\x01" "X-Spam\0" "\0") },
	{ "optneg reply with one macro list", g_optneg_one_list,
	  G("\x00\x00\x00\x1d" "O" "\x00\x00\x00\x06" "\x00\x00\x00\x01" "\x00\x00\x00\x80"
	    "\x00\x00\x00\x02" "{mail_addr}\0") },
	{ "continue", b_continue, G("\x00\x00\x00\x01" "c") },
	{ "body chunk empty", b_body_empty, G("\x00\x00\x00\x01" "B") },
};

static void test_golden(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(golden_cases); i++) {
		const struct golden_case *c = &golden_cases[i];
		struct sbuf b;

		sbuf_init(&b);
		c->build(&b);
		if (b.len != c->len || memcmp(b.buf, c->bytes, c->len) != 0) {
			struct sbuf o;
			sbuf_init(&o);
			put_esc(&o, b.buf, b.len);
			fail_msg("case \"%s\": built %zu bytes: %s", c->name, b.len, o.buf);
		}
		sbuf_free(&b);
	}
}

/* ---- whole vs byte at a time ---- */

static void check_stream(enum milter_side side)
{
	struct sbuf in, want, whole, bytewise, odd;

	sbuf_init(&in);
	sbuf_init(&want);
	sbuf_init(&whole);
	sbuf_init(&bytewise);
	sbuf_init(&odd);
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < ARRAY_LEN(rt_cases); i++) {
			if (rt_cases[i].side != side)
				continue;
			rt_cases[i].build(&in);
			sbuf_printf(&want, "%s\n", rt_cases[i].want);
		}
	}
	assert_int_equal(parse_all(side, 0, in.buf, in.len, 0, &whole), MILTER_NEED_MORE);
	assert_int_equal(parse_all(side, 0, in.buf, in.len, 1, &bytewise), MILTER_NEED_MORE);
	assert_int_equal(parse_all(side, 0, in.buf, in.len, 7, &odd), MILTER_NEED_MORE);
	assert_string_equal(whole.buf, want.buf);
	assert_string_equal(bytewise.buf, want.buf);
	assert_string_equal(odd.buf, want.buf);
	sbuf_free(&in);
	sbuf_free(&want);
	sbuf_free(&whole);
	sbuf_free(&bytewise);
	sbuf_free(&odd);
}

static void test_stream_filter_side(void **state)
{
	(void)state;
	check_stream(MILTER_SIDE_FILTER);
}

static void test_stream_mta_side(void **state)
{
	(void)state;
	check_stream(MILTER_SIDE_MTA);
}

/* ---- malformed ---- */

struct bad_case {
	const char *name;
	enum milter_side side;
	const char *bytes;
	size_t len;
	const char *reason;	/* substring of the error */
};

static const struct bad_case bad_cases[] = {
	{ "length 0", F, G("\x00\x00\x00\x00" "T"), "packet length 0" },
	{ "length 0 on MTA side", M, G("\x00\x00\x00\x00"), "packet length 0" },
	{ "length one above the default max, no data yet", F, G("\x00\x01\x10\x01" "B"),
	  "packet length 69633 exceeds maximum 69632" },
	{ "length 4 GiB - 1", M, G("\xff\xff\xff\xff"), "exceeds maximum" },
	{ "unknown MTA command", F, G("\x00\x00\x00\x01" "Z"), "unknown MTA command" },
	{ "unknown filter reply", M, G("\x00\x00\x00\x01" "z"), "unknown filter reply" },
	{ "command byte NUL", F, G("\x00\x00\x00\x01" "\x00"), "unknown MTA command" },
	{ "helo missing NUL", F, G("\x00\x00\x00\x04" "H" "abc"), "string without NUL" },
	{ "helo no data", F, G("\x00\x00\x00\x01" "H"), "missing string" },
	{ "helo trailing data", F, G("\x00\x00\x00\x04" "H" "a\0b"), "unexpected data" },
	{ "optneg short uint32", F, G("\x00\x00\x00\x09" "O" "\x00\x00\x00\x06" "\x00\x00\x01\xff"),
	  "short 32-bit integer" },
	{ "optneg from MTA with trailing byte", F,
	  G("\x00\x00\x00\x0e" "O" "\x00\x00\x00\x06" "\x00\x00\x01\xff" "\x00\x1f\xff\xff" "x"),
	  "unexpected data" },
	{ "optneg reply, truncated stage", M,
	  G("\x00\x00\x00\x0f" "O" "\x00\x00\x00\x06" "\x00\x00\x01\xff" "\x00\x1f\xff\xff" "\x00\x00"),
	  "short 32-bit integer" },
	{ "optneg reply, macro list without NUL", M,
	  G("\x00\x00\x00\x14" "O" "\x00\x00\x00\x06" "\x00\x00\x01\xff" "\x00\x1f\xff\xff"
	    "\x00\x00\x00\x01" "abc"), "string without NUL" },
	{ "optneg reply, stage without list", M,
	  G("\x00\x00\x00\x11" "O" "\x00\x00\x00\x06" "\x00\x00\x01\xff" "\x00\x1f\xff\xff"
	    "\x00\x00\x00\x01"), "missing string" },
	{ "connect bad family", F, G("\x00\x00\x00\x04" "C" "h\0X"), "unknown address family" },
	{ "connect short port", F, G("\x00\x00\x00\x05" "C" "h\0" "4" "\x00"), "short 16-bit integer" },
	{ "connect missing address", F, G("\x00\x00\x00\x06" "C" "h\0" "4" "\x00\x19"), "missing string" },
	{ "connect address without NUL", F, G("\x00\x00\x00\x08" "C" "h\0" "4" "\x00\x19" "1."),
	  "string without NUL" },
	{ "connect unknown family with port", F, G("\x00\x00\x00\x05" "C" "h\0U\x00"), "unexpected data" },
	{ "connect truncated hostname", F, G("\x00\x00\x00\x05" "C" "host"), "string without NUL" },
	{ "connect no family", F, G("\x00\x00\x00\x03" "C" "h\0"), "missing byte" },
	{ "macros odd count", F, G("\x00\x00\x00\x04" "D" "C" "j\0"), "macro name without value" },
	{ "macros bad stage", F, G("\x00\x00\x00\x02" "D" "x"), "macro stage" },
	{ "macros no stage", F, G("\x00\x00\x00\x01" "D"), "missing byte" },
	{ "macros value without NUL", F, G("\x00\x00\x00\x06" "D" "C" "j\0mx"), "string without NUL" },
	{ "mail no address", F, G("\x00\x00\x00\x01" "M"), "missing address" },
	{ "mail unterminated arg", F, G("\x00\x00\x00\x09" "M" "<a>\0SIZE"), "string without NUL" },
	{ "header one string", F, G("\x00\x00\x00\x09" "L" "Subject\0"), "missing string" },
	{ "header empty name", F, G("\x00\x00\x00\x04" "L" "\0v\0"), "empty header name" },
	{ "data with payload", F, G("\x00\x00\x00\x02" "T" "x"), "unexpected data" },
	{ "quit with payload", F, G("\x00\x00\x00\x02" "Q" "\0"), "unexpected data" },
	{ "continue with payload", M, G("\x00\x00\x00\x02" "c" "x"), "unexpected data" },
	{ "reply code 250", M, G("\x00\x00\x00\x08" "y" "250 ok\0"), "4xx/5xx" },
	{ "reply code two digits", M, G("\x00\x00\x00\x04" "y" "55\0"), "4xx/5xx" },
	{ "reply code glued to text", M, G("\x00\x00\x00\x06" "y" "550x\0"), "4xx/5xx" },
	{ "reply code empty", M, G("\x00\x00\x00\x02" "y" "\0"), "4xx/5xx" },
	{ "reply code without NUL", M, G("\x00\x00\x00\x04" "y" "550"), "string without NUL" },
	{ "insert header short index", M, G("\x00\x00\x00\x03" "i" "\x00\x00"), "short 32-bit integer" },
	{ "change header missing value", M, G("\x00\x00\x00\x07" "m" "\x00\x00\x00\x01" "X\0"),
	  "missing string" },
	{ "add header empty name", M, G("\x00\x00\x00\x04" "h" "\0v\0"), "empty header name" },
	{ "change sender, three strings", M, G("\x00\x00\x00\x07" "e" "a\0b\0c\0"), "more than two strings" },
	{ "add rcpt, two strings", M, G("\x00\x00\x00\x05" "+" "a\0b\0"), "unexpected data" },
	{ "add rcpt par, no data", M, G("\x00\x00\x00\x01" "2"), "missing address" },
	{ "set symlist short stage", M, G("\x00\x00\x00\x02" "l" "\x00"), "short 32-bit integer" },
	{ "set symlist no names", M, G("\x00\x00\x00\x05" "l" "\x00\x00\x00\x01"), "missing string" },
	{ "quarantine without NUL", M, G("\x00\x00\x00\x04" "q" "bad"), "string without NUL" },
	{ "good packet then garbage", M, G("\x00\x00\x00\x01" "c" "\x00\x00\x00\x01" "?"),
	  "unknown filter reply" },
};

static void test_malformed(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];

		for (size_t step = 0; step <= 1; step++) {
			struct sbuf o;
			enum milter_next r;

			sbuf_init(&o);
			r = parse_all(c->side, 0, c->bytes, c->len, step, &o);
			if (r != MILTER_ERROR || strstr(o.buf, c->reason) == NULL)
				fail_msg("case \"%s\" (step %zu): got \"%s\", want error \"%s\"",
					 c->name, step, o.buf, c->reason);
			sbuf_free(&o);
		}
	}
}

static void test_error_is_sticky(void **state)
{
	struct milter_parser *p = milter_parser_new(MILTER_SIDE_FILTER, 0);
	struct milter_packet k;
	struct sbuf b;

	(void)state;
	sbuf_init(&b);
	milter_build_packet(&b, 'Z', NULL, 0);
	milter_build_simple(&b, 'T');
	milter_parser_feed(p, b.buf, b.len);
	assert_null(milter_parser_error(p));
	assert_int_equal(milter_parser_next(p, &k), MILTER_ERROR);
	assert_string_equal(k.error,
			    "MTA packet 'Z' (0x5a, ?), length 1: unknown MTA command");
	milter_parser_feed(p, b.buf, b.len);
	assert_int_equal(milter_parser_next(p, &k), MILTER_ERROR);
	assert_non_null(strstr(milter_parser_error(p), "unknown MTA command"));
	milter_parser_free(&p);
	milter_parser_free(&p);	/* NULL is fine */
	sbuf_free(&b);
}

static void test_max_packet(void **state)
{
	struct sbuf b, o;

	(void)state;
	sbuf_init(&b);
	sbuf_init(&o);
	milter_build_header(&b, "Subject", "0123456");	/* N = 1 + 8 + 8 = 17 */
	assert_int_equal(parse_all(F, 17, b.buf, b.len, 0, &o), MILTER_NEED_MORE);
	assert_string_equal(o.buf, "L name=Subject value=0123456\n");
	sbuf_reset(&o);
	assert_int_equal(parse_all(F, 16, b.buf, 4, 0, &o), MILTER_ERROR);
	assert_string_equal(o.buf, "!packet length 17 exceeds maximum 16\n");
	sbuf_free(&b);
	sbuf_free(&o);
}

/* A long body is split into full chunks, each accepted by the default max. */
static void test_body_chunks(void **state)
{
	size_t len = 2 * MILTER_BODY_CHUNK_MAX + 1000;
	char *body = xmalloc(len);
	struct milter_parser *p = milter_parser_new(MILTER_SIDE_FILTER, 0);
	struct milter_packet k;
	struct sbuf b;
	size_t got = 0, n = 0;

	(void)state;
	for (size_t i = 0; i < len; i++)
		body[i] = (char)(i * 7);
	sbuf_init(&b);
	milter_build_body(&b, body, len);
	assert_int_equal(b.len, len + 3 * 5);
	milter_parser_feed(p, b.buf, b.len);
	while (milter_parser_next(p, &k) == MILTER_ITEM) {
		assert_int_equal(k.cmd, 'B');
		assert_true(k.body_len == (n < 2 ? MILTER_BODY_CHUNK_MAX : 1000));
		assert_memory_equal(k.body, body + got, k.body_len);
		got += k.body_len;
		n++;
	}
	assert_int_equal(n, 3);
	assert_int_equal(got, len);
	assert_int_equal(milter_parser_buffered(p), 0);
	sbuf_reset(&b);
	milter_build_replace_body(&b, body, MILTER_BODY_CHUNK_MAX + 1);
	assert_int_equal(b.len, MILTER_BODY_CHUNK_MAX + 1 + 2 * 5);
	assert_int_equal(b.buf[4], 'b');
	assert_int_equal(b.buf[4 + 4 + MILTER_BODY_CHUNK_MAX + 1], 'b');
	milter_parser_free(&p);
	sbuf_free(&b);
	free(body);
}

/* Optneg reply: several stages, in any order, including one we don't know. */
static void test_optneg_macro_lists(void **state)
{
	static const struct milter_macro_list lists[] = {
		{ MILTER_SMFIM_EOH, "{hdrs}" },
		{ MILTER_SMFIM_CONNECT, "j _ {daemon_name} {client_addr} {client_name}" },
		{ MILTER_SMFIM_HELO, "{tls_version} {cipher}" },
		{ MILTER_SMFIM_ENVRCPT, "" },
		{ MILTER_SMFIM_EOM, "i {auth_authen}" },
		{ 42, "future" },
	};
	struct milter_parser *p = milter_parser_new(MILTER_SIDE_MTA, 0);
	struct milter_packet k;
	struct sbuf b;

	(void)state;
	sbuf_init(&b);
	milter_build_optneg(&b, 6, MILTER_SMFIF_ALL, MILTER_SMFIP_NR_HDR | MILTER_SMFIP_SKIP,
			    lists, ARRAY_LEN(lists));
	milter_parser_feed(p, b.buf, b.len);
	assert_int_equal(milter_parser_next(p, &k), MILTER_ITEM);
	assert_int_equal(k.cmd, 'O');
	assert_int_equal(k.optneg.version, 6);
	assert_int_equal(k.optneg.actions, 0x1FF);
	assert_int_equal(k.optneg.steps, 0x480);
	assert_int_equal(k.optneg.nlists, ARRAY_LEN(lists));
	for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
		assert_int_equal(k.optneg.lists[i].stage, lists[i].stage);
		assert_string_equal(k.optneg.lists[i].names, lists[i].names);
	}
	assert_int_equal(milter_parser_next(p, &k), MILTER_NEED_MORE);
	milter_parser_free(&p);
	sbuf_free(&b);
}

/* ---- step helpers ---- */

struct step_case {
	int cmd;
	uint32_t skip, noreply;
	int stage, replies;
};

static const struct step_case step_cases[] = {
	{ 'O', 0, 0, -1, 1 },
	{ 'D', 0, 0, -1, 0 },
	{ 'C', MILTER_SMFIP_NOCONNECT, MILTER_SMFIP_NR_CONN, 0, 1 },
	{ 'H', MILTER_SMFIP_NOHELO, MILTER_SMFIP_NR_HELO, 1, 1 },
	{ 'M', MILTER_SMFIP_NOMAIL, MILTER_SMFIP_NR_MAIL, 2, 1 },
	{ 'R', MILTER_SMFIP_NORCPT, MILTER_SMFIP_NR_RCPT, 3, 1 },
	{ 'T', MILTER_SMFIP_NODATA, MILTER_SMFIP_NR_DATA, 4, 1 },
	{ 'L', MILTER_SMFIP_NOHDRS, MILTER_SMFIP_NR_HDR, -1, 1 },
	{ 'N', MILTER_SMFIP_NOEOH, MILTER_SMFIP_NR_EOH, 6, 1 },
	{ 'B', MILTER_SMFIP_NOBODY, MILTER_SMFIP_NR_BODY, -1, 1 },
	{ 'E', 0, 0, 5, 1 },
	{ 'U', MILTER_SMFIP_NOUNKNOWN, MILTER_SMFIP_NR_UNKN, -1, 1 },
	{ 'A', 0, 0, -1, 0 },
	{ 'Q', 0, 0, -1, 0 },
	{ 'K', 0, 0, -1, 0 },
	{ 'c', 0, 0, -1, 0 },
};

static void test_step_helpers(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(step_cases); i++) {
		const struct step_case *c = &step_cases[i];

		assert_int_equal(milter_cmd_skip_bit(c->cmd), c->skip);
		assert_int_equal(milter_cmd_noreply_bit(c->cmd), c->noreply);
		assert_int_equal(milter_cmd_macro_stage(c->cmd), c->stage);
		assert_int_equal(milter_cmd_awaits_reply(c->cmd, 0), c->replies);
		/* every NR bit set: only O and E still get a reply */
		assert_int_equal(milter_cmd_awaits_reply(c->cmd, MILTER_SMFIP_ALL),
				 c->cmd == 'O' || c->cmd == 'E');
		assert_true(milter_cmd_sent(c->cmd, 0));
		assert_int_equal(milter_cmd_sent(c->cmd, MILTER_SMFIP_ALL), c->skip == 0);
		/* bits are independent: NR_HDR alone does not skip headers */
		assert_true(milter_cmd_sent(c->cmd, c->noreply));
	}
	assert_false(milter_cmd_awaits_reply('L', MILTER_SMFIP_NR_HDR));
	assert_true(milter_cmd_awaits_reply('L', MILTER_SMFIP_NR_BODY));
}

static void test_reply_classes(void **state)
{
	(void)state;
	for (const char *s = "him+-2ebq"; *s; s++) {
		assert_true(milter_reply_is_modification(*s));
		assert_false(milter_reply_is_final(*s));
	}
	for (const char *s = "cartdysf4O"; *s; s++) {
		assert_true(milter_reply_is_final(*s));
		assert_false(milter_reply_is_modification(*s));
	}
	assert_false(milter_reply_is_final('p'));
	assert_false(milter_reply_is_modification('p'));
	assert_false(milter_reply_is_final(0));
	assert_false(milter_reply_is_modification(0));
	assert_string_equal(milter_cmd_name('C'), "connect");
	assert_string_equal(milter_cmd_name('m'), "change_header");
	assert_string_equal(milter_cmd_name('Z'), "?");
	for (size_t i = 0; i < ARRAY_LEN(rt_cases); i++) {
		struct sbuf b;
		sbuf_init(&b);
		rt_cases[i].build(&b);
		assert_string_not_equal(milter_cmd_name(b.buf[4]), "?");
		sbuf_free(&b);
	}
}

/* ---- constants against libmilter, when its header is installed ---- */

#if defined(__has_include)
#if __has_include(<libmilter/mfdef.h>)
#include <libmilter/mfdef.h>
#define HAVE_MFDEF 1
#endif
#endif

static void test_constants_match_mfdef(void **state)
{
	(void)state;
#ifdef HAVE_MFDEF
	struct { long ours, theirs; const char *name; } t[] = {
#define C(ours, theirs) { (long)(ours), (long)(theirs), #theirs }
		C(MILTER_PROT_VERSION, SMFI_PROT_VERSION), C(MILTER_BODY_CHUNK_MAX, MILTER_CHUNK_SIZE),
		C(MILTER_SMFIC_ABORT, SMFIC_ABORT), C(MILTER_SMFIC_BODY, SMFIC_BODY),
		C(MILTER_SMFIC_CONNECT, SMFIC_CONNECT), C(MILTER_SMFIC_MACRO, SMFIC_MACRO),
		C(MILTER_SMFIC_BODYEOB, SMFIC_BODYEOB), C(MILTER_SMFIC_HELO, SMFIC_HELO),
		C(MILTER_SMFIC_QUIT_NC, SMFIC_QUIT_NC), C(MILTER_SMFIC_HEADER, SMFIC_HEADER),
		C(MILTER_SMFIC_MAIL, SMFIC_MAIL), C(MILTER_SMFIC_EOH, SMFIC_EOH),
		C(MILTER_SMFIC_OPTNEG, SMFIC_OPTNEG), C(MILTER_SMFIC_QUIT, SMFIC_QUIT),
		C(MILTER_SMFIC_RCPT, SMFIC_RCPT), C(MILTER_SMFIC_DATA, SMFIC_DATA),
		C(MILTER_SMFIC_UNKNOWN, SMFIC_UNKNOWN),
		C(MILTER_SMFIR_ADDRCPT, SMFIR_ADDRCPT), C(MILTER_SMFIR_DELRCPT, SMFIR_DELRCPT),
		C(MILTER_SMFIR_ADDRCPT_PAR, SMFIR_ADDRCPT_PAR), C(MILTER_SMFIR_SHUTDOWN, SMFIR_SHUTDOWN),
		C(MILTER_SMFIR_ACCEPT, SMFIR_ACCEPT), C(MILTER_SMFIR_REPLBODY, SMFIR_REPLBODY),
		C(MILTER_SMFIR_CONTINUE, SMFIR_CONTINUE), C(MILTER_SMFIR_DISCARD, SMFIR_DISCARD),
		C(MILTER_SMFIR_CHGFROM, SMFIR_CHGFROM), C(MILTER_SMFIR_CONN_FAIL, SMFIR_CONN_FAIL),
		C(MILTER_SMFIR_ADDHEADER, SMFIR_ADDHEADER), C(MILTER_SMFIR_INSHEADER, SMFIR_INSHEADER),
		C(MILTER_SMFIR_SETSYMLIST, SMFIR_SETSYMLIST), C(MILTER_SMFIR_CHGHEADER, SMFIR_CHGHEADER),
		C(MILTER_SMFIR_PROGRESS, SMFIR_PROGRESS), C(MILTER_SMFIR_QUARANTINE, SMFIR_QUARANTINE),
		C(MILTER_SMFIR_REJECT, SMFIR_REJECT), C(MILTER_SMFIR_SKIP, SMFIR_SKIP),
		C(MILTER_SMFIR_TEMPFAIL, SMFIR_TEMPFAIL), C(MILTER_SMFIR_REPLYCODE, SMFIR_REPLYCODE),
		C(MILTER_SMFIA_UNKNOWN, SMFIA_UNKNOWN), C(MILTER_SMFIA_UNIX, SMFIA_UNIX),
		C(MILTER_SMFIA_INET, SMFIA_INET), C(MILTER_SMFIA_INET6, SMFIA_INET6),
		C(MILTER_SMFIF_ALL, SMFI_CURR_ACTS), C(MILTER_SMFIP_ALL, SMFI_CURR_PROT),
		C(MILTER_SMFIP_NOCONNECT, SMFIP_NOCONNECT), C(MILTER_SMFIP_NOHELO, SMFIP_NOHELO),
		C(MILTER_SMFIP_NOMAIL, SMFIP_NOMAIL), C(MILTER_SMFIP_NORCPT, SMFIP_NORCPT),
		C(MILTER_SMFIP_NOBODY, SMFIP_NOBODY), C(MILTER_SMFIP_NOHDRS, SMFIP_NOHDRS),
		C(MILTER_SMFIP_NOEOH, SMFIP_NOEOH), C(MILTER_SMFIP_NR_HDR, SMFIP_NR_HDR),
		C(MILTER_SMFIP_NOUNKNOWN, SMFIP_NOUNKNOWN), C(MILTER_SMFIP_NODATA, SMFIP_NODATA),
		C(MILTER_SMFIP_SKIP, SMFIP_SKIP), C(MILTER_SMFIP_RCPT_REJ, SMFIP_RCPT_REJ),
		C(MILTER_SMFIP_NR_CONN, SMFIP_NR_CONN), C(MILTER_SMFIP_NR_HELO, SMFIP_NR_HELO),
		C(MILTER_SMFIP_NR_MAIL, SMFIP_NR_MAIL), C(MILTER_SMFIP_NR_RCPT, SMFIP_NR_RCPT),
		C(MILTER_SMFIP_NR_DATA, SMFIP_NR_DATA), C(MILTER_SMFIP_NR_UNKN, SMFIP_NR_UNKN),
		C(MILTER_SMFIP_NR_EOH, SMFIP_NR_EOH), C(MILTER_SMFIP_NR_BODY, SMFIP_NR_BODY),
		C(MILTER_SMFIP_HDR_LEADSPC, SMFIP_HDR_LEADSPC), C(MILTER_SMFIP_MDS_256K, SMFIP_MDS_256K),
		C(MILTER_SMFIP_MDS_1M, SMFIP_MDS_1M),
#undef C
	};
	for (size_t i = 0; i < ARRAY_LEN(t); i++)
		if (t[i].ours != t[i].theirs)
			fail_msg("%s: ours 0x%lx, mfdef.h 0x%lx", t[i].name, t[i].ours, t[i].theirs);
	/* action bits one by one, as listed in the brief */
	assert_int_equal(MILTER_SMFIF_ADDHDRS | MILTER_SMFIF_CHGBODY | MILTER_SMFIF_ADDRCPT |
			 MILTER_SMFIF_DELRCPT | MILTER_SMFIF_CHGHDRS | MILTER_SMFIF_QUARANTINE |
			 MILTER_SMFIF_CHGFROM | MILTER_SMFIF_ADDRCPT_PAR | MILTER_SMFIF_SETSYMLIST,
			 SMFI_CURR_ACTS);
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_wrong_side),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_stream_filter_side),
		cmocka_unit_test(test_stream_mta_side),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_error_is_sticky),
		cmocka_unit_test(test_max_packet),
		cmocka_unit_test(test_body_chunks),
		cmocka_unit_test(test_optneg_macro_lists),
		cmocka_unit_test(test_step_helpers),
		cmocka_unit_test(test_reply_classes),
		cmocka_unit_test(test_constants_match_mfdef),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
