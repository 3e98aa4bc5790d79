/*
 * policy: the Postfix policy delegation protocol (SMTPD_POLICY_README),
 * both directions, no I/O.
 * Owns: framing ("name=value" lines ending in LF, a message ends with an
 * empty line), limits, and building requests and replies.
 * Leaves: sockets, timeouts and what attributes mean to the daemons
 * (policyd/) and the MTA's policy client (mta/).
 *
 * The same format carries requests (MTA -> policy server) and replies
 * (server -> MTA: "action=..."), so one push parser serves both sides.
 * Input is untrusted: a line without "=", an empty or odd attribute name,
 * a NUL byte, an oversized line or message is an ERROR (the connection is
 * then closed without a reply, as Postfix expects); CR before LF is
 * tolerated.
 */
#ifndef SLUICE_PROTO_POLICY_H
#define SLUICE_PROTO_POLICY_H

#include <stddef.h>
#include "lib/util.h"

#define POLICY_MAX_LINE_BYTES 4096	/* one attribute line, without LF */
#define POLICY_MAX_MSG_BYTES 65536	/* one whole request or reply */
#define POLICY_MAX_ATTRS 128

struct policy_attr {
	const char *name;
	const char *value;
};

/* One request or reply; attributes in arrival order (names may repeat). */
struct policy_msg {
	size_t n;
	const struct policy_attr *attr;
};

enum policy_next { POLICY_NEED_MORE = 0, POLICY_ITEM = 1, POLICY_ERROR = -1 };

struct policy_parser;
struct policy_parser *policy_parser_new(void);
void policy_parser_free(struct policy_parser **p);

/* policy_parser_feed - append len bytes (copied). */
void policy_parser_feed(struct policy_parser *p, const void *buf, size_t len);

/*
 * policy_parser_next - the next complete message. POLICY_ITEM fills *out;
 * its strings are borrowed until the next feed/next/free. POLICY_ERROR is
 * sticky; policy_parser_error() says why (static or parser-owned string).
 * An empty line with no attributes before it is ignored (keep-alive).
 */
enum policy_next policy_parser_next(struct policy_parser *p, struct policy_msg *out);
const char *policy_parser_error(const struct policy_parser *p);
/* policy_parser_buffered - bytes fed and not yet consumed. */
size_t policy_parser_buffered(const struct policy_parser *p);

/* policy_msg_get - value of the first attribute called name, or NULL. */
const char *policy_msg_get(const struct policy_msg *m, const char *name);

/*
 * policy_build_attr - append "name=value\n"; CR, LF and NUL in value are
 * replaced by spaces so the message stays well-formed. End a message with
 * policy_build_end ("\n").
 */
void policy_build_attr(struct sbuf *b, const char *name, const char *value);
void policy_build_end(struct sbuf *b);
/* policy_build_reply - "action=ACTION\n\n". */
void policy_build_reply(struct sbuf *b, const char *action);

#endif
