/*
 * smtp: the SMTP server-side wire format (RFC 5321, 3030, 6152, 6531,
 * 1870, 3461, 4954 parsing), no I/O.
 * Owns: splitting client bytes into command lines, parsing commands, paths
 * and ESMTP parameters, the DATA decoder (dot-unstuffing, end of data only
 * at <CRLF>.<CRLF>), BDAT chunk framing, and Postfix's
 * smtpd_forbid_bare_newline policy.
 * Leaves: sockets, timeouts, replies other than syntax errors, limits that
 * need session state (message size, recipient count) to mta/.
 *
 * A push parser (STYLE.md): smtp_parser_feed() appends bytes,
 * smtp_parser_next() returns one item at a time. Input is untrusted.
 *
 * The parser accepts UTF-8 in MAIL/RCPT paths and sets path.has_utf8; the
 * session refuses such a path unless MAIL FROM carried SMTPUTF8 (553 5.6.7).
 *
 * Content items are normalised to LF line ends: every CRLF becomes LF
 * (and under SMTP_BARE_NORMALIZE a bare LF stays LF). A bare CR not followed
 * by LF is content under NORMALIZE and a violation under REJECT.
 */
#ifndef SLUICE_PROTO_SMTP_H
#define SLUICE_PROTO_SMTP_H

#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT,
	SMTP_VERB_DATA, SMTP_VERB_BDAT, SMTP_VERB_RSET, SMTP_VERB_NOOP,
	SMTP_VERB_QUIT, SMTP_VERB_VRFY, SMTP_VERB_EXPN, SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS, SMTP_VERB_AUTH,
};
const char *smtp_verb_name(enum smtp_verb v);	/* "MAIL", ...; "UNKNOWN" */

/* Bare <LF> / bare <CR> handling, as Postfix's smtpd_forbid_bare_newline. */
enum smtp_bare_policy {
	SMTP_BARE_REJECT = 0,	/* reply 521 5.5.2 "Error: bare <LF> received", disconnect */
	SMTP_BARE_NORMALIZE,	/* bare LF ends a line like CRLF; end of data still only CRLF.CRLF */
};

enum smtp_body_type { SMTP_BODY_UNSET = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

/* DSN NOTIFY bits (RFC 3461) */
#define SMTP_NOTIFY_NEVER   1
#define SMTP_NOTIFY_SUCCESS 2
#define SMTP_NOTIFY_FAILURE 4
#define SMTP_NOTIFY_DELAY   8

/*
 * A parsed RFC 5321 path. Strings are NUL-terminated and borrowed (see
 * smtp_parser_next). addr is the mailbox without <> and without a source
 * route, local part as received (quoted if it was quoted); local is the
 * local part with quoting removed; domain is the domain or address literal
 * ("[192.0.2.1]", "[IPv6:...]"); all "" for the null path <>.
 */
struct smtp_path {
	const char *addr;
	const char *local;
	const char *domain;
	int is_null;		/* "<>" */
	int has_utf8;		/* contains non-ASCII (needs SMTPUTF8, RFC 6531) */
	int had_route;		/* "@a,@b:" source route was present and was stripped */
};

struct smtp_mail_params {
	long long size;		/* SIZE=, -1 if absent */
	enum smtp_body_type body;
	int smtputf8;
	const char *ret;	/* "FULL" / "HDRS" or NULL */
	const char *envid;	/* xtext as received, or NULL */
	const char *auth;	/* AUTH= as received, or NULL */
};

struct smtp_rcpt_params {
	unsigned notify;	/* SMTP_NOTIFY_* bits, 0 = not given */
	const char *orcpt;	/* ORCPT= as received ("rfc822;addr"), or NULL */
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *line;	/* whole command line without CRLF (for logging) */
	const char *arg;	/* text after the verb and one space ("" if none) */
	struct smtp_path path;		 /* MAIL, RCPT */
	struct smtp_mail_params mail;	 /* MAIL */
	struct smtp_rcpt_params rcpt;	 /* RCPT */
	unsigned long long bdat_size;	 /* BDAT */
	int bdat_last;			 /* BDAT ... LAST */
	const char *auth_mech;		 /* AUTH: mechanism as received */
	const char *auth_initial;	 /* AUTH: initial response as received, or NULL */
};

/*
 * Command parsing details (added with proto/smtp_cmd.c):
 * - The verb is the text before the first SP, matched case-insensitively.
 *   arg has trailing SP/HT removed; line is exactly as received.
 * - An empty line is BAD_COMMAND 500 5.5.2 "Error: bad syntax"; a line
 *   containing NUL is BAD_COMMAND 500 5.5.2 "Error: NUL character in command".
 * - MAIL/RCPT: "FROM:"/"TO:" may be followed by spaces (Postfix); the path
 *   must be in <>. RCPT TO:<Postmaster> (any case, no domain) is accepted
 *   with domain "" (RFC 5321 4.1.1.3). SIZE= saturates at LLONG_MAX. Bad
 *   parameter values are 501 5.5.4 ("Bad message size syntax", ...),
 *   unknown ones 555 5.5.4 "Unsupported option: X" (X sanitised: printable
 *   ASCII only).
 * - AUTH: "mechanism [initial-response]" split into auth_mech/auth_initial;
 *   decoding the response is the session's job.
 * - In the unquoted local part dots may be leading, trailing or doubled
 *   ("a..b@x", as Postfix accepts); path.local is then as received.
 */

enum smtp_item_kind {
	SMTP_ITEM_COMMAND,	/* .cmd: a syntactically valid command (verb may be UNKNOWN) */
	SMTP_ITEM_BAD_COMMAND,	/* syntax error: reply .code .dsn .text and carry on */
	SMTP_ITEM_DATA,		/* .data/.len: decoded message bytes (LF line ends) */
	SMTP_ITEM_DATA_END,	/* DATA: <CRLF>.<CRLF> seen; BDAT: this chunk fully consumed */
	SMTP_ITEM_LINE,		/* .data/.len: one raw line (after smtp_parser_expect_line) */
	SMTP_ITEM_FATAL,	/* protocol violation: reply .code .dsn .text, then disconnect */
};

struct smtp_item {
	enum smtp_item_kind kind;
	struct smtp_cmd cmd;	/* COMMAND */
	const char *data;	/* DATA, LINE */
	size_t len;
	int code;		/* BAD_COMMAND, FATAL: 3-digit reply code */
	const char *dsn;	/* "5.5.2" */
	const char *text;	/* "Error: bare <LF> received" */
	int bdat_last;		/* DATA_END after BDAT: the chunk had LAST */
};

enum smtp_next { SMTP_NEED_MORE = 0, SMTP_ITEM = 1, SMTP_ERROR = -1 };

struct smtp_parser_opts {
	size_t max_line_bytes;		/* smtpd_max_line_length for command lines; 0 = 2048 */
	enum smtp_bare_policy bare;	/* smtpd_forbid_bare_newline */
};

struct smtp_parser;
struct smtp_parser *smtp_parser_new(const struct smtp_parser_opts *o);
void smtp_parser_free(struct smtp_parser **p);

/* smtp_parser_feed - append len bytes (copied). */
void smtp_parser_feed(struct smtp_parser *p, const void *buf, size_t len);

/*
 * smtp_parser_next - the next item. Returns SMTP_ITEM and fills *item,
 * SMTP_NEED_MORE when more bytes are needed, SMTP_ERROR only after a FATAL
 * item was returned (the parser is then dead). Pointers in *item are
 * borrowed until the next call to smtp_parser_feed/next/discard/free.
 * In command mode a line longer than max_line_bytes is consumed up to its
 * end and reported as BAD_COMMAND 500 5.5.0 "Error: line too long".
 */
enum smtp_next smtp_parser_next(struct smtp_parser *p, struct smtp_item *item);

/*
 * Mode switches, called by the session after it accepted a command:
 * begin_data: after "354": decode message content until <CRLF>.<CRLF>,
 *   yielding DATA items (any number) then DATA_END; back to command mode.
 * begin_bdat: after accepting "BDAT n [LAST]": the next n bytes are content
 *   (CRLF -> LF, bare newline policy applied), yielding DATA items then
 *   DATA_END (bdat_last set); back to command mode. Also used to swallow
 *   the chunk of a BDAT the session refuses (it ignores the DATA items).
 *   A CR at the end of a chunk waits for the next chunk (CRLF split across
 *   chunks); it is forgotten at RSET/MAIL/HELO/EHLO/... and is a bare CR
 *   at the end of the LAST chunk. Under REJECT a bare CR/LF in a chunk
 *   gives FATAL only once the whole chunk is consumed, instead of DATA_END.
 * Content details: items are cut wherever the input was (at most 64 KiB
 *   of input per item); DATA items before a FATAL belong to a message the
 *   session must discard. Under NORMALIZE a lone "." line that cannot end
 *   data (it began or ended with a bare LF) is kept as "." content; the
 *   end of data is only <CRLF>.<CRLF> with the CRLF ending the DATA
 *   command counting only if it was a real CRLF.
 * expect_line: the next CRLF-terminated line is returned raw as LINE
 *   (AUTH responses, RFC 4954), without its line end. A line longer than
 *   max_line_bytes gives BAD_COMMAND 500 5.5.0 "Error: line too long"
 *   instead (the session aborts the exchange). Back to command mode either way.
 */
void smtp_parser_begin_data(struct smtp_parser *p);
void smtp_parser_begin_bdat(struct smtp_parser *p, unsigned long long n, int last);
void smtp_parser_expect_line(struct smtp_parser *p);

/* smtp_parser_buffered - bytes fed but not yet consumed (pipelining checks). */
size_t smtp_parser_buffered(const struct smtp_parser *p);
/* smtp_parser_discard - drop buffered input (after STARTTLS: CVE-2011-0411). */
void smtp_parser_discard(struct smtp_parser *p);

/*
 * smtp_parse_path - parse "<...>" (RFC 5321 4.1.2 Path / Reverse-path) at
 * s; on success returns the number of bytes used and fills *out with
 * strings allocated in *storage_out (one block, caller frees). Returns -1
 * on a syntax error with *err_out (static). utf8_ok: allow RFC 6531 UTF-8.
 * allow_null: "<>" allowed (reverse-path). Exposed for tests and tools.
 */
int smtp_parse_path(const char *s, int allow_null, int utf8_ok, struct smtp_path *out,
		    char **storage_out, const char **err_out);

#endif
