/*
 * cycles: N freeze/thaw cycles through the C API, reporting the caller's
 * fd count, thread count and RSS before and after (for the leak test; also
 * run under valgrind).
 *
 *   cycles <mount point> <n>
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <freezefs.h>

#include "proc_count.h"

static long rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib;
}

/* The steady state: the least of 20 samples 5 ms apart. The helper thread
 * reviews records after each freeze and thaw, holding a record or lock file
 * open for a moment; a leak raises every sample. */
static void report(const char *when)
{
	struct timespec pause = { 0, 5000000 };
	int i, fds = -1, threads = -1;

	for (i = 0; i < 20; i++) {
		int f = count_entries("/proc/self/fd") - 1, t = count_entries("/proc/self/task");
		if (fds < 0 || f < fds)
			fds = f;
		if (threads < 0 || t < threads)
			threads = t;
		nanosleep(&pause, NULL);
	}
	printf("%s fds=%d threads=%d rss_kib=%ld\n", when, fds, threads, rss_kib());
}

int main(int argc, char **argv)
{
	int i, n;

	if (argc != 3)
		return 2;
	n = atoi(argv[2]);
	/* Warm up: the helper thread and the holder exist from here on, and
	 * the watch QUERY keeps on the state directory (two fds for the
	 * process's life), and the wait channel of the last freeze's watcher
	 * it looked at (one fd per filesystem). */
	for (i = 0; i < 20; i++)
		if (freezefs(argv[1], FS_Q_FREEZE, 60) != 0 || freezefs(argv[1], FS_Q_QUERY, 0) != 1 ||
		    freezefs(argv[1], FS_Q_THAW, 0) != 0)
			return 1;
	report("before");
	for (i = 0; i < n; i++) {
		int timeout = (i % 3 == 0) ? 60 : (i % 3 == 1) ? -1 : 0;
		if (freezefs(argv[1], FS_Q_FREEZE, timeout) != 0) {
			printf("freeze %d: %s\n", i, strerror(errno));
			return 1;
		}
		if (freezefs(argv[1], FS_Q_QUERY, 0) != 1 || freezefs(argv[1], FS_Q_THAW, 0) != 0) {
			printf("cycle %d: %s\n", i, strerror(errno));
			return 1;
		}
	}
	report("after");
	return 0;
}
