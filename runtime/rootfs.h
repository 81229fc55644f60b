/* SPDX-License-Identifier: Apache-2.0 */
/* Host-side filesystems of a pod: the virtio-fs share, container root
 * filesystems (overlayfs over an image's unpacked layers) and volumes
 * (hostPath bind mounts), all placed under the pod's shared directory so that
 * the one virtiofsd of the pod serves them, and nothing outside it.
 *
 *   <state>/sandboxes/<pod>/shared/               the share (virtiofsd's root)
 *   <state>/sandboxes/<pod>/shared/<ctr>/rootfs   overlay mount (merged)
 *   <state>/sandboxes/<pod>/shared/<ctr>/mounts/N bind of volume N's source
 *   <state>/sandboxes/<pod>/ctr/<ctr>/{upper,work} overlay upper/work (NOT shared)
 *
 * Mounts made after virtiofsd started must still reach it: the share is made
 * a mount point of its own with shared propagation (rt_share_prepare) before
 * virtiofsd starts, and virtiofsd's namespace sandbox receives later mounts
 * as a slave. Checked by tests/unit/runtime/test-rootfs.c against the real
 * /usr/lib/qemu/virtiofsd (sandbox=namespace, the default): overlays, volume
 * binds and their unmounts made afterwards all show in its namespace, and a
 * host mount made later inside an rslave volume's source reaches it too.
 * How it works: the C virtiofsd builds its sandbox when the VMM connects to
 * its socket (not when it starts): unshare(NEWNS) copies our mount table,
 * `mount --make-rslave /`, bind of the share onto itself, pivot_root into
 * it. So the share must be a mount point with shared propagation in a peer
 * group of ITS OWN (made private, then shared: a plain bind of a path on a
 * shared filesystem would join that filesystem's group and leak mounts into
 * every namespace sharing it). Nothing is needed from virtiofsd's options.
 *
 * Paths: every target, upper_base and share path must be canonical (no
 * symbolic link in any component; resolve the state directory once with
 * realpath). Below the share the guest decides what is a link, so no
 * function here follows one there: creating or mounting through a link
 * fails (-ENOTDIR/-EEXIST), removing through one fails (-ELOOP), and the
 * data behind it is left alone.
 *
 * Every function is idempotent where it says so, and leaves nothing behind
 * on failure (no mount, no directory it created). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

/* Creates dir (0711) if needed, bind-mounts it onto itself (once: an existing
 * self-mount is kept) and marks it MS_SHARED. */
int rt_share_prepare(const char *dir, cc_error **ret_err);
/* Recursively detaches every mount below and at dir, then removes dir's tree
 * (never crossing into a mount that could not be detached: -EBUSY).
 * Idempotent: a missing dir is success. */
int rt_share_destroy(const char *dir, cc_error **ret_err);

/* Container rootfs: overlayfs of lowers (top layer FIRST; each an unpacked
 * layer directory of the image store) with upper/work under upper_base
 * (created, 0700; <upper_base>/upper and /work must not exist yet), mounted
 * at target (created; already a mount point → -EBUSY). Readonly: no upper
 * (upper_base unused, may be NULL), an overlay of lowers only (or a
 * read-only bind for a single layer). Layer paths must not contain
 * ':' ',' '\\' '=' or blanks (-EINVAL). Options longer than a page are
 * retried with each directory named /proc/self/fd/N (~17 bytes a layer:
 * about 230 layers fit); still too long, or more than 500 layers (overlayfs'
 * stack limit) → -E2BIG with a clear message. */
int rt_rootfs_mount(const char *const *lowers, size_t n_lowers, const char *upper_base,
                    const char *target, bool readonly, cc_error **ret_err);
/* Unmounts target (detach) and removes target and upper_base. Idempotent. */
int rt_rootfs_unmount(const char *target, const char *upper_base, cc_error **ret_err);

typedef enum rt_propagation {
        RT_PROP_PRIVATE,
        RT_PROP_HOST_TO_CONTAINER, /* rslave: host mounts made later show inside */
        RT_PROP_BIDIRECTIONAL,     /* rshared: host mode only */
} rt_propagation;

/* A volume: bind-mounts source (a directory or a file; must exist: -ENOENT
 * naming it; must be absolute and free of ".."; symlinks resolved ON THE
 * HOST, as the kubelet does) at target (created as an empty dir or file to
 * match), recursively, then remounts read-only if asked, and sets the
 * propagation. Read-only is recursive, and both are set on a detached copy
 * (open_tree + mount_setattr, Linux >= 5.12) before it is attached, so no
 * one ever sees the volume writable or with the wrong propagation. As in
 * containerd, HOST_TO_CONTAINER needs the source on a shared or slave mount
 * and BIDIRECTIONAL on a shared one (-EINVAL naming the mount otherwise).
 * Leaves nothing on failure. */
int rt_volume_bind(const char *source, const char *target, bool readonly, rt_propagation prop,
                   cc_error **ret_err);
/* Detaches target and removes the mount point. Idempotent. */
int rt_volume_unbind(const char *target, cc_error **ret_err);

/* Is path a mount point? (statx STATX_ATTR_MOUNT_ROOT, mountinfo fallback) */
bool rt_is_mountpoint(const char *path);
