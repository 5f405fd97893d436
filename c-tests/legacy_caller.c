/*
 * legacy_caller: a program linked against some other library's freezefs().
 * Prints what a freeze/query/thaw cycle gives, and what the process looks
 * like after the library was loaded (threads, fds, signal handlers).
 *
 *   legacy_caller <mount point>
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proc_count.h"

int freezefs(char *mountPoint, unsigned long optionFlags, int timeout);

int main(int argc, char **argv)
{
	char line[256];
	FILE *status;
	int rc;

	/* Before any call: what loading the library did to the process. */
	printf("threads=%d fds=%d\n", count_entries("/proc/self/task"), count_entries("/proc/self/fd") - 1);
	status = fopen("/proc/self/status", "r");
	while (status && fgets(line, sizeof line, status))
		if (strncmp(line, "SigCgt:", 7) == 0)
			printf("%s", line);
	if (status)
		fclose(status);
	if (argc < 2)
		return 0;
	errno = 0;
	rc = freezefs(argv[1], 1, 30);
	printf("freeze=%d errno=%d\n", rc, rc ? errno : 0);
	printf("query=%d\n", freezefs(argv[1], 2, 0));
	printf("thaw=%d\n", freezefs(argv[1], 0, 0));
	return 0;
}
