/*
 * test_smtp_client_session: mta/smtp_client.c against a scripted SMTP
 * server thread on loopback: several recipients in one transaction (one
 * MAIL, one RCPT each, one DATA; a rejected RCPT bounces only its
 * recipient), RSET before a second transaction on the same session, QUIT
 * on close, and dot-stuffing with CRLF line ends.
 */
#include "mta/smtp_client.h"
#include "mta/queue.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
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

struct server {
	int lfd;
	struct sockaddr_in sa;
	pthread_t th;
	struct sbuf seen;	/* every command line received, LF-separated; DATA as "<data>" */
	struct sbuf data;	/* the last message content as received */
};

static void srv_say(int fd, const char *s)
{
	ssize_t n = write(fd, s, strlen(s));
	(void)n;
}

/* one line from fd (CRLF stripped), or -1 on EOF */
static int srv_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		char c;
		if (read(fd, &c, 1) != 1)
			return -1;
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = 0;
	return 0;
}

static void *srv_main(void *arg)
{
	struct server *sv = arg;
	int fd = accept(sv->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	char line[1024];
	srv_say(fd, "220 fake.test ESMTP\r\n");
	while (srv_line(fd, line, sizeof line) == 0) {
		sbuf_printf(&sv->seen, "%s\n", line);
		if (strncmp(line, "EHLO", 4) == 0) {
			srv_say(fd, "250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
		} else if (strncmp(line, "MAIL", 4) == 0 || strcmp(line, "RSET") == 0) {
			srv_say(fd, "250 2.0.0 Ok\r\n");
		} else if (strncmp(line, "RCPT", 4) == 0) {
			srv_say(fd, strstr(line, "nobody@") ? "550 5.1.1 <nobody>: no such user\r\n"
							    : "250 2.1.5 Ok\r\n");
		} else if (strcmp(line, "DATA") == 0) {
			srv_say(fd, "354 go ahead\r\n");
			sbuf_reset(&sv->data);
			while (srv_line(fd, line, sizeof line) == 0 && strcmp(line, ".") != 0)
				sbuf_printf(&sv->data, "%s\n", line);
			sbuf_adds(&sv->seen, "<data>\n");
			srv_say(fd, "250 2.0.0 Ok: queued as Q1\r\n");
		} else if (strcmp(line, "QUIT") == 0) {
			srv_say(fd, "221 2.0.0 Bye\r\n");
			break;
		} else {
			srv_say(fd, "502 5.5.2 what\r\n");
		}
	}
	close(fd);
	return NULL;
}

static void srv_start(struct server *sv)
{
	memset(sv, 0, sizeof *sv);
	sbuf_init(&sv->seen);
	sbuf_init(&sv->data);
	sv->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(sv->lfd >= 0);
	sv->sa.sin_family = AF_INET;
	sv->sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(sv->lfd, (struct sockaddr *)&sv->sa, sizeof sv->sa), 0);
	socklen_t l = sizeof sv->sa;
	assert_int_equal(getsockname(sv->lfd, (struct sockaddr *)&sv->sa, &l), 0);
	assert_int_equal(listen(sv->lfd, 1), 0);
	assert_int_equal(pthread_create(&sv->th, NULL, srv_main, sv), 0);
}

static void srv_stop(struct server *sv)
{
	pthread_join(sv->th, NULL);
	close(sv->lfd);
	sbuf_addc(&sv->seen, 0);
	sbuf_addc(&sv->data, 0);
}

static char qdir[64];

static void make_msg(struct queue_msg *m, const char *body, const char *const *rcpts, size_t n)
{
	char *err = NULL;
	struct queue_writer *w = queue_writer_open(qdir, &err);
	assert_non_null(w);
	char id[QUEUE_ID_MAX];
	snprintf(id, sizeof id, "%s", queue_writer_id(w));
	assert_int_equal(queue_writer_write(w, body, strlen(body)), 0);
	struct queue_envelope e = { 0 };
	e.sender = xstrdup("alice@example.com");
	e.arrival = wall_time();
	for (size_t i = 0; i < n; i++)
		queue_envelope_add_rcpt(&e, rcpts[i], NULL, 0, NULL);
	assert_int_equal(queue_writer_commit_sync(w, &e, &err), 0);
	queue_envelope_free(&e);
	assert_int_equal(queue_msg_open(qdir, QUEUE_ACTIVE, id, m, &err), 0);
}

static void test_batch_reset_quit(void **state)
{
	(void)state;
	struct server sv;
	srv_start(&sv);
	struct smtp_client_cfg cfg = { "client.test", 5, 5, 5, 5, 5, 5, 5, 5, SMTP_TLS_NONE, NULL };
	char reason[600];
	enum smtp_client_res res;
	struct smtp_client_sess *s = smtp_client_open(&cfg, SMTP_CLIENT_SMTP,
						      (struct sockaddr *)&sv.sa, sizeof sv.sa,
						      "fake.test", "127.0.0.1", ntohs(sv.sa.sin_port),
						      NULL, NULL, NULL, reason, sizeof reason, &res);
	assert_non_null(s);

	/* one transaction, three recipients, one refused */
	static const char *const r1[] = { "a@x.test", "nobody@x.test", "b@x.test" };
	struct queue_msg m;
	make_msg(&m, "Subject: one\n\n.dot\nend", r1, 3);
	struct smtp_client_rcpt cr[3];
	memset(cr, 0, sizeof cr);
	for (size_t i = 0; i < 3; i++)
		cr[i].addr = r1[i];
	assert_int_equal(smtp_client_send(s, &m, cr, 3), 0);
	assert_int_equal(cr[0].res, SMTP_RES_OK);
	assert_int_equal(cr[1].res, SMTP_RES_BOUNCE);
	assert_int_equal(cr[2].res, SMTP_RES_OK);
	assert_non_null(strstr(cr[0].reason, "250 2.0.0 Ok: queued as Q1"));
	assert_non_null(strstr(cr[1].reason, "5.1.1 host fake.test[127.0.0.1]"));
	assert_non_null(strstr(cr[1].reason, "(in reply to RCPT TO command)"));
	queue_msg_close(&m);

	/* the same session again: RSET, then the next message */
	assert_int_equal(smtp_client_reset(s), 0);
	static const char *const r2[] = { "c@x.test" };
	make_msg(&m, "Subject: two\n\nbody\n", r2, 1);
	memset(cr, 0, sizeof cr);
	cr[0].addr = r2[0];
	assert_int_equal(smtp_client_send(s, &m, cr, 1), 0);
	assert_int_equal(cr[0].res, SMTP_RES_OK);
	queue_msg_close(&m);
	smtp_client_close(&s);
	srv_stop(&sv);

	assert_string_equal(sv.seen.buf,
			    "EHLO client.test\n"
			    "MAIL FROM:<alice@example.com>\n"
			    "RCPT TO:<a@x.test>\n"
			    "RCPT TO:<nobody@x.test>\n"
			    "RCPT TO:<b@x.test>\n"
			    "DATA\n"
			    "<data>\n"
			    "RSET\n"
			    "MAIL FROM:<alice@example.com>\n"
			    "RCPT TO:<c@x.test>\n"
			    "DATA\n"
			    "<data>\n"
			    "QUIT\n");
	assert_string_equal(sv.data.buf, "Subject: two\n\nbody\n");
	sbuf_free(&sv.seen);
	sbuf_free(&sv.data);
}

static void test_dot_stuffing(void **state)
{
	(void)state;
	struct server sv;
	srv_start(&sv);
	struct smtp_client_cfg cfg = { "client.test", 5, 5, 5, 5, 5, 5, 5, 5, SMTP_TLS_NONE, NULL };
	char reason[600];
	enum smtp_client_res res;
	struct smtp_client_sess *s = smtp_client_open(&cfg, SMTP_CLIENT_SMTP,
						      (struct sockaddr *)&sv.sa, sizeof sv.sa,
						      "fake.test", "127.0.0.1", ntohs(sv.sa.sin_port),
						      NULL, NULL, NULL, reason, sizeof reason, &res);
	assert_non_null(s);
	static const char *const r1[] = { "a@x.test" };
	struct queue_msg m;
	make_msg(&m, "Subject: dots\n\n.one\n..two\nlast", r1, 1);
	struct smtp_client_rcpt cr[1];
	memset(cr, 0, sizeof cr);
	cr[0].addr = r1[0];
	assert_int_equal(smtp_client_send(s, &m, cr, 1), 0);
	assert_int_equal(cr[0].res, SMTP_RES_OK);
	queue_msg_close(&m);
	smtp_client_close(&s);
	srv_stop(&sv);
	/* on the wire: stuffed; the server above does not unstuff */
	assert_string_equal(sv.data.buf, "Subject: dots\n\n..one\n...two\nlast\n");
	sbuf_free(&sv.seen);
	sbuf_free(&sv.data);
}

static int rm_all(void)
{
	char *cmd = xasprintf("rm -rf '%s'", qdir);
	int rc = system(cmd);
	free(cmd);
	return rc;
}

int main(void)
{
	snprintf(qdir, sizeof qdir, "/tmp/test_smtp_client_session.XXXXXX");
	if (!mkdtemp(qdir))
		return 1;
	char *err = NULL;
	if (queue_init(qdir, &err) < 0) {
		fprintf(stderr, "queue_init: %s\n", err);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch_reset_quit),
		cmocka_unit_test(test_dot_stuffing),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rm_all();
	return rc;
}
