#include "conf/params_spam.h"
#include "conf/params_table.h"

#include <stddef.h>

/*
 * The default rules: the tree's copy, or the installed one when the build
 * sets SLUICE_SPAM_RULES_DIR (make install).
 */
#ifndef SLUICE_SPAM_RULES_DIR
#define SLUICE_SPAM_RULES_DIR "milters/spam/rules"
#endif

const struct conf_param spam_params[] = {
	P("spam_socket", CONF_STR, "inet:8894@127.0.0.1"),
	/* permissions of a unix spam_socket: the MTA (Postfix runs smtpd as postfix) must connect */
	P("spam_socket_mode", CONF_STR, "0666"),
	P("spam_pid_file", CONF_STR, ""),
	/* rule files (globs, loaded in order; later definitions win) */
	P("spam_rules_files", CONF_LIST, SLUICE_SPAM_RULES_DIR "/*.cf"),
	/* compiled Vectorscan databases are kept here ("" = recompile at every start and reload) */
	P("spam_cache_directory", CONF_STR, "$data_directory"),
	/* SpamAssassin score set: 0 no Bayes/no network tests, 1 network, 2 Bayes, 3 both */
	PI("spam_score_set", "0", 0, 3),
	/* thresholds: a number, or "off" */
	P("spam_add_header_score", CONF_STR, "6"),
	P("spam_rewrite_subject_score", CONF_STR, "off"),
	P("spam_subject_prefix", CONF_STR, "***SPAM***"),
	P("spam_greylist_score", CONF_STR, "off"),
	P("spam_reject_score", CONF_STR, "15"),
	P("spam_reject_reply", CONF_STR, "550 5.7.1 Message rejected as spam"),
	P("spam_greylist_reply", CONF_STR, "451 4.7.1 Message deferred, try again later"),
	/* relays trusted in the Received chain; the first hop outside is the one checked */
	P("spam_trusted_networks", CONF_LIST, "$mynetworks"),
	/* authenticated clients and $mynetworks are not scanned unless this is yes */
	P("spam_scan_outbound", CONF_BOOL, "no"),
	/* per-sender tables (envelope sender and From: address, access(5) order) */
	P("spam_allow_from", CONF_STR, ""),
	P("spam_block_from", CONF_STR, ""),
	/* limits on what one message may cost */
	PS("spam_max_scan_size", "1048576", 1024, 0),
	PI("spam_max_parts", "200", 1, 100000),
	PI("spam_max_depth", "20", 1, 1000),
	PI("spam_max_urls", "1000", 0, 1000000),
	/* DNS lists: a table file "zone ip|domain answer SYMBOL score"; one deadline per message */
	P("spam_dns_lists", CONF_STR, ""),
	PT("spam_dns_timeout", "2s", 1, 60, 's'),
	/* SPF/DKIM/DMARC from Authentication-Results of these authserv-ids only */
	P("spam_trusted_authserv_ids", CONF_LIST, "$myhostname"),
	P("spam_auth_scores", CONF_LIST,
	  "SPF_FAIL:1.0, SPF_SOFTFAIL:0.5, SPF_PERMERROR:0.3, DKIM_FAIL:0.5, DKIM_PERMERROR:0.3, "
	  "DMARC_FAIL:2.0, SPF_PASS:-0.1, DKIM_PASS:-0.1, DMARC_PASS:-0.2"),
	/* GeoIP/ASN (libmaxminddb files) and scores: "GB:1.0, XX:2.5", "64496:3.0" */
	P("spam_geoip_country_db", CONF_STR, ""),
	P("spam_geoip_asn_db", CONF_STR, ""),
	P("spam_country_scores", CONF_LIST, ""),
	P("spam_asn_scores", CONF_LIST, ""),
	/* Bayes (milters/spam/spam_bayes*.c; docs/SPAM-BAYES.md) */
	P("spam_bayes_enable", CONF_BOOL, "yes"),
	PE("spam_bayes_backend", "lmdb", "lmdb|redis"),
	P("spam_bayes_db", CONF_STR, "/var/lib/sluice/spam-bayes.lmdb"),
	PS("spam_bayes_db_max_size", "256m", 1048576, 0),
	P("spam_redis_server", CONF_STR, "127.0.0.1:6379"),
	P("spam_redis_password", CONF_STR, ""),
	PI("spam_redis_db", "0", 0, 1000000),
	P("spam_redis_prefix", CONF_STR, "sluice:bayes:"),
	PT("spam_redis_timeout", "1s", 1, 600, 's'),
	PI("spam_bayes_min_spam", "200", 0, 1000000000),
	PI("spam_bayes_min_ham", "200", 0, 1000000000),
	P("spam_bayes_scores", CONF_STR, ""),
	P("spam_bayes_autolearn_spam", CONF_STR, "off"),
	P("spam_bayes_autolearn_ham", CONF_STR, "off"),
	PI("spam_bayes_max_tokens", "1000000", 0, 1000000000),
	PT("spam_bayes_token_max_age", "180d", 0, 86400LL * 3650, 'd'),
	PT("spam_bayes_expire_period", "12h", 0, 86400LL * 365, 'h'),
	/* what to do when the milter itself fails on a message */
	PE("spam_on_error", "accept", "accept|tempfail"),
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
