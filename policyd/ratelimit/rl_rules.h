/*
 * rl_rules: sluice-ratelimit's rule file, the postfwd rule syntax subset of
 * docs/RATELIMIT.md. Owns: reading the file into rules (logical lines,
 * items, operators, compiled patterns, CIDR lists, table references,
 * actions and limit specs), errors as "file:line: reason", and whether one
 * rule's items match a request.
 * Leaves: what attributes are (the caller's getter, rl_req for derived
 * ones), counting and state (rl_engine, rl_store), replies (rl_engine).
 *
 * Syntax (postfwd 1.x):
 *   id=NAME; item OP value; ...; action=ACTION
 * One rule per logical line. A line starting with white space continues
 * the previous one (joined with ';' when that one does not end in ';', as
 * postfwd does); a trailing '\' joins the next line. '#' at the start of a
 * line or after white space starts a comment.
 * Operators (postfwd's meaning):
 *   ==  case-insensitive equality        !=  its negation
 *   =~  PCRE2, case-insensitive, /re/ delimiters optional; !~ its negation
 *   <= (=<), >= (=>), <, >, !< (not <=), !> (not >=): numeric
 *   =   the item's default: client_address (and *_address, client_net):
 *       CIDR list ("192.0.2.0/24, 10.0.0.1"); size, recipient_count,
 *       encryption_keysize: numeric >=; client_country, client_asn
 *       (sluice's GeoIP attributes, codes): exact like ==; everything
 *       else: PCRE2 like =~
 * A value "!!X" negates the comparison with X. "$$name" compares with the
 * request's attribute name (== != =); "$$type:name" looks the attribute up
 * in a Postfix table (conf/table.h) and matches when it is found.
 * Items of one attribute with positive operators are OR'ed (postfwd);
 * negated ones (!=, !~, !<, !>, !!) are AND'ed; different attributes are
 * AND'ed. A missing attribute is "" (numeric 0); "" never equals anything.
 * Actions: access(5) actions (OK, DUNNO, REJECT [text], DEFER [text],
 * DEFER_IF_PERMIT text, DEFER_IF_REJECT text, 4NN/5NN text, HOLD, DISCARD,
 * FILTER, PREPEND, REDIRECT, BCC, WARN, INFO), "greylist", or a limit:
 * rate(KEY/N/SECONDS/ACTION), rcpt(KEY/N/SECONDS/ACTION),
 * size(KEY/BYTES/SECONDS/ACTION), KEY = attribute, a,b combination, or
 * "global". Other postfwd actions (jump, set, score, wait, note, ...) and
 * items (rbl, date, ...) are errors that say so.
 */
#ifndef SLUICE_RL_RULES_H
#define SLUICE_RL_RULES_H

#include <stddef.h>

#define RL_RULES_MAX_FILE_BYTES (16 * 1024 * 1024)
#define RL_RULES_MAX_KEYS 8
#define RL_RULES_MAX_ID_BYTES 64

enum rl_kind {
	RL_KIND_ACCESS,		/* rule->action is the reply */
	RL_KIND_RATE,		/* messages */
	RL_KIND_RCPT,		/* recipients */
	RL_KIND_SIZE,		/* bytes */
	RL_KIND_GREYLIST,
};

struct rl_limit {
	const char *keys[RL_RULES_MAX_KEYS];	/* attribute names; "global" alone = one counter */
	size_t nkeys;
	long long max;		/* messages, recipients or bytes per window */
	long long window_s;
};

struct rl_rule {
	const char *id;		/* id= or "line<N>" */
	const char *file;	/* for messages */
	int lineno;		/* where the rule starts */
	enum rl_kind kind;
	const char *action;	/* ACCESS: the action; limits: the over-limit action; GREYLIST: NULL */
	struct rl_limit limit;	/* limits only */
	/* private */
	struct rl_item *items;
	size_t nitems;
};

struct rl_rules;

/*
 * rl_rules_load - read and check the rule file path. NULL with *err_out =
 * "path:line: reason" (caller frees). Tables named by $$type:name are
 * opened now (errors name the rule's line).
 */
struct rl_rules *rl_rules_load(const char *path, char **err_out);
/* rl_rules_parse - the same from memory; name is used in messages. */
struct rl_rules *rl_rules_parse(const char *text, size_t len, const char *name, char **err_out);
void rl_rules_free(struct rl_rules **r);

size_t rl_rules_count(const struct rl_rules *r);
/* rl_rules_get - rule i (0-based); borrowed until rl_rules_free. */
const struct rl_rule *rl_rules_get(const struct rl_rules *r, size_t i);

/*
 * rl_attr_fn - the value of a request attribute (derived ones included),
 * or NULL when the request has none. Borrowed for the duration of a match.
 */
typedef const char *(*rl_attr_fn)(void *ctx, const char *name);

/* rl_rule_matches - 1 when every item of rule matches the request, else 0. */
int rl_rule_matches(struct rl_rules *rs, const struct rl_rule *rule, rl_attr_fn get, void *ctx);

/* rl_action_is_refusal - REJECT, DEFER*, 4NN, 5NN (the message is not taken). */
int rl_action_is_refusal(const char *action);
/* rl_action_takes_text - actions after which text may follow (reply text). */
int rl_action_takes_text(const char *action);

#endif
