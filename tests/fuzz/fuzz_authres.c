/*
 * fuzz_authres: proto/authres on hostile Authentication-Results values.
 * 1. Parse: no crash; on success the caps hold, keywords are non-empty and
 *    lower-case, the cheap authserv-id reader gives the same id, and our
 *    text of the parse (both line-break styles) parses back to the same
 *    fields and formats to the same text.
 * 2. Build: the input, cut at NUL bytes, gives an authserv-id, a reason, a
 *    comment and property values; what the builder writes parses back to
 *    those strings (CR and LF dropped), the comment gone.
 */
#include "proto/authres.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok)
{
	if (!ok)
		abort();
}

static int str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void check_keyword(const char *s, int dots)
{
	check(s != NULL && s[0] != 0);
	for (const char *p = s; *p; p++)
		check((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || (dots && *p == '.'));
}

static void same_parse(const struct authres *a, const struct authres *b)
{
	check(str_eq(a->authserv_id, b->authserv_id));
	check(str_eq(a->version, b->version));
	check(a->nresults == b->nresults);
	for (size_t i = 0; i < a->nresults; i++) {
		const struct authres_result *x = &a->results[i], *y = &b->results[i];
		check(str_eq(x->method, y->method));
		check(str_eq(x->method_version, y->method_version));
		check(str_eq(x->result, y->result));
		check(str_eq(x->reason, y->reason));
		check(x->nprops == y->nprops);
		for (size_t k = 0; k < x->nprops; k++) {
			check(str_eq(x->props[k].ptype, y->props[k].ptype));
			check(str_eq(x->props[k].property, y->props[k].property));
			check(str_eq(x->props[k].value, y->props[k].value));
		}
	}
}

static void fuzz_parse(const char *v, size_t size)
{
	struct authres *a, *b;
	const char *err = NULL;
	int rc = authres_parse(v, size, &a, &err);
	if (rc != AUTHRES_OK) {
		check(a == NULL && err != NULL);
		check(rc == AUTHRES_ESYNTAX || rc == AUTHRES_ELIMIT);
		return;
	}
	check(a->authserv_id != NULL && a->authserv_id[0] != 0);
	check(a->nresults <= AUTHRES_MAX_RESULTS);
	for (size_t i = 0; i < a->nresults; i++) {
		const struct authres_result *r = &a->results[i];
		check_keyword(r->method, 0);
		check_keyword(r->result, 0);
		check(r->nprops <= AUTHRES_MAX_PROPS);
		for (size_t k = 0; k < r->nprops; k++) {
			check(r->props[k].ptype != NULL && r->props[k].value != NULL);
			if (r->props[k].ptype[0] != 0)
				check_keyword(r->props[k].ptype, 0);
			check_keyword(r->props[k].property, r->props[k].ptype[0] != 0);
			(void)authres_prop_get(r, r->props[k].ptype, r->props[k].property);
		}
	}
	char id[512];
	if (strlen(a->authserv_id) < sizeof(id)) {
		check(authres_authserv_id(v, size, id, sizeof(id)) == 0);
		check(strcmp(id, a->authserv_id) == 0);
	}
	for (int lf = 0; lf <= 1; lf++) {
		char *t = authres_format(a, lf);
		rc = authres_parse(t, strlen(t), &b, &err);
		/* our text may only outgrow the byte cap */
		check(rc == AUTHRES_OK || (rc == AUTHRES_ELIMIT && strlen(t) > AUTHRES_MAX_BYTES));
		if (rc == AUTHRES_OK) {
			same_parse(a, b);
			char *t2 = authres_format(b, lf);
			check(strcmp(t, t2) == 0);
			free(t2);
			authres_free(&b);
		}
		free(t);
	}
	authres_free(&a);
	check(a == NULL);
}

/* strip_crlf - s without CR and LF, in a new string. */
static char *strip_crlf(const char *s)
{
	char *o = xmalloc(strlen(s) + 1), *p = o;
	for (; *s; s++)
		if (*s != '\r' && *s != '\n')
			*p++ = *s;
	*p = 0;
	return o;
}

static void fuzz_build(const char *v, size_t size)
{
	/* pieces: id, reason, comment, value 1, value 2 */
	const char *piece[5];
	char *copy = xmalloc(size + 1);
	memcpy(copy, v, size);
	copy[size] = 0;
	size_t np = 0, off = 0;
	while (np < 5) {
		piece[np++] = copy + off;
		size_t n = strlen(copy + off);
		off += n < size - off ? n + 1 : n;
	}
	char *id = strip_crlf(piece[0]);
	if (id[0] == 0) {	/* the builder needs an authserv-id */
		free(id);
		free(copy);
		return;
	}
	struct sbuf b;
	struct authres_fmt f;
	sbuf_init(&b);
	authres_fmt_begin(&f, &b, piece[0], size & 1);
	authres_fmt_result(&f, "dkim", "pass", piece[1][0] ? piece[1] : NULL, piece[2]);
	authres_fmt_prop(&f, "header", "d", piece[3]);
	authres_fmt_prop_value(&f, "header", "b", piece[4]);
	authres_fmt_result(&f, "dmarc", "fail", NULL, NULL);
	authres_fmt_prop(&f, "header", "from", piece[4]);
	authres_fmt_prop(&f, "policy", "dmarc", piece[3]);
	authres_fmt_end(&f);
	struct authres *a;
	const char *err;
	int rc = authres_parse(b.buf, b.len, &a, &err);
	check(rc == AUTHRES_OK || (rc == AUTHRES_ELIMIT && b.len > AUTHRES_MAX_BYTES));
	if (rc == AUTHRES_OK) {
		char *want[4] = { strip_crlf(piece[1]), strip_crlf(piece[3]), strip_crlf(piece[4]) };
		check(strcmp(a->authserv_id, id) == 0);
		check(a->nresults == 2);
		check(strcmp(a->results[0].method, "dkim") == 0);
		check(piece[1][0] ? str_eq(a->results[0].reason, want[0]) : a->results[0].reason == NULL);
		check(a->results[0].nprops == 2 && a->results[1].nprops == 2);
		check(strcmp(authres_prop_get(&a->results[0], "header", "d"), want[1]) == 0);
		check(strcmp(authres_prop_get(&a->results[0], "header", "b"), want[2]) == 0);
		check(strcmp(authres_prop_get(&a->results[1], "header", "from"), want[2]) == 0);
		check(strcmp(authres_prop_get(&a->results[1], "policy", "dmarc"), want[1]) == 0);
		for (int k = 0; k < 3; k++)
			free(want[k]);
		authres_free(&a);
	}
	sbuf_free(&b);
	free(id);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parse((const char *)data, size);
	fuzz_build((const char *)data, size);
	return 0;
}
