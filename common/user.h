/* SPDX-License-Identifier: Apache-2.0 */
/* A container's user and groups from its rootfs's /etc/passwd and /etc/group
 * (opened confined to the rootfs, bounded: the image is untrusted). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

/* spec_name: "user", "uid", "user:group" or "uid:group" (the OCI image
 * config's User forms); an explicit group replaces the primary gid from
 * /etc/passwd. Supplementary groups (the groups listing the user) go to
 * groups[*n_groups...], at most max_groups in all. -EINVAL with a message
 * for a name that is not there. */
int cc_user_resolve(const char *rootfs, const char *spec_name, uid_t uid_hint, uid_t *ret_uid, gid_t *ret_gid,
                    gid_t *groups, size_t max_groups, size_t *n_groups, cc_error **ret_err);
