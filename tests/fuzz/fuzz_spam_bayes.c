/*
 * fuzz_spam_bayes: untrusted bytes into sluice-spam's Bayes path: the
 * mbox splitter, then each message through spam_mime and the tokenizer
 * (default caps and tiny ones, pairs off and wide), and for inputs whose
 * first byte is odd: learn, classify and forget in an LMDB store in a
 * temp file (the store must stay consistent: its token count equals the
 * records). Nothing may crash, leak or hang.
 *
 * Needs GMime/libxml2 flags and the spam library (see docs/SPAM-BAYES.md,
 * the same standalone command as fuzz_spam_mime in docs/SPAM.md); without
 * the GMime headers it builds as a stub that says so, so `make fuzz`
 * keeps going.
 */
#if __has_include(<gmime/gmime.h>)
#include "milters/spam/spam_bayes.h"
#include "milters/spam/spam_bayes_learn.h"
#include "milters/spam/spam_mime.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct spam_bayes *bayes;
static char dbpath[256];

static void cleanup(void)
{
	spam_bayes_close(&bayes);
	unlink(dbpath);
	char lock[300];
	snprintf(lock, sizeof lock, "%s-lock", dbpath);
	unlink(lock);
}

static void setup(void)
{
	struct spam_bayes_opts o;
	char *err = NULL;
	const char *t = getenv("TMPDIR");
	spam_mime_init();
	snprintf(dbpath, sizeof dbpath, "%s/fuzz_spam_bayes.%d.lmdb", t && *t ? t : "/tmp", (int)getpid());
	spam_bayes_opts_default(&o);
	o.store.db_path = dbpath;
	o.store.db_max_bytes = (size_t)1 << 30;
	o.min_spam = o.min_ham = 0;
	o.max_tokens = 20000;	/* expiry runs often */
	bayes = spam_bayes_open(&o, &err);
	if (!bayes) {
		fprintf(stderr, "fuzz_spam_bayes: %s\n", err);
		abort();
	}
	atexit(cleanup);
}

static void count_feat(void *arg, const char *f, size_t len)
{
	(void)f;
	if (!len)
		abort();
	(*(size_t *)arg)++;
}

static void one_message(const char *msg, size_t len, int store)
{
	struct spam_mime *m = spam_mime_parse(msg, len, NULL);
	struct spam_bayes_opts o;
	size_t n = 0;

	spam_bayes_opts_default(&o);
	if (spam_bayes_features(&o, m, count_feat, &n) != n || n > o.max_tokens_per_msg)
		abort();
	o.max_tokens_per_msg = 7;
	o.max_word_bytes = 3;
	o.osb_window = 8;
	n = 0;
	if (spam_bayes_features(&o, m, count_feat, &n) != n || n > 7)
		abort();
	o.osb_window = 1;
	spam_bayes_features(&o, m, NULL, NULL);
	if (store) {
		enum spam_bayes_learn_result r;
		struct spam_bayes_verdict v;
		char *err = NULL;
		if (spam_bayes_learn(bayes, m, (len & 1) ? SPAM_BAYES_LEARN_SPAM : SPAM_BAYES_LEARN_HAM, 0,
				     &r, &err) < 0 ||
		    spam_bayes_classify(bayes, m, 0, &v, &err) < 0) {
			fprintf(stderr, "fuzz_spam_bayes: %s\n", err);
			abort();
		}
		if (!(v.prob >= 0 && v.prob <= 1))
			abort();
		if ((len & 2) && spam_bayes_learn(bayes, m, SPAM_BAYES_FORGET, 0, &r, &err) < 0)
			abort();
	}
	spam_mime_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!bayes)
		setup();
	const char *text = (const char *)data;
	int store = size && (data[0] & 1);
	size_t pos = 0, len, nmsg = 0;
	const char *msg;

	if (size >= 5 && !memcmp(text, "From ", 5)) {
		while (spam_bayes_mbox_next(text, size, &pos, &msg, &len)) {
			if (msg < text || msg + len > text + size || pos > size)
				abort();
			if (nmsg++ < 8)
				one_message(msg, len, store);
		}
	} else {
		one_message(text, size, store);
	}
	return 0;
}
#else
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int said;
	(void)data;
	(void)size;
	if (!said++)
		fprintf(stderr, "fuzz_spam_bayes: built without GMime flags: a stub (docs/SPAM-BAYES.md)\n");
	return 0;
}
#endif
