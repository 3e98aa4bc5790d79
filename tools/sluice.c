/*
 * sluice - the admin command.
 *   sluice check -c FILE       validate a config and every table it names, and
 *                              each enabled filter daemon's settings (its -n)
 *   sluice queue [-c FILE] [...]  list queued messages (like mailq), hold/release/delete/flush
 *   sluice params [-c FILE] [-d]  every parameter's value (like postconf; -d defaults)
 *   sluice keygen ...          DKIM keys and DNS records (tools/keygen.c)
 *   sluice start|stop|status|reload   the integrated server (tools/start.c)
 *   sluice report ...          summaries of mail logs (tools/report.c)
 */
#include "conf/params.h"
#include "mta/smtpd.h"
#include "mta/queue.h"
#include "conf/conf.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/version.h"
#include "tools/why.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>

int keygen_main(int argc, char **argv);
int report_main(int argc, char **argv);
int report_dmarc_main(int argc, char **argv);	/* tools/report_dmarc.c */

int ratelimit_cli_main(int argc, char **argv);	/* tools/ratelimit_cli.c */
int start_dispatch(int argc, char **argv);

#define USAGE "usage: sluice check -c FILE\n" \
	      "       sluice queue [-c FILE] [list | flush | hold ID | release ID | delete ID|ALL]\n" \
	      "       sluice keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519|both] [-b BITS] [-D DIR]\n" \
	      "       sluice keygen --check -d DOMAIN -s SELECTOR -k KEYFILE [-c FILE]\n" \
	      "       sluice params [-c FILE] [-d] [NAME...]\n" \
	      "       sluice start [-f] -c FILE | stop -c FILE | status -c FILE | reload -c FILE\n" \
	      "       sluice report [--format text|json|html] [--since TIME] [--until TIME] [--top N]\n" \
	      "                     [--jobs N] [-o FILE] LOGFILE...\n" \
	      "       sluice report dmarc [-c FILE] [--org-name NAME] [--email ADDR] [--format rfc9990|rfc7489]\n" \
	      "                     [--period day|hour] [--since TIME] [--until TIME] -o DIR\n" \
	      "                     [--send [--dry-run]] LOGFILE...\n" \
	      "       sluice ratelimit [-c FILE] show [KEY-PREFIX] | reset KEY\n" \
	      "       sluice why [-c FILE] [--json] QUEUE-ID [LOGFILE...]\n" \
	      "       sluice why [-c FILE] [--json] [--client IP] [--sender ADDR] [--recipient ADDR]\n" \
	      "                  [LOGFILE...]\n" \
	      "       sluice --help | --version\n"

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
			fputs(USAGE "\n"
			      "  check    validate a config, its tables and each enabled filter's settings\n"
			      "  queue    list the queue (like mailq) and manage it\n"
			      "  keygen   DKIM key pairs and their DNS records (-D DIR is created, mode 0700)\n"
			      "  params   every parameter's value, like postconf (-d: defaults)\n"
			      "  start    the integrated server: sluiced and every enabled filter (-f: foreground);\n"
			      "           returns once every daemon answers\n"
			      "  stop, status, reload   the running integrated server\n"
			      "  ratelimit  sluice-ratelimit's counters and greylist entries (show), clear one\n"
			      "           (reset); either backend; -c defaults to $SLUICE_CONF, else\n"
			      "           /etc/sluice/sluice.conf, else the built-in defaults\n"
			      "  why      one message's events across sluiced and the filters in time order,\n"
			      "           and what decided its fate; a refusal before the queue id (NOQUEUE)\n"
			      "           by --client/--sender/--recipient; LOGFILE defaults to maillog_file\n"
			      "           of -c FILE ($SLUICE_CONF, else /etc/sluice/sluice.conf)\n"
			      "Relative paths in FILE are relative to its directory.\n", stdout);
			exit(0);
		}
		if (!strcmp(argv[i], "--version")) {
			printf("sluice (sluice) %s\n", SLUICE_VERSION);
			exit(0);
		}
	}
}


/* Each enabled filter daemon validates its own keys: `sluice-<name> -c FILE -n`. */
static int check_daemons(const char *path)
{
	static const char *const names[] = { "dkim", "spf", "dmarc", "spam", "ratelimit", NULL };
	char *err = NULL;
	struct conf *c = conf_load(path, params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice: %s\n", err);
		free(err);
		return 1;
	}
	char *dir = daemon_self_dir();
	int rc = 0;
	for (int i = 0; names[i]; i++) {
		char param[64];
		snprintf(param, sizeof param, "%s_enable", names[i]);
		int enabled = 0;
		for (const struct conf_param *const *t = params_all; *t && !enabled; t++)
			for (const struct conf_param *p = *t; p->name; p++)
				if (!strcmp(p->name, param))
					enabled = conf_bool(c, param);
		if (!enabled)
			continue;
		char *bin = xasprintf("%s/sluice-%s", dir, names[i]);
		if (access(bin, X_OK) != 0) {
			printf("%s: %s_enable = yes, but sluice-%s is not built: skipped\n", path, names[i], names[i]);
			free(bin);
			continue;
		}
		char *cmd = xasprintf("'%s' -c '%s' -n", bin, path);
		if (system(cmd) != 0)
			rc = 1;
		free(cmd);
		free(bin);
	}
	free(dir);
	conf_free(&c);
	return rc;
}

static const char *opt_conf(int argc, char **argv)
{
	const char *path = NULL;
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "c:")) != -1) {
		if (opt == 'c')
			path = optarg;
		else
			usage();
	}
	return path;
}

/*
 * enter_base - chdir to the config's base directory (conf.h: relative paths
 * are relative to it) and return the config file's absolute name (caller
 * frees); NULL after printing why.
 */
static char *enter_base(const char *path)
{
	char *err = NULL;
	struct conf *c = conf_load(path, params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice: %s\n", err);
		free(err);
		return NULL;
	}
	char *abs = realpath(path, NULL);
	if (!abs)
		fprintf(stderr, "sluice: %s: %s\n", path, strerror(errno));
	else if (conf_enter_base_dir(c, &err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		free(err);
		free(abs);
		abs = NULL;
	}
	conf_free(&c);
	return abs;
}

static int cmd_check(int argc, char **argv)
{
	const char *path = opt_conf(argc, argv);
	if (!path)
		usage();
	char *err = NULL;
	char *abs = enter_base(path);
	if (!abs)
		return 1;
	if (smtpd_validate(abs, &err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		free(err);
		free(abs);
		return 1;
	}
	int rc = check_daemons(abs);
	free(abs);
	if (rc != 0)
		return 1;
	printf("%s: ok\n", path);
	return 0;
}

/*
 * The defer log of id (queue_directory/defer/ID, queue.h: one "rcpt TAB
 * reason" line per deferred recipient). Fills reasons[r] (caller frees)
 * for the recipients of m it names; a missing log leaves them NULL.
 */
static void defer_reasons(const char *qdir, const struct queue_msg *m, char **reasons)
{
	char *path = xasprintf("%s/defer/%s", qdir, m->id);
	FILE *f = fopen(path, "re");
	free(path);
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	for (size_t nlines = 0; nlines <= m->env.nrcpt && (len = getline(&line, &cap, f)) > 0;
	     nlines++) {
		if (line[len - 1] == '\n')
			line[--len] = 0;
		char *tab = strchr(line, '\t');
		if (!tab)
			continue;
		*tab = 0;
		const char *why = tab + 1;
		/* "4.4.1 text" -> "text", as mailq shows it */
		size_t k = strspn(why, "0123456789.");
		if (k >= 5 && why[k] == ' ' && why[1] == '.')
			why += k + 1;
		for (size_t r = 0; r < m->env.nrcpt; r++)
			if (!reasons[r] && strcmp(m->env.rcpt[r].addr, line) == 0) {
				reasons[r] = xstrdup(why);
				break;
			}
	}
	free(line);
	fclose(f);
}

static void list_dir(const char *qdir, enum queue_dir d, int *count)
{
	size_t n;
	char **ids = queue_scan(qdir, d, &n, NULL);
	for (size_t i = 0; i < n; i++) {
		struct queue_msg m;
		char *err = NULL;
		if (queue_msg_open(qdir, d, ids[i], &m, &err) < 0) {
			printf("%-20s (unreadable: %s)\n", ids[i], err);
			free(err);
			continue;
		}
		time_t t = (time_t)m.env.arrival;
		char when[64];
		strftime(when, sizeof when, "%a %b %e %H:%M:%S", localtime(&t));
		const char *mark = d == QUEUE_HOLD ? "!" : d == QUEUE_DEFERRED ? " " : "*";
		char idm[QUEUE_ID_MAX + 2];
		snprintf(idm, sizeof idm, "%s%s", ids[i], mark);
		printf("%-20s %8lld %s  %s\n", idm, m.content_len, when,
		       *m.env.sender ? m.env.sender : "MAILER-DAEMON");
		/* like mailq: "(reason)" above the recipients it applies to */
		char **why = xcalloc(m.env.nrcpt + 1, sizeof *why);
		defer_reasons(qdir, &m, why);
		const char *last = NULL;
		for (size_t r = 0; r < m.env.nrcpt; r++) {
			if (m.env.rcpt[r].status != QUEUE_RCPT_PENDING)
				continue;
			if (why[r] && (!last || strcmp(last, why[r]) != 0))
				printf("(%s)\n", why[r]);
			last = why[r];
			printf("%42s%s\n", "", m.env.rcpt[r].addr);
		}
		for (size_t r = 0; r < m.env.nrcpt; r++)
			free(why[r]);
		free(why);
		printf("\n");
		queue_msg_close(&m);
		(*count)++;
	}
	queue_scan_free(ids, n, NULL);
}

/* Find id in active/, deferred/ or hold/. */
static int find_msg(const char *qdir, const char *id, enum queue_dir *dir_out)
{
	static const enum queue_dir dirs[] = { QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD };
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s/%s", qdir, queue_dir_name(dirs[i]), id);
		int ok = access(p, F_OK) == 0;
		free(p);
		if (ok) {
			*dir_out = dirs[i];
			return 0;
		}
	}
	return -1;
}

/* Ask a running sluiced to run its queue now (SIGUSR1 to the master). */
static void kick(const struct conf *c)
{
	if (!c)
		return;
	const char *pf = conf_str(c, "pid_file");
	FILE *f = fopen(pf, "r");
	int pid = 0;
	if (!f)
		fprintf(stderr, "sluice: sluiced not told to run the queue: pid_file %s: %s\n", pf, strerror(errno));
	else if (fscanf(f, "%d", &pid) != 1 || pid <= 0)
		fprintf(stderr, "sluice: sluiced not told to run the queue: pid_file %s: no pid in it\n", pf);
	else if (kill(pid, SIGUSR1) < 0)
		fprintf(stderr, "sluice: sluiced not told to run the queue: pid %d (from %s): %s\n", pid, pf,
			strerror(errno));
	if (f)
		fclose(f);
}

static int queue_action(const char *qdir, const struct conf *c, const char *action, const char *id)
{
	enum queue_dir d;
	if (!strcmp(action, "flush")) {
		kick(c);
		return 0;
	}
	if (!id)
		usage();
	if (!strcmp(action, "delete") && !strcmp(id, "ALL")) {
		static const enum queue_dir dirs[] = { QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD };
		size_t total = 0;
		for (size_t i = 0; i < 3; i++) {
			size_t n;
			char **ids = queue_scan(qdir, dirs[i], &n, NULL);
			for (size_t k = 0; k < n; k++)
				total += queue_remove(qdir, ids[k], dirs[i]) == 0;
			queue_scan_free(ids, n, NULL);
		}
		printf("sluice: deleted %zu message%s\n", total, total == 1 ? "" : "s");
		return 0;
	}
	if (find_msg(qdir, id, &d) < 0) {
		fprintf(stderr, "sluice: %s: no such message in the queue\n", id);
		return 1;
	}
	int rc = 0;
	if (!strcmp(action, "delete")) {
		rc = queue_remove(qdir, id, d);
	} else if (!strcmp(action, "hold")) {
		rc = d == QUEUE_HOLD ? 0 : queue_move(qdir, id, d, QUEUE_HOLD, 0);
	} else if (!strcmp(action, "release")) {
		if (d != QUEUE_HOLD) {
			fprintf(stderr, "sluice: %s is not on hold\n", id);
			return 1;
		}
		rc = queue_move(qdir, id, QUEUE_HOLD, QUEUE_ACTIVE, 0);
		if (rc == 0)
			kick(c);
	} else {
		usage();
	}
	if (rc < 0) {
		fprintf(stderr, "sluice: %s %s (%s/%s/%s): %s\n", action, id, qdir, queue_dir_name(d), id,
			strerror(errno));
		return 1;
	}
	printf("sluice: %s: %s\n", id, action);
	return 0;
}

static int cmd_queue(int argc, char **argv)
{
	const char *path = opt_conf(argc, argv);
	const char *qdir = "/var/spool/sluice";
	char *err = NULL;
	struct conf *c = NULL;
	if (path) {
		char *abs = enter_base(path);
		if (!abs)
			return 1;
		c = conf_load(abs, params_all, NULL, &err);
		free(abs);
		if (!c) {
			fprintf(stderr, "sluice: %s\n", err);
			return 1;
		}
		qdir = conf_str(c, "queue_directory");
	}
	struct stat st;
	int serr = stat(qdir, &st) < 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
	if (serr) {
		/* a relative one as resolved: from the config's base, our working directory */
		char cwd[4096];
		char *shown = conf_abs_path(getcwd(cwd, sizeof cwd) ? cwd : ".", qdir);
		fprintf(stderr, "sluice: queue_directory %s: %s\n", shown, strerror(serr));
		free(shown);
		conf_free(&c);
		return 1;
	}
	if (optind < argc && strcmp(argv[optind], "list") != 0) {
		int rc = queue_action(qdir, c, argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL);
		conf_free(&c);
		return rc;
	}
	printf("-Queue ID-           --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
	int count = 0;
	list_dir(qdir, QUEUE_ACTIVE, &count);
	list_dir(qdir, QUEUE_DEFERRED, &count);
	list_dir(qdir, QUEUE_HOLD, &count);
	if (count)
		printf("-- %d Request%s.\n", count, count == 1 ? "" : "s");
	else
		printf("Mail queue is empty\n");
	conf_free(&c);
	return 0;
}

/* sluice params [-c FILE] [-d]: every parameter = value, like postconf (-d: defaults). */
static int cmd_params(int argc, char **argv)
{
	const char *path = NULL;
	int defaults = 0, opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "c:d")) != -1) {
		if (opt == 'c')
			path = optarg;
		else if (opt == 'd')
			defaults = 1;
		else
			usage();
	}
	char *err = NULL;
	struct conf *c = path && !defaults ? conf_load(path, params_all, NULL, &err)
					   : conf_load_string("", "(defaults)", params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	for (const struct conf_param *const *t = params_all; *t; t++)
		for (const struct conf_param *p = *t; p->name; p++) {
			if (optind < argc) {
				int want = 0;
				for (int i = optind; i < argc; i++)
					want |= !strcmp(argv[i], p->name);
				if (!want)
					continue;
			}
			printf("%s = %s\n", p->name, conf_str(c, p->name));
		}
	conf_free(&c);
	return 0;
}

int main(int argc, char **argv)
{
	log_set_stderr_only("sluice");
	help_or_version(argc, argv);
	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc, argv);
	if (!strcmp(argv[1], "queue"))
		return cmd_queue(argc, argv);
	if (!strcmp(argv[1], "keygen"))
		return keygen_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "report") && argc > 2 && !strcmp(argv[2], "dmarc"))
		return report_dmarc_main(argc - 2, argv + 2);
	if (!strcmp(argv[1], "report"))
		return report_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "why"))
		return why_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ratelimit"))
		return ratelimit_cli_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "params"))
		return cmd_params(argc, argv);
	int rc = start_dispatch(argc, argv);
	if (rc >= 0)
		return rc;
	usage();
	return 2;
}
