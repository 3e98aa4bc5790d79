/*
 * sendmail_run: hand one message to a sendmail(1)-compatible command
 * (bin/sluice-sendmail), for the reports the DMARC code mails (failure
 * reports from sluice-dmarc, aggregate reports from `sluice report dmarc`).
 * Owns the child process from spawn to reaping. Leaves building the
 * message and deciding where it goes to the callers.
 */
#ifndef SLUICE_LIB_SENDMAIL_RUN_H
#define SLUICE_LIB_SENDMAIL_RUN_H

#include <stddef.h>

/*
 * sendmail_run - run
 *	<path> [-C <conf>] -f <from> -i -- <rcpt>
 * with posix_spawn (safe in threads; signals reset to default and unblocked
 * in the child, no inherited descriptor above 2), msg[0..len) on its stdin
 * through a socketpair written with MSG_NOSIGNAL (a dead child is no
 * SIGPIPE), stdout to /dev/null, stderr read for the error text. The whole
 * run takes at most timeout_ms (0 = 30000): a child still running then is
 * killed (SIGKILL by its pid) and reaped.
 * Returns 0 when it exited 0 after reading all of msg; its exit status
 * (> 0; sysexits(3): 67 EX_NOUSER is a permanent refusal of rcpt) with
 * *err_out "exit N: <its stderr>"; else -1 with *err_out (did not start,
 * signal, timeout, or msg not read to the end). *err_out: caller frees;
 * NULL on success.
 */
int sendmail_run(const char *path, const char *conf, const char *from, const char *rcpt,
		 const char *msg, size_t len, int timeout_ms, char **err_out);

#endif
