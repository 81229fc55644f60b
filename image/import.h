/* SPDX-License-Identifier: Apache-2.0 */
/* Import an OCI image layout (a directory, or a tar of one, as written by
 * `skopeo copy ... oci:DIR:TAG` or `oci-archive:`) into the store: every
 * blob is verified against its digest and size on the way in, each image the
 * layout's index names is unpacked and recorded. No network. */
#pragma once

#include "common/error.h"
#include "image/images.h"
#include "image/store.h"

typedef struct image_import_opts {
        /* Repository for entries whose org.opencontainers.image.ref.name is a
         * bare tag ("latest"): "busybox" → docker.io/library/busybox:latest.
         * Entries with a full reference name keep it. */
        const char *name;
} image_import_opts;

/* *ret_ids: NULL-terminated list of imported image ids (malloc'd). */
int image_import(image_store *s, image_db *db, const char *path, const image_import_opts *opts,
                 char ***ret_ids, cc_error **ret_err);
