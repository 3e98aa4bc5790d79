#include "lib/log.h"

#include "conf/conf.h"
#include "lib/privfile.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static struct {
	char progname[64];
	char syslog_name[64];	/* "" = program field is progname */
	char service[32];	/* this process's default service */
	int fd;			/* -1 = syslog */
	int own_fd;		/* fd opened by us (close on re-init) */
	enum log_format fmt;
	char host[256];
} L = { "sluice", "", "", 2, 0, LOG_FORMAT_PLAIN, "" };

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Per-line costs kept off the hot path: the pid is cached (and forgotten in
 * a forked child), the local time stamp is formatted once per second per
 * thread.
 */
static int log_pid_cached;	/* 0 = not known (atomic) */
static pthread_once_t log_pid_once = PTHREAD_ONCE_INIT;

static void log_pid_forget(void)
{
	__atomic_store_n(&log_pid_cached, 0, __ATOMIC_RELAXED);
}

static void log_pid_setup(void)
{
	pthread_atfork(NULL, NULL, log_pid_forget);
}

static int log_pid(void)
{
	pthread_once(&log_pid_once, log_pid_setup);
	int pid = __atomic_load_n(&log_pid_cached, __ATOMIC_RELAXED);
	if (!pid) {
		pid = (int)getpid();
		__atomic_store_n(&log_pid_cached, pid, __ATOMIC_RELAXED);
	}
	return pid;
}

/* "%b %e %H:%M:%S" of the current second, cached per thread. */
static const char *log_stamp(void)
{
	static __thread time_t sec = (time_t)-1;
	static __thread char buf[64];
	time_t now = time(NULL);
	if (now != sec) {
		struct tm tm;
		localtime_r(&now, &tm);
		if (strftime(buf, sizeof buf, "%b %e %H:%M:%S", &tm) == 0)
			buf[0] = 0;
		sec = now;
	}
	return buf;
}

const char *log_progname(void)
{
	return L.progname;
}

int log_to_stderr(void)
{
	return L.fd == 2;
}

void log_set_stderr_only(const char *progname)
{
	pthread_mutex_lock(&log_lock);
	if (L.own_fd && L.fd >= 0)
		close(L.fd);
	snprintf(L.progname, sizeof L.progname, "%s", progname);
	L.fd = 2;
	L.own_fd = 0;
	L.fmt = LOG_FORMAT_PLAIN;
	pthread_mutex_unlock(&log_lock);
}

void log_set_syslog_name(const char *name)
{
	pthread_mutex_lock(&log_lock);
	snprintf(L.syslog_name, sizeof L.syslog_name, "%s", name ? name : "");
	pthread_mutex_unlock(&log_lock);
}

void log_set_service(const char *service)
{
	pthread_mutex_lock(&log_lock);
	snprintf(L.service, sizeof L.service, "%s", service ? service : "");
	pthread_mutex_unlock(&log_lock);
}

/* The program field of one line into buf: progname, or syslog_name[/service]. */
static const char *log_program(char *buf, size_t size, const char *service)
{
	if (!L.syslog_name[0])
		return L.progname;
	if (!service || !*service)
		service = L.service;
	snprintf(buf, size, "%s%s%s", L.syslog_name, *service ? "/" : "", service);
	return buf;
}

/*
 * syslog(3) keeps the ident pointer openlog was given: each distinct
 * program field is kept here for the life of the process (a handful:
 * one per service).
 */
static const char *log_ident(const char *program)
{
	static char *idents[32];
	static size_t nidents;
	for (size_t i = 0; i < nidents; i++)
		if (strcmp(idents[i], program) == 0)
			return idents[i];
	if (nidents == sizeof idents / sizeof idents[0])
		return NULL;
	return idents[nidents++] = xstrdup(program);
}

int log_init(const char *progname, const char *file, enum log_format fmt, const char **err_out)
{
	int fd = -1, own = 0;
	if (file && *file) {
		if (strcmp(file, "/dev/stderr") == 0) {
			fd = 2;
		} else {
			fd = privfile_open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
			if (fd < 0) {
				if (err_out)
					*err_out = strerror(errno);
				return -1;
			}
			own = 1;
		}
	}
	pthread_mutex_lock(&log_lock);
	if (L.own_fd && L.fd >= 0)
		close(L.fd);
	snprintf(L.progname, sizeof L.progname, "%s", progname);
	if (fd < 0) {
		char prog[160];
		const char *id = log_ident(log_program(prog, sizeof prog, NULL));
		openlog(id ? id : "sluice", LOG_PID | LOG_NDELAY, LOG_MAIL);
	}
	L.fd = fd;
	L.own_fd = own;
	L.fmt = fmt;
	if (!L.host[0] && gethostname(L.host, sizeof L.host - 1) != 0)
		strcpy(L.host, "localhost");
	pthread_mutex_unlock(&log_lock);
	return 0;
}

/* jansson returns NULL only when out of memory here (strings are made valid) */
static json_t *log_json_ok(json_t *j)
{
	if (!j) {
		static const char m[] = "sluice: out of memory (log)\n";
		ssize_t w = write(2, m, sizeof m - 1);
		(void)w;
		exit(1);
	}
	return j;
}

/*
 * A JSON string of s[0..n): jansson takes valid UTF-8 only; bytes a peer
 * sent are not always that, and then every byte >= 0x80 becomes '?'.
 */
static json_t *log_json_str(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (j)
		return j;
	char *t = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		t[i] = (unsigned char)s[i] >= 0x80 || !s[i] ? '?' : s[i];
	t[n] = 0;
	j = log_json_ok(json_stringn(t, n));
	free(t);
	return j;
}

static void log_json_set(json_t *o, const char *key, json_t *v)
{
	if (json_object_set_new(o, key, log_json_ok(v)) < 0)
		log_json_ok(NULL);
}

/* Is s[0..] the start of a key=value token? Returns key length or 0. */
static size_t kv_key(const char *s)
{
	size_t i = 0;
	while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' ||
	       (i > 0 && ((s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.')))
		i++;
	return (i > 0 && s[i] == '=') ? i : 0;
}

/* Value ends at ", " or "; " or " " when not inside <>, [], (), "". */
static size_t kv_value(const char *s)
{
	int depth = 0, quoted = 0;
	size_t i;
	for (i = 0; s[i]; i++) {
		char c = s[i];
		if (quoted) {
			if (c == '\\' && s[i + 1])
				i++;
			else if (c == '"')
				quoted = 0;
			continue;
		}
		if (c == '"')
			quoted = 1;
		else if (c == '<' || c == '[' || c == '(')
			depth++;
		else if ((c == '>' || c == ']' || c == ')') && depth > 0)
			depth--;
		else if (depth == 0 && (c == ' ' || ((c == ',' || c == ';') && s[i + 1] == ' ')))
			break;
	}
	return i;
}

char *log_json_render(const char *program, const char *qid, const char *msg)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char ts[64], stamp[80];
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp, sizeof stamp, "%s.%03dZ", ts, (int)(tv.tv_usec / 1000));
	const char *host = L.host[0] ? L.host : "localhost";
	json_t *o = log_json_ok(json_object());
	log_json_set(o, "time", json_string(stamp));
	log_json_set(o, "host", log_json_str(host, strlen(host)));
	log_json_set(o, "program", log_json_str(program, strlen(program)));
	log_json_set(o, "pid", json_integer(log_pid()));
	if (qid)
		log_json_set(o, "queue_id", log_json_str(qid, strlen(qid)));
	log_json_set(o, "message", log_json_str(msg, strlen(msg)));
	/*
	 * key=value members: the first occurrence of a key wins, and the
	 * envelope's members above (time, host, program, pid, queue_id,
	 * message) are never replaced.
	 */
	char key[128];
	for (const char *p = msg; *p;) {
		size_t k = (p == msg || p[-1] == ' ') ? kv_key(p) : 0;
		if (!k) {
			p++;
			continue;
		}
		const char *v = p + k + 1;
		size_t vl = kv_value(v);
		if (k < sizeof key) {
			memcpy(key, p, k);
			key[k] = 0;
			if (!json_object_get(o, key) && strcmp(key, "queue_id") != 0)
				log_json_set(o, key, log_json_str(v, vl));
		}
		p = v + vl;
	}
	char *out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!out)
		log_json_ok(NULL);
	/* the caller frees with free(): jansson allocates with malloc unless told otherwise */
	return out;
}

void log_service_eventv(const char *service, const char *qid, const char *fmt, va_list ap)
{
	char *msg = xvasprintf(fmt, ap);
	/* never let a peer's bytes break the one-line rule */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	char prog[160];
	const char *program = log_program(prog, sizeof prog, service);
	if (L.fd < 0) {
		/* the ident is process-wide in syslog(3): switch it under our lock */
		static const char *ident;
		pthread_mutex_lock(&log_lock);
		const char *id = log_ident(program);
		if (id && id != ident) {
			openlog(id, LOG_PID | LOG_NDELAY, LOG_MAIL);
			ident = id;
		}
		if (qid)
			syslog(LOG_INFO, "%s: %s", qid, msg);
		else
			syslog(LOG_INFO, "%s", msg);
		pthread_mutex_unlock(&log_lock);
		free(msg);
		return;
	}
	struct sbuf b;
	sbuf_init(&b);
	if (L.fmt == LOG_FORMAT_JSON) {
		char *j = log_json_render(program, qid, msg);
		sbuf_adds(&b, j);
		free(j);
	} else {
		sbuf_printf(&b, "%s %s %s[%d]: ", log_stamp(), L.host[0] ? L.host : "localhost",
			    program, log_pid());
		if (qid)
			sbuf_printf(&b, "%s: ", qid);
		sbuf_adds(&b, msg);
	}
	sbuf_addc(&b, '\n');
	ssize_t w = write(L.fd, b.buf, b.len);
	(void)w;
	sbuf_free(&b);
	free(msg);
}

void log_eventv(const char *qid, const char *fmt, va_list ap)
{
	log_service_eventv(NULL, qid, fmt, ap);
}

void log_event(const char *qid, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_service_eventv(NULL, qid, fmt, ap);
	va_end(ap);
}

void log_service_event(const char *service, const char *qid, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_service_eventv(service, qid, fmt, ap);
	va_end(ap);
}

int log_init_conf(const char *progname, const struct conf *c, const char **err_out)
{
	return log_init(progname, conf_str(c, "maillog_file"),
			!strcmp(conf_str(c, "log_format"), "json") ? LOG_FORMAT_JSON : LOG_FORMAT_PLAIN,
			err_out);
}

void log_kv(struct sbuf *b, const char *key, const char *v)
{
	if (v == NULL)
		v = "";
	int plain = *v != 0;
	for (const char *p = v; *p && plain; p++)
		if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || *p == '(' || *p == '<' ||
		    *p == '[' || *p == ')' || *p == '>' || *p == ']' || (unsigned char)*p >= 0x7f ||
		    (*p == ',' && p[1] == ' ') || (*p == ';' && p[1] == ' '))
			plain = 0;
	sbuf_printf(b, " %s=", key);
	if (plain) {
		sbuf_adds(b, v);
		return;
	}
	sbuf_addc(b, '"');
	for (const char *p = v; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '"' || ch == '\\')
			sbuf_printf(b, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			sbuf_printf(b, "\\x%02x", ch);
		else
			sbuf_addc(b, (char)ch);
	}
	sbuf_addc(b, '"');
}
