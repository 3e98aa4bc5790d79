/*
 * test_metrics: lib/metrics and lib/metrics_merge. The text format of
 * counters, gauges and histograms (golden text), label value escaping and
 * cutting, series made on first use and found again, the cap on series,
 * updates from a forked child and from several threads at once (exact
 * totals), and the HTTP endpoint on its own thread and on a caller's event
 * base (200 for /metrics with the Prometheus content type, 404 elsewhere,
 * 501 for POST), the families every filter shares (metrics_filter) and the
 * render hook; metrics_merge: the daemon label on every series (with and
 * without labels, histograms), HELP/TYPE once per family with the series
 * of every daemon together, garbage lines dropped, the output re-parsed.
 */
#include "lib/metrics.h"
#include "lib/metrics_merge.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <event2/event.h>
#include <cmocka.h>

static void test_counter_and_gauge_text(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(0, 0);
	int rej = metrics_family(m, "sluice_rejects_total", METRICS_COUNTER, "Rejected commands.", "stage,reason",
				 NULL, 0);
	int ses = metrics_family(m, "sluice_sessions", METRICS_GAUGE, "Open sessions.", NULL, NULL, 0);
	metrics_add(m, rej, METRICS_L("RCPT", "relay_denied"), 1);
	metrics_add(m, rej, METRICS_L("RCPT", "relay_denied"), 2);
	metrics_add(m, ses, NULL, 3);
	metrics_add(m, ses, NULL, -1);
	char *t = metrics_render(m, NULL);
	assert_string_equal(t, "# HELP sluice_rejects_total Rejected commands.\n"
			       "# TYPE sluice_rejects_total counter\n"
			       "sluice_rejects_total{stage=\"RCPT\",reason=\"relay_denied\"} 3\n"
			       "# HELP sluice_sessions Open sessions.\n"
			       "# TYPE sluice_sessions gauge\n"
			       "sluice_sessions 2\n"
			       "# HELP sluice_metrics_dropped_updates_total Metric updates dropped because the "
			       "registry had no room for a new series.\n"
			       "# TYPE sluice_metrics_dropped_updates_total counter\n"
			       "sluice_metrics_dropped_updates_total 0\n");
	free(t);
	assert_true(metrics_get(m, rej, METRICS_L("RCPT", "relay_denied")) == 3);
	assert_true(metrics_get(m, rej, METRICS_L("MAIL", "relay_denied")) == 0);
	metrics_set(m, ses, NULL, 7.5);
	assert_true(metrics_get(m, ses, NULL) == 7.5);
	metrics_free(&m);
	assert_null(m);
	metrics_free(&m);
}

static void test_histogram_text(void **state)
{
	(void)state;
	static const double b[] = { 0.01, 0.1, 1 };
	struct metrics *m = metrics_new(0, 0);
	int h = metrics_family(m, "sluice_eod_seconds", METRICS_HISTOGRAM, "End of data.", "filter", b, 3);
	metrics_observe(m, h, METRICS_L("dkim"), 0.005);
	metrics_observe(m, h, METRICS_L("dkim"), 0.01);	/* le is inclusive */
	metrics_observe(m, h, METRICS_L("dkim"), 0.5);
	metrics_observe(m, h, METRICS_L("dkim"), 4);
	char *t = metrics_render(m, NULL);
	const char *want = "# HELP sluice_eod_seconds End of data.\n"
			   "# TYPE sluice_eod_seconds histogram\n"
			   "sluice_eod_seconds_bucket{filter=\"dkim\",le=\"0.01\"} 2\n"
			   "sluice_eod_seconds_bucket{filter=\"dkim\",le=\"0.1\"} 2\n"
			   "sluice_eod_seconds_bucket{filter=\"dkim\",le=\"1\"} 3\n"
			   "sluice_eod_seconds_bucket{filter=\"dkim\",le=\"+Inf\"} 4\n"
			   "sluice_eod_seconds_sum{filter=\"dkim\"} 4.515\n"
			   "sluice_eod_seconds_count{filter=\"dkim\"} 4\n";
	assert_memory_equal(t, want, strlen(want));
	free(t);
	assert_true(metrics_get(m, h, METRICS_L("dkim")) == 4);
	/* no labels, default buckets */
	int h2 = metrics_family(m, "sluice_t_seconds", METRICS_HISTOGRAM, "T.", NULL, NULL, 0);
	metrics_observe(m, h2, NULL, 0.2);
	t = metrics_render(m, NULL);
	assert_non_null(strstr(t, "sluice_t_seconds_bucket{le=\"0.25\"} 1\n"));
	assert_non_null(strstr(t, "sluice_t_seconds_bucket{le=\"0.1\"} 0\n"));
	assert_non_null(strstr(t, "sluice_t_seconds_sum 0.2\nsluice_t_seconds_count 1\n"));
	free(t);
	metrics_free(&m);
}

static void test_label_values_escaped_and_cut(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(0, 0);
	int f = metrics_family(m, "sluice_x_total", METRICS_COUNTER, "Back\\slash help.", "reason", NULL, 0);
	metrics_add(m, f, METRICS_L("a\"b\\c\nd\xc3\xa9"), 1);
	metrics_touch(m, f, METRICS_L(NULL));
	char longv[200];
	memset(longv, 'v', sizeof longv - 1);
	longv[sizeof longv - 1] = 0;
	metrics_add(m, f, METRICS_L(longv), 1);
	metrics_add(m, f, METRICS_L(longv), 1);	/* the same (cut) series */
	char *t = metrics_render(m, NULL);
	assert_non_null(strstr(t, "# HELP sluice_x_total Back\\\\slash help.\n"));
	assert_non_null(strstr(t, "sluice_x_total{reason=\"a\\\"b\\\\c?d??\"} 1\n"));
	assert_non_null(strstr(t, "sluice_x_total{reason=\"\"} 0\n"));
	char want[128];
	snprintf(want, sizeof want, "sluice_x_total{reason=\"%.*s\"} 2\n", METRICS_VALUE_MAX, longv);
	assert_non_null(strstr(t, want));
	free(t);
	metrics_free(&m);
}

static void test_series_cap(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(3, 0);
	int f = metrics_family(m, "sluice_y_total", METRICS_COUNTER, "Y.", "reason", NULL, 0);
	char v[16];
	for (int i = 0; i < 5; i++) {
		snprintf(v, sizeof v, "r%d", i);
		metrics_add(m, f, METRICS_L(v), 1);
	}
	metrics_add(m, f, METRICS_L("r0"), 1);	/* existing series still move */
	assert_true(metrics_get(m, f, METRICS_L("r0")) == 2);
	assert_true(metrics_get(m, f, METRICS_L("r4")) == 0);
	char *t = metrics_render(m, NULL);
	assert_non_null(strstr(t, "sluice_metrics_dropped_updates_total 2\n"));
	assert_null(strstr(t, "r3"));
	free(t);
	metrics_add(NULL, f, METRICS_L("r0"), 1);	/* metrics off */
	assert_true(metrics_get(NULL, f, NULL) == 0);
	metrics_free(&m);
}

static void test_updates_from_a_forked_child(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(0, 0);
	int f = metrics_family(m, "sluice_messages_total", METRICS_COUNTER, "M.", "result", NULL, 0);
	metrics_add(m, f, METRICS_L("received"), 1);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		metrics_add(m, f, METRICS_L("received"), 1);
		metrics_add(m, f, METRICS_L("delivered"), 5);	/* a series the parent never made */
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(metrics_get(m, f, METRICS_L("received")) == 2);
	assert_true(metrics_get(m, f, METRICS_L("delivered")) == 5);
	metrics_free(&m);
}

struct thr {
	struct metrics *m;
	int c, h;
	int id;
};

static void *hammer(void *arg)
{
	struct thr *t = arg;
	char v[16];
	for (int i = 0; i < 20000; i++) {
		snprintf(v, sizeof v, "k%d", i % 7);
		metrics_add(t->m, t->c, METRICS_L(v), 1);
		metrics_observe(t->m, t->h, NULL, 0.5);
	}
	return NULL;
}

static void test_updates_from_threads_are_exact(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(0, 0);
	struct thr t[4];
	pthread_t th[4];
	int c = metrics_family(m, "sluice_z_total", METRICS_COUNTER, "Z.", "k", NULL, 0);
	int h = metrics_family(m, "sluice_z_seconds", METRICS_HISTOGRAM, "Z.", NULL, NULL, 0);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){ m, c, h, i };
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	double total = 0;
	char v[16];
	for (int k = 0; k < 7; k++) {
		snprintf(v, sizeof v, "k%d", k);
		total += metrics_get(m, c, METRICS_L(v));
	}
	assert_true(total == 80000);
	assert_true(metrics_get(m, h, NULL) == 80000);
	char *txt = metrics_render(m, NULL);
	assert_non_null(strstr(txt, "sluice_z_seconds_sum 40000\n"));
	free(txt);
	metrics_free(&m);
}

/* http_get - one request on 127.0.0.1:port; the whole response (caller frees) */
static char *http_get(int port, const char *method, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	char *req = xasprintf("%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
	assert_int_equal(write_full(fd, req, strlen(req)), 0);
	free(req);
	struct sbuf b;
	sbuf_init(&b);
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		sbuf_add(&b, buf, (size_t)n);
	close(fd);
	return sbuf_steal(&b);
}

static int bound_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

static void test_http_on_its_own_thread(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(0, 1);
	int f = metrics_family(m, "sluice_messages_total", METRICS_COUNTER, "M.", NULL, NULL, 0);
	metrics_add(m, f, NULL, 4);
	char *err = NULL;
	int fd;
	assert_int_equal(metrics_listen("unix:/tmp/x", &fd, &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(metrics_listen("127.0.0.1:0", &fd, &err), 0);
	int port = bound_port(fd);
	struct metrics_http *h = metrics_http_start(m, NULL, fd, &err);
	assert_non_null(h);
	char *r = http_get(port, "GET", "/metrics");
	assert_non_null(strstr(r, "HTTP/1.0 200") ? r : strstr(r, "HTTP/1.1 200"));
	assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	assert_non_null(strstr(r, "\r\n\r\n# HELP sluice_messages_total M.\n"));
	assert_non_null(strstr(r, "\nsluice_messages_total 4\n"));
	assert_non_null(strstr(r, "\nprocess_open_fds "));
	assert_non_null(strstr(r, "\nprocess_resident_memory_bytes "));
	assert_non_null(strstr(r, "\nprocess_start_time_seconds "));
	free(r);
	r = http_get(port, "GET", "/");
	assert_non_null(strstr(r, " 404 "));
	free(r);
	r = http_get(port, "POST", "/metrics");
	assert_non_null(strstr(r, " 501 "));	/* libevent: a method not allowed */
	free(r);
	metrics_http_stop(&h);
	assert_null(h);
	metrics_http_stop(&h);
	metrics_free(&m);
}

struct client_arg {
	int port;
	char *resp;
	struct event_base *base;
	_Atomic int done;
};

static void *client_thread(void *arg)
{
	struct client_arg *c = arg;
	c->resp = http_get(c->port, "GET", "/metrics?x=1");
	c->done = 1;
	return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct client_arg *c = arg;
	(void)fd, (void)what;
	if (c->done)
		event_base_loopbreak(c->base);
}

static void test_http_on_a_callers_event_base(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(0, 0);
	int f = metrics_family(m, "sluice_requests_total", METRICS_COUNTER, "R.", "result", NULL, 0);
	metrics_add(m, f, METRICS_L("pass"), 1);
	char *err = NULL;
	int fd;
	assert_int_equal(metrics_listen("[::1]:0", &fd, &err) == 0 ? 0 : metrics_listen("127.0.0.1:0", &fd, &err),
			 0);
	struct event_base *base = event_base_new();
	struct metrics_http *h = metrics_http_start(m, base, fd, &err);
	assert_non_null(h);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET6) {
		/* the client below speaks IPv4: serve a second socket for it */
		metrics_http_stop(&h);
		assert_int_equal(metrics_listen("127.0.0.1:0", &fd, &err), 0);
		h = metrics_http_start(m, base, fd, &err);
		assert_non_null(h);
	}
	struct client_arg c = { bound_port(fd), NULL, base, 0 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, client_thread, &c), 0);
	struct event *tick = event_new(base, -1, EV_PERSIST, on_done, &c);
	struct timeval tv = { 0, 10000 };
	event_add(tick, &tv);
	event_base_dispatch(base);
	pthread_join(th, NULL);
	assert_non_null(strstr(c.resp, "sluice_requests_total{result=\"pass\"} 1\n"));
	assert_null(strstr(c.resp, "process_"));
	free(c.resp);
	event_free(tick);
	metrics_http_stop(&h);
	event_base_free(base);
	metrics_free(&m);
}

static void count_render(struct metrics *m, void *arg)
{
	int *calls = arg;
	metrics_set(m, 1, METRICS_L("active"), ++*calls);
}

static void test_filter_families_and_render_hook(void **state)
{
	(void)state;
	struct metrics *m = metrics_new(0, 0);
	metrics_filter_decision("pass", "accept", 0.01);	/* before init: nothing, no crash */
	metrics_filter_init(m, "dkim", "messages");
	metrics_filter_decision("pass", "accept", 0.002);
	metrics_filter_decision("pass", "accept", -1);	/* no time */
	metrics_filter_decision("fail", "reject", -1);
	metrics_filter_duration(0.3);
	metrics_filter_dns_query();
	metrics_filter_dns_query();
	metrics_filter_dns_timeout();
	metrics_filter_error("internal");
	char *t = metrics_render(m, NULL);
	assert_non_null(strstr(t, "# TYPE sluice_filter_messages_total counter\n"));
	assert_non_null(strstr(t, "sluice_filter_messages_total{filter=\"dkim\",result=\"pass\",action=\"accept\"} 2\n"));
	assert_non_null(strstr(t, "sluice_filter_messages_total{filter=\"dkim\",result=\"fail\",action=\"reject\"} 1\n"));
	assert_non_null(strstr(t, "sluice_filter_duration_seconds_count{filter=\"dkim\"} 2\n"));
	assert_non_null(strstr(t, "sluice_filter_duration_seconds_bucket{filter=\"dkim\",le=\"0.0025\"} 1\n"));
	assert_non_null(strstr(t, "sluice_dns_queries_total{filter=\"dkim\"} 2\n"));
	assert_non_null(strstr(t, "sluice_dns_timeouts_total{filter=\"dkim\"} 1\n"));
	assert_non_null(strstr(t, "sluice_filter_errors_total{filter=\"dkim\",reason=\"internal\"} 1\n"));
	free(t);
	metrics_filter.m = NULL;
	metrics_free(&m);

	m = metrics_new(0, 0);
	int calls = 0;
	assert_int_equal(metrics_family(m, "sluice_a_total", METRICS_COUNTER, "A.", NULL, NULL, 0), 0);
	assert_int_equal(metrics_family(m, "sluice_queue_messages", METRICS_GAUGE, "Q.", "queue", NULL, 0), 1);
	metrics_on_render(m, count_render, &calls);
	free(metrics_render(m, NULL));
	t = metrics_render(m, NULL);
	assert_int_equal(calls, 2);
	assert_non_null(strstr(t, "sluice_queue_messages{queue=\"active\"} 2\n"));
	free(t);
	metrics_free(&m);
}

/* --- metrics_merge --- */

static char *merge3(const char *a, const char *b, const char *c)
{
	struct metrics_source src[] = {
		{ "sluiced", a, a ? strlen(a) : 0 },
		{ "sluice-dkim", b, b ? strlen(b) : 0 },
		{ NULL, c, c ? strlen(c) : 0 },
	};
	size_t len;
	char *t = metrics_merge("daemon", src, 3, &len);
	assert_int_equal(len, strlen(t));
	return t;
}

/* the family a sample line (name len bytes) belongs to after a HELP/TYPE of cur */
static int belongs(const char *name, size_t len, const char *cur, const char *type)
{
	size_t cl = strlen(cur);
	if (len < cl || memcmp(name, cur, cl))
		return 0;
	const char *rest = name + cl;
	size_t rl = len - cl;
	if (!strcmp(type, "histogram"))
		return (rl == 7 && !memcmp(rest, "_bucket", 7)) || (rl == 4 && !memcmp(rest, "_sum", 4)) ||
		       (rl == 6 && !memcmp(rest, "_count", 6));
	if (!strcmp(type, "summary"))
		return rl == 0 || (rl == 4 && !memcmp(rest, "_sum", 4)) || (rl == 6 && !memcmp(rest, "_count", 6));
	return rl == 0;
}

/*
 * check_exposition - a re-parse of the text format as Prometheus reads it:
 * every line a HELP, TYPE or sample line; HELP and TYPE once per family,
 * before its samples; a family's samples together (none after another
 * family began); a merge of the text (no label added) gives it back.
 */
static void check_exposition(const char *text)
{
	char fam[256][128], type[256][16];
	int nfam = 0, cur = -1;
	const char *p = text;
	while (*p) {
		const char *e = strchr(p, '\n');
		assert_non_null(e);
		char line[4096];
		assert_true((size_t)(e - p) < sizeof line);
		memcpy(line, p, (size_t)(e - p));
		line[e - p] = 0;
		p = e + 1;
		char name[128], word[16];
		if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
			assert_int_equal(sscanf(line + 7, "%127[a-zA-Z0-9_:]", name), 1);
			int f = -1;
			for (int i = 0; i < nfam; i++)
				if (!strcmp(fam[i], name))
					f = i;
			if (f < 0) {
				assert_true(nfam < 256);
				f = nfam++;
				strcpy(fam[f], name);
				strcpy(type[f], "untyped");
			} else {
				assert_int_equal(f, cur);	/* HELP and TYPE of one family together */
			}
			if (line[2] == 'T') {
				assert_int_equal(sscanf(line + 7 + strlen(name), " %15s", word), 1);
				assert_true(!strcmp(word, "counter") || !strcmp(word, "gauge") || !strcmp(word, "histogram") ||
					    !strcmp(word, "summary") || !strcmp(word, "untyped"));
				strcpy(type[f], word);
			}
			cur = f;
			continue;
		}
		assert_true(line[0] != '#' && line[0]);
		size_t nl = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
		assert_true(nl > 0 && nl < sizeof name);
		if (cur >= 0 && belongs(line, nl, fam[cur], type[cur]))
			continue;
		memcpy(name, line, nl);
		name[nl] = 0;
		for (int i = 0; i < nfam; i++)
			assert_true(strcmp(fam[i], name) || i == cur);	/* no family in two places */
		assert_true(nfam < 256);
		cur = nfam++;
		strcpy(fam[cur], name);
		strcpy(type[cur], "untyped");
	}
	struct metrics_source src = { NULL, text, strlen(text) };
	char *again = metrics_merge("daemon", &src, 1, NULL);
	assert_string_equal(again, text);
	free(again);
}

static void test_merge_labels_and_families(void **state)
{
	(void)state;
	const char *mta = "# HELP sluice_messages_received_total Messages accepted.\n"
			  "# TYPE sluice_messages_received_total counter\n"
			  "sluice_messages_received_total 3\n"
			  "# HELP sluice_end_of_data_seconds Time.\n"
			  "# TYPE sluice_end_of_data_seconds histogram\n"
			  "sluice_end_of_data_seconds_bucket{le=\"0.5\"} 1\n"
			  "sluice_end_of_data_seconds_bucket{le=\"+Inf\"} 2\n"
			  "sluice_end_of_data_seconds_sum 1.25\n"
			  "sluice_end_of_data_seconds_count 2\n"
			  "# HELP process_open_fds Open fds.\n"
			  "# TYPE process_open_fds gauge\n"
			  "process_open_fds 12\n";
	const char *dkim = "# HELP sluice_filter_duration_seconds Filter time.\n"
			   "# TYPE sluice_filter_duration_seconds histogram\n"
			   "sluice_filter_duration_seconds_bucket{filter=\"dkim\",le=\"1\"} 4\n"
			   "sluice_filter_duration_seconds_bucket{filter=\"dkim\",le=\"+Inf\"} 4\n"
			   "sluice_filter_duration_seconds_sum{filter=\"dkim\"} 0.5\n"
			   "sluice_filter_duration_seconds_count{filter=\"dkim\"} 4\n"
			   "# HELP process_open_fds Open fds (dkim's words).\n"
			   "# TYPE process_open_fds gauge\n"
			   "process_open_fds 7\n"
			   "# HELP sluice_rejects_total Rejects \\\\ \\n escaped.\n"
			   "# TYPE sluice_rejects_total counter\n"
			   "sluice_rejects_total{stage=\"RCPT\",reason=\"a \\\"b\\\" \\\\ \\n\"} 1e3 1700000000000\n";
	const char *own = "# HELP sluice_up Scraped fine.\n"
			  "# TYPE sluice_up gauge\n"
			  "sluice_up{daemon=\"sluiced\"} 1\n"
			  "sluice_up{daemon=\"sluice-dkim\"} 0\n"
			  "# TYPE process_open_fds gauge\n"
			  "process_open_fds{daemon=\"sluice\"} 5\n";
	char *t = merge3(mta, dkim, own);
	assert_string_equal(t, "# HELP sluice_messages_received_total Messages accepted.\n"
			       "# TYPE sluice_messages_received_total counter\n"
			       "sluice_messages_received_total{daemon=\"sluiced\"} 3\n"
			       "# HELP sluice_end_of_data_seconds Time.\n"
			       "# TYPE sluice_end_of_data_seconds histogram\n"
			       "sluice_end_of_data_seconds_bucket{daemon=\"sluiced\",le=\"0.5\"} 1\n"
			       "sluice_end_of_data_seconds_bucket{daemon=\"sluiced\",le=\"+Inf\"} 2\n"
			       "sluice_end_of_data_seconds_sum{daemon=\"sluiced\"} 1.25\n"
			       "sluice_end_of_data_seconds_count{daemon=\"sluiced\"} 2\n"
			       "# HELP process_open_fds Open fds.\n"
			       "# TYPE process_open_fds gauge\n"
			       "process_open_fds{daemon=\"sluiced\"} 12\n"
			       "process_open_fds{daemon=\"sluice-dkim\"} 7\n"
			       "process_open_fds{daemon=\"sluice\"} 5\n"
			       "# HELP sluice_filter_duration_seconds Filter time.\n"
			       "# TYPE sluice_filter_duration_seconds histogram\n"
			       "sluice_filter_duration_seconds_bucket{daemon=\"sluice-dkim\",filter=\"dkim\",le=\"1\"} 4\n"
			       "sluice_filter_duration_seconds_bucket{daemon=\"sluice-dkim\",filter=\"dkim\",le=\"+Inf\"} 4\n"
			       "sluice_filter_duration_seconds_sum{daemon=\"sluice-dkim\",filter=\"dkim\"} 0.5\n"
			       "sluice_filter_duration_seconds_count{daemon=\"sluice-dkim\",filter=\"dkim\"} 4\n"
			       "# HELP sluice_rejects_total Rejects \\\\ \\n escaped.\n"
			       "# TYPE sluice_rejects_total counter\n"
			       "sluice_rejects_total{daemon=\"sluice-dkim\",stage=\"RCPT\",reason=\"a \\\"b\\\" \\\\ \\n\"} 1e3 "
			       "1700000000000\n"
			       "# HELP sluice_up Scraped fine.\n"
			       "# TYPE sluice_up gauge\n"
			       "sluice_up{daemon=\"sluiced\"} 1\n"
			       "sluice_up{daemon=\"sluice-dkim\"} 0\n");
	check_exposition(t);
	free(t);

	/* the label value is escaped like any other; empty and missing texts are fine */
	struct metrics_source odd[] = { { "a\"b\\c\nd", "x_total 1\n", 10 }, { "e", NULL, 0 }, { "f", "", 0 } };
	t = metrics_merge("daemon", odd, 3, NULL);
	assert_string_equal(t, "x_total{daemon=\"a\\\"b\\\\c?d\"} 1\n");
	free(t);
	t = metrics_merge("daemon", odd, 0, NULL);
	assert_string_equal(t, "");
	free(t);
}

static void test_merge_drops_garbage(void **state)
{
	(void)state;
	/* a line the format does not allow, or one that would spoil the output, goes; the rest stays */
	const char *bad = "# HELP good_total Good.\n"
			  "# TYPE good_total counter\n"
			  "good_total 1\n"
			  "garbage\n"
			  "good_total\n"
			  "good_total{} 2\n"			/* fine: no labels */
			  "good_total{a=\"b\",} 3\n"		/* fine: trailing comma */
			  "good_total{a=b} 4\n"
			  "good_total{a=\"b\" 4\n"
			  "good_total{a=\"b\",a=\"c\"} 4\n"
			  "good_total{daemon=\"x\"} 4\n"	/* would have the label twice */
			  "good_total{__name__=\"x\"} 4\n"
			  "good_total{a=\"\\q\"} 4\n"		/* bad escape */
			  "good_total{1a=\"x\"} 4\n"
			  "good_total 0x10\n"
			  "good_total 1 2 3\n"
			  "good_total 1 abc\n"
			  "good_total one\n"
			  "good_total 1\xc3\xa9\n"		/* not ASCII */
			  "good_total 1\r\n"
			  "good_total\t1\n"
			  "good_total NaN\n"			/* fine */
			  "# HELP bad_help Bad \\t escape.\n"	/* HELP dropped, samples stay */
			  "# TYPE bad_help gauge\n"
			  "bad_help -Inf\n"
			  "# TYPE bad_type countr\n"
			  "bad_type 1\n"			/* kept, untyped */
			  "# TYPE h histogram\n"
			  "h_bucket{le=\"1\"} 1\n"
			  "h_bucket 1\n"			/* no le */
			  "h_bucket{le=\"x\"} 1\n"
			  "h_sum{le=\"1\"} 1\n"
			  "h 1\n"				/* a histogram has no sample of its own name */
			  "h_sum 2\n"
			  "h_count 1\n"
			  "# comment\n"
			  "#\n"
			  "\n"
			  "   \n";
	const char *other = "# TYPE good_total gauge\n"		/* clashes with the first declaration */
			    "good_total 9\n"
			    "# TYPE h_sum counter\n"		/* would join h */
			    "h_sum 9\n"
			    "# TYPE bad_help gauge\n"
			    "bad_help 5\n";
	char *t = merge3(bad, other, NULL);
	assert_string_equal(t, "# HELP good_total Good.\n"
			       "# TYPE good_total counter\n"
			       "good_total{daemon=\"sluiced\"} 1\n"
			       "good_total{daemon=\"sluiced\"} 2\n"
			       "good_total{daemon=\"sluiced\",a=\"b\"} 3\n"
			       "good_total{daemon=\"sluiced\"} NaN\n"
			       "# TYPE bad_help gauge\n"
			       "bad_help{daemon=\"sluiced\"} -Inf\n"
			       "bad_help{daemon=\"sluice-dkim\"} 5\n"
			       "bad_type{daemon=\"sluiced\"} 1\n"
			       "# TYPE h histogram\n"
			       "h_bucket{daemon=\"sluiced\",le=\"1\"} 1\n"
			       "h_sum{daemon=\"sluiced\"} 2\n"
			       "h_count{daemon=\"sluiced\"} 1\n");
	check_exposition(t);
	free(t);
}

static void test_merge_of_real_registries(void **state)
{
	(void)state;
	/* two daemons' renderings (same families, process metrics) and a supervisor's own */
	struct metrics *a = metrics_new(0, 1), *b = metrics_new(0, 1);
	metrics_filter_init(a, "dkim", "messages");
	metrics_filter.m = NULL;
	metrics_filter_init(b, "spf", "requests");
	metrics_filter.m = NULL;
	int rej = metrics_family(a, "sluice_rejects_total", METRICS_COUNTER, "R.", "stage", NULL, 0);
	metrics_add(a, rej, METRICS_L("RCPT"), 2);
	metrics_observe(a, 1, METRICS_L("dkim"), 0.003);
	char *ta = metrics_render(a, NULL), *tb = metrics_render(b, NULL);
	struct metrics_source src[] = { { "sluice-dkim", ta, strlen(ta) }, { "sluice-spf", tb, strlen(tb) } };
	char *t = metrics_merge("daemon", src, 2, NULL);
	check_exposition(t);
	assert_non_null(strstr(t, "process_open_fds{daemon=\"sluice-dkim\"} "));
	assert_non_null(strstr(t, "process_open_fds{daemon=\"sluice-spf\"} "));
	assert_non_null(strstr(t, "sluice_metrics_dropped_updates_total{daemon=\"sluice-dkim\"} 0\n"
				  "sluice_metrics_dropped_updates_total{daemon=\"sluice-spf\"} 0\n"));
	assert_non_null(strstr(t, "sluice_filter_duration_seconds_bucket{daemon=\"sluice-dkim\",filter=\"dkim\","
				  "le=\"0.005\"} 1\n"));
	assert_non_null(strstr(t, "sluice_dns_queries_total{daemon=\"sluice-dkim\",filter=\"dkim\"} 0\n"
				  "sluice_dns_queries_total{daemon=\"sluice-spf\",filter=\"spf\"} 0\n"));
	assert_non_null(strstr(t, "sluice_rejects_total{daemon=\"sluice-dkim\",stage=\"RCPT\"} 2\n"));
	/* every sample of the inputs is there, once */
	size_t lines = 0, samples = 0;
	for (const char *p = t; *p; p++)
		lines += *p == '\n';
	for (const char *in[] = { ta, tb }, **q = in; q < in + 2; q++)
		for (const char *p = *q; *p; p = strchr(p, '\n') + 1)
			samples += *p != '#';
	size_t headers = 0;
	for (const char *p = t; *p; p = strchr(p, '\n') + 1)
		headers += *p == '#';
	assert_int_equal(lines - headers, samples);
	free(t);
	free(ta);
	free(tb);
	metrics_free(&a);
	metrics_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge_text),
		cmocka_unit_test(test_histogram_text),
		cmocka_unit_test(test_label_values_escaped_and_cut),
		cmocka_unit_test(test_series_cap),
		cmocka_unit_test(test_updates_from_a_forked_child),
		cmocka_unit_test(test_updates_from_threads_are_exact),
		cmocka_unit_test(test_http_on_its_own_thread),
		cmocka_unit_test(test_http_on_a_callers_event_base),
		cmocka_unit_test(test_filter_families_and_render_hook),
		cmocka_unit_test(test_merge_labels_and_families),
		cmocka_unit_test(test_merge_drops_garbage),
		cmocka_unit_test(test_merge_of_real_registries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
