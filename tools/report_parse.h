/*
 * report_parse: one mail-log line -> one event, for `sluice report` (issue 13).
 * Owns the syslog envelope (RFC 3164 "Mon DD HH:MM:SS host prog[pid]: msg",
 * with or without fractional seconds; rsyslog's ISO / RFC 3339 stamps; RFC 5424
 * "<PRI>1 TIME HOST APP PROCID MSGID SD MSG"; log_format = json objects) and
 * the recognition of the message texts of Postfix (smtpd, cleanup, qmgr,
 * smtp, lmtp, virtual, local, bounce, pickup), sluiced (same texts, program
 * "sluiced" or "<syslog_name>/<service>"), sluice-dkim, sluice-spf, any
 * filter's key=value line, OpenDKIM, OpenDMARC and policyd-spf.
 * Leaves files, gzip and line splitting to report_input, time stamps to
 * report_time, counting to report_stats. No I/O, no clock, no globals: the year of RFC 3164 stamps
 * comes from the caller (rp_parser_new).
 * Input is untrusted: any bytes; lines longer than RP_MAX_LINE_BYTES are cut.
 */
#ifndef SLUICE_REPORT_PARSE_H
#define SLUICE_REPORT_PARSE_H

#include <stddef.h>
#include <time.h>

#define RP_MAX_LINE_BYTES 16384
#define RP_MAX_KV 64

enum rp_kind {
	RP_EV_NONE,		/* not a log line we can read (no envelope) */
	RP_EV_OTHER,		/* envelope read, text not one we count */
	RP_EV_CONNECT,		/* connect from NAME[IP] */
	RP_EV_DISCONNECT,	/* disconnect from NAME[IP] ... */
	RP_EV_CLIENT,		/* QID: client=NAME[IP]: the smtpd received a message */
	RP_EV_PICKUP,		/* QID: uid=N from=<S> / sender=<S>: local submission */
	RP_EV_MESSAGE_ID,	/* QID: message-id=<...> */
	RP_EV_FROM,		/* QID: from=<S>, size=N, nrcpt=N (qmgr) */
	RP_EV_DELIVERY,		/* QID: to=<R>, relay=..., delay=..., dsn=..., status=... (text) */
	RP_EV_REMOVED,		/* QID: removed */
	RP_EV_REJECT,		/* [QID|NOQUEUE]: reject|milter-reject|reject_warning|hold|discard: ... */
	RP_EV_FILTER,		/* a filter's verdict or an MTA's milter action */
};

enum rp_status { RP_ST_NONE, RP_ST_SENT, RP_ST_DEFERRED, RP_ST_BOUNCED, RP_ST_OTHER };

enum rp_reject {
	RP_REJ_REJECT,		/* reject: */
	RP_REJ_MILTER,		/* milter-reject: */
	RP_REJ_WARNING,		/* reject_warning: */
	RP_REJ_HOLD,		/* hold: / milter-hold: */
	RP_REJ_DISCARD,		/* discard: / milter-discard: */
};

struct rp_kv {
	const char *key, *value;	/* value unquoted */
};

/*
 * One event. Every string is NUL-terminated, points into the parser's
 * scratch buffer and is valid until the next rp_parse_line() on the same
 * parser or rp_parser_free(). Absent fields are NULL (strings) or -1
 * (numbers, except time).
 */
struct rp_event {
	enum rp_kind kind;
	double time;		/* seconds since the epoch; 0 when the line has none */
	const char *host;
	const char *syslog_name;	/* "postfix", "sluice", "sluiced", "opendkim", ... */
	const char *service;	/* "smtpd", "qmgr", ...; "" when the program has no '/' */
	long pid;
	const char *qid;	/* queue id, "NOQUEUE", or NULL */
	const char *msg;	/* the text after "QID: " (or after "prog[pid]: ") */

	/* MTA fields */
	const char *client_name, *client_ip;	/* CONNECT, DISCONNECT, CLIENT, REJECT */
	const char *sasl_username;
	const char *sender;	/* FROM, PICKUP, REJECT: without <>; "" = null sender */
	const char *recipient;	/* DELIVERY, REJECT */
	const char *orig_to;
	const char *relay;	/* DELIVERY: "virtual", "none", "host[ip]:port", ... */
	double delay_s;		/* DELIVERY */
	const char *dsn;	/* DELIVERY, REJECT: "2.0.0" */
	enum rp_status status;	/* DELIVERY */
	const char *status_text;	/* DELIVERY: inside the parentheses */
	long long size_bytes;	/* FROM */
	long nrcpt;		/* FROM */
	const char *message_id;	/* MESSAGE_ID */
	enum rp_reject reject;	/* REJECT */
	const char *stage;	/* REJECT: CONNECT, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE,
				   header, body, ...; FILTER: the milter stage when logged */
	int code;		/* REJECT: SMTP reply code, or -1 */
	const char *reason;	/* REJECT: reply text; FILTER: why */
	const char *helo, *proto;

	/* FILTER fields */
	const char *filter;	/* "dkim", "spf", "dmarc", "spam", "ratelimit", milter name */
	int mta_milter;		/* 1: the MTA's "milter=NAME stage=S action=A" line */
	const char *result;	/* lower case: pass, fail, none, signed, ...; NULL if none */
	const char *action;	/* lower case first word: accept, reject, prepend, ... */
	const char *domain;	/* d= / From domain / SPF identity domain */
	const char *selector;
	const char *scope;	/* SPF: mailfrom, helo */
	const char *disposition;	/* DMARC */
	double score;		/* spam score; valid when has_score */
	int has_score;

	/* key=value tokens of the text, in order (not split for the frequent MTA
	   lines: CONNECT, DISCONNECT, CLIENT, MESSAGE_ID, FROM, DELIVERY, REMOVED,
	   nor for OpenDMARC's and policyd-spf's texts) */
	struct rp_kv kv[RP_MAX_KV];
	size_t nkv;
};

struct rp_parser;

/*
 * rp_parser_new - year_hint: the year given to RFC 3164 stamps (which have
 * none); a stamp whose month is later than month_hint (0-11) gets year_hint-1,
 * as pflogsumm does. Pass the current year/month for today's logs.
 */
struct rp_parser *rp_parser_new(int year_hint, int month_hint);
void rp_parser_free(struct rp_parser **p);

/*
 * rp_parse_line - line: len bytes, without the newline (a trailing '\r' is
 * ignored), any bytes. Fills *ev_out and returns its kind (RP_EV_NONE when
 * the line has no envelope we know).
 */
enum rp_kind rp_parse_line(struct rp_parser *p, const char *line, size_t len,
			   struct rp_event *ev_out);

/*
 * Keeping events past the next line (report_run's workers). By default
 * the strings of an event live in the parser's own scratch memory and are
 * overwritten by the next line. With rp_parser_arena(p, buf, cap), the
 * lines that follow use buf instead: each line the RP_LINE_SCRATCH_BYTES at
 * most after the strings kept so far (and reads up to RP_ARENA_MIN bytes
 * there), and rp_parser_keep() after a line keeps its strings (the event's
 * string fields, msg and kv included, stay valid while buf does): the next
 * line's go after them. The caller gives a new buf (or reuses an old one
 * whose events it is done with) before rp_parser_room() falls under
 * RP_ARENA_MIN. rp_parser_arena(p, NULL, 0) goes back to the parser's own.
 */
#define RP_LINE_SCRATCH_BYTES (6 * RP_MAX_LINE_BYTES)
#define RP_ARENA_MIN (RP_LINE_SCRATCH_BYTES + 64)
#define RP_EVENT_HEAD offsetof(struct rp_event, kv)	/* the fields before kv */

/* rp_parser_arena - buf: cap bytes (at least RP_ARENA_MIN; else, or NULL: the parser's own). */
void rp_parser_arena(struct rp_parser *p, char *buf, size_t cap);

/* rp_parser_room - bytes of buf after the strings kept so far. */
size_t rp_parser_room(const struct rp_parser *p);

/* rp_parser_tail - the free bytes after the last line's strings (*room_out of
   them): the caller may put its own there and keep them with rp_parser_keep. */
char *rp_parser_tail(struct rp_parser *p, size_t *room_out);

/* rp_parser_keep - keep the last line's strings and the first n bytes at
   rp_parser_tail (no effect in the parser's own arena). */
void rp_parser_keep(struct rp_parser *p, size_t n);

/* rp_kv_get - value of key in ev's key=value tokens, or NULL. */
const char *rp_kv_get(const struct rp_event *ev, const char *key);

/* rp_time_parse - "2026-12-02T08:41:07(.123)?(Z|+01:00)?" (local time when no
 * zone) or "2026-12-02 08:41" or "2026-12-02" or "@EPOCH"; 0 and *t_out, or -1. */
int rp_time_parse(const char *s, double *t_out);

const char *rp_kind_name(enum rp_kind k);

#endif
