/*
 * ratelimit_cli: `sluice ratelimit show [KEY-PREFIX]` and `sluice ratelimit
 * reset KEY`, sluice-ratelimit's counters and greylist entries from the
 * admin command. Owns: the arguments and which configuration to use;
 * the work is sluice-ratelimit's own `-c FILE show|reset` (policyd/ratelimit/
 * main.c), run from the directory of this sluice binary (the daemons are
 * installed beside it), so both backends (the embedded LMDB state file and
 * redis) and the output format are the daemon's.
 *
 * The configuration: -c FILE, else $SLUICE_CONF, else /etc/sluice/sluice.conf
 * when it exists, else the built-in defaults (as `sluice params` without -c).
 * Exit status: sluice-ratelimit's (0 ok, 1 error: message on stderr), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/daemon.h"
#include "lib/util.h"

#define RL_CLI_USAGE "usage: sluice ratelimit [-c FILE] show [KEY-PREFIX]\n" \
		     "       sluice ratelimit [-c FILE] reset KEY\n"
#define RL_CLI_DEFAULT_CONF "/etc/sluice/sluice.conf"

int ratelimit_cli_main(int argc, char **argv);

static int usage(void)
{
	fputs(RL_CLI_USAGE, stderr);
	return 2;
}

/* conf_path - -c, $SLUICE_CONF, the installed config, or /dev/null (built-in defaults). */
static const char *conf_path(const char *opt_c)
{
	const char *env = getenv("SLUICE_CONF");

	if (opt_c)
		return opt_c;
	if (env && *env)
		return env;
	if (access(RL_CLI_DEFAULT_CONF, F_OK) == 0)
		return RL_CLI_DEFAULT_CONF;
	return "/dev/null";
}

/* argv: "ratelimit" [-c FILE] show [PREFIX] | reset KEY */
int ratelimit_cli_main(int argc, char **argv)
{
	const char *opt_c = NULL;
	int i = 1;

	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "-c") && i + 1 < argc) {
			opt_c = argv[i + 1];
			i += 2;
		} else if (!strncmp(argv[i], "-c", 2) && argv[i][2]) {
			opt_c = argv[i] + 2;
			i++;
		} else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else {
			return usage();
		}
	}
	int nargs = argc - i;
	if (nargs < 1)
		return usage();
	const char *cmd = argv[i];
	if (!(!strcmp(cmd, "show") && nargs <= 2) && !(!strcmp(cmd, "reset") && nargs == 2))
		return usage();

	char *dir = daemon_self_dir();
	char *bin = xasprintf("%s/sluice-ratelimit", dir);
	free(dir);
	if (access(bin, X_OK) != 0) {
		fprintf(stderr, "sluice: ratelimit: %s: %s (sluice-ratelimit is installed beside sluice)\n",
			bin, strerror(errno));
		free(bin);
		return 1;
	}
	/* sluice-ratelimit -c CONF -- show [PREFIX] | reset KEY ("--": a key may start with '-') */
	char *args[7];
	int n = 0;
	args[n++] = bin;
	args[n++] = "-c";
	args[n++] = (char *)conf_path(opt_c);
	args[n++] = "--";
	args[n++] = (char *)cmd;
	if (nargs == 2)
		args[n++] = argv[i + 1];
	args[n] = NULL;
	fflush(stdout);
	execv(bin, args);
	fprintf(stderr, "sluice: ratelimit: exec %s: %s\n", bin, strerror(errno));
	free(bin);
	return 1;
}
