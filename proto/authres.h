/*
 * authres: Authentication-Results header values (RFC 8601), parse and format.
 * Owns: the syntax of the field body (RFC 8601 section 2.2: authserv-id,
 * version, "none", resinfo = method[/version]=result [reason=] ptype.property=
 * pvalue; RFC 5322 CFWS: folding and nested comments anywhere; RFC 2045
 * value = token / quoted-string), the cheap authserv-id reader used to remove
 * forged headers (section 5), and the text we write (the form OpenDKIM and
 * OpenDMARC write).
 * Leaves: which authserv-ids to trust and what a result means (the milters:
 * sluice-dkim removes forged headers, sluice-dmarc trusts or ignores them),
 * the field name "Authentication-Results:", header I/O.
 * No I/O, no globals, no logging. Input is untrusted: every length is checked,
 * the parse is bounded by the AUTHRES_MAX_* caps, malformed input gives an
 * error code, never a crash.
 *
 * Parse:
 *	struct authres *a; const char *err;
 *	if (authres_parse(value, len, &a, &err) == 0) {
 *		for (size_t i = 0; i < a->nresults; i++)
 *			a->results[i].method, .result, .reason, .props[k] ...
 *		authres_free(&a);
 *	}
 * Format (what sluice-dkim writes; sluice-dmarc writes its results the same way):
 *	struct sbuf b; struct authres_fmt f;
 *	sbuf_init(&b);
 *	authres_fmt_begin(&f, &b, "mx.example.net", 1);
 *	authres_fmt_result(&f, "dmarc", "fail", NULL, "p=reject dis=reject");
 *	authres_fmt_prop(&f, "header", "from", "example.com");
 *	authres_fmt_prop(&f, "policy", "dmarc", "reject");
 *	authres_fmt_result(&f, "spf", "pass", NULL, NULL);
 *	authres_fmt_prop(&f, "smtp", "mailfrom", "user@example.com");
 *	authres_fmt_end(&f);
 *	-> b.buf = " mx.example.net;\n\tdmarc=fail (p=reject dis=reject)
 *	   header.from=example.com policy.dmarc=reject;\n\tspf=pass
 *	   smtp.mailfrom=user@example.com"   (one line per result, see below)
 */
#ifndef SLUICE_PROTO_AUTHRES_H
#define SLUICE_PROTO_AUTHRES_H

#include <stddef.h>

struct sbuf;

/* Caps on one parse; beyond them authres_parse() fails with AUTHRES_ELIMIT. */
#define AUTHRES_MAX_BYTES 65536		/* length of the value */
#define AUTHRES_MAX_RESULTS 64		/* resinfo entries */
#define AUTHRES_MAX_PROPS 32		/* propspecs per resinfo */

/* Return codes of authres_parse(). */
enum authres_status {
	AUTHRES_OK = 0,
	AUTHRES_ESYNTAX = -1,	/* not RFC 8601 section 2.2 (with the leniencies below) */
	AUTHRES_ELIMIT = -2,	/* a cap above was exceeded */
};

/* ptype.property=value (RFC 8601 section 2.2 propspec). */
struct authres_prop {
	const char *ptype;	/* lower-cased: "smtp", "header", "body", "policy"; "" for a
				 * bare key=value (leniency 2 below) */
	const char *property;	/* lower-cased, may hold dots: "d", "from", "mailfrom",
				 * "iprev", "dkim.x" */
	const char *value;	/* unquoted (quoted-pairs resolved, folding removed), case kept;
				 * "" for an empty quoted-string; comments dropped */
};

/* One resinfo. */
struct authres_result {
	const char *method;		/* lower-cased: "dkim", "spf", "dmarc", "x-tls" */
	const char *method_version;	/* NULL, or the digits of "method/1" */
	const char *result;		/* lower-cased: "pass", "fail", "none", ... */
	const char *reason;		/* NULL, or the unquoted value of reason= */
	size_t nprops;
	struct authres_prop *props;	/* in header order */
};

struct authres {
	const char *authserv_id;	/* unquoted, case kept (compare it case-insensitively) */
	const char *version;		/* NULL, or the digits of the A-R version ("1") */
	size_t nresults;		/* 0: the no-result form "; none" */
	struct authres_result *results;	/* in header order */
	/* private: the storage every pointer above points into */
	char *pool_;
	struct authres_prop *props_;
};

/*
 * authres_parse - parse an Authentication-Results field body (RFC 8601 section
 * 2.2): value[0..len) is the text after "Authentication-Results:", folded or
 * not, with or without the final CRLF (CR and LF count as white space; in
 * quoted-strings they are dropped, even as quoted-pairs: folding, not text).
 * NUL bytes are not white space: outside comments they are a syntax error.
 * On success returns AUTHRES_OK and *out owns the parse (free with
 * authres_free()); every string in it lives until then. On failure returns
 * AUTHRES_ESYNTAX or AUTHRES_ELIMIT, *out = NULL and, if err_out is not NULL,
 * *err_out = a static English description ("result expected after '='").
 *
 * Strict RFC 8601 ABNF, plus these leniencies for what real servers write:
 *  1. an unquoted value (pvalue, reason) may hold any byte but white space,
 *     controls, '"', '(', ')', ';' and '\': "header.b=oF80QtY/",
 *     "policy.iprev=2001:db8::1", "smtp.mailfrom=a=b@example.com";
 *  2. a bare key=value after the result (no "ptype."), e.g. "x-tls=pass
 *     version=TLSv1.2", is kept as a property with ptype "";
 *  3. keywords (method, result, ptype, property) may hold '_' as well as
 *     letters, digits and '-';
 *  4. one ';' after the last resinfo (AOL, Microsoft).
 * A resinfo without "=result", "none" beside results, an empty result or an
 * empty unquoted value, and a missing authserv-id are errors. "reason" is the
 * reasonspec only directly after the result; later it is a bare property.
 * The authserv-id is strict: an RFC 2045 token (US-ASCII) or a non-empty
 * quoted-string.
 */
int authres_parse(const char *value, size_t len, struct authres **out, const char **err_out);

/* authres_free - frees *a (NULL allowed) and sets *a = NULL. */
void authres_free(struct authres **a);

/*
 * authres_prop_get - the value of the first property ptype.property of r
 * (both compared case-insensitively), or NULL. Borrowed from the parse.
 */
const char *authres_prop_get(const struct authres_result *r, const char *ptype,
			     const char *property);

/*
 * authres_authserv_id - only the authserv-id of an A-R value (as above),
 * cheaply and without allocating, to remove forged headers (RFC 8601 section
 * 5): skips CFWS (nested comments, folding), then takes a quoted-string
 * (unquoted, CR and LF dropped as above) or the bytes up to white space, ';', '(' or a
 * non-ASCII byte. Writes it NUL-terminated into out (at most outlen-1 bytes).
 * Returns 0, or -1 if there is none or it does not fit.
 * Whenever authres_parse() succeeds, this gives the same authserv-id; it also
 * gives one for some values authres_parse() rejects ("id=x; ...": "id=x").
 */
int authres_authserv_id(const char *value, size_t len, char *out, size_t outlen);

/*
 * Format. The builder appends to a caller's sbuf (borrowed until
 * authres_fmt_end()); the text is the field body without the field name,
 * starting with a space:
 *	" id;<nl>method=result[ reason=R][ (comment)][ ptype.prop=value...]
 *	 [;<nl>method=result ...]"
 * <nl> is "\r\n\t", or "\n\t" if lf_only (what milter header edits expect).
 * With no result, authres_fmt_end() writes "<nl>none" (RFC 8601 no-result).
 * The authserv-id, reason and values are written as RFC 2045 values (a token,
 * else a quoted-string with '"' and '\' escaped, CR and LF dropped); see
 * authres_fmt_prop() for addresses. Method, result, ptype and property are
 * written as given: the caller passes keywords. The output parses back with
 * authres_parse() to the same strings (keywords lower-cased).
 */
struct authres_fmt {
	struct sbuf *b;		/* borrowed */
	const char *nl;		/* "\r\n\t" or "\n\t" */
	size_t nresults;	/* results written so far */
};

/* authres_fmt_begin - appends " authserv-id;" to b. */
void authres_fmt_begin(struct authres_fmt *f, struct sbuf *b, const char *authserv_id,
		       int lf_only);

/*
 * authres_fmt_result - starts a resinfo: "[;]<nl>method=result", then
 * " reason=R" if reason is not NULL, then " (comment)" if comment is not NULL
 * ('(', ')' and '\' in it escaped as quoted-pairs, CR and LF dropped).
 */
void authres_fmt_result(struct authres_fmt *f, const char *method, const char *result,
			const char *reason, const char *comment);

/*
 * authres_fmt_prop - appends " ptype.property=value" to the current result
 * (panic() if there is none). The value is written unquoted if it is a token,
 * or an address or domain that needs no quoting ([local-part]@domain with no
 * white space, controls or ()<>,;:\"[] and one '@': RFC 8601 pvalue,
 * "smtp.mailfrom=user@example.com", "header.i=@example.com"); else quoted.
 */
void authres_fmt_prop(struct authres_fmt *f, const char *ptype, const char *property,
		      const char *value);

/*
 * authres_fmt_prop_value - as authres_fmt_prop(), but the value is written as
 * an RFC 2045 value only: a token or a quoted-string ("a@b" is quoted).
 */
void authres_fmt_prop_value(struct authres_fmt *f, const char *ptype, const char *property,
			    const char *value);

/* authres_fmt_end - writes "<nl>none" if no result was written. b stays the caller's. */
void authres_fmt_end(struct authres_fmt *f);

/*
 * authres_format - a whole parse written back with the builder above (no
 * comments: the parse has none; properties with ptype "" as bare key=value).
 * Returns a new string; the caller frees.
 */
char *authres_format(const struct authres *a, int lf_only);

/* authres_quote_value - appends v as an RFC 2045 value (token or quoted-string). */
void authres_quote_value(struct sbuf *b, const char *v);

#endif
