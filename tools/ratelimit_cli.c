/* placeholder: `sluice ratelimit` is being written (see the open issues) */
#include <stdio.h>

int ratelimit_cli_main(int argc, char **argv);

int ratelimit_cli_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("sluice ratelimit: not available in this build\n", stderr);
	return 2;
}
