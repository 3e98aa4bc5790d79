/*
 * mta_metrics: sluiced's Prometheus metrics (metrics_listen).
 * Owns: sluiced's metric families (docs/METRICS.md), registered by the
 * master in a registry shared with the receivers and the queue manager it
 * forks (lib/metrics), and the one-line helpers the SMTP session, the
 * milter and policy clients and the queue manager call. The queue sizes
 * are read from queue_directory when /metrics is rendered.
 * Leaves: serving /metrics to the master (main.c); the registry itself to
 * lib/metrics.
 * Until mta_metrics_init (metrics_listen empty, unit tests) every helper
 * does nothing.
 */
#ifndef SLUICE_MTA_METRICS_H
#define SLUICE_MTA_METRICS_H

struct metrics;

/* mta_metrics_init - register the families in m; qdir: queue_directory
 * (copied) for the queue size gauges. Before forking any child. */
void mta_metrics_init(struct metrics *m, const char *qdir);

/* mta_metrics_received - a message committed to the queue (250 sent). */
void mta_metrics_received(void);
/* mta_metrics_delivery - one recipient's delivery attempt ended: status
 * "sent", "deferred" or "bounced"; service: the transport ("virtual",
 * "smtp", "lmtp", ...; NULL = "none"). */
void mta_metrics_delivery(const char *status, const char *service);
/* mta_metrics_reject - a reject sent to the client (not reject_warning):
 * stage as logged ("RCPT", "END-OF-MESSAGE", ...), dsn and reply text give
 * the reason code (lib/reason); milter: the reject came from a milter. */
void mta_metrics_reject(const char *stage, const char *dsn, const char *text, int milter);
/* mta_metrics_session - +1 when an SMTP session starts, -1 when it ends. */
void mta_metrics_session(int delta);
/* mta_metrics_end_of_data - seconds from the client's end of data to our
 * final reply (end-of-data restrictions, milters, queue commit). */
void mta_metrics_end_of_data(double seconds);
/* mta_metrics_milter_failure - a milter did not answer properly: its name
 * and the default action applied ("tempfail", "accept", "reject"). */
void mta_metrics_milter_failure(const char *name, const char *action);
/* mta_metrics_policy_failure - a policy service could not be asked: its
 * name ("inet:127.0.0.1:10023", "unix:/path"). */
void mta_metrics_policy_failure(const char *service);

#endif
