/* SPDX-License-Identifier: Apache-2.0 */
/* Pod network namespaces, pinned by a bind mount under a directory
 * (/run/netns by default, shared with iproute2's `ip netns`).
 *
 * The daemon's own threads never change namespace: a namespace is created by
 * a short-lived thread that unshares, pins its namespace and exits; code that
 * must run inside one runs on a temporary thread that setns()es. */
#pragma once

#include <stdbool.h>

#include "common/error.h"

/* Creates dir/name, a new network namespace with `lo` up. dir becomes a shared
 * mount of itself if it is not one (as `ip netns add` does). name must be a
 * plain file name ([A-Za-z0-9._-], 1..64, not "." or ".."). An existing name
 * fails with -EEXIST. *ret_path (free()) gets dir/name. Nothing is left
 * behind on failure. */
int cni_netns_create(const char *dir, const char *name, char **ret_path, cc_error **ret_err);
/* Unmounts and unlinks a pinned namespace. A missing or unmounted path is
 * success (idempotent). */
int cni_netns_remove(const char *path, cc_error **ret_err);
/* True if path is a pinned network namespace (an nsfs file). */
bool cni_netns_is_pinned(const char *path);

/* Runs fn(userdata, ret_err) on a temporary thread that has joined the
 * network namespace at path; returns fn's result. fn must not create threads
 * that outlive it and must not depend on the caller's thread-local state. */
typedef int (*cni_netns_fn)(void *userdata, cc_error **ret_err);
int cni_netns_run(const char *path, cni_netns_fn fn, void *userdata, cc_error **ret_err);
