/*
 * report_run: the loop of `sluice report` from log files to its counts:
 * report_input's lines -> report_parse's events -> report_stats.
 * Owns the threads. With jobs > 1:
 * - a plain file of RR_MIN_PART_BYTES or more a part is cut into up to
 *   jobs parts at line starts; the calling thread counts the first into
 *   st, a thread each the others into stats of their own (rs_add_part), at
 *   once; then each later part's passed-back lines are counted into st and
 *   the part is added (rs_merge), in file order; a part whose messages reuse
 *   a queue id st still holds is counted again in one pass (rs_part_fits);
 * - a pipe or a gzip'd file is read in chunks of whole lines (in file
 *   order, by whichever worker is free), jobs worker threads parse chunks
 *   at once, and the calling thread counts the parsed chunks in order.
 * Either way the result is the same, byte for byte, as with jobs = 1 (the
 * one pass): see docs/REPORT.md "Threads".
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
