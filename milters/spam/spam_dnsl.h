/*
 * spam_dnsl: DNS block lists (DNSBL, RHSBL/URIBL/DBL) for sluice-spam.
 * Owns: the spam_dns_lists table ("zone kind answer SYMBOL score" per line,
 * kind ip|domain, answer an address, a range a-b or bitmask:N; SYMBOL
 * BLOCKED marks the list's "query refused / open resolver / rate limited"
 * codes), the look-ups of one message (all in parallel on a per-thread
 * libevent loop over proto/dns, one shared deadline spam_dns_timeout), the
 * answer -> symbol mapping (an answer no line matches is noted and
 * ignored; BLOCKED answers give <LIST>_BLOCKED with score 0, never a hit),
 * and each list's health: at start-up the test entry (127.0.0.2 for ip
 * lists, "test" for domain lists) is queried, and a list that does not
 * answer it is disabled and re-tested at most once a minute until it does.
 * Leaves: which addresses and domains to ask about (spam_msg), logging
 * (the caller logs what spam_dnsl_check reports).
 * Thread-safe: list health uses atomics; each batch has its own resolver.
 */
#ifndef SLUICE_SPAM_DNSL_H
#define SLUICE_SPAM_DNSL_H

#include <stddef.h>

#include "proto/dns.h"

struct spam_result;
struct spam_dnsl;

/*
 * spam_dnsl_new - read the table file (NULL/"" = no lists: returns an
 * empty set). dns: resolver options (servers, per-try timeout, tries);
 * timeout_ms: the shared deadline of one message's look-ups.
 * NULL with *err_out = "file:line: reason" (caller frees).
 */
struct spam_dnsl *spam_dnsl_new(const char *path, const struct dns_opts *dns, int timeout_ms,
				char **err_out);
void spam_dnsl_free(struct spam_dnsl **d);
size_t spam_dnsl_count(const struct spam_dnsl *d);	/* distinct (zone, kind) lists */

/*
 * spam_dnsl_selftest - query every list's test entry now (in parallel, one
 * deadline); lists that do not answer are disabled. Returns a new text for
 * the log ("zen.spamhaus.org ip ok, multi.uribl.com domain disabled
 * (timeout)"), or NULL without lists.
 */
char *spam_dnsl_selftest(struct spam_dnsl *d);

/*
 * A batch: one message's look-ups, sent as soon as their inputs are known
 * and collected at end of data. spam_dnsl_begin returns NULL without lists
 * (the other calls accept NULL). spam_dnsl_add sends the queries at once
 * (duplicates of earlier ones are skipped). spam_dnsl_finish waits at most
 * spam_dns_timeout for what is still unanswered, adds the symbols to r, sets
 * *note_out / *warn_out as spam_dnsl_check does, and frees the batch;
 * spam_dnsl_abort frees it without results (aborted transaction).
 * A batch may move between threads but is used by one at a time.
 */
struct spam_dnsl_batch;
struct spam_dnsl_batch *spam_dnsl_begin(struct spam_dnsl *d);
void spam_dnsl_add(struct spam_dnsl_batch *b, const char *const *ips, size_t nips,
		   const char *const *domains, size_t ndomains);
void spam_dnsl_finish(struct spam_dnsl_batch **b, struct spam_result *r, char **note_out,
		      char **warn_out);
void spam_dnsl_abort(struct spam_dnsl_batch **b);

/*
 * spam_dnsl_check - look up ips (IPv4/IPv6 text) in the ip lists and
 * domains in the domain lists, all at once; add the symbols to r. *note_out
 * is NULL or a new text for the decision log line (unmatched answers,
 * blocked and timed-out lists); *warn_out is NULL or a new warning to log
 * on its own (a BLOCKED answer, at most once a minute per list).
 */
void spam_dnsl_check(struct spam_dnsl *d, const char *const *ips, size_t nips,
		     const char *const *domains, size_t ndomains, struct spam_result *r,
		     char **note_out, char **warn_out);

#endif
