/*
 * vx_ioctls: drives the ioctl requests the preload shim interposes the way
 * old code does: FIFREEZE with the 2008 patch's timeout pointer, and the
 * Solaris VxFS VX_FREEZE / VX_THAW / VX_FREEZE_ALL.
 *
 *   vx_ioctls fifreeze <mnt> <timeout value>   (pointer to a long)
 *   vx_ioctls vxfreeze <mnt> <timeout>         (by value)
 *   vx_ioctls vxthaw <mnt>
 *   vx_ioctls vxfreezeall <timeout> <mnt>...   (all or nothing)
 *   vx_ioctls fithaw <mnt>
 * Prints "rc=<rc> errno=<errno>".
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define FIFREEZE 0xC0045877UL
#define FITHAW 0xC0045878UL
#define VX_FREEZE 0x564F4C64UL
#define VX_THAW 0x564F4C65UL
#define VX_FREEZE_ALL 0x56584606UL

struct vx_freezeall {
	int num;
	int timeout;
	int *fds;
};

static int open_dir(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	return fd;
}

int main(int argc, char **argv)
{
	int rc, i;

	if (argc < 3)
		return 2;
	errno = 0;
	if (strcmp(argv[1], "fifreeze") == 0 && argc == 4) {
		long timeval = atol(argv[3]);
		rc = ioctl(open_dir(argv[2]), FIFREEZE, &timeval);
	} else if (strcmp(argv[1], "vxfreeze") == 0 && argc == 4) {
		rc = ioctl(open_dir(argv[2]), VX_FREEZE, (long)atoi(argv[3]));
	} else if (strcmp(argv[1], "vxthaw") == 0) {
		rc = ioctl(open_dir(argv[2]), VX_THAW, 0);
	} else if (strcmp(argv[1], "fithaw") == 0) {
		rc = ioctl(open_dir(argv[2]), FITHAW, 0);
	} else if (strcmp(argv[1], "vxfreezeall") == 0 && argc >= 4) {
		struct vx_freezeall all;
		int fds[16];
		all.num = argc - 3;
		all.timeout = atoi(argv[2]);
		all.fds = fds;
		for (i = 0; i < all.num && i < 16; i++)
			fds[i] = open_dir(argv[3 + i]);
		rc = ioctl(fds[0], VX_FREEZE_ALL, &all);
	} else {
		return 2;
	}
	printf("rc=%d errno=%d\n", rc, rc ? errno : 0);
	return 0;
}
