/*
 * spfd_server: the sluice-spf policy server inside one libevent loop.
 * Owns: client connections (listening sockets and spawn mode's
 * stdin/stdout), framing through proto/policy (one request in flight per
 * connection, replies in order), running each request's spfd_job with
 * spfd_run checks, the per-message instance memory, one log line per
 * request, reload (new options and DNS settings for new requests) and the
 * graceful stop. Also the query mode used by tests (spfd_server_query_*).
 * Leaves: option parsing to spfd_policy, sockets' creation to lib/daemon,
 * signals and the process to main.c.
 */
#ifndef SLUICE_SPFD_SERVER_H
#define SLUICE_SPFD_SERVER_H

#include <stddef.h>
#include "policyd/spf/spfd_policy.h"
#include "proto/dns.h"

struct event_base;
struct spfd_server;

/*
 * spfd_server_new - opts are moved into the server (do not free them);
 * dns: resolver options (strings copied by proto/dns). NULL with *err_out.
 */
struct spfd_server *spfd_server_new(struct event_base *base, struct spfd_opts *opts,
				    const struct dns_opts *dns, char **err_out);
void spfd_server_free(struct spfd_server **s);

/* spfd_server_listen - accept clients on the listening socket fd (kept open by the caller). */
int spfd_server_listen(struct spfd_server *s, int fd, char **err_out);
/*
 * spfd_server_add_stdio - spawn mode: one client reading in_fd, writing
 * out_fd; when it ends (EOF after the last reply, or a malformed request)
 * the loop is asked to exit.
 */
void spfd_server_add_stdio(struct spfd_server *s, int in_fd, int out_fd);
/*
 * spfd_server_add_fd - serve one already-connected stream socket (tests,
 * fuzzing). The fd is owned by the server from now on.
 */
void spfd_server_add_fd(struct spfd_server *s, int fd);

/* spfd_server_reload - new options (moved in) and resolver for new requests. */
int spfd_server_reload(struct spfd_server *s, struct spfd_opts *opts, const struct dns_opts *dns,
		       char **err_out);
/*
 * spfd_server_stop - stop accepting; close idle connections; exit the loop
 * once every request in flight has been answered (or after grace_ms).
 */
void spfd_server_stop(struct spfd_server *s, long long grace_ms);

/* Counters for tests and the shutdown log line. */
struct spfd_server_stats {
	unsigned long long conns, requests, malformed, instance_hits;
};
const struct spfd_server_stats *spfd_server_stats(const struct spfd_server *s);

/*
 * Query mode (sluice-spf -q): lines on in_fd, one check each, answers on
 * out_fd as they finish (any order), then the loop exits at EOF:
 *   in:  ID x<ip> x<sender> x<helo> mfrom|helo [x<receiver> [x<default explanation>]]
 *   out: ID RESULT x<mechanism> x<explanation> x<reason> x<problem> x<received-spf> TERMS QUERIES
 * Every x field is "x" + hex of the bytes ("x" alone = empty / none).
 */
void spfd_server_query_stdio(struct spfd_server *s, int in_fd, int out_fd);

#endif
