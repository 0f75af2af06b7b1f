/*
 * Start a command R times; for each run record the time from fork to the
 * first byte on its stdout and to its exit. Prints min/median/max of both, in
 * milliseconds:  timeit [-k] R CMD [ARGS...]
 * -k: the command is killed (SIGTERM) at its first byte, for guests that do
 * not end by themselves; the exit time then includes lkvm's teardown.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int kill_first = argc > 1 && !strcmp(argv[1], "-k");
	if (kill_first) {
		argv++;
		argc--;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: timeit [-k] RUNS CMD [ARGS...]\n");
		return 2;
	}
	int runs = atoi(argv[1]);
	double *first = calloc(runs, sizeof(double)), *end = calloc(runs, sizeof(double));
	for (int i = 0; i < runs; i++) {
		int p[2];
		if (pipe(p) < 0)
			return 1;
		double t0 = now();
		pid_t pid = fork();
		if (pid == 0) {
			dup2(p[1], 1);
			close(p[0]);
			execvp(argv[2], argv + 2);
			_exit(127);
		}
		close(p[1]);
		char c;
		first[i] = read(p[0], &c, 1) == 1 ? now() - t0 : -1;
		if (kill_first)
			kill(pid, SIGTERM);
		while (read(p[0], &c, 1) == 1)
			;
		int st;
		waitpid(pid, &st, 0);
		end[i] = now() - t0;
		close(p[0]);
		if (first[i] < 0) {
			fprintf(stderr, "timeit: no output from %s (status %d)\n", argv[2], st);
			return 1;
		}
	}
	qsort(first, runs, sizeof(double), cmp);
	qsort(end, runs, sizeof(double), cmp);
	printf("first-byte ms min %.1f median %.1f max %.1f | exit ms min %.1f median %.1f max %.1f\n",
	       first[0], first[runs / 2], first[runs - 1], end[0], end[runs / 2], end[runs - 1]);
	return 0;
}
