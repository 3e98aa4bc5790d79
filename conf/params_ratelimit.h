/*
 * params_ratelimit: the ratelimit_* parameters of sluice-ratelimit.
 * Owns names, types, defaults and ranges; the meaning of each is in
 * docs/RATELIMIT.md. (ratelimit_enable lives in common_params: sluice start reads it.)
 */
#ifndef SLUICE_CONF_PARAMS_RATELIMIT_H
#define SLUICE_CONF_PARAMS_RATELIMIT_H

#include "conf/conf.h"

extern const struct conf_param ratelimit_params[];

#endif
