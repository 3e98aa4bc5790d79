/*
 * smtp_cmd: one SMTP command line -> struct smtp_cmd (RFC 5321 4.1,
 * ESMTP parameters of RFC 1870, 6152, 3030, 6531, 3461, 4954).
 * Framing and the DATA decoder are in proto/smtp.c; paths in smtp_path.c.
 * Reply texts follow Postfix smtpd so clients see familiar errors.
 */
#include "proto/smtp_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define ENVID_MAX_BYTES 100	/* RFC 3461 4.4 */
#define ORCPT_MAX_BYTES 500	/* RFC 3461 4.2 */
#define AUTH_MECH_MAX_BYTES 20	/* RFC 4422 3.1 */

static const struct {
	const char *name;
	enum smtp_verb verb;
} verb_tab[] = {
	{ "HELO", SMTP_VERB_HELO }, { "EHLO", SMTP_VERB_EHLO },
	{ "MAIL", SMTP_VERB_MAIL }, { "RCPT", SMTP_VERB_RCPT },
	{ "DATA", SMTP_VERB_DATA }, { "BDAT", SMTP_VERB_BDAT },
	{ "RSET", SMTP_VERB_RSET }, { "NOOP", SMTP_VERB_NOOP },
	{ "QUIT", SMTP_VERB_QUIT }, { "VRFY", SMTP_VERB_VRFY },
	{ "EXPN", SMTP_VERB_EXPN }, { "HELP", SMTP_VERB_HELP },
	{ "STARTTLS", SMTP_VERB_STARTTLS }, { "AUTH", SMTP_VERB_AUTH },
};
#define NVERBS (sizeof(verb_tab) / sizeof(verb_tab[0]))

const char *smtp_verb_name(enum smtp_verb v)
{
	for (size_t i = 0; i < NVERBS; i++)
		if (verb_tab[i].verb == v)
			return verb_tab[i].name;
	return "UNKNOWN";
}

static enum smtp_verb verb_lookup(const char *s, size_t n)
{
	for (size_t i = 0; i < NVERBS; i++)
		if (strlen(verb_tab[i].name) == n && ascii_strncasecmp(s, verb_tab[i].name, n) == 0)
			return verb_tab[i].verb;
	return SMTP_VERB_UNKNOWN;
}

static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }
static int is_alnum(unsigned c) { return is_digit(c) || ((c | 32) >= 'a' && (c | 32) <= 'z'); }
static int is_xdigit(unsigned c) { return is_digit(c) || ((c | 32) >= 'a' && (c | 32) <= 'f'); }

static void set_bad(struct smtp_item *it, int code, const char *dsn, const char *text)
{
	it->kind = SMTP_ITEM_BAD_COMMAND;
	it->code = code;
	it->dsn = dsn;
	it->text = text;
}

/* xtext_ok - RFC 3461 4 xtext (lower-case hex tolerated, UTF-8 passed), 1..max bytes. */
static int xtext_ok(const char *v, size_t max)
{
	if (!v || !*v || strlen(v) > max)
		return 0;
	for (; *v; v++) {
		unsigned c = (unsigned char)*v;
		if (c == '+') {
			if (!is_xdigit((unsigned char)v[1]) || !is_xdigit((unsigned char)v[2]))
				return 0;
			v += 2;
		} else if (c < 33 || c == '=' || c == 127) {
			return 0;
		}
	}
	return 1;
}

/* Parameter handlers: NULL on success, else the 501 5.5.4 reply text. */
typedef const char *param_fn(struct smtp_cmd *c, const char *v);

static const char *p_size(struct smtp_cmd *c, const char *v)
{
	long long n = 0;

	if (!v || !*v)
		return "Bad message size syntax";
	for (; *v; v++) {
		if (!is_digit((unsigned char)*v))
			return "Bad message size syntax";
		n = n >= (LLONG_MAX - 9) / 10 ? LLONG_MAX : n * 10 + (*v - '0');
	}
	c->mail.size = n;
	return NULL;
}

static const char *p_body(struct smtp_cmd *c, const char *v)
{
	if (v && ascii_strcasecmp(v, "7BIT") == 0)
		c->mail.body = SMTP_BODY_7BIT;
	else if (v && ascii_strcasecmp(v, "8BITMIME") == 0)
		c->mail.body = SMTP_BODY_8BITMIME;
	else if (v && ascii_strcasecmp(v, "BINARYMIME") == 0)
		c->mail.body = SMTP_BODY_BINARYMIME;
	else
		return "Bad BODY keyword syntax";
	return NULL;
}

static const char *p_smtputf8(struct smtp_cmd *c, const char *v)
{
	if (v)
		return "Bad SMTPUTF8 parameter syntax";
	c->mail.smtputf8 = 1;
	return NULL;
}

static const char *p_ret(struct smtp_cmd *c, const char *v)
{
	if (v && ascii_strcasecmp(v, "FULL") == 0)
		c->mail.ret = "FULL";
	else if (v && ascii_strcasecmp(v, "HDRS") == 0)
		c->mail.ret = "HDRS";
	else
		return "Bad RET parameter syntax";
	return NULL;
}

static const char *p_envid(struct smtp_cmd *c, const char *v)
{
	if (!xtext_ok(v, ENVID_MAX_BYTES))
		return "Bad ENVID parameter syntax";
	c->mail.envid = v;
	return NULL;
}

/* RFC 4954 5: AUTH=<> or xtext. */
static const char *p_auth(struct smtp_cmd *c, const char *v)
{
	if (!v || (strcmp(v, "<>") != 0 && !xtext_ok(v, ORCPT_MAX_BYTES)))
		return "Bad AUTH parameter syntax";
	c->mail.auth = v;
	return NULL;
}

/* RFC 3461 4.1: "NEVER" or a list of SUCCESS, FAILURE, DELAY. */
static const char *p_notify(struct smtp_cmd *c, const char *v)
{
	static const char *names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	unsigned bits = 0;
	size_t n, k;

	if (!v)
		return "Bad NOTIFY parameter syntax";
	for (;;) {
		n = strcspn(v, ",");
		for (k = 0; k < 4; k++)
			if (strlen(names[k]) == n && ascii_strncasecmp(v, names[k], n) == 0)
				break;
		if (k == 4)
			return "Bad NOTIFY parameter syntax";
		bits |= 1u << k;
		if (v[n] == 0)
			break;
		v += n + 1;
	}
	if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
		return "Bad NOTIFY parameter syntax";
	c->rcpt.notify = bits;
	return NULL;
}

/* RFC 3461 4.2: addr-type ";" xtext. */
static const char *p_orcpt(struct smtp_cmd *c, const char *v)
{
	const char *semi = v ? strchr(v, ';') : NULL;

	if (!semi || semi == v || strlen(v) > ORCPT_MAX_BYTES || !xtext_ok(semi + 1, ORCPT_MAX_BYTES))
		return "Bad ORCPT parameter syntax";
	for (const char *t = v; t < semi; t++)
		if (!is_alnum((unsigned char)*t) && *t != '-')
			return "Bad ORCPT parameter syntax";
	c->rcpt.orcpt = v;
	return NULL;
}

static const struct {
	const char *name;
	enum smtp_verb verb;
	param_fn *fn;
} param_tab[] = {
	{ "SIZE", SMTP_VERB_MAIL, p_size },
	{ "BODY", SMTP_VERB_MAIL, p_body },
	{ "SMTPUTF8", SMTP_VERB_MAIL, p_smtputf8 },
	{ "RET", SMTP_VERB_MAIL, p_ret },
	{ "ENVID", SMTP_VERB_MAIL, p_envid },
	{ "AUTH", SMTP_VERB_MAIL, p_auth },
	{ "NOTIFY", SMTP_VERB_RCPT, p_notify },
	{ "ORCPT", SMTP_VERB_RCPT, p_orcpt },
};

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static int keyword_ok(const char *k)
{
	if (!is_alnum((unsigned char)*k))
		return 0;
	for (; *k; k++)
		if (!is_alnum((unsigned char)*k) && *k != '-')
			return 0;
	return 1;
}

/* unsupported - 555 5.5.4 "Unsupported option: tok" with tok made printable. */
static void unsupported(struct smtp_cmd_ws *ws, const char *tok, struct smtp_item *it)
{
	sbuf_reset(&ws->text);
	sbuf_adds(&ws->text, "Unsupported option: ");
	for (; *tok; tok++)
		sbuf_addc(&ws->text, *tok > 32 && *tok < 127 ? *tok : '?');
	set_bad(it, 555, "5.5.4", ws->text.buf);
}

/* one_param - apply one "KEYWORD[=value]" token (cut in place) to it->cmd. */
static int one_param(struct smtp_cmd_ws *ws, char *tok, const char *syntax, struct smtp_item *it)
{
	char *eq = strchr(tok, '=');
	const char *err;
	size_t k;

	if (eq)
		*eq = 0;
	if (!keyword_ok(tok)) {
		set_bad(it, 501, "5.5.4", syntax);
		return -1;
	}
	for (k = 0; k < sizeof(param_tab) / sizeof(param_tab[0]); k++)
		if (param_tab[k].verb == it->cmd.verb && ascii_strcasecmp(tok, param_tab[k].name) == 0)
			break;
	if (k == sizeof(param_tab) / sizeof(param_tab[0])) {
		if (eq)
			*eq = '=';
		unsupported(ws, tok, it);
		return -1;
	}
	if ((err = param_tab[k].fn(&it->cmd, eq ? eq + 1 : NULL)) != NULL) {
		set_bad(it, 501, "5.5.4", err);
		return -1;
	}
	return 0;
}

/* parse_params - SP-separated ESMTP parameters in s (cut in place). */
static void parse_params(struct smtp_cmd_ws *ws, char *s, const char *syntax, struct smtp_item *it)
{
	char *tok;

	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == 0)
			return;
		tok = s;
		while (*s && *s != ' ')
			s++;
		if (*s)
			*s++ = 0;
		if (one_param(ws, tok, syntax, it) < 0)
			return;
	}
}

/* is_postmaster - "<Postmaster>" without domain, RFC 5321 4.1.1.3. */
static int is_postmaster(struct smtp_cmd_ws *ws, const char *a, struct smtp_path *path)
{
	if (ascii_strncasecmp(a, "<postmaster>", 12) != 0 || (a[12] && a[12] != ' '))
		return 0;
	free(ws->path_storage);
	ws->path_storage = xmalloc(2 * 11 + 1);
	memcpy(ws->path_storage, a + 1, 10);
	ws->path_storage[10] = 0;
	memcpy(ws->path_storage + 11, a + 1, 10);
	ws->path_storage[21] = 0;
	ws->path_storage[22] = 0;
	memset(path, 0, sizeof(*path));
	path->addr = ws->path_storage;
	path->local = ws->path_storage + 11;
	path->domain = ws->path_storage + 22;
	return 1;
}

/*
 * parse_mail_rcpt - "FROM:" / "TO:" [SP...] path [SP params].
 * Postfix-like leniency: spaces after the colon; the path must be in <>.
 */
static void parse_mail_rcpt(struct smtp_cmd_ws *ws, struct smtp_item *it)
{
	int mail = it->cmd.verb == SMTP_VERB_MAIL;
	const char *kw = mail ? "FROM:" : "TO:";
	const char *syntax = mail ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>";
	char *a = ws->work.buf;
	const char *err;
	int n;

	if (ascii_strncasecmp(a, kw, strlen(kw)) != 0) {
		set_bad(it, 501, "5.5.4", syntax);
		return;
	}
	a += strlen(kw);
	while (*a == ' ')
		a++;
	if (*a == 0) {
		set_bad(it, 501, "5.5.4", syntax);
		return;
	}
	n = smtp_parse_path(a, mail, 1, &it->cmd.path, &ws->path_storage, &err);
	if (n < 0 && !mail && is_postmaster(ws, a, &it->cmd.path))
		n = 12;
	if (n < 0 || (a[n] && a[n] != ' ')) {
		memset(&it->cmd.path, 0, sizeof(it->cmd.path));
		if (mail)
			set_bad(it, 501, "5.1.7", "Bad sender address syntax");
		else
			set_bad(it, 501, "5.1.3", "Bad recipient address syntax");
		return;
	}
	parse_params(ws, a + n, syntax, it);
}

/* parse_bdat - RFC 3030: chunk-size [SP "LAST"]. */
static void parse_bdat(struct smtp_cmd_ws *ws, struct smtp_item *it)
{
	const char *a = ws->work.buf;
	unsigned long long n = 0;
	size_t digits = 0;

	for (; is_digit((unsigned char)*a); a++, digits++) {
		unsigned d = (unsigned)(*a - '0');
		if (n > (ULLONG_MAX - d) / 10) {
			set_bad(it, 501, "5.5.4", "Syntax: BDAT count [LAST]");
			return;
		}
		n = n * 10 + d;
	}
	while (*a == ' ')
		a++;
	if (ascii_strcasecmp(a, "LAST") == 0) {
		it->cmd.bdat_last = 1;
		a += 4;
	}
	if (digits == 0 || *a != 0) {
		set_bad(it, 501, "5.5.4", "Syntax: BDAT count [LAST]");
		return;
	}
	it->cmd.bdat_size = n;
}

/* parse_auth - RFC 4954 4: mechanism [SP initial-response]; split only. */
static void parse_auth(struct smtp_cmd_ws *ws, struct smtp_item *it)
{
	char *a = ws->work.buf, *sp = strchr(a, ' ');
	size_t n;

	if (sp) {
		*sp++ = 0;
		while (*sp == ' ')
			sp++;
	}
	n = strlen(a);
	if (n == 0 || n > AUTH_MECH_MAX_BYTES || (sp && (*sp == 0 || strchr(sp, ' ')))) {
		set_bad(it, 501, "5.5.4", "Syntax: AUTH mechanism");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_alnum((unsigned char)a[i]) && a[i] != '-' && a[i] != '_') {
			set_bad(it, 501, "5.5.4", "Syntax: AUTH mechanism");
			return;
		}
	}
	it->cmd.auth_mech = a;
	it->cmd.auth_initial = sp;
}

/* check_arg - verbs that take no argument, or require one. */
static void check_arg(struct smtp_item *it, int want)
{
	static const struct {
		enum smtp_verb verb;
		const char *text;
	} tab[] = {
		{ SMTP_VERB_DATA, "Syntax: DATA" }, { SMTP_VERB_RSET, "Syntax: RSET" },
		{ SMTP_VERB_QUIT, "Syntax: QUIT" }, { SMTP_VERB_STARTTLS, "Syntax: STARTTLS" },
		{ SMTP_VERB_HELO, "Syntax: HELO hostname" }, { SMTP_VERB_EHLO, "Syntax: EHLO hostname" },
		{ SMTP_VERB_VRFY, "Syntax: VRFY address" }, { SMTP_VERB_EXPN, "Syntax: EXPN mailing-list" },
	};
	int has = *it->cmd.arg != 0;

	if (has == want)
		return;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (tab[i].verb == it->cmd.verb)
			set_bad(it, 501, "5.5.4", tab[i].text);
}

void smtp_cmd_ws_init(struct smtp_cmd_ws *ws)
{
	sbuf_init(&ws->line);
	sbuf_init(&ws->arg);
	sbuf_init(&ws->work);
	sbuf_init(&ws->text);
	ws->path_storage = NULL;
}

void smtp_cmd_ws_free(struct smtp_cmd_ws *ws)
{
	sbuf_free(&ws->line);
	sbuf_free(&ws->arg);
	sbuf_free(&ws->work);
	sbuf_free(&ws->text);
	free(ws->path_storage);
	ws->path_storage = NULL;
}

/* split - copy line; verb = text before the first SP; arg without trailing blanks. */
static void split(struct smtp_cmd_ws *ws, const char *raw, size_t len, struct smtp_item *it)
{
	size_t vlen = 0, alen;
	const char *arg;

	while (vlen < len && raw[vlen] != ' ')
		vlen++;
	arg = vlen < len ? raw + vlen + 1 : raw + len;
	alen = (size_t)(raw + len - arg);
	while (alen > 0 && (arg[alen - 1] == ' ' || arg[alen - 1] == '\t'))
		alen--;
	sbuf_reset(&ws->arg);
	sbuf_add(&ws->arg, arg, alen);
	sbuf_reset(&ws->work);
	sbuf_add(&ws->work, arg, alen);
	it->cmd.arg = ws->arg.buf;
	it->cmd.verb = verb_lookup(raw, vlen);
}

void smtp_cmd_parse(struct smtp_cmd_ws *ws, const char *raw, size_t len, struct smtp_item *it)
{
	memset(it, 0, sizeof(*it));
	it->kind = SMTP_ITEM_COMMAND;
	it->cmd.mail.size = -1;
	free(ws->path_storage);
	ws->path_storage = NULL;
	sbuf_reset(&ws->line);
	sbuf_add(&ws->line, raw, len);
	it->cmd.line = ws->line.buf;
	it->cmd.arg = "";
	if (len == 0) {
		set_bad(it, 500, "5.5.2", "Error: bad syntax");
		return;
	}
	if (memchr(raw, 0, len)) {
		set_bad(it, 500, "5.5.2", "Error: NUL character in command");
		return;
	}
	split(ws, raw, len, it);
	switch (it->cmd.verb) {
	case SMTP_VERB_DATA: case SMTP_VERB_RSET: case SMTP_VERB_QUIT: case SMTP_VERB_STARTTLS:
		check_arg(it, 0);
		return;
	case SMTP_VERB_HELO: case SMTP_VERB_EHLO: case SMTP_VERB_VRFY: case SMTP_VERB_EXPN:
		check_arg(it, 1);
		return;
	case SMTP_VERB_MAIL: case SMTP_VERB_RCPT:
		parse_mail_rcpt(ws, it);
		return;
	case SMTP_VERB_BDAT:
		parse_bdat(ws, it);
		return;
	case SMTP_VERB_AUTH:
		parse_auth(ws, it);
		return;
	default:
		return;
	}
}
