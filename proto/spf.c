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
#include "proto/spf.h"

#define SPF_MAX_DEPTH 24	/* include nesting; the term limit stops loops first */
#define SPF_MAX_SLOTS 48	/* live questions; a batch is at most SPF_MAX_BATCH */
#define SPF_MAX_BATCH 32	/* cap on max_mx_names / max_ptr_names */
#define PROBLEM_MAX 64

enum slot_kind { K_SPF, K_EXP, K_ADDR, K_MX, K_PTR };
enum slot_state { S_FREE = 0, S_UNSENT, S_SENT, S_DONE };

/* One question and the digest of its answer (answers are borrowed). */
struct spf_slot {
	unsigned id;
	enum slot_state st;
	enum slot_kind kind;
	enum dns_type type;
	char name[SPF_NAME_MAX + 1];
	unsigned cidr;		/* K_ADDR: prefix length to compare */
	enum dns_status status;
	size_t n;		/* RRs of the asked type */
	int match;		/* K_ADDR: an address within cidr of the client */
	size_t ntxt;		/* K_SPF: v=spf1 records; K_EXP: TXT RRs */
	int too_long;		/* K_SPF/K_EXP: the text was over the limit */
	char *text;		/* K_SPF: the v=spf1 record; K_EXP: the one TXT */
	size_t text_len;
	char **names;		/* K_MX, K_PTR: first names (capped) */
	size_t nnames;
};

enum frame_state { F_FETCH, F_WAIT_REC, F_EVAL };

struct spf_frame {
	char domain[SPF_NAME_MAX + 1];
	int domain_ok;		/* a queryable name (else treated as NXDOMAIN) */
	int redirected;		/* reached by redirect=: none means permerror (6.1) */
	struct spf_record rec;
	enum frame_state st;
	size_t pos;		/* current term */
	int sub;		/* progress inside the current term */
	int slot;
	int batch[SPF_MAX_BATCH];
	size_t nbatch;
	char target[SPF_NAME_MAX + 1];	/* expanded domain-spec of the term */
	int target_ok;
	enum spf_result child;	/* result of the include just finished */
};

enum vn_state { VN_NONE, VN_PTR, VN_ADDRS, VN_DONE };

/* Validated domain names of the client address (5.5, 7.3 %{p}). */
struct spf_vn {
	enum vn_state st;
	int slot;
	enum dns_status ptr_status;
	size_t n;
	char *names[SPF_MAX_BATCH];
	int slots[SPF_MAX_BATCH];
	int ok[SPF_MAX_BATCH];
};

enum phase { P_EVAL, P_EXP, P_DONE };

struct spf_check {
	struct spf_limits lim;
	char *s, *l, *o, *h, *r, *dflt_exp;
	long long t;
	int v6;
	unsigned char ip[16];	/* 4 bytes used for IPv4 */
	char ip_i[72], ip_c[INET6_ADDRSTRLEN], ptr_name[80];
	char domain0[SPF_NAME_MAX + 1];
	struct spf_frame *fr[SPF_MAX_DEPTH];
	size_t depth;
	struct spf_slot slot[SPF_MAX_SLOTS];
	unsigned next_id;
	struct spf_vn vn;
	unsigned dns_terms, voids;
	enum phase phase;
	int exp_sub, exp_slot;
	char *exp_text;		/* the fetched explain-string */
	enum spf_result result;
	char *mech, *reason, *expl;
	char problem[PROBLEM_MAX];
};

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

static int status_temp(enum dns_status s)
{
	return s == DNS_SERVFAIL || s == DNS_TIMEOUT || s == DNS_ERROR;
}

/* ---- query slots ---- */

/* A new question; name NULL (not a usable DNS name) is answered NXDOMAIN at once. */
static int slot_new(struct spf_check *c, enum slot_kind kind, enum dns_type type,
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

static void slot_free(struct spf_check *c, int i)
{
	struct spf_slot *s = &c->slot[i];

	free(s->text);
	for (size_t k = 0; k < s->nnames; k++)
		free(s->names[k]);
	free(s->names);
	memset(s, 0, sizeof(*s));
}

static int addr_match(const unsigned char *a, const unsigned char *b, unsigned bits)
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
			s->match |= addr_match((const unsigned char *)&rr->u.a, c->ip, s->cidr);
		else if (rr->type == DNS_T_AAAA && c->v6)
			s->match |= addr_match((const unsigned char *)&rr->u.aaaa, c->ip, s->cidr);
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

static void set_reason(struct spf_check *c, const char *domain, const char *msg,
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
static int frame_finish(struct spf_check *c, enum spf_result res, const struct spf_term *t,
			const char *reason, const char *problem)
{
	struct spf_frame *f = c->fr[c->depth - 1];

	if (res == SPF_NONE && f->redirected) {
		res = SPF_PERMERROR;
		reason = "redirect target has no SPF record (6.1)";
		problem = f->domain;
	}
	if (reason)
		set_reason(c, f->domain, reason, problem);
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

static int frame_match(struct spf_check *c, const struct spf_term *t)
{
	static const struct { char q; enum spf_result r; } quals[] = {
		{ '+', SPF_PASS }, { '-', SPF_FAIL }, { '~', SPF_SOFTFAIL }, { '?', SPF_NEUTRAL },
	};
	enum spf_result r = SPF_PASS;

	for (size_t i = 0; i < sizeof(quals) / sizeof(quals[0]); i++)
		if (quals[i].q == t->qual)
			r = quals[i].r;
	return frame_finish(c, r, t, NULL, NULL);
}

static int frame_next(struct spf_frame *f)
{
	f->pos++;
	f->sub = 0;
	return 1;
}

static struct spf_frame *frame_push(struct spf_check *c, const char *domain, int ok)
{
	struct spf_frame *f = xcalloc(1, sizeof(*f));

	f->rec.redirect = f->rec.exp = -1;
	snprintf(f->domain, sizeof(f->domain), "%s", ok ? domain : "");
	f->domain_ok = ok;
	f->st = F_FETCH;
	c->fr[c->depth++] = f;
	return f;
}

/* ---- macro context and the validated names ---- */

static const char *vn_pick(const struct spf_check *c, const char *domain)
{
	const char *first = NULL;
	size_t dlen = strlen(domain);

	if (c->vn.st != VN_DONE)
		return NULL;
	for (size_t i = 0; i < c->vn.n; i++) {
		if (!c->vn.ok[i])
			continue;
		const char *n = c->vn.names[i];
		size_t nlen = strlen(n);
		if (!first)
			first = n;
		if (nlen == dlen ? ascii_strcasecmp(n, domain) == 0
		    : nlen > dlen && n[nlen - dlen - 1] == '.' &&
		      ascii_strcasecmp(n + nlen - dlen, domain) == 0)
			return n;	/* a subdomain of <domain> is preferred (7.3) */
	}
	return first;
}

static void macro_ctx(const struct spf_check *c, const char *domain, struct spf_macro_ctx *m)
{
	m->s = c->s;
	m->l = c->l;
	m->o = c->o;
	m->d = domain;
	m->i = c->ip_i;
	m->c = c->ip_c;
	m->v = c->v6 ? "ip6" : "in-addr";
	m->p = vn_pick(c, domain);
	m->h = c->h;
	m->r = c->r;
	m->t = c->t;
}

/* Run the validated-names procedure one step: 1 progress, 0 blocked. */
static int vn_step(struct spf_check *c)
{
	struct spf_vn *vn = &c->vn;
	enum dns_type at = c->v6 ? DNS_T_AAAA : DNS_T_A;

	if (vn->st == VN_NONE) {
		vn->slot = slot_new(c, K_PTR, DNS_T_PTR, c->ptr_name, 0);
		vn->st = VN_PTR;
		return 1;
	}
	if (vn->st == VN_PTR) {
		struct spf_slot *s = &c->slot[vn->slot];
		if (s->st != S_DONE)
			return 0;
		vn->ptr_status = s->status;
		for (size_t i = 0; i < s->nnames; i++) {
			struct sbuf b;
			sbuf_init(&b);
			sbuf_adds(&b, s->names[i]);
			int ok = spf_target_name(&b) == 0;
			char *name = sbuf_steal(&b);
			vn->names[vn->n] = name;
			vn->slots[vn->n] = slot_new(c, K_ADDR, at, ok ? name : NULL, c->v6 ? 128 : 32);
			vn->n++;
		}
		slot_free(c, vn->slot);
		vn->st = VN_ADDRS;
		return 1;
	}
	for (size_t i = 0; i < vn->n; i++)
		if (c->slot[vn->slots[i]].st != S_DONE)
			return 0;
	for (size_t i = 0; i < vn->n; i++) {
		vn->ok[i] = c->slot[vn->slots[i]].match;	/* errors: skipped (5.5) */
		slot_free(c, vn->slots[i]);
	}
	vn->st = VN_DONE;
	return 1;
}

/*
 * Expand s (a domain-spec or explain-string) for domain into out. Returns 1
 * done (0 or -1 in *rc_out), or 0 when %{p} needs look-ups first (vn_step
 * was run; *progress_out says whether it progressed).
 */
static int expand(struct spf_check *c, const char *domain, const char *s, int flags,
		  struct sbuf *out, int *rc_out, int *progress_out)
{
	struct spf_macro_ctx m;
	const char *err;

	if (spf_macro_uses_p(s, strlen(s)) && c->vn.st != VN_DONE) {
		*progress_out = vn_step(c);
		return 0;
	}
	macro_ctx(c, domain, &m);
	*rc_out = spf_macro_expand(&m, s, strlen(s), flags, out, &err);
	return 1;
}

/* ---- terms ---- */

/*
 * Common start of a DNS-querying term: sub 0 counts it (4.6.4), sub 1
 * expands its target. Returns the step result; the term continues at sub 2.
 */
static int term_prep(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	if (f->sub == 0) {
		if (++c->dns_terms > c->lim.max_dns_terms)
			return frame_finish(c, SPF_PERMERROR, NULL,
					    "too many DNS-querying terms (4.6.4)", t->text);
		f->sub = 1;
		return 1;
	}
	if (!t->spec) {
		strcpy(f->target, f->domain);
		f->target_ok = 1;
		f->sub = 2;
		return 1;
	}
	struct sbuf b;
	int rc, progress = 0;
	sbuf_init(&b);
	if (!expand(c, f->domain, t->spec, 0, &b, &rc, &progress)) {
		sbuf_free(&b);
		return progress;
	}
	f->target_ok = rc == 0 && spf_target_name(&b) == 0;
	snprintf(f->target, sizeof(f->target), "%s", f->target_ok ? b.buf : "");
	sbuf_free(&b);
	f->sub = 2;
	return 1;
}

/*
 * After a term's own look-up: temporary errors end the check (5), void
 * answers count (4.6.4). Returns 0 to go on, else the step result.
 */
static int lookup_checks(struct spf_check *c, const struct spf_slot *s, const struct spf_term *t,
			 int temp_is_error)
{
	if (status_temp(s->status)) {
		if (!temp_is_error)
			return 0;
		frame_finish(c, SPF_TEMPERROR, NULL, "DNS failure", s->name[0] ? s->name : t->text);
		return 1;
	}
	if (s->status == DNS_NXDOMAIN || s->status == DNS_NODATA) {
		if (++c->voids > c->lim.max_void_lookups) {
			frame_finish(c, SPF_PERMERROR, NULL, "too many void DNS lookups (4.6.4)",
				     t->text);
			return 1;
		}
	}
	return 0;
}

static const char *target(const struct spf_frame *f)
{
	return f->target_ok ? f->target : NULL;
}

/* a, exists: one address look-up of the target (5.3, 5.7). */
static int term_addr(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	int exists = t->kind == SPF_T_EXISTS;

	if (f->sub < 2)
		return term_prep(c, f, t);
	if (f->sub == 2) {
		enum dns_type type = !exists && c->v6 ? DNS_T_AAAA : DNS_T_A;
		f->slot = slot_new(c, K_ADDR, type, target(f), c->v6 ? t->cidr6 : t->cidr4);
		f->sub = 3;
		return 1;
	}
	struct spf_slot *s = &c->slot[f->slot];
	if (s->st != S_DONE)
		return 0;
	int matched = exists ? s->status == DNS_OK : s->match;
	int stop = lookup_checks(c, s, t, 1);
	slot_free(c, f->slot);
	if (stop)
		return 1;
	return matched ? frame_match(c, t) : frame_next(f);
}

/* mx: MX look-up, then the addresses of at most max_mx_names hosts (5.4, 4.6.4). */
static int term_mx(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	if (f->sub < 2)
		return term_prep(c, f, t);
	if (f->sub == 2) {
		f->slot = slot_new(c, K_MX, DNS_T_MX, target(f), 0);
		f->sub = 3;
		return 1;
	}
	if (f->sub == 3) {
		struct spf_slot *s = &c->slot[f->slot];
		if (s->st != S_DONE)
			return 0;
		if (lookup_checks(c, s, t, 1)) {
			slot_free(c, f->slot);
			return 1;
		}
		if (s->n > c->lim.max_mx_names) {
			slot_free(c, f->slot);
			return frame_finish(c, SPF_PERMERROR, NULL, "too many MX records (4.6.4)",
					    t->text);
		}
		f->nbatch = 0;
		for (size_t i = 0; i < s->nnames; i++) {
			struct sbuf b;
			sbuf_init(&b);
			sbuf_adds(&b, s->names[i]);
			if (b.len && spf_target_name(&b) == 0)	/* "" is a null MX */
				f->batch[f->nbatch++] = slot_new(c, K_ADDR,
					c->v6 ? DNS_T_AAAA : DNS_T_A, b.buf, c->v6 ? t->cidr6 : t->cidr4);
			sbuf_free(&b);
		}
		slot_free(c, f->slot);
		f->sub = 4;
		return 1;
	}
	for (size_t i = 0; i < f->nbatch; i++)
		if (c->slot[f->batch[i]].st != S_DONE)
			return 0;
	int res = 0;	/* in MX order, as if asked one by one: 1 match, -1 temperror */
	for (size_t i = 0; i < f->nbatch && !res; i++) {
		struct spf_slot *s = &c->slot[f->batch[i]];
		if (status_temp(s->status)) {
			set_reason(c, f->domain, "DNS failure", s->name);
			res = -1;
		} else if (s->match) {
			res = 1;
		}
	}
	for (size_t i = 0; i < f->nbatch; i++)
		slot_free(c, f->batch[i]);
	f->nbatch = 0;
	if (res < 0)
		return frame_finish(c, SPF_TEMPERROR, NULL, NULL, NULL);
	return res ? frame_match(c, t) : frame_next(f);
}

static int name_in_domain(const char *name, const char *dom)
{
	size_t nlen = strlen(name), dlen = strlen(dom);

	if (nlen == dlen)
		return ascii_strcasecmp(name, dom) == 0;
	return nlen > dlen && name[nlen - dlen - 1] == '.' &&
	       ascii_strcasecmp(name + nlen - dlen, dom) == 0;
}

/* ptr: a validated name of the client in the target domain (5.5). */
static int term_ptr(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	if (f->sub < 2)
		return term_prep(c, f, t);
	if (c->vn.st != VN_DONE)
		return vn_step(c);
	enum dns_status ps = c->vn.ptr_status;
	if ((ps == DNS_NXDOMAIN || ps == DNS_NODATA) && ++c->voids > c->lim.max_void_lookups)
		return frame_finish(c, SPF_PERMERROR, NULL, "too many void DNS lookups (4.6.4)",
				    t->text);
	for (size_t i = 0; f->target_ok && i < c->vn.n; i++)
		if (c->vn.ok[i] && name_in_domain(c->vn.names[i], f->target))
			return frame_match(c, t);
	return frame_next(f);
}

/* include: recursive check_host() on the target (5.2 table). */
static int term_include(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	if (f->sub < 2)
		return term_prep(c, f, t);
	if (f->sub == 2) {
		if (c->depth == SPF_MAX_DEPTH)
			return frame_finish(c, SPF_PERMERROR, NULL, "include nesting too deep",
					    t->text);
		f->sub = 3;
		frame_push(c, f->target, f->target_ok);
		return 1;
	}
	switch (f->child) {
	case SPF_PASS:
		return frame_match(c, t);
	case SPF_FAIL:
	case SPF_SOFTFAIL:
	case SPF_NEUTRAL:
		return frame_next(f);
	case SPF_TEMPERROR:
	case SPF_PERMERROR:
		return frame_finish(c, f->child, NULL, NULL, NULL);
	default:
		return frame_finish(c, SPF_PERMERROR, NULL,
				    "include target has no SPF record (5.2)", t->text);
	}
}

/* redirect=: the frame becomes check_host() of the target (6.1). */
static int term_redirect(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	if (f->sub < 2)
		return term_prep(c, f, t);
	spf_record_free(&f->rec);
	snprintf(f->domain, sizeof(f->domain), "%s", f->target_ok ? f->target : "");
	f->domain_ok = f->target_ok;
	f->redirected = 1;
	f->st = F_FETCH;
	f->pos = 0;
	f->sub = 0;
	return 1;
}

static int ip_term_match(const struct spf_check *c, const struct spf_term *t)
{
	if (t->kind == SPF_T_IP4)
		return !c->v6 && addr_match((const unsigned char *)&t->ip4, c->ip, t->cidr4);
	return c->v6 && addr_match((const unsigned char *)&t->ip6, c->ip, t->cidr6);
}

static int frame_eval(struct spf_check *c, struct spf_frame *f)
{
	struct spf_record *rec = &f->rec;

	if (f->pos >= rec->nterms) {
		if (rec->redirect >= 0 && !rec->has_all)
			return term_redirect(c, f, &rec->terms[rec->redirect]);
		return frame_finish(c, SPF_NEUTRAL, NULL, NULL, NULL);
	}
	const struct spf_term *t = &rec->terms[f->pos];
	switch (t->kind) {
	case SPF_T_ALL:
		return frame_match(c, t);
	case SPF_T_IP4:
	case SPF_T_IP6:
		return ip_term_match(c, t) ? frame_match(c, t) : frame_next(f);
	case SPF_T_A:
	case SPF_T_EXISTS:
		return term_addr(c, f, t);
	case SPF_T_MX:
		return term_mx(c, f, t);
	case SPF_T_PTR:
		return term_ptr(c, f, t);
	case SPF_T_INCLUDE:
		return term_include(c, f, t);
	default:
		return frame_next(f);	/* modifiers act after the mechanisms */
	}
}

/* The TXT answer for the frame's domain: select and parse the record (4.4, 4.5). */
static int frame_record(struct spf_check *c, struct spf_frame *f)
{
	struct spf_slot *s = &c->slot[f->slot];
	const char *err;
	char problem[PROBLEM_MAX];

	if (s->st != S_DONE)
		return 0;
	enum dns_status st = s->status;
	size_t ntxt = s->ntxt;
	int too_long = s->too_long;
	char *text = s->text;
	size_t len = s->text_len;
	s->text = NULL;
	slot_free(c, f->slot);
	int rc = 1;
	if (status_temp(st))
		rc = frame_finish(c, SPF_TEMPERROR, NULL, "DNS failure looking up the SPF record",
				  f->domain);
	else if (st != DNS_OK || ntxt == 0)
		rc = frame_finish(c, SPF_NONE, NULL, NULL, NULL);
	else if (ntxt > 1)
		rc = frame_finish(c, SPF_PERMERROR, NULL, "two or more v=spf1 records (4.5)", NULL);
	else if (too_long)
		rc = frame_finish(c, SPF_PERMERROR, NULL, "SPF record too long", NULL);
	else if (spf_record_parse(text, len, &c->lim, &f->rec, &err, problem, sizeof(problem)) < 0)
		rc = frame_finish(c, SPF_PERMERROR, NULL, err, problem);
	else
		f->st = F_EVAL;
	free(text);
	return rc;
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

/* Expand an explain-string into c->expl; 1 done, 0/1 otherwise as expand(). */
static int exp_expand(struct spf_check *c, const char *domain, const char *text, int *ok_out,
		      int *progress_out)
{
	struct sbuf b;
	int rc;

	sbuf_init(&b);
	if (!expand(c, domain, text, SPF_MACRO_EXP, &b, &rc, progress_out)) {
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
	if (!expand(c, f->domain, f->rec.terms[f->rec.exp].spec, 0, &b, &rc, &progress)) {
		sbuf_free(&b);
		return progress;
	}
	int ok = rc == 0 && spf_target_name(&b) == 0;
	c->exp_slot = slot_new(c, K_EXP, DNS_T_TXT, ok ? b.buf : NULL, 0);
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
		slot_free(c, c->exp_slot);
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
		f->slot = slot_new(c, K_SPF, DNS_T_TXT, f->domain_ok ? f->domain : NULL, 0);
		f->st = F_WAIT_REC;
		return 1;
	case F_WAIT_REC:
		return frame_record(c, f);
	default:
		return frame_eval(c, f);
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
		frame_push(c, c->domain0, 1);
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
		slot_free(c, i);
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
