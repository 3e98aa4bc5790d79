/*
 * spam_msg: one message through sluice-spam, without sockets.
 * Owns: collecting the header and body the milter hands over (up to
 * spam_max_scan_size; the rest is counted, not kept), the decisions around
 * scanning (outbound mail not scanned unless spam_scan_outbound, the
 * allow/block tables), scoring, the action from the thresholds, the
 * headers SpamAssassin's readers expect (X-Spam-Flag, X-Spam-Level,
 * X-Spam-Status) plus X-Spam-Symbols, removal of X-Spam-* headers that came
 * from outside, the subject rewrite, the reply, and the one log line.
 * Leaves: libmilter calls to main.c; it only applies *out.
 */
#ifndef SLUICE_SPAM_MSG_H
#define SLUICE_SPAM_MSG_H

#include <stddef.h>

#include "milters/spam/spam_scan.h"

struct spam_cfg;

enum spam_action {
	SPAM_ACT_NONE, SPAM_ACT_ADD_HEADER, SPAM_ACT_REWRITE_SUBJECT, SPAM_ACT_GREYLIST,
	SPAM_ACT_REJECT,
};
/* spam_action_name - "no action", "add header", "rewrite subject", "greylist", "reject". */
const char *spam_action_name(enum spam_action a);
/* spam_action_for - the action the thresholds of cfg give score. */
enum spam_action spam_action_for(const struct spam_cfg *cfg, double score);

/* What the MTA told us about the connection and the transaction. */
struct spam_prefetch;

struct spam_msg_env {
	const char *qid, *client_ip, *client_name, *helo, *env_from, *auth;
	/* the connection's look-ups started at connect (spam_msg_prefetch), or
	 * NULL: spam_msg_new takes *prefetch (and sets it to NULL) */
	struct spam_prefetch **prefetch;
};

/*
 * spam_msg_prefetch - at connect the client address is known, so its
 * IP-list look-ups (spam_dns_lists, kind ip) go out at once and answer
 * during HELO, STARTTLS and MAIL. NULL when there is nothing to ask: no
 * IP lists, a client in spam_trusted_networks, or one in $mynetworks
 * while outbound mail is not scanned. The connection keeps the result
 * until its first message takes it (spam_msg_env.prefetch); a message of
 * another configuration generation (a reload in between) or one that is
 * not scanned drops it. cfg is referenced until the prefetch is freed.
 */
struct spam_prefetch *spam_msg_prefetch(struct spam_cfg *cfg, const char *client_ip);
/* spam_prefetch_free - drop unused look-ups (NULL and *p == NULL allowed). */
void spam_prefetch_free(struct spam_prefetch **p);

struct spam_hdr_del {
	char *name;
	int index;		/* 1-based among headers of that name (smfi_chgheader) */
};

struct spam_outcome {
	enum spam_action action;
	int scanned;		/* 0: outbound or allow-listed, nothing added */
	double score, required;
	struct spam_result result;	/* hits (borrowed rule pointers: keep cfg alive) */
	struct spam_hdr_del *del;	/* X-Spam-* headers from outside */
	size_t ndel;
	char *flag, *level, *status, *symbols;	/* header values (no leading space); flag NULL unless spam */
	char *subject;		/* new Subject value, or NULL */
	int subject_index;	/* 1 = change the existing one, 0 = add */
	const char *code, *xcode, *text;	/* reject/greylist reply, borrowed from cfg */
	const char *autolearn;	/* "no", "spam" or "ham" (X-Spam-Status autolearn=) */
	char *log;		/* "milter=spam action=... score=... symbols=..." */
	char *warn;		/* NULL, or a warning to log on its own line (a DNS list refuses us) */
};
void spam_outcome_clear(struct spam_outcome *o);

struct spam_msg;

/* spam_msg_new - start a message (cfg referenced until spam_msg_free). */
struct spam_msg *spam_msg_new(struct spam_cfg *cfg, const struct spam_msg_env *env);
void spam_msg_set_qid(struct spam_msg *m, const char *qid);
/* spam_msg_header - one header; value as the MTA sent it (leading space or not). */
void spam_msg_header(struct spam_msg *m, const char *name, const char *value);
void spam_msg_eoh(struct spam_msg *m);
void spam_msg_body(struct spam_msg *m, const unsigned char *buf, size_t len);
/* spam_msg_eom - score and decide; *out filled (spam_outcome_clear), valid while m lives. */
void spam_msg_eom(struct spam_msg *m, struct spam_outcome *out);
void spam_msg_free(struct spam_msg **m);

/*
 * spam_check_buffer - score a whole message in memory (sluice-spam check):
 * the same decisions as the milter path, no env unless given.
 */
void spam_check_buffer(struct spam_cfg *cfg, const char *msg, size_t len,
		       const struct spam_msg_env *env, struct spam_outcome *out);

/* spam_outcome_json - {"file": ..., "score": ..., "required": ..., "action": ..., "symbols": {...}}; caller frees. */
char *spam_outcome_json(const char *file, const struct spam_outcome *o);

#endif
