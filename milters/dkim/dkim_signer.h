/*
 * dkim_signer: our DKIM signer, rsa-sha256 (RFC 6376, RFC 8301) and
 * ed25519-sha256 (RFC 8463).
 * Why our own: libopendkim's dkim_sign() decodes the PEM key again for every
 * message (with OpenSSL 3 that costs more than the RSA signature itself) and
 * never frees an Ed25519 key (about 1.3 KB per message). Here the key is
 * decoded once at load time (dkim_keys.c) and shared by every message.
 * Verification stays with libopendkim.
 * Owns: header and body canonicalization (simple/relaxed, RFC 6376 3.4),
 * header selection for h= (bottom-up for repeated names, oversigning), the
 * signature header text folded the way libopendkim folds it (so its test
 * vectors give byte-identical headers), and the signature.
 * Leaves: key loading and choice to dkim_keys.c, the message to dkim_msg.c.
 * No I/O. One signer is used by one thread at a time; different signers may
 * share one key across threads.
 */
#ifndef SLUICE_DKIM_SIGNER_H
#define SLUICE_DKIM_SIGNER_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

struct dkim_signer;

/*
 * dkim_signer_new - a signer for one message.
 * key: an RSA (rsa-sha256) or Ed25519 (ed25519-sha256) private key; the
 * signer takes its own reference. domain/selector: d= and s= (copied).
 * hsimple/bsimple: 1 for simple header/body canonicalization, 0 for relaxed.
 * sign_hdrs: NULL-terminated header names to sign (NULL or {"*"} = every
 * header; From is signed in any case, RFC 6376 5.4); oversign: names added once more to h= (signing their absence);
 * both borrowed: they must outlive the signer (they live in dkim_cfg).
 * t: signing time t= in seconds since the epoch (0 = now); ttl_s: when > 0,
 * x= = t + ttl_s. NULL if the key is of another type.
 */
struct dkim_signer *dkim_signer_new(EVP_PKEY *key, const char *domain, const char *selector,
				    int hsimple, int bsimple, char *const *sign_hdrs,
				    char *const *oversign, uint64_t t, uint64_t ttl_s);
/*
 * dkim_signer_header - one header field "Name:value" exactly as received
 * (CRLF inside folds, none at the end), in message order. Borrowed: line
 * must stay valid until dkim_signer_finish().
 */
void dkim_signer_header(struct dkim_signer *s, const char *line, size_t len);
/* dkim_signer_body - the next body bytes (lines end in CRLF), any chunking. */
void dkim_signer_body(struct dkim_signer *s, const unsigned char *buf, size_t len);
/*
 * dkim_signer_finish - the DKIM-Signature value: no field name, no leading
 * space, folded with "\r\n\t" at 75 columns counting "DKIM-Signature: ".
 * Caller frees. NULL on a crypto failure.
 */
char *dkim_signer_finish(struct dkim_signer *s);
/* dkim_signer_algorithm - "rsa-sha256" or "ed25519-sha256" (static). */
const char *dkim_signer_algorithm(const struct dkim_signer *s);
void dkim_signer_free(struct dkim_signer **s);

#endif
