#include "mta/milter_client.h"
#include "mta/mta_metrics.h"
#include "conf/conf.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "proto/milter.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define MC_VERSION 6
#define MC_ACTIONS 0x1FFu
/* every step bit we understand, but not "send rejected recipients too" */
#define MC_STEPS (MILTER_SMFIP_ALL & ~MILTER_SMFIP_RCPT_REJ)
#define BODY_CHUNK 65535

/* ------------------------------------------------------------ configuration */

const char *mc_default_name(enum mc_default d)
{
	static const char *const names[] = { "accept", "tempfail", "reject", "quarantine" };
	return names[d];
}

static int parse_default(const char *s, enum mc_default *out)
{
	for (int i = 0; i < 4; i++)
		if (!ascii_strcasecmp(s, mc_default_name((enum mc_default)i))) {
			*out = (enum mc_default)i;
			return 0;
		}
	return -1;
}

/* "unix:/p", "unix:rel/p", "inet:host:port", "inet:port@host", "local:/p" -> normalised spec */
static char *normalise_spec(const char *s)
{
	if (!strncmp(s, "unix:", 5) || !strncmp(s, "local:", 6)) {
		/* a relative path is relative to the base directory, sluiced's
		 * working directory (conf.h) */
		const char *p = strchr(s, ':') + 1;
		return *p ? xasprintf("unix:%s", p) : NULL;
	}
	if (strncmp(s, "inet:", 5) != 0)
		return NULL;
	const char *r = s + 5;
	const char *at = strchr(r, '@');
	char *spec = at ? xasprintf("inet:%s:%.*s", at + 1, (int)(at - r), r) : xasprintf("inet:%s", r);
	char host[256], port[32];
	if (listen_parse_hostport(spec + 5, host, sizeof host, port, sizeof port) < 0 || !host[0]) {
		free(spec);
		return NULL;
	}
	return spec;
}

static int parse_one(const struct conf *c, const char *item, struct mc_conf *m, char **err_out)
{
	memset(m, 0, sizeof *m);
	m->connect_timeout_s = conf_time_s(c, "milter_connect_timeout");
	m->command_timeout_s = conf_time_s(c, "milter_command_timeout");
	m->content_timeout_s = conf_time_s(c, "milter_content_timeout");
	parse_default(conf_str(c, "milter_default_action"), &m->default_action);
	char *inner = NULL;
	size_t len = strlen(item);
	if (item[0] == '{') {
		if (len < 2 || item[len - 1] != '}') {
			*err_out = xasprintf("unbalanced { } in \"%s\"", item);
			return -1;
		}
		inner = xstrndup(item + 1, len - 2);
	}
	size_t n = 0;
	char **parts = conf_split_list(inner ? inner : item, &n);
	free(inner);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		char *eq = i ? strchr(parts[i], '=') : NULL;
		if (i == 0) {
			m->spec = normalise_spec(parts[0]);
			m->name = xstrdup(parts[0]);
			if (!m->spec) {
				*err_out = xasprintf("bad milter address \"%s\" (expected unix:/path, inet:host:port "
						     "or inet:port@host)", parts[0]);
				rc = -1;
			}
			continue;
		}
		if (!eq) {
			*err_out = xasprintf("milter setting \"%s\" is not name=value", parts[i]);
			rc = -1;
			break;
		}
		*eq = 0;
		const char *v = eq + 1, *e = NULL;
		long long secs;
		if (!strcmp(parts[i], "default_action")) {
			if (parse_default(v, &m->default_action) < 0)
				e = "expected accept, tempfail, reject or quarantine";
		} else if (!strcmp(parts[i], "connect_timeout") || !strcmp(parts[i], "command_timeout") ||
			   !strcmp(parts[i], "content_timeout")) {
			if (conf_parse_time(v, 's', &secs, &e) == 0) {
				if (!strcmp(parts[i], "connect_timeout"))
					m->connect_timeout_s = secs;
				else if (!strcmp(parts[i], "command_timeout"))
					m->command_timeout_s = secs;
				else
					m->content_timeout_s = secs;
			}
		} else if (strcmp(parts[i], "protocol") != 0) {
			e = "unknown milter setting";
		}
		if (e) {
			*err_out = xasprintf("%s: %s", parts[i], e);
			rc = -1;
		}
	}
	conf_list_free(parts, n);
	if (rc == 0 && !m->spec) {
		*err_out = xstrdup("empty milter entry");
		rc = -1;
	}
	return rc;
}

struct mc_conf *mc_conf_parse(const struct conf *c, const char *param, size_t *n_out, char **err_out)
{
	size_t n;
	const char *const *items = conf_list(c, param, &n);
	*n_out = 0;
	if (!n)
		return NULL;
	struct mc_conf *v = xcalloc(n, sizeof *v);
	for (size_t i = 0; i < n; i++) {
		char *e = NULL;
		if (parse_one(c, items[i], &v[i], &e) < 0) {
			*err_out = xasprintf("%s: %s: %s", conf_where(c, param), param, e);
			free(e);
			mc_conf_free(v, i + 1);
			return NULL;
		}
	}
	*n_out = n;
	return v;
}

void mc_conf_free(struct mc_conf *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].name);
		free(v[i].spec);
	}
	free(v);
}

/* ----------------------------------------------------------------- message */

static int field_name_len(const char *l, size_t n)
{
	size_t i = 0;
	while (i < n && l[i] != ':' && l[i] > ' ' && l[i] < 127)
		i++;
	return (i > 0 && i < n && l[i] == ':') ? (int)i : -1;
}

static void msg_add_header(struct mc_message *m, size_t at, const char *name, size_t nl, const char *val,
			   size_t vl)
{
	if (m->nh == m->caph) {
		m->caph = m->caph ? m->caph * 2 : 16;
		m->h = xrealloc(m->h, m->caph * sizeof *m->h);
	}
	if (at > m->nh)
		at = m->nh;
	memmove(m->h + at + 1, m->h + at, (m->nh - at) * sizeof *m->h);
	m->h[at].name = xstrndup(name, nl);
	m->h[at].value = xstrndup(val, vl);
	m->nh++;
}

void mc_message_parse(struct mc_message *m, const char *c, size_t len)
{
	memset(m, 0, sizeof *m);
	sbuf_init(&m->body);
	size_t p = 0;
	while (p < len) {
		const char *nl = memchr(c + p, '\n', len - p);
		size_t ll = nl ? (size_t)(nl - (c + p)) : len - p;
		size_t next = p + ll + (nl ? 1 : 0);
		/* a header line ends in LF and holds no NUL; anything else is body */
		if (!nl || memchr(c + p, 0, ll))
			break;
		if (ll == 0) {
			m->has_separator = 1;
			p = next;
			break;
		}
		if ((c[p] == ' ' || c[p] == '\t') && m->nh) {
			struct mc_header *h = &m->h[m->nh - 1];
			char *v = xasprintf("%s\n%.*s", h->value, (int)ll, c + p);
			free(h->value);
			h->value = v;
			p = next;
			continue;
		}
		int fl = field_name_len(c + p, ll);
		if (fl < 0)
			break;	/* not a header: the body starts here */
		msg_add_header(m, m->nh, c + p, (size_t)fl, c + p + fl + 1, ll - (size_t)fl - 1);
		p = next;
	}
	sbuf_add(&m->body, c + p, len - p);
}

void mc_message_render(const struct mc_message *m, struct sbuf *out)
{
	for (size_t i = 0; i < m->nh; i++)
		sbuf_printf(out, "%s:%s\n", m->h[i].name, m->h[i].value);
	if (m->has_separator)
		sbuf_addc(out, '\n');
	sbuf_add(out, m->body.buf ? m->body.buf : "", m->body.len);
}

void mc_message_free(struct mc_message *m)
{
	for (size_t i = 0; i < m->nh; i++) {
		free(m->h[i].name);
		free(m->h[i].value);
	}
	free(m->h);
	sbuf_free(&m->body);
	free(m->new_sender);
	free(m->new_sender_args);
	for (size_t i = 0; i < m->nrcpt_ops; i++) {
		free(m->rcpt_ops[i].addr);
		free(m->rcpt_ops[i].args);
	}
	free(m->rcpt_ops);
	free(m->quarantine);
	memset(m, 0, sizeof *m);
}

/* ----------------------------------------------------------------- session */

enum mstate { M_NEW, M_CONNECTING, M_NEGOTIATING, M_READY, M_DEAD };

struct entry {
	struct sbuf pkt;
	int awaits;
	int is_body;
	int is_eom;
};

struct mc_milter {
	struct mc_session *ms;
	struct mc_conf conf;
	enum mstate state;
	struct bufferevent *bev;
	struct milter_parser *parser;
	struct event *timer;
	uint32_t actions, steps;
	char *lists[MILTER_SMFIM_COUNT];
	int skip_conn;		/* accepted the connection: no more events */
	int skip_msg;		/* accepted this message */
	int in_msg;		/* saw MAIL: needs 'A' on abort */
	int tcp;		/* inet milter: TCP_NODELAY + TCP_QUICKACK */
};

struct mc_session {
	struct event_base *base;
	struct mc_milter *m;
	size_t n;
	struct mc_macro_lists macros;
	mc_macro_fn macro;
	void *macro_arg;
	char qid[64];
	struct mc_result sticky;	/* a failed milter's tempfail/reject for the rest of the session */
	int quarantine_pending;		/* a failed milter with default_action quarantine */
	/* the running stage */
	int kind;			/* command byte: 'C','H','M','R','T','U', or 'E' for the content phase */
	int kind_was_eom;
	size_t cur;
	struct entry *e;
	size_t ne, ie;
	int waiting;
	mc_done_fn done;
	void *arg;
	char *a1;			/* hostname / helo / sender / rcpt / line */
	char **args;
	size_t nargs;
	int family;
	unsigned port;
	char *addr;
	struct mc_message *msg;
	int body_started;
	/* the verdict is delivered from the loop, never from inside our own callbacks */
	struct event *done_ev;
	struct mc_result final;
};

static void op_next(struct mc_session *ms);
static void op_send(struct mc_milter *m);

static const char *stage_name(int kind)
{
	switch (kind) {
	case 'C': return "connect";
	case 'H': return "helo";
	case 'M': return "mail";
	case 'R': return "rcpt";
	case 'T': return "data";
	case 'U': return "unknown";
	default: return "end-of-message";
	}
}

static const char *qid(struct mc_session *ms)
{
	return ms->qid[0] ? ms->qid : "NOQUEUE";
}

static void entries_clear(struct mc_session *ms)
{
	for (size_t i = 0; i < ms->ne; i++)
		sbuf_free(&ms->e[i].pkt);
	free(ms->e);
	ms->e = NULL;
	ms->ne = ms->ie = 0;
}

static struct entry *entry_add(struct mc_session *ms, int awaits)
{
	ms->e = xrealloc(ms->e, (ms->ne + 1) * sizeof *ms->e);
	struct entry *e = &ms->e[ms->ne++];
	memset(e, 0, sizeof *e);
	sbuf_init(&e->pkt);
	e->awaits = awaits;
	return e;
}

static void op_finish(struct mc_session *ms, const struct mc_result *r)
{
	entries_clear(ms);
	ms->kind_was_eom = ms->kind == 'E';
	ms->kind = 0;
	ms->waiting = 0;
	free(ms->a1);
	ms->a1 = NULL;
	for (size_t i = 0; i < ms->nargs; i++)
		free(ms->args[i]);
	free(ms->args);
	ms->args = NULL;
	ms->nargs = 0;
	free(ms->addr);
	ms->addr = NULL;
	ms->msg = NULL;
	if (ms->kind_was_eom)
		for (size_t i = 0; i < ms->n; i++)
			ms->m[i].in_msg = 0;	/* the message is over: no 'A' needed */
	ms->final = *r;
	event_active(ms->done_ev, 0, 0);
}

static void deliver_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mc_session *ms = arg;
	mc_done_fn done = ms->done;
	ms->done = NULL;
	if (done)
		done(ms->arg, &ms->final);
}

static void set_reply(struct mc_result *r, enum mc_verdict v, int code, const char *dsn, const char *text,
		      const char *milter)
{
	memset(r, 0, sizeof *r);
	r->verdict = v;
	r->code = code;
	snprintf(r->dsn, sizeof r->dsn, "%s", dsn);
	snprintf(r->text, sizeof r->text, "%s", text);
	snprintf(r->milter, sizeof r->milter, "%s", milter);
}

static void milter_close(struct mc_milter *m)
{
	if (m->bev) {
		bufferevent_free(m->bev);
		m->bev = NULL;
	}
	if (m->timer)
		evtimer_del(m->timer);
	milter_parser_free(&m->parser);
}

/* The milter broke: log, apply its default action, and go on with the stage. */
static void milter_fail(struct mc_milter *m, const char *why)
{
	struct mc_session *ms = m->ms;
	enum mc_default d = m->conf.default_action;
	log_event(qid(ms), "warning: milter %s: %s; default_action=%s", m->conf.name, why, mc_default_name(d));
	mta_metrics_milter_failure(m->conf.name, mc_default_name(d));
	milter_close(m);
	m->state = M_DEAD;
	int current = ms->kind && ms->cur < ms->n && &ms->m[ms->cur] == m;
	if (d == MC_DEF_TEMPFAIL || d == MC_DEF_REJECT) {
		/* every later stage of this session gets the same answer */
		if (d == MC_DEF_TEMPFAIL)
			set_reply(&ms->sticky, MC_TEMPFAIL, 451, "4.7.1", "Service unavailable - try again later",
				  m->conf.name);
		else
			set_reply(&ms->sticky, MC_REJECT, 550, "5.7.1", "Service unavailable", m->conf.name);
		if (ms->kind)
			op_finish(ms, &ms->sticky);
		return;
	}
	if (d == MC_DEF_QUARANTINE) {
		ms->quarantine_pending = 1;
		if (ms->msg && !ms->msg->quarantine)
			ms->msg->quarantine = xasprintf("milter %s failed (default_action=quarantine)", m->conf.name);
	}
	if (!current)
		return;
	entries_clear(ms);
	ms->waiting = 0;
	ms->cur++;
	op_next(ms);
}

static void arm(struct mc_milter *m, long long secs)
{
	struct timeval tv = { secs, 0 };
	evtimer_add(m->timer, &tv);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mc_milter *m = arg;
	milter_fail(m, m->state == M_CONNECTING ? "connect timeout" : "timeout waiting for a reply");
}

/* ------------------------------------------------------------- macros */

static void add_macros(struct mc_milter *m, struct sbuf *b, int cmd)
{
	int st = milter_cmd_macro_stage(cmd);
	if (st < 0 || st >= MILTER_SMFIM_COUNT)
		return;
	const char *names = m->lists[st] ? m->lists[st] : m->ms->macros.list[st];
	if (!names || !*names)
		return;
	struct milter_macro mv[64];
	size_t n = 0;
	char *copy = xstrdup(names);
	for (char *save = NULL, *t = strtok_r(copy, " ,\t", &save); t && n < 64; t = strtok_r(NULL, " ,\t", &save)) {
		const char *v = m->ms->macro(m->ms->macro_arg, t);
		if (v) {
			mv[n].name = t;
			mv[n].value = v;
			n++;
		}
	}
	if (n)
		milter_build_macros(b, cmd, mv, n);
	free(copy);
}

/* ------------------------------------------------------------ stage entries */

static void build_stage(struct mc_milter *m)
{
	struct mc_session *ms = m->ms;
	int cmd = ms->kind;
	if (!milter_cmd_sent(cmd, m->steps))
		return;
	struct entry *e = entry_add(ms, milter_cmd_awaits_reply(cmd, m->steps));
	add_macros(m, &e->pkt, cmd);
	switch (cmd) {
	case 'C':
		milter_build_connect(&e->pkt, ms->a1, ms->family, (uint16_t)ms->port, ms->addr);
		break;
	case 'H':
		milter_build_helo(&e->pkt, ms->a1);
		break;
	case 'M':
		milter_build_mail(&e->pkt, ms->a1, (const char *const *)ms->args, ms->nargs);
		break;
	case 'R':
		milter_build_rcpt(&e->pkt, ms->a1, (const char *const *)ms->args, ms->nargs);
		break;
	case 'T':
		milter_build_simple(&e->pkt, 'T');
		break;
	case 'U':
		milter_build_unknown(&e->pkt, ms->a1);
		break;
	}
}

/* headers, end of headers, body (CRLF), end of message for one milter */
static void build_content(struct mc_milter *m)
{
	struct mc_session *ms = m->ms;
	struct mc_message *msg = ms->msg;
	int lead = (m->steps & MILTER_SMFIP_HDR_LEADSPC) != 0;
	if (!(m->steps & MILTER_SMFIP_NOHDRS))
		for (size_t i = 0; i < msg->nh; i++) {
			struct entry *e = entry_add(ms, !(m->steps & MILTER_SMFIP_NR_HDR));
			const char *v = msg->h[i].value;
			if (!lead && v[0] == ' ')
				v++;
			milter_build_header(&e->pkt, msg->h[i].name, v);
		}
	if (!(m->steps & MILTER_SMFIP_NOEOH)) {
		struct entry *e = entry_add(ms, !(m->steps & MILTER_SMFIP_NR_EOH));
		add_macros(m, &e->pkt, 'N');
		milter_build_simple(&e->pkt, 'N');
	}
	if (!(m->steps & MILTER_SMFIP_NOBODY)) {
		struct sbuf crlf;
		sbuf_init(&crlf);
		for (size_t i = 0; i < msg->body.len; i++) {
			if (msg->body.buf[i] == '\n')
				sbuf_addc(&crlf, '\r');
			sbuf_addc(&crlf, msg->body.buf[i]);
		}
		for (size_t off = 0; off < crlf.len; off += BODY_CHUNK) {
			struct entry *e = entry_add(ms, !(m->steps & MILTER_SMFIP_NR_BODY));
			e->is_body = 1;
			size_t l = crlf.len - off < BODY_CHUNK ? crlf.len - off : BODY_CHUNK;
			milter_build_body(&e->pkt, crlf.buf + off, l);
		}
		sbuf_free(&crlf);
	}
	struct entry *e = entry_add(ms, 1);
	e->is_eom = 1;
	add_macros(m, &e->pkt, 'E');
	milter_build_simple(&e->pkt, 'E');
}

/* ----------------------------------------------------------- the driver */

static int wants(struct mc_milter *m, int kind)
{
	if (m->state == M_DEAD || m->skip_conn)
		return 0;
	if (kind != 'C' && kind != 'H' && kind != 'U' && m->skip_msg)
		return 0;
	return 1;
}

static void start_connect(struct mc_milter *m);

static void op_next(struct mc_session *ms)
{
	while (ms->cur < ms->n) {
		struct mc_milter *m = &ms->m[ms->cur];
		if (!wants(m, ms->kind)) {
			ms->cur++;
			continue;
		}
		if (m->state == M_NEW) {
			start_connect(m);
			return;
		}
		if (m->state != M_READY) {
			ms->cur++;
			continue;
		}
		entries_clear(ms);
		if (ms->kind == 'E')
			build_content(m);
		else
			build_stage(m);
		if (ms->kind == 'M')
			m->in_msg = 1;
		if (ms->ne == 0) {
			ms->cur++;
			continue;
		}
		op_send(m);
		return;
	}
	struct mc_result r;
	memset(&r, 0, sizeof r);
	op_finish(ms, &r);
}

static void op_send(struct mc_milter *m)
{
	struct mc_session *ms = m->ms;
	while (ms->ie < ms->ne) {
		struct entry *e = &ms->e[ms->ie];
		bufferevent_write(m->bev, e->pkt.buf, e->pkt.len);
		if (e->awaits) {
			ms->waiting = 1;
			arm(m, e->is_body || e->is_eom ? m->conf.content_timeout_s : m->conf.command_timeout_s);
			return;
		}
		ms->ie++;
	}
	/* nothing awaited a reply: this milter is done with the stage */
	ms->cur++;
	op_next(ms);
}

static void custom_reply(struct mc_result *r, const struct milter_packet *p, const char *milter)
{
	/* "550 5.7.1 text" with '%' doubled; DSN optional */
	const char *t = p->reply.text;
	char text[512];
	size_t o = 0;
	for (size_t i = 0; t[i] && o + 1 < sizeof text; i++) {
		if (t[i] == '%' && t[i + 1] == '%')
			i++;
		text[o++] = t[i];
	}
	text[o] = 0;
	const char *rest = text;
	if (strlen(rest) >= 3)
		rest += 3;
	while (*rest == ' ' || *rest == '-')
		rest++;
	char dsn[16];
	snprintf(dsn, sizeof dsn, "%d.7.1", p->reply.code / 100);
	if (rest[0] == dsn[0] && rest[1] == '.') {
		size_t dl = strcspn(rest, " ");
		if (dl < sizeof dsn) {
			snprintf(dsn, sizeof dsn, "%.*s", (int)dl, rest);
			rest += dl;
			while (*rest == ' ')
				rest++;
		}
	}
	set_reply(r, p->reply.code >= 500 ? MC_REJECT : MC_TEMPFAIL, p->reply.code, dsn,
		  *rest ? rest : "Command rejected", milter);
}

static char *strip_brackets(const char *a)
{
	size_t l = strlen(a);
	if (l >= 2 && a[0] == '<' && a[l - 1] == '>')
		return xstrndup(a + 1, l - 2);
	return xstrdup(a);
}

static size_t header_pos(struct mc_message *msg, const char *name, uint32_t index)
{
	uint32_t seen = 0;
	for (size_t i = 0; i < msg->nh; i++)
		if (!ascii_strcasecmp(msg->h[i].name, name) && ++seen == index)
			return i;
	return (size_t)-1;
}

static void apply_mod(struct mc_milter *m, const struct milter_packet *p)
{
	struct mc_message *msg = m->ms->msg;
	int lead = (m->steps & MILTER_SMFIP_HDR_LEADSPC) != 0;
	const char *v = p->header.value;
	char *val = (p->cmd == 'h' || p->cmd == 'i' || p->cmd == 'm') && v
			    ? (lead || !*v ? xstrdup(v) : xasprintf(" %s", v))
			    : NULL;
	switch (p->cmd) {
	case 'h':
		msg_add_header(msg, msg->nh, p->header.name, strlen(p->header.name), val, strlen(val));
		msg->changed = 1;
		break;
	case 'i':
		msg_add_header(msg, p->header.index, p->header.name, strlen(p->header.name), val, strlen(val));
		msg->changed = 1;
		break;
	case 'm': {
		size_t at = header_pos(msg, p->header.name, p->header.index);
		if (at == (size_t)-1) {
			if (*v)	/* changing a header that is not there adds it */
				msg_add_header(msg, msg->nh, p->header.name, strlen(p->header.name), val, strlen(val));
		} else if (!*v) {
			free(msg->h[at].name);
			free(msg->h[at].value);
			memmove(msg->h + at, msg->h + at + 1, (msg->nh - at - 1) * sizeof *msg->h);
			msg->nh--;
		} else {
			free(msg->h[at].value);
			msg->h[at].value = xstrdup(val);
		}
		msg->changed = 1;
		break;
	}
	case '+':
	case '-':
	case '2':
		msg->rcpt_ops = xrealloc(msg->rcpt_ops, (msg->nrcpt_ops + 1) * sizeof *msg->rcpt_ops);
		msg->rcpt_ops[msg->nrcpt_ops].add = p->cmd != '-';
		msg->rcpt_ops[msg->nrcpt_ops].addr = strip_brackets(p->env.addr);
		msg->rcpt_ops[msg->nrcpt_ops].args = p->cmd == '2' && p->env.nargs ? xstrdup(p->env.args[0]) : NULL;
		msg->nrcpt_ops++;
		break;
	case 'e':
		free(msg->new_sender);
		free(msg->new_sender_args);
		msg->new_sender = strip_brackets(p->env.addr);
		msg->new_sender_args = p->env.nargs ? xstrdup(p->env.args[0]) : NULL;
		break;
	case 'b':
		if (!m->ms->body_started) {
			sbuf_reset(&msg->body);
			m->ms->body_started = 1;
			msg->has_separator = 1;
		}
		sbuf_add(&msg->body, p->body, p->body_len);
		msg->changed = 1;
		break;
	case 'q':
		free(msg->quarantine);
		msg->quarantine = xstrdup(p->str && *p->str ? p->str : "quarantined by milter");
		break;
	}
	free(val);
}

/* CRLF -> LF in a replaced body */
static void body_to_lf(struct sbuf *b)
{
	size_t o = 0;
	for (size_t i = 0; i < b->len; i++) {
		if (b->buf[i] == '\r' && i + 1 < b->len && b->buf[i + 1] == '\n')
			continue;
		b->buf[o++] = b->buf[i];
	}
	b->len = o;
	if (b->buf)
		b->buf[o] = 0;
}

static int mod_allowed(struct mc_milter *m, int cmd)
{
	switch (cmd) {
	case 'h': return (m->actions & MILTER_SMFIF_ADDHDRS) != 0;
	case 'i': return (m->actions & MILTER_SMFIF_ADDHDRS) != 0;
	case 'm': return (m->actions & MILTER_SMFIF_CHGHDRS) != 0;
	case '+': return (m->actions & MILTER_SMFIF_ADDRCPT) != 0;
	case '-': return (m->actions & MILTER_SMFIF_DELRCPT) != 0;
	case '2': return (m->actions & MILTER_SMFIF_ADDRCPT_PAR) != 0;
	case 'e': return (m->actions & MILTER_SMFIF_CHGFROM) != 0;
	case 'b': return (m->actions & MILTER_SMFIF_CHGBODY) != 0;
	case 'q': return (m->actions & MILTER_SMFIF_QUARANTINE) != 0;
	default: return 0;
	}
}

/*
 * filter_name - the filter= of a decision line (docs/EVENTS.md): the
 * socket's base name without ".sock" ("unix:/run/sluice/dkim.sock" -> "dkim",
 * as `sluice start` names them), else the milter's configured address.
 * Writes into buf (size n); returns buf.
 */
static const char *filter_name(const char *spec, char *buf, size_t n)
{
	const char *slash = strrchr(spec, '/');
	const char *b = slash ? slash + 1 : spec;
	size_t l = strlen(b);
	if (l > 5 && !strcmp(b + l - 5, ".sock"))
		snprintf(buf, n, "%.*s", (int)(l - 5), b);
	else
		snprintf(buf, n, "%s", spec);
	return buf;
}

static void log_decision(struct mc_milter *m, const char *action, const struct mc_result *r)
{
	struct mc_session *ms = m->ms;
	char fn[256];
	filter_name(m->conf.name, fn, sizeof fn);
	if (r && r->code)
		log_event(qid(ms), "milter=%s stage=%s action=%s reply=\"%d %s %s\" filter=%s", m->conf.name,
			  stage_name(ms->kind), action, r->code, r->dsn, r->text, fn);
	else
		log_event(qid(ms), "milter=%s stage=%s action=%s filter=%s", m->conf.name,
			  stage_name(ms->kind), action, fn);
}

/* One reply packet for the running stage. */
static void on_reply(struct mc_milter *m, const struct milter_packet *p)
{
	struct mc_session *ms = m->ms;
	struct entry *e = ms->ie < ms->ne ? &ms->e[ms->ie] : NULL;
	if (!ms->waiting || !e) {
		milter_fail(m, "unexpected reply");
		return;
	}
	struct mc_result r;
	memset(&r, 0, sizeof r);
	if (p->cmd == 'p') {	/* progress: keep waiting, with a fresh timeout */
		arm(m, m->conf.content_timeout_s);
		return;
	}
	if (milter_reply_is_modification(p->cmd)) {
		if (!e->is_eom || !mod_allowed(m, p->cmd)) {
			milter_fail(m, "modification not allowed here");
			return;
		}
		apply_mod(m, p);
		arm(m, m->conf.content_timeout_s);
		return;
	}
	evtimer_del(m->timer);
	ms->waiting = 0;
	if (ms->body_started && ms->msg) {
		body_to_lf(&ms->msg->body);
		ms->body_started = 0;
	}
	switch (p->cmd) {
	case 'c':
		if (e->is_eom) {
			log_decision(m, "continue", NULL);
			ms->cur++;
			op_next(ms);
			return;
		}
		ms->ie++;
		op_send(m);
		return;
	case 's':
		if (e->is_body) {
			while (ms->ie < ms->ne && !ms->e[ms->ie].is_eom)
				ms->ie++;
		} else {
			ms->ie++;
		}
		op_send(m);
		return;
	case 'a':
		log_decision(m, "accept", NULL);
		if (ms->kind == 'C' || ms->kind == 'H')
			m->skip_conn = 1;
		else
			m->skip_msg = 1;
		ms->cur++;
		op_next(ms);
		return;
	case 'r':
		set_reply(&r, MC_REJECT, ms->kind == 'C' ? 554 : 550, "5.7.1", "Command rejected", m->conf.name);
		break;
	case 't':
		set_reply(&r, MC_TEMPFAIL, 451, "4.7.1", "Service unavailable - try again later", m->conf.name);
		break;
	case 'y':
		custom_reply(&r, p, m->conf.name);
		break;
	case 'd':
		set_reply(&r, MC_DISCARD, 250, "2.0.0", "Ok", m->conf.name);
		break;
	case 'f':
	case '4':
		set_reply(&r, MC_SHUTDOWN, 421, "4.7.0", "Service not available, closing transmission channel",
			  m->conf.name);
		break;
	default:
		milter_fail(m, "unknown reply");
		return;
	}
	log_decision(m, r.verdict == MC_DISCARD ? "discard" : r.verdict == MC_REJECT ? "reject"
			: r.verdict == MC_TEMPFAIL ? "tempfail" : "shutdown", &r);
	op_finish(ms, &r);
}

static void on_optneg(struct mc_milter *m, const struct milter_packet *p)
{
	evtimer_del(m->timer);
	if (p->cmd != 'O' || p->optneg.version < 2 || p->optneg.version > MC_VERSION) {
		milter_fail(m, "bad option negotiation reply");
		return;
	}
	m->actions = p->optneg.actions & MC_ACTIONS;
	m->steps = p->optneg.steps & MC_STEPS;
	for (size_t i = 0; i < p->optneg.nlists; i++)
		if (p->optneg.lists[i].stage < MILTER_SMFIM_COUNT) {
			free(m->lists[p->optneg.lists[i].stage]);
			m->lists[p->optneg.lists[i].stage] = xstrdup(p->optneg.lists[i].names);
		}
	m->state = M_READY;
	op_next(m->ms);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct mc_milter *m = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char buf[16384];
	int n;
	while ((n = evbuffer_remove(in, buf, sizeof buf)) > 0)
		milter_parser_feed(m->parser, buf, (size_t)n);
	if (m->tcp) {
		/*
		 * Acknowledge at once. A milter without TCP_NODELAY (OpenDKIM 2.11)
		 * writes a modification ('i') and then its verdict ('c') in two
		 * writes; Nagle holds the verdict until the first is acknowledged,
		 * and our delayed ACK would make that ~40 ms per message.
		 * TCP_QUICKACK sends the pending ACK now (it is not sticky, hence
		 * after every read).
		 */
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	}
	for (;;) {
		struct milter_packet p;
		enum milter_next r = milter_parser_next(m->parser, &p);
		if (r == MILTER_NEED_MORE)
			return;
		if (r == MILTER_ERROR) {
			milter_fail(m, milter_parser_error(m->parser));
			return;
		}
		enum mstate before = m->state;
		if (m->state == M_NEGOTIATING)
			on_optneg(m, &p);
		else
			on_reply(m, &p);
		/* the milter may have been closed, or the stage finished */
		if (m->state != before && m->state == M_DEAD)
			return;
		if (!m->parser)
			return;
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct mc_milter *m = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		m->tcp = strncmp(m->conf.spec, "unix:", 5) != 0;
		if (m->tcp)
			setsockopt(bufferevent_getfd(m->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		m->state = M_NEGOTIATING;
		struct sbuf b;
		sbuf_init(&b);
		milter_build_optneg(&b, MC_VERSION, MC_ACTIONS, MC_STEPS, NULL, 0);
		bufferevent_write(m->bev, b.buf, b.len);
		sbuf_free(&b);
		arm(m, m->conf.command_timeout_s);
		return;
	}
	milter_fail(m, (what & BEV_EVENT_EOF) ? "connection closed by the milter"
					     : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void start_connect(struct mc_milter *m)
{
	struct mc_session *ms = m->ms;
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof ss);
	if (!strncmp(m->conf.spec, "unix:", 5)) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof sun->sun_path, "%s", m->conf.spec + 5);
		sl = sizeof *sun;
	} else {
		char host[256], port[32];
		struct addrinfo hints = { 0 }, *res = NULL;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		if (listen_parse_hostport(m->conf.spec + 5, host, sizeof host, port, sizeof port) < 0 ||
		    getaddrinfo(host, port, &hints, &res) != 0) {
			m->state = M_CONNECTING;
			milter_fail(m, "cannot resolve the milter address");
			return;
		}
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sl = res->ai_addrlen;
		freeaddrinfo(res);
	}
	m->parser = milter_parser_new(MILTER_SIDE_MTA, 0);
	m->bev = bufferevent_socket_new(ms->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(m->bev, on_read, NULL, on_event, m);
	bufferevent_enable(m->bev, EV_READ | EV_WRITE);
	m->state = M_CONNECTING;
	arm(m, m->conf.connect_timeout_s);
	if (bufferevent_socket_connect(m->bev, (struct sockaddr *)&ss, (int)sl) < 0)
		milter_fail(m, "connect failed");
}

/* --------------------------------------------------------------- public */

struct mc_session *mc_session_new(struct event_base *base, const struct mc_conf *conf, size_t n,
				  const struct mc_macro_lists *macros, mc_macro_fn macro, void *macro_arg,
				  const char *qid_for_logs)
{
	struct mc_session *ms = xcalloc(1, sizeof *ms);
	ms->base = base;
	ms->n = n;
	ms->m = xcalloc(n ? n : 1, sizeof *ms->m);
	for (int i = 0; i < 7; i++)
		ms->macros.list[i] = xstrdup(macros->list[i] ? macros->list[i] : "");
	ms->macro = macro;
	ms->macro_arg = macro_arg;
	mc_set_qid(ms, qid_for_logs);
	ms->done_ev = event_new(base, -1, 0, deliver_done, ms);
	for (size_t i = 0; i < n; i++) {
		struct mc_milter *m = &ms->m[i];
		m->ms = ms;
		m->conf = conf[i];
		m->conf.name = xstrdup(conf[i].name);
		m->conf.spec = xstrdup(conf[i].spec);
		m->timer = evtimer_new(base, on_timeout, m);
	}
	return ms;
}

void mc_session_free(struct mc_session **msp)
{
	struct mc_session *ms = *msp;
	if (!ms)
		return;
	ms->done = NULL;
	for (size_t i = 0; i < ms->n; i++) {
		struct mc_milter *m = &ms->m[i];
		if (m->state == M_READY && m->bev) {
			/* 'Q' then close; the kernel sends it after we are gone */
			static const char quit[5] = { 0, 0, 0, 1, 'Q' };
			evutil_socket_t fd = bufferevent_getfd(m->bev);
			if (fd >= 0 && evbuffer_get_length(bufferevent_get_output(m->bev)) == 0) {
				ssize_t w = send(fd, quit, sizeof quit, MSG_NOSIGNAL | MSG_DONTWAIT);
				(void)w;
			}
		}
		milter_close(m);
		event_free(m->timer);
		for (int s = 0; s < MILTER_SMFIM_COUNT; s++)
			free(m->lists[s]);
		free(m->conf.name);
		free(m->conf.spec);
	}
	entries_clear(ms);
	event_free(ms->done_ev);
	for (int i = 0; i < 7; i++)
		free((char *)ms->macros.list[i]);
	free(ms->a1);
	for (size_t i = 0; i < ms->nargs; i++)
		free(ms->args[i]);
	free(ms->args);
	free(ms->addr);
	free(ms->m);
	free(ms);
	*msp = NULL;
}

int mc_active(const struct mc_session *ms)
{
	if (!ms)
		return 0;
	if (ms->sticky.verdict)
		return 1;
	for (size_t i = 0; i < ms->n; i++)
		if (ms->m[i].state != M_DEAD && !ms->m[i].skip_conn)
			return 1;
	return 0;
}

void mc_set_qid(struct mc_session *ms, const char *q)
{
	if (!ms)
		return;
	snprintf(ms->qid, sizeof ms->qid, "%s", q ? q : "");
}

static void op_start(struct mc_session *ms, int kind, mc_done_fn done, void *arg)
{
	if (ms->kind)
		panic("milter_client: a stage is already running");
	ms->kind = kind;
	ms->cur = 0;
	ms->done = done;
	ms->arg = arg;
	if (ms->sticky.verdict) {
		struct mc_result r = ms->sticky;
		op_finish(ms, &r);
		return;
	}
	op_next(ms);
}

static void set_args(struct mc_session *ms, const char *a1, const char *const *args, size_t n)
{
	ms->a1 = xstrdup(a1 ? a1 : "");
	ms->args = xcalloc(n + 1, sizeof *ms->args);
	for (size_t i = 0; i < n; i++)
		ms->args[i] = xstrdup(args[i]);
	ms->nargs = n;
}

void mc_connect(struct mc_session *ms, const char *hostname, int family, unsigned port, const char *addr,
		mc_done_fn done, void *arg)
{
	set_args(ms, hostname, NULL, 0);
	ms->family = family;
	ms->port = port;
	ms->addr = xstrdup(addr ? addr : "");
	op_start(ms, 'C', done, arg);
}

void mc_helo(struct mc_session *ms, const char *helo, mc_done_fn done, void *arg)
{
	set_args(ms, helo, NULL, 0);
	op_start(ms, 'H', done, arg);
}

void mc_mail(struct mc_session *ms, const char *sender, const char *const *args, size_t nargs,
	     mc_done_fn done, void *arg)
{
	char *s = xasprintf("<%s>", sender);
	set_args(ms, s, args, nargs);
	free(s);
	for (size_t i = 0; i < ms->n; i++)
		ms->m[i].skip_msg = 0;
	op_start(ms, 'M', done, arg);
}

void mc_rcpt(struct mc_session *ms, const char *rcpt, const char *const *args, size_t nargs,
	     mc_done_fn done, void *arg)
{
	char *s = xasprintf("<%s>", rcpt);
	set_args(ms, s, args, nargs);
	free(s);
	op_start(ms, 'R', done, arg);
}

void mc_data(struct mc_session *ms, mc_done_fn done, void *arg)
{
	set_args(ms, "", NULL, 0);
	op_start(ms, 'T', done, arg);
}

void mc_unknown(struct mc_session *ms, const char *line, mc_done_fn done, void *arg)
{
	set_args(ms, line, NULL, 0);
	op_start(ms, 'U', done, arg);
}

void mc_eom(struct mc_session *ms, struct mc_message *msg, mc_done_fn done, void *arg)
{
	ms->msg = msg;
	ms->body_started = 0;
	if (ms->quarantine_pending && !msg->quarantine)
		msg->quarantine = xstrdup("a milter failed (default_action=quarantine)");
	op_start(ms, 'E', done, arg);
}

void mc_abort(struct mc_session *ms)
{
	if (!ms)
		return;
	for (size_t i = 0; i < ms->n; i++) {
		struct mc_milter *m = &ms->m[i];
		if (m->state == M_READY && m->in_msg && m->bev) {
			struct sbuf b;
			sbuf_init(&b);
			milter_build_simple(&b, 'A');
			bufferevent_write(m->bev, b.buf, b.len);
			sbuf_free(&b);
		}
		m->in_msg = 0;
		m->skip_msg = 0;
	}
}
