/*
 * policy_server: see policy_server.h.
 *
 * A connection is a state machine driven by pump(): while no request is
 * in flight it takes the next complete message from the parser and hands
 * it to the handler; a reply (now or later) clears the slot and pumps
 * again. The handler may reply from inside its call, so pump never runs
 * twice on one connection at once (the pumping flag).
 */
#include "lib/policy_server.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"
#include "lib/util.h"

struct ps_conn;

struct policy_server_req {
	struct ps_conn *conn;
	struct policy_msg msg;
	struct policy_attr *attrs;
	char *text;			/* every name and value, NUL-separated */
	void (*cancel)(void *arg);
	void *cancel_arg;
};

struct ps_conn {
	struct policy_server *srv;
	struct ps_conn *prev, *next;
	struct bufferevent *bev;	/* socket: both ways; spawn mode: stdin only */
	int out_fd;			/* spawn mode: replies go straight to this fd */
	struct policy_parser *parser;
	struct policy_server_req *busy;
	unsigned eof : 1, closing : 1, stdio : 1, pumping : 1;
};

struct ps_listener {
	struct ps_listener *next;
	struct evconnlistener *l;
};

struct policy_server {
	struct event_base *base;
	char *name;
	policy_server_handler handler;
	void *handler_arg;
	struct ps_conn *conns;
	struct ps_listener *listeners;
	struct event *grace;
	int stopping;
	struct policy_server_stats st;
};

static void pump(struct ps_conn *c);

/* ------------------------------------------------------------ requests */

/* req_new - a request owning a copy of m (the parser's strings move on). */
static struct policy_server_req *req_new(struct ps_conn *c, const struct policy_msg *m)
{
	struct policy_server_req *r = xcalloc(1, sizeof(*r));
	size_t bytes = 0;

	for (size_t i = 0; i < m->n; i++)
		bytes += strlen(m->attr[i].name) + strlen(m->attr[i].value) + 2;
	r->conn = c;
	r->attrs = xcalloc(m->n ? m->n : 1, sizeof(*r->attrs));
	r->text = xmalloc(bytes ? bytes : 1);
	char *p = r->text;
	for (size_t i = 0; i < m->n; i++) {
		size_t nl = strlen(m->attr[i].name) + 1, vl = strlen(m->attr[i].value) + 1;
		memcpy(p, m->attr[i].name, nl);
		r->attrs[i].name = p;
		p += nl;
		memcpy(p, m->attr[i].value, vl);
		r->attrs[i].value = p;
		p += vl;
	}
	r->msg.n = m->n;
	r->msg.attr = r->attrs;
	return r;
}

static void req_free(struct policy_server_req *r)
{
	free(r->attrs);
	free(r->text);
	free(r);
}

void policy_server_req_on_cancel(struct policy_server_req *r, void (*fn)(void *arg), void *arg)
{
	r->cancel = fn;
	r->cancel_arg = arg;
}

/* ------------------------------------------------------------ connections */

static void check_done(struct policy_server *s)
{
	if (s->stopping && !s->conns)
		event_base_loopexit(s->base, NULL);
}

static void conn_free(struct ps_conn *c)
{
	struct policy_server *s = c->srv;

	if (c->busy) {
		struct policy_server_req *r = c->busy;
		c->busy = NULL;
		if (r->cancel)
			r->cancel(r->cancel_arg);
		req_free(r);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->bev)
		bufferevent_free(c->bev);
	policy_parser_free(&c->parser);
	int was_stdio = c->stdio;
	free(c);
	if (was_stdio)
		event_base_loopexit(s->base, NULL);
	check_done(s);
}

static size_t pending_output(const struct ps_conn *c)
{
	return c->stdio ? 0 : evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* close_when_flushed - no more reading; free the connection once its replies are out. */
static void close_when_flushed(struct ps_conn *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (!pending_output(c))
		conn_free(c);
}

static void on_written(struct bufferevent *bev, void *arg)
{
	struct ps_conn *c = arg;

	(void)bev;
	if (c->closing && !pending_output(c))
		conn_free(c);
}

/* spawn mode's output may be a non-blocking pipe or socket: wait for room. */
static void write_whole(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			poll(&pfd, 1, 1000);
			continue;
		}
		return;	/* the peer is gone; reading will tell */
	}
}

void policy_server_reply(struct policy_server_req *r, const char *action)
{
	struct ps_conn *c = r->conn;
	struct sbuf b;

	sbuf_init(&b);
	policy_build_reply(&b, action);
	if (c->stdio)
		write_whole(c->out_fd, b.buf, b.len);
	else
		bufferevent_write(c->bev, b.buf, b.len);
	sbuf_free(&b);
	c->busy = NULL;
	req_free(r);
	if (!c->pumping)
		pump(c);
}

static void pump(struct ps_conn *c)
{
	struct policy_server *s = c->srv;
	struct policy_msg m;

	c->pumping = 1;
	while (!c->busy && !c->closing) {
		enum policy_next n = policy_parser_next(c->parser, &m);
		if (n == POLICY_ITEM) {
			s->st.requests++;
			c->busy = req_new(c, &m);
			s->handler(s->handler_arg, c->busy, &c->busy->msg);
			continue;
		}
		if (n == POLICY_ERROR) {
			s->st.malformed++;
			log_event(NULL, "warning: %s: malformed policy request: %s; closing without "
				  "a reply", s->name, policy_parser_error(c->parser));
			conn_free(c);
			return;
		}
		if (c->eof || s->stopping) {
			if (c->eof && policy_parser_buffered(c->parser)) {
				s->st.malformed++;
				log_event(NULL, "warning: %s: request without its empty line at end "
					  "of input; closing without a reply", s->name);
			}
			c->pumping = 0;
			close_when_flushed(c);
			return;
		}
		break;
	}
	c->pumping = 0;
}

static void on_readable(struct bufferevent *bev, void *arg)
{
	struct ps_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = evbuffer_get_length(in);

	if (n) {
		policy_parser_feed(c->parser, evbuffer_pullup(in, -1), n);
		evbuffer_drain(in, n);
	}
	if (!c->pumping)
		pump(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct ps_conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		c->eof = 1;
		bufferevent_disable(c->bev, EV_READ);
		if (!c->busy && !c->pumping)
			pump(c);
	} else if (what & BEV_EVENT_ERROR) {
		conn_free(c);	/* nobody left to answer */
	}
}

static struct ps_conn *conn_add(struct policy_server *s, struct bufferevent *bev, int stdio,
				int out_fd)
{
	struct ps_conn *c = xcalloc(1, sizeof(*c));

	c->srv = s;
	c->bev = bev;
	c->stdio = stdio ? 1 : 0;
	c->out_fd = out_fd;
	c->parser = policy_parser_new();
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->st.conns++;
	bufferevent_setcb(bev, on_readable, stdio ? NULL : on_written, on_event, c);
	bufferevent_enable(bev, EV_READ);
	return c;
}

void policy_server_add_fd(struct policy_server *s, int fd)
{
	evutil_make_socket_nonblocking(fd);
	struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		log_event(NULL, "warning: %s: bufferevent_socket_new failed", s->name);
		return;
	}
	conn_add(s, bev, 0, -1);
}

void policy_server_add_stdio(struct policy_server *s, int in_fd, int out_fd)
{
	evutil_make_socket_nonblocking(in_fd);
	struct bufferevent *bev = bufferevent_socket_new(s->base, in_fd, 0);
	if (!bev)
		panic("%s: bufferevent_socket_new failed for stdin", s->name);
	conn_add(s, bev, 1, out_fd);
}

/* ------------------------------------------------------------ server */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	(void)l, (void)sa, (void)len;
	policy_server_add_fd(arg, fd);
}

int policy_server_listen(struct policy_server *s, int fd, char **err_out)
{
	struct evconnlistener *l = evconnlistener_new(s->base, on_accept, s, LEV_OPT_REUSEABLE, -1, fd);

	if (!l) {
		*err_out = xasprintf("evconnlistener_new: %s", strerror(errno));
		return -1;
	}
	struct ps_listener *x = xcalloc(1, sizeof(*x));
	x->l = l;
	x->next = s->listeners;
	s->listeners = x;
	return 0;
}

struct policy_server *policy_server_new(struct event_base *base, const char *name,
					policy_server_handler h, void *arg)
{
	struct policy_server *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->name = xstrdup(name);
	s->handler = h;
	s->handler_arg = arg;
	return s;
}

static void drop_listeners(struct policy_server *s)
{
	while (s->listeners) {
		struct ps_listener *x = s->listeners;
		s->listeners = x->next;
		evconnlistener_free(x->l);
		free(x);
	}
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct policy_server *s = arg;

	(void)fd, (void)what;
	log_event(NULL, "%s: graceful stop timed out with requests in flight", s->name);
	event_base_loopexit(s->base, NULL);
}

void policy_server_stop(struct policy_server *s, long long grace_ms)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	drop_listeners(s);
	struct ps_conn *c = s->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (!c->busy && !c->closing)
			close_when_flushed(c);
	}
	s->grace = evtimer_new(s->base, on_grace, s);
	struct timeval tv = { grace_ms / 1000, (grace_ms % 1000) * 1000 };
	evtimer_add(s->grace, &tv);
	check_done(s);
}

const struct policy_server_stats *policy_server_stats(const struct policy_server *s)
{
	return &s->st;
}

void policy_server_free(struct policy_server **sp)
{
	if (!sp || !*sp)
		return;
	struct policy_server *s = *sp;
	s->stopping = 0;
	while (s->conns)
		conn_free(s->conns);
	drop_listeners(s);
	if (s->grace)
		event_free(s->grace);
	free(s->name);
	free(s);
	*sp = NULL;
}
