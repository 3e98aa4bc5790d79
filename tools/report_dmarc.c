/* placeholder: `sluice report dmarc` is being written (see the open issues) */
#include <stdio.h>

int report_dmarc_main(int argc, char **argv);

int report_dmarc_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("sluice report dmarc: not available in this build\n", stderr);
	return 2;
}
