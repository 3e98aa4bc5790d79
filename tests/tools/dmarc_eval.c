/*
 * dmarc_eval: run proto/dmarc checks over a real DNS server with proto/dns's
 * blocking resolver; the C side of tests/integration/test_dmarc_diff.py.
 *
 *	dmarc_eval -s 127.0.0.1:PORT [-p public_suffix_list.dat]
 *
 * One case per input line, tab-separated:
 *	id  mode(bis|7489)  pct_roll  from_domain  spf  dkim
 * spf: comma-separated domain:scope:result ("-" = none); dkim:
 * comma-separated domain:selector:result ("-" = none). One line per case
 * out, tab-separated:
 *	id  result  disposition  policy  applied  policy_domain  org_domain
 *	spf_aligned_domain  dkim_aligned_domain  override  queries  reason  record
 * ("-" for an absent string; record: the text of the record applied).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpsl.h>

#include "lib/util.h"
#include "proto/dmarc.h"
#include "proto/dns.h"

#define MAX_AUTH 16

static enum dmarc_auth_result auth_result(const char *s)
{
	static const char *names[] = { "none", "pass", "fail", "softfail", "neutral",
				       "temperror", "permerror", "policy" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (enum dmarc_auth_result)i;
	return DMARC_AUTH_NONE;
}

/* Split "a:b:c,d:e:f" in place into auth entries. */
static size_t parse_auth(char *s, struct dmarc_auth *out, int spf)
{
	size_t n = 0;
	char *save = NULL;

	if (!s || strcmp(s, "-") == 0)
		return 0;
	for (char *item = strtok_r(s, ",", &save); item && n < MAX_AUTH;
	     item = strtok_r(NULL, ",", &save)) {
		char *f2 = strchr(item, ':');
		char *f3 = f2 ? strchr(f2 + 1, ':') : NULL;
		if (!f3)
			continue;
		*f2++ = 0;
		*f3++ = 0;
		memset(&out[n], 0, sizeof(out[n]));
		out[n].domain = item;
		out[n].result = auth_result(f3);
		if (spf)
			out[n].scope = strcmp(f2, "helo") == 0 ? DMARC_SCOPE_HELO : DMARC_SCOPE_MFROM;
		else
			out[n].selector = f2;
		n++;
	}
	return n;
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

static void run_case(struct dns_resolver *res, const void *psl, char *line)
{
	char *f[6];
	char *save = NULL;
	size_t nf = 0;
	struct dmarc_auth spf[MAX_AUTH], dkim[MAX_AUTH];

	for (char *t = strtok_r(line, "\t", &save); t && nf < 6; t = strtok_r(NULL, "\t", &save))
		f[nf++] = t;
	if (nf < 6) {
		printf("%s\tbad-input\n", nf ? f[0] : "?");
		return;
	}
	struct dmarc_request req = {
		.from_domain = f[3],
		.mode = strcmp(f[1], "7489") == 0 ? DMARC_MODE_RFC7489 : DMARC_MODE_DMARCBIS,
		.pct_roll = (unsigned)strtoul(f[2], NULL, 10),
		.spf = spf, .nspf = parse_auth(f[4], spf, 1),
		.dkim = dkim, .ndkim = parse_auth(f[5], dkim, 0),
		.psl = psl,
	};
	struct dmarc_check *c = dmarc_check_new(&req);
	struct dmarc_query q;
	int st;

	/* blocking: answer each question as it is asked */
	while ((st = dmarc_check_next(c, &q)) == DMARC_NEED_DNS) {
		struct dns_answer *a = dns_query_sync(res, q.name, q.type, 0);
		dmarc_check_answer(c, q.id, a);
		dns_answer_free(&a);
	}
	if (st != DMARC_DONE) {
		printf("%s\tstuck\n", f[0]);
		dmarc_check_free(&c);
		return;
	}
	const struct dmarc_outcome *o = dmarc_check_outcome(c);
	printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%u\t%s\t%s\n", f[0],
	       dmarc_result_name(o->result), dmarc_disposition_name(o->disposition),
	       dmarc_policy_name(o->policy), dmarc_applied_name(o->applied),
	       or_dash(o->policy_domain), or_dash(o->org_domain), or_dash(o->spf_domain),
	       or_dash(o->dkim_domain), dmarc_override_name(o->override), o->dns_queries,
	       o->reason, or_dash(o->record ? o->record->record_text : NULL));
	fflush(stdout);
	dmarc_check_free(&c);
}

int main(int argc, char **argv)
{
	const char *server = NULL, *pslfile = "/usr/share/publicsuffix/public_suffix_list.dat";
	char *err = NULL;
	char line[8192];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-s") && i + 1 < argc)
			server = argv[++i];
		else if (!strcmp(argv[i], "-p") && i + 1 < argc)
			pslfile = argv[++i];
		else {
			fprintf(stderr, "usage: dmarc_eval -s host:port [-p psl-file] < cases\n");
			return 2;
		}
	}
	if (!server) {
		fprintf(stderr, "dmarc_eval: -s host:port is required\n");
		return 2;
	}
	struct dns_opts o = { .servers = &server, .nservers = 1, .timeout_ms = 2000, .tries = 2 };
	struct dns_resolver *res = dns_new(NULL, &o, &err);
	if (!res) {
		fprintf(stderr, "dmarc_eval: %s\n", err);
		return 1;
	}
	psl_ctx_t *psl = psl_load_file(pslfile);
	if (!psl) {
		fprintf(stderr, "dmarc_eval: cannot load %s\n", pslfile);
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = 0;
		if (line[0])
			run_case(res, psl, line);
	}
	psl_free(psl);
	dns_free(&res);
	return 0;
}
