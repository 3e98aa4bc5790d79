/*
 * spam_net: CIDR lists. See spam_net.h.
 */
#include "milters/spam/spam_net.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

struct cidr {
	unsigned char addr[16];
	int v6;
	int bits;
};

struct spam_net {
	struct cidr *c;
	size_t n;
};

/* to_bytes - text -> 16 bytes (IPv4 as v4-mapped); 1 = v6 proper, 0 = v4, -1 = bad. */
static int to_bytes(const char *s, unsigned char out[16])
{
	unsigned char v4[4];
	if (inet_pton(AF_INET, s, v4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, v4, 4);
		return 0;
	}
	if (inet_pton(AF_INET6, s, out) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		return memcmp(out, mapped, 12) == 0 ? 0 : 1;
	}
	return -1;
}

struct spam_net *spam_net_new(const char *const *items, size_t n, char **err_out)
{
	struct spam_net *net = xcalloc(1, sizeof(*net));
	net->c = xcalloc(n + 1, sizeof(*net->c));
	for (size_t i = 0; i < n; i++) {
		char *t = xstrdup(items[i]);
		char *slash = strchr(t, '/');
		int bits = -1;
		if (slash) {
			*slash = 0;
			char *end;
			long b = strtol(slash + 1, &end, 10);
			if (*end || end == slash + 1 || b < 0 || b > 128) {
				*err_out = xasprintf("bad network \"%s\"", items[i]);
				free(t);
				spam_net_free(&net);
				return NULL;
			}
			bits = (int)b;
		}
		char *a = t;
		size_t l = strlen(a);
		if (l >= 2 && a[0] == '[' && a[l - 1] == ']') {
			a[l - 1] = 0;
			a++;
		}
		struct cidr *c = &net->c[net->n];
		int kind = to_bytes(a, c->addr);
		if (kind < 0 || (kind == 0 && bits > 32)) {
			*err_out = xasprintf("bad network \"%s\"", items[i]);
			free(t);
			spam_net_free(&net);
			return NULL;
		}
		c->v6 = kind;
		c->bits = bits < 0 ? 128 : kind == 0 ? bits + 96 : bits;
		net->n++;
		free(t);
	}
	return net;
}

int spam_net_match(const struct spam_net *net, const char *addr)
{
	if (net == NULL || addr == NULL)
		return 0;
	unsigned char a[16];
	if (to_bytes(addr, a) < 0)
		return 0;
	for (size_t i = 0; i < net->n; i++) {
		const struct cidr *c = &net->c[i];
		int full = c->bits / 8, rest = c->bits % 8;
		if (memcmp(a, c->addr, (size_t)full))
			continue;
		if (rest && ((a[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff))
			continue;
		return 1;
	}
	return 0;
}

void spam_net_free(struct spam_net **np)
{
	if (np == NULL || *np == NULL)
		return;
	free((*np)->c);
	free(*np);
	*np = NULL;
}
