/*
 * rl_server: sluice-ratelimit's requests inside the event loop. Owns: the
 * configuration generations (SIGHUP makes a new one; requests in flight
 * finish with theirs; counters live in the store and are kept), the path
 * of one request (rl_engine plan -> rl_store -> rl_engine decision ->
 * reply), the log line per decision, the store's housekeeping timer.
 * Leaves: the protocol plumbing (lib/policy_server), decisions (rl_engine),
 * state (rl_store), options and signals (main.c).
 */
#ifndef SLUICE_RL_SERVER_H
#define SLUICE_RL_SERVER_H

#include "lib/policy_server.h"
#include "policyd/ratelimit/rl_cfg.h"
#include "policyd/ratelimit/rl_store.h"

struct event_base;
struct rl_server;

/*
 * rl_server_new - cfg is moved in (do not free it); store is owned from
 * now on. The clock is the wall clock (counters outlive the process and
 * are shared between hosts).
 */
struct rl_server *rl_server_new(struct event_base *base, struct rl_cfg *cfg, struct rl_store *store);
void rl_server_free(struct rl_server **s);

/* rl_server_policy - the protocol server (to add listeners and stdio, to stop). */
struct policy_server *rl_server_policy(struct rl_server *s);

/*
 * rl_server_reload - new settings (moved in) for new requests. The store
 * stays (a change of backend or state file needs a restart: *warn_out
 * says so, caller frees; NULL otherwise).
 */
void rl_server_reload(struct rl_server *s, struct rl_cfg *cfg, char **warn_out);

#endif
