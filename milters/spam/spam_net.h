/*
 * spam_net: address lists such as spam_trusted_networks and mynetworks
 * ("192.0.2.0/24, [2001:db8::]/32, 127.0.0.1"): parse once, match often.
 * Leaves: where the lists come from (spam_cfg).
 */
#ifndef SLUICE_SPAM_NET_H
#define SLUICE_SPAM_NET_H

#include <stddef.h>

struct spam_net;

/* spam_net_new - items as in mynetworks; NULL with *err_out (caller frees) naming the bad item. */
struct spam_net *spam_net_new(const char *const *items, size_t n, char **err_out);
/* spam_net_match - 1 if addr (IPv4/IPv6 text, v4-mapped accepted) is in the list. */
int spam_net_match(const struct spam_net *net, const char *addr);
void spam_net_free(struct spam_net **net);

#endif
