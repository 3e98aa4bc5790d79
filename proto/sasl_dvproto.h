/*
 * sasl_dvproto: the server side of Dovecot's auth client protocol
 * (doc: "Dovecot Authentication Protocol", version 1.x) as a push parser:
 * bytes from the auth socket -> one item per LF-terminated line
 * (VERSION, MECH, SPID, CUID, COOKIE, DONE, OK, FAIL, CONT).
 * Owns: line framing, the tab-separated fields, Dovecot's \001 escapes,
 * the line length cap. Leaves the socket and the conversation to sasl.c.
 * Input is untrusted: no field is used before it was checked.
 */
#ifndef SLUICE_PROTO_SASL_DVPROTO_H
#define SLUICE_PROTO_SASL_DVPROTO_H

#include <stddef.h>

enum sasl_dvproto_kind {
	SASL_DV_VERSION,	/* major, minor */
	SASL_DV_MECH,		/* name = mechanism, args = its flags ("plaintext", ...) */
	SASL_DV_SPID, SASL_DV_CUID, SASL_DV_COOKIE,	/* name = the value */
	SASL_DV_DONE,
	SASL_DV_OK,		/* id; user = "user=" value or NULL; args = all key[=value] fields */
	SASL_DV_FAIL,		/* id; user, reason ("reason="), temp ("temp" flag) */
	SASL_DV_CONT,		/* id; name = the base64 challenge */
	SASL_DV_OTHER,		/* an unknown command (name = it); to be ignored */
};

#define SASL_DV_MAX_ARGS 32

struct sasl_dvproto_item {
	enum sasl_dvproto_kind kind;
	unsigned long major, minor;
	unsigned long id;
	const char *name;
	const char *user;
	const char *reason;
	int temp;
	const char *args[SASL_DV_MAX_ARGS];	/* unescaped fields after the id (or the name) */
	size_t nargs;
};

enum sasl_dvproto_next { SASL_DV_NEED_MORE = 0, SASL_DV_ITEM = 1, SASL_DV_ERROR = -1 };

struct sasl_dvproto;

/* max_line_bytes: longest accepted line (0 = 16384). */
struct sasl_dvproto *sasl_dvproto_new(size_t max_line_bytes);
void sasl_dvproto_free(struct sasl_dvproto **p);
/* sasl_dvproto_feed - append len bytes (copied). */
void sasl_dvproto_feed(struct sasl_dvproto *p, const void *buf, size_t len);
/*
 * sasl_dvproto_next - the next item. SASL_DV_ITEM fills *item (pointers
 * borrowed until the next feed/next/free); SASL_DV_NEED_MORE; SASL_DV_ERROR
 * with *err_out (static text) for a malformed line (too long, a bad number,
 * a missing field). After an error the parser stays in error.
 */
enum sasl_dvproto_next sasl_dvproto_next(struct sasl_dvproto *p, struct sasl_dvproto_item *item,
					 const char **err_out);

#endif
