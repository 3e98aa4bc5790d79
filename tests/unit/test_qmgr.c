/*
 * test_qmgr: a real event loop, a route callback to temporary Maildirs,
 * and the queue on disk: delivery exactly once, deferral and retry,
 * crash resume, corrupt files, bounces and expiry, a bounded backlog,
 * stop and restart.
 */
#include "mta/qmgr.h"
#include "mta/maildir.h"
#include "mta/queue.h"
#include "lib/log.h"
#include "lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

struct ctx {
	char *root;
	char qdir[4096], logpath[4096];
	struct event_base *base;
	struct qmgr *q;
	struct qmgr_opts opts;
	int defer_on;		/* route "later@" to DEFER while set */
	char pathbuf[4096];
	size_t max_open, max_jobs;
	int bounces;
	char bounce_dsn[16];
	int stopped;
	int (*pred)(struct ctx *);
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* later@ -> DEFER (while defer_on), unknown@ -> FAIL, else Maildir root/mail/<local>/ */
static int route(void *arg, const char *addr, struct qmgr_route *out)
{
	struct ctx *c = arg;
	if (strncmp(addr, "later@", 6) == 0 && c->defer_on) {
		out->kind = QMGR_ROUTE_DEFER;
		out->reason = "4.2.1 mailbox busy, try later";
		return 0;
	}
	if (strncmp(addr, "unknown@", 8) == 0) {
		out->kind = QMGR_ROUTE_FAIL;
		out->reason = "5.1.1 <unknown@example.org>: user unknown";
		return 0;
	}
	const char *at = strchr(addr, '@');
	snprintf(c->pathbuf, sizeof c->pathbuf, "%s/mail/%.*s/", c->root,
		 (int)(at ? at - addr : (long)strlen(addr)), addr);
	out->kind = QMGR_ROUTE_MAILDIR;
	out->path = c->pathbuf;
	return 0;
}

static void on_bounce(void *arg, const struct queue_msg *m, size_t rcpt, const char *dsn,
		      const char *reason)
{
	struct ctx *c = arg;
	(void)reason;
	assert_int_equal(m->env.rcpt[rcpt].status, QUEUE_RCPT_FAILED);
	c->bounces++;
	snprintf(c->bounce_dsn, sizeof c->bounce_dsn, "%s", dsn);
}

static void on_stopped(void *arg)
{
	struct ctx *c = arg;
	c->stopped = 1;
	event_base_loopbreak(c->base);
}

static int setup(void **state)
{
	struct ctx *c = xcalloc(1, sizeof *c);
	c->root = xstrdup("/tmp/test_qmgr.XXXXXX");
	assert_non_null(mkdtemp(c->root));
	snprintf(c->qdir, sizeof c->qdir, "%s/q", c->root);
	snprintf(c->logpath, sizeof c->logpath, "%s/maillog", c->root);
	char *err = NULL;
	assert_int_equal(queue_init(c->qdir, &err), 0);
	const char *lerr;
	assert_int_equal(log_init("test_qmgr", c->logpath, LOG_FORMAT_PLAIN, &lerr), 0);
	c->base = event_base_new();
	c->opts = (struct qmgr_opts){ .qdir = c->qdir, .myhostname = "mx.example.org",
				      .workers = 4, .route = route, .route_arg = c,
				      .bounce = on_bounce, .bounce_arg = c,
				      .stopped = on_stopped, .stopped_arg = c };
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	qmgr_free(&c->q);
	event_base_free(c->base);
	/* not log_set_stderr_only(): it keeps own_fd set, and the next log_init
	 * would then close fd 2 (reported as a lib/log.c bug) */
	const char *lerr;
	log_init("test_qmgr", "/dev/stderr", LOG_FORMAT_PLAIN, &lerr);
	if (!getenv("KEEP")) nftw(c->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(c->root);
	free(c);
	return 0;
}

/* ---- helpers ---- */

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct ctx *c = arg;
	(void)fd;
	(void)what;
	struct qmgr_stats st;
	qmgr_get_stats(c->q, &st);
	if (st.open > c->max_open)
		c->max_open = st.open;
	if (st.jobs > c->max_jobs)
		c->max_jobs = st.jobs;
	if (c->pred && c->pred(c))
		event_base_loopbreak(c->base);
}

/* Drive the loop until pred holds or timeout_s passes; returns pred(). */
static int run_until(struct ctx *c, int (*pred)(struct ctx *), double timeout_s)
{
	c->pred = pred;
	struct event *t = event_new(c->base, -1, EV_PERSIST, tick, c);
	struct timeval every = { 0, 5000 };
	evtimer_add(t, &every);
	struct timeval tmo = { (time_t)timeout_s, 0 };
	event_base_loopexit(c->base, &tmo);
	event_base_dispatch(c->base);
	event_free(t);
	c->pred = NULL;
	return pred(c);
}

static struct qmgr_stats stats(struct ctx *c)
{
	struct qmgr_stats st;
	qmgr_get_stats(c->q, &st);
	return st;
}

static size_t count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static size_t qcount(struct ctx *c, const char *sub)
{
	char p[8192];
	snprintf(p, sizeof p, "%s/%s", c->qdir, sub);
	return count_dir(p);
}

/* files in root/mail/<user>/new + cur */
static size_t mail_count(struct ctx *c, const char *user)
{
	char p[8192];
	snprintf(p, sizeof p, "%s/mail/%s/new", c->root, user);
	size_t n = count_dir(p);
	snprintf(p, sizeof p, "%s/mail/%s/cur", c->root, user);
	return n + count_dir(p);
}

/* commit a message to the given recipients (NULL-terminated); returns its id */
static char *commit_msg(struct ctx *c, double arrival, const char *const *rcpts, const char *orig0)
{
	char *err = NULL;
	struct queue_writer *w = queue_writer_open(c->qdir, &err);
	assert_non_null(w);
	char *id = xstrdup(queue_writer_id(w));
	char body[10240];
	memset(body, 'b', sizeof body);
	for (size_t i = 76; i < sizeof body; i += 77)
		body[i] = '\n';
	assert_int_equal(queue_writer_write(w, "Subject: test\n\n", 15), 0);
	assert_int_equal(queue_writer_write(w, body, sizeof body), 0);
	struct queue_envelope env = { 0 };
	env.sender = xstrdup("sender@example.com");
	env.arrival = arrival;
	for (size_t i = 0; rcpts[i]; i++)
		queue_envelope_add_rcpt(&env, rcpts[i], i == 0 ? orig0 : NULL, 0, NULL);
	assert_int_equal(queue_writer_commit_sync(w, &env, &err), 0);
	queue_envelope_free(&env);
	return id;
}

static size_t log_count(struct ctx *c, const char *needle)
{
	FILE *fp = fopen(c->logpath, "r");
	assert_non_null(fp);
	char line[4096];
	size_t n = 0;
	while (fgets(line, sizeof line, fp))
		n += strstr(line, needle) != NULL;
	fclose(fp);
	return n;
}

static int all_gone(struct ctx *c)
{
	struct qmgr_stats st = stats(c);
	return st.messages == 0 && st.jobs == 0 && qcount(c, "active") == 0 &&
	       qcount(c, "deferred") == 0;
}

/* ---- tests ---- */

static void test_many_delivered_once(void **state)
{
	struct ctx *c = *state;
	static const char *const rcpts[] = { "u0@example.org", "u1@example.org",
					     "u2@example.org", NULL };
	enum { N = 40 };
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	for (int i = 0; i < N; i++) {
		char *id = commit_msg(c, wall_time(), rcpts, i == 0 ? "Alias@example.org" : NULL);
		qmgr_notify(c->q, id);
		qmgr_notify(c->q, id);	/* duplicates are ignored */
		free(id);
	}
	assert_true(run_until(c, all_gone, 30));
	for (int u = 0; u < 3; u++) {
		char user[16];
		snprintf(user, sizeof user, "u%d", u);
		assert_int_equal(mail_count(c, user), N);
	}
	struct qmgr_stats st = stats(c);
	assert_int_equal(st.sent, 3 * N);
	assert_int_equal(st.removed, N);
	assert_int_equal(log_count(c, "status=sent (delivered to maildir)"), 3 * N);
	assert_int_equal(log_count(c, ": removed"), N);
	assert_int_equal(log_count(c, "nrcpt=3 (queue active)"), N);
	assert_int_equal(log_count(c, "to=<u0@example.org>, orig_to=<Alias@example.org>, "
				      "relay=virtual"),
			 1);
	assert_int_equal(log_count(c, "orig_to="), 1);
	assert_int_equal(log_count(c, "dsn=2.0.0"), 3 * N);
	assert_true(c->max_jobs <= 4 * 2);
	/* finished queue files are kept as spares for new messages, a bounded number */
	assert_true(qcount(c, "spare") >= 1 && qcount(c, "spare") <= 256);
}

static int deferred_one(struct ctx *c)
{
	return stats(c).messages == 0 && qcount(c, "deferred") == 1 && mail_count(c, "ok") == 1;
}

static int deferred_twice(struct ctx *c)
{
	return deferred_one(c) && stats(c).deferred == 2;
}

static void test_defer_then_retry(void **state)
{
	struct ctx *c = *state;
	static const char *const rcpts[] = { "ok@example.org", "later@example.org", NULL };
	c->defer_on = 1;
	c->opts.minimal_backoff_time_s = 1;
	c->opts.maximal_backoff_time_s = 1;
	c->opts.queue_run_delay_s = 1;
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	char *id = commit_msg(c, wall_time(), rcpts, NULL);
	qmgr_notify(c->q, id);
	assert_true(run_until(c, deferred_one, 10));
	assert_int_equal(mail_count(c, "later"), 0);
	/* ok@'s DONE mark (written without fdatasync by its delivery, the last
	 * one of the message) went to deferred/ with it; later@ is PENDING */
	struct queue_msg m;
	char *err = NULL;
	assert_int_equal(queue_msg_open(c->qdir, QUEUE_DEFERRED, id, &m, &err), 0);
	assert_int_equal(m.env.rcpt[0].status, QUEUE_RCPT_DONE);
	assert_int_equal(m.env.rcpt[1].status, QUEUE_RCPT_PENDING);
	queue_msg_close(&m);
	assert_int_equal(log_count(c, "to=<later@example.org>, relay=none"), 1);
	assert_int_equal(log_count(c, "dsn=4.2.1, status=deferred (mailbox busy, try later)"), 1);
	char p[8192];
	snprintf(p, sizeof p, "%s/defer/%s", c->qdir, id);
	assert_int_equal(access(p, F_OK), 0);
	/* retried on the next queue run (1 s), deferred again */
	assert_true(run_until(c, deferred_twice, 10));
	c->defer_on = 0;
	assert_true(run_until(c, all_gone, 10));
	assert_int_equal(qcount(c, "deferred"), 0);
	assert_int_equal(mail_count(c, "later"), 1);
	assert_int_equal(mail_count(c, "ok"), 1);
	assert_int_equal(access(p, F_OK), -1);
	assert_int_equal(log_count(c, "to=<later@example.org>, relay=virtual"), 1);
	assert_int_equal(log_count(c, "to=<ok@example.org>, relay=virtual"), 1);
	free(id);
}

static int deferred_only(struct ctx *c)
{
	return stats(c).messages == 0 && qcount(c, "deferred") == 1;
}

static void test_flush(void **state)
{
	struct ctx *c = *state;
	static const char *const rcpts[] = { "later@example.org", NULL };
	c->defer_on = 1;
	c->q = qmgr_new(c->base, &c->opts);	/* default backoff: 300 s */
	qmgr_start(c->q);
	char *id = commit_msg(c, wall_time(), rcpts, NULL);
	qmgr_notify(c->q, id);
	free(id);
	assert_true(run_until(c, deferred_only, 10));
	c->defer_on = 0;
	qmgr_flush(c->q);
	assert_true(run_until(c, all_gone, 10));
	assert_int_equal(mail_count(c, "later"), 1);
}

/* A previous run delivered rcpt 0 and 2 (marked), and rcpt 1 without the mark. */
static void test_resume_after_crash(void **state)
{
	struct ctx *c = *state;
	static const char *const rcpts[] = { "a@example.org", "b@example.org", "d@example.org",
					     "e@example.org", NULL };
	char *id = commit_msg(c, wall_time() - 5, rcpts, NULL);
	struct queue_msg m;
	char *err = NULL, path[8192], reason[256];
	assert_int_equal(queue_msg_open(c->qdir, QUEUE_ACTIVE, id, &m, &err), 0);
	assert_int_equal(queue_msg_mark(&m, 0, QUEUE_RCPT_DONE), 0);
	assert_int_equal(queue_msg_mark(&m, 2, QUEUE_RCPT_DONE), 0);
	snprintf(path, sizeof path, "%s/mail/b/", c->root);
	struct maildir_req req = { path, "mx.example.org", &m, 1, 0 };
	assert_int_equal(maildir_deliver(&req, NULL, reason, sizeof reason), MAILDIR_OK);
	queue_msg_close(&m);
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	assert_true(run_until(c, all_gone, 10));
	assert_int_equal(mail_count(c, "a"), 0);
	assert_int_equal(mail_count(c, "b"), 1);
	assert_int_equal(mail_count(c, "d"), 0);
	assert_int_equal(mail_count(c, "e"), 1);
	assert_int_equal(log_count(c, "status=sent"), 2);
	assert_int_equal(log_count(c, "already delivered to maildir"), 1);
	assert_int_equal(stats(c).removed, 1);
	free(id);
}

static int one_removed_one_corrupt(struct ctx *c)
{
	struct qmgr_stats st = stats(c);
	return all_gone(c) && st.removed == 1 && st.corrupt == 1;
}

static void test_corrupt_at_startup(void **state)
{
	struct ctx *c = *state;
	static const char *const rcpts[] = { "u@example.org", NULL };
	char *good = commit_msg(c, wall_time(), rcpts, NULL);
	char *bad = commit_msg(c, wall_time(), rcpts, NULL);
	char p[8192];
	snprintf(p, sizeof p, "%s/active/%s", c->qdir, bad);
	assert_int_equal(truncate(p, 100), 0);
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	assert_true(run_until(c, one_removed_one_corrupt, 10));
	snprintf(p, sizeof p, "%s/corrupt/%s", c->qdir, bad);
	assert_int_equal(access(p, F_OK), 0);
	assert_int_equal(mail_count(c, "u"), 1);
	char needle[256];
	snprintf(needle, sizeof needle, "%s: corrupt queue file moved to corrupt/: ", bad);
	assert_int_equal(log_count(c, needle), 1);
	free(good);
	free(bad);
}

static void test_bounce_and_expiry(void **state)
{
	struct ctx *c = *state;
	static const char *const r1[] = { "unknown@example.org", "v@example.org", NULL };
	static const char *const r2[] = { "later@example.org", NULL };
	c->defer_on = 1;
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	char *id1 = commit_msg(c, wall_time(), r1, NULL);
	qmgr_notify(c->q, id1);
	assert_true(run_until(c, all_gone, 10));
	assert_int_equal(c->bounces, 1);
	assert_string_equal(c->bounce_dsn, "5.1.1");
	assert_int_equal(log_count(c, "to=<unknown@example.org>, relay=none"), 1);
	assert_int_equal(log_count(c, "dsn=5.1.1, status=bounced (<unknown@example.org>: user "
				      "unknown)"),
			 1);
	assert_int_equal(mail_count(c, "v"), 1);
	char *id2 = commit_msg(c, wall_time() - 6 * 86400, r2, NULL);	/* older than 5 days */
	qmgr_notify(c->q, id2);
	assert_true(run_until(c, all_gone, 10));
	assert_int_equal(c->bounces, 2);
	assert_string_equal(c->bounce_dsn, "4.4.7");
	assert_int_equal(log_count(c, "status=bounced (message expired"), 1);
	assert_int_equal(qcount(c, "deferred"), 0);
	assert_int_equal(stats(c).removed, 2);
	free(id1);
	free(id2);
}

static void test_backlog_bounded(void **state)
{
	struct ctx *c = *state;
	static const char *const rcpts[] = { "big@example.org", NULL };
	enum { N = 400 };
	for (int i = 0; i < N; i++)
		free(commit_msg(c, wall_time(), rcpts, NULL));
	c->opts.workers = 2;
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	assert_true(run_until(c, all_gone, 60));
	assert_int_equal(mail_count(c, "big"), N);
	assert_true(c->max_open <= 2 * 4);
	assert_true(c->max_jobs <= 2 * 2);
	assert_int_equal(stats(c).removed, N);
}

static int stopped(struct ctx *c)
{
	return c->stopped;
}

static int some_sent(struct ctx *c)
{
	return stats(c).sent >= 10;
}

static void test_stop_and_restart(void **state)
{
	struct ctx *c = *state;
	static const char *const rcpts[] = { "s1@example.org", "s2@example.org", NULL };
	enum { N = 100 };
	for (int i = 0; i < N; i++)
		free(commit_msg(c, wall_time(), rcpts, NULL));
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	assert_true(run_until(c, some_sent, 30));
	qmgr_stop(c->q, 10);
	assert_true(run_until(c, stopped, 15));
	assert_int_equal(stats(c).jobs, 0);
	qmgr_free(&c->q);
	size_t partial = mail_count(c, "s1") + mail_count(c, "s2");
	assert_true(partial >= 10);
	c->q = qmgr_new(c->base, &c->opts);
	qmgr_start(c->q);
	assert_true(run_until(c, all_gone, 30));
	assert_int_equal(mail_count(c, "s1"), N);
	assert_int_equal(mail_count(c, "s2"), N);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_delivered_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defer_then_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_at_startup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounce_and_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backlog_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_restart, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
