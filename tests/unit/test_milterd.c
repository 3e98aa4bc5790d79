/*
 * test_milterd: lib/milterd's signal handling, without libmilter running:
 * the in-flight count, the sigwait() interposer (libmilter's signal thread
 * must never take SIGHUP, SIGTERM or SIGINT), and the signal thread in a
 * child process: SIGHUP calls the reload callback, SIGTERM logs "stopping
 * (1 messages in flight)", waits for the message, calls the stop callback
 * with nothing unfinished and exits 0.
 */
#include "lib/log.h"
#include "lib/milterd.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_inflight_counts(void **state)
{
	(void)state;
	assert_int_equal(milterd_inflight(), 0);
	milterd_inflight_enter();
	milterd_inflight_enter();
	assert_int_equal(milterd_inflight(), 2);
	milterd_inflight_leave();
	assert_int_equal(milterd_inflight(), 1);
	milterd_inflight_leave();
	assert_int_equal(milterd_inflight(), 0);
}

/* libmilter's sigwait() for HUP/TERM/INT (plus one of ours) returns only the other one */
static void test_sigwait_leaves_hup_term_int(void **state)
{
	(void)state;
	sigset_t set, pending;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigset_t old;
	pthread_sigmask(SIG_BLOCK, &set, &old);
	raise(SIGHUP);
	raise(SIGTERM);
	raise(SIGUSR1);
	int sig = 0;
	assert_int_equal(sigwait(&set, &sig), 0);
	assert_int_equal(sig, SIGUSR1);
	sigpending(&pending);
	assert_true(sigismember(&pending, SIGHUP));
	assert_true(sigismember(&pending, SIGTERM));
	/* take them with the C library's own call, then restore the mask */
	sigset_t two;
	sigemptyset(&two);
	sigaddset(&two, SIGHUP);
	sigaddset(&two, SIGTERM);
	assert_true(sigwaitinfo(&two, NULL) > 0);
	assert_true(sigwaitinfo(&two, NULL) > 0);
	sigpending(&pending);
	assert_false(sigismember(&pending, SIGHUP) || sigismember(&pending, SIGTERM));
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int result_fd = -1;	/* child -> parent: what the callbacks saw */

static void say(const char *s)
{
	ssize_t w = write(result_fd, s, strlen(s));
	(void)w;
}

static void on_reload(void)
{
	say("reload\n");
}

static void on_stopped(int sig, int unfinished)
{
	char b[64];
	snprintf(b, sizeof b, "stopped %s %d\n", sig == SIGTERM ? "TERM" : "?", unfinished);
	say(b);
}

static const struct milterd_signal_ops ops = { "test", on_reload, on_stopped };

/* read_until - read fd into buf (NUL-terminated) until it holds want; 0 on EOF first */
static int read_until(int fd, char *buf, size_t size, size_t *len, const char *want)
{
	while (strstr(buf, want) == NULL) {
		if (*len + 1 >= size)
			return 0;
		ssize_t r = read(fd, buf + *len, size - 1 - *len);
		if (r <= 0)
			return 0;
		*len += (size_t)r;
		buf[*len] = 0;
	}
	return 1;
}

static void test_signal_thread_reload_stop_exit_0(void **state)
{
	(void)state;
	int res[2], log[2], go[2];
	assert_int_equal(pipe(res), 0);
	assert_int_equal(pipe(log), 0);
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(res[0]);
		close(log[0]);
		close(go[1]);
		result_fd = res[1];
		dup2(log[1], 2);	/* log_event's lines (stderr) */
		log_set_stderr_only("test_milterd");
		milterd_inflight_enter();	/* a message in flight */
		milterd_signals_start(&ops);
		kill(getpid(), SIGHUP);
		kill(getpid(), SIGTERM);
		char c;
		if (read(go[0], &c, 1) != 1)	/* the parent saw the stop begin */
			_exit(3);
		say("left\n");
		milterd_inflight_leave();
		for (;;)
			pause();	/* the signal thread ends the process */
	}
	close(res[1]);
	close(log[1]);
	close(go[0]);
	char logbuf[4096] = "", resbuf[256] = "";
	size_t loglen = 0, reslen = 0;
	assert_true(read_until(log[0], logbuf, sizeof logbuf, &loglen,
			       "test: SIGTERM: stopping (1 messages in flight)"));
	assert_int_equal(write(go[1], "g", 1), 1);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(read_until(res[0], resbuf, sizeof resbuf, &reslen, "stopped"));
	while (reslen + 1 < sizeof resbuf) {	/* the rest, to EOF */
		ssize_t r = read(res[0], resbuf + reslen, sizeof resbuf - 1 - reslen);
		if (r <= 0)
			break;
		reslen += (size_t)r;
		resbuf[reslen] = 0;
	}
	/* reload first (SIGHUP is the lower number), the stop after the message */
	assert_string_equal(resbuf, "reload\nleft\nstopped TERM 0\n");
	close(res[0]);
	close(log[0]);
	close(go[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inflight_counts),
		cmocka_unit_test(test_sigwait_leaves_hup_term_int),
		cmocka_unit_test(test_signal_thread_reload_stop_exit_0),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
