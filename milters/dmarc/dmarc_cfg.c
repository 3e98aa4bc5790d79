#include "milters/dmarc/dmarc_cfg.h"
#include "milters/dmarc/dmarc_dns.h"
#include "milters/dmarc/dmarc_failrep.h"
#include "milters/dkim/dkim_cfg.h"
#include "milters/dkim/dkim_dns.h"
#include "milters/dkim/dkim_keys.h"
#include "conf/conf.h"
#include "lib/daemon.h"
#include "lib/util.h"

#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char **copy_list(const struct conf *c, const char *name, size_t *n_out, int lower)
{
	const char *const *l = conf_list(c, name, n_out);
	char **out = xcalloc(*n_out + 1, sizeof(char *));
	for (size_t i = 0; i < *n_out; i++) {
		out[i] = xstrdup(l[i]);
		if (lower) {
			ascii_lower(out[i]);
			size_t len = strlen(out[i]);
			if (len > 1 && out[i][len - 1] == '.')
				out[i][len - 1] = 0;
		}
	}
	return out;
}

static void free_list(char **l, size_t n)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

/* The reply template: %d and %% only. */
static int reply_ok(const char *s)
{
	for (const char *p = s; *p; p++)
		if (*p == '%' && p[1] != 'd' && p[1] != '%')
			return 0;
		else if (*p == '%')
			p++;
		else if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			return 0;
	return 1;
}

static char *config_file;

void dmarc_cfg_set_config_file(const char *path)
{
	free(config_file);
	config_file = path ? xstrdup(path) : NULL;
}

/* One rate limiter per process: its counts survive SIGHUP. */
static pthread_once_t rate_once = PTHREAD_ONCE_INIT;
static struct dmarc_failrep_rate *rate;

static void rate_make(void)
{
	rate = dmarc_failrep_rate_new(0, NULL, NULL);
}

static int failrep_setup(struct dmarc_cfg *cfg, const struct conf *c, char **err_out)
{
	cfg->failrep = conf_bool(c, "dmarc_failure_reports");
	cfg->failrep_redact = conf_bool(c, "dmarc_failure_report_redact");
	cfg->failrep_from = xstrdup(conf_str(c, "dmarc_failure_report_from"));
	if (cfg->failrep && dmarc_failrep_addr_ok(cfg->failrep_from) != 0) {
		*err_out = xasprintf("%s: dmarc_failure_report_from %s: not a plain address "
				     "(local@domain.example)",
				     conf_where(c, "dmarc_failure_report_from"), cfg->failrep_from);
		return -1;
	}
	const char *sm = conf_str(c, "dmarc_failure_report_sendmail");
	if (sm[0]) {
		cfg->failrep_sendmail = xstrdup(sm);
	} else {
		char *dir = daemon_self_dir();
		cfg->failrep_sendmail = xasprintf("%s/sluice-sendmail", dir);
		free(dir);
	}
	const char *base = strrchr(cfg->failrep_sendmail, '/');
	base = base ? base + 1 : cfg->failrep_sendmail;
	if (strcmp(base, "sluice-sendmail") == 0)
		cfg->failrep_sendmail_conf = xstrdup(config_file ? config_file : conf_path(c));
	pthread_once(&rate_once, rate_make);
	dmarc_failrep_rate_set(rate, (unsigned)conf_int(c, "dmarc_failure_report_rate"));
	cfg->failrep_rate = rate;
	return 0;
}

struct dmarc_cfg *dmarc_cfg_new(struct conf *c, const struct dmarc_cfg_test *test, char **err_out)
{
	struct dmarc_cfg *cfg = xcalloc(1, sizeof(*cfg));
	struct dkim_dns *dkim_dns = test ? test->dkim_dns : NULL;
	cfg->refs = 1;
	cfg->pct_roll = test ? test->pct_roll : -1;
	if (test)
		cfg->dns = test->dns;
	char *err = NULL;

	cfg->authserv_id = xstrdup(conf_str(c, "dmarc_authserv_id"));
	if (cfg->authserv_id[0] == 0) {
		*err_out = xasprintf("%s: dmarc_authserv_id is empty", conf_where(c, "dmarc_authserv_id"));
		goto fail;
	}
	cfg->reject_reply = xstrdup(conf_str(c, "dmarc_reject_reply"));
	if (!reply_ok(cfg->reject_reply)) {
		*err_out = xasprintf("%s: dmarc_reject_reply: only %%d (the From domain) and %%%% "
				     "may follow a %%, and only printable ASCII",
				     conf_where(c, "dmarc_reject_reply"));
		goto fail;
	}
	cfg->receiver = xstrdup(conf_str(c, "myhostname"));
	cfg->mode = ascii_strcasecmp(conf_str(c, "dmarc_mode"), "rfc7489") == 0 ? DMARC_MODE_RFC7489
										: DMARC_MODE_DMARCBIS;
	cfg->self_validate = conf_bool(c, "dmarc_self_validate");
	cfg->trust_received_spf = conf_bool(c, "dmarc_trust_received_spf");
	cfg->reject_malformed = conf_bool(c, "dmarc_reject_malformed_from");
	cfg->enforce = conf_bool(c, "dmarc_enforce");
	cfg->ignore_authenticated = conf_bool(c, "dmarc_ignore_authenticated_clients");
	cfg->tempfail_on_temperror = ascii_strcasecmp(conf_str(c, "dmarc_on_temperror"),
						      "tempfail") == 0;
	cfg->quarantine_hold = ascii_strcasecmp(conf_str(c, "dmarc_quarantine_action"), "hold") == 0;
	cfg->max_from_domains = (size_t)conf_int(c, "dmarc_max_from_domains");
	cfg->deadline_ms = conf_time_s(c, "dmarc_dns_deadline") * 1000;
	cfg->ignore_domains = copy_list(c, "dmarc_ignore_domains", &cfg->nignore_domains, 1);
	cfg->trusted_ids = copy_list(c, "dmarc_trusted_authserv_ids", &cfg->ntrusted, 0);
	if (failrep_setup(cfg, c, err_out) < 0)
		goto fail;

	size_t n;
	const char *const *hosts = conf_list(c, "dmarc_ignore_hosts", &n);
	cfg->ignore_hosts = dkim_hosts_new(hosts, n, &err);
	if (cfg->ignore_hosts == NULL) {
		*err_out = xasprintf("%s: dmarc_ignore_hosts: %s", conf_where(c, "dmarc_ignore_hosts"), err);
		free(err);
		goto fail;
	}

	if (cfg->mode == DMARC_MODE_RFC7489) {
		const char *path = conf_str(c, "dmarc_public_suffix_list");
		if (path[0]) {
			cfg->psl = psl_load_file(path);
			if (cfg->psl == NULL) {
				*err_out = xasprintf("%s: dmarc_public_suffix_list %s: cannot load",
						     conf_where(c, "dmarc_public_suffix_list"), path);
				goto fail;
			}
		}
	}

	if (cfg->dns == NULL) {
		struct dns_opts o = { 0 };
		o.servers = conf_list(c, "dns_servers", &o.nservers);
		o.timeout_ms = (int)conf_time_s(c, "dns_timeout") * 1000;
		o.tries = (int)conf_int(c, "dns_tries");
		cfg->dns = dmarc_dns_new(&o, (size_t)conf_int(c, "dmarc_dns_cache_size"), &err);
		if (cfg->dns == NULL) {
			*err_out = xasprintf("%s: dns_servers: %s", conf_where(c, "dns_servers"), err);
			free(err);
			goto fail;
		}
	}

	/*
	 * XXX: sluice-dkim has no verify-only constructor: take its signing
	 * keys out of our copy of the configuration so a shared sluice.conf
	 * does not make us read (or fail on) private keys.
	 */
	static const char *const signing[] = { "dkim_domain", "dkim_selector", "dkim_key_file",
						"dkim_key_table", "dkim_signing_table" };
	for (size_t i = 0; i < sizeof(signing) / sizeof(signing[0]); i++) {
		if (conf_override(c, signing[i], "", &err) < 0) {
			*err_out = err;
			goto fail;
		}
	}
	struct dkim_cfg_test dt = { 0 };
	dt.dns = dkim_dns;
	dkim_dns = NULL;	/* dkim_cfg_new takes it over, even on failure */
	cfg->dkim = dkim_cfg_new(c, dt.dns ? &dt : NULL, &err);
	if (cfg->dkim == NULL) {
		*err_out = xasprintf("DKIM verifier: %s", err);
		free(err);
		goto fail;
	}
	return cfg;
fail:
	if (dkim_dns)
		dkim_dns_free(&dkim_dns);
	dmarc_cfg_unref(&cfg);
	return NULL;
}

struct dmarc_cfg *dmarc_cfg_ref(struct dmarc_cfg *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST);
	return cfg;
}

void dmarc_cfg_unref(struct dmarc_cfg **cfgp)
{
	struct dmarc_cfg *cfg = *cfgp;
	*cfgp = NULL;
	if (cfg == NULL || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	dkim_cfg_unref(&cfg->dkim);
	dmarc_dns_free(&cfg->dns);
	if (cfg->psl)
		psl_free(cfg->psl);
	dkim_hosts_free(&cfg->ignore_hosts);
	free_list(cfg->ignore_domains, cfg->nignore_domains);
	free_list(cfg->trusted_ids, cfg->ntrusted);
	free(cfg->authserv_id);
	free(cfg->reject_reply);
	free(cfg->receiver);
	free(cfg->failrep_from);
	free(cfg->failrep_sendmail);
	free(cfg->failrep_sendmail_conf);
	free(cfg);
}

int dmarc_cfg_ignored_domain(const struct dmarc_cfg *cfg, const char *dom)
{
	for (size_t i = 0; i < cfg->nignore_domains; i++)
		if (ascii_strcasecmp(cfg->ignore_domains[i], dom) == 0)
			return 1;
	return 0;
}

int dmarc_cfg_trusted_id(const struct dmarc_cfg *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->ntrusted; i++)
		if (ascii_strcasecmp(cfg->trusted_ids[i], id) == 0)
			return 1;
	return 0;
}
