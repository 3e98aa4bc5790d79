#include "milters/dkim/dkim_hdr.h"
#include "proto/authres.h"
#include "lib/util.h"

#include <stdio.h>
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

/*
 * dkim_hdr_ar_format - OpenDKIM's form: reason= and the key size comment after
 * the result; header.d and header.i as RFC 8601 pvalues (an address needs no
 * quotes), header.a, header.s and the first 8 bytes of header.b as RFC 2045
 * values.
 */
char *dkim_hdr_ar_format(const char *authserv_id, const struct dkim_hdr_sig *sigs, size_t nsig,
			 int lf_only)
{
	struct sbuf b;
	struct authres_fmt f;
	sbuf_init(&b);
	authres_fmt_begin(&f, &b, authserv_id, lf_only);
	if (nsig == 0)
		authres_fmt_result(&f, "dkim", "none", NULL, NULL);
	for (size_t k = 0; k < nsig; k++) {
		const struct dkim_hdr_sig *s = &sigs[k];
		char comment[64];
		if (s->key_bits > 0)
			snprintf(comment, sizeof(comment), "%u-bit key; %s", s->key_bits,
				 s->testing ? "unprotected; test mode" : "unprotected");
		authres_fmt_result(&f, "dkim", dkim_res_name(s->res), s->reason,
				   s->key_bits > 0 ? comment : NULL);
		if (s->d != NULL && s->d[0] != 0)
			authres_fmt_prop(&f, "header", "d", s->d);
		if (s->i != NULL && s->i[0] != 0)
			authres_fmt_prop(&f, "header", "i", s->i);
		if (s->a != NULL && s->a[0] != 0)
			authres_fmt_prop_value(&f, "header", "a", s->a);
		if (s->s != NULL && s->s[0] != 0)
			authres_fmt_prop_value(&f, "header", "s", s->s);
		if (s->b != NULL && s->b[0] != 0) {
			char b8[9];
			size_t n = strlen(s->b);
			if (n > 8)
				n = 8;
			memcpy(b8, s->b, n);
			b8[n] = 0;
			authres_fmt_prop_value(&f, "header", "b", b8);
		}
	}
	authres_fmt_end(&f);
	return sbuf_steal(&b);
}
