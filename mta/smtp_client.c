/*
 * smtp_client: blocking SMTP/LMTP client session. Contract in smtp_client.h.
 */
#include "mta/smtp_client.h"
#include "mta/queue.h"
#include "proto/smtp.h"
#include "proto/smtp_reply.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXT_PIPELINING 0x01
#define EXT_SIZE 0x02
#define EXT_8BITMIME 0x04
#define EXT_STARTTLS 0x08
#define EXT_AUTH_PLAIN 0x10
#define EXT_DSN 0x20
#define EXT_SMTPUTF8 0x40

struct smtp_client_sess {
	const struct smtp_client_cfg *cfg;
	enum smtp_client_proto proto;
	int fd;
	SSL *ssl;
	struct smtp_reply_parser *rp;
	struct sbuf out;
	unsigned ext;
	long long max_size;
	int broken;		/* lost, timed out or out of sync: no more commands */
	char host[256];
	char relay[400];	/* host[addr]:port */
	struct smtp_reply r;	/* the last reply (text borrowed from rp) */
	char err[300];		/* I/O failure text, when smtp_client_reply fails */
};

int smtp_tls_level_parse(const char *s, enum smtp_tls_level *out)
{
	if (!*s || strcmp(s, "none") == 0)
		*out = SMTP_TLS_NONE;
	else if (strcmp(s, "may") == 0)
		*out = SMTP_TLS_MAY;
	else if (strcmp(s, "encrypt") == 0)
		*out = SMTP_TLS_ENCRYPT;
	else if (strcmp(s, "verify") == 0 || strcmp(s, "secure") == 0)
		*out = SMTP_TLS_VERIFY;
	else
		return -1;
	return 0;
}

SSL_CTX *smtp_client_tls_ctx(const char *cafile, char **err_out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		*err_out = xstrdup("cannot create TLS client context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	int ok = cafile && *cafile ? SSL_CTX_load_verify_locations(ctx, cafile, NULL)
				   : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		char buf[256] = "unknown error";
		unsigned long e = ERR_get_error();
		if (e)
			ERR_error_string_n(e, buf, sizeof buf);
		ERR_clear_error();
		*err_out = xasprintf("cannot load smtp_tls_CAfile %s: %s", cafile, buf);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* ---- I/O with deadlines (ms on the monotonic clock) ---- */

static int wait_fd(int fd, short ev, long long deadline_ms)
{
	for (;;) {
		long long left = deadline_ms - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { fd, ev, 0 };
		int rc = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/* 1 = ok, 0 = timeout, -1 = error/closed (s->err set) */
static int io_ssl_wait(struct smtp_client_sess *s, int rc, long long deadline_ms)
{
	int e = SSL_get_error(s->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		int w = wait_fd(s->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ms);
		return w > 0 ? 2 : w;
	}
	snprintf(s->err, sizeof s->err, "%s", e == SSL_ERROR_ZERO_RETURN ? "connection closed" : "TLS error");
	ERR_clear_error();
	return -1;
}

static int io_write(struct smtp_client_sess *s, const char *buf, size_t len, long long deadline_ms)
{
	while (len > 0) {
		ssize_t n;
		if (s->ssl) {
			int rc = SSL_write(s->ssl, buf, len > 1 << 30 ? 1 << 30 : (int)len);
			if (rc <= 0) {
				int w = io_ssl_wait(s, rc, deadline_ms);
				if (w == 2)
					continue;
				if (w == 0)
					snprintf(s->err, sizeof s->err, "timeout");
				return -1;
			}
			n = rc;
		} else {
			n = send(s->fd, buf, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					int w = wait_fd(s->fd, POLLOUT, deadline_ms);
					if (w > 0)
						continue;
					snprintf(s->err, sizeof s->err, "%s", w == 0 ? "timeout" : strerror(errno));
					return -1;
				}
				snprintf(s->err, sizeof s->err, "%s", strerror(errno));
				return -1;
			}
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int io_read(struct smtp_client_sess *s, char *buf, size_t len, long long deadline_ms)
{
	for (;;) {
		if (s->ssl) {
			int rc = SSL_read(s->ssl, buf, (int)len);
			if (rc > 0)
				return rc;
			int w = io_ssl_wait(s, rc, deadline_ms);
			if (w == 2)
				continue;
			if (w == 0)
				snprintf(s->err, sizeof s->err, "timeout");
			return -1;
		}
		ssize_t n = recv(s->fd, buf, len, 0);
		if (n > 0)
			return (int)n;
		if (n == 0) {
			snprintf(s->err, sizeof s->err, "connection closed");
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			snprintf(s->err, sizeof s->err, "%s", strerror(errno));
			return -1;
		}
		int w = wait_fd(s->fd, POLLIN, deadline_ms);
		if (w <= 0) {
			snprintf(s->err, sizeof s->err, "%s", w == 0 ? "timeout" : strerror(errno));
			return -1;
		}
	}
}

static int flush_out(struct smtp_client_sess *s, int timeout_s)
{
	int rc = io_write(s, s->out.buf, s->out.len, now_ms() + (long long)timeout_s * 1000);
	sbuf_reset(&s->out);
	if (rc < 0)
		s->broken = 1;
	return rc;
}

/* read one reply into s->r; 0 or -1 (s->err says why, session broken) */
static int read_reply(struct smtp_client_sess *s, int timeout_s)
{
	long long deadline = now_ms() + (long long)timeout_s * 1000;
	const char *err = NULL;
	for (;;) {
		int rc = smtp_reply_next(s->rp, &s->r, &err);
		if (rc == SMTP_REPLY_ITEM)
			return 0;
		if (rc == SMTP_REPLY_ERROR) {
			snprintf(s->err, sizeof s->err, "protocol error: %s", err);
			s->broken = 1;
			return -1;
		}
		char buf[4096];
		int n = io_read(s, buf, sizeof buf, deadline);
		if (n < 0) {
			s->broken = 1;
			return -1;
		}
		smtp_reply_feed(s->rp, buf, (size_t)n);
	}
}

/* ---- reasons ---- */

/* reply text on one line (multi-line replies joined by spaces), capped */
static void reply_oneline(const struct smtp_reply *r, char *out, size_t size)
{
	size_t j = 0;
	j += (size_t)snprintf(out, size, "%d ", r->code);
	for (const char *p = r->text; *p && j + 1 < size; p++)
		out[j++] = (*p == '\n' || (unsigned char)*p < 32) ? ' ' : *p;
	out[j < size ? j : size - 1] = 0;
}

/* "D.D.D host H said: NNN text (in reply to CMD command)" */
static enum smtp_client_res reply_reason(struct smtp_client_sess *s, const char *cmd, char *out,
					 size_t size)
{
	char line[512];
	reply_oneline(&s->r, line, sizeof line);
	char cls = (char)('0' + s->r.code / 100);
	if (cls != '2' && cls != '4' && cls != '5')
		cls = '5';
	char dsn[16];
	if (s->r.dsn[0])
		snprintf(dsn, sizeof dsn, "%s", s->r.dsn);
	else
		snprintf(dsn, sizeof dsn, "%c.0.0", cls == '2' ? '5' : cls);
	if (cls == '2' || s->r.code / 100 == 3) {
		/* an unexpected 2xx/3xx where something else was due */
		dsn[0] = '5';
		cls = '5';
	}
	snprintf(out, size, "%s host %s said: %s (in reply to %s command)", dsn, s->relay, line, cmd);
	return cls == '4' ? SMTP_RES_DEFER : SMTP_RES_BOUNCE;
}

static void io_reason(struct smtp_client_sess *s, const char *while_, char *out, size_t size)
{
	if (strcmp(s->err, "timeout") == 0)
		snprintf(out, size, "4.4.2 conversation with %s timed out while %s", s->relay, while_);
	else
		snprintf(out, size, "4.4.2 lost connection with %s while %s", s->relay, while_);
}

/* ---- connection set-up ---- */

static int tcp_connect(const struct sockaddr *sa, socklen_t salen, int timeout_s, char *err,
		       size_t errsize)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errsize, "%s", strerror(errno));
		return -1;
	}
	if (sa->sa_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	if (connect(fd, sa, salen) < 0) {
		if (errno != EINPROGRESS) {
			snprintf(err, errsize, "%s", strerror(errno));
			close(fd);
			return -1;
		}
		int w = wait_fd(fd, POLLOUT, now_ms() + (long long)timeout_s * 1000);
		int soerr = 0;
		socklen_t l = sizeof soerr;
		if (w <= 0) {
			snprintf(err, errsize, "%s", w == 0 ? "Connection timed out" : strerror(errno));
			close(fd);
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0 || soerr) {
			snprintf(err, errsize, "%s", strerror(soerr ? soerr : errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

static void parse_ehlo(struct smtp_client_sess *s)
{
	s->ext = 0;
	s->max_size = 0;
	const char *p = s->r.text;
	int first = 1;
	while (p && *p) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char line[512];
		snprintf(line, sizeof line, "%.*s", (int)(n < 511 ? n : 511), p);
		p = e ? e + 1 : NULL;
		if (first) {	/* the greeting line names the host */
			first = 0;
			continue;
		}
		char *arg = strchr(line, ' ');
		if (arg)
			*arg++ = 0;
		if (ascii_strcasecmp(line, "PIPELINING") == 0)
			s->ext |= EXT_PIPELINING;
		else if (ascii_strcasecmp(line, "SIZE") == 0) {
			s->ext |= EXT_SIZE;
			s->max_size = arg ? atoll(arg) : 0;
		} else if (ascii_strcasecmp(line, "8BITMIME") == 0)
			s->ext |= EXT_8BITMIME;
		else if (ascii_strcasecmp(line, "STARTTLS") == 0)
			s->ext |= EXT_STARTTLS;
		else if (ascii_strcasecmp(line, "DSN") == 0)
			s->ext |= EXT_DSN;
		else if (ascii_strcasecmp(line, "SMTPUTF8") == 0)
			s->ext |= EXT_SMTPUTF8;
		else if (ascii_strcasecmp(line, "AUTH") == 0 || strncasecmp(line, "AUTH=", 5) == 0) {
			const char *a = line[4] == '=' ? line + 5 : arg;
			char tmp[512];
			snprintf(tmp, sizeof tmp, " %s ", a ? a : "");
			for (char *q = tmp; *q; q++)
				if (*q >= 'a' && *q <= 'z')
					*q = (char)(*q - 32);
			if (strstr(tmp, " PLAIN "))
				s->ext |= EXT_AUTH_PLAIN;
		}
	}
}

/* EHLO/LHLO (HELO fallback for SMTP). 0, or -1 with reason */
static int say_hello(struct smtp_client_sess *s, char *reason, size_t rsize,
		     enum smtp_client_res *res)
{
	const char *verb = s->proto == SMTP_CLIENT_LMTP ? "LHLO" : "EHLO";
	sbuf_printf(&s->out, "%s %s\r\n", verb, s->cfg->helo_name);
	if (flush_out(s, s->cfg->helo_timeout_s) < 0 || read_reply(s, s->cfg->helo_timeout_s) < 0) {
		io_reason(s, "sending EHLO", reason, rsize);
		*res = SMTP_RES_DEFER;
		return -1;
	}
	if (s->r.code / 100 == 2) {
		parse_ehlo(s);
		return 0;
	}
	if (s->proto == SMTP_CLIENT_SMTP && s->r.code / 100 == 5) {
		sbuf_printf(&s->out, "HELO %s\r\n", s->cfg->helo_name);
		if (flush_out(s, s->cfg->helo_timeout_s) < 0 ||
		    read_reply(s, s->cfg->helo_timeout_s) < 0) {
			io_reason(s, "sending HELO", reason, rsize);
			*res = SMTP_RES_DEFER;
			return -1;
		}
		if (s->r.code / 100 == 2) {
			s->ext = 0;
			return 0;
		}
		*res = reply_reason(s, "HELO", reason, rsize);
		return -1;
	}
	*res = reply_reason(s, verb, reason, rsize);
	return -1;
}

static int is_ip_literal(const char *h)
{
	unsigned char b[16];
	return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int start_tls(struct smtp_client_sess *s, const char *tls_name, char *reason, size_t rsize)
{
	sbuf_printf(&s->out, "STARTTLS\r\n");
	if (flush_out(s, s->cfg->helo_timeout_s) < 0 || read_reply(s, s->cfg->helo_timeout_s) < 0) {
		io_reason(s, "sending STARTTLS", reason, rsize);
		return -1;
	}
	if (s->r.code != 220) {
		reply_reason(s, "STARTTLS", reason, rsize);
		reason[0] = '4';	/* a refused STARTTLS is never final */
		s->broken = 1;
		return -1;
	}
	if (smtp_reply_buffered(s->rp) > 0) {	/* pipelined plaintext after 220: an attack */
		snprintf(reason, rsize, "4.7.5 host %s sent data after 220 to STARTTLS", s->relay);
		s->broken = 1;
		return -1;
	}
	s->ssl = SSL_new(s->cfg->tls_ctx);
	SSL_set_fd(s->ssl, s->fd);
	if (tls_name && *tls_name && !is_ip_literal(tls_name))
		SSL_set_tlsext_host_name(s->ssl, tls_name);
	if (s->cfg->tls_level == SMTP_TLS_VERIFY) {
		SSL_set_verify(s->ssl, SSL_VERIFY_PEER, NULL);
		if (tls_name && *tls_name) {
			if (is_ip_literal(tls_name))
				X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), tls_name);
			else
				SSL_set1_host(s->ssl, tls_name);
		}
	}
	long long deadline = now_ms() + (long long)s->cfg->helo_timeout_s * 1000;
	for (;;) {
		int rc = SSL_connect(s->ssl);
		if (rc == 1)
			break;
		int w = io_ssl_wait(s, rc, deadline);
		if (w == 2)
			continue;
		long v = SSL_get_verify_result(s->ssl);
		if (w != 0 && v != X509_V_OK)
			snprintf(reason, rsize, "4.7.5 TLS: server certificate verification failed for %s: %s",
				 s->relay, X509_verify_cert_error_string(v));
		else
			snprintf(reason, rsize, "4.7.5 TLS handshake with %s failed: %s", s->relay,
				 w == 0 ? "timeout" : "handshake error");
		s->broken = 1;
		return -1;
	}
	return 0;
}

static void b64(const unsigned char *in, size_t n, struct sbuf *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);
		sbuf_addc(out, t[v >> 18 & 63]);
		sbuf_addc(out, t[v >> 12 & 63]);
		sbuf_addc(out, i + 1 < n ? t[v >> 6 & 63] : '=');
		sbuf_addc(out, i + 2 < n ? t[v & 63] : '=');
	}
}

static int auth_plain(struct smtp_client_sess *s, const char *user, const char *pass, char *reason,
		      size_t rsize, enum smtp_client_res *res)
{
	struct sbuf raw;
	sbuf_init(&raw);
	sbuf_addc(&raw, 0);
	sbuf_adds(&raw, user);
	sbuf_addc(&raw, 0);
	sbuf_adds(&raw, pass);
	sbuf_adds(&s->out, "AUTH PLAIN ");
	b64((const unsigned char *)raw.buf, raw.len, &s->out);
	sbuf_adds(&s->out, "\r\n");
	explicit_bzero(raw.buf, raw.len);
	sbuf_free(&raw);
	int rc = flush_out(s, s->cfg->helo_timeout_s);
	if (rc == 0)
		rc = read_reply(s, s->cfg->helo_timeout_s);
	if (rc < 0) {
		io_reason(s, "sending AUTH", reason, rsize);
		*res = SMTP_RES_DEFER;
		return -1;
	}
	if (s->r.code == 235)
		return 0;
	char line[400];
	reply_oneline(&s->r, line, sizeof line);
	/* Postfix: SASL failure defers (the password may be fixed later) */
	snprintf(reason, rsize, "4.7.0 SASL authentication failed; server %s said: %s", s->relay, line);
	*res = SMTP_RES_DEFER;
	return -1;
}

struct smtp_client_sess *smtp_client_open(const struct smtp_client_cfg *cfg,
					  enum smtp_client_proto proto,
					  const struct sockaddr *sa, socklen_t salen,
					  const char *host, const char *addr_text, int port,
					  const char *tls_name, const char *sasl_user,
					  const char *sasl_pass, char *reason, size_t rsize,
					  enum smtp_client_res *res)
{
	struct smtp_client_sess *s = xcalloc(1, sizeof *s);
	s->cfg = cfg;
	s->proto = proto;
	s->fd = -1;
	sbuf_init(&s->out);
	s->rp = smtp_reply_parser_new();
	snprintf(s->host, sizeof s->host, "%s", host);
	if (sa->sa_family == AF_UNIX)
		snprintf(s->relay, sizeof s->relay, "%s[%s]", host, addr_text);
	else
		snprintf(s->relay, sizeof s->relay, "%s[%s]:%d", host, addr_text, port);
	*res = SMTP_RES_DEFER;
	char err[256];
	s->fd = tcp_connect(sa, salen, cfg->connect_timeout_s, err, sizeof err);
	if (s->fd < 0) {
		snprintf(reason, rsize, "4.4.1 connect to %s: %s", s->relay, err);
		goto fail;
	}
	if (read_reply(s, cfg->helo_timeout_s) < 0) {
		io_reason(s, "receiving the initial server greeting", reason, rsize);
		goto fail;
	}
	if (s->r.code / 100 != 2) {
		*res = reply_reason(s, "initial greeting", reason, rsize);
		/* Postfix: a 5xx greeting still means "try the next host", then defer */
		reason[0] = '4';
		*res = SMTP_RES_DEFER;
		goto fail;
	}
	if (say_hello(s, reason, rsize, res) < 0)
		goto fail;
	*res = SMTP_RES_DEFER;
	int want_tls = cfg->tls_level != SMTP_TLS_NONE && cfg->tls_ctx;
	int need_tls = cfg->tls_level >= SMTP_TLS_ENCRYPT;
	if (want_tls && (s->ext & EXT_STARTTLS)) {
		if (start_tls(s, tls_name ? tls_name : host, reason, rsize) < 0)
			goto fail;
		if (say_hello(s, reason, rsize, res) < 0)
			goto fail;
	} else if (need_tls) {
		snprintf(reason, rsize, "4.7.4 TLS is required, but was not offered by host %s", s->relay);
		goto fail;
	}
	if (sasl_user && *sasl_user && s->ssl && (s->ext & EXT_AUTH_PLAIN) &&
	    auth_plain(s, sasl_user, sasl_pass ? sasl_pass : "", reason, rsize, res) < 0)
		goto fail;
	return s;
fail:
	smtp_client_close(&s);
	return NULL;
}

const char *smtp_client_relay(const struct smtp_client_sess *s)
{
	return s->relay;
}

/* ---- the transaction ---- */

/* xtext (RFC 3461 4) for ENVID/ORCPT values we pass on */
static void add_xtext(struct sbuf *b, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
			sbuf_printf(b, "+%02X", *p);
		else
			sbuf_addc(b, (char)*p);
}

static int has_8bit(struct queue_msg *m)
{
	char buf[65536];
	for (long long off = 0; off < m->content_len;) {
		long n = queue_msg_read(m, off, buf, sizeof buf);
		if (n <= 0)
			return 0;
		for (long i = 0; i < n; i++)
			if ((unsigned char)buf[i] & 0x80)
				return 1;
		off += n;
	}
	return 0;
}

/* send the content: LF -> CRLF, dot-stuffing, then ".". 0 or -1 (reason set) */
static int send_content(struct smtp_client_sess *s, struct queue_msg *m, char *reason, size_t rsize)
{
	char in[65536];
	int bol = 1;
	char last = '\n';
	sbuf_reset(&s->out);
	for (long long off = 0; off < m->content_len;) {
		long n = queue_msg_read(m, off, in, sizeof in);
		if (n <= 0) {
			snprintf(reason, rsize, "4.3.0 cannot read queue file");
			s->broken = 1;
			return -1;
		}
		off += n;
		for (long i = 0; i < n; i++) {
			char c = in[i];
			if (bol && c == '.')
				sbuf_addc(&s->out, '.');
			if (c == '\n')
				sbuf_addc(&s->out, '\r');
			sbuf_addc(&s->out, c);
			bol = c == '\n';
			last = c;
		}
		if (s->out.len >= 65536 && flush_out(s, s->cfg->data_xfer_timeout_s) < 0) {
			io_reason(s, "sending message body", reason, rsize);
			return -1;
		}
	}
	if (last != '\n')
		sbuf_adds(&s->out, "\r\n");
	sbuf_adds(&s->out, ".\r\n");
	if (flush_out(s, s->cfg->data_xfer_timeout_s) < 0) {
		io_reason(s, "sending message body", reason, rsize);
		return -1;
	}
	return 0;
}

static void all_rcpts(struct smtp_client_rcpt *r, size_t n, enum smtp_client_res res,
		      const char *reason)
{
	for (size_t i = 0; i < n; i++) {
		r[i].res = res;
		snprintf(r[i].reason, sizeof r[i].reason, "%s", reason);
	}
}

static void add_mail_from(struct smtp_client_sess *s, struct queue_msg *m)
{
	const struct queue_envelope *e = &m->env;
	sbuf_printf(&s->out, "MAIL FROM:<%s>", e->sender);
	if (s->ext & EXT_SIZE)
		sbuf_printf(&s->out, " SIZE=%lld", m->content_len);
	if (e->body_8bit && (s->ext & EXT_8BITMIME))
		sbuf_adds(&s->out, " BODY=8BITMIME");
	if (e->smtputf8 && (s->ext & EXT_SMTPUTF8))
		sbuf_adds(&s->out, " SMTPUTF8");
	if (s->ext & EXT_DSN) {
		if (e->ret && *e->ret)
			sbuf_printf(&s->out, " RET=%s", strcmp(e->ret, "HDRS") == 0 ? "HDRS" : "FULL");
		if (e->envid && *e->envid)
			sbuf_printf(&s->out, " ENVID=%s", e->envid);	/* kept as xtext */
	}
	sbuf_adds(&s->out, "\r\n");
}

static void add_rcpt_to(struct smtp_client_sess *s, const struct smtp_client_rcpt *r)
{
	sbuf_printf(&s->out, "RCPT TO:<%s>", r->addr);
	if (s->ext & EXT_DSN) {
		if (r->notify) {
			if (r->notify & SMTP_NOTIFY_NEVER)
				sbuf_adds(&s->out, " NOTIFY=NEVER");
			else {
				const char *sep = " NOTIFY=";
				if (r->notify & SMTP_NOTIFY_SUCCESS) {
					sbuf_printf(&s->out, "%sSUCCESS", sep);
					sep = ",";
				}
				if (r->notify & SMTP_NOTIFY_FAILURE) {
					sbuf_printf(&s->out, "%sFAILURE", sep);
					sep = ",";
				}
				if (r->notify & SMTP_NOTIFY_DELAY)
					sbuf_printf(&s->out, "%sDELAY", sep);
			}
		}
		if (r->orcpt && *r->orcpt) {
			sbuf_adds(&s->out, " ORCPT=");
			add_xtext(&s->out, r->orcpt);
		}
	}
	sbuf_adds(&s->out, "\r\n");
}

/* read the reply to cmd; on I/O failure every recipient still open is deferred */
static int expect(struct smtp_client_sess *s, int timeout_s, const char *while_,
		  struct smtp_client_rcpt *r, size_t n)
{
	if (read_reply(s, timeout_s) == 0)
		return 0;
	char reason[600];
	io_reason(s, while_, reason, sizeof reason);
	all_rcpts(r, n, SMTP_RES_DEFER, reason);
	return -1;
}

int smtp_client_send(struct smtp_client_sess *s, struct queue_msg *m,
		     struct smtp_client_rcpt *rcpts, size_t n)
{
	const struct smtp_client_cfg *cfg = s->cfg;
	char reason[600];
	if (s->broken) {
		snprintf(reason, sizeof reason, "4.4.2 lost connection with %s", s->relay);
		all_rcpts(rcpts, n, SMTP_RES_DEFER, reason);
		return -1;
	}
	/* Refuse early what the peer cannot take (reasons as Postfix words them). */
	if ((s->ext & EXT_SIZE) && s->max_size > 0 && m->content_len > s->max_size) {
		snprintf(reason, sizeof reason,
			 "5.3.4 message size %lld exceeds size limit %lld of server %s",
			 m->content_len, s->max_size, s->relay);
		all_rcpts(rcpts, n, SMTP_RES_BOUNCE, reason);
		return 0;
	}
	if (m->env.smtputf8 && !(s->ext & EXT_SMTPUTF8)) {
		snprintf(reason, sizeof reason, "5.6.7 SMTPUTF8 is required, but was not offered by host %s",
			 s->relay);
		all_rcpts(rcpts, n, SMTP_RES_BOUNCE, reason);
		return 0;
	}
	if (m->env.body_8bit && !(s->ext & EXT_8BITMIME) && has_8bit(m)) {
		/* XXX: no 8bit -> quoted-printable conversion (Postfix's default); we bounce */
		snprintf(reason, sizeof reason,
			 "5.6.3 host %s does not support 8BITMIME and the message has 8-bit content",
			 s->relay);
		all_rcpts(rcpts, n, SMTP_RES_BOUNCE, reason);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		rcpts[i].res = SMTP_RES_OK, rcpts[i].reason[0] = 0;
	int pipe = (s->ext & EXT_PIPELINING) != 0;
	add_mail_from(s, m);
	if (pipe) {
		for (size_t i = 0; i < n; i++)
			add_rcpt_to(s, &rcpts[i]);
		sbuf_adds(&s->out, "DATA\r\n");
	}
	if (flush_out(s, cfg->mail_timeout_s) < 0) {
		io_reason(s, "sending MAIL FROM", reason, sizeof reason);
		all_rcpts(rcpts, n, SMTP_RES_DEFER, reason);
		return -1;
	}
	if (expect(s, cfg->mail_timeout_s, "sending MAIL FROM", rcpts, n) < 0)
		return -1;
	int mail_ok = s->r.code / 100 == 2;
	if (!mail_ok) {
		enum smtp_client_res res = reply_reason(s, "MAIL FROM", reason, sizeof reason);
		all_rcpts(rcpts, n, res, reason);
	}
	size_t accepted = 0;
	for (size_t i = 0; i < n; i++) {
		if (!pipe) {
			if (!mail_ok)
				break;
			add_rcpt_to(s, &rcpts[i]);
			if (flush_out(s, cfg->rcpt_timeout_s) < 0) {
				io_reason(s, "sending RCPT TO", reason, sizeof reason);
				all_rcpts(rcpts, n, SMTP_RES_DEFER, reason);
				return -1;
			}
		}
		if (expect(s, cfg->rcpt_timeout_s, "sending RCPT TO", rcpts, n) < 0)
			return -1;
		if (!mail_ok)
			continue;
		if (s->r.code / 100 == 2)
			accepted++;
		else
			rcpts[i].res = reply_reason(s, "RCPT TO", rcpts[i].reason, sizeof rcpts[i].reason);
	}
	if (!pipe && mail_ok && accepted > 0) {
		sbuf_adds(&s->out, "DATA\r\n");
		if (flush_out(s, cfg->data_init_timeout_s) < 0) {
			io_reason(s, "sending DATA", reason, sizeof reason);
			all_rcpts(rcpts, n, SMTP_RES_DEFER, reason);
			return -1;
		}
	}
	if (pipe || (mail_ok && accepted > 0)) {
		if (expect(s, cfg->data_init_timeout_s, "sending DATA", rcpts, n) < 0)
			return -1;
		if (s->r.code != 354) {
			if (mail_ok && accepted > 0) {
				enum smtp_client_res res = reply_reason(s, "DATA", reason, sizeof reason);
				for (size_t i = 0; i < n; i++)
					if (rcpts[i].res == SMTP_RES_OK) {
						rcpts[i].res = res;
						snprintf(rcpts[i].reason, sizeof rcpts[i].reason, "%s", reason);
					}
			}
			if (s->r.code / 100 == 3) {	/* 354 though nothing was accepted: end it */
				sbuf_adds(&s->out, ".\r\n");
				flush_out(s, cfg->data_xfer_timeout_s);
				read_reply(s, cfg->data_done_timeout_s);
			}
			return s->broken ? -1 : 0;
		}
	} else {
		return 0;	/* nothing accepted: no DATA */
	}
	if (!mail_ok || accepted == 0) {	/* pipelined DATA got 354 anyway */
		sbuf_adds(&s->out, ".\r\n");
		flush_out(s, cfg->data_xfer_timeout_s);
		read_reply(s, cfg->data_done_timeout_s);
		return -1;
	}
	if (send_content(s, m, reason, sizeof reason) < 0) {
		for (size_t i = 0; i < n; i++)
			if (rcpts[i].res == SMTP_RES_OK) {
				rcpts[i].res = SMTP_RES_DEFER;
				snprintf(rcpts[i].reason, sizeof rcpts[i].reason, "%s", reason);
			}
		return -1;
	}
	/* SMTP: one reply for all; LMTP: one per accepted recipient, in order */
	size_t nreplies = s->proto == SMTP_CLIENT_LMTP ? accepted : 1;
	size_t next = 0;
	for (size_t k = 0; k < nreplies; k++) {
		if (read_reply(s, cfg->data_done_timeout_s) < 0) {
			io_reason(s, "sending end of data -- message may be sent more than once",
				  reason, sizeof reason);
			for (size_t i = next; i < n; i++)
				if (rcpts[i].res == SMTP_RES_OK && !rcpts[i].reason[0]) {
					rcpts[i].res = SMTP_RES_DEFER;
					snprintf(rcpts[i].reason, sizeof rcpts[i].reason, "%s", reason);
				}
			return -1;
		}
		char line[500];
		reply_oneline(&s->r, line, sizeof line);
		for (size_t i = s->proto == SMTP_CLIENT_LMTP ? next : 0; i < n; i++) {
			if (rcpts[i].res != SMTP_RES_OK || rcpts[i].reason[0])
				continue;
			if (s->r.code / 100 == 2)
				snprintf(rcpts[i].reason, sizeof rcpts[i].reason, "%s %s",
					 s->r.dsn[0] ? s->r.dsn : "2.0.0", line);
			else
				rcpts[i].res = reply_reason(s, "end of DATA", rcpts[i].reason,
							    sizeof rcpts[i].reason);
			next = i + 1;
			if (s->proto == SMTP_CLIENT_LMTP)
				break;
		}
	}
	return 0;
}

int smtp_client_reset(struct smtp_client_sess *s)
{
	if (s->broken)
		return -1;
	/* Postfix smtp_rset_timeout: 20s */
	int timeout_s = s->cfg->mail_timeout_s < 20 ? s->cfg->mail_timeout_s : 20;
	sbuf_reset(&s->out);
	sbuf_adds(&s->out, "RSET\r\n");
	if (flush_out(s, timeout_s) < 0 || read_reply(s, timeout_s) < 0)
		return -1;
	if (s->r.code / 100 != 2) {
		s->broken = 1;	/* no QUIT either: the peer is confused */
		return -1;
	}
	return 0;
}

void smtp_client_close(struct smtp_client_sess **sp)
{
	struct smtp_client_sess *s = *sp;
	if (!s)
		return;
	if (s->fd >= 0 && !s->broken && s->cfg) {
		sbuf_reset(&s->out);
		sbuf_adds(&s->out, "QUIT\r\n");
		if (flush_out(s, s->cfg->quit_timeout_s) == 0)
			read_reply(s, s->cfg->quit_timeout_s);
	}
	if (s->ssl) {
		if (!s->broken)
			SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
	}
	if (s->fd >= 0)
		close(s->fd);
	smtp_reply_parser_free(&s->rp);
	sbuf_free(&s->out);
	free(s);
	*sp = NULL;
}
