/*
 * test_smtp_session: session state that needs no socket.
 * The policy "instance" (issue 14): one value per message, never repeated
 * within a process, not even by a session allocated where the last one
 * was, and different in a forked receiver.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mta/smtp_session_int.h"

/* one message of a new session; *addr_out: where the session was */
static void instance_of_new_session(char *out, size_t size, void **addr_out)
{
	struct smtp_session *s = xcalloc(1, sizeof *s);
	sess_txn_reset(s);
	snprintf(out, size, "%s", s->instance);
	*addr_out = s;
	free(s);
}

static void test_instance_unique_across_sessions(void **state)
{
	(void)state;
	char a[64], b[64];
	void *pa, *pb;
	/* glibc hands the freed block back: the old pid.address.count repeated here */
	instance_of_new_session(a, sizeof a, &pa);
	instance_of_new_session(b, sizeof b, &pb);
	assert_string_not_equal(a, b);
	char pid[32];
	snprintf(pid, sizeof pid, "%x.", (unsigned)getpid());
	assert_true(strncmp(a, pid, strlen(pid)) == 0);
}

static void test_instance_new_per_message(void **state)
{
	(void)state;
	struct smtp_session *s = xcalloc(1, sizeof *s);
	char seen[100][64];
	for (int i = 0; i < 100; i++) {
		sess_txn_reset(s);
		snprintf(seen[i], sizeof seen[i], "%s", s->instance);
		for (int k = 0; k < i; k++)
			assert_string_not_equal(seen[k], seen[i]);
	}
	free(s);
}

static void test_instance_differs_in_forked_receiver(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct smtp_session *s = xcalloc(1, sizeof *s);
		sess_txn_reset(s);
		ssize_t w = write(fds[1], s->instance, strlen(s->instance) + 1);
		_exit(w > 0 ? 0 : 1);
	}
	close(fds[1]);
	char child[64] = "";
	ssize_t n = read(fds[0], child, sizeof child - 1);
	close(fds[0]);
	int st;
	waitpid(pid, &st, 0);
	assert_true(n > 0);
	struct smtp_session *s = xcalloc(1, sizeof *s);
	sess_txn_reset(s);
	assert_string_not_equal(child, s->instance);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_instance_unique_across_sessions),
		cmocka_unit_test(test_instance_new_per_message),
		cmocka_unit_test(test_instance_differs_in_forked_receiver),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
