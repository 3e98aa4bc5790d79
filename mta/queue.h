/*
 * queue: the durable mail queue under queue_directory ("250 means on disk").
 * Owns: queue ids, the queue file format, writing a message while it is
 * received, the commit (file fsync, rename into active/, directory fsync)
 * done by a committer per event loop that takes waiting commits as a batch
 * (the files are fdatasync'd in parallel by a few threads, then one
 * directory fsync for the batch), recycling finished files (spare/),
 * reading queue files back, durable
 * per-recipient status marks, moving messages between active/, deferred/,
 * hold/ and corrupt/, and scanning the queue at start-up.
 * Leaves: scheduling and delivery (qmgr.c, maildir.c), SMTP (smtp_session.c).
 *
 * Layout: queue_directory/{incoming,active,deferred,hold,corrupt}/<ID>, and
 * spare/ (finished files kept for reuse: creating files is dear on ext4).
 * incoming/ holds messages being received (removed on abort; leftovers
 * are deleted at start-up: they were never acknowledged). A file in
 * active/, deferred/ or hold/ is a committed message.
 * In deferred/ the file's mtime is the time of the next delivery attempt.
 *
 * Queue ids are Postfix long-id style: fixed-width time (seconds and
 * microseconds, base 52, no vowels), 'z', then a per-file discriminator;
 * they sort by arrival time and are unique across processes.
 */
#ifndef SLUICE_MTA_QUEUE_H
#define SLUICE_MTA_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

enum queue_rcpt_status {
	QUEUE_RCPT_PENDING = 'P',	/* still to be delivered */
	QUEUE_RCPT_DONE = 'D',		/* delivered */
	QUEUE_RCPT_FAILED = 'F',	/* permanent failure (bounced) */
};

struct queue_rcpt {
	char *addr;		/* final recipient (after virtual alias expansion) */
	char *orig;		/* original recipient as given in RCPT TO (for DSN, Delivered-To), or NULL */
	unsigned notify;	/* SMTP_NOTIFY_* bits from proto/smtp.h, 0 = default */
	char *orcpt;		/* ORCPT= value or NULL */
	enum queue_rcpt_status status;
};

struct queue_envelope {
	char *sender;		/* envelope sender, "" for the null sender */
	double arrival;		/* wall-clock seconds */
	/* attributes kept for logs, Received:, DSN and later filters; any may be NULL */
	char *client_name, *client_addr, *helo, *proto;	/* proto: "SMTP", "ESMTP", "ESMTPS", ... */
	char *envid, *ret;	/* DSN (RFC 3461) */
	int body_8bit;		/* BODY=8BITMIME */
	int smtputf8;
	size_t nrcpt;
	struct queue_rcpt *rcpt;
};
/* queue_envelope_free - frees the strings and the rcpt array, not env itself. */
void queue_envelope_free(struct queue_envelope *env);
/* queue_envelope_add_rcpt - appends a copy of the strings (orig/orcpt may be NULL). */
void queue_envelope_add_rcpt(struct queue_envelope *env, const char *addr, const char *orig,
			     unsigned notify, const char *orcpt);

/*
 * queue_init - create the directory layout if missing (mode 0700), delete
 * incoming/ leftovers. Returns 0 or -1 with *err_out (caller frees).
 */
int queue_init(const char *qdir, char **err_out);

/* ---- receiving ---- */
struct queue_writer;
/*
 * queue_writer_open - a new message in incoming/ with a fresh queue id.
 * Returns NULL with *err_out (caller frees) on I/O errors.
 */
struct queue_writer *queue_writer_open(const char *qdir, char **err_out);
/* queue_writer_id - the queue id; borrowed until queue_writer_free. */
const char *queue_writer_id(const struct queue_writer *w);
/* queue_writer_write - append message bytes (LF line ends). 0 or -1 (disk error: the
 * writer remembers it and commit fails). Buffered; no fsync here. */
int queue_writer_write(struct queue_writer *w, const void *buf, size_t len);
/* queue_writer_size - message bytes written so far. */
long long queue_writer_size(const struct queue_writer *w);

/*
 * queue_commit_cb - called in the event loop thread once the commit is
 * done: ok = 1 means the message and envelope are fsync'd and renamed into
 * active/ and active/ is fsync'd (reply 250 now); ok = 0 means it failed (err
 * says why; reply 451 4.3.0) and the incoming file is gone.
 */
typedef void (*queue_commit_cb)(void *arg, int ok, const char *err);

/*
 * queue_committer_new - the committer thread for one event loop (needs
 * libevent pthreads support enabled by the caller: evthread_use_pthreads()).
 */
struct queue_committer;
struct queue_committer *queue_committer_new(struct event_base *base, const char *qdir);
/* queue_committer_free - waits for queued commits to finish (their callbacks run? no: they are dropped). */
void queue_committer_free(struct queue_committer **c);

/*
 * queue_writer_commit - hand w (ownership passes) and a copy of env to the
 * committer; cb runs later in the loop. The committer batches whatever
 * commits are waiting: for each, write the envelope, fdatasync; then rename
 * each into active/ and fsync active/ once for the batch.
 */
void queue_writer_commit(struct queue_committer *c, struct queue_writer *w,
			 const struct queue_envelope *env, queue_commit_cb cb, void *arg);
/* queue_writer_commit_sync - the same, blocking, for tools and tests. 0 or -1 + *err_out. */
int queue_writer_commit_sync(struct queue_writer *w, const struct queue_envelope *env, char **err_out);
/*
 * queue_writer_pread - read back content bytes [off, off+len) written so
 * far (flushes the buffer first). Returns the byte count (short at the end),
 * or -1 on an I/O error. For milters, which see the received message.
 */
long queue_writer_pread(struct queue_writer *w, long long off, void *buf, size_t len);
/*
 * queue_writer_rewind - drop all content written so far, so that an edited
 * message (milter header/body changes) can be written instead. 0 or -1.
 */
int queue_writer_rewind(struct queue_writer *w);

/* queue_writer_abort - remove the incoming file and free w (NULL ok). */
void queue_writer_abort(struct queue_writer **w);

/* ---- reading and state ---- */
enum queue_dir { QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT };
const char *queue_dir_name(enum queue_dir d);	/* "active", ... */

struct queue_msg {
	char id[64];
	enum queue_dir dir;
	struct queue_envelope env;
	long long content_offset;	/* message content is bytes [content_offset, content_offset+content_len) */
	long long content_len;
	int fd;				/* open read-write on the queue file */
	/* private: offsets of each recipient's status byte */
	long long *status_off;
};

/*
 * queue_msg_open - open and parse a committed message. Returns 0, or -1
 * with *err_out (caller frees); a file that cannot be parsed is moved to
 * corrupt/ by this call and logged by the caller.
 */
int queue_msg_open(const char *qdir, enum queue_dir dir, const char *id, struct queue_msg *m,
		   char **err_out);
void queue_msg_close(struct queue_msg *m);
/* queue_msg_read - pread content bytes at content offset off; returns bytes or -1. */
long queue_msg_read(struct queue_msg *m, long long off, void *buf, size_t len);
/* queue_msg_mark - durably set recipient i's status (pwrite one byte + fdatasync). 0 or -1. */
int queue_msg_mark(struct queue_msg *m, size_t i, enum queue_rcpt_status st);
/* queue_msg_pending - recipients still PENDING. */
size_t queue_msg_pending(const struct queue_msg *m);

/*
 * queue_move - move id from one directory to another (rename + fsync of the
 * target directory). For QUEUE_DEFERRED, next_attempt (wall seconds) is
 * stored as the file's mtime. 0 or -1.
 */
int queue_move(const char *qdir, const char *id, enum queue_dir from, enum queue_dir to,
	       double next_attempt);
/* queue_remove - delete a finished message (unlink + directory fsync). 0 or -1. */
int queue_remove(const char *qdir, const char *id, enum queue_dir dir);

/*
 * queue_scan - ids in dir, sorted (oldest first). For QUEUE_DEFERRED,
 * *next_out (if non-NULL) gets each file's next-attempt time. Caller frees
 * with queue_scan_free.
 */
char **queue_scan(const char *qdir, enum queue_dir dir, size_t *n_out, double **next_out);
void queue_scan_free(char **ids, size_t n, double *next);

/* Defer log: last reason per recipient, for `sluice queue` (Postfix defer/). */
int queue_defer_note(const char *qdir, const char *id, const char *rcpt, const char *reason);

/* ---- additions (sluice qmgr) ---- */

/* Longest queue id plus NUL; ids are [0-9A-Za-z] minus vowels, 12..24 chars. */
#define QUEUE_ID_MAX 32
/* queue_id_valid - 1 if id has the shape of our queue ids (safe as a file name). */
int queue_id_valid(const char *id);

/* Caps on what queue_msg_open accepts from disk (the file is untrusted). */
#define QUEUE_MAX_RCPT 100000
#define QUEUE_MAX_FIELD_BYTES 65536

/*
 * queue_msg_open_ex - queue_msg_open that also says whether the file was
 * found corrupt and moved to corrupt/ (*corrupt_out = 1) as opposed to an
 * I/O error or a missing file (*corrupt_out = 0; *errno_out, if non-NULL,
 * gets the errno, e.g. ENOENT when someone else moved the file).
 */
int queue_msg_open_ex(const char *qdir, enum queue_dir dir, const char *id, struct queue_msg *m,
		      char **err_out, int *corrupt_out, int *errno_out);

/*
 * queue_msg_set - recipient i's status byte (pwrite) without fdatasync;
 * call queue_msg_sync before relying on it. Lets a caller make several
 * marks durable with one fdatasync. 0 or -1 (errno set).
 */
int queue_msg_set(struct queue_msg *m, size_t i, enum queue_rcpt_status st);
/* queue_msg_sync - fdatasync the queue file. 0 or -1 (errno set). */
int queue_msg_sync(struct queue_msg *m);

/*
 * QUEUE_NOSYNC: skip the directory fsync in queue_move_ex/queue_remove_ex.
 * Only for moves whose loss in a crash is harmless: e.g. removing a file
 * whose recipients are all durably DONE/FAILED (it would come back and be
 * removed again), or active -> deferred (it would just be retried sooner).
 */
#define QUEUE_NOSYNC 1u
int queue_move_ex(const char *qdir, const char *id, enum queue_dir from, enum queue_dir to,
		  double next_attempt, unsigned flags);
int queue_remove_ex(const char *qdir, const char *id, enum queue_dir dir, unsigned flags);

/*
 * queue_defer_reset - forget the defer log of id (before a new round of
 * queue_defer_note calls, so it holds the last reason per recipient).
 * The log lives in queue_directory/defer/<ID>, one "rcpt TAB reason" line
 * per recipient; queue_remove deletes it. 0 or -1.
 */
int queue_defer_reset(const char *qdir, const char *id);

/*
 * queue_defer_warned / queue_defer_mark_warned - whether the delay warning
 * (delay_warning_time) of id went out: a "#delay-warning-sent" line at the
 * end of its defer log (no TAB, so readers of "rcpt TAB reason" lines skip
 * it). The queue manager writes it again after each queue_defer_reset, so
 * the warning is sent once per message. warned: 1 or 0; mark: 0 or -1.
 */
int queue_defer_warned(const char *qdir, const char *id);
int queue_defer_mark_warned(const char *qdir, const char *id);

/*
 * queue_msg_recycle - remove a finished message like queue_remove_ex(...,
 * QUEUE_NOSYNC) (no directory fsync: only for a file whose recipients are
 * all DONE/FAILED), but keep its inode as a spare that queue_writer_open
 * overwrites for a later message (new id) instead of creating a file:
 * spare/ holds at most a few hundred files of <= 1 MiB; others are
 * unlinked. The content must not be read through m->fd afterwards (close
 * it). 0 or -1 (errno set).
 */
int queue_msg_recycle(const char *qdir, struct queue_msg *m, unsigned flags);
/* QUEUE_NO_DEFER_LOG: the caller knows id never had a defer log (first attempt). */
#define QUEUE_NO_DEFER_LOG 2u

#endif
