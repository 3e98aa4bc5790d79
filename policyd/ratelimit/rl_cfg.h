/*
 * rl_cfg: sluice-ratelimit's settings read from sluice.conf (ratelimit_*
 * and greylist_* parameters, conf/params_ratelimit.c) with the rule file,
 * allow lists and GeoIP databases (ratelimit_geoip_*_db) they name.
 * Owns validation with file:line messages.
 * Leaves: what the settings do (rl_engine, rl_store, the server).
 */
#ifndef SLUICE_RL_CFG_H
#define SLUICE_RL_CFG_H

#include "conf/conf.h"
#include "lib/geoip.h"
#include "policyd/ratelimit/rl_allow.h"
#include "policyd/ratelimit/rl_limit.h"
#include "policyd/ratelimit/rl_rules.h"

struct rl_cfg {
	struct rl_rules *rules;		/* NULL: no rule file (every request gets DUNNO) */
	enum rl_algo algo;
	int dry_run;
	int prefix4, prefix6;		/* client_net */
	struct geoip *geo;		/* client_country, client_asn; NULL: no database named */
	int backend_redis;
	char *state_file;		/* embedded; "" = memory only */
	long long state_max_bytes;
	long long sync_ms;
	char *redis_server, *redis_password, *redis_prefix;
	int redis_db;
	long long redis_timeout_ms;
	int on_error_defer;
	char *error_action;		/* "DEFER_IF_PERMIT <ratelimit_backend_error_text>" */
	struct rl_grey_params grey;
	int grey_by_net;
	char *grey_text;
	struct rl_allow *grey_client_allow, *grey_rcpt_allow;
};

/* rl_cfg_load - fill *out from c; 0, or -1 with *err_out (caller frees; *out then empty). */
int rl_cfg_load(const struct conf *c, struct rl_cfg *out, char **err_out);
void rl_cfg_free(struct rl_cfg *cfg);

#endif
