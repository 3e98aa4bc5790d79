/*
 * milterd: the start-up sequence every sluice milter daemon shares
 * (sluice-dkim, sluice-dmarc, sluice-spam), so each main() keeps only its
 * callbacks and its configuration.
 * Owns: registering with libmilter on <prefix>_socket (unix:/path,
 * inet:host:port, Sendmail's inet:port@host), the unix socket's mode
 * (<prefix>_socket_mode), TCP_NODELAY on inet listeners, then detaching,
 * the root helper for root-only files (lib/privfile), the privilege drop to
 * mail_owner and <prefix>_pid_file, in that order. Then the signals:
 * one signal thread per process takes SIGHUP (the daemon's reload) and
 * SIGTERM/SIGINT (a stop that lets the messages in flight finish, then
 * _exit(0)), the count of messages in flight, the removal of our unix
 * socket on a stop, and an interposed sigwait() (see below).
 * Leaves: libmilter callbacks, what a reload does, the stop log line and
 * smfi_main() to the daemon. Every start-up failure is fatal() with the
 * parameter's file:line.
 *
 * Why sigwait() is interposed: libmilter's own signal thread sigwait()s for
 * SIGHUP, SIGTERM and SIGINT and stops the milter on any of them (SIGHUP
 * too, where we want a reload); its listener then notices the stop only at
 * its next poll time-out (about 5 s), and it does not wait for the messages
 * in flight. lib/milterd.c defines sigwait(), which calls the C library's
 * with those three taken out of the set (dlsym(RTLD_NEXT)): libmilter's
 * thread never sees them, milterd's thread takes them. Every daemon that
 * links lib/milterd.o gets it; no other thread of ours calls sigwait().
 * Every thread must block SIGHUP, SIGTERM and SIGINT before smfi_main: a
 * thread with SIGTERM open would be killed by it instead. milterd_listen
 * (and milterd_signals_start again) block them in the calling thread, so
 * call both from the main thread before any other thread is created
 * (metrics, libmilter's own threads inherit the mask).
 */
#ifndef SLUICE_LIB_MILTERD_H
#define SLUICE_LIB_MILTERD_H

#include "conf/conf.h"
#include "lib/privfile.h"

#include <libmilter/mfapi.h>

/*
 * milterd_listen - smfi_setconn(conn) + smfi_register(*desc) +
 * smfi_opensocket, chmod of a unix socket to <prefix>_socket_mode (octal),
 * and TCP_NODELAY on every listening inet socket of the process (Linux
 * passes it on to accepted connections: no Nagle stall between a
 * modification and the verdict). A unix socket's path (absolute) and
 * inode are remembered for the stop (milterd_signals_start). Blocks
 * SIGHUP, SIGTERM and SIGINT in the calling thread first: once the socket
 * accepts, a stop that comes during the rest of the start-up waits
 * (pending) for the signal thread and is a clean stop. conn is the libmilter form of
 * <prefix>_socket (e.g. from dkim_cfg_milter_conn); prefix is "dkim",
 * "dmarc", "spam".
 */
void milterd_listen(const struct conf *c, const char *prefix, const struct smfiDesc *desc,
		    const char *conn);

/*
 * milterd_privileges - detach unless foreground (a SIGTERM or SIGINT
 * pending by then would be lost by the fork: the process logs "<prefix>:
 * stopped before it was started" and exits 0 instead); when root, install the
 * root helper with *priv (priv->config_file absolute; own tables only, see
 * privfile.h); drop to mail_owner; write <prefix>_pid_file.
 */
void milterd_privileges(const struct conf *c, const char *prefix, int foreground,
			const struct privfile_opts *priv);

/*
 * A stop waits at most this long for the messages in flight (an inet
 * listener still accepts meanwhile: a message begun then is waited for too).
 */
#define MILTERD_STOP_WAIT_MS 10000
/*
 * ... and, once none is left, until this long after the last one ended:
 * the reply to the end of a message is written by libmilter after our
 * callback returned (no hook tells us when), a few microseconds later.
 */
#define MILTERD_REPLY_SETTLE_MS 200

struct milterd_signal_ops {
	/* "dkim", "dmarc", "spam": the prefix of milterd's own log line
	 * "<name>: SIGTERM: stopping (N messages in flight)" */
	const char *name;
	/* SIGHUP: load the configuration again (on the signal thread; a
	 * failure is the daemon's to log; it keeps its old generation) */
	void (*reload)(void);
	/*
	 * SIGTERM/SIGINT, after the wait: log the daemon's stop line.
	 * sig: the signal; unfinished: messages still in flight after
	 * MILTERD_STOP_WAIT_MS (0 normally). The process then _exit(0)s:
	 * nothing else runs (no atexit handlers, no libmilter clean-up).
	 */
	void (*stopped)(int sig, int unfinished);
};

/*
 * milterd_signals_start - block SIGHUP, SIGTERM and SIGINT in the calling
 * thread (call it from the main thread before any other thread exists) and
 * start the signal thread, which sigwaitinfo()s them for the life of the
 * process. On SIGHUP it calls ops->reload(). On SIGTERM or SIGINT it
 * removes the unix socket milterd_listen made if the path still names that
 * same socket (a newer one there stays; no new client can connect, the
 * sessions open go on), logs "<name>: SIGTERM: stopping (N messages in
 * flight)" (SIGINT: "SIGINT"), waits until milterd_inflight() is 0 (at most
 * MILTERD_STOP_WAIT_MS; then MILTERD_REPLY_SETTLE_MS after the last
 * milterd_inflight_leave), calls ops->stopped() and _exit(0): a requested
 * stop is exit status 0, whenever it comes (even before libmilter's
 * listener runs). smfi_stop() is not used (it waits for libmilter's
 * listener to wake up, seconds). *ops is borrowed for the life of the
 * process (static). Fatal if the thread cannot be created.
 */
void milterd_signals_start(const struct milterd_signal_ops *ops);

/*
 * milterd_inflight_enter / milterd_inflight_leave - a message began (MAIL
 * FROM, when the daemon made its per-message state) / ended (its end of
 * message, abort, a new MAIL FROM on the same connection, or the
 * connection's close). Pair them exactly: one leave per enter. Any thread;
 * atomic.
 */
void milterd_inflight_enter(void);
void milterd_inflight_leave(void);

/* milterd_inflight - messages between enter and leave now. */
int milterd_inflight(void);

#endif
