/*
 * queue: the durable mail queue. Contract and layout in queue.h.
 *
 * File format (one file per message, all integers little-endian):
 *
 *   "SLUICEQ1"                 8-byte magic, written at open
 *   content                    the message, appended while it is received
 *   envelope records           written at commit: tag(1) len(u32) bytes(len)
 *   status bytes               one per recipient ('P', 'D', 'F'), rewritten
 *                              in place by queue_msg_mark
 *   trailer (72 bytes)         magic "SLQTRL1\0", content_off, content_len,
 *                              env_off, env_len (u64), nrcpt, flags (u32),
 *                              content_hash, env_hash, trailer_hash (u64)
 *
 * The trailer sits at the very end: a file cut short has no valid trailer,
 * and the three hashes catch garbled bytes anywhere except the status bytes,
 * which are checked for their three legal values instead.
 */
#include "mta/queue.h"
#include "lib/log.h"
#include "lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define Q_MAGIC "SLUICEQ1"
#define Q_MAGIC_LEN 8
#define Q_TRAILER_MAGIC "SLQTRL1"	/* 7 chars + NUL = 8 bytes */
#define Q_TRAILER_LEN 72
#define Q_FLUSH_BYTES 65536
#define Q_MAX_ENV_BYTES (16u << 20)
#define Q_READ_CHUNK 65536

/* Fixed-width time digits: 6 for seconds (52^6 s = 600 years), 4 for usec. */
#define Q_ID_SEC_DIGITS 6
#define Q_ID_USEC_DIGITS 4

/* Our 52 digits in ASCII order (so ids sort like numbers): no vowels. */
static const char q_alpha[] = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

static const char *const q_dirs[] = { "active", "deferred", "hold", "corrupt" };

const char *queue_dir_name(enum queue_dir d)
{
	if ((unsigned)d >= sizeof q_dirs / sizeof q_dirs[0])
		panic("queue_dir_name: bad dir %d", (int)d);
	return q_dirs[d];
}

/* ---- small helpers ---- */

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/*
 * A word-at-a-time hash for corruption detection (not cryptographic).
 * Every step is a bijection of the state, so one changed word always
 * changes the result.
 */
struct qhash {
	uint64_t h, total;
	unsigned char tail[8];
	unsigned ntail;
};

static void qhash_init(struct qhash *q)
{
	memset(q, 0, sizeof *q);
	q->h = 0x736c7569636551ULL;
}

static inline void qhash_word(struct qhash *q, uint64_t w)
{
	uint64_t h = (q->h ^ w) * 0x9e3779b97f4a7c15ULL;
	q->h = h ^ (h >> 29);
}

static void qhash_add(struct qhash *q, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	q->total += len;
	while (len && q->ntail) {
		q->tail[q->ntail++] = *p++;
		len--;
		if (q->ntail == 8) {
			qhash_word(q, get64(q->tail));
			q->ntail = 0;
		}
	}
	if (q->ntail)
		return;
	for (; len >= 8; p += 8, len -= 8)
		qhash_word(q, get64(p));
	memcpy(q->tail, p, len);
	q->ntail = (unsigned)len;
}

static uint64_t qhash_end(struct qhash *q)
{
	memset(q->tail + q->ntail, 0, 8 - q->ntail);
	qhash_word(q, get64(q->tail));
	qhash_word(q, q->total);
	return q->h;
}

static uint64_t qhash_buf(const void *p, size_t n)
{
	struct qhash q;
	qhash_init(&q);
	qhash_add(&q, p, n);
	return qhash_end(&q);
}

/* qpath - "qdir/sub/id" into buf; -1 (ENAMETOOLONG) if it does not fit. */
static int qpath(char *buf, size_t n, const char *qdir, const char *sub, const char *id)
{
	int r = snprintf(buf, n, "%s/%s/%s", qdir, sub, id);
	if (r < 0 || (size_t)r >= n) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int fsync_dir(const char *qdir, const char *sub)
{
	char path[PATH_MAX];
	if (qpath(path, sizeof path, qdir, sub, ".") < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}


/* pread exactly len bytes; -1 with errno (EIO-like) or 0; short file -> -2. */
static int pread_all(int fd, void *buf, size_t len, long long off)
{
	char *p = buf;
	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return -2;
		p += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

/* ---- queue ids ---- */

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static long long id_last_us;

static void id_digits(char *out, unsigned long long v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = q_alpha[v % 52];
		v /= 52;
	}
}

/*
 * id_make - time in microseconds, strictly increasing within the process
 * (so ids sort by arrival and never repeat here), 'z', then the pid in base
 * 51 (no 'z'), which keeps concurrent receiver processes apart.
 */
static int id_pid;	/* getpid(), cached; 0 again in a forked child (atomic) */
static pthread_once_t id_pid_once = PTHREAD_ONCE_INIT;

static void id_pid_forget(void)
{
	__atomic_store_n(&id_pid, 0, __ATOMIC_RELAXED);
}

static void id_pid_setup(void)
{
	pthread_atfork(NULL, NULL, id_pid_forget);
}

static void id_make(char out[QUEUE_ID_MAX])
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	long long us = (long long)tv.tv_sec * 1000000 + tv.tv_usec;
	pthread_mutex_lock(&id_lock);
	if (us <= id_last_us)
		us = id_last_us + 1;
	id_last_us = us;
	pthread_mutex_unlock(&id_lock);
	id_digits(out, (unsigned long long)(us / 1000000), Q_ID_SEC_DIGITS);
	id_digits(out + Q_ID_SEC_DIGITS, (unsigned long long)(us % 1000000), Q_ID_USEC_DIGITS);
	size_t n = Q_ID_SEC_DIGITS + Q_ID_USEC_DIGITS;
	out[n++] = 'z';
	char rev[16];
	int nr = 0;
	pthread_once(&id_pid_once, id_pid_setup);
	int mypid = __atomic_load_n(&id_pid, __ATOMIC_RELAXED);
	if (!mypid) {
		mypid = (int)getpid();
		__atomic_store_n(&id_pid, mypid, __ATOMIC_RELAXED);
	}
	unsigned long long pid = (unsigned long long)mypid;
	do {
		rev[nr++] = q_alpha[pid % 51];
		pid /= 51;
	} while (pid && nr < (int)sizeof rev);
	while (nr)
		out[n++] = rev[--nr];
	out[n] = 0;
}

int queue_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n < Q_ID_SEC_DIGITS + Q_ID_USEC_DIGITS + 2 || n >= QUEUE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!id[i] || !strchr(q_alpha, id[i]))
			return 0;
	return id[Q_ID_SEC_DIGITS + Q_ID_USEC_DIGITS] == 'z';
}

/* ---- envelopes ---- */

void queue_envelope_free(struct queue_envelope *env)
{
	if (!env)
		return;
	free(env->sender);
	free(env->client_name);
	free(env->client_addr);
	free(env->helo);
	free(env->proto);
	free(env->envid);
	free(env->ret);
	for (size_t i = 0; i < env->nrcpt; i++) {
		free(env->rcpt[i].addr);
		free(env->rcpt[i].orig);
		free(env->rcpt[i].orcpt);
	}
	free(env->rcpt);
	memset(env, 0, sizeof *env);
}

void queue_envelope_add_rcpt(struct queue_envelope *env, const char *addr, const char *orig,
			     unsigned notify, const char *orcpt)
{
	env->rcpt = xrealloc(env->rcpt, (env->nrcpt + 1) * sizeof *env->rcpt);
	struct queue_rcpt *r = &env->rcpt[env->nrcpt++];
	r->addr = xstrdup(addr ? addr : "");
	r->orig = orig ? xstrdup(orig) : NULL;
	r->notify = notify;
	r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
	r->status = QUEUE_RCPT_PENDING;
}

static void rec_add(struct sbuf *b, char tag, const void *p, size_t n)
{
	unsigned char hdr[5];
	hdr[0] = (unsigned char)tag;
	put32(hdr + 1, (uint32_t)n);
	sbuf_add(b, hdr, sizeof hdr);
	sbuf_add(b, p, n);
}

static void rec_str(struct sbuf *b, char tag, const char *s)
{
	if (s)
		rec_add(b, tag, s, strlen(s));
}

static void env_encode(struct sbuf *b, const struct queue_envelope *env)
{
	unsigned char v[8];
	rec_str(b, 'S', env->sender ? env->sender : "");
	put64(v, (uint64_t)(long long)(env->arrival * 1e6 + (env->arrival < 0 ? -0.5 : 0.5)));
	rec_add(b, 'T', v, 8);
	rec_str(b, 'C', env->client_name);
	rec_str(b, 'c', env->client_addr);
	rec_str(b, 'H', env->helo);
	rec_str(b, 'P', env->proto);
	rec_str(b, 'E', env->envid);
	rec_str(b, 'r', env->ret);
	v[0] = env->body_8bit ? 1 : 0;
	rec_add(b, 'B', v, 1);
	v[0] = env->smtputf8 ? 1 : 0;
	rec_add(b, 'U', v, 1);
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct queue_rcpt *r = &env->rcpt[i];
		rec_str(b, 'R', r->addr ? r->addr : "");
		rec_str(b, 'O', r->orig);
		if (r->notify) {
			put32(v, r->notify);
			rec_add(b, 'N', v, 4);
		}
		rec_str(b, 'o', r->orcpt);
	}
}

static int status_valid(int c)
{
	return c == QUEUE_RCPT_PENDING || c == QUEUE_RCPT_DONE || c == QUEUE_RCPT_FAILED;
}

/* Set a string field once; NUL bytes and repeats mean corruption. */
static int field_set(char **dst, const unsigned char *p, size_t n)
{
	if (*dst || memchr(p, 0, n))
		return -1;
	*dst = xstrndup((const char *)p, n);
	return 0;
}

static char **env_field(struct queue_envelope *env, char tag)
{
	struct queue_rcpt *last = env->nrcpt ? &env->rcpt[env->nrcpt - 1] : NULL;
	switch (tag) {
	case 'S': return &env->sender;
	case 'C': return &env->client_name;
	case 'c': return &env->client_addr;
	case 'H': return &env->helo;
	case 'P': return &env->proto;
	case 'E': return &env->envid;
	case 'r': return &env->ret;
	case 'O': return last ? &last->orig : NULL;
	case 'o': return last ? &last->orcpt : NULL;
	}
	return NULL;
}

/* One non-string record. Returns 0, or -1 if it does not belong. */
static int env_record(struct queue_envelope *env, char tag, const unsigned char *p, size_t n,
		      int *have_time)
{
	if (tag == 'T' && n == 8 && !*have_time) {
		*have_time = 1;
		env->arrival = (double)(long long)get64(p) / 1e6;
		return 0;
	}
	if ((tag == 'B' || tag == 'U') && n == 1 && p[0] <= 1) {
		*(tag == 'B' ? &env->body_8bit : &env->smtputf8) = p[0];
		return 0;
	}
	if (tag == 'N' && n == 4 && env->nrcpt && !env->rcpt[env->nrcpt - 1].notify) {
		env->rcpt[env->nrcpt - 1].notify = get32(p);
		return 0;
	}
	if (tag == 'R' && env->nrcpt < QUEUE_MAX_RCPT && !memchr(p, 0, n)) {
		env->rcpt = xrealloc(env->rcpt, (env->nrcpt + 1) * sizeof *env->rcpt);
		struct queue_rcpt *r = &env->rcpt[env->nrcpt++];
		memset(r, 0, sizeof *r);
		r->addr = xstrndup((const char *)p, n);
		r->status = QUEUE_RCPT_PENDING;
		return 0;
	}
	return -1;
}

/* env_decode - parse untrusted envelope bytes; -1 with *why on any doubt. */
static int env_decode(const unsigned char *p, size_t n, struct queue_envelope *env,
		      const char **why)
{
	int have_time = 0;
	memset(env, 0, sizeof *env);
	while (n) {
		if (n < 5)
			return *why = "envelope record header cut short", -1;
		char tag = (char)p[0];
		size_t len = get32(p + 1);
		if (len > n - 5 || len > QUEUE_MAX_FIELD_BYTES)
			return *why = "envelope record length out of bounds", -1;
		char **f = env_field(env, tag);
		int r = f ? field_set(f, p + 5, len) : env_record(env, tag, p + 5, len, &have_time);
		if (r < 0)
			return *why = "bad envelope record", -1;
		p += 5 + len;
		n -= 5 + len;
	}
	if (!env->sender || !have_time)
		return *why = "envelope lacks sender or arrival time", -1;
	return 0;
}

/* ---- writing ---- */

struct queue_writer {
	char id[QUEUE_ID_MAX];
	char *qdir;
	int fd;
	struct sbuf buf;	/* bytes not yet written to fd */
	long long size;		/* content bytes so far */
	struct qhash hash;	/* of the content */
	int err;		/* first errno, 0 = fine */
	int recycled;		/* a spare file: may hold stale bytes past what we write */
	/* commit */
	queue_commit_cb cb;
	void *arg;
	int ok;
	char *errmsg;
	struct queue_writer *next;
};

static void writer_free(struct queue_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	sbuf_free(&w->buf);
	free(w->errmsg);
	free(w->qdir);
	free(w);
}

/* ---- spare files (inode recycling) ---- */

/*
 * A finished queue file is not unlinked but renamed into spare/ (at most
 * Q_SPARE_SLOTS of them, names "s<N>"), and queue_writer_open renames a
 * spare into incoming/<new id> and overwrites it instead of creating a new
 * file. On ext4 every new inode costs a scan past recently deleted ones
 * (without a journal, ext4 does not reuse an inode freed in the last
 * seconds), and every deleted file adds to what that scan has to skip: with
 * thousands of messages a minute this scan was the largest CPU cost of
 * receiving and delivering. Ids are never reused; only inodes are.
 *
 * spare/ is emptied at start-up like incoming/ (the spares' old contents
 * are delivered messages, never acknowledged work). A spare is claimed
 * with one rename, so two receivers never get the same file; the queue
 * manager gives a file away only after its last use of the content.
 */
#define Q_SPARE_SLOTS 256
#define Q_SPARE_MAX_BYTES (1 << 20)	/* bigger files are unlinked, not kept */
#define Q_SPARE_BATCH 64
#define Q_SPARE_RESCAN_S 0.01		/* after finding spare/ empty */

static struct {
	pthread_mutex_t mu;
	char *qdir;			/* the queue the candidates are from */
	char names[Q_SPARE_BATCH][16];	/* candidates from the last readdir */
	size_t n, next;
	double rescan_at;		/* monotonic seconds */
	unsigned slot;			/* producer side: next slot to try */
} q_spare = { PTHREAD_MUTEX_INITIALIZER, NULL, { { 0 } }, 0, 0, 0, 0 };

static double q_mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int spare_name_ok(const char *n)
{
	if (n[0] != 's' || !n[1] || strlen(n) > 8)
		return 0;
	for (const char *p = n + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

/* spare_refill - under q_spare.mu: read up to Q_SPARE_BATCH names of spare/. */
static void spare_refill(const char *qdir)
{
	char path[PATH_MAX];
	q_spare.n = q_spare.next = 0;
	if (qpath(path, sizeof path, qdir, "spare", "") < 0)
		return;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && q_spare.n < Q_SPARE_BATCH && (de = readdir(d)) != NULL)
		if (spare_name_ok(de->d_name))	/* <= 8 chars */
			memcpy(q_spare.names[q_spare.n++], de->d_name, strlen(de->d_name) + 1);
	if (d)
		closedir(d);
	/* receivers reading the same list start at different places */
	if (q_spare.n)
		q_spare.next = (size_t)getpid() % q_spare.n;
}

/*
 * spare_claim - rename a spare file to dst (incoming/<id>) and open it.
 * Returns the fd, or -1 (no spare: create a new file).
 */
static int spare_claim(const char *qdir, const char *dst)
{
	char src[PATH_MAX];
	int fd = -1;
	pthread_mutex_lock(&q_spare.mu);
	if (!q_spare.qdir || strcmp(q_spare.qdir, qdir) != 0) {
		free(q_spare.qdir);
		q_spare.qdir = xstrdup(qdir);
		q_spare.n = q_spare.next = 0;
		q_spare.rescan_at = 0;
	}
	for (int refills = 0; fd < 0 && refills < 2;) {
		if (q_spare.n == 0) {
			if (q_mono_s() < q_spare.rescan_at)
				break;
			spare_refill(qdir);
			refills++;
			if (q_spare.n == 0) {
				q_spare.rescan_at = q_mono_s() + Q_SPARE_RESCAN_S;
				break;
			}
		}
		/* take the candidates in a ring from next; each is tried once */
		size_t i = q_spare.next;
		if (i >= q_spare.n)
			i = 0;
		const char *name = q_spare.names[i];
		int r = qpath(src, sizeof src, qdir, "spare", name) < 0
				? -1 : renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE);
		memmove(q_spare.names[i], q_spare.names[i + 1],
			(q_spare.n - i - 1) * sizeof q_spare.names[0]);
		q_spare.n--;
		q_spare.next = i;
		if (r < 0)
			continue;	/* taken by another receiver (ENOENT), or unusable */
		fd = open(dst, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		struct stat st;
		if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
			close(fd);
			fd = -1;
		}
		if (fd < 0)
			unlink(dst);
	}
	pthread_mutex_unlock(&q_spare.mu);
	return fd;
}

int queue_msg_recycle(const char *qdir, struct queue_msg *m, unsigned flags)
{
	char from[PATH_MAX], to[PATH_MAX];
	struct stat st;
	if (!queue_id_valid(m->id)) {
		errno = EINVAL;
		return -1;
	}
	if (qpath(from, sizeof from, qdir, queue_dir_name(m->dir), m->id) < 0)
		return -1;
	if (m->fd >= 0 && fstat(m->fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size <= Q_SPARE_MAX_BYTES) {
		for (int tries = 0; tries < 4; tries++) {
			unsigned k = __atomic_fetch_add(&q_spare.slot, 1, __ATOMIC_RELAXED) %
				     Q_SPARE_SLOTS;
			char name[16];
			snprintf(name, sizeof name, "s%u", k);
			if (qpath(to, sizeof to, qdir, "spare", name) < 0)
				break;
			if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) {
				if (!(flags & QUEUE_NO_DEFER_LOG))
					queue_defer_reset(qdir, m->id);
				return 0;
			}
			if (errno != EEXIST)
				break;	/* e.g. no spare/ (older queue): just unlink */
		}
	}
	return queue_remove_ex(qdir, m->id, m->dir, QUEUE_NOSYNC);
}

struct queue_writer *queue_writer_open(const char *qdir, char **err_out)
{
	struct queue_writer *w = xcalloc(1, sizeof *w);
	char path[PATH_MAX];
	w->fd = -1;
	w->qdir = xstrdup(qdir);
	sbuf_init(&w->buf);
	qhash_init(&w->hash);
	id_make(w->id);
	if (qpath(path, sizeof path, qdir, "incoming", w->id) == 0 &&
	    (w->fd = spare_claim(qdir, path)) >= 0)
		w->recycled = 1;
	for (int tries = 0; w->fd < 0 && tries < 1000; tries++) {
		id_make(w->id);
		if (qpath(path, sizeof path, qdir, "incoming", w->id) < 0)
			break;
		w->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (w->fd < 0 && errno != EEXIST)
			break;
	}
	if (w->fd < 0) {
		if (err_out)
			*err_out = xasprintf("create queue file in %s/incoming: %s", qdir,
					     strerror(errno));
		writer_free(w);
		return NULL;
	}
	sbuf_add(&w->buf, Q_MAGIC, Q_MAGIC_LEN);
	return w;
}

const char *queue_writer_id(const struct queue_writer *w)
{
	return w->id;
}

long long queue_writer_size(const struct queue_writer *w)
{
	return w->size;
}

static int writer_flush(struct queue_writer *w)
{
	if (!w->err && w->buf.len && write_full(w->fd, w->buf.buf, w->buf.len) < 0)
		w->err = errno;
	sbuf_reset(&w->buf);
	return w->err ? -1 : 0;
}

int queue_writer_write(struct queue_writer *w, const void *buf, size_t len)
{
	if (w->err)
		return -1;
	qhash_add(&w->hash, buf, len);
	w->size += (long long)len;
	sbuf_add(&w->buf, buf, len);
	if (w->buf.len >= Q_FLUSH_BYTES)
		return writer_flush(w);
	return 0;
}

long queue_writer_pread(struct queue_writer *w, long long off, void *buf, size_t len)
{
	if (writer_flush(w) < 0 || off < 0)
		return -1;
	if (off >= w->size)
		return 0;
	if ((long long)len > w->size - off)
		len = (size_t)(w->size - off);
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(w->fd, (char *)buf + got, len - got, (off_t)(Q_MAGIC_LEN + off + (long long)got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : (long)got;
		got += (size_t)n;
	}
	return (long)got;
}

int queue_writer_rewind(struct queue_writer *w)
{
	if (writer_flush(w) < 0)
		return -1;
	if (ftruncate(w->fd, Q_MAGIC_LEN) < 0 || lseek(w->fd, Q_MAGIC_LEN, SEEK_SET) < 0) {
		w->err = errno;
		return -1;
	}
	qhash_init(&w->hash);
	w->size = 0;
	return 0;
}

/*
 * writer_seal - append envelope, status bytes and trailer to the buffer
 * (memory only; this is the copy of env that queue_writer_commit takes).
 */
static int writer_seal(struct queue_writer *w, const struct queue_envelope *env)
{
	if (w->err)
		return -1;
	if (env->nrcpt > QUEUE_MAX_RCPT) {
		w->err = E2BIG;
		return -1;
	}
	struct sbuf e;
	sbuf_init(&e);
	env_encode(&e, env);
	long long content_off = Q_MAGIC_LEN;
	long long env_off = content_off + w->size;
	unsigned char t[Q_TRAILER_LEN];
	memset(t, 0, sizeof t);
	memcpy(t, Q_TRAILER_MAGIC, 8);
	put64(t + 8, (uint64_t)content_off);
	put64(t + 16, (uint64_t)w->size);
	put64(t + 24, (uint64_t)env_off);
	put64(t + 32, (uint64_t)e.len);
	put32(t + 40, (uint32_t)env->nrcpt);
	put64(t + 48, qhash_end(&w->hash));
	put64(t + 56, qhash_buf(e.buf, e.len));
	put64(t + 64, qhash_buf(t, 64));
	sbuf_add(&w->buf, e.buf, e.len);
	for (size_t i = 0; i < env->nrcpt; i++) {
		int st = env->rcpt[i].status;
		sbuf_addc(&w->buf, (char)(status_valid(st) ? st : QUEUE_RCPT_PENDING));
	}
	sbuf_add(&w->buf, t, sizeof t);
	size_t env_len = e.len;
	sbuf_free(&e);
	if (env_len > Q_MAX_ENV_BYTES) {
		w->err = E2BIG;
		return -1;
	}
	return 0;
}

static void writer_seal_or_fail(struct queue_writer *w, const struct queue_envelope *env)
{
	w->next = NULL;
	if (writer_seal(w, env) < 0 && !w->errmsg)
		w->errmsg = xasprintf("queue file: %s", w->err == E2BIG ? "envelope too large"
								 : strerror(w->err));
}

static void writer_unlink(struct queue_writer *w, const char *sub)
{
	char path[PATH_MAX];
	if (qpath(path, sizeof path, w->qdir, sub, w->id) == 0)
		unlink(path);
}

void queue_writer_abort(struct queue_writer **wp)
{
	if (!wp || !*wp)
		return;
	writer_unlink(*wp, "incoming");
	writer_free(*wp);
	*wp = NULL;
}

/* rename incoming/ID -> active/ID, refusing to replace an existing file. */
static int writer_rename(struct queue_writer *w, int in_dfd, int act_dfd)
{
	int r = renameat2(in_dfd, w->id, act_dfd, w->id, RENAME_NOREPLACE);
	if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
		if (faccessat(act_dfd, w->id, F_OK, 0) == 0) {
			errno = EEXIST;
			return -1;
		}
		r = renameat(in_dfd, w->id, act_dfd, w->id);
	}
	return r;
}

static void writer_fail(struct queue_writer *w, const char *what)
{
	if (!w->errmsg)
		w->errmsg = xasprintf("%s: %s", what, strerror(w->err ? w->err : errno));
	w->ok = 0;
}

static int open_dir(const char *qdir, const char *sub)
{
	char path[PATH_MAX];
	if (qpath(path, sizeof path, qdir, sub, ".") < 0)
		return -1;
	return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* writer_cut_stale - a recycled file ends where we stopped writing. 1 or 0. */
static int writer_cut_stale(struct queue_writer *w)
{
	off_t end = lseek(w->fd, 0, SEEK_CUR);
	if (end < 0 || ftruncate(w->fd, end) < 0) {
		w->err = errno;
		return 0;
	}
	return 1;
}

/*
 * commit_file - the per-file half of a commit: write what is buffered,
 * fdatasync, rename incoming/ID -> active/ID. Sets w->ok / w->errmsg.
 * A file that fails is removed from incoming/ and closed here.
 */
static void commit_file(struct queue_writer *w, int in_dfd, int act_dfd)
{
	w->ok = 0;
	if (!w->errmsg) {
		if (writer_flush(w) < 0) {
			writer_fail(w, "write queue file");
		} else if (w->recycled && !writer_cut_stale(w)) {
			writer_fail(w, "truncate queue file");
		} else {
			w->ok = 1;
			if (fdatasync(w->fd) < 0)
				writer_fail(w, "fdatasync queue file");
			if (w->ok && writer_rename(w, in_dfd, act_dfd) < 0)
				writer_fail(w, "rename queue file into active");
		}
	}
	if (!w->ok) {
		writer_unlink(w, "incoming");
		close(w->fd);
		w->fd = -1;
	}
}

/*
 * commit_dir_done - the shared half: after one fsync of active/ (dir_ok)
 * that started after every rename in list, settle each file of list.
 */
static void commit_dir_done(struct queue_writer *list, int dir_ok)
{
	for (struct queue_writer *w = list; w; w = w->next) {
		if (w->ok && !dir_ok) {
			writer_fail(w, "fsync active directory");
			writer_unlink(w, "active");
		}
		if (w->fd >= 0)
			close(w->fd);
		w->fd = -1;
	}
}

/* ---- the committer: batches, sync helpers, one directory thread ---- */

/*
 * Pipeline: the batch thread takes every waiting commit as one batch and
 * runs commit_file on its files together with QUEUE_SYNC_HELPERS helper
 * threads (the fdatasyncs of a batch run concurrently, which lets the
 * block layer merge the device flushes). When the whole batch is synced
 * and renamed, it goes to the directory thread, which fsyncs active/ once
 * for everything renamed before that fsync started (group commit) and
 * only then hands the files back to the loop for the callbacks (the 250).
 * Meanwhile the next batch collects and syncs: under load, batches grow,
 * and there is one directory fsync per batch, not per file.
 */
#define QUEUE_SYNC_HELPERS 3
#define QUEUE_BATCH_MAX 64

struct queue_committer {
	struct event_base *base;
	struct event *ev;	/* made active by the threads when results wait */
	char *qdir;
	int in_dfd, act_dfd;
	pthread_t batch_thr, dir_thr, helper_thr[QUEUE_SYNC_HELPERS];
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* todo or stop, for the batch thread */
	pthread_cond_t work_cv;	/* work or stop, for the helpers */
	pthread_cond_t left_cv;	/* batch finished, for the batch thread */
	pthread_cond_t dir_cv;	/* renamed or dir_stop, for the directory thread */
	int stop, dir_stop;
	struct queue_writer *todo, **todo_tail;		/* sealed, waiting for a batch */
	struct queue_writer *work[QUEUE_BATCH_MAX];	/* the batch being synced */
	size_t nwork, next_work, left;
	struct queue_writer *renamed, **renamed_tail;	/* in active/, waiting for its fsync */
	struct queue_writer *done, **done_tail;		/* settled, waiting for the loop */
};

/* under c->mu: append list to done and wake the loop */
static void committer_push_done(struct queue_committer *c, struct queue_writer *list)
{
	int was_empty = c->done == NULL;
	*c->done_tail = list;
	while (*c->done_tail)
		c->done_tail = &(*c->done_tail)->next;
	if (was_empty)
		event_active(c->ev, EV_READ, 0);
}

/* under c->mu: run commit_file on files of the current batch until none is left */
static void committer_work(struct queue_committer *c)
{
	while (c->next_work < c->nwork) {
		struct queue_writer *w = c->work[c->next_work++];
		pthread_mutex_unlock(&c->mu);
		commit_file(w, c->in_dfd, c->act_dfd);
		pthread_mutex_lock(&c->mu);
		if (--c->left == 0)
			pthread_cond_signal(&c->left_cv);
	}
}

static void *committer_helper_main(void *arg)
{
	struct queue_committer *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->next_work >= c->nwork && !c->stop)
			pthread_cond_wait(&c->work_cv, &c->mu);
		if (c->next_work >= c->nwork)
			break;
		committer_work(c);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void *committer_batch_main(void *arg)
{
	struct queue_committer *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->todo && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (!c->todo)
			break;
		c->nwork = c->next_work = 0;
		while (c->todo && c->nwork < QUEUE_BATCH_MAX) {
			struct queue_writer *w = c->todo;
			c->todo = w->next;
			w->next = NULL;
			c->work[c->nwork++] = w;
		}
		if (!c->todo)
			c->todo_tail = &c->todo;
		c->left = c->nwork;
		for (size_t i = 1; i < c->nwork && i <= QUEUE_SYNC_HELPERS; i++)
			pthread_cond_signal(&c->work_cv);
		committer_work(c);
		while (c->left > 0)
			pthread_cond_wait(&c->left_cv, &c->mu);
		/* every file is synced and renamed, or failed (and is settled) */
		struct queue_writer *failed = NULL, **ftail = &failed;
		for (size_t i = 0; i < c->nwork; i++) {
			struct queue_writer *w = c->work[i];
			if (w->ok) {
				*c->renamed_tail = w;
				c->renamed_tail = &w->next;
			} else {
				*ftail = w;
				ftail = &w->next;
			}
		}
		c->nwork = c->next_work = 0;
		if (c->renamed)
			pthread_cond_signal(&c->dir_cv);
		if (failed)
			committer_push_done(c, failed);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void *committer_dir_main(void *arg)
{
	struct queue_committer *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->renamed && !c->dir_stop)
			pthread_cond_wait(&c->dir_cv, &c->mu);
		if (!c->renamed)
			break;
		struct queue_writer *group = c->renamed;
		c->renamed = NULL;
		c->renamed_tail = &c->renamed;
		pthread_mutex_unlock(&c->mu);
		/* every file of group was renamed before this fsync starts */
		int dir_ok = fsync(c->act_dfd) == 0;
		commit_dir_done(group, dir_ok);
		pthread_mutex_lock(&c->mu);
		committer_push_done(c, group);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* In the loop thread: run the callbacks of finished commits. */
static void committer_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue_committer *c = arg;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&c->mu);
	struct queue_writer *list = c->done;
	c->done = NULL;
	c->done_tail = &c->done;
	pthread_mutex_unlock(&c->mu);
	while (list) {
		struct queue_writer *w = list;
		list = w->next;
		if (w->cb)
			w->cb(w->arg, w->ok, w->ok ? NULL : w->errmsg);
		writer_free(w);
	}
}

struct queue_committer *queue_committer_new(struct event_base *base, const char *qdir)
{
	struct queue_committer *c = xcalloc(1, sizeof *c);
	c->base = base;
	c->qdir = xstrdup(qdir);
	c->in_dfd = open_dir(qdir, "incoming");
	c->act_dfd = open_dir(qdir, "active");
	if (c->in_dfd < 0 || c->act_dfd < 0)
		log_event(NULL, "queue: cannot open %s/incoming or active: %s (commits will fail)",
			  qdir, strerror(errno));
	c->ev = event_new(base, -1, 0, committer_done_cb, c);
	if (!c->ev)
		panic("queue_committer_new: event_new failed");
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pthread_cond_init(&c->work_cv, NULL);
	pthread_cond_init(&c->left_cv, NULL);
	pthread_cond_init(&c->dir_cv, NULL);
	c->todo_tail = &c->todo;
	c->renamed_tail = &c->renamed;
	c->done_tail = &c->done;
	if (pthread_create(&c->dir_thr, NULL, committer_dir_main, c) != 0 ||
	    pthread_create(&c->batch_thr, NULL, committer_batch_main, c) != 0)
		fatal("queue: cannot create committer thread");
	for (int i = 0; i < QUEUE_SYNC_HELPERS; i++)
		if (pthread_create(&c->helper_thr[i], NULL, committer_helper_main, c) != 0)
			fatal("queue: cannot create committer sync thread");
	return c;
}

void queue_committer_free(struct queue_committer **cp)
{
	struct queue_committer *c = cp ? *cp : NULL;
	if (!c)
		return;
	/* the batch thread finishes what waits, then the helpers, then the directory thread */
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->batch_thr, NULL);
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->work_cv);
	pthread_mutex_unlock(&c->mu);
	for (int i = 0; i < QUEUE_SYNC_HELPERS; i++)
		pthread_join(c->helper_thr[i], NULL);
	pthread_mutex_lock(&c->mu);
	c->dir_stop = 1;
	pthread_cond_signal(&c->dir_cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->dir_thr, NULL);
	/* commits are finished (files in active/ or removed); callbacks dropped */
	while (c->done) {
		struct queue_writer *w = c->done;
		c->done = w->next;
		writer_free(w);
	}
	event_free(c->ev);
	if (c->in_dfd >= 0)
		close(c->in_dfd);
	if (c->act_dfd >= 0)
		close(c->act_dfd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->work_cv);
	pthread_cond_destroy(&c->left_cv);
	pthread_cond_destroy(&c->dir_cv);
	free(c->qdir);
	free(c);
	*cp = NULL;
}

void queue_writer_commit(struct queue_committer *c, struct queue_writer *w,
			 const struct queue_envelope *env, queue_commit_cb cb, void *arg)
{
	w->cb = cb;
	w->arg = arg;
	writer_seal_or_fail(w, env);
	pthread_mutex_lock(&c->mu);
	*c->todo_tail = w;
	c->todo_tail = &w->next;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

int queue_writer_commit_sync(struct queue_writer *w, const struct queue_envelope *env,
			     char **err_out)
{
	int in_dfd = open_dir(w->qdir, "incoming");
	int act_dfd = open_dir(w->qdir, "active");
	writer_seal_or_fail(w, env);
	commit_file(w, in_dfd, act_dfd);
	commit_dir_done(w, !w->ok || fsync(act_dfd) == 0);
	int ok = w->ok;
	if (!ok && err_out)
		*err_out = xstrdup(w->errmsg ? w->errmsg : "commit failed");
	if (in_dfd >= 0)
		close(in_dfd);
	if (act_dfd >= 0)
		close(act_dfd);
	writer_free(w);
	return ok ? 0 : -1;
}

/* ---- start-up ---- */

static const char *const q_all_dirs[] = { "incoming", "active", "deferred", "hold", "corrupt",
					  "defer", "spare" };

static int ino_cmp(const void *a, const void *b)
{
	ino_t x = *(const ino_t *)a, y = *(const ino_t *)b;
	return x < y ? -1 : x > y;
}

/* queued_inodes - sorted inode numbers of the files in active/, deferred/, hold/. */
static ino_t *queued_inodes(const char *qdir, size_t *n_out)
{
	static const char *const dirs[] = { "active", "deferred", "hold" };
	char path[PATH_MAX];
	ino_t *v = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < 3; i++) {
		DIR *d = qpath(path, sizeof path, qdir, dirs[i], "") < 0 ? NULL : opendir(path);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			struct stat st;
			if (de->d_name[0] == '.' ||
			    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 256;
				v = xrealloc(v, cap * sizeof *v);
			}
			v[n++] = st.st_ino;
		}
		if (d)
			closedir(d);
	}
	if (n > 1)
		qsort(v, n, sizeof *v, ino_cmp);
	*n_out = n;
	return v;
}

int queue_init(const char *qdir, char **err_out)
{
	char path[PATH_MAX];
	if (mkdir(qdir, 0700) < 0 && errno != EEXIST)
		goto fail;
	for (size_t i = 0; i < sizeof q_all_dirs / sizeof q_all_dirs[0]; i++) {
		if (qpath(path, sizeof path, qdir, q_all_dirs[i], "") < 0)
			goto fail;
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			goto fail;
	}
	/*
	 * Delete what was never acknowledged (incoming/) and old contents
	 * (spare/), except another name of a queued message: after a power
	 * loss (no journal) a rename into active/ can leave its old name on
	 * disk as well, and if the link count was not repaired (e2fsck), the
	 * unlink would free a queued message. Such a name is kept, and a spare
	 * is renamed so that it can never be claimed.
	 */
	size_t nino = 0;
	ino_t *inos = queued_inodes(qdir, &nino);
	static const char *const wipe[] = { "incoming", "spare" };
	for (size_t i = 0; i < 2; i++) {
		if (qpath(path, sizeof path, qdir, wipe[i], "") < 0)
			goto fail_free;
		DIR *d = opendir(path);
		if (!d)
			goto fail_free;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			struct stat st;
			if (de->d_name[0] == '.')
				continue;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode) && nino &&
			    bsearch(&st.st_ino, inos, nino, sizeof *inos, ino_cmp)) {
				char alias[NAME_MAX + 1];
				if (i == 1 && spare_name_ok(de->d_name)) {
					snprintf(alias, sizeof alias, "alias-%.200s", de->d_name);
					renameat(dirfd(d), de->d_name, dirfd(d), alias);
				}
				log_event(NULL, "queue: %s/%s/%s is another name of a queued message "
					  "(left over from a crash); left in place", qdir, wipe[i],
					  de->d_name);
				continue;
			}
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
				log_event(NULL, "queue: cannot remove %s/%s: %s", path, de->d_name,
					  strerror(errno));
		}
		closedir(d);
	}
	free(inos);
	return 0;
fail_free:
	free(inos);
fail:
	if (err_out)
		*err_out = xasprintf("queue_directory %s: %s", qdir, strerror(errno));
	return -1;
}

/* ---- reading ---- */

#define CORRUPT(msg) (*why = (msg), -1)

/* Read and check the trailer; fills the fields of t_out in host form. */
struct q_trailer {
	uint64_t content_off, content_len, env_off, env_len, content_hash, env_hash;
	uint32_t nrcpt;
};

static int trailer_load(int fd, long long size, struct q_trailer *t, const char **why)
{
	unsigned char b[Q_TRAILER_LEN], magic[Q_MAGIC_LEN];
	if (size < Q_MAGIC_LEN + Q_TRAILER_LEN)
		return CORRUPT("file too short");
	int r = pread_all(fd, magic, sizeof magic, 0);
	if (r == 0)
		r = pread_all(fd, b, sizeof b, size - Q_TRAILER_LEN);
	if (r == -1)
		return -2;
	if (r == -2)
		return CORRUPT("file shrank while reading");
	if (memcmp(magic, Q_MAGIC, Q_MAGIC_LEN) != 0)
		return CORRUPT("bad magic");
	if (memcmp(b, Q_TRAILER_MAGIC, 8) != 0 || get64(b + 64) != qhash_buf(b, 64))
		return CORRUPT("bad trailer (incomplete or damaged)");
	t->content_off = get64(b + 8);
	t->content_len = get64(b + 16);
	t->env_off = get64(b + 24);
	t->env_len = get64(b + 32);
	t->nrcpt = get32(b + 40);
	t->content_hash = get64(b + 48);
	t->env_hash = get64(b + 56);
	uint64_t usize = (uint64_t)size;
	if (t->content_off != Q_MAGIC_LEN || t->content_len > usize ||
	    t->env_off != t->content_off + t->content_len || t->env_len > Q_MAX_ENV_BYTES ||
	    t->nrcpt > QUEUE_MAX_RCPT ||
	    t->env_off + t->env_len + t->nrcpt + Q_TRAILER_LEN != usize)
		return CORRUPT("trailer offsets inconsistent with file size");
	return 0;
}

static int content_verify(int fd, const struct q_trailer *t, const char **why)
{
	struct qhash h;
	qhash_init(&h);
	char *buf = xmalloc(Q_READ_CHUNK);
	uint64_t off = 0;
	int r = 0;
	while (r == 0 && off < t->content_len) {
		size_t n = t->content_len - off < Q_READ_CHUNK ? t->content_len - off : Q_READ_CHUNK;
		r = pread_all(fd, buf, n, (long long)(t->content_off + off));
		qhash_add(&h, buf, n);
		off += n;
	}
	free(buf);
	if (r == -1)
		return -2;
	if (r == -2 || qhash_end(&h) != t->content_hash)
		return CORRUPT("content checksum mismatch");
	return 0;
}

/* msg_load - 0, -1 corrupt (*why), -2 I/O error (errno). */
static int msg_load(struct queue_msg *m, long long size, const char **why)
{
	struct q_trailer t;
	int r = trailer_load(m->fd, size, &t, why);
	if (r < 0)
		return r;
	unsigned char *env = xmalloc(t.env_len + t.nrcpt + 1);
	r = pread_all(m->fd, env, t.env_len + t.nrcpt, (long long)t.env_off);
	if (r < 0)	/* pread_all: -1 I/O error, -2 short read */
		r = r == -1 ? -2 : CORRUPT("file shrank while reading");
	if (r == 0 && qhash_buf(env, t.env_len) != t.env_hash)
		r = CORRUPT("envelope checksum mismatch");
	if (r == 0 && env_decode(env, t.env_len, &m->env, why) < 0)
		r = -1;
	if (r == 0 && m->env.nrcpt != t.nrcpt)
		r = CORRUPT("recipient count mismatch");
	if (r == 0) {
		m->status_off = xcalloc(t.nrcpt ? t.nrcpt : 1, sizeof *m->status_off);
		for (size_t i = 0; r == 0 && i < t.nrcpt; i++) {
			if (!status_valid(env[t.env_len + i]))
				r = CORRUPT("bad recipient status byte");
			m->env.rcpt[i].status = env[t.env_len + i];
			m->status_off[i] = (long long)(t.env_off + t.env_len + i);
		}
	}
	free(env);
	if (r == 0)
		r = content_verify(m->fd, &t, why);
	m->content_offset = (long long)t.content_off;
	m->content_len = (long long)t.content_len;
	return r;
}

int queue_msg_open_ex(const char *qdir, enum queue_dir dir, const char *id, struct queue_msg *m,
		      char **err_out, int *corrupt_out, int *errno_out)
{
	char path[PATH_MAX];
	const char *why = NULL;
	struct stat st;
	memset(m, 0, sizeof *m);
	m->fd = -1;
	m->dir = dir;
	if (corrupt_out)
		*corrupt_out = 0;
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		goto ioerr;
	}
	snprintf(m->id, sizeof m->id, "%s", id);
	if (qpath(path, sizeof path, qdir, queue_dir_name(dir), id) < 0)
		goto ioerr;
	m->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (m->fd < 0 || fstat(m->fd, &st) < 0)
		goto ioerr;
	if (!S_ISREG(st.st_mode)) {
		why = "not a regular file";
		goto corrupt;
	}
	int r = msg_load(m, (long long)st.st_size, &why);
	if (r == -2)
		goto ioerr;
	if (r == 0)
		return 0;
corrupt:
	queue_msg_close(m);
	if (corrupt_out)
		*corrupt_out = 1;
	if (errno_out)
		*errno_out = 0;
	if (queue_move_ex(qdir, id, dir, QUEUE_CORRUPT, 0, 0) < 0)
		log_event(id, "cannot move queue file to corrupt/: %s", strerror(errno));
	if (err_out)
		*err_out = xstrdup(why);
	return -1;
ioerr:;
	int e = errno;
	queue_msg_close(m);
	if (errno_out)
		*errno_out = e;
	if (err_out)
		*err_out = xasprintf("open queue file %s/%s: %s", queue_dir_name(dir), id,
				     strerror(e));
	errno = e;
	return -1;
}

int queue_msg_open(const char *qdir, enum queue_dir dir, const char *id, struct queue_msg *m,
		   char **err_out)
{
	return queue_msg_open_ex(qdir, dir, id, m, err_out, NULL, NULL);
}

void queue_msg_close(struct queue_msg *m)
{
	if (!m)
		return;
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	queue_envelope_free(&m->env);
	free(m->status_off);
	m->status_off = NULL;
}

long queue_msg_read(struct queue_msg *m, long long off, void *buf, size_t len)
{
	if (off < 0 || off > m->content_len) {
		errno = EINVAL;
		return -1;
	}
	if ((unsigned long long)len > (unsigned long long)(m->content_len - off))
		len = (size_t)(m->content_len - off);
	for (;;) {
		ssize_t r = pread(m->fd, buf, len, (off_t)(m->content_offset + off));
		if (r < 0 && errno == EINTR)
			continue;
		return (long)r;
	}
}

int queue_msg_set(struct queue_msg *m, size_t i, enum queue_rcpt_status st)
{
	if (i >= m->env.nrcpt || !status_valid(st) || !m->status_off)
		panic("queue_msg_set: bad recipient %zu or status %d", i, (int)st);
	char c = (char)st;
	ssize_t r;
	do
		r = pwrite(m->fd, &c, 1, (off_t)m->status_off[i]);
	while (r < 0 && errno == EINTR);
	if (r != 1) {
		if (r == 0)
			errno = EIO;
		return -1;
	}
	m->env.rcpt[i].status = st;
	return 0;
}

int queue_msg_sync(struct queue_msg *m)
{
	return fdatasync(m->fd);
}

int queue_msg_mark(struct queue_msg *m, size_t i, enum queue_rcpt_status st)
{
	if (queue_msg_set(m, i, st) < 0)
		return -1;
	return queue_msg_sync(m);
}

size_t queue_msg_pending(const struct queue_msg *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->env.nrcpt; i++)
		n += m->env.rcpt[i].status == QUEUE_RCPT_PENDING;
	return n;
}

/* ---- moving, removing, scanning ---- */

int queue_move_ex(const char *qdir, const char *id, enum queue_dir from, enum queue_dir to,
		  double next_attempt, unsigned flags)
{
	char a[PATH_MAX], b[PATH_MAX];
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (qpath(a, sizeof a, qdir, queue_dir_name(from), id) < 0 ||
	    qpath(b, sizeof b, qdir, queue_dir_name(to), id) < 0)
		return -1;
	if (to == QUEUE_DEFERRED) {
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, 0 } };
		ts[1].tv_sec = (time_t)next_attempt;
		ts[1].tv_nsec = (long)((next_attempt - (double)ts[1].tv_sec) * 1e9);
		if (ts[1].tv_nsec < 0 || ts[1].tv_nsec > 999999999)
			ts[1].tv_nsec = 0;
		if (utimensat(AT_FDCWD, a, ts, 0) < 0)
			return -1;
	}
	if (rename(a, b) < 0)
		return -1;
	if (!(flags & QUEUE_NOSYNC) && fsync_dir(qdir, queue_dir_name(to)) < 0)
		return -1;
	return 0;
}

int queue_move(const char *qdir, const char *id, enum queue_dir from, enum queue_dir to,
	       double next_attempt)
{
	return queue_move_ex(qdir, id, from, to, next_attempt, 0);
}

int queue_remove_ex(const char *qdir, const char *id, enum queue_dir dir, unsigned flags)
{
	char path[PATH_MAX];
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (qpath(path, sizeof path, qdir, queue_dir_name(dir), id) < 0)
		return -1;
	if (unlink(path) < 0)
		return -1;
	queue_defer_reset(qdir, id);
	if (!(flags & QUEUE_NOSYNC) && fsync_dir(qdir, queue_dir_name(dir)) < 0)
		return -1;
	return 0;
}

int queue_remove(const char *qdir, const char *id, enum queue_dir dir)
{
	return queue_remove_ex(qdir, id, dir, 0);
}

struct scan_ent {
	char *id;
	double next;
};

static int scan_cmp(const void *a, const void *b)
{
	return strcmp(((const struct scan_ent *)a)->id, ((const struct scan_ent *)b)->id);
}

char **queue_scan(const char *qdir, enum queue_dir dir, size_t *n_out, double **next_out)
{
	char path[PATH_MAX];
	struct scan_ent *e = NULL;
	size_t n = 0, cap = 0;
	DIR *d = NULL;
	if (qpath(path, sizeof path, qdir, queue_dir_name(dir), "") == 0)
		d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		struct stat st;
		if (!queue_id_valid(de->d_name))
			continue;
		if (next_out && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			e = xrealloc(e, cap * sizeof *e);
		}
		e[n].id = xstrdup(de->d_name);
		e[n++].next = next_out ? (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9 : 0;
	}
	if (d)
		closedir(d);
	if (n > 1)
		qsort(e, n, sizeof *e, scan_cmp);
	char **ids = xcalloc(n + 1, sizeof *ids);
	double *next = next_out ? xcalloc(n + 1, sizeof *next) : NULL;
	for (size_t i = 0; i < n; i++) {
		ids[i] = e[i].id;
		if (next)
			next[i] = e[i].next;
	}
	free(e);
	*n_out = n;
	if (next_out)
		*next_out = next;
	return ids;
}

void queue_scan_free(char **ids, size_t n, double *next)
{
	for (size_t i = 0; ids && i < n; i++)
		free(ids[i]);
	free(ids);
	free(next);
}

/* ---- defer log ---- */

static void defer_clean(struct sbuf *b, const char *s)
{
	for (; *s; s++)
		sbuf_addc(b, (*s == '\n' || *s == '\r' || *s == '\t') ? ' ' : *s);
}

int queue_defer_note(const char *qdir, const char *id, const char *rcpt, const char *reason)
{
	char path[PATH_MAX];
	if (!queue_id_valid(id) || qpath(path, sizeof path, qdir, "defer", id) < 0)
		return -1;
	struct sbuf b;
	sbuf_init(&b);
	defer_clean(&b, rcpt ? rcpt : "");
	sbuf_addc(&b, '\t');
	defer_clean(&b, reason ? reason : "");
	sbuf_addc(&b, '\n');
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	int r = fd < 0 ? -1 : write_full(fd, b.buf, b.len);
	if (fd >= 0)
		close(fd);
	sbuf_free(&b);
	return r;
}

#define DEFER_WARNED_LINE "#delay-warning-sent\n"

int queue_defer_warned(const char *qdir, const char *id)
{
	char path[PATH_MAX];
	if (!queue_id_valid(id) || qpath(path, sizeof path, qdir, "defer", id) < 0)
		return 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	while (!found && getline(&line, &cap, f) > 0)
		found = strcmp(line, DEFER_WARNED_LINE) == 0;
	free(line);
	fclose(f);
	return found;
}

int queue_defer_mark_warned(const char *qdir, const char *id)
{
	char path[PATH_MAX];
	if (!queue_id_valid(id) || qpath(path, sizeof path, qdir, "defer", id) < 0)
		return -1;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	int r = fd < 0 ? -1 : write_full(fd, DEFER_WARNED_LINE, sizeof DEFER_WARNED_LINE - 1);
	if (fd >= 0)
		close(fd);
	return r;
}

int queue_defer_reset(const char *qdir, const char *id)
{
	char path[PATH_MAX];
	if (!queue_id_valid(id) || qpath(path, sizeof path, qdir, "defer", id) < 0)
		return -1;
	if (unlink(path) < 0 && errno != ENOENT)
		return -1;
	return 0;
}
