/*
 * report: `sluice report [--format text|json|html] [--since TIME] [--until TIME]
 *                        [--top N] [--jobs N] [-o FILE] LOGFILE...`
 * Reads the logs (report_input), parses each line (report_parse, in --jobs
 * threads: report_run), counts (report_stats) and prints the one JSON document, or text tables made from
 * that same document (so the two always show the same numbers).
 * A progress line goes to stderr when it is a terminal.
 */
#include "tools/report_html.h"
#include "tools/report_input.h"
#include "tools/report_parse.h"
#include "tools/report_run.h"
#include "tools/report_stats.h"
#include "lib/version.h"

#include <getopt.h>
#include <stdarg.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int report_main(int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f, "usage: sluice report [--format text|json|html] [--since TIME] [--until TIME]\n"
		   "                     [--top N] [--jobs N] [-o FILE] LOGFILE...\n"
		   "  LOGFILE: a syslog file or maillog_file, plain or gzip'd; - for stdin\n"
		   "  --jobs N: threads that read at once (1-16; default: the CPUs, at most 8;\n"
		   "            1: one pass, no threads); the report is the same whatever N\n"
		   "  TIME: 2026-12-01, 2026-12-01T08:00, 2026-12-01T08:00:00Z, @EPOCH\n"
		   "        (local time unless a zone is given); since <= t < until\n");
}

/* ---- text: aligned tables ---- */

#define TB_MAXC 8
#define TB_MAXR 400

struct table {
	int nc, nr;
	const char *head[TB_MAXC];
	int right[TB_MAXC];
	char *cell[TB_MAXR][TB_MAXC];
};

static void tb_row(struct table *t, ...)
{
	if (t->nr >= TB_MAXR)
		return;
	va_list ap;
	va_start(ap, t);
	for (int c = 0; c < t->nc; c++) {
		const char *s = va_arg(ap, const char *);
		t->cell[t->nr][c] = strdup(s ? s : "");
	}
	va_end(ap);
	t->nr++;
}

static void tb_print(FILE *f, struct table *t)
{
	int w[TB_MAXC] = { 0 };
	for (int c = 0; c < t->nc; c++) {
		w[c] = (int)strlen(t->head[c]);
		for (int r = 0; r < t->nr; r++)
			if ((int)strlen(t->cell[r][c]) > w[c])
				w[c] = (int)strlen(t->cell[r][c]);
		if (c == t->nc - 1 && !t->right[c])
			w[c] = 0;	/* last, left-aligned: no padding */
	}
	for (int c = 0; c < t->nc; c++)
		fprintf(f, c ? "  %*s" : "  %*s", t->right[c] ? w[c] : -w[c], t->head[c]);
	fputc('\n', f);
	for (int c = 0; c < t->nc; c++) {
		int n = (int)strlen(t->head[c]) > w[c] ? (int)strlen(t->head[c]) : w[c];
		fputs("  ", f);
		for (int i = 0; i < n; i++)
			fputc('-', f);
	}
	fputc('\n', f);
	for (int r = 0; r < t->nr; r++) {
		for (int c = 0; c < t->nc; c++) {
			fprintf(f, "  %*s", t->right[c] ? w[c] : -w[c], t->cell[r][c]);
			free(t->cell[r][c]);
		}
		fputc('\n', f);
	}
	t->nr = 0;
}

static const char *cell_text(json_t *v, char *buf, size_t n)
{
	if (json_is_integer(v))
		snprintf(buf, n, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, n, "%.4g", json_real_value(v));
	else if (json_is_string(v))
		snprintf(buf, n, "%s", json_string_value(v));
	else
		snprintf(buf, n, "-");
	return buf;
}

static void section(FILE *f, const char *title)
{
	fprintf(f, "\n%s\n", title);
	for (size_t i = 0; i < strlen(title); i++)
		fputc('=', f);
	fputc('\n', f);
}

/* rows of objects: cols are member names, titles their headers; first column left */
static void array_table(FILE *f, const char *title, json_t *a, const char *const *cols,
			const char *const *titles, int nc)
{
	if (!json_array_size(a))
		return;
	section(f, title);
	struct table t = { .nc = nc };
	/* numbers right-aligned, text (address, reason, ...) left */
	json_t *first = json_array_get(a, 0);
	for (int c = 0; c < nc; c++) {
		t.head[c] = titles[c];
		t.right[c] = !json_is_string(json_object_get(first, cols[c]));
	}
	size_t i;
	json_t *o;
	json_array_foreach(a, i, o) {
		char b[TB_MAXC][64];
		const char *v[TB_MAXC];
		for (int c = 0; c < nc; c++) {
			json_t *m = json_object_get(o, cols[c]);
			v[c] = json_is_string(m) ? json_string_value(m) : cell_text(m, b[c], sizeof b[c]);
		}
		tb_row(&t, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
	}
	tb_print(f, &t);
}

/* {"k": n, ...} as "  k  n" lines */
static void counts_table(FILE *f, const char *head, json_t *o)
{
	if (!json_object_size(o))
		return;
	struct table t = { .nc = 2, .head = { head, "count" }, .right = { 0, 1 } };
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		char b[64];
		tb_row(&t, k, cell_text(v, b, sizeof b));
	}
	tb_print(f, &t);
	fputc('\n', f);
}

static void text_report(FILE *f, json_t *doc)
{
	char b1[64], b2[64];
	json_t *in = json_object_get(doc, "input");
	fprintf(f, "sluice report: %s .. %s  (%s lines read, %s unreadable)\n",
		cell_text(json_object_get(doc, "first_event"), b1, sizeof b1),
		cell_text(json_object_get(doc, "last_event"), b2, sizeof b2),
		cell_text(json_object_get(in, "lines"), (char[64]){ 0 }, 64),
		cell_text(json_object_get(in, "unreadable"), (char[64]){ 0 }, 64));

	section(f, "Grand totals");
	json_t *t = json_object_get(doc, "totals");
	static const char *const order[] = { "received", "delivered", "forwarded", "deferred",
					      "deferrals", "bounced", "rejected", "reject_warnings",
					      "held", "discarded", "bytes_received", "bytes_delivered",
					      "senders", "sending_domains", "recipients",
					      "recipient_domains", "connections" };
	int w = 1;
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		int n = (int)strlen(cell_text(json_object_get(t, order[i]), b1, sizeof b1));
		if (n > w)
			w = n;
	}
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		fprintf(f, "  %*s  %s\n", w, cell_text(json_object_get(t, order[i]), b1, sizeof b1), order[i]);

	static const char *const pc[] = { "date", "received", "delivered", "deferred", "bounced",
					   "rejected" };
	array_table(f, "Per day", json_object_get(doc, "per_day"), pc, pc, 6);
	static const char *const hc[] = { "hour", "received", "delivered", "deferred", "bounced",
					   "rejected" };
	json_t *hours = json_object_get(doc, "per_hour"), *busy = json_array();
	size_t i;
	json_t *o;
	json_array_foreach(hours, i, o) {
		long long s = 0;
		for (int c = 1; c < 6; c++)
			s += json_integer_value(json_object_get(o, hc[c]));
		if (s)
			json_array_append(busy, o);
	}
	array_table(f, "Per hour (hours with traffic)", busy, hc, hc, 6);
	json_decref(busy);

	json_t *rej = json_object_get(doc, "rejects");
	if (json_object_size(json_object_get(rej, "by_stage"))) {
		section(f, "Rejects");
		counts_table(f, "stage", json_object_get(rej, "by_stage"));
		counts_table(f, "reason code", json_object_get(rej, "by_code"));
		static const char *const rc[] = { "count", "reason" };
		json_t *a = json_object_get(rej, "by_reason");
		struct table rt = { .nc = 2, .head = { "count", "reason" }, .right = { 1, 0 } };
		json_array_foreach(a, i, o)
			tb_row(&rt, cell_text(json_object_get(o, rc[0]), b1, sizeof b1),
			       json_string_value(json_object_get(o, rc[1])));
		tb_print(f, &rt);
	}

	json_t *flt = json_object_get(doc, "filters");
	if (json_object_size(flt)) {
		section(f, "Filters");
		struct table ft = { .nc = 4, .head = { "filter", "kind", "value", "count" },
				    .right = { 0, 0, 0, 1 } };
		const char *name;
		json_t *fo;
		json_object_foreach(flt, name, fo) {
			static const char *const kinds[] = { "results", "actions" };
			for (int k = 0; k < 2; k++) {
				const char *key;
				json_t *v;
				json_object_foreach(json_object_get(fo, kinds[k]), key, v)
					tb_row(&ft, name, kinds[k], key, cell_text(v, b1, sizeof b1));
			}
		}
		tb_print(f, &ft);
		json_t *dm = json_object_get(json_object_get(flt, "dmarc"), "by_domain");
		if (json_array_size(dm)) {
			fprintf(f, "\nDMARC by From domain\n");
			struct table dt = { .nc = 3, .head = { "domain", "result / disposition", "count" },
					    .right = { 0, 0, 1 } };
			json_array_foreach(dm, i, o) {
				const char *d = json_string_value(json_object_get(o, "domain")), *key;
				json_t *v;
				json_object_foreach(json_object_get(o, "results"), key, v)
					tb_row(&dt, d, key, cell_text(v, b1, sizeof b1));
				json_object_foreach(json_object_get(o, "dispositions"), key, v) {
					snprintf(b2, sizeof b2, "disposition=%s", key);
					tb_row(&dt, d, b2, cell_text(v, b1, sizeof b1));
				}
			}
			tb_print(f, &dt);
		}
		json_t *h = json_object_get(json_object_get(flt, "spam"), "score_histogram");
		if (json_array_size(h)) {
			fprintf(f, "\nSpam score histogram\n");
			long long max = 1;
			json_array_foreach(h, i, o)
				if (json_integer_value(json_object_get(o, "count")) > max)
					max = json_integer_value(json_object_get(o, "count"));
			json_array_foreach(h, i, o) {
				long long c = json_integer_value(json_object_get(o, "count"));
				fprintf(f, "  %4lld  %8lld  ", (long long)json_integer_value(json_object_get(o, "score")), c);
				for (long long k = 0; k < c * 40 / max; k++)
					fputc('#', f);
				fputc('\n', f);
			}
		}
	}
	json_t *ma = json_object_get(doc, "milter_actions");
	if (json_object_size(ma)) {
		section(f, "Milter actions (MTA)");
		struct table mt = { .nc = 3, .head = { "milter", "action", "count" }, .right = { 0, 0, 1 } };
		const char *name, *key;
		json_t *mo, *v;
		json_object_foreach(ma, name, mo)
			json_object_foreach(mo, key, v)
				tb_row(&mt, name, key, cell_text(v, b1, sizeof b1));
		tb_print(f, &mt);
	}

	static const char *const dc[] = { "transport", "count", "p50_s", "p95_s", "max_s" };
	static const char *const dt[] = { "transport", "delivered", "p50 (s)", "p95 (s)", "max (s)" };
	array_table(f, "Delivery delays", json_object_get(doc, "delays"), dc, dt, 5);

	json_t *tp = json_object_get(doc, "top");
	static const char *const sc[] = { "messages", "bytes", "address" };
	array_table(f, "Top senders", json_object_get(tp, "senders"), sc, sc, 3);
	static const char *const sdc[] = { "messages", "bytes", "domain" };
	array_table(f, "Top sender domains", json_object_get(tp, "sender_domains"), sdc, sdc, 3);
	array_table(f, "Top recipients", json_object_get(tp, "recipients"), sc, sc, 3);
	static const char *const rdc[] = { "messages", "bytes", "deferrals", "avg_delay_s", "max_delay_s",
					    "domain" };
	static const char *const rdt[] = { "messages", "bytes", "deferrals", "avg delay", "max delay",
					    "domain" };
	array_table(f, "Top recipient domains", json_object_get(tp, "recipient_domains"), rdc, rdt, 6);
	static const char *const cc[] = { "messages", "connections", "client" };
	array_table(f, "Top clients", json_object_get(tp, "clients"), cc, cc, 3);

	static const char *const bc[] = { "count", "dsn", "text" };
	array_table(f, "Bounces", json_object_get(doc, "bounces"), bc, bc, 3);
	array_table(f, "Deferrals", json_object_get(doc, "deferrals"), bc, bc, 3);
}

/* ---- main ---- */

int report_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' }, { "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },  { "output", required_argument, NULL, 'o' },
		{ "top", required_argument, NULL, 't' },    { "jobs", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },      { NULL, 0, NULL, 0 }
	};
	const char *format = "text", *outpath = NULL;
	struct rs_opts ro = { 0 };
	int c, jobs = rr_default_jobs();
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:s:u:o:t:j:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			format = optarg;
			break;
		case 's':
		case 'u':
			if (rp_time_parse(optarg, c == 's' ? &ro.since : &ro.until) < 0) {
				fprintf(stderr, "sluice report: bad time \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'o':
			outpath = optarg;
			break;
		case 't':
			ro.top_n = (size_t)strtoul(optarg, NULL, 10);
			break;
		case 'j': {
			char *end;
			long j = strtol(optarg, &end, 10);
			if (*end || j < 1 || j > RR_MAX_JOBS) {
				fprintf(stderr, "sluice report: --jobs must be 1 to %d\n", RR_MAX_JOBS);
				return 2;
			}
			jobs = (int)j;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sluice report (sluice) %s\n", SLUICE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "html")) {
		fprintf(stderr, "sluice report: --format must be text, json or html\n");
		return 2;
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	/* the tables grow by doubling: their old arrays go back to malloc's heap
	   for the next ones instead of to the kernel (each munmap would stop
	   every thread for a TLB flush, each fresh page would fault) */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	struct report_stats *st = rs_new(&ro);
	int tty = isatty(2), rc = 0;
	for (int i = optind; i < argc; i++)
		if (rr_file(st, argv[i], jobs, tm.tm_year + 1900, tm.tm_mon, tty))
			rc = 1;
	json_t *doc = rs_json(st);
	FILE *out = stdout;
	if (outpath && !(out = fopen(outpath, "w"))) {
		perror(outpath);
		rc = 1;
		out = NULL;
	}
	if (out) {
		if (!strcmp(format, "json")) {
			/* one string, one write (json_dumpf writes token by token) */
			char *js = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			if (js) {
				fputs(js, out);
				free(js);
			} else {
				json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			}
			fputc('\n', out);
		} else if (!strcmp(format, "html")) {
			report_html(out, doc);
		} else {
			text_report(out, doc);
		}
		if (out != stdout && fclose(out) != 0) {
			perror(outpath);
			rc = 1;
		}
	}
	json_decref(doc);
	rs_free(&st);
	return rc;
}
