/*
 * metrics: Prometheus metrics for every sluice daemon.
 * Owns: a registry of metric families (counters, gauges, histograms with
 * fixed buckets, each with a fixed list of label names) and their series
 * (one per set of label values), kept in one shared anonymous mmap so that
 * processes forked after metrics_new() (sluiced's receivers and queue
 * manager) update the same numbers the parent serves; every update is an
 * atomic operation, so any thread of any of those processes may update.
 * Also: the Prometheus text exposition format (version 0.0.4: HELP and
 * TYPE lines, label value escaping, _bucket{le=...}, _sum, _count), the
 * cheap process_* metrics of the serving process, and the HTTP endpoint
 * GET /metrics through libevent's evhttp, either on a daemon's own event
 * base or on a thread of its own (for the milters, whose main thread
 * belongs to libmilter).
 * Leaves: which metrics exist and when they move to each daemon; binding
 * the listening socket to lib/daemon (listen_open, before privileges are
 * dropped); merging several daemons' expositions into one to
 * lib/metrics_merge.
 *
 * Label values are untrusted: bytes outside printable ASCII become '?', a
 * value is cut at METRICS_VALUE_MAX bytes, and the registry holds at most
 * the max_series given to metrics_new(); updates of new series beyond that
 * are dropped and counted in sluice_metrics_dropped_updates_total.
 */
#ifndef SLUICE_LIB_METRICS_H
#define SLUICE_LIB_METRICS_H

#include <stddef.h>

struct event_base;
struct metrics;
struct metrics_http;

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

#define METRICS_FAMILIES_MAX 96	/* families per registry */
#define METRICS_LABELS_MAX 4	/* label names per family */
#define METRICS_BUCKETS_MAX 16	/* histogram bounds per family (+Inf is implicit) */
#define METRICS_VALUE_MAX 64	/* bytes of one label value kept */

/* METRICS_L("RCPT", "relay") - the label values of one update, in the
 * order of the family's label names. */
#define METRICS_L(...) ((const char *const[]){ __VA_ARGS__ })

/* Histogram bounds in seconds for per-message and per-request times
 * (1 ms to 30 s). */
extern const double metrics_buckets_seconds[];
extern const size_t metrics_nbuckets_seconds;

/*
 * metrics_new - an empty registry with room for max_series series (all
 * families together; 0 = 2048) in a MAP_SHARED anonymous mapping. When
 * with_process is set, each rendering also reports the rendering
 * process's process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and
 * process_start_time_seconds. Never NULL (exits like xmalloc when the
 * mapping fails). Free with metrics_free() in the process that made it
 * (children simply exit).
 */
struct metrics *metrics_new(size_t max_series, int with_process);
void metrics_free(struct metrics **m);

/*
 * metrics_family - register a family: name (Prometheus naming: counters
 * end in _total, times are _seconds), help text (one line), type, label
 * names (comma-separated, e.g. "stage,reason"; NULL or "" for none; "le"
 * is reserved), and for histograms the ascending upper bounds (at most
 * METRICS_BUCKETS_MAX; NULL = metrics_buckets_seconds). Register every
 * family before forking children or starting a metrics_http thread: the
 * family table is not shared. Returns the family id (>= 0) for the update
 * functions. Our bug (panic): a bad name, too many families or labels.
 * The strings are copied.
 */
int metrics_family(struct metrics *m, const char *name, enum metrics_type type, const char *help,
		   const char *labels, const double *buckets, size_t nbuckets);

/*
 * Updates. m NULL = metrics off: nothing happens, so instrumented code
 * needs no checks. values: one string per label name of the family
 * (METRICS_L(...)), NULL for a family without labels; NULL entries count
 * as "". Copied; the caller keeps them.
 * metrics_add - counters (v >= 0) and gauges (any sign): value += v.
 * metrics_set - gauges: value = v.
 * metrics_observe - histograms: one observation v (in the family's unit).
 * A series appears (at 0) when it is first updated; metrics_touch makes it
 * appear without an update (so a counter shows 0 before its first event).
 */
void metrics_add(struct metrics *m, int fam, const char *const *values, double v);
void metrics_set(struct metrics *m, int fam, const char *const *values, double v);
void metrics_observe(struct metrics *m, int fam, const char *const *values, double v);
void metrics_touch(struct metrics *m, int fam, const char *const *values);

/*
 * The text format's rules, shared with lib/metrics_merge:
 * metrics_name_ok - whether s (len bytes) is a metric or label name as
 * metrics_family takes them: [a-zA-Z_][a-zA-Z0-9_]*, at most 63 bytes (no
 * colons).
 * metrics_escape_value - the label value v (NUL-terminated) as it goes
 * between the quotes: cut at METRICS_VALUE_MAX bytes, '\\' and '"'
 * escaped, bytes outside printable ASCII as '?'. Writes at most
 * 2 * METRICS_VALUE_MAX bytes to out, no NUL; returns how many.
 */
int metrics_name_ok(const char *s, size_t len);
size_t metrics_escape_value(const char *v, char *out);

/* metrics_now_s - CLOCK_MONOTONIC in seconds (for durations to observe). */
double metrics_now_s(void);

/*
 * metrics_get - the current value of a counter or gauge series, or a
 * histogram's observation count; 0 when the series does not exist.
 * For tests and the daemons' stop lines.
 */
double metrics_get(struct metrics *m, int fam, const char *const *values);

/*
 * metrics_on_render - fn(m, arg) runs at the start of every
 * metrics_render, in the rendering thread, to set gauges that are cheaper
 * to read than to track (queue sizes). One per registry; fn NULL = none.
 */
void metrics_on_render(struct metrics *m, void (*fn)(struct metrics *m, void *arg), void *arg);

/*
 * metrics_render - the whole registry in the Prometheus text format
 * (families in registration order, then the process metrics). Returns a
 * NUL-terminated string the caller frees; *len_out (may be NULL) gets its
 * length.
 */
char *metrics_render(struct metrics *m, size_t *len_out);

/*
 * metrics_http_start - serve GET /metrics (and HEAD) on the listening
 * socket fd (from metrics_listen), which belongs to the server from now on
 * (closed by metrics_http_stop, or at once when the start fails). With base: on that event base, in its thread. With
 * base NULL: on a new thread with its own event base; all signals are
 * blocked in that thread. Other paths get 404, other methods 501 (libevent). Each
 * scrape renders the registry afresh. NULL with *err_out (caller frees).
 */
struct metrics_http *metrics_http_start(struct metrics *m, struct event_base *base, int fd,
					char **err_out);
/* metrics_http_stop - stop serving (joins the thread, if any); accepts NULL, leaves *h NULL. */
void metrics_http_stop(struct metrics_http **h);

/*
 * metrics_listen - bind a metrics address: "host:port" or "[v6]:port"
 * (":port" = every IPv4 address). Unix sockets are refused. Call before
 * dropping privileges. 0 with *fd_out, or -1 with *err_out (caller frees).
 * "fd:N" takes over the listening TCP socket N inherited from the parent
 * (`sluice start` binds loopback ports for the daemons it scrapes, so it
 * knows them, and keeps them across the daemons' restarts); it is made
 * close-on-exec and non-blocking here.
 */
int metrics_listen(const char *spec, int *fd_out, char **err_out);

struct conf;
/*
 * metrics_conf_listen - metrics_listen on the address in parameter param
 * (e.g. "spf_metrics_listen"): the socket, or -1 when param is empty
 * (metrics off). A bad address is fatal() naming the parameter's file and
 * line (start-up only).
 */
int metrics_conf_listen(const struct conf *c, const char *param);

/*
 * The families every filter daemon (sluice-dkim, -dmarc, -spam, -spf,
 * -ratelimit) shares, each with the label filter="<name>", so one
 * Prometheus query covers all of them. One per process: metrics_filter.
 * Until metrics_filter_init (metrics off) m is NULL and the helpers below
 * do nothing.
 */
struct metrics_filter {
	struct metrics *m;
	const char *name;	/* "dkim", "spf", ... (static) */
	int decisions;		/* sluice_filter_{messages|requests}_total{filter,result,action} */
	int seconds;		/* sluice_filter_duration_seconds{filter} (histogram) */
	int dns_queries;	/* sluice_dns_queries_total{filter} */
	int dns_timeouts;	/* sluice_dns_timeouts_total{filter} */
	int errors;		/* sluice_filter_errors_total{filter,reason} */
};
extern struct metrics_filter metrics_filter;

/*
 * metrics_filter_init - register the shared families in m for filter name
 * (a static string); unit is "messages" (milters) or "requests" (policy
 * servers). Sets metrics_filter.
 */
void metrics_filter_init(struct metrics *m, const char *name, const char *unit);
/* metrics_filter_decision - one message or request done: its result and
 * action (docs/EVENTS.md's names) and the time it took in seconds (< 0: none). */
void metrics_filter_decision(const char *result, const char *action, double seconds);
/* metrics_filter_duration - the time one message or request took, when
 * the decision was counted apart (metrics_filter_decision with seconds < 0). */
void metrics_filter_duration(double seconds);
/* metrics_filter_dns_query - one DNS query sent (not answered from a cache);
 * metrics_filter_dns_timeout - one answered with DNS_TIMEOUT. */
void metrics_filter_dns_query(void);
void metrics_filter_dns_timeout(void);
/* metrics_filter_error - a failure with a stable reason code (e.g.
 * "backend", "internal", "malformed"). */
void metrics_filter_error(const char *reason);

#endif
