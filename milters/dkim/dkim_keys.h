/*
 * dkim_keys: which keys sign a message, OpenDKIM-compatibly.
 * Owns: the simple key set (dkim_domain + dkim_selector + dkim_key_file),
 * OpenDKIM KeyTable and SigningTable files (file: and refile:, wildcards,
 * '%' for the sender domain), loading private keys with OpenSSL (RSA and
 * Ed25519, decoded once into an EVP_PKEY shared by every message), and the
 * dkim_internal_hosts address list.
 * Leaves: signing itself to dkim_msg.c.
 * Every bad line or key stops loading with "file:line: reason".
 *
 * Table text (both tables): one entry per line, "#" comments, blank lines
 * skipped, first white-space-separated word is the key, the rest the value.
 * KeyTable value: "domain:selector:keydata" where keydata is a key file path
 * (absolute or relative) or the base64 DER of the key itself; domain "%" is
 * the sender's domain. SigningTable value: one or more key names (comma or
 * space separated; several names sign together: our extension).
 * file: SigningTable lookup order: "user@domain", "domain", ".parent" for
 * each parent domain, "*". refile: patterns are globs ('*' = any string,
 * case-insensitive), tried in file order. Only the first match applies
 * unless dkim_multiple_signatures = yes.
 */
#ifndef SLUICE_DKIM_KEYS_H
#define SLUICE_DKIM_KEYS_H

#include <openssl/evp.h>
#include <stddef.h>

enum dkim_key_type { DKIM_KEY_RSA, DKIM_KEY_ED25519 };

struct dkim_key {
	char *name;		/* KeyTable name or the simple key's selector */
	char *domain;		/* "%" = sender domain */
	char *selector;
	char *source;		/* "file:line" that defined it */
	EVP_PKEY *pkey;		/* the private key, decoded once (dkim_signer.c up-refs it) */
	enum dkim_key_type type;
	unsigned bits;
};

/* One parsed table line (dkim_keys_parse_table). */
struct dkim_tab_line {
	char *key;
	char *value;
	int lineno;
};

/*
 * dkim_keys_parse_table - split table text into lines (see above). name is
 * used in messages. Returns the number of lines (>= 0) with *lines_out
 * (free with dkim_keys_lines_free), or -1 with *err_out (caller frees).
 */
long dkim_keys_parse_table(const char *text, size_t len, const char *name,
			   struct dkim_tab_line **lines_out, char **err_out);
void dkim_keys_lines_free(struct dkim_tab_line *lines, size_t n);

/*
 * dkim_keys_parse_keyvalue - split a KeyTable value "dom:sel:data" into
 * new strings. 0 or -1 with *err_out (static text).
 */
int dkim_keys_parse_keyvalue(const char *value, char **dom_out, char **sel_out, char **data_out,
			     const char **err_out);

/* dkim_keys_glob - case-insensitive glob with '*' only; 1 = match. */
int dkim_keys_glob(const char *pattern, const char *s);

/*
 * dkim_keys_load_pem - a private key from text (PEM of any kind, or base64
 * DER) into *k (pkey, type, bits). 0 or -1 with *err_out (static text).
 */
int dkim_keys_load_pem(const char *text, size_t len, struct dkim_key *k, const char **err_out);

struct dkim_keyset_opts {
	/* simple mode: parallel lists (one domain may have several selectors) */
	const char *const *domains;
	size_t ndomains;
	const char *const *selectors;
	size_t nselectors;
	const char *const *key_files;
	size_t nkey_files;
	int subdomains;		/* simple mode: sign for subdomains of dkim_domain */
	/* table mode ("file:/path", "refile:/path" or a bare path) */
	const char *key_table;
	const char *signing_table;
	int multiple;		/* apply every matching SigningTable entry */
};

struct dkim_keyset;

/* dkim_keyset_load - read everything now. NULL with *err_out (caller frees). */
struct dkim_keyset *dkim_keyset_load(const struct dkim_keyset_opts *o, char **err_out);
void dkim_keyset_free(struct dkim_keyset **ks);
/* dkim_keyset_count - number of keys loaded (0: this daemon never signs). */
size_t dkim_keyset_count(const struct dkim_keyset *ks);

struct dkim_sign_choice {
	const struct dkim_key *key;	/* borrowed from the key set */
	char domain[256];		/* d= ('%' replaced) */
};
#define DKIM_MAX_SIGN_KEYS 8
/*
 * dkim_keyset_select - keys for a message whose author is local@domain
 * (domain lower-case). Fills up to max choices; returns how many.
 */
size_t dkim_keyset_select(const struct dkim_keyset *ks, const char *local, const char *domain,
			  struct dkim_sign_choice *out, size_t max);

/* Internal hosts: addresses and CIDR networks (v4/v6), "[::1]/128" accepted. */
struct dkim_hosts;
struct dkim_hosts *dkim_hosts_new(const char *const *items, size_t n, char **err_out);
int dkim_hosts_match(const struct dkim_hosts *h, const char *addr);
void dkim_hosts_free(struct dkim_hosts **h);

#endif
