/*
 * report_dmarc_send: mailing DMARC aggregate reports, for `sluice report dmarc --send`.
 * Owns: the mailto: destinations of a rua= value (RFC 9989 4.7 dmarc-urilist,
 * parsed by proto/dmarc_report with this tool's rules), external destination
 * verification (RFC 9990 section 4: which destinations are internal and the
 * verdicts; the <policy-domain>._report._dmarc.<dest-host> TXT question,
 * v=DMARC1 first, and the same-host rua= override are proto/dmarc_report's),
 * the suppress list (a file, one address per
 * line), bounces of earlier reports found in the mail log, the report
 * message (RFC 9990 2.5.2: Subject, application/gzip attachment with the
 * report's file name) and handing it to a Sendmail-compatible command.
 * Leaves: DNS I/O (the caller's lookup callback, proto/dns underneath),
 * the report itself (report_dmarc_agg), limits per run and output
 * (report_dmarc).
 * Everything from logs and DNS is untrusted: addresses are checked (dot-atom
 * local-part, plain host name) before they reach a command line or a header.
 */
#ifndef SLUICE_REPORT_DMARC_SEND_H
#define SLUICE_REPORT_DMARC_SEND_H

#include "proto/dns.h"
#include "tools/report_dmarc_agg.h"
#include "tools/report_map.h"
#include "tools/report_parse.h"

#include <stddef.h>
#include <time.h>

#define RDS_MAX_DEST 8		/* more mailto: URIs in one rua= are ignored */
#define RDS_ADDR_MAX 254	/* local@domain, RFC 5321 4.5.3.1.3 */

enum rds_verdict {
	RDS_UNCHECKED = 0,
	RDS_INTERNAL,	/* same Organizational Domain as the policy domain: no check needed */
	RDS_VERIFIED,	/* <policy>._report._dmarc.<host> has a v=DMARC1 record */
	RDS_REFUSED,	/* no such record, name too long, or an override to another host */
	RDS_TEMPERROR,	/* the look-up failed temporarily: not sent this run */
};
/* "unchecked", "internal", "verified", "refused", "temperror" */
const char *rds_verdict_name(enum rds_verdict v);

struct rds_dest {
	char addr[RDS_ADDR_MAX + 1];	/* percent-decoded; domain lower-cased */
	char host[RDS_ADDR_MAX + 1];	/* the domain of addr */
	unsigned long long max_bytes;	/* "!size" suffix in bytes (k/m/g/t: powers of 1024), 0 = none */
	enum rds_verdict verdict;
};

/*
 * rds_rua_parse - the mailto: destinations of a rua= value as logged
 * (comma-separated URIs, WSP around commas). Other schemes and malformed
 * mailto: URIs (no '@', a local-part that is not a dot-atom, a bad domain,
 * a bad size) are skipped; a duplicate address is kept once. Fills
 * out[0..max-1] and returns how many. rua NULL or "-" is 0.
 */
size_t rds_rua_parse(const char *rua, struct rds_dest *out, size_t max);

/* One blocking DNS look-up: a new answer (never NULL), freed by the callee's caller here. */
typedef struct dns_answer *(*rds_lookup_fn)(void *arg, const char *name, enum dns_type type);

/*
 * rds_verify - RFC 9990 section 4 for d[0..n-1], a record found at
 * policy_domain. policy_org: the Organizational Domain sluice-dmarc logged
 * (org_domain=, NULL or "-" when unknown). A destination is INTERNAL when
 * its host has the policy domain's Organizational Domain by the Public
 * Suffix List (libpsl's built-in list), or is policy_org or below it.
 * Otherwise the TXT record at <policy_domain>._report._dmarc.<host>
 * decides: a v=DMARC1 record -> VERIFIED (its rua=, when every mailto: in it
 * names the same host, replaces addr and max_bytes; another host ->
 * REFUSED, RFC 9990 4 step 9); NXDOMAIN, NODATA or no such record ->
 * REFUSED; SERVFAIL, timeout, error -> TEMPERROR. One question per distinct
 * host. Sets d[i].verdict.
 */
void rds_verify(struct rds_dest *d, size_t n, const char *policy_domain, const char *policy_org,
		rds_lookup_fn lookup, void *lookup_arg);

/* ---- the suppress list (dmarc_report_suppress) ---- */

struct rds_suppress;

/*
 * rds_suppress_load - the addresses in path (one per line; blank lines and
 * "#" comments ignored; compared ASCII case-insensitively). path NULL or ""
 * = an empty list that cannot be added to. A missing file is an empty list.
 * Returns NULL with *err_out (caller frees) when the file cannot be read.
 */
struct rds_suppress *rds_suppress_load(const char *path, char **err_out);
int rds_suppress_has(const struct rds_suppress *s, const char *addr);
/*
 * rds_suppress_add - append addr with a comment line naming why (one line,
 * e.g. "bounced 2026-12-02T08:00:00Z") unless it is listed already. Returns
 * 1 added, 0 already there, -1 with *err_out (caller frees) when there is no
 * file or it cannot be written.
 */
int rds_suppress_add(struct rds_suppress *s, const char *addr, const char *why, char **err_out);
void rds_suppress_free(struct rds_suppress **s);

/* ---- bounces of earlier reports, from the mail log ---- */

/*
 * rds_bounces_feed - follow the log: a queue id whose sender (qmgr's
 * from=<...> or pickup's) is `sender` is remembered until it is removed;
 * a delivery of such a message with status=bounced adds its recipient to
 * out (a set: rmap key = the address, lower case). ids: the caller's map,
 * zero-initialised, freed with rmap_free(ids, NULL).
 */
void rds_bounces_feed(struct rmap *ids, struct rmap *out, const struct rp_event *ev,
		      const char *sender);

/* ---- the message ---- */

struct rds_mail {
	const char *from;	/* the reporter's address (dmarc_report_email) */
	const char *to;		/* one destination */
	const char *receiver;	/* Submitter: domain */
	const char *report_id;	/* rda_report_id */
	const char *filename;	/* rda_filename */
	const char *policy_domain;
	long long begin, end;
	long long messages, rows;
	const void *gz;		/* the gzip'd report */
	size_t gz_len;
	time_t now;		/* Date:; 0 = time(NULL) */
};

/*
 * rds_message - the report mail (RFC 5322 + MIME, LF line ends, as a
 * Sendmail-compatible command reads it): From, To, Subject "Report Domain:
 * D Submitter: R Report-ID: <ID>" (folded), Date, Message-ID <ID>,
 * MIME-Version, Auto-Submitted (RFC 3834), multipart/mixed with a short
 * text/plain part and the report as application/gzip (base64) named
 * filename. Returns a new string (caller frees), *len_out bytes.
 */
char *rds_message(const struct rds_mail *m, size_t *len_out);

/* sendmail_run()'s exit status for a permanent refusal of the recipient (sysexits EX_NOUSER) */
#define RDS_EX_NOUSER 67

#endif
