/*
 * sluiced - the sluice SMTP server. Thin: options, config, sockets, the
 * master process (see procs.h for the process model).
 */
#include "mta/procs.h"
#include "conf/params.h"
#include "mta/smtpd.h"
#include "mta/mta_metrics.h"
#include "mta/queue.h"
#include "conf/conf.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "lib/version.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILDREN 65

struct child {
	pid_t pid;
	int is_qmgr;
	size_t slot;	/* receivers: which row of listeners */
	double started;
};

static struct child children[MAX_CHILDREN];
static size_t nchildren;
/* receivers replaced at a reload, finishing their sessions (SIGUSR2) */
static pid_t retiring[4 * MAX_CHILDREN];
static size_t nretiring;
static volatile sig_atomic_t got_term, got_hup, got_chld, got_usr1;

static void on_signal(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGUSR1)
		got_usr1 = 1;	/* `sluice queue flush/release`: run the queue now */
	else if (sig == SIGCHLD)
		got_chld = 1;
}

#define USAGE "usage: sluiced -c sluice.conf [-f]\n"

static void usage(void)
{
	fputs(USAGE, stderr);
	exit(2);
}

/* --help (usage on stdout) and --version, anywhere before "--"; exit 0 */
static void help_or_version(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help")) {
			fputs(USAGE "The sluice SMTP server: binds smtpd_listen, then runs receivers and a queue manager.\n"
			      "  -c FILE    sluice.conf (relative paths in it are relative to its directory)\n"
			      "  -f         stay in the foreground\n"
			      "  --help     this text\n"
			      "  --version  the version\n", stdout);
			exit(0);
		}
		if (!strcmp(argv[i], "--version")) {
			printf("sluiced (sluice) %s\n", SLUICE_VERSION);
			exit(0);
		}
	}
}

static const char *config_file;
/*
 * listeners[slot * nlisteners + i]: receiver `slot`'s socket for address i.
 * Each receiver has its own SO_REUSEPORT socket per TCP address, so the
 * kernel spreads connections over the receivers (with one shared socket,
 * the receiver woken first accepts a whole burst). Unix sockets and port 0
 * are one socket shared by all receivers (the same fd in every row).
 */
static struct listener *listeners;
static size_t nlisteners, nslots;
static int notify_pipe[2];
/* metrics_listen: bound by the master, served from a thread of the master;
 * the children update the shared registry */
static int metrics_fd = -1;
static const char *mail_owner;

/* listen_shared - is listener (slot, i) the same socket as (0, i)? */
static int listen_shared(size_t slot, size_t i)
{
	return slot > 0 && listeners[slot * nlisteners + i].fd == listeners[i].fd;
}

static pid_t spawn(int is_qmgr, size_t slot)
{
	pid_t pid = fork();
	if (pid < 0) {
		log_event(NULL, "warning: fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0)
		return pid;
	/* child */
	struct sigaction sa = { 0 };
	sa.sa_handler = SIG_DFL;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (metrics_fd >= 0)
		close(metrics_fd);	/* the master's; its HTTP thread did not come along */
	if (is_qmgr) {
		for (size_t k = 0; k < nslots * nlisteners; k++)
			if (!listen_shared(k / nlisteners, k % nlisteners))
				close(listeners[k].fd);
		close(notify_pipe[1]);
		qmgr_main(config_file, notify_pipe[0]);
	}
	/* the other receivers' sockets stay open in the master only */
	for (size_t k = 0; k < nslots * nlisteners; k++)
		if (k / nlisteners != slot && !listen_shared(k / nlisteners, k % nlisteners) &&
		    listeners[k].fd != listeners[slot * nlisteners + k % nlisteners].fd)
			close(listeners[k].fd);
	close(notify_pipe[0]);
	receiver_main(config_file, listeners + slot * nlisteners, nlisteners, notify_pipe[1]);
}

static void start_child(struct child *c)
{
	c->pid = spawn(c->is_qmgr, c->slot);
	c->started = wall_time();
}

static void reap(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (size_t i = 0; i < nretiring; i++)
			if (retiring[i] == pid) {
				retiring[i] = retiring[--nretiring];
				break;
			}
		for (size_t i = 0; i < nchildren; i++) {
			if (children[i].pid != pid)
				continue;
			children[i].pid = 0;
			if (!got_term) {
				log_event(NULL, "warning: %s process %d %s %d; restarting",
					  children[i].is_qmgr ? "queue manager" : "receiver", (int)pid,
					  WIFSIGNALED(st) ? "killed by signal" : "exited with status",
					  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
				/* no tight restart loop when a child dies at once */
				if (wall_time() - children[i].started < 1.0)
					sleep(1);
				start_child(&children[i]);
			}
		}
	}
}

static void broadcast(int sig)
{
	for (size_t i = 0; i < nchildren; i++)
		if (children[i].pid > 0)
			kill(children[i].pid, sig);
	for (size_t i = 0; i < nretiring; i++)
		kill(retiring[i], sig);
}

/*
 * reload - SIGHUP. Receivers run as mail_owner and may not read what
 * root can (a 0600 TLS key, a root-only table), so, like Postfix's master,
 * we do not let them re-read the config: the master (still root) checks
 * it, then starts a fresh receiver per slot, which reads everything before
 * it drops privileges, and retires the old one (SIGUSR2: stop accepting,
 * finish the sessions in progress). A config that does not load leaves
 * everything running as it is. The queue manager reloads in place.
 * XXX: root-only files the queue manager reads (smtp_sasl_password_maps)
 * need a restart.
 */
static void reload(void)
{
	char *err = NULL;
	if (smtpd_validate(config_file, &err) < 0) {
		log_event(NULL, "warning: reload failed, keeping the running configuration: %s", err);
		free(err);
		return;
	}
	for (size_t i = 0; i < nchildren; i++) {
		struct child *c = &children[i];
		if (c->is_qmgr) {
			if (c->pid > 0)
				kill(c->pid, SIGHUP);
			continue;
		}
		if (c->pid > 0) {
			if (nretiring == sizeof retiring / sizeof retiring[0]) {
				kill(c->pid, SIGHUP);	/* too many still finishing: reload in place */
				continue;
			}
			retiring[nretiring++] = c->pid;
			kill(c->pid, SIGUSR2);
		}
		start_child(c);
	}
}

static void master_loop(long long graceful_s)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (;;) {
		while (!got_term && !got_hup && !got_chld && !got_usr1)
			sigsuspend(&old);
		if (got_chld) {
			got_chld = 0;
			reap();
		}
		if (got_usr1) {
			got_usr1 = 0;
			for (size_t i = 0; i < nchildren; i++)
				if (children[i].is_qmgr && children[i].pid > 0)
					kill(children[i].pid, SIGUSR1);
		}
		if (got_hup) {
			got_hup = 0;
			log_event(NULL, "reload -- configuration %s", config_file);
			reload();
		}
		if (got_term)
			break;
	}
	log_event(NULL, "terminating on signal");
	broadcast(SIGTERM);
	double deadline = wall_time() + (double)graceful_s + 5;
	sigprocmask(SIG_SETMASK, &old, NULL);
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid < 0 && errno == ECHILD)
			break;
		if (pid > 0)
			continue;
		if (wall_time() > deadline) {
			broadcast(SIGKILL);
			deadline = wall_time() + 60;
		}
		usleep(20000);
	}
}

int main(int argc, char **argv)
{
	int foreground = 0, opt;
	log_set_stderr_only("sluiced");
	help_or_version(argc, argv);
	while ((opt = getopt(argc, argv, "c:f")) != -1) {
		if (opt == 'c')
			config_file = optarg;
		else if (opt == 'f')
			foreground = 1;
		else
			usage();
	}
	if (!config_file || optind != argc)
		usage();
	char *err = NULL;
	/*
	 * Relative paths are relative to the base directory (the config
	 * file's, or config_directory): work there, with the config file's
	 * absolute name for the children and for reloads.
	 */
	struct conf *first = conf_load(config_file, params_all, NULL, &err);
	if (!first)
		fatal("%s", err);
	char *abs_conf = realpath(config_file, NULL);
	if (!abs_conf)
		fatal("%s: %s", config_file, strerror(errno));
	if (conf_enter_base_dir(first, &err) < 0)
		fatal("%s", err);
	conf_free(&first);
	config_file = abs_conf;
	struct smtpd probe = { 0 };
	if (smtpd_load(&probe, config_file, &err) < 0)
		fatal("%s", err);
	const struct conf *c = probe.conf;
	const char *logerr;
	log_set_syslog_name(conf_str(c, "syslog_name"));
	log_set_service("master");
	if (log_init("sluiced", conf_str(c, "maillog_file"),
		     strcmp(conf_str(c, "log_format"), "json") ? LOG_FORMAT_PLAIN : LOG_FORMAT_JSON, &logerr) < 0)
		fatal("maillog_file %s: %s", conf_str(c, "maillog_file"), logerr);
	mail_owner = xstrdup(conf_str(c, "mail_owner"));
	const char *qdir = conf_str(c, "queue_directory");
	if (queue_init(qdir, &err) < 0)
		fatal("queue_directory %s: %s", qdir, err);
	unsigned uid = 0, gid = 0;
	if (geteuid() == 0 && *mail_owner) {
		if (daemon_user_ids(mail_owner, &uid, &gid) < 0)
			fatal("%s: mail_owner %s: no such user (create it, e.g. useradd --system %s, or set mail_owner)",
			      conf_where(c, "mail_owner"), mail_owner, mail_owner);
		char *cmd = xasprintf("chown -R %u:%u '%s'", uid, gid, qdir);
		if (system(cmd) != 0)
			fatal("cannot give %s to mail_owner %s", qdir, mail_owner);
		free(cmd);
		const char *base = conf_str(c, "virtual_mailbox_base");
		mkdir(base, 0755);
		if (chown(base, uid, gid) < 0)
			log_event(NULL, "warning: chown %s: %s", base, strerror(errno));
	}
	/* smtpd_listen, submission_listen, smtps_listen, then the local socket for sluice-sendmail */
	static const char *const lparams[] = { "smtpd_listen", "submission_listen", "smtps_listen" };
	static const int lkinds[] = { SMTPD_LISTEN_SMTP, SMTPD_LISTEN_SUBMISSION, SMTPD_LISTEN_SMTPS };
	size_t nsmtp = 0, nl[3];
	const char *const *lspecs[3];
	for (int k = 0; k < 3; k++) {
		lspecs[k] = conf_list(c, lparams[k], &nl[k]);
		nsmtp += nl[k];
	}
	const char *sendmail = conf_str(c, "sendmail_socket");
	size_t n = nsmtp + (*sendmail ? 1 : 0);
	const char **specs = xcalloc(n + 1, sizeof *specs);
	const char **sparams = xcalloc(n + 1, sizeof *sparams);
	int *skinds = xcalloc(n + 1, sizeof *skinds);
	size_t ns = 0;
	for (int k = 0; k < 3; k++)
		for (size_t i = 0; i < nl[k]; i++, ns++) {
			specs[ns] = lspecs[k][i];
			sparams[ns] = lparams[k];
			skinds[ns] = lkinds[k];
		}
	if (*sendmail) {
		specs[nsmtp] = sendmail;
		sparams[nsmtp] = "sendmail_socket";
		skinds[nsmtp] = SMTPD_LISTEN_LOCAL;
		/* Postfix-like: queue_directory traversable, public/ for the socket */
		chmod(qdir, 0755);
		char *pub = xasprintf("%s/public", qdir);
		mkdir(pub, 0755);
		chmod(pub, 0755);
		free(pub);
		if (!strncmp(sendmail, "unix:", 5)) {
			char *dir = xstrdup(sendmail + 5);
			char *slash = strrchr(dir, '/');
			if (slash && slash != dir) {
				*slash = 0;
				mkdir(dir, 0755);
			}
			free(dir);
		}
	}
	long long workers = conf_int(c, "smtpd_workers");
	if (workers <= 0)
		workers = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
	if (workers > MAX_CHILDREN - 1)
		workers = MAX_CHILDREN - 1;
	nslots = (size_t)workers;
	nlisteners = n;
	listeners = xcalloc(n ? n * nslots : 1, sizeof *listeners);
	for (size_t i = 0; i < n; i++) {
		/*
		 * First without SO_REUSEPORT: fails if anything (e.g. another
		 * sluiced) listens there already, instead of silently sharing
		 * the port with it. Then one SO_REUSEPORT socket per receiver.
		 */
		struct listener probe;
		const char *param = sparams[i];
		if (listen_open(specs[i], 1024, 0, &probe, &err) < 0)
			fatal("%s: %s: %s", conf_where(c, param), param, err);
		probe.kind = skinds[i];	/* enum smtpd_listen_kind */
		char host[256], port[32];
		const char *hp = strncmp(specs[i], "inet:", 5) == 0 ? specs[i] + 5 : specs[i];
		int shared = probe.is_unix || nslots == 1 ||
			     listen_parse_hostport(hp, host, sizeof host, port, sizeof port) < 0 ||
			     strtol(port, NULL, 10) == 0;
		if (shared) {
			for (size_t r = 0; r < nslots; r++) {
				listeners[r * n + i] = probe;
				listeners[r * n + i].spec = xstrdup(probe.spec);
			}
			free(probe.spec);
			continue;
		}
		listen_close(&probe);
		for (size_t r = 0; r < nslots; r++) {
			if (listen_open(specs[i], 1024, 1, &listeners[r * n + i], &err) < 0)
				fatal("%s: %s: %s", conf_where(c, param), param, err);
			listeners[r * n + i].kind = skinds[i];
		}
	}
	free(specs);
	free(sparams);
	free(skinds);
	metrics_fd = metrics_conf_listen(c, "metrics_listen");
	long long graceful = conf_time_s(c, "graceful_stop_timeout");
	char *pidfile = xstrdup(conf_str(c, "pid_file"));
	if (!foreground)
		daemon_detach();
	if (*pidfile) {
		char *dir = xstrdup(pidfile);
		char *slash = strrchr(dir, '/');
		if (slash) {
			*slash = 0;
			mkdir(dir, 0755);
		}
		free(dir);
		if (daemon_pidfile(pidfile, &err) < 0)
			fatal("pid_file: %s", err);
	}
	if (pipe2(notify_pipe, O_CLOEXEC) < 0)
		fatal("pipe: %s", strerror(errno));
	fcntl(notify_pipe[1], F_SETFL, O_NONBLOCK);
	struct sigaction sa = { 0 };
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * The registry is made before any child is forked: its mapping is
	 * shared. XXX: children are forked (and re-forked) while the HTTP
	 * thread runs; they only close its socket and never touch its state.
	 */
	struct metrics *metrics = NULL;
	struct metrics_http *metrics_srv = NULL;
	if (metrics_fd >= 0) {
		metrics = metrics_new(0, 1);
		mta_metrics_init(metrics, qdir);
		if (!(metrics_srv = metrics_http_start(metrics, NULL, metrics_fd, &err)))
			fatal("metrics_listen: %s", err);
	}
	log_event(NULL, "daemon started -- listening on %zu address(es), %lld receiver(s), queue %s", nlisteners,
		  workers, qdir);
	smtpd_free_config(&probe);
	free(probe.conf_path);
	probe.conf_path = NULL;
	children[nchildren++].is_qmgr = 1;
	for (long long i = 0; i < workers; i++) {
		children[nchildren].slot = (size_t)i;
		children[nchildren++].is_qmgr = 0;
	}
	for (size_t i = 0; i < nchildren; i++)
		start_child(&children[i]);
	master_loop(graceful);
	metrics_http_stop(&metrics_srv);
	metrics_free(&metrics);
	if (*pidfile)
		unlink(pidfile);
	free(pidfile);
	log_event(NULL, "daemon stopped");
	return 0;
}
