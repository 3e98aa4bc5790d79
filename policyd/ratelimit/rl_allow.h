/*
 * rl_allow: greylisting allow lists in postgrey's whitelist file formats
 * (postgrey_whitelist_clients, postgrey_whitelist_recipients), so those
 * files work unchanged. Owns reading them and matching.
 * Clients: a line is a domain (matches that host name and every name
 * below it), an address, a network (a.b.c.d/nn, v6/nn), an address prefix
 * ("192.168.1" matches 192.168.1.*), or /regex/ against the client name.
 * Recipients: "user@domain", "user@" (any domain), a domain (and below),
 * or /regex/ against the address. '#' comments; case-insensitive.
 */
#ifndef SLUICE_RL_ALLOW_H
#define SLUICE_RL_ALLOW_H

#include <stddef.h>

struct rl_allow;

/* rl_allow_load - read files (NULL-terminated n paths); NULL with *err_out "file:line: why". */
struct rl_allow *rl_allow_load(const char *const *files, size_t n, char **err_out);
void rl_allow_free(struct rl_allow **a);

/* rl_allow_client - 1 if the client (name may be NULL/"unknown") is listed. */
int rl_allow_client(const struct rl_allow *a, const char *name, const char *addr);
/* rl_allow_rcpt - 1 if the recipient address is listed. */
int rl_allow_rcpt(const struct rl_allow *a, const char *rcpt);

#endif
