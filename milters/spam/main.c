/*
 * sluice-spam: spam-scoring milter (issue 11). Placeholder until the
 * daemon lands: answers --help and --version.
 */
#include "lib/version.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--version")) {
		printf("sluice-spam (sluice) %s\n", SLUICE_VERSION);
		return 0;
	}
	fprintf(stderr, "usage: sluice-spam -c sluice.conf [-f] [-n]\n");
	return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2;
}
