#include "mta/netlist.h"
#include "conf/table.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

struct net {
	int family;		/* 4 or 6, 0 = table */
	unsigned char addr[16];
	int prefix;
	struct table *table;
};

struct netlist {
	struct net *v;
	size_t n;
};

static int parse_addr(const char *s, unsigned char out[16], int *family)
{
	if (inet_pton(AF_INET, s, out) == 1) {
		*family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out) == 1) {
		*family = 6;
		return 0;
	}
	return -1;
}

static int parse_net(const char *item, struct net *n)
{
	char buf[128];
	if (strlen(item) >= sizeof buf)
		return -1;
	strcpy(buf, item);
	char *slash = strrchr(buf, '/');
	char *a = buf;
	if (slash)
		*slash = 0;
	if (a[0] == '[') {
		size_t l = strlen(a);
		if (l < 2 || a[l - 1] != ']')
			return -1;
		a[l - 1] = 0;
		a++;
	}
	if (parse_addr(a, n->addr, &n->family) < 0)
		return -1;
	int max = n->family == 4 ? 32 : 128;
	n->prefix = max;
	if (slash) {
		char *end;
		long p = strtol(slash + 1, &end, 10);
		if (*end || end == slash + 1 || p < 0 || p > max)
			return -1;
		n->prefix = (int)p;
	}
	return 0;
}

static int is_table_spec(const char *s)
{
	static const char *const types[] = { "hash:", "texthash:", "cidr:", "regexp:", "pcre:",
					      "static:", "inline:", NULL };
	for (int i = 0; types[i]; i++)
		if (strncmp(s, types[i], strlen(types[i])) == 0)
			return 1;
	return 0;
}

struct netlist *netlist_new(const char *const *items, size_t n, struct table_set *tables, char **err_out)
{
	struct netlist *nl = xcalloc(1, sizeof *nl);
	nl->v = xcalloc(n ? n : 1, sizeof *nl->v);
	for (size_t i = 0; i < n; i++) {
		struct net *e = &nl->v[nl->n];
		if (is_table_spec(items[i])) {
			e->table = table_set_get(tables, items[i], err_out);
			if (!e->table) {
				netlist_free(&nl);
				return NULL;
			}
		} else if (parse_net(items[i], e) < 0) {
			*err_out = xasprintf("bad network in list: \"%s\"", items[i]);
			netlist_free(&nl);
			return NULL;
		}
		nl->n++;
	}
	return nl;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
	int bytes = bits / 8, rest = bits % 8;
	if (memcmp(a, b, (size_t)bytes) != 0)
		return 0;
	if (!rest)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

int netlist_match(struct netlist *nl, const char *addr)
{
	unsigned char a[16];
	int fam;
	if (!nl || parse_addr(addr, a, &fam) < 0)
		return 0;
	/* IPv4-mapped IPv6 compares as IPv4 */
	if (fam == 6 && memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		memmove(a, a + 12, 4);
		fam = 4;
	}
	for (size_t i = 0; i < nl->n; i++) {
		struct net *e = &nl->v[i];
		if (e->table) {
			const char *v;
			if (table_lookup_client(e->table, NULL, addr, &v) == 1)
				return 1;
		} else if (e->family == fam && prefix_eq(a, e->addr, e->prefix)) {
			return 1;
		}
	}
	return 0;
}

void netlist_free(struct netlist **nlp)
{
	if (!*nlp)
		return;
	free((*nlp)->v);
	free(*nlp);
	*nlp = NULL;
}
