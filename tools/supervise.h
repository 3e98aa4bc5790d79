/*
 * supervise: the children of `sluice start` (tools/start) and their lives.
 * Owns: the table of daemons that run (filters, then sluiced last) and of
 * filters on their way out (switched off at a reload); starting one
 * (fork, exec with -f -c <generated config>, NOTIFY_SOCKET removed, only
 * its own metrics socket kept open); readiness (a filter's unix socket
 * accepts a connection and is made 0666 for sluiced's receivers; sluiced
 * greets with 220 on each smtpd_listen address, or with none is still up
 * after a second); reaping, and restarting a crashed daemon with backoff
 * (1s doubling to 60s, back to 1s after a minute up), logged; the status
 * file (run_directory/status: one line per daemon: name pid started
 * socket restarts) and telling tools/start_metrics which daemons run at
 * each writing of it; stopping one daemon, or all (sluiced first).
 * Leaves: which daemons run and the generated config (writing it, reload,
 * when a filter on its way out is stopped) to tools/start_reload; signals
 * and the supervisor's loop to tools/start; metrics to tools/start_metrics.
 *
 * Everything here runs in the supervisor's main thread, on one struct
 * supervise that the caller owns and passes in.
 */
#ifndef SLUICE_TOOLS_SUPERVISE_H
#define SLUICE_TOOLS_SUPERVISE_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

enum supervise_kind { SUPERVISE_MILTER, SUPERVISE_POLICY, SUPERVISE_MTA };

#define SUPERVISE_FILTERS_MAX 7	/* room in the tables; tools/start_reload has fewer */
/* how long a daemon has to answer after it is started (named in the reason why not) */
#define SUPERVISE_START_TIMEOUT_S 30.0

struct supervise_child {
	const char *name;	/* "dkim", ..., "sluiced" (static, not freed) */
	enum supervise_kind kind;
	size_t metrics_d;	/* its daemon index for tools/start_metrics */
	char *bin;		/* freed by supervise_child_free */
	char *sock;		/* unix socket path, NULL for sluiced; freed the same way */
	pid_t pid;		/* 0: not running */
	double started;
	unsigned restarts;
	double restart_at;	/* 0 = running or not due */
	double backoff_s;
	/* one on its way out (leaving[]): SIGTERM sent, SIGKILL after kill_at */
	int stopping;
	double kill_at;
};

struct supervise {
	/* the caller's, set before the first child is started; borrowed */
	const char *run_dir;	/* the status file goes here */
	const char *gen_conf;	/* the config each child is started with */
	char **mta_listen;	/* sluiced's smtpd_listen addresses: probed for a 220 greeting */
	size_t n_mta_listen;
	/*
	 * Set (also from a signal handler) once everything is to stop: a wait
	 * for readiness gives up and nothing is restarted any more.
	 */
	volatile sig_atomic_t term;
	/* the running daemons: filters first, sluiced last; the caller adds and removes them */
	struct supervise_child kids[SUPERVISE_FILTERS_MAX + 1];
	size_t nkids;
	/*
	 * Filters switched off at a reload: out of the generated config
	 * already, stopped by the caller when it is safe
	 * (start_reload_progress); reaped, logged and freed here.
	 */
	struct supervise_child leaving[SUPERVISE_FILTERS_MAX];
	size_t nleaving;
};

/* supervise_spawn - k started (fork and exec, its old socket removed first); k->pid and k->started set. Returns k->pid. */
pid_t supervise_spawn(const struct supervise *sv, struct supervise_child *k);

/*
 * supervise_wait_ready - until k answers (see above). 0, or -1 when it
 * died (*status_out set, k->pid = 0), did not answer within timeout_s or
 * sv->term was set (*status_out = -1 for both).
 */
int supervise_wait_ready(const struct supervise *sv, struct supervise_child *k, double timeout_s,
			 int *status_out);

/* supervise_not_ready_reason - why k did not come up (status from supervise_wait_ready), for the log; caller frees. */
char *supervise_not_ready_reason(const struct supervise *sv, const struct supervise_child *k, int status);

/* supervise_child_free - k's bin and sock freed; *k cleared. */
void supervise_child_free(struct supervise_child *k);

/*
 * supervise_reap - after SIGCHLD: every child that exited is reaped; a
 * daemon in kids[] is scheduled for its restart (unless sv->term), one in
 * leaving[] is logged, its socket removed and its slot freed.
 */
void supervise_reap(struct supervise *sv);

/* supervise_restart_due - the daemons whose restart is due are started again (20s to answer); the status file rewritten. */
void supervise_restart_due(struct supervise *sv);

/* supervise_stop_wait - SIGTERM to k, wait for it (SIGKILL after timeout_s); k->pid = 0. */
void supervise_stop_wait(struct supervise_child *k, double timeout_s);

/* supervise_stop_all - SIGTERM to every daemon (sluiced first) and to those leaving; waits, SIGKILL after 40s. */
void supervise_stop_all(struct supervise *sv);

/* supervise_publish_targets - tools/start_metrics told which daemons run now (sluiced first). */
void supervise_publish_targets(const struct supervise *sv);

/* supervise_write_status - the status file rewritten (through a rename; a failure is logged), after supervise_publish_targets. */
void supervise_write_status(const struct supervise *sv);

/* supervise_sluiced_pid - the running sluiced, or 0. */
pid_t supervise_sluiced_pid(const struct supervise *sv);

#endif
