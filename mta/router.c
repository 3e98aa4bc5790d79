#include "mta/router.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct domlist {
	char **names;		/* lowercased literal domains */
	size_t nnames;
	struct table **tables;
	size_t ntables;
};

struct router {
	struct domlist vmbox, valias, relay, mydest;
	struct table **vmaps, **amaps;
	size_t nvmaps, namaps;
	char *base;
	long long recursion_limit, expansion_limit;
};

static int is_table(const char *s)
{
	const char *c = strchr(s, ':');
	if (!c || c == s)
		return 0;
	for (const char *p = s; p < c; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return 0;
	return 1;
}

static int domlist_init(struct domlist *d, const struct conf *c, const char *param,
			struct table_set *ts, char **err_out)
{
	size_t n;
	const char *const *items = conf_list(c, param, &n);
	d->names = xcalloc(n + 1, sizeof *d->names);
	d->tables = xcalloc(n + 1, sizeof *d->tables);
	for (size_t i = 0; i < n; i++) {
		if (is_table(items[i])) {
			struct table *t = table_set_get(ts, items[i], err_out);
			if (!t)
				return -1;
			d->tables[d->ntables++] = t;
		} else {
			char *s = xstrdup(items[i]);
			ascii_lower(s);
			d->names[d->nnames++] = s;
		}
	}
	return 0;
}

static void domlist_free(struct domlist *d)
{
	for (size_t i = 0; i < d->nnames; i++)
		free(d->names[i]);
	free(d->names);
	free(d->tables);
	memset(d, 0, sizeof *d);
}

static int domlist_match(struct domlist *d, const char *dom)
{
	for (size_t i = 0; i < d->nnames; i++)
		if (strcmp(d->names[i], dom) == 0)
			return 1;
	for (size_t i = 0; i < d->ntables; i++) {
		const char *v;
		if (table_lookup(d->tables[i], dom, &v) == 1)
			return 1;
	}
	return 0;
}

static int maps_init(struct table ***out, size_t *nout, const struct conf *c, const char *param,
		     struct table_set *ts, char **err_out)
{
	size_t n;
	const char *const *items = conf_list(c, param, &n);
	*out = xcalloc(n + 1, sizeof **out);
	*nout = 0;
	for (size_t i = 0; i < n; i++) {
		struct table *t = table_set_get(ts, items[i], err_out);
		if (!t)
			return -1;
		(*out)[(*nout)++] = t;
	}
	return 0;
}

struct router *router_new(const struct conf *c, struct table_set *ts, char **err_out)
{
	struct router *r = xcalloc(1, sizeof *r);
	if (domlist_init(&r->vmbox, c, "virtual_mailbox_domains", ts, err_out) < 0 ||
	    domlist_init(&r->valias, c, "virtual_alias_domains", ts, err_out) < 0 ||
	    domlist_init(&r->relay, c, "relay_domains", ts, err_out) < 0 ||
	    domlist_init(&r->mydest, c, "mydestination", ts, err_out) < 0 ||
	    maps_init(&r->vmaps, &r->nvmaps, c, "virtual_mailbox_maps", ts, err_out) < 0 ||
	    maps_init(&r->amaps, &r->namaps, c, "virtual_alias_maps", ts, err_out) < 0) {
		router_free(&r);
		return NULL;
	}
	const char *base = conf_str(c, "virtual_mailbox_base");
	char cwd[4096];
	/* a relative base is taken from the directory sluiced was started in */
	if (base[0] != '/' && getcwd(cwd, sizeof cwd))
		r->base = xasprintf("%s/%s", cwd, base);
	else
		r->base = xstrdup(base);
	r->recursion_limit = conf_int(c, "virtual_alias_recursion_limit");
	r->expansion_limit = conf_int(c, "virtual_alias_expansion_limit");
	return r;
}

void router_free(struct router **rp)
{
	struct router *r = *rp;
	if (!r)
		return;
	domlist_free(&r->vmbox);
	domlist_free(&r->valias);
	domlist_free(&r->relay);
	domlist_free(&r->mydest);
	free(r->vmaps);
	free(r->amaps);
	free(r->base);
	free(r);
	*rp = NULL;
}

/* lowercased domain of addr without a trailing dot; "" if none */
static char *addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');
	char *d = xstrdup(at ? at + 1 : "");
	size_t l = strlen(d);
	if (l && d[l - 1] == '.')
		d[l - 1] = 0;
	ascii_lower(d);
	return d;
}

enum router_class router_domain(struct router *r, const char *domain)
{
	char *d = xstrdup(domain);
	size_t l = strlen(d);
	if (l && d[l - 1] == '.')
		d[l - 1] = 0;
	ascii_lower(d);
	enum router_class k = ROUTER_NONE;
	if (*d) {
		if (domlist_match(&r->vmbox, d))
			k = ROUTER_VIRTUAL_MAILBOX;
		else if (domlist_match(&r->valias, d))
			k = ROUTER_VIRTUAL_ALIAS;
		else if (domlist_match(&r->mydest, d))
			k = ROUTER_MYDESTINATION;
		else if (domlist_match(&r->relay, d))
			k = ROUTER_RELAY;
	}
	free(d);
	return k;
}

static int maps_lookup(struct table **maps, size_t n, const char *addr, int flags, const char **v)
{
	for (size_t i = 0; i < n; i++)
		if (table_lookup_addr(maps[i], addr, flags, v) == 1)
			return 1;
	return 0;
}

struct expand {
	char **out;
	size_t n, cap;
	size_t steps;
};

static void expand_add(struct expand *e, const char *a)
{
	for (size_t i = 0; i < e->n; i++)
		if (ascii_strcasecmp(e->out[i], a) == 0)
			return;	/* duplicate elimination, as Postfix does */
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 4;
		e->out = xrealloc(e->out, e->cap * sizeof *e->out);
	}
	e->out[e->n++] = xstrdup(a);
}

/* returns 0 ok, -1 limit exceeded */
static int expand_one(struct router *r, struct expand *e, const char *addr, long long depth)
{
	const char *v;
	if (++e->steps > (size_t)r->expansion_limit * 4 || depth > r->recursion_limit)
		return -1;
	if (!maps_lookup(r->amaps, r->namaps, addr, 2 /* TABLE_ADDR_VIRTUAL */, &v)) {
		expand_add(e, addr);
		return 0;
	}
	size_t n;
	char **items = conf_split_list(v, &n);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (ascii_strcasecmp(items[i], addr) == 0)
			expand_add(e, items[i]);	/* maps to itself: stop here */
		else
			rc = expand_one(r, e, items[i], depth + 1);
		if (e->n > (size_t)r->expansion_limit)
			rc = -1;
	}
	conf_list_free(items, n);
	return rc;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int router_expand(struct router *r, const char *rcpt, char ***final_out, size_t *n_out, char **why_out)
{
	struct expand e = { 0 };
	char *dom = addr_domain(rcpt);
	enum router_class k = router_domain(r, dom);
	free(dom);
	if (k == ROUTER_NONE || k == ROUTER_RELAY) {
		*why_out = xstrdup("not a local domain");
		return 2;
	}
	if (expand_one(r, &e, rcpt, 0) < 0) {
		strv_free(e.out, e.n);
		*why_out = xstrdup("virtual alias table recursion or expansion limit exceeded");
		return -1;
	}
	for (size_t i = 0; i < e.n; i++) {
		char *d = addr_domain(e.out[i]);
		enum router_class fk = router_domain(r, d);
		free(d);
		const char *v;
		int ok = 1;
		if (fk == ROUTER_VIRTUAL_ALIAS)
			ok = 0;	/* an alias domain address that no alias rewrote */
		else if (fk == ROUTER_VIRTUAL_MAILBOX || fk == ROUTER_MYDESTINATION)
			ok = maps_lookup(r->vmaps, r->nvmaps, e.out[i], 2, &v);
		if (!ok) {
			*why_out = xstrdup(fk == ROUTER_VIRTUAL_ALIAS && e.n == 1 &&
						   ascii_strcasecmp(e.out[0], rcpt) == 0
					   ? "User unknown in virtual alias table"
					   : "User unknown in virtual mailbox table");
			strv_free(e.out, e.n);
			return 1;
		}
	}
	*final_out = e.out;
	*n_out = e.n;
	return 0;
}

enum router_route_kind router_route(struct router *r, const char *rcpt, char **path_out)
{
	char *dom = addr_domain(rcpt);
	enum router_class k = router_domain(r, dom);
	free(dom);
	const char *v;
	if (k != ROUTER_VIRTUAL_MAILBOX && k != ROUTER_MYDESTINATION) {
		/*
		 * XXX: the smtp and lmtp transports arrive with the outbound
		 * delivery issue; until then relayed mail waits in deferred/
		 * (like Postfix's defer_transports) and is not lost.
		 */
		*path_out = xstrdup("4.3.5 outbound smtp transport is not available yet; message kept in the queue");
		return ROUTER_ROUTE_DEFER;
	}
	if (!maps_lookup(r->vmaps, r->nvmaps, rcpt, 2, &v)) {
		*path_out = xstrdup("5.1.1 user unknown in virtual mailbox table");
		return ROUTER_ROUTE_FAIL;
	}
	if (!*v || strstr(v, "..") || v[0] == '/' || v[strlen(v) - 1] != '/') {
		*path_out = xasprintf("5.3.5 unsupported mailbox path \"%s\" (must be relative and end in /)", v);
		return ROUTER_ROUTE_FAIL;
	}
	*path_out = xasprintf("%s/%s", r->base, v);
	return ROUTER_ROUTE_MAILDIR;
}
