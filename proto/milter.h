/*
 * milter: the Sendmail milter protocol, version 6, on the wire; no I/O.
 * Owns: packet framing, every MTA command and filter reply byte, option
 * negotiation (including v6 per-stage macro lists), the action/step/stage
 * constants, and which step bits govern sending a command and awaiting
 * its reply.
 * Leaves: sockets, timeouts, retries, default actions, the order of
 * commands in a session, macro values and the meaning of replies to
 * mta/ (MTA side) and to the filter daemons (filter side).
 *
 * Sources: Todd Vierling's "The Sendmail Milter Protocol, Version 2" and
 * milter-protocol-extras.txt (v6); constant values as in libmilter's
 * mfdef.h (Sendmail 8.17), which this module does not include.
 *
 * Wire format: every packet in either direction is a 4-byte big-endian
 * length N (N >= 1, counting the command byte), one command byte, then
 * N-1 data bytes. Integers are big-endian. A string is NUL-terminated
 * inside the packet; a "string array" is consecutive NUL-terminated
 * strings up to the end of the packet.
 *
 * Input is untrusted: every length is checked before use, a packet longer
 * than the parser's maximum is an error before any of its data is
 * buffered, and a malformed packet is an error with a reason, never a
 * crash.
 */
#ifndef SLUICE_PROTO_MILTER_H
#define SLUICE_PROTO_MILTER_H

#include <stddef.h>
#include <stdint.h>

struct sbuf;

#define MILTER_PROT_VERSION	6	/* protocol version we speak */

/*
 * Body chunks ('B', 'b') carry at most this many bytes (libmilter's
 * MILTER_CHUNK_SIZE); the builders split longer bodies.
 */
#define MILTER_BODY_CHUNK_MAX	65535

/*
 * Default cap on N (command byte + data) for the parser: a full body chunk
 * is N = 65536; the rest is slack for long header values and replies.
 */
#define MILTER_MAX_PACKET_DEFAULT	(65536 + 4096)

/* MTA -> filter commands (libmilter SMFIC_*). */
#define MILTER_SMFIC_ABORT	'A'	/* abort message; no reply */
#define MILTER_SMFIC_BODY	'B'	/* body chunk, raw bytes */
#define MILTER_SMFIC_CONNECT	'C'	/* connection information */
#define MILTER_SMFIC_MACRO	'D'	/* macro definitions; no reply */
#define MILTER_SMFIC_BODYEOB	'E'	/* end of body (may carry a last chunk) */
#define MILTER_SMFIC_HELO	'H'	/* HELO/EHLO name */
#define MILTER_SMFIC_QUIT_NC	'K'	/* quit, connection will be reused; no reply */
#define MILTER_SMFIC_HEADER	'L'	/* one header: name, value */
#define MILTER_SMFIC_MAIL	'M'	/* MAIL FROM: sender, ESMTP args */
#define MILTER_SMFIC_EOH	'N'	/* end of headers */
#define MILTER_SMFIC_OPTNEG	'O'	/* option negotiation */
#define MILTER_SMFIC_QUIT	'Q'	/* quit; no reply */
#define MILTER_SMFIC_RCPT	'R'	/* RCPT TO: recipient, ESMTP args */
#define MILTER_SMFIC_DATA	'T'	/* DATA */
#define MILTER_SMFIC_UNKNOWN	'U'	/* unknown SMTP command */

/* Filter -> MTA replies (libmilter SMFIR_*). */
#define MILTER_SMFIR_ADDRCPT	'+'	/* add recipient */
#define MILTER_SMFIR_DELRCPT	'-'	/* delete recipient */
#define MILTER_SMFIR_ADDRCPT_PAR '2'	/* add recipient with ESMTP args */
#define MILTER_SMFIR_SHUTDOWN	'4'	/* 421, close the SMTP session */
#define MILTER_SMFIR_ACCEPT	'a'	/* accept (rest of message/connection) */
#define MILTER_SMFIR_REPLBODY	'b'	/* replace body (one chunk of the new body) */
#define MILTER_SMFIR_CONTINUE	'c'	/* continue */
#define MILTER_SMFIR_DISCARD	'd'	/* accept and discard the message */
#define MILTER_SMFIR_CHGFROM	'e'	/* change envelope sender */
#define MILTER_SMFIR_CONN_FAIL	'f'	/* cause a connection failure */
#define MILTER_SMFIR_ADDHEADER	'h'	/* append header */
#define MILTER_SMFIR_INSHEADER	'i'	/* insert header at index */
#define MILTER_SMFIR_SETSYMLIST	'l'	/* set macro list for a stage */
#define MILTER_SMFIR_CHGHEADER	'm'	/* change/delete header */
#define MILTER_SMFIR_PROGRESS	'p'	/* still working, keep waiting */
#define MILTER_SMFIR_QUARANTINE	'q'	/* quarantine (reason) */
#define MILTER_SMFIR_REJECT	'r'	/* reject (5xx) */
#define MILTER_SMFIR_SKIP	's'	/* skip further events of this kind */
#define MILTER_SMFIR_TEMPFAIL	't'	/* tempfail (4xx) */
#define MILTER_SMFIR_REPLYCODE	'y'	/* custom SMTP reply */
#define MILTER_SMFIR_OPTNEG	'O'	/* option negotiation reply */

/* Address families in 'C' (libmilter SMFIA_*). */
#define MILTER_SMFIA_UNKNOWN	'U'	/* no port, no address follow */
#define MILTER_SMFIA_UNIX	'L'
#define MILTER_SMFIA_INET	'4'
#define MILTER_SMFIA_INET6	'6'

/* Action bits: what the filter may do (libmilter SMFIF_*). */
#define MILTER_SMFIF_ADDHDRS	0x00000001u	/* add headers */
#define MILTER_SMFIF_CHGBODY	0x00000002u	/* replace body */
#define MILTER_SMFIF_ADDRCPT	0x00000004u	/* add recipients */
#define MILTER_SMFIF_DELRCPT	0x00000008u	/* delete recipients */
#define MILTER_SMFIF_CHGHDRS	0x00000010u	/* change/delete headers */
#define MILTER_SMFIF_QUARANTINE	0x00000020u	/* quarantine */
#define MILTER_SMFIF_CHGFROM	0x00000040u	/* change envelope sender */
#define MILTER_SMFIF_ADDRCPT_PAR 0x00000080u	/* add recipients with args */
#define MILTER_SMFIF_SETSYMLIST	0x00000100u	/* choose macro lists */
#define MILTER_SMFIF_ALL	0x000001FFu	/* libmilter SMFI_CURR_ACTS */

/* Protocol step bits (libmilter SMFIP_*). */
#define MILTER_SMFIP_NOCONNECT	0x00000001u	/* don't send 'C' */
#define MILTER_SMFIP_NOHELO	0x00000002u	/* don't send 'H' */
#define MILTER_SMFIP_NOMAIL	0x00000004u	/* don't send 'M' */
#define MILTER_SMFIP_NORCPT	0x00000008u	/* don't send 'R' */
#define MILTER_SMFIP_NOBODY	0x00000010u	/* don't send 'B' */
#define MILTER_SMFIP_NOHDRS	0x00000020u	/* don't send 'L' */
#define MILTER_SMFIP_NOEOH	0x00000040u	/* don't send 'N' */
#define MILTER_SMFIP_NR_HDR	0x00000080u	/* no reply to 'L' */
#define MILTER_SMFIP_NOUNKNOWN	0x00000100u	/* don't send 'U' */
#define MILTER_SMFIP_NODATA	0x00000200u	/* don't send 'T' */
#define MILTER_SMFIP_SKIP	0x00000400u	/* MTA understands 's' */
#define MILTER_SMFIP_RCPT_REJ	0x00000800u	/* also send rejected RCPTs */
#define MILTER_SMFIP_NR_CONN	0x00001000u	/* no reply to 'C' */
#define MILTER_SMFIP_NR_HELO	0x00002000u	/* no reply to 'H' */
#define MILTER_SMFIP_NR_MAIL	0x00004000u	/* no reply to 'M' */
#define MILTER_SMFIP_NR_RCPT	0x00008000u	/* no reply to 'R' */
#define MILTER_SMFIP_NR_DATA	0x00010000u	/* no reply to 'T' */
#define MILTER_SMFIP_NR_UNKN	0x00020000u	/* no reply to 'U' */
#define MILTER_SMFIP_NR_EOH	0x00040000u	/* no reply to 'N' */
#define MILTER_SMFIP_NR_BODY	0x00080000u	/* no reply to 'B' */
/*
 * HDR_LEADSPC: header values travel with their leading space. Without it
 * the MTA removes one space after "Name:" in 'L' values and inserts one
 * before values from 'h'/'i'/'m'; with it, values are exact both ways.
 * This codec never adds or strips spaces: that is the caller's business.
 */
#define MILTER_SMFIP_HDR_LEADSPC 0x00100000u
#define MILTER_SMFIP_ALL	0x001FFFFFu	/* libmilter SMFI_CURR_PROT */
/* Larger-packet negotiation (libmilter _FFR_MDS_NEGOTIATE); raise max_packet to use. */
#define MILTER_SMFIP_MDS_256K	0x10000000u
#define MILTER_SMFIP_MDS_1M	0x20000000u

/* Macro stages in a v6 optneg reply and in 'l' (libmilter SMFIM_*). */
#define MILTER_SMFIM_CONNECT	0
#define MILTER_SMFIM_HELO	1
#define MILTER_SMFIM_ENVFROM	2
#define MILTER_SMFIM_ENVRCPT	3
#define MILTER_SMFIM_DATA	4
#define MILTER_SMFIM_EOM	5
#define MILTER_SMFIM_EOH	6
#define MILTER_SMFIM_COUNT	7

/* Which packets a parser expects: the side it runs on. */
enum milter_side {
	MILTER_SIDE_MTA,	/* we are the MTA: parse filter replies */
	MILTER_SIDE_FILTER,	/* we are the filter: parse MTA commands */
};

/* One macro: name ("j", "{client_addr}") and value. */
struct milter_macro {
	const char *name;
	const char *value;
};

/* One v6 macro list: stage (MILTER_SMFIM_*) and space-separated names. */
struct milter_macro_list {
	uint32_t stage;
	const char *names;
};

/* 'O' in either direction. The MTA's has no lists. */
struct milter_optneg {
	uint32_t version;
	uint32_t actions;	/* MILTER_SMFIF_* */
	uint32_t steps;		/* MILTER_SMFIP_* */
	const struct milter_macro_list *lists;	/* reply only; any stage number */
	size_t nlists;
};

/*
 * A parsed packet. Which members are set depends on cmd (others are zero):
 *   O          optneg
 *   D          macro_stage (the command byte the macros go with), macros/nmacros
 *   C          connect
 *   H U q      str (HELO name, unknown command line, quarantine reason)
 *   M R        env: addr = args[0] as sent ("<a@b>"), args = ESMTP args
 *   + -        env.addr, nargs 0
 *   2 e        env.addr, optional args[0] (one string "A=B C=D"), nargs 0/1
 *   L h        header.name, header.value
 *   i m        header.index, .name, .value; for 'm' an empty value deletes
 *              (index 1-based among same-name headers), for 'i' index 0 is
 *              the top of the header block
 *   B E b      body/body_len (not NUL-terminated; E usually empty)
 *   y          reply: code (400..599) and text (the whole string, as sent,
 *              '%' still doubled; may be multi-line "550-...\r\n550 ...")
 *   l          symlist
 *   others     nothing (T N A Q K c a r t d s p f 4)
 * All pointers are borrowed from the parser until the next call to
 * milter_parser_feed/next/free. data/len is the packet's data after the
 * command byte, always set. On MILTER_ERROR only error is set.
 */
struct milter_packet {
	int cmd;
	const unsigned char *data;
	size_t len;
	struct milter_optneg optneg;
	int macro_stage;
	const struct milter_macro *macros;
	size_t nmacros;
	struct {
		const char *hostname;
		int family;		/* MILTER_SMFIA_* */
		uint16_t port;		/* host order; 0 for UNKNOWN */
		const char *address;	/* "" for UNKNOWN */
	} connect;
	const char *str;
	struct {
		const char *addr;
		const char *const *args;
		size_t nargs;
	} env;
	struct {
		uint32_t index;
		const char *name;
		const char *value;
	} header;
	const unsigned char *body;
	size_t body_len;
	struct {
		int code;
		const char *text;
	} reply;
	struct milter_macro_list symlist;
	const char *error;	/* MILTER_ERROR: reason */
};

enum milter_next { MILTER_NEED_MORE = 0, MILTER_ITEM = 1, MILTER_ERROR = -1 };

struct milter_parser;

/*
 * milter_parser_new - a parser for packets arriving on side `side` (the
 * MTA side parses filter replies, the filter side MTA commands).
 * max_packet_bytes caps N (command byte + data); 0 means
 * MILTER_MAX_PACKET_DEFAULT. Free with milter_parser_free().
 */
struct milter_parser *milter_parser_new(enum milter_side side, size_t max_packet_bytes);

/* milter_parser_free - frees *p (NULL allowed) and sets *p = NULL. */
void milter_parser_free(struct milter_parser **p);

/*
 * milter_parser_feed - append len bytes (copied). The parser keeps at
 * most what was fed and not yet returned; the caller bounds that by
 * draining with milter_parser_next() after each read.
 */
void milter_parser_feed(struct milter_parser *p, const void *buf, size_t len);

/*
 * milter_parser_next - the next complete packet.
 * MILTER_ITEM: *pkt filled; its pointers are borrowed until the next
 *   call to milter_parser_feed/next/free.
 * MILTER_NEED_MORE: no complete packet buffered yet.
 * MILTER_ERROR: length 0 or above the maximum, a command byte not valid
 *   for this side, or a malformed packet (missing NUL, short integer,
 *   wrong number of strings, trailing data, bad family or reply code).
 *   pkt->error (and milter_parser_error()) say why. Errors are sticky:
 *   the stream is out of sync, so every later call returns MILTER_ERROR.
 */
enum milter_next milter_parser_next(struct milter_parser *p, struct milter_packet *pkt);

/* milter_parser_error - reason of the last error, or NULL; valid until free. */
const char *milter_parser_error(const struct milter_parser *p);

/* milter_parser_buffered - bytes fed and not yet consumed. */
size_t milter_parser_buffered(const struct milter_parser *p);

/*
 * Builders. Each appends complete packet(s) to *b (caller's sbuf, grown
 * as needed). Strings are C strings (they cannot contain NUL) and go out
 * verbatim. Passing a value the protocol cannot carry (bad family,
 * reply code outside 400..599, a packet over 4 GiB, cmd with the wrong
 * builder) is the caller's bug: panic().
 */

/* milter_build_packet - any packet: cmd then len raw data bytes. */
void milter_build_packet(struct sbuf *b, int cmd, const void *data, size_t len);

/*
 * milter_build_simple - a packet without data: T N E A Q K (MTA) or
 * c a r t d s p f 4 (filter).
 */
void milter_build_simple(struct sbuf *b, int cmd);

/*
 * milter_build_optneg - 'O' either way: version, actions (SMFIF), steps
 * (SMFIP), then for a filter's v6 reply nlists (stage, names) pairs.
 * The MTA passes lists = NULL, nlists = 0.
 */
void milter_build_optneg(struct sbuf *b, uint32_t version, uint32_t actions, uint32_t steps,
			 const struct milter_macro_list *lists, size_t nlists);

/* MTA -> filter. */

/*
 * milter_build_macros - 'D': stage_cmd is the command the macros go with
 * ('C', 'H', 'M', 'R', 'T', 'N', 'E', 'L', 'B', 'U'), then the n pairs.
 */
void milter_build_macros(struct sbuf *b, int stage_cmd, const struct milter_macro *m, size_t n);

/*
 * milter_build_connect - 'C': hostname, family (MILTER_SMFIA_*), then for
 * every family but UNKNOWN the port (host order; 0 for UNIX) and the
 * address (IP text or socket path).
 */
void milter_build_connect(struct sbuf *b, const char *hostname, int family, uint16_t port,
			  const char *address);

void milter_build_helo(struct sbuf *b, const char *helo);		/* 'H' */
void milter_build_unknown(struct sbuf *b, const char *line);		/* 'U' */

/*
 * milter_build_mail / _rcpt - 'M' / 'R': addr as in the SMTP command,
 * with <>, then nargs ESMTP arguments ("SIZE=100").
 */
void milter_build_mail(struct sbuf *b, const char *addr, const char *const *args, size_t nargs);
void milter_build_rcpt(struct sbuf *b, const char *addr, const char *const *args, size_t nargs);

/* milter_build_header - 'L': name, value (leading space: see HDR_LEADSPC). */
void milter_build_header(struct sbuf *b, const char *name, const char *value);

/*
 * milter_build_body - 'B': len bytes as ceil(len / MILTER_BODY_CHUNK_MAX)
 * packets (one empty packet when len is 0). Each chunk gets its own
 * reply unless NR_BODY was negotiated: callers that interleave replies
 * build one chunk at a time.
 */
void milter_build_body(struct sbuf *b, const void *data, size_t len);

/* Filter -> MTA. */

/*
 * milter_build_replycode - 'y': "<code> <text>", or "<code>" when text is
 * "". code 400..599. text goes out verbatim: doubling '%' (Sendmail reads
 * it as a format) and the enhanced status code are the caller's business.
 */
void milter_build_replycode(struct sbuf *b, int code, const char *text);

void milter_build_add_header(struct sbuf *b, const char *name, const char *value);	/* 'h' */
/* 'i': index 0 = before the first header. */
void milter_build_insert_header(struct sbuf *b, uint32_t index, const char *name,
				const char *value);
/* 'm': index 1-based among headers called name; value "" deletes. */
void milter_build_change_header(struct sbuf *b, uint32_t index, const char *name,
				const char *value);
void milter_build_add_rcpt(struct sbuf *b, const char *rcpt);		/* '+' */
void milter_build_del_rcpt(struct sbuf *b, const char *rcpt);		/* '-' */
/* '2' / 'e': args NULL leaves the second string out. */
void milter_build_add_rcpt_par(struct sbuf *b, const char *rcpt, const char *args);
void milter_build_chg_from(struct sbuf *b, const char *from, const char *args);
/* 'b': chunked like milter_build_body; all 'b' packets together are the new body. */
void milter_build_replace_body(struct sbuf *b, const void *data, size_t len);
void milter_build_quarantine(struct sbuf *b, const char *reason);	/* 'q' */
/* 'l': stage MILTER_SMFIM_*, space-separated macro names. */
void milter_build_symlist(struct sbuf *b, uint32_t stage, const char *names);

/*
 * Step helpers for the MTA, given the steps the filter chose in its
 * optneg reply (on the MTA side, AND it with what the MTA offered).
 *
 * milter_cmd_skip_bit - the SMFIP_NO* bit that stops cmd being sent
 *   ('C' NOCONNECT, 'H' NOHELO, 'M' NOMAIL, 'R' NORCPT, 'T' NODATA,
 *   'L' NOHDRS, 'N' NOEOH, 'B' NOBODY, 'U' NOUNKNOWN), else 0.
 * milter_cmd_noreply_bit - the SMFIP_NR_* bit that says the filter will
 *   not answer cmd ('C' NR_CONN, 'H' NR_HELO, 'M' NR_MAIL, 'R' NR_RCPT,
 *   'T' NR_DATA, 'L' NR_HDR, 'N' NR_EOH, 'B' NR_BODY, 'U' NR_UNKN), else 0.
 * milter_cmd_sent - 1 if cmd goes to the filter under steps.
 * milter_cmd_awaits_reply - 1 if the MTA must wait for a reply to cmd
 *   under steps: never for D A Q K; always for O and E; else unless the
 *   NR bit is set.
 * milter_cmd_macro_stage - the SMFIM_* stage whose macro list goes with
 *   cmd ('C' 0, 'H' 1, 'M' 2, 'R' 3, 'T' 4, 'E' 5, 'N' 6), else -1.
 */
uint32_t milter_cmd_skip_bit(int cmd);
uint32_t milter_cmd_noreply_bit(int cmd);
int milter_cmd_sent(int cmd, uint32_t steps);
int milter_cmd_awaits_reply(int cmd, uint32_t steps);
int milter_cmd_macro_stage(int cmd);

/*
 * milter_reply_is_modification - 1 for h i m + - 2 e b q (Sendmail takes
 * them only after 'E', before the final reply; Postfix also takes 'q'
 * earlier), else 0.
 * milter_reply_is_final - 1 for replies that end the wait for a command:
 * c a r t d y s f 4 and 'O' (to optneg); 0 for p, l and modifications.
 */
int milter_reply_is_modification(int cmd);
int milter_reply_is_final(int cmd);

/*
 * milter_cmd_name - lower-case name of a command or reply byte for logs
 * ("connect", "add_header", "optneg"; the byte values of the two
 * directions overlap only in 'O'), or "?". Static string.
 */
const char *milter_cmd_name(int cmd);

#endif
