/*
 * fuzz_rfc5322: unfolding and both list parsers on arbitrary bytes.
 * Invariants checked (abort on violation):
 *  - unfold: length <= input, in place == copy, result NUL-terminated;
 *  - a parse failure leaves { NULL, 0 } and a known error text;
 *  - a success: From has 1..RFC5322_MAX_ADDRS mailboxes; every domain is
 *    non-empty, <= RFC5322_MAX_DOMAIN_BYTES, without '@', upper-case ASCII,
 *    white space or control characters, and (unless a literal) without empty
 *    labels; no string holds CR or LF; rfc5322_domains gives distinct
 *    domains each of which some mailbox has, and misses none;
 *  - whatever parses as From parses the same as an address-list;
 *  - round trip: each mailbox written back as "display" <"local"@domain>
 *    parses to the same display, local part and domain.
 */
#include "lib/util.h"
#include "proto/rfc5322.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_str(const char *s)
{
	if (!s)
		return;
	if (strchr(s, '\r') || strchr(s, '\n'))
		abort();
}

static void check_list(const struct rfc5322_addrlist *l)
{
	const char *doms[RFC5322_MAX_ADDRS];

	if (l->n > RFC5322_MAX_ADDRS || (l->n == 0) != (l->addr == NULL))
		abort();
	for (size_t i = 0; i < l->n; i++) {
		const struct rfc5322_addr *a = &l->addr[i];
		const char *d = a->domain;
		size_t dl;
		if (!a->local || !d)
			abort();
		dl = strlen(d);
		if (dl == 0 || dl > RFC5322_MAX_DOMAIN_BYTES || strchr(d, '@'))
			abort();
		for (size_t k = 0; k < dl; k++) {
			unsigned char c = (unsigned char)d[k];
			if ((c >= 'A' && c <= 'Z') || c <= ' ' || c == 0x7f)
				abort();
		}
		if (a->domain_literal) {
			if (d[0] != '[' || d[dl - 1] != ']' || dl < 3)
				abort();
		} else if (d[0] == '.' || d[dl - 1] == '.' || strstr(d, "..") || strchr(d, '['))
			abort();
		check_str(a->display);
		check_str(a->local);
		check_str(a->group);
	}
	size_t n = rfc5322_domains(l, doms, RFC5322_MAX_ADDRS);
	if (n > l->n || (l->n > 0 && n == 0))
		abort();
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(doms[i], doms[j]) == 0)
				abort();
	for (size_t i = 0; i < l->n; i++) {
		size_t j;
		for (j = 0; j < n; j++)
			if (strcmp(l->addr[i].domain, doms[j]) == 0)
				break;
		if (j == n)
			abort();
	}
}

static void quote(struct sbuf *b, const char *s)
{
	sbuf_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sbuf_addc(b, '\\');
		sbuf_addc(b, *s);
	}
	sbuf_addc(b, '"');
}

static int same(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* round_trip - write l back in a canonical form and parse it again. */
static void round_trip(const struct rfc5322_addrlist *l)
{
	struct rfc5322_addrlist m;
	struct sbuf b;

	sbuf_init(&b);
	sbuf_add(&b, "", 0);
	for (size_t i = 0; i < l->n; i++) {
		const struct rfc5322_addr *a = &l->addr[i];
		if (i)
			sbuf_adds(&b, ", ");
		if (a->display) {
			quote(&b, a->display);
			sbuf_addc(&b, ' ');
		}
		sbuf_addc(&b, '<');
		quote(&b, a->local);
		sbuf_printf(&b, "@%s>", a->domain);
	}
	if (b.len > RFC5322_MAX_VALUE_BYTES) {
		sbuf_free(&b);
		return;
	}
	if (rfc5322_parse_from(b.buf, b.len, &m, NULL) != 0 || m.n != l->n)
		abort();
	for (size_t i = 0; i < l->n; i++) {
		const struct rfc5322_addr *a = &l->addr[i], *c = &m.addr[i];
		if (!same(a->display, c->display) || !same(a->local, c->local) ||
		    !same(a->domain, c->domain) || a->domain_literal != c->domain_literal)
			abort();
	}
	rfc5322_addrlist_free(&m);
	sbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data, *err = NULL;
	struct rfc5322_addrlist f, a;
	char *u, *v;
	size_t un;
	int rf, ra;

	/* unfolding */
	u = xmalloc(size + 1);
	un = rfc5322_unfold(in, size, u);
	if (un > size || u[un] != '\0')
		abort();
	v = xmalloc(size + 1);
	memcpy(v, in, size);
	if (rfc5322_unfold(v, size, v) != un || memcmp(u, v, un) != 0)
		abort();
	free(v);
	free(u);

	/* From (mailbox-list) */
	rf = rfc5322_parse_from(in, size, &f, &err);
	if (!err || strcmp(err, rfc5322_strerror(rf)) != 0 || strcmp(err, "unknown error") == 0)
		abort();
	if (rf) {
		if (f.addr || f.n)
			abort();
	} else {
		if (f.n < 1)
			abort();
		check_list(&f);
		for (size_t i = 0; i < f.n; i++)
			if (f.addr[i].group)
				abort();
		round_trip(&f);
	}

	/* address-list */
	ra = rfc5322_parse_addrlist(in, size, &a, &err);
	if (ra) {
		if (a.addr || a.n || rf == 0)
			abort();
	} else {
		check_list(&a);
		if (rf == 0) {
			if (a.n != f.n)
				abort();
			for (size_t i = 0; i < f.n; i++)
				if (strcmp(a.addr[i].domain, f.addr[i].domain) != 0 ||
				    strcmp(a.addr[i].local, f.addr[i].local) != 0 ||
				    !same(a.addr[i].display, f.addr[i].display) || a.addr[i].group)
					abort();
		}
	}
	rfc5322_addrlist_free(&f);
	rfc5322_addrlist_free(&a);
	rfc5322_addrlist_free(&a);
	return 0;
}
