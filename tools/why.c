/* placeholder: `sluice why` is being written (see the open issues) */
#include <stdio.h>

int why_main(int argc, char **argv);

int why_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("sluice why: not available in this build\n", stderr);
	return 2;
}
