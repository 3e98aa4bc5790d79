#include "milters/dkim/dkim_keys.h"
#include "conf/conf.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

#define KEYS_MAX_FILE_BYTES (64u * 1024 * 1024)
#define KEYS_MAX_KEY_BYTES (64u * 1024)

long dkim_keys_parse_table(const char *text, size_t len, const char *name,
			   struct dkim_tab_line **lines_out, char **err_out)
{
	struct dkim_tab_line *lines = NULL;
	size_t n = 0, cap = 0;
	int lineno = 0;
	size_t i = 0;
	while (i < len) {
		size_t s = i;
		while (i < len && text[i] != '\n')
			i++;
		size_t e = i;
		if (i < len)
			i++;
		lineno++;
		if (e > s && text[e - 1] == '\r')
			e--;
		if (memchr(text + s, 0, e - s) != NULL) {
			dkim_keys_lines_free(lines, n);
			*err_out = xasprintf("%s:%d: NUL byte in line", name, lineno);
			return -1;
		}
		while (s < e && (text[s] == ' ' || text[s] == '\t'))
			s++;
		while (e > s && (text[e - 1] == ' ' || text[e - 1] == '\t'))
			e--;
		if (s == e || text[s] == '#')
			continue;
		size_t k = s;
		while (k < e && text[k] != ' ' && text[k] != '\t')
			k++;
		size_t v = k;
		while (v < e && (text[v] == ' ' || text[v] == '\t'))
			v++;
		if (v == e) {
			dkim_keys_lines_free(lines, n);
			*err_out = xasprintf("%s:%d: \"%.*s\" has no value", name, lineno,
					     (int)(k - s > 200 ? 200 : k - s), text + s);
			return -1;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			lines = xrealloc(lines, cap * sizeof(*lines));
		}
		lines[n].key = xstrndup(text + s, k - s);
		lines[n].value = xstrndup(text + v, e - v);
		lines[n].lineno = lineno;
		n++;
	}
	*lines_out = lines;
	return (long)n;
}

void dkim_keys_lines_free(struct dkim_tab_line *lines, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lines[i].key);
		free(lines[i].value);
	}
	free(lines);
}

int dkim_keys_parse_keyvalue(const char *value, char **dom_out, char **sel_out, char **data_out,
			     const char **err_out)
{
	const char *c1 = strchr(value, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (c2 == NULL) {
		*err_out = "expected domain:selector:keyfile";
		return -1;
	}
	if (c1 == value || c2 == c1 + 1 || c2[1] == 0) {
		*err_out = "empty domain, selector or key";
		return -1;
	}
	for (const char *p = c1 + 1; p < c2; p++)
		if ((unsigned char)*p <= ' ' || *p == ';' || (*p == '.' && (p == c1 + 1 || p + 1 == c2))) {
			*err_out = "bad selector";
			return -1;
		}
	for (const char *p = value; p < c1; p++)
		if ((unsigned char)*p <= ' ' || *p == ';' || *p == ':') {
			*err_out = "bad domain";
			return -1;
		}
	*dom_out = xstrndup(value, (size_t)(c1 - value));
	*sel_out = xstrndup(c1 + 1, (size_t)(c2 - c1 - 1));
	*data_out = xstrdup(c2 + 1);
	ascii_lower(*dom_out);
	return 0;
}

static int lc(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

int dkim_keys_glob(const char *p, const char *s)
{
	/* Iterative '*' matching with one back-track point: linear-ish, no recursion. */
	const char *star = NULL, *mark = NULL;
	while (*s) {
		if (*p == '*') {
			star = p++;
			mark = s;
		} else if (*p && lc((unsigned char)*p) == lc((unsigned char)*s)) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++mark;
		} else {
			return 0;
		}
	}
	while (*p == '*')
		p++;
	return *p == 0;
}

int dkim_keys_load_pem(const char *text, size_t len, struct dkim_key *k, const char **err_out)
{
	EVP_PKEY *pk = NULL;
	if (len > KEYS_MAX_KEY_BYTES) {
		*err_out = "key too large";
		return -1;
	}
	if (memmem(text, len, "-----BEGIN", 10) != NULL) {
		BIO *bio = BIO_new_mem_buf(text, (int)len);
		pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		BIO_free(bio);
	} else {
		/* base64 DER (OpenDKIM KeyTable inline data) */
		unsigned char *der = xmalloc(len + 4);
		char *b64 = xmalloc(len + 1);
		size_t m = 0;
		for (size_t i = 0; i < len; i++)
			if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
				b64[m++] = text[i];
		int n = m > 0 ? EVP_DecodeBlock(der, (unsigned char *)b64, (int)m) : -1;
		if (n > 0) {
			while (m > 0 && b64[m - 1] == '=') {
				m--;
				n--;
			}
			const unsigned char *p = der;
			pk = d2i_AutoPrivateKey(NULL, &p, n);
		}
		free(der);
		free(b64);
	}
	if (pk == NULL) {
		*err_out = "not a private key (PEM or base64 DER)";
		return -1;
	}
	int id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_RSA) {
		k->type = DKIM_KEY_RSA;
		k->bits = (unsigned)EVP_PKEY_get_bits(pk);
		if (k->bits < 1024) {
			EVP_PKEY_free(pk);
			*err_out = "RSA key shorter than 1024 bits (RFC 8301)";
			return -1;
		}
	} else if (id == EVP_PKEY_ED25519) {
		k->type = DKIM_KEY_ED25519;
		k->bits = 256;
	} else {
		EVP_PKEY_free(pk);
		*err_out = "key type is neither RSA nor Ed25519";
		return -1;
	}
	k->pkey = pk;
	return 0;
}

/* ---- key set ---- */

struct sign_rule {
	char *pattern;
	size_t *keys;		/* indexes into ks->keys */
	size_t nkeys;
};

struct dkim_keyset {
	struct dkim_key *keys;
	size_t nkeys;
	int simple;
	int subdomains;
	char **domains;		/* simple mode: key i signs for domains[i] */
	int refile;
	int multiple;
	struct sign_rule *rules;
	size_t nrules;
};

size_t dkim_keyset_count(const struct dkim_keyset *ks)
{
	return ks ? ks->nkeys : 0;
}

static const char *table_path(const char *spec, int *refile_out)
{
	*refile_out = 0;
	if (strncmp(spec, "file:", 5) == 0)
		return spec + 5;
	if (strncmp(spec, "refile:", 7) == 0) {
		*refile_out = 1;
		return spec + 7;
	}
	return spec;
}

static int load_key_file(const char *path, struct dkim_key *k, char **err_out)
{
	char *text, *err;
	size_t len;
	const char *why;
	if (conf_read_file(path, KEYS_MAX_KEY_BYTES, &text, &len, &err) < 0) {
		*err_out = err;
		return -1;
	}
	int rc = dkim_keys_load_pem(text, len, k, &why);
	free(text);
	if (rc < 0)
		*err_out = xasprintf("%s: %s", path, why);
	return rc;
}

static void key_clear(struct dkim_key *k)
{
	free(k->name);
	free(k->domain);
	free(k->selector);
	free(k->source);
	EVP_PKEY_free(k->pkey);
}

void dkim_keyset_free(struct dkim_keyset **ksp)
{
	struct dkim_keyset *ks = *ksp;
	if (ks == NULL)
		return;
	for (size_t i = 0; i < ks->nkeys; i++) {
		key_clear(&ks->keys[i]);
		if (ks->domains)
			free(ks->domains[i]);
	}
	free(ks->keys);
	free(ks->domains);
	for (size_t i = 0; i < ks->nrules; i++) {
		free(ks->rules[i].pattern);
		free(ks->rules[i].keys);
	}
	free(ks->rules);
	free(ks);
	*ksp = NULL;
}

static int load_simple(struct dkim_keyset *ks, const struct dkim_keyset_opts *o, char **err_out)
{
	if (o->nselectors != o->nkey_files) {
		*err_out = xasprintf("dkim_selector has %zu items but dkim_key_file has %zu",
				     o->nselectors, o->nkey_files);
		return -1;
	}
	if (o->nselectors > 0 && o->ndomains == 0) {
		*err_out = xstrdup("dkim_key_file is set but dkim_domain is empty");
		return -1;
	}
	ks->simple = 1;
	ks->subdomains = o->subdomains;
	/* every domain x every selector/key pair */
	size_t n = o->ndomains * o->nselectors;
	ks->keys = xcalloc(n ? n : 1, sizeof(*ks->keys));
	ks->domains = xcalloc(n ? n : 1, sizeof(char *));
	for (size_t d = 0; d < o->ndomains; d++)
		for (size_t s = 0; s < o->nselectors; s++) {
			struct dkim_key *k = &ks->keys[ks->nkeys];
			if (load_key_file(o->key_files[s], k, err_out) < 0)
				return -1;
			k->name = xstrdup(o->selectors[s]);
			k->domain = xstrdup(o->domains[d]);
			ascii_lower(k->domain);
			k->selector = xstrdup(o->selectors[s]);
			k->source = xstrdup(o->key_files[s]);
			ks->domains[ks->nkeys] = xstrdup(k->domain);
			ks->nkeys++;
		}
	return 0;
}

static long read_table(const char *spec, int *refile_out, struct dkim_tab_line **lines_out,
		       char **err_out)
{
	const char *path = table_path(spec, refile_out);
	char *text;
	size_t len;
	if (conf_read_file(path, KEYS_MAX_FILE_BYTES, &text, &len, err_out) < 0)
		return -1;
	long n = dkim_keys_parse_table(text, len, path, lines_out, err_out);
	free(text);
	return n;
}

static int load_tables(struct dkim_keyset *ks, const struct dkim_keyset_opts *o, char **err_out)
{
	struct dkim_tab_line *kl = NULL, *sl = NULL;
	int refile;
	long nk = read_table(o->key_table, &refile, &kl, err_out);
	if (nk < 0)
		return -1;
	const char *kpath = table_path(o->key_table, &refile);
	if (refile) {
		dkim_keys_lines_free(kl, (size_t)nk);
		*err_out = xasprintf("%s: a KeyTable must be file:, not refile:", o->key_table);
		return -1;
	}
	ks->keys = xcalloc((size_t)nk + 1, sizeof(*ks->keys));
	int rc = -1;
	for (long i = 0; i < nk; i++) {
		struct dkim_key *k = &ks->keys[ks->nkeys];
		char *data;
		const char *why;
		if (dkim_keys_parse_keyvalue(kl[i].value, &k->domain, &k->selector, &data, &why) < 0) {
			*err_out = xasprintf("%s:%d: %s", kpath, kl[i].lineno, why);
			goto out;
		}
		k->name = xstrdup(kl[i].key);
		k->source = xasprintf("%s:%d", kpath, kl[i].lineno);
		ks->nkeys++;
		int r;
		if (data[0] == '/' || data[0] == '.') {
			char *err;
			r = load_key_file(data, k, &err);
			if (r < 0) {
				*err_out = xasprintf("%s:%d: %s", kpath, kl[i].lineno, err);
				free(err);
			}
		} else {
			r = dkim_keys_load_pem(data, strlen(data), k, &why);
			if (r < 0)
				*err_out = xasprintf("%s:%d: %s", kpath, kl[i].lineno, why);
		}
		free(data);
		if (r < 0)
			goto out;
		for (size_t j = 0; j + 1 < ks->nkeys; j++)
			if (strcmp(ks->keys[j].name, k->name) == 0) {
				*err_out = xasprintf("%s:%d: duplicate key name %s", kpath, kl[i].lineno,
						     k->name);
				goto out;
			}
	}
	long ns = read_table(o->signing_table, &ks->refile, &sl, err_out);
	if (ns < 0)
		goto out;
	const char *spath = table_path(o->signing_table, &refile);
	ks->rules = xcalloc((size_t)ns + 1, sizeof(*ks->rules));
	for (long i = 0; i < ns; i++) {
		struct sign_rule *r = &ks->rules[ks->nrules++];
		r->pattern = xstrdup(sl[i].key);
		if (!ks->refile)
			ascii_lower(r->pattern);
		size_t nn;
		char **names = conf_split_list(sl[i].value, &nn);
		r->keys = xcalloc(nn + 1, sizeof(size_t));
		for (size_t j = 0; j < nn; j++) {
			size_t x;
			for (x = 0; x < ks->nkeys; x++)
				if (strcmp(ks->keys[x].name, names[j]) == 0)
					break;
			if (x == ks->nkeys) {
				*err_out = xasprintf("%s:%d: key %s is not in the KeyTable %s", spath,
						     sl[i].lineno, names[j], kpath);
				conf_list_free(names, nn);
				dkim_keys_lines_free(sl, (size_t)ns);
				goto out;
			}
			r->keys[r->nkeys++] = x;
		}
		conf_list_free(names, nn);
	}
	dkim_keys_lines_free(sl, (size_t)ns);
	rc = 0;
out:
	dkim_keys_lines_free(kl, (size_t)nk);
	return rc;
}

struct dkim_keyset *dkim_keyset_load(const struct dkim_keyset_opts *o, char **err_out)
{
	struct dkim_keyset *ks = xcalloc(1, sizeof(*ks));
	ks->multiple = o->multiple;
	int have_tables = (o->key_table && *o->key_table) || (o->signing_table && *o->signing_table);
	int rc;
	if (have_tables) {
		if (!(o->key_table && *o->key_table) || !(o->signing_table && *o->signing_table)) {
			*err_out = xstrdup("dkim_key_table and dkim_signing_table go together");
			rc = -1;
		} else if (o->nkey_files > 0) {
			*err_out = xstrdup("use either dkim_key_file or dkim_key_table, not both");
			rc = -1;
		} else {
			rc = load_tables(ks, o, err_out);
		}
	} else {
		rc = load_simple(ks, o, err_out);
	}
	if (rc < 0)
		dkim_keyset_free(&ks);
	return ks;
}

static size_t add_choice(const struct dkim_keyset *ks, size_t ki, const char *domain,
			 struct dkim_sign_choice *out, size_t n, size_t max)
{
	const struct dkim_key *k = &ks->keys[ki];
	if (n >= max)
		return n;
	for (size_t j = 0; j < n; j++)
		if (out[j].key == k)
			return n;
	const char *d = strcmp(k->domain, "%") == 0 ? domain : k->domain;
	if (strlen(d) >= sizeof(out[n].domain))
		return n;
	out[n].key = k;
	strcpy(out[n].domain, d);
	return n + 1;
}

static size_t rule_apply(const struct dkim_keyset *ks, const struct sign_rule *r, const char *domain,
			 struct dkim_sign_choice *out, size_t n, size_t max)
{
	for (size_t j = 0; j < r->nkeys; j++)
		n = add_choice(ks, r->keys[j], domain, out, n, max);
	return n;
}

static const struct sign_rule *find_rule(const struct dkim_keyset *ks, const char *key)
{
	for (size_t i = 0; i < ks->nrules; i++)
		if (ascii_strcasecmp(ks->rules[i].pattern, key) == 0)
			return &ks->rules[i];
	return NULL;
}

size_t dkim_keyset_select(const struct dkim_keyset *ks, const char *local, const char *domain,
			  struct dkim_sign_choice *out, size_t max)
{
	size_t n = 0;
	if (ks == NULL || domain == NULL || *domain == 0)
		return 0;
	if (ks->simple) {
		for (size_t i = 0; i < ks->nkeys; i++) {
			const char *d = ks->domains[i];
			size_t dl = strlen(d), l = strlen(domain);
			int ok = ascii_strcasecmp(d, domain) == 0 ||
				 (ks->subdomains && l > dl && domain[l - dl - 1] == '.' &&
				  ascii_strcasecmp(domain + l - dl, d) == 0);
			if (ok)
				n = add_choice(ks, i, domain, out, n, max);
		}
		return n;
	}
	char *addr = xasprintf("%s@%s", local ? local : "", domain);
	if (ks->refile) {
		for (size_t i = 0; i < ks->nrules; i++)
			if (dkim_keys_glob(ks->rules[i].pattern, addr)) {
				n = rule_apply(ks, &ks->rules[i], domain, out, n, max);
				if (!ks->multiple && n > 0)
					break;
			}
		free(addr);
		return n;
	}
	/* file: user@domain, domain, .parent..., "*" */
	const struct sign_rule *r;
	if (local && *local && (r = find_rule(ks, addr)) != NULL) {
		n = rule_apply(ks, r, domain, out, n, max);
		if (!ks->multiple && n > 0)
			goto done;
	}
	if ((r = find_rule(ks, domain)) != NULL) {
		n = rule_apply(ks, r, domain, out, n, max);
		if (!ks->multiple && n > 0)
			goto done;
	}
	for (const char *p = strchr(domain, '.'); p != NULL; p = strchr(p + 1, '.')) {
		if ((r = find_rule(ks, p)) != NULL) {
			n = rule_apply(ks, r, domain, out, n, max);
			if (!ks->multiple && n > 0)
				goto done;
		}
	}
	if ((r = find_rule(ks, "*")) != NULL)
		n = rule_apply(ks, r, domain, out, n, max);
done:
	free(addr);
	return n;
}

/* ---- internal hosts ---- */

struct host_net {
	int family;
	unsigned char addr[16];
	int prefix;
};
struct dkim_hosts {
	struct host_net *nets;
	size_t n;
};

static int parse_ip(const char *s, struct host_net *h)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t l = strlen(s);
	if (l >= sizeof(buf))
		return -1;
	if (s[0] == '[' && l > 2 && s[l - 1] == ']') {
		memcpy(buf, s + 1, l - 2);
		buf[l - 2] = 0;
	} else {
		memcpy(buf, s, l + 1);
	}
	if (inet_pton(AF_INET, buf, h->addr) == 1) {
		h->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, h->addr) == 1) {
		h->family = AF_INET6;
		/* v4-mapped -> v4 */
		static const unsigned char pre[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(h->addr, pre, 12) == 0) {
			memmove(h->addr, h->addr + 12, 4);
			h->family = AF_INET;
		}
		return 0;
	}
	return -1;
}

struct dkim_hosts *dkim_hosts_new(const char *const *items, size_t n, char **err_out)
{
	struct dkim_hosts *h = xcalloc(1, sizeof(*h));
	h->nets = xcalloc(n + 1, sizeof(*h->nets));
	for (size_t i = 0; i < n; i++) {
		char *s = xstrdup(items[i]);
		char *slash = strrchr(s, '/');
		struct host_net *net = &h->nets[h->n];
		int prefix = -1;
		if (slash) {
			char *end;
			*slash = 0;
			long v = strtol(slash + 1, &end, 10);
			if (*end != 0 || slash[1] == 0 || v < 0 || v > 128)
				prefix = -2;
			else
				prefix = (int)v;
		}
		if (prefix == -2 || parse_ip(s, net) < 0 ||
		    prefix > (net->family == AF_INET ? 32 : 128)) {
			*err_out = xasprintf("dkim_internal_hosts: bad address or network \"%s\"", items[i]);
			free(s);
			dkim_hosts_free(&h);
			return NULL;
		}
		if (prefix < 0)
			prefix = net->family == AF_INET ? 32 : 128;
		/* a v4-mapped "::ffff:a.b.c.d/120" prefix counts in v4 bits */
		if (net->family == AF_INET && strchr(s, ':') != NULL && slash)
			prefix = prefix >= 96 ? prefix - 96 : 0;
		net->prefix = prefix;
		free(s);
		h->n++;
	}
	return h;
}

int dkim_hosts_match(const struct dkim_hosts *h, const char *addr)
{
	struct host_net a;
	if (h == NULL || addr == NULL || parse_ip(addr, &a) < 0)
		return 0;
	for (size_t i = 0; i < h->n; i++) {
		const struct host_net *n = &h->nets[i];
		if (n->family != a.family)
			continue;
		int bits = n->prefix, k = 0;
		while (bits >= 8 && n->addr[k] == a.addr[k]) {
			bits -= 8;
			k++;
		}
		if (bits >= 8)
			continue;
		if (bits == 0)
			return 1;
		unsigned char mask = (unsigned char)(0xff << (8 - bits));
		if ((n->addr[k] & mask) == (a.addr[k] & mask))
			return 1;
	}
	return 0;
}

void dkim_hosts_free(struct dkim_hosts **hp)
{
	if (*hp == NULL)
		return;
	free((*hp)->nets);
	free(*hp);
	*hp = NULL;
}
