/*
 * milterd: the start-up sequence every sluice milter daemon shares
 * (sluice-dkim, sluice-dmarc, sluice-spam), so each main() keeps only its
 * callbacks and its configuration.
 * Owns: registering with libmilter on <prefix>_socket (unix:/path,
 * inet:host:port, Sendmail's inet:port@host), the unix socket's mode
 * (<prefix>_socket_mode), TCP_NODELAY on inet listeners, then detaching,
 * the root helper for root-only files (lib/privfile), the privilege drop to
 * mail_owner and <prefix>_pid_file, in that order.
 * Leaves: libmilter callbacks, signal threads, reloads and smfi_main() to
 * the daemon. Every failure is fatal() with the parameter's file:line: these
 * run at start-up only.
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
 * modification and the verdict). conn is the libmilter form of
 * <prefix>_socket (e.g. from dkim_cfg_milter_conn); prefix is "dkim",
 * "dmarc", "spam".
 */
void milterd_listen(const struct conf *c, const char *prefix, const struct smfiDesc *desc,
		    const char *conn);

/*
 * milterd_privileges - detach unless foreground; when root, install the
 * root helper with *priv (priv->config_file absolute; own tables only, see
 * privfile.h); drop to mail_owner; write <prefix>_pid_file.
 */
void milterd_privileges(const struct conf *c, const char *prefix, int foreground,
			const struct privfile_opts *priv);

#endif
