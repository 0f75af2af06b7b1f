/*
 * lkvm sandbox's scratch folder (include/scratch.h): a fresh folder under
 * $TMPDIR, opened to everyone as the guest's /tmp, with the job file
 * written into it; removed with nftw after the run.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "scratch.h"
#include "util.h"

void (*scratch_hook)(const char *moment, const char *what);

static void hook(const char *moment, const char *what)
{
	if (scratch_hook)
		scratch_hook(moment, what);
}

int scratch_create(struct scratch *sc, const void *job, size_t len)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	sc->parent = -1;
	snprintf(sc->path, sizeof(sc->path), "%s/lkvm-sandbox-XXXXXX", tmp);
	if (!mkdtemp(sc->path))
		return err_errno("%s: cannot create the scratch folder", sc->path);
	snprintf(sc->share, sizeof(sc->share), "%s", sc->path);
	chmod(sc->path, 01777);	/* the guest's /tmp */
	hook("made", sc->path);
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/" SCRATCH_JOB, sc->path);
	FILE *f = fopen(path, "w");
	if (!f) {
		int e = errno;
		scratch_remove(sc);
		errno = e;
		return err_errno("%s", path);
	}
	fwrite(job, 1, len, f);
	fclose(f);
	hook("job-written", path);
	return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	hook("remove", path);
	remove(path);
	return 0;
}

/* FTW_PHYS: never follow a link the guest left behind out of the folder. */
void scratch_remove(struct scratch *sc)
{
	nftw(sc->path, remove_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}
