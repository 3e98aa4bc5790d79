/*
 * start: `sluice start|stop|status|reload` - the integrated server.
 * Owns: the commands; which filter daemons run (every one with
 * <name>_enable = yes, each on a unix socket under run_directory, and
 * sluiced); wiring them into sluiced through a generated config (milters
 * first in smtpd_milters in the order dkim, dmarc, spam; policy daemons as
 * check_policy_service right after reject_unauth_destination in
 * smtpd_recipient_restrictions, spf then ratelimit); the start-up order,
 * the supervisor's signals and loop, and the reload. While a filter is
 * down sluiced applies its default action (milter_default_action,
 * smtpd_policy_service_default_action).
 * Leaves: the children's lives (starting one, readiness, restarting a
 * crashed one with backoff, the status file, stopping) to tools/supervise;
 * the one metrics port to tools/start_metrics; the daemons' own work to
 * the daemons.
 *
 * Reload (SIGHUP, `sluice reload`) follows the <name>_enable switches both
 * ways without restarting sluiced: a filter switched on is started and
 * must answer before the new wiring names it (one that does not stays out
 * of the chain, logged); the wiring is rewritten and sluiced and the
 * filters that stay are HUPed (sluiced replaces its receivers, which read
 * the new chain; the old ones finish their sessions); a filter switched off
 * leaves the status file at once and is stopped (SIGTERM) once sluiced's
 * receivers from before the reload are gone, or after
 * graceful_stop_timeout, so no session in progress meets it missing. Then
 * "reload done -- filters in sluiced's chain: ..." is logged (and READY=1
 * sent).
 *
 * Files under run_directory: sluice.pid (the supervisor), sluice.conf
 * (the generated config: the admin's file plus the wiring, last definition
 * wins as in Postfix), status (tools/supervise: one line per child: name
 * pid started socket restarts), <name>.sock.
 *
 * Relative paths (conf.h): the supervisor works in the base directory and
 * its children inherit it; the generated config names it as
 * config_directory, and its sockets and file names are absolute.
 * "started" means every daemon answered: each filter's socket accepts a
 * connection and each smtpd_listen address of sluiced greets with 220.
 * If one does not within 30s (SUPERVISE_START_TIMEOUT_S), everything is
 * stopped and `sluice start` fails (without -f, the command waits for
 * that answer).
 * Under systemd (Type=notify) READY=1 is sent then, RELOADING=1 / READY=1
 * around a reload and STOPPING=1 at the end; children do not see
 * NOTIFY_SOCKET.
 *
 * Metrics on one port (start_metrics_listen, docs/METRICS.md):
 * tools/start_metrics, told which daemons run (by tools/supervise) and
 * asked to wire each daemon's metrics address into the generated config.
 */
#include "conf/conf.h"
#include "conf/params.h"
#include "lib/daemon.h"
#include "lib/log.h"
#include "lib/sdnotify.h"
#include "lib/util.h"
#include "tools/start_metrics.h"
#include "tools/supervise.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct {
	const char *name;
	enum supervise_kind kind;
} filters[] = {
	{ "dkim", SUPERVISE_MILTER }, { "dmarc", SUPERVISE_MILTER }, { "spam", SUPERVISE_MILTER },
	{ "spf", SUPERVISE_POLICY }, { "ratelimit", SUPERVISE_POLICY },
};
#define NFILTERS (sizeof filters / sizeof filters[0])
_Static_assert(NFILTERS <= SUPERVISE_FILTERS_MAX, "supervise: room for every filter and sluiced");

/*
 * The children (tools/supervise): sv.kids[] holds the enabled filters in
 * the order of filters[] (their metrics_d is their index there) and
 * sluiced last (metrics_d NFILTERS); sv.leaving[] the filters switched
 * off at a reload, stopped once sluiced's receivers that still had them
 * in their chain are gone (see reload_progress).
 */
static struct supervise sv;
/* a reload in progress: sluiced's processes at the HUP that must be gone first */
static int reloading;
static pid_t drain_pids[256];
static size_t ndrain;
static double drain_until;
static char *run_dir, *gen_conf, *user_conf, *bindir, *base_dir;
static volatile sig_atomic_t got_hup, got_chld;

static void on_sig(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		sv.term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
}

/* wire_metrics - daemon d's own metrics parameter ("metrics_listen", "dkim_metrics_listen", ...) to start_metrics_wire */
static void wire_metrics(struct sbuf *out, const struct conf *c, size_t d)
{
	char *param = d == NFILTERS ? xstrdup("metrics_listen") : xasprintf("%s_metrics_listen", filters[d].name);
	start_metrics_wire(out, c, d, param);
	free(param);
}

static int param_known(const char *name)
{
	for (const struct conf_param *const *t = params_all; *t; t++)
		for (const struct conf_param *p = *t; p->name; p++)
			if (!strcmp(p->name, name))
				return 1;
	return 0;
}

static void join_list(struct sbuf *b, const struct conf *c, const char *param)
{
	size_t n;
	const char *const *v = conf_list(c, param, &n);
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, "%s%s", b->len && b->buf[b->len - 1] != ' ' ? ", " : "", v[i]);
}

/* sock_path - run_directory/<name>.sock (caller frees). */
static char *sock_path(const char *name)
{
	return xasprintf("%s/%s.sock", run_dir, name);
}

/*
 * wanted_filters - on_out[i] = 1 for each filters[i] with <name>_enable =
 * yes in c whose daemon is built (a warning is logged for one that is not).
 */
static void wanted_filters(const struct conf *c, int on_out[NFILTERS])
{
	for (size_t i = 0; i < NFILTERS; i++) {
		char param[64];
		on_out[i] = 0;
		snprintf(param, sizeof param, "%s_enable", filters[i].name);
		if (!param_known(param) || !conf_bool(c, param))
			continue;
		char *bin = xasprintf("%s/sluice-%s", bindir, filters[i].name);
		if (access(bin, X_OK) != 0)
			log_event(NULL, "warning: %s = yes, but sluice-%s is not built yet: skipped", param,
				  filters[i].name);
		else
			on_out[i] = 1;
		free(bin);
	}
}

/* new_filter - *k set up (not started) for filters[i]. */
static void new_filter(struct supervise_child *k, size_t i)
{
	memset(k, 0, sizeof *k);
	k->name = filters[i].name;
	k->kind = filters[i].kind;
	k->metrics_d = i;
	k->bin = xasprintf("%s/sluice-%s", bindir, filters[i].name);
	k->sock = sock_path(k->name);
	k->backoff_s = 1;
}

/* select_filters - sv.kids[] for the filters in on[] (at start). */
static void select_filters(const int on[NFILTERS])
{
	sv.nkids = 0;
	for (size_t i = 0; i < NFILTERS; i++)
		if (on[i])
			new_filter(&sv.kids[sv.nkids++], i);
}

/* filter_on - whether the filter called name is in on[]. */
static int filter_on(const int on[NFILTERS], const char *name)
{
	for (size_t i = 0; i < NFILTERS; i++)
		if (!strcmp(filters[i].name, name))
			return on[i];
	return 0;
}

/*
 * write_generated - the admin's config (c, read from user_conf) followed by
 * the wiring for the filters in on[] (indexes of filters[]), written to
 * gen_conf through a rename. Returns 0 or -1 with *err_out (caller frees).
 */
static int write_generated(const struct conf *c, const int on[NFILTERS], char **err_out)
{
	struct sbuf milters, policies, out;
	sbuf_init(&milters);
	sbuf_init(&policies);
	sbuf_init(&out);
	for (size_t i = 0; i < NFILTERS; i++) {
		if (!on[i])
			continue;
		char *sock = sock_path(filters[i].name);
		if (filters[i].kind == SUPERVISE_MILTER)
			sbuf_printf(&milters, "%sunix:%s", milters.len ? ", " : "", sock);
		else
			sbuf_printf(&policies, " check_policy_service unix:%s", sock);
		free(sock);
	}
	char *text = NULL;
	size_t len = 0;
	if (conf_read_file(user_conf, 16 << 20, &text, &len, err_out) < 0) {
		sbuf_free(&milters);
		sbuf_free(&policies);
		sbuf_free(&out);
		return -1;
	}
	sbuf_add(&out, text, len);
	free(text);
	sbuf_printf(&out, "\n# ---- added by `sluice start` (the file above is %s) ----\n", user_conf);
	/* relative paths above stay relative to the admin's file, not to this one */
	sbuf_printf(&out, "config_directory = %s\n", base_dir);
	for (size_t i = 0; i < NFILTERS; i++)
		if (on[i])
			wire_metrics(&out, c, i);
	wire_metrics(&out, c, NFILTERS);
	for (size_t i = 0; i < NFILTERS; i++)
		if (on[i]) {
			char *sock = sock_path(filters[i].name);
			sbuf_printf(&out, "%s_socket = unix:%s\n", filters[i].name, sock);
			free(sock);
		}
	/*
	 * In the integrated chain sluiced removes forged Authentication-Results
	 * at ingress and sluice-dkim verifies ahead of sluice-dmarc: DMARC takes
	 * the DKIM results from our own header instead of verifying twice
	 * (OpenDMARC's model), unless the admin chose otherwise.
	 */
	if (filter_on(on, "dkim") && filter_on(on, "dmarc") && !conf_is_set(c, "dmarc_self_validate"))
		sbuf_adds(&out, "dmarc_self_validate = no\n");
	if (milters.len) {
		sbuf_printf(&out, "smtpd_milters = %s", milters.buf);
		struct sbuf rest;
		sbuf_init(&rest);
		join_list(&rest, c, "smtpd_milters");
		if (rest.len)
			sbuf_printf(&out, ", %s", rest.buf);
		sbuf_adds(&out, "\n");
		sbuf_free(&rest);
	}
	if (policies.len) {
		/*
		 * The policies go right after reject_unauth_destination, or first
		 * when the list has none (then the relay restrictions keep
		 * relaying closed). The line is built apart: the admin's own
		 * smtpd_recipient_restrictions line above must stay as it is.
		 */
		size_t n, at = 0;
		const char *const *v = conf_list(c, "smtpd_recipient_restrictions", &n);
		for (size_t i = 0; i < n; i++)
			if (!strcmp(v[i], "reject_unauth_destination")) {
				at = i + 1;
				break;
			}
		sbuf_adds(&out, "smtpd_recipient_restrictions =");
		for (size_t i = 0; i < at; i++)
			sbuf_printf(&out, " %s", v[i]);
		sbuf_add(&out, policies.buf, policies.len);
		for (size_t i = at; i < n; i++)
			sbuf_printf(&out, " %s", v[i]);
		sbuf_adds(&out, "\n");
	}
	char *tmpname = xasprintf("%s.tmp", gen_conf);
	const char *what = NULL;
	int fd = open(tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t w = fd >= 0 ? write(fd, out.buf, out.len) : -1;
	if (fd < 0)
		what = "cannot create";
	else if (w != (ssize_t)out.len)
		what = "cannot write";
	else if (fsync(fd) < 0)
		what = "cannot fsync";
	int e = what ? (w >= 0 && fd >= 0 && !errno ? ENOSPC : errno) : 0;
	if (fd >= 0 && close(fd) < 0 && !what) {
		what = "cannot write";
		e = errno;
	}
	int ret = 0;
	if (what) {
		*err_out = xasprintf("%s: %s: %s", tmpname, what, strerror(e));
		ret = -1;
	} else if (rename(tmpname, gen_conf) < 0) {
		*err_out = xasprintf("%s: cannot rename to %s: %s", tmpname, gen_conf, strerror(errno));
		ret = -1;
	}
	free(tmpname);
	sbuf_free(&milters);
	sbuf_free(&policies);
	sbuf_free(&out);
	return ret;
}

static pid_t ppid_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* "pid (comm) S ppid ...": comm may hold anything, so from the last ')' */
	const char *rp = strrchr(buf, ')');
	char state;
	int ppid;
	if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2 || state == 'Z')
		return -1;
	return (pid_t)ppid;
}

/*
 * children_of - up to max pids whose parent is parent (a scan of /proc).
 * Returns how many were stored.
 */
static size_t children_of(pid_t parent, pid_t *out, size_t max)
{
	size_t n = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		if (ppid_of((pid_t)pid) == parent)
			out[n++] = (pid_t)pid;
	}
	closedir(d);
	return n;
}

/*
 * drained - whether sluiced's processes from before the last HUP are gone
 * but one: sluiced's master replaces every receiver at a reload (the old
 * ones finish their sessions first, mta/main.c) and its queue manager
 * reloads in place, so once at most one of them is left, every receiver
 * runs with the new chain.
 */
static int drained(void)
{
	pid_t mta = supervise_sluiced_pid(&sv);
	size_t left = 0;
	if (mta <= 0)
		return 1;	/* a sluiced started from now on reads the new config */
	for (size_t i = 0; i < ndrain; i++)
		if (ppid_of(drain_pids[i]) == mta)
			left++;
	return left <= 1;
}

/* names - "dkim, spf" for the filters in on[] (or "none"); caller frees. */
static char *names(const int on[NFILTERS])
{
	struct sbuf b;
	sbuf_init(&b);
	for (size_t i = 0; i < NFILTERS; i++)
		if (on[i])
			sbuf_printf(&b, "%s%s", b.len ? ", " : "", filters[i].name);
	if (!b.len)
		sbuf_adds(&b, "none");
	char *s = xstrdup(b.buf);
	sbuf_free(&b);
	return s;
}

/*
 * reload_progress - the second half of a reload, from the supervisor's
 * loop: once sluiced's old receivers are gone (or graceful_stop_timeout
 * has passed), the filters switched off are stopped (SIGTERM, SIGKILL after
 * 30s); once they have exited, the reload is done: logged, and READY=1.
 */
static void reload_progress(void)
{
	if (!reloading)
		return;
	double now = wall_time();
	int done = drained();
	if (!done && now < drain_until)
		return;
	if (!done) {
		log_event(NULL, "warning: reload: sluiced's old receivers still have sessions after "
			  "graceful_stop_timeout; stopping the filters switched off anyway");
		ndrain = 0;	/* do not say it again */
	}
	for (size_t i = 0; i < sv.nleaving; i++) {
		struct supervise_child *l = &sv.leaving[i];
		if (!l->stopping) {
			l->stopping = 1;
			l->kill_at = now + 30;
			kill(l->pid, SIGTERM);
		} else if (now > l->kill_at) {
			kill(l->pid, SIGKILL);
			l->kill_at = now + 60;
		}
	}
	if (sv.nleaving)
		return;
	reloading = 0;
	int on[NFILTERS] = { 0 };
	for (size_t i = 0; i < sv.nkids; i++)
		for (size_t j = 0; j < NFILTERS; j++)
			if (!strcmp(sv.kids[i].name, filters[j].name))
				on[j] = 1;
	char *list = names(on);
	log_event(NULL, "reload done -- filters in sluiced's chain: %s", list);
	free(list);
	supervise_write_status(&sv);
	sdnotify("READY=1");
}

/*
 * reload - SIGHUP: read the admin's config again; start the filters
 * switched on (each must answer, or it stays out of the chain), write the
 * wiring for the new set, HUP the daemons that keep running (sluiced
 * replaces its receivers, which read the new chain) and put the filters
 * switched off in sv.leaving[] for reload_progress. A config that does not
 * load, or a wiring that cannot be written, changes nothing.
 */
static void reload(void)
{
	sdnotify("RELOADING=1");
	char *err = NULL;
	struct conf *c = conf_load(user_conf, params_all, NULL, &err);
	if (!c) {
		log_event(NULL, "warning: reload: %s; keeping the running configuration", err);
		free(err);
		if (!reloading)
			sdnotify("READY=1");
		return;
	}
	int on[NFILTERS], was[NFILTERS] = { 0 }, fresh[NFILTERS] = { 0 };
	wanted_filters(c, on);
	for (size_t i = 0; i < sv.nkids; i++)
		for (size_t j = 0; j < NFILTERS; j++)
			if (!strcmp(sv.kids[i].name, filters[j].name))
				was[j] = 1;
	/* the new wiring first: the filters started below read their settings from it */
	if (write_generated(c, on, &err) < 0) {
		log_event(NULL, "warning: reload: %s; keeping the running configuration", err);
		free(err);
		conf_free(&c);
		if (!reloading)
			sdnotify("READY=1");
		return;
	}
	struct supervise_child next[NFILTERS + 1];
	size_t nnext = 0;
	int rewrite = 0;
	for (size_t j = 0; j < NFILTERS; j++) {
		struct supervise_child *cur = NULL;
		for (size_t i = 0; i < sv.nkids; i++)
			if (!strcmp(sv.kids[i].name, filters[j].name))
				cur = &sv.kids[i];
		if (cur && on[j]) {
			next[nnext++] = *cur;
			continue;
		}
		if (cur) {	/* switched off: stopped by reload_progress */
			if (cur->pid > 0 && sv.nleaving < NFILTERS) {
				sv.leaving[sv.nleaving] = *cur;
				sv.leaving[sv.nleaving].stopping = 0;
				sv.nleaving++;
			} else {	/* down, waiting for its restart: it stays down */
				unlink(cur->sock);
				supervise_child_free(cur);
			}
			continue;
		}
		if (!on[j])
			continue;
		/* switched on; still running if it was switched off a moment ago */
		size_t li = sv.nleaving;
		for (size_t i = 0; i < sv.nleaving; i++)
			if (!strcmp(sv.leaving[i].name, filters[j].name))
				li = i;
		if (li < sv.nleaving && !sv.leaving[li].stopping) {
			next[nnext++] = sv.leaving[li];
			sv.leaving[li] = sv.leaving[--sv.nleaving];
			log_event(NULL, "%s (pid %d) switched on again before it was stopped", filters[j].name,
				  (int)next[nnext - 1].pid);
			continue;
		}
		if (li < sv.nleaving) {	/* on its way out: let it go first (its socket) */
			supervise_stop_wait(&sv.leaving[li], 30);
			supervise_child_free(&sv.leaving[li]);
			sv.leaving[li] = sv.leaving[--sv.nleaving];
		}
		struct supervise_child k;
		new_filter(&k, j);
		supervise_spawn(&sv, &k);
		int st;
		if (supervise_wait_ready(&sv, &k, SUPERVISE_START_TIMEOUT_S, &st) < 0) {
			char *why = supervise_not_ready_reason(&sv, &k, st);
			log_event(NULL, "warning: reload: %s; %s stays out of sluiced's chain", why, k.name);
			free(why);
			supervise_stop_wait(&k, 30);
			unlink(k.sock);
			supervise_child_free(&k);
			on[j] = 0;
			rewrite = 1;
			continue;
		}
		log_event(NULL, "%s switched on: ready on unix:%s (pid %d)", k.name, k.sock, (int)k.pid);
		fresh[j] = 1;
		next[nnext++] = k;
	}
	for (size_t i = 0; i < sv.nkids; i++)
		if (sv.kids[i].kind == SUPERVISE_MTA)
			next[nnext++] = sv.kids[i];
	memcpy(sv.kids, next, nnext * sizeof *sv.kids);
	sv.nkids = nnext;
	if (rewrite && write_generated(c, on, &err) < 0) {
		log_event(NULL, "warning: reload: %s", err);
		free(err);
	}
	conf_free(&c);
	/* sluiced's processes now, to know when all of its receivers run the new chain */
	pid_t mta = supervise_sluiced_pid(&sv);
	ndrain = mta > 0 ? children_of(mta, drain_pids, sizeof drain_pids / sizeof drain_pids[0]) : 0;
	drain_until = wall_time() + 30;
	struct conf *g = conf_load(gen_conf, params_all, NULL, &err);
	if (g) {
		drain_until = wall_time() + (double)conf_time_s(g, "graceful_stop_timeout");
		conf_free(&g);
	} else {
		free(err);
	}
	for (size_t i = 0; i < sv.nkids; i++) {
		int is_fresh = 0;
		for (size_t j = 0; j < NFILTERS; j++)
			if (fresh[j] && !strcmp(sv.kids[i].name, filters[j].name))
				is_fresh = 1;
		if (sv.kids[i].pid > 0 && !is_fresh)
			kill(sv.kids[i].pid, SIGHUP);
	}
	struct sbuf sw;
	sbuf_init(&sw);
	for (size_t j = 0; j < NFILTERS; j++)
		if (on[j] != was[j])
			sbuf_printf(&sw, " %s%s", on[j] ? "+" : "-", filters[j].name);
	log_event(NULL, "reload -- configuration %s%s%s", user_conf, sw.len ? "; switched:" : "",
		  sw.len ? sw.buf : "");
	sbuf_free(&sw);
	reloading = 1;
	supervise_write_status(&sv);
}

static void supervise(void)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (;;) {
		/* short waits while a reload waits for sluiced's old receivers */
		struct timespec ts = { 0, (reloading ? 20 : 200) * 1000 * 1000 };
		int sig = sigtimedwait(&block, NULL, &ts);
		if (sig > 0)
			on_sig(sig);
		if (got_chld) {
			got_chld = 0;
			supervise_reap(&sv);
		}
		if (sv.term)
			break;
		if (got_hup) {
			got_hup = 0;
			reload();
		}
		reload_progress();
		supervise_restart_due(&sv);
	}
	log_event(NULL, "stopping");
	sdnotify("STOPPING=1");
	supervise_stop_all(&sv);
	for (size_t i = 0; i < sv.nleaving; i++)
		unlink(sv.leaving[i].sock);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* mkdir_parents - mkdir -p path (new directories get mode); 0 or -1 with *err_out "path: reason". */
static int mkdir_parents(const char *path, mode_t mode, char **err_out)
{
	char *p = xstrdup(path);
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			*err_out = xasprintf("%s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return 0;
}

/*
 * detach_and_wait - into the background (new session, stdio on /dev/null);
 * the command itself waits until the supervisor reports, prints the result
 * and exits 0 (all daemons answer) or 1. Returns the supervisor's end of
 * the report pipe.
 */
static int detach_and_wait(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		char buf[4096];
		size_t got = 0;
		ssize_t n;
		while (got < sizeof buf - 1 && (n = read(p[0], buf + got, sizeof buf - 1 - got)) != 0)
			if (n > 0)
				got += (size_t)n;
			else if (errno != EINTR)
				break;
		buf[got] = 0;
		if (!strncmp(buf, "ok", 2)) {
			printf("sluice: started (generated config %s)\n", gen_conf);
			exit(0);
		}
		fprintf(stderr, "sluice: not started: %s\n", got ? buf : "the supervisor exited during start-up");
		exit(1);
	}
	close(p[0]);
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return p[1];
}

/* report - tell the waiting command "ok" (why == NULL) or why not; closes fd. */
static void report(int fd, const char *why)
{
	if (fd < 0)
		return;
	const char *msg = why ? why : "ok";
	(void)!write(fd, msg, strlen(msg));
	close(fd);
}

static int pid_alive(pid_t pid);

static int start_main(int argc, char **argv)
{
	int foreground = 0, opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "c:f")) != -1) {
		if (opt == 'c')
			user_conf = optarg;
		else if (opt == 'f')
			foreground = 1;
		else
			return 2;
	}
	if (!user_conf) {
		fprintf(stderr, "usage: sluice start [-f] -c sluice.conf\n");
		return 2;
	}
	char *err = NULL;
	struct conf *c = conf_load(user_conf, params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	/* relative paths: from the base directory, for us and every child (conf.h) */
	char *abs_conf = realpath(user_conf, NULL);
	if (!abs_conf) {
		fprintf(stderr, "sluice: %s: %s\n", user_conf, strerror(errno));
		return 1;
	}
	base_dir = conf_base_dir(c, &err);
	if (!base_dir) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	if (chdir(base_dir) < 0) {
		fprintf(stderr, "sluice: chdir %s: %s\n", base_dir, strerror(errno));
		return 1;
	}
	user_conf = abs_conf;
	const char *logerr;
	if (log_init("sluice", conf_str(c, "maillog_file"),
		     strcmp(conf_str(c, "log_format"), "json") ? LOG_FORMAT_PLAIN : LOG_FORMAT_JSON, &logerr) < 0) {
		fprintf(stderr, "sluice: %s: maillog_file %s: %s\n", conf_where(c, "maillog_file"),
			conf_str(c, "maillog_file"), logerr);
		return 1;
	}
	bindir = daemon_self_dir();
	run_dir = conf_abs_path(base_dir, conf_str(c, "run_directory"));
	if (mkdir_parents(run_dir, 0755, &err) < 0) {
		fprintf(stderr, "sluice: %s: run_directory %s\n", conf_where(c, "run_directory"), err);
		return 1;
	}
	char *real_run = realpath(run_dir, NULL);	/* no "conf/../": socket paths are short */
	if (real_run) {
		free(run_dir);
		run_dir = real_run;
	}
	gen_conf = xasprintf("%s/sluice.conf", run_dir);
	sv.run_dir = run_dir;
	sv.gen_conf = gen_conf;
	char *pidfile = xasprintf("%s/sluice.pid", run_dir);
	FILE *pf = fopen(pidfile, "r");
	int other = 0;
	if (pf && fscanf(pf, "%d", &other) == 1 && other > 0 && other != getpid() && pid_alive(other)) {
		/* a second supervisor would take over the sockets of the first */
		fprintf(stderr, "sluice: already running (pid %d in %s)\n", other, pidfile);
		fclose(pf);
		return 1;
	}
	if (pf)
		fclose(pf);
	if (start_metrics_bind(c, NFILTERS + 1, &err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	int on[NFILTERS];
	wanted_filters(c, on);
	select_filters(on);
	if (write_generated(c, on, &err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	const char *const *ls = conf_list(c, "smtpd_listen", &sv.n_mta_listen);
	sv.mta_listen = xcalloc(sv.n_mta_listen + 1, sizeof *sv.mta_listen);
	for (size_t i = 0; i < sv.n_mta_listen; i++)
		sv.mta_listen[i] = xstrdup(ls[i]);
	conf_free(&c);
	struct supervise_child *m = &sv.kids[sv.nkids++];
	memset(m, 0, sizeof *m);
	m->name = "sluiced";
	m->kind = SUPERVISE_MTA;
	m->metrics_d = NFILTERS;
	m->bin = xasprintf("%s/sluiced", bindir);
	m->backoff_s = 1;
	int report_fd = -1;
	if (!foreground)
		report_fd = detach_and_wait();
	if (daemon_pidfile(pidfile, &err) < 0) {
		log_event(NULL, "fatal: %s", err);
		report(report_fd, err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	supervise_publish_targets(&sv);
	if (start_metrics_serve(&err) < 0) {
		log_event(NULL, "fatal: %s", err);
		report(report_fd, err);
		unlink(pidfile);
		return 1;
	}
	struct sigaction sa = { 0 };
	sa.sa_handler = on_sig;
	sigaction(SIGCHLD, &sa, NULL);
	/* a stop while starting stops what has started (no orphans) */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	for (size_t i = 0; i < sv.nkids; i++) {
		struct supervise_child *k = &sv.kids[i];
		supervise_spawn(&sv, k);
		int st;
		if (supervise_wait_ready(&sv, k, SUPERVISE_START_TIMEOUT_S, &st) < 0) {
			char *why = supervise_not_ready_reason(&sv, k, st);
			log_event(NULL, "fatal: %s; stopping (its log says why)", why);
			report(report_fd, why);
			free(why);
			sv.term = 1;	/* no restarts while stopping */
			supervise_stop_all(&sv);
			supervise_write_status(&sv);
			start_metrics_stop();
			unlink(pidfile);
			return 1;
		}
		if (k->sock)
			log_event(NULL, "%s ready on unix:%s (pid %d)", k->name, k->sock, (int)k->pid);
		else
			log_event(NULL, "sluiced ready on %s (pid %d)", sv.n_mta_listen ? sv.mta_listen[0] : "-",
				  (int)k->pid);
	}
	supervise_write_status(&sv);
	log_event(NULL, "started: %zu filter(s) and sluiced, all answering; generated config %s", sv.nkids - 1,
		  gen_conf);
	report(report_fd, NULL);
	char *ready = xasprintf("READY=1\nSTATUS=%zu filter(s) and sluiced answering", sv.nkids - 1);
	if (sdnotify(ready) < 0)
		log_event(NULL, "warning: sd_notify: %s", strerror(errno));
	free(ready);
	supervise();
	start_metrics_stop();
	unlink(pidfile);
	free(pidfile);
	log_event(NULL, "stopped");
	return 0;
}

/* alive and not a zombie waiting for its parent */
static int pid_alive(pid_t pid)
{
	if (kill(pid, 0) != 0)
		return 0;
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	return !(rp && rp[1] == ' ' && rp[2] == 'Z');
}

/*
 * read_pid - the supervisor's pid from run_directory/sluice.pid. 0, or -1
 * with *why_out (caller frees; NULL when the config itself failed, which
 * is printed here) naming the file and what is wrong with it.
 */
static int read_pid(const char *conf_path, pid_t *pid_out, char **rundir_out, char **why_out)
{
	*why_out = NULL;
	char *err = NULL;
	struct conf *c = conf_load(conf_path, params_all, NULL, &err);
	if (!c) {
		fprintf(stderr, "sluice: %s\n", err);
		return -1;
	}
	char *base = conf_base_dir(c, &err);
	if (!base) {
		fprintf(stderr, "sluice: %s\n", err);
		conf_free(&c);
		return -1;
	}
	*rundir_out = conf_abs_path(base, conf_str(c, "run_directory"));
	free(base);
	conf_free(&c);
	char *p = xasprintf("%s/sluice.pid", *rundir_out);
	FILE *f = fopen(p, "r");
	int pid = 0;
	if (!f)
		*why_out = xasprintf("%s: %s", p, strerror(errno));
	else if (fscanf(f, "%d", &pid) != 1 || pid <= 0)
		*why_out = xasprintf("%s: no pid in it", p);
	else if (!pid_alive(pid))
		*why_out = xasprintf("%s: pid %d is not running", p, pid);
	if (f)
		fclose(f);
	free(p);
	if (*why_out)
		return -1;
	*pid_out = pid;
	return 0;
}

static const char *conf_arg(int argc, char **argv)
{
	int opt;
	const char *path = NULL;
	optind = 2;
	while ((opt = getopt(argc, argv, "c:")) != -1)
		if (opt == 'c')
			path = optarg;
	return path;
}

static int signal_main(int argc, char **argv, int sig, const char *what)
{
	const char *path = conf_arg(argc, argv);
	pid_t pid;
	char *rd = NULL, *why = NULL;
	if (!path) {
		fprintf(stderr, "usage: sluice %s -c sluice.conf\n", argv[1]);
		return 2;
	}
	if (read_pid(path, &pid, &rd, &why) < 0) {
		if (why)
			fprintf(stderr, "sluice: not running (%s)\n", why);
		free(why);
		free(rd);
		return 1;
	}
	free(rd);
	kill(pid, sig);
	if (sig == SIGTERM)
		while (pid_alive(pid))
			usleep(50000);
	printf("sluice: %s\n", what);
	return 0;
}

static int status_main(int argc, char **argv)
{
	const char *path = conf_arg(argc, argv);
	pid_t pid;
	char *rd = NULL, *why = NULL;
	if (!path) {
		fprintf(stderr, "usage: sluice status -c sluice.conf\n");
		return 2;
	}
	if (read_pid(path, &pid, &rd, &why) < 0) {
		if (why)
			printf("sluice: not running (%s)\n", why);
		free(why);
		free(rd);
		return 1;
	}
	printf("supervisor pid %d\n%-10s %7s %-20s %8s  %s\n", (int)pid, "daemon", "pid", "up since", "restarts",
	       "socket");
	char *sp = xasprintf("%s/status", rd);
	free(rd);
	FILE *f = fopen(sp, "r");
	if (!f)
		fprintf(stderr, "sluice: %s: %s\n", sp, strerror(errno));
	char name[64], sock[4096];
	int cpid;
	double started;
	unsigned restarts;
	while (f && fscanf(f, "%63s %d %lf %4095s %u", name, &cpid, &started, sock, &restarts) == 5) {
		time_t t = (time_t)started;
		char when[32];
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&t));
		int alive = cpid > 0 && pid_alive(cpid);
		printf("%-10s %7d %-20s %8u  %s%s\n", name, cpid, when, restarts, sock, alive ? "" : "  (down)");
	}
	if (f)
		fclose(f);
	free(sp);
	return 0;
}

/* sluice start|stop|status|reload; returns -1 when cmd is none of these */
int start_dispatch(int argc, char **argv)
{
	const char *cmd = argv[1];
	if (!strcmp(cmd, "start"))
		return start_main(argc, argv);
	if (!strcmp(cmd, "stop"))
		return signal_main(argc, argv, SIGTERM, "stopped");
	if (!strcmp(cmd, "reload"))
		return signal_main(argc, argv, SIGHUP, "reloading");
	if (!strcmp(cmd, "status"))
		return status_main(argc, argv);
	return -1;
}
