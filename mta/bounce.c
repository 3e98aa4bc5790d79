/*
 * bounce: RFC 3464 DSNs (failed and delayed). Contract in bounce.h.
 */
#include "mta/bounce.h"
#include "mta/queue.h"
#include "proto/smtp.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void rfc5322_date(char *buf, size_t n, double t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(buf, n, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* printable ASCII only: DSN fields and headers must not carry CR/LF or 8-bit bytes */
static void add_clean(struct sbuf *b, const char *s)
{
	for (; *s; s++)
		sbuf_addc(b, (*s >= 32 && *s < 127) ? *s : '?');
}

/* the original's header section (up to the first empty line), LF line ends */
static void add_headers(struct sbuf *b, struct queue_msg *m, long long max)
{
	char buf[8192];
	int nl = 1;
	for (long long off = 0; off < m->content_len && off < max;) {
		long n = queue_msg_read(m, off, buf, sizeof buf);
		if (n <= 0)
			break;
		for (long i = 0; i < n; i++) {
			if (buf[i] == '\n' && nl)
				return;
			nl = buf[i] == '\n';
			sbuf_addc(b, buf[i]);
		}
		off += n;
	}
	if (!nl)
		sbuf_addc(b, '\n');
}

static void add_full(struct sbuf *b, struct queue_msg *m)
{
	char buf[65536];
	for (long long off = 0; off < m->content_len;) {
		long n = queue_msg_read(m, off, buf, sizeof buf);
		if (n <= 0)
			break;
		sbuf_add(b, buf, (size_t)n);
		off += n;
	}
	if (b->len && b->buf[b->len - 1] != '\n')
		sbuf_addc(b, '\n');
}

/* "host NAME[ADDR]... said: REPLY (in reply to ...)" -> remote "NAME", diag "REPLY" */
static void split_remote(const char *text, char *remote, size_t rsize, char *diag, size_t dsize)
{
	remote[0] = diag[0] = 0;
	if (strncmp(text, "host ", 5) != 0)
		return;
	const char *h = text + 5, *br = strchr(h, '['), *said = strstr(h, " said: ");
	if (!br || !said || br > said)
		return;
	snprintf(remote, rsize, "%.*s", (int)(br - h), h);
	const char *r = said + 7, *e = strstr(r, " (in reply to ");
	snprintf(diag, dsize, "%.*s", (int)(e ? (size_t)(e - r) : strlen(r)), r);
}

static int wants(unsigned notify, enum bounce_kind kind)
{
	if (!notify)	/* RFC 3461 4.1: no NOTIFY = FAILURE (and DELAY at our option) */
		return 1;
	if (notify & SMTP_NOTIFY_NEVER)
		return 0;
	return (notify & (kind == BOUNCE_FAILED ? SMTP_NOTIFY_FAILURE : SMTP_NOTIFY_DELAY)) != 0;
}

static void add_explanation(struct sbuf *b, const struct bounce_opts *o, enum bounce_kind kind,
			    const struct queue_envelope *env, double now)
{
	sbuf_printf(b, "This is the mail system at host %s.\n\n", o->myhostname);
	if (kind == BOUNCE_FAILED) {
		sbuf_adds(b, "I'm sorry to have to inform you that your message could not\n"
			     "be delivered to one or more recipients. It's attached below.\n\n"
			     "For further assistance, please send mail to postmaster.\n\n"
			     "If you do so, please include this problem report. You can\n"
			     "delete your own text from the attached returned message.\n\n"
			     "                   The mail system\n\n");
		return;
	}
	double hours = (now - env->arrival) / 3600;
	sbuf_adds(b, "####################################################################\n"
		     "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
		     "####################################################################\n\n");
	sbuf_printf(b, "Your message could not be delivered for %.1f hour(s).\n", hours);
	if (o->queue_lifetime_s > 0)
		sbuf_printf(b, "It will be retried until it is %.1f day(s) old.\n",
			    o->queue_lifetime_s / 86400);
	sbuf_adds(b, "\nFor further assistance, please send mail to postmaster.\n\n"
		     "                   The mail system\n\n");
}

static void add_rcpt_group(struct sbuf *b, enum bounce_kind kind, const struct queue_rcpt *r,
			   const struct bounce_item *it, const char *retry_until)
{
	sbuf_adds(b, "\nFinal-Recipient: rfc822; ");
	add_clean(b, r->addr);
	sbuf_addc(b, '\n');
	if (r->orcpt && *r->orcpt) {
		/* ORCPT is "addr-type;xtext" (RFC 3461 4.2), kept as received */
		sbuf_adds(b, "Original-Recipient: ");
		add_clean(b, r->orcpt);
		sbuf_addc(b, '\n');
	} else if (r->orig && strcmp(r->orig, r->addr) != 0) {
		sbuf_adds(b, "Original-Recipient: rfc822; ");
		add_clean(b, r->orig);
		sbuf_addc(b, '\n');
	}
	sbuf_printf(b, "Action: %s\nStatus: ", kind == BOUNCE_FAILED ? "failed" : "delayed");
	add_clean(b, it->dsn);
	sbuf_addc(b, '\n');
	char remote[256], diag[600];
	split_remote(it->text, remote, sizeof remote, diag, sizeof diag);
	if (remote[0]) {
		sbuf_adds(b, "Remote-MTA: dns; ");
		add_clean(b, remote);
		sbuf_adds(b, "\nDiagnostic-Code: smtp; ");
		add_clean(b, diag);
	} else {
		sbuf_adds(b, "Diagnostic-Code: X-Sluice; ");
		add_clean(b, it->text);
	}
	sbuf_addc(b, '\n');
	if (retry_until)
		sbuf_printf(b, "Will-Retry-Until: %s\n", retry_until);
}

int bounce_msg(const struct bounce_opts *o, enum bounce_kind kind, struct queue_msg *m,
	       const struct bounce_item *items, size_t n, char **id_out, char **err_out)
{
	const struct queue_envelope *env = &m->env;
	int dbl = env->sender[0] == 0;
	if (dbl && kind == BOUNCE_DELAYED)
		return 0;
	/* a postmaster copy that cannot be delivered is dropped (no notice of a notice) */
	if (o->double_bounce_sender && ascii_strcasecmp(env->sender, o->double_bounce_sender) == 0)
		return 0;
	size_t due = 0;
	for (size_t k = 0; k < n; k++)
		if (items[k].rcpt < env->nrcpt && wants(env->rcpt[items[k].rcpt].notify, kind))
			due++;
	if (due == 0)
		return 0;
	const char *to = dbl ? o->double_bounce_rcpt : env->sender;
	struct queue_writer *w = queue_writer_open(o->qdir, err_out);
	if (!w)
		return -1;
	const char *id = queue_writer_id(w);
	double now = wall_time();
	char date[64], arrival[64], until[64], boundary[128];
	rfc5322_date(date, sizeof date, now);
	rfc5322_date(arrival, sizeof arrival, env->arrival);
	rfc5322_date(until, sizeof until, env->arrival + o->queue_lifetime_s);
	snprintf(boundary, sizeof boundary, "%s.%lld/%s", id, (long long)now, o->myhostname);
	struct sbuf b;
	sbuf_init(&b);
	sbuf_printf(&b, "Date: %s\n", date);
	sbuf_printf(&b, "From: MAILER-DAEMON@%s (Mail Delivery System)\n", o->myhostname);
	sbuf_adds(&b, "To: ");
	add_clean(&b, to);
	sbuf_printf(&b, "\nSubject: %s\n", kind == BOUNCE_DELAYED ? "Delayed Mail (still being retried)"
					      : dbl ? "Postmaster Copy: Undelivered Mail"
						    : "Undelivered Mail Returned to Sender");
	sbuf_printf(&b, "Message-Id: <%s@%s>\n", id, o->myhostname);
	sbuf_adds(&b, "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
	sbuf_printf(&b, "Content-Type: multipart/report; report-type=delivery-status;\n"
			"\tboundary=\"%s\"\nContent-Transfer-Encoding: 7bit\n\n", boundary);
	sbuf_adds(&b, "This is a MIME-encapsulated message.\n\n");
	/* 1: explanation, one paragraph per recipient */
	sbuf_printf(&b, "--%s\nContent-Description: Notification\n"
			"Content-Type: text/plain; charset=us-ascii\n\n", boundary);
	add_explanation(&b, o, kind, env, now);
	for (size_t k = 0; k < n; k++) {
		if (items[k].rcpt >= env->nrcpt || !wants(env->rcpt[items[k].rcpt].notify, kind))
			continue;
		sbuf_addc(&b, '<');
		add_clean(&b, env->rcpt[items[k].rcpt].addr);
		sbuf_adds(&b, ">: ");
		add_clean(&b, items[k].text);
		sbuf_adds(&b, "\n\n");
	}
	/* 2: delivery-status: per-message fields, then one group per recipient */
	sbuf_printf(&b, "--%s\nContent-Description: %s\n"
			"Content-Type: message/delivery-status\n\n", boundary,
		    kind == BOUNCE_FAILED ? "Delivery report" : "Delivery delay report");
	sbuf_printf(&b, "Reporting-MTA: dns; %s\nX-Sluice-Queue-ID: %s\n", o->myhostname, m->id);
	if (env->envid && *env->envid) {
		sbuf_adds(&b, "Original-Envelope-Id: ");
		add_clean(&b, env->envid);
		sbuf_addc(&b, '\n');
	}
	sbuf_adds(&b, "X-Sluice-Sender: rfc822; ");
	add_clean(&b, env->sender);
	sbuf_printf(&b, "\nArrival-Date: %s\n", arrival);
	for (size_t k = 0; k < n; k++)
		if (items[k].rcpt < env->nrcpt && wants(env->rcpt[items[k].rcpt].notify, kind))
			add_rcpt_group(&b, kind, &env->rcpt[items[k].rcpt], &items[k],
				       kind == BOUNCE_DELAYED && o->queue_lifetime_s > 0 ? until
											: NULL);
	sbuf_addc(&b, '\n');
	/* 3: the original */
	int full = kind == BOUNCE_FAILED && env->ret && ascii_strcasecmp(env->ret, "FULL") == 0 &&
		   m->content_len <= o->size_limit;
	sbuf_printf(&b, "--%s\nContent-Description: %s\nContent-Type: %s\n\n", boundary,
		    full ? "Undelivered Message"
		    : kind == BOUNCE_FAILED ? "Undelivered Message Headers"
					    : "Delayed Message Headers",
		    full ? "message/rfc822" : "text/rfc822-headers");
	if (full)
		add_full(&b, m);
	else
		add_headers(&b, m, 1LL << 20);
	sbuf_printf(&b, "\n--%s--\n", boundary);
	int rc = queue_writer_write(w, b.buf, b.len);
	sbuf_free(&b);
	if (rc < 0) {
		*err_out = xstrdup("cannot write delivery status notification");
		queue_writer_abort(&w);
		return -1;
	}
	struct queue_envelope e = { 0 };
	e.sender = xstrdup(dbl && o->double_bounce_sender ? o->double_bounce_sender : "");
	e.arrival = now;
	e.proto = xstrdup("LOCAL");
	queue_envelope_add_rcpt(&e, to, NULL, 0, NULL);
	char *nid = xstrdup(id);
	rc = queue_writer_commit_sync(w, &e, err_out);
	queue_envelope_free(&e);
	if (rc < 0) {
		free(nid);
		return -1;
	}
	*id_out = nid;
	return 1;
}
