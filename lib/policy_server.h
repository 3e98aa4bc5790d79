/*
 * policy_server: the server side of the Postfix policy delegation
 * protocol inside one libevent loop, for any policy daemon.
 * Owns: accepting on listening sockets, connections (and spawn mode's
 * stdin/stdout pair), framing through proto/policy, one request in flight
 * per connection so replies go out in order, malformed input (logged with
 * the daemon's name, connection closed without a reply, as Postfix
 * expects), the graceful stop, counters.
 * Leaves: what a request means and when it is answered (the handler, which
 * may answer at once or later from the loop), creating sockets
 * (lib/daemon), signals and the process (main).
 */
#ifndef SLUICE_LIB_POLICY_SERVER_H
#define SLUICE_LIB_POLICY_SERVER_H

#include "proto/policy.h"

struct event_base;
struct policy_server;
struct policy_server_req;

/*
 * policy_server_handler - a new request. m (a copy owned by the server)
 * stays valid until policy_server_reply(r). The handler answers exactly
 * once with policy_server_reply, now or later; if the client goes away
 * first, the cancel callback set with policy_server_req_on_cancel runs
 * instead (and r is gone).
 */
typedef void (*policy_server_handler)(void *arg, struct policy_server_req *r,
				      const struct policy_msg *m);

/* policy_server_new - name ("ratelimit") prefixes its warnings. */
struct policy_server *policy_server_new(struct event_base *base, const char *name,
					policy_server_handler h, void *arg);
/* policy_server_free - closes every connection (pending requests are cancelled). */
void policy_server_free(struct policy_server **s);

/* policy_server_listen - accept on the listening socket fd (the caller keeps and closes it). */
int policy_server_listen(struct policy_server *s, int fd, char **err_out);
/*
 * policy_server_add_stdio - spawn mode: read in_fd, write out_fd (replies
 * are written whole even on a non-blocking fd); when that client ends the
 * loop is asked to exit.
 */
void policy_server_add_stdio(struct policy_server *s, int in_fd, int out_fd);
/* policy_server_add_fd - serve one connected stream socket (owned from now on). */
void policy_server_add_fd(struct policy_server *s, int fd);

/* policy_server_reply - answer r with "action=ACTION"; r is freed. */
void policy_server_reply(struct policy_server_req *r, const char *action);
/* policy_server_req_on_cancel - fn(arg) runs if r's client goes away before the reply. */
void policy_server_req_on_cancel(struct policy_server_req *r, void (*fn)(void *arg), void *arg);

/*
 * policy_server_stop - stop accepting, close idle connections, and exit
 * the loop when every request in flight has been answered (or after
 * grace_ms).
 */
void policy_server_stop(struct policy_server *s, long long grace_ms);

struct policy_server_stats {
	unsigned long long conns, requests, malformed;
};
const struct policy_server_stats *policy_server_stats(const struct policy_server *s);

#endif
