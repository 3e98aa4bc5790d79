/*
 * dmarc: DMARC records and evaluation, RFC 9989 (DMARCbis, the default) and
 * RFC 7489, as a pure state machine driven by DNS answers (like proto/spf).
 * Owns: the record parser (RFC 9989 4.7/4.8, RFC 7489 6.3/6.4), policy
 * discovery (9989 4.10.1 DNS tree walk with label skipping, psd=; 7489 6.6.3
 * with the Public Suffix List through libpsl), the organizational domain,
 * identifier alignment (9989 4.10.2, 7489 3.1), the non-existence test for
 * np= (9989 3.2.11, A/AAAA/MX all NXDOMAIN), the result and the disposition
 * (p/sp/np, t=y downgrade, 7489 pct sampling from the caller's roll).
 * Leaves: DNS I/O, timeouts and caching (proto/dns), SPF and DKIM
 * verification, the From header (proto/rfc5322: one domain per check; a
 * daemon checks every distinct From domain and applies the strictest
 * disposition, dmarc_disposition_stricter), U-label to A-label conversion,
 * local policy, reports, header formatting (the caller: milters/dmarc).
 * No sockets, clock, randomness, globals or logging inside. Records, answers
 * and request strings are untrusted: lengths are checked before use; the
 * DNS questions of one check are bounded (DMARC_MAX_QUERIES).
 *
 * Use:
 *	struct dmarc_check *c = dmarc_check_new(&req);
 *	for (;;) {
 *		struct dmarc_query q;
 *		int st = dmarc_check_next(c, &q);
 *		if (st == DMARC_NEED_DNS) start a look-up of q.name/q.type, remember q.id;
 *		else if (st == DMARC_WAIT) wait for any answer, then
 *			dmarc_check_answer(c, id, answer);
 *		else break;	(DMARC_DONE)
 *	}
 *	const struct dmarc_outcome *o = dmarc_check_outcome(c); ...
 *	dmarc_check_free(&c);
 */
#ifndef SLUICE_PROTO_DMARC_H
#define SLUICE_PROTO_DMARC_H

#include <stddef.h>

#include "proto/dns.h"

/* Which specification drives discovery and disposition. */
enum dmarc_mode {
	DMARC_MODE_DMARCBIS = 0,	/* RFC 9989: tree walk, psd=, np=, t=; pct ignored */
	DMARC_MODE_RFC7489,		/* RFC 7489: PSL, sp=, pct sampling; np=, t=, psd= ignored */
};

/* Domain Owner Assessment Policy (p=, sp=, np= values). */
enum dmarc_policy {
	DMARC_POLICY_UNSET = 0,		/* tag absent (or invalid: see bad_tags) */
	DMARC_POLICY_NONE,
	DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT,
};
/* "unset", "none", "quarantine", "reject" */
const char *dmarc_policy_name(enum dmarc_policy p);

/* ---- records ---- */

/* Bits for dmarc_record.seen_tags / bad_tags (known tags only). */
#define DMARC_TAG_V	(1u << 0)
#define DMARC_TAG_P	(1u << 1)
#define DMARC_TAG_SP	(1u << 2)
#define DMARC_TAG_NP	(1u << 3)
#define DMARC_TAG_PSD	(1u << 4)
#define DMARC_TAG_T	(1u << 5)
#define DMARC_TAG_ADKIM	(1u << 6)
#define DMARC_TAG_ASPF	(1u << 7)
#define DMARC_TAG_PCT	(1u << 8)
#define DMARC_TAG_RUA	(1u << 9)
#define DMARC_TAG_RUF	(1u << 10)
#define DMARC_TAG_FO	(1u << 11)
#define DMARC_TAG_RF	(1u << 12)
#define DMARC_TAG_RI	(1u << 13)

/* A longer TXT record is not a usable DMARC record. */
#define DMARC_RECORD_MAX_BYTES 4096

/*
 * One parsed record. Values are lower-cased where the RFC's grammar is
 * case-insensitive (p=Reject is reject); the URI lists keep their case.
 * Strings are owned by the record (dmarc_record_free); NULL when the tag is
 * absent.
 */
struct dmarc_record {
	int is_dmarc;		/* starts with v=DMARC1 (case-sensitive, WSP around
				 * "=" allowed): counts as a DMARC record for the
				 * "several records" rule even if otherwise invalid */
	enum dmarc_policy p, sp, np;	/* UNSET when absent or invalid */
	char adkim, aspf;	/* 'r' (default) or 's' */
	char t;			/* 'n' (default) or 'y' */
	char psd;		/* 'u' (default), 'y' or 'n' */
	unsigned pct;		/* 0..100, default 100 (RFC 7489 only) */
	unsigned long ri_s;	/* default 86400 (RFC 7489 6.3; historic in 9989) */
	char *rua, *ruf;	/* comma-separated URI lists as published, WSP-trimmed */
	unsigned rua_valid;	/* syntactically valid URIs in rua (scheme ":" rest,
				 * optional obsolete "!size" suffix) */
	unsigned ruf_valid;
	char *fo;		/* as published, lower-cased; NULL = default "0" */
	char *rf;		/* as published, lower-cased; NULL = default "afrf" */
	unsigned seen_tags;	/* DMARC_TAG_* present */
	unsigned bad_tags;	/* DMARC_TAG_* present with an invalid value; except
				 * for p, sp and np the default is used (9989 4.8,
				 * 7489 6.3: syntax errors give way to defaults) */
	unsigned dup_tags;	/* DMARC_TAG_* given more than once: the first
				 * counts, the others are ignored */
	int broken;		/* over DMARC_RECORD_MAX_BYTES or holds a NUL byte:
				 * not usable at all (no p=none fallback) */
	char *record_text;	/* the whole record as received (NUL-terminated copy;
				 * embedded NULs make the record invalid) */
};

/*
 * dmarc_record_is_dmarc - the TXT string starts with a v=DMARC1 tag
 * (optional WSP before "v", around "=", then ";", WSP or the end). Used to
 * count DMARC records at one name (several = all discarded).
 */
int dmarc_record_is_dmarc(const char *txt, size_t len);

/*
 * dmarc_record_parse - parse one TXT record of len bytes (the character
 * strings already joined). Unknown tags are ignored; a tag without "=" or
 * with a malformed tag name is ignored; a known tag with an empty or invalid
 * value is marked in bad_tags; a repeated known tag is marked in dup_tags and
 * only its first value counts. Returns 0 for a
 * valid record: v=DMARC1 first, p= present and valid, sp=/np= valid when
 * present. Otherwise -1 with *err_out (static text; err_out may be NULL).
 * *out is filled either way (also on -1: is_dmarc, p, rua_valid, ... say
 * what was found, for the p=none fallback of RFC 9989 4.10.1 / 7489 6.6.3,
 * see dmarc_record_fallback) and must be released with dmarc_record_free.
 */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *out,
		       const char **err_out);

/*
 * dmarc_record_fallback - for a record that dmarc_record_parse refused only
 * because p= is missing or invalid, or sp=/np= is invalid: 1 if it has an
 * rua= with at least one valid URI, so that the receiver acts as if p=none
 * was published (RFC 9989 4.10.1, RFC 7489 6.6.3); else 0 (no DMARC).
 * In DMARC_MODE_RFC7489 an invalid np= is ignored (np is not a 7489 tag).
 */
int dmarc_record_fallback(const struct dmarc_record *r, enum dmarc_mode mode);

/* dmarc_record_free - releases the strings; r may be NULL; r is left zeroed. */
void dmarc_record_free(struct dmarc_record *r);

/* ---- the check ---- */

/* Results of SPF and DKIM as the caller found them. */
enum dmarc_auth_result {
	DMARC_AUTH_NONE = 0, DMARC_AUTH_PASS, DMARC_AUTH_FAIL, DMARC_AUTH_SOFTFAIL,
	DMARC_AUTH_NEUTRAL, DMARC_AUTH_TEMPERROR, DMARC_AUTH_PERMERROR, DMARC_AUTH_POLICY,
};
/* "none", "pass", "fail", "softfail", "neutral", "temperror", "permerror", "policy" */
const char *dmarc_auth_result_name(enum dmarc_auth_result r);

/* SPF identity. Only MAIL FROM counts for DMARC (RFC 9989 3.2.6, 4.4.2); a
 * null reverse-path is checked by SPF as postmaster@<helo> in the MAIL FROM
 * scope (RFC 7208 2.4), and the caller passes that with DMARC_SCOPE_MFROM. */
enum dmarc_spf_scope { DMARC_SCOPE_MFROM = 0, DMARC_SCOPE_HELO };

/* One SPF or DKIM result. Only results DMARC_AUTH_PASS can align. */
struct dmarc_auth {
	const char *domain;		/* SPF: the checked domain; DKIM: d= */
	const char *selector;		/* DKIM s= (reported only); NULL for SPF */
	enum dmarc_auth_result result;
	enum dmarc_spf_scope scope;	/* SPF only; DKIM entries leave it 0 */
};

/*
 * What to check. Everything is copied by dmarc_check_new except psl (borrowed:
 * must outlive the check). Auth entries beyond DMARC_MAX_AUTH per kind are
 * ignored.
 */
#define DMARC_MAX_AUTH 32
struct dmarc_request {
	const char *from_domain;	/* Author Domain, A-labels; case and one
					 * trailing dot do not matter. Not a valid
					 * domain name: DMARC_RESULT_PERMERROR. */
	enum dmarc_mode mode;
	const struct dmarc_auth *spf;
	size_t nspf;
	const struct dmarc_auth *dkim;
	size_t ndkim;
	unsigned pct_roll;		/* 0..99 (larger values are taken mod 100):
					 * RFC 7489 pct sampling, the policy applies
					 * when pct_roll < pct */
	const void *psl;		/* RFC 7489 mode: a libpsl psl_ctx_t *; NULL =
					 * libpsl's built-in list (psl_builtin()) */
};

/*
 * Bounds. A tree walk asks at most DMARC_MAX_WALK look-ups (RFC 9989 4.10);
 * the whole check at most DMARC_MAX_QUERIES (answers are shared between the
 * walks of the Author Domain and of the authenticated identifiers). When the
 * limit (or a temporary DNS failure) stops the walk for a passing
 * identifier, its alignment is unknown: DMARC_RESULT_TEMPERROR unless
 * another identifier aligns. Relaxed alignment walks only for identifiers
 * at or under the Author Domain's Organizational Domain (others cannot
 * align), identical names need no walk, strict mode never walks.
 */
#define DMARC_MAX_WALK 8
#define DMARC_MAX_QUERIES 40

/* One DNS question asked by the machine. name has no trailing dot. */
#define DMARC_NAME_MAX 253
struct dmarc_query {
	unsigned id;			/* pass back to dmarc_check_answer; never 0 */
	enum dns_type type;		/* DNS_T_TXT, DNS_T_A, DNS_T_AAAA or DNS_T_MX */
	char name[DMARC_NAME_MAX + 1];
};

enum dmarc_step { DMARC_NEED_DNS = 1, DMARC_WAIT, DMARC_DONE };

enum dmarc_result {
	DMARC_RESULT_NONE = 0,		/* no applicable DMARC record */
	DMARC_RESULT_PASS,
	DMARC_RESULT_FAIL,
	DMARC_RESULT_TEMPERROR,		/* a look-up that mattered failed temporarily */
	DMARC_RESULT_PERMERROR,		/* the Author Domain is not a usable name */
};
/* "none", "pass", "fail", "temperror", "permerror" (RFC 8601 names) */
const char *dmarc_result_name(enum dmarc_result r);

/* What the Domain Owner asks for this message, ordered by strictness. */
enum dmarc_disposition {
	DMARC_DISP_NONE = 0, DMARC_DISP_QUARANTINE, DMARC_DISP_REJECT,
};
/* "none", "quarantine", "reject" */
const char *dmarc_disposition_name(enum dmarc_disposition d);
/* dmarc_disposition_stricter - the stricter of a and b (reject > quarantine > none). */
enum dmarc_disposition dmarc_disposition_stricter(enum dmarc_disposition a,
						  enum dmarc_disposition b);

/* Which tag of the record gave the policy. */
enum dmarc_applied {
	DMARC_APPLIED_NONE = 0,		/* no record */
	DMARC_APPLIED_P, DMARC_APPLIED_SP, DMARC_APPLIED_NP,
	DMARC_APPLIED_FALLBACK,		/* p=none by the fallback: p missing or invalid,
					 * or sp/np invalid, with a valid rua (a valid
					 * sp/np of that record still applies as SP/NP) */
};
/* "none", "p", "sp", "np", "fallback" */
const char *dmarc_applied_name(enum dmarc_applied a);

/* Why the disposition is milder than the policy (RFC 9990 / 7489 reason types). */
enum dmarc_override {
	DMARC_OVERRIDE_NONE = 0,
	DMARC_OVERRIDE_TESTING,		/* t=y (9989): one level down; "policy_test_mode" */
	DMARC_OVERRIDE_SAMPLED_OUT,	/* pct (7489): next less strict; "sampled_out" */
};
/* "none", "policy_test_mode", "sampled_out" */
const char *dmarc_override_name(enum dmarc_override o);

enum dmarc_discovery { DMARC_DISCOVERY_TREEWALK = 0, DMARC_DISCOVERY_PSL };
/* "treewalk", "psl" */
const char *dmarc_discovery_name(enum dmarc_discovery d);

/*
 * The outcome, valid after DMARC_DONE. Strings are lower-case, no trailing
 * dot, borrowed from the check until dmarc_check_free; NULL where noted.
 */
struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_disposition disposition;	/* after t=y / pct; NONE unless FAIL */
	enum dmarc_policy policy;	/* the p/sp/np value that applies (UNSET if no record) */
	enum dmarc_applied applied;
	enum dmarc_override override;
	enum dmarc_discovery discovery;
	const char *from_domain;	/* normalized Author Domain (NULL if unusable) */
	const char *policy_domain;	/* where the record was found; NULL if none */
	const char *org_domain;		/* Organizational Domain of the Author Domain;
					 * NULL when not determined (no record, errors) */
	const struct dmarc_record *record;	/* the record applied; NULL if none */
	int from_exists;		/* 1 exists, 0 A/AAAA/MX all NXDOMAIN,
					 * -1 not tested (np= did not matter) */
	int spf_aligned, dkim_aligned;	/* an aligned pass of that kind */
	const char *spf_domain;		/* the aligned SPF domain, else NULL */
	const char *dkim_domain;	/* the first aligned DKIM d=, else NULL */
	const char *dkim_selector;	/* its s= (NULL if not given) */
	char spf_mode, dkim_mode;	/* 'r' or 's' as applied (record or default) */
	const char *reason;		/* one line for logs, never NULL */
	unsigned dns_queries;		/* questions asked */
};

struct dmarc_check;

/*
 * dmarc_check_new - start checking req->from_domain against the SPF and DKIM
 * results. req is copied. Never NULL. Free with dmarc_check_free.
 */
struct dmarc_check *dmarc_check_new(const struct dmarc_request *req);

/*
 * dmarc_check_next - advance as far as the answers received allow.
 * DMARC_NEED_DNS: *q_out is a new question; call again for more (several may
 *   be outstanding: the A, AAAA and MX look-ups of the existence test are
 *   asked together). Answer every question, in any order, or give up on the
 *   whole check (the caller then reports temperror itself).
 * DMARC_WAIT: questions are outstanding and nothing else can be done now.
 * DMARC_DONE: dmarc_check_outcome is valid; outstanding answers are ignored.
 */
int dmarc_check_next(struct dmarc_check *c, struct dmarc_query *q_out);

/*
 * dmarc_check_answer - the answer to question id; ans is borrowed (read
 * during the call only). Unknown or repeated ids are ignored. TXT: the RRs'
 * strings are already joined (struct dns_rr.u.txt). NXDOMAIN and NODATA mean
 * no record; SERVFAIL, TIMEOUT and ERROR are temporary failures
 * (DMARC_RESULT_TEMPERROR when the answer mattered).
 */
void dmarc_check_answer(struct dmarc_check *c, unsigned id, const struct dns_answer *ans);

/* dmarc_check_free - NULL is ignored; *c becomes NULL. */
void dmarc_check_free(struct dmarc_check **c);

/* dmarc_check_outcome - valid once dmarc_check_next returned DMARC_DONE
 * (before that: panics). Borrowed from c. */
const struct dmarc_outcome *dmarc_check_outcome(const struct dmarc_check *c);
/* Shortcuts for dmarc_check_outcome(c)->result / ->disposition. */
enum dmarc_result dmarc_check_result(const struct dmarc_check *c);
enum dmarc_disposition dmarc_check_disposition(const struct dmarc_check *c);

/* ---- building blocks, used by the machine and exposed for tests ---- */

/*
 * dmarc_domain_normalize - lower-case copy of name without one trailing dot
 * into out (outlen >= DMARC_NAME_MAX + 1). 0 if it is a usable domain name
 * (1..253 bytes, labels of 1..63 bytes of letters, digits, '-' and '_'),
 * else -1 (out is then "").
 */
int dmarc_domain_normalize(const char *name, char *out, size_t outlen);

/*
 * dmarc_org_domain_psl - RFC 7489 3.2: the Organizational Domain of the
 * normalized domain by the Public Suffix List psl (psl_ctx_t *, NULL = the
 * built-in list) into out (outlen >= DMARC_NAME_MAX + 1): the public suffix
 * plus one label; a name that is itself a public suffix is its own
 * Organizational Domain. 0, or -1 (out "") if domain is not usable.
 */
int dmarc_org_domain_psl(const void *psl, const char *domain, char *out, size_t outlen);

/*
 * dmarc_aligned_psl - RFC 7489 3.1: 1 if the two domains are aligned
 * (strict: equal; relaxed: same Organizational Domain by the PSL), else 0.
 * Unusable names never align.
 */
int dmarc_aligned_psl(const void *psl, const char *from_domain, const char *auth_domain,
		      int strict);

#endif
