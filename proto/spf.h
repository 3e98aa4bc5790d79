/*
 * spf: RFC 7208 check_host() as a pure state machine driven by DNS answers.
 * Owns: record selection (4.4, 4.5), record syntax (4.6, 5, 6, 12), macro
 * expansion (7), mechanism evaluation with the processing limits (4.6.4),
 * redirect= and exp= (6), the explanation for fail (6.2) and the result (2.6).
 * Leaves: DNS I/O, per-query timeouts, the per-check deadline (4.6.4 asks for
 * at least 20 s; on expiry the caller reports SPF_TEMPERROR itself), caching,
 * policy (what a result means for the mail) and header formatting to the
 * caller (policyd/spf over proto/dns).
 * No sockets, clock, globals or logging inside. Records, answers and request
 * strings are untrusted: lengths are checked before use and the memory of one
 * check is bounded by struct spf_limits.
 *
 * Use:
 *	struct spf_check *c = spf_check_new(&req, NULL);
 *	for (;;) {
 *		struct spf_query q;
 *		int st = spf_check_next(c, &q);
 *		if (st == SPF_NEED_DNS) start a look-up of q.name/q.type, remember q.id;
 *		else if (st == SPF_WAIT) wait for any answer, then
 *			spf_check_answer(c, id, answer);
 *		else break;	(SPF_DONE)
 *	}
 *	spf_check_result(c), spf_check_explanation(c), ...; spf_check_free(&c);
 */
#ifndef SLUICE_PROTO_SPF_H
#define SLUICE_PROTO_SPF_H

#include <stddef.h>
#include <netinet/in.h>

#include "proto/dns.h"

struct sbuf;

/* Results of check_host() (RFC 7208 2.6). */
enum spf_result {
	SPF_NONE = 0, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL,
	SPF_TEMPERROR, SPF_PERMERROR,
};
/* spf_result_name - "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *spf_result_name(enum spf_result r);

/* Which identity is checked (2.3 HELO, 2.4 MAIL FROM). */
enum spf_scope { SPF_SCOPE_MFROM = 0, SPF_SCOPE_HELO };

/*
 * What to check. Every string is copied by spf_check_new; NULL is allowed
 * where noted. Strings longer than SPF_REQ_MAX_BYTES make the check end at
 * once with SPF_NONE.
 */
#define SPF_REQ_MAX_BYTES 1024
struct spf_request {
	const char *ip;		/* client address, IPv4 or IPv6 text; an IPv4-mapped
				 * IPv6 address is treated as IPv4 (RFC 7208 5).
				 * Unparseable: the check ends with SPF_NONE. */
	const char *domain;	/* <domain> (4.1); NULL = the sender's domain (mfrom)
				 * or helo (helo scope) */
	const char *sender;	/* MFROM: the reverse-path without <>; NULL or "" =
				 * postmaster@helo (2.4); "@dom" = postmaster@dom (4.3).
				 * Ignored for the HELO scope (sender = postmaster@helo). */
	const char *helo;	/* HELO/EHLO argument, %{h}; NULL = "" */
	const char *receiver;	/* our host name, %{r} in explanations; NULL = "unknown" */
	enum spf_scope scope;
	long long now_s;	/* seconds since the epoch, %{t} in explanations */
	const char *default_exp; /* explain-string (macros allowed, 6.2) for a fail
				  * without a usable exp=; NULL = SPF_DEFAULT_EXP */
};
#define SPF_DEFAULT_EXP "%{i} is not one of %{d}'s designated mail servers."

/*
 * Bounds. spf_check_new takes NULL for all defaults; a 0 field also means its
 * default. The first two are the RFC's numbers and should stay.
 */
struct spf_limits {
	unsigned max_dns_terms;		/* 10: include a mx ptr exists redirect (4.6.4);
					 * the next one is SPF_PERMERROR */
	unsigned max_void_lookups;	/* 2: NXDOMAIN/NODATA answers to a term's look-up;
					 * the next one is SPF_PERMERROR (4.6.4) */
	unsigned max_mx_names;		/* 10: more MX RRs is SPF_PERMERROR (4.6.4) */
	unsigned max_ptr_names;		/* 10: PTR names beyond are ignored (4.6.4) */
	size_t max_record_bytes;	/* 4096: a longer SPF record is SPF_PERMERROR */
	unsigned max_terms;		/* 128: more terms in a record is SPF_PERMERROR */
	size_t max_exp_bytes;		/* 1024: a longer explanation is not used */
};
void spf_limits_default(struct spf_limits *lim_out);

/* One DNS question asked by the engine. name has no trailing dot. */
#define SPF_NAME_MAX 253
struct spf_query {
	unsigned id;			/* pass back to spf_check_answer; never 0 */
	enum dns_type type;		/* DNS_T_TXT, A, AAAA, MX or PTR */
	char name[SPF_NAME_MAX + 1];
};

enum spf_step { SPF_NEED_DNS = 1, SPF_WAIT, SPF_DONE };

struct spf_check;

/*
 * spf_check_new - start check_host(ip, domain, sender) (RFC 7208 4).
 * req and lim are copied (lim may be NULL). Never NULL. Free with spf_check_free.
 */
struct spf_check *spf_check_new(const struct spf_request *req, const struct spf_limits *lim);

/*
 * spf_check_next - advance as far as the answers received allow.
 * SPF_NEED_DNS: *q_out is a new question; call again for more (several may be
 *   outstanding: the address look-ups of mx names and of ptr names are asked
 *   together). The caller must eventually answer every question, in any
 *   order, or give up on the whole check (report SPF_TEMPERROR, 4.6.4).
 * SPF_WAIT: questions are outstanding and nothing else can be done now.
 * SPF_DONE: the result accessors are valid. Questions still outstanding may be
 *   cancelled; their answers are ignored.
 */
int spf_check_next(struct spf_check *c, struct spf_query *q_out);

/*
 * spf_check_answer - the answer to question id. ans is borrowed (only read
 * during the call). Unknown or repeated ids are ignored. For DNS_OK, ans->rr
 * holds the records of the asked type (others are skipped); NODATA and
 * NXDOMAIN are void look-ups; SERVFAIL, TIMEOUT and ERROR are temporary
 * failures (SPF_TEMPERROR where RFC 7208 5 says so, ignored for exp= 6.2 and
 * ptr validation 5.5).
 */
void spf_check_answer(struct spf_check *c, unsigned id, const struct dns_answer *ans);

/* spf_check_free - NULL is ignored; *c becomes NULL. */
void spf_check_free(struct spf_check **c);

/* Accessors: valid once spf_check_next returned SPF_DONE; strings are
 * borrowed from c until spf_check_free. */
enum spf_result spf_check_result(const struct spf_check *c);
/* The <domain> the check was for (as given, no trailing dot). */
const char *spf_check_domain(const struct spf_check *c);
/* Text of the top-level term that decided ("-all", "include:x.example");
 * NULL when no mechanism matched (default neutral) or on none/errors. */
const char *spf_check_mechanism(const struct spf_check *c);
/* One-line human reason, never NULL: "matched ...", "no SPF record", the
 * syntax or DNS problem with the domain it was found in, ... */
const char *spf_check_reason(const struct spf_check *c);
/* The offending term or name for permerror/temperror, else NULL. */
const char *spf_check_problem(const struct spf_check *c);
/* For SPF_FAIL: the exp= text (6.2, macro-expanded) or the expanded default;
 * NULL for any other result. Printable ASCII only. */
const char *spf_check_explanation(const struct spf_check *c);
/* DNS-querying terms and void look-ups counted against the limits (4.6.4). */
unsigned spf_check_dns_terms(const struct spf_check *c);
unsigned spf_check_void_lookups(const struct spf_check *c);

/*
 * Building blocks, used by the engine and exposed for tests and fuzzing.
 */

/* Parsed SPF record (4.6). Strings point into buf. */
enum spf_term_kind {
	SPF_T_ALL, SPF_T_INCLUDE, SPF_T_A, SPF_T_MX, SPF_T_PTR, SPF_T_IP4,
	SPF_T_IP6, SPF_T_EXISTS, SPF_T_REDIRECT, SPF_T_EXP, SPF_T_UNKNOWN_MOD,
};
struct spf_term {
	enum spf_term_kind kind;
	char qual;		/* '+', '-', '~' or '?' (mechanisms only) */
	const char *text;	/* the whole term as written */
	const char *spec;	/* domain-spec or macro-string (modifier value); NULL if none */
	unsigned cidr4, cidr6;	/* a, mx, ip4, ip6: defaults 32 and 128 */
	struct in_addr ip4;	/* ip4 network */
	struct in6_addr ip6;	/* ip6 network */
};
struct spf_record {
	char *buf;
	struct spf_term *terms;
	size_t nterms;
	int redirect;		/* index of redirect=, -1 if none */
	int exp;		/* index of exp=, -1 if none */
	int has_all;		/* an "all" mechanism: redirect= is ignored (6.1) */
};

/*
 * spf_record_is_spf - the TXT string starts a v=spf1 record (4.5: version is
 * case-insensitive and ends at a space or the end).
 */
int spf_record_is_spf(const char *txt, size_t len);

/*
 * spf_record_parse - check and split a whole record of len bytes (NULs
 * allowed: they are errors); any syntax error anywhere is an error (4.6).
 * lim NULL = defaults (max_record_bytes, max_terms). Returns 0, or -1 with
 * *err_out (static text) and, if problem_out != NULL, the offending term
 * copied into problem_out (NUL-terminated, truncated to problem_len - 1;
 * "" if the error is not one term's). rec_out is filled either way and must
 * be released with spf_record_free.
 */
int spf_record_parse(const char *txt, size_t len, const struct spf_limits *lim,
		     struct spf_record *rec_out, const char **err_out, char *problem_out,
		     size_t problem_len);
void spf_record_free(struct spf_record *rec);

/* Macro values (7.3). NULL strings expand to "". */
struct spf_macro_ctx {
	const char *s, *l, *o, *d;	/* sender, local-part, sender domain, <domain> */
	const char *i;			/* dotted quad, or 32 dot-separated nibbles (IPv6) */
	const char *c;			/* dotted quad, or RFC 5952 text (IPv6) */
	const char *v;			/* "in-addr" or "ip6" */
	const char *p;			/* validated domain name; NULL = "unknown" */
	const char *h;			/* HELO/EHLO domain */
	const char *r;			/* receiver; NULL = "unknown" */
	long long t;			/* timestamp, seconds */
};
#define SPF_MACRO_EXP 1		/* explain-string: c r t letters and spaces allowed */
/* XXX: a domain-spec expanding past this is treated as an unusable name
 * (no match) rather than truncated from the left as 7.3 would; only records
 * built to blow up (hundreds of %{s}) get there. */
#define SPF_MACRO_MAX_OUT 16384	/* longer expansions are errors */

/* spf_macro_check - macro-string syntax (7.1). 0, or -1 with *err_out (static). */
int spf_macro_check(const char *s, size_t len, int flags, const char **err_out);
/* spf_domain_spec_check - domain-spec = macro-string domain-end (7.1). */
int spf_domain_spec_check(const char *s, size_t len, const char **err_out);
/* spf_macro_uses_p - s has a %{p} (any case): expanding needs PTR look-ups. */
int spf_macro_uses_p(const char *s, size_t len);
/*
 * spf_macro_expand - append the expansion of s to out (7.3, 7.4). Uppercase
 * letters are URL-escaped. Returns 0, or -1 with *err_out on a syntax error
 * or an expansion over SPF_MACRO_MAX_OUT bytes (out then holds garbage).
 */
int spf_macro_expand(const struct spf_macro_ctx *m, const char *s, size_t len, int flags,
		     struct sbuf *out, const char **err_out);
/*
 * spf_target_name - turn an expanded domain-spec into a query name in place:
 * drop left labels while longer than 253 (7.3), drop one trailing dot. Returns
 * 0, or -1 if it is not a usable DNS name (empty, empty or >63-byte label).
 */
int spf_target_name(struct sbuf *name);
/* spf_domain_valid - 4.3: a multi-label, non-literal name with sane labels. */
int spf_domain_valid(const char *name);

#endif
