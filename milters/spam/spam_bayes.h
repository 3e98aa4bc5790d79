/*
 * spam_bayes: our Bayes classifier.
 * Owns: the tokenizer (words of the rendered text, header words with a
 * prefix per header, header names, MIME part types, URL hosts, domains and
 * path words, orthogonal sparse bigrams of body words; capped word length
 * and tokens per message; cheap Unicode lower-casing of UTF-8), hashing of
 * tokens with the database's salt (SipHash-2-4, 64 bits), Gary Robinson's
 * f(w) with s and x, Fisher's chi-square combining of the most significant
 * tokens into the indicator I = (1 + H - S) / 2 in [0, 1], the BAYES_xx
 * bands and their scores, the min_spam / min_ham gate, learning and
 * forgetting (a message is known by a salted digest, so learning it twice
 * counts once, and learning it as the other class moves it), the optional
 * autolearn decision, and token expiry (age, then count).
 * Leaves: storage to spam_bayes_store, MIME to spam_mime, reading files,
 * Maildirs and mboxes to spam_bayes_learn, the milter and the command line
 * to main.c.
 * Thread-safe: one struct spam_bayes may be shared by every milter thread.
 */
#ifndef SLUICE_SPAM_BAYES_H
#define SLUICE_SPAM_BAYES_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "milters/spam/spam_bayes_store.h"
#include "milters/spam/spam_mime.h"

struct conf;

/* The bands, low to high; prob in [lo, hi) (the last one includes 1). */
#define SPAM_BAYES_NBANDS 10
struct spam_bayes_band {
	const char *name;	/* "BAYES_00" ... "BAYES_99", "BAYES_999" */
	double lo, hi;
	double score;
};

struct spam_bayes_opts {
	struct spam_bayes_store_opts store;
	unsigned min_spam, min_ham;	/* classify only after this many were learned (200, 200) */
	double robinson_s;		/* strength of the prior x (0.45) */
	double robinson_x;		/* the prior: f(w) of a token with no counts (0.5; such tokens are not combined) */
	double min_prob_strength;	/* |f(w) - 0.5| below this is ignored (0.10) */
	unsigned max_significant;	/* tokens combined (300) */
	size_t max_tokens_per_msg;	/* distinct tokens per message (3000) */
	size_t max_word_bytes;		/* longer words become "sk:" tokens (40) */
	size_t max_text_bytes;		/* text of a message tokenized (300 KiB) */
	unsigned osb_window;		/* words paired with the next osb_window-1 (3; 1 = none) */
	uint64_t max_tokens;		/* store bound; expiry down to 3/4 of it (1,000,000) */
	long long token_max_age_s;	/* not seen for this long -> expired (0 = never; 180 d) */
	long long expire_period_s;	/* automatic expiry at most this often (12 h) */
	int touch_on_classify;		/* classification refreshes atime of used tokens (1) */
	double autolearn_spam;		/* score >= this learns spam (SPAM_BAYES_OFF) */
	double autolearn_ham;		/* score <= this learns ham (SPAM_BAYES_OFF) */
	struct spam_mime_limits limits;	/* for spam_bayes_learn_raw */
	struct spam_bayes_band bands[SPAM_BAYES_NBANDS];
};
#define SPAM_BAYES_OFF (-1e300)

/* spam_bayes_opts_default - the defaults above; LMDB at "bayes.lmdb". */
void spam_bayes_opts_default(struct spam_bayes_opts *o);

/*
 * spam_bayes_opts_from_conf - o from the spam_bayes_* parameters (see
 * docs/SPAM-BAYES.md; they must be in the daemon's parameter table).
 * Strings are borrowed from c. 0, or -1 with *err_out (caller frees).
 */
int spam_bayes_opts_from_conf(const struct conf *c, struct spam_bayes_opts *o, char **err_out);

/*
 * spam_bayes_parse_scores - "BAYES_00:-1.9, BAYES_99:3.5" (commas or
 * white space) -> scores of o's bands. 0, or -1 with *err_out (caller frees).
 */
int spam_bayes_parse_scores(struct spam_bayes_opts *o, const char *text, char **err_out);

struct spam_bayes;

/*
 * spam_bayes_open - a handle on the store of o (o and its strings are
 * copied). NULL with *err_out (caller frees).
 */
struct spam_bayes *spam_bayes_open(const struct spam_bayes_opts *o, char **err_out);
/*
 * spam_bayes_open_shared - the same for a new configuration generation:
 * when prev (may be NULL) uses the same store (backend, file or server,
 * password, db, prefix, time-out), the new handle shares prev's open store
 * (LMDB must not open one file twice in a process); other options (gate,
 * scores, limits, expiry) come from o. Handles are closed independently.
 */
struct spam_bayes *spam_bayes_open_shared(const struct spam_bayes_opts *o, struct spam_bayes *prev,
					  char **err_out);
/* spam_bayes_close - the last handle on a store flushes and closes it; NULL ignored; *b = NULL. */
void spam_bayes_close(struct spam_bayes **b);
/* spam_bayes_get_opts - the options in use (borrowed). */
const struct spam_bayes_opts *spam_bayes_get_opts(const struct spam_bayes *b);
/* spam_bayes_get_store - the store (borrowed; for tests and `learn` statistics). */
struct spam_bayes_store *spam_bayes_get_store(struct spam_bayes *b);

/*
 * spam_bayes_features - call fn(arg, feature, len) for each distinct
 * feature of m in order (headers, parts, URLs, body words and pairs),
 * at most o->max_tokens_per_msg. Features are text such as "hello",
 * "S:free", "F:@example.com", "U:www.example.com", "hello\x01world"
 * (pair at distance 1; \x02 distance 2 ...); valid during the call only.
 * Returns the number of features.
 */
typedef void (*spam_bayes_feature_fn)(void *arg, const char *feat, size_t len);
size_t spam_bayes_features(const struct spam_bayes_opts *o, const struct spam_mime *m,
			   spam_bayes_feature_fn fn, void *arg);

/*
 * spam_bayes_tokens - the hashed features of m, distinct, sorted
 * ascending: *h_out (caller frees), returns the count.
 */
size_t spam_bayes_tokens(const struct spam_bayes *b, const struct spam_mime *m, uint64_t **h_out);

/* spam_bayes_siphash - SipHash-2-4 (64 bits) of data with the 16-byte key. */
uint64_t spam_bayes_siphash(const uint8_t key[16], const void *data, size_t len);

/*
 * spam_bayes_digest - the salted digest that identifies m in the seen
 * database: SHA-256 over the salt, Message-ID, Date, From and the
 * decoded text without its white space, first 16 bytes. Headers added on
 * the way (Received, X-Spam-*), a rewritten Subject, line ends and the
 * mbox "From " line do not change it.
 */
void spam_bayes_digest(const struct spam_bayes *b, const struct spam_mime *m,
		       uint8_t out[SPAM_BAYES_DIGEST_BYTES]);

/* The combiner, exposed for tests. */
/* spam_bayes_robinson_f - f(w) = (s*x + n*p(w)) / (s + n), p(w) from the rates. */
double spam_bayes_robinson_f(uint32_t nspam_w, uint32_t nham_w, uint64_t nspam, uint64_t nham,
			     double s, double x);
/* spam_bayes_chi2q - P(chi-square with v (even) degrees of freedom >= x2). */
double spam_bayes_chi2q(double x2, unsigned v);
/*
 * spam_bayes_combine - Fisher/Robinson: H = chi2q(-2 sum ln f, 2n),
 * S = chi2q(-2 sum ln(1 - f), 2n), returns I = (1 + H - S) / 2 (0.5 for
 * n = 0). *h_out, *s_out may be NULL.
 */
double spam_bayes_combine(const double *f, size_t n, double *h_out, double *s_out);
/* spam_bayes_band_for - the band of prob (borrowed from o). */
const struct spam_bayes_band *spam_bayes_band_for(const struct spam_bayes_opts *o, double prob);

enum spam_bayes_status {
	SPAM_BAYES_CLASSIFIED,	/* prob, symbol, score valid */
	SPAM_BAYES_UNTRAINED,	/* fewer than min_spam / min_ham learned: no symbol */
	SPAM_BAYES_NO_TOKENS,	/* no token strong enough: BAYES_50-like, no symbol */
};

struct spam_bayes_verdict {
	enum spam_bayes_status status;
	double prob;		/* I in [0, 1]; 0.5 unless CLASSIFIED */
	double h, s;		/* the two chi-square tails */
	const char *symbol;	/* "BAYES_99" (borrowed from the options), NULL unless CLASSIFIED */
	double score;		/* the band's score, 0 unless CLASSIFIED */
	size_t ntokens;		/* distinct tokens of the message */
	size_t nused;		/* tokens combined */
	uint64_t nspam, nham;	/* learned so far */
};

/*
 * spam_bayes_classify - m against the store. now: for touching tokens (0 =
 * time(NULL)). 0, or -1 with *err_out (caller frees; the store failed:
 * score the message without Bayes).
 */
int spam_bayes_classify(struct spam_bayes *b, const struct spam_mime *m, time_t now,
			struct spam_bayes_verdict *out, char **err_out);

enum spam_bayes_learn_result {
	SPAM_BAYES_LEARNED,	/* counted now */
	SPAM_BAYES_MOVED,	/* had been learned as the other class, moved */
	SPAM_BAYES_ALREADY,	/* already learned as that class: nothing changed */
	SPAM_BAYES_FORGOTTEN,	/* forget: removed */
	SPAM_BAYES_UNKNOWN,	/* forget: it had not been learned */
};

/*
 * spam_bayes_learn - learn m as spam or ham, or forget it. now: atime of
 * the tokens (0 = time(NULL)). May run an expiry first (expire_period_s
 * passed, or more than max_tokens stored). 0 with *res_out, or -1 with
 * *err_out (caller frees).
 */
int spam_bayes_learn(struct spam_bayes *b, const struct spam_mime *m, enum spam_bayes_op op,
		     time_t now, enum spam_bayes_learn_result *res_out, char **err_out);
/*
 * spam_bayes_learn_raw - the same from message bytes (an mbox "From "
 * line first is skipped), parsed with o->limits.
 */
int spam_bayes_learn_raw(struct spam_bayes *b, const char *msg, size_t len, enum spam_bayes_op op,
			 time_t now, enum spam_bayes_learn_result *res_out, char **err_out);

/*
 * spam_bayes_expire - drop tokens not seen for token_max_age_s, then, if
 * more than max_tokens remain, the least recently seen ones down to 3/4 of
 * max_tokens (ties: lower hash first, so both backends drop the same).
 * *removed_out may be NULL. 0, or -1 with *err_out (caller frees).
 */
int spam_bayes_expire(struct spam_bayes *b, time_t now, uint64_t *removed_out, char **err_out);

/*
 * spam_bayes_autolearn_op - 1 with *op_out when score (the message's total
 * without the Bayes symbol) passes an autolearn threshold, else 0.
 */
int spam_bayes_autolearn_op(const struct spam_bayes_opts *o, double score,
			    enum spam_bayes_op *op_out);

/* spam_bayes_result_name - "learned", "moved", "already", "forgotten", "unknown". */
const char *spam_bayes_result_name(enum spam_bayes_learn_result r);

#endif
