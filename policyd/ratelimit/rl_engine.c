/*
 * rl_engine: see rl_engine.h.
 */
#include "policyd/ratelimit/rl_engine.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/metrics.h"
#include "lib/util.h"
#include "policyd/ratelimit/rl_inst.h"

struct rl_engine {
	struct rl_inst *inst;
};

struct rl_engine *rl_engine_new(void)
{
	struct rl_engine *e = xcalloc(1, sizeof(*e));
	e->inst = rl_inst_new(RL_INSTANCE_MAX, RL_INSTANCE_TTL_MS);
	return e;
}

void rl_engine_free(struct rl_engine **ep)
{
	if (!ep || !*ep)
		return;
	rl_inst_free(&(*ep)->inst);
	free(*ep);
	*ep = NULL;
}

static const char *kind_word(enum rl_kind k)
{
	return k == RL_KIND_RATE ? "rate" : k == RL_KIND_RCPT ? "rcpt" : "size";
}

static const char *unit_word(enum rl_kind k)
{
	return k == RL_KIND_RATE ? "messages" : k == RL_KIND_RCPT ? "recipients" : "bytes";
}

static long long attr_ll(struct rl_req *req, const char *name)
{
	const char *v = rl_req_get(req, name);
	return v && *v ? atoll(v) : 0;
}

static const char *state_of(struct rl_req *req)
{
	const char *s = rl_req_get(req, "protocol_state");
	return s && *s ? s : "RCPT";
}

/* cost - units this request takes from the limit (0: check only); -1: skip the limit. */
static long long cost(struct rl_engine *e, const struct rl_rule *r, struct rl_req *req,
		      const char *key, long long now_ms)
{
	const char *st = state_of(req);
	const char *inst = rl_req_get(req, "instance");
	long long done = inst && *inst ? rl_inst_counted(e->inst, inst, key, now_ms) : 0;

	switch (r->kind) {
	case RL_KIND_RATE:
		return done ? -1 : 1;
	case RL_KIND_RCPT:
		if (!ascii_strcasecmp(st, "RCPT"))
			return 1;
		if (!ascii_strcasecmp(st, "DATA") || !ascii_strcasecmp(st, "END-OF-MESSAGE")) {
			long long n = attr_ll(req, "recipient_count") - done;
			return n > 0 ? n : -1;
		}
		return 0;
	case RL_KIND_SIZE:
		if (!ascii_strcasecmp(st, "END-OF-MESSAGE")) {
			long long n = attr_ll(req, "size") - done;
			return n > 0 ? n : -1;
		}
		return 0;
	default:
		return -1;
	}
}

static void add_limit(struct rl_engine *e, const struct rl_cfg *cfg, struct rl_req *req, int idx,
		      const struct rl_rule *r, struct rl_decision *d)
{
	struct rl_plan *p = &d->plan;
	char prefix[96];

	if (p->nops == RL_PLAN_MAX_OPS)
		return;	/* XXX: more limits than RL_PLAN_MAX_OPS on one request: the rest ignored */
	struct rl_op *op = &p->ops[p->nops];
	snprintf(prefix, sizeof prefix, "%s:%lld/%llds:", kind_word(r->kind), r->limit.max,
		 r->limit.window_s);
	if (rl_req_key(req, prefix, r->limit.keys, r->limit.nkeys, op->key, sizeof op->key) < 0)
		return;	/* a key attribute is missing: the limit does not apply */
	for (size_t i = 0; i < p->nops; i++)
		if (!strcmp(p->ops[i].key, op->key))
			return;	/* two rules, one counter: counted once */
	long long c = cost(e, r, req, op->key, p->now_ms);
	if (c < 0)
		return;
	op->algo = cfg->algo;
	op->max = r->limit.max;
	op->window_ms = r->limit.window_s * 1000;
	op->cost = c;
	op->rule = idx;
	p->nops++;
}

static void add_grey(const struct rl_cfg *cfg, struct rl_req *req, int idx, struct rl_decision *d)
{
	struct rl_plan *p = &d->plan;
	const char *rcpt = rl_req_get(req, "recipient");
	const char *client = rl_req_get(req, "client_address");
	const char *sender = rl_req_get(req, "sender");

	if (p->has_grey || !rcpt || !*rcpt || !client || !*client)
		return;	/* one greylist step per request; needs one recipient */
	if (rl_allow_client(cfg->grey_client_allow, rl_req_get(req, "client_name"), client) ||
	    rl_allow_rcpt(cfg->grey_rcpt_allow, rcpt)) {
		d->grey_allowed = 1;
		return;
	}
	const char *who = cfg->grey_by_net ? rl_req_get(req, "client_net") : client;
	char *trip = xasprintf("%s/%s/%s", who, sender ? sender : "", rcpt);
	ascii_lower(trip);
	int rc = rl_key_fit("grey:", trip, p->grey_key, sizeof p->grey_key) |
		 rl_key_fit("greyc:", who, p->grey_client_key, sizeof p->grey_client_key);
	free(trip);
	if (rc < 0)
		return;
	p->has_grey = 1;
	p->grey_rule = idx;
	p->grey = cfg->grey;
}

void rl_engine_plan(struct rl_engine *e, const struct rl_cfg *cfg, struct rl_req *req,
		    long long now_ms, struct rl_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->terminal = -1;
	d->plan.now_ms = now_ms;
	size_t n = cfg->rules ? rl_rules_count(cfg->rules) : 0;
	for (size_t i = 0; i < n; i++) {
		const struct rl_rule *r = rl_rules_get(cfg->rules, i);
		if (!rl_rule_matches(cfg->rules, r, rl_req_get, req))
			continue;
		if (r->kind == RL_KIND_ACCESS) {
			d->terminal = (int)i;
			break;
		}
		if (r->kind == RL_KIND_GREYLIST)
			add_grey(cfg, req, (int)i, d);
		else
			add_limit(e, cfg, req, (int)i, r, d);
	}
	/* A refusal needs no counting: the message is not taken. */
	int refused = d->terminal >= 0 &&
		      rl_action_is_refusal(rl_rules_get(cfg->rules, (size_t)d->terminal)->action);
	d->use_store = !refused && (d->plan.nops || d->plan.has_grey);
}

/* add_printable - request text into a reply: SMTP replies are printable ASCII. */
static void add_printable(struct sbuf *b, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)(v ? v : ""); *p; p++)
		sbuf_addc(b, *p < 0x20 || *p >= 0x7f ? '?' : (char)*p);
}

/* subst - postfwd's $$name in action texts: request attributes and $$ratecount. */
static char *subst(struct rl_req *req, const char *text, long long ratecount)
{
	struct sbuf b;

	sbuf_init(&b);
	for (const char *p = text; *p;) {
		size_t n = 0;
		if (p[0] == '$' && p[1] == '$')
			while (p[2 + n] && (p[2 + n] == '_' || (p[2 + n] >= 'a' && p[2 + n] <= 'z') ||
					    (p[2 + n] >= '0' && p[2 + n] <= '9')))
				n++;
		if (!n) {
			sbuf_addc(&b, *p++);
			continue;
		}
		char *name = xstrndup(p + 2, n);
		if (!strcmp(name, "ratecount")) {
			sbuf_printf(&b, "%lld", ratecount);
		} else {
			add_printable(&b, rl_req_get(req, name));
		}
		free(name);
		p += 2 + n;
	}
	return sbuf_steal(&b);
}

static long long secs(long long ms)
{
	return (ms + 999) / 1000;
}

static char *over_action(const struct rl_cfg *cfg, struct rl_req *req, const struct rl_op *op)
{
	const struct rl_rule *r = rl_rules_get(cfg->rules, (size_t)op->rule);
	const char *shown = strchr(strchr(op->key, ':') + 1, ':') + 1;
	long long used = (long long)(op->res.used + 0.5);
	char *act = subst(req, r->action, used + (op->cost ? op->cost : 1));
	struct sbuf b;

	if (!rl_action_takes_text(act))
		return act;
	int has_text = act[strcspn(act, " ")] != 0;
	sbuf_init(&b);
	sbuf_printf(&b, "%s %slimit %s: %lld %s per %lld s for ", act, has_text ? "(" : "", r->id,
		    r->limit.max, unit_word(r->kind), r->limit.window_s);
	add_printable(&b, shown);
	sbuf_printf(&b, ", retry in %lld s%s", secs(op->res.retry_ms), has_text ? ")" : "");
	free(act);
	return sbuf_steal(&b);
}

static char *grey_action(const struct rl_cfg *cfg, struct rl_req *req, long long retry_ms)
{
	struct sbuf b;
	const char *dom = rl_req_get(req, "recipient_domain");

	sbuf_init(&b);
	sbuf_adds(&b, "DEFER_IF_PERMIT ");
	for (const char *p = cfg->grey_text; *p; p++) {
		if (p[0] == '%' && p[1] == 'r') {
			add_printable(&b, dom);
			p++;
		} else if (p[0] == '%' && p[1] == 's') {
			sbuf_printf(&b, "%lld", secs(retry_ms));
			p++;
		} else {
			sbuf_addc(&b, *p);
		}
	}
	return sbuf_steal(&b);
}

/* add_clean - a log value without ", " separators, quotes or control bytes. */
static void add_clean(struct sbuf *b, const char *v)
{
	for (const char *p = v ? v : ""; *p && p - v < 300; p++) {
		unsigned char c = (unsigned char)*p;
		sbuf_addc(b, c == ',' ? ';' : c == '"' || c < 0x20 || c >= 0x7f ? '?' : (char)c);
	}
}

static void add_val(struct sbuf *b, const char *key, const char *v, int quote)
{
	sbuf_printf(b, ", %s=%s", key, quote ? "\"" : "");
	add_clean(b, v);
	if (quote)
		sbuf_addc(b, '"');
}

static void commit_instances(struct rl_engine *e, struct rl_req *req, struct rl_decision *d)
{
	const char *inst = rl_req_get(req, "instance");

	if (!inst || !*inst || d->plan.result != RL_PLAN_PASSED)
		return;
	for (size_t i = 0; i < d->plan.nops; i++)
		if (d->plan.ops[i].cost > 0)
			rl_inst_add(e->inst, inst, d->plan.ops[i].key, d->plan.ops[i].cost,
				    d->plan.now_ms);
}

static void log_head(struct sbuf *lg, struct rl_req *req)
{
	sbuf_adds(lg, "ratelimit: state=");
	add_clean(lg, state_of(req));
	add_val(lg, "instance", rl_req_get(req, "instance"), 0);
	sbuf_adds(lg, ", client=[");
	add_clean(lg, rl_req_get(req, "client_address"));
	sbuf_adds(lg, "]");
	add_val(lg, "sasl_username", rl_req_get(req, "sasl_username"), 0);
	sbuf_adds(lg, ", from=<");
	add_clean(lg, rl_req_get(req, "sender"));
	sbuf_adds(lg, ">, to=<");
	add_clean(lg, rl_req_get(req, "recipient"));
	sbuf_adds(lg, ">");
}

/* terminal_action - the matching access rule's action, or DUNNO. */
static char *terminal_action(const struct rl_cfg *cfg, struct rl_req *req, struct rl_decision *d,
			     struct sbuf *lg)
{
	if (d->terminal < 0)
		return xstrdup("DUNNO");
	const struct rl_rule *rule = rl_rules_get(cfg->rules, (size_t)d->terminal);
	sbuf_printf(lg, ", rule=%s", rule->id);
	return subst(req, rule->action, 0);
}

static char *decide_over(const struct rl_cfg *cfg, struct rl_req *req, struct rl_decision *d,
			 struct sbuf *lg)
{
	const struct rl_op *op = &d->plan.ops[d->plan.over];
	const struct rl_rule *rule = rl_rules_get(cfg->rules, (size_t)op->rule);

	sbuf_printf(lg, ", rule=%s, limit=%s", rule->id, kind_word(rule->kind));
	add_val(lg, "key", op->key, 0);
	sbuf_printf(lg, ", used=%.0f, cost=%lld, max=%lld, window_s=%lld, retry_s=%lld",
		    op->res.used, op->cost, op->max, op->window_ms / 1000, secs(op->res.retry_ms));
	return over_action(cfg, req, op);
}

static char *decide_grey(const struct rl_cfg *cfg, struct rl_req *req, struct rl_decision *d,
			 struct sbuf *lg)
{
	const struct rl_rule *rule = rl_rules_get(cfg->rules, (size_t)d->plan.grey_rule);

	sbuf_printf(lg, ", rule=%s, retry_s=%lld", rule->id, secs(d->plan.grey_retry_ms));
	return grey_action(cfg, req, d->plan.grey_retry_ms);
}

/* decide_pass - under every limit (or none applied): what was counted, then the answer. */
static char *decide_pass(const struct rl_cfg *cfg, struct rl_req *req, struct rl_decision *d,
			 struct sbuf *lg)
{
	if (d->use_store && d->plan.has_grey)
		sbuf_printf(lg, ", greylist=%s",
			    d->plan.grey_verdict == RL_GREY_PASS_AUTO ? "auto_allowed" : "passed");
	if (d->grey_allowed)
		sbuf_adds(lg, ", greylist=allow_listed");
	for (size_t i = 0; d->use_store && i < d->plan.nops; i++) {
		const struct rl_op *op = &d->plan.ops[i];
		sbuf_printf(lg, ", %s=%.0f/%lld", rl_rules_get(cfg->rules, (size_t)op->rule)->id,
			    op->res.used, op->max);
	}
	return terminal_action(cfg, req, d, lg);
}

/*
 * log_common - issue 13's common keys at the end of the decision line
 * (docs/EVENTS.md "sluice-ratelimit"); the older keys before them keep their
 * places. ms: wall-clock milliseconds since rl_engine_plan (the store's
 * round trip included), 0 when the clock stepped or the caller's now_ms was
 * not the wall clock.
 */
static void log_common(struct sbuf *lg, struct rl_req *req, const struct rl_decision *d,
		       const char *result)
{
	long long ms = (long long)(wall_time() * 1000) - d->plan.now_ms;

	if (ms < 0 || ms > 86400000LL)
		ms = 0;
	sbuf_adds(lg, ", filter=ratelimit");
	add_val(lg, "client_ip", rl_req_get(req, "client_address"), 0);
	add_val(lg, "sender", rl_req_get(req, "sender"), 0);
	add_val(lg, "recipient", rl_req_get(req, "recipient"), 0);
	if (!strncmp(result, "greylisted", 10))
		sbuf_adds(lg, ", reason=greylisted");
	else
		sbuf_printf(lg, ", reason=ratelimit_%s", result);
	sbuf_printf(lg, ", ms=%lld", ms);
}

char *rl_engine_decide(struct rl_engine *e, const struct rl_cfg *cfg, struct rl_req *req,
		       struct rl_decision *d, const char *store_err, char **log_out)
{
	struct sbuf lg;
	char *act;
	const char *result;
	int limited = 0;

	sbuf_init(&lg);
	log_head(&lg, req);
	if (store_err) {
		result = "backend_error";
		add_val(&lg, "error", store_err, 1);
		act = cfg->on_error_defer ? xstrdup(cfg->error_action) : terminal_action(cfg, req, d, &lg);
	} else if (d->use_store && d->plan.result == RL_PLAN_OVER) {
		result = "over";
		limited = 1;
		act = decide_over(cfg, req, d, &lg);
	} else if (d->use_store && d->plan.result == RL_PLAN_GREY_DEFER) {
		result = d->plan.grey_verdict == RL_GREY_DEFER_NEW ? "greylisted" : "greylisted_early";
		limited = 1;
		act = decide_grey(cfg, req, d, &lg);
	} else {
		result = d->terminal >= 0 ? "rule" : d->use_store ? "under" : "none";
		act = decide_pass(cfg, req, d, &lg);
	}
	if (d->use_store && !store_err)
		commit_instances(e, req, d);
	if (cfg->dry_run && limited) {
		sbuf_adds(&lg, ", dry_run=yes");
		add_val(&lg, "would", act, 1);
		free(act);
		act = xstrdup("DUNNO");
	}
	sbuf_printf(&lg, ", result=%s", result);
	{	/* sluice_filter_decisions_total{filter="ratelimit",result,action} */
		char word[32];
		snprintf(word, sizeof word, "%.*s", (int)strcspn(act, " \t"), act);
		for (char *w = word; *w; w++)
			*w = (char)tolower((unsigned char)*w);
		metrics_filter_decision(result, word, -1);
	}
	add_val(&lg, "action", act, 1);
	log_common(&lg, req, d, result);
	*log_out = sbuf_steal(&lg);
	return act;
}
