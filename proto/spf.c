/*
 * spf: the check_host() state machine (RFC 7208 4-6, 8). See proto/spf.h.
 *
 * One check is a stack of frames, one per check_host() invocation (include
 * pushes, redirect replaces). Each frame walks the terms of its record; a
 * term that needs DNS creates query slots and waits until they are answered.
 * The validated names of the client address (PTR + address look-ups, 5.5)
 * are computed once per check and shared by "ptr" and %{p}. After a
 * top-level fail, the explanation is fetched and expanded (6.2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "lib/util.h"
#include "proto/spf_int.h"

const char *spf_result_name(enum spf_result r)
{
	static const char *const names[] = {
		"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror",
	};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

void spf_limits_default(struct spf_limits *lim_out)
{
	lim_out->max_dns_terms = 10;
	lim_out->max_void_lookups = 2;
	lim_out->max_mx_names = 10;
	lim_out->max_ptr_names = 10;
	lim_out->max_record_bytes = 4096;
	lim_out->max_terms = 128;
	lim_out->max_exp_bytes = 1024;
}

static void limits_set(struct spf_limits *l, const struct spf_limits *in)
{
	spf_limits_default(l);
	if (in) {
		if (in->max_dns_terms) l->max_dns_terms = in->max_dns_terms;
		if (in->max_void_lookups) l->max_void_lookups = in->max_void_lookups;
		if (in->max_mx_names) l->max_mx_names = in->max_mx_names;
		if (in->max_ptr_names) l->max_ptr_names = in->max_ptr_names;
		if (in->max_record_bytes) l->max_record_bytes = in->max_record_bytes;
		if (in->max_terms) l->max_terms = in->max_terms;
		if (in->max_exp_bytes) l->max_exp_bytes = in->max_exp_bytes;
	}
	if (l->max_mx_names > SPF_MAX_BATCH)
		l->max_mx_names = SPF_MAX_BATCH;
	if (l->max_ptr_names > SPF_MAX_BATCH)
		l->max_ptr_names = SPF_MAX_BATCH;
}

int spf_status_temp(enum dns_status s)
{
	return s == DNS_SERVFAIL || s == DNS_TIMEOUT || s == DNS_ERROR;
}

/* ---- query slots ---- */

/* A new question; name NULL (not a usable DNS name) is answered NXDOMAIN at once. */
int spf_slot_new(struct spf_check *c, enum slot_kind kind, enum dns_type type,
		    const char *name, unsigned cidr)
{
	int i;

	for (i = 0; i < SPF_MAX_SLOTS && c->slot[i].st != S_FREE; i++)
		;
	if (i == SPF_MAX_SLOTS)
		panic("spf: out of query slots");
	struct spf_slot *s = &c->slot[i];
	memset(s, 0, sizeof(*s));
	if (++c->next_id == 0)
		c->next_id = 1;
	s->id = c->next_id;
	s->kind = kind;
	s->type = type;
	s->cidr = cidr;
	if (!name || strlen(name) > SPF_NAME_MAX) {
		s->st = S_DONE;
		s->status = DNS_NXDOMAIN;
	} else {
		strcpy(s->name, name);
		s->st = S_UNSENT;
	}
	return i;
}

void spf_slot_free(struct spf_check *c, int i)
{
	struct spf_slot *s = &c->slot[i];

	free(s->text);
	for (size_t k = 0; k < s->nnames; k++)
		free(s->names[k]);
	free(s->names);
	memset(s, 0, sizeof(*s));
}

int spf_addr_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

static void digest_txt(struct spf_check *c, struct spf_slot *s, const struct dns_rr *rr)
{
	const char *data = rr->u.txt.data ? rr->u.txt.data : "";
	size_t len = rr->u.txt.data ? rr->u.txt.len : 0;
	size_t max = s->kind == K_SPF ? c->lim.max_record_bytes : c->lim.max_exp_bytes;

	if (s->kind == K_SPF && !spf_record_is_spf(data, len))
		return;
	if (++s->ntxt > 1)
		return;
	if (len > max) {
		s->too_long = 1;
		return;
	}
	s->text = xmalloc(len + 1);
	memcpy(s->text, data, len);
	s->text[len] = 0;
	s->text_len = len;
}

static void digest_name(struct spf_check *c, struct spf_slot *s, const char *name)
{
	size_t max = s->kind == K_MX ? c->lim.max_mx_names : c->lim.max_ptr_names;

	if (s->nnames >= max)
		return;
	if (!s->names)
		s->names = xcalloc(max, sizeof(*s->names));
	s->names[s->nnames++] = xstrdup(name ? name : "");
}

static void digest_rr(struct spf_check *c, struct spf_slot *s, const struct dns_rr *rr)
{
	switch (s->kind) {
	case K_SPF:
	case K_EXP:
		digest_txt(c, s, rr);
		break;
	case K_MX:
		digest_name(c, s, rr->u.mx.host);
		break;
	case K_PTR:
		digest_name(c, s, rr->u.name);
		break;
	case K_ADDR:
		if (rr->type == DNS_T_A && !c->v6)
			s->match |= spf_addr_match((const unsigned char *)&rr->u.a, c->ip, s->cidr);
		else if (rr->type == DNS_T_AAAA && c->v6)
			s->match |= spf_addr_match((const unsigned char *)&rr->u.aaaa, c->ip, s->cidr);
		break;
	}
}

void spf_check_answer(struct spf_check *c, unsigned id, const struct dns_answer *ans)
{
	int i;

	if (!c || id == 0)
		return;
	for (i = 0; i < SPF_MAX_SLOTS; i++)
		if (c->slot[i].id == id && c->slot[i].st == S_SENT)
			break;
	if (i == SPF_MAX_SLOTS)
		return;
	struct spf_slot *s = &c->slot[i];
	s->st = S_DONE;
	s->status = ans ? ans->status : DNS_ERROR;
	if (s->status != DNS_OK)
		return;
	if (ans->n && !ans->rr) {
		s->status = DNS_ERROR;
		return;
	}
	for (size_t k = 0; k < ans->n; k++) {
		if (ans->rr[k].type != s->type)
			continue;
		s->n++;
		digest_rr(c, s, &ans->rr[k]);
	}
	if (s->n == 0)
		s->status = DNS_NODATA;
}

/* ---- results ---- */

void spf_set_reason(struct spf_check *c, const char *domain, const char *msg,
		       const char *problem)
{
	if (c->reason)
		return;
	c->reason = xasprintf("%s: %s", domain, msg);
	if (problem) {
		strncpy(c->problem, problem, sizeof(c->problem) - 1);
		c->problem[sizeof(c->problem) - 1] = 0;
	}
}

static void frame_free(struct spf_frame *f)
{
	if (!f)
		return;
	spf_record_free(&f->rec);
	free(f);
}

static void check_done(struct spf_check *c)
{
	c->phase = P_DONE;
	if (c->reason)
		return;
	if (c->result == SPF_NONE)
		c->reason = xasprintf("%s: no SPF record", c->domain0);
	else if (c->mech)
		c->reason = xasprintf("%s: matched %s", c->domain0, c->mech);
	else
		c->reason = xasprintf("%s: no mechanism matched (default %s)", c->domain0,
				      spf_result_name(c->result));
}

/*
 * The top frame has its result. At the top level that is the check's result
 * (t: the deciding term, NULL if none); below, it goes to the include.
 * reason (if not NULL) explains an error and is kept if none is set yet.
 */
int spf_frame_finish(struct spf_check *c, enum spf_result res, const struct spf_term *t,
			const char *reason, const char *problem)
{
	struct spf_frame *f = c->fr[c->depth - 1];

	if (res == SPF_NONE && f->redirected) {
		res = SPF_PERMERROR;
		reason = "redirect target has no SPF record (6.1)";
		problem = f->domain;
	}
	if (reason)
		spf_set_reason(c, f->domain, reason, problem);
	if (c->depth > 1) {
		frame_free(f);
		c->fr[--c->depth] = NULL;
		c->fr[c->depth - 1]->child = res;
		return 1;
	}
	c->result = res;
	if (t && (res == SPF_PASS || res == SPF_FAIL || res == SPF_SOFTFAIL || res == SPF_NEUTRAL))
		c->mech = xstrdup(t->text);
	if (res == SPF_FAIL)
		c->phase = P_EXP;
	else
		check_done(c);
	return 1;
}

int spf_frame_match(struct spf_check *c, const struct spf_term *t)
{
	static const struct { char q; enum spf_result r; } quals[] = {
		{ '+', SPF_PASS }, { '-', SPF_FAIL }, { '~', SPF_SOFTFAIL }, { '?', SPF_NEUTRAL },
	};
	enum spf_result r = SPF_PASS;

	for (size_t i = 0; i < sizeof(quals) / sizeof(quals[0]); i++)
		if (quals[i].q == t->qual)
			r = quals[i].r;
	return spf_frame_finish(c, r, t, NULL, NULL);
}

int spf_frame_next(struct spf_frame *f)
{
	f->pos++;
	f->sub = 0;
	return 1;
}

struct spf_frame *spf_frame_push(struct spf_check *c, const char *domain, int ok)
{
	struct spf_frame *f = xcalloc(1, sizeof(*f));

	f->rec.redirect = f->rec.exp = -1;
	snprintf(f->domain, sizeof(f->domain), "%s", ok ? domain : "");
	f->domain_ok = ok;
	f->st = F_FETCH;
	c->fr[c->depth++] = f;
	return f;
}

/* ---- explanation (6.2) ---- */

static int exp_text_ok(const char *s, size_t len)
{
	const char *err;

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return spf_macro_check(s, len, SPF_MACRO_EXP, &err) == 0;
}

/* Expand an explain-string into c->expl; 1 done, 0/1 otherwise as spf_expand(). */
static int exp_expand(struct spf_check *c, const char *domain, const char *text, int *ok_out,
		      int *progress_out)
{
	struct sbuf b;
	int rc;

	sbuf_init(&b);
	if (!spf_expand(c, domain, text, SPF_MACRO_EXP, &b, &rc, progress_out)) {
		sbuf_free(&b);
		return 0;
	}
	*ok_out = rc == 0 && b.len <= c->lim.max_exp_bytes;
	for (size_t i = 0; i < b.len; i++)	/* local-parts may hold anything */
		if ((unsigned char)b.buf[i] < 0x20 || (unsigned char)b.buf[i] > 0x7e)
			b.buf[i] = '?';
	if (*ok_out)
		c->expl = sbuf_steal(&b);
	sbuf_free(&b);
	return 1;
}

static int exp_fetch(struct spf_check *c, struct spf_frame *f)
{
	struct sbuf b;
	int rc, progress = 0;

	if (f->rec.exp < 0) {
		c->exp_sub = 3;
		return 1;
	}
	sbuf_init(&b);
	if (!spf_expand(c, f->domain, f->rec.terms[f->rec.exp].spec, 0, &b, &rc, &progress)) {
		sbuf_free(&b);
		return progress;
	}
	int ok = rc == 0 && spf_target_name(&b) == 0;
	c->exp_slot = spf_slot_new(c, K_EXP, DNS_T_TXT, ok ? b.buf : NULL, 0);
	sbuf_free(&b);
	c->exp_sub = 1;
	return 1;
}

static int exp_step(struct spf_check *c)
{
	struct spf_frame *f = c->fr[0];
	int ok = 0, progress = 0;

	if (c->exp_sub == 0)
		return exp_fetch(c, f);
	if (c->exp_sub == 1) {
		struct spf_slot *s = &c->slot[c->exp_slot];
		if (s->st != S_DONE)
			return 0;
		if (s->status == DNS_OK && s->ntxt == 1 && s->text && exp_text_ok(s->text, s->text_len)) {
			c->exp_text = s->text;
			s->text = NULL;
			c->exp_sub = 2;
		} else {
			c->exp_sub = 3;	/* any problem: as if there were no exp= (6.2) */
		}
		spf_slot_free(c, c->exp_slot);
		return 1;
	}
	const char *text = c->exp_sub == 2 ? c->exp_text : c->dflt_exp;
	if (!exp_expand(c, f->domain, text, &ok, &progress))
		return progress;
	if (!ok && c->exp_sub == 2) {
		c->exp_sub = 3;
		return 1;
	}
	if (!ok)
		c->expl = xstrdup("SPF fail");
	check_done(c);
	return 1;
}

/* ---- driver ---- */

static int step(struct spf_check *c)
{
	if (c->phase == P_EXP)
		return exp_step(c);
	struct spf_frame *f = c->fr[c->depth - 1];
	switch (f->st) {
	case F_FETCH:
		f->slot = spf_slot_new(c, K_SPF, DNS_T_TXT, f->domain_ok ? f->domain : NULL, 0);
		f->st = F_WAIT_REC;
		return 1;
	case F_WAIT_REC:
		return spf_frame_record(c, f);
	default:
		return spf_frame_eval(c, f);
	}
}

static int emit(struct spf_check *c, struct spf_query *q)
{
	int best = -1;

	for (int i = 0; i < SPF_MAX_SLOTS; i++)
		if (c->slot[i].st == S_UNSENT && (best < 0 || c->slot[i].id < c->slot[best].id))
			best = i;
	if (best < 0)
		return 0;
	struct spf_slot *s = &c->slot[best];
	s->st = S_SENT;
	q->id = s->id;
	q->type = s->type;
	strcpy(q->name, s->name);
	return 1;
}

int spf_check_next(struct spf_check *c, struct spf_query *q_out)
{
	for (;;) {
		if (c->phase == P_DONE)
			return SPF_DONE;
		if (emit(c, q_out))
			return SPF_NEED_DNS;
		if (step(c))
			continue;
		for (int i = 0; i < SPF_MAX_SLOTS; i++)
			if (c->slot[i].st == S_SENT)
				return SPF_WAIT;
		panic("spf: check stalled with nothing outstanding");
	}
}

/* ---- set-up and accessors ---- */

/* Client address (5: IPv4-mapped IPv6 is IPv4) and its %{i} %{c} and PTR forms. */
static int client_ip(struct spf_check *c, const char *text)
{
	static const char hex[] = "0123456789ABCDEF";
	struct in6_addr a6;

	if (!text)
		return -1;
	if (inet_pton(AF_INET, text, c->ip) != 1) {
		if (inet_pton(AF_INET6, text, &a6) != 1)
			return -1;
		if (IN6_IS_ADDR_V4MAPPED(&a6))
			memcpy(c->ip, &a6.s6_addr[12], 4);
		else {
			memcpy(c->ip, &a6, 16);
			c->v6 = 1;
		}
	}
	const unsigned char *b = c->ip;
	if (!c->v6) {
		snprintf(c->ip_i, sizeof(c->ip_i), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		snprintf(c->ip_c, sizeof(c->ip_c), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		snprintf(c->ptr_name, sizeof(c->ptr_name), "%u.%u.%u.%u.in-addr.arpa",
			 b[3], b[2], b[1], b[0]);
		return 0;
	}
	inet_ntop(AF_INET6, c->ip, c->ip_c, sizeof(c->ip_c));
	char *p = c->ip_i, *r = c->ptr_name;
	for (int i = 0; i < 32; i++) {
		unsigned nib = (b[i / 2] >> (i % 2 ? 0 : 4)) & 15;
		unsigned rnib = (b[(31 - i) / 2] >> ((31 - i) % 2 ? 0 : 4)) & 15;
		*p++ = hex[nib];
		*p++ = i < 31 ? '.' : 0;
		*r++ = (char)(hex[rnib] | 0x20);	/* lower case for the PTR name */
		*r++ = '.';
	}
	strcpy(r, "ip6.arpa");
	return 0;
}

static int req_too_long(const struct spf_request *req)
{
	const char *const v[] = { req->domain, req->sender, req->helo, req->receiver,
				  req->default_exp };

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (v[i] && strnlen(v[i], SPF_REQ_MAX_BYTES + 1) > SPF_REQ_MAX_BYTES)
			return 1;
	return 0;
}

/* <sender>, %{l} and %{o} (2.3, 2.4, 4.3); returns <domain>. */
static const char *identities(struct spf_check *c, const struct spf_request *req)
{
	const char *sender = req->scope == SPF_SCOPE_MFROM ? req->sender : NULL;
	const char *at = sender ? strrchr(sender, '@') : NULL;

	if (!sender || !*sender) {
		c->l = xstrdup("postmaster");
		c->o = xstrdup(c->h);
	} else if (!at) {
		c->l = xstrdup("postmaster");
		c->o = xstrdup(sender);
	} else {
		c->l = at == sender ? xstrdup("postmaster") : xstrndup(sender, (size_t)(at - sender));
		c->o = xstrdup(at + 1);
	}
	c->s = xasprintf("%s@%s", c->l, c->o);
	return req->domain ? req->domain : c->o;
}

static void finish_early(struct spf_check *c, enum spf_result r, const char *why)
{
	c->result = r;
	c->reason = xasprintf("%s: %s", c->domain0, why);
	c->phase = P_DONE;
}

struct spf_check *spf_check_new(const struct spf_request *req, const struct spf_limits *lim)
{
	struct spf_check *c = xcalloc(1, sizeof(*c));

	limits_set(&c->lim, lim);
	if (req_too_long(req)) {
		finish_early(c, SPF_NONE, "request string too long");
		return c;
	}
	c->h = xstrdup(req->helo ? req->helo : "");
	c->r = xstrdup(req->receiver ? req->receiver : "unknown");
	c->dflt_exp = xstrdup(req->default_exp ? req->default_exp : SPF_DEFAULT_EXP);
	c->t = req->now_s;
	const char *dom = identities(c, req);
	size_t dlen = strlen(dom);
	if (dlen && dom[dlen - 1] == '.')
		dlen--;
	snprintf(c->domain0, sizeof(c->domain0), "%.*s", (int)(dlen < SPF_NAME_MAX ? dlen : SPF_NAME_MAX), dom);
	if (client_ip(c, req->ip) < 0)
		finish_early(c, SPF_NONE, "invalid client address");
	else if (dlen > SPF_NAME_MAX || !spf_domain_valid(c->domain0))
		finish_early(c, SPF_NONE, "not a valid domain name (4.3)");
	else
		spf_frame_push(c, c->domain0, 1);
	return c;
}

void spf_check_free(struct spf_check **cp)
{
	struct spf_check *c = cp ? *cp : NULL;

	if (!c)
		return;
	for (size_t i = 0; i < c->depth; i++)
		frame_free(c->fr[i]);
	for (int i = 0; i < SPF_MAX_SLOTS; i++)
		spf_slot_free(c, i);
	for (size_t i = 0; i < c->vn.n; i++)
		free(c->vn.names[i]);
	free(c->s);
	free(c->l);
	free(c->o);
	free(c->h);
	free(c->r);
	free(c->dflt_exp);
	free(c->exp_text);
	free(c->mech);
	free(c->reason);
	free(c->expl);
	free(c);
	*cp = NULL;
}

enum spf_result spf_check_result(const struct spf_check *c)
{
	return c->result;
}

const char *spf_check_domain(const struct spf_check *c)
{
	return c->domain0;
}

const char *spf_check_mechanism(const struct spf_check *c)
{
	return c->mech;
}

const char *spf_check_reason(const struct spf_check *c)
{
	return c->reason ? c->reason : "check not finished";
}

const char *spf_check_problem(const struct spf_check *c)
{
	return c->problem[0] && (c->result == SPF_PERMERROR || c->result == SPF_TEMPERROR)
		? c->problem : NULL;
}

const char *spf_check_explanation(const struct spf_check *c)
{
	return c->result == SPF_FAIL ? c->expl : NULL;
}

unsigned spf_check_dns_terms(const struct spf_check *c)
{
	return c->dns_terms;
}

unsigned spf_check_void_lookups(const struct spf_check *c)
{
	return c->voids;
}
