/*
 * params_dmarc: the dmarc_* parameters of sluice-dmarc.
 * Owns names, types, defaults and ranges; the meaning of each is in
 * docs/DMARC.md; the dmarc_report_* keys (read by `sluice report dmarc`, not by
 * the daemon) in docs/DMARC-REPORTS.md. (dmarc_enable lives in common_params:
 * sluice start reads it.)
 */
#ifndef SLUICE_CONF_PARAMS_DMARC_H
#define SLUICE_CONF_PARAMS_DMARC_H

#include "conf/conf.h"

extern const struct conf_param dmarc_params[];

#endif
