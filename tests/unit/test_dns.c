/*
 * test_dns: proto/dns against a real DNS server (unbound, started through
 * tests/fixtures/dnsserver.py on a free loopback port), async and sync APIs,
 * plus the raw-answer decoder on hand-made packets and the name helpers.
 * Run from the repo root. Timing asserts are generous lower/upper bounds.
 */
#include "proto/dns.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

extern char **environ;

#define FIXTURE "tests/fixtures/dnsserver.py"
#define PYTHON "/usr/bin/python3"
#define WATCHDOG_MS 30000

/* --------------------------------------------------------------- fixture */

static char g_dir[64];
static char g_addr[128];
static pid_t g_pid = -1;
static int g_stdin = -1;	/* the fixture exits when we close this */
static struct event_base *g_base;

/* Explicit TTLs: unbound's zone parser gives a record without one the TTL of
 * the record before it, not $TTL. */
static const char zone_text[] =
	".                      300 SOA ns.test. hostmaster.test. 1 3600 600 86400 120\n"
	".                      300 NS  ns.test.\n"
	"ns.test.               300 A   127.0.0.1\n"
	"a.example.com.        3600 A   192.0.2.1\n"
	"a.example.com.        3600 A   192.0.2.2\n"
	"v6.example.com.        300 AAAA 2001:db8::1\n"
	"example.com.           300 MX  20 mx2.example.com.\n"
	"example.com.           300 MX  10 mx1.example.com.\n"
	"example.com.           300 MX  30 mx3.example.com.\n"
	"nullmx.example.com.    300 MX  0 .\n"
	"txt.example.com.       300 TXT \"v=spf1 \" \"ip4:192.0.2.0/24 \" \"-all\"\n"
	"nul.example.com.       300 TXT \"a\\000b\" \"c\"\n"
	"1.2.0.192.in-addr.arpa. 300 PTR a.example.com.\n"
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 PTR v6.example.com.\n"
	"alias.example.com.      60 CNAME a.example.com.\n"
	"alias2.example.com.    600 CNAME alias.example.com.\n"
	"*.many.example.com.    300 A   192.0.2.77\n"
	"x.sf.example.com.      300 TXT \"never served: DNSSEC-bogus\"\n";

/* zone_write - the zone above plus 8 long TXT RRs (> 512 bytes: TCP fallback). */
static void zone_write(const char *path)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(zone_text, f);
	for (int i = 0; i < 8; i++) {
		fprintf(f, "big.example.com. 300 TXT \"big-%d-", i);
		for (int k = 0; k < 190; k++)
			fputc('x', f);
		fputs("\"\n", f);
	}
	fclose(f);
}

/* read_line - one line from fd within timeout_ms; -1 on EOF/timeout. */
static int read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t o = 0;
	long long end = now_ms() + timeout_ms;

	while (o + 1 < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = end - now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		if (read(fd, buf + o, 1) != 1)
			return -1;
		if (buf[o] == '\n') {
			buf[o] = 0;
			return 0;
		}
		o++;
	}
	return -1;
}

static int group_setup(void **state)
{
	char zone[128], line[128];
	int out[2], in[2];
	posix_spawn_file_actions_t fa;

	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_dns.XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	snprintf(zone, sizeof(zone), "%s/root.zone", g_dir);
	zone_write(zone);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	char *argv[] = { PYTHON, FIXTURE, "--until-eof", "--deny", "timeout.example.com",
			 "--refuse", "refused.example.com", "--servfail", "sf.example.com",
			 zone, NULL };
	int rc = posix_spawn(&g_pid, PYTHON, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	assert_int_equal(rc, 0);
	g_stdin = in[1];
	rc = read_line(out[0], line, sizeof(line), WATCHDOG_MS);
	close(out[0]);
	if (rc < 0 || strncmp(line, "127.0.0.1:", 10) != 0) {
		fprintf(stderr, "test_dns: DNS fixture did not start (see its stderr)\n");
		return -1;
	}
	snprintf(g_addr, sizeof(g_addr), "%s", line);
	g_base = event_base_new();
	return g_base ? 0 : -1;
}

static int group_teardown(void **state)
{
	char path[128];

	(void)state;
	if (g_pid > 0) {
		close(g_stdin);
		kill(g_pid, SIGTERM);
		while (waitpid(g_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	snprintf(path, sizeof(path), "%s/root.zone", g_dir);
	unlink(path);
	rmdir(g_dir);
	if (g_base)
		event_base_free(g_base);
	return 0;
}

/* ---------------------------------------------------------------- helpers */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* rr_render - one record as text; TXT as "n=N len=L:data" with \DDD escapes. */
static char *rr_render(const struct dns_rr *rr)
{
	char ip[INET6_ADDRSTRLEN];
	struct sbuf b;

	switch (rr->type) {
	case DNS_T_A:
		return xstrdup(inet_ntop(AF_INET, &rr->u.a, ip, sizeof(ip)));
	case DNS_T_AAAA:
		return xstrdup(inet_ntop(AF_INET6, &rr->u.aaaa, ip, sizeof(ip)));
	case DNS_T_MX:
		return xasprintf("%u %s", rr->u.mx.pref, *rr->u.mx.host ? rr->u.mx.host : "(root)");
	case DNS_T_TXT:
		sbuf_init(&b);
		sbuf_printf(&b, "n=%zu len=%zu:", rr->u.txt.nstrings, rr->u.txt.len);
		for (size_t i = 0; i < rr->u.txt.len; i++) {
			unsigned char c = (unsigned char)rr->u.txt.data[i];
			if (c < 0x20 || c > 0x7e)
				sbuf_printf(&b, "\\%03u", c);
			else
				sbuf_addc(&b, (char)c);
		}
		return sbuf_steal(&b);
	default:
		return xstrdup(rr->u.name);
	}
}

/* answer_render - all records, sorted, joined by " | ". */
static char *answer_render(const struct dns_answer *a)
{
	char **v = xcalloc(a->n, sizeof(*v));
	struct sbuf b;

	sbuf_init(&b);
	for (size_t i = 0; i < a->n; i++)
		v[i] = rr_render(&a->rr[i]);
	qsort(v, a->n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < a->n; i++) {
		sbuf_printf(&b, "%s%s", i ? " | " : "", v[i]);
		free(v[i]);
	}
	free(v);
	return sbuf_steal(&b);
}

struct result {
	int calls;
	enum dns_status status;
	uint32_t ttl;
	size_t n;
	char *text;
	char qname[300];
};

static void result_fill(struct result *res, const struct dns_answer *a)
{
	res->calls++;
	res->status = a->status;
	res->ttl = a->ttl;
	res->n = a->n;
	free(res->text);
	res->text = answer_render(a);
	snprintf(res->qname, sizeof(res->qname), "%s", a->qname);
}

static void on_answer(void *arg, const struct dns_answer *a)
{
	result_fill(arg, a);
}

static struct dns_resolver *resolver_new(struct event_base *base, int timeout_ms, int tries)
{
	const char *servers[] = { g_addr };
	struct dns_opts o = { servers, 1, timeout_ms, tries };
	char *err = NULL;
	struct dns_resolver *r = dns_new(base, &o, &err);

	if (!r)
		fail_msg("dns_new: %s", err);
	return r;
}

/* loop_until - run the loop until *flag >= want; fails after WATCHDOG_MS. */
static void loop_until(const int *flag, int want)
{
	long long end = now_ms() + WATCHDOG_MS;

	while (*flag < want) {
		if (now_ms() > end)
			fail_msg("async answers did not arrive (%d of %d)", *flag, want);
		if (event_base_loop(g_base, EVLOOP_ONCE) != 0)
			fail_msg("event loop ran dry (%d of %d answers)", *flag, want);
	}
}

/* ------------------------------------------------------- case table */

struct dns_case {
	const char *title;
	const char *name;
	enum dns_type type;
	enum dns_status status;
	size_t n;
	const char *text;	/* NULL: not checked */
	uint32_t ttl_min, ttl_max;
};

#define BIGTTL 300
static const struct dns_case cases[] = {
	{ "A: two addresses", "a.example.com", DNS_T_A, DNS_OK, 2, "192.0.2.1 | 192.0.2.2", 3500, 3600 },
	{ "A: upper case and trailing dot", "A.EXAMPLE.COM.", DNS_T_A, DNS_OK, 2,
	  "192.0.2.1 | 192.0.2.2", 3500, 3600 },
	{ "AAAA", "v6.example.com", DNS_T_AAAA, DNS_OK, 1, "2001:db8::1", 200, 300 },
	{ "MX: three with preferences", "example.com", DNS_T_MX, DNS_OK, 3,
	  "10 mx1.example.com | 20 mx2.example.com | 30 mx3.example.com", 200, 300 },
	{ "MX: null MX (RFC 7505) has host \"\"", "nullmx.example.com", DNS_T_MX, DNS_OK, 1,
	  "0 (root)", 200, 300 },
	{ "TXT: three strings concatenated", "txt.example.com", DNS_T_TXT, DNS_OK, 1,
	  "n=3 len=28:v=spf1 ip4:192.0.2.0/24 -all", 200, 300 },
	{ "TXT: embedded NUL kept", "nul.example.com", DNS_T_TXT, DNS_OK, 1,
	  "n=2 len=4:a\\000bc", 200, 300 },
	{ "TXT: 8 long RRs over TCP (answer > 512 bytes)", "big.example.com", DNS_T_TXT, DNS_OK,
	  8, NULL, 200, 300 },
	{ "PTR: IPv4", "1.2.0.192.in-addr.arpa", DNS_T_PTR, DNS_OK, 1, "a.example.com", 200, 300 },
	{ "PTR: IPv6 nibbles",
	  "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", DNS_T_PTR,
	  DNS_OK, 1, "v6.example.com", 200, 300 },
	{ "CNAME chased to A, TTL min with the CNAME", "alias.example.com", DNS_T_A, DNS_OK, 2,
	  "192.0.2.1 | 192.0.2.2", 50, 60 },
	{ "CNAME chain of two chased", "alias2.example.com", DNS_T_A, DNS_OK, 2,
	  "192.0.2.1 | 192.0.2.2", 50, 60 },
	{ "CNAME asked for itself is not chased", "alias2.example.com", DNS_T_CNAME, DNS_OK, 1,
	  "alias.example.com", 500, 600 },
	{ "wildcard", "q.many.example.com", DNS_T_A, DNS_OK, 1, "192.0.2.77", 200, 300 },
	{ "NXDOMAIN: negative TTL = SOA minimum", "nope.example.com", DNS_T_A, DNS_NXDOMAIN, 0,
	  "", 100, 120 },
	{ "NXDOMAIN outside the test data (no recursion)", "www.debian.org", DNS_T_A,
	  DNS_NXDOMAIN, 0, "", 100, 120 },
	{ "NODATA: name exists, no MX", "a.example.com", DNS_T_MX, DNS_NODATA, 0, "", 100, 120 },
	{ "NODATA through a CNAME", "alias.example.com", DNS_T_TXT, DNS_NODATA, 0, "", 1, 120 },
	{ "REFUSED is SERVFAIL", "x.refused.example.com", DNS_T_TXT, DNS_SERVFAIL, 0, "", 0, 0 },
	{ "SERVFAIL (DNSSEC-bogus subtree)", "x.sf.example.com", DNS_T_TXT, DNS_SERVFAIL, 0, "",
	  0, 0 },
	{ "bad name: empty label", "a..example.com", DNS_T_A, DNS_ERROR, 0, "", 0, 0 },
	{ "bad name: empty", "", DNS_T_A, DNS_ERROR, 0, "", 0, 0 },
	{ "bad name: label of 64", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
	  DNS_T_A, DNS_ERROR, 0, "", 0, 0 },
	/* SPF macros expand to any bytes; such a label goes out escaped (\\032) */
	{ "odd bytes in a label are asked, escaped", "a b.example.com", DNS_T_A, DNS_NXDOMAIN, 0,
	  "", 100, 120 },
	{ "bad name: label of 64 odd bytes", "                                                                .com",
	  DNS_T_A, DNS_ERROR, 0, "", 0, 0 },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void case_check(const struct dns_case *c, const struct result *res)
{
	if (res->status != c->status)
		fail_msg("%s: status %s, want %s", c->name, dns_status_name(res->status),
			 dns_status_name(c->status));
	assert_int_equal(res->n, c->n);
	if (c->text)
		assert_string_equal(res->text, c->text);
	if (res->ttl < c->ttl_min || res->ttl > c->ttl_max)
		fail_msg("%s: ttl %u not in [%u, %u]", c->name, res->ttl, c->ttl_min, c->ttl_max);
	if (c->status != DNS_ERROR && strchr(c->name, '.') && !strchr(c->name, ' '))
		assert_int_equal(strncmp(res->qname, c->name, strlen(res->qname)), 0);
	else if (c->status != DNS_ERROR && strchr(c->name, ' '))
		assert_string_equal(res->qname, "a\\032b.example.com");	/* escaped as ns_name_ntop does */
}

static void test_case_async(void **state)
{
	const struct dns_case *c = *state;
	struct dns_resolver *r = resolver_new(g_base, 2000, 2);
	struct result res = { 0 };

	struct dns_req *req = dns_query(r, c->name, c->type, on_answer, &res);
	assert_non_null(req);
	assert_int_equal(res.calls, 0);		/* never before dns_query returns */
	loop_until(&res.calls, 1);
	case_check(c, &res);
	free(res.text);
	dns_free(&r);
	assert_null(r);
}

static void test_case_sync(void **state)
{
	const struct dns_case *c = *state;
	struct dns_resolver *r = resolver_new(NULL, 2000, 2);
	struct result res = { 0 };

	struct dns_answer *a = dns_query_sync(r, c->name, c->type, 0);
	assert_non_null(a);
	result_fill(&res, a);
	case_check(c, &res);
	free(res.text);
	dns_answer_free(&a);
	assert_null(a);
	dns_free(&r);
}

/* ------------------------------------------------------- other cases */

static void test_timeout_async(void **state)
{
	struct dns_resolver *r = resolver_new(g_base, 300, 2);
	struct result res = { 0 };

	(void)state;
	long long t0 = now_ms();
	dns_query(r, "x.timeout.example.com", DNS_T_A, on_answer, &res);
	loop_until(&res.calls, 1);
	long long took = now_ms() - t0;
	assert_int_equal(res.status, DNS_TIMEOUT);
	assert_true(dns_status_is_temp(res.status));
	if (took < 550 || took > 10000)	/* 300 ms x 2 tries */
		fail_msg("timeout after %lld ms, want about 600", took);
	free(res.text);
	/* c-ares still retries (300 + 600 ms): its timer must fire with no
	 * socket activity at all, then the request is released */
	assert_int_equal(dns_pending(r), 1);
	while (dns_pending(r) > 0) {
		if (now_ms() - t0 > WATCHDOG_MS)
			fail_msg("c-ares never gave up: timer not driven");
		event_base_loop(g_base, EVLOOP_ONCE);
	}
	assert_true(now_ms() - t0 >= 800);
	assert_int_equal(res.calls, 1);
	dns_free(&r);
}

static void test_timeout_sync_deadline(void **state)
{
	struct dns_resolver *r = resolver_new(NULL, 5000, 2);

	(void)state;
	long long t0 = now_ms();
	struct dns_answer *a = dns_query_sync(r, "x.timeout.example.com", DNS_T_TXT, 400);
	long long took = now_ms() - t0;
	assert_int_equal(a->status, DNS_TIMEOUT);
	if (took < 390 || took > 10000)
		fail_msg("sync deadline 400 ms took %lld ms", took);
	dns_answer_free(&a);
	/* the resolver stays usable after a cancelled query */
	a = dns_query_sync(r, "a.example.com", DNS_T_A, 5000);
	assert_int_equal(a->status, DNS_OK);
	dns_answer_free(&a);
	dns_free(&r);
}

static void test_timeout_sync_default(void **state)
{
	struct dns_resolver *r = resolver_new(NULL, 200, 2);

	(void)state;
	long long t0 = now_ms();
	struct dns_answer *a = dns_query_sync(r, "y.timeout.example.com", DNS_T_A, 0);
	long long took = now_ms() - t0;
	assert_int_equal(a->status, DNS_TIMEOUT);
	if (took < 390 || took > 10000)	/* 200 ms x 2 tries */
		fail_msg("sync default deadline took %lld ms", took);
	dns_answer_free(&a);
	dns_free(&r);
}

static void test_cancel(void **state)
{
	struct dns_resolver *r = resolver_new(g_base, 2000, 2);
	struct result cancelled[3] = { { 0 } }, ok = { 0 };

	(void)state;
	dns_cancel(dns_query(r, "a.example.com", DNS_T_A, on_answer, &cancelled[0]));
	dns_cancel(dns_query(r, "bad..name", DNS_T_A, on_answer, &cancelled[1]));
	struct dns_req *slow = dns_query(r, "z.timeout.example.com", DNS_T_A, on_answer,
					 &cancelled[2]);
	dns_query(r, "v6.example.com", DNS_T_AAAA, on_answer, &ok);
	dns_cancel(NULL);
	loop_until(&ok.calls, 1);
	dns_cancel(slow);
	assert_int_equal(ok.status, DNS_OK);
	for (int i = 0; i < 3; i++)
		assert_int_equal(cancelled[i].calls, 0);
	free(ok.text);
	long long end = now_ms() + WATCHDOG_MS;
	while (dns_pending(r) > 1 && now_ms() < end)	/* a.example.com may still come */
		event_base_loop(g_base, EVLOOP_ONCE);
	assert_int_equal(dns_pending(r), 1);	/* the cancelled slow one */
	assert_int_equal(cancelled[0].calls, 0);
	dns_free(&r);	/* frees it */
}

static void test_free_pending(void **state)
{
	struct dns_resolver *r = resolver_new(g_base, 2000, 2);
	struct result res[3] = { { 0 } };

	(void)state;
	dns_query(r, "a.example.com", DNS_T_A, on_answer, &res[0]);
	dns_query(r, "x.timeout.example.com", DNS_T_A, on_answer, &res[1]);
	dns_query(r, "bad..name", DNS_T_A, on_answer, &res[2]);
	dns_free(&r);
	assert_null(r);
	event_base_loop(g_base, EVLOOP_NONBLOCK);
	for (int i = 0; i < 3; i++)
		assert_int_equal(res[i].calls, 0);
	dns_free(&r);	/* NULL is fine */
}

struct many {
	int calls, ok;
};

static void on_many(void *arg, const struct dns_answer *a)
{
	struct many *m = arg;
	m->calls++;
	if (a->status == DNS_OK && a->n == 1 && a->rr[0].u.a.s_addr == htonl(0xc000024d))
		m->ok++;
}

static void test_many_concurrent(void **state)
{
	struct dns_resolver *r = resolver_new(g_base, 2000, 3);
	struct many m = { 0, 0 };
	char name[64];
	enum { N = 200 };

	(void)state;
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "q%d.many.example.com", i);
		assert_non_null(dns_query(r, name, DNS_T_A, on_many, &m));
	}
	loop_until(&m.calls, N);
	assert_int_equal(m.ok, N);
	dns_free(&r);
}

/* a callback may start another query on the same resolver */
struct chain {
	struct dns_resolver *r;
	struct result second;
	int first_calls;
};

static void on_first(void *arg, const struct dns_answer *a)
{
	struct chain *c = arg;
	c->first_calls++;
	assert_int_equal(a->status, DNS_OK);
	assert_non_null(dns_query(c->r, a->rr[0].u.mx.host, DNS_T_A, on_answer, &c->second));
}

static void test_query_from_callback(void **state)
{
	struct chain c = { .r = resolver_new(g_base, 2000, 2) };

	(void)state;
	dns_query(c.r, "nullmx.example.com", DNS_T_MX, on_first, &c);
	loop_until(&c.second.calls, 1);
	assert_int_equal(c.first_calls, 1);
	assert_int_equal(c.second.status, DNS_ERROR);	/* host "" is not a name */
	free(c.second.text);
	c.second.text = NULL;
	c.second.calls = 0;
	dns_query(c.r, "v6.example.com", DNS_T_AAAA, on_answer, &c.second);
	loop_until(&c.second.calls, 1);
	assert_int_equal(c.second.status, DNS_OK);
	free(c.second.text);
	dns_free(&c.r);
}

static void test_dead_server(void **state)
{
	const char *servers[] = { "127.0.0.1:9" };	/* discard: nothing listens */
	struct dns_opts o = { servers, 1, 300, 1 };
	struct dns_resolver *r = dns_new(NULL, &o, NULL);

	(void)state;
	assert_non_null(r);
	struct dns_answer *a = dns_query_sync(r, "a.example.com", DNS_T_A, 0);
	assert_true(dns_status_is_temp(a->status));
	dns_answer_free(&a);
	dns_free(&r);
}

static void test_failover(void **state)
{
	const char *servers[] = { "127.0.0.1:9", g_addr };	/* first one is dead */
	struct dns_opts o = { servers, 2, 500, 2 };
	struct dns_resolver *ra = dns_new(g_base, &o, NULL), *rs = dns_new(NULL, &o, NULL);
	struct result res = { 0 };

	(void)state;
	dns_query(ra, "v6.example.com", DNS_T_AAAA, on_answer, &res);
	loop_until(&res.calls, 1);
	assert_int_equal(res.status, DNS_OK);
	free(res.text);
	struct dns_answer *a = dns_query_sync(rs, "a.example.com", DNS_T_A, 0);
	assert_int_equal(a->status, DNS_OK);
	dns_answer_free(&a);
	dns_free(&ra);
	dns_free(&rs);
}

/* dns_query_sync from several threads, one resolver each */
enum { NTHREADS = 4, PER_THREAD = 25 };

static void *sync_thread(void *arg)
{
	struct dns_resolver *r = resolver_new(NULL, 2000, 3);
	char name[64];
	intptr_t ok = 0;

	for (int i = 0; i < PER_THREAD; i++) {
		snprintf(name, sizeof(name), "t%d-%d.many.example.com", (int)(intptr_t)arg, i);
		struct dns_answer *a = dns_query_sync(r, name, DNS_T_A, 0);
		ok += a->status == DNS_OK && a->n == 1;
		dns_answer_free(&a);
	}
	dns_free(&r);
	return (void *)ok;
}

static void test_sync_threads(void **state)
{
	pthread_t t[NTHREADS];

	(void)state;
	for (intptr_t i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, sync_thread, (void *)i), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *ok;
		assert_int_equal(pthread_join(t[i], &ok), 0);
		assert_int_equal((intptr_t)ok, PER_THREAD);
	}
}

static void test_server_lists(void **state)
{
	static const char *good[] = { "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]", "[::1]:53",
				      "2001:db8::1" };
	static const char *bad[] = { "300.1.1.1", "127.0.0.1:0", "127.0.0.1:65536", "[::1",
				     "[::1]x", "example.com", "", "127.0.0.1:", "[127.0.0.1]:53",
				     "127.0.0.1:+53", "1.2.3.4:53,5.6.7.8" };
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct dns_opts o = { &good[i], 1, 0, 0 };
		char *err = NULL;
		struct dns_resolver *r = dns_new(g_base, &o, &err);
		if (!r)
			fail_msg("\"%s\" rejected: %s", good[i], err);
		assert_null(err);
		dns_free(&r);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dns_opts o = { &bad[i], 1, 0, 0 };
		char *err = NULL;
		struct dns_resolver *r = dns_new(NULL, &o, &err);
		if (r)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_non_null(err);
		assert_non_null(strstr(err, "dns_servers"));
		free(err);
	}
	/* no servers: /etc/resolv.conf (or c-ares' default) */
	struct dns_resolver *r = dns_new(g_base, NULL, NULL);
	assert_non_null(r);
	dns_free(&r);
}

static void test_status_names(void **state)
{
	(void)state;
	assert_string_equal(dns_status_name(DNS_OK), "ok");
	assert_string_equal(dns_status_name(DNS_NODATA), "nodata");
	assert_string_equal(dns_status_name(DNS_NXDOMAIN), "nxdomain");
	assert_string_equal(dns_status_name(DNS_SERVFAIL), "servfail");
	assert_string_equal(dns_status_name(DNS_TIMEOUT), "timeout");
	assert_string_equal(dns_status_name(DNS_ERROR), "error");
	assert_false(dns_status_is_temp(DNS_OK));
	assert_false(dns_status_is_temp(DNS_NODATA));
	assert_false(dns_status_is_temp(DNS_NXDOMAIN));
	assert_true(dns_status_is_temp(DNS_SERVFAIL));
}

/* ------------------------------------------------------- name helpers */

#define V6NIB "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
static const struct {
	const char *addr, *zone, *want;	/* zone NULL: dns_reverse_name; want NULL: -1 */
} names[] = {
	{ "192.0.2.1", NULL, "1.2.0.192.in-addr.arpa" },
	{ "2001:db8::1", NULL, V6NIB ".ip6.arpa" },
	{ "::ffff:192.0.2.1", NULL,
	  "1.0.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa" },
	{ "127.0.0.2", "zen.example.org", "2.0.0.127.zen.example.org" },
	{ "2001:DB8::1", "bl.example.org", V6NIB ".bl.example.org" },
	{ "example.com", NULL, NULL },
	{ "192.0.2", NULL, NULL },
	{ "192.0.2.1/24", NULL, NULL },
	{ "", NULL, NULL },
	{ "192.0.2.1", "", NULL },
};

static void test_name_helpers(void **state)
{
	char out[128];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int rc = names[i].zone ? dns_dnsbl_name(names[i].addr, names[i].zone, out, sizeof(out))
				       : dns_reverse_name(names[i].addr, out, sizeof(out));
		if (!names[i].want) {
			if (rc != -1)
				fail_msg("\"%s\" gave \"%s\", want -1", names[i].addr, out);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(out, names[i].want);
	}
	/* output too short: -1, not a truncated name */
	assert_int_equal(dns_reverse_name("192.0.2.1", out, 22), -1);
	assert_int_equal(dns_reverse_name("192.0.2.1", out, 23), 0);
	assert_int_equal(dns_reverse_name("2001:db8::1", out, 72), -1);
	assert_int_equal(dns_reverse_name("2001:db8::1", out, 73), 0);
	assert_int_equal(dns_dnsbl_name("2001:db8::1", "x", out, 10), -1);
	assert_int_equal(dns_reverse_name(NULL, out, sizeof(out)), -1);
}

/* ------------------------------------------------------- raw decoder */

/* pkt - a tiny packet builder for hand-made answers. */
struct pkt {
	unsigned char b[8192];
	size_t len;
};

static void put(struct pkt *p, const void *d, size_t n)
{
	assert_true(p->len + n <= sizeof(p->b));
	memcpy(p->b + p->len, d, n);
	p->len += n;
}

static void put16(struct pkt *p, unsigned v)
{
	unsigned char b[2] = { (unsigned char)(v >> 8), (unsigned char)v };
	put(p, b, 2);
}

static void put32(struct pkt *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p, v & 0xffff);
}

/* header with flags, then question "a.example" IN qtype (name at offset 12). */
static void pkt_start(struct pkt *p, unsigned flags, unsigned an, unsigned ns, unsigned qtype)
{
	p->len = 0;
	put16(p, 0x1234);
	put16(p, flags);
	put16(p, 1), put16(p, an), put16(p, ns), put16(p, 0);
	put(p, "\1a\7example\0", 11);
	put16(p, qtype), put16(p, 1);
}

/* rr owned by the question name (pointer to offset 12). */
static void pkt_rr(struct pkt *p, unsigned type, uint32_t ttl, const void *rd, size_t rdlen)
{
	put(p, "\xc0\x0c", 2);
	put16(p, type), put16(p, 1), put32(p, ttl), put16(p, (unsigned)rdlen);
	put(p, rd, rdlen);
}

static struct dns_answer *decode(const struct pkt *p, const char *qname, enum dns_type t)
{
	return dns_answer_decode(p->b, p->len, qname, t);
}

static void expect_status(const struct pkt *p, const char *qname, enum dns_type t,
			  enum dns_status want)
{
	struct dns_answer *a = decode(p, qname, t);
	if (a->status != want)
		fail_msg("status %s, want %s", dns_status_name(a->status), dns_status_name(want));
	dns_answer_free(&a);
}

static void test_decode_malformed(void **state)
{
	struct pkt p;

	(void)state;
	pkt_start(&p, 0x8180, 1, 0, DNS_T_A);
	pkt_rr(&p, DNS_T_A, 60, "\xc0\0\2\1", 4);
	expect_status(&p, "a.example", DNS_T_A, DNS_OK);
	for (size_t cut = 0; cut < p.len; cut++) {	/* every truncation */
		struct dns_answer *a = dns_answer_decode(p.b, cut, "a.example", DNS_T_A);
		assert_int_equal(a->status, DNS_ERROR);
		dns_answer_free(&a);
	}
	p.b[2] &= 0x7f;			/* QR = 0: a query, not a response */
	expect_status(&p, "a.example", DNS_T_A, DNS_ERROR);
	pkt_start(&p, 0x8180, 1, 0, DNS_T_A);
	pkt_rr(&p, DNS_T_A, 60, "\xc0\0\2", 3);	/* A with 3 bytes */
	expect_status(&p, "a.example", DNS_T_A, DNS_ERROR);
	pkt_start(&p, 0x8180, 1, 0, DNS_T_TXT);
	pkt_rr(&p, DNS_T_TXT, 60, "\3ab\5cd", 6);	/* string overruns rdata */
	expect_status(&p, "a.example", DNS_T_TXT, DNS_ERROR);
	pkt_start(&p, 0x8180, 1, 0, DNS_T_MX);
	pkt_rr(&p, DNS_T_MX, 60, "\0\12\xc0\x30", 4);	/* pointer past the end */
	expect_status(&p, "a.example", DNS_T_MX, DNS_ERROR);
	pkt_start(&p, 0x8180, 1, 0, DNS_T_PTR);
	pkt_rr(&p, DNS_T_PTR, 60, "\1b\xc0\x27", 4);	/* pointer back to itself: loop */
	expect_status(&p, "a.example", DNS_T_PTR, DNS_ERROR);
	pkt_start(&p, 0x8180, 1, 0, DNS_T_A);
	put(&p, "\xc0\x1b", 2);			/* owner name: pointer to itself */
	put16(&p, DNS_T_A), put16(&p, 1), put32(&p, 1), put16(&p, 4), put(&p, "\1\2\3\4", 4);
	expect_status(&p, "a.example", DNS_T_A, DNS_ERROR);
	pkt_start(&p, 0x8180, 1, 0, DNS_T_A);
	pkt_rr(&p, DNS_T_A, 60, "\1\2\3\4", 4);
	put(&p, "", 1);				/* trailing garbage */
	expect_status(&p, "a.example", DNS_T_A, DNS_ERROR);
	expect_status(&p, "a.example", DNS_T_A, DNS_ERROR);
	struct dns_answer *a = dns_answer_decode(NULL, 0, NULL, DNS_T_A);
	assert_int_equal(a->status, DNS_ERROR);
	assert_string_equal(a->qname, "");
	dns_answer_free(&a);
}

static void test_decode_semantics(void **state)
{
	struct pkt p;
	struct dns_answer *a;

	(void)state;
	/* other owners, other classes, other types are ignored; qname from the question */
	pkt_start(&p, 0x8180, 4, 0, DNS_T_A);
	pkt_rr(&p, DNS_T_A, 0x80000000u, "\1\2\3\4", 4);	/* TTL >= 2^31 reads as 0 */
	pkt_rr(&p, DNS_T_AAAA, 60, "0123456789abcdef", 16);
	put(&p, "\1b\xc0\x0e", 4);				/* b.example */
	put16(&p, DNS_T_A), put16(&p, 1), put32(&p, 1), put16(&p, 4), put(&p, "\5\6\7\10", 4);
	put(&p, "\xc0\x0c", 2);					/* class CH */
	put16(&p, DNS_T_A), put16(&p, 3), put32(&p, 1), put16(&p, 4), put(&p, "\5\6\7\10", 4);
	a = decode(&p, NULL, DNS_T_A);
	assert_int_equal(a->status, DNS_OK);
	assert_string_equal(a->qname, "a.example");
	assert_int_equal(a->n, 1);
	assert_int_equal(a->ttl, 0);
	dns_answer_free(&a);
	/* NODATA: negative TTL is min(SOA TTL, SOA minimum) */
	pkt_start(&p, 0x8180, 0, 1, DNS_T_A);
	struct pkt soa = { .len = 0 };
	put(&soa, "\2ns\0\2hm\0", 8);
	put32(&soa, 1), put32(&soa, 2), put32(&soa, 3), put32(&soa, 4), put32(&soa, 900);
	pkt_rr(&p, DNS_T_SOA, 77, soa.b, soa.len);
	a = decode(&p, "A.Example.", DNS_T_A);
	assert_int_equal(a->status, DNS_NODATA);
	assert_string_equal(a->qname, "A.Example");
	assert_int_equal(a->ttl, 77);
	dns_answer_free(&a);
	p.b[3] = 0x83;						/* NXDOMAIN */
	a = decode(&p, "a.example", DNS_T_A);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	assert_int_equal(a->ttl, 77);
	dns_answer_free(&a);
	p.b[3] = 0x82;						/* SERVFAIL */
	expect_status(&p, "a.example", DNS_T_A, DNS_SERVFAIL);
	p.b[3] = 0x85;						/* REFUSED */
	expect_status(&p, "a.example", DNS_T_A, DNS_SERVFAIL);
	/* CNAME loop a -> a: no data */
	pkt_start(&p, 0x8180, 1, 0, DNS_T_A);
	pkt_rr(&p, DNS_T_CNAME, 60, "\xc0\x0c", 2);
	expect_status(&p, "a.example", DNS_T_A, DNS_NODATA);
}

static void test_decode_cap(void **state)
{
	struct pkt p;

	(void)state;
	pkt_start(&p, 0x8180, 300, 0, DNS_T_A);
	for (unsigned i = 0; i < 300; i++) {
		unsigned char ip[4] = { 10, 0, (unsigned char)(i >> 8), (unsigned char)i };
		pkt_rr(&p, DNS_T_A, 60, ip, 4);
	}
	struct dns_answer *a = decode(&p, "a.example", DNS_T_A);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, DNS_MAX_RR);
	dns_answer_free(&a);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_timeout_async),
		cmocka_unit_test(test_timeout_sync_deadline),
		cmocka_unit_test(test_timeout_sync_default),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_free_pending),
		cmocka_unit_test(test_many_concurrent),
		cmocka_unit_test(test_query_from_callback),
		cmocka_unit_test(test_dead_server),
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_sync_threads),
		cmocka_unit_test(test_server_lists),
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_name_helpers),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_decode_semantics),
		cmocka_unit_test(test_decode_cap),
	};
	enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]) };
	static struct CMUnitTest tests[2 * NCASES + NFIXED];
	static char titles[2 * NCASES][128];

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < NCASES; i++) {
		snprintf(titles[2 * i], sizeof(titles[0]), "async: %s", cases[i].title);
		snprintf(titles[2 * i + 1], sizeof(titles[0]), "sync: %s", cases[i].title);
		tests[2 * i] = (struct CMUnitTest){ titles[2 * i], test_case_async, NULL, NULL,
						     (void *)&cases[i] };
		tests[2 * i + 1] = (struct CMUnitTest){ titles[2 * i + 1], test_case_sync, NULL,
							 NULL, (void *)&cases[i] };
	}
	memcpy(tests + 2 * NCASES, fixed, sizeof(fixed));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
