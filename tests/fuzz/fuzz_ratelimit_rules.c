/*
 * fuzz_ratelimit_rules: sluice-ratelimit's rule parser on hostile files:
 * bytes -> rl_rules_parse -> every rule matched against a fixed request.
 * Invariants: no crash; an error names "fuzz.rules:N:"; a parsed rule has
 * an id, and a limit rule has keys, max > 0 and a window > 0.
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

static const char *get(void *ctx, const char *name)
{
	(void)ctx;
	if (!strcmp(name, "client_address"))
		return "192.0.2.1";
	if (!strcmp(name, "sender"))
		return "joe@example.com";
	if (!strcmp(name, "size"))
		return "1234";
	if (!strcmp(name, "client_net"))
		return "192.0.2.0/24";
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *err = NULL;
	struct rl_rules *r = rl_rules_parse((const char *)data, size, "fuzz.rules", &err);

	if (!r) {
		if (!err || strncmp(err, "fuzz.rules:", 11))
			abort();
		free(err);
		return 0;
	}
	for (size_t i = 0; i < rl_rules_count(r); i++) {
		const struct rl_rule *rule = rl_rules_get(r, i);
		if (!rule->id || !*rule->id)
			abort();
		if (rule->kind == RL_KIND_RATE || rule->kind == RL_KIND_RCPT || rule->kind == RL_KIND_SIZE)
			if (!rule->limit.nkeys || rule->limit.max <= 0 || rule->limit.window_s <= 0 ||
			    !rule->action)
				abort();
		(void)rl_rule_matches(r, rule, get, NULL);
	}
	rl_rules_free(&r);
	return 0;
}
