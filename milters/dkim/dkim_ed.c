#include "milters/dkim/dkim_ed.h"
#include "lib/util.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dkim_ed {
	EVP_PKEY *key;
	EVP_MD_CTX *bh;		/* body hash */
	char *domain, *selector;
	int hsimple, bsimple;
	char **sign_hdrs, **oversign;	/* NULL = all */
	uint64_t t, ttl_s;
	char **hdrs;		/* raw "Name:value" lines */
	size_t nhdrs, caphdrs;
	/* body canonicalization state */
	size_t pending_crlf;	/* empty lines held back (trailing ones are dropped) */
	int pending_wsp;	/* relaxed: white space seen, not yet written */
	int line_empty;		/* nothing yet on the current line */
	int wrote_any;		/* a non-empty line was hashed */
	int cr;			/* a CR seen at the end of the previous chunk */
	struct sbuf line;
};

static char **dup_list(char *const *l)
{
	if (l == NULL || (l[0] && strcmp(l[0], "*") == 0 && l[1] == NULL))
		return NULL;
	size_t n = 0;
	while (l[n])
		n++;
	char **o = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		o[i] = xstrdup(l[i]);
	return o;
}

static void free_list(char **l)
{
	if (l == NULL)
		return;
	for (char **p = l; *p; p++)
		free(*p);
	free(l);
}

struct dkim_ed *dkim_ed_new(const char *pem, const char *domain, const char *selector, int hsimple,
			    int bsimple, char *const *sign_hdrs, char *const *oversign, uint64_t t,
			    uint64_t ttl_s)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(k);
		return NULL;
	}
	struct dkim_ed *e = xcalloc(1, sizeof(*e));
	e->key = k;
	e->bh = EVP_MD_CTX_new();
	EVP_DigestInit_ex(e->bh, EVP_sha256(), NULL);
	e->domain = xstrdup(domain);
	e->selector = xstrdup(selector);
	e->hsimple = hsimple;
	e->bsimple = bsimple;
	e->sign_hdrs = dup_list(sign_hdrs);
	e->oversign = oversign && oversign[0] ? dup_list(oversign) : NULL;
	e->t = t ? t : (uint64_t)time(NULL);
	e->ttl_s = ttl_s;
	e->line_empty = 1;
	sbuf_init(&e->line);
	return e;
}

void dkim_ed_free(struct dkim_ed **ep)
{
	struct dkim_ed *e = *ep;
	if (e == NULL)
		return;
	EVP_PKEY_free(e->key);
	EVP_MD_CTX_free(e->bh);
	free(e->domain);
	free(e->selector);
	free_list(e->sign_hdrs);
	free_list(e->oversign);
	for (size_t i = 0; i < e->nhdrs; i++)
		free(e->hdrs[i]);
	free(e->hdrs);
	sbuf_free(&e->line);
	free(e);
	*ep = NULL;
}

void dkim_ed_header(struct dkim_ed *e, const char *line, size_t len)
{
	if (e->nhdrs == e->caphdrs) {
		e->caphdrs = e->caphdrs ? 2 * e->caphdrs : 32;
		e->hdrs = xrealloc(e->hdrs, e->caphdrs * sizeof(char *));
	}
	e->hdrs[e->nhdrs++] = xstrndup(line, len);
}

/*
 * Body: lines end in CRLF. simple: the body as is, trailing empty lines
 * reduced to none, an empty body = CRLF. relaxed: WSP runs -> one SP,
 * WSP at line end removed, trailing empty lines removed, empty body = "".
 */
static void body_line_end(struct dkim_ed *e)
{
	if (e->line_empty) {
		e->pending_crlf++;
		return;
	}
	while (e->pending_crlf > 0) {
		EVP_DigestUpdate(e->bh, "\r\n", 2);
		e->pending_crlf--;
	}
	EVP_DigestUpdate(e->bh, e->line.buf, e->line.len);
	EVP_DigestUpdate(e->bh, "\r\n", 2);
	e->wrote_any = 1;
	sbuf_reset(&e->line);
	e->line_empty = 1;
	e->pending_wsp = 0;
}

static void body_char(struct dkim_ed *e, char c)
{
	if (!e->bsimple && (c == ' ' || c == '\t')) {
		e->pending_wsp = 1;
		return;
	}
	if (e->pending_wsp) {
		sbuf_addc(&e->line, ' ');
		e->pending_wsp = 0;
	}
	sbuf_addc(&e->line, c);
	e->line_empty = 0;
}

void dkim_ed_body(struct dkim_ed *e, const unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = (char)buf[i];
		if (e->cr) {
			e->cr = 0;
			if (c == '\n') {
				body_line_end(e);
				continue;
			}
			body_char(e, '\r');
		}
		if (c == '\r') {
			e->cr = 1;
			continue;
		}
		if (e->bsimple && (c == ' ' || c == '\t')) {
			sbuf_addc(&e->line, c);
			e->line_empty = 0;
			continue;
		}
		body_char(e, c);
	}
}

static void body_finish(struct dkim_ed *e)
{
	if (e->cr)
		body_char(e, '\r');
	e->cr = 0;
	if (!e->line_empty)
		body_line_end(e);	/* a last line without CRLF gets one (3.4.3, 3.4.4) */
}

/* canon_header - RFC 6376 3.4.1/3.4.2 of "Name:value" into b (with CRLF). */
static void canon_header(struct sbuf *b, const char *h, int simple)
{
	if (simple) {
		sbuf_adds(b, h);
		sbuf_adds(b, "\r\n");
		return;
	}
	const char *colon = strchr(h, ':');
	size_t nl = colon ? (size_t)(colon - h) : strlen(h);
	while (nl > 0 && (h[nl - 1] == ' ' || h[nl - 1] == '\t'))
		nl--;
	for (size_t i = 0; i < nl; i++) {
		char c = h[i];
		sbuf_addc(b, (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c);
	}
	sbuf_addc(b, ':');
	if (colon == NULL) {
		sbuf_adds(b, "\r\n");
		return;
	}
	int wsp = 0, started = 0;
	for (const char *p = colon + 1; *p; p++) {
		if (*p == '\r' || *p == '\n')
			continue;	/* unfold */
		if (*p == ' ' || *p == '\t') {
			wsp = 1;
			continue;
		}
		if (wsp && started)
			sbuf_addc(b, ' ');
		wsp = 0;
		started = 1;
		sbuf_addc(b, *p);
	}
	sbuf_adds(b, "\r\n");
}

static int name_is(const char *line, const char *name)
{
	size_t n = strlen(name);
	if (ascii_strncasecmp(line, name, n) != 0)
		return 0;
	const char *p = line + n;
	while (*p == ' ' || *p == '\t')
		p++;
	return *p == ':';
}

static int in_list(char *const *l, const char *line)
{
	if (l == NULL)
		return 1;
	for (char *const *p = l; *p; p++)
		if (name_is(line, *p))
			return 1;
	return 0;
}

char *dkim_ed_finish(struct dkim_ed *e)
{
	body_finish(e);
	unsigned char bh[EVP_MAX_MD_SIZE];
	unsigned bhlen;
	/* 3.4.3: the simple canonical form of an empty body is one CRLF; relaxed: nothing */
	if (e->bsimple && !e->wrote_any)
		EVP_DigestUpdate(e->bh, "\r\n", 2);
	EVP_DigestFinal_ex(e->bh, bh, &bhlen);
	char bh64[64];
	EVP_EncodeBlock((unsigned char *)bh64, bh, (int)bhlen);

	/* headers to sign: every name in sign_hdrs (or all), bottom-up for duplicates */
	struct sbuf hlist, hin;
	sbuf_init(&hlist);
	sbuf_init(&hin);
	char *used = xcalloc(e->nhdrs + 1, 1);
	for (size_t i = 0; i < e->nhdrs; i++) {
		const char *h = e->hdrs[i];
		if (!in_list(e->sign_hdrs, h) || name_is(h, "DKIM-Signature"))
			continue;
		/* which instance: count earlier instances of this name not yet used */
		const char *colon = strchr(h, ':');
		size_t nl = colon ? (size_t)(colon - h) : strlen(h);
		while (nl > 0 && (h[nl - 1] == ' ' || h[nl - 1] == '\t'))
			nl--;
		char *name = xstrndup(h, nl);
		/* bottom-up: the n-th occurrence in h= takes the n-th from the bottom */
		for (size_t j = e->nhdrs; j > 0; j--) {
			if (!used[j - 1] && name_is(e->hdrs[j - 1], name)) {
				used[j - 1] = 1;
				canon_header(&hin, e->hdrs[j - 1], e->hsimple);
				break;
			}
		}
		if (hlist.len)
			sbuf_addc(&hlist, ':');
		sbuf_adds(&hlist, name);
		free(name);
	}
	for (char **p = e->oversign; p && *p; p++) {
		if (hlist.len)
			sbuf_addc(&hlist, ':');
		sbuf_adds(&hlist, *p);	/* no more instances: signs "absent" */
	}
	free(used);

	struct sbuf v;
	sbuf_init(&v);
	sbuf_printf(&v, "v=1; a=ed25519-sha256; c=%s/%s; d=%s; s=%s;\r\n\tt=%llu;",
		    e->hsimple ? "simple" : "relaxed", e->bsimple ? "simple" : "relaxed", e->domain,
		    e->selector, (unsigned long long)e->t);
	if (e->ttl_s)
		sbuf_printf(&v, " x=%llu;", (unsigned long long)(e->t + e->ttl_s));
	sbuf_printf(&v, " bh=%s;\r\n\th=", bh64);
	/* fold h= at ':' every ~70 columns */
	size_t col = 3;
	const char *p = hlist.buf;
	while (*p) {
		const char *c = strchr(p, ':');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (col + l > 74) {
			sbuf_adds(&v, "\r\n\t ");
			col = 2;
		}
		sbuf_add(&v, p, l);
		col += l;
		p += l;
		if (*p == ':') {
			sbuf_addc(&v, ':');
			col++;
			p++;
		}
	}
	sbuf_adds(&v, ";\r\n\tb=");
	/* header hash input: selected headers + this header with empty b=, no CRLF */
	struct sbuf sh;
	sbuf_init(&sh);
	sbuf_adds(&sh, "DKIM-Signature: ");
	sbuf_add(&sh, v.buf, v.len);
	canon_header(&hin, sh.buf, e->hsimple);
	hin.len -= 2;	/* the signature header is hashed without its CRLF */
	hin.buf[hin.len] = 0;
	unsigned char hh[32], sig[64];
	unsigned hl;
	size_t sl = sizeof(sig);
	char *out = NULL;
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	EVP_Digest(hin.buf, hin.len, hh, &hl, EVP_sha256(), NULL);
	if (EVP_DigestSignInit(mc, NULL, NULL, NULL, e->key) == 1 &&
	    EVP_DigestSign(mc, sig, &sl, hh, hl) == 1) {
		char b64[100];
		EVP_EncodeBlock((unsigned char *)b64, sig, (int)sl);
		/* fold b= */
		size_t bl = strlen(b64);
		for (size_t o = 0; o < bl; o += 64) {
			if (o)
				sbuf_adds(&v, "\r\n\t ");
			sbuf_add(&v, b64 + o, bl - o > 64 ? 64 : bl - o);
		}
		out = sbuf_steal(&v);
	}
	EVP_MD_CTX_free(mc);
	sbuf_free(&v);
	sbuf_free(&sh);
	sbuf_free(&hin);
	sbuf_free(&hlist);
	return out;
}
