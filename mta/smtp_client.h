/*
 * smtp_client: one blocking SMTP (RFC 5321) or LMTP (RFC 2033) client
 * session, for the qmgr's delivery worker threads.
 * Owns: the TCP/unix connection with deadlines (connect, per command,
 * end of data), TCP_NODELAY, the greeting, EHLO/HELO/LHLO and the
 * extensions we use (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN, STARTTLS,
 * AUTH PLAIN), STARTTLS with OpenSSL (SNI, certificate and host name
 * verification for level verify), one mail transaction (MAIL, RCPTs, DATA
 * with LF -> CRLF and dot-stuffing, one reply per recipient for LMTP), RSET
 * between transactions of a reused session, QUIT,
 * and the Postfix-style reason text of every outcome.
 * Leaves: which hosts to try in which order (transport.c), queue status
 * marks and logging (qmgr.c). Replies are parsed by proto/smtp_reply.c.
 *
 * Thread-safety: a session belongs to one thread; a cfg and its SSL_CTX
 * may be shared by all threads (read-only after creation).
 */
#ifndef SLUICE_MTA_SMTP_CLIENT_H
#define SLUICE_MTA_SMTP_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

struct queue_msg;

enum smtp_tls_level { SMTP_TLS_NONE, SMTP_TLS_MAY, SMTP_TLS_ENCRYPT, SMTP_TLS_VERIFY };

/* smtp_tls_level_parse - Postfix smtp_tls_security_level; "" = none. 0 or -1. */
int smtp_tls_level_parse(const char *s, enum smtp_tls_level *out);

/*
 * smtp_client_tls_ctx - an OpenSSL client context (TLS 1.2 floor), trusting
 * cafile (PEM, may be "" = the system store). NULL with *err_out (caller frees).
 */
SSL_CTX *smtp_client_tls_ctx(const char *cafile, char **err_out);

struct smtp_client_cfg {
	const char *helo_name;		/* smtp_helo_name */
	int connect_timeout_s;		/* smtp_connect_timeout */
	int helo_timeout_s;		/* greeting, EHLO, STARTTLS, AUTH */
	int mail_timeout_s, rcpt_timeout_s, data_init_timeout_s;
	int data_xfer_timeout_s;	/* each write of message content */
	int data_done_timeout_s;	/* the reply(ies) after "." */
	int quit_timeout_s;
	enum smtp_tls_level tls_level;
	SSL_CTX *tls_ctx;		/* NULL = never STARTTLS */
};

enum smtp_client_proto { SMTP_CLIENT_SMTP, SMTP_CLIENT_LMTP };

/* Outcome of one recipient (or of a whole attempt). */
enum smtp_client_res { SMTP_RES_OK = 0, SMTP_RES_DEFER = 4, SMTP_RES_BOUNCE = 5 };

struct smtp_client_rcpt {
	const char *addr;	/* in */
	unsigned notify;	/* in: SMTP_NOTIFY_* (sent only if the peer offers DSN) */
	const char *orcpt;	/* in: "rfc822;addr" or NULL */
	enum smtp_client_res res;	/* out */
	char reason[600];	/* out: "D.D.D text", e.g. "5.1.1 host mx[1.2.3.4] said: 550 5.1.1 ...
				 * (in reply to RCPT TO command)" or "2.0.0 250 2.0.0 Ok ..." */
};

struct smtp_client_sess;

/*
 * smtp_client_open - connect to sa (TCP, or AF_UNIX for LMTP) with the
 * connect timeout, read the greeting, say EHLO (HELO fallback) or LHLO,
 * STARTTLS as cfg->tls_level says (verify: host name tls_name, also sent as
 * SNI unless it is an IP address), then AUTH PLAIN if sasl_user is set and
 * the session is encrypted and the peer offers it.
 * host/addr_text/port name the peer in logs and reasons ("mx1.x[127.0.0.2]:25").
 * Returns a session, or NULL with *reason_out ("4.4.1 connect to ...") and
 * *res_out (DEFER or BOUNCE: the peer's class for a 5xx greeting or EHLO).
 * Either way the caller may try the next host.
 */
struct smtp_client_sess *smtp_client_open(const struct smtp_client_cfg *cfg,
					  enum smtp_client_proto proto,
					  const struct sockaddr *sa, socklen_t salen,
					  const char *host, const char *addr_text, int port,
					  const char *tls_name, const char *sasl_user,
					  const char *sasl_pass, char *reason_out,
					  size_t reason_size, enum smtp_client_res *res_out);

/* smtp_client_relay - "host[addr]:port" (or "host[path]" for unix); borrowed. */
const char *smtp_client_relay(const struct smtp_client_sess *s);

/*
 * smtp_client_send - one transaction: message m (content read with
 * queue_msg_read, LF line ends) from m's envelope sender to rcpts[0..n).
 * Sets each rcpt's res and reason. Returns 0 when the session may be
 * reused, -1 when it is unusable now (lost, timed out, out of sync).
 */
int smtp_client_send(struct smtp_client_sess *s, struct queue_msg *m,
		     struct smtp_client_rcpt *rcpts, size_t n);

/*
 * smtp_client_reset - RSET before the next transaction on a reused session
 * (also proves the peer is still there). 0 on a 2xx reply; -1 when the
 * session is unusable (the caller closes it and connects anew).
 */
int smtp_client_reset(struct smtp_client_sess *s);

/* smtp_client_close - QUIT (best effort, quit timeout), close, free. NULL ok. */
void smtp_client_close(struct smtp_client_sess **s);

#endif
