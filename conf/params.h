/*
 * params: the typed parameter tables of every sluice daemon, in one
 * registry, so that any daemon (and `sluice check`) reading the shared
 * sluice.conf knows every name: a name in nobody's table is a warning, a bad
 * value for anybody's parameter stops start-up. sluiced uses Postfix's names
 * and defaults wherever the meaning is the same; filter daemons use their
 * prefix (dkim_, spf_, dmarc_, spam_, ratelimit_).
 * Owns: names, types, defaults, ranges. Leaves parsing to conf/conf.c.
 * A daemon adds its table in its own file (conf/params_<name>.c) and one
 * line in params_all[] (conf/params.c).
 */
#ifndef SLUICE_CONF_PARAMS_H
#define SLUICE_CONF_PARAMS_H

#include "conf/conf.h"

/* Shared by every daemon: myhostname, logging, DNS. */
extern const struct conf_param common_params[];
/* sluiced only. */
extern const struct conf_param mta_params[];
/* Every daemon's table, NULL-terminated: pass to conf_load(). */
extern const struct conf_param *const params_all[];

/* The restriction-list parameters (for `sluice check` and the session). */
extern const char *const mta_restriction_params[];

#endif
