/*
 * report_dmarc_agg: sluice-dmarc's verdict lines -> DMARC aggregate reports
 * (RFC 9990, or RFC 7489 appendix C), for `sluice report dmarc`.
 * Owns: which log events count (docs/DMARC.md "Log fields"), the split into
 * one report per DMARC Policy Domain and period (RFC 9990 2.1: one policy
 * domain per report; periods are whole UTC days or hours), grouping
 * identical rows with a count, the policy_published of a report (the last
 * one seen in its period, RFC 9990 2.1 "final configuration"), the XML
 * (libxml2's xmlTextWriter), gzip (zlib), the Report-ID and the file name
 * (RFC 9990 2.5.1 / 2.5.2).
 * Leaves: reading files and parsing lines (report_input, report_parse),
 * destinations and mail (report_dmarc_send), options (report_dmarc).
 * Memory: one entry per report and per distinct row, whatever the log size.
 * Log values are untrusted: a domain that is not a plain host name is never
 * used in a file name (the event is skipped), XML text is escaped by libxml2.
 */
#ifndef SLUICE_REPORT_DMARC_AGG_H
#define SLUICE_REPORT_DMARC_AGG_H

#include "tools/report_map.h"
#include "tools/report_parse.h"

#include <stddef.h>

enum rda_format {
	RDA_RFC9990,	/* urn:ietf:params:xml:ns:dmarc-2.0, every element qualified */
	RDA_RFC7489,	/* <dmarc:feedback xmlns:dmarc="http://dmarc.org/dmarc-xml/0.1">,
			 * children unqualified, as the RFC 7489 XSD says */
};

/* What happened to one log event in rda_add. */
enum rda_verdict {
	RDA_NOT_DMARC = 0,	/* not a sluice-dmarc verdict line (other daemons, failure_report=) */
	RDA_COUNTED,		/* counted in a report */
	RDA_NO_POLICY,		/* dmarc=none, or no policy domain: nothing to report */
	RDA_NOT_EVALUATED,	/* skipped=..., from_error=..., temperror, permerror */
	RDA_OUT_OF_RANGE,	/* outside [since, until) or without a time stamp */
	RDA_BAD_VALUE,		/* a policy domain or client address we will not write */
};

/* One policy_published, as logged (strings "-" when not applicable). */
struct rda_policy {
	char *p, *sp, *np, *adkim, *aspf, *t, *fo, *pct, *discovery, *rua, *org_domain;
	double time;	/* of the event it came from: the latest wins */
};

struct rda_report {
	char *domain;		/* the policy domain, lower case, a plain host name */
	long long begin, end;	/* seconds since the epoch, UTC, end inclusive */
	struct rda_policy pol;
	struct rmap rows;	/* key: the row's fields joined by '\t'; c[0] = messages */
	long long messages;
};

struct rda;

/*
 * rda_new - period_s: 86400 (UTC days) or 3600 (UTC hours), any value > 0
 * dividing a day. since/until: events with since <= t < until count
 * (0 = no bound), seconds since the epoch.
 */
struct rda *rda_new(long long period_s, double since, double until);
void rda_free(struct rda **a);

/* rda_add - one parsed log line; see enum rda_verdict. */
enum rda_verdict rda_add(struct rda *a, const struct rp_event *ev);

/*
 * rda_reports - every report, sorted by policy domain then begin; *n_out of
 * them. The array and the reports belong to a (valid until rda_free).
 */
struct rda_report *const *rda_reports(struct rda *a, size_t *n_out);

/* rda_count - events per verdict so far (index: enum rda_verdict). */
long long rda_count(const struct rda *a, enum rda_verdict v);

/* The Reporting Organization (RFC 9990 2.1.2 report_metadata). */
struct rda_meta {
	const char *org_name;	/* free text */
	const char *email;	/* contact address */
	const char *receiver;	/* the Mail Receiver's domain: file name, Report-ID, Subject */
	const char *generator;	/* NULL = "sluice <version>" */
	enum rda_format format;
};

/*
 * rda_report_id - "<begin>.<policy-domain>@<receiver>" (RFC 9990 2.5.1
 * ridfmt; the same report always gets the same id, so a resent report can
 * be recognised). Caller frees.
 */
char *rda_report_id(const struct rda_report *r, const struct rda_meta *m);

/*
 * rda_filename - "<receiver>!<policy-domain>!<begin>!<end>.xml.gz" (RFC 9990
 * 2.5.2; ".xml" when gz is 0). Caller frees.
 */
char *rda_filename(const struct rda_report *r, const struct rda_meta *m, int gz);

/*
 * rda_xml - the report's XML document in m->format. Rows in decreasing count,
 * then key order (the same input gives the same bytes). Returns a new
 * buffer (caller frees) of *len_out bytes, or NULL with *err_out (static).
 */
char *rda_xml(const struct rda_report *r, const struct rda_meta *m, size_t *len_out,
	      const char **err_out);

/*
 * rda_gzip - RFC 1952 gzip of len bytes (zlib; no file name, time stamp 0).
 * Returns a new buffer (caller frees) of *len_out bytes, or NULL when zlib
 * fails.
 */
unsigned char *rda_gzip(const void *data, size_t len, size_t *len_out);

/*
 * rda_domain_ok - 1 if s is a plain host name we write into file names and
 * DNS questions: 1..253 bytes of letters, digits, '-', '_' and '.', no empty
 * label, not starting with '-' or '.'.
 */
int rda_domain_ok(const char *s);

/*
 * rda_kv - the value of key in ev's key=value tokens (report_parse's
 * rp_kv_get: RP_MAX_KV holds every key sluice-dmarc logs), valid as long as
 * ev. NULL when absent. a is unused (kept for the callers).
 */
const char *rda_kv(struct rda *a, const struct rp_event *ev, const char *key);

#endif
