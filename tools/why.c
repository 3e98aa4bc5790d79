/*
 * why: see why.h. Pass 1 keeps the queue id's lines and learns the
 * message's instances and SMTP session; pass 2 (only when there is
 * something to join) keeps the NOQUEUE lines that belong to it. Then the
 * kept lines are sorted by time and the decisions are read off them.
 */
#include "tools/why.h"

#include "conf/conf.h"
#include "conf/params.h"
#include "lib/util.h"
#include "tools/report_input.h"
#include "tools/report_map.h"
#include "tools/report_parse.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define WHY_DEFAULT_CONF "/etc/sluice/sluice.conf"
#define WHY_SYSLOG_FILE "/var/log/mail.log"
/* a session's NOQUEUE filter lines: at most this long before its queue id when its connect is not seen */
#define WHY_SESSION_FALLBACK_S 60
/* a filter verdict and the MTA's reject it caused: this close in time */
#define WHY_JOIN_S 30
#define WHY_NCONN 64

#define WHY_USAGE "usage: sluice why [-c FILE] [--json] QUEUE-ID [LOGFILE...]\n" \
		  "       sluice why [-c FILE] [--json] [--client IP] [--sender ADDR] [--recipient ADDR]\n" \
		  "                  [LOGFILE...]\n"

enum why_how { WHY_QID, WHY_REF, WHY_INSTANCE, WHY_SESSION, WHY_SELECTOR };

static const char *const why_how_name[] = { "queue_id", "reference", "instance", "session", "selector" };

struct why_kv {
	char *key, *value;
};

/* One kept line, parsed, with owned copies of what the output needs. */
struct why_ev {
	int file;
	long long lineno;
	enum why_how how;
	/*
	 * Where it sorts: its own time and place, or (a policy or filter
	 * verdict from before the queue id existed) just before the line
	 * that made the queue id, which may carry a later second.
	 */
	double k_time;
	int k_file;
	long long k_line;
	int k_before;
	enum rp_kind kind;
	double time;
	long pid;
	char *host, *program, *syslog_name, *service, *qid, *msg;
	char *filter, *action, *result, *stage, *reason, *dsn, *relay, *status_text;
	char *sender, *recipient, *client_ip;
	int mta_milter, code;
	enum rp_reject reject;
	enum rp_status status;
	double delay_s;
	struct why_kv *kv;
	size_t nkv;
};

/* a set of strings in insertion order */
struct why_strs {
	char **v;
	size_t n;
	struct rmap m;		/* membership */
};

/* indices into why.ev */
struct why_idx {
	size_t *v;
	size_t n;
};

/* a recent "connect from" of a receiver process, to find a session's start */
struct why_conn {
	char *host, *ip;
	long pid;
	int file;
	long long lineno;
	double time;
};

struct why {
	/* options */
	const char *qid;
	const char *sel_client, *sel_sender, *sel_recipient;
	int json;
	char **files;
	int nfiles;
	/* what was kept */
	struct why_ev *ev;
	size_t nev, cap;
	struct why_strs inst;
	struct why_strs inst_mapped;	/* selector mode: instances sluiced gave a queue id */
	/* the message's SMTP session (its client= line) */
	int have_session;
	int s_file;
	long long s_from, s_to;	/* line numbers: after its connect (-1: not seen), before client= */
	double s_t0, s_t1;
	long s_pid;
	char *s_host, *s_ip, *s_sender;
	struct why_conn conn[WHY_NCONN];
	size_t nconn;
	/* selector mode: queue ids whose client / sender / recipient matched */
	struct why_strs sel_qids[3];
	struct rp_parser *p;
};

/* ------------------------------------------------------------ small helpers */

static char *dup0(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static int streq0(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static int ieq0(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}

static int strs_has(const struct why_strs *s, const char *v)
{
	return rmap_get((struct rmap *)&s->m, v, 0) != NULL;
}

static void strs_add(struct why_strs *s, const char *v, size_t n)
{
	char *c = xmalloc(n + 1);
	memcpy(c, v, n);
	c[n] = 0;
	if (strs_has(s, c)) {
		free(c);
		return;
	}
	rmap_get(&s->m, c, 1);
	s->v = xrealloc(s->v, (s->n + 1) * sizeof *s->v);
	s->v[s->n++] = c;
}

static void strs_free(struct why_strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	rmap_free(&s->m, NULL);
	s->v = NULL;
	s->n = 0;
}

static void idx_add(struct why_idx *x, size_t i)
{
	x->v = xrealloc(x->v, (x->n + 1) * sizeof *x->v);
	x->v[x->n++] = i;
}

static void idx_free(void *p)
{
	struct why_idx *x = p;
	if (x)
		free(x->v);
	free(x);
}

/* s lower-cased into buf (cut to size - 1 bytes) */
static const char *lower_key(const char *s, char *buf, size_t size)
{
	size_t n = 0;
	for (; s[n] && n + 1 < size; n++)
		buf[n] = (char)tolower((unsigned char)s[n]);
	buf[n] = 0;
	return buf;
}

/* case-insensitive search for needle in line[0..len) */
static int ci_find(const char *line, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	if (!n || n > len)
		return n == 0;
	for (size_t i = 0; i + n <= len; i++)
		if (strncasecmp(line + i, needle, n) == 0)
			return 1;
	return 0;
}

/* Does word occur in s as a whole token (not inside a longer run of [0-9A-Za-z])? */
static int has_word(const char *s, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = s; (p = strstr(p, word)); p++) {
		int left = p == s || !isalnum((unsigned char)p[-1]);
		int right = !isalnum((unsigned char)p[n]);
		if (left && right)
			return 1;
	}
	return 0;
}

/* "<a@b>" -> "a@b" (a new string) */
static char *unangle_dup(const char *v)
{
	if (!v)
		return NULL;
	size_t n = strlen(v);
	if (n >= 2 && v[0] == '<' && v[n - 1] == '>')
		return xasprintf("%.*s", (int)(n - 2), v + 1);
	return xstrdup(v);
}

/* "[1.2.3.4]" or "name[1.2.3.4]" -> "1.2.3.4"; anything else as is */
static char *client_ip_dup(const char *v)
{
	if (!v)
		return NULL;
	const char *o = strchr(v, '['), *c = o ? strchr(o, ']') : NULL;
	if (o && c)
		return xasprintf("%.*s", (int)(c - o - 1), o + 1);
	return xstrdup(v);
}

static const char *ev_kv(const struct why_ev *e, const char *key)
{
	for (size_t i = 0; i < e->nkv; i++)
		if (!strcmp(e->kv[i].key, key))
			return e->kv[i].value;
	return NULL;
}

/* ------------------------------------------------------------ keeping lines */

static void ev_keep(struct why *w, const struct rp_event *e, int file, long long lineno,
		    enum why_how how)
{
	if (w->nev == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 32;
		w->ev = xrealloc(w->ev, w->cap * sizeof *w->ev);
	}
	struct why_ev *k = &w->ev[w->nev++];
	memset(k, 0, sizeof *k);
	k->file = file;
	k->lineno = lineno;
	k->how = how;
	k->kind = e->kind;
	k->time = e->time;
	k->pid = e->pid;
	k->host = dup0(e->host);
	k->syslog_name = dup0(e->syslog_name ? e->syslog_name : "?");
	k->service = dup0(e->service ? e->service : "");
	k->program = *k->service ? xasprintf("%s/%s", k->syslog_name, k->service) : xstrdup(k->syslog_name);
	k->qid = dup0(e->qid);
	k->msg = dup0(e->msg ? e->msg : "");
	k->filter = dup0(e->filter);
	k->action = dup0(e->action);
	k->result = dup0(e->result);
	k->stage = dup0(e->stage);
	k->reason = dup0(e->reason);
	k->dsn = dup0(e->dsn);
	k->relay = dup0(e->relay);
	k->status_text = dup0(e->status_text);
	k->mta_milter = e->mta_milter;
	k->code = e->code;
	k->reject = e->reject;
	k->status = e->status;
	k->delay_s = e->delay_s;
	k->kv = e->nkv ? xcalloc(e->nkv, sizeof *k->kv) : NULL;
	for (size_t i = 0; i < e->nkv; i++) {
		k->kv[i].key = xstrdup(e->kv[i].key);
		k->kv[i].value = xstrdup(e->kv[i].value ? e->kv[i].value : "");
	}
	k->nkv = e->nkv;
	/* the envelope fields filter lines carry under their own names */
	const char *v;
	k->sender = e->sender ? xstrdup(e->sender)
		    : (v = ev_kv(k, "from")) || (v = ev_kv(k, "sender")) ? unangle_dup(v) : NULL;
	k->recipient = e->recipient ? xstrdup(e->recipient)
		       : (v = ev_kv(k, "to")) || (v = ev_kv(k, "recipient")) ? unangle_dup(v) : NULL;
	k->client_ip = e->client_ip ? xstrdup(e->client_ip)
		       : (v = ev_kv(k, "client_address")) || (v = ev_kv(k, "client")) ? client_ip_dup(v)
										    : NULL;
}

static void ev_free(struct why_ev *k)
{
	char **s[] = { &k->host, &k->program, &k->syslog_name, &k->service, &k->qid, &k->msg,
		       &k->filter, &k->action, &k->result, &k->stage, &k->reason, &k->dsn,
		       &k->relay, &k->status_text, &k->sender, &k->recipient, &k->client_ip };
	for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
		free(*s[i]);
		*s[i] = NULL;
	}
	for (size_t i = 0; i < k->nkv; i++) {
		free(k->kv[i].key);
		free(k->kv[i].value);
	}
	free(k->kv);
}

static int ev_cmp(const void *a, const void *b)
{
	const struct why_ev *x = a, *y = b;
	if (x->k_time != y->k_time)
		return x->k_time < y->k_time ? -1 : 1;
	if (x->k_file != y->k_file)
		return x->k_file < y->k_file ? -1 : 1;
	if (x->k_line != y->k_line)
		return x->k_line < y->k_line ? -1 : 1;
	if (x->k_before != y->k_before)
		return x->k_before ? -1 : 1;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	return x->lineno < y->lineno ? -1 : x->lineno > y->lineno;
}

/* ------------------------------------------------------------ the passes */

static void remember_connect(struct why *w, const struct rp_event *e, int file, long long lineno)
{
	struct why_conn *c = NULL;
	for (size_t i = 0; i < w->nconn; i++)
		if (w->conn[i].pid == e->pid && streq0(w->conn[i].host, e->host))
			c = &w->conn[i];
	if (!c) {
		if (w->nconn < WHY_NCONN) {
			c = &w->conn[w->nconn++];
		} else {
			/* forget the oldest */
			c = &w->conn[0];
			for (size_t i = 1; i < w->nconn; i++)
				if (w->conn[i].time < c->time)
					c = &w->conn[i];
		}
		free(c->host);
		c->host = dup0(e->host);
		c->pid = e->pid;
	}
	free(c->ip);
	c->ip = dup0(e->client_ip);
	c->file = file;
	c->lineno = lineno;
	c->time = e->time;
}

static void found_client(struct why *w, const struct rp_event *e, int file, long long lineno)
{
	w->have_session = 1;
	w->s_file = file;
	w->s_to = lineno;
	w->s_t1 = e->time;
	w->s_pid = e->pid;
	w->s_host = dup0(e->host);
	w->s_ip = dup0(e->client_ip);
	w->s_from = -1;
	w->s_t0 = e->time - WHY_SESSION_FALLBACK_S;
	for (size_t i = 0; i < w->nconn; i++) {
		struct why_conn *c = &w->conn[i];
		if (c->pid == e->pid && streq0(c->host, e->host) && c->file == file && c->lineno < lineno &&
		    streq0(c->ip, e->client_ip)) {
			w->s_from = c->lineno;
			w->s_t0 = c->time;
		}
	}
}

/* pass 1 in queue id mode */
static void line_qid(struct why *w, const char *line, size_t len, int file, long long lineno)
{
	struct rp_event e;
	if (memmem(line, len, w->qid, strlen(w->qid))) {
		if (rp_parse_line(w->p, line, len, &e) == RP_EV_NONE)
			return;
		if (streq0(e.qid, w->qid)) {
			ev_keep(w, &e, file, lineno, WHY_QID);
			if (e.kind == RP_EV_CLIENT && !w->have_session)
				found_client(w, &e, file, lineno);
			if ((e.kind == RP_EV_FROM || e.kind == RP_EV_PICKUP) && e.sender && !w->s_sender)
				w->s_sender = xstrdup(e.sender);
			if (e.msg && !strncmp(e.msg, "policy instance=", 16)) {
				const char *v = e.msg + 16;
				strs_add(&w->inst, v, strcspn(v, " ,;"));
			}
		} else if (e.msg && has_word(e.msg, w->qid)) {
			ev_keep(w, &e, file, lineno, WHY_REF);	/* "OTHER: sender non-delivery notification: QID" */
		}
		return;
	}
	if (!w->have_session && memmem(line, len, "connect from ", 13) &&
	    rp_parse_line(w->p, line, len, &e) == RP_EV_CONNECT)
		remember_connect(w, &e, file, lineno);
}

/* pass 2 in queue id mode: the NOQUEUE lines that belong to the message */
static void line_join(struct why *w, const char *line, size_t len, int file, long long lineno)
{
	struct rp_event e;
	if (w->inst.n && memmem(line, len, "instance=", 9)) {
		if (rp_parse_line(w->p, line, len, &e) == RP_EV_NONE || streq0(e.qid, w->qid))
			return;
		const char *i = rp_kv_get(&e, "instance");
		if (i && strs_has(&w->inst, i))
			ev_keep(w, &e, file, lineno, WHY_INSTANCE);
		return;
	}
	if (!w->have_session || !memmem(line, len, "NOQUEUE", 7))
		return;
	if (rp_parse_line(w->p, line, len, &e) == RP_EV_NONE || !streq0(e.qid, "NOQUEUE"))
		return;
	/* sluiced's own lines: the same receiver process between connect and client= */
	if (file == w->s_file && w->s_from >= 0 && lineno > w->s_from && lineno < w->s_to &&
	    e.pid == w->s_pid && streq0(e.host, w->s_host) &&
	    (!e.client_ip || streq0(e.client_ip, w->s_ip))) {
		ev_keep(w, &e, file, lineno, WHY_SESSION);
		return;
	}
	/* a filter's verdict without an instance: same client and sender, in the session's span */
	if (e.kind != RP_EV_FILTER || e.mta_milter || rp_kv_get(&e, "instance") || e.time < w->s_t0 ||
	    e.time > w->s_t1)
		return;
	const char *c = e.client_ip ? e.client_ip : rp_kv_get(&e, "client");
	char *ip = client_ip_dup(c);
	int same = streq0(ip, w->s_ip) && (!w->s_sender || !e.sender || ieq0(e.sender, w->s_sender));
	free(ip);
	if (same)
		ev_keep(w, &e, file, lineno, WHY_SESSION);
}

/* selector mode: NOQUEUE lines matching every selector; queue ids matching each */
static int sel_match(const struct why *w, const char *client, const char *sender,
		     const char *rcpt)
{
	return (!w->sel_client || ieq0(client, w->sel_client)) &&
	       (!w->sel_sender || ieq0(sender, w->sel_sender)) &&
	       (!w->sel_recipient || ieq0(rcpt, w->sel_recipient));
}

static void line_sel(struct why *w, const char *line, size_t len, int file, long long lineno)
{
	struct rp_event e;
	const char *pi = memmem(line, len, "policy instance=", 16);
	if (pi && rp_parse_line(w->p, line, len, &e) != RP_EV_NONE && e.qid && e.msg &&
	    !strncmp(e.msg, "policy instance=", 16)) {
		strs_add(&w->inst_mapped, e.msg + 16, strcspn(e.msg + 16, " ,;"));
		return;
	}
	if (!(w->sel_client && ci_find(line, len, w->sel_client)) &&
	    !(w->sel_sender && ci_find(line, len, w->sel_sender)) &&
	    !(w->sel_recipient && ci_find(line, len, w->sel_recipient)))
		return;
	if (rp_parse_line(w->p, line, len, &e) == RP_EV_NONE || !e.qid)
		return;
	if (!strcmp(e.qid, "NOQUEUE")) {
		if (e.kind != RP_EV_REJECT && !(e.kind == RP_EV_FILTER && !e.mta_milter))
			return;
		size_t before = w->nev;
		ev_keep(w, &e, file, lineno, WHY_SELECTOR);
		struct why_ev *k = &w->ev[before];
		if (!sel_match(w, k->client_ip, k->sender, k->recipient)) {
			ev_free(k);
			w->nev = before;
		}
		return;
	}
	size_t ql = strlen(e.qid);
	if (w->sel_client && e.kind == RP_EV_CLIENT && ieq0(e.client_ip, w->sel_client))
		strs_add(&w->sel_qids[0], e.qid, ql);
	if (w->sel_sender && (e.kind == RP_EV_FROM || e.kind == RP_EV_PICKUP) &&
	    ieq0(e.sender, w->sel_sender))
		strs_add(&w->sel_qids[1], e.qid, ql);
	if (w->sel_recipient && (e.kind == RP_EV_DELIVERY || e.kind == RP_EV_REJECT) &&
	    (ieq0(e.recipient, w->sel_recipient) || ieq0(e.orig_to, w->sel_recipient)))
		strs_add(&w->sel_qids[2], e.qid, ql);
}

typedef void (*why_line_fn)(struct why *w, const char *line, size_t len, int file,
			    long long lineno);

/* One pass over every file; -1 after printing why on a file that can't be read. */
static int why_pass(struct why *w, why_line_fn fn)
{
	for (int f = 0; f < w->nfiles; f++) {
		const char *err = NULL, *line;
		size_t len;
		struct report_input *in = ri_open(w->files[f], &err);
		if (!in) {
			fprintf(stderr, "sluice why: %s: %s\n", w->files[f], err);
			return -1;
		}
		long long lineno = 0;
		int r;
		while ((r = ri_next(in, &line, &len, &err)) == 1)
			fn(w, line, len, f, ++lineno);
		ri_close(&in);
		if (r < 0) {
			fprintf(stderr, "sluice why: %s: %s\n", w->files[f], err);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ decisions */

struct why_dec {
	const char *verb;	/* rejected, deferred, held, discarded, delivered, bounced */
	int paren;		/* detail in parentheses, not after a colon */
	char *stage, *recipient, *by, *filter, *rule, *detail, *reply, *qid;
	char *text;		/* the whole sentence */
};

struct why_decs {
	struct why_dec *v;
	size_t n;
};

static int decisive(const char *action)
{
	static const char *const a[] = { "reject", "defer", "defer_if_permit", "defer_if_reject",
					 "tempfail", "discard", "quarantine", "hold", NULL };
	if (!action)
		return 0;
	if ((action[0] == '4' || action[0] == '5') && isdigit((unsigned char)action[1]))
		return 1;
	for (size_t i = 0; a[i]; i++)
		if (!strcmp(action, a[i]))
			return 1;
	return 0;
}

static int eom_stage(const char *stage)
{
	return stage && (!strcasecmp(stage, "END-OF-MESSAGE") || !strcasecmp(stage, "end-of-data") ||
			 !strcasecmp(stage, "eom") || !strcasecmp(stage, "header") ||
			 !strcasecmp(stage, "body"));
}

static const char *rl_unit(const char *limit)
{
	return streq0(limit, "rate") ? "messages" : streq0(limit, "rcpt") ? "recipients"
		: streq0(limit, "size") ? "bytes" : "units";
}

/*
 * own_code - f's reason is the filter's stable code ("dkim_pass", issue 13's
 * schema), which the words before it already say: not repeated.
 */
static int own_code(const struct why_ev *f)
{
	size_t n = f->filter ? strlen(f->filter) : 0;
	return n && !strncmp(f->reason, f->filter, n) && f->reason[n] == '_' && !strchr(f->reason, ' ');
}

/* What a filter's verdict line says, in words: "rule OUT: 101 messages in 3600 s, limit 100". */
static char *filter_detail(const struct why_ev *f, char **rule_out)
{
	struct sbuf b;
	sbuf_init(&b);
	const char *v, *rule = ev_kv(f, "rule");
	*rule_out = dup0(rule);
	if (streq0(f->filter, "ratelimit")) {
		const char *used = ev_kv(f, "used"), *cost = ev_kv(f, "cost"), *max = ev_kv(f, "max");
		const char *win = ev_kv(f, "window_s"), *retry = ev_kv(f, "retry_s");
		if (rule)
			sbuf_printf(&b, "rule %s", rule);
		if (used && cost && max && win)
			sbuf_printf(&b, ": %.0f %s in %s s, limit %s", strtod(used, NULL) + strtod(cost, NULL),
				    rl_unit(ev_kv(f, "limit")), win, max);
		else if (f->result && !strncmp(f->result, "greylist", 8))
			sbuf_printf(&b, "%sgreylisted%s%s%s", b.len ? ": " : "", retry ? ", retry in " : "",
				    retry ? retry : "", retry ? " s" : "");
		else if (f->result)
			sbuf_printf(&b, "%sresult %s", b.len ? ": " : "", f->result);
	} else if (streq0(f->filter, "spam") && (v = ev_kv(f, "score"))) {
		sbuf_printf(&b, "score %s", v);
		if ((v = ev_kv(f, "required")))
			sbuf_printf(&b, ", required %s", v);
		if ((v = ev_kv(f, "symbols")) && strcmp(v, "none"))
			sbuf_printf(&b, ", symbols %s", v);
	} else if (streq0(f->filter, "spf")) {
		sbuf_printf(&b, "SPF %s", f->result ? f->result : "?");
		if ((v = ev_kv(f, "identity")))
			sbuf_printf(&b, " for %s", v);
		if ((v = ev_kv(f, "mechanism")) && strcmp(v, "-"))
			sbuf_printf(&b, " (mechanism %s)", v);
	} else if (streq0(f->filter, "dmarc")) {
		sbuf_printf(&b, "DMARC %s", f->result ? f->result : "?");
		if ((v = ev_kv(f, "header_from")))
			sbuf_printf(&b, " for %s", v);
		if ((v = ev_kv(f, "policy")))
			sbuf_printf(&b, ", policy %s", v);
		if ((v = ev_kv(f, "disposition")))
			sbuf_printf(&b, ", disposition %s", v);
	} else if (streq0(f->filter, "dkim")) {
		sbuf_printf(&b, "DKIM %s", f->result ? f->result : "?");
	} else {
		if (f->result)
			sbuf_printf(&b, "result %s", f->result);
		if (f->action)
			sbuf_printf(&b, "%saction %s", b.len ? ", " : "", f->action);
	}
	if (f->reason && *f->reason && !streq0(f->filter, "ratelimit") && !streq0(f->filter, "spam") &&
	    !own_code(f))
		sbuf_printf(&b, "%s%s", b.len ? ": " : "", f->reason);
	if (!b.len) {
		sbuf_free(&b);
		return NULL;
	}
	return sbuf_steal(&b);
}

/*
 * The verdicts that can decide a reject, indexed once (a selector can keep
 * many thousands of lines): the filters' deciding verdicts by recipient
 * (lower case) and those naming none, and the MTA's own milter lines that
 * did not continue.
 */
struct why_cands {
	struct rmap by_rcpt;	/* ptr: struct why_idx */
	struct why_idx norcpt, all, mta;
};

static void cands_build(const struct why *w, struct why_cands *c)
{
	char key[512];
	memset(c, 0, sizeof *c);
	for (size_t j = 0; j < w->nev; j++) {
		const struct why_ev *f = &w->ev[j];
		if (f->kind != RP_EV_FILTER)
			continue;
		if (f->mta_milter) {
			if (f->action && strcmp(f->action, "continue") && strcmp(f->action, "accept"))
				idx_add(&c->mta, j);
			continue;
		}
		if (!decisive(f->action))
			continue;
		idx_add(&c->all, j);
		if (!f->recipient) {
			idx_add(&c->norcpt, j);
			continue;
		}
		struct rmap_ent *e = rmap_get(&c->by_rcpt, lower_key(f->recipient, key, sizeof key), 1);
		if (!e)
			e = rmap_get(&c->by_rcpt, key, 0);
		if (!e->ptr)
			e->ptr = xcalloc(1, sizeof(struct why_idx));
		idx_add(e->ptr, j);
	}
}

static void cands_free(struct why_cands *c)
{
	rmap_free(&c->by_rcpt, idx_free);
	free(c->norcpt.v);
	free(c->all.v);
	free(c->mta.v);
}

/* filter verdict f can have decided reject e */
static int filter_fits(const struct why_ev *e, const struct why_ev *f)
{
	if (fabs(f->time - e->time) > WHY_JOIN_S)
		return 0;
	if (e->recipient && f->recipient && strcasecmp(e->recipient, f->recipient))
		return 0;
	if (e->sender && f->sender && strcasecmp(e->sender, f->sender))
		return 0;
	const char *state = ev_kv(f, "state");
	int f_milter = ev_kv(f, "milter") != NULL;
	int f_eom = state ? eom_stage(state) : f_milter;
	return eom_stage(e->stage) == f_eom || (e->reject == RP_REJ_MILTER && f_milter);
}

/*
 * The closest fitting candidate in x (ascending indices, so in sort order)
 * before i (*before) and after it (*after): a binary search for i, then
 * outwards until one fits or the sort times are WHY_JOIN_S apart.
 */
static void closest(const struct why *w, size_t i, const struct why_idx *x, long *before, long *after)
{
	if (!x || !x->n)
		return;
	const struct why_ev *e = &w->ev[i];
	size_t lo = 0, hi = x->n;	/* first k with x->v[k] > i */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (x->v[mid] <= i)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = lo; k-- > 0;) {
		size_t j = x->v[k];
		if (j == i || e->k_time - w->ev[j].k_time > WHY_JOIN_S)
			break;
		if (filter_fits(e, &w->ev[j])) {
			if (*before < 0 || (size_t)*before < j)
				*before = (long)j;
			break;
		}
	}
	for (size_t k = lo; k < x->n; k++) {
		size_t j = x->v[k];
		if (w->ev[j].k_time - e->k_time > WHY_JOIN_S)
			break;
		if (filter_fits(e, &w->ev[j])) {
			if (*after < 0 || (size_t)*after > j)
				*after = (long)j;
			break;
		}
	}
}

/*
 * The filter verdict behind reject event ev[i]: a filter line (not the
 * MTA's own milter line) with a deciding action, for the same recipient
 * and sender when both name one, at the same stage, the closest before the
 * reject (else after). -1 when none.
 */
static long find_filter(const struct why *w, const struct why_cands *c, size_t i)
{
	const struct why_ev *e = &w->ev[i];
	long before = -1, after = -1;
	if (e->recipient) {
		char key[512];
		struct rmap_ent *r = rmap_get((struct rmap *)&c->by_rcpt,
					      lower_key(e->recipient, key, sizeof key), 0);
		if (r)
			closest(w, i, r->ptr, &before, &after);
		closest(w, i, &c->norcpt, &before, &after);
	} else {
		closest(w, i, &c->all, &before, &after);
	}
	return before >= 0 ? before : after;
}

/* The MTA's own milter line behind a milter-reject/hold/discard; -1 when none. */
static long find_mta_milter(const struct why *w, const struct why_cands *c, size_t i)
{
	const struct why_ev *e = &w->ev[i];
	long best = -1;
	for (size_t k = 0; k < c->mta.n; k++) {
		size_t j = c->mta.v[k];
		const struct why_ev *f = &w->ev[j];
		if (fabs(f->time - e->time) > WHY_JOIN_S || (e->qid && f->qid && strcmp(e->qid, f->qid)))
			continue;
		if (j <= i)
			best = (long)j;
		else if (best < 0)
			best = (long)j;
	}
	return best;
}

static void dec_add(struct why_decs *d, struct why_dec *x)
{
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, x->verb);
	if (x->recipient)
		sbuf_printf(&b, " <%s>", x->recipient);
	if (x->stage)
		sbuf_printf(&b, " at %s", x->stage);
	if (x->by)
		sbuf_printf(&b, " by %s", x->by);
	if (x->detail)
		sbuf_printf(&b, x->paren || !x->by ? " (%s)" : ": %s", x->detail);
	if (x->reply)
		sbuf_printf(&b, " (%s)", x->reply);
	x->text = sbuf_steal(&b);
	d->v = xrealloc(d->v, (d->n + 1) * sizeof *d->v);
	d->v[d->n++] = *x;
}

static void dec_reject(const struct why *w, const struct why_cands *c, size_t i, struct why_decs *d)
{
	const struct why_ev *e = &w->ev[i];
	struct why_dec x = { 0 };
	int temp = e->code >= 400 && e->code < 500;
	x.verb = e->reject == RP_REJ_HOLD ? "held" : e->reject == RP_REJ_DISCARD ? "discarded"
		 : temp ? "temporarily rejected" : "rejected";
	x.stage = dup0(e->stage);
	x.recipient = dup0(e->recipient);
	x.qid = dup0(e->qid);
	/* "CODE DSN TEXT", as much of it as the line has (Postfix's milter-reject has no code) */
	struct sbuf r;
	sbuf_init(&r);
	if (e->code > 0)
		sbuf_printf(&r, "%d", e->code);
	if (e->dsn)
		sbuf_printf(&r, "%s%s", r.len ? " " : "", e->dsn);
	if (e->reason)
		sbuf_printf(&r, "%s%s", r.len ? " " : "", e->reason);
	x.reply = r.len ? sbuf_steal(&r) : NULL;
	sbuf_free(&r);
	long j = find_filter(w, c, i);
	if (j >= 0) {
		const struct why_ev *f = &w->ev[j];
		char *rule = NULL;
		x.by = xstrdup(f->syslog_name);
		x.filter = dup0(f->filter);
		x.detail = filter_detail(f, &rule);
		x.rule = rule;
		/* "by sluice-ratelimit rule OUT: 101 messages ..." reads better without the colon */
		if (rule && x.detail && !strncmp(x.detail, "rule ", 5)) {
			char *by = xasprintf("%s %.*s", x.by, (int)strcspn(x.detail, ":"), x.detail);
			const char *rest = x.detail + strcspn(x.detail, ":");
			char *detail = *rest ? xstrdup(rest + 2) : NULL;
			free(x.by);
			free(x.detail);
			x.by = by;
			x.detail = detail;
		}
	} else if ((j = find_mta_milter(w, c, i)) >= 0 &&
		   (e->reject != RP_REJ_REJECT || eom_stage(e->stage))) {
		x.by = xasprintf("milter %s", w->ev[j].filter ? w->ev[j].filter : "?");
		x.filter = dup0(w->ev[j].filter);
	} else {
		x.by = xasprintf("%s (its own restrictions)", e->program);
	}
	dec_add(d, &x);
}

/* Every decision, in time order: rejects, holds, discards, then each recipient's last delivery status. */
static void decide(const struct why *w, struct why_decs *d)
{
	struct why_cands c;
	cands_build(w, &c);
	for (size_t i = 0; i < w->nev; i++)
		if (w->ev[i].kind == RP_EV_REJECT && w->ev[i].reject != RP_REJ_WARNING)
			dec_reject(w, &c, i, d);
	cands_free(&c);
	/* each recipient's last delivery line (found from the end), in time order */
	struct why_strs seen = { 0 };
	struct why_idx last = { 0 };
	for (size_t i = w->nev; i-- > 0;) {
		const struct why_ev *e = &w->ev[i];
		if (e->kind != RP_EV_DELIVERY || !e->recipient || e->how != WHY_QID ||
		    strs_has(&seen, e->recipient))
			continue;
		strs_add(&seen, e->recipient, strlen(e->recipient));
		idx_add(&last, i);
	}
	strs_free(&seen);
	for (size_t k = last.n; k-- > 0;) {
		const struct why_ev *e = &w->ev[last.v[k]];
		struct why_dec x = { 0 };
		x.verb = e->status == RP_ST_SENT ? "delivered" : e->status == RP_ST_BOUNCED ? "bounced"
			 : e->status == RP_ST_DEFERRED ? "deferred" : "delivery status";
		x.recipient = xstrdup(e->recipient);
		x.qid = dup0(e->qid);
		x.by = xstrdup(*e->service ? e->service : e->relay ? e->relay : e->program);
		struct sbuf b;
		sbuf_init(&b);
		if (e->relay)
			sbuf_printf(&b, "relay=%s", e->relay);
		if (e->dsn)
			sbuf_printf(&b, "%sdsn=%s", b.len ? ", " : "", e->dsn);
		if (e->delay_s >= 0)
			sbuf_printf(&b, "%sdelay=%g s", b.len ? ", " : "", e->delay_s);
		if (e->status != RP_ST_SENT && e->status_text)
			sbuf_printf(&b, "%s%s", b.len ? ": " : "", e->status_text);
		if (e->status == RP_ST_DEFERRED)
			sbuf_adds(&b, "; still queued at the end of the log");
		x.detail = b.len ? sbuf_steal(&b) : NULL;
		x.paren = 1;
		sbuf_free(&b);
		dec_add(d, &x);
	}
	free(last.v);
}

static void decs_free(struct why_decs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct why_dec *x = &d->v[i];
		free(x->stage), free(x->recipient), free(x->by), free(x->filter), free(x->rule);
		free(x->detail), free(x->reply), free(x->qid), free(x->text);
	}
	free(d->v);
}

/* ------------------------------------------------------------ output */

static void fmt_local(double t, char *buf, size_t size)
{
	if (t <= 0) {
		snprintf(buf, size, "%-19s", "-");
		return;
	}
	time_t s = (time_t)floor(t);
	struct tm tm;
	localtime_r(&s, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
	int ms = (int)lround((t - (double)s) * 1000);
	if (ms > 0 && ms < 1000)
		snprintf(buf + n, size - n, ".%03d", ms);
}

static void fmt_utc(double t, char *buf, size_t size)
{
	time_t s = (time_t)floor(t);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	int ms = (int)lround((t - (double)s) * 1000);
	snprintf(buf + n, size - n, ms > 0 && ms < 1000 ? ".%03dZ" : "Z", ms);
}

static const char *how_note(enum why_how h)
{
	return h == WHY_INSTANCE ? "  [joined by policy instance]"
	       : h == WHY_SESSION ? "  [same SMTP session, before the queue id]"
	       : h == WHY_REF ? "  [names this queue id]" : "";
}

static void print_text(const struct why *w, const struct why_decs *d, FILE *out)
{
	if (w->qid)
		fprintf(out, "%s: %zu event(s)\n", w->qid, w->nev);
	else
		fprintf(out, "NOQUEUE events for%s%s%s%s%s%s: %zu\n", w->sel_client ? " client " : "",
			w->sel_client ? w->sel_client : "", w->sel_sender ? " sender " : "",
			w->sel_sender ? w->sel_sender : "", w->sel_recipient ? " recipient " : "",
			w->sel_recipient ? w->sel_recipient : "", w->nev);
	for (size_t i = 0; i < w->nev; i++) {
		const struct why_ev *e = &w->ev[i];
		char t[64];
		fmt_local(e->time, t, sizeof t);
		fprintf(out, "  %s %s[%ld]: %s%s%s%s\n", t, e->program, e->pid, e->qid ? e->qid : "",
			e->qid ? ": " : "", e->msg, how_note(e->how));
	}
	fprintf(out, "decisions:\n");
	if (!d->n)
		fprintf(out, "  none logged%s\n", w->qid ? " (still in the queue, or its log is elsewhere)" : "");
	for (size_t i = 0; i < d->n; i++)
		fprintf(out, "  %s%s%s\n", !w->qid && d->v[i].qid && strcmp(d->v[i].qid, "NOQUEUE") ? d->v[i].qid : "",
			!w->qid && d->v[i].qid && strcmp(d->v[i].qid, "NOQUEUE") ? ": " : "", d->v[i].text);
}

static json_t *jstr(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* json_string() refuses bytes that are not UTF-8: those become '?' */
static json_t *jstr_any(const char *s)
{
	if (!s)
		return json_null();
	json_t *j = json_string(s);
	if (j)
		return j;
	char *c = xstrdup(s);
	for (char *p = c; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(c);
	free(c);
	return j;
}

static void jset(json_t *o, const char *k, json_t *v)
{
	if (!v || json_object_set_new(o, k, v) < 0)
		fatal("sluice why: out of memory");
}

static int print_json(const struct why *w, const struct why_decs *d, const struct why_strs *msgs,
		      FILE *out)
{
	json_t *root = json_object(), *evs = json_array(), *decs = json_array();
	if (!root || !evs || !decs)
		fatal("sluice why: out of memory");
	jset(root, "queue_id", jstr(w->qid));
	if (!w->qid) {
		json_t *sel = json_object();
		if (!sel)
			fatal("sluice why: out of memory");
		if (w->sel_client)
			jset(sel, "client", jstr_any(w->sel_client));
		if (w->sel_sender)
			jset(sel, "sender", jstr_any(w->sel_sender));
		if (w->sel_recipient)
			jset(sel, "recipient", jstr_any(w->sel_recipient));
		jset(root, "selector", sel);
	}
	for (size_t i = 0; i < w->nev; i++) {
		const struct why_ev *e = &w->ev[i];
		json_t *o = json_object();
		char t[64];
		if (!o)
			fatal("sluice why: out of memory");
		fmt_utc(e->time, t, sizeof t);
		jset(o, "time", e->time > 0 ? json_string(t) : json_null());
		jset(o, "epoch", json_real(e->time));
		jset(o, "host", jstr_any(e->host));
		jset(o, "program", jstr_any(e->program));
		jset(o, "pid", json_integer(e->pid));
		jset(o, "queue_id", jstr_any(e->qid));
		jset(o, "message", jstr_any(e->msg));
		jset(o, "kind", json_string(rp_kind_name(e->kind)));
		jset(o, "matched_by", json_string(why_how_name[e->how]));
		if (e->filter)
			jset(o, "filter", jstr_any(e->filter));
		if (e->action)
			jset(o, "action", jstr_any(e->action));
		if (e->result)
			jset(o, "result", jstr_any(e->result));
		if (json_array_append_new(evs, o) < 0)
			fatal("sluice why: out of memory");
	}
	for (size_t i = 0; i < d->n; i++) {
		const struct why_dec *x = &d->v[i];
		json_t *o = json_object();
		if (!o)
			fatal("sluice why: out of memory");
		jset(o, "decision", json_string(x->verb));
		jset(o, "queue_id", jstr_any(x->qid));
		jset(o, "stage", jstr_any(x->stage));
		jset(o, "recipient", jstr_any(x->recipient));
		jset(o, "by", jstr_any(x->by));
		jset(o, "filter", jstr_any(x->filter));
		jset(o, "rule", jstr_any(x->rule));
		jset(o, "detail", jstr_any(x->detail));
		jset(o, "reply", jstr_any(x->reply));
		jset(o, "text", jstr_any(x->text));
		if (json_array_append_new(decs, o) < 0)
			fatal("sluice why: out of memory");
	}
	jset(root, "events", evs);
	jset(root, "decisions", decs);
	if (msgs) {
		json_t *a = json_array();
		if (!a)
			fatal("sluice why: out of memory");
		for (size_t i = 0; i < msgs->n; i++)
			if (json_array_append_new(a, jstr_any(msgs->v[i])) < 0)
				fatal("sluice why: out of memory");
		jset(root, "messages", a);
	}
	int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', out);
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------ driver */

/* "-" (stdin) can't be read twice: copy it into an unlinked-on-exit temporary file. */
static char *spool_stdin(void)
{
	const char *dir = getenv("TMPDIR");
	char *path = xasprintf("%s/sluice-why.XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0) {
		fprintf(stderr, "sluice why: %s: %s\n", path, strerror(errno));
		free(path);
		return NULL;
	}
	char buf[65536];
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0)
		if (write(fd, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	close(fd);
	if (n < 0) {
		fprintf(stderr, "sluice why: copying stdin to %s: %s\n", path, strerror(errno));
		unlink(path);
		free(path);
		return NULL;
	}
	return path;
}

/* The configured log: maillog_file of conf_path (relative to its directory), or syslog's file. */
static char *default_log(const char *conf_path)
{
	const char *env = getenv("SLUICE_CONF");
	if (!conf_path)
		conf_path = env && *env ? env : access(WHY_DEFAULT_CONF, R_OK) == 0 ? WHY_DEFAULT_CONF : NULL;
	if (!conf_path)
		return xstrdup(WHY_SYSLOG_FILE);
	char *err = NULL;
	struct conf *c = conf_load(conf_path, params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice why: %s\n", err);
		free(err);
		return NULL;
	}
	const char *f = conf_str(c, "maillog_file");
	char *path = NULL;
	if (!f || !*f || !strcmp(f, "/dev/stderr")) {
		path = xstrdup(WHY_SYSLOG_FILE);
		if (access(path, R_OK) != 0)
			fprintf(stderr, "sluice why: %s sets no maillog_file (the log goes to syslog) and %s "
				"can't be read: name the log file(s)\n", conf_path, path);
	} else {
		char *base = conf_base_dir(c, &err);
		if (!base) {
			fprintf(stderr, "sluice why: %s\n", err);
			free(err);
		} else {
			path = conf_abs_path(base, f);
			free(base);
		}
	}
	conf_free(&c);
	return path;
}

static int valid_qid(const char *s)
{
	size_t n = strlen(s);
	if (n < 5 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]))
			return 0;
	return 1;
}

/*
 * Sort keys: each line at its own place, but a NOQUEUE verdict joined to
 * the message (by instance or session) that is not later than the line
 * that made the queue id (client=, else "policy instance=") goes just
 * before that line: it was asked before the queue id existed, and the
 * logs' whole seconds can't tell. In selector mode, drop the NOQUEUE
 * verdicts whose instance sluiced mapped to a queue id (that message is
 * listed instead).
 */
static void place(struct why *w)
{
	const struct why_ev *anchor = NULL;
	for (size_t i = 0; i < w->nev; i++) {
		const struct why_ev *e = &w->ev[i];
		if (e->how == WHY_QID && e->kind == RP_EV_CLIENT)
			anchor = e;
		else if (e->how == WHY_QID && !anchor && !strncmp(e->msg, "policy instance=", 16))
			anchor = e;
	}
	size_t n = 0;
	for (size_t i = 0; i < w->nev; i++) {
		struct why_ev *e = &w->ev[i];
		const char *inst = ev_kv(e, "instance");
		if (e->how == WHY_SELECTOR && inst && strs_has(&w->inst_mapped, inst)) {
			ev_free(e);
			continue;
		}
		e->k_time = e->time;
		e->k_file = e->file;
		e->k_line = e->lineno;
		e->k_before = 0;
		if (anchor && (e->how == WHY_INSTANCE || e->how == WHY_SESSION) && streq0(e->qid, "NOQUEUE") &&
		    e->time <= anchor->time) {
			e->k_time = anchor->time;
			e->k_file = anchor->file;
			e->k_line = anchor->lineno;
			e->k_before = 1;
		}
		w->ev[n++] = *e;
	}
	w->nev = n;
}

/* The whole command on parsed options; the output to out. Returns the exit status. */
static int why_run(struct why *w, FILE *out)
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	w->p = rp_parser_new(tm.tm_year + 1900, tm.tm_mon);
	int rc = 0;
	struct why_strs msgs = { 0 };
	struct why_decs d = { 0 };
	if (w->qid) {
		if (why_pass(w, line_qid) < 0 ||
		    ((w->inst.n || w->have_session) && why_pass(w, line_join) < 0))
			rc = 2;
	} else if (why_pass(w, line_sel) < 0) {
		rc = 2;
	}
	if (rc == 0) {
		place(w);
		if (w->nev)
			qsort(w->ev, w->nev, sizeof *w->ev, ev_cmp);
		decide(w, &d);
		if (!w->qid) {
			/* the queue ids every given selector matched */
			int first = 1;
			for (int s = 0; s < 3; s++) {
				const char *sel = s == 0 ? w->sel_client : s == 1 ? w->sel_sender : w->sel_recipient;
				if (!sel)
					continue;
				if (first) {
					for (size_t i = 0; i < w->sel_qids[s].n; i++)
						strs_add(&msgs, w->sel_qids[s].v[i], strlen(w->sel_qids[s].v[i]));
					first = 0;
					continue;
				}
				struct why_strs both = { 0 };
				for (size_t i = 0; i < msgs.n; i++)
					if (strs_has(&w->sel_qids[s], msgs.v[i]))
						strs_add(&both, msgs.v[i], strlen(msgs.v[i]));
				strs_free(&msgs);
				msgs = both;
			}
		}
		int found = w->nev || msgs.n;
		if (w->json) {
			/* a document even when nothing was found (the exit status says so) */
			if (print_json(w, &d, w->qid ? NULL : &msgs, out) < 0)
				rc = 2;
		} else if (found) {
			print_text(w, &d, out);
			if (!w->qid && msgs.n) {
				fprintf(out, "messages with a queue id (sluice why QUEUE-ID tells their story):\n");
				for (size_t i = 0; i < msgs.n; i++)
					fprintf(out, "  %s\n", msgs.v[i]);
			}
		}
		if (rc == 0 && !found) {
			fprintf(stderr, "sluice why: nothing found for %s in the log(s)\n",
				w->qid ? w->qid : "the selector");
			rc = 1;
		}
	}
	decs_free(&d);
	strs_free(&msgs);
	rp_parser_free(&w->p);
	return rc;
}

static void why_free(struct why *w)
{
	for (size_t i = 0; i < w->nev; i++)
		ev_free(&w->ev[i]);
	free(w->ev);
	strs_free(&w->inst);
	strs_free(&w->inst_mapped);
	for (int s = 0; s < 3; s++)
		strs_free(&w->sel_qids[s]);
	for (size_t i = 0; i < w->nconn; i++) {
		free(w->conn[i].host);
		free(w->conn[i].ip);
	}
	free(w->s_host);
	free(w->s_ip);
	free(w->s_sender);
}

static int why_usage(void)
{
	fputs(WHY_USAGE, stderr);
	return 2;
}

int why_main(int argc, char **argv)
{
	struct why w = { 0 };
	const char *conf_path = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *a = argv[i];
		const char **opt = !strcmp(a, "-c") ? &conf_path : !strcmp(a, "--client") ? &w.sel_client
				 : !strcmp(a, "--sender") ? &w.sel_sender
				 : !strcmp(a, "--recipient") ? &w.sel_recipient : NULL;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "--json")) {
			w.json = 1;
			continue;
		}
		if (!opt || i + 1 >= argc)
			return why_usage();
		*opt = argv[++i];
	}
	if (!w.sel_client && !w.sel_sender && !w.sel_recipient) {
		if (i >= argc)
			return why_usage();
		w.qid = argv[i++];
		if (!strcmp(w.qid, "NOQUEUE")) {
			fputs("sluice why: a message refused before it had a queue id (NOQUEUE) is found by\n"
			      "  --client IP, --sender ADDR and/or --recipient ADDR\n", stderr);
			return 2;
		}
		if (!valid_qid(w.qid)) {
			fprintf(stderr, "sluice why: \"%s\" is not a queue id\n", w.qid);
			return 2;
		}
	}
	int nfiles = argc - i;
	char *deflt = NULL;
	char **files = xcalloc((size_t)(nfiles > 0 ? nfiles : 1), sizeof *files);
	char **spooled = xcalloc((size_t)(nfiles > 0 ? nfiles : 1), sizeof *spooled);
	int rc = 0;
	if (nfiles == 0) {
		if (!(deflt = default_log(conf_path)))
			rc = 2;
		files[0] = deflt;
		nfiles = 1;
	} else {
		for (int k = 0; k < nfiles && rc == 0; k++) {
			files[k] = argv[i + k];
			if (!strcmp(files[k], "-") && w.qid) {
				if (!(spooled[k] = spool_stdin()))
					rc = 2;
				files[k] = spooled[k];
			}
		}
	}
	if (rc == 0) {
		w.files = files;
		w.nfiles = nfiles;
		rc = why_run(&w, stdout);
	}
	for (int k = 0; k < nfiles; k++)
		if (spooled[k]) {
			unlink(spooled[k]);
			free(spooled[k]);
		}
	free(spooled);
	free(files);
	free(deflt);
	why_free(&w);
	return rc;
}
