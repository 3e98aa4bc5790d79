/* smtp_auth: SMTP AUTH PLAIN/LOGIN for a session (RFC 4954), backends in sasl.c. */
#include "mta/smtp_session_int.h"

void smtp_auth_reset(struct smtp_session *s)
{
	s->auth_state = AUTH_NONE;
	if (s->auth_login_user) {
		free(s->auth_login_user);
		s->auth_login_user = NULL;
	}
}

/* forget the authentication (STARTTLS, end of session); cancel a check in flight */
void smtp_auth_forget(struct smtp_session *s)
{
	sasl_req_cancel(s->sasl_req);
	s->sasl_req = NULL;
	smtp_auth_reset(s);
	free(s->sasl_method);
	free(s->sasl_username);
	s->sasl_method = s->sasl_username = NULL;
}

static void auth_done(void *arg, enum sasl_result res, const char *user, const char *reason)
{
	struct smtp_session *s = arg;
	s->sasl_req = NULL;
	s->busy = 0;
	if (res == SASL_OK) {
		s->sasl_method = xstrdup(s->auth_mech);
		s->sasl_username = xstrdup(user);
		sess_out(s, "235 2.7.0 Authentication successful");
		sess_count(s, SMTP_VERB_AUTH, 1);
	} else if (res == SASL_FAIL) {
		/* Postfix's words; the reason comes from the back end, never holds the password */
		log_event(NULL, "warning: %s[%s]: SASL %s authentication failed: %s", s->name, s->addr, s->auth_mech,
			  reason);
		sess_reply_error(s, 535, "5.7.8", "Error: authentication failed: authentication failure");
		sess_count(s, SMTP_VERB_AUTH, 0);
	} else {
		log_event(NULL, "warning: %s[%s]: SASL %s authentication temporarily failed: %s", s->name, s->addr,
			  s->auth_mech, reason);
		sess_reply_error(s, 454, "4.7.0", "Temporary authentication failure");
		sess_count(s, SMTP_VERB_AUTH, 0);
	}
	if (!s->busy && !s->dead) {
		if (!s->closing)
			bufferevent_enable(s->bev, EV_READ);
		sess_process(s);
	}
}

static void auth_check(struct smtp_session *s, const char *authzid, const char *user, const char *pass)
{
	if (!*user) {
		sess_reply_error(s, 535, "5.7.8", "Error: authentication failed: authentication failure");
		sess_count(s, SMTP_VERB_AUTH, 0);
		return;
	}
	struct sasl_verify_args a = {
		.type = s->srv->cfg.sasl_type, .path = s->srv->cfg.sasl_path, .mech = s->auth_mech,
		.authzid = authzid, .user = user, .password = pass, .client_addr = s->addr, .secured = s->tls,
		.timeout_s = (int)s->srv->cfg.sasl_timeout_s,
	};
	s->busy = 1;
	bufferevent_disable(s->bev, EV_READ);
	s->sasl_req = sasl_verify(s->srv->sasl, &a, auth_done, s);
}

static void auth_bad_response(struct smtp_session *s)
{
	sess_reply_error(s, 501, "5.5.2", "Error: Cannot decode response");
	sess_count(s, SMTP_VERB_AUTH, 0);
}

/* a PLAIN response (initial or after "334 "): check it */
static void auth_plain(struct smtp_session *s, const char *b64)
{
	char *z, *u, *p;
	if (sasl_plain_decode(b64, &z, &u, &p) < 0) {
		auth_bad_response(s);
		return;
	}
	auth_check(s, z, u, p);
	free(z);
	free(u);
	explicit_bzero(p, strlen(p));
	free(p);
}

/* a LOGIN value: NULL (bad base64 or a NUL inside) or the decoded string */
static char *auth_login_value(const char *b64, size_t len)
{
	char *v;
	size_t n;
	if (sasl_b64_decode(b64, len, &v, &n) < 0)
		return NULL;
	if (strlen(v) != n) {
		explicit_bzero(v, n);
		free(v);
		return NULL;
	}
	return v;
}

void smtp_auth_line(struct smtp_session *s, const char *line, size_t len)
{
	int state = s->auth_state;
	s->auth_state = AUTH_NONE;
	if (len == 1 && line[0] == '*') {	/* RFC 4954 4: the client cancels */
		smtp_auth_reset(s);
		sess_reply_error(s, 501, "5.7.0", "Authentication aborted");
		sess_count(s, SMTP_VERB_AUTH, 0);
		return;
	}
	char *b64 = xstrndup(line, len);
	if (state == AUTH_PLAIN) {
		auth_plain(s, b64);
	} else if (state == AUTH_LOGIN_USER) {
		s->auth_login_user = auth_login_value(b64, len);
		if (!s->auth_login_user) {
			auth_bad_response(s);
		} else {
			sess_out(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
			s->auth_state = AUTH_LOGIN_PASS;
			smtp_parser_expect_line(s->parser);
		}
	} else {
		char *pass = auth_login_value(b64, len);
		if (!pass) {
			auth_bad_response(s);
		} else {
			auth_check(s, "", s->auth_login_user, pass);
			explicit_bzero(pass, strlen(pass));
			free(pass);
		}
		free(s->auth_login_user);
		s->auth_login_user = NULL;
	}
	explicit_bzero(b64, len);
	free(b64);
}

void smtp_auth_cmd(struct smtp_session *s, const struct smtp_cmd *c)
{
	const char *why = NULL;
	if (!sess_sasl_offered(s))
		why = "Error: authentication not enabled";
	else if (!s->helo)
		why = "Error: send HELO/EHLO first";
	else if (s->sasl_username)
		why = "Error: already authenticated";
	else if (s->in_mail)
		why = "Error: MAIL transaction in progress";
	if (why) {
		sess_reply_error(s, 503, "5.5.1", why);
		sess_count(s, c->verb, 0);
		return;
	}
	const char *mech = c->auth_mech ? c->auth_mech : "";
	if (ascii_strcasecmp(mech, "PLAIN") && ascii_strcasecmp(mech, "LOGIN")) {
		sess_reply_error(s, 504, "5.5.4", "Unsupported authentication mechanism");
		sess_count(s, c->verb, 0);
		return;
	}
	snprintf(s->auth_mech, sizeof s->auth_mech, "%s", ascii_strcasecmp(mech, "PLAIN") ? "LOGIN" : "PLAIN");
	const char *ir = c->auth_initial;
	if (ir && !strcmp(ir, "="))	/* RFC 4954 4: an empty initial response */
		ir = "";
	if (!strcmp(s->auth_mech, "PLAIN")) {
		if (ir) {
			auth_plain(s, ir);
			return;
		}
		sess_out(s, "334 ");
		s->auth_state = AUTH_PLAIN;
	} else if (ir) {
		s->auth_login_user = auth_login_value(ir, strlen(ir));
		if (!s->auth_login_user) {
			auth_bad_response(s);
			return;
		}
		sess_out(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
		s->auth_state = AUTH_LOGIN_PASS;
	} else {
		sess_out(s, "334 VXNlcm5hbWU6");	/* "Username:" */
		s->auth_state = AUTH_LOGIN_USER;
	}
	smtp_parser_expect_line(s->parser);
}
