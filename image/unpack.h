/* SPDX-License-Identifier: Apache-2.0 */
/* Layer unpacking into overlayfs lower directories.
 *
 *   <root>/layers/sha256/<chainid-hex>/diff/      the layer's files (an overlay lowerdir)
 *   <root>/layers/sha256/<chainid-hex>/diff_id    "sha256:<hex>" of the uncompressed tar
 *   <root>/layers/sha256/<chainid-hex>/blob       digest of the blob it came from
 *   <root>/layers/tmp/<random>/                   work in progress, renamed into place
 *                                                  only when complete and verified
 *
 * The blob is streamed from the store through libarchive (gzip / zstd /
 * uncompressed, chosen by magic bytes; the media type must be a layer type),
 * the uncompressed stream is hashed on the way (diff id) and must match the
 * config's diff_id. OCI whiteouts become overlayfs whiteouts (0/0 char
 * devices) and opaque markers set trusted.overlay.opaque=y. Every path is
 * resolved component by component with O_NOFOLLOW below the layer root:
 * absolute paths, "..", paths through symlinks, hardlinks leaving the layer
 * and size bombs fail the whole layer, and nothing of it is left behind.
 * Must run as root (owners, device nodes, trusted.* xattrs). */
#pragma once

#include <stdint.h>

#include "common/error.h"
#include "image/store.h"
#include "image/util.h"

typedef struct image_unpack_opts {
        uint64_t max_bytes;   /* uncompressed stream limit; 0 = 64 GiB */
        uint64_t max_entries; /* 0 = 1,000,000 */
} image_unpack_opts;

/* Unpacks the layer stream read from blob_fd into the (empty) directory
 * dest_dirfd; *ret_diff_id receives the sha256 of the uncompressed stream.
 * On failure the directory's content is undefined: remove it. */
int image_unpack_fd(int blob_fd, const char *media_type, int dest_dirfd,
                    const image_unpack_opts *opts, char ret_diff_id[IMAGE_DIGEST_BUFSIZE],
                    cc_error **ret_err);

/* Unpacks committed blob `blob_digest` as the layer with `chain_id`, checking
 * `diff_id`. Returns 1 if the layer already existed, 0 if unpacked now. */
int image_layer_unpack(image_store *s, const char *blob_digest, const char *media_type,
                       const char *diff_id, const char *chain_id, const image_unpack_opts *opts,
                       cc_error **ret_err);
/* 1 present, 0 absent, < 0 error. */
int image_layer_has(image_store *s, const char *chain_id);
/* Absolute path of the layer's diff/ directory (malloc'd), NULL on bad input. */
char *image_layer_path(image_store *s, const char *chain_id);
int image_layer_delete(image_store *s, const char *chain_id, cc_error **ret_err);
/* Removes leftovers of interrupted unpacks (everything under layers/tmp). Call at startup. */
int image_layer_cleanup_tmp(image_store *s, cc_error **ret_err);
