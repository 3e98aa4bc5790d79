/*
 * table: Postfix-style lookup tables "type:name".
 * Owns: hash: and texthash: (plain "key value" text read into memory; no
 * postmap step, so a Postfix source file works unchanged), cidr:, regexp:
 * and pcre: (PCRE2, with $1.. substitution in results), static:value,
 * inline:{ key=value, ... }, and Postfix's lookup orders for addresses,
 * domains and clients (access(5), virtual(5)).
 * Leaves: what a result means (access actions etc.) to the caller.
 *
 * Keys of hash/texthash/inline are matched case-insensitively (lowercased
 * as Postfix does). Errors name "file:line: reason".
 *
 * Details (added with the implementation):
 * - File syntax follows Postfix: '#' comment lines, continuation lines
 *   starting with white space, CRLF accepted; NUL bytes, over-long lines
 *   (CONF_MAX_LINE_BYTES) and files over 256 MiB are errors.
 * - hash:, texthash: and the Postfix database types btree:, lmdb:, cdb:,
 *   dbm:, sdbm: all read the text source file named (never a .db).
 *   A duplicate key is ignored (the first one counts, as with postmap).
 * - cidr: "network[/prefix] result"; v4 and v6, optional [ ]; set host bits
 *   are an error. A v4-mapped v6 key (::ffff:1.2.3.4) matches v4 rules.
 * - regexp: is POSIX ERE (regcomp), flags i (on by default), x (toggles
 *   extended syntax), m (REG_NEWLINE). pcre: is PCRE2, flags i (on by
 *   default), m, s, x, A, E, U (X accepted, ignored). Any non-alphanumeric
 *   delimiter works; IF/ENDIF nest; results use $0..$9, ${n} and $$, checked
 *   against the pattern's groups when the file is read. A PCRE2 match that
 *   hits the match/depth/heap limits counts as no match.
 * - inline:{ a=b, { key = text with spaces, or commas } }; static:text or
 *   static:{ text }.
 */
#ifndef SLUICE_TABLE_H
#define SLUICE_TABLE_H

#include <stddef.h>

struct table;

/*
 * table_open - open and fully read "type:name". Returns NULL with *err_out
 * (caller frees) on an unknown type, unreadable file, or a bad line (bad
 * CIDR, bad regex, ...). Relative file names are taken as given.
 */
struct table *table_open(const char *spec, char **err_out);
/* table_reload - re-read from the source; on error the old contents stay. */
int table_reload(struct table *t, char **err_out);
void table_free(struct table **t);
/* The spec as given ("hash:/etc/x"); borrowed. */
const char *table_spec(const struct table *t);

/*
 * table_lookup - one key. Returns 1 and *val_out (borrowed until the next
 * lookup on t or table_reload/table_free) if found, 0 if not.
 * cidr: key is an IP address text (IPv4 or IPv6); regexp/pcre: first
 * matching pattern wins (with !/pattern/ negation, and IF/ENDIF blocks).
 */
int table_lookup(struct table *t, const char *key, const char **val_out);

/* Address lookup orders (flags for table_lookup_addr). */
#define TABLE_ADDR_ACCESS  1	/* access(5): user@domain, domain, parent domains (.domain), user@ */
#define TABLE_ADDR_VIRTUAL 2	/* virtual(5): user@domain, @domain */
/*
 * table_lookup_addr - look up an address in Postfix order. For regexp, pcre
 * and cidr tables only the full string is tried (as Postfix does). The null
 * sender "" is looked up as the key "<>" for access maps. Same return as
 * table_lookup.
 */
int table_lookup_addr(struct table *t, const char *addr, int flags, const char **val_out);
/* table_lookup_domain - domain, then parent domains as ".parent" keys and "parent" keys. */
int table_lookup_domain(struct table *t, const char *domain, const char **val_out);
/*
 * table_lookup_client - check_client_access order: hostname (and parent
 * domains) unless NULL or "unknown", then the address, then for IPv4 the
 * shorter network prefixes "1.2.3", "1.2", "1" (hash-like tables only);
 * cidr tables get the address; regexp/pcre get hostname then address.
 */
int table_lookup_client(struct table *t, const char *hostname, const char *addr,
			const char **val_out);

/*
 * table_set - a collection of open tables keyed by spec, so every spec named
 * in a config is opened once and reloaded together on SIGHUP.
 */
struct table_set;
struct table_set *table_set_new(void);
/* table_set_get - the open table for spec, opening it on first use. */
struct table *table_set_get(struct table_set *s, const char *spec, char **err_out);
int table_set_reload(struct table_set *s, char **err_out);
void table_set_free(struct table_set **s);

#endif
