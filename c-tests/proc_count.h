/* What the C tests count in /proc: entries of a directory (threads in
 * /proc/self/task, fds in /proc/self/fd), dot entries left out. */
#ifndef FREEZEFS_C_TESTS_PROC_COUNT_H
#define FREEZEFS_C_TESTS_PROC_COUNT_H

#include <dirent.h>

static inline int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n;
}

#endif
