/*
 * milter_load: a milter-protocol (v6) load client for bench_dkim.py.
 * Owns: plays the MTA side against one milter socket with C concurrent
 * connections, each sending its share of N copies of one message (one
 * milter connection per thread, many messages on it, like one SMTP session
 * carrying many messages); honours the filter's negotiated skip/no-reply
 * steps and HDR_LEADSPC; measures per-message latency (MAIL sent -> final
 * end-of-message reply).
 * Leaves: daemons, keys, DNS, repetitions and reporting to bench_dkim.py.
 *
 * Usage: milter_load -s unix:/path|inet:host:port -m MSGFILE [-c CONNS]
 *                    [-n MESSAGES] [-a CLIENT_ADDR] [-H HELO] [-f SENDER]
 *                    [-t RECIPIENT] [-r]
 *        milter_load -s ... -l LISTFILE ...
 * -r: a new milter connection (and negotiation) per message, as an MTA does
 *     for one message per SMTP session.
 * -H: send a HELO event with this name (default: none, as before).
 * -f, -t: the envelope (default alice@example.com, bob@example.net).
 * -l: instead of -m, a file naming one message file a line (all read and
 *     parsed first); the connections take them in turn, round robin over the
 *     list (bench_spam.py: a corpus's test part).
 * Prints one JSON line: msgs, secs, msgs_per_s, p50_ms, p99_ms, errors,
 * and the filter's first added headers (for a correctness check).
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
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "load_common.h"

#define NR_CONN 0x1000u
#define NR_MAIL 0x4000u
#define NR_HDR 0x80u
#define NR_EOH 0x40000u
#define NR_BODY 0x80000u
#define NO_CONNECT 0x1u
#define NO_HELO 0x2u
#define NR_HELO 0x2000u
#define NO_MAIL 0x4u
#define NO_RCPT 0x8u
#define NO_DATA_STEP 0x200u
#define NR_RCPT 0x8000u
#define NR_DATA 0x10000u
#define NO_BODY 0x10u
#define NO_HDRS 0x20u
#define NO_EOH 0x40u
#define HDR_LEADSPC 0x100000u

static const char *spec, *client_addr = "127.0.0.1", *helo_name;
static const char *env_from = "alice@example.com", *env_rcpt = "bob@example.net";
static int nconns = 1, nmsgs = 1000;
static char per_message;	/* 0: one connection for all; 'r': reconnect per message */
static double *lat_ms;
static int lat_n;
static int errors;
static char first_mods[4096];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

struct hdr { char *name, *value; };
struct message {
	struct hdr *hdrs;
	int nhdrs;
	const char *body;
	size_t body_len;
};
static struct message *messages;
static size_t nmessages;
static unsigned next_message;	/* round robin over messages (atomic) */

/* outgoing packets are collected and written in one write() before each wait */
struct out { char *b; size_t n, cap; };

static void put(struct out *o, char cmd, const void *data, size_t len)
{
	if (o->n + len + 5 > o->cap) {
		o->cap = (o->n + len + 5) * 2;
		o->b = realloc(o->b, o->cap);
	}
	uint32_t l = htonl((uint32_t)len + 1);
	memcpy(o->b + o->n, &l, 4);
	o->b[o->n + 4] = cmd;
	memcpy(o->b + o->n + 5, data, len);
	o->n += len + 5;
}

static void flush(int fd, struct out *o)
{
	if (getenv("MILTER_LOAD_DEBUG") && o->n)
		fprintf(stderr, "send %zu bytes\n", o->n);
	size_t off = 0;
	while (off < o->n) {
		ssize_t w = write(fd, o->b + off, o->n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			lc_die("write");
		}
		off += (size_t)w;
	}
	o->n = 0;
}

static void readn(int fd, void *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = read(fd, (char *)p + off, n - off);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			fprintf(stderr, "milter_load: connection closed by filter\n");
			exit(1);
		}
		off += (size_t)r;
	}
}

/* read one reply packet; returns its command, data in *buf (len *len) */
static char reply(int fd, char **buf, uint32_t *len)
{
	uint32_t l;
	readn(fd, &l, 4);
	l = ntohl(l);
	if (l == 0 || l > (1u << 24)) {
		fprintf(stderr, "milter_load: bad packet length %u\n", l);
		exit(1);
	}
	char cmd;
	readn(fd, &cmd, 1);
	if (getenv("MILTER_LOAD_DEBUG"))
		fprintf(stderr, "reply '%c' (%u bytes)\n", cmd, l - 1);
	*buf = realloc(*buf, l);
	readn(fd, *buf, l - 1);
	*len = l - 1;
	return cmd;
}

/* wait for an accept/continue-type reply, skipping progress */
static char wait_simple(int fd, char **buf, uint32_t *len)
{
	char c;
	while ((c = reply(fd, buf, len)) == 'p')
		;
	return c;
}

/* negotiate on fd; returns the agreed protocol flags */
static uint32_t negotiate(int fd, struct out *o, char **buf, uint32_t *len)
{
	uint32_t neg[3] = { htonl(6), htonl(0x1FF), htonl(0x1FFFFF) };
	put(o, 'O', neg, sizeof(neg));
	flush(fd, o);
	if (reply(fd, buf, len) != 'O' || *len < 12) {
		fprintf(stderr, "milter_load: bad option negotiation\n");
		exit(1);
	}
	uint32_t proto;
	memcpy(&proto, *buf + 8, 4);
	proto = ntohl(proto);
	if (getenv("MILTER_LOAD_DEBUG"))
		fprintf(stderr, "negotiated protocol 0x%x\n", proto);
	return proto;
}

/* open + negotiate */
static int session_open(struct out *o, char **buf, uint32_t *len, uint32_t *proto_out)
{
	int fd = lc_dial(spec);
	*proto_out = negotiate(fd, o, buf, len);
	return fd;
}

/* the SMTP connection event: macros, then C (unless skipped) */
static void session_connect(int fd, uint32_t proto, struct out *o, char **buf, uint32_t *len)
{
	const char mc[] = "Cj\0mx.test\0{daemon_name}\0bench\0";
	put(o, 'D', mc, sizeof(mc) - 1);
	if (!(proto & NO_CONNECT)) {
		char c[512];
		size_t n = 0;
		n += (size_t)sprintf(c + n, "client.test") + 1;
		c[n++] = '4';
		uint16_t port = htons(4242);
		memcpy(c + n, &port, 2);
		n += 2;
		n += (size_t)sprintf(c + n, "%s", client_addr) + 1;
		put(o, 'C', c, n);
		flush(fd, o);
		if (!(proto & NR_CONN))
			wait_simple(fd, buf, len);
	}
	if (helo_name && !(proto & NO_HELO)) {
		put(o, 'H', helo_name, strlen(helo_name) + 1);
		flush(fd, o);
		if (!(proto & NR_HELO))
			wait_simple(fd, buf, len);
	}
}

static void *worker(void *arg)
{
	int count = (int)(intptr_t)arg;
	struct out o = { 0 };
	char *buf = NULL;
	uint32_t len, proto;
	int fd = session_open(&o, &buf, &len, &proto);
	int lead = (proto & HDR_LEADSPC) != 0;
	session_connect(fd, proto, &o, &buf, &len);
	double *mine = calloc((size_t)count, sizeof(double));
	int myerr = 0;
	for (int i = 0; i < count; i++) {
		const struct message *msg = &messages[__atomic_fetch_add(&next_message, 1, __ATOMIC_RELAXED) % nmessages];
		double t0 = lc_now_ms();
		if (i > 0 && per_message == 'r') {	/* one milter connection per message */
			put(&o, 'Q', "", 0);
			flush(fd, &o);
			close(fd);
			fd = session_open(&o, &buf, &len, &proto);
			session_connect(fd, proto, &o, &buf, &len);
		}
		char m[128];
		int n = snprintf(m, sizeof(m), "Mi%c%08X%04X%c", 0, (unsigned)i, (unsigned)(uintptr_t)pthread_self() & 0xFFFF, 0);
		put(&o, 'D', m, (size_t)n);
		if (!(proto & NO_MAIL)) {
			char from[512];
			int fl = snprintf(from, sizeof(from), "<%s>", env_from);
			put(&o, 'M', from, (size_t)fl + 1);
			flush(fd, &o);
			if (!(proto & NR_MAIL))
				wait_simple(fd, &buf, &len);
		}
		if (!(proto & NO_RCPT)) {
			char to[512];
			int tl = snprintf(to, sizeof(to), "<%s>", env_rcpt);
			put(&o, 'R', to, (size_t)tl + 1);
			flush(fd, &o);
			if (!(proto & NR_RCPT))
				wait_simple(fd, &buf, &len);
		}
		if (!(proto & NO_DATA_STEP)) {
			put(&o, 'T', "", 0);
			flush(fd, &o);
			if (!(proto & NR_DATA))
				wait_simple(fd, &buf, &len);
		}
		if (!(proto & NO_HDRS)) {
			for (int h = 0; h < msg->nhdrs; h++) {
				char hb[8192];
				size_t nl = strlen(msg->hdrs[h].name) + 1;
				const char *v = msg->hdrs[h].value;
				if (!lead && *v == ' ')
					v++;
				size_t vl = strlen(v) + 1;
				if (nl + vl > sizeof(hb))
					continue;
				memcpy(hb, msg->hdrs[h].name, nl);
				memcpy(hb + nl, v, vl);
				put(&o, 'L', hb, nl + vl);
				if (!(proto & NR_HDR)) {
					flush(fd, &o);
					wait_simple(fd, &buf, &len);
				}
			}
		}
		if (!(proto & NO_EOH)) {
			put(&o, 'N', "", 0);
			if (!(proto & NR_EOH)) {
				flush(fd, &o);
				wait_simple(fd, &buf, &len);
			}
		}
		if (!(proto & NO_BODY)) {
			for (size_t off = 0; off < msg->body_len; off += 65535) {
				size_t n2 = msg->body_len - off > 65535 ? 65535 : msg->body_len - off;
				put(&o, 'B', msg->body + off, n2);
				if (!(proto & NR_BODY)) {
					flush(fd, &o);
					wait_simple(fd, &buf, &len);
				}
			}
		}
		put(&o, 'E', "", 0);
		flush(fd, &o);
		char mods[4096];
		size_t ml = 0;
		mods[0] = 0;
		for (;;) {
			char c = reply(fd, &buf, &len);
			if (c == 'p')
				continue;
			if (c == 'h' || c == 'i' || c == 'm') {
				/* 'i'/'m' start with a 4-byte index */
				size_t skip = c == 'h' ? 0 : 4;
				if (len > skip && ml < sizeof(mods) - 1) {
					const char *name = buf + skip;
					const char *val = name + strnlen(name, len - skip) + 1;
					int w = snprintf(mods + ml, sizeof(mods) - ml, "%s:%.*s\n", name,
							 (int)(buf + len - val), val);
					if (w > 0)
						ml += (size_t)w < sizeof(mods) - ml ? (size_t)w : sizeof(mods) - ml - 1;
				}
				continue;
			}
			if (c == 'a' || c == 'c')
				break;
			myerr++;	/* r, t, d, y, ...: counted as an error */
			break;
		}
		mine[i] = lc_now_ms() - t0;
		if (i == 0) {
			pthread_mutex_lock(&mu);
			if (!first_mods[0])
				snprintf(first_mods, sizeof(first_mods), "%s", mods);
			pthread_mutex_unlock(&mu);
		}
	}
	put(&o, 'Q', "", 0);
	flush(fd, &o);
	close(fd);
	pthread_mutex_lock(&mu);
	memcpy(lat_ms + lat_n, mine, (size_t)count * sizeof(double));
	lat_n += count;
	errors += myerr;
	pthread_mutex_unlock(&mu);
	free(mine);
	free(buf);
	free(o.b);
	return NULL;
}

/* split msg (LF or CRLF) into headers (unfolded values keep CRLF folds) and a
 * CRLF body, kept in *out (msg is not referenced afterwards); a message
 * without an empty line is all headers and no body */
static void parse_message(const char *msg, size_t msg_len, struct message *out)
{
	char *crlf = malloc(msg_len * 2 + 3);
	size_t n = 0;
	for (size_t i = 0; i < msg_len; i++) {
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			crlf[n++] = '\r';
		crlf[n++] = msg[i];
	}
	crlf[n] = 0;
	char *sep = strstr(crlf, "\r\n\r\n");
	struct hdr *hdrs = NULL;
	int nhdrs = 0;
	if (sep) {
		*sep = 0;
		out->body = sep + 4;
		out->body_len = n - (size_t)(sep + 4 - crlf);
	} else {
		out->body = "";
		out->body_len = 0;
	}
	char *p = crlf;
	while (*p) {
		char *end = p;
		for (;;) {	/* header ends at CRLF not followed by WSP */
			end = strstr(end, "\r\n");
			if (!end || (end[2] != ' ' && end[2] != '\t'))
				break;
			end += 2;
		}
		char *next = end ? end + 2 : p + strlen(p);
		if (end)
			*end = 0;
		char *colon = strchr(p, ':');
		if (colon) {
			*colon = 0;
			hdrs = realloc(hdrs, sizeof(*hdrs) * (size_t)(nhdrs + 1));
			hdrs[nhdrs].name = p;
			hdrs[nhdrs].value = colon + 1;	/* with its leading space (LEADSPC form) */
			nhdrs++;
		}
		p = next;
	}
	out->hdrs = hdrs;
	out->nhdrs = nhdrs;
}

static void add_message_file(const char *file)
{
	FILE *f = fopen(file, "rb");
	if (!f)
		lc_die(file);
	fseek(f, 0, SEEK_END);
	size_t msg_len = (size_t)ftell(f);
	rewind(f);
	char *msg = malloc(msg_len + 1);
	if (fread(msg, 1, msg_len, f) != msg_len)
		lc_die("read");
	fclose(f);
	messages = realloc(messages, sizeof(*messages) * (nmessages + 1));
	parse_message(msg, msg_len, &messages[nmessages++]);
	free(msg);
}

int main(int argc, char **argv)
{
	const char *file = NULL, *list = NULL;
	int ch;
	while ((ch = getopt(argc, argv, "s:m:l:c:n:a:H:f:t:r")) != -1) {
		switch (ch) {
		case 's': spec = optarg; break;
		case 'm': file = optarg; break;
		case 'l': list = optarg; break;
		case 'c': nconns = atoi(optarg); break;
		case 'n': nmsgs = atoi(optarg); break;
		case 'a': client_addr = optarg; break;
		case 'r': per_message = 'r'; break;
		case 'H': helo_name = optarg; break;
		case 'f': env_from = optarg; break;
		case 't': env_rcpt = optarg; break;
		default:
			fprintf(stderr, "usage: milter_load -s SPEC -m MSG|-l LISTFILE [-c CONNS] [-n N] [-a ADDR] [-H HELO] "
				"[-f SENDER] [-t RCPT] [-r]\n");
			return 2;
		}
	}
	if (!spec || !file == !list || nconns < 1 || nmsgs < nconns)
		return 2;
	if (file) {
		add_message_file(file);
	} else {
		FILE *lf = fopen(list, "r");
		if (!lf)
			lc_die(list);
		char path[4096];
		while (fgets(path, sizeof(path), lf)) {
			path[strcspn(path, "\r\n")] = 0;
			if (path[0])
				add_message_file(path);
		}
		fclose(lf);
		if (!nmessages) {
			fprintf(stderr, "milter_load: %s lists no message\n", list);
			return 2;
		}
	}
	lat_ms = calloc((size_t)nmsgs, sizeof(double));
	pthread_t th[256];
	if (nconns > 256)
		nconns = 256;
	double t0 = lc_now_ms();
	for (int i = 0; i < nconns; i++) {
		int share = nmsgs / nconns + (i < nmsgs % nconns);
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)share);
	}
	for (int i = 0; i < nconns; i++)
		pthread_join(th[i], NULL);
	double secs = (lc_now_ms() - t0) / 1e3;
	qsort(lat_ms, (size_t)lat_n, sizeof(double), lc_cmp_double);
	double p50 = lat_ms[lat_n / 2], p99 = lat_ms[(size_t)(lat_n * 0.99) < (size_t)lat_n ? (size_t)(lat_n * 0.99) : (size_t)lat_n - 1];
	printf("{\"msgs\": %d, \"secs\": %.4f, \"msgs_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
	       "\"errors\": %d, \"first_mods\": \"", lat_n, secs, lat_n / secs, p50, p99, errors);
	for (const char *p = first_mods; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	printf("\"}\n");
	return 0;
}
