/*
 * params_spam: the spam_* parameters of sluice-spam.
 * Owns names, types, defaults and ranges; the meaning of each is in
 * docs/SPAM.md. (spam_enable lives in common_params: sluice start reads it.)
 */
#ifndef SLUICE_CONF_PARAMS_SPAM_H
#define SLUICE_CONF_PARAMS_SPAM_H

#include "conf/conf.h"

extern const struct conf_param spam_params[];

#endif
