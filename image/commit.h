/* SPDX-License-Identifier: Apache-2.0 */
/* The last step of a pull or an import: every blob of one image manifest is
 * in the store; unpack each layer (once per chain id, shared by all images)
 * and record the image with its name. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>

#include "common/error.h"
#include "image/images.h"
#include "image/store.h"
#include "image/unpack.h"

typedef struct image_commit_opts {
        const char *repo_tag;     /* "docker.io/library/busybox:latest" or NULL */
        const char *repo_digest;  /* "docker.io/library/busybox@sha256:..." or NULL */
        const image_unpack_opts *unpack;
        const atomic_bool *cancelled; /* checked between layers; may be NULL */
} image_commit_opts;

/* Returns the image id ("sha256:<config hex>", malloc'd) in *ret_id. */
int image_commit(image_store *s, image_db *db, const char *manifest_digest,
                 const image_commit_opts *opts, char **ret_id, cc_error **ret_err);
