#include "milters/dkim/dkim_signer.h"
#include "lib/util.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* libopendkim's header margin (DKIM_HDRMARGIN) and the field name before the value */
#define FOLD_MARGIN 75
#define FOLD_INITIAL 16		/* strlen("DKIM-Signature: ") */
#define TAB_COLS 8

struct dkim_signer {
	EVP_PKEY *key;
	int ed25519;
	EVP_MD_CTX *bh;		/* body hash */
	char *domain, *selector;
	int hsimple, bsimple;
	char *const *sign_hdrs, *const *oversign;	/* borrowed; NULL = all / none */
	uint64_t t, ttl_s;
	const char **hdrs;	/* borrowed "Name:value" lines */
	size_t *hlens;
	size_t nhdrs, caphdrs;
	/* body canonicalization state (RFC 6376 3.4.3 / 3.4.4) */
	size_t pending_crlf;	/* line ends not yet hashed (trailing empty lines are dropped) */
	int pending_wsp;	/* relaxed: white space seen on this line, not yet hashed */
	int line_content;	/* something hashed on the current line */
	int wrote_any;		/* a non-empty line was hashed */
	int cr;			/* a CR seen at the end of the previous chunk */
	size_t on;		/* bytes in out[] */
	unsigned char out[4096];	/* canonical body bytes waiting for the hash */
};

/* SHA-256 fetched once: implicit fetches take OpenSSL 3's provider locks per call */
static EVP_MD *md_sha256;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch(void)
{
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
	pthread_once(&md_once, md_fetch);
	return md_sha256 ? md_sha256 : EVP_sha256();
}

struct dkim_signer *dkim_signer_new(EVP_PKEY *key, const char *domain, const char *selector,
				    int hsimple, int bsimple, char *const *sign_hdrs,
				    char *const *oversign, uint64_t t, uint64_t ttl_s)
{
	int id = key ? EVP_PKEY_get_base_id(key) : 0;
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519)
		return NULL;
	struct dkim_signer *s = xcalloc(1, sizeof(*s));
	EVP_PKEY_up_ref(key);
	s->key = key;
	s->ed25519 = id == EVP_PKEY_ED25519;
	s->bh = EVP_MD_CTX_new();
	if (s->bh == NULL || EVP_DigestInit_ex(s->bh, sha256(), NULL) != 1) {
		dkim_signer_free(&s);
		return NULL;
	}
	s->domain = xstrdup(domain);
	s->selector = xstrdup(selector);
	s->hsimple = hsimple;
	s->bsimple = bsimple;
	s->sign_hdrs = (sign_hdrs && !(sign_hdrs[0] && strcmp(sign_hdrs[0], "*") == 0 &&
				       sign_hdrs[1] == NULL))
			       ? sign_hdrs
			       : NULL;
	s->oversign = oversign && oversign[0] ? oversign : NULL;
	s->t = t ? t : (uint64_t)time(NULL);
	s->ttl_s = ttl_s;
	return s;
}

const char *dkim_signer_algorithm(const struct dkim_signer *s)
{
	return s->ed25519 ? "ed25519-sha256" : "rsa-sha256";
}

void dkim_signer_free(struct dkim_signer **sp)
{
	struct dkim_signer *s = *sp;
	if (s == NULL)
		return;
	EVP_PKEY_free(s->key);
	EVP_MD_CTX_free(s->bh);
	free(s->domain);
	free(s->selector);
	free(s->hdrs);
	free(s->hlens);
	free(s);
	*sp = NULL;
}

void dkim_signer_header(struct dkim_signer *s, const char *line, size_t len)
{
	if (s->nhdrs == s->caphdrs) {
		s->caphdrs = s->caphdrs ? 2 * s->caphdrs : 32;
		s->hdrs = xrealloc(s->hdrs, s->caphdrs * sizeof(*s->hdrs));
		s->hlens = xrealloc(s->hlens, s->caphdrs * sizeof(*s->hlens));
	}
	s->hdrs[s->nhdrs] = line;
	s->hlens[s->nhdrs++] = len;
}

/* ---- body ---- */

static void out_flush(struct dkim_signer *s)
{
	if (s->on) {
		EVP_DigestUpdate(s->bh, s->out, s->on);
		s->on = 0;
	}
}

static inline void out_byte(struct dkim_signer *s, unsigned char c)
{
	if (s->on == sizeof(s->out))
		out_flush(s);
	s->out[s->on++] = c;
}

/* a byte that is line content: held-back line ends and white space go first */
static inline void content(struct dkim_signer *s, unsigned char c)
{
	for (; s->pending_crlf > 0; s->pending_crlf--) {
		out_byte(s, '\r');
		out_byte(s, '\n');
	}
	if (s->pending_wsp) {
		out_byte(s, ' ');	/* relaxed: a WSP run is one SP */
		s->pending_wsp = 0;
	}
	out_byte(s, c);
	s->line_content = 1;
	s->wrote_any = 1;
}

static inline void line_end(struct dkim_signer *s)
{
	s->pending_crlf++;	/* hashed only when more content follows */
	s->pending_wsp = 0;	/* relaxed: WSP at the end of a line goes */
	s->line_content = 0;
}

/*
 * simple: the body as is, trailing empty lines removed, an empty body is
 * CRLF. relaxed: WSP runs become one SP, WSP at line ends and trailing
 * empty lines are removed, an empty body stays empty. A bare CR is content.
 */
void dkim_signer_body(struct dkim_signer *s, const unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = buf[i];
		if (s->cr) {
			s->cr = 0;
			if (c == '\n') {
				line_end(s);
				continue;
			}
			content(s, '\r');
		}
		if (c == '\r') {
			s->cr = 1;
		} else if ((c == ' ' || c == '\t') && !s->bsimple) {
			s->pending_wsp = 1;
		} else {
			content(s, c);
		}
	}
	out_flush(s);
}

/* ---- headers ---- */

/* canon_header - RFC 6376 3.4.1/3.4.2 of "Name:value" (len bytes) into b, with CRLF. */
static void canon_header(struct sbuf *b, const char *h, size_t len, int simple)
{
	if (simple) {
		sbuf_add(b, h, len);
		sbuf_adds(b, "\r\n");
		return;
	}
	const char *colon = memchr(h, ':', len);
	size_t nl = colon ? (size_t)(colon - h) : len;
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
	for (const char *p = colon + 1; p < h + len; p++) {
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

/* the length of the field name of "Name:value", trailing WSP before the colon not counted */
static size_t name_len(const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	size_t nl = colon ? (size_t)(colon - line) : len;
	while (nl > 0 && (line[nl - 1] == ' ' || line[nl - 1] == '\t'))
		nl--;
	return nl;
}

static int name_eq(const char *line, size_t len, const char *name, size_t n)
{
	return name_len(line, len) == n && ascii_strncasecmp(line, name, n) == 0;
}

static int in_list(char *const *l, const char *line, size_t len)
{
	if (l == NULL)
		return 1;
	size_t nl = name_len(line, len);
	for (char *const *p = l; *p; p++)
		if (strlen(*p) == nl && ascii_strncasecmp(line, *p, nl) == 0)
			return 1;
	return 0;
}

/* ---- the signature header, folded as libopendkim folds it ---- */

struct fold {
	struct sbuf *v;
	size_t col;
	int first;
};

/* start a tag of tlen bytes: "; " or ";\r\n\t" before it, as the margin allows */
static void fold_start(struct fold *f, size_t tlen)
{
	if (!f->first) {
		sbuf_addc(f->v, ';');
		f->col++;
		if (f->col + 1 + tlen > FOLD_MARGIN) {
			sbuf_adds(f->v, "\r\n\t");
			f->col = TAB_COLS;
		} else {
			sbuf_addc(f->v, ' ');
			f->col++;
		}
	}
	f->first = 0;
}

static void fold_tag(struct fold *f, const char *tag)
{
	size_t l = strlen(tag);
	fold_start(f, l);
	sbuf_add(f->v, tag, l);
	f->col += l;
}

/* h=: a list too long for the line is broken after a ':' */
static void fold_h(struct fold *f, const char *list)
{
	fold_start(f, 2 + strlen(list));
	sbuf_adds(f->v, "h=");
	f->col += 2;
	const char *p = list;
	while (*p) {
		const char *c = strchr(p, ':');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (p != list && f->col + l > FOLD_MARGIN) {
			sbuf_adds(f->v, "\r\n\t ");
			f->col = TAB_COLS + 1;
		}
		sbuf_add(f->v, p, l);
		f->col += l;
		p += l;
		if (*p == ':') {
			sbuf_addc(f->v, ':');
			f->col++;
			p++;
		}
	}
}

/* b= value: fills each line up to the margin, continuation lines start "\t " */
static void fold_b_value(struct fold *f, const char *b64)
{
	size_t left = strlen(b64);
	while (left > 0) {
		if (f->col >= FOLD_MARGIN) {
			sbuf_adds(f->v, "\r\n\t ");
			f->col = TAB_COLS + 1;
		}
		size_t n = FOLD_MARGIN - f->col;
		if (n > left)
			n = left;
		sbuf_add(f->v, b64, n);
		f->col += n;
		b64 += n;
		left -= n;
	}
}

char *dkim_signer_finish(struct dkim_signer *s)
{
	if (s->cr)
		content(s, '\r');
	s->cr = 0;
	if (s->line_content)
		line_end(s);	/* a last line without CRLF gets one (3.4.3, 3.4.4) */
	if (s->wrote_any || s->bsimple) {
		/* the last non-empty line's CRLF; simple: an empty body is one CRLF */
		out_byte(s, '\r');
		out_byte(s, '\n');
	}
	out_flush(s);
	unsigned char bh[EVP_MAX_MD_SIZE];
	unsigned bhlen;
	if (EVP_DigestFinal_ex(s->bh, bh, &bhlen) != 1)
		return NULL;
	char bh64[64];
	EVP_EncodeBlock((unsigned char *)bh64, bh, (int)bhlen);

	/* h=: every header to sign in message order; repeated names take instances bottom-up */
	struct sbuf hlist, hin;
	sbuf_init(&hlist);
	sbuf_init(&hin);
	char *used = xcalloc(s->nhdrs + 1, 1);
	for (size_t i = 0; i < s->nhdrs; i++) {
		const char *h = s->hdrs[i];
		size_t hl = s->hlens[i];
		/* From is always signed (RFC 6376 5.4), whatever the configured list says */
		if ((!in_list(s->sign_hdrs, h, hl) && !name_eq(h, hl, "From", 4)) ||
		    name_eq(h, hl, "DKIM-Signature", 14))
			continue;
		size_t nl = name_len(h, hl);
		for (size_t j = s->nhdrs; j > 0; j--) {
			if (!used[j - 1] && name_eq(s->hdrs[j - 1], s->hlens[j - 1], h, nl)) {
				used[j - 1] = 1;
				canon_header(&hin, s->hdrs[j - 1], s->hlens[j - 1], s->hsimple);
				break;
			}
		}
		if (hlist.len)
			sbuf_addc(&hlist, ':');
		sbuf_add(&hlist, h, nl);
	}
	for (char *const *p = s->oversign; p && *p; p++) {
		if (hlist.len)
			sbuf_addc(&hlist, ':');
		sbuf_adds(&hlist, *p);	/* no more instances: signs their absence */
	}
	free(used);

	struct sbuf v;
	sbuf_init(&v);
	struct fold f = { .v = &v, .col = FOLD_INITIAL, .first = 1 };
	char tag[128];
	fold_tag(&f, "v=1");
	snprintf(tag, sizeof(tag), "a=%s", dkim_signer_algorithm(s));
	fold_tag(&f, tag);
	snprintf(tag, sizeof(tag), "c=%s/%s", s->hsimple ? "simple" : "relaxed",
		 s->bsimple ? "simple" : "relaxed");
	fold_tag(&f, tag);
	char *d = xasprintf("d=%s", s->domain);
	fold_tag(&f, d);
	free(d);
	char *sel = xasprintf("s=%s", s->selector);
	fold_tag(&f, sel);
	free(sel);
	snprintf(tag, sizeof(tag), "t=%llu", (unsigned long long)s->t);
	fold_tag(&f, tag);
	if (s->ttl_s) {
		snprintf(tag, sizeof(tag), "x=%llu", (unsigned long long)(s->t + s->ttl_s));
		fold_tag(&f, tag);
	}
	snprintf(tag, sizeof(tag), "bh=%s", bh64);
	fold_tag(&f, tag);
	fold_h(&f, hlist.buf ? hlist.buf : "");
	/* b= always begins a line (its value is longer than the margin) */
	fold_start(&f, FOLD_MARGIN);
	sbuf_adds(&v, "b=");
	f.col += 2;

	/* header hash input: the selected headers, then this header with b= empty, no CRLF */
	struct sbuf sh;
	sbuf_init(&sh);
	sbuf_adds(&sh, "DKIM-Signature: ");
	sbuf_add(&sh, v.buf, v.len);
	canon_header(&hin, sh.buf, sh.len, s->hsimple);
	hin.len -= 2;
	hin.buf[hin.len] = 0;

	unsigned char sig[1024];
	size_t sl = sizeof(sig);
	int ok = 0;
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	if (mc && s->ed25519) {
		/* RFC 8463 3: PureEdDSA over the SHA-256 hash of the header hash input */
		unsigned char hh[32];
		unsigned hl;
		ok = EVP_Digest(hin.buf, hin.len, hh, &hl, sha256(), NULL) == 1 &&
		     EVP_DigestSignInit(mc, NULL, NULL, NULL, s->key) == 1 &&
		     EVP_DigestSign(mc, sig, &sl, hh, hl) == 1;
	} else if (mc) {
		/* RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 3.3.1) */
		ok = (size_t)EVP_PKEY_get_size(s->key) <= sizeof(sig) &&
		     EVP_DigestSignInit(mc, NULL, sha256(), NULL, s->key) == 1 &&
		     EVP_DigestSign(mc, sig, &sl, (unsigned char *)hin.buf, hin.len) == 1;
	}
	EVP_MD_CTX_free(mc);
	char *out = NULL;
	if (ok) {
		char *b64 = xmalloc(4 * ((sl + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *)b64, sig, (int)sl);
		fold_b_value(&f, b64);
		free(b64);
		out = sbuf_steal(&v);
	}
	sbuf_free(&v);
	sbuf_free(&sh);
	sbuf_free(&hin);
	sbuf_free(&hlist);
	return out;
}
