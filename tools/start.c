/*
 * start: `sluice start|stop|status|reload` - the integrated server.
 * Owns: the commands; `sluice start`: the admin's config, run_directory,
 * the pid file (one supervisor at a time), into the background (the
 * command waits for the supervisor's answer), starting every daemon in
 * turn (the filters, then sluiced) and failing as a whole; the
 * supervisor's signals and loop (SIGCHLD: reap and restart; SIGHUP:
 * reload; SIGTERM/SIGINT: stop); sd_notify. `sluice stop|reload`: a
 * signal to the supervisor of sluice.pid; `sluice status`: the status
 * file, as a table. While a filter is down sluiced applies its default
 * action (milter_default_action, smtpd_policy_service_default_action).
 * Leaves: which filters run, the generated config and the reload to
 * tools/start_reload; the children's lives (starting one, readiness,
 * restarting a crashed one with backoff, the status file, stopping) to
 * tools/supervise; the one metrics port to tools/start_metrics; the
 * daemons' own work to the daemons.
 *
 * Files under run_directory: sluice.pid (the supervisor), sluice.conf
 * (the generated config: the admin's file plus the wiring, last definition
 * wins as in Postfix), status (tools/supervise: one line per child: name
 * pid started socket restarts), <name>.sock.
 *
 * Relative paths (conf.h): the supervisor works in the base directory and
 * its children inherit it; the generated config names it as
 * config_directory, and its sockets and file names are absolute.
 * "started" means every daemon answered: each filter's socket accepts a
 * connection and each smtpd_listen address of sluiced greets with 220.
 * If one does not within 30s (SUPERVISE_START_TIMEOUT_S), everything is
 * stopped and `sluice start` fails (without -f, the command waits for
 * that answer).
 * Under systemd (Type=notify) READY=1 is sent then, RELOADING=1 / READY=1
 * around a reload and STOPPING=1 at the end; children do not see
 * NOTIFY_SOCKET.
 *
 * Metrics on one port (start_metrics_listen, docs/METRICS.md):
 * tools/start_metrics, bound here before anything starts, told which
 * daemons run (by tools/supervise) and asked to wire each daemon's
 * metrics address into the generated config (by tools/start_reload).
 */
#include "conf/conf.h"
#include "conf/params.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/sdnotify.h"
#include "lib/util.h"
#include "tools/start_metrics.h"
#include "tools/start_reload.h"
#include "tools/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* the children (tools/supervise), chosen and rewired by rl (tools/start_reload) */
static struct supervise sv;
static struct start_reload rl;
static char *run_dir, *gen_conf, *user_conf, *bindir, *base_dir;
static volatile sig_atomic_t got_hup, got_chld;

static void on_sig(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		sv.term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
}


static void supervise(void)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (;;) {
		/* short waits while a reload waits for sluiced's old receivers */
		struct timespec ts = { 0, (start_reload_busy(&rl) ? 20 : 200) * 1000 * 1000 };
		int sig = sigtimedwait(&block, NULL, &ts);
		if (sig > 0)
			on_sig(sig);
		if (got_chld) {
			got_chld = 0;
			supervise_reap(&sv);
		}
		if (sv.term)
			break;
		if (got_hup) {
			got_hup = 0;
			start_reload_begin(&rl);
		}
		start_reload_progress(&rl);
		supervise_restart_due(&sv);
	}
	log_event(NULL, "stopping");
	sdnotify("STOPPING=1");
	supervise_stop_all(&sv);
	for (size_t i = 0; i < sv.nleaving; i++)
		unlink(sv.leaving[i].sock);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* mkdir_parents - mkdir -p path (new directories get mode); 0 or -1 with *err_out "path: reason". */
static int mkdir_parents(const char *path, mode_t mode, char **err_out)
{
	char *p = xstrdup(path);
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			*err_out = xasprintf("%s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return 0;
}

/*
 * detach_and_wait - into the background (new session, stdio on /dev/null);
 * the command itself waits until the supervisor reports, prints the result
 * and exits 0 (all daemons answer) or 1. Returns the supervisor's end of
 * the report pipe.
 */
static int detach_and_wait(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		char buf[4096];
		size_t got = 0;
		ssize_t n;
		while (got < sizeof buf - 1 && (n = read(p[0], buf + got, sizeof buf - 1 - got)) != 0)
			if (n > 0)
				got += (size_t)n;
			else if (errno != EINTR)
				break;
		buf[got] = 0;
		if (!strncmp(buf, "ok", 2)) {
			printf("sluice: started (generated config %s)\n", gen_conf);
			exit(0);
		}
		fprintf(stderr, "sluice: not started: %s\n", got ? buf : "the supervisor exited during start-up");
		exit(1);
	}
	close(p[0]);
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return p[1];
}

/* report - tell the waiting command "ok" (why == NULL) or why not; closes fd. */
static void report(int fd, const char *why)
{
	if (fd < 0)
		return;
	const char *msg = why ? why : "ok";
	(void)!write(fd, msg, strlen(msg));
	close(fd);
}

static int pid_alive(pid_t pid);

static int start_main(int argc, char **argv)
{
	int foreground = 0, opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "c:f")) != -1) {
		if (opt == 'c')
			user_conf = optarg;
		else if (opt == 'f')
			foreground = 1;
		else
			return 2;
	}
	if (!user_conf) {
		fprintf(stderr, "usage: sluice start [-f] -c sluice.conf\n");
		return 2;
	}
	char *err = NULL;
	struct conf *c = conf_load(user_conf, params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	/* relative paths: from the base directory, for us and every child (conf.h) */
	char *abs_conf = realpath(user_conf, NULL);
	if (!abs_conf) {
		fprintf(stderr, "sluice: %s: %s\n", user_conf, strerror(errno));
		return 1;
	}
	base_dir = conf_base_dir(c, &err);
	if (!base_dir) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	if (chdir(base_dir) < 0) {
		fprintf(stderr, "sluice: chdir %s: %s\n", base_dir, strerror(errno));
		return 1;
	}
	user_conf = abs_conf;
	const char *logerr;
	if (log_init("sluice", conf_str(c, "maillog_file"),
		     strcmp(conf_str(c, "log_format"), "json") ? LOG_FORMAT_PLAIN : LOG_FORMAT_JSON, &logerr) < 0) {
		fprintf(stderr, "sluice: %s: maillog_file %s: %s\n", conf_where(c, "maillog_file"),
			conf_str(c, "maillog_file"), logerr);
		return 1;
	}
	bindir = daemon_self_dir();
	run_dir = conf_abs_path(base_dir, conf_str(c, "run_directory"));
	if (mkdir_parents(run_dir, 0755, &err) < 0) {
		fprintf(stderr, "sluice: %s: run_directory %s\n", conf_where(c, "run_directory"), err);
		return 1;
	}
	char *real_run = realpath(run_dir, NULL);	/* no "conf/../": socket paths are short */
	if (real_run) {
		free(run_dir);
		run_dir = real_run;
	}
	gen_conf = xasprintf("%s/sluice.conf", run_dir);
	sv.run_dir = run_dir;
	sv.gen_conf = gen_conf;
	rl = (struct start_reload){ .sv = &sv, .user_conf = user_conf, .base_dir = base_dir, .run_dir = run_dir,
				    .gen_conf = gen_conf, .bindir = bindir };
	char *pidfile = xasprintf("%s/sluice.pid", run_dir);
	FILE *pf = fopen(pidfile, "r");
	int other = 0;
	if (pf && fscanf(pf, "%d", &other) == 1 && other > 0 && other != getpid() && pid_alive(other)) {
		/* a second supervisor would take over the sockets of the first */
		fprintf(stderr, "sluice: already running (pid %d in %s)\n", other, pidfile);
		fclose(pf);
		return 1;
	}
	if (pf)
		fclose(pf);
	if (start_metrics_bind(c, start_reload_ndaemons(), &err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	if (start_reload_setup(&rl, c, &err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	const char *const *ls = conf_list(c, "smtpd_listen", &sv.n_mta_listen);
	sv.mta_listen = xcalloc(sv.n_mta_listen + 1, sizeof *sv.mta_listen);
	for (size_t i = 0; i < sv.n_mta_listen; i++)
		sv.mta_listen[i] = xstrdup(ls[i]);
	conf_free(&c);
	int report_fd = -1;
	if (!foreground)
		report_fd = detach_and_wait();
	if (daemon_pidfile(pidfile, &err) < 0) {
		log_event(NULL, "fatal: %s", err);
		report(report_fd, err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	supervise_publish_targets(&sv);
	if (start_metrics_serve(&err) < 0) {
		log_event(NULL, "fatal: %s", err);
		report(report_fd, err);
		unlink(pidfile);
		return 1;
	}
	struct sigaction sa = { 0 };
	sa.sa_handler = on_sig;
	sigaction(SIGCHLD, &sa, NULL);
	/* a stop while starting stops what has started (no orphans) */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	for (size_t i = 0; i < sv.nkids; i++) {
		struct supervise_child *k = &sv.kids[i];
		supervise_spawn(&sv, k);
		int st;
		if (supervise_wait_ready(&sv, k, SUPERVISE_START_TIMEOUT_S, &st) < 0) {
			char *why = supervise_not_ready_reason(&sv, k, st);
			log_event(NULL, "fatal: %s; stopping (its log says why)", why);
			report(report_fd, why);
			free(why);
			sv.term = 1;	/* no restarts while stopping */
			supervise_stop_all(&sv);
			supervise_write_status(&sv);
			start_metrics_stop();
			unlink(pidfile);
			return 1;
		}
		if (k->sock)
			log_event(NULL, "%s ready on unix:%s (pid %d)", k->name, k->sock, (int)k->pid);
		else
			log_event(NULL, "sluiced ready on %s (pid %d)", sv.n_mta_listen ? sv.mta_listen[0] : "-",
				  (int)k->pid);
	}
	supervise_write_status(&sv);
	log_event(NULL, "started: %zu filter(s) and sluiced, all answering; generated config %s", sv.nkids - 1,
		  gen_conf);
	report(report_fd, NULL);
	char *ready = xasprintf("READY=1\nSTATUS=%zu filter(s) and sluiced answering", sv.nkids - 1);
	if (sdnotify(ready) < 0)
		log_event(NULL, "warning: sd_notify: %s", strerror(errno));
	free(ready);
	supervise();
	start_metrics_stop();
	unlink(pidfile);
	free(pidfile);
	log_event(NULL, "stopped");
	return 0;
}

/* alive and not a zombie waiting for its parent */
static int pid_alive(pid_t pid)
{
	if (kill(pid, 0) != 0)
		return 0;
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	return !(rp && rp[1] == ' ' && rp[2] == 'Z');
}

/*
 * read_pid - the supervisor's pid from run_directory/sluice.pid. 0, or -1
 * with *why_out (caller frees; NULL when the config itself failed, which
 * is printed here) naming the file and what is wrong with it.
 */
static int read_pid(const char *conf_path, pid_t *pid_out, char **rundir_out, char **why_out)
{
	*why_out = NULL;
	char *err = NULL;
	struct conf *c = conf_load(conf_path, params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice: %s\n", err);
		return -1;
	}
	char *base = conf_base_dir(c, &err);
	if (!base) {
		fprintf(stderr, "sluice: %s\n", err);
		conf_free(&c);
		return -1;
	}
	*rundir_out = conf_abs_path(base, conf_str(c, "run_directory"));
	free(base);
	conf_free(&c);
	char *p = xasprintf("%s/sluice.pid", *rundir_out);
	FILE *f = fopen(p, "r");
	int pid = 0;
	if (!f)
		*why_out = xasprintf("%s: %s", p, strerror(errno));
	else if (fscanf(f, "%d", &pid) != 1 || pid <= 0)
		*why_out = xasprintf("%s: no pid in it", p);
	else if (!pid_alive(pid))
		*why_out = xasprintf("%s: pid %d is not running", p, pid);
	if (f)
		fclose(f);
	free(p);
	if (*why_out)
		return -1;
	*pid_out = pid;
	return 0;
}

static const char *conf_arg(int argc, char **argv)
{
	int opt;
	const char *path = NULL;
	optind = 2;
	while ((opt = getopt(argc, argv, "c:")) != -1)
		if (opt == 'c')
			path = optarg;
	return path;
}

static int signal_main(int argc, char **argv, int sig, const char *what)
{
	const char *path = conf_arg(argc, argv);
	pid_t pid;
	char *rd = NULL, *why = NULL;
	if (!path) {
		fprintf(stderr, "usage: sluice %s -c sluice.conf\n", argv[1]);
		return 2;
	}
	if (read_pid(path, &pid, &rd, &why) < 0) {
		if (why)
			fprintf(stderr, "sluice: not running (%s)\n", why);
		free(why);
		free(rd);
		return 1;
	}
	free(rd);
	kill(pid, sig);
	if (sig == SIGTERM)
		while (pid_alive(pid))
			usleep(50000);
	printf("sluice: %s\n", what);
	return 0;
}

static int status_main(int argc, char **argv)
{
	const char *path = conf_arg(argc, argv);
	pid_t pid;
	char *rd = NULL, *why = NULL;
	if (!path) {
		fprintf(stderr, "usage: sluice status -c sluice.conf\n");
		return 2;
	}
	if (read_pid(path, &pid, &rd, &why) < 0) {
		if (why)
			printf("sluice: not running (%s)\n", why);
		free(why);
		free(rd);
		return 1;
	}
	printf("supervisor pid %d\n%-10s %7s %-20s %8s  %s\n", (int)pid, "daemon", "pid", "up since", "restarts",
	       "socket");
	char *sp = xasprintf("%s/status", rd);
	free(rd);
	FILE *f = fopen(sp, "r");
	if (!f)
		fprintf(stderr, "sluice: %s: %s\n", sp, strerror(errno));
	char name[64], sock[4096];
	int cpid;
	double started;
	unsigned restarts;
	while (f && fscanf(f, "%63s %d %lf %4095s %u", name, &cpid, &started, sock, &restarts) == 5) {
		time_t t = (time_t)started;
		char when[32];
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&t));
		int alive = cpid > 0 && pid_alive(cpid);
		printf("%-10s %7d %-20s %8u  %s%s\n", name, cpid, when, restarts, sock, alive ? "" : "  (down)");
	}
	if (f)
		fclose(f);
	free(sp);
	return 0;
}

/* sluice start|stop|status|reload; returns -1 when cmd is none of these */
int start_dispatch(int argc, char **argv)
{
	const char *cmd = argv[1];
	if (!strcmp(cmd, "start"))
		return start_main(argc, argv);
	if (!strcmp(cmd, "stop"))
		return signal_main(argc, argv, SIGTERM, "stopped");
	if (!strcmp(cmd, "reload"))
		return signal_main(argc, argv, SIGHUP, "reloading");
	if (!strcmp(cmd, "status"))
		return status_main(argc, argv);
	return -1;
}
