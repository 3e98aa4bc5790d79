/*
 * rspamd_load: an HTTP load client for Rspamd's /checkv2, for bench_spam.py
 * (the counterpart of milter_load.c on the Rspamd side).
 * Owns: C concurrent connections (one thread each, HTTP/1.1 keep-alive,
 * reconnecting when Rspamd closes), each sending its share of N requests
 * drawn in turn from a list of message files (POST /checkv2 with the
 * message as body and the envelope in Rspamd's request headers: IP,
 * Hostname, Helo, From, Rcpt, as its milter proxy passes them); measures
 * per-message latency (request sent -> whole reply read).
 * Leaves: the daemon, the corpus and reporting to bench_spam.py.
 *
 * Usage: rspamd_load -s HOST:PORT -l LISTFILE [-c CONNS] [-n MESSAGES]
 *                    [-a CLIENT_ADDR] [-H HELO] [-f SENDER] [-t RECIPIENT]
 * LISTFILE: one message path a line (all read into memory first).
 * Prints one JSON line: msgs, secs, msgs_per_s, p50_ms, p99_ms, errors
 * (non-200 replies), and the counts of each "action" Rspamd answered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load_common.h"

struct msg { char *data; size_t len; };

static const char *host = "127.0.0.1", *port = "11333";
static const char *client_addr = "127.0.0.1", *helo_name = "client.test";
static const char *env_from = "alice@example.com", *env_rcpt = "bob@example.net";
static struct msg *msgs;
static size_t nmsgfiles;
static int nconns = 1, nreq = 1000;
static double *lat_ms;
static int lat_n, errors;
static unsigned next_msg;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

#define NACTIONS 8
static const char *action_names[NACTIONS] = {
	"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject", "discard", "other"
};
static int action_count[NACTIONS];

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* a growing receive buffer */
struct rbuf { char *b; size_t n, cap; };

static ssize_t fill(int fd, struct rbuf *r)
{
	if (r->cap - r->n < 65536) {
		r->cap = r->cap * 2 + 65536;
		r->b = realloc(r->b, r->cap + 1);
		if (!r->b)
			lc_die("realloc");
	}
	ssize_t got;
	do
		got = read(fd, r->b + r->n, r->cap - r->n);
	while (got < 0 && errno == EINTR);
	if (got > 0) {
		r->n += (size_t)got;
		r->b[r->n] = 0;
	}
	return got;
}

/* One request on *fd (reconnecting once if the kept-alive connection was
 * closed before any reply byte). Returns the HTTP status, 0 on a transport
 * failure; *action_out: index into action_names. */
static int request(int *fd, const struct msg *m, int *action_out)
{
	char head[2048];
	int hl = snprintf(head, sizeof(head),
			  "POST /checkv2 HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n"
			  "IP: %s\r\nHostname: client.test\r\nHelo: %s\r\nFrom: %s\r\nRcpt: %s\r\n"
			  "Content-Length: %zu\r\n\r\n",
			  host, client_addr, helo_name, env_from, env_rcpt, m->len);
	struct rbuf r = { 0 };
	for (int attempt = 0; attempt < 2; attempt++) {
		if (*fd < 0)
			*fd = lc_dial_tcp(host, port);
		if (write_all(*fd, head, (size_t)hl) || write_all(*fd, m->data, m->len)) {
			close(*fd);
			*fd = -1;
			continue;
		}
		r.n = 0;
		char *eoh = NULL;
		ssize_t got = 1;
		while (!eoh && (got = fill(*fd, &r)) > 0)
			eoh = strstr(r.b, "\r\n\r\n");
		if (!eoh) {
			close(*fd);
			*fd = -1;
			if (r.n == 0 && attempt == 0)
				continue;	/* closed while idle: once more on a new connection */
			free(r.b);
			return 0;
		}
		int status = 0;
		sscanf(r.b, "HTTP/%*s %d", &status);
		size_t clen = 0;
		int has_clen = 0, closes = 0;
		for (char *l = strstr(r.b, "\r\n"); l && l < eoh; l = strstr(l + 2, "\r\n")) {
			if (!strncasecmp(l + 2, "Content-Length:", 15)) {
				clen = strtoul(l + 17, NULL, 10);
				has_clen = 1;
			} else if (!strncasecmp(l + 2, "Connection: close", 17)) {
				closes = 1;
			}
		}
		size_t hdr_len = (size_t)(eoh + 4 - r.b);
		if (has_clen) {
			while (r.n < hdr_len + clen && fill(*fd, &r) > 0)
				;
		} else {	/* body up to the end of the connection */
			while (fill(*fd, &r) > 0)
				;
			closes = 1;
		}
		if (closes) {
			close(*fd);
			*fd = -1;
		}
		*action_out = NACTIONS - 1;
		char *a = strstr(r.b + hdr_len, "\"action\"");
		if (a && (a = strchr(a + 8, '"'))) {
			a++;
			for (int i = 0; i < NACTIONS - 1; i++) {
				size_t al = strlen(action_names[i]);
				if (!strncmp(a, action_names[i], al) && a[al] == '"')
					*action_out = i;
			}
		}
		free(r.b);
		return status;
	}
	free(r.b);
	return 0;
}

static void *worker(void *arg)
{
	int count = (int)(intptr_t)arg;
	double *mine = calloc((size_t)count, sizeof(double));
	int myerr = 0, myact[NACTIONS] = { 0 };
	int fd = -1;
	for (int i = 0; i < count; i++) {
		unsigned k = __atomic_fetch_add(&next_msg, 1, __ATOMIC_RELAXED);
		double t0 = lc_now_ms();
		int action = NACTIONS - 1;
		int status = request(&fd, &msgs[k % nmsgfiles], &action);
		mine[i] = lc_now_ms() - t0;
		if (status != 200)
			myerr++;
		else
			myact[action]++;
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&mu);
	memcpy(lat_ms + lat_n, mine, (size_t)count * sizeof(double));
	lat_n += count;
	errors += myerr;
	for (int i = 0; i < NACTIONS; i++)
		action_count[i] += myact[i];
	pthread_mutex_unlock(&mu);
	free(mine);
	return NULL;
}

static void load_list(const char *list)
{
	FILE *lf = fopen(list, "r");
	if (!lf)
		lc_die(list);
	char path[4096];
	size_t cap = 0;
	while (fgets(path, sizeof(path), lf)) {
		path[strcspn(path, "\r\n")] = 0;
		if (!path[0])
			continue;
		FILE *f = fopen(path, "rb");
		if (!f)
			lc_die(path);
		if (nmsgfiles == cap) {
			cap = cap * 2 + 64;
			msgs = realloc(msgs, cap * sizeof(*msgs));
		}
		struct msg *m = &msgs[nmsgfiles++];
		fseek(f, 0, SEEK_END);
		m->len = (size_t)ftell(f);
		rewind(f);
		m->data = malloc(m->len + 1);
		if (fread(m->data, 1, m->len, f) != m->len)
			lc_die("read");
		fclose(f);
	}
	fclose(lf);
	if (!nmsgfiles) {
		fprintf(stderr, "rspamd_load: %s lists no message\n", list);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	const char *list = NULL;
	char hostbuf[256];
	int ch;
	while ((ch = getopt(argc, argv, "s:l:c:n:a:H:f:t:")) != -1) {
		switch (ch) {
		case 's': {
			const char *colon = strrchr(optarg, ':');
			if (!colon)
				return 2;
			snprintf(hostbuf, sizeof(hostbuf), "%.*s", (int)(colon - optarg), optarg);
			host = hostbuf;
			port = colon + 1;
			break;
		}
		case 'l': list = optarg; break;
		case 'c': nconns = atoi(optarg); break;
		case 'n': nreq = atoi(optarg); break;
		case 'a': client_addr = optarg; break;
		case 'H': helo_name = optarg; break;
		case 'f': env_from = optarg; break;
		case 't': env_rcpt = optarg; break;
		default:
			fprintf(stderr, "usage: rspamd_load -s HOST:PORT -l LISTFILE [-c CONNS] [-n N] [-a ADDR] "
				"[-H HELO] [-f SENDER] [-t RCPT]\n");
			return 2;
		}
	}
	if (!list || nconns < 1 || nreq < nconns)
		return 2;
	if (nconns > 256)
		nconns = 256;
	load_list(list);
	lat_ms = calloc((size_t)nreq, sizeof(double));
	pthread_t th[256];
	double t0 = lc_now_ms();
	for (int i = 0; i < nconns; i++) {
		int share = nreq / nconns + (i < nreq % nconns);
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)share);
	}
	for (int i = 0; i < nconns; i++)
		pthread_join(th[i], NULL);
	double secs = (lc_now_ms() - t0) / 1e3;
	qsort(lat_ms, (size_t)lat_n, sizeof(double), lc_cmp_double);
	size_t i99 = (size_t)(lat_n * 0.99);
	if (i99 >= (size_t)lat_n)
		i99 = (size_t)lat_n - 1;
	printf("{\"msgs\": %d, \"secs\": %.4f, \"msgs_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
	       "\"errors\": %d, \"actions\": {", lat_n, secs, lat_n / secs, lat_ms[lat_n / 2], lat_ms[i99], errors);
	for (int a = 0, first = 1; a < NACTIONS; a++) {
		if (action_count[a]) {
			printf("%s\"%s\": %d", first ? "" : ", ", action_names[a], action_count[a]);
			first = 0;
		}
	}
	printf("}}\n");
	return 0;
}
