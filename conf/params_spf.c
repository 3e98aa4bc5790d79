#include "conf/params_spf.h"

#include <stddef.h>

#define SPF_REJECT_CHOICES "Fail|SPF_Not_Pass|Softfail|Null|False|No_Check"

const struct conf_param spf_params[] = {
	{ "spf_socket", CONF_STR, "inet:127.0.0.1:10045", 0, 0, NULL, 0 },
	{ "spf_pid_file", CONF_STR, "", 0, 0, NULL, 0 },
	{ "spf_helo_reject", CONF_ENUM, "Fail", 0, 0, SPF_REJECT_CHOICES, 0 },
	{ "spf_mail_from_reject", CONF_ENUM, "Fail", 0, 0, SPF_REJECT_CHOICES, 0 },
	{ "spf_permerror_reject", CONF_BOOL, "no", 0, 0, NULL, 0 },
	{ "spf_temperror_defer", CONF_BOOL, "no", 0, 0, NULL, 0 },
	{ "spf_skip_addresses", CONF_LIST, "127.0.0.0/8, ::1", 0, 0, NULL, 0 },
	{ "spf_whitelist", CONF_LIST, "", 0, 0, NULL, 0 },
	{ "spf_domain_whitelist", CONF_LIST, "", 0, 0, NULL, 0 },
	{ "spf_header_type", CONF_ENUM, "SPF", 0, 0, "SPF|AR", 0 },
	{ "spf_reject_not_pass_domains", CONF_LIST, "", 0, 0, NULL, 0 },
	{ "spf_skip_sasl", CONF_BOOL, "yes", 0, 0, NULL, 0 },
	{ "spf_lookup_time", CONF_TIME, "20s", 1, 3600, NULL, 's' },
	{ "spf_authserv_id", CONF_STR, "$myhostname", 0, 0, NULL, 0 },
	{ "spf_cache_size", CONF_INT, "10000", 0, 10000000, NULL, 0 },
	{ "spf_reason_message", CONF_STR,
	  "Message {rejectdefer} due to: {spf}. Please see {url}", 0, 0, NULL, 0 },
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
