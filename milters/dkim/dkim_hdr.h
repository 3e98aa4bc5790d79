/*
 * dkim_hdr: the header text sluice-dkim reads and writes itself.
 * Owns: the domain of the From address (to choose signing keys) and which
 * fields of each signature go into our Authentication-Results (one dkim=
 * result per signature, in the form OpenDKIM writes).
 * Leaves: Authentication-Results syntax, reading the authserv-id of forged
 * ones and quoting to proto/authres; DKIM canonicalization and crypto to
 * libopendkim (dkim_msg.c).
 * Input is untrusted: no I/O, no globals, every length checked.
 */
#ifndef SLUICE_DKIM_HDR_H
#define SLUICE_DKIM_HDR_H

#include "proto/authres.h"

#include <stddef.h>

/*
 * dkim_hdr_from_domain - the domain of the first mailbox in a From (or
 * Sender) header value: "Name <user@dom>", "user@dom (comment)",
 * "\"a@b\" <user@dom>", groups. Lower-cased into out; local part into
 * local_out (may be NULL). Returns 0, or -1 when there is no address.
 */
int dkim_hdr_from_domain(const char *value, size_t len, char *out, size_t outlen,
			 char *local_out, size_t local_outlen);

/* Result of one signature, as reported in Authentication-Results. */
enum dkim_res {
	DKIM_RES_NONE,		/* no signature */
	DKIM_RES_PASS,
	DKIM_RES_FAIL,		/* signature or body hash did not verify */
	DKIM_RES_POLICY,	/* verified or not, refused by local policy (RFC 8301, l=, key size) */
	DKIM_RES_NEUTRAL,
	DKIM_RES_TEMPERROR,	/* key look-up failed temporarily */
	DKIM_RES_PERMERROR,	/* unusable signature or key record */
};
const char *dkim_res_name(enum dkim_res r);

struct dkim_hdr_sig {
	enum dkim_res res;
	const char *reason;	/* NULL or text for reason="..." */
	unsigned key_bits;	/* 0 = unknown (no comment) */
	int testing;		/* key record t=y */
	const char *d, *i, *s, *a, *b;	/* NULL = omitted */
};

/*
 * dkim_hdr_ar_format - the value of our Authentication-Results header
 * (without the field name, starting with a space), written with
 * proto/authres's builder:
 *   " id;\r\n\tdkim=pass (2048-bit key; unprotected) header.d=... header.i=...
 *    header.a=... header.s=... header.b=XXXXXXXX"
 * one result per sig, ";\r\n\t" between them; nsig == 0 gives "dkim=none".
 * reason= (if any) comes before the comment; header.b is cut to 8 bytes;
 * values are quoted as authres_fmt_prop() (d, i) and authres_fmt_prop_value()
 * (a, s, b) say. Caller frees.
 * If lf_only, line breaks are "\n" (what milter header edits expect).
 */
char *dkim_hdr_ar_format(const char *authserv_id, const struct dkim_hdr_sig *sigs, size_t nsig,
			 int lf_only);

#endif
