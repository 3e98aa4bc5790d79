/*
 * why: `sluice why` (issue 13). One message's story from the mail logs:
 * every event of a queue id across sluiced and the filters (sluice-dkim,
 * -spf, -dmarc, -spam, -ratelimit, any key=value filter, Postfix and the
 * third-party filters sluice report reads) in time order, then one line
 * per decision saying what decided its fate ("rejected <r@x> at RCPT by
 * sluice-ratelimit rule OUT: 101 messages in 3600 s, limit 100").
 *
 * Joining: lines with the queue id (milters log macro i; policy servers the
 * queue_id attribute once it exists); a policy server's NOQUEUE line whose
 * instance= sluiced named in "QID: policy instance=I"; and the NOQUEUE
 * lines of the message's SMTP session before its queue id existed (the
 * same receiver process after its "connect from", and filter lines from the
 * same client and sender in that time span).
 * RCPT-stage rejects of a message that never got a queue id are found by
 * selector instead (--client, --sender, --recipient).
 *
 * Owns the two passes over the logs (the queue id's lines and the
 * instances, then the joined NOQUEUE lines), the decision rules and both
 * outputs (text, --json with jansson). Reads files through report_input
 * (plain or gzip, "-" = stdin, spooled to a temporary file for the second
 * pass) and lines through report_parse; memory: the matching lines only.
 */
#ifndef SLUICE_TOOLS_WHY_H
#define SLUICE_TOOLS_WHY_H

/*
 * why_main - argv[0] = "why"; options:
 *   sluice why [-c FILE] [--json] QUEUE-ID [LOGFILE...]
 *   sluice why [-c FILE] [--json] [--client IP] [--sender ADDR] [--recipient ADDR] [LOGFILE...]
 * Without LOGFILE: maillog_file of -c FILE ($SLUICE_CONF, else
 * /etc/sluice/sluice.conf), relative to the config's directory; with
 * syslog (maillog_file empty) /var/log/mail.log.
 * Output on stdout. Returns 0 (events found), 1 (none found), 2 (usage,
 * a config or log that cannot be read).
 */
int why_main(int argc, char **argv);

#endif
