#include "conf/params.h"
#include "conf/params_dkim.h"
#include "conf/params_spf.h"

#include <stddef.h>

#define P(n, t, d) { n, t, d, 0, 0, NULL, 0 }
#define PI(n, d, lo, hi) { n, CONF_INT, d, lo, hi, NULL, 0 }
#define PT(n, d, lo, hi, u) { n, CONF_TIME, d, lo, hi, NULL, u }
#define PE(n, d, ch) { n, CONF_ENUM, d, 0, 0, ch, 0 }
#define PS(n, d, lo, hi) { n, CONF_SIZE, d, lo, hi, NULL, 0 }

const struct conf_param common_params[] = {
	P("myhostname", CONF_STR, "localhost.localdomain"),
	P("mydomain", CONF_STR, "localdomain"),
	P("myorigin", CONF_STR, "$myhostname"),
	P("mail_owner", CONF_STR, "sluice"),
	P("maillog_file", CONF_STR, ""),
	PE("log_format", "plain", "plain|json"),
	P("dns_servers", CONF_LIST, ""),
	PT("dns_timeout", "5s", 1, 300, 's'),
	PI("dns_tries", "2", 1, 10),
	P("config_directory", CONF_STR, ""),
	P("data_directory", CONF_STR, ""),
	P("run_directory", CONF_STR, "/var/run/sluice"),
	/* local submission (sluice-sendmail); sluiced listens here and applies non_smtpd_milters */
	P("sendmail_socket", CONF_STR, "unix:$queue_directory/public/sendmail"),
	/* filters whose daemons have no table of their own yet (sluice start reads these) */
	P("spf_enable", CONF_BOOL, "no"),
	P("dmarc_enable", CONF_BOOL, "no"),
	P("spam_enable", CONF_BOOL, "no"),
	P("ratelimit_enable", CONF_BOOL, "no"),
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};

const struct conf_param mta_params[] = {
	P("mynetworks", CONF_LIST, "127.0.0.0/8, [::1]/128"),
	P("smtpd_listen", CONF_LIST, "0.0.0.0:25"),
	P("queue_directory", CONF_STR, "/var/spool/sluice"),
	P("pid_file", CONF_STR, "$queue_directory/pid/sluiced.pid"),
	P("smtpd_banner", CONF_STR, "$myhostname ESMTP"),
	PI("smtpd_workers", "0", 0, 64),
	PI("qmgr_delivery_threads", "4", 1, 64),
	P("virtual_mailbox_domains", CONF_LIST, ""),
	P("virtual_mailbox_maps", CONF_LIST, ""),
	P("virtual_mailbox_base", CONF_STR, "/var/mail/vhosts"),
	P("virtual_alias_maps", CONF_LIST, ""),
	P("virtual_alias_domains", CONF_LIST, ""),
	PI("virtual_alias_recursion_limit", "1000", 1, 100000),
	PI("virtual_alias_expansion_limit", "1000", 1, 100000),
	P("relay_domains", CONF_LIST, ""),
	P("mydestination", CONF_LIST, ""),
	PS("message_size_limit", "10240000", 0, 0),
	PI("smtpd_recipient_limit", "1000", 1, 1000000),
	PI("smtpd_max_line_length", "2048", 512, 1048576),
	PE("smtpd_forbid_bare_newline", "reject", "reject|normalize|yes|no"),
	PI("smtpd_soft_error_limit", "10", 0, 100000),
	PI("smtpd_hard_error_limit", "20", 1, 100000),
	PT("smtpd_error_sleep_time", "1s", 0, 600, 's'),
	PT("smtpd_timeout", "300s", 1, 3600, 's'),
	PT("smtpd_starttls_timeout", "300s", 1, 3600, 's'),
	P("smtpd_peername_lookup", CONF_BOOL, "yes"),
	P("disable_vrfy_command", CONF_BOOL, "no"),
	P("smtpd_delay_reject", CONF_BOOL, "yes"),
	P("smtpd_helo_required", CONF_BOOL, "no"),
	P("smtpd_client_restrictions", CONF_LIST, ""),
	P("smtpd_helo_restrictions", CONF_LIST, ""),
	P("smtpd_sender_restrictions", CONF_LIST, ""),
	P("smtpd_relay_restrictions", CONF_LIST,
	  "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"),
	P("smtpd_recipient_restrictions", CONF_LIST, ""),
	P("smtpd_data_restrictions", CONF_LIST, ""),
	P("smtpd_end_of_data_restrictions", CONF_LIST, ""),
	P("smtpd_reject_unlisted_recipient", CONF_BOOL, "yes"),
	/* SMTP AUTH (RFC 4954) and the submission listeners (mta/sasl.c, smtp_session.c) */
	P("submission_listen", CONF_LIST, ""),	/* port 587: STARTTLS, AUTH before MAIL */
	P("smtps_listen", CONF_LIST, ""),	/* port 465: implicit TLS (RFC 8314) */
	P("smtpd_sasl_auth_enable", CONF_BOOL, "no"),
	PE("smtpd_sasl_type", "passwdfile", "passwdfile|dovecot"),
	P("smtpd_sasl_path", CONF_STR, ""),
	P("smtpd_sasl_security_options", CONF_LIST, "noanonymous"),
	P("smtpd_sasl_tls_security_options", CONF_LIST, "$smtpd_sasl_security_options"),
	P("smtpd_tls_auth_only", CONF_BOOL, "yes"),
	P("broken_sasl_auth_clients", CONF_BOOL, "no"),
	PT("smtpd_sasl_timeout", "30s", 1, 3600, 's'),
	P("smtpd_sender_login_maps", CONF_STR, ""),
	/* what master.cf's "submission"/"smtps" -o overrides say in Postfix's example */
	P("submission_sasl_auth_enable", CONF_BOOL, "yes"),
	P("submission_tls_security_level", CONF_STR, "encrypt"),
	P("submission_relay_restrictions", CONF_LIST, "permit_sasl_authenticated, reject"),
	PI("access_map_reject_code", "554", 400, 599),
	PI("access_map_defer_code", "450", 400, 499),
	PI("reject_code", "554", 400, 599),
	PI("defer_code", "450", 400, 499),
	PI("relay_domains_reject_code", "554", 400, 599),
	PI("maps_rbl_reject_code", "554", 400, 599),
	PI("unknown_address_reject_code", "450", 400, 599),
	PI("unknown_client_reject_code", "450", 400, 599),
	PI("unknown_hostname_reject_code", "450", 400, 599),
	PI("invalid_hostname_reject_code", "501", 400, 599),
	PI("non_fqdn_reject_code", "504", 400, 599),
	PI("unknown_virtual_mailbox_reject_code", "550", 400, 599),
	P("smtpd_tls_cert_file", CONF_STR, ""),
	P("smtpd_tls_key_file", CONF_STR, ""),
	P("smtpd_tls_security_level", CONF_STR, ""),	/* "" | none | may | encrypt: checked in smtpd.c */
	P("smtpd_tls_received_header", CONF_BOOL, "yes"),
	PT("minimal_backoff_time", "300s", 1, 0, 's'),
	PT("maximal_backoff_time", "4000s", 1, 0, 's'),
	PT("maximal_queue_lifetime", "5d", 0, 0, 'd'),
	PT("queue_run_delay", "300s", 1, 0, 's'),
	PT("graceful_stop_timeout", "30s", 0, 3600, 's'),
	PT("smtpd_policy_service_timeout", "100s", 1, 3600, 's'),
	PT("smtpd_policy_service_max_idle", "300s", 1, 0, 's'),
	PT("smtpd_policy_service_max_ttl", "1000s", 1, 0, 's'),
	PI("smtpd_policy_service_try_limit", "2", 1, 100),
	PT("smtpd_policy_service_retry_delay", "1s", 0, 3600, 's'),
	P("smtpd_policy_service_default_action", CONF_STR, "451 4.3.5 Server configuration problem"),
	P("smtpd_policy_service_policy_context", CONF_STR, ""),
	P("smtpd_milters", CONF_LIST, ""),
	P("non_smtpd_milters", CONF_LIST, ""),
	PT("milter_connect_timeout", "30s", 1, 3600, 's'),
	PT("milter_command_timeout", "30s", 1, 3600, 's'),
	PT("milter_content_timeout", "300s", 1, 36000, 's'),
	PE("milter_default_action", "tempfail", "accept|tempfail|reject|quarantine"),
	PI("milter_protocol", "6", 2, 6),
	P("milter_macro_daemon_name", CONF_STR, "$myhostname"),
	P("milter_macro_v", CONF_STR, "sluice"),
	P("milter_connect_macros", CONF_STR,
	  "j {daemon_name} {daemon_addr} {daemon_port} v _ {client_addr} {client_name} {client_port} {client_ptr} {client_connections}"),
	P("milter_helo_macros", CONF_STR, "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}"),
	P("milter_mail_macros", CONF_STR, "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}"),
	P("milter_rcpt_macros", CONF_STR, "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"),
	P("milter_data_macros", CONF_STR, "i"),
	P("milter_end_of_header_macros", CONF_STR, "i"),
	P("milter_end_of_data_macros", CONF_STR, "i"),
	P("milter_unknown_command_macros", CONF_STR, ""),
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};

/* The registry: one line per daemon table (keep the NULL last). */
const struct conf_param *const params_all[] = {
	common_params,
	mta_params,
	dkim_params,
	spf_params,
	NULL,
};

const char *const mta_restriction_params[] = {
	"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
	"smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_data_restrictions",
	"smtpd_end_of_data_restrictions", "submission_relay_restrictions", NULL,
};
