/*
 * spam_dnsl: DNS block lists. See spam_dnsl.h.
 */
#include "milters/spam/spam_dnsl.h"
#include "milters/spam/spam_scan.h"
#include "conf/conf.h"
#include "lib/metrics.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DNSL_MAX_QUERIES 256	/* per message, over all lists */
#define DNSL_RETEST_S 60
#define DNSL_WARN_S 60

enum match { M_ADDR, M_RANGE, M_MASK };

struct entry {
	enum match how;
	uint32_t lo, hi;	/* host order; M_MASK: lo = mask */
	char *symbol;
	double score;
	int blocked;
};

struct list {
	char *zone;
	int domain;		/* kind: 0 ip, 1 domain */
	char *name;		/* ZONE_IN_CAPITALS for <LIST>_BLOCKED */
	struct entry *e;
	size_t ne;
	int disabled;		/* atomic */
	long long last_test;	/* atomic, wall seconds */
	long long last_warn;	/* atomic */
};

struct spam_dnsl {
	struct list *l;
	size_t nl;
	char **servers;
	size_t nservers;
	struct dns_opts opts;
	int timeout_ms;
	unsigned gen;
};

static unsigned gen_counter;

/* ---- table ---- */

static int parse_v4(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*out = ntohl(a.s_addr);
	return 0;
}

static int parse_answer(const char *s, struct entry *e)
{
	if (!strncmp(s, "bitmask:", 8)) {
		char *end;
		unsigned long m = strtoul(s + 8, &end, 0);
		if (*end || end == s + 8 || m == 0 || m > 0xffffffffUL)
			return -1;
		e->how = M_MASK;
		e->lo = (uint32_t)m;
		return 0;
	}
	const char *dash = strchr(s, '-');
	if (dash) {
		char *a = xstrndup(s, (size_t)(dash - s));
		int rc = parse_v4(a, &e->lo) < 0 || parse_v4(dash + 1, &e->hi) < 0 || e->lo > e->hi ? -1 : 0;
		free(a);
		e->how = M_RANGE;
		return rc;
	}
	e->how = M_ADDR;
	if (parse_v4(s, &e->lo) < 0)
		return -1;
	e->hi = e->lo;
	return 0;
}

static struct list *list_for(struct spam_dnsl *d, const char *zone, int domain)
{
	for (size_t i = 0; i < d->nl; i++)
		if (!ascii_strcasecmp(d->l[i].zone, zone) && d->l[i].domain == domain)
			return &d->l[i];
	d->l = xrealloc(d->l, (d->nl + 1) * sizeof(*d->l));
	struct list *l = &d->l[d->nl++];
	memset(l, 0, sizeof(*l));
	l->zone = xstrdup(zone);
	ascii_lower(l->zone);
	l->domain = domain;
	l->name = xstrdup(zone);
	for (char *c = l->name; *c; c++)
		*c = isalnum((unsigned char)*c) ? (char)toupper((unsigned char)*c) : '_';
	return l;
}

static int parse_table(struct spam_dnsl *d, const char *path, char **err_out)
{
	char *text;
	size_t len;
	if (conf_read_file(path, 16 * 1024 * 1024, &text, &len, err_out) < 0)
		return -1;
	struct conf_lines *r = conf_lines_new(text, len, path, CONF_MAX_LINE_BYTES);
	const char *line;
	int lineno, rc;
	while ((rc = conf_lines_next(r, &line, &lineno, err_out)) == 1) {
		char zone[256], kind[16], answer[64], symbol[128], score[32], extra[2];
		int n = sscanf(line, "%255s %15s %63s %127s %31s %1s", zone, kind, answer, symbol, score, extra);
		const char *why = NULL;
		struct entry e = { 0 };
		char *end = NULL;
		if (n != 5)
			why = "expected \"zone ip|domain answer SYMBOL score\"";
		else if (strcmp(kind, "ip") && strcmp(kind, "domain"))
			why = "kind must be ip or domain";
		else if (parse_answer(answer, &e) < 0)
			why = "answer must be an address, a range a-b or bitmask:N";
		else if ((e.score = strtod(score, &end)), end == score || *end)
			why = "score is not a number";
		else if (zone[0] == '.' || strlen(zone) > 200)
			why = "bad zone";
		for (const char *c = symbol; !why && *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '_')
				why = "bad symbol name";
		if (why) {
			*err_out = xasprintf("%s:%d: %s", path, lineno, why);
			rc = -1;
			break;
		}
		e.blocked = !strcmp(symbol, "BLOCKED");
		e.symbol = xstrdup(symbol);
		struct list *l = list_for(d, zone, !strcmp(kind, "domain"));
		l->e = xrealloc(l->e, (l->ne + 1) * sizeof(*l->e));
		l->e[l->ne++] = e;
	}
	conf_lines_free(&r);
	free(text);
	return rc < 0 ? -1 : 0;
}

struct spam_dnsl *spam_dnsl_new(const char *path, const struct dns_opts *dns, int timeout_ms,
				char **err_out)
{
	struct spam_dnsl *d = xcalloc(1, sizeof(*d));
	d->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
	d->gen = __atomic_add_fetch(&gen_counter, 1, __ATOMIC_SEQ_CST);
	if (dns) {
		d->servers = xcalloc(dns->nservers + 1, sizeof(char *));
		for (size_t i = 0; i < dns->nservers; i++)
			d->servers[i] = xstrdup(dns->servers[i]);
		d->nservers = dns->nservers;
		d->opts = *dns;
		d->opts.servers = (const char *const *)d->servers;
	}
	if (path && *path && parse_table(d, path, err_out) < 0) {
		spam_dnsl_free(&d);
		return NULL;
	}
	return d;
}

void spam_dnsl_free(struct spam_dnsl **dp)
{
	struct spam_dnsl *d = dp ? *dp : NULL;
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->nl; i++) {
		for (size_t k = 0; k < d->l[i].ne; k++)
			free(d->l[i].e[k].symbol);
		free(d->l[i].e);
		free(d->l[i].zone);
		free(d->l[i].name);
	}
	free(d->l);
	for (size_t i = 0; i < d->nservers; i++)
		free(d->servers[i]);
	free(d->servers);
	free(d);
	*dp = NULL;
}

size_t spam_dnsl_count(const struct spam_dnsl *d)
{
	return d ? d->nl : 0;
}

/* ---- one message's look-ups: a batch with its own loop and resolver ---- */

struct q {
	struct list *l;
	char *subject;		/* the ip or domain */
	int test;		/* the list's test entry */
	struct dns_req *req;
	int done;
	enum dns_status st;
	uint32_t a[16];
	size_t na;
	struct spam_dnsl_batch *b;
};

/*
 * A batch lives from the first input (MAIL FROM) to end of data; libmilter
 * may run one connection's callbacks on different threads, so the loop and
 * the resolver belong to the batch, not to a thread. Queries go out when
 * added (c-ares writes them at once); answers wait in the socket until
 * spam_dnsl_finish runs the loop.
 */
struct spam_dnsl_batch {
	struct spam_dnsl *d;
	struct event_base *base;
	struct dns_resolver *res;
	struct q **qs;
	size_t n, cap;
	size_t pending;
};

static void on_answer(void *arg, const struct dns_answer *ans)
{
	struct q *q = arg;
	q->done = 1;
	q->req = NULL;
	q->st = ans->status;
	for (size_t i = 0; i < ans->n && q->na < 16; i++)
		if (ans->rr[i].type == DNS_T_A)
			q->a[q->na++] = ntohl(ans->rr[i].u.a.s_addr);
	if (--q->b->pending == 0)
		event_base_loopbreak(q->b->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void batch_add(struct spam_dnsl_batch *b, struct list *l, const char *subject, int test)
{
	if (b->n >= DNSL_MAX_QUERIES || subject == NULL || *subject == 0)
		return;
	for (size_t i = 0; i < b->n; i++)
		if (b->qs[i]->l == l && b->qs[i]->test == test && !strcmp(b->qs[i]->subject, subject))
			return;
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->qs = xrealloc(b->qs, b->cap * sizeof(*b->qs));
	}
	struct q *q = xcalloc(1, sizeof(*q));
	q->l = l;
	q->subject = xstrdup(subject);
	q->test = test;
	q->b = b;
	q->st = DNS_TIMEOUT;
	b->qs[b->n++] = q;
	char name[320];
	int ok = l->domain ? snprintf(name, sizeof(name), "%s.%s", subject, l->zone) < (int)sizeof(name) :
			     dns_dnsbl_name(subject, l->zone, name, sizeof(name)) == 0;
	if (!ok || b->res == NULL) {
		q->done = 1;
		q->st = DNS_ERROR;
		return;
	}
	b->pending++;
	q->req = dns_query(b->res, name, DNS_T_A, on_answer, q);
	metrics_filter_dns_query();
}

struct spam_dnsl_batch *spam_dnsl_begin(struct spam_dnsl *d)
{
	if (d == NULL || d->nl == 0)
		return NULL;
	struct spam_dnsl_batch *b = xcalloc(1, sizeof(*b));
	b->d = d;
	b->base = event_base_new();
	char *err = NULL;
	b->res = b->base ? dns_new(b->base, &d->opts, &err) : NULL;
	free(err);
	/* disabled lists: their test entry again, at most once a minute */
	long long now = (long long)time(NULL);
	for (size_t i = 0; i < d->nl; i++) {
		struct list *l = &d->l[i];
		if (!__atomic_load_n(&l->disabled, __ATOMIC_SEQ_CST))
			continue;
		long long last = __atomic_load_n(&l->last_test, __ATOMIC_SEQ_CST);
		if (now - last >= DNSL_RETEST_S &&
		    __atomic_compare_exchange_n(&l->last_test, &last, now, 0, __ATOMIC_SEQ_CST,
						__ATOMIC_SEQ_CST))
			batch_add(b, l, l->domain ? "test" : "127.0.0.2", 1);
	}
	return b;
}

void spam_dnsl_add(struct spam_dnsl_batch *b, const char *const *ips, size_t nips,
		   const char *const *domains, size_t ndomains)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->d->nl; i++) {
		struct list *l = &b->d->l[i];
		if (__atomic_load_n(&l->disabled, __ATOMIC_SEQ_CST))
			continue;
		const char *const *subj = l->domain ? domains : ips;
		size_t ns = l->domain ? ndomains : nips;
		for (size_t k = 0; k < ns; k++)
			batch_add(b, l, subj[k], 0);
	}
}

/* wait - until every query is answered or timeout_ms have passed; then cancel the rest. */
static void wait_answers(struct spam_dnsl_batch *b, int timeout_ms)
{
	if (b->pending && b->base) {
		struct event *timer = evtimer_new(b->base, on_deadline, b->base);
		struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
		evtimer_add(timer, &tv);
		/* one pass: the last answer or the deadline breaks the loop */
		event_base_dispatch(b->base);
		event_free(timer);
	}
	for (size_t i = 0; i < b->n; i++)
		if (!b->qs[i]->done && b->qs[i]->req) {
			dns_cancel(b->qs[i]->req);
			b->qs[i]->req = NULL;
		}
}

void spam_dnsl_abort(struct spam_dnsl_batch **bp)
{
	struct spam_dnsl_batch *b = bp ? *bp : NULL;
	if (b == NULL)
		return;
	dns_free(&b->res);	/* cancels what is still pending; no callbacks */
	if (b->base)
		event_base_free(b->base);
	for (size_t i = 0; i < b->n; i++) {
		free(b->qs[i]->subject);
		free(b->qs[i]);
	}
	free(b->qs);
	free(b);
	*bp = NULL;
}

static int entry_match(const struct entry *e, uint32_t v)
{
	switch (e->how) {
	case M_ADDR:
	case M_RANGE: return v >= e->lo && v <= e->hi;
	case M_MASK: return (v >> 24) == 127 && (v & e->lo) != 0;
	}
	return 0;
}

/* test_ok - the test entry answered with a listed, not blocked, 127/8 address. */
static int test_ok(const struct q *q)
{
	if (q->st != DNS_OK)
		return 0;
	for (size_t i = 0; i < q->na; i++) {
		if ((q->a[i] >> 24) != 127)
			continue;
		int blocked = 0;
		for (size_t k = 0; k < q->l->ne; k++)
			if (q->l->e[k].blocked && entry_match(&q->l->e[k], q->a[i]))
				blocked = 1;
		if (!blocked)
			return 1;
	}
	return 0;
}

char *spam_dnsl_selftest(struct spam_dnsl *d)
{
	if (d == NULL || d->nl == 0)
		return NULL;
	struct spam_dnsl_batch *b = xcalloc(1, sizeof(*b));
	b->d = d;
	b->base = event_base_new();
	char *err = NULL;
	b->res = b->base ? dns_new(b->base, &d->opts, &err) : NULL;
	free(err);
	for (size_t i = 0; i < d->nl; i++)
		batch_add(b, &d->l[i], d->l[i].domain ? "test" : "127.0.0.2", 1);
	wait_answers(b, d->timeout_ms);
	struct sbuf out;
	sbuf_init(&out);
	long long now = (long long)time(NULL);
	for (size_t i = 0; i < b->n; i++) {
		struct q *q = b->qs[i];
		int ok = test_ok(q);
		__atomic_store_n(&q->l->disabled, !ok, __ATOMIC_SEQ_CST);
		__atomic_store_n(&q->l->last_test, now, __ATOMIC_SEQ_CST);
		sbuf_printf(&out, "%s%s %s %s", i ? ", " : "", q->l->zone, q->l->domain ? "domain" : "ip",
			    ok ? "ok" : "disabled");
		if (!ok)
			sbuf_printf(&out, " (test entry: %s)", q->st == DNS_OK ? "not listed as documented" :
								     dns_status_name(q->st));
	}
	spam_dnsl_abort(&b);
	return sbuf_steal(&out);
}

static int has_symbol(const struct spam_result *r, const char *name)
{
	for (size_t i = 0; i < r->nhits; i++)
		if (!strcmp(r->hits[i].name, name))
			return 1;
	return 0;
}

void spam_dnsl_finish(struct spam_dnsl_batch **bp, struct spam_result *r, char **note_out,
		      char **warn_out)
{
	*note_out = NULL;
	*warn_out = NULL;
	struct spam_dnsl_batch *b = bp ? *bp : NULL;
	if (b == NULL)
		return;
	wait_answers(b, b->d->timeout_ms);
	long long now = (long long)time(NULL);
	struct sbuf note, warn;
	sbuf_init(&note);
	sbuf_init(&warn);
	for (size_t i = 0; i < b->n; i++) {
		struct q *q = b->qs[i];
		struct list *l = q->l;
		if (q->st == DNS_TIMEOUT)	/* sent, and no answer by the deadline */
			metrics_filter_dns_timeout();
		if (q->test) {
			if (test_ok(q))
				__atomic_store_n(&l->disabled, 0, __ATOMIC_SEQ_CST);
			continue;
		}
		if (q->st == DNS_TIMEOUT || q->st == DNS_SERVFAIL || q->st == DNS_ERROR) {
			sbuf_printf(&note, "%sdnsl_%s=%s", note.len ? " " : "", dns_status_name(q->st), l->zone);
			continue;
		}
		for (size_t a = 0; a < q->na; a++) {
			int matched = 0;
			for (size_t k = 0; k < l->ne; k++) {
				const struct entry *e = &l->e[k];
				if (!entry_match(e, q->a[a]))
					continue;
				matched = 1;
				if (e->blocked) {
					char *sym = xasprintf("%s_BLOCKED", l->name);
					if (!has_symbol(r, sym))
						spam_result_add(r, sym, 0, "The list refused the query (blocked resolver or rate limit)");
					free(sym);
					long long lw = __atomic_load_n(&l->last_warn, __ATOMIC_SEQ_CST);
					if (now - lw >= DNSL_WARN_S &&
					    __atomic_compare_exchange_n(&l->last_warn, &lw, now, 0,
									__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
						sbuf_printf(&warn, "%sdns list %s refuses our queries (answer %u.%u.%u.%u): check the resolver and the list's terms",
							    warn.len ? "; " : "", l->zone, q->a[a] >> 24,
							    (q->a[a] >> 16) & 255, (q->a[a] >> 8) & 255, q->a[a] & 255);
					continue;
				}
				if (!has_symbol(r, e->symbol)) {
					char *desc = xasprintf("%s listed in %s", q->subject, l->zone);
					spam_result_add(r, e->symbol, e->score, desc);
					free(desc);
				}
			}
			if (!matched)
				sbuf_printf(&note, "%sdnsl_unmatched=%s:%u.%u.%u.%u", note.len ? " " : "", l->zone,
					    q->a[a] >> 24, (q->a[a] >> 16) & 255, (q->a[a] >> 8) & 255, q->a[a] & 255);
		}
	}
	spam_dnsl_abort(bp);
	*note_out = note.len ? sbuf_steal(&note) : (sbuf_free(&note), NULL);
	*warn_out = warn.len ? sbuf_steal(&warn) : (sbuf_free(&warn), NULL);
}

void spam_dnsl_check(struct spam_dnsl *d, const char *const *ips, size_t nips,
		     const char *const *domains, size_t ndomains, struct spam_result *r,
		     char **note_out, char **warn_out)
{
	struct spam_dnsl_batch *b = spam_dnsl_begin(d);
	spam_dnsl_add(b, ips, nips, domains, ndomains);
	spam_dnsl_finish(&b, r, note_out, warn_out);
}
