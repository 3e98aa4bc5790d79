/*
 * test_privfile: the root helper that opens files for a daemon after its
 * privilege drop: descriptor passing, what it refuses (directories, FIFOs,
 * names the config does not give, appending elsewhere than maillog_file,
 * a symbolic link as the log), re-reading the config per request, and the
 * helper's exit when the daemon closes the socket or goes away. As root,
 * also the real case: a 0600 root file read after setuid(nobody), and a
 * named file refused when nobody could have swapped it (its directory).
 */
#include "lib/privfile.h"
#include "conf/conf.h"
#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

static const struct conf_param params[] = {
	{ "maillog_file", CONF_STR, "", 0, 0, NULL, 0 },
	{ "test_key_file", CONF_LIST, "", 0, 0, NULL, 0 },
	{ "test_rules_files", CONF_LIST, "", 0, 0, NULL, 0 },
	{ "test_maps", CONF_LIST, "", 0, 0, NULL, 0 },
	{ "test_other", CONF_STR, "", 0, 0, NULL, 0 },
	{ "test_socket", CONF_STR, "", 0, 0, NULL, 0 },
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
static const struct conf_param *const tables[] = { params, NULL };
static const char *const more[] = { "test_other", NULL };

static char dir[256];		/* the test's directory (also the config's base) */
static char cfg_path[300];

static char *at(const char *rel)
{
	return xasprintf("%s/%s", dir, rel);
}

static void put(const char *rel, const char *text, mode_t mode)
{
	char *p = at(rel);
	unlink(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	fchmod(fd, mode);
	close(fd);
	free(p);
}

static void put_conf(const char *text)
{
	put("sluice.conf", text, 0644);
}

/* slurp - the whole of fd (closed) as a new string */
static char *slurp(int fd)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = 0;
	return xstrdup(buf);
}

/* more_paths: what a KeyTable would add (here a fixed name in the config's directory) */
static void add_extra(const struct conf *c, struct privfile_names *names)
{
	(void)c;
	privfile_names_add(names, "extra.txt");
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_privfile.XXXXXX");
	assert_non_null(mkdtemp(dir));
	chmod(dir, 0755);	/* nobody must reach it in the root test */
	snprintf(cfg_path, sizeof(cfg_path), "%s/sluice.conf", dir);
	put("data.txt", "data\n", 0644);
	put("hashed", "k v\n", 0644);
	put("rules1.cf", "r1\n", 0644);
	put("other.txt", "other\n", 0644);
	put("extra.txt", "extra\n", 0644);
	put("unnamed.txt", "unnamed\n", 0644);
	char *d = at("adir");
	mkdir(d, 0755);
	free(d);
	char *f = at("fifo");
	mkfifo(f, 0644);
	free(f);
	put_conf("test_key_file = data.txt, adir, fifo, missing.txt\n"
		 "test_maps = hash:hashed, inline:{ a = b }\n"
		 "test_rules_files = rules*.cf\n"
		 "test_other = other.txt\n"
		 "test_socket = unnamed.txt\n"	/* not a file parameter */
		 "maillog_file = maillog\n");
	struct privfile_opts o = { .config_file = cfg_path, .tables = tables,
				   .more_params = more, .more_paths = add_extra };
	char *err = NULL;
	if (privfile_install(&o, &err) < 0)
		fail_msg("privfile_install: %s", err);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	privfile_uninstall();
	char *cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	return 0;
}

static void test_passes_descriptors_of_named_files(void **state)
{
	(void)state;
	static const struct {
		const char *desc, *rel, *want;
	} cases[] = {
		{ "a _file parameter's value", "data.txt", "data\n" },
		{ "a table's file, type: prefix removed", "hashed", "k v\n" },
		{ "a glob of a _files parameter", "rules1.cf", "r1\n" },
		{ "a parameter in more_params", "other.txt", "other\n" },
		{ "a name from more_paths()", "extra.txt", "extra\n" },
		{ "the config file itself", "sluice.conf", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = at(cases[i].rel);
		int fd = privfile_helper_open(p, O_RDONLY | O_CLOEXEC, 0);
		if (fd < 0)
			fail_msg("%s: %s", cases[i].desc, strerror(errno));
		assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);
		char *got = slurp(fd);
		if (cases[i].want && strcmp(got, cases[i].want) != 0)
			fail_msg("%s: got \"%s\"", cases[i].desc, got);
		free(got);
		free(p);
	}
}

static void test_relative_path_is_from_the_cwd(void **state)
{
	(void)state;
	char old[4096];
	assert_non_null(getcwd(old, sizeof(old)));
	assert_int_equal(chdir(dir), 0);
	int fd = privfile_helper_open("data.txt", O_RDONLY, 0);
	assert_true(fd >= 0);
	char *got = slurp(fd);
	assert_string_equal(got, "data\n");
	free(got);
	assert_int_equal(chdir(old), 0);
}

static void test_refuses(void **state)
{
	(void)state;
	static const struct {
		const char *desc, *rel;
		int flags, err;
	} cases[] = {
		{ "a directory the config names", "adir", O_RDONLY, EISDIR },
		{ "a FIFO the config names (and does not block)", "fifo", O_RDONLY, EINVAL },
		{ "a file the config does not name", "unnamed.txt", O_RDONLY, EPERM },
		{ "a named file that does not exist", "missing.txt", O_RDONLY, ENOENT },
		{ "a file that does not exist, not named", "nothing.txt", O_RDONLY, EPERM },
		{ "read-write", "data.txt", O_RDWR, EINVAL },
		{ "write without append", "data.txt", O_WRONLY, EINVAL },
		{ "appending to a named file that is not maillog_file", "data.txt",
		  O_WRONLY | O_APPEND, EPERM },
		{ "appending to the config", "sluice.conf", O_WRONLY | O_APPEND, EPERM },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = at(cases[i].rel);
		errno = 0;
		int fd = privfile_helper_open(p, cases[i].flags, 0640);
		if (fd >= 0 || errno != cases[i].err)
			fail_msg("%s: fd %d, errno %d (%s), want %d", cases[i].desc, fd, errno,
				 strerror(errno), cases[i].err);
		free(p);
	}
	errno = 0;
	assert_int_equal(privfile_helper_open("/dev/null", O_RDONLY, 0), -1);
	assert_int_equal(errno, EPERM);		/* not named: whatever it is */
}

static void test_rereads_the_config_per_request(void **state)
{
	(void)state;
	char *p = at("unnamed.txt");
	assert_int_equal(privfile_helper_open(p, O_RDONLY, 0), -1);
	put_conf("test_key_file = unnamed.txt\nmaillog_file = maillog\n");
	int fd = privfile_helper_open(p, O_RDONLY, 0);
	assert_true(fd >= 0);
	close(fd);
	char *d = at("data.txt");	/* no longer named */
	errno = 0;
	assert_int_equal(privfile_helper_open(d, O_RDONLY, 0), -1);
	assert_int_equal(errno, EPERM);
	/* a config that does not load: only the config file itself */
	put_conf("test_key_file = unnamed.txt\nthis is not a setting\n");
	assert_int_equal(privfile_helper_open(p, O_RDONLY, 0), -1);
	fd = privfile_helper_open(cfg_path, O_RDONLY, 0);
	assert_true(fd >= 0);
	close(fd);
	free(d);
	free(p);
}

static void test_appends_to_maillog_file_only(void **state)
{
	(void)state;
	char *p = at("maillog");
	unlink(p);
	int fd = privfile_helper_open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "one\n", 4), 4);
	close(fd);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	fd = privfile_helper_open(p, O_WRONLY | O_APPEND, 0);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "two\n", 4), 4);
	close(fd);
	char *got = slurp(open(p, O_RDONLY));
	assert_string_equal(got, "one\ntwo\n");
	free(got);
	/* the log swapped for a symbolic link (to a file it may not write): refused */
	char *target = at("data.txt");
	unlink(p);
	assert_int_equal(symlink(target, p), 0);
	errno = 0;
	assert_int_equal(privfile_helper_open(p, O_WRONLY | O_APPEND, 0), -1);
	assert_int_equal(errno, EPERM);
	/* ... or for a hard link */
	unlink(p);
	assert_int_equal(link(target, p), 0);
	errno = 0;
	assert_int_equal(privfile_helper_open(p, O_WRONLY | O_APPEND, 0), -1);
	assert_int_equal(errno, EPERM);
	unlink(p);
	got = slurp(open(target, O_RDONLY));
	assert_string_equal(got, "data\n");
	free(got);
	free(target);
	free(p);
}

static void test_plain_open_without_the_hook(void **state)
{
	(void)state;
	privfile_uninstall();
	assert_false(privfile_installed());
	assert_int_equal(privfile_helper_pid(), -1);
	errno = 0;
	assert_int_equal(privfile_helper_open(cfg_path, O_RDONLY, 0), -1);
	assert_int_equal(errno, EBADF);
	char *p = at("unnamed.txt");	/* plain open: no naming rule */
	int fd = privfile_open(p, O_RDONLY, 0);
	assert_true(fd >= 0);
	close(fd);
	FILE *f = privfile_fopen(p, "r");
	assert_non_null(f);
	fclose(f);
	free(p);
	struct privfile_opts o = { .config_file = cfg_path, .tables = tables };
	char *err = NULL;
	assert_int_equal(privfile_install(&o, &err), 0);
	assert_int_equal(privfile_install(&o, &err), -1);	/* once */
	free(err);
}

/* wait_gone - 1 when pid (our child) exits within 5 s */
static int wait_gone(pid_t pid, int *status_out)
{
	for (int i = 0; i < 500; i++) {
		pid_t r = waitpid(pid, status_out, WNOHANG);
		if (r == pid)
			return 1;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

static void test_helper_exits_on_end_of_file(void **state)
{
	(void)state;
	pid_t pid = privfile_helper_pid();
	assert_true(pid > 0);
	privfile_uninstall();	/* closes the socket and reaps the helper */
	errno = 0;
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
	struct privfile_opts o = { .config_file = cfg_path, .tables = tables };
	char *err = NULL;
	assert_int_equal(privfile_install(&o, &err), 0);
}

static void test_helper_exits_when_the_daemon_goes_away(void **state)
{
	(void)state;
	/* the orphaned helper comes to us, so we can see it go */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	static const int how[] = { 0, SIGKILL };	/* exits (EOF or death signal); killed */
	for (size_t i = 0; i < 2; i++) {
		int pfd[2];
		assert_int_equal(pipe(pfd), 0);
		pid_t daemon = fork();
		assert_true(daemon >= 0);
		if (daemon == 0) {
			privfile_uninstall();
			struct privfile_opts o = { .config_file = cfg_path, .tables = tables };
			char *err = NULL;
			if (privfile_install(&o, &err) < 0)
				_exit(3);
			pid_t h = privfile_helper_pid();
			if (write(pfd[1], &h, sizeof(h)) != sizeof(h))
				_exit(4);
			if (how[i] == 0)
				_exit(0);
			pause();
			_exit(5);
		}
		close(pfd[1]);
		pid_t helper = -1;
		assert_int_equal(read(pfd[0], &helper, sizeof(helper)), (ssize_t)sizeof(helper));
		close(pfd[0]);
		assert_true(helper > 0);
		if (how[i])
			kill(daemon, how[i]);
		int st;
		assert_true(wait_gone(daemon, &st));
		if (!wait_gone(helper, &st))
			fail_msg("helper %d still there after its daemon went away (case %zu)",
				 (int)helper, i);
	}
	prctl(PR_SET_CHILD_SUBREAPER, 0);
}

/* As root: the daemon's real case, after setuid(nobody). */
static void test_root_only_files_after_dropping_privileges(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	char *sub = at("private");
	mkdir(sub, 0700);	/* root-only directory too */
	free(sub);
	put("private/key.pem", "secret\n", 0600);
	put("private/not-named.pem", "other secret\n", 0600);
	/* a directory nobody may write: what a named file there is, nobody decides */
	char *own = at("owned");
	mkdir(own, 0755);
	assert_int_equal(chown(own, 65534, 65534), 0);
	char *target = at("private/not-named.pem"), *lnk = at("owned/key.pem");
	assert_int_equal(symlink(target, lnk), 0);
	free(target);
	free(lnk);
	free(own);
	put_conf("test_key_file = private/key.pem, owned/key.pem\n"
		 "maillog_file = private/maillog\n");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		char *k = at("private/key.pem"), *n = at("private/not-named.pem");
		char *lf = at("private/maillog");
		int fd = privfile_open(k, O_RDONLY | O_CLOEXEC, 0);
		if (fd < 0)
			_exit(11);
		char *got = slurp(fd);
		if (strcmp(got, "secret\n") != 0)
			_exit(12);
		if (privfile_open(n, O_RDONLY, 0) >= 0 || errno != EPERM)
			_exit(13);
		/* named, but through a symbolic link in a directory nobody owns */
		char *o = at("owned/key.pem");
		if (privfile_open(o, O_RDONLY, 0) >= 0 || errno != EPERM)
			_exit(15);
		const char *lerr;	/* what a reload of maillog_file does */
		if (log_init("test_privfile", lf, LOG_FORMAT_PLAIN, &lerr) < 0)
			_exit(14);
		log_event(NULL, "hello from nobody");
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	char *lf = at("private/maillog");
	char *got = slurp(open(lf, O_RDONLY));
	assert_non_null(strstr(got, "hello from nobody"));
	free(got);
	free(lf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_passes_descriptors_of_named_files),
		cmocka_unit_test(test_relative_path_is_from_the_cwd),
		cmocka_unit_test(test_refuses),
		cmocka_unit_test(test_appends_to_maillog_file_only),
		cmocka_unit_test(test_plain_open_without_the_hook),
		cmocka_unit_test(test_helper_exits_on_end_of_file),
		cmocka_unit_test(test_helper_exits_when_the_daemon_goes_away),
		cmocka_unit_test(test_rereads_the_config_per_request),
		cmocka_unit_test(test_root_only_files_after_dropping_privileges),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
