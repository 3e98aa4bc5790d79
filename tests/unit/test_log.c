/*
 * test_log: lib/log's two forms of a line. Plain: Postfix's program field
 * "<syslog_name>/<service>[pid]" (per process and per line) or the bare
 * progname without a syslog name. JSON (jansson): the envelope members, each
 * key=value token as a member (values with <...>, [...], (...), "..." whole,
 * first occurrence wins, envelope members never replaced), escaping, bytes
 * that are not UTF-8. Each line is read back from a real log file.
 */
#include "lib/log.h"
#include "lib/util.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char path[64];

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof path, "/tmp/test_log.XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_stderr_only("test_log");
	log_set_syslog_name(NULL);
	log_set_service(NULL);
	unlink(path);
	return 0;
}

/* The log file's lines since the last call (truncates it). */
static char *take(void)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	assert_int_equal(truncate(path, 0), 0);
	return buf;
}

static void open_log(enum log_format fmt)
{
	const char *err = NULL;
	assert_int_equal(log_init("sluiced", path, fmt, &err), 0);
}

static void test_plain_program_field(void **state)
{
	(void)state;
	char want[128];
	open_log(LOG_FORMAT_PLAIN);
	/* no syslog name: the progname, services ignored */
	log_set_service("smtpd");
	log_event("ABC123", "client=unknown[127.0.0.1]");
	snprintf(want, sizeof want, " sluiced[%d]: ABC123: client=unknown[127.0.0.1]\n", (int)getpid());
	assert_non_null(strstr(take(), want));

	log_set_syslog_name("sluice");
	log_event("ABC123", "client=unknown[127.0.0.1]");
	snprintf(want, sizeof want, " sluice/smtpd[%d]: ABC123: client=unknown[127.0.0.1]\n", (int)getpid());
	assert_non_null(strstr(take(), want));

	/* per line: the default stays for the next */
	log_service_event("cleanup", "ABC123", "message-id=<%s>", "1@x");
	log_event(NULL, "disconnect from unknown[127.0.0.1]");
	char *out = take();
	snprintf(want, sizeof want, " sluice/cleanup[%d]: ABC123: message-id=<1@x>\n", (int)getpid());
	assert_non_null(strstr(out, want));
	snprintf(want, sizeof want, " sluice/smtpd[%d]: disconnect from", (int)getpid());
	assert_non_null(strstr(out, want));

	/* Postfix's syslog_name parameter, and no service: the name alone */
	log_set_syslog_name("mx-out");
	log_set_service(NULL);
	log_event(NULL, "daemon started");
	snprintf(want, sizeof want, " mx-out[%d]: daemon started\n", (int)getpid());
	assert_non_null(strstr(take(), want));

	/* one line per event, whatever the message holds */
	log_event("Q", "a\r\nb");
	out = take();
	assert_non_null(strstr(out, "Q: a  b\n"));
	assert_int_equal(strchr(out, '\n') - out, (ptrdiff_t)strlen(out) - 1);
}

static json_t *one_json(void)
{
	char *out = take();
	size_t n = strlen(out);
	assert_true(n > 0 && out[n - 1] == '\n');
	assert_null(memchr(out, '\n', n - 1));
	json_error_t e;
	json_t *j = json_loads(out, 0, &e);
	if (!j)
		fail_msg("not JSON (%s): %s", e.text, out);
	assert_true(json_is_object(j));
	return j;
}

static const char *str(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void test_json_envelope_and_members(void **state)
{
	(void)state;
	open_log(LOG_FORMAT_JSON);
	log_set_syslog_name("sluice");
	log_set_service("qmgr");
	log_event("4jfWWk10BkzNR", "to=<a@example.com>, relay=virtual, delay=0.01, delays=0/0/0/0, "
				    "dsn=2.0.0, status=sent (delivered to maildir)");
	json_t *j = one_json();
	assert_string_equal(str(j, "program"), "sluice/qmgr");
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), getpid());
	assert_string_equal(str(j, "queue_id"), "4jfWWk10BkzNR");
	assert_non_null(str(j, "host"));
	const char *t = str(j, "time");
	assert_non_null(t);
	/* 2026-12-02T08:44:02.123Z */
	assert_int_equal(strlen(t), 24);
	assert_true(t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
	assert_string_equal(str(j, "to"), "<a@example.com>");
	assert_string_equal(str(j, "relay"), "virtual");
	assert_string_equal(str(j, "status"), "sent");
	assert_string_equal(str(j, "dsn"), "2.0.0");
	assert_string_equal(str(j, "message"), "to=<a@example.com>, relay=virtual, delay=0.01, delays=0/0/0/0, "
						"dsn=2.0.0, status=sent (delivered to maildir)");
	/* the envelope's order: time, host, program, pid, queue_id, message */
	const char *order[] = { "time", "host", "program", "pid", "queue_id", "message" };
	size_t i = 0;
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) {
		if (i < 6)
			assert_string_equal(k, order[i]);
		i++;
	}
	json_decref(j);

	/* per-line service; no queue id member for daemon events */
	log_service_event("bounce", NULL, "sender non-delivery notification: X");
	j = one_json();
	assert_string_equal(str(j, "program"), "sluice/bounce");
	assert_null(json_object_get(j, "queue_id"));
	json_decref(j);
}

static void test_json_tokens(void **state)
{
	(void)state;
	open_log(LOG_FORMAT_JSON);
	/* quoted values whole, first occurrence wins, envelope keys kept */
	log_event("Q1", "milter=dkim action=reject reply=\"550 5.7.1 bad, really\" action=accept "
			"pid=7 message=x queue_id=Z host=h client=unknown[10.0.0.1]; helo=<a b>");
	json_t *j = one_json();
	assert_string_equal(str(j, "milter"), "dkim");
	assert_string_equal(str(j, "action"), "reject");
	assert_string_equal(str(j, "reply"), "\"550 5.7.1 bad, really\"");
	assert_string_equal(str(j, "queue_id"), "Q1");
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), getpid());
	assert_string_not_equal(str(j, "host"), "h");
	assert_string_equal(str(j, "client"), "unknown[10.0.0.1]");
	assert_string_equal(str(j, "helo"), "<a b>");
	assert_non_null(strstr(str(j, "message"), "message=x"));
	json_decref(j);

	/* escapes: quotes, backslashes, control bytes */
	log_event(NULL, "reason=\"a\\\"b\" x\ttab \x01");
	j = one_json();
	assert_string_equal(str(j, "message"), "reason=\"a\\\"b\" x\ttab \x01");
	assert_string_equal(str(j, "reason"), "\"a\\\"b\"");
	json_decref(j);

	/* UTF-8 kept; bytes that are not UTF-8 become '?' (the line stays JSON) */
	log_event(NULL, "helo=<h\xc3\xa9llo>");
	j = one_json();
	assert_string_equal(str(j, "helo"), "<h\xc3\xa9llo>");
	json_decref(j);
	log_event(NULL, "helo=<bad\xff\xfe> ok=1");
	j = one_json();
	assert_string_equal(str(j, "helo"), "<bad?" "?>");
	assert_string_equal(str(j, "ok"), "1");
	json_decref(j);

	/* many tokens: none dropped */
	struct sbuf b;
	sbuf_init(&b);
	for (int i = 0; i < 100; i++)
		sbuf_printf(&b, "%sk%d=v%d", i ? ", " : "", i, i);
	log_event(NULL, "%s", b.buf);
	sbuf_free(&b);
	j = one_json();
	assert_int_equal(json_object_size(j), 5 + 100);
	assert_string_equal(str(j, "k99"), "v99");
	json_decref(j);
}

static void test_json_render(void **state)
{
	(void)state;
	char *s = log_json_render("sluice-spf", "NOQUEUE", "spf: result=pass, time_ms=3");
	json_t *j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(str(j, "program"), "sluice-spf");
	assert_string_equal(str(j, "queue_id"), "NOQUEUE");
	assert_string_equal(str(j, "result"), "pass");
	assert_string_equal(str(j, "time_ms"), "3");
	assert_null(strchr(s, '\n'));
	json_decref(j);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain_program_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_envelope_and_members, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_render, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
