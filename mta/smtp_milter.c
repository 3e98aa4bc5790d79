/* smtp_milter: the milter stages of an SMTP session (glue to milter_client.c). */
#include "mta/smtp_session_int.h"

static void milter_stage_done(void *arg, const struct mc_result *r);

static void env_del_rcpt(struct queue_envelope *env, const char *addr)
{
	size_t o = 0;
	for (size_t i = 0; i < env->nrcpt; i++) {
		struct queue_rcpt *r = &env->rcpt[i];
		if (!ascii_strcasecmp(r->addr, addr) || (r->orig && !ascii_strcasecmp(r->orig, addr))) {
			free(r->addr);
			free(r->orig);
			free(r->orcpt);
			continue;
		}
		env->rcpt[o++] = *r;
	}
	env->nrcpt = o;
}

/* Apply what the milters changed, then commit (or discard / hold). */
static void eom_apply(struct smtp_session *s)
{
	struct mc_message *m = &s->mmsg;
	const char *id = queue_writer_id(s->writer);
	if (m->changed) {
		struct sbuf out;
		sbuf_init(&out);
		mc_message_render(m, &out);
		if (queue_writer_rewind(s->writer) < 0 || queue_writer_write(s->writer, out.buf, out.len) < 0)
			s->write_error = 1;
		s->data_bytes = (long long)out.len;
		sbuf_free(&out);
	}
	for (size_t i = 0; i < m->nrcpt_ops; i++) {
		if (m->rcpt_ops[i].add) {
			int dup = 0;	/* duplicate recipients are dropped, as cleanup(8) does */
			for (size_t k = 0; k < s->env.nrcpt; k++)
				if (!ascii_strcasecmp(s->env.rcpt[k].addr, m->rcpt_ops[i].addr))
					dup = 1;
			if (!dup)
				queue_envelope_add_rcpt(&s->env, m->rcpt_ops[i].addr, NULL, 0, NULL);
			log_event(id, "milter added recipient <%s>%s", m->rcpt_ops[i].addr, dup ? " (duplicate)" : "");
		} else {
			env_del_rcpt(&s->env, m->rcpt_ops[i].addr);
			log_event(id, "milter deleted recipient <%s>", m->rcpt_ops[i].addr);
		}
	}
	if (m->new_sender) {
		log_event(id, "milter changed sender from <%s> to <%s>", s->sender, m->new_sender);
		free(s->sender);
		s->sender = xstrdup(m->new_sender);
	}
	if (m->quarantine) {
		s->fx.hold = 1;
		log_event(id, "milter quarantine: %s", m->quarantine);
	}
	if (s->env.nrcpt == 0 && !s->fx.discard) {
		log_event(id, "discard: no recipients left after the milters");
		s->fx.discard = s->milter_discard = 1;
	}
	mc_message_free(m);
	if (s->write_error) {
		sess_out(s, "451 4.3.0 Error: queue file write error");
		sess_count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 0);
		sess_txn_reset(s);
		return;
	}
	sess_commit_message(s);
}

static void eom_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	s->busy = 0;
	if (s->dead) {
		mc_message_free(&s->mmsg);
		sess_free(s);
		return;
	}
	if (r->verdict == MC_CONTINUE || r->verdict == MC_DISCARD) {
		if (r->verdict == MC_DISCARD)
			s->fx.discard = s->milter_discard = 1;
		eom_apply(s);
	} else {
		mc_message_free(&s->mmsg);
		if (r->verdict == MC_SHUTDOWN) {
			sess_out(s, "421 4.7.0 %s %s", sess_hostname(s), r->text);
			s->closing = 1;
			sess_txn_reset(s);
		} else {
			struct check_reply cr;
			cr.code = r->code;
			snprintf(cr.dsn, sizeof cr.dsn, "%s", r->dsn);
			snprintf(cr.text, sizeof cr.text, "%s", r->text);
			s->milter_reject = 1;
			sess_reject_cmd(s, &cr);	/* PEND_EOD: counts, resets the transaction */
			s->milter_reject = 0;
		}
	}
	if (!s->busy) {
		if (!s->closing)
			bufferevent_enable(s->bev, EV_READ);
		sess_process(s);
	}
}

void smtp_milter_eom(struct smtp_session *s)
{
	free(s->pending_rcpt);
	s->pending_rcpt = NULL;
	if (!mc_active(s->mc)) {
		sess_commit_message(s);
		return;
	}
	long long size = queue_writer_size(s->writer);
	char *buf = xmalloc((size_t)size + 1);
	if (queue_writer_pread(s->writer, 0, buf, (size_t)size) != (long)size) {
		free(buf);
		sess_out(s, "451 4.3.0 Error: queue file read error");
		sess_count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 0);
		sess_txn_reset(s);
		return;
	}
	mc_message_parse(&s->mmsg, buf, (size_t)size);
	free(buf);
	mc_set_qid(s->mc, queue_writer_id(s->writer));
	s->busy = 1;
	bufferevent_disable(s->bev, EV_READ);
	mc_eom(s->mc, &s->mmsg, eom_done, s);
}

static char **split_args(const char *a, size_t *n)
{
	return a && *a ? conf_split_list(a, n) : (*n = 0, NULL);
}

/* Hand the command to the milters; sess_finish_accept or a reject follows in milter_stage_done. */
int smtp_milter_stage(struct smtp_session *s)
{
	if (!mc_active(s->mc))
		return 0;
	size_t n = 0;
	char **args = NULL;
	switch (s->pend) {
	case PEND_HELO:
		mc_helo(s->mc, s->helo ? s->helo : "", milter_stage_done, s);
		break;
	case PEND_MAIL:
		args = split_args(s->mail_args, &n);
		mc_mail(s->mc, s->sender, (const char *const *)args, n, milter_stage_done, s);
		break;
	case PEND_RCPT:
		args = split_args(s->rcpt_args, &n);
		mc_rcpt(s->mc, s->pending_rcpt, (const char *const *)args, n, milter_stage_done, s);
		break;
	case PEND_DATA:
	case PEND_BDAT:
		mc_data(s->mc, milter_stage_done, s);
		break;
	default:
		return 0;
	}
	if (args)
		conf_list_free(args, n);
	s->busy = 1;
	bufferevent_disable(s->bev, EV_READ);
	return 1;
}

static void resume_after_milter(struct smtp_session *s)
{
	s->busy = 0;
	if (s->dead) {
		sess_free(s);
		return;
	}
	if (!s->closing)
		bufferevent_enable(s->bev, EV_READ);
	sess_process(s);
}

static void milter_stage_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	if (s->dead) {
		s->busy = 0;
		sess_free(s);
		return;
	}
	if (r->verdict == MC_CONTINUE || r->verdict == MC_DISCARD) {
		if (r->verdict == MC_DISCARD)
			s->fx.discard = s->milter_discard = 1;
		sess_finish_accept(s);
	} else if (r->verdict == MC_SHUTDOWN) {
		sess_out(s, "421 4.7.0 %s %s", sess_hostname(s), r->text);
		s->closing = 1;
	} else {
		struct check_reply cr;
		cr.code = r->code;
		snprintf(cr.dsn, sizeof cr.dsn, "%s", r->dsn);
		snprintf(cr.text, sizeof cr.text, "%s", r->text);
		s->milter_reject = 1;
		sess_reject_cmd(s, &cr);
		s->milter_reject = 0;
	}
	resume_after_milter(s);
}

void smtp_milter_unknown_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	(void)r;
	s->busy = 0;
	if (s->dead) {
		sess_free(s);
		return;
	}
	sess_reply_error(s, 502, "5.5.2", "Error: command not recognized");
	sess_count(s, SMTP_VERB_UNKNOWN, 0);
	if (!s->busy) {
		bufferevent_enable(s->bev, EV_READ);
		sess_process(s);
	}
}

static const char *domain_of(const char *a, char *buf, size_t len)
{
	const char *at = a ? strrchr(a, '@') : NULL;
	snprintf(buf, len, "%s", at ? at + 1 : "");
	return buf;
}

/* Postfix's milter macros (MILTER_README); NULL when not available yet. */
const char *smtp_milter_macro(void *arg, const char *name)
{
	struct smtp_session *s = arg;
	const struct conf *c = s->srv->conf;
	SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
	if (!strcmp(name, "j"))
		return sess_hostname(s);
	if (!strcmp(name, "_")) {
		snprintf(s->m_underscore, sizeof s->m_underscore, "%s [%s]", s->name, s->addr);
		return s->m_underscore;
	}
	if (!strcmp(name, "v"))
		return conf_str(c, "milter_macro_v");
	if (!strcmp(name, "{daemon_name}"))
		return conf_str(c, "milter_macro_daemon_name");
	if (!strcmp(name, "{daemon_addr}"))
		return s->server_addr;
	if (!strcmp(name, "{daemon_port}"))
		return s->server_port;
	if (!strcmp(name, "{client_addr}"))
		return s->addr;
	if (!strcmp(name, "{client_port}"))
		return s->port;
	if (!strcmp(name, "{client_name}"))
		return s->name;
	if (!strcmp(name, "{client_ptr}"))
		return s->rev_name;
	if (!strcmp(name, "{client_connections}"))
		return "0";
	if (ssl && !strcmp(name, "{tls_version}"))
		return SSL_get_version(ssl);
	if (ssl && !strcmp(name, "{cipher}"))
		return SSL_get_cipher_name(ssl);
	if (ssl && !strcmp(name, "{cipher_bits}")) {
		snprintf(s->m_bits, sizeof s->m_bits, "%d", SSL_get_cipher_bits(ssl, NULL));
		return s->m_bits;
	}
	if (!strcmp(name, "i"))
		return s->writer ? queue_writer_id(s->writer) : NULL;
	if (s->sender && !strcmp(name, "{mail_addr}"))
		return s->sender;
	if (s->sender && !strcmp(name, "{mail_host}"))
		return domain_of(s->sender, s->m_mail_host, sizeof s->m_mail_host);
	if (s->sender && !strcmp(name, "{mail_mailer}"))
		return "smtp";
	if (s->pending_rcpt && !strcmp(name, "{rcpt_addr}"))
		return s->pending_rcpt;
	if (s->pending_rcpt && !strcmp(name, "{rcpt_host}"))
		return domain_of(s->pending_rcpt, s->m_rcpt_host, sizeof s->m_rcpt_host);
	if (s->pending_rcpt && !strcmp(name, "{rcpt_mailer}"))
		return s->pending_relay ? "smtp" : "virtual";
	if (s->sasl_username && !strcmp(name, "{auth_type}"))
		return s->sasl_method;
	if (s->sasl_username && !strcmp(name, "{auth_authen}"))
		return s->sasl_username;
	if (s->sasl_sender && !strcmp(name, "{auth_author}"))
		return s->sasl_sender;
	return NULL;	/* {cert_*}: not available */
}

void smtp_milter_connect_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	if (r->verdict == MC_REJECT || r->verdict == MC_TEMPFAIL) {
		/* Postfix: the greeting goes sess_out; every later command gets the reply */
		s->conn_reply.code = r->code;
		snprintf(s->conn_reply.dsn, sizeof s->conn_reply.dsn, "%s", r->dsn);
		snprintf(s->conn_reply.text, sizeof s->conn_reply.text, "%s", r->text);
	} else if (r->verdict == MC_SHUTDOWN) {
		sess_out(s, "421 4.7.0 %s %s", sess_hostname(s), r->text);
		s->greeted = 1;
		s->closing = 1;
		bufferevent_enable(s->bev, EV_WRITE);
		sess_maybe_close(s);
		return;
	} else if (r->verdict == MC_DISCARD) {
		s->discard_all = s->milter_discard = 1;
	}
	sess_send_greeting(s);
}
