/*
 * Undefined behaviour UBSan reports (a signed overflow), for tests/host/sanitizers.sh:
 * built with the project's SANITIZE=1 flags it must stop at the report, never
 * reach the printf, and exit non-zero.
 */
#include <limits.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	volatile int big = INT_MAX;
	int sum = big + argc;	/* argc >= 1: overflows */
	printf("went on after the overflow: %d\n", sum);
	return 0;
}
