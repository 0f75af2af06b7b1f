/*
 * config.json for lkvm oci (include/oci_config.h): the OCI runtime spec's
 * process, root, mounts, hostname, linux.resources and annotations, read
 * into fixed structures with every bound checked. What an lkvm VM cannot
 * honour (namespaces, seccomp, capabilities, cgroups, hooks) is named in
 * c->skipped for the log, not refused: engines always send them.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "json.h"
#include "json_tree.h"
#include "oci_config.h"
#include "util.h"

#define MIN_MEM MiB(128)	/* a Linux guest needs about this much to boot */
#define MAX_CONFIG (4 << 20)

static const struct { const char *name; int res; } rlimits[] = {
	{ "RLIMIT_CPU", RLIMIT_CPU }, { "RLIMIT_FSIZE", RLIMIT_FSIZE }, { "RLIMIT_DATA", RLIMIT_DATA },
	{ "RLIMIT_STACK", RLIMIT_STACK }, { "RLIMIT_CORE", RLIMIT_CORE }, { "RLIMIT_RSS", RLIMIT_RSS },
	{ "RLIMIT_NPROC", RLIMIT_NPROC }, { "RLIMIT_NOFILE", RLIMIT_NOFILE }, { "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK },
	{ "RLIMIT_AS", RLIMIT_AS }, { "RLIMIT_LOCKS", RLIMIT_LOCKS }, { "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING },
	{ "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE }, { "RLIMIT_NICE", RLIMIT_NICE }, { "RLIMIT_RTPRIO", RLIMIT_RTPRIO },
	{ "RLIMIT_RTTIME", RLIMIT_RTTIME },
};

bool oci_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (!n || n > 64 || id[0] == '.' || id[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '-' && id[i] != '.')
			return false;
	return true;
}

int oci_signal(const char *s)
{
	static const struct { const char *n; int sig; } sigs[] = {
		{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "ILL", SIGILL }, { "TRAP", SIGTRAP },
		{ "ABRT", SIGABRT }, { "IOT", SIGIOT }, { "BUS", SIGBUS }, { "FPE", SIGFPE }, { "KILL", SIGKILL },
		{ "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 }, { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },
		{ "TERM", SIGTERM }, { "STKFLT", SIGSTKFLT }, { "CHLD", SIGCHLD }, { "CONT", SIGCONT }, { "STOP", SIGSTOP },
		{ "TSTP", SIGTSTP }, { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU }, { "URG", SIGURG }, { "XCPU", SIGXCPU },
		{ "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },
		{ "PWR", SIGPWR }, { "SYS", SIGSYS },
	};
	if (isdigit((unsigned char)*s)) {
		char *end;
		long v = strtol(s, &end, 10);
		return *end || v < 1 || v > 64 ? -1 : (int)v;
	}
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		if (!strcasecmp(s, sigs[i].n))
			return sigs[i].sig;
	return -1;
}

/* No "." or ".." component, no newline, no space (the agent's records are space-separated). */
static bool clean_path(const char *p)
{
	if (strchr(p, '\n') || strchr(p, ' ') || strchr(p, '\t'))
		return false;
	for (const char *c = p; *c;) {
		while (*c == '/')
			c++;
		const char *e = strchrnul(c, '/');
		if ((e - c == 1 && c[0] == '.') || (e - c == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c = e;
	}
	return true;
}

/* "/a//b/" -> "/a/b" (clean_path already held: no . or ..). */
static void squash(char *out, size_t cap, const char *p)
{
	size_t k = 0;
	for (const char *c = p; *c && k + 2 < cap; c++)
		if (*c != '/' || (k == 0 || out[k - 1] != '/'))
			out[k++] = *c;
	while (k > 1 && out[k - 1] == '/')
		k--;
	out[k] = 0;
}

static int get_u32(const struct json_node *n, const char *what, uint32_t *out)
{
	if (!n || n->kind != JSON_NUM || !n->is_int || n->ival < 0 || n->ival > 0xffffffffLL)
		return err_set("%s: a number from 0 to 4294967295", what);
	*out = n->ival;
	return 0;
}

static int str_array(const struct json_node *n, const char *what, char ***out, int *nr, int max)
{
	if (!n)
		return 0;
	if (n->kind != JSON_ARR)
		return err_set("%s: an array of strings", what);
	if (n->count > max)
		return err_set("%s: more than %d entries", what, max);
	*out = xcalloc(n->count + 1, sizeof(char *));
	*nr = 0;
	for (const struct json_node *e = n->child; e; e = e->next) {
		if (e->kind != JSON_STR)
			return err_set("%s: an array of strings", what);
		(*out)[(*nr)++] = xstrdup(e->str);
	}
	return 0;
}

void oci_process_free(struct oci_process *p)
{
	for (int i = 0; i < p->nargs; i++)
		free(p->args[i]);
	for (int i = 0; i < p->nenv; i++)
		free(p->env[i]);
	free(p->args);
	free(p->env);
	p->args = p->env = NULL;
	p->nargs = p->nenv = 0;
}

int oci_process_parse(struct oci_process *p, const struct json_node *n)
{
	memset(p, 0, sizeof(*p));
	if (!n || n->kind != JSON_OBJ)
		return err_set("process: missing (an object with args)");
	if (!json_member(n, "args"))
		return err_set("process.args: missing (the command to run)");
	if (str_array(json_member(n, "args"), "process.args", &p->args, &p->nargs, 65536) < 0)
		return -1;
	if (!p->nargs || !p->args[0][0])
		return err_set("process.args: empty (the command to run)");
	if (str_array(json_member(n, "env"), "process.env", &p->env, &p->nenv, 65536) < 0)
		return -1;
	for (int i = 0; i < p->nenv; i++) {
		const char *eq = strchr(p->env[i], '=');
		if (!eq || eq == p->env[i])
			return err_set("process.env: '%.60s' is not NAME=VALUE", p->env[i]);
	}
	const char *cwd = json_member_str(n, "cwd");
	if (json_member(n, "cwd") && !cwd)
		return err_set("process.cwd: a string");
	if (cwd && (cwd[0] != '/' || strchr(cwd, '\n') || strlen(cwd) >= PATH_MAX))
		return err_set("process.cwd: '%.60s' is not an absolute path", cwd);
	snprintf(p->cwd, sizeof(p->cwd), "%s", cwd ? cwd : "/");
	const struct json_node *u = json_member(n, "user");
	if (u) {
		if (u->kind != JSON_OBJ)
			return err_set("process.user: an object");
		if ((json_member(u, "uid") && get_u32(json_member(u, "uid"), "process.user.uid", &p->uid) < 0) ||
		    (json_member(u, "gid") && get_u32(json_member(u, "gid"), "process.user.gid", &p->gid) < 0))
			return -1;
		const struct json_node *g = json_member(u, "additionalGids");
		if (g && (g->kind != JSON_ARR || g->count > OCI_MAX_GROUPS))
			return err_set("process.user.additionalGids: an array of at most %d numbers", OCI_MAX_GROUPS);
		for (const struct json_node *e = g ? g->child : NULL; e; e = e->next)
			if (get_u32(e, "process.user.additionalGids", &p->gids[p->ngids++]) < 0)
				return -1;
		if (json_member_str(u, "username"))
			return err_set("process.user.username: not supported (give uid and gid)");
	}
	const struct json_node *t = json_member(n, "terminal");
	if (t && t->kind != JSON_BOOL)
		return err_set("process.terminal: true or false");
	p->terminal = t && t->b;
	const struct json_node *rl = json_member(n, "rlimits");
	if (rl && (rl->kind != JSON_ARR || rl->count > OCI_MAX_RLIMITS))
		return err_set("process.rlimits: an array of at most %d limits", OCI_MAX_RLIMITS);
	for (const struct json_node *e = rl ? rl->child : NULL; e; e = e->next) {
		const char *type = json_member_str(e, "type");
		const struct json_node *soft = json_member(e, "soft"), *hard = json_member(e, "hard");
		int res = -1;
		for (size_t i = 0; type && i < ARRAY_SIZE(rlimits); i++)
			if (!strcmp(type, rlimits[i].name))
				res = rlimits[i].res;
		if (res < 0)
			return err_set("process.rlimits: unknown type '%.40s'", type ? type : "(none)");
		if (!soft || !hard || soft->kind != JSON_NUM || hard->kind != JSON_NUM || soft->num < 0 || hard->num < 0)
			return err_set("process.rlimits %s: soft and hard must be numbers", type);
		/* 2^64-1 (unlimited) does not fit a long long: read from the double */
		p->rlim[p->nrlim].res = res;
		p->rlim[p->nrlim].soft = soft->is_int ? (unsigned long long)soft->ival :
					 soft->num >= 1.8e19 ? ~0ULL : (unsigned long long)soft->num;
		p->rlim[p->nrlim].hard = hard->is_int ? (unsigned long long)hard->ival :
					 hard->num >= 1.8e19 ? ~0ULL : (unsigned long long)hard->num;
		if (p->rlim[p->nrlim].soft > p->rlim[p->nrlim].hard)
			return err_set("process.rlimits %s: soft above hard", type);
		p->nrlim++;
	}
	return 0;
}

static void note_skip(struct oci_config *c, const char *what)
{
	size_t l = strlen(c->skipped);
	if (strstr(c->skipped, what))
		return;
	snprintf(c->skipped + l, sizeof(c->skipped) - l, "%s%s", l ? ", " : "", what);
}

/* The mount options: flags we apply, data passed to the file system, binds' ro. */
static void mount_options(struct oci_mount *m, const struct json_node *opts, bool *bind)
{
	static const struct { const char *n; unsigned long set, clear; } fl[] = {
		{ "ro", MS_RDONLY, 0 }, { "rw", 0, MS_RDONLY }, { "nosuid", MS_NOSUID, 0 }, { "suid", 0, MS_NOSUID },
		{ "nodev", MS_NODEV, 0 }, { "dev", 0, MS_NODEV }, { "noexec", MS_NOEXEC, 0 }, { "exec", 0, MS_NOEXEC },
		{ "relatime", MS_RELATIME, 0 }, { "strictatime", MS_STRICTATIME, 0 }, { "noatime", MS_NOATIME, 0 },
		{ "sync", MS_SYNCHRONOUS, 0 },
	};
	static const char *const ignored[] = { "private", "rprivate", "shared", "rshared", "slave", "rslave",
					       "unbindable", "runbindable", "nosymfollow", "rro", "rrw", "norelatime",
					       "z", "Z", "U", "copy", "nocopy", "idmap", "tmpcopyup", "notmpcopyup" };
	size_t dl = 0;
	strcpy(m->data, "-");
	for (const struct json_node *o = opts ? opts->child : NULL; o; o = o->next) {
		if (o->kind != JSON_STR)
			continue;
		bool known = false;
		if (!strcmp(o->str, "bind") || !strcmp(o->str, "rbind")) {
			*bind = true;
			continue;
		}
		for (size_t i = 0; i < ARRAY_SIZE(fl); i++)
			if (!strcmp(o->str, fl[i].n)) {
				m->flags = (m->flags | fl[i].set) & ~fl[i].clear;
				known = true;
			}
		for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
			known |= !strcmp(o->str, ignored[i]);
		if (known)
			continue;
		/* file-system options (mode=, size=, newinstance, ptmxmode=, gid=...): plain text only */
		bool plain = *o->str && strlen(o->str) < 200;
		for (const char *c = o->str; *c; c++)
			plain &= isalnum((unsigned char)*c) || strchr("=_-.:", *c);
		if (plain && dl + strlen(o->str) + 2 < sizeof(m->data)) {
			dl += snprintf(m->data + dl, sizeof(m->data) - dl, "%s%s", dl ? "," : "", o->str);
		}
	}
	m->ro = m->flags & MS_RDONLY;
}

static int parse_mount(struct oci_config *c, const struct json_node *n, const char *bundle)
{
	const char *dest = json_member_str(n, "destination"), *type = json_member_str(n, "type"),
		   *src = json_member_str(n, "source");
	const struct json_node *opts = json_member(n, "options");
	if (!dest || dest[0] != '/' || !clean_path(dest) || strlen(dest) >= PATH_MAX - 64)
		return err_set("mounts: destination '%.80s' must be an absolute path without '..', '.' or spaces",
			       dest ? dest : "(none)");
	if (opts && opts->kind != JSON_ARR)
		return err_set("mounts %s: options must be an array of strings", dest);
	if (c->nmounts == OCI_MAX_MOUNTS)
		return err_set("mounts: more than %d", OCI_MAX_MOUNTS);
	struct oci_mount *m = &c->mounts[c->nmounts];
	memset(m, 0, sizeof(*m));
	bool bind = type && !strcmp(type, "bind");
	mount_options(m, opts, &bind);
	squash(m->dest, sizeof(m->dest), dest);
	if (!strcmp(m->dest, "/"))
		return err_set("mounts: a mount on / (give root.path instead)");
	if (bind) {
		char path[2 * PATH_MAX];
		if (!src || !*src || !clean_path(src))
			return err_set("mounts %s: bind source '%.80s' must be a path without '..' or '.'", dest,
				       src ? src : "(none)");
		if (src[0] == '/')
			snprintf(path, sizeof(path), "%s", src);
		else
			snprintf(path, sizeof(path), "%s/%s", bundle, src);
		struct stat st;
		if (!realpath(path, m->src) || stat(m->src, &st) < 0)
			return err_set("mounts %s: bind source %.200s: %s", dest, path, strerror(errno));
		if (S_ISDIR(st.st_mode)) {
			if (strchr(m->src, ','))
				return err_set("mounts %s: a comma in the source's path %.200s cannot be shared", dest, m->src);
			m->kind = OCI_MOUNT_DIR;
		} else if (S_ISREG(st.st_mode)) {
			if (st.st_size > OCI_MAX_FILE)
				return err_set("mounts %s: the file %.200s is over %d bytes (files are copied in)", dest,
					       m->src, OCI_MAX_FILE);
			m->kind = OCI_MOUNT_FILE;
		} else {
			note_skip(c, "binds of devices and sockets");
			return 0;
		}
		strcpy(m->type, "bind");
		c->nmounts++;
		return 0;
	}
	static const char *const guest_types[] = { "proc", "sysfs", "tmpfs", "devpts", "mqueue" };
	for (size_t i = 0; type && i < ARRAY_SIZE(guest_types); i++)
		if (!strcmp(type, guest_types[i])) {
			m->kind = OCI_MOUNT_GUEST;
			snprintf(m->type, sizeof(m->type), "%s", type);
			c->nmounts++;
			return 0;
		}
	char what[64];
	snprintf(what, sizeof(what), "%.40s mounts", type ? type : "untyped");
	note_skip(c, what);
	return 0;
}

static int parse_root(struct oci_config *c, const struct json_node *r, const char *bundle)
{
	const char *path = json_member_str(r, "path");
	if (!path || !*path)
		return err_set("root.path: missing (the container's root folder)");
	if (!clean_path(path) || strchr(path, ','))
		return err_set("root.path '%.80s': no '..', '.', spaces or commas", path);
	char full[2 * PATH_MAX], want[PATH_MAX], real[PATH_MAX];
	snprintf(full, sizeof(full), path[0] == '/' ? "%s" : "%s/%s", path[0] == '/' ? path : bundle, path);
	squash(want, sizeof(want), full);
	struct stat st;
	if (!realpath(want, real) || stat(real, &st) < 0)
		return err_set("root.path %.200s: %s", want, strerror(errno));
	/* A symlink on the way could point anywhere on the host: only the folder named. */
	if (strcmp(real, want))
		return err_set("root.path %.200s: goes through a symlink (to %.200s); name the folder itself", want, real);
	if (!S_ISDIR(st.st_mode))
		return err_set("root.path %.200s: not a folder", want);
	if (!strcmp(real, "/"))
		return err_set("root.path: the host's / cannot be a container's root");
	snprintf(c->root, sizeof(c->root), "%s", real);
	const struct json_node *ro = json_member(r, "readonly");
	if (ro && ro->kind != JSON_BOOL)
		return err_set("root.readonly: true or false");
	c->root_ro = ro && ro->b;
	return 0;
}

static uint64_t host_mem(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	return pages > 0 && psz > 0 ? (uint64_t)pages * psz : GiB(1);
}

/* "0-3,6" -> 5 */
static int count_cpus(const char *s)
{
	int n = 0;
	while (*s) {
		char *e;
		long a = strtol(s, &e, 10), b = a;
		if (e == s || a < 0)
			return -1;
		if (*e == '-') {
			s = e + 1;
			b = strtol(s, &e, 10);
			if (e == s || b < a)
				return -1;
		}
		n += b - a + 1;
		if (n > 4096)
			return -1;
		s = *e == ',' ? e + 1 : e;
		if (*e && *e != ',')
			return -1;
	}
	return n;
}

static int parse_resources(struct oci_config *c, const struct json_node *linux_)
{
	const struct json_node *res = json_member(linux_, "resources");
	const struct json_node *mem = json_member(json_member(res, "memory"), "limit");
	if (mem && mem->kind == JSON_NUM && mem->num > 0)
		c->mem = mem->is_int ? (uint64_t)mem->ival : (uint64_t)mem->num;
	const struct json_node *cpu = json_member(res, "cpu");
	const struct json_node *q = json_member(cpu, "quota"), *p = json_member(cpu, "period");
	const char *set = json_member_str(cpu, "cpus");
	if (q && p && q->kind == JSON_NUM && p->kind == JSON_NUM && q->num > 0 && p->num > 0) {
		double n = q->num / p->num;
		c->cpus = n > 4096 ? 4096 : (int)n + (n > (int)n);
	} else if (set && *set) {
		int n = count_cpus(set);
		if (n < 1)
			return err_set("linux.resources.cpu.cpus '%.40s': not a CPU list", set);
		c->cpus = n;
	}
	for (const struct json_node *e = linux_ ? linux_->child : NULL; e; e = e->next)
		if (strcmp(e->key, "resources"))
			note_skip(c, "linux namespaces, devices, seccomp and the like");
	return 0;
}

static int parse_annotations(struct oci_config *c, const struct json_node *a)
{
	struct json_writer w;
	json_init(&w);
	json_begin(&w, NULL, '{');
	if (a && a->kind != JSON_OBJ) {
		json_free(&w);
		return err_set("annotations: an object of strings");
	}
	for (const struct json_node *e = a ? a->child : NULL; e; e = e->next) {
		if (e->kind != JSON_STR) {
			json_free(&w);
			return err_set("annotations %.60s: not a string", e->key);
		}
		json_str(&w, e->key, e->str);
		if (!strcmp(e->key, "org.lkvm.kernel")) {
			if (e->str[0] != '/' || strchr(e->str, ',') || strlen(e->str) >= PATH_MAX) {
				json_free(&w);
				return err_set("annotation org.lkvm.kernel '%.80s': an absolute path (no commas)", e->str);
			}
			snprintf(c->kernel, sizeof(c->kernel), "%s", e->str);
		} else if (!strcmp(e->key, "org.lkvm.mem")) {
			uint64_t v;
			if (parse_size(e->str, &v) < 0 || !v) {
				json_free(&w);
				return err_set("annotation org.lkvm.mem '%.40s': a size (256M, 1G)", e->str);
			}
			c->mem = v;
		} else if (!strcmp(e->key, "org.lkvm.cpus")) {
			char *end;
			long v = strtol(e->str, &end, 10);
			if (*end || end == e->str || v < 1 || v > 4096) {
				json_free(&w);
				return err_set("annotation org.lkvm.cpus '%.40s': a number of vCPUs", e->str);
			}
			c->cpus = v;
		}
	}
	json_end(&w);
	c->annotations_json = xstrdup(json_text(&w));
	json_free(&w);
	return 0;
}

void oci_config_free(struct oci_config *c)
{
	oci_process_free(&c->proc);
	free(c->annotations_json);
	c->annotations_json = NULL;
}

int oci_config_load(struct oci_config *c, const char *bundle)
{
	memset(c, 0, sizeof(*c));
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0)
		return errno == ENOENT ? err_set("%s: no config.json in the bundle", path) : err_errno("%s", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_CONFIG) {
		close(fd);
		return err_set("%s: not a regular file of at most %d bytes", path, MAX_CONFIG);
	}
	char *text = xcalloc(1, st.st_size + 1);
	ssize_t n = read(fd, text, st.st_size);
	close(fd);
	struct json_node *root = n == st.st_size ? json_parse(text, n) : NULL;
	free(text);
	if (!root) {
		char m[256];
		snprintf(m, sizeof(m), "%s", n == st.st_size ? err_msg() : "short read");
		return err_set("%s: bad JSON: %s", path, m);
	}
	int r = -1;
	char m[512];
	if (root->kind != JSON_OBJ) {
		err_set("not an object");
		goto bad;
	}
	if (oci_process_parse(&c->proc, json_member(root, "process")) < 0 ||
	    parse_root(c, json_member(root, "root"), bundle) < 0)
		goto bad;
	const struct json_node *mounts = json_member(root, "mounts");
	if (mounts && mounts->kind != JSON_ARR) {
		err_set("mounts: an array");
		goto bad;
	}
	for (const struct json_node *e = mounts ? mounts->child : NULL; e; e = e->next)
		if (parse_mount(c, e, bundle) < 0)
			goto bad;
	const char *h = json_member_str(root, "hostname");
	if (h) {
		bool ok = strlen(h) < sizeof(c->hostname);	/* what sethostname takes; printable (podman may pass "(none)") */
		for (const char *p = h; *p; p++)
			ok &= *p > ' ' && *p <= '~';
		if (!ok) {
			err_set("hostname '%.80s': at most 64 printable characters, no spaces", h);
			goto bad;
		}
		snprintf(c->hostname, sizeof(c->hostname), "%s", h);
	}
	if (parse_resources(c, json_member(root, "linux")) < 0 || parse_annotations(c, json_member(root, "annotations")) < 0)
		goto bad;
	if (json_member(root, "hooks"))
		note_skip(c, "hooks");
	if (c->mem && c->mem < MIN_MEM)
		c->mem = MIN_MEM;
	if (c->mem > host_mem())
		c->mem = host_mem();
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	if (c->cpus > online && online > 0)
		c->cpus = online;
	r = 0;
	json_tree_free(root);
	return r;
bad:
	snprintf(m, sizeof(m), "%s", err_msg());
	err_set("%s: %s", path, m);
	json_tree_free(root);
	oci_config_free(c);
	return r;
}
