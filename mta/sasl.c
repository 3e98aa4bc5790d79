#include "mta/sasl.h"
#include "proto/sasl_dvproto.h"
#include "lib/util.h"

#include <crypt.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------ base64 */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(unsigned char c)
{
	const char *p = c ? strchr(b64chars, c) : NULL;
	return p ? (int)(p - b64chars) : -1;
}

int sasl_b64_decode(const char *in, size_t n, char **out, size_t *out_len)
{
	if (n % 4)
		return -1;
	char *o = xmalloc(n / 4 * 3 + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			if (in[i + j] == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			if (pad || (v[j] = b64val((unsigned char)in[i + j])) < 0) {
				free(o);
				return -1;
			}
		}
		unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
		o[k++] = (char)(w >> 16);
		if (pad < 2)
			o[k++] = (char)(w >> 8 & 0xff);
		if (pad < 1)
			o[k++] = (char)(w & 0xff);
	}
	o[k] = 0;
	*out = o;
	*out_len = k;
	return 0;
}

char *sasl_b64_encode(const void *in, size_t len)
{
	const unsigned char *p = in;
	char *o = xmalloc((len + 2) / 3 * 4 + 1);
	size_t k = 0;
	for (size_t i = 0; i < len; i += 3) {
		unsigned w = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) |
			     (i + 2 < len ? p[i + 2] : 0);
		o[k++] = b64chars[w >> 18 & 63];
		o[k++] = b64chars[w >> 12 & 63];
		o[k++] = i + 1 < len ? b64chars[w >> 6 & 63] : '=';
		o[k++] = i + 2 < len ? b64chars[w & 63] : '=';
	}
	o[k] = 0;
	return o;
}

int sasl_plain_decode(const char *b64, char **authzid_out, char **user_out, char **pass_out)
{
	char *m;
	size_t n;
	if (sasl_b64_decode(b64, strlen(b64), &m, &n) < 0)
		return -1;
	char *z1 = memchr(m, 0, n);
	char *z2 = z1 ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - m)) : NULL;
	if (!z1 || !z2 || memchr(z2 + 1, 0, n - (size_t)(z2 + 1 - m)) || z2 == z1 + 1) {
		OPENSSL_cleanse(m, n);
		free(m);
		return -1;
	}
	*authzid_out = xstrdup(m);
	*user_out = xstrdup(z1 + 1);
	*pass_out = xstrdup(z2 + 1);
	OPENSSL_cleanse(m, n);
	free(m);
	return 0;
}

/* ------------------------------------------------------ passwd-file */

int sasl_type_valid(const char *type)
{
	return !strcmp(type, "passwdfile") || !strcmp(type, "dovecot");
}

int sasl_passwdfile_lookup(const char *path, const char *user, char **hash_out, char **err_out)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		*err_out = xasprintf("open %s: %s", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	size_t ulen = strlen(user);
	int found = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (!n || line[0] == '#')
			continue;
		if ((size_t)n <= ulen || strncmp(line, user, ulen) || line[ulen] != ':')
			continue;
		char *h = line + ulen + 1;
		char *end = strchr(h, ':');
		*hash_out = xstrndup(h, end ? (size_t)(end - h) : strlen(h));
		found = 1;
		break;
	}
	if (line) {
		OPENSSL_cleanse(line, cap);
		free(line);
	}
	fclose(f);
	return found;
}

int sasl_password_check(const char *stored, const char *password, const char **err_out)
{
	const char *h = stored;
	char scheme[32] = "CRYPT";
	if (*h == '{') {
		const char *e = strchr(h, '}');
		if (!e || (size_t)(e - h - 1) >= sizeof scheme) {
			*err_out = "malformed {SCHEME}";
			return -1;
		}
		snprintf(scheme, sizeof scheme, "%.*s", (int)(e - h - 1), h + 1);
		for (char *c = scheme; *c; c++)
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 'a' + 'A');
		h = e + 1;
	}
	if (!strcmp(scheme, "PLAIN") || !strcmp(scheme, "CLEAR") || !strcmp(scheme, "CLEARTEXT")) {
		size_t a = strlen(h), b = strlen(password);
		return a == b && CRYPTO_memcmp(h, password, a) == 0;
	}
	static const char *const crypts[] = { "CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT",
					      "MD5-CRYPT", "YESCRYPT", NULL };
	int ok = 0;
	for (int i = 0; crypts[i]; i++)
		if (!strcmp(scheme, crypts[i]))
			ok = 1;
	if (!ok) {
		*err_out = "unsupported password scheme";
		return -1;
	}
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *r = crypt_r(password, h, cd);
	int match = -1;
	if (!r || r[0] == '*') {
		*err_out = "hash not usable by crypt(3)";
	} else {
		size_t a = strlen(r), b = strlen(h);
		match = a == b && CRYPTO_memcmp(r, h, a) == 0;
	}
	OPENSSL_cleanse(cd, sizeof *cd);
	free(cd);
	return match;
}

/* ------------------------------------------------------------ requests */

struct sasl_req {
	struct sasl_server *sv;
	struct sasl_req *next;
	int cancelled;
	int threaded;		/* passwdfile: owned by the worker until it is done */
	sasl_done_fn done;
	void *arg;
	char *path, *user, *password, *authzid, *mech, *client_addr;
	int secured, timeout_s;
	enum sasl_result result;
	char *reason;
	/* dovecot */
	struct bufferevent *bev;
	struct sasl_dvproto *dv;
	int handshake_done, have_plain, sent;
	struct event *later;	/* deliver a result from the loop, not inside sasl_verify */
};

struct sasl_server {
	struct event_base *base;
	struct event *ev;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	struct sasl_req *todo, **todo_tail;
	struct sasl_req *done, **done_tail;
};

static void req_free(struct sasl_req *r)
{
	if (r->password) {
		OPENSSL_cleanse(r->password, strlen(r->password));
		free(r->password);
	}
	free(r->path);
	free(r->user);
	free(r->authzid);
	free(r->mech);
	free(r->client_addr);
	free(r->reason);
	if (r->bev)
		bufferevent_free(r->bev);
	if (r->later)
		event_free(r->later);
	sasl_dvproto_free(&r->dv);
	free(r);
}

static void passwdfile_check(struct sasl_req *r)
{
	char *hash = NULL, *err = NULL;
	int f = sasl_passwdfile_lookup(r->path, r->user, &hash, &err);
	if (f < 0) {
		r->result = SASL_TEMPFAIL;
		r->reason = err;
		return;
	}
	if (f == 0) {
		/* XXX: no dummy hash, so an unknown user answers faster than a wrong password */
		r->result = SASL_FAIL;
		r->reason = xstrdup("no such user");
		return;
	}
	const char *e = NULL;
	int m = sasl_password_check(hash, r->password, &e);
	OPENSSL_cleanse(hash, strlen(hash));
	free(hash);
	r->result = m == 1 ? SASL_OK : m == 0 ? SASL_FAIL : SASL_TEMPFAIL;
	r->reason = xstrdup(m == 1 ? "" : m == 0 ? "password mismatch" : e);
}

static void *worker_main(void *arg)
{
	struct sasl_server *sv = arg;
	pthread_mutex_lock(&sv->mu);
	for (;;) {
		while (!sv->todo && !sv->stop)
			pthread_cond_wait(&sv->cv, &sv->mu);
		if (sv->stop)
			break;
		struct sasl_req *r = sv->todo;
		sv->todo = r->next;
		if (!sv->todo)
			sv->todo_tail = &sv->todo;
		r->next = NULL;
		int skip = r->cancelled;
		pthread_mutex_unlock(&sv->mu);
		if (!skip)
			passwdfile_check(r);
		pthread_mutex_lock(&sv->mu);
		int was_empty = sv->done == NULL;
		*sv->done_tail = r;
		sv->done_tail = &r->next;
		if (was_empty)
			event_active(sv->ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&sv->mu);
	return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sasl_server *sv = arg;
	pthread_mutex_lock(&sv->mu);
	struct sasl_req *list = sv->done;
	sv->done = NULL;
	sv->done_tail = &sv->done;
	pthread_mutex_unlock(&sv->mu);
	while (list) {
		struct sasl_req *r = list;
		list = r->next;
		/* cancelled is only set by the loop thread once the request is here or queued */
		if (!r->cancelled)
			r->done(r->arg, r->result, r->user, r->reason ? r->reason : "");
		req_free(r);
	}
}

struct sasl_server *sasl_server_new(struct event_base *base)
{
	struct sasl_server *sv = xcalloc(1, sizeof *sv);
	sv->base = base;
	pthread_mutex_init(&sv->mu, NULL);
	pthread_cond_init(&sv->cv, NULL);
	sv->todo_tail = &sv->todo;
	sv->done_tail = &sv->done;
	sv->ev = event_new(base, -1, 0, on_done, sv);
	if (pthread_create(&sv->thr, NULL, worker_main, sv) != 0)
		fatal("sasl: cannot start the password worker thread");
	return sv;
}

void sasl_server_free(struct sasl_server **pp)
{
	struct sasl_server *sv = *pp;
	if (!sv)
		return;
	pthread_mutex_lock(&sv->mu);
	sv->stop = 1;
	pthread_cond_signal(&sv->cv);
	pthread_mutex_unlock(&sv->mu);
	pthread_join(sv->thr, NULL);
	for (struct sasl_req *r = sv->todo, *n; r; r = n) {
		n = r->next;
		req_free(r);
	}
	for (struct sasl_req *r = sv->done, *n; r; r = n) {
		n = r->next;
		req_free(r);
	}
	event_free(sv->ev);
	pthread_mutex_destroy(&sv->mu);
	pthread_cond_destroy(&sv->cv);
	free(sv);
	*pp = NULL;
}

/* ------------------------------------------------------------ dovecot */

static void dv_finish(struct sasl_req *r, enum sasl_result res, const char *user, const char *reason)
{
	if (r->bev) {
		bufferevent_free(r->bev);
		r->bev = NULL;
	}
	if (!r->cancelled)
		r->done(r->arg, res, user ? user : r->user, reason ? reason : "");
	req_free(r);
}

static void dv_send_auth(struct sasl_req *r)
{
	/* RFC 4616 message; LOGIN is passed on as PLAIN (same secrets) */
	size_t zl = strlen(r->authzid), ul = strlen(r->user), pl = strlen(r->password);
	char *msg = xmalloc(zl + ul + pl + 2);
	memcpy(msg, r->authzid, zl);
	msg[zl] = 0;
	memcpy(msg + zl + 1, r->user, ul);
	msg[zl + 1 + ul] = 0;
	memcpy(msg + zl + ul + 2, r->password, pl);
	char *b64 = sasl_b64_encode(msg, zl + ul + pl + 2);
	OPENSSL_cleanse(msg, zl + ul + pl + 2);
	free(msg);
	struct evbuffer *o = bufferevent_get_output(r->bev);
	evbuffer_add_printf(o, "AUTH\t1\tPLAIN\tservice=smtp\tnologin%s", r->secured ? "\tsecured" : "");
	if (r->client_addr && *r->client_addr && !strpbrk(r->client_addr, "\t\n"))
		evbuffer_add_printf(o, "\trip=%s", r->client_addr);
	evbuffer_add_printf(o, "\tresp=%s\n", b64);
	OPENSSL_cleanse(b64, strlen(b64));
	free(b64);
	r->sent = 1;
}

static void dv_read(struct bufferevent *bev, void *arg)
{
	struct sasl_req *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char buf[4096];
	int n;
	while ((n = evbuffer_remove(in, buf, sizeof buf)) > 0)
		sasl_dvproto_feed(r->dv, buf, (size_t)n);
	for (;;) {
		struct sasl_dvproto_item it;
		const char *err = NULL;
		enum sasl_dvproto_next nx = sasl_dvproto_next(r->dv, &it, &err);
		if (nx == SASL_DV_NEED_MORE)
			return;
		if (nx == SASL_DV_ERROR) {
			char *why = xasprintf("dovecot auth protocol error: %s", err);
			dv_finish(r, SASL_TEMPFAIL, NULL, why);
			free(why);
			return;
		}
		switch (it.kind) {
		case SASL_DV_VERSION:
			if (it.major != 1) {
				dv_finish(r, SASL_TEMPFAIL, NULL, "dovecot auth protocol version mismatch");
				return;
			}
			break;
		case SASL_DV_MECH:
			if (!ascii_strcasecmp(it.name, "PLAIN"))
				r->have_plain = 1;
			break;
		case SASL_DV_DONE:
			if (!r->have_plain) {
				dv_finish(r, SASL_TEMPFAIL, NULL, "dovecot does not offer PLAIN");
				return;
			}
			r->handshake_done = 1;
			dv_send_auth(r);
			break;
		case SASL_DV_OK:
			if (it.id == 1) {
				dv_finish(r, SASL_OK, it.user, "");
				return;
			}
			break;
		case SASL_DV_FAIL:
			if (it.id == 1) {
				dv_finish(r, it.temp ? SASL_TEMPFAIL : SASL_FAIL, NULL,
					  it.reason ? it.reason : "authentication failed");
				return;
			}
			break;
		case SASL_DV_CONT:
			if (it.id == 1) {
				dv_finish(r, SASL_TEMPFAIL, NULL, "dovecot asked for more data after PLAIN");
				return;
			}
			break;
		default:
			break;
		}
	}
}

static void dv_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct sasl_req *r = arg;
	if (what & BEV_EVENT_CONNECTED) {
		evbuffer_add_printf(bufferevent_get_output(r->bev), "VERSION\t1\t2\nCPID\t%ld\n", (long)getpid());
		return;
	}
	char *why = xasprintf("dovecot auth socket %s: %s", r->path,
			      what & BEV_EVENT_TIMEOUT ? "timeout" : what & BEV_EVENT_EOF ? "connection closed"
			      : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	dv_finish(r, SASL_TEMPFAIL, NULL, why);
	free(why);
}

static void dv_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sasl_req *r = arg;
	dv_finish(r, r->result, NULL, r->reason);
}

static void dv_start(struct sasl_server *sv, struct sasl_req *r)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	r->dv = sasl_dvproto_new(0);
	const char *p = !strncmp(r->path, "unix:", 5) ? r->path + 5 : r->path;
	r->bev = bufferevent_socket_new(sv->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(r->bev, dv_read, NULL, dv_event, r);
	struct timeval tv = { r->timeout_s > 0 ? r->timeout_s : 30, 0 };
	bufferevent_set_timeouts(r->bev, &tv, &tv);
	bufferevent_enable(r->bev, EV_READ | EV_WRITE);
	if (strlen(p) >= sizeof sun.sun_path ||
	    (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", p),
	     bufferevent_socket_connect(r->bev, (struct sockaddr *)&sun, sizeof sun) < 0)) {
		r->result = SASL_TEMPFAIL;
		r->reason = xasprintf("cannot connect to dovecot auth socket %s", r->path);
		bufferevent_free(r->bev);
		r->bev = NULL;
		r->later = evtimer_new(sv->base, dv_later, r);
		struct timeval now = { 0, 0 };
		evtimer_add(r->later, &now);
	}
}

struct sasl_req *sasl_verify(struct sasl_server *sv, const struct sasl_verify_args *a, sasl_done_fn done,
			     void *arg)
{
	struct sasl_req *r = xcalloc(1, sizeof *r);
	r->sv = sv;
	r->done = done;
	r->arg = arg;
	r->path = xstrdup(a->path ? a->path : "");
	r->user = xstrdup(a->user);
	r->password = xstrdup(a->password);
	r->authzid = xstrdup(a->authzid ? a->authzid : "");
	r->mech = xstrdup(a->mech ? a->mech : "PLAIN");
	r->client_addr = a->client_addr ? xstrdup(a->client_addr) : NULL;
	r->secured = a->secured;
	r->timeout_s = a->timeout_s;
	if (a->type && !strcmp(a->type, "dovecot")) {
		dv_start(sv, r);
		return r;
	}
	r->threaded = 1;
	pthread_mutex_lock(&sv->mu);
	*sv->todo_tail = r;
	sv->todo_tail = &r->next;
	pthread_cond_signal(&sv->cv);
	pthread_mutex_unlock(&sv->mu);
	return r;
}

void sasl_req_cancel(struct sasl_req *r)
{
	if (!r)
		return;
	if (r->threaded) {
		/* the worker or on_done frees it; the flag is read under the lock by the worker */
		pthread_mutex_lock(&r->sv->mu);
		r->cancelled = 1;
		pthread_mutex_unlock(&r->sv->mu);
		return;
	}
	r->cancelled = 1;
	req_free(r);
}
