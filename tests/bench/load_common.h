/*
 * load_common: what the C load clients of the benchmarks share
 * (milter_load.c, policy_load.c, rspamd_load.c; each is compiled alone by
 * its bench script, so this header holds the functions themselves, static).
 * Owns: the monotonic clock in ms, dying with errno's text, connecting to
 * a server spec ("unix:/path", "inet:host:port", "host:port", "[v6]:port";
 * TCP_NODELAY on TCP), the comparison of doubles for qsort (latencies).
 * Leaves: the protocols and the reporting to each client.
 */
#ifndef SLUICE_BENCH_LOAD_COMMON_H
#define SLUICE_BENCH_LOAD_COMMON_H

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static inline double lc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* perror(what), exit 1 */
static inline void lc_die(const char *what)
{
	perror(what);
	exit(1);
}

/* a connected socket to host:port (TCP_NODELAY), or exit: 2 for a name
   that does not resolve, 1 (lc_die) for a refused connection */
static inline int lc_dial_tcp(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		fprintf(stderr, "%s:%s: %s\n", host, port, gai_strerror(rc));
		exit(2);
	}
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		lc_die("connect");
	freeaddrinfo(ai);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* a connected socket to spec ("unix:/path", "inet:host:port", "host:port",
   "[v6]:port"), or exit (2: a spec that is none of those) */
static inline int lc_dial(const char *spec)
{
	if (!strncmp(spec, "unix:", 5)) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		snprintf(sun.sun_path, sizeof sun.sun_path, "%s", spec + 5);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0)
			lc_die(spec);
		return fd;
	}
	const char *hp = !strncmp(spec, "inet:", 5) ? spec + 5 : spec;
	const char *colon = strrchr(hp, ':');
	if (!colon) {
		fprintf(stderr, "%s: expected inet:host:port or unix:/path\n", spec);
		exit(2);
	}
	char host[256];
	snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	return lc_dial_tcp(host, colon + 1);
}

/* qsort order of doubles, ascending */
static inline int lc_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#endif
