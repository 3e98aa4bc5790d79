/*
 * test_smtp_data: the DATA decoder and BDAT framing of proto/smtp:
 * dot-unstuffing, end of data only at <CRLF>.<CRLF>, CRLF -> LF, bare
 * <CR>/<LF> under both policies, bounded memory on long lines, every SMTP
 * smuggling sequence of tests/data/smtp/smuggling-eod-sequences.json,
 * BDAT chunks split at every position.
 */
#include "tests/unit/smtp_testlib.h"

#define RJ SMTP_BARE_REJECT
#define NM SMTP_BARE_NORMALIZE
#define FATAL_LF "FATAL 521 5.5.2 Error: bare <LF> received\n"
#define FATAL_CR "FATAL 521 5.5.2 Error: bare <CR> received\n"

struct data_case {
	const char *name;
	const char *in;
	size_t len;		/* 0: strlen(in) */
	int begin;		/* 'D': start in DATA mode; 0: command mode */
	const char *want_reject;
	const char *want_normalize;	/* NULL: same as want_reject */
};

static const struct data_case data_cases[] = {
	{ "empty message", ".\r\n", 0, 'D', "END\n", NULL },
	{ "dot line right after DATA command", "DATA\r\n.\r\nQUIT\r\n", 0, 0, "DATA\nEND\nQUIT\n", NULL },
	{ "simple", "a\r\nb\r\n.\r\n", 0, 'D', "DATA a\\nb\\n\nEND\n", NULL },
	{ "no final newline before dot is impossible", "abc\r\n.\r\n", 0, 'D', "DATA abc\\n\nEND\n", NULL },
	{ "empty lines", "\r\n\r\n.\r\n", 0, 'D', "DATA \\n\\n\nEND\n", NULL },
	{ "dot-unstuffing", "..a\r\n..\r\n...\r\n.\r\n", 0, 'D', "DATA .a\\n.\\n..\\n\nEND\n", NULL },
	{ "dot inside a line kept", "a.b\r\na.\r\n.\r\n", 0, 'D', "DATA a.b\\na.\\n\nEND\n", NULL },
	{ "dot space line is content", ". \r\n.x\r\n.\r\n", 0, 'D', "DATA  \\nx\\n\nEND\n", NULL },
	{ "commands after end of data", "x\r\n.\r\nMAIL FROM:<a@b>\r\n", 0, 'D',
	  "DATA x\\n\nEND\nMAIL <a@b> L=a D=b\n", NULL },
	{ "two messages", "DATA\r\none\r\n.\r\nDATA\r\ntwo\r\n.\r\n", 0, 0,
	  "DATA\nDATA one\\n\nEND\nDATA\nDATA two\\n\nEND\n", NULL },
	{ "NUL bytes are content", "a\0b\r\n\0.\r\n.\0\r\n.\r\n", 16, 'D',
	  "DATA a\\x00b\\n\\x00.\\n\\x00\\n\nEND\n", NULL },
	{ "8-bit content", "\xc3\xa9t\xc3\xa9\r\n\xff\r\n.\r\n", 0, 'D', "DATA \\xc3\\xa9t\\xc3\\xa9\\n\\xff\\n\nEND\n", NULL },
	{ "bare LF in body", "a\nb\r\n.\r\n", 0, 'D', FATAL_LF, "DATA a\\nb\\n\nEND\n" },
	{ "bare CR in body", "a\rb\r\n.\r\n", 0, 'D', FATAL_CR, "DATA a\\rb\\n\nEND\n" },
	{ "CR CR LF", "a\r\r\n.\r\n", 0, 'D', FATAL_CR, "DATA a\\r\\n\nEND\n" },
	{ "bare LF line with dots", "a\n..b\n.\nc\r\n.\r\n", 0, 'D', FATAL_LF, "DATA a\\n.b\\n.\\nc\\n\nEND\n" },
	{ "dot then bare CR", "\r\n.\rx\r\n.\r\n", 0, 'D', FATAL_CR, "DATA \\n\\rx\\n\nEND\n" },
	{ "DATA command ended by bare LF", "DATA\n.\r\nx\r\n.\r\n", 0, 0, FATAL_LF,
	  "DATA\nDATA .\\nx\\n\nEND\n" },
	{ "body ends in bare LF then dot", "x\n.\r\n.\r\n", 0, 'D', FATAL_LF, "DATA x\\n.\\n\nEND\n" },
	{ "unterminated", "abc\r\n.", 0, 'D', "DATA abc\\n\n", NULL },
};

/*
 * strip_content - drop "DATA <content>" lines: content streamed out before a
 * FATAL depends on how the input was split (the session discards it).
 */
static void strip_content(char *log)
{
	char *w = log, *r = log;

	while (*r) {
		char *nl = strchr(r, '\n');
		size_t n = nl ? (size_t)(nl - r) + 1 : strlen(r);
		if (strncmp(r, "DATA ", 5) != 0) {
			memmove(w, r, n);
			w += n;
		}
		r += n;
	}
	*w = 0;
}

static void test_data_table(void **state)
{
	static const size_t steps[] = { 0, 1, 2, 3, 5, 7 };

	(void)state;
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		for (int pol = 0; pol < 2; pol++) {
			const char *want = pol == NM && c->want_normalize ? c->want_normalize : c->want_reject;
			for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
				char *got = st_run(c->in, len, steps[s], (enum smtp_bare_policy)pol, c->begin, NULL);
				if (strstr(want, "FATAL"))
					strip_content(got);
				st_expect(c->name, got, want);
				free(got);
			}
		}
	}
}

/* Items are yielded in bounded pieces; memory stays bounded on a huge line. */
static void test_data_long_line(void **state)
{
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;
	char chunk[4096];
	size_t total = 0, biggest = 0;
	enum smtp_next r;

	(void)state;
	memset(chunk, 'y', sizeof(chunk));
	smtp_parser_begin_data(p);
	for (int i = 0; i < 2560; i++) {	/* 10 MiB, no line end */
		smtp_parser_feed(p, chunk, sizeof(chunk));
		while ((r = smtp_parser_next(p, &it)) == SMTP_ITEM) {
			assert_int_equal(it.kind, SMTP_ITEM_DATA);
			total += it.len;
		}
		assert_int_equal(r, SMTP_NEED_MORE);
		assert_int_equal(smtp_parser_buffered(p), 0);
	}
	/* one big feed: several items, none over 64 KiB */
	char *big = xmalloc(1 << 20);
	memset(big, 'z', 1 << 20);
	smtp_parser_feed(p, big, 1 << 20);
	free(big);
	while ((r = smtp_parser_next(p, &it)) == SMTP_ITEM) {
		assert_int_equal(it.kind, SMTP_ITEM_DATA);
		total += it.len;
		if (it.len > biggest)
			biggest = it.len;
	}
	assert_true(biggest <= 65536);
	smtp_parser_feed(p, "\r\n.\r\n", 5);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_DATA);
	assert_int_equal(it.len, 1);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_DATA_END);
	assert_int_equal(total, 2560 * 4096 + (1 << 20));
	smtp_parser_free(&p);
}

/* A generated message fed whole and one byte at a time decodes identically. */
static void test_data_bytewise_identical(void **state)
{
	struct sbuf in;
	char *whole, *bytes;

	(void)state;
	sbuf_init(&in);
	for (int i = 0; i < 300; i++) {
		sbuf_printf(&in, "%sline %d", i % 7 == 0 ? ".." : "", i);
		if (i % 11 == 0)
			sbuf_adds(&in, "\r\n..x\r\n.y");
		sbuf_adds(&in, i % 13 == 0 ? "\r\n\r\n" : "\r\n");
	}
	sbuf_adds(&in, ".\r\nQUIT\r\n");
	for (int pol = 0; pol < 2; pol++) {
		struct st_drv d;
		whole = st_run(in.buf, in.len, 0, (enum smtp_bare_policy)pol, 'D', NULL);
		bytes = st_run(in.buf, in.len, 1, (enum smtp_bare_policy)pol, 'D', &d);
		st_expect("bytewise message", bytes, whole);
		assert_int_equal(d.n_end, 1);
		assert_int_equal(d.n_fatal, 0);
		assert_non_null(strstr(whole, "DATA .line 0\\n"));
		assert_non_null(strstr(whole, "END\nQUIT\n"));
		free(whole);
		free(bytes);
	}
	sbuf_free(&in);
}

/* ---- SMTP smuggling (SEC Consult 2023, CVE-2023-51764) ---- */

struct seq {
	char name[64];
	unsigned char bytes[32];
	size_t len;
};

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 32) >= 'a' && (c | 32) <= 'f')
		return (c | 32) - 'a' + 10;
	return -1;
}

/* copy_field - the string value after "key": "..." at or after s into out. */
static const char *copy_field(const char *s, const char *key, char *out, size_t outsz)
{
	const char *q = strstr(s, key), *e;

	if (!q || !(q = strchr(q + strlen(key), '"')) || !(e = strchr(++q, '"')))
		return NULL;
	if ((size_t)(e - q) >= outsz)
		return NULL;
	memcpy(out, q, (size_t)(e - q));
	out[e - q] = 0;
	return e + 1;
}

/* load_sequences - ad-hoc scan of the JSON for "name" and "hex" fields. */
static size_t load_sequences(struct seq *seqs, size_t max)
{
	const char *shared = getenv("SLUICE_TESTDATA");
	char path[1024], hex[80];
	struct sbuf b;
	FILE *f;
	size_t n = 0, got;
	char buf[4096];

	snprintf(path, sizeof(path), "%s/smtp/smuggling-eod-sequences.json",
		 shared && *shared ? shared : "tests/data");
	f = fopen(path, "rb");
	if (!f) {
		print_error("cannot open %s (set SLUICE_TESTDATA)\n", path);
		fail();
	}
	sbuf_init(&b);
	while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
		sbuf_add(&b, buf, got);
	fclose(f);
	const char *s = b.buf ? strstr(b.buf, "\"sequences\"") : NULL;
	while (s && n < max && (s = copy_field(s, "\"name\"", seqs[n].name, sizeof(seqs[n].name)))) {
		if (!(s = copy_field(s, "\"hex\"", hex, sizeof(hex))))
			break;
		size_t hl = strlen(hex);
		assert_true(hl % 2 == 0 && hl / 2 <= sizeof(seqs[n].bytes));
		for (size_t k = 0; k < hl / 2; k++) {
			int hi = hexval(hex[2 * k]), lo = hexval(hex[2 * k + 1]);
			assert_true(hi >= 0 && lo >= 0);
			seqs[n].bytes[k] = (unsigned char)(hi * 16 + lo);
		}
		seqs[n].len = hl / 2;
		n++;
	}
	sbuf_free(&b);
	return n;
}

/* seq_has_bare - a LF without CR before it or a CR without LF after it (text around is neither). */
static int seq_has_bare(const struct seq *sq)
{
	for (size_t k = 0; k < sq->len; k++) {
		if (sq->bytes[k] == '\n' && (k == 0 || sq->bytes[k - 1] != '\r'))
			return 1;
		if (sq->bytes[k] == '\r' && (k + 1 == sq->len || sq->bytes[k + 1] != '\n'))
			return 1;
	}
	return 0;
}

/* smuggle_check - one sequence, one policy, one feed step. */
static void smuggle_check(const struct seq *sq, enum smtp_bare_policy pol, size_t step)
{
	static const char first[] =
		"EHLO client.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n"
		"From: alice@example.org\r\nSubject: one\r\n\r\nfirst body";
	static const char second[] =
		"MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
		"From: admin@bank.example\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n.\r\n";
	struct sbuf in;
	struct st_drv d;
	char *log, *after;
	int has_bare = seq_has_bare(sq);

	sbuf_init(&in);
	sbuf_adds(&in, first);
	sbuf_add(&in, sq->bytes, sq->len);
	sbuf_adds(&in, second);
	sbuf_adds(&in, "\r\n.\r\n");
	log = st_run(in.buf, in.len, step, pol, 0, &d);
	after = strstr(log, "\nDATA\n");	/* the first DATA command */
	assert_non_null(after);
	after += 6;
	/* never a second transaction: none of its commands is parsed */
	if (strstr(after, "MAIL ") == after || strstr(after, "\nMAIL ") || strstr(after, "\nRCPT ") ||
	    strstr(after, "\nDATA\n") || strstr(after, "\nBDAT ") || d.n_end > 1) {
		print_error("sequence %s policy %d step %zu smuggled:\n%s\n", sq->name, pol, step, log);
		fail();
	}
	/* no FATAL: everything up to CRLF.CRLF was content */
	if ((d.n_fatal == 0 && (!strstr(log, "smuggled body") || !strstr(log, "MAIL FROM:<admin@bank.example>") ||
				d.n_end != 1)) ||
	    d.n_fatal != (pol == SMTP_BARE_REJECT && has_bare ? 1 : 0)) {
		print_error("sequence %s policy %d step %zu: %d FATAL, %d END:\n%s\n", sq->name, pol, step,
			    d.n_fatal, d.n_end, log);
		fail();
	}
	free(log);
	sbuf_free(&in);
}

static void test_smuggling_sequences(void **state)
{
	struct seq seqs[64];
	size_t n = load_sequences(seqs, 64);

	(void)state;
	if (n == 0) {
		print_error("no sequences found in smuggling-eod-sequences.json\n");
		fail();
	}
	for (size_t i = 0; i < n; i++)
		for (int pol = 0; pol < 2; pol++)
			for (size_t step = 0; step <= 3; step++)
				smuggle_check(&seqs[i], (enum smtp_bare_policy)pol, step);
	print_message("checked %zu smuggling sequences\n", n);
}

/* ---- BDAT ---- */

struct bdat_result {
	struct sbuf content;
	int n_end, n_last, n_fatal;
	const char *fatal_text;
};

/* bdat_run_input - scripted session over in (step bytes per feed; 0 = whole). */
static void bdat_run_input(const char *in, size_t len, size_t step, enum smtp_bare_policy pol,
			   struct bdat_result *res)
{
	struct smtp_parser_opts o = { .bare = pol };
	struct smtp_parser *p = smtp_parser_new(&o);
	struct smtp_item it;
	size_t off = 0;

	memset(res, 0, sizeof(*res));
	sbuf_init(&res->content);
	sbuf_add(&res->content, "", 0);
	if (step == 0)
		step = len ? len : 1;
	while (off <= len) {
		size_t n = len - off < step ? len - off : step;
		smtp_parser_feed(p, in + off, n);
		off += n ? n : 1;
		while (smtp_parser_next(p, &it) == SMTP_ITEM) {
			if (it.kind == SMTP_ITEM_DATA)
				sbuf_add(&res->content, it.data, it.len);
			else if (it.kind == SMTP_ITEM_DATA_END) {
				res->n_end++;
				res->n_last += it.bdat_last;
			} else if (it.kind == SMTP_ITEM_FATAL) {
				res->n_fatal++;
				res->fatal_text = it.text;	/* static string */
			} else if (it.kind == SMTP_ITEM_COMMAND && it.cmd.verb == SMTP_VERB_BDAT)
				smtp_parser_begin_bdat(p, it.cmd.bdat_size, it.cmd.bdat_last);
		}
	}
	smtp_parser_free(&p);
}

/* Two chunks, split at every position (incl. between CR and LF). */
static void test_bdat_every_split(void **state)
{
	static const char msg[] = "Subject: x\r\n\r\n.line1\r\nline2\r\n\r\n";
	static const char want[] = "Subject: x\n\n.line1\nline2\n\n";
	size_t len = sizeof(msg) - 1;

	(void)state;
	for (size_t k = 0; k <= len; k++) {
		struct sbuf in;
		sbuf_init(&in);
		sbuf_printf(&in, "BDAT %zu\r\n", k);
		sbuf_add(&in, msg, k);
		sbuf_printf(&in, "BDAT %zu LAST\r\n", len - k);
		sbuf_add(&in, msg + k, len - k);
		for (int pol = 0; pol < 2; pol++) {
			for (size_t step = 0; step <= 1; step++) {
				struct bdat_result r;
				bdat_run_input(in.buf, in.len, step, (enum smtp_bare_policy)pol, &r);
				if (strcmp(r.content.buf, want) != 0 || r.n_end != 2 || r.n_last != 1 || r.n_fatal) {
					print_error("split at %zu policy %d step %zu: content \"%s\" ends %d last %d fatal %d\n",
						    k, pol, step, r.content.buf, r.n_end, r.n_last, r.n_fatal);
					fail();
				}
				sbuf_free(&r.content);
			}
		}
		sbuf_free(&in);
	}
}

struct bdat_case {
	const char *name;
	const char *in;
	const char *want_normalize;	/* content under NORMALIZE */
	const char *reject_fatal;	/* FATAL text under REJECT, or NULL (content as NORMALIZE) */
	int ends;			/* DATA_END count when no FATAL */
};

static const struct bdat_case bdat_cases[] = {
	{ "no dot-unstuffing", "BDAT 7 LAST\r\n..\r\n.\r\n", "..\n.\n", NULL, 1 },
	{ "bare LF in chunk", "BDAT 5 LAST\r\na\nb\r\n", "a\nb\n", "Error: bare <LF> received", 1 },
	{ "bare CR in chunk", "BDAT 5 LAST\r\na\rb\r\n", "a\rb\n", "Error: bare <CR> received", 1 },
	{ "message ends in CR", "BDAT 2 LAST\r\na\r", "a\r", "Error: bare <CR> received", 1 },
	{ "CR then LF across chunks", "BDAT 2\r\na\rBDAT 2 LAST\r\n\nb", "a\nb", NULL, 2 },
	{ "CR then text across chunks", "BDAT 2\r\na\rBDAT 1 LAST\r\nx", "a\rx", "Error: bare <CR> received", 2 },
	{ "CR then BDAT 0 LAST", "BDAT 2\r\na\rBDAT 0 LAST\r\n", "a\r", "Error: bare <CR> received", 2 },
	{ "empty chunks", "BDAT 0\r\nBDAT 0 LAST\r\n", "", NULL, 2 },
	{ "chunk containing a command", "BDAT 15 LAST\r\nQUIT\r\n.\r\nRSET\r\nNOOP\r\n", "QUIT\n.\nRSET\n", NULL, 1 },
	{ "RSET forgets a pending CR", "BDAT 2\r\na\rRSET\r\nBDAT 2 LAST\r\n\nb", "a\nb",
	  "Error: bare <LF> received", 2 },
};

static void test_bdat_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bdat_cases) / sizeof(bdat_cases[0]); i++) {
		const struct bdat_case *c = &bdat_cases[i];
		for (size_t step = 0; step <= 1; step++) {
			struct bdat_result r;
			bdat_run_input(c->in, strlen(c->in), step, NM, &r);
			st_expect(c->name, r.content.buf, c->want_normalize);
			assert_int_equal(r.n_fatal, 0);
			assert_int_equal(r.n_end, c->ends);
			sbuf_free(&r.content);
			bdat_run_input(c->in, strlen(c->in), step, RJ, &r);
			if (c->reject_fatal) {
				assert_int_equal(r.n_fatal, 1);
				st_expect(c->name, r.fatal_text, c->reject_fatal);
			} else {
				assert_int_equal(r.n_fatal, 0);
				st_expect(c->name, r.content.buf, c->want_normalize);
			}
			sbuf_free(&r.content);
		}
	}
}

/* REJECT: the FATAL comes only once the whole chunk is consumed. */
static void test_bdat_fatal_after_chunk(void **state)
{
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;
	enum smtp_next r;

	(void)state;
	smtp_parser_feed(p, "BDAT 10\r\nab\ncd", 14);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.cmd.verb, SMTP_VERB_BDAT);
	smtp_parser_begin_bdat(p, it.cmd.bdat_size, it.cmd.bdat_last);
	while ((r = smtp_parser_next(p, &it)) == SMTP_ITEM)
		assert_int_equal(it.kind, SMTP_ITEM_DATA);
	assert_int_equal(r, SMTP_NEED_MORE);
	smtp_parser_feed(p, "efgh", 4);	/* one short */
	while ((r = smtp_parser_next(p, &it)) == SMTP_ITEM)
		assert_int_equal(it.kind, SMTP_ITEM_DATA);
	assert_int_equal(r, SMTP_NEED_MORE);
	smtp_parser_feed(p, "iNOOP\r\n", 7);
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ITEM);
	assert_int_equal(it.kind, SMTP_ITEM_FATAL);
	assert_int_equal(it.code, 521);
	assert_string_equal(it.dsn, "5.5.2");
	assert_string_equal(it.text, "Error: bare <LF> received");
	assert_int_equal(smtp_parser_next(p, &it), SMTP_ERROR);
	smtp_parser_free(&p);
}

/* A 4 MiB chunk streams through with bounded items and buffer. */
static void test_bdat_large_chunk(void **state)
{
	struct smtp_parser *p = smtp_parser_new(NULL);
	struct smtp_item it;
	char chunk[8192];
	size_t total = 0;
	enum smtp_next r;

	(void)state;
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = i % 64 == 62 ? '\r' : i % 64 == 63 ? '\n' : 'q';
	smtp_parser_begin_bdat(p, 512 * sizeof(chunk), 1);
	for (int i = 0; i < 512; i++) {
		smtp_parser_feed(p, chunk, sizeof(chunk));
		while ((r = smtp_parser_next(p, &it)) == SMTP_ITEM && it.kind == SMTP_ITEM_DATA) {
			assert_true(it.len <= 65536);
			total += it.len;
		}
		if (i < 511) {
			assert_int_equal(r, SMTP_NEED_MORE);
			assert_int_equal(smtp_parser_buffered(p), 0);
		}
	}
	assert_int_equal(it.kind, SMTP_ITEM_DATA_END);
	assert_int_equal(it.bdat_last, 1);
	assert_int_equal(total, 512 * sizeof(chunk) / 64 * 63);
	smtp_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_table),
		cmocka_unit_test(test_data_long_line),
		cmocka_unit_test(test_data_bytewise_identical),
		cmocka_unit_test(test_smuggling_sequences),
		cmocka_unit_test(test_bdat_every_split),
		cmocka_unit_test(test_bdat_table),
		cmocka_unit_test(test_bdat_fatal_after_chunk),
		cmocka_unit_test(test_bdat_large_chunk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
