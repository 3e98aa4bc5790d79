/*
 * report_input: see report_input.h. zlib's gzread reads gzip members and
 * plain files alike (transparent mode); a regular file that does not start
 * with gzip's magic bytes is read with read(2) instead, which spares zlib's
 * copy through its own buffer.
 */
#include "tools/report_input.h"
#include "tools/report_parse.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct report_input {
	gzFile gz;		/* NULL: a plain file read with read(2) */
	int fd;
	long long nread;	/* bytes read from a plain file */
	char buf[RI_BUF_BYTES];
	size_t pos, len;
	int eof;
	char *line;		/* RP_MAX_LINE_BYTES + 1 */
	long long cut;
	/* ri_chunk: the partial line after the last '\n' given, and whether the
	   rest of a line longer than a chunk is being skipped */
	char *carry;
	size_t carry_len, carry_cap;
	int skipping;
	long long left;		/* ri_open_range: bytes still to read; -1: to the end */
	long long roff;		/* ri_open_range: the next byte's offset (read with pread:
				   another descriptor of the same open file, as stdin's
				   dups are, may move the shared offset) */
};

struct report_input *ri_open(const char *path, const char **err_out)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : dup(0);
	if (fd < 0) {
		*err_out = strerror(errno);
		return NULL;
	}
	unsigned char magic[2];
	ssize_t m = pread(fd, magic, 2, 0);	/* fails on a pipe: zlib then looks */
	gzFile gz = NULL;
	if (m < 0 || (m == 2 && magic[0] == 0x1f && magic[1] == 0x8b)) {
		if (!(gz = gzdopen(fd, "rb"))) {
			close(fd);
			*err_out = "cannot start zlib";
			return NULL;
		}
		gzbuffer(gz, 128 * 1024);
	}
	struct report_input *in = xcalloc(1, sizeof *in);
	in->gz = gz;
	in->fd = fd;
	in->line = xmalloc(RP_MAX_LINE_BYTES + 1);
	in->left = -1;
	return in;
}

struct report_input *ri_open_range(const char *path, long long off, long long len, const char **err_out)
{
	struct report_input *in = ri_open(path, err_out);
	if (!in)
		return NULL;
	if (in->gz || off < 0 || len < 0) {
		*err_out = in->gz ? "a gzip'd file has no byte ranges" : "a bad byte range";
		ri_close(&in);
		return NULL;
	}
	in->left = len;
	in->roff = off;
	return in;
}

void ri_close(struct report_input **in)
{
	if (!in || !*in)
		return;
	if ((*in)->gz)
		gzclose((*in)->gz);	/* closes the fd */
	else
		close((*in)->fd);
	free((*in)->line);
	free((*in)->carry);
	free(*in);
	*in = NULL;
}

/* up to n bytes at buf: the count, 0 at the end, -1 on an error (*err_out) */
static long read_some(struct report_input *in, char *buf, size_t n, const char **err_out)
{
	if (!in->gz) {
		if (in->left >= 0 && (long long)n > in->left)
			n = (size_t)in->left;
		ssize_t r = 0;
		if (n)
			do
				r = in->left >= 0 ? pread(in->fd, buf, n, (off_t)in->roff) : read(in->fd, buf, n);
			while (r < 0 && errno == EINTR);
		if (r > 0 && in->left >= 0)
			in->roff += r;
		if (r < 0) {
			*err_out = strerror(errno);
			return -1;
		}
		in->nread += r;
		if (in->left >= 0)
			in->left -= r;
		return (long)r;
	}
	int r = gzread(in->gz, buf, n > (1u << 30) ? 1u << 30 : (unsigned)n);
	if (r < 0) {
		int zerr;
		const char *m = gzerror(in->gz, &zerr);
		*err_out = zerr == Z_ERRNO ? strerror(errno) : m;
		return -1;
	}
	return r;
}

long ri_chunk(struct report_input *in, char *buf, size_t cap, const char **err_out)
{
	size_t used = 0;
	if (in->carry_len) {
		memcpy(buf, in->carry, in->carry_len);
		used = in->carry_len;
		in->carry_len = 0;
	}
	while (used < cap && !in->eof) {
		long r = read_some(in, buf + used, cap - used, err_out);
		if (r < 0)
			return -1;
		if (r == 0) {
			in->eof = 1;
			break;
		}
		if (in->skipping) {	/* the rest of a line longer than a chunk */
			char *nl = memchr(buf + used, '\n', (size_t)r);
			if (!nl)
				continue;
			size_t rest = (size_t)r - (size_t)(nl + 1 - (buf + used));
			memmove(buf + used, nl + 1, rest);
			r = (long)rest;
			in->skipping = 0;
		}
		used += (size_t)r;
	}
	if (in->eof || !used)
		return (long)used;
	const char *nl = memrchr(buf, '\n', used);
	if (!nl) {		/* one line longer than cap: this piece, then skip */
		in->skipping = 1;
		return (long)used;
	}
	size_t keep = (size_t)(nl + 1 - buf);
	in->carry_len = used - keep;
	if (in->carry_len > in->carry_cap) {
		free(in->carry);
		in->carry_cap = cap;
		in->carry = xmalloc(in->carry_cap);
	}
	memcpy(in->carry, buf + keep, in->carry_len);
	return (long)keep;
}

static int fill(struct report_input *in, const char **err_out)
{
	if (!in->gz) {
		long r = read_some(in, in->buf, sizeof in->buf, err_out);
		if (r < 0)
			return -1;
		in->pos = 0;
		in->len = (size_t)r;
		if (r == 0)
			in->eof = 1;
		return 0;
	}
	int n = gzread(in->gz, in->buf, sizeof in->buf);
	if (n < 0) {
		int zerr;
		const char *m = gzerror(in->gz, &zerr);
		*err_out = zerr == Z_ERRNO ? strerror(errno) : m;
		return -1;
	}
	in->pos = 0;
	in->len = (size_t)n;
	if (n == 0)
		in->eof = 1;
	return 0;
}

int ri_next(struct report_input *in, const char **line_out, size_t *len_out, const char **err_out)
{
	size_t ll = 0;
	int cut = 0, any = 0;
	for (;;) {
		if (in->pos == in->len) {
			if (!in->eof && fill(in, err_out) < 0)
				return -1;
			if (in->pos == in->len) {	/* end of file */
				if (!any)
					return 0;
				in->line[ll] = 0;
				*line_out = in->line;
				*len_out = ll;
				return 1;
			}
		}
		any = 1;
		const char *s = in->buf + in->pos;
		size_t avail = in->len - in->pos;
		const char *nl = memchr(s, '\n', avail);
		size_t n = nl ? (size_t)(nl - s) : avail;
		if (nl && ll == 0) {	/* the whole line is in the buffer: no copy */
			in->pos += n + 1;
			if (n > RP_MAX_LINE_BYTES) {
				in->cut++;
				n = RP_MAX_LINE_BYTES;
			}
			*line_out = s;
			*len_out = n;
			return 1;
		}
		size_t room = RP_MAX_LINE_BYTES - ll;
		if (n > room) {
			if (!cut)
				in->cut++;
			cut = 1;
		}
		memcpy(in->line + ll, s, n < room ? n : room);
		ll += n < room ? n : room;
		in->pos += n + (nl ? 1 : 0);
		if (nl) {
			in->line[ll] = 0;
			*line_out = in->line;
			*len_out = ll;
			return 1;
		}
	}
}

int ri_fd(const struct report_input *in)
{
	return in->fd;
}

long long ri_plain_size(const struct report_input *in)
{
	struct stat sb;
	if (in->gz || fstat(in->fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return -1;
	return (long long)sb.st_size;
}

long long ri_bytes_read(const struct report_input *in)
{
	return in->gz ? (long long)gzoffset(in->gz) : in->nread;
}

long long ri_cut_lines(const struct report_input *in)
{
	return in->cut;
}
