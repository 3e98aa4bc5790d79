/*
 * maildir: deliver one recipient of a queued message into a Maildir.
 * Owns: the Maildir layout (creating DIR, DIR/tmp, DIR/new, DIR/cur with
 * mode 0700), the file name that makes delivery exactly-once across
 * crashes, the fsyncs that make a delivery durable before it is reported,
 * and the split of errors into temporary (4.x.x) and permanent (5.x.x).
 * Leaves: which path a recipient goes to (the router), when to retry, the
 * queue file's status marks and all logging (qmgr.c).
 *
 * All calls do blocking file I/O: run them in worker threads, never in an
 * event loop. They are thread-safe; threads share one maildir_syncer.
 *
 * Exactly once: the name in new/ is a function of (queue id, recipient
 * index), "<arrival secs>.M<usec>Q<queue id>R<index>.<host>", and the file
 * is moved there with link(2), which fails with EEXIST when an earlier
 * attempt (one that crashed before the queue file was marked) already got
 * through. A file of that name in cur/ ("NAME:2,FLAGS", read by the user
 * since) also counts as delivered.
 *
 * What is written: "Return-Path: <SENDER>\n", "Delivered-To: RCPT\n" (the
 * final recipient, as Postfix does), then the content exactly as queued
 * (LF line ends). CR, LF and other control bytes in the two addresses are
 * replaced by '?' so they cannot inject header lines.
 */
#ifndef SLUICE_MTA_MAILDIR_H
#define SLUICE_MTA_MAILDIR_H

#include <stddef.h>

#include "mta/queue.h"

enum maildir_result {
	MAILDIR_OK,		/* delivered by this call: file and new/ are fsync'd */
	MAILDIR_ALREADY,	/* an earlier attempt delivered it (new/ is fsync'd again) */
	MAILDIR_TEMPFAIL,	/* not delivered; retry later (reason starts with 4.x.x) */
	MAILDIR_PERMFAIL,	/* not delivered; bounce (reason starts with 5.x.x) */
};

/*
 * maildir_syncer: group commit for directory fsyncs. When several threads
 * link files into the same new/ at the same time, one fsync of new/ that
 * starts after all their links covers them all; the others wait for it
 * instead of issuing their own.
 */
struct maildir_syncer;
struct maildir_syncer *maildir_syncer_new(void);
/* maildir_syncer_free - no delivery may be running; accepts NULL, sets *s NULL. */
void maildir_syncer_free(struct maildir_syncer **s);

struct maildir_req {
	const char *path;	/* Maildir root, absolute ("/var/mail/vhosts/example.com/u/") */
	const char *myhostname;	/* for the file name; '/' and ':' are escaped */
	struct queue_msg *msg;	/* open queue file; only read (pread) here */
	size_t rcpt;		/* index into msg->env.rcpt */
	int maybe_delivered;	/* 1: an earlier attempt may have got through: look in new/
				 * and cur/ before writing (0 only on a first attempt) */
};

/*
 * maildir_deliver - deliver req->msg to req->rcpt in req->path.
 * sync: shared syncer, or NULL for a plain fsync of new/.
 * reason: buffer for "4.2.2 text" / "5.2.0 text" on failure, or a short
 * success note ("delivered to maildir"); always NUL-terminated.
 */
enum maildir_result maildir_deliver(const struct maildir_req *req, struct maildir_syncer *sync,
				    char *reason, size_t reason_size);

/*
 * maildir_name - the deterministic file name (no directory) for recipient
 * rcpt of m into buf. Long host names are cut so the name stays within
 * NAME_MAX. Returns the length, or -1 if buf is too small.
 */
int maildir_name(char *buf, size_t size, const struct queue_msg *m, size_t rcpt,
		 const char *myhostname);

/*
 * maildir_errno_class - how a failed file operation is reported: returns
 * MAILDIR_TEMPFAIL or MAILDIR_PERMFAIL and sets *dsn_out to a static
 * enhanced status code (RFC 3463): quota (EDQUOT, EFBIG) 4.2.2, full disk
 * 4.3.1, a path that cannot be a mailbox (ENOTDIR, ELOOP, ENAMETOOLONG,
 * EISDIR, EINVAL) 5.2.0, anything else (EIO, EACCES, EMFILE, ...) 4.2.0.
 */
enum maildir_result maildir_errno_class(int err, const char **dsn_out);

#endif
