/*
 * milter: milter protocol v6 packets <-> bytes. See milter.h.
 */
#include "proto/milter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

struct milter_parser {
	enum milter_side side;
	size_t max_packet_bytes;
	unsigned char *buf;		/* bytes fed; [start, end) not consumed */
	size_t start, end, cap;
	const char **strv;		/* scratch: string arrays */
	size_t strv_cap;
	struct milter_macro *macros;	/* scratch: 'D' pairs */
	size_t macros_cap;
	struct milter_macro_list *lists; /* scratch: optneg reply lists */
	size_t lists_cap;
	int dead;
	char err[160];
};

/* ---- reading packet data ---- */

/* A cursor over one packet's data; err says what was wrong. */
struct cur {
	const unsigned char *p;
	size_t n;
	const char *err;
};

static int cur_fail(struct cur *c, const char *why)
{
	if (c->err == NULL)
		c->err = why;
	return -1;
}

static int cur_u32(struct cur *c, uint32_t *out)
{
	if (c->n < 4)
		return cur_fail(c, "short 32-bit integer");
	*out = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 |
	       (uint32_t)c->p[2] << 8 | c->p[3];
	c->p += 4;
	c->n -= 4;
	return 0;
}

static int cur_u16(struct cur *c, uint16_t *out)
{
	if (c->n < 2)
		return cur_fail(c, "short 16-bit integer");
	*out = (uint16_t)(c->p[0] << 8 | c->p[1]);
	c->p += 2;
	c->n -= 2;
	return 0;
}

static int cur_byte(struct cur *c, int *out)
{
	if (c->n < 1)
		return cur_fail(c, "missing byte");
	*out = c->p[0];
	c->p++;
	c->n--;
	return 0;
}

/* cur_str - a NUL-terminated string; *out points into the packet. */
static int cur_str(struct cur *c, const char **out)
{
	const unsigned char *nul;

	if (c->n == 0)
		return cur_fail(c, "missing string");
	if ((nul = memchr(c->p, 0, c->n)) == NULL)
		return cur_fail(c, "string without NUL terminator");
	*out = (const char *)c->p;
	c->n -= (size_t)(nul - c->p) + 1;
	c->p = nul + 1;
	return 0;
}

static int cur_end(struct cur *c)
{
	if (c->n != 0)
		return cur_fail(c, "unexpected data after the last field");
	return 0;
}

/* ---- scratch arrays ---- */

static void *grow(void *v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return v;
	size_t ncap = *cap ? *cap : 8;
	while (ncap < need)
		ncap *= 2;
	*cap = ncap;
	return xrealloc(v, ncap * size);
}

/*
 * cur_strv - the rest of the packet as a string array into p->strv;
 * *n_out strings. Every string must be terminated, so a non-empty rest
 * must end in NUL. At most one string per byte, so the count is bounded.
 */
static int cur_strv(struct milter_parser *p, struct cur *c, size_t *n_out)
{
	size_t n = 0;

	while (c->n > 0) {
		p->strv = grow(p->strv, &p->strv_cap, n + 1, sizeof *p->strv);
		if (cur_str(c, &p->strv[n]) < 0)
			return -1;
		n++;
	}
	*n_out = n;
	return 0;
}

/* ---- MTA -> filter commands ---- */

static int is_mta_cmd(int cmd)
{
	return cmd != 0 && strchr("ABCDEHKLMNOQRTU", cmd) != NULL;
}

static int parse_optneg_head(struct cur *c, struct milter_packet *pkt)
{
	if (cur_u32(c, &pkt->optneg.version) < 0 || cur_u32(c, &pkt->optneg.actions) < 0 ||
	    cur_u32(c, &pkt->optneg.steps) < 0)
		return -1;
	return 0;
}

static int parse_optneg_mta(struct cur *c, struct milter_packet *pkt)
{
	if (parse_optneg_head(c, pkt) < 0)
		return -1;
	return cur_end(c);
}

static int parse_macros(struct milter_parser *p, struct cur *c, struct milter_packet *pkt)
{
	size_t n, i;

	if (cur_byte(c, &pkt->macro_stage) < 0)
		return -1;
	if (!is_mta_cmd(pkt->macro_stage) || pkt->macro_stage == MILTER_SMFIC_MACRO)
		return cur_fail(c, "macro stage is not a command byte");
	if (cur_strv(p, c, &n) < 0)
		return -1;
	if (n % 2 != 0)
		return cur_fail(c, "macro name without value");
	p->macros = grow(p->macros, &p->macros_cap, n / 2 + 1, sizeof *p->macros);
	for (i = 0; i < n / 2; i++) {
		p->macros[i].name = p->strv[2 * i];
		p->macros[i].value = p->strv[2 * i + 1];
	}
	pkt->macros = p->macros;
	pkt->nmacros = n / 2;
	return 0;
}

static int parse_connect(struct cur *c, struct milter_packet *pkt)
{
	if (cur_str(c, &pkt->connect.hostname) < 0 || cur_byte(c, &pkt->connect.family) < 0)
		return -1;
	switch (pkt->connect.family) {
	case MILTER_SMFIA_UNKNOWN:
		pkt->connect.address = "";
		return cur_end(c);
	case MILTER_SMFIA_INET:
	case MILTER_SMFIA_INET6:
	case MILTER_SMFIA_UNIX:
		if (cur_u16(c, &pkt->connect.port) < 0 || cur_str(c, &pkt->connect.address) < 0)
			return -1;
		return cur_end(c);
	default:
		return cur_fail(c, "unknown address family");
	}
}

static int parse_one_str(struct cur *c, const char **out)
{
	if (cur_str(c, out) < 0)
		return -1;
	return cur_end(c);
}

/* 'M', 'R': address then ESMTP args. */
static int parse_envelope(struct milter_parser *p, struct cur *c, struct milter_packet *pkt)
{
	size_t n;

	if (cur_strv(p, c, &n) < 0)
		return -1;
	if (n == 0)
		return cur_fail(c, "missing address");
	pkt->env.addr = p->strv[0];
	pkt->env.args = p->strv + 1;
	pkt->env.nargs = n - 1;
	return 0;
}

static int parse_header(struct cur *c, struct milter_packet *pkt, int with_index)
{
	if (with_index && cur_u32(c, &pkt->header.index) < 0)
		return -1;
	if (cur_str(c, &pkt->header.name) < 0 || cur_str(c, &pkt->header.value) < 0)
		return -1;
	if (pkt->header.name[0] == 0)
		return cur_fail(c, "empty header name");
	return cur_end(c);
}

static int parse_body(struct cur *c, struct milter_packet *pkt)
{
	pkt->body = c->p;
	pkt->body_len = c->n;
	c->n = 0;
	return 0;
}

static int parse_command(struct milter_parser *p, struct cur *c, struct milter_packet *pkt)
{
	switch (pkt->cmd) {
	case MILTER_SMFIC_OPTNEG:
		return parse_optneg_mta(c, pkt);
	case MILTER_SMFIC_MACRO:
		return parse_macros(p, c, pkt);
	case MILTER_SMFIC_CONNECT:
		return parse_connect(c, pkt);
	case MILTER_SMFIC_HELO:
	case MILTER_SMFIC_UNKNOWN:
		return parse_one_str(c, &pkt->str);
	case MILTER_SMFIC_MAIL:
	case MILTER_SMFIC_RCPT:
		return parse_envelope(p, c, pkt);
	case MILTER_SMFIC_HEADER:
		return parse_header(c, pkt, 0);
	case MILTER_SMFIC_BODY:
	case MILTER_SMFIC_BODYEOB:
		return parse_body(c, pkt);
	case MILTER_SMFIC_DATA:
	case MILTER_SMFIC_EOH:
	case MILTER_SMFIC_ABORT:
	case MILTER_SMFIC_QUIT:
	case MILTER_SMFIC_QUIT_NC:
		return cur_end(c);
	default:
		return cur_fail(c, "unknown MTA command");
	}
}

/* ---- filter -> MTA replies ---- */

/* Filter's 'O': the MTA's three words, then (stage, names) pairs. */
static int parse_optneg_reply(struct milter_parser *p, struct cur *c, struct milter_packet *pkt)
{
	size_t n = 0;

	if (parse_optneg_head(c, pkt) < 0)
		return -1;
	while (c->n > 0) {
		p->lists = grow(p->lists, &p->lists_cap, n + 1, sizeof *p->lists);
		if (cur_u32(c, &p->lists[n].stage) < 0 || cur_str(c, &p->lists[n].names) < 0)
			return -1;
		n++;
	}
	pkt->optneg.lists = n ? p->lists : NULL;
	pkt->optneg.nlists = n;
	return 0;
}

static int parse_replycode(struct cur *c, struct milter_packet *pkt)
{
	const char *s;

	if (parse_one_str(c, &s) < 0)
		return -1;
	if ((s[0] != '4' && s[0] != '5') || s[1] < '0' || s[1] > '9' || s[2] < '0' ||
	    s[2] > '9' || (s[3] != 0 && s[3] != ' ' && s[3] != '-'))
		return cur_fail(c, "reply text does not start with a 4xx/5xx code");
	pkt->reply.code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	pkt->reply.text = s;
	return 0;
}

/* '2', 'e': address and an optional args string. */
static int parse_addr_args(struct milter_parser *p, struct cur *c, struct milter_packet *pkt)
{
	if (parse_envelope(p, c, pkt) < 0)
		return -1;
	if (pkt->env.nargs > 1)
		return cur_fail(c, "more than two strings");
	return 0;
}

static int parse_symlist(struct cur *c, struct milter_packet *pkt)
{
	if (cur_u32(c, &pkt->symlist.stage) < 0)
		return -1;
	return parse_one_str(c, &pkt->symlist.names);
}

static int parse_reply(struct milter_parser *p, struct cur *c, struct milter_packet *pkt)
{
	switch (pkt->cmd) {
	case MILTER_SMFIR_OPTNEG:
		return parse_optneg_reply(p, c, pkt);
	case MILTER_SMFIR_REPLYCODE:
		return parse_replycode(c, pkt);
	case MILTER_SMFIR_ADDHEADER:
		return parse_header(c, pkt, 0);
	case MILTER_SMFIR_INSHEADER:
	case MILTER_SMFIR_CHGHEADER:
		return parse_header(c, pkt, 1);
	case MILTER_SMFIR_ADDRCPT:
	case MILTER_SMFIR_DELRCPT:
		return parse_one_str(c, &pkt->env.addr);
	case MILTER_SMFIR_ADDRCPT_PAR:
	case MILTER_SMFIR_CHGFROM:
		return parse_addr_args(p, c, pkt);
	case MILTER_SMFIR_REPLBODY:
		return parse_body(c, pkt);
	case MILTER_SMFIR_QUARANTINE:
		return parse_one_str(c, &pkt->str);
	case MILTER_SMFIR_SETSYMLIST:
		return parse_symlist(c, pkt);
	case MILTER_SMFIR_CONTINUE:
	case MILTER_SMFIR_ACCEPT:
	case MILTER_SMFIR_REJECT:
	case MILTER_SMFIR_TEMPFAIL:
	case MILTER_SMFIR_DISCARD:
	case MILTER_SMFIR_SKIP:
	case MILTER_SMFIR_PROGRESS:
	case MILTER_SMFIR_CONN_FAIL:
	case MILTER_SMFIR_SHUTDOWN:
		return cur_end(c);
	default:
		return cur_fail(c, "unknown filter reply");
	}
}

/* ---- the parser ---- */

struct milter_parser *milter_parser_new(enum milter_side side, size_t max_packet_bytes)
{
	struct milter_parser *p = xcalloc(1, sizeof *p);

	p->side = side;
	p->max_packet_bytes = max_packet_bytes ? max_packet_bytes : MILTER_MAX_PACKET_DEFAULT;
	p->cap = 4096;	/* never NULL: pointer arithmetic on buf precedes the first feed */
	p->buf = xmalloc(p->cap);
	return p;
}

void milter_parser_free(struct milter_parser **pp)
{
	struct milter_parser *p = *pp;

	if (p == NULL)
		return;
	free(p->buf);
	free(p->strv);
	free(p->macros);
	free(p->lists);
	free(p);
	*pp = NULL;
}

void milter_parser_feed(struct milter_parser *p, const void *buf, size_t len)
{
	if (len == 0 || p->dead)
		return;
	if (p->start > 0) {
		memmove(p->buf, p->buf + p->start, p->end - p->start);
		p->end -= p->start;
		p->start = 0;
	}
	if (p->end + len < p->end)
		panic("milter_parser_feed: size overflow");
	if (p->end + len > p->cap) {
		size_t ncap = p->cap ? p->cap : 4096;
		while (ncap < p->end + len)
			ncap *= 2;
		p->buf = xrealloc(p->buf, ncap);
		p->cap = ncap;
	}
	memcpy(p->buf + p->end, buf, len);
	p->end += len;
}

static enum milter_next parser_fail(struct milter_parser *p, struct milter_packet *pkt)
{
	p->dead = 1;
	memset(pkt, 0, sizeof *pkt);
	pkt->error = p->err;
	return MILTER_ERROR;
}

enum milter_next milter_parser_next(struct milter_parser *p, struct milter_packet *pkt)
{
	const unsigned char *h = p->buf + p->start;
	size_t avail = p->end - p->start;
	struct cur c = { 0 };
	uint32_t n;
	int rc;

	if (p->dead)
		return parser_fail(p, pkt);
	if (avail < 4)
		return MILTER_NEED_MORE;
	n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	if (n == 0) {
		snprintf(p->err, sizeof p->err, "packet length 0");
		return parser_fail(p, pkt);
	}
	if (n > p->max_packet_bytes) {
		snprintf(p->err, sizeof p->err, "packet length %lu exceeds maximum %zu",
			 (unsigned long)n, p->max_packet_bytes);
		return parser_fail(p, pkt);
	}
	if (avail - 4 < n)
		return MILTER_NEED_MORE;
	memset(pkt, 0, sizeof *pkt);
	pkt->cmd = h[4];
	pkt->data = c.p = h + 5;
	pkt->len = c.n = n - 1;
	p->start += 4 + (size_t)n;
	rc = p->side == MILTER_SIDE_MTA ? parse_reply(p, &c, pkt) : parse_command(p, &c, pkt);
	if (rc < 0) {
		snprintf(p->err, sizeof p->err, "%s packet '%c' (0x%02x, %s), length %lu: %s",
			 p->side == MILTER_SIDE_MTA ? "filter" : "MTA",
			 pkt->cmd >= 0x20 && pkt->cmd < 0x7f ? pkt->cmd : '?', (unsigned)pkt->cmd,
			 milter_cmd_name(pkt->cmd), (unsigned long)n, c.err);
		return parser_fail(p, pkt);
	}
	return MILTER_ITEM;
}

const char *milter_parser_error(const struct milter_parser *p)
{
	return p->dead ? p->err : NULL;
}

size_t milter_parser_buffered(const struct milter_parser *p)
{
	return p->end - p->start;
}

/* ---- builders ---- */

static size_t pkt_begin(struct sbuf *b, int cmd)
{
	size_t off = b->len;

	sbuf_add(b, "\0\0\0\0", 4);
	sbuf_addc(b, (char)cmd);
	return off;
}

static void put_u32_at(unsigned char *q, uint32_t v)
{
	q[0] = (unsigned char)(v >> 24);
	q[1] = (unsigned char)(v >> 16);
	q[2] = (unsigned char)(v >> 8);
	q[3] = (unsigned char)v;
}

static void pkt_end(struct sbuf *b, size_t off)
{
	size_t n = b->len - off - 4;

	if (n > UINT32_MAX)
		panic("milter: packet of %zu bytes is too large", n);
	put_u32_at((unsigned char *)b->buf + off, (uint32_t)n);
}

static void put_u32(struct sbuf *b, uint32_t v)
{
	unsigned char q[4];

	put_u32_at(q, v);
	sbuf_add(b, q, 4);
}

static void put_str(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s) + 1);
}

void milter_build_packet(struct sbuf *b, int cmd, const void *data, size_t len)
{
	size_t off = pkt_begin(b, cmd);

	if (len > 0)
		sbuf_add(b, data, len);
	pkt_end(b, off);
}

void milter_build_simple(struct sbuf *b, int cmd)
{
	if (cmd == 0 || strchr("TNEAQKcartdspf4", cmd) == NULL)
		panic("milter_build_simple: '%c' carries data", cmd);
	milter_build_packet(b, cmd, NULL, 0);
}

void milter_build_optneg(struct sbuf *b, uint32_t version, uint32_t actions, uint32_t steps,
			 const struct milter_macro_list *lists, size_t nlists)
{
	size_t off = pkt_begin(b, MILTER_SMFIC_OPTNEG);

	put_u32(b, version);
	put_u32(b, actions);
	put_u32(b, steps);
	for (size_t i = 0; i < nlists; i++) {
		put_u32(b, lists[i].stage);
		put_str(b, lists[i].names);
	}
	pkt_end(b, off);
}

void milter_build_macros(struct sbuf *b, int stage_cmd, const struct milter_macro *m, size_t n)
{
	size_t off;

	if (!is_mta_cmd(stage_cmd) || stage_cmd == MILTER_SMFIC_MACRO)
		panic("milter_build_macros: bad stage 0x%02x", (unsigned)stage_cmd);
	off = pkt_begin(b, MILTER_SMFIC_MACRO);
	sbuf_addc(b, (char)stage_cmd);
	for (size_t i = 0; i < n; i++) {
		put_str(b, m[i].name);
		put_str(b, m[i].value);
	}
	pkt_end(b, off);
}

void milter_build_connect(struct sbuf *b, const char *hostname, int family, uint16_t port,
			  const char *address)
{
	size_t off;

	if (family != MILTER_SMFIA_UNKNOWN && family != MILTER_SMFIA_UNIX &&
	    family != MILTER_SMFIA_INET && family != MILTER_SMFIA_INET6)
		panic("milter_build_connect: bad family 0x%02x", (unsigned)family);
	off = pkt_begin(b, MILTER_SMFIC_CONNECT);
	put_str(b, hostname);
	sbuf_addc(b, (char)family);
	if (family != MILTER_SMFIA_UNKNOWN) {
		sbuf_addc(b, (char)(port >> 8));
		sbuf_addc(b, (char)(port & 0xff));
		put_str(b, address);
	}
	pkt_end(b, off);
}

/* One packet of consecutive strings: s1, then s2 unless NULL. */
static void build_strs(struct sbuf *b, int cmd, const char *s1, const char *s2)
{
	size_t off = pkt_begin(b, cmd);

	put_str(b, s1);
	if (s2 != NULL)
		put_str(b, s2);
	pkt_end(b, off);
}

void milter_build_helo(struct sbuf *b, const char *helo)
{
	build_strs(b, MILTER_SMFIC_HELO, helo, NULL);
}

void milter_build_unknown(struct sbuf *b, const char *line)
{
	build_strs(b, MILTER_SMFIC_UNKNOWN, line, NULL);
}

static void build_envelope(struct sbuf *b, int cmd, const char *addr, const char *const *args,
			   size_t nargs)
{
	size_t off = pkt_begin(b, cmd);

	put_str(b, addr);
	for (size_t i = 0; i < nargs; i++)
		put_str(b, args[i]);
	pkt_end(b, off);
}

void milter_build_mail(struct sbuf *b, const char *addr, const char *const *args, size_t nargs)
{
	build_envelope(b, MILTER_SMFIC_MAIL, addr, args, nargs);
}

void milter_build_rcpt(struct sbuf *b, const char *addr, const char *const *args, size_t nargs)
{
	build_envelope(b, MILTER_SMFIC_RCPT, addr, args, nargs);
}

void milter_build_header(struct sbuf *b, const char *name, const char *value)
{
	build_strs(b, MILTER_SMFIC_HEADER, name, value);
}

static void build_chunks(struct sbuf *b, int cmd, const void *data, size_t len)
{
	const char *d = data;

	do {
		size_t n = len > MILTER_BODY_CHUNK_MAX ? MILTER_BODY_CHUNK_MAX : len;
		milter_build_packet(b, cmd, d, n);
		d += n;
		len -= n;
	} while (len > 0);
}

void milter_build_body(struct sbuf *b, const void *data, size_t len)
{
	build_chunks(b, MILTER_SMFIC_BODY, data, len);
}

void milter_build_replycode(struct sbuf *b, int code, const char *text)
{
	size_t off;

	if (code < 400 || code > 599)
		panic("milter_build_replycode: code %d", code);
	off = pkt_begin(b, MILTER_SMFIR_REPLYCODE);
	sbuf_printf(b, "%d", code);
	if (text[0] != 0) {
		sbuf_addc(b, ' ');
		sbuf_adds(b, text);
	}
	sbuf_add(b, "", 1);
	pkt_end(b, off);
}

void milter_build_add_header(struct sbuf *b, const char *name, const char *value)
{
	build_strs(b, MILTER_SMFIR_ADDHEADER, name, value);
}

static void build_index_header(struct sbuf *b, int cmd, uint32_t index, const char *name,
			       const char *value)
{
	size_t off = pkt_begin(b, cmd);

	put_u32(b, index);
	put_str(b, name);
	put_str(b, value);
	pkt_end(b, off);
}

void milter_build_insert_header(struct sbuf *b, uint32_t index, const char *name,
				const char *value)
{
	build_index_header(b, MILTER_SMFIR_INSHEADER, index, name, value);
}

void milter_build_change_header(struct sbuf *b, uint32_t index, const char *name,
				const char *value)
{
	build_index_header(b, MILTER_SMFIR_CHGHEADER, index, name, value);
}

void milter_build_add_rcpt(struct sbuf *b, const char *rcpt)
{
	build_strs(b, MILTER_SMFIR_ADDRCPT, rcpt, NULL);
}

void milter_build_del_rcpt(struct sbuf *b, const char *rcpt)
{
	build_strs(b, MILTER_SMFIR_DELRCPT, rcpt, NULL);
}

void milter_build_add_rcpt_par(struct sbuf *b, const char *rcpt, const char *args)
{
	build_strs(b, MILTER_SMFIR_ADDRCPT_PAR, rcpt, args);
}

void milter_build_chg_from(struct sbuf *b, const char *from, const char *args)
{
	build_strs(b, MILTER_SMFIR_CHGFROM, from, args);
}

void milter_build_replace_body(struct sbuf *b, const void *data, size_t len)
{
	build_chunks(b, MILTER_SMFIR_REPLBODY, data, len);
}

void milter_build_quarantine(struct sbuf *b, const char *reason)
{
	build_strs(b, MILTER_SMFIR_QUARANTINE, reason, NULL);
}

void milter_build_symlist(struct sbuf *b, uint32_t stage, const char *names)
{
	size_t off = pkt_begin(b, MILTER_SMFIR_SETSYMLIST);

	put_u32(b, stage);
	put_str(b, names);
	pkt_end(b, off);
}

/* ---- step helpers ---- */

/* Per MTA command: skip bit, no-reply bit, macro stage, reply expected. */
struct cmd_steps {
	int cmd;
	uint32_t skip_bit;
	uint32_t noreply_bit;
	int macro_stage;
	int replies;
};

static const struct cmd_steps cmd_steps[] = {
	{ 'O', 0, 0, -1, 1 },
	{ 'D', 0, 0, -1, 0 },
	{ 'C', MILTER_SMFIP_NOCONNECT, MILTER_SMFIP_NR_CONN, MILTER_SMFIM_CONNECT, 1 },
	{ 'H', MILTER_SMFIP_NOHELO, MILTER_SMFIP_NR_HELO, MILTER_SMFIM_HELO, 1 },
	{ 'M', MILTER_SMFIP_NOMAIL, MILTER_SMFIP_NR_MAIL, MILTER_SMFIM_ENVFROM, 1 },
	{ 'R', MILTER_SMFIP_NORCPT, MILTER_SMFIP_NR_RCPT, MILTER_SMFIM_ENVRCPT, 1 },
	{ 'T', MILTER_SMFIP_NODATA, MILTER_SMFIP_NR_DATA, MILTER_SMFIM_DATA, 1 },
	{ 'L', MILTER_SMFIP_NOHDRS, MILTER_SMFIP_NR_HDR, -1, 1 },
	{ 'N', MILTER_SMFIP_NOEOH, MILTER_SMFIP_NR_EOH, MILTER_SMFIM_EOH, 1 },
	{ 'B', MILTER_SMFIP_NOBODY, MILTER_SMFIP_NR_BODY, -1, 1 },
	{ 'E', 0, 0, MILTER_SMFIM_EOM, 1 },
	{ 'U', MILTER_SMFIP_NOUNKNOWN, MILTER_SMFIP_NR_UNKN, -1, 1 },
	{ 'A', 0, 0, -1, 0 },
	{ 'Q', 0, 0, -1, 0 },
	{ 'K', 0, 0, -1, 0 },
};

static const struct cmd_steps *steps_of(int cmd)
{
	for (size_t i = 0; i < sizeof cmd_steps / sizeof cmd_steps[0]; i++)
		if (cmd_steps[i].cmd == cmd)
			return &cmd_steps[i];
	return NULL;
}

uint32_t milter_cmd_skip_bit(int cmd)
{
	const struct cmd_steps *s = steps_of(cmd);

	return s ? s->skip_bit : 0;
}

uint32_t milter_cmd_noreply_bit(int cmd)
{
	const struct cmd_steps *s = steps_of(cmd);

	return s ? s->noreply_bit : 0;
}

int milter_cmd_sent(int cmd, uint32_t steps)
{
	return (steps & milter_cmd_skip_bit(cmd)) == 0;
}

int milter_cmd_awaits_reply(int cmd, uint32_t steps)
{
	const struct cmd_steps *s = steps_of(cmd);

	return s != NULL && s->replies && (steps & s->noreply_bit) == 0;
}

int milter_cmd_macro_stage(int cmd)
{
	const struct cmd_steps *s = steps_of(cmd);

	return s ? s->macro_stage : -1;
}

int milter_reply_is_modification(int cmd)
{
	return cmd != 0 && strchr("him+-2ebq", cmd) != NULL;
}

int milter_reply_is_final(int cmd)
{
	return cmd != 0 && strchr("cartdysf4O", cmd) != NULL;
}

static const struct {
	int cmd;
	const char *name;
} cmd_names[] = {
	{ 'O', "optneg" }, { 'D', "macro" }, { 'C', "connect" }, { 'H', "helo" },
	{ 'M', "mail" }, { 'R', "rcpt" }, { 'T', "data" }, { 'L', "header" },
	{ 'N', "eoh" }, { 'B', "body" }, { 'E', "eob" }, { 'A', "abort" },
	{ 'Q', "quit" }, { 'K', "quit_nc" }, { 'U', "unknown" },
	{ 'c', "continue" }, { 'a', "accept" }, { 'r', "reject" }, { 't', "tempfail" },
	{ 'd', "discard" }, { 'y', "replycode" }, { 's', "skip" }, { 'p', "progress" },
	{ 'f', "conn_fail" }, { '4', "shutdown" }, { 'h', "add_header" },
	{ 'i', "insert_header" }, { 'm', "change_header" }, { '+', "add_rcpt" },
	{ '-', "delete_rcpt" }, { '2', "add_rcpt_par" }, { 'e', "change_from" },
	{ 'b', "replace_body" }, { 'q', "quarantine" }, { 'l', "set_symlist" },
};

const char *milter_cmd_name(int cmd)
{
	for (size_t i = 0; i < sizeof cmd_names / sizeof cmd_names[0]; i++)
		if (cmd_names[i].cmd == cmd)
			return cmd_names[i].name;
	return "?";
}
