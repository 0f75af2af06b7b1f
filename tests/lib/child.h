/* Run a test's body in a child process with its stderr captured (tests that install seccomp filters or die on purpose). */
#ifndef LKVM_TEST_CHILD_H
#define LKVM_TEST_CHILD_H

#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

/* body(arg) in a child (exit 0 if it returns); its stderr into err. The child's exit status, -1 if it did not exit. */
static inline int in_child(void (*body)(int), int arg, char *err, size_t len)
{
	int p[2];
	err[0] = 0;
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		close(p[0]);
		body(arg);
		_exit(0);
	}
	close(p[1]);
	size_t got = 0;
	ssize_t n;
	while (got + 1 < len && (n = read(p[0], err + got, len - 1 - got)) > 0)
		got += n;
	err[got] = 0;
	close(p[0]);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
