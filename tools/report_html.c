/*
 * report_html: see report_html.h. Charts are plain SVG drawn here: columns
 * over time (per day when the log spans days, else per hour), horizontal
 * bars for rejects and filter results, columns for the spam histogram,
 * stacked bars for DMARC by domain. Every text is HTML-escaped; the page
 * has no script and references nothing outside itself.
 */
#include "tools/report_html.h"

#include <stdio.h>
#include <string.h>

static void esc(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f);
		}
	}
}

static long long ival(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static const char *const colors[] = { "#2b7bb9", "#3a9a48", "#e0a020", "#c0392b", "#8e44ad",
				       "#16a085", "#7f8c8d", "#d35400" };

#define NCOLORS (sizeof colors / sizeof colors[0])

/* horizontal bars: labels[i] with values[i] */
static void hbars(FILE *f, const char *title, const char *const *labels, const long long *values,
		  size_t n)
{
	if (!n)
		return;
	long long max = 1;
	for (size_t i = 0; i < n; i++)
		if (values[i] > max)
			max = values[i];
	int row = 22, lw = 260, bw = 420, h = (int)n * row + 10;
	fprintf(f, "<figure><figcaption>");
	esc(f, title);
	fprintf(f, "</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" "
		   "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", lw + bw + 80, h, lw + bw + 80, h);
	for (size_t i = 0; i < n; i++) {
		int y = (int)i * row + 4, w = (int)(values[i] * bw / max);
		fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", lw - 6, y + 14);
		esc(f, labels[i]);
		fprintf(f, "</text><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>"
			   "<text x=\"%d\" y=\"%d\">%lld</text>\n",
			lw, y, w > 0 ? w : 1, row - 6, colors[0], lw + w + 4, y + 14, values[i]);
	}
	fputs("</svg></figure>\n", f);
}

/* columns: ncat categories, nser series side by side */
static void columns(FILE *f, const char *title, const char *const *cats, size_t ncat,
		    const char *const *series, size_t nser, const long long *v /* [cat*nser+s] */)
{
	if (!ncat)
		return;
	long long max = 1;
	for (size_t i = 0; i < ncat * nser; i++)
		if (v[i] > max)
			max = v[i];
	int ch = 200, top = 20, left = 50, slot = (int)(nser * 9 + 8);
	if (slot * (int)ncat > 1000)	/* fit the page (body max-width 1100px) */
		slot = 1000 / (int)ncat;
	if (slot < (int)nser * 2 + 8)
		slot = (int)nser * 2 + 8;	/* many days: wider than the page, scaled by CSS */
	if (slot * (int)ncat < 480)
		slot = 480 / (int)ncat;
	int bar = (slot - 8) / (int)nser, w = left + slot * (int)ncat + 10, h = top + ch + 60;
	if (w < left + (int)nser * 110)
		w = left + (int)nser * 110;	/* room for the legend */
	fprintf(f, "<figure><figcaption>");
	esc(f, title);
	fprintf(f, "</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" "
		   "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", w, h, w, h);
	fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n", left, top + ch,
		w - 5, top + ch);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%lld</text>\n", left - 4, top + 4, max);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>\n", left - 4, top + ch);
	for (size_t c = 0; c < ncat; c++) {
		int x0 = left + (int)c * slot + 4;
		for (size_t s = 0; s < nser; s++) {
			long long val = v[c * nser + s];
			int bh = (int)(val * ch / max);
			fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>",
				x0 + (int)s * bar, top + ch - bh, bar > 1 ? bar - 1 : 1, bh > 0 ? bh : 0,
				colors[s % NCOLORS]);
			esc(f, cats[c]);
			fputs(" ", f);
			esc(f, series[s]);
			fprintf(f, ": %lld</title></rect>\n", val);
		}
		if (ncat <= 31 || c % (ncat / 24 + 1) == 0) {
			fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" class=\"small\">",
				x0 + slot / 2 - 4, top + ch + 14);
			esc(f, cats[c]);
			fputs("</text>\n", f);
		}
	}
	for (size_t s = 0; s < nser; s++) {
		int x = left + (int)s * 110;
		fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			   "<text x=\"%d\" y=\"%d\">", x, top + ch + 32, colors[s % NCOLORS], x + 14, top + ch + 41);
		esc(f, series[s]);
		fputs("</text>\n", f);
	}
	fputs("</svg></figure>\n", f);
}

/* stacked horizontal bars: one row per label, segments per key of objs[i] */
static void stacked(FILE *f, const char *title, json_t *rows, const char *labelkey, const char *objkey)
{
	size_t n = json_array_size(rows);
	if (!n)
		return;
	long long max = 1;
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r) {
		long long t = 0;
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(r, objkey), k, v)
			t += json_integer_value(v);
		if (t > max)
			max = t;
	}
	static const struct {
		const char *result, *color;
	} rc[] = { { "pass", "#3a9a48" }, { "fail", "#c0392b" }, { "none", "#7f8c8d" },
		   { "temperror", "#e0a020" }, { "permerror", "#8e44ad" }, { "bestguesspass", "#16a085" } };
	int row = 22, lw = 220, bw = 420, h = (int)n * row + 40;
	fprintf(f, "<figure><figcaption>");
	esc(f, title);
	fprintf(f, "</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" "
		   "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", lw + bw + 80, h, lw + bw + 80, h);
	json_array_foreach(rows, i, r) {
		int y = (int)i * row + 4, x = lw;
		fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", lw - 6, y + 14);
		esc(f, json_string_value(json_object_get(r, labelkey)));
		fputs("</text>\n", f);
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(r, objkey), k, v) {
			const char *col = colors[6];
			for (size_t c = 0; c < sizeof rc / sizeof rc[0]; c++)
				if (!strcmp(k, rc[c].result))
					col = rc[c].color;
			int w = (int)(json_integer_value(v) * bw / max);
			fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>", x, y,
				w > 0 ? w : 1, row - 6, col);
			esc(f, k);
			fprintf(f, ": %lld</title></rect>\n", (long long)json_integer_value(v));
			x += w;
		}
	}
	for (size_t c = 0; c < sizeof rc / sizeof rc[0]; c++) {
		int x = 10 + (int)c * 110, y = (int)n * row + 20;
		fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			   "<text x=\"%d\" y=\"%d\">%s</text>\n", x, y, rc[c].color, x + 14, y + 9, rc[c].result);
	}
	fputs("</svg></figure>\n", f);
}

/* a table of objects; cols are member names */
static void table(FILE *f, const char *title, json_t *rows, const char *const *cols, size_t nc)
{
	if (!json_array_size(rows))
		return;
	fputs("<h3>", f);
	esc(f, title);
	fputs("</h3>\n<table><tr>", f);
	for (size_t c = 0; c < nc; c++) {
		fputs("<th>", f);
		esc(f, cols[c]);
		fputs("</th>", f);
	}
	fputs("</tr>\n", f);
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r) {
		fputs("<tr>", f);
		for (size_t c = 0; c < nc; c++) {
			json_t *v = json_object_get(r, cols[c]);
			if (json_is_string(v)) {
				fputs("<td>", f);
				esc(f, json_string_value(v));
			} else if (json_is_integer(v)) {
				fprintf(f, "<td class=\"n\">%lld", (long long)json_integer_value(v));
			} else if (json_is_real(v)) {
				fprintf(f, "<td class=\"n\">%.4g", json_real_value(v));
			} else {
				fputs("<td>", f);
			}
			fputs("</td>", f);
		}
		fputs("</tr>\n", f);
	}
	fputs("</table>\n", f);
}

/* {"k": n} -> hbars */
static void obj_bars(FILE *f, const char *title, json_t *o)
{
	size_t n = json_object_size(o), i = 0;
	if (!n)
		return;
	const char *labels[64];
	long long vals[64];
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		if (i == 64)
			break;
		labels[i] = k;
		vals[i++] = json_integer_value(v);
	}
	hbars(f, title, labels, vals, i);
}

static void traffic(FILE *f, json_t *doc)
{
	static const char *const series[] = { "received", "delivered", "deferred", "bounced", "rejected" };
	json_t *days = json_object_get(doc, "per_day");
	int by_day = json_array_size(days) > 1;
	json_t *rows = by_day ? days : json_object_get(doc, "per_hour");
	size_t n = json_array_size(rows);
	if (n > 400)
		n = 400;
	const char *cats[400];
	char hours[24][8];
	long long v[400 * 5];
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(rows, i);
		if (by_day) {
			cats[i] = json_string_value(json_object_get(r, "date"));
		} else {
			snprintf(hours[i % 24], sizeof hours[0], "%02lld", ival(r, "hour"));
			cats[i] = hours[i % 24];
		}
		for (size_t s = 0; s < 5; s++)
			v[i * 5 + s] = ival(r, series[s]);
	}
	columns(f, by_day ? "Traffic per day" : "Traffic per hour of day", cats, n, series, 5, v);
}

void report_html(FILE *f, json_t *doc)
{
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	      "<title>sluice report</title>\n<style>\n"
	      "body{font:14px/1.4 sans-serif;margin:2em;color:#222;max-width:1100px}\n"
	      "h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}\n"
	      "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}\n"
	      "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
	      "figure{margin:1em 0}figcaption{font-weight:bold;margin-bottom:.3em}\n"
	      "svg.chart{max-width:100%;height:auto}svg.chart text{font:12px sans-serif;fill:#222}svg.chart text.small{font-size:10px}\n"
	      "</style></head><body>\n<h1>sluice report</h1>\n<p>", f);
	esc(f, json_string_value(json_object_get(doc, "first_event")));
	fputs(" &ndash; ", f);
	esc(f, json_string_value(json_object_get(doc, "last_event")));
	fprintf(f, ", %lld lines</p>\n", ival(json_object_get(doc, "input"), "lines"));

	fputs("<h2>Grand totals</h2>\n<table>\n", f);
	json_t *t = json_object_get(doc, "totals");
	const char *k;
	json_t *v;
	json_object_foreach(t, k, v) {
		fprintf(f, "<tr><td class=\"n\">%lld</td><td>", (long long)json_integer_value(v));
		esc(f, k);
		fputs("</td></tr>\n", f);
	}
	fputs("</table>\n<h2>Traffic</h2>\n", f);
	traffic(f, doc);

	json_t *rej = json_object_get(doc, "rejects");
	if (json_object_size(json_object_get(rej, "by_code"))) {
		fputs("<h2>Rejects</h2>\n", f);
		obj_bars(f, "Rejects by reason", json_object_get(rej, "by_code"));
		obj_bars(f, "Rejects by stage", json_object_get(rej, "by_stage"));
		static const char *const rc[] = { "count", "reason" };
		table(f, "Reject texts", json_object_get(rej, "by_reason"), rc, 2);
	}

	json_t *flt = json_object_get(doc, "filters");
	if (json_object_size(flt)) {
		fputs("<h2>Filters</h2>\n", f);
		const char *labels[128];
		long long vals[128];
		char names[128][96];
		size_t n = 0;
		json_object_foreach(flt, k, v) {
			const char *r;
			json_t *c;
			json_object_foreach(json_object_get(v, "results"), r, c) {
				if (n == 128)
					break;
				snprintf(names[n], sizeof names[n], "%s %s", k, r);
				labels[n] = names[n];
				vals[n++] = json_integer_value(c);
			}
		}
		hbars(f, "Filter results", labels, vals, n);
		json_t *dm = json_object_get(json_object_get(flt, "dmarc"), "by_domain");
		stacked(f, "DMARC results by From domain", dm, "domain", "results");
		json_t *h = json_object_get(json_object_get(flt, "spam"), "score_histogram");
		size_t nh = json_array_size(h);
		if (nh) {
			const char *cats[64];
			char lab[64][8];
			long long hv[64];
			static const char *const ser[] = { "messages" };
			for (size_t i = 0; i < nh && i < 64; i++) {
				json_t *r = json_array_get(h, i);
				snprintf(lab[i], sizeof lab[i], "%lld", ival(r, "score"));
				cats[i] = lab[i];
				hv[i] = ival(r, "count");
			}
			columns(f, "Spam score histogram", cats, nh < 64 ? nh : 64, ser, 1, hv);
		}
	}

	fputs("<h2>Delivery</h2>\n", f);
	static const char *const dc[] = { "transport", "count", "p50_s", "p95_s", "max_s" };
	table(f, "Delays per transport (seconds)", json_object_get(doc, "delays"), dc, 5);
	static const char *const bc[] = { "count", "dsn", "text" };
	table(f, "Bounces", json_object_get(doc, "bounces"), bc, 3);
	table(f, "Deferrals", json_object_get(doc, "deferrals"), bc, 3);

	fputs("<h2>Top</h2>\n", f);
	json_t *tp = json_object_get(doc, "top");
	static const char *const sc[] = { "address", "messages", "bytes" };
	static const char *const dsc[] = { "domain", "messages", "bytes" };
	static const char *const rdc[] = { "domain", "messages", "bytes", "deferrals", "avg_delay_s",
					    "max_delay_s" };
	static const char *const cc[] = { "client", "messages", "connections" };
	table(f, "Senders", json_object_get(tp, "senders"), sc, 3);
	table(f, "Sender domains", json_object_get(tp, "sender_domains"), dsc, 3);
	table(f, "Recipients", json_object_get(tp, "recipients"), sc, 3);
	table(f, "Recipient domains", json_object_get(tp, "recipient_domains"), rdc, 6);
	table(f, "Clients", json_object_get(tp, "clients"), cc, 3);
	fputs("</body></html>\n", f);
}
