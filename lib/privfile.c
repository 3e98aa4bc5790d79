/*
 * privfile: the root helper and the hook (see privfile.h for the contract).
 * Outline:
 *  - privfile_install forks; the child runs helper_main() and never returns;
 *  - one request = one SOCK_SEQPACKET message {op, path}; one reply =
 *    {errno or 0} with the descriptor attached when 0;
 *  - the helper decides with names_collect() (what the config names) and
 *    opens with helper_read() / helper_append().
 */
#include "lib/privfile.h"
#include "conf/conf.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PF_OP_READ 1u
#define PF_OP_APPEND 2u
#define PF_REPLY_TIMEOUT_MS 30000	/* a helper that hangs this long is treated as gone */
#define PF_MAX_NAMES 100000		/* names collected per request; more are ignored */

struct pf_req {
	uint32_t op;
	uint32_t mode;		/* creation mode for PF_OP_APPEND */
	char path[PATH_MAX];	/* absolute, NUL-terminated */
};

struct pf_reply {
	int32_t err;		/* 0: a descriptor is attached */
};

static struct {
	pthread_mutex_t lock;
	int fd;			/* our end of the socketpair; -1 = not installed */
	pid_t pid;
	int broken;		/* the helper timed out or went away */
} PF = { PTHREAD_MUTEX_INITIALIZER, -1, -1, 0 };

/* ------------------------------------------------------------- names */

struct privfile_names {
	char **paths;		/* absolute */
	size_t n, cap;
	const char *base;	/* the config's base directory */
};

void privfile_names_add(struct privfile_names *nm, const char *path)
{
	if (path == NULL || *path == 0 || nm->n >= PF_MAX_NAMES)
		return;
	if (nm->n == nm->cap) {
		nm->cap = nm->cap ? nm->cap * 2 : 32;
		nm->paths = xrealloc(nm->paths, nm->cap * sizeof(char *));
	}
	nm->paths[nm->n++] = conf_abs_path(nm->base, path);
}

static void names_free(struct privfile_names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->paths[i]);
	free(nm->paths);
	memset(nm, 0, sizeof(*nm));
}

static int ends_with(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);
	return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static int names_file_param(const char *name, const char *const *more)
{
	static const char *const suffixes[] = {
		"_file", "_files", "_table", "_tables", "_maps", "_list", NULL,
	};
	for (const char *const *s = suffixes; *s; s++)
		if (ends_with(name, *s))
			return 1;
	for (; more && *more; more++)
		if (strcmp(name, *more) == 0)
			return 1;
	return 0;
}

/* One list item: the path itself, and without a "type:" prefix; globs expanded. */
static void names_add_item(struct privfile_names *nm, const char *item)
{
	if (item[0] == '{')
		return;			/* inline:{...} and friends: no file */
	const char *p = item;
	size_t t = strspn(item, "abcdefghijklmnopqrstuvwxyz0123456789");
	if (t > 0 && item[t] == ':') {
		if (!strncmp(item, "inline:", 7) || !strncmp(item, "static:", 7))
			return;
		p = item + t + 1;
	}
	if (strpbrk(p, "*?[")) {
		char *pat = conf_abs_path(nm->base, p);
		glob_t g;
		if (glob(pat, GLOB_NOSORT, NULL, &g) == 0)
			for (size_t i = 0; i < g.gl_pathc; i++)
				privfile_names_add(nm, g.gl_pathv[i]);
		globfree(&g);
		free(pat);
		return;
	}
	privfile_names_add(nm, p);
	if (p != item)
		privfile_names_add(nm, item);
}

/* tables_have - conf_str() panics on a name that is in none of the tables */
static int tables_have(const struct conf_param *const *tables, const char *name)
{
	for (; *tables; tables++)
		for (const struct conf_param *p = *tables; p->name; p++)
			if (strcmp(p->name, name) == 0)
				return 1;
	return 0;
}

/*
 * names_collect - what the config file names now (read as root). With
 * append set: only maillog_file. A config that does not load names only
 * itself (the daemon then reports the error itself).
 */
static void names_collect(const struct privfile_opts *o, int append, struct privfile_names *nm)
{
	char *err = NULL, *base = NULL;
	memset(nm, 0, sizeof(*nm));
	nm->base = "/";
	if (!append)
		privfile_names_add(nm, o->config_file);
	struct conf *c = conf_load(o->config_file, o->tables, o->ignore_prefixes, &err);
	if (c == NULL) {
		free(err);
		return;
	}
	base = conf_base_dir(c, &err);
	if (base == NULL) {
		free(err);
		conf_free(&c);
		return;
	}
	nm->base = base;
	if (append) {
		const char *lf = "";
		if (tables_have(o->tables, "maillog_file"))
			lf = conf_str(c, "maillog_file");
		if (*lf && strcmp(lf, "/dev/stderr") != 0)
			privfile_names_add(nm, lf);
	} else {
		for (const struct conf_param *const *t = o->tables; *t; t++)
			for (const struct conf_param *p = *t; p->name; p++) {
				if (!names_file_param(p->name, o->more_params))
					continue;
				size_t n;
				const char *const *items = conf_list(c, p->name, &n);
				for (size_t i = 0; i < n; i++)
					names_add_item(nm, items[i]);
			}
		if (o->more_paths)
			o->more_paths(c, nm);
	}
	conf_free(&c);
	nm->base = NULL;
	free(base);
}

/* ------------------------------------------------------------ helper */

static int same_file(const struct stat *a, const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && st.st_dev == a->st_dev && st.st_ino == a->st_ino;
}

static int type_error(mode_t m)
{
	return S_ISDIR(m) ? EISDIR : EINVAL;
}

/* The daemon as it is when it asks: its uid and groups (SCM_CREDENTIALS). */
struct pf_peer {
	uid_t uid;
	gid_t groups[64];
	int ngroups;
};

static void peer_fill(struct pf_peer *pr, uid_t uid, gid_t gid)
{
	pr->uid = uid;
	pr->groups[0] = gid;
	pr->ngroups = 1;
	struct passwd *pw = uid ? getpwuid(uid) : NULL;
	int n = (int)(sizeof(pr->groups) / sizeof(pr->groups[0]));
	if (pw && getgrouplist(pw->pw_name, gid, pr->groups, &n) >= 0)
		pr->ngroups = n;	/* what initgroups() gave it in daemon_drop_privs() */
}

static int peer_in_group(const struct pf_peer *pr, gid_t g)
{
	for (int i = 0; i < pr->ngroups; i++)
		if (pr->groups[i] == g)
			return 1;
	return 0;
}

/*
 * tamperable - 1 when the daemon could have changed where path leads: a
 * directory on the way that it can write (owner, group or world write; in
 * a sticky directory only when it owns the next entry). Such a directory
 * lets it put a symbolic link to any file where a named file was.
 */
static int tamperable(const char *path, const struct pf_peer *pr)
{
	if (pr->uid == 0 || pr->uid == geteuid())
		return 0;	/* the daemon could open all we can: nothing to guard */
	size_t len = strlen(path);
	char *buf = xstrdup(path);
	int bad = 0;
	for (size_t k = 0; k < len && !bad; k++) {
		if (path[k] != '/')
			continue;
		size_t end = k + 1;
		while (end < len && path[end] != '/')
			end++;
		if (end == k + 1)
			continue;	/* "//" or a trailing '/' */
		buf[k ? k : 1] = 0;	/* the directory: "/" or path[0..k) */
		struct stat st;
		if (stat(buf, &st) < 0) {
			bad = 1;
			break;
		}
		memcpy(buf, path, len + 1);
		int w = st.st_uid == pr->uid || (st.st_mode & S_IWOTH) ||
			((st.st_mode & S_IWGRP) && peer_in_group(pr, st.st_gid));
		if (w && st.st_uid != pr->uid && (st.st_mode & S_ISVTX)) {
			buf[end] = 0;	/* sticky (as /tmp): only its own entries */
			struct stat e;
			w = lstat(buf, &e) < 0 || e.st_uid == pr->uid;
			memcpy(buf, path, len + 1);
		}
		bad = w;
	}
	free(buf);
	return bad;
}

/* tamperable_fd - tamperable() for where fd really is (/proc/self/fd). */
static int tamperable_fd(int fd, const struct pf_peer *pr)
{
	if (pr->uid == 0 || pr->uid == geteuid())
		return 0;
	char link[64], real[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, real, sizeof(real) - 1);
	if (n <= 0 || real[0] != '/')
		return 1;
	real[n] = 0;
	return tamperable(real, pr);
}

/* names_match - 1 when a name the daemon cannot have pointed elsewhere is st's file */
static int names_match(const struct privfile_names *nm, const struct stat *st,
		       const struct pf_peer *pr)
{
	for (size_t i = 0; i < nm->n; i++)
		if (same_file(st, nm->paths[i]) && !tamperable(nm->paths[i], pr))
			return 1;
	return 0;
}

static int names_have(const struct privfile_names *nm, const char *path)
{
	for (size_t i = 0; i < nm->n; i++)
		if (strcmp(nm->paths[i], path) == 0)
			return 1;
	return 0;
}

/*
 * helper_read - a read-only descriptor for path, or -1 with *err_out. The
 * names are checked first, so a path the config does not name gets EPERM
 * whatever it is (the daemon learns nothing about root's files); a
 * directory, device or FIFO is never opened.
 */
static int helper_read(const struct privfile_opts *o, const char *path,
		       const struct pf_peer *pr, int *err_out)
{
	struct privfile_names nm;
	names_collect(o, 0, &nm);
	struct stat st, fst;
	int fd = -1, e = 0;
	if (stat(path, &st) < 0)
		e = names_have(&nm, path) ? errno : EPERM;
	else if (!names_match(&nm, &st, pr))
		e = EPERM;
	else if (!S_ISREG(st.st_mode))
		e = type_error(st.st_mode);
	else if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
		e = errno;
	else if (fstat(fd, &fst) < 0)
		e = errno;
	else if (fst.st_dev != st.st_dev || fst.st_ino != st.st_ino)
		e = EPERM;	/* swapped between stat() and open() */
	else if (tamperable(path, pr) || tamperable_fd(fd, pr))
		e = EPERM;
	names_free(&nm);
	if (e) {
		if (fd >= 0)
			close(fd);
		*err_out = e;
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/* helper_append - the maillog_file, opened for appending; -1 with *err_out. */
static int helper_append(const struct privfile_opts *o, const char *path, mode_t mode,
			 const struct pf_peer *pr, int *err_out)
{
	struct privfile_names nm;
	names_collect(o, 1, &nm);
	int named = names_have(&nm, path);
	names_free(&nm);
	if (!named || tamperable(path, pr)) {
		*err_out = EPERM;
		return -1;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
			    O_CLOEXEC, mode & 0666);
	if (fd < 0) {
		*err_out = errno == ELOOP ? EPERM : errno;
		return -1;
	}
	struct stat st;
	int e = 0;
	if (fstat(fd, &st) < 0)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		e = type_error(st.st_mode);
	else if (st.st_nlink != 1 || tamperable_fd(fd, pr))
		e = EPERM;	/* a hard link to some other file; a swapped directory */
	if (e) {
		*err_out = e;
		close(fd);
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

static int send_reply(int sock, int err, int fd)
{
	struct pf_reply r = { .err = err };
	struct iovec iov = { &r, sizeof(r) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(r) ? 0 : -1;
}

static void __attribute__((noreturn)) helper_main(int sock, pid_t parent,
						  const struct privfile_opts *o)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);	/* the daemon went away before the line above */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/*
	 * None of the daemon's sockets or files: only our end, as fd 3, and
	 * stdin/stdout on /dev/null (in Postfix spawn mode they are the client).
	 */
	if (sock != 3) {
		if (dup2(sock, 3) < 0)
			_exit(1);
		sock = 3;
	}
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
	}
	close_range(4, ~0u, 0);
	static struct pf_req req;
	for (;;) {
		struct iovec iov = { &req, sizeof(req) };
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(struct ucred))];
		} u;
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf) };
		ssize_t n = recvmsg(sock, &m, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);	/* end of file: the daemon is gone */
		struct ucred cr = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
			    c->cmsg_len == CMSG_LEN(sizeof(cr)))
				memcpy(&cr, CMSG_DATA(c), sizeof(cr));
		struct pf_peer peer;
		peer_fill(&peer, cr.uid, cr.gid);
		size_t plen = (size_t)n > offsetof(struct pf_req, path)
				      ? (size_t)n - offsetof(struct pf_req, path) : 0;
		int err = 0, fd = -1;
		if (plen == 0 || memchr(req.path, 0, plen) == NULL || req.path[0] != '/')
			err = EINVAL;
		else if (req.op == PF_OP_READ)
			fd = helper_read(o, req.path, &peer, &err);
		else if (req.op == PF_OP_APPEND)
			fd = helper_append(o, req.path, (mode_t)req.mode, &peer, &err);
		else
			err = EINVAL;
		int rc = send_reply(sock, fd >= 0 ? 0 : (err ? err : EIO), fd);
		if (fd >= 0)
			close(fd);
		if (rc < 0)
			_exit(0);
	}
}

/* -------------------------------------------------------------- hook */

int privfile_install(const struct privfile_opts *opts, char **err_out)
{
	if (opts == NULL || opts->config_file == NULL || opts->tables == NULL) {
		*err_out = xstrdup("privfile_install: config_file and tables are required");
		return -1;
	}
	int sv[2] = { -1, -1 }, one = 1;
	char *abs = NULL;
	pthread_mutex_lock(&PF.lock);
	if (PF.fd >= 0) {
		*err_out = xstrdup("privfile_install: already installed");
		goto fail;
	}
	abs = realpath(opts->config_file, NULL);
	if (abs == NULL) {
		*err_out = xasprintf("%s: %s", opts->config_file, strerror(errno));
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		*err_out = xasprintf("socketpair: %s", strerror(errno));
		goto fail;
	}
	/* before any request: each one carries the asker's uid and gid */
	if (setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		*err_out = xasprintf("SO_PASSCRED: %s", strerror(errno));
		goto fail;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		*err_out = xasprintf("fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		close(sv[0]);
		PF.fd = -1;	/* the helper opens directly */
		pthread_mutex_unlock(&PF.lock);
		struct privfile_opts o = *opts;
		o.config_file = abs;
		helper_main(sv[1], parent, &o);
	}
	close(sv[1]);
	free(abs);
	PF.fd = sv[0];
	PF.pid = pid;
	PF.broken = 0;
	pthread_mutex_unlock(&PF.lock);
	return 0;
fail:
	pthread_mutex_unlock(&PF.lock);
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	free(abs);
	return -1;
}

void privfile_uninstall(void)
{
	pthread_mutex_lock(&PF.lock);
	if (PF.fd < 0) {
		pthread_mutex_unlock(&PF.lock);
		return;
	}
	close(PF.fd);
	PF.fd = -1;
	pid_t pid = PF.pid;
	PF.pid = -1;
	pthread_mutex_unlock(&PF.lock);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int privfile_installed(void)
{
	pthread_mutex_lock(&PF.lock);
	int on = PF.fd >= 0;
	pthread_mutex_unlock(&PF.lock);
	return on;
}

pid_t privfile_helper_pid(void)
{
	pthread_mutex_lock(&PF.lock);
	pid_t pid = PF.fd >= 0 ? PF.pid : -1;
	pthread_mutex_unlock(&PF.lock);
	return pid;
}

/* exchange - one request and its reply, PF.lock held; a descriptor or -1 with errno. */
static int exchange(const struct pf_req *req, size_t req_len)
{
	if (PF.broken) {
		errno = EIO;
		return -1;
	}
	ssize_t n;
	do
		n = send(PF.fd, req, req_len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)req_len)
		goto gone;
	struct pollfd p = { .fd = PF.fd, .events = POLLIN };
	int pr;
	do
		pr = poll(&p, 1, PF_REPLY_TIMEOUT_MS);
	while (pr < 0 && errno == EINTR);
	if (pr <= 0)
		goto gone;	/* a late reply would answer the next request: stop asking */
	struct pf_reply r;
	struct iovec iov = { &r, sizeof(r) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	do
		n = recvmsg(PF.fd, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(r))
		goto gone;
	int fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (r.err != 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		errno = r.err ? r.err : EIO;
		return -1;
	}
	return fd;
gone:
	PF.broken = 1;
	errno = EIO;
	return -1;
}

/* request_op - PF_OP_* for flags, or 0 when the helper does not do that. */
static uint32_t request_op(int flags)
{
	int rest = flags & ~(O_CLOEXEC | O_NOCTTY | O_LARGEFILE);
	if ((rest & O_ACCMODE) == O_RDONLY && (rest & ~O_ACCMODE) == 0)
		return PF_OP_READ;
	if ((rest & O_ACCMODE) == O_WRONLY && (rest & O_APPEND) &&
	    (rest & ~(O_ACCMODE | O_APPEND | O_CREAT)) == 0)
		return PF_OP_APPEND;
	return 0;
}

int privfile_helper_open(const char *path, int flags, mode_t mode)
{
	uint32_t op = request_op(flags);
	if (op == 0 || path == NULL || *path == 0) {
		errno = EINVAL;
		return -1;
	}
	static struct pf_req req;	/* PATH_MAX bytes: not on a milter thread's stack; PF.lock */
	pthread_mutex_lock(&PF.lock);
	if (PF.fd < 0) {
		pthread_mutex_unlock(&PF.lock);
		errno = EBADF;
		return -1;
	}
	req.op = op;
	req.mode = (uint32_t)mode;
	int len;
	if (path[0] == '/') {
		len = snprintf(req.path, sizeof(req.path), "%s", path);
	} else {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			pthread_mutex_unlock(&PF.lock);
			return -1;
		}
		len = snprintf(req.path, sizeof(req.path), "%s%s%s", cwd,
			       strcmp(cwd, "/") ? "/" : "", path);
	}
	if (len < 0 || (size_t)len >= sizeof(req.path)) {
		pthread_mutex_unlock(&PF.lock);
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = exchange(&req, offsetof(struct pf_req, path) + (size_t)len + 1);
	int e = errno;
	pthread_mutex_unlock(&PF.lock);
	errno = e;
	return fd;
}

int privfile_open(const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags, mode);
	if (fd >= 0 || (errno != EACCES && errno != EPERM) || request_op(flags) == 0)
		return fd;
	int e = errno;
	if (!privfile_installed()) {
		errno = e;
		return -1;
	}
	fd = privfile_helper_open(path, flags, mode);
	if (fd < 0 && (errno == EIO || errno == EBADF))
		errno = e;	/* no helper to ask: the plain open's reason */
	return fd;
}

FILE *privfile_fopen(const char *path, const char *mode)
{
	int flags;
	if (!strcmp(mode, "r") || !strcmp(mode, "re"))
		flags = O_RDONLY | O_CLOEXEC;
	else if (!strcmp(mode, "a") || !strcmp(mode, "ae"))
		flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;
	else {
		errno = EINVAL;
		return NULL;
	}
	int fd = privfile_open(path, flags, 0640);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, mode[0] == 'r' ? "r" : "a");
	if (f == NULL) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return f;
}
