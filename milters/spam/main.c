/*
 * sluice-spam: spam-scoring milter (issue 11).
 * Thin: options, `check` mode, configuration generations (SIGHUP), and
 * libmilter callbacks that hand the message to spam_msg.c and apply its
 * outcome.
 */
#include "milters/spam/spam_bayes_learn.h"
#include "milters/spam/spam_cfg.h"
#include "milters/spam/spam_msg.h"
#include "milters/spam/spam_rules.h"
#include "conf/conf.h"
#include "conf/params.h"
#include "conf/params_spam.h"
#include "lib/milterd.h"
#include "lib/privfile.h"
#include "lib/sdnotify.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "lib/version.h"

#include <errno.h>
#include <getopt.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *config_file = "/etc/sluice/sluice.conf";
static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spam_cfg *current;

static struct spam_cfg *cfg_get(void)
{
	pthread_mutex_lock(&cfg_lock);
	struct spam_cfg *c = spam_cfg_ref(current);
	pthread_mutex_unlock(&cfg_lock);
	return c;
}

/* load_conf - the file, or the built-in defaults when path is NULL (check without -c). */
static struct conf *load_conf(const char *path, char **err_out)
{
	if (path == NULL)
		return conf_load_string("", "(defaults)", params_all, NULL, err_out);
	return conf_load(path, params_all, NULL, err_out);
}

static struct spam_cfg *load(const char *path, struct conf **conf_out, char **err_out)
{
	struct conf *c = load_conf(path, err_out);
	if (c == NULL)
		return NULL;
	struct spam_cfg *cfg = spam_cfg_new(c, err_out);
	if (cfg == NULL) {
		conf_free(&c);
		return NULL;
	}
	if (conf_out)
		*conf_out = c;
	else
		conf_free(&c);
	return cfg;
}

/*
 * enter_base_dir - relative paths in the config are relative to its base
 * directory (conf/conf.h): work there, and keep the config file's absolute
 * name for reloads.
 */
static void enter_base_dir(const char **path)
{
	char *err = NULL;
	struct conf *c = conf_load(*path, params_all, NULL, &err);
	if (c == NULL)
		fatal("%s", err);
	char *abs = realpath(*path, NULL);
	if (abs == NULL)
		fatal("%s: %s", *path, strerror(errno));
	if (conf_enter_base_dir(c, &err) < 0)
		fatal("%s", err);
	conf_free(&c);
	*path = abs;
}

/* SIGHUP (lib/milterd's signal thread): a new configuration generation */
static void reload(void)
{
	char *err = NULL;
	struct spam_cfg *cfg = load(config_file, NULL, &err);
	struct spam_cfg *prev = cfg ? cfg_get() : NULL;
	if (cfg && spam_cfg_open_bayes(cfg, prev, &err) < 0)
		spam_cfg_unref(&cfg);
	spam_cfg_unref(&prev);
	if (cfg == NULL) {
		log_event(NULL, "spam: reload failed, keeping the old configuration: %s", err);
		free(err);
		return;
	}
	char *sum = spam_rules_summary(cfg->rules);
	pthread_mutex_lock(&cfg_lock);
	struct spam_cfg *old = current;
	current = cfg;
	pthread_mutex_unlock(&cfg_lock);
	spam_cfg_unref(&old);	/* messages in flight keep their own reference */
	log_event(NULL, "spam: configuration reloaded; %s", sum);
	if (cfg->dnsl_status)
		log_event(NULL, "spam: dns lists: %s", cfg->dnsl_status);
	free(sum);
}

/* stopped - the stop line (lib/milterd waited for the messages in flight) */
static void stopped(int sig, int unfinished)
{
	(void)sig;
	(void)unfinished;
	log_event(NULL, "spam: stopped");
}

static const struct milterd_signal_ops signal_ops = { "spam", reload, stopped };

/* ---- per connection ---- */

struct conn {
	char addr[INET6_ADDRSTRLEN + 8];
	char *name;		/* client host name from the MTA */
	char *helo;
	int leadspc;
	unsigned long proto;	/* negotiated SMFIP_* steps */
	struct spam_msg *msg;
	struct spam_prefetch *prefetch;	/* DNS list look-ups of the client, from connect */
};

/* done - SMFIS_NOREPLY where the MTA agreed that we do not reply (SMFIP_NR_*). */
static sfsistat done(const struct conn *c, unsigned long nr_flag)
{
	return c && (c->proto & nr_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static struct conn *conn_of(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* msg_end - the connection's message (if any) is done. */
static void msg_end(struct conn *c)
{
	if (c->msg) {
		spam_msg_free(&c->msg);
		milterd_inflight_leave();
	}
}

static const char *qid_of(SMFICTX *ctx)
{
	const char *q = smfi_getsymval(ctx, "i");
	return q && *q ? q : NULL;
}

static int listen_inet;

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
			     unsigned long f3, unsigned long *pf0, unsigned long *pf1,
			     unsigned long *pf2, unsigned long *pf3)
{
	(void)f0;
	(void)f2;
	(void)f3;
	struct conn *c = xcalloc(1, sizeof(*c));
	smfi_setpriv(ctx, c);
	*pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
	/* we act only at end of message: no reply to anything before it */
	unsigned long want = SMFIP_NORCPT | SMFIP_NOUNKNOWN | SMFIP_NODATA |
			     SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
			     SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_HDR | SMFIP_NR_EOH |
			     SMFIP_NR_BODY | SMFIP_HDR_LEADSPC;
	/* over TCP answer DATA: see sluice-dkim (Postfix's Nagle wait on the next write) */
	if (listen_inet)
		want &= ~(unsigned long)(SMFIP_NODATA | SMFIP_NR_DATA);
	*pf1 = want & f1;
	c->proto = *pf1;
	c->leadspc = (f1 & SMFIP_HDR_LEADSPC) != 0;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, struct sockaddr *sa)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL) {
		c = xcalloc(1, sizeof(*c));
		smfi_setpriv(ctx, c);
	}
	c->addr[0] = 0;
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->addr, sizeof(c->addr));
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->addr, sizeof(c->addr));
	free(c->name);
	/* Postfix passes "[1.2.3.4]" for a client without a name */
	c->name = host && *host && *host != '[' ? xstrdup(host) : NULL;
	spam_prefetch_free(&c->prefetch);
	if (c->addr[0]) {
		struct spam_cfg *cfg = cfg_get();
		c->prefetch = spam_msg_prefetch(cfg, c->addr);
		spam_cfg_unref(&cfg);
	}
	return done(c, SMFIP_NR_CONN);
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = conn_of(ctx);
	if (c) {
		free(c->helo);
		c->helo = helo ? xstrdup(helo) : NULL;
	}
	return done(c, SMFIP_NR_HELO);
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL)
		return SMFIS_CONTINUE;
	msg_end(c);	/* a new transaction: nothing of the last one stays */
	char *from = NULL;
	if (argv && argv[0]) {
		const char *a = argv[0];
		size_t l = strlen(a);
		from = a[0] == '<' && l >= 2 && a[l - 1] == '>' ? xstrndup(a + 1, l - 2) : xstrdup(a);
	}
	struct spam_cfg *cfg = cfg_get();
	struct spam_msg_env env = {
		.qid = qid_of(ctx),
		.client_ip = c->addr[0] ? c->addr : NULL,
		.client_name = c->name,
		.helo = c->helo,
		.env_from = from,
		.auth = smfi_getsymval(ctx, "{auth_authen}"),
		.prefetch = &c->prefetch,
	};
	c->msg = spam_msg_new(cfg, &env);
	if (c->msg)
		milterd_inflight_enter();
	spam_cfg_unref(&cfg);
	free(from);
	return done(c, SMFIP_NR_MAIL);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_of(ctx);
	if (c && c->msg)
		spam_msg_header(c->msg, name, value);
	return done(c, SMFIP_NR_HDR);
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c && c->msg) {
		spam_msg_set_qid(c->msg, qid_of(ctx));
		spam_msg_eoh(c->msg);
	}
	return done(c, SMFIP_NR_EOH);
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct conn *c = conn_of(ctx);
	if (c && c->msg)
		spam_msg_body(c->msg, buf, len);
	return done(c, SMFIP_NR_BODY);
}

/* hv - a header value as the MTA wants it: with a leading space when negotiated. */
static char *hv(const struct conn *c, const char *v, char **tmp)
{
	*tmp = c->leadspc ? xasprintf(" %s", v) : xstrdup(v);
	return *tmp;
}

static void add(SMFICTX *ctx, const struct conn *c, const char *name, const char *v)
{
	char *t;
	if (v)
		smfi_addheader(ctx, (char *)name, hv(c, v, &t));
	else
		return;
	free(t);
}

static int fam_score;	/* sluice_spam_score histogram (metrics on) */

static sfsistat on_eom(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || c->msg == NULL)
		return SMFIS_CONTINUE;
	double t0 = metrics_now_s();
	spam_msg_set_qid(c->msg, qid_of(ctx));
	const char *qid = qid_of(ctx) ? qid_of(ctx) : "NOQUEUE";
	struct spam_outcome out;
	spam_msg_eom(c->msg, &out);
	/* from the end, so earlier indexes stay valid */
	for (size_t i = out.ndel; i > 0; i--)
		smfi_chgheader(ctx, out.del[i - 1].name, out.del[i - 1].index, NULL);
	if (out.scanned && out.action != SPAM_ACT_REJECT && out.action != SPAM_ACT_GREYLIST) {
		add(ctx, c, "X-Spam-Flag", out.flag);
		add(ctx, c, "X-Spam-Level", out.level);
		add(ctx, c, "X-Spam-Status", out.status);
		add(ctx, c, "X-Spam-Symbols", out.symbols);
		if (out.subject) {
			char *t;
			if (out.subject_index)
				smfi_chgheader(ctx, "Subject", out.subject_index, hv(c, out.subject, &t));
			else
				smfi_addheader(ctx, "Subject", hv(c, out.subject, &t));
			free(t);
		}
	}
	sfsistat rc = SMFIS_CONTINUE;
	if (out.action == SPAM_ACT_REJECT || out.action == SPAM_ACT_GREYLIST) {
		smfi_setreply(ctx, (char *)out.code, (char *)out.xcode, (char *)out.text);
		rc = out.action == SPAM_ACT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
	}
	log_event(qid, "%s", out.log);
	if (out.warn)
		log_event(NULL, "warning: spam: %s", out.warn);
	char act[32];	/* as in the decision line: "add header" -> add_header */
	snprintf(act, sizeof act, "%s", spam_action_name(out.action));
	for (char *p = act; *p; p++)
		if (*p == ' ')
			*p = '_';
	metrics_filter_decision(!out.scanned ? "skipped" : out.flag ? "spam" : "ham", act, metrics_now_s() - t0);
	if (out.scanned)
		metrics_observe(metrics_filter.m, fam_score, NULL, out.score);
	if (out.warn)
		metrics_filter_error("dns_list");
	spam_outcome_clear(&out);
	msg_end(c);
	return rc;
}

static sfsistat on_abort(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c)
		msg_end(c);
	return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c) {
		msg_end(c);
		spam_prefetch_free(&c->prefetch);
		free(c->name);
		free(c->helo);
		free(c);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

static void usage(FILE *f, int rc)
{
	fprintf(f, "usage: sluice-spam -c sluice.conf [-f] [-n]\n"
		   "       sluice-spam check [-c sluice.conf] [--json] FILE...\n"
		   "       sluice-spam learn --spam|--ham|--forget [-c sluice.conf] PATH...\n"
		   "  -c FILE   configuration (default /etc/sluice/sluice.conf)\n"
		   "  -f        stay in the foreground\n"
		   "  -n        check the configuration and the rules, then exit\n"
		   "  check     score messages without a milter: score, action, symbols\n"
		   "  learn     teach Bayes: files, Maildirs, mboxes\n"
		   "  --help, --version\n");
	exit(rc);
}

static char *read_file(const char *path, size_t *len_out)
{
	FILE *f = !strcmp(path, "-") ? stdin : fopen(path, "rb");
	if (f == NULL)
		return NULL;
	struct sbuf b;
	sbuf_init(&b);
	char buf[65536];
	size_t r;
	while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
		sbuf_add(&b, buf, r);
	if (f != stdin)
		fclose(f);
	*len_out = b.len;
	return sbuf_steal(&b);
}

static int check_main(int argc, char **argv)
{
	const char *conf_path = NULL;
	int json = 0;
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': conf_path = optarg; break;
		case 'j': json = 1; break;
		case 'h': usage(stdout, 0); break;
		default: usage(stderr, 2);
		}
	}
	if (optind == argc)
		usage(stderr, 2);
	log_set_stderr_only("sluice-spam");
	char *cwd = getcwd(NULL, 0);	/* FILE arguments stay relative to where we were started */
	if (cwd == NULL)
		fatal("getcwd: %s", strerror(errno));
	char *abs_conf = NULL;
	if (conf_path) {
		enter_base_dir(&conf_path);
		abs_conf = (char *)conf_path;
	}
	char *err = NULL;
	struct spam_cfg *cfg = load(conf_path, NULL, &err);
	if (cfg == NULL)
		fatal("%s", err);
	if (spam_cfg_open_bayes(cfg, NULL, &err) < 0) {
		/* the admin's tool still answers: without Bayes, and says so */
		fprintf(stderr, "sluice-spam: warning: scoring without Bayes: %s\n", err);
		free(err);
		err = NULL;
	}
	int rc = 0;
	for (int i = optind; i < argc; i++) {
		size_t len;
		char *path = argv[i][0] == '/' || !strcmp(argv[i], "-") ? xstrdup(argv[i]) :
			     xasprintf("%s/%s", cwd, argv[i]);
		char *msg = read_file(path, &len);
		free(path);
		if (msg == NULL) {
			fprintf(stderr, "sluice-spam: %s: %s\n", argv[i], strerror(errno));
			rc = 1;
			continue;
		}
		struct spam_outcome out;
		spam_check_buffer(cfg, msg, len, NULL, &out);
		if (json) {
			char *j = spam_outcome_json(argv[i], &out);
			printf("%s\n", j);
			free(j);
		} else {
			printf("%s: score=%.2f required=%.2f action=%s\n", argv[i], out.score,
			       out.required, spam_action_name(out.action));
			for (size_t k = 0; k < out.result.nhits; k++) {
				const struct spam_hit *h = &out.result.hits[k];
				printf("  %7.2f %-28s %s\n", h->score, h->name,
				       h->describe ? h->describe : "");
			}
		}
		spam_outcome_clear(&out);
		free(msg);
	}
	spam_cfg_unref(&cfg);
	free(cwd);
	free(abs_conf);
	return rc;
}

static void learn_progress(void *arg, const struct spam_bayes_progress *p)
{
	(void)arg;
	if (p->error)
		fprintf(stderr, "sluice-spam: %s: %s\n", p->path, p->error);
	else if (p->messages % 100 == 0)
		fprintf(stderr, "%llu messages, %llu learned\n", (unsigned long long)p->messages,
			(unsigned long long)p->learned);
}

/* learn_main - sluice-spam learn --spam|--ham|--forget [-c conf] PATH... (docs/SPAM-BAYES.md) */
static int learn_main(int argc, char **argv)
{
	const char *conf_path = NULL;
	int op = -1, ch;
	static const struct option opts[] = {
		{ "spam", no_argument, NULL, 's' },
		{ "ham", no_argument, NULL, 'H' },
		{ "forget", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': conf_path = optarg; break;
		case 's': op = SPAM_BAYES_LEARN_SPAM; break;
		case 'H': op = SPAM_BAYES_LEARN_HAM; break;
		case 'F': op = SPAM_BAYES_FORGET; break;
		case 'h': usage(stdout, 0); break;
		default: usage(stderr, 2);
		}
	}
	if (op < 0 || optind == argc)
		usage(stderr, 2);
	log_set_stderr_only("sluice-spam");
	/* PATHs are the caller's: absolute before entering the config's base directory */
	char *cwd = getcwd(NULL, 0);
	if (cwd == NULL)
		fatal("getcwd: %s", strerror(errno));
	size_t n = (size_t)(argc - optind);
	char **paths = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		const char *a = argv[optind + (int)i];
		paths[i] = a[0] == '/' ? xstrdup(a) : xasprintf("%s/%s", cwd, a);
	}
	char *abs_conf = NULL;
	if (conf_path == NULL)
		conf_path = config_file;
	enter_base_dir(&conf_path);
	abs_conf = (char *)conf_path;
	char *err = NULL;
	struct conf *c = load_conf(conf_path, &err);
	struct spam_bayes_opts bo;
	if (c == NULL || spam_bayes_opts_from_conf(c, &bo, &err) < 0)
		fatal("%s", err);
	struct spam_bayes *b = spam_bayes_open(&bo, &err);
	if (b == NULL)
		fatal("%s", err);
	struct spam_bayes_progress total;
	int rc = spam_bayes_learn_paths(b, (enum spam_bayes_op)op, (const char *const *)paths, n,
					learn_progress, NULL, &total, &err);
	if (rc < 0)
		fprintf(stderr, "sluice-spam: %s\n", err);
	printf("%llu messages: %llu learned, %llu already learned, %llu forgotten, %llu unknown, "
	       "%llu unreadable\n", (unsigned long long)total.messages,
	       (unsigned long long)total.learned, (unsigned long long)total.already,
	       (unsigned long long)total.forgotten, (unsigned long long)total.unknown,
	       (unsigned long long)total.errors);
	spam_bayes_close(&b);
	conf_free(&c);
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	free(cwd);
	free(abs_conf);
	free(err);
	return rc < 0 || total.errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "check"))
		return check_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "learn"))
		return learn_main(argc - 1, argv + 1);
	int foreground = 0, check = 0, ch;
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	while ((ch = getopt_long(argc, argv, "c:fn", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': config_file = optarg; break;
		case 'f': foreground = 1; break;
		case 'n': check = 1; break;
		case 'h': usage(stdout, 0); break;
		case 'V': printf("sluice-spam (sluice) %s\n", SLUICE_VERSION); return 0;
		default: usage(stderr, 2);
		}
	}
	if (optind != argc)
		usage(stderr, 2);
	log_set_stderr_only("sluice-spam");
	enter_base_dir(&config_file);
	char *err = NULL;
	struct conf *c = NULL;
	struct spam_cfg *cfg = load(config_file, &c, &err);
	if (cfg == NULL)
		fatal("%s", err);
	size_t nw;
	const char *const *w = conf_warnings(c, &nw);
	for (size_t i = 0; i < nw; i++)
		log_event(NULL, "warning: %s", w[i]);
	const char *why;
	char *conn = spam_cfg_milter_conn(conf_str(c, "spam_socket"), &why);
	if (conn == NULL)
		fatal("%s: spam_socket: %s", conf_where(c, "spam_socket"), why);
	listen_inet = strncmp(conn, "inet", 4) == 0;
	char *sum = spam_rules_summary(cfg->rules);
	if (check) {
		printf("%s: spam configuration ok (socket %s); %s\n", config_file, conn, sum);
		if (cfg->dnsl_status)
			printf("dns lists: %s\n", cfg->dnsl_status);
		free(sum);
		free(conn);
		spam_cfg_unref(&cfg);
		conf_free(&c);
		return 0;
	}
	current = cfg;
	const char *lerr;
	if (log_init_conf("sluice-spam", c, &lerr) < 0)
		fatal("maillog_file %s: %s", conf_str(c, "maillog_file"), lerr);
	signal(SIGPIPE, SIG_IGN);

	struct smfiDesc desc = {
		.xxfi_name = "sluice-spam",
		.xxfi_version = SMFI_VERSION,
		.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS,
		.xxfi_connect = on_connect,
		.xxfi_helo = on_helo,
		.xxfi_envfrom = on_envfrom,
		.xxfi_header = on_header,
		.xxfi_eoh = on_eoh,
		.xxfi_body = on_body,
		.xxfi_eom = on_eom,
		.xxfi_abort = on_abort,
		.xxfi_close = on_close,
		.xxfi_negotiate = on_negotiate,
	};
	milterd_listen(c, "spam", &desc, conn);
	int metrics_fd = metrics_conf_listen(c, "spam_metrics_listen");	/* before the privilege drop */
	static const struct conf_param *const own_tables[] = { common_params, spam_params, NULL };
	struct privfile_opts priv = { .config_file = config_file, .tables = own_tables };
	milterd_privileges(c, "spam", foreground, &priv);
	/* after the fork and the privilege drop: LMDB must not cross a fork, the file is the user's */
	if (spam_cfg_open_bayes(cfg, NULL, &err) < 0)
		fatal("%s", err);

	/* before any other thread exists: HUP reloads, TERM/INT stop (lib/milterd.h) */
	milterd_signals_start(&signal_ops);
	/* metrics from a thread of their own: libmilter owns the main thread */
	struct metrics_http *metrics_srv = NULL;
	if (metrics_fd >= 0) {
		static const double score_bounds[] = { -5, 0, 2, 4, 5, 6, 8, 10, 15, 20, 30 };
		char *merr = NULL;
		struct metrics *metrics = metrics_new(0, 1);
		metrics_filter_init(metrics, "spam", "messages");
		fam_score = metrics_family(metrics, "sluice_spam_score", METRICS_HISTOGRAM,
					   "Spam scores of the messages scanned.", NULL, score_bounds,
					   sizeof score_bounds / sizeof score_bounds[0]);
		if (!(metrics_srv = metrics_http_start(metrics, NULL, metrics_fd, &merr)))
			fatal("spam_metrics_listen: %s", merr);
	}
	log_event(NULL, "spam: listening on %s; %s", conn, sum);
	if (cfg->dnsl_status)
		log_event(NULL, "spam: dns lists: %s", cfg->dnsl_status);
	free(sum);
	free(conn);
	sdnotify("READY=1");	/* Type=notify units (sluice-spam.service) */
	int rc = smfi_main();	/* returns only on a libmilter failure: a stop exits */
	log_event(NULL, "spam: milter loop ended (%s)", rc == MI_SUCCESS ? "ok" : "failure");
	metrics_http_stop(&metrics_srv);
	/* libmilter's worker threads may still be finishing: the registry stays mapped */
	return rc == MI_SUCCESS ? 0 : 1;
}
