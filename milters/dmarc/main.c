/*
 * sluice-dmarc: DMARC evaluation and enforcement milter (issue 10).
 * Thin: options, configuration generations (SIGHUP), libmilter callbacks
 * that hand the message to dmarc_msg.c and apply its outcome.
 * Replies only at end of message: every other stage is negotiated as
 * no-reply (SMFIP_NR_*, callbacks return SMFIS_NOREPLY there) and the
 * events we do not use are not sent at all.
 */
#include "milters/dmarc/dmarc_cfg.h"
#include "milters/dmarc/dmarc_dns.h"
#include "milters/dmarc/dmarc_msg.h"
#include "milters/dkim/dkim_cfg.h"
#include "milters/dkim/dkim_pubkey.h"
#include "conf/conf.h"
#include "conf/params.h"
#include "conf/params_dmarc.h"
#include "lib/milterd.h"
#include "lib/privfile.h"
#include "lib/sdnotify.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "lib/version.h"

#include <errno.h>
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
static struct dmarc_cfg *current;
static struct conf *current_conf;

static struct dmarc_cfg *cfg_get(void)
{
	pthread_mutex_lock(&cfg_lock);
	struct dmarc_cfg *c = dmarc_cfg_ref(current);
	pthread_mutex_unlock(&cfg_lock);
	return c;
}

/* load - conf + one configuration generation; NULL with *err_out. */
static struct dmarc_cfg *load(struct conf **conf_out, char **err_out)
{
	struct conf *c = conf_load(config_file, params_all, NULL, err_out);
	if (c == NULL)
		return NULL;
	struct dmarc_cfg *cfg = dmarc_cfg_new(c, NULL, err_out);
	if (cfg == NULL) {
		conf_free(&c);
		return NULL;
	}
	*conf_out = c;
	return cfg;
}

static void reload(void)
{
	char *err = NULL;
	struct conf *c = NULL;
	struct dmarc_cfg *cfg = load(&c, &err);
	if (cfg == NULL) {
		log_event(NULL, "dmarc: reload failed, keeping the old configuration: %s", err);
		free(err);
		return;
	}
	pthread_mutex_lock(&cfg_lock);
	struct dmarc_cfg *old = current;
	current = cfg;
	current_conf = c;
	pthread_mutex_unlock(&cfg_lock);
	dmarc_cfg_unref(&old);	/* messages in flight keep their own reference */
	/* XXX: the old conf is kept (strings may still be borrowed); small, per reload */
	log_event(NULL, "dmarc: configuration reloaded (mode %s, self_validate %s)",
		  cfg->mode == DMARC_MODE_RFC7489 ? "rfc7489" : "dmarcbis",
		  cfg->self_validate ? "yes" : "no");
}

/* stopped - the stop line (lib/milterd waited for the messages in flight) */
static void stopped(int sig, int unfinished)
{
	(void)sig;
	size_t hits, misses;
	dkim_pubkey_stats(&hits, &misses);	/* also links sluice-dkim's public-key cache in */
	struct dmarc_cfg *cfg = cfg_get();
	log_event(NULL, "dmarc: stopped (%d messages unfinished); DNS questions %lu, answers from "
		  "cache %lu; DKIM public keys decoded %zu, served from cache %zu", unfinished,
		  dmarc_dns_count(cfg->dns), dmarc_dns_cache_hits(cfg->dns), misses, hits);
	dmarc_cfg_unref(&cfg);
}

static const struct milterd_signal_ops signal_ops = { "dmarc", reload, stopped };

/* ---- per connection ---- */

struct conn {
	char addr[INET6_ADDRSTRLEN + 8];
	char *helo;
	int leadspc;		/* MTA passes header values with their leading space */
	unsigned long proto;	/* negotiated SMFIP_* steps */
	struct dmarc_msg *msg;
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
		dmarc_msg_free(&c->msg);
		milterd_inflight_leave();
	}
}

static const char *qid_of(SMFICTX *ctx)
{
	const char *q = smfi_getsymval(ctx, "i");
	return q && *q ? q : NULL;
}

static int listen_inet;	/* dmarc_socket is inet: */

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
			     unsigned long f3, unsigned long *pf0, unsigned long *pf1,
			     unsigned long *pf2, unsigned long *pf3)
{
	(void)f0;
	(void)f2;
	(void)f3;
	struct conn *c = xcalloc(1, sizeof(*c));
	smfi_setpriv(ctx, c);
	*pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;
	/* we act only at end of message: no reply anywhere else */
	unsigned long want = SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_CONN | SMFIP_NR_HELO |
			     SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN |
			     SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC;
	/*
	 * Over TCP the DATA event is answered, as sluice-dkim does: Postfix
	 * hands the milter socket to cleanup after the unanswered DATA macros
	 * and its first header write then waits under Nagle for our delayed
	 * ACK (~40 ms per message). Unix sockets have no Nagle.
	 */
	if (listen_inet)
		want &= ~(unsigned long)(SMFIP_NODATA | SMFIP_NR_DATA);
	*pf1 = want & f1;
	c->proto = *pf1;
	c->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static struct conn *conn_get(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL) {	/* no negotiation seen (old MTA): nothing agreed */
		c = xcalloc(1, sizeof(*c));
		smfi_setpriv(ctx, c);
	}
	return c;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, struct sockaddr *sa)
{
	(void)host;
	struct conn *c = conn_get(ctx);
	c->addr[0] = 0;
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->addr, sizeof(c->addr));
	else if (sa && sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6))	/* ::ffff:192.0.2.1 is 192.0.2.1 (ignore hosts, SPF) */
			inet_ntop(AF_INET, &a6->s6_addr[12], c->addr, sizeof(c->addr));
		else
			inet_ntop(AF_INET6, a6, c->addr, sizeof(c->addr));
	}
	free(c->helo);
	c->helo = NULL;
	return done(c, SMFIP_NR_CONN);
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = conn_get(ctx);
	free(c->helo);
	c->helo = helo ? xstrdup(helo) : NULL;
	return done(c, SMFIP_NR_HELO);
}

/* addr_of - the address of a MAIL/RCPT argument without <> (new string). */
static char *addr_of(const char *arg)
{
	if (arg == NULL)
		return xstrdup("");
	size_t l = strlen(arg);
	if (l >= 2 && arg[0] == '<' && arg[l - 1] == '>')
		return xstrndup(arg + 1, l - 2);
	return xstrdup(arg);
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_get(ctx);
	msg_end(c);	/* a new transaction: nothing of the last one stays */
	struct dmarc_cfg *cfg = cfg_get();
	const char *auth = smfi_getsymval(ctx, "{auth_authen}");
	struct dmarc_msg_conn ci = { c->addr, c->helo, auth && *auth };
	char *from = addr_of(argv ? argv[0] : NULL);
	c->msg = dmarc_msg_new(cfg, qid_of(ctx), &ci, from);
	milterd_inflight_enter();
	free(from);
	dmarc_cfg_unref(&cfg);
	return done(c, SMFIP_NR_MAIL);
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_get(ctx);
	if (c->msg && argv && argv[0]) {
		char *r = addr_of(argv[0]);
		dmarc_msg_rcpt(c->msg, r);
		free(r);
	}
	return done(c, SMFIP_NR_RCPT);
}

static sfsistat on_data(SMFICTX *ctx)
{
	return done(conn_get(ctx), SMFIP_NR_DATA);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_get(ctx);
	if (c->msg == NULL)
		return done(c, SMFIP_NR_HDR);
	if (c->leadspc) {
		dmarc_msg_header(c->msg, name, value);
	} else {
		char *v = xasprintf(" %s", value);
		dmarc_msg_header(c->msg, name, v);
		free(v);
	}
	return done(c, SMFIP_NR_HDR);
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_get(ctx);
	if (c->msg) {
		dmarc_msg_set_qid(c->msg, qid_of(ctx));
		dmarc_msg_eoh(c->msg);
	}
	return done(c, SMFIP_NR_EOH);
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct conn *c = conn_get(ctx);
	if (c->msg && dmarc_msg_wants_body(c->msg))
		dmarc_msg_body(c->msg, buf, len);
	return done(c, SMFIP_NR_BODY);
}

/* hv - header value as the MTA wants it: without our leading space unless negotiated. */
static char *hv(const struct conn *c, char *v)
{
	return (!c->leadspc && v[0] == ' ') ? v + 1 : v;
}

static sfsistat on_eom(SMFICTX *ctx)
{
	struct conn *c = conn_get(ctx);
	if (c->msg == NULL)
		return SMFIS_CONTINUE;
	double t0 = metrics_now_s();
	dmarc_msg_set_qid(c->msg, qid_of(ctx));
	const char *qid = qid_of(ctx) ? qid_of(ctx) : "NOQUEUE";
	struct dmarc_msg_outcome out;
	dmarc_msg_eom(c->msg, &out);
	for (size_t i = out.n_xsd_delete; i > 0; i--)
		smfi_chgheader(ctx, "X-Sluice-DMARC", (int)i, NULL);
	if (out.ar_value)
		smfi_insheader(ctx, 0, "Authentication-Results", hv(c, out.ar_value));
	if (out.add_header)
		smfi_addheader(ctx, "X-Sluice-DMARC", c->leadspc ? " quarantine" : "quarantine");
	sfsistat rc = SMFIS_CONTINUE;
	switch (out.action) {
	case DMARC_MSG_ACCEPT:
		break;
	case DMARC_MSG_REJECT:
	case DMARC_MSG_TEMPFAIL:
		smfi_setreply(ctx, (char *)out.reply_code, (char *)out.reply_xcode, out.reply_text);
		rc = out.action == DMARC_MSG_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
		break;
	case DMARC_MSG_QUARANTINE:
		smfi_quarantine(ctx, out.quarantine_reason ? out.quarantine_reason : "DMARC");
		break;
	}
	/* ms= last on the decision lines (docs/EVENTS.md), not on failure-report lines */
	long long ms = (long long)((metrics_now_s() - t0) * 1000);
	for (size_t i = 0; i < out.nlog; i++)
		if (!strncmp(out.log[i], "milter=dmarc action=", 20))
			log_event(qid, "%s ms=%lld", out.log[i], ms);
		else
			log_event(qid, "%s", out.log[i]);
	metrics_filter_decision(dmarc_result_name(out.result), dmarc_msg_action_name(out.action),
				metrics_now_s() - t0);
	dmarc_msg_outcome_clear(&out);
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
		free(c->helo);
		free(c);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

static void usage(FILE *f, int rc)
{
	fprintf(f, "usage: sluice-dmarc -c sluice.conf [-f] [-n]\n"
		   "  -c FILE    configuration (default /etc/sluice/sluice.conf)\n"
		   "  -f         stay in the foreground\n"
		   "  -n         check the configuration and exit\n"
		   "  --help     this text\n"
		   "  --version  print the version\n");
	exit(rc);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0)
			usage(stdout, 0);
		if (strcmp(argv[i], "--version") == 0) {
			printf("sluice-dmarc (sluice) %s\n", SLUICE_VERSION);
			return 0;
		}
	}
	int foreground = 0, check = 0, ch;
	while ((ch = getopt(argc, argv, "c:fn")) != -1) {
		switch (ch) {
		case 'c': config_file = optarg; break;
		case 'f': foreground = 1; break;
		case 'n': check = 1; break;
		default: usage(stderr, 2);
		}
	}
	if (optind != argc)
		usage(stderr, 2);
	log_set_stderr_only("sluice-dmarc");
	/* absolute: we chdir to the base directory, reload, and hand it to sluice-sendmail */
	char *abs_config = realpath(config_file, NULL);
	if (abs_config)
		config_file = abs_config;
	dmarc_cfg_set_config_file(config_file);
	char *err = NULL;
	struct conf *c = conf_load(config_file, params_all, NULL, &err);
	if (c == NULL)
		fatal("%s", err);
	if (conf_enter_base_dir(c, &err) < 0)
		fatal("%s", err);
	struct dmarc_cfg *cfg = dmarc_cfg_new(c, NULL, &err);
	if (cfg == NULL)
		fatal("%s", err);
	size_t nw;
	const char *const *w = conf_warnings(c, &nw);
	for (size_t i = 0; i < nw; i++)
		log_event(NULL, "warning: %s", w[i]);
	const char *why;
	char *conn = dkim_cfg_milter_conn(conf_str(c, "dmarc_socket"), &why);
	if (conn == NULL)
		fatal("%s: dmarc_socket: %s", conf_where(c, "dmarc_socket"), why);
	listen_inet = strncmp(conn, "inet", 4) == 0;
	char *end;
	const char *ms = conf_str(c, "dmarc_socket_mode");
	long mode = strtol(ms, &end, 8);
	if (*end || mode < 0 || mode > 0777)
		fatal("%s: dmarc_socket_mode %s: expected an octal mode such as 0660",
		      conf_where(c, "dmarc_socket_mode"), ms);
	if (check) {
		printf("%s: dmarc configuration ok (mode %s, self_validate %s, socket %s)\n",
		       config_file, cfg->mode == DMARC_MODE_RFC7489 ? "rfc7489" : "dmarcbis",
		       cfg->self_validate ? "yes" : "no", conn);
		free(conn);
		dmarc_cfg_unref(&cfg);
		conf_free(&c);
		return 0;
	}
	current = cfg;
	current_conf = c;
	const char *lerr;
	if (log_init_conf("sluice-dmarc", c, &lerr) < 0)
		fatal("maillog_file %s: %s", conf_str(c, "maillog_file"), lerr);
	signal(SIGPIPE, SIG_IGN);

	struct smfiDesc desc = {
		.xxfi_name = "sluice-dmarc",
		.xxfi_version = SMFI_VERSION,
		.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
		.xxfi_connect = on_connect,
		.xxfi_helo = on_helo,
		.xxfi_envfrom = on_envfrom,
		.xxfi_envrcpt = on_envrcpt,
		.xxfi_data = on_data,
		.xxfi_header = on_header,
		.xxfi_eoh = on_eoh,
		.xxfi_body = on_body,
		.xxfi_eom = on_eom,
		.xxfi_abort = on_abort,
		.xxfi_close = on_close,
		.xxfi_negotiate = on_negotiate,
	};
	milterd_listen(c, "dmarc", &desc, conn);
	int metrics_fd = metrics_conf_listen(c, "dmarc_metrics_listen");	/* before the privilege drop */
	static const struct conf_param *const own_tables[] = { common_params, dmarc_params, NULL };
	struct privfile_opts priv = { .config_file = config_file, .tables = own_tables };
	milterd_privileges(c, "dmarc", foreground, &priv);

	/* before any other thread exists: HUP reloads, TERM/INT stop (lib/milterd.h) */
	milterd_signals_start(&signal_ops);
	/* metrics from a thread of their own: libmilter owns the main thread;
	 * a stop ends the process with the thread running */
	if (metrics_fd >= 0) {
		char *merr = NULL;
		struct metrics *metrics = metrics_new(0, 1);
		metrics_filter_init(metrics, "dmarc", "messages");
		if (!metrics_http_start(metrics, NULL, metrics_fd, &merr))
			fatal("dmarc_metrics_listen: %s", merr);
	}
	log_event(NULL, "dmarc: listening on %s (mode %s, self_validate %s)", conn,
		  cfg->mode == DMARC_MODE_RFC7489 ? "rfc7489" : "dmarcbis",
		  cfg->self_validate ? "yes" : "no");
	free(conn);
	sdnotify("READY=1");	/* Type=notify units (sluice-dmarc.service) */
	int rc = smfi_main();	/* returns only on a libmilter failure: a stop exits */
	log_event(NULL, "dmarc: milter loop ended (%s)", rc == MI_SUCCESS ? "ok" : "failure");
	return rc == MI_SUCCESS ? 0 : 1;
}
