/*
 * spam_bayes_learn: files, Maildirs and mboxes into spam_bayes_learn_raw.
 */
#include "milters/spam/spam_bayes_learn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

int spam_bayes_mbox_next(const char *data, size_t len, size_t *pos, const char **msg_out,
			 size_t *len_out)
{
	size_t p = *pos;
	if (p >= len)
		return 0;
	/* skip the "From " line */
	if (len - p >= 5 && !memcmp(data + p, "From ", 5)) {
		const char *nl = memchr(data + p, '\n', len - p);
		p = nl ? (size_t)(nl + 1 - data) : len;
	}
	size_t start = p, end = len;
	/* the next separator: a "From " line after an empty line */
	for (size_t q = start; q < len;) {
		const char *nl = memchr(data + q, '\n', len - q);
		if (!nl)
			break;
		size_t line = (size_t)(nl + 1 - data);
		if (line + 5 <= len && !memcmp(data + line, "From ", 5) &&
		    ((line >= start + 2 && data[line - 2] == '\n') ||
		     (line >= start + 3 && data[line - 2] == '\r' && data[line - 3] == '\n'))) {
			end = line;
			break;
		}
		q = line;
	}
	*msg_out = data + start;
	*len_out = end - start;
	*pos = end;
	return 1;
}

static void count(struct spam_bayes_progress *p, enum spam_bayes_learn_result r)
{
	p->messages++;
	switch (r) {
	case SPAM_BAYES_LEARNED:
	case SPAM_BAYES_MOVED:
		p->learned++;
		break;
	case SPAM_BAYES_ALREADY:
		p->already++;
		break;
	case SPAM_BAYES_FORGOTTEN:
		p->forgotten++;
		break;
	case SPAM_BAYES_UNKNOWN:
		p->unknown++;
		break;
	}
}

int spam_bayes_learn_buffer(struct spam_bayes *b, enum spam_bayes_op op, const char *path,
			    const char *data, size_t len, spam_bayes_progress_fn fn, void *arg,
			    struct spam_bayes_progress *p, char **err_out)
{
	const char *msg;
	size_t mlen, pos = 0;
	int mbox = len >= 5 && !memcmp(data, "From ", 5);

	p->path = path;
	p->error = NULL;
	while (pos < len) {
		if (mbox) {
			if (!spam_bayes_mbox_next(data, len, &pos, &msg, &mlen))
				break;
		} else {
			msg = data;
			mlen = len;
			pos = len;
		}
		enum spam_bayes_learn_result r;
		if (spam_bayes_learn_raw(b, msg, mlen, op, 0, &r, err_out) < 0)
			return -1;
		count(p, r);
		if (fn)
			fn(arg, p);
	}
	return 0;
}

static void file_error(const char *path, const char *why, spam_bayes_progress_fn fn, void *arg,
		       struct spam_bayes_progress *p)
{
	p->errors++;
	p->path = path;
	p->error = why;
	if (fn)
		fn(arg, p);
	p->error = NULL;
}

static int learn_file(struct spam_bayes *b, enum spam_bayes_op op, const char *path,
		      spam_bayes_progress_fn fn, void *arg, struct spam_bayes_progress *p,
		      char **err_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		file_error(path, strerror(errno), fn, arg, p);
		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		if (!S_ISREG(st.st_mode))
			file_error(path, "not a regular file", fn, arg, p);
		return 0;
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		file_error(path, strerror(errno), fn, arg, p);
		return 0;
	}
	int rc = spam_bayes_learn_buffer(b, op, path, map, (size_t)st.st_size, fn, arg, p, err_out);
	munmap(map, (size_t)st.st_size);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* learn_dir_files - the regular files of dir (not dot files), by name. */
static int learn_dir_files(struct spam_bayes *b, enum spam_bayes_op op, const char *dir,
			   spam_bayes_progress_fn fn, void *arg, struct spam_bayes_progress *p,
			   char **err_out)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!d) {
		file_error(dir, strerror(errno), fn, arg, p);
		return 0;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *full = xasprintf("%s/%s", dir, de->d_name);
		struct stat st;
		if (stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
			free(full);
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n++] = full;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			rc = learn_file(b, op, names[i], fn, arg, p, err_out);
		free(names[i]);
	}
	free(names);
	return rc;
}

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int spam_bayes_learn_paths(struct spam_bayes *b, enum spam_bayes_op op, const char *const *paths,
			   size_t n, spam_bayes_progress_fn fn, void *arg,
			   struct spam_bayes_progress *total_out, char **err_out)
{
	struct spam_bayes_progress p;
	int rc = 0;

	memset(&p, 0, sizeof p);
	for (size_t i = 0; i < n && !rc; i++) {
		const char *path = paths[i];
		struct stat st;
		if (stat(path, &st) < 0) {
			file_error(path, strerror(errno), fn, arg, &p);
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc = learn_file(b, op, path, fn, arg, &p, err_out);
			continue;
		}
		char *cur = xasprintf("%s/cur", path), *new = xasprintf("%s/new", path);
		if (is_dir(cur) || is_dir(new)) {
			if (is_dir(cur))
				rc = learn_dir_files(b, op, cur, fn, arg, &p, err_out);
			if (!rc && is_dir(new))
				rc = learn_dir_files(b, op, new, fn, arg, &p, err_out);
		} else {
			rc = learn_dir_files(b, op, path, fn, arg, &p, err_out);
		}
		free(cur);
		free(new);
	}
	if (!rc && spam_bayes_store_sync(spam_bayes_get_store(b), err_out) < 0)
		rc = -1;
	p.path = NULL;
	p.error = NULL;
	if (total_out)
		*total_out = p;
	return rc;
}
