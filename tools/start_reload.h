/*
 * start_reload: which filters `sluice start` runs and how sluiced is
 * wired to them, at start and at each reload.
 * Owns: the filters and their order (milters dkim, dmarc, spam; policy
 * daemons spf, ratelimit); following their <name>_enable switches (one
 * whose daemon is not built is skipped, logged); the generated config
 * (the admin's file, then the wiring: config_directory, each daemon's
 * metrics address, <name>_socket, the milters first in smtpd_milters, the
 * policy daemons as check_policy_service right after
 * reject_unauth_destination in smtpd_recipient_restrictions, and
 * dmarc_self_validate = no when dkim runs ahead of dmarc); the reload.
 * Leaves: the children's lives (starting, readiness, restarts, the status
 * file, stopping) to tools/supervise; the signals, the supervisor's loop
 * and the commands to tools/start; the metrics sockets to
 * tools/start_metrics.
 *
 * Reload (SIGHUP, `sluice reload`) follows the <name>_enable switches both
 * ways without restarting sluiced: a filter switched on is started and
 * must answer before the new wiring names it (one that does not stays out
 * of the chain, logged); the wiring is rewritten and sluiced and the
 * filters that stay are HUPed (sluiced replaces its receivers, which read
 * the new chain; the old ones finish their sessions); a filter switched off
 * leaves the status file at once and is stopped (SIGTERM) once sluiced's
 * receivers from before the reload are gone, or after
 * graceful_stop_timeout, so no session in progress meets it missing. Then
 * "reload done -- filters in sluiced's chain: ..." is logged (and READY=1
 * sent).
 *
 * Everything here runs in the supervisor's main thread.
 */
#ifndef SLUICE_TOOLS_START_RELOAD_H
#define SLUICE_TOOLS_START_RELOAD_H

#include <stddef.h>
#include <sys/types.h>

struct conf;
struct supervise;

struct start_reload {
	/* the caller's, set before start_reload_setup; borrowed */
	struct supervise *sv;	/* its kids[] and leaving[] are changed here */
	const char *user_conf;	/* the admin's config (absolute), read again at each reload */
	const char *base_dir;	/* config_directory in the generated config */
	const char *run_dir;	/* <name>.sock goes here */
	const char *gen_conf;	/* the generated config */
	const char *bindir;	/* sluiced and sluice-<name> */
	/* ours: a reload in progress waits for sluiced's processes at the HUP to be gone */
	int reloading;
	pid_t drain_pids[256];
	size_t ndrain;
	double drain_until;
};

/* start_reload_ndaemons - how many daemons there can be (every filter and sluiced), for start_metrics_bind. */
size_t start_reload_ndaemons(void);

/*
 * start_reload_setup - at start, under the admin's config c: r->sv->kids[]
 * = the filters switched on, then sluiced (none started yet); the
 * generated config written (through a rename). 0, or -1 with *err_out
 * (caller frees).
 */
int start_reload_setup(struct start_reload *r, const struct conf *c, char **err_out);

/*
 * start_reload_begin - SIGHUP: read the admin's config again; start the
 * filters switched on (each must answer, or it stays out of the chain),
 * write the wiring for the new set, HUP the daemons that keep running and
 * move the filters switched off to r->sv->leaving[] for
 * start_reload_progress. A config that does not load, or a wiring that
 * cannot be written, changes nothing (logged). Sends RELOADING=1.
 */
void start_reload_begin(struct start_reload *r);

/*
 * start_reload_progress - the second half of a reload, from the
 * supervisor's loop (nothing when none is in progress): once sluiced's old
 * receivers are gone (or graceful_stop_timeout has passed), the filters
 * switched off are stopped (SIGTERM, SIGKILL after 30s; reaped by
 * supervise_reap); once they have exited, the reload is done: logged, the
 * status file rewritten, READY=1.
 */
void start_reload_progress(struct start_reload *r);

/* start_reload_busy - whether a reload is in progress (the loop then polls more often). */
int start_reload_busy(const struct start_reload *r);

#endif
