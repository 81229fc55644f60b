/* SPDX-License-Identifier: Apache-2.0 */
/* json-c helpers: bounded parsing and typed getters that say what is wrong. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

static inline void cc_json_putp(json_object **o) { if (*o) json_object_put(*o); }
#define _cleanup_json_ __attribute__((cleanup(cc_json_putp)))

/* Parses exactly len bytes (at most max_len; deeper than max_depth rejected).
 * `what` names the document in errors ("manifest", "state file"). */
json_object *cc_json_parse(const char *buf, size_t len, size_t max_len, int max_depth,
                           const char *what, cc_error **ret_err);
json_object *cc_json_parse_file(const char *path, size_t max_len, cc_error **ret_err);

/* Typed getters. A missing key → -ENOENT (unless optional: then 0 and the
 * output is untouched); a wrong type → -EINVAL naming the key. Strings are
 * borrowed from obj. */
int cc_json_get_string(json_object *obj, const char *key, bool optional, const char **ret,
                       cc_error **ret_err);
int cc_json_get_int64(json_object *obj, const char *key, bool optional, int64_t *ret,
                      cc_error **ret_err);
int cc_json_get_bool(json_object *obj, const char *key, bool optional, bool *ret,
                     cc_error **ret_err);
/* The value for key if it is of the given type, else NULL (borrowed). */
json_object *cc_json_get_typed(json_object *obj, const char *key, json_type type);
/* Writes obj as JSON atomically (see cc_write_file_atomic). */
int cc_json_write_file(const char *path, json_object *obj, unsigned mode, cc_error **ret_err);
