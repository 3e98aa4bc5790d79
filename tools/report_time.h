/*
 * report_time: log time stamps -> seconds since the epoch, for `sluice report`.
 * Owns RFC 3164 stamps "Mmm dd HH:MM:SS[.frac]" (which have no year: the
 * caller gives it), ISO 8601 / RFC 3339 stamps with or without a zone (local
 * time without one), and a cache of local-time conversions (mktime() per
 * line would cost more than the rest of the parse).
 * Leaves everything after the stamp to report_parse. No I/O, no clock.
 */
#ifndef SLUICE_REPORT_TIME_H
#define SLUICE_REPORT_TIME_H

#include <stddef.h>

/* the epoch of one local YYYY-MM-DD HH:00:00 (year -1: empty) */
struct rtime_cache {
	int year, mon, day, hour;
	double epoch;
};

void rtime_cache_init(struct rtime_cache *c);

/*
 * rtime_iso - "YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH:MM|+HHMM]" or a date
 * alone at s. Returns the bytes used and *t_out, or 0 (s is not one).
 * c: NULL or a cache (for stamps without a zone).
 */
size_t rtime_iso(struct rtime_cache *c, const char *s, double *t_out);

/*
 * rtime_bsd - RFC 3164 "Mmm dd HH:MM:SS[.frac]" at s, local time, in
 * year_hint, or year_hint-1 when the month is after month_hint (0-11), as
 * pflogsumm does. Returns the bytes used and *t_out, or 0.
 */
size_t rtime_bsd(struct rtime_cache *c, const char *s, int year_hint, int month_hint,
		 double *t_out);

#endif
