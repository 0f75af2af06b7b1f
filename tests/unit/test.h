/*
 * A minimal unit-test harness. Each test_*.c defines tests with TEST(name)
 * and ends with TEST_MAIN(). What counts is tests, not CHECKs: a test passes
 * when it ran at least one CHECK and none failed; SKIP("reason", ...) ends a
 * test as skipped, printed with its reason; a test that ran no CHECK and did
 * not skip fails, so no test passes by asserting nothing. NEED_TOOL() skips
 * a test whose host tool is missing, or fails it where CI (CI=true)
 * installs that tool. The last line is
 *   NAME: N passed, N failed, N skipped (M checks)
 * and the status is non-zero on any failure, or when no test ran.
 */
#ifndef LKVM_TEST_H
#define LKVM_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

static int t_pass, t_fail;	/* CHECKs that held and failed, over the whole binary */
static const char *t_name;	/* the running test, for messages (a test may relabel its parts) */
static bool t_skipped;
static char t_skip_why[256];

#define CHECK(cond) do { \
	if (cond) t_pass++; \
	else { t_fail++; fprintf(stderr, "FAIL %s: %s:%d: %s\n", t_name, __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_EQ(a, b) do { \
	unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b); \
	if (a_ == b_) t_pass++; \
	else { t_fail++; fprintf(stderr, "FAIL %s: %s:%d: %s == %s (0x%llx != 0x%llx)\n", \
			t_name, __FILE__, __LINE__, #a, #b, a_, b_); } \
} while (0)

/* Mark the running test skipped, with its reason; the caller returns. */
static void __attribute__((format(printf, 1, 2), unused)) test_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t_skip_why, sizeof(t_skip_why), fmt, ap);
	va_end(ap);
	t_skipped = true;
}

#define SKIP(...) do { test_skip(__VA_ARGS__); return; } while (0)

/* True when TOOL is on PATH; else the test is skipped, or fails under CI, which installs PKG. */
static bool __attribute__((unused)) test_have_tool(const char *tool, const char *pkg)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v '%s' >/dev/null 2>&1", tool);
	if (system(cmd) == 0)
		return true;
	const char *ci = getenv("CI");
	if (ci && !strcmp(ci, "true")) {
		t_fail++;
		fprintf(stderr, "FAIL %s: %s is not installed, and CI installs it (Debian: %s)\n", t_name, tool, pkg);
	} else {
		test_skip("%s not installed (Debian: %s)", tool, pkg);
	}
	return false;
}

#define NEED_TOOL(tool, pkg) do { if (!test_have_tool(tool, pkg)) return; } while (0)

struct t_case { const char *name; void (*fn)(void); };
static struct t_case t_cases[256];
static int t_nr;

#define TEST(n) \
	static void test_##n(void); \
	__attribute__((constructor)) static void reg_##n(void) { t_cases[t_nr].name = #n; t_cases[t_nr++].fn = test_##n; } \
	static void test_##n(void)

/* Run every test (or the one named by argv[1]) and judge each by what it checked. */
static inline int test_main(int argc, char **argv)
{
	const char *me = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	int passed = 0, failed = 0, skipped = 0, ran = 0;
	for (int i = 0; i < t_nr; i++) {
		const char *name = t_cases[i].name;
		if (argc > 1 && strcmp(argv[1], name))
			continue;
		int pass0 = t_pass, fail0 = t_fail;
		t_skipped = false;
		t_name = name;
		t_cases[i].fn();
		ran++;
		if (t_fail > fail0) {
			failed++;
			fprintf(stderr, "FAIL %s: %d of %d checks failed\n", name, t_fail - fail0, t_fail - fail0 + t_pass - pass0);
		} else if (t_skipped) {
			skipped++;
			printf("SKIP %s: %s\n", name, t_skip_why);
		} else if (t_pass == pass0) {
			failed++;
			fprintf(stderr, "FAIL %s: ran no CHECK (a test asserts something, or SKIPs with a reason)\n", name);
		} else {
			passed++;
		}
		fflush(stdout);
	}
	if (!ran) {
		failed++;
		fprintf(stderr, "FAIL %s: no test %s%s\n", me, argc > 1 ? "named " : "", argc > 1 ? argv[1] : "defined");
	}
	printf("%s: %d passed, %d failed, %d skipped (%d checks)\n", me, passed, failed, skipped, t_pass + t_fail);
	return failed ? 1 : 0;
}

#define TEST_MAIN() int main(int argc, char **argv) { return test_main(argc, argv); }

#endif
