/*
 * rl_plan: see rl_plan.h (and its Lua twin in rl_redis.c).
 */
#include "policyd/ratelimit/rl_plan.h"

void rl_plan_apply(struct rl_plan *p, const struct rl_cell_io *io)
{
	struct rl_cell next[RL_PLAN_MAX_OPS];

	p->result = RL_PLAN_PASSED;
	for (size_t i = 0; i < p->nops; i++) {
		struct rl_op *op = &p->ops[i];
		struct rl_cell cur;
		io->get(io->arg, op->key, &cur);
		rl_limit_take(op->algo, op->max, op->window_ms, op->cost, p->now_ms, &cur, &next[i],
			      &op->res);
		if (op->res.over && p->result == RL_PLAN_PASSED) {
			p->result = RL_PLAN_OVER;
			p->over = i;
		}
	}
	if (p->result == RL_PLAN_OVER)
		return;
	if (p->has_grey) {
		struct rl_cell trip, client, trip_out, client_out;
		io->get(io->arg, p->grey_key, &trip);
		io->get(io->arg, p->grey_client_key, &client);
		p->grey_verdict = rl_grey_step(&p->grey, p->now_ms, &trip, &client, &trip_out,
					       &client_out, &p->grey_retry_ms);
		if (trip_out.exists)
			io->put(io->arg, p->grey_key, &trip_out);
		if (client_out.exists)
			io->put(io->arg, p->grey_client_key, &client_out);
		if (p->grey_verdict == RL_GREY_DEFER_NEW || p->grey_verdict == RL_GREY_DEFER_EARLY) {
			p->result = RL_PLAN_GREY_DEFER;
			return;
		}
	}
	for (size_t i = 0; i < p->nops; i++)
		if (p->ops[i].cost > 0)
			io->put(io->arg, p->ops[i].key, &next[i]);
}
