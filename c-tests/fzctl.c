/*
 * fzctl: calls freezefs() once and prints "rc=<rc> errno=<name>", so tests
 * can drive the C API from another process (another uid, umask, env).
 *
 *   fzctl <flags> <path|-null> [timeout]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <freezefs.h>

static const char *errno_name(int e)
{
	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case EACCES: return "EACCES";
	case ENOTDIR: return "ENOTDIR";
	case ELOOP: return "ELOOP";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EALREADY: return "EALREADY";
	case EIO: return "EIO";
	case ECHILD: return "ECHILD";
	default: return "other";
	}
}

int main(int argc, char **argv)
{
	unsigned long flags;
	char *path;
	int timeout, rc;

	if (argc < 3) {
		fprintf(stderr, "usage: fzctl <flags> <path|-null> [timeout]\n");
		return 2;
	}
	flags = strtoul(argv[1], NULL, 0);
	path = strcmp(argv[2], "-null") == 0 ? NULL : argv[2];
	timeout = argc > 3 ? atoi(argv[3]) : 0;
	errno = 0;
	rc = freezefs(path, flags, timeout);
	printf("rc=%d errno=%s\n", rc, rc == -1 ? errno_name(errno) : "0");
	return 0;
}
