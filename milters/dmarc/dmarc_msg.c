#include "milters/dmarc/dmarc_msg.h"
#include "milters/dmarc/dmarc_auth.h"
#include "milters/dmarc/dmarc_dns.h"
#include "milters/dmarc/dmarc_failrep.h"
#include "milters/dmarc/dmarc_hdr.h"
#include "milters/dkim/dkim_cfg.h"
#include "milters/dkim/dkim_keys.h"
#include "milters/dkim/dkim_msg.h"
#include "proto/authres.h"
#include "proto/rfc5322.h"
#include "lib/log.h"
#include "lib/util.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Headers we read ourselves (sluice-dkim keeps its own copy of all of them). */
struct hlist {
	struct dmarc_auth_hv *v;
	size_t n, cap;
};

struct dmarc_msg {
	struct dmarc_cfg *cfg;
	char *qid;
	char *client_ip, *helo, *mail_from;
	int authenticated;
	int skip;			/* ignored host / authenticated client */
	const char *skip_why;
	char *rcpt_domains;		/* distinct, comma-separated */
	struct hlist from, ar, sig, rspf;
	size_t nxsd;			/* X-Sluice-DMARC headers */
	size_t nhdrs, hdr_bytes;
	int over_cap;
	int eoh_done;
	struct dkim_msg *dk;		/* our DKIM verification, or NULL */
	/* for failure reports only (cfg->failrep): the whole header, the recipients */
	struct dmarc_failrep_header *all;
	size_t nall, capall;
	char **rcpts;
	size_t nrcpts;
	time_t arrival;
};

const char *dmarc_msg_action_name(enum dmarc_msg_action a)
{
	static const char *const n[] = { "accept", "reject", "tempfail", "quarantine" };
	return (unsigned)a < 4 ? n[a] : "accept";
}

static void hl_add(struct hlist *l, const char *v, size_t len)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 4;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n].value = xstrndup(v, len);
	l->v[l->n].len = len;
	l->n++;
}

static void hl_free(struct hlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].value);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

struct dmarc_msg *dmarc_msg_new(struct dmarc_cfg *cfg, const char *qid,
				const struct dmarc_msg_conn *ci, const char *mail_from)
{
	struct dmarc_msg *m = xcalloc(1, sizeof(*m));
	m->cfg = dmarc_cfg_ref(cfg);
	m->qid = xstrdup(qid && *qid ? qid : "NOQUEUE");
	m->client_ip = xstrdup(ci && ci->client_ip ? ci->client_ip : "");
	m->helo = xstrdup(ci && ci->helo ? ci->helo : "");
	m->mail_from = xstrdup(mail_from ? mail_from : "");
	m->authenticated = ci ? ci->authenticated : 0;
	m->rcpt_domains = xstrdup("");
	m->arrival = time(NULL);
	if (m->authenticated && cfg->ignore_authenticated) {
		m->skip = 1;
		m->skip_why = "authenticated_client";
	} else if (m->client_ip[0] && dkim_hosts_match(cfg->ignore_hosts, m->client_ip)) {
		m->skip = 1;
		m->skip_why = "ignored_host";
	} else if (m->client_ip[0] == 0) {
		/* no client address: local submission (Postfix pickup, non_smtpd_milters) */
		m->skip = 1;
		m->skip_why = "local_submission";
	}
	if (!m->skip)
		m->dk = dkim_msg_new(cfg->dkim, m->qid, 0);
	return m;
}

void dmarc_msg_set_qid(struct dmarc_msg *m, const char *qid)
{
	if (qid == NULL || *qid == 0)
		return;
	free(m->qid);
	m->qid = xstrdup(qid);
	if (m->dk)
		dkim_msg_set_qid(m->dk, qid);
}

/* A domain is logged as is only when it is made of domain characters. */
static int tokenish(const char *s)
{
	if (*s == 0)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '.' || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

void dmarc_msg_rcpt(struct dmarc_msg *m, const char *rcpt)
{
	if (m->cfg->failrep && m->nrcpts < DMARC_FAILREP_MAX_RCPT) {
		m->rcpts = xrealloc(m->rcpts, (m->nrcpts + 1) * sizeof(*m->rcpts));
		m->rcpts[m->nrcpts++] = xstrdup(rcpt);
	}
	const char *d = dmarc_hdr_addr_domain(rcpt);
	if (d == NULL || !tokenish(d) || strlen(m->rcpt_domains) > 1000)
		return;
	char *low = xstrdup(d);
	ascii_lower(low);
	/* distinct only */
	size_t l = strlen(low);
	for (const char *p = m->rcpt_domains; *p;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == l && memcmp(p, low, l) == 0) {
			free(low);
			return;
		}
		p += n + (e ? 1 : 0);
	}
	char *n = xasprintf("%s%s%s", m->rcpt_domains, m->rcpt_domains[0] ? "," : "", low);
	free(m->rcpt_domains);
	m->rcpt_domains = n;
	free(low);
}

void dmarc_msg_header(struct dmarc_msg *m, const char *name, const char *value)
{
	if (m->skip || m->eoh_done || m->over_cap)
		return;
	size_t vl = strlen(value);
	if (m->nhdrs >= DMARC_MSG_MAX_HEADERS || m->hdr_bytes + vl > DMARC_MSG_MAX_HEADER_BYTES) {
		m->over_cap = 1;
		return;
	}
	m->nhdrs++;
	m->hdr_bytes += vl + strlen(name);
	if (ascii_strcasecmp(name, "From") == 0)
		hl_add(&m->from, value, vl);
	else if (ascii_strcasecmp(name, "Authentication-Results") == 0)
		hl_add(&m->ar, value, vl);
	else if (ascii_strcasecmp(name, "DKIM-Signature") == 0)
		hl_add(&m->sig, value, vl);
	else if (ascii_strcasecmp(name, "Received-SPF") == 0)
		hl_add(&m->rspf, value, vl);
	else if (ascii_strcasecmp(name, "X-Sluice-DMARC") == 0)
		m->nxsd++;
	if (m->cfg->failrep) {
		if (m->nall == m->capall) {
			m->capall = m->capall ? 2 * m->capall : 32;
			m->all = xrealloc(m->all, m->capall * sizeof(*m->all));
		}
		m->all[m->nall].name = xstrdup(name);
		m->all[m->nall].value = xstrdup(value);
		m->nall++;
	}
	if (m->dk)
		dkim_msg_header(m->dk, name, value);
}

/* view - what dmarc_auth reads of the message. */
static struct dmarc_auth_msg view(const struct dmarc_msg *m)
{
	struct dmarc_auth_msg v = { 0 };
	v.cfg = m->cfg;
	v.mail_from = m->mail_from;
	v.helo = m->helo;
	v.client_ip = m->client_ip;
	v.ar = m->ar.v;
	v.nar = m->ar.n;
	v.sig = m->sig.v;
	v.nsig = m->sig.n;
	v.rspf = m->rspf.v;
	v.nrspf = m->rspf.n;
	return v;
}

static int trusted_has(const struct dmarc_msg *m)
{
	struct dmarc_auth_msg v = view(m);
	return dmarc_auth_trusted_has(&v, "dkim");
}

void dmarc_msg_eoh(struct dmarc_msg *m)
{
	if (m->eoh_done)
		return;
	m->eoh_done = 1;
	if (m->dk == NULL)
		return;
	/* DKIM is verified here unless a trusted header already says it */
	if (m->over_cap || m->from.n != 1 || (!m->cfg->self_validate && trusted_has(m))) {
		dkim_msg_free(&m->dk);
		return;
	}
	dkim_msg_eoh(m->dk);
}

int dmarc_msg_wants_body(const struct dmarc_msg *m)
{
	return m->dk != NULL && m->sig.n > 0;
}

void dmarc_msg_body(struct dmarc_msg *m, const unsigned char *buf, size_t len)
{
	if (m->dk && m->eoh_done && m->sig.n > 0)
		dkim_msg_body(m->dk, buf, len);
}

/* ---- the decision ---- */

struct dom_eval {
	const char *domain;		/* borrowed from the From list */
	struct dmarc_check *chk;	/* NULL when the deadline passed first */
	const struct dmarc_outcome *o;
	enum dmarc_result result;
	enum dmarc_disposition disp;
	int ignored;
};

static unsigned pct_roll(const struct dmarc_cfg *cfg)
{
	if (cfg->pct_roll >= 0)
		return (unsigned)cfg->pct_roll;
	unsigned r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (unsigned)now_ms();
	return r % 100;
}

static const char *policy_tag(enum dmarc_policy p)
{
	return p == DMARC_POLICY_UNSET ? "-" : dmarc_policy_name(p);
}

static char *reply_text(const struct dmarc_cfg *cfg, const char *dom)
{
	struct sbuf b;
	sbuf_init(&b);
	for (const char *p = cfg->reject_reply; *p; p++) {
		if (*p == '%' && p[1] == 'd') {
			sbuf_adds(&b, tokenish(dom) ? dom : "the sender's domain");
			p++;
		} else if (*p == '%' && p[1] == '%') {
			sbuf_addc(&b, '%');
			p++;
		} else {
			sbuf_addc(&b, *p);
		}
	}
	return sbuf_steal(&b);
}

/* Common fields of every log line: the session and the auth results. */
static void log_auth(struct sbuf *b, struct dmarc_msg *m, const struct dmarc_auth_spf *spf,
		     const struct dmarc_auth_dkim *dk, size_t ndk, int dk_self)
{
	log_kv(b, "client_ip", m->client_ip[0] ? m->client_ip : "unknown");
	log_kv(b, "helo", m->helo);
	const char *efd = dmarc_hdr_addr_domain(m->mail_from);
	log_kv(b, "envelope_from", m->mail_from[0] == 0 ? "<>" : efd ? efd : m->mail_from);
	log_kv(b, "envelope_to", m->rcpt_domains);
	if (spf && spf->have) {
		char t[400];
		snprintf(t, sizeof(t), "%s/%s/%s", spf->domain[0] ? spf->domain : "-",
			 spf->helo_scope ? "helo" : "mfrom", dmarc_auth_result_name(spf->res));
		log_kv(b, "spf", t);
		log_kv(b, "spf_source", spf->self ? "self" : "trusted");
	} else {
		log_kv(b, "spf", "-");	/* not evaluated */
	}
	struct sbuf d;
	sbuf_init(&d);
	for (size_t i = 0; i < ndk; i++)
		sbuf_printf(&d, "%s%s/%s/%s", i ? "," : "", dk[i].d[0] ? dk[i].d : "-",
			    dk[i].s[0] ? dk[i].s : "-", dmarc_auth_result_name(dk[i].res));
	log_kv(b, "dkim", ndk ? d.buf : spf ? "none" : "-");
	if (spf)
		log_kv(b, "dkim_source", dk_self ? "self" : "trusted");
	sbuf_free(&d);
}

static void log_domain(struct sbuf *b, const struct dom_eval *e, size_t ndom)
{
	log_kv(b, "header_from", e->domain);
	sbuf_printf(b, " from_domains=%zu", ndom);
	const struct dmarc_outcome *o = e->o;
	const struct dmarc_record *r = o ? o->record : NULL;
	log_kv(b, "policy_domain", o && o->policy_domain ? o->policy_domain : "-");
	log_kv(b, "org_domain", o && o->org_domain ? o->org_domain : "-");
	log_kv(b, "discovery", o ? dmarc_discovery_name(o->discovery) : "-");
	log_kv(b, "p", r ? policy_tag(r->p) : "-");
	log_kv(b, "sp", r ? policy_tag(r->sp) : "-");
	log_kv(b, "np", r ? policy_tag(r->np) : "-");
	char ch[2] = { 0, 0 };
	ch[0] = r ? r->adkim : '-';
	log_kv(b, "adkim", ch);
	ch[0] = r ? r->aspf : '-';
	log_kv(b, "aspf", ch);
	ch[0] = r ? r->t : '-';
	log_kv(b, "t", ch);
	ch[0] = r ? r->psd : '-';
	log_kv(b, "psd", ch);
	if (r)
		sbuf_printf(b, " pct=%u", r->pct);
	else
		log_kv(b, "pct", "-");
	log_kv(b, "fo", r && r->fo ? r->fo : "-");
	log_kv(b, "rua", r && r->rua ? r->rua : "-");
	log_kv(b, "ruf", r && r->ruf ? r->ruf : "-");
	log_kv(b, "policy_applied", o ? dmarc_applied_name(o->applied) : "-");
	log_kv(b, "policy", o ? policy_tag(o->policy) : "-");
	log_kv(b, "disposition", dmarc_disposition_name(e->disp));
	log_kv(b, "override", e->ignored ? "local_policy" : o ? dmarc_override_name(o->override) : "none");
	sbuf_printf(b, " spf_aligned=%s dkim_aligned=%s", o && o->spf_aligned ? "pass" : "fail",
		    o && o->dkim_aligned ? "pass" : "fail");
	if (o && o->dkim_aligned)
		log_kv(b, "dkim_aligned_domain", o->dkim_domain);
	sbuf_printf(b, " dns_queries=%u", o ? o->dns_queries : 0);
	log_kv(b, "reason", o ? o->reason : "DNS deadline passed");
}

/*
 * log_common - issue 13's common keys after a decision line's own keys
 * (docs/EVENTS.md "sluice-dmarc"): filter, sender (the envelope sender as
 * given, "" for the null sender), result, and the stable code: as
 * reason_code= where the line carries reason="text" already, else reason=.
 * main.c adds ms= when it logs the line.
 */
static void log_common(struct sbuf *b, struct dmarc_msg *m, const char *result, const char *code,
		       int has_reason)
{
	sbuf_adds(b, " filter=dmarc");
	log_kv(b, "sender", m->mail_from);
	log_kv(b, "result", result);
	log_kv(b, has_reason ? "reason_code" : "reason", code);
}

/* the stable code of a From domain's verdict: dmarc_policy when its policy applied */
static const char *dom_code(const struct dom_eval *e)
{
	if (e->result == DMARC_RESULT_FAIL && e->disp != DMARC_DISP_NONE && !e->ignored)
		return "dmarc_policy";
	switch (e->result) {
	case DMARC_RESULT_PASS: return "dmarc_pass";
	case DMARC_RESULT_FAIL: return "dmarc_fail";
	case DMARC_RESULT_TEMPERROR: return "dmarc_temperror";
	case DMARC_RESULT_PERMERROR: return "dmarc_permerror";
	default: return "dmarc_none";
	}
}

static void ar_spf_dkim(struct authres_fmt *f, struct dmarc_msg *m, const struct dmarc_auth_spf *spf,
			const struct dmarc_auth_dkim *dk, size_t ndk, int dkim_self_done)
{
	if (spf->have && spf->self) {
		authres_fmt_result(f, "spf", spf_result_name(spf->spf), NULL, NULL);
		if (spf->helo_scope)
			authres_fmt_prop(f, "smtp", "helo", m->helo[0] ? m->helo : "unknown");
		else
			authres_fmt_prop(f, "smtp", "mailfrom", m->mail_from);
	}
	if (!dkim_self_done)
		return;
	if (ndk == 0)
		authres_fmt_result(f, "dkim", "none", NULL, NULL);
	for (size_t i = 0; i < ndk; i++) {
		authres_fmt_result(f, "dkim", dmarc_auth_result_name(dk[i].res),
				   dk[i].reason[0] ? dk[i].reason : NULL, NULL);
		authres_fmt_prop(f, "header", "d", dk[i].d);
		if (dk[i].s[0])
			authres_fmt_prop_value(f, "header", "s", dk[i].s);
		if (dk[i].b[0])
			authres_fmt_prop_value(f, "header", "b", dk[i].b);
	}
}

static void malformed(struct dmarc_msg *m, struct dmarc_msg_outcome *out, const char *why,
		      const struct dmarc_auth_spf *spf)
{
	struct dmarc_cfg *cfg = m->cfg;
	out->malformed_from = 1;
	out->result = DMARC_RESULT_PERMERROR;
	if (cfg->reject_malformed && cfg->enforce) {
		out->action = DMARC_MSG_REJECT;
		out->reply_code = "550";
		out->reply_xcode = "5.7.1";
		out->reply_text = xasprintf("message rejected: malformed From header (%s)", why);
	}
	struct sbuf b;
	struct authres_fmt f;
	sbuf_init(&b);
	authres_fmt_begin(&f, &b, cfg->authserv_id, 1);
	authres_fmt_result(&f, "dmarc", "permerror", why, NULL);
	authres_fmt_end(&f);
	out->ar_value = sbuf_steal(&b);
	sbuf_init(&b);
	sbuf_printf(&b, "milter=dmarc action=%s dmarc=permerror", dmarc_msg_action_name(out->action));
	log_kv(&b, "from_error", why);
	log_kv(&b, "enforced", cfg->enforce ? (cfg->reject_malformed ? "yes" : "no") : "no");
	log_auth(&b, m, spf, NULL, 0, 0);
	log_common(&b, m, "permerror", "dmarc_malformed_from", 0);
	out->log[out->nlog++] = sbuf_steal(&b);
}

static int result_rank(enum dmarc_result r)
{
	switch (r) {
	case DMARC_RESULT_PASS: return 0;
	case DMARC_RESULT_NONE: return 1;
	case DMARC_RESULT_TEMPERROR: return 2;
	case DMARC_RESULT_PERMERROR: return 3;
	case DMARC_RESULT_FAIL: return 4;
	}
	return 0;
}

/* ---- failure reports (RFC 9991; docs/DMARC-FAILURE-REPORTS.md) ---- */

struct failrep_dns {
	struct dmarc_dns *dns;
	long long deadline_ms;
};

static struct dns_answer *failrep_lookup(void *arg, const char *name, enum dns_type type)
{
	struct failrep_dns *x = arg;
	return dmarc_dns_lookup(x->dns, name, type, x->deadline_ms);
}

static void failure_reports(struct dmarc_msg *m, struct dmarc_msg_outcome *out,
			    const struct dom_eval *ev, size_t ndom, const struct dmarc_auth *spf,
			    size_t nspf, const struct dmarc_auth *dkim, size_t ndkim,
			    long long deadline)
{
	struct dmarc_cfg *cfg = m->cfg;
	struct failrep_dns fd = { cfg->dns, deadline };
	struct dmarc_failrep_sendmail sm = { cfg->failrep_sendmail, cfg->failrep_sendmail_conf,
					     10000 };
	struct dmarc_failrep_opts o = { 0 };
	o.reporter = cfg->failrep_from;
	o.hostname = cfg->authserv_id;
	o.redact = cfg->failrep_redact;
	enum dmarc_failrep_delivery del =
		out->action == DMARC_MSG_REJECT ? DMARC_FAILREP_REJECT
		: out->action == DMARC_MSG_TEMPFAIL ? DMARC_FAILREP_POLICY
		: out->action == DMARC_MSG_QUARANTINE || out->add_header ? DMARC_FAILREP_SPAM
		: DMARC_FAILREP_DELIVERED;
	for (size_t i = 0; i < ndom; i++) {
		if (!ev[i].o || ev[i].ignored)	/* dmarc_ignore_domains: no reports either */
			continue;
		struct dmarc_failrep_input in = { 0 };
		in.outcome = ev[i].o;
		in.spf = spf;
		in.nspf = nspf;
		in.dkim = dkim;
		in.ndkim = ndkim;
		in.qid = m->qid;
		in.mail_from = m->mail_from;
		in.rcpts = (const char *const *)m->rcpts;
		in.nrcpts = m->nrcpts;
		in.client_ip = m->client_ip;
		in.arrival = m->arrival;
		in.headers = m->all;
		in.nheaders = m->nall;
		in.auth_results = out->ar_value;
		in.delivery = del;
		struct dmarc_failrep_result res;
		dmarc_failrep_run(&in, &o, cfg->failrep_rate, cfg->mode, cfg->psl, failrep_lookup, &fd,
				  dmarc_failrep_send_exec, &sm, &res);
		const char *fromd = ev[i].o->from_domain ? ev[i].o->from_domain : ev[i].domain;
		if (res.suppressed && out->nlog < DMARC_MSG_MAX_LOG) {
			struct sbuf b;
			sbuf_init(&b);
			sbuf_adds(&b, "milter=dmarc failure_report=suppressed reason=auto_submitted");
			log_kv(&b, "header_from", fromd);
			out->log[out->nlog++] = sbuf_steal(&b);
		}
		for (size_t k = 0; k < res.n && out->nlog < DMARC_MSG_MAX_LOG; k++) {
			struct sbuf b;
			sbuf_init(&b);
			sbuf_adds(&b, "milter=dmarc");
			log_kv(&b, "failure_report", dmarc_failrep_status_name(res.dest[k].status));
			log_kv(&b, "header_from", fromd);
			log_kv(&b, "ruf", res.dest[k].dest.addr);
			log_kv(&b, "verification", dmarc_failrep_verdict_name(res.dest[k].dest.verdict));
			sbuf_printf(&b, " bytes=%zu", res.dest[k].bytes);
			if (res.dest[k].err)
				log_kv(&b, "error", res.dest[k].err);
			out->log[out->nlog++] = sbuf_steal(&b);
		}
		dmarc_failrep_result_clear(&res);
	}
}

static void evaluate(struct dmarc_msg *m, struct dmarc_msg_outcome *out,
		     const char *const *doms, size_t ndom)
{
	struct dmarc_cfg *cfg = m->cfg;
	long long deadline = now_ms() + cfg->deadline_ms;

	/* whose results count */
	struct dmarc_auth_msg v = view(m);
	struct dmarc_auth_spf spf = { 0 };
	if (cfg->self_validate ||
	    (!dmarc_auth_spf_trusted(&v, &spf) && !dmarc_auth_spf_received(&v, &spf)))
		dmarc_auth_spf_self(&v, &spf, deadline);
	struct dmarc_auth_dkim dk[DMARC_MAX_AUTH];
	size_t ndk;
	int dk_self = m->dk != NULL;
	ndk = dk_self ? dmarc_auth_dkim_self(&v, m->dk, dk, DMARC_MAX_AUTH)
		      : dmarc_auth_dkim_trusted(&v, dk, DMARC_MAX_AUTH);
	out->spf = spf.spf;
	out->spf_self = spf.self;
	out->dkim_self = dk_self;
	out->ndkim = ndk;
	for (size_t i = 0; i < ndk; i++)
		out->ndkim_pass += dk[i].res == DMARC_AUTH_PASS;

	struct dmarc_auth sa = { 0 }, da[DMARC_MAX_AUTH];
	sa.domain = spf.domain;
	sa.result = spf.res;
	sa.scope = DMARC_SCOPE_MFROM;
	for (size_t i = 0; i < ndk; i++) {
		memset(&da[i], 0, sizeof(da[i]));
		da[i].domain = dk[i].d;
		da[i].selector = dk[i].s[0] ? dk[i].s : NULL;
		da[i].result = dk[i].res;
	}

	struct dom_eval ev[RFC5322_MAX_ADDRS];
	enum dmarc_disposition strict = DMARC_DISP_NONE;
	const char *strict_dom = NULL;
	int temp = 0;
	out->result = DMARC_RESULT_PASS;
	for (size_t i = 0; i < ndom; i++) {
		struct dom_eval *e = &ev[i];
		memset(e, 0, sizeof(*e));
		e->domain = doms[i];
		struct dmarc_request req = { 0 };
		req.from_domain = doms[i];
		req.mode = cfg->mode;
		req.spf = spf.have && spf.domain[0] ? &sa : NULL;
		req.nspf = req.spf ? 1 : 0;
		req.dkim = da;
		req.ndkim = ndk;
		req.pct_roll = pct_roll(cfg);
		req.psl = cfg->psl;
		e->chk = dmarc_check_new(&req);
		if (dmarc_dns_run_dmarc(cfg->dns, e->chk, deadline) < 0) {
			e->result = DMARC_RESULT_TEMPERROR;
		} else {
			e->o = dmarc_check_outcome(e->chk);
			e->result = e->o->result;
			e->disp = e->o->disposition;
		}
		e->ignored = dmarc_cfg_ignored_domain(cfg, e->o && e->o->from_domain ? e->o->from_domain
										  : doms[i]);
		if (result_rank(e->result) > result_rank(out->result))
			out->result = e->result;
		if (e->ignored)
			continue;
		if (e->result == DMARC_RESULT_TEMPERROR)
			temp = 1;
		if (e->result == DMARC_RESULT_FAIL &&
		    dmarc_disposition_stricter(strict, e->disp) != strict) {
			strict = e->disp;
			strict_dom = e->o && e->o->from_domain ? e->o->from_domain : e->domain;
		}
	}
	out->disposition = strict;

	/* the local decision */
	if (!cfg->enforce) {
		out->action = DMARC_MSG_ACCEPT;
	} else if (strict == DMARC_DISP_REJECT) {
		out->action = DMARC_MSG_REJECT;
		out->reply_code = "550";
		out->reply_xcode = "5.7.1";
		out->reply_text = reply_text(cfg, strict_dom);
	} else if (temp && cfg->tempfail_on_temperror) {
		out->action = DMARC_MSG_TEMPFAIL;
		out->reply_code = "451";
		out->reply_xcode = "4.3.0";
		out->reply_text = xstrdup("DMARC policy look-up failed temporarily, try again later");
	} else if (strict == DMARC_DISP_QUARANTINE) {
		if (cfg->quarantine_hold) {
			out->action = DMARC_MSG_QUARANTINE;
			out->quarantine_reason = xasprintf("DMARC policy of %s", strict_dom);
		} else {
			out->add_header = 1;
		}
	}

	/* Authentication-Results: one dmarc= per From domain, then what we computed */
	struct sbuf b;
	struct authres_fmt f;
	sbuf_init(&b);
	authres_fmt_begin(&f, &b, cfg->authserv_id, 1);
	for (size_t i = 0; i < ndom; i++) {
		const struct dom_eval *e = &ev[i];
		char comment[96];
		const char *c = NULL;
		if (e->o && e->o->record) {
			snprintf(comment, sizeof(comment), "p=%s dis=%s",
				 dmarc_policy_name(e->o->policy == DMARC_POLICY_UNSET ? DMARC_POLICY_NONE
										      : e->o->policy),
				 dmarc_disposition_name(e->disp));
			c = comment;
		}
		authres_fmt_result(&f, "dmarc", dmarc_result_name(e->result), NULL, c);
		authres_fmt_prop(&f, "header", "from", e->o && e->o->from_domain ? e->o->from_domain
										  : e->domain);
		if (e->o && e->o->record)
			authres_fmt_prop(&f, "policy", "dmarc", dmarc_disposition_name(e->disp));
	}
	ar_spf_dkim(&f, m, &spf, dk, ndk, dk_self);
	authres_fmt_end(&f);
	out->ar_value = sbuf_steal(&b);

	/* one log line per From domain (normally one) */
	for (size_t i = 0; i < ndom && out->nlog < DMARC_MSG_MAX_LOG; i++) {
		sbuf_init(&b);
		sbuf_printf(&b, "milter=dmarc action=%s dmarc=%s",
			    out->add_header ? "header" : dmarc_msg_action_name(out->action),
			    dmarc_result_name(ev[i].result));
		log_kv(&b, "enforced", !cfg->enforce ? "no" : ev[i].ignored ? "ignored_domain" : "yes");
		log_domain(&b, &ev[i], ndom);
		log_auth(&b, m, &spf, dk, ndk, dk_self);
		log_common(&b, m, dmarc_result_name(ev[i].result), dom_code(&ev[i]), 1);
		out->log[out->nlog++] = sbuf_steal(&b);
	}
	if (cfg->failrep)
		failure_reports(m, out, ev, ndom, spf.have && spf.domain[0] ? &sa : NULL,
				spf.have && spf.domain[0] ? 1 : 0, da, ndk, deadline);
	for (size_t i = 0; i < ndom; i++)
		dmarc_check_free(&ev[i].chk);
}

/*
 * IDNA: a From domain in U-labels must be checked as its A-label, where the
 * policy is published ("bücher.example" -> "xn--bcher-kva.example"), or a
 * sender could dodge the policy by writing the domain in Unicode.
 * XXX: libidn2 is in the process anyway (libpsl depends on it) but the
 * Makefile does not link it directly, so idn2_to_ascii_8z is looked up at
 * run time; without it such a domain stays as it is (permerror).
 */
typedef int (*idn2_to_ascii_fn)(const char *input, char **output, int flags);
static idn2_to_ascii_fn idn2_to_ascii;
static pthread_once_t idn2_once = PTHREAD_ONCE_INIT;

static void idn2_load(void)
{
	void *h = dlopen("libidn2.so.0", RTLD_NOW | RTLD_GLOBAL);
	if (h)
		idn2_to_ascii = (idn2_to_ascii_fn)dlsym(h, "idn2_to_ascii_8z");
}

/* to_alabel - a new A-label string for a domain with non-ASCII bytes, else NULL. */
static char *to_alabel(const char *dom)
{
	int ascii = 1;
	for (const char *p = dom; *p; p++)
		if ((unsigned char)*p >= 0x80)
			ascii = 0;
	if (ascii)
		return NULL;
	pthread_once(&idn2_once, idn2_load);
	char *out = NULL;
	/* IDN2_NFC_INPUT (1) | IDN2_NONTRANSITIONAL (8) */
	if (idn2_to_ascii == NULL || idn2_to_ascii(dom, &out, 1 | 8) != 0 || out == NULL)
		return NULL;
	char *r = xstrdup(out);
	free(out);	/* idn2_free() is free() */
	ascii_lower(r);
	return r;
}

void dmarc_msg_eom(struct dmarc_msg *m, struct dmarc_msg_outcome *out)
{
	memset(out, 0, sizeof(*out));
	out->reply_code = out->reply_xcode = NULL;
	if (m->skip) {
		out->skipped = 1;
		out->result = DMARC_RESULT_NONE;
		struct sbuf b;
		sbuf_init(&b);
		sbuf_adds(&b, "milter=dmarc action=accept dmarc=skipped");
		log_kv(&b, "skipped", m->skip_why);
		log_kv(&b, "client_ip", m->client_ip[0] ? m->client_ip : "unknown");
		log_common(&b, m, "skipped", "dmarc_skipped", 0);
		out->log[out->nlog++] = sbuf_steal(&b);
		return;
	}
	if (!m->eoh_done)
		dmarc_msg_eoh(m);
	out->n_xsd_delete = m->nxsd;
	if (m->over_cap) {
		malformed(m, out, "too many or too large headers", NULL);
		return;
	}
	if (m->from.n == 0) {
		malformed(m, out, "no From field", NULL);
		return;
	}
	if (m->from.n > 1) {
		malformed(m, out, "several From fields", NULL);
		return;
	}
	struct rfc5322_addrlist l;
	const char *err = NULL;
	if (rfc5322_parse_from(m->from.v[0].value, m->from.v[0].len, &l, &err) != 0) {
		malformed(m, out, err ? err : "unparsable From", NULL);
		return;
	}
	const char *doms[RFC5322_MAX_ADDRS];
	size_t nd = rfc5322_domains(&l, doms, RFC5322_MAX_ADDRS);
	if (nd == 0 || nd > RFC5322_MAX_ADDRS) {
		rfc5322_addrlist_free(&l);
		malformed(m, out, "no usable From domain", NULL);
		return;
	}
	if (nd > m->cfg->max_from_domains) {
		rfc5322_addrlist_free(&l);
		malformed(m, out, "too many From domains", NULL);
		return;
	}
	/* U-labels as A-labels, then distinct again */
	char *alabel[RFC5322_MAX_ADDRS];
	size_t na = 0;
	for (size_t i = 0; i < nd; i++) {
		alabel[i] = to_alabel(doms[i]);
		const char *d = alabel[i] ? alabel[i] : doms[i];
		int dup = 0;
		for (size_t k = 0; k < na; k++)
			if (ascii_strcasecmp(doms[k], d) == 0)
				dup = 1;
		if (!dup)
			doms[na++] = d;
	}
	evaluate(m, out, doms, na);
	for (size_t i = 0; i < nd; i++)
		free(alabel[i]);
	rfc5322_addrlist_free(&l);
}

void dmarc_msg_outcome_clear(struct dmarc_msg_outcome *out)
{
	free(out->reply_text);
	free(out->quarantine_reason);
	free(out->ar_value);
	for (size_t i = 0; i < out->nlog; i++)
		free(out->log[i]);
	memset(out, 0, sizeof(*out));
}

void dmarc_msg_free(struct dmarc_msg **mp)
{
	struct dmarc_msg *m = *mp;
	if (m == NULL)
		return;
	dkim_msg_free(&m->dk);
	hl_free(&m->from);
	hl_free(&m->ar);
	hl_free(&m->sig);
	hl_free(&m->rspf);
	free(m->qid);
	free(m->client_ip);
	free(m->helo);
	free(m->mail_from);
	free(m->rcpt_domains);
	for (size_t i = 0; i < m->nall; i++) {
		free((char *)m->all[i].name);
		free((char *)m->all[i].value);
	}
	free(m->all);
	for (size_t i = 0; i < m->nrcpts; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	dmarc_cfg_unref(&m->cfg);
	free(m);
	*mp = NULL;
}
