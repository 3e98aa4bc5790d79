#include "lib/milterd.h"

#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/util.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* the unix socket milterd_listen made: a stop removes it while it is still this one */
static char *sock_path;	/* absolute */
static dev_t sock_dev;
static ino_t sock_ino;

static void remember_socket(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return;
	if (path[0] == '/') {
		sock_path = xstrdup(path);
	} else {	/* we may leave this directory (detach) */
		char *cwd = getcwd(NULL, 0);
		if (cwd == NULL)
			return;
		sock_path = xasprintf("%s/%s", cwd, path);
		free(cwd);
	}
	sock_dev = st.st_dev;
	sock_ino = st.st_ino;
}

static void remove_socket(void)
{
	struct stat st;
	if (sock_path && stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == sock_dev && st.st_ino == sock_ino)
		unlink(sock_path);
}

static void signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
}

/* block_signals - HUP, TERM and INT wait (pending) for the signal thread. */
static void block_signals(void)
{
	sigset_t set;
	signal_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* TCP_NODELAY on our listening inet sockets: Linux passes it on to accepted ones. */
static void nodelay_listeners(void)
{
	for (int fd = 3; fd < 1024; fd++) {
		int v = 0, dom = 0;
		socklen_t l = sizeof(v);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) < 0 || !v)
			continue;
		l = sizeof(dom);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0)
			continue;
		if (dom == AF_INET || dom == AF_INET6) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
	}
}

void milterd_listen(const struct conf *c, const char *prefix, const struct smfiDesc *desc,
		    const char *conn)
{
	char sock_param[64], mode_param[64];
	snprintf(sock_param, sizeof sock_param, "%s_socket", prefix);
	snprintf(mode_param, sizeof mode_param, "%s_socket_mode", prefix);
	/* from the moment the socket accepts (we look started), a stop waits for the signal thread */
	block_signals();
	if (smfi_setconn((char *)conn) == MI_FAILURE)
		fatal("%s: %s %s: rejected by libmilter", conf_where(c, sock_param), sock_param, conn);
	struct smfiDesc d = *desc;
	if (smfi_register(d) == MI_FAILURE)
		fatal("smfi_register failed");
	if (smfi_opensocket(1) == MI_FAILURE)
		fatal("%s: %s %s: cannot listen", conf_where(c, sock_param), sock_param, conn);
	if (!strncmp(conn, "unix:", 5) || !strncmp(conn, "local:", 6)) {
		char *end;
		const char *ms = conf_str(c, mode_param);
		long mode = strtol(ms, &end, 8);
		if (*end || mode < 0 || mode > 0777)
			fatal("%s: %s %s: expected an octal mode such as 0660", conf_where(c, mode_param),
			      mode_param, ms);
		if (chmod(strchr(conn, ':') + 1, (mode_t)mode) < 0)
			fatal("%s %s: chmod: %s", sock_param, conn, strerror(errno));
		remember_socket(strchr(conn, ':') + 1);
	}
	nodelay_listeners();
}

void milterd_privileges(const struct conf *c, const char *prefix, int foreground,
			const struct privfile_opts *priv)
{
	char *err = NULL;
	if (!foreground) {
		/* a fork leaves pending signals behind: a stop asked for already is done here */
		sigset_t pending;
		if (sigpending(&pending) == 0 &&
		    (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT))) {
			log_event(NULL, "%s: stopped before it was started (%s)", prefix,
				  sigismember(&pending, SIGTERM) ? "SIGTERM" : "SIGINT");
			_exit(0);
		}
		daemon_detach();
	}
	/*
	 * Root-only files (keys, tables, a root-made maillog_file) stay readable
	 * on SIGHUP through a root helper, installed after detaching (it
	 * follows this process) and before the privilege drop.
	 */
	if (geteuid() == 0 && privfile_install(priv, &err) < 0)
		fatal("privfile: %s", err);
	if (daemon_drop_privs(conf_str(c, "mail_owner"), &err) < 0)
		fatal("mail_owner: %s", err);
	char pid_param[64];
	snprintf(pid_param, sizeof pid_param, "%s_pid_file", prefix);
	if (daemon_pidfile(conf_str(c, pid_param), &err) < 0)
		fatal("%s: %s", pid_param, err);
}

/* ---- signals ---- */

static int inflight;		/* atomic */
static long long last_leave_ms;	/* atomic; 0: none yet */

void milterd_inflight_enter(void)
{
	__atomic_add_fetch(&inflight, 1, __ATOMIC_SEQ_CST);
}

void milterd_inflight_leave(void)
{
	__atomic_store_n(&last_leave_ms, now_ms(), __ATOMIC_SEQ_CST);
	__atomic_sub_fetch(&inflight, 1, __ATOMIC_SEQ_CST);
}

int milterd_inflight(void)
{
	return __atomic_load_n(&inflight, __ATOMIC_SEQ_CST);
}

/* See milterd.h: libmilter's signal thread must not take HUP, TERM or INT. */
int sigwait(const sigset_t *set, int *sig)
{
	static int (*real)(const sigset_t *, int *);
	if (real == NULL)
		real = (int (*)(const sigset_t *, int *))dlsym(RTLD_NEXT, "sigwait");
	sigset_t s = *set;
	sigdelset(&s, SIGHUP);
	sigdelset(&s, SIGTERM);
	sigdelset(&s, SIGINT);
	return real(&s, sig);
}

/* stop - SIGTERM/SIGINT: no new connections on our unix socket, the messages in flight end, exit 0. */
static _Noreturn void stop(const struct milterd_signal_ops *ops, int sig)
{
	remove_socket();	/* first: once the line is logged, no new client finds it */
	log_event(NULL, "%s: %s: stopping (%d messages in flight)", ops->name,
		  sig == SIGINT ? "SIGINT" : "SIGTERM", milterd_inflight());
	long long end = now_ms() + MILTERD_STOP_WAIT_MS;
	for (;;) {
		long long now = now_ms();
		if (now >= end)
			break;
		if (milterd_inflight() == 0) {
			long long last = __atomic_load_n(&last_leave_ms, __ATOMIC_SEQ_CST);
			if (last == 0 || now - last >= MILTERD_REPLY_SETTLE_MS)
				break;
		}
		usleep(5000);
	}
	if (ops->stopped)
		ops->stopped(sig, milterd_inflight());
	_exit(0);
}

static void *signal_thread(void *arg)
{
	const struct milterd_signal_ops *ops = arg;
	sigset_t set;
	signal_set(&set);
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig == SIGHUP && ops->reload)
			ops->reload();
		else if (sig == SIGTERM || sig == SIGINT)
			stop(ops, sig);
	}
	return NULL;
}

void milterd_signals_start(const struct milterd_signal_ops *ops)
{
	block_signals();
	pthread_t th;
	int e = pthread_create(&th, NULL, signal_thread, (void *)ops);
	if (e != 0)
		fatal("%s: signal thread: %s", ops->name, strerror(e));
	pthread_detach(th);
}
