/*
 * fuzz_milter: proto/milter parser on both sides.
 * Input: byte 0 = options (bit 0: small max packet), byte 1 = seed for
 * the split points, the rest = the stream. For each side the stream is
 * fed whole and in random pieces; both runs must give the same packets
 * and the same outcome, and every packet parsed must rebuild to the
 * exact bytes it came from.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/milter.h"

static void die(const char *what)
{
	fprintf(stderr, "fuzz_milter: %s\n", what);
	abort();
}

/* rebuild - the packet from its parsed fields, through the builders. */
static void rebuild(struct sbuf *b, const struct milter_packet *k)
{
	switch (k->cmd) {
	case 'O':
		milter_build_optneg(b, k->optneg.version, k->optneg.actions, k->optneg.steps,
				    k->optneg.lists, k->optneg.nlists);
		break;
	case 'D':
		milter_build_macros(b, k->macro_stage, k->macros, k->nmacros);
		break;
	case 'C':
		milter_build_connect(b, k->connect.hostname, k->connect.family, k->connect.port,
				     k->connect.address);
		break;
	case 'H': milter_build_helo(b, k->str); break;
	case 'U': milter_build_unknown(b, k->str); break;
	case 'M': milter_build_mail(b, k->env.addr, k->env.args, k->env.nargs); break;
	case 'R': milter_build_rcpt(b, k->env.addr, k->env.args, k->env.nargs); break;
	case 'L': milter_build_header(b, k->header.name, k->header.value); break;
	case 'B': case 'E': case 'b':
		milter_build_packet(b, k->cmd, k->body, k->body_len);
		break;
	case 'y': milter_build_packet(b, 'y', k->reply.text, strlen(k->reply.text) + 1); break;
	case 'h': milter_build_add_header(b, k->header.name, k->header.value); break;
	case 'i': milter_build_insert_header(b, k->header.index, k->header.name, k->header.value); break;
	case 'm': milter_build_change_header(b, k->header.index, k->header.name, k->header.value); break;
	case '+': milter_build_add_rcpt(b, k->env.addr); break;
	case '-': milter_build_del_rcpt(b, k->env.addr); break;
	case '2':
		milter_build_add_rcpt_par(b, k->env.addr, k->env.nargs ? k->env.args[0] : NULL);
		break;
	case 'e': milter_build_chg_from(b, k->env.addr, k->env.nargs ? k->env.args[0] : NULL); break;
	case 'q': milter_build_quarantine(b, k->str); break;
	case 'l': milter_build_symlist(b, k->symlist.stage, k->symlist.names); break;
	default: milter_build_simple(b, k->cmd); break;
	}
}

/* check_packet - rebuilt bytes equal the original framing + data. */
static void check_packet(const struct milter_packet *k, struct sbuf *trace)
{
	struct sbuf b;

	sbuf_init(&b);
	rebuild(&b, k);
	if (b.len != k->len + 5 || (unsigned char)b.buf[4] != k->cmd ||
	    memcmp(b.buf + 5, k->data, k->len) != 0)
		die("packet does not rebuild to its own bytes");
	sbuf_add(trace, b.buf, b.len);
	sbuf_free(&b);
}

/*
 * run - parse in pieces (sizes from seed; seed 0 = whole input) and
 * record every packet and the final outcome into *trace.
 */
static void run(enum milter_side side, size_t max, const uint8_t *in, size_t len,
		unsigned seed, struct sbuf *trace)
{
	struct milter_parser *p = milter_parser_new(side, max);
	struct milter_packet k;
	enum milter_next r = MILTER_NEED_MORE;
	size_t off = 0;

	do {
		size_t n = len - off;
		if (seed != 0) {
			seed = seed * 1103515245u + 12345u;
			size_t want = (seed >> 16) % 9 == 0 ? (seed >> 8) % 70000 : (seed >> 16) % 17;
			n = want < n ? want : n;
		}
		milter_parser_feed(p, in + off, n);
		off += n;
		while ((r = milter_parser_next(p, &k)) == MILTER_ITEM)
			check_packet(&k, trace);
		if (r == MILTER_ERROR) {
			if (k.error == NULL || strcmp(k.error, milter_parser_error(p)) != 0)
				die("error without a matching reason");
			sbuf_printf(trace, "!%s", k.error);
			break;
		}
	} while (off < len);
	sbuf_printf(trace, "#%d", (int)r);
	milter_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = data[0] & 1 ? 64 : 0;
	unsigned seed = data[1] | 0x100u;

	for (int s = 0; s < 2; s++) {
		enum milter_side side = s ? MILTER_SIDE_MTA : MILTER_SIDE_FILTER;
		struct sbuf whole, split;

		sbuf_init(&whole);
		sbuf_init(&split);
		run(side, max, data + 2, size - 2, 0, &whole);
		run(side, max, data + 2, size - 2, seed, &split);
		if (whole.len != split.len || memcmp(whole.buf, split.buf, whole.len) != 0)
			die("whole and split feeding differ");
		sbuf_free(&whole);
		sbuf_free(&split);
	}
	return 0;
}
