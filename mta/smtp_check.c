#include "mta/smtp_check.h"
#include "mta/mta_metrics.h"
#include "mta/smtpd.h"
#include "mta/router.h"
#include "mta/netlist.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "proto/dns.h"
#include "proto/policy.h"
#include "mta/policy_client.h"
#include "lib/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const stage_params[CHECK_NSTAGES] = {
	"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
	"smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_data_restrictions",
	"smtpd_end_of_data_restrictions",
};

const char *check_stage_param(enum check_stage st)
{
	return stage_params[st];
}

/* ---------------------------------------------------------------- DNS cache */

#define CACHE_MAX 64
#define ADDR_MAX 16

struct dns_entry {
	char *name;
	enum dns_type type;
	int done;
	enum dns_status status;
	size_t naddr;
	struct in_addr addr[ADDR_MAX];	/* A */
	int has_aaaa_match;		/* AAAA: filled into addr6 */
	struct in6_addr addr6[ADDR_MAX];
	char *txt;			/* TXT: first RR */
	char *ptr;			/* PTR: first name */
	size_t nmx;
	int null_mx;
};

struct check_dns_cache {
	struct dns_entry e[CACHE_MAX];
	size_t n;
	struct dns_req *pending;
	struct dns_entry *pending_entry;
	void (*resume)(void *);
	void *resume_arg;
};

struct check_dns_cache *check_dns_cache_new(void)
{
	return xcalloc(1, sizeof(struct check_dns_cache));
}

void check_dns_cache_free(struct check_dns_cache **cp)
{
	struct check_dns_cache *c = *cp;
	if (!c)
		return;
	dns_cancel(c->pending);
	for (size_t i = 0; i < c->n; i++) {
		free(c->e[i].name);
		free(c->e[i].txt);
		free(c->e[i].ptr);
	}
	free(c);
	*cp = NULL;
}

static void dns_done(void *arg, const struct dns_answer *a)
{
	struct check_dns_cache *c = arg;
	struct dns_entry *e = c->pending_entry;
	c->pending = NULL;
	c->pending_entry = NULL;
	e->done = 1;
	e->status = a->status;
	for (size_t i = 0; i < a->n; i++) {
		const struct dns_rr *rr = &a->rr[i];
		if (rr->type == DNS_T_A && e->naddr < ADDR_MAX)
			e->addr[e->naddr++] = rr->u.a;
		else if (rr->type == DNS_T_AAAA && e->naddr < ADDR_MAX)
			e->addr6[e->naddr++] = rr->u.aaaa;
		else if (rr->type == DNS_T_TXT && !e->txt)
			e->txt = xstrndup(rr->u.txt.data, strnlen(rr->u.txt.data, rr->u.txt.len));
		else if (rr->type == DNS_T_PTR && !e->ptr)
			e->ptr = xstrdup(rr->u.name);
		else if (rr->type == DNS_T_MX) {
			e->nmx++;
			if (a->n == 1 && rr->u.mx.pref == 0 && (!rr->u.mx.host[0] || !strcmp(rr->u.mx.host, ".")))
				e->null_mx = 1;
		}
	}
	if (c->resume)
		c->resume(c->resume_arg);
}

/*
 * dns_get - the cached answer for (name, type), or NULL after starting the
 * look-up (the caller returns CHECK_PENDING). When the cache is full the
 * oldest finished entry is reused.
 */
static struct dns_entry *dns_get(struct check_ctx *ctx, const char *name, enum dns_type type)
{
	struct check_dns_cache *c = ctx->dns;
	for (size_t i = 0; i < c->n; i++)
		if (c->e[i].type == type && ascii_strcasecmp(c->e[i].name, name) == 0)
			return c->e[i].done ? &c->e[i] : NULL;
	struct dns_entry *e;
	if (c->n < CACHE_MAX) {
		e = &c->e[c->n++];
	} else {
		e = &c->e[0];
		free(e->name);
		free(e->txt);
		free(e->ptr);
	}
	memset(e, 0, sizeof *e);
	e->name = xstrdup(name);
	e->type = type;
	c->pending_entry = e;
	c->resume = ctx->resume;
	c->resume_arg = ctx->resume_arg;
	c->pending = dns_query(ctx->srv->dns, name, type, dns_done, c);
	/* an invalid name may have been answered synchronously */
	return e->done ? e : NULL;
}

/* ------------------------------------------------------------- small helpers */

static void reply(struct check_reply *r, int code, const char *dsn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply(struct check_reply *r, int code, const char *dsn, const char *fmt, ...)
{
	va_list ap;
	r->code = code;
	snprintf(r->dsn, sizeof r->dsn, "%s", dsn);
	/* the DSN class follows the reply code (4xx -> 4.x.x) as Postfix does */
	r->dsn[0] = (char)('0' + code / 100);
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
}

static long long cint(struct check_ctx *ctx, const char *name)
{
	return conf_int(ctx->srv->conf, name);
}

int check_valid_hostname(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > 255)
		return 0;
	if (s[0] == '[' && s[len - 1] == ']') {
		char buf[64];
		const char *a = s + 1;
		size_t al = len - 2;
		if (al >= sizeof buf)
			return 0;
		memcpy(buf, a, al);
		buf[al] = 0;
		unsigned char tmp[16];
		if (ascii_strncasecmp(buf, "ipv6:", 5) == 0)
			return inet_pton(AF_INET6, buf + 5, tmp) == 1;
		return inet_pton(AF_INET, buf, tmp) == 1;
	}
	size_t label = 0;
	int alldigits = 1;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0 && i != len - 1)
				return 0;
			label = 0;
			continue;
		}
		if (!(isalnum((unsigned char)c) || c == '-' || c == '_'))
			return 0;
		if (!isdigit((unsigned char)c))
			alldigits = 0;
		if (c == '-' && (label == 0 || i + 1 == len || s[i + 1] == '.'))
			return 0;
		if (++label > 63)
			return 0;
	}
	/* an all-numeric name is not a hostname (Postfix: use an address literal) */
	return !alldigits;
}

static int is_fqdn(const char *d)
{
	if (!d || !*d)
		return 0;
	if (d[0] == '[')
		return 1;
	const char *dot = strchr(d, '.');
	return dot && dot != d && dot[1];
}

static const char *addr_domain(const char *a)
{
	const char *at = a ? strrchr(a, '@') : NULL;
	return at ? at + 1 : "";
}

/* ----------------------------------------------------------- access(5) maps */

/*
 * access_action - apply one access(5) result. Returns 1 when the result
 * is decisive (permit: *verdict CONTINUE; reject: REJECT with *out), 0 to
 * go on with the next element (DUNNO, PREPEND, HOLD, WARN, INFO, ...).
 */
static int access_action(struct check_ctx *ctx, const char *value, const char *what,
			 const char *prefix, struct check_reply *out, enum check_verdict *verdict)
{
	char word[32];
	size_t wl = strcspn(value, " \t");
	const char *rest = value + wl;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	snprintf(word, sizeof word, "%.*s", (int)(wl < 31 ? wl : 31), value);
	if (!ascii_strcasecmp(word, "OK") || !ascii_strcasecmp(word, "RELAY") ||
	    !ascii_strcasecmp(word, "PERMIT") ||
	    (isdigit((unsigned char)word[0]) && !word[strspn(word, "0123456789")] && !*rest)) {
		*verdict = CHECK_CONTINUE;	/* OK, or an all-numeric result (Postfix: OK) */
		return 1;
	}
	if (!ascii_strcasecmp(word, "DUNNO"))
		return 0;
	if (!ascii_strcasecmp(word, "DEFER_IF_PERMIT")) {
		/* not final: the command is deferred only if nothing rejects it */
		if (ctx->cmd && !ctx->cmd->defer_if_permit) {
			ctx->cmd->defer_if_permit = 1;
			reply(&ctx->cmd->dip_reply, (int)cint(ctx, "access_map_defer_code"), "4.7.1", "%s: %s: %s",
			      what, prefix, *rest ? rest : "Service unavailable");
		}
		return 0;
	}
	if (!ascii_strcasecmp(word, "DEFER_IF_REJECT")) {
		if (ctx->cmd)
			ctx->cmd->defer_if_reject = 1;
		return 0;
	}
	if (!ascii_strcasecmp(word, "REJECT") || !ascii_strcasecmp(word, "DEFER")) {
		int defer = ascii_strcasecmp(word, "REJECT") != 0;
		int code = (int)cint(ctx, defer ? "access_map_defer_code" : "access_map_reject_code");
		reply(out, code, defer ? "4.7.1" : "5.7.1", "%s: %s: %s", what, prefix,
		      *rest ? rest : "Access denied");
		*verdict = CHECK_REJECT;
		return 1;
	}
	if ((value[0] == '4' || value[0] == '5') && isdigit((unsigned char)value[1]) &&
	    isdigit((unsigned char)value[2]) && (value[3] == ' ' || !value[3])) {
		int code = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
		const char *t = value[3] ? value + 4 : "";
		char dsn[16];
		snprintf(dsn, sizeof dsn, "%c.7.1", value[0]);
		/* optional enhanced status code in the text */
		if (isdigit((unsigned char)t[0]) && t[1] == '.' && t[0] == value[0]) {
			size_t dl = strcspn(t, " ");
			if (dl < sizeof dsn) {
				snprintf(dsn, sizeof dsn, "%.*s", (int)dl, t);
				t += dl;
				while (*t == ' ')
					t++;
			}
		}
		reply(out, code, dsn, "%s: %s: %s", what, prefix, *t ? t : "Access denied");
		*verdict = CHECK_REJECT;
		return 1;
	}
	if (!ascii_strcasecmp(word, "PREPEND")) {
		if (*rest) {
			sbuf_adds(&ctx->fx->prepend, rest);
			sbuf_addc(&ctx->fx->prepend, '\n');
		}
		return 0;
	}
	if (!ascii_strcasecmp(word, "HOLD")) {
		ctx->fx->hold = 1;
		return 0;
	}
	if (!ascii_strcasecmp(word, "DISCARD")) {
		ctx->fx->discard = 1;
		*verdict = CHECK_CONTINUE;
		return 1;
	}
	if (!ascii_strcasecmp(word, "WARN") || !ascii_strcasecmp(word, "INFO")) {
		log_event("NOQUEUE", "%s: %s: %s", ascii_strcasecmp(word, "WARN") ? "info" : "warn", what,
			  *rest ? rest : "");
		return 0;
	}
	log_event(NULL, "warning: access table result \"%s\" is not supported; treated as DUNNO", value);
	return 0;
}

/* check_*_access: lookup and action. */
static int check_access(struct check_ctx *ctx, const char *spec, const char *kind,
			struct check_reply *out, enum check_verdict *verdict)
{
	char *err = NULL;
	struct table *t = table_set_get(ctx->srv->tables, spec, &err);
	if (!t) {
		log_event(NULL, "warning: %s", err);
		free(err);
		reply(out, 451, "4.3.0", "Server configuration error");
		*verdict = CHECK_REJECT;
		return 1;
	}
	const char *v = NULL;
	int found = 0;
	char what[600];
	const char *prefix;
	if (!strcmp(kind, "client")) {
		found = table_lookup_client(t, ctx->client_name, ctx->client_addr, &v);
		snprintf(what, sizeof what, "<%s[%s]>", ctx->client_name, ctx->client_addr);
		prefix = "Client host rejected";
	} else if (!strcmp(kind, "helo")) {
		if (!ctx->helo)
			return 0;
		found = table_lookup_domain(t, ctx->helo, &v);
		snprintf(what, sizeof what, "<%s>", ctx->helo);
		prefix = "Helo command rejected";
	} else if (!strcmp(kind, "sender")) {
		if (!ctx->sender)
			return 0;
		found = table_lookup_addr(t, ctx->sender, TABLE_ADDR_ACCESS, &v);
		snprintf(what, sizeof what, "<%s>", ctx->sender);
		prefix = "Sender address rejected";
	} else {
		if (!ctx->recipient)
			return 0;
		found = table_lookup_addr(t, ctx->recipient, TABLE_ADDR_ACCESS, &v);
		snprintf(what, sizeof what, "<%s>", ctx->recipient);
		prefix = "Recipient address rejected";
	}
	if (found != 1)
		return 0;
	char *val = xstrdup(v);	/* borrowed value dies at the next lookup */
	int r = access_action(ctx, val, what, prefix, out, verdict);
	free(val);
	return r;
}

/* ---------------------------------------------------- check_policy_service */

/* The "<what>: Prefix rejected" pair Postfix uses for a list's results. */
static void stage_what(struct check_ctx *ctx, enum check_stage st, char *what, size_t wl, const char **prefix)
{
	switch (st) {
	case CHECK_CLIENT:
		snprintf(what, wl, "<%s[%s]>", ctx->client_name, ctx->client_addr);
		*prefix = "Client host rejected";
		break;
	case CHECK_HELO:
		snprintf(what, wl, "<%s>", ctx->helo ? ctx->helo : "");
		*prefix = "Helo command rejected";
		break;
	case CHECK_SENDER:
		snprintf(what, wl, "<%s>", ctx->sender ? ctx->sender : "");
		*prefix = "Sender address rejected";
		break;
	case CHECK_DATA:
		snprintf(what, wl, "<>");
		*prefix = "Data command rejected";
		break;
	case CHECK_EOD:
		snprintf(what, wl, "<>");
		*prefix = "End-of-data rejected";
		break;
	default:
		snprintf(what, wl, "<%s>", ctx->recipient ? ctx->recipient : "");
		*prefix = "Recipient address rejected";
		break;
	}
}

static void policy_request(struct check_ctx *ctx, struct sbuf *b)
{
	char num[32];
	policy_build_attr(b, "request", "smtpd_access_policy");
	policy_build_attr(b, "protocol_state", ctx->protocol_state ? ctx->protocol_state : "RCPT");
	policy_build_attr(b, "protocol_name", ctx->protocol_name ? ctx->protocol_name : "SMTP");
	policy_build_attr(b, "helo_name", ctx->helo ? ctx->helo : "");
	policy_build_attr(b, "queue_id", ctx->queue_id ? ctx->queue_id : "");
	policy_build_attr(b, "sender", ctx->sender ? ctx->sender : "");
	policy_build_attr(b, "recipient", ctx->recipient ? ctx->recipient : "");
	snprintf(num, sizeof num, "%lu", ctx->recipient_count);
	policy_build_attr(b, "recipient_count", num);
	policy_build_attr(b, "client_address", ctx->client_addr);
	policy_build_attr(b, "client_name", ctx->client_name);
	policy_build_attr(b, "reverse_client_name", ctx->client_rev_name);
	policy_build_attr(b, "client_port", ctx->client_port ? ctx->client_port : "");
	policy_build_attr(b, "instance", ctx->instance ? ctx->instance : "");
	policy_build_attr(b, "sasl_method", ctx->sasl_method ? ctx->sasl_method : "");
	policy_build_attr(b, "sasl_username", ctx->sasl_username ? ctx->sasl_username : "");
	policy_build_attr(b, "sasl_sender", ctx->sasl_sender ? ctx->sasl_sender : "");
	snprintf(num, sizeof num, "%lld", ctx->size > 0 ? ctx->size : 0);
	policy_build_attr(b, "size", num);
	policy_build_attr(b, "ccert_subject", "");
	policy_build_attr(b, "ccert_issuer", "");
	policy_build_attr(b, "ccert_fingerprint", "");
	policy_build_attr(b, "ccert_pubkey_fingerprint", "");
	policy_build_attr(b, "encryption_protocol", ctx->encryption_protocol ? ctx->encryption_protocol : "");
	policy_build_attr(b, "encryption_cipher", ctx->encryption_cipher ? ctx->encryption_cipher : "");
	snprintf(num, sizeof num, "%d", ctx->encryption_keysize);
	policy_build_attr(b, "encryption_keysize", num);
	policy_build_attr(b, "etrn_domain", "");
	policy_build_attr(b, "stress", "");
	policy_build_attr(b, "policy_context", conf_str(ctx->srv->conf, "smtpd_policy_service_policy_context"));
	policy_build_attr(b, "server_address", ctx->server_address ? ctx->server_address : "");
	policy_build_attr(b, "server_port", ctx->server_port ? ctx->server_port : "");
	policy_build_attr(b, "compatibility_level", "3.6");
	policy_build_attr(b, "mail_version", "3.7.11 (sluice)");
	policy_build_end(b);
}

static void policy_done(void *arg, const char *action, const char *err)
{
	struct check_ctx *ctx = arg;
	struct check_cmd *cc = ctx->cmd;
	cc->call = NULL;
	cc->policy_done = 1;
	free(cc->policy_action);
	cc->policy_action = action ? xstrdup(action) : NULL;
	if (!action)
		log_event(ctx->queue_id && *ctx->queue_id ? ctx->queue_id : "NOQUEUE",
			  "warning: problem talking to the policy server: %s", err ? err : "unknown");
	ctx->resume(ctx->resume_arg);
}

/* 1 decided (verdict in *v), 0 no decision, -1 pending */
static int check_policy(struct check_ctx *ctx, struct check_run *run, const char *service,
			struct check_reply *out, enum check_verdict *v)
{
	struct check_cmd *cc = ctx->cmd;
	if (!cc || !ctx->srv->policy)
		return 0;
	if (!(cc->policy_done && cc->policy_stage == (int)run->stage && cc->policy_index == run->i)) {
		if (cc->call)
			return -1;
		struct sbuf b;
		sbuf_init(&b);
		policy_request(ctx, &b);
		cc->policy_done = 0;
		cc->policy_stage = (int)run->stage;
		cc->policy_index = run->i;
		cc->call = policy_call_start(ctx->srv->policy, service, &b, policy_done, ctx);
		sbuf_free(&b);
		if (ctx->fx)
			ctx->fx->policy_asked = 1;
		return -1;
	}
	cc->policy_done = 0;
	if (!cc->policy_action)
		mta_metrics_policy_failure(service);
	char what[600];
	const char *prefix;
	stage_what(ctx, run->stage, what, sizeof what, &prefix);
	const char *action = cc->policy_action ? cc->policy_action
					       : conf_str(ctx->srv->conf, "smtpd_policy_service_default_action");
	char *copy = xstrdup(action);
	int r = access_action(ctx, copy, what, prefix, out, v);
	free(copy);
	return r;
}

/* ------------------------------------------------------------ DNS checks */

/* Result of a DNS-based element: 0 no match, 1 reject (out filled), -1 pending. */

/* domain_exists: MX, then A, then AAAA (RFC 5321 5.1 fallback). */
static int check_domain(struct check_ctx *ctx, const char *domain, const char *what,
			const char *prefix, const char *dsn_detail, int code_param_reject,
			struct check_reply *out)
{
	if (!domain || !*domain || domain[0] == '[')
		return 0;
	struct dns_entry *mx = dns_get(ctx, domain, DNS_T_MX);
	if (!mx)
		return -1;
	int code = code_param_reject;
	if (mx->status == DNS_OK) {
		if (mx->null_mx) {
			reply(out, 550, "5.7.27", "%s: %s: Domain %s does not accept mail (nullMX)", what,
			      prefix, domain);
			return 1;
		}
		return 0;
	}
	if (mx->status == DNS_NXDOMAIN) {
		reply(out, code, dsn_detail, "%s: %s: Domain not found", what, prefix);
		return 1;
	}
	if (dns_status_is_temp(mx->status)) {
		reply(out, 450, dsn_detail, "%s: %s: Domain not found", what, prefix);
		return 1;
	}
	struct dns_entry *a = dns_get(ctx, domain, DNS_T_A);
	if (!a)
		return -1;
	if (a->status == DNS_OK)
		return 0;
	struct dns_entry *aaaa = dns_get(ctx, domain, DNS_T_AAAA);
	if (!aaaa)
		return -1;
	if (aaaa->status == DNS_OK)
		return 0;
	if (dns_status_is_temp(a->status) || dns_status_is_temp(aaaa->status))
		code = 450;
	reply(out, code, dsn_detail, "%s: %s: Domain not found", what, prefix);
	return 1;
}

/* rbl filter "127.0.0.2", "127.0.0.[2..11]", "127.0.0.[2;4;6]" */
static int rbl_filter_match(const char *filter, struct in_addr a)
{
	unsigned char b[4];
	memcpy(b, &a.s_addr, 4);
	const char *p = filter;
	for (int i = 0; i < 4; i++) {
		if (*p == '[') {
			int ok = 0;
			p++;
			while (*p && *p != ']') {
				char *end;
				long lo = strtol(p, &end, 10), hi = lo;
				if (end == p)
					return 0;
				p = end;
				if (p[0] == '.' && p[1] == '.') {
					hi = strtol(p + 2, &end, 10);
					p = end;
				}
				if (b[i] >= lo && b[i] <= hi)
					ok = 1;
				if (*p == ';')
					p++;
			}
			if (*p != ']' || !ok)
				return 0;
			p++;
		} else {
			char *end;
			long v = strtol(p, &end, 10);
			if (end == p || v != b[i])
				return 0;
			p = end;
		}
		if (i < 3) {
			if (*p != '.')
				return 0;
			p++;
		}
	}
	return *p == 0;
}

static int check_rbl(struct check_ctx *ctx, const char *arg, struct check_reply *out)
{
	char zone[256], qname[512];
	const char *eq = strchr(arg, '=');
	snprintf(zone, sizeof zone, "%.*s", (int)(eq ? (size_t)(eq - arg) : strlen(arg)), arg);
	if (dns_dnsbl_name(ctx->client_addr, zone, qname, sizeof qname) < 0)
		return 0;
	struct dns_entry *e = dns_get(ctx, qname, DNS_T_A);
	if (!e)
		return -1;
	if (e->status != DNS_OK) {
		if (dns_status_is_temp(e->status))
			log_event(NULL, "warning: %s: RBL lookup error: %s", qname, dns_status_name(e->status));
		return 0;
	}
	int listed = 0;
	for (size_t i = 0; i < e->naddr; i++) {
		unsigned char b[4];
		memcpy(b, &e->addr[i].s_addr, 4);
		if (b[0] != 127 || (b[1] == 255 && b[2] == 255)) {
			/* 127.255.255.x: "query refused" / error codes, never a listing */
			log_event(NULL, "warning: dnsbl %s: list error answer %u.%u.%u.%u for %s, ignored", zone,
				  b[0], b[1], b[2], b[3], ctx->client_addr);
			continue;
		}
		if (eq && !rbl_filter_match(eq + 1, e->addr[i]))
			continue;
		listed = 1;
	}
	if (!listed)
		return 0;
	struct dns_entry *t = dns_get(ctx, qname, DNS_T_TXT);
	if (!t)
		return -1;
	reply(out, (int)cint(ctx, "maps_rbl_reject_code"), "5.7.1",
	      "Service unavailable; Client host [%s] blocked using %s%s%s", ctx->client_addr, zone,
	      t->status == DNS_OK && t->txt ? "; " : "", t->status == DNS_OK && t->txt ? t->txt : "");
	return 1;
}

/* ------------------------------------------------------------- the elements */

struct elem_result {
	int decided;		/* 1: verdict is final for this list */
	enum check_verdict verdict;
};

static int needs_arg(const char *name)
{
	return !strcmp(name, "reject_rbl_client") || !strncmp(name, "check_", 6);
}

/*
 * Does login own sender per smtpd_sender_login_maps? The value lists
 * owners separated by commas or spaces. 1 owned, 0 not owned (*listed_out:
 * the address has an owner at all), -1 table trouble.
 */
static int login_owns(struct check_ctx *ctx, const char *sender, const char *login, int *listed_out)
{
	*listed_out = 0;
	const char *spec = conf_str(ctx->srv->conf, "smtpd_sender_login_maps");
	if (!*spec)
		return 0;
	char *e = NULL;
	struct table *t = table_set_get(ctx->srv->tables, spec, &e);
	if (!t) {
		log_event(NULL, "warning: smtpd_sender_login_maps: %s", e);
		free(e);
		return -1;
	}
	const char *v = NULL;
	int r = table_lookup_addr(t, sender, TABLE_ADDR_VIRTUAL, &v);
	if (r < 0)
		return -1;
	if (r == 0 || !v)
		return 0;
	*listed_out = 1;
	if (!login)
		return 0;
	size_t ll = strlen(login);
	for (const char *p = v; *p;) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		size_t n = strcspn(p, ", \t");
		if (n == ll && !ascii_strncasecmp(p, login, n))
			return 1;
		p += n;
	}
	return 0;
}

/* reject_{,authenticated_,unauthenticated_}sender_login_mismatch (Postfix smtpd_check.c) */
static int login_mismatch(struct check_ctx *ctx, const char *name, struct check_reply *out, enum check_verdict *v)
{
	int auth_part = strcmp(name, "reject_unauthenticated_sender_login_mismatch") != 0;
	int unauth_part = strcmp(name, "reject_authenticated_sender_login_mismatch") != 0;
	if (!ctx->sender || !*ctx->sender)
		return 0;
	int listed;
	if (ctx->sasl_authenticated && ctx->sasl_username) {
		if (!auth_part)
			return 0;
		int r = login_owns(ctx, ctx->sender, ctx->sasl_username, &listed);
		if (r < 0) {
			reply(out, 451, "4.3.0", "<%s>: Sender address rejected: Server configuration error",
			      ctx->sender);
		} else if (r == 0) {
			reply(out, 553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s", ctx->sender,
			      ctx->sasl_username);
		} else {
			return 0;
		}
		*v = CHECK_REJECT;
		return 1;
	}
	if (!unauth_part)
		return 0;
	int r = login_owns(ctx, ctx->sender, NULL, &listed);
	if (r < 0) {
		reply(out, 451, "4.3.0", "<%s>: Sender address rejected: Server configuration error", ctx->sender);
	} else if (listed) {
		reply(out, 553, "5.7.1", "<%s>: Sender address rejected: not logged in", ctx->sender);
	} else {
		return 0;
	}
	*v = CHECK_REJECT;
	return 1;
}

/* static elements (no DNS): 1 decided, 0 no decision */
static int run_static(struct check_ctx *ctx, const char *name, struct check_reply *out,
		      enum check_verdict *v)
{
	if (!strcmp(name, "permit")) {
		*v = CHECK_CONTINUE;
		return 1;
	}
	if (!strcmp(name, "reject") || !strcmp(name, "defer")) {
		int defer = name[0] == 'd';
		reply(out, (int)cint(ctx, defer ? "defer_code" : "reject_code"), defer ? "4.7.1" : "5.7.1",
		      "Access denied");
		*v = CHECK_REJECT;
		return 1;
	}
	if (!strcmp(name, "permit_mynetworks")) {
		if (netlist_match(ctx->srv->mynetworks, ctx->client_addr)) {
			*v = CHECK_CONTINUE;
			return 1;
		}
		return 0;
	}
	if (!strcmp(name, "permit_sasl_authenticated")) {
		if (ctx->sasl_authenticated) {
			*v = CHECK_CONTINUE;
			return 1;
		}
		return 0;
	}
	if (strstr(name, "sender_login_mismatch"))
		return login_mismatch(ctx, name, out, v);
	if (!strcmp(name, "reject_unauth_destination") || !strcmp(name, "defer_unauth_destination")) {
		if (!ctx->recipient)
			return 0;
		const char *d = addr_domain(ctx->recipient);
		if (router_domain(ctx->router, d) != ROUTER_NONE)
			return 0;
		int defer = name[0] == 'd';
		reply(out, defer ? 450 : (int)cint(ctx, "relay_domains_reject_code"), "5.7.1",
		      "<%s>: Relay access denied", ctx->recipient);
		*v = CHECK_REJECT;
		return 1;
	}
	if (!strcmp(name, "reject_unauth_pipelining")) {
		if (!ctx->unauth_pipelining)
			return 0;
		reply(out, 554, "5.5.0", "Error: SMTP protocol synchronization");
		*v = CHECK_REJECT;
		return 1;
	}
	if (!strcmp(name, "reject_invalid_helo_hostname")) {
		if (!ctx->helo || check_valid_hostname(ctx->helo))
			return 0;
		reply(out, (int)cint(ctx, "invalid_hostname_reject_code"), "5.5.2",
		      "<%s>: Helo command rejected: Invalid name", ctx->helo);
		*v = CHECK_REJECT;
		return 1;
	}
	if (!strcmp(name, "reject_non_fqdn_helo_hostname")) {
		if (!ctx->helo || is_fqdn(ctx->helo))
			return 0;
		reply(out, (int)cint(ctx, "non_fqdn_reject_code"), "5.5.2",
		      "<%s>: Helo command rejected: need fully-qualified hostname", ctx->helo);
		*v = CHECK_REJECT;
		return 1;
	}
	if (!strcmp(name, "reject_non_fqdn_sender")) {
		if (!ctx->sender || !*ctx->sender || is_fqdn(addr_domain(ctx->sender)))
			return 0;
		reply(out, (int)cint(ctx, "non_fqdn_reject_code"), "5.5.2",
		      "<%s>: Sender address rejected: need fully-qualified address", ctx->sender);
		*v = CHECK_REJECT;
		return 1;
	}
	if (!strcmp(name, "reject_non_fqdn_recipient")) {
		if (!ctx->recipient || is_fqdn(addr_domain(ctx->recipient)))
			return 0;
		reply(out, (int)cint(ctx, "non_fqdn_reject_code"), "5.5.2",
		      "<%s>: Recipient address rejected: need fully-qualified address", ctx->recipient);
		*v = CHECK_REJECT;
		return 1;
	}
	if (!strcmp(name, "reject_unknown_client_hostname") ||
	    !strcmp(name, "reject_unknown_reverse_client_hostname")) {
		int rev = strstr(name, "reverse") != NULL;
		const char *n = rev ? ctx->client_rev_name : ctx->client_name;
		if (strcmp(n, "unknown") != 0)
			return 0;
		reply(out, ctx->client_name_tempfail ? 450 : (int)cint(ctx, "unknown_client_reject_code"),
		      "4.7.25", "Client host rejected: cannot find your %shostname, [%s]", rev ? "reverse " : "",
		      ctx->client_addr);
		*v = CHECK_REJECT;
		return 1;
	}
	return -1;	/* not a static element */
}

static int run_dns(struct check_ctx *ctx, const char *name, const char *arg, struct check_reply *out)
{
	if (!strcmp(name, "reject_unknown_helo_hostname")) {
		if (!ctx->helo || ctx->helo[0] == '[')
			return 0;
		int r = check_domain(ctx, ctx->helo, "", "", "4.7.1",
				     (int)cint(ctx, "unknown_hostname_reject_code"), out);
		if (r == 1)
			reply(out, out->code, "4.7.1", "<%s>: Helo command rejected: Host not found", ctx->helo);
		return r;
	}
	if (!strcmp(name, "reject_unknown_sender_domain")) {
		if (!ctx->sender || !*ctx->sender)
			return 0;
		char what[600];
		snprintf(what, sizeof what, "<%s>", ctx->sender);
		return check_domain(ctx, addr_domain(ctx->sender), what, "Sender address rejected", "4.1.8",
				    (int)cint(ctx, "unknown_address_reject_code"), out);
	}
	if (!strcmp(name, "reject_unknown_recipient_domain")) {
		if (!ctx->recipient)
			return 0;
		const char *d = addr_domain(ctx->recipient);
		if (router_domain(ctx->router, d) != ROUTER_NONE)
			return 0;	/* our own domains need no DNS */
		char what[600];
		snprintf(what, sizeof what, "<%s>", ctx->recipient);
		return check_domain(ctx, d, what, "Recipient address rejected", "4.1.2",
				    (int)cint(ctx, "unknown_address_reject_code"), out);
	}
	if (!strcmp(name, "reject_rbl_client"))
		return check_rbl(ctx, arg, out);
	return -2;	/* unknown */
}

void check_run_start(struct check_run *run, enum check_stage st)
{
	memset(run, 0, sizeof *run);
	run->stage = st;
	run->active = 1;
}

enum check_verdict check_list_run(struct check_ctx *ctx, struct check_run *run, struct check_reply *out)
{
	size_t n;
	const char *param = ctx->submission && run->stage == CHECK_RELAY ? "submission_relay_restrictions"
										  : stage_params[run->stage];
	const char *const *list = conf_list(ctx->srv->conf, param, &n);
	while (run->i < n) {
		const char *name = list[run->i];
		const char *arg = run->i + 1 < n ? list[run->i + 1] : NULL;
		int consumed = 1;
		enum check_verdict v = CHECK_CONTINUE;
		int r;
		if (!strcmp(name, "warn_if_reject")) {
			run->warn = 1;
			run->i++;
			continue;
		}
		if (needs_arg(name)) {
			consumed = 2;
			if (!arg) {
				log_event(NULL, "warning: %s: %s needs an argument", param, name);
				run->i++;
				continue;
			}
		}
		if (!strcmp(name, "check_policy_service")) {
			r = check_policy(ctx, run, arg, out, &v);
			if (r < 0)
				return CHECK_PENDING;
		} else if (!strncmp(name, "check_", 6) && strstr(name, "_access")) {
			char kind[32];
			snprintf(kind, sizeof kind, "%.*s", (int)(strstr(name, "_access") - name - 6), name + 6);
			r = check_access(ctx, arg, kind, out, &v);
		} else {
			r = run_static(ctx, name, out, &v);
			if (r < 0) {
				r = run_dns(ctx, name, arg, out);
				if (r == -1)
					return CHECK_PENDING;
				if (r == -2) {
					log_event(NULL, "warning: %s: unknown restriction \"%s\" ignored", param, name);
					r = 0;
				} else if (r == 1) {
					v = CHECK_REJECT;
				}
			}
		}
		run->i += (size_t)consumed;
		int warn = run->warn;
		run->warn = 0;
		if (r != 1)
			continue;
		if (v == CHECK_REJECT && warn) {
			if (ctx->log_reject)
				ctx->log_reject(ctx->resume_arg, out, 1);
			continue;
		}
		run->active = 0;
		if (v == CHECK_REJECT && out->code >= 500 && ctx->cmd && ctx->cmd->defer_if_reject) {
			out->code = 450;	/* DEFER_IF_REJECT seen earlier */
			out->dsn[0] = '4';
		}
		return v;
	}
	run->active = 0;
	return CHECK_CONTINUE;
}

static const char *const known[] = {
	"permit", "reject", "defer", "warn_if_reject", "permit_mynetworks", "permit_sasl_authenticated",
	"reject_unauth_destination", "defer_unauth_destination", "reject_unauth_pipelining",
	"reject_invalid_helo_hostname", "reject_non_fqdn_helo_hostname", "reject_unknown_helo_hostname",
	"reject_non_fqdn_sender", "reject_non_fqdn_recipient", "reject_unknown_sender_domain",
	"reject_unknown_recipient_domain", "reject_unknown_client_hostname",
	"reject_unknown_reverse_client_hostname", "reject_rbl_client", "check_client_access",
	"check_helo_access", "check_sender_access", "check_recipient_access", "check_policy_service",
	"reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
	"reject_unauthenticated_sender_login_mismatch", NULL,
};

int check_validate_list(struct smtpd *srv, const char *param, char **err_out)
{
	size_t n;
	const char *const *list = conf_list(srv->conf, param, &n);
	for (size_t i = 0; i < n; i++) {
		int ok = 0;
		for (int k = 0; known[k]; k++)
			if (!strcmp(list[i], known[k]))
				ok = 1;
		if (!ok) {
			*err_out = xasprintf("%s: %s: unknown restriction \"%s\"", conf_where(srv->conf, param),
					     param, list[i]);
			return -1;
		}
		if (strstr(list[i], "sender_login_mismatch")) {
			const char *spec = conf_str(srv->conf, "smtpd_sender_login_maps");
			char *e = NULL;
			if (!*spec) {
				*err_out = xasprintf("%s: %s: %s needs smtpd_sender_login_maps", conf_where(srv->conf, param),
						     param, list[i]);
				return -1;
			}
			if (!table_set_get(srv->tables, spec, &e)) {
				*err_out = xasprintf("%s: smtpd_sender_login_maps: %s",
						     conf_where(srv->conf, "smtpd_sender_login_maps"), e);
				free(e);
				return -1;
			}
		}
		if (needs_arg(list[i])) {
			if (i + 1 >= n) {
				*err_out = xasprintf("%s: %s: %s needs an argument", conf_where(srv->conf, param),
						     param, list[i]);
				return -1;
			}
			i++;
			if (!strcmp(list[i - 1], "check_policy_service")) {
				if (!policy_service_valid(list[i])) {
					*err_out = xasprintf("%s: %s: check_policy_service: bad service address \"%s\" "
							     "(expected inet:host:port or unix:/path)",
							     conf_where(srv->conf, param), param, list[i]);
					return -1;
				}
			} else if (!strncmp(list[i - 1], "check_", 6)) {
				char *e = NULL;
				if (!table_set_get(srv->tables, list[i], &e)) {
					*err_out = xasprintf("%s: %s: %s", conf_where(srv->conf, param), param, e);
					free(e);
					return -1;
				}
			}
		}
	}
	return 0;
}

void check_cmd_reset(struct check_cmd *cc)
{
	policy_call_cancel(cc->call);
	free(cc->policy_action);
	memset(cc, 0, sizeof *cc);
}

int check_cmd_final(struct check_cmd *cc, struct check_reply *out)
{
	if (!cc->defer_if_permit)
		return 0;
	*out = cc->dip_reply;
	return 1;
}

void check_effects_reset(struct check_effects *fx)
{
	sbuf_reset(&fx->prepend);
	fx->hold = 0;
	fx->discard = 0;
	fx->policy_asked = 0;
}
