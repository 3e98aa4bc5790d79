/*
 * report_stats: events -> the numbers of `sluice report` (issue 13).
 * Owns the counting rules (pflogsumm's for the grand totals and the
 * per-sender/recipient tables, so the two agree on the same log), the
 * per-queue-id state that links a message's lines (freed at "removed", or
 * when the log's clock is RS_EXPIRE_S past its last line), bounded delay
 * histograms for percentiles, and the JSON document.
 * Leaves reading lines to report_input/report_parse and layout to report.c.
 * Memory: proportional to the distinct keys reported (senders, recipients,
 * domains, clients, reasons, days) plus the messages in flight; never to
 * the number of lines.
 */
#ifndef SLUICE_REPORT_STATS_H
#define SLUICE_REPORT_STATS_H

#include "tools/report_parse.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* a message not seen for this long (log time) is forgotten (Postfix: 5d lifetime) */
#define RS_EXPIRE_S (8 * 86400.0)

struct rs_opts {
	double since, until;	/* epoch seconds; 0 = unbounded. since <= t < until */
	size_t top_n;		/* rows in each top table (0: 20) */
};

struct report_stats;

struct report_stats *rs_new(const struct rs_opts *o);
void rs_free(struct report_stats **st);

/* rs_add - count one parsed line (any kind; RP_EV_NONE counts as unreadable). */
void rs_add(struct report_stats *st, const struct rp_event *ev);

/*
 * rs_keys - the keys of the large tables that one event looks up, worked
 * out from the event alone (no stats: any thread may make them, ahead of
 * rs_add_keys), each with its rmap_hash:
 *   qid_h: the hash of ev->qid (0: no qid);
 *   CONNECT, CLIENT: key[0] the client, "name[ip]";
 *   FROM: key[0] the sender address in pflogsumm's form (domain lower-cased,
 *     "from=<>" for the null sender), key[1] its domain (NULL without '@');
 *   DELIVERY: key[0] the recipient address, key[1] its domain;
 *   other kinds: none (NULL).
 * Strings point into the caller's buf; lens exclude the NUL.
 */
struct rs_keys {
	uint64_t qid_h;
	const char *key[2];
	uint32_t len[2];
	uint64_t h[2];
};
#define RS_KEYS_BYTES 1024	/* buf bytes rs_keys_make may use */

/* rs_keys_make - *k for ev, strings in buf (RS_KEYS_BYTES); returns the bytes of buf used. */
size_t rs_keys_make(const struct rp_event *ev, struct rs_keys *k, char *buf);

/* rs_add_keys - rs_add with k = rs_keys_make(ev) given (the same counts). */
void rs_add_keys(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k);


/*
 * Parts: report_run counts a plain file cut into parts at line starts, at
 * once, each part into stats of its own, and then adds them up in order.
 * rs_add_part counts an event of a part after the first (into that part's
 * own stats, from rs_new) as rs_add_keys does, unless the event needs what
 * only the parts before know: a later line of a message that arrived
 * before the part (its size, whether its sender was counted, whether it was
 * deferred), or a line without a time stamp before the part's first (in
 * range). Then it counts nothing, sets *now_out and returns 1: the caller
 * keeps the event and, once the parts before are counted, gives it to
 * rs_add_now(st, ev, now) (of the stats that hold them) in log order,
 * before rs_merge of this part; now is the time a line without a stamp
 * takes there (the last stamp before it in the part; 0: the parts
 * before's). Otherwise 0.
 * rs_merge(st, &part) adds the part's counts to st, hands over the state
 * of the messages it saw arrive, and frees it (*part NULL).
 * rs_part_fits(st, part), before those: 0 when a message that arrived in
 * the part has a queue id st still holds (a queue id used again without a
 * "removed" line between, or logs of two hosts in one file): one pass
 * would have gone on with that state, so the caller counts the part's lines
 * again with rs_add instead (and rs_free()s the part). With it, the result
 * is the one pass's (but for when the RS_EXPIRE_S sweep runs).
 */
const struct rs_opts *rs_options(const struct report_stats *st);	/* as given to rs_new */
int rs_add_part(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k, double *now_out);
void rs_add_now(struct report_stats *st, const struct rp_event *ev, double now);
void rs_merge(struct report_stats *st, struct report_stats **part);
int rs_part_fits(const struct report_stats *st, const struct report_stats *part);

/* rs_note_cut_lines - lines the reader cut at RP_MAX_LINE_BYTES (for the record). */
void rs_note_cut_lines(struct report_stats *st, long long n);

/*
 * rs_json - the whole report as one JSON object (new reference; the caller
 * json_decref()s it). Layout in docs/REPORT.md.
 */
json_t *rs_json(struct report_stats *st);

/* rs_pending - per-queue-id states held now (for tests of the memory bound). */
size_t rs_pending(const struct report_stats *st);

/*
 * rs_reason_code - the stable reason code of a reject (docs/EVENTS.md), from
 * its enhanced status code (RFC 7372's authentication codes) or its text.
 * Any argument may be NULL. Returns a static string.
 */
const char *rs_reason_code(const char *stage, const char *dsn, const char *text);

#endif
