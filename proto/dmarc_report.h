/*
 * dmarc_report: external destination verification of DMARC report URIs
 * (RFC 9990 section 4, the aggregate-reporting document, also used for
 * failure reports by RFC 9991 with "ruf" for "rua"; RFC 7489 section 7.1),
 * without I/O.
 * Owns: the mailto: URI list of rua=/ruf= (RFC 9989 4.7 dmarc-urilist /
 * dmarc-uri, RFC 7489 6.3 with the "!size" suffix), the question
 * <policy-domain>._report._dmarc.<dest-host> TXT (name length limits,
 * step 4), reading its answer (a v=DMARC1 record verifies, steps 5-8) and
 * the record's own rua=/ruf= override (step 9: destinations at the same
 * host replace the original, another host refuses).
 * Leaves: whether a destination is internal (same Organizational Domain:
 * the callers differ, PSL / logged org domain for `sluice report dmarc
 * --send`, PSL or DNS tree walk for sluice-dmarc's failure reports), DNS I/O
 * (the caller's lookup callback), logging, what the callers keep per
 * destination (their own structs, described by struct dmarc_report_layout).
 * Everything from DNS is untrusted: addresses are checked (dot-atom
 * local-part, plain host name, bounded length) before a caller puts them on
 * a command line or in a header.
 */
#ifndef SLUICE_DMARC_REPORT_H
#define SLUICE_DMARC_REPORT_H

#include "proto/dmarc.h"
#include "proto/dns.h"

#include <stddef.h>

#define DMARC_REPORT_MAX_DEST 8		/* override URIs read from one record */

/* Which tag of a DMARC record names the destinations. */
enum dmarc_report_tag {
	DMARC_REPORT_RUA,	/* aggregate reports (RFC 9990) */
	DMARC_REPORT_RUF,	/* failure reports (RFC 9991) */
};

enum dmarc_report_verdict {
	DMARC_REPORT_VERIFIED = 0,	/* a v=DMARC1 record at the name (an override may be applied) */
	DMARC_REPORT_NOT_FOUND,		/* NXDOMAIN, NODATA, or no TXT RR starting with v=DMARC1 */
	DMARC_REPORT_ELSEWHERE,		/* the record's rua=/ruf= names another host (step 9: MUST NOT) */
	DMARC_REPORT_TOO_LONG,		/* the name is over DMARC_NAME_MAX (253) bytes (step 4) */
	DMARC_REPORT_TEMPERROR,		/* SERVFAIL, timeout or another failed look-up */
};
/* "verified", "not-found", "elsewhere", "too-long", "temperror" */
const char *dmarc_report_verdict_name(enum dmarc_report_verdict v);

/* ---- mailto: URIs (RFC 9989 4.7 dmarc-uri; RFC 7489 6.3 with the "!size" suffix) ---- */

#define DMARC_REPORT_ADDR_MAX 254	/* local@domain, RFC 5321 4.5.3.1.3 path limit */

struct dmarc_report_uri {
	char addr[DMARC_REPORT_ADDR_MAX + 1];	/* local@domain: percent-decoded, domain lower-cased */
	char host[DMARC_REPORT_ADDR_MAX + 1];	/* the domain of addr */
	unsigned long long max_bytes;		/* "!size" in bytes (k/m/g/t: powers of 1024) */
};

/*
 * Where the two callers' checks differ (kept as they were when the parser
 * was shared; each caller passes its own):
 * host_ok NULL (sluice-dmarc ruf=): the domain goes through
 * dmarc_domain_normalize (one trailing dot dropped) and must have no '_';
 * host_ok set (sluice report rua=, rda_domain_ok): the domain as written must
 * pass host_ok (1 = good), then it is lower-cased.
 * zero_is_none 0 (ruf=): "!0" is 1 byte (nothing fits) and big sizes
 * saturate at ULLONG_MAX; 1 (rua=): "!0" is 0, no limit, and a number that
 * passes 2^40 before its last digit is malformed.
 */
struct dmarc_report_uri_rules {
	int (*host_ok)(const char *domain);
	int zero_is_none;
};

/* dmarc_report_atext - 1 when c (0..255) is RFC 5322 3.2.3 atext (a dot-atom
 * character other than '.'), else 0. */
int dmarc_report_atext(int c);

/*
 * dmarc_report_uri_parse - one URI of a rua=/ruf= list, len bytes at u (no
 * NUL needed; the caller has split the list at commas and trimmed WSP).
 * Grammar: "mailto:" (any case), an addr-spec with a dot-atom local-part
 * (RFC 5322 3.2.3; no quoted strings: it reaches a command line and a header)
 * and a domain name with at least one dot, percent-encoding decoded (a
 * decoded control character, space, non-ASCII byte or malformed %XX
 * refuses the URI), an hfields "?..." part ignored, optional "!" 1*DIGIT
 * [k|m|g|t] (RFC 7489 6.3; obsolete in RFC 9989, honoured as an upper bound).
 * At most DMARC_REPORT_ADDR_MAX bytes of address. rules: see above (NULL =
 * the ruf= rules). Returns 0 with *out filled, 1 for another scheme (out
 * zeroed), -1 for a malformed mailto: URI.
 */
int dmarc_report_uri_parse(const char *u, size_t len, const struct dmarc_report_uri_rules *rules,
			   struct dmarc_report_uri *out);

/*
 * Where a caller keeps its destinations: an array of elem_size-byte
 * elements, each with a char[addr_size] address (local@domain), a
 * char[host_size] host (its domain) and an unsigned long long size limit
 * at these offsets (offsetof). Both must be large enough for what
 * dmarc_report_uri_parse gives (addr_size >= strlen(addr) + 1: a longer
 * URI is skipped as malformed; host_size likewise).
 */
struct dmarc_report_layout {
	size_t elem_size;
	size_t addr_off, addr_size;
	size_t host_off, host_size;
	size_t max_bytes_off;
};

/*
 * dmarc_report_uri_list - the mailto: destinations of a rua=/ruf= value
 * (RFC 9989 4.7 dmarc-urilist: URIs separated by commas, WSP around them).
 * Each URI as dmarc_report_uri_parse(rules) reads it; other schemes and
 * malformed ones are skipped, and an address already taken (ASCII
 * case-insensitively) is kept once. Fills out[0..max-1] laid out as layout
 * says (NULL: out is struct dmarc_report_uri[]; other fields of an element
 * are zeroed) and returns how many. *skipped_out (may be NULL): the URIs not
 * used (other schemes, malformed, duplicates, past max). list NULL is 0.
 */
size_t dmarc_report_uri_list(const char *list, const struct dmarc_report_uri_rules *rules,
			     const struct dmarc_report_layout *layout, void *out, size_t max,
			     size_t *skipped_out);

/* One blocking DNS look-up: a new answer (never NULL), freed here with dns_answer_free. */
typedef struct dns_answer *(*dmarc_report_lookup_fn)(void *arg, const char *name,
						     enum dns_type type);

/*
 * dmarc_report_verify - RFC 9990 section 4 steps 4-9 (RFC 7489 7.1) for one
 * external destination (the caller has decided it is not internal, that is
 * not in the policy domain's Organizational Domain).
 * policy_domain: the domain the DMARC record was found at; dest_host: the
 * destination's domain (both as the caller keeps them, not re-normalized).
 * tag: which tag of the destination's record may override (rua or ruf);
 * rules: how its URIs are read (dmarc_report_uri_list; NULL = the ruf= rules).
 * Asks exactly one question, <policy_domain>._report._dmarc.<dest_host> TXT,
 * unless that name is longer than DMARC_NAME_MAX (TOO_LONG, nothing asked).
 * The first TXT RR starting with v=DMARC1 decides: ELSEWHERE when its tag
 * lists any mailto: destination (of the first DMARC_REPORT_MAX_DEST) whose
 * host differs from dest_host; else VERIFIED, and when it lists
 * destinations, the first one's address is copied into
 * addr (addr_size bytes, truncated to fit; addr may be NULL) and its size
 * limit into *max_bytes (may be NULL): the same-host override. addr and
 * *max_bytes are left alone on any other outcome. No v=DMARC1 RR,
 * NXDOMAIN or NODATA: NOT_FOUND; SERVFAIL, TIMEOUT or ERROR: TEMPERROR.
 * Memory: the answer and the parsed list are freed here; nothing is returned
 * that the caller must free.
 */
enum dmarc_report_verdict dmarc_report_verify(const char *policy_domain, const char *dest_host,
					      enum dmarc_report_tag tag,
					      const struct dmarc_report_uri_rules *rules,
					      dmarc_report_lookup_fn lookup, void *lookup_arg,
					      char *addr, size_t addr_size,
					      unsigned long long *max_bytes);

#endif
