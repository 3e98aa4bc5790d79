/*
 * geoip: MaxMind DB country and ASN look-ups. See geoip.h.
 */
#include "lib/geoip.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <maxminddb.h>
#include <stdlib.h>
#include <string.h>

struct geoip {
	MMDB_s country, asn;
	int has_country, has_asn;
};

static int open_db(const char *path, MMDB_s *db, int *has, char **err_out)
{
	if (path == NULL || *path == 0)
		return 0;
	int rc = MMDB_open(path, MMDB_MODE_MMAP, db);
	if (rc != MMDB_SUCCESS) {
		*err_out = xasprintf("%s: %s", path, MMDB_strerror(rc));
		return -1;
	}
	*has = 1;
	return 0;
}

struct geoip *geoip_open(const char *country_db, const char *asn_db, char **err_out)
{
	struct geoip *g = xcalloc(1, sizeof(*g));
	if (open_db(country_db, &g->country, &g->has_country, err_out) < 0 ||
	    open_db(asn_db, &g->asn, &g->has_asn, err_out) < 0) {
		geoip_free(&g);
		return NULL;
	}
	return g;
}

void geoip_free(struct geoip **gp)
{
	struct geoip *g = gp ? *gp : NULL;
	if (g == NULL)
		return;
	if (g->has_country)
		MMDB_close(&g->country);
	if (g->has_asn)
		MMDB_close(&g->asn);
	free(g);
	*gp = NULL;
}

int geoip_has_country(const struct geoip *g)
{
	return g && g->has_country;
}

int geoip_has_asn(const struct geoip *g)
{
	return g && g->has_asn;
}

int geoip_is_public(const char *addr)
{
	unsigned char b[16];
	if (addr == NULL)
		return 0;
	if (inet_pton(AF_INET, addr, b) == 1)
		return !(b[0] == 10 || b[0] == 127 || b[0] == 0 || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
			 (b[0] == 192 && b[1] == 168) || (b[0] == 169 && b[1] == 254) ||
			 (b[0] == 100 && (b[1] & 0xc0) == 64) || b[0] >= 224);
	if (inet_pton(AF_INET6, addr, b) == 1)
		return !((b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||
			 (memcmp(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15) == 0 && b[15] <= 1) ||
			 b[0] == 0xff);
	return 0;
}

void geoip_lookup(const struct geoip *g, const char *addr, char cc_out[3], unsigned *asn_out)
{
	cc_out[0] = 0;
	*asn_out = 0;
	if (g == NULL || !geoip_is_public(addr))
		return;
	int gai, mmerr;
	MMDB_entry_data_s d;
	if (g->has_country) {
		/* MMDB_lookup_string only reads the database */
		MMDB_lookup_result_s r = MMDB_lookup_string((MMDB_s *)&g->country, addr, &gai, &mmerr);
		strcpy(cc_out, "XX");
		if (gai == 0 && mmerr == MMDB_SUCCESS && r.found_entry &&
		    MMDB_get_value(&r.entry, &d, "country", "iso_code", NULL) == MMDB_SUCCESS &&
		    d.has_data && d.type == MMDB_DATA_TYPE_UTF8_STRING && d.data_size == 2 &&
		    isalpha((unsigned char)d.utf8_string[0]) && isalpha((unsigned char)d.utf8_string[1])) {
			cc_out[0] = (char)toupper((unsigned char)d.utf8_string[0]);
			cc_out[1] = (char)toupper((unsigned char)d.utf8_string[1]);
			cc_out[2] = 0;
		}
	}
	if (g->has_asn) {
		MMDB_lookup_result_s r = MMDB_lookup_string((MMDB_s *)&g->asn, addr, &gai, &mmerr);
		if (gai == 0 && mmerr == MMDB_SUCCESS && r.found_entry &&
		    MMDB_get_value(&r.entry, &d, "autonomous_system_number", NULL) == MMDB_SUCCESS &&
		    d.has_data && d.type == MMDB_DATA_TYPE_UINT32)
			*asn_out = d.uint32;
	}
}
