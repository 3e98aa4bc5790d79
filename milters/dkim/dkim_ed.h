/*
 * dkim_ed: our own ed25519-sha256 signer (RFC 8463 over RFC 6376).
 * Why: libopendkim 2.11 signs Ed25519 but dkim_free() never frees the
 * signing key it loaded (about 1.3 KB per message, seen with ASan), which a
 * long-running milter cannot afford. Verification stays with libopendkim.
 * Owns: header and body canonicalization (simple/relaxed, RFC 6376 3.4),
 * header selection for h= (bottom-up, oversigning), the signature header
 * text, and the Ed25519 signature over SHA-256 of the header hash input.
 * Leaves: key loading to dkim_keys.c. No I/O.
 */
#ifndef SLUICE_DKIM_ED_H
#define SLUICE_DKIM_ED_H

#include <stddef.h>
#include <stdint.h>

struct dkim_ed;

/*
 * dkim_ed_new - pem: PKCS#8 Ed25519 private key. hsimple/bsimple: 1 for
 * simple canonicalization. sign_hdrs/oversign: NULL-terminated names
 * (sign_hdrs NULL or {"*"} = every header). t: signing time (0 = now),
 * ttl_s: x= = t + ttl_s when > 0. NULL if the key does not load.
 */
struct dkim_ed *dkim_ed_new(const char *pem, const char *domain, const char *selector, int hsimple,
			    int bsimple, char *const *sign_hdrs, char *const *oversign, uint64_t t,
			    uint64_t ttl_s);
/* dkim_ed_header - one header line "Name:value" (CRLF inside folds, none at the end). */
void dkim_ed_header(struct dkim_ed *e, const char *line, size_t len);
void dkim_ed_body(struct dkim_ed *e, const unsigned char *buf, size_t len);
/*
 * dkim_ed_finish - the DKIM-Signature value (no field name, no leading
 * space, folded with "\r\n\t"), caller frees; NULL on a crypto failure.
 */
char *dkim_ed_finish(struct dkim_ed *e);
void dkim_ed_free(struct dkim_ed **e);

#endif
