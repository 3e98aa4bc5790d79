/*
 * fuzz_metrics_merge: lib/metrics_merge on hostile /metrics texts.
 * The input, cut at NUL bytes, is up to four daemons' texts (the last one
 * without a daemon label, as `sluice start` passes its own). The merge never
 * crashes or leaks, and its output is a valid exposition as far as the
 * merge can tell: printable ASCII lines, each HELP and TYPE once per
 * family, and merging the output again (no label added) gives it back
 * byte for byte (so nothing in it is a line the merge would drop).
 */
#include "lib/metrics_merge.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok)
{
	if (!ok)
		abort();
}

/* each "# HELP name" and "# TYPE name" at most once */
static void check_headers_once(const char *t)
{
	size_t n = 0;
	for (const char *p = t; *p; p = strchr(p, '\n') + 1)
		n += *p == '#';
	const char **h = malloc((n + 1) * sizeof *h);
	check(h != NULL);
	n = 0;
	for (const char *p = t; *p; p = strchr(p, '\n') + 1)
		if (*p == '#') {
			check(!strncmp(p, "# HELP ", 7) || !strncmp(p, "# TYPE ", 7));
			h[n++] = p;
		}
	/* "# HELP name" up to the name's end */
	for (size_t i = 0; i < n; i++)
		for (size_t k = i + 1; k < n; k++) {
			size_t li = 7 + strcspn(h[i] + 7, " \n"), lk = 7 + strcspn(h[k] + 7, " \n");
			check(!(li == lk && !memcmp(h[i], h[k], li)));
		}
	free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static const char *const names[] = { "sluiced", "sluice-dkim", "sluice-spf\"\\x", NULL };
	struct metrics_source src[4];
	size_t ns = 0, at = 0;
	while (ns < 4 && at <= n) {
		const uint8_t *z = ns < 3 ? memchr(d + at, 0, n - at) : NULL;
		size_t end = z ? (size_t)(z - d) : n;
		src[ns].daemon = names[ns];
		src[ns].text = (const char *)d + at;
		src[ns].len = end - at;
		ns++;
		at = end + 1;
		if (!z)
			break;
	}
	size_t len;
	char *t = metrics_merge("daemon", src, ns, &len);
	check(strlen(t) == len);
	check(len == 0 || t[len - 1] == '\n');
	for (size_t i = 0; i < len; i++)
		check(t[i] == '\n' || (t[i] >= 0x20 && t[i] < 0x7f));
	check(!strstr(t, "\n\n") && t[0] != '\n');
	check_headers_once(t);
	struct metrics_source again = { NULL, t, len };
	size_t len2;
	char *t2 = metrics_merge("daemon", &again, 1, &len2);
	check(len2 == len && !memcmp(t, t2, len));
	free(t2);
	free(t);
	return 0;
}
