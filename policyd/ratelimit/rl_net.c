/*
 * rl_net: see rl_net.h.
 */
#include "policyd/ratelimit/rl_net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* ip_bytes - address text (up to a '/') to family + bytes; 0 or -1. */
static int ip_bytes(const char *s, size_t len, int *family, unsigned char *a)
{
	char buf[INET6_ADDRSTRLEN + 1];

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, s, len);
	buf[len] = 0;
	if (inet_pton(AF_INET, buf, a) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, a) != 1)
		return -1;
	if (!memcmp(a, v4mapped, 12)) {
		memmove(a, a + 12, 4);
		*family = AF_INET;
	} else {
		*family = AF_INET6;
	}
	return 0;
}

int rl_net_parse(const char *s, struct rl_net *n)
{
	const char *sl = strchr(s, '/');

	memset(n, 0, sizeof(*n));
	if (ip_bytes(s, sl ? (size_t)(sl - s) : strlen(s), &n->family, n->addr) < 0)
		return -1;
	n->prefix = n->family == AF_INET ? 32 : 128;
	if (sl) {
		char *end;
		long p = strtol(sl + 1, &end, 10);
		if (!sl[1] || *end || p < 0 || p > n->prefix)
			return -1;
		n->prefix = (int)p;
	}
	return 0;
}

static int prefix_equal(const unsigned char *x, const unsigned char *y, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;

	if (memcmp(x, y, (size_t)full))
		return 0;
	if (!rest)
		return 1;
	unsigned char m = (unsigned char)(0xff << (8 - rest));
	return (x[full] & m) == (y[full] & m);
}

int rl_net_contains(const struct rl_net *n, const char *ip)
{
	unsigned char a[16];
	int fam;

	if (!ip || ip_bytes(ip, strcspn(ip, "/"), &fam, a) < 0)
		return 0;
	return fam == n->family && prefix_equal(n->addr, a, n->prefix);
}

static void mask(unsigned char *a, int bytes, int prefix)
{
	for (int i = 0; i < bytes; i++) {
		int bits = prefix - 8 * i;
		if (bits < 8)
			a[i] = bits <= 0 ? 0 : (unsigned char)(a[i] & (0xff << (8 - bits)));
	}
}

int rl_net_of(const char *ip, int prefix4, int prefix6, char *out, size_t outlen)
{
	unsigned char a[16];
	char txt[INET6_ADDRSTRLEN];
	int fam;

	if (!ip || ip_bytes(ip, strlen(ip), &fam, a) < 0)
		return -1;
	int prefix = fam == AF_INET ? prefix4 : prefix6;
	mask(a, fam == AF_INET ? 4 : 16, prefix);
	inet_ntop(fam, a, txt, sizeof txt);
	snprintf(out, outlen, "%s/%d", txt, prefix);
	return 0;
}
