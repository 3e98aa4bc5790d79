#include "lib/daemon.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int listen_parse_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	const char *h = spec;
	size_t hl;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':')
			return -1;
		h = spec + 1;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			return -1;
		hl = (size_t)(colon - spec);
		if (memchr(spec, ':', hl))	/* bare IPv6 without brackets */
			return -1;
	}
	if (hl >= hostlen || strlen(colon + 1) >= portlen || !colon[1])
		return -1;
	memcpy(host, h, hl);
	host[hl] = 0;
	strcpy(port, colon + 1);
	return 0;
}

static int listen_unix(const char *path, int backlog, struct listener *l, char **err_out)
{
	struct sockaddr_un sun;
	if (strlen(path) >= sizeof sun.sun_path) {
		*err_out = xasprintf("unix:%s: path too long", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_out = xasprintf("unix:%s: socket: %s", path, strerror(errno));
		return -1;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(fd, backlog) < 0) {
		*err_out = xasprintf("unix:%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	chmod(path, 0666);
	l->fd = fd;
	l->is_unix = 1;
	return 0;
}

int listen_open(const char *spec, int backlog, int reuseport, struct listener *l, char **err_out)
{
	memset(l, 0, sizeof *l);
	l->fd = -1;
	l->spec = xstrdup(spec);
	if (strncmp(spec, "unix:", 5) == 0)
		return listen_unix(spec + 5, backlog, l, err_out);
	char host[256], port[32];
	const char *s = strncmp(spec, "inet:", 5) == 0 ? spec + 5 : spec;
	if (listen_parse_hostport(s, host, sizeof host, port, sizeof port) < 0) {
		*err_out = xasprintf("%s: expected host:port, [ipv6]:port or unix:/path", spec);
		return -1;
	}
	struct addrinfo hints = { 0 }, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = getaddrinfo(host[0] ? host : "0.0.0.0", port, &hints, &res);
	if (rc != 0) {
		*err_out = xasprintf("%s: %s", spec, gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_out = xasprintf("%s: socket: %s", spec, strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
		*err_out = xasprintf("%s: %s", spec, strerror(errno));
		close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	l->fd = fd;
	return 0;
}

void listen_close(struct listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	free(l->spec);
	l->spec = NULL;
}

void daemon_detach(void)
{
	pid_t pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

int daemon_pidfile(const char *path, char **err_out)
{
	if (!path || !*path)
		return 0;
	FILE *f = fopen(path, "w");
	if (!f) {
		*err_out = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	return 0;
}

int daemon_user_ids(const char *user, unsigned *uid_out, unsigned *gid_out)
{
	struct passwd *pw = getpwnam(user);
	if (!pw)
		return -1;
	*uid_out = pw->pw_uid;
	*gid_out = pw->pw_gid;
	return 0;
}

int daemon_drop_privs(const char *user, char **err_out)
{
	if (geteuid() != 0 || !user || !*user)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		*err_out = xasprintf("mail_owner %s: no such user", user);
		return -1;
	}
	if (pw->pw_uid == 0)
		return 0;
	if (setgroups(0, NULL) < 0 || initgroups(user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		*err_out = xasprintf("mail_owner %s: cannot switch user: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		*err_out = xasprintf("mail_owner %s: could regain root after dropping it", user);
		return -1;
	}
	return 0;
}

char *daemon_self_dir(void)
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n <= 0)
		return xstrdup(".");
	buf[n] = 0;
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = 0;
	return xstrdup(buf);
}
