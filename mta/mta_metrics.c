/*
 * mta_metrics: see mta_metrics.h.
 */
#include "mta/mta_metrics.h"
#include "lib/metrics.h"
#include "lib/reason.h"
#include "lib/util.h"
#include "mta/queue.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct metrics *reg;
static char *queue_dir;
static int f_received, f_deliveries, f_rejects, f_sessions, f_queue, f_eod, f_milter_fail, f_policy_fail;

static const enum queue_dir queues[] = { QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT };

/* queue_sizes - at each scrape: files per queue directory */
static void queue_sizes(struct metrics *m, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++) {
		const char *name = queue_dir_name(queues[i]);
		char *path = xasprintf("%s/%s", queue_dir, name);
		DIR *d = opendir(path);
		free(path);
		double n = 0;
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL)
			if (queue_id_valid(de->d_name))
				n++;
		if (d)
			closedir(d);
		metrics_set(m, f_queue, METRICS_L(name), n);
	}
}

void mta_metrics_init(struct metrics *m, const char *qdir)
{
	reg = m;
	queue_dir = xstrdup(qdir);
	f_received = metrics_family(m, "sluice_messages_received_total", METRICS_COUNTER,
				    "Messages accepted into the queue (250 after DATA or BDAT).", NULL, NULL, 0);
	f_deliveries = metrics_family(m, "sluice_deliveries_total", METRICS_COUNTER,
				      "Recipient delivery attempts by status (sent, deferred, bounced) and transport.",
				      "status,transport", NULL, 0);
	f_rejects = metrics_family(m, "sluice_rejects_total", METRICS_COUNTER,
				   "Rejected SMTP commands and messages by stage and reason code.", "stage,reason",
				   NULL, 0);
	f_sessions = metrics_family(m, "sluice_smtp_sessions", METRICS_GAUGE, "SMTP sessions open now.", NULL,
				    NULL, 0);
	f_queue = metrics_family(m, "sluice_queue_messages", METRICS_GAUGE,
				 "Messages in each queue directory (active, deferred, hold, corrupt).", "queue", NULL,
				 0);
	f_eod = metrics_family(m, "sluice_end_of_data_seconds", METRICS_HISTOGRAM,
			       "Time from the client's end of data to the final reply, in seconds.", NULL, NULL, 0);
	f_milter_fail = metrics_family(m, "sluice_milter_failures_total", METRICS_COUNTER,
				       "Milter conversations that failed, by milter and default action applied.",
				       "filter,action", NULL, 0);
	f_policy_fail = metrics_family(m, "sluice_policy_failures_total", METRICS_COUNTER,
				       "Policy service requests that failed, by service.", "filter", NULL, 0);
	metrics_touch(m, f_received, NULL);
	metrics_touch(m, f_sessions, NULL);
	metrics_touch(m, f_eod, NULL);
	metrics_on_render(m, queue_sizes, NULL);
}

void mta_metrics_received(void)
{
	metrics_add(reg, f_received, NULL, 1);
}

void mta_metrics_delivery(const char *status, const char *service)
{
	metrics_add(reg, f_deliveries, METRICS_L(status, service ? service : "none"), 1);
}

void mta_metrics_reject(const char *stage, const char *dsn, const char *text, int milter)
{
	if (!reg)
		return;
	const char *code = reason_code(stage, dsn, text);
	if (milter && !strcmp(code, "other"))
		code = "milter";
	metrics_add(reg, f_rejects, METRICS_L(stage, code), 1);
}

void mta_metrics_session(int delta)
{
	metrics_add(reg, f_sessions, NULL, delta);
}

void mta_metrics_end_of_data(double seconds)
{
	metrics_observe(reg, f_eod, NULL, seconds);
}

void mta_metrics_milter_failure(const char *name, const char *action)
{
	metrics_add(reg, f_milter_fail, METRICS_L(name, action), 1);
}

void mta_metrics_policy_failure(const char *service)
{
	metrics_add(reg, f_policy_fail, METRICS_L(service), 1);
}
