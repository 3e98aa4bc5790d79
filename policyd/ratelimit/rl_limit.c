/*
 * rl_limit: see rl_limit.h. The Lua script in policyd/ratelimit/rl_redis.c holds the same
 * arithmetic in Lua for Redis; change both together.
 */
#include "policyd/ratelimit/rl_limit.h"

#include <math.h>

#define RL_EPS_REL 1e-12	/* rounding slack of drained levels, relative to max */

/* ceil_ll - whole ms, ignoring rounding dust below a microsecond */
static long long ceil_ll(double x)
{
	return (long long)ceil(x - 1e-3);
}

static void gcra(long long max, long long window_ms, long long cost, long long now_ms,
		 const struct rl_cell *in, struct rl_cell *out, struct rl_limit_res *res)
{
	double level = 0;

	if (in->exists) {
		double elapsed = now_ms > in->b ? (double)now_ms - in->b : 0;
		if (elapsed >= (double)window_ms)
			level = 0;
		else
			level = in->a - elapsed * (double)max / (double)window_ms;
		if (level < 0)
			level = 0;
	}
	double want = level + (double)(cost > 0 ? cost : 1);
	res->over = want - (double)max > (double)max * RL_EPS_REL;
	res->retry_ms = res->over ? ceil_ll((want - (double)max) * (double)window_ms / (double)max) : 0;
	res->used = level;
	*out = *in;
	if (res->over || cost == 0)
		return;
	out->a = want;
	out->b = (double)now_ms;
	out->c = 0;
	out->exists = 1;
	out->expires_ms = now_ms + ceil_ll(want * (double)window_ms / (double)max);
	res->used = want;
}

static void fixed(long long max, long long window_ms, long long cost, long long now_ms,
		  const struct rl_cell *in, struct rl_cell *out, struct rl_limit_res *res)
{
	double start = in->b, used = in->a;

	if (!in->exists || (double)now_ms >= start + (double)window_ms || (double)now_ms < start) {
		start = (double)now_ms;
		used = 0;
	}
	double want = used + (double)(cost > 0 ? cost : 1);
	res->over = want > (double)max;
	res->retry_ms = res->over ? ceil_ll(start + (double)window_ms - (double)now_ms) : 0;
	res->used = used;
	*out = *in;
	if (res->over || cost == 0)
		return;
	out->a = used + (double)cost;
	out->b = start;
	out->c = 0;
	out->exists = 1;
	out->expires_ms = ceil_ll(start) + window_ms;
	res->used = out->a;
}

void rl_limit_take(enum rl_algo algo, long long max, long long window_ms, long long cost,
		   long long now_ms, const struct rl_cell *in, struct rl_cell *out,
		   struct rl_limit_res *res)
{
	if (algo == RL_ALGO_FIXED)
		fixed(max, window_ms, cost, now_ms, in, out, res);
	else
		gcra(max, window_ms, cost, now_ms, in, out, res);
}

enum rl_grey_verdict rl_grey_step(const struct rl_grey_params *p, long long now_ms,
				  const struct rl_cell *trip, const struct rl_cell *client,
				  struct rl_cell *trip_out, struct rl_cell *client_out,
				  long long *retry_ms_out)
{
	double now = (double)now_ms;
	struct rl_cell cl = *client;

	*retry_ms_out = 0;
	if (cl.exists && now - cl.b > (double)p->max_age_ms)
		cl.exists = 0;
	if (!cl.exists)
		cl.a = 0;
	*trip_out = *trip;
	if (p->auto_allow > 0 && cl.a >= (double)p->auto_allow) {
		cl.b = now;
		cl.exists = 1;
		cl.expires_ms = now_ms + p->max_age_ms;
		*client_out = cl;
		return RL_GREY_PASS_AUTO;
	}
	*client_out = *client;
	int fresh = !trip->exists ||
		    (trip->c == 0 && now - trip->a > (double)p->retry_window_ms) ||
		    (trip->c != 0 && now - trip->b > (double)p->max_age_ms);
	if (fresh) {
		trip_out->a = now;
		trip_out->b = now;
		trip_out->c = 0;
		trip_out->exists = 1;
		trip_out->expires_ms = now_ms + p->retry_window_ms;
		*retry_ms_out = p->delay_ms;
		return RL_GREY_DEFER_NEW;
	}
	if (trip->c == 0 && now - trip->a < (double)p->delay_ms) {
		trip_out->b = now;
		*retry_ms_out = ceil_ll(trip->a + (double)p->delay_ms - now);
		return RL_GREY_DEFER_EARLY;
	}
	if (trip->c == 0) {
		cl.a += 1;
		cl.b = now;
		cl.exists = 1;
		cl.expires_ms = now_ms + p->max_age_ms;
		*client_out = cl;
	}
	trip_out->b = now;
	trip_out->c = 1;
	trip_out->expires_ms = now_ms + p->max_age_ms;
	return RL_GREY_PASS;
}
