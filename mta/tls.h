/*
 * tls: the OpenSSL 3 server context for STARTTLS (RFC 3207).
 * Owns: protocol floor (TLS 1.2), cipher policy, session resumption
 * (server-side cache and tickets), loading and checking cert/key files.
 * Leaves: the handshake on a connection to libevent's OpenSSL bufferevents.
 */
#ifndef SLUICE_MTA_TLS_H
#define SLUICE_MTA_TLS_H

#include <openssl/ssl.h>

/*
 * tls_server_ctx - a server context for cert_file (PEM chain) and key_file.
 * Returns NULL with *err_out (caller frees) naming the file and OpenSSL's reason.
 */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, char **err_out);

#endif
