/*
 * dmarc_failrep: DMARC failure reports (RFC 9991, message format RFC 6591 /
 * RFC 5965 ARF) for sluice-dmarc, without sockets.
 * Owns: whether a report is due for one evaluated message (the fo= options
 * of RFC 9989 4.7), the ruf= destinations (mailto: only, the obsolete "!size"
 * suffix parsed and honoured as an upper bound; the grammar is
 * proto/dmarc_report's, with sluice-dmarc's rules), external destination
 * verification (RFC 9989 via the aggregate-reporting document section 4,
 * with "ruf" for "rua": which destinations are internal, by PSL or DNS tree
 * walk, and the verdicts; the <policy-domain>._report._dmarc.<dest-host>
 * question and its same-host override are proto/dmarc_report's), the per-destination
 * rate limit (in memory, thread-safe, injectable clock), building the ARF
 * message with optional redaction of local-parts (HMAC-SHA256 under a
 * per-process random key, headers only, never the body), and running
 * bin/sluice-sendmail to send it.
 * Leaves: DNS I/O (the caller's lookup callback, e.g. dmarc_dns_lookup under
 * the message's deadline), configuration (dmarc_cfg), logging (the caller
 * logs one line per destination from struct dmarc_failrep_result), DMARC
 * itself (proto/dmarc: the outcome is an input here).
 * Everything from DNS and from the message is untrusted: addresses are
 * checked before they reach a command line or a header, counts and sizes are
 * capped (DMARC_FAILREP_MAX_DEST, DMARC_FAILREP_MAX_HEADER_BYTES, ...).
 * No globals except the redaction key (set once, pthread_once) .
 *
 * Use at end of message, per evaluated From domain (see
 * docs/DMARC-FAILURE-REPORTS.md for the daemon's exact calls):
 *	unsigned hit = dmarc_failrep_due(outcome, spf, nspf, dkim, ndkim);
 *	if (hit) {
 *		struct dmarc_failrep_result res;
 *		dmarc_failrep_run(&in, &opts, rate, lookup, lookup_arg,
 *				  dmarc_failrep_send_exec, &sendmail, &res);
 *		for each res.dest[i]: log it;
 *		dmarc_failrep_result_clear(&res);
 *	}
 */
#ifndef SLUICE_DMARC_FAILREP_H
#define SLUICE_DMARC_FAILREP_H

#include "proto/dmarc.h"
#include "proto/dns.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- 1. is a report due (fo=) ---- */

/* fo= options (RFC 9989 4.7). */
#define DMARC_FAILREP_FO_0 (1u << 0)	/* all mechanisms failed to produce an aligned pass */
#define DMARC_FAILREP_FO_1 (1u << 1)	/* any mechanism failed to produce an aligned pass */
#define DMARC_FAILREP_FO_D (1u << 2)	/* a DKIM signature failed evaluation, aligned or not */
#define DMARC_FAILREP_FO_S (1u << 3)	/* SPF failed evaluation, aligned or not */

/*
 * dmarc_failrep_fo_parse - the options of a record's fo= value as
 * proto/dmarc keeps it (lower-cased, colon-separated). NULL or "" is the
 * default "0". An unknown item makes the whole value invalid (RFC 9989 4.8:
 * syntax errors give way to the default): FO_0.
 */
unsigned dmarc_failrep_fo_parse(const char *fo);

/*
 * dmarc_failrep_fo_match - which of the options in fo hold for a message:
 * spf_aligned / dkim_aligned: an aligned pass of that kind (dmarc_outcome);
 * dkim_failed: some DKIM signature failed evaluation (result fail or
 * permerror: it did not verify, whatever its d=; neutral, policy, temperror
 * and none do not count); spf_failed: the SPF result was fail or permerror
 * (softfail, neutral, none, temperror do not count).
 * Returns the subset of fo whose condition holds (0 = no report).
 */
unsigned dmarc_failrep_fo_match(unsigned fo, int spf_aligned, int dkim_aligned,
				int dkim_failed, int spf_failed);

/*
 * dmarc_failrep_due - the fo= options that call for a report for this
 * outcome (0 = none): the record applied has a ruf= with at least one valid
 * URI, it is not a PSD record (psd=y: RFC 9991 2 says ruf= there MUST NOT be
 * considered), and the result is pass or fail (none, temperror and permerror
 * never report). spf/dkim are the per-mechanism results that were given to
 * proto/dmarc (any count; NULL when 0).
 */
unsigned dmarc_failrep_due(const struct dmarc_outcome *o, const struct dmarc_auth *spf,
			   size_t nspf, const struct dmarc_auth *dkim, size_t ndkim);

/* ---- 2. destinations (ruf=) and their verification ---- */

#define DMARC_FAILREP_MAX_DEST 8	/* more mailto: URIs in one ruf= are ignored */
#define DMARC_FAILREP_MAX_QUERIES 24	/* DNS questions of one dmarc_failrep_verify */
#define DMARC_FAILREP_ADDR_MAX 254	/* local@domain, RFC 5321 4.5.3.1.3 path limit */

enum dmarc_failrep_verdict {
	DMARC_FAILREP_UNCHECKED = 0,
	DMARC_FAILREP_INTERNAL,		/* same Organizational Domain as the policy: no check */
	DMARC_FAILREP_VERIFIED,		/* external, <policy>._report._dmarc.<host> has v=DMARC1 */
	DMARC_FAILREP_REFUSED,		/* external without that record (NXDOMAIN, NODATA, no
					 * v=DMARC1 record, name too long, override to another host) */
	DMARC_FAILREP_TEMPERROR,	/* a look-up that decides failed temporarily: not sent */
};
/* "unchecked", "internal", "verified", "refused", "temperror" */
const char *dmarc_failrep_verdict_name(enum dmarc_failrep_verdict v);

struct dmarc_failrep_dest {
	char addr[DMARC_FAILREP_ADDR_MAX + 1];	/* local@domain: percent-decoded, domain
						 * lower-cased, local-part as published */
	char host[DMARC_NAME_MAX + 1];		/* the domain of addr */
	unsigned long long max_bytes;		/* "!size" suffix in bytes (k/m/g/t are
						 * powers of 1024); 0 = no limit */
	enum dmarc_failrep_verdict verdict;
};

/*
 * dmarc_failrep_ruf_parse - the mailto: destinations of a ruf= value
 * (comma-separated, WSP around commas; RFC 9989 4.7 / 4.8 dmarc-urilist).
 * Each URI: "mailto:" (any case), an addr-spec of dot-atom local-part and a
 * domain name (percent-encoding decoded; an hfields "?..." part ignored),
 * optional "!" 1*DIGIT [k|m|g|t]. Other schemes are ignored; malformed
 * mailto: URIs (no '@', a quoted or odd local-part, a bad domain, a bad size,
 * control characters) are skipped; duplicates (same addr) are kept once.
 * XXX: RFC 9989 makes the size suffix obsolete ("should ignore"); we honour
 * it because sending less than allowed is always compliant.
 * Fills out[0..max-1] (verdict UNCHECKED) and returns how many; *skipped_out
 * (may be NULL) gets the number of URIs not used (other schemes, malformed,
 * duplicates, over max). ruf NULL is 0.
 */
size_t dmarc_failrep_ruf_parse(const char *ruf, struct dmarc_failrep_dest *out, size_t max,
			       size_t *skipped_out);

/*
 * dmarc_failrep_addr_ok - 0 when addr is usable as the reporting address
 * (dmarc_failure_report_from; it becomes sluice-sendmail's -f and the From:
 * of reports): a dot-atom local-part, '@', a domain name with a dot, at most
 * DMARC_FAILREP_ADDR_MAX bytes, the same rules as a ruf= mailto: address.
 * Else -1. For start-up validation.
 */
int dmarc_failrep_addr_ok(const char *addr);

/*
 * The caller's DNS: one blocking look-up, returning a new answer (never
 * NULL; freed here with dns_answer_free). Same shape as dmarc_dns_fake_fn.
 * TXT answers carry each RR's strings joined (struct dns_rr.u.txt).
 */
typedef struct dns_answer *(*dmarc_failrep_lookup_fn)(void *arg, const char *name,
						      enum dns_type type);

/*
 * dmarc_failrep_verify - external destination verification of d[0..n-1]
 * for a record found at policy_domain. policy_org is the Organizational
 * Domain of the policy domain (dmarc_outcome.org_domain; NULL = determine it
 * here). Organizational Domains are found as the RFC says for the mode: the
 * DNS tree walk of RFC 9989 4.10.2 (TXT _dmarc.<name> look-ups, psd=n / psd=y
 * / fewest labels) in DMARC_MODE_DMARCBIS, the Public Suffix List (psl: a
 * psl_ctx_t *, NULL = libpsl's built-in) in DMARC_MODE_RFC7489.
 * A destination whose host has the policy's Organizational Domain is
 * INTERNAL without further look-ups. Otherwise the TXT record at
 * <policy_domain>._report._dmarc.<host> decides: at least one RR starting
 * with v=DMARC1 -> VERIFIED (and if that record has a ruf= whose mailto:
 * hosts all equal host, the first one replaces addr and max_bytes; a ruf=
 * naming another host -> REFUSED); NXDOMAIN, NODATA or no such RR ->
 * REFUSED; SERVFAIL/TIMEOUT/ERROR -> TEMPERROR. When the host's own
 * Organizational Domain cannot be found (a temporary failure in its walk),
 * the _report._dmarc record still decides VERIFIED, and its absence gives
 * TEMPERROR (it might have been internal). Look-ups are shared between
 * destinations with the same host; one call asks at most
 * DMARC_FAILREP_MAX_QUERIES questions (past that, look-ups count as timed
 * out: TEMPERROR). Sets d[i].verdict for every i.
 */
void dmarc_failrep_verify(struct dmarc_failrep_dest *d, size_t n, const char *policy_domain,
			  const char *policy_org, enum dmarc_mode mode, const void *psl,
			  dmarc_failrep_lookup_fn lookup, void *lookup_arg);

/* ---- 3. rate limit ---- */

struct dmarc_failrep_rate;

/* Seconds on any monotonic scale (tests inject a fake). */
typedef long long (*dmarc_failrep_clock_fn)(void *arg);

#define DMARC_FAILREP_RATE_WINDOW_S 3600
#define DMARC_FAILREP_RATE_MAX_KEYS 65536	/* destinations remembered at once */

/*
 * dmarc_failrep_rate_new - at most per_hour reports per destination address
 * (compared ASCII case-insensitively) in any window of
 * DMARC_FAILREP_RATE_WINDOW_S that starts with a destination's first
 * report (fixed window per destination). per_hour 0 allows none.
 * clock NULL = CLOCK_MONOTONIC. Thread-safe (one mutex). Free with
 * dmarc_failrep_rate_free.
 */
struct dmarc_failrep_rate *dmarc_failrep_rate_new(unsigned per_hour, dmarc_failrep_clock_fn clock,
						  void *clock_arg);
/* dmarc_failrep_rate_set - a new limit (SIGHUP); counts are kept. */
void dmarc_failrep_rate_set(struct dmarc_failrep_rate *r, unsigned per_hour);
/*
 * dmarc_failrep_rate_take - 1 and counted when one more report to addr is
 * allowed now, else 0. When DMARC_FAILREP_RATE_MAX_KEYS destinations are
 * inside their windows, a new destination gets 0 (fail closed).
 */
int dmarc_failrep_rate_take(struct dmarc_failrep_rate *r, const char *addr);
/* dmarc_failrep_rate_free - NULL is ignored; *r becomes NULL. */
void dmarc_failrep_rate_free(struct dmarc_failrep_rate **r);

/* ---- 4. the report ---- */

/* RFC 6591 3.1 Delivery-Result values. */
enum dmarc_failrep_delivery {
	DMARC_FAILREP_DELIVERED = 0,	/* accepted */
	DMARC_FAILREP_SPAM,		/* quarantined (hold queue or header) */
	DMARC_FAILREP_POLICY,		/* not delivered by local policy (e.g. tempfail) */
	DMARC_FAILREP_REJECT,		/* rejected (550 5.7.1) */
	DMARC_FAILREP_OTHER,
};
/* "delivered", "spam", "policy", "reject", "other" */
const char *dmarc_failrep_delivery_name(enum dmarc_failrep_delivery d);

/* One original header field: the value exactly as it followed the colon
 * (leading space, "\n" or "\r\n" folds), as libmilter's xxfi_header gives it. */
struct dmarc_failrep_header {
	const char *name;
	const char *value;
};

#define DMARC_FAILREP_MAX_RCPT 50		/* Original-Rcpt-To fields at most */
#define DMARC_FAILREP_MAX_HEADER_BYTES (64u * 1024)	/* original headers reported */

/* What is known of the message. Everything is borrowed for the call. */
struct dmarc_failrep_input {
	const struct dmarc_outcome *outcome;	/* the From domain's DMARC outcome */
	const struct dmarc_auth *spf;		/* as given to proto/dmarc */
	size_t nspf;
	const struct dmarc_auth *dkim;
	size_t ndkim;
	const char *qid;		/* Original-Envelope-Id; NULL = omitted */
	const char *mail_from;		/* reverse-path without <>, "" = null path, NULL = omitted */
	const char *const *rcpts;	/* RCPT TO addresses without <> */
	size_t nrcpts;
	const char *client_ip;		/* Source-IP; NULL or "" = omitted */
	time_t arrival;			/* Arrival-Date; 0 = now */
	const struct dmarc_failrep_header *headers;	/* in message order */
	size_t nheaders;
	const char *auth_results;	/* our Authentication-Results value as added
					 * (authserv-id; results), folds allowed;
					 * NULL = "<reporting host>; dmarc=<result> header.from=<domain>" */
	const char *spf_record;		/* the SPF TXT record of the SPF domain for
					 * SPF-DNS; NULL = looked up by dmarc_failrep_run
					 * when needed (dmarc_failrep_build: omitted) */
	enum dmarc_failrep_delivery delivery;
};

struct dmarc_failrep_opts {
	const char *reporter;		/* From: of the report (dmarc_failure_report_from) */
	const char *hostname;		/* right side of Message-ID; default authserv-id */
	const char *user_agent;		/* NULL = "sluice-dmarc/<version>" */
	int redact;			/* dmarc_failure_report_redact */
	time_t now;			/* Date:; 0 = time(NULL) */
	size_t max_header_bytes;	/* 0 = DMARC_FAILREP_MAX_HEADER_BYTES */
};

/*
 * dmarc_failrep_build - the complete report message to one destination:
 * header (From: reporter, To: to, Subject: "FW: " + the original Subject as
 * RFC 9991 appendix A shows (a fixed text naming the domain when there is no
 * usable ASCII Subject), Date, Message-ID, MIME-Version, Auto-Submitted),
 * multipart/report; report-type=feedback-report with a text/plain part, a
 * message/feedback-report part (Feedback-Type: auth-failure, User-Agent,
 * Version: 1, Original-Envelope-Id, Original-Mail-From, Original-Rcpt-To,
 * Arrival-Date, Source-IP, Reported-Domain, Authentication-Results,
 * Auth-Failure, Identity-Alignment (RFC 9991 4), Delivery-Result,
 * DKIM-Domain/-Identity/-Selector for the failed DKIM signature of an
 * aligned (else the first failed) identifier, SPF-DNS when SPF of an aligned
 * identifier did not pass and in->spf_record is known) and a
 * text/rfc822-headers part with the original header (never the body).
 * Auth-Failure is "dmarc" when fo_hit has FO_0 or FO_1, else "signature"
 * (FO_D) or "spf" (FO_S) (RFC 6591 3.1).
 * With opts->redact every local-part of an address (anything "local@domain",
 * quoted local-parts included) in the envelope fields, the report fields, the
 * Subject and the original header fields is replaced by the first 16 hex
 * digits of HMAC-SHA256(key, local-part); the domains stay. Message-ID,
 * In-Reply-To, References, Resent-Message-ID and Content-ID keep their ids
 * (an id-left is not a mailbox).
 * Line ends are LF (sluice-sendmail's input). Returns a new NUL-terminated
 * string (caller frees), its length in *len_out (may be NULL).
 */
char *dmarc_failrep_build(const struct dmarc_failrep_input *in,
			  const struct dmarc_failrep_opts *opts, const char *to, unsigned fo_hit,
			  size_t *len_out);

/*
 * dmarc_failrep_redact_local - the replacement for one local-part: 16
 * lower-case hex digits into out (>= 17 bytes). For tests and docs.
 */
void dmarc_failrep_redact_local(const char *local, size_t len, char out[17]);
/*
 * dmarc_failrep_redact_text - a copy of text with every local-part replaced
 * as dmarc_failrep_build does it: before each '@' that is followed (after
 * optional WSP) by a domain, the run of atoms, dots and quoted strings (and
 * WSP before the '@') is the local-part; a lone quoted string is hashed
 * without its quotes; a known tag and '=' in front ("smtp.mailfrom=",
 * "i=", "header.from=", "envelope-from=", ...) is kept. Caller frees.
 */
char *dmarc_failrep_redact_text(const char *text);
/*
 * dmarc_failrep_set_key - replace the per-process random key (tests). The
 * key is otherwise drawn once from RAND_bytes on first use.
 */
void dmarc_failrep_set_key(const unsigned char *key, size_t len);

/*
 * dmarc_failrep_is_auto - 1 when no report may be made about this message,
 * to avoid report loops: it has an Auto-Submitted field whose value is not
 * "no" (RFC 3834 5), or it is itself an ARF report (Content-Type
 * multipart/report with report-type=feedback-report, RFC 5965). Else 0.
 */
int dmarc_failrep_is_auto(const struct dmarc_failrep_header *h, size_t n);

/* ---- 5. sending ---- */

/*
 * How a report leaves: from = the reporter (envelope sender), rcpt = the
 * destination, msg/len the message. 0 when handed over; -1 with *err_out
 * (caller frees) otherwise.
 */
typedef int (*dmarc_failrep_send_fn)(void *arg, const char *from, const char *rcpt,
				     const char *msg, size_t len, char **err_out);

struct dmarc_failrep_sendmail {
	const char *path;		/* bin/sluice-sendmail (installed path) */
	const char *conf_path;		/* its -C; NULL = its default */
	int timeout_ms;			/* whole run; 0 = 30000 */
};

/*
 * dmarc_failrep_send_exec - a dmarc_failrep_send_fn: runs
 *	<path> [-C <conf_path>] -f <from> -i -- <rcpt>
 * with posix_spawn (safe in libmilter's threads), the message on its stdin
 * (a socketpair, written with MSG_NOSIGNAL: a dead child is no SIGPIPE),
 * stdout to /dev/null, stderr read for the error text. Exit 0 = sent. A
 * child still running at the timeout is killed (SIGKILL by its pid) and
 * reaped. arg is a struct dmarc_failrep_sendmail *.
 */
int dmarc_failrep_send_exec(void *arg, const char *from, const char *rcpt, const char *msg,
			    size_t len, char **err_out);

/* ---- all of it ---- */

enum dmarc_failrep_status {
	DMARC_FAILREP_SENT = 0,
	DMARC_FAILREP_NOT_VERIFIED,	/* verdict REFUSED */
	DMARC_FAILREP_DNS_TEMPERROR,	/* verdict TEMPERROR */
	DMARC_FAILREP_RATE_LIMITED,
	DMARC_FAILREP_TOO_BIG,		/* over the destination's !size */
	DMARC_FAILREP_SEND_FAILED,
};
/* "sent", "not_verified", "temperror", "rate_limited", "too_big", "send_failed" */
const char *dmarc_failrep_status_name(enum dmarc_failrep_status s);

struct dmarc_failrep_result {
	unsigned fo_hit;		/* dmarc_failrep_due() */
	int suppressed;			/* a report was due but dmarc_failrep_is_auto():
					 * nothing was done (n == 0) */
	size_t nskipped;		/* ruf URIs not used (other schemes, malformed, ...) */
	size_t n;
	struct {
		struct dmarc_failrep_dest dest;
		enum dmarc_failrep_status status;
		size_t bytes;		/* report size */
		char *err;		/* SEND_FAILED: the sender's text; else NULL */
	} dest[DMARC_FAILREP_MAX_DEST];
};
void dmarc_failrep_result_clear(struct dmarc_failrep_result *r);

/*
 * dmarc_failrep_run - everything for one outcome: due? -> loop guard ->
 * ruf= -> addresses already at their rate limit are RATE_LIMITED without
 * any DNS -> verify the others -> (SPF-DNS look-up if needed) -> per
 * destination: build, size check, rate limit, send. Returns the fo= options that held and were acted on (0:
 * nothing was done, res->n == 0; res->suppressed = 1 when only the loop
 * guard dmarc_failrep_is_auto stopped it). *res is always initialised; clear it with
 * dmarc_failrep_result_clear. rate may be NULL (no limit: tests only).
 * Nothing here is fatal; the caller logs each res->dest[i].
 */
unsigned dmarc_failrep_run(const struct dmarc_failrep_input *in,
			   const struct dmarc_failrep_opts *opts, struct dmarc_failrep_rate *rate,
			   enum dmarc_mode mode, const void *psl, dmarc_failrep_lookup_fn lookup,
			   void *lookup_arg, dmarc_failrep_send_fn send, void *send_arg,
			   struct dmarc_failrep_result *res);

#endif
