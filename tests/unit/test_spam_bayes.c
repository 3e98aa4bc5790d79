/*
 * test_spam_bayes: sluice-spam's Bayes classifier (spam_bayes,
 * spam_bayes_store, spam_bayes_learn): tokenizer cases, SipHash vectors,
 * the combiner against hand-computed values, the min_spam/min_ham gate,
 * learning twice counted once, moving between classes, forgetting, the
 * expiry bound, LMDB persistence across close/open, Maildir and mbox
 * reading, and the accuracy on a hash-split half of
 * tests/data/spam/spamassassin-sample.
 * With REDIS_ADDR=host:port or unix:/path in the environment the Redis
 * backend is compared with LMDB on the same learned data
 * (tests/integration/test_spam_bayes_redis.py starts the server); without
 * it that test is skipped. SPAM_BAYES_TEST_FILTER limits the tests run
 * (cmocka's glob).
 */
#include "milters/spam/spam_bayes.h"
#include "milters/spam/spam_bayes_learn.h"
#include "milters/spam/spam_bayes_store.h"
#include "milters/spam/spam_mime.h"
#include "lib/util.h"
#include "conf/conf.h"
#include "conf/params_spam.h"
#include "conf/params_table.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>

#define SAMPLE "tests/data/spam/spamassassin-sample"
#define T0 1700000000

/* ------------------------------------------------------------ helpers */

/* cmocka here has no assert_double_equal */
#define assert_double_equal(a, b, eps) do { \
	double a_ = (a), b_ = (b); \
	if (!(fabs(a_ - b_) <= (eps))) \
		fail_msg("%s = %.17g, expected %.17g", #a, a_, b_); \
} while (0)

static char tmpdir[256];
static char *db_paths[32];	/* options point at them until the end */
static size_t ndb_paths;

static int setup_tmp(void **state)
{
	(void)state;
	const char *t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/test_spam_bayes.XXXXXX", t && *t ? t : "/tmp");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown_tmp(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	int rc = system(cmd);
	free(cmd);
	(void)rc;
	for (size_t i = 0; i < ndb_paths; i++)
		free(db_paths[i]);
	ndb_paths = 0;
	return 0;
}

static char *tmp_path(const char *name)
{
	return xasprintf("%s/%s", tmpdir, name);
}

static struct spam_mime *parse(const char *msg)
{
	return spam_mime_parse(msg, strlen(msg), NULL);
}

struct featlist {
	char **f;
	size_t n;
};

static void collect(void *arg, const char *feat, size_t len)
{
	struct featlist *l = arg;
	l->f = xrealloc(l->f, (l->n + 1) * sizeof *l->f);
	l->f[l->n++] = xstrndup(feat, len);
}

static int has_feat(const struct featlist *l, const char *f)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->f[i], f))
			return 1;
	return 0;
}

static void featlist_free(struct featlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->f[i]);
	free(l->f);
	l->f = NULL;
	l->n = 0;
}

static struct spam_bayes *open_lmdb(const char *name, struct spam_bayes_opts *o)
{
	char *err = NULL;
	char *path = tmp_path(name);
	o->store.backend = SPAM_BAYES_LMDB;
	if (ndb_paths == sizeof db_paths / sizeof db_paths[0])
		fail_msg("too many databases");
	db_paths[ndb_paths++] = path;
	o->store.db_path = path;
	o->store.db_max_bytes = 64 << 20;
	struct spam_bayes *b = spam_bayes_open(o, &err);
	if (!b)
		fail_msg("open %s: %s", path, err);
	return b;
}

static const char *const spam_words[] = { "viagra", "cheap", "pills", "winner", "lottery",
					  "offer", "click", "unsubscribe", "credit", "casino" };
static const char *const ham_words[] = { "meeting", "agenda", "project", "review", "lunch",
					 "schedule", "report", "patch", "release", "minutes" };

/* A synthetic message i of one class (words picked by i, so messages differ). */
static char *make_msg(int spam, int i, const char *extra)
{
	const char *const *w = spam ? spam_words : ham_words;
	struct sbuf b;
	sbuf_init(&b);
	sbuf_printf(&b, "From: %s <%s%d@%s>\r\nTo: bob@example.org\r\n"
			"Subject: %s %s %d\r\nMessage-ID: <m%d.%s@%s>\r\n"
			"Date: Mon, 1 Jan 2024 10:00:%02d +0000\r\n\r\n",
		    spam ? "Prize Team" : "Alice", spam ? "win" : "alice", i,
		    spam ? "prizes.example" : "work.example", w[i % 10], w[(i + 3) % 10], i, i,
		    spam ? "s" : "h", spam ? "prizes.example" : "work.example", i % 60);
	for (int k = 0; k < 12; k++)
		sbuf_printf(&b, "%s %s ", w[(i + k) % 10], w[(i * 7 + k * 3) % 10]);
	sbuf_printf(&b, "\r\nunique%d%s token%d\r\n%s", i, spam ? "s" : "h", i, extra ? extra : "");
	return sbuf_steal(&b);
}

static void learn_str(struct spam_bayes *b, const char *msg, enum spam_bayes_op op, time_t now,
		      enum spam_bayes_learn_result *res)
{
	char *err = NULL;
	if (spam_bayes_learn_raw(b, msg, strlen(msg), op, now, res, &err) < 0)
		fail_msg("learn: %s", err);
}

static void classify_str(struct spam_bayes *b, const char *msg, struct spam_bayes_verdict *v)
{
	char *err = NULL;
	struct spam_mime *m = parse(msg);
	if (spam_bayes_classify(b, m, T0, v, &err) < 0)
		fail_msg("classify: %s", err);
	spam_mime_free(&m);
}

static void totals(struct spam_bayes *b, struct spam_bayes_totals *t)
{
	char *err = NULL;
	if (spam_bayes_store_totals(spam_bayes_get_store(b), t, &err) < 0)
		fail_msg("totals: %s", err);
}

/* ---------------------------------------------------------- tokenizer */

static void test_tokenizer(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	struct featlist l = { 0 };
	spam_bayes_opts_default(&o);
	const char *msg =
		"From: Alice Smith <Alice@Example.COM>\r\n"
		"Subject: Free MONEY now\r\n"
		"Message-ID: <abc123@mail.example.net>\r\n"
		"X-Mailer: FooMail 2.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"\r\n"
		"Hello, World! \xc3\x89""COLE \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
		"fr\xe2\x80\x8b""ee e-mail end. $100 a x "
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
		"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
		"see http://WWW.Example.com/path/buy-now?x=1 ok\r\n";
	struct spam_mime *m = parse(msg);
	size_t n = spam_bayes_features(&o, m, collect, &l);
	assert_int_equal(n, l.n);
	static const struct {
		const char *name, *feat;
		int present;
	} cases[] = {
		{ "header name", "H:subject", 1 },
		{ "subject words lower-cased", "S:free", 1 },
		{ "subject upper-case word", "S:money", 1 },
		{ "from address whole", "F:alice@example.com", 1 },
		{ "from domain", "F:@example.com", 1 },
		{ "from display name", "F:smith", 1 },
		{ "message-id: domain only", "MI:mail.example.net", 1 },
		{ "message-id: no local part", "MI:abc123", 0 },
		{ "x-mailer", "XM:foomail", 1 },
		{ "part type", "P:text/plain", 1 },
		{ "part charset", "PC:utf-8", 1 },
		{ "body word", "hello", 1 },
		{ "trailing punctuation dropped", "world", 1 },
		{ "Latin-1 lower-cased", "\xc3\xa9""cole", 1 },
		{ "Cyrillic lower-cased", "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", 1 },
		{ "zero-width space ignored", "free", 1 },
		{ "inner hyphen kept", "e-mail", 1 },
		{ "trailing dot dropped", "end", 1 },
		{ "dollar amount", "$100", 1 },
		{ "single letters skipped", "a", 0 },
		{ "long word -> skip token", "sk:aaaaaaa:6", 1 },
		{ "CJK: one character a token", "\xe6\x97\xa5", 1 },
		{ "CJK pair", "\xe6\x97\xa5\x01\xe6\x9c\xac", 1 },
		{ "pair at distance 1", "hello\x01world", 1 },
		{ "pair at distance 2", "hello\x02\xc3\xa9""cole", 1 },
		{ "no pair at distance 3 (window 3)", "hello\x03\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", 0 },
		{ "URL host", "U:www.example.com", 1 },
		{ "URL registered domain", "UD:example.com", 1 },
		{ "URL path word", "UP:path", 1 },
		{ "URL path word with hyphen", "UP:buy-now", 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (has_feat(&l, cases[i].feat) != cases[i].present)
			fail_msg("%s: \"%s\" %s", cases[i].name, cases[i].feat,
				 cases[i].present ? "missing" : "present");
	/* distinct */
	for (size_t i = 0; i < l.n; i++)
		for (size_t j = i + 1; j < l.n; j++)
			assert_string_not_equal(l.f[i], l.f[j]);
	featlist_free(&l);

	/* the cap on tokens per message; headers come first */
	o.max_tokens_per_msg = 10;
	n = spam_bayes_features(&o, m, collect, &l);
	assert_int_equal(n, 10);
	assert_int_equal(l.n, 10);
	assert_true(has_feat(&l, "H:from"));
	featlist_free(&l);

	/* OSB off */
	spam_bayes_opts_default(&o);
	o.osb_window = 1;
	spam_bayes_features(&o, m, collect, &l);
	assert_false(has_feat(&l, "hello\x01world"));
	featlist_free(&l);
	spam_mime_free(&m);
}

static void test_tokenizer_hostile(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	spam_bayes_opts_default(&o);
	/* invalid UTF-8, NULs in the middle of nothing, a huge word, only punctuation */
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, "Subject: \xff\xfe\xc3\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		sbuf_addc(&b, (char)('a' + i % 26));
	sbuf_adds(&b, " \xf0\x9f\x98\x80\xf0\x9f\x98\x80 \xe2\x80\x8b\xe2\x80\x8b ...!!! \xc3");
	struct spam_mime *m = spam_mime_parse(b.buf, b.len, NULL);
	struct featlist l = { 0 };
	spam_bayes_features(&o, m, collect, &l);
	assert_true(has_feat(&l, "sk:abcdefg:2000"));
	featlist_free(&l);
	spam_mime_free(&m);
	sbuf_free(&b);
	/* emoji: one token each */
	m = parse("Content-Type: text/plain; charset=utf-8\r\n\r\nwin \xf0\x9f\x98\x80\xf0\x9f\x92\xb0 now\r\n");
	spam_bayes_features(&o, m, collect, &l);
	assert_true(has_feat(&l, "\xf0\x9f\x98\x80"));
	assert_true(has_feat(&l, "\xf0\x9f\x98\x80\x01\xf0\x9f\x92\xb0"));
	assert_true(has_feat(&l, "win\x02\xf0\x9f\x92\xb0"));
	featlist_free(&l);
	spam_mime_free(&m);
}

/* ---------------------------------------------------------------- maths */

static void test_siphash_vectors(void **state)
{
	(void)state;
	uint8_t key[16], in[64];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		in[i] = (uint8_t)i;
	/* the reference vectors of the SipHash paper / reference implementation */
	assert_true(spam_bayes_siphash(key, in, 0) == 0x726fdb47dd0e0e31ULL);
	assert_true(spam_bayes_siphash(key, in, 15) == 0xa129ca6149be45e5ULL);
	assert_true(spam_bayes_siphash(key, in, 8) == 0x93f5f5799a932462ULL);
}

static void test_combiner(void **state)
{
	(void)state;
	/* f(w): s=0.45 x=0.5, token in 3 of 10 spam and 1 of 20 ham:
	 * p = 0.3 / (0.3 + 0.05) = 6/7, n = 4, f = (0.225 + 4*6/7) / 4.45 */
	assert_double_equal(spam_bayes_robinson_f(3, 1, 10, 20, 0.45, 0.5), 0.821027287319422, 1e-12);
	/* unseen: x; seen only in spam: towards 1 */
	assert_double_equal(spam_bayes_robinson_f(0, 0, 10, 20, 0.45, 0.5), 0.5, 0);
	assert_double_equal(spam_bayes_robinson_f(1, 0, 10, 20, 0.45, 0.5), (0.225 + 1) / 1.45, 1e-12);
	assert_double_equal(spam_bayes_robinson_f(0, 5, 10, 20, 1.0, 0.4), 0.4 / 6, 1e-12);
	/* counts above the totals are clamped to a rate of 1 */
	assert_double_equal(spam_bayes_robinson_f(50, 0, 10, 20, 0.45, 0.5), (0.225 + 50) / 50.45, 1e-12);

	/* chi-square survival, even degrees of freedom: e^-m sum m^i/i! */
	assert_double_equal(spam_bayes_chi2q(0, 4), 1.0, 0);
	assert_double_equal(spam_bayes_chi2q(2, 2), exp(-1), 1e-12);
	assert_double_equal(spam_bayes_chi2q(4, 4), 3 * exp(-2), 1e-12);
	assert_double_equal(spam_bayes_chi2q(10, 6), 0.12465201948308113, 1e-12);
	/* far tail: no underflow to garbage, tiny and non-negative */
	double far = spam_bayes_chi2q(5000, 300);
	assert_true(far >= 0 && far < 1e-100);

	/* Fisher combining, by hand (see the values from the formula) */
	double h, s;
	const double f1[] = { 0.9, 0.8 };
	assert_double_equal(spam_bayes_combine(f1, 2, &h, &s), 0.929141234055652, 1e-12);
	assert_double_equal(h, 0.956522928219866, 1e-12);
	assert_double_equal(s, 0.098240460108563, 1e-12);
	const double f2[] = { 0.99, 0.2, 0.7, 0.95 };
	assert_double_equal(spam_bayes_combine(f2, 4, &h, &s), 0.915662528774210, 1e-12);
	assert_double_equal(h, 0.852135323040753, 1e-12);
	assert_double_equal(s, 0.020810265492333, 1e-12);
	/* symmetric: mirrored f gives 1 - I */
	const double f3[] = { 0.1, 0.2 };
	assert_double_equal(spam_bayes_combine(f3, 2, NULL, NULL), 1 - 0.929141234055652, 1e-12);
	assert_double_equal(spam_bayes_combine(NULL, 0, NULL, NULL), 0.5, 0);

	/* bands */
	struct spam_bayes_opts o;
	spam_bayes_opts_default(&o);
	static const struct {
		double p;
		const char *sym;
	} bands[] = {
		{ 0.0, "BAYES_00" }, { 0.005, "BAYES_00" }, { 0.01, "BAYES_05" }, { 0.3, "BAYES_40" },
		{ 0.5, "BAYES_50" }, { 0.7, "BAYES_60" }, { 0.9, "BAYES_80" }, { 0.97, "BAYES_95" },
		{ 0.995, "BAYES_99" }, { 0.9995, "BAYES_999" }, { 1.0, "BAYES_999" },
	};
	for (size_t i = 0; i < sizeof bands / sizeof bands[0]; i++)
		assert_string_equal(spam_bayes_band_for(&o, bands[i].p)->name, bands[i].sym);

	/* scores from the parameter */
	char *err = NULL;
	assert_int_equal(spam_bayes_parse_scores(&o, "BAYES_00:-3, bayes_99:4.5", &err), 0);
	assert_double_equal(o.bands[0].score, -3, 0);
	assert_double_equal(o.bands[8].score, 4.5, 0);
	assert_int_equal(spam_bayes_parse_scores(&o, "BAYES_42:1", &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(spam_bayes_parse_scores(&o, "BAYES_00", &err), -1);
	free(err);

	/* autolearn */
	enum spam_bayes_op op;
	assert_int_equal(spam_bayes_autolearn_op(&o, 100, &op), 0);
	o.autolearn_spam = 12;
	o.autolearn_ham = 0.1;
	assert_int_equal(spam_bayes_autolearn_op(&o, 12, &op), 1);
	assert_int_equal(op, SPAM_BAYES_LEARN_SPAM);
	assert_int_equal(spam_bayes_autolearn_op(&o, -1, &op), 1);
	assert_int_equal(op, SPAM_BAYES_LEARN_HAM);
	assert_int_equal(spam_bayes_autolearn_op(&o, 5, &op), 0);
}

static void test_deltas(void **state)
{
	(void)state;
	static const struct {
		enum spam_bayes_class prev;
		enum spam_bayes_op op;
		int ds, dh;
		enum spam_bayes_class next;
	} cases[] = {
		{ SPAM_BAYES_NONE, SPAM_BAYES_LEARN_SPAM, 1, 0, SPAM_BAYES_SPAM },
		{ SPAM_BAYES_SPAM, SPAM_BAYES_LEARN_SPAM, 0, 0, SPAM_BAYES_SPAM },
		{ SPAM_BAYES_HAM, SPAM_BAYES_LEARN_SPAM, 1, -1, SPAM_BAYES_SPAM },
		{ SPAM_BAYES_NONE, SPAM_BAYES_LEARN_HAM, 0, 1, SPAM_BAYES_HAM },
		{ SPAM_BAYES_SPAM, SPAM_BAYES_LEARN_HAM, -1, 1, SPAM_BAYES_HAM },
		{ SPAM_BAYES_SPAM, SPAM_BAYES_FORGET, -1, 0, SPAM_BAYES_NONE },
		{ SPAM_BAYES_HAM, SPAM_BAYES_FORGET, 0, -1, SPAM_BAYES_NONE },
		{ SPAM_BAYES_NONE, SPAM_BAYES_FORGET, 0, 0, SPAM_BAYES_NONE },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int ds, dh;
		enum spam_bayes_class nc;
		spam_bayes_deltas(cases[i].prev, cases[i].op, &ds, &dh, &nc);
		assert_int_equal(ds, cases[i].ds);
		assert_int_equal(dh, cases[i].dh);
		assert_int_equal(nc, cases[i].next);
	}
}

/* ----------------------------------------------------------- learning */

static void test_min_gate(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	struct spam_bayes_verdict v;
	enum spam_bayes_learn_result r;
	spam_bayes_opts_default(&o);
	o.min_spam = 3;
	o.min_ham = 4;
	struct spam_bayes *b = open_lmdb("gate.lmdb", &o);
	char *probe = make_msg(1, 100, NULL);

	classify_str(b, probe, &v);
	assert_int_equal(v.status, SPAM_BAYES_UNTRAINED);
	assert_null(v.symbol);
	for (int i = 0; i < 3; i++) {
		char *s = make_msg(1, i, NULL), *h = make_msg(0, i, NULL);
		learn_str(b, s, SPAM_BAYES_LEARN_SPAM, T0, &r);
		assert_int_equal(r, SPAM_BAYES_LEARNED);
		learn_str(b, h, SPAM_BAYES_LEARN_HAM, T0, &r);
		free(s);
		free(h);
	}
	classify_str(b, probe, &v);
	assert_int_equal(v.status, SPAM_BAYES_UNTRAINED);	/* 3 spam, 3 ham < 4 */
	assert_int_equal(v.nspam, 3);
	assert_int_equal(v.nham, 3);
	char *h = make_msg(0, 3, NULL);
	learn_str(b, h, SPAM_BAYES_LEARN_HAM, T0, &r);
	free(h);
	classify_str(b, probe, &v);
	assert_int_equal(v.status, SPAM_BAYES_CLASSIFIED);
	assert_non_null(v.symbol);
	assert_true(v.prob > 0.9);
	assert_true(v.score > 0);
	assert_true(v.nused > 0 && v.nused <= v.ntokens);

	char *hp = make_msg(0, 101, NULL);
	classify_str(b, hp, &v);
	assert_int_equal(v.status, SPAM_BAYES_CLASSIFIED);
	assert_true(v.prob < 0.1);
	assert_true(v.score < 0);
	free(hp);
	free(probe);
	spam_bayes_close(&b);
	assert_null(b);
}

static void token_counts(struct spam_bayes *b, const char *msg, struct spam_bayes_counts *c0)
{
	uint64_t *h;
	char *err = NULL;
	struct spam_mime *m = parse(msg);
	size_t n = spam_bayes_tokens(b, m, &h);
	assert_true(n > 0);
	struct spam_bayes_counts *c = xcalloc(n, sizeof *c);
	if (spam_bayes_store_lookup(spam_bayes_get_store(b), h, n, c, NULL, &err) < 0)
		fail_msg("%s", err);
	*c0 = c[0];
	free(c);
	free(h);
	spam_mime_free(&m);
}

struct ref_sig {
	double f, st;
	uint64_t h;
};

static int cmp_ref(const void *a, const void *b)
{
	const struct ref_sig *x = a, *y = b;
	if (x->st != y->st)
		return x->st > y->st ? -1 : 1;
	return x->h < y->h ? -1 : x->h > y->h;
}

/* classify against the definition: every token's f(w), sorted in full, the strongest k combined */
static void test_classify_by_hand(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	enum spam_bayes_learn_result r;
	char *err = NULL;
	spam_bayes_opts_default(&o);
	o.min_spam = o.min_ham = 1;
	o.touch_on_classify = 0;
	struct spam_bayes *b = open_lmdb("byhand.lmdb", &o);
	for (int i = 0; i < 6; i++) {
		char *sp = make_msg(1, i, NULL), *hm = make_msg(0, i, NULL);
		learn_str(b, sp, SPAM_BAYES_LEARN_SPAM, T0, &r);
		learn_str(b, hm, SPAM_BAYES_LEARN_HAM, T0, &r);
		free(sp);
		free(hm);
	}
	static const unsigned ks[] = { 1, 2, 7, 20, 150 };
	for (size_t t = 0; t < 2 * sizeof ks / sizeof ks[0]; t++) {
		struct spam_bayes_opts *live = (struct spam_bayes_opts *)spam_bayes_get_opts(b);
		unsigned k = ks[t / 2];
		live->max_significant = k;
		char *probe = make_msg((int)(t % 2), 40 + (int)t, "cheap meeting lunch winner\r\n");
		struct spam_mime *m = parse(probe);
		struct spam_bayes_verdict v;
		assert_int_equal(spam_bayes_classify(b, m, T0, &v, &err), 0);
		uint64_t *h;
		size_t n = spam_bayes_tokens(b, m, &h);
		struct spam_bayes_counts *c = xcalloc(n, sizeof *c);
		struct spam_bayes_totals tt;
		assert_int_equal(spam_bayes_store_lookup(spam_bayes_get_store(b), h, n, c, &tt, &err), 0);
		struct ref_sig *rs = xcalloc(n, sizeof *rs);
		size_t nr = 0;
		for (size_t i = 0; i < n; i++) {
			if (!c[i].spam && !c[i].ham)
				continue;
			double f = spam_bayes_robinson_f(c[i].spam, c[i].ham, tt.nspam, tt.nham, 0.45, 0.5);
			if (fabs(f - 0.5) >= 0.1)
				rs[nr++] = (struct ref_sig){ f, fabs(f - 0.5), h[i] };
		}
		double *f = xcalloc(nr + 1, sizeof *f);
		size_t used = nr;
		if (nr > k) {
			qsort(rs, nr, sizeof *rs, cmp_ref);
			used = k;
		} /* else in hash order, as the tokens came */
		for (size_t i = 0; i < used; i++)
			f[i] = rs[i].f;
		double expect = spam_bayes_combine(f, used, NULL, NULL);
		assert_int_equal(v.nused, used);
		assert_true(nr > 20);
		if (v.prob != expect)
			fail_msg("k=%u: classify %.17g, by hand %.17g", k, v.prob, expect);
		if (k >= 20)
			assert_true(t % 2 ? v.prob > 0.5 : v.prob < 0.5);
		free(f);
		free(rs);
		free(c);
		free(h);
		spam_mime_free(&m);
		free(probe);
	}
	spam_bayes_close(&b);
}

static void test_learn_twice_and_move(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	struct spam_bayes_totals t;
	struct spam_bayes_counts c;
	enum spam_bayes_learn_result r;
	spam_bayes_opts_default(&o);
	struct spam_bayes *b = open_lmdb("twice.lmdb", &o);
	char *msg = make_msg(1, 7, NULL);

	learn_str(b, msg, SPAM_BAYES_LEARN_SPAM, T0, &r);
	assert_int_equal(r, SPAM_BAYES_LEARNED);
	totals(b, &t);
	uint64_t ntok = t.ntokens;
	assert_true(ntok > 10);
	learn_str(b, msg, SPAM_BAYES_LEARN_SPAM, T0, &r);
	assert_int_equal(r, SPAM_BAYES_ALREADY);
	/* the same message as delivered: mbox line, trace headers, X-Spam-* added */
	char *delivered = xasprintf("From win7@prizes.example Mon Jan  1 10:00:00 2024\n"
				    "Received: from mx.example.org by mail.example.org\r\n"
				    "X-Spam-Status: Yes, score=9\r\n%s", msg);
	learn_str(b, delivered, SPAM_BAYES_LEARN_SPAM, T0, &r);
	assert_int_equal(r, SPAM_BAYES_ALREADY);
	totals(b, &t);
	assert_int_equal(t.nspam, 1);
	assert_int_equal(t.nham, 0);
	assert_int_equal(t.ntokens, ntok);
	token_counts(b, msg, &c);
	assert_int_equal(c.spam, 1);
	assert_int_equal(c.ham, 0);
	assert_int_equal(c.atime_s, T0);

	/* learned as ham now: moves */
	learn_str(b, msg, SPAM_BAYES_LEARN_HAM, T0 + 5, &r);
	assert_int_equal(r, SPAM_BAYES_MOVED);
	totals(b, &t);
	assert_int_equal(t.nspam, 0);
	assert_int_equal(t.nham, 1);
	assert_int_equal(t.ntokens, ntok);
	token_counts(b, msg, &c);
	assert_int_equal(c.spam, 0);
	assert_int_equal(c.ham, 1);
	assert_int_equal(c.atime_s, T0 + 5);

	/* forget: everything back to zero, the tokens gone */
	learn_str(b, msg, SPAM_BAYES_FORGET, T0, &r);
	assert_int_equal(r, SPAM_BAYES_FORGOTTEN);
	totals(b, &t);
	assert_int_equal(t.nspam, 0);
	assert_int_equal(t.nham, 0);
	assert_int_equal(t.ntokens, 0);
	token_counts(b, msg, &c);
	assert_int_equal(c.spam + c.ham + c.atime_s, 0);
	learn_str(b, msg, SPAM_BAYES_FORGET, T0, &r);
	assert_int_equal(r, SPAM_BAYES_UNKNOWN);

	/* forget one of two: shared tokens keep the other's count */
	char *other = make_msg(1, 8, NULL);
	learn_str(b, msg, SPAM_BAYES_LEARN_SPAM, T0, &r);
	learn_str(b, other, SPAM_BAYES_LEARN_SPAM, T0, &r);
	totals(b, &t);
	assert_int_equal(t.nspam, 2);
	uint64_t both = t.ntokens;
	learn_str(b, other, SPAM_BAYES_FORGET, T0, &r);
	assert_int_equal(r, SPAM_BAYES_FORGOTTEN);
	totals(b, &t);
	assert_int_equal(t.nspam, 1);
	assert_int_equal(t.ntokens, ntok);
	assert_true(both > ntok);
	token_counts(b, msg, &c);
	assert_int_equal(c.spam, 1);
	free(other);
	free(delivered);
	free(msg);
	spam_bayes_close(&b);
}

struct counter {
	uint64_t n;
};

static int count_each(void *arg, uint64_t h, const struct spam_bayes_counts *c)
{
	(void)h;
	(void)c;
	((struct counter *)arg)->n++;
	return 0;
}

static uint64_t scan_count(struct spam_bayes *b)
{
	struct counter k = { 0 };
	char *err = NULL;
	if (spam_bayes_store_scan(spam_bayes_get_store(b), count_each, &k, &err) < 0)
		fail_msg("%s", err);
	return k.n;
}

static void test_expiry(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	struct spam_bayes_totals t;
	enum spam_bayes_learn_result r;
	char *err = NULL;
	uint64_t removed;
	spam_bayes_opts_default(&o);
	o.max_tokens = 300;
	o.token_max_age_s = 0;
	struct spam_bayes *b = open_lmdb("expire.lmdb", &o);

	/* the count bound holds while learning: at most max_tokens plus one message */
	for (int i = 0; i < 60; i++) {
		char *extra = xasprintf("w%da w%db w%dc w%dd w%de w%df\r\n", i, i, i, i, i, i);
		char *msg = make_msg(i % 2, i, extra);
		learn_str(b, msg, i % 2 ? SPAM_BAYES_LEARN_SPAM : SPAM_BAYES_LEARN_HAM, T0 + i, &r);
		totals(b, &t);
		assert_true(t.ntokens <= o.max_tokens + o.max_tokens_per_msg);
		assert_int_equal(t.ntokens, scan_count(b));
		free(extra);
		free(msg);
	}
	assert_int_equal(spam_bayes_expire(b, T0 + 100, &removed, &err), 0);
	totals(b, &t);
	assert_true(t.ntokens <= o.max_tokens);
	assert_int_equal(t.ntokens, scan_count(b));
	assert_int_equal(t.last_expire_s, T0 + 100);
	assert_int_equal(t.nspam, 30);
	spam_bayes_close(&b);

	/* by age: tokens last seen before now - max_age go, fresher ones stay */
	spam_bayes_opts_default(&o);
	o.token_max_age_s = 180LL * 86400;
	b = open_lmdb("age.lmdb", &o);
	char *old = make_msg(1, 1, "oldonly\r\n"), *fresh = make_msg(1, 2, "freshonly\r\n");
	learn_str(b, old, SPAM_BAYES_LEARN_SPAM, T0, &r);
	learn_str(b, fresh, SPAM_BAYES_LEARN_SPAM, T0 + 100LL * 86400, &r);
	totals(b, &t);
	uint64_t before = t.ntokens;
	assert_int_equal(spam_bayes_expire(b, T0 + 200LL * 86400, &removed, &err), 0);
	assert_true(removed > 0);
	totals(b, &t);
	assert_int_equal(t.ntokens, before - removed);
	struct spam_bayes_counts c;
	token_counts(b, fresh, &c);
	assert_true(c.spam == 1 || c.spam == 2);
	struct featlist l = { 0 };
	(void)l;
	/* the old message's own word is gone, the fresh one's is there */
	struct spam_mime *m = parse("Subject: x\r\n\r\noldonly freshonly\r\n");
	uint64_t *h;
	size_t n = spam_bayes_tokens(b, m, &h);
	struct spam_bayes_counts *cc = xcalloc(n, sizeof *cc);
	assert_int_equal(spam_bayes_store_lookup(spam_bayes_get_store(b), h, n, cc, NULL, &err), 0);
	int seen_old = 0, seen_fresh = 0;
	for (size_t i = 0; i < n; i++) {
		seen_old += cc[i].atime_s == T0;
		seen_fresh += cc[i].atime_s == T0 + 100LL * 86400;
	}
	assert_int_equal(seen_old, 0);
	assert_true(seen_fresh >= 1);
	free(cc);
	free(h);
	spam_mime_free(&m);
	free(old);
	free(fresh);
	spam_bayes_close(&b);
}

static void test_lmdb_persistence(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	struct spam_bayes_verdict v1, v2;
	struct spam_bayes_totals t1, t2;
	enum spam_bayes_learn_result r;
	spam_bayes_opts_default(&o);
	o.min_spam = o.min_ham = 1;
	o.touch_on_classify = 0;
	struct spam_bayes *b = open_lmdb("persist.lmdb", &o);
	for (int i = 0; i < 5; i++) {
		char *s = make_msg(1, i, NULL), *h = make_msg(0, i, NULL);
		learn_str(b, s, SPAM_BAYES_LEARN_SPAM, T0, &r);
		learn_str(b, h, SPAM_BAYES_LEARN_HAM, T0, &r);
		free(s);
		free(h);
	}
	char *probe = make_msg(1, 50, NULL);
	classify_str(b, probe, &v1);
	totals(b, &t1);
	spam_bayes_close(&b);

	b = open_lmdb("persist.lmdb", &o);
	classify_str(b, probe, &v2);
	totals(b, &t2);
	assert_int_equal(v1.status, SPAM_BAYES_CLASSIFIED);
	assert_true(v1.prob == v2.prob);
	assert_string_equal(v1.symbol, v2.symbol);
	assert_int_equal(v1.nused, v2.nused);
	assert_int_equal(t1.nspam, t2.nspam);
	assert_int_equal(t1.nham, t2.nham);
	assert_int_equal(t1.ntokens, t2.ntokens);
	/* the seen database persisted too */
	char *s0 = make_msg(1, 0, NULL);
	learn_str(b, s0, SPAM_BAYES_LEARN_SPAM, T0, &r);
	assert_int_equal(r, SPAM_BAYES_ALREADY);
	free(s0);
	free(probe);
	spam_bayes_close(&b);

	/* a different file has a different salt: no token hash in common */
	struct spam_bayes_opts o2 = o;
	struct spam_bayes *b1 = open_lmdb("persist.lmdb", &o);
	struct spam_bayes *b2 = open_lmdb("other.lmdb", &o2);
	struct spam_mime *m = parse("Subject: hello\r\n\r\nhello world\r\n");
	uint64_t *h1, *h2;
	size_t n1 = spam_bayes_tokens(b1, m, &h1), n2 = spam_bayes_tokens(b2, m, &h2);
	assert_int_equal(n1, n2);
	for (size_t i = 0; i < n1; i++)
		for (size_t j = 0; j < n2; j++)
			assert_true(h1[i] != h2[j]);
	free(h1);
	free(h2);
	spam_mime_free(&m);
	spam_bayes_close(&b1);
	spam_bayes_close(&b2);

	/* a path that cannot be opened is an error, not a crash */
	struct spam_bayes_opts o3;
	char *err = NULL;
	spam_bayes_opts_default(&o3);
	o3.store.db_path = "/nonexistent-dir/x/bayes.lmdb";
	assert_null(spam_bayes_open(&o3, &err));
	assert_non_null(err);
	free(err);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void progress(void *arg, const struct spam_bayes_progress *p)
{
	(void)p;
	(*(int *)arg)++;
}

static void test_learn_paths(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	struct spam_bayes_progress p;
	char *err = NULL;
	int calls = 0;
	spam_bayes_opts_default(&o);
	struct spam_bayes *b = open_lmdb("paths.lmdb", &o);

	/* a Maildir: cur/ and new/ (tmp/ and dot files ignored) */
	char *md = tmp_path("Maildir");
	char *sub[3] = { xasprintf("%s/cur", md), xasprintf("%s/new", md), xasprintf("%s/tmp", md) };
	mkdir(md, 0700);
	for (int i = 0; i < 3; i++)
		mkdir(sub[i], 0700);
	for (int i = 0; i < 4; i++) {
		char *f = xasprintf("%s/%d.msg%s", sub[i % 2], i, i % 2 ? "" : ":2,S");
		char *m = make_msg(1, i, NULL);
		write_file(f, m);
		free(f);
		free(m);
	}
	char *tmpf = xasprintf("%s/9.tmp", sub[2]), *dotf = xasprintf("%s/.hidden", sub[0]);
	write_file(tmpf, "Subject: x\r\n\r\nignored\r\n");
	write_file(dotf, "Subject: x\r\n\r\nignored\r\n");

	/* an mbox with three messages, one of them a repeat */
	char *mbox = tmp_path("spam.mbox");
	char *m0 = make_msg(1, 10, NULL), *m1 = make_msg(1, 11, "\r\n>From the body, quoted\r\n");
	char *text = xasprintf("From a@b Mon Jan  1 00:00:00 2024\n%s\n\nFrom c@d Mon Jan  1 00:00:00 2024\n%s\n\n"
			       "From e@f Mon Jan  1 00:00:00 2024\n%s\n", m0, m1, m0);
	write_file(mbox, text);

	const char *paths[] = { md, mbox, "/nonexistent/file" };
	assert_int_equal(spam_bayes_learn_paths(b, SPAM_BAYES_LEARN_SPAM, paths, 3, progress, &calls, &p, &err), 0);
	assert_int_equal(p.messages, 7);
	assert_int_equal(p.learned, 6);
	assert_int_equal(p.already, 1);
	assert_int_equal(p.errors, 1);
	assert_int_equal(calls, 8);
	struct spam_bayes_totals t;
	totals(b, &t);
	assert_int_equal(t.nspam, 6);

	/* the mbox splitter by itself */
	size_t pos = 0, len;
	const char *msg;
	int n = 0;
	while (spam_bayes_mbox_next(text, strlen(text), &pos, &msg, &len))
		n++;
	assert_int_equal(n, 3);

	/* forget the mbox again */
	const char *one[] = { mbox };
	assert_int_equal(spam_bayes_learn_paths(b, SPAM_BAYES_FORGET, one, 1, NULL, NULL, &p, &err), 0);
	assert_int_equal(p.forgotten, 2);
	assert_int_equal(p.unknown, 1);
	totals(b, &t);
	assert_int_equal(t.nspam, 4);

	for (int i = 0; i < 3; i++)
		free(sub[i]);
	free(tmpf);
	free(dotf);
	free(md);
	free(mbox);
	free(m0);
	free(m1);
	free(text);
	spam_bayes_close(&b);
}

/*
 * The parameter lines docs/SPAM-BAYES.md asks for in conf/params_spam.c;
 * used here only while spam_params does not have them yet.
 */
static const struct conf_param bayes_params[] = {
	P("spam_bayes_enable", CONF_BOOL, "yes"),
	PE("spam_bayes_backend", "lmdb", "lmdb|redis"),
	P("spam_bayes_db", CONF_STR, "/var/lib/sluice/spam-bayes.lmdb"),
	PS("spam_bayes_db_max_size", "256m", 1048576, 0),
	P("spam_redis_server", CONF_STR, "127.0.0.1:6379"),
	P("spam_redis_password", CONF_STR, ""),
	PI("spam_redis_db", "0", 0, 1000000),
	P("spam_redis_prefix", CONF_STR, "sluice:bayes:"),
	PT("spam_redis_timeout", "1s", 1, 600, 's'),
	PI("spam_bayes_min_spam", "200", 0, 1000000000),
	PI("spam_bayes_min_ham", "200", 0, 1000000000),
	P("spam_bayes_scores", CONF_STR, ""),
	P("spam_bayes_autolearn_spam", CONF_STR, "off"),
	P("spam_bayes_autolearn_ham", CONF_STR, "off"),
	PI("spam_bayes_max_tokens", "1000000", 0, 1000000000),
	PT("spam_bayes_token_max_age", "180d", 0, 86400LL * 3650, 'd'),
	PT("spam_bayes_expire_period", "12h", 0, 86400LL * 365, 'h'),
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};

static int spam_params_have(const char *name)
{
	for (const struct conf_param *p = spam_params; p->name; p++)
		if (!strcmp(p->name, name))
			return 1;
	return 0;
}

static struct conf *load_conf(const char *text, char **err_out)
{
	const struct conf_param *with[] = { spam_params, bayes_params, NULL };
	const struct conf_param *without[] = { spam_params, NULL };
	return conf_load_string(text, "test.conf", spam_params_have("spam_bayes_db") ? without : with,
				NULL, err_out);
}

static void test_opts_from_conf(void **state)
{
	(void)state;
	struct spam_bayes_opts o;
	char *err = NULL;
	struct conf *c = load_conf("", &err);
	if (!c)
		fail_msg("%s", err);
	assert_int_equal(spam_bayes_opts_from_conf(c, &o, &err), 0);
	assert_int_equal(o.store.backend, SPAM_BAYES_LMDB);
	assert_string_equal(o.store.db_path, "/var/lib/sluice/spam-bayes.lmdb");
	assert_int_equal(o.min_spam, 200);
	assert_int_equal(o.min_ham, 200);
	assert_true(o.autolearn_spam == SPAM_BAYES_OFF);
	assert_int_equal(o.token_max_age_s, 180 * 86400);
	assert_int_equal(o.expire_period_s, 12 * 3600);
	assert_int_equal(o.store.redis_timeout_ms, 1000);
	conf_free(&c);

	c = load_conf("spam_bayes_backend = redis\nspam_redis_server = unix:/run/redis.sock\n"
		      "spam_redis_prefix = bx:\nspam_redis_db = 2\nspam_bayes_min_spam = 50\n"
		      "spam_bayes_min_ham = 60\nspam_bayes_autolearn_spam = 12\n"
		      "spam_bayes_autolearn_ham = -0.5\nspam_bayes_scores = BAYES_99:5, BAYES_00:-4\n"
		      "spam_bayes_max_tokens = 5000\nspam_bayes_token_max_age = 30d\n"
		      "spam_max_scan_size = 2m\n", &err);
	if (!c)
		fail_msg("%s", err);
	assert_int_equal(spam_bayes_opts_from_conf(c, &o, &err), 0);
	assert_int_equal(o.store.backend, SPAM_BAYES_REDIS);
	assert_string_equal(o.store.redis_server, "unix:/run/redis.sock");
	assert_string_equal(o.store.redis_prefix, "bx:");
	assert_int_equal(o.store.redis_db, 2);
	assert_int_equal(o.min_spam, 50);
	assert_int_equal(o.min_ham, 60);
	assert_double_equal(o.autolearn_spam, 12, 0);
	assert_double_equal(o.autolearn_ham, -0.5, 0);
	assert_double_equal(o.bands[8].score, 5, 0);
	assert_double_equal(o.bands[0].score, -4, 0);
	assert_int_equal(o.max_tokens, 5000);
	assert_int_equal(o.token_max_age_s, 30 * 86400);
	assert_int_equal(o.limits.max_scan_bytes, 2 << 20);
	conf_free(&c);

	c = load_conf("spam_bayes_scores = BAYES_77:1\n", &err);
	assert_non_null(c);
	assert_int_equal(spam_bayes_opts_from_conf(c, &o, &err), -1);
	assert_non_null(strstr(err, "test.conf"));
	assert_non_null(strstr(err, "BAYES_77"));
	free(err);
	err = NULL;
	conf_free(&c);
	c = load_conf("spam_bayes_autolearn_spam = lots\n", &err);
	assert_non_null(c);
	assert_int_equal(spam_bayes_opts_from_conf(c, &o, &err), -1);
	free(err);
	conf_free(&c);
}

/* A reload: the new generation shares the open LMDB store, with its own options. */
static void test_open_shared(void **state)
{
	(void)state;
	struct spam_bayes_opts o1, o2, o3;
	struct spam_bayes_verdict v;
	enum spam_bayes_learn_result r;
	char *err = NULL;
	spam_bayes_opts_default(&o1);
	o1.min_spam = o1.min_ham = 1000;
	struct spam_bayes *b1 = open_lmdb("shared.lmdb", &o1);
	for (int i = 0; i < 3; i++) {
		char *s = make_msg(1, i, NULL), *h = make_msg(0, i, NULL);
		learn_str(b1, s, SPAM_BAYES_LEARN_SPAM, T0, &r);
		learn_str(b1, h, SPAM_BAYES_LEARN_HAM, T0, &r);
		free(s);
		free(h);
	}
	o2 = o1;
	o2.min_spam = o2.min_ham = 1;
	char *path_copy = xstrdup(o1.store.db_path);	/* equal path, another string */
	o2.store.db_path = path_copy;
	struct spam_bayes *b2 = spam_bayes_open_shared(&o2, b1, &err);
	free(path_copy);
	assert_non_null(b2);
	assert_ptr_equal(spam_bayes_get_store(b1), spam_bayes_get_store(b2));
	char *probe = make_msg(1, 9, NULL);
	classify_str(b1, probe, &v);
	assert_int_equal(v.status, SPAM_BAYES_UNTRAINED);
	classify_str(b2, probe, &v);
	assert_int_equal(v.status, SPAM_BAYES_CLASSIFIED);
	spam_bayes_close(&b1);	/* the old generation goes; the store stays open */
	classify_str(b2, probe, &v);
	assert_int_equal(v.status, SPAM_BAYES_CLASSIFIED);
	/* another file: another store */
	o3 = o2;
	char *other = tmp_path("shared2.lmdb");
	o3.store.db_path = other;
	struct spam_bayes *b4 = spam_bayes_open_shared(&o3, b2, &err);
	free(other);
	assert_non_null(b4);
	assert_true(spam_bayes_get_store(b4) != spam_bayes_get_store(b2));
	classify_str(b4, probe, &v);
	assert_int_equal(v.status, SPAM_BAYES_UNTRAINED);
	spam_bayes_close(&b4);
	spam_bayes_close(&b2);
	free(probe);
}

/* ------------------------------------------------------------ the sample */

/* The split: FNV-1a of the file name; even = training, odd = test. */
static int in_training(const char *name)
{
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (h & 1) == 0;
}

struct sample {
	char **path;
	int *spam;
	size_t n;
};

static void sample_load(struct sample *s, int training)
{
	memset(s, 0, sizeof *s);
	for (int spam = 0; spam < 2; spam++) {
		char *dir = xasprintf("%s/%s", SAMPLE, spam ? "spam" : "ham");
		struct dirent **ents;
		int n = scandir(dir, &ents, NULL, alphasort);
		assert_true(n > 0);
		for (int i = 0; i < n; i++) {
			const char *nm = ents[i]->d_name;
			if (nm[0] != '.' && strstr(nm, ".txt") && in_training(nm) == training) {
				s->path = xrealloc(s->path, (s->n + 1) * sizeof *s->path);
				s->spam = xrealloc(s->spam, (s->n + 1) * sizeof *s->spam);
				s->path[s->n] = xasprintf("%s/%s", dir, nm);
				s->spam[s->n++] = spam;
			}
			free(ents[i]);
		}
		free(ents);
		free(dir);
	}
}

static void sample_free(struct sample *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->path[i]);
	free(s->path);
	free(s->spam);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	struct sbuf b;
	char buf[65536];
	size_t n;
	sbuf_init(&b);
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		sbuf_add(&b, buf, n);
	fclose(f);
	*len = b.len;
	return sbuf_steal(&b);
}

/* learn_sample - at a fixed time, so that two stores get the same last-seen times. */
static void learn_sample(struct spam_bayes *b, const struct sample *train)
{
	for (size_t i = 0; i < train->n; i++) {
		size_t len;
		enum spam_bayes_learn_result r;
		char *err = NULL, *raw = slurp(train->path[i], &len);
		if (spam_bayes_learn_raw(b, raw, len, train->spam[i] ? SPAM_BAYES_LEARN_SPAM
								      : SPAM_BAYES_LEARN_HAM,
					 T0 + (time_t)i, &r, &err) < 0)
			fail_msg("%s: %s", train->path[i], err);
		assert_int_equal(r, SPAM_BAYES_LEARNED);
		free(raw);
	}
}

/* classify_sample - probs_out[i] for each test message; returns correct count. */
static size_t classify_sample(struct spam_bayes *b, const struct sample *test, double *probs_out,
			      size_t *fp_out, size_t *fn_out)
{
	size_t correct = 0, fp = 0, fn = 0;
	char *err = NULL;
	for (size_t i = 0; i < test->n; i++) {
		size_t len;
		char *raw = slurp(test->path[i], &len);
		const char *msg = raw;
		if (len > 5 && !memcmp(raw, "From ", 5)) {
			const char *nl = memchr(raw, '\n', len);
			len -= (size_t)(nl + 1 - raw);
			msg = nl + 1;
		}
		struct spam_mime *m = spam_mime_parse(msg, len, NULL);
		struct spam_bayes_verdict v;
		if (spam_bayes_classify(b, m, T0, &v, &err) < 0)
			fail_msg("%s", err);
		assert_int_equal(v.status, SPAM_BAYES_CLASSIFIED);
		probs_out[i] = v.prob;
		int said_spam = v.prob > 0.5;
		correct += said_spam == test->spam[i];
		fp += said_spam && !test->spam[i];
		fn += !said_spam && test->spam[i];
		spam_mime_free(&m);
		free(raw);
	}
	*fp_out = fp;
	*fn_out = fn;
	return correct;
}

static void test_accuracy_sample(void **state)
{
	(void)state;
	struct sample train, test;
	struct spam_bayes_opts o;
	struct spam_bayes_totals t;
	size_t fp, fn;
	sample_load(&train, 1);
	sample_load(&test, 0);
	assert_true(train.n >= 20 && test.n >= 20);
	spam_bayes_opts_default(&o);
	o.min_spam = o.min_ham = 1;	/* the sample is small */
	struct spam_bayes *b = open_lmdb("sample.lmdb", &o);
	learn_sample(b, &train);
	totals(b, &t);
	/* no clear text in the file: words every training message has are not in it */
	size_t dblen;
	char *db = slurp(db_paths[ndb_paths - 1], &dblen);
	static const char *const words[] = { "localhost", "received", "H:received", "Subject", "example" };
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (memmem(db, dblen, words[i], strlen(words[i])))
			fail_msg("\"%s\" in clear in the database", words[i]);
	free(db);
	double *probs = xcalloc(test.n, sizeof *probs);
	size_t correct = classify_sample(b, &test, probs, &fp, &fn);
	size_t nspam_test = 0;
	for (size_t i = 0; i < test.n; i++)
		nspam_test += test.spam[i];
	print_message("bayes sample: trained on %llu spam + %llu ham (%llu tokens); "
		      "test %zu (%zu spam, %zu ham): %zu correct (%.1f%%), %zu false positives, "
		      "%zu false negatives\n",
		      (unsigned long long)t.nspam, (unsigned long long)t.nham,
		      (unsigned long long)t.ntokens, test.n, nspam_test, test.n - nspam_test, correct,
		      100.0 * correct / test.n, fp, fn);
	assert_true(correct * 100 >= test.n * 85);
	assert_true(fp <= 1);
	free(probs);
	spam_bayes_close(&b);
	sample_free(&train);
	sample_free(&test);
}

/* Threads classify while another learns: one handle, no errors, no races. */
struct thr {
	struct spam_bayes *b;
	struct spam_mime **msgs;
	size_t n;
	int errors;
};

static void *classify_thread(void *arg)
{
	struct thr *t = arg;
	for (int round = 0; round < 5; round++)
		for (size_t i = 0; i < t->n; i++) {
			struct spam_bayes_verdict v;
			char *err = NULL;
			if (spam_bayes_classify(t->b, t->msgs[i], T0 + 86400 * (round + 2), &v, &err) < 0) {
				t->errors++;
				free(err);
			}
		}
	return NULL;
}

static void test_threads_and_speed(void **state)
{
	(void)state;
	struct sample train, test;
	struct spam_bayes_opts o;
	sample_load(&train, 1);
	sample_load(&test, 0);
	spam_bayes_opts_default(&o);
	o.min_spam = o.min_ham = 1;
	struct spam_bayes *b = open_lmdb("threads.lmdb", &o);
	learn_sample(b, &train);
	struct spam_mime **msgs = xcalloc(test.n, sizeof *msgs);
	for (size_t i = 0; i < test.n; i++) {
		size_t len;
		char *raw = slurp(test.path[i], &len);
		msgs[i] = spam_mime_parse(raw, len, NULL);
		free(raw);
	}
	/* speed of classification alone (parsed messages, LMDB, no touching) */
	struct spam_bayes_opts *live = (struct spam_bayes_opts *)spam_bayes_get_opts(b);
	live->touch_on_classify = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t runs = 0;
	for (int round = 0; round < 10; round++)
		for (size_t i = 0; i < test.n; i++, runs++) {
			struct spam_bayes_verdict v;
			char *err = NULL;
			assert_int_equal(spam_bayes_classify(b, msgs[i], T0, &v, &err), 0);
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("bayes classify: %zu messages in %.3f s (%.0f msg/s, one thread)\n", runs, s,
		      runs / s);
	live->touch_on_classify = 1;

	pthread_t th[3];
	struct thr t[3];
	for (int k = 0; k < 3; k++) {
		t[k] = (struct thr){ b, msgs, test.n, 0 };
		assert_int_equal(pthread_create(&th[k], NULL, classify_thread, &t[k]), 0);
	}
	for (int i = 0; i < 40; i++) {
		enum spam_bayes_learn_result r;
		char *msg = make_msg(i % 2, 200 + i, NULL);
		learn_str(b, msg, i % 2 ? SPAM_BAYES_LEARN_SPAM : SPAM_BAYES_LEARN_HAM, T0 + 86400 * 3, &r);
		free(msg);
	}
	for (int k = 0; k < 3; k++) {
		pthread_join(th[k], NULL);
		assert_int_equal(t[k].errors, 0);
	}
	struct spam_bayes_totals tt;
	totals(b, &tt);
	assert_int_equal(tt.ntokens, scan_count(b));
	for (size_t i = 0; i < test.n; i++)
		spam_mime_free(&msgs[i]);
	free(msgs);
	spam_bayes_close(&b);
	sample_free(&train);
	sample_free(&test);
}

/* Mangled sample messages: learn, classify and forget give results, never a crash. */
static void test_mangled_input(void **state)
{
	(void)state;
	struct sample train;
	struct spam_bayes_opts o;
	sample_load(&train, 1);
	spam_bayes_opts_default(&o);
	o.min_spam = o.min_ham = 0;
	o.max_tokens = 5000;
	struct spam_bayes *b = open_lmdb("mangled.lmdb", &o);
	uint32_t rnd = 12345;
	for (int iter = 0; iter < 300; iter++) {
		size_t len;
		char *raw = slurp(train.path[iter % train.n], &len);
		for (int k = 0; k < 20 && len; k++) {
			rnd = rnd * 1103515245u + 12345u;
			raw[(rnd >> 8) % len] = (char)(rnd >> 24);
		}
		rnd = rnd * 1103515245u + 12345u;
		if (iter % 3 == 0)
			len = (rnd >> 8) % (len + 1);
		enum spam_bayes_learn_result r;
		char *err = NULL;
		assert_int_equal(spam_bayes_learn_raw(b, raw, len, iter % 2 ? SPAM_BAYES_LEARN_SPAM
									: SPAM_BAYES_LEARN_HAM, T0, &r, &err), 0);
		struct spam_mime *m = spam_mime_parse(raw, len, NULL);
		struct spam_bayes_verdict v;
		assert_int_equal(spam_bayes_classify(b, m, T0, &v, &err), 0);
		assert_true(v.prob >= 0 && v.prob <= 1);
		spam_mime_free(&m);
		if (iter % 5 == 0)
			assert_int_equal(spam_bayes_learn_raw(b, raw, len, SPAM_BAYES_FORGET, T0, &r, &err), 0);
		free(raw);
	}
	struct spam_bayes_totals t;
	totals(b, &t);
	assert_int_equal(t.ntokens, scan_count(b));
	spam_bayes_close(&b);
	sample_free(&train);
}

/* --------------------------------------------------------------- Redis */

static void test_redis_same_as_lmdb(void **state)
{
	(void)state;
	const char *addr = getenv("REDIS_ADDR");
	if (!addr || !*addr) {
		print_message("REDIS_ADDR not set: Redis backend not tested here\n");
		skip();
	}
	struct sample train, test;
	struct spam_bayes_opts ol, orr;
	struct spam_bayes_totals tl, tr;
	char *err = NULL;
	size_t fp, fn;
	sample_load(&train, 1);
	sample_load(&test, 0);
	spam_bayes_opts_default(&ol);
	ol.min_spam = ol.min_ham = 1;
	/* one salt for both, so that both hash alike and ties break alike */
	static const uint8_t salt[16] = "0123456789abcdef";
	ol.store.new_salt = salt;
	orr = ol;
	struct spam_bayes *bl = open_lmdb("redis-twin.lmdb", &ol);
	orr.store.backend = SPAM_BAYES_REDIS;
	orr.store.redis_server = addr;
	char *prefix = xasprintf("test:%d:", (int)getpid());
	orr.store.redis_prefix = prefix;
	orr.store.redis_password = getenv("REDIS_PASSWORD") ? getenv("REDIS_PASSWORD") : "";
	orr.store.redis_db = getenv("REDIS_DB") ? atoi(getenv("REDIS_DB")) : 0;
	struct spam_bayes *br = spam_bayes_open(&orr, &err);
	if (!br)
		fail_msg("redis %s: %s", addr, err);
	assert_string_equal(spam_bayes_store_backend_name(spam_bayes_get_store(br)), "redis");
	/* reopening keeps the salt */
	struct spam_bayes *br2 = spam_bayes_open(&orr, &err);
	assert_non_null(br2);
	uint8_t s1[16], s2[16];
	spam_bayes_store_salt(spam_bayes_get_store(br), s1);
	spam_bayes_store_salt(spam_bayes_get_store(br2), s2);
	assert_memory_equal(s1, s2, 16);
	spam_bayes_close(&br2);

	learn_sample(bl, &train);
	learn_sample(br, &train);
	totals(bl, &tl);
	totals(br, &tr);
	assert_int_equal(tl.nspam, tr.nspam);
	assert_int_equal(tl.nham, tr.nham);
	assert_int_equal(tl.ntokens, tr.ntokens);
	assert_int_equal(tr.ntokens, scan_count(br));

	double *pl = xcalloc(test.n, sizeof *pl), *pr = xcalloc(test.n, sizeof *pr);
	size_t cl = classify_sample(bl, &test, pl, &fp, &fn);
	size_t cr = classify_sample(br, &test, pr, &fp, &fn);
	assert_int_equal(cl, cr);
	for (size_t i = 0; i < test.n; i++)
		if (pl[i] != pr[i])
			fail_msg("%s: lmdb %.17g redis %.17g", test.path[i], pl[i], pr[i]);
	print_message("redis and lmdb agree on %zu messages (%zu correct)\n", test.n, cr);

	/* learn twice, move, forget: the same on both */
	for (int k = 0; k < 2; k++) {
		struct spam_bayes *b = k ? br : bl;
		enum spam_bayes_learn_result r;
		char *msg = make_msg(1, 5, NULL);
		learn_str(b, msg, SPAM_BAYES_LEARN_SPAM, T0, &r);
		assert_int_equal(r, SPAM_BAYES_LEARNED);
		learn_str(b, msg, SPAM_BAYES_LEARN_SPAM, T0, &r);
		assert_int_equal(r, SPAM_BAYES_ALREADY);
		learn_str(b, msg, SPAM_BAYES_LEARN_HAM, T0, &r);
		assert_int_equal(r, SPAM_BAYES_MOVED);
		learn_str(b, msg, SPAM_BAYES_FORGET, T0, &r);
		assert_int_equal(r, SPAM_BAYES_FORGOTTEN);
		learn_str(b, msg, SPAM_BAYES_FORGET, T0, &r);
		assert_int_equal(r, SPAM_BAYES_UNKNOWN);
		free(msg);
	}
	totals(bl, &tl);
	totals(br, &tr);
	assert_int_equal(tl.ntokens, tr.ntokens);
	assert_int_equal(tl.nspam, tr.nspam);

	/* expiry down to the same bound removes the same tokens */
	uint64_t rl, rr;
	struct spam_bayes_opts *ol2 = (struct spam_bayes_opts *)spam_bayes_get_opts(bl);
	struct spam_bayes_opts *or2 = (struct spam_bayes_opts *)spam_bayes_get_opts(br);
	ol2->max_tokens = or2->max_tokens = tl.ntokens / 2;
	assert_int_equal(spam_bayes_expire(bl, T0 + 10, &rl, &err), 0);
	assert_int_equal(spam_bayes_expire(br, T0 + 10, &rr, &err), 0);
	assert_int_equal(rl, rr);
	totals(bl, &tl);
	totals(br, &tr);
	assert_int_equal(tl.ntokens, tr.ntokens);
	assert_int_equal(tr.ntokens, scan_count(br));
	classify_sample(bl, &test, pl, &fp, &fn);
	classify_sample(br, &test, pr, &fp, &fn);
	for (size_t i = 0; i < test.n; i++)
		assert_true(pl[i] == pr[i]);

	free(pl);
	free(pr);
	free(prefix);
	spam_bayes_close(&bl);
	spam_bayes_close(&br);
	sample_free(&train);
	sample_free(&test);

	/* a server that is not there: an error, no crash */
	struct spam_bayes_opts od;
	spam_bayes_opts_default(&od);
	od.store.backend = SPAM_BAYES_REDIS;
	od.store.redis_server = "127.0.0.1:1";
	assert_null(spam_bayes_open(&od, &err));
	free(err);
}

/* kill_other_clients - CLIENT KILL TYPE normal from a connection of our own. */
static void kill_other_clients(const char *addr, const char *password)
{
	redisContext *c;
	if (!strncmp(addr, "unix:", 5)) {
		c = redisConnectUnix(addr + 5);
	} else {
		char host[256];
		const char *colon = strrchr(addr, ':');
		assert_non_null(colon);
		snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
		c = redisConnect(host, atoi(colon + 1));
	}
	assert_true(c && !c->err);
	redisReply *r;
	if (password && *password) {
		r = redisCommand(c, "AUTH %s", password);
		assert_non_null(r);
		freeReplyObject(r);
	}
	r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_true(r->integer >= 1);
	freeReplyObject(r);
	redisFree(c);
}

/* Connections killed by the server: the call is retried once on a new connection. */
static void test_redis_reconnect(void **state)
{
	(void)state;
	const char *addr = getenv("REDIS_ADDR");
	if (!addr || !*addr)
		skip();
	struct spam_bayes_opts o;
	char *err = NULL;
	spam_bayes_opts_default(&o);
	o.min_spam = o.min_ham = 1;
	o.store.backend = SPAM_BAYES_REDIS;
	o.store.redis_server = addr;
	o.store.redis_password = getenv("REDIS_PASSWORD") ? getenv("REDIS_PASSWORD") : "";
	o.store.redis_db = getenv("REDIS_DB") ? atoi(getenv("REDIS_DB")) : 0;
	char *prefix = xasprintf("recon:%d:", (int)getpid());
	o.store.redis_prefix = prefix;
	struct spam_bayes *b = spam_bayes_open(&o, &err);
	if (!b)
		fail_msg("%s", err);
	enum spam_bayes_learn_result r;
	char *sp = make_msg(1, 1, NULL), *hm = make_msg(0, 1, NULL);
	learn_str(b, sp, SPAM_BAYES_LEARN_SPAM, T0, &r);
	learn_str(b, hm, SPAM_BAYES_LEARN_HAM, T0, &r);
	struct spam_mime *m = parse(sp);
	for (int round = 0; round < 3; round++) {
		struct spam_bayes_verdict v;
		kill_other_clients(addr, o.store.redis_password);
		int fails = 0;
		for (int i = 0; i < 3; i++) {
			if (spam_bayes_classify(b, m, T0, &v, &err) < 0) {
				fails++;
				free(err);
				err = NULL;
			}
		}
		assert_int_equal(fails, 0);	/* the broken connection is retried on a new one */
		assert_int_equal(v.status, SPAM_BAYES_CLASSIFIED);
		assert_true(v.prob > 0.5);
	}
	/* learning after a kill: retried, learned once */
	kill_other_clients(addr, o.store.redis_password);
	char *sp2 = make_msg(1, 2, NULL);
	learn_str(b, sp2, SPAM_BAYES_LEARN_SPAM, T0, &r);
	assert_int_equal(r, SPAM_BAYES_LEARNED);
	struct spam_bayes_totals t;
	totals(b, &t);
	assert_int_equal(t.nspam, 2);
	assert_int_equal(t.ntokens, scan_count(b));
	spam_mime_free(&m);
	free(sp);
	free(sp2);
	free(hm);
	spam_bayes_close(&b);
	free(prefix);
}

int main(void)
{
	spam_mime_init();
	const char *filter = getenv("SPAM_BAYES_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokenizer),
		cmocka_unit_test(test_tokenizer_hostile),
		cmocka_unit_test(test_siphash_vectors),
		cmocka_unit_test(test_combiner),
		cmocka_unit_test(test_deltas),
		cmocka_unit_test(test_min_gate),
		cmocka_unit_test(test_classify_by_hand),
		cmocka_unit_test(test_learn_twice_and_move),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_lmdb_persistence),
		cmocka_unit_test(test_learn_paths),
		cmocka_unit_test(test_opts_from_conf),
		cmocka_unit_test(test_open_shared),
		cmocka_unit_test(test_accuracy_sample),
		cmocka_unit_test(test_threads_and_speed),
		cmocka_unit_test(test_mangled_input),
		cmocka_unit_test(test_redis_same_as_lmdb),
		cmocka_unit_test(test_redis_reconnect),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
