/*
 * policy_load: a Postfix policy-delegation-protocol load client for the
 * policy server benchmarks (bench_ratelimit.py, bench_spf.py).
 * Owns: C persistent connections to one policy server, driven from one
 * thread with epoll (no thread per connection, so the client costs little
 * next to the server it measures); requests from a file, with "{n}" in
 * them replaced by the request's number so every instance (or sender,
 * ...) can be unique; per-request latency (request written -> reply's
 * empty line read); a count of replies by action word.
 * Leaves: servers, rule sets, repetitions and reporting to the bench scripts.
 *
 * Usage: policy_load -s inet:host:port|unix:/path -r REQFILE [-c CONNS]
 *                    [-n REQUESTS] [-o OFFSET] [-W WARMFILE] [-T SECONDS]
 *   REQFILE: one or more requests in the policy protocol (name=value lines,
 *     each request ended by an empty line); request i (0-based, over all
 *     connections) is template i % T with "{n}" replaced by OFFSET + i.
 *   -c: connections (default 1), each sending one request at a time, as
 *     Postfix's smtpd does; requests are handed out from one sequence.
 *   -n: requests in all (default 1000).
 *   -W: send this file's first request once on every connection (after
 *     connecting, before the clock starts; "{n}" is the connection number):
 *     servers that start a process per connection are ready when timing
 *     begins.
 *   -T: give up after this many seconds (default 600).
 * Prints one JSON line: reqs, secs, req_per_s, p50_ms, p99_ms, errors,
 * actions ({"DUNNO": n, "DEFER": m, ...}: first word of each action=).
 * Exit status 0, or 1 when any request failed (closed, malformed reply).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "load_common.h"

#define MAX_CONNS 4096
#define MAX_TEMPLATES 65536
#define REPLY_MAX 8192
#define MAX_ACTIONS 32

struct tmpl {
	char *text;	/* one request, with its empty line */
	size_t len;
};

struct conn {
	int fd;
	int busy;		/* a request is out */
	int warm;		/* the warm-up request is out */
	double t0;		/* when it was written */
	char *out;		/* unsent part */
	size_t out_len, out_off;
	char in[REPLY_MAX];
	size_t in_len;
};

static const char *spec, *req_file, *warm_file;
static int nconns = 1, ep;
static long nreqs = 1000, offset, next_req, done_reqs, errors;
static double timeout_s = 600;
static struct tmpl *tmpls, warm_tmpl;
static size_t ntmpls;
static double *lat_ms;
static long nlat;
static struct { char word[32]; long n; } actions[MAX_ACTIONS];
static int nactions;

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		lc_die("malloc");
	return p;
}

/* read_templates - split path's text into requests at empty lines. */
static struct tmpl *read_templates(const char *path, size_t *n_out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		lc_die(path);
	char *buf = NULL;
	size_t cap = 0, len = 0;
	for (;;) {
		if (len + 65536 > cap) {
			cap = (cap + 65536) * 2;
			buf = realloc(buf, cap);
			if (!buf)
				lc_die("realloc");
		}
		size_t r = fread(buf + len, 1, cap - len - 1, f);
		if (r == 0)
			break;
		len += r;
	}
	fclose(f);
	buf[len] = 0;
	struct tmpl *t = xmalloc(MAX_TEMPLATES * sizeof(*t));
	size_t n = 0;
	char *p = buf;
	while (*p && n < MAX_TEMPLATES) {
		while (*p == '\n')
			p++;
		if (!*p)
			break;
		char *end = strstr(p, "\n\n");
		size_t l = end ? (size_t)(end - p) + 2 : strlen(p);
		t[n].text = xmalloc(l + 3);
		memcpy(t[n].text, p, l);
		if (!end) {	/* last request without its empty line */
			if (t[n].text[l - 1] != '\n')
				t[n].text[l++] = '\n';
			t[n].text[l++] = '\n';
		}
		t[n].text[l] = 0;
		t[n].len = l;
		n++;
		p += end ? (size_t)(end - p) + 2 : strlen(p);
	}
	free(buf);
	if (!n) {
		fprintf(stderr, "policy_load: %s: no requests\n", path);
		exit(2);
	}
	*n_out = n;
	return t;
}

/* expand - t with "{n}" replaced by num; caller frees. */
static char *expand(const struct tmpl *t, long num, size_t *len_out)
{
	char digits[32];
	int dl = snprintf(digits, sizeof digits, "%ld", num);
	size_t cap = t->len + 1, len = 0;
	for (const char *p = t->text; (p = strstr(p, "{n}")); p += 3)
		cap += (size_t)dl;
	char *out = xmalloc(cap);
	for (const char *p = t->text; *p;) {
		if (p[0] == '{' && p[1] == 'n' && p[2] == '}') {
			memcpy(out + len, digits, (size_t)dl);
			len += (size_t)dl;
			p += 3;
		} else {
			out[len++] = *p++;
		}
	}
	out[len] = 0;
	*len_out = len;
	return out;
}

static int connect_one(void)
{
	int fd = lc_dial(spec);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void count_action(const char *reply)
{
	const char *a = reply + 7;	/* after "action=" */
	size_t l = strcspn(a, " \t\n");
	if (l >= sizeof actions[0].word)
		l = sizeof actions[0].word - 1;
	for (int i = 0; i < nactions; i++)
		if (strlen(actions[i].word) == l && !strncmp(actions[i].word, a, l)) {
			actions[i].n++;
			return;
		}
	if (nactions == MAX_ACTIONS)
		return;
	memcpy(actions[nactions].word, a, l);
	actions[nactions].word[l] = 0;
	actions[nactions++].n = 1;
}

static void conn_close(struct conn *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
}

/* flush - write what is pending; 0, or -1 (connection failed). */
static int flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			return 0;
		}
		if (w <= 0)
			return -1;
		c->out_off += (size_t)w;
	}
	free(c->out);
	c->out = NULL;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	return 0;
}

static void send_req(struct conn *c, const struct tmpl *t, long num)
{
	c->out = expand(t, num, &c->out_len);
	c->out_off = 0;
	c->busy = 1;
	c->in_len = 0;
	c->t0 = lc_now_ms();
	if (flush(c) < 0) {
		errors++;
		conn_close(c);
	}
}

/* next - hand c the next request of the sequence, if any. */
static void next(struct conn *c)
{
	c->busy = 0;
	if (next_req >= nreqs || c->fd < 0)
		return;
	long i = next_req++;
	send_req(c, &tmpls[(size_t)i % ntmpls], offset + i);
}

/* on_readable - read; a complete reply finishes the request. */
static void on_readable(struct conn *c)
{
	for (;;) {
		if (c->in_len == sizeof c->in - 1) {
			fprintf(stderr, "policy_load: reply too long\n");
			errors++;
			conn_close(c);
			return;
		}
		ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			if (c->busy) {
				fprintf(stderr, "policy_load: connection closed by the server\n");
				errors++;
			}
			conn_close(c);
			return;
		}
		c->in_len += (size_t)r;
		c->in[c->in_len] = 0;
		char *end = strstr(c->in, "\n\n");
		if (!end)
			continue;
		if (c->in + c->in_len != end + 2 || strncmp(c->in, "action=", 7)) {
			fprintf(stderr, "policy_load: unexpected reply: %.200s\n", c->in);
			errors++;
			conn_close(c);
			return;
		}
		if (c->warm) {
			c->warm = 0;
			c->busy = 0;
			return;
		}
		lat_ms[nlat++] = lc_now_ms() - c->t0;
		done_reqs++;
		count_action(c->in);
		next(c);
		return;
	}
}

/* run - the event loop until pending() is 0 or the deadline; 0 or -1 (timed out). */
static int run(struct conn *cs, int (*pending)(struct conn *), double deadline)
{
	struct epoll_event evs[256];
	while (pending(cs)) {
		int n = epoll_wait(ep, evs, 256, 1000);
		if (n < 0 && errno != EINTR)
			lc_die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->fd < 0)
				continue;
			if ((evs[i].events & EPOLLOUT) && c->out && flush(c) < 0) {
				errors++;
				conn_close(c);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				on_readable(c);
		}
		if (lc_now_ms() > deadline)
			return -1;
	}
	return 0;
}

static int warm_pending(struct conn *cs)
{
	for (int i = 0; i < nconns; i++)
		if (cs[i].fd >= 0 && cs[i].warm)
			return 1;
	return 0;
}

static int main_pending(struct conn *cs)
{
	for (int i = 0; i < nconns; i++)
		if (cs[i].fd >= 0 && cs[i].busy)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "s:r:c:n:o:W:T:")) != -1) {
		switch (ch) {
		case 's': spec = optarg; break;
		case 'r': req_file = optarg; break;
		case 'c': nconns = atoi(optarg); break;
		case 'n': nreqs = atol(optarg); break;
		case 'o': offset = atol(optarg); break;
		case 'W': warm_file = optarg; break;
		case 'T': timeout_s = atof(optarg); break;
		default:
			fprintf(stderr, "usage: policy_load -s inet:host:port|unix:/path -r REQFILE [-c CONNS] "
					"[-n REQUESTS] [-o OFFSET] [-W WARMFILE] [-T SECONDS]\n");
			return 2;
		}
	}
	if (!spec || !req_file || nconns < 1 || nconns > MAX_CONNS || nreqs < 1) {
		fprintf(stderr, "policy_load: -s and -r are required; 1 <= -c <= %d; -n >= 1\n", MAX_CONNS);
		return 2;
	}
	tmpls = read_templates(req_file, &ntmpls);
	if (warm_file) {
		size_t nw;
		struct tmpl *w = read_templates(warm_file, &nw);
		warm_tmpl = w[0];
	}
	lat_ms = xmalloc((size_t)nreqs * sizeof(*lat_ms));
	ep = epoll_create1(0);
	if (ep < 0)
		lc_die("epoll_create1");
	struct conn *cs = calloc((size_t)nconns, sizeof(*cs));
	if (!cs)
		lc_die("calloc");
	double deadline = lc_now_ms() + timeout_s * 1000;
	for (int i = 0; i < nconns; i++) {
		cs[i].fd = connect_one();
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
			lc_die("epoll_ctl");
		if (warm_file) {
			cs[i].warm = 1;
			send_req(&cs[i], &warm_tmpl, i);
		}
	}
	if (warm_file && run(cs, warm_pending, deadline) < 0) {
		fprintf(stderr, "policy_load: warm-up timed out\n");
		return 1;
	}
	long warm_errors = errors;
	double t0 = lc_now_ms();
	for (int i = 0; i < nconns; i++)
		if (cs[i].fd >= 0)
			next(&cs[i]);
	int to = run(cs, main_pending, deadline);
	double secs = (lc_now_ms() - t0) / 1000;
	if (to < 0)
		fprintf(stderr, "policy_load: timed out after %.0f s\n", timeout_s);
	for (int i = 0; i < nconns; i++)
		conn_close(&cs[i]);
	qsort(lat_ms, (size_t)nlat, sizeof(*lat_ms), lc_cmp_double);
	double p50 = nlat ? lat_ms[nlat / 2] : 0;
	double p99 = nlat ? lat_ms[nlat - 1 < (long)(nlat * 0.99) ? nlat - 1 : (long)(nlat * 0.99)] : 0;
	printf("{\"reqs\": %ld, \"secs\": %.4f, \"req_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
	       "\"errors\": %ld, \"warm_errors\": %ld, \"actions\": {",
	       done_reqs, secs, secs > 0 ? done_reqs / secs : 0.0, p50, p99, errors - warm_errors,
	       warm_errors);
	for (int i = 0; i < nactions; i++) {
		printf("%s\"", i ? ", " : "");
		for (const char *p = actions[i].word; *p; p++)
			if (*p == '"' || *p == '\\')
				printf("\\%c", *p);
			else if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
				putchar(*p);
		printf("\": %ld", actions[i].n);
	}
	printf("}}\n");
	return errors || to < 0 || done_reqs < nreqs ? 1 : 0;
}
