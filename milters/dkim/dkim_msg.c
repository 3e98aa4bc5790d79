#include "milters/dkim/dkim_msg.h"
#include "milters/dkim/dkim_signer.h"
#include "milters/dkim/dkim_keys.h"
#include "proto/authres.h"
#include "lib/util.h"

#include <opendkim/dkim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hdr {
	char *line;		/* "Name:value" with CRLF inside folds */
	size_t len;
};

struct dkim_msg {
	struct dkim_cfg *cfg;	/* first: libopendkim's prescreen reads it via user context */
	char *qid;
	int sign;
	int failed;		/* internal error seen */
	const char *fail_why;
	struct hdr *hdrs;
	size_t nhdrs, caphdrs, hdr_bytes;
	size_t n_ar;		/* Authentication-Results headers seen */
	size_t ar_delete[32];
	size_t n_ar_delete;
	DKIM *vd;		/* verify handle */
	struct dkim_signer *sg[DKIM_MAX_SIGN_KEYS];	/* ours (see dkim_signer.h) */
	struct dkim_sign_choice choice[DKIM_MAX_SIGN_KEYS];
	size_t nsd;
	int no_sig;		/* verify: no signature at all */
	int eoh_done;
};

struct dkim_msg *dkim_msg_new(struct dkim_cfg *cfg, const char *qid, int sign)
{
	struct dkim_msg *m = xcalloc(1, sizeof(*m));
	m->cfg = dkim_cfg_ref(cfg);
	m->qid = xstrdup(qid ? qid : "NOQUEUE");
	m->sign = sign;
	return m;
}

void dkim_msg_set_qid(struct dkim_msg *m, const char *qid)
{
	if (qid == NULL || *qid == 0)
		return;
	free(m->qid);
	m->qid = xstrdup(qid);
}

static void set_failed(struct dkim_msg *m, const char *why)
{
	if (!m->failed) {
		m->failed = 1;
		m->fail_why = why;
	}
}

void dkim_msg_header(struct dkim_msg *m, const char *name, const char *value)
{
	if (m->failed || m->eoh_done)
		return;
	size_t nl = strlen(name), vl = strlen(value);
	if (m->nhdrs >= DKIM_MSG_MAX_HEADERS ||
	    m->hdr_bytes + nl + 2 * vl + 1 > DKIM_MSG_MAX_HEADER_BYTES) {
		set_failed(m, "too many or too large headers");
		return;
	}
	if (ascii_strcasecmp(name, "Authentication-Results") == 0) {
		char id[256];
		m->n_ar++;
		if (authres_authserv_id(value, vl, id, sizeof(id)) == 0 &&
		    ascii_strcasecmp(id, m->cfg->authserv_id) == 0 &&
		    m->n_ar_delete < sizeof(m->ar_delete) / sizeof(m->ar_delete[0]))
			m->ar_delete[m->n_ar_delete++] = m->n_ar;
	}
	struct sbuf b;
	sbuf_init(&b);
	sbuf_adds(&b, name);
	sbuf_addc(&b, ':');
	for (size_t i = 0; i < vl; i++) {
		if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r'))
			sbuf_addc(&b, '\r');
		sbuf_addc(&b, value[i]);
	}
	if (m->nhdrs == m->caphdrs) {
		m->caphdrs = m->caphdrs ? 2 * m->caphdrs : 32;
		m->hdrs = xrealloc(m->hdrs, m->caphdrs * sizeof(*m->hdrs));
	}
	m->hdrs[m->nhdrs].len = b.len;
	m->hdrs[m->nhdrs].line = sbuf_steal(&b);
	m->hdr_bytes += m->hdrs[m->nhdrs].len;
	m->nhdrs++;
}

/* The author: first From header (RFC 6376 5.4 keeps signing to the From domain). */
static int author(struct dkim_msg *m, char *dom, size_t domlen, char *local, size_t locallen)
{
	for (size_t i = 0; i < m->nhdrs; i++) {
		const char *l = m->hdrs[i].line;
		if (ascii_strncasecmp(l, "From:", 5) == 0)
			return dkim_hdr_from_domain(l + 5, m->hdrs[i].len - 5, dom, domlen, local,
						    locallen);
	}
	return -1;
}

static void start_sign(struct dkim_msg *m)
{
	char dom[256], local[256];
	if (author(m, dom, sizeof(dom), local, sizeof(local)) < 0)
		return;
	size_t n = dkim_keyset_select(m->cfg->keys, local, dom, m->choice, DKIM_MAX_SIGN_KEYS);
	for (size_t i = 0; i < n; i++) {
		const struct dkim_key *k = m->choice[i].key;
		struct dkim_signer *sg = dkim_signer_new(
			k->pkey, m->choice[i].domain, k->selector,
			m->cfg->hcanon == DKIM_CANON_SIMPLE, m->cfg->bcanon == DKIM_CANON_SIMPLE,
			m->cfg->sign_hdrs, m->cfg->oversign_hdrs, m->cfg->fixed_time, m->cfg->ttl_s);
		if (sg == NULL) {
			set_failed(m, "signing key not usable");
			return;
		}
		m->choice[m->nsd] = m->choice[i];
		m->sg[m->nsd++] = sg;
	}
}

void dkim_msg_eoh(struct dkim_msg *m)
{
	if (m->eoh_done)
		return;
	m->eoh_done = 1;
	if (m->failed)
		return;
	if (m->sign) {
		start_sign(m);
		for (size_t k = 0; k < m->nsd; k++)
			for (size_t i = 0; i < m->nhdrs; i++)
				dkim_signer_header(m->sg[k], m->hdrs[i].line, m->hdrs[i].len);
		return;
	}
	DKIM_STAT st;
	m->vd = dkim_verify(m->cfg->lib, (const u_char *)m->qid, NULL, &st);
	if (m->vd == NULL) {
		set_failed(m, "dkim_verify failed");
		return;
	}
	dkim_set_user_context(m->vd, m);
	for (size_t i = 0; i < m->nhdrs; i++)
		(void)dkim_header(m->vd, (u_char *)m->hdrs[i].line, m->hdrs[i].len);
	st = dkim_eoh(m->vd);
	if (st == DKIM_STAT_NOSIG)
		m->no_sig = 1;
	else if (st == DKIM_STAT_INTERNAL || st == DKIM_STAT_NORESOURCE)
		set_failed(m, "dkim_eoh (verify) failed");
}

void dkim_msg_body(struct dkim_msg *m, const unsigned char *buf, size_t len)
{
	if (m->failed || !m->eoh_done)
		return;
	for (size_t k = 0; k < m->nsd; k++)
		dkim_signer_body(m->sg[k], buf, len);
	if (m->vd && !m->no_sig)
		(void)dkim_body(m->vd, (u_char *)buf, len);
}

/* ---- verify results ---- */

static void sig_b8(DKIM_SIGINFO *sig, char *out)
{
	u_char *b = dkim_sig_gettagvalue(sig, 0, (u_char *)"b");
	size_t o = 0;
	for (; b && *b && o < 8; b++)
		if (*b != ' ' && *b != '\t' && *b != '\r' && *b != '\n')
			out[o++] = (char)*b;
	out[o] = 0;
}

struct sig_view {
	struct dkim_hdr_sig h;
	char i[512], b8[9], a[32];
};

static enum dkim_res classify(struct dkim_msg *m, DKIM_SIGINFO *sig, struct sig_view *v)
{
	struct dkim_cfg *cfg = m->cfg;
	unsigned flags = dkim_sig_getflags(sig);
	int err = dkim_sig_geterror(sig);
	unsigned bits = 0;
	dkim_alg_t alg = (dkim_alg_t)-1;
	(void)dkim_sig_getsignalg(sig, &alg);
	if (dkim_sig_getkeysize(sig, &bits) != DKIM_STAT_OK)
		bits = 0;
	v->h.key_bits = bits;
	v->h.testing = (flags & DKIM_SIGFLAG_TESTKEY) != 0;
	if ((flags & DKIM_SIGFLAG_PASSED) && dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH) {
		ssize_t msglen = -1, canonlen = -1, signlen = -1;
		(void)dkim_sig_getcanonlen(m->vd, sig, &msglen, &canonlen, &signlen);
		if (alg == DKIM_SIGN_RSASHA1 && !cfg->allow_sha1) {
			v->h.reason = "rsa-sha1 not accepted (RFC 8301)";
			return DKIM_RES_POLICY;
		}
		if (alg != DKIM_SIGN_ED25519SHA256 && bits > 0 && bits < cfg->min_key_bits) {
			v->h.reason = "key too small";
			return DKIM_RES_POLICY;
		}
		if (signlen >= 0 && cfg->refuse_body_length) {
			v->h.reason = "l= body length limit";
			return DKIM_RES_POLICY;
		}
		if (signlen >= 0 && signlen < msglen)
			v->h.reason = "body partly signed (l=)";
		return DKIM_RES_PASS;
	}
	if ((err == DKIM_SIGERROR_OK || err == DKIM_SIGERROR_BADSIG) &&
	    dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
		v->h.reason = "body hash did not verify";
		return DKIM_RES_FAIL;
	}
	switch (err) {
	case DKIM_SIGERROR_KEYFAIL:
		v->h.reason = "key query failed";
		return DKIM_RES_TEMPERROR;
	case DKIM_SIGERROR_NOKEY:
		v->h.reason = "no key for signature";
		return DKIM_RES_PERMERROR;
	case DKIM_SIGERROR_BADSIG:
		v->h.reason = "signature verification failed";
		return DKIM_RES_FAIL;
	case DKIM_SIGERROR_OK:
	case DKIM_SIGERROR_UNKNOWN:
		if ((flags & DKIM_SIGFLAG_PROCESSED) && dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
			v->h.reason = "body hash did not verify";
			return DKIM_RES_FAIL;
		}
		if (flags & DKIM_SIGFLAG_PROCESSED) {
			v->h.reason = "signature verification failed";
			return DKIM_RES_FAIL;
		}
		v->h.reason = "signature not processed";
		return DKIM_RES_NEUTRAL;
	case DKIM_SIGERROR_KEYTOOSMALL:
		v->h.reason = "key too small";
		return DKIM_RES_POLICY;
	default: {
		const char *s = dkim_sig_geterrorstr(err);
		v->h.reason = s ? s : "unusable signature";
		return DKIM_RES_PERMERROR;
	}
	}
}

static int rank(enum dkim_res r)
{
	/* message summary preference (OpenDKIM-like: any pass wins) */
	switch (r) {
	case DKIM_RES_PASS: return 7;
	case DKIM_RES_TEMPERROR: return 6;
	case DKIM_RES_FAIL: return 5;
	case DKIM_RES_POLICY: return 4;
	case DKIM_RES_PERMERROR: return 3;
	case DKIM_RES_NEUTRAL: return 2;
	case DKIM_RES_NONE: return 1;
	}
	return 0;
}

static void set_action(struct dkim_outcome *out, enum dkim_action a, int temp)
{
	out->action = a;
	if (a == DKIM_ACT_REJECT) {
		out->reply_code = "550";
		out->reply_xcode = "5.7.20";
		out->reply_text = "DKIM verification failed";
	} else if (a == DKIM_ACT_TEMPFAIL) {
		out->reply_code = "451";
		out->reply_xcode = temp ? "4.7.5" : "4.3.0";
		out->reply_text = temp ? "DKIM key look-up failed, try again later"
				       : "DKIM check failed temporarily, try again later";
	}
}

static void verify_eom(struct dkim_msg *m, struct dkim_outcome *out)
{
	struct dkim_cfg *cfg = m->cfg;
	struct sig_view views[DKIM_MSG_MAX_RESULTS];
	size_t nv = 0;
	struct sbuf log;
	sbuf_init(&log);
	if (!m->no_sig) {
		DKIM_STAT st = dkim_eom(m->vd, NULL);
		if (st == DKIM_STAT_INTERNAL || st == DKIM_STAT_NORESOURCE)
			set_failed(m, "dkim_eom failed");
	}
	DKIM_SIGINFO **sigs = NULL;
	int nsigs = 0;
	if (!m->failed && !m->no_sig && dkim_getsiglist(m->vd, &sigs, &nsigs) != DKIM_STAT_OK)
		nsigs = 0;
	for (int i = 0; i < nsigs && nv < DKIM_MSG_MAX_RESULTS; i++) {
		DKIM_SIGINFO *sig = sigs[i];
		if (dkim_sig_getflags(sig) & DKIM_SIGFLAG_IGNORE)
			continue;
		struct sig_view *v = &views[nv];
		memset(v, 0, sizeof(*v));
		v->h.res = classify(m, sig, v);
		v->h.d = (const char *)dkim_sig_getdomain(sig);
		v->h.s = (const char *)dkim_sig_getselector(sig);
		if (dkim_sig_getidentity(m->vd, sig, (u_char *)v->i, sizeof(v->i)) == DKIM_STAT_OK)
			v->h.i = v->i;
		u_char *a = dkim_sig_gettagvalue(sig, 0, (u_char *)"a");
		if (a) {
			snprintf(v->a, sizeof(v->a), "%s", (const char *)a);
			v->h.a = v->a;
		}
		sig_b8(sig, v->b8);
		v->h.b = v->b8;
		nv++;
	}
	enum dkim_res best = DKIM_RES_NONE;
	struct dkim_hdr_sig hs[DKIM_MSG_MAX_RESULTS];
	for (size_t i = 0; i < nv; i++) {
		hs[i] = views[i].h;
		out->res[i] = views[i].h.res;
		if (rank(views[i].h.res) > rank(best))
			best = views[i].h.res;
	}
	out->nres = nv;
	out->best = best;
	if (m->failed) {
		set_action(out, cfg->on_internal, 0);
		out->result = "internal-error";
		sbuf_printf(&log, "milter=dkim action=%s dkim=internal-error reason=\"%s\"",
			    dkim_action_name(out->action), m->fail_why);
		out->log = sbuf_steal(&log);
		return;
	}
	out->ar_value = dkim_hdr_ar_format(cfg->authserv_id, hs, nv, 1);
	enum dkim_action a;
	switch (best) {
	case DKIM_RES_PASS: a = DKIM_ACT_ACCEPT; break;
	case DKIM_RES_TEMPERROR: a = cfg->on_dns; break;
	case DKIM_RES_FAIL: a = cfg->on_bad; break;
	case DKIM_RES_POLICY: a = cfg->on_policy; break;
	case DKIM_RES_NONE: a = cfg->on_none; break;
	default:
		/* permerror/neutral: a missing key is key-not-found, the rest a bad signature */
		a = cfg->on_bad;
		for (size_t i = 0; i < nv; i++)
			if (views[i].h.reason && strcmp(views[i].h.reason, "no key for signature") == 0)
				a = cfg->on_nokey;
		break;
	}
	set_action(out, a, best == DKIM_RES_TEMPERROR);
	out->result = dkim_res_name(best);
	sbuf_printf(&log, "milter=dkim action=%s dkim=%s", dkim_action_name(a), dkim_res_name(best));
	for (size_t i = 0; i < nv; i++) {
		sbuf_printf(&log, ", sig%zu=%s d=%s s=%s a=%s", i + 1, dkim_res_name(hs[i].res),
			    hs[i].d ? hs[i].d : "", hs[i].s ? hs[i].s : "", hs[i].a ? hs[i].a : "");
		if (hs[i].key_bits)
			sbuf_printf(&log, " bits=%u", hs[i].key_bits);
		if (hs[i].reason)
			sbuf_printf(&log, " reason=\"%s\"", hs[i].reason);
	}
	if (m->n_ar_delete)
		sbuf_printf(&log, ", removed_ar=%zu", m->n_ar_delete);
	out->log = sbuf_steal(&log);
}

static void sign_eom(struct dkim_msg *m, struct dkim_outcome *out)
{
	struct sbuf log;
	sbuf_init(&log);
	for (size_t k = 0; k < m->nsd && !m->failed; k++) {
		char *sv = dkim_signer_finish(m->sg[k]);
		if (sv == NULL) {
			set_failed(m, "signing failed");
			break;
		}
		/* leading space; folds as "\n\t" (milter convention) */
		struct sbuf v;
		sbuf_init(&v);
		sbuf_addc(&v, ' ');
		for (const char *p = sv; *p; p++)
			if (*p != '\r')
				sbuf_addc(&v, *p);
		free(sv);
		out->sig_values[out->nsig_values++] = sbuf_steal(&v);
	}
	if (m->failed) {
		for (size_t i = 0; i < out->nsig_values; i++)
			free(out->sig_values[i]);
		out->nsig_values = 0;
		set_action(out, m->cfg->on_internal, 0);
		out->result = "sign-error";
		sbuf_printf(&log, "milter=dkim action=%s sign=error reason=\"%s\"",
			    dkim_action_name(out->action), m->fail_why);
	} else if (m->nsd == 0) {
		out->result = "not-signed";
		sbuf_printf(&log, "milter=dkim action=accept sign=none reason=\"no key for author domain\"");
	} else {
		out->result = "signed";
		sbuf_printf(&log, "milter=dkim action=accept sign=ok");
		for (size_t k = 0; k < m->nsd; k++)
			sbuf_printf(&log, ", d=%s s=%s a=%s", m->choice[k].domain,
				    m->choice[k].key->selector,
				    dkim_signer_algorithm(m->sg[k]));
	}
	if (m->cfg->add_ar_on_sign) {
		/* nothing verified: no A-R for signed mail unless asked, then dkim=none */
		out->ar_value = dkim_hdr_ar_format(m->cfg->authserv_id, NULL, 0, 1);
	}
	out->log = sbuf_steal(&log);
}

void dkim_msg_eom(struct dkim_msg *m, struct dkim_outcome *out)
{
	memset(out, 0, sizeof(*out));
	if (!m->eoh_done)
		dkim_msg_eoh(m);
	/* forged A-R claiming our authserv-id go in both modes, highest index first */
	for (size_t i = 0; i < m->n_ar_delete; i++)
		out->ar_delete[i] = m->ar_delete[m->n_ar_delete - 1 - i];
	out->n_ar_delete = m->n_ar_delete;
	if (m->sign)
		sign_eom(m, out);
	else
		verify_eom(m, out);
}

void dkim_outcome_clear(struct dkim_outcome *out)
{
	free(out->ar_value);
	for (size_t i = 0; i < out->nsig_values; i++)
		free(out->sig_values[i]);
	free(out->log);
	memset(out, 0, sizeof(*out));
}

void dkim_msg_free(struct dkim_msg **mp)
{
	struct dkim_msg *m = *mp;
	if (m == NULL)
		return;
	if (m->vd)
		dkim_free(m->vd);
	for (size_t k = 0; k < m->nsd; k++)
		dkim_signer_free(&m->sg[k]);
	for (size_t i = 0; i < m->nhdrs; i++)
		free(m->hdrs[i].line);
	free(m->hdrs);
	free(m->qid);
	dkim_cfg_unref(&m->cfg);
	free(m);
	*mp = NULL;
}
