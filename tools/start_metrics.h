/*
 * start_metrics: `sluice start`'s one metrics port (start_metrics_listen,
 * docs/METRICS.md).
 * Owns: binding start_metrics_listen and a loopback socket for each
 * daemon; the wiring of each daemon's metrics address into the generated
 * config; the serving thread: GET /metrics reads the /metrics of sluiced
 * and of every running filter at that moment, over HTTP on loopback, all
 * at once with 2s each, and merges them (lib/metrics_merge: a label
 * daemon="sluiced"|"sluice-<name>" on every series) with its own sluice_up,
 * sluice_filter_restarts_total and the supervisor's process_*
 * (daemon="sluice").
 * Leaves: which daemons there are and the generated config file itself to
 * tools/start_reload, which of them run, their names and restarts to
 * tools/supervise (the supervisor's children); the merge to
 * lib/metrics_merge.
 *
 * A daemon without its own <name>_metrics_listen gets a loopback port
 * bound at start (127.0.0.1:0, so the kernel picks a free one and the
 * supervisor knows it): the generated config says "<param> = fd:N" and the
 * child inherits that socket (the others' sockets are closed in it).
 * Race-free, unlike a port picked by bind and close, and the port stays
 * the same across the daemon's restarts. One with its own address keeps
 * it and is scraped there (a wildcard address on loopback).
 * start_metrics_listen is bound at start only (a change needs a restart).
 *
 * Daemons are known by an index d < the ndaemons given to
 * start_metrics_bind (tools/start_reload: filters[d], then sluiced).
 *
 * Threads: every function here belongs to the supervisor's main thread.
 * The serving thread (between start_metrics_serve and start_metrics_stop)
 * owns the HTTP server and the scrapes in progress; the only data the two
 * share is the target list, which start_metrics_publish replaces as a
 * whole under a mutex and each scrape copies under the same mutex. The
 * wiring (start_metrics_wire, start_metrics_child_fd) is the main
 * thread's alone.
 */
#ifndef SLUICE_TOOLS_START_METRICS_H
#define SLUICE_TOOLS_START_METRICS_H

#include <stddef.h>

struct conf;
struct sbuf;

#define START_METRICS_DAEMONS_MAX 8	/* ndaemons of start_metrics_bind */

/*
 * start_metrics_bind - start_metrics_listen in c (before anything is
 * started): its socket, and a loopback socket for each of the ndaemons
 * daemons. Nothing when the parameter is empty (metrics off; the other
 * functions then do nothing, start_metrics_child_fd says -1). 0, or -1
 * with *err_out (caller frees). ndaemons > START_METRICS_DAEMONS_MAX is
 * our bug (panic).
 */
int start_metrics_bind(const struct conf *c, size_t ndaemons, char **err_out);

/*
 * start_metrics_wire - where daemon d serves its /metrics under the config
 * c: its own parameter param (e.g. "dkim_metrics_listen"), scraped there;
 * or, when that is empty, the socket held for it, named as "param = fd:N"
 * in the generated config out. Call for every daemon at each writing of
 * the generated config (a daemon not wired is not scraped).
 */
void start_metrics_wire(struct sbuf *out, const struct conf *c, size_t d, const char *param);

/* start_metrics_child_fd - the socket daemon d inherits (keep it open
 * across its exec), or -1. */
int start_metrics_child_fd(size_t d);

/* one daemon to scrape, as the supervisor sees it now */
struct start_metrics_daemon {
	size_t d;		/* index, as for start_metrics_wire */
	const char *label;	/* "sluiced", "sluice-dkim", ... (copied, cut at 31 bytes) */
	int running;		/* 0: sluice_up 0, not scraped */
	unsigned restarts;
};

/*
 * start_metrics_publish - the daemons to scrape from now on, in the order
 * of the merged text (their families lead in that order). Copied; call
 * after every change (start, restart, reload).
 */
void start_metrics_publish(const struct start_metrics_daemon *dm, size_t n);

/*
 * start_metrics_serve - the serving thread (after the detach: threads do
 * not survive a fork), with all signals blocked. 0 (also when metrics are
 * off), or -1 with *err_out (caller frees).
 */
int start_metrics_serve(char **err_out);

/* start_metrics_stop - the thread stopped, scrapes in progress dropped,
 * every socket closed and everything freed. */
void start_metrics_stop(void);

#endif
