/*
 * spam_msg: one message, scored and decided. See spam_msg.h.
 */
#include "milters/spam/spam_msg.h"
#include "milters/spam/spam_cfg.h"
#include "milters/spam/spam_ar.h"
#include "milters/spam/spam_dnsl.h"
#include "milters/spam/spam_geo.h"
#include "milters/spam/spam_net.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/version.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_MAX_TESTS_BYTES 900	/* keep X-Spam-Status under RFC 5322's 998 */
#define LEVEL_MAX_STARS 50

const char *spam_action_name(enum spam_action a)
{
	switch (a) {
	case SPAM_ACT_NONE: return "no action";
	case SPAM_ACT_ADD_HEADER: return "add header";
	case SPAM_ACT_REWRITE_SUBJECT: return "rewrite subject";
	case SPAM_ACT_GREYLIST: return "greylist";
	case SPAM_ACT_REJECT: return "reject";
	}
	return "no action";
}

enum spam_action spam_action_for(const struct spam_cfg *cfg, double score)
{
	if (cfg->reject_score != SPAM_SCORE_OFF && score >= cfg->reject_score)
		return SPAM_ACT_REJECT;
	if (cfg->greylist_score != SPAM_SCORE_OFF && score >= cfg->greylist_score)
		return SPAM_ACT_GREYLIST;
	if (cfg->rewrite_subject_score != SPAM_SCORE_OFF && score >= cfg->rewrite_subject_score)
		return SPAM_ACT_REWRITE_SUBJECT;
	if (cfg->add_header_score != SPAM_SCORE_OFF && score >= cfg->add_header_score)
		return SPAM_ACT_ADD_HEADER;
	return SPAM_ACT_NONE;
}

struct spam_msg {
	struct spam_cfg *cfg;
	char *qid, *client_ip, *client_name, *helo, *env_from, *auth;
	struct sbuf raw;	/* header + body, up to the scan limit */
	size_t size;		/* every byte seen */
	struct spam_hdr_del *del;
	size_t ndel;
	struct { char *name; int count; } *names;	/* header counts for indexes */
	size_t nnames;
	int subject_seen;
	struct spam_dnsl_batch *dnsl;	/* list look-ups started at MAIL FROM */
};

static void start_lists(struct spam_msg *m, struct spam_prefetch **prefetch);

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

struct spam_msg *spam_msg_new(struct spam_cfg *cfg, const struct spam_msg_env *env)
{
	struct spam_msg *m = xcalloc(1, sizeof(*m));
	m->cfg = spam_cfg_ref(cfg);
	if (env) {
		m->qid = dup_or_null(env->qid);
		m->client_ip = dup_or_null(env->client_ip);
		m->client_name = dup_or_null(env->client_name);
		m->helo = dup_or_null(env->helo);
		m->env_from = dup_or_null(env->env_from);
		m->auth = dup_or_null(env->auth);
	}
	sbuf_init(&m->raw);
	start_lists(m, env ? env->prefetch : NULL);
	return m;
}

void spam_msg_set_qid(struct spam_msg *m, const char *qid)
{
	if (qid && *qid) {
		free(m->qid);
		m->qid = xstrdup(qid);
	}
}

static void keep(struct spam_msg *m, const void *p, size_t n)
{
	m->size += n;
	size_t cap = m->cfg->limits.max_scan_bytes;
	if (cap && m->raw.len >= cap)
		return;
	if (cap && m->raw.len + n > cap)
		n = cap - m->raw.len;
	sbuf_add(&m->raw, p, n);
}

void spam_msg_header(struct spam_msg *m, const char *name, const char *value)
{
	size_t k;
	for (k = 0; k < m->nnames; k++)
		if (!ascii_strcasecmp(m->names[k].name, name))
			break;
	if (k == m->nnames) {
		m->names = xrealloc(m->names, (m->nnames + 1) * sizeof(*m->names));
		m->names[k].name = xstrdup(name);
		m->names[k].count = 0;
		m->nnames++;
	}
	int idx = ++m->names[k].count;
	if (!ascii_strncasecmp(name, "X-Spam-", 7)) {
		m->del = xrealloc(m->del, (m->ndel + 1) * sizeof(*m->del));
		m->del[m->ndel].name = xstrdup(name);
		m->del[m->ndel].index = idx;
		m->ndel++;
		return;	/* not scanned either: it is not the sender's to set */
	}
	if (!ascii_strcasecmp(name, "Subject"))
		m->subject_seen = 1;
	keep(m, name, strlen(name));
	keep(m, ":", 1);
	if (value[0] != ' ' && value[0] != '\t')
		keep(m, " ", 1);
	keep(m, value, strlen(value));
	keep(m, "\n", 1);
}

void spam_msg_eoh(struct spam_msg *m)
{
	keep(m, "\n", 1);
}

void spam_msg_body(struct spam_msg *m, const unsigned char *buf, size_t len)
{
	keep(m, buf, len);
}

static void fmt_score(struct sbuf *b, double v)
{
	sbuf_printf(b, "%.1f", round(v * 10) / 10 + 0.0);
}

static void make_headers(struct spam_cfg *cfg, struct spam_outcome *o)
{
	int spam = o->action != SPAM_ACT_NONE;
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, spam ? "Yes, score=" : "No, score=");
	fmt_score(&b, o->score);
	sbuf_adds(&b, " required=");
	fmt_score(&b, o->required);
	sbuf_adds(&b, " tests=");
	size_t start = b.len;
	for (size_t i = 0; i < o->result.nhits; i++) {
		const char *n = o->result.hits[i].name;
		if (b.len - start + strlen(n) > STATUS_MAX_TESTS_BYTES) {
			sbuf_adds(&b, ",...");
			break;
		}
		if (i)
			sbuf_addc(&b, ',');
		sbuf_adds(&b, n);
	}
	if (o->result.nhits == 0)
		sbuf_adds(&b, "none");
	sbuf_printf(&b, " autolearn=%s version=sluice-%s", o->autolearn ? o->autolearn : "no", SLUICE_VERSION);
	o->status = sbuf_steal(&b);

	int stars = o->score > 0 ? (int)o->score : 0;
	if (stars > LEVEL_MAX_STARS)
		stars = LEVEL_MAX_STARS;
	o->level = xmalloc((size_t)stars + 1);
	memset(o->level, '*', (size_t)stars);
	o->level[stars] = 0;
	if (spam)
		o->flag = xstrdup("YES");

	for (size_t i = 0; i < o->result.nhits; i++) {
		if (i)
			sbuf_adds(&b, ", ");
		sbuf_printf(&b, "%s(%.2f)", o->result.hits[i].name, o->result.hits[i].score);
	}
	o->symbols = sbuf_steal(&b);
	(void)cfg;
}

static void make_log(const char *qid, struct spam_outcome *o, const char *extra, size_t size)
{
	(void)qid;
	struct sbuf b;
	sbuf_init(&b);
	const char *a = spam_action_name(o->action);
	sbuf_adds(&b, "milter=spam action=");
	for (const char *p = a; *p; p++)
		sbuf_addc(&b, *p == ' ' ? '_' : *p);
	sbuf_printf(&b, " score=%.2f required=%.2f", o->score + 0.0, o->required);
	if (extra)
		sbuf_printf(&b, " %s", extra);
	sbuf_printf(&b, " size=%zu symbols=", size);
	for (size_t i = 0; i < o->result.nhits; i++)
		sbuf_printf(&b, "%s%s(%.2f)", i ? "," : "", o->result.hits[i].name,
			    o->result.hits[i].score);
	if (o->result.nhits == 0)
		sbuf_adds(&b, "none");
	o->log = sbuf_steal(&b);
}

static char *domain_of(const char *addr_or_host)
{
	if (addr_or_host == NULL)
		return NULL;
	const char *at = strrchr(addr_or_host, '@');
	const char *h = at ? at + 1 : addr_or_host;
	if (*h == 0 || *h == '[')
		return NULL;
	char *lower = xstrdup(h);
	ascii_lower(lower);
	size_t l = strlen(lower);
	while (l && (lower[l - 1] == '.' || lower[l - 1] == '>' || lower[l - 1] == ' '))
		lower[--l] = 0;
	char *d = l ? spam_url_registered_domain(lower) : NULL;
	free(lower);
	return d;
}

#define DNSL_MAX_DOMAINS 24

/*
 * dns_lists - the client (unless trusted) and the first untrusted Received
 * hop in the ip lists; URL, From, envelope and HELO registered domains in
 * the domain lists. All at once, one deadline (spam_dnsl).
 */
static void dns_lists(struct spam_cfg *cfg, const struct spam_mime *mime, const struct spam_env *env,
		      const char *from_addr, struct spam_dnsl_batch **batch, struct spam_outcome *o,
		      char **note_out)
{
	*note_out = NULL;
	if (spam_dnsl_count(cfg->dnsl) == 0)
		return;
	const char *ips[2];
	size_t nips = 0;
	if (env->client_ip && !spam_net_match(cfg->trusted, env->client_ip))
		ips[nips++] = env->client_ip;
	/* the first untrusted Received hop before the client (our MTA's own line for it skipped) */
	const char *relay = NULL;
	for (size_t i = 0; i < mime->nrelays && relay == NULL; i++) {
		const char *ip = mime->relays[i].ip;
		if (ip && (env->client_ip == NULL || strcmp(ip, env->client_ip)) &&
		    !spam_net_match(cfg->trusted, ip))
			relay = ip;
	}
	if (relay)
		ips[nips++] = relay;
	char *doms[DNSL_MAX_DOMAINS];
	size_t nd = 0;
	char *cands[3] = { domain_of(from_addr), domain_of(env->env_from), domain_of(env->helo) };
	for (int i = 0; i < 3; i++)
		if (cands[i])
			doms[nd++] = cands[i];
	for (size_t i = 0; i < mime->nurls && nd < DNSL_MAX_DOMAINS; i++) {
		const char *d = mime->urls[i].domain;
		unsigned char b[16];
		if (d == NULL || inet_pton(AF_INET, d, b) == 1 || strchr(d, ':') || !strchr(d, '.'))
			continue;
		doms[nd++] = xstrdup(d);
	}
	/* de-duplicate */
	size_t w = 0;
	for (size_t i = 0; i < nd; i++) {
		int dup = 0;
		for (size_t k = 0; k < w; k++)
			if (!strcmp(doms[k], doms[i]))
				dup = 1;
		if (dup)
			free(doms[i]);
		else
			doms[w++] = doms[i];
	}
	nd = w;
	if (*batch == NULL)
		*batch = spam_dnsl_begin(cfg->dnsl);
	spam_dnsl_add(*batch, ips, nips, (const char *const *)doms, nd);	/* repeats of MAIL's skipped */
	spam_dnsl_finish(batch, &o->result, note_out, &o->warn);
	for (size_t i = 0; i < nd; i++)
		free(doms[i]);
}

/*
 * start_lists - at MAIL FROM the client, the envelope sender and the HELO
 * name are known: their look-ups go out now and answer while the message
 * is transferred (unless the message will not be scanned at all).
 */
struct spam_prefetch {
	struct spam_cfg *cfg;
	struct spam_dnsl_batch *batch;
};

struct spam_prefetch *spam_msg_prefetch(struct spam_cfg *cfg, const char *client_ip)
{
	if (cfg == NULL || client_ip == NULL || *client_ip == 0 || spam_dnsl_count(cfg->dnsl) == 0)
		return NULL;
	if (spam_net_match(cfg->trusted, client_ip))
		return NULL;
	if (!cfg->scan_outbound && spam_net_match(cfg->mynetworks, client_ip))
		return NULL;
	struct spam_dnsl_batch *b = spam_dnsl_begin(cfg->dnsl);
	if (b == NULL)
		return NULL;
	const char *ips[1] = { client_ip };
	spam_dnsl_add(b, ips, 1, NULL, 0);
	struct spam_prefetch *p = xcalloc(1, sizeof(*p));
	p->cfg = spam_cfg_ref(cfg);
	p->batch = b;
	return p;
}

void spam_prefetch_free(struct spam_prefetch **pp)
{
	struct spam_prefetch *p = pp ? *pp : NULL;
	if (p == NULL)
		return;
	spam_dnsl_abort(&p->batch);
	spam_cfg_unref(&p->cfg);
	free(p);
	*pp = NULL;
}

static void start_lists(struct spam_msg *m, struct spam_prefetch **prefetch)
{
	struct spam_cfg *cfg = m->cfg;
	struct spam_prefetch *pre = prefetch ? *prefetch : NULL;
	if (prefetch)
		*prefetch = NULL;	/* ours now, used or dropped */
	if (spam_dnsl_count(cfg->dnsl) == 0) {
		spam_prefetch_free(&pre);
		return;
	}
	int outbound = m->auth || (m->client_ip && spam_net_match(cfg->mynetworks, m->client_ip));
	if (outbound && !cfg->scan_outbound) {
		spam_prefetch_free(&pre);
		return;
	}
	if (pre && pre->cfg == cfg) {
		m->dnsl = pre->batch;	/* the client's queries are out since connect */
		pre->batch = NULL;
	} else {
		m->dnsl = spam_dnsl_begin(cfg->dnsl);
	}
	spam_prefetch_free(&pre);
	const char *ips[1];
	size_t nips = 0;
	if (m->client_ip && !spam_net_match(cfg->trusted, m->client_ip))
		ips[nips++] = m->client_ip;
	char *doms[2];
	size_t nd = 0;
	if ((doms[nd] = domain_of(m->env_from)) != NULL)
		nd++;
	if ((doms[nd] = domain_of(m->helo)) != NULL)
		nd++;
	spam_dnsl_add(m->dnsl, ips, nips, (const char *const *)doms, nd);
	for (size_t i = 0; i < nd; i++)
		free(doms[i]);
}

/*
 * bayes - the BAYES_xx symbol (once enough was learned) and autolearn from
 * the score without it. A store failure scores the message without Bayes.
 * Returns the note for the decision line (new string) or NULL.
 */
static char *bayes(struct spam_cfg *cfg, const struct spam_mime *mime, struct spam_outcome *o)
{
	if (cfg->bayes == NULL)
		return NULL;
	double without = o->result.score;
	struct spam_bayes_verdict v;
	char *err = NULL, *note;
	if (spam_bayes_classify(cfg->bayes, mime, 0, &v, &err) < 0) {
		note = xasprintf("bayes=error bayes_reason=\"%s\"", err);
		free(err);
		return note;
	}
	if (v.status == SPAM_BAYES_CLASSIFIED) {
		char *desc = xasprintf("Bayes spam probability is %.3f", v.prob);
		spam_result_add(&o->result, v.symbol, v.score, desc);
		free(desc);
		note = xasprintf("bayes=%.4f", v.prob);
	} else {
		note = xstrdup(v.status == SPAM_BAYES_UNTRAINED ? "bayes=untrained" : "bayes=no_tokens");
	}
	enum spam_bayes_op op;
	enum spam_bayes_learn_result lr;
	if (spam_bayes_autolearn_op(spam_bayes_get_opts(cfg->bayes), without, &op)) {
		if (spam_bayes_learn(cfg->bayes, mime, op, 0, &lr, &err) == 0) {
			o->autolearn = op == SPAM_BAYES_LEARN_SPAM ? "spam" : "ham";
		} else {
			char *n2 = xasprintf("%s autolearn=error", note);
			free(note);
			note = n2;
			free(err);
		}
	}
	return note;
}

/* decide - the common path of the milter and of `check`. raw is the kept bytes. */
static void decide(struct spam_cfg *cfg, const char *raw, size_t len, size_t size,
		   const struct spam_msg_env *env, int subject_seen, struct spam_dnsl_batch **batch,
		   struct spam_outcome *o)
{
	o->required = cfg->add_header_score == SPAM_SCORE_OFF ? cfg->reject_score : cfg->add_header_score;
	if (o->required == SPAM_SCORE_OFF)
		o->required = 0;
	int outbound = env && ((env->auth && *env->auth) ||
			       (env->client_ip && spam_net_match(cfg->mynetworks, env->client_ip)));
	if (outbound && !cfg->scan_outbound) {
		o->action = SPAM_ACT_NONE;
		make_log(env->qid, o, env->auth && *env->auth ? "skipped=authenticated" : "skipped=mynetworks", size);
		return;
	}
	struct spam_mime_limits lim = cfg->limits;
	lim.max_scan_bytes = 0;	/* raw is already cut to the limit */
	struct spam_mime *mime = spam_mime_parse(raw, len, &lim);
	if (size > len)
		mime->flags |= SPAM_MIME_TRUNCATED;
	mime->size = size;
	/* allow/block: envelope sender, then the From: address */
	const struct spam_hdr *from = spam_mime_header(mime, "From", 0);
	char *from_addr = NULL;
	if (from) {
		const char *lt = strrchr(from->value, '<');
		const char *gt = lt ? strchr(lt, '>') : NULL;
		from_addr = lt && gt ? xstrndup(lt + 1, (size_t)(gt - lt - 1)) : xstrdup(from->value);
		char *s = from_addr;
		while (*s == ' ')
			s++;
		memmove(from_addr, s, strlen(s) + 1);
		size_t l = strlen(from_addr);
		while (l && (from_addr[l - 1] == ' ' || from_addr[l - 1] == '\n'))
			from_addr[--l] = 0;
	}
	const char *ef = env ? env->env_from : NULL;
	if (spam_cfg_sender_listed(cfg, cfg->block_from, ef) ||
	    spam_cfg_sender_listed(cfg, cfg->block_from, from_addr)) {
		o->action = SPAM_ACT_REJECT;
		o->scanned = 1;
		o->code = cfg->reject_reply.code;
		o->xcode = cfg->reject_reply.xcode;
		o->text = cfg->reject_reply.text;
		make_log(env ? env->qid : NULL, o, "list=block_from", size);
		goto out;
	}
	if (spam_cfg_sender_listed(cfg, cfg->allow_from, ef) ||
	    spam_cfg_sender_listed(cfg, cfg->allow_from, from_addr)) {
		o->action = SPAM_ACT_NONE;
		make_log(env ? env->qid : NULL, o, "list=allow_from", size);
		goto out;
	}
	struct spam_env senv = {
		.client_ip = env ? env->client_ip : NULL,
		.client_name = env ? env->client_name : NULL,
		.helo = env ? env->helo : NULL,
		.env_from = ef,
		.auth = env ? env->auth : NULL,
		.qid = env ? env->qid : NULL,
		.trusted = cfg->trusted,
	};
	spam_scan(cfg->rules, mime, &senv, &o->result);
	spam_geo_symbols(cfg->geo, spam_scan_first_untrusted(mime, &senv), &o->result);
	spam_ar_symbols(cfg->ar, mime, &o->result);
	char *dnsl_note = NULL;
	dns_lists(cfg, mime, &senv, from_addr, batch, o, &dnsl_note);
	char *bayes_note = bayes(cfg, mime, o);
	o->scanned = 1;
	o->score = o->result.score;
	o->action = spam_action_for(cfg, o->score);
	make_headers(cfg, o);
	if (o->action == SPAM_ACT_REWRITE_SUBJECT) {
		const struct spam_hdr *s = spam_mime_header(mime, "Subject", 0);
		o->subject = xasprintf("%s %s", cfg->subject_prefix, s ? s->raw : "");
		o->subject_index = s || subject_seen ? 1 : 0;
	}
	if (o->action == SPAM_ACT_REJECT || o->action == SPAM_ACT_GREYLIST) {
		const struct spam_reply *r = o->action == SPAM_ACT_REJECT ? &cfg->reject_reply :
									    &cfg->greylist_reply;
		o->code = r->code;
		o->xcode = r->xcode;
		o->text = r->text;
	}
	struct sbuf extra;
	sbuf_init(&extra);
	if (mime->flags & SPAM_MIME_TRUNCATED)
		sbuf_adds(&extra, "truncated=yes");
	if (bayes_note)
		sbuf_printf(&extra, "%s%s", extra.len ? " " : "", bayes_note);
	if (dnsl_note)
		sbuf_printf(&extra, "%s%s", extra.len ? " " : "", dnsl_note);
	make_log(env ? env->qid : NULL, o, extra.len ? extra.buf : NULL, size);
	sbuf_free(&extra);
	free(dnsl_note);
	free(bayes_note);
out:
	free(from_addr);
	spam_mime_free(&mime);
}

/*
 * log_common - issue 13's common keys after the decision line's own
 * (docs/EVENTS.md "sluice-spam"): filter, client_ip, sender ("" for the
 * null sender), sasl_username (when known), result (spam when score >=
 * required, as `sluice report` reads the older lines), the stable reason
 * code and ms (milliseconds spent at end of message).
 */
static void log_common(struct spam_outcome *o, const struct spam_msg_env *env, long long t0_ms)
{
	if (o->log == NULL)
		return;
	const char *code = strstr(o->log, " list=block_from") ? "spam_block_from"
			   : strstr(o->log, " list=allow_from") ? "spam_allow_from"
			   : strstr(o->log, " skipped=") ? "spam_skipped" : "spam_score";
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, o->log);
	sbuf_adds(&b, " filter=spam");
	log_kv(&b, "client_ip", env->client_ip ? env->client_ip : "");
	log_kv(&b, "sender", env->env_from ? env->env_from : "");
	if (env->auth && *env->auth)
		log_kv(&b, "sasl_username", env->auth);
	sbuf_printf(&b, " result=%s reason=%s ms=%lld", o->score >= o->required ? "spam" : "ham",
		    code, now_ms() - t0_ms);
	free(o->log);
	o->log = sbuf_steal(&b);
}

void spam_msg_eom(struct spam_msg *m, struct spam_outcome *out)
{
	long long t0_ms = now_ms();
	memset(out, 0, sizeof(*out));
	struct spam_msg_env env = { .qid = m->qid, .client_ip = m->client_ip,
				    .client_name = m->client_name, .helo = m->helo,
				    .env_from = m->env_from, .auth = m->auth };
	decide(m->cfg, m->raw.buf ? m->raw.buf : "", m->raw.len, m->size, &env, m->subject_seen,
	       &m->dnsl, out);
	log_common(out, &env, t0_ms);
	spam_dnsl_abort(&m->dnsl);	/* not scanned after all (allow/block list) */
	if (out->scanned && m->ndel) {
		out->del = xcalloc(m->ndel, sizeof(*out->del));
		for (size_t i = 0; i < m->ndel; i++) {
			out->del[i].name = xstrdup(m->del[i].name);
			out->del[i].index = m->del[i].index;
		}
		out->ndel = m->ndel;
	}
}

void spam_check_buffer(struct spam_cfg *cfg, const char *msg, size_t len,
		       const struct spam_msg_env *env, struct spam_outcome *out)
{
	memset(out, 0, sizeof(*out));
	size_t keep_len = len;
	if (cfg->limits.max_scan_bytes && keep_len > cfg->limits.max_scan_bytes)
		keep_len = cfg->limits.max_scan_bytes;
	struct spam_dnsl_batch *batch = NULL;
	decide(cfg, msg, keep_len, len, env, 0, &batch, out);
	spam_dnsl_abort(&batch);
}

void spam_outcome_clear(struct spam_outcome *o)
{
	spam_result_clear(&o->result);
	for (size_t i = 0; i < o->ndel; i++)
		free(o->del[i].name);
	free(o->del);
	free(o->flag);
	free(o->level);
	free(o->status);
	free(o->symbols);
	free(o->subject);
	free(o->log);
	free(o->warn);
	memset(o, 0, sizeof(*o));
}

void spam_msg_free(struct spam_msg **mp)
{
	struct spam_msg *m = mp ? *mp : NULL;
	if (m == NULL)
		return;
	spam_dnsl_abort(&m->dnsl);	/* before the cfg: the batch points into its lists */
	spam_cfg_unref(&m->cfg);
	free(m->qid);
	free(m->client_ip);
	free(m->client_name);
	free(m->helo);
	free(m->env_from);
	free(m->auth);
	sbuf_free(&m->raw);
	for (size_t i = 0; i < m->ndel; i++)
		free(m->del[i].name);
	free(m->del);
	for (size_t i = 0; i < m->nnames; i++)
		free(m->names[i].name);
	free(m->names);
	free(m);
	*mp = NULL;
}

static double round2(double v)
{
	return round(v * 100) / 100 + 0.0;
}

char *spam_outcome_json(const char *file, const struct spam_outcome *o)
{
	json_t *j = json_object();
	json_object_set_new(j, "file", json_string(file ? file : ""));
	json_object_set_new(j, "score", json_real(round2(o->score)));
	json_object_set_new(j, "required", json_real(round2(o->required)));
	json_object_set_new(j, "action", json_string(spam_action_name(o->action)));
	json_t *syms = json_object();
	for (size_t i = 0; i < o->result.nhits; i++)
		json_object_set_new(syms, o->result.hits[i].name,
				    json_real(round2(o->result.hits[i].score)));
	json_object_set_new(j, "symbols", syms);
	char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
	json_decref(j);
	char *r = xstrdup(s);
	free(s);
	return r;
}
