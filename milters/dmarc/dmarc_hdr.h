/*
 * dmarc_hdr: the header text sluice-dmarc reads itself, beside the shared
 * parsers (From: proto/rfc5322, Authentication-Results: proto/authres).
 * Owns: tags of a DKIM-Signature tag-list (d= and b=, to check that a
 * trusted dkim=pass names a signature that is really in the message), the
 * result and key-value pairs of a Received-SPF field (RFC 7208 9.1), and the
 * domain of an address.
 * Leaves: what is trusted (dmarc_msg.c), DKIM verification (sluice-dkim).
 * Input is untrusted: no I/O, no globals, never writes past outlen; a value
 * too long for out is cut, which only ever makes a comparison fail.
 */
#ifndef SLUICE_DMARC_HDR_H
#define SLUICE_DMARC_HDR_H

#include <stddef.h>

/*
 * dmarc_hdr_tag - the value of tag (case-sensitive, RFC 6376 3.2) in the
 * tag-list v, folding white space removed, NUL-terminated into out.
 * 0, or -1 when the tag is absent (out is then unchanged).
 */
int dmarc_hdr_tag(const char *v, const char *tag, char *out, size_t outlen);

/* dmarc_hdr_rspf_result - the result word of a Received-SPF value ("pass", "Fail", ...). */
void dmarc_hdr_rspf_result(const char *v, char *out, size_t outlen);

/*
 * dmarc_hdr_rspf_field - the value of key (case-insensitive) in the
 * key-value-list of a Received-SPF value (after the result and comments):
 * a quoted-string is unquoted, a dot-atom taken as is. 0, or -1 if absent.
 */
int dmarc_hdr_rspf_field(const char *v, const char *key, char *out, size_t outlen);

/* dmarc_hdr_strip_angle - "<a@b>" -> "a@b" in place. */
void dmarc_hdr_strip_angle(char *s);

/* dmarc_hdr_addr_domain - the part after the last '@' (borrowed), or NULL. */
const char *dmarc_hdr_addr_domain(const char *addr);

#endif
