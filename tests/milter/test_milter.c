/*
 * test-milter: a libmilter filter for sluiced's tests. It uses every
 * modification action and custom replies, steered by the message itself:
 *   MAIL FROM:<reject-mail@...>    reject at MAIL;  <tempfail-mail@...> tempfail
 *   RCPT TO:<reject-rcpt@...>      550 5.7.9 custom reply for that recipient
 *   header "X-Test-Actions: a,b,c" at end of message (only the milter named
 *   by "X-Test-Target: NAME" when that header is present), each of:
 *     addheader insheader chgheader delheader addrcpt addrcptpar delrcpt
 *     chgfrom replbody quarantine reject tempfail discard progress
 *     sleep (longer than any test timeout) crash (exit mid-message)
 * Every message also gets "X-Milter-<name>: seen-added=<yes|no>" saying
 * whether an earlier milter's X-Added header was visible (edit order).
 * usage: test-milter NAME SOCKETSPEC   (e.g. unix:/tmp/m.sock, inet:2000@127.0.0.1)
 */
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *name = "t";

struct priv {
	char actions[512];
	int seen_added;
	int targeted;	/* X-Test-Target names another milter */
};

static struct priv *priv_get(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);
	if (!p) {
		p = calloc(1, sizeof *p);
		smfi_setpriv(ctx, p);
	}
	return p;
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	struct priv *p = priv_get(ctx);
	p->actions[0] = 0;
	p->seen_added = 0;
	p->targeted = 0;
	if (strstr(argv[0], "reject-mail@"))
		return SMFIS_REJECT;
	if (strstr(argv[0], "tempfail-mail@"))
		return SMFIS_TEMPFAIL;
	return SMFIS_CONTINUE;
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
	if (strstr(argv[0], "reject-rcpt@")) {
		smfi_setreply(ctx, "550", "5.7.9", "custom rcpt reject from test-milter");
		return SMFIS_REJECT;
	}
	return SMFIS_CONTINUE;
}

static sfsistat on_header(SMFICTX *ctx, char *h, char *v)
{
	struct priv *p = priv_get(ctx);
	if (!strcasecmp(h, "X-Test-Actions"))
		snprintf(p->actions, sizeof p->actions, "%s", v);
	if (!strcasecmp(h, "X-Added"))
		p->seen_added = 1;
	if (!strcasecmp(h, "X-Test-Target") && strcmp(v + strspn(v, " "), name) != 0)
		p->targeted = 1;
	return SMFIS_CONTINUE;
}

static int has(const struct priv *p, const char *a)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", p->actions);
	for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
		if (!strcmp(t, a))
			return 1;
	return 0;
}

static sfsistat on_eom(SMFICTX *ctx)
{
	struct priv *p = priv_get(ctx);
	char hname[64];
	snprintf(hname, sizeof hname, "X-Milter-%s", name);
	smfi_addheader(ctx, hname, p->seen_added ? "seen-added=yes" : "seen-added=no");
	if (p->targeted)
		return SMFIS_CONTINUE;
	if (has(p, "crash"))
		_exit(3);
	if (has(p, "sleep"))
		sleep(30);
	if (has(p, "progress")) {
		/* 3.6 s of work, a progress report every 1.2 s */
		for (int i = 0; i < 3; i++) {
			smfi_progress(ctx);
			usleep(1200 * 1000);
		}
	}
	if (has(p, "addheader"))
		smfi_addheader(ctx, "X-Added", "added by test-milter");
	if (has(p, "insheader"))
		smfi_insheader(ctx, 0, "X-Inserted-Top", "top");
	if (has(p, "chgheader"))
		smfi_chgheader(ctx, "Subject", 1, "changed subject");
	if (has(p, "delheader"))
		smfi_chgheader(ctx, "X-Delete-Me", 1, NULL);
	if (has(p, "addrcpt"))
		smfi_addrcpt(ctx, "<bob@example.com>");
	if (has(p, "addrcptpar"))
		smfi_addrcpt_par(ctx, "<carol@example.com>", "NOTIFY=NEVER");
	if (has(p, "delrcpt"))
		smfi_delrcpt(ctx, "<alice@example.com>");
	if (has(p, "chgfrom"))
		smfi_chgfrom(ctx, "<changed@example.net>", NULL);
	if (has(p, "replbody")) {
		static unsigned char body[] = "replaced body line 1\r\nline 2\r\n";
		smfi_replacebody(ctx, body, sizeof body - 1);
	}
	if (has(p, "quarantine"))
		smfi_quarantine(ctx, "quarantined by test-milter");
	if (has(p, "reject")) {
		smfi_setreply(ctx, "554", "5.7.0", "test-milter says no at end of data");
		return SMFIS_REJECT;
	}
	if (has(p, "tempfail"))
		return SMFIS_TEMPFAIL;
	if (has(p, "discard"))
		return SMFIS_DISCARD;
	return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
	free(smfi_getpriv(ctx));
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test-milter NAME SOCKETSPEC\n");
		return 2;
	}
	name = argv[1];
	struct smfiDesc d = { 0 };
	d.xxfi_name = "test-milter";
	d.xxfi_version = SMFI_VERSION;
	d.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR |
		       SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_QUARANTINE;
	d.xxfi_envfrom = on_envfrom;
	d.xxfi_envrcpt = on_envrcpt;
	d.xxfi_header = on_header;
	d.xxfi_eom = on_eom;
	d.xxfi_close = on_close;
	if (!strncmp(argv[2], "unix:", 5))
		unlink(argv[2] + 5);
	if (smfi_setconn(argv[2]) == MI_FAILURE || smfi_register(d) == MI_FAILURE ||
	    smfi_opensocket(1) == MI_FAILURE) {
		fprintf(stderr, "test-milter: cannot listen on %s\n", argv[2]);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
