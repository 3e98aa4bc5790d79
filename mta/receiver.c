/*
 * receiver: one SMTP receiver process (see procs.h). Accepts on the shared
 * listening sockets and runs sessions on one libevent loop.
 */
#include "mta/procs.h"
#include "mta/smtpd.h"
#include "mta/smtp_session.h"
#include "mta/queue.h"
#include "mta/sasl.h"
#include "mta/policy_client.h"
#include "conf/conf.h"
#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

void proc_common_setup(const char *mail_owner)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(0);	/* the master died before we got here */
	char *err = NULL;
	if (daemon_drop_privs(mail_owner, &err) < 0)
		fatal("%s", err);
}

static struct smtpd srv;
static struct evconnlistener **evl;
static size_t nevl;
static struct event *stop_timer;
static double stop_deadline;

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	int kind = (int)(intptr_t)arg;	/* enum smtpd_listen_kind */
	(void)l;
	if (srv.stopping) {
		close(fd);
		return;
	}
	smtp_session_start(&srv, fd, sa, (socklen_t)salen, kind);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	int e = EVUTIL_SOCKET_ERROR();
	if (e != EAGAIN && e != EINTR && e != ECONNABORTED)
		log_event(NULL, "warning: accept: %s", strerror(e));
}

static void stop_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (srv.nsessions == 0 || wall_time() > stop_deadline) {
		if (srv.nsessions)
			log_event(NULL, "graceful stop deadline reached with %zu session(s) open", srv.nsessions);
		event_base_loopexit(srv.base, NULL);
		return;
	}
	struct timeval tv = { 0, 50000 };
	evtimer_add(stop_timer, &tv);
}

/*
 * on_term - SIGTERM: stop accepting, give the sessions in progress
 * graceful_stop_timeout. SIGUSR2 (replaced at a reload, main.c): the same
 * without a deadline; each session still ends by smtpd_timeout. A SIGTERM
 * after a SIGUSR2 sets the deadline.
 */
static void on_term(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	int retire = fd == SIGUSR2;
	double deadline = retire ? 1e300 : wall_time() + (double)srv.cfg.graceful_stop_s;
	if (srv.stopping) {
		if (deadline < stop_deadline)
			stop_deadline = deadline;
		return;
	}
	srv.stopping = 1;
	for (size_t i = 0; i < nevl; i++)
		evconnlistener_disable(evl[i]);
	stop_deadline = deadline;
	stop_timer = evtimer_new(srv.base, stop_check, NULL);
	stop_check(-1, 0, NULL);
}

static void policy_opts(struct policy_pool_opts *o)
{
	o->timeout_s = conf_time_s(srv.conf, "smtpd_policy_service_timeout");
	o->max_idle_s = conf_time_s(srv.conf, "smtpd_policy_service_max_idle");
	o->max_ttl_s = conf_time_s(srv.conf, "smtpd_policy_service_max_ttl");
	o->try_limit = conf_int(srv.conf, "smtpd_policy_service_try_limit");
	o->retry_delay_s = conf_time_s(srv.conf, "smtpd_policy_service_retry_delay");
}

static void on_hup(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	char *err = NULL;
	if (smtpd_load(&srv, srv.conf_path, &err) < 0) {
		log_event(NULL, "warning: reload failed, keeping the running configuration: %s", err);
		free(err);
		return;
	}
	struct policy_pool_opts o;
	policy_opts(&o);
	policy_pool_set_opts(srv.policy, &o);
}

void receiver_main(const char *conf_path, struct listener *ls, size_t nls, int notify_wr_fd)
{
	char *err = NULL;
	log_set_service("smtpd");
	evthread_use_pthreads();
	srv.base = event_base_new();
	srv.notify_fd = notify_wr_fd;
	if (smtpd_load(&srv, conf_path, &err) < 0)
		fatal("%s", err);
	proc_common_setup(conf_str(srv.conf, "mail_owner"));
	srv.committer = queue_committer_new(srv.base, srv.cfg.qdir);
	srv.sasl = sasl_server_new(srv.base);
	struct policy_pool_opts po;
	policy_opts(&po);
	srv.policy = policy_pool_new(srv.base, &po);
	evl = xcalloc(nls ? nls : 1, sizeof *evl);
	for (size_t i = 0; i < nls; i++) {
		evl[nevl] = evconnlistener_new(srv.base, on_accept, (void *)(intptr_t)ls[i].kind,
					       LEV_OPT_CLOSE_ON_EXEC, -1, ls[i].fd);
		if (!evl[nevl])
			fatal("cannot listen on %s", ls[i].spec);
		evconnlistener_set_error_cb(evl[nevl], on_accept_error);
		nevl++;
	}
	struct event *ev_term = evsignal_new(srv.base, SIGTERM, on_term, NULL);
	struct event *ev_retire = evsignal_new(srv.base, SIGUSR2, on_term, NULL);
	struct event *ev_hup = evsignal_new(srv.base, SIGHUP, on_hup, NULL);
	event_add(ev_term, NULL);
	event_add(ev_retire, NULL);
	event_add(ev_hup, NULL);
	signal(SIGPIPE, SIG_IGN);
	event_base_dispatch(srv.base);
	queue_committer_free(&srv.committer);
	sasl_server_free(&srv.sasl);
	exit(0);
}
