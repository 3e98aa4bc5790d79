/*
 * test_ratelimit: sluice-ratelimit's logic without sockets, with an
 * injected clock (no sleeps): GCRA and fixed-window arithmetic at window
 * edges, postgrey's triplet and auto-allow rules, derived attributes and
 * key building, the counting semantics (messages once per instance,
 * recipients per RCPT, bytes at END-OF-MESSAGE), all-or-nothing plans,
 * replies and dry run, the embedded LMDB store (restart keeps counters),
 * postgrey allow lists, and the GeoIP attributes client_country and
 * client_asn (MaxMind's test databases in tests/data/geoip, cwd = repo root).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "conf/params.h"
#include "lib/geoip.h"
#include "lib/util.h"
#include "policyd/ratelimit/rl_allow.h"
#include "policyd/ratelimit/rl_cfg.h"
#include "policyd/ratelimit/rl_engine.h"
#include "policyd/ratelimit/rl_limit.h"
#include "policyd/ratelimit/rl_req.h"
#include "policyd/ratelimit/rl_store.h"

#define T0 1700000000000LL	/* an arbitrary wall-clock ms */

static char tmpdir[64];

static char *write_tmp(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_ratelimit.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	int rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ arithmetic */

/* take - one request against a cell, committing when it conforms. */
static int take(enum rl_algo algo, long long max, long long window_ms, long long cost,
		long long now, struct rl_cell *cell, long long *retry_out)
{
	struct rl_cell out;
	struct rl_limit_res r;

	rl_limit_take(algo, max, window_ms, cost, now, cell, &out, &r);
	if (!r.over)
		*cell = out;
	if (retry_out)
		*retry_out = r.retry_ms;
	return !r.over;
}

static void test_gcra_edges(void **state)
{
	(void)state;
	struct rl_cell c = { 0 };
	long long retry;

	/* 3 per 3600 s: three at once, the fourth waits one interval (1200 s) */
	for (int i = 0; i < 3; i++)
		assert_true(take(RL_ALGO_GCRA, 3, 3600000, 1, T0, &c, NULL));
	assert_false(take(RL_ALGO_GCRA, 3, 3600000, 1, T0, &c, &retry));
	assert_int_equal(retry, 1200000);
	/* one ms before the interval: still over; at it: conforms, then over again */
	assert_false(take(RL_ALGO_GCRA, 3, 3600000, 1, T0 + 1199999, &c, &retry));
	assert_int_equal(retry, 1);
	assert_true(take(RL_ALGO_GCRA, 3, 3600000, 1, T0 + 1200000, &c, NULL));
	assert_false(take(RL_ALGO_GCRA, 3, 3600000, 1, T0 + 1200000, &c, NULL));
	/* no double burst at a window edge: at T0 + 3600 s only the drained 3 fit */
	struct rl_cell d = { 0 };
	for (int i = 0; i < 3; i++)
		assert_true(take(RL_ALGO_GCRA, 3, 3600000, 1, T0 + 3599000, &d, NULL));
	assert_false(take(RL_ALGO_GCRA, 3, 3600000, 1, T0 + 3601000, &d, NULL));
	/* a long pause empties the bucket completely, no more */
	for (int i = 0; i < 3; i++)
		assert_true(take(RL_ALGO_GCRA, 3, 3600000, 1, T0 + 99999999, &d, NULL));
	assert_false(take(RL_ALGO_GCRA, 3, 3600000, 1, T0 + 99999999, &d, NULL));
	/* odd intervals stay exact: 7 per 1000 ms, 7 fit, 8th not; 1000 ms later 7 again */
	struct rl_cell e = { 0 };
	for (int round = 0; round < 5; round++) {
		long long t = T0 + round * 1000;
		for (int i = 0; i < 7; i++)
			assert_true(take(RL_ALGO_GCRA, 7, 1000, 1, t, &e, NULL));
		assert_false(take(RL_ALGO_GCRA, 7, 1000, 1, t, &e, NULL));
	}
	/* cost: bytes; a cost above max never fits */
	struct rl_cell f = { 0 };
	assert_true(take(RL_ALGO_GCRA, 1000, 60000, 600, T0, &f, NULL));
	assert_false(take(RL_ALGO_GCRA, 1000, 60000, 600, T0, &f, &retry));
	assert_int_equal(retry, 12000);	/* 200 bytes over at 1000/60 s */
	assert_true(take(RL_ALGO_GCRA, 1000, 60000, 400, T0, &f, NULL));
	assert_false(take(RL_ALGO_GCRA, 1000, 60000, 2000, T0 + 999999, &f, NULL));
	/* cost 0 asks about one unit and takes nothing */
	struct rl_cell g = { 0 };
	assert_true(take(RL_ALGO_GCRA, 1, 1000, 0, T0, &g, NULL));
	assert_false(g.exists);
	assert_true(take(RL_ALGO_GCRA, 1, 1000, 1, T0, &g, NULL));
	assert_false(take(RL_ALGO_GCRA, 1, 1000, 0, T0, &g, NULL));
	assert_int_equal(g.expires_ms, T0 + 1000);
}

static void test_fixed_window(void **state)
{
	(void)state;
	struct rl_cell c = { 0 };
	long long retry;

	for (int i = 0; i < 3; i++)
		assert_true(take(RL_ALGO_FIXED, 3, 60000, 1, T0 + i * 1000, &c, NULL));
	assert_false(take(RL_ALGO_FIXED, 3, 60000, 1, T0 + 59999, &c, &retry));
	assert_int_equal(retry, 1);
	/* the window starts at the first request; the next one begins fresh: double burst */
	for (int i = 0; i < 3; i++)
		assert_true(take(RL_ALGO_FIXED, 3, 60000, 1, T0 + 60000, &c, NULL));
	assert_false(take(RL_ALGO_FIXED, 3, 60000, 1, T0 + 60000, &c, NULL));
	assert_int_equal(c.expires_ms, T0 + 120000);
}

static void test_greylist_logic(void **state)
{
	(void)state;
	struct rl_grey_params p = { 300000, 2 * 86400000LL, 35 * 86400000LL, 2 };
	struct rl_cell trip = { 0 }, client = { 0 }, t2, c2;
	long long retry;

	assert_int_equal(rl_grey_step(&p, T0, &trip, &client, &t2, &c2, &retry), RL_GREY_DEFER_NEW);
	assert_int_equal(retry, 300000);
	trip = t2;
	client = c2;
	assert_int_equal(rl_grey_step(&p, T0 + 299999, &trip, &client, &t2, &c2, &retry),
			 RL_GREY_DEFER_EARLY);
	assert_int_equal(retry, 1);
	trip = t2;	/* an early retry does not restart the delay */
	assert_int_equal(rl_grey_step(&p, T0 + 300000, &trip, &client, &t2, &c2, &retry), RL_GREY_PASS);
	assert_int_equal((long long)c2.a, 1);
	trip = t2;
	client = c2;
	/* passed triplets pass at once, without counting the client again */
	assert_int_equal(rl_grey_step(&p, T0 + 400000, &trip, &client, &t2, &c2, &retry), RL_GREY_PASS);
	assert_int_equal((long long)c2.a, 1);
	/* a first attempt never retried within the retry window is forgotten */
	struct rl_cell old = { T0, T0, 0, 0, 1 };
	assert_int_equal(rl_grey_step(&p, T0 + 2 * 86400000LL + 1, &old, &client, &t2, &c2, &retry),
			 RL_GREY_DEFER_NEW);
	/* a second passed triplet makes the client auto-allowed (auto_allow = 2) */
	struct rl_cell other = { T0, T0, 0, 0, 1 };
	assert_int_equal(rl_grey_step(&p, T0 + 500000, &other, &client, &t2, &c2, &retry), RL_GREY_PASS);
	assert_int_equal((long long)c2.a, 2);
	client = c2;
	struct rl_cell fresh = { 0 };
	assert_int_equal(rl_grey_step(&p, T0 + 600000, &fresh, &client, &t2, &c2, &retry),
			 RL_GREY_PASS_AUTO);
	/* ... until the client is older than max_age */
	assert_int_equal(rl_grey_step(&p, T0 + 600000 + 35 * 86400000LL + 1, &fresh, &client, &t2,
				      &c2, &retry), RL_GREY_DEFER_NEW);
	/* auto-allow off */
	p.auto_allow = 0;
	assert_int_equal(rl_grey_step(&p, T0 + 600000, &fresh, &client, &t2, &c2, &retry),
			 RL_GREY_DEFER_NEW);
}

/* ------------------------------------------------------------ requests, keys */

static struct policy_msg msg_of(struct policy_attr *a, size_t n)
{
	struct policy_msg m = { n, a };
	return m;
}

static void test_keys(void **state)
{
	(void)state;
	struct policy_attr a[] = {
		{ "client_address", "192.0.2.77" }, { "sender", "Joe.User@Example.COM" },
		{ "recipient", "sue@Example.org" }, { "sasl_username", "Joe" },
	};
	struct policy_msg m = msg_of(a, 4);
	struct rl_req r;
	char key[RL_KEY_MAX_BYTES + 1];

	rl_req_init(&r, &m, 24, 64);
	assert_string_equal(rl_req_get(&r, "sender_domain"), "example.com");
	assert_string_equal(rl_req_get(&r, "sender_localpart"), "Joe.User");
	assert_string_equal(rl_req_get(&r, "recipient_domain"), "example.org");
	assert_string_equal(rl_req_get(&r, "recipient_localpart"), "sue");
	assert_string_equal(rl_req_get(&r, "client_net"), "192.0.2.0/24");
	assert_null(rl_req_get(&r, "client_name"));
	const char *k1[] = { "sasl_username", "recipient_domain" };
	assert_int_equal(rl_req_key(&r, "rate:", k1, 2, key, sizeof key), 0);
	assert_string_equal(key, "rate:sasl_username=joe,recipient_domain=example.org");
	const char *k2[] = { "global" };
	assert_int_equal(rl_req_key(&r, "rate:", k2, 1, key, sizeof key), 0);
	assert_string_equal(key, "rate:global");
	const char *k3[] = { "client_name" };
	assert_int_equal(rl_req_key(&r, "rate:", k3, 1, key, sizeof key), -1);

	rl_req_init(&r, &m, 16, 48);
	assert_string_equal(rl_req_get(&r, "client_net"), "192.0.0.0/16");
	struct policy_attr b[] = { { "client_address", "2001:db8:1:2:3:4:5:6" } };
	struct policy_msg m6 = msg_of(b, 1);
	rl_req_init(&r, &m6, 24, 64);
	assert_string_equal(rl_req_get(&r, "client_net"), "2001:db8:1:2::/64");
	rl_req_init(&r, &m6, 24, 48);
	assert_string_equal(rl_req_get(&r, "client_net"), "2001:db8:1::/48");
	struct policy_attr c[] = { { "client_address", "::ffff:198.51.100.9" }, { "sender", "" } };
	struct policy_msg mm = msg_of(c, 2);
	rl_req_init(&r, &mm, 24, 64);
	assert_string_equal(rl_req_get(&r, "client_net"), "198.51.100.0/24");
	assert_string_equal(rl_req_get(&r, "sender_domain"), "");
	/* a long key becomes a hash of its values */
	char *big = xmalloc(1001);
	memset(big, 'x', 1000);
	big[1000] = 0;
	struct policy_attr d[] = { { "sender", big } };
	struct policy_msg md = msg_of(d, 1);
	rl_req_init(&r, &md, 24, 64);
	const char *k4[] = { "sender" };
	assert_int_equal(rl_req_key(&r, "rate:", k4, 1, key, sizeof key), 0);
	assert_int_equal(strlen(key), strlen("rate:#") + 64);
	free(big);
}

/* ------------------------------------------------------------ engine + store */

struct world {
	struct conf *conf;
	struct rl_cfg cfg;
	struct rl_engine *eng;
	struct rl_store *store;
	long long now;
	char *log;
};

static void world_open(struct world *w, const char *rules, const char *extra_conf)
{
	char *rpath = write_tmp("rules.cf", rules);
	char *text = xasprintf("ratelimit_rules = %s\nratelimit_state_file =\n%s", rpath,
			       extra_conf ? extra_conf : "");
	char *err = NULL;

	memset(w, 0, sizeof(*w));
	w->conf = conf_load_string(text, "test.conf", params_all, NULL, &err);
	if (!w->conf)
		fail_msg("conf: %s", err);
	if (rl_cfg_load(w->conf, &w->cfg, &err) < 0)
		fail_msg("cfg: %s", err);
	w->eng = rl_engine_new();
	w->store = rl_store_embedded_new(w->cfg.state_file, 16 << 20, 1000, &err);
	if (!w->store)
		fail_msg("store: %s", err);
	w->now = T0;
	free(rpath);
	free(text);
}

static void world_close(struct world *w)
{
	rl_store_free(&w->store);
	rl_engine_free(&w->eng);
	rl_cfg_free(&w->cfg);
	conf_free(&w->conf);
	free(w->log);
}

static void store_done(void *arg, const char *err)
{
	*(const char **)arg = err ? "error" : "ok";
}

/*
 * ask - one request: "name=value" attributes separated by '|'. Returns the
 * action (static buffer); the log line stays in w->log.
 */
static const char *ask(struct world *w, const char *attrs)
{
	static char out[1024];
	struct policy_attr a[32];
	size_t n = 0;
	char *copy = xstrdup(attrs), *save = NULL;

	for (char *t = strtok_r(copy, "|", &save); t && n < 32; t = strtok_r(NULL, "|", &save)) {
		char *eq = strchr(t, '=');
		assert_non_null(eq);
		*eq = 0;
		a[n].name = t;
		a[n].value = eq + 1;
		n++;
	}
	struct policy_msg m = msg_of(a, n);
	struct rl_req req;
	struct rl_decision *d = xmalloc(sizeof(*d));
	const char *st = NULL;

	rl_req_init(&req, &m, w->cfg.prefix4, w->cfg.prefix6);
	rl_req_set_geoip(&req, w->cfg.geo);
	rl_engine_plan(w->eng, &w->cfg, &req, w->now, d);
	if (d->use_store) {
		rl_store_run(w->store, &d->plan, store_done, &st);
		assert_string_equal(st, "ok");
	}
	free(w->log);
	char *act = rl_engine_decide(w->eng, &w->cfg, &req, d, NULL, &w->log);
	snprintf(out, sizeof out, "%s", act);
	free(act);
	free(d);
	free(copy);
	return out;
}

static void test_sasl_messages_once_per_instance(void **state)
{
	(void)state;
	struct world w;
	world_open(&w, "id=OUT; sasl_username=~.; action=rate(sasl_username/3/3600/DEFER too many)\n",
		   NULL);
	/* three messages, each with two RCPTs: the first RCPT of each counts */
	for (int i = 0; i < 3; i++) {
		char *r1 = xasprintf("sasl_username=joe|instance=m%d|recipient=a@x.org", i);
		char *r2 = xasprintf("sasl_username=joe|instance=m%d|recipient=b@x.org", i);
		assert_string_equal(ask(&w, r1), "DUNNO");
		assert_string_equal(ask(&w, r2), "DUNNO");
		free(r1);
		free(r2);
	}
	const char *a = ask(&w, "sasl_username=joe|instance=m3|recipient=a@x.org");
	assert_string_equal(a, "DEFER too many (limit OUT: 3 messages per 3600 s for "
			       "sasl_username=joe, retry in 1200 s)");
	assert_non_null(strstr(w.log, "result=over"));
	assert_non_null(strstr(w.log, "rule=OUT, limit=rate, key=rate:3/3600s:sasl_username=joe"));
	/* another user has a counter of their own; no user: no limit */
	assert_string_equal(ask(&w, "sasl_username=bob|instance=m4"), "DUNNO");
	assert_string_equal(ask(&w, "instance=m5"), "DUNNO");
	/* END-OF-MESSAGE of a message counted at RCPT does not count again */
	assert_string_equal(ask(&w, "sasl_username=bob|instance=m4|protocol_state=END-OF-MESSAGE"),
			    "DUNNO");
	assert_string_equal(ask(&w, "sasl_username=bob|instance=m6|protocol_state=END-OF-MESSAGE"),
			    "DUNNO");
	assert_string_equal(ask(&w, "sasl_username=bob|instance=m7"), "DUNNO");
	assert_true(strncmp(ask(&w, "sasl_username=bob|instance=m8"), "DEFER too many", 14) == 0);
	/* the first message's later RCPT: already counted, still DUNNO */
	assert_string_equal(ask(&w, "sasl_username=bob|instance=m4|recipient=z@x.org"), "DUNNO");
	/* 1200 s later one more message fits */
	w.now += 1200 * 1000;
	assert_string_equal(ask(&w, "sasl_username=joe|instance=m9"), "DUNNO");
	assert_string_not_equal(ask(&w, "sasl_username=joe|instance=m10"), "DUNNO");
	world_close(&w);
}

static void test_recipients_vs_messages(void **state)
{
	(void)state;
	struct world w;
	world_open(&w,
		   "id=RC; action=rcpt(sender/4/60/450 4.7.1 too many recipients)\n"
		   "id=MS; action=rate(sender/10/60/450 4.7.1 too many messages)\n", NULL);
	/* one message with 3 RCPTs, then one with 2: the fifth recipient is over */
	for (int i = 0; i < 3; i++)
		assert_string_equal(ask(&w, "sender=a@b.c|instance=m1"), "DUNNO");
	assert_string_equal(ask(&w, "sender=a@b.c|instance=m2"), "DUNNO");
	const char *a = ask(&w, "sender=a@b.c|instance=m2");
	assert_string_equal(a, "450 4.7.1 too many recipients (limit RC: 4 recipients per 60 s for "
			       "sender=a@b.c, retry in 15 s)");
	/* the refused RCPT counted nowhere: the message limit saw 2 messages */
	assert_non_null(strstr(w.log, "used=4, cost=1, max=4"));
	w.now += 15000;
	assert_string_equal(ask(&w, "sender=a@b.c|instance=m2"), "DUNNO");
	/* the message was counted at its first RCPT: only the recipient limit is asked */
	assert_non_null(strstr(w.log, "RC=4/4"));
	assert_null(strstr(w.log, "MS="));
	/* END-OF-MESSAGE counts recipient_count minus what RCPT counted */
	world_close(&w);
	world_open(&w, "id=RC; action=rcpt(sender/5/60/DEFER rcpts)\n", NULL);
	assert_string_equal(ask(&w, "sender=a@b.c|instance=m1"), "DUNNO");
	assert_string_equal(ask(&w, "sender=a@b.c|instance=m1|protocol_state=END-OF-MESSAGE|"
				    "recipient_count=3"), "DUNNO");
	assert_non_null(strstr(w.log, "RC=3/5"));
	assert_string_equal(ask(&w, "sender=a@b.c|instance=m2|protocol_state=END-OF-MESSAGE|"
				    "recipient_count=2"), "DUNNO");
	assert_string_equal(ask(&w, "sender=a@b.c|instance=m3|protocol_state=MAIL"), "DEFER rcpts "
			    "(limit RC: 5 recipients per 60 s for sender=a@b.c, retry in 12 s)");
	world_close(&w);
}

static void test_size_net_global(void **state)
{
	(void)state;
	struct world w;
	world_open(&w,
		   "id=SZ; protocol_state==END-OF-MESSAGE; action=size(client_net/1000/60/DEFER big)\n"
		   "id=NET; action=rate(client_net/2/60/DEFER net)\n"
		   "id=ALL; action=rate(global/3/60/DEFER all)\n", NULL);
	assert_string_equal(ask(&w, "client_address=192.0.2.1|instance=a"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=192.0.2.200|instance=b"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=192.0.2.9|instance=c"),
			    "DEFER net (limit NET: 2 messages per 60 s for client_net=192.0.2.0/24, "
			    "retry in 30 s)");
	assert_string_equal(ask(&w, "client_address=198.51.100.1|instance=d"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=203.0.113.1|instance=e"),
			    "DEFER all (limit ALL: 3 messages per 60 s for global, retry in 20 s)");
	/* bytes at END-OF-MESSAGE */
	world_close(&w);
	world_open(&w, "id=SZ; action=size(client_net/1000/60/DEFER big)\n", NULL);
	assert_string_equal(ask(&w, "client_address=192.0.2.1|instance=a|size=900"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=192.0.2.1|instance=a|size=900|"
				    "protocol_state=END-OF-MESSAGE"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=192.0.2.1|instance=b|size=200|"
				    "protocol_state=END-OF-MESSAGE"),
			    "DEFER big (limit SZ: 1000 bytes per 60 s for client_net=192.0.2.0/24, "
			    "retry in 6 s)");
	world_close(&w);
}

static void test_rule_order_and_actions(void **state)
{
	(void)state;
	struct world w;
	world_open(&w,
		   "id=WL; client_address=10.0.0.0/8; action=OK\n"
		   "id=BAD; sender==spam@x.y; action=REJECT no $$sender\n"
		   "id=LIM; action=rate(client_address/1/60/HOLD)\n"
		   "id=TAG; client_name=\\.dyn\\.; action=PREPEND X-Dyn: $$client_name\n", NULL);
	/* an access rule before the limits skips them */
	for (int i = 0; i < 3; i++)
		assert_string_equal(ask(&w, "client_address=10.1.1.1"), "OK");
	/* a refusal is not counted */
	assert_string_equal(ask(&w, "client_address=192.0.2.1|sender=spam@x.y"), "REJECT no spam@x.y");
	assert_string_equal(ask(&w, "client_address=192.0.2.1|client_name=a.dyn.example"),
			    "PREPEND X-Dyn: a.dyn.example");
	assert_string_equal(ask(&w, "client_address=192.0.2.1"),
			    "HOLD limit LIM: 1 messages per 60 s for client_address=192.0.2.1, retry in 60 s");
	world_close(&w);
}

static void test_dry_run_and_no_rules(void **state)
{
	(void)state;
	struct world w;
	world_open(&w, "id=L; action=rate(sender/1/60/DEFER slow)\n", "ratelimit_dry_run = yes\n");
	assert_string_equal(ask(&w, "sender=a@b.c"), "DUNNO");
	assert_string_equal(ask(&w, "sender=a@b.c"), "DUNNO");
	assert_non_null(strstr(w.log, "dry_run=yes, would=\"DEFER slow (limit L: 1 messages per 60 s"));
	assert_non_null(strstr(w.log, "result=over"));
	world_close(&w);
	world_open(&w, "# nothing\n", NULL);
	assert_string_equal(ask(&w, "sender=a@b.c"), "DUNNO");
	assert_non_null(strstr(w.log, "result=none, action=\"DUNNO\""));
	world_close(&w);
}

static void test_backend_error(void **state)
{
	(void)state;
	struct world w;
	world_open(&w, "id=L; action=rate(sender/1/60/DEFER x)\nid=T; action=PREPEND X-T: y\n", NULL);
	struct policy_attr a[] = { { "sender", "a@b.c" } };
	struct policy_msg m = msg_of(a, 1);
	struct rl_req req;
	struct rl_decision *d = xmalloc(sizeof(*d));
	char *log = NULL;

	rl_req_init(&req, &m, 24, 64);
	rl_engine_plan(w.eng, &w.cfg, &req, w.now, d);
	assert_true(d->use_store);
	/* dunno: the rules' answer without the limits */
	char *act = rl_engine_decide(w.eng, &w.cfg, &req, d, "redis: not connected", &log);
	assert_string_equal(act, "PREPEND X-T: y");
	assert_non_null(strstr(log, "error=\"redis: not connected\""));
	assert_non_null(strstr(log, "result=backend_error"));
	free(act);
	free(log);
	w.cfg.on_error_defer = 1;
	act = rl_engine_decide(w.eng, &w.cfg, &req, d, "redis: not connected", &log);
	assert_string_equal(act, "DEFER_IF_PERMIT 4.3.0 Rate limit service temporarily unavailable");
	free(act);
	free(log);
	free(d);
	world_close(&w);
}

static void test_all_or_nothing(void **state)
{
	(void)state;
	struct world w;
	world_open(&w,
		   "id=BIG; action=rate(sender/100/60/DEFER big)\n"
		   "id=SMALL; sasl_username=~.; action=rate(sasl_username/1/60/DEFER small)\n", NULL);
	assert_string_equal(ask(&w, "sender=a@b.c|sasl_username=u"), "DUNNO");
	for (int i = 0; i < 5; i++)
		assert_true(!strncmp(ask(&w, "sender=a@b.c|sasl_username=u"), "DEFER small", 11));
	/* refused requests took nothing from BIG */
	assert_string_equal(ask(&w, "sender=a@b.c"), "DUNNO");
	assert_non_null(strstr(w.log, "BIG=2/100"));
	world_close(&w);
}

static void test_greylist_engine(void **state)
{
	(void)state;
	struct world w;
	char *allow = write_tmp("allow_clients", "# postgrey format\ngood.example\n/^mx\\d+\\.big\\./\n"
				"198.51.100.0/24\n10.9\n");
	char *allow_r = write_tmp("allow_rcpts", "postmaster@\nabuse@example.org\nlists.example.net\n");
	char *extra = xasprintf("greylist_delay = 60s\ngreylist_auto_allow_clients = 2\n"
				"greylist_client_allow = %s\ngreylist_recipient_allow = %s\n", allow,
				allow_r);
	world_open(&w, "id=G; client_name==unknown; action=greylist\n", extra);
	const char *r1 = "client_address=192.0.2.5|client_name=unknown|sender=a@b.c|recipient=u@example.org";
	assert_string_equal(ask(&w, r1), "DEFER_IF_PERMIT Greylisted, see "
			    "https://postgrey.schweikert.ch/help/example.org.html");
	assert_non_null(strstr(w.log, "result=greylisted"));
	w.now += 30000;
	assert_true(!strncmp(ask(&w, r1), "DEFER_IF_PERMIT Greylisted", 26));
	if (!strstr(w.log, "rule=G, retry_s=30") || !strstr(w.log, "result=greylisted_early"))
		fail_msg("log: %s", w.log);
	w.now += 30000;
	assert_string_equal(ask(&w, r1), "DUNNO");
	assert_non_null(strstr(w.log, "greylist=passed"));
	/* the same /24, another triplet: deferred, then passes: client auto-allowed after 2 */
	const char *r2 = "client_address=192.0.2.6|client_name=unknown|sender=x@b.c|recipient=u@example.org";
	assert_true(!strncmp(ask(&w, r2), "DEFER_IF_PERMIT", 15));
	w.now += 60000;
	assert_string_equal(ask(&w, r2), "DUNNO");
	assert_string_equal(ask(&w, "client_address=192.0.2.7|client_name=unknown|sender=new@b.c|"
				    "recipient=v@example.org"), "DUNNO");
	assert_non_null(strstr(w.log, "greylist=auto_allowed"));
	/* named clients do not meet the rule; allow lists skip greylisting */
	assert_string_equal(ask(&w, "client_address=203.0.113.5|client_name=mx.other.example|"
				    "sender=a@b.c|recipient=u@example.org"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=198.51.100.5|client_name=unknown|sender=a@b.c|"
				    "recipient=u@example.org"), "DUNNO");
	assert_non_null(strstr(w.log, "greylist=allow_listed"));
	assert_string_equal(ask(&w, "client_address=203.0.113.5|client_name=unknown|sender=a@b.c|"
				    "recipient=postmaster@example.com"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=203.0.113.5|client_name=unknown|sender=a@b.c|"
				    "recipient=x@a.lists.example.net"), "DUNNO");
	assert_true(!strncmp(ask(&w, "client_address=203.0.113.5|client_name=unknown|sender=a@b.c|"
				     "recipient=x@example.net"), "DEFER_IF_PERMIT", 15));
	world_close(&w);
	free(allow);
	free(allow_r);
	free(extra);
}

static void test_allow_lists(void **state)
{
	(void)state;
	char *f = write_tmp("wl", "example.com\n/^mail\\d+\\./\n192.0.2.0/28\n10.1.2\n2001:db8::/32\n"
			    "postmaster@\nsue@example.org\n");
	const char *files[] = { f };
	char *err = NULL;
	struct rl_allow *a = rl_allow_load(files, 1, &err);
	assert_non_null(a);
	assert_true(rl_allow_client(a, "mx.example.com", "203.0.113.1"));
	assert_true(rl_allow_client(a, "example.com", "203.0.113.1"));
	assert_false(rl_allow_client(a, "badexample.com", "203.0.113.1"));
	assert_true(rl_allow_client(a, "mail7.other.net", "203.0.113.1"));
	assert_true(rl_allow_client(a, "unknown", "192.0.2.15"));
	assert_false(rl_allow_client(a, "unknown", "192.0.2.16"));
	assert_true(rl_allow_client(a, NULL, "10.1.2.99"));
	assert_false(rl_allow_client(a, NULL, "10.1.20.99"));
	assert_true(rl_allow_client(a, NULL, "2001:db8::5"));
	assert_true(rl_allow_rcpt(a, "POSTMASTER@any.where"));
	assert_true(rl_allow_rcpt(a, "sue@example.org"));
	assert_true(rl_allow_rcpt(a, "x@sub.example.com"));
	assert_false(rl_allow_rcpt(a, "bob@example.org"));
	rl_allow_free(&a);
	free(f);
	const char *bad[] = { "/nonexistent/wl" };
	assert_null(rl_allow_load(bad, 1, &err));
	free(err);
}

/* collect - rl_store_list callback: "key a" lines. */
static void collect(void *arg, const char *key, const struct rl_cell *c)
{
	sbuf_printf(arg, "%s %.0f\n", key, c->a);
}

static void test_store_restart_keeps_counters(void **state)
{
	(void)state;
	char *path = xasprintf("%s/state.lmdb", tmpdir);
	char *err = NULL;
	struct rl_plan *p = xcalloc(1, sizeof(*p));
	const char *st = NULL;

	struct rl_store *s = rl_store_embedded_new(path, 16 << 20, 1000, &err);
	assert_non_null(s);
	p->now_ms = T0;
	p->nops = 1;
	snprintf(p->ops[0].key, sizeof p->ops[0].key, "rate:2/60s:sender=a@b.c");
	p->ops[0].max = 2;
	p->ops[0].window_ms = 60000;
	p->ops[0].cost = 1;
	rl_store_run(s, p, store_done, &st);
	rl_store_run(s, p, store_done, &st);
	assert_int_equal(p->result, RL_PLAN_PASSED);
	rl_store_free(&s);
	/* a new process: the counter is still at 2 */
	s = rl_store_embedded_new(path, 16 << 20, 1000, &err);
	assert_non_null(s);
	rl_store_run(s, p, store_done, &st);
	assert_string_equal(st, "ok");
	assert_int_equal(p->result, RL_PLAN_OVER);
	struct sbuf b;
	sbuf_init(&b);
	assert_int_equal(rl_store_list(s, "rate:", T0, collect, &b, &err), 0);
	assert_string_equal(b.buf, "rate:2/60s:sender=a@b.c 2\n");
	sbuf_reset(&b);
	/* expired cells are neither listed nor counted, and the sweep drops them */
	assert_int_equal(rl_store_list(s, "", T0 + 60001, collect, &b, &err), 0);
	assert_string_equal(b.buf, "");
	assert_int_equal(rl_store_reset(s, "rate:2/60s:sender=a@b.c", &err), 1);
	assert_int_equal(rl_store_reset(s, "rate:2/60s:sender=a@b.c", &err), 0);
	rl_store_run(s, p, store_done, &st);
	assert_int_equal(p->result, RL_PLAN_PASSED);
	rl_store_tick(s, T0 + 3600000);
	assert_int_equal(rl_store_list(s, "", T0, collect, &b, &err), 0);
	assert_string_equal(b.buf, "");
	rl_store_free(&s);
	sbuf_free(&b);
	/* an unusable path is an error naming it */
	assert_null(rl_store_embedded_new("/nonexistent/dir/x.lmdb", 16 << 20, 1000, &err));
	assert_non_null(strstr(err, "/nonexistent/dir/x.lmdb"));
	free(err);
	free(p);
	free(path);
}

static void test_store_full_sweeps_expired(void **state)
{
	(void)state;
	char *err = NULL;
	const char *st = NULL;
	struct rl_plan *p = xcalloc(1, sizeof(*p));
	struct rl_store *s = rl_store_embedded_new("", 256 * 1024, 1000, &err);
	int i;

	assert_non_null(s);
	p->nops = 1;
	p->ops[0].max = 1;
	p->ops[0].window_ms = 1000;
	p->ops[0].cost = 1;
	p->now_ms = T0;
	for (i = 0; i < 100000; i++) {
		snprintf(p->ops[0].key, sizeof p->ops[0].key, "rate:1/1s:k=%0300d", i);
		rl_store_run(s, p, store_done, &st);
		if (!strcmp(st, "error"))
			break;
	}
	assert_true(i > 10 && i < 100000);	/* the map filled up */
	/* two seconds later every cell has expired: a full store makes room at once */
	p->now_ms = T0 + 2000;
	snprintf(p->ops[0].key, sizeof p->ops[0].key, "rate:1/1s:k=new");
	rl_store_run(s, p, store_done, &st);
	assert_string_equal(st, "ok");
	assert_int_equal(p->result, RL_PLAN_PASSED);
	rl_store_free(&s);
	free(p);
}

static void test_cfg_errors(void **state)
{
	(void)state;
	char *err = NULL;
	struct rl_cfg cfg;
	char *bad = write_tmp("bad.cf", "id=x; action=rate(a/b/c/d)\n");
	char *text = xasprintf("ratelimit_rules = %s\n", bad);
	struct conf *c = conf_load_string(text, "t.conf", params_all, NULL, &err);
	assert_non_null(c);
	assert_int_equal(rl_cfg_load(c, &cfg, &err), -1);
	assert_non_null(strstr(err, "bad.cf:1:"));
	free(err);
	conf_free(&c);
	free(text);
	c = conf_load_string("ratelimit_client_net_prefix = 33\n", "t.conf", params_all, NULL, &err);
	assert_non_null(c);
	assert_int_equal(rl_cfg_load(c, &cfg, &err), -1);
	assert_non_null(strstr(err, "t.conf:1: ratelimit_client_net_prefix"));
	free(err);
	conf_free(&c);
	free(bad);
}

/* ------------------------------------------------------------ GeoIP */

#define GEO_CONF "ratelimit_geoip_country_db = tests/data/geoip/GeoIP2-Country-Test.mmdb\n" \
		 "ratelimit_geoip_asn_db = tests/data/geoip/GeoLite2-ASN-Test.mmdb\n"

static void test_geoip_lookup(void **state)
{
	(void)state;
	char *err = NULL, cc[3];
	unsigned asn;
	struct geoip *g = geoip_open("tests/data/geoip/GeoIP2-Country-Test.mmdb",
				     "tests/data/geoip/GeoLite2-ASN-Test.mmdb", &err);
	assert_non_null(g);
	/* 2.125.160.216: country GB, registered_country FR: the country is where it is used */
	geoip_lookup(g, "2.125.160.216", cc, &asn);
	assert_string_equal(cc, "GB");
	geoip_lookup(g, "89.160.20.112", cc, &asn);
	assert_string_equal(cc, "SE");
	geoip_lookup(g, "2001:218::1", cc, &asn);
	assert_string_equal(cc, "JP");
	geoip_lookup(g, "1.128.0.1", cc, &asn);
	assert_int_equal(asn, 1221);
	assert_string_equal(cc, "XX");	/* public, not in the country database */
	geoip_lookup(g, "10.1.2.3", cc, &asn);	/* private: no look-up */
	assert_string_equal(cc, "");
	assert_int_equal(asn, 0);
	geoip_lookup(g, "not-an-address", cc, &asn);
	assert_string_equal(cc, "");
	geoip_free(&g);
	assert_null(g);
	/* one database only; NULL handle */
	g = geoip_open("", "tests/data/geoip/GeoLite2-ASN-Test.mmdb", &err);
	assert_non_null(g);
	assert_false(geoip_has_country(g));
	assert_true(geoip_has_asn(g));
	geoip_lookup(g, "2.125.160.216", cc, &asn);
	assert_string_equal(cc, "");
	geoip_free(&g);
	geoip_lookup(NULL, "2.125.160.216", cc, &asn);
	assert_string_equal(cc, "");
	assert_null(geoip_open("/nonexistent/x.mmdb", "", &err));
	assert_non_null(strstr(err, "/nonexistent/x.mmdb: "));
	free(err);
}

static void test_geoip_attributes(void **state)
{
	(void)state;
	struct world w;
	world_open(&w, "id=GB; client_country=gb; action=DEFER 4.7.1 not from GB today\n"
		       "id=TEL; client_asn=1221; action=rate(client_asn/2/3600/DEFER 4.7.1 AS limit)\n"
		       "id=CC; client_country=~^(SE|JP)$; action=rate(client_country/1/3600/DEFER cc)\n",
		   GEO_CONF);
	assert_string_equal(ask(&w, "client_address=2.125.160.216|instance=a"),
			    "DEFER 4.7.1 not from GB today");
	/* the request's own client_country does not count when there is a database */
	assert_string_equal(ask(&w, "client_address=89.160.20.112|client_country=GB|instance=b"),
			    "DUNNO");
	assert_string_equal(ask(&w, "client_address=89.160.20.113|instance=c"),
			    "DEFER cc (limit CC: 1 messages per 3600 s for client_country=se, "
			    "retry in 3600 s)");
	assert_string_equal(ask(&w, "client_address=2001:218::5|instance=d"), "DUNNO");
	/* AS1221: 2 messages, the third over; the key is the AS number */
	assert_string_equal(ask(&w, "client_address=1.128.0.1|instance=e"), "DUNNO");
	assert_string_equal(ask(&w, "client_address=1.129.0.1|instance=f"), "DUNNO");
	const char *over = ask(&w, "client_address=1.130.9.9|instance=g");
	assert_true(!strncmp(over, "DEFER 4.7.1 AS limit", 20));
	assert_non_null(strstr(w.log, "client_asn=1221"));
	world_close(&w);

	/* "=" is exact for codes (not a pattern): 122 is not 1221 */
	world_open(&w, "id=E; client_asn=122; action=REJECT prefix\n", GEO_CONF);
	assert_string_equal(ask(&w, "client_address=1.128.0.1"), "DUNNO");
	/* private and unknown clients: no country, no ASN */
	assert_string_equal(ask(&w, "client_address=192.168.1.1"), "DUNNO");
	world_close(&w);

	/* without databases the request's own attributes are used */
	world_open(&w, "id=GB; client_country=GB; action=HOLD\n", "");
	assert_string_equal(ask(&w, "client_address=89.160.20.112|client_country=GB"), "HOLD");
	assert_string_equal(ask(&w, "client_address=2.125.160.216"), "DUNNO");
	world_close(&w);
}

static void test_geoip_keys(void **state)
{
	(void)state;
	char *err = NULL;
	struct geoip *g = geoip_open("tests/data/geoip/GeoIP2-Country-Test.mmdb",
				     "tests/data/geoip/GeoLite2-ASN-Test.mmdb", &err);
	assert_non_null(g);
	struct policy_attr a[] = { { "client_address", "1.128.0.1" }, { "sasl_username", "Joe" } };
	struct policy_msg m = msg_of(a, 2);
	struct rl_req r;
	char key[RL_KEY_MAX_BYTES + 1];
	rl_req_init(&r, &m, 24, 64);
	rl_req_set_geoip(&r, g);
	const char *k1[] = { "client_asn", "sasl_username" };
	assert_int_equal(rl_req_key(&r, "rate:", k1, 2, key, sizeof key), 0);
	assert_string_equal(key, "rate:client_asn=1221,sasl_username=joe");
	const char *k2[] = { "client_country" };
	assert_int_equal(rl_req_key(&r, "rate:", k2, 1, key, sizeof key), 0);
	assert_string_equal(key, "rate:client_country=xx");
	/* a private client has no ASN: the limit does not apply */
	struct policy_attr b[] = { { "client_address", "10.0.0.1" } };
	struct policy_msg mb = msg_of(b, 1);
	rl_req_init(&r, &mb, 24, 64);
	rl_req_set_geoip(&r, g);
	assert_int_equal(rl_req_key(&r, "rate:", k1, 1, key, sizeof key), -1);
	geoip_free(&g);

	/* a database that cannot be opened names its parameter */
	struct rl_cfg cfg;
	struct conf *c = conf_load_string("ratelimit_geoip_asn_db = /nonexistent.mmdb\n", "t.conf",
					  params_all, NULL, &err);
	assert_non_null(c);
	assert_int_equal(rl_cfg_load(c, &cfg, &err), -1);
	assert_non_null(strstr(err, "t.conf:1: ratelimit_geoip_asn_db: /nonexistent.mmdb: "));
	free(err);
	conf_free(&c);
	c = conf_load_string("ratelimit_geoip_country_db = /nonexistent.mmdb\n", "t.conf",
			     params_all, NULL, &err);
	assert_non_null(c);
	assert_int_equal(rl_cfg_load(c, &cfg, &err), -1);
	assert_non_null(strstr(err, "t.conf:1: ratelimit_geoip_country_db: /nonexistent.mmdb: "));
	free(err);
	conf_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gcra_edges),
		cmocka_unit_test(test_fixed_window),
		cmocka_unit_test(test_greylist_logic),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_sasl_messages_once_per_instance),
		cmocka_unit_test(test_recipients_vs_messages),
		cmocka_unit_test(test_size_net_global),
		cmocka_unit_test(test_rule_order_and_actions),
		cmocka_unit_test(test_dry_run_and_no_rules),
		cmocka_unit_test(test_all_or_nothing),
		cmocka_unit_test(test_backend_error),
		cmocka_unit_test(test_greylist_engine),
		cmocka_unit_test(test_allow_lists),
		cmocka_unit_test(test_store_restart_keeps_counters),
		cmocka_unit_test(test_store_full_sweeps_expired),
		cmocka_unit_test(test_cfg_errors),
		cmocka_unit_test(test_geoip_lookup),
		cmocka_unit_test(test_geoip_attributes),
		cmocka_unit_test(test_geoip_keys),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
