/* test_sasl: Dovecot auth protocol parser (whole and byte by byte), passwd-file, hashes, base64, PLAIN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mta/sasl.h"
#include "proto/sasl_dvproto.h"

/* render items as "KIND id name user reason temp nargs;" fed step bytes at a time; -1 on error */
static int run(const char *in, size_t step, char *out, size_t outlen)
{
	static const char *const kinds[] = { "VERSION", "MECH", "SPID", "CUID", "COOKIE", "DONE",
					     "OK", "FAIL", "CONT", "OTHER" };
	size_t len = strlen(in);
	struct sasl_dvproto *p = sasl_dvproto_new(64);
	out[0] = 0;
	int rc = 0;
	for (size_t off = 0; off < len && rc == 0; off += step) {
		sasl_dvproto_feed(p, in + off, off + step > len ? len - off : step);
		struct sasl_dvproto_item it;
		const char *err;
		enum sasl_dvproto_next r;
		while ((r = sasl_dvproto_next(p, &it, &err)) == SASL_DV_ITEM)
			snprintf(out + strlen(out), outlen - strlen(out), "%s %lu.%lu/%lu %s %s %s %d %zu;",
				 kinds[it.kind], it.major, it.minor, it.id, it.name ? it.name : "-",
				 it.user ? it.user : "-", it.reason ? it.reason : "-", it.temp, it.nargs);
		if (r == SASL_DV_ERROR)
			rc = -1;
	}
	sasl_dvproto_free(&p);
	return rc;
}

static const struct {
	const char *name, *in, *want;
	int rc;
} cases[] = {
	{ "handshake", "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t42\nCUID\t7\nCOOKIE\tabc\nDONE\n",
	  "VERSION 1.2/0 - - - 0 0;MECH 0.0/0 PLAIN - - 0 1;SPID 0.0/0 42 - - 0 0;CUID 0.0/0 7 - - 0 0;"
	  "COOKIE 0.0/0 abc - - 0 0;DONE 0.0/0 - - - 0 0;", 0 },
	{ "ok with user", "OK\t1\tuser=alice\n", "OK 0.0/1 - alice - 0 1;", 0 },
	{ "fail temp with reason", "FAIL\t3\treason=Try again\ttemp\tuser=bob\n",
	  "FAIL 0.0/3 - bob Try again 1 3;", 0 },
	{ "escaped value", "OK\t1\tuser=a\001tb\n", "OK 0.0/1 - a\tb - 0 1;", 0 },
	{ "cont", "CONT\t9\tVXNlcm5hbWU6\n", "CONT 0.0/9 VXNlcm5hbWU6 - - 0 0;", 0 },
	{ "unknown command kept", "NOTICE\tx\n", "OTHER 0.0/0 NOTICE - - 0 1;", 0 },
	{ "partial line waits", "DONE", "", 0 },
	{ "bad id", "OK\tx1\n", "", -1 },
	{ "bad version", "VERSION\t1\n", "", -1 },
	{ "empty line", "\n", "", -1 },
	{ "line too long", "OK\t1\tuser=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "", -1 },
};

static void test_dvproto_table(void **state)
{
	(void)state;
	char out[1024];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t step = 1; step <= 2; step++) {
			size_t st = step == 1 ? strlen(cases[i].in) : 1;	/* whole, then byte at a time */
			int rc = run(cases[i].in, st ? st : 1, out, sizeof out);
			if (rc != cases[i].rc || (rc == 0 && strcmp(out, cases[i].want)))
				fail_msg("%s (step %zu): rc %d out \"%s\"", cases[i].name, st, rc, out);
		}
	}
}

static void test_b64_and_plain(void **state)
{
	(void)state;
	char *o;
	size_t n;
	assert_int_equal(sasl_b64_decode("AGFsaWNlAHNlY3JldA==", 20, &o, &n), 0);
	assert_int_equal(n, 13);
	assert_memory_equal(o, "\0alice\0secret", 13);
	free(o);
	char *e = sasl_b64_encode("\0alice\0secret", 13);
	assert_string_equal(e, "AGFsaWNlAHNlY3JldA==");
	free(e);
	assert_int_equal(sasl_b64_decode("AGFsa", 5, &o, &n), -1);
	assert_int_equal(sasl_b64_decode("AG=s", 4, &o, &n), -1);
	char *z, *u, *p;
	assert_int_equal(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", &z, &u, &p), 0);
	assert_string_equal(z, "");
	assert_string_equal(u, "alice");
	assert_string_equal(p, "secret");
	free(z);
	free(u);
	free(p);
	assert_int_equal(sasl_plain_decode("YWxpY2U=", &z, &u, &p), -1);	/* no NULs */
}

static void test_passwdfile(void **state)
{
	(void)state;
	char path[] = "/tmp/test_sasl_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	struct crypt_data *cd = calloc(1, sizeof *cd);
	char salt6[CRYPT_GENSALT_OUTPUT_SIZE], salty[CRYPT_GENSALT_OUTPUT_SIZE];
	assert_non_null(crypt_gensalt_rn("$6$", 0, NULL, 0, salt6, sizeof salt6));
	assert_non_null(crypt_gensalt_rn("$y$", 0, NULL, 0, salty, sizeof salty));
	char sha[256], yes[256];
	snprintf(sha, sizeof sha, "%s", crypt_r("pw6", salt6, cd));
	snprintf(yes, sizeof yes, "%s", crypt_r("pwy", salty, cd));
	free(cd);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "# comment\n\nalice:{SHA512-CRYPT}%s:1000:1000::/home::\nbob:{PLAIN}plain pw\r\n"
		"carol:{CRYPT}%s\nalicex:{PLAIN}nope\ndan:{MD4}x\n", sha, yes);
	fclose(f);
	static const struct {
		const char *user, *pass;
		int found, match;
	} t[] = {
		{ "alice", "pw6", 1, 1 }, { "alice", "pw7", 1, 0 }, { "bob", "plain pw", 1, 1 },
		{ "bob", "plain", 1, 0 }, { "carol", "pwy", 1, 1 }, { "carol", "pwx", 1, 0 },
		{ "ali", "pw6", 0, 0 }, { "dan", "x", 1, -1 },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *h = NULL, *err = NULL;
		int r = sasl_passwdfile_lookup(path, t[i].user, &h, &err);
		if (r != t[i].found)
			fail_msg("%s: lookup %d", t[i].user, r);
		if (r == 1) {
			const char *e = NULL;
			int m = sasl_password_check(h, t[i].pass, &e);
			if (m != t[i].match)
				fail_msg("%s/%s: check %d", t[i].user, t[i].pass, m);
			free(h);
		}
	}
	char *h = NULL, *err = NULL;
	assert_int_equal(sasl_passwdfile_lookup("/nonexistent/passwd", "a", &h, &err), -1);
	assert_non_null(err);
	free(err);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dvproto_table),
		cmocka_unit_test(test_b64_and_plain),
		cmocka_unit_test(test_passwdfile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
