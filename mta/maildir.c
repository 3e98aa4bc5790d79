/*
 * maildir: Maildir delivery. Contract in maildir.h.
 */
#include "mta/maildir.h"
#include "lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MD_CHUNK 65536
#define MD_MAX_HOST_CHARS 120	/* escaped host part of the file name */

/* ---- directory fsync group commit ---- */

struct ds_ent {
	char *key;
	int refs;
	int syncing;
	uint64_t requested, done;
	struct ds_ent *next;
};

struct maildir_syncer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ds_ent *list;	/* only directories someone is syncing or waiting on */
};

struct maildir_syncer *maildir_syncer_new(void)
{
	struct maildir_syncer *s = xcalloc(1, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	return s;
}

void maildir_syncer_free(struct maildir_syncer **sp)
{
	struct maildir_syncer *s = sp ? *sp : NULL;
	if (!s)
		return;
	if (s->list)
		panic("maildir_syncer_free: deliveries still running");
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
	*sp = NULL;
}

static struct ds_ent *ds_get(struct maildir_syncer *s, const char *key)
{
	for (struct ds_ent *e = s->list; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	struct ds_ent *e = xcalloc(1, sizeof *e);
	e->key = xstrdup(key);
	e->next = s->list;
	s->list = e;
	return e;
}

static void ds_put(struct maildir_syncer *s, struct ds_ent *e)
{
	if (--e->refs > 0)
		return;
	for (struct ds_ent **pp = &s->list; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	free(e->key);
	free(e);
}

/*
 * syncer_fsync - make everything linked into directory key (open as dfd)
 * before this call durable. A sync counts for us only if it started after
 * we registered (requested is read under the lock when a sync starts).
 */
static int syncer_fsync(struct maildir_syncer *s, const char *key, int dfd)
{
	if (!s)
		return fsync(dfd);
	int rc = 0, err = 0;
	pthread_mutex_lock(&s->mu);
	struct ds_ent *e = ds_get(s, key);
	e->refs++;
	uint64_t mine = ++e->requested;
	while (e->done < mine) {
		if (e->syncing) {
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		e->syncing = 1;
		uint64_t target = e->requested;
		pthread_mutex_unlock(&s->mu);
		rc = fsync(dfd);
		err = errno;
		pthread_mutex_lock(&s->mu);
		e->syncing = 0;
		if (rc == 0 && target > e->done)
			e->done = target;
		pthread_cond_broadcast(&s->cv);
		if (rc < 0)
			break;	/* the others retry with their own fsync */
	}
	ds_put(s, e);
	pthread_mutex_unlock(&s->mu);
	errno = err;
	return rc;
}

/* ---- names and errors ---- */

int maildir_name(char *buf, size_t size, const struct queue_msg *m, size_t rcpt,
		 const char *myhostname)
{
	char host[MD_MAX_HOST_CHARS + 8];
	size_t h = 0;
	for (const char *p = myhostname; *p && h < MD_MAX_HOST_CHARS; p++) {
		if (*p == '/' || *p == ':') {
			h += (size_t)snprintf(host + h, sizeof host - h, "\\%03o", (unsigned char)*p);
		} else {
			host[h++] = *p;
		}
	}
	host[h] = 0;
	long long us = m->env.arrival > 0 ? (long long)(m->env.arrival * 1e6 + 0.5) : 0;
	int n = snprintf(buf, size, "%lld.M%06lldQ%sR%zu.%s", us / 1000000, us % 1000000, m->id,
			 rcpt, host);
	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

enum maildir_result maildir_errno_class(int err, const char **dsn_out)
{
	switch (err) {
	case ENOTDIR:
	case ELOOP:
	case ENAMETOOLONG:
	case EISDIR:
	case EINVAL:
		*dsn_out = "5.2.0";
		return MAILDIR_PERMFAIL;
	case EDQUOT:
	case EFBIG:
		*dsn_out = "4.2.2";
		return MAILDIR_TEMPFAIL;
	case ENOSPC:
		*dsn_out = "4.3.1";
		return MAILDIR_TEMPFAIL;
	default:
		*dsn_out = "4.2.0";
		return MAILDIR_TEMPFAIL;
	}
}

static enum maildir_result fail(int err, char *reason, size_t size, const char *what,
				const char *path, const char *name)
{
	const char *dsn;
	enum maildir_result r = maildir_errno_class(err, &dsn);
	snprintf(reason, size, "%s %s %s%s%s: %s", dsn, what, path, name ? "/" : "",
		 name ? name : "", strerror(err));
	return r;
}

/* ---- directories ---- */

/* mkdir -p path, mode 0700 for what we create. */
static int mkdirs(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;
	for (char *s = p + 1; rc == 0; s++) {
		if (*s != '/' && *s != 0)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			rc = -1;
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

static const char *const md_subdirs[] = { "tmp", "new", "cur" };

/* Open the Maildir root, creating it and its tmp/new/cur if missing. */
static int md_open_root(const char *path, int *newfd_out)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int nfd = fd < 0 ? -1 : openat(fd, "new", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (nfd >= 0) {
		*newfd_out = nfd;
		return fd;
	}
	if (fd < 0 && errno != ENOENT)
		return -1;
	if (fd >= 0)
		close(fd);
	if (mkdirs(path) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (size_t i = 0; i < 3; i++)
		if (mkdirat(fd, md_subdirs[i], 0700) < 0 && errno != EEXIST) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
	nfd = openat(fd, "new", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (nfd < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*newfd_out = nfd;
	return fd;
}

/* Is NAME in new/, or NAME:2,... in cur/? */
static int md_seen(int rootfd, int newfd, const char *name)
{
	if (faccessat(newfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	int cfd = openat(rootfd, "cur", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = cfd < 0 ? NULL : fdopendir(cfd);
	if (!d) {
		if (cfd >= 0)
			close(cfd);
		return 0;
	}
	size_t n = strlen(name);
	int found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL)
		found = strncmp(de->d_name, name, n) == 0 &&
			(de->d_name[n] == 0 || de->d_name[n] == ':');
	closedir(d);
	return found;
}

/* ---- writing ---- */

static void add_clean(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		sbuf_addc(b, (c < 0x20 || c == 0x7f) ? '?' : (char)c);
	}
}


/*
 * md_write - headers, then the content streamed from the queue file in
 * chunks, then fdatasync. Returns 0, or -1 with errno and *what set.
 */
static int md_write(int fd, const struct maildir_req *req, const char **what)
{
	struct queue_msg *m = req->msg;
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, "Return-Path: <");
	add_clean(&b, m->env.sender);
	sbuf_adds(&b, ">\nDelivered-To: ");
	add_clean(&b, m->env.rcpt[req->rcpt].addr);
	sbuf_addc(&b, '\n');
	*what = "write maildir file";
	int rc = write_full(fd, b.buf, b.len);
	sbuf_free(&b);
	char *buf = xmalloc(MD_CHUNK);
	for (long long off = 0; rc == 0 && off < m->content_len;) {
		long n = queue_msg_read(m, off, buf, MD_CHUNK);
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			*what = "read queue file for";
			rc = -1;
			break;
		}
		rc = write_full(fd, buf, (size_t)n);
		off += n;
	}
	free(buf);
	if (rc == 0 && fdatasync(fd) < 0) {
		*what = "fsync maildir file";
		rc = -1;
	}
	return rc;
}

/* Write tmp/NAME, link it to new/NAME, drop tmp/NAME, fsync new/. */
static enum maildir_result md_store(const struct maildir_req *req, struct maildir_syncer *sync,
				    int rootfd, int newfd, const char *name, char *reason,
				    size_t size)
{
	char tmp[NAME_MAX + 8], key[PATH_MAX];
	snprintf(tmp, sizeof tmp, "tmp/%s", name);
	int fd = openat(rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return fail(errno, reason, size, "create maildir file", req->path, tmp);
	const char *what;
	int rc = md_write(fd, req, &what);
	int err = errno;
	close(fd);
	if (rc < 0) {
		unlinkat(rootfd, tmp, 0);
		return fail(err, reason, size, what, req->path, tmp);
	}
	enum maildir_result res = MAILDIR_OK;
	if (linkat(rootfd, tmp, newfd, name, 0) < 0) {
		if (errno != EEXIST) {
			err = errno;
			unlinkat(rootfd, tmp, 0);
			return fail(err, reason, size, "link maildir file to", req->path, "new");
		}
		res = MAILDIR_ALREADY;
	}
	unlinkat(rootfd, tmp, 0);
	snprintf(key, sizeof key, "%s/new", req->path);
	if (syncer_fsync(sync, key, newfd) < 0)
		return fail(errno, reason, size, "fsync", req->path, "new");
	return res;
}

enum maildir_result maildir_deliver(const struct maildir_req *req, struct maildir_syncer *sync,
				    char *reason, size_t reason_size)
{
	char name[NAME_MAX + 1];
	if (req->path[0] != '/') {
		snprintf(reason, reason_size, "4.3.5 maildir path is not absolute: %s", req->path);
		return MAILDIR_TEMPFAIL;
	}
	if (req->rcpt >= req->msg->env.nrcpt)
		panic("maildir_deliver: recipient %zu out of range", req->rcpt);
	if (maildir_name(name, sizeof name, req->msg, req->rcpt, req->myhostname) < 0)
		return fail(ENAMETOOLONG, reason, reason_size, "maildir name for", req->path, NULL);
	int newfd = -1;
	int rootfd = md_open_root(req->path, &newfd);
	if (rootfd < 0)
		return fail(errno, reason, reason_size, "create maildir", req->path, NULL);
	enum maildir_result r;
	if (req->maybe_delivered && md_seen(rootfd, newfd, name)) {
		char key[PATH_MAX];
		snprintf(key, sizeof key, "%s/new", req->path);
		r = syncer_fsync(sync, key, newfd) < 0
			    ? fail(errno, reason, reason_size, "fsync", req->path, "new")
			    : MAILDIR_ALREADY;
	} else {
		r = md_store(req, sync, rootfd, newfd, name, reason, reason_size);
	}
	if (r == MAILDIR_OK || r == MAILDIR_ALREADY)
		snprintf(reason, reason_size, "%s",
			 r == MAILDIR_OK ? "delivered to maildir" : "already delivered to maildir");
	close(newfd);
	close(rootfd);
	return r;
}
