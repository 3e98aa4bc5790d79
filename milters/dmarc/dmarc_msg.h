/*
 * dmarc_msg: one message through sluice-dmarc, without sockets.
 * Owns: the RFC5322.From identifiers (exactly one From field with a
 * parsable mailbox list; every distinct domain, U-labels as A-labels, is
 * checked and the strictest disposition applies), one proto/dmarc check per
 * From domain, the local decision (dmarc_enforce, ignored hosts,
 * authenticated clients and domains, dmarc_on_temperror, quarantine action),
 * our Authentication-Results value, the report-data log lines, and handing
 * failures to dmarc_failrep when reports are on.
 * Leaves: libmilter calls to main.c, configuration to dmarc_cfg.c, DNS to
 * dmarc_dns.c, whose SPF and DKIM results count to dmarc_auth.c, DMARC
 * itself to proto/dmarc, header syntax to proto/rfc5322 and proto/authres.
 * Input is untrusted: headers are capped (DMARC_MSG_MAX_HEADERS,
 * DMARC_MSG_MAX_HEADER_BYTES; beyond them the message counts as malformed),
 * nothing from a header is logged unquoted.
 */
#ifndef SLUICE_DMARC_MSG_H
#define SLUICE_DMARC_MSG_H

#include "milters/dmarc/dmarc_cfg.h"
#include "proto/dmarc.h"
#include "proto/spf.h"

#include <stddef.h>

#define DMARC_MSG_MAX_HEADERS 2000
#define DMARC_MSG_MAX_HEADER_BYTES (4u * 1024 * 1024)

/* What we know of the SMTP session when the message starts (MAIL FROM). */
struct dmarc_msg_conn {
	const char *client_ip;		/* NULL or "": no address, a local submission: skipped */
	const char *helo;		/* NULL = none */
	int authenticated;		/* SMTP AUTH ({auth_authen} set) */
};

struct dmarc_msg;

/*
 * dmarc_msg_new - a message from mail_from (the reverse-path without <>,
 * "" for the null path). Takes a reference on cfg; copies everything.
 * qid NULL = "NOQUEUE".
 */
struct dmarc_msg *dmarc_msg_new(struct dmarc_cfg *cfg, const char *qid,
				const struct dmarc_msg_conn *ci, const char *mail_from);
void dmarc_msg_set_qid(struct dmarc_msg *m, const char *qid);
/* dmarc_msg_rcpt - one RCPT TO address (without <>), for envelope_to. */
void dmarc_msg_rcpt(struct dmarc_msg *m, const char *rcpt);
/*
 * dmarc_msg_header - one header as received: the value exactly as it
 * follows the colon (leading space included; "\n" or "\r\n" in folds).
 */
void dmarc_msg_header(struct dmarc_msg *m, const char *name, const char *value);
void dmarc_msg_eoh(struct dmarc_msg *m);
/* dmarc_msg_wants_body - 0 when the body is not needed (no DKIM to verify). */
int dmarc_msg_wants_body(const struct dmarc_msg *m);
void dmarc_msg_body(struct dmarc_msg *m, const unsigned char *buf, size_t len);

enum dmarc_msg_action {
	DMARC_MSG_ACCEPT = 0, DMARC_MSG_REJECT, DMARC_MSG_TEMPFAIL, DMARC_MSG_QUARANTINE,
};
/* "accept", "reject", "tempfail", "quarantine" */
const char *dmarc_msg_action_name(enum dmarc_msg_action a);

#define DMARC_MSG_MAX_LOG 16
struct dmarc_msg_outcome {
	enum dmarc_msg_action action;
	const char *reply_code, *reply_xcode;	/* reject/tempfail; static */
	char *reply_text;		/* reject/tempfail */
	char *quarantine_reason;	/* QUARANTINE with dmarc_quarantine_action = hold */
	int add_header;			/* add "X-Sluice-DMARC: quarantine" (action header) */
	size_t n_xsd_delete;		/* X-Sluice-DMARC headers received: delete 1..n */
	char *ar_value;			/* our Authentication-Results value (leading space,
					 * "\n\t" folds), or NULL (message skipped) */
	char *log[DMARC_MSG_MAX_LOG];	/* log lines without queue id: one per From domain */
	size_t nlog;
	/* summary, for tests */
	enum dmarc_result result;	/* the worst over the From domains (malformed: permerror) */
	enum dmarc_disposition disposition;	/* strictest over the non-ignored domains */
	int malformed_from;
	int skipped;			/* ignored host or authenticated client */
	enum spf_result spf;		/* the SPF result used (SPF_NONE if none) */
	int spf_self, dkim_self;	/* computed here (1) or read from headers (0) */
	size_t ndkim;			/* DKIM results used */
	size_t ndkim_pass;
};

/*
 * dmarc_msg_eom - finish: SPF, DKIM, DMARC (blocking DNS under the
 * message's deadline). Fills *out (free with dmarc_msg_outcome_clear).
 */
void dmarc_msg_eom(struct dmarc_msg *m, struct dmarc_msg_outcome *out);
void dmarc_msg_outcome_clear(struct dmarc_msg_outcome *out);
void dmarc_msg_free(struct dmarc_msg **m);

#endif
