/*
 * smtp_session_int: what the parts of one SMTP session share: the session
 * state and the session's own helpers. Private to mta/smtp_session.c (the
 * state machine and I/O), mta/smtp_auth.c (SMTP AUTH) and mta/smtp_milter.c
 * (the milter glue). Everything else uses mta/smtp_session.h.
 */
#ifndef SLUICE_MTA_SMTP_SESSION_INT_H
#define SLUICE_MTA_SMTP_SESSION_INT_H

#include "mta/smtp_session.h"
#include "mta/milter_client.h"
#include "mta/smtpd.h"
#include "mta/smtp_check.h"
#include "mta/router.h"
#include "mta/queue.h"
#include "mta/sasl.h"
#include "conf/conf.h"
#include "proto/smtp.h"
#include "proto/dns.h"
#include "lib/log.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

/* per-verb counters for the "disconnect from" line (Postfix style) */
struct verb_count {
	unsigned ok, total;
};

struct smtp_session {
	struct smtpd *srv;
	struct bufferevent *bev;
	struct smtp_parser *parser;
	char addr[INET6_ADDRSTRLEN];
	char port[8];
	char name[256];		/* forward-confirmed, or "unknown" */
	char rev_name[256];	/* PTR, or "unknown" */
	int name_tempfail;
	struct dns_req *name_req;
	int greeted;
	int discard_all;	/* a milter said discard at connect */
	int milter_discard;	/* the discard of this transaction (or of all) came from a milter */
	int local;		/* sendmail_socket: local submission */
	int submission;		/* submission_listen or smtps_listen: AUTH before MAIL */

	/* SMTP AUTH (RFC 4954) */
	int auth_state;		/* AUTH_*: waiting for a 334 response line */
	char auth_mech[8];
	char *auth_login_user;	/* LOGIN: the name, while the password is asked for */
	struct sasl_req *sasl_req;
	char *sasl_method, *sasl_username;	/* set once authenticated */
	char *sasl_sender;	/* MAIL FROM AUTH= of the current transaction */
	long local_uid;
	int early_talker;
	int esmtp;
	char *helo;
	int tls;
	int busy;		/* waiting for DNS, a commit or an error sleep */
	int closing;		/* close when output is flushed */
	int dead;		/* connection gone; free when the pending commit returns */
	int commit_pending;
	double eod_start_s;	/* metrics: CLOCK_MONOTONIC at the end of data, 0 = none */
	unsigned errors;
	struct event *sleep_ev;
	struct event *close_ev;
	struct sbuf delayed;	/* reply held back by smtpd_error_sleep_time */
	int delayed_close;
	const char *last_cmd;	/* for "timeout after X" */
	struct verb_count counts[SMTP_VERB_AUTH + 1];
	unsigned commands;

	/* transaction */
	int in_mail;
	char *sender;
	long long mail_size;
	int body_8bit, smtputf8;
	char *envid, *ret;
	struct queue_writer *writer;
	struct queue_envelope env;
	size_t nrcpt_accepted;
	int in_data;		/* DATA or BDAT content flowing */
	int bdat;		/* transaction uses BDAT */
	int bdat_refuse;	/* swallowing a chunk we refuse */
	struct check_reply bdat_reply;
	int bdat_last;
	unsigned long long bdat_chunk;
	long long data_bytes;
	int too_big;
	int write_error;
	int in_headers;
	struct sbuf hdr_line;
	char *message_id;
	char committed_id[64];
	double arrival;

	/* milters */
	struct mc_session *mc;
	struct check_reply conn_reply;	/* a milter refused the connection: every command gets this */
	int milter_reject;		/* the reject being logged came from a milter */
	char *mail_args, *rcpt_args;	/* ESMTP parameters as sent, for the milters */
	char **pending_finals;		/* RCPT: router result, added once the milters agree */
	size_t npending_finals;
	int pending_relay;
	struct mc_message mmsg;
	/* macro values that are composed, one buffer each (all valid at once) */
	char m_underscore[600], m_mail_host[256], m_rcpt_host[256], m_bits[16];

	/* restriction evaluation */
	struct check_cmd cmd;
	char instance[64];
	char server_addr[INET6_ADDRSTRLEN];
	char server_port[8];
	struct check_ctx ctx;
	struct check_effects fx;
	struct check_dns_cache *dns;
	struct check_run run;
	enum check_stage stages[CHECK_NSTAGES];
	int nstages, cur_stage;
	int pend;		/* PEND_*: what the running checks decide */
	char *pending_rcpt;	/* RCPT under evaluation */
	unsigned pending_notify;
	char *pending_orcpt;
	int pending_unauth;
};

enum { AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

enum { PEND_HELO = 100, PEND_MAIL, PEND_RCPT, PEND_DATA, PEND_BDAT, PEND_EOD };


/* smtp_session.c: replies, counters, transaction and life cycle */
const char *sess_hostname(struct smtp_session *s);
void sess_out(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* a 4xx/5xx reply that counts as an error (error sleep, hard limit) */
void sess_reply_error(struct smtp_session *s, int code, const char *dsn, const char *text);
void sess_count(struct smtp_session *s, enum smtp_verb v, int ok);
int sess_sasl_offered(struct smtp_session *s);
void sess_txn_reset(struct smtp_session *s);
/* the positive outcome of s->pend, once restrictions and milters agree */
void sess_finish_accept(struct smtp_session *s);
void sess_reject_cmd(struct smtp_session *s, const struct check_reply *r);
void sess_commit_message(struct smtp_session *s);
void sess_send_greeting(struct smtp_session *s);
/* run buffered commands until one waits; close when asked and flushed */
void sess_process(struct smtp_session *s);
void sess_maybe_close(struct smtp_session *s);
void sess_free(struct smtp_session *s);

/* smtp_auth.c: SMTP AUTH (RFC 4954) */
void smtp_auth_cmd(struct smtp_session *s, const struct smtp_cmd *c);
/* a continuation line of AUTH (smtp_parser_expect_line) */
void smtp_auth_line(struct smtp_session *s, const char *line, size_t len);
void smtp_auth_reset(struct smtp_session *s);
/* forget the login (STARTTLS after AUTH, session end) */
void smtp_auth_forget(struct smtp_session *s);

/* smtp_milter.c: the milter stages of a session */
/* hand s->pend to the milters; 1 if they now decide (the session is busy), 0 if none take part */
int smtp_milter_stage(struct smtp_session *s);
/* end of data: the content phase, then the commit (or a reject) */
void smtp_milter_eom(struct smtp_session *s);
const char *smtp_milter_macro(void *arg, const char *name);
void smtp_milter_connect_done(void *arg, const struct mc_result *r);
void smtp_milter_unknown_done(void *arg, const struct mc_result *r);

#endif
