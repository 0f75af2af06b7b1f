/* Just enough JSON for the control protocol: flat objects read, objects written. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"
#include "util.h"

static const char *skip_ws(const char *p)
{
	while (*p && isspace((unsigned char)*p))
		p++;
	return p;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Parse a JSON string at p (after the quote); copy unescaped into out. */
static const char *parse_string(const char *p, char *out, size_t len)
{
	size_t n = 0;
	while (*p && *p != '"') {
		unsigned cp = (unsigned char)*p++;
		bool unicode = false;	/* cp came from \\uXXXX: encode it as UTF-8 */
		if (cp == '\\') {
			char c = *p++;
			switch (c) {
			case 'n': cp = '\n'; break;
			case 't': cp = '\t'; break;
			case 'r': cp = '\r'; break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case '"': case '\\': case '/': cp = (unsigned char)c; break;
			case 'u':
				cp = 0;
				for (int i = 0; i < 4; i++) {
					int h = hexval(*p++);
					if (h < 0)
						return NULL;
					cp = cp << 4 | h;
				}
				if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
					return NULL;	/* NUL, and surrogates: not in lkvm's own text */
				unicode = true;
				break;
			default:
				return NULL;
			}
		} else if (cp < 0x20) {
			return NULL;
		}
		/* UTF-8 for what \u named; bytes as they came otherwise. */
		char enc[3];
		int k = 0;
		if (cp < 0x80 || !unicode) {
			enc[k++] = (char)cp;
		} else if (cp < 0x800) {
			enc[k++] = (char)(0xc0 | cp >> 6);
			enc[k++] = (char)(0x80 | (cp & 0x3f));
		} else {
			enc[k++] = (char)(0xe0 | cp >> 12);
			enc[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			enc[k++] = (char)(0x80 | (cp & 0x3f));
		}
		for (int i = 0; i < k; i++)
			if (out && n + 1 < len)
				out[n++] = enc[i];
	}
	if (*p != '"')
		return NULL;
	if (out && len)
		out[n] = 0;
	return p + 1;
}

static const char *parse_value(const char *p)
{
	p = skip_ws(p);
	if (*p == '"')
		return parse_string(p + 1, NULL, 0);
	if (*p == '-' || isdigit((unsigned char)*p)) {
		char *end;
		strtod(p, &end);
		return end == p ? NULL : end;
	}
	if (!strncmp(p, "true", 4)) return p + 4;
	if (!strncmp(p, "false", 5)) return p + 5;
	if (!strncmp(p, "null", 4)) return p + 4;
	return NULL;
}

/* Walk members; returns the value position for key, or NULL. Validates as it goes. */
static const char *find_member(const char *json, const char *key, bool *valid)
{
	const char *p = skip_ws(json), *found = NULL;
	*valid = false;
	if (*p++ != '{')
		return NULL;
	p = skip_ws(p);
	if (*p == '}') {
		*valid = !*skip_ws(p + 1);
		return NULL;
	}
	for (;;) {
		char name[64];
		p = skip_ws(p);
		if (*p++ != '"' || !(p = parse_string(p, name, sizeof(name))))
			return NULL;
		p = skip_ws(p);
		if (*p++ != ':')
			return NULL;
		const char *val = skip_ws(p);
		if (!(p = parse_value(val)))
			return NULL;
		if (!found && key && !strcmp(name, key))
			found = val;
		p = skip_ws(p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '}' && !*skip_ws(p + 1)) {
			*valid = true;
			return found;
		}
		return NULL;
	}
}

bool json_valid_object(const char *json)
{
	bool valid;
	find_member(json, NULL, &valid);
	return valid;
}

bool json_get_str(const char *json, const char *key, char *out, size_t len)
{
	bool valid;
	const char *v = find_member(json, key, &valid);
	return valid && v && *v == '"' && parse_string(v + 1, out, len);
}

bool json_get_num(const char *json, const char *key, long long *out)
{
	bool valid;
	const char *v = find_member(json, key, &valid);
	if (!valid || !v || !(*v == '-' || isdigit((unsigned char)*v)))
		return false;
	*out = strtoll(v, NULL, 10);
	return true;
}

bool json_get_bool(const char *json, const char *key, bool *out)
{
	bool valid;
	const char *v = find_member(json, key, &valid);
	if (!valid || !v)
		return false;
	if (!strncmp(v, "true", 4) || !strncmp(v, "false", 5)) {
		*out = *v == 't';
		return true;
	}
	return false;
}

/* ---- writing ---- */

void json_init(struct json_writer *j)
{
	memset(j, 0, sizeof(*j));
	j->cap = 256;
	j->buf = xcalloc(1, j->cap);
}

void json_free(struct json_writer *j)
{
	free(j->buf);
	memset(j, 0, sizeof(*j));
}

const char *json_text(const struct json_writer *j)
{
	return j->buf ? j->buf : "";
}

static void put(struct json_writer *j, const char *s, size_t n)
{
	if (j->len + n + 1 > j->cap) {
		size_t cap = j->cap ? j->cap : 256;
		while (j->len + n + 1 > cap)
			cap *= 2;
		char *b = realloc(j->buf, cap);
		if (!b)
			abort();	/* host out of memory, as in xcalloc */
		j->buf = b;
		j->cap = cap;
	}
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = 0;
}

static void put_str(struct json_writer *j, const char *s) { put(j, s, strlen(s)); }

static void quoted(struct json_writer *j, const char *s)
{
	put(j, "\"", 1);
	for (; *s; s++) {
		unsigned char c = *s;
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = c;
			put(j, esc, 2);
		} else if (c == '\n') {
			put_str(j, "\\n");
		} else if (c == '\t') {
			put_str(j, "\\t");
		} else if (c == '\r') {
			put_str(j, "\\r");
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put_str(j, esc);
		} else {
			put(j, (const char *)&c, 1);
		}
	}
	put(j, "\"", 1);
}

/* The comma and the key before a value. */
static void member(struct json_writer *j, const char *key)
{
	if (j->depth > 0) {
		if (j->need_comma[j->depth])
			put(j, ",", 1);
		j->need_comma[j->depth] = true;
	}
	if (key) {
		quoted(j, key);
		put(j, ":", 1);
	}
}

void json_begin(struct json_writer *j, const char *key, char open)
{
	member(j, key);
	put(j, &open, 1);
	if (j->depth + 1 >= (int)ARRAY_SIZE(j->need_comma))
		abort();	/* nesting is fixed by lkvm's own code, never by input */
	j->open[++j->depth] = open;
	j->need_comma[j->depth] = false;
}

void json_end(struct json_writer *j)
{
	if (j->depth <= 0)
		abort();
	put(j, j->open[j->depth--] == '[' ? "]" : "}", 1);
}

void json_str(struct json_writer *j, const char *key, const char *v)
{
	member(j, key);
	quoted(j, v ? v : "");
}

void json_u64(struct json_writer *j, const char *key, uint64_t v)
{
	char num[24];
	member(j, key);
	snprintf(num, sizeof(num), "%" PRIu64, v);
	put_str(j, num);
}

void json_i64(struct json_writer *j, const char *key, int64_t v)
{
	char num[24];
	member(j, key);
	snprintf(num, sizeof(num), "%" PRId64, v);
	put_str(j, num);
}

void json_bool(struct json_writer *j, const char *key, bool v)
{
	member(j, key);
	put_str(j, v ? "true" : "false");
}
