/*
 * spam_geo: country and ASN of an address with libmaxminddb, as symbols.
 * Owns: the score lists (spam_country_scores "GB:1.0, XX:2.5",
 * spam_asn_scores "64496:3.0") and the symbols: GEO_CC_<cc> from the
 * database's "country" record (not "registered_country"; GEO_CC_XX when a
 * public address has none), ASN_<n> from "autonomous_system_number".
 * The databases (spam_geoip_country_db, spam_geoip_asn_db) are opened and
 * read by lib/geoip.
 * Leaves: which address to look up (spam_msg: the client, or the first
 * untrusted relay when the client is trusted).
 * Thread-safe after spam_geo_new (libmaxminddb look-ups only read).
 */
#ifndef SLUICE_SPAM_GEO_H
#define SLUICE_SPAM_GEO_H

#include <stddef.h>

struct spam_result;
struct spam_geo;

/*
 * spam_geo_new - country_db / asn_db may be NULL or "" (not used); the
 * score lists are "CODE:score" items. NULL with *err_out (caller frees)
 * naming the file or the bad item.
 */
struct spam_geo *spam_geo_new(const char *country_db, const char *asn_db,
			      const char *const *country_scores, size_t ncountry,
			      const char *const *asn_scores, size_t nasn, char **err_out);
void spam_geo_free(struct spam_geo **g);

/*
 * spam_geo_lookup - country code ("GB", "XX" when a public address is not
 * in the database, "" without a country database or for private/invalid
 * addresses) into cc_out[3], and the ASN (0 = none) into *asn_out.
 */
void spam_geo_lookup(const struct spam_geo *g, const char *addr, char cc_out[3],
		     unsigned *asn_out);

/* spam_geo_symbols - look addr up and add GEO_CC_<cc> and ASN_<n> to r with their scores. */
void spam_geo_symbols(const struct spam_geo *g, const char *addr, struct spam_result *r);

#endif
