/*
 * rl_req: one policy request as sluice-ratelimit sees it. Owns: attribute
 * look-up with the derived attributes (sender_domain, sender_localpart,
 * recipient_domain, recipient_localpart, client_net, client_country,
 * client_asn) and building counter keys from attribute names ("global"
 * included).
 * Leaves: the wire format (proto/policy), rules (rl_rules), counting
 * (rl_engine).
 *
 * client_net is the client's network at ratelimit_client_net_prefix
 * (/24 and /64 by default), written "192.0.2.0/24" or "2001:db8:1:2::/64".
 * client_country is the upper-case ISO 3166 code of the client_address's
 * "country" in ratelimit_geoip_country_db ("XX" for a public address the
 * database does not place, "" for a private or missing address);
 * client_asn its "autonomous_system_number" in ratelimit_geoip_asn_db, in
 * decimal ("" when none) (lib/geoip). Without a database for one of them,
 * the request's own attribute of that name is used (an MTA may send it).
 */
#ifndef SLUICE_RL_REQ_H
#define SLUICE_RL_REQ_H

#include <stddef.h>
#include "proto/policy.h"

struct geoip;

struct rl_req {
	const struct policy_msg *m;
	int prefix4, prefix6;
	/* derived values, computed on first use */
	char sender_domain[256], sender_local[256], rcpt_domain[256], rcpt_local[256];
	char client_net[64];
	const struct geoip *geo;	/* NULL: no GeoIP databases */
	char country[3], asn[16];
	unsigned have;	/* bit per derived value computed */
};

/* rl_req_init - m is borrowed for the life of r. */
void rl_req_init(struct rl_req *r, const struct policy_msg *m, int prefix4, int prefix6);

/* rl_req_set_geoip - look client_country / client_asn up in geo (borrowed; NULL: none). */
void rl_req_set_geoip(struct rl_req *r, const struct geoip *geo);

/*
 * rl_req_get - an rl_attr_fn (rl_rules.h): the value of name or NULL;
 * ctx is the struct rl_req. Borrowed until the request is done.
 */
const char *rl_req_get(void *ctx, const char *name);

/*
 * rl_req_key - "prefix" + "name=value,name=value" (values lower-cased) for
 * the attribute names, or "global". Returns 0, or -1 when an attribute is
 * missing or empty (the limit does not apply). Keys longer than
 * RL_KEY_MAX_BYTES end in "#" + a SHA-256 of the values instead.
 */
int rl_req_key(struct rl_req *r, const char *prefix, const char *const *names, size_t n,
	       char *out, size_t outlen);

/*
 * rl_key_fit - prefix + text into out, or prefix + "#" + SHA-256 hex of
 * text when that is longer than RL_KEY_MAX_BYTES (or outlen). 0 or -1.
 */
int rl_key_fit(const char *prefix, const char *text, char *out, size_t outlen);

#endif
