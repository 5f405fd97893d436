/*
 * The example of the Tru64 UNIX freezefs(2) manual page, built unchanged in
 * substance: #include <sys/mount.h>, u_long flags, errno, the same calls.
 * The page elides code with "..." and calls a placeholder "error"; both are
 * filled in here, and its "if (rc = -1)" is read as the "==" it means.
 *
 * Installed (make install):
 *   cc tru64_freeze.c $(pkg-config --cflags --libs freezefs-compat)
 * From the build tree (cargo build --release), with the library found at run
 * time through the rpath:
 *   cc -I include/compat -I include tru64_freeze.c -L target/release \
 *      -Wl,-rpath,"$PWD/target/release" -lfreezefs
 *   ./a.out [mount point]        (the page freezes /oracle)
 */
#include <sys/mount.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void error(const char *what, char *mp)
{
	fprintf(stderr, "%s %s: %s\n", what, mp, strerror(errno));
}

int main(int argc, char **argv)
{
	char *mp;
	u_long flags;
	int timeout, rc;

	mp = argc > 1 ? argv[1] : "/oracle"; /* filesystem to freeze */
	flags = FS_Q_FREEZE;                  /* freeze flag */
	timeout = 0;                          /* use default timeout */

	errno = 0;
	rc = freezefs(mp, flags, timeout);
	if (rc == -1) {
		error("freeze", mp);
		return 1;
	}

	/* PERFORM WORK ON FROZEN FILE SYSTEM */
	printf("%s frozen, FS_Q_QUERY says %d\n", mp, freezefs(mp, FS_Q_QUERY, 0));

	flags = FS_Q_THAW; /* thaw flag */
	errno = 0;
	rc = freezefs(mp, flags, timeout);
	if (rc == -1) { /* If error on thaw, cannot rely on the initial freeze */
		error("thaw", mp);
		return 1;
	}
	printf("%s thawed\n", mp);
	return 0;
}
