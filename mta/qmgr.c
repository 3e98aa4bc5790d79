/*
 * qmgr: the queue manager. Contract in qmgr.h.
 *
 * A message goes WAITING (id only) -> OPENING (OPEN job) -> OPEN (one
 * DELIVER job per Maildir recipient, and per LMTP/SMTP nexthop for up to
 * QMGR_RCPTS_PER_DELIVERY recipients) -> FINISHING (FINISH job: the
 * delivery status notifications, FAILED marks, then remove or move to
 * deferred/) -> gone. Jobs wait in three
 * loop-side FIFOs and go to the workers by priority (finish, deliver,
 * scan, open), so work in progress completes before new work starts.
 */
#include "mta/qmgr.h"
#include "mta/mta_metrics.h"
#include "mta/maildir.h"
#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#define QMGR_OPEN_PER_WORKER 4	/* open queue files per worker thread */
#define QMGR_JOBS_PER_WORKER 2	/* jobs handed to the pool per worker */

enum qm_state { QM_WAITING, QM_OPENING, QM_OPEN, QM_FINISHING };

struct qmgr_msg {
	char id[QUEUE_ID_MAX];
	enum qm_state state;
	int maybe_delivered;	/* not a first attempt: maildir checks new/ and cur/ */
	struct queue_msg m;	/* valid from OPEN on */
	double pickup;		/* wall time the file was opened */
	size_t todo;		/* deliveries queued or in flight */
	/* shared with the workers (atomics): deliveries not yet done, and
	 * whether a DONE mark was written without fdatasync (see job_run_deliver) */
	size_t inflight;
	int marks_dirty;
	char **note;		/* per recipient: last deferral reason, or NULL */
	char **fail;		/* per recipient: bounce reason to mark FAILED, or NULL */
	unsigned char *fail_logged;	/* per recipient: "status=bounced" already logged */
	struct qmgr_msg *hnext;	/* hash chain */
	struct qmgr_msg *next;	/* ready FIFO */
};

enum qjob_kind { QJ_SCAN, QJ_OPEN, QJ_DELIVER, QJ_FINISH };

/* deliveries in flight to one LMTP/SMTP nexthop (loop side; gone at 0) */
struct qm_dest {
	char *key;		/* "S:nexthop" / "L:nexthop" */
	size_t busy;
	struct qm_dest *next;
};
#define QMGR_DEST_BUCKETS 256

struct qjob {
	enum qjob_kind kind;
	struct qmgr *q;
	struct qmgr_msg *msg;
	struct qjob *next;
	/* SCAN: in flush; out the ids in active/ */
	int flush;
	char **ids;
	size_t nids;
	/* OPEN out */
	int rc, corrupt, err_no;
	char *err;
	/* DELIVER in: the recipients (one for a Maildir, up to QMGR_RCPTS_PER_DELIVERY
	 * to one nexthop), path (Maildir or nexthop), route; out: each
	 * recipient's res and reason, relay, times */
	struct qmgr_rcpt_result *r;
	size_t nr;
	char *path;
	enum qmgr_route_kind route;
	struct qm_dest *dest;	/* LMTP/SMTP: counted against its nexthop while in flight */
	char relay[300];
	double t_queued, t_start, t_end;
	/* FINISH in: next_attempt; out: 0 = removed, marks_ok, the reports queued
	 * (new ids) or why not */
	double next_attempt;
	int marks_ok;
	char *dsn_id, *dsn_err, *delay_id, *delay_err;
};

struct qjob_fifo {
	struct qjob *head, **tail;
};

struct qmgr {
	struct event_base *base;
	struct qmgr_opts o;
	char *qdir, *myhostname;
	struct maildir_syncer *sync;
	/* worker pool */
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pool_stop;
	struct qjob_fifo todo, done;	/* guarded by mu */
	struct event *done_ev;
	/* loop side */
	struct qjob_fifo finish_q, deliver_q;
	struct qmgr_msg *ready, **ready_tail;
	struct qmgr_msg **hash;
	size_t hsize, nmsg;
	struct qm_dest *dests[QMGR_DEST_BUCKETS];
	size_t busy, busy_deliver, nopen;
	int scan_wanted, scan_flush, scan_running;
	int started, stopping, stop_reported;
	struct event *run_ev, *stop_ev;
	struct qmgr_stats st;
};

static void qmgr_pump(struct qmgr *q);
static void dest_release(struct qmgr *q, struct qjob *j);

/* ---- small helpers ---- */

static void fifo_init(struct qjob_fifo *f)
{
	f->head = NULL;
	f->tail = &f->head;
}

static void fifo_push(struct qjob_fifo *f, struct qjob *j)
{
	j->next = NULL;
	*f->tail = j;
	f->tail = &j->next;
}

static struct qjob *fifo_pop(struct qjob_fifo *f)
{
	struct qjob *j = f->head;
	if (j) {
		f->head = j->next;
		if (!f->head)
			f->tail = &f->head;
	}
	return j;
}

static void job_free(struct qjob *j)
{
	if (!j)
		return;
	queue_scan_free(j->ids, j->nids, NULL);
	free(j->err);
	free(j->path);
	free(j->r);
	free(j->dsn_id);
	free(j->dsn_err);
	free(j->delay_id);
	free(j->delay_err);
	free(j);
}

static struct qjob *job_new(struct qmgr *q, enum qjob_kind kind, struct qmgr_msg *msg)
{
	struct qjob *j = xcalloc(1, sizeof *j);
	j->kind = kind;
	j->q = q;
	j->msg = msg;
	return j;
}

/* Postfix-like delay figures: "0", "0.37", "1.2", "45". */
static const char *fmt_delay(char *buf, size_t n, double s)
{
	if (s < 0.005)
		snprintf(buf, n, "0");
	else if (s < 10)
		snprintf(buf, n, "%.2g", s);
	else
		snprintf(buf, n, "%.0f", s);
	return buf;
}

/*
 * split_dsn - "4.2.2 text" -> dsn "4.2.2", *text "text"; without a code,
 * dsn is "<cls>.0.0".
 */
static void split_dsn(const char *reason, char cls, char dsn[16], const char **text)
{
	size_t n = strspn(reason, "0123456789.");
	int dots = 0;
	for (size_t i = 0; i < n; i++)
		dots += reason[i] == '.';
	if (n >= 5 && n < 12 && dots == 2 && reason[1] == '.' &&
	    (reason[n] == ' ' || reason[n] == 0)) {
		memcpy(dsn, reason, n);
		dsn[n] = 0;
		*text = reason + n + (reason[n] == ' ');
	} else {
		snprintf(dsn, 16, "%c.0.0", cls);
		*text = reason;
	}
}

/* reason_norm - a router's reason with its class forced to cls; caller frees. */
static char *reason_norm(const char *reason, char cls, const char *dflt)
{
	char dsn[16];
	const char *text;
	split_dsn(reason && *reason ? reason : dflt, cls, dsn, &text);
	dsn[0] = cls;
	return xasprintf("%s %s", dsn, text);
}

/* ---- the set of known messages (by id) ---- */

static size_t id_hash(const char *id, size_t size)
{
	size_t h = 5381;
	for (; *id; id++)
		h = h * 33 + (unsigned char)*id;
	return h & (size - 1);
}

static struct qmgr_msg *msg_find(struct qmgr *q, const char *id)
{
	for (struct qmgr_msg *m = q->hash[id_hash(id, q->hsize)]; m; m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static void hash_grow(struct qmgr *q)
{
	size_t nsize = q->hsize * 2;
	struct qmgr_msg **nh = xcalloc(nsize, sizeof *nh);
	for (size_t i = 0; i < q->hsize; i++)
		while (q->hash[i]) {
			struct qmgr_msg *m = q->hash[i];
			q->hash[i] = m->hnext;
			size_t b = id_hash(m->id, nsize);
			m->hnext = nh[b];
			nh[b] = m;
		}
	free(q->hash);
	q->hash = nh;
	q->hsize = nsize;
}

/* msg_add - a new WAITING message at the end of the ready FIFO. */
static void msg_add(struct qmgr *q, const char *id, int maybe_delivered)
{
	if (q->nmsg >= q->hsize)
		hash_grow(q);
	struct qmgr_msg *m = xcalloc(1, sizeof *m);
	snprintf(m->id, sizeof m->id, "%s", id);
	m->maybe_delivered = maybe_delivered;
	m->m.fd = -1;
	size_t b = id_hash(id, q->hsize);
	m->hnext = q->hash[b];
	q->hash[b] = m;
	q->nmsg++;
	*q->ready_tail = m;
	q->ready_tail = &m->next;
}

static void msg_free_arrays(struct qmgr_msg *m)
{
	for (size_t i = 0; m->note && i < m->m.env.nrcpt; i++) {
		free(m->note[i]);
		free(m->fail[i]);
	}
	free(m->note);
	free(m->fail);
	free(m->fail_logged);
	m->note = m->fail = NULL;
	m->fail_logged = NULL;
}

/* msg_drop - forget m (not in the ready FIFO any more); closes its file. */
static void msg_drop(struct qmgr *q, struct qmgr_msg *m)
{
	for (struct qmgr_msg **pp = &q->hash[id_hash(m->id, q->hsize)]; *pp; pp = &(*pp)->hnext)
		if (*pp == m) {
			*pp = m->hnext;
			break;
		}
	q->nmsg--;
	if (m->state == QM_OPEN || m->state == QM_FINISHING || m->state == QM_OPENING)
		q->nopen--;
	msg_free_arrays(m);
	queue_msg_close(&m->m);
	free(m);
}

/* ---- worker pool ---- */

static void job_run_scan(struct qjob *j);
static void job_run_open(struct qjob *j);
static void job_run_deliver(struct qjob *j);
static void job_run_finish(struct qjob *j);

static void *worker_main(void *arg)
{
	struct qmgr *q = arg;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->todo.head && !q->pool_stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (q->pool_stop)
			break;
		struct qjob *j = fifo_pop(&q->todo);
		pthread_mutex_unlock(&q->mu);
		switch (j->kind) {
		case QJ_SCAN: job_run_scan(j); break;
		case QJ_OPEN: job_run_open(j); break;
		case QJ_DELIVER: job_run_deliver(j); break;
		case QJ_FINISH: job_run_finish(j); break;
		}
		pthread_mutex_lock(&q->mu);
		int was_empty = q->done.head == NULL;
		fifo_push(&q->done, j);
		if (was_empty)
			event_active(q->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

static void job_submit(struct qmgr *q, struct qjob *j)
{
	q->busy++;
	if (j->kind == QJ_DELIVER)
		q->busy_deliver++;
	pthread_mutex_lock(&q->mu);
	fifo_push(&q->todo, j);
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

/* ---- what the workers do (no loop state touched here) ---- */

/* Move due (or, flushing, all) deferred messages to active/; list active/. */
static void job_run_scan(struct qjob *j)
{
	const char *qdir = j->q->qdir;
	size_t n;
	double *next = NULL, now = wall_time();
	char **ids = queue_scan(qdir, QUEUE_DEFERRED, &n, &next);
	for (size_t i = 0; i < n; i++)
		if ((j->flush || next[i] <= now) &&
		    queue_move_ex(qdir, ids[i], QUEUE_DEFERRED, QUEUE_ACTIVE, 0, QUEUE_NOSYNC) < 0 &&
		    errno != ENOENT)
			log_event(ids[i], "cannot move deferred message to active: %s",
				  strerror(errno));
	queue_scan_free(ids, n, next);
	j->ids = queue_scan(qdir, QUEUE_ACTIVE, &j->nids, NULL);
}

static void job_run_open(struct qjob *j)
{
	struct qmgr_msg *m = j->msg;
	j->rc = queue_msg_open_ex(j->q->qdir, QUEUE_ACTIVE, m->id, &m->m, &j->err, &j->corrupt,
				  &j->err_no);
}

static int res_done(int res)
{
	return res == MAILDIR_OK || res == MAILDIR_ALREADY;
}

static void job_run_deliver(struct qjob *j)
{
	struct qmgr *q = j->q;
	struct qmgr_msg *msg = j->msg;
	j->t_start = wall_time();
	if (j->route == QMGR_ROUTE_MAILDIR) {
		struct maildir_req req = { j->path, q->myhostname, &msg->m, j->r[0].rcpt,
					   msg->maybe_delivered };
		snprintf(j->relay, sizeof j->relay, "virtual");
		j->r[0].res = maildir_deliver(&req, q->sync, j->r[0].reason, sizeof j->r[0].reason);
	} else {
		for (size_t k = 0; k < j->nr; k++) {
			j->r[k].res = MAILDIR_TEMPFAIL;
			snprintf(j->r[k].reason, sizeof j->r[k].reason, "4.3.0 no delivery result");
		}
		q->o.deliver(q->o.deliver_arg, j->route, j->path, &msg->m, j->r, j->nr, j->relay,
			     sizeof j->relay);
	}
	/*
	 * The last delivery of a message to come back writes its DONE marks
	 * without fdatasync: if nothing else is PENDING, the FINISH job removes
	 * the file next, and a crash before that only repeats the delivery,
	 * which maildir.c recognises by name (exactly once); if something is
	 * still PENDING (a deferral), the FINISH job syncs the marks before the
	 * message goes to deferred/. Every earlier delivery's marks are made
	 * durable at once (one fdatasync for all its recipients). A permanent
	 * failure is not marked here: the FINISH job marks it FAILED after its
	 * bounce is queued.
	 */
	int last = __atomic_sub_fetch(&msg->inflight, 1, __ATOMIC_ACQ_REL) == 0;
	int rc = 0;
	size_t ndone = 0;
	for (size_t k = 0; k < j->nr && rc == 0; k++)
		if (res_done(j->r[k].res)) {
			rc = queue_msg_set(&msg->m, j->r[k].rcpt, QUEUE_RCPT_DONE);
			ndone++;
		}
	if (rc == 0 && ndone > 0) {
		/* only Maildir recognises a repeated delivery: LMTP/SMTP marks are always synced */
		if (last && j->route == QMGR_ROUTE_MAILDIR)
			__atomic_store_n(&msg->marks_dirty, 1, __ATOMIC_RELEASE);
		else
			rc = queue_msg_sync(&msg->m);
	}
	if (rc < 0) {
		/* delivered but not marked: the retry will find the file (exactly once) */
		int e = errno;
		for (size_t k = 0; k < j->nr; k++)
			if (res_done(j->r[k].res)) {
				snprintf(j->r[k].reason, sizeof j->r[k].reason,
					 "4.3.0 cannot mark queue file: %s", strerror(e));
				j->r[k].res = MAILDIR_TEMPFAIL;
			}
	}
	j->t_end = wall_time();
}

/*
 * finish_bounce - one report for every recipient that failed in this
 * attempt, before their FAILED marks. If it cannot be queued, they stay
 * PENDING (deferred with the reason) and fail again on the next attempt.
 */
static void finish_bounce(struct qjob *j)
{
	struct qmgr *q = j->q;
	struct qmgr_msg *m = j->msg;
	size_t n = m->m.env.nrcpt, k = 0;
	if (!q->o.dsn)
		return;
	struct qmgr_dsn_rcpt *v = xcalloc(n ? n : 1, sizeof *v);
	char (*dsn)[16] = xcalloc(n ? n : 1, sizeof *dsn);
	for (size_t i = 0; i < n; i++)
		if (m->fail[i] && m->m.env.rcpt[i].status == QUEUE_RCPT_PENDING) {
			split_dsn(m->fail[i], '5', dsn[k], &v[k].text);
			v[k].rcpt = i;
			v[k].dsn = dsn[k];
			k++;
		}
	char *err = NULL;
	if (k > 0 && q->o.dsn(q->o.dsn_arg, QMGR_DSN_FAILED, &m->m, v, k, &j->dsn_id, &err) < 0) {
		j->dsn_err = err ? err : xstrdup("unknown error");
		for (size_t i = 0; i < n; i++)
			if (m->fail[i] && m->m.env.rcpt[i].status == QUEUE_RCPT_PENDING) {
				free(m->note[i]);
				m->note[i] = xasprintf("4.3.0 cannot queue delivery status notification: %s",
						       j->dsn_err);
				free(m->fail[i]);
				m->fail[i] = NULL;
			}
	}
	free(dsn);
	free(v);
}

/*
 * finish_delay_warning - once per message: the still-deferred recipients,
 * when the message has been queued longer than delay_warning_time. "Once"
 * with a mark in the defer log (queue_directory/defer/ID, queue.h:
 * queue_defer_warned), which job_run_finish writes again each time it
 * rewrites the log. A crash between the notice and the mark repeats the
 * warning at worst. Returns 1 when the warning went out (now or before).
 */
static int finish_delay_warning(struct qjob *j)
{
	struct qmgr *q = j->q;
	struct qmgr_msg *m = j->msg;
	double dwt = q->o.delay_warning_time_s, arr = m->m.env.arrival;
	if (!q->o.dsn || dwt <= 0)
		return 0;
	if (queue_defer_warned(q->qdir, m->id))
		return 1;
	if (wall_time() - arr <= dwt)
		return 0;
	/* a log without the mark from an attempt already past the threshold: a
	 * queue file from before the mark existed, warned then */
	char path[4096];
	struct stat sb;
	snprintf(path, sizeof path, "%s/defer/%s", q->qdir, m->id);
	if (stat(path, &sb) == 0 &&
	    (double)sb.st_mtim.tv_sec + (double)sb.st_mtim.tv_nsec / 1e9 - arr > dwt)
		return 1;
	size_t n = m->m.env.nrcpt, k = 0;
	struct qmgr_dsn_rcpt *v = xcalloc(n ? n : 1, sizeof *v);
	char (*dsn)[16] = xcalloc(n ? n : 1, sizeof *dsn);
	for (size_t i = 0; i < n; i++)
		if (m->m.env.rcpt[i].status == QUEUE_RCPT_PENDING) {
			split_dsn(m->note[i] ? m->note[i] : "4.0.0 deferred", '4', dsn[k], &v[k].text);
			v[k].rcpt = i;
			v[k].dsn = dsn[k];
			k++;
		}
	char *err = NULL;
	int sent = 0;
	if (k > 0) {
		if (q->o.dsn(q->o.dsn_arg, QMGR_DSN_DELAYED, &m->m, v, k, &j->delay_id, &err) < 0)
			j->delay_err = err ? err : xstrdup("unknown error");
		else
			sent = 1;	/* queued, or none due (NOTIFY): either way done */
	}
	free(dsn);
	free(v);
	return sent;
}

/* Reports, FAILED marks (one fdatasync), then remove, or note reasons and defer. */
static void job_run_finish(struct qjob *j)
{
	struct qmgr_msg *m = j->msg;
	const char *qdir = j->q->qdir;
	int marked = 0;
	j->rc = 0;
	finish_bounce(j);
	for (size_t i = 0; i < m->m.env.nrcpt && j->rc == 0; i++)
		if (m->fail[i] && m->m.env.rcpt[i].status == QUEUE_RCPT_PENDING) {
			j->rc = queue_msg_set(&m->m, i, QUEUE_RCPT_FAILED);
			marked = 1;
		}
	if (j->rc == 0 &&
	    (marked || (__atomic_load_n(&m->marks_dirty, __ATOMIC_ACQUIRE) &&
			queue_msg_pending(&m->m) > 0)))
		j->rc = queue_msg_sync(&m->m);
	if (j->rc < 0) {
		j->err = xasprintf("cannot mark queue file: %s", strerror(errno));
		return;
	}
	j->marks_ok = 1;
	/* the loop's bounce callback may still look at m (not its content) */
	int keep_open = marked && j->q->o.bounce;
	if (queue_msg_pending(&m->m) == 0) {
		j->next_attempt = 0;
		j->rc = keep_open ? queue_remove_ex(qdir, m->id, QUEUE_ACTIVE, QUEUE_NOSYNC)
				  : queue_msg_recycle(qdir, &m->m,
						      m->maybe_delivered ? 0 : QUEUE_NO_DEFER_LOG);
	} else {
		int warned = finish_delay_warning(j);
		queue_defer_reset(qdir, m->id);
		for (size_t i = 0; i < m->m.env.nrcpt; i++)
			if (m->m.env.rcpt[i].status == QUEUE_RCPT_PENDING)
				queue_defer_note(qdir, m->id, m->m.env.rcpt[i].addr,
						 m->note[i] ? m->note[i] : "4.0.0 deferred");
		if (warned)
			queue_defer_mark_warned(qdir, m->id);
		j->rc = queue_move_ex(qdir, m->id, QUEUE_ACTIVE, QUEUE_DEFERRED, j->next_attempt,
				      QUEUE_NOSYNC);
	}
	if (j->rc < 0)
		j->err = xasprintf("cannot %s queue file: %s",
				   j->next_attempt > 0 ? "defer" : "remove", strerror(errno));
	/*
	 * Close here, not in the loop: the last close of an unlinked file frees
	 * its blocks (ms on a busy disk). Kept open for the bounce callback.
	 */
	if (!keep_open) {
		close(m->m.fd);
		m->m.fd = -1;
	}
}

/* ---- loop side: outcomes ---- */

struct qm_times {
	double start, end;	/* of the delivery; both "now" for routing decisions */
	const char *service;	/* the log's service: the transport's, NULL = qmgr */
};

/* Postfix's delivery agent names, for the log's program field */
static const char *route_service(enum qmgr_route_kind k)
{
	return k == QMGR_ROUTE_MAILDIR ? "virtual" : k == QMGR_ROUTE_LMTP ? "lmtp"
		: k == QMGR_ROUTE_SMTP ? "smtp" : NULL;
}

static void log_rcpt(struct qmgr_msg *m, size_t i, const char *relay, const struct qm_times *t,
		     const char *status, const char *reason)
{
	const struct queue_rcpt *r = &m->m.env.rcpt[i];
	char dsn[16], d0[16], d1[16], d2[16], d3[16];
	const char *text;
	split_dsn(reason, status[0] == 's' ? '2' : '4', dsn, &text);
	if (status[0] == 's' && dsn[0] != '2')
		snprintf(dsn, sizeof dsn, "2.0.0");
	double arr = m->m.env.arrival;
	char *orig = r->orig && strcmp(r->orig, r->addr) != 0 ? xasprintf(", orig_to=<%s>", r->orig)
							    : NULL;
	log_service_event(t->service, m->id,
			  "to=<%s>%s, relay=%s, delay=%s, delays=%s/%s/0/%s, dsn=%s, status=%s (%s)",
			  r->addr, orig ? orig : "", relay, fmt_delay(d0, sizeof d0, t->end - arr),
			  fmt_delay(d1, sizeof d1, m->pickup - arr),
			  fmt_delay(d2, sizeof d2, t->start - m->pickup),
			  fmt_delay(d3, sizeof d3, t->end - t->start), dsn, status, text);
	mta_metrics_delivery(status, t->service);
	free(orig);
}

static int msg_expired(const struct qmgr *q, const struct qmgr_msg *m, double now)
{
	return now - m->m.env.arrival > q->o.maximal_queue_lifetime_s;
}

/*
 * rcpt_defer - keep recipient i PENDING with reason (owned); once the
 * message has outlived maximal_queue_lifetime this becomes a bounce
 * ("4.4.7 message expired"), marked FAILED by the FINISH job.
 */
static void rcpt_defer(struct qmgr *q, struct qmgr_msg *m, size_t i, char *reason,
		       const char *relay, const struct qm_times *t)
{
	if (msg_expired(q, m, t->end)) {
		char dsn[16];
		const char *text;
		split_dsn(reason, '4', dsn, &text);
		free(m->fail[i]);
		m->fail[i] = xasprintf("4.4.7 message expired (last error: %s)", text);
		free(reason);
		return;
	}
	log_rcpt(m, i, relay, t, "deferred", reason);
	q->st.deferred++;
	free(m->note[i]);
	m->note[i] = reason;
}

static void rcpt_bounced(struct qmgr *q, struct qmgr_msg *m, size_t i, const char *relay,
			 const struct qm_times *t, const char *reason)
{
	log_rcpt(m, i, relay, t, "bounced", reason);
	q->st.bounced++;
	m->fail_logged[i] = 1;
}

/* All deliveries are back: queue the FINISH job. */
static void msg_finish(struct qmgr *q, struct qmgr_msg *m)
{
	double now = wall_time();
	double backoff = now - m->m.env.arrival;
	if (backoff > q->o.maximal_backoff_time_s)
		backoff = q->o.maximal_backoff_time_s;
	if (backoff < q->o.minimal_backoff_time_s)
		backoff = q->o.minimal_backoff_time_s;
	struct qjob *j = job_new(q, QJ_FINISH, m);
	j->next_attempt = now + backoff;
	m->state = QM_FINISHING;
	fifo_push(&q->finish_q, j);
}

/* DELIVER jobs of one message made while it is routed: LMTP/SMTP recipients to one nexthop share one */
struct qm_groups {
	struct qjob **v;
	size_t n;
};

/* Route recipient i (in the loop thread, as promised to the router). */
static void msg_route(struct qmgr *q, struct qmgr_msg *m, size_t i, double now,
		      struct qm_groups *g)
{
	struct qmgr_route r;
	struct qm_times t = { now, now, NULL };
	memset(&r, 0, sizeof r);
	if (q->o.route(q->o.route_arg, m->m.env.rcpt[i].addr, &r) < 0) {
		rcpt_defer(q, m, i, xstrdup("4.3.0 routing failed"), "none", &t);
		return;
	}
	switch (r.kind) {
	case QMGR_ROUTE_LMTP:
	case QMGR_ROUTE_SMTP:
		if (!q->o.deliver || !r.nexthop || !*r.nexthop)
			break;
		/* fall through */
	case QMGR_ROUTE_MAILDIR:;
		const char *path = r.kind == QMGR_ROUTE_MAILDIR ? r.path : r.nexthop;
		if (!path || !*path) {
			rcpt_defer(q, m, i, xstrdup("4.3.5 maildir route without a path"), "none",
				   &t);
			return;
		}
		if (r.kind != QMGR_ROUTE_MAILDIR)
			for (size_t k = 0; k < g->n; k++) {
				struct qjob *o = g->v[k];
				if (o->route == r.kind && o->nr < QMGR_RCPTS_PER_DELIVERY &&
				    strcmp(o->path, path) == 0) {
					o->r = xrealloc(o->r, (o->nr + 1) * sizeof *o->r);
					memset(&o->r[o->nr], 0, sizeof o->r[o->nr]);
					o->r[o->nr++].rcpt = i;
					return;
				}
			}
		struct qjob *j = job_new(q, QJ_DELIVER, m);
		j->r = xcalloc(1, sizeof *j->r);
		j->r[0].rcpt = i;
		j->nr = 1;
		j->route = r.kind;
		j->path = xstrdup(path);
		j->t_queued = now;
		m->todo++;
		fifo_push(&q->deliver_q, j);
		if (r.kind != QMGR_ROUTE_MAILDIR) {
			g->v = xrealloc(g->v, (g->n + 1) * sizeof *g->v);
			g->v[g->n++] = j;
		}
		return;
	case QMGR_ROUTE_FAIL:
		free(m->fail[i]);
		m->fail[i] = reason_norm(r.reason, '5', "5.0.0 rejected by router");
		return;
	case QMGR_ROUTE_DEFER:
		rcpt_defer(q, m, i, reason_norm(r.reason, '4', "4.0.0 deferred by router"), "none",
			   &t);
		return;
	}
	rcpt_defer(q, m, i, xstrdup("4.3.5 delivery transport not available"), "none", &t);
}

/* ---- loop side: job completions ---- */

static void open_done(struct qmgr *q, struct qjob *j)
{
	struct qmgr_msg *m = j->msg;
	if (j->rc < 0) {
		if (j->corrupt) {
			log_event(m->id, "corrupt queue file moved to corrupt/: %s", j->err);
			q->st.corrupt++;
		} else if (j->err_no != ENOENT) {
			log_event(m->id, "%s (will retry)", j->err);
		}
		msg_drop(q, m);
		return;
	}
	if (q->stopping) {	/* stays in active/ for the next start */
		msg_drop(q, m);
		return;
	}
	double now = wall_time();
	size_t n = m->m.env.nrcpt;
	m->state = QM_OPEN;
	m->pickup = now;
	m->note = xcalloc(n ? n : 1, sizeof *m->note);
	m->fail = xcalloc(n ? n : 1, sizeof *m->fail);
	m->fail_logged = xcalloc(n ? n : 1, 1);
	log_event(m->id, "from=<%s>, size=%lld, nrcpt=%zu (queue active)", m->m.env.sender,
		  m->m.content_len, n);
	struct qm_groups g = { NULL, 0 };
	for (size_t i = 0; i < n; i++)
		if (m->m.env.rcpt[i].status == QUEUE_RCPT_PENDING)
			msg_route(q, m, i, now, &g);
	free(g.v);
	/* no DELIVER job of m has been handed to a worker yet */
	__atomic_store_n(&m->inflight, m->todo, __ATOMIC_RELEASE);
	if (m->todo == 0)
		msg_finish(q, m);
}

static void deliver_done(struct qmgr *q, struct qjob *j)
{
	struct qmgr_msg *m = j->msg;
	struct qm_times t = { j->t_start, j->t_end, route_service(j->route) };
	q->busy_deliver--;
	dest_release(q, j);
	m->todo--;
	for (size_t k = 0; k < j->nr; k++) {
		struct qmgr_rcpt_result *r = &j->r[k];
		switch (r->res) {
		case MAILDIR_OK:
		case MAILDIR_ALREADY:
			log_rcpt(m, r->rcpt, j->relay, &t, "sent", r->reason);
			q->st.sent++;
			break;
		case MAILDIR_PERMFAIL:	/* the FINISH job reports it, then marks it FAILED */
			rcpt_bounced(q, m, r->rcpt, j->relay, &t, r->reason);
			free(m->fail[r->rcpt]);
			m->fail[r->rcpt] = reason_norm(r->reason, '5', "5.0.0 delivery failed");
			break;
		default:
			rcpt_defer(q, m, r->rcpt, xstrdup(r->reason), j->relay, &t);
			break;
		}
	}
	if (m->todo == 0)
		msg_finish(q, m);
}

static void finish_done(struct qmgr *q, struct qjob *j)
{
	struct qmgr_msg *m = j->msg;
	double now = wall_time();
	struct qm_times t = { now, now, NULL };
	for (size_t i = 0; j->marks_ok && i < m->m.env.nrcpt; i++) {
		if (!m->fail[i] || m->m.env.rcpt[i].status != QUEUE_RCPT_FAILED)
			continue;
		if (!m->fail_logged[i])
			rcpt_bounced(q, m, i, "none", &t, m->fail[i]);
		if (q->o.bounce) {
			char dsn[16];
			const char *text;
			split_dsn(m->fail[i], '5', dsn, &text);
			q->o.bounce(q->o.bounce_arg, &m->m, i, dsn, text);
		}
	}
	if (j->dsn_err)
		log_service_event("bounce", m->id,
				  "warning: cannot queue delivery status notification: %s (will retry)",
				  j->dsn_err);
	if (j->delay_err)
		log_service_event("bounce", m->id, "warning: cannot queue delay notification: %s",
				  j->delay_err);
	if (j->dsn_id)
		log_service_event("bounce", m->id, "sender non-delivery notification: %s", j->dsn_id);
	if (j->delay_id)
		log_service_event("bounce", m->id, "sender delay notification: %s", j->delay_id);
	if (j->rc < 0) {
		log_event(m->id, "%s (will retry)", j->err);
	} else if (j->next_attempt == 0) {
		log_event(m->id, "removed");
		q->st.removed++;
	}
	msg_drop(q, m);
	/* the reports are in active/ already (never dropped while stopping) */
	if (j->dsn_id && !q->stopping && !msg_find(q, j->dsn_id))
		msg_add(q, j->dsn_id, 0);
	if (j->delay_id && !q->stopping && !msg_find(q, j->delay_id))
		msg_add(q, j->delay_id, 0);
}

static void scan_done(struct qmgr *q, struct qjob *j)
{
	q->scan_running = 0;
	for (size_t i = 0; i < j->nids && !q->stopping; i++)
		if (!msg_find(q, j->ids[i]))
			msg_add(q, j->ids[i], 1);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmgr *q = arg;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&q->mu);
	struct qjob *list = q->done.head;
	fifo_init(&q->done);
	pthread_mutex_unlock(&q->mu);
	while (list) {
		struct qjob *j = list;
		list = j->next;
		q->busy--;
		switch (j->kind) {
		case QJ_SCAN: scan_done(q, j); break;
		case QJ_OPEN: open_done(q, j); break;
		case QJ_DELIVER: deliver_done(q, j); break;
		case QJ_FINISH: finish_done(q, j); break;
		}
		job_free(j);
	}
	qmgr_pump(q);
}

/* ---- scheduling ---- */

static struct qm_dest **dest_slot(struct qmgr *q, const struct qjob *j, char *key, size_t ksize)
{
	snprintf(key, ksize, "%c:%s", j->route == QMGR_ROUTE_LMTP ? 'L' : 'S', j->path);
	struct qm_dest **pp = &q->dests[id_hash(key, QMGR_DEST_BUCKETS)];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

/* dest_take - count j against its nexthop; 0, or -1 when that is at its limit. */
static int dest_take(struct qmgr *q, struct qjob *j)
{
	if (j->route == QMGR_ROUTE_MAILDIR)
		return 0;
	char key[1100];
	struct qm_dest **pp = dest_slot(q, j, key, sizeof key);
	if (*pp && (*pp)->busy >= (size_t)q->o.destination_concurrency_limit)
		return -1;
	if (!*pp) {
		*pp = xcalloc(1, sizeof **pp);
		(*pp)->key = xstrdup(key);
	}
	(*pp)->busy++;
	j->dest = *pp;
	return 0;
}

static void dest_release(struct qmgr *q, struct qjob *j)
{
	if (!j->dest)
		return;
	char key[1100];
	struct qm_dest **pp = dest_slot(q, j, key, sizeof key);
	if (*pp != j->dest)
		panic("qmgr: destination of a delivery lost");
	if (--j->dest->busy == 0) {
		*pp = j->dest->next;
		free(j->dest->key);
		free(j->dest);
	}
	j->dest = NULL;
}

/* the first waiting delivery whose nexthop is under its concurrency limit */
static struct qjob *next_delivery(struct qmgr *q)
{
	for (struct qjob **pp = &q->deliver_q.head; *pp; pp = &(*pp)->next) {
		struct qjob *j = *pp;
		if (dest_take(q, j) < 0)
			continue;
		*pp = j->next;
		if (q->deliver_q.tail == &j->next)
			q->deliver_q.tail = pp;
		j->next = NULL;
		return j;
	}
	return NULL;
}

static struct qjob *next_job(struct qmgr *q)
{
	struct qjob *j = fifo_pop(&q->finish_q);
	if (j || q->stopping)
		return j;
	if (q->busy_deliver < (size_t)q->nthreads && (j = next_delivery(q)) != NULL)
		return j;
	if (q->scan_wanted && !q->scan_running) {
		j = job_new(q, QJ_SCAN, NULL);
		j->flush = q->scan_flush;
		q->scan_wanted = q->scan_flush = 0;
		q->scan_running = 1;
		return j;
	}
	if (q->ready && q->nopen < (size_t)q->nthreads * QMGR_OPEN_PER_WORKER) {
		struct qmgr_msg *m = q->ready;
		q->ready = m->next;
		if (!q->ready)
			q->ready_tail = &q->ready;
		m->next = NULL;
		m->state = QM_OPENING;
		q->nopen++;
		return job_new(q, QJ_OPEN, m);
	}
	return NULL;
}

static void qmgr_pump(struct qmgr *q)
{
	while (q->busy < (size_t)q->nthreads * QMGR_JOBS_PER_WORKER) {
		struct qjob *j = next_job(q);
		if (!j)
			break;
		job_submit(q, j);
	}
	if (q->stopping && q->busy == 0 && !q->finish_q.head)
		event_active(q->stop_ev, EV_TIMEOUT, 0);
}

static void run_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmgr *q = arg;
	(void)fd;
	(void)what;
	q->scan_wanted = 1;
	qmgr_pump(q);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmgr *q = arg;
	(void)fd;
	(void)what;
	if (q->stop_reported)
		return;
	q->stop_reported = 1;
	if (q->o.stopped)
		q->o.stopped(q->o.stopped_arg);
	else
		event_base_loopexit(q->base, NULL);
}

/* ---- public ---- */

static double dflt(double v, double d)
{
	return v > 0 ? v : d;
}

struct qmgr *qmgr_new(struct event_base *base, const struct qmgr_opts *opts)
{
	struct qmgr *q = xcalloc(1, sizeof *q);
	if (!opts->route || !opts->qdir)
		panic("qmgr_new: route and qdir are required");
	q->base = base;
	q->o = *opts;
	q->qdir = xstrdup(opts->qdir);
	q->myhostname = xstrdup(opts->myhostname ? opts->myhostname : "localhost");
	q->o.minimal_backoff_time_s = dflt(opts->minimal_backoff_time_s, 300);
	q->o.maximal_backoff_time_s = dflt(opts->maximal_backoff_time_s, 4000);
	q->o.maximal_queue_lifetime_s = dflt(opts->maximal_queue_lifetime_s, 5 * 86400);
	q->o.queue_run_delay_s = dflt(opts->queue_run_delay_s, 300);
	if (q->o.destination_concurrency_limit <= 0)
		q->o.destination_concurrency_limit = 20;
	q->nthreads = opts->workers > 0 ? opts->workers : 4;
	q->sync = maildir_syncer_new();
	q->hsize = 1024;
	q->hash = xcalloc(q->hsize, sizeof *q->hash);
	q->ready_tail = &q->ready;
	fifo_init(&q->todo);
	fifo_init(&q->done);
	fifo_init(&q->finish_q);
	fifo_init(&q->deliver_q);
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->done_ev = event_new(base, -1, 0, done_cb, q);
	q->run_ev = event_new(base, -1, EV_PERSIST, run_cb, q);
	q->stop_ev = event_new(base, -1, 0, stop_cb, q);
	if (!q->done_ev || !q->run_ev || !q->stop_ev)
		panic("qmgr_new: event_new failed");
	q->threads = xcalloc((size_t)q->nthreads, sizeof *q->threads);
	for (int i = 0; i < q->nthreads; i++)
		if (pthread_create(&q->threads[i], NULL, worker_main, q) != 0)
			fatal("qmgr: cannot create worker thread %d", i);
	return q;
}

static struct timeval tv_of(double s)
{
	struct timeval tv;
	tv.tv_sec = (time_t)s;
	tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
	return tv;
}

void qmgr_start(struct qmgr *q)
{
	if (q->started || q->stopping)
		return;
	q->started = 1;
	struct timeval tv = tv_of(q->o.queue_run_delay_s);
	evtimer_add(q->run_ev, &tv);
	q->scan_wanted = 1;
	qmgr_pump(q);
}

void qmgr_notify(struct qmgr *q, const char *id)
{
	if (q->stopping || !queue_id_valid(id) || msg_find(q, id))
		return;
	msg_add(q, id, 0);
	qmgr_pump(q);
}

void qmgr_flush(struct qmgr *q)
{
	if (q->stopping)
		return;
	q->scan_wanted = q->scan_flush = 1;
	qmgr_pump(q);
}

void qmgr_stop(struct qmgr *q, double deadline_s)
{
	if (q->stopping)
		return;
	q->stopping = 1;
	evtimer_del(q->run_ev);
	struct timeval tv = tv_of(deadline_s > 0 ? deadline_s : 0);
	evtimer_add(q->stop_ev, &tv);
	qmgr_pump(q);
}

void qmgr_get_stats(const struct qmgr *q, struct qmgr_stats *out)
{
	*out = q->st;
	out->messages = q->nmsg;
	out->jobs = q->busy;
	out->open = q->nopen;
}

static void fifo_free(struct qjob_fifo *f)
{
	struct qjob *j;
	while ((j = fifo_pop(f)) != NULL)
		job_free(j);
}

void qmgr_free(struct qmgr **qp)
{
	struct qmgr *q = qp ? *qp : NULL;
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->pool_stop = 1;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	for (int i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	fifo_free(&q->todo);
	fifo_free(&q->done);
	fifo_free(&q->finish_q);
	fifo_free(&q->deliver_q);
	for (size_t b = 0; b < QMGR_DEST_BUCKETS; b++)
		while (q->dests[b]) {	/* left by jobs that never came back */
			struct qm_dest *d = q->dests[b];
			q->dests[b] = d->next;
			free(d->key);
			free(d);
		}
	for (size_t b = 0; b < q->hsize; b++)
		while (q->hash[b])
			msg_drop(q, q->hash[b]);
	event_free(q->done_ev);
	event_free(q->run_ev);
	event_free(q->stop_ev);
	maildir_syncer_free(&q->sync);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q->threads);
	free(q->hash);
	free(q->qdir);
	free(q->myhostname);
	free(q);
	*qp = NULL;
}
