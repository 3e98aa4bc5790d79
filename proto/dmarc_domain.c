/*
 * dmarc_domain: domain names for DMARC: normalization and checks of
 * untrusted names, the RFC 7489 3.2 Organizational Domain from the Public
 * Suffix List (libpsl) and RFC 7489 3.1 alignment. See proto/dmarc.h.
 */
#include <stdio.h>
#include <string.h>

#include <libpsl.h>

#include "proto/dmarc.h"

#define NAME_BUF (DMARC_NAME_MAX + 1)

static int ldh(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

int dmarc_domain_normalize(const char *name, char *out, size_t outlen)
{
	size_t len, lab = 0;

	if (outlen)
		out[0] = 0;
	if (!name || outlen < 2)
		return -1;
	len = strlen(name);
	if (len && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DMARC_NAME_MAX || len >= outlen)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (ch == '.') {
			if (lab == 0)
				goto bad;
			lab = 0;
		} else if (!ldh(ch) || ++lab > 63) {
			goto bad;
		}
		out[i] = ch;
	}
	if (lab == 0)
		goto bad;
	out[len] = 0;
	return 0;
bad:
	out[0] = 0;
	return -1;
}

static const psl_ctx_t *psl_of(const void *psl)
{
	return psl ? (const psl_ctx_t *)psl : psl_builtin();
}

int dmarc_org_domain_psl(const void *psl, const char *domain, char *out, size_t outlen)
{
	char norm[NAME_BUF];
	const psl_ctx_t *ctx = psl_of(psl);
	const char *reg = NULL;

	if (outlen)
		out[0] = 0;
	if (dmarc_domain_normalize(domain, norm, sizeof(norm)) < 0)
		return -1;
	if (ctx)
		reg = psl_registrable_domain(ctx, norm);
	if (!reg)
		reg = norm;	/* a public suffix is its own Organizational Domain */
	if (strlen(reg) >= outlen)
		return -1;
	strcpy(out, reg);
	return 0;
}

int dmarc_aligned_psl(const void *psl, const char *from_domain, const char *auth_domain,
		      int strict)
{
	char a[NAME_BUF], b[NAME_BUF];

	if (dmarc_domain_normalize(from_domain, a, sizeof(a)) < 0 ||
	    dmarc_domain_normalize(auth_domain, b, sizeof(b)) < 0)
		return 0;
	if (strcmp(a, b) == 0)
		return 1;
	if (strict)
		return 0;
	char oa[NAME_BUF], ob[NAME_BUF];
	if (dmarc_org_domain_psl(psl, a, oa, sizeof(oa)) < 0 ||
	    dmarc_org_domain_psl(psl, b, ob, sizeof(ob)) < 0)
		return 0;
	return strcmp(oa, ob) == 0;
}
