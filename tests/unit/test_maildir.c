/*
 * test_maildir: content written, deterministic names, exactly-once on a
 * second attempt, directory creation, error classification, and many
 * threads sharing one syncer.
 */
#include "mta/maildir.h"
#include "mta/queue.h"
#include "lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

struct fx {
	char *dir;		/* temp root */
	char qdir[4096];
	char md[4096];		/* a Maildir path that does not exist yet */
	struct queue_msg m;
	char *content;
	size_t content_len;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* A queued message from sender to nrcpt recipients r<i>@example.org. */
static void fx_queue(struct fx *f, const char *sender, size_t nrcpt)
{
	char *err = NULL;
	struct queue_writer *w = queue_writer_open(f->qdir, &err);
	assert_non_null(w);
	char id[QUEUE_ID_MAX];
	snprintf(id, sizeof id, "%s", queue_writer_id(w));
	assert_int_equal(queue_writer_write(w, f->content, f->content_len), 0);
	struct queue_envelope env = { 0 };
	env.sender = xstrdup(sender);
	env.arrival = 1763758800.250001;
	for (size_t i = 0; i < nrcpt; i++) {
		char a[64];
		snprintf(a, sizeof a, "r%zu@example.org", i);
		queue_envelope_add_rcpt(&env, a, NULL, 0, NULL);
	}
	assert_int_equal(queue_writer_commit_sync(w, &env, &err), 0);
	queue_envelope_free(&env);
	assert_int_equal(queue_msg_open(f->qdir, QUEUE_ACTIVE, id, &f->m, &err), 0);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	f->dir = xstrdup("/tmp/test_maildir.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->qdir, sizeof f->qdir, "%s/q", f->dir);
	snprintf(f->md, sizeof f->md, "%s/vhosts/example.org/user/", f->dir);
	char *err = NULL;
	assert_int_equal(queue_init(f->qdir, &err), 0);
	f->content_len = 200000;	/* several chunks */
	f->content = xmalloc(f->content_len);
	for (size_t i = 0; i < f->content_len; i++)
		f->content[i] = (i % 61 == 60) ? '\n' : (char)('a' + i % 26);
	fx_queue(f, "sender@example.com", 8);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	queue_msg_close(&f->m);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f->dir);
	free(f->content);
	free(f);
	return 0;
}

static size_t count(const char *dir, const char *sub)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, sub);
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

static char *slurp(const char *path, size_t *len_out)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	struct sbuf b;
	sbuf_init(&b);
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
		sbuf_add(&b, buf, n);
	fclose(fp);
	*len_out = b.len;
	return sbuf_steal(&b);
}

static enum maildir_result deliver(struct fx *f, const char *path, size_t rcpt, int maybe,
				   char *reason)
{
	struct maildir_req req = { path, "mx.example.org", &f->m, rcpt, maybe };
	return maildir_deliver(&req, NULL, reason, 256);
}

static void test_content_exact(void **state)
{
	struct fx *f = *state;
	char reason[256], name[256], path[8192];
	assert_int_equal(deliver(f, f->md, 2, 0, reason), MAILDIR_OK);
	assert_string_equal(reason, "delivered to maildir");
	assert_true(maildir_name(name, sizeof name, &f->m, 2, "mx.example.org") > 0);
	snprintf(path, sizeof path, "%snew/%s", f->md, name);
	size_t len;
	char *got = slurp(path, &len);
	const char *hdr = "Return-Path: <sender@example.com>\nDelivered-To: r2@example.org\n";
	assert_int_equal(len, strlen(hdr) + f->content_len);
	assert_memory_equal(got, hdr, strlen(hdr));
	assert_memory_equal(got + strlen(hdr), f->content, f->content_len);
	free(got);
	assert_int_equal(count(f->md, "tmp"), 0);
}

static void test_null_sender_and_controls(void **state)
{
	struct fx *f = *state;
	queue_msg_close(&f->m);
	fx_queue(f, "", 1);
	char reason[256], name[256], path[8192];
	assert_int_equal(deliver(f, f->md, 0, 0, reason), MAILDIR_OK);
	maildir_name(name, sizeof name, &f->m, 0, "mx.example.org");
	snprintf(path, sizeof path, "%snew/%s", f->md, name);
	size_t len;
	char *got = slurp(path, &len);
	assert_memory_equal(got, "Return-Path: <>\nDelivered-To: r0@example.org\n", 44);
	free(got);
	queue_msg_close(&f->m);
	fx_queue(f, "evil@x\nBcc: y", 1);
	assert_int_equal(deliver(f, f->md, 0, 0, reason), MAILDIR_OK);
	maildir_name(name, sizeof name, &f->m, 0, "mx.example.org");
	snprintf(path, sizeof path, "%snew/%s", f->md, name);
	got = slurp(path, &len);
	assert_memory_equal(got, "Return-Path: <evil@x?Bcc: y>\n", 29);
	free(got);
}

static void test_name_deterministic(void **state)
{
	struct fx *f = *state;
	char a[256], b[256], want[256];
	assert_true(maildir_name(a, sizeof a, &f->m, 3, "mx/a:b") > 0);
	assert_true(maildir_name(b, sizeof b, &f->m, 3, "mx/a:b") > 0);
	assert_string_equal(a, b);
	snprintf(want, sizeof want, "1763758800.M250001Q%sR3.mx\\057a\\072b", f->m.id);
	assert_string_equal(a, want);
	assert_true(maildir_name(b, sizeof b, &f->m, 4, "mx/a:b") > 0);
	assert_string_not_equal(a, b);
	assert_int_equal(maildir_name(a, 10, &f->m, 3, "mx"), -1);
	char longhost[1000];
	memset(longhost, 'h', sizeof longhost - 1);
	longhost[sizeof longhost - 1] = 0;
	int n = maildir_name(a, sizeof a, &f->m, 3, longhost);
	assert_true(n > 0 && n < 256);
}

static void test_second_delivery_once(void **state)
{
	struct fx *f = *state;
	char reason[256], name[256], from[8192], to[8192];
	assert_int_equal(deliver(f, f->md, 1, 0, reason), MAILDIR_OK);
	/* a retry after a crash before the mark: same name, link says EEXIST */
	assert_int_equal(deliver(f, f->md, 1, 0, reason), MAILDIR_ALREADY);
	assert_int_equal(deliver(f, f->md, 1, 1, reason), MAILDIR_ALREADY);
	assert_int_equal(count(f->md, "new"), 1);
	assert_int_equal(count(f->md, "tmp"), 0);
	/* the user has read it since: it is in cur/ with flags */
	maildir_name(name, sizeof name, &f->m, 1, "mx.example.org");
	snprintf(from, sizeof from, "%snew/%s", f->md, name);
	snprintf(to, sizeof to, "%scur/%s:2,S", f->md, name);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(deliver(f, f->md, 1, 1, reason), MAILDIR_ALREADY);
	assert_int_equal(count(f->md, "new"), 0);
	assert_int_equal(count(f->md, "cur"), 1);
	/* another recipient of the same message is a different file */
	assert_int_equal(deliver(f, f->md, 0, 1, reason), MAILDIR_OK);
	assert_int_equal(count(f->md, "new"), 1);
}

static void test_dirs_created(void **state)
{
	struct fx *f = *state;
	char reason[256];
	struct stat st;
	assert_int_equal(stat(f->md, &st), -1);
	assert_int_equal(deliver(f, f->md, 0, 0, reason), MAILDIR_OK);
	const char *subs[] = { "", "tmp", "new", "cur" };
	for (int i = 0; i < 4; i++) {
		char p[8192];
		snprintf(p, sizeof p, "%s%s", f->md, subs[i]);
		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0700);
	}
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	char reason[256], path[8192];
	snprintf(path, sizeof path, "%s/plainfile", f->dir);
	FILE *fp = fopen(path, "w");
	fclose(fp);
	assert_int_equal(deliver(f, path, 0, 0, reason), MAILDIR_PERMFAIL);
	assert_memory_equal(reason, "5.", 2);
	snprintf(path, sizeof path, "%s/plainfile/below/", f->dir);
	assert_int_equal(deliver(f, path, 0, 0, reason), MAILDIR_PERMFAIL);
	assert_memory_equal(reason, "5.2.0", 5);
	assert_int_equal(deliver(f, "relative/maildir/", 0, 0, reason), MAILDIR_TEMPFAIL);
	assert_memory_equal(reason, "4.", 2);
}

/* A file size limit makes the write fail (EFBIG): temporary, nothing left. */
static void test_tempfail_file_too_big(void **state)
{
	struct fx *f = *state;
	char reason[256];
	assert_int_equal(deliver(f, f->md, 5, 0, reason), MAILDIR_OK);	/* dirs exist */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = { 4096, 4096 };
		setrlimit(RLIMIT_FSIZE, &rl);
		enum maildir_result r = deliver(f, f->md, 6, 0, reason);
		_exit(r == MAILDIR_TEMPFAIL && strncmp(reason, "4.2.2 ", 6) == 0 ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(count(f->md, "tmp"), 0);
	assert_int_equal(count(f->md, "new"), 1);
}

static void test_errno_table(void **state)
{
	(void)state;
	static const struct {
		int err;
		enum maildir_result r;
		const char *dsn;
	} t[] = {
		{ ENOSPC, MAILDIR_TEMPFAIL, "4.3.1" },	{ EDQUOT, MAILDIR_TEMPFAIL, "4.2.2" },
		{ EIO, MAILDIR_TEMPFAIL, "4.2.0" },	{ EACCES, MAILDIR_TEMPFAIL, "4.2.0" },
		{ EMFILE, MAILDIR_TEMPFAIL, "4.2.0" },	{ ENOTDIR, MAILDIR_PERMFAIL, "5.2.0" },
		{ ELOOP, MAILDIR_PERMFAIL, "5.2.0" },	{ ENAMETOOLONG, MAILDIR_PERMFAIL, "5.2.0" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		const char *dsn = NULL;
		assert_int_equal(maildir_errno_class(t[i].err, &dsn), t[i].r);
		assert_string_equal(dsn, t[i].dsn);
	}
}

struct thr_arg {
	struct fx *f;
	struct maildir_syncer *sync;
	size_t rcpt;
	enum maildir_result r;
};

static void *thr_deliver(void *p)
{
	struct thr_arg *a = p;
	char reason[256];
	for (int k = 0; k < 3; k++) {
		struct maildir_req req = { a->f->md, "mx", &a->f->m, a->rcpt, k > 0 };
		enum maildir_result r = maildir_deliver(&req, a->sync, reason, sizeof reason);
		if (k == 0)
			a->r = r;
		else if (r != MAILDIR_ALREADY)
			a->r = MAILDIR_TEMPFAIL;
	}
	return NULL;
}

static void test_threads_share_syncer(void **state)
{
	struct fx *f = *state;
	struct maildir_syncer *sync = maildir_syncer_new();
	pthread_t th[8];
	struct thr_arg a[8];
	for (size_t i = 0; i < 8; i++) {
		a[i] = (struct thr_arg){ f, sync, i, MAILDIR_PERMFAIL };
		pthread_create(&th[i], NULL, thr_deliver, &a[i]);
	}
	for (size_t i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].r, MAILDIR_OK);
	}
	assert_int_equal(count(f->md, "new"), 8);
	maildir_syncer_free(&sync);
	assert_null(sync);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_content_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null_sender_and_controls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_deterministic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_delivery_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirs_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tempfail_file_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errno_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_share_syncer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
