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
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "conf/params.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/policy_server.h"
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
	if (rl_cfg_load(c, cfg, err_out) < 0) {
		conf_free(&c);
		return NULL;
	}
	return c;
}

static int log_setup(const struct conf *c, const char **err_out)
{
	return log_init(PROG, conf_str(c, "maillog_file"),
			!strcmp(conf_str(c, "log_format"), "json") ? LOG_FORMAT_JSON : LOG_FORMAT_PLAIN,
			err_out);
}

static struct rl_store *open_store(struct event_base *base, const struct rl_cfg *cfg, char **err_out)
{
	if (cfg->backend_redis)
		return rl_store_redis_new(base, cfg, err_out);
	return rl_store_embedded_new(cfg->state_file, cfg->state_max_bytes, cfg->sync_ms, err_out);
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

	struct rl_cfg cfg;
	char *err = NULL;
	const char *lerr = NULL;
	struct conf *c = load(&cfg, &err);
	if (!c) {
		fprintf(stderr, PROG ": %s\n", err);
		free(err);
		return 1;
	}
	size_t nw;
	const char *const *w = conf_warnings(c, &nw);
	for (size_t i = 0; i < nw; i++)
		fprintf(stderr, PROG ": warning: %s\n", w[i]);
	if (optind < argc) {
		int rc = admin(&cfg, argv + optind, argc - optind);
		rl_cfg_free(&cfg);
		conf_free(&c);
		return rc;
	}
	if (check_only) {
		rl_cfg_free(&cfg);
		conf_free(&c);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (log_setup(c, &lerr) < 0)
		fatal("maillog_file %s: %s", conf_str(c, "maillog_file"), lerr);

	struct listener lst = { 0 };
	if (!spawn) {
		const char *spec = conf_str(c, "ratelimit_socket");
		if (!strncmp(spec, "inet:", 5))
			spec += 5;
		if (listen_open(spec, 511, 0, &lst, &err) < 0)
			fatal("%s: ratelimit_socket: %s", conf_where(c, "ratelimit_socket"), err);
	}
	if (daemon_drop_privs(conf_str(c, "mail_owner"), &err) < 0)
		fatal("mail_owner: %s", err);
	if (!spawn && !foreground)
		daemon_detach();
	if (!spawn && daemon_pidfile(conf_str(c, "ratelimit_pid_file"), &err) < 0)
		fatal("ratelimit_pid_file: %s", err);

	struct event_base *base = event_base_new();
	if (!base)
		fatal("event_base_new failed");
	struct rl_store *store = open_store(base, &cfg, &err);
	if (!store)
		fatal("%s: %s", cfg.backend_redis ? "ratelimit_redis_server" : "ratelimit_state_file",
		      err);
	struct rl_server *srv = rl_server_new(base, &cfg, store);
	struct policy_server *ps = rl_server_policy(srv);
	if (!spawn && policy_server_listen(ps, lst.fd, &err) < 0)
		fatal("ratelimit_socket: %s", err);
	if (spawn)
		policy_server_add_stdio(ps, 0, 1);

	struct sigctx sx = { srv, &c };
	struct event *ev_term = evsignal_new(base, SIGTERM, on_term, &sx);
	struct event *ev_int = evsignal_new(base, SIGINT, on_term, &sx);
	struct event *ev_hup = evsignal_new(base, SIGHUP, on_hup, &sx);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);
	if (!spawn)
		log_event(NULL, "ratelimit: listening on %s, backend=%s", conf_str(c, "ratelimit_socket"),
			  conf_str(c, "ratelimit_backend"));
	event_base_dispatch(base);

	const struct policy_server_stats *st = policy_server_stats(ps);
	log_event(NULL, "ratelimit: stopped: connections=%llu, requests=%llu, malformed=%llu",
		  st->conns, st->requests, st->malformed);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	rl_server_free(&srv);
	event_base_free(base);
	if (!spawn) {
		listen_close(&lst);
		const char *pf = conf_str(c, "ratelimit_pid_file");
		if (pf && *pf)
			unlink(pf);
	}
	conf_free(&c);
	return 0;
}
