/*
 * A minimal unit-test harness. Each test_*.c defines tests with TEST(name)
 * and ends with TEST_MAIN(); every CHECK counts, and the binary prints
 * "N passed, N failed" and exits non-zero on any failure.
 */
#ifndef LKVM_TEST_H
#define LKVM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

static int t_pass, t_fail;
static const char *t_name;

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

struct t_case { const char *name; void (*fn)(void); };
static struct t_case t_cases[256];
static int t_nr;

#define TEST(n) \
	static void test_##n(void); \
	__attribute__((constructor)) static void reg_##n(void) { t_cases[t_nr].name = #n; t_cases[t_nr++].fn = test_##n; } \
	static void test_##n(void)

#define TEST_MAIN() \
int main(int argc, char **argv) { \
	for (int i = 0; i < t_nr; i++) { \
		if (argc > 1 && strcmp(argv[1], t_cases[i].name)) continue; \
		t_name = t_cases[i].name; t_cases[i].fn(); \
	} \
	printf("%s: %d passed, %d failed\n", argv[0], t_pass, t_fail); \
	return t_fail ? 1 : 0; \
}

#endif
