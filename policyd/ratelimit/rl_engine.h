/*
 * rl_engine: sluice-ratelimit's decisions. Owns: walking the rules for a
 * request (the first matching access rule ends the walk; limit and
 * greylist rules on the way are collected), the counting semantics (what
 * each limit costs at each protocol_state, once per message instance),
 * the plan for the store, and, once the store has run it, the reply, the
 * dry-run and backend-error policies, and the log text.
 * Leaves: rules syntax (rl_rules), arithmetic (rl_limit, rl_plan), state
 * (rl_store), sockets and logging (the server).
 *
 * Counting (docs/RATELIMIT.md):
 *   rate():  1 per message: the first request of an instance that meets
 *            the rule counts (first RCPT, or END-OF-MESSAGE); later
 *            requests of that instance are not counted or checked again.
 *            A request without instance counts 1.
 *   rcpt():  RCPT: 1 per request; DATA and END-OF-MESSAGE:
 *            recipient_count minus what the instance counted already;
 *            other states: check only.
 *   size():  END-OF-MESSAGE: size; other states: check only.
 *   check only = over when one more unit would not conform; nothing taken.
 * A request is counted against all its limits or none (rl_plan).
 */
#ifndef SLUICE_RL_ENGINE_H
#define SLUICE_RL_ENGINE_H

#include "policyd/ratelimit/rl_cfg.h"
#include "policyd/ratelimit/rl_plan.h"
#include "policyd/ratelimit/rl_req.h"

#define RL_INSTANCE_MAX 20000
#define RL_INSTANCE_TTL_MS (3600 * 1000LL)

struct rl_engine;

struct rl_decision {
	struct rl_plan plan;
	int terminal;		/* index of the matching access rule, -1: none */
	int grey_allowed;	/* greylist rule met but an allow list matched */
	int use_store;		/* plan has work for the store */
};

/* rl_engine_new - instance memory; kept across configuration reloads. */
struct rl_engine *rl_engine_new(void);
void rl_engine_free(struct rl_engine **e);

/* rl_engine_plan - walk cfg's rules for req at now_ms; fills *d. */
void rl_engine_plan(struct rl_engine *e, const struct rl_cfg *cfg, struct rl_req *req,
		    long long now_ms, struct rl_decision *d);

/*
 * rl_engine_decide - after the store ran d->plan (or not: d->use_store 0),
 * store_err NULL, or why the store failed (then ratelimit_on_backend_error
 * applies). Returns the action (caller frees); *log_out: the decision's
 * log text, "key=value, ..." (caller frees).
 */
char *rl_engine_decide(struct rl_engine *e, const struct rl_cfg *cfg, struct rl_req *req,
		       struct rl_decision *d, const char *store_err, char **log_out);

#endif
