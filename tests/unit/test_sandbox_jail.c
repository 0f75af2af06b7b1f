/*
 * cmd/sandbox_jail.c's decisions: whether the sandbox's VM is jailed, from
 * the run options it passes on. As root the default is on and steps back
 * (off, no error) for --gdb, --no-seccomp, --snapshot-cache and a --vsock of
 * the user's; --jail makes each an error naming it; --no-jail is off; the
 * invoking user is SUDO_UID's under sudo; --jail-user picks the jail user.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "test.h"
#include "sandbox_jail.h"
#include "util.h"

static struct sandbox_jail j;

static int decide(bool cache, bool vsock, int n, ...)
{
	char *args[8];
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		args[i] = va_arg(ap, char *);
	va_end(ap);
	return sandbox_jail_decide(&j, args, n, cache, vsock);
}

TEST(default_as_root_steps_back_quietly)
{
	if (geteuid() != 0)
		SKIP("the default jails only as root");
	unsetenv("SUDO_UID");
	unsetenv("SUDO_GID");
	CHECK_EQ(decide(false, false, 0), 0);
	CHECK(j.on && !j.asked && j.uid == 65534 && j.inv_uid == 0 && j.inv_gid == 0);
	CHECK_EQ(decide(false, false, 2, "--gdb", "tcp:127.0.0.1:0"), 0);
	CHECK(!j.on);
	CHECK_EQ(decide(false, false, 1, "--no-seccomp"), 0);
	CHECK(!j.on);
	CHECK_EQ(decide(true, false, 0), 0);
	CHECK(!j.on);
	CHECK_EQ(decide(false, true, 0), 0);
	CHECK(!j.on);
	CHECK_EQ(decide(false, false, 1, "--no-jail"), 0);
	CHECK(!j.on);
	setenv("SUDO_UID", "1234", 1);
	setenv("SUDO_GID", "2345", 1);
	CHECK_EQ(decide(false, false, 0), 0);
	CHECK(j.on && j.uid == 1234 && j.gid == 2345 && j.inv_uid == 1234 && j.inv_gid == 2345);
	CHECK_EQ(sandbox_jail_share(&j, "/nonexistent"), -2);	/* the jail user is the invoking user: nothing to map */
	unsetenv("SUDO_UID");
	unsetenv("SUDO_GID");
	CHECK_EQ(decide(false, false, 2, "--jail-user", "4321:5432"), 0);
	CHECK(j.on && j.uid == 4321 && j.gid == 5432 && j.inv_uid == 0);
}

TEST(jail_asked_fails_where_the_default_steps_back)
{
	CHECK_EQ(decide(false, false, 3, "--jail", "--gdb", "tcp:127.0.0.1:0"), -1);
	CHECK(strstr(err_msg(), "--jail") && strstr(err_msg(), "--gdb"));
	CHECK_EQ(decide(true, false, 1, "--jail"), -1);
	CHECK(strstr(err_msg(), "--snapshot-cache") != NULL);
	CHECK_EQ(decide(false, true, 1, "--jail"), -1);
	CHECK(strstr(err_msg(), "--vsock") != NULL);
	CHECK_EQ(decide(false, false, 2, "--jail", "--no-seccomp"), -1);
	CHECK(strstr(err_msg(), "--no-seccomp") != NULL);
	CHECK_EQ(decide(false, false, 3, "--jail", "--jail-user", "0"), -1);	/* never root */
	CHECK(strstr(err_msg(), "root") != NULL);
	CHECK_EQ(decide(false, false, 2, "--jail", "--jail-user=4321"), 0);
	CHECK(j.on && j.asked && j.uid == 4321);
}

TEST_MAIN()
