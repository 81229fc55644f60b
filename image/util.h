/* SPDX-License-Identifier: Apache-2.0 */
/* Small private helpers of the image module (digests, directories, JSON).
 * To be folded into common/fs and common/json once those land. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/error.h"

/* "sha256:" + 64 lowercase hex + NUL */
#define IMAGE_DIGEST_STRLEN 71
#define IMAGE_DIGEST_BUFSIZE 72

/* True iff s is exactly "sha256:" followed by 64 lowercase hex digits. */
bool image_digest_valid(const char *s);
/* Like image_digest_valid, but sets an error naming what is wrong;
 * `what` names the field ("layer digest"). Returns 0 or -EINVAL. */
int image_digest_check(const char *s, const char *what, cc_error **ret_err);
/* The 64-hex part of a valid digest. */
static inline const char *image_digest_hex(const char *digest) { return digest + 7; }
/* Formats a raw 32-byte SHA-256 as "sha256:<hex>" into out (72 bytes). */
void image_digest_format(const unsigned char md[32], char out[IMAGE_DIGEST_BUFSIZE]);
/* SHA-256 of a buffer, as "sha256:<hex>". Returns 0 or -EIO. */
int image_sha256_buf(const void *buf, size_t len, char out[IMAGE_DIGEST_BUFSIZE]);

/* mkdir -p relative to dirfd (AT_FDCWD allowed), mode for new directories. */
int image_mkdir_p_at(int dirfd, const char *path, unsigned mode);
/* rm -rf of name inside dirfd without ever following symlinks. Missing is ok. */
int image_rm_rf_at(int dirfd, const char *name);
/* Fills buf with `len` random lowercase hex characters + NUL (buf has len+1). */
int image_random_hex(char *buf, size_t len);
/* Writes buf to name in dirfd atomically (tmp + fsync + rename + fsync dir). */
int image_write_file_atomic_at(int dirfd, const char *name, const void *buf, size_t len,
                               unsigned mode);

/* JSON: parse a bounded buffer as exactly one JSON value (no trailing junk,
 * nesting depth bounded). */
int image_json_parse(const char *buf, size_t len, size_t max_len, json_object **ret,
                     cc_error **ret_err);
static inline void image_json_putp(json_object **o) { if (*o) json_object_put(*o); }
#define _cleanup_image_json_ __attribute__((cleanup(image_json_putp)))

/* Typed getters: the key may be absent (returns 0, *ret untouched / NULL) unless
 * `required`; present with the wrong type (or a string with embedded NUL, or
 * longer than max_len) is -EINVAL with an error naming `ctx`.`key`. */
int image_json_get_string(json_object *obj, const char *key, bool required, size_t max_len,
                          const char *ctx, char **ret, cc_error **ret_err);
int image_json_get_int64(json_object *obj, const char *key, bool required, const char *ctx,
                         int64_t *ret, cc_error **ret_err);
/* An array of strings (or null) → NULL-terminated strv; absent → *ret NULL. */
int image_json_get_strv(json_object *obj, const char *key, size_t max_items, size_t max_len,
                        const char *ctx, char ***ret, cc_error **ret_err);
/* An object whose keys are the values ({"80/tcp":{}}) → strv of keys. */
int image_json_get_keys(json_object *obj, const char *key, size_t max_items, size_t max_len,
                        const char *ctx, char ***ret, cc_error **ret_err);
/* A JSON string validated (type, no NUL, max_len) → strdup. */
int image_json_string_dup(json_object *v, size_t max_len, const char *ctx, char **ret,
                          cc_error **ret_err);
/* Returns the member or NULL; a member that is JSON null counts as absent. */
json_object *image_json_member(json_object *obj, const char *key);
