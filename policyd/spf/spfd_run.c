/*
 * spfd_run: see spfd_run.h.
 */
#include "policyd/spf/spfd_run.h"

#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "lib/util.h"

struct look {
	struct look *next;
	struct spfd_run *run;
	struct spfd_dns_req *dr;
	unsigned id;
};

struct spfd_run {
	struct spfd_dns *d;
	struct spf_check *chk;
	struct look *looks;
	struct event *step;	/* the first step, from the loop */
	struct event *timer;	/* deadline */
	unsigned queries;
	spfd_run_cb cb;
	void *arg;
};

static void run_free(struct spfd_run *r)
{
	while (r->looks) {
		struct look *l = r->looks;
		r->looks = l->next;
		spfd_dns_cancel(l->dr);
		free(l);
	}
	if (r->timer)
		event_free(r->timer);
	if (r->step)
		event_free(r->step);
	spf_check_free(&r->chk);
	free(r);
}

void spfd_run_cancel(struct spfd_run *r)
{
	if (r)
		run_free(r);
}

static void finish(struct spfd_run *r)
{
	struct spfd_checked res;

	spfd_checked_from(&res, r->chk);
	r->cb(r->arg, &res, r->queries);
	run_free(r);
}

static void look_cb(void *arg, const struct dns_answer *ans);

static void advance(struct spfd_run *r)
{
	struct spf_query q;

	for (;;) {
		int st = spf_check_next(r->chk, &q);
		if (st == SPF_DONE) {
			finish(r);
			return;
		}
		if (st == SPF_WAIT)
			return;
		struct look *l = xcalloc(1, sizeof(*l));
		l->run = r;
		l->id = q.id;
		l->next = r->looks;
		r->looks = l;
		r->queries++;
		l->dr = spfd_dns_query(r->d, q.name, q.type, look_cb, l);
	}
}

static void look_cb(void *arg, const struct dns_answer *ans)
{
	struct look *l = arg;
	struct spfd_run *r = l->run;
	struct look **pp = &r->looks;

	while (*pp && *pp != l)
		pp = &(*pp)->next;
	if (*pp)
		*pp = l->next;
	unsigned id = l->id;
	free(l);
	spf_check_answer(r->chk, id, ans);
	advance(r);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spfd_run *r = arg;

	(void)fd, (void)what;
	struct spfd_checked res = {
		.result = SPF_TEMPERROR,
		.reason = "DNS look-ups took longer than spf_lookup_time",
		.dns_terms = spf_check_dns_terms(r->chk),
	};
	r->cb(r->arg, &res, r->queries);
	run_free(r);
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	advance(arg);
}

struct spfd_run *spfd_run_start(struct event_base *base, struct spfd_dns *d,
				const struct spf_request *req, long long deadline_ms,
				spfd_run_cb cb, void *arg)
{
	struct spfd_run *r = xcalloc(1, sizeof(*r));

	r->d = d;
	r->cb = cb;
	r->arg = arg;
	r->chk = spf_check_new(req, NULL);
	r->step = evtimer_new(base, step_cb, r);
	if (!r->step)
		panic("spfd_run: evtimer_new failed");
	struct timeval zero = { 0, 0 };
	evtimer_add(r->step, &zero);
	if (deadline_ms > 0) {
		r->timer = evtimer_new(base, timer_cb, r);
		if (!r->timer)
			panic("spfd_run: evtimer_new failed");
		struct timeval tv = { deadline_ms / 1000, (deadline_ms % 1000) * 1000 };
		evtimer_add(r->timer, &tv);
	}
	return r;
}
