/*
 * dmarc_cfg: one generation of sluice-dmarc's configuration, built from the
 * dmarc_* keys of sluice.conf (conf/params_dmarc.c) and the DNS keys.
 * Owns: validation at start-up and at SIGHUP (every error names file and
 * line), the resolver pool, the Public Suffix List (rfc7489 mode), the
 * verify-only sluice-dkim generation whose verifier and key cache check DKIM,
 * and reference counting, so a reload swaps generations while messages in
 * flight finish with the one they started with.
 * Leaves: per-message work to dmarc_msg.c, sockets to main.c.
 */
#ifndef SLUICE_DMARC_CFG_H
#define SLUICE_DMARC_CFG_H

#include "proto/dmarc.h"

#include <stddef.h>

struct conf;
struct dkim_cfg;
struct dkim_dns;
struct dkim_hosts;
struct dmarc_dns;
struct dmarc_failrep_rate;

struct dmarc_cfg {
	struct dkim_cfg *dkim;		/* sluice-dkim's verifier (no signing keys) */
	struct dmarc_dns *dns;
	void *psl;			/* psl_ctx_t * in rfc7489 mode; NULL = libpsl's built-in */
	struct dkim_hosts *ignore_hosts;
	char **ignore_domains;		/* lower-cased, no trailing dot */
	size_t nignore_domains;
	char **trusted_ids;		/* dmarc_trusted_authserv_ids */
	size_t ntrusted;
	char *authserv_id;
	char *reject_reply;		/* template: %d = From domain */
	char *receiver;			/* myhostname (SPF %{r}) */
	enum dmarc_mode mode;
	int self_validate;
	int trust_received_spf;
	int reject_malformed;
	int enforce;
	int ignore_authenticated;
	int tempfail_on_temperror;
	int quarantine_hold;		/* 1 = milter quarantine, 0 = X-Sluice-DMARC header */
	size_t max_from_domains;
	long long deadline_ms;		/* DNS time for one message */
	int pct_roll;			/* tests: fixed 0..99; -1 = random per message */
	/* RFC 9991 failure reports (milters/dmarc/dmarc_failrep.c) */
	int failrep;			/* dmarc_failure_reports */
	int failrep_redact;
	char *failrep_from;		/* checked with dmarc_failrep_addr_ok */
	char *failrep_sendmail;		/* the command (absolute) */
	char *failrep_sendmail_conf;	/* its -C when it is sluice-sendmail, else NULL */
	struct dmarc_failrep_rate *failrep_rate;	/* one per process (counts survive SIGHUP) */
	int refs;			/* atomic */
};

/* For tests: fake DNS for both (taken over, freed with the generation), a fixed pct roll. */
struct dmarc_cfg_test {
	struct dmarc_dns *dns;
	struct dkim_dns *dkim_dns;
	int pct_roll;
};

/*
 * dmarc_cfg_set_config_file - the absolute path of the configuration file,
 * passed to sluice-sendmail as -C for failure reports (main.c, once).
 */
void dmarc_cfg_set_config_file(const char *path);

/*
 * dmarc_cfg_new - a generation from loaded conf (refs = 1); test may be
 * NULL. The dkim_* signing keys of a shared sluice.conf are overridden to
 * empty in c (sluice-dmarc only verifies). Returns NULL with *err_out
 * (caller frees) naming file:line.
 */
struct dmarc_cfg *dmarc_cfg_new(struct conf *c, const struct dmarc_cfg_test *test, char **err_out);
struct dmarc_cfg *dmarc_cfg_ref(struct dmarc_cfg *cfg);
/* dmarc_cfg_unref - frees on the last reference; sets *cfg NULL. */
void dmarc_cfg_unref(struct dmarc_cfg **cfg);

/* dmarc_cfg_ignored_domain - 1 if dom (normalized) is in dmarc_ignore_domains. */
int dmarc_cfg_ignored_domain(const struct dmarc_cfg *cfg, const char *dom);
/* dmarc_cfg_trusted_id - 1 if id is in dmarc_trusted_authserv_ids (ASCII case-insensitive). */
int dmarc_cfg_trusted_id(const struct dmarc_cfg *cfg, const char *id);

#endif
