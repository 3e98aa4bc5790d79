/*
 * spfd_run: one check_host() (proto/spf) driven by spfd_dns answers inside
 * a libevent loop, with the per-check deadline (spf_lookup_time).
 * Owns: the check's outstanding look-ups and its deadline timer.
 * Leaves: what the result means (spfd_policy) and the DNS cache (spfd_dns).
 */
#ifndef SLUICE_SPFD_RUN_H
#define SLUICE_SPFD_RUN_H

#include "policyd/spf/spfd_dns.h"
#include "policyd/spf/spfd_policy.h"

struct event_base;
struct spfd_run;

/*
 * spfd_run_cb - the outcome, called once from the loop. res strings are
 * borrowed for the call. queries = look-ups the check asked (cache hits
 * included). On the deadline res->result is SPF_TEMPERROR.
 */
typedef void (*spfd_run_cb)(void *arg, const struct spfd_checked *res, unsigned queries);

/*
 * spfd_run_start - start check_host(req) (req copied). deadline_ms <= 0 = none.
 * The callback never runs before spfd_run_start returns. The handle is
 * valid until the callback has run or spfd_run_cancel.
 */
struct spfd_run *spfd_run_start(struct event_base *base, struct spfd_dns *d,
				const struct spf_request *req, long long deadline_ms,
				spfd_run_cb cb, void *arg);
/* spfd_run_cancel - the callback will not run; NULL is ignored. */
void spfd_run_cancel(struct spfd_run *r);

#endif
