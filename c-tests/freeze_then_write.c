/*
 * freeze_then_write: freezes a filesystem with a timeout, says so, then
 * writes to it: the write blocks until something thaws it. Tests kill this
 * process while it is blocked, to show that the holder still thaws.
 *
 *   freeze_then_write <mount point> <timeout>
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <freezefs.h>

int main(int argc, char **argv)
{
	char path[4200];
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: freeze_then_write <mount point> <timeout>\n");
		return 2;
	}
	if (freezefs(argv[1], FS_Q_FREEZE, atoi(argv[2])) != 0) {
		fprintf(stderr, "freeze: %s\n", strerror(errno));
		return 1;
	}
	printf("frozen\n");
	fflush(stdout);
	snprintf(path, sizeof path, "%s/written-while-frozen", argv[1]);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0 && write(fd, "x", 1) == 1)
		printf("written\n");
	return 0;
}
