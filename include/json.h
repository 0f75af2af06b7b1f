/*
 * Just enough JSON for the control protocol and lkvm's state files: reading
 * flat objects of strings and numbers, and writing objects with a writer
 * that escapes every string and places the commas itself.
 */
#ifndef LKVM_JSON_H
#define LKVM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reading: flat objects. */
bool json_get_str(const char *json, const char *key, char *out, size_t len);
bool json_get_num(const char *json, const char *key, long long *out);
bool json_get_bool(const char *json, const char *key, bool *out);
bool json_valid_object(const char *json);

/* Writing: json_begin/json_end nest objects ('{') and arrays ('['). */
struct json_writer {
	char *buf;
	size_t len, cap;
	int depth;
	char open[16];		/* '{' or '[' per level */
	bool need_comma[16];
};

void json_init(struct json_writer *j);
void json_free(struct json_writer *j);
void json_begin(struct json_writer *j, const char *key, char open);	/* key NULL inside arrays / at top */
void json_end(struct json_writer *j);
void json_str(struct json_writer *j, const char *key, const char *v);
void json_u64(struct json_writer *j, const char *key, uint64_t v);
void json_i64(struct json_writer *j, const char *key, int64_t v);
void json_bool(struct json_writer *j, const char *key, bool v);
/* The text so far (NUL-terminated; owned by the writer). */
const char *json_text(const struct json_writer *j);

#endif
