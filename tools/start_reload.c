/*
 * start_reload: which filters run and the generated config, at start and
 * at each reload; the contract is in start_reload.h.
 */
#include "tools/start_reload.h"

#include "conf/conf.h"
#include "conf/params.h"
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
#include <unistd.h>

/*
 * The filters, in the order of the wiring. An index here is the daemon's
 * index for tools/start_metrics (metrics_d); sluiced's is NFILTERS.
 */
static const struct {
	const char *name;
	enum supervise_kind kind;
} filters[] = {
	{ "dkim", SUPERVISE_MILTER }, { "dmarc", SUPERVISE_MILTER }, { "spam", SUPERVISE_MILTER },
	{ "spf", SUPERVISE_POLICY }, { "ratelimit", SUPERVISE_POLICY },
};
#define NFILTERS (sizeof filters / sizeof filters[0])
_Static_assert(NFILTERS <= SUPERVISE_FILTERS_MAX, "supervise: room for every filter and sluiced");

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
static char *sock_path(const struct start_reload *r, const char *name)
{
	return xasprintf("%s/%s.sock", r->run_dir, name);
}

/*
 * wanted_filters - on_out[i] = 1 for each filters[i] with <name>_enable =
 * yes in c whose daemon is built (a warning is logged for one that is not).
 */
static void wanted_filters(const struct start_reload *r, const struct conf *c, int on_out[NFILTERS])
{
	for (size_t i = 0; i < NFILTERS; i++) {
		char param[64];
		on_out[i] = 0;
		snprintf(param, sizeof param, "%s_enable", filters[i].name);
		if (!param_known(param) || !conf_bool(c, param))
			continue;
		char *bin = xasprintf("%s/sluice-%s", r->bindir, filters[i].name);
		if (access(bin, X_OK) != 0)
			log_event(NULL, "warning: %s = yes, but sluice-%s is not built yet: skipped", param,
				  filters[i].name);
		else
			on_out[i] = 1;
		free(bin);
	}
}

/* new_filter - *k set up (not started) for filters[i]. */
static void new_filter(const struct start_reload *r, struct supervise_child *k, size_t i)
{
	memset(k, 0, sizeof *k);
	k->name = filters[i].name;
	k->kind = filters[i].kind;
	k->metrics_d = i;
	k->bin = xasprintf("%s/sluice-%s", r->bindir, filters[i].name);
	k->sock = sock_path(r, k->name);
	k->backoff_s = 1;
}

/* select_filters - sv->kids[] for the filters in on[] (at start). */
static void select_filters(struct start_reload *r, const int on[NFILTERS])
{
	r->sv->nkids = 0;
	for (size_t i = 0; i < NFILTERS; i++)
		if (on[i])
			new_filter(r, &r->sv->kids[r->sv->nkids++], i);
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
static int write_generated(const struct start_reload *r, const struct conf *c, const int on[NFILTERS],
			   char **err_out)
{
	struct sbuf milters, policies, out;
	sbuf_init(&milters);
	sbuf_init(&policies);
	sbuf_init(&out);
	for (size_t i = 0; i < NFILTERS; i++) {
		if (!on[i])
			continue;
		char *sock = sock_path(r, filters[i].name);
		if (filters[i].kind == SUPERVISE_MILTER)
			sbuf_printf(&milters, "%sunix:%s", milters.len ? ", " : "", sock);
		else
			sbuf_printf(&policies, " check_policy_service unix:%s", sock);
		free(sock);
	}
	char *text = NULL;
	size_t len = 0;
	if (conf_read_file(r->user_conf, 16 << 20, &text, &len, err_out) < 0) {
		sbuf_free(&milters);
		sbuf_free(&policies);
		sbuf_free(&out);
		return -1;
	}
	sbuf_add(&out, text, len);
	free(text);
	sbuf_printf(&out, "\n# ---- added by `sluice start` (the file above is %s) ----\n", r->user_conf);
	/* relative paths above stay relative to the admin's file, not to this one */
	sbuf_printf(&out, "config_directory = %s\n", r->base_dir);
	for (size_t i = 0; i < NFILTERS; i++)
		if (on[i])
			wire_metrics(&out, c, i);
	wire_metrics(&out, c, NFILTERS);
	for (size_t i = 0; i < NFILTERS; i++)
		if (on[i]) {
			char *sock = sock_path(r, filters[i].name);
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
	char *tmpname = xasprintf("%s.tmp", r->gen_conf);
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
	} else if (rename(tmpname, r->gen_conf) < 0) {
		*err_out = xasprintf("%s: cannot rename to %s: %s", tmpname, r->gen_conf, strerror(errno));
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
static int drained(const struct start_reload *r)
{
	pid_t mta = supervise_sluiced_pid(r->sv);
	size_t left = 0;
	if (mta <= 0)
		return 1;	/* a sluiced started from now on reads the new config */
	for (size_t i = 0; i < r->ndrain; i++)
		if (ppid_of(r->drain_pids[i]) == mta)
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

void start_reload_progress(struct start_reload *r)
{
	if (!r->reloading)
		return;
	double now = wall_time();
	int done = drained(r);
	if (!done && now < r->drain_until)
		return;
	if (!done) {
		log_event(NULL, "warning: reload: sluiced's old receivers still have sessions after "
			  "graceful_stop_timeout; stopping the filters switched off anyway");
		r->ndrain = 0;	/* do not say it again */
	}
	for (size_t i = 0; i < r->sv->nleaving; i++) {
		struct supervise_child *l = &r->sv->leaving[i];
		if (!l->stopping) {
			l->stopping = 1;
			l->kill_at = now + 30;
			kill(l->pid, SIGTERM);
		} else if (now > l->kill_at) {
			kill(l->pid, SIGKILL);
			l->kill_at = now + 60;
		}
	}
	if (r->sv->nleaving)
		return;
	r->reloading = 0;
	int on[NFILTERS] = { 0 };
	for (size_t i = 0; i < r->sv->nkids; i++)
		for (size_t j = 0; j < NFILTERS; j++)
			if (!strcmp(r->sv->kids[i].name, filters[j].name))
				on[j] = 1;
	char *list = names(on);
	log_event(NULL, "reload done -- filters in sluiced's chain: %s", list);
	free(list);
	supervise_write_status(r->sv);
	sdnotify("READY=1");
}

void start_reload_begin(struct start_reload *r)
{
	sdnotify("RELOADING=1");
	char *err = NULL;
	struct conf *c = conf_load(r->user_conf, params_all, NULL, &err);
	if (!c) {
		log_event(NULL, "warning: reload: %s; keeping the running configuration", err);
		free(err);
		if (!r->reloading)
			sdnotify("READY=1");
		return;
	}
	int on[NFILTERS], was[NFILTERS] = { 0 }, fresh[NFILTERS] = { 0 };
	wanted_filters(r, c, on);
	for (size_t i = 0; i < r->sv->nkids; i++)
		for (size_t j = 0; j < NFILTERS; j++)
			if (!strcmp(r->sv->kids[i].name, filters[j].name))
				was[j] = 1;
	/* the new wiring first: the filters started below read their settings from it */
	if (write_generated(r, c, on, &err) < 0) {
		log_event(NULL, "warning: reload: %s; keeping the running configuration", err);
		free(err);
		conf_free(&c);
		if (!r->reloading)
			sdnotify("READY=1");
		return;
	}
	struct supervise_child next[NFILTERS + 1];
	size_t nnext = 0;
	int rewrite = 0;
	for (size_t j = 0; j < NFILTERS; j++) {
		struct supervise_child *cur = NULL;
		for (size_t i = 0; i < r->sv->nkids; i++)
			if (!strcmp(r->sv->kids[i].name, filters[j].name))
				cur = &r->sv->kids[i];
		if (cur && on[j]) {
			next[nnext++] = *cur;
			continue;
		}
		if (cur) {	/* switched off: stopped by reload_progress */
			if (cur->pid > 0 && r->sv->nleaving < NFILTERS) {
				r->sv->leaving[r->sv->nleaving] = *cur;
				r->sv->leaving[r->sv->nleaving].stopping = 0;
				r->sv->nleaving++;
			} else {	/* down, waiting for its restart: it stays down */
				unlink(cur->sock);
				supervise_child_free(cur);
			}
			continue;
		}
		if (!on[j])
			continue;
		/* switched on; still running if it was switched off a moment ago */
		size_t li = r->sv->nleaving;
		for (size_t i = 0; i < r->sv->nleaving; i++)
			if (!strcmp(r->sv->leaving[i].name, filters[j].name))
				li = i;
		if (li < r->sv->nleaving && !r->sv->leaving[li].stopping) {
			next[nnext++] = r->sv->leaving[li];
			r->sv->leaving[li] = r->sv->leaving[--r->sv->nleaving];
			log_event(NULL, "%s (pid %d) switched on again before it was stopped", filters[j].name,
				  (int)next[nnext - 1].pid);
			continue;
		}
		if (li < r->sv->nleaving) {	/* on its way out: let it go first (its socket) */
			supervise_stop_wait(&r->sv->leaving[li], 30);
			supervise_child_free(&r->sv->leaving[li]);
			r->sv->leaving[li] = r->sv->leaving[--r->sv->nleaving];
		}
		struct supervise_child k;
		new_filter(r, &k, j);
		supervise_spawn(r->sv, &k);
		int st;
		if (supervise_wait_ready(r->sv, &k, SUPERVISE_START_TIMEOUT_S, &st) < 0) {
			char *why = supervise_not_ready_reason(r->sv, &k, st);
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
	for (size_t i = 0; i < r->sv->nkids; i++)
		if (r->sv->kids[i].kind == SUPERVISE_MTA)
			next[nnext++] = r->sv->kids[i];
	memcpy(r->sv->kids, next, nnext * sizeof *r->sv->kids);
	r->sv->nkids = nnext;
	if (rewrite && write_generated(r, c, on, &err) < 0) {
		log_event(NULL, "warning: reload: %s", err);
		free(err);
	}
	conf_free(&c);
	/* sluiced's processes now, to know when all of its receivers run the new chain */
	pid_t mta = supervise_sluiced_pid(r->sv);
	r->ndrain = mta > 0 ? children_of(mta, r->drain_pids, sizeof r->drain_pids / sizeof r->drain_pids[0]) : 0;
	r->drain_until = wall_time() + 30;
	struct conf *g = conf_load(r->gen_conf, params_all, NULL, &err);
	if (g) {
		r->drain_until = wall_time() + (double)conf_time_s(g, "graceful_stop_timeout");
		conf_free(&g);
	} else {
		free(err);
	}
	for (size_t i = 0; i < r->sv->nkids; i++) {
		int is_fresh = 0;
		for (size_t j = 0; j < NFILTERS; j++)
			if (fresh[j] && !strcmp(r->sv->kids[i].name, filters[j].name))
				is_fresh = 1;
		if (r->sv->kids[i].pid > 0 && !is_fresh)
			kill(r->sv->kids[i].pid, SIGHUP);
	}
	struct sbuf sw;
	sbuf_init(&sw);
	for (size_t j = 0; j < NFILTERS; j++)
		if (on[j] != was[j])
			sbuf_printf(&sw, " %s%s", on[j] ? "+" : "-", filters[j].name);
	log_event(NULL, "reload -- configuration %s%s%s", r->user_conf, sw.len ? "; switched:" : "",
		  sw.len ? sw.buf : "");
	sbuf_free(&sw);
	r->reloading = 1;
	supervise_write_status(r->sv);
}

size_t start_reload_ndaemons(void)
{
	return NFILTERS + 1;
}

int start_reload_setup(struct start_reload *r, const struct conf *c, char **err_out)
{
	int on[NFILTERS];
	wanted_filters(r, c, on);
	select_filters(r, on);
	if (write_generated(r, c, on, err_out) < 0)
		return -1;
	struct supervise_child *m = &r->sv->kids[r->sv->nkids++];
	memset(m, 0, sizeof *m);
	m->name = "sluiced";
	m->kind = SUPERVISE_MTA;
	m->metrics_d = NFILTERS;
	m->bin = xasprintf("%s/sluiced", r->bindir);
	m->backoff_s = 1;
	return 0;
}

int start_reload_busy(const struct start_reload *r)
{
	return r->reloading;
}
