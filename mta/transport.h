/*
 * transport: where a non-Maildir recipient goes and getting it there.
 * Owns: Postfix's transport choice (transport_maps by address, domain and
 * parent domains; virtual_transport, relay_transport, default_transport,
 * relayhost), nexthop syntax ("[host]:port" = no MX look-up, "host:port",
 * "unix:/path", "inet:host:port"), the MX look-up (RFC 5321 section 5:
 * preference order, implicit MX from A/AAAA, null MX RFC 7505) through
 * proto/dns, the order in which addresses are tried (next MX on connection
 * failure or a 4xx/5xx greeting), smtp_sasl_password_maps, and the
 * connection cache (an idle session per nexthop is kept for the next
 * delivery there: RSET, then the transaction; closed after 2 s idle, 100
 * transactions or 300 s, like Postfix's smtp_connection_cache_*).
 * Leaves: the SMTP/LMTP conversation (smtp_client.c), Maildirs (router.c,
 * maildir.c), queue marks, retries and logs (qmgr.c).
 *
 * Threads: transport_route runs in the qmgr loop thread (tables of the
 * current configuration); transport_deliver runs in worker threads and
 * uses only the immutable struct transport (one DNS resolver per call)
 * and the connection cache (under its mutex; a reaper thread QUITs idle
 * sessions).
 */
#ifndef SLUICE_MTA_TRANSPORT_H
#define SLUICE_MTA_TRANSPORT_H

#include <stddef.h>

#include "mta/smtp_client.h"

struct conf;
struct table_set;
struct router;
struct queue_msg;

enum transport_kind {
	TRANSPORT_MAILDIR = 1,	/* *out is the Maildir path */
	TRANSPORT_SMTP,		/* *out is the nexthop: "[host]:port", "host:port", "domain" */
	TRANSPORT_LMTP,		/* *out is the nexthop: "unix:/path" or "inet:host:port" */
	TRANSPORT_FAIL,		/* *out is "5.x.x reason" */
	TRANSPORT_DEFER,	/* *out is "4.x.x reason" */
};

/* routing side (reloadable with the configuration) */
struct transport_router;
/* NULL with *err_out (caller frees) on a bad table or transport name. */
struct transport_router *transport_router_new(const struct conf *c, struct table_set *ts,
					      char **err_out);
void transport_router_free(struct transport_router **tr);
/*
 * transport_route - the transport for final recipient rcpt. r decides
 * Maildir paths and unknown users for the maildir transport. *out_out is
 * the caller's (see enum transport_kind).
 */
enum transport_kind transport_route(struct transport_router *tr, struct router *r,
				    const char *rcpt, char **out_out);

/* delivery side (built once at start-up) */
struct transport;
/* NULL with *err_out (caller frees): bad TLS level, CA file or password map. */
struct transport *transport_new(const struct conf *c, char **err_out);
void transport_free(struct transport **t);

/*
 * transport_deliver - deliver rcpts[0..n) of m (addr, notify, orcpt set)
 * over kind (SMTP or LMTP) to nexthop in one transaction. Sets every
 * rcpt's res and reason ("2.0.0 250 ..." / "4.x.x ..." / "5.x.x ...");
 * relay: "host[addr]:port" of the server that answered last, or "none".
 * Blocking: call from worker threads only.
 */
void transport_deliver(struct transport *t, enum transport_kind kind, const char *nexthop,
		       struct queue_msg *m, struct smtp_client_rcpt *rcpts, size_t n, char *relay,
		       size_t relay_size);

#endif
