/*
 * dkim_cfg: one generation of sluice-dkim's configuration, built from the
 * dkim_* keys of sluice.conf (conf/params_dkim.c): the libopendkim library
 * handle with our DNS hooks and options, the signing keys and tables, the
 * internal hosts and the On-* actions.
 * Owns: validation at start-up and at SIGHUP (every error names file and
 * line), and reference counting, so a reload swaps generations while
 * messages in flight finish with the one they started with.
 * Leaves: per-message work to dkim_msg.c, sockets to main.c.
 */
#ifndef SLUICE_DKIM_CFG_H
#define SLUICE_DKIM_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "milters/dkim/dkim_keys.h"

struct conf;
struct dkim_dns;

enum dkim_action {
	DKIM_ACT_ACCEPT, DKIM_ACT_REJECT, DKIM_ACT_TEMPFAIL, DKIM_ACT_QUARANTINE, DKIM_ACT_DISCARD,
};
const char *dkim_action_name(enum dkim_action a);

struct dkim_cfg {
	void *lib;			/* DKIM_LIB * */
	struct dkim_dns *dns;
	struct dkim_keyset *keys;
	struct dkim_hosts *internal;
	char *authserv_id;
	int max_signatures;
	int allow_sha1;
	unsigned min_key_bits;
	int refuse_body_length;
	int sign_authenticated;
	int add_ar_on_sign;
	int hcanon, bcanon;		/* DKIM_CANON_* */
	enum dkim_action on_bad, on_none, on_nokey, on_dns, on_internal, on_policy;
	char **sign_hdrs, **oversign_hdrs;	/* NULL-terminated, for dkim_signer.c */
	uint64_t fixed_time;		/* tests: signing t= */
	uint64_t ttl_s;			/* dkim_signature_ttl */
	int refs;			/* atomic */
};

struct dkim_cfg_test {
	struct dkim_dns *dns;		/* instead of dns_servers (taken over) */
	uint64_t fixed_time;		/* signing t= (0 = now) */
};

/*
 * dkim_cfg_new - build a generation from loaded conf (refs = 1). test may be
 * NULL. Returns NULL with *err_out (caller frees) naming file:line.
 */
struct dkim_cfg *dkim_cfg_new(const struct conf *c, const struct dkim_cfg_test *test,
			      char **err_out);
struct dkim_cfg *dkim_cfg_ref(struct dkim_cfg *cfg);
/* dkim_cfg_unref - frees on the last reference; sets *cfg NULL. */
void dkim_cfg_unref(struct dkim_cfg **cfg);



/*
 * dkim_cfg_milter_conn - dkim_socket in libmilter's form: "unix:/p" and
 * "local:/p" stay, "inet:host:port" and "inet:[v6]:port" become
 * "inet:port@host" / "inet6:port@v6", Sendmail's "inet:port@host" and
 * "inet6:port@host" stay. New string, or NULL with *err_out (static).
 */
char *dkim_cfg_milter_conn(const char *spec, const char **err_out);
#endif
