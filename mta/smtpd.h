/*
 * smtpd: the state one sluiced receiver process shares among its SMTP
 * sessions: configuration, tables, resolver, TLS context, queue committer.
 * Owns: loading and reloading that state (SIGHUP) and the hot config values.
 * Leaves: per-connection state to smtp_session.c, decisions to smtp_check.c.
 */
#ifndef SLUICE_MTA_SMTPD_H
#define SLUICE_MTA_SMTPD_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "proto/smtp.h"
#include "mta/milter_client.h"

struct event_base;
struct conf;
struct table_set;
struct dns_resolver;
struct queue_committer;
struct netlist;
struct policy_pool;
struct sasl_server;

/*
 * Which listener a connection came in on. Carried from main.c to the
 * receivers in struct listener's `local` field (lib/daemon.h).
 */
enum smtpd_listen_kind {
	SMTPD_LISTEN_SMTP = 0,		/* smtpd_listen */
	SMTPD_LISTEN_LOCAL = 1,		/* sendmail_socket */
	SMTPD_LISTEN_SUBMISSION = 2,	/* submission_listen: STARTTLS, AUTH before MAIL */
	SMTPD_LISTEN_SMTPS = 3,		/* smtps_listen: implicit TLS, AUTH before MAIL */
};

/* Hot configuration values, refreshed on reload. Strings borrowed from conf. */
struct smtpd_cfg {
	const char *myhostname;
	const char *banner;
	const char *qdir;
	long long message_size_limit;	/* bytes, 0 = none */
	long long recipient_limit;
	long long max_line_bytes;
	enum smtp_bare_policy bare;
	long long soft_error_limit, hard_error_limit;
	long long error_sleep_ms;
	long long timeout_s;
	int peername_lookup;
	int disable_vrfy;
	int delay_reject;
	int helo_required;
	int reject_unlisted_recipient;
	int tls_level;			/* 0 none, 1 may, 2 encrypt */
	int tls_received_header;
	long long graceful_stop_s;
	/* SMTP AUTH */
	int sasl_enable;		/* smtpd_sasl_auth_enable (port 25) */
	int submission_sasl_enable;	/* submission_sasl_auth_enable */
	int submission_tls_level;	/* submission_tls_security_level, as tls_level */
	int tls_auth_only;
	int broken_sasl_clients;
	int sasl_noplaintext, sasl_tls_noplaintext;	/* from the *_security_options */
	const char *sasl_type, *sasl_path;
	long long sasl_timeout_s;
};

struct smtpd {
	struct event_base *base;
	struct conf *conf;
	struct smtpd_cfg cfg;
	struct table_set *tables;
	struct dns_resolver *dns;
	SSL_CTX *tls;			/* NULL when no certificate */
	struct queue_committer *committer;
	struct netlist *mynetworks;
	struct router *router;
	struct policy_pool *policy;	/* check_policy_service connections */
	struct sasl_server *sasl;	/* AUTH back ends; survives reloads */
	struct mc_conf *milters;	/* smtpd_milters */
	size_t nmilters;
	struct mc_conf *local_milters;	/* non_smtpd_milters: local submission (sluice-sendmail) */
	size_t nlocal_milters;
	struct mc_macro_lists milter_macros;	/* strings borrowed from conf */
	int notify_fd;			/* write "QUEUEID\n" to tell the queue manager; -1 = none */
	size_t nsessions;
	int stopping;
	char *conf_path;
};

/*
 * smtpd_load - read config (path) and build everything that depends on it:
 * tables named in any restriction or map, mynetworks, resolver, TLS.
 * On error returns -1 with *err_out (caller frees), leaving *s unchanged
 * (so a failed reload keeps the running configuration).
 */
int smtpd_load(struct smtpd *s, const char *path, char **err_out);

/* smtpd_free_config - release what smtpd_load built. */
void smtpd_free_config(struct smtpd *s);

/*
 * smtpd_validate - everything smtpd_load checks, without a running loop
 * (for `sluice check`): config, every table, mynetworks, TLS files.
 * Returns 0 or -1 with *err_out (caller frees). Warnings go to log_event.
 */
int smtpd_validate(const char *path, char **err_out);

#endif
