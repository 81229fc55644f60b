/* SPDX-License-Identifier: Apache-2.0 */
/* Image records: what the CRI calls an image. The id is the config digest;
 * an image has repo tags ("docker.io/library/busybox:latest"), repo digests
 * ("docker.io/library/busybox@sha256:..."), its layers (blob digest, diff id,
 * chain id) and size. Records are persisted as versioned JSON under
 * <store root>/images/<hex>.json (atomic writes) and reloaded at start; a
 * record whose config blob or unpacked layers are missing is reported as
 * damaged and hidden until a new pull repairs it.
 *
 * Thread-safe: every function may be called concurrently. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "image/manifest.h"
#include "image/store.h"

typedef struct image_db image_db;

typedef struct image_layer_rec {
        char *digest;     /* blob digest */
        char *media_type;
        int64_t size;
        char *diff_id;
        char *chain_id;
} image_layer_rec;

/* A snapshot of one record, owned by the caller (image_info_free). */
typedef struct image_info {
        char *id;              /* "sha256:<hex>" (config digest) */
        char **repo_tags;      /* strv, never NULL */
        char **repo_digests;   /* strv, never NULL */
        char *manifest_digest;
        int64_t size;          /* config + layer blobs, bytes */
        image_layer_rec *layers;
        size_t n_layers;
        int64_t pulled_at_ns;
        image_config *config;  /* parsed from the stored config blob */
} image_info;

void image_info_free(image_info *i);
static inline void image_info_freep(image_info **i) { image_info_free(*i); }
#define _cleanup_image_info_ __attribute__((cleanup(image_info_freep)))

/* Asked before a layer is deleted: true if a container still uses it. */
typedef bool (*image_layer_in_use_fn)(void *userdata, const char *chain_id);

int image_db_open(image_store *store, image_db **ret, cc_error **ret_err);
void image_db_free(image_db *db);
void image_db_set_in_use_hook(image_db *db, image_layer_in_use_fn fn, void *userdata);

/* Adds or updates the image `in->id` (layers/size/manifest replace the old
 * ones; tags and digests are added). A repo tag belongs to exactly one image:
 * it is moved off any other image. Persists before returning. */
int image_db_put(image_db *db, const image_info *in, cc_error **ret_err);

/* Resolves a CRI image spec: a full id ("sha256:<hex>" or "<hex>"), a
 * reference (normalised: "busybox" == "docker.io/library/busybox:latest"),
 * a reference by digest, or a unique id prefix of at least 4 hex characters.
 * -ENOENT when nothing matches, -EINVAL for a malformed spec. */
int image_db_get(image_db *db, const char *spec, image_info **ret, cc_error **ret_err);

/* Every healthy image, sorted by id. */
int image_db_list(image_db *db, image_info ***ret, size_t *ret_n, cc_error **ret_err);
void image_info_list_free(image_info **list, size_t n);

/* Removes the image `spec` resolves to (idempotent: nothing to remove is
 * success, *ret_removed = false), then garbage-collects blobs and unpacked
 * layers no remaining image references and no container uses. */
int image_db_remove(image_db *db, const char *spec, bool *ret_removed, cc_error **ret_err);

/* True if some image record references blob `digest` (as its config,
 * manifest, a layer or the digest of a repo digest). */
bool image_db_blob_referenced(image_db *db, const char *digest);

/* Number of damaged records found at open (for Status/logs). */
size_t image_db_n_damaged(image_db *db);
