/* lib/json_tree.c: whole documents, escapes, bounds, and what it refuses. */
#include "test.h"
#include "json_tree.h"
#include "util.h"

static struct json_node *P(const char *s) { return json_parse(s, strlen(s)); }

TEST(nested_document)
{
	struct json_node *n = P(" {\"a\": {\"b\": [1, -2, 3.5, \"x\\u00e9\\ud83d\\ude00\", true, false, null]}, \"a2\": 9007199254740993} ");
	CHECK(n && n->kind == JSON_OBJ && n->count == 2);
	const struct json_node *b = json_member(json_member(n, "a"), "b");
	CHECK(b && b->kind == JSON_ARR && b->count == 7);
	const struct json_node *e = b->child;
	CHECK(e->is_int && e->ival == 1);
	e = e->next;
	CHECK(e->is_int && e->ival == -2);
	e = e->next;
	CHECK(!e->is_int && e->num == 3.5);
	e = e->next;
	CHECK(e->kind == JSON_STR && !strcmp(e->str, "x\xc3\xa9\xf0\x9f\x98\x80"));
	e = e->next;
	CHECK(e->kind == JSON_BOOL && e->b);
	e = e->next;
	CHECK(e->kind == JSON_BOOL && !e->b);
	CHECK(e->next->kind == JSON_NULL);
	const struct json_node *big = json_member(n, "a2");
	CHECK(big && big->is_int && big->ival == 9007199254740993LL);	/* exact, past a double's 53 bits */
	CHECK(json_member_str(n, "a") == NULL);
	json_tree_free(n);
}

TEST(refuses_bad_text)
{
	static const char *const bad[] = { "", "{", "{\"a\" 1}", "{\"a\":1,}", "[1 2]", "\"abc", "\"a\\x\"", "\"\\u0000\"",
					   "\"\\ud800\"", "01", "1.", "-", "tru", "{} x", "\"a\nb\"", "[1,]", "{1:2}" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct json_node *n = P(bad[i]);
		if (n)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		CHECK(n == NULL);
	}
	CHECK(P("{\"a\" 1}") == NULL && strstr(err_msg(), "offset 5") != NULL);
}

TEST(bounds)
{
	char deep[400];
	memset(deep, '[', 200);
	memset(deep + 200, ']', 200);
	CHECK(json_parse(deep, 400) == NULL && strstr(err_msg(), "deep"));
	memset(deep, '[', 60);
	memset(deep + 60, ']', 60);
	struct json_node *n = json_parse(deep, 120);
	CHECK(n != NULL);
	json_tree_free(n);
	/* more values than the cap: refused, not a memory blow-up */
	size_t len = 2 * JSON_TREE_MAX_NODES + 10;
	char *many = malloc(len + 2);
	many[0] = '[';
	size_t k = 1;
	for (int i = 0; i <= JSON_TREE_MAX_NODES; i++) {
		many[k++] = '0';
		many[k++] = ',';
	}
	many[k - 1] = ']';
	CHECK(json_parse(many, k) == NULL && strstr(err_msg(), "too many"));
	free(many);
}

TEST(last_duplicate_wins)
{
	struct json_node *n = P("{\"k\":\"one\",\"k\":\"two\"}");
	CHECK(n && !strcmp(json_member_str(n, "k"), "two"));
	json_tree_free(n);
}

TEST_MAIN()
