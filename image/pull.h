/* SPDX-License-Identifier: Apache-2.0 */
/* Pull: resolve a reference on its registry and bring every blob of one image
 * (manifest, config, layers) into the content store.
 *
 *   1. GET the manifest by digest (if the reference has one) or tag;
 *      an index is resolved to the platform's manifest (image_index_select).
 *   2. The config blob is fetched and checked against the manifest.
 *   3. Layers are downloaded in parallel (curl multi, opts->concurrency at a
 *      time), each streamed into the store's hashed ingest and committed only
 *      when size and digest match. The store's single-flight makes concurrent
 *      pulls of the same blob (any thread) download it once.
 *   4. Only when everything is in, the manifest (and index) are written to the
 *      store: a failed pull leaves no manifest that names missing blobs.
 *      Verified blobs stay (they are content-addressed); network failures keep
 *      their partial download for a resumed retry.
 *
 * Unpacking and recording the image are the caller's: image_commit() with
 * result.manifest_digest, or the per-layer hook below. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "image/manifest.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/store.h"

typedef struct image_pull_layer {
        char *digest;     /* blob digest */
        char *media_type;
        int64_t size;     /* blob (compressed) size */
        char *diff_id;    /* from the config */
        char *chain_id;
} image_pull_layer;

/* Called once per layer, in layer order, after all blobs are in the store
 * (e.g. to unpack with image_layer_unpack()). A negative return fails the
 * pull with the error it sets. */
typedef int (*image_pull_layer_fn)(image_store *s, size_t index, const image_pull_layer *layer,
                                   void *userdata, cc_error **ret_err);

typedef struct image_pull_opts {
        /* Registry access: config (mirrors, plain_http, insecure), auth,
         * shared token cache, cancel flag (also checked by the pull itself),
         * timeouts, retries, manifest size limit. */
        image_registry_opts registry;
        const image_platform *platform; /* NULL: the host's */
        unsigned concurrency;           /* parallel layer downloads; 0 = 3, max 32 */
        image_pull_layer_fn layer_done; /* optional per-layer post-processing */
        void *userdata;
} image_pull_opts;

typedef struct image_pull_result {
        char *repo_digest;     /* digest the reference resolved to (index or manifest) */
        char *manifest_digest; /* the platform manifest: what image_commit() takes */
        char *manifest_media_type;
        char *config_digest;   /* the image id */
        image_pull_layer *layers;
        size_t n_layers;
        int64_t size;          /* config + layer blob sizes */
        int64_t downloaded;    /* bytes this pull received over the network */
} image_pull_result;

void image_pull_result_clear(image_pull_result *r);

/* opts may be NULL. *ret is filled (and owned by the caller: clear it) only on
 * success. Errors carry the reference: "pull 'docker.io/library/x:1': ...". */
int image_pull(image_store *s, const image_ref *ref, const image_pull_opts *opts,
               image_pull_result *ret, cc_error **ret_err);
