/*
 * sluice-dkim: DKIM signing and verifying milter (issue 4).
 * Thin: options, configuration generations (SIGHUP), libmilter callbacks
 * that hand the message to dkim_msg.c and apply its outcome.
 */
#include "milters/dkim/dkim_cfg.h"
#include "milters/dkim/dkim_keys.h"
#include "milters/dkim/dkim_msg.h"
#include "milters/dkim/dkim_pubkey.h"
#include "conf/conf.h"
#include "conf/params.h"
#include "conf/params_dkim.h"
#include "lib/sdnotify.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/milterd.h"
#include "lib/privfile.h"
#include "lib/util.h"
#include "lib/version.h"

#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *config_file = "/etc/sluice/sluice.conf";
static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dkim_cfg *current;
static struct conf *current_conf;

static struct dkim_cfg *cfg_get(void)
{
	pthread_mutex_lock(&cfg_lock);
	struct dkim_cfg *c = dkim_cfg_ref(current);
	pthread_mutex_unlock(&cfg_lock);
	return c;
}

/* load - conf + one configuration generation; NULL with *err_out. */
static struct dkim_cfg *load(struct conf **conf_out, char **err_out)
{
	struct conf *c = conf_load(config_file, params_all, NULL, err_out);
	if (c == NULL)
		return NULL;
	struct dkim_cfg *cfg = dkim_cfg_new(c, NULL, err_out);
	if (cfg == NULL) {
		conf_free(&c);
		return NULL;
	}
	*conf_out = c;
	return cfg;
}

/*
 * enter_base_dir - relative paths in the config are relative to its base
 * directory (conf.h): work there, and keep the config file's absolute name
 * for reloads.
 */
static void enter_base_dir(void)
{
	char *err = NULL;
	struct conf *c = conf_load(config_file, params_all, NULL, &err);
	if (c == NULL)
		fatal("%s", err);
	char *abs = realpath(config_file, NULL);
	if (abs == NULL)
		fatal("%s: %s", config_file, strerror(errno));
	if (conf_enter_base_dir(c, &err) < 0)
		fatal("%s", err);
	conf_free(&c);
	config_file = abs;
}

/*
 * The root helper (lib/privfile) opens only what the config names: the
 * key files listed in a KeyTable too. Runs in the helper, as root.
 */
static void key_table_files(const struct conf *c, struct privfile_names *names)
{
	const char *spec = conf_str(c, "dkim_key_table");
	const char *path = strncmp(spec, "file:", 5) == 0 ? spec + 5 : spec;
	char *text, *err = NULL;
	size_t len;
	if (*path == 0 || conf_read_file(path, 64u * 1024 * 1024, &text, &len, &err) < 0) {
		free(err);
		return;
	}
	struct dkim_tab_line *lines;
	long n = dkim_keys_parse_table(text, len, path, &lines, &err);
	free(text);
	if (n < 0) {
		free(err);
		return;
	}
	for (long i = 0; i < n; i++) {
		char *dom, *sel, *data;
		const char *why;
		if (dkim_keys_parse_keyvalue(lines[i].value, &dom, &sel, &data, &why) < 0)
			continue;
		if (data[0] == '/' || data[0] == '.')	/* a file, not the key itself */
			privfile_names_add(names, data);
		free(dom);
		free(sel);
		free(data);
	}
	dkim_keys_lines_free(lines, (size_t)n);
}

/* SIGHUP (lib/milterd's signal thread): a new configuration generation */
static void reload(void)
{
	char *err = NULL;
	struct conf *c = NULL;
	struct dkim_cfg *cfg = load(&c, &err);
	if (cfg == NULL) {
		log_event(NULL, "dkim: reload failed, keeping the old configuration: %s", err);
		free(err);
		return;
	}
	pthread_mutex_lock(&cfg_lock);
	struct dkim_cfg *old = current;
	struct conf *oldc = current_conf;
	current = cfg;
	current_conf = c;
	pthread_mutex_unlock(&cfg_lock);
	dkim_cfg_unref(&old);	/* messages in flight keep their own reference */
	(void)oldc;	/* XXX: conf kept: strings may still be borrowed; small, per reload */
	log_event(NULL, "dkim: configuration reloaded (%zu signing keys)",
		  dkim_keyset_count(cfg->keys));
}

/* stopped - the stop line (lib/milterd waited for the messages in flight) */
static void stopped(int sig, int unfinished)
{
	(void)sig;
	(void)unfinished;
	size_t hits, misses;
	dkim_pubkey_stats(&hits, &misses);
	log_event(NULL, "dkim: stopped; public keys decoded %zu, served from cache %zu", misses, hits);
}

static const struct milterd_signal_ops signal_ops = { "dkim", reload, stopped };

/* ---- per connection ---- */

struct conn {
	char addr[INET6_ADDRSTRLEN + 8];
	int internal;
	int leadspc;		/* MTA passes header values with their leading space */
	unsigned long proto;	/* negotiated SMFIP_* steps */
	struct dkim_msg *msg;
	char *sender, *sasl;	/* the transaction's MAIL FROM (no <>), AUTH identity; for the log */
};

/*
 * done - the callback result for a stage: SMFIS_NOREPLY where the MTA
 * agreed that we do not reply (SMFIP_NR_*), or libmilter logs "milter
 * claimed not to reply ... but did anyway" for every such event.
 */
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
		dkim_msg_free(&c->msg);
		milterd_inflight_leave();
	}
	free(c->sender), free(c->sasl);
	c->sender = c->sasl = NULL;
}

static const char *qid_of(SMFICTX *ctx)
{
	const char *q = smfi_getsymval(ctx, "i");
	return q && *q ? q : NULL;
}

static int listen_inet;	/* dkim_socket is inet: */

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
	unsigned long want = SMFIP_NOHELO | SMFIP_NORCPT | SMFIP_NOUNKNOWN | SMFIP_NODATA |
			     SMFIP_NR_HELO | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN |
			     SMFIP_NR_HDR | SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_EOH |
			     SMFIP_NR_BODY | SMFIP_HDR_LEADSPC;
	/*
	 * Over TCP we answer the DATA event. Postfix's smtpd sends the DATA
	 * macros (never answered) and then hands the socket to cleanup, whose
	 * first header write waits under Nagle (Postfix sets no TCP_NODELAY on
	 * milter sockets) until that macro packet is acknowledged: our delayed
	 * ACK, ~40 ms per message. Our reply to DATA acknowledges it at once.
	 * Unix sockets have no Nagle: skip the event there.
	 */
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
	(void)host;
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
	struct dkim_cfg *cfg = cfg_get();
	/* No address (local submission, "unknown"): like OpenDKIM, treat as local. */
	c->internal = c->addr[0] == 0 || dkim_hosts_match(cfg->internal, c->addr);
	dkim_cfg_unref(&cfg);
	return done(c, SMFIP_NR_CONN);
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	(void)argv;
	struct conn *c = conn_of(ctx);
	if (c == NULL)
		return SMFIS_CONTINUE;	/* no negotiation seen: nothing agreed */
	msg_end(c);	/* a new transaction: nothing of the last one stays */
	struct dkim_cfg *cfg = cfg_get();
	const char *auth = smfi_getsymval(ctx, "{auth_authen}");
	int sign = c->internal || (cfg->sign_authenticated && auth && *auth);
	if (sign && dkim_keyset_count(cfg->keys) == 0)
		sign = 0;	/* nothing to sign with: verify instead */
	c->msg = dkim_msg_new(cfg, qid_of(ctx), sign);
	if (argv && argv[0]) {
		const char *a = argv[0];
		size_t l = strlen(a);
		c->sender = a[0] == '<' && l >= 2 && a[l - 1] == '>' ? xstrndup(a + 1, l - 2) : xstrdup(a);
	}
	c->sasl = auth && *auth ? xstrdup(auth) : NULL;
	if (c->msg)
		milterd_inflight_enter();
	dkim_cfg_unref(&cfg);
	return done(c, SMFIP_NR_MAIL);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || c->msg == NULL)
		return done(c, SMFIP_NR_HDR);
	if (c->leadspc) {
		dkim_msg_header(c->msg, name, value);
	} else {
		char *v = xasprintf(" %s", value);
		dkim_msg_header(c->msg, name, v);
		free(v);
	}
	return done(c, SMFIP_NR_HDR);
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c && c->msg) {
		dkim_msg_set_qid(c->msg, qid_of(ctx));
		dkim_msg_eoh(c->msg);
	}
	return done(c, SMFIP_NR_EOH);
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct conn *c = conn_of(ctx);
	if (c && c->msg)
		dkim_msg_body(c->msg, buf, len);
	return done(c, SMFIP_NR_BODY);
}

/* hv - header value as the MTA wants it: without our leading space unless negotiated. */
static char *hv(struct conn *c, char *v)
{
	return (!c->leadspc && v[0] == ' ') ? v + 1 : v;
}

/*
 * log_decision - the per-message verdict line: dkim_msg's text, then issue
 * 13's common keys (docs/EVENTS.md "sluice-dkim"): filter, client_ip,
 * sender ("" for the null sender), sasl_username (when known), result, the
 * stable code dkim_RESULT (as reason_code= when the text has a reason=
 * already) and ms (milliseconds spent at end of message).
 */
static void log_decision(const struct conn *c, const char *qid, const struct dkim_outcome *out,
			 double secs)
{
	const char *text = out->log ? out->log : "milter=dkim";
	const char *res = out->result ? out->result : "none";
	struct sbuf b;
	sbuf_init(&b);
	sbuf_printf(&b, "%s filter=dkim", text);
	log_kv(&b, "client_ip", c->addr);
	log_kv(&b, "sender", c->sender ? c->sender : "");
	if (c->sasl)
		log_kv(&b, "sasl_username", c->sasl);
	sbuf_printf(&b, " result=%s %s=dkim_", res, strstr(text, " reason=") ? "reason_code" : "reason");
	for (const char *p = res; *p; p++)
		sbuf_addc(&b, *p == '-' ? '_' : *p);
	sbuf_printf(&b, " ms=%lld", (long long)(secs * 1000));
	log_event(qid, "%s", b.buf);
	sbuf_free(&b);
}

static sfsistat on_eom(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || c->msg == NULL)
		return SMFIS_CONTINUE;
	double t0 = metrics_now_s();
	dkim_msg_set_qid(c->msg, qid_of(ctx));
	struct dkim_outcome out;
	dkim_msg_eom(c->msg, &out);
	const char *qid = qid_of(ctx) ? qid_of(ctx) : "NOQUEUE";
	for (size_t i = 0; i < out.n_ar_delete; i++)
		smfi_chgheader(ctx, "Authentication-Results", (int)out.ar_delete[i], NULL);
	if (out.ar_value)
		smfi_insheader(ctx, 0, "Authentication-Results", hv(c, out.ar_value));
	for (size_t i = out.nsig_values; i > 0; i--)
		smfi_insheader(ctx, 0, "DKIM-Signature", hv(c, out.sig_values[i - 1]));
	sfsistat rc = SMFIS_CONTINUE;
	switch (out.action) {
	case DKIM_ACT_ACCEPT:
		break;
	case DKIM_ACT_REJECT:
	case DKIM_ACT_TEMPFAIL:
		smfi_setreply(ctx, (char *)out.reply_code, (char *)out.reply_xcode,
			      (char *)out.reply_text);
		rc = out.action == DKIM_ACT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
		break;
	case DKIM_ACT_QUARANTINE:
		smfi_quarantine(ctx, "DKIM verification");
		break;
	case DKIM_ACT_DISCARD:
		rc = SMFIS_DISCARD;
		break;
	}
	log_decision(c, qid, &out, metrics_now_s() - t0);
	metrics_filter_decision(out.result ? out.result : "none", dkim_action_name(out.action),
				metrics_now_s() - t0);
	dkim_outcome_clear(&out);
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
		free(c);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

static void usage(void)
{
	fprintf(stderr, "usage: sluice-dkim -c sluice.conf [-f] [-n]\n");
	exit(2);
}

/* --help (usage on stdout) and --version, anywhere before "--"; exit 0 */
static void help_or_version(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help")) {
			fputs("usage: sluice-dkim -c sluice.conf [-f] [-n]\n"
			      "DKIM signing and verifying milter on dkim_socket.\n"
			      "  -c FILE    sluice.conf (dkim_* settings)\n"
			      "  -f         stay in the foreground\n"
			      "  -n         check the configuration and exit 0 or 1\n"
			      "  --help, --version\n", stdout);
			exit(0);
		}
		if (!strcmp(argv[i], "--version")) {
			printf("sluice-dkim (sluice) %s\n", SLUICE_VERSION);
			exit(0);
		}
	}
}

int main(int argc, char **argv)
{
	int foreground = 0, check = 0, ch;
	help_or_version(argc, argv);
	while ((ch = getopt(argc, argv, "c:fn")) != -1) {
		switch (ch) {
		case 'c': config_file = optarg; break;
		case 'f': foreground = 1; break;
		case 'n': check = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	log_set_stderr_only("sluice-dkim");
	enter_base_dir();
	char *err = NULL;
	struct conf *c = NULL;
	struct dkim_cfg *cfg = load(&c, &err);
	if (cfg == NULL)
		fatal("%s", err);
	size_t nw;
	const char *const *w = conf_warnings(c, &nw);
	for (size_t i = 0; i < nw; i++)
		log_event(NULL, "warning: %s", w[i]);
	const char *why;
	char *conn = dkim_cfg_milter_conn(conf_str(c, "dkim_socket"), &why);
	listen_inet = conn && strncmp(conn, "inet", 4) == 0;
	if (conn == NULL)
		fatal("%s: dkim_socket: %s", conf_where(c, "dkim_socket"), why);
	if (check) {
		printf("%s: dkim configuration ok (%zu signing keys, socket %s)\n", config_file,
		       dkim_keyset_count(cfg->keys), conn);
		free(conn);
		dkim_cfg_unref(&cfg);
		conf_free(&c);
		return 0;
	}
	current = cfg;
	current_conf = c;
	const char *lerr;
	if (log_init_conf("sluice-dkim", c, &lerr) < 0)
		fatal("maillog_file %s: %s", conf_str(c, "maillog_file"), lerr);
	signal(SIGPIPE, SIG_IGN);

	struct smfiDesc desc = {
		.xxfi_name = "sluice-dkim",
		.xxfi_version = SMFI_VERSION,
		.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
		.xxfi_connect = on_connect,
		.xxfi_envfrom = on_envfrom,
		.xxfi_header = on_header,
		.xxfi_eoh = on_eoh,
		.xxfi_body = on_body,
		.xxfi_eom = on_eom,
		.xxfi_abort = on_abort,
		.xxfi_close = on_close,
		.xxfi_negotiate = on_negotiate,
	};
	milterd_listen(c, "dkim", &desc, conn);
	int metrics_fd = metrics_conf_listen(c, "dkim_metrics_listen");	/* before the privilege drop */
	static const struct conf_param *const own_tables[] = { common_params, dkim_params, NULL };
	struct privfile_opts priv = { .config_file = config_file, .tables = own_tables,
				    .more_paths = key_table_files };
	milterd_privileges(c, "dkim", foreground, &priv);

	/* before any other thread exists: HUP reloads, TERM/INT stop (lib/milterd.h) */
	milterd_signals_start(&signal_ops);
	/* metrics from a thread of their own: libmilter owns the main thread */
	struct metrics *metrics = NULL;
	struct metrics_http *metrics_srv = NULL;
	if (metrics_fd >= 0) {
		char *merr = NULL;
		metrics = metrics_new(0, 1);
		metrics_filter_init(metrics, "dkim", "messages");
		if (!(metrics_srv = metrics_http_start(metrics, NULL, metrics_fd, &merr)))
			fatal("dkim_metrics_listen: %s", merr);
	}
	log_event(NULL, "dkim: listening on %s (%zu signing keys)", conn,
		  dkim_keyset_count(cfg->keys));
	free(conn);
	sdnotify("READY=1");	/* Type=notify units (sluice-dkim.service) */
	int rc = smfi_main();	/* returns only on a libmilter failure: a stop exits */
	log_event(NULL, "dkim: milter loop ended (%s)", rc == MI_SUCCESS ? "ok" : "failure");
	metrics_http_stop(&metrics_srv);
	/* libmilter's worker threads may still be finishing: the registry stays mapped */
	return rc == MI_SUCCESS ? 0 : 1;
}
