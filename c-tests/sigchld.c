/*
 * sigchld: a caller with a SIGCHLD handler and a waitpid(-1) reaper is not
 * disturbed by freezefs: it sees exactly its own child, never the holder
 * or anything the library starts.
 *
 *   sigchld <mount point>
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <freezefs.h>

static volatile sig_atomic_t sigchld_count;

static void on_sigchld(int sig)
{
	(void)sig;
	sigchld_count++;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	pid_t own, reaped;
	int i, status, failures = 0, others = 0;
	int go[2];
	char byte;

	if (argc != 2) {
		fprintf(stderr, "usage: sigchld <mount point>\n");
		return 2;
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigchld;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);

	/* Our child lives until the freezes are done (we close the pipe), so
	 * that a slow freeze never lets it exit inside the loop. */
	if (pipe(go) != 0) {
		perror("pipe");
		return 2;
	}
	own = fork();
	if (own == 0) {
		close(go[1]);
		while (read(go[0], &byte, 1) == -1 && errno == EINTR)
			;
		_exit(7);
	}
	close(go[0]);
	for (i = 0; i < 5; i++) {
		if (freezefs(argv[1], FS_Q_FREEZE, 30) != 0 || freezefs(argv[1], FS_Q_THAW, 0) != 0) {
			printf("not ok - freeze/thaw %d: %s\n", i, strerror(errno));
			failures++;
		}
		/* Before our child exits, waitpid(-1) must find nothing to reap. */
		reaped = waitpid(-1, &status, WNOHANG);
		if (reaped != 0) {
			printf("not ok - waitpid(-1) returned %d during freezes\n", (int)reaped);
			others++;
		}
	}
	close(go[1]);
	while ((reaped = waitpid(-1, &status, 0)) == -1 && errno == EINTR)
		;
	if (reaped != own || !WIFEXITED(status) || WEXITSTATUS(status) != 7) {
		printf("not ok - waitpid(-1) reaped %d, not our child %d\n", (int)reaped, (int)own);
		failures++;
	}
	reaped = waitpid(-1, &status, WNOHANG);
	if (reaped != -1 || errno != ECHILD) {
		printf("not ok - a child other than ours remained (%d)\n", (int)reaped);
		failures++;
	}
	if (sigchld_count != 1) {
		printf("not ok - %d SIGCHLD, wanted exactly 1 (our child's)\n", (int)sigchld_count);
		failures++;
	}
	printf("%s - one SIGCHLD, one child, across 5 freezes that started the holder\n",
	       failures || others ? "not ok" : "ok");
	return failures || others ? 1 : 0;
}
