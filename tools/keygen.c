/*
 * keygen: `sluice keygen` - DKIM key pairs and their DNS records (issue 4).
 *   sluice keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519|both] [-b 2048] [-D DIR]
 *     writes DIR/SELECTOR.private (0600) and DIR/SELECTOR.txt (zone fragment,
 *     DIR and missing parents created with mode 0700;
 *     TXT split into quoted strings of at most 255 bytes); with -a both the
 *     Ed25519 key gets the selector SELECTOR-ed25519 (one record per name).
 *   sluice keygen --check -d DOMAIN -s SELECTOR -k KEYFILE [-c sluice.conf]
 *     looks SELECTOR._domainkey.DOMAIN up through dns_servers and says
 *     whether its p= is the public half of KEYFILE (exit 0 = match).
 * Key generation with OpenSSL EVP.
 */
#include "conf/conf.h"
#include "conf/params.h"
#include "lib/util.h"
#include "proto/dns.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int keygen_main(int argc, char **argv);

/* pubkey_b64 - the p= value: SubjectPublicKeyInfo DER (RSA) or the raw 32 bytes (Ed25519, RFC 8463). */
static char *pubkey_b64(EVP_PKEY *k)
{
	unsigned char *der = NULL, raw[64];
	int n;
	size_t rl = sizeof(raw);
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
		if (EVP_PKEY_get_raw_public_key(k, raw, &rl) != 1)
			return NULL;
		der = raw;
		n = (int)rl;
	} else {
		n = i2d_PUBKEY(k, &der);
		if (n <= 0)
			return NULL;
	}
	char *b64 = xmalloc((size_t)n * 4 / 3 + 8);
	EVP_EncodeBlock((unsigned char *)b64, der, n);
	if (der != raw)
		OPENSSL_free(der);
	return b64;
}

static EVP_PKEY *generate(int ed, int bits)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(ed ? EVP_PKEY_ED25519 : EVP_PKEY_RSA, NULL);
	EVP_PKEY *k = NULL;
	if (c && EVP_PKEY_keygen_init(c) == 1 &&
	    (ed || EVP_PKEY_CTX_set_rsa_keygen_bits(c, bits) == 1))
		EVP_PKEY_keygen(c, &k);
	EVP_PKEY_CTX_free(c);
	return k;
}

/* file_error - "sluice keygen: PATH: what: reason" on stderr; returns -1 */
static int file_error(const char *path, const char *what, int err)
{
	fprintf(stderr, "sluice keygen: %s: %s: %s\n", path, what, strerror(err));
	return -1;
}

/* make_dir - mkdir -p dir; new directories get mode 0700 (they hold private keys). 0 or -1. */
static int make_dir(const char *dir)
{
	char *p = xstrdup(dir);
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			rc = file_error(p, "cannot create directory", errno);
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	struct stat st;
	if (rc == 0 && stat(dir, &st) < 0)
		rc = file_error(dir, "cannot create directory", errno);
	else if (rc == 0 && !S_ISDIR(st.st_mode))
		rc = file_error(dir, "cannot create directory", ENOTDIR);
	free(p);
	return rc;
}

static int write_key(EVP_PKEY *k, const char *dir, const char *domain, const char *sel)
{
	char *kp = xasprintf("%s/%s.private", dir, sel), *tp = xasprintf("%s/%s.txt", dir, sel);
	int rc = -1;
	char *p = NULL, *rec = NULL;
	int fd = open(kp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		file_error(kp, "cannot write", errno);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	errno = 0;
	if (fchmod(fd, 0600) < 0 || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 ||
	    fflush(f) != 0 || fsync(fd) < 0) {
		file_error(kp, "cannot write", errno ? errno : EIO);
		fclose(f);
		goto out;
	}
	if (fclose(f) != 0) {
		file_error(kp, "cannot write", errno);
		goto out;
	}
	int ed = EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519;
	p = pubkey_b64(k);
	rec = xasprintf("v=DKIM1; k=%s; p=%s", ed ? "ed25519" : "rsa", p);
	f = fopen(tp, "w");
	if (f == NULL) {
		file_error(tp, "cannot write", errno);
		goto out;
	}
	fprintf(f, "%s._domainkey\tIN\tTXT\t( ", sel);
	for (size_t o = 0, n = strlen(rec); o < n; o += 250)
		fprintf(f, "%s\"%.*s\"", o ? "\n\t\t" : "", (int)(n - o > 250 ? 250 : n - o), rec + o);
	fprintf(f, " )  ; DKIM key %s for %s\n", sel, domain);
	if (ferror(f) | (fclose(f) != 0)) {
		file_error(tp, "cannot write", errno ? errno : EIO);
		goto out;
	}
	printf("%s: private key %s, DNS record %s\n", sel, kp, tp);
	rc = 0;
out:
	free(p);
	free(rec);
	free(kp);
	free(tp);
	return rc;
}

static int check(const char *domain, const char *sel, const char *keyfile, const char *cf)
{
	FILE *f = fopen(keyfile, "r");
	if (f == NULL) {
		file_error(keyfile, "cannot read", errno);
		return 2;
	}
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL) {
		fprintf(stderr, "sluice keygen: %s: not a PEM private key\n", keyfile);
		return 2;
	}
	struct dns_opts o = { 0 };
	struct conf *c = NULL;
	char *err = NULL;
	if (cf) {
		c = conf_load(cf, params_all, NULL, &err);
		if (c == NULL) {
			fprintf(stderr, "sluice keygen: %s\n", err);
			return 2;
		}
		o.servers = conf_list(c, "dns_servers", &o.nservers);
		o.timeout_ms = (int)conf_time_s(c, "dns_timeout") * 1000;
		o.tries = (int)conf_int(c, "dns_tries");
	}
	struct dns_resolver *r = dns_new(NULL, &o, &err);
	if (r == NULL) {
		fprintf(stderr, "sluice keygen: dns_servers: %s\n", err);
		return 2;
	}
	char *name = xasprintf("%s._domainkey.%s", sel, domain);
	struct dns_answer *a = dns_query_sync(r, name, DNS_T_TXT, 0);
	char *want = pubkey_b64(k);
	int rc = 1;
	if (a->status != DNS_OK) {
		printf("%s: no key record (%s)\n", name, dns_status_name(a->status));
	} else {
		for (size_t i = 0; i < a->n; i++) {
			/* p= value with white space removed */
			const char *t = a->rr[i].u.txt.data, *p = strstr(t, "p=");
			while (p && p != t && p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t')
				p = strstr(p + 1, "p=");
			struct sbuf v;
			sbuf_init(&v);
			for (p = p ? p + 2 : ""; *p && *p != ';'; p++)
				if (*p != ' ' && *p != '\t')
					sbuf_addc(&v, *p);
			if (v.len && strcmp(v.buf, want) == 0)
				rc = 0;
			sbuf_free(&v);
		}
		printf("%s: %s\n", name, rc == 0 ? "record matches the private key"
						 : "record does NOT match the private key");
	}
	dns_answer_free(&a);
	dns_free(&r);
	free(name);
	free(want);
	EVP_PKEY_free(k);
	conf_free(&c);
	return rc;
}

int keygen_main(int argc, char **argv)
{
	static const struct option lo[] = { { "check", no_argument, NULL, 'C' }, { NULL, 0, NULL, 0 } };
	const char *domain = NULL, *sel = NULL, *alg = "rsa", *dir = ".", *keyfile = NULL, *cf = NULL;
	int bits = 2048, do_check = 0, ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "d:s:a:b:D:k:c:", lo, NULL)) != -1) {
		switch (ch) {
		case 'd': domain = optarg; break;
		case 's': sel = optarg; break;
		case 'a': alg = optarg; break;
		case 'b': bits = atoi(optarg); break;
		case 'D': dir = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'c': cf = optarg; break;
		case 'C': do_check = 1; break;
		default: goto usage;
		}
	}
	if (!domain || !sel || optind != argc)
		goto usage;
	if (do_check) {
		if (!keyfile)
			goto usage;
		return check(domain, sel, keyfile, cf);
	}
	int rsa = !strcmp(alg, "rsa") || !strcmp(alg, "both");
	int ed = !strcmp(alg, "ed25519") || !strcmp(alg, "both");
	if ((!rsa && !ed) || bits < 1024 || bits > 8192) {
		fprintf(stderr, "sluice keygen: -a rsa|ed25519|both, -b 1024..8192\n");
		return 2;
	}
	if (make_dir(dir) < 0)
		return 1;
	if (rsa) {
		EVP_PKEY *k = generate(0, bits);
		if (!k || write_key(k, dir, domain, sel) < 0)
			return 1;
		EVP_PKEY_free(k);
	}
	if (ed) {
		char *s = rsa ? xasprintf("%s-ed25519", sel) : xstrdup(sel);
		EVP_PKEY *k = generate(1, 0);
		int r = (!k || write_key(k, dir, domain, s) < 0);
		EVP_PKEY_free(k);
		free(s);
		if (r)
			return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: sluice keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519|both] [-b 2048] [-D DIR]\n"
			"       sluice keygen --check -d DOMAIN -s SELECTOR -k KEYFILE [-c sluice.conf]\n");
	return 2;
}
