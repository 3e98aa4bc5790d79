/*
 * milter_client: the MTA side of the milter protocol (version 6), as
 * Postfix's smtpd + cleanup do it, for one SMTP session.
 * Owns: smtpd_milters / non_smtpd_milters parsing (unix:/path, inet:host:port,
 * Sendmail's inet:port@host, and Postfix's { spec, connect_timeout=...,
 * command_timeout=..., content_timeout=..., default_action=... } form), one
 * non-blocking connection per milter per session, option negotiation with
 * v6 per-stage macro lists, the stage events (connect, helo, mail, rcpt,
 * data, unknown) to every milter that did not ask to skip them, the content
 * phase at end of data (milters in list order, each seeing the message as
 * edited by those before it), every modification action, timeouts and the
 * per-milter default action on failure.
 * Leaves: SMTP replies and the queue to smtp_session.c; macro values come
 * from the session through a callback.
 *
 * Failure semantics (Postfix's milter_default_action): a milter that cannot
 * be reached, times out, breaks the protocol or closes gets its default
 * action: accept (the milter is ignored for the rest of the session),
 * tempfail / reject (every later stage of the session answers 4xx / 5xx),
 * quarantine (like accept, and the message goes to the hold queue).
 */
#ifndef SLUICE_MTA_MILTER_CLIENT_H
#define SLUICE_MTA_MILTER_CLIENT_H

#include <stddef.h>
#include "lib/util.h"

struct event_base;
struct conf;

enum mc_default { MC_DEF_ACCEPT, MC_DEF_TEMPFAIL, MC_DEF_REJECT, MC_DEF_QUARANTINE };

struct mc_conf {
	char *name;		/* as configured, for logs */
	char *spec;		/* "unix:/path" or "inet:host:port" (normalised) */
	long long connect_timeout_s, command_timeout_s, content_timeout_s;
	enum mc_default default_action;
};

/*
 * mc_conf_parse - the milters named in param (smtpd_milters), with the
 * global milter_* defaults from c. NULL-safe for an empty list (*n_out = 0,
 * returns NULL). On a bad entry returns NULL with *err_out (caller frees).
 */
struct mc_conf *mc_conf_parse(const struct conf *c, const char *param, size_t *n_out, char **err_out);
void mc_conf_free(struct mc_conf *v, size_t n);

/* Stage macro lists (MILTER_SMFIM_* index): borrowed strings of names. */
struct mc_macro_lists {
	const char *list[7];
};

/* Verdict of one stage for the session. */
enum mc_verdict {
	MC_CONTINUE = 0,
	MC_REJECT,		/* code/dsn/text set (5xx) */
	MC_TEMPFAIL,		/* code/dsn/text set (4xx) */
	MC_DISCARD,		/* accept the message, then drop it */
	MC_SHUTDOWN,		/* 421: close the session */
};

struct mc_result {
	enum mc_verdict verdict;
	int code;
	char dsn[16];
	char text[512];
	char milter[64];	/* which milter decided */
};

/* The message at end of data, edited in place by each milter in turn. */
struct mc_header {
	char *name;
	char *value;		/* everything after the colon, leading space and folding kept */
};

struct mc_rcpt_op {
	int add;		/* 1 add, 0 delete */
	char *addr;		/* without <> */
	char *args;		/* ESMTP args for '2', or NULL */
};

struct mc_message {
	struct mc_header *h;
	size_t nh, caph;
	int has_separator;	/* an empty line ended the header block */
	struct sbuf body;	/* LF line ends */
	int changed;		/* headers or body edited: the queue file must be rewritten */
	char *new_sender;	/* 'e', without <> */
	char *new_sender_args;
	struct mc_rcpt_op *rcpt_ops;
	size_t nrcpt_ops;
	char *quarantine;	/* 'q' reason, or the default action's */
};

/* mc_message_parse - split stored content (LF line ends) into headers and body. */
void mc_message_parse(struct mc_message *m, const char *content, size_t len);
/* mc_message_render - the content again (LF line ends), appended to out. */
void mc_message_render(const struct mc_message *m, struct sbuf *out);
void mc_message_free(struct mc_message *m);

/* Macro values for the session: NULL when the macro is not available. */
typedef const char *(*mc_macro_fn)(void *arg, const char *name);
/* Called once per stage with the verdict (from the event loop). */
typedef void (*mc_done_fn)(void *arg, const struct mc_result *r);

struct mc_session;

/*
 * mc_session_new - milters for one SMTP session (conf and macro lists are
 * copied). Nothing is connected until mc_connect.
 */
struct mc_session *mc_session_new(struct event_base *base, const struct mc_conf *conf, size_t n,
				  const struct mc_macro_lists *macros, mc_macro_fn macro, void *macro_arg,
				  const char *qid_for_logs);
/* mc_session_free - 'Q' to every connected milter, close, free. No callback runs. */
void mc_session_free(struct mc_session **ms);

/* mc_active - 1 if some milter may still take part (skip the calls when 0). */
int mc_active(const struct mc_session *ms);

/*
 * Stage events. Each runs the milters in list order and calls done once
 * with the first non-continue verdict (or MC_CONTINUE). One at a time.
 * family: 'L' local, '4', '6', 'U' unknown.
 */
void mc_connect(struct mc_session *ms, const char *hostname, int family, unsigned port, const char *addr,
		mc_done_fn done, void *arg);
void mc_helo(struct mc_session *ms, const char *helo, mc_done_fn done, void *arg);
void mc_mail(struct mc_session *ms, const char *sender, const char *const *args, size_t nargs,
	     mc_done_fn done, void *arg);
void mc_rcpt(struct mc_session *ms, const char *rcpt, const char *const *args, size_t nargs,
	     mc_done_fn done, void *arg);
void mc_data(struct mc_session *ms, mc_done_fn done, void *arg);
void mc_unknown(struct mc_session *ms, const char *line, mc_done_fn done, void *arg);
/*
 * mc_eom - the content phase: headers, end of headers, body, end of
 * message to each milter in turn; modifications are applied to msg before
 * the next milter sees it.
 */
void mc_eom(struct mc_session *ms, struct mc_message *msg, mc_done_fn done, void *arg);
/* mc_abort - the transaction ended without a message: 'A' to the milters in it. */
void mc_abort(struct mc_session *ms);
/* mc_set_qid - the queue id for log lines (copied). */
void mc_set_qid(struct mc_session *ms, const char *qid);

/* mc_default_name - "accept", "tempfail", ... */
const char *mc_default_name(enum mc_default d);

#endif
