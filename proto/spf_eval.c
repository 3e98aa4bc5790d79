/*
 * spf_eval: one check_host() frame: record selection (RFC 7208 4.4, 4.5),
 * the mechanisms (5) with their limits (4.6.4), redirect= (6.1), and the
 * validated names of the client (5.5) shared by "ptr" and %{p} (7.3).
 * See proto/spf.h for the contract and proto/spf_int.h for the state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/spf_int.h"

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
int spf_vn_step(struct spf_check *c)
{
	struct spf_vn *vn = &c->vn;
	enum dns_type at = c->v6 ? DNS_T_AAAA : DNS_T_A;

	if (vn->st == VN_NONE) {
		vn->slot = spf_slot_new(c, K_PTR, DNS_T_PTR, c->ptr_name, 0);
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
			vn->slots[vn->n] = spf_slot_new(c, K_ADDR, at, ok ? name : NULL, c->v6 ? 128 : 32);
			vn->n++;
		}
		spf_slot_free(c, vn->slot);
		vn->st = VN_ADDRS;
		return 1;
	}
	for (size_t i = 0; i < vn->n; i++)
		if (c->slot[vn->slots[i]].st != S_DONE)
			return 0;
	for (size_t i = 0; i < vn->n; i++) {
		vn->ok[i] = c->slot[vn->slots[i]].match;	/* errors: skipped (5.5) */
		spf_slot_free(c, vn->slots[i]);
	}
	vn->st = VN_DONE;
	return 1;
}

/*
 * Expand s (a domain-spec or explain-string) for domain into out. Returns 1
 * done (0 or -1 in *rc_out), or 0 when %{p} needs look-ups first (vn_step
 * was run; *progress_out says whether it progressed).
 */
int spf_expand(struct spf_check *c, const char *domain, const char *s, int flags,
		  struct sbuf *out, int *rc_out, int *progress_out)
{
	struct spf_macro_ctx m;
	const char *err;

	if (spf_macro_uses_p(s, strlen(s)) && c->vn.st != VN_DONE) {
		*progress_out = spf_vn_step(c);
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
			return spf_frame_finish(c, SPF_PERMERROR, NULL,
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
	if (!spf_expand(c, f->domain, t->spec, 0, &b, &rc, &progress)) {
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
 * Verdict on a term's own look-up in slot si: temporary errors end the check
 * (5), void answers count (4.6.4). On an error the slot is released and the
 * frame finished (it may be gone): returns 1. Else 0; the slot stays.
 */
static int lookup_failed(struct spf_check *c, int si, const struct spf_term *t)
{
	struct spf_slot *s = &c->slot[si];
	char problem[SPF_NAME_MAX + 1];
	enum spf_result r;
	const char *why;

	if (spf_status_temp(s->status)) {
		r = SPF_TEMPERROR;
		why = "DNS failure";
	} else if ((s->status == DNS_NXDOMAIN || s->status == DNS_NODATA) &&
		   ++c->voids > c->lim.max_void_lookups) {
		r = SPF_PERMERROR;
		why = "too many void DNS lookups (4.6.4)";
	} else {
		return 0;
	}
	snprintf(problem, sizeof(problem), "%s", r == SPF_TEMPERROR && s->name[0] ? s->name : t->text);
	spf_slot_free(c, si);
	spf_frame_finish(c, r, NULL, why, problem);
	return 1;
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
		f->slot = spf_slot_new(c, K_ADDR, type, target(f), c->v6 ? t->cidr6 : t->cidr4);
		f->sub = 3;
		return 1;
	}
	struct spf_slot *s = &c->slot[f->slot];
	if (s->st != S_DONE)
		return 0;
	int matched = exists ? s->status == DNS_OK : s->match;
	if (lookup_failed(c, f->slot, t))
		return 1;
	spf_slot_free(c, f->slot);
	return matched ? spf_frame_match(c, t) : spf_frame_next(f);
}

/* Ask for the addresses of the MX hosts in slot si (5.4); "" is a null MX. */
static void mx_ask_hosts(struct spf_check *c, struct spf_frame *f, const struct spf_term *t, int si)
{
	struct spf_slot *s = &c->slot[si];

	f->nbatch = 0;
	for (size_t i = 0; i < s->nnames; i++) {
		struct sbuf b;
		sbuf_init(&b);
		sbuf_adds(&b, s->names[i]);
		if (b.len && spf_target_name(&b) == 0)
			f->batch[f->nbatch++] = spf_slot_new(c, K_ADDR, c->v6 ? DNS_T_AAAA : DNS_T_A,
							     b.buf, c->v6 ? t->cidr6 : t->cidr4);
		sbuf_free(&b);
	}
}

/* The host answers in MX order, as if asked one by one: 1 match, -1 temperror, 0 none. */
static int mx_hosts_result(struct spf_check *c, struct spf_frame *f)
{
	int res = 0;

	for (size_t i = 0; i < f->nbatch && !res; i++) {
		struct spf_slot *s = &c->slot[f->batch[i]];
		if (spf_status_temp(s->status)) {
			spf_set_reason(c, f->domain, "DNS failure", s->name);
			res = -1;
		} else if (s->match) {
			res = 1;
		}
	}
	for (size_t i = 0; i < f->nbatch; i++)
		spf_slot_free(c, f->batch[i]);
	f->nbatch = 0;
	return res;
}

/* mx: MX look-up, then the addresses of at most max_mx_names hosts (5.4, 4.6.4). */
static int term_mx(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	if (f->sub < 2)
		return term_prep(c, f, t);
	if (f->sub == 2) {
		f->slot = spf_slot_new(c, K_MX, DNS_T_MX, target(f), 0);
		f->sub = 3;
		return 1;
	}
	if (f->sub == 3) {
		struct spf_slot *s = &c->slot[f->slot];
		if (s->st != S_DONE)
			return 0;
		if (lookup_failed(c, f->slot, t))
			return 1;
		int too_many = s->n > c->lim.max_mx_names;
		if (!too_many)
			mx_ask_hosts(c, f, t, f->slot);
		spf_slot_free(c, f->slot);
		if (too_many)
			return spf_frame_finish(c, SPF_PERMERROR, NULL, "too many MX records (4.6.4)",
						t->text);
		f->sub = 4;
		return 1;
	}
	for (size_t i = 0; i < f->nbatch; i++)
		if (c->slot[f->batch[i]].st != S_DONE)
			return 0;
	int res = mx_hosts_result(c, f);
	if (res < 0)
		return spf_frame_finish(c, SPF_TEMPERROR, NULL, NULL, NULL);
	return res ? spf_frame_match(c, t) : spf_frame_next(f);
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
		return spf_vn_step(c);
	enum dns_status ps = c->vn.ptr_status;
	if ((ps == DNS_NXDOMAIN || ps == DNS_NODATA) && ++c->voids > c->lim.max_void_lookups)
		return spf_frame_finish(c, SPF_PERMERROR, NULL, "too many void DNS lookups (4.6.4)",
				    t->text);
	for (size_t i = 0; f->target_ok && i < c->vn.n; i++)
		if (c->vn.ok[i] && name_in_domain(c->vn.names[i], f->target))
			return spf_frame_match(c, t);
	return spf_frame_next(f);
}

/* include: recursive check_host() on the target (5.2 table). */
static int term_include(struct spf_check *c, struct spf_frame *f, const struct spf_term *t)
{
	if (f->sub < 2)
		return term_prep(c, f, t);
	if (f->sub == 2) {
		if (c->depth == SPF_MAX_DEPTH)
			return spf_frame_finish(c, SPF_PERMERROR, NULL, "include nesting too deep",
					    t->text);
		f->sub = 3;
		spf_frame_push(c, f->target, f->target_ok);
		return 1;
	}
	switch (f->child) {
	case SPF_PASS:
		return spf_frame_match(c, t);
	case SPF_FAIL:
	case SPF_SOFTFAIL:
	case SPF_NEUTRAL:
		return spf_frame_next(f);
	case SPF_TEMPERROR:
	case SPF_PERMERROR:
		return spf_frame_finish(c, f->child, NULL, NULL, NULL);
	default:
		return spf_frame_finish(c, SPF_PERMERROR, NULL,
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
		return !c->v6 && spf_addr_match((const unsigned char *)&t->ip4, c->ip, t->cidr4);
	return c->v6 && spf_addr_match((const unsigned char *)&t->ip6, c->ip, t->cidr6);
}

int spf_frame_eval(struct spf_check *c, struct spf_frame *f)
{
	struct spf_record *rec = &f->rec;

	if (f->pos >= rec->nterms) {
		if (rec->redirect >= 0 && !rec->has_all)
			return term_redirect(c, f, &rec->terms[rec->redirect]);
		return spf_frame_finish(c, SPF_NEUTRAL, NULL, NULL, NULL);
	}
	const struct spf_term *t = &rec->terms[f->pos];
	switch (t->kind) {
	case SPF_T_ALL:
		return spf_frame_match(c, t);
	case SPF_T_IP4:
	case SPF_T_IP6:
		return ip_term_match(c, t) ? spf_frame_match(c, t) : spf_frame_next(f);
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
		return spf_frame_next(f);	/* modifiers act after the mechanisms */
	}
}

/* The TXT answer for the frame's domain: select and parse the record (4.4, 4.5). */
int spf_frame_record(struct spf_check *c, struct spf_frame *f)
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
	spf_slot_free(c, f->slot);
	int rc = 1;
	if (spf_status_temp(st))
		rc = spf_frame_finish(c, SPF_TEMPERROR, NULL, "DNS failure looking up the SPF record",
				  f->domain);
	else if (st != DNS_OK || ntxt == 0)
		rc = spf_frame_finish(c, SPF_NONE, NULL, NULL, NULL);
	else if (ntxt > 1)
		rc = spf_frame_finish(c, SPF_PERMERROR, NULL, "two or more v=spf1 records (4.5)", NULL);
	else if (too_long)
		rc = spf_frame_finish(c, SPF_PERMERROR, NULL, "SPF record too long", NULL);
	else if (spf_record_parse(text, len, &c->lim, &f->rec, &err, problem, sizeof(problem)) < 0)
		rc = spf_frame_finish(c, SPF_PERMERROR, NULL, err, problem);
	else
		f->st = F_EVAL;
	free(text);
	return rc;
}

