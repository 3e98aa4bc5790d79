#include "conf/params_ratelimit.h"
#include "conf/params_table.h"

#include <stddef.h>

const struct conf_param ratelimit_params[] = {
	P("ratelimit_socket", CONF_STR, "inet:127.0.0.1:10046"),
	P("ratelimit_pid_file", CONF_STR, ""),
	PI("ratelimit_workers", "1", 1, 64),
	P("ratelimit_rules", CONF_STR, ""),
	PE("ratelimit_algorithm", "gcra", "gcra|fixed"),
	P("ratelimit_dry_run", CONF_BOOL, "no"),
	P("ratelimit_client_net_prefix", CONF_LIST, "24, 64"),
	P("ratelimit_geoip_country_db", CONF_STR, ""),
	P("ratelimit_geoip_asn_db", CONF_STR, ""),
	PE("ratelimit_backend", "embedded", "embedded|redis"),
	P("ratelimit_state_file", CONF_STR, "/var/lib/sluice/ratelimit.lmdb"),
	PS("ratelimit_state_max_size", "256m", 1048576, 0),
	PT("ratelimit_state_sync_time", "1s", 0, 3600, 's'),
	P("ratelimit_redis_server", CONF_STR, "127.0.0.1:6379"),
	P("ratelimit_redis_password", CONF_STR, ""),
	PI("ratelimit_redis_db", "0", 0, 1000000),
	P("ratelimit_redis_prefix", CONF_STR, "sluice:rl:"),
	PT("ratelimit_redis_timeout", "1s", 0, 600, 's'),
	PE("ratelimit_on_backend_error", "dunno", "dunno|defer"),
	P("ratelimit_backend_error_text", CONF_STR, "4.3.0 Rate limit service temporarily unavailable"),
	PT("greylist_delay", "300s", 0, 86400 * 30, 's'),
	PT("greylist_max_age", "35d", 1, 86400 * 3650, 'd'),
	PT("greylist_retry_window", "2d", 1, 86400 * 3650, 'd'),
	PI("greylist_auto_allow_clients", "5", 0, 1000000000),
	P("greylist_by_network", CONF_BOOL, "yes"),
	P("greylist_client_allow", CONF_LIST, ""),
	P("greylist_recipient_allow", CONF_LIST, ""),
	P("greylist_text", CONF_STR, "Greylisted, see https://postgrey.schweikert.ch/help/%r.html"),
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
