/*
 * dkim_msg: one message through sluice-dkim, without sockets.
 * Owns: collecting headers, deciding sign or verify, feeding libopendkim
 * (one verify handle, or one sign handle per chosen key so RSA and Ed25519
 * sign together), turning per-signature results into RFC 8601 results with
 * our policies (RFC 8301 rsa-sha1, minimum RSA key size, l=), the On-*
 * action, the headers to add and the forged Authentication-Results to delete.
 * Leaves: libmilter calls to main.c, configuration to dkim_cfg.c.
 * Caps: DKIM_MSG_MAX_HEADERS headers, DKIM_MSG_MAX_HEADER_BYTES in all;
 * beyond that the message gets the internal-error action.
 */
#ifndef SLUICE_DKIM_MSG_H
#define SLUICE_DKIM_MSG_H

#include "milters/dkim/dkim_cfg.h"
#include "milters/dkim/dkim_hdr.h"

#include <stddef.h>

#define DKIM_MSG_MAX_HEADERS 2000
#define DKIM_MSG_MAX_HEADER_BYTES (4u * 1024 * 1024)

struct dkim_msg;

/*
 * dkim_msg_new - sign (1) or verify (0) a message. Takes a reference on cfg
 * for the message's life. qid is copied (NULL = "NOQUEUE").
 */
struct dkim_msg *dkim_msg_new(struct dkim_cfg *cfg, const char *qid, int sign);
void dkim_msg_set_qid(struct dkim_msg *m, const char *qid);
/*
 * dkim_msg_header - one header as received: name, and the value exactly as
 * it follows the colon (leading space included; "\n" or "\r\n" inside
 * folded values).
 */
void dkim_msg_header(struct dkim_msg *m, const char *name, const char *value);
void dkim_msg_eoh(struct dkim_msg *m);
/* dkim_msg_body - a body chunk (CRLF line ends). */
void dkim_msg_body(struct dkim_msg *m, const unsigned char *buf, size_t len);

#define DKIM_MSG_MAX_RESULTS 16
struct dkim_outcome {
	enum dkim_action action;
	const char *reply_code, *reply_xcode, *reply_text;	/* reject/tempfail; static */
	char *ar_value;		/* Authentication-Results value to insert at the top (or NULL) */
	char *sig_values[8];	/* DKIM-Signature values, top first */
	size_t nsig_values;
	size_t ar_delete[32];	/* 1-based indexes among A-R headers, descending */
	size_t n_ar_delete;
	char *log;		/* the log line (without queue id) */
	const char *result;	/* for metrics (static): a dkim_res_name, "internal-error",
				 * "signed", "not-signed" or "sign-error" (docs/EVENTS.md) */
	enum dkim_res res[DKIM_MSG_MAX_RESULTS];	/* per signature (verify) */
	size_t nres;
	enum dkim_res best;	/* message summary: pass > fail > ... (verify) */
};
/*
 * dkim_msg_eom - finish. Fills *out (free with dkim_outcome_clear).
 * Header values in *out use "\n" + tab for folding (milter convention) and
 * start with a space.
 */
void dkim_msg_eom(struct dkim_msg *m, struct dkim_outcome *out);
void dkim_outcome_clear(struct dkim_outcome *out);
void dkim_msg_free(struct dkim_msg **m);

#endif
