/*
 * spam_dnsl: DNS block lists. See spam_dnsl.h.
 */
#include "milters/spam/spam_dnsl.h"
#include "milters/spam/spam_scan.h"
#include "conf/conf.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <pthread.h>
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

/* ---- per-thread loop and resolver ---- */

struct tl {
	struct event_base *base;
	struct dns_resolver *res;
	unsigned gen;
};

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void tl_free(void *p)
{
	struct tl *t = p;
	dns_free(&t->res);
	if (t->base)
		event_base_free(t->base);
	free(t);
}

static void tl_init(void)
{
	pthread_key_create(&tl_key, tl_free);
}

static struct tl *tl_get(const struct spam_dnsl *d)
{
	pthread_once(&tl_once, tl_init);
	struct tl *t = pthread_getspecific(tl_key);
	if (t && t->gen == d->gen)
		return t;
	if (t == NULL) {
		t = xcalloc(1, sizeof(*t));
		pthread_setspecific(tl_key, t);
	}
	dns_free(&t->res);
	if (t->base == NULL)
		t->base = event_base_new();
	char *err = NULL;
	t->res = t->base ? dns_new(t->base, &d->opts, &err) : NULL;
	free(err);
	t->gen = t->res ? d->gen : 0;
	return t->res ? t : NULL;
}

/* ---- one batch of queries ---- */

struct q {
	struct list *l;
	const char *subject;	/* borrowed: the ip or domain */
	int test;		/* the list's test entry */
	struct dns_req *req;
	int done;
	enum dns_status st;
	uint32_t a[16];
	size_t na;
	size_t *pending;
	struct event_base *base;
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
	if (--*q->pending == 0)
		event_base_loopbreak(q->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* run - all queries, one deadline; unanswered ones end as DNS_TIMEOUT. */
static void run(const struct spam_dnsl *d, struct q *qs, size_t n)
{
	struct tl *t = tl_get(d);
	for (size_t i = 0; i < n; i++)
		qs[i].st = DNS_TIMEOUT;
	if (t == NULL || n == 0)
		return;
	size_t pending = 0;
	for (size_t i = 0; i < n; i++) {
		char name[320];
		int ok = qs[i].l->domain ?
				 snprintf(name, sizeof(name), "%s.%s", qs[i].subject, qs[i].l->zone) < (int)sizeof(name) :
				 dns_dnsbl_name(qs[i].subject, qs[i].l->zone, name, sizeof(name)) == 0;
		if (!ok) {
			qs[i].done = 1;
			qs[i].st = DNS_ERROR;
			continue;
		}
		qs[i].pending = &pending;
		qs[i].base = t->base;
		pending++;
		qs[i].req = dns_query(t->res, name, DNS_T_A, on_answer, &qs[i]);
	}
	if (pending) {
		struct event *timer = evtimer_new(t->base, on_deadline, t->base);
		struct timeval tv = { d->timeout_ms / 1000, (d->timeout_ms % 1000) * 1000 };
		evtimer_add(timer, &tv);
		/* one pass: the last answer or the deadline breaks the loop */
		event_base_dispatch(t->base);
		event_free(timer);
	}
	for (size_t i = 0; i < n; i++)
		if (!qs[i].done && qs[i].req) {
			dns_cancel(qs[i].req);
			qs[i].req = NULL;
		}
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
	struct q *qs = xcalloc(d->nl, sizeof(*qs));
	for (size_t i = 0; i < d->nl; i++) {
		qs[i].l = &d->l[i];
		qs[i].subject = d->l[i].domain ? "test" : "127.0.0.2";
		qs[i].test = 1;
	}
	run(d, qs, d->nl);
	struct sbuf b;
	sbuf_init(&b);
	long long now = (long long)time(NULL);
	for (size_t i = 0; i < d->nl; i++) {
		int ok = test_ok(&qs[i]);
		__atomic_store_n(&d->l[i].disabled, !ok, __ATOMIC_SEQ_CST);
		__atomic_store_n(&d->l[i].last_test, now, __ATOMIC_SEQ_CST);
		sbuf_printf(&b, "%s%s %s %s", i ? ", " : "", d->l[i].zone, d->l[i].domain ? "domain" : "ip",
			    ok ? "ok" : "disabled");
		if (!ok)
			sbuf_printf(&b, " (test entry: %s)", qs[i].st == DNS_OK ? "not listed as documented" :
								    dns_status_name(qs[i].st));
	}
	free(qs);
	return sbuf_steal(&b);
}

static int has_symbol(const struct spam_result *r, const char *name)
{
	for (size_t i = 0; i < r->nhits; i++)
		if (!strcmp(r->hits[i].name, name))
			return 1;
	return 0;
}

void spam_dnsl_check(struct spam_dnsl *d, const char *const *ips, size_t nips,
		     const char *const *domains, size_t ndomains, struct spam_result *r,
		     char **note_out, char **warn_out)
{
	*note_out = NULL;
	*warn_out = NULL;
	if (d == NULL || d->nl == 0)
		return;
	struct q *qs = xcalloc(DNSL_MAX_QUERIES, sizeof(*qs));
	size_t n = 0;
	long long now = (long long)time(NULL);
	for (size_t i = 0; i < d->nl && n < DNSL_MAX_QUERIES; i++) {
		struct list *l = &d->l[i];
		if (__atomic_load_n(&l->disabled, __ATOMIC_SEQ_CST)) {
			long long last = __atomic_load_n(&l->last_test, __ATOMIC_SEQ_CST);
			if (now - last >= DNSL_RETEST_S &&
			    __atomic_compare_exchange_n(&l->last_test, &last, now, 0, __ATOMIC_SEQ_CST,
							__ATOMIC_SEQ_CST))
				qs[n++] = (struct q){ .l = l, .subject = l->domain ? "test" : "127.0.0.2", .test = 1 };
			continue;
		}
		const char *const *subj = l->domain ? domains : ips;
		size_t ns = l->domain ? ndomains : nips;
		for (size_t k = 0; k < ns && n < DNSL_MAX_QUERIES; k++)
			if (subj[k] && *subj[k])
				qs[n++] = (struct q){ .l = l, .subject = subj[k] };
	}
	run(d, qs, n);
	struct sbuf note, warn;
	sbuf_init(&note);
	sbuf_init(&warn);
	for (size_t i = 0; i < n; i++) {
		struct q *q = &qs[i];
		struct list *l = q->l;
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
	free(qs);
	*note_out = note.len ? sbuf_steal(&note) : (sbuf_free(&note), NULL);
	*warn_out = warn.len ? sbuf_steal(&warn) : (sbuf_free(&warn), NULL);
}
