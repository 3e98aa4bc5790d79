/*
 * dns: DNS look-ups over c-ares for every sluice daemon.
 * Owns: the resolver configuration (dns_servers host[:port] list,
 * dns_timeout, dns_tries), an asynchronous API for libevent loops, a
 * blocking-with-deadline API for threads (libmilter), and decoding answers
 * (A, AAAA, MX, TXT, PTR, CNAME, SOA-derived negative TTL) into plain structs.
 * Leaves: caching policy and what an answer means (SPF, DNSBL, ...) to callers.
 * Answers are untrusted: malformed packets become DNS_ERROR, never a crash.
 */
#ifndef SLUICE_PROTO_DNS_H
#define SLUICE_PROTO_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

struct event_base;

/* RR types we decode (numeric values as on the wire). */
enum dns_type {
	DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12,
	DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28,
};

enum dns_status {
	DNS_OK = 0,		/* NOERROR with at least one answer of the asked type */
	DNS_NODATA,		/* NOERROR, no answer of that type (name exists) */
	DNS_NXDOMAIN,		/* name does not exist */
	DNS_SERVFAIL,		/* SERVFAIL / REFUSED / other RCODE: temporary */
	DNS_TIMEOUT,		/* no answer within dns_timeout x dns_tries (or deadline) */
	DNS_ERROR,		/* malformed answer, bad name, resolver failure */
};
const char *dns_status_name(enum dns_status s);	/* "ok", "nodata", "nxdomain", ... */
/* dns_status_is_temp - SERVFAIL, TIMEOUT, ERROR: try later (temperror). */
int dns_status_is_temp(enum dns_status s);

struct dns_rr {
	enum dns_type type;
	uint32_t ttl;
	union {
		struct in_addr a;	/* A */
		struct in6_addr aaaa;	/* AAAA */
		struct {
			uint16_t pref;
			char *host;	/* no trailing dot */
		} mx;			/* MX */
		char *name;		/* PTR, CNAME, NS target (no trailing dot) */
		struct {
			char *data;	/* the character-strings of one RR concatenated (RFC 7208 3.3) */
			size_t len;	/* may contain NUL bytes */
			size_t nstrings;
		} txt;			/* TXT */
	} u;
};

struct dns_answer {
	enum dns_status status;
	const char *qname;	/* as asked, without trailing dot */
	enum dns_type qtype;
	uint32_t ttl;		/* min TTL of the answer RRs; for NXDOMAIN/NODATA the
				 * negative TTL (RFC 2308: min(SOA TTL, SOA minimum)), 0 if unknown */
	size_t n;		/* records of qtype only (CNAME chain followed by the server) */
	struct dns_rr *rr;
};
void dns_answer_free(struct dns_answer **a);

struct dns_opts {
	const char *const *servers;	/* "host" or "host:port" or "[v6]:port"; NULL/0 = /etc/resolv.conf */
	size_t nservers;
	int timeout_ms;			/* per try; 0 = 5000 */
	int tries;			/* 0 = 2 */
};

struct dns_resolver;

/*
 * dns_new - a resolver. base != NULL: asynchronous use from that libevent
 * loop (dns_query); base == NULL: blocking use (dns_query_sync), safe to call
 * from one thread at a time per resolver (make one per thread, or lock).
 * Returns NULL with *err_out (caller frees) on a bad server list.
 */
struct dns_resolver *dns_new(struct event_base *base, const struct dns_opts *o, char **err_out);
/* dns_free - cancels pending queries (their callbacks are NOT called). */
void dns_free(struct dns_resolver **r);

struct dns_req;
/*
 * dns_cb - called once from the event loop with the answer; the answer is
 * borrowed and freed after the callback returns.
 */
typedef void (*dns_cb)(void *arg, const struct dns_answer *ans);

/*
 * dns_query - start an asynchronous look-up of name (with or without the
 * trailing dot) for type. Returns a handle usable with dns_cancel until the
 * callback has run. The callback may run before dns_query returns only if
 * the name is invalid (then status DNS_ERROR).
 */
struct dns_req *dns_query(struct dns_resolver *r, const char *name, enum dns_type type,
			  dns_cb cb, void *arg);
/* dns_cancel - the callback of req will not be called. NULL is ignored. */
void dns_cancel(struct dns_req *req);

/*
 * dns_query_sync - blocking look-up with an overall deadline (ms, 0 = the
 * resolver's timeout x tries). Returns a new answer (never NULL; status says
 * what happened); caller frees with dns_answer_free.
 */
struct dns_answer *dns_query_sync(struct dns_resolver *r, const char *name, enum dns_type type,
				  int deadline_ms);

/* Helpers: reverse names for PTR and DNSBL look-ups. */
/* dns_reverse_name - "4.3.2.1.in-addr.arpa" / nibble ".ip6.arpa" name for addr; -1 if not an IP. */
int dns_reverse_name(const char *addr, char *out, size_t outlen);
/* dns_dnsbl_name - "4.3.2.1.zone" (IPv4) or nibbles + ".zone" (IPv6); -1 if not an IP. */
int dns_dnsbl_name(const char *addr, const char *zone, char *out, size_t outlen);

#endif
