/*
 * qmgr_proc: the queue manager process (see procs.h): reads "QUEUEID\n"
 * notifications from the receivers, routes recipients through router.c
 * and runs qmgr.c on its own libevent loop.
 */
#include "mta/procs.h"
#include "conf/params.h"
#include "mta/qmgr.h"
#include "mta/router.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
	struct event_base *base;
	struct conf *conf;
	struct table_set *tables;
	struct router *router;
	struct qmgr *qmgr;
	const char *conf_path;
	char *route_buf;	/* the last route's path/reason (borrowed by qmgr until we return) */
	char pending[256];	/* partial notification line */
	size_t npending;
} Q;

static int route(void *arg, const char *rcpt, struct qmgr_route *out)
{
	(void)arg;
	free(Q.route_buf);
	Q.route_buf = NULL;
	enum router_route_kind k = router_route(Q.router, rcpt, &Q.route_buf);
	if (k == ROUTER_ROUTE_MAILDIR) {
		out->kind = QMGR_ROUTE_MAILDIR;
		out->path = Q.route_buf;
	} else {
		out->kind = k == ROUTER_ROUTE_FAIL ? QMGR_ROUTE_FAIL : QMGR_ROUTE_DEFER;
		out->reason = Q.route_buf;
	}
	return 0;
}

static int load(char **err_out)
{
	struct conf *c = conf_load(Q.conf_path, params_all, NULL, err_out);
	if (!c)
		return -1;
	struct table_set *ts = table_set_new();
	struct router *r = router_new(c, ts, err_out);
	if (!r) {
		table_set_free(&ts);
		conf_free(&c);
		return -1;
	}
	router_free(&Q.router);
	table_set_free(&Q.tables);
	conf_free(&Q.conf);
	Q.conf = c;
	Q.tables = ts;
	Q.router = r;
	return 0;
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			log_event(NULL, "warning: notification pipe closed; relying on queue scans");
			event_del(event_base_get_running_event(Q.base));
		}
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			Q.pending[Q.npending] = 0;
			qmgr_notify(Q.qmgr, Q.pending);
			Q.npending = 0;
		} else if (Q.npending < sizeof Q.pending - 1) {
			Q.pending[Q.npending++] = buf[i];
		}
	}
}

static void on_term(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	qmgr_stop(Q.qmgr, (double)conf_time_s(Q.conf, "graceful_stop_timeout"));
}

static void on_hup(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	char *err = NULL;
	if (load(&err) < 0) {
		log_event(NULL, "warning: reload failed, keeping the running configuration: %s", err);
		free(err);
	}
}

static void on_usr1(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	qmgr_flush(Q.qmgr);
}

void qmgr_main(const char *conf_path, int notify_rd_fd)
{
	char *err = NULL;
	Q.conf_path = conf_path;
	if (load(&err) < 0)
		fatal("%s", err);
	proc_common_setup(conf_str(Q.conf, "mail_owner"));
	evthread_use_pthreads();
	Q.base = event_base_new();
	struct qmgr_opts o = { 0 };
	o.qdir = conf_str(Q.conf, "queue_directory");
	o.myhostname = conf_str(Q.conf, "myhostname");
	o.workers = (int)conf_int(Q.conf, "qmgr_delivery_threads");
	o.minimal_backoff_time_s = (double)conf_time_s(Q.conf, "minimal_backoff_time");
	o.maximal_backoff_time_s = (double)conf_time_s(Q.conf, "maximal_backoff_time");
	o.maximal_queue_lifetime_s = (double)conf_time_s(Q.conf, "maximal_queue_lifetime");
	o.queue_run_delay_s = (double)conf_time_s(Q.conf, "queue_run_delay");
	o.route = route;
	Q.qmgr = qmgr_new(Q.base, &o);
	struct event *ev_n = event_new(Q.base, notify_rd_fd, EV_READ | EV_PERSIST, on_notify, NULL);
	struct event *ev_t = evsignal_new(Q.base, SIGTERM, on_term, NULL);
	struct event *ev_h = evsignal_new(Q.base, SIGHUP, on_hup, NULL);
	struct event *ev_u = evsignal_new(Q.base, SIGUSR1, on_usr1, NULL);
	event_add(ev_n, NULL);
	event_add(ev_t, NULL);
	event_add(ev_h, NULL);
	event_add(ev_u, NULL);
	qmgr_start(Q.qmgr);
	event_base_dispatch(Q.base);
	qmgr_free(&Q.qmgr);
	exit(0);
}
