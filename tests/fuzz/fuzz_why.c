/*
 * fuzz_why: `sluice why` on any log never crashes, leaks or loops: the
 * input's first line is the queue id asked for (when it is one; else a
 * fixed one), the rest the log (read from a memfd through report_input),
 * asked for that queue id (text and JSON) and by selector (the client,
 * sender and recipient of its first lines that have them).
 *
 * XXX: `make fuzz` links libmta.a + libsluice.a only, not tools/: the
 * modules are compiled in here (as fuzz_report does). "nothing found" goes
 * to stderr: run with -close_fd_mask=2 for a quiet run.
 */
#include "tools/why.c"
#include "tools/report_input.c"
#include "tools/report_map.c"
#include "tools/report_parse.c"
#include "tools/report_time.c"

#include <stdint.h>
#include <sys/mman.h>

static void run_one(int fd, const char *qid, const char *client, const char *sender,
		    const char *rcpt, int json, FILE *out)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	char *files[] = { path, path };		/* the same log twice: two inputs merged */
	struct why w = { 0 };
	w.qid = qid;
	w.sel_client = client;
	w.sel_sender = sender;
	w.sel_recipient = rcpt;
	w.json = json;
	w.files = files;
	w.nfiles = 2;
	why_run(&w, out);
	why_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static FILE *out;
	if (!out) {
		out = fopen("/dev/null", "w");
		if (!out)
			abort();
	}
	const char *s = (const char *)d;
	const char *nl = memchr(s, '\n', n);
	char qid[65] = "4ABCDEF01";
	if (nl && nl - s >= 5 && nl - s < (long)sizeof qid) {
		memcpy(qid, s, (size_t)(nl - s));
		qid[nl - s] = 0;
		if (!valid_qid(qid))
			strcpy(qid, "4ABCDEF01");
	}
	int fd = memfd_create("fuzz_why", 0);
	if (fd < 0)
		return 0;
	if (write(fd, d, n) != (ssize_t)n) {
		close(fd);
		return 0;
	}
	run_one(fd, qid, NULL, NULL, NULL, 0, out);
	run_one(fd, qid, NULL, NULL, NULL, 1, out);
	/* selectors taken from the log itself */
	struct rp_parser *p = rp_parser_new(2026, 11);
	char *client = NULL, *sender = NULL, *rcpt = NULL;
	for (const char *l = s, *end = s + n; l < end && !(client && sender && rcpt);) {
		const char *e = memchr(l, '\n', (size_t)(end - l));
		size_t len = e ? (size_t)(e - l) : (size_t)(end - l);
		struct rp_event ev;
		if (rp_parse_line(p, l, len, &ev) != RP_EV_NONE) {
			if (!client && ev.client_ip)
				client = xstrdup(ev.client_ip);
			if (!sender && ev.sender && *ev.sender)
				sender = xstrdup(ev.sender);
			if (!rcpt && ev.recipient)
				rcpt = xstrdup(ev.recipient);
		}
		l += len + 1;
	}
	rp_parser_free(&p);
	if (client || sender || rcpt) {
		run_one(fd, NULL, client, sender, rcpt, 0, out);
		if (client)
			run_one(fd, NULL, client, NULL, NULL, 1, out);
	}
	free(client);
	free(sender);
	free(rcpt);
	close(fd);
	return 0;
}
