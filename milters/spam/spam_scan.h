/*
 * spam_scan: one message against a compiled rule set.
 * Owns: what each rule kind sees (SpamAssassin's views: header values
 * RFC 2047-decoded unless :raw, one line per instance; body = the Subject
 * then the rendered text paragraph by paragraph, each paragraph on one
 * line; rawbody = decoded text parts line by line, HTML unrendered; uri =
 * each normalised URL and, when it differs, the URL as written; full = the
 * scanned raw message), the pseudo headers
 * (ALL, ToCc, MESSAGEID, EnvelopeFrom, X-Spam-Relays-{Trusted,Untrusted,
 * Internal,External} in SpamAssassin's form, and ours: X-Sluice-Mime,
 * X-Sluice-Attachments, X-Sluice-Date), running Vectorscan databases and
 * PCRE2 regexes, metas in dependency order, and the sum of scores.
 * Leaves: thresholds and actions to spam_action, the message to spam_mime.
 * Thread-safe: the rule set is shared read-only; scratch is per thread.
 */
#ifndef SLUICE_SPAM_SCAN_H
#define SLUICE_SPAM_SCAN_H

#include <stddef.h>
#include <time.h>

#include "milters/spam/spam_mime.h"
#include "milters/spam/spam_rules.h"

struct spam_net;

/* What the MTA told us; every field may be NULL. */
struct spam_env {
	const char *client_ip;
	const char *client_name;	/* reverse DNS name, or NULL/"unknown" */
	const char *helo;
	const char *env_from;		/* without <> */
	const char *auth;		/* SASL login name */
	const char *qid;
	const struct spam_net *trusted;	/* spam_trusted_networks */
	time_t now;			/* 0 = time(NULL); tests fix it */
};

struct spam_hit {
	const char *name;	/* the rule's (borrowed from the rule set) or the result's own */
	const char *describe;	/* NULL if none */
	double score;
};

struct spam_result {
	double score;
	struct spam_hit *hits;	/* reported rules and other symbols that hit, in name order */
	size_t nhits, cap;
	char **owned;		/* names of symbols that are not rules (GEO_CC_GB, ...) */
	size_t nowned;
};

/*
 * spam_result_add - a symbol that is not a rule (GeoIP, DNS lists, ...):
 * name and describe are copied; score is added to the total; order kept.
 */
void spam_result_add(struct spam_result *r, const char *name, double score, const char *describe);

/*
 * spam_scan - evaluate every active rule of rs on m. *out is filled (free
 * with spam_result_clear); rs must stay alive as long as out.
 */
void spam_scan(const struct spam_rules *rs, const struct spam_mime *m, const struct spam_env *env,
	       struct spam_result *out);
void spam_result_clear(struct spam_result *r);

/*
 * spam_scan_first_untrusted - the address whose reputation counts: the
 * client unless it is in env->trusted, else the first Received hop (top
 * down) outside env->trusted. NULL if none. Borrowed from env or m.
 */
const char *spam_scan_first_untrusted(const struct spam_mime *m, const struct spam_env *env);

/*
 * spam_scan_header_value - the text a header rule on field (with
 * SPAM_HDR_* mods) sees; new string, NULL when the header is absent.
 * Exposed for tests and `sluice-spam check`.
 */
char *spam_scan_header_value(const struct spam_mime *m, const struct spam_env *env,
			     const char *field, unsigned mods);

#endif
