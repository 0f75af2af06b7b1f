/* A heap overflow ASan reports, for tests/host/sanitizers.sh: the SANITIZE=1 build must stop there. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	char *p = malloc(8 * (size_t)argc);	/* a size the compiler cannot see */
	volatile char c = p[8 * argc];	/* one past the end */
	printf("went on after the overflow: %d\n", c);
	free(p);
	return 0;
}
