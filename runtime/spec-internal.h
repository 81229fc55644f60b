/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between runtime/spec.c and runtime/spec-seccomp.c; not an API. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "oci.pb-c.h"

/* Loads a seccomp profile (Docker/OCI JSON) and converts it for the agent.
 * Rules with Docker's "includes"/"excludes" conditions are kept or dropped
 * here: caps are compared with the container's capabilities (caps, "CAP_X"
 * or "X", any case; none given = no capabilities), arches with the build's
 * architecture; "minKernel" is not evaluated (the guest kernel is ours and
 * newer than any minimum in use). Every failure is -EINVAL naming the file
 * and the place. */
int rt_spec_seccomp_convert(const char *path, char *const *caps, size_t n_caps,
                            Grpc__LinuxSeccomp **ret, cc_error **ret_err);

/* True if name ("CAP_X" or "X", any case) is in caps (same forms). */
bool rt_spec_caps_has(char *const *caps, size_t n_caps, const char *name);

/* Appends a copy of s to the protobuf string array *v of *n entries
 * (realloc'd; nothing changes on failure). 0, or -ENOMEM. */
int rt_spec_strv_push(char ***v, size_t *n, const char *s);
