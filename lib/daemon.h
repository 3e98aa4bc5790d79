/*
 * daemon: the parts of starting a daemon every sluice daemon shares.
 * Owns: listen addresses ("host:port", "[v6]:port", ":port", "unix:/path"),
 * binding them, the pid file, detaching (unless -f), and dropping root
 * privileges to mail_owner after binding.
 * Leaves: event loops and signal handling to each daemon's main.
 */
#ifndef SLUICE_DAEMON_H
#define SLUICE_DAEMON_H

#include <stddef.h>

struct listener {
	char *spec;	/* as configured */
	int fd;		/* listening socket, non-blocking, close-on-exec */
	int is_unix;
	int kind;	/* what the socket is for; sluiced: enum smtpd_listen_kind (smtpd.h) */
};

/*
 * listen_open - bind and listen on spec. TCP sockets get SO_REUSEADDR (and
 * SO_REUSEPORT when reuseport is set); IPv6 sockets are V6ONLY. A stale unix
 * socket file is removed first. Returns 0 and fills *l, or -1 with *err_out
 * (caller frees) naming the spec and the reason.
 */
int listen_open(const char *spec, int backlog, int reuseport, struct listener *l, char **err_out);
void listen_close(struct listener *l);

/*
 * listen_parse_hostport - split "host:port", "[v6]:port", ":port" (all
 * IPv4 addresses) into host (may be "" for any) and port. 0 or -1.
 */
int listen_parse_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen);

/* daemon_detach - fork into the background, new session, stdio to /dev/null. */
void daemon_detach(void);

/* daemon_pidfile - write getpid() to path (NULL/"" = none); 0 or -1 + *err_out. */
int daemon_pidfile(const char *path, char **err_out);

/*
 * daemon_drop_privs - when running as root, switch to user (its uid, gid and
 * supplementary groups). No-op when not root or user is NULL/"". 0 or -1 with
 * *err_out (caller frees); callers treat failure as fatal.
 */
int daemon_drop_privs(const char *user, char **err_out);

/* daemon_self_dir - the directory of the running program (sluice's daemons
 * are installed beside each other); caller frees. "." if unknown. */
char *daemon_self_dir(void);

/* daemon_user_ids - uid/gid of user; 0 or -1. */
int daemon_user_ids(const char *user, unsigned *uid_out, unsigned *gid_out);

#endif
