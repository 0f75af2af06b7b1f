/*
 * libFuzzer target: what a hostile bundle's config.json or exec's --process
 * file gives lkvm oci: lib/json_tree.c's parser, then cmd/oci_config.c's
 * process reader on the "process" member (or the whole document).
 *
 * Oracle: no crash, leak or hang; a parsed tree's counts match its members;
 * a process that parses has at least one non-empty argument, args and env
 * NULL-terminated, every env entry NAME=VALUE, soft <= hard limits.
 */
#include "json_tree.h"
#include "oci_config.h"
#define FUZZ_NAME "fuzz_oci_json"
#include "fuzz_harness.h"

static int walk(const struct json_node *n, int depth)
{
	int nodes = 1;
	if (depth > JSON_TREE_MAX_DEPTH + 1)
		fail("tree deeper than its bound");
	int k = 0;
	for (const struct json_node *c = n->child; c; c = c->next, k++) {
		if ((n->kind == JSON_OBJ) != (c->key != NULL))
			fail("a member's key does not match its parent's kind");
		nodes += walk(c, depth + 1);
	}
	if (k != n->count)
		fail("count %d, %d members", n->count, k);
	if (n->kind == JSON_STR && !n->str)
		fail("a string without text");
	return nodes;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_add_timeout(argc, argv);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_node *n = json_parse((const char *)data, size);
	if (!n)
		return 0;
	if (walk(n, 0) > JSON_TREE_MAX_NODES)
		fail("more values than the bound");
	const struct json_node *proc = json_member(n, "process");
	struct oci_process p;
	if (oci_process_parse(&p, proc ? proc : n) == 0) {
		if (p.nargs < 1 || !p.args[0][0] || p.args[p.nargs] || (p.env && p.env[p.nenv]))
			fail("a process without a command, or lists not NULL-terminated");
		for (int i = 0; i < p.nenv; i++)
			if (!strchr(p.env[i], '=') || p.env[i][0] == '=')
				fail("env entry '%s'", p.env[i]);
		for (int i = 0; i < p.nrlim; i++)
			if (p.rlim[i].soft > p.rlim[i].hard)
				fail("rlimit soft above hard");
	}
	oci_process_free(&p);
	json_tree_free(n);
	return 0;
}
