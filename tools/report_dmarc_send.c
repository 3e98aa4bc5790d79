/*
 * report_dmarc_send: see report_dmarc_send.h.
 */
#include "tools/report_dmarc_send.h"
#include "proto/dmarc.h"
#include "proto/dmarc_report.h"
#include "lib/util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *rds_verdict_name(enum rds_verdict v)
{
	switch (v) {
	case RDS_INTERNAL: return "internal";
	case RDS_VERIFIED: return "verified";
	case RDS_REFUSED: return "refused";
	case RDS_TEMPERROR: return "temperror";
	default: return "unchecked";
	}
}

/* ---- rua= ---- */

/* sluice report's own checks (see struct dmarc_report_uri_rules) */
static const struct dmarc_report_uri_rules rua_rules = { rda_domain_ok, 1 };

static const struct dmarc_report_layout rds_layout = {
	sizeof(struct rds_dest),
	offsetof(struct rds_dest, addr), sizeof(((struct rds_dest *)0)->addr),
	offsetof(struct rds_dest, host), sizeof(((struct rds_dest *)0)->host),
	offsetof(struct rds_dest, max_bytes),
};

size_t rds_rua_parse(const char *rua, struct rds_dest *out, size_t max)
{
	if (!rua || !strcmp(rua, "-"))
		return 0;
	return dmarc_report_uri_list(rua, &rua_rules, &rds_layout, out, max, NULL);
}

/* ---- external destination verification ---- */

static int under(const char *host, const char *org)
{
	size_t h = strlen(host), o = strlen(org);
	return o > 0 && (strcasecmp(host, org) == 0 ||
			 (h > o && host[h - o - 1] == '.' && strcasecmp(host + h - o, org) == 0));
}

/* not internal: RFC 9990 4 steps 4-9, the record's own rua= may override (same host) */
static enum rds_verdict check_host(struct rds_dest *d, const char *policy_domain,
				   rds_lookup_fn lookup, void *arg)
{
	switch (dmarc_report_verify(policy_domain, d->host, DMARC_REPORT_RUA, &rua_rules, lookup,
				    arg, d->addr, sizeof d->addr, &d->max_bytes)) {
	case DMARC_REPORT_VERIFIED: return RDS_VERIFIED;
	case DMARC_REPORT_TEMPERROR: return RDS_TEMPERROR;
	default: return RDS_REFUSED;	/* not found, over DNS limits, another host */
	}
}

void rds_verify(struct rds_dest *d, size_t n, const char *policy_domain, const char *policy_org,
		rds_lookup_fn lookup, void *lookup_arg)
{
	char porg[256], horg[256];
	int have_porg = dmarc_org_domain_psl(NULL, policy_domain, porg, sizeof porg) == 0;
	int logged_org = policy_org && *policy_org && strcmp(policy_org, "-") != 0;
	for (size_t i = 0; i < n; i++) {
		d[i].verdict = RDS_UNCHECKED;
		for (size_t j = 0; j < i; j++)	/* one question per host */
			if (!strcmp(d[j].host, d[i].host) && d[j].verdict != RDS_VERIFIED)
				d[i].verdict = d[j].verdict;
		if (d[i].verdict != RDS_UNCHECKED)
			continue;
		if ((have_porg && dmarc_org_domain_psl(NULL, d[i].host, horg, sizeof horg) == 0 &&
		     !strcmp(porg, horg)) ||
		    (logged_org && under(d[i].host, policy_org)))
			d[i].verdict = RDS_INTERNAL;
		else
			d[i].verdict = check_host(&d[i], policy_domain, lookup, lookup_arg);
	}
}

/* ---- suppress list ---- */

struct rds_suppress {
	char *path;
	struct rmap set;	/* lower-case addresses */
};

static char *lower_dup(const char *s, size_t n)
{
	char *d = xstrndup(s, n);
	for (char *p = d; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}

struct rds_suppress *rds_suppress_load(const char *path, char **err_out)
{
	struct rds_suppress *s = xcalloc(1, sizeof *s);
	if (!path || !*path)
		return s;
	s->path = xstrdup(path);
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return s;
		*err_out = xasprintf("%s: %s", path, strerror(errno));
		rds_suppress_free(&s);
		return NULL;
	}
	char line[1024];
	while (fgets(line, sizeof line, f)) {
		char *p = line + strspn(line, " \t");
		size_t n = strcspn(p, " \t\r\n#");
		if (n == 0)
			continue;
		char *a = lower_dup(p, n);
		rmap_get(&s->set, a, 1);
		free(a);
	}
	fclose(f);
	return s;
}

int rds_suppress_has(const struct rds_suppress *s, const char *addr)
{
	char *a = lower_dup(addr, strlen(addr));
	int r = rmap_get((struct rmap *)&s->set, a, 0) != NULL;
	free(a);
	return r;
}

int rds_suppress_add(struct rds_suppress *s, const char *addr, const char *why, char **err_out)
{
	if (rds_suppress_has(s, addr))
		return 0;
	if (!s->path) {
		*err_out = xstrdup("dmarc_report_suppress is not set");
		return -1;
	}
	FILE *f = fopen(s->path, "a");
	if (!f || fprintf(f, "# %s\n%s\n", why, addr) < 0 || fclose(f) != 0) {
		*err_out = xasprintf("%s: %s", s->path, strerror(errno));
		return -1;
	}
	char *a = lower_dup(addr, strlen(addr));
	rmap_get(&s->set, a, 1);
	free(a);
	return 1;
}

void rds_suppress_free(struct rds_suppress **sp)
{
	struct rds_suppress *s = *sp;
	if (!s)
		return;
	free(s->path);
	rmap_free(&s->set, NULL);
	free(s);
	*sp = NULL;
}

/* ---- bounces ---- */

void rds_bounces_feed(struct rmap *ids, struct rmap *out, const struct rp_event *ev,
		      const char *sender)
{
	if (!ev->qid || !strcmp(ev->qid, "NOQUEUE"))
		return;
	switch (ev->kind) {
	case RP_EV_FROM:
	case RP_EV_PICKUP:
		if (ev->sender && !strcasecmp(ev->sender, sender))
			rmap_get(ids, ev->qid, 1);
		break;
	case RP_EV_DELIVERY:
		if (ev->status == RP_ST_BOUNCED && ev->recipient && rmap_get(ids, ev->qid, 0)) {
			char *a = lower_dup(ev->recipient, strlen(ev->recipient));
			rmap_get(out, a, 1);
			free(a);
		}
		break;
	case RP_EV_REMOVED: {
		struct rmap_ent *e = rmap_get(ids, ev->qid, 0);
		if (e)
			rmap_del(ids, e, NULL);
		break;
	}
	default:
		break;
	}
}

/* ---- the message ---- */

static void date_822(time_t t, char *out, size_t n)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	snprintf(out, n, "%s, %d %s %d %02d:%02d:%02d +0000", wd[tm.tm_wday], tm.tm_mday,
		 mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void iso(long long t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

char *rds_message(const struct rds_mail *m, size_t *len_out)
{
	struct sbuf b;
	sbuf_init(&b);
	char date[64], from[32], to[32];
	date_822(m->now ? m->now : time(NULL), date, sizeof date);
	iso(m->begin, from, sizeof from);
	iso(m->end, to, sizeof to);
	char boundary[64];
	snprintf(boundary, sizeof boundary, "=_sluice_dmarc_%lld", m->begin);
	sbuf_printf(&b, "From: %s\nTo: %s\n", m->from, m->to);
	sbuf_printf(&b, "Subject: Report Domain: %s\n Submitter: %s\n Report-ID: <%s>\n",
		    m->policy_domain, m->receiver, m->report_id);
	sbuf_printf(&b, "Date: %s\nMessage-ID: <%s>\nMIME-Version: 1.0\n"
		    "Auto-Submitted: auto-generated\n"
		    "Content-Type: multipart/mixed; boundary=\"%s\"\n\n"
		    "This is a MIME-formatted message.\n\n", date, m->report_id, boundary);
	sbuf_printf(&b, "--%s\nContent-Type: text/plain; charset=us-ascii\n"
		    "Content-Transfer-Encoding: 7bit\n\n"
		    "DMARC aggregate report (RFC 9990) from %s for %s,\n"
		    "%s to %s UTC: %lld messages in %lld rows.\n\n",
		    boundary, m->receiver, m->policy_domain, from, to, m->messages, m->rows);
	sbuf_printf(&b, "--%s\nContent-Type: application/gzip; name=\"%s\"\n"
		    "Content-Disposition: attachment; filename=\"%s\"\n"
		    "Content-Transfer-Encoding: base64\n\n", boundary, m->filename, m->filename);
	/* base64 (OpenSSL), 76 characters a line: 57 input bytes each */
	unsigned char line[80];
	const unsigned char *p = m->gz;
	for (size_t off = 0; off < m->gz_len; off += 57) {
		size_t k = m->gz_len - off < 57 ? m->gz_len - off : 57;
		int w = EVP_EncodeBlock(line, p + off, (int)k);
		sbuf_add(&b, line, (size_t)w);
		sbuf_addc(&b, '\n');
	}
	sbuf_printf(&b, "\n--%s--\n", boundary);
	*len_out = b.len;
	return sbuf_steal(&b);
}

