/*
 * log: one line per event, "QUEUEID: text" (DESIGN.md section 8).
 * Owns the log destination (syslog facility mail, a file, or stderr) and
 * the format (plain Postfix-style lines or JSON objects).
 * Leaves what to say to the callers; never log secrets.
 *
 * Plain:  "Dec  2 08:44:02 mx sluice/qmgr[123]: 5F2A1C9D0B: from=<a@example.com>, size=1234, nrcpt=1"
 * JSON:   {"time":"2026-11-21T21:00:00.123Z","host":"mx","program":"sluice/qmgr",
 *          "pid":123,"queue_id":"5F2A1C9D0B","message":"from=<a@...>, size=1234, nrcpt=1",
 *          "from":"<a@example.com>","size":"1234","nrcpt":"1"}
 * In JSON (written with jansson, one object per line) every key=value token
 * of the message is also a member: the value runs to the next ", " (or "; ",
 * " " / end), with <...>, [...], (...) and "..." kept whole; the first
 * occurrence of a key wins and the envelope members (time, host, program,
 * pid, queue_id, message) are never replaced by a token. Bytes that are not
 * UTF-8 are written as '?' in that string (docs/EVENTS.md).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_format { LOG_FORMAT_PLAIN, LOG_FORMAT_JSON };

/*
 * log_init - choose destination and format; may be called again (SIGHUP).
 * progname: "sluiced", "sluice-spf", ... (copied).
 * file: NULL or "" = syslog (LOG_MAIL); "/dev/stderr" or a path (appended).
 * Returns 0, or -1 with *err_out (static string) when the file can't be opened
 * (the previous destination stays).
 */
int log_init(const char *progname, const char *file, enum log_format fmt, const char **err_out);

/*
 * log_init_conf - log_init() from a loaded config: maillog_file and
 * log_format (plain | json). Same returns as log_init.
 */
struct conf;
int log_init_conf(const char *progname, const struct conf *c, const char **err_out);

/* log_set_stderr_only - before config is read: everything to stderr, plain. */
void log_set_stderr_only(const char *progname);

/*
 * Postfix's program field "<syslog_name>/<service>[pid]" (sluiced; Postfix's
 * syslog_name parameter), so pflogsumm --syslog-name=NAME and other Postfix
 * log tools read the log. Without a syslog name (the default, and every
 * filter daemon) the program field is log_init's progname and services are
 * ignored.
 *
 * log_set_syslog_name - NULL or "" switches the form off; copied (63 bytes
 * kept at most). Survives log_init (the master sets it once; children
 * inherit it through fork).
 * log_set_service - this process's default service ("master", "smtpd",
 * "qmgr", ...; Postfix's names); copied. NULL or "" = none: the program is
 * then the syslog name alone.
 */
void log_set_syslog_name(const char *name);
void log_set_service(const char *service);

/*
 * log_service_event - log_event with this line's service instead of the
 * process default (a receiver logs message-id as "cleanup", the queue
 * manager a delivery as "virtual", "lmtp" or "smtp"). service NULL = the
 * default. Thread-safe.
 */
void log_service_event(const char *service, const char *qid, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_service_eventv(const char *service, const char *qid, const char *fmt, va_list ap);

/*
 * log_event - one line. qid: queue id, NULL means no prefix (daemon-level
 * events), "NOQUEUE" before a queue id exists. Thread-safe (one write(2)).
 */
void log_event(const char *qid, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_eventv(const char *qid, const char *fmt, va_list ap);

struct sbuf;
/*
 * log_kv - append " key=value" to b for a decision line, so that the JSON
 * form and log readers (tools/report_parse) take the value back whole:
 * plain when it is non-empty and has no white space, control or non-ASCII
 * byte, quote, backslash, bracket or ", " / "; "; else in double quotes
 * with \" \\ and \xHH escapes. v NULL = "". b is the caller's.
 */
void log_kv(struct sbuf *b, const char *key, const char *v);

/*
 * log_json_render - the JSON form of one event (no newline), for tests.
 * program: the program field as it goes out ("sluice/smtpd", "sluice-spf").
 * Returns a string the caller frees.
 */
char *log_json_render(const char *program, const char *qid, const char *msg);

int log_to_stderr(void);
/* log_progname - log_init's progname ("sluiced"), not the program field. */
const char *log_progname(void);

#endif
