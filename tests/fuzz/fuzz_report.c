/*
 * fuzz_report: the log line parser of `sluice report` and its counting
 * never crash on any line; every string of a recognised event is
 * NUL-terminated inside the line cap; the input is split at '\n' into lines.
 * And the parts `--jobs` counts at once add up to the one pass: the input
 * cut at a line chosen by its first byte, counted as a first part and a
 * later one (rs_add_part, the lines it passes back counted after the first,
 * rs_part_fits / rs_merge, or the later part once more in one pass, as
 * report_run does), gives the same JSON as one pass, or abort().
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

struct line {
	const char *s;
	size_t len;
};

static char *dump(struct report_stats *st)
{
	json_t *doc = rs_json(st);
	char *t = json_dumps(doc, JSON_SORT_KEYS);
	json_decref(doc);
	return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	/* one time zone: the parts and the pass must read stamps alike */
	static int tz;
	if (!tz) {
		setenv("TZ", "UTC", 1);
		tzset();
		tz = 1;
	}
	struct rp_parser *p = rp_parser_new(2026, 11);
	/* --since/--until from the second and third bytes: none, or a time in
	   the days the corpus's lines are from */
	static const double times[4] = { 0, 1795294800.0 /* 2026-11-21T21:00Z */,
					 1796201042.0 /* 2026-12-02T08:44:02Z */, 1796256000.0 /* 12-03 */ };
	struct rs_opts o = { 0 };
	if (n > 2) {
		o.since = times[d[1] & 3];
		o.until = times[d[2] & 3];
	}
	struct report_stats *st = rs_new(&o);
	struct rp_event ev;
	const char *s = (const char *)d, *end = s + n;
	size_t nl_count = 0, cap = 64;
	struct line *lines = malloc(cap * sizeof *lines);
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
		if (nl_count == cap)
			lines = realloc(lines, (cap *= 2) * sizeof *lines);
		lines[nl_count++] = (struct line){ s, len };
		s += len + 1;
	}
	char *want = dump(st);
	rs_free(&st);

	/* two parts, cut before line `cut` */
	size_t cut = n ? (size_t)d[0] % (nl_count + 1) : 0;
	struct report_stats *first = rs_new(&o), *later = rs_new(&o);
	for (size_t i = 0; i < cut; i++) {
		rp_parse_line(p, lines[i].s, lines[i].len, &ev);
		rs_add(first, &ev);
	}
	size_t *back = malloc((nl_count + 1) * sizeof *back), nb = 0;
	double *now = malloc((nl_count + 1) * sizeof *now);
	for (size_t i = cut; i < nl_count; i++) {
		char kb[RS_KEYS_BYTES];
		struct rs_keys k;
		rp_parse_line(p, lines[i].s, lines[i].len, &ev);
		rs_keys_make(&ev, &k, kb);
		if (rs_add_part(later, &ev, &k, &now[nb]))
			back[nb++] = i;
	}
	if (rs_part_fits(first, later)) {
		for (size_t i = 0; i < nb; i++) {
			rp_parse_line(p, lines[back[i]].s, lines[back[i]].len, &ev);
			rs_add_now(first, &ev, now[i]);
		}
		rs_merge(first, &later);
	} else {
		rs_free(&later);
		for (size_t i = cut; i < nl_count; i++) {
			rp_parse_line(p, lines[i].s, lines[i].len, &ev);
			rs_add(first, &ev);
		}
	}
	char *got = dump(first);
	if (strcmp(want, got))
		abort();	/* the parts do not add up to the one pass */
	free(want);
	free(got);
	free(back);
	free(now);
	free(lines);
	rs_free(&first);
	rp_parser_free(&p);
	return 0;
}
