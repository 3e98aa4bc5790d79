/*
 * report_input: log files -> lines, for `sluice report`.
 * Owns opening (a path, or "-" for stdin), gzip (zlib, for gzip'd files and
 * pipes; a regular plain file is read with read(2)), buffering, splitting at
 * '\n' and the line cap.
 * Leaves the meaning of a line to report_parse.
 * Memory: one buffer of RI_BUF_BYTES plus one line of RP_MAX_LINE_BYTES,
 * whatever the file size. A longer line is cut to RP_MAX_LINE_BYTES (the
 * rest of it is skipped) and counted in ri_cut_lines().
 */
#ifndef SLUICE_REPORT_INPUT_H
#define SLUICE_REPORT_INPUT_H

#include <stddef.h>

#define RI_BUF_BYTES (256 * 1024)

struct report_input;

/* ri_open - NULL with *err_out (static or strerror text) when it can't be opened. */
struct report_input *ri_open(const char *path, const char **err_out);
void ri_close(struct report_input **in);

/*
 * ri_open_range - ri_open of the len bytes of a plain file from byte off
 * (report_run cuts a file into parts at line starts); NULL with *err_out
 * for a gzip'd file, a pipe, or any ri_open failure. Read with pread: the
 * ranges of one file may be read at once through descriptors that share
 * an offset ("-" when stdin is a file: each is a dup of 0).
 */
struct report_input *ri_open_range(const char *path, long long off, long long len, const char **err_out);

/*
 * ri_next - the next line without its '\n': *len_out bytes at *line_out (not
 * NUL-terminated), valid until the next call. Returns 1, 0 at the end, -1 on
 * a read error (*err_out).
 */
int ri_next(struct report_input *in, const char **line_out, size_t *len_out, const char **err_out);

/*
 * ri_chunk - the next whole lines, copied to buf (cap bytes, more than
 * RP_MAX_LINE_BYTES), for readers that split lines themselves (report_run's
 * workers): returns the bytes put in buf, each line ended by '\n' but
 * perhaps the input's last; 0 at the end; -1 on a read error (*err_out).
 * The partial line at the end of a read waits for the next call. A line
 * longer than cap comes as one piece of cap bytes without its '\n' (the
 * rest of it is skipped): the caller cuts it to RP_MAX_LINE_BYTES and counts
 * it, as ri_next would. Do not mix with ri_next on one input.
 */
long ri_chunk(struct report_input *in, char *buf, size_t cap, const char **err_out);

/* ri_fd - the file descriptor (for pread on a plain file; still ri_close's). */
int ri_fd(const struct report_input *in);

/* ri_plain_size - the size of a regular plain file (not gzip'd), or -1. */
long long ri_plain_size(const struct report_input *in);

/* Compressed bytes read so far (for a progress line) and lines cut. */
long long ri_bytes_read(const struct report_input *in);
long long ri_cut_lines(const struct report_input *in);

#endif
