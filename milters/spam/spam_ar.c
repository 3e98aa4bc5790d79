/*
 * spam_ar: Authentication-Results -> symbols. See spam_ar.h.
 */
#include "milters/spam/spam_ar.h"
#include "milters/spam/spam_mime.h"
#include "milters/spam/spam_scan.h"
#include "proto/authres.h"
#include "lib/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct score {
	char *name;
	double score;
};

struct spam_ar {
	char **ids;
	size_t nids;
	struct score *s;
	size_t ns;
};

void spam_ar_free(struct spam_ar **ap)
{
	struct spam_ar *a = ap ? *ap : NULL;
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nids; i++)
		free(a->ids[i]);
	free(a->ids);
	for (size_t i = 0; i < a->ns; i++)
		free(a->s[i].name);
	free(a->s);
	free(a);
	*ap = NULL;
}

struct spam_ar *spam_ar_new(const char *const *authserv_ids, size_t nids,
			    const char *const *scores, size_t nscores, char **err_out)
{
	struct spam_ar *a = xcalloc(1, sizeof(*a));
	a->ids = xcalloc(nids + 1, sizeof(char *));
	for (size_t i = 0; i < nids; i++)
		a->ids[a->nids++] = xstrdup(authserv_ids[i]);
	a->s = xcalloc(nscores + 1, sizeof(*a->s));
	for (size_t i = 0; i < nscores; i++) {
		const char *colon = strrchr(scores[i], ':');
		char *end = NULL;
		double v = colon ? strtod(colon + 1, &end) : 0;
		int ok = colon && colon > scores[i] && end != colon + 1 && *end == 0;
		for (const char *c = scores[i]; ok && c < colon; c++)
			ok = isupper((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_';
		if (!ok) {
			*err_out = xasprintf("spam_auth_scores: bad item \"%s\" (expected SYMBOL:score)",
					     scores[i]);
			spam_ar_free(&a);
			return NULL;
		}
		a->s[a->ns].name = xstrndup(scores[i], (size_t)(colon - scores[i]));
		a->s[a->ns++].score = v;
	}
	return a;
}

static int ours(const struct spam_ar *a, const char *id)
{
	for (size_t i = 0; i < a->nids; i++)
		if (!ascii_strcasecmp(a->ids[i], id))
			return 1;
	return 0;
}

static double score_of(const struct spam_ar *a, const char *name)
{
	for (size_t i = 0; i < a->ns; i++)
		if (!strcmp(a->s[i].name, name))
			return a->s[i].score;
	return 0;
}

void spam_ar_symbols(const struct spam_ar *a, const struct spam_mime *m, struct spam_result *r)
{
	if (a == NULL)
		return;
	const struct spam_hdr *h;
	for (size_t i = 0; (h = spam_mime_header(m, "Authentication-Results", i)) != NULL; i++) {
		char id[256];
		if (authres_authserv_id(h->raw, strlen(h->raw), id, sizeof(id)) < 0 || !ours(a, id))
			continue;
		struct authres *ar = NULL;
		const char *err;
		if (authres_parse(h->raw, strlen(h->raw), &ar, &err) != AUTHRES_OK)
			continue;
		for (size_t k = 0; k < ar->nresults; k++) {
			const struct authres_result *res = &ar->results[k];
			if (strcmp(res->method, "spf") && strcmp(res->method, "dkim") &&
			    strcmp(res->method, "dmarc"))
				continue;
			char name[64];
			snprintf(name, sizeof(name), "%s_%s", res->method, res->result);
			for (char *c = name; *c; c++)
				*c = isalnum((unsigned char)*c) ? (char)toupper((unsigned char)*c) : '_';
			int dup = 0;
			for (size_t j = 0; j < r->nhits; j++)
				if (!strcmp(r->hits[j].name, name))
					dup = 1;
			if (dup)
				continue;
			char *desc = xasprintf("%s=%s (Authentication-Results of %s)", res->method,
					       res->result, id);
			spam_result_add(r, name, score_of(a, name), desc);
			free(desc);
		}
		authres_free(&ar);
	}
}
