/*
 * sendmail_run: hand one message to a sendmail(1) command. Contract in
 * sendmail_run.h.
 */
#include "lib/sendmail_run.h"

#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int sendmail_run(const char *path, const char *conf, const char *from, const char *rcpt,
		 const char *msg, size_t len, int timeout_ms, char **err_out)
{
	if (timeout_ms <= 0)
		timeout_ms = 30000;
	int in[2] = { -1, -1 }, errp[2] = { -1, -1 };
	char *argv[10];
	int ac = 0;
	pid_t pid = -1;
	int rc = -1;

	*err_out = NULL;
	argv[ac++] = (char *)path;
	if (conf) {
		argv[ac++] = (char *)"-C";
		argv[ac++] = (char *)conf;
	}
	argv[ac++] = (char *)"-f";
	argv[ac++] = (char *)from;
	argv[ac++] = (char *)"-i";
	argv[ac++] = (char *)"--";
	argv[ac++] = (char *)rcpt;
	argv[ac] = NULL;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0 ||
	    pipe2(errp, O_CLOEXEC) < 0) {
		*err_out = xasprintf("socketpair/pipe: %s", strerror(errno));
		goto out;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[1], 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
	/* libmilter's sockets are not all close-on-exec: the child gets none */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	posix_spawnattr_t sa;
	posix_spawnattr_init(&sa);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &all);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int e = posix_spawn(&pid, path, &fa, &sa, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&sa);
	close(in[1]);
	close(errp[1]);
	in[1] = errp[1] = -1;
	if (e != 0) {
		pid = -1;
		*err_out = xasprintf("cannot run %s: %s", path, strerror(e));
		goto out;
	}
	set_nonblock(in[0]);
	set_nonblock(errp[0]);

	long long deadline = now_ms() + timeout_ms;
	size_t off = 0;
	char errbuf[512];
	size_t errlen = 0;
	int in_open = 1, err_open = 1;
	while (in_open || err_open) {
		struct pollfd p[2] = { { in_open ? in[0] : -1, POLLOUT, 0 },
				       { err_open ? errp[0] : -1, POLLIN, 0 } };
		long long left = deadline - now_ms();
		if (left <= 0)
			break;
		if (poll(p, 2, (int)left) < 0 && errno != EINTR)
			break;
		if (in_open && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t w = off < len ? send(in[0], msg + off, len - off, MSG_NOSIGNAL) : 0;
			if (w > 0)
				off += (size_t)w;
			if (off >= len || (w < 0 && errno != EAGAIN && errno != EINTR)) {
				shutdown(in[0], SHUT_WR);
				in_open = 0;
			}
		}
		if (err_open && (p[1].revents & (POLLIN | POLLERR | POLLHUP))) {
			char tmp[256];
			ssize_t r = read(errp[0], tmp, sizeof tmp);
			if (r > 0) {
				size_t k = (size_t)r;
				if (k > sizeof errbuf - 1 - errlen)
					k = sizeof errbuf - 1 - errlen;
				memcpy(errbuf + errlen, tmp, k);
				errlen += k;
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				err_open = 0;
			}
		}
	}
	errbuf[errlen] = 0;
	int status = 0;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			status = -1;
			break;
		}
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			*err_out = xasprintf("%s: timed out after %d ms", path, timeout_ms);
			goto out;
		}
		usleep(5000);
	}
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && off >= len) {
		rc = 0;
	} else {
		for (char *p = errbuf; *p; p++)
			if (*p == '\n' || *p == '\r' || (unsigned char)*p < 32)
				*p = ' ';
		while (errlen > 0 && errbuf[errlen - 1] == ' ')
			errbuf[--errlen] = 0;
		if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			*err_out = xasprintf("exited before reading the whole report (%zu of %zu bytes)",
					     off, len);
		else if (status != -1 && WIFEXITED(status)) {
			*err_out = xasprintf("exit %d: %s", WEXITSTATUS(status), errbuf);
			rc = WEXITSTATUS(status);	/* sysexits(3): the caller may tell 67 apart */
		}
		else if (status != -1 && WIFSIGNALED(status))
			*err_out = xasprintf("killed by signal %d: %s", WTERMSIG(status), errbuf);
		else
			*err_out = xasprintf("wait failed: %s", errbuf);
	}
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	return rc;
}
