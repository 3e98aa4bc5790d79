/*
 * spam_bayes: tokenizer, Robinson/Fisher combining, learning, expiry.
 * See spam_bayes.h. The maths follows Gary Robinson, "A Statistical
 * Approach to the Spam Problem" (Linux Journal 107, 2003): f(w) with the
 * prior x of strength s, and Fisher's inverse chi-square of the product of
 * the f(w) (H) and of the 1 - f(w) (S), I = (1 + H - S) / 2.
 */
#include "milters/spam/spam_bayes.h"

#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "lib/util.h"

struct spam_bayes {
	struct spam_bayes_opts o;	/* strings point at strs */
	char *strs[4];
	struct spam_bayes_store *store;
	uint8_t salt[SPAM_BAYES_SALT_BYTES];
};

/* ------------------------------------------------------------ options */

static const struct spam_bayes_band default_bands[SPAM_BAYES_NBANDS] = {
	{ "BAYES_00", 0.00, 0.01, -1.9 },
	{ "BAYES_05", 0.01, 0.05, -0.5 },
	{ "BAYES_20", 0.05, 0.20, -0.001 },
	{ "BAYES_40", 0.20, 0.40, -0.001 },
	{ "BAYES_50", 0.40, 0.60, 1.0 },
	{ "BAYES_60", 0.60, 0.80, 2.2 },
	{ "BAYES_80", 0.80, 0.95, 3.0 },
	{ "BAYES_95", 0.95, 0.99, 3.6 },
	{ "BAYES_99", 0.99, 0.999, 3.8 },
	{ "BAYES_999", 0.999, 1.0, 5.0 },
};

void spam_bayes_opts_default(struct spam_bayes_opts *o)
{
	memset(o, 0, sizeof *o);
	o->store.backend = SPAM_BAYES_LMDB;
	o->store.db_path = "bayes.lmdb";
	o->store.db_max_bytes = (size_t)256 << 20;
	o->store.redis_server = "127.0.0.1:6379";
	o->store.redis_password = "";
	o->store.redis_prefix = "sluice:bayes:";
	o->store.redis_timeout_ms = 1000;
	o->min_spam = 200;
	o->min_ham = 200;
	o->robinson_s = 0.45;
	o->robinson_x = 0.5;
	o->min_prob_strength = 0.1;
	o->max_significant = 300;
	o->max_tokens_per_msg = 3000;
	o->max_word_bytes = 40;
	o->max_text_bytes = 300 * 1024;
	o->osb_window = 3;
	o->max_tokens = 1000000;
	o->token_max_age_s = 180LL * 86400;
	o->expire_period_s = 12 * 3600;
	o->touch_on_classify = 1;
	o->autolearn_spam = SPAM_BAYES_OFF;
	o->autolearn_ham = SPAM_BAYES_OFF;
	spam_mime_limits_default(&o->limits);
	memcpy(o->bands, default_bands, sizeof default_bands);
}

static int parse_score_or_off(const char *name, const char *s, double *out, char **err_out)
{
	char *end;
	if (!ascii_strcasecmp(s, "off") || !*s) {
		*out = SPAM_BAYES_OFF;
		return 0;
	}
	*out = strtod(s, &end);
	if (end == s || *end || !isfinite(*out)) {
		*err_out = xasprintf("%s = %s: expected a score or \"off\"", name, s);
		return -1;
	}
	return 0;
}

int spam_bayes_parse_scores(struct spam_bayes_opts *o, const char *text, char **err_out)
{
	size_t n;
	char **items = conf_split_list(text, &n);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		char *colon = strchr(items[i], ':'), *end;
		size_t b = 0;
		if (colon) {
			*colon = 0;
			for (b = 0; b < SPAM_BAYES_NBANDS; b++)
				if (!ascii_strcasecmp(o->bands[b].name, items[i]))
					break;
		}
		double v = colon ? strtod(colon + 1, &end) : 0;
		if (!colon || b == SPAM_BAYES_NBANDS || end == colon + 1 || *end || !isfinite(v)) {
			*err_out = xasprintf("spam_bayes_scores: \"%s%s%s\": expected BAYES_xx:score",
					     items[i], colon ? ":" : "", colon ? colon + 1 : "");
			rc = -1;
			break;
		}
		o->bands[b].score = v;
	}
	conf_list_free(items, n);
	return rc;
}

int spam_bayes_opts_from_conf(const struct conf *c, struct spam_bayes_opts *o, char **err_out)
{
	spam_bayes_opts_default(o);
	o->store.backend = !ascii_strcasecmp(conf_str(c, "spam_bayes_backend"), "redis")
				   ? SPAM_BAYES_REDIS : SPAM_BAYES_LMDB;
	o->store.db_path = conf_str(c, "spam_bayes_db");
	o->store.db_max_bytes = (size_t)conf_size(c, "spam_bayes_db_max_size");
	o->store.redis_server = conf_str(c, "spam_redis_server");
	o->store.redis_password = conf_str(c, "spam_redis_password");
	o->store.redis_db = (int)conf_int(c, "spam_redis_db");
	o->store.redis_prefix = conf_str(c, "spam_redis_prefix");
	long long t = conf_time_s(c, "spam_redis_timeout");
	o->store.redis_timeout_ms = t > 0 ? (int)(t * 1000) : 1000;
	o->min_spam = (unsigned)conf_int(c, "spam_bayes_min_spam");
	o->min_ham = (unsigned)conf_int(c, "spam_bayes_min_ham");
	o->max_tokens = (uint64_t)conf_int(c, "spam_bayes_max_tokens");
	o->token_max_age_s = conf_time_s(c, "spam_bayes_token_max_age");
	o->expire_period_s = conf_time_s(c, "spam_bayes_expire_period");
	o->limits.max_scan_bytes = (size_t)conf_size(c, "spam_max_scan_size");
	o->limits.max_parts = (size_t)conf_int(c, "spam_max_parts");
	o->limits.max_depth = (size_t)conf_int(c, "spam_max_depth");
	o->limits.max_urls = (size_t)conf_int(c, "spam_max_urls");
	if (parse_score_or_off("spam_bayes_autolearn_spam", conf_str(c, "spam_bayes_autolearn_spam"),
			       &o->autolearn_spam, err_out) < 0 ||
	    parse_score_or_off("spam_bayes_autolearn_ham", conf_str(c, "spam_bayes_autolearn_ham"),
			       &o->autolearn_ham, err_out) < 0 ||
	    spam_bayes_parse_scores(o, conf_str(c, "spam_bayes_scores"), err_out) < 0) {
		char *e = xasprintf("%s: %s", conf_path(c), *err_out);
		free(*err_out);
		*err_out = e;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ SipHash */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

uint64_t spam_bayes_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	size_t full = len & ~(size_t)7;

	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = le64(in + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[full + i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* ---------------------------------------------------------- tokenizer */

/* Feature sink: de-duplicates by keyed hash, stops at the cap. */
struct femit {
	const uint8_t *key;
	uint64_t *set;
	size_t setmask, n, max;
	spam_bayes_feature_fn fn;
	void *arg;
	uint64_t *out;		/* the hashes, in order */
};

static void emit(struct femit *e, const char *f, size_t len)
{
	if (e->n >= e->max || !len)
		return;
	uint64_t h = spam_bayes_siphash(e->key, f, len);
	uint64_t slot = h ? h : 1;
	size_t i = (size_t)slot & e->setmask;
	while (e->set[i]) {
		if (e->set[i] == slot)
			return;
		i = (i + 1) & e->setmask;
	}
	e->set[i] = slot;
	if (e->fn)
		e->fn(e->arg, f, len);
	if (e->out)
		e->out[e->n] = h;
	e->n++;
}

static void emit2(struct femit *e, const char *prefix, const char *w, size_t wl)
{
	char buf[256];
	size_t pl = strlen(prefix);
	if (pl + wl > sizeof buf)
		wl = sizeof buf - pl;
	memcpy(buf, prefix, pl);
	memcpy(buf + pl, w, wl);
	emit(e, buf, pl + wl);
}

/* Decode one UTF-8 sequence at p (n bytes left): code point, *len_out bytes (invalid: the byte, len 1). */
static uint32_t utf8_next(const unsigned char *p, size_t n, size_t *len_out)
{
	uint32_t c = p[0];
	size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
	if (l <= 1 || l > n) {
		*len_out = 1;
		return l == 1 ? c : 0xfffd;
	}
	c &= 0x3f >> (l - 1);
	for (size_t i = 1; i < l; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			*len_out = 1;
			return 0xfffd;
		}
		c = c << 6 | (p[i] & 0x3f);
	}
	*len_out = l;
	return c;
}

static size_t utf8_put(uint32_t c, char *out)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | c >> 6);
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | c >> 12);
		out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | c >> 18);
	out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* Lower case where it is a fixed offset: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic. */
static uint32_t lower_cp(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if (c >= 0xc0 && c <= 0xde && c != 0xd7)
		return c + 32;
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177))
		return c | 1;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
		return (c & 1) ? c + 1 : c;
	if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
		return c + 32;
	if (c >= 0x410 && c <= 0x42f)
		return c + 32;
	if (c >= 0x400 && c <= 0x40f)
		return c + 80;
	return c;
}

enum { CH_BREAK, CH_WORD, CH_INNER, CH_IGNORE, CH_ALONE };

/* ASCII classes, filled on first use (CH_BREAK is 0). */
static unsigned char ascii_class[128];

static void ascii_class_init(void)
{
	for (int c = 0; c < 128; c++)
		ascii_class[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
					 ? CH_WORD
				 : c && strchr("-'._@$", c) ? CH_INNER : CH_BREAK;
}

static int char_class(uint32_t c)
{
	if (c < 0x80)
		return ascii_class[c];
	if (c == 0xad || (c >= 0x200b && c <= 0x200d) || c == 0x2060 || c == 0xfeff ||
	    (c >= 0xfe00 && c <= 0xfe0f))
		return CH_IGNORE;	/* invisible: used to split words past filters */
	if (c < 0xc0)
		return c == 0xaa || c == 0xb5 || c == 0xba ? CH_WORD : CH_BREAK;
	if (c == 0xd7 || c == 0xf7 || (c >= 0x2000 && c <= 0x2bff) || (c >= 0x3000 && c <= 0x303f) ||
	    (c >= 0xff00 && c <= 0xff0f) || (c >= 0xe000 && c <= 0xf8ff) || c == 0xfffd)
		return CH_BREAK;
	if ((c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf) ||
	    (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xf900 && c <= 0xfaff) || c >= 0x1f000)
		return CH_ALONE;	/* CJK and emoji: one token each, pairs do the rest */
	return CH_WORD;
}

#define WORD_MAX 256	/* buffer; o->max_word_bytes is capped to fit */

struct wordst {
	struct femit *e;
	const char *prefix;	/* NULL: body words (with pairs) */
	size_t max_word;
	unsigned window;
	char ring[8][WORD_MAX + 16];
	size_t ringlen[8];
	unsigned nring, head;
};

static void word_done(struct wordst *w, const char *word, size_t len, size_t true_len)
{
	char tmp[WORD_MAX + 16];
	if (true_len > w->max_word) {
		/* SpamAssassin's skip token: the start and the length class */
		size_t k = 0;
		while (k < len && k < 7) {
			size_t l;
			utf8_next((const unsigned char *)word + k, len - k, &l);
			if (k + l > 7)
				break;
			k += l;
		}
		len = (size_t)snprintf(tmp, sizeof tmp, "sk:%.*s:%zu", (int)k, word, true_len / 10);
		word = tmp;
	} else if (len < 2) {
		return;
	}
	if (w->prefix) {
		emit2(w->e, w->prefix, word, len);
		const char *at = memchr(word, '@', len);
		if (at && at + 1 < word + len)
			emit2(w->e, w->prefix, at, (size_t)(word + len - at));
		return;
	}
	emit(w->e, word, len);
	/* orthogonal sparse bigrams: this word with each of the window-1 before it */
	for (unsigned d = 1; d < w->window && d <= w->nring; d++) {
		unsigned idx = (w->head + 8 - d) % 8;
		char pair[2 * (WORD_MAX + 16) + 1];
		size_t pl = w->ringlen[idx];
		memcpy(pair, w->ring[idx], pl);
		pair[pl] = (char)d;
		memcpy(pair + pl + 1, word, len);
		emit(w->e, pair, pl + 1 + len);
	}
	if (w->window > 1) {
		memcpy(w->ring[w->head], word, len);
		w->ringlen[w->head] = len;
		w->head = (w->head + 1) % 8;
		if (w->nring < 7)
			w->nring++;
	}
}

/* words - split text into lower-cased words and hand them to word_done. */
static void words(struct wordst *w, const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text, *end = p + len;
	char buf[WORD_MAX + 16];
	size_t bl = 0, true_len = 0, inner_tail = 0;

	while (p < end && w->e->n < w->e->max) {
		size_t l;
		uint32_t c;
		int cls;
		if (*p < 0x80) {
			c = *p++;
			cls = ascii_class[c];
			if (cls == CH_WORD) {
				/* the common case: an ASCII letter or digit */
				if (bl < WORD_MAX)
					buf[bl++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
				true_len++;
				inner_tail = 0;
				continue;
			}
		} else {
			c = utf8_next(p, (size_t)(end - p), &l);
			cls = char_class(c);
			p += l;
		}
		if (cls == CH_IGNORE)
			continue;
		if (cls == CH_INNER && (bl || c == '$')) {
			if (bl < WORD_MAX)
				buf[bl++] = (char)c;
			true_len++;
			if (c != '$' || bl > 1)
				inner_tail++;
			continue;
		}
		if (cls == CH_WORD) {
			char u[4];
			size_t ul = utf8_put(lower_cp(c), u);
			if (bl + ul <= WORD_MAX) {
				memcpy(buf + bl, u, ul);
				bl += ul;
			}
			true_len += ul;
			inner_tail = 0;
			continue;
		}
		/* a break, or a character that stands alone */
		if (bl) {
			size_t cut = inner_tail < bl ? inner_tail : bl;
			word_done(w, buf, bl - cut, true_len - cut);
		}
		bl = true_len = inner_tail = 0;
		if (cls == CH_ALONE) {
			char u[4];
			size_t ul = utf8_put(c, u);
			word_done(w, u, ul, ul);
		}
	}
	if (bl) {
		size_t cut = inner_tail < bl ? inner_tail : bl;
		word_done(w, buf, bl - cut, true_len - cut);
	}
}

static void words_prefixed(struct femit *e, const struct spam_bayes_opts *o, const char *prefix,
			   const char *text, size_t len)
{
	struct wordst w;
	memset(&w, 0, sizeof w);
	w.e = e;
	w.prefix = prefix;
	w.max_word = o->max_word_bytes < WORD_MAX ? o->max_word_bytes : WORD_MAX;
	w.window = 1;
	words(&w, text, len);
}

/* Headers whose words are tokens, with their prefixes. */
static const struct {
	const char *name, *prefix;
} hdr_prefix[] = {
	{ "subject", "S:" }, { "from", "F:" }, { "reply-to", "RT:" }, { "to", "T:" }, { "cc", "T:" },
	{ "return-path", "RP:" }, { "sender", "SN:" }, { "x-mailer", "XM:" }, { "user-agent", "XM:" },
	{ "content-type", "CT:" }, { "received", "R:" }, { "list-id", "LI:" },
	{ "precedence", "PR:" }, { "organization", "O:" }, { "x-priority", "XP:" },
	{ "mime-version", "MV:" }, { "content-transfer-encoding", "CE:" },
};

#define HDR_MAX_BYTES 2048
#define MAX_HDRS 200
#define MAX_URLS 200

static void features_headers(struct femit *e, const struct spam_bayes_opts *o,
			     const struct spam_mime *m)
{
	for (size_t i = 0; i < m->nhdrs && i < MAX_HDRS; i++) {
		const struct spam_hdr *h = &m->hdrs[i];
		char name[80];
		if (!h->name)
			continue;
		size_t nl = strlen(h->name);
		if (nl >= sizeof name)
			nl = sizeof name - 1;
		for (size_t k = 0; k < nl; k++)
			name[k] = (h->name[k] >= 'A' && h->name[k] <= 'Z') ? h->name[k] + 32 : h->name[k];
		name[nl] = 0;
		emit2(e, "H:", name, nl);
		const char *v = h->value ? h->value : h->raw ? h->raw : "";
		size_t vl = strlen(v);
		if (vl > HDR_MAX_BYTES)
			vl = HDR_MAX_BYTES;
		if (!strcmp(name, "message-id")) {
			/* only the domain: the local part is unique per message */
			const char *at = memchr(v, '@', vl);
			if (at)
				words_prefixed(e, o, "MI:", at + 1, (size_t)(v + vl - at - 1));
			continue;
		}
		for (size_t k = 0; k < sizeof hdr_prefix / sizeof hdr_prefix[0]; k++)
			if (!strcmp(name, hdr_prefix[k].name)) {
				words_prefixed(e, o, hdr_prefix[k].prefix, v, vl);
				break;
			}
	}
}

static void features_parts(struct femit *e, const struct spam_mime *m)
{
	for (size_t i = 0; i < m->nparts; i++) {
		const struct spam_part *p = &m->parts[i];
		if (p->type)
			emit2(e, "P:", p->type, strlen(p->type));
		if (p->charset)
			emit2(e, "PC:", p->charset, strlen(p->charset));
		if (p->encoding)
			emit2(e, "PE:", p->encoding, strlen(p->encoding));
		if (p->filename) {
			const char *dot = strrchr(p->filename, '.');
			char ext[16];
			size_t k = 0;
			for (const char *q = dot ? dot + 1 : ""; *q && k < sizeof ext - 1; q++)
				ext[k++] = (*q >= 'A' && *q <= 'Z') ? *q + 32 : *q;
			emit2(e, "PA:", ext, k);
		}
	}
}

static void features_urls(struct femit *e, const struct spam_bayes_opts *o, const struct spam_mime *m)
{
	for (size_t i = 0; i < m->nurls && i < MAX_URLS; i++) {
		const struct spam_url *u = &m->urls[i];
		if (u->host)
			emit2(e, "U:", u->host, strlen(u->host));
		if (u->domain)
			emit2(e, "UD:", u->domain, strlen(u->domain));
		const char *p = u->url ? strstr(u->url, "://") : NULL;
		if (p && (p = strchr(p + 3, '/'))) {
			size_t l = strlen(p);
			words_prefixed(e, o, "UP:", p, l > HDR_MAX_BYTES ? HDR_MAX_BYTES : l);
		}
	}
}

static void features_body(struct femit *e, const struct spam_bayes_opts *o, const struct spam_mime *m)
{
	struct wordst *w = xcalloc(1, sizeof *w);
	size_t len = m->text ? strlen(m->text) : 0;
	if (len > o->max_text_bytes)
		len = o->max_text_bytes;
	w->e = e;
	w->max_word = o->max_word_bytes < WORD_MAX ? o->max_word_bytes : WORD_MAX;
	w->window = o->osb_window > 8 ? 8 : o->osb_window ? o->osb_window : 1;
	words(w, m->text ? m->text : "", len);
	free(w);
}

static size_t gen_features(const struct spam_bayes_opts *o, const struct spam_mime *m,
			   const uint8_t *key, spam_bayes_feature_fn fn, void *arg, uint64_t *out)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct femit e;
	size_t cap = 16;

	pthread_once(&once, ascii_class_init);
	memset(&e, 0, sizeof e);
	e.key = key;
	e.max = o->max_tokens_per_msg ? o->max_tokens_per_msg : 1;
	while (cap < 2 * e.max)
		cap *= 2;
	e.set = xcalloc(cap, sizeof *e.set);
	e.setmask = cap - 1;
	e.fn = fn;
	e.arg = arg;
	e.out = out;
	features_headers(&e, o, m);
	features_parts(&e, m);
	features_urls(&e, o, m);
	features_body(&e, o, m);
	free(e.set);
	return e.n;
}

size_t spam_bayes_features(const struct spam_bayes_opts *o, const struct spam_mime *m,
			   spam_bayes_feature_fn fn, void *arg)
{
	static const uint8_t zero[16];
	return gen_features(o, m, zero, fn, arg, NULL);
}

/* sort_u64 - LSD radix sort, 8 passes of 8 bits (qsort's calls cost more here). */
static void sort_u64(uint64_t *a, size_t n)
{
	uint64_t *tmp = xmalloc((n ? n : 1) * sizeof *tmp), *src = a, *dst = tmp;
	for (unsigned shift = 0; shift < 64; shift += 8) {
		size_t cnt[256] = { 0 };
		for (size_t i = 0; i < n; i++)
			cnt[(src[i] >> shift) & 0xff]++;
		size_t sum = 0;
		for (unsigned k = 0; k < 256; k++) {
			size_t c = cnt[k];
			cnt[k] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[cnt[(src[i] >> shift) & 0xff]++] = src[i];
		uint64_t *t = src;
		src = dst;
		dst = t;
	}
	/* after 8 passes the sorted data is back in a */
	free(tmp);
}

size_t spam_bayes_tokens(const struct spam_bayes *b, const struct spam_mime *m, uint64_t **h_out)
{
	size_t max = b->o.max_tokens_per_msg ? b->o.max_tokens_per_msg : 1;
	uint64_t *h = xmalloc(max * sizeof *h);
	size_t n = gen_features(&b->o, m, b->salt, NULL, NULL, h);
	sort_u64(h, n);
	*h_out = h;
	return n;
}

void spam_bayes_digest(const struct spam_bayes *b, const struct spam_mime *m,
		       uint8_t out[SPAM_BAYES_DIGEST_BYTES])
{
	static const char *const names[] = { "message-id", "date", "from" };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx)
		fatal("out of memory");
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, b->salt, sizeof b->salt);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const struct spam_hdr *h = spam_mime_header(m, names[i], 0);
		const char *v = h && h->raw ? h->raw : "";
		EVP_DigestUpdate(ctx, names[i], strlen(names[i]) + 1);
		EVP_DigestUpdate(ctx, v, strlen(v) + 1);
	}
	/* the text without white space: line ends (CRLF or LF) and the blank
	 * line an mbox puts between messages do not make another message */
	for (const char *p = m->text ? m->text : ""; *p;) {
		size_t run = strcspn(p, " \t\r\n");
		if (run)
			EVP_DigestUpdate(ctx, p, run);
		p += run;
		p += strspn(p, " \t\r\n");
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	memcpy(out, md, SPAM_BAYES_DIGEST_BYTES);
}

/* ----------------------------------------------------------- combiner */

double spam_bayes_robinson_f(uint32_t nspam_w, uint32_t nham_w, uint64_t nspam, uint64_t nham,
			     double s, double x)
{
	double ps = nspam ? (double)nspam_w / (double)nspam : 0;
	double ph = nham ? (double)nham_w / (double)nham : 0;
	if (ps > 1)
		ps = 1;
	if (ph > 1)
		ph = 1;
	if (ps + ph <= 0)
		return x;
	double p = ps / (ps + ph);
	double n = (double)nspam_w + (double)nham_w;
	return (s * x + n * p) / (s + n);
}

double spam_bayes_chi2q(double x2, unsigned v)
{
	if (v < 2 || x2 <= 0)
		return 1.0;
	/* sum_{i < v/2} e^-m m^i / i!, in logs so that large m does not underflow early */
	double m = x2 / 2, lm = log(m);
	double lterm = -m, lsum = lterm;
	for (unsigned i = 1; i < v / 2; i++) {
		lterm += lm - log((double)i);
		double hi = lsum > lterm ? lsum : lterm, lo = lsum > lterm ? lterm : lsum;
		lsum = hi + log1p(exp(lo - hi));
	}
	double r = exp(lsum);
	return r > 1 ? 1 : r;
}

double spam_bayes_combine(const double *f, size_t n, double *h_out, double *s_out)
{
	double lnf = 0, ln1f = 0;
	if (!n) {
		if (h_out)
			*h_out = 0.5;
		if (s_out)
			*s_out = 0.5;
		return 0.5;
	}
	for (size_t i = 0; i < n; i++) {
		double p = f[i];
		if (p < 1e-12)
			p = 1e-12;
		if (p > 1 - 1e-12)
			p = 1 - 1e-12;
		lnf += log(p);
		ln1f += log1p(-p);
	}
	double H = spam_bayes_chi2q(-2 * lnf, 2 * (unsigned)n);
	double S = spam_bayes_chi2q(-2 * ln1f, 2 * (unsigned)n);
	if (h_out)
		*h_out = H;
	if (s_out)
		*s_out = S;
	return (1 + H - S) / 2;
}

const struct spam_bayes_band *spam_bayes_band_for(const struct spam_bayes_opts *o, double prob)
{
	for (size_t i = 0; i < SPAM_BAYES_NBANDS; i++)
		if (prob < o->bands[i].hi)
			return &o->bands[i];
	return &o->bands[SPAM_BAYES_NBANDS - 1];
}

/* -------------------------------------------------------------- handle */

static int same_str(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

static int same_store(const struct spam_bayes_store_opts *a, const struct spam_bayes_store_opts *b)
{
	if (a->backend != b->backend)
		return 0;
	if (a->backend == SPAM_BAYES_LMDB)
		return same_str(a->db_path, b->db_path);
	return same_str(a->redis_server, b->redis_server) &&
	       same_str(a->redis_password, b->redis_password) && a->redis_db == b->redis_db &&
	       same_str(a->redis_prefix, b->redis_prefix) && a->redis_timeout_ms == b->redis_timeout_ms;
}

struct spam_bayes *spam_bayes_open_shared(const struct spam_bayes_opts *o, struct spam_bayes *prev,
					  char **err_out)
{
	struct spam_bayes *b = xcalloc(1, sizeof *b);
	b->o = *o;
	b->o.store.db_path = b->strs[0] = xstrdup(o->store.db_path ? o->store.db_path : "");
	b->o.store.redis_server = b->strs[1] = xstrdup(o->store.redis_server ? o->store.redis_server : "");
	b->o.store.redis_password = b->strs[2] = xstrdup(o->store.redis_password ? o->store.redis_password : "");
	b->o.store.redis_prefix = b->strs[3] = xstrdup(o->store.redis_prefix ? o->store.redis_prefix : "");
	b->o.store.new_salt = NULL;
	if (b->o.max_word_bytes > WORD_MAX)
		b->o.max_word_bytes = WORD_MAX;
	if (prev && same_store(&prev->o.store, &b->o.store)) {
		b->store = spam_bayes_store_ref(prev->store);
	} else {
		struct spam_bayes_store_opts so = b->o.store;
		so.new_salt = o->store.new_salt;
		b->store = spam_bayes_store_open(&so, err_out);
	}
	if (!b->store) {
		for (size_t i = 0; i < 4; i++)
			free(b->strs[i]);
		free(b);
		return NULL;
	}
	spam_bayes_store_salt(b->store, b->salt);
	return b;
}

struct spam_bayes *spam_bayes_open(const struct spam_bayes_opts *o, char **err_out)
{
	return spam_bayes_open_shared(o, NULL, err_out);
}

void spam_bayes_close(struct spam_bayes **bp)
{
	struct spam_bayes *b = *bp;
	if (!b)
		return;
	*bp = NULL;
	spam_bayes_store_close(&b->store);
	for (size_t i = 0; i < 4; i++)
		free(b->strs[i]);
	free(b);
}

const struct spam_bayes_opts *spam_bayes_get_opts(const struct spam_bayes *b)
{
	return &b->o;
}

struct spam_bayes_store *spam_bayes_get_store(struct spam_bayes *b)
{
	return b->store;
}

struct sig {
	double f, strength;
	uint64_t h;
	uint32_t atime;
};

static int cmp_sig(const void *a, const void *b)
{
	const struct sig *x = a, *y = b;
	if (x->strength != y->strength)
		return x->strength > y->strength ? -1 : 1;
	return x->h < y->h ? -1 : x->h > y->h;
}

/*
 * select_strongest - reorder sg so that its k first entries are the k
 * first in cmp_sig order (quickselect; cmp_sig is a total order, so the
 * set is the same whatever the input order).
 */
static void select_strongest(struct sig *sg, size_t n, size_t k)
{
	size_t lo = 0, hi = n;	/* the k-th lies in [lo, hi) */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		/* median of three as the pivot, moved to hi - 1 */
		size_t a = lo, b = mid, c = hi - 1, m;
		if (cmp_sig(&sg[a], &sg[b]) > 0) { size_t t = a; a = b; b = t; }
		if (cmp_sig(&sg[b], &sg[c]) > 0) { size_t t = b; b = c; c = t; }
		if (cmp_sig(&sg[a], &sg[b]) > 0) { size_t t = a; a = b; b = t; }
		m = b;
		struct sig t = sg[m];
		sg[m] = sg[hi - 1];
		sg[hi - 1] = t;
		size_t store = lo;
		for (size_t i = lo; i < hi - 1; i++)
			if (cmp_sig(&sg[i], &sg[hi - 1]) < 0) {
				struct sig x = sg[i];
				sg[i] = sg[store];
				sg[store++] = x;
			}
		t = sg[store];
		sg[store] = sg[hi - 1];
		sg[hi - 1] = t;
		/* sg[store] is in place: [lo, store) before it, (store, hi) after */
		if (store == k || store + 1 == k)
			return;
		if (store > k)
			hi = store;
		else
			lo = store + 1;
	}
}

int spam_bayes_classify(struct spam_bayes *b, const struct spam_mime *m, time_t now,
			struct spam_bayes_verdict *out, char **err_out)
{
	uint64_t *h;
	struct spam_bayes_totals t;
	const struct spam_bayes_opts *o = &b->o;

	memset(out, 0, sizeof *out);
	out->prob = 0.5;
	out->h = out->s = 0.5;
	if (!now)
		now = time(NULL);
	size_t n = spam_bayes_tokens(b, m, &h);
	struct spam_bayes_counts *c = xcalloc(n ? n : 1, sizeof *c);
	if (spam_bayes_store_lookup(b->store, h, n, c, &t, err_out) < 0) {
		free(h);
		free(c);
		return -1;
	}
	out->ntokens = n;
	out->nspam = t.nspam;
	out->nham = t.nham;
	if (t.nspam < o->min_spam || t.nham < o->min_ham || !t.nspam || !t.nham) {
		out->status = SPAM_BAYES_UNTRAINED;
		free(h);
		free(c);
		return 0;
	}
	struct sig *sg = xmalloc((n ? n : 1) * sizeof *sg);
	size_t ns = 0;
	for (size_t i = 0; i < n; i++) {
		if (!c[i].spam && !c[i].ham)
			continue;
		double f = spam_bayes_robinson_f(c[i].spam, c[i].ham, t.nspam, t.nham, o->robinson_s,
						 o->robinson_x);
		double st = fabs(f - 0.5);
		if (st < o->min_prob_strength)
			continue;
		sg[ns++] = (struct sig){ f, st, h[i], c[i].atime_s };
	}
	/* the strongest max_significant; fewer are combined in hash order */
	if (ns > o->max_significant) {
		select_strongest(sg, ns, o->max_significant);
		ns = o->max_significant;
		qsort(sg, ns, sizeof *sg, cmp_sig);
	}
	if (!ns) {
		out->status = SPAM_BAYES_NO_TOKENS;
	} else {
		double *f = xmalloc(ns * sizeof *f);
		for (size_t i = 0; i < ns; i++)
			f[i] = sg[i].f;
		out->prob = spam_bayes_combine(f, ns, &out->h, &out->s);
		free(f);
		const struct spam_bayes_band *band = spam_bayes_band_for(o, out->prob);
		out->status = SPAM_BAYES_CLASSIFIED;
		out->symbol = band->name;
		out->score = band->score;
		out->nused = ns;
	}
	int rc = 0;
	if (o->touch_on_classify && ns) {
		/* refresh last-seen at most once a day per token: few writes */
		size_t nt = 0;
		for (size_t i = 0; i < ns; i++)
			if ((long long)sg[i].atime + 86400 <= (long long)now)
				h[nt++] = sg[i].h;
		if (nt && spam_bayes_store_touch(b->store, h, nt, (uint32_t)now, err_out) < 0)
			rc = -1;
	}
	free(sg);
	free(h);
	free(c);
	return rc;
}

/* ------------------------------------------------------------ learning */

int spam_bayes_autolearn_op(const struct spam_bayes_opts *o, double score,
			    enum spam_bayes_op *op_out)
{
	if (o->autolearn_spam != SPAM_BAYES_OFF && score >= o->autolearn_spam) {
		*op_out = SPAM_BAYES_LEARN_SPAM;
		return 1;
	}
	if (o->autolearn_ham != SPAM_BAYES_OFF && score <= o->autolearn_ham) {
		*op_out = SPAM_BAYES_LEARN_HAM;
		return 1;
	}
	return 0;
}

const char *spam_bayes_result_name(enum spam_bayes_learn_result r)
{
	switch (r) {
	case SPAM_BAYES_LEARNED: return "learned";
	case SPAM_BAYES_MOVED: return "moved";
	case SPAM_BAYES_ALREADY: return "already";
	case SPAM_BAYES_FORGOTTEN: return "forgotten";
	case SPAM_BAYES_UNKNOWN: return "unknown";
	}
	return "?";
}

static int maybe_expire(struct spam_bayes *b, time_t now, char **err_out)
{
	struct spam_bayes_totals t;
	const struct spam_bayes_opts *o = &b->o;
	if (spam_bayes_store_totals(b->store, &t, err_out) < 0)
		return -1;
	int over = o->max_tokens && t.ntokens > o->max_tokens;
	int due = o->token_max_age_s > 0 && o->expire_period_s > 0 &&
		  (long long)now - t.last_expire_s >= o->expire_period_s;
	if (!over && !due)
		return 0;
	return spam_bayes_expire(b, now, NULL, err_out);
}

int spam_bayes_learn(struct spam_bayes *b, const struct spam_mime *m, enum spam_bayes_op op,
		     time_t now, enum spam_bayes_learn_result *res_out, char **err_out)
{
	uint8_t digest[SPAM_BAYES_DIGEST_BYTES];
	enum spam_bayes_class prev;
	uint64_t *h;

	if (!now)
		now = time(NULL);
	if (op != SPAM_BAYES_FORGET && maybe_expire(b, now, err_out) < 0)
		return -1;
	spam_bayes_digest(b, m, digest);
	size_t n = spam_bayes_tokens(b, m, &h);
	int rc = spam_bayes_store_learn(b->store, digest, op, h, n, (uint32_t)now, &prev, err_out);
	free(h);
	if (rc < 0)
		return -1;
	if (op == SPAM_BAYES_FORGET)
		*res_out = rc ? SPAM_BAYES_FORGOTTEN : SPAM_BAYES_UNKNOWN;
	else if (!rc)
		*res_out = SPAM_BAYES_ALREADY;
	else
		*res_out = prev == SPAM_BAYES_NONE ? SPAM_BAYES_LEARNED : SPAM_BAYES_MOVED;
	return 0;
}

int spam_bayes_learn_raw(struct spam_bayes *b, const char *msg, size_t len, enum spam_bayes_op op,
			 time_t now, enum spam_bayes_learn_result *res_out, char **err_out)
{
	if (len >= 5 && !memcmp(msg, "From ", 5)) {
		const char *nl = memchr(msg, '\n', len);
		size_t skip = nl ? (size_t)(nl + 1 - msg) : len;
		msg += skip;
		len -= skip;
	}
	struct spam_mime *m = spam_mime_parse(msg, len, &b->o.limits);
	int rc = spam_bayes_learn(b, m, op, now, res_out, err_out);
	spam_mime_free(&m);
	return rc;
}

/* ------------------------------------------------------------- expiry */

struct exp_ent {
	uint32_t atime;
	uint64_t h;
};

struct exp_scan {
	struct exp_ent *keep;
	size_t nkeep, capkeep;
	uint64_t *drop;
	size_t ndrop, capdrop;
	long long cutoff;	/* atime below this is dropped; < 0: none */
};

static int exp_each(void *arg, uint64_t h, const struct spam_bayes_counts *c)
{
	struct exp_scan *x = arg;
	if ((!c->spam && !c->ham) || (long long)c->atime_s < x->cutoff) {
		if (x->ndrop == x->capdrop) {
			x->capdrop = x->capdrop ? 2 * x->capdrop : 1024;
			x->drop = xrealloc(x->drop, x->capdrop * sizeof *x->drop);
		}
		x->drop[x->ndrop++] = h;
		return 0;
	}
	if (x->nkeep == x->capkeep) {
		x->capkeep = x->capkeep ? 2 * x->capkeep : 1024;
		x->keep = xrealloc(x->keep, x->capkeep * sizeof *x->keep);
	}
	x->keep[x->nkeep++] = (struct exp_ent){ c->atime_s, h };
	return 0;
}

static int cmp_exp(const void *a, const void *b)
{
	const struct exp_ent *x = a, *y = b;
	if (x->atime != y->atime)
		return x->atime < y->atime ? -1 : 1;
	return x->h < y->h ? -1 : x->h > y->h;
}

int spam_bayes_expire(struct spam_bayes *b, time_t now, uint64_t *removed_out, char **err_out)
{
	struct exp_scan x;
	const struct spam_bayes_opts *o = &b->o;

	if (!now)
		now = time(NULL);
	memset(&x, 0, sizeof x);
	x.cutoff = o->token_max_age_s > 0 ? (long long)now - o->token_max_age_s : -1;
	if (spam_bayes_store_scan(b->store, exp_each, &x, err_out) < 0) {
		free(x.keep);
		free(x.drop);
		return -1;
	}
	if (o->max_tokens && x.nkeep > o->max_tokens) {
		uint64_t target = o->max_tokens - o->max_tokens / 4;
		qsort(x.keep, x.nkeep, sizeof *x.keep, cmp_exp);
		size_t excess = x.nkeep - (size_t)target;
		x.drop = xrealloc(x.drop, (x.ndrop + excess + 1) * sizeof *x.drop);
		for (size_t i = 0; i < excess; i++)
			x.drop[x.ndrop++] = x.keep[i].h;
	}
	int rc = spam_bayes_store_delete(b->store, x.drop, x.ndrop, (int64_t)now, err_out);
	if (rc == 0 && removed_out)
		*removed_out = x.ndrop;
	free(x.keep);
	free(x.drop);
	return rc;
}
