/*
 * fzctl: calls one C entry point once and prints "rc=<rc> errno=<name>", so
 * tests can drive the C API from another process (another uid, umask, env).
 *
 *   fzctl <flags> <path|-null> [timeout]       freezefs()
 *   fzctl all <timeout> <path>...              freezefs_all()
 *   fzctl thawall <path>...                    thawfs_all()
 *   fzctl reset <path|-null> <timeout>         freezefs_reset_timeout()
 *   fzctl status <path|-null>                  freezefs_status()
 *   fzctl list                                 freezefs_list()
 *   fzctl last <path|-null>                    freezefs_last_freeze(), and
 *                                              " reason=<n>" when it returns 1
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
	case ECANCELED: return "ECANCELED";
	case ENOSPC: return "ENOSPC";
	case EBUSY: return "EBUSY";
	default: return "other";
	}
}

static char *path_arg(char *arg)
{
	return strcmp(arg, "-null") == 0 ? NULL : arg;
}

static struct freezefs_last_freeze last;

static int named(int argc, char **argv, int *rc)
{
	struct freezefs_status st;
	const char *op = argv[1];

	if (strcmp(op, "all") == 0 && argc >= 3)
		*rc = freezefs_all(argv + 3, argc - 3, atoi(argv[2]));
	else if (strcmp(op, "thawall") == 0)
		*rc = thawfs_all(argv + 2, argc - 2);
	else if (strcmp(op, "reset") == 0 && argc == 4)
		*rc = freezefs_reset_timeout(path_arg(argv[2]), atoi(argv[3]));
	else if (strcmp(op, "status") == 0 && argc == 3)
		*rc = freezefs_status(path_arg(argv[2]), &st);
	else if (strcmp(op, "list") == 0)
		*rc = freezefs_list(NULL, 0);
	else if (strcmp(op, "last") == 0 && argc >= 3)
		*rc = freezefs_last_freeze(path_arg(argv[2]), &last);
	else
		return 0;
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long flags;
	char *path;
	int timeout, rc;

	if (argc >= 2 && (argv[1][0] < '0' || argv[1][0] > '9')) {
		errno = 0;
		if (!named(argc, argv, &rc)) {
			fprintf(stderr, "fzctl: bad arguments\n");
			return 2;
		}
		printf("rc=%d errno=%s", rc, rc == -1 ? errno_name(errno) : "0");
		if (strcmp(argv[1], "last") == 0 && rc == 1)
			printf(" reason=%d", last.reason);
		printf("\n");
		return 0;
	}
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
