#include "conf/params_dmarc.h"
#include "conf/params_table.h"

#include <stddef.h>

/* The meaning of each key, and its OpenDMARC equivalent: docs/DMARC.md. */
const struct conf_param dmarc_params[] = {
	/* OpenDMARC's default port is 8893 */
	P("dmarc_socket", CONF_STR, "inet:8893@127.0.0.1"),
	P("dmarc_socket_mode", CONF_STR, "0666"),
	P("dmarc_pid_file", CONF_STR, ""),
	PE("dmarc_mode", "dmarcbis", "dmarcbis|rfc7489"),
	P("dmarc_self_validate", CONF_BOOL, "yes"),
	P("dmarc_trusted_authserv_ids", CONF_LIST, "$myhostname"),
	P("dmarc_trust_received_spf", CONF_BOOL, "no"),
	P("dmarc_reject_malformed_from", CONF_BOOL, "yes"),
	/* a From with more distinct domains than this is malformed (bounds the look-ups) */
	PI("dmarc_max_from_domains", "10", 1, 100),
	PE("dmarc_on_temperror", "accept", "accept|tempfail"),
	P("dmarc_enforce", CONF_BOOL, "yes"),
	/* text after "550 5.7.1 "; %d = the From domain, %% = % */
	P("dmarc_reject_reply", CONF_STR, "rejected by DMARC policy for %d"),
	PE("dmarc_quarantine_action", "hold", "hold|header"),
	P("dmarc_ignore_authenticated_clients", CONF_BOOL, "yes"),
	P("dmarc_ignore_hosts", CONF_LIST, "127.0.0.1, ::1"),
	P("dmarc_ignore_domains", CONF_LIST, ""),
	P("dmarc_authserv_id", CONF_STR, "$myhostname"),
	P("dmarc_public_suffix_list", CONF_STR, "/usr/share/publicsuffix/public_suffix_list.dat"),
	/* all SPF and DMARC look-ups of one message (RFC 7208 4.6.4: at least 20 s for SPF) */
	PT("dmarc_dns_deadline", "20s", 1, 300, 's'),
	/* SPF and DMARC answers kept for their TTL; 0 = none */
	PI("dmarc_dns_cache_size", "10000", 0, 10000000),
	P("dmarc_failure_reports", CONF_BOOL, "no"),
	P("dmarc_failure_report_redact", CONF_BOOL, "yes"),
	PI("dmarc_failure_report_rate", "10", 0, 100000),
	P("dmarc_failure_report_from", CONF_STR, "postmaster@$myhostname"),
	/* the Sendmail-compatible command reports leave through; "" = sluice-sendmail beside us */
	P("dmarc_failure_report_sendmail", CONF_STR, ""),
	/* `sluice report dmarc` (docs/DMARC-REPORTS.md): the Reporting Organization */
	P("dmarc_report_org_name", CONF_STR, "$myhostname"),
	P("dmarc_report_email", CONF_STR, "postmaster@$myhostname"),
	/* --send: reports mailed to one destination address in one run at most */
	PI("dmarc_report_max_per_destination", "50", 0, 1000000),
	/* --send: a file of addresses never mailed (one a line); bounced ones are added; "" = none */
	P("dmarc_report_suppress", CONF_STR, ""),
	/* --send: the Sendmail-compatible command; "" = sluice-sendmail beside sluice, -C our file */
	P("dmarc_report_sendmail", CONF_STR, ""),
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
