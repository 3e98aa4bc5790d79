/*
 * bounce: delivery status notifications (RFC 3464) for failed and delayed
 * recipients.
 * Owns: whether a DSN is sent (NOTIFY=NEVER/FAILURE/DELAY, RFC 3461; never a
 * bounce of a bounce: mail from the null sender is reported to
 * 2bounce_notice_recipient instead), the DSN message (multipart/report:
 * text/plain explanation, message/delivery-status with one group per
 * recipient, the original as text/rfc822-headers, or message/rfc822 for
 * RET=FULL up to bounce_size_limit), and queueing it with the null sender
 * into active/.
 * Leaves: delivering the DSN (the qmgr treats it as any message), and
 * the decision that a recipient failed or is late (qmgr.c).
 *
 * Blocking file I/O (reads the original, fsyncs the new queue file).
 */
#ifndef SLUICE_MTA_BOUNCE_H
#define SLUICE_MTA_BOUNCE_H

#include <stddef.h>

struct queue_msg;

struct bounce_opts {
	const char *qdir;		/* queue_directory */
	const char *myhostname;		/* Reporting-MTA, From: MAILER-DAEMON@ */
	const char *double_bounce_rcpt;	/* 2bounce_notice_recipient, fully qualified */
	const char *double_bounce_sender; /* double_bounce_sender, fully qualified: the
					 * envelope sender of postmaster copies */
	long long size_limit;		/* bounce_size_limit: larger originals: headers only */
	double queue_lifetime_s;	/* maximal_queue_lifetime: Will-Retry-Until of a delay
					 * warning; 0 = not given */
};

enum bounce_kind {
	BOUNCE_FAILED,		/* "Undelivered Mail Returned to Sender", Action: failed */
	BOUNCE_DELAYED,		/* "Delayed Mail (still being retried)", Action: delayed */
};

/* One recipient of a report. Strings are borrowed for the call. */
struct bounce_item {
	size_t rcpt;		/* index into m->env.rcpt */
	const char *dsn;	/* "5.1.1" (FAILED) or "4.4.1" (DELAYED) */
	const char *text;	/* the reason, e.g. "host mx[1.2.3.4] said: 550 5.1.1 ... (in
				 * reply to RCPT TO command)"; Remote-MTA and Diagnostic-Code are
				 * taken from it */
};

/*
 * bounce_msg - one notification for message m listing items[0..n) (RFC 3464:
 * one per-recipient group each; Postfix sends one bounce per message).
 * Recipients whose NOTIFY excludes the kind (RFC 3461: NEVER, or a list
 * without FAILURE / DELAY) are left out. FAILED mail from the null sender
 * goes to double_bounce_rcpt (a "postmaster copy", sent with envelope sender
 * double_bounce_sender); a DELAYED report is never sent for it. Mail from
 * double_bounce_sender that fails is discarded (returns 0), as Postfix does,
 * so an undeliverable postmaster copy cannot start a loop. A
 * DELAYED report carries the headers only. Returns 1 and *id_out (the new
 * queue id, caller frees) when a notification was queued (committed with
 * fsync), 0 when none is due, -1 with *err_out (caller frees) on a queue
 * error. Blocking: call from worker threads.
 */
int bounce_msg(const struct bounce_opts *o, enum bounce_kind kind, struct queue_msg *m,
	       const struct bounce_item *items, size_t n, char **id_out, char **err_out);

#endif
