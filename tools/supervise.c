/*
 * supervise: the children of `sluice start`; the contract is in
 * supervise.h.
 */
#include "tools/supervise.h"

#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/util.h"
#include "tools/start_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

_Static_assert(SUPERVISE_FILTERS_MAX + 1 <= START_METRICS_DAEMONS_MAX, "start_metrics: room for every daemon");

void supervise_publish_targets(const struct supervise *sv)
{
	struct start_metrics_daemon dm[SUPERVISE_FILTERS_MAX + 1];
	char label[SUPERVISE_FILTERS_MAX + 1][32];
	size_t n = 0;
	/* sluiced first: its families lead the merged text */
	for (size_t pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < sv->nkids; i++) {
			if ((sv->kids[i].kind == SUPERVISE_MTA) != (pass == 0))
				continue;
			const struct supervise_child *k = &sv->kids[i];
			snprintf(label[n], sizeof label[n], "%s%s", k->kind == SUPERVISE_MTA ? "" : "sluice-", k->name);
			dm[n] = (struct start_metrics_daemon){ k->metrics_d, label[n], k->pid > 0, k->restarts };
			n++;
		}
	start_metrics_publish(dm, n);
}

void supervise_write_status(const struct supervise *sv)
{
	supervise_publish_targets(sv);

	char *tmp = xasprintf("%s/status.tmp", sv->run_dir), *final = xasprintf("%s/status", sv->run_dir);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		log_event(NULL, "warning: %s: cannot write: %s", tmp, strerror(errno));
	} else {
		for (size_t i = 0; i < sv->nkids; i++)
			fprintf(f, "%s %d %.0f %s %u\n", sv->kids[i].name, (int)sv->kids[i].pid, sv->kids[i].started,
				sv->kids[i].sock ? sv->kids[i].sock : "-", sv->kids[i].restarts);
		if ((ferror(f) | fclose(f)) != 0)
			log_event(NULL, "warning: %s: cannot write: %s", tmp, strerror(errno));
		else if (rename(tmp, final) < 0)
			log_event(NULL, "warning: %s: cannot rename to %s: %s", tmp, final, strerror(errno));
	}
	free(tmp);
	free(final);
}

pid_t supervise_spawn(const struct supervise *sv, struct supervise_child *k)
{
	if (k->sock)
		unlink(k->sock);
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		unsetenv("NOTIFY_SOCKET");	/* we speak for them */
		/* its own metrics socket only (fd:N in the generated config); nothing else of ours */
		close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
		int mfd = start_metrics_child_fd(k->metrics_d);
		if (mfd >= 0)
			fcntl(mfd, F_SETFD, 0);
		execl(k->bin, k->bin, "-f", "-c", sv->gen_conf, (char *)NULL);
		fprintf(stderr, "sluice start: exec %s: %s\n", k->bin, strerror(errno));
		_exit(127);
	}
	k->pid = pid;
	k->started = wall_time();
	return pid;
}


/* connect_unix - 1 if a unix socket at path accepts a connection */
static int connect_unix(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = { 0 };
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/*
 * greets - 1 if the listen address spec ("host:port", "[v6]:port", ":port",
 * "unix:/path"; a wildcard host is probed on loopback) answers with a 220
 * greeting within wait_ms.
 */
static int greets(const char *spec, int wait_ms)
{
	int fd = -1;
	if (!strncmp(spec, "unix:", 5)) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sun = { 0 };
		sun.sun_family = AF_UNIX;
		snprintf(sun.sun_path, sizeof sun.sun_path, "%s", spec + 5);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
			close(fd);
			return 0;
		}
	} else {
		char host[256], port[32];
		const char *hp = !strncmp(spec, "inet:", 5) ? spec + 5 : spec;
		if (listen_parse_hostport(hp, host, sizeof host, port, sizeof port) < 0)
			return 0;
		if (!*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "*"))
			snprintf(host, sizeof host, "127.0.0.1");
		else if (!strcmp(host, "::"))
			snprintf(host, sizeof host, "::1");
		struct addrinfo hints = { 0 }, *res;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		if (getaddrinfo(host, port, &hints, &res) != 0)
			return 0;
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
			close(fd);
			fd = -1;
		}
		freeaddrinfo(res);
	}
	if (fd < 0)
		return 0;
	char buf[512];
	size_t got = 0;
	double end = wall_time() + wait_ms / 1000.0;
	while (got < 4 && wall_time() < end) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, (int)((end - wall_time()) * 1000) + 1) <= 0)
			break;
		ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got >= 4 && !memcmp(buf, "220", 3))
		(void)!write(fd, "QUIT\r\n", 6);
	close(fd);
	return got >= 4 && !memcmp(buf, "220", 3);
}

int supervise_wait_ready(const struct supervise *sv, struct supervise_child *k, double timeout_s,
			 int *status_out)
{
	double begin = wall_time(), end = begin + timeout_s;
	size_t next = 0;	/* sluiced: the first address that has not greeted yet */
	*status_out = -1;
	while (wall_time() < end && !sv->term) {
		int st;
		if (waitpid(k->pid, &st, WNOHANG) == k->pid) {
			k->pid = 0;
			*status_out = st;
			return -1;
		}
		if (k->sock) {
			if (connect_unix(k->sock)) {
				chmod(k->sock, 0666);	/* sluiced's receivers run as mail_owner */
				return 0;
			}
		} else {
			/* a slow greeting (peer name look-up) may take its time */
			while (next < sv->n_mta_listen &&
			       greets(sv->mta_listen[next], (int)((end - wall_time()) * 1000) + 1))
				next++;
			if (next == sv->n_mta_listen && (sv->n_mta_listen || wall_time() - begin > 1))
				return 0;
		}
		usleep(20000);
	}
	return -1;
}

char *supervise_not_ready_reason(const struct supervise *sv, const struct supervise_child *k, int status)
{
	if (sv->term)
		return xasprintf("interrupted while %s was starting", k->name);
	if (status == -1)
		return xasprintf("%s (pid %d) did not answer on %s within %.0fs", k->name, (int)k->pid,
				 k->sock ? k->sock : sv->n_mta_listen ? sv->mta_listen[0] : "-", SUPERVISE_START_TIMEOUT_S);
	if (WIFSIGNALED(status))
		return xasprintf("%s was killed by signal %d while starting", k->name, WTERMSIG(status));
	return xasprintf("%s exited with status %d while starting", k->name, WEXITSTATUS(status));
}

void supervise_child_free(struct supervise_child *k)
{
	free(k->bin);
	free(k->sock);
	memset(k, 0, sizeof *k);
}


/* leaving_done - leaving[i] has exited (reaped): its socket goes, the slot too. */
static void leaving_done(struct supervise *sv, size_t i, int status)
{
	struct supervise_child *l = &sv->leaving[i];
	log_event(NULL, "%s (pid %d) stopped: switched off (%s %d)", l->name, (int)l->pid,
		  WIFSIGNALED(status) ? "signal" : "exit status",
		  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	unlink(l->sock);
	supervise_child_free(l);
	sv->leaving[i] = sv->leaving[--sv->nleaving];
	memset(&sv->leaving[sv->nleaving], 0, sizeof sv->leaving[sv->nleaving]);
}

void supervise_reap(struct supervise *sv)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (size_t i = 0; i < sv->nleaving; i++)
			if (sv->leaving[i].pid == pid) {
				leaving_done(sv, i, st);
				break;
			}
		for (size_t i = 0; i < sv->nkids; i++) {
			struct supervise_child *k = &sv->kids[i];
			if (k->pid != pid)
				continue;
			k->pid = 0;
			if (sv->term)
				break;
			/* a child that ran for a minute starts over with a short backoff */
			if (wall_time() - k->started > 60)
				k->backoff_s = 1;
			log_event(NULL, "warning: %s (pid %d) %s %d; restarting in %.0fs", k->name, (int)pid,
				  WIFSIGNALED(st) ? "killed by signal" : "exited with status",
				  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), k->backoff_s);
			k->restart_at = wall_time() + k->backoff_s;
			k->backoff_s = k->backoff_s * 2 > 60 ? 60 : k->backoff_s * 2;
		}
	}
}

void supervise_restart_due(struct supervise *sv)
{
	double now = wall_time();
	for (size_t i = 0; i < sv->nkids; i++) {
		struct supervise_child *k = &sv->kids[i];
		if (!k->restart_at || k->restart_at > now)
			continue;
		k->restart_at = 0;
		k->restarts++;
		supervise_spawn(sv, k);
		int st;
		if (supervise_wait_ready(sv, k, 20, &st) == 0) {
			log_event(NULL, "%s restarted (pid %d)", k->name, (int)k->pid);
		} else {
			char *why = supervise_not_ready_reason(sv, k, st);
			if (k->pid == 0) {	/* died again: reaped here, so schedule it here */
				log_event(NULL, "warning: %s; restarting in %.0fs", why, k->backoff_s);
				k->restart_at = wall_time() + k->backoff_s;
				k->backoff_s = k->backoff_s * 2 > 60 ? 60 : k->backoff_s * 2;
			} else {
				log_event(NULL, "warning: %s", why);
			}
			free(why);
		}
	}
	supervise_write_status(sv);
}

void supervise_stop_wait(struct supervise_child *k, double timeout_s)
{
	if (k->pid <= 0)
		return;
	kill(k->pid, SIGTERM);
	double end = wall_time() + timeout_s;
	while (waitpid(k->pid, NULL, WNOHANG) != k->pid) {
		if (wall_time() > end) {
			kill(k->pid, SIGKILL);
			waitpid(k->pid, NULL, 0);
			break;
		}
		usleep(20000);
	}
	k->pid = 0;
}

void supervise_stop_all(struct supervise *sv)
{
	/* the MTA first, so no new mail meets a missing filter */
	for (size_t i = sv->nkids; i-- > 0;)
		if (sv->kids[i].pid > 0)
			kill(sv->kids[i].pid, SIGTERM);
	for (size_t i = 0; i < sv->nleaving; i++)
		if (sv->leaving[i].pid > 0)
			kill(sv->leaving[i].pid, SIGTERM);
	double end = wall_time() + 40;
	for (;;) {
		int left = 0;
		struct supervise_child *all[SUPERVISE_FILTERS_MAX + 1 + SUPERVISE_FILTERS_MAX];
		size_t n = 0;
		for (size_t i = 0; i < sv->nkids; i++)
			all[n++] = &sv->kids[i];
		for (size_t i = 0; i < sv->nleaving; i++)
			all[n++] = &sv->leaving[i];
		for (size_t i = 0; i < n; i++) {
			if (all[i]->pid <= 0)
				continue;
			if (waitpid(all[i]->pid, NULL, WNOHANG) == all[i]->pid)
				all[i]->pid = 0;
			else
				left++;
		}
		if (!left)
			break;
		if (wall_time() > end) {
			for (size_t i = 0; i < n; i++)
				if (all[i]->pid > 0)
					kill(all[i]->pid, SIGKILL);
			end = wall_time() + 60;
		}
		usleep(20000);
	}
}


pid_t supervise_sluiced_pid(const struct supervise *sv)
{
	for (size_t i = 0; i < sv->nkids; i++)
		if (sv->kids[i].kind == SUPERVISE_MTA)
			return sv->kids[i].pid;
	return 0;
}

