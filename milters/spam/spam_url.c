/*
 * spam_url: find and normalise URLs. See spam_url.h.
 */
#include "milters/spam/spam_url.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- punycode, RFC 3492 section 6.3 ---- */

enum { PC_BASE = 36, PC_TMIN = 1, PC_TMAX = 26, PC_SKEW = 38, PC_DAMP = 700, PC_MAX_CPS = 64 };

static uint32_t pc_adapt(uint32_t delta, uint32_t npoints, int first)
{
	uint32_t k = 0;
	delta = first ? delta / PC_DAMP : delta / 2;
	delta += delta / npoints;
	while (delta > ((PC_BASE - PC_TMIN) * PC_TMAX) / 2) {
		delta /= PC_BASE - PC_TMIN;
		k += PC_BASE;
	}
	return k + (PC_BASE - PC_TMIN + 1) * delta / (delta + PC_SKEW);
}

static char pc_digit(uint32_t d)
{
	return (char)(d < 26 ? 'a' + d : '0' + (d - 26));
}

/* utf8_decode - code points of s into cps (at most max); count or -1 if invalid. */
static int utf8_decode(const unsigned char *s, size_t len, uint32_t *cps, int max)
{
	int n = 0;
	for (size_t i = 0; i < len;) {
		uint32_t c = s[i];
		int extra = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 :
			    (c & 0xf8) == 0xf0 ? 3 : -1;
		if (extra < 0 || i + (size_t)extra >= len || n >= max)
			return -1;
		if (extra)
			c &= 0x3f >> extra;
		for (int k = 1; k <= extra; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				return -1;
			c = (c << 6) | (s[i + k] & 0x3f);
		}
		if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return -1;
		cps[n++] = c;
		i += (size_t)extra + 1;
	}
	return n;
}

char *spam_url_punycode(const char *label, size_t len)
{
	uint32_t cps[PC_MAX_CPS];
	int ncp = utf8_decode((const unsigned char *)label, len, cps, PC_MAX_CPS);
	if (ncp <= 0)
		return NULL;
	struct sbuf out;
	sbuf_init(&out);
	uint32_t b = 0;
	for (int i = 0; i < ncp; i++)
		if (cps[i] < 0x80) {
			sbuf_addc(&out, (char)cps[i]);
			b++;
		}
	if (b > 0)
		sbuf_addc(&out, '-');
	uint32_t n = 0x80, delta = 0, bias = 72, h = b;
	while (h < (uint32_t)ncp) {
		uint32_t m = UINT32_MAX;
		for (int i = 0; i < ncp; i++)
			if (cps[i] >= n && cps[i] < m)
				m = cps[i];
		/* 64 code points below 0x110000: no overflow in 32 bits */
		delta += (m - n) * (h + 1);
		n = m;
		for (int i = 0; i < ncp; i++) {
			if (cps[i] < n)
				delta++;
			if (cps[i] != n)
				continue;
			uint32_t q = delta;
			for (uint32_t k = PC_BASE;; k += PC_BASE) {
				uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
				if (q < t)
					break;
				sbuf_addc(&out, pc_digit(t + (q - t) % (PC_BASE - t)));
				q = (q - t) / (PC_BASE - t);
			}
			sbuf_addc(&out, pc_digit(q));
			bias = pc_adapt(delta, h + 1, h == b);
			delta = 0;
			h++;
		}
		delta++;
		n++;
	}
	return sbuf_steal(&out);
}

/* ---- libpsl ---- */

static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static psl_ctx_t *psl;

static void psl_load(void)
{
	psl = psl_latest(NULL);
	if (psl == NULL)
		psl = (psl_ctx_t *)psl_builtin();
}

char *spam_url_registered_domain(const char *host)
{
	pthread_once(&psl_once, psl_load);
	if (psl == NULL || host == NULL || *host == 0)
		return NULL;
	const char *r = psl_registrable_domain(psl, host);
	return r ? xstrdup(r) : NULL;
}

/* ---- normalisation ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* pct_decode - %XX decoded (once), controls and NUL dropped. */
static char *pct_decode(const char *s, size_t len)
{
	char *o = xmalloc(len + 1);
	size_t j = 0;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (c == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			continue;
		o[j++] = (char)c;
	}
	o[j] = 0;
	return o;
}

static int is_ip_literal(const char *h)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* host_ascii - lower-case, IDN labels to punycode; NULL if not a plausible host. */
static char *host_ascii(const char *h)
{
	struct sbuf out;
	sbuf_init(&out);
	const char *p = h;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		int ascii = 1;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c >= 0x80)
				ascii = 0;
			else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				   (c >= '0' && c <= '9') || c == '-' || c == '_'))
				goto bad;
		}
		if (n == 0 || n > 253)
			goto bad;
		if (out.len)
			sbuf_addc(&out, '.');
		if (ascii) {
			for (size_t i = 0; i < n; i++) {
				char c = p[i];
				sbuf_addc(&out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
			}
		} else {
			/* XXX: no IDNA2008 mapping (case folding of non-ASCII letters, NFC). */
			char *pc = spam_url_punycode(p, n);
			if (pc == NULL)
				goto bad;
			sbuf_adds(&out, "xn--");
			sbuf_adds(&out, pc);
			free(pc);
		}
		p += n;
		if (*p == '.')
			p++;
	}
	if (out.len == 0 || out.len > 253)
		goto bad;
	return sbuf_steal(&out);
bad:
	sbuf_free(&out);
	return NULL;
}

int spam_url_normalise(const char *raw, size_t len, struct spam_url *out)
{
	if (len > SPAM_URL_MAX_BYTES)
		len = SPAM_URL_MAX_BYTES;
	char *s = pct_decode(raw, len);
	for (char *q = s; *q; q++)
		if (*q == '\\')
			*q = '/';
	char *scheme = NULL, *rest, *auth_end, *host = NULL;
	int mailto = 0;
	char *p = strstr(s, "://");
	if (p && p > s && (size_t)(p - s) <= 10) {
		scheme = xstrndup(s, (size_t)(p - s));
		ascii_lower(scheme);
		for (char *c = scheme; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '+' ||
			      *c == '-' || *c == '.'))
				goto fail;
		rest = p + 3;
	} else if (!ascii_strncasecmp(s, "mailto:", 7)) {
		scheme = xstrdup("mailto");
		mailto = 1;
		rest = s + 7;
	} else if (!ascii_strncasecmp(s, "www.", 4)) {
		scheme = xstrdup("http");
		rest = s;
	} else {
		goto fail;
	}
	if (mailto) {
		char *at = strchr(rest, '@');
		if (at == NULL)
			goto fail;
		auth_end = at + 1 + strcspn(at + 1, "?>/ ");
		host = xstrndup(at + 1, (size_t)(auth_end - at - 1));
	} else {
		auth_end = rest + strcspn(rest, "/?#");
		char *a = xstrndup(rest, (size_t)(auth_end - rest));
		char *at = strrchr(a, '@');
		char *h = at ? at + 1 : a;
		if (*h == '[') {
			char *rb = strchr(h, ']');
			if (rb == NULL) {
				free(a);
				goto fail;
			}
			host = xstrndup(h + 1, (size_t)(rb - h - 1));
		} else {
			char *colon = strchr(h, ':');
			host = colon ? xstrndup(h, (size_t)(colon - h)) : xstrdup(h);
		}
		free(a);
	}
	size_t hl = strlen(host);
	while (hl > 0 && host[hl - 1] == '.')
		host[--hl] = 0;
	if (hl == 0)
		goto fail;
	char *ah;
	if (is_ip_literal(host)) {
		ah = xstrdup(host);
		ascii_lower(ah);
	} else if ((ah = host_ascii(host)) == NULL) {
		goto fail;
	}
	out->host = ah;
	out->raw = xmalloc(len + 1);
	size_t rl = 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)raw[i] > 0x20 && raw[i] != 0x7f)
			out->raw[rl++] = raw[i];
	out->raw[rl] = 0;
	out->domain = is_ip_literal(ah) ? NULL : spam_url_registered_domain(ah);
	if (out->domain == NULL)
		out->domain = xstrdup(ah);
	if (mailto)
		out->url = xasprintf("mailto:%.*s%s%s", (int)(strchr(rest, '@') - rest), rest, "@", ah);
	else
		out->url = xasprintf("%s://%s%s", scheme, strchr(ah, ':') ? "" : ah,
				     strchr(ah, ':') ? "" : auth_end);
	if (strchr(ah, ':')) {	/* v6 literal */
		free(out->url);
		out->url = xasprintf("%s://[%s]%s", scheme, ah, auth_end);
	}
	free(scheme);
	free(host);
	free(s);
	return 0;
fail:
	free(scheme);
	free(host);
	free(s);
	return -1;
}

void spam_url_clear(struct spam_url *u)
{
	if (u == NULL)
		return;
	free(u->url);
	free(u->host);
	free(u->domain);
	free(u->raw);
	u->url = u->host = u->domain = u->raw = NULL;
}

/* ---- finding URLs in text ---- */

static int url_char(unsigned char c)
{
	return c > 0x20 && c != 0x7f && !strchr("<>\"'`{}|^", c);
}

void spam_url_scan_text(const char *text, size_t len,
			void (*cb)(const char *raw, size_t len, void *arg), void *arg)
{
	size_t i = 0;
	while (i < len) {
		size_t start = SIZE_MAX;
		/* find the next candidate start */
		for (; i < len; i++) {
			const char *t = text + i;
			size_t left = len - i;
			int boundary = i == 0 || !((text[i - 1] >= 'a' && text[i - 1] <= 'z') ||
						   (text[i - 1] >= 'A' && text[i - 1] <= 'Z') ||
						   (text[i - 1] >= '0' && text[i - 1] <= '9'));
			if (!boundary)
				continue;
			if ((left > 7 && !ascii_strncasecmp(t, "http://", 7)) ||
			    (left > 8 && !ascii_strncasecmp(t, "https://", 8)) ||
			    (left > 6 && !ascii_strncasecmp(t, "ftp://", 6)) ||
			    (left > 4 && !ascii_strncasecmp(t, "www.", 4)) ||
			    (left > 7 && !ascii_strncasecmp(t, "mailto:", 7))) {
				start = i;
				break;
			}
		}
		if (start == SIZE_MAX)
			return;
		size_t e = start;
		while (e < len && e - start < SPAM_URL_MAX_BYTES && url_char((unsigned char)text[e]))
			e++;
		size_t end = e;
		while (end > start && strchr(".,;:!?)]*", text[end - 1]))
			end--;
		if (end > start + 4)
			cb(text + start, end - start, arg);
		i = e > start ? e : start + 1;
	}
}
