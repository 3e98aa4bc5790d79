/*
 * report_stats: see report_stats.h.
 * The grand totals follow pflogsumm 1.1.5's rules line for line where it
 * has one (received = smtpd "client=" + pickup lines; delivered / bounced =
 * "to=" lines; deferred = distinct queue ids with a deferral; rejected =
 * reject lines; senders counted once per received message at its first
 * "from=<>, size=" line), so the test can compare the two on one log.
 * Differences are deliberate and listed in docs/REPORT.md.
 */
#include "lib/reason.h"
#include "tools/report_stats.h"
#include "tools/report_map.h"
#include "lib/util.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "dsn\ttext" with the text cut at 120 bytes (as pflogsumm trims), so that
   per-message details past that point do not make every key distinct */
static void bump_dsn(struct rmap *m, const char *dsn, const char *text)
{
	char key[192];
	snprintf(key, sizeof key, "%.16s\t%.120s", dsn ? dsn : "", text ? text : "");
	rmap_bump(m, key, 0, 1);
}

/* ---- delay distribution: exact up to RS_EXACT values, then log buckets ---- */

#define RS_EXACT 1024
#define RS_NB 2400
#define RS_B0 0.001
#define RS_RATIO 1.01

struct rs_delays {
	long long n;
	double max, sum;
	double exact[RS_EXACT];
	uint32_t b[RS_NB];
};

static int delay_bucket(double v)
{
	if (!(v > RS_B0))	/* (NaN too) */
		return 0;
	double x = log(v / RS_B0) / log(RS_RATIO);
	if (!(x < RS_NB))	/* "delay=1e999" is inf: no int holds it */
		return RS_NB - 1;
	int i = 1 + (int)x;
	return i >= RS_NB ? RS_NB - 1 : i;
}

static void delays_add(struct rs_delays *d, double v)
{
	if (d->n < RS_EXACT)
		d->exact[d->n] = v;
	d->n++;
	d->sum += v;
	if (v > d->max)
		d->max = v;
	d->b[delay_bucket(v)]++;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* nearest-rank percentile, p in (0,1] */
static double delays_pct(struct rs_delays *d, double p)
{
	if (!d->n)
		return 0;
	long long k = (long long)ceil(p * (double)d->n);
	if (k < 1)
		k = 1;
	if (d->n <= RS_EXACT) {
		qsort(d->exact, (size_t)d->n, sizeof d->exact[0], cmp_double);
		return d->exact[k - 1];
	}
	long long acc = 0;
	for (int i = 0; i < RS_NB; i++) {
		acc += d->b[i];
		if (acc >= k) {
			if (i == 0)
				return RS_B0;
			double v = RS_B0 * pow(RS_RATIO, i - 0.5);
			return v > d->max ? d->max : v;
		}
	}
	return d->max;
}

/* ---- per message ---- */

/*
 * A message's state lives in its entry of msgs (no allocation of its own),
 * in the entry's first cache line: u the MF_* bits, c[MC_SIZE] its size,
 * c[MC_LAST] the log time of its last line (a double's bytes), and ptr
 * pflogsumm's gimme_domain of its client (malloc'd).
 */
enum { MC_SIZE, MC_LAST };
enum { MF_RECEIVED = 1, MF_SIZE_KNOWN = 2, MF_DEFERRED = 4 };

static double msg_last(const struct rmap_ent *e)
{
	double t;
	memcpy(&t, &e->c[MC_LAST], sizeof t);
	return t;
}

/* ---- the report ---- */

/* a recipient domain's numbers beyond its entry's two counters */
struct rs_dom {
	long long deferrals;
	long long delay_sum_us;	/* in whole microseconds: a sum that does not depend on
				   the order of its terms (parts added up, rs_merge) */
	double delay_max;
};

/* a + b for sums >= 0, stuck at LLONG_MAX (hostile logs: "delay=1e999" on every line) */
static long long sat_add(long long a, long long b)
{
	return a > LLONG_MAX - b ? LLONG_MAX : a + b;
}

/* sum + seconds (>= 0, perhaps inf) in whole microseconds */
static long long add_us(long long sum, double seconds)
{
	return sat_add(sum, seconds < 9e12 ? llround(seconds * 1e6) : LLONG_MAX);
}

static struct rs_dom *dom_of(struct rmap_ent *e)
{
	if (!e->ptr)
		e->ptr = xcalloc(1, sizeof(struct rs_dom));
	return e->ptr;
}

enum { T_RECEIVED, T_DELIVERED, T_FORWARDED, T_DEFERRED, T_DEFERRALS, T_BOUNCED, T_REJECTED,
       T_WARNINGS, T_HELD, T_DISCARDED, T_BYTES_RCVD, T_BYTES_DLVD, T_CONNECTIONS, T_N };
static const char *const total_names[T_N] = {
	"received", "delivered", "forwarded", "deferred", "deferrals", "bounced", "rejected",
	"reject_warnings", "held", "discarded", "bytes_received", "bytes_delivered", "connections"
};

/* per hour / day columns */
enum { P_RECEIVED, P_DELIVERED, P_DEFERRED, P_BOUNCED, P_REJECTED, P_N };
static const char *const period_names[P_N] = { "received", "delivered", "deferred", "bounced",
						"rejected" };

struct report_stats {
	struct rs_opts o;
	long long t[T_N];
	long long lines, unreadable, out_of_range, cut, events_since_sweep;
	double first, last, now;
	long long hour[24][P_N];
	long long p_minute;		/* period(): cache of the current minute's hour and day */
	int p_hour;
	const char *p_day;		/* a key of days (stable: keys are never freed) */
	struct rmap_ent *p_ent;		/* its entry, valid while days.cap == p_cap */
	size_t p_cap;
	struct rmap days;		/* "YYYY-MM-DD" -> ptr: long long[P_N] */
	struct rmap msgs;		/* qid -> the message's state (MC_*, MD_*) */
	struct rmap senders;		/* c0 messages, c1 bytes */
	struct rmap sender_doms;
	struct rmap rcpts;		/* c0 delivered, c1 bytes */
	struct rmap rcpt_doms;	/* c0 delivered, c1 bytes, ptr: struct rs_dom */
	struct rmap clients;		/* c0 messages, c1 connections */
	struct rmap rej_stage, rej_reason, rej_code;
	struct rmap filter_res;	/* "filter\tresult" */
	struct rmap filter_act;	/* "filter\taction" */
	struct rmap dmarc_dom;	/* "domain\tresult" */
	struct rmap dmarc_disp;	/* "domain\tdisposition" */
	struct rmap spam_hist;	/* "%d" floor(score) */
	struct rmap milter_act;	/* "milter\taction" (the MTA's) */
	struct rmap delays;		/* transport -> rs_delays */
	struct rmap bounces;		/* "dsn\ttext" */
	struct rmap deferrals;	/* "dsn\ttext" */
	/* a later part of a log (rs_add_part) */
	struct rmap pending;		/* queue ids whose lines go to the parts before */
	struct rmap born;		/* queue ids that arrived in the part (rs_part_fits) */
};

struct report_stats *rs_new(const struct rs_opts *o)
{
	struct report_stats *st = xcalloc(1, sizeof *st);
	if (o)
		st->o = *o;
	if (!st->o.top_n)
		st->o.top_n = 20;
	return st;
}


void rs_free(struct report_stats **pst)
{
	if (!pst || !*pst)
		return;
	struct report_stats *st = *pst;
	struct rmap *plain[] = { &st->senders, &st->sender_doms, &st->rcpts, &st->clients, &st->rej_stage, &st->rej_reason,
				   &st->rej_code, &st->filter_res, &st->filter_act, &st->dmarc_dom,
				   &st->dmarc_disp, &st->spam_hist, &st->milter_act, &st->bounces,
				   &st->deferrals };
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
		rmap_free(plain[i], NULL);
	rmap_free(&st->msgs, free);
	rmap_free(&st->days, free);
	rmap_free(&st->rcpt_doms, free);
	rmap_free(&st->delays, free);
	rmap_free(&st->pending, NULL);
	rmap_free(&st->born, NULL);
	free(st);
	*pst = NULL;
}

void rs_note_cut_lines(struct report_stats *st, long long n)
{
	st->cut += n;
}

size_t rs_pending(const struct report_stats *st)
{
	return st->msgs.n;
}

/*
 * pflogsumm's gimme_domain(): "unknown[ip]" -> ip; otherwise its
 * s/^(.*)\.([^.]+)\.([^.]{3}|[^.]{2,3}\.[^.]{2})$/\L$2.$3/:
 * "mx.mail.example.com" -> "example.com", "a.b.example.co.uk" -> "example.co.uk",
 * anything else unchanged.
 */
static char *client_domain(const char *name, const char *ip)
{
	if (!name || !*name || !strcmp(name, "unknown"))
		return xstrdup(ip ? ip : "");
	size_t n = strlen(name);
	const char *dot[3] = { 0 };	/* last, second last, third last '.' */
	int nd = 0;
	for (const char *c = name + n; c > name && nd < 3;)
		if (*--c == '.')
			dot[nd++] = c;
	const char *start = NULL;
	if (nd >= 2 && name + n - dot[0] - 1 == 3 && dot[0] - dot[1] > 1)
		start = dot[1] + 1;	/* P.L2.TLD3 */
	else if (nd >= 3 && name + n - dot[0] - 1 == 2 && (dot[0] - dot[1] - 1 == 2 || dot[0] - dot[1] - 1 == 3) &&
		 dot[1] - dot[2] > 1)
		start = dot[2] + 1;	/* P.L2.SLD.CC */
	char *d = xstrdup(start ? start : name);
	if (start)
		for (char *c = d; *c; c++)
			*c = (char)tolower((unsigned char)*c);
	return d;
}

/*
 * pflogsumm: the domain part lower-cased ("User@Example.COM" -> "User@example.com"),
 * in buf (n bytes; longer addresses are cut).
 */
static char *norm_addr(const char *a, char *buf, size_t n)
{
	size_t l = strnlen(a, n - 1);
	memcpy(buf, a, l);
	buf[l] = 0;
	char *at = memchr(buf, '@', l);
	if (at)	/* the C locale's tolower (no setlocale here): ASCII only */
		for (char *c = at, *e = buf + l; c < e; c++)
			*c = (char)((unsigned)(unsigned char)*c - 'A' < 26u ? *c + 32 : *c);
	return buf;
}

/* is t (a line's time) outside --since/--until? */
static int outside_range(const struct report_stats *st, double t)
{
	return (st->o.since && t < st->o.since) || (st->o.until && t >= st->o.until);
}

static struct rmap_ent *msg_get(struct report_stats *st, const char *qid, uint64_t h)
{
	struct rmap_ent *e = rmap_getnh(&st->msgs, qid, strlen(qid), h, 1);
	memcpy(&e->c[MC_LAST], &st->now, sizeof st->now);
	return e;
}

/* forget messages whose last line is RS_EXPIRE_S behind the log's clock */
static void sweep(struct report_stats *st)
{
	struct rmap old = st->msgs, keep = { 0 };
	for (size_t i = 0; i < old.cap; i++) {
		struct rmap_ent *e = &old.v[i];
		if (!old.hv[i])
			continue;
		if (st->now - msg_last(e) > RS_EXPIRE_S) {
			free(e->key);
			free(e->ptr);
			continue;
		}
		struct rmap_ent *k = rmap_getn(&keep, e->key, e->len, 1);
		k->ptr = e->ptr;
		k->u = e->u;
		memcpy(k->c, e->c, sizeof k->c);
		free(e->key);
	}
	free(old.v);
	free(old.hv);
	st->msgs = keep;
}

static void period(struct report_stats *st, int col)
{
	if (!st->now)
		return;
	long long minute = (long long)st->now / 60;
	if (minute != st->p_minute || !st->p_day) {
		/* local hour and day, worked out once a minute of log time */
		time_t t = (time_t)st->now;
		struct tm tm;
		localtime_r(&t, &tm);
		char day[16];
		strftime(day, sizeof day, "%Y-%m-%d", &tm);
		st->p_ent = rmap_get(&st->days, day, 1);
		st->p_cap = st->days.cap;
		st->p_day = st->p_ent->key;
		st->p_hour = tm.tm_hour;
		st->p_minute = minute;
	}
	st->hour[st->p_hour][col]++;
	if (!st->p_ent || st->p_cap != st->days.cap) {	/* entries move when the map grows */
		st->p_ent = rmap_get(&st->days, st->p_day, 1);
		st->p_cap = st->days.cap;
	}
	if (!st->p_ent->ptr)
		st->p_ent->ptr = xcalloc(P_N, sizeof(long long));
	((long long *)st->p_ent->ptr)[col]++;
}

const char *rs_reason_code(const char *stage, const char *dsn, const char *text)
{
	return reason_code(stage, dsn, text);	/* one table with sluiced's metrics */
}

/* reject text for the by-reason table: without a leading "<addr>: ", at most 100 bytes */
static void reason_key(const char *r, char *out, size_t outsz)
{
	if (!r)
		r = "";
	if (r[0] == '<') {
		const char *e = strstr(r, ">: ");
		if (e)
			r = e + 3;
	}
	snprintf(out, outsz, "%.100s", r);
}

static void on_reject(struct report_stats *st, const struct rp_event *ev)
{
	switch (ev->reject) {
	case RP_REJ_WARNING:
		st->t[T_WARNINGS]++;
		return;
	case RP_REJ_HOLD:
		st->t[T_HELD]++;
		return;
	case RP_REJ_DISCARD:
		st->t[T_DISCARDED]++;
		return;
	case RP_REJ_REJECT:
	case RP_REJ_MILTER:
		break;
	}
	st->t[T_REJECTED]++;
	period(st, P_REJECTED);
	rmap_bump(&st->rej_stage, ev->stage ? ev->stage : "unknown", 0, 1);
	char key[128];
	reason_key(ev->reason, key, sizeof key);
	rmap_bump(&st->rej_reason, key, 0, 1);
	const char *code = rs_reason_code(ev->stage, ev->dsn, ev->reason);
	if (!strcmp(code, "other") && ev->reject == RP_REJ_MILTER)
		code = "milter";
	rmap_bump(&st->rej_code, code, 0, 1);
}

static const char *transport_of(const struct rp_event *ev, char *buf, size_t bufsz)
{
	if (ev->service && *ev->service)
		return ev->service;
	const char *r = ev->relay ? ev->relay : "none";
	if (strchr(r, '['))
		return "smtp";
	size_t n = strcspn(r, "[:, ");	/* virtual, local, none, ... */
	if (n >= bufsz)
		n = bufsz - 1;
	memcpy(buf, r, n);
	buf[n] = 0;
	return buf;
}

static void on_delivery(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k)
{
	struct rmap_ent *m = msg_get(st, ev->qid, k->qid_h);
	const char *addr = k->key[0], *dom = k->key[1];
	double delay = ev->delay_s > 0 ? ev->delay_s : 0;
	char tbuf[64];
	if (ev->status == RP_ST_SENT) {
		if (ev->status_text && strstr(ev->status_text, "forwarded as ")) {
			st->t[T_FORWARDED]++;
			return;
		}
		st->t[T_DELIVERED]++;
		period(st, P_DELIVERED);
		long long sz = m->u & MF_SIZE_KNOWN ? m->c[MC_SIZE] : 0;
		struct rmap_ent *d = rmap_bumpnh(&st->rcpt_doms, dom, k->len[1], k->h[1], 0, 1);
		d->c[1] += sz;
		struct rs_dom *dd = dom_of(d);
		dd->delay_sum_us = add_us(dd->delay_sum_us, delay);
		if (delay > dd->delay_max)
			dd->delay_max = delay;
		rmap_bumpnh(&st->rcpts, addr, k->len[0], k->h[0], 0, 1)->c[1] += sz;
		st->t[T_BYTES_DLVD] += sz;
		const char *tr = transport_of(ev, tbuf, sizeof tbuf);
		struct rmap_ent *e = rmap_get(&st->delays, tr, 1);
		if (!e->ptr)
			e->ptr = xcalloc(1, sizeof(struct rs_delays));
		if (ev->delay_s >= 0)
			delays_add(e->ptr, ev->delay_s);
	} else if (ev->status == RP_ST_DEFERRED) {
		st->t[T_DEFERRALS]++;
		period(st, P_DEFERRED);
		if (!(m->u & MF_DEFERRED))
			st->t[T_DEFERRED]++;
		m->u |= MF_DEFERRED;
		struct rs_dom *dd = dom_of(rmap_getnh(&st->rcpt_doms, dom, k->len[1], k->h[1], 1));
		dd->deferrals++;
		if (delay > dd->delay_max)
			dd->delay_max = delay;
		bump_dsn(&st->deferrals, ev->dsn, ev->status_text);
	} else if (ev->status == RP_ST_BOUNCED) {
		st->t[T_BOUNCED]++;
		period(st, P_BOUNCED);
		bump_dsn(&st->bounces, ev->dsn, ev->status_text);
	}
}

static void on_from(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k)
{
	struct rmap_ent *m = msg_get(st, ev->qid, k->qid_h);
	if (m->u & MF_SIZE_KNOWN)
		return;		/* a later queue run's line */
	m->u |= MF_SIZE_KNOWN;
	long long size = m->c[MC_SIZE] = ev->size_bytes > 0 ? ev->size_bytes : 0;
	if (!(m->u & MF_RECEIVED))
		return;
	m->u &= ~MF_RECEIVED;
	const char *client_dom = m->ptr;
	if (k->key[1])		/* the address's domain */
		rmap_bumpnh(&st->sender_doms, k->key[1], k->len[1], k->h[1], 0, 1)->c[1] += size;
	else			/* none: the client's (pflogsumm) */
		rmap_bump(&st->sender_doms, client_dom ? client_dom : k->key[0], 0, 1)->c[1] += size;
	rmap_bumpnh(&st->senders, k->key[0], k->len[0], k->h[0], 0, 1)->c[1] += size;
	st->t[T_BYTES_RCVD] += size;
}

static void on_filter(struct report_stats *st, const struct rp_event *ev)
{
	if (ev->mta_milter) {
		rmap_bump2(&st->milter_act, ev->filter, ev->action ? ev->action : "?", 1);
		return;
	}
	if (ev->result)
		rmap_bump2(&st->filter_res, ev->filter, ev->result, 1);
	if (ev->action)
		rmap_bump2(&st->filter_act, ev->filter, ev->action, 1);
	if (!strcmp(ev->filter, "dmarc") && ev->domain && ev->result) {
		rmap_bump2(&st->dmarc_dom, ev->domain, ev->result, 1);
		if (ev->disposition)
			rmap_bump2(&st->dmarc_disp, ev->domain, ev->disposition, 1);
	}
	if (ev->has_score) {
		double s = ev->score < -10 ? -10 : ev->score > 50 ? 50 : ev->score;
		if (s != s) {	/* "score=nan": no bucket the histogram shows */
			rmap_bump(&st->spam_hist, "nan", 0, 1);
			return;
		}
		int v = (int)floor(s);	/* -10 .. 50, as "%d" */
		char key[4], *k = key;
		if (v < 0)
			*k++ = '-', v = -v;
		if (v >= 10)
			*k++ = (char)('0' + v / 10);
		*k++ = (char)('0' + v % 10);
		rmap_bumpn(&st->spam_hist, key, (size_t)(k - key), 0, 1);
	}
}

/* "name[ip]" in buf (cut to fit) */
static const char *client_key(const struct rp_event *ev, char *buf, size_t n)
{
	const char *name = ev->client_name ? ev->client_name : "", *ip = ev->client_ip ? ev->client_ip : "";
	size_t a = strlen(name), b = strlen(ip);
	if (a + b + 3 > n) {
		snprintf(buf, n, "%s[%s]", name, ip);
		return buf;
	}
	memcpy(buf, name, a);
	buf[a] = '[';
	memcpy(buf + a + 1, ip, b);
	buf[a + 1 + b] = ']';
	buf[a + 2 + b] = 0;
	return buf;
}

static int service_is(const struct rp_event *ev, const char *a, const char *b)
{
	const char *s = ev->service;	/* (the first byte decides most) */
	return (s[0] == a[0] && !strcmp(s, a)) || (b && s[0] == b[0] && !strcmp(s, b));
}

size_t rs_keys_make(const struct rp_event *ev, struct rs_keys *k, char *buf)
{
	memset(k, 0, sizeof *k);
	if (ev->qid)
		k->qid_h = rmap_hash(ev->qid, strlen(ev->qid));
	const char *key;
	switch (ev->kind) {
	case RP_EV_CONNECT:
	case RP_EV_CLIENT:
		key = client_key(ev, buf, 300);
		break;
	case RP_EV_FROM:
		key = ev->sender && *ev->sender ? norm_addr(ev->sender, buf, 512) : strcpy(buf, "from=<>");
		break;
	case RP_EV_DELIVERY:
		key = norm_addr(ev->recipient ? ev->recipient : "", buf, 512);
		break;
	default:
		return 0;
	}
	size_t n = strlen(key);
	k->key[0] = key;
	k->len[0] = (uint32_t)n;
	k->h[0] = rmap_hash(key, n);
	if (ev->kind == RP_EV_FROM || ev->kind == RP_EV_DELIVERY) {
		const char *at = memchr(key, '@', n);
		const char *dom = at ? at + 1 : ev->kind == RP_EV_DELIVERY ? key : NULL;
		if (dom) {
			k->key[1] = dom;
			k->len[1] = (uint32_t)(n - (size_t)(dom - key));
			k->h[1] = rmap_hash(dom, k->len[1]);
		}
	}
	return n + 1;
}

void rs_add(struct report_stats *st, const struct rp_event *ev)
{
	char buf[RS_KEYS_BYTES];
	struct rs_keys k;
	rs_keys_make(ev, &k, buf);
	rs_add_keys(st, ev, &k);
}

void rs_add_keys(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k)
{
	st->lines++;
	if (ev->kind == RP_EV_NONE) {
		st->unreadable++;
		return;
	}
	if (ev->time) {
		if (outside_range(st, ev->time)) {
			st->out_of_range++;
			return;
		}
		st->now = ev->time;
		if (!st->first || ev->time < st->first)
			st->first = ev->time;
		if (ev->time > st->last)
			st->last = ev->time;
	}
	/* pflogsumm reads from=/to= lines of every service but smtpd/postscreen */
	int smtpd = service_is(ev, "smtpd", "postscreen");
	switch (ev->kind) {
	case RP_EV_CONNECT: {
		st->t[T_CONNECTIONS]++;
		rmap_bumpnh(&st->clients, k->key[0], k->len[0], k->h[0], 1, 1);
		break;
	}
	case RP_EV_CLIENT:
		if (*ev->service && !smtpd)
			break;
		st->t[T_RECEIVED]++;
		period(st, P_RECEIVED);
		{
			struct rmap_ent *m = msg_get(st, ev->qid, k->qid_h);
			m->u |= MF_RECEIVED;
			free(m->ptr);
			m->ptr = client_domain(ev->client_name, ev->client_ip);
			rmap_bumpnh(&st->clients, k->key[0], k->len[0], k->h[0], 0, 1);
		}
		break;
	case RP_EV_PICKUP:
		if (*ev->service && !service_is(ev, "pickup", NULL))
			break;
		st->t[T_RECEIVED]++;
		period(st, P_RECEIVED);
		{
			struct rmap_ent *m = msg_get(st, ev->qid, k->qid_h);
			m->u |= MF_RECEIVED;
			free(m->ptr);
			m->ptr = xstrdup("pickup");
		}
		break;
	case RP_EV_FROM:
		if (!smtpd)
			on_from(st, ev, k);
		break;
	case RP_EV_DELIVERY:
		if (!smtpd)
			on_delivery(st, ev, k);
		break;
	case RP_EV_REMOVED: {
		struct rmap_ent *e = rmap_getnh(&st->msgs, ev->qid, strlen(ev->qid), k->qid_h, 0);
		if (e)
			rmap_del(&st->msgs, e, free);
		break;
	}
	case RP_EV_REJECT:
		on_reject(st, ev);
		break;
	case RP_EV_FILTER:
		on_filter(st, ev);
		break;
	default:
		break;
	}
	if (++st->events_since_sweep >= 65536) {
		st->events_since_sweep = 0;
		sweep(st);
	}
}

/* ---- parts ---- */

const struct rs_opts *rs_options(const struct report_stats *st)
{
	return &st->o;
}

static int rs_part_pending(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k);

int rs_add_part(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k, double *now_out)
{
	if (ev->kind != RP_EV_NONE && !ev->time && !st->now) {
		*now_out = 0;	/* the time of the line before, in a part before */
		return 1;
	}
	if (rs_part_pending(st, ev, k)) {
		/* the part's clock goes on as one pass's would: a line passed back
		   may be the last with a time before a line without one */
		if (ev->time && !outside_range(st, ev->time))
			st->now = ev->time;
		*now_out = st->now;
		return 1;
	}
	rs_add_keys(st, ev, k);
	return 0;
}

void rs_add_now(struct report_stats *st, const struct rp_event *ev, double now)
{
	if (!ev->time && now)
		st->now = now;
	rs_add(st, ev);
}

/* must ev wait for the parts before? (see rs_add_part) */
static int rs_part_pending(struct report_stats *st, const struct rp_event *ev, const struct rs_keys *k)
{
	/* only the lines that read or write a message's state need an order
	   among its lines (the others count into tables of their own) */
	switch (ev->qid ? ev->kind : RP_EV_NONE) {
	case RP_EV_CLIENT:
	case RP_EV_PICKUP: {
		size_t ql = strlen(ev->qid);
		if (st->pending.n && rmap_getnh(&st->pending, ev->qid, ql, k->qid_h, 0))
			return 1;	/* after its message's other pending lines */
		/* a message arrives: counted here, as new (rs_part_fits checks) */
		if (!rmap_getnh(&st->msgs, ev->qid, ql, k->qid_h, 0))
			rmap_getnh(&st->born, ev->qid, ql, k->qid_h, 1);
		break;
	}
	case RP_EV_FROM:
	case RP_EV_DELIVERY:
	case RP_EV_REMOVED: {
		/* a message this part saw arrive is never pending */
		size_t ql = strlen(ev->qid);
		if (rmap_getnh(&st->msgs, ev->qid, ql, k->qid_h, 0))
			break;
		/* one it has not seen arrive: its state is in a part before (or
		   nowhere: rs_add then makes it as the one pass does) */
		rmap_getnh(&st->pending, ev->qid, ql, k->qid_h, 1);
		return 1;
	}
	default:
		break;
	}
	return 0;
}

int rs_part_fits(const struct report_stats *st, const struct report_stats *part)
{
	for (size_t i = 0; i < part->born.cap; i++)
		if (part->born.hv[i] && rmap_getnh((struct rmap *)&st->msgs, part->born.v[i].key,
						   part->born.v[i].len, part->born.hv[i], 0))
			return 0;	/* its queue id was still in use: one pass goes on with that state */
	return 1;
}

/* into's counters += from's, for every key of from */
static void merge_counts(struct rmap *into, const struct rmap *from)
{
	for (size_t i = 0; i < from->cap; i++) {
		if (!from->hv[i])
			continue;
		const struct rmap_ent *f = &from->v[i];
		struct rmap_ent *e = rmap_getnh(into, f->key, f->len, from->hv[i], 1);
		for (int c = 0; c < RMAP_NC; c++)
			e->c[c] += f->c[c];
	}
}

void rs_merge(struct report_stats *st, struct report_stats **fromp)
{
	struct report_stats *from = *fromp;
	for (int i = 0; i < T_N; i++)
		st->t[i] += from->t[i];
	st->lines += from->lines;
	st->unreadable += from->unreadable;
	st->out_of_range += from->out_of_range;
	st->cut += from->cut;
	if (from->first && (!st->first || from->first < st->first))
		st->first = from->first;
	if (from->last > st->last)
		st->last = from->last;
	if (from->now)
		st->now = from->now;	/* the later part's clock goes on */
	for (int h = 0; h < 24; h++)
		for (int c = 0; c < P_N; c++)
			st->hour[h][c] += from->hour[h][c];
	for (size_t i = 0; i < from->days.cap; i++) {
		if (!from->days.hv[i] || !from->days.v[i].ptr)
			continue;
		const struct rmap_ent *f = &from->days.v[i];
		struct rmap_ent *e = rmap_getnh(&st->days, f->key, f->len, from->days.hv[i], 1);
		if (!e->ptr)
			e->ptr = xcalloc(P_N, sizeof(long long));
		for (int c = 0; c < P_N; c++)
			((long long *)e->ptr)[c] += ((const long long *)f->ptr)[c];
	}
	st->p_ent = NULL;	/* (days may have grown) */
	/* the messages the later part saw arrive: their state is the newest */
	for (size_t i = 0; i < from->msgs.cap; i++) {
		if (!from->msgs.hv[i])
			continue;
		struct rmap_ent *f = &from->msgs.v[i];
		struct rmap_ent *e = rmap_getnh(&st->msgs, f->key, f->len, from->msgs.hv[i], 1);
		free(e->ptr);
		e->ptr = f->ptr;
		f->ptr = NULL;
		e->u = f->u;
		memcpy(e->c, f->c, sizeof e->c);
	}
	struct rmap *plain[][2] = { { &st->senders, &from->senders }, { &st->sender_doms, &from->sender_doms },
				    { &st->rcpts, &from->rcpts }, { &st->clients, &from->clients },
				    { &st->rej_stage, &from->rej_stage }, { &st->rej_reason, &from->rej_reason },
				    { &st->rej_code, &from->rej_code }, { &st->filter_res, &from->filter_res },
				    { &st->filter_act, &from->filter_act }, { &st->dmarc_dom, &from->dmarc_dom },
				    { &st->dmarc_disp, &from->dmarc_disp }, { &st->spam_hist, &from->spam_hist },
				    { &st->milter_act, &from->milter_act }, { &st->bounces, &from->bounces },
				    { &st->deferrals, &from->deferrals } };
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
		merge_counts(plain[i][0], plain[i][1]);
	merge_counts(&st->rcpt_doms, &from->rcpt_doms);
	for (size_t i = 0; i < from->rcpt_doms.cap; i++) {
		const struct rmap_ent *f = &from->rcpt_doms.v[i];
		if (!from->rcpt_doms.hv[i] || !f->ptr)
			continue;
		const struct rs_dom *fd = f->ptr;
		struct rs_dom *d = dom_of(rmap_getnh(&st->rcpt_doms, f->key, f->len, from->rcpt_doms.hv[i], 0));
		d->deferrals += fd->deferrals;
		d->delay_sum_us = sat_add(d->delay_sum_us, fd->delay_sum_us);
		if (fd->delay_max > d->delay_max)
			d->delay_max = fd->delay_max;
	}
	for (size_t i = 0; i < from->delays.cap; i++) {
		const struct rmap_ent *f = &from->delays.v[i];
		if (!from->delays.hv[i] || !f->ptr)
			continue;
		const struct rs_delays *fd = f->ptr;
		struct rmap_ent *e = rmap_getnh(&st->delays, f->key, f->len, from->delays.hv[i], 1);
		if (!e->ptr)
			e->ptr = xcalloc(1, sizeof(struct rs_delays));
		struct rs_delays *d = e->ptr;
		/* the first RS_EXACT values in log order, as one pass keeps them */
		for (long long j = 0; j < fd->n && j < RS_EXACT && d->n + j < RS_EXACT; j++)
			d->exact[d->n + j] = fd->exact[j];
		d->n += fd->n;
		d->sum += fd->sum;
		if (fd->max > d->max)
			d->max = fd->max;
		for (int b = 0; b < RS_NB; b++)
			d->b[b] += fd->b[b];
	}
	rs_free(fromp);
}

/* ---- JSON ---- */

static json_t *top(const struct rmap *m, const char *keyname, size_t limit,
		   const char *const *cols, int ncols)
{
	size_t n;
	struct rmap_row *r = rmap_top(m, 0, limit, &n);
	json_t *a = json_array();
	for (size_t i = 0; i < n && (!limit || i < limit); i++) {
		json_t *o = json_object();
		json_object_set_new(o, keyname, json_string(r[i].e->key));
		for (int c = 0; c < ncols; c++)
			if (cols[c])
				json_object_set_new(o, cols[c], json_integer(r[i].e->c[c]));
		json_array_append_new(a, o);
	}
	free(r);
	return a;
}

/* {"a": n, ...} from a plain counter map */
static json_t *counts(const struct rmap *m)
{
	size_t n;
	struct rmap_row *r = rmap_sorted(m, 0, &n);
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, r[i].e->key, json_integer(r[i].e->c[0]));
	free(r);
	return o;
}

/* "a\tb" -> {a: {b: n}} */
static json_t *nested(const struct rmap *m)
{
	size_t n;
	struct rmap_row *r = rmap_sorted(m, 0, &n);
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++) {
		const char *k = r[i].e->key, *tab = strchr(k, '\t');
		if (!tab)
			continue;
		char outer[512];
		snprintf(outer, sizeof outer, "%.*s", (int)(tab - k), k);
		json_t *in = json_object_get(o, outer);
		if (!in) {
			in = json_object();
			json_object_set_new(o, outer, in);
		}
		json_object_set_new(in, tab + 1, json_integer(r[i].e->c[0]));
	}
	free(r);
	return o;
}

/* "dsn\ttext" -> [{"dsn":..,"text":..,"count":..}] */
static json_t *dsn_rows(const struct rmap *m, size_t limit)
{
	size_t n;
	struct rmap_row *r = rmap_top(m, 0, limit, &n);
	json_t *a = json_array();
	for (size_t i = 0; i < n && i < limit; i++) {
		const char *k = r[i].e->key, *tab = strchr(k, '\t');
		json_t *o = json_object();
		json_object_set_new(o, "dsn", json_stringn(k, tab ? (size_t)(tab - k) : strlen(k)));
		json_object_set_new(o, "text", json_string(tab ? tab + 1 : ""));
		json_object_set_new(o, "count", json_integer(r[i].e->c[0]));
		json_array_append_new(a, o);
	}
	free(r);
	return a;
}

static json_t *iso(double t)
{
	if (!t)
		return json_null();
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	char b[32];
	strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(b);
}

/* a real, rounded to 4 significant digits so text and JSON print the same */
static json_t *real4(double v)
{
	char b[32];
	snprintf(b, sizeof b, "%.4g", v);
	return json_real(strtod(b, NULL));
}

static json_t *filters_json(struct report_stats *st)
{
	json_t *f = json_object();
	json_t *res = nested(&st->filter_res), *act = nested(&st->filter_act);
	const char *k;
	json_t *v;
	json_object_foreach(res, k, v) {
		json_t *o = json_object();
		json_object_set(o, "results", v);
		json_object_set_new(f, k, o);
	}
	json_object_foreach(act, k, v) {
		json_t *o = json_object_get(f, k);
		if (!o) {
			o = json_object();
			json_object_set_new(f, k, o);
		}
		json_object_set(o, "actions", v);
	}
	json_decref(res);
	json_decref(act);
	if (st->dmarc_dom.n) {
		json_t *o = json_object_get(f, "dmarc");
		json_t *by = nested(&st->dmarc_dom), *disp = nested(&st->dmarc_disp);
		json_t *rows = json_array();
		json_object_foreach(by, k, v) {
			json_t *r = json_object();
			json_object_set_new(r, "domain", json_string(k));
			json_object_set(r, "results", v);
			json_t *d = json_object_get(disp, k);
			json_object_set_new(r, "dispositions", d ? json_incref(d) : json_object());
			json_array_append_new(rows, r);
		}
		json_object_set_new(o, "by_domain", rows);
		json_decref(by);
		json_decref(disp);
	}
	if (st->spam_hist.n) {
		json_t *o = json_object_get(f, "spam");
		if (!o) {
			o = json_object();
			json_object_set_new(f, "spam", o);
		}
		json_t *h = json_array();
		for (int s = -10; s <= 50; s++) {
			char key[16];
			snprintf(key, sizeof key, "%d", s);
			struct rmap_ent *e = rmap_get(&st->spam_hist, key, 0);
			if (!e)
				continue;
			json_t *r = json_object();
			json_object_set_new(r, "score", json_integer(s));
			json_object_set_new(r, "count", json_integer(e->c[0]));
			json_array_append_new(h, r);
		}
		json_object_set_new(o, "score_histogram", h);
	}
	return f;
}

static int row_by_key(const void *a, const void *b)
{
	return strcmp(((const struct rmap_row *)a)->e->key, ((const struct rmap_row *)b)->e->key);
}

json_t *rs_json(struct report_stats *st)
{
	json_t *doc = json_object();
	json_object_set_new(doc, "generator", json_string("sluice report"));
	json_object_set_new(doc, "since", iso(st->o.since));
	json_object_set_new(doc, "until", iso(st->o.until));
	json_object_set_new(doc, "first_event", iso(st->first));
	json_object_set_new(doc, "last_event", iso(st->last));
	json_t *in = json_object();
	json_object_set_new(in, "lines", json_integer(st->lines));
	json_object_set_new(in, "unreadable", json_integer(st->unreadable));
	json_object_set_new(in, "out_of_range", json_integer(st->out_of_range));
	json_object_set_new(in, "cut", json_integer(st->cut));
	json_object_set_new(doc, "input", in);

	json_t *t = json_object();
	for (int i = 0; i < T_N; i++)
		json_object_set_new(t, total_names[i], json_integer(st->t[i]));
	json_object_set_new(t, "senders", json_integer((json_int_t)st->senders.n));
	json_object_set_new(t, "sending_domains", json_integer((json_int_t)st->sender_doms.n));
	json_object_set_new(t, "recipients", json_integer((json_int_t)st->rcpts.n));
	json_object_set_new(t, "recipient_domains", json_integer((json_int_t)st->rcpt_doms.n));
	json_object_set_new(doc, "totals", t);

	json_t *days = json_array();
	size_t n;
	struct rmap_row *r = rmap_sorted(&st->days, 0, &n);
	qsort(r, n, sizeof *r, row_by_key);	/* by date, not by count */
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "date", json_string(r[i].e->key));
		const long long *pc = r[i].e->ptr;
		for (int c = 0; c < P_N; c++)
			json_object_set_new(o, period_names[c], json_integer(pc ? pc[c] : 0));
		json_array_append_new(days, o);
	}
	free(r);
	json_object_set_new(doc, "per_day", days);
	json_t *hours = json_array();
	for (int h = 0; h < 24; h++) {
		json_t *o = json_object();
		json_object_set_new(o, "hour", json_integer(h));
		for (int c = 0; c < P_N; c++)
			json_object_set_new(o, period_names[c], json_integer(st->hour[h][c]));
		json_array_append_new(hours, o);
	}
	json_object_set_new(doc, "per_hour", hours);

	json_t *rej = json_object();
	json_object_set_new(rej, "by_stage", counts(&st->rej_stage));
	json_object_set_new(rej, "by_code", counts(&st->rej_code));
	static const char *const one[] = { "count" };
	json_object_set_new(rej, "by_reason", top(&st->rej_reason, "reason", st->o.top_n, one, 1));
	json_object_set_new(doc, "rejects", rej);

	json_object_set_new(doc, "filters", filters_json(st));
	json_object_set_new(doc, "milter_actions", nested(&st->milter_act));

	json_t *tp = json_object();
	static const char *const msz[] = { "messages", "bytes" };
	static const char *const cl[] = { "messages", "connections" };
	json_object_set_new(tp, "senders", top(&st->senders, "address", st->o.top_n, msz, 2));
	json_object_set_new(tp, "sender_domains", top(&st->sender_doms, "domain", st->o.top_n, msz, 2));
	json_object_set_new(tp, "recipients", top(&st->rcpts, "address", st->o.top_n, msz, 2));
	json_t *rd = json_array();
	r = rmap_top(&st->rcpt_doms, 0, st->o.top_n, &n);
	for (size_t i = 0; i < n && i < st->o.top_n; i++) {
		const struct rmap_ent *e = r[i].e;
		json_t *o = json_object();
		json_object_set_new(o, "domain", json_string(e->key));
		json_object_set_new(o, "messages", json_integer(e->c[0]));
		json_object_set_new(o, "bytes", json_integer(e->c[1]));
		const struct rs_dom *dd = e->ptr;
		json_object_set_new(o, "deferrals", json_integer(dd ? dd->deferrals : 0));
		json_object_set_new(o, "avg_delay_s", real4(e->c[0] && dd ? (double)dd->delay_sum_us / 1e6 / (double)e->c[0] : 0));
		json_object_set_new(o, "max_delay_s", real4(dd ? dd->delay_max : 0));
		json_array_append_new(rd, o);
	}
	free(r);
	json_object_set_new(tp, "recipient_domains", rd);
	json_object_set_new(tp, "clients", top(&st->clients, "client", st->o.top_n, cl, 2));
	json_object_set_new(doc, "top", tp);

	json_t *dl = json_array();
	r = rmap_sorted(&st->delays, 0, &n);
	for (size_t i = 0; i < n; i++) {
		struct rs_delays *d = r[i].e->ptr;
		json_t *o = json_object();
		json_object_set_new(o, "transport", json_string(r[i].e->key));
		json_object_set_new(o, "count", json_integer(d->n));
		json_object_set_new(o, "p50_s", real4(delays_pct(d, 0.50)));
		json_object_set_new(o, "p95_s", real4(delays_pct(d, 0.95)));
		json_object_set_new(o, "max_s", real4(d->max));
		json_array_append_new(dl, o);
	}
	free(r);
	json_object_set_new(doc, "delays", dl);
	json_object_set_new(doc, "bounces", dsn_rows(&st->bounces, st->o.top_n));
	json_object_set_new(doc, "deferrals", dsn_rows(&st->deferrals, st->o.top_n));
	return doc;
}
