/*
 * reason: the stable reason code of a reject (docs/EVENTS.md "Reason
 * codes"), shared by sluiced's metrics (sluice_rejects_total{reason}) and
 * `sluice report`, so both count a reject under the same name.
 * Owns: the table from RFC 7372 enhanced status codes and reply texts to
 * codes. Leaves: finding the reject (the log parser, the SMTP session).
 * The filters' verdict codes (spf_fail, dkim_fail, dmarc_policy,
 * spam_score, ratelimit_over, greylisted, ...) are written by the filters
 * on their own decision lines (issue 13) and listed with these in
 * docs/EVENTS.md "Reason codes"; reason_code() never returns them.
 */
#ifndef SLUICE_LIB_REASON_H
#define SLUICE_LIB_REASON_H

/*
 * reason_code - stage ("RCPT", "header", ...; may be NULL), dsn ("5.7.1";
 * may be NULL) and reply text (may be NULL) -> a static code:
 * "unknown_recipient", "relay_denied", "spf", ..., or "other". RFC 7372's
 * codes of the authentication checks win over the text; then the first
 * table entry whose text occurs; then "content" for the header/body
 * stages. The caller may turn "other" into "milter" for a milter's reject.
 */
const char *reason_code(const char *stage, const char *dsn, const char *text);

#endif
