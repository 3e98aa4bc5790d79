#include "mta/smtpd.h"
#include "conf/params.h"
#include "mta/router.h"
#include "mta/netlist.h"
#include "mta/smtp_check.h"
#include "mta/tls.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "proto/dns.h"
#include "lib/log.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

static int has_word(const struct conf *c, const char *param, const char *word)
{
	size_t n;
	const char *const *l = conf_list(c, param, &n);
	for (size_t i = 0; i < n; i++)
		if (!ascii_strcasecmp(l[i], word))
			return 1;
	return 0;
}

static void fill_cfg(struct smtpd_cfg *cfg, const struct conf *c, int have_tls)
{
	cfg->myhostname = conf_str(c, "myhostname");
	cfg->banner = conf_str(c, "smtpd_banner");
	cfg->qdir = conf_str(c, "queue_directory");
	cfg->message_size_limit = conf_size(c, "message_size_limit");
	cfg->recipient_limit = conf_int(c, "smtpd_recipient_limit");
	cfg->max_line_bytes = conf_int(c, "smtpd_max_line_length");
	const char *bare = conf_str(c, "smtpd_forbid_bare_newline");
	cfg->bare = (!ascii_strcasecmp(bare, "normalize") || !ascii_strcasecmp(bare, "no"))
			    ? SMTP_BARE_NORMALIZE : SMTP_BARE_REJECT;
	cfg->soft_error_limit = conf_int(c, "smtpd_soft_error_limit");
	cfg->hard_error_limit = conf_int(c, "smtpd_hard_error_limit");
	cfg->error_sleep_ms = conf_time_s(c, "smtpd_error_sleep_time") * 1000;
	cfg->timeout_s = conf_time_s(c, "smtpd_timeout");
	cfg->peername_lookup = conf_bool(c, "smtpd_peername_lookup");
	cfg->disable_vrfy = conf_bool(c, "disable_vrfy_command");
	cfg->delay_reject = conf_bool(c, "smtpd_delay_reject");
	cfg->helo_required = conf_bool(c, "smtpd_helo_required");
	cfg->reject_unlisted_recipient = conf_bool(c, "smtpd_reject_unlisted_recipient");
	const char *lvl = conf_str(c, "smtpd_tls_security_level");
	cfg->tls_level = !*lvl ? (have_tls ? 1 : 0) : !ascii_strcasecmp(lvl, "encrypt") ? 2
			 : !ascii_strcasecmp(lvl, "may") ? 1 : 0;
	cfg->tls_received_header = conf_bool(c, "smtpd_tls_received_header");
	cfg->graceful_stop_s = conf_time_s(c, "graceful_stop_timeout");
	cfg->sasl_enable = conf_bool(c, "smtpd_sasl_auth_enable");
	cfg->submission_sasl_enable = conf_bool(c, "submission_sasl_auth_enable");
	lvl = conf_str(c, "submission_tls_security_level");
	cfg->submission_tls_level = !ascii_strcasecmp(lvl, "encrypt") ? 2 : !ascii_strcasecmp(lvl, "may") ? 1 : 0;
	if (!have_tls)
		cfg->submission_tls_level = 0;
	cfg->tls_auth_only = conf_bool(c, "smtpd_tls_auth_only");
	cfg->broken_sasl_clients = conf_bool(c, "broken_sasl_auth_clients");
	cfg->sasl_noplaintext = has_word(c, "smtpd_sasl_security_options", "noplaintext");
	cfg->sasl_tls_noplaintext = has_word(c, "smtpd_sasl_tls_security_options", "noplaintext");
	cfg->sasl_type = conf_str(c, "smtpd_sasl_type");
	cfg->sasl_path = conf_str(c, "smtpd_sasl_path");
	cfg->sasl_timeout_s = conf_time_s(c, "smtpd_sasl_timeout");
}

/* SMTP AUTH and the submission listeners: what must be there for them to work */
static int check_sasl(const struct conf *c, int have_tls, char **err_out)
{
	size_t nsub, nsmtps;
	conf_list(c, "submission_listen", &nsub);
	conf_list(c, "smtps_listen", &nsmtps);
	int used = conf_bool(c, "smtpd_sasl_auth_enable") ||
		   ((nsub || nsmtps) && conf_bool(c, "submission_sasl_auth_enable"));
	if (used && !*conf_str(c, "smtpd_sasl_path")) {
		*err_out = xasprintf("%s: SMTP AUTH is enabled but smtpd_sasl_path is empty (a passwd-file, or "
				     "Dovecot's auth-client socket with smtpd_sasl_type = dovecot)",
				     conf_where(c, "smtpd_sasl_path"));
		return -1;
	}
	if (nsmtps && !have_tls) {
		*err_out = xasprintf("%s: smtps_listen needs smtpd_tls_cert_file and smtpd_tls_key_file",
				     conf_where(c, "smtps_listen"));
		return -1;
	}
	const char *lvl = conf_str(c, "submission_tls_security_level");
	if (ascii_strcasecmp(lvl, "none") && ascii_strcasecmp(lvl, "may") && ascii_strcasecmp(lvl, "encrypt")) {
		*err_out = xasprintf("%s: bad value for submission_tls_security_level: \"%s\" (expected none, may or encrypt)",
				     conf_where(c, "submission_tls_security_level"), lvl);
		return -1;
	}
	if (nsub && !have_tls && !ascii_strcasecmp(lvl, "encrypt")) {
		*err_out = xasprintf("%s: submission_listen with submission_tls_security_level = encrypt needs "
				     "smtpd_tls_cert_file and smtpd_tls_key_file", conf_where(c, "submission_listen"));
		return -1;
	}
	return 0;
}

/* Everything that depends on the config, built aside so a failure changes nothing. */
struct built {
	struct mc_conf *milters;
	size_t nmilters;
	struct mc_conf *local_milters;
	size_t nlocal_milters;
	struct conf *conf;
	struct table_set *tables;
	struct router *router;
	struct netlist *mynetworks;
	struct dns_resolver *dns;
	SSL_CTX *tls;
};

static void built_free(struct built *b)
{
	mc_conf_free(b->milters, b->nmilters);
	mc_conf_free(b->local_milters, b->nlocal_milters);
	if (b->tls)
		SSL_CTX_free(b->tls);
	dns_free(&b->dns);
	netlist_free(&b->mynetworks);
	router_free(&b->router);
	table_set_free(&b->tables);
	conf_free(&b->conf);
}

static int build(struct built *b, const char *path, struct event_base *base, char **err_out)
/* base == NULL: no resolver (validation, or a reload that keeps the running one) */
{
	memset(b, 0, sizeof *b);
	b->conf = conf_load(path, params_all, NULL, err_out);
	if (!b->conf)
		return -1;
	size_t nw;
	const char *const *w = conf_warnings(b->conf, &nw);
	for (size_t i = 0; i < nw; i++)
		log_event(NULL, "warning: %s", w[i]);
	b->tables = table_set_new();
	b->router = router_new(b->conf, b->tables, err_out);
	if (!b->router)
		goto fail;
	size_t n;
	const char *const *nets = conf_list(b->conf, "mynetworks", &n);
	char *e = NULL;
	b->mynetworks = netlist_new(nets, n, b->tables, &e);
	if (!b->mynetworks) {
		*err_out = xasprintf("%s: mynetworks: %s", conf_where(b->conf, "mynetworks"), e);
		free(e);
		goto fail;
	}
	/* restriction lists: names, arguments and tables */
	struct smtpd tmp = { 0 };
	tmp.conf = b->conf;
	tmp.tables = b->tables;
	for (int i = 0; mta_restriction_params[i]; i++)
		if (check_validate_list(&tmp, mta_restriction_params[i], err_out) < 0)
			goto fail;
	b->milters = mc_conf_parse(b->conf, "smtpd_milters", &b->nmilters, err_out);
	if (!b->milters && conf_list(b->conf, "smtpd_milters", &nw) && nw)
		goto fail;
	b->local_milters = mc_conf_parse(b->conf, "non_smtpd_milters", &b->nlocal_milters, err_out);
	if (!b->local_milters && conf_list(b->conf, "non_smtpd_milters", &nw) && nw)
		goto fail;
	const char *cert = conf_str(b->conf, "smtpd_tls_cert_file");
	const char *key = conf_str(b->conf, "smtpd_tls_key_file");
	const char *lvl = conf_str(b->conf, "smtpd_tls_security_level");
	if (*lvl && ascii_strcasecmp(lvl, "none") && ascii_strcasecmp(lvl, "may") && ascii_strcasecmp(lvl, "encrypt")) {
		*err_out = xasprintf("%s: bad value for smtpd_tls_security_level: \"%s\" (expected none, may or encrypt)",
				     conf_where(b->conf, "smtpd_tls_security_level"), lvl);
		goto fail;
	}
	if (*cert || *key) {
		b->tls = tls_server_ctx(cert, *key ? key : cert, &e);
		if (!b->tls) {
			*err_out = xasprintf("%s: %s", conf_where(b->conf, "smtpd_tls_cert_file"), e);
			free(e);
			goto fail;
		}
	} else if (!ascii_strcasecmp(lvl, "may") || !ascii_strcasecmp(lvl, "encrypt")) {
		*err_out = xasprintf("%s: smtpd_tls_security_level = %s needs smtpd_tls_cert_file and smtpd_tls_key_file",
				     conf_where(b->conf, "smtpd_tls_security_level"), lvl);
		goto fail;
	}
	if (check_sasl(b->conf, b->tls != NULL, err_out) < 0)
		goto fail;
	if (base) {
		size_t ns;
		const char *const *servers = conf_list(b->conf, "dns_servers", &ns);
		struct dns_opts o = { servers, ns, (int)conf_time_s(b->conf, "dns_timeout") * 1000,
				      (int)conf_int(b->conf, "dns_tries") };
		b->dns = dns_new(base, &o, &e);
		if (!b->dns) {
			*err_out = xasprintf("%s: dns_servers: %s", conf_where(b->conf, "dns_servers"), e);
			free(e);
			goto fail;
		}
	}
	return 0;
fail:
	built_free(b);
	return -1;
}

int smtpd_load(struct smtpd *s, const char *path, char **err_out)
{
	struct built b;
	/*
	 * The resolver survives reloads: sessions may be waiting on it (their
	 * look-ups would never finish if it were freed). XXX: dns_servers,
	 * dns_timeout and dns_tries take effect at restart.
	 */
	if (build(&b, path, s->dns ? NULL : s->base, err_out) < 0)
		return -1;
	struct dns_resolver *keep = s->dns;
	s->dns = NULL;
	smtpd_free_config(s);
	s->conf = b.conf;
	s->tables = b.tables;
	s->router = b.router;
	s->mynetworks = b.mynetworks;
	s->dns = keep ? keep : b.dns;
	s->tls = b.tls;
	s->milters = b.milters;
	s->nmilters = b.nmilters;
	s->local_milters = b.local_milters;
	s->nlocal_milters = b.nlocal_milters;
	static const char *const macro_params[7] = {
		"milter_connect_macros", "milter_helo_macros", "milter_mail_macros", "milter_rcpt_macros",
		"milter_data_macros", "milter_end_of_data_macros", "milter_end_of_header_macros",
	};
	for (int i = 0; i < 7; i++)
		s->milter_macros.list[i] = conf_str(s->conf, macro_params[i]);
	fill_cfg(&s->cfg, s->conf, s->tls != NULL);
	if (s->conf_path != path) {
		free(s->conf_path);
		s->conf_path = xstrdup(path);
	}
	return 0;
}

void smtpd_free_config(struct smtpd *s)
{
	/* SSL_CTX is reference counted: sessions in TLS keep theirs alive */
	struct built b = { s->milters, s->nmilters, s->local_milters, s->nlocal_milters, s->conf, s->tables,
			   s->router, s->mynetworks, s->dns, s->tls };
	built_free(&b);
	s->milters = NULL;
	s->nmilters = 0;
	s->local_milters = NULL;
	s->nlocal_milters = 0;
	s->conf = NULL;
	s->tables = NULL;
	s->router = NULL;
	s->mynetworks = NULL;
	s->dns = NULL;
	s->tls = NULL;
}

int smtpd_validate(const char *path, char **err_out)
{
	struct built b;
	if (build(&b, path, NULL, err_out) < 0)
		return -1;
	built_free(&b);
	return 0;
}
