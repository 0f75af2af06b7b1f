/*
 * A share's view (include/p9.h): which paths below the root the guest may
 * see. The server checks it on every walk step and every directory entry it
 * lists, against the path the fid was walked along (so a view needs a
 * read-only share: nothing the guest does renames a name past it). What is
 * not in the view answers ENOENT, as if it did not exist.
 *
 *   allow PATH    PATH and everything below it; the folders above it show
 *                 only what leads to allowed paths
 *   deny PATTERN  fnmatch(3) pattern (FNM_PATHNAME) of paths never shown,
 *                 nor anything below them
 *   empty PATH    an empty read-only folder stands there (mount points the
 *                 guest fills itself: /proc, /tmp)
 *   reader UID GID [GROUP...]
 *                 only what this user could read on the host: files need
 *                 read permission, folders search permission (and read
 *                 permission to be listed), by the mode bits (ACLs that
 *                 grant more are not consulted: stricter, never looser)
 *
 * Paths are written from the share's root, with or without a leading '/'.
 * Without allow lines everything not denied is in the view.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "p9_int.h"
#include "util.h"

#define VIEW_MAX_LINE 4200
#define VIEW_MAX_GROUPS 256

struct p9_view {
	char **allow, **deny, **empty;
	int nallow, ndeny, nempty;
	bool reader;
	uid_t uid;
	gid_t gid;
	gid_t groups[VIEW_MAX_GROUPS];
	int ngroups;
};

struct p9_view *p9_view_new(void)
{
	return xcalloc(1, sizeof(struct p9_view));
}

void p9_view_free(struct p9_view *v)
{
	if (!v)
		return;
	for (int i = 0; i < v->nallow; i++)
		free(v->allow[i]);
	for (int i = 0; i < v->ndeny; i++)
		free(v->deny[i]);
	for (int i = 0; i < v->nempty; i++)
		free(v->empty[i]);
	free(v->allow);
	free(v->deny);
	free(v->empty);
	free(v);
}

/* "/a//b/" -> "a/b"; NULL for "." or ".." components (a view names real paths only). */
static char *clean_path(const char *p)
{
	char *out = xcalloc(1, strlen(p) + 1), *o = out;
	while (*p) {
		while (*p == '/')
			p++;
		const char *end = strchrnul(p, '/');
		size_t n = end - p;
		if (!n)
			break;
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
			free(out);
			return NULL;
		}
		if (o != out)
			*o++ = '/';
		memcpy(o, p, n);
		o += n;
		p = end;
	}
	*o = 0;
	return out;
}

static int add(char ***list, int *n, const char *path, bool pattern)
{
	char *c = pattern ? xstrdup(path + strspn(path, "/")) : clean_path(path);
	if (!c)
		return err_set("view: '%s': no . or .. components", path);
	char **grown = xcalloc(*n + 1, sizeof(char *));
	if (*n)
		memcpy(grown, *list, *n * sizeof(char *));
	free(*list);
	*list = grown;
	(*list)[(*n)++] = c;
	return 0;
}

int p9_view_allow(struct p9_view *v, const char *path) { return add(&v->allow, &v->nallow, path, false); }
int p9_view_deny(struct p9_view *v, const char *pattern) { return add(&v->deny, &v->ndeny, pattern, true); }
int p9_view_empty(struct p9_view *v, const char *path) { return add(&v->empty, &v->nempty, path, false); }

int p9_view_reader(struct p9_view *v, uid_t uid, gid_t gid, const gid_t *groups, int n)
{
	if (n < 0 || n > VIEW_MAX_GROUPS)
		return err_set("view: at most %d groups", VIEW_MAX_GROUPS);
	v->reader = true;
	v->uid = uid;
	v->gid = gid;
	memcpy(v->groups, groups, n * sizeof(gid_t));
	v->ngroups = n;
	return 0;
}

struct p9_view *p9_view_load(const char *file)
{
	FILE *f = fopen(file, "re");
	if (!f)
		return err_errno("view %s", file), NULL;
	struct p9_view *v = p9_view_new();
	char line[VIEW_MAX_LINE];
	int lineno = 0, bad = 0;
	while (!bad && fgets(line, sizeof(line), f)) {
		lineno++;
		size_t len = strlen(line);
		if (len && line[len - 1] == '\n')
			line[--len] = 0;
		else if (!feof(f))
			bad = err_set("view %s:%d: line too long", file, lineno);
		char *arg = strchr(line, ' ');
		if (bad || !len || line[0] == '#')
			continue;
		if (arg)
			*arg++ = 0;
		if (!arg || !*arg)
			bad = err_set("view %s:%d: '%s' needs an argument", file, lineno, line);
		else if (!strcmp(line, "allow"))
			bad = p9_view_allow(v, arg);
		else if (!strcmp(line, "deny"))
			bad = p9_view_deny(v, arg);
		else if (!strcmp(line, "empty"))
			bad = p9_view_empty(v, arg);
		else if (!strcmp(line, "reader")) {
			gid_t g[VIEW_MAX_GROUPS + 2];
			int n = 0;
			char *save, *tok;
			for (tok = strtok_r(arg, " ", &save); tok && n < VIEW_MAX_GROUPS + 2; tok = strtok_r(NULL, " ", &save)) {
				char *end;
				unsigned long x = strtoul(tok, &end, 10);
				if (*end || end == tok || x > 0xfffffffeUL)
					break;
				g[n++] = (gid_t)x;
			}
			if (tok || n < 2)
				bad = err_set("view %s:%d: reader UID GID [GROUP...] (at most %d groups)", file, lineno,
					      VIEW_MAX_GROUPS);
			else
				bad = p9_view_reader(v, (uid_t)g[0], g[1], g + 2, n - 2);
		} else
			bad = err_set("view %s:%d: unknown '%s' (allow, deny, empty, reader)", file, lineno, line);
	}
	fclose(f);
	if (bad) {
		p9_view_free(v);
		return NULL;
	}
	return v;
}

/* Is p a, or below a? */
static bool below(const char *p, const char *a)
{
	size_t n = strlen(a);
	return !n || (!strncmp(p, a, n) && (p[n] == 0 || p[n] == '/'));
}

static bool in_groups(const struct p9_view *v, gid_t g)
{
	if (g == v->gid)
		return true;
	for (int i = 0; i < v->ngroups; i++)
		if (v->groups[i] == g)
			return true;
	return false;
}

/* May the view's reader do what (4 read, 1 search) to an object with st? */
static bool may(const struct p9_view *v, const struct stat *st, unsigned what)
{
	if (!v->reader || v->uid == 0)
		return true;
	unsigned bits = st->st_mode & 0777;
	if (st->st_uid == v->uid)
		return (bits >> 6) & what;
	if (in_groups(v, st->st_gid))
		return (bits >> 3) & what;
	return bits & what;
}

enum view_is view_check(const struct p9_view *v, const char *path, const struct stat *st)
{
	if (!*path)
		return VIEW_SHOWN;
	for (int i = 0; i < v->ndeny; i++)
		if (!fnmatch(v->deny[i], path, FNM_PATHNAME))
			return VIEW_HIDDEN;
	for (int i = 0; i < v->nempty; i++)
		if (!strcmp(v->empty[i], path))
			return VIEW_EMPTY;
	bool inside = !v->nallow, passage = false;
	for (int i = 0; i < v->nallow && !inside; i++)
		inside = below(path, v->allow[i]);
	for (int i = 0; !inside && !passage && i < v->nallow + v->nempty; i++) {
		const char *a = i < v->nallow ? v->allow[i] : v->empty[i - v->nallow];
		passage = below(a, path);
	}
	if (!inside && !passage)
		return VIEW_HIDDEN;
	if (S_ISLNK(st->st_mode))
		return VIEW_SHOWN;	/* the guest resolves it, walking the view again */
	if (S_ISDIR(st->st_mode))
		return may(v, st, 1) ? VIEW_SHOWN : VIEW_HIDDEN;
	if (!inside)
		return VIEW_HIDDEN;	/* a passage is a folder */
	return may(v, st, 4) ? VIEW_SHOWN : VIEW_HIDDEN;
}

bool view_may_list(const struct p9_view *v, const struct stat *st)
{
	return may(v, st, 4);
}

char *view_child(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = xcalloc(1, a + b + 2);
	memcpy(p, dir, a);
	if (a)
		p[a++] = '/';
	memcpy(p + a, name, b);
	return p;
}

char *view_parent(const char *path)
{
	char *p = xstrdup(path), *slash = strrchr(p, '/');
	if (slash)
		*slash = 0;
	else
		*p = 0;
	return p;
}
