/*
 * spam_geo: GeoIP country and ASN symbols. See spam_geo.h.
 */
#include "milters/spam/spam_geo.h"
#include "milters/spam/spam_scan.h"
#include "lib/geoip.h"
#include "lib/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct score {
	char code[16];
	double score;
};

struct spam_geo {
	struct geoip *db;	/* lib/geoip: the look-ups */
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

struct spam_geo *spam_geo_new(const char *country_db, const char *asn_db,
			      const char *const *country_scores, size_t ncountry,
			      const char *const *asn_scores, size_t nasn, char **err_out)
{
	struct spam_geo *g = xcalloc(1, sizeof(*g));
	if (parse_scores(country_scores, ncountry, 0, &g->cc, &g->ncc, "spam_country_scores", err_out) < 0 ||
	    parse_scores(asn_scores, nasn, 1, &g->as, &g->nas, "spam_asn_scores", err_out) < 0 ||
	    (g->db = geoip_open(country_db, asn_db, err_out)) == NULL) {
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
	geoip_free(&g->db);
	free(g->cc);
	free(g->as);
	free(g);
	*gp = NULL;
}

void spam_geo_lookup(const struct spam_geo *g, const char *addr, char cc_out[3], unsigned *asn_out)
{
	geoip_lookup(g ? g->db : NULL, addr, cc_out, asn_out);
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
