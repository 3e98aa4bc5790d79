/*
 * report_parse: see report_parse.h. Envelope first (JSON object, RFC 5424,
 * ISO/RFC 3339 stamp, RFC 3164 stamp), then the queue id, then the text by
 * its first words; key=value tokens are split the way lib/log.c writes them
 * (a value runs to ", " / "; " / " " outside <>, [], (), "").
 */
#include "tools/report_parse.h"
#include "tools/report_time.h"
#include "lib/util.h"

#include <ctype.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#define V16(c) _mm_set1_epi8((char)(c))
#endif

#define RP_ARENA_BYTES RP_LINE_SCRATCH_BYTES	/* one line's scratch memory */
#define RP_ARENA_SLACK 64	/* readable bytes after it, for 16-byte loads near its end */
_Static_assert(RP_ARENA_MIN == RP_ARENA_BYTES + RP_ARENA_SLACK, "rp_parser_arena's minimum");

struct rp_parser {
	int year_hint, month_hint;
	struct rtime_cache tc;	/* local-time conversions */
	char stamp[40];		/* the last line's time stamp (RFC 3164 or ISO) and its time: */
	size_t stamp_len;	/* most lines repeat the one before */
	double stamp_time;
	/* scratch memory: the line being parsed uses arena[base, base + RP_ARENA_BYTES),
	   used is its end so far; base moves only with rp_parser_keep */
	char *arena;
	size_t base, used, cap;
	char *own;		/* the parser's own arena (base always 0 there) */
};

struct rp_parser *rp_parser_new(int year_hint, int month_hint)
{
	struct rp_parser *p = xcalloc(1, sizeof *p);
	p->year_hint = year_hint;
	p->month_hint = month_hint;
	rtime_cache_init(&p->tc);
	p->own = p->arena = xcalloc(1, RP_ARENA_MIN);
	p->cap = RP_ARENA_MIN;
	return p;
}

void rp_parser_free(struct rp_parser **pp)
{
	if (!pp || !*pp)
		return;
	free((*pp)->own);
	free(*pp);
	*pp = NULL;
}

/* ASCII classes without the locale (ctype's calls cost more than the parse) */
#define C_DIGIT(c) ((unsigned)(unsigned char)(c) - '0' < 10u)
#define C_UPPER(c) ((unsigned)(unsigned char)(c) - 'A' < 26u)
#define C_LOWER(c) ((unsigned)(unsigned char)(c) - 'a' < 26u)
#define C_ALPHA(c) (C_UPPER(c) || C_LOWER(c))
#define C_ALNUM(c) (C_ALPHA(c) || C_DIGIT(c))

/* n bytes of the arena, or NULL when it is full. */
static char *arena_alloc(struct rp_parser *p, size_t n)
{
	if (p->used + n > p->base + RP_ARENA_BYTES)
		return NULL;
	char *d = p->arena + p->used;
	p->used += n;
	return d;
}

/* A NUL-terminated copy of s[0..n) in the arena ("" when it is full). */
static const char *keep(struct rp_parser *p, const char *s, size_t n)
{
	/* "" with RP_ARENA_SLACK readable bytes, as the 16-byte scans need */
	static const char none[RP_ARENA_SLACK];
	if (p->used + n + 1 > p->base + RP_ARENA_BYTES)
		return none;
	char *d = p->arena + p->used;
	memcpy(d, s, n);
	d[n] = 0;
	p->used += n + 1;
	return d;
}

static const char *keep_lower(struct rp_parser *p, const char *s, size_t n)
{
	const char *d = keep(p, s, n);
	for (char *c = (char *)d; *c; c++)
		*c = (char)(C_UPPER(*c) ? *c + 32 : *c);	/* ASCII: the C locale's tolower */
	return d;
}

static inline int starts(const char *s, const char *prefix)
{
	while (*prefix && *s == *prefix)	/* most tests fail at the first bytes */
		s++, prefix++;
	return *prefix == 0;
}

int rp_time_parse(const char *s, double *t_out)
{
	if (s[0] == '@') {
		char *end;
		double v = strtod(s + 1, &end);
		if (end == s + 1 || *end)
			return -1;
		*t_out = v;
		return 0;
	}
	size_t n = rtime_iso(NULL, s, t_out);
	return n && s[n] == 0 ? 0 : -1;
}

/* ---- envelope ---- */

/* A token up to a space; advances *s past it and one space. */
static const char *word(struct rp_parser *p, const char **s)
{
	const char *b = *s, *e = b;
	while (*e && *e != ' ')
		e++;
	*s = *e ? e + 1 : e;
	return keep(p, b, (size_t)(e - b));
}

/*
 * "name/service[pid]: " or "name[pid]: " or "name: " at s (the parser's own
 * copy of the line: cut with NULs); returns the message or NULL.
 */
static const char *tag(char *s, struct rp_event *ev)
{
#ifndef __SSE2__
	static const unsigned char stop[256] = { [0] = 1, ['['] = 1, [':'] = 1, [' '] = 1, ['/'] = 1 };
#endif
	char *e = s, *slash1 = NULL, *slashn = NULL;
	for (;;) {	/* one pass: the end of the name and its first and last '/' */
#ifdef __SSE2__
		unsigned m;
		for (;;) {
			__m128i x = _mm_loadu_si128((const __m128i *)e);
			__m128i a = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_setzero_si128()), _mm_cmpeq_epi8(x, V16('[')));
			__m128i b = _mm_or_si128(_mm_cmpeq_epi8(x, V16(':')), _mm_cmpeq_epi8(x, V16(' ')));
			m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_cmpeq_epi8(x, V16('/'))));
			if (m)
				break;
			e += 16;
		}
		e += __builtin_ctz(m);
#else
		while (!stop[(unsigned char)*e])
			e++;
#endif
		if (*e != '/')
			break;
		if (!slash1)
			slash1 = e;
		slashn = e++;
	}
	if (e == s)
		return NULL;
	char *tagend = e;
	if (*e == '[') {
		long pid = 0;
		const char *d = e + 1;
		while (C_DIGIT(*d) && pid < 100000000L)
			pid = pid * 10 + (*d++ - '0');
		if (*d != ']' || d == e + 1)
			return NULL;
		ev->pid = pid;
		e = (char *)d + 1;
	}
	if (*e != ':')
		return NULL;
	e++;
	if (*e == ' ')
		e++;
	*tagend = 0;
	ev->syslog_name = s;
	ev->service = "";
	if (slash1) {
		ev->service = slashn + 1;
		*slash1 = 0;
	}
	return e;
}

/* RFC 5424 after "<PRI>1 ": TIME HOST APP PROCID MSGID SD MSG */
static const char *rfc5424(struct rp_parser *p, const char *s, struct rp_event *ev)
{
	size_t n = rtime_iso(&p->tc, s, &ev->time);
	if (!n || s[n] != ' ')
		return NULL;
	s += n + 1;
	ev->host = word(p, &s);
	const char *app = word(p, &s), *procid = word(p, &s);
	(void)word(p, &s);	/* msgid */
	if (*s == '[') {	/* structured data: [id k="v" ...]... */
		while (*s == '[') {
			int q = 0;
			for (s++; *s && (q || *s != ']'); s++) {
				if (*s == '\\' && s[1])
					s++;
				else if (*s == '"')
					q = !q;
			}
			if (*s == ']')
				s++;
		}
		if (*s == ' ')
			s++;
	} else if (*s == '-') {
		s += s[1] == ' ' ? 2 : 1;
	}
	if (starts(s, "\xEF\xBB\xBF"))	/* BOM */
		s += 3;
	const char *slash1 = strchr(app, '/');
	if (slash1) {
		ev->syslog_name = keep(p, app, (size_t)(slash1 - app));
		ev->service = strrchr(app, '/') + 1;
	} else {
		ev->syslog_name = app;
		ev->service = "";
	}
	ev->pid = strcmp(procid, "-") ? strtol(procid, NULL, 10) : -1;
	return s;
}

/* ---- key=value ---- */

/* key bytes: 1 may start a key (letters, '_'), 2 may follow (and digits, '-', '.') */
static const unsigned char kv_keych[256] = {
	['a' ... 'z'] = 3, ['A' ... 'Z'] = 3, ['_'] = 3, ['0' ... '9'] = 2, ['-'] = 2, ['.'] = 2,
};

/*
 * The scans below read 16 bytes at a time (SSE2, in every x86-64) where
 * they can: the strings they scan are NUL-terminated copies in the arena,
 * which has RP_ARENA_SLACK bytes after its end, so a load that starts before
 * a NUL stays inside it. A 16-byte test has no loop exit to mispredict for
 * the short keys and values of log lines, which a byte loop has once a token.
 */
#ifdef __SSE2__

/* the bytes of the 16 at s that may follow a key's first one, as a bit mask */
static inline unsigned keych16(const char *s)
{
	__m128i x = _mm_loadu_si128((const __m128i *)s);
	__m128i lo = _mm_or_si128(x, V16(0x20));	/* ASCII letters to lower case */
	__m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(lo, V16('a' - 1)), _mm_cmplt_epi8(lo, V16('z' + 1)));
	__m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, V16('0' - 1)), _mm_cmplt_epi8(x, V16('9' + 1)));
	__m128i other = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, V16('_')), _mm_cmpeq_epi8(x, V16('-'))),
				     _mm_cmpeq_epi8(x, V16('.')));
	return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(alpha, digit), other));
}

/* the bytes of the 16 at s that are in kv_special, as a bit mask */
static inline unsigned special16(const char *s)
{
	__m128i x = _mm_loadu_si128((const __m128i *)s);
	__m128i a = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_setzero_si128()), _mm_cmpeq_epi8(x, V16(' ')));
	__m128i b = _mm_or_si128(_mm_cmpeq_epi8(x, V16(',')), _mm_cmpeq_epi8(x, V16(';')));
	__m128i c = _mm_or_si128(_mm_cmpeq_epi8(x, V16('"')), _mm_cmpeq_epi8(x, V16('[')));
	__m128i d = _mm_or_si128(_mm_cmpeq_epi8(x, V16(']')),
				 _mm_cmpeq_epi8(_mm_or_si128(x, V16(1)), V16(')')));	/* ( ) */
	__m128i e = _mm_cmpeq_epi8(_mm_or_si128(x, V16(2)), V16('>'));		/* < > */
	return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)), e));
}
#endif

/* length of the key of a "key=" at s, or 0 */
static size_t kv_key(const char *s)
{
	if (!(kv_keych[(unsigned char)s[0]] & 1))
		return 0;
	size_t i = 1;
#ifdef __SSE2__
	for (;;) {
		unsigned k = (unsigned)__builtin_ctz(~keych16(s + i));	/* 16: all are */
		i += k;
		if (k < 16)
			break;
	}
#else
	while (kv_keych[(unsigned char)s[i]] & 2)
		i++;
#endif
	return s[i] == '=' ? i : 0;
}

#ifndef __SSE2__
/* bytes that end or nest a value (kv_value); every other byte is skipped in one test */
static const unsigned char kv_special[256] = {
	[0] = 1, [' '] = 1, [','] = 1, [';'] = 1, ['"'] = 1, ['<'] = 1, ['['] = 1, ['('] = 1,
	['>'] = 1, [']'] = 1, [')'] = 1,
};
#endif

static size_t kv_value(const char *s)
{
	int depth = 0;
	size_t i = 0;
	for (;;) {
#ifdef __SSE2__
		unsigned m;
		while (!(m = special16(s + i)))
			i += 16;
		i += (unsigned)__builtin_ctz(m);
#else
		while (!kv_special[(unsigned char)s[i]])
			i++;
#endif
		char c = s[i];
		if (!c)
			return i;
		if (c == '"') {	/* to the closing quote; a backslash escapes the next byte */
			const char *q = s + i + 1;
			for (;;) {
				const char *e = strchr(q, '"');
				if (!e)
					return i + 1 + strlen(s + i + 1);
				size_t bs = 0;	/* backslashes right before it, after the opening quote */
				while (e - bs > s + i + 1 && e[-1 - (ptrdiff_t)bs] == '\\')
					bs++;
				if (!(bs & 1)) {
					i = (size_t)(e - s);
					break;
				}
				q = e + 1;
			}
		} else if (c == '<' || c == '[' || c == '(') {
			depth++;
		} else if (c == '>' || c == ']' || c == ')') {
			if (depth > 0)
				depth--;
		} else if (depth == 0 && (c == ' ' || s[i + 1] == ' ' || !s[i + 1])) {
			return i;	/* ' ', or ',' / ';' before a space or the end */
		}
		i++;
	}
}

/*
 * Keys and values point into one copy of msg, cut in place with NULs (the
 * scan reads msg itself, which stays whole).
 */
static void split_kv(struct rp_parser *p, const char *msg, struct rp_event *ev)
{
	size_t len = strlen(msg);
	char *w = NULL;
	for (const char *s = msg; *s && ev->nkv < RP_MAX_KV;) {
		size_t k = (s == msg || s[-1] == ' ') ? kv_key(s) : 0;
		if (!k) {	/* a key starts the text or follows a space */
			while (*s && *s != ' ')
				s++;
			if (!*s)
				break;
			s++;
			continue;
		}
		if (!w) {
			if (!(w = arena_alloc(p, len + 1)))
				return;
			memcpy(w, msg, len + 1);
		}
		const char *v = s + k + 1;
		size_t vl = kv_value(v);
		size_t ko = (size_t)(s - msg), vo = (size_t)(v - msg);
		struct rp_kv *kv = &ev->kv[ev->nkv++];
		w[ko + k] = 0;
		kv->key = w + ko;
		if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
			/* unquote in place, dropping backslashes before " and \ */
			char *d = w + vo + 1, *end = w + vo + vl - 1, *o = d;
			if (!memchr(d, '\\', (size_t)(end - d)))
				o = end;	/* nothing to drop */
			else
				for (char *r = d; r < end; r++) {
					if (*r == '\\' && r + 1 < end && (r[1] == '"' || r[1] == '\\'))
						r++;
					*o++ = *r;
				}
			*o = 0;
			kv->value = d;
		} else {
			w[vo + vl] = 0;
			kv->value = w + vo;
		}
		s = v + vl;
	}
}

const char *rp_kv_get(const struct rp_event *ev, const char *key)
{
	for (size_t i = 0; i < ev->nkv; i++) {
		const char *k = ev->kv[i].key;	/* two bytes decide most */
		if (k[0] == key[0] && k[1] == key[1] && (!key[1] || strcmp(k + 2, key + 2) == 0))
			return ev->kv[i].value;
	}
	return NULL;
}

/* "<addr>" -> "addr" (a copy); anything else unchanged. */
static const char *unangle(struct rp_parser *p, const char *v)
{
	size_t n = strlen(v);
	if (n >= 2 && v[0] == '<' && v[n - 1] == '>')
		return keep(p, v + 1, n - 2);
	return v;
}

/* ---- message texts ---- */

/* Queue id: NOQUEUE, or 5..31 alphanumerics holding a digit or only upper-case hex. */
static size_t qid_len(const char *s)
{
	if (s[0] == 'N' && starts(s, "NOQUEUE: "))
		return 7;
#ifdef __SSE2__
	/* 16 bytes a step: the run of alphanumerics, and which kinds it holds */
	size_t n = 0;
	unsigned digit = 0, lower = 0, nonhex = 0;
	for (;;) {
		__m128i x = _mm_loadu_si128((const __m128i *)(s + n));
		__m128i d = _mm_and_si128(_mm_cmpgt_epi8(x, V16('0' - 1)), _mm_cmplt_epi8(x, V16('9' + 1)));
		__m128i l = _mm_and_si128(_mm_cmpgt_epi8(x, V16('a' - 1)), _mm_cmplt_epi8(x, V16('z' + 1)));
		__m128i h = _mm_and_si128(_mm_cmpgt_epi8(x, V16('A' - 1)), _mm_cmplt_epi8(x, V16('F' + 1)));
		__m128i u = _mm_and_si128(_mm_cmpgt_epi8(x, V16('G' - 1)), _mm_cmplt_epi8(x, V16('Z' + 1)));
		unsigned dm = (unsigned)_mm_movemask_epi8(d), lm = (unsigned)_mm_movemask_epi8(l),
			 um = (unsigned)_mm_movemask_epi8(u);
		unsigned all = dm | lm | um | (unsigned)_mm_movemask_epi8(h);
		unsigned run = (unsigned)__builtin_ctz(~all), in = (1u << run) - 1;
		digit |= dm & in;
		lower |= lm & in;
		nonhex |= um & in;
		n += run;
		if (run < 16 || n > 31)
			break;
	}
#else
	/* one table look-up per byte: 8 alnum, 1 digit, 2 lower case, 4 upper case past F */
	static const unsigned char cls[256] = { ['0' ... '9'] = 9, ['a' ... 'z'] = 10,
						['A' ... 'F'] = 8, ['G' ... 'Z'] = 12 };
	size_t n = 0;
	unsigned seen = 0, k;
	while ((k = cls[(unsigned char)s[n]]) & 8) {
		seen |= k;
		n++;
	}
	int digit = seen & 1, lower = seen & 2, nonhex = seen & 4;
#endif
	if (n < 5 || n > 31 || s[n] != ':' || s[n + 1] != ' ')
		return 0;
	return (digit || (!lower && !nonhex)) ? n : 0;
}

/* "name[ip]" at s; fills the client fields. */
static void client_at(struct rp_parser *p, const char *s, struct rp_event *ev)
{
	const char *lb = strchr(s, '[');
	if (!lb)
		return;
	const char *rb = strchr(lb, ']');
	if (!rb)
		return;
	const char *nb = lb;
	size_t before = (size_t)(lb - s);
	if (!memchr(s, ' ', before) && !memchr(s, '=', before))
		nb = s;		/* the usual case: the name starts at s */
	else
		while (nb > s && nb[-1] != ' ' && nb[-1] != '=')
			nb--;
	ev->client_name = keep(p, nb, (size_t)(lb - nb));
	ev->client_ip = keep(p, lb + 1, (size_t)(rb - lb - 1));
}

/*
 * strtod() for the plain decimals of log lines ("0.42", "12.30", "-1.5"),
 * without its cost: up to 15 digits and a division by an exact power of ten
 * give the correctly rounded double, the same as strtod's. Anything else
 * (exponents, hex, more digits, leading space) goes to strtod.
 */
static double dec(const char *v, char **end_out)
{
	static const double p10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
				      1e11, 1e12, 1e13, 1e14, 1e15 };
	const char *s = v;
	int neg = *s == '-';
	if (*s == '-' || *s == '+')
		s++;
	unsigned long long m = 0;
	int nd = 0, nf = 0;
	while (C_DIGIT(*s) && nd < 16)
		m = m * 10 + (unsigned)(*s++ - '0'), nd++;
	if (*s == '.' && nd) {
		s++;
		while (C_DIGIT(*s) && nd < 16)
			m = m * 10 + (unsigned)(*s++ - '0'), nd++, nf++;
	}
	if (!nd || nd > 15 || C_DIGIT(*s) || *s == 'e' || *s == 'E' || *s == 'x' || *s == 'X' ||
	    *s == '.' || s[-1] == '.')
		return strtod(v, end_out);
	*end_out = (char *)s;
	double d = (double)m / p10[nf];
	return neg ? -d : d;
}

static double num(const char *v, double dflt)
{
	if (!v)
		return dflt;
	char *end;
	double d = dec(v, &end);
	return end == v ? dflt : d;
}

/* "550 5.1.1 text" -> code, dsn, text */
static void reply_split(struct rp_parser *p, const char *s, size_t n, struct rp_event *ev)
{
	ev->code = -1;
	if (n >= 4 && C_DIGIT(s[0]) && C_DIGIT(s[1]) &&
	    C_DIGIT(s[2]) && s[3] == ' ') {
		ev->code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
		s += 4, n -= 4;
	}
	if (n >= 6 && C_DIGIT(s[0]) && s[1] == '.') {
		size_t i = 2;
		while (i < n && (C_DIGIT(s[i]) || s[i] == '.'))
			i++;
		if (i < n && s[i] == ' ') {
			ev->dsn = keep(p, s, i);
			s += i + 1, n -= i + 1;
		}
	}
	ev->reason = keep(p, s, n);
}

static const struct {
	const char *prefix;
	enum rp_reject type;
} reject_types[] = {
	{ "reject: ", RP_REJ_REJECT },
	{ "milter-reject: ", RP_REJ_MILTER },
	{ "reject_warning: ", RP_REJ_WARNING },
	{ "hold: ", RP_REJ_HOLD },
	{ "milter-hold: ", RP_REJ_HOLD },
	{ "discard: ", RP_REJ_DISCARD },
	{ "milter-discard: ", RP_REJ_DISCARD },
};

/*
 * "reject: RCPT from name[ip]: 550 5.1.1 <r>: text; from=<s> to=<r> proto=ESMTP helo=<h>"
 * "reject: header Subject: x from name[ip]; from=<s> to=<r> proto=ESMTP helo=<h>: 5.7.1 text"
 */
static int reject_line(struct rp_parser *p, const char *t, struct rp_event *ev)
{
	size_t k;
	if (t[0] != 'r' && t[0] != 'm' && t[0] != 'h' && t[0] != 'd')
		return 0;
	for (k = 0; k < sizeof reject_types / sizeof reject_types[0]; k++)
		if (starts(t, reject_types[k].prefix))
			break;
	if (k == sizeof reject_types / sizeof reject_types[0])
		return 0;
	ev->kind = RP_EV_REJECT;
	ev->reject = reject_types[k].type;
	ev->code = -1;
	t += strlen(reject_types[k].prefix);
	const char *from = strstr(t, " from ");
	if (!from) {
		ev->stage = keep(p, t, strcspn(t, " ;:"));
		return 1;
	}
	int content = starts(t, "header ") || starts(t, "body ");
	ev->stage = content ? keep(p, t, strcspn(t, " ")) : keep(p, t, (size_t)(from - t));
	client_at(p, from + 6, ev);
	if (content) {
		const char *r = strstr(from, ">: ");
		const char *last = NULL;
		while (r) {
			last = r;
			r = strstr(r + 3, ">: ");
		}
		if (last)
			reply_split(p, last + 3, strlen(last + 3), ev);
	} else {
		const char *r = strstr(from + 6, "]: ");
		if (r) {
			r += 3;
			const char *end = NULL;
			static const char *const tails[] = { "; from=<", "; to=<", "; proto=", "; helo=" };
			for (size_t i = 0; i < 4; i++) {
				const char *e = strstr(r, tails[i]);
				if (e && (!end || e < end))
					end = e;
			}
			reply_split(p, r, end ? (size_t)(end - r) : strlen(r), ev);
		}
	}
	const char *v;
	if ((v = rp_kv_get(ev, "from")))
		ev->sender = unangle(p, v);
	if ((v = rp_kv_get(ev, "to")))
		ev->recipient = unangle(p, v);
	if ((v = rp_kv_get(ev, "helo")))
		ev->helo = unangle(p, v);
	ev->proto = rp_kv_get(ev, "proto");
	return 1;
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

/* first word of v, lower case */
static const char *first_word_lower(struct rp_parser *p, const char *v)
{
	if (!v)
		return NULL;
	size_t n = 0;
	while (v[n] && v[n] != ' ')
		n++;
	return keep_lower(p, v, n);
}

/*
 * A milter named by its socket ("unix:/run/sluice/dkim.sock", as `sluice
 * start` wires them) -> "dkim"; other names lower-cased as they are.
 */
static const char *milter_name(struct rp_parser *p, const char *m)
{
	const char *slash = strrchr(m, '/');
	if (!slash || !slash[1])
		return keep_lower(p, m, strlen(m));
	const char *b = slash + 1;
	size_t n = strlen(b);
	if (n > 5 && !strcmp(b + n - 5, ".sock"))
		n -= 5;
	return keep_lower(p, b, n);
}

/* the keys filter_kv reads, found in one pass over the tokens */
enum fk {
	FK_FILTER, FK_MILTER, FK_RESULT, FK_ACTION, FK_REASON, FK_STAGE, FK_REPLY, FK_SIGN, FK_S,
	FK_DOMAIN, FK_HEADER_FROM, FK_HEADER_DOT_FROM, FK_FROM_DOMAIN, FK_D, FK_IDENTITY, FK_SCOPE,
	FK_DISPOSITION, FK_SCORE, FK_REQUIRED, FK_SENDER, FK_FROM, FK_CLIENT_IP, FK_N
};

static int fk_index(const char *k)
{
#define FK_IS(name, id) if (k[1] == (name)[1] && !strcmp(k, name)) return id
	switch (k[0]) {
	case 'a': FK_IS("action", FK_ACTION); break;
	case 'c': FK_IS("client_ip", FK_CLIENT_IP); break;
	case 'd':
		FK_IS("d", FK_D);
		FK_IS("domain", FK_DOMAIN);
		FK_IS("disposition", FK_DISPOSITION);
		break;
	case 'f':
		FK_IS("filter", FK_FILTER);
		FK_IS("from", FK_FROM);
		FK_IS("from_domain", FK_FROM_DOMAIN);
		break;
	case 'h':
		FK_IS("header_from", FK_HEADER_FROM);
		FK_IS("header.from", FK_HEADER_DOT_FROM);
		break;
	case 'i': FK_IS("identity", FK_IDENTITY); break;
	case 'm': FK_IS("milter", FK_MILTER); break;
	case 'r':
		FK_IS("result", FK_RESULT);
		FK_IS("reason", FK_REASON);
		FK_IS("reply", FK_REPLY);
		FK_IS("required", FK_REQUIRED);
		break;
	case 's':
		FK_IS("s", FK_S);
		FK_IS("stage", FK_STAGE);
		FK_IS("sign", FK_SIGN);
		FK_IS("scope", FK_SCOPE);
		FK_IS("score", FK_SCORE);
		FK_IS("sender", FK_SENDER);
		break;
	}
#undef FK_IS
	return -1;
}

/* key=value verdict lines: sluice-dkim, sluice-spf, filter=..., the MTA's milter=... */
static int filter_kv(struct rp_parser *p, const char *t, struct rp_event *ev)
{
	if (!ev->nkv)
		return 0;
	const char *kv[FK_N] = { 0 };	/* each key's first value, as rp_kv_get gives it */
	for (size_t i = 0; i < ev->nkv; i++) {
		int k = fk_index(ev->kv[i].key);
		if (k >= 0 && !kv[k])
			kv[k] = ev->kv[i].value;
	}
	const char *f = kv[FK_FILTER], *m = kv[FK_MILTER];
	/* "spf: ...", "ratelimit: ..." with a result= token: a policy server's verdict */
	size_t wl = 0;
	while (t[wl] >= 'a' && t[wl] <= 'z')
		wl++;
	int prefixed = wl > 0 && t[wl] == ':' && t[wl + 1] == ' ' && kv[FK_RESULT];
	int spf = prefixed && wl == 3 && starts(t, "spf");
	if (!f && !m && !prefixed)
		return 0;
	ev->kind = RP_EV_FILTER;
	ev->filter = f ? keep_lower(p, f, strlen(f)) : m ? milter_name(p, m) : keep(p, t, wl);
	ev->action = first_word_lower(p, kv[FK_ACTION]);
	ev->reason = kv[FK_REASON];
	ev->stage = kv[FK_STAGE];
	const char *v;
	if (m && ev->stage && !rp_kv_get(ev, ev->filter)) {
		/* sluiced: milter=NAME stage=S action=A [reply="..."] [filter=SHORT] */
		ev->mta_milter = 1;
		ev->reason = kv[FK_REPLY];
		return 1;
	}
	v = kv[FK_RESULT];
	if (!v)
		v = rp_kv_get(ev, ev->filter);	/* dkim=pass, dmarc=fail, spam=... */
	if (!v && (v = kv[FK_SIGN]))
		v = !strcmp(v, "ok") ? "signed" : !strcmp(v, "none") ? "not-signed" : "sign-error";
	ev->result = v ? first_word_lower(p, v) : NULL;
	ev->selector = kv[FK_S];
	if ((v = kv[FK_DOMAIN]) || (v = kv[FK_HEADER_FROM]) || (v = kv[FK_HEADER_DOT_FROM]) ||
	    (v = kv[FK_FROM_DOMAIN]) || (v = kv[FK_D]))
		ev->domain = v;
	else if (spf && (v = kv[FK_IDENTITY]))
		ev->domain = domain_of(v);
	ev->scope = kv[FK_SCOPE];
	ev->disposition = kv[FK_DISPOSITION];
	if ((v = kv[FK_SCORE])) {
		char *end;
		double d = dec(v, &end);
		if (end != v) {
			ev->score = d;
			ev->has_score = 1;
		}
		/* sluice-spam: "milter=spam action=A score=S required=R ..." */
		const char *req = kv[FK_REQUIRED];
		if (!ev->result && ev->has_score && req)
			ev->result = ev->score >= num(req, 0) ? "spam" : "ham";
	}
	if ((v = kv[FK_SENDER]) || (v = kv[FK_FROM]))
		ev->sender = unangle(p, v);
	if ((v = kv[FK_CLIENT_IP]))
		ev->client_ip = v;
	return 1;
}

/* OpenDKIM's texts. */
static void opendkim(struct rp_parser *p, const char *t, struct rp_event *ev)
{
	const char *v;
	ev->filter = "dkim";
	if ((v = strstr(t, " field added (s="))) {
		ev->kind = RP_EV_FILTER;
		ev->result = "signed";
		ev->action = "accept";
		const char *s = v + strlen(" field added (s=");
		ev->selector = keep(p, s, strcspn(s, ","));
		const char *d = strstr(s, ", d=");
		if (d)
			ev->domain = keep(p, d + 4, strcspn(d + 4, ")"));
	} else if (starts(t, "DKIM verification successful")) {
		ev->kind = RP_EV_FILTER;
		ev->result = "pass";
	} else if (starts(t, "bad signature data")) {
		ev->kind = RP_EV_FILTER;
		ev->result = "fail";
		ev->reason = "bad signature data";
	} else if (starts(t, "no signature data")) {
		ev->kind = RP_EV_FILTER;
		ev->result = "none";
	} else if (starts(t, "key retrieval failed")) {
		ev->kind = RP_EV_FILTER;
		ev->result = "permerror";
		ev->reason = "key retrieval failed";
	} else if (starts(t, "s=") && strstr(t, " SSL")) {
		/* "s=SEL d=DOM [a=ALG ]SSL error...": details of a failure logged apart */
		ev->kind = RP_EV_FILTER;
		ev->selector = rp_kv_get(ev, "s");
		ev->domain = rp_kv_get(ev, "d");
		ev->reason = keep(p, strstr(t, " SSL") + 1, strlen(strstr(t, " SSL") + 1));
	}
}

static int known_dmarc_result(const char *w, size_t n)
{
	static const char *const r[] = { "none", "pass", "fail", "temperror", "permerror",
					  "bestguesspass", "reject", "quarantine" };
	for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
		if (strlen(r[i]) == n && memcmp(w, r[i], n) == 0)
			return 1;
	return 0;
}

/* OpenDMARC: "QID: DOMAIN RESULT", "(unknown-jobid): DOMAIN RESULT" without macro i */
static void opendmarc(struct rp_parser *p, const char *t, struct rp_event *ev, int jobid_unknown)
{
	if ((!ev->qid && !jobid_unknown) || starts(t, "SPF("))
		return;
	size_t dl = strcspn(t, " ");
	if (!t[dl] || !strchr(t, '.') || dl == 0)
		return;
	const char *r = t + dl + 1;
	size_t rl = strcspn(r, " ");
	if (r[rl] || !known_dmarc_result(r, rl))
		return;
	ev->kind = RP_EV_FILTER;
	ev->filter = "dmarc";
	ev->domain = keep_lower(p, t, dl);
	ev->result = keep(p, r, rl);
}

/* policyd-spf: "[QID: ]prepend Received-SPF: Pass (mailfrom) identity=mailfrom; ..."
 * or "550 5.7.23 Message rejected due to: SPF fail - not authorized. ..." */
static void policyd_spf(struct rp_parser *p, const char *t, struct rp_event *ev)
{
	const char *h = strstr(t, "Received-SPF: ");
	ev->filter = "spf";
	if (h) {
		ev->kind = RP_EV_FILTER;
		const char *r = h + strlen("Received-SPF: ");
		ev->result = keep_lower(p, r, strcspn(r, " "));
		ev->action = h == t ? "prepend" : first_word_lower(p, t);
		if (starts(t, "Header field not prepended"))
			ev->action = "dunno";
		const char *v = strstr(r, "identity=");
		if (v)
			ev->scope = keep(p, v + 9, strcspn(v + 9, "; "));
		v = strstr(r, "envelope-from=");
		if (v && ev->scope && !strcmp(ev->scope, "mailfrom")) {
			const char *a = v + 14;
			size_t n = strcspn(a, "; ");
			const char *addr = unangle(p, keep(p, a, n));
			ev->domain = domain_of(addr);
		} else if ((v = strstr(r, "helo="))) {
			ev->domain = keep(p, v + 5, strcspn(v + 5, "; "));
		}
		return;
	}
	const char *d = strstr(t, "due to: SPF ");
	if (d) {
		ev->kind = RP_EV_FILTER;
		const char *r = d + strlen("due to: SPF ");
		ev->result = keep_lower(p, r, strcspn(r, " "));
		ev->action = C_DIGIT(t[0]) ? "reject" : first_word_lower(p, t);
		ev->reason = keep(p, t, strlen(t));
	}
}

/*
 * "to=<R>[, orig_to=<O>], relay=X[, conn_use=N], delay=D, delays=a/b/c/d, dsn=X, status=S (TEXT)"
 * walked token by token; 0 (the general path takes it) when it has another shape.
 */
static int delivery_fast(struct rp_parser *p, const char *t, struct rp_event *ev)
{
	const char *to = NULL, *orig = NULL, *relay = NULL, *delay = NULL, *dsn = NULL, *status = NULL;
	size_t tol = 0, origl = 0, relayl = 0, dsnl = 0, statusl = 0;
	const char *s = t;
	while (*s) {
		size_t k = kv_key(s);
		if (!k)
			return 0;
		const char *v = s + k + 1;
		size_t vl = kv_value(v);
		if (k == 2 && !memcmp(s, "to", 2))
			to = v, tol = vl;
		else if (k == 7 && !memcmp(s, "orig_to", 7))
			orig = v, origl = vl;
		else if (k == 5 && !memcmp(s, "relay", 5))
			relay = v, relayl = vl;
		else if (k == 5 && !memcmp(s, "delay", 5))
			delay = v;
		else if (k == 3 && !memcmp(s, "dsn", 3))
			dsn = v, dsnl = vl;
		else if (k == 6 && !memcmp(s, "status", 6))
			status = v, statusl = vl;
		s = v + vl;
		if (status)
			break;
		if (s[0] != ',' || s[1] != ' ')
			return 0;
		s += 2;
	}
	if (!to || !status || tol < 2)
		return 0;
	ev->kind = RP_EV_DELIVERY;
	ev->recipient = keep(p, to + 1, tol - 2);
	if (orig && origl >= 2)
		ev->orig_to = keep(p, orig + 1, origl - 2);
	if (relay)
		ev->relay = keep(p, relay, relayl);
	ev->delay_s = num(delay, -1);
	if (dsn)
		ev->dsn = keep(p, dsn, dsnl);
	ev->status = statusl == 4 && !memcmp(status, "sent", 4) ? RP_ST_SENT
		   : statusl == 8 && !memcmp(status, "deferred", 8) ? RP_ST_DEFERRED
		   : statusl == 7 && !memcmp(status, "bounced", 7) ? RP_ST_BOUNCED : RP_ST_OTHER;
	const char *lp = strchr(status + statusl, '(');
	const char *rp = strrchr(status + statusl, ')');
	if (lp && rp && rp > lp)
		ev->status_text = keep(p, lp + 1, (size_t)(rp - lp - 1));
	return 1;
}

/* client= and from=<>, size= lines read directly (no key=value split): they are frequent */
static int mta_fast(struct rp_parser *p, const char *t, struct rp_event *ev)
{
	if (!ev->qid || (ev->qid[0] == 'N' && !strcmp(ev->qid, "NOQUEUE")))
		return 0;
	if (t[0] == 'c' && starts(t, "client=")) {
		ev->kind = RP_EV_CLIENT;
		client_at(p, t + 7, ev);
		const char *u = strstr(t, " sasl_username=");
		if (u) {
			u += 15;
			ev->sasl_username = keep(p, u, kv_value(u));
		}
		return 1;
	}
	if (t[0] == 't' && starts(t, "to=<"))
		return delivery_fast(p, t, ev);
	if (t[0] == 'f' && starts(t, "from=<")) {
		size_t vl = kv_value(t + 5);
		const char *sz = strstr(t + 5 + vl, " size=");
		if (!sz)
			return 0;
		ev->kind = RP_EV_FROM;
		ev->sender = unangle(p, keep(p, t + 5, vl));
		ev->size_bytes = strtoll(sz + 6, NULL, 10);
		const char *nr = strstr(sz, " nrcpt=");
		ev->nrcpt = nr ? strtol(nr + 7, NULL, 10) : -1;
		return 1;
	}
	return 0;
}

static void mta_line(struct rp_parser *p, const char *t, struct rp_event *ev)
{
	const char *v;
	if (!ev->qid || (ev->qid[0] == 'N' && !strcmp(ev->qid, "NOQUEUE"))) {
		if (t[0] == 'c' && starts(t, "connect from ")) {
			ev->kind = RP_EV_CONNECT;
			client_at(p, t + 13, ev);
			return;
		}
		if (t[0] == 'd' && starts(t, "disconnect from ")) {
			ev->kind = RP_EV_DISCONNECT;
			client_at(p, t + 16, ev);
			return;
		}
	}
	if (reject_line(p, t, ev))
		return;
	if (!ev->qid || (ev->qid[0] == 'N' && !strcmp(ev->qid, "NOQUEUE")))
		return;
	if (t[0] == 'c' && starts(t, "client=")) {
		ev->kind = RP_EV_CLIENT;
		client_at(p, t + 7, ev);
		ev->sasl_username = rp_kv_get(ev, "sasl_username");
	} else if ((t[0] == 'u' && starts(t, "uid=")) || (t[0] == 's' && starts(t, "sender="))) {
		ev->kind = RP_EV_PICKUP;
		if ((v = rp_kv_get(ev, "from")) || (v = rp_kv_get(ev, "sender")))
			ev->sender = unangle(p, v);
	} else if (t[0] == 'm' && starts(t, "message-id=")) {
		ev->kind = RP_EV_MESSAGE_ID;
		ev->message_id = keep(p, t + 11, strlen(t + 11));
	} else if (t[0] == 'f' && starts(t, "from=<") && (v = rp_kv_get(ev, "size"))) {
		ev->kind = RP_EV_FROM;
		ev->sender = unangle(p, rp_kv_get(ev, "from"));
		ev->size_bytes = strtoll(v, NULL, 10);
		ev->nrcpt = (long)num(rp_kv_get(ev, "nrcpt"), -1);
	} else if (t[0] == 't' && starts(t, "to=<") && (v = rp_kv_get(ev, "status"))) {
		ev->kind = RP_EV_DELIVERY;
		ev->recipient = unangle(p, rp_kv_get(ev, "to"));
		if ((v = rp_kv_get(ev, "orig_to")))
			ev->orig_to = unangle(p, v);
		ev->relay = rp_kv_get(ev, "relay");
		ev->delay_s = num(rp_kv_get(ev, "delay"), -1);
		ev->dsn = rp_kv_get(ev, "dsn");
		v = rp_kv_get(ev, "status");
		ev->status = !strcmp(v, "sent") ? RP_ST_SENT : !strcmp(v, "deferred") ? RP_ST_DEFERRED
			   : !strcmp(v, "bounced") ? RP_ST_BOUNCED : RP_ST_OTHER;
		const char *st = strstr(t, "status=");
		const char *lp = st ? strchr(st, '(') : NULL;
		const char *rp = strrchr(t, ')');
		if (lp && rp && rp > lp)
			ev->status_text = keep(p, lp + 1, (size_t)(rp - lp - 1));
	} else if (!strcmp(t, "removed")) {
		ev->kind = RP_EV_REMOVED;
	}
}

enum rp_family { FAM_MTA, FAM_OPENDKIM, FAM_OPENDMARC, FAM_POLICYD_SPF };

static enum rp_family program_family(const struct rp_event *ev)
{
	const char *n = ev->syslog_name ? ev->syslog_name : "";
	if (n[0] == 'o' && starts(n, "opendkim"))
		return FAM_OPENDKIM;
	if (n[0] == 'o' && starts(n, "opendmarc"))
		return FAM_OPENDMARC;
	if (n[0] == 'p' && n[1] == 'o' && n[2] == 'l' &&	/* not "postfix" */
	    (starts(n, "policyd-spf") || starts(n, "policy-spf")))
		return FAM_POLICYD_SPF;
	return FAM_MTA;
}

static void classify(struct rp_parser *p, const char *msg, struct rp_event *ev)
{
	size_t q = qid_len(msg);
	const char *t = msg;
	if (q) {
		ev->qid = keep(p, msg, q);
		t = msg + q + 2;
	}
	enum rp_family fam = program_family(ev);
	int jobid_unknown = 0;
	if (!q && fam != FAM_MTA) {
		if (msg[0] == ':' && msg[1] == ' ')
			t = msg + 2;	/* policyd-spf with QueueID and Postfix's empty queue_id */
		else if (msg[0] == '(' && starts(msg, "(unknown-jobid): "))
			t = msg + 17, jobid_unknown = 1;	/* OpenDKIM, OpenDMARC without macro i */
	}
	ev->msg = t;		/* in the arena already */
	ev->kind = RP_EV_OTHER;
	if (fam == FAM_MTA && q && ev->qid[0] != 'N' && ((t[0] == 'r' && !strcmp(t, "removed")) ||
							 (t[0] == 'm' && starts(t, "message-id=")))) {
		/* the most frequent lines of all, as mta_line reads them */
		if (t[0] == 'r') {
			ev->kind = RP_EV_REMOVED;
		} else {
			ev->kind = RP_EV_MESSAGE_ID;
			ev->message_id = keep(p, t + 11, strlen(t + 11));
		}
		return;
	}
	if (fam == FAM_MTA && ((t[0] == 'c' && starts(t, "connect from ")) ||
			       (t[0] == 'd' && starts(t, "disconnect from ")) ||
			       (t[0] == 'm' && starts(t, "message-id=")) ||
			       (t[0] == 'r' && !strcmp(t, "removed")))) {
		mta_line(p, t, ev);	/* the most frequent lines need no key=value split */
		return;
	}
	if (fam == FAM_MTA && mta_fast(p, t, ev))
		return;
	/* of the other programs' lines only OpenDKIM's "s=SEL d=DOM ..." needs the split */
	if ((fam == FAM_MTA && strchr(t, '=')) || (fam == FAM_OPENDKIM && t[0] == 's' && t[1] == '='))
		split_kv(p, t, ev);	/* (no '=': no key=value token) */
	if (fam == FAM_OPENDKIM)
		opendkim(p, t, ev);
	else if (fam == FAM_OPENDMARC)
		opendmarc(p, t, ev, jobid_unknown);
	else if (fam == FAM_POLICYD_SPF)
		policyd_spf(p, t, ev);
	else if (!filter_kv(p, t, ev))
		mta_line(p, t, ev);
}

static void ev_reset(struct rp_event *ev)
{
	memset(ev, 0, offsetof(struct rp_event, kv));	/* kv[] is valid up to nkv only */
	ev->nkv = 0;
	ev->pid = -1;
	ev->delay_s = -1;
	ev->size_bytes = -1;
	ev->nrcpt = -1;
	ev->code = -1;
	ev->service = "";
}

/* log_format = json: {"time":..., "host":..., "program":..., "pid":..., "queue_id":..., "message":...} */
static enum rp_kind json_line(struct rp_parser *p, const char *line, size_t len, struct rp_event *ev)
{
	json_error_t jerr;
	json_t *o = json_loadb(line, len, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return RP_EV_NONE;
	}
	const char *msg = json_string_value(json_object_get(o, "message"));
	const char *prog = json_string_value(json_object_get(o, "program"));
	if (!msg || !prog) {
		json_decref(o);
		return RP_EV_NONE;
	}
	const char *ts = json_string_value(json_object_get(o, "time"));
	if (ts && !rtime_iso(&p->tc, ts, &ev->time))
		ev->time = 0;
	const char *host = json_string_value(json_object_get(o, "host"));
	ev->host = host ? keep(p, host, strlen(host)) : NULL;
	json_t *pid = json_object_get(o, "pid");
	ev->pid = json_is_integer(pid) ? (long)json_integer_value(pid) : -1;
	const char *slash = strchr(prog, '/');
	if (slash) {
		ev->syslog_name = keep(p, prog, (size_t)(slash - prog));
		ev->service = keep(p, strrchr(prog, '/') + 1, strlen(strrchr(prog, '/') + 1));
	} else {
		ev->syslog_name = keep(p, prog, strlen(prog));
	}
	const char *qid = json_string_value(json_object_get(o, "queue_id"));
	size_t ml = strlen(msg);
	if (ml > RP_MAX_LINE_BYTES)
		ml = RP_MAX_LINE_BYTES;
	if (qid && *qid && strlen(qid) < 64) {
		/* the same text as a plain line: "QID: message" */
		size_t ql = strlen(qid);
		char *buf = arena_alloc(p, ql + 2 + ml + 1);
		if (buf) {
			memcpy(buf, qid, ql);
			memcpy(buf + ql, ": ", 2);
			memcpy(buf + ql + 2, msg, ml);
			buf[ql + 2 + ml] = 0;
			if (!qid_len(buf))	/* a queue id of another shape still counts */
				ev->qid = keep(p, qid, ql);
			classify(p, qid_len(buf) ? buf : buf + ql + 2, ev);
		}
	} else {
		classify(p, keep(p, msg, ml), ev);
	}
	json_decref(o);
	return ev->kind;
}

/* a[0..n) == b[0..n), both readable for n bytes: 8 bytes a step, the last
   step overlapping (a stamp is 15 to 32 bytes) */
static inline int same_stamp(const char *a, const char *b, size_t n)
{
	uint64_t x, y;
	if (n < 8)
		return memcmp(a, b, n) == 0;
	for (size_t i = 0; i + 8 < n; i += 8) {
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
			return 0;
	}
	memcpy(&x, a + n - 8, 8);
	memcpy(&y, b + n - 8, 8);
	return x == y;
}

enum rp_kind rp_parse_line(struct rp_parser *p, const char *line, size_t len, struct rp_event *ev)
{
	ev_reset(ev);
	p->used = p->base;
	if (len > RP_MAX_LINE_BYTES)
		len = RP_MAX_LINE_BYTES;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len && line[0] == '{')
		return json_line(p, line, len, ev);
	/* a NUL-terminated copy (a NUL inside the line just ends it early) */
	char *s = (char *)keep(p, line, len);
	const char *line0 = s;	/* len bytes and a NUL */
	const char *msg = NULL;
	if (s[0] == '<') {	/* <PRI> */
		size_t i = 1;
		while (C_DIGIT(s[i]) && i < 5)
			i++;
		if (s[i] == '>' && i > 1) {
			s += i + 1;
			if (s[0] == '1' && s[1] == ' ') {
				msg = rfc5424(p, s + 2, ev);
				if (!msg)
					return ev->kind = RP_EV_NONE;
			}
		}
	}
	if (!msg) {
		size_t n = p->stamp_len;
		if (n && n < (size_t)(line0 + len - s) && same_stamp(s, p->stamp, n) && s[n] == ' ') {
			/* the same bytes before a space parse the same */
			ev->time = p->stamp_time;
		} else {
			n = C_DIGIT(s[0]) ? rtime_iso(&p->tc, s, &ev->time)
					  : rtime_bsd(&p->tc, s, p->year_hint, p->month_hint, &ev->time);
			if (!n || s[n] != ' ')
				return ev->kind = RP_EV_NONE;
			p->stamp_len = n < sizeof p->stamp ? n : 0;
			if (p->stamp_len) {
				memcpy(p->stamp, s, n);
				p->stamp_time = ev->time;
			}
		}
		s += n + 1;
		char *sp = strchrnul(s, ' ');	/* the host, cut in place */
		if (!*sp)
			return ev->kind = RP_EV_NONE;
		*sp = 0;
		ev->host = s;
		msg = tag(sp + 1, ev);
		if (!msg)
			return ev->kind = RP_EV_NONE;
	}
	classify(p, msg, ev);
	return ev->kind;
}

void rp_parser_arena(struct rp_parser *p, char *buf, size_t cap)
{
	if (!buf || cap < RP_ARENA_MIN) {
		buf = p->own;
		cap = RP_ARENA_MIN;
	}
	p->arena = buf;
	p->cap = cap;
	p->base = p->used = 0;
}

size_t rp_parser_room(const struct rp_parser *p)
{
	return p->cap - p->base;
}

char *rp_parser_tail(struct rp_parser *p, size_t *room_out)
{
	*room_out = p->cap - p->used;
	return p->arena + p->used;
}

void rp_parser_keep(struct rp_parser *p, size_t n)
{
	if (p->arena == p->own)
		return;		/* (its own arena is reused by every line) */
	if (n > p->cap - p->used)
		n = p->cap - p->used;
	p->base = p->used + n;
}

const char *rp_kind_name(enum rp_kind k)
{
	static const char *const names[] = { "none", "other", "connect", "disconnect", "client",
					      "pickup", "message-id", "from", "delivery",
					      "removed", "reject", "filter" };
	return (size_t)k < sizeof names / sizeof names[0] ? names[k] : "?";
}
