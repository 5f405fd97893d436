/*
 * The helper thaw thread and fork(): no thread before the first timed
 * freeze, the thread blocks every signal, no signal handler is installed,
 * and a child forked while another thread is inside the library can use it.
 *
 *   threads_and_fork <scratch mount point>
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <freezefs.h>

#include "proc_count.h"

static int failures, count;
static char *mnt;

static void ok(int cond, const char *what)
{
	count++;
	printf("%s %d - %s\n", cond ? "ok" : "not ok", count, what);
	if (!cond)
		failures++;
}

/* The hex mask of a /proc status field (SigBlk, SigCgt) of a task. */
static unsigned long long status_mask(const char *task, const char *field)
{
	char path[320], line[256];
	unsigned long long mask = 0;
	size_t len = strlen(field);
	FILE *f;

	snprintf(path, sizeof path, "/proc/self/task/%s/status", task);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, field, len) == 0 && line[len] == ':')
			mask = strtoull(line + len + 1, NULL, 16);
	if (f)
		fclose(f);
	return mask;
}

/* The task id of the thread named freezefs-timer, or NULL. */
static const char *timer_task(void)
{
	static char found[256];
	char path[320], comm[64];
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	const char *result = NULL;

	while (d && (e = readdir(d))) {
		FILE *f;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (f && fgets(comm, sizeof comm, f) && strncmp(comm, "freezefs-timer", 14) == 0) {
			snprintf(found, sizeof found, "%s", e->d_name);
			result = found;
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return result;
}

static volatile int stop_cycling;

static void *cycle(void *arg)
{
	(void)arg;
	while (!stop_cycling) {
		int rc = freezefs(mnt, FS_Q_FREEZE, 30);
		if (rc == 0)
			freezefs(mnt, FS_Q_THAW, 0);
		freezefs(mnt, FS_Q_QUERY, 0);
	}
	return NULL;
}

/* In the child: every call returns (alarm kills a deadlock) with a documented result. */
static void child(void)
{
	int q, f, t = 0;
	alarm(10);
	q = freezefs(mnt, FS_Q_QUERY, 0);
	f = freezefs(mnt, FS_Q_FREEZE, 30);
	if (f == 0)
		t = freezefs(mnt, FS_Q_THAW, 0);
	if ((q == 0 || q == 1) && (f == 0 || (f == -1 && errno == EALREADY)) && t == 0)
		_exit(0);
	_exit(3);
}

int main(int argc, char **argv)
{
	int before, i, forks_ok = 1;
	unsigned long long caught_before, blocked;
	const char *task;
	pthread_t cycler;

	if (argc != 2) {
		fprintf(stderr, "usage: threads_and_fork <mount point>\n");
		return 2;
	}
	mnt = argv[1];
	caught_before = status_mask("self", "SigCgt");
	before = count_entries("/proc/self/task");

	ok(freezefs(mnt, FS_Q_QUERY, 0) == 0, "QUERY works");
	ok(freezefs(mnt, FS_Q_FREEZE, -1) == 0 && freezefs(mnt, FS_Q_THAW, 0) == 0,
	   "untimed FREEZE and THAW work");
	ok(count_entries("/proc/self/task") == before, "no thread before the first timed freeze");
	ok(timer_task() == NULL, "no freezefs-timer thread yet");

	ok(freezefs(mnt, FS_Q_FREEZE, 30) == 0, "timed FREEZE works");
	ok(count_entries("/proc/self/task") == before + 1, "the first timed freeze starts one thread");
	/* The new thread names itself once it runs: give it a moment. */
	for (i = 0; i < 200 && (task = timer_task()) == NULL; i++)
		usleep(10000);
	ok(task != NULL, "the thread is named freezefs-timer");
	blocked = task ? status_mask(task, "SigBlk") : 0;
	for (i = 1; i <= 31; i++) {
		char what[64];
		if (i == SIGKILL || i == SIGSTOP)
			continue;
		snprintf(what, sizeof what, "the helper thread blocks signal %d", i);
		ok((blocked >> (i - 1)) & 1, what);
	}
	ok(freezefs(mnt, FS_Q_THAW, 0) == 0, "THAW works");
	ok(freezefs(mnt, FS_Q_FREEZE, 30) == 0 && freezefs(mnt, FS_Q_THAW, 0) == 0,
	   "a second timed freeze works");
	ok(count_entries("/proc/self/task") == before + 1, "and starts no second thread");
	ok(status_mask("self", "SigCgt") == caught_before, "the library installed no signal handler");

	pthread_create(&cycler, NULL, cycle, NULL);
	for (i = 0; i < 40; i++) {
		int status = 0;
		pid_t pid = fork();
		if (pid == 0)
			child();
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			printf("# child %d: %s %d\n", i, WIFSIGNALED(status) ? "killed by signal" : "exit",
			       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			forks_ok = 0;
		}
		usleep(2000 + (i * 997) % 5000);
	}
	stop_cycling = 1;
	pthread_join(cycler, NULL);
	ok(forks_ok, "40 children forked while a thread was inside the library all used it");
	ok(freezefs(mnt, FS_Q_QUERY, 0) == 0, "everything thawed at the end");

	printf("1..%d\n", count);
	return failures ? 1 : 0;
}
