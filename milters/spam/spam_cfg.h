/*
 * spam_cfg: one generation of sluice-spam's configuration, built from the
 * spam_* keys (conf/params_spam.c): the compiled rule set, thresholds and
 * replies, trusted networks and $mynetworks, the allow/block tables, and
 * the MIME limits.
 * Owns: validation (every error names file:line; a rule file error names
 * the rule file and line) and reference counting, so SIGHUP swaps
 * generations while messages in flight finish with theirs.
 * Leaves: per-message work to spam_msg, sockets to main.c.
 */
#ifndef SLUICE_SPAM_CFG_H
#define SLUICE_SPAM_CFG_H

#include <pthread.h>

#include "milters/spam/spam_bayes.h"
#include "milters/spam/spam_mime.h"

struct conf;
struct spam_rules;
struct spam_ar;
struct spam_dnsl;
struct spam_geo;
struct spam_net;
struct table;

#define SPAM_SCORE_OFF 1e300	/* a threshold set to "off" */

struct spam_reply {
	char code[4];
	char xcode[16];
	char *text;
};

struct spam_cfg {
	struct spam_rules *rules;
	struct spam_mime_limits limits;
	double add_header_score, rewrite_subject_score, greylist_score, reject_score;
	char *subject_prefix;
	struct spam_reply reject_reply, greylist_reply;
	struct spam_net *trusted, *mynetworks;
	int scan_outbound;
	int on_error_tempfail;
	struct table *allow_from, *block_from;	/* NULL when unset */
	struct spam_geo *geo;			/* GeoIP/ASN (never NULL; may have no databases) */
	struct spam_ar *ar;			/* Authentication-Results symbols */
	struct spam_dnsl *dnsl;			/* DNS lists (never NULL; may have no lists) */
	char *dnsl_status;			/* the start-up test of the lists, for the log; or NULL */
	int bayes_enable;			/* spam_bayes_enable */
	struct spam_bayes_opts bayes_opts;	/* validated at load; strings in bayes_str */
	char *bayes_str[4];
	struct spam_bayes *bayes;		/* NULL until spam_cfg_open_bayes (or disabled) */
	pthread_mutex_t table_lock;		/* table lookups return borrowed values */
	int refs;				/* atomic */
};

/*
 * spam_cfg_new - a generation from loaded conf (refs = 1). Returns NULL
 * with *err_out (caller frees).
 */
struct spam_cfg *spam_cfg_new(const struct conf *c, char **err_out);
struct spam_cfg *spam_cfg_ref(struct spam_cfg *cfg);
/* spam_cfg_unref - frees on the last reference; sets *cfg NULL. */
void spam_cfg_unref(struct spam_cfg **cfg);

/*
 * spam_cfg_open_bayes - open the Bayes store of cfg (spam_bayes_enable =
 * no: nothing to do). After the daemon forked and dropped privileges (an
 * LMDB environment must not cross a fork); prev (may be NULL) is the
 * generation before, whose open store is shared when it is the same.
 * 0, or -1 with *err_out (caller frees).
 */
int spam_cfg_open_bayes(struct spam_cfg *cfg, struct spam_cfg *prev, char **err_out);

/* spam_cfg_sender_listed - 1 if addr is in t (access(5) order); thread-safe. */
int spam_cfg_sender_listed(struct spam_cfg *cfg, struct table *t, const char *addr);

/*
 * spam_cfg_parse_score - "6", "-1.5" or "off" (SPAM_SCORE_OFF). 0 or -1
 * with *err_out (static).
 */
int spam_cfg_parse_score(const char *s, double *out, const char **err_out);

/*
 * spam_cfg_milter_conn - spam_socket in libmilter's form (as dkim_socket):
 * "inet:host:port" -> "inet:port@host", "[v6]" -> inet6, unix:/local:
 * and Sendmail's forms kept. New string, or NULL with *err_out (static).
 */
char *spam_cfg_milter_conn(const char *spec, const char **err_out);

#endif
