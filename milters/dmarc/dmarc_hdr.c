#include "milters/dmarc/dmarc_hdr.h"
#include "lib/util.h"

#include <string.h>

int dmarc_hdr_tag(const char *v, const char *t, char *out, size_t outlen)
{
	size_t tl = strlen(t);
	const char *p = v;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ';')
			p++;
		const char *name = p;
		while (*p && *p != '=' && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r' &&
		       *p != '\n')
			p++;
		size_t nl = (size_t)(p - name);
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '=') {
			while (*p && *p != ';')
				p++;
			continue;
		}
		p++;
		size_t o = 0;
		int match = nl == tl && memcmp(name, t, tl) == 0;
		for (; *p && *p != ';'; p++)
			if (match && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && o + 1 < outlen)
				out[o++] = *p;
		if (match) {
			out[o] = 0;
			return 0;
		}
	}
	return -1;
}

void dmarc_hdr_rspf_result(const char *v, char *out, size_t outlen)
{
	const char *p = v;
	size_t o = 0;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	while (*p && *p != ' ' && *p != '\t' && *p != '(' && *p != ';' && *p != '\r' && *p != '\n') {
		if (o + 1 < outlen)
			out[o++] = *p;
		p++;
	}
	if (outlen)
		out[o] = 0;
}

int dmarc_hdr_rspf_field(const char *v, const char *key, char *out, size_t outlen)
{
	const char *p = v;
	int depth = 0;
	/* skip the result word and comments: key-value pairs follow */
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	while (*p && *p != ' ' && *p != '\t' && *p != '(' && *p != '\r' && *p != '\n')
		p++;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ';')
			p++;
		if (*p == '(') {
			for (; *p; p++) {
				if (*p == '\\' && p[1])
					p++;
				else if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0) {
					p++;
					break;
				}
			}
			continue;
		}
		if (*p == 0)
			return -1;
		const char *k = p;
		while (*p && *p != '=' && *p != ';' && *p != ' ' && *p != '\t')
			p++;
		size_t kl = (size_t)(p - k);
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '=') {
			while (*p && *p != ';')
				p++;
			continue;
		}
		p++;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		size_t o = 0;
		int match = kl == strlen(key) && ascii_strncasecmp(k, key, kl) == 0;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (match && o + 1 < outlen)
					out[o++] = *p;
			}
			if (*p == '"')
				p++;
		} else {
			for (; *p && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n'; p++)
				if (match && o + 1 < outlen)
					out[o++] = *p;
		}
		if (match) {
			out[o] = 0;
			return 0;
		}
	}
}

void dmarc_hdr_strip_angle(char *s)
{
	size_t l = strlen(s);
	if (l >= 2 && s[0] == '<' && s[l - 1] == '>') {
		memmove(s, s + 1, l - 2);
		s[l - 2] = 0;
	}
}

const char *dmarc_hdr_addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : NULL;
}
