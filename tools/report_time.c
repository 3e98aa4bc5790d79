/*
 * report_time: see report_time.h.
 */
#include "tools/report_time.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define C_DIGIT(c) ((unsigned)(unsigned char)(c) - '0' < 10u)

void rtime_cache_init(struct rtime_cache *c)
{
	memset(c, 0, sizeof *c);
	c->year = -1;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!C_DIGIT(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static double local_epoch(struct rtime_cache *p, int y, int mon, int d, int h, int mi, int s)
{
	if (p && p->year == y && p->mon == mon && p->day == d && p->hour == h)
		return p->epoch + mi * 60 + s;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mon, .tm_mday = d, .tm_hour = h,
			 .tm_isdst = -1 };
	/* report_run's workers convert at once: glibc's mktime() locks around
	   the time zone it re-reads, but that lock is not one a thread sanitizer
	   sees, so ours says the same to it (taken once an hour of log time) */
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&mu);
	double e = (double)mktime(&tm);
	pthread_mutex_unlock(&mu);
	if (p) {
		p->year = y, p->mon = mon, p->day = d, p->hour = h;
		p->epoch = e;
	}
	return e + mi * 60 + s;
}

/*
 * ISO 8601 / RFC 3339 at s: "YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH:MM|+HHMM]"
 * or a date alone. Returns bytes used, 0 when s is not one.
 */
size_t rtime_iso(struct rtime_cache *p, const char *s, double *t_out)
{
	int y, mo, d, h = 0, mi = 0, sec = 0;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
	    digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31)
		return 0;
	size_t i = 10;
	double frac = 0;
	if ((s[i] == 'T' || s[i] == ' ') && !digits(s + i + 1, 2, &h) && s[i + 3] == ':' &&
	    !digits(s + i + 4, 2, &mi)) {
		i += 6;
		if (s[i] == ':' && !digits(s + i + 1, 2, &sec))
			i += 3;
		if (s[i] == '.' || s[i] == ',') {
			double scale = 0.1;
			for (i++; C_DIGIT(s[i]); i++, scale /= 10)
				frac += (s[i] - '0') * scale;
		}
	}
	if (h > 23 || mi > 59 || sec > 60)
		return 0;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			 .tm_min = mi, .tm_sec = sec };
	if (s[i] == 'Z') {
		*t_out = (double)timegm(&tm) + frac;
		return i + 1;
	}
	int oh, om;
	if ((s[i] == '+' || s[i] == '-') && !digits(s + i + 1, 2, &oh)) {
		size_t j = i + 3;
		if (s[j] == ':')
			j++;
		if (!digits(s + j, 2, &om)) {
			int off = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
			*t_out = (double)timegm(&tm) - off + frac;
			return j + 2;
		}
	}
	*t_out = local_epoch(p, y, mo - 1, d, h, mi, sec) + frac;
	return i;
}

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
				       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* RFC 3164 "Mmm dd HH:MM:SS[.frac]" at s; bytes used or 0. */
size_t rtime_bsd(struct rtime_cache *p, const char *s, int year_hint, int month_hint,
		 double *t_out)
{
	int mon = -1;
	switch (s[0]) {	/* the first letter narrows it to three at most */
	case 'J': mon = s[1] == 'a' ? 0 : s[2] == 'n' ? 5 : 6; break;
	case 'F': mon = 1; break;
	case 'M': mon = s[2] == 'r' ? 2 : 4; break;
	case 'A': mon = s[1] == 'p' ? 3 : 7; break;
	case 'S': mon = 8; break;
	case 'O': mon = 9; break;
	case 'N': mon = 10; break;
	case 'D': mon = 11; break;
	}
	if (mon < 0 || memcmp(s, months[mon], 3) != 0 || s[3] != ' ')
		return 0;
	size_t i = 4;
	if (s[i] == ' ')
		i++;
	int d, h, mi, sec;
	if (C_DIGIT(s[i]) && C_DIGIT(s[i + 1])) {
		d = (s[i] - '0') * 10 + (s[i + 1] - '0');
		i += 2;
	} else if (C_DIGIT(s[i])) {
		d = s[i] - '0';
		i += 1;
	} else {
		return 0;
	}
	if (s[i] != ' ' || digits(s + i + 1, 2, &h) || s[i + 3] != ':' || digits(s + i + 4, 2, &mi) ||
	    s[i + 6] != ':' || digits(s + i + 7, 2, &sec) || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return 0;
	i += 9;
	double frac = 0;
	if (s[i] == '.') {
		double scale = 0.1;
		for (i++; C_DIGIT(s[i]); i++, scale /= 10)
			frac += (s[i] - '0') * scale;
	}
	int year = mon > month_hint ? year_hint - 1 : year_hint;
	*t_out = local_epoch(p, year, mon, d, h, mi, sec) + frac;
	return i;
}
