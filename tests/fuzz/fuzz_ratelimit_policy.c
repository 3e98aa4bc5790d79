/*
 * fuzz_ratelimit_policy: sluice-ratelimit's request path without sockets:
 * bytes -> proto/policy parser (fed in chunks whose sizes come from the
 * input) -> rl_engine (fixed rules using every limit kind, greylisting and
 * derived attributes) -> rl_plan_apply on an in-memory cell table (the
 * embedded store's semantics without LMDB) -> reply and log text, with
 * the clock taken from the input. Invariants: no crash; every reply and
 * log line is one line of printable ASCII; a request over a limit takes
 * nothing.
 *
 * `make fuzz` links fuzz targets with libsluice.a only, so the daemon's
 * modules are compiled in here directly.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policyd/ratelimit/rl_net.c"
#include "policyd/ratelimit/rl_rules.c"
#include "policyd/ratelimit/rl_req.c"
#include "policyd/ratelimit/rl_inst.c"
#include "policyd/ratelimit/rl_limit.c"
#include "policyd/ratelimit/rl_plan.c"
#include "policyd/ratelimit/rl_allow.c"
#include "policyd/ratelimit/rl_engine.c"
#include "proto/policy.h"

#define CELLS 64

static const char rules_text[] =
	"id=OK1; client_address=10.0.0.0/8; action=OK\n"
	"id=REJ; sender=~/^spam@/; action=REJECT no $$sender\n"
	"id=G; client_name==unknown; action=greylist\n"
	"id=R1; sasl_username=~.; action=rate(sasl_username/3/60/DEFER_IF_PERMIT slow $$ratecount)\n"
	"id=R2; action=rcpt(sender_domain,recipient_domain/5/60/450 4.7.1 rcpts)\n"
	"id=R3; protocol_state==END-OF-MESSAGE; action=size(client_net/5000/60/DEFER big)\n"
	"id=R4; action=rate(global/20/10/HOLD)\n"
	"id=P; size>=100; action=PREPEND X-Big: $$size\n";

static struct { char key[RL_KEY_MAX_BYTES + 1]; struct rl_cell c; } cells[CELLS];
static size_t ncells;

static void cget(void *arg, const char *key, struct rl_cell *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < ncells; i++)
		if (!strcmp(cells[i].key, key)) {
			*out = cells[i].c;
			return;
		}
}

static void cput(void *arg, const char *key, const struct rl_cell *c)
{
	(void)arg;
	for (size_t i = 0; i < ncells; i++)
		if (!strcmp(cells[i].key, key)) {
			cells[i].c = *c;
			return;
		}
	size_t i = ncells < CELLS ? ncells++ : (size_t)(c->a) % CELLS;
	snprintf(cells[i].key, sizeof cells[i].key, "%s", key);
	cells[i].c = *c;
}

static void check_line(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rl_engine *eng;
	static struct rl_cfg cfg;
	char *err = NULL;

	if (!eng) {
		eng = rl_engine_new();
		cfg.rules = rl_rules_parse(rules_text, strlen(rules_text), "fuzz", &err);
		if (!cfg.rules)
			abort();
		cfg.prefix4 = 24;
		cfg.prefix6 = 64;
		cfg.error_action = "DEFER_IF_PERMIT 4.3.0 x";
		cfg.grey = (struct rl_grey_params){ 300000, 86400000, 86400000 * 35LL, 2 };
		cfg.grey_by_net = 1;
		cfg.grey_text = "Greylisted %r %s";
	}
	if (size < 3)
		return 0;
	cfg.algo = data[0] & 1 ? RL_ALGO_FIXED : RL_ALGO_GCRA;
	cfg.dry_run = (data[0] >> 1) & 1;
	long long now = 1700000000000LL + (long long)data[1] * 7919;
	size_t chunk = 1 + data[2] % 64;
	data += 3, size -= 3;
	ncells = 0;

	struct policy_parser *p = policy_parser_new();
	struct rl_cell_io io = { cget, cput, NULL };
	for (size_t off = 0; off < size; off += chunk) {
		policy_parser_feed(p, data + off, size - off < chunk ? size - off : chunk);
		struct policy_msg m;
		enum policy_next n;
		while ((n = policy_parser_next(p, &m)) == POLICY_ITEM) {
			struct rl_req req;
			struct rl_decision *d = malloc(sizeof(*d));
			rl_req_init(&req, &m, cfg.prefix4, cfg.prefix6);
			rl_engine_plan(eng, &cfg, &req, now, d);
			if (d->use_store) {
				size_t before = ncells;
				rl_plan_apply(&d->plan, &io);
				if (d->plan.result == RL_PLAN_OVER && !d->plan.has_grey && ncells != before)
					abort();	/* over a limit: nothing taken */
			}
			char *log = NULL;
			char *act = rl_engine_decide(eng, &cfg, &req, d, (data[0] & 4) ? "down" : NULL, &log);
			check_line(act);
			check_line(log);
			free(act);
			free(log);
			free(d);
			now += 1000;
		}
		if (n == POLICY_ERROR)
			break;
	}
	policy_parser_free(&p);
	return 0;
}
