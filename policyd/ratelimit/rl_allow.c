/*
 * rl_allow: see rl_allow.h.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "policyd/ratelimit/rl_allow.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "lib/util.h"
#include "policyd/ratelimit/rl_net.h"

enum kind { A_NAME, A_NET, A_PREFIX, A_RE, A_LOCAL, A_ADDR };

struct entry {
	enum kind kind;
	char *text;
	struct rl_net net;
	pcre2_code *re;
};

struct rl_allow {
	struct entry *e;
	size_t n;
	pcre2_match_data *md;
};

void rl_allow_free(struct rl_allow **ap)
{
	if (!ap || !*ap)
		return;
	struct rl_allow *a = *ap;
	for (size_t i = 0; i < a->n; i++) {
		free(a->e[i].text);
		if (a->e[i].re)
			pcre2_code_free(a->e[i].re);
	}
	free(a->e);
	if (a->md)
		pcre2_match_data_free(a->md);
	free(a);
	*ap = NULL;
}

static int is_addr_prefix(const char *s)
{
	int dots = 0;
	for (; *s; s++) {
		if (*s == '.')
			dots++;
		else if (!isdigit((unsigned char)*s))
			return 0;
	}
	return dots <= 2;
}

static const char *add_line(struct rl_allow *a, const char *line)
{
	struct entry e = { 0 };
	size_t n = strlen(line);

	if (n >= 2 && line[0] == '/' && line[n - 1] == '/') {
		int ec;
		PCRE2_SIZE off;
		char *pat = xstrndup(line + 1, n - 2);
		e.re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec, &off,
				     NULL);
		free(pat);
		if (!e.re)
			return "bad regular expression";
		e.kind = A_RE;
	} else if (rl_net_parse(line, &e.net) == 0) {
		e.kind = A_NET;
	} else if (is_addr_prefix(line)) {
		e.kind = A_PREFIX;
		e.text = xasprintf("%s.", line);
	} else if (line[n - 1] == '@') {
		e.kind = A_LOCAL;
		e.text = xstrdup(line);
	} else if (strchr(line, '@')) {
		e.kind = A_ADDR;
		e.text = xstrdup(line);
	} else {
		e.kind = A_NAME;
		e.text = xstrdup(line);
	}
	if (e.text)
		ascii_lower(e.text);
	a->e = xrealloc(a->e, (a->n + 1) * sizeof(*a->e));
	a->e[a->n++] = e;
	return NULL;
}

struct rl_allow *rl_allow_load(const char *const *files, size_t nfiles, char **err_out)
{
	struct rl_allow *a = xcalloc(1, sizeof(*a));

	a->md = pcre2_match_data_create(1, NULL);
	for (size_t f = 0; f < nfiles; f++) {
		char *text;
		size_t len;
		if (conf_read_file(files[f], 64 * 1024 * 1024, &text, &len, err_out) < 0) {
			rl_allow_free(&a);
			return NULL;
		}
		struct conf_lines *r = conf_lines_new(text, len, files[f], 0);
		const char *line;
		int lineno, rc;
		while ((rc = conf_lines_next(r, &line, &lineno, err_out)) == 1) {
			const char *why = add_line(a, line);
			if (why) {
				*err_out = xasprintf("%s:%d: %s", files[f], lineno, why);
				rc = -1;
				break;
			}
		}
		conf_lines_free(&r);
		free(text);
		if (rc < 0) {
			rl_allow_free(&a);
			return NULL;
		}
	}
	return a;
}

/* under - name equals domain or ends in "." + domain. */
static int under(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);
	if (n == d)
		return !ascii_strcasecmp(name, domain);
	return n > d && name[n - d - 1] == '.' && !ascii_strcasecmp(name + n - d, domain);
}

static int re_hit(const struct rl_allow *a, const struct entry *e, const char *s)
{
	return pcre2_match(e->re, (PCRE2_SPTR)s, strlen(s), 0, 0, a->md, NULL) >= 0;
}

int rl_allow_client(const struct rl_allow *a, const char *name, const char *addr)
{
	if (!a)
		return 0;
	int named = name && *name && strcmp(name, "unknown");
	for (size_t i = 0; i < a->n; i++) {
		const struct entry *e = &a->e[i];
		switch (e->kind) {
		case A_NAME:
			if (named && under(name, e->text))
				return 1;
			break;
		case A_RE:
			if (named && re_hit(a, e, name))
				return 1;
			break;
		case A_NET:
			if (rl_net_contains(&e->net, addr))
				return 1;
			break;
		case A_PREFIX:
			if (addr && !strncmp(addr, e->text, strlen(e->text)))
				return 1;
			break;
		default:
			break;
		}
	}
	return 0;
}

int rl_allow_rcpt(const struct rl_allow *a, const char *rcpt)
{
	if (!a || !rcpt || !*rcpt)
		return 0;
	const char *at = strrchr(rcpt, '@');
	for (size_t i = 0; i < a->n; i++) {
		const struct entry *e = &a->e[i];
		switch (e->kind) {
		case A_ADDR:
			if (!ascii_strcasecmp(rcpt, e->text))
				return 1;
			break;
		case A_LOCAL:
			if (at && (size_t)(at - rcpt + 1) == strlen(e->text) &&
			    !ascii_strncasecmp(rcpt, e->text, strlen(e->text)))
				return 1;
			break;
		case A_NAME:
			if (at && under(at + 1, e->text))
				return 1;
			break;
		case A_RE:
			if (re_hit(a, e, rcpt))
				return 1;
			break;
		default:
			break;
		}
	}
	return 0;
}
