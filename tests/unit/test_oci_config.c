/* cmd/oci_config.c: what config.json gives lkvm oci, and what it refuses. */
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "oci_config.h"
#include "util.h"

static char dir[64];

static int load(struct oci_config *c, const char *json)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	FILE *f = fopen(path, "w");
	fputs(json, f);
	fclose(f);
	return oci_config_load(c, dir);
}

static void setup(void)
{
	if (dir[0])
		return;
	strcpy(dir, "/tmp/oci-unit.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	char p[128];
	snprintf(p, sizeof(p), "%s/rootfs", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/vol", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/file", dir);
	FILE *f = fopen(p, "w");
	fputs("x", f);
	fclose(f);
}

__attribute__((destructor)) static void cleanup(void)
{
	static const char *const names[] = { "config.json", "file", "vol", "rootfs", "" };
	char p[128];
	for (size_t i = 0; dir[0] && i < ARRAY_SIZE(names); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		if (unlink(p) < 0)
			rmdir(p);
	}
}

TEST(full_config)
{
	setup();
	char json[4096];
	snprintf(json, sizeof(json),
		 "{\"process\":{\"args\":[\"sh\",\"-c\",\"x\"],\"env\":[\"A=1\",\"B=x=y\"],\"cwd\":\"/w\",\"terminal\":true,"
		 "\"user\":{\"uid\":10,\"gid\":20,\"additionalGids\":[30,40]},"
		 "\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":100,\"hard\":200},{\"type\":\"RLIMIT_CORE\",\"soft\":18446744073709551615,\"hard\":18446744073709551615}]},"
		 "\"root\":{\"path\":\"rootfs\",\"readonly\":true},\"hostname\":\"h1\","
		 "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
		 "{\"destination\":\"/dev/pts\",\"type\":\"devpts\",\"options\":[\"nosuid\",\"noexec\",\"newinstance\",\"ptmxmode=0666\",\"rprivate\"]},"
		 "{\"destination\":\"//data/\",\"type\":\"bind\",\"source\":\"vol\",\"options\":[\"rbind\",\"ro\"]},"
		 "{\"destination\":\"/etc/hosts\",\"type\":\"none\",\"source\":\"%s/file\",\"options\":[\"bind\"]},"
		 "{\"destination\":\"/sys/fs/cgroup\",\"type\":\"cgroup\",\"source\":\"cgroup\"}],"
		 "\"linux\":{\"resources\":{\"memory\":{\"limit\":536870912},\"cpu\":{\"quota\":150000,\"period\":100000}},\"namespaces\":[]},"
		 "\"annotations\":{\"a\":\"b\\\"c\"}}", dir);
	struct oci_config c;
	int r = load(&c, json);
	if (r < 0)
		fprintf(stderr, "%s\n", err_msg());
	CHECK(r == 0);
	if (r < 0)
		return;
	CHECK(c.proc.nargs == 3 && !strcmp(c.proc.args[2], "x") && c.proc.args[3] == NULL);
	CHECK(c.proc.nenv == 2 && !strcmp(c.proc.env[1], "B=x=y"));
	CHECK(!strcmp(c.proc.cwd, "/w") && c.proc.terminal);
	CHECK(c.proc.uid == 10 && c.proc.gid == 20 && c.proc.ngids == 2 && c.proc.gids[1] == 40);
	CHECK(c.proc.nrlim == 2 && c.proc.rlim[0].res == RLIMIT_NOFILE && c.proc.rlim[0].soft == 100 && c.proc.rlim[0].hard == 200);
	CHECK(c.proc.rlim[1].soft == ~0ULL && c.proc.rlim[1].hard == ~0ULL);
	CHECK(c.root_ro && !strcmp(c.hostname, "h1"));
	CHECK(c.nmounts == 4);	/* the cgroup mount is skipped */
	CHECK(c.mounts[0].kind == OCI_MOUNT_GUEST && !strcmp(c.mounts[0].type, "proc") && !strcmp(c.mounts[0].data, "-"));
	CHECK(c.mounts[1].flags == (MS_NOSUID | MS_NOEXEC) && !strcmp(c.mounts[1].data, "newinstance,ptmxmode=0666"));
	CHECK(c.mounts[2].kind == OCI_MOUNT_DIR && c.mounts[2].ro && !strcmp(c.mounts[2].dest, "/data"));
	CHECK(strstr(c.mounts[2].src, "/vol") != NULL && c.mounts[2].src[0] == '/');
	CHECK(c.mounts[3].kind == OCI_MOUNT_FILE && !strcmp(c.mounts[3].dest, "/etc/hosts"));
	CHECK(c.mem == MiB(512) || c.mem < MiB(512));	/* clamped only on a host with less RAM */
	CHECK(c.cpus == 2 || c.cpus == sysconf(_SC_NPROCESSORS_ONLN));
	CHECK(strstr(c.skipped, "cgroup mounts") != NULL);
	CHECK(!strcmp(c.annotations_json, "{\"a\":\"b\\\"c\"}"));
	oci_config_free(&c);
}

TEST(refusals)
{
	setup();
	static const struct { const char *json, *want; } bad[] = {
		{ "{\"root\":{\"path\":\"rootfs\"}}", "process: missing" },
		{ "{\"process\":{\"args\":[]},\"root\":{\"path\":\"rootfs\"}}", "process.args: empty" },
		{ "{\"process\":{\"args\":[1]},\"root\":{\"path\":\"rootfs\"}}", "array of strings" },
		{ "{\"process\":{\"args\":[\"sh\"]}}", "root.path: missing" },
		{ "{\"process\":{\"args\":[\"sh\"],\"cwd\":\"rel\"},\"root\":{\"path\":\"rootfs\"}}", "not an absolute path" },
		{ "{\"process\":{\"args\":[\"sh\"],\"user\":{\"uid\":-1}},\"root\":{\"path\":\"rootfs\"}}", "uid" },
		{ "{\"process\":{\"args\":[\"sh\"],\"user\":{\"username\":\"x\"}},\"root\":{\"path\":\"rootfs\"}}", "username" },
		{ "{\"process\":{\"args\":[\"sh\"],\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":5,\"hard\":1}]},\"root\":{\"path\":\"rootfs\"}}", "soft above hard" },
		{ "{\"process\":{\"args\":[\"sh\"],\"rlimits\":[{\"type\":\"RLIMIT_BOGUS\",\"soft\":1,\"hard\":1}]},\"root\":{\"path\":\"rootfs\"}}", "unknown type" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"rel\",\"type\":\"tmpfs\"}]}", "destination" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"/\",\"type\":\"tmpfs\"}]}", "a mount on /" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"/a b\",\"type\":\"tmpfs\"}]}", "destination" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"/x\",\"type\":\"bind\",\"source\":\"/no/such\"}]}", "No such file" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"hostname\":\"a b\"}", "hostname" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"hostname\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}", "hostname" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"linux\":{\"resources\":{\"cpu\":{\"cpus\":\"3-1\"}}}}", "CPU list" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"annotations\":{\"org.lkvm.mem\":\"lots\"}}", "org.lkvm.mem" },
		{ "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"annotations\":{\"org.lkvm.kernel\":\"rel\"}}", "org.lkvm.kernel" },
		{ "[]", "not an object" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct oci_config c;
		int r = load(&c, bad[i].json);
		bool ok = r < 0 && strstr(err_msg(), bad[i].want) && strstr(err_msg(), "config.json");
		if (!ok)
			fprintf(stderr, "case %zu: r=%d '%s' (want '%s')\n", i, r, r < 0 ? err_msg() : "", bad[i].want);
		CHECK(ok);
		if (r == 0)
			oci_config_free(&c);
	}
}

TEST(clamps_and_annotations)
{
	setup();
	struct oci_config c;
	CHECK(load(&c, "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},"
		       "\"linux\":{\"resources\":{\"memory\":{\"limit\":1}}}}") == 0);
	CHECK(c.mem == MiB(128));
	oci_config_free(&c);
	CHECK(load(&c, "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},"
		       "\"linux\":{\"resources\":{\"memory\":{\"limit\":9223372036854775807}}},"
		       "\"annotations\":{\"org.lkvm.cpus\":\"4096\",\"org.lkvm.kernel\":\"/k/bz\"}}") == 0);
	CHECK(c.mem > 0 && c.mem <= (uint64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE));
	CHECK(c.cpus == sysconf(_SC_NPROCESSORS_ONLN));
	CHECK(!strcmp(c.kernel, "/k/bz"));
	oci_config_free(&c);
	/* podman --network host passes the host's name, "(none)" in a minimal machine */
	CHECK(load(&c, "{\"process\":{\"args\":[\"sh\"]},\"root\":{\"path\":\"rootfs\"},\"hostname\":\"(none)\"}") == 0);
	CHECK(!strcmp(c.hostname, "(none)"));
	oci_config_free(&c);
}

TEST(ids_and_signals)
{
	CHECK(oci_id_ok("abc") && oci_id_ok("a.b-c_d") && oci_id_ok("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	CHECK(!oci_id_ok("") && !oci_id_ok("..") && !oci_id_ok("../x") && !oci_id_ok("a/b") && !oci_id_ok(".x") &&
	      !oci_id_ok("-x") && !oci_id_ok("a b") && !oci_id_ok("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefX"));
	CHECK(oci_signal("TERM") == 15 && oci_signal("SIGKILL") == 9 && oci_signal("sigusr1") == 10 && oci_signal("9") == 9);
	CHECK(oci_signal("0") == -1 && oci_signal("65") == -1 && oci_signal("NOPE") == -1 && oci_signal("9x") == -1);
}

TEST_MAIN()
