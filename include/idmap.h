/*
 * ID-mapped clones of a host folder (lib/idmap.c), for a jailed lkvm's
 * writable shares: the jail user (an unprivileged uid/gid) reads and writes
 * the tree as the invoking user would, and what it creates lands on disk as
 * the invoking user's. Linux >= 5.12 and a file system that allows it (ext4,
 * xfs, btrfs; tmpfs from 6.3; not 9p, NFS or ramfs). Needs CAP_SYS_ADMIN.
 */
#ifndef LKVM_IDMAP_H
#define LKVM_IDMAP_H

#include <sys/types.h>

/*
 * A detached clone of the mount at dir (open_tree(OPEN_TREE_CLONE), not
 * recursive: other mounts below dir are not in it), id-mapped so that the
 * on-disk owner disk_uid/disk_gid is as_uid/as_gid through it and as_uid's
 * new files are disk_uid's; every other id on disk is unmapped (others' to
 * as_uid, and as_uid cannot give files to it). Its descriptor (O_PATH-like,
 * close-on-exec) stands for dir; the clone goes away with its last one.
 * -1 with err naming dir, the step (open_tree, user namespace,
 * mount_setattr) and the errno; errno is kept for the caller to tell
 * "this file system cannot" (EINVAL, EPERM, EOPNOTSUPP) from others.
 */
int idmap_clone(const char *dir, uid_t disk_uid, gid_t disk_gid, uid_t as_uid, gid_t as_gid);

#endif
