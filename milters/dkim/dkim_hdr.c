#include "milters/dkim/dkim_hdr.h"
#include "lib/util.h"

#include <string.h>

const char *dkim_res_name(enum dkim_res r)
{
	switch (r) {
	case DKIM_RES_NONE: return "none";
	case DKIM_RES_PASS: return "pass";
	case DKIM_RES_FAIL: return "fail";
	case DKIM_RES_POLICY: return "policy";
	case DKIM_RES_NEUTRAL: return "neutral";
	case DKIM_RES_TEMPERROR: return "temperror";
	case DKIM_RES_PERMERROR: return "permerror";
	}
	return "permerror";
}

/* skip_cfws - white space, folding and (nested (comments)); returns new index. */
static size_t skip_cfws(const char *v, size_t len, size_t i)
{
	int depth = 0;
	while (i < len) {
		char c = v[i];
		if (depth > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			i++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
		} else if (c == '(') {
			depth = 1;
			i++;
		} else {
			break;
		}
	}
	return i;
}

int dkim_hdr_ar_authserv(const char *v, size_t len, char *out, size_t outlen)
{
	size_t i = skip_cfws(v, len, 0), o = 0;
	if (outlen == 0)
		return -1;
	if (i < len && v[i] == '"') {
		/* quoted-string authserv-id (RFC 8601 value) */
		for (i++; i < len && v[i] != '"'; i++) {
			if (v[i] == '\\' && i + 1 < len)
				i++;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = v[i];
		}
		if (i >= len)
			return -1;
	} else {
		for (; i < len; i++) {
			unsigned char c = (unsigned char)v[i];
			if (c <= ' ' || c == ';' || c == '(' || c >= 0x7f)
				break;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return o > 0 ? 0 : -1;
}

/* copy_lower - [p, p+n) into out lower-cased; -1 if it does not fit or is empty. */
static int copy_lower(const char *p, size_t n, char *out, size_t outlen)
{
	if (n == 0 || n >= outlen)
		return -1;
	for (size_t k = 0; k < n; k++) {
		char c = p[k];
		out[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = 0;
	return 0;
}

/*
 * One addr-spec starting at v[i]: local part (atoms or quoted string), '@',
 * domain (atoms or domain literal). Returns 0 and fills out; -1 otherwise.
 */
static int parse_addr_spec(const char *v, size_t len, size_t i, char *out, size_t outlen,
			   char *local_out, size_t local_outlen)
{
	size_t ls = i, le;
	if (i < len && v[i] == '"') {
		for (i++; i < len && v[i] != '"'; i++)
			if (v[i] == '\\' && i + 1 < len)
				i++;
		if (i >= len)
			return -1;
		i++;
	} else {
		while (i < len && v[i] != '@' && v[i] != '>' && v[i] != ',' && v[i] != ';' &&
		       v[i] != ' ' && v[i] != '\t' && v[i] != '\r' && v[i] != '\n' && v[i] != '(' &&
		       v[i] != '<')
			i++;
	}
	le = i;
	i = skip_cfws(v, len, i);
	if (i >= len || v[i] != '@')
		return -1;
	i = skip_cfws(v, len, i + 1);
	size_t ds = i;
	if (i < len && v[i] == '[') {
		while (i < len && v[i] != ']')
			i++;
		if (i >= len)
			return -1;
		i++;
	} else {
		while (i < len && (((unsigned char)v[i] > ' ' && v[i] != '>' && v[i] != ',' &&
				    v[i] != ';' && v[i] != '(' && v[i] != ')' && v[i] != '<' &&
				    v[i] != '"' && (unsigned char)v[i] < 0x7f)))
			i++;
	}
	size_t dl = i - ds;
	if (dl > 0 && v[ds + dl - 1] == '.')
		dl--;	/* trailing dot */
	if (copy_lower(v + ds, dl, out, outlen) < 0)
		return -1;
	if (local_out != NULL) {
		if (le - ls >= local_outlen)
			return -1;
		memcpy(local_out, v + ls, le - ls);
		local_out[le - ls] = 0;
	}
	return 0;
}

int dkim_hdr_from_domain(const char *v, size_t len, char *out, size_t outlen, char *local_out,
			 size_t local_outlen)
{
	/* An angle address anywhere (outside quotes and comments) wins. */
	int inq = 0, depth = 0;
	for (size_t i = 0; i < len; i++) {
		char c = v[i];
		if (c == '\\' && i + 1 < len && (inq || depth)) {
			i++;
			continue;
		}
		if (depth > 0) {
			if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (inq) {
			if (c == '"')
				inq = 0;
			continue;
		}
		if (c == '"')
			inq = 1;
		else if (c == '(')
			depth = 1;
		else if (c == '<') {
			size_t j = skip_cfws(v, len, i + 1);
			/* obsolete source route "@a,@b:" */
			if (j < len && v[j] == '@') {
				while (j < len && v[j] != ':' && v[j] != '>')
					j++;
				if (j < len && v[j] == ':')
					j++;
			}
			return parse_addr_spec(v, len, skip_cfws(v, len, j), out, outlen, local_out,
					       local_outlen);
		}
	}
	/* Bare addr-spec; skip a group name "name:". */
	size_t i = skip_cfws(v, len, 0);
	for (size_t j = i; j < len; j++) {
		if (v[j] == ':') {
			i = skip_cfws(v, len, j + 1);
			break;
		}
		if (v[j] == '@' || v[j] == '"')
			break;
	}
	return parse_addr_spec(v, len, i, out, outlen, local_out, local_outlen);
}

/* RFC 2045 tspecials + space/controls: such values must be quoted. */
static int needs_quote(const char *v)
{
	if (*v == 0)
		return 1;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?=", *p) != NULL)
			return 1;
	return 0;
}

/* pvalue_ok - a domain or [local]@domain that needs no quoting (RFC 8601 2.2 pvalue). */
static int pvalue_ok(const char *v)
{
	int at = 0;
	if (*v == 0)
		return 0;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '@' && !at) {
			at = 1;
			continue;
		}
		if (*p <= ' ' || *p >= 0x7f || strchr("()<>@,;:\\\"[]", *p) != NULL)
			return 0;
	}
	return 1;
}

void dkim_hdr_quote_value(struct sbuf *b, const char *v)
{
	if (!needs_quote(v)) {
		sbuf_adds(b, v);
		return;
	}
	sbuf_addc(b, '"');
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			sbuf_addc(b, '\\');
		if (*p == '\r' || *p == '\n')
			continue;
		sbuf_addc(b, *p);
	}
	sbuf_addc(b, '"');
}

char *dkim_hdr_ar_format(const char *authserv_id, const struct dkim_hdr_sig *sigs, size_t nsig,
			 int lf_only)
{
	const char *nl = lf_only ? "\n\t" : "\r\n\t";
	struct sbuf b;
	sbuf_init(&b);
	sbuf_addc(&b, ' ');
	dkim_hdr_quote_value(&b, authserv_id);
	sbuf_addc(&b, ';');
	if (nsig == 0) {
		sbuf_adds(&b, nl);
		sbuf_adds(&b, "dkim=none");
	}
	for (size_t k = 0; k < nsig; k++) {
		const struct dkim_hdr_sig *s = &sigs[k];
		if (k > 0)
			sbuf_addc(&b, ';');
		sbuf_adds(&b, nl);
		sbuf_printf(&b, "dkim=%s", dkim_res_name(s->res));
		if (s->reason != NULL) {
			sbuf_adds(&b, " reason=");
			dkim_hdr_quote_value(&b, s->reason);
		}
		if (s->key_bits > 0)
			sbuf_printf(&b, " (%u-bit key; %s)", s->key_bits,
				    s->testing ? "unprotected; test mode" : "unprotected");
		static const char *const names[] = { "header.d", "header.i", "header.a", "header.s",
						     "header.b" };
		const char *vals[] = { s->d, s->i, s->a, s->s, s->b };
		for (size_t t = 0; t < 5; t++) {
			if (vals[t] == NULL || vals[t][0] == 0)
				continue;
			sbuf_printf(&b, " %s=", names[t]);
			if (t == 4) {
				char b8[9];
				size_t n = strlen(vals[t]);
				if (n > 8)
					n = 8;
				memcpy(b8, vals[t], n);
				b8[n] = 0;
				dkim_hdr_quote_value(&b, b8);
			} else if (t <= 1 && pvalue_ok(vals[t])) {
				sbuf_adds(&b, vals[t]);	/* RFC 8601 pvalue: [local-part] "@" domain */
			} else {
				dkim_hdr_quote_value(&b, vals[t]);
			}
		}
	}
	return sbuf_steal(&b);
}
