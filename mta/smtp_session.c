#include "mta/smtp_session_int.h"
#include "lib/metrics.h"
#include "mta/mta_metrics.h"

#define READ_CHUNK (64 * 1024)
#define MAX_HDR_LINE 998

static const char *pend_verb(int pend)
{
	switch (pend) {
	case PEND_HELO: return "HELO";
	case PEND_MAIL: return "MAIL";
	case PEND_RCPT: return "RCPT";
	case PEND_DATA: return "DATA";
	case PEND_BDAT: return "BDAT";
	default: return "END-OF-MESSAGE";
	}
}

static void checks_continue(struct smtp_session *s);

/* ------------------------------------------------------------------ output */

const char *sess_hostname(struct smtp_session *s)
{
	return s->srv->cfg.myhostname;
}

void sess_out(struct smtp_session *s, const char *fmt, ...)
{
	if (s->dead)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *line = xvasprintf(fmt, ap);
	va_end(ap);
	struct evbuffer *o = bufferevent_get_output(s->bev);
	/* one add per reply line, so a TLS record never splits a line from its CRLF */
	evbuffer_add_printf(o, "%s\r\n", line);
	free(line);
}

static void sleep_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	struct evbuffer *o = bufferevent_get_output(s->bev);
	evbuffer_add(o, s->delayed.buf, s->delayed.len);
	sbuf_reset(&s->delayed);
	s->busy = 0;
	if (s->delayed_close) {
		s->closing = 1;
		sess_maybe_close(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	sess_process(s);
}

/*
 * sess_reply_error - a 4xx/5xx reply that counts as an error. Past
 * smtpd_soft_error_limit the reply waits smtpd_error_sleep_time; at
 * smtpd_hard_error_limit the client is told 421 and disconnected.
 */
void sess_reply_error(struct smtp_session *s, int code, const char *dsn, const char *text)
{
	s->errors++;
	char *line = xasprintf("%d %s %s\r\n", code, dsn, text);
	int hard = s->errors >= (unsigned)s->srv->cfg.hard_error_limit;
	if (s->errors > (unsigned)s->srv->cfg.soft_error_limit && s->srv->cfg.error_sleep_ms > 0) {
		sbuf_adds(&s->delayed, line);
		if (hard) {
			sbuf_printf(&s->delayed, "421 4.7.0 %s Error: too many errors\r\n", sess_hostname(s));
			log_event(NULL, "too many errors after %s from %s[%s]", s->last_cmd, s->name, s->addr);
			s->delayed_close = 1;
		}
		s->busy = 1;
		struct timeval tv = { s->srv->cfg.error_sleep_ms / 1000, (s->srv->cfg.error_sleep_ms % 1000) * 1000 };
		evtimer_add(s->sleep_ev, &tv);
	} else {
		evbuffer_add(bufferevent_get_output(s->bev), line, strlen(line));
		if (hard) {
			sess_out(s, "421 4.7.0 %s Error: too many errors", sess_hostname(s));
			log_event(NULL, "too many errors after %s from %s[%s]", s->last_cmd, s->name, s->addr);
			s->closing = 1;
		}
	}
	free(line);
}

static const char *qid(struct smtp_session *s)
{
	return s->writer ? queue_writer_id(s->writer) : "NOQUEUE";
}

static const char *proto_name(struct smtp_session *s)
{
	if (s->esmtp && s->sasl_username)	/* RFC 3848 */
		return s->tls ? "ESMTPSA" : "ESMTPA";
	return s->esmtp ? (s->tls ? "ESMTPS" : "ESMTP") : (s->tls ? "SMTPS" : "SMTP");
}

static void log_reject(struct smtp_session *s, const struct check_reply *r, int warning,
		       const char *verb, const char *rcpt)
{
	struct sbuf b;
	sbuf_init(&b);
	sbuf_printf(&b, "%s: %s from %s[%s]: %d %s %s;",
		    warning ? "reject_warning" : s->milter_reject ? "milter-reject" : "reject", verb, s->name,
		    s->addr, r->code, r->dsn, r->text);
	if (s->sender)
		sbuf_printf(&b, " from=<%s>", s->sender);
	if (rcpt)
		sbuf_printf(&b, " to=<%s>", rcpt);
	sbuf_printf(&b, " proto=%s", proto_name(s));
	if (s->helo)
		sbuf_printf(&b, " helo=<%s>", s->helo);
	/* Postfix's cleanup logs the rejects after the end of the message */
	log_service_event(strcmp(verb, "END-OF-MESSAGE") ? NULL : "cleanup", qid(s), "%s", b.buf);
	sbuf_free(&b);
	if (!warning)
		mta_metrics_reject(verb, r->dsn, r->text, s->milter_reject);
}

static void ctx_log_reject(void *arg, const struct check_reply *r, int warning)
{
	struct smtp_session *s = arg;
	log_reject(s, r, warning, pend_verb(s->pend), s->pending_rcpt);
}

/* ------------------------------------------------------------ transaction */

void sess_txn_reset(struct smtp_session *s)
{
	/*
	 * policy "instance": one value for all requests of one message, and
	 * never the same for two messages. Policy servers (policyd-spf,
	 * postfwd) cache their verdict per instance, so a value that repeats
	 * hands one message the last one's answer: a session allocated where
	 * the last one was must not repeat it (the session address and a
	 * per-session count did). The pid tells forked receivers apart, the
	 * counter the messages of one process; the time guards a reused pid.
	 */
	static _Atomic unsigned long long instance_seq;
	snprintf(s->instance, sizeof s->instance, "%x.%llx.%llx", (unsigned)getpid(),
		 (unsigned long long)time(NULL), ++instance_seq);
	if (s->eod_start_s > 0) {	/* the final reply to a message's data went out */
		mta_metrics_end_of_data(metrics_now_s() - s->eod_start_s);
		s->eod_start_s = 0;
	}
	if (s->in_mail || s->writer)
		mc_abort(s->mc);
	s->in_mail = 0;
	s->milter_discard = s->discard_all;
	free(s->sender);
	s->sender = NULL;
	free(s->mail_args);
	s->mail_args = NULL;
	free(s->sasl_sender);
	s->sasl_sender = NULL;
	free(s->envid);
	free(s->ret);
	s->envid = s->ret = NULL;
	s->mail_size = -1;
	s->body_8bit = s->smtputf8 = 0;
	queue_writer_abort(&s->writer);
	queue_envelope_free(&s->env);
	memset(&s->env, 0, sizeof s->env);
	s->nrcpt_accepted = 0;
	s->in_data = s->bdat = s->bdat_refuse = s->bdat_last = 0;
	s->data_bytes = 0;
	s->too_big = s->write_error = 0;
	s->in_headers = 0;
	sbuf_reset(&s->hdr_line);
	free(s->message_id);
	s->message_id = NULL;
	check_effects_reset(&s->fx);
}

void sess_count(struct smtp_session *s, enum smtp_verb v, int ok)
{
	s->counts[v].total++;
	if (ok)
		s->counts[v].ok++;
	s->commands++;
}

/* ---------------------------------------------------------- the checks */

static void ctx_refresh(struct smtp_session *s)
{
	struct check_ctx *c = &s->ctx;
	c->srv = s->srv;
	c->router = s->srv->router;
	c->client_addr = s->addr;
	c->client_name = s->name;
	c->client_rev_name = s->rev_name;
	c->client_name_tempfail = s->name_tempfail;
	c->helo = s->helo;
	c->sender = s->sender;
	c->recipient = s->pending_rcpt;
	c->sasl_authenticated = s->sasl_username != NULL;
	c->sasl_method = s->sasl_method;
	c->sasl_username = s->sasl_username;
	c->sasl_sender = s->sasl_sender;
	c->submission = s->submission;
	c->unauth_pipelining = s->early_talker || s->pending_unauth;
	c->dns = s->dns;
	c->fx = &s->fx;
	c->cmd = &s->cmd;
	c->protocol_state = pend_verb(s->pend);
	c->protocol_name = proto_name(s);
	c->queue_id = s->writer ? queue_writer_id(s->writer) : "";
	c->client_port = s->port;
	c->server_address = s->server_addr;
	c->server_port = s->server_port;
	c->instance = s->instance;
	c->recipient_count = (unsigned long)s->nrcpt_accepted;
	c->size = s->pend == PEND_EOD ? s->data_bytes : s->mail_size;
	SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
	c->encryption_protocol = ssl ? SSL_get_version(ssl) : "";
	c->encryption_cipher = ssl ? SSL_get_cipher_name(ssl) : "";
	c->encryption_keysize = ssl ? SSL_get_cipher_bits(ssl, NULL) : 0;
	c->resume = (void (*)(void *))checks_continue;
	c->resume_arg = s;
	c->log_reject = ctx_log_reject;
}

static void accept_cmd(struct smtp_session *s);
void sess_reject_cmd(struct smtp_session *s, const struct check_reply *r);

/* checks_start - run the restriction lists stages[0..n) for the command in s->pend. */
static void checks_start(struct smtp_session *s, const enum check_stage *st, int n)
{
	memcpy(s->stages, st, (size_t)n * sizeof *st);
	s->nstages = n;
	s->cur_stage = 0;
	s->run.active = 0;
	check_cmd_reset(&s->cmd);
	checks_continue(s);
}

static void checks_continue(struct smtp_session *s)
{
	int was_busy = s->busy;
	struct check_reply r;
	while (s->cur_stage < s->nstages) {
		if (!s->run.active)
			check_run_start(&s->run, s->stages[s->cur_stage]);
		ctx_refresh(s);
		enum check_verdict v = check_list_run(&s->ctx, &s->run, &r);
		if (v == CHECK_PENDING) {
			s->busy = 1;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		if (v == CHECK_REJECT) {
			s->busy = 0;
			sess_reject_cmd(s, &r);
			goto resume;
		}
		s->cur_stage++;
	}
	s->busy = 0;
	if (check_cmd_final(&s->cmd, &r))
		sess_reject_cmd(s, &r);	/* DEFER_IF_PERMIT */
	else
		accept_cmd(s);
resume:
	if (was_busy && !s->busy && !s->dead) {
		bufferevent_enable(s->bev, EV_READ);
		sess_process(s);
	}
}

/* ---------------------------------------------------------------- helpers */

static void format_date(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	char zone[16];
	strftime(zone, sizeof zone, "%Z", &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
	size_t l = strlen(buf);
	snprintf(buf + l, len - l, " (%s)", zone);
}

static void write_content(struct smtp_session *s, const char *p, size_t n)
{
	if (s->too_big || !s->writer)
		return;
	if (s->srv->cfg.message_size_limit > 0 &&
	    s->data_bytes + (long long)n > s->srv->cfg.message_size_limit) {
		s->too_big = 1;
		return;
	}
	s->data_bytes += (long long)n;
	if (queue_writer_write(s->writer, p, n) < 0)
		s->write_error = 1;
}

/* Watch the header section for Message-ID (logged like Postfix's cleanup). */
static void scan_headers(struct smtp_session *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n && s->in_headers; i++) {
		if (p[i] != '\n') {
			if (s->hdr_line.len < MAX_HDR_LINE)
				sbuf_addc(&s->hdr_line, p[i]);
			continue;
		}
		const char *l = s->hdr_line.buf ? s->hdr_line.buf : "";
		if (s->hdr_line.len == 0) {
			s->in_headers = 0;
		} else if (!s->message_id && ascii_strncasecmp(l, "message-id:", 11) == 0) {
			const char *v = l + 11;
			while (*v == ' ' || *v == '\t')
				v++;
			s->message_id = xstrdup(v);
		}
		sbuf_reset(&s->hdr_line);
	}
}

static void begin_content(struct smtp_session *s)
{
	char date[96];
	format_date(date, sizeof date);
	struct sbuf h;
	sbuf_init(&h);
	if (s->fx.prepend.len)
		sbuf_add(&h, s->fx.prepend.buf, s->fx.prepend.len);
	if (s->local) {
		/* local submission, as Postfix writes it for the sendmail command */
		sbuf_printf(&h, "Received: by %s (sluice, from userid %ld)\n\tid %s; %s\n", sess_hostname(s), s->local_uid,
			    queue_writer_id(s->writer), date);
		goto written;
	}
	sbuf_printf(&h, "Received: from %s (%s [%s])\n", s->helo ? s->helo : s->name, s->name, s->addr);
	if (s->tls && s->srv->cfg.tls_received_header) {
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
		int alg = 0;
		int bits = ssl ? SSL_get_cipher_bits(ssl, &alg) : 0;
		sbuf_printf(&h, "\t(using %s with cipher %s (%d/%d bits))\n", ssl ? SSL_get_version(ssl) : "TLS",
			    ssl ? SSL_get_cipher_name(ssl) : "unknown", bits, alg);
		sbuf_adds(&h, "\t(No client certificate requested)\n");
	}
	sbuf_printf(&h, "\tby %s (sluice) with %s id %s", sess_hostname(s), proto_name(s), queue_writer_id(s->writer));
	if (s->env.nrcpt == 1)
		sbuf_printf(&h, "\n\tfor <%s>", s->env.rcpt[0].orig ? s->env.rcpt[0].orig : s->env.rcpt[0].addr);
	sbuf_printf(&h, "; %s\n", date);
written:
	if (queue_writer_write(s->writer, h.buf, h.len) < 0)
		s->write_error = 1;
	sbuf_free(&h);
	s->in_headers = 1;
	s->data_bytes = 0;
	s->in_data = 1;
}

/* ----------------------------------------------------------- commit path */

static void notify_qmgr(struct smtp_session *s, const char *id)
{
	if (s->srv->notify_fd < 0)
		return;
	char line[80];
	int n = snprintf(line, sizeof line, "%s\n", id);
	if (write(s->srv->notify_fd, line, (size_t)n) != n)
		log_event(id, "warning: cannot notify the queue manager: %s (picked up at the next queue scan)",
			  strerror(errno));
}

static void commit_done(void *arg, int ok, const char *err)
{
	struct smtp_session *s = arg;
	enum smtp_verb v = s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA;
	s->commit_pending = 0;
	if (ok && s->fx.hold) {
		if (queue_move(s->srv->cfg.qdir, s->committed_id, QUEUE_ACTIVE, QUEUE_HOLD, 0) == 0)
			log_service_event("cleanup", s->committed_id,
					  "hold: END-OF-MESSAGE from %s[%s]: <%s>: message placed on hold",
					  s->name, s->addr, s->sender);
		else
			notify_qmgr(s, s->committed_id);
	} else if (ok) {
		notify_qmgr(s, s->committed_id);
	}
	if (s->dead) {
		sess_free(s);
		return;
	}
	s->busy = 0;
	if (!ok) {
		log_event(NULL, "warning: queue file write error: %s", err ? err : "unknown");
		sess_out(s, "451 4.3.0 Error: queue file write error");
		sess_count(s, v, 0);
	} else {
		sess_out(s, "250 2.0.0 Ok: queued as %s", s->committed_id);
		mta_metrics_received();
		sess_count(s, v, 1);
	}
	sess_txn_reset(s);
	bufferevent_enable(s->bev, EV_READ);
	sess_process(s);
}

static void run_checks(struct smtp_session *s, int pend, const enum check_stage *st, int n);

static void finish_message(struct smtp_session *s)
{
	enum smtp_verb v = s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA;
	s->in_data = 0;
	s->eod_start_s = metrics_now_s();	/* observed at the final reply (sess_txn_reset) */
	if (s->too_big) {
		log_event(qid(s), "reject: %s from %s[%s]: 552 5.3.4 Message size exceeds fixed limit; from=<%s> proto=%s%s%s%s",
			  smtp_verb_name(v), s->name, s->addr, s->sender, proto_name(s), s->helo ? " helo=<" : "",
			  s->helo ? s->helo : "", s->helo ? ">" : "");
		sess_reply_error(s, 552, "5.3.4", "Message size exceeds fixed limit");
		mta_metrics_reject(smtp_verb_name(v), "5.3.4", "Message size exceeds fixed limit", 0);
		sess_count(s, v, 0);
		sess_txn_reset(s);
		return;
	}
	if (s->write_error) {
		sess_out(s, "451 4.3.0 Error: queue file write error");
		sess_count(s, v, 0);
		sess_txn_reset(s);
		return;
	}
	/* smtpd_end_of_data_restrictions */
	static const enum check_stage eod[] = { CHECK_EOD };
	s->pending_rcpt = NULL;
	run_checks(s, PEND_EOD, eod, 1);	/* accept_cmd/reject_cmd go on from there */
}

void sess_commit_message(struct smtp_session *s)
{
	const char *id = queue_writer_id(s->writer);
	if (s->message_id)
		log_service_event("cleanup", id, "message-id=%s", s->message_id);
	if (s->fx.discard || s->discard_all) {
		if (s->milter_discard)	/* Postfix's cleanup line for a milter's DISCARD */
			log_service_event("cleanup", id,
					  "milter-discard: END-OF-MESSAGE from %s[%s]: milter triggers DISCARD "
					  "action; from=<%s> to=<%s> proto=%s helo=<%s>",
					  s->name, s->addr, s->sender,
					  s->env.nrcpt ? s->env.rcpt[0].addr : "",
					  s->esmtp ? "ESMTP" : "SMTP", s->helo ? s->helo : "");
		else
			log_service_event("cleanup", id,
					  "discard: END-OF-MESSAGE from %s[%s]: <%s>: message discarded by an access table",
					  s->name, s->addr, s->sender);
		sess_out(s, "250 2.0.0 Ok: queued as %s", id);
		sess_count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 1);
		sess_txn_reset(s);
		return;
	}
	snprintf(s->committed_id, sizeof s->committed_id, "%s", id);
	s->env.sender = xstrdup(s->sender);
	s->env.arrival = s->arrival;
	s->env.client_name = xstrdup(s->name);
	s->env.client_addr = xstrdup(s->addr);
	s->env.helo = s->helo ? xstrdup(s->helo) : NULL;
	s->env.proto = xstrdup(proto_name(s));
	s->env.envid = s->envid ? xstrdup(s->envid) : NULL;
	s->env.ret = s->ret ? xstrdup(s->ret) : NULL;
	s->env.body_8bit = s->body_8bit;
	s->env.smtputf8 = s->smtputf8;
	s->busy = 1;
	s->commit_pending = 1;
	bufferevent_disable(s->bev, EV_READ);
	struct queue_writer *w = s->writer;
	s->writer = NULL;
	queue_writer_commit(s->srv->committer, w, &s->env, commit_done, s);
}

/* ------------------------------------------------------- command phases */

static void run_checks(struct smtp_session *s, int pend, const enum check_stage *st, int n)
{
	s->pend = pend;
	if (s->local)
		n = 0;	/* local submission: no smtpd restrictions, as with Postfix's pickup */
	checks_start(s, st, n);
}

/* ------------------------------------------------------ milters at end of data */





static void free_finals(struct smtp_session *s)
{
	for (size_t i = 0; i < s->npending_finals; i++)
		free(s->pending_finals[i]);
	free(s->pending_finals);
	s->pending_finals = NULL;
	s->npending_finals = 0;
}

/* Router check of the recipient: 0 go on (finals stored), -1 rejected (reply sent). */
static int validate_rcpt(struct smtp_session *s)
{
	char *why = NULL;
	const char *rcpt = s->pending_rcpt;
	free_finals(s);
	int r = router_expand(s->srv->router, rcpt, &s->pending_finals, &s->npending_finals, &why);
	if (r == 1 && s->srv->cfg.reject_unlisted_recipient) {
		struct check_reply rep = { 550, "5.1.1", "" };
		rep.code = (int)conf_int(s->srv->conf, "unknown_virtual_mailbox_reject_code");
		snprintf(rep.text, sizeof rep.text, "<%s>: Recipient address rejected: %s", rcpt, why);
		free(why);
		sess_reject_cmd(s, &rep);
		return -1;
	}
	if (r == -1) {
		struct check_reply rep = { 451, "4.3.0", "" };
		snprintf(rep.text, sizeof rep.text, "<%s>: Temporary lookup failure: %s", rcpt, why);
		free(why);
		sess_reject_cmd(s, &rep);
		return -1;
	}
	free(why);
	s->pending_relay = r != 0;	/* not a local domain: relay permitted by the restrictions */
	return 0;
}

static void finish_rcpt(struct smtp_session *s)
{
	const char *rcpt = s->pending_rcpt;
	if (!s->writer) {
		char *err = NULL;
		s->writer = queue_writer_open(s->srv->cfg.qdir, &err);
		if (!s->writer) {
			log_event(NULL, "warning: cannot create queue file: %s", err);
			free(err);
			sess_out(s, "451 4.3.0 Error: queue file write error");
			sess_count(s, SMTP_VERB_RCPT, 0);
			free_finals(s);
			return;
		}
		s->arrival = wall_time();
		if (s->local)
			log_service_event("pickup", queue_writer_id(s->writer), "uid=%ld from=<%s>",
					  s->local_uid, s->sender);
		else if (s->sasl_username)
			log_event(queue_writer_id(s->writer), "client=%s[%s], sasl_method=%s, sasl_username=%s", s->name,
				  s->addr, s->sasl_method, s->sasl_username);
		else
			log_event(queue_writer_id(s->writer), "client=%s[%s]", s->name, s->addr);
		/* the policy servers were asked before the queue id existed: join them */
		if (s->fx.policy_asked)
			log_event(queue_writer_id(s->writer), "policy instance=%s", s->instance);
		mc_set_qid(s->mc, queue_writer_id(s->writer));
	}
	if (!s->pending_relay) {
		for (size_t i = 0; i < s->npending_finals; i++)
			queue_envelope_add_rcpt(&s->env, s->pending_finals[i], rcpt, s->pending_notify, s->pending_orcpt);
	} else {
		queue_envelope_add_rcpt(&s->env, rcpt, rcpt, s->pending_notify, s->pending_orcpt);
	}
	free_finals(s);
	s->nrcpt_accepted++;
	sess_out(s, "250 2.1.5 Ok");
	sess_count(s, SMTP_VERB_RCPT, 1);
}

/* smtpd_tls_security_level, or submission_tls_security_level on a submission port */
static int tls_level(struct smtp_session *s)
{
	if (s->submission && !s->tls)
		return s->srv->cfg.submission_tls_level;
	return s->srv->cfg.tls_level;
}

/* AUTH configured for this listener at all */
static int sasl_enabled(struct smtp_session *s)
{
	if (s->local)
		return 0;
	return s->submission ? s->srv->cfg.submission_sasl_enable : s->srv->cfg.sasl_enable;
}

/* AUTH usable now: enabled, TLS if smtpd_tls_auth_only, plaintext mechanisms allowed */
int sess_sasl_offered(struct smtp_session *s)
{
	if (!sasl_enabled(s))
		return 0;
	if (!s->tls && s->srv->cfg.tls_auth_only)
		return 0;
	return !(s->tls ? s->srv->cfg.sasl_tls_noplaintext : s->srv->cfg.sasl_noplaintext);
}

static void helo_reply(struct smtp_session *s)
{
	if (!s->esmtp) {
		sess_out(s, "250 %s", sess_hostname(s));
		return;
	}
	char size[32] = "";
	if (s->srv->cfg.message_size_limit > 0)
		snprintf(size, sizeof size, " %lld", s->srv->cfg.message_size_limit);
	sess_out(s, "250-%s", sess_hostname(s));
	sess_out(s, "250-PIPELINING");
	sess_out(s, "250-SIZE%s", size);
	if (!s->srv->cfg.disable_vrfy)
		sess_out(s, "250-VRFY");
	if (s->srv->tls && !s->tls && tls_level(s) > 0)
		sess_out(s, "250-STARTTLS");
	if (sess_sasl_offered(s)) {
		sess_out(s, "250-AUTH PLAIN LOGIN");
		if (s->srv->cfg.broken_sasl_clients)
			sess_out(s, "250-AUTH=PLAIN LOGIN");
	}
	sess_out(s, "250-ENHANCEDSTATUSCODES");
	sess_out(s, "250-8BITMIME");
	sess_out(s, "250-DSN");
	sess_out(s, "250-SMTPUTF8");
	sess_out(s, "250 CHUNKING");
}


/* The positive outcome of a command, once restrictions and milters agree. */
void sess_finish_accept(struct smtp_session *s)
{
	switch (s->pend) {
	case PEND_HELO:
		helo_reply(s);
		sess_count(s, s->esmtp ? SMTP_VERB_EHLO : SMTP_VERB_HELO, 1);
		break;
	case PEND_MAIL:
		s->in_mail = 1;
		sess_out(s, "250 2.1.0 Ok");
		sess_count(s, SMTP_VERB_MAIL, 1);
		break;
	case PEND_RCPT:
		finish_rcpt(s);
		break;
	case PEND_DATA:
		sess_out(s, "354 End data with <CR><LF>.<CR><LF>");
		begin_content(s);
		smtp_parser_begin_data(s->parser);
		break;
	case PEND_BDAT:
		begin_content(s);
		s->bdat = 1;
		smtp_parser_begin_bdat(s->parser, s->bdat_chunk, s->bdat_last);
		break;
	case PEND_EOD:
		smtp_milter_eom(s);
		return;	/* keeps pending state until the milters and the commit are done */
	}
	free(s->pending_rcpt);
	s->pending_rcpt = NULL;
	s->pending_unauth = 0;
}




static void accept_cmd(struct smtp_session *s)
{
	if (s->pend == PEND_RCPT && validate_rcpt(s) < 0)
		return;
	if (s->pend != PEND_EOD && smtp_milter_stage(s))
		return;
	sess_finish_accept(s);
}



void sess_reject_cmd(struct smtp_session *s, const struct check_reply *r)
{
	const char *rcpt = s->pending_rcpt;
	log_reject(s, r, 0, pend_verb(s->pend), rcpt);
	switch (s->pend) {
	case PEND_HELO:
		free(s->helo);
		s->helo = NULL;
		sess_count(s, s->esmtp ? SMTP_VERB_EHLO : SMTP_VERB_HELO, 0);
		break;
	case PEND_MAIL:
		free(s->sender);
		s->sender = NULL;
		sess_count(s, SMTP_VERB_MAIL, 0);
		break;
	case PEND_RCPT:
		free_finals(s);
		sess_count(s, SMTP_VERB_RCPT, 0);
		break;
	case PEND_DATA:
		sess_count(s, SMTP_VERB_DATA, 0);
		break;
	case PEND_BDAT:
		/* the chunk must still be read; the reply goes out after it */
		s->bdat_refuse = 1;
		s->bdat_reply = *r;
		smtp_parser_begin_bdat(s->parser, s->bdat_chunk, s->bdat_last);
		goto out;
	case PEND_EOD:
		sess_count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 0);
		sess_txn_reset(s);
		break;
	}
	sess_reply_error(s, r->code, r->dsn, r->text);
out:
	free(s->pending_rcpt);
	s->pending_rcpt = NULL;
	s->pending_unauth = 0;
}

/* --------------------------------------------------------- command handlers */

static int tls_required(struct smtp_session *s)
{
	return tls_level(s) == 2 && !s->tls;
}

static void cmd_helo(struct smtp_session *s, const struct smtp_cmd *c)
{
	sess_txn_reset(s);
	free(s->helo);
	s->helo = xstrdup(c->arg);
	s->esmtp = c->verb == SMTP_VERB_EHLO;
	/* smtpd_helo_restrictions run here only with smtpd_delay_reject = no */
	static const enum check_stage st[] = { CHECK_HELO };
	run_checks(s, PEND_HELO, st, s->srv->cfg.delay_reject ? 0 : 1);
}

/* the ESMTP parameters of a MAIL/RCPT line: everything after the path */
static char *esmtp_args(const char *line)
{
	const char *gt = line ? strrchr(line, '>') : NULL;
	if (!gt)
		return NULL;
	gt++;
	while (*gt == ' ')
		gt++;
	return *gt ? xstrdup(gt) : NULL;
}

static void cmd_mail(struct smtp_session *s, const struct smtp_cmd *c)
{
	if (tls_required(s)) {
		sess_reply_error(s, 530, "5.7.0", "Must issue a STARTTLS command first");
		sess_count(s, c->verb, 0);
		return;
	}
	if (s->srv->cfg.helo_required && !s->helo) {
		sess_reply_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		sess_count(s, c->verb, 0);
		return;
	}
	if (s->submission && sasl_enabled(s) && !s->sasl_username) {
		/* what Postfix's master.cf example does with smtpd_client_restrictions */
		sess_reply_error(s, 530, "5.7.0", "Authentication required");
		sess_count(s, c->verb, 0);
		return;
	}
	if (s->in_mail) {
		sess_reply_error(s, 503, "5.5.1", "Error: nested MAIL command");
		sess_count(s, c->verb, 0);
		return;
	}
	if (c->path.has_utf8 && !c->mail.smtputf8) {
		sess_reply_error(s, 553, "5.6.7", "Must declare SMTPUTF8 to send UTF8 address");
		sess_count(s, c->verb, 0);
		return;
	}
	if (s->srv->cfg.message_size_limit > 0 && c->mail.size > s->srv->cfg.message_size_limit) {
		sess_reply_error(s, 552, "5.3.4", "Message size exceeds fixed limit");
		sess_count(s, c->verb, 0);
		return;
	}
	sess_txn_reset(s);
	s->sender = xstrdup(c->path.is_null ? "" : c->path.addr);
	s->mail_size = c->mail.size;
	s->body_8bit = c->mail.body == SMTP_BODY_8BITMIME;
	s->smtputf8 = c->mail.smtputf8;
	s->envid = c->mail.envid ? xstrdup(c->mail.envid) : NULL;
	s->ret = c->mail.ret ? xstrdup(c->mail.ret) : NULL;
	s->mail_args = esmtp_args(c->line);
	/* RFC 4954 5: AUTH= is trusted only from an authenticated client */
	if (s->sasl_username && c->mail.auth && strcmp(c->mail.auth, "<>") != 0)
		s->sasl_sender = xstrdup(c->mail.auth);
	static const enum check_stage st[] = { CHECK_CLIENT, CHECK_SENDER };
	run_checks(s, PEND_MAIL, st, s->srv->cfg.delay_reject ? 0 : 2);
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_cmd *c)
{
	if (!s->in_mail) {
		sess_reply_error(s, 503, "5.5.1", "Error: need MAIL command");
		sess_count(s, c->verb, 0);
		return;
	}
	if (c->path.has_utf8 && !s->smtputf8) {
		sess_reply_error(s, 553, "5.6.7", "Must declare SMTPUTF8 to send UTF8 address");
		sess_count(s, c->verb, 0);
		return;
	}
	if (s->nrcpt_accepted >= (size_t)s->srv->cfg.recipient_limit) {
		sess_out(s, "452 4.5.3 Error: too many recipients");
		sess_count(s, c->verb, 0);
		return;
	}
	s->pending_rcpt = xstrdup(c->path.addr);
	free(s->rcpt_args);
	s->rcpt_args = esmtp_args(c->line);
	s->pending_notify = c->rcpt.notify;
	free(s->pending_orcpt);
	s->pending_orcpt = c->rcpt.orcpt ? xstrdup(c->rcpt.orcpt) : NULL;
	if (s->srv->cfg.delay_reject) {
		static const enum check_stage st[] = { CHECK_CLIENT, CHECK_HELO, CHECK_SENDER, CHECK_RELAY,
						       CHECK_RECIPIENT };
		run_checks(s, PEND_RCPT, st, 5);
	} else {
		static const enum check_stage st[] = { CHECK_RELAY, CHECK_RECIPIENT };
		run_checks(s, PEND_RCPT, st, 2);
	}
}

static int data_precheck(struct smtp_session *s, enum smtp_verb v)
{
	if (!s->in_mail) {
		sess_reply_error(s, 503, "5.5.1", "Error: need RCPT command");
		return -1;
	}
	if (s->nrcpt_accepted == 0) {
		sess_reply_error(s, 554, "5.5.1", "Error: no valid recipients");
		return -1;
	}
	if (v == SMTP_VERB_DATA && s->bdat) {
		sess_reply_error(s, 503, "5.5.1", "Error: DATA after BDAT");
		return -1;
	}
	return 0;
}

static void cmd_data(struct smtp_session *s, const struct smtp_cmd *c)
{
	/* anything after DATA in the same batch was sent before our 354 (RFC 2920) */
	s->pending_unauth = smtp_parser_buffered(s->parser) > 0;
	if (data_precheck(s, c->verb) < 0) {
		sess_count(s, c->verb, 0);
		return;
	}
	static const enum check_stage st[] = { CHECK_DATA };
	run_checks(s, PEND_DATA, st, 1);
}

static void cmd_bdat(struct smtp_session *s, const struct smtp_cmd *c)
{
	s->bdat_chunk = c->bdat_size;
	s->bdat_last = c->bdat_last;
	if (data_precheck(s, c->verb) < 0) {
		/* reply was sent (counts as error); the chunk is swallowed silently */
		s->bdat_refuse = 2;
		smtp_parser_begin_bdat(s->parser, c->bdat_size, c->bdat_last);
		sess_count(s, c->verb, 0);
		return;
	}
	if (s->bdat) {	/* later chunk of the same message */
		smtp_parser_begin_bdat(s->parser, c->bdat_size, c->bdat_last);
		return;
	}
	static const enum check_stage st[] = { CHECK_DATA };
	run_checks(s, PEND_BDAT, st, 1);
}

static void start_tls(struct smtp_session *s);

static void cmd_starttls(struct smtp_session *s, const struct smtp_cmd *c)
{
	if (!s->srv->tls || tls_level(s) == 0) {
		sess_reply_error(s, 502, "5.5.1", "Error: command not implemented");
		sess_count(s, c->verb, 0);
		return;
	}
	if (s->tls) {
		sess_reply_error(s, 554, "5.5.1", "Error: TLS already active");
		sess_count(s, c->verb, 0);
		return;
	}
	sess_out(s, "220 2.0.0 Ready to start TLS");
	sess_count(s, c->verb, 1);
	start_tls(s);
}


static void cmd_simple(struct smtp_session *s, const struct smtp_cmd *c)
{
	switch (c->verb) {
	case SMTP_VERB_RSET:
		sess_txn_reset(s);
		sess_out(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		sess_out(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		sess_out(s, "221 2.0.0 Bye");
		s->closing = 1;
		break;
	case SMTP_VERB_VRFY:
		if (s->srv->cfg.disable_vrfy) {
			sess_reply_error(s, 502, "5.5.1", "VRFY command is disabled");
			sess_count(s, c->verb, 0);
			return;
		}
		sess_out(s, "252 2.0.0 %s", c->arg);
		break;
	case SMTP_VERB_HELP:
		sess_out(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
		break;
	default:
		if (mc_active(s->mc)) {
			/* the milters see unknown commands too ('U'); the reply stays 502 */
			s->busy = 1;
			bufferevent_disable(s->bev, EV_READ);
			mc_unknown(s->mc, c->line, smtp_milter_unknown_done, s);
			return;
		}
		sess_reply_error(s, 502, "5.5.2", "Error: command not recognized");
		sess_count(s, c->verb, 0);
		return;
	}
	sess_count(s, c->verb, 1);
}

/* ------------------------------------------------------------ SMTP AUTH */










static void dispatch(struct smtp_session *s, const struct smtp_cmd *c)
{
	s->last_cmd = smtp_verb_name(c->verb);
	/* a client that did not say EHLO must not pipeline (RFC 2920) */
	s->pending_unauth = !s->esmtp && smtp_parser_buffered(s->parser) > 0;
	if (s->conn_reply.code && c->verb != SMTP_VERB_QUIT && c->verb != SMTP_VERB_NOOP &&
	    c->verb != SMTP_VERB_RSET) {
		/* a milter refused the connection */
		if (c->verb == SMTP_VERB_BDAT) {
			s->bdat_refuse = 2;	/* swallow the chunk, the reply is already sess_out */
			smtp_parser_begin_bdat(s->parser, c->bdat_size, c->bdat_last);
		}
		sess_reply_error(s, s->conn_reply.code, s->conn_reply.dsn, s->conn_reply.text);
		sess_count(s, c->verb, 0);
		return;
	}
	/* the command table; verbs without an entry are handled by cmd_simple */
	static void (*const handler[SMTP_VERB_AUTH + 1])(struct smtp_session *, const struct smtp_cmd *) = {
		[SMTP_VERB_HELO] = cmd_helo, [SMTP_VERB_EHLO] = cmd_helo, [SMTP_VERB_MAIL] = cmd_mail,
		[SMTP_VERB_RCPT] = cmd_rcpt, [SMTP_VERB_DATA] = cmd_data, [SMTP_VERB_BDAT] = cmd_bdat,
		[SMTP_VERB_STARTTLS] = cmd_starttls, [SMTP_VERB_AUTH] = smtp_auth_cmd,
	};
	void (*fn)(struct smtp_session *, const struct smtp_cmd *) =
		(unsigned)c->verb <= SMTP_VERB_AUTH && handler[c->verb] ? handler[c->verb] : cmd_simple;
	fn(s, c);
}

/* ------------------------------------------------------------ content items */

static void on_data_end(struct smtp_session *s, const struct smtp_item *it)
{
	if (!s->bdat && !s->bdat_refuse) {
		s->last_cmd = "END-OF-MESSAGE";
		s->pend = PEND_EOD;
		finish_message(s);
		return;
	}
	if (s->bdat_refuse) {
		if (s->bdat_refuse == 1) {
			sess_reply_error(s, s->bdat_reply.code, s->bdat_reply.dsn, s->bdat_reply.text);
			sess_count(s, SMTP_VERB_BDAT, 0);
			sess_txn_reset(s);
		}
		s->bdat_refuse = 0;
		return;
	}
	if (!it->bdat_last) {
		if (s->too_big)
			sess_out(s, "250 2.0.0 Ok: %llu bytes (message too big, will be refused)", s->bdat_chunk);
		else
			sess_out(s, "250 2.0.0 Ok: %llu bytes", s->bdat_chunk);
		sess_count(s, SMTP_VERB_BDAT, 1);
		return;
	}
	s->last_cmd = "END-OF-MESSAGE";
	s->pend = PEND_EOD;
	finish_message(s);
}

static void on_item(struct smtp_session *s, const struct smtp_item *it)
{
	switch (it->kind) {
	case SMTP_ITEM_COMMAND:
		dispatch(s, &it->cmd);
		break;
	case SMTP_ITEM_BAD_COMMAND:
		if (s->auth_state) {	/* a response line too long: the exchange is over */
			smtp_auth_reset(s);
			sess_count(s, SMTP_VERB_AUTH, 0);
		}
		sess_reply_error(s, it->code, it->dsn, it->text);
		s->commands++;
		break;
	case SMTP_ITEM_DATA:
		if (s->bdat_refuse || !s->in_data)
			break;
		if (s->in_headers)
			scan_headers(s, it->data, it->len);
		write_content(s, it->data, it->len);
		break;
	case SMTP_ITEM_DATA_END:
		on_data_end(s, it);
		break;
	case SMTP_ITEM_LINE:
		if (s->auth_state)
			smtp_auth_line(s, it->data, it->len);
		break;
	case SMTP_ITEM_FATAL:
		log_event(qid(s), "reject: %s from %s[%s]: %d %s %s; proto=%s%s%s%s", s->in_data ? "DATA content" : "command",
			  s->name, s->addr, it->code, it->dsn, it->text, proto_name(s), s->helo ? " helo=<" : "",
			  s->helo ? s->helo : "", s->helo ? ">" : "");
		sess_out(s, "%d %s %s %s", it->code, it->dsn, sess_hostname(s), it->text);
		mta_metrics_reject(s->in_data ? "DATA content" : "command", it->dsn, it->text, 0);
		sess_txn_reset(s);
		s->closing = 1;
		break;
	}
}

/* ------------------------------------------------------------------- I/O */

/* Bytes not yet on the wire: for TLS also what the filter passed down. */
static size_t unsent(struct smtp_session *s)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
	struct bufferevent *u = bufferevent_get_underlying(s->bev);
	if (u)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n;
}

static void close_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	if (unsent(s) == 0) {
		sess_free(s);
		return;
	}
	struct timeval tv = { 0, 10000 };
	evtimer_add(s->close_ev, &tv);
}

void sess_maybe_close(struct smtp_session *s)
{
	if (!s->closing || s->busy)
		return;
	bufferevent_disable(s->bev, EV_READ);
	if (unsent(s) == 0) {
		sess_free(s);
	} else if (s->tls && !evtimer_pending(s->close_ev, NULL)) {
		/* the filter's write callback fires before the ciphertext is sent */
		struct timeval tv = { 0, 10000 };
		evtimer_add(s->close_ev, &tv);
	}
}

void sess_process(struct smtp_session *s)
{
	while (!s->busy && !s->closing && !s->dead) {
		struct smtp_item it;
		enum smtp_next r = smtp_parser_next(s->parser, &it);
		if (r != SMTP_ITEM)
			break;
		on_item(s, &it);
	}
	sess_maybe_close(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	(void)bev;
	if (!s->greeted) {
		s->early_talker = 1;	/* talked before the greeting */
		bufferevent_disable(s->bev, EV_READ);
		return;
	}
	if (s->busy || s->closing)
		return;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char buf[READ_CHUNK];
	int n;
	while ((n = evbuffer_remove(in, buf, sizeof buf)) > 0)
		smtp_parser_feed(s->parser, buf, (size_t)n);
	sess_process(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct smtp_session *s = arg;
	if (s->closing && !s->busy)
		sess_maybe_close(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct smtp_session *s = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT) {
		log_event(NULL, "timeout after %s from %s[%s]", s->last_cmd, s->name, s->addr);
		sess_out(s, "421 4.4.2 %s Error: timeout exceeded", sess_hostname(s));
		s->closing = 1;
		sess_txn_reset(s);
		sess_maybe_close(s);
		return;
	}
	if (!s->closing)
		log_event(NULL, "lost connection after %s from %s[%s]", s->last_cmd, s->name, s->addr);
	if (s->commit_pending) {
		s->dead = 1;	/* freed by commit_done */
		return;
	}
	sess_free(s);
}

static void set_callbacks(struct smtp_session *s)
{
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	struct timeval tv = { s->srv->cfg.timeout_s, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_setwatermark(s->bev, EV_READ, 0, 256 * 1024);
}

static void start_tls(struct smtp_session *s)
{
	/* plaintext pipelined after STARTTLS is discarded (CVE-2011-0411) */
	smtp_parser_discard(s->parser);
	evbuffer_drain(bufferevent_get_input(s->bev), evbuffer_get_length(bufferevent_get_input(s->bev)));
	SSL *ssl = SSL_new(s->srv->tls);
	struct bufferevent *f = bufferevent_openssl_filter_new(s->srv->base, s->bev, ssl,
							       BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!f) {
		SSL_free(ssl);
		s->closing = 1;
		return;
	}
	s->bev = f;
	s->tls = 1;
	/* RFC 3207 4.2: forget everything learned before TLS */
	free(s->helo);
	s->helo = NULL;
	s->esmtp = 0;
	sess_txn_reset(s);
	smtp_auth_forget(s);
	set_callbacks(s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void log_disconnect(struct smtp_session *s)
{
	struct sbuf b;
	sbuf_init(&b);
	sbuf_printf(&b, "disconnect from %s[%s]", s->name, s->addr);
	static const enum smtp_verb order[] = { SMTP_VERB_EHLO, SMTP_VERB_HELO, SMTP_VERB_STARTTLS,
						SMTP_VERB_AUTH, SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_DATA,
						SMTP_VERB_BDAT, SMTP_VERB_RSET, SMTP_VERB_NOOP, SMTP_VERB_VRFY,
						SMTP_VERB_EXPN, SMTP_VERB_HELP, SMTP_VERB_QUIT, SMTP_VERB_UNKNOWN };
	unsigned ok = 0;
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		struct verb_count *c = &s->counts[order[i]];
		if (!c->total)
			continue;
		char lname[16];
		snprintf(lname, sizeof lname, "%s", smtp_verb_name(order[i]));
		ascii_lower(lname);
		if (c->ok == c->total)
			sbuf_printf(&b, " %s=%u", lname, c->total);
		else
			sbuf_printf(&b, " %s=%u/%u", lname, c->ok, c->total);
		ok += c->ok;
	}
	if (ok == s->commands)
		sbuf_printf(&b, " commands=%u", s->commands);
	else
		sbuf_printf(&b, " commands=%u/%u", ok, s->commands);
	log_event(NULL, "%s", b.buf);
	sbuf_free(&b);
}

void sess_free(struct smtp_session *s)
{
	if (s->commit_pending) {
		s->dead = 1;
		return;
	}
	log_disconnect(s);
	dns_cancel(s->name_req);
	smtp_auth_forget(s);
	check_dns_cache_free(&s->dns);
	check_cmd_reset(&s->cmd);
	sess_txn_reset(s);
	mc_session_free(&s->mc);
	mc_message_free(&s->mmsg);
	free(s->rcpt_args);
	free_finals(s);
	sbuf_free(&s->fx.prepend);
	sbuf_free(&s->hdr_line);
	sbuf_free(&s->delayed);
	smtp_parser_free(&s->parser);
	if (s->sleep_ev)
		event_free(s->sleep_ev);
	if (s->close_ev)
		event_free(s->close_ev);
	if (s->bev)
		bufferevent_free(s->bev);
	free(s->helo);
	free(s->pending_rcpt);
	free(s->pending_orcpt);
	s->srv->nsessions--;
	mta_metrics_session(-1);
	free(s);
}

/* ---------------------------------------------------- greeting and names */

/* ------------------------------------------------------------- milter glue */



void sess_send_greeting(struct smtp_session *s);


static void greet(struct smtp_session *s)
{
	log_event(NULL, "connect from %s[%s]", s->name, s->addr);
	const struct mc_conf *mconf = s->local ? s->srv->local_milters : s->srv->milters;
	size_t nm = s->local ? s->srv->nlocal_milters : s->srv->nmilters;
	if (nm) {
		s->mc = mc_session_new(s->srv->base, mconf, nm, &s->srv->milter_macros, smtp_milter_macro, s, "NOQUEUE");
		int v6 = strchr(s->addr, ':') != NULL;
		mc_connect(s->mc, s->name, v6 ? '6' : '4', (unsigned)atoi(s->port), s->addr, smtp_milter_connect_done, s);
		return;
	}
	sess_send_greeting(s);
}

void sess_send_greeting(struct smtp_session *s)
{
	sess_out(s, "220 %s", s->srv->cfg.banner);
	s->greeted = 1;
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)
		s->early_talker = 1;
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (s->early_talker)
		read_cb(s->bev, s);
}

static void forward_done(void *arg, const struct dns_answer *a)
{
	struct smtp_session *s = arg;
	s->name_req = NULL;
	int match = 0;
	unsigned char mine[16];
	int v6 = strchr(s->addr, ':') != NULL;
	inet_pton(v6 ? AF_INET6 : AF_INET, s->addr, mine);
	for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
		if (!v6 && a->rr[i].type == DNS_T_A && !memcmp(&a->rr[i].u.a, mine, 4))
			match = 1;
		if (v6 && a->rr[i].type == DNS_T_AAAA && !memcmp(&a->rr[i].u.aaaa, mine, 16))
			match = 1;
	}
	if (match)
		snprintf(s->name, sizeof s->name, "%s", s->rev_name);
	else if (dns_status_is_temp(a->status))
		s->name_tempfail = 1;
	greet(s);
}

static void ptr_done(void *arg, const struct dns_answer *a)
{
	struct smtp_session *s = arg;
	s->name_req = NULL;
	if (a->status == DNS_OK && a->n > 0 && a->rr[0].type == DNS_T_PTR &&
	    check_valid_hostname(a->rr[0].u.name)) {
		snprintf(s->rev_name, sizeof s->rev_name, "%s", a->rr[0].u.name);
		s->name_req = dns_query(s->srv->dns, s->rev_name, strchr(s->addr, ':') ? DNS_T_AAAA : DNS_T_A,
					forward_done, s);
		return;
	}
	if (dns_status_is_temp(a->status))
		s->name_tempfail = 1;
	greet(s);
}

void smtp_session_start(struct smtpd *srv, int fd, const struct sockaddr *sa, socklen_t salen, int kind)
{
	(void)salen;
	int local = kind == SMTPD_LISTEN_LOCAL;
	if (kind == SMTPD_LISTEN_SMTPS && !srv->tls) {
		close(fd);	/* smtpd_load refuses this; a reload may have dropped the certificate */
		return;
	}
	struct smtp_session *s = xcalloc(1, sizeof *s);
	s->srv = srv;
	s->local = local;
	s->submission = kind == SMTPD_LISTEN_SUBMISSION || kind == SMTPD_LISTEN_SMTPS;
	srv->nsessions++;
	mta_metrics_session(1);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, s->addr, sizeof s->addr);
		snprintf(s->port, sizeof s->port, "%u", ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], s->addr, sizeof s->addr);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, s->addr, sizeof s->addr);
		snprintf(s->port, sizeof s->port, "%u", ntohs(in6->sin6_port));
	} else {
		strcpy(s->addr, "127.0.0.1");
	}
	strcpy(s->name, "unknown");
	strcpy(s->rev_name, "unknown");
	s->last_cmd = "CONNECT";
	if (local) {
		struct ucred cred;
		socklen_t cl = sizeof cred;
		s->local_uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 ? (long)cred.uid : -1;
		strcpy(s->name, "localhost");
		strcpy(s->rev_name, "localhost");
	}
	struct sockaddr_storage me;
	socklen_t melen = sizeof me;
	if (getsockname(fd, (struct sockaddr *)&me, &melen) == 0) {
		if (me.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&me;
			inet_ntop(AF_INET, &in->sin_addr, s->server_addr, sizeof s->server_addr);
			snprintf(s->server_port, sizeof s->server_port, "%u", ntohs(in->sin_port));
		} else if (me.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&me;
			inet_ntop(AF_INET6, &in6->sin6_addr, s->server_addr, sizeof s->server_addr);
			snprintf(s->server_port, sizeof s->server_port, "%u", ntohs(in6->sin6_port));
		}
	}
	sess_txn_reset(s);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct smtp_parser_opts po = { (size_t)srv->cfg.max_line_bytes, srv->cfg.bare };
	s->parser = smtp_parser_new(&po);
	s->dns = check_dns_cache_new();
	s->sleep_ev = evtimer_new(srv->base, sleep_done, s);
	s->close_ev = evtimer_new(srv->base, close_poll, s);
	sbuf_init(&s->delayed);
	sbuf_init(&s->hdr_line);
	sbuf_init(&s->fx.prepend);
	s->mail_size = -1;
	if (kind == SMTPD_LISTEN_SMTPS) {
		/* RFC 8314 3.3: the TLS handshake first; the greeting waits in the output buffer */
		SSL *ssl = SSL_new(srv->tls);
		s->bev = ssl ? bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
							     BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (!s->bev) {
			if (ssl)
				SSL_free(ssl);
			s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
			s->closing = 1;
		}
		s->tls = !s->closing;
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	set_callbacks(s);
	bufferevent_enable(s->bev, EV_READ);
	if (!local && srv->cfg.peername_lookup && srv->dns) {
		char rev[128];
		if (dns_reverse_name(s->addr, rev, sizeof rev) == 0) {
			s->name_req = dns_query(srv->dns, rev, DNS_T_PTR, ptr_done, s);
			return;
		}
	}
	greet(s);
}
