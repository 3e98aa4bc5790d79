/*
 * params: the typed parameter table of sluiced (Postfix names and defaults
 * wherever the meaning is the same) and the names other daemons own.
 * Owns: names, types, defaults, ranges. Leaves parsing to conf/conf.c.
 */
#ifndef SLUICE_MTA_PARAMS_H
#define SLUICE_MTA_PARAMS_H

#include "conf/conf.h"

/* Shared by every daemon: myhostname, logging, DNS. */
extern const struct conf_param common_params[];
/* sluiced only. */
extern const struct conf_param mta_params[];
/* NULL-terminated {common_params, mta_params, NULL}. */
extern const struct conf_param *const mta_param_tables[];
/* Prefixes owned by the filter daemons (not warned about by sluiced). */
extern const char *const mta_foreign_prefixes[];

/* The restriction-list parameters (for `sluice check` and the session). */
extern const char *const mta_restriction_params[];

#endif
