/*
 * start_metrics: `sluice start`'s one metrics port. See start_metrics.h.
 *
 * The serving thread runs its own event base: an evhttp server on
 * start_metrics_listen and, per scrape, one evhttp client connection per
 * daemon. A scrape (struct scrape) copies the target list, asks every
 * running daemon at once and answers its client when the last one has
 * answered or failed (pending reaches 0); at most SCRAPES_MAX at once.
 */
#include "tools/start_metrics.h"
#include "conf/conf.h"
#include "lib/daemon.h"
#include "lib/metrics.h"
#include "lib/metrics_merge.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define SCRAPE_TIMEOUT_S 2
#define SCRAPE_BODY_MAX (32 << 20)
#define SCRAPES_MAX 8	/* at once; more get 503 */

/* one daemon to scrape: start_metrics_publish's copy of the supervisor's view and of mwire[] */
struct mtarget {
	char daemon[32];	/* "sluiced", "sluice-dkim", ... */
	char host[64];
	int port;		/* 0: no endpoint */
	int running;
	unsigned restarts;
};

static struct {
	pthread_mutex_t lock;	/* targets, ntargets */
	struct mtarget targets[START_METRICS_DAEMONS_MAX];
	size_t ntargets;
	int fd;			/* start_metrics_listen, -1 = off */
	struct event_base *base;
	struct evhttp *http;
	struct event *stop_ev;
	int stop_pipe[2];
	pthread_t thread;
	int running;
	struct metrics *own;	/* the supervisor's process_* (no families) */
	struct scrape *scrapes;	/* in progress */
	size_t nscrapes;
} mserve = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .stop_pipe = { -1, -1 } };

struct scrape;
struct scrape_slot {
	struct scrape *s;
	struct evhttp_connection *conn;	/* until its request is done */
	char *text;
	size_t len;
	int ok;
};

struct scrape {
	struct evhttp_request *req;	/* the client's */
	size_t n, pending;
	struct mtarget t[START_METRICS_DAEMONS_MAX];
	struct scrape_slot slot[START_METRICS_DAEMONS_MAX];
	struct scrape *next;
};

/*
 * The wiring, by daemon index. fd/bound_port: the loopback socket the
 * supervisor holds for the daemon (-1 when start_metrics_listen is off);
 * host/port: where the daemon serves now (port 0 = nowhere), set by
 * start_metrics_wire.
 */
static struct {
	int fd, bound_port;
	char host[64];
	int port;
} mwire[START_METRICS_DAEMONS_MAX];
static size_t nwire;	/* ndaemons of start_metrics_bind */
static int metrics_on;	/* start_metrics_listen set */

void start_metrics_wire(struct sbuf *out, const struct conf *c, size_t d, const char *param)
{
	if (!metrics_on)
		return;
	if (d >= nwire)
		panic("start_metrics_wire: no daemon %zu", d);
	const char *spec = conf_str(c, param);
	char host[256], port[32];
	mwire[d].port = 0;
	if (spec && *spec) {
		const char *hp = !strncmp(spec, "inet:", 5) ? spec + 5 : spec;
		if (listen_parse_hostport(hp, host, sizeof host, port, sizeof port) == 0 && strlen(host) < 64) {
			if (!*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "*"))
				strcpy(host, "127.0.0.1");
			else if (!strcmp(host, "::"))
				strcpy(host, "::1");
			strcpy(mwire[d].host, host);
			mwire[d].port = atoi(port);
		}
	} else if (mwire[d].fd >= 0) {
		sbuf_printf(out, "%s = fd:%d\n", param, mwire[d].fd);
		strcpy(mwire[d].host, "127.0.0.1");
		mwire[d].port = mwire[d].bound_port;
	}
}

int start_metrics_child_fd(size_t d)
{
	return metrics_on && d < nwire ? mwire[d].fd : -1;
}

void start_metrics_publish(const struct start_metrics_daemon *dm, size_t n)
{
	if (!metrics_on)
		return;
	struct mtarget t[START_METRICS_DAEMONS_MAX];
	if (n > nwire)
		panic("start_metrics_publish: %zu daemons", n);
	for (size_t i = 0; i < n; i++) {
		size_t d = dm[i].d;
		if (d >= nwire)
			panic("start_metrics_publish: no daemon %zu", d);
		memset(&t[i], 0, sizeof t[i]);
		snprintf(t[i].daemon, sizeof t[i].daemon, "%s", dm[i].label);
		snprintf(t[i].host, sizeof t[i].host, "%s", mwire[d].host);
		t[i].port = mwire[d].port;
		t[i].running = dm[i].running;
		t[i].restarts = dm[i].restarts;
	}
	pthread_mutex_lock(&mserve.lock);
	memcpy(mserve.targets, t, n * sizeof *t);
	mserve.ntargets = n;
	pthread_mutex_unlock(&mserve.lock);
}

static void scrape_free(struct scrape *s)
{
	for (struct scrape **pp = &mserve.scrapes; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			mserve.nscrapes--;
			break;
		}
	for (size_t i = 0; i < s->n; i++) {
		if (s->slot[i].conn)
			evhttp_connection_free(s->slot[i].conn);
		free(s->slot[i].text);
	}
	free(s);
}

/* scrape_done - every daemon answered or failed: the merged text to the client. */
static void scrape_done(struct scrape *s)
{
	struct sbuf own;
	sbuf_init(&own);
	sbuf_adds(&own, "# HELP sluice_up Whether sluice start read the daemon's /metrics at this scrape (0: down, "
		  "restarting or no answer within 2s).\n# TYPE sluice_up gauge\n");
	for (size_t i = 0; i < s->n; i++)
		sbuf_printf(&own, "sluice_up{daemon=\"%s\"} %d\n", s->t[i].daemon, s->slot[i].ok);
	sbuf_adds(&own, "# HELP sluice_filter_restarts_total Restarts of the daemon by sluice start after it "
		  "crashed (as sluice status shows them).\n# TYPE sluice_filter_restarts_total counter\n");
	for (size_t i = 0; i < s->n; i++)
		sbuf_printf(&own, "sluice_filter_restarts_total{daemon=\"%s\"} %u\n", s->t[i].daemon, s->t[i].restarts);
	size_t plen;
	char *proc = metrics_render(mserve.own, &plen);
	struct metrics_source src[START_METRICS_DAEMONS_MAX + 2];
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->slot[i].ok)
			src[n++] = (struct metrics_source){ s->t[i].daemon, s->slot[i].text, s->slot[i].len };
	src[n++] = (struct metrics_source){ NULL, own.buf, own.len };
	src[n++] = (struct metrics_source){ "sluice", proc, plen };
	size_t len;
	char *text = metrics_merge("daemon", src, n, &len);
	free(proc);
	sbuf_free(&own);
	struct evbuffer *out = evbuffer_new();
	if (out && evbuffer_add(out, text, len) == 0) {
		evhttp_add_header(evhttp_request_get_output_headers(s->req), "Content-Type",
				  "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(s->req, HTTP_OK, "OK", out);
	} else {
		evhttp_send_error(s->req, HTTP_INTERNAL, NULL);
	}
	if (out)
		evbuffer_free(out);
	free(text);
	scrape_free(s);
}

static void scrape_slot_done(struct scrape_slot *sl)
{
	if (--sl->s->pending == 0)
		scrape_done(sl->s);
}

/* on_scraped - a daemon's answer (req NULL: connection failed or timed out) */
static void on_scraped(struct evhttp_request *req, void *arg)
{
	struct scrape_slot *sl = arg;
	sl->conn = NULL;	/* freed by libevent after this callback (free_on_completion) */
	if (req && evhttp_request_get_response_code(req) == HTTP_OK) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		sl->len = evbuffer_get_length(in);
		sl->text = xmalloc(sl->len + 1);
		evbuffer_remove(in, sl->text, sl->len);
		sl->text[sl->len] = 0;
		sl->ok = 1;
	}
	scrape_slot_done(sl);
}

static void scrape_start(struct scrape_slot *sl, const struct mtarget *t)
{
	if (!t->running || !t->port)
		return;
	struct evhttp_connection *conn = evhttp_connection_base_new(mserve.base, NULL, t->host, (unsigned short)t->port);
	if (!conn)
		return;
	evhttp_connection_set_timeout(conn, SCRAPE_TIMEOUT_S);
	evhttp_connection_set_max_body_size(conn, SCRAPE_BODY_MAX);
	struct evhttp_request *r = evhttp_request_new(on_scraped, sl);
	if (!r) {
		evhttp_connection_free(conn);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(r), "Host", t->host);
	sl->s->pending++;
	sl->conn = conn;
	/*
	 * libevent 2.1 may call on_scraped at once (a connect that fails at
	 * the socket() call) and return 0; then the connection is ours to
	 * free. The guard in on_metrics_request keeps the scrape alive.
	 * XXX: when evhttp_make_request fails, r may or may not be freed by
	 * libevent: it is left (out of memory only).
	 */
	int rc = evhttp_make_request(conn, r, EVHTTP_REQ_GET, "/metrics");
	if (rc < 0 && sl->conn) {
		sl->conn = NULL;
		sl->s->pending--;
	}
	if (rc < 0 || !sl->conn)
		evhttp_connection_free(conn);
	else
		evhttp_connection_free_on_completion(conn);
}

static void on_metrics_request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (!path || strcmp(path, "/metrics")) {
		evhttp_send_error(req, HTTP_NOTFOUND, "try /metrics");
		return;
	}
	if (mserve.nscrapes >= SCRAPES_MAX) {
		evhttp_send_error(req, HTTP_SERVUNAVAIL, "too many scrapes at once");
		return;
	}
	struct scrape *s = xcalloc(1, sizeof *s);
	s->req = req;
	pthread_mutex_lock(&mserve.lock);
	s->n = mserve.ntargets;
	memcpy(s->t, mserve.targets, s->n * sizeof *s->t);
	pthread_mutex_unlock(&mserve.lock);
	s->next = mserve.scrapes;
	mserve.scrapes = s;
	mserve.nscrapes++;
	s->pending = 1;	/* this function's own: the answers may come before the loop ends */
	for (size_t i = 0; i < s->n; i++) {
		s->slot[i].s = s;
		scrape_start(&s->slot[i], &s->t[i]);
	}
	if (--s->pending == 0)
		scrape_done(s);
}

static void on_metrics_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	event_base_loopbreak(mserve.base);
}

static void *metrics_thread(void *arg)
{
	(void)arg;
	event_base_dispatch(mserve.base);
	return NULL;
}

int start_metrics_bind(const struct conf *c, size_t ndaemons, char **err_out)
{
	if (ndaemons > START_METRICS_DAEMONS_MAX)
		panic("start_metrics_bind: %zu daemons", ndaemons);
	nwire = ndaemons;
	for (size_t d = 0; d < nwire; d++)
		mwire[d].fd = -1;
	const char *spec = conf_str(c, "start_metrics_listen");
	if (!spec || !*spec)
		return 0;
	char *err = NULL;
	if (metrics_listen(spec, &mserve.fd, &err) < 0) {
		*err_out = xasprintf("%s: start_metrics_listen: %s", conf_where(c, "start_metrics_listen"), err);
		free(err);
		return -1;
	}
	for (size_t d = 0; d < nwire; d++) {
		struct listener l;
		if (listen_open("127.0.0.1:0", 64, 0, &l, &err) < 0) {
			*err_out = xasprintf("start_metrics_listen: a loopback port for the daemons: %s", err);
			free(err);
			return -1;
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		if (getsockname(l.fd, (struct sockaddr *)&ss, &sl) < 0 || ss.ss_family != AF_INET) {
			*err_out = xasprintf("start_metrics_listen: getsockname: %s", strerror(errno));
			listen_close(&l);
			return -1;
		}
		mwire[d].fd = l.fd;
		mwire[d].bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		l.fd = -1;
		listen_close(&l);
	}
	metrics_on = 1;
	return 0;
}

int start_metrics_serve(char **err_out)
{
	if (mserve.fd < 0)
		return 0;
	mserve.own = metrics_new(16, 1);
	mserve.base = event_base_new();
	if (!mserve.base || !(mserve.http = evhttp_new(mserve.base)) ||
	    evhttp_accept_socket(mserve.http, mserve.fd) < 0) {
		*err_out = xstrdup("start_metrics_listen: cannot serve HTTP on the socket");
		return -1;
	}
	mserve.fd = -2;	/* the evhttp's now; start_metrics_publish still runs */
	evhttp_set_allowed_methods(mserve.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(mserve.http, 10);
	evhttp_set_gencb(mserve.http, on_metrics_request, NULL);
	if (pipe2(mserve.stop_pipe, O_CLOEXEC) < 0) {
		*err_out = xasprintf("start_metrics_listen: pipe: %s", strerror(errno));
		return -1;
	}
	mserve.stop_ev = event_new(mserve.base, mserve.stop_pipe[0], EV_READ, on_metrics_stop, NULL);
	event_add(mserve.stop_ev, NULL);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&mserve.thread, NULL, metrics_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		*err_out = xasprintf("start_metrics_listen: pthread_create: %s", strerror(rc));
		return -1;
	}
	mserve.running = 1;
	return 0;
}

void start_metrics_stop(void)
{
	if (mserve.running) {
		if (write(mserve.stop_pipe[1], "x", 1) != 1)
			panic("sluice start: cannot wake the metrics thread");
		pthread_join(mserve.thread, NULL);
		mserve.running = 0;
	}
	while (mserve.scrapes)
		scrape_free(mserve.scrapes);	/* the client's request goes with evhttp_free */
	if (mserve.http)
		evhttp_free(mserve.http);
	if (mserve.stop_ev)
		event_free(mserve.stop_ev);
	if (mserve.base)
		event_base_free(mserve.base);
	for (int i = 0; i < 2; i++)
		if (mserve.stop_pipe[i] >= 0)
			close(mserve.stop_pipe[i]);
	metrics_free(&mserve.own);
	if (mserve.fd >= 0)
		close(mserve.fd);
	for (size_t d = 0; d < nwire; d++)
		if (mwire[d].fd >= 0)
			close(mwire[d].fd);
	mserve.http = NULL;
	mserve.stop_ev = NULL;
	mserve.base = NULL;
	mserve.fd = -1;
}
