/*
 * dns: DNS look-ups over c-ares for every sluice daemon.
 * Owns: the resolver configuration (dns_servers host[:port] list,
 * dns_timeout, dns_tries), an asynchronous API for libevent loops, a
 * blocking-with-deadline API for threads (libmilter), and decoding answers
 * (A, AAAA, MX, TXT, PTR, CNAME, SOA-derived negative TTL) into plain structs.
 * Leaves: caching policy and what an answer means (SPF, DNSBL, ...) to callers.
 * Answers are untrusted: malformed packets become DNS_ERROR, never a crash.
 *
 * Names in answers are in presentation form as glibc prints them (special
 * bytes escaped as \DDD or \c), lower/upper case as received, no trailing
 * dot; the root name is "". Query names may be given with or without the
 * trailing dot; they must be plain host-like names: 1..253 bytes, labels of
 * 1..63 bytes, printable ASCII without the presentation specials
 * \ " ( ) ; @ $ (anything else is DNS_ERROR without a query being sent).
 * At most DNS_MAX_RR records of the asked type are kept per answer (the rest
 * are ignored) and at most DNS_MAX_CNAME CNAMEs are followed.
 * Link with c-ares, libevent and -lresolv (ns_initparse, ns_parserr).
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
			char *data;	/* the character-strings of one RR concatenated (RFC 7208 3.3);
					 * data[len] == 0 as a convenience */
			size_t len;	/* may contain NUL bytes */
			size_t nstrings;
		} txt;			/* TXT */
	} u;
};

#define DNS_MAX_RR 256
#define DNS_MAX_CNAME 16

struct dns_answer {
	enum dns_status status;
	const char *qname;	/* as asked, without trailing dot, in presentation form
				 * (odd bytes escaped as \DDD or \c, like ns_name_ntop) */
	enum dns_type qtype;
	uint32_t ttl;		/* min TTL of the answer RRs; for NXDOMAIN/NODATA the
				 * negative TTL (RFC 2308: min(SOA TTL, SOA minimum)), 0 if unknown */
	size_t n;		/* records of qtype only (CNAME chain followed by the server) */
	struct dns_rr *rr;
};
/*
 * For DNS_OK, ttl is the minimum over the returned records and the CNAMEs
 * that led to them. RR types other than those in the union (e.g. asking for
 * SOA) come back with type and ttl only. TTLs above 2^31-1 read as 0
 * (RFC 2181 8). An MX "0 ." (RFC 7505 null MX) has host "".
 */
void dns_answer_free(struct dns_answer **a);

/*
 * dns_answer_decode - decode one raw DNS response (as received) for the
 * question (qname, qtype). qname NULL = take it from the question section.
 * Only answer RRs of class IN owned by qname, or by the end of the CNAME chain
 * starting at qname inside the answer section, are returned. RCODE NOERROR
 * gives DNS_OK/DNS_NODATA, NXDOMAIN gives DNS_NXDOMAIN, every other RCODE
 * DNS_SERVFAIL; a packet that does not parse, is not a response, or holds a
 * malformed record of the asked type gives DNS_ERROR. Negative TTL (NODATA,
 * NXDOMAIN) from the first SOA of the authority section: min(SOA TTL,
 * SOA minimum), RFC 2308 5. Never NULL; caller frees with dns_answer_free.
 */
struct dns_answer *dns_answer_decode(const unsigned char *pkt, size_t len, const char *qname,
				     enum dns_type qtype);

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
/*
 * dns_free - cancels pending queries (their callbacks are NOT called).
 * Must not be called from inside a dns_cb of the same resolver (panics):
 * leave the loop or defer it with event_base_once instead.
 */
void dns_free(struct dns_resolver **r);

/*
 * dns_pending - requests the resolver still holds: not yet answered, plus
 * cancelled or timed-out ones c-ares has not given up on yet. For stats and
 * for draining before dns_free.
 */
size_t dns_pending(const struct dns_resolver *r);

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
 * (This implementation never calls it before dns_query returns: an invalid
 * name or an immediate resolver failure is delivered from the loop, and the
 * returned handle is never NULL.) The callback runs at the latest
 * timeout_ms x tries after dns_query, with DNS_TIMEOUT if nothing better
 * came in. Inside the callback dns_query and dns_cancel (of other requests)
 * may be used; dns_free may not. base must be non-NULL for this resolver.
 */
struct dns_req *dns_query(struct dns_resolver *r, const char *name, enum dns_type type,
			  dns_cb cb, void *arg);
/*
 * dns_cancel - the callback of req will not be called. NULL is ignored.
 * The request's memory is released when c-ares is done with it (at the
 * latest after its own retries time out, or at dns_free).
 */
void dns_cancel(struct dns_req *req);

/*
 * dns_query_sync - blocking look-up with an overall deadline (ms, 0 = the
 * resolver's timeout x tries). Returns a new answer (never NULL; status says
 * what happened); caller frees with dns_answer_free.
 * Only for resolvers made with base == NULL (panics otherwise). Sockets are
 * waited for with poll(2), so any fd number works.
 */
struct dns_answer *dns_query_sync(struct dns_resolver *r, const char *name, enum dns_type type,
				  int deadline_ms);

/* Helpers: reverse names for PTR and DNSBL look-ups. */
/* dns_reverse_name - "4.3.2.1.in-addr.arpa" / nibble ".ip6.arpa" name for addr; -1 if not an IP. */
int dns_reverse_name(const char *addr, char *out, size_t outlen);
/* dns_dnsbl_name - "4.3.2.1.zone" (IPv4) or nibbles + ".zone" (IPv6); -1 if not an IP. */
int dns_dnsbl_name(const char *addr, const char *zone, char *out, size_t outlen);

#endif
