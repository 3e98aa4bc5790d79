/*
 * spfd_policy: what sluice-spf decides for one Postfix policy request,
 * as policyd-spf (postfix-policyd-spf-python 3.0) does, without I/O.
 * Owns: the spf_* options (typed, from conf), the order of checks (skip
 * lists, domain whitelist, HELO, MAIL FROM), the policyd-spf result ->
 * action tables (HELO_reject, Mail_From_reject, PermError_reject,
 * TempError_Defer, Reject_Not_Pass_Domains), the reply text (PREPEND
 * Received-SPF in RFC 7208 9.1 form, PREPEND Authentication-Results
 * (RFC 8601), 550 5.7.23/5.7.24, DEFER_IF_PERMIT 4.7.24, DUNNO) and the
 * per-message memory ("instance": one result per message).
 * Leaves: DNS and running check_host() (proto/spf via spfd_server), sockets,
 * logging.
 *
 * Use:
 *	struct spfd_job *j = spfd_job_new(&opts, &msg);
 *	struct spf_request req;
 *	while (spfd_job_next(j, &req) == SPFD_JOB_CHECK) {
 *		run check_host(req) ...; spfd_job_result(j, &checked);
 *	}
 *	spfd_job_action(j) ...; spfd_job_free(&j);
 */
#ifndef SLUICE_SPFD_POLICY_H
#define SLUICE_SPFD_POLICY_H

#include <stddef.h>
#include "proto/spf.h"
#include "proto/policy.h"

struct conf;

/* HELO_reject / Mail_From_reject values (policyd-spf.conf(5)). */
enum spfd_reject {
	SPFD_REJ_FAIL, SPFD_REJ_SPF_NOT_PASS, SPFD_REJ_SOFTFAIL, SPFD_REJ_NULL,
	SPFD_REJ_FALSE, SPFD_REJ_NO_CHECK,
};
/* spfd_reject_parse - case-insensitive name -> value; -1 if unknown. */
int spfd_reject_parse(const char *s);

enum spfd_header { SPFD_HDR_SPF, SPFD_HDR_AR };

/* An address block (v4-mapped IPv6 is stored and matched as IPv4). */
struct spfd_net {
	int v6;
	unsigned char addr[16];
	unsigned prefix;
};
/* spfd_net_parse - "192.0.2.0/24", "192.0.2.1", "::1", "[2001:db8::]/32"; 0 or -1. */
int spfd_net_parse(const char *s, struct spfd_net *out);
/* spfd_net_match_any - ip (text) is in one of the blocks. */
int spfd_net_match_any(const struct spfd_net *nets, size_t n, const char *ip);

struct spfd_opts {
	enum spfd_reject helo_reject, mfrom_reject;
	int permerror_reject, temperror_defer, skip_sasl;
	struct spfd_net *skip, *whitelist;
	size_t nskip, nwhitelist;
	char **domain_whitelist, **reject_not_pass;
	size_t ndomain_whitelist, nreject_not_pass;
	enum spfd_header header_type;
	char *authserv_id;	/* also the receiver in Received-SPF */
	char *reason_message;	/* policyd-spf Reason_Message: {rejectdefer} {spf} {url} */
	long long lookup_time_ms;
	size_t cache_size;
};

/* spfd_opts_defaults - policyd-spf's defaults, authserv_id "localhost". */
void spfd_opts_defaults(struct spfd_opts *o);
/*
 * spfd_opts_load - read the spf_* parameters (conf/params_spf.h) from c.
 * 0, or -1 with *err_out (caller frees) naming the parameter and its place.
 */
int spfd_opts_load(const struct conf *c, struct spfd_opts *o_out, char **err_out);
void spfd_opts_free(struct spfd_opts *o);

/* The outcome of one check_host() as the job needs it (strings borrowed). */
struct spfd_checked {
	enum spf_result result;
	const char *mechanism, *reason, *problem, *explanation;
	unsigned dns_terms;
};
/* spfd_checked_from - fill from a finished check (strings borrowed from c). */
void spfd_checked_from(struct spfd_checked *out, const struct spf_check *c);

enum spfd_action { SPFD_ACT_DUNNO, SPFD_ACT_PREPEND, SPFD_ACT_REJECT, SPFD_ACT_DEFER };
enum spfd_job_step { SPFD_JOB_CHECK = 1, SPFD_JOB_DONE };

struct spfd_job;
/* spfd_job_new - msg and opts are read during the call (attributes copied); opts must outlive the job. */
struct spfd_job *spfd_job_new(const struct spfd_opts *o, const struct policy_msg *msg,
			      long long now_s);
/*
 * spfd_job_next - SPFD_JOB_CHECK: run check_host(*req_out) (strings borrowed
 * from the job until spfd_job_result) and report it; SPFD_JOB_DONE: the
 * action accessors are valid.
 */
int spfd_job_next(struct spfd_job *j, struct spf_request *req_out);
void spfd_job_result(struct spfd_job *j, const struct spfd_checked *res);
void spfd_job_free(struct spfd_job **j);

/* The reply: "PREPEND Received-SPF: ...", "550 5.7.23 ...", "DUNNO" (the
 * value of action=, borrowed until spfd_job_free). */
const char *spfd_job_action(const struct spfd_job *j);
enum spfd_action spfd_job_action_kind(const struct spfd_job *j);
/* For the log line: "helo", "mailfrom" or "none"; the identity checked
 * (helo name or sender); result name or "skipped"; mechanism/reason (may be
 * NULL); DNS-querying terms over all checks. */
const char *spfd_job_scope(const struct spfd_job *j);
const char *spfd_job_identity(const struct spfd_job *j);
const char *spfd_job_result_name(const struct spfd_job *j);
const char *spfd_job_mechanism(const struct spfd_job *j);
const char *spfd_job_reason(const struct spfd_job *j);
unsigned spfd_job_dns_terms(const struct spfd_job *j);
unsigned spfd_job_checks(const struct spfd_job *j);

/*
 * Header text, exposed for tests (spf_header without "Received-SPF: ").
 * identity_helo: identity=helo (no envelope-from). sender: the MAIL FROM
 * address ("" = null sender). helo: the HELO name. receiver: our name.
 * Returns a new string (caller frees).
 */
char *spfd_received_spf(const struct spfd_checked *r, int identity_helo, const char *ip,
			const char *sender, const char *helo, const char *receiver);
char *spfd_auth_results(const struct spfd_checked *r, int identity_helo, const char *ip,
			const char *sender, const char *helo, const char *authserv_id);
/* spfd_quote_value - RFC 7208 9.1 key-value: dot-atom as is, else quoted (caller frees). */
char *spfd_quote_value(const char *s);

/*
 * spfd_instances: the per-message memory. Bounded (oldest dropped beyond
 * max entries) and entries expire after ttl_s.
 */
struct spfd_instances;
struct spfd_instances *spfd_instances_new(size_t max, long long ttl_s);
void spfd_instances_free(struct spfd_instances **t);
/* spfd_instances_get - 1 with *kind_out and *action_out (borrowed until the next put) if known. */
int spfd_instances_get(struct spfd_instances *t, const char *instance, long long now_s,
		       enum spfd_action *kind_out, const char **action_out);
void spfd_instances_put(struct spfd_instances *t, const char *instance, enum spfd_action kind,
			const char *action, long long now_s);
size_t spfd_instances_count(const struct spfd_instances *t);

/*
 * spfd_reply_for_instance - what to answer to a further recipient of a
 * message already decided: DUNNO after a PREPEND (one header per message),
 * else the same action. Returns a borrowed static or *action string.
 */
const char *spfd_reply_for_instance(enum spfd_action kind, const char *action);

#endif
