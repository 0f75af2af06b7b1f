/* Just enough JSON for the control protocol: flat objects, strings, numbers. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "control.h"

static const char *skip_ws(const char *p)
{
	while (*p && isspace((unsigned char)*p))
		p++;
	return p;
}

/* Parse a JSON string at p (after the quote); copy unescaped into out. */
static const char *parse_string(const char *p, char *out, size_t len)
{
	size_t n = 0;
	while (*p && *p != '"') {
		char c = *p++;
		if (c == '\\') {
			c = *p++;
			switch (c) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case '"': case '\\': case '/': break;
			default: return NULL;	/* \u and friends: not needed here */
			}
		} else if ((unsigned char)c < 0x20) {
			return NULL;
		}
		if (out && n + 1 < len)
			out[n++] = c;
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
