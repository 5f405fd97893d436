/*
 * The freezefs() contract through the public header only.
 *
 *   contract <scratch mount point> <a directory inside it>
 *
 * The caller gives a scratch filesystem and sets FREEZEFS_RUNDIR.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <freezefs.h>

static int failures;
static int count;

static void expect(const char *what, int rc, int want_rc, int err, int want_errno)
{
	count++;
	if (rc == want_rc && (want_rc != -1 || err == want_errno)) {
		printf("ok %d - %s\n", count, what);
	} else {
		failures++;
		printf("not ok %d - %s: rc=%d errno=%d (%s), wanted rc=%d errno=%d\n", count, what, rc,
		       err, strerror(err), want_rc, want_errno);
	}
}

#define CHECK(what, call, want_rc, want_errno)                       \
	do {                                                          \
		int rc_;                                              \
		errno = 0;                                            \
		rc_ = (call);                                         \
		expect(what, rc_, want_rc, errno, want_errno);        \
	} while (0)

int main(int argc, char **argv)
{
	static char long_path[PATH_MAX + 16];
	char *mnt, *sub;
	char root[] = "/", usr[] = "//usr/.", var[] = "/usr/../var", empty[] = "";
	char missing[] = "/nonexistent/freezefs/path";

	if (argc != 3) {
		fprintf(stderr, "usage: contract <mount point> <subdir>\n");
		return 2;
	}
	mnt = argv[1];
	sub = argv[2];
	memset(long_path, 'a', sizeof long_path - 1);
	long_path[0] = '/';

	CHECK("QUERY of a thawed filesystem is 0", freezefs(mnt, FS_Q_QUERY, 0), 0, 0);
	CHECK("FREEZE returns 0", freezefs(mnt, FS_Q_FREEZE, 30), 0, 0);
	CHECK("QUERY of a frozen filesystem is 1", freezefs(mnt, FS_Q_QUERY, 0), 1, 0);
	CHECK("FREEZE again is EALREADY", freezefs(mnt, FS_Q_FREEZE, 30), -1, EALREADY);
	CHECK("THAW returns 0", freezefs(mnt, FS_Q_THAW, 0), 0, 0);
	CHECK("THAW again is EALREADY", freezefs(mnt, FS_Q_THAW, 0), -1, EALREADY);
	CHECK("QUERY after THAW is 0", freezefs(mnt, FS_Q_QUERY, 0), 0, 0);
	CHECK("timeout < 0 freezes with no timeout", freezefs(mnt, FS_Q_FREEZE, -1), 0, 0);
	CHECK("and THAW ends it", freezefs(mnt, FS_Q_THAW, 0), 0, 0);
	CHECK("INT_MAX timeout", freezefs(mnt, FS_Q_FREEZE, INT_MAX), 0, 0);
	CHECK("and THAW ends it", freezefs(mnt, FS_Q_THAW, 0), 0, 0);
	CHECK("INT_MIN timeout means none", freezefs(mnt, FS_Q_FREEZE, INT_MIN), 0, 0);
	CHECK("and THAW ends it", freezefs(mnt, FS_Q_THAW, 0), 0, 0);

	CHECK("NULL mount point is EINVAL (FREEZE)", freezefs(NULL, FS_Q_FREEZE, 1), -1, EINVAL);
	CHECK("NULL mount point is EINVAL (QUERY)", freezefs(NULL, FS_Q_QUERY, 0), -1, EINVAL);
	CHECK("NULL mount point is EINVAL (THAW)", freezefs(NULL, FS_Q_THAW, 0), -1, EINVAL);
	CHECK("FREEZE|QUERY is EINVAL", freezefs(mnt, FS_Q_FREEZE | FS_Q_QUERY, 1), -1, EINVAL);
	CHECK("flag 0x4 is EINVAL", freezefs(mnt, 0x4, 1), -1, EINVAL);
	CHECK("flag 0x100 is EINVAL", freezefs(mnt, 0x100, 1), -1, EINVAL);
	CHECK("flag ULONG_MAX is EINVAL", freezefs(mnt, ULONG_MAX, 1), -1, EINVAL);
	CHECK("a rejected flag froze nothing", freezefs(mnt, FS_Q_QUERY, 0), 0, 0);

	CHECK("empty path is ENOENT", freezefs(empty, FS_Q_FREEZE, 1), -1, ENOENT);
	CHECK("missing path is ENOENT", freezefs(missing, FS_Q_QUERY, 0), -1, ENOENT);
	CHECK("path over PATH_MAX is ENAMETOOLONG", freezefs(long_path, FS_Q_FREEZE, 1), -1,
	      ENAMETOOLONG);
	CHECK("not a mount point is EINVAL", freezefs(sub, FS_Q_FREEZE, 1), -1, EINVAL);

	CHECK("FREEZE of / is EOPNOTSUPP", freezefs(root, FS_Q_FREEZE, 1), -1, EOPNOTSUPP);
	CHECK("FREEZE of //usr/. is EOPNOTSUPP", freezefs(usr, FS_Q_FREEZE, 1), -1, EOPNOTSUPP);
	CHECK("FREEZE of /usr/../var is EOPNOTSUPP", freezefs(var, FS_Q_FREEZE, 1), -1, EOPNOTSUPP);
	CHECK("QUERY of / is allowed", freezefs(root, FS_Q_QUERY, 0), 0, 0);
	CHECK("QUERY of /usr is allowed", freezefs(usr, FS_Q_QUERY, 0), 0, 0);

	printf("1..%d\n", count);
	return failures ? 1 : 0;
}
