/*
 * smtp_reply: SMTP server replies as a client reads them (RFC 5321 4.2,
 * RFC 2034 enhanced status codes), no I/O.
 * Owns: splitting server bytes into lines, joining "250-" continuation
 * lines into one reply, checking that every line of a reply has the same
 * code, and picking out the enhanced status code of the first line.
 * Leaves: sockets, deadlines, what a reply means (mta/smtp_client.c).
 *
 * A push parser (STYLE.md): smtp_reply_feed() appends bytes,
 * smtp_reply_next() returns one whole reply at a time. Input is untrusted:
 * a line longer than SMTP_REPLY_MAX_LINE, a reply of more than
 * SMTP_REPLY_MAX_LINES lines, a line that does not start with three digits
 * (first 2..5) followed by SP, '-' or the end of line, or a continuation
 * line with a different code is an error, after which the parser is dead.
 * Lines end in CRLF; a bare LF is accepted as well (CR stripped).
 */
#ifndef SLUICE_PROTO_SMTP_REPLY_H
#define SLUICE_PROTO_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_MAX_LINE 4096
#define SMTP_REPLY_MAX_LINES 256

struct smtp_reply {
	int code;		/* 200..599 */
	char dsn[16];		/* "5.1.1" from the first line, or "" */
	const char *text;	/* each line's text after "NNN-"/"NNN ", lines joined
				 * with '\n'; borrowed, see smtp_reply_next */
	size_t nlines;
};

enum smtp_reply_next { SMTP_REPLY_NEED_MORE = 0, SMTP_REPLY_ITEM = 1, SMTP_REPLY_ERROR = -1 };

struct smtp_reply_parser;
struct smtp_reply_parser *smtp_reply_parser_new(void);
void smtp_reply_parser_free(struct smtp_reply_parser **p);
/* smtp_reply_feed - append len bytes (copied). */
void smtp_reply_feed(struct smtp_reply_parser *p, const void *buf, size_t len);
/*
 * smtp_reply_next - the next whole reply into *out. SMTP_REPLY_ITEM: out is
 * filled; out->text is borrowed until the next feed/next/free call.
 * SMTP_REPLY_NEED_MORE: feed more. SMTP_REPLY_ERROR: garbage (*err_out, if
 * non-NULL, gets a static reason); every later call returns ERROR too.
 * out->text holds the full text of each line (an enhanced code stays in it).
 */
int smtp_reply_next(struct smtp_reply_parser *p, struct smtp_reply *out, const char **err_out);
/* smtp_reply_buffered - bytes fed but not yet consumed (e.g. to detect pipelining abuse). */
size_t smtp_reply_buffered(const struct smtp_reply_parser *p);

#endif
