/*
 * smtp_session: one SMTP server conversation (RFC 5321, ESMTP extensions
 * PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, CHUNKING, SMTPUTF8, DSN,
 * STARTTLS, AUTH) on a libevent bufferevent.
 * Owns: the command state machine, replies, pipelining (replies of one
 * batch flushed together), error limits and sleeps, client name look-up,
 * the Received: header, streaming DATA/BDAT into the queue writer, and
 * Postfix-style log lines for connects, rejects and disconnects.
 * Leaves: wire parsing to proto/smtp.c, decisions to smtp_check.c and
 * router.c, durability to queue.c.
 */
#ifndef SLUICE_MTA_SMTP_SESSION_H
#define SLUICE_MTA_SMTP_SESSION_H

#include <sys/socket.h>

struct smtpd;

/*
 * smtp_session_start - take over the accepted socket fd (non-blocking) from
 * peer sa. The session frees itself when the conversation ends.
 * kind (enum smtpd_listen_kind in smtpd.h):
 * - SMTPD_LISTEN_LOCAL: sendmail_socket (sluice-sendmail): the
 *   smtpd_*_restrictions do not apply (as for Postfix's pickup), the sending
 *   user's uid is logged, and non_smtpd_milters replace smtpd_milters.
 * - SMTPD_LISTEN_SUBMISSION: submission_listen: submission_tls_security_level,
 *   submission_sasl_auth_enable, submission_relay_restrictions, and AUTH is
 *   required before MAIL (530 5.7.0).
 * - SMTPD_LISTEN_SMTPS: as SUBMISSION, with TLS from the first byte (RFC 8314).
 */
void smtp_session_start(struct smtpd *srv, int fd, const struct sockaddr *sa, socklen_t salen, int kind);

#endif
