/*
 * rfc5322: header-field unfolding and address lists (From, To, Cc, ...).
 * Owns: unfolding (RFC 5322 2.2.3), the address grammar of 3.4 (mailbox,
 * name-addr, angle-addr, addr-spec, group, mailbox-list, address-list) with
 * CFWS (3.2.2), quoted strings (3.2.4), dot-atom, domain literals (3.4.1),
 * the obsolete forms of section 4 (obs-local-part, obs-domain, obs-route,
 * obs-angle-addr, empty list elements) and UTF-8 (RFC 6532 3.2).
 * Leaves: finding the header fields in a message, counting From fields (a
 * message with 0 or 2+ From fields is the caller's decision: DMARC treats it
 * as malformed), RFC 2047 decoding, IDNA (A-label <-> U-label), DNS, policy.
 *
 * Input is untrusted: no guessing. Unbalanced '<' '>' '"' '(' ')', a missing
 * '@' or domain, trailing garbage, NUL, CR or LF left after unfolding,
 * control characters, and bytes >= 0x80 outside quoted strings and comments
 * that are not well-formed UTF-8 are errors, never repaired. Memory is
 * bounded by RFC5322_MAX_VALUE_BYTES and RFC5322_MAX_ADDRS.
 * No I/O, clock, globals or logging inside; thread-safe.
 *
 * Use (DMARC, RFC 7489 6.6.1 / RFC 9989: every distinct From domain):
 *	struct rfc5322_addrlist l;
 *	const char *err, *doms[RFC5322_MAX_ADDRS];
 *	if (rfc5322_parse_from(value, value_len, &l, &err) != 0)
 *		malformed From: log err, reject or permerror;
 *	size_t n = rfc5322_domains(&l, doms, RFC5322_MAX_ADDRS);	(n >= 1)
 *	... evaluate doms[0..n-1] ...
 *	rfc5322_addrlist_free(&l);
 */
#ifndef SLUICE_PROTO_RFC5322_H
#define SLUICE_PROTO_RFC5322_H

#include <stddef.h>

/* Caps. A value longer than this is RFC5322_ERR_TOO_LONG without parsing;
 * more addresses than RFC5322_MAX_ADDRS is RFC5322_ERR_TOO_MANY (never a
 * truncated list: a From with 101 addresses must not lose the 101st domain).
 * A domain (after CFWS removal) longer than RFC5322_MAX_DOMAIN_BYTES (RFC 1035
 * 2.3.4 / RFC 5321 4.5.3.1.2) is RFC5322_ERR_TOO_LONG too. */
#define RFC5322_MAX_VALUE_BYTES  65536
#define RFC5322_MAX_ADDRS        100
#define RFC5322_MAX_DOMAIN_BYTES 255

/* Results. 0 is success; every error has a static text (rfc5322_strerror). */
enum rfc5322_err {
	RFC5322_OK = 0,
	RFC5322_ERR_EMPTY,		/* no mailbox at all (empty, only CFWS or commas;
					 * for rfc5322_parse_from also: only groups) */
	RFC5322_ERR_SYNTAX,		/* anything else that is not the grammar */
	RFC5322_ERR_UNBALANCED_ANGLE,	/* '<' without '>' or '>' without '<' */
	RFC5322_ERR_UNBALANCED_QUOTE,	/* '"' not closed */
	RFC5322_ERR_UNBALANCED_COMMENT,	/* '(' not closed, or ')' outside a comment */
	RFC5322_ERR_NO_DOMAIN,		/* addr-spec without '@' or without a domain */
	RFC5322_ERR_NO_LOCAL,		/* addr-spec with an empty local part ("@d") */
	RFC5322_ERR_BAD_DOMAIN,		/* empty label, trailing dot, bad domain literal */
	RFC5322_ERR_GROUP,		/* group where only mailboxes are allowed (From),
					 * nested group, or group not closed by ';' */
	RFC5322_ERR_TRAILING,		/* garbage after an address (e.g. "u@d <x@e>") */
	RFC5322_ERR_NUL,		/* NUL byte in the value */
	RFC5322_ERR_CTL,		/* CR/LF not part of a fold, or another control char */
	RFC5322_ERR_8BIT,		/* byte >= 0x80 that is not well-formed UTF-8, or
					 * any such byte outside UTF-8-capable places */
	RFC5322_ERR_TOO_MANY,		/* more than RFC5322_MAX_ADDRS addresses */
	RFC5322_ERR_TOO_LONG,		/* value or domain over its cap */
};
/* rfc5322_strerror - static English text for an enum rfc5322_err value
 * ("unbalanced angle bracket", ...); "unknown error" for anything else. */
const char *rfc5322_strerror(int err);

/*
 * One mailbox (3.4). Every string is NUL-terminated, owned by the list and
 * freed by rfc5322_addrlist_free.
 *  display: the display-name (3.4 name-addr) with comments removed, each
 *	quoted-string unquoted (quoted-pairs resolved) and words joined by one
 *	space; RFC 2047 encoded words are left as they are ("=?utf-8?q?...?=").
 *	NULL when the mailbox has no display name (a bare addr-spec, or "<a@b>");
 *	"" for an empty quoted display name ("\"\" <a@b>").
 *	Bytes >= 0x80 from quoted strings are passed through unchecked.
 *  local: the local-part, semantic value: quotes removed, quoted-pairs
 *	resolved, CFWS around obs-local-part dots removed ("\"a b\"@x" -> a b).
 *	Empty only for an empty quoted local part ("\"\"@x", valid 3.4.1).
 *	Not lower-cased.
 *  domain: the domain with CFWS removed; ASCII letters lower-cased, UTF-8
 *	(RFC 6532) bytes kept as they are (no IDNA, no Unicode case folding).
 *	Never empty, never contains '@', no empty labels, at most
 *	RFC5322_MAX_DOMAIN_BYTES bytes. A domain literal keeps its brackets
 *	("[192.0.2.1]", "[ipv6:2001:db8::1]"), FWS inside removed.
 *  domain_literal: 1 when domain is a domain-literal (3.4.1), else 0.
 *  group: the display-name of the group this mailbox is in (decoded like
 *	display), or NULL outside a group. Only rfc5322_parse_addrlist sets it.
 *  had_route: 1 when an obs-route ("<@a,@b:u@d>", 4.4) was present and
 *	dropped, else 0.
 */
struct rfc5322_addr {
	char *display;
	char *local;
	char *domain;
	int domain_literal;
	char *group;
	int had_route;
};

/* The mailboxes of one field value, in order. addr is NULL when n == 0. */
struct rfc5322_addrlist {
	struct rfc5322_addr *addr;
	size_t n;
};

/*
 * rfc5322_parse_from - parse the value of a From field (3.6.2 from =
 * mailbox-list; 4.5.2 obs-from = obs-mbox-list: empty elements such as
 * "a@b, , c@d" allowed). Groups are RFC5322_ERR_GROUP. On success n >= 1.
 * XXX: RFC 6854 allows groups in From for limited use; they are refused here
 * on purpose, as DMARC needs an author domain (use rfc5322_parse_addrlist to
 * accept them).
 * Also right for Resent-From, and for Sender (3.6.2 mailbox: check n == 1).
 * value need not be NUL-terminated (len bytes are read; NULL if len is 0).
 * The value may still be folded: CRLF or LF followed by SP/HTAB is unfolded
 * first (2.2.3); one CRLF or LF at the very end is ignored.
 * Returns 0, or an enum rfc5322_err with *out set to { NULL, 0 }; either way
 * *err_out (if err_out is not NULL) gets rfc5322_strerror() of the result
 * ("ok" on success). On success the caller frees *out with
 * rfc5322_addrlist_free. *out need not be initialised.
 */
int rfc5322_parse_from(const char *value, size_t len, struct rfc5322_addrlist *out,
		       const char **err_out);

/*
 * rfc5322_parse_addrlist - the same for an address-list (3.4; To, Cc, Bcc,
 * Reply-To, Resent-To, ...): groups allowed, "name:;" included (4.4
 * obs-group-list too), each group's mailboxes carry addr.group. On success
 * n may be 0 (only empty groups, e.g. "undisclosed-recipients:;"); an
 * entirely empty value is still RFC5322_ERR_EMPTY. Same inputs, outputs and
 * errors as rfc5322_parse_from.
 */
int rfc5322_parse_addrlist(const char *value, size_t len, struct rfc5322_addrlist *out,
			   const char **err_out);

/* rfc5322_addrlist_free - free everything in *l and set it to { NULL, 0 }.
 * Accepts an already freed or failed list. Does not free l itself. */
void rfc5322_addrlist_free(struct rfc5322_addrlist *l);

/*
 * rfc5322_domains - the distinct domains of l in first-seen order (byte
 * comparison of the lower-cased domains, so "A.Example" and "a.example" are
 * one). Stores at most max pointers in out[] (out may be NULL when max is 0)
 * and returns the number of distinct domains, which may exceed max (then the
 * caller's array was too short: size it RFC5322_MAX_ADDRS to never miss one).
 * The pointers are borrowed from l: valid until rfc5322_addrlist_free(l).
 * Domain literals are included (with their brackets; check
 * addr.domain_literal if that matters).
 * XXX: a U-label and its A-label ("bücher.example", "xn--bcher-kva.example")
 * count as two domains: IDNA is left to the caller.
 */
size_t rfc5322_domains(const struct rfc5322_addrlist *l, const char **out, size_t max);

/*
 * rfc5322_unfold - RFC 5322 2.2.3 / 3.2.2: remove every CRLF (or bare LF)
 * that is immediately followed by SP or HTAB; the WSP stays. Other bytes,
 * including CR/LF not followed by WSP and NULs, are copied unchanged.
 * out must have room for len + 1 bytes; it is NUL-terminated. in and out may
 * be the same buffer (unfolding in place). Returns the length written
 * (without the NUL), always <= len.
 */
size_t rfc5322_unfold(const char *in, size_t len, char *out);

/* rfc5322_unfold_dup - the same into a new buffer (caller frees, never NULL);
 * *len_out (if not NULL) gets the length. */
char *rfc5322_unfold_dup(const char *in, size_t len, size_t *len_out);

#endif
