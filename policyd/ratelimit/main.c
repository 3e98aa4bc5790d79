/*
 * sluice-ratelimit - rate limits and greylisting as a Postfix policy
 * server. Thin: options, config, sockets, signals; the logic is in rl_*.c.
 *
 *   sluice-ratelimit -c sluice.conf [-f]    daemon on ratelimit_socket
 *   sluice-ratelimit -c sluice.conf -s      spawn mode: one client on stdin/stdout
 *   sluice-ratelimit -c sluice.conf -n      check the configuration, exit 0/1
 *   sluice-ratelimit -c sluice.conf show [KEY-PREFIX]   list counters and greylist entries
 *   sluice-ratelimit -c sluice.conf reset KEY           remove one
 *   -o name=value                          override a parameter (repeatable)
 * With ratelimit_workers > 1 the daemon forks that many workers sharing the
 * listening socket and the state (supervise()).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "conf/params.h"
#include "conf/params_ratelimit.h"
#include "lib/sdnotify.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/policy_server.h"
#include "lib/privfile.h"
#include "lib/util.h"
#include "lib/version.h"
#include "policyd/ratelimit/rl_cfg.h"
#include "policyd/ratelimit/rl_limit.h"
#include "policyd/ratelimit/rl_server.h"
#include "policyd/ratelimit/rl_store.h"

#define PROG "sluice-ratelimit"
#define MAX_OVERRIDES 64
#define STOP_GRACE_MS 10000

static const char *config_file;
static const char *overrides[MAX_OVERRIDES];
static size_t noverrides;

static void usage(FILE *f, int code)
{
	fprintf(f, "usage: " PROG " -c sluice.conf [-f] [-s] [-n] [-o name=value]\n"
		   "       " PROG " -c sluice.conf show [KEY-PREFIX] | reset KEY\n"
		   "  -f  stay in the foreground    -s  spawn mode (stdin/stdout)\n"
		   "  -n  check the configuration   -o  override a parameter\n"
		   "  --help, --version\n");
	exit(code);
}

/* load - config, overrides and settings; NULL with *err_out. */
static struct conf *load(struct rl_cfg *cfg, char **err_out)
{
	struct conf *c = conf_load(config_file, params_all, NULL, err_out);

	if (!c)
		return NULL;
	for (size_t i = 0; i < noverrides; i++) {
		const char *eq = strchr(overrides[i], '=');
		if (!eq) {
			*err_out = xasprintf("-o %s: expected name=value", overrides[i]);
			conf_free(&c);
			return NULL;
		}
		char *name = xstrndup(overrides[i], (size_t)(eq - overrides[i]));
		int rc = conf_override(c, name, eq + 1, err_out);
		free(name);
		if (rc < 0) {
			conf_free(&c);
			return NULL;
		}
	}
	/* Relative paths (rules, state file, allow lists, log) are relative to the base directory. */
	if (conf_enter_base_dir(c, err_out) < 0 || rl_cfg_load(c, cfg, err_out) < 0) {
		conf_free(&c);
		return NULL;
	}
	return c;
}

static int log_setup(const struct conf *c, const char **err_out)
{
	return log_init_conf(PROG, c, err_out);
}

/*
 * Metrics (ratelimit_metrics_listen): the registry is made before any
 * worker forks, so every worker's counts land in it. The store is wrapped
 * (metered_*) to count backend errors and time each backend call; the
 * decisions are counted where rl_server answers (metrics_filter_decision).
 */
static struct metrics *metrics;
static int metrics_fd = -1;
static int served_by_supervisor;	/* ratelimit_workers > 1 */
static int fam_backend_errors, fam_backend_seconds;

struct metered_store {
	struct rl_store base;	/* first: rl_store's functions dispatch through it */
	struct rl_store *inner;
	const char *backend;	/* "redis" or "lmdb" */
};

struct metered_job {
	const struct rl_store_ops *ops;	/* first: rl_store_cancel dispatches through it */
	struct metered_store *ms;
	struct rl_store_job *inner;
	rl_store_cb cb;
	void *arg;
	long long start_ms;
	int in_run, done;
};

static void metered_done(void *arg, const char *err)
{
	struct metered_job *j = arg;
	const char *be = j->ms->backend;

	metrics_observe(metrics, fam_backend_seconds, METRICS_L(be), (double)(now_ms() - j->start_ms) / 1000.0);
	if (err) {
		metrics_add(metrics, fam_backend_errors, METRICS_L(be), 1);
		metrics_filter_error("backend");
	}
	j->cb(j->arg, err);
	if (j->in_run)
		j->done = 1;	/* answered before run returned: run frees it */
	else
		free(j);
}

static const struct rl_store_ops metered_ops;

static struct rl_store_job *metered_run(struct rl_store *s, struct rl_plan *p, rl_store_cb cb, void *arg)
{
	struct metered_job *j = xcalloc(1, sizeof(*j));

	j->ops = &metered_ops;
	j->ms = (struct metered_store *)s;
	j->cb = cb;
	j->arg = arg;
	j->start_ms = now_ms();
	j->in_run = 1;
	j->inner = rl_store_run(j->ms->inner, p, metered_done, j);
	j->in_run = 0;
	if (j->done) {
		free(j);
		return NULL;
	}
	/* no job to cancel: the answer still comes, metered_done frees j then */
	return j->inner ? (struct rl_store_job *)j : NULL;
}

static void metered_cancel(struct rl_store_job *sj)
{
	struct metered_job *j = (struct metered_job *)sj;

	rl_store_cancel(j->inner);
	free(j);
}

static void metered_tick(struct rl_store *s, long long now)
{
	rl_store_tick(((struct metered_store *)s)->inner, now);
}

static void metered_free(struct rl_store *s)
{
	struct metered_store *ms = (struct metered_store *)s;

	rl_store_free(&ms->inner);
	free(ms);
}

static int metered_list(struct rl_store *s, const char *prefix, long long now, rl_store_each_fn fn, void *arg,
			char **err_out)
{
	return rl_store_list(((struct metered_store *)s)->inner, prefix, now, fn, arg, err_out);
}

static int metered_reset(struct rl_store *s, const char *key, char **err_out)
{
	return rl_store_reset(((struct metered_store *)s)->inner, key, err_out);
}

static const struct rl_store_ops metered_ops = { metered_run, metered_cancel, metered_tick,
						 metered_free, metered_list, metered_reset };

static struct rl_store *open_store(struct event_base *base, const struct rl_cfg *cfg, char **err_out)
{
	struct rl_store *st;

	if (cfg->backend_redis)
		st = rl_store_redis_new(base, cfg, err_out);
	else
		st = rl_store_embedded_new(cfg->state_file, cfg->state_max_bytes, cfg->sync_ms, err_out);
	if (!st || !metrics)
		return st;
	struct metered_store *ms = xcalloc(1, sizeof(*ms));
	ms->base.ops = &metered_ops;
	ms->inner = st;
	ms->backend = cfg->backend_redis ? "redis" : "lmdb";
	metrics_touch(metrics, fam_backend_errors, METRICS_L(ms->backend));
	return &ms->base;
}

/* metrics_setup - the registry and its families (before any worker forks) */
static void metrics_setup(void)
{
	metrics = metrics_new(0, 1);
	metrics_filter_init(metrics, "ratelimit", "requests");
	fam_backend_errors = metrics_family(metrics, "sluice_ratelimit_backend_errors_total", METRICS_COUNTER,
					    "State backend calls that failed (ratelimit_on_backend_error applied).",
					    "backend", NULL, 0);
	fam_backend_seconds = metrics_family(metrics, "sluice_ratelimit_backend_duration_seconds",
					     METRICS_HISTOGRAM, "Time of one state backend call, in seconds.",
					     "backend", NULL, 0);
}

struct sigctx {
	struct rl_server *srv;
	struct conf **conf;
};

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	struct sigctx *x = arg;

	(void)what;
	log_event(NULL, "ratelimit: signal %d: stopping", (int)sig);
	policy_server_stop(rl_server_policy(x->srv), STOP_GRACE_MS);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct sigctx *x = arg;
	struct rl_cfg cfg;
	char *err = NULL, *warn = NULL;
	const char *lerr = NULL;

	(void)sig, (void)what;
	struct conf *c = load(&cfg, &err);
	if (!c) {
		log_event(NULL, "warning: ratelimit: reload failed, keeping the old configuration: %s",
			  err);
		free(err);
		return;
	}
	rl_server_reload(x->srv, &cfg, &warn);
	if (warn) {
		log_event(NULL, "warning: ratelimit: %s", warn);
		free(warn);
	}
	if (log_setup(c, &lerr) < 0)
		log_event(NULL, "warning: ratelimit: maillog_file: %s", lerr);
	conf_free(x->conf);
	*x->conf = c;
	log_event(NULL, "ratelimit: configuration reloaded from %s (counters kept)", config_file);
}

/* ------------------------------------------------------------ show / reset */

struct show {
	enum rl_algo algo;
	long long now_ms;
};

/* print_cell - one line per cell; a counter is shown as of now (drained). */
static void print_cell(void *arg, const char *key, const struct rl_cell *c)
{
	const struct show *sh = arg;
	char when[32];
	time_t t = (time_t)(c->expires_ms / 1000);
	struct tm tm;
	long long max = 0, window_s = 0;
	const char *limit = strchr(key, ':');

	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!strncmp(key, "grey:", 5)) {
		printf("%s first=%lld last=%lld passed=%s expires=%s\n", key, (long long)(c->a / 1000),
		       (long long)(c->b / 1000), c->c != 0 ? "yes" : "no", when);
	} else if (!strncmp(key, "greyc:", 6)) {
		printf("%s passed_triplets=%.0f expires=%s\n", key, c->a, when);
	} else if (limit && sscanf(limit + 1, "%lld/%llds:", &max, &window_s) == 2 && max > 0 &&
		   window_s > 0) {
		/* "kind:MAX/WINDOWs:..." carries its limit; cost 0 gives the count now */
		struct rl_cell out;
		struct rl_limit_res res;
		rl_limit_take(sh->algo, max, window_s * 1000, 0, sh->now_ms, c, &out, &res);
		printf("%s count=%.2f limit=%lld/%llds reset=%s\n", key, res.used, max, window_s, when);
	} else {
		printf("%s a=%g b=%g c=%g expires=%s\n", key, c->a, c->b, c->c, when);
	}
}

static int admin(const struct rl_cfg *cfg, char **args, int nargs)
{
	char *err = NULL;
	struct event_base *base = event_base_new();
	struct rl_store *st;

	if (strcmp(args[0], "show") && strcmp(args[0], "reset"))
		usage(stderr, 2);
	if ((!strcmp(args[0], "show") && nargs > 2) || (!strcmp(args[0], "reset") && nargs != 2))
		usage(stderr, 2);
	st = open_store(base, cfg, &err);
	if (!st) {
		fprintf(stderr, PROG ": %s\n", err);
		free(err);
		event_base_free(base);
		return 1;
	}
	int rc;
	if (!strcmp(args[0], "show")) {
		struct show sh = { cfg->algo, (long long)(wall_time() * 1000) };
		rc = rl_store_list(st, nargs > 1 ? args[1] : "", sh.now_ms, print_cell, &sh, &err);
	} else {
		rc = rl_store_reset(st, args[1], &err);
		if (rc >= 0)
			printf("%s: %s\n", args[1], rc ? "reset" : "not found");
	}
	if (rc < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		free(err);
	}
	rl_store_free(&st);
	event_base_free(base);
	return rc < 0 ? 1 : 0;
}

/* ------------------------------------------------------------ serving */

/*
 * serve - one event loop until SIGTERM; listen_fd -1 = spawn mode
 * (stdin/stdout). cfg is moved into the server. Opens the store here, after
 * any fork (neither an LMDB environment nor a Redis connection may cross one).
 */
static int serve(struct conf **c, struct rl_cfg *cfg, int listen_fd)
{
	char *err = NULL;
	struct event_base *base = event_base_new();

	if (!base)
		fatal("event_base_new failed");
	struct rl_store *store = open_store(base, cfg, &err);
	if (!store)
		fatal("%s: %s", cfg->backend_redis ? "ratelimit_redis_server" : "ratelimit_state_file",
		      err);
	struct rl_server *srv = rl_server_new(base, cfg, store);
	struct policy_server *ps = rl_server_policy(srv);
	if (listen_fd >= 0 && policy_server_listen(ps, listen_fd, &err) < 0)
		fatal("ratelimit_socket: %s", err);
	if (listen_fd < 0)
		policy_server_add_stdio(ps, 0, 1);
	struct metrics_http *mh = NULL;
	if (metrics_fd >= 0 && !served_by_supervisor) {
		mh = metrics_http_start(metrics, base, metrics_fd, &err);
		if (!mh)
			fatal("ratelimit_metrics_listen: %s", err);
		metrics_fd = -1;	/* the server's now */
	}

	struct sigctx sx = { srv, c };
	struct event *ev_term = evsignal_new(base, SIGTERM, on_term, &sx);
	struct event *ev_int = evsignal_new(base, SIGINT, on_term, &sx);
	struct event *ev_hup = evsignal_new(base, SIGHUP, on_hup, &sx);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);
	if (listen_fd >= 0)
		log_event(NULL, "ratelimit: listening on %s, backend=%s", conf_str(*c, "ratelimit_socket"),
			  conf_str(*c, "ratelimit_backend"));
	sdnotify("READY=1");	/* Type=notify units (sluice-ratelimit.service) */
	event_base_dispatch(base);

	const struct policy_server_stats *st = policy_server_stats(ps);
	log_event(NULL, "ratelimit: stopped: connections=%llu, requests=%llu, malformed=%llu",
		  st->conns, st->requests, st->malformed);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	metrics_http_stop(&mh);
	rl_server_free(&srv);
	event_base_free(base);
	return 0;
}

#define MAX_WORKERS 64
#define WORKER_MIN_LIFE_S 2

struct worker {
	pid_t pid;
	time_t started;
};

static pid_t start_worker(struct conf **c, struct rl_cfg *cfg, int listen_fd, const sigset_t *mask)
{
	pid_t pid = fork();

	if (pid < 0)
		fatal("fork: %m");
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, mask, NULL);
		if (metrics_fd >= 0)
			close(metrics_fd);	/* the supervisor serves the metrics */
		metrics_fd = -1;
		int rc = serve(c, cfg, listen_fd);
		conf_free(c);
		exit(rc);
	}
	return pid;
}

/*
 * supervise - ratelimit_workers processes share the listening socket and
 * the state (LMDB locks between processes; Redis is shared anyway), so
 * counting stays exact. SIGHUP and SIGTERM are passed on; a worker that
 * dies is replaced, unless it died at start (then everything stops).
 */
static int supervise(struct conf **c, struct rl_cfg *cfg, int listen_fd, int n)
{
	struct worker w[MAX_WORKERS] = { 0 };
	sigset_t set, old;
	int stopping = 0, alive = 0, rc = 0;

	if (n > MAX_WORKERS)
		n = MAX_WORKERS;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &old);
	/* the workers share the registry; this process serves it, from a thread */
	struct metrics_http *mh = NULL;
	char *err = NULL;
	served_by_supervisor = 1;
	if (metrics_fd >= 0 && !(mh = metrics_http_start(metrics, NULL, metrics_fd, &err)))
		fatal("ratelimit_metrics_listen: %s", err);
	for (int i = 0; i < n; i++, alive++) {
		w[i].pid = start_worker(c, cfg, listen_fd, &old);
		w[i].started = time(NULL);
	}
	log_event(NULL, "ratelimit: %d workers on %s", n, conf_str(*c, "ratelimit_socket"));
	while (alive > 0) {
		int sig, status;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP || sig == SIGTERM || sig == SIGINT) {
			stopping |= sig != SIGHUP;
			for (int i = 0; i < n; i++)
				if (w[i].pid > 0)
					kill(w[i].pid, sig == SIGHUP ? SIGHUP : SIGTERM);
			continue;
		}
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			int i = 0;
			while (i < n && w[i].pid != pid)
				i++;
			if (i == n)
				continue;
			w[i].pid = 0;
			alive--;
			if (stopping)
				continue;
			if (time(NULL) - w[i].started < WORKER_MIN_LIFE_S) {
				log_event(NULL, "warning: ratelimit: worker %d exited at start (status %d); "
					  "stopping", (int)pid, status);
				stopping = 1;
				rc = 1;
				for (int j = 0; j < n; j++)
					if (w[j].pid > 0)
						kill(w[j].pid, SIGTERM);
				continue;
			}
			log_event(NULL, "warning: ratelimit: worker %d exited (status %d); starting another",
				  (int)pid, status);
			w[i].pid = start_worker(c, cfg, listen_fd, &old);
			w[i].started = time(NULL);
			alive++;
		}
	}
	metrics_http_stop(&mh);
	metrics_fd = -1;
	sigprocmask(SIG_SETMASK, &old, NULL);
	rl_cfg_free(cfg);
	return rc;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	int foreground = 0, spawn = 0, check_only = 0, ch;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help"))
			usage(stdout, 0);
		if (!strcmp(argv[i], "--version")) {
			printf(PROG " (sluice) " SLUICE_VERSION "\n");
			return 0;
		}
	}
	log_set_stderr_only(PROG);
	while ((ch = getopt(argc, argv, "c:fsno:")) != -1) {
		switch (ch) {
		case 'c': config_file = optarg; break;
		case 'f': foreground = 1; break;
		case 's': spawn = 1; break;
		case 'n': check_only = 1; break;
		case 'o':
			if (noverrides == MAX_OVERRIDES)
				usage(stderr, 2);
			overrides[noverrides++] = optarg;
			break;
		default: usage(stderr, 2);
		}
	}
	if (!config_file)
		usage(stderr, 2);
	/* load() enters the base directory: reloads need the file's absolute name */
	char *abs_conf = realpath(config_file, NULL);
	if (!abs_conf) {
		fprintf(stderr, PROG ": %s: %s\n", config_file, strerror(errno));
		return 1;
	}
	config_file = abs_conf;

	struct rl_cfg cfg;
	char *err = NULL;
	const char *lerr = NULL;
	struct conf *c = load(&cfg, &err);
	if (!c) {
		fprintf(stderr, PROG ": %s\n", err);
		free(err);
		free(abs_conf);
		return 1;
	}
	size_t nw;
	const char *const *w = conf_warnings(c, &nw);
	for (size_t i = 0; i < nw; i++)
		fprintf(stderr, PROG ": warning: %s\n", w[i]);
	if (optind < argc) {
		/* as the daemon's user, so a state file it creates stays the daemon's */
		if (daemon_drop_privs(conf_str(c, "mail_owner"), &err) < 0) {
			fprintf(stderr, PROG ": mail_owner: %s\n", err);
			free(err);
			rl_cfg_free(&cfg);
			conf_free(&c);
			free(abs_conf);
			return 1;
		}
		int rc = admin(&cfg, argv + optind, argc - optind);
		rl_cfg_free(&cfg);
		conf_free(&c);
		free(abs_conf);
		return rc;
	}
	if (check_only) {
		rl_cfg_free(&cfg);
		conf_free(&c);
		free(abs_conf);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (log_setup(c, &lerr) < 0)
		fatal("maillog_file %s: %s", conf_str(c, "maillog_file"), lerr);
	int workers = spawn ? 1 : (int)conf_int(c, "ratelimit_workers");
	if (workers > 1 && !cfg.backend_redis && !*cfg.state_file)
		fatal("%s: ratelimit_workers > 1 needs a ratelimit_state_file (or redis) to share",
		      conf_where(c, "ratelimit_workers"));

	struct listener lst = { 0 };
	lst.fd = -1;
	if (!spawn) {
		const char *spec = conf_str(c, "ratelimit_socket");
		if (!strncmp(spec, "inet:", 5))
			spec += 5;
		if (listen_open(spec, 511, 0, &lst, &err) < 0)
			fatal("%s: ratelimit_socket: %s", conf_where(c, "ratelimit_socket"), err);
	}
	if (!spawn)
		metrics_fd = metrics_conf_listen(c, "ratelimit_metrics_listen");
	if (!spawn && !foreground)
		daemon_detach();
	/*
	 * Root-only files (rules, allow lists, a root-made maillog_file) stay
	 * readable on reload through a root helper (lib/privfile), installed by
	 * the process that lives on, before the privilege drop.
	 * XXX: not with ratelimit_workers > 1 (the workers would share one
	 * helper socket); they re-read what mail_owner can read.
	 */
	if (!spawn && workers == 1 && geteuid() == 0) {
		static const struct conf_param *const own[] = { common_params, ratelimit_params, NULL };
		static const char *const more[] = { "ratelimit_rules", NULL };
		struct privfile_opts priv = { .config_file = abs_conf, .tables = own, .more_params = more };
		if (privfile_install(&priv, &err) < 0)
			fatal("privfile: %s", err);
	}
	if (daemon_drop_privs(conf_str(c, "mail_owner"), &err) < 0)
		fatal("mail_owner: %s", err);
	if (workers > 1 && !cfg.backend_redis) {
		/* fail now, not in every worker (each opens its own environment after fork) */
		struct rl_store *probe = rl_store_embedded_new(cfg.state_file, cfg.state_max_bytes,
							       cfg.sync_ms, &err);
		if (!probe)
			fatal("ratelimit_state_file: %s", err);
		rl_store_free(&probe);
	}
	if (!spawn && daemon_pidfile(conf_str(c, "ratelimit_pid_file"), &err) < 0)
		fatal("ratelimit_pid_file: %s", err);
	if (metrics_fd >= 0)
		metrics_setup();

	int rc = workers > 1 ? supervise(&c, &cfg, lst.fd, workers) : serve(&c, &cfg, lst.fd);
	if (!spawn) {
		listen_close(&lst);
		const char *pf = conf_str(c, "ratelimit_pid_file");
		if (pf && *pf)
			unlink(pf);
	}
	conf_free(&c);
	free(abs_conf);
	metrics_filter.m = NULL;
	metrics_free(&metrics);
	return rc;
}
