/*
 * policy_client: the MTA side of Postfix's policy delegation protocol
 * (check_policy_service), for one receiver process.
 * Owns: persistent connections per service ("inet:host:port", "host:port",
 * "unix:/path"), one request at a time per connection, the
 * smtpd_policy_service_* limits (timeout, max_idle, max_ttl, try_limit,
 * retry_delay) and TCP_NODELAY. Requests that find no idle connection
 * open a new one, so a slow server never holds up other sessions. An idle
 * connection the server closes is dropped when that is seen; a kept
 * connection that fails before any reply byte (the server went away or was
 * restarted meanwhile) is retried at once on another one without counting
 * a try, as Postfix's client does.
 * Leaves: which attributes to send and what the action means (smtp_check.c).
 */
#ifndef SLUICE_MTA_POLICY_CLIENT_H
#define SLUICE_MTA_POLICY_CLIENT_H

#include "lib/util.h"

struct event_base;
struct policy_pool;
struct policy_call;

struct policy_pool_opts {
	long long timeout_s;		/* smtpd_policy_service_timeout (100s): connect + request */
	long long max_idle_s;		/* smtpd_policy_service_max_idle (300s) */
	long long max_ttl_s;		/* smtpd_policy_service_max_ttl (1000s) */
	long long try_limit;		/* smtpd_policy_service_try_limit (2) */
	long long retry_delay_s;	/* smtpd_policy_service_retry_delay (1s) */
};

struct policy_pool *policy_pool_new(struct event_base *base, const struct policy_pool_opts *o);
/* policy_pool_set_opts - new limits after a reload (existing connections keep going). */
void policy_pool_set_opts(struct policy_pool *p, const struct policy_pool_opts *o);
void policy_pool_free(struct policy_pool **p);

/*
 * policy_done_cb - called once from the loop. action is the reply's
 * "action=" value (borrowed for the call), or NULL when the service could
 * not answer within the limits (err says why); the caller then applies
 * smtpd_policy_service_default_action.
 */
typedef void (*policy_done_cb)(void *arg, const char *action, const char *err);

/*
 * policy_call_start - send request (a complete message, ending with the
 * empty line; copied) to service. Returns a handle for policy_call_cancel,
 * valid until cb runs. Never calls cb before returning.
 */
struct policy_call *policy_call_start(struct policy_pool *p, const char *service, const struct sbuf *request,
				      policy_done_cb cb, void *arg);
/* policy_call_cancel - cb will not be called; the connection is dropped. NULL ok. */
void policy_call_cancel(struct policy_call *c);

/* policy_service_valid - 1 if spec names a usable service address. */
int policy_service_valid(const char *spec);

#endif
