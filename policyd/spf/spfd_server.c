/*
 * spfd_server: see spfd_server.h.
 */
#include "policyd/spf/spfd_server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "policyd/spf/spfd_cache.h"
#include "policyd/spf/spfd_dns.h"
#include "policyd/spf/spfd_run.h"
#include "proto/policy.h"

#define INSTANCE_MAX 4096
#define INSTANCE_TTL_S 3600
#define READ_CHUNK 16384

/* Options + resolver of one configuration generation (SIGHUP makes a new one). */
struct gen {
	int refs;
	struct spfd_opts o;
	struct spfd_dns *dns;
};

struct conn;

struct req {
	struct conn *c;
	struct gen *g;
	struct spfd_job *job;
	struct spfd_run *run;
	char *qid, *client, *sender, *helo, *instance, *rcpt, *sasl;
	long long start_ms;
	unsigned queries;
};

struct conn {
	struct spfd_server *s;
	struct conn *prev, *next;
	struct bufferevent *in, *out;	/* the same for sockets; out NULL for stdio */
	int out_fd;			/* stdio: replies written directly (any fd type) */
	struct policy_parser *p;
	struct req *cur;
	int eof, closing, is_stdio, is_query, in_process;
	unsigned qpending;		/* query mode: checks in flight */
};

struct lst {
	struct lst *next;
	struct evconnlistener *l;
};

struct spfd_server {
	struct event_base *base;
	struct gen *cur;
	struct spfd_instances *inst;
	struct conn *conns;
	struct lst *lsts;
	struct event *grace;
	int stopping;
	struct spfd_server_stats st;
};

static void gen_unref(struct spfd_server *s, struct gen *g);

/* ------------------------------------------------------------ generations */

static void gen_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gen *g = arg;

	(void)fd, (void)what;
	spfd_dns_free(&g->dns);
	spfd_opts_free(&g->o);
	free(g);
}

static void gen_unref(struct spfd_server *s, struct gen *g)
{
	if (--g->refs > 0)
		return;
	/* Maybe inside one of g's DNS callbacks: free from the loop. */
	if (event_base_once(s->base, -1, EV_TIMEOUT, gen_free_cb, g, NULL) < 0)
		panic("spfd_server: event_base_once failed");
}

static struct gen *gen_new(struct event_base *base, struct spfd_opts *o, const struct dns_opts *d,
			   char **err_out)
{
	struct spfd_dns *dns = spfd_dns_new(base, d, o->cache_size, err_out);

	if (!dns)
		return NULL;
	struct gen *g = xcalloc(1, sizeof(*g));
	g->refs = 1;
	g->o = *o;
	memset(o, 0, sizeof(*o));
	g->dns = dns;
	return g;
}

struct spfd_server *spfd_server_new(struct event_base *base, struct spfd_opts *opts,
				    const struct dns_opts *dns, char **err_out)
{
	struct gen *g = gen_new(base, opts, dns, err_out);

	if (!g)
		return NULL;
	struct spfd_server *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->cur = g;
	s->inst = spfd_instances_new(INSTANCE_MAX, INSTANCE_TTL_S);
	return s;
}

int spfd_server_reload(struct spfd_server *s, struct spfd_opts *opts, const struct dns_opts *dns,
		       char **err_out)
{
	struct gen *g = gen_new(s->base, opts, dns, err_out);

	if (!g)
		return -1;
	gen_unref(s, s->cur);
	s->cur = g;
	return 0;
}

const struct spfd_server_stats *spfd_server_stats(const struct spfd_server *s)
{
	return &s->st;
}

/* ------------------------------------------------------------ connections */

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_process(struct conn *c);
static void query_process(struct conn *c);

static void req_free(struct req *r)
{
	spfd_run_cancel(r->run);
	spfd_job_free(&r->job);
	if (r->g)
		gen_unref(r->c->s, r->g);
	free(r->qid), free(r->client), free(r->sender), free(r->helo), free(r->instance);
	free(r->rcpt), free(r->sasl);
	free(r);
}

static void maybe_done(struct spfd_server *s)
{
	if (s->stopping && !s->conns)
		event_base_loopexit(s->base, NULL);
}

static void conn_free(struct conn *c)
{
	struct spfd_server *s = c->s;

	if (c->cur)
		req_free(c->cur);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->out && c->out != c->in)
		bufferevent_free(c->out);
	if (c->is_stdio && c->out_fd >= 0)
		fsync(c->out_fd);
	if (c->in)
		bufferevent_free(c->in);
	policy_parser_free(&c->p);
	int stdio = c->is_stdio;
	free(c);
	if (stdio)
		event_base_loopexit(s->base, NULL);
	maybe_done(s);
}

/* Close once the output is flushed. */
static void conn_close_after_flush(struct conn *c)
{
	c->closing = 1;
	bufferevent_disable(c->in, EV_READ);
	if (!c->out || evbuffer_get_length(bufferevent_get_output(c->out)) == 0)
		conn_free(c);
}

/* write_all - stdio replies: blocking semantics on a possibly non-blocking fd. */
static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w > 0) {
			p += w, n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pf = { .fd = fd, .events = POLLOUT };
			poll(&pf, 1, 1000);
		} else {
			return;	/* peer gone; the read side will notice */
		}
	}
}

static void conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->out)
		bufferevent_write(c->out, p, n);
	else
		write_all(c->out_fd, p, n);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_free(c);
}

static struct conn *conn_new(struct spfd_server *s, struct bufferevent *in, struct bufferevent *out)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->s = s;
	c->in = in;
	c->out = out;
	c->out_fd = -1;
	c->p = policy_parser_new();
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->st.conns++;
	bufferevent_setcb(in, conn_read_cb, NULL, conn_event_cb, c);
	if (out == in)
		bufferevent_setcb(in, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_enable(in, EV_READ);
	return c;
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		c->eof = 1;
		bufferevent_disable(c->in, EV_READ);
		if (c->is_query) {
			if (!c->qpending)
				conn_close_after_flush(c);
			return;
		}
		if (!c->cur)
			conn_process(c);	/* a partial request is logged; then close */
		return;
	}
	if (what & BEV_EVENT_ERROR)
		conn_free(c);	/* peer gone: nothing to answer */
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (c->is_query) {
		query_process(c);
		return;
	}
	while (evbuffer_get_length(in)) {
		unsigned char buf[READ_CHUNK];
		int n = evbuffer_remove(in, buf, sizeof(buf));
		if (n <= 0)
			break;
		policy_parser_feed(c->p, buf, (size_t)n);
	}
	conn_process(c);
}

static void reply(struct conn *c, const char *action)
{
	struct sbuf b;

	sbuf_init(&b);
	policy_build_reply(&b, action);
	conn_write(c, b.buf, b.len);
	sbuf_free(&b);
}

/* ------------------------------------------------------------ requests */

/* Log values: no ", " separators or quotes inside (log.h's key=value rule). */
static char *logval(const char *s)
{
	char *v = xstrdup(s ? s : "");

	for (char *p = v; *p; p++)
		if (*p == ',' || *p == '"' || (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = (*p == ',') ? ';' : '?';
	return v;
}

static void req_log(struct req *r, const char *action)
{
	struct spfd_job *j = r->job;
	char *id = logval(spfd_job_identity(j)), *cl = logval(r->client);
	char *mech = logval(spfd_job_mechanism(j) ? spfd_job_mechanism(j) : "-");
	char *why = logval(spfd_job_reason(j) ? spfd_job_reason(j) : "-");
	char *act = logval(action);
	char *snd = logval(r->sender), *hl = logval(r->helo);
	char *ins = logval(r->instance ? r->instance : "-");
	char *rc = logval(r->rcpt), *su = logval(r->sasl);
	long long ms = now_ms() - r->start_ms;
	struct sbuf tail;

	if (strlen(act) > 200)
		strcpy(act + 196, "...");
	/* issue 13's common keys at the end (docs/EVENTS.md): the older keys
	 * above keep their places for existing readers; reason= stays the
	 * text, the stable code is reason_code= */
	sbuf_init(&tail);
	sbuf_printf(&tail, ", filter=spf, client_ip=%s, sender=%s", cl, snd);
	if (*rc)
		sbuf_printf(&tail, ", recipient=%s", rc);
	if (*su)
		sbuf_printf(&tail, ", sasl_username=%s", su);
	sbuf_printf(&tail, ", reason_code=spf_%s, ms=%lld", spfd_job_result_name(j), ms);
	log_event(r->qid && *r->qid ? r->qid : "NOQUEUE",
		  "spf: identity=%s, scope=%s, client=[%s], helo=%s, from=<%s>, result=%s, "
		  "mechanism=%s, reason=\"%s\", lookups=%u, queries=%u, time_ms=%lld, action=\"%s\", "
		  "instance=%s%s",
		  id, spfd_job_scope(j), cl, hl, snd, spfd_job_result_name(j), mech, why,
		  spfd_job_dns_terms(j), r->queries, ms, act, ins, tail.buf);
	sbuf_free(&tail);
	free(id), free(cl), free(mech), free(why), free(act), free(snd), free(hl), free(ins);
	free(rc), free(su);
}

static const char *action_name(enum spfd_action kind)
{
	switch (kind) {
	case SPFD_ACT_PREPEND: return "prepend";
	case SPFD_ACT_REJECT: return "reject";
	case SPFD_ACT_DEFER: return "defer";
	default: return "dunno";
	}
}

static void req_step(struct req *r);

static void run_cb(void *arg, const struct spfd_checked *res, unsigned queries)
{
	struct req *r = arg;

	r->run = NULL;
	r->queries += queries;
	spfd_job_result(r->job, res);
	req_step(r);
}

static void req_done(struct req *r)
{
	struct conn *c = r->c;
	const char *action = spfd_job_action(r->job);

	reply(c, action);
	req_log(r, action);
	metrics_filter_decision(spfd_job_result_name(r->job), action_name(spfd_job_action_kind(r->job)),
				(double)(now_ms() - r->start_ms) / 1000.0);
	if (r->instance)
		spfd_instances_put(c->s->inst, r->instance, spfd_job_action_kind(r->job), action,
				   (long long)time(NULL));
	c->cur = NULL;
	req_free(r);
	if (!c->in_process)
		conn_process(c);
}

static void req_step(struct req *r)
{
	struct spf_request sreq;

	if (spfd_job_next(r->job, &sreq) == SPFD_JOB_CHECK)
		r->run = spfd_run_start(r->c->s->base, r->g->dns, &sreq, r->g->o.lookup_time_ms,
					run_cb, r);
	else
		req_done(r);
}

static char *attr_dup(const struct policy_msg *m, const char *name)
{
	const char *v = policy_msg_get(m, name);
	return xstrdup(v ? v : "");
}

static void req_start(struct conn *c, const struct policy_msg *m)
{
	struct spfd_server *s = c->s;
	const char *inst = policy_msg_get(m, "instance");
	enum spfd_action kind;
	const char *prev;

	s->st.requests++;
	if (inst && spfd_instances_get(s->inst, inst, (long long)time(NULL), &kind, &prev)) {
		s->st.instance_hits++;
		reply(c, spfd_reply_for_instance(kind, prev));
		/* a further recipient of a message already decided */
		metrics_filter_decision("cached", action_name(kind), -1);
		return;
	}
	struct req *r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->g = s->cur;
	r->g->refs++;
	r->start_ms = now_ms();
	r->qid = attr_dup(m, "queue_id");
	r->client = attr_dup(m, "client_address");
	r->sender = attr_dup(m, "sender");
	r->helo = attr_dup(m, "helo_name");
	r->instance = inst && *inst ? xstrdup(inst) : NULL;
	r->rcpt = attr_dup(m, "recipient");
	r->sasl = attr_dup(m, "sasl_username");
	r->job = spfd_job_new(&r->g->o, m, (long long)time(NULL));
	c->cur = r;
	req_step(r);
}

static void conn_process(struct conn *c)
{
	struct policy_msg m;

	c->in_process = 1;
	while (!c->cur && !c->closing) {
		enum policy_next n = policy_parser_next(c->p, &m);
		if (n == POLICY_NEED_MORE) {
			c->in_process = 0;
			if (c->eof || c->s->stopping) {
				if (policy_parser_buffered(c->p)) {
					c->s->st.malformed++;
					metrics_filter_error("malformed");
					log_event(NULL, "warning: spf: request without its empty line at "
						  "end of input; closing without a reply");
				}
				conn_close_after_flush(c);
			}
			return;
		}
		if (n == POLICY_ERROR) {
			c->s->st.malformed++;
			metrics_filter_error("malformed");
			log_event(NULL, "warning: spf: malformed policy request: %s; closing "
				  "without a reply", policy_parser_error(c->p));
			conn_free(c);
			return;
		}
		req_start(c, &m);
	}
	c->in_process = 0;
}


/* ------------------------------------------------------------ listeners */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	(void)l, (void)sa, (void)salen;
	spfd_server_add_fd(arg, fd);
}

void spfd_server_add_fd(struct spfd_server *s, int fd)
{
	evutil_make_socket_nonblocking(fd);
	struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		log_event(NULL, "warning: spf: bufferevent_socket_new failed");
		return;
	}
	conn_new(s, bev, bev);
}

int spfd_server_listen(struct spfd_server *s, int fd, char **err_out)
{
	struct evconnlistener *l = evconnlistener_new(s->base, accept_cb, s, LEV_OPT_REUSEABLE,
						      -1, fd);
	if (!l) {
		*err_out = xasprintf("evconnlistener_new: %s", strerror(errno));
		return -1;
	}
	struct lst *x = xcalloc(1, sizeof(*x));
	x->l = l;
	x->next = s->lsts;
	s->lsts = x;
	return 0;
}

void spfd_server_add_stdio(struct spfd_server *s, int in_fd, int out_fd)
{
	evutil_make_socket_nonblocking(in_fd);
	struct bufferevent *in = bufferevent_socket_new(s->base, in_fd, 0);
	if (!in)
		panic("spf: bufferevent_socket_new failed for stdin");
	struct conn *c = conn_new(s, in, NULL);
	c->out_fd = out_fd;
	c->is_stdio = 1;
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spfd_server *s = arg;

	(void)fd, (void)what;
	log_event(NULL, "spf: graceful stop timed out with requests in flight");
	event_base_loopexit(s->base, NULL);
}

void spfd_server_stop(struct spfd_server *s, long long grace_ms)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	while (s->lsts) {
		struct lst *x = s->lsts;
		s->lsts = x->next;
		evconnlistener_free(x->l);
		free(x);
	}
	/* Idle connections close now; busy ones after their reply. */
	struct conn *next;
	for (struct conn *c = s->conns; c; c = next) {
		next = c->next;
		if (!c->cur && !c->is_query && !c->closing)
			conn_close_after_flush(c);
	}
	s->grace = evtimer_new(s->base, grace_cb, s);
	struct timeval tv = { grace_ms / 1000, (grace_ms % 1000) * 1000 };
	evtimer_add(s->grace, &tv);
	maybe_done(s);
}

void spfd_server_free(struct spfd_server **sp)
{
	if (!sp || !*sp)
		return;
	struct spfd_server *s = *sp;
	s->stopping = 0;	/* no loopexit calls from here on matter */
	while (s->conns)
		conn_free(s->conns);
	while (s->lsts) {
		struct lst *x = s->lsts;
		s->lsts = x->next;
		evconnlistener_free(x->l);
		free(x);
	}
	if (s->grace)
		event_free(s->grace);
	spfd_instances_free(&s->inst);
	/* Run pending generation frees, then free the current one. */
	event_base_loop(s->base, EVLOOP_NONBLOCK);
	struct gen *g = s->cur;
	spfd_dns_free(&g->dns);
	spfd_opts_free(&g->o);
	free(g);
	free(s);
	*sp = NULL;
}

/* ------------------------------------------------------------ query mode */

struct qcheck {
	struct conn *c;
	struct gen *g;
	char *id, *ip, *sender, *helo, *receiver, *dexp;
	int helo_scope;
};

static char *unhex(const char *x)
{
	if (!x || x[0] != 'x')
		return NULL;
	size_t n = strlen(x + 1) / 2;
	char *out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(x + 1 + 2 * i, "%2x", &v) != 1) {
			free(out);
			return NULL;
		}
		out[i] = (char)v;
	}
	out[n] = 0;
	return out;
}

static void add_hex(struct sbuf *b, const char *s)
{
	sbuf_addc(b, ' ');
	sbuf_addc(b, 'x');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++)
		sbuf_printf(b, "%02x", *p);
}

static void qcheck_free(struct qcheck *q)
{
	gen_unref(q->c->s, q->g);
	free(q->id), free(q->ip), free(q->sender), free(q->helo), free(q->receiver), free(q->dexp);
	free(q);
}

static void qcheck_cb(void *arg, const struct spfd_checked *res, unsigned queries)
{
	struct qcheck *q = arg;
	struct conn *c = q->c;
	struct sbuf b;
	char *hdr = spfd_received_spf(res, q->helo_scope, q->ip, q->sender, q->helo,
				      q->receiver ? q->receiver : q->g->o.authserv_id);

	sbuf_init(&b);
	sbuf_printf(&b, "%s %s", q->id, spf_result_name(res->result));
	add_hex(&b, res->mechanism);
	add_hex(&b, res->explanation);
	add_hex(&b, res->reason);
	add_hex(&b, res->problem);
	add_hex(&b, hdr);
	sbuf_printf(&b, " %u %u\n", res->dns_terms, queries);
	conn_write(c, b.buf, b.len);
	sbuf_free(&b);
	free(hdr);
	qcheck_free(q);
	c->qpending--;
	if (c->eof && !c->qpending)
		conn_close_after_flush(c);
}

static void query_line(struct conn *c, char *line)
{
	char *f[7] = { 0 }, *save = NULL;
	size_t n = 0;

	for (char *t = strtok_r(line, " \t\r", &save); t && n < 7; t = strtok_r(NULL, " \t\r", &save))
		f[n++] = t;
	if (n < 5) {
		conn_write(c, "? bad query line\n", 17);
		return;
	}
	struct qcheck *q = xcalloc(1, sizeof(*q));
	q->c = c;
	q->g = c->s->cur;
	q->g->refs++;
	q->id = xstrdup(f[0]);
	q->ip = unhex(f[1]);
	q->sender = unhex(f[2]);
	q->helo = unhex(f[3]);
	q->helo_scope = !strcmp(f[4], "helo");
	q->receiver = n > 5 ? unhex(f[5]) : NULL;
	q->dexp = n > 6 ? unhex(f[6]) : NULL;
	if (q->receiver && !*q->receiver)
		free(q->receiver), q->receiver = NULL;
	if (!q->ip || !q->sender || !q->helo) {
		conn_write(c, "? bad hex field\n", 16);
		qcheck_free(q);
		return;
	}
	struct spf_request req = {
		.ip = q->ip, .sender = q->sender, .helo = q->helo,
		.receiver = q->receiver ? q->receiver : q->g->o.authserv_id,
		.scope = q->helo_scope ? SPF_SCOPE_HELO : SPF_SCOPE_MFROM,
		.now_s = (long long)time(NULL),
		.default_exp = q->dexp,
	};
	c->qpending++;
	spfd_run_start(c->s->base, q->g->dns, &req, q->g->o.lookup_time_ms, qcheck_cb, q);
}

static void query_process(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->in);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF))) {
		if (len)
			query_line(c, line);
		free(line);
	}
}

void spfd_server_query_stdio(struct spfd_server *s, int in_fd, int out_fd)
{
	spfd_server_add_stdio(s, in_fd, out_fd);
	s->conns->is_query = 1;
}
