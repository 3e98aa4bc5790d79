/*
 * fuzz_conf: untrusted bytes into the config parser and the table parsers.
 * The input is loaded as sluice.conf (from memory and, so NUL bytes are
 * seen, from a file) and opened as texthash:, cidr: and pcre: tables plus
 * inline:{...}, then looked up with a few keys. Nothing may crash, leak or hang.
 */
#include "conf/conf.h"
#include "conf/table.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const struct conf_param fuzz_params[] = {
	{ "myhostname", CONF_STR, "mx.example.org", 0, 0, NULL, 0 },
	{ "myorigin", CONF_STR, "$myhostname", 0, 0, NULL, 0 },
	{ "limit", CONF_INT, "10", 0, 100, NULL, 0 },
	{ "flag", CONF_BOOL, "no", 0, 0, NULL, 0 },
	{ "timeout", CONF_TIME, "5m", 1, 0, NULL, 0 },
	{ "lifetime", CONF_TIME, "5", 0, 0, NULL, 'd' },
	{ "size", CONF_SIZE, "10m", 0, 0, NULL, 0 },
	{ "action", CONF_ENUM, "tempfail", 0, 0, "accept|tempfail|reject", 0 },
	{ "milters", CONF_LIST, "", 0, 0, NULL, 0 },
	{ NULL, 0, NULL, 0, 0, NULL, 0 },
};
static const struct conf_param *const fuzz_tables[] = { fuzz_params, NULL };
static const char *const fuzz_ignore[] = { "spf_", NULL };

static void fuzz_conf(const char *text, const char *path)
{
	char *err = NULL;
	struct conf *c = conf_load_string(text, "fuzz.conf", fuzz_tables, fuzz_ignore, &err);
	if (c) {
		size_t n;
		conf_list(c, "milters", &n);
		conf_warnings(c, &n);
		conf_override(c, "limit", "$myorigin", &err);
		free(err);
		err = NULL;
		conf_override(c, "myhostname", text, &err);
	}
	free(err);
	conf_free(&c);
	err = NULL;
	c = conf_load(path, fuzz_tables, NULL, &err);
	free(err);
	conf_free(&c);
}

static void fuzz_lookups(struct table *t, const char *key)
{
	const char *v;
	table_lookup(t, key, &v);
	table_lookup(t, "192.0.2.1", &v);
	table_lookup(t, "2001:db8::1", &v);
	table_lookup_addr(t, "user@mail.example.com", TABLE_ADDR_ACCESS, &v);
	table_lookup_addr(t, "", TABLE_ADDR_ACCESS | TABLE_ADDR_VIRTUAL, &v);
	table_lookup_client(t, "mx.example.com", "10.1.2.3", &v);
}

static void fuzz_table(const char *spec, const char *key)
{
	char *err = NULL;
	struct table *t = table_open(spec, &err);
	free(err);
	if (!t)
		return;
	fuzz_lookups(t, key);
	err = NULL;
	table_reload(t, &err);
	free(err);
	table_free(&t);
}

/* first_line - the input's first line as a lookup key (caller frees). */
static char *first_line(const char *text)
{
	return xstrndup(text, strcspn(text, "\r\n"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	if (fd < 0) {
		fd = memfd_create("fuzz_conf", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	char *text = xstrndup((const char *)data, size);	/* stops at a NUL */
	char *key = first_line(text);
	fuzz_conf(text, path);
	static const char *const types[] = { "texthash", "cidr", "pcre" };
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		char *spec = xasprintf("%s:%s", types[i], path);
		fuzz_table(spec, key);
		free(spec);
	}
	char *spec = xasprintf("inline:%s", text);
	fuzz_table(spec, key);
	free(spec);
	free(key);
	free(text);
	return 0;
}
