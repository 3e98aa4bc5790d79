/*
 * spam_geo: GeoIP country and ASN symbols. See spam_geo.h.
 */
#include "milters/spam/spam_geo.h"
#include "milters/spam/spam_scan.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <maxminddb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct score {
	char code[16];
	double score;
};

struct spam_geo {
	MMDB_s country, asn;
	int has_country, has_asn;
	struct score *cc, *as;
	size_t ncc, nas;
};

static int parse_scores(const char *const *items, size_t n, int numeric, struct score **out,
			size_t *nout, const char *what, char **err_out)
{
	*out = xcalloc(n + 1, sizeof(**out));
	*nout = 0;
	for (size_t i = 0; i < n; i++) {
		const char *colon = strrchr(items[i], ':');
		size_t cl = colon ? (size_t)(colon - items[i]) : 0;
		char *end = NULL;
		double v = colon ? strtod(colon + 1, &end) : 0;
		int ok = colon && cl > 0 && cl < sizeof((*out)->code) && end != colon + 1 && *end == 0;
		for (size_t k = 0; ok && k < cl; k++)
			ok = numeric ? isdigit((unsigned char)items[i][k]) : isalpha((unsigned char)items[i][k]);
		if (!ok || (!numeric && cl != 2)) {
			*err_out = xasprintf("%s: bad item \"%s\" (expected %s:score)", what, items[i],
					     numeric ? "ASN" : "CC");
			return -1;
		}
		struct score *s = &(*out)[(*nout)++];
		memcpy(s->code, items[i], cl);
		s->code[cl] = 0;
		for (char *c = s->code; *c; c++)
			*c = (char)toupper((unsigned char)*c);
		s->score = v;
	}
	return 0;
}

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

struct spam_geo *spam_geo_new(const char *country_db, const char *asn_db,
			      const char *const *country_scores, size_t ncountry,
			      const char *const *asn_scores, size_t nasn, char **err_out)
{
	struct spam_geo *g = xcalloc(1, sizeof(*g));
	if (parse_scores(country_scores, ncountry, 0, &g->cc, &g->ncc, "spam_country_scores", err_out) < 0 ||
	    parse_scores(asn_scores, nasn, 1, &g->as, &g->nas, "spam_asn_scores", err_out) < 0 ||
	    open_db(country_db, &g->country, &g->has_country, err_out) < 0 ||
	    open_db(asn_db, &g->asn, &g->has_asn, err_out) < 0) {
		spam_geo_free(&g);
		return NULL;
	}
	return g;
}

void spam_geo_free(struct spam_geo **gp)
{
	struct spam_geo *g = gp ? *gp : NULL;
	if (g == NULL)
		return;
	if (g->has_country)
		MMDB_close(&g->country);
	if (g->has_asn)
		MMDB_close(&g->asn);
	free(g->cc);
	free(g->as);
	free(g);
	*gp = NULL;
}

/* is_public - not loopback, private, link-local, documentation or unique-local. */
static int is_public(const char *addr)
{
	unsigned char b[16];
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

void spam_geo_lookup(const struct spam_geo *g, const char *addr, char cc_out[3], unsigned *asn_out)
{
	cc_out[0] = 0;
	*asn_out = 0;
	if (g == NULL || addr == NULL || !is_public(addr))
		return;
	int gai, mmerr;
	MMDB_entry_data_s d;
	if (g->has_country) {
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

static double score_of(const struct score *s, size_t n, const char *code)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s[i].code, code))
			return s[i].score;
	return 0;
}

void spam_geo_symbols(const struct spam_geo *g, const char *addr, struct spam_result *r)
{
	char cc[3];
	unsigned asn;
	spam_geo_lookup(g, addr, cc, &asn);
	char name[32], desc[64];
	if (cc[0]) {
		snprintf(name, sizeof(name), "GEO_CC_%s", cc);
		snprintf(desc, sizeof(desc), "Relay %s is in country %s", addr, cc);
		spam_result_add(r, name, score_of(g->cc, g->ncc, cc), desc);
	}
	if (asn) {
		char code[16];
		snprintf(code, sizeof(code), "%u", asn);
		snprintf(name, sizeof(name), "ASN_%u", asn);
		snprintf(desc, sizeof(desc), "Relay %s is in AS%u", addr, asn);
		spam_result_add(r, name, score_of(g->as, g->nas, code), desc);
	}
}
