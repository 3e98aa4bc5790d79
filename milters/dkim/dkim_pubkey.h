/*
 * dkim_pubkey: a cache of decoded DKIM public keys for libopendkim.
 * Why: libopendkim decodes the key record's DER with d2i_PUBKEY_bio() for
 * every signature it verifies, and OpenSSL 3.0 builds a decoder context for
 * each call: about 40 % of the CPU time of a verification (measured with
 * perf on the direct milter load). A key record rarely changes, so the
 * decoded EVP_PKEY is kept, keyed by the exact DER bytes.
 * How: sluice-dkim defines d2i_PUBKEY_bio() itself, so libopendkim's call
 * binds to ours (ELF symbol interposition: the executable comes first);
 * ours serves a cached key (a new reference: libopendkim frees it as
 * usual) and otherwise calls OpenSSL's function (dlsym RTLD_NEXT) and keeps
 * a reference to the result. Only memory BIOs without an output pointer
 * (libopendkim's use) are cached; everything else goes straight through.
 * A shared EVP_PKEY is only read (public-key verification), which OpenSSL
 * allows from several threads. At most DKIM_PUBKEY_CACHE_MAX keys; when
 * full, the cache starts again empty. Thread-safe.
 * Leaves: DNS and TTLs to dkim_dns.c (a changed record has other DER bytes
 * and so is a different entry).
 */
#ifndef SLUICE_DKIM_PUBKEY_H
#define SLUICE_DKIM_PUBKEY_H

#include <stddef.h>

#define DKIM_PUBKEY_CACHE_MAX 1024

/* dkim_pubkey_stats - decodes served from the cache and passed to OpenSSL so far. */
void dkim_pubkey_stats(size_t *hits, size_t *misses);

#endif
