/*
 * qmgr_proc: the queue manager process (see procs.h): reads "QUEUEID\n"
 * notifications from the receivers, routes recipients through router.c
 * and runs qmgr.c on its own libevent loop.
 */
#include "mta/procs.h"
#include "conf/params.h"
#include "mta/qmgr.h"
#include "mta/router.h"
#include "mta/transport.h"
#include "mta/bounce.h"
#include "mta/maildir.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
	struct event_base *base;
	struct conf *conf;
	struct table_set *tables;
	struct router *router;
	struct transport_router *troute;
	struct transport *transport;	/* delivery side: built once, shared by the workers */
	struct bounce_opts bounce;
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
	enum transport_kind k = transport_route(Q.troute, Q.router, rcpt, &Q.route_buf);
	switch (k) {
	case TRANSPORT_MAILDIR:
		out->kind = QMGR_ROUTE_MAILDIR;
		out->path = Q.route_buf;
		break;
	case TRANSPORT_SMTP:
	case TRANSPORT_LMTP:
		out->kind = k == TRANSPORT_SMTP ? QMGR_ROUTE_SMTP : QMGR_ROUTE_LMTP;
		out->nexthop = Q.route_buf;
		break;
	default:
		out->kind = k == TRANSPORT_FAIL ? QMGR_ROUTE_FAIL : QMGR_ROUTE_DEFER;
		out->reason = Q.route_buf;
	}
	return 0;
}

/* worker threads: LMTP/SMTP through transport.c, one transaction for r[0..n) */
static void deliver(void *arg, enum qmgr_route_kind kind, const char *nexthop, struct queue_msg *m,
		    struct qmgr_rcpt_result *r, size_t n, char *relay, size_t relay_size)
{
	(void)arg;
	struct smtp_client_rcpt *cr = xcalloc(n ? n : 1, sizeof *cr);
	for (size_t k = 0; k < n; k++) {
		const struct queue_rcpt *qr = &m->env.rcpt[r[k].rcpt];
		cr[k].addr = qr->addr;
		cr[k].notify = qr->notify;
		cr[k].orcpt = qr->orcpt;
	}
	transport_deliver(Q.transport, kind == QMGR_ROUTE_LMTP ? TRANSPORT_LMTP : TRANSPORT_SMTP,
			  nexthop, m, cr, n, relay, relay_size);
	for (size_t k = 0; k < n; k++) {
		r[k].res = cr[k].res == SMTP_RES_OK ? MAILDIR_OK
			   : cr[k].res == SMTP_RES_BOUNCE ? MAILDIR_PERMFAIL : MAILDIR_TEMPFAIL;
		snprintf(r[k].reason, sizeof r[k].reason, "%s", cr[k].reason);
	}
	free(cr);
}

/*
 * Worker threads: one DSN per message and attempt (every failed recipient),
 * or a delay warning. The qmgr logs the new id and picks it up.
 */
static int dsn(void *arg, enum qmgr_dsn_kind kind, struct queue_msg *m,
	       const struct qmgr_dsn_rcpt *rcpts, size_t n, char **id_out, char **err_out)
{
	(void)arg;
	struct bounce_item *v = xcalloc(n ? n : 1, sizeof *v);
	for (size_t i = 0; i < n; i++) {
		v[i].rcpt = rcpts[i].rcpt;
		v[i].dsn = rcpts[i].dsn;
		v[i].text = rcpts[i].text;
	}
	int rc = bounce_msg(&Q.bounce, kind == QMGR_DSN_DELAYED ? BOUNCE_DELAYED : BOUNCE_FAILED, m,
			    v, n, id_out, err_out);
	free(v);
	return rc;
}

static int load(char **err_out)
{
	struct conf *c = conf_load(Q.conf_path, params_all, NULL, err_out);
	if (!c)
		return -1;
	struct table_set *ts = table_set_new();
	struct router *r = router_new(c, ts, err_out);
	struct transport_router *tr = r ? transport_router_new(c, ts, err_out) : NULL;
	if (!tr) {
		router_free(&r);
		table_set_free(&ts);
		conf_free(&c);
		return -1;
	}
	transport_router_free(&Q.troute);
	Q.troute = tr;
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
	log_set_service("qmgr");
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
	Q.transport = transport_new(Q.conf, &err);
	if (!Q.transport)
		fatal("%s: %s", conf_path, err);
	o.deliver = deliver;
	o.dsn = dsn;
	o.delay_warning_time_s = (double)conf_time_s(Q.conf, "delay_warning_time");
	o.destination_concurrency_limit = (int)conf_int(Q.conf, "default_destination_concurrency_limit");
	/* XXX: the bounce and smtp_* settings are read once (a reload keeps them) */
	Q.bounce.qdir = o.qdir;
	Q.bounce.myhostname = o.myhostname;
	const char *dbl = conf_str(Q.conf, "2bounce_notice_recipient");
	Q.bounce.double_bounce_rcpt = strchr(dbl, '@') ? xstrdup(dbl)
				      : xasprintf("%s@%s", dbl, conf_str(Q.conf, "myorigin"));
	const char *dbs = conf_str(Q.conf, "double_bounce_sender");
	Q.bounce.double_bounce_sender = strchr(dbs, '@') ? xstrdup(dbs)
					: xasprintf("%s@%s", dbs, conf_str(Q.conf, "myorigin"));
	Q.bounce.size_limit = conf_size(Q.conf, "bounce_size_limit");
	Q.bounce.queue_lifetime_s = o.maximal_queue_lifetime_s;
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
	transport_free(&Q.transport);	/* after the workers: QUITs the cached sessions */
	exit(0);
}
