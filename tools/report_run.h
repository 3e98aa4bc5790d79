/*
 * report_run: the loop of `sluice report` from log files to its counts:
 * report_input's lines -> report_parse's events -> report_stats.
 * Owns the threads: with jobs > 1, one input is read in chunks of whole
 * lines (in file order, by whichever worker is free), jobs worker threads
 * parse chunks at once, and the calling thread counts the parsed chunks in
 * file order. Counting stays in one thread and in log order (a message's
 * state spans lines), so the result is the same, byte for byte, as with
 * jobs = 1 (the serial loop).
 * Leaves the meaning of lines and counts to report_parse / report_stats.
 * Memory: a plain file's parts each hold the tables of what they count
 * (up to jobs times those of one pass); a pipe's about (2 * jobs + 1)
 * chunks of RR_CHUNK_BYTES, their events and their strings (a few MB per
 * job), whatever the file size.
 */
#ifndef SLUICE_REPORT_RUN_H
#define SLUICE_REPORT_RUN_H

#include "tools/report_stats.h"

#define RR_CHUNK_BYTES (512 * 1024)
#define RR_MIN_PART_BYTES (1024 * 1024)	/* a plain file is cut into parts of this or more */
#define RR_MAX_JOBS 16
#define RR_DEFAULT_MAX_JOBS 8	/* each part holds tables of its own: memory grows with N */

/* rr_default_jobs - the online CPUs, at most RR_DEFAULT_MAX_JOBS (1 when unknown). */
int rr_default_jobs(void);

/*
 * rr_file - count the lines of path ("-": stdin; plain or gzip'd) into st,
 * parsing with jobs threads (1: in this thread only; at most RR_MAX_JOBS).
 * year_hint, month_hint: as rp_parser_new. progress: a progress line on
 * stderr while it runs. Returns 0, or 1 after printing "sluice report: PATH:
 * REASON" to stderr when the file can't be opened or read (the lines read
 * before a read error are counted).
 */
int rr_file(struct report_stats *st, const char *path, int jobs, int year_hint, int month_hint,
	    int progress);

#endif
