/*
 * report_run: see report_run.h.
 *
 * A plain file (run_parts): part k's thread counts bytes [off[k], off[k+1])
 * into its own stats; the calling thread counts part 0 into st, then joins
 * the others in order, counts each one's passed-back events into st and
 * adds the part (or counts it again in one pass: rs_part_fits).
 *
 * A pipe or gzip (run_parallel): slots hold chunks in flight, slot seq % nslot for chunk seq.
 * A worker takes the reader lock, waits (on the state lock) until fewer than
 * nslot chunks are out, takes the next seq, reads that chunk's lines from the
 * input, lets the reader lock go, parses the lines into the slot's events
 * and marks the slot ready. The calling thread waits for chunk after chunk
 * in seq order, counts its events and frees its slot. Reading stays in
 * order because seqs are taken under the reader lock.
 */
#include "tools/report_run.h"
#include "tools/report_input.h"
#include "tools/report_parse.h"
#include "lib/util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RR_CHUNK_LINES 8192	/* events a slot has room for at first */
/* A later part checks each message's lines against what it saw arrive
   (rs_add_part) and its tables start empty: about a tenth slower a byte on
   the bench log, so the first part (the calling thread's) gets a tenth of a
   part more and the parts end together (measured: the wait for the last
   part went from 11-29 ms to 0-3 ms of 0.22 s). */
#define RR_FIRST_PART_EXTRA 0.1
#define RR_STR_BLOCK (1024 * 1024)	/* >= RP_ARENA_MIN + RS_KEYS_BYTES */

int rr_default_jobs(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > RR_DEFAULT_MAX_JOBS ? RR_DEFAULT_MAX_JOBS : (int)n;
}

static void progress_line(const char *path, long long bytes, long long lines, int done)
{
	static time_t last;
	time_t now = time(NULL);
	if (!done && now == last)
		return;
	last = now;
	fprintf(stderr, "\rsluice report: %s: %lld lines, %.1f MB%s", path, lines, (double)bytes / 1e6,
		done ? "\n" : "");
}

/* ---- serial ---- */

static int run_serial(struct report_stats *st, struct report_input *in, const char *path, int year,
		      int month, int progress)
{
	struct rp_parser *p = rp_parser_new(year, month);
	struct rp_event ev;
	const char *line, *err = NULL;
	size_t len;
	long long n = 0;
	int r;
	while ((r = ri_next(in, &line, &len, &err)) == 1) {
		rp_parse_line(p, line, len, &ev);
		rs_add(st, &ev);
		if (progress && (++n & 0xffff) == 0)
			progress_line(path, ri_bytes_read(in), n, 0);
	}
	if (progress && n > 0xffff)
		progress_line(path, ri_bytes_read(in), n, 1);
	rp_parser_free(&p);
	if (r < 0) {
		fprintf(stderr, "sluice report: %s: %s\n", path, err);
		return 1;
	}
	return 0;
}

/* ---- parallel ---- */

/* strings of a slot's events: blocks of RR_STR_BLOCK bytes, kept for the
   slot's next chunks (fresh memory each chunk would cost page faults) */
struct rr_blk {
	struct rr_blk *next;
	size_t used;
	char data[RR_STR_BLOCK];
};

struct rr_slot {
	/* the chunk, written by its reader: whole lines (ri_chunk) */
	char *buf;		/* RR_CHUNK_BYTES */
	size_t len;
	/* written by its worker */
	size_t nlines, cap_lines;
	long long cut;		/* lines cut at RP_MAX_LINE_BYTES */
	/* its events, written by its worker: heads of struct rp_event, HEAD_STRIDE bytes apart,
	   and their table keys (rs_keys_make: hashed here, not in the counting thread) */
	unsigned char *heads;
	struct rs_keys *keys;
	struct rr_blk *blk;	/* all the slot's blocks */
	struct rr_blk *cur;	/* the one being filled */
	int ready;		/* state lock */
};

struct rr {
	struct report_input *in;	/* reader lock */
	pthread_mutex_t read_mu;
	pthread_mutex_t mu;	/* the state lock: the fields below */
	pthread_cond_t can_read;	/* a slot was freed, or the end */
	pthread_cond_t ready;	/* a slot is ready, or the end */
	unsigned long long next_read, next_count;
	int eof;		/* set by the reader that met the end or an error */
	unsigned long long total;	/* chunks, once eof */
	char err[256];		/* a read error ("" when none) */
	long long bytes;	/* read so far, for the progress line */
	struct rr_slot *slot;
	size_t nslot;
	int year, month;
};

/* an rp_event's head, rounded up to keep pointers aligned */
#define HEAD_STRIDE ((RP_EVENT_HEAD + 15) & ~(size_t)15)

static struct rp_event *slot_ev(const struct rr_slot *s, size_t i)
{
	return (struct rp_event *)(void *)(s->heads + i * HEAD_STRIDE);
}

static void slot_init(struct rr_slot *s)
{
	s->buf = xmalloc(RR_CHUNK_BYTES);
	s->heads = NULL;
	s->keys = NULL;
	s->cap_lines = 0;
	s->blk = s->cur = NULL;
}

/* room for n events (worker) */
static void slot_lines(struct rr_slot *s, size_t n)
{
	if (n <= s->cap_lines)
		return;
	size_t cap = s->cap_lines ? s->cap_lines * 2 : RR_CHUNK_LINES;
	while (cap < n)
		cap *= 2;
	free(s->heads);
	free(s->keys);
	/* one whole struct rp_event of room after the last head: a pointer to
	   the last one points to a whole object's bytes */
	s->heads = xmalloc(cap * HEAD_STRIDE + sizeof(struct rp_event));
	s->keys = xmalloc(cap * sizeof *s->keys);
	s->cap_lines = cap;
}

static void blk_free_list(struct rr_blk *b)
{
	while (b) {
		struct rr_blk *n = b->next;
		free(b);
		b = n;
	}
}

static void slot_free(struct rr_slot *s)
{
	free(s->buf);
	free(s->heads);
	free(s->keys);
	blk_free_list(s->blk);
}

/* the next block of s (cur's successor, or a new one), empty */
static struct rr_blk *blk_next(struct rr_slot *s)
{
	struct rr_blk *b = s->cur ? s->cur->next : s->blk;
	if (!b) {
		b = xmalloc(sizeof *b);
		b->next = NULL;
		if (s->cur)
			s->cur->next = b;
		else
			s->blk = b;
	}
	b->used = 0;
	return s->cur = b;
}

/* fill s with the next lines of r->in (reader lock held): 1 more may come, 0 the end, -1 an error */
static int slot_read(struct rr *r, struct rr_slot *s)
{
	const char *err = NULL;
	long n = ri_chunk(r->in, s->buf, RR_CHUNK_BYTES, &err);
	if (n < 0) {
		s->len = 0;
		pthread_mutex_lock(&r->mu);
		snprintf(r->err, sizeof r->err, "%s", err ? err : "read error");
		pthread_mutex_unlock(&r->mu);
		return -1;
	}
	s->len = (size_t)n;
	return n > 0;
}

static void slot_parse(struct rr_slot *s, struct rp_parser *p, struct rp_event *ev)
{
	s->cur = NULL;
	rp_parser_arena(p, blk_next(s)->data, RR_STR_BLOCK);
	s->nlines = 0;
	s->cut = 0;
	const char *line = s->buf, *end = s->buf + s->len;
	for (size_t i = 0; line < end; i++) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t len = (size_t)((nl ? nl : end) - line);
		if (len > RP_MAX_LINE_BYTES)
			s->cut++;	/* (rp_parse_line reads the first RP_MAX_LINE_BYTES) */
		slot_lines(s, i + 1);
		rp_parse_line(p, line, len, ev);
		line += len + (nl != NULL);
		s->nlines = i + 1;
		struct rp_event *h = slot_ev(s, i);
		memcpy(h, ev, RP_EVENT_HEAD);	/* its strings stay where the parser put them */
		h->nkv = 0;
		size_t room;	/* >= RS_KEYS_BYTES: the arena is switched below when less is left */
		char *kb = rp_parser_tail(p, &room);
		rp_parser_keep(p, rs_keys_make(h, &s->keys[i], kb));
		if (rp_parser_room(p) < RP_ARENA_MIN + RS_KEYS_BYTES)
			rp_parser_arena(p, blk_next(s)->data, RR_STR_BLOCK);
	}
}

_Static_assert(RR_STR_BLOCK >= RP_ARENA_MIN + RS_KEYS_BYTES, "a block holds any one line");

static void *worker(void *arg)
{
	struct rr *r = arg;
	struct rp_parser *p = rp_parser_new(r->year, r->month);
	struct rp_event *ev = xmalloc(sizeof *ev);
	for (;;) {
		pthread_mutex_lock(&r->read_mu);
		pthread_mutex_lock(&r->mu);
		while (!r->eof && r->next_read - r->next_count >= r->nslot)
			pthread_cond_wait(&r->can_read, &r->mu);
		if (r->eof) {
			pthread_mutex_unlock(&r->mu);
			pthread_mutex_unlock(&r->read_mu);
			break;
		}
		unsigned long long seq = r->next_read++;
		pthread_mutex_unlock(&r->mu);
		struct rr_slot *s = &r->slot[seq % r->nslot];
		int more = slot_read(r, s);
		long long bytes = ri_bytes_read(r->in);
		pthread_mutex_lock(&r->mu);
		r->bytes = bytes;
		if (more <= 0) {
			r->eof = 1;
			r->total = seq + 1;
			pthread_cond_broadcast(&r->can_read);
		}
		pthread_mutex_unlock(&r->mu);
		pthread_mutex_unlock(&r->read_mu);

		slot_parse(s, p, ev);

		pthread_mutex_lock(&r->mu);
		s->ready = 1;
		pthread_cond_broadcast(&r->ready);
		pthread_mutex_unlock(&r->mu);
	}
	pthread_mutex_lock(&r->mu);
	pthread_cond_broadcast(&r->ready);
	pthread_mutex_unlock(&r->mu);
	free(ev);
	rp_parser_free(&p);	/* (the slots' blocks are not its own) */
	return NULL;
}

static int run_parallel(struct report_stats *st, struct report_input *in, const char *path, int jobs,
			int year, int month, int progress)
{
	struct rr r = { .in = in, .year = year, .month = month };
	pthread_mutex_init(&r.read_mu, NULL);
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.can_read, NULL);
	pthread_cond_init(&r.ready, NULL);
	r.nslot = 2 * (size_t)jobs + 1;
	r.slot = xcalloc(r.nslot, sizeof *r.slot);
	for (size_t i = 0; i < r.nslot; i++)
		slot_init(&r.slot[i]);
	/* the time zone read once, here: the threads' localtime_r() then only
	   read it (glibc locks around it anyway, a lock a thread sanitizer does
	   not see; report_time's mktime() is under a lock of ours) */
	tzset();
	pthread_t tid[RR_MAX_JOBS];
	int nt = 0;
	for (; nt < jobs; nt++)
		if (pthread_create(&tid[nt], NULL, worker, &r) != 0)
			break;
	if (nt == 0) {		/* no thread: the same work, here */
		pthread_mutex_lock(&r.mu);
		r.eof = 1;
		pthread_mutex_unlock(&r.mu);
	}
	long long lines = 0, cut = 0;
	for (unsigned long long seq = 0;; seq++) {
		struct rr_slot *s = &r.slot[seq % r.nslot];
		pthread_mutex_lock(&r.mu);
		while (!s->ready && !(r.eof && seq >= r.total))
			pthread_cond_wait(&r.ready, &r.mu);
		int have = s->ready;
		long long bytes = r.bytes;
		pthread_mutex_unlock(&r.mu);
		if (!have)
			break;
		for (size_t i = 0; i < s->nlines; i++)
			rs_add_keys(st, slot_ev(s, i), &s->keys[i]);
		lines += (long long)s->nlines;
		cut += s->cut;
		if (progress)
			progress_line(path, bytes, lines, 0);
		pthread_mutex_lock(&r.mu);
		s->ready = 0;
		r.next_count++;
		pthread_cond_broadcast(&r.can_read);
		pthread_mutex_unlock(&r.mu);
	}
	for (int i = 0; i < nt; i++)
		pthread_join(tid[i], NULL);
	int rc = 0;
	if (nt == 0) {
		rc = run_serial(st, in, path, year, month, progress);
	} else {
		if (progress && lines > 0xffff)
			progress_line(path, r.bytes, lines, 1);
		if (r.err[0]) {
			fprintf(stderr, "sluice report: %s: %s\n", path, r.err);
			rc = 1;
		}
		rs_note_cut_lines(st, cut);
	}
	for (size_t i = 0; i < r.nslot; i++)
		slot_free(&r.slot[i]);
	free(r.slot);
	pthread_cond_destroy(&r.ready);
	pthread_cond_destroy(&r.can_read);
	pthread_mutex_destroy(&r.mu);
	pthread_mutex_destroy(&r.read_mu);
	return rc;
}

/* ---- a plain file in parts ---- */

struct rr_part {
	const char *path;
	long long off, len;
	int year, month;
	struct report_stats *st;	/* part 0: the caller's; the others: their own */
	int as_part;		/* st is a later part's own (rs_add_part) */
	/* part > 0: the events rs_add_part passed back, their strings in blocks */
	unsigned char *heads;
	double *now;		/* the time each takes if it has none (rs_add_now) */
	size_t npend, cap_pend;
	struct rr_slot mem;	/* (only its blocks) */
	long long cut;
	char err[256];		/* "" when none */
	long long *bytes, *lines;	/* all parts' bytes and lines so far (atomic) */
	int progress;		/* this part's thread prints the progress line */
};

static void part_keep(struct rr_part *pt, const struct rp_event *ev, double now)
{
	if (pt->npend == pt->cap_pend) {
		pt->cap_pend = pt->cap_pend ? 2 * pt->cap_pend : 1024;
		/* (a whole struct rp_event of room after the last head, as in a slot) */
		pt->heads = xrealloc(pt->heads, pt->cap_pend * HEAD_STRIDE + sizeof(struct rp_event));
		pt->now = xrealloc(pt->now, pt->cap_pend * sizeof *pt->now);
	}
	pt->now[pt->npend] = now;
	struct rp_event *h = (struct rp_event *)(void *)(pt->heads + pt->npend++ * HEAD_STRIDE);
	memcpy(h, ev, RP_EVENT_HEAD);
	h->nkv = 0;
}

static void *part_run(void *arg)
{
	struct rr_part *pt = arg;
	const char *err;
	struct report_input *in = ri_open_range(pt->path, pt->off, pt->len, &err);
	if (!in) {
		snprintf(pt->err, sizeof pt->err, "%s", err);
		return NULL;
	}
	struct rp_parser *p = rp_parser_new(pt->year, pt->month);
	int later = pt->as_part;
	if (later)		/* the events passed back keep their strings here */
		rp_parser_arena(p, blk_next(&pt->mem)->data, RR_STR_BLOCK);
	struct rp_event *ev = xmalloc(sizeof *ev);
	char kbuf[RS_KEYS_BYTES];
	struct rs_keys k;
	const char *line;
	size_t len;
	long long n = 0, seen = 0;
	int r;
	while ((r = ri_next(in, &line, &len, &err)) == 1) {
		rp_parse_line(p, line, len, ev);
		if (!later) {
			rs_add(pt->st, ev);
		} else {
			rs_keys_make(ev, &k, kbuf);
			double now;
			if (rs_add_part(pt->st, ev, &k, &now)) {
				part_keep(pt, ev, now);
				rp_parser_keep(p, 0);
				if (rp_parser_room(p) < RP_ARENA_MIN)
					rp_parser_arena(p, blk_next(&pt->mem)->data, RR_STR_BLOCK);
			}
		}
		if ((++n & 0xffff) == 0) {
			long long b = ri_bytes_read(in);
			__atomic_add_fetch(pt->bytes, b - seen, __ATOMIC_RELAXED);
			__atomic_add_fetch(pt->lines, 0x10000, __ATOMIC_RELAXED);
			seen = b;
			if (pt->progress)
				progress_line(pt->path, __atomic_load_n(pt->bytes, __ATOMIC_RELAXED),
					      __atomic_load_n(pt->lines, __ATOMIC_RELAXED), 0);
		}
	}
	__atomic_add_fetch(pt->bytes, ri_bytes_read(in) - seen, __ATOMIC_RELAXED);
	__atomic_add_fetch(pt->lines, n & 0xffff, __ATOMIC_RELAXED);
	if (r < 0)
		snprintf(pt->err, sizeof pt->err, "%s", err);
	pt->cut = ri_cut_lines(in);
	free(ev);
	rp_parser_free(&p);
	ri_close(&in);
	return NULL;
}

/* the starts of nparts parts of the size bytes of fd, each at a line's start */
static void part_starts(int fd, long long size, int nparts, long long *off)
{
	char buf[4096];
	off[0] = 0;
	for (int k = 1; k < nparts; k++) {
		/* the line after the '\n' at pos - 1 or later; the first part a
		   little longer (RR_FIRST_PART_EXTRA), as a later one does more a line */
		long long pos = (long long)((double)size * (k + RR_FIRST_PART_EXTRA) /
					    (nparts + RR_FIRST_PART_EXTRA));
		long long at = pos - 1, found = size;
		while (at < size) {
			ssize_t got = pread(fd, buf, sizeof buf, (off_t)at);
			if (got <= 0)
				break;
			const char *nl = memchr(buf, '\n', (size_t)got);
			if (nl) {
				found = at + (nl - buf) + 1;
				break;
			}
			at += got;
		}
		off[k] = found < off[k - 1] ? off[k - 1] : found;
	}
	off[nparts] = size;
}

static int run_parts(struct report_stats *st, const char *path, int fd, long long size, int nparts,
		     int year, int month, int progress)
{
	long long off[RR_MAX_JOBS + 1];
	part_starts(fd, size, nparts, off);
	struct rr_part pt[RR_MAX_JOBS];
	pthread_t tid[RR_MAX_JOBS];
	int started[RR_MAX_JOBS] = { 0 };
	long long bytes = 0, lines = 0;
	tzset();		/* (see run_parallel) */
	for (int k = 0; k < nparts; k++) {
		pt[k] = (struct rr_part){ .path = path, .off = off[k], .len = off[k + 1] - off[k],
					  .year = year, .month = month, .bytes = &bytes, .lines = &lines,
					  .progress = progress && k == 0 };
		if (k == 0) {
			pt[k].st = st;
		} else {
			pt[k].st = rs_new(rs_options(st));
			pt[k].as_part = 1;
		}
	}
	for (int k = 1; k < nparts; k++)
		started[k] = pthread_create(&tid[k], NULL, part_run, &pt[k]) == 0;
	for (int k = 1; k < nparts; k++)	/* no thread: this one does it */
		if (!started[k])
			part_run(&pt[k]);
	part_run(&pt[0]);
	int rc = 0;
	for (int k = 0; k < nparts; k++) {
		if (k > 0 && started[k])
			pthread_join(tid[k], NULL);
		if (k > 0 && rs_part_fits(st, pt[k].st)) {
			/* its events that needed the parts before, in log order, then the rest */
			for (size_t i = 0; i < pt[k].npend; i++)
				rs_add_now(st, (const struct rp_event *)(void *)(pt[k].heads + i * HEAD_STRIDE),
					   pt[k].now[i]);
			rs_merge(st, &pt[k].st);
		} else if (k > 0) {
			/* a queue id in use again: this part once more, in one pass */
			rs_free(&pt[k].st);
			long long again_bytes = 0, again_lines = 0;	/* (counted once already) */
			struct rr_part again = { .path = path, .off = pt[k].off, .len = pt[k].len, .year = year,
						 .month = month, .st = st, .bytes = &again_bytes,
						 .lines = &again_lines };
			part_run(&again);
			pt[k].cut = again.cut;
			memcpy(pt[k].err, again.err, sizeof pt[k].err);
		}
		if (k > 0) {
			free(pt[k].heads);
			free(pt[k].now);
			slot_free(&pt[k].mem);
		}
		rs_note_cut_lines(st, pt[k].cut);
		if (pt[k].err[0] && !rc) {
			fprintf(stderr, "sluice report: %s: %s\n", path, pt[k].err);
			rc = 1;
		}
	}
	if (progress)
		progress_line(path, bytes, lines, 1);
	return rc;
}

int rr_file(struct report_stats *st, const char *path, int jobs, int year_hint, int month_hint,
	    int progress)
{
	const char *err;
	struct report_input *in = ri_open(path, &err);
	if (!in) {
		fprintf(stderr, "sluice report: %s: %s\n", path, err);
		return 1;
	}
	if (jobs > RR_MAX_JOBS)
		jobs = RR_MAX_JOBS;
	long long size = ri_plain_size(in);
	int nparts = size < 0 ? 0 : (int)(size / RR_MIN_PART_BYTES < jobs ? size / RR_MIN_PART_BYTES : jobs);
	int rc;
	if (jobs > 1 && nparts > 1) {
		/* a plain file: parts counted at once, then added up */
		rc = run_parts(st, path, ri_fd(in), size, nparts, year_hint, month_hint, progress);
		ri_close(&in);
		return rc;
	}
	if (jobs > 1 && size < 0)	/* a pipe or gzip: one reader, parsed at once */
		rc = run_parallel(st, in, path, jobs, year_hint, month_hint, progress);
	else
		rc = run_serial(st, in, path, year_hint, month_hint, progress);
	rs_note_cut_lines(st, ri_cut_lines(in));
	ri_close(&in);
	return rc;
}
