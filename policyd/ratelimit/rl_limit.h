/*
 * rl_limit: the arithmetic of one counter and of one greylist triplet, on
 * plain numbers with the clock passed in (no I/O, no globals), so the
 * embedded store, the Redis Lua scripts and the unit tests agree exactly.
 * Owns: GCRA and fixed-window limits, postgrey's triplet rules, expiry.
 * Leaves: where cells live (rl_store_*), which cells a request touches
 * (rl_engine).
 *
 * A cell is three numbers and an expiry; what they mean depends on the kind:
 *   GCRA limit:     a = units in the bucket (level), b = time of a (ms)
 *   fixed window:   a = units used in the window,   b = window start (ms)
 *   grey triplet:   a = first seen (ms), b = last seen (ms), c = 1 once passed
 *   grey client:    a = triplets passed,             b = last seen (ms)
 * GCRA is kept as a leaky bucket that drains max units per window: a
 * request of cost units conforms when level - drained + cost <= max (the
 * equivalent of the theoretical arrival time test; no double burst at a
 * window edge). Doubles, since Lua numbers are doubles: levels stay within
 * [0, max], so sums of whole costs are exact.
 */
#ifndef SLUICE_RL_LIMIT_H
#define SLUICE_RL_LIMIT_H

enum rl_algo { RL_ALGO_GCRA = 0, RL_ALGO_FIXED = 1 };

struct rl_cell {
	double a, b, c;
	long long expires_ms;	/* the store may drop the cell after this */
	int exists;		/* 0: absent (fresh) */
};

struct rl_limit_res {
	int over;		/* 1: the request does not conform; nothing taken */
	long long retry_ms;	/* over: when the same request would conform */
	double used;		/* units in use after the request (GCRA: the level) */
};

/*
 * rl_limit_take - a request of cost units (cost 0: only ask whether one
 * more unit would conform, take nothing) against max units per window_ms,
 * at now_ms. in: the stored cell (in->exists 0 = none). *out: the cell to
 * store when the request is committed (== *in when over or cost 0).
 */
void rl_limit_take(enum rl_algo algo, long long max, long long window_ms, long long cost,
		   long long now_ms, const struct rl_cell *in, struct rl_cell *out,
		   struct rl_limit_res *res);

struct rl_grey_params {
	long long delay_ms;		/* greylist_delay */
	long long retry_window_ms;	/* a first attempt not retried within this is forgotten */
	long long max_age_ms;		/* greylist_max_age: passed triplets and clients */
	long long auto_allow;		/* greylist_auto_allow_clients; 0 = never */
};

enum rl_grey_verdict {
	RL_GREY_PASS_AUTO,	/* the client passed auto_allow triplets already */
	RL_GREY_PASS,		/* a retry after the delay, or a triplet that passed before */
	RL_GREY_DEFER_NEW,	/* first attempt (or after the retry window) */
	RL_GREY_DEFER_EARLY,	/* retried before the delay */
};

/*
 * rl_grey_step - postgrey's decision for one attempt at now_ms. trip and
 * client are the stored cells (exists 0 = none); *trip_out and
 * *client_out are what to store (always stored, pass or defer).
 * *retry_ms_out: for defers, how long until a retry passes.
 */
enum rl_grey_verdict rl_grey_step(const struct rl_grey_params *p, long long now_ms,
				  const struct rl_cell *trip, const struct rl_cell *client,
				  struct rl_cell *trip_out, struct rl_cell *client_out,
				  long long *retry_ms_out);

#endif
