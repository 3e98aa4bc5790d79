#include "mta/tls.h"
#include "lib/util.h"

#include <openssl/err.h>
#include <string.h>

static char *ssl_err(const char *what, const char *file)
{
	char buf[256] = "unknown error";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	return xasprintf("%s %s: %s", what, file, buf);
}

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, char **err_out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		*err_out = ssl_err("cannot create TLS context for", cert_file);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* forward-secret AEAD suites for TLS 1.2; TLS 1.3 suites are OpenSSL's defaults */
	SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!RC4:!3DES");
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluiced", 7);
	SSL_CTX_set_timeout(ctx, 3600);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		*err_out = ssl_err("cannot load certificate", cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		*err_out = ssl_err("cannot load private key", key_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*err_out = ssl_err("private key does not match the certificate in", cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
