/*
 * smtp_check: Postfix-style access restrictions (smtpd_*_restrictions).
 * Owns: evaluating one restriction list in order, first decisive result
 * wins (permit, reject, defer, warn_if_reject, permit_mynetworks,
 * reject_unauth_destination, reject_unauth_pipelining, the helo / sender /
 * recipient / client name checks, permit_sasl_authenticated,
 * reject_[un]authenticated_sender_login_mismatch (smtpd_sender_login_maps),
 * and the rest:
 * recipient / client name checks, reject_rbl_client, check_*_access with
 * access(5) actions), the reply codes and texts Postfix uses, and the DNS
 * look-ups they need (asynchronous: evaluation suspends with CHECK_PENDING
 * and resumes where it stopped when the answer arrives).
 * Leaves: when lists run (smtpd_delay_reject) and replies to smtp_session.c.
 */
#ifndef SLUICE_MTA_SMTP_CHECK_H
#define SLUICE_MTA_SMTP_CHECK_H

#include <stddef.h>
#include "lib/util.h"

struct smtpd;
struct router;
struct check_dns_cache;
struct policy_call;

enum check_stage {
	CHECK_CLIENT, CHECK_HELO, CHECK_SENDER, CHECK_RELAY, CHECK_RECIPIENT,
	CHECK_DATA, CHECK_EOD, CHECK_NSTAGES
};
/* "smtpd_client_restrictions", ... */
const char *check_stage_param(enum check_stage st);

struct check_reply {
	int code;		/* 4xx / 5xx */
	char dsn[16];		/* "5.7.1" */
	char text[768];		/* "<a@b>: Relay access denied" (no code) */
};

/* Side effects of non-final actions, per transaction. */
struct check_effects {
	struct sbuf prepend;	/* header lines (LF-terminated) to put on top of the message */
	int hold;		/* HOLD: commit into hold/ */
	int discard;		/* DISCARD: accept and drop */
	int policy_asked;	/* a policy service was asked (sluiced logs the instance) */
};

/*
 * Per-command state: DEFER_IF_PERMIT / DEFER_IF_REJECT (access(5)) and
 * the policy service answer being waited for. Reset with
 * check_cmd_reset() before each command's lists run; check_cmd_final()
 * turns an accept into the deferred reply when DEFER_IF_PERMIT was seen.
 */
struct check_cmd {
	int defer_if_permit;
	struct check_reply dip_reply;
	int defer_if_reject;
	/* check_policy_service */
	struct policy_call *call;	/* in flight */
	int policy_done;
	int policy_stage;
	size_t policy_index;
	char *policy_action;		/* NULL = the service failed: default action */
};
void check_cmd_reset(struct check_cmd *cc);
/* check_cmd_final - 1 and *out filled when an accept must become DEFER_IF_PERMIT's reply. */
int check_cmd_final(struct check_cmd *cc, struct check_reply *out);

/* What the restrictions look at. Strings are borrowed from the session. */
struct check_ctx {
	struct smtpd *srv;
	struct router *router;
	const char *client_addr;
	const char *client_name;	/* forward-confirmed name, or "unknown" */
	const char *client_rev_name;	/* PTR name, or "unknown" */
	int client_name_tempfail;	/* PTR/forward look-up failed temporarily */
	const char *helo;		/* NULL without HELO/EHLO */
	const char *sender;		/* NULL before MAIL; "" for the null sender */
	const char *recipient;		/* RCPT stage */
	int sasl_authenticated;
	const char *sasl_method;	/* "PLAIN", ... or NULL (policy sasl_method) */
	const char *sasl_username;	/* login name or NULL */
	const char *sasl_sender;	/* MAIL FROM AUTH= value or NULL */
	int submission;			/* submission/smtps listener: submission_relay_restrictions */
	int unauth_pipelining;		/* client sent commands ahead of time where not allowed */
	struct check_dns_cache *dns;
	struct check_effects *fx;
	struct check_cmd *cmd;
	/* for check_policy_service requests (SMTPD_POLICY_README attributes) */
	const char *protocol_state;	/* "RCPT", "DATA", "END-OF-MESSAGE", ... */
	const char *protocol_name;	/* "ESMTP", ... */
	const char *queue_id;		/* "" before one exists */
	const char *client_port;
	const char *server_address, *server_port;
	const char *instance;		/* the same for every request of one message */
	unsigned long recipient_count;
	long long size;			/* MAIL SIZE= or the message size at end of data */
	const char *encryption_protocol, *encryption_cipher;
	int encryption_keysize;
	/* called from the event loop when a look-up that made a list PENDING completes */
	void (*resume)(void *arg);
	void *resume_arg;
	/* called for warn_if_reject (warning = 1) so the session logs "reject_warning:" */
	void (*log_reject)(void *arg, const struct check_reply *r, int warning);
};

enum check_verdict {
	CHECK_CONTINUE,		/* no reject: permit, or end of list */
	CHECK_REJECT,		/* reply in *out (4xx or 5xx) */
	CHECK_PENDING,		/* waiting for DNS; ctx->resume will be called */
};

/* Resumable evaluation of one list. */
struct check_run {
	enum check_stage stage;
	size_t i;		/* next element */
	int warn;		/* previous element was warn_if_reject */
	int active;
};

void check_run_start(struct check_run *run, enum check_stage st);

/*
 * check_list_run - evaluate the restriction list of run->stage from run->i.
 * Returns CHECK_PENDING with run->i left at the element waiting for DNS
 * (call again after ctx->resume), otherwise the verdict with *out filled
 * for CHECK_REJECT. Unknown restriction names are a config error caught by
 * check_validate_list(); at run time they are logged and skipped.
 */
enum check_verdict check_list_run(struct check_ctx *ctx, struct check_run *run, struct check_reply *out);

/*
 * check_validate_list - verify the restriction list in param (names known,
 * arguments present, tables openable through srv's table set). 0 or -1 with
 * *err_out (caller frees).
 */
int check_validate_list(struct smtpd *srv, const char *param, char **err_out);

/* Per-session DNS answer cache for restrictions (owns pending requests). */
struct check_dns_cache *check_dns_cache_new(void);
/* frees entries and cancels a pending look-up (its resume is not called) */
void check_dns_cache_free(struct check_dns_cache **c);

/* check_effects_reset - clear for a new transaction. */
void check_effects_reset(struct check_effects *fx);

/* Host name syntax (RFC 1035 labels, or an address literal), for HELO checks. */
int check_valid_hostname(const char *s);

#endif
