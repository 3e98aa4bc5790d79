/*
 * test_metrics: lib/metrics. The text format of counters, gauges and
 * histograms (golden text), label value escaping and cutting, series made
 * on first use and found again, the cap on series, updates from a forked
 * child and from several threads at once (exact totals), and the HTTP
 * endpoint on its own thread and on a caller's event base (200 for
 * /metrics with the Prometheus content type, 404 elsewhere, 501 for POST),
 * the families every filter shares (metrics_filter) and the render hook.
 */
#include "lib/metrics.h"
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
