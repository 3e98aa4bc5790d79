/*
 * metrics: registry in a shared mapping, Prometheus text format, evhttp
 * endpoint. See metrics.h.
 *
 * Series live in an open-addressing hash table inside one MAP_SHARED
 * anonymous mapping. A slot goes free (0) -> being written (1) -> ready (2)
 * by compare-and-swap and never back, so processes and threads insert
 * without a lock; readers wait for a slot in state 1 (a few stores). Values
 * are doubles kept as their bits in 64-bit atomics (compare-and-swap adds),
 * histogram buckets are plain atomic counts (the +Inf bucket and _count
 * are their sum, so a scrape never shows a count below its buckets).
 */
#include "lib/metrics.h"
#include "conf/conf.h"
#include "lib/daemon.h"
#include "lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define NAME_MAX_BYTES 64
/* rendered labels: name="value" with every value byte escaped at worst */
#define LABELS_BYTES (METRICS_LABELS_MAX * (NAME_MAX_BYTES + 4 + 2 * METRICS_VALUE_MAX))

const double metrics_buckets_seconds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					   0.25,  0.5,	  1,	 2.5,  5,     10,   30 };
const size_t metrics_nbuckets_seconds = sizeof metrics_buckets_seconds / sizeof metrics_buckets_seconds[0];

enum { SLOT_FREE, SLOT_WRITING, SLOT_READY };

struct mseries {
	_Atomic uint32_t state;
	uint32_t fam;
	uint64_t hash;
	_Atomic uint64_t value;	/* double bits; histograms: the sum */
	_Atomic uint64_t buckets[METRICS_BUCKETS_MAX + 1];	/* per bucket (not cumulative); last = above every bound */
	char labels[LABELS_BYTES];
};

struct mshared {
	_Atomic uint64_t used;
	_Atomic uint64_t dropped;
	struct mseries slot[];
};

struct mfamily {
	char name[NAME_MAX_BYTES];
	char *help;
	enum metrics_type type;
	size_t nlabels;
	char label[METRICS_LABELS_MAX][NAME_MAX_BYTES];
	double bound[METRICS_BUCKETS_MAX];
	size_t nbounds;
};

struct metrics {
	struct mshared *sh;
	size_t map_bytes;
	size_t nslots;	/* power of two */
	size_t max_series;
	int with_process;
	void (*on_render)(struct metrics *m, void *arg);
	void *on_render_arg;
	size_t nfam;
	struct mfamily fam[METRICS_FAMILIES_MAX];
};

static uint64_t dbits(double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof u);
	return u;
}

static double bitsd(uint64_t u)
{
	double v;
	memcpy(&v, &u, sizeof v);
	return v;
}

struct metrics *metrics_new(size_t max_series, int with_process)
{
	struct metrics *m = xcalloc(1, sizeof *m);
	m->max_series = max_series ? max_series : 2048;
	m->nslots = 16;
	while (m->nslots < 2 * m->max_series)
		m->nslots *= 2;
	m->map_bytes = sizeof(struct mshared) + m->nslots * sizeof(struct mseries);
	/* anonymous memory is zero: every slot SLOT_FREE; pages appear as touched */
	void *p = mmap(NULL, m->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fatal("metrics: mmap %zu bytes: %s", m->map_bytes, strerror(errno));
	m->sh = p;
	m->with_process = with_process;
	return m;
}

void metrics_free(struct metrics **mp)
{
	struct metrics *m = mp ? *mp : NULL;
	if (!m)
		return;
	munmap(m->sh, m->map_bytes);
	for (size_t i = 0; i < m->nfam; i++)
		free(m->fam[i].help);
	free(m);
	*mp = NULL;
}

int metrics_name_ok(const char *s, size_t len)
{
	if (len == 0 || len >= NAME_MAX_BYTES || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

int metrics_family(struct metrics *m, const char *name, enum metrics_type type, const char *help,
		   const char *labels, const double *buckets, size_t nbuckets)
{
	if (m->nfam == METRICS_FAMILIES_MAX)
		panic("metrics: more than %d families", METRICS_FAMILIES_MAX);
	if (!metrics_name_ok(name, strlen(name)))
		panic("metrics: bad metric name '%s'", name);
	struct mfamily *f = &m->fam[m->nfam];
	memset(f, 0, sizeof *f);
	strcpy(f->name, name);
	f->type = type;
	f->help = xstrdup(help ? help : "");
	for (char *nl = f->help; (nl = strchr(nl, '\n'));)
		*nl = ' ';
	for (const char *p = labels; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (f->nlabels == METRICS_LABELS_MAX || !metrics_name_ok(p, len) || (len == 2 && !memcmp(p, "le", 2)))
			panic("metrics: bad labels '%s' for %s", labels, name);
		memcpy(f->label[f->nlabels++], p, len);
		p = comma ? comma + 1 : p + len;
	}
	if (type == METRICS_HISTOGRAM) {
		if (!buckets) {
			buckets = metrics_buckets_seconds;
			nbuckets = metrics_nbuckets_seconds;
		}
		if (nbuckets == 0 || nbuckets > METRICS_BUCKETS_MAX)
			panic("metrics: %s: %zu buckets", name, nbuckets);
		for (size_t i = 0; i < nbuckets; i++) {
			if (i > 0 && !(buckets[i] > buckets[i - 1]))
				panic("metrics: %s: buckets not ascending", name);
			f->bound[i] = buckets[i];
		}
		f->nbounds = nbuckets;
	}
	return (int)m->nfam++;
}

size_t metrics_escape_value(const char *v, char *out)
{
	size_t o = 0;
	for (size_t k = 0; v[k] && k < METRICS_VALUE_MAX; k++) {
		unsigned char c = (unsigned char)v[k];
		if (c == '\\' || c == '"')
			out[o++] = '\\';
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	return o;
}

/* label_string - name="value",... into out (LABELS_BYTES): printable ASCII only, escaped. */
static void label_string(const struct mfamily *f, const char *const *values, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < f->nlabels; i++) {
		const char *v = values && values[i] ? values[i] : "";
		o += (size_t)sprintf(out + o, "%s%s=\"", i ? "," : "", f->label[i]);
		o += metrics_escape_value(v, out + o);
		out[o++] = '"';
	}
	out[o] = 0;
}

static uint64_t hash_of(int fam, const char *labels)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)fam;
	for (const unsigned char *p = (const unsigned char *)labels; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return h;
}

/* series - find or make the series; NULL when the table is full. */
static struct mseries *series(struct metrics *m, int fam, const char *const *values, int create)
{
	if (fam < 0 || (size_t)fam >= m->nfam)
		panic("metrics: no family %d", fam);
	char labels[LABELS_BYTES];
	label_string(&m->fam[fam], values, labels);
	uint64_t h = hash_of(fam, labels);
	size_t mask = m->nslots - 1;
	for (size_t n = 0, i = h & mask; n < m->nslots; n++, i = (i + 1) & mask) {
		struct mseries *s = &m->sh->slot[i];
		uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == SLOT_FREE) {
			if (!create)
				return NULL;
			if (atomic_load(&m->sh->used) >= m->max_series) {
				atomic_fetch_add(&m->sh->dropped, 1);
				return NULL;
			}
			uint32_t expect = SLOT_FREE;
			if (atomic_compare_exchange_strong(&s->state, &expect, SLOT_WRITING)) {
				s->fam = (uint32_t)fam;
				s->hash = h;
				strcpy(s->labels, labels);
				atomic_fetch_add(&m->sh->used, 1);
				atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
				return s;
			}
			st = expect;
		}
		while (st == SLOT_WRITING) {
			sched_yield();
			st = atomic_load_explicit(&s->state, memory_order_acquire);
		}
		if (s->hash == h && s->fam == (uint32_t)fam && !strcmp(s->labels, labels))
			return s;
	}
	atomic_fetch_add(&m->sh->dropped, 1);
	return NULL;
}

static void add_double(_Atomic uint64_t *a, double v)
{
	uint64_t old = atomic_load(a);
	while (!atomic_compare_exchange_weak(a, &old, dbits(bitsd(old) + v)))
		;
}

void metrics_add(struct metrics *m, int fam, const char *const *values, double v)
{
	if (!m)
		return;
	struct mseries *s = series(m, fam, values, 1);
	if (s)
		add_double(&s->value, v);
}

void metrics_set(struct metrics *m, int fam, const char *const *values, double v)
{
	if (!m)
		return;
	struct mseries *s = series(m, fam, values, 1);
	if (s)
		atomic_store(&s->value, dbits(v));
}

void metrics_observe(struct metrics *m, int fam, const char *const *values, double v)
{
	if (!m)
		return;
	const struct mfamily *f = &m->fam[fam >= 0 && (size_t)fam < m->nfam ? fam : 0];
	struct mseries *s = series(m, fam, values, 1);
	if (!s)
		return;
	size_t b = 0;
	while (b < f->nbounds && v > f->bound[b])
		b++;
	add_double(&s->value, v);
	atomic_fetch_add(&s->buckets[b], 1);
}

void metrics_touch(struct metrics *m, int fam, const char *const *values)
{
	if (m)
		series(m, fam, values, 1);
}

static double hist_count(const struct mfamily *f, struct mseries *s)
{
	uint64_t n = 0;
	for (size_t b = 0; b <= f->nbounds; b++)
		n += atomic_load(&s->buckets[b]);
	return (double)n;
}

double metrics_get(struct metrics *m, int fam, const char *const *values)
{
	if (!m)
		return 0;
	struct mseries *s = series(m, fam, values, 0);
	if (!s)
		return 0;
	if (m->fam[fam].type == METRICS_HISTOGRAM)
		return hist_count(&m->fam[fam], s);
	return bitsd(atomic_load(&s->value));
}

double metrics_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* fmt_value - Prometheus float: +Inf, -Inf, NaN or %.15g */
static void add_value(struct sbuf *b, double v)
{
	if (isnan(v))
		sbuf_adds(b, "NaN");
	else if (isinf(v))
		sbuf_adds(b, v > 0 ? "+Inf" : "-Inf");
	else
		sbuf_printf(b, "%.15g", v);
}

static void add_header(struct sbuf *b, const char *name, const char *help, const char *type)
{
	sbuf_printf(b, "# HELP %s ", name);
	for (const char *p = help; *p; p++)
		if (*p == '\\')
			sbuf_adds(b, "\\\\");
		else
			sbuf_addc(b, *p);
	sbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void render_histogram(struct sbuf *b, const struct mfamily *f, struct mseries *s)
{
	const char *sep = s->labels[0] ? "," : "";
	uint64_t cum = 0;
	for (size_t i = 0; i <= f->nbounds; i++) {
		cum += atomic_load(&s->buckets[i]);
		if (i < f->nbounds)
			sbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", f->name, s->labels, sep, f->bound[i],
				    (unsigned long long)cum);
		else
			sbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, s->labels, sep,
				    (unsigned long long)cum);
	}
	sbuf_printf(b, "%s_sum%s%s%s ", f->name, s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "");
	add_value(b, bitsd(atomic_load(&s->value)));
	sbuf_printf(b, "\n%s_count%s%s%s %llu\n", f->name, s->labels[0] ? "{" : "", s->labels,
		    s->labels[0] ? "}" : "", (unsigned long long)cum);
}

/* process metrics from /proc/self; each one only when it could be read */
static void render_process(struct sbuf *b)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		add_header(b, "process_cpu_seconds_total", "User and system CPU time of the serving process.",
			   "counter");
		sbuf_printf(b, "process_cpu_seconds_total %.6f\n",
			    (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
				    ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6);
	}
	char buf[1024];
	FILE *fp = fopen("/proc/self/stat", "r");
	size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
	if (fp)
		fclose(fp);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	unsigned long long start_ticks = 0, vsize = 0;
	long long rss_pages = 0;
	/* after "pid (comm)": field 3 is state; starttime 22, vsize 23, rss 24 */
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu %llu %lld",
			&start_ticks, &vsize, &rss_pages) == 3) {
		add_header(b, "process_virtual_memory_bytes", "Virtual memory size of the serving process.", "gauge");
		sbuf_printf(b, "process_virtual_memory_bytes %llu\n", vsize);
		add_header(b, "process_resident_memory_bytes", "Resident memory of the serving process.", "gauge");
		sbuf_printf(b, "process_resident_memory_bytes %lld\n", rss_pages * page);
		unsigned long long btime = 0;
		FILE *sf = fopen("/proc/stat", "r");
		char line[256];
		while (sf && fgets(line, sizeof line, sf))
			if (sscanf(line, "btime %llu", &btime) == 1)
				break;
		if (sf)
			fclose(sf);
		if (btime && tick > 0) {
			add_header(b, "process_start_time_seconds",
				   "Start time of the serving process since the Unix epoch.", "gauge");
			sbuf_printf(b, "process_start_time_seconds %.2f\n",
				    (double)btime + (double)start_ticks / (double)tick);
		}
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		long nfd = -1;	/* the DIR's own descriptor */
		while (readdir(d))
			nfd++;
		closedir(d);
		add_header(b, "process_open_fds", "Open file descriptors of the serving process.", "gauge");
		sbuf_printf(b, "process_open_fds %ld\n", nfd - 2);	/* minus . and .. */
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		add_header(b, "process_max_fds", "Limit on open file descriptors of the serving process.", "gauge");
		sbuf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
}

void metrics_on_render(struct metrics *m, void (*fn)(struct metrics *m, void *arg), void *arg)
{
	m->on_render = fn;
	m->on_render_arg = arg;
}

char *metrics_render(struct metrics *m, size_t *len_out)
{
	static const char *const tname[] = { "counter", "gauge", "histogram" };
	struct sbuf b;
	if (m->on_render)
		m->on_render(m, m->on_render_arg);
	sbuf_init(&b);
	for (size_t fi = 0; fi < m->nfam; fi++) {
		const struct mfamily *f = &m->fam[fi];
		add_header(&b, f->name, f->help, tname[f->type]);
		for (size_t i = 0; i < m->nslots; i++) {
			struct mseries *s = &m->sh->slot[i];
			if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY || s->fam != fi)
				continue;
			if (f->type == METRICS_HISTOGRAM) {
				render_histogram(&b, f, s);
				continue;
			}
			sbuf_printf(&b, "%s%s%s%s ", f->name, s->labels[0] ? "{" : "", s->labels,
				    s->labels[0] ? "}" : "");
			add_value(&b, bitsd(atomic_load(&s->value)));
			sbuf_addc(&b, '\n');
		}
	}
	add_header(&b, "sluice_metrics_dropped_updates_total",
		   "Metric updates dropped because the registry had no room for a new series.", "counter");
	sbuf_printf(&b, "sluice_metrics_dropped_updates_total %llu\n",
		    (unsigned long long)atomic_load(&m->sh->dropped));
	if (m->with_process)
		render_process(&b);
	if (len_out)
		*len_out = b.len;
	if (!b.buf)
		sbuf_adds(&b, "");
	return sbuf_steal(&b);
}

/* --- HTTP --- */

struct metrics_http {
	struct metrics *m;
	struct event_base *base;
	struct evhttp *http;
	int own_thread;
	pthread_t thread;
	int stop_pipe[2];
	struct event *stop_ev;
};

static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (!path || strcmp(path, "/metrics")) {
		evhttp_send_error(req, HTTP_NOTFOUND, "try /metrics");
		return;
	}
	size_t len;
	char *text = metrics_render(h->m, &len);
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	evhttp_add_header(hdr, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	struct evbuffer *out = evbuffer_new();
	if (!out) {
		free(text);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(out, text, len);
	free(text);
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	(void)fd, (void)what;
	event_base_loopbreak(h->base);
}

static void *http_thread(void *arg)
{
	struct metrics_http *h = arg;
	event_base_dispatch(h->base);
	return NULL;
}

static void http_free(struct metrics_http *h)
{
	if (h->http)
		evhttp_free(h->http);
	if (h->stop_ev)
		event_free(h->stop_ev);
	if (h->own_thread) {
		if (h->stop_pipe[0] >= 0)
			close(h->stop_pipe[0]);
		if (h->stop_pipe[1] >= 0)
			close(h->stop_pipe[1]);
		if (h->base)
			event_base_free(h->base);
	}
	free(h);
}

struct metrics_http *metrics_http_start(struct metrics *m, struct event_base *base, int fd,
					char **err_out)
{
	struct metrics_http *h = xcalloc(1, sizeof *h);
	h->m = m;
	h->stop_pipe[0] = h->stop_pipe[1] = -1;
	h->own_thread = base == NULL;
	h->base = base ? base : event_base_new();
	if (!h->base) {
		*err_out = xstrdup("metrics: event_base_new failed");
		close(fd);
		free(h);
		return NULL;
	}
	h->http = evhttp_new(h->base);
	if (!h->http || evhttp_accept_socket(h->http, fd) < 0) {
		*err_out = xstrdup("metrics: cannot serve HTTP on the socket");
		close(fd);
		http_free(h);
		return NULL;
	}
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(h->http, 10);
	evhttp_set_gencb(h->http, on_request, h);
	if (!h->own_thread)
		return h;
	if (pipe2(h->stop_pipe, O_CLOEXEC) < 0) {
		*err_out = xasprintf("metrics: pipe: %s", strerror(errno));
		http_free(h);
		return NULL;
	}
	h->stop_ev = event_new(h->base, h->stop_pipe[0], EV_READ, on_stop, h);
	event_add(h->stop_ev, NULL);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&h->thread, NULL, http_thread, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		*err_out = xasprintf("metrics: pthread_create: %s", strerror(rc));
		http_free(h);
		return NULL;
	}
	return h;
}

void metrics_http_stop(struct metrics_http **hp)
{
	struct metrics_http *h = hp ? *hp : NULL;
	if (!h)
		return;
	if (h->own_thread) {
		if (write(h->stop_pipe[1], "x", 1) != 1)
			panic("metrics: cannot wake the HTTP thread");
		pthread_join(h->thread, NULL);
	}
	http_free(h);
	*hp = NULL;
}

struct metrics_filter metrics_filter = { .m = NULL, .name = "" };

void metrics_filter_init(struct metrics *m, const char *name, const char *unit)
{
	struct metrics_filter *f = &metrics_filter;
	char *n = xasprintf("sluice_filter_%s_total", unit);
	char *h = xasprintf("Filter %s done, by result and action.", unit);
	f->m = m;
	f->name = name;
	f->decisions = metrics_family(m, n, METRICS_COUNTER, h, "filter,result,action", NULL, 0);
	free(n);
	free(h);
	h = xasprintf("Time the filter took per %s, in seconds.", strcmp(unit, "messages") ? "request" : "message");
	f->seconds = metrics_family(m, "sluice_filter_duration_seconds", METRICS_HISTOGRAM, h, "filter", NULL, 0);
	free(h);
	f->dns_queries = metrics_family(m, "sluice_dns_queries_total", METRICS_COUNTER,
					"DNS queries sent (cache hits not counted).", "filter", NULL, 0);
	f->dns_timeouts = metrics_family(m, "sluice_dns_timeouts_total", METRICS_COUNTER,
					 "DNS queries that got no answer in time.", "filter", NULL, 0);
	f->errors = metrics_family(m, "sluice_filter_errors_total", METRICS_COUNTER,
				   "Filter failures by reason.", "filter,reason", NULL, 0);
	metrics_touch(m, f->dns_queries, METRICS_L(name));
	metrics_touch(m, f->dns_timeouts, METRICS_L(name));
	/* an empty histogram has no series: show the zero one */
	metrics_touch(m, f->seconds, METRICS_L(name));
}

void metrics_filter_decision(const char *result, const char *action, double seconds)
{
	struct metrics_filter *f = &metrics_filter;
	if (!f->m)
		return;
	metrics_add(f->m, f->decisions, METRICS_L(f->name, result, action), 1);
	if (seconds >= 0)
		metrics_observe(f->m, f->seconds, METRICS_L(f->name), seconds);
}

void metrics_filter_duration(double seconds)
{
	if (metrics_filter.m)
		metrics_observe(metrics_filter.m, metrics_filter.seconds, METRICS_L(metrics_filter.name), seconds);
}

void metrics_filter_dns_query(void)
{
	if (metrics_filter.m)
		metrics_add(metrics_filter.m, metrics_filter.dns_queries, METRICS_L(metrics_filter.name), 1);
}

void metrics_filter_dns_timeout(void)
{
	if (metrics_filter.m)
		metrics_add(metrics_filter.m, metrics_filter.dns_timeouts, METRICS_L(metrics_filter.name), 1);
}

void metrics_filter_error(const char *reason)
{
	if (metrics_filter.m)
		metrics_add(metrics_filter.m, metrics_filter.errors, METRICS_L(metrics_filter.name, reason), 1);
}

/* inherited_listener - "fd:N": N must be a listening TCP socket (from `sluice start`). */
static int inherited_listener(const char *spec, int *fd_out, char **err_out)
{
	char *end;
	errno = 0;
	long fd = strtol(spec + 3, &end, 10);
	int on = 0, domain = 0;
	socklen_t len = sizeof on, dlen = sizeof domain;
	if (errno || end == spec + 3 || *end || fd < 3 || fd > 65535 ||
	    getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0 || !on ||
	    getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0 ||
	    (domain != AF_INET && domain != AF_INET6)) {
		*err_out = xasprintf("%s: not an inherited listening TCP socket", spec);
		return -1;
	}
	/* ours now: not for the programs we run, and accept() must not block the event loop */
	int fl = fcntl((int)fd, F_GETFL);
	if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0 || fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		*err_out = xasprintf("%s: %s", spec, strerror(errno));
		return -1;
	}
	*fd_out = (int)fd;
	return 0;
}

int metrics_listen(const char *spec, int *fd_out, char **err_out)
{
	if (!strncmp(spec, "fd:", 3))
		return inherited_listener(spec, fd_out, err_out);
	if (!strncmp(spec, "unix:", 5) || spec[0] == '/') {
		*err_out = xasprintf("%s: metrics listen on host:port or [v6]:port, not a unix socket", spec);
		return -1;
	}
	struct listener l;
	int rc = listen_open(!strncmp(spec, "inet:", 5) ? spec + 5 : spec, 64, 0, &l, err_out);
	free(l.spec);
	if (rc < 0)
		return -1;
	*fd_out = l.fd;
	return 0;
}

int metrics_conf_listen(const struct conf *c, const char *param)
{
	const char *spec = conf_str(c, param);
	char *err = NULL;
	int fd;
	if (!spec || !*spec)
		return -1;
	if (metrics_listen(spec, &fd, &err) < 0)
		fatal("%s: %s: %s", conf_where(c, param), param, err);
	return fd;
}
