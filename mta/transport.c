/*
 * transport: transport choice, MX look-up, host order. Contract in transport.h.
 */
#include "mta/transport.h"
#include "mta/queue.h"
#include "mta/router.h"
#include "conf/conf.h"
#include "conf/table.h"
#include "proto/dns.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#define TRANSPORT_MAX_ADDRS 10	/* addresses tried per delivery (Postfix: 5 x 2 sessions) */
/* connection reuse (Postfix smtp_connection_cache_*, smtp_connection_reuse_*) */
#define TRANSPORT_CACHE_IDLE_MS 2000	/* close a session idle this long */
#define TRANSPORT_CACHE_MAX 64		/* idle sessions kept at most (oldest closed first) */
#define TRANSPORT_REUSE_MAX 100		/* transactions per session */
#define TRANSPORT_REUSE_MS 300000	/* age of a session after which it is not reused */

/* ---- routing ---- */

struct transport_router {
	struct table **maps;
	size_t nmaps;
	char *virtual_transport, *relay_transport, *default_transport, *relayhost;
};

static int kind_of(const char *name, enum transport_kind *k)
{
	if (strcmp(name, "maildir") == 0 || strcmp(name, "virtual") == 0)
		*k = TRANSPORT_MAILDIR;
	else if (strcmp(name, "smtp") == 0 || strcmp(name, "relay") == 0)
		*k = TRANSPORT_SMTP;
	else if (strcmp(name, "lmtp") == 0)
		*k = TRANSPORT_LMTP;
	else if (strcmp(name, "error") == 0)
		*k = TRANSPORT_FAIL;
	else if (strcmp(name, "retry") == 0)
		*k = TRANSPORT_DEFER;
	else
		return -1;
	return 0;
}

static int check_spec(const char *param, const char *spec, char **err_out)
{
	char name[64];
	enum transport_kind k;
	snprintf(name, sizeof name, "%.*s", (int)strcspn(spec, ":"), spec);
	if (kind_of(name, &k) < 0) {
		*err_out = xasprintf("%s: unsupported transport \"%s\" (maildir, virtual, smtp, relay, lmtp, error, retry)",
				     param, name);
		return -1;
	}
	return 0;
}

struct transport_router *transport_router_new(const struct conf *c, struct table_set *ts,
					      char **err_out)
{
	struct transport_router *tr = xcalloc(1, sizeof *tr);
	size_t n;
	const char *const *items = conf_list(c, "transport_maps", &n);
	tr->maps = xcalloc(n + 1, sizeof *tr->maps);
	for (size_t i = 0; i < n; i++) {
		struct table *t = table_set_get(ts, items[i], err_out);
		if (!t) {
			transport_router_free(&tr);
			return NULL;
		}
		tr->maps[tr->nmaps++] = t;
	}
	tr->virtual_transport = xstrdup(conf_str(c, "virtual_transport"));
	tr->relay_transport = xstrdup(conf_str(c, "relay_transport"));
	tr->default_transport = xstrdup(conf_str(c, "default_transport"));
	tr->relayhost = xstrdup(conf_str(c, "relayhost"));
	if (check_spec("virtual_transport", tr->virtual_transport, err_out) < 0 ||
	    check_spec("relay_transport", tr->relay_transport, err_out) < 0 ||
	    check_spec("default_transport", tr->default_transport, err_out) < 0) {
		transport_router_free(&tr);
		return NULL;
	}
	return tr;
}

void transport_router_free(struct transport_router **trp)
{
	struct transport_router *tr = *trp;
	if (!tr)
		return;
	free(tr->maps);
	free(tr->virtual_transport);
	free(tr->relay_transport);
	free(tr->default_transport);
	free(tr->relayhost);
	free(tr);
	*trp = NULL;
}

/* transport_maps: full address, then domain and parent domains. Borrowed value or NULL. */
static const char *maps_find(struct transport_router *tr, const char *addr, const char *dom)
{
	for (size_t i = 0; i < tr->nmaps; i++) {
		const char *v;
		char *key = xstrdup(addr);
		ascii_lower(key);
		int hit = table_lookup(tr->maps[i], key, &v) == 1 ||
			  (*dom && table_lookup_domain(tr->maps[i], dom, &v) == 1);
		free(key);
		if (hit)
			return v;
	}
	return NULL;
}

enum transport_kind transport_route(struct transport_router *tr, struct router *r,
				    const char *rcpt, char **out)
{
	const char *at = strrchr(rcpt, '@');
	char *dom = xstrdup(at ? at + 1 : "");
	size_t l = strlen(dom);
	if (l && dom[l - 1] == '.')
		dom[--l] = 0;
	ascii_lower(dom);
	enum router_class cls = *dom ? router_domain(r, dom) : ROUTER_VIRTUAL_MAILBOX;
	const char *dflt = cls == ROUTER_NONE ? tr->default_transport
			   : cls == ROUTER_RELAY ? tr->relay_transport
						 : tr->virtual_transport;
	const char *spec = maps_find(tr, rcpt, dom);
	/* "transport:nexthop"; an empty part takes the class default */
	char name[64], *nexthop;
	const char *use = spec ? spec : dflt;
	size_t nl = strcspn(use, ":");
	if (spec && nl == 0)	/* ":nexthop" keeps the default transport */
		snprintf(name, sizeof name, "%.*s", (int)strcspn(dflt, ":"), dflt);
	else
		snprintf(name, sizeof name, "%.*s", (int)nl, use);
	nexthop = xstrdup(use[nl] == ':' ? use + nl + 1 : "");
	if (spec && !*nexthop && strchr(dflt, ':') && strncmp(dflt, name, strlen(name)) == 0) {
		free(nexthop);
		nexthop = xstrdup(strchr(dflt, ':') + 1);
	}
	enum transport_kind k;
	if (kind_of(name, &k) < 0) {
		*out = xasprintf("4.3.5 mail transport unavailable: unknown transport \"%s\"", name);
		k = TRANSPORT_DEFER;
	} else if (k == TRANSPORT_MAILDIR) {
		enum router_route_kind rk = router_route(r, rcpt, out);
		k = rk == ROUTER_ROUTE_MAILDIR ? TRANSPORT_MAILDIR
		    : rk == ROUTER_ROUTE_FAIL ? TRANSPORT_FAIL : TRANSPORT_DEFER;
	} else if (k == TRANSPORT_FAIL) {
		*out = xasprintf("5.0.0 %s", *nexthop ? nexthop : "mail for this destination is not accepted");
	} else if (k == TRANSPORT_DEFER) {
		*out = xasprintf("4.0.0 %s", *nexthop ? nexthop : "delivery temporarily suspended");
	} else if (k == TRANSPORT_LMTP) {
		if (!*nexthop)
			*out = xstrdup("4.3.5 lmtp transport without a nexthop (lmtp:unix:/path)"), k = TRANSPORT_DEFER;
		else
			*out = xstrdup(nexthop);
	} else {	/* SMTP */
		if (*nexthop)
			*out = xstrdup(nexthop);
		else if (cls == ROUTER_NONE && !spec && *tr->relayhost)
			*out = xstrdup(tr->relayhost);
		else if (*dom)
			*out = xstrdup(dom);
		else
			*out = xstrdup("4.3.5 no domain to deliver to"), k = TRANSPORT_DEFER;
	}
	free(nexthop);
	free(dom);
	return k;
}

/* ---- delivery ---- */

/* an idle session kept for the next delivery to the same nexthop */
struct conn_ent {
	struct smtp_client_sess *s;
	char *key;		/* "S:nexthop" / "L:nexthop" */
	long long idle_since_ms, opened_ms;
	int uses;		/* transactions so far */
	struct conn_ent *next;	/* newest first */
};

struct transport {
	struct smtp_client_cfg cfg;
	/* connection cache: idle sessions; a reaper thread closes them after
	 * TRANSPORT_CACHE_IDLE_MS (QUIT off the delivery threads) */
	pthread_mutex_t cache_mu;
	pthread_cond_t cache_cv;
	struct conn_ent *cache;
	size_t ncache;
	int reaper_stop;
	pthread_t reaper;
	char *helo_name;
	SSL_CTX *tls_ctx;
	int tcp_port;
	char **dns_servers;
	size_t ndns;
	int dns_timeout_ms, dns_tries;
	int sasl_enable;
	struct table *sasl_map;
	pthread_mutex_t sasl_mu;
};

static int time_s(const struct conf *c, const char *n)
{
	long long v = conf_time_s(c, n);
	return v > 86400 ? 86400 : (int)v;
}

static void conn_ent_free(struct conn_ent *e)
{
	smtp_client_close(&e->s);
	free(e->key);
	free(e);
}

static void *reaper_main(void *arg)
{
	struct transport *t = arg;
	pthread_mutex_lock(&t->cache_mu);
	while (!t->reaper_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cache_cv, &t->cache_mu, &ts);
		long long now = now_ms();
		struct conn_ent *old = NULL;
		for (struct conn_ent **pp = &t->cache; *pp;) {
			struct conn_ent *e = *pp;
			if (t->reaper_stop || now - e->idle_since_ms >= TRANSPORT_CACHE_IDLE_MS) {
				*pp = e->next;
				t->ncache--;
				e->next = old;
				old = e;
			} else {
				pp = &e->next;
			}
		}
		pthread_mutex_unlock(&t->cache_mu);
		while (old) {	/* QUIT outside the lock */
			struct conn_ent *e = old;
			old = e->next;
			conn_ent_free(e);
		}
		pthread_mutex_lock(&t->cache_mu);
	}
	pthread_mutex_unlock(&t->cache_mu);
	return NULL;
}

/* cache_take - an idle session for key (the newest), or NULL. */
static struct conn_ent *cache_take(struct transport *t, const char *key)
{
	struct conn_ent *e = NULL;
	pthread_mutex_lock(&t->cache_mu);
	for (struct conn_ent **pp = &t->cache; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0) {
			e = *pp;
			*pp = e->next;
			t->ncache--;
			break;
		}
	pthread_mutex_unlock(&t->cache_mu);
	return e;
}

/* cache_put - keep e for reuse, or close it when it has served enough. */
static void cache_put(struct transport *t, struct conn_ent *e)
{
	long long now = now_ms();
	if (e->uses >= TRANSPORT_REUSE_MAX || now - e->opened_ms >= TRANSPORT_REUSE_MS) {
		conn_ent_free(e);
		return;
	}
	e->idle_since_ms = now;
	struct conn_ent *drop = NULL;
	pthread_mutex_lock(&t->cache_mu);
	e->next = t->cache;
	t->cache = e;
	if (++t->ncache > TRANSPORT_CACHE_MAX) {	/* the oldest is last */
		struct conn_ent **pp = &t->cache;
		while ((*pp)->next)
			pp = &(*pp)->next;
		drop = *pp;
		*pp = NULL;
		t->ncache--;
	}
	pthread_mutex_unlock(&t->cache_mu);
	if (drop)
		conn_ent_free(drop);
}

struct transport *transport_new(const struct conf *c, char **err_out)
{
	struct transport *t = xcalloc(1, sizeof *t);
	pthread_mutex_init(&t->sasl_mu, NULL);
	pthread_mutex_init(&t->cache_mu, NULL);
	pthread_cond_init(&t->cache_cv, NULL);
	if (pthread_create(&t->reaper, NULL, reaper_main, t) != 0)
		fatal("transport: cannot create the connection cache thread");
	t->helo_name = xstrdup(conf_str(c, "smtp_helo_name"));
	t->cfg.helo_name = t->helo_name;
	t->cfg.connect_timeout_s = time_s(c, "smtp_connect_timeout");
	t->cfg.helo_timeout_s = time_s(c, "smtp_helo_timeout");
	t->cfg.mail_timeout_s = time_s(c, "smtp_mail_timeout");
	t->cfg.rcpt_timeout_s = time_s(c, "smtp_rcpt_timeout");
	t->cfg.data_init_timeout_s = time_s(c, "smtp_data_init_timeout");
	t->cfg.data_xfer_timeout_s = time_s(c, "smtp_data_xfer_timeout");
	t->cfg.data_done_timeout_s = time_s(c, "smtp_data_done_timeout");
	t->cfg.quit_timeout_s = time_s(c, "smtp_quit_timeout");
	t->tcp_port = (int)conf_int(c, "smtp_tcp_port");
	if (smtp_tls_level_parse(conf_str(c, "smtp_tls_security_level"), &t->cfg.tls_level) < 0) {
		*err_out = xasprintf("smtp_tls_security_level: \"%s\" is not none, may, encrypt or verify",
				     conf_str(c, "smtp_tls_security_level"));
		transport_free(&t);
		return NULL;
	}
	if (t->cfg.tls_level != SMTP_TLS_NONE) {
		t->tls_ctx = smtp_client_tls_ctx(conf_str(c, "smtp_tls_CAfile"), err_out);
		if (!t->tls_ctx) {
			transport_free(&t);
			return NULL;
		}
		t->cfg.tls_ctx = t->tls_ctx;
	}
	size_t n;
	const char *const *sv = conf_list(c, "dns_servers", &n);
	t->dns_servers = xcalloc(n + 1, sizeof *t->dns_servers);
	for (size_t i = 0; i < n; i++)
		t->dns_servers[i] = xstrdup(sv[i]);
	t->ndns = n;
	t->dns_timeout_ms = (int)conf_time_s(c, "dns_timeout") * 1000;
	t->dns_tries = (int)conf_int(c, "dns_tries");
	t->sasl_enable = conf_bool(c, "smtp_sasl_auth_enable");
	const char *pm = conf_str(c, "smtp_sasl_password_maps");
	if (t->sasl_enable && *pm) {
		t->sasl_map = table_open(pm, err_out);
		if (!t->sasl_map) {
			transport_free(&t);
			return NULL;
		}
	}
	return t;
}

void transport_free(struct transport **tp)
{
	struct transport *t = *tp;
	if (!t)
		return;
	pthread_mutex_lock(&t->cache_mu);
	t->reaper_stop = 1;
	pthread_cond_signal(&t->cache_cv);
	pthread_mutex_unlock(&t->cache_mu);
	pthread_join(t->reaper, NULL);	/* it closes every cached session on the way out */
	pthread_mutex_destroy(&t->cache_mu);
	pthread_cond_destroy(&t->cache_cv);
	if (t->tls_ctx)
		SSL_CTX_free(t->tls_ctx);
	for (size_t i = 0; i < t->ndns; i++)
		free(t->dns_servers[i]);
	free(t->dns_servers);
	table_free(&t->sasl_map);
	pthread_mutex_destroy(&t->sasl_mu);
	free(t->helo_name);
	free(t);
	*tp = NULL;
}

struct target {
	char host[256];		/* name for logs, SNI and verification */
	char addr[108];		/* IP text, or the unix socket path */
	struct sockaddr_storage sa;
	socklen_t salen;
	int port;
};

struct plan {
	struct target t[TRANSPORT_MAX_ADDRS];
	size_t n;
	char reason[600];	/* why there is nothing (more) to try */
	enum smtp_client_res res;
};

static void add_ip(struct plan *p, const char *host, int family, const void *ip, int port)
{
	if (p->n >= TRANSPORT_MAX_ADDRS)
		return;
	struct target *t = &p->t[p->n++];
	memset(t, 0, sizeof *t);
	snprintf(t->host, sizeof t->host, "%s", host);
	inet_ntop(family, ip, t->addr, sizeof t->addr);
	t->port = port;
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&t->sa;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((unsigned short)port);
		memcpy(&s4->sin_addr, ip, 4);
		t->salen = sizeof *s4;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((unsigned short)port);
		memcpy(&s6->sin6_addr, ip, 16);
		t->salen = sizeof *s6;
	}
}

/* A then AAAA of host; returns the DNS status of the A look-up (for reasons). */
static enum dns_status add_host(struct plan *p, struct dns_resolver *r, const char *host, int port)
{
	unsigned char ip[16];
	if (inet_pton(AF_INET, host, ip) == 1) {
		add_ip(p, host, AF_INET, ip, port);
		return DNS_OK;
	}
	if (inet_pton(AF_INET6, host, ip) == 1) {
		add_ip(p, host, AF_INET6, ip, port);
		return DNS_OK;
	}
	struct dns_answer *a = dns_query_sync(r, host, DNS_T_A, 0);
	enum dns_status st = a->status;
	for (size_t i = 0; a->status == DNS_OK && i < a->n; i++)
		add_ip(p, host, AF_INET, &a->rr[i].u.a, port);
	dns_answer_free(&a);
	struct dns_answer *b = dns_query_sync(r, host, DNS_T_AAAA, 0);
	for (size_t i = 0; b->status == DNS_OK && i < b->n; i++)
		add_ip(p, host, AF_INET6, &b->rr[i].u.aaaa, port);
	if (st != DNS_OK && b->status == DNS_OK)
		st = DNS_OK;
	else if (st == DNS_NODATA && b->status != DNS_NODATA && b->status != DNS_NXDOMAIN)
		st = b->status;
	dns_answer_free(&b);
	return st;
}

static int mx_cmp(const void *a, const void *b)
{
	const struct dns_rr *x = *(const struct dns_rr *const *)a, *y = *(const struct dns_rr *const *)b;
	return (int)x->u.mx.pref - (int)y->u.mx.pref;
}

/* parse "[host]:port", "host:port", "host" */
static void split_nexthop(const char *nh, char *host, size_t hsize, int *port, int *no_mx,
			  int dflt_port)
{
	*port = dflt_port;
	*no_mx = 0;
	if (nh[0] == '[') {
		const char *e = strchr(nh, ']');
		size_t n = e ? (size_t)(e - nh - 1) : strlen(nh + 1);
		snprintf(host, hsize, "%.*s", (int)n, nh + 1);
		*no_mx = 1;
		if (e && e[1] == ':')
			*port = atoi(e + 2);
		return;
	}
	const char *c = strrchr(nh, ':');
	if (c && strchr(nh, ':') == c) {
		snprintf(host, hsize, "%.*s", (int)(c - nh), nh);
		*port = atoi(c + 1);
	} else {
		snprintf(host, hsize, "%s", nh);
	}
}

static void plan_smtp(struct transport *t, struct dns_resolver *r, const char *nexthop,
		      struct plan *p)
{
	char host[256];
	int port, no_mx;
	split_nexthop(nexthop, host, sizeof host, &port, &no_mx, t->tcp_port);
	if (port <= 0 || port > 65535)
		port = t->tcp_port;
	p->res = SMTP_RES_DEFER;
	if (no_mx) {
		enum dns_status st = add_host(p, r, host, port);
		if (p->n == 0) {
			p->res = st == DNS_NXDOMAIN || st == DNS_NODATA ? SMTP_RES_BOUNCE : SMTP_RES_DEFER;
			snprintf(p->reason, sizeof p->reason,
				 "%s Host or domain name not found. Name service error for name=%s type=A: %s",
				 p->res == SMTP_RES_BOUNCE ? "5.4.4" : "4.4.3", host,
				 p->res == SMTP_RES_BOUNCE ? "Host not found" : "Host not found, try again");
		}
		return;
	}
	struct dns_answer *mx = dns_query_sync(r, host, DNS_T_MX, 0);
	if (mx->status == DNS_NXDOMAIN || dns_status_is_temp(mx->status)) {
		int perm = mx->status == DNS_NXDOMAIN;
		p->res = perm ? SMTP_RES_BOUNCE : SMTP_RES_DEFER;
		snprintf(p->reason, sizeof p->reason,
			 "%s Host or domain name not found. Name service error for name=%s type=MX: %s",
			 perm ? "5.4.4" : "4.4.3", host, perm ? "Host not found" : "Host not found, try again");
	} else if (mx->status == DNS_NODATA) {	/* implicit MX: the domain's own addresses */
		enum dns_status st = add_host(p, r, host, port);
		if (p->n == 0) {
			int perm = st == DNS_NXDOMAIN || st == DNS_NODATA;
			p->res = perm ? SMTP_RES_BOUNCE : SMTP_RES_DEFER;
			snprintf(p->reason, sizeof p->reason,
				 "%s Host or domain name not found. Name service error for name=%s type=A: %s",
				 perm ? "5.4.4" : "4.4.3", host, perm ? "Host not found" : "Host not found, try again");
		}
	} else if (mx->n == 1 && mx->rr[0].u.mx.host[0] == 0) {
		p->res = SMTP_RES_BOUNCE;
		snprintf(p->reason, sizeof p->reason,
			 "5.1.10 Domain %s does not accept mail (nullMX)", host);
	} else {
		const struct dns_rr **v = xcalloc(mx->n, sizeof *v);
		for (size_t i = 0; i < mx->n; i++)
			v[i] = &mx->rr[i];
		qsort(v, mx->n, sizeof *v, mx_cmp);
		for (size_t i = 0; i < mx->n && p->n < TRANSPORT_MAX_ADDRS; i++)
			if (v[i]->u.mx.host[0])
				add_host(p, r, v[i]->u.mx.host, port);
		free(v);
		if (p->n == 0)
			snprintf(p->reason, sizeof p->reason,
				 "4.4.3 Host or domain name not found. Name service error for MX hosts of %s",
				 host);
	}
	dns_answer_free(&mx);
}

static void plan_lmtp(struct transport *t, struct dns_resolver *r, const char *nexthop,
		      struct plan *p)
{
	p->res = SMTP_RES_DEFER;
	const char *path = strncmp(nexthop, "unix:", 5) == 0 ? nexthop + 5
			   : nexthop[0] == '/' ? nexthop : NULL;
	if (path) {
		struct target *tg = &p->t[p->n];
		memset(tg, 0, sizeof *tg);
		struct sockaddr_un *un = (struct sockaddr_un *)&tg->sa;
		if (strlen(path) >= sizeof un->sun_path) {
			snprintf(p->reason, sizeof p->reason, "4.3.5 lmtp socket path too long: %s", path);
			return;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		tg->salen = sizeof *un;
		snprintf(tg->host, sizeof tg->host, "%s", t->helo_name);
		snprintf(tg->addr, sizeof tg->addr, "%.*s", (int)sizeof tg->addr - 1, path);
		p->n++;
		return;
	}
	char host[256];
	int port, no_mx;
	split_nexthop(strncmp(nexthop, "inet:", 5) == 0 ? nexthop + 5 : nexthop, host, sizeof host,
		      &port, &no_mx, 24);
	add_host(p, r, host, port);
	if (p->n == 0)
		snprintf(p->reason, sizeof p->reason, "4.4.3 cannot find the address of LMTP server %s",
			 host);
}

static void sasl_find(struct transport *t, const char *nexthop, const char *host, char *user,
		      size_t usize, char *pass, size_t psize)
{
	user[0] = pass[0] = 0;
	if (!t->sasl_map)
		return;
	pthread_mutex_lock(&t->sasl_mu);
	const char *v = NULL;
	if (table_lookup(t->sasl_map, nexthop, &v) == 1 || table_lookup(t->sasl_map, host, &v) == 1) {
		const char *c = strchr(v, ':');
		if (c) {
			snprintf(user, usize, "%.*s", (int)(c - v), v);
			snprintf(pass, psize, "%s", c + 1);
		}
	}
	pthread_mutex_unlock(&t->sasl_mu);
}

static void all_res(struct smtp_client_rcpt *r, size_t n, enum smtp_client_res res,
		    const char *reason)
{
	for (size_t k = 0; k < n; k++) {
		r[k].res = res;
		snprintf(r[k].reason, sizeof r[k].reason, "%s", reason);
	}
}

void transport_deliver(struct transport *t, enum transport_kind kind, const char *nexthop,
		       struct queue_msg *m, struct smtp_client_rcpt *rcpts, size_t n, char *relay,
		       size_t relay_size)
{
	char *key = xasprintf("%c:%s", kind == TRANSPORT_LMTP ? 'L' : 'S', nexthop);
	struct conn_ent *e;
	snprintf(relay, relay_size, "none");
	/* a cached session to this nexthop: RSET, then the transaction; a dead one is dropped */
	while ((e = cache_take(t, key)) != NULL) {
		if (smtp_client_reset(e->s) < 0) {
			conn_ent_free(e);
			continue;
		}
		int rc = smtp_client_send(e->s, m, rcpts, n);
		snprintf(relay, relay_size, "%s", smtp_client_relay(e->s));
		e->uses++;
		if (rc == 0)
			cache_put(t, e);
		else
			conn_ent_free(e);
		free(key);
		return;
	}
	struct dns_opts o = { (const char *const *)t->dns_servers, t->ndns, t->dns_timeout_ms,
			      t->dns_tries };
	char *err = NULL;
	struct dns_resolver *r = dns_new(NULL, &o, &err);
	if (!r) {
		char reason[600];
		snprintf(reason, sizeof reason, "4.3.0 DNS resolver: %s", err);
		free(err);
		all_res(rcpts, n, SMTP_RES_DEFER, reason);
		free(key);
		return;
	}
	struct plan *p = xcalloc(1, sizeof *p);
	if (kind == TRANSPORT_LMTP)
		plan_lmtp(t, r, nexthop, p);
	else
		plan_smtp(t, r, nexthop, p);
	dns_free(&r);
	enum smtp_client_proto proto = kind == TRANSPORT_LMTP ? SMTP_CLIENT_LMTP : SMTP_CLIENT_SMTP;
	enum smtp_client_res res = p->res;
	char reason[600];
	snprintf(reason, sizeof reason, "%s", p->reason[0] ? p->reason : "4.4.3 no server to deliver to");
	char user[256], pass[256];
	for (size_t i = 0; i < p->n; i++) {
		struct target *tg = &p->t[i];
		user[0] = pass[0] = 0;
		if (proto == SMTP_CLIENT_SMTP && t->sasl_enable)
			sasl_find(t, nexthop, tg->host, user, sizeof user, pass, sizeof pass);
		struct smtp_client_sess *s = smtp_client_open(
			&t->cfg, proto, (struct sockaddr *)&tg->sa, tg->salen, tg->host, tg->addr,
			tg->port, tg->host, user, pass, reason, sizeof reason, &res);
		explicit_bzero(pass, sizeof pass);
		if (!s)
			continue;	/* next MX / address */
		int rc = smtp_client_send(s, m, rcpts, n);
		snprintf(relay, relay_size, "%s", smtp_client_relay(s));
		e = xcalloc(1, sizeof *e);
		e->s = s;
		e->key = key;
		e->opened_ms = now_ms();
		e->uses = 1;
		if (rc == 0)
			cache_put(t, e);
		else
			conn_ent_free(e);
		free(p);
		return;
	}
	all_res(rcpts, n, res, reason);
	free(key);
	free(p);
}
