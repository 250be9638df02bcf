/* mailhaul.c -- command line: parse argv, dispatch (being written). */
#include <stdio.h>

int
main(void)
{
	printf("mailhaul %s\n", MAILHAUL_VERSION);
	return 0;
}
