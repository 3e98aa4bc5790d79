/*
 * dmarc_auth: which SPF and DKIM results count for one message.
 * Owns: computing them (SPF with proto/spf: the MAIL FROM identity, or
 * postmaster@HELO for the null path; DKIM from sluice-dkim's verifier and
 * its Authentication-Results) and, for dmarc_self_validate = no, reading
 * them from trusted headers: A-R whose authserv-id is trusted (an SPF result
 * only for our MAIL FROM domain or, for <>, our HELO; a dkim=pass only when
 * the message holds a DKIM-Signature with that d= and b= prefix, and not
 * contradicted by another trusted result), the topmost Received-SPF only with
 * dmarc_trust_received_spf, identity=mailfrom and our envelope-from.
 * Leaves: the message itself and the decision (dmarc_msg.c), header syntax
 * (proto/authres, dmarc_hdr), DKIM crypto (sluice-dkim, libopendkim).
 * Headers are untrusted: nothing here is believed beyond the rules above.
 */
#ifndef SLUICE_DMARC_AUTH_H
#define SLUICE_DMARC_AUTH_H

#include "milters/dmarc/dmarc_cfg.h"
#include "proto/dmarc.h"
#include "proto/spf.h"

#include <stddef.h>

struct dkim_msg;

/* One header value as received (NUL-terminated copy, len bytes). */
struct dmarc_auth_hv {
	char *value;
	size_t len;
};

/* What is read of the message; everything borrowed for the call. */
struct dmarc_auth_msg {
	const struct dmarc_cfg *cfg;
	const char *mail_from;		/* without <>; "" = null path */
	const char *helo;		/* "" = none */
	const char *client_ip;		/* "" = none */
	const struct dmarc_auth_hv *ar, *sig, *rspf;	/* A-R, DKIM-Signature, Received-SPF, top first */
	size_t nar, nsig, nrspf;
};

/* One DKIM result as DMARC uses it and as we report it. */
struct dmarc_auth_dkim {
	char d[256], s[256], b[64];
	enum dmarc_auth_result res;
	char reason[128];
};

/* The SPF result used. */
struct dmarc_auth_spf {
	int have;
	int self;			/* computed here (1) or read from a trusted header (0) */
	char domain[256];
	int helo_scope;			/* null MAIL FROM: the HELO identity */
	enum dmarc_auth_result res;
	enum spf_result spf;
};

/* dmarc_auth_result_of - "pass", "Fail", ... as enum dmarc_auth_result (unknown: NONE). */
enum dmarc_auth_result dmarc_auth_result_of(const char *s);

/* dmarc_auth_trusted_has - 1 if a trusted A-R holds a result of method ("dkim", "spf"). */
int dmarc_auth_trusted_has(const struct dmarc_auth_msg *m, const char *method);

/* dmarc_auth_spf_trusted / _received - 1 and *o filled when a trusted A-R /
 * the topmost Received-SPF gives the SPF result (rules above), else 0. */
int dmarc_auth_spf_trusted(const struct dmarc_auth_msg *m, struct dmarc_auth_spf *o);
int dmarc_auth_spf_received(const struct dmarc_auth_msg *m, struct dmarc_auth_spf *o);

/* dmarc_auth_spf_self - check SPF here (blocking DNS until deadline_ms, then temperror). */
void dmarc_auth_spf_self(const struct dmarc_auth_msg *m, struct dmarc_auth_spf *o,
			 long long deadline_ms);

/* dmarc_auth_dkim_trusted - the dkim= results of trusted A-R into r[] (at most max). */
size_t dmarc_auth_dkim_trusted(const struct dmarc_auth_msg *m, struct dmarc_auth_dkim *r,
			       size_t max);

/* dmarc_auth_dkim_self - finish sluice-dkim's verification dk (headers and body
 * already fed) and return its per-signature results in r[] (at most max). */
size_t dmarc_auth_dkim_self(const struct dmarc_auth_msg *m, struct dkim_msg *dk,
			    struct dmarc_auth_dkim *r, size_t max);

#endif
