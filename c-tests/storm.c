/*
 * storm: threads issuing random FREEZE (every timeout kind), THAW, QUERY,
 * reset and status on two filesystems for a while. Every result must be a
 * documented one and every call must return within 10 s.
 *
 *   storm <mount A> <mount B> <threads> <milliseconds> <seed>
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <freezefs.h>

static char *mounts[2];
static long run_ms;
static volatile int violations;
static long calls;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void violation(const char *what, int rc, int err)
{
	pthread_mutex_lock(&lock);
	violations++;
	printf("violation: %s rc=%d errno=%d (%s)\n", what, rc, err, strerror(err));
	pthread_mutex_unlock(&lock);
}

static void *worker(void *arg)
{
	unsigned int seed = (unsigned int)(size_t)arg;
	double end = now_ms() + run_ms;
	static const int timeouts[] = {1, 2, 0, -1};
	long mine = 0;

	while (now_ms() < end) {
		char *mp = mounts[rand_r(&seed) % 2];
		int op = rand_r(&seed) % 5, rc, err;
		struct freezefs_status st;
		double t0 = now_ms();
		errno = 0;
		switch (op) {
		case 0:
			rc = freezefs(mp, FS_Q_FREEZE, timeouts[rand_r(&seed) % 4]);
			err = errno;
			if (!(rc == 0 || (rc == -1 && err == EALREADY)))
				violation("freeze", rc, err);
			break;
		case 1:
			rc = freezefs(mp, FS_Q_THAW, 0);
			err = errno;
			if (!(rc == 0 || (rc == -1 && err == EALREADY)))
				violation("thaw", rc, err);
			break;
		case 2:
			rc = freezefs(mp, FS_Q_QUERY, 0);
			err = errno;
			if (!(rc == 0 || rc == 1))
				violation("query", rc, err);
			break;
		case 3:
			rc = freezefs_reset_timeout(mp, timeouts[rand_r(&seed) % 4]);
			err = errno;
			if (!(rc == 0 || (rc == -1 && err == EINVAL)))
				violation("reset", rc, err);
			break;
		default:
			rc = freezefs_status(mp, &st);
			err = errno;
			if (rc != 0 || st.state < FREEZEFS_THAWED || st.state > FREEZEFS_FROZEN)
				violation("status", rc, err);
			break;
		}
		if (now_ms() - t0 > 10000.0)
			violation("a call took over 10 s", rc, 0);
		mine++;
	}
	pthread_mutex_lock(&lock);
	calls += mine;
	pthread_mutex_unlock(&lock);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[64];
	int n, i;
	unsigned int seed;

	if (argc != 6)
		return 2;
	mounts[0] = argv[1];
	mounts[1] = argv[2];
	n = atoi(argv[3]);
	run_ms = atol(argv[4]);
	seed = (unsigned int)atoi(argv[5]);
	if (n < 1 || n > 64)
		return 2;
	for (i = 0; i < n; i++)
		pthread_create(&threads[i], NULL, worker, (void *)(size_t)(seed * 64 + i + 1));
	for (i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	printf("calls=%ld violations=%d\n", calls, violations);
	return violations ? 1 : 0;
}
