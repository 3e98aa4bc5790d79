#include "mta/policy_client.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "proto/policy.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct conn {
	struct policy_pool *pool;
	char *service;
	struct bufferevent *bev;
	struct policy_parser *parser;
	struct policy_call *call;	/* in use by this call, or NULL when idle */
	double born, idle_since;
	int connected;
	int reused;			/* taken from the idle list for this call */
	int answered;			/* a byte of a reply arrived for this call */
	struct conn *next;		/* idle list */
};

struct policy_call {
	struct policy_pool *pool;
	char *service;
	struct sbuf req;
	policy_done_cb cb;
	void *arg;
	struct conn *conn;
	int tries;
	struct event *timer;		/* request timeout, then retry delay */
	int waiting_retry;
};

struct policy_pool {
	struct event_base *base;
	struct policy_pool_opts o;
	struct conn *idle;
	struct event *sweep;
};

static void conn_free(struct conn *c)
{
	if (!c)
		return;
	if (c->bev)
		bufferevent_free(c->bev);
	policy_parser_free(&c->parser);
	free(c->service);
	free(c);
}

static void call_finish(struct policy_call *call, const char *action, const char *err)
{
	policy_done_cb cb = call->cb;
	void *arg = call->arg;
	if (call->timer)
		event_free(call->timer);
	sbuf_free(&call->req);
	free(call->service);
	free(call);
	cb(arg, action, err);
}

static void call_try(struct policy_call *call);

static void call_failed(struct policy_call *call, const char *err)
{
	struct conn *c = call->conn;
	/*
	 * A kept connection that fails before any reply byte is a stale one
	 * (the server closed it or was restarted meanwhile): as Postfix's
	 * client does, try again at once on another connection, without
	 * counting a try.
	 */
	int stale = c && c->reused && !c->answered;
	call->conn = NULL;
	if (c) {
		c->call = NULL;
		conn_free(c);
	}
	if (stale) {
		call->tries--;
		call->waiting_retry = 1;
		struct timeval now = { 0, 0 };
		evtimer_add(call->timer, &now);
		return;
	}
	log_event(NULL, "warning: policy service %s: %s (try %d of %lld)", call->service, err, call->tries,
		  call->pool->o.try_limit);
	if (call->tries >= call->pool->o.try_limit) {
		call_finish(call, NULL, err);
		return;
	}
	call->waiting_retry = 1;
	struct timeval tv = { call->pool->o.retry_delay_s, 0 };
	evtimer_add(call->timer, &tv);
}

static void pool_put_idle(struct policy_pool *p, struct conn *c)
{
	c->call = NULL;
	c->idle_since = wall_time();
	if (c->idle_since - c->born > (double)p->o.max_ttl_s) {
		conn_free(c);
		return;
	}
	/* reading stays on: a server that closes or goes away is noticed (conn_event) */
	bufferevent_disable(c->bev, EV_WRITE);
	c->next = p->idle;
	p->idle = c;
}

/* idle_drop - unlink the idle connection c from p's list and free it. */
static void idle_drop(struct policy_pool *p, struct conn *c)
{
	for (struct conn **pp = &p->idle; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	conn_free(c);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char buf[4096];
	int n;
	while ((n = evbuffer_remove(in, buf, sizeof buf)) > 0)
		policy_parser_feed(c->parser, buf, (size_t)n);
	struct policy_call *call = c->call;
	if (!call) {
		idle_drop(c->pool, c);	/* unsolicited data on an idle connection */
		return;
	}
	c->answered = 1;
	struct policy_msg m;
	enum policy_next r = policy_parser_next(c->parser, &m);
	if (r == POLICY_NEED_MORE)
		return;
	if (r == POLICY_ERROR) {
		call_failed(call, policy_parser_error(c->parser));
		return;
	}
	const char *action = policy_msg_get(&m, "action");
	if (!action) {
		call_failed(call, "reply without an action attribute");
		return;
	}
	char *copy = xstrdup(action);
	call->conn = NULL;
	pool_put_idle(c->pool, c);
	call_finish(call, copy, NULL);
	free(copy);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		c->connected = 1;
		evutil_socket_t fd = bufferevent_getfd(c->bev);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);	/* fails harmlessly on unix */
		return;
	}
	if (c->call) {
		call_failed(c->call, (what & BEV_EVENT_EOF) ? "connection closed by the policy server"
							     : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return;
	}
	/* an idle connection went away: unlink it */
	idle_drop(c->pool, c);
}

int policy_service_valid(const char *spec)
{
	if (!strncmp(spec, "unix:", 5))
		/* relative: to the base directory, our working directory (conf.h) */
		return spec[5] && strlen(spec + 5) < sizeof(((struct sockaddr_un *)0)->sun_path);
	char host[256], port[32];
	const char *s = !strncmp(spec, "inet:", 5) ? spec + 5 : spec;
	return listen_parse_hostport(s, host, sizeof host, port, sizeof port) == 0 && host[0];
}

static struct conn *conn_open(struct policy_pool *p, const char *service, const char **err)
{
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	memset(&ss, 0, sizeof ss);
	if (!strncmp(service, "unix:", 5)) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof sun->sun_path, "%s", service + 5);
		sl = sizeof *sun;
	} else {
		char host[256], port[32];
		const char *s = !strncmp(service, "inet:", 5) ? service + 5 : service;
		if (listen_parse_hostport(s, host, sizeof host, port, sizeof port) < 0) {
			*err = "bad service address";
			return NULL;
		}
		struct addrinfo hints = { 0 }, *res;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		if (getaddrinfo(host, port, &hints, &res) != 0) {
			*err = "cannot resolve the service host";
			return NULL;
		}
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sl = res->ai_addrlen;
		freeaddrinfo(res);
	}
	struct conn *c = xcalloc(1, sizeof *c);
	c->pool = p;
	c->service = xstrdup(service);
	c->parser = policy_parser_new();
	c->born = wall_time();
	c->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
		*err = "connect failed";
		conn_free(c);
		return NULL;
	}
	return c;
}

static void call_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct policy_call *call = arg;
	if (call->waiting_retry) {
		call->waiting_retry = 0;
		call_try(call);
		return;
	}
	if (call->conn)
		call->conn->reused = 0;	/* a silent server is not a stale connection */
	call_failed(call, "timeout");
}

static void call_try(struct policy_call *call)
{
	struct policy_pool *p = call->pool;
	struct conn *c = NULL;
	double now = wall_time();
	call->tries++;
	for (struct conn **pp = &p->idle; *pp;) {
		struct conn *x = *pp;
		if (now - x->idle_since > (double)p->o.max_idle_s || now - x->born > (double)p->o.max_ttl_s) {
			*pp = x->next;
			conn_free(x);
			continue;
		}
		if (!c && !strcmp(x->service, call->service)) {
			*pp = x->next;
			c = x;
			c->reused = 1;
			continue;
		}
		pp = &x->next;
	}
	if (!c) {
		const char *err = NULL;
		c = conn_open(p, call->service, &err);
		if (!c) {
			call->conn = NULL;
			call_failed(call, err);
			return;
		}
	}
	c->call = call;
	c->answered = 0;
	call->conn = c;
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	bufferevent_write(c->bev, call->req.buf, call->req.len);
	struct timeval tv = { p->o.timeout_s, 0 };
	evtimer_add(call->timer, &tv);
}

struct policy_call *policy_call_start(struct policy_pool *p, const char *service, const struct sbuf *request,
				      policy_done_cb cb, void *arg)
{
	struct policy_call *call = xcalloc(1, sizeof *call);
	call->pool = p;
	call->service = xstrdup(service);
	sbuf_init(&call->req);
	sbuf_add(&call->req, request->buf, request->len);
	call->cb = cb;
	call->arg = arg;
	call->timer = evtimer_new(p->base, call_timer, call);
	/* start from the loop so cb never runs inside this function */
	call->waiting_retry = 1;
	struct timeval tv = { 0, 0 };
	evtimer_add(call->timer, &tv);
	return call;
}

void policy_call_cancel(struct policy_call *call)
{
	if (!call)
		return;
	if (call->conn) {
		call->conn->call = NULL;
		conn_free(call->conn);
	}
	event_free(call->timer);
	sbuf_free(&call->req);
	free(call->service);
	free(call);
}

static void sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct policy_pool *p = arg;
	double now = wall_time();
	for (struct conn **pp = &p->idle; *pp;) {
		struct conn *x = *pp;
		if (now - x->idle_since > (double)p->o.max_idle_s || now - x->born > (double)p->o.max_ttl_s) {
			*pp = x->next;
			conn_free(x);
		} else {
			pp = &x->next;
		}
	}
}

struct policy_pool *policy_pool_new(struct event_base *base, const struct policy_pool_opts *o)
{
	struct policy_pool *p = xcalloc(1, sizeof *p);
	p->base = base;
	p->o = *o;
	p->sweep = event_new(base, -1, EV_PERSIST, sweep, p);
	struct timeval tv = { 5, 0 };
	event_add(p->sweep, &tv);
	return p;
}

void policy_pool_set_opts(struct policy_pool *p, const struct policy_pool_opts *o)
{
	p->o = *o;
}

void policy_pool_free(struct policy_pool **pp)
{
	struct policy_pool *p = *pp;
	if (!p)
		return;
	while (p->idle) {
		struct conn *c = p->idle;
		p->idle = c->next;
		conn_free(c);
	}
	event_free(p->sweep);
	free(p);
	*pp = NULL;
}
