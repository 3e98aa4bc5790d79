/*
 * rl_redis: the Redis rl_store backend (rl_store.h), shared by every
 * sluice-ratelimit that points at one server. hiredis's async API on our
 * libevent loop; one Lua script (the twin of rl_plan_apply + rl_limit,
 * same double arithmetic, so both backends decide alike) loaded once per
 * connection with SCRIPT LOAD and run with EVALSHA (EVAL again after a
 * NOSCRIPT, e.g. a SCRIPT FLUSH or a restarted server). One script call
 * per request: Redis runs it atomically, so daemons on several hosts
 * count exactly. Cells are strings "a b c expires_ms" with a matching PX.
 * Reconnects with back-off (100 ms doubling to 5 s); meanwhile requests
 * fail at once (ratelimit_on_backend_error decides the reply). Each
 * request has a deadline (ratelimit_redis_timeout); a missed one drops the
 * connection (a stopped server keeps TCP open) and reconnects.
 * XXX: Redis Cluster is not supported (one request's keys may hash to
 * different slots).
 */
#include "policyd/ratelimit/rl_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "lib/log.h"
#include "lib/util.h"
#include "lib/daemon.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static const char lua_script[] =
	"local now = tonumber(ARGV[1])\n"
	"local nops = tonumber(ARGV[2])\n"
	"local has_grey = tonumber(ARGV[3])\n"
	"local function ceil_ms(x) return math.ceil(x - 1e-3) end\n"
	"local function get(k)\n"
	"  local v = redis.call('GET', k)\n"
	"  if not v then return nil end\n"
	"  local a, b, c, e = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$')\n"
	"  if not a then return nil end\n"
	"  e = tonumber(e)\n"
	"  if e <= now then return nil end\n"
	"  return {tonumber(a), tonumber(b), tonumber(c), e}\n"
	"end\n"
	"local function put(k, cell)\n"
	"  local ttl = cell[4] - now\n"
	"  if ttl < 1 then ttl = 1 end\n"
	"  redis.call('SET', k, string.format('%.17g %.17g %.17g %d', cell[1], cell[2], cell[3], cell[4]), 'PX', ttl)\n"
	"end\n"
	"local function gcra(max, win, cost, cur)\n"
	"  local level = 0\n"
	"  if cur then\n"
	"    local elapsed = 0\n"
	"    if now > cur[2] then elapsed = now - cur[2] end\n"
	"    if elapsed >= win then level = 0 else level = cur[1] - elapsed * max / win end\n"
	"    if level < 0 then level = 0 end\n"
	"  end\n"
	"  local c = cost\n"
	"  if c <= 0 then c = 1 end\n"
	"  local want = level + c\n"
	"  local over = (want - max) > max * 1e-12\n"
	"  local retry = 0\n"
	"  if over then retry = ceil_ms((want - max) * win / max) end\n"
	"  if over or cost <= 0 then return over, retry, level, nil end\n"
	"  return over, retry, want, {want, now, 0, now + ceil_ms(want * win / max)}\n"
	"end\n"
	"local function fixed(max, win, cost, cur)\n"
	"  local start, used = now, 0\n"
	"  if cur and now < cur[2] + win and now >= cur[2] then start = cur[2]; used = cur[1] end\n"
	"  local c = cost\n"
	"  if c <= 0 then c = 1 end\n"
	"  local over = used + c > max\n"
	"  local retry = 0\n"
	"  if over then retry = ceil_ms(start + win - now) end\n"
	"  if over or cost <= 0 then return over, retry, used, nil end\n"
	"  return over, retry, used + cost, {used + cost, start, 0, ceil_ms(start) + win}\n"
	"end\n"
	"local function grey(p, trip, client)\n"
	"  local count = 0\n"
	"  if client and now - client[2] <= p.max_age then count = client[1] end\n"
	"  if p.auto > 0 and count >= p.auto then\n"
	"    return 0, 0, nil, {count, now, 0, now + p.max_age}\n"
	"  end\n"
	"  if (not trip) or (trip[3] == 0 and now - trip[1] > p.retry)\n"
	"     or (trip[3] ~= 0 and now - trip[2] > p.max_age) then\n"
	"    return 2, p.delay, {now, now, 0, now + p.retry}, nil\n"
	"  end\n"
	"  if trip[3] == 0 and now - trip[1] < p.delay then\n"
	"    return 3, ceil_ms(trip[1] + p.delay - now), {trip[1], now, trip[3], trip[4]}, nil\n"
	"  end\n"
	"  local newcl = nil\n"
	"  if trip[3] == 0 then newcl = {count + 1, now, 0, now + p.max_age} end\n"
	"  return 1, 0, {trip[1], now, 1, now + p.max_age}, newcl\n"
	"end\n"
	"local res, nexts, overidx = {}, {}, -1\n"
	"for i = 1, nops do\n"
	"  local b = 3 + (i - 1) * 4\n"
	"  local algo, max = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])\n"
	"  local win, cost = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])\n"
	"  local cur = get(KEYS[i])\n"
	"  local over, retry, used, nxt\n"
	"  if algo == 1 then over, retry, used, nxt = fixed(max, win, cost, cur)\n"
	"  else over, retry, used, nxt = gcra(max, win, cost, cur) end\n"
	"  nexts[i] = nxt\n"
	"  res[#res + 1] = over and 1 or 0\n"
	"  res[#res + 1] = retry\n"
	"  res[#res + 1] = string.format('%.17g', used)\n"
	"  if over and overidx < 0 then overidx = i - 1 end\n"
	"end\n"
	"if overidx >= 0 then return {1, overidx, 0, 0, res} end\n"
	"local gv, gretry = 0, 0\n"
	"if has_grey == 1 then\n"
	"  local g = 3 + nops * 4\n"
	"  local p = {delay = tonumber(ARGV[g + 1]), retry = tonumber(ARGV[g + 2]),\n"
	"             max_age = tonumber(ARGV[g + 3]), auto = tonumber(ARGV[g + 4])}\n"
	"  local tk, ck = KEYS[nops + 1], KEYS[nops + 2]\n"
	"  local t2, c2\n"
	"  gv, gretry, t2, c2 = grey(p, get(tk), get(ck))\n"
	"  if t2 then put(tk, t2) end\n"
	"  if c2 then put(ck, c2) end\n"
	"  if gv >= 2 then return {2, -1, gv, gretry, res} end\n"
	"end\n"
	"for i = 1, nops do if nexts[i] then put(KEYS[i], nexts[i]) end end\n"
	"return {0, -1, gv, gretry, res}\n";

struct redis_store;

struct redis_job {
	const struct rl_store_ops *ops;	/* first: rl_store_cancel dispatches on it */
	struct redis_store *s;
	struct rl_plan *plan;
	rl_store_cb cb;
	void *arg;
	struct event *deadline;
	int finished;		/* cb ran (or was cancelled): the reply is only freed */
	int retried;		/* sent again with EVAL after NOSCRIPT */
};

struct redis_store {
	struct rl_store base;
	struct event_base *evb;
	char *host, *unix_path, *password, *prefix;
	int port, db;
	long long timeout_ms;
	redisAsyncContext *ac;
	int ready;
	char sha[41];
	long long backoff_ms;
	struct event *reconnect;
	int freeing;
	unsigned long long fails;
};

static const struct rl_store_ops redis_ops;

/* ------------------------------------------------------------ connection */

static void schedule_reconnect(struct redis_store *s)
{
	if (s->freeing)
		return;
	struct timeval tv = { s->backoff_ms / 1000, (s->backoff_ms % 1000) * 1000 };
	evtimer_add(s->reconnect, &tv);
	s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void on_script_loaded(redisAsyncContext *ac, void *r, void *arg)
{
	struct redis_store *s = arg;
	redisReply *reply = r;

	if (!reply || ac != s->ac)
		return;
	if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
		memcpy(s->sha, reply->str, 40);
		s->sha[40] = 0;
		if (!s->ready)
			log_event(NULL, "ratelimit: redis: connected to %s", s->unix_path ? s->unix_path : s->host);
		s->ready = 1;
		s->backoff_ms = BACKOFF_MIN_MS;
		return;
	}
	log_event(NULL, "warning: ratelimit: redis: SCRIPT LOAD failed: %s",
		  reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	redisAsyncDisconnect(ac);
}

static void on_setup_reply(redisAsyncContext *ac, void *r, void *arg)
{
	redisReply *reply = r;

	(void)arg;
	if (reply && reply->type == REDIS_REPLY_ERROR)
		log_event(NULL, "warning: ratelimit: redis: %s", reply->str);
	(void)ac;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_store *s = ac->data;

	if (status != REDIS_OK) {
		if (s->fails++ % 50 == 0)
			log_event(NULL, "warning: ratelimit: redis: cannot connect: %s", ac->errstr);
		s->ac = NULL;	/* hiredis frees it */
		schedule_reconnect(s);
		return;
	}
	s->fails = 0;
	redisAsyncContext *c = (redisAsyncContext *)ac;
	if (*s->password)
		redisAsyncCommand(c, on_setup_reply, s, "AUTH %s", s->password);
	if (s->db)
		redisAsyncCommand(c, on_setup_reply, s, "SELECT %d", s->db);
	redisAsyncCommand(c, on_script_loaded, s, "SCRIPT LOAD %s", lua_script);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_store *s = ac->data;

	if (ac != s->ac)
		return;
	s->ac = NULL;
	if (s->ready)
		log_event(NULL, "warning: ratelimit: redis: connection lost%s%s",
			  status != REDIS_OK ? ": " : "", status != REDIS_OK ? ac->errstr : "");
	s->ready = 0;
	schedule_reconnect(s);
}

static void connect_now(struct redis_store *s)
{
	redisAsyncContext *ac = s->unix_path ? redisAsyncConnectUnix(s->unix_path)
					     : redisAsyncConnect(s->host, s->port);
	if (!ac) {
		schedule_reconnect(s);
		return;
	}
	if (ac->err) {
		if (s->fails++ % 50 == 0)
			log_event(NULL, "warning: ratelimit: redis: cannot connect: %s", ac->errstr);
		redisAsyncFree(ac);
		schedule_reconnect(s);
		return;
	}
	ac->data = s;
	redisLibeventAttach(ac, s->evb);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	s->ac = ac;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	connect_now(arg);
}

/* ------------------------------------------------------------ requests */

static void job_finish(struct redis_job *j, const char *err)
{
	if (j->finished)
		return;
	j->finished = 1;
	if (j->deadline) {
		event_free(j->deadline);
		j->deadline = NULL;
	}
	j->cb(j->arg, err);
}

/* parse - the script's reply into the plan; NULL or why not. */
static const char *parse(struct rl_plan *p, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR)
		return r->str;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
	    r->element[4]->type != REDIS_REPLY_ARRAY || r->element[4]->elements != 3 * p->nops)
		return "unexpected script reply";
	for (int i = 0; i < 4; i++)
		if (r->element[i]->type != REDIS_REPLY_INTEGER)
			return "unexpected script reply";
	p->result = (enum rl_plan_result)r->element[0]->integer;
	p->over = r->element[1]->integer >= 0 ? (size_t)r->element[1]->integer : 0;
	p->grey_verdict = (enum rl_grey_verdict)r->element[2]->integer;
	p->grey_retry_ms = r->element[3]->integer;
	for (size_t i = 0; i < p->nops; i++) {
		redisReply **e = r->element[4]->element + 3 * i;
		if (e[0]->type != REDIS_REPLY_INTEGER || e[1]->type != REDIS_REPLY_INTEGER ||
		    e[2]->type != REDIS_REPLY_STRING)
			return "unexpected script reply";
		p->ops[i].res.over = (int)e[0]->integer;
		p->ops[i].res.retry_ms = e[1]->integer;
		p->ops[i].res.used = strtod(e[2]->str, NULL);
	}
	if (p->result > RL_PLAN_GREY_DEFER || p->over >= (p->nops ? p->nops : 1))
		return "unexpected script reply";
	return NULL;
}

static int send_script(struct redis_job *j, int full);

static void on_reply(redisAsyncContext *ac, void *r, void *arg)
{
	struct redis_job *j = arg;
	redisReply *reply = r;

	(void)ac;
	if (!j->finished && reply && reply->type == REDIS_REPLY_ERROR && !j->retried &&
	    !strncmp(reply->str, "NOSCRIPT", 8)) {
		j->retried = 1;
		if (j->s->ac && send_script(j, 1) == 0)
			return;
	}
	if (!j->finished) {
		const char *why = reply ? parse(j->plan, reply) : "redis: connection lost";
		if (why && reply) {
			char *msg = xasprintf("redis: %s", why);
			job_finish(j, msg);
			free(msg);
		} else {
			job_finish(j, why);
		}
	}
	free(j);
}

/* Arguments of one script call; owned ones are freed after sending. */
struct args {
	const char **v;
	char **own;
	size_t n;
};

static void arg_static(struct args *a, const char *s)
{
	a->v[a->n++] = s;
}

static void arg_own(struct args *a, char *s)
{
	a->own[a->n] = s;
	a->v[a->n++] = s;
}

/* send_script - EVALSHA (or EVAL with the script when full); 0 or -1. */
static int send_script(struct redis_job *j, int full)
{
	struct redis_store *s = j->s;
	struct rl_plan *p = j->plan;
	size_t nkeys = p->nops + (p->has_grey ? 2 : 0);
	size_t max = 3 + nkeys + 3 + 4 * p->nops + (p->has_grey ? 4 : 0);
	struct args a = { xcalloc(max, sizeof(char *)), xcalloc(max, sizeof(char *)), 0 };

	arg_static(&a, full ? "EVAL" : "EVALSHA");
	arg_static(&a, full ? lua_script : s->sha);
	arg_own(&a, xasprintf("%zu", nkeys));
	for (size_t i = 0; i < p->nops; i++)
		arg_own(&a, xasprintf("%s%s", s->prefix, p->ops[i].key));
	if (p->has_grey) {
		arg_own(&a, xasprintf("%s%s", s->prefix, p->grey_key));
		arg_own(&a, xasprintf("%s%s", s->prefix, p->grey_client_key));
	}
	arg_own(&a, xasprintf("%lld", p->now_ms));
	arg_own(&a, xasprintf("%zu", p->nops));
	arg_static(&a, p->has_grey ? "1" : "0");
	for (size_t i = 0; i < p->nops; i++) {
		const struct rl_op *op = &p->ops[i];
		arg_static(&a, op->algo == RL_ALGO_FIXED ? "1" : "0");
		arg_own(&a, xasprintf("%lld", op->max));
		arg_own(&a, xasprintf("%lld", op->window_ms));
		arg_own(&a, xasprintf("%lld", op->cost));
	}
	if (p->has_grey) {
		arg_own(&a, xasprintf("%lld", p->grey.delay_ms));
		arg_own(&a, xasprintf("%lld", p->grey.retry_window_ms));
		arg_own(&a, xasprintf("%lld", p->grey.max_age_ms));
		arg_own(&a, xasprintf("%lld", p->grey.auto_allow));
	}
	int rc = redisAsyncCommandArgv(s->ac, on_reply, j, (int)a.n, a.v, NULL);
	for (size_t i = 0; i < max; i++)
		free(a.own[i]);
	free(a.own);
	free(a.v);
	return rc == REDIS_OK ? 0 : -1;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct redis_job *j = arg;
	struct redis_store *s = j->s;

	(void)fd, (void)what;
	job_finish(j, "redis: no reply within ratelimit_redis_timeout");
	/* A stopped server keeps the connection open: start afresh. */
	if (s->ac) {
		log_event(NULL, "warning: ratelimit: redis: no reply within %lld ms; reconnecting",
			  s->timeout_ms);
		redisAsyncContext *ac = s->ac;
		s->ac = NULL;
		s->ready = 0;
		redisAsyncFree(ac);	/* pending replies get NULL (their jobs are freed) */
		schedule_reconnect(s);
	}
}

static struct rl_store_job *rd_run(struct rl_store *base, struct rl_plan *p, rl_store_cb cb, void *arg)
{
	struct redis_store *s = (struct redis_store *)base;

	if (!s->ac || !s->ready) {
		cb(arg, "redis: not connected");
		return NULL;
	}
	struct redis_job *j = xcalloc(1, sizeof(*j));
	j->ops = &redis_ops;
	j->s = s;
	j->plan = p;
	j->cb = cb;
	j->arg = arg;
	if (send_script(j, 0) < 0) {
		free(j);
		cb(arg, "redis: cannot send the request");
		return NULL;
	}
	if (s->timeout_ms > 0) {
		j->deadline = evtimer_new(s->evb, on_deadline, j);
		struct timeval tv = { s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000 };
		evtimer_add(j->deadline, &tv);
	}
	return (struct rl_store_job *)j;
}

static void rd_cancel(struct rl_store_job *job)
{
	struct redis_job *j = (struct redis_job *)job;

	if (j->deadline) {
		event_free(j->deadline);
		j->deadline = NULL;
	}
	j->finished = 1;	/* freed when its reply (or the disconnect) comes */
}

static void rd_free(struct rl_store *base)
{
	struct redis_store *s = (struct redis_store *)base;

	s->freeing = 1;
	if (s->ac) {
		redisAsyncContext *ac = s->ac;
		s->ac = NULL;
		redisAsyncFree(ac);
	}
	event_free(s->reconnect);
	free(s->host);
	free(s->unix_path);
	free(s->password);
	free(s->prefix);
	free(s);
}

/* ------------------------------------------------------------ show / reset (blocking) */

static redisContext *sync_connect(struct redis_store *s, char **err_out)
{
	struct timeval tv = { 5, 0 };
	redisContext *c = s->unix_path ? redisConnectUnixWithTimeout(s->unix_path, tv)
				       : redisConnectWithTimeout(s->host, s->port, tv);
	if (!c || c->err) {
		*err_out = xasprintf("redis: %s", c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	redisReply *r = NULL;
	if (*s->password)
		r = redisCommand(c, "AUTH %s", s->password);
	if (r) {
		int bad = r->type == REDIS_REPLY_ERROR;
		if (bad)
			*err_out = xasprintf("redis: AUTH: %s", r->str);
		freeReplyObject(r);
		if (bad) {
			redisFree(c);
			return NULL;
		}
	}
	if (s->db && (r = redisCommand(c, "SELECT %d", s->db)))
		freeReplyObject(r);
	return c;
}

static int rd_list(struct rl_store *base, const char *prefix, long long now_ms, rl_store_each_fn fn,
		   void *arg, char **err_out)
{
	struct redis_store *s = (struct redis_store *)base;
	redisContext *c = sync_connect(s, err_out);
	char cursor[32] = "0";
	size_t plen = strlen(s->prefix);

	if (!c)
		return -1;
	char *pattern = xasprintf("%s%s*", s->prefix, prefix);
	do {
		redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			*err_out = xasprintf("redis: SCAN: %s", r && r->type == REDIS_REPLY_ERROR ?
					     r->str : c->errstr);
			if (r)
				freeReplyObject(r);
			free(pattern);
			redisFree(c);
			return -1;
		}
		snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			const char *key = r->element[1]->element[i]->str;
			redisReply *v = redisCommand(c, "GET %s", key);
			struct rl_cell cell = { 0 };
			if (v && v->type == REDIS_REPLY_STRING &&
			    sscanf(v->str, "%lf %lf %lf %lld", &cell.a, &cell.b, &cell.c,
				   &cell.expires_ms) == 4 && cell.expires_ms > now_ms) {
				cell.exists = 1;
				fn(arg, key + plen, &cell);
			}
			if (v)
				freeReplyObject(v);
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0"));
	free(pattern);
	redisFree(c);
	return 0;
}

static int rd_reset(struct rl_store *base, const char *key, char **err_out)
{
	struct redis_store *s = (struct redis_store *)base;
	redisContext *c = sync_connect(s, err_out);

	if (!c)
		return -1;
	redisReply *r = redisCommand(c, "DEL %s%s", s->prefix, key);
	int rc = -1;
	if (r && r->type == REDIS_REPLY_INTEGER)
		rc = r->integer > 0;
	else
		*err_out = xasprintf("redis: DEL: %s", r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

static const struct rl_store_ops redis_ops = {
	rd_run, rd_cancel, NULL, rd_free, rd_list, rd_reset,
};

struct rl_store *rl_store_redis_new(struct event_base *evb, const struct rl_cfg *cfg, char **err_out)
{
	struct redis_store *s = xcalloc(1, sizeof(*s));
	const char *spec = cfg->redis_server;

	s->base.ops = &redis_ops;
	s->evb = evb;
	if (!strncmp(spec, "unix:", 5)) {
		s->unix_path = xstrdup(spec + 5);
	} else {
		char host[256], port[32];
		if (listen_parse_hostport(spec, host, sizeof host, port, sizeof port) < 0 || !*host ||
		    atoi(port) <= 0 || atoi(port) > 65535) {
			*err_out = xasprintf("%s: expected host:port or unix:/path", spec);
			free(s);
			return NULL;
		}
		s->host = xstrdup(host);
		s->port = atoi(port);
	}
	s->password = xstrdup(cfg->redis_password);
	s->prefix = xstrdup(cfg->redis_prefix);
	s->db = cfg->redis_db;
	s->timeout_ms = cfg->redis_timeout_ms;
	s->backoff_ms = BACKOFF_MIN_MS;
	s->reconnect = evtimer_new(evb, on_reconnect, s);
	connect_now(s);
	return &s->base;
}
