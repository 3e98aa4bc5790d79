/*
 * sluice-sendmail - the Sendmail-compatible submission command (also
 * behaves as `sendmail` when installed under that name).
 *   sluice-sendmail [-C sluice.conf] [-f sender] [-F fullname] [-t] [-i|-oi] [recipient...]
 *   sluice-sendmail [-C sluice.conf] -bs        SMTP on stdin/stdout
 * The message goes over the local submission socket (sendmail_socket) into
 * sluiced's queue; sluiced applies non_smtpd_milters to it. The config file
 * is -C, else $SLUICE_CONF, else /etc/sluice/sluice.conf.
 * Exit status follows sysexits(3): 0, 64 usage, 65 data error, 67 no such
 * user, 69 unavailable, 75 temporary failure.
 */
#include "conf/conf.h"
#include "conf/params.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/version.h"

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_NOUSER 67
#define EX_UNAVAILABLE 69
#define EX_TEMPFAIL 75

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "sendmail: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(code);
}

static int connect_socket(const char *spec)
{
	if (strncmp(spec, "unix:", 5) != 0)
		die(EX_UNAVAILABLE, "sendmail_socket %s: only unix: sockets are supported", spec);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = { 0 };
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", spec + 5);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int e = errno;
		char cwd[4096];	/* a relative path as resolved: from the config's base, our working directory */
		char *shown = conf_abs_path(spec[5] != '/' && getcwd(cwd, sizeof cwd) ? cwd : "/", spec + 5);
		die(EX_TEMPFAIL, "cannot connect to %s: %s (is sluiced running?)", shown, strerror(e));
	}
	return fd;
}

/* -bs: shuttle bytes between stdin/stdout and the socket until either side ends */
static int relay_smtp(int fd)
{
	struct pollfd p[2] = { { 0, POLLIN, 0 }, { fd, POLLIN, 0 } };
	char buf[65536];
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return EX_TEMPFAIL;
		if (p[1].revents) {
			ssize_t n = read(fd, buf, sizeof buf);
			if (n <= 0)
				return 0;
			if (write(1, buf, (size_t)n) != n)
				return EX_TEMPFAIL;
		}
		if (p[0].revents) {
			ssize_t n = read(0, buf, sizeof buf);
			if (n <= 0) {
				shutdown(fd, SHUT_WR);
				p[0].fd = -1;
				continue;
			}
			if (write(fd, buf, (size_t)n) != n)
				return EX_TEMPFAIL;
		}
	}
}

struct conn {
	FILE *in;
	int fd;
};

static int reply(struct conn *c, char *text, size_t len)
{
	int code = 0;
	text[0] = 0;
	char line[1024];
	while (fgets(line, sizeof line, c->in)) {
		code = atoi(line);
		snprintf(text, len, "%s", line);
		if (strlen(line) < 4 || line[3] != '-')
			return code;
	}
	return -1;
}

static void sendf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sendf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	size_t n = strlen(s);
	if (write(c->fd, s, n) != (ssize_t)n)
		die(EX_TEMPFAIL, "lost the connection to sluiced");
	free(s);
}

static int expect(struct conn *c, int want, const char *what)
{
	char text[1024];
	int code = reply(c, text, sizeof text);
	if (code / 100 == want / 100)
		return 0;
	fprintf(stderr, "sendmail: %s: %s", what, code < 0 ? "connection lost\n" : text);
	if (code >= 500)
		return what[0] == 'R' ? EX_NOUSER : EX_DATAERR;
	return EX_TEMPFAIL;
}

/* Addresses in a To/Cc/Bcc header value (comma-separated, "Name <a@b>" or a@b). */
static void header_addrs(const char *v, char ***list, size_t *n)
{
	char *copy = xstrdup(v);
	for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *lt = strchr(t, '<'), *gt = lt ? strchr(lt, '>') : NULL;
		char *a = lt && gt ? (*gt = 0, lt + 1) : t;
		while (*a == ' ' || *a == '\t' || *a == '\n')
			a++;
		size_t l = strlen(a);
		while (l && (a[l - 1] == ' ' || a[l - 1] == '\t' || a[l - 1] == '\n'))
			a[--l] = 0;
		if (!*a || !strchr(a, '@'))
			continue;
		*list = xrealloc(*list, (*n + 1) * sizeof **list);
		(*list)[(*n)++] = xstrdup(a);
	}
	free(copy);
}

/*
 * read_message - stdin up to EOF (or a "." line unless ignore_dots), LF line
 * ends. With -t, the recipients come from To/Cc/Bcc and Bcc is removed.
 */
static void read_message(int ignore_dots, int from_headers, struct sbuf *msg, char ***rcpts, size_t *nrcpt,
			 int *has_from, int *has_date, int *has_msgid)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int in_headers = 1, in_bcc = 0;
	struct sbuf cur;
	sbuf_init(&cur);
	while ((n = getline(&line, &cap, stdin)) > 0) {
		if (n >= 2 && line[n - 2] == '\r' && line[n - 1] == '\n') {
			line[n - 2] = '\n';
			line[--n] = 0;
		}
		if (!ignore_dots && (!strcmp(line, ".\n") || !strcmp(line, ".")))
			break;
		if (in_headers) {
			if (line[0] == '\n') {
				in_headers = 0;
			} else if (line[0] == ' ' || line[0] == '\t') {
				if (in_bcc)
					continue;
			} else {
				in_bcc = !ascii_strncasecmp(line, "bcc:", 4);
				if (!ascii_strncasecmp(line, "from:", 5))
					*has_from = 1;
				if (!ascii_strncasecmp(line, "date:", 5))
					*has_date = 1;
				if (!ascii_strncasecmp(line, "message-id:", 11))
					*has_msgid = 1;
				if (from_headers && (!ascii_strncasecmp(line, "to:", 3) ||
						     !ascii_strncasecmp(line, "cc:", 3) || in_bcc))
					header_addrs(strchr(line, ':') + 1, rcpts, nrcpt);
				if (in_bcc)
					continue;
			}
		}
		sbuf_add(msg, line, (size_t)n);
	}
	free(line);
	sbuf_free(&cur);
	if (msg->len && msg->buf[msg->len - 1] != '\n')
		sbuf_addc(msg, '\n');
}

static int submit(const char *sock, const char *sender, const char *fullname, int ignore_dots, int from_headers,
		  char **argv_rcpts, int nargv, const char *myhostname)
{
	struct sbuf msg, head;
	sbuf_init(&msg);
	sbuf_init(&head);
	char **rcpts = NULL;
	size_t nrcpt = 0;
	int has_from = 0, has_date = 0, has_msgid = 0;
	for (int i = 0; i < nargv; i++) {
		rcpts = xrealloc(rcpts, (nrcpt + 1) * sizeof *rcpts);
		rcpts[nrcpt++] = xstrdup(argv_rcpts[i]);
	}
	read_message(ignore_dots, from_headers, &msg, &rcpts, &nrcpt, &has_from, &has_date, &has_msgid);
	if (!nrcpt)
		die(EX_USAGE, "no recipients");
	/* like Postfix for local mail: add what the message lacks */
	if (!has_from)
		sbuf_printf(&head, fullname ? "From: %s <%s>\n" : "From: %s%s\n", fullname ? fullname : "", sender);
	if (!has_date) {
		char d[64];
		time_t t = time(NULL);
		strftime(d, sizeof d, "%a, %d %b %Y %H:%M:%S %z", localtime(&t));
		sbuf_printf(&head, "Date: %s\n", d);
	}
	if (!has_msgid)
		sbuf_printf(&head, "Message-ID: <%ld.%d.%lx@%s>\n", (long)time(NULL), (int)getpid(),
			    (unsigned long)random(), myhostname);
	int fd = connect_socket(sock);
	struct conn c = { fdopen(dup(fd), "r"), fd };
	int rc;
	if ((rc = expect(&c, 220, "greeting")))
		return rc;
	sendf(&c, "EHLO localhost\r\n");
	if ((rc = expect(&c, 250, "EHLO")))
		return rc;
	sendf(&c, "MAIL FROM:<%s>\r\n", sender);
	if ((rc = expect(&c, 250, "MAIL FROM")))
		return rc;
	for (size_t i = 0; i < nrcpt; i++) {
		sendf(&c, "RCPT TO:<%s>\r\n", rcpts[i]);
		if ((rc = expect(&c, 250, "RCPT TO")))
			return rc;
	}
	sendf(&c, "DATA\r\n");
	if ((rc = expect(&c, 354, "DATA")))
		return rc;
	struct sbuf out;
	sbuf_init(&out);
	sbuf_add(&head, msg.buf ? msg.buf : "", msg.len);
	for (size_t i = 0; i < head.len;) {
		const char *nl = memchr(head.buf + i, '\n', head.len - i);
		size_t l = nl ? (size_t)(nl - (head.buf + i)) : head.len - i;
		if (head.buf[i] == '.')
			sbuf_addc(&out, '.');	/* dot-stuffing, RFC 5321 4.5.2 */
		sbuf_add(&out, head.buf + i, l);
		sbuf_adds(&out, "\r\n");
		i += l + 1;
	}
	sbuf_adds(&out, ".\r\n");
	if (write(fd, out.buf, out.len) != (ssize_t)out.len)
		die(EX_TEMPFAIL, "lost the connection to sluiced");
	if ((rc = expect(&c, 250, "end of data")))
		return rc;
	sendf(&c, "QUIT\r\n");
	return 0;
}

/* --help (usage on stdout) and --version, anywhere before "--"; exit 0 */
static void help_or_version(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help")) {
			fputs("usage: sluice-sendmail [-C sluice.conf] [-f sender] [-F fullname] [-t] [-i|-oi] [recipient...]\n"
			      "       sluice-sendmail [-C sluice.conf] -bs\n"
			      "Submits a message (stdin) into sluiced's queue over sendmail_socket.\n"
			      "  -C FILE    the config (default $SLUICE_CONF, else /etc/sluice/sluice.conf)\n"
			      "  -f, -r     envelope sender      -F  full name for a From: that is added\n"
			      "  -t         recipients from To:, Cc:, Bcc:\n"
			      "  -i, -oi    a line with a single dot does not end the message\n"
			      "  -bs        SMTP on stdin/stdout\n"
			      "  --help, --version\n", stdout);
			exit(0);
		}
		if (!strcmp(argv[i], "--version")) {
			printf("sluice-sendmail (sluice) %s\n", SLUICE_VERSION);
			exit(0);
		}
	}
}

int main(int argc, char **argv)
{
	const char *conf_path = getenv("SLUICE_CONF") ? getenv("SLUICE_CONF") : "/etc/sluice/sluice.conf";
	const char *sender = NULL, *fullname = NULL;
	int ignore_dots = 0, from_headers = 0, bs = 0, opt;
	log_set_stderr_only("sendmail");
	help_or_version(argc, argv);
	/* sendmail's options; unknown -o and -O options are accepted and ignored */
	while ((opt = getopt(argc, argv, "C:f:F:r:tib:o:O:B:N:R:V:X:vUq:")) != -1) {
		switch (opt) {
		case 'C': conf_path = optarg; break;
		case 'f':
		case 'r': sender = optarg; break;
		case 'F': fullname = optarg; break;
		case 't': from_headers = 1; break;
		case 'i': ignore_dots = 1; break;
		case 'o': if (!strcmp(optarg, "i")) ignore_dots = 1; break;
		case 'b':
			if (!strcmp(optarg, "s"))
				bs = 1;
			else if (strcmp(optarg, "m") != 0)
				die(EX_USAGE, "-b%s is not supported", optarg);
			break;
		case 'q': die(EX_USAGE, "use `sluice queue flush` to run the queue");
		default: break;
		}
	}
	char *err = NULL;
	struct conf *c = conf_load(conf_path, params_all, NULL, &err);
	if (!c)
		die(EX_UNAVAILABLE, "%s", err);
	/* a relative sendmail_socket (or queue_directory) is relative to the config's base (conf.h) */
	if (conf_enter_base_dir(c, &err) < 0)
		die(EX_UNAVAILABLE, "%s", err);
	const char *sock = conf_str(c, "sendmail_socket");
	if (bs)
		return relay_smtp(connect_socket(sock));
	char *def = NULL;
	if (!sender) {
		struct passwd *pw = getpwuid(getuid());
		def = xasprintf("%s@%s", pw ? pw->pw_name : "nobody", conf_str(c, "myorigin"));
		sender = def;
	}
	int rc = submit(sock, sender, fullname, ignore_dots, from_headers, argv + optind, argc - optind,
			conf_str(c, "myhostname"));
	free(def);
	conf_free(&c);
	return rc;
}
