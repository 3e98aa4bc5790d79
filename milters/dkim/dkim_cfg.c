#include "milters/dkim/dkim_cfg.h"
#include "milters/dkim/dkim_dns.h"
#include "milters/dkim/dkim_keys.h"
#include "conf/conf.h"
#include "lib/util.h"

#include <opendkim/dkim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dkim_action_name(enum dkim_action a)
{
	static const char *const n[] = { "accept", "reject", "tempfail", "quarantine", "discard" };
	return (unsigned)a < 5 ? n[a] : "accept";
}

static enum dkim_action action_of(const struct conf *c, const char *name)
{
	const char *v = conf_str(c, name);
	static const char *const n[] = { "accept", "reject", "tempfail", "quarantine", "discard" };
	for (int i = 0; i < 5; i++)
		if (ascii_strcasecmp(v, n[i]) == 0)
			return (enum dkim_action)i;
	return DKIM_ACT_ACCEPT;	/* conf validated the enum */
}

static char **null_list(const struct conf *c, const char *name)
{
	size_t n;
	const char *const *l = conf_list(c, name, &n);
	char **out = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(l[i]);
	return out;
}

static void free_list(char **l)
{
	if (l == NULL)
		return;
	for (char **p = l; *p; p++)
		free(*p);
	free(l);
}

/* Prescreen: verify at most max_signatures signatures (the first ones). */
static DKIM_CBSTAT prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	struct dkim_cfg **cfgp = dkim_get_user_context(dkim);
	int max = (cfgp && *cfgp) ? (*cfgp)->max_signatures : 10;
	for (int i = max; i < nsigs; i++)
		dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
}

static int canon_of(const char *s, int *h, int *b)
{
	char hs[16] = "", bs[16] = "";
	const char *slash = strchr(s, '/');
	if (slash) {
		snprintf(hs, sizeof(hs), "%.*s", (int)(slash - s), s);
		snprintf(bs, sizeof(bs), "%s", slash + 1);
	} else {
		snprintf(hs, sizeof(hs), "%s", s);
		snprintf(bs, sizeof(bs), "simple");	/* RFC 6376 3.5: body default simple */
	}
	*h = ascii_strcasecmp(hs, "relaxed") == 0 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	*b = ascii_strcasecmp(bs, "relaxed") == 0 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	return 0;
}

struct dkim_cfg *dkim_cfg_new(const struct conf *c, const struct dkim_cfg_test *test,
			      char **err_out)
{
	struct dkim_cfg *cfg = xcalloc(1, sizeof(*cfg));
	cfg->refs = 1;
	cfg->authserv_id = xstrdup(conf_str(c, "dkim_authserv_id"));
	if (cfg->authserv_id[0] == 0) {
		*err_out = xasprintf("%s: dkim_authserv_id is empty", conf_where(c, "dkim_authserv_id"));
		goto fail;
	}
	cfg->max_signatures = (int)conf_int(c, "dkim_max_signatures");
	cfg->allow_sha1 = conf_bool(c, "dkim_allow_sha1");
	cfg->min_key_bits = (unsigned)conf_int(c, "dkim_minimum_key_bits");
	cfg->refuse_body_length = conf_bool(c, "dkim_refuse_body_length");
	cfg->sign_authenticated = conf_bool(c, "dkim_sign_authenticated");
	cfg->add_ar_on_sign = conf_bool(c, "dkim_add_ar_on_sign");
	canon_of(conf_str(c, "dkim_canonicalization"), &cfg->hcanon, &cfg->bcanon);
	cfg->on_bad = action_of(c, "dkim_on_bad_signature");
	cfg->on_none = action_of(c, "dkim_on_no_signature");
	cfg->on_nokey = action_of(c, "dkim_on_key_not_found");
	cfg->on_dns = action_of(c, "dkim_on_dns_error");
	cfg->on_internal = action_of(c, "dkim_on_internal_error");
	cfg->on_policy = action_of(c, "dkim_on_policy");

	size_t n;
	const char *const *hosts = conf_list(c, "dkim_internal_hosts", &n);
	char *err = NULL;
	cfg->internal = dkim_hosts_new(hosts, n, &err);
	if (cfg->internal == NULL) {
		*err_out = xasprintf("%s: %s", conf_where(c, "dkim_internal_hosts"), err);
		free(err);
		goto fail;
	}

	struct dkim_keyset_opts ko = { 0 };
	ko.domains = conf_list(c, "dkim_domain", &ko.ndomains);
	ko.selectors = conf_list(c, "dkim_selector", &ko.nselectors);
	ko.key_files = conf_list(c, "dkim_key_file", &ko.nkey_files);
	ko.subdomains = conf_bool(c, "dkim_subdomains");
	ko.key_table = conf_str(c, "dkim_key_table");
	ko.signing_table = conf_str(c, "dkim_signing_table");
	ko.multiple = conf_bool(c, "dkim_multiple_signatures");
	cfg->keys = dkim_keyset_load(&ko, &err);
	if (cfg->keys == NULL) {
		*err_out = xasprintf("%s: %s", conf_path(c), err);
		free(err);
		goto fail;
	}

	if (test && test->dns) {
		cfg->dns = test->dns;
	} else {
		struct dns_opts o = { 0 };
		o.servers = conf_list(c, "dns_servers", &o.nservers);
		o.timeout_ms = (int)conf_time_s(c, "dns_timeout") * 1000;
		o.tries = (int)conf_int(c, "dns_tries");
		cfg->dns = dkim_dns_new(&o, (size_t)conf_int(c, "dkim_query_cache_size"), &err);
		if (cfg->dns == NULL) {
			*err_out = xasprintf("%s: dns_servers: %s", conf_where(c, "dns_servers"), err);
			free(err);
			goto fail;
		}
	}

	DKIM_LIB *lib = dkim_init(NULL, NULL);
	if (lib == NULL) {
		*err_out = xstrdup("libopendkim initialisation failed");
		goto fail;
	}
	cfg->lib = lib;
	dkim_dns_attach(cfg->dns, lib);
	/* no FIXCRLF: a bare CR is body data (RFC 6376 canonicalizes bytes as sent) */
	unsigned flags = DKIM_LIBFLAGS_BADSIGHANDLES;
	dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags));
	unsigned minbits = 0;	/* applied per algorithm in dkim_msg.c (RSA only) */
	dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof(minbits));
	cfg->sign_hdrs = null_list(c, "dkim_sign_headers");
	cfg->oversign_hdrs = null_list(c, "dkim_oversign_headers");
	if (cfg->sign_hdrs[0] == NULL) {
		*err_out = xasprintf("%s: dkim_sign_headers is empty", conf_where(c, "dkim_sign_headers"));
		goto fail;
	}
	/* signing is ours (dkim_signer.c): "*" = every header; libopendkim only verifies */
	cfg->ttl_s = (uint64_t)conf_time_s(c, "dkim_signature_ttl");
	if (test && test->fixed_time) {
		uint64_t t = test->fixed_time;
		cfg->fixed_time = t;	/* our t=, and libopendkim's "now" for x= checks */
		dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof(t));
	}
	dkim_set_prescreen(lib, prescreen);
	return cfg;
fail:
	if (test && test->dns && cfg->dns == NULL)
		cfg->dns = test->dns;	/* taken over even on failure */
	dkim_cfg_unref(&cfg);
	return NULL;
}

struct dkim_cfg *dkim_cfg_ref(struct dkim_cfg *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST);
	return cfg;
}

void dkim_cfg_unref(struct dkim_cfg **cfgp)
{
	struct dkim_cfg *cfg = *cfgp;
	*cfgp = NULL;
	if (cfg == NULL || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	if (cfg->lib)
		dkim_close(cfg->lib);
	dkim_dns_free(&cfg->dns);
	dkim_keyset_free(&cfg->keys);
	dkim_hosts_free(&cfg->internal);
	free_list(cfg->sign_hdrs);
	free_list(cfg->oversign_hdrs);
	free(cfg->authserv_id);
	free(cfg);
}

char *dkim_cfg_milter_conn(const char *spec, const char **err_out)
{
	if (strncmp(spec, "unix:/", 6) == 0 || strncmp(spec, "local:/", 7) == 0)
		return xstrdup(spec);
	if (spec[0] == '/')
		return xasprintf("unix:%s", spec);
	int v6 = strncmp(spec, "inet6:", 6) == 0;
	if (!v6 && strncmp(spec, "inet:", 5) != 0) {
		*err_out = "expected unix:/path, inet:host:port or inet:port@host";
		return NULL;
	}
	const char *rest = spec + (v6 ? 6 : 5);
	const char *at = strchr(rest, '@');
	char host[256], port[16];
	if (at) {
		snprintf(port, sizeof(port), "%.*s", (int)(at - rest), rest);
		snprintf(host, sizeof(host), "%s", at + 1);
		if (host[0] == '[') {
			size_t l = strlen(host);
			if (l < 3 || host[l - 1] != ']') {
				*err_out = "bad [address]";
				return NULL;
			}
			memmove(host, host + 1, l - 2);
			host[l - 2] = 0;
		}
	} else if (rest[0] == '[') {
		const char *rb = strchr(rest, ']');
		if (rb == NULL || rb[1] != ':') {
			*err_out = "bad [address]:port";
			return NULL;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(rb - rest - 1), rest + 1);
		snprintf(port, sizeof(port), "%s", rb + 2);
		v6 = 1;
	} else {
		const char *colon = strrchr(rest, ':');
		if (colon == NULL) {
			snprintf(port, sizeof(port), "%s", rest);	/* "inet:8891" = any address */
			host[0] = 0;
		} else {
			snprintf(host, sizeof(host), "%.*s", (int)(colon - rest), rest);
			snprintf(port, sizeof(port), "%s", colon + 1);
		}
	}
	if (port[0] == 0 || strspn(port, "0123456789") != strlen(port) || atoi(port) <= 0 ||
	    atoi(port) > 65535) {
		*err_out = "bad port";
		return NULL;
	}
	if (strchr(host, ':'))
		v6 = 1;
	if (host[0] == 0)
		return xasprintf("%s:%s", v6 ? "inet6" : "inet", port);
	return xasprintf("%s:%s@%s", v6 ? "inet6" : "inet", port, host);
}
