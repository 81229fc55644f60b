/* SPDX-License-Identifier: Apache-2.0 */
/* Content-addressed blob store.
 *
 *   <root>/blobs/sha256/<hex>           committed, verified blobs (read-only 0444)
 *   <root>/ingest/sha256-<hex>.partial  in-flight download, named by the expected
 *                                       digest so that a retry can resume it
 *   <root>/layers/...                   unpacked layers (image/unpack.h)
 *
 * Ingest: begin (expected digest + size) → write chunks → commit. Data is
 * hashed while streaming; a write past the expected size fails at once;
 * commit checks size and digest, fsyncs and renames into blobs/ atomically.
 * Any mismatch deletes the partial. Within one store, two ingests of the same
 * digest never run at once: the second begin waits for the first to finish
 * and then reports the blob present (or takes over if the first failed). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct image_store image_store;
typedef struct image_ingest image_ingest;

int image_store_open(const char *root, image_store **ret, cc_error **ret_err);
void image_store_free(image_store *s);
static inline void image_store_freep(image_store **s) { image_store_free(*s); }
#define _cleanup_image_store_ __attribute__((cleanup(image_store_freep)))

const char *image_store_root(const image_store *s);
/* O_PATH|O_DIRECTORY fd of the root, owned by the store. */
int image_store_root_fd(const image_store *s);

/* 1 present, 0 absent, < 0 error (invalid digest). */
int image_store_has(image_store *s, const char *digest);
/* Opens a committed blob read-only (O_CLOEXEC); ret_size optional. */
int image_store_open_blob(image_store *s, const char *digest, int *ret_fd, int64_t *ret_size,
                          cc_error **ret_err);
/* Reads a whole committed blob of at most max bytes and re-verifies its digest
 * (for manifests and configs). *ret_buf is NUL-terminated. */
int image_store_read_blob(image_store *s, const char *digest, size_t max, char **ret_buf,
                          size_t *ret_len, cc_error **ret_err);
/* Stores an in-memory blob (e.g. a manifest fetched by tag): digest checked. */
int image_store_write_blob(image_store *s, const char *digest, const void *buf, size_t len,
                           cc_error **ret_err);
/* Re-hashes a committed blob; on mismatch deletes it and fails with -EBADMSG. */
int image_store_verify(image_store *s, const char *digest, cc_error **ret_err);
/* Removes a committed blob (missing is fine). */
int image_store_delete(image_store *s, const char *digest, cc_error **ret_err);

/* Begins an ingest. Returns:
 *   1  the blob is already committed (possibly after waiting for a concurrent
 *      ingest of the same digest); *ret is NULL;
 *   0  *ret is a writer; image_ingest_offset() tells how many bytes of an earlier
 *      partial download are already there (resume with "Range: bytes=<offset>-",
 *      or call image_ingest_reset() if the server sends the whole body);
 *   <0 error. */
int image_store_ingest_begin(image_store *s, const char *expected_digest, int64_t expected_size,
                             image_ingest **ret, cc_error **ret_err);
int64_t image_ingest_offset(const image_ingest *w);
/* Truncates the partial to 0 bytes and restarts hashing. */
int image_ingest_reset(image_ingest *w, cc_error **ret_err);
/* Appends; more bytes than expected fails at once (and discards the partial). */
int image_ingest_write(image_ingest *w, const void *buf, size_t len, cc_error **ret_err);
/* Verifies size + digest, fsyncs, renames into place. The writer is consumed
 * (freed) whatever the outcome. */
int image_ingest_commit(image_ingest *w, cc_error **ret_err);
/* Gives up. keep_partial keeps the bytes on disk for a later resume (network
 * error); otherwise they are deleted. Frees w; wakes waiters. */
void image_ingest_abort(image_ingest *w, bool keep_partial);
static inline void image_ingest_abortp(image_ingest **w)
{
        if (*w)
                image_ingest_abort(*w, false);
}
#define _cleanup_image_ingest_ __attribute__((cleanup(image_ingest_abortp)))
