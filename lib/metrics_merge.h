/*
 * metrics_merge: several daemons' Prometheus expositions as one, for one
 * endpoint that serves them all (`sluice start`'s start_metrics_listen).
 * Owns: reading the text format 0.0.4 line by line as untrusted input
 * (HELP, TYPE and sample lines; anything else dropped), grouping series
 * by family across sources, the label that names each source, and
 * writing the merged text.
 * Leaves: fetching the texts (tools/start_metrics), the registry and its
 * rendering, name rules and label value escaping to lib/metrics
 * (metrics_name_ok, metrics_escape_value).
 * Pure: no I/O, no globals, safe from any thread.
 */
#ifndef SLUICE_LIB_METRICS_MERGE_H
#define SLUICE_LIB_METRICS_MERGE_H

#include <stddef.h>

struct metrics_source {
	const char *daemon;	/* label value (escaped and cut like any label value) or NULL */
	const char *text;	/* len bytes, need not be NUL-terminated; NULL = empty */
	size_t len;
};

/*
 * metrics_merge - several expositions (the /metrics texts of several
 * daemons) as one. Each series of src[i] gets the label
 * label="src[i].daemon" first (none when daemon is NULL: the text has its
 * own); each family's HELP and TYPE appear once (the first source's),
 * followed by all its series from every source in source order; families
 * in the order they first appear.
 * The texts are untrusted: a line that is not a valid HELP, TYPE or sample
 * line of the text format 0.0.4 (printable ASCII only, at most 64 KiB) is
 * dropped, and so is a sample that would make the output invalid: one
 * that already has the label, a _bucket without a float le, samples under
 * a TYPE that contradicts the family's first declaration, a family whose
 * name is a histogram's or summary's _sum, _count or _bucket; other
 * comments go too. At most 4096 families (the lines of further ones are
 * dropped). label must be a valid label name (metrics_name_ok; our bug,
 * panic, otherwise). Returns a NUL-terminated string the caller frees;
 * *len_out (may be NULL) gets its length.
 */
char *metrics_merge(const char *label, const struct metrics_source *src, size_t n, size_t *len_out);

#endif
