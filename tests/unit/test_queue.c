/*
 * test_queue: ids, file format round trip, marks, corruption handling,
 * start-up cleanup, the group-committing thread, moves and scans.
 */
#include "mta/queue.h"
#include "proto/smtp.h"
#include "lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

/* ---- helpers ---- */

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static int setup_qdir(void **state)
{
	char *dir = xstrdup("/tmp/test_queue.XXXXXX");
	assert_non_null(mkdtemp(dir));
	char *err = NULL;
	assert_int_equal(queue_init(dir, &err), 0);
	*state = dir;
	return 0;
}

static int teardown_qdir(void **state)
{
	nftw(*state, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(*state);
	return 0;
}

static size_t count_dir(const char *qdir, const char *sub)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", qdir, sub);
	DIR *d = opendir(path);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static char *read_file(const char *path, size_t *len_out)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *buf = xmalloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	*len_out = (size_t)st.st_size;
	return buf;
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* commit a message with content and a simple envelope; returns its id (static buffer). */
static const char *commit_simple(const char *qdir, const char *content, size_t nrcpt)
{
	static char id[QUEUE_ID_MAX];
	char *err = NULL;
	struct queue_writer *w = queue_writer_open(qdir, &err);
	assert_non_null(w);
	snprintf(id, sizeof id, "%s", queue_writer_id(w));
	assert_int_equal(queue_writer_write(w, content, strlen(content)), 0);
	struct queue_envelope env = { .sender = "s@example.com", .arrival = 1700000000.25 };
	for (size_t i = 0; i < nrcpt; i++) {
		char a[64];
		snprintf(a, sizeof a, "r%zu@example.org", i);
		queue_envelope_add_rcpt(&env, a, NULL, 0, NULL);
	}
	env.sender = xstrdup(env.sender);
	assert_int_equal(queue_writer_commit_sync(w, &env, &err), 0);
	queue_envelope_free(&env);
	return id;
}

/* ---- ids ---- */

static void test_ids_unique_sorted(void **state)
{
	const char *qdir = *state;
	char prev[QUEUE_ID_MAX] = "";
	for (int i = 0; i < 3000; i++) {
		char *err = NULL;
		struct queue_writer *w = queue_writer_open(qdir, &err);
		assert_non_null(w);
		const char *id = queue_writer_id(w);
		assert_true(queue_id_valid(id));
		assert_null(strpbrk(id, "aeiouAEIOU"));
		assert_true(strcmp(prev, id) < 0);
		snprintf(prev, sizeof prev, "%s", id);
		queue_writer_abort(&w);
		assert_null(w);
	}
	assert_int_equal(count_dir(qdir, "incoming"), 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* two processes commit at once; every id distinct, every file in active/ */
static void test_ids_two_processes(void **state)
{
	const char *qdir = *state;
	enum { PER_CHILD = 300 };
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			close(pfd[0]);
			for (int i = 0; i < PER_CHILD; i++) {
				const char *id = commit_simple(qdir, "x\n", 1);
				char line[QUEUE_ID_MAX + 1];
				snprintf(line, sizeof line, "%-*s", QUEUE_ID_MAX, id);
				if (write(pfd[1], line, QUEUE_ID_MAX) != QUEUE_ID_MAX)
					_exit(2);
			}
			_exit(0);
		}
	}
	close(pfd[1]);
	char *ids[2 * PER_CHILD];
	size_t n = 0;
	char line[QUEUE_ID_MAX + 1];
	while (n < 2 * PER_CHILD && read(pfd[0], line, QUEUE_ID_MAX) == QUEUE_ID_MAX) {
		line[QUEUE_ID_MAX] = 0;
		*strchr(line, ' ') = 0;
		ids[n++] = xstrdup(line);
	}
	close(pfd[0]);
	for (int k = 0; k < 2; k++) {
		int st;
		assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(n, 2 * PER_CHILD);
	qsort(ids, n, sizeof ids[0], cmp_str);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	assert_int_equal(count_dir(qdir, "active"), 2 * PER_CHILD);
}

/* ---- round trip ---- */

struct rt_case {
	const char *name;
	const char *sender;
	const char *attrs[6];	/* client_name, client_addr, helo, proto, envid, ret */
	int body_8bit, smtputf8;
	struct {
		const char *addr, *orig, *orcpt;
		unsigned notify;
	} rcpt[4];
	size_t nrcpt;		/* if > 4: generated recipients */
	size_t content_len;	/* generated content of this size */
	size_t chunk;		/* write chunk size */
};

static const struct rt_case rt_cases[] = {
	{ "null sender, minimal", "", { 0 }, 0, 0, { { "a@example.com", 0, 0, 0 } }, 1, 10, 3 },
	{ "all attributes, utf-8", "jösé@exämple.org",
	  { "mx.exämple.org", "192.0.2.7", "helo.example", "ESMTPS", "ENV-ID+2B1", "HDRS" }, 1, 1,
	  { { "ünï@example.com", "Ünï@Example.com", "rfc822;Ünï@Example.com",
	      SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE },
	    { "b@example.com", NULL, NULL, SMTP_NOTIFY_NEVER },
	    { "c@example.com", "alias@example.com", NULL, 0 } },
	  3, 10240, 1000 },
	{ "empty content", "s@example.com", { 0 }, 0, 0, { { "a@b.c", 0, 0, 0 } }, 1, 0, 1 },
	{ "many recipients", "s@example.com", { 0 }, 0, 0, { { 0 } }, 300, 100, 7 },
	{ "large content", "s@example.com", { 0 }, 1, 0, { { "a@b.c", 0, 0, 0 } }, 1, 1 << 20,
	  65537 },
};

static void rt_make_env(const struct rt_case *c, struct queue_envelope *env)
{
	memset(env, 0, sizeof *env);
	env->sender = xstrdup(c->sender);
	env->arrival = 1763758800.123456;
	char **f[6] = { &env->client_name, &env->client_addr, &env->helo, &env->proto,
			&env->envid, &env->ret };
	for (int i = 0; i < 6; i++)
		*f[i] = c->attrs[i] ? xstrdup(c->attrs[i]) : NULL;
	env->body_8bit = c->body_8bit;
	env->smtputf8 = c->smtputf8;
	for (size_t i = 0; i < c->nrcpt; i++) {
		char a[64];
		snprintf(a, sizeof a, "user%zu@example.net", i);
		if (c->nrcpt > 4)
			queue_envelope_add_rcpt(env, a, NULL, 0, NULL);
		else
			queue_envelope_add_rcpt(env, c->rcpt[i].addr, c->rcpt[i].orig,
						c->rcpt[i].notify, c->rcpt[i].orcpt);
	}
}

static void assert_str_or_null(const char *a, const char *b)
{
	if (!a || !b)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void rt_compare(const struct queue_envelope *a, const struct queue_envelope *b)
{
	assert_string_equal(a->sender, b->sender);
	assert_true(a->arrival - b->arrival < 1e-6 && b->arrival - a->arrival < 1e-6);
	assert_str_or_null(a->client_name, b->client_name);
	assert_str_or_null(a->client_addr, b->client_addr);
	assert_str_or_null(a->helo, b->helo);
	assert_str_or_null(a->proto, b->proto);
	assert_str_or_null(a->envid, b->envid);
	assert_str_or_null(a->ret, b->ret);
	assert_int_equal(a->body_8bit, b->body_8bit);
	assert_int_equal(a->smtputf8, b->smtputf8);
	assert_int_equal(a->nrcpt, b->nrcpt);
	for (size_t i = 0; i < a->nrcpt; i++) {
		assert_string_equal(a->rcpt[i].addr, b->rcpt[i].addr);
		assert_str_or_null(a->rcpt[i].orig, b->rcpt[i].orig);
		assert_str_or_null(a->rcpt[i].orcpt, b->rcpt[i].orcpt);
		assert_int_equal(a->rcpt[i].notify, b->rcpt[i].notify);
		assert_int_equal(b->rcpt[i].status, QUEUE_RCPT_PENDING);
	}
}

static void rt_run(const char *qdir, const struct rt_case *c)
{
	char *content = xmalloc(c->content_len + 1);
	for (size_t i = 0; i < c->content_len; i++)
		content[i] = (i % 73 == 72) ? '\n' : (char)(' ' + (i * 7 + i / 13) % 95);
	char *err = NULL;
	struct queue_writer *w = queue_writer_open(qdir, &err);
	assert_non_null(w);
	char id[QUEUE_ID_MAX];
	snprintf(id, sizeof id, "%s", queue_writer_id(w));
	for (size_t off = 0; off < c->content_len; off += c->chunk) {
		size_t n = c->content_len - off < c->chunk ? c->content_len - off : c->chunk;
		assert_int_equal(queue_writer_write(w, content + off, n), 0);
	}
	assert_int_equal(queue_writer_size(w), (long long)c->content_len);
	struct queue_envelope env;
	rt_make_env(c, &env);
	assert_int_equal(queue_writer_commit_sync(w, &env, &err), 0);
	struct queue_msg m;
	if (queue_msg_open(qdir, QUEUE_ACTIVE, id, &m, &err) < 0)
		fail_msg("%s: %s", c->name, err);
	rt_compare(&env, &m.env);
	assert_int_equal(m.content_len, (long long)c->content_len);
	char *back = xmalloc(c->content_len + 1);
	long long got = 0;
	while (got < m.content_len) {
		long r = queue_msg_read(&m, got, back + got, 4093);
		assert_true(r > 0);
		got += r;
	}
	assert_int_equal(queue_msg_read(&m, got, back, 10), 0);
	assert_memory_equal(back, content, c->content_len);
	assert_int_equal(queue_msg_pending(&m), c->nrcpt);
	queue_msg_close(&m);
	queue_envelope_free(&env);
	free(back);
	free(content);
}

static void test_round_trip(void **state)
{
	for (size_t i = 0; i < sizeof rt_cases / sizeof rt_cases[0]; i++) {
		print_message("round trip: %s\n", rt_cases[i].name);
		rt_run(*state, &rt_cases[i]);
	}
}

static void test_marks_persist(void **state)
{
	const char *qdir = *state;
	char id[QUEUE_ID_MAX];
	snprintf(id, sizeof id, "%s", commit_simple(qdir, "hello\n", 3));
	struct queue_msg m;
	char *err = NULL;
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id, &m, &err), 0);
	assert_int_equal(queue_msg_mark(&m, 0, QUEUE_RCPT_DONE), 0);
	assert_int_equal(queue_msg_mark(&m, 2, QUEUE_RCPT_FAILED), 0);
	assert_int_equal(queue_msg_pending(&m), 1);
	queue_msg_close(&m);
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id, &m, &err), 0);
	assert_int_equal(m.env.rcpt[0].status, QUEUE_RCPT_DONE);
	assert_int_equal(m.env.rcpt[1].status, QUEUE_RCPT_PENDING);
	assert_int_equal(m.env.rcpt[2].status, QUEUE_RCPT_FAILED);
	assert_int_equal(queue_msg_pending(&m), 1);
	queue_msg_close(&m);
}

/* ---- corruption ---- */

static void expect_corrupt(const char *qdir, const char *id, const void *buf, size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/active/%s", qdir, id);
	write_file(path, buf, len);
	struct queue_msg m;
	char *err = NULL;
	int corrupt = 0;
	assert_int_equal(queue_msg_open_ex(qdir, QUEUE_ACTIVE, id, &m, &err, &corrupt, NULL), -1);
	assert_int_equal(corrupt, 1);
	assert_non_null(err);
	free(err);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof path, "%s/corrupt/%s", qdir, id);
	assert_int_equal(unlink(path), 0);
}

static void test_truncated_and_garbled(void **state)
{
	const char *qdir = *state;
	char id[QUEUE_ID_MAX], path[4096];
	snprintf(id, sizeof id, "%s", commit_simple(qdir, "Subject: x\n\nbody line\n", 2));
	snprintf(path, sizeof path, "%s/active/%s", qdir, id);
	size_t len;
	char *orig = read_file(path, &len);
	for (size_t cut = 0; cut < len; cut += (cut < 16 || len - cut < 90) ? 1 : 5)
		expect_corrupt(qdir, id, orig, cut);
	char *bad = xmalloc(len);
	for (size_t k = 0; k < len; k++) {
		memcpy(bad, orig, len);
		bad[k] ^= 0x01;	/* also turns a status byte into an invalid one */
		expect_corrupt(qdir, id, bad, len);
	}
	/* garbage of the right size, and a file grown by one byte */
	memset(bad, 'A', len);
	expect_corrupt(qdir, id, bad, len);
	char *longer = xmalloc(len + 1);
	memcpy(longer, orig, len);
	longer[len] = '\n';
	expect_corrupt(qdir, id, longer, len + 1);
	/* the untouched bytes still open fine */
	write_file(path, orig, len);
	struct queue_msg m;
	char *err = NULL;
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id, &m, &err), 0);
	queue_msg_close(&m);
	free(longer);
	free(bad);
	free(orig);
}

static void test_missing_file_not_corrupt(void **state)
{
	struct queue_msg m;
	char *err = NULL;
	int corrupt = 1, e = 0;
	assert_int_equal(queue_msg_open_ex(*state, QUEUE_ACTIVE, "000000000Bz1", &m, &err, &corrupt,
					   &e),
			 -1);
	assert_int_equal(corrupt, 0);
	assert_int_equal(e, ENOENT);
	free(err);
	err = NULL;
	assert_int_equal(queue_msg_open(*state, QUEUE_ACTIVE, "../etc/passwd", &m, &err), -1);
	free(err);
	queue_msg_close(&m);
}

/* ---- start-up, moves, scans ---- */

static void test_init_removes_incoming(void **state)
{
	const char *qdir = *state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {	/* a receiver that dies mid-message */
		char *err = NULL;
		struct queue_writer *w = queue_writer_open(qdir, &err);
		queue_writer_write(w, "partial", 7);
		_exit(w ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char path[4096];
	snprintf(path, sizeof path, "%s/incoming/junk", qdir);
	write_file(path, "x", 1);
	assert_int_equal(count_dir(qdir, "incoming"), 2);
	char *err = NULL;
	assert_int_equal(queue_init(qdir, &err), 0);
	assert_int_equal(count_dir(qdir, "incoming"), 0);
}

static void test_move_deferred_mtime_and_scan(void **state)
{
	const char *qdir = *state;
	char ids[5][QUEUE_ID_MAX];
	for (int i = 0; i < 5; i++)
		snprintf(ids[i], sizeof ids[i], "%s", commit_simple(qdir, "m\n", 1));
	size_t n;
	char **got = queue_scan(qdir, QUEUE_ACTIVE, &n, NULL);
	assert_int_equal(n, 5);
	for (int i = 0; i < 5; i++)
		assert_string_equal(got[i], ids[i]);
	queue_scan_free(got, n, NULL);
	double when = wall_time() + 1234.5;
	assert_int_equal(queue_move(qdir, ids[3], QUEUE_ACTIVE, QUEUE_DEFERRED, when), 0);
	assert_int_equal(queue_move(qdir, ids[1], QUEUE_ACTIVE, QUEUE_DEFERRED, when - 100), 0);
	double *next;
	got = queue_scan(qdir, QUEUE_DEFERRED, &n, &next);
	assert_int_equal(n, 2);
	assert_string_equal(got[0], ids[1]);
	assert_string_equal(got[1], ids[3]);
	assert_true(next[0] > when - 100.01 && next[0] < when - 99.99);
	assert_true(next[1] > when - 0.01 && next[1] < when + 0.01);
	queue_scan_free(got, n, next);
	/* a deferred message opens from deferred/ and moves back */
	struct queue_msg m;
	char *err = NULL;
	assert_int_equal(queue_msg_open(qdir, QUEUE_DEFERRED, ids[3], &m, &err), 0);
	assert_int_equal(m.dir, QUEUE_DEFERRED);
	queue_msg_close(&m);
	assert_int_equal(queue_move(qdir, ids[3], QUEUE_DEFERRED, QUEUE_ACTIVE, 0), 0);
	assert_int_equal(count_dir(qdir, "active"), 4);
	/* defer log and removal */
	assert_int_equal(queue_defer_note(qdir, ids[1], "r0@example.org", "4.2.2 full\nx"), 0);
	assert_int_equal(count_dir(qdir, "defer"), 1);
	assert_int_equal(queue_remove(qdir, ids[1], QUEUE_DEFERRED), 0);
	assert_int_equal(count_dir(qdir, "defer"), 0);
	assert_int_equal(count_dir(qdir, "deferred"), 0);
	assert_int_equal(queue_remove(qdir, ids[1], QUEUE_DEFERRED), -1);
}

/* the delay-warning mark survives in the defer log; reset drops it with the log */
static void test_defer_warned_mark(void **state)
{
	const char *qdir = *state;
	const char *id = "4jfWWk10BkzNR";	/* the shape of our queue ids */
	assert_int_equal(queue_defer_warned(qdir, id), 0);
	assert_int_equal(queue_defer_note(qdir, id, "r0@example.org", "4.4.1 no answer"), 0);
	assert_int_equal(queue_defer_warned(qdir, id), 0);
	assert_int_equal(queue_defer_mark_warned(qdir, id), 0);
	assert_int_equal(queue_defer_warned(qdir, id), 1);
	/* the mark line has no TAB: the "rcpt TAB reason" line is still the first */
	char path[512];
	snprintf(path, sizeof path, "%s/defer/%s", qdir, id);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[256];
	assert_non_null(fgets(line, sizeof line, f));
	assert_string_equal(line, "r0@example.org\t4.4.1 no answer\n");
	assert_non_null(fgets(line, sizeof line, f));
	assert_null(strchr(line, '\t'));
	fclose(f);
	assert_int_equal(queue_defer_reset(qdir, id), 0);
	assert_int_equal(queue_defer_warned(qdir, id), 0);
	assert_int_equal(queue_defer_warned(qdir, "../../etc/passwd"), 0);
}

/* ---- the committer thread ---- */

struct commit_ctx {
	struct event_base *base;
	pthread_t loop_thread;
	int ok, failed, calls;
	int wrong_thread;
};

static void commit_done(void *arg, int ok, const char *err)
{
	struct commit_ctx *c = arg;
	if (!pthread_equal(pthread_self(), c->loop_thread))
		c->wrong_thread++;
	c->calls++;
	if (ok)
		c->ok++;
	else
		c->failed += err != NULL;
	if (c->calls == 51)
		event_base_loopbreak(c->base);
}

static void test_async_committer(void **state)
{
	const char *qdir = *state;
	struct commit_ctx c = { 0 };
	c.base = event_base_new();
	c.loop_thread = pthread_self();
	struct queue_committer *qc = queue_committer_new(c.base, qdir);
	struct queue_envelope env = { 0 };
	env.sender = xstrdup("s@example.com");
	env.arrival = wall_time();
	queue_envelope_add_rcpt(&env, "r@example.com", NULL, 0, NULL);
	for (int i = 0; i < 50; i++) {
		char *err = NULL;
		struct queue_writer *w = queue_writer_open(qdir, &err);
		assert_non_null(w);
		assert_int_equal(queue_writer_write(w, "Subject: t\n\nhi\n", 15), 0);
		queue_writer_commit(qc, w, &env, commit_done, &c);
	}
	/* one that must fail: its incoming file vanished */
	char *err = NULL, path[4096];
	struct queue_writer *w = queue_writer_open(qdir, &err);
	snprintf(path, sizeof path, "%s/incoming/%s", qdir, queue_writer_id(w));
	unlink(path);
	queue_writer_commit(qc, w, &env, commit_done, &c);
	queue_envelope_free(&env);
	struct timeval tmo = { 20, 0 };
	event_base_loopexit(c.base, &tmo);
	event_base_dispatch(c.base);
	assert_int_equal(c.calls, 51);
	assert_int_equal(c.ok, 50);
	assert_int_equal(c.failed, 1);
	assert_int_equal(c.wrong_thread, 0);
	assert_int_equal(count_dir(qdir, "active"), 50);
	assert_int_equal(count_dir(qdir, "incoming"), 0);
	queue_committer_free(&qc);
	assert_null(qc);
	event_base_free(c.base);
}

/* ---- spare files ---- */

#define SPARE_PAUSE_US 15000	/* > Q_SPARE_RESCAN_S in queue.c */

static void test_recycle_spare(void **state)
{
	const char *qdir = *state;
	char big[8192], id1[QUEUE_ID_MAX], id2[QUEUE_ID_MAX], path[4096];
	memset(big, 'x', sizeof big - 2);
	big[sizeof big - 2] = '\n';
	big[sizeof big - 1] = 0;
	snprintf(id1, sizeof id1, "%s", commit_simple(qdir, big, 3));
	struct queue_msg m;
	char *err = NULL;
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id1, &m, &err), 0);
	struct stat st1;
	assert_int_equal(fstat(m.fd, &st1), 0);
	assert_int_equal(queue_defer_note(qdir, id1, "r0@example.org", "4.0.0 x"), 0);
	/* finished: the inode goes to spare/, the message and its defer log are gone */
	assert_int_equal(queue_msg_recycle(qdir, &m, 0), 0);
	queue_msg_close(&m);
	assert_int_equal(count_dir(qdir, "active"), 0);
	assert_int_equal(count_dir(qdir, "defer"), 0);
	assert_int_equal(count_dir(qdir, "spare"), 1);
	/* the next message (new id) overwrites it: shorter, so the stale tail is cut
	 * (after the pause a receiver takes when it last found spare/ empty) */
	usleep(SPARE_PAUSE_US);
	snprintf(id2, sizeof id2, "%s", commit_simple(qdir, "Subject: small\n\nhi\n", 1));
	assert_string_not_equal(id1, id2);
	assert_int_equal(count_dir(qdir, "spare"), 0);
	assert_int_equal(count_dir(qdir, "incoming"), 0);
	snprintf(path, sizeof path, "%s/active/%s", qdir, id2);
	struct stat st2;
	assert_int_equal(stat(path, &st2), 0);
	assert_int_equal(st2.st_ino, st1.st_ino);
	assert_true(st2.st_size < st1.st_size);
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id2, &m, &err), 0);
	assert_int_equal(m.content_len, 19);
	assert_int_equal(m.env.nrcpt, 1);
	char buf[64];
	assert_int_equal(queue_msg_read(&m, 0, buf, sizeof buf), 19);
	assert_memory_equal(buf, "Subject: small\n\nhi\n", 19);
	/* a rewound writer on a spare works too, and an abort drops the spare */
	assert_int_equal(queue_msg_recycle(qdir, &m, 0), 0);
	queue_msg_close(&m);
	usleep(SPARE_PAUSE_US);
	struct queue_writer *w = queue_writer_open(qdir, &err);
	assert_non_null(w);
	assert_int_equal(count_dir(qdir, "spare"), 0);
	queue_writer_abort(&w);
	assert_int_equal(count_dir(qdir, "incoming"), 0);
	/* spare/ is emptied at start-up */
	snprintf(id1, sizeof id1, "%s", commit_simple(qdir, big, 1));
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id1, &m, &err), 0);
	assert_int_equal(queue_msg_recycle(qdir, &m, 0), 0);
	queue_msg_close(&m);
	assert_int_equal(count_dir(qdir, "spare"), 1);
	assert_int_equal(queue_init(qdir, &err), 0);
	assert_int_equal(count_dir(qdir, "spare"), 0);
}

/* start-up keeps a leftover name of a queued message (crash during a rename) */
static void test_init_keeps_aliases(void **state)
{
	const char *qdir = *state;
	char id[QUEUE_ID_MAX], act[4096], p[4096];
	snprintf(id, sizeof id, "%s", commit_simple(qdir, "Subject: a\n\nx\n", 1));
	snprintf(act, sizeof act, "%s/active/%s", qdir, id);
	snprintf(p, sizeof p, "%s/incoming/%s", qdir, id);
	assert_int_equal(link(act, p), 0);
	snprintf(p, sizeof p, "%s/spare/s7", qdir);
	assert_int_equal(link(act, p), 0);
	snprintf(p, sizeof p, "%s/spare/s8", qdir);
	write_file(p, "old", 3);
	snprintf(p, sizeof p, "%s/incoming/other", qdir);
	write_file(p, "partial", 7);
	char *err = NULL;
	assert_int_equal(queue_init(qdir, &err), 0);
	snprintf(p, sizeof p, "%s/incoming/%s", qdir, id);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof p, "%s/spare/alias-s7", qdir);
	assert_int_equal(access(p, F_OK), 0);
	assert_int_equal(count_dir(qdir, "spare"), 1);	/* s8 gone, s7 renamed */
	assert_int_equal(count_dir(qdir, "incoming"), 1);	/* "other" gone */
	/* the renamed spare is never claimed: a new message gets a new file */
	usleep(SPARE_PAUSE_US);
	char id2[QUEUE_ID_MAX];
	snprintf(id2, sizeof id2, "%s", commit_simple(qdir, "Subject: b\n\ny\n", 1));
	struct queue_msg m;
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id, &m, &err), 0);
	char buf[32];
	assert_int_equal(queue_msg_read(&m, 0, buf, sizeof buf), 14);
	assert_memory_equal(buf, "Subject: a\n\nx\n", 14);
	queue_msg_close(&m);
	/* once the message is gone, the next start-up removes the old names */
	assert_int_equal(queue_remove(qdir, id, QUEUE_ACTIVE), 0);
	assert_int_equal(queue_init(qdir, &err), 0);
	assert_int_equal(count_dir(qdir, "spare"), 0);
	assert_int_equal(count_dir(qdir, "incoming"), 0);
}

/* many recycled messages of varying sizes read back exactly */
static void test_recycle_many(void **state)
{
	const char *qdir = *state;
	char *content = xmalloc(70000);
	for (int i = 0; i < 200; i++) {
		size_t len = (size_t)((i * 7919) % 69000) + 1;
		for (size_t k = 0; k < len; k++)
			content[k] = (char)('a' + (i + k) % 26);
		content[len - 1] = '\n';
		content[len] = 0;
		char id[QUEUE_ID_MAX];
		usleep(SPARE_PAUSE_US);
		snprintf(id, sizeof id, "%s", commit_simple(qdir, content, 1 + i % 3));
		struct queue_msg m;
		char *err = NULL;
		assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id, &m, &err), 0);
		assert_int_equal(m.content_len, (long long)len);
		assert_int_equal(m.env.nrcpt, 1 + i % 3);
		char *back = xmalloc(len);
		assert_int_equal(queue_msg_read(&m, 0, back, len), (long)len);
		assert_memory_equal(back, content, len);
		free(back);
		assert_int_equal(queue_msg_recycle(qdir, &m, 0), 0);
		queue_msg_close(&m);
	}
	free(content);
	assert_int_equal(count_dir(qdir, "active"), 0);
	assert_true(count_dir(qdir, "spare") <= 1);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ids_unique_sorted, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_ids_two_processes, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_round_trip, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_marks_persist, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_truncated_and_garbled, setup_qdir,
						teardown_qdir),
		cmocka_unit_test_setup_teardown(test_missing_file_not_corrupt, setup_qdir,
						teardown_qdir),
		cmocka_unit_test_setup_teardown(test_init_removes_incoming, setup_qdir,
						teardown_qdir),
		cmocka_unit_test_setup_teardown(test_move_deferred_mtime_and_scan, setup_qdir,
						teardown_qdir),
		cmocka_unit_test_setup_teardown(test_defer_warned_mark, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_async_committer, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_recycle_spare, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_recycle_many, setup_qdir, teardown_qdir),
		cmocka_unit_test_setup_teardown(test_init_keeps_aliases, setup_qdir, teardown_qdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
