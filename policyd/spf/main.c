/*
 * sluice-spf - SPF policy server for Postfix (policy delegation protocol).
 * Thin: options, config, sockets, signals; the logic is in spfd_*.c.
 *
 *   sluice-spf -c sluice.conf [-f]   daemon on spf_socket
 *   sluice-spf -c sluice.conf -s     spawn mode: one client on stdin/stdout
 *   sluice-spf -c sluice.conf -n     check the configuration, exit 0/1
 *   sluice-spf -c sluice.conf -q     query mode for tests (spfd_server.h)
 *   -o name=value                    override a parameter (repeatable)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "conf/params.h"
#include "conf/params_spf.h"
#include "lib/sdnotify.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/privfile.h"
#include "lib/util.h"
#include "lib/version.h"
#include "policyd/spf/spfd_policy.h"
#include "policyd/spf/spfd_server.h"

#define MAX_OVERRIDES 64

static const char *config_file;
static const char *overrides[MAX_OVERRIDES];
static size_t noverrides;

static void usage(void)
{
	fprintf(stderr, "usage: sluice-spf -c sluice.conf [-f] [-s] [-n] [-q] [-o name=value]\n");
	exit(2);
}

/* --help (usage on stdout) and --version, anywhere before "--"; exit 0 */
static void help_or_version(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help")) {
			fputs("usage: sluice-spf -c sluice.conf [-f] [-s] [-n] [-q] [-o name=value]\n"
			      "SPF policy server (Postfix policy delegation) on spf_socket.\n"
			      "  -c FILE        sluice.conf (spf_* settings)\n"
			      "  -f             stay in the foreground\n"
			      "  -s             spawn mode: one client on stdin/stdout\n"
			      "  -n             check the configuration and exit 0 or 1\n"
			      "  -q             query mode (for tests)\n"
			      "  -o name=value  override a parameter (repeatable)\n"
			      "  --help, --version\n", stdout);
			exit(0);
		}
		if (!strcmp(argv[i], "--version")) {
			printf("sluice-spf (sluice) %s\n", SLUICE_VERSION);
			exit(0);
		}
	}
}

/* load - config + options + resolver settings; NULL with *err_out. */
static struct conf *load(struct spfd_opts *o, struct dns_opts *d, char **err_out)
{
	struct conf *c = conf_load(config_file, params_all, NULL, err_out);

	if (!c)
		return NULL;
	for (size_t i = 0; i < noverrides; i++) {
		char *name = xstrdup(overrides[i]), *eq = strchr(name, '=');
		if (!eq) {
			*err_out = xasprintf("-o %s: expected name=value", overrides[i]);
			free(name);
			conf_free(&c);
			return NULL;
		}
		*eq = 0;
		int rc = conf_override(c, name, eq + 1, err_out);
		free(name);
		if (rc < 0) {
			conf_free(&c);
			return NULL;
		}
	}
	if (spfd_opts_load(c, o, err_out) < 0) {
		spfd_opts_free(o);
		conf_free(&c);
		return NULL;
	}
	memset(d, 0, sizeof(*d));
	d->servers = conf_list(c, "dns_servers", &d->nservers);
	d->timeout_ms = (int)conf_time_s(c, "dns_timeout") * 1000;
	d->tries = (int)conf_int(c, "dns_tries");
	return c;
}

static int log_setup(const struct conf *c, const char **err_out)
{
	return log_init_conf("sluice-spf", c, err_out);
}

static const char *socket_spec(const char *s)
{
	return !strncmp(s, "inet:", 5) ? s + 5 : s;
}

struct sigctx {
	struct spfd_server *srv;
	struct conf **conf;
};

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	struct sigctx *x = arg;

	(void)what;
	log_event(NULL, "spf: signal %d: stopping", (int)sig);
	spfd_server_stop(x->srv, 10000);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct sigctx *x = arg;
	struct spfd_opts o;
	struct dns_opts d;
	char *err = NULL;
	const char *lerr = NULL;

	(void)sig, (void)what;
	struct conf *c = load(&o, &d, &err);
	if (!c) {
		log_event(NULL, "warning: spf: reload failed, keeping the old configuration: %s", err);
		free(err);
		return;
	}
	if (spfd_server_reload(x->srv, &o, &d, &err) < 0) {
		log_event(NULL, "warning: spf: reload failed: %s", err);
		free(err);
		spfd_opts_free(&o);
		conf_free(&c);
		return;
	}
	if (log_setup(c, &lerr) < 0)
		log_event(NULL, "warning: spf: maillog_file: %s", lerr);
	conf_free(x->conf);
	*x->conf = c;
	log_event(NULL, "spf: configuration reloaded from %s", config_file);
}

int main(int argc, char **argv)
{
	int foreground = 0, spawn = 0, check_only = 0, query = 0, ch;

	log_set_stderr_only("sluice-spf");
	help_or_version(argc, argv);
	while ((ch = getopt(argc, argv, "c:fsnqo:")) != -1) {
		switch (ch) {
		case 'c': config_file = optarg; break;
		case 'f': foreground = 1; break;
		case 's': spawn = 1; break;
		case 'n': check_only = 1; break;
		case 'q': query = 1; break;
		case 'o':
			if (noverrides == MAX_OVERRIDES)
				usage();
			overrides[noverrides++] = optarg;
			break;
		default: usage();
		}
	}
	if (!config_file || optind != argc)
		usage();

	struct spfd_opts o;
	struct dns_opts d;
	char *err = NULL;
	const char *lerr = NULL;
	struct conf *c = load(&o, &d, &err);
	if (!c) {
		fprintf(stderr, "sluice-spf: %s\n", err);
		free(err);
		return 1;
	}
	/*
	 * Relative paths are relative to the config's base directory
	 * (conf.h): work there, and keep the config file's absolute name for
	 * reloads.
	 */
	char *abs_conf = realpath(config_file, NULL);
	if (!abs_conf || conf_enter_base_dir(c, &err) < 0) {
		if (abs_conf)
			fprintf(stderr, "sluice-spf: %s\n", err);
		else
			fprintf(stderr, "sluice-spf: %s: %s\n", config_file, strerror(errno));
		free(err);
		free(abs_conf);
		spfd_opts_free(&o);
		conf_free(&c);
		return 1;
	}
	config_file = abs_conf;
	size_t nw;
	const char *const *w = conf_warnings(c, &nw);
	for (size_t i = 0; i < nw; i++)
		fprintf(stderr, "sluice-spf: warning: %s\n", w[i]);
	if (check_only) {
		struct dns_resolver *r = dns_new(NULL, &d, &err);
		if (!r) {
			fprintf(stderr, "sluice-spf: dns_servers: %s\n", err);
			free(err);
			spfd_opts_free(&o);
			conf_free(&c);
			return 1;
		}
		dns_free(&r);
		spfd_opts_free(&o);
		conf_free(&c);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!query && log_setup(c, &lerr) < 0)
		fatal("maillog_file %s: %s", conf_str(c, "maillog_file"), lerr);

	struct listener lst = { 0 };
	int listening = !spawn && !query;
	if (listening) {
		const char *spec = socket_spec(conf_str(c, "spf_socket"));
		if (listen_open(spec, 511, 0, &lst, &err) < 0)
			fatal("%s: spf_socket: %s", conf_where(c, "spf_socket"), err);
	}
	/* metrics: bound before the privilege drop, served from the event loop */
	int metrics_fd = listening ? metrics_conf_listen(c, "spf_metrics_listen") : -1;
	if (listening && !foreground)
		daemon_detach();
	/*
	 * maillog_file (and anything else root-only the config names) is
	 * reopened at SIGHUP as mail_owner: through a helper that stays root.
	 * After detaching: the helper follows this process. Our own tables
	 * only: the helper opens no file of sluiced's (its TLS key, its maps).
	 */
	static const struct conf_param *const own_tables[] = { common_params, spf_params, NULL };
	struct privfile_opts priv = { .config_file = config_file, .tables = own_tables };
	if (!query && geteuid() == 0 && privfile_install(&priv, &err) < 0)
		fatal("privfile: %s", err);
	if (daemon_drop_privs(conf_str(c, "mail_owner"), &err) < 0)
		fatal("mail_owner: %s", err);
	if (listening && daemon_pidfile(conf_str(c, "spf_pid_file"), &err) < 0)
		fatal("spf_pid_file: %s", err);

	struct event_base *base = event_base_new();
	if (!base)
		fatal("event_base_new failed");
	struct spfd_server *srv = spfd_server_new(base, &o, &d, &err);
	if (!srv)
		fatal("dns_servers: %s", err);
	if (listening && spfd_server_listen(srv, lst.fd, &err) < 0)
		fatal("spf_socket: %s", err);
	struct metrics *metrics = NULL;
	struct metrics_http *metrics_srv = NULL;
	if (metrics_fd >= 0) {
		metrics = metrics_new(0, 1);
		metrics_filter_init(metrics, "spf", "requests");
		metrics_srv = metrics_http_start(metrics, base, metrics_fd, &err);
		if (!metrics_srv)
			fatal("spf_metrics_listen: %s", err);
	}
	if (query)
		spfd_server_query_stdio(srv, 0, 1);
	else if (spawn)
		spfd_server_add_stdio(srv, 0, 1);

	struct sigctx sx = { srv, &c };
	struct event *ev_term = evsignal_new(base, SIGTERM, on_term, &sx);
	struct event *ev_int = evsignal_new(base, SIGINT, on_term, &sx);
	struct event *ev_hup = evsignal_new(base, SIGHUP, on_hup, &sx);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);
	if (listening)
		log_event(NULL, "spf: listening on %s", conf_str(c, "spf_socket"));
	sdnotify("READY=1");	/* Type=notify units (sluice-spf.service) */
	event_base_dispatch(base);

	const struct spfd_server_stats *st = spfd_server_stats(srv);
	if (!query)
		log_event(NULL, "spf: stopped: connections=%llu, requests=%llu, malformed=%llu, "
			  "instance_hits=%llu", st->conns, st->requests, st->malformed,
			  st->instance_hits);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	metrics_http_stop(&metrics_srv);
	metrics_filter.m = NULL;
	metrics_free(&metrics);
	spfd_server_free(&srv);
	event_base_free(base);
	if (listening) {
		listen_close(&lst);
		const char *pf = conf_str(c, "spf_pid_file");
		if (pf && *pf)
			unlink(pf);
	}
	conf_free(&c);
	privfile_uninstall();
	free(abs_conf);
	return 0;
}
