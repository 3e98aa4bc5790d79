#include "milters/dmarc/dmarc_msg.h"
#include "milters/dmarc/dmarc_dns.h"
#include "milters/dmarc/dmarc_failrep.h"
#include "milters/dmarc/dmarc_hdr.h"
#include "milters/dkim/dkim_cfg.h"
#include "milters/dkim/dkim_keys.h"
#include "milters/dkim/dkim_msg.h"
#include "proto/authres.h"
#include "proto/rfc5322.h"
#include "lib/util.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* A header we read ourselves (sluice-dkim keeps its own copy of all of them). */
struct hv {
	char *value;
	size_t len;
};
struct hlist {
	struct hv *v;
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

/* ---- trusted results (dmarc_self_validate = no) ---- */

/* Does a trusted A-R carry a result of this method? */
static int trusted_has(struct dmarc_msg *m, const char *method)
{
	for (size_t i = 0; i < m->ar.n; i++) {
		struct authres *a;
		if (authres_parse(m->ar.v[i].value, m->ar.v[i].len, &a, NULL) != 0)
			continue;
		int has = 0;
		if (dmarc_cfg_trusted_id(m->cfg, a->authserv_id))
			for (size_t k = 0; k < a->nresults; k++)
				if (strcmp(a->results[k].method, method) == 0)
					has = 1;
		authres_free(&a);
		if (has)
			return 1;
	}
	return 0;
}

void dmarc_msg_eoh(struct dmarc_msg *m)
{
	if (m->eoh_done)
		return;
	m->eoh_done = 1;
	if (m->dk == NULL)
		return;
	/* DKIM is verified here unless a trusted header already says it */
	if (m->over_cap || m->from.n != 1 || (!m->cfg->self_validate && trusted_has(m, "dkim"))) {
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

/* ---- results ---- */

static enum dmarc_auth_result auth_of(const char *s)
{
	static const struct { const char *n; enum dmarc_auth_result r; } t[] = {
		{ "pass", DMARC_AUTH_PASS }, { "fail", DMARC_AUTH_FAIL },
		{ "softfail", DMARC_AUTH_SOFTFAIL }, { "neutral", DMARC_AUTH_NEUTRAL },
		{ "temperror", DMARC_AUTH_TEMPERROR }, { "permerror", DMARC_AUTH_PERMERROR },
		{ "policy", DMARC_AUTH_POLICY }, { "hardfail", DMARC_AUTH_FAIL },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (ascii_strcasecmp(s, t[i].n) == 0)
			return t[i].r;
	return DMARC_AUTH_NONE;
}

static enum dmarc_auth_result auth_of_spf(enum spf_result r)
{
	switch (r) {
	case SPF_PASS: return DMARC_AUTH_PASS;
	case SPF_FAIL: return DMARC_AUTH_FAIL;
	case SPF_SOFTFAIL: return DMARC_AUTH_SOFTFAIL;
	case SPF_NEUTRAL: return DMARC_AUTH_NEUTRAL;
	case SPF_TEMPERROR: return DMARC_AUTH_TEMPERROR;
	case SPF_PERMERROR: return DMARC_AUTH_PERMERROR;
	case SPF_NONE: break;
	}
	return DMARC_AUTH_NONE;
}

static enum spf_result spf_of_auth(enum dmarc_auth_result r)
{
	switch (r) {
	case DMARC_AUTH_PASS: return SPF_PASS;
	case DMARC_AUTH_FAIL: return SPF_FAIL;
	case DMARC_AUTH_SOFTFAIL: return SPF_SOFTFAIL;
	case DMARC_AUTH_NEUTRAL: return SPF_NEUTRAL;
	case DMARC_AUTH_TEMPERROR: return SPF_TEMPERROR;
	case DMARC_AUTH_PERMERROR: return SPF_PERMERROR;
	default: break;
	}
	return SPF_NONE;
}

/* One DKIM result as DMARC uses it and we report it. */
struct dk_res {
	char d[256], s[256], b[64];
	enum dmarc_auth_result res;
	char reason[128];
};

/* One SPF result. */
struct spf_res {
	int have;
	int self;
	char domain[256];
	int helo_scope;		/* null MAIL FROM: the HELO identity */
	enum dmarc_auth_result res;
	enum spf_result spf;
};

/* Is there a DKIM-Signature with d= (case-insensitive) and a b= starting with b? */
static int sig_present(struct dmarc_msg *m, const char *d, const char *b)
{
	for (size_t i = 0; i < m->sig.n; i++) {
		char sd[256], sb[2048];
		if (dmarc_hdr_tag(m->sig.v[i].value, "d", sd, sizeof(sd)) < 0 ||
		    ascii_strcasecmp(sd, d) != 0)
			continue;
		if (b == NULL || *b == 0)
			return 1;
		if (dmarc_hdr_tag(m->sig.v[i].value, "b", sb, sizeof(sb)) == 0 &&
		    strncmp(sb, b, strlen(b)) == 0 && strlen(b) >= 8)
			return 1;
	}
	return 0;
}

static void copy_str(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

/*
 * dkim_from_ar - the dkim= results of one parsed A-R into r[] (up to max).
 * verify_sigs: a pass counts only when its signature is in the message.
 */
static size_t dkim_from_ar(struct dmarc_msg *m, const struct authres *a, struct dk_res *r,
			   size_t n, size_t max, int verify_sigs)
{
	for (size_t k = 0; k < a->nresults && n < max; k++) {
		const struct authres_result *x = &a->results[k];
		if (strcmp(x->method, "dkim") != 0)
			continue;
		struct dk_res *o = &r[n];
		memset(o, 0, sizeof(*o));
		o->res = auth_of(x->result);
		const char *d = authres_prop_get(x, "header", "d");
		const char *i = authres_prop_get(x, "header", "i");
		if (d == NULL && i && dmarc_hdr_addr_domain(i))
			d = dmarc_hdr_addr_domain(i);
		if (o->res == DMARC_AUTH_NONE || d == NULL)
			continue;	/* dkim=none (no signature) or no domain: nothing to align */
		copy_str(o->d, sizeof(o->d), d);
		copy_str(o->s, sizeof(o->s), authres_prop_get(x, "header", "s"));
		copy_str(o->b, sizeof(o->b), authres_prop_get(x, "header", "b"));
		copy_str(o->reason, sizeof(o->reason), x->reason);
		if (verify_sigs && o->res == DMARC_AUTH_PASS &&
		    !sig_present(m, o->d, o->b[0] ? o->b : NULL)) {
			/* XXX: a claimed pass for a signature that is not here */
			o->res = DMARC_AUTH_PERMERROR;
			copy_str(o->reason, sizeof(o->reason), "claimed pass without that signature");
		}
		n++;
	}
	return n;
}

/* Trusted A-R: dkim results. A pass contradicted by another trusted result is not a pass. */
static size_t dkim_trusted(struct dmarc_msg *m, struct dk_res *r, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < m->ar.n; i++) {
		struct authres *a;
		if (authres_parse(m->ar.v[i].value, m->ar.v[i].len, &a, NULL) != 0)
			continue;
		if (dmarc_cfg_trusted_id(m->cfg, a->authserv_id))
			n = dkim_from_ar(m, a, r, n, max, 1);
		authres_free(&a);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (r[i].res == DMARC_AUTH_PASS && r[j].res != DMARC_AUTH_PASS &&
			    ascii_strcasecmp(r[i].d, r[j].d) == 0 && strcmp(r[i].b, r[j].b) == 0)
				r[i].res = r[j].res;
	return n;
}

/* Our own verification with sluice-dkim's verifier: its A-R carries d=, s=, b=. */
static size_t dkim_self(struct dmarc_msg *m, struct dk_res *r, size_t max)
{
	if (m->dk == NULL)
		return 0;
	struct dkim_outcome out;
	dkim_msg_eom(m->dk, &out);
	size_t n = 0;
	struct authres *a;
	if (out.ar_value && authres_parse(out.ar_value, strlen(out.ar_value), &a, NULL) == 0) {
		n = dkim_from_ar(m, a, r, 0, max, 0);
		authres_free(&a);
	}
	dkim_outcome_clear(&out);
	return n;
}

/* Topmost Received-SPF, if trusted by configuration and about our MAIL FROM. */
static int spf_received(struct dmarc_msg *m, struct spf_res *o)
{
	if (!m->cfg->trust_received_spf || m->rspf.n == 0 || m->mail_from[0] == 0)
		return 0;
	const char *v = m->rspf.v[0].value;
	char word[32], id[32], ef[512];
	dmarc_hdr_rspf_result(v, word, sizeof(word));
	if (dmarc_hdr_rspf_field(v, "identity", id, sizeof(id)) < 0 || ascii_strcasecmp(id, "mailfrom") != 0)
		return 0;
	if (dmarc_hdr_rspf_field(v, "envelope-from", ef, sizeof(ef)) < 0)
		return 0;
	dmarc_hdr_strip_angle(ef);
	if (ascii_strcasecmp(ef, m->mail_from) != 0)
		return 0;
	const char *d = dmarc_hdr_addr_domain(m->mail_from);
	if (d == NULL)
		return 0;
	o->have = 1;
	o->self = 0;
	copy_str(o->domain, sizeof(o->domain), d);
	o->res = auth_of(word);
	o->spf = spf_of_auth(o->res);
	return 1;
}

/* Trusted A-R: spf= with smtp.mailfrom of our MAIL FROM's domain (or smtp.helo for <>). */
static int spf_trusted(struct dmarc_msg *m, struct spf_res *o)
{
	int found = 0;
	const char *mfd = dmarc_hdr_addr_domain(m->mail_from);
	for (size_t i = 0; i < m->ar.n && !found; i++) {
		struct authres *a;
		if (authres_parse(m->ar.v[i].value, m->ar.v[i].len, &a, NULL) != 0)
			continue;
		for (size_t k = 0; dmarc_cfg_trusted_id(m->cfg, a->authserv_id) && k < a->nresults &&
				   !found; k++) {
			const struct authres_result *x = &a->results[k];
			if (strcmp(x->method, "spf") != 0)
				continue;
			const char *mf = authres_prop_get(x, "smtp", "mailfrom");
			const char *helo = authres_prop_get(x, "smtp", "helo");
			const char *d = NULL;
			if (m->mail_from[0]) {
				const char *xd = mf ? dmarc_hdr_addr_domain(mf) : NULL;
				if (mf && !xd)
					xd = mf;	/* smtp.mailfrom=domain */
				if (xd && mfd && ascii_strcasecmp(xd, mfd) == 0)
					d = mfd;
			} else if (helo && m->helo[0] && ascii_strcasecmp(helo, m->helo) == 0) {
				d = m->helo;
				o->helo_scope = 1;
			}
			if (d == NULL)
				continue;
			found = 1;
			o->have = 1;
			o->self = 0;
			copy_str(o->domain, sizeof(o->domain), d);
			o->res = auth_of(x->result);
			o->spf = spf_of_auth(o->res);
		}
		authres_free(&a);
	}
	return found;
}

static void spf_self(struct dmarc_msg *m, struct spf_res *o, long long deadline_ms)
{
	memset(o, 0, sizeof(*o));
	o->self = 1;
	o->have = 1;
	o->helo_scope = m->mail_from[0] == 0;
	struct spf_request req = { 0 };
	req.ip = m->client_ip;
	req.sender = m->mail_from;
	req.helo = m->helo;
	req.receiver = m->cfg->receiver;
	req.scope = SPF_SCOPE_MFROM;	/* <> is postmaster@helo in this scope (RFC 7208 2.4) */
	req.now_s = (long long)time(NULL);
	const char *d = o->helo_scope ? m->helo : dmarc_hdr_addr_domain(m->mail_from);
	copy_str(o->domain, sizeof(o->domain), d);
	if (m->client_ip[0] == 0 || d == NULL || *d == 0) {
		o->spf = SPF_NONE;
		o->res = DMARC_AUTH_NONE;
		return;
	}
	struct spf_check *c = spf_check_new(&req, NULL);
	if (dmarc_dns_run_spf(m->cfg->dns, c, deadline_ms) < 0)
		o->spf = SPF_TEMPERROR;
	else
		o->spf = spf_check_result(c);
	spf_check_free(&c);
	o->res = auth_of_spf(o->spf);
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

/* kv - " key=value", quoted when the value needs it (lib/log.c's token rules). */
static void kv(struct sbuf *b, const char *key, const char *v)
{
	if (v == NULL)
		v = "";
	int plain = *v != 0;
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || *p == '(' || *p == '<' ||
		    *p == '[' || *p == ')' || *p == '>' || *p == ']' || (unsigned char)*p >= 0x7f ||
		    (*p == ',' && p[1] == ' ') || (*p == ';' && p[1] == ' '))
			plain = 0;
	sbuf_printf(b, " %s=", key);
	if (plain) {
		sbuf_adds(b, v);
		return;
	}
	sbuf_addc(b, '"');
	for (const char *p = v; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '"' || ch == '\\')
			sbuf_printf(b, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			sbuf_printf(b, "\\x%02x", ch);
		else
			sbuf_addc(b, (char)ch);
	}
	sbuf_addc(b, '"');
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
static void log_auth(struct sbuf *b, struct dmarc_msg *m, const struct spf_res *spf,
		     const struct dk_res *dk, size_t ndk, int dk_self)
{
	kv(b, "source_ip", m->client_ip[0] ? m->client_ip : "unknown");
	kv(b, "helo", m->helo);
	const char *efd = dmarc_hdr_addr_domain(m->mail_from);
	kv(b, "envelope_from", m->mail_from[0] == 0 ? "<>" : efd ? efd : m->mail_from);
	kv(b, "envelope_to", m->rcpt_domains);
	if (spf && spf->have) {
		char t[400];
		snprintf(t, sizeof(t), "%s/%s/%s", spf->domain[0] ? spf->domain : "-",
			 spf->helo_scope ? "helo" : "mfrom", dmarc_auth_result_name(spf->res));
		kv(b, "spf", t);
		kv(b, "spf_source", spf->self ? "self" : "trusted");
	} else {
		kv(b, "spf", "-");	/* not evaluated */
	}
	struct sbuf d;
	sbuf_init(&d);
	for (size_t i = 0; i < ndk; i++)
		sbuf_printf(&d, "%s%s/%s/%s", i ? "," : "", dk[i].d[0] ? dk[i].d : "-",
			    dk[i].s[0] ? dk[i].s : "-", dmarc_auth_result_name(dk[i].res));
	kv(b, "dkim", ndk ? d.buf : spf ? "none" : "-");
	if (spf)
		kv(b, "dkim_source", dk_self ? "self" : "trusted");
	sbuf_free(&d);
}

static void log_domain(struct sbuf *b, const struct dom_eval *e, size_t ndom)
{
	kv(b, "header_from", e->domain);
	sbuf_printf(b, " from_domains=%zu", ndom);
	const struct dmarc_outcome *o = e->o;
	const struct dmarc_record *r = o ? o->record : NULL;
	kv(b, "policy_domain", o && o->policy_domain ? o->policy_domain : "-");
	kv(b, "org_domain", o && o->org_domain ? o->org_domain : "-");
	kv(b, "discovery", o ? dmarc_discovery_name(o->discovery) : "-");
	kv(b, "p", r ? policy_tag(r->p) : "-");
	kv(b, "sp", r ? policy_tag(r->sp) : "-");
	kv(b, "np", r ? policy_tag(r->np) : "-");
	char ch[2] = { 0, 0 };
	ch[0] = r ? r->adkim : '-';
	kv(b, "adkim", ch);
	ch[0] = r ? r->aspf : '-';
	kv(b, "aspf", ch);
	ch[0] = r ? r->t : '-';
	kv(b, "t", ch);
	ch[0] = r ? r->psd : '-';
	kv(b, "psd", ch);
	if (r)
		sbuf_printf(b, " pct=%u", r->pct);
	else
		kv(b, "pct", "-");
	kv(b, "fo", r && r->fo ? r->fo : "-");
	kv(b, "rua", r && r->rua ? r->rua : "-");
	kv(b, "ruf", r && r->ruf ? r->ruf : "-");
	kv(b, "policy_applied", o ? dmarc_applied_name(o->applied) : "-");
	kv(b, "policy", o ? policy_tag(o->policy) : "-");
	kv(b, "disposition", dmarc_disposition_name(e->disp));
	kv(b, "override", e->ignored ? "local_policy" : o ? dmarc_override_name(o->override) : "none");
	sbuf_printf(b, " spf_aligned=%s dkim_aligned=%s", o && o->spf_aligned ? "pass" : "fail",
		    o && o->dkim_aligned ? "pass" : "fail");
	if (o && o->dkim_aligned)
		kv(b, "dkim_aligned_domain", o->dkim_domain);
	sbuf_printf(b, " dns_queries=%u", o ? o->dns_queries : 0);
	kv(b, "reason", o ? o->reason : "DNS deadline passed");
}

static void ar_spf_dkim(struct authres_fmt *f, struct dmarc_msg *m, const struct spf_res *spf,
			const struct dk_res *dk, size_t ndk, int dkim_self_done)
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
		      const struct spf_res *spf)
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
	kv(&b, "from_error", why);
	kv(&b, "enforced", cfg->enforce ? (cfg->reject_malformed ? "yes" : "no") : "no");
	log_auth(&b, m, spf, NULL, 0, 0);
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
			kv(&b, "header_from", fromd);
			out->log[out->nlog++] = sbuf_steal(&b);
		}
		for (size_t k = 0; k < res.n && out->nlog < DMARC_MSG_MAX_LOG; k++) {
			struct sbuf b;
			sbuf_init(&b);
			sbuf_adds(&b, "milter=dmarc");
			kv(&b, "failure_report", dmarc_failrep_status_name(res.dest[k].status));
			kv(&b, "header_from", fromd);
			kv(&b, "ruf", res.dest[k].dest.addr);
			kv(&b, "verification", dmarc_failrep_verdict_name(res.dest[k].dest.verdict));
			sbuf_printf(&b, " bytes=%zu", res.dest[k].bytes);
			if (res.dest[k].err)
				kv(&b, "error", res.dest[k].err);
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
	struct spf_res spf = { 0 };
	if (!cfg->self_validate && (spf_trusted(m, &spf) || spf_received(m, &spf)))
		;
	else
		spf_self(m, &spf, deadline);
	struct dk_res dk[DMARC_MAX_AUTH];
	size_t ndk;
	int dk_self = m->dk != NULL;
	ndk = dk_self ? dkim_self(m, dk, DMARC_MAX_AUTH) : dkim_trusted(m, dk, DMARC_MAX_AUTH);
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
		kv(&b, "enforced", !cfg->enforce ? "no" : ev[i].ignored ? "ignored_domain" : "yes");
		log_domain(&b, &ev[i], ndom);
		log_auth(&b, m, &spf, dk, ndk, dk_self);
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
		kv(&b, "skipped", m->skip_why);
		kv(&b, "source_ip", m->client_ip[0] ? m->client_ip : "unknown");
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
