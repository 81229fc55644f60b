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
 * as a slave. (Checked by the tests.)
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
 * (created, 0700), mounted at target (created). Readonly: no upper, an
 * overlay of lowers only (or a read-only bind for a single layer).
 * Too many layers for one mount's option page → -E2BIG with a clear message. */
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
 * propagation. Leaves nothing on failure. */
int rt_volume_bind(const char *source, const char *target, bool readonly, rt_propagation prop,
                   cc_error **ret_err);
/* Detaches target and removes the mount point. Idempotent. */
int rt_volume_unbind(const char *target, cc_error **ret_err);

/* Is path a mount point? (statx STATX_ATTR_MOUNT_ROOT, mountinfo fallback) */
bool rt_is_mountpoint(const char *path);
