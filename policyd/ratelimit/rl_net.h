/*
 * rl_net: IP addresses and networks as text, for rules, client_net and
 * allow lists. Owns parsing ("192.0.2.0/24", "2001:db8::/32", v4-mapped
 * v6 taken as v4), containment and masking to a prefix.
 */
#ifndef SLUICE_RL_NET_H
#define SLUICE_RL_NET_H

#include <stddef.h>

struct rl_net {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int prefix;
};

/* rl_net_parse - "addr[/prefix]" (host bits may be set); 0 or -1. */
int rl_net_parse(const char *s, struct rl_net *out);
/* rl_net_contains - 1 if the address text ip (a "/nn" suffix is ignored) is inside n. */
int rl_net_contains(const struct rl_net *n, const char *ip);
/* rl_net_of - "net/prefix" text of ip masked to prefix4 or prefix6; -1 if ip is no address. */
int rl_net_of(const char *ip, int prefix4, int prefix6, char *out, size_t outlen);

#endif
