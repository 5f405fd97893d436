/*
 * consistent_backup: freeze a filesystem, run a snapshot command, thaw, and
 * tell whether the snapshot can be trusted. The flow of the Tru64 freezefs(2)
 * example, with every error handled. Copy it.
 *
 *   consistent_backup <mount point> <timeout seconds> <command> [args...]
 *
 * The command runs while the filesystem is frozen: it must not write to it
 * (a write would wait until the timeout thaws it), and it must finish
 * within the timeout. Exit status:
 *   0  the command succeeded while the filesystem was frozen throughout
 *   1  the filesystem could not be frozen (nothing was done)
 *   2  the command failed (the filesystem was thawed)
 *   3  the freeze ended before the command did (timeout or another thaw):
 *      the snapshot is NOT consistent
 *
 * Build: cc -Iinclude consistent_backup.c -Ltarget/release -lfreezefs
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <freezefs.h>

extern char **environ;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

/* Runs argv to completion; returns its exit status, or -1. On SIGINT or
 * SIGTERM the command is stopped, so that the caller still thaws. */
static int run(char **argv)
{
	pid_t pid;
	int status, rc;

	rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (rc != 0) {
		fprintf(stderr, "consistent_backup: %s: %s\n", argv[0], strerror(rc));
		return -1;
	}
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			perror("consistent_backup: waitpid");
			return -1;
		}
		if (interrupted)
			kill(pid, SIGTERM);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "consistent_backup: %s: killed by signal %d\n", argv[0], WTERMSIG(status));
	return -1;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	char *mp;
	char *end;
	long timeout;
	int rc, status;

	if (argc < 4) {
		fprintf(stderr, "usage: consistent_backup <mount point> <timeout seconds> <command> [args...]\n");
		return 1;
	}
	mp = argv[1];
	errno = 0;
	timeout = strtol(argv[2], &end, 10);
	if (errno != 0 || *end != '\0' || timeout <= 0 || timeout > 86400) {
		fprintf(stderr, "consistent_backup: timeout must be 1..86400 seconds\n");
		return 1;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Someone else's freeze would thaw under us: refuse to share it. */
	errno = 0;
	rc = freezefs(mp, FS_Q_QUERY, 0);
	if (rc == -1) {
		fprintf(stderr, "consistent_backup: %s: %s\n", mp, strerror(errno));
		return 1;
	}
	if (rc == 1) {
		fprintf(stderr, "consistent_backup: %s: already frozen by someone else\n", mp);
		return 1;
	}

	errno = 0;
	if (freezefs(mp, FS_Q_FREEZE, (int)timeout) == -1) {
		fprintf(stderr, "consistent_backup: %s: freeze failed: %s\n", mp, strerror(errno));
		return 1;
	}
	printf("consistent_backup: %s frozen (timeout %ld s)\n", mp, timeout);
	printf("consistent_backup: QUERY says %s\n",
	       freezefs(mp, FS_Q_QUERY, 0) == 1 ? "frozen" : "NOT frozen");
	fflush(stdout);

	status = run(argv + 3);

	/* A failed THAW means the freeze was already over: as the Tru64 page
	 * says, the snapshot cannot rely on it. */
	errno = 0;
	if (freezefs(mp, FS_Q_THAW, 0) == -1) {
		if (errno == EALREADY) {
			fprintf(stderr,
				"consistent_backup: %s: the freeze ended before the snapshot did "
				"(timeout?): the snapshot is not consistent\n",
				mp);
			return 3;
		}
		fprintf(stderr, "consistent_backup: %s: thaw failed: %s\n", mp, strerror(errno));
		return 3;
	}
	printf("consistent_backup: %s thawed\n", mp);
	if (interrupted) {
		fprintf(stderr, "consistent_backup: interrupted by signal %d\n", (int)interrupted);
		return 2;
	}
	if (status != 0) {
		fprintf(stderr, "consistent_backup: snapshot command failed (status %d)\n", status);
		return 2;
	}
	printf("consistent_backup: snapshot taken while %s was frozen\n", mp);
	return 0;
}
