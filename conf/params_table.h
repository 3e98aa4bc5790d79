/*
 * params_table: short builders for parameter-table entries, for the files
 * that define tables (conf/params*.c) only: name, default, bounds, choices.
 */
#ifndef SLUICE_CONF_PARAMS_TABLE_H
#define SLUICE_CONF_PARAMS_TABLE_H

#include "conf/conf.h"

#define P(n, t, d) { n, t, d, 0, 0, NULL, 0 }
#define PI(n, d, lo, hi) { n, CONF_INT, d, lo, hi, NULL, 0 }
#define PT(n, d, lo, hi, u) { n, CONF_TIME, d, lo, hi, NULL, u }
#define PE(n, d, ch) { n, CONF_ENUM, d, 0, 0, ch, 0 }
#define PS(n, d, lo, hi) { n, CONF_SIZE, d, lo, hi, NULL, 0 }

#endif
