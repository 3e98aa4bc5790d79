/*
 * spfd_policy: policyd-spf's decisions as a pure state machine; see
 * spfd_policy.h. The flow follows spf_engine._spfcheck (policyd-spf 3.0.4):
 * skip_addresses, Whitelist, Domain_Whitelist, then HELO, then MAIL FROM.
 */
#include "policyd/spf/spfd_policy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "lib/util.h"

/* ------------------------------------------------------------ options */

static const char *const reject_names[] = {
	"Fail", "SPF_Not_Pass", "Softfail", "Null", "False", "No_Check",
};

int spfd_reject_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(reject_names) / sizeof(reject_names[0]); i++)
		if (!ascii_strcasecmp(s, reject_names[i]))
			return (int)i;
	return -1;
}

static int ip_parse(const char *s, int *v6_out, unsigned char *addr)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, s, &a4) == 1) {
		memcpy(addr, &a4, 4);
		*v6_out = 0;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		memcpy(addr, &a6.s6_addr[12], 4);
		*v6_out = 0;
		return 1;	/* mapped: prefixes shift by 96 */
	}
	memcpy(addr, &a6, 16);
	*v6_out = 1;
	return 0;
}

int spfd_net_parse(const char *s, struct spfd_net *out)
{
	char buf[128];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);

	memset(out, 0, sizeof(*out));
	if (n >= sizeof(buf) || n == 0)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	char *a = buf;
	if (a[0] == '[') {
		size_t m = strlen(a);
		if (m < 2 || a[m - 1] != ']')
			return -1;
		a[m - 1] = 0;
		a++;
	}
	int mapped = ip_parse(a, &out->v6, out->addr);
	if (mapped < 0)
		return -1;
	unsigned max = out->v6 ? 128 : 32;
	out->prefix = max;
	if (slash) {
		char *end;
		long p = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || p < 0 || p > (mapped ? 128 : max))
			return -1;
		if (mapped)
			p = p >= 96 ? p - 96 : 0;
		out->prefix = (unsigned)p;
	}
	return 0;
}

static int net_match(const struct spfd_net *n, int v6, const unsigned char *addr)
{
	if (n->v6 != v6)
		return 0;
	unsigned full = n->prefix / 8, rest = n->prefix % 8;
	if (memcmp(n->addr, addr, full))
		return 0;
	if (rest) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));
		if ((n->addr[full] & mask) != (addr[full] & mask))
			return 0;
	}
	return 1;
}

int spfd_net_match_any(const struct spfd_net *nets, size_t n, const char *ip)
{
	unsigned char addr[16];
	int v6;

	if (!ip || ip_parse(ip, &v6, addr) < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (net_match(&nets[i], v6, addr))
			return 1;
	return 0;
}

void spfd_opts_defaults(struct spfd_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->helo_reject = SPFD_REJ_FAIL;
	o->mfrom_reject = SPFD_REJ_FAIL;
	o->skip_sasl = 1;
	o->header_type = SPFD_HDR_SPF;
	o->authserv_id = xstrdup("localhost");
	o->reason_message = xstrdup("Message {rejectdefer} due to: {spf}. Please see {url}");
	o->lookup_time_ms = 20000;
	o->cache_size = 10000;
	o->skip = xcalloc(2, sizeof(*o->skip));
	spfd_net_parse("127.0.0.0/8", &o->skip[0]);
	spfd_net_parse("::1", &o->skip[1]);
	o->nskip = 2;
}

static int nets_load(const struct conf *c, const char *name, struct spfd_net **out,
		     size_t *n_out, char **err_out)
{
	size_t n;
	const char *const *items = conf_list(c, name, &n);

	*out = xcalloc(n + 1, sizeof(**out));
	*n_out = 0;
	for (size_t i = 0; i < n; i++) {
		if (spfd_net_parse(items[i], &(*out)[i]) < 0) {
			*err_out = xasprintf("%s: %s: bad address or network \"%s\"",
					     conf_where(c, name), name, items[i]);
			return -1;
		}
		(*n_out)++;
	}
	return 0;
}

static char **strs_load(const struct conf *c, const char *name, size_t *n_out)
{
	size_t n;
	const char *const *items = conf_list(c, name, &n);
	char **out = xcalloc(n + 1, sizeof(*out));

	for (size_t i = 0; i < n; i++) {
		out[i] = xstrdup(items[i]);
		size_t m = strlen(out[i]);
		if (m > 1 && out[i][m - 1] == '.')
			out[i][m - 1] = 0;
		ascii_lower(out[i]);
	}
	*n_out = n;
	return out;
}

int spfd_opts_load(const struct conf *c, struct spfd_opts *o, char **err_out)
{
	spfd_opts_defaults(o);
	free(o->skip);
	o->skip = NULL;
	o->nskip = 0;
	o->helo_reject = (enum spfd_reject)spfd_reject_parse(conf_str(c, "spf_helo_reject"));
	o->mfrom_reject = (enum spfd_reject)spfd_reject_parse(conf_str(c, "spf_mail_from_reject"));
	o->permerror_reject = conf_bool(c, "spf_permerror_reject");
	o->temperror_defer = conf_bool(c, "spf_temperror_defer");
	o->skip_sasl = conf_bool(c, "spf_skip_sasl");
	o->header_type = !ascii_strcasecmp(conf_str(c, "spf_header_type"), "AR") ? SPFD_HDR_AR
										 : SPFD_HDR_SPF;
	free(o->authserv_id);
	o->authserv_id = xstrdup(conf_str(c, "spf_authserv_id"));
	free(o->reason_message);
	o->reason_message = xstrdup(conf_str(c, "spf_reason_message"));
	o->lookup_time_ms = conf_time_s(c, "spf_lookup_time") * 1000;
	o->cache_size = (size_t)conf_int(c, "spf_cache_size");
	o->domain_whitelist = strs_load(c, "spf_domain_whitelist", &o->ndomain_whitelist);
	o->reject_not_pass = strs_load(c, "spf_reject_not_pass_domains", &o->nreject_not_pass);
	if (nets_load(c, "spf_skip_addresses", &o->skip, &o->nskip, err_out) < 0 ||
	    nets_load(c, "spf_whitelist", &o->whitelist, &o->nwhitelist, err_out) < 0)
		return -1;
	if ((int)o->helo_reject < 0 || (int)o->mfrom_reject < 0) {
		*err_out = xstrdup("spf_helo_reject/spf_mail_from_reject: bad value");
		return -1;
	}
	if (o->header_type == SPFD_HDR_AR && !*o->authserv_id) {
		*err_out = xasprintf("%s: spf_authserv_id is empty but spf_header_type = AR",
				     conf_where(c, "spf_authserv_id"));
		return -1;
	}
	return 0;
}

static void strs_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void spfd_opts_free(struct spfd_opts *o)
{
	free(o->skip);
	free(o->whitelist);
	strs_free(o->domain_whitelist, o->ndomain_whitelist);
	strs_free(o->reject_not_pass, o->nreject_not_pass);
	free(o->authserv_id);
	free(o->reason_message);
	memset(o, 0, sizeof(*o));
}

/* ------------------------------------------------------------ headers */

/* RFC 5322 atext */
static int is_atext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-/=?^_`{|}~", ch));
}

static int is_dot_atom(const char *s)
{
	int need = 1;	/* an atext must come next */

	if (!*s)
		return 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '.') {
			if (need)
				return 0;
			need = 1;
		} else if (is_atext(*p)) {
			need = 0;
		} else {
			return 0;
		}
	}
	return !need;
}

/* Printable ASCII only in header text; anything else becomes '?'. */
static void add_clean(struct sbuf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		sbuf_addc(b, (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?');
}

char *spfd_quote_value(const char *s)
{
	struct sbuf b;

	sbuf_init(&b);
	if (is_dot_atom(s)) {
		add_clean(&b, s);
		return sbuf_steal(&b);
	}
	sbuf_addc(&b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\' || *p == '"')
			sbuf_addc(&b, '\\'), sbuf_addc(&b, (char)*p);
		else
			sbuf_addc(&b, (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?');
	}
	sbuf_addc(&b, '"');
	return sbuf_steal(&b);
}

static const char *result_tag(enum spf_result r)
{
	static const char *const tags[] = {
		"None", "Neutral", "Pass", "Fail", "SoftFail", "TempError", "PermError",
	};
	return (unsigned)r < 7 ? tags[r] : "None";
}

/* The domain the result is about: pyspf's %{o} (sender domain, or helo). */
static const char *about_domain(int identity_helo, const char *sender, const char *helo)
{
	const char *at = sender ? strrchr(sender, '@') : NULL;

	if (identity_helo || !sender || !*sender)
		return helo ? helo : "";
	return at ? at + 1 : sender;
}

/* The reason without the "domain: " prefix proto/spf puts first. */
static const char *bare_reason(const char *reason)
{
	const char *p = reason ? strstr(reason, ": ") : NULL;
	return p ? p + 2 : (reason ? reason : "");
}

/* pyspf's get_header_comment (RFC 7208 9.1 comment), after "receiver: ". */
static void add_comment(struct sbuf *b, const struct spfd_checked *r, const char *ip,
			const char *dom)
{
	switch (r->result) {
	case SPF_PASS:
		sbuf_printf(b, "domain of %s designates %s as permitted sender", dom, ip);
		break;
	case SPF_SOFTFAIL:
		sbuf_printf(b, "transitioning domain of %s does not designate %s as permitted sender",
			    dom, ip);
		break;
	case SPF_FAIL:
		sbuf_printf(b, "domain of %s does not designate %s as permitted sender", dom, ip);
		break;
	case SPF_PERMERROR:
		sbuf_printf(b, "permanent error in processing domain of %s: %s", dom,
			    bare_reason(r->reason));
		break;
	case SPF_TEMPERROR:
		sbuf_printf(b, "temporary error in processing during lookup of %s", dom);
		break;
	default:
		sbuf_printf(b, "%s is neither permitted nor denied by domain of %s", ip, dom);
		break;
	}
}

char *spfd_received_spf(const struct spfd_checked *r, int identity_helo, const char *ip,
			const char *sender, const char *helo, const char *receiver)
{
	struct sbuf b, tmp;
	const char *dom = about_domain(identity_helo, sender, helo);

	sbuf_init(&b);
	sbuf_init(&tmp);
	add_comment(&tmp, r, ip, dom);
	sbuf_printf(&b, "%s (", result_tag(r->result));
	add_clean(&b, receiver);
	sbuf_adds(&b, ": ");
	add_clean(&b, tmp.buf);
	sbuf_adds(&b, ") client-ip=");
	add_clean(&b, ip);
	sbuf_addc(&b, ';');
	struct { const char *key, *val; } kv[] = {
		{ "envelope-from", identity_helo ? NULL : (sender ? sender : "") },
		{ "helo", helo ? helo : "" },
		{ "receiver", receiver },
		{ "problem", r->result == SPF_PERMERROR ? r->problem : NULL },
		{ "mechanism", r->result != SPF_PERMERROR && r->result != SPF_TEMPERROR
				       ? r->mechanism : NULL },
	};
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (!kv[i].val || (!*kv[i].val && strcmp(kv[i].key, "envelope-from")))
			continue;
		char *q = spfd_quote_value(kv[i].val);
		sbuf_printf(&b, " %s=%s;", kv[i].key, q);
		free(q);
	}
	sbuf_printf(&b, " identity=%s", identity_helo ? "helo" : "mailfrom");
	sbuf_free(&tmp);
	return sbuf_steal(&b);
}

char *spfd_auth_results(const struct spfd_checked *r, int identity_helo, const char *ip,
			const char *sender, const char *helo, const char *authserv_id)
{
	struct sbuf b, tmp;
	const char *dom = about_domain(identity_helo, sender, helo);

	sbuf_init(&b);
	sbuf_init(&tmp);
	add_comment(&tmp, r, ip, dom);
	add_clean(&b, authserv_id);
	sbuf_printf(&b, "; spf=%s (", spf_result_name(r->result));
	add_clean(&b, tmp.buf);
	sbuf_adds(&b, ") ");
	sbuf_adds(&b, identity_helo ? "smtp.helo=" : "smtp.mailfrom=");
	char *q = spfd_quote_value(dom);
	sbuf_adds(&b, q);
	free(q);
	sbuf_reset(&tmp);
	sbuf_printf(&tmp, " (client-ip=%s; helo=%s; envelope-from=%s", ip, helo ? helo : "",
		    sender && *sender ? sender : "<>");
	if (r->mechanism && r->result != SPF_PERMERROR && r->result != SPF_TEMPERROR)
		sbuf_printf(&tmp, "; mechanism=%s", r->mechanism);
	sbuf_adds(&tmp, ")");
	for (char *p = tmp.buf + 2; *p; p++)	/* no nested comments */
		if ((*p == '(' || *p == ')') && p[1])
			*p = '_';
	add_clean(&b, tmp.buf);
	sbuf_free(&tmp);
	return sbuf_steal(&b);
}

/* ------------------------------------------------------------ the job */

enum job_phase { PH_START, PH_DWL, PH_HELO, PH_MFROM, PH_DONE };

struct one {		/* one identity's outcome */
	int done;
	enum spf_result result;
	char *mechanism, *reason, *problem, *explanation;
	enum spfd_action act;
	int local;		/* Reject_Not_Pass_Domains decided */
	char *header;
};

struct spfd_job {
	const struct spfd_opts *o;
	long long now_s;
	enum job_phase ph;
	size_t dwl_i;
	char *ip, *sender, *helo, *recipient, *sasl;
	char *postmaster;	/* request strings */
	struct one helo_r, mfrom_r;
	enum spfd_action kind;
	char *action;
	const char *scope, *identity, *result_name;
	const char *mechanism, *reason;
	unsigned dns_terms, checks;
};

static void one_clear(struct one *x)
{
	free(x->mechanism), free(x->reason), free(x->problem), free(x->explanation);
	free(x->header);
	memset(x, 0, sizeof(*x));
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct spfd_job *spfd_job_new(const struct spfd_opts *o, const struct policy_msg *m,
			      long long now_s)
{
	struct spfd_job *j = xcalloc(1, sizeof(*j));
	const char *v;

	j->o = o;
	j->now_s = now_s;
	j->ip = dup_or_null(policy_msg_get(m, "client_address"));
	j->sender = xstrdup((v = policy_msg_get(m, "sender")) ? v : "");
	j->helo = xstrdup((v = policy_msg_get(m, "helo_name")) ? v : "");
	j->recipient = xstrdup((v = policy_msg_get(m, "recipient")) ? v : "");
	j->sasl = xstrdup((v = policy_msg_get(m, "sasl_username")) ? v : "");
	j->scope = "none";
	j->identity = "";
	j->result_name = "none";
	return j;
}

void spfd_job_free(struct spfd_job **jp)
{
	if (!jp || !*jp)
		return;
	struct spfd_job *j = *jp;
	free(j->ip), free(j->sender), free(j->helo), free(j->recipient), free(j->sasl);
	free(j->postmaster);
	one_clear(&j->helo_r);
	one_clear(&j->mfrom_r);
	free(j->action);
	free(j);
	*jp = NULL;
}

static void finish(struct spfd_job *j, enum spfd_action kind, char *action)
{
	j->kind = kind;
	free(j->action);
	j->action = action;
	j->ph = PH_DONE;
}

static void finish_dunno(struct spfd_job *j, const char *why)
{
	j->reason = why;
	finish(j, SPFD_ACT_DUNNO, xstrdup("DUNNO"));
}

/* policyd-spf's X-Comment (SPF) or spf=none (AR) header for skipped checks. */
static void finish_skip(struct spfd_job *j, const char *comment, const char *why)
{
	char *h;

	if (j->o->header_type == SPFD_HDR_AR)
		h = xasprintf("PREPEND Authentication-Results: %s; none (%s client-ip=%s; helo=%s; "
			      "envelope-from=%s; receiver=%s)", j->o->authserv_id, comment, j->ip,
			      j->helo, *j->sender ? j->sender : "<>", j->o->authserv_id);
	else
		h = xasprintf("PREPEND X-Comment: %s client-ip=%s; helo=%s; envelope-from=%s; "
			      "receiver=%s", comment, j->ip, j->helo, *j->sender ? j->sender : "<>",
			      j->o->authserv_id);
	struct sbuf b;
	sbuf_init(&b);
	add_clean(&b, h);
	free(h);
	j->result_name = "skipped";
	j->reason = why;
	finish(j, SPFD_ACT_PREPEND, sbuf_steal(&b));
}

/* spf.domainmatch: equal to an entry, or a subdomain of it. */
static int domain_in(char *const *list, size_t n, const char *dom)
{
	size_t dl = strlen(dom);

	if (n && dl && dom[dl - 1] == '.')
		dl--;
	for (size_t i = 0; i < n; i++) {
		size_t el = strlen(list[i]);
		if (dl == el && !ascii_strncasecmp(dom, list[i], el))
			return 1;
		if (dl > el && dom[dl - el - 1] == '.' && !ascii_strncasecmp(dom + dl - el, list[i], el))
			return 1;
	}
	return 0;
}

static const char *sender_domain(const char *sender)
{
	const char *at = strchr(sender, '@');
	return at ? at + 1 : "";
}

/* _get_resultcodes: the action policy table for one identity's result. */
static enum spfd_action table_action(const struct spfd_opts *o, enum spfd_reject pol,
				     enum spf_result r, int helo_scope)
{
	int rej = 0;

	switch (pol) {
	case SPFD_REJ_SPF_NOT_PASS:
		rej = r == SPF_FAIL || r == SPF_SOFTFAIL || r == SPF_NEUTRAL;
		break;
	case SPFD_REJ_SOFTFAIL:
		rej = r == SPF_FAIL || r == SPF_SOFTFAIL;
		break;
	case SPFD_REJ_FAIL:
		rej = r == SPF_FAIL;
		break;
	case SPFD_REJ_NULL:	/* HELO: reject Fail (only applied for the null sender);
				 * MAIL FROM: rejects nothing (policyd-spf) */
		rej = helo_scope && r == SPF_FAIL;
		break;
	case SPFD_REJ_FALSE:	/* never reject or defer: header only */
		return SPFD_ACT_PREPEND;
	default:
		break;
	}
	if (rej)
		return SPFD_ACT_REJECT;
	if (r == SPF_TEMPERROR && o->temperror_defer)
		return SPFD_ACT_DEFER;
	if (r == SPF_PERMERROR && o->permerror_reject)
		return SPFD_ACT_REJECT;
	return SPFD_ACT_PREPEND;
}

/* pyspf's message for a result (what policyd-spf puts into {spf}). */
static char *spf_message(const struct one *x)
{
	if (x->local)
		return xasprintf("Receiver policy for SPF %s", result_tag(x->result));
	switch (x->result) {
	case SPF_FAIL:
		return xstrdup(x->explanation ? x->explanation : "SPF fail - not authorized");
	case SPF_SOFTFAIL:
		return xstrdup("domain owner discourages use of this host");
	case SPF_NEUTRAL:
		return xstrdup("access neither permitted nor denied");
	case SPF_PERMERROR:
		return xasprintf("SPF Permanent Error: %s", x->reason ? x->reason : "");
	case SPF_TEMPERROR:
		return xasprintf("SPF Temporary Error: %s", x->reason ? x->reason : "");
	default:
		return xstrdup(spf_result_name(x->result));
	}
}

/* _rejectmessage + policyd_spf's action prefix. */
static char *reject_text(const struct spfd_job *j, const struct one *x, int helo_scope)
{
	int err = x->result == SPF_PERMERROR || x->result == SPF_TEMPERROR;
	const char *prefix = x->act == SPFD_ACT_DEFER ? "DEFER_IF_PERMIT 4.7.24"
			   : err ? "550 5.7.24" : "550 5.7.23";
	char *msg = spf_message(x);
	const char *rcpt_dom = strchr(j->recipient, '@') ? strchr(j->recipient, '@') + 1
			     : (*j->recipient ? j->recipient : "none");
	char *url = xasprintf("http://www.openspf.net/Why?s=%s;id=%s;ip=%s;r=%s",
			      helo_scope ? "helo" : "mfrom", helo_scope ? j->helo : j->sender, j->ip,
			      rcpt_dom);
	struct sbuf b;

	sbuf_init(&b);
	sbuf_printf(&b, "%s ", prefix);
	for (const char *p = j->o->reason_message; *p; p++) {
		if (!strncmp(p, "{rejectdefer}", 13)) {
			sbuf_adds(&b, x->act == SPFD_ACT_DEFER ? "deferred" : "rejected");
			p += 12;
		} else if (!strncmp(p, "{spf}", 5)) {
			size_t ml = strlen(msg);
			if (ml && msg[ml - 1] == '.' && p[5] == '.')
				ml--;	/* "servers.. Please" */
			sbuf_add(&b, msg, ml);
			p += 4;
		} else if (!strncmp(p, "{url}", 5)) {
			sbuf_adds(&b, url);
			p += 4;
		} else {
			sbuf_addc(&b, *p);
		}
	}
	free(msg);
	free(url);
	struct sbuf c;
	sbuf_init(&c);
	add_clean(&c, b.buf);
	sbuf_free(&b);
	return sbuf_steal(&c);
}

int spfd_job_next(struct spfd_job *j, struct spf_request *req)
{
	const struct spfd_opts *o = j->o;

	memset(req, 0, sizeof(*req));
	req->receiver = o->authserv_id;
	req->now_s = j->now_s;
	switch (j->ph) {
	case PH_START:
		if (!j->ip || !*j->ip) {
			finish_dunno(j, "no client address");
			return SPFD_JOB_DONE;
		}
		if (o->skip_sasl && *j->sasl) {
			j->result_name = "skipped";
			finish_dunno(j, "authenticated client (sasl_username)");
			return SPFD_JOB_DONE;
		}
		if (spfd_net_match_any(o->skip, o->nskip, j->ip)) {
			finish_skip(j, "SPF check N/A for local connections -",
				    "spf_skip_addresses");
			return SPFD_JOB_DONE;
		}
		if (spfd_net_match_any(o->whitelist, o->nwhitelist, j->ip)) {
			finish_skip(j, "SPF skipped for whitelisted relay -", "spf_whitelist");
			return SPFD_JOB_DONE;
		}
		j->ph = PH_DWL;
		j->dwl_i = 0;
		/* fall through */
	case PH_DWL:
		if (j->dwl_i < o->ndomain_whitelist) {
			const char *d = o->domain_whitelist[j->dwl_i];
			free(j->postmaster);
			j->postmaster = xasprintf("postmaster@%s", d);
			req->ip = j->ip;
			req->domain = d;
			req->sender = j->postmaster;
			req->helo = d;
			req->scope = SPF_SCOPE_MFROM;
			return SPFD_JOB_CHECK;
		}
		if (!*j->sender && !*j->helo) {
			finish_dunno(j, "no sender and no HELO name");
			return SPFD_JOB_DONE;
		}
		if (!*j->helo) {
			free(j->helo);
			j->helo = xstrdup(*sender_domain(j->sender) ? sender_domain(j->sender)
								   : "unknown");
		}
		j->ph = PH_HELO;
		/* fall through */
	case PH_HELO:
		if (o->helo_reject != SPFD_REJ_NO_CHECK && !j->helo_r.done) {
			free(j->postmaster);
			j->postmaster = xasprintf("postmaster@%s", j->helo);
			req->ip = j->ip;
			req->sender = j->postmaster;
			req->helo = j->helo;
			req->scope = SPF_SCOPE_HELO;
			return SPFD_JOB_CHECK;
		}
		j->ph = PH_MFROM;
		/* fall through */
	case PH_MFROM:
		if (*j->sender && o->mfrom_reject != SPFD_REJ_NO_CHECK && !j->mfrom_r.done) {
			req->ip = j->ip;
			req->sender = j->sender;
			req->helo = j->helo;
			req->scope = SPF_SCOPE_MFROM;
			return SPFD_JOB_CHECK;
		}
		break;
	case PH_DONE:
		return SPFD_JOB_DONE;
	}
	/* Nothing more to check (both scopes off, or null sender): decide. */
	if (j->helo_r.done) {
		j->scope = "helo";
		j->identity = j->helo;
		j->result_name = spf_result_name(j->helo_r.result);
		j->mechanism = j->helo_r.mechanism;
		j->reason = j->helo_r.reason;
		if (j->helo_r.act == SPFD_ACT_REJECT || j->helo_r.act == SPFD_ACT_DEFER)
			finish(j, j->helo_r.act, reject_text(j, &j->helo_r, 1));
		else
			finish(j, SPFD_ACT_PREPEND, xasprintf("PREPEND %s", j->helo_r.header));
	} else {
		finish_dunno(j, "no identity checked");
	}
	return SPFD_JOB_DONE;
}

static void one_fill(struct one *x, const struct spfd_checked *r)
{
	one_clear(x);
	x->done = 1;
	x->result = r->result;
	x->mechanism = dup_or_null(r->mechanism);
	x->reason = dup_or_null(r->reason);
	x->problem = dup_or_null(r->problem);
	x->explanation = dup_or_null(r->explanation);
}

static char *make_header(const struct spfd_job *j, const struct one *x, int helo_scope)
{
	struct spfd_checked c = {
		.result = x->result, .mechanism = x->mechanism, .reason = x->reason,
		.problem = x->problem, .explanation = x->explanation,
	};
	char *v, *h;

	if (j->o->header_type == SPFD_HDR_AR) {
		v = spfd_auth_results(&c, helo_scope, j->ip, j->sender, j->helo, j->o->authserv_id);
		h = xasprintf("Authentication-Results: %s", v);
	} else {
		v = spfd_received_spf(&c, helo_scope, j->ip, j->sender, j->helo, j->o->authserv_id);
		h = xasprintf("Received-SPF: %s", v);
	}
	free(v);
	return h;
}

static void set_log(struct spfd_job *j, const struct one *x, int helo_scope)
{
	j->scope = helo_scope ? "helo" : "mailfrom";
	j->identity = helo_scope ? j->helo : j->sender;
	j->result_name = spf_result_name(x->result);
	j->mechanism = x->mechanism;
	j->reason = x->reason;
}

void spfd_job_result(struct spfd_job *j, const struct spfd_checked *r)
{
	const struct spfd_opts *o = j->o;

	j->dns_terms += r->dns_terms;
	j->checks++;
	switch (j->ph) {
	case PH_DWL:
		if (r->result == SPF_PASS) {
			finish_skip(j, "SPF skipped for whitelisted relay domain -",
				    "spf_domain_whitelist");
			return;
		}
		j->dwl_i++;
		return;
	case PH_HELO: {
		struct one *x = &j->helo_r;
		one_fill(x, r);
		enum spfd_reject pol = o->helo_reject;
		if (domain_in(o->reject_not_pass, o->nreject_not_pass, j->helo)) {
			pol = SPFD_REJ_SPF_NOT_PASS;
			x->local = 1;
		}
		x->act = table_action(o, pol, r->result, 1);
		if (o->helo_reject == SPFD_REJ_NULL && *j->sender)
			x->act = SPFD_ACT_DUNNO;
		x->header = make_header(j, x, 1);
		set_log(j, x, 1);
		if (x->act == SPFD_ACT_REJECT || x->act == SPFD_ACT_DEFER)
			finish(j, x->act, reject_text(j, x, 1));
		else
			j->ph = PH_MFROM;
		return;
	}
	case PH_MFROM: {
		struct one *x = &j->mfrom_r;
		one_fill(x, r);
		enum spfd_reject pol = o->mfrom_reject;
		if (domain_in(o->reject_not_pass, o->nreject_not_pass, sender_domain(j->sender))) {
			pol = SPFD_REJ_SPF_NOT_PASS;
			x->local = 1;
		}
		x->act = table_action(o, pol, r->result, 0);
		set_log(j, x, 0);
		if (x->act == SPFD_ACT_REJECT || x->act == SPFD_ACT_DEFER) {
			finish(j, x->act, reject_text(j, x, 0));
			return;
		}
		/* policyd-spf keeps the HELO header when MAIL FROM found no record. */
		const char *hdr = NULL;
		if (x->result != SPF_NONE || !j->helo_r.done || j->helo_r.result == SPF_NONE) {
			x->header = make_header(j, x, 0);
			hdr = x->header;
		} else {
			hdr = j->helo_r.header;
			set_log(j, &j->helo_r, 1);
		}
		finish(j, SPFD_ACT_PREPEND, xasprintf("PREPEND %s", hdr));
		return;
	}
	default:
		return;
	}
}

const char *spfd_job_action(const struct spfd_job *j)
{
	return j->action ? j->action : "DUNNO";
}

enum spfd_action spfd_job_action_kind(const struct spfd_job *j)
{
	return j->kind;
}

const char *spfd_job_scope(const struct spfd_job *j) { return j->scope; }
const char *spfd_job_identity(const struct spfd_job *j) { return j->identity; }
const char *spfd_job_result_name(const struct spfd_job *j) { return j->result_name; }
const char *spfd_job_mechanism(const struct spfd_job *j) { return j->mechanism; }
const char *spfd_job_reason(const struct spfd_job *j) { return j->reason; }
unsigned spfd_job_dns_terms(const struct spfd_job *j) { return j->dns_terms; }
unsigned spfd_job_checks(const struct spfd_job *j) { return j->checks; }

void spfd_checked_from(struct spfd_checked *out, const struct spf_check *c)
{
	out->result = spf_check_result(c);
	out->mechanism = spf_check_mechanism(c);
	out->reason = spf_check_reason(c);
	out->problem = spf_check_problem(c);
	out->explanation = spf_check_explanation(c);
	out->dns_terms = spf_check_dns_terms(c);
}

const char *spfd_reply_for_instance(enum spfd_action kind, const char *action)
{
	return kind == SPFD_ACT_PREPEND || kind == SPFD_ACT_DUNNO ? "DUNNO" : action;
}

/* ------------------------------------------------------------ instances */

struct inst {
	struct inst *hnext;	/* hash chain */
	char *key;
	unsigned hash;
	enum spfd_action kind;
	char *action;
	long long at_s;
};

struct spfd_instances {
	struct inst *ring;	/* FIFO ring: oldest overwritten first */
	struct inst **buckets;
	size_t max, next, count, nbuckets;
	long long ttl_s;
};

static unsigned inst_hash(const char *s)
{
	unsigned h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

struct spfd_instances *spfd_instances_new(size_t max, long long ttl_s)
{
	struct spfd_instances *t = xcalloc(1, sizeof(*t));

	t->max = max ? max : 1;
	t->ring = xcalloc(t->max, sizeof(*t->ring));
	t->nbuckets = 16;
	while (t->nbuckets < 2 * t->max)
		t->nbuckets <<= 1;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	t->ttl_s = ttl_s;
	return t;
}

void spfd_instances_free(struct spfd_instances **tp)
{
	if (!tp || !*tp)
		return;
	for (size_t i = 0; i < (*tp)->max; i++)
		free((*tp)->ring[i].key), free((*tp)->ring[i].action);
	free((*tp)->ring);
	free((*tp)->buckets);
	free(*tp);
	*tp = NULL;
}

static struct inst *inst_find(struct spfd_instances *t, const char *key, unsigned h)
{
	for (struct inst *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && !strcmp(e->key, key))
			return e;
	return NULL;
}

static void inst_unhash(struct spfd_instances *t, struct inst *e)
{
	struct inst **pp = &t->buckets[e->hash & (t->nbuckets - 1)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	e->hnext = NULL;
}

int spfd_instances_get(struct spfd_instances *t, const char *instance, long long now_s,
		       enum spfd_action *kind_out, const char **action_out)
{
	if (!instance || !*instance)
		return 0;
	struct inst *e = inst_find(t, instance, inst_hash(instance));
	if (!e || now_s - e->at_s > t->ttl_s)
		return 0;
	*kind_out = e->kind;
	*action_out = e->action;
	return 1;
}

void spfd_instances_put(struct spfd_instances *t, const char *instance, enum spfd_action kind,
			const char *action, long long now_s)
{
	if (!instance || !*instance)
		return;
	unsigned h = inst_hash(instance);
	struct inst *e = inst_find(t, instance, h);
	if (!e) {
		e = &t->ring[t->next];
		t->next = (t->next + 1) % t->max;
		if (t->count < t->max)
			t->count++;
		if (e->key)
			inst_unhash(t, e);
		free(e->key);
		e->key = xstrdup(instance);
		e->hash = h;
		e->hnext = t->buckets[h & (t->nbuckets - 1)];
		t->buckets[h & (t->nbuckets - 1)] = e;
	}
	free(e->action);
	e->action = xstrdup(action);
	e->kind = kind;
	e->at_s = now_s;
}

size_t spfd_instances_count(const struct spfd_instances *t)
{
	return t->count;
}
