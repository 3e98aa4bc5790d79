/*
 * qmgr: the queue manager (Postfix's qmgr + virtual in one process).
 * Owns: which queued message is worked on when, routing each recipient
 * (through the caller's callback), handing deliveries (Maildir, or LMTP/SMTP
 * through the caller's deliver callback) to a fixed pool of
 * worker threads (at most destination_concurrency_limit of them to one
 * LMTP/SMTP nexthop at a time), the per-recipient outcome (DONE / FAILED marks, the
 * "to=..., status=..." log lines), retry with backoff through deferred/,
 * expiry after maximal_queue_lifetime, when a delivery status
 * notification is due (one per message and attempt listing every recipient
 * that failed; one delay warning per message after delay_warning_time),
 * and removing finished messages.
 * Leaves: the queue file format and moves (queue.c), writing Maildirs
 * (maildir.c), the routing tables (the caller), and building the DSN
 * messages (the caller's dsn callback, bounce.c).
 *
 * Threads: everything here is called in the event loop thread, and every
 * callback runs there. Blocking file I/O (opening and checking queue files,
 * Maildir writes, fsyncs, scans, moves) runs in the workers; at most
 * `workers` deliveries are in flight, and at most a few messages per worker
 * are open at once, so a backlog of thousands costs memory for their ids
 * only, not file descriptors.
 *
 * Durability: a recipient is marked DONE (pwrite + fdatasync) only after
 * its Maildir file and new/ are fsync'd; a message is removed only after
 * every recipient is durably DONE or FAILED. A crash at any point leads to
 * at most a repeated attempt, which maildir.c recognises (exactly once).
 *
 * Log lines (queue id prefix added by log_event):
 *   from=<S>, size=N, nrcpt=N (queue active)
 *   to=<R>, orig_to=<O>, relay=virtual, delay=1.2, delays=a/b/c/d, dsn=2.0.0,
 *     status=sent (delivered to maildir)        (orig_to only if it differs)
 *   ... status=deferred (reason)  /  status=bounced (reason)
 *   sender non-delivery notification: ID   /   sender delay notification: ID
 *   warning: cannot queue delivery status notification: reason (will retry)
 *   removed
 *   corrupt queue file moved to corrupt/: reason
 * delays: a = arrival to pick-up, b = waiting for a worker, c = 0 (no
 * connection), d = the delivery itself; seconds.
 */
#ifndef SLUICE_MTA_QMGR_H
#define SLUICE_MTA_QMGR_H

#include <stddef.h>

#include "mta/queue.h"

struct event_base;

enum qmgr_route_kind {
	QMGR_ROUTE_MAILDIR = 1,	/* deliver into the Maildir at path */
	QMGR_ROUTE_FAIL,	/* permanent: bounce with reason */
	QMGR_ROUTE_DEFER,	/* temporary: keep, retry later with reason */
	QMGR_ROUTE_LMTP,	/* over LMTP to nexthop, by qmgr_opts.deliver */
	QMGR_ROUTE_SMTP,	/* over SMTP to nexthop, by qmgr_opts.deliver */
	/* without a deliver callback, LMTP/SMTP (and unknown kinds) are deferred with 4.3.5 */
};

/*
 * What the router says for one recipient. Strings are borrowed from the
 * router: they must stay valid until the route callback returns to the
 * qmgr, which copies what it keeps.
 */
struct qmgr_route {
	enum qmgr_route_kind kind;
	const char *path;	/* MAILDIR: absolute Maildir root, e.g. "/var/mail/vhosts/d/u/" */
	const char *reason;	/* FAIL/DEFER: "5.1.1 text" / "4.x.x text"; the code is optional
				 * (default 5.0.0 / 4.0.0; its class is forced to 5 / 4) */
	const char *nexthop;	/* LMTP/SMTP: passed to qmgr_opts.deliver as is */
};

/*
 * qmgr_route_fn - called in the loop thread for each PENDING recipient when
 * its message is picked up (again on every retry). out is zeroed before the
 * call. Return 0, or -1 to defer the recipient ("4.3.0 routing failed").
 */
typedef int (*qmgr_route_fn)(void *arg, const char *rcpt_addr, struct qmgr_route *out);

/*
 * qmgr_bounce_fn - called in the loop thread once recipient rcpt of m is
 * durably FAILED (after the dsn callback queued its report). m is valid
 * during the call only; its content must not be read. For tests and
 * statistics: the report itself is built by qmgr_dsn_fn.
 */
typedef void (*qmgr_bounce_fn)(void *arg, const struct queue_msg *m, size_t rcpt,
			       const char *dsn, const char *reason);

/* One recipient of a delivery status notification (strings borrowed for the call). */
struct qmgr_dsn_rcpt {
	size_t rcpt;		/* index into m->env.rcpt */
	const char *dsn;	/* "5.1.1" / "4.4.1" */
	const char *text;	/* the reason without the code */
};

enum qmgr_dsn_kind { QMGR_DSN_FAILED, QMGR_DSN_DELAYED };

/*
 * qmgr_dsn_fn - called in a worker thread with m open (read it with
 * queue_msg_read): once per message and delivery attempt with every
 * recipient that failed in it (QMGR_DSN_FAILED, before their FAILED marks:
 * a crash in between repeats the report rather than losing it), and once
 * per message with the recipients still deferred when it has been queued
 * longer than delay_warning_time_s (QMGR_DSN_DELAYED). Returns 1 and
 * *id_out (a new queue id in active/, caller of the callback frees; the
 * qmgr picks it up), 0 when no report is due (NOTIFY), -1 with *err_out
 * (freed by the qmgr): the failed recipients then stay deferred and are
 * tried again later.
 */
typedef int (*qmgr_dsn_fn)(void *arg, enum qmgr_dsn_kind kind, struct queue_msg *m,
			   const struct qmgr_dsn_rcpt *rcpts, size_t n, char **id_out,
			   char **err_out);

/* One recipient of a delivery (LMTP/SMTP: several per transaction). */
struct qmgr_rcpt_result {
	size_t rcpt;		/* in: index into m->env.rcpt */
	int res;		/* out: MAILDIR_OK, MAILDIR_TEMPFAIL or MAILDIR_PERMFAIL */
	char reason[512];	/* out: "2.0.0 250 2.0.0 Ok: queued as X" / "4.x.x ..." / "5.x.x ..." */
};

/*
 * qmgr_deliver_fn - called in a worker thread for recipients r[0..n) of m
 * that were routed QMGR_ROUTE_LMTP or QMGR_ROUTE_SMTP to the same nexthop
 * (at most QMGR_RCPTS_PER_DELIVERY: one transaction, one MAIL, several
 * RCPT, one DATA). m is open; read its content only with queue_msg_read
 * (other workers share it). Fills every r[i].res and reason; relay gets the
 * peer for the log ("mx[192.0.2.1]:25", or "none").
 */
typedef void (*qmgr_deliver_fn)(void *arg, enum qmgr_route_kind kind, const char *nexthop,
				struct queue_msg *m, struct qmgr_rcpt_result *r, size_t n,
				char *relay, size_t relay_size);

/* Recipients of one message per LMTP/SMTP delivery (Postfix *_destination_recipient_limit). */
#define QMGR_RCPTS_PER_DELIVERY 50

struct qmgr_opts {
	const char *qdir;		/* queue_directory (copied) */
	const char *myhostname;		/* for Maildir file names (copied) */
	int workers;			/* delivery threads; 0 = 4 */
	/* seconds; 0 = the Postfix default */
	double minimal_backoff_time_s;	/* 300 */
	double maximal_backoff_time_s;	/* 4000 */
	double maximal_queue_lifetime_s;	/* 5 days */
	double queue_run_delay_s;	/* 300: how often deferred/ (and active/) are scanned */
	qmgr_route_fn route;		/* required */
	void *route_arg;
	qmgr_deliver_fn deliver;	/* optional: LMTP/SMTP (called in worker threads) */
	void *deliver_arg;
	qmgr_bounce_fn bounce;		/* optional */
	void *bounce_arg;
	qmgr_dsn_fn dsn;		/* optional: builds the reports (called in worker threads) */
	void *dsn_arg;
	double delay_warning_time_s;	/* 0 = no delay warnings (Postfix default) */
	int destination_concurrency_limit;	/* LMTP/SMTP deliveries in flight per nexthop;
						 * 0 = 20 (default_destination_concurrency_limit) */
	void (*stopped)(void *arg);	/* optional, see qmgr_stop; NULL = event_base_loopexit */
	void *stopped_arg;
};

struct qmgr;

/*
 * qmgr_new - a queue manager on base (the caller's loop; libevent thread
 * support must be enabled with evthread_use_pthreads() before the base is
 * created). Starts the worker threads; does not touch the queue until
 * qmgr_start. The queue directory must exist (queue_init).
 */
struct qmgr *qmgr_new(struct event_base *base, const struct qmgr_opts *opts);

/*
 * qmgr_start - resume everything in active/ (only recipients still PENDING
 * are delivered), move deferred messages that are due into active/, and
 * from then on rescan every queue_run_delay_s.
 */
void qmgr_start(struct qmgr *q);

/*
 * qmgr_notify - id was just committed into active/ (first attempt). Ids we
 * already know, or that are not ids, are ignored; a stale id (file gone) is
 * dropped silently. Lost notifications are caught by the next rescan.
 */
void qmgr_notify(struct qmgr *q, const char *id);

/* qmgr_flush - move every deferred message back to active/ now and deliver. */
void qmgr_flush(struct qmgr *q);

/*
 * qmgr_stop - take no new work; in-flight jobs finish (messages they leave
 * behind stay in active/ for the next start). When none is left, or after
 * deadline_s seconds, calls opts->stopped (or event_base_loopexit). Then
 * the caller frees the qmgr.
 */
void qmgr_stop(struct qmgr *q, double deadline_s);

/* qmgr_free - join the workers (waits for their current job), free all. NULL ok. */
void qmgr_free(struct qmgr **q);

struct qmgr_stats {
	size_t messages;	/* known to the qmgr now (waiting, open or finishing) */
	size_t jobs;		/* handed to workers and not yet back */
	size_t open;		/* messages with an open queue file */
	unsigned long long sent, deferred, bounced, removed, corrupt;	/* per recipient / message */
};
void qmgr_get_stats(const struct qmgr *q, struct qmgr_stats *out);

#endif
