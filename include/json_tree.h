/*
 * Whole JSON documents as a tree (lib/json_tree.c), for files lkvm reads but
 * does not write, like an OCI bundle's config.json. Bounded: at most
 * JSON_TREE_MAX_DEPTH levels and JSON_TREE_MAX_NODES values, so a hostile
 * file costs bounded memory and stack. Library code: NULL with err_set().
 */
#ifndef LKVM_JSON_TREE_H
#define LKVM_JSON_TREE_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_TREE_MAX_DEPTH 64
#define JSON_TREE_MAX_NODES 200000

enum json_kind { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

struct json_node {
	enum json_kind kind;
	char *key;		/* the member's name inside an object, else NULL */
	char *str;		/* JSON_STR: the text (no NUL inside: \u0000 is refused) */
	double num;		/* JSON_NUM */
	bool is_int;		/* JSON_NUM without fraction or exponent: ival holds it */
	long long ival;
	bool b;			/* JSON_BOOL */
	struct json_node *child, *next;	/* JSON_ARR, JSON_OBJ: members in order */
	int count;
};

/* Parse text (len bytes); err says where it went wrong ("offset N: ..."). */
struct json_node *json_parse(const char *text, size_t len);
void json_tree_free(struct json_node *n);

/* A member of an object (the last of a repeated name), or NULL (also for non-objects). */
const struct json_node *json_member(const struct json_node *obj, const char *key);
/* Its text if it is a string, else NULL. */
const char *json_member_str(const struct json_node *obj, const char *key);

#endif
