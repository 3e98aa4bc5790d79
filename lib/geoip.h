/*
 * geoip: the country and the autonomous system of an IP address, from
 * MaxMind DB files (GeoIP2/GeoLite2 Country or City, GeoLite2 ASN) read
 * with libmaxminddb. Shared by sluice-spam (spam_geo) and sluice-ratelimit
 * (the client_country / client_asn attributes).
 * Owns: opening the two databases and the two look-ups: the country from
 * the record's "country" -> "iso_code" (where the address is used, not
 * "registered_country"), the ASN from "autonomous_system_number".
 * Leaves: which address to look up and what the answer means (callers).
 * Link with -lmaxminddb (pkg-config libmaxminddb).
 * Thread-safe after geoip_open (look-ups only read the mapped files).
 */
#ifndef SLUICE_LIB_GEOIP_H
#define SLUICE_LIB_GEOIP_H

struct geoip;

/*
 * geoip_open - open country_db and asn_db (each may be NULL or "": that
 * look-up is not made). Returns the handle (free with geoip_free), or NULL
 * with *err_out = "path: libmaxminddb's reason" (caller frees).
 */
struct geoip *geoip_open(const char *country_db, const char *asn_db, char **err_out);
void geoip_free(struct geoip **g);

/* geoip_has_country, geoip_has_asn - 1 when that database is open (g may be NULL). */
int geoip_has_country(const struct geoip *g);
int geoip_has_asn(const struct geoip *g);

/*
 * geoip_is_public - 1 for an IPv4/IPv6 literal that is not loopback,
 * unspecified, private (RFC 1918, RFC 4193), shared (RFC 6598),
 * link-local or multicast; 0 otherwise (also for a non-address).
 */
int geoip_is_public(const char *addr);

/*
 * geoip_lookup - for the address literal addr: the upper-case ISO 3166
 * country code into cc_out[3] ("XX" when the address is public but the
 * database has no country for it; "" without a country database or for a
 * non-public or invalid address), and the AS number into *asn_out (0 when
 * none, no ASN database, or not public). g may be NULL (both empty).
 */
void geoip_lookup(const struct geoip *g, const char *addr, char cc_out[3], unsigned *asn_out);

#endif
