/*
 * A bounded recursive-descent JSON parser (RFC 8259) into a tree
 * (include/json_tree.h). Depth and node count are capped; numbers keep an
 * exact integer when they are one.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "json_tree.h"
#include "util.h"

struct jp {
	const char *s;
	size_t len, pos;
	int nodes;
	bool bad;
};

static int jp_fail(struct jp *p, const char *what)
{
	if (!p->bad)
		err_set("offset %zu: %s", p->pos, what);
	p->bad = true;
	return -1;
}

static void skip_ws(struct jp *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
				   p->s[p->pos] == '\r'))
		p->pos++;
}

static int hexv(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int hex4(struct jp *p, unsigned *cp)
{
	if (p->pos + 4 > p->len)
		return jp_fail(p, "short \\u escape");
	*cp = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexv(p->s[p->pos++]);
		if (h < 0)
			return jp_fail(p, "bad \\u escape");
		*cp = *cp << 4 | h;
	}
	return 0;
}

/* A string after its opening quote; a new NUL-terminated copy. */
static char *parse_str(struct jp *p)
{
	size_t cap = 16, n = 0;
	char *o = malloc(cap);
	if (!o) {
		jp_fail(p, "out of memory");
		return NULL;
	}
	for (;;) {
		if (p->pos >= p->len) {
			jp_fail(p, "unterminated string");
			break;
		}
		unsigned char c = p->s[p->pos++];
		unsigned cp = c;
		bool enc = false;
		if (c == '"') {
			o[n] = 0;
			return o;
		}
		if (c < 0x20) {
			jp_fail(p, "control character in a string");
			break;
		}
		if (c == '\\') {
			if (p->pos >= p->len) {
				jp_fail(p, "unterminated string");
				break;
			}
			char e = p->s[p->pos++];
			switch (e) {
			case 'n': cp = '\n'; break;
			case 't': cp = '\t'; break;
			case 'r': cp = '\r'; break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case '"': case '\\': case '/': cp = (unsigned char)e; break;
			case 'u':
				if (hex4(p, &cp) < 0)
					goto bad;
				if (cp >= 0xd800 && cp <= 0xdbff) {	/* a surrogate pair */
					unsigned lo;
					if (p->pos + 2 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
						jp_fail(p, "lone surrogate");
						goto bad;
					}
					p->pos += 2;
					if (hex4(p, &lo) < 0)
						goto bad;
					if (lo < 0xdc00 || lo > 0xdfff) {
						jp_fail(p, "bad surrogate pair");
						goto bad;
					}
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				} else if (cp >= 0xdc00 && cp <= 0xdfff) {
					jp_fail(p, "lone surrogate");
					goto bad;
				}
				if (!cp) {
					jp_fail(p, "\\u0000 in a string");
					goto bad;
				}
				enc = true;
				break;
			default:
				jp_fail(p, "bad escape");
				goto bad;
			}
		}
		if (n + 5 > cap) {
			cap *= 2;
			char *g = realloc(o, cap);
			if (!g) {
				jp_fail(p, "out of memory");
				break;
			}
			o = g;
		}
		if (!enc || cp < 0x80) {
			o[n++] = (char)cp;
		} else if (cp < 0x800) {
			o[n++] = 0xc0 | cp >> 6;
			o[n++] = 0x80 | (cp & 0x3f);
		} else if (cp < 0x10000) {
			o[n++] = 0xe0 | cp >> 12;
			o[n++] = 0x80 | ((cp >> 6) & 0x3f);
			o[n++] = 0x80 | (cp & 0x3f);
		} else {
			o[n++] = 0xf0 | cp >> 18;
			o[n++] = 0x80 | ((cp >> 12) & 0x3f);
			o[n++] = 0x80 | ((cp >> 6) & 0x3f);
			o[n++] = 0x80 | (cp & 0x3f);
		}
	}
bad:
	free(o);
	return NULL;
}

static struct json_node *parse_value(struct jp *p, int depth);

static struct json_node *new_node(struct jp *p, enum json_kind k)
{
	if (++p->nodes > JSON_TREE_MAX_NODES) {
		jp_fail(p, "too many values");
		return NULL;
	}
	struct json_node *n = calloc(1, sizeof(*n));
	if (!n)
		jp_fail(p, "out of memory");
	else
		n->kind = k;
	return n;
}

static int parse_number(struct jp *p, struct json_node *n)
{
	size_t st = p->pos;
	bool frac = false;
	if (p->pos < p->len && p->s[p->pos] == '-')
		p->pos++;
	if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
		return jp_fail(p, "bad number");
	if (p->s[p->pos] == '0')
		p->pos++;
	else
		while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
			p->pos++;
	if (p->pos < p->len && p->s[p->pos] == '.') {
		frac = true;
		p->pos++;
		if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
			return jp_fail(p, "bad number");
		while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
			p->pos++;
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		frac = true;
		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
			return jp_fail(p, "bad number");
		while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
			p->pos++;
	}
	char buf[64];
	size_t l = p->pos - st;
	if (l >= sizeof(buf))
		return jp_fail(p, "number too long");
	memcpy(buf, p->s + st, l);
	buf[l] = 0;
	n->num = strtod(buf, NULL);
	if (!frac) {
		errno = 0;
		long long v = strtoll(buf, NULL, 10);
		n->is_int = errno != ERANGE;
		n->ival = v;
	}
	return 0;
}

static int parse_members(struct jp *p, struct json_node *n, bool obj, int depth)
{
	struct json_node **tail = &n->child;
	char close = obj ? '}' : ']';
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == close) {
		p->pos++;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		skip_ws(p);
		if (obj) {
			if (p->pos >= p->len || p->s[p->pos] != '"')
				return jp_fail(p, "expected a member name");
			p->pos++;
			if (!(key = parse_str(p)))
				return -1;
			skip_ws(p);
			if (p->pos >= p->len || p->s[p->pos] != ':') {
				free(key);
				return jp_fail(p, "expected ':'");
			}
			p->pos++;
		}
		struct json_node *v = parse_value(p, depth + 1);
		if (!v) {
			free(key);
			return -1;
		}
		v->key = key;
		*tail = v;
		tail = &v->next;
		n->count++;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == close) {
			p->pos++;
			return 0;
		}
		return jp_fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static bool word(struct jp *p, const char *w)
{
	size_t l = strlen(w);
	if (p->pos + l <= p->len && !memcmp(p->s + p->pos, w, l)) {
		p->pos += l;
		return true;
	}
	return false;
}

static struct json_node *parse_value(struct jp *p, int depth)
{
	if (depth > JSON_TREE_MAX_DEPTH) {
		jp_fail(p, "nested too deep");
		return NULL;
	}
	skip_ws(p);
	if (p->pos >= p->len) {
		jp_fail(p, "unexpected end");
		return NULL;
	}
	char c = p->s[p->pos];
	struct json_node *n = NULL;
	if (c == '{' || c == '[') {
		p->pos++;
		if (!(n = new_node(p, c == '{' ? JSON_OBJ : JSON_ARR)))
			return NULL;
		if (parse_members(p, n, c == '{', depth) < 0)
			goto bad;
	} else if (c == '"') {
		p->pos++;
		if (!(n = new_node(p, JSON_STR)) || !(n->str = parse_str(p)))
			goto bad;
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		if (!(n = new_node(p, JSON_NUM)) || parse_number(p, n) < 0)
			goto bad;
	} else if (word(p, "true") || word(p, "false")) {
		if (!(n = new_node(p, JSON_BOOL)))
			return NULL;
		n->b = p->s[p->pos - 1] == 'e' && p->s[p->pos - 2] == 'u';
	} else if (word(p, "null")) {
		n = new_node(p, JSON_NULL);
	} else {
		jp_fail(p, "unexpected character");
	}
	return n;
bad:
	json_tree_free(n);
	return NULL;
}

struct json_node *json_parse(const char *text, size_t len)
{
	struct jp p = { .s = text, .len = len };
	struct json_node *n = parse_value(&p, 0);
	if (n) {
		skip_ws(&p);
		if (p.pos != p.len) {
			jp_fail(&p, "text after the value");
			json_tree_free(n);
			return NULL;
		}
	}
	return n;
}

void json_tree_free(struct json_node *n)
{
	while (n) {
		struct json_node *next = n->next;
		json_tree_free(n->child);
		free(n->key);
		free(n->str);
		free(n);
		n = next;
	}
}

const struct json_node *json_member(const struct json_node *obj, const char *key)
{
	const struct json_node *found = NULL;
	if (!obj || obj->kind != JSON_OBJ)
		return NULL;
	for (const struct json_node *c = obj->child; c; c = c->next)
		if (!strcmp(c->key, key))
			found = c;
	return found;
}

const char *json_member_str(const struct json_node *obj, const char *key)
{
	const struct json_node *m = json_member(obj, key);
	return m && m->kind == JSON_STR ? m->str : NULL;
}
