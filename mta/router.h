/*
 * router: which domains are ours and where a recipient goes.
 * Owns: the domain classes (virtual_mailbox_domains, virtual_alias_domains,
 * relay_domains, mydestination), virtual alias expansion (virtual(5) order,
 * recursive, loop and size limits), recipient validation (unknown users),
 * and resolving a final recipient to a Maildir path under
 * virtual_mailbox_base. Used by the SMTP side (RCPT) and the queue manager.
 * Leaves: restriction semantics to smtp_check.c.
 */
#ifndef SLUICE_MTA_ROUTER_H
#define SLUICE_MTA_ROUTER_H

#include <stddef.h>

struct conf;
struct table_set;
struct router;

enum router_class {
	ROUTER_NONE = 0,		/* not ours */
	ROUTER_VIRTUAL_MAILBOX,		/* in virtual_mailbox_domains */
	ROUTER_VIRTUAL_ALIAS,		/* in virtual_alias_domains */
	ROUTER_RELAY,			/* in relay_domains */
	ROUTER_MYDESTINATION,		/* in mydestination (delivered like a virtual mailbox domain) */
};

/*
 * router_new - build from conf; tables are opened through tables (kept for
 * reload). NULL with *err_out (caller frees) on a bad table.
 */
struct router *router_new(const struct conf *c, struct table_set *tables, char **err_out);
void router_free(struct router **r);

/* router_domain - the class of domain (case-insensitive, trailing dot ignored). */
enum router_class router_domain(struct router *r, const char *domain);

/*
 * router_expand - validate one envelope recipient and expand virtual
 * aliases. Returns 0 with *final_out (array of *n_out addresses, caller
 * frees each and the array) when every result is deliverable; 1 when the
 * recipient is unknown (reply text in *why_out, e.g. "User unknown in
 * virtual mailbox table"; caller frees); 2 for a domain we do not deliver
 * (not ours: relay question for the caller); -1 on a temporary problem
 * (*why_out says what).
 */
int router_expand(struct router *r, const char *rcpt, char ***final_out, size_t *n_out, char **why_out);

enum router_route_kind { ROUTER_ROUTE_MAILDIR, ROUTER_ROUTE_FAIL, ROUTER_ROUTE_DEFER };
/*
 * router_route - where a final recipient is delivered. MAILDIR: *path_out is
 * virtual_mailbox_base + "/" + the virtual_mailbox_maps result (must end in
 * "/"); FAIL/DEFER: *path_out is a reason "5.1.1 ..." / "4.3.0 ...".
 * Caller frees *path_out.
 */
enum router_route_kind router_route(struct router *r, const char *rcpt, char **path_out);

#endif
