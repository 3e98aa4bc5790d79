/*
 * rl_plan: what one request does to the shared state, and doing it
 * all-or-nothing. Owns: the list of counter operations and the greylist
 * operation of one request, their results, and rl_plan_apply (check every
 * limit; if all conform, the greylist step; if that passes too, take from
 * every limit). Each backend runs rl_plan_apply (the embedded store in one
 * LMDB transaction) or its Lua twin (Redis: one script, atomic).
 * Leaves: which operations a request needs (rl_engine), where cells live
 * (rl_store).
 */
#ifndef SLUICE_RL_PLAN_H
#define SLUICE_RL_PLAN_H

#include <stddef.h>
#include "policyd/ratelimit/rl_limit.h"

#define RL_PLAN_MAX_OPS 32
#define RL_KEY_MAX_BYTES 400	/* LMDB's key limit is 511 */

struct rl_op {
	char key[RL_KEY_MAX_BYTES + 1];
	enum rl_algo algo;
	long long max, window_ms, cost;	/* cost 0: check only */
	int rule;			/* index of the rule (rl_engine) */
	struct rl_limit_res res;	/* filled by apply */
};

enum rl_plan_result {
	RL_PLAN_PASSED,		/* every limit conformed (and was taken); greylist passed */
	RL_PLAN_OVER,		/* ops[over].res.over; nothing taken, greylist not asked */
	RL_PLAN_GREY_DEFER,	/* limits conform (not taken); greylist deferred */
};

struct rl_plan {
	long long now_ms;
	struct rl_op ops[RL_PLAN_MAX_OPS];
	size_t nops;
	/* greylist (has_grey): triplet and client keys, parameters */
	int has_grey;
	int grey_rule;
	char grey_key[RL_KEY_MAX_BYTES + 1];
	char grey_client_key[RL_KEY_MAX_BYTES + 1];
	struct rl_grey_params grey;
	/* results */
	enum rl_plan_result result;
	size_t over;			/* RL_PLAN_OVER: the first op over its limit */
	enum rl_grey_verdict grey_verdict;
	long long grey_retry_ms;
};

/* Cell access for rl_plan_apply; get fills *out (exists 0 when absent). */
struct rl_cell_io {
	void (*get)(void *arg, const char *key, struct rl_cell *out);
	void (*put)(void *arg, const char *key, const struct rl_cell *cell);
	void *arg;
};

/* rl_plan_apply - run p against the cells (see above); fills the results. */
void rl_plan_apply(struct rl_plan *p, const struct rl_cell_io *io);

#endif
