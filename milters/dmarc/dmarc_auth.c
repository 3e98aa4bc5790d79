#include "milters/dmarc/dmarc_auth.h"
#include "milters/dmarc/dmarc_dns.h"
#include "milters/dmarc/dmarc_hdr.h"
#include "milters/dkim/dkim_msg.h"
#include "proto/authres.h"
#include "lib/util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
/* Does a trusted A-R carry a result of this method? */
int dmarc_auth_trusted_has(const struct dmarc_auth_msg *m, const char *method)
{
	for (size_t i = 0; i < m->nar; i++) {
		struct authres *a;
		if (authres_parse(m->ar[i].value, m->ar[i].len, &a, NULL) != 0)
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

enum dmarc_auth_result dmarc_auth_result_of(const char *s)
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



/* Is there a DKIM-Signature with d= (case-insensitive) and a b= starting with b? */
static int sig_present(const struct dmarc_auth_msg *m, const char *d, const char *b)
{
	for (size_t i = 0; i < m->nsig; i++) {
		char sd[256], sb[2048];
		if (dmarc_hdr_tag(m->sig[i].value, "d", sd, sizeof(sd)) < 0 ||
		    ascii_strcasecmp(sd, d) != 0)
			continue;
		if (b == NULL || *b == 0)
			return 1;
		if (dmarc_hdr_tag(m->sig[i].value, "b", sb, sizeof(sb)) == 0 &&
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
static size_t dkim_from_ar(const struct dmarc_auth_msg *m, const struct authres *a, struct dmarc_auth_dkim *r,
			   size_t n, size_t max, int verify_sigs)
{
	for (size_t k = 0; k < a->nresults && n < max; k++) {
		const struct authres_result *x = &a->results[k];
		if (strcmp(x->method, "dkim") != 0)
			continue;
		struct dmarc_auth_dkim *o = &r[n];
		memset(o, 0, sizeof(*o));
		o->res = dmarc_auth_result_of(x->result);
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
size_t dmarc_auth_dkim_trusted(const struct dmarc_auth_msg *m, struct dmarc_auth_dkim *r, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nar; i++) {
		struct authres *a;
		if (authres_parse(m->ar[i].value, m->ar[i].len, &a, NULL) != 0)
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
size_t dmarc_auth_dkim_self(const struct dmarc_auth_msg *m, struct dkim_msg *dk, struct dmarc_auth_dkim *r,
			    size_t max)
{
	if (dk == NULL)
		return 0;
	struct dkim_outcome out;
	dkim_msg_eom(dk, &out);
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
int dmarc_auth_spf_received(const struct dmarc_auth_msg *m, struct dmarc_auth_spf *o)
{
	if (!m->cfg->trust_received_spf || m->nrspf == 0 || m->mail_from[0] == 0)
		return 0;
	const char *v = m->rspf[0].value;
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
	o->res = dmarc_auth_result_of(word);
	o->spf = spf_of_auth(o->res);
	return 1;
}

/* Trusted A-R: spf= with smtp.mailfrom of our MAIL FROM's domain (or smtp.helo for <>). */
int dmarc_auth_spf_trusted(const struct dmarc_auth_msg *m, struct dmarc_auth_spf *o)
{
	int found = 0;
	const char *mfd = dmarc_hdr_addr_domain(m->mail_from);
	for (size_t i = 0; i < m->nar && !found; i++) {
		struct authres *a;
		if (authres_parse(m->ar[i].value, m->ar[i].len, &a, NULL) != 0)
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
			o->res = dmarc_auth_result_of(x->result);
			o->spf = spf_of_auth(o->res);
		}
		authres_free(&a);
	}
	return found;
}

void dmarc_auth_spf_self(const struct dmarc_auth_msg *m, struct dmarc_auth_spf *o, long long deadline_ms)
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
