/*
 * fuzz_report: the log line parser of `sluice report` and its counting
 * never crash on any line; every string of a recognised event is
 * NUL-terminated inside the line cap; the input is split at '\n' into lines.
 *
 * XXX: `make fuzz` links libmta.a + libsluice.a only, not tools/; until it
 * links tools/report*.o, the modules are compiled in here.
 */
#include "tools/report_map.c"
#include "tools/report_parse.c"
#include "tools/report_time.c"
#include "tools/report_stats.c"

#include <stdint.h>

static void check_str(const char *s)
{
	if (s && strlen(s) > RP_MAX_LINE_BYTES * 2)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct rp_parser *p = rp_parser_new(2026, 11);
	struct report_stats *st = rs_new(NULL);
	struct rp_event ev;
	const char *s = (const char *)d, *end = s + n;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
		enum rp_kind k = rp_parse_line(p, s, len, &ev);
		if (k != ev.kind)
			abort();
		check_str(ev.msg);
		check_str(ev.qid);
		check_str(ev.reason);
		check_str(ev.sender);
		check_str(ev.recipient);
		for (size_t i = 0; i < ev.nkv; i++) {
			check_str(ev.kv[i].key);
			check_str(ev.kv[i].value);
		}
		rs_add(st, &ev);
		s += len + 1;
	}
	json_t *doc = rs_json(st);
	json_decref(doc);
	rs_free(&st);
	rp_parser_free(&p);
	return 0;
}
