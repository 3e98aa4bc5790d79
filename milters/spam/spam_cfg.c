/*
 * spam_cfg: configuration generations for sluice-spam. See spam_cfg.h.
 */
#include "milters/spam/spam_cfg.h"
#include "milters/spam/spam_ar.h"
#include "milters/spam/spam_dnsl.h"
#include "milters/spam/spam_geo.h"
#include "milters/spam/spam_net.h"
#include "milters/spam/spam_rules.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "lib/util.h"

#include <ctype.h>
#include <glob.h>
#include <unistd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int spam_cfg_parse_score(const char *s, double *out, const char **err_out)
{
	if (!ascii_strcasecmp(s, "off") || !ascii_strcasecmp(s, "no") || *s == 0) {
		*out = SPAM_SCORE_OFF;
		return 0;
	}
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v != v || v > 1e9 || v < -1e9) {
		*err_out = "expected a score such as 6 or 5.5, or off";
		return -1;
	}
	*out = v;
	return 0;
}

/* parse_reply - "550 5.7.1 text" */
static int parse_reply(const char *s, char first, struct spam_reply *r)
{
	if (strlen(s) < 3 || s[0] != first || !isdigit((unsigned char)s[1]) ||
	    !isdigit((unsigned char)s[2]) || (s[3] && s[3] != ' '))
		return -1;
	memcpy(r->code, s, 3);
	r->code[3] = 0;
	const char *p = s + 3;
	while (*p == ' ')
		p++;
	size_t xl = strcspn(p, " ");
	if (xl > 4 && xl < sizeof(r->xcode) && p[0] == first && p[1] == '.') {
		memcpy(r->xcode, p, xl);
		r->xcode[xl] = 0;
		p += xl;
		while (*p == ' ')
			p++;
	} else {
		snprintf(r->xcode, sizeof(r->xcode), "%c.7.1", first);
	}
	r->text = xstrdup(*p ? p : "Message rejected as spam");
	return 0;
}

static int open_table(const struct conf *c, const char *name, struct table **out, char **err_out)
{
	const char *spec = conf_str(c, name);
	*out = NULL;
	if (*spec == 0)
		return 0;
	char *err = NULL;
	*out = table_open(spec, &err);
	if (*out == NULL) {
		*err_out = xasprintf("%s: %s: %s", conf_where(c, name), name, err);
		free(err);
		return -1;
	}
	return 0;
}

/*
 * default_rules - the default spam_rules_files is the tree's rules
 * directory, relative: when it matches nothing from the base directory,
 * look beside the binary (bin/sluice-spam -> ../milters/spam/rules).
 * NULL = use the value as it is.
 */
static char *default_rules(const char *pattern)
{
	glob_t g;
	if (pattern[0] == '/' || glob(pattern, 0, NULL, &g) == 0) {
		if (pattern[0] != '/')
			globfree(&g);
		return NULL;
	}
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (slash == NULL)
		return NULL;
	*slash = 0;
	return xasprintf("%s/../%s", exe, pattern);
}

struct spam_cfg *spam_cfg_new(const struct conf *c, char **err_out)
{
	struct spam_cfg *cfg = xcalloc(1, sizeof(*cfg));
	cfg->refs = 1;
	pthread_mutex_init(&cfg->table_lock, NULL);
	static const struct { const char *name; size_t off; } scores[] = {
		{ "spam_add_header_score", offsetof(struct spam_cfg, add_header_score) },
		{ "spam_rewrite_subject_score", offsetof(struct spam_cfg, rewrite_subject_score) },
		{ "spam_greylist_score", offsetof(struct spam_cfg, greylist_score) },
		{ "spam_reject_score", offsetof(struct spam_cfg, reject_score) },
	};
	for (size_t i = 0; i < sizeof(scores) / sizeof(scores[0]); i++) {
		const char *why;
		if (spam_cfg_parse_score(conf_str(c, scores[i].name),
					 (double *)((char *)cfg + scores[i].off), &why) < 0) {
			*err_out = xasprintf("%s: %s: %s", conf_where(c, scores[i].name),
					     scores[i].name, why);
			goto fail;
		}
	}
	cfg->subject_prefix = xstrdup(conf_str(c, "spam_subject_prefix"));
	if (parse_reply(conf_str(c, "spam_reject_reply"), '5', &cfg->reject_reply) < 0) {
		*err_out = xasprintf("%s: spam_reject_reply: expected \"5xx 5.x.x text\"",
				     conf_where(c, "spam_reject_reply"));
		goto fail;
	}
	if (parse_reply(conf_str(c, "spam_greylist_reply"), '4', &cfg->greylist_reply) < 0) {
		*err_out = xasprintf("%s: spam_greylist_reply: expected \"4xx 4.x.x text\"",
				     conf_where(c, "spam_greylist_reply"));
		goto fail;
	}
	size_t n;
	const char *const *l = conf_list(c, "spam_trusted_networks", &n);
	char *err = NULL;
	if ((cfg->trusted = spam_net_new(l, n, &err)) == NULL) {
		*err_out = xasprintf("%s: spam_trusted_networks: %s",
				     conf_where(c, "spam_trusted_networks"), err);
		free(err);
		goto fail;
	}
	l = conf_list(c, "mynetworks", &n);
	if ((cfg->mynetworks = spam_net_new(l, n, &err)) == NULL) {
		*err_out = xasprintf("%s: mynetworks: %s", conf_where(c, "mynetworks"), err);
		free(err);
		goto fail;
	}
	cfg->scan_outbound = conf_bool(c, "spam_scan_outbound");
	cfg->on_error_tempfail = !ascii_strcasecmp(conf_str(c, "spam_on_error"), "tempfail");
	if (open_table(c, "spam_allow_from", &cfg->allow_from, err_out) < 0 ||
	    open_table(c, "spam_block_from", &cfg->block_from, err_out) < 0)
		goto fail;
	size_t ncs, nas;
	const char *const *cs = conf_list(c, "spam_country_scores", &ncs);
	const char *const *as = conf_list(c, "spam_asn_scores", &nas);
	cfg->geo = spam_geo_new(conf_str(c, "spam_geoip_country_db"), conf_str(c, "spam_geoip_asn_db"),
				cs, ncs, as, nas, &err);
	if (cfg->geo == NULL) {
		*err_out = xasprintf("%s: GeoIP: %s", conf_path(c), err);
		free(err);
		goto fail;
	}
	if (spam_bayes_opts_from_conf(c, &cfg->bayes_opts, &err) < 0) {
		*err_out = err;
		goto fail;
	}
	/* the options borrow conf's strings; a generation outlives its conf */
	const char **bs[4] = { &cfg->bayes_opts.store.db_path, &cfg->bayes_opts.store.redis_server,
			       &cfg->bayes_opts.store.redis_password, &cfg->bayes_opts.store.redis_prefix };
	for (int i = 0; i < 4; i++) {
		cfg->bayes_str[i] = xstrdup(*bs[i] ? *bs[i] : "");
		*bs[i] = cfg->bayes_str[i];
	}
	cfg->bayes_enable = conf_bool(c, "spam_bayes_enable");
	size_t nids, nsc;
	const char *const *ids = conf_list(c, "spam_trusted_authserv_ids", &nids);
	const char *const *sc = conf_list(c, "spam_auth_scores", &nsc);
	if ((cfg->ar = spam_ar_new(ids, nids, sc, nsc, &err)) == NULL) {
		*err_out = xasprintf("%s: %s", conf_where(c, "spam_auth_scores"), err);
		free(err);
		goto fail;
	}
	struct dns_opts dopts = { 0 };
	dopts.servers = conf_list(c, "dns_servers", &dopts.nservers);
	dopts.timeout_ms = (int)conf_time_s(c, "dns_timeout") * 1000;
	dopts.tries = (int)conf_int(c, "dns_tries");
	cfg->dnsl = spam_dnsl_new(conf_str(c, "spam_dns_lists"), &dopts,
				  (int)conf_time_s(c, "spam_dns_timeout") * 1000, &err);
	if (cfg->dnsl == NULL) {
		*err_out = xasprintf("spam_dns_lists (%s): %s", conf_where(c, "spam_dns_lists"), err);
		free(err);
		goto fail;
	}
	cfg->dnsl_status = spam_dnsl_selftest(cfg->dnsl);
	spam_mime_limits_default(&cfg->limits);
	cfg->limits.max_scan_bytes = (size_t)conf_size(c, "spam_max_scan_size");
	cfg->limits.max_parts = (size_t)conf_int(c, "spam_max_parts");
	cfg->limits.max_depth = (size_t)conf_int(c, "spam_max_depth");
	cfg->limits.max_urls = (size_t)conf_int(c, "spam_max_urls");

	cfg->rules = spam_rules_new((int)conf_int(c, "spam_score_set"));
	spam_rules_set_cache_dir(cfg->rules, conf_str(c, "spam_cache_directory"));
	l = conf_list(c, "spam_rules_files", &n);
	char *tree_rules = NULL;
	if (!conf_is_set(c, "spam_rules_files") && n == 1 && (tree_rules = default_rules(l[0])) != NULL)
		l = (const char *const *)&tree_rules;
	int lrc = spam_rules_load_globs(cfg->rules, l, n, &err);
	free(tree_rules);
	if (lrc < 0 ||
	    spam_rules_compile(cfg->rules, &err) < 0) {
		*err_out = xasprintf("spam_rules_files (%s): %s", conf_where(c, "spam_rules_files"), err);
		free(err);
		goto fail;
	}
	return cfg;
fail:
	spam_cfg_unref(&cfg);
	return NULL;
}

struct spam_cfg *spam_cfg_ref(struct spam_cfg *cfg)
{
	if (cfg)
		__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST);
	return cfg;
}

void spam_cfg_unref(struct spam_cfg **cp)
{
	struct spam_cfg *cfg = cp ? *cp : NULL;
	if (cfg == NULL)
		return;
	*cp = NULL;
	if (__atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	spam_rules_free(&cfg->rules);
	free(cfg->subject_prefix);
	free(cfg->reject_reply.text);
	free(cfg->greylist_reply.text);
	spam_net_free(&cfg->trusted);
	spam_net_free(&cfg->mynetworks);
	table_free(&cfg->allow_from);
	table_free(&cfg->block_from);
	spam_geo_free(&cfg->geo);
	spam_dnsl_free(&cfg->dnsl);
	spam_ar_free(&cfg->ar);
	spam_bayes_close(&cfg->bayes);
	for (int i = 0; i < 4; i++)
		free(cfg->bayes_str[i]);
	free(cfg->dnsl_status);
	pthread_mutex_destroy(&cfg->table_lock);
	free(cfg);
}

int spam_cfg_open_bayes(struct spam_cfg *cfg, struct spam_cfg *prev, char **err_out)
{
	if (!cfg->bayes_enable || cfg->bayes)
		return 0;
	char *err = NULL;
	cfg->bayes = spam_bayes_open_shared(&cfg->bayes_opts, prev ? prev->bayes : NULL, &err);
	if (cfg->bayes == NULL) {
		*err_out = xasprintf("spam_bayes_db / spam_redis_server: %s", err);
		free(err);
		return -1;
	}
	return 0;
}

int spam_cfg_sender_listed(struct spam_cfg *cfg, struct table *t, const char *addr)
{
	if (t == NULL || addr == NULL || *addr == 0)
		return 0;
	const char *v;
	pthread_mutex_lock(&cfg->table_lock);
	int r = table_lookup_addr(t, addr, TABLE_ADDR_ACCESS, &v) == 1;
	pthread_mutex_unlock(&cfg->table_lock);
	return r;
}

char *spam_cfg_milter_conn(const char *spec, const char **err_out)
{
	if (!strncmp(spec, "unix:", 5) || !strncmp(spec, "local:", 6)) {
		if (strchr(spec, ':')[1] != '/') {
			*err_out = "a unix socket needs an absolute path";
			return NULL;
		}
		return xstrdup(spec);
	}
	int v6 = !strncmp(spec, "inet6:", 6);
	if (strncmp(spec, "inet:", 5) && !v6) {
		*err_out = "expected unix:/path, inet:host:port or inet:port@host";
		return NULL;
	}
	const char *rest = spec + (v6 ? 6 : 5);
	if (strchr(rest, '@')) {	/* Sendmail's form */
		if (!isdigit((unsigned char)*rest)) {
			*err_out = "expected inet:port@host";
			return NULL;
		}
		return xstrdup(spec);
	}
	if (*rest == '[') {
		const char *rb = strchr(rest, ']');
		if (rb == NULL || rb[1] != ':' || !isdigit((unsigned char)rb[2])) {
			*err_out = "expected inet:[v6addr]:port";
			return NULL;
		}
		return xasprintf("inet6:%s@%.*s", rb + 2, (int)(rb - rest - 1), rest + 1);
	}
	const char *colon = strrchr(rest, ':');
	if (colon == NULL || !isdigit((unsigned char)colon[1])) {
		*err_out = "expected inet:host:port";
		return NULL;
	}
	return xasprintf("%s:%s@%.*s", v6 ? "inet6" : "inet", colon + 1, (int)(colon - rest), rest);
}
