/*
 * netlist: a list of networks like Postfix's mynetworks: "127.0.0.0/8",
 * "[::1]/128", "192.0.2.1", "[2001:db8::]/32", and "type:table" entries
 * (a cidr: table or any table keyed by client address; any match counts,
 * as Postfix does).
 * Owns: parsing and matching. Leaves table opening to table_set.
 */
#ifndef SLUICE_MTA_NETLIST_H
#define SLUICE_MTA_NETLIST_H

#include <stddef.h>

struct netlist;
struct table_set;

/*
 * netlist_new - parse items (as from conf_list). Tables are opened through
 * tables (which keeps them for reload). NULL with *err_out (caller frees) on
 * a bad entry, naming it.
 */
struct netlist *netlist_new(const char *const *items, size_t n, struct table_set *tables, char **err_out);
/* netlist_match - 1 if addr (IPv4 or IPv6 text) is in the list, else 0. */
int netlist_match(struct netlist *nl, const char *addr);
void netlist_free(struct netlist **nl);

#endif
