/*
 * bounce: delivery status notifications (RFC 3464) for failed recipients.
 * Owns: whether a DSN is sent (NOTIFY=NEVER/FAILURE, RFC 3461; never a
 * bounce of a bounce: mail from the null sender is reported to
 * 2bounce_notice_recipient instead), the DSN message (multipart/report:
 * text/plain explanation, message/delivery-status, the original as
 * text/rfc822-headers, or message/rfc822 for RET=FULL up to
 * bounce_size_limit), and queueing it with the null sender into active/.
 * Leaves: delivering the DSN (the qmgr treats it as any message), and
 * the decision that a recipient failed (qmgr.c).
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
	long long size_limit;		/* bounce_size_limit: larger originals: headers only */
};

/*
 * bounce_rcpt - report that recipient rcpt of m failed with dsn ("5.1.1")
 * and text (the reason, e.g. "host mx[1.2.3.4] said: 550 5.1.1 ... (in
 * reply to RCPT TO command)"; Remote-MTA and Diagnostic-Code are taken
 * from it). Returns 1 and *id_out (the new queue id, caller frees) when a
 * notification was queued, 0 when none is due (NOTIFY), -1 with *err_out
 * (caller frees) on a queue error.
 */
int bounce_rcpt(const struct bounce_opts *o, struct queue_msg *m, size_t rcpt, const char *dsn,
		const char *text, char **id_out, char **err_out);

#endif
