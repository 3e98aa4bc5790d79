#include "mta/smtp_session.h"
#include "mta/smtpd.h"
#include "mta/smtp_check.h"
#include "mta/router.h"
#include "mta/queue.h"
#include "mta/sasl.h"
#include "conf/conf.h"
#include "proto/smtp.h"
#include "proto/dns.h"
#include "lib/log.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)
#define MAX_HDR_LINE 998

/* per-verb counters for the "disconnect from" line (Postfix style) */
struct verb_count {
	unsigned ok, total;
};

enum name_state { NAME_IDLE, NAME_PTR, NAME_FORWARD, NAME_DONE };

struct smtp_session {
	struct smtpd *srv;
	struct bufferevent *bev;
	struct smtp_parser *parser;
	char addr[INET6_ADDRSTRLEN];
	char port[8];
	char name[256];		/* forward-confirmed, or "unknown" */
	char rev_name[256];	/* PTR, or "unknown" */
	int name_tempfail;
	enum name_state name_state;
	struct dns_req *name_req;
	int greeted;
	int discard_all;	/* a milter said discard at connect */
	int local;		/* sendmail_socket: local submission */
	int submission;		/* submission_listen or smtps_listen: AUTH before MAIL */

	/* SMTP AUTH (RFC 4954) */
	int auth_state;		/* AUTH_*: waiting for a 334 response line */
	char auth_mech[8];
	char *auth_login_user;	/* LOGIN: the name, while the password is asked for */
	struct sasl_req *sasl_req;
	char *sasl_method, *sasl_username;	/* set once authenticated */
	char *sasl_sender;	/* MAIL FROM AUTH= of the current transaction */
	long local_uid;
	int early_talker;
	int esmtp;
	char *helo;
	int tls;
	int busy;		/* waiting for DNS, a commit or an error sleep */
	int closing;		/* close when output is flushed */
	int dead;		/* connection gone; free when the pending commit returns */
	int commit_pending;
	unsigned errors;
	struct event *sleep_ev;
	struct event *close_ev;
	struct sbuf delayed;	/* reply held back by smtpd_error_sleep_time */
	int delayed_close;
	const char *last_cmd;	/* for "timeout after X" */
	struct verb_count counts[SMTP_VERB_AUTH + 1];
	unsigned commands;

	/* transaction */
	int in_mail;
	char *sender;
	long long mail_size;
	int body_8bit, smtputf8;
	char *envid, *ret;
	struct queue_writer *writer;
	struct queue_envelope env;
	size_t nrcpt_accepted;
	int in_data;		/* DATA or BDAT content flowing */
	int bdat;		/* transaction uses BDAT */
	int bdat_refuse;	/* swallowing a chunk we refuse */
	struct check_reply bdat_reply;
	int bdat_last;
	unsigned long long bdat_chunk;
	long long data_bytes;
	int too_big;
	int write_error;
	int in_headers;
	struct sbuf hdr_line;
	char *message_id;
	char committed_id[64];
	double arrival;

	/* milters */
	struct mc_session *mc;
	struct check_reply conn_reply;	/* a milter refused the connection: every command gets this */
	int milter_reject;		/* the reject being logged came from a milter */
	char *mail_args, *rcpt_args;	/* ESMTP parameters as sent, for the milters */
	char **pending_finals;		/* RCPT: router result, added once the milters agree */
	size_t npending_finals;
	int pending_relay;
	struct mc_message mmsg;
	/* macro values that are composed, one buffer each (all valid at once) */
	char m_underscore[600], m_mail_host[256], m_rcpt_host[256], m_bits[16];

	/* restriction evaluation */
	struct check_cmd cmd;
	char instance[64];
	unsigned txn_seq;
	char server_addr[INET6_ADDRSTRLEN];
	char server_port[8];
	struct check_ctx ctx;
	struct check_effects fx;
	struct check_dns_cache *dns;
	struct check_run run;
	enum check_stage stages[CHECK_NSTAGES];
	int nstages, cur_stage;
	enum smtp_verb pending_verb;
	int pend;		/* PEND_*: what the running checks decide */
	char *pending_rcpt;	/* RCPT under evaluation */
	unsigned pending_notify;
	char *pending_orcpt;
	int pending_unauth;
};

enum { AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

enum { PEND_HELO = 100, PEND_MAIL, PEND_RCPT, PEND_DATA, PEND_BDAT, PEND_EOD };

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

static void session_process(struct smtp_session *s);
static void maybe_close(struct smtp_session *s);
static void session_free(struct smtp_session *s);
static void checks_continue(struct smtp_session *s);

/* ------------------------------------------------------------------ output */

static const char *hostname(struct smtp_session *s)
{
	return s->srv->cfg.myhostname;
}

static void out(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(struct smtp_session *s, const char *fmt, ...)
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
		maybe_close(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

/*
 * reply_error - a 4xx/5xx reply that counts as an error. Past
 * smtpd_soft_error_limit the reply waits smtpd_error_sleep_time; at
 * smtpd_hard_error_limit the client is told 421 and disconnected.
 */
static void reply_error(struct smtp_session *s, int code, const char *dsn, const char *text)
{
	s->errors++;
	char *line = xasprintf("%d %s %s\r\n", code, dsn, text);
	int hard = s->errors >= (unsigned)s->srv->cfg.hard_error_limit;
	if (s->errors > (unsigned)s->srv->cfg.soft_error_limit && s->srv->cfg.error_sleep_ms > 0) {
		sbuf_adds(&s->delayed, line);
		if (hard) {
			sbuf_printf(&s->delayed, "421 4.7.0 %s Error: too many errors\r\n", hostname(s));
			log_event(NULL, "too many errors after %s from %s[%s]", s->last_cmd, s->name, s->addr);
			s->delayed_close = 1;
		}
		s->busy = 1;
		struct timeval tv = { s->srv->cfg.error_sleep_ms / 1000, (s->srv->cfg.error_sleep_ms % 1000) * 1000 };
		evtimer_add(s->sleep_ev, &tv);
	} else {
		evbuffer_add(bufferevent_get_output(s->bev), line, strlen(line));
		if (hard) {
			out(s, "421 4.7.0 %s Error: too many errors", hostname(s));
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
	log_event(qid(s), "%s", b.buf);
	sbuf_free(&b);
}

static void ctx_log_reject(void *arg, const struct check_reply *r, int warning)
{
	struct smtp_session *s = arg;
	log_reject(s, r, warning, pend_verb(s->pend), s->pending_rcpt);
}

/* ------------------------------------------------------------ transaction */

static void txn_reset(struct smtp_session *s)
{
	/* policy "instance": one value for all requests of one message */
	snprintf(s->instance, sizeof s->instance, "%x.%lx.%x", (unsigned)getpid(), (unsigned long)(uintptr_t)s,
		 ++s->txn_seq);
	if (s->in_mail || s->writer)
		mc_abort(s->mc);
	s->in_mail = 0;
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

static void count(struct smtp_session *s, enum smtp_verb v, int ok)
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
static void reject_cmd(struct smtp_session *s, const struct check_reply *r);

/* checks_start - run the restriction lists stages[0..n) for pending_verb. */
static void checks_start(struct smtp_session *s, enum smtp_verb verb, const enum check_stage *st, int n)
{
	s->pending_verb = verb;
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
			reject_cmd(s, &r);
			goto resume;
		}
		s->cur_stage++;
	}
	s->busy = 0;
	if (check_cmd_final(&s->cmd, &r))
		reject_cmd(s, &r);	/* DEFER_IF_PERMIT */
	else
		accept_cmd(s);
resume:
	if (was_busy && !s->busy && !s->dead) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
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
		sbuf_printf(&h, "Received: by %s (sluice, from userid %ld)\n\tid %s; %s\n", hostname(s), s->local_uid,
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
	sbuf_printf(&h, "\tby %s (sluice) with %s id %s", hostname(s), proto_name(s), queue_writer_id(s->writer));
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
			log_event(s->committed_id, "hold: END-OF-MESSAGE from %s[%s]: <%s>: message placed on hold",
				  s->name, s->addr, s->sender);
		else
			notify_qmgr(s, s->committed_id);
	} else if (ok) {
		notify_qmgr(s, s->committed_id);
	}
	if (s->dead) {
		session_free(s);
		return;
	}
	s->busy = 0;
	if (!ok) {
		log_event(NULL, "warning: queue file write error: %s", err ? err : "unknown");
		out(s, "451 4.3.0 Error: queue file write error");
		count(s, v, 0);
	} else {
		out(s, "250 2.0.0 Ok: queued as %s", s->committed_id);
		count(s, v, 1);
	}
	txn_reset(s);
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

static void finish_message(struct smtp_session *s)
{
	enum smtp_verb v = s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA;
	s->in_data = 0;
	if (s->too_big) {
		log_event(qid(s), "reject: %s from %s[%s]: 552 5.3.4 Message size exceeds fixed limit; from=<%s> proto=%s%s%s%s",
			  smtp_verb_name(v), s->name, s->addr, s->sender, proto_name(s), s->helo ? " helo=<" : "",
			  s->helo ? s->helo : "", s->helo ? ">" : "");
		reply_error(s, 552, "5.3.4", "Message size exceeds fixed limit");
		count(s, v, 0);
		txn_reset(s);
		return;
	}
	if (s->write_error) {
		out(s, "451 4.3.0 Error: queue file write error");
		count(s, v, 0);
		txn_reset(s);
		return;
	}
	/* smtpd_end_of_data_restrictions */
	static const enum check_stage eod[] = { CHECK_EOD };
	s->pending_rcpt = NULL;
	checks_start(s, SMTP_VERB_DATA == v ? SMTP_VERB_DATA : SMTP_VERB_BDAT, eod, 1);
	/* accept_cmd/reject_cmd continue from there (pending_verb + in_data == 0) */
}

static void commit_message(struct smtp_session *s)
{
	const char *id = queue_writer_id(s->writer);
	if (s->message_id)
		log_event(id, "message-id=%s", s->message_id);
	if (s->fx.discard || s->discard_all) {
		log_event(id, "discard: END-OF-MESSAGE from %s[%s]: <%s>: message discarded by an access table",
			  s->name, s->addr, s->sender);
		out(s, "250 2.0.0 Ok: queued as %s", id);
		count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 1);
		txn_reset(s);
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
	checks_start(s, pend == PEND_RCPT ? SMTP_VERB_RCPT : pend == PEND_MAIL ? SMTP_VERB_MAIL
			: pend == PEND_HELO ? SMTP_VERB_HELO : pend == PEND_BDAT ? SMTP_VERB_BDAT
			: SMTP_VERB_DATA, st, n);
}

/* ------------------------------------------------------ milters at end of data */

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
		s->fx.discard = 1;
	}
	mc_message_free(m);
	if (s->write_error) {
		out(s, "451 4.3.0 Error: queue file write error");
		count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 0);
		txn_reset(s);
		return;
	}
	commit_message(s);
}

static void eom_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	s->busy = 0;
	if (s->dead) {
		mc_message_free(&s->mmsg);
		session_free(s);
		return;
	}
	if (r->verdict == MC_CONTINUE || r->verdict == MC_DISCARD) {
		if (r->verdict == MC_DISCARD)
			s->fx.discard = 1;
		eom_apply(s);
	} else {
		mc_message_free(&s->mmsg);
		if (r->verdict == MC_SHUTDOWN) {
			out(s, "421 4.7.0 %s %s", hostname(s), r->text);
			s->closing = 1;
			txn_reset(s);
		} else {
			struct check_reply cr;
			cr.code = r->code;
			snprintf(cr.dsn, sizeof cr.dsn, "%s", r->dsn);
			snprintf(cr.text, sizeof cr.text, "%s", r->text);
			s->milter_reject = 1;
			reject_cmd(s, &cr);	/* PEND_EOD: counts, resets the transaction */
			s->milter_reject = 0;
		}
	}
	if (!s->busy) {
		if (!s->closing)
			bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void eom_start(struct smtp_session *s)
{
	free(s->pending_rcpt);
	s->pending_rcpt = NULL;
	if (!mc_active(s->mc)) {
		commit_message(s);
		return;
	}
	long long size = queue_writer_size(s->writer);
	char *buf = xmalloc((size_t)size + 1);
	if (queue_writer_pread(s->writer, 0, buf, (size_t)size) != (long)size) {
		free(buf);
		out(s, "451 4.3.0 Error: queue file read error");
		count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 0);
		txn_reset(s);
		return;
	}
	mc_message_parse(&s->mmsg, buf, (size_t)size);
	free(buf);
	mc_set_qid(s->mc, queue_writer_id(s->writer));
	s->busy = 1;
	bufferevent_disable(s->bev, EV_READ);
	mc_eom(s->mc, &s->mmsg, eom_done, s);
}

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
		reject_cmd(s, &rep);
		return -1;
	}
	if (r == -1) {
		struct check_reply rep = { 451, "4.3.0", "" };
		snprintf(rep.text, sizeof rep.text, "<%s>: Temporary lookup failure: %s", rcpt, why);
		free(why);
		reject_cmd(s, &rep);
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
			out(s, "451 4.3.0 Error: queue file write error");
			count(s, SMTP_VERB_RCPT, 0);
			free_finals(s);
			return;
		}
		s->arrival = wall_time();
		if (s->local)
			log_event(queue_writer_id(s->writer), "uid=%ld from=<%s>", s->local_uid, s->sender);
		else if (s->sasl_username)
			log_event(queue_writer_id(s->writer), "client=%s[%s], sasl_method=%s, sasl_username=%s", s->name,
				  s->addr, s->sasl_method, s->sasl_username);
		else
			log_event(queue_writer_id(s->writer), "client=%s[%s]", s->name, s->addr);
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
	out(s, "250 2.1.5 Ok");
	count(s, SMTP_VERB_RCPT, 1);
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
static int sasl_offered(struct smtp_session *s)
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
		out(s, "250 %s", hostname(s));
		return;
	}
	char size[32] = "";
	if (s->srv->cfg.message_size_limit > 0)
		snprintf(size, sizeof size, " %lld", s->srv->cfg.message_size_limit);
	out(s, "250-%s", hostname(s));
	out(s, "250-PIPELINING");
	out(s, "250-SIZE%s", size);
	if (!s->srv->cfg.disable_vrfy)
		out(s, "250-VRFY");
	if (s->srv->tls && !s->tls && tls_level(s) > 0)
		out(s, "250-STARTTLS");
	if (sasl_offered(s)) {
		out(s, "250-AUTH PLAIN LOGIN");
		if (s->srv->cfg.broken_sasl_clients)
			out(s, "250-AUTH=PLAIN LOGIN");
	}
	out(s, "250-ENHANCEDSTATUSCODES");
	out(s, "250-8BITMIME");
	out(s, "250-DSN");
	out(s, "250-SMTPUTF8");
	out(s, "250 CHUNKING");
}

static void eom_start(struct smtp_session *s);

/* The positive outcome of a command, once restrictions and milters agree. */
static void finish_accept(struct smtp_session *s)
{
	switch (s->pend) {
	case PEND_HELO:
		helo_reply(s);
		count(s, s->esmtp ? SMTP_VERB_EHLO : SMTP_VERB_HELO, 1);
		break;
	case PEND_MAIL:
		s->in_mail = 1;
		out(s, "250 2.1.0 Ok");
		count(s, SMTP_VERB_MAIL, 1);
		break;
	case PEND_RCPT:
		finish_rcpt(s);
		break;
	case PEND_DATA:
		out(s, "354 End data with <CR><LF>.<CR><LF>");
		begin_content(s);
		smtp_parser_begin_data(s->parser);
		break;
	case PEND_BDAT:
		begin_content(s);
		s->bdat = 1;
		smtp_parser_begin_bdat(s->parser, s->bdat_chunk, s->bdat_last);
		break;
	case PEND_EOD:
		eom_start(s);
		return;	/* keeps pending state until the milters and the commit are done */
	}
	free(s->pending_rcpt);
	s->pending_rcpt = NULL;
	s->pending_unauth = 0;
}

static char **split_args(const char *a, size_t *n)
{
	return a && *a ? conf_split_list(a, n) : (*n = 0, NULL);
}

static void milter_stage_done(void *arg, const struct mc_result *r);

/* Hand the command to the milters; finish_accept or a reject follows in milter_stage_done. */
static int milter_stage(struct smtp_session *s)
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

static void accept_cmd(struct smtp_session *s)
{
	if (s->pend == PEND_RCPT && validate_rcpt(s) < 0)
		return;
	if (s->pend != PEND_EOD && milter_stage(s))
		return;
	finish_accept(s);
}

static void resume_after_milter(struct smtp_session *s)
{
	s->busy = 0;
	if (s->dead) {
		session_free(s);
		return;
	}
	if (!s->closing)
		bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

static void milter_stage_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	if (s->dead) {
		s->busy = 0;
		session_free(s);
		return;
	}
	if (r->verdict == MC_CONTINUE || r->verdict == MC_DISCARD) {
		if (r->verdict == MC_DISCARD)
			s->fx.discard = 1;
		finish_accept(s);
	} else if (r->verdict == MC_SHUTDOWN) {
		out(s, "421 4.7.0 %s %s", hostname(s), r->text);
		s->closing = 1;
	} else {
		struct check_reply cr;
		cr.code = r->code;
		snprintf(cr.dsn, sizeof cr.dsn, "%s", r->dsn);
		snprintf(cr.text, sizeof cr.text, "%s", r->text);
		s->milter_reject = 1;
		reject_cmd(s, &cr);
		s->milter_reject = 0;
	}
	resume_after_milter(s);
}

static void reject_cmd(struct smtp_session *s, const struct check_reply *r)
{
	const char *rcpt = s->pending_rcpt;
	log_reject(s, r, 0, pend_verb(s->pend), rcpt);
	switch (s->pend) {
	case PEND_HELO:
		free(s->helo);
		s->helo = NULL;
		count(s, s->esmtp ? SMTP_VERB_EHLO : SMTP_VERB_HELO, 0);
		break;
	case PEND_MAIL:
		free(s->sender);
		s->sender = NULL;
		count(s, SMTP_VERB_MAIL, 0);
		break;
	case PEND_RCPT:
		free_finals(s);
		count(s, SMTP_VERB_RCPT, 0);
		break;
	case PEND_DATA:
		count(s, SMTP_VERB_DATA, 0);
		break;
	case PEND_BDAT:
		/* the chunk must still be read; the reply goes out after it */
		s->bdat_refuse = 1;
		s->bdat_reply = *r;
		smtp_parser_begin_bdat(s->parser, s->bdat_chunk, s->bdat_last);
		goto out;
	case PEND_EOD:
		count(s, s->bdat ? SMTP_VERB_BDAT : SMTP_VERB_DATA, 0);
		txn_reset(s);
		break;
	}
	reply_error(s, r->code, r->dsn, r->text);
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
	txn_reset(s);
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
		reply_error(s, 530, "5.7.0", "Must issue a STARTTLS command first");
		count(s, c->verb, 0);
		return;
	}
	if (s->srv->cfg.helo_required && !s->helo) {
		reply_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		count(s, c->verb, 0);
		return;
	}
	if (s->submission && sasl_enabled(s) && !s->sasl_username) {
		/* what Postfix's master.cf example does with smtpd_client_restrictions */
		reply_error(s, 530, "5.7.0", "Authentication required");
		count(s, c->verb, 0);
		return;
	}
	if (s->in_mail) {
		reply_error(s, 503, "5.5.1", "Error: nested MAIL command");
		count(s, c->verb, 0);
		return;
	}
	if (c->path.has_utf8 && !c->mail.smtputf8) {
		reply_error(s, 553, "5.6.7", "Must declare SMTPUTF8 to send UTF8 address");
		count(s, c->verb, 0);
		return;
	}
	if (s->srv->cfg.message_size_limit > 0 && c->mail.size > s->srv->cfg.message_size_limit) {
		reply_error(s, 552, "5.3.4", "Message size exceeds fixed limit");
		count(s, c->verb, 0);
		return;
	}
	txn_reset(s);
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
		reply_error(s, 503, "5.5.1", "Error: need MAIL command");
		count(s, c->verb, 0);
		return;
	}
	if (c->path.has_utf8 && !s->smtputf8) {
		reply_error(s, 553, "5.6.7", "Must declare SMTPUTF8 to send UTF8 address");
		count(s, c->verb, 0);
		return;
	}
	if (s->nrcpt_accepted >= (size_t)s->srv->cfg.recipient_limit) {
		out(s, "452 4.5.3 Error: too many recipients");
		count(s, c->verb, 0);
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
		reply_error(s, 503, "5.5.1", "Error: need RCPT command");
		return -1;
	}
	if (s->nrcpt_accepted == 0) {
		reply_error(s, 554, "5.5.1", "Error: no valid recipients");
		return -1;
	}
	if (v == SMTP_VERB_DATA && s->bdat) {
		reply_error(s, 503, "5.5.1", "Error: DATA after BDAT");
		return -1;
	}
	return 0;
}

static void cmd_data(struct smtp_session *s, const struct smtp_cmd *c)
{
	/* anything after DATA in the same batch was sent before our 354 (RFC 2920) */
	s->pending_unauth = smtp_parser_buffered(s->parser) > 0;
	if (data_precheck(s, c->verb) < 0) {
		count(s, c->verb, 0);
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
		count(s, c->verb, 0);
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
		reply_error(s, 502, "5.5.1", "Error: command not implemented");
		count(s, c->verb, 0);
		return;
	}
	if (s->tls) {
		reply_error(s, 554, "5.5.1", "Error: TLS already active");
		count(s, c->verb, 0);
		return;
	}
	out(s, "220 2.0.0 Ready to start TLS");
	count(s, c->verb, 1);
	start_tls(s);
}

static void unknown_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	(void)r;
	s->busy = 0;
	if (s->dead) {
		session_free(s);
		return;
	}
	reply_error(s, 502, "5.5.2", "Error: command not recognized");
	count(s, SMTP_VERB_UNKNOWN, 0);
	if (!s->busy) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void cmd_simple(struct smtp_session *s, const struct smtp_cmd *c)
{
	switch (c->verb) {
	case SMTP_VERB_RSET:
		txn_reset(s);
		out(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		out(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		out(s, "221 2.0.0 Bye");
		s->closing = 1;
		break;
	case SMTP_VERB_VRFY:
		if (s->srv->cfg.disable_vrfy) {
			reply_error(s, 502, "5.5.1", "VRFY command is disabled");
			count(s, c->verb, 0);
			return;
		}
		out(s, "252 2.0.0 %s", c->arg);
		break;
	case SMTP_VERB_HELP:
		out(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
		break;
	default:
		if (mc_active(s->mc)) {
			/* the milters see unknown commands too ('U'); the reply stays 502 */
			s->busy = 1;
			bufferevent_disable(s->bev, EV_READ);
			mc_unknown(s->mc, c->line, unknown_done, s);
			return;
		}
		reply_error(s, 502, "5.5.2", "Error: command not recognized");
		count(s, c->verb, 0);
		return;
	}
	count(s, c->verb, 1);
}

/* ------------------------------------------------------------ SMTP AUTH */

static void auth_reset(struct smtp_session *s)
{
	s->auth_state = AUTH_NONE;
	if (s->auth_login_user) {
		free(s->auth_login_user);
		s->auth_login_user = NULL;
	}
}

/* forget the authentication (STARTTLS, end of session); cancel a check in flight */
static void sasl_forget(struct smtp_session *s)
{
	sasl_req_cancel(s->sasl_req);
	s->sasl_req = NULL;
	auth_reset(s);
	free(s->sasl_method);
	free(s->sasl_username);
	s->sasl_method = s->sasl_username = NULL;
}

static void auth_done(void *arg, enum sasl_result res, const char *user, const char *reason)
{
	struct smtp_session *s = arg;
	s->sasl_req = NULL;
	s->busy = 0;
	if (res == SASL_OK) {
		s->sasl_method = xstrdup(s->auth_mech);
		s->sasl_username = xstrdup(user);
		out(s, "235 2.7.0 Authentication successful");
		count(s, SMTP_VERB_AUTH, 1);
	} else if (res == SASL_FAIL) {
		/* Postfix's words; the reason comes from the back end, never holds the password */
		log_event(NULL, "warning: %s[%s]: SASL %s authentication failed: %s", s->name, s->addr, s->auth_mech,
			  reason);
		reply_error(s, 535, "5.7.8", "Error: authentication failed: authentication failure");
		count(s, SMTP_VERB_AUTH, 0);
	} else {
		log_event(NULL, "warning: %s[%s]: SASL %s authentication temporarily failed: %s", s->name, s->addr,
			  s->auth_mech, reason);
		reply_error(s, 454, "4.7.0", "Temporary authentication failure");
		count(s, SMTP_VERB_AUTH, 0);
	}
	if (!s->busy && !s->dead) {
		if (!s->closing)
			bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void auth_check(struct smtp_session *s, const char *authzid, const char *user, const char *pass)
{
	if (!*user) {
		reply_error(s, 535, "5.7.8", "Error: authentication failed: authentication failure");
		count(s, SMTP_VERB_AUTH, 0);
		return;
	}
	struct sasl_verify_args a = {
		.type = s->srv->cfg.sasl_type, .path = s->srv->cfg.sasl_path, .mech = s->auth_mech,
		.authzid = authzid, .user = user, .password = pass, .client_addr = s->addr, .secured = s->tls,
		.timeout_s = (int)s->srv->cfg.sasl_timeout_s,
	};
	s->busy = 1;
	bufferevent_disable(s->bev, EV_READ);
	s->sasl_req = sasl_verify(s->srv->sasl, &a, auth_done, s);
}

static void auth_bad_response(struct smtp_session *s)
{
	reply_error(s, 501, "5.5.2", "Error: Cannot decode response");
	count(s, SMTP_VERB_AUTH, 0);
}

/* a PLAIN response (initial or after "334 "): check it */
static void auth_plain(struct smtp_session *s, const char *b64)
{
	char *z, *u, *p;
	if (sasl_plain_decode(b64, &z, &u, &p) < 0) {
		auth_bad_response(s);
		return;
	}
	auth_check(s, z, u, p);
	free(z);
	free(u);
	explicit_bzero(p, strlen(p));
	free(p);
}

/* a LOGIN value: NULL (bad base64 or a NUL inside) or the decoded string */
static char *auth_login_value(const char *b64, size_t len)
{
	char *v;
	size_t n;
	if (sasl_b64_decode(b64, len, &v, &n) < 0)
		return NULL;
	if (strlen(v) != n) {
		explicit_bzero(v, n);
		free(v);
		return NULL;
	}
	return v;
}

static void auth_line(struct smtp_session *s, const char *line, size_t len)
{
	int state = s->auth_state;
	s->auth_state = AUTH_NONE;
	if (len == 1 && line[0] == '*') {	/* RFC 4954 4: the client cancels */
		auth_reset(s);
		reply_error(s, 501, "5.7.0", "Authentication aborted");
		count(s, SMTP_VERB_AUTH, 0);
		return;
	}
	char *b64 = xstrndup(line, len);
	if (state == AUTH_PLAIN) {
		auth_plain(s, b64);
	} else if (state == AUTH_LOGIN_USER) {
		s->auth_login_user = auth_login_value(b64, len);
		if (!s->auth_login_user) {
			auth_bad_response(s);
		} else {
			out(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
			s->auth_state = AUTH_LOGIN_PASS;
			smtp_parser_expect_line(s->parser);
		}
	} else {
		char *pass = auth_login_value(b64, len);
		if (!pass) {
			auth_bad_response(s);
		} else {
			auth_check(s, "", s->auth_login_user, pass);
			explicit_bzero(pass, strlen(pass));
			free(pass);
		}
		free(s->auth_login_user);
		s->auth_login_user = NULL;
	}
	explicit_bzero(b64, len);
	free(b64);
}

static void cmd_auth(struct smtp_session *s, const struct smtp_cmd *c)
{
	const char *why = NULL;
	if (!sasl_offered(s))
		why = "Error: authentication not enabled";
	else if (!s->helo)
		why = "Error: send HELO/EHLO first";
	else if (s->sasl_username)
		why = "Error: already authenticated";
	else if (s->in_mail)
		why = "Error: MAIL transaction in progress";
	if (why) {
		reply_error(s, 503, "5.5.1", why);
		count(s, c->verb, 0);
		return;
	}
	const char *mech = c->auth_mech ? c->auth_mech : "";
	if (ascii_strcasecmp(mech, "PLAIN") && ascii_strcasecmp(mech, "LOGIN")) {
		reply_error(s, 504, "5.5.4", "Unsupported authentication mechanism");
		count(s, c->verb, 0);
		return;
	}
	snprintf(s->auth_mech, sizeof s->auth_mech, "%s", ascii_strcasecmp(mech, "PLAIN") ? "LOGIN" : "PLAIN");
	const char *ir = c->auth_initial;
	if (ir && !strcmp(ir, "="))	/* RFC 4954 4: an empty initial response */
		ir = "";
	if (!strcmp(s->auth_mech, "PLAIN")) {
		if (ir) {
			auth_plain(s, ir);
			return;
		}
		out(s, "334 ");
		s->auth_state = AUTH_PLAIN;
	} else if (ir) {
		s->auth_login_user = auth_login_value(ir, strlen(ir));
		if (!s->auth_login_user) {
			auth_bad_response(s);
			return;
		}
		out(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
		s->auth_state = AUTH_LOGIN_PASS;
	} else {
		out(s, "334 VXNlcm5hbWU6");	/* "Username:" */
		s->auth_state = AUTH_LOGIN_USER;
	}
	smtp_parser_expect_line(s->parser);
}

static void dispatch(struct smtp_session *s, const struct smtp_cmd *c)
{
	s->last_cmd = smtp_verb_name(c->verb);
	/* a client that did not say EHLO must not pipeline (RFC 2920) */
	s->pending_unauth = !s->esmtp && smtp_parser_buffered(s->parser) > 0;
	if (s->conn_reply.code && c->verb != SMTP_VERB_QUIT && c->verb != SMTP_VERB_NOOP &&
	    c->verb != SMTP_VERB_RSET) {
		/* a milter refused the connection */
		if (c->verb == SMTP_VERB_BDAT) {
			s->bdat_refuse = 2;	/* swallow the chunk, the reply is already out */
			smtp_parser_begin_bdat(s->parser, c->bdat_size, c->bdat_last);
		}
		reply_error(s, s->conn_reply.code, s->conn_reply.dsn, s->conn_reply.text);
		count(s, c->verb, 0);
		return;
	}
	/* the command table; verbs without an entry are handled by cmd_simple */
	static void (*const handler[SMTP_VERB_AUTH + 1])(struct smtp_session *, const struct smtp_cmd *) = {
		[SMTP_VERB_HELO] = cmd_helo, [SMTP_VERB_EHLO] = cmd_helo, [SMTP_VERB_MAIL] = cmd_mail,
		[SMTP_VERB_RCPT] = cmd_rcpt, [SMTP_VERB_DATA] = cmd_data, [SMTP_VERB_BDAT] = cmd_bdat,
		[SMTP_VERB_STARTTLS] = cmd_starttls, [SMTP_VERB_AUTH] = cmd_auth,
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
			reply_error(s, s->bdat_reply.code, s->bdat_reply.dsn, s->bdat_reply.text);
			count(s, SMTP_VERB_BDAT, 0);
			txn_reset(s);
		}
		s->bdat_refuse = 0;
		return;
	}
	if (!it->bdat_last) {
		if (s->too_big)
			out(s, "250 2.0.0 Ok: %llu bytes (message too big, will be refused)", s->bdat_chunk);
		else
			out(s, "250 2.0.0 Ok: %llu bytes", s->bdat_chunk);
		count(s, SMTP_VERB_BDAT, 1);
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
			auth_reset(s);
			count(s, SMTP_VERB_AUTH, 0);
		}
		reply_error(s, it->code, it->dsn, it->text);
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
			auth_line(s, it->data, it->len);
		break;
	case SMTP_ITEM_FATAL:
		log_event(qid(s), "reject: %s from %s[%s]: %d %s %s; proto=%s%s%s%s", s->in_data ? "DATA content" : "command",
			  s->name, s->addr, it->code, it->dsn, it->text, proto_name(s), s->helo ? " helo=<" : "",
			  s->helo ? s->helo : "", s->helo ? ">" : "");
		out(s, "%d %s %s %s", it->code, it->dsn, hostname(s), it->text);
		txn_reset(s);
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
		session_free(s);
		return;
	}
	struct timeval tv = { 0, 10000 };
	evtimer_add(s->close_ev, &tv);
}

static void maybe_close(struct smtp_session *s)
{
	if (!s->closing || s->busy)
		return;
	bufferevent_disable(s->bev, EV_READ);
	if (unsent(s) == 0) {
		session_free(s);
	} else if (s->tls && !evtimer_pending(s->close_ev, NULL)) {
		/* the filter's write callback fires before the ciphertext is sent */
		struct timeval tv = { 0, 10000 };
		evtimer_add(s->close_ev, &tv);
	}
}

static void session_process(struct smtp_session *s)
{
	while (!s->busy && !s->closing && !s->dead) {
		struct smtp_item it;
		enum smtp_next r = smtp_parser_next(s->parser, &it);
		if (r != SMTP_ITEM)
			break;
		on_item(s, &it);
	}
	maybe_close(s);
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
	session_process(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct smtp_session *s = arg;
	if (s->closing && !s->busy)
		maybe_close(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct smtp_session *s = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT) {
		log_event(NULL, "timeout after %s from %s[%s]", s->last_cmd, s->name, s->addr);
		out(s, "421 4.4.2 %s Error: timeout exceeded", hostname(s));
		s->closing = 1;
		txn_reset(s);
		maybe_close(s);
		return;
	}
	if (!s->closing)
		log_event(NULL, "lost connection after %s from %s[%s]", s->last_cmd, s->name, s->addr);
	if (s->commit_pending) {
		s->dead = 1;	/* freed by commit_done */
		return;
	}
	session_free(s);
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
	txn_reset(s);
	sasl_forget(s);
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

static void session_free(struct smtp_session *s)
{
	if (s->commit_pending) {
		s->dead = 1;
		return;
	}
	log_disconnect(s);
	dns_cancel(s->name_req);
	sasl_forget(s);
	check_dns_cache_free(&s->dns);
	check_cmd_reset(&s->cmd);
	txn_reset(s);
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
	free(s);
}

/* ---------------------------------------------------- greeting and names */

/* ------------------------------------------------------------- milter glue */

static const char *domain_of(const char *a, char *buf, size_t len)
{
	const char *at = a ? strrchr(a, '@') : NULL;
	snprintf(buf, len, "%s", at ? at + 1 : "");
	return buf;
}

/* Postfix's milter macros (MILTER_README); NULL when not available yet. */
static const char *macro_value(void *arg, const char *name)
{
	struct smtp_session *s = arg;
	const struct conf *c = s->srv->conf;
	SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
	if (!strcmp(name, "j"))
		return hostname(s);
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

static void send_greeting(struct smtp_session *s);

static void connect_done(void *arg, const struct mc_result *r)
{
	struct smtp_session *s = arg;
	if (r->verdict == MC_REJECT || r->verdict == MC_TEMPFAIL) {
		/* Postfix: the greeting goes out; every later command gets the reply */
		s->conn_reply.code = r->code;
		snprintf(s->conn_reply.dsn, sizeof s->conn_reply.dsn, "%s", r->dsn);
		snprintf(s->conn_reply.text, sizeof s->conn_reply.text, "%s", r->text);
	} else if (r->verdict == MC_SHUTDOWN) {
		out(s, "421 4.7.0 %s %s", hostname(s), r->text);
		s->greeted = 1;
		s->closing = 1;
		bufferevent_enable(s->bev, EV_WRITE);
		maybe_close(s);
		return;
	} else if (r->verdict == MC_DISCARD) {
		s->discard_all = 1;
	}
	send_greeting(s);
}

static void greet(struct smtp_session *s)
{
	s->name_state = NAME_DONE;
	log_event(NULL, "connect from %s[%s]", s->name, s->addr);
	const struct mc_conf *mconf = s->local ? s->srv->local_milters : s->srv->milters;
	size_t nm = s->local ? s->srv->nlocal_milters : s->srv->nmilters;
	if (nm) {
		s->mc = mc_session_new(s->srv->base, mconf, nm, &s->srv->milter_macros, macro_value, s, "NOQUEUE");
		int v6 = strchr(s->addr, ':') != NULL;
		mc_connect(s->mc, s->name, v6 ? '6' : '4', (unsigned)atoi(s->port), s->addr, connect_done, s);
		return;
	}
	send_greeting(s);
}

static void send_greeting(struct smtp_session *s)
{
	out(s, "220 %s", s->srv->cfg.banner);
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
		s->name_state = NAME_FORWARD;
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
	txn_reset(s);
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
			s->name_state = NAME_PTR;
			s->name_req = dns_query(srv->dns, rev, DNS_T_PTR, ptr_done, s);
			return;
		}
	}
	greet(s);
}
