/* raw_freeze MOUNT: FIFREEZE through syscall(2), as a Go program or a
 * static binary does it: libc's ioctl(), and so the shim, is never called.
 * Prints "frozen" once the ioctl returned, and exits without thawing. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd;
    if (argc != 2) {
        fprintf(stderr, "usage: raw_freeze MOUNT\n");
        return 2;
    }
    fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    if (syscall(SYS_ioctl, fd, FIFREEZE, 0) != 0) {
        perror("FIFREEZE");
        return 1;
    }
    puts("frozen");
    return 0;
}
