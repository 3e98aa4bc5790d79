/*
 * rl_server: see rl_server.h.
 */
#include "policyd/ratelimit/rl_server.h"

#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "policyd/ratelimit/rl_engine.h"

#define TICK_MS 1000

struct gen {
	int refs;
	struct rl_cfg cfg;
};

struct rl_server {
	struct event_base *base;
	struct policy_server *ps;
	struct rl_engine *eng;
	struct rl_store *store;
	struct gen *cur;
	struct event *tick;
};

/* One request between the handler and its reply. */
struct job {
	struct rl_server *s;
	struct gen *g;
	struct policy_server_req *r;
	const struct policy_msg *m;
	struct rl_req req;
	struct rl_decision d;
	struct rl_store_job *sj;
	int in_run, ran;
	char *err;
	double start_s;		/* metrics_now_s() at the request */
};

static void gen_unref(struct gen *g)
{
	if (--g->refs > 0)
		return;
	rl_cfg_free(&g->cfg);
	free(g);
}

static struct gen *gen_new(struct rl_cfg *cfg)
{
	struct gen *g = xcalloc(1, sizeof(*g));
	g->refs = 1;
	g->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	return g;
}

static long long wall_ms(void)
{
	return (long long)(wall_time() * 1000);
}

static void job_free(struct job *j)
{
	gen_unref(j->g);
	free(j->err);
	free(j);
}

static void job_finish(struct job *j)
{
	char *log = NULL;
	const char *qid = policy_msg_get(j->m, "queue_id");
	char *act = rl_engine_decide(j->s->eng, &j->g->cfg, &j->req, &j->d, j->err, &log);

	log_event(qid && *qid ? qid : "NOQUEUE", "%s", log);
	policy_server_reply(j->r, act);
	metrics_filter_duration(metrics_now_s() - j->start_s);
	free(log);
	free(act);
	job_free(j);
}

static void store_done(void *arg, const char *err)
{
	struct job *j = arg;

	j->sj = NULL;
	j->ran = 1;
	if (err)
		j->err = xstrdup(err);
	if (!j->in_run)
		job_finish(j);
}

static void job_cancel(void *arg)
{
	struct job *j = arg;

	rl_store_cancel(j->sj);
	job_free(j);
}

static void on_request(void *arg, struct policy_server_req *r, const struct policy_msg *m)
{
	struct rl_server *s = arg;
	struct job *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->start_s = metrics_now_s();
	j->g = s->cur;
	j->g->refs++;
	j->r = r;
	j->m = m;
	rl_req_init(&j->req, m, j->g->cfg.prefix4, j->g->cfg.prefix6);
	rl_req_set_geoip(&j->req, j->g->cfg.geo);
	rl_engine_plan(s->eng, &j->g->cfg, &j->req, wall_ms(), &j->d);
	if (!j->d.use_store) {
		job_finish(j);
		return;
	}
	policy_server_req_on_cancel(r, job_cancel, j);
	j->in_run = 1;
	struct rl_store_job *sj = rl_store_run(s->store, &j->d.plan, store_done, j);
	j->in_run = 0;
	if (j->ran)
		job_finish(j);
	else
		j->sj = sj;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct rl_server *s = arg;

	(void)fd, (void)what;
	rl_store_tick(s->store, wall_ms());
}

struct rl_server *rl_server_new(struct event_base *base, struct rl_cfg *cfg, struct rl_store *store)
{
	struct rl_server *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->store = store;
	s->cur = gen_new(cfg);
	s->eng = rl_engine_new();
	s->ps = policy_server_new(base, "ratelimit", on_request, s);
	s->tick = event_new(base, -1, EV_PERSIST, on_tick, s);
	struct timeval tv = { TICK_MS / 1000, (TICK_MS % 1000) * 1000 };
	event_add(s->tick, &tv);
	return s;
}

struct policy_server *rl_server_policy(struct rl_server *s)
{
	return s->ps;
}

void rl_server_reload(struct rl_server *s, struct rl_cfg *cfg, char **warn_out)
{
	const struct rl_cfg *old = &s->cur->cfg;

	*warn_out = NULL;
	if (old->backend_redis != cfg->backend_redis ||
	    strcmp(old->state_file, cfg->state_file) ||
	    strcmp(old->redis_server, cfg->redis_server) || old->redis_db != cfg->redis_db ||
	    strcmp(old->redis_prefix, cfg->redis_prefix))
		*warn_out = xstrdup("the state backend settings changed: they take effect at the "
				    "next restart");
	gen_unref(s->cur);
	s->cur = gen_new(cfg);
}

void rl_server_free(struct rl_server **sp)
{
	if (!sp || !*sp)
		return;
	struct rl_server *s = *sp;
	policy_server_free(&s->ps);	/* cancels requests in flight */
	event_free(s->tick);
	rl_store_free(&s->store);
	rl_engine_free(&s->eng);
	gen_unref(s->cur);
	free(s);
	*sp = NULL;
}
