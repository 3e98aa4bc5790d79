/*
 * sdnotify: tell systemd a daemon is ready (Type=notify units), without
 * libsystemd. Owns: the sd_notify(3) datagram protocol: one message such as
 * "READY=1\nMAINPID=123" sent to the AF_UNIX datagram socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
 * Leaves: deciding when a daemon is ready (after binding its sockets and,
 * for `sluice start`, when every child answered) to the callers.
 */
#ifndef SLUICE_LIB_SDNOTIFY_H
#define SLUICE_LIB_SDNOTIFY_H

/*
 * sdnotify - send state (e.g. "READY=1", "RELOADING=1", "STOPPING=1",
 * "STATUS=text") to the service manager. Returns 1 if sent, 0 when
 * $NOTIFY_SOCKET is unset (not started by systemd: nothing to do), -1 on
 * a send error (errno set). Never blocks for long: the socket is a datagram
 * socket and the send is non-blocking.
 */
int sdnotify(const char *state);

#endif
