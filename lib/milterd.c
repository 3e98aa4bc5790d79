#include "lib/milterd.h"

#include "lib/daemon.h"
#include "lib/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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
	}
	nodelay_listeners();
}

void milterd_privileges(const struct conf *c, const char *prefix, int foreground,
			const struct privfile_opts *priv)
{
	char *err = NULL;
	if (!foreground)
		daemon_detach();
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
