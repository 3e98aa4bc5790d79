/*
 * rl_cfg: see rl_cfg.h.
 */
#include "policyd/ratelimit/rl_cfg.h"

#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

static int prefixes(const struct conf *c, struct rl_cfg *o, char **err_out)
{
	size_t n;
	const char *const *v = conf_list(c, "ratelimit_client_net_prefix", &n);
	char *end;

	o->prefix4 = 24;
	o->prefix6 = 64;
	if (n > 2)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		long p = strtol(v[i], &end, 10);
		if (!*v[i] || *end || p < 0 || p > (i ? 128 : 32))
			goto bad;
		if (i)
			o->prefix6 = (int)p;
		else
			o->prefix4 = (int)p;
	}
	return 0;
bad:
	*err_out = xasprintf("%s: ratelimit_client_net_prefix: expected \"v4-prefix[, v6-prefix]\" "
			     "(0-32, 0-128)", conf_where(c, "ratelimit_client_net_prefix"));
	return -1;
}

static int allow(const struct conf *c, const char *name, struct rl_allow **out, char **err_out)
{
	size_t n;
	const char *const *files = conf_list(c, name, &n);

	if (!n)
		return 0;
	char *err = NULL;
	*out = rl_allow_load(files, n, &err);
	if (*out)
		return 0;
	*err_out = xasprintf("%s: %s: %s", conf_where(c, name), name, err);
	free(err);
	return -1;
}

/* geo - open ratelimit_geoip_country_db / _asn_db when set (both "" = no look-ups). */
static int geo(const struct conf *c, struct rl_cfg *o, char **err_out)
{
	const char *cc = conf_str(c, "ratelimit_geoip_country_db");
	const char *as = conf_str(c, "ratelimit_geoip_asn_db");
	char *err = NULL;

	if (!*cc && !*as)
		return 0;
	o->geo = geoip_open(cc, as, &err);
	if (o->geo)
		return 0;
	/* geoip_open's message starts with the file that failed */
	const char *name = *cc && !strncmp(err, cc, strlen(cc)) ? "ratelimit_geoip_country_db"
								 : "ratelimit_geoip_asn_db";
	*err_out = xasprintf("%s: %s: %s", conf_where(c, name), name, err);
	free(err);
	return -1;
}

int rl_cfg_load(const struct conf *c, struct rl_cfg *o, char **err_out)
{
	memset(o, 0, sizeof(*o));
	const char *rules = conf_str(c, "ratelimit_rules");
	if (*rules) {
		o->rules = rl_rules_load(rules, err_out);
		if (!o->rules)
			return -1;
	}
	o->algo = !strcmp(conf_str(c, "ratelimit_algorithm"), "fixed") ? RL_ALGO_FIXED : RL_ALGO_GCRA;
	o->dry_run = conf_bool(c, "ratelimit_dry_run");
	if (prefixes(c, o, err_out) < 0)
		goto fail;
	if (geo(c, o, err_out) < 0)
		goto fail;
	o->backend_redis = !strcmp(conf_str(c, "ratelimit_backend"), "redis");
	o->state_file = xstrdup(conf_str(c, "ratelimit_state_file"));
	o->state_max_bytes = conf_size(c, "ratelimit_state_max_size");
	o->sync_ms = conf_time_s(c, "ratelimit_state_sync_time") * 1000;
	o->redis_server = xstrdup(conf_str(c, "ratelimit_redis_server"));
	o->redis_password = xstrdup(conf_str(c, "ratelimit_redis_password"));
	o->redis_prefix = xstrdup(conf_str(c, "ratelimit_redis_prefix"));
	o->redis_db = (int)conf_int(c, "ratelimit_redis_db");
	o->redis_timeout_ms = conf_time_s(c, "ratelimit_redis_timeout") * 1000;
	o->on_error_defer = !strcmp(conf_str(c, "ratelimit_on_backend_error"), "defer");
	o->error_action = xasprintf("DEFER_IF_PERMIT %s", conf_str(c, "ratelimit_backend_error_text"));
	o->grey.delay_ms = conf_time_s(c, "greylist_delay") * 1000;
	o->grey.max_age_ms = conf_time_s(c, "greylist_max_age") * 1000;
	o->grey.retry_window_ms = conf_time_s(c, "greylist_retry_window") * 1000;
	o->grey.auto_allow = conf_int(c, "greylist_auto_allow_clients");
	o->grey_by_net = conf_bool(c, "greylist_by_network");
	o->grey_text = xstrdup(conf_str(c, "greylist_text"));
	if (allow(c, "greylist_client_allow", &o->grey_client_allow, err_out) < 0 ||
	    allow(c, "greylist_recipient_allow", &o->grey_rcpt_allow, err_out) < 0)
		goto fail;
	return 0;
fail:
	rl_cfg_free(o);
	return -1;
}

void rl_cfg_free(struct rl_cfg *o)
{
	rl_rules_free(&o->rules);
	geoip_free(&o->geo);
	free(o->state_file);
	free(o->redis_server);
	free(o->redis_password);
	free(o->redis_prefix);
	free(o->error_action);
	free(o->grey_text);
	rl_allow_free(&o->grey_client_allow);
	rl_allow_free(&o->grey_rcpt_allow);
	memset(o, 0, sizeof(*o));
}
