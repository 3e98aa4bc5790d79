/*
 * fuzz_dkim_sign: sluice-dkim's signer (milters/dkim/dkim_signer.c) on
 * hostile messages: header and body canonicalization (simple and relaxed),
 * h= selection with repeated, odd and colon-less header names, folding of
 * the signature header. Input: first byte = canonicalization bits, then
 * header lines up to the first empty line (each "Name:value", CRLF or LF),
 * then the body fed in chunks of varying size (bare CR, trailing blank
 * lines, WSP runs). The signature must always come out (Ed25519 key made
 * once per process).
 */
#include "milters/dkim/dkim_signer.c"

#include <openssl/evp.h>
#include <stdint.h>

static EVP_PKEY *key;
static char *sign_hdrs[] = { "From", "To", "Subject", "Date", "Received", "X-A", NULL };
static char *oversign[] = { "From", NULL };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (key == NULL) {
		EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
		if (kc == NULL || EVP_PKEY_keygen_init(kc) != 1 || EVP_PKEY_keygen(kc, &key) != 1)
			abort();
		EVP_PKEY_CTX_free(kc);
	}
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	data++;
	size--;
	struct dkim_signer *s = dkim_signer_new(key, "example.com", "sel", mode & 1, (mode >> 1) & 1,
						(mode & 4) ? NULL : sign_hdrs,
						(mode & 8) ? oversign : NULL, 1700000000, 0);
	if (s == NULL)
		abort();
	/* headers: lines until an empty one; kept alive until finish (borrowed) */
	char *copy = malloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = 0;
	size_t off = 0;
	while (off < size) {
		size_t start = off;
		char *nl = memchr(copy + off, '\n', size - off);
		size_t end = nl ? (size_t)(nl - copy) : size;
		off = nl ? end + 1 : size;
		size_t len = end - start;
		if (len > 0 && copy[start + len - 1] == '\r')
			len--;
		if (len == 0)
			break;
		dkim_signer_header(s, copy + start, len);
	}
	/* body: chunk sizes from the mode byte */
	size_t chunk = 1 + (mode >> 4);
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		dkim_signer_body(s, (const unsigned char *)copy + off, n);
		off += n;
	}
	char *sig = dkim_signer_finish(s);
	if (sig == NULL || strncmp(sig, "v=1; a=ed25519-sha256;", 22) != 0)
		abort();
	free(sig);
	dkim_signer_free(&s);
	free(copy);
	return 0;
}
