/*
 * spam_scan: rules against one message. See spam_scan.h.
 */
#include "milters/spam/spam_scan.h"
#include "milters/spam/spam_meta.h"
#include "milters/spam/spam_net.h"
#include "lib/util.h"

#include <gmime/gmime.h>
#include <hs/hs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_MAX_ELEMENTS 20000	/* body paragraphs / rawbody lines looked at */
#define SCAN_MAX_MULTIPLE 1000	/* tflags multiple without maxhits */
/*
 * PCRE2 limits per match, so no regex (SpamAssassin's included) can spend
 * unbounded CPU on a crafted message: a match that hits them counts as no
 * match. The JIT stack may grow to 1 MiB.
 */
#define SCAN_MATCH_LIMIT 500000
#define SCAN_DEPTH_LIMIT 50000
#define SCAN_JIT_STACK_MAX (1024 * 1024)

/* ---- per-thread Vectorscan scratch ---- */

/* One scratch per thread, grown for every database of the last rule set seen. */
struct scratch {
	hs_scratch_t *s;
	unsigned gen;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct scratch *sc = p;
	hs_free_scratch(sc->s);
	free(sc);
}

static void scratch_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

static hs_scratch_t *scratch_for(const struct spam_rules *rs)
{
	pthread_once(&scratch_once, scratch_init);
	struct scratch *sc = pthread_getspecific(scratch_key);
	if (sc == NULL) {
		sc = xcalloc(1, sizeof(*sc));
		pthread_setspecific(scratch_key, sc);
	}
	unsigned gen = spam_rules_generation(rs);
	if (sc->gen != gen) {
		static const enum spam_rule_kind kinds[] = { SPAM_RULE_BODY, SPAM_RULE_RAWBODY, SPAM_RULE_URI };
		for (int i = 0; i < 3; i++) {
			const hs_database_t *db = spam_rules_hs_db(rs, kinds[i]);
			if (db && hs_alloc_scratch(db, &sc->s) != HS_SUCCESS)
				panic("spam_scan: hs_alloc_scratch failed");
			db = spam_rules_pf_db(rs, kinds[i]);
			if (db && hs_alloc_scratch(db, &sc->s) != HS_SUCCESS)
				panic("spam_scan: hs_alloc_scratch failed");
		}
		sc->gen = gen;
	}
	return sc->s;
}

/* ---- header views ---- */

/* addr_of - the address of a From-like value: inside <>, else the first word with '@'. */
static char *addr_of(const char *v)
{
	const char *lt = strrchr(v, '<');
	if (lt) {
		const char *gt = strchr(lt, '>');
		if (gt)
			return xstrndup(lt + 1, (size_t)(gt - lt - 1));
	}
	for (const char *p = v; *p;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == 0)
			break;
		size_t n = strcspn(p, " \t,()");
		if (n && memchr(p, '@', n))
			return xstrndup(p, n);
		p += n ? n : 1;
	}
	char *t = xstrdup(v);
	size_t l = strlen(t);
	while (l && (t[l - 1] == ' ' || t[l - 1] == '\n'))
		t[--l] = 0;
	return t;
}

/* name_of - display name: text before '<' without quotes, or a (comment). */
static char *name_of(const char *v)
{
	const char *lt = strchr(v, '<');
	if (lt) {
		const char *s = v;
		while (*s == ' ' || *s == '\t' || *s == '"')
			s++;
		const char *e = lt;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '"'))
			e--;
		return xstrndup(s, (size_t)(e - s));
	}
	const char *lp = strchr(v, '(');
	if (lp) {
		const char *rp = strchr(lp, ')');
		if (rp)
			return xstrndup(lp + 1, (size_t)(rp - lp - 1));
	}
	return xstrdup("");
}

static void add_instance(struct sbuf *b, const char *v, unsigned mods)
{
	char *x = NULL;
	if (mods & SPAM_HDR_ADDR || mods & SPAM_HDR_HOST || mods & SPAM_HDR_DOMAIN) {
		x = addr_of(v);
		if (mods & (SPAM_HDR_HOST | SPAM_HDR_DOMAIN)) {
			char *at = strrchr(x, '@');
			char *h = xstrdup(at ? at + 1 : "");
			ascii_lower(h);
			free(x);
			x = h;
			if (mods & SPAM_HDR_DOMAIN) {
				char *d = spam_url_registered_domain(x);
				if (d) {
					free(x);
					x = d;
				}
			}
		}
	} else if (mods & SPAM_HDR_NAME) {
		x = name_of(v);
	}
	sbuf_adds(b, x ? x : v);
	sbuf_addc(b, '\n');
	free(x);
}

static void relay_text(struct sbuf *b, const char *ip, const char *rdns, const char *helo,
		       const char *by, int intl, const char *auth)
{
	if (b->len)
		sbuf_addc(b, ' ');
	sbuf_printf(b, "[ ip=%s rdns=%s helo=%s by=%s ident= envfrom= intl=%d id= auth=%s msa=0 ]",
		    ip ? ip : "", rdns ? rdns : "", helo ? helo : "", by ? by : "", intl,
		    auth ? auth : "");
}

/* relays - SpamAssassin's X-Spam-Relays-* text: which = 0 trusted, 1 untrusted. */
static char *relays(const struct spam_mime *m, const struct spam_env *env, int which)
{
	struct sbuf b;
	sbuf_init(&b);
	int trusted = 1;
	size_t first = 0;
	if (env && env->client_ip && *env->client_ip) {
		const char *rdns = env->client_name && strcmp(env->client_name, "unknown") ?
					   env->client_name : "";
		trusted = spam_net_match(env->trusted, env->client_ip);
		if (trusted == !which)
			relay_text(&b, env->client_ip, rdns, env->helo, "", trusted,
				   trusted ? env->auth : NULL);
		/* our MTA's own Received line for this connection is not a second hop */
		if (m->nrelays && m->relays[0].ip && !strcmp(m->relays[0].ip, env->client_ip))
			first = 1;
	}
	for (size_t i = first; i < m->nrelays; i++) {
		const struct spam_relay *r = &m->relays[i];
		if (r->ip == NULL)
			continue;	/* local hops (no address) carry no evidence */
		if (trusted)
			trusted = spam_net_match(env ? env->trusted : NULL, r->ip);
		if (trusted == !which)
			relay_text(&b, r->ip, r->rdns, r->helo, r->by, trusted, NULL);
	}
	return sbuf_steal(&b);
}

const char *spam_scan_first_untrusted(const struct spam_mime *m, const struct spam_env *env)
{
	size_t first = 0;
	if (env && env->client_ip && *env->client_ip) {
		if (!spam_net_match(env->trusted, env->client_ip))
			return env->client_ip;
		if (m->nrelays && m->relays[0].ip && !strcmp(m->relays[0].ip, env->client_ip))
			first = 1;
	}
	for (size_t i = first; i < m->nrelays; i++) {
		const char *ip = m->relays[i].ip;
		if (ip && !spam_net_match(env ? env->trusted : NULL, ip))
			return ip;
	}
	return NULL;
}

static char *mime_facts(const struct spam_mime *m)
{
	return xasprintf("parts=%zu text=%u html=%u attachments=%u images=%u forms=%u scripts=%u "
			 "iframes=%u links=%u html_text=%zu urls=%zu truncated=%d many_parts=%d "
			 "deep=%d bad_charset=%d bad_header=%d no_mime=%d size=%zu",
			 m->nparts, m->text_parts, m->html_parts, m->attachments, m->html.images,
			 m->html.forms, m->html.scripts, m->html.iframes, m->html.links,
			 m->html.text_bytes, m->nurls, !!(m->flags & SPAM_MIME_TRUNCATED),
			 !!(m->flags & SPAM_MIME_TOO_MANY_PARTS), !!(m->flags & SPAM_MIME_TOO_DEEP),
			 !!(m->flags & SPAM_MIME_BAD_CHARSET), !!(m->flags & SPAM_MIME_BAD_HEADER),
			 !!(m->flags & SPAM_MIME_NO_BODY), m->size);
}

static char *date_facts(const struct spam_mime *m, const struct spam_env *env)
{
	const struct spam_hdr *h = spam_mime_header(m, "Date", 0);
	if (h == NULL)
		return NULL;
	GDateTime *dt = g_mime_utils_header_decode_date(h->raw);
	if (dt == NULL)
		return xstrdup("unparseable");
	/* like SpamAssassin, against the time the top Received line records, else now */
	time_t now = env && env->now ? env->now : time(NULL);
	const struct spam_hdr *rcvd = spam_mime_header(m, "Received", 0);
	const char *semi = rcvd ? strrchr(rcvd->raw, ';') : NULL;
	if (semi && !(env && env->now)) {
		GDateTime *rt = g_mime_utils_header_decode_date(semi + 1);
		if (rt) {
			now = (time_t)g_date_time_to_unix(rt);
			g_date_time_unref(rt);
		}
	}
	long long skew_h = ((long long)g_date_time_to_unix(dt) - (long long)now) / 3600;
	g_date_time_unref(dt);
	return xasprintf("skew_h=%lld", skew_h);
}

char *spam_scan_header_value(const struct spam_mime *m, const struct spam_env *env,
			     const char *field, unsigned mods)
{
	int raw = (mods & SPAM_HDR_RAW) != 0;
	struct sbuf b;
	sbuf_init(&b);
	if (!strcmp(field, "ALL")) {
		for (size_t i = 0; i < m->nhdrs; i++)
			sbuf_printf(&b, "%s: %s\n", m->hdrs[i].name,
				    raw ? m->hdrs[i].raw : m->hdrs[i].value);
		return sbuf_steal(&b);
	}
	if (!strcmp(field, "X-Spam-Relays-Trusted") || !strcmp(field, "X-Spam-Relays-Internal"))
		return relays(m, env, 0);
	if (!strcmp(field, "X-Spam-Relays-Untrusted") || !strcmp(field, "X-Spam-Relays-External"))
		return relays(m, env, 1);
	if (!strcmp(field, "X-Sluice-Mime"))
		return mime_facts(m);
	if (!strcmp(field, "X-Sluice-Date"))
		return date_facts(m, env);
	if (!strcmp(field, "X-Sluice-Attachments")) {
		for (size_t i = 0; i < m->nparts; i++)
			if (m->parts[i].attachment)
				sbuf_printf(&b, "%s %s\n", m->parts[i].type,
					    m->parts[i].filename ? m->parts[i].filename : "");
		return b.len ? sbuf_steal(&b) : (sbuf_free(&b), NULL);
	}
	if (!strcmp(field, "EnvelopeFrom")) {
		if (env && env->env_from) {
			add_instance(&b, env->env_from, mods);
			return sbuf_steal(&b);
		}
		field = "Return-Path";
	}
	static const char *const tocc[] = { "To", "Cc", NULL };
	static const char *const msgid[] = { "Message-Id", "Resent-Message-Id", "X-Message-Id", NULL };
	const char *one[] = { field, NULL };
	const char *const *names = !strcmp(field, "ToCc") ? tocc :
				   !strcmp(field, "MESSAGEID") ? msgid : one;
	int found = 0;
	size_t n_inst = 0;
	for (int k = 0; names[k]; k++)
		while (spam_mime_header(m, names[k], n_inst))
			n_inst++, found = 1;
	if (!found) {
		sbuf_free(&b);
		return NULL;
	}
	for (int k = 0; names[k]; k++) {
		size_t cnt = 0;
		while (spam_mime_header(m, names[k], cnt))
			cnt++;
		for (size_t i = 0; i < cnt; i++) {
			if ((mods & SPAM_HDR_FIRST) && (k > 0 || i > 0))
				continue;
			if ((mods & SPAM_HDR_LAST) && i + 1 != cnt)
				continue;
			const struct spam_hdr *h = spam_mime_header(m, names[k], i);
			add_instance(&b, raw ? h->raw : h->value, mods);
		}
	}
	return sbuf_steal(&b);
}

/* ---- matching ---- */

struct elems {
	const char **p;
	size_t *len;
	size_t n, cap;
};

static void el_add(struct elems *e, const char *p, size_t len)
{
	if (e->n >= SCAN_MAX_ELEMENTS)
		return;
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 64;
		e->p = xrealloc(e->p, e->cap * sizeof(*e->p));
		e->len = xrealloc(e->len, e->cap * sizeof(*e->len));
	}
	e->p[e->n] = p;
	e->len[e->n] = len;
	e->n++;
}

static void el_free(struct elems *e)
{
	free(e->p);
	free(e->len);
}

/* paragraphs - SpamAssassin's body view: paragraphs, inner newlines as spaces (in place). */
static void paragraphs(char *text, struct elems *e)
{
	char *p = text;
	while (*p) {
		while (*p == '\n')
			p++;
		if (*p == 0)
			break;
		char *start = p;
		char *end = strstr(p, "\n\n");
		if (end == NULL)
			end = p + strlen(p);
		for (char *q = start; q < end; q++)
			if (*q == '\n')
				*q = ' ';
		el_add(e, start, (size_t)(end - start));
		p = end;
	}
}

static void lines(const char *text, struct elems *e)
{
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		el_add(e, p, l);
		p += nl ? l + 1 : l;
	}
}

static int on_hs_match(unsigned id, unsigned long long from, unsigned long long to,
		       unsigned flags, void *ctx)
{
	(void)from;
	(void)to;
	(void)flags;
	double *values = ctx;
	values[id] = 1;
	return 0;
}

static pcre2_match_context *mctx_new(pcre2_jit_stack **jit_out)
{
	pcre2_match_context *mc = pcre2_match_context_create(NULL);
	if (mc == NULL)
		panic("spam_scan: pcre2_match_context_create failed");
	pcre2_set_match_limit(mc, SCAN_MATCH_LIMIT);
	pcre2_set_depth_limit(mc, SCAN_DEPTH_LIMIT);
	*jit_out = pcre2_jit_stack_create(32 * 1024, SCAN_JIT_STACK_MAX, NULL);
	if (*jit_out)
		pcre2_jit_stack_assign(mc, NULL, *jit_out);
	return mc;
}

/* re_count - matches of re in s (1 at most unless multiple; capped). */
static double re_count(const struct spam_rule *r, pcre2_match_data *md, pcre2_match_context *mc,
		       const char *s, size_t len)
{
	unsigned max = r->tflags & SPAM_TF_MULTIPLE ? (r->maxhits ? r->maxhits : SCAN_MAX_MULTIPLE) : 1;
	unsigned n = 0;
	PCRE2_SIZE off = 0;
	while (n < max && off <= len) {
		int rc = pcre2_match(r->re, (PCRE2_SPTR)s, len, off, 0, md, mc);
		if (rc < 0)
			break;
		n++;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	return n;
}

static void run_kind(const struct spam_rules *rs, enum spam_rule_kind kind, const struct elems *e,
		     double *values, double *cand, pcre2_match_data *md, pcre2_match_context *mc)
{
	const hs_database_t *db = spam_rules_hs_db(rs, kind);
	if (db) {
		hs_scratch_t *s = scratch_for(rs);
		for (size_t i = 0; i < e->n; i++)
			hs_scan(db, e->p[i], (unsigned)e->len[i], 0, s, on_hs_match, values);
	}
	db = spam_rules_pf_db(rs, kind);
	if (db) {
		hs_scratch_t *s = scratch_for(rs);
		for (size_t i = 0; i < e->n; i++)
			hs_scan(db, e->p[i], (unsigned)e->len[i], 0, s, on_hs_match, cand);
	}
	size_t n;
	const size_t *idx = spam_rules_of_kind(rs, kind, &n);
	for (size_t k = 0; k < n; k++) {
		const struct spam_rule *r = spam_rules_get(rs, idx[k]);
		if (r->hs || !r->active || r->re == NULL || (r->pf && cand[idx[k]] == 0))
			continue;
		double total = 0;
		for (size_t i = 0; i < e->n; i++) {
			total += re_count(r, md, mc, e->p[i], e->len[i]);
			if (total && !(r->tflags & SPAM_TF_MULTIPLE))
				break;
		}
		values[idx[k]] = total;
	}
}

static int hit_cmp(const void *a, const void *b)
{
	return strcmp(((const struct spam_hit *)a)->name, ((const struct spam_hit *)b)->name);
}

static void push_hit(struct spam_result *r, const char *name, const char *describe, double score)
{
	if (r->nhits == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->hits = xrealloc(r->hits, r->cap * sizeof(*r->hits));
	}
	r->hits[r->nhits++] = (struct spam_hit){ name, describe, score };
	r->score += score;
}

void spam_result_add(struct spam_result *r, const char *name, double score, const char *describe)
{
	r->owned = xrealloc(r->owned, (r->nowned + 2) * sizeof(*r->owned));
	char *n = xstrdup(name);
	char *d = describe ? xstrdup(describe) : NULL;
	r->owned[r->nowned++] = n;
	r->owned[r->nowned++] = d;
	push_hit(r, n, d, score);
	qsort(r->hits, r->nhits, sizeof(*r->hits), hit_cmp);
}

void spam_scan(const struct spam_rules *rs, const struct spam_mime *m, const struct spam_env *env,
	       struct spam_result *out)
{
	memset(out, 0, sizeof(*out));
	size_t nrules = spam_rules_count(rs);
	double *values = xcalloc(nrules + 1, sizeof(double));
	double *cand = xcalloc(nrules + 1, sizeof(double));	/* prefilter said: may match */
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	pcre2_jit_stack *jit;
	pcre2_match_context *mc = mctx_new(&jit);

	/* header rules: each (field, modifiers) value is built once per message */
	size_t n;
	const size_t *idx = spam_rules_of_kind(rs, SPAM_RULE_HEADER, &n);
	struct hview {
		const char *field;
		unsigned mods;
		char *value;	/* NULL: no such header */
		size_t len;
	} *views = xcalloc(n + 1, sizeof(*views));
	size_t nviews = 0;
	for (size_t k = 0; k < n; k++) {
		const struct spam_rule *r = spam_rules_get(rs, idx[k]);
		if (!r->active)
			continue;
		struct hview *hv = NULL;
		for (size_t i = 0; i < nviews && hv == NULL; i++)
			if (views[i].mods == r->hdr_mods && !strcmp(views[i].field, r->field))
				hv = &views[i];
		if (hv == NULL) {
			hv = &views[nviews++];
			hv->field = r->field;
			hv->mods = r->hdr_mods;
			hv->value = spam_scan_header_value(m, env, r->field, r->hdr_mods);
			hv->len = hv->value ? strlen(hv->value) : 0;
		}
		if (r->exists) {
			values[idx[k]] = hv->value != NULL;
		} else if (r->re) {
			const char *s = hv->value ? hv->value : r->if_unset ? r->if_unset : "";
			size_t sl = hv->value ? hv->len : strlen(s);
			int hit = pcre2_match(r->re, (PCRE2_SPTR)s, sl, 0, 0, md, mc) >= 0;
			values[idx[k]] = hit != r->negate;
		}
	}
	for (size_t i = 0; i < nviews; i++)
		free(views[i].value);
	free(views);

	/* body: Subject, then paragraphs of the rendered text */
	char *text = xstrdup(m->text ? m->text : "");
	struct elems body = { 0 };
	const struct spam_hdr *subj = spam_mime_header(m, "Subject", 0);
	if (subj)
		el_add(&body, subj->value, strlen(subj->value));
	paragraphs(text, &body);
	run_kind(rs, SPAM_RULE_BODY, &body, values, cand, md, mc);
	el_free(&body);

	struct elems raw = { 0 };
	lines(m->rawtext ? m->rawtext : "", &raw);
	run_kind(rs, SPAM_RULE_RAWBODY, &raw, values, cand, md, mc);
	el_free(&raw);

	struct elems uris = { 0 };
	for (size_t i = 0; i < m->nurls; i++) {
		el_add(&uris, m->urls[i].url, strlen(m->urls[i].url));
		if (m->urls[i].raw && strcmp(m->urls[i].raw, m->urls[i].url))
			el_add(&uris, m->urls[i].raw, strlen(m->urls[i].raw));
	}
	run_kind(rs, SPAM_RULE_URI, &uris, values, cand, md, mc);
	el_free(&uris);

	struct elems full = { 0 };
	el_add(&full, m->scanned, m->scanned_len);
	run_kind(rs, SPAM_RULE_FULL, &full, values, cand, md, mc);
	el_free(&full);

	size_t nm;
	const size_t *order = spam_rules_meta_order(rs, &nm);
	for (size_t k = 0; k < nm; k++) {
		const struct spam_rule *r = spam_rules_get(rs, order[k]);
		values[order[k]] = spam_meta_eval(r->meta, values);
	}

	for (size_t i = 0; i < nrules; i++) {
		const struct spam_rule *r = spam_rules_get(rs, i);
		if (!r->active || !r->reported || values[i] == 0)
			continue;
		push_hit(out, r->name, r->describe, r->score);
	}
	if (out->nhits > 1)
		qsort(out->hits, out->nhits, sizeof(*out->hits), hit_cmp);
	pcre2_match_data_free(md);
	pcre2_match_context_free(mc);
	pcre2_jit_stack_free(jit);
	free(text);
	free(values);
	free(cand);
}

void spam_result_clear(struct spam_result *r)
{
	for (size_t i = 0; i < r->nowned; i++)
		free(r->owned[i]);
	free(r->owned);
	free(r->hits);
	memset(r, 0, sizeof(*r));
}
