/* The syscall allowlist: a listed call works, an unlisted one is named and fatal. */
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
#include "test.h"
#include "seccomp.h"

TEST(names)
{
	CHECK(!strcmp(syscall_name(SYS_read), "read"));
	CHECK(!strcmp(syscall_name(SYS_personality), "personality"));
	CHECK(!strcmp(syscall_name(-1), "?"));
	CHECK(!strcmp(syscall_name(100000), "?"));
}

TEST(blocked_syscall_is_named)
{
	int p[2];
	CHECK_EQ(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		if (seccomp_install(false) < 0)
			_exit(99);
		if (write(STDOUT_FILENO, "", 0) < 0)	/* allowed */
			_exit(98);
		syscall(SYS_personality, 0xffffffff);	/* not allowed */
		_exit(0);
	}
	close(p[1]);
	char buf[256] = { 0 };
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	int st;
	waitpid(pid, &st, 0);
	CHECK(n > 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
	CHECK(strstr(buf, "seccomp blocked syscall personality (nr 135)") != NULL);
	close(p[0]);
}

TEST(file_calls_only_when_asked)
{
	pid_t pid = fork();
	if (pid == 0) {
		close(STDERR_FILENO);
		if (seccomp_install(false) < 0)
			_exit(99);
		syscall(SYS_openat, AT_FDCWD, "/", 0);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
	pid = fork();
	if (pid == 0) {
		if (seccomp_install(true) < 0)
			_exit(99);
		_exit(syscall(SYS_openat, AT_FDCWD, "/", 0) >= 0 ? 0 : 3);
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void *narrowed_then_socket(void *arg)
{
	if (seccomp_narrow_vcpu() < 0)
		_exit(97);
	if (write(STDOUT_FILENO, "", 0) < 0)	/* still allowed */
		_exit(98);
	if (*(int *)arg)
		syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);	/* not on a vCPU thread */
	return NULL;
}

/* A vCPU thread may not make sockets or threads; the other threads still may. */
TEST(vcpu_thread_is_narrower)
{
	int p[2];
	CHECK_EQ(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		if (seccomp_install(false) < 0)
			_exit(99);
		pthread_t t;
		int try_socket = 1;
		pthread_create(&t, NULL, narrowed_then_socket, &try_socket);
		pthread_join(t, NULL);
		_exit(0);
	}
	close(p[1]);
	char buf[256] = { 0 };
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	int st;
	waitpid(pid, &st, 0);
	CHECK(n > 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
	CHECK(strstr(buf, "seccomp blocked syscall socket (nr 41)") != NULL);
	close(p[0]);
	/* The narrowing stays on its thread: the main thread's socket() works afterwards. */
	pid = fork();
	if (pid == 0) {
		if (seccomp_install(false) < 0)
			_exit(99);
		pthread_t t;
		int try_socket = 0;
		pthread_create(&t, NULL, narrowed_then_socket, &try_socket);
		pthread_join(t, NULL);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		_exit(fd >= 0 ? 0 : 3);
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST_MAIN()
