/*
 * test_ratelimit_server: lib/policy_server and rl_server in one libevent
 * loop over socketpairs, no network: replies in order for pipelined
 * requests with handlers that answer at once or later, one request in
 * flight per connection, the cancel callback when a client leaves early,
 * malformed input and a partial request at end of input, the graceful
 * stop with a request in flight, and sluice-ratelimit's request path with
 * the memory-only store (SIGHUP-style reload keeps counters).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "conf/params.h"
#include "lib/log.h"
#include "lib/policy_server.h"
#include "lib/util.h"
#include "policyd/ratelimit/rl_cfg.h"
#include "policyd/ratelimit/rl_server.h"
#include "policyd/ratelimit/rl_store.h"

struct ctx {
	struct event_base *base;
	int async;		/* answer from a timer */
	int in_flight, max_in_flight, handled, cancelled;
	struct policy_server_req *pending;
	char last[64];
};

static void answer(struct ctx *x)
{
	struct policy_server_req *r = x->pending;
	x->pending = NULL;
	x->in_flight--;
	policy_server_reply(r, x->last);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	answer(arg);
}

static void on_cancel(void *arg)
{
	struct ctx *x = arg;
	x->cancelled++;
	x->in_flight--;
	x->pending = NULL;
}

static void handler(void *arg, struct policy_server_req *r, const struct policy_msg *m)
{
	struct ctx *x = arg;
	const char *id = policy_msg_get(m, "id");

	x->handled++;
	x->in_flight++;
	if (x->in_flight > x->max_in_flight)
		x->max_in_flight = x->in_flight;
	snprintf(x->last, sizeof x->last, "DUNNO id %s", id ? id : "-");
	x->pending = r;
	if (!strcmp(id ? id : "", "hold")) {
		policy_server_req_on_cancel(r, on_cancel, x);
		return;	/* never answered: the client leaves */
	}
	if (x->async) {
		struct timeval tv = { 0, 1000 };
		event_base_once(x->base, -1, EV_TIMEOUT, on_timer, x, &tv);
	} else {
		answer(x);
	}
}

/* run the loop until the fd has n replies or closes; returns what came */
static char *collect(struct event_base *base, int fd, int n, int *closed_out)
{
	struct sbuf b;
	int count = 0;

	sbuf_init(&b);
	*closed_out = 0;
	for (int spins = 0; spins < 2000 && count < n; spins++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		char buf[4096];
		ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (got == 0) {
			*closed_out = 1;
			break;
		}
		if (got > 0) {
			sbuf_add(&b, buf, (size_t)got);
			count = 0;
			for (const char *p = b.buf; (p = strstr(p, "\n\n")); p += 2)
				count++;
		} else {
			usleep(500);
		}
	}
	return sbuf_steal(&b);
}

static const char three[] = "id=1\n\nid=2\nx=y\n\nid=3\n\n";

static void run_pipelined(int async)
{
	struct ctx x = { .base = event_base_new(), .async = async };
	struct policy_server *s = policy_server_new(x.base, "test", handler, &x);
	int sv[2], closed;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	policy_server_add_fd(s, sv[0]);
	assert_int_equal(write(sv[1], three, strlen(three)), (ssize_t)strlen(three));
	char *out = collect(x.base, sv[1], 3, &closed);
	assert_string_equal(out, "action=DUNNO id 1\n\naction=DUNNO id 2\n\naction=DUNNO id 3\n\n");
	assert_int_equal(x.max_in_flight, 1);
	free(out);
	/* byte by byte */
	for (const char *p = "id=4\n\n"; *p; p++) {
		assert_int_equal(write(sv[1], p, 1), 1);
		event_base_loop(x.base, EVLOOP_NONBLOCK);
	}
	out = collect(x.base, sv[1], 1, &closed);
	assert_string_equal(out, "action=DUNNO id 4\n\n");
	free(out);
	assert_int_equal(policy_server_stats(s)->requests, 4);
	close(sv[1]);
	event_base_loop(x.base, EVLOOP_NONBLOCK);
	policy_server_free(&s);
	event_base_free(x.base);
}

static void test_pipelined_sync(void **state)
{
	(void)state;
	run_pipelined(0);
}

static void test_pipelined_async(void **state)
{
	(void)state;
	run_pipelined(1);
}

static void test_cancel_malformed_partial(void **state)
{
	(void)state;
	struct ctx x = { .base = event_base_new(), .async = 1 };
	struct policy_server *s = policy_server_new(x.base, "test", handler, &x);
	int a[2], b[2], c[2], closed;

	/* a client leaves with its request unanswered: the request waits for its
	 * answer (end of input may be a half-close); freeing the server cancels it */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	policy_server_add_fd(s, a[0]);
	assert_int_equal(write(a[1], "id=hold\n\n", 9), 9);
	for (int i = 0; i < 20; i++)
		event_base_loop(x.base, EVLOOP_NONBLOCK);
	assert_int_equal(x.handled, 1);
	close(a[1]);
	for (int i = 0; i < 20; i++)
		event_base_loop(x.base, EVLOOP_NONBLOCK);
	assert_int_equal(x.cancelled, 0);
	/* malformed: closed without a reply */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	policy_server_add_fd(s, b[0]);
	assert_int_equal(write(b[1], "no equals\n\n", 11), 11);
	char *out = collect(x.base, b[1], 1, &closed);
	assert_true(closed);
	assert_string_equal(out, "");
	free(out);
	close(b[1]);
	/* a request then a partial one at end of input: one reply, then closed */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
	policy_server_add_fd(s, c[0]);
	assert_int_equal(write(c[1], "id=5\n\nid=6\n", 11), 11);
	shutdown(c[1], SHUT_WR);
	out = collect(x.base, c[1], 2, &closed);
	assert_string_equal(out, "action=DUNNO id 5\n\n");
	assert_true(closed);
	free(out);
	close(c[1]);
	assert_int_equal(policy_server_stats(s)->malformed, 2);
	policy_server_free(&s);
	assert_int_equal(x.cancelled, 1);
	event_base_free(x.base);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	policy_server_stop(arg, 5000);
}

static void test_stop_answers_in_flight(void **state)
{
	(void)state;
	struct ctx x = { .base = event_base_new(), .async = 1 };
	struct policy_server *s = policy_server_new(x.base, "test", handler, &x);
	int a[2], idle[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, idle), 0);
	policy_server_add_fd(s, a[0]);
	policy_server_add_fd(s, idle[0]);
	assert_int_equal(write(a[1], "id=7\n\n", 6), 6);
	for (int i = 0; i < 50 && !x.handled; i++)
		event_base_loop(x.base, EVLOOP_NONBLOCK);
	assert_int_equal(x.handled, 1);
	/* stop before the timer answers: the reply still goes out, then the loop ends */
	event_base_once(x.base, -1, EV_TIMEOUT, stop_cb, s, NULL);
	event_base_dispatch(x.base);
	char buf[64] = { 0 };
	assert_true(read(a[1], buf, sizeof buf - 1) > 0);
	assert_string_equal(buf, "action=DUNNO id 7\n\n");
	assert_int_equal(read(idle[1], buf, sizeof buf), 0);	/* the idle one was closed */
	close(a[1]);
	close(idle[1]);
	policy_server_free(&s);
	event_base_free(x.base);
}

/* ------------------------------------------------------------ rl_server */

static char tmpdir[] = "/tmp/test_rl_server.XXXXXX";

static struct rl_cfg cfg_from(const char *rules)
{
	char *rpath = xasprintf("%s/rules", tmpdir);
	FILE *f = fopen(rpath, "w");
	assert_non_null(f);
	fputs(rules, f);
	fclose(f);
	char *text = xasprintf("ratelimit_rules = %s\nratelimit_state_file =\n", rpath);
	char *err = NULL;
	struct conf *c = conf_load_string(text, "t.conf", params_all, NULL, &err);
	struct rl_cfg cfg;
	assert_non_null(c);
	if (rl_cfg_load(c, &cfg, &err) < 0)
		fail_msg("%s", err);
	conf_free(&c);
	free(text);
	free(rpath);
	return cfg;
}

static void test_rl_server_reload_keeps_counters(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	char *err = NULL;
	int sv[2], closed;

	assert_non_null(mkdtemp(tmpdir));
	struct rl_cfg cfg = cfg_from("id=L; action=rate(sender/2/3600/DEFER slow)\n");
	struct rl_store *st = rl_store_embedded_new("", 16 << 20, 1000, &err);
	assert_non_null(st);
	struct rl_server *srv = rl_server_new(base, &cfg, st);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	policy_server_add_fd(rl_server_policy(srv), sv[0]);
	const char *req = "sender=a@b.c\nqueue_id=Q1\n\n";
	assert_int_equal(write(sv[1], req, strlen(req)), (ssize_t)strlen(req));
	char *out = collect(base, sv[1], 1, &closed);
	assert_string_equal(out, "action=DUNNO\n\n");
	free(out);
	/* a reload with another rule order keeps the counter (same limit, same key) */
	struct rl_cfg cfg2 = cfg_from("id=X; sender==x@y.z; action=REJECT x\n"
				      "id=L2; action=rate(sender/2/3600/DEFER slower)\n");
	char *warn = NULL;
	rl_server_reload(srv, &cfg2, &warn);
	assert_null(warn);
	assert_int_equal(write(sv[1], req, strlen(req)), (ssize_t)strlen(req));
	assert_int_equal(write(sv[1], req, strlen(req)), (ssize_t)strlen(req));
	out = collect(base, sv[1], 2, &closed);
	assert_non_null(strstr(out, "action=DUNNO\n\naction=DEFER slower (limit L2: 2 messages"));
	free(out);
	close(sv[1]);
	event_base_loop(base, EVLOOP_NONBLOCK);
	rl_server_free(&srv);
	event_base_free(base);
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipelined_sync),
		cmocka_unit_test(test_pipelined_async),
		cmocka_unit_test(test_cancel_malformed_partial),
		cmocka_unit_test(test_stop_answers_in_flight),
		cmocka_unit_test(test_rl_server_reload_keeps_counters),
	};
	log_set_stderr_only("test_ratelimit_server");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
