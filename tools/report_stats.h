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
