/*
 * rl_req: see rl_req.h.
 */
#include "policyd/ratelimit/rl_req.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "lib/geoip.h"
#include "lib/util.h"
#include "policyd/ratelimit/rl_net.h"
#include "policyd/ratelimit/rl_plan.h"

enum { HAVE_SENDER = 1, HAVE_RCPT = 2, HAVE_NET = 4, HAVE_GEO = 8 };

void rl_req_init(struct rl_req *r, const struct policy_msg *m, int prefix4, int prefix6)
{
	memset(r, 0, sizeof(*r));
	r->m = m;
	r->prefix4 = prefix4;
	r->prefix6 = prefix6;
}

void rl_req_set_geoip(struct rl_req *r, const struct geoip *geo)
{
	r->geo = geo;
	r->have &= ~(unsigned)HAVE_GEO;
}

/* geo_get - client_country or client_asn (name[7] 'c' or 'a'); one look-up per request. */
static const char *geo_get(struct rl_req *r, const char *name)
{
	int want_cc = name[7] == 'c';

	if (want_cc ? !geoip_has_country(r->geo) : !geoip_has_asn(r->geo))
		return policy_msg_get(r->m, name);
	if (!(r->have & HAVE_GEO)) {
		unsigned asn = 0;
		geoip_lookup(r->geo, policy_msg_get(r->m, "client_address"), r->country, &asn);
		r->asn[0] = 0;
		if (asn)
			snprintf(r->asn, sizeof r->asn, "%u", asn);
		r->have |= HAVE_GEO;
	}
	return want_cc ? r->country : r->asn;
}

/* split_addr - local part and domain of addr (after the last '@'), lower-cased domain. */
static void split_addr(const char *addr, char *local, char *domain, size_t len)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	local[0] = domain[0] = 0;
	if (!addr)
		return;
	if (!at) {
		snprintf(local, len, "%s", addr);
		return;
	}
	snprintf(local, len, "%.*s", (int)(at - addr), addr);
	snprintf(domain, len, "%s", at + 1);
	ascii_lower(domain);
}

const char *rl_req_get(void *ctx, const char *name)
{
	struct rl_req *r = ctx;

	if (!strncmp(name, "sender_", 7) &&
	    (!strcmp(name + 7, "domain") || !strcmp(name + 7, "localpart"))) {
		if (!(r->have & HAVE_SENDER)) {
			split_addr(policy_msg_get(r->m, "sender"), r->sender_local, r->sender_domain,
				   sizeof r->sender_local);
			r->have |= HAVE_SENDER;
		}
		return name[7] == 'd' ? r->sender_domain : r->sender_local;
	}
	if (!strncmp(name, "recipient_", 10) &&
	    (!strcmp(name + 10, "domain") || !strcmp(name + 10, "localpart"))) {
		if (!(r->have & HAVE_RCPT)) {
			split_addr(policy_msg_get(r->m, "recipient"), r->rcpt_local, r->rcpt_domain,
				   sizeof r->rcpt_local);
			r->have |= HAVE_RCPT;
		}
		return name[10] == 'd' ? r->rcpt_domain : r->rcpt_local;
	}
	if (!strcmp(name, "client_net")) {
		if (!(r->have & HAVE_NET)) {
			if (rl_net_of(policy_msg_get(r->m, "client_address"), r->prefix4, r->prefix6,
				      r->client_net, sizeof r->client_net) < 0)
				r->client_net[0] = 0;
			r->have |= HAVE_NET;
		}
		return r->client_net;
	}
	if (!strcmp(name, "client_country") || !strcmp(name, "client_asn"))
		return geo_get(r, name);
	return policy_msg_get(r->m, name);
}

int rl_req_key(struct rl_req *r, const char *prefix, const char *const *names, size_t n,
	       char *out, size_t outlen)
{
	struct sbuf b;
	size_t plen = strlen(prefix);

	sbuf_init(&b);
	sbuf_adds(&b, prefix);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(names[i], "global")) {
			sbuf_adds(&b, "global");
			continue;
		}
		const char *v = rl_req_get(r, names[i]);
		if (!v || !*v) {
			sbuf_free(&b);
			return -1;
		}
		sbuf_printf(&b, "%s%s=", i ? "," : "", names[i]);
		size_t at = b.len;
		sbuf_adds(&b, v);
		ascii_lower(b.buf + at);
	}
	int rc = rl_key_fit(prefix, b.buf + plen, out, outlen);
	sbuf_free(&b);
	return rc;
}

int rl_key_fit(const char *prefix, const char *text, char *out, size_t outlen)
{
	size_t plen = strlen(prefix), tlen = strlen(text);

	if (plen + tlen < outlen && plen + tlen <= RL_KEY_MAX_BYTES) {
		memcpy(out, prefix, plen);
		memcpy(out + plen, text, tlen + 1);
		return 0;
	}
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(text, tlen, md, &mdlen, EVP_sha256(), NULL);
	if (plen + 1 + 2 * mdlen >= outlen)
		return -1;
	memcpy(out, prefix, plen);
	out[plen] = '#';
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(out + plen + 1 + 2 * i, 3, "%02x", md[i]);
	return 0;
}
