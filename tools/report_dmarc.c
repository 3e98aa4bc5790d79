/*
 * report_dmarc: `sluice report dmarc` - DMARC aggregate reports (RFC 9990)
 * from sluice-dmarc's log lines, written to a directory and optionally mailed
 * to each policy domain's rua= destinations (docs/DMARC-REPORTS.md).
 * Wiring only: reading (report_input, report_parse), reports
 * (report_dmarc_agg), destinations and mail (report_dmarc_send).
 */
#include "conf/conf.h"
#include "conf/params.h"
#include "lib/sendmail_run.h"
#include "lib/util.h"
#include "lib/version.h"
#include "proto/dns.h"
#include "tools/report_dmarc_agg.h"
#include "tools/report_dmarc_send.h"
#include "tools/report_input.h"
#include "tools/report_parse.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int report_dmarc_main(int argc, char **argv);

#define DEFAULT_CONF "/etc/sluice/sluice.conf"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluice report dmarc [-c FILE] [--org-name NAME] [--email ADDR]\n"
		"                           [--format rfc9990|rfc7489] [--period day|hour]\n"
		"                           [--since TIME] [--until TIME] -o DIR\n"
		"                           [--send [--dry-run]] LOGFILE...\n"
		"  One gzip'd aggregate report per policy domain and UTC day (or hour) in DIR,\n"
		"  named RECEIVER!DOMAIN!BEGIN!END.xml.gz; --send mails each to the domain's\n"
		"  verified rua= addresses through sluice-sendmail.\n"
		"  Defaults: --org-name dmarc_report_org_name, --email dmarc_report_email\n"
		"  (RECEIVER is its domain), -c %s when it exists.\n"
		"  TIME: 2026-12-01, 2026-12-01T08:00, 2026-12-01T08:00:00Z, @EPOCH; since <= t < until\n",
		DEFAULT_CONF);
}

struct opts {
	const char *conf_path, *org_name, *email, *outdir;
	enum rda_format format;
	long long period_s;
	double since, until;
	int send, dry_run;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },   { "org-name", required_argument, NULL, 'n' },
		{ "email", required_argument, NULL, 'e' },    { "format", required_argument, NULL, 'f' },
		{ "period", required_argument, NULL, 'p' },   { "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },    { "output", required_argument, NULL, 'o' },
		{ "send", no_argument, NULL, 'S' },	      { "dry-run", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },	      { "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:o:", lo, NULL)) != -1) {
		switch (c) {
		case 'c': o->conf_path = optarg; break;
		case 'n': o->org_name = optarg; break;
		case 'e': o->email = optarg; break;
		case 'o': o->outdir = optarg; break;
		case 'S': o->send = 1; break;
		case 'D': o->dry_run = 1; break;
		case 'f':
			if (!strcmp(optarg, "rfc9990"))
				o->format = RDA_RFC9990;
			else if (!strcmp(optarg, "rfc7489"))
				o->format = RDA_RFC7489;
			else {
				fprintf(stderr, "sluice report dmarc: --format must be rfc9990 or rfc7489\n");
				return 2;
			}
			break;
		case 'p':
			if (!strcmp(optarg, "day"))
				o->period_s = 86400;
			else if (!strcmp(optarg, "hour"))
				o->period_s = 3600;
			else {
				fprintf(stderr, "sluice report dmarc: --period must be day or hour\n");
				return 2;
			}
			break;
		case 's':
		case 'u':
			if (rp_time_parse(optarg, c == 's' ? &o->since : &o->until) < 0) {
				fprintf(stderr, "sluice report dmarc: bad time \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sluice report dmarc (sluice) %s\n", SLUICE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o->outdir || optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (o->dry_run && !o->send) {
		fprintf(stderr, "sluice report dmarc: --dry-run goes with --send\n");
		return 2;
	}
	return -1;
}

/* the reporter's address: dot-atom@host; *receiver_out points into it */
static int email_ok(const char *e, const char **receiver_out)
{
	const char *at = strrchr(e, '@');
	if (!at || at == e || !rda_domain_ok(at + 1) || strlen(e) > RDS_ADDR_MAX)
		return 0;
	for (const char *p = e; p < at; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("\"<>()[],;:\\", *p))
			return 0;
	*receiver_out = at + 1;
	return 1;
}

/* write data to dir/name through a temporary file and rename (no half files) */
static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", dir, name), *tmp = xasprintf("%s/.%s.tmp", dir, name);
	int rc = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "sluice report dmarc: %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, (const char *)data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	if (off != len || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "sluice report dmarc: %s: %s\n", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(path);
	free(tmp);
	return rc;
}

struct dns_ctx {
	struct dns_resolver *r;
};

static struct dns_answer *lookup(void *arg, const char *name, enum dns_type type)
{
	struct dns_ctx *c = arg;
	return dns_query_sync(c->r, name, type, 0);
}

struct sender {
	struct conf *conf;
	const char *email, *receiver;
	struct dns_ctx dns;
	struct rds_suppress *sup;
	struct rmap per_dest;	/* c[0]: reports to that address in this run */
	struct rmap *bounced;	/* earlier reports that bounced (lower-case addresses) */
	long long max_per_dest;
	char *sendmail, *sendmail_conf;
	int dry_run;
};

/* the Sendmail-compatible command: dmarc_report_sendmail, else sluice-sendmail beside us */
static void find_sendmail(struct sender *s, const char *conf_file)
{
	const char *sm = conf_str(s->conf, "dmarc_report_sendmail");
	if (sm && *sm) {
		s->sendmail = xstrdup(sm);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		self[n > 0 ? n : 0] = 0;
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		s->sendmail = xasprintf("%s/sluice-sendmail", n > 0 ? self : "/usr/sbin");
	}
	const char *base = strrchr(s->sendmail, '/');
	base = base ? base + 1 : s->sendmail;
	if (!strcmp(base, "sluice-sendmail") && conf_file)
		s->sendmail_conf = xstrdup(conf_file);
}

static char *lower_copy(const char *addr)
{
	char *a = xstrdup(addr);
	for (char *p = a; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return a;
}

/* --dry-run does not write the suppress list, but skips what it would add */
static int is_bounced(struct sender *s, const char *addr)
{
	char *a = lower_copy(addr);
	int r = s->bounced && rmap_get(s->bounced, a, 0) != NULL;
	free(a);
	return r;
}

/* the per-run count of addr (compared without case); valid until the next call */
static struct rmap_ent *per_dest(struct sender *s, const char *addr)
{
	char *a = lower_copy(addr);
	struct rmap_ent *e = rmap_get(&s->per_dest, a, 1);
	free(a);
	return e;
}

static int send_report(struct sender *s, const struct rda_report *r, const struct rda_meta *m,
		       const char *fname, const void *gz, size_t gz_len)
{
	struct rds_dest d[RDS_MAX_DEST];
	size_t n = rds_rua_parse(r->pol.rua, d, RDS_MAX_DEST);
	int rc = 0;
	if (n == 0) {
		printf("send %s: no rua= mailto: destination\n", fname);
		return 0;
	}
	rds_verify(d, n, r->domain, r->pol.org_domain, lookup, &s->dns);
	char *rid = rda_report_id(r, m);
	for (size_t i = 0; i < n; i++) {
		const char *status;
		char *err = NULL;
		struct rmap_ent *e;
		int x;
		if (d[i].verdict != RDS_INTERNAL && d[i].verdict != RDS_VERIFIED) {
			status = d[i].verdict == RDS_TEMPERROR ? "temperror" : "not_verified";
		} else if (rds_suppress_has(s->sup, d[i].addr) || is_bounced(s, d[i].addr)) {
			status = "suppressed";
		} else if ((e = per_dest(s, d[i].addr))->c[0] >= s->max_per_dest) {
			status = "over_limit";
		} else {
			struct rds_mail mail = { s->email, d[i].addr, s->receiver, rid, fname, r->domain,
						 r->begin, r->end, r->messages, (long long)r->rows.n,
						 gz, gz_len, 0 };
			size_t len;
			char *msg = rds_message(&mail, &len);
			if (d[i].max_bytes && len > d[i].max_bytes) {
				status = "too_big";
			} else if (s->dry_run) {
				e->c[0]++;
				status = "dry_run";
			} else if ((x = sendmail_run(s->sendmail, s->sendmail_conf, s->email, d[i].addr,
						     msg, len, 0, &err)) == 0) {
				e->c[0]++;
				status = "sent";
			} else if (x == RDS_EX_NOUSER) {
				/* refused for good at submission: a bounce, never again */
				char *e2 = NULL;
				status = "bounced";
				int a = rds_suppress_add(s->sup, d[i].addr, "refused at submission", &e2);
				if (a > 0)
					printf("suppress: %s added (refused at submission)\n", d[i].addr);
				else if (a < 0)
					fprintf(stderr, "sluice report dmarc: %s refused, not suppressed: %s\n",
						d[i].addr, e2);
				free(e2);
			} else {
				status = "send_failed";
				rc = 1;
			}
			free(msg);
		}
		printf("send %s: to=%s verification=%s status=%s%s%s\n", fname, d[i].addr,
		       rds_verdict_name(d[i].verdict), status, err ? " error=" : "", err ? err : "");
		free(err);
	}
	free(rid);
	return rc;
}

static int sender_init(struct sender *s, const struct opts *o, const char *conf_file)
{
	char *err = NULL;
	s->dry_run = o->dry_run;
	s->max_per_dest = conf_int(s->conf, "dmarc_report_max_per_destination");
	size_t ns;
	const char *const *servers = conf_list(s->conf, "dns_servers", &ns);
	struct dns_opts d = { servers, ns, (int)conf_time_s(s->conf, "dns_timeout") * 1000,
			      (int)conf_int(s->conf, "dns_tries") };
	s->dns.r = dns_new(NULL, &d, &err);
	if (!s->dns.r) {
		fprintf(stderr, "sluice report dmarc: dns_servers: %s\n", err);
		free(err);
		return -1;
	}
	const char *sp = conf_str(s->conf, "dmarc_report_suppress");
	char *abs = NULL;
	if (sp && *sp && sp[0] != '/' && conf_file) {
		char *base = conf_base_dir(s->conf, &err);
		free(err);
		err = NULL;
		abs = conf_abs_path(base ? base : ".", sp);
		free(base);
	}
	s->sup = rds_suppress_load(abs ? abs : sp, &err);
	free(abs);
	if (!s->sup) {
		fprintf(stderr, "sluice report dmarc: dmarc_report_suppress: %s\n", err);
		free(err);
		return -1;
	}
	find_sendmail(s, conf_file);
	return 0;
}

static void sender_free(struct sender *s)
{
	dns_free(&s->dns.r);
	rds_suppress_free(&s->sup);
	rmap_free(&s->per_dest, NULL);
	free(s->sendmail);
	free(s->sendmail_conf);
}

static struct conf *load_conf(const char **path_io)
{
	char *err = NULL;
	struct conf *c;
	if (!*path_io && access(DEFAULT_CONF, R_OK) == 0)
		*path_io = DEFAULT_CONF;
	if (*path_io)
		c = conf_load(*path_io, params_all, NULL, &err);
	else
		c = conf_load_string("", "(defaults)", params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice report dmarc: %s\n", err);
		free(err);
	}
	return c;
}

static int read_logs(char **files, int n, struct rda *agg, struct rmap *ids, struct rmap *bounced,
		     const char *email)
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	struct rp_parser *p = rp_parser_new(tm.tm_year + 1900, tm.tm_mon);
	struct rp_event ev;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *err, *line;
		size_t len;
		struct report_input *in = ri_open(files[i], &err);
		if (!in) {
			fprintf(stderr, "sluice report dmarc: %s: %s\n", files[i], err);
			rc = 1;
			continue;
		}
		int r;
		while ((r = ri_next(in, &line, &len, &err)) == 1) {
			rp_parse_line(p, line, len, &ev);
			if (rda_add(agg, &ev) == RDA_NOT_DMARC && ids)
				rds_bounces_feed(ids, bounced, &ev, email);
		}
		if (r < 0) {
			fprintf(stderr, "sluice report dmarc: %s: %s\n", files[i], err);
			rc = 1;
		}
		ri_close(&in);
	}
	rp_parser_free(&p);
	return rc;
}

/* bounced reports (found in the log) go on the suppress list before sending */
static void suppress_bounced(struct sender *s, struct rmap *bounced)
{
	size_t n;
	struct rmap_row *rows = rmap_sorted(bounced, 0, &n);
	for (size_t i = 0; i < n; i++) {
		char *err = NULL, why[64];
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(why, sizeof why, "bounced, added %Y-%m-%dT%H:%M:%SZ", &tm);
		int r = rds_suppress_add(s->sup, rows[i].e->key, why, &err);
		if (r > 0)
			printf("suppress: %s added (a report to it bounced)\n", rows[i].e->key);
		else if (r < 0)
			fprintf(stderr, "sluice report dmarc: a report to %s bounced, not suppressed: %s\n",
				rows[i].e->key, err);
		free(err);
	}
	free(rows);
}

int report_dmarc_main(int argc, char **argv)
{
	struct opts o = { .period_s = 86400 };
	int rc = parse_opts(argc, argv, &o);
	if (rc >= 0)
		return rc;
	rc = 0;
	struct sender s = { 0 };
	s.conf = load_conf(&o.conf_path);
	if (!s.conf)
		return 2;
	struct rda_meta m = { 0 };
	m.org_name = o.org_name ? o.org_name : conf_str(s.conf, "dmarc_report_org_name");
	m.email = o.email ? o.email : conf_str(s.conf, "dmarc_report_email");
	m.format = o.format;
	if (!m.org_name || !*m.org_name || !email_ok(m.email, &m.receiver)) {
		fprintf(stderr, "sluice report dmarc: --org-name and --email ADDR (local@domain) are needed\n");
		conf_free(&s.conf);
		return 2;
	}
	char *receiver = xstrdup(m.receiver);
	for (char *p = receiver; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	m.receiver = receiver;
	s.email = m.email;
	s.receiver = m.receiver;
	if (mkdir(o.outdir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "sluice report dmarc: %s: %s\n", o.outdir, strerror(errno));
		free(receiver);
		conf_free(&s.conf);
		return 1;
	}
	if (o.send && sender_init(&s, &o, o.conf_path) < 0) {
		sender_free(&s);
		free(receiver);
		conf_free(&s.conf);
		return 1;
	}

	struct rda *agg = rda_new(o.period_s, o.since, o.until);
	struct rmap ids = { 0 }, bounced = { 0 };
	rc = read_logs(argv + optind, argc - optind, agg, o.send ? &ids : NULL, &bounced, m.email);
	s.bounced = &bounced;
	if (o.send && !o.dry_run)
		suppress_bounced(&s, &bounced);

	size_t n;
	struct rda_report *const *reps = rda_reports(agg, &n);
	for (size_t i = 0; i < n; i++) {
		const struct rda_report *r = reps[i];
		const char *err = NULL;
		size_t xlen, glen;
		char *xml = rda_xml(r, &m, &xlen, &err);
		unsigned char *gz = xml ? rda_gzip(xml, xlen, &glen) : NULL;
		char *fname = rda_filename(r, &m, 1);
		if (!gz) {
			fprintf(stderr, "sluice report dmarc: %s: %s\n", fname, err ? err : "zlib failed");
			rc = 1;
		} else if (write_file(o.outdir, fname, gz, glen) < 0) {
			rc = 1;
		} else {
			printf("%s/%s: %s %lld messages, %zu rows\n", o.outdir, fname, r->domain,
			       r->messages, r->rows.n);
			if (o.send && send_report(&s, r, &m, fname, gz, glen) != 0)
				rc = 1;
		}
		free(fname);
		free(gz);
		free(xml);
	}
	fprintf(stderr, "sluice report dmarc: %zu reports; verdicts counted %lld, without policy %lld, "
			"not evaluated %lld, out of range %lld, unusable %lld\n", n,
		rda_count(agg, RDA_COUNTED), rda_count(agg, RDA_NO_POLICY),
		rda_count(agg, RDA_NOT_EVALUATED), rda_count(agg, RDA_OUT_OF_RANGE),
		rda_count(agg, RDA_BAD_VALUE));
	rmap_free(&ids, NULL);
	rmap_free(&bounced, NULL);
	rda_free(&agg);
	if (o.send)
		sender_free(&s);
	free(receiver);
	conf_free(&s.conf);
	return rc;
}
