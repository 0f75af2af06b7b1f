/* The syscall allowlist: a listed call works, an unlisted one is named and fatal. */
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
#include "child.h"
#include "test.h"
#include "seccomp.h"

TEST(names)
{
	CHECK(!strcmp(syscall_name(SYS_read), "read"));
	CHECK(!strcmp(syscall_name(SYS_personality), "personality"));
	CHECK(!strcmp(syscall_name(-1), "?"));
	CHECK(!strcmp(syscall_name(100000), "?"));
}

static void personality_after_install(int unused)
{
	if (seccomp_install(false) < 0)
		_exit(99);
	if (write(STDOUT_FILENO, "", 0) < 0)	/* allowed */
		_exit(98);
	syscall(SYS_personality, 0xffffffff);	/* not allowed */
}

TEST(blocked_syscall_is_named)
{
	char err[256];
	CHECK_EQ(in_child(personality_after_install, 0, err, sizeof(err)), 2);
	CHECK(strstr(err, "seccomp blocked syscall personality (nr 135)") != NULL);
}

static void openat_after_install(int with_files)
{
	if (seccomp_install(with_files) < 0)
		_exit(99);
	_exit(syscall(SYS_openat, AT_FDCWD, "/", 0) >= 0 ? 0 : 3);
}

TEST(file_calls_only_when_asked)
{
	char err[256];
	CHECK_EQ(in_child(openat_after_install, false, err, sizeof(err)), 2);
	CHECK(strstr(err, "openat") != NULL);
	CHECK_EQ(in_child(openat_after_install, true, err, sizeof(err)), 0);
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

/* A "vCPU thread" narrows itself, tries socket() if asked; then the main thread tries. */
static void vcpu_then_main(int vcpu_tries)
{
	if (seccomp_install(false) < 0)
		_exit(99);
	pthread_t t;
	pthread_create(&t, NULL, narrowed_then_socket, &vcpu_tries);
	pthread_join(t, NULL);
	_exit(socket(AF_UNIX, SOCK_STREAM, 0) >= 0 ? 0 : 3);
}

/* A vCPU thread may not make sockets or threads; the other threads still may. */
TEST(vcpu_thread_is_narrower)
{
	char err[256];
	CHECK_EQ(in_child(vcpu_then_main, 1, err, sizeof(err)), 2);
	CHECK(strstr(err, "seccomp blocked syscall socket (nr 41)") != NULL);
	/* The narrowing stays on its thread: the main thread's socket() works afterwards. */
	CHECK_EQ(in_child(vcpu_then_main, 0, err, sizeof(err)), 0);
}

static void *sleeper(void *arg) { for (;;) sleep(1); return arg; }	/* nanosleep: allowed */
static void on_usr2(int sig) { (void)sig; }

/* tgkill: to lkvm's own threads (a vCPU kick) yes; to another process (of the same user) never. */
static void tgkill_after_install(int other)
{
	signal(SIGUSR2, on_usr2);
	pthread_t t;
	pthread_create(&t, NULL, sleeper, NULL);
	pid_t parent = getppid();
	if (seccomp_install(false) < 0)
		_exit(99);
	if (pthread_kill(t, SIGUSR2) != 0)
		_exit(97);
	syscall(SYS_tgkill, other ? parent : getpid(), other ? parent : getpid(), 0);
	_exit(0);
}

TEST(tgkill_reaches_only_own_threads)
{
	char err[256];
	CHECK_EQ(in_child(tgkill_after_install, 0, err, sizeof(err)), 0);
	CHECK_EQ(in_child(tgkill_after_install, 1, err, sizeof(err)), 2);
	if (!strstr(err, "seccomp blocked syscall tgkill"))
		fprintf(stderr, "  child said: %s\n", err);
	CHECK(strstr(err, "seccomp blocked syscall tgkill") != NULL);
}

TEST_MAIN()
