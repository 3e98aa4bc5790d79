/*
 * fuzz_spf_policy: sluice-spf's request path without sockets: bytes ->
 * proto/policy parser (fed in chunks whose sizes come from the input) ->
 * spfd_job (policyd-spf decisions, with check_host() results taken from the
 * input) -> reply text, Received-SPF / Authentication-Results headers,
 * instance memory. Invariants: no crash, every reply is one line of
 * printable ASCII, every job ends.
 *
 * `make fuzz` links fuzz targets with libsluice.a only, so the daemon
 * logic (policyd/spf/spfd_policy.c, which needs nothing else) is compiled in
 * here directly.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policyd/spf/spfd_policy.c"

static void check_line(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct spfd_instances *inst;
	struct spfd_opts o;

	if (!inst)
		inst = spfd_instances_new(64, 3600);
	if (size < 2)
		return 0;
	spfd_opts_defaults(&o);
	o.helo_reject = (enum spfd_reject)(data[0] % 6);
	o.mfrom_reject = (enum spfd_reject)((data[0] / 6) % 6);
	o.permerror_reject = data[1] & 1;
	o.temperror_defer = (data[1] >> 1) & 1;
	o.header_type = (data[1] >> 2) & 1 ? SPFD_HDR_AR : SPFD_HDR_SPF;
	o.skip_sasl = (data[1] >> 3) & 1;
	unsigned seed = data[0] ^ ((unsigned)data[1] << 8);
	data += 2, size -= 2;

	struct policy_parser *p = policy_parser_new();
	size_t off = 0;
	while (off < size) {
		size_t chunk = 1 + (seed % 64);
		seed = seed * 1103515245u + 12345u;
		if (chunk > size - off)
			chunk = size - off;
		policy_parser_feed(p, data + off, chunk);
		off += chunk;
		struct policy_msg m;
		enum policy_next n;
		while ((n = policy_parser_next(p, &m)) == POLICY_ITEM) {
			enum spfd_action k;
			const char *prev;
			const char *iv = policy_msg_get(&m, "instance");
			if (iv && spfd_instances_get(inst, iv, 0, &k, &prev)) {
				check_line(spfd_reply_for_instance(k, prev));
				continue;
			}
			struct spfd_job *j = spfd_job_new(&o, &m, 0);
			struct spf_request req;
			int guard = 0;
			while (spfd_job_next(j, &req) == SPFD_JOB_CHECK) {
				if (++guard > 8)
					abort();
				struct spfd_checked r = { 0 };
				r.result = (enum spf_result)(seed % 7);
				seed = seed * 1103515245u + 12345u;
				r.mechanism = (seed & 1) ? "ip4:192.0.2.0/24" : NULL;
				r.reason = (seed & 2) ? "example.com: a \"reason\"\r\n" : NULL;
				r.problem = (seed & 4) ? "bad\\term\x01" : NULL;
				r.explanation = r.result == SPF_FAIL && (seed & 8) ? "Go away." : NULL;
				spfd_job_result(j, &r);
			}
			const char *act = spfd_job_action(j);
			check_line(act);
			if (!*act)
				abort();
			spfd_instances_put(inst, iv, spfd_job_action_kind(j), act, 0);
			spfd_job_free(&j);
		}
		if (n == POLICY_ERROR)
			break;
	}
	policy_parser_free(&p);
	spfd_opts_free(&o);
	return 0;
}
