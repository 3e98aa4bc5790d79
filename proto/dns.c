/*
 * dns: c-ares transport, libevent glue, blocking look-ups and our own
 * decoder of raw answers (glibc libresolv's ns_parserr does the framing).
 * Contract in proto/dns.h.
 *
 * Request life cycle (async): a dns_req is owned jointly by c-ares (until
 * its callback, ares_pending) and by the user (until the user callback ran
 * or dns_cancel, user_done). It is freed when both are done. A per-request
 * timer enforces timeout_ms x tries overall (c-ares doubles its timeout on
 * every round, so its own give-up time is later) and also delivers answers
 * that c-ares produced synchronously inside ares_query (early).
 *
 * ARES_FLAG_NOCHECKRESP stays off: on SERVFAIL/REFUSED/NOTIMP c-ares moves
 * to the next server (or retries the only one), at most servers x tries
 * sends, then reports the error without a packet -> DNS_SERVFAIL.
 * NXDOMAIN and NODATA arrive with the packet, which we decode ourselves.
 */
#include "proto/dns.h"
#include "lib/util.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <event2/event.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_NAME_MAX 253	/* presentation, without the trailing dot */
#define DNS_QNAME_BUF (DNS_NAME_MAX * 4 + 1)	/* with every odd byte escaped as \DDD */

struct dns_sock {
	struct dns_sock *next;
	struct dns_resolver *r;
	ares_socket_t fd;
	struct event *ev;
};

struct dns_resolver {
	struct event_base *base;	/* NULL: blocking resolver */
	ares_channel ch;
	struct event *timer;		/* fires at ares_timeout() */
	struct dns_sock *socks;		/* one event per c-ares socket */
	struct dns_req *reqs;		/* every live request */
	size_t nreqs;
	int timeout_ms;
	int tries;
	int cb_depth;			/* > 0 while a user callback runs */
};

struct dns_req {
	struct dns_req *prev, *next;
	struct dns_resolver *r;
	dns_cb cb;
	void *arg;
	char *qname;
	enum dns_type qtype;
	struct event *timer;		/* overall deadline, or early delivery */
	struct dns_answer *early;	/* answer waiting for the timer */
	int ares_pending;		/* c-ares still holds a pointer to us */
	int user_done;			/* callback ran or request cancelled */
	int starting;			/* inside ares_query() */
};

/* ---------------------------------------------------------------- status */

const char *dns_status_name(enum dns_status s)
{
	switch (s) {
	case DNS_OK: return "ok";
	case DNS_NODATA: return "nodata";
	case DNS_NXDOMAIN: return "nxdomain";
	case DNS_SERVFAIL: return "servfail";
	case DNS_TIMEOUT: return "timeout";
	case DNS_ERROR: return "error";
	}
	return "unknown";
}

int dns_status_is_temp(enum dns_status s)
{
	return s == DNS_SERVFAIL || s == DNS_TIMEOUT || s == DNS_ERROR;
}

/* ---------------------------------------------------------------- answers */

static struct dns_answer *answer_new(const char *qname, enum dns_type qtype,
				     enum dns_status st)
{
	struct dns_answer *a = xcalloc(1, sizeof(*a));
	a->status = st;
	a->qname = xstrdup(qname ? qname : "");
	a->qtype = qtype;
	return a;
}

static void rr_clear(struct dns_rr *rr)
{
	switch (rr->type) {
	case DNS_T_MX:
		free(rr->u.mx.host);
		break;
	case DNS_T_TXT:
		free(rr->u.txt.data);
		break;
	case DNS_T_PTR:
	case DNS_T_CNAME:
	case DNS_T_NS:
		free(rr->u.name);
		break;
	default:
		break;
	}
}

/* answer_clear - drop the records; status becomes st. */
static void answer_clear(struct dns_answer *a, enum dns_status st)
{
	for (size_t i = 0; i < a->n; i++)
		rr_clear(&a->rr[i]);
	free(a->rr);
	a->rr = NULL;
	a->n = 0;
	a->ttl = 0;
	a->status = st;
}

void dns_answer_free(struct dns_answer **ap)
{
	if (!ap || !*ap)
		return;
	answer_clear(*ap, DNS_ERROR);
	free((char *)(*ap)->qname);
	free(*ap);
	*ap = NULL;
}

/* ---------------------------------------------------------------- decoder */

static uint32_t ttl_sane(uint32_t ttl)
{
	return ttl > 0x7fffffffu ? 0 : ttl;	/* RFC 2181 8 */
}

/* strip_root - glibc prints the root as "." (ns_name_ntop); we use "". */
static void strip_root(char *name)
{
	if (strcmp(name, ".") == 0)
		name[0] = 0;
}

/*
 * rdata_name - the (possibly compressed) domain name filling rdata exactly;
 * *out is the caller's. -1 when malformed.
 */
static int rdata_name(const ns_msg *msg, const unsigned char *rd, size_t rdlen, char **out)
{
	char buf[NS_MAXDNAME];
	int n = ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg), rd, buf, sizeof(buf));

	if (n < 0 || (size_t)n != rdlen)
		return -1;
	strip_root(buf);
	*out = xstrdup(buf);
	return 0;
}

/* txt_decode - RFC 1035 3.3.14: one or more <character-string>s. */
static int txt_decode(const unsigned char *rd, size_t rdlen, struct dns_rr *out)
{
	size_t i = 0, len = 0, n = 0;

	while (i < rdlen) {
		size_t l = rd[i];
		if (l > rdlen - i - 1)
			return -1;
		len += l;
		n++;
		i += 1 + l;
	}
	char *d = xmalloc(len + 1);
	size_t off = 0;
	for (i = 0; i < rdlen; i += 1 + rd[i]) {
		memcpy(d + off, rd + i + 1, rd[i]);
		off += rd[i];
	}
	d[len] = 0;
	out->u.txt.data = d;
	out->u.txt.len = len;
	out->u.txt.nstrings = n;
	return 0;
}

/* rr_decode - one RR of the asked type into out (zeroed). -1 if malformed. */
static int rr_decode(const ns_msg *msg, const ns_rr *rr, struct dns_rr *out)
{
	const unsigned char *rd = ns_rr_rdata(*rr);
	size_t rdlen = ns_rr_rdlen(*rr);

	out->type = (enum dns_type)ns_rr_type(*rr);
	out->ttl = ttl_sane(ns_rr_ttl(*rr));
	switch (ns_rr_type(*rr)) {
	case ns_t_a:
		if (rdlen != sizeof(out->u.a))
			return -1;
		memcpy(&out->u.a, rd, rdlen);
		return 0;
	case ns_t_aaaa:
		if (rdlen != sizeof(out->u.aaaa))
			return -1;
		memcpy(&out->u.aaaa, rd, rdlen);
		return 0;
	case ns_t_mx:
		if (rdlen < 3)
			return -1;
		out->u.mx.pref = (uint16_t)(rd[0] << 8 | rd[1]);
		return rdata_name(msg, rd + 2, rdlen - 2, &out->u.mx.host);
	case ns_t_ptr:
	case ns_t_cname:
	case ns_t_ns:
		return rdata_name(msg, rd, rdlen, &out->u.name);
	case ns_t_txt:
		return txt_decode(rd, rdlen, out);
	default:
		return 0;
	}
}

/* rr_get - RR i of section sec, class IN only (*is_in_out). -1 if malformed. */
static int rr_get(ns_msg *msg, ns_sect sec, int i, ns_rr *rr, int *is_in_out)
{
	if (ns_parserr(msg, sec, i, rr) < 0)
		return -1;
	*is_in_out = ns_rr_class(*rr) == ns_c_in;
	return 0;
}

/*
 * chain_step - find the CNAME owned by cur in the answer section; replace
 * cur by its target. 1 = followed, 0 = none, -1 = malformed.
 */
static int chain_step(ns_msg *msg, char *cur, uint32_t *ttl_min)
{
	int count = ns_msg_count(*msg, ns_s_an), in;
	ns_rr rr;

	for (int i = 0; i < count; i++) {
		if (rr_get(msg, ns_s_an, i, &rr, &in) < 0)
			return -1;
		if (!in || ns_rr_type(rr) != ns_t_cname || ascii_strcasecmp(rr.name, cur) != 0)
			continue;
		char *target;
		if (rdata_name(msg, ns_rr_rdata(rr), ns_rr_rdlen(rr), &target) < 0)
			return -1;
		snprintf(cur, NS_MAXDNAME, "%s", target);
		free(target);
		if (ttl_sane(ns_rr_ttl(rr)) < *ttl_min)
			*ttl_min = ttl_sane(ns_rr_ttl(rr));
		return 1;
	}
	return 0;
}

/* answer_collect - the qtype RRs at the end of the CNAME chain. -1 if malformed. */
static int answer_collect(ns_msg *msg, struct dns_answer *a)
{
	char cur[NS_MAXDNAME];
	uint32_t ttl = UINT32_MAX;
	int count = ns_msg_count(*msg, ns_s_an), in, rc = 1;
	ns_rr rr;

	snprintf(cur, sizeof(cur), "%s", a->qname);
	for (int hop = 0; a->qtype != DNS_T_CNAME && rc == 1 && hop < DNS_MAX_CNAME; hop++)
		if ((rc = chain_step(msg, cur, &ttl)) < 0)
			return -1;
	for (int i = 0; i < count && a->n < DNS_MAX_RR; i++) {
		if (rr_get(msg, ns_s_an, i, &rr, &in) < 0)
			return -1;
		if (!in || ns_rr_type(rr) != (ns_type)a->qtype || ascii_strcasecmp(rr.name, cur) != 0)
			continue;
		if (!a->rr)
			a->rr = xcalloc(count < DNS_MAX_RR ? count : DNS_MAX_RR, sizeof(*a->rr));
		if (rr_decode(msg, &rr, &a->rr[a->n++]) < 0)
			return -1;
		if (a->rr[a->n - 1].ttl < ttl)
			ttl = a->rr[a->n - 1].ttl;
	}
	a->ttl = a->n ? ttl : 0;
	return 0;
}

/* neg_ttl - RFC 2308 5: min(SOA TTL, SOA minimum) of the first SOA in authority. */
static int neg_ttl(ns_msg *msg, uint32_t *ttl_out)
{
	int count = ns_msg_count(*msg, ns_s_ns), in;
	ns_rr rr;

	*ttl_out = 0;
	for (int i = 0; i < count; i++) {
		if (rr_get(msg, ns_s_ns, i, &rr, &in) < 0)
			return -1;
		if (!in || ns_rr_type(rr) != ns_t_soa)
			continue;
		const unsigned char *p = ns_rr_rdata(rr), *end = p + ns_rr_rdlen(rr);
		for (int k = 0; k < 2; k++) {	/* MNAME, RNAME */
			int n = dn_skipname(p, end);
			if (n < 0)
				return -1;
			p += n;
		}
		if (end - p != 20)
			return -1;
		uint32_t min = (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | p[18] << 8 | p[19];
		uint32_t ttl = ttl_sane(ns_rr_ttl(rr));
		*ttl_out = ttl_sane(min) < ttl ? ttl_sane(min) : ttl;
		return 0;
	}
	return 0;
}

/* question_name - name of the first question, or "" (buf NS_MAXDNAME). */
static void question_name(ns_msg *msg, char *buf)
{
	ns_rr q;

	buf[0] = 0;
	if (ns_msg_count(*msg, ns_s_qd) > 0 && ns_parserr(msg, ns_s_qd, 0, &q) == 0)
		snprintf(buf, NS_MAXDNAME, "%s", q.name);
}

struct dns_answer *dns_answer_decode(const unsigned char *pkt, size_t len, const char *qname,
				     enum dns_type qtype)
{
	char qbuf[NS_MAXDNAME];
	ns_msg msg;

	if (!pkt || len > 65535 || ns_initparse(pkt, (int)len, &msg) < 0)
		return answer_new(qname, qtype, DNS_ERROR);
	if (!qname) {
		question_name(&msg, qbuf);
		qname = qbuf;
	}
	struct dns_answer *a = answer_new(qname, qtype, DNS_ERROR);
	size_t ql = strlen(a->qname);
	if (ql > 1 && a->qname[ql - 1] == '.')
		((char *)a->qname)[ql - 1] = 0;
	if (!ns_msg_getflag(msg, ns_f_qr) || ns_msg_getflag(msg, ns_f_opcode) != ns_o_query)
		return a;
	switch (ns_msg_getflag(msg, ns_f_rcode)) {
	case ns_r_noerror:
		if (answer_collect(&msg, a) < 0) {
			answer_clear(a, DNS_ERROR);
			return a;
		}
		a->status = a->n ? DNS_OK : DNS_NODATA;
		break;
	case ns_r_nxdomain:
		a->status = DNS_NXDOMAIN;
		break;
	default:
		a->status = DNS_SERVFAIL;
		return a;
	}
	if (a->status != DNS_OK && neg_ttl(&msg, &a->ttl) < 0)
		answer_clear(a, DNS_ERROR);
	return a;
}

/* --------------------------------------------------------------- names */

/*
 * name_norm - name without one trailing dot, in the presentation form that
 * c-ares parses and libresolv's ns_name_ntop writes (so answers match it),
 * into out[DNS_QNAME_BUF]: a label may hold any byte but NUL (SPF macros can
 * expand to spaces and the like, RFC 7208 7.3); the specials ";\\()@$\""
 * are written as \c, bytes outside 0x21..0x7e as \DDD. -1 for an empty
 * label, a label over 63 bytes or a name over 253.
 */
static int name_norm(const char *name, char *out)
{
	size_t len = name ? strlen(name) : 0, label = 0, o = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
			out[o++] = '.';
			continue;
		}
		if (++label > 63)
			return -1;
		if (strchr(";\\()@$\"", c)) {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c > 0x20 && c < 0x7f) {
			out[o++] = (char)c;
		} else {
			o += (size_t)snprintf(out + o, 5, "\\%03u", c);
		}
	}
	if (label == 0)
		return -1;
	out[o] = 0;
	return 0;
}

/*
 * ares_form - the presentation name as c-ares 1.18's ares_create_query
 * reads it: it knows "\\c" (the next byte, literally) but not "\\DDD", so
 * each \\DDD becomes a backslash and the raw byte. out has DNS_QNAME_BUF.
 */
static void ares_form(const char *pres, char *out)
{
	size_t o = 0;
	for (const char *p = pres; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '9' && p[2] && p[3]) {
			out[o++] = '\\';
			out[o++] = (char)((p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0'));
			p += 3;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = 0;
}

static int hexdigit(unsigned v)
{
	return "0123456789abcdef"[v & 15];
}

/* ip_labels - reversed labels of addr ("4.3.2.1" / 32 nibbles), no dot at the end. */
static int ip_labels(const char *addr, char *out, size_t outlen)
{
	unsigned char b[16];
	size_t o = 0;

	if (!addr)
		return -1;
	if (inet_pton(AF_INET, addr, b) == 1) {
		int n = snprintf(out, outlen, "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (inet_pton(AF_INET6, addr, b) != 1 || outlen < 64)
		return -1;
	for (int i = 15; i >= 0; i--) {
		out[o++] = (char)hexdigit(b[i]);
		out[o++] = '.';
		out[o++] = (char)hexdigit(b[i] >> 4);
		out[o++] = i ? '.' : 0;
	}
	return 0;
}

int dns_reverse_name(const char *addr, char *out, size_t outlen)
{
	char l[64];
	unsigned char b[4];

	if (ip_labels(addr, l, sizeof(l)) < 0)
		return -1;
	const char *zone = inet_pton(AF_INET, addr, b) == 1 ? "in-addr.arpa" : "ip6.arpa";
	int n = snprintf(out, outlen, "%s.%s", l, zone);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int dns_dnsbl_name(const char *addr, const char *zone, char *out, size_t outlen)
{
	char l[64];

	if (!zone || !*zone || *zone == '.' || ip_labels(addr, l, sizeof(l)) < 0)
		return -1;
	int n = snprintf(out, outlen, "%s.%s", l, zone);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* ------------------------------------------------------------ resolver */

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;

static void ares_lib_init(void)
{
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		fatal("dns: c-ares library initialisation failed");
}

/* server_parse - "host", "host:port", "[v6]", "[v6]:port" into n. */
static int server_parse(const char *s, struct ares_addr_port_node *n)
{
	char host[INET6_ADDRSTRLEN];
	const char *h = s, *port = NULL, *e;
	size_t hl = strlen(s);
	int v6only = 0;

	if (s[0] == '[') {
		if (!(e = strchr(s, ']')) || (e[1] && e[1] != ':'))
			return -1;
		h = s + 1, hl = (size_t)(e - h), v6only = 1;
		port = e[1] ? e + 2 : NULL;
	} else if ((e = strchr(s, ':')) && !strchr(e + 1, ':')) {
		hl = (size_t)(e - s), port = e + 1;	/* one colon: v4:port */
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, h, hl);
	host[hl] = 0;
	memset(n, 0, sizeof(*n));
	if (!v6only && inet_pton(AF_INET, host, &n->addr.addr4) == 1)
		n->family = AF_INET;
	else if (inet_pton(AF_INET6, host, &n->addr.addr6) == 1)
		n->family = AF_INET6;
	else
		return -1;
	long p = 53;
	if (port) {
		char *end;
		p = strtol(port, &end, 10);
		if (!*port || *end || p < 1 || p > 65535 || *port == '+' || *port == '-')
			return -1;
	}
	n->udp_port = n->tcp_port = (int)p;
	return 0;
}

/* servers_set - apply o->servers to the channel. -1 with *err_out. */
static int servers_set(ares_channel ch, const struct dns_opts *o, char **err_out)
{
	struct ares_addr_port_node *nodes = xcalloc(o->nservers, sizeof(*nodes));
	int rc = 0;

	for (size_t i = 0; i < o->nservers && rc == 0; i++) {
		const char *s = o->servers[i] ? o->servers[i] : "";
		if (server_parse(s, &nodes[i]) < 0) {
			*err_out = xasprintf("dns_servers: bad entry \"%s\" (want host, host:port or [v6]:port)", s);
			rc = -1;
		}
		nodes[i].next = i + 1 < o->nservers ? &nodes[i + 1] : NULL;
	}
	if (rc == 0 && (rc = ares_set_servers_ports(ch, nodes)) != ARES_SUCCESS) {
		*err_out = xasprintf("dns_servers: %s", ares_strerror(rc));
		rc = -1;
	}
	free(nodes);
	return rc;
}

static struct event *timer_new(struct event_base *base, event_callback_fn cb, void *arg)
{
	struct event *ev = evtimer_new(base, cb, arg);

	if (!ev)
		panic("dns: evtimer_new failed");
	return ev;
}

static void timer_rearm(struct dns_resolver *r)
{
	struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);

	if (tvp)
		evtimer_add(r->timer, tvp);
	else
		evtimer_del(r->timer);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;

	(void)fd, (void)what;
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	timer_rearm(r);
}

static void sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = ((struct dns_sock *)arg)->r;

	/* arg may be freed by sock_state_cb inside ares_process_fd */
	ares_process_fd(r->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	timer_rearm(r);
}

/* sock_state_cb - c-ares opens, closes or changes interest in a socket. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_sock **pp = &r->socks, *s;

	while (*pp && (*pp)->fd != fd)
		pp = &(*pp)->next;
	if ((s = *pp) != NULL) {
		event_free(s->ev);
		s->ev = NULL;
	}
	if (!readable && !writable) {
		if (s) {
			*pp = s->next;
			free(s);
		}
		return;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->r = r, s->fd = fd, s->next = r->socks;
		r->socks = s;
	}
	short ev = (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	if (!(s->ev = event_new(r->base, fd, ev, sock_event_cb, s)) || event_add(s->ev, NULL) < 0)
		panic("dns: cannot watch c-ares socket %d", (int)fd);
}

struct dns_resolver *dns_new(struct event_base *base, const struct dns_opts *o, char **err_out)
{
	static const struct dns_opts none;
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	struct ares_options ao;
	int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES, rc;
	char *err = NULL;

	if (!o)
		o = &none;
	pthread_once(&ares_once, ares_lib_init);
	r->base = base;
	r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
	r->tries = o->tries > 0 ? o->tries : 2;
	memset(&ao, 0, sizeof(ao));
	ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	ao.timeout = r->timeout_ms;
	ao.tries = r->tries;
	if (base) {
		ao.sock_state_cb = sock_state_cb;
		ao.sock_state_cb_data = r;
		mask |= ARES_OPT_SOCK_STATE_CB;
	}
	if ((rc = ares_init_options(&r->ch, &ao, mask)) != ARES_SUCCESS) {
		err = xasprintf("dns: resolver initialisation: %s", ares_strerror(rc));
		free(r);
		r = NULL;
	} else if (o->nservers > 0 && o->servers && servers_set(r->ch, o, &err) < 0) {
		dns_free(&r);
	}
	if (r && base)
		r->timer = timer_new(base, timer_cb, r);
	if (err_out)
		*err_out = err;
	else
		free(err);
	return r;
}

/* ------------------------------------------------------------- requests */

static void req_free(struct dns_req *req)
{
	struct dns_resolver *r = req->r;

	if (req->prev)
		req->prev->next = req->next;
	else
		r->reqs = req->next;
	if (req->next)
		req->next->prev = req->prev;
	r->nreqs--;
	if (req->timer)
		event_free(req->timer);
	dns_answer_free(&req->early);
	free(req->qname);
	free(req);
}

/* req_deliver - run the user callback once; takes ans. */
static void req_deliver(struct dns_req *req, struct dns_answer *ans)
{
	req->user_done = 1;
	event_del(req->timer);
	req->r->cb_depth++;
	req->cb(req->arg, ans);
	req->r->cb_depth--;
	dns_answer_free(&ans);
}

static enum dns_status status_from_ares(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return DNS_ERROR;	/* success without a packet: not expected */
	case ARES_ENODATA:
		return DNS_NODATA;
	case ARES_ENOTFOUND:
		return DNS_NXDOMAIN;
	case ARES_ETIMEOUT:
	case ARES_ECANCELLED:
		return DNS_TIMEOUT;
	case ARES_ESERVFAIL:
	case ARES_EREFUSED:
	case ARES_ENOTIMP:
	case ARES_EFORMERR:
	case ARES_ECONNREFUSED:
		return DNS_SERVFAIL;
	default:
		return DNS_ERROR;
	}
}

/* answer_from_ares - decode the packet when there is one, else map status. */
static struct dns_answer *answer_from_ares(int status, const unsigned char *abuf, int alen,
					   const char *qname, enum dns_type qtype)
{
	if (abuf && alen > 0)
		return dns_answer_decode(abuf, (size_t)alen, qname, qtype);
	return answer_new(qname, qtype, status_from_ares(status));
}

static void req_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_req *req = arg;

	(void)timeouts;
	req->ares_pending = 0;
	if (req->user_done || status == ARES_EDESTRUCTION) {
		req_free(req);
		return;
	}
	struct dns_answer *ans = answer_from_ares(status, abuf, alen, req->qname, req->qtype);
	if (req->starting) {	/* inside ares_query: deliver from the loop */
		struct timeval zero = { 0, 0 };
		req->early = ans;
		evtimer_add(req->timer, &zero);
		return;
	}
	req_deliver(req, ans);
	req_free(req);
}

/* req_timer_cb - overall deadline passed, or an early answer is waiting. */
static void req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req *req = arg;
	struct dns_answer *ans = req->early;

	(void)fd, (void)what;
	req->early = NULL;
	if (!ans)
		ans = answer_new(req->qname, req->qtype, DNS_TIMEOUT);
	req_deliver(req, ans);
	if (!req->ares_pending)
		req_free(req);
}

struct dns_req *dns_query(struct dns_resolver *r, const char *name, enum dns_type type,
			  dns_cb cb, void *arg)
{
	char qname[DNS_QNAME_BUF];
	struct dns_req *req = xcalloc(1, sizeof(*req));

	if (!r->base)
		panic("dns_query on a blocking resolver");
	req->r = r, req->cb = cb, req->arg = arg, req->qtype = type;
	req->next = r->reqs;
	if (r->reqs)
		r->reqs->prev = req;
	r->reqs = req;
	r->nreqs++;
	req->timer = timer_new(r->base, req_timer_cb, req);
	if (name_norm(name, qname) < 0) {
		struct timeval zero = { 0, 0 };
		req->qname = xstrdup(name ? name : "");
		req->early = answer_new(req->qname, type, DNS_ERROR);
		evtimer_add(req->timer, &zero);
		return req;
	}
	long long total_ms = (long long)r->timeout_ms * r->tries;
	struct timeval tv = { (time_t)(total_ms / 1000), (suseconds_t)(total_ms % 1000 * 1000) };
	req->qname = xstrdup(qname);
	evtimer_add(req->timer, &tv);
	req->ares_pending = req->starting = 1;
	char aname[DNS_QNAME_BUF];
	ares_form(qname, aname);
	ares_query(r->ch, aname, ns_c_in, (int)type, req_ares_cb, req);
	req->starting = 0;
	timer_rearm(r);
	return req;
}

size_t dns_pending(const struct dns_resolver *r)
{
	return r ? r->nreqs : 0;
}

void dns_cancel(struct dns_req *req)
{
	if (!req || req->user_done)
		return;
	req->user_done = 1;
	if (!req->ares_pending)
		req_free(req);
	else
		event_del(req->timer);
}

void dns_free(struct dns_resolver **rp)
{
	struct dns_resolver *r = rp ? *rp : NULL;

	if (!r)
		return;
	if (r->cb_depth > 0)
		panic("dns_free called from inside a dns callback");
	for (struct dns_req *q = r->reqs; q; q = q->next)
		q->user_done = 1;
	ares_destroy(r->ch);	/* req_ares_cb(ARES_EDESTRUCTION) frees those */
	while (r->reqs)		/* early answers not yet delivered */
		req_free(r->reqs);
	while (r->socks) {	/* normally gone via sock_state_cb */
		struct dns_sock *s = r->socks;
		r->socks = s->next;
		if (s->ev)
			event_free(s->ev);
		free(s);
	}
	if (r->timer)
		event_free(r->timer);
	free(r);
	*rp = NULL;
}

/* ---------------------------------------------------------------- sync */

struct sync_state {
	const char *qname;
	enum dns_type qtype;
	struct dns_answer *ans;
};

static void sync_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct sync_state *st = arg;

	(void)timeouts;
	if (!st->ans)
		st->ans = answer_from_ares(status, abuf, alen, st->qname, st->qtype);
}

/* sync_wait - poll the channel's sockets for at most left_ms, then process. */
static void sync_wait(struct dns_resolver *r, long long left_ms)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct pollfd pfd[ARES_GETSOCK_MAXNUM];
	unsigned bits = (unsigned)ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
	int n = 0;

	/* not ARES_GETSOCK_WRITABLE(): it shifts an int into the sign bit */
	for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
		short ev = (short)(((bits >> i) & 1 ? POLLIN : 0) |
				   ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1 ? POLLOUT : 0));
		if (ev)
			pfd[n].fd = socks[i], pfd[n].events = ev, pfd[n++].revents = 0;
	}
	struct timeval maxtv = { (time_t)(left_ms / 1000), (suseconds_t)(left_ms % 1000 * 1000) };
	struct timeval tv, *tvp = ares_timeout(r->ch, &maxtv, &tv);
	long long wait_ms = (long long)tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000;
	if (poll(pfd, (nfds_t)n, (int)wait_ms) <= 0) {
		ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
		return;
	}
	for (int i = 0; i < n; i++) {
		short re = pfd[i].revents;
		if (!re)
			continue;
		ares_process_fd(r->ch, (re & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD,
				(re & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD);
	}
}

struct dns_answer *dns_query_sync(struct dns_resolver *r, const char *name, enum dns_type type,
				  int deadline_ms)
{
	char qname[DNS_QNAME_BUF];
	struct sync_state st = { qname, type, NULL };

	if (r->base)
		panic("dns_query_sync on an asynchronous resolver");
	if (name_norm(name, qname) < 0)
		return answer_new(name, type, DNS_ERROR);
	if (deadline_ms <= 0)
		deadline_ms = r->timeout_ms * r->tries;
	long long end_ms = now_ms() + deadline_ms;
	char aname[DNS_QNAME_BUF];
	ares_form(qname, aname);
	ares_query(r->ch, aname, ns_c_in, (int)type, sync_ares_cb, &st);
	while (!st.ans) {
		long long left_ms = end_ms - now_ms();
		if (left_ms <= 0) {
			ares_cancel(r->ch);	/* sync_ares_cb(ARES_ECANCELLED) -> timeout */
			break;
		}
		sync_wait(r, left_ms);
	}
	return st.ans ? st.ans : answer_new(qname, type, DNS_TIMEOUT);
}
