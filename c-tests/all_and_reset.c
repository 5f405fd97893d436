/*
 * freezefs_all(), thawfs_all() and freezefs_reset_timeout() through the
 * public header.
 *
 *   all_and_reset <mount point A> <mount point B>
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <freezefs.h>

static int failures, count;

static void expect(const char *what, int rc, int want_rc, int want_errno)
{
	int err = errno;
	count++;
	if (rc == want_rc && (want_rc != -1 || err == want_errno)) {
		printf("ok %d - %s\n", count, what);
	} else {
		failures++;
		printf("not ok %d - %s: rc=%d errno=%d (%s)\n", count, what, rc, err, strerror(err));
	}
}

int main(int argc, char **argv)
{
	char *both[2];
	char *with_null[2];

	if (argc != 3)
		return 2;
	both[0] = argv[1];
	both[1] = argv[2];
	with_null[0] = argv[1];
	with_null[1] = NULL;

	errno = 0;
	expect("reset of a thawed filesystem is EINVAL", freezefs_reset_timeout(argv[1], 5), -1, EINVAL);
	expect("freezefs_all of two", freezefs_all(both, 2, 30), 0, 0);
	expect("A is frozen", freezefs(argv[1], FS_Q_QUERY, 0), 1, 0);
	expect("B is frozen", freezefs(argv[2], FS_Q_QUERY, 0), 1, 0);
	expect("freezefs_all again is EALREADY", freezefs_all(both, 2, 30), -1, EALREADY);
	expect("reset A to 60 s", freezefs_reset_timeout(argv[1], 60), 0, 0);
	expect("reset A to none", freezefs_reset_timeout(argv[1], -1), 0, 0);
	expect("thawfs_all of two", thawfs_all(both, 2), 0, 0);
	expect("A is thawed", freezefs(argv[1], FS_Q_QUERY, 0), 0, 0);
	expect("thawfs_all again is EALREADY", thawfs_all(both, 2), -1, EALREADY);
	expect("freezefs_all(NULL) is EINVAL", freezefs_all(NULL, 2, 30), -1, EINVAL);
	expect("count 0 is EINVAL", freezefs_all(both, 0, 30), -1, EINVAL);
	expect("negative count is EINVAL", freezefs_all(both, -3, 30), -1, EINVAL);
	expect("a NULL element is EINVAL", freezefs_all(with_null, 2, 30), -1, EINVAL);
	expect("and froze nothing", freezefs(argv[1], FS_Q_QUERY, 0), 0, 0);
	expect("thawfs_all(NULL) is EINVAL", thawfs_all(NULL, 1), -1, EINVAL);
	expect("reset with a NULL path is EINVAL", freezefs_reset_timeout(NULL, 5), -1, EINVAL);
	printf("1..%d\n", count);
	return failures ? 1 : 0;
}
