/*
 * dmarc_eval: the DMARC check as a state machine fed DNS answers: policy
 * discovery (RFC 9989 4.10.1 tree walk; RFC 7489 6.6.3 with the PSL), the
 * Organizational Domain (9989 4.10 and 4.10.2; 7489 3.2), identifier
 * alignment, the np= existence test (9989 3.2.11, 9.4), result and
 * disposition. See proto/dmarc.h for the contract.
 *
 * The evaluation is a function of the answers received so far: every time
 * an answer arrives the algorithm runs again from the top over the answer
 * cache, and where it meets a name it has no answer for, it queues the
 * question and stops. Checks ask at most DMARC_MAX_QUERIES questions, so a
 * re-run costs little and the code reads like the RFC's steps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "proto/dmarc.h"

#define MAX_SLOTS (DMARC_MAX_QUERIES + 16)	/* + names too long to ask */
#define NAME_BUF (DMARC_NAME_MAX + 1)
#define MAX_LABELS 128				/* 253 bytes: at most 127 labels */

enum slot_state { S_UNSENT = 1, S_SENT, S_DONE };

/* One question and the digest of its answer. */
struct dm_slot {
	enum slot_state st;
	unsigned id;
	enum dns_type type;
	char dom[NAME_BUF];		/* the domain (TXT: asked as "_dmarc.<dom>") */
	enum dns_status status;
	int ndmarc;			/* TXT: v=DMARC1 records in the answer */
	int usable;			/* the single record: 0 no, 1 valid, 2 p=none fallback */
	const char *err;		/* why the single record is not valid */
	struct dmarc_record rec;	/* the single record (ndmarc == 1) */
};

struct dm_auth {
	char *domain;			/* as given */
	char *selector;
	char norm[NAME_BUF];		/* normalized; "" if unusable */
	int pass;			/* result pass (and MAIL FROM scope for SPF) */
};

enum lk { LK_DONE, LK_PENDING, LK_NOBUDGET };
enum walk_state { W_DONE, W_PENDING, W_TEMP, W_NOBUDGET };

/* Result of one DNS tree walk (9989 4.10). */
struct walk {
	enum walk_state st;
	const struct dm_slot *rec[DMARC_MAX_WALK];	/* usable records, longest name first */
	size_t nrec;
	char org[NAME_BUF];
	const struct dm_slot *temp;	/* the look-up that failed (W_TEMP) */
};

struct dmarc_check {
	enum dmarc_mode mode;
	char from[NAME_BUF];
	int from_ok;
	struct dm_auth *spf, *dkim;
	size_t nspf, ndkim;
	unsigned pct_roll;
	const void *psl;

	size_t nslots;
	unsigned next_id;
	unsigned nasked;		/* questions counted against DMARC_MAX_QUERIES */
	int done;
	int dirty;			/* an answer came in since the last run */
	int budget_hit;

	struct dmarc_outcome out;
	const struct dm_slot *pol;	/* where the record applied was found */
	char policy_domain[NAME_BUF];
	char org_domain[NAME_BUF];
	char reason[512];
	struct dm_slot slot[MAX_SLOTS];	/* last: only [0, nslots) is initialized */
};

/* Copy a name known to fit (at most DMARC_NAME_MAX bytes) into a NAME_BUF. */
static void copy_name(char *dst, const char *src)
{
	size_t n = strnlen(src, DMARC_NAME_MAX);

	memcpy(dst, src, n);
	dst[n] = 0;
}

/* The question name of a slot. */
static void slot_qname(const struct dm_slot *s, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s%s", s->type == DNS_T_TXT ? "_dmarc." : "", s->dom);
}

/* ---- labels ---- */

/* Offsets of the labels of a normalized name; returns the count. */
static size_t label_starts(const char *dom, size_t *starts)
{
	size_t n = 0;

	starts[n++] = 0;
	for (size_t i = 0; dom[i]; i++)
		if (dom[i] == '.' && n < MAX_LABELS)
			starts[n++] = i + 1;
	return n;
}

/* The last k labels of dom (1 <= k <= labels). */
static const char *suffix(const char *dom, const size_t *starts, size_t n, size_t k)
{
	return dom + starts[n - k];
}

/* a and b end in the same label. */
static int same_tld(const char *a, const char *b)
{
	const char *da = strrchr(a, '.'), *db = strrchr(b, '.');

	da = da ? da + 1 : a;
	db = db ? db + 1 : b;
	return strcmp(da, db) == 0;
}

/* ---- set-up and tear-down ---- */

static struct dm_auth *copy_auth(const struct dmarc_auth *in, size_t n, size_t *n_out, int spf)
{
	if (!in || n == 0) {
		*n_out = 0;
		return NULL;
	}
	if (n > DMARC_MAX_AUTH)
		n = DMARC_MAX_AUTH;
	struct dm_auth *a = xcalloc(n, sizeof(*a));
	for (size_t i = 0; i < n; i++) {
		a[i].domain = xstrdup(in[i].domain ? in[i].domain : "");
		a[i].selector = in[i].selector ? xstrdup(in[i].selector) : NULL;
		if (strlen(a[i].domain) <= DMARC_NAME_MAX + 1)
			(void)dmarc_domain_normalize(a[i].domain, a[i].norm, sizeof(a[i].norm));
		a[i].pass = in[i].result == DMARC_AUTH_PASS &&
			    (!spf || in[i].scope == DMARC_SCOPE_MFROM) && a[i].norm[0];
	}
	*n_out = n;
	return a;
}

struct dmarc_check *dmarc_check_new(const struct dmarc_request *req)
{
	struct dmarc_check *c = xmalloc(sizeof(*c));

	memset(c, 0, offsetof(struct dmarc_check, slot));	/* slots: as used */

	c->mode = req->mode == DMARC_MODE_RFC7489 ? DMARC_MODE_RFC7489 : DMARC_MODE_DMARCBIS;
	if (req->from_domain && strlen(req->from_domain) <= DMARC_NAME_MAX + 1)
		c->from_ok = dmarc_domain_normalize(req->from_domain, c->from, sizeof(c->from)) == 0;
	c->spf = copy_auth(req->spf, req->nspf, &c->nspf, 1);
	c->dkim = copy_auth(req->dkim, req->ndkim, &c->ndkim, 0);
	c->pct_roll = req->pct_roll % 100;
	c->psl = req->psl;
	c->next_id = 1;
	c->dirty = 1;
	return c;
}

void dmarc_check_free(struct dmarc_check **cp)
{
	struct dmarc_check *c;

	if (!cp || !*cp)
		return;
	c = *cp;
	for (size_t i = 0; i < c->nslots; i++)
		dmarc_record_free(&c->slot[i].rec);
	for (size_t i = 0; i < c->nspf; i++) {
		free(c->spf[i].domain);
		free(c->spf[i].selector);
	}
	for (size_t i = 0; i < c->ndkim; i++) {
		free(c->dkim[i].domain);
		free(c->dkim[i].selector);
	}
	free(c->spf);
	free(c->dkim);
	free(c);
	*cp = NULL;
}

/* ---- the answer cache ---- */

/*
 * The answer for (dom, type): LK_DONE with *s_out, or LK_PENDING (the
 * question is queued or outstanding), or LK_NOBUDGET.
 */
static enum lk lookup(struct dmarc_check *c, const char *dom, enum dns_type type,
		      const struct dm_slot **s_out)
{
	struct dm_slot *s;

	*s_out = NULL;
	for (size_t i = 0; i < c->nslots; i++) {
		s = &c->slot[i];
		if (s->type == type && strcmp(s->dom, dom) == 0) {
			if (s->st != S_DONE)
				return LK_PENDING;
			*s_out = s;
			return LK_DONE;
		}
	}
	if (c->nslots == MAX_SLOTS) {
		c->budget_hit = 1;
		return LK_NOBUDGET;
	}
	s = &c->slot[c->nslots];
	memset(s, 0, sizeof(*s));
	s->type = type;
	copy_name(s->dom, dom);
	if (type == DNS_T_TXT) {
		if (strlen(dom) + 7 > DMARC_NAME_MAX) {
			/* _dmarc.<dom> cannot exist: a name too long for the DNS */
			s->st = S_DONE;
			s->status = DNS_NXDOMAIN;
			c->nslots++;
			*s_out = s;
			return LK_DONE;
		}
	}
	if (c->nasked >= DMARC_MAX_QUERIES) {
		c->budget_hit = 1;
		return LK_NOBUDGET;
	}
	c->nasked++;
	s->st = S_UNSENT;
	c->nslots++;
	return LK_PENDING;
}

static int slot_temp(const struct dm_slot *s)
{
	return dns_status_is_temp(s->status);
}

/* A single usable DMARC record at this name. */
static int slot_has_record(const struct dm_slot *s)
{
	return s->status == DNS_OK && s->ndmarc == 1 && s->usable;
}

static void digest_txt(struct dmarc_check *c, struct dm_slot *s, const struct dns_answer *ans)
{
	const struct dns_rr *one = NULL;

	if (ans->status != DNS_OK)
		return;
	for (size_t i = 0; i < ans->n; i++) {
		const struct dns_rr *rr = &ans->rr[i];
		if (rr->type != DNS_T_TXT || !rr->u.txt.data)
			continue;
		if (dmarc_record_is_dmarc(rr->u.txt.data, rr->u.txt.len)) {
			s->ndmarc++;
			one = rr;
		}
	}
	if (s->ndmarc != 1)
		return;
	if (dmarc_record_parse(one->u.txt.data, one->u.txt.len, &s->rec, &s->err) == 0)
		s->usable = 1;
	else if (c->mode == DMARC_MODE_RFC7489 && !s->rec.broken && s->rec.p &&
		 !(s->rec.bad_tags & (DMARC_TAG_P | DMARC_TAG_SP)))
		s->usable = 1;	/* only np= is bad: not a tag of RFC 7489 */
	else if (dmarc_record_fallback(&s->rec, c->mode))
		s->usable = 2;
}

void dmarc_check_answer(struct dmarc_check *c, unsigned id, const struct dns_answer *ans)
{
	if (!c || !ans || id == 0)
		return;
	for (size_t i = 0; i < c->nslots; i++) {
		struct dm_slot *s = &c->slot[i];
		if (s->id != id || s->st != S_SENT)
			continue;
		s->st = S_DONE;
		s->status = ans->status;
		if (s->type == DNS_T_TXT)
			digest_txt(c, s, ans);
		c->dirty = 1;
		return;
	}
}

/* ---- the DNS tree walk (RFC 9989 4.10) ---- */

/*
 * Walk from dom (normalized): dom itself, then its parents, more than 8
 * labels shortened to 7 at the first step, down to the top-level label;
 * stop at a single record with psd=y or psd=n. Then pick the
 * Organizational Domain (4.10.2).
 */
static void walk(struct dmarc_check *c, const char *dom, struct walk *w)
{
	size_t starts[MAX_LABELS];
	size_t n = label_starts(dom, starts);
	size_t k = n, last_k = 0;

	memset(w, 0, sizeof(*w));
	for (;;) {
		const struct dm_slot *s;
		enum lk r = lookup(c, suffix(dom, starts, n, k), DNS_T_TXT, &s);
		if (r == LK_PENDING) {
			w->st = W_PENDING;
			return;
		}
		if (r == LK_NOBUDGET) {
			w->st = W_NOBUDGET;
			return;
		}
		if (slot_temp(s)) {
			w->st = W_TEMP;
			w->temp = s;
			return;
		}
		if (slot_has_record(s) && w->nrec < DMARC_MAX_WALK) {
			w->rec[w->nrec++] = s;
			last_k = k;
		}
		if (s->status == DNS_OK && s->ndmarc == 1 && s->rec.psd != 'u')
			break;
		if (k == 1)
			break;
		k = k == n && n > DMARC_MAX_WALK ? DMARC_MAX_WALK - 1 : k - 1;
	}
	w->st = W_DONE;
	if (w->nrec == 0) {
		copy_name(w->org, dom);
		return;
	}
	const struct dm_slot *last = w->rec[w->nrec - 1];
	if (last->rec.psd == 'y' && last_k != n) {
		copy_name(w->org, suffix(dom, starts, n, last_k + 1));
	} else {
		copy_name(w->org, last->dom);
	}
}

/* ---- outcome helpers ---- */

static void reason(struct dmarc_check *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reason(struct dmarc_check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
}

static void finish(struct dmarc_check *c, enum dmarc_result r)
{
	c->out.result = r;
	c->out.reason = c->reason[0] ? c->reason : dmarc_result_name(r);
	c->done = 1;
}

static void set_policy_domain(struct dmarc_check *c, const struct dm_slot *s)
{
	copy_name(c->policy_domain, s->dom);
	c->out.policy_domain = c->policy_domain;
	c->out.record = &s->rec;
	c->pol = s;
}

static void set_org(struct dmarc_check *c, const char *org)
{
	copy_name(c->org_domain, org);
	c->out.org_domain = c->org_domain;
}

/* ---- policy discovery ---- */

enum step { ST_DONE, ST_PENDING, ST_STOP };	/* STOP: outcome final */

/* The record at the Author Domain itself, shared by both modes. */
static enum step discover_author(struct dmarc_check *c, const struct dm_slot **s_out)
{
	enum lk r = lookup(c, c->from, DNS_T_TXT, s_out);

	if (r == LK_PENDING)
		return ST_PENDING;
	if (r == LK_NOBUDGET) {
		reason(c, "DNS look-up limit reached");
		finish(c, DMARC_RESULT_TEMPERROR);
		return ST_STOP;
	}
	if (slot_temp(*s_out)) {
		reason(c, "DNS %s for _dmarc.%s", dns_status_name((*s_out)->status), c->from);
		finish(c, DMARC_RESULT_TEMPERROR);
		return ST_STOP;
	}
	return ST_DONE;
}

static int invalid_single(struct dmarc_check *c, const struct dm_slot *s)
{
	if (s->status != DNS_OK || s->ndmarc != 1 || s->usable)
		return 0;
	reason(c, "invalid DMARC record at _dmarc.%s: %s", s->dom, s->err ? s->err : "?");
	finish(c, DMARC_RESULT_NONE);
	return 1;
}

/* RFC 9989 4.10.1. Sets policy domain, record and org domain (if known). */
static enum step discover_bis(struct dmarc_check *c, int *is_author_out)
{
	const struct dm_slot *s;
	struct walk w;
	enum step st = discover_author(c, &s);

	if (st != ST_DONE)
		return st;
	*is_author_out = 0;
	if (slot_has_record(s)) {
		set_policy_domain(c, s);
		*is_author_out = 1;
		if (s->rec.psd != 'u')
			set_org(c, c->from);	/* psd=n: itself; psd=y: the walk stops there */
		return ST_DONE;
	}
	if (invalid_single(c, s))
		return ST_STOP;
	walk(c, c->from, &w);
	switch (w.st) {
	case W_PENDING:
		return ST_PENDING;
	case W_NOBUDGET:
		reason(c, "DNS look-up limit reached");
		finish(c, DMARC_RESULT_TEMPERROR);
		return ST_STOP;
	case W_TEMP:
		reason(c, "DNS %s for _dmarc.%s", dns_status_name(w.temp->status), w.temp->dom);
		finish(c, DMARC_RESULT_TEMPERROR);
		return ST_STOP;
	case W_DONE:
		break;
	}
	if (w.nrec == 0) {
		reason(c, "no DMARC record for %s", c->from);
		finish(c, DMARC_RESULT_NONE);
		return ST_STOP;
	}
	set_org(c, w.org);
	/* the Organizational Domain's record, else the PSD's */
	const struct dm_slot *pick = w.rec[w.nrec - 1];
	for (size_t i = 0; i < w.nrec; i++)
		if (strcmp(w.rec[i]->dom, w.org) == 0)
			pick = w.rec[i];
	set_policy_domain(c, pick);
	c->out.discovery = DMARC_DISCOVERY_TREEWALK;
	return ST_DONE;
}

/* RFC 7489 6.6.3. */
static enum step discover_7489(struct dmarc_check *c, int *is_author_out)
{
	const struct dm_slot *s;
	enum step st = discover_author(c, &s);
	char org[NAME_BUF];

	if (st != ST_DONE)
		return st;
	*is_author_out = 0;
	if (dmarc_org_domain_psl(c->psl, c->from, org, sizeof(org)) == 0)
		set_org(c, org);
	else
		copy_name(org, c->from);
	if (s->status == DNS_OK && s->ndmarc > 1) {
		reason(c, "%d DMARC records at _dmarc.%s", s->ndmarc, s->dom);
		finish(c, DMARC_RESULT_NONE);
		return ST_STOP;
	}
	if (invalid_single(c, s))
		return ST_STOP;
	if (slot_has_record(s)) {
		set_policy_domain(c, s);
		*is_author_out = 1;
		return ST_DONE;
	}
	if (strcmp(org, c->from) == 0) {
		reason(c, "no DMARC record for %s", c->from);
		finish(c, DMARC_RESULT_NONE);
		return ST_STOP;
	}
	enum lk r = lookup(c, org, DNS_T_TXT, &s);
	if (r == LK_PENDING)
		return ST_PENDING;
	if (r == LK_NOBUDGET || slot_temp(s)) {
		reason(c, "DNS %s for _dmarc.%s", s ? dns_status_name(s->status) : "limit", org);
		finish(c, DMARC_RESULT_TEMPERROR);
		return ST_STOP;
	}
	if (s->status == DNS_OK && s->ndmarc > 1) {
		reason(c, "%d DMARC records at _dmarc.%s", s->ndmarc, s->dom);
		finish(c, DMARC_RESULT_NONE);
		return ST_STOP;
	}
	if (invalid_single(c, s))
		return ST_STOP;
	if (!slot_has_record(s)) {
		reason(c, "no DMARC record for %s or %s", c->from, org);
		finish(c, DMARC_RESULT_NONE);
		return ST_STOP;
	}
	set_policy_domain(c, s);
	return ST_DONE;
}

/* ---- alignment ---- */

enum al { AL_NO, AL_YES, AL_PENDING, AL_UNKNOWN };

/* The Organizational Domain of dom by tree walk: AL_YES with org_out filled. */
static enum al org_bis(struct dmarc_check *c, const char *dom, char *org_out)
{
	struct walk w;

	if (strcmp(dom, c->from) == 0 && c->out.org_domain) {
		strcpy(org_out, c->out.org_domain);
		return AL_YES;
	}
	walk(c, dom, &w);
	switch (w.st) {
	case W_PENDING:
		return AL_PENDING;
	case W_DONE:
		strcpy(org_out, w.org);
		if (strcmp(dom, c->from) == 0)
			set_org(c, w.org);
		return AL_YES;
	default:
		return AL_UNKNOWN;
	}
}

static enum al aligned(struct dmarc_check *c, const char *auth, int strict)
{
	char oa[NAME_BUF], of[NAME_BUF];
	enum al r;

	if (strcmp(auth, c->from) == 0)
		return AL_YES;
	if (strict || !same_tld(auth, c->from))
		return AL_NO;
	if (c->mode == DMARC_MODE_RFC7489)
		return dmarc_aligned_psl(c->psl, c->from, auth, 0) ? AL_YES : AL_NO;
	r = org_bis(c, c->from, of);
	if (r != AL_YES)
		return r;
	/* org(auth) is auth or one of its parents: it can only equal org(from)
	 * if auth is at or under org(from); no need to walk otherwise */
	size_t la = strlen(auth), lo = strlen(of);
	if (!(la == lo ? strcmp(auth, of) == 0
	      : la > lo && auth[la - lo - 1] == '.' && strcmp(auth + la - lo, of) == 0))
		return AL_NO;
	r = org_bis(c, auth, oa);
	if (r != AL_YES)
		return r;
	return strcmp(oa, of) == 0 ? AL_YES : AL_NO;
}

/*
 * Find the first aligned pass among a[0..n): identical names first (no
 * DNS), then the others in order. Returns AL_YES (*idx_out), AL_NO,
 * AL_PENDING or AL_UNKNOWN (some could not be decided, none aligned).
 */
static enum al align_kind(struct dmarc_check *c, struct dm_auth *a, size_t n, int strict,
			  size_t *idx_out)
{
	int unknown = 0;

	for (size_t i = 0; i < n; i++)
		if (a[i].pass && strcmp(a[i].norm, c->from) == 0) {
			*idx_out = i;
			return AL_YES;
		}
	for (size_t i = 0; i < n; i++) {
		if (!a[i].pass)
			continue;
		enum al r = aligned(c, a[i].norm, strict);
		if (r == AL_YES) {
			*idx_out = i;
			return AL_YES;
		}
		if (r == AL_PENDING)
			return AL_PENDING;
		if (r == AL_UNKNOWN)
			unknown = 1;
	}
	return unknown ? AL_UNKNOWN : AL_NO;
}

/* ---- policy and disposition ---- */

static enum dmarc_policy milder(enum dmarc_policy p)
{
	return p == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
}

static enum dmarc_disposition disp_of(enum dmarc_policy p)
{
	return p == DMARC_POLICY_REJECT ? DMARC_DISP_REJECT
	     : p == DMARC_POLICY_QUARANTINE ? DMARC_DISP_QUARANTINE : DMARC_DISP_NONE;
}

/*
 * The existence test of 9989 3.2.11 / 9.4 for np=: 1 exists, 0 A, AAAA and
 * MX all NXDOMAIN, -1 pending, -2 could not tell (temporary failures).
 */
static int from_exists(struct dmarc_check *c)
{
	static const enum dns_type types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX };
	const struct dm_slot *s[3];
	int pending = 0, nx = 0;

	for (int i = 0; i < 3; i++) {
		enum lk r = lookup(c, c->from, types[i], &s[i]);
		if (r == LK_PENDING)
			pending = 1;
		else if (r == LK_NOBUDGET)
			s[i] = NULL;
		else if (s[i]->status == DNS_OK || s[i]->status == DNS_NODATA)
			return 1;
		else if (s[i]->status == DNS_NXDOMAIN)
			nx++;
	}
	if (pending)
		return -1;
	return nx == 3 ? 0 : -2;
}

/*
 * The policy for the Author Domain (9989 4.10.1; 7489 6.6.3 step 3 and
 * 6.3 sp). Returns ST_PENDING while the existence test runs.
 */
static enum step pick_policy(struct dmarc_check *c, int is_author, int failed)
{
	const struct dm_slot *ps = c->pol;
	const struct dmarc_record *r = &ps->rec;

	/* the p=none fallback (9989 4.10.1, 7489 6.6.3 step 6): the record as
	 * if it said p=none; valid sp= and np= still count, invalid ones are
	 * absent (the parser left them UNSET) */
	enum dmarc_policy p = ps->usable == 2 ? DMARC_POLICY_NONE : r->p;
	enum dmarc_applied p_tag = ps->usable == 2 ? DMARC_APPLIED_FALLBACK : DMARC_APPLIED_P;
	enum dmarc_policy np = c->mode == DMARC_MODE_DMARCBIS ? r->np : DMARC_POLICY_UNSET;

	c->out.applied = p_tag;
	c->out.policy = p;
	if (is_author)
		return ST_DONE;
	if (r->sp) {
		c->out.applied = DMARC_APPLIED_SP;
		c->out.policy = r->sp;
	}
	if (!np || np == c->out.policy || !failed)
		return ST_DONE;
	int e = from_exists(c);
	if (e == -1)
		return ST_PENDING;
	if (e == -2) {
		reason(c, "DMARC fail; existence test of %s (np=) failed temporarily", c->from);
		finish(c, DMARC_RESULT_TEMPERROR);
		return ST_STOP;
	}
	c->out.from_exists = e;
	if (e == 0) {
		c->out.applied = DMARC_APPLIED_NP;
		c->out.policy = np;
	}
	return ST_DONE;
}

static void disposition(struct dmarc_check *c)
{
	const struct dmarc_record *r = c->out.record;
	enum dmarc_policy p = c->out.policy;

	if (c->out.result != DMARC_RESULT_FAIL || p <= DMARC_POLICY_NONE)
		return;
	if (c->mode == DMARC_MODE_DMARCBIS && r->t == 'y') {
		p = milder(p);
		c->out.override = DMARC_OVERRIDE_TESTING;
	} else if (c->mode == DMARC_MODE_RFC7489 && c->pct_roll >= r->pct) {
		p = milder(p);
		c->out.override = DMARC_OVERRIDE_SAMPLED_OUT;
	}
	c->out.disposition = disp_of(p);
}

/* ---- the driver ---- */

static void outcome_reset(struct dmarc_check *c)
{
	memset(&c->out, 0, sizeof(c->out));
	c->out.from_domain = c->from_ok ? c->from : NULL;
	c->out.from_exists = -1;
	c->out.spf_mode = 'r';
	c->out.dkim_mode = 'r';
	c->out.discovery = c->mode == DMARC_MODE_RFC7489 ? DMARC_DISCOVERY_PSL
							 : DMARC_DISCOVERY_TREEWALK;
	c->reason[0] = 0;
	c->budget_hit = 0;
	c->pol = NULL;
}

static void describe(struct dmarc_check *c, int spf_unknown, int dkim_unknown)
{
	const struct dmarc_outcome *o = &c->out;
	const char *via = o->dkim_aligned ? "dkim" : o->spf_aligned ? "spf" : NULL;

	if (o->result == DMARC_RESULT_PASS) {
		reason(c, "aligned %s pass (%s) for %s; policy %s=%s at %s", via,
		       o->dkim_aligned ? o->dkim_domain : o->spf_domain, c->from,
		       dmarc_applied_name(o->applied), dmarc_policy_name(o->policy),
		       o->policy_domain);
	} else if (o->result == DMARC_RESULT_TEMPERROR) {
		reason(c, "no aligned pass for %s; the Organizational Domain of a passing %s%s%s "
		       "identifier could not be found (DNS failure or look-up limit)", c->from,
		       spf_unknown ? "spf" : "", spf_unknown && dkim_unknown ? "/" : "",
		       dkim_unknown ? "dkim" : "");
	} else {
		reason(c, "no aligned spf or dkim pass for %s; policy %s=%s at %s%s%s", c->from,
		       dmarc_applied_name(o->applied), dmarc_policy_name(o->policy),
		       o->policy_domain,
		       o->override == DMARC_OVERRIDE_TESTING ? "; t=y: one level milder"
		       : o->override == DMARC_OVERRIDE_SAMPLED_OUT ? "; sampled out by pct" : "",
		       o->applied == DMARC_APPLIED_NP ? "; domain does not exist" : "");
	}
}

/* One run of the whole algorithm over the answers so far. */
static void evaluate(struct dmarc_check *c)
{
	int is_author = 0;
	size_t si = 0, di = 0;

	outcome_reset(c);
	if (!c->from_ok) {
		reason(c, "Author Domain is not a usable domain name");
		finish(c, DMARC_RESULT_PERMERROR);
		return;
	}
	enum step st = c->mode == DMARC_MODE_RFC7489 ? discover_7489(c, &is_author)
						     : discover_bis(c, &is_author);
	if (st != ST_DONE)
		return;
	const struct dmarc_record *r = c->out.record;
	c->out.spf_mode = r->aspf;
	c->out.dkim_mode = r->adkim;

	enum al sa = align_kind(c, c->spf, c->nspf, r->aspf == 's', &si);
	if (sa == AL_PENDING)
		return;
	enum al da = align_kind(c, c->dkim, c->ndkim, r->adkim == 's', &di);
	if (da == AL_PENDING)
		return;
	if (sa == AL_YES) {
		c->out.spf_aligned = 1;
		c->out.spf_domain = c->spf[si].norm;
	}
	if (da == AL_YES) {
		c->out.dkim_aligned = 1;
		c->out.dkim_domain = c->dkim[di].norm;
		c->out.dkim_selector = c->dkim[di].selector;
	}
	enum dmarc_result res = sa == AL_YES || da == AL_YES ? DMARC_RESULT_PASS
			      : sa == AL_UNKNOWN || da == AL_UNKNOWN ? DMARC_RESULT_TEMPERROR
			      : DMARC_RESULT_FAIL;
	c->out.result = res;
	st = pick_policy(c, is_author, res == DMARC_RESULT_FAIL);
	if (st == ST_PENDING)
		return;
	if (st == ST_STOP)
		return;
	disposition(c);
	describe(c, sa == AL_UNKNOWN, da == AL_UNKNOWN);
	finish(c, res);
}

int dmarc_check_next(struct dmarc_check *c, struct dmarc_query *q_out)
{
	for (int pass = 0; pass < 2; pass++) {
		if (c->done)
			return DMARC_DONE;
		for (size_t i = 0; i < c->nslots; i++) {
			struct dm_slot *s = &c->slot[i];
			if (s->st != S_UNSENT)
				continue;
			s->st = S_SENT;
			s->id = c->next_id++;
			q_out->id = s->id;
			q_out->type = s->type;
			slot_qname(s, q_out->name, sizeof(q_out->name));
			c->out.dns_queries = c->nasked;
			return DMARC_NEED_DNS;
		}
		if (!c->dirty)
			break;
		c->dirty = 0;
		evaluate(c);
		c->out.dns_queries = c->nasked;
	}
	if (c->done)
		return DMARC_DONE;
	for (size_t i = 0; i < c->nslots; i++)
		if (c->slot[i].st == S_SENT)
			return DMARC_WAIT;
	panic("dmarc: check blocked without a question");
}

const struct dmarc_outcome *dmarc_check_outcome(const struct dmarc_check *c)
{
	if (!c->done)
		panic("dmarc_check_outcome before DMARC_DONE");
	return &c->out;
}

enum dmarc_result dmarc_check_result(const struct dmarc_check *c)
{
	return dmarc_check_outcome(c)->result;
}

enum dmarc_disposition dmarc_check_disposition(const struct dmarc_check *c)
{
	return dmarc_check_outcome(c)->disposition;
}
