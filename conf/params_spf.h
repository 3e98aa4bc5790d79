/*
 * params_spf: the sluice-spf parameters (policyd-spf.conf(5) options under
 * sluice.conf names). Owns names, types and defaults; the meanings are in
 * policyd/spf/spfd_policy.h and docs/SPF.md.
 */
#ifndef SLUICE_CONF_PARAMS_SPF_H
#define SLUICE_CONF_PARAMS_SPF_H

#include "conf/conf.h"

extern const struct conf_param spf_params[];

#endif
