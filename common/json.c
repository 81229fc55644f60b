/* SPDX-License-Identifier: Apache-2.0 */
#include "common/json.h"

#include <errno.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"

json_object *cc_json_parse(const char *buf, size_t len, size_t max_len, int max_depth,
                           const char *what, cc_error **ret_err)
{
        if (len > max_len) {
                cc_error_set(ret_err, -EFBIG, "%s: %zu bytes exceeds the limit of %zu", what, len, max_len);
                return NULL;
        }
        if (len > INT32_MAX) {
                cc_error_set(ret_err, -EFBIG, "%s: too large", what);
                return NULL;
        }
        json_tokener *tok = json_tokener_new_ex(max_depth > 0 ? max_depth : 32);
        if (!tok) {
                cc_error_set(ret_err, -ENOMEM, "%s: out of memory", what);
                return NULL;
        }
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        json_object *obj = json_tokener_parse_ex(tok, buf, (int)len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t used = json_tokener_get_parse_end(tok);
        if (!obj && jerr == json_tokener_continue && used == len) {
                /* A top-level number or literal needs a terminator to end. */
                obj = json_tokener_parse_ex(tok, "", 1);
                jerr = json_tokener_get_error(tok);
                used = len;
        }
        json_tokener_free(tok);
        if (!obj || jerr != json_tokener_success) {
                if (obj)
                        json_object_put(obj);
                cc_error_set(ret_err, -EINVAL, "%s: invalid JSON: %s", what,
                             jerr == json_tokener_continue ? "unexpected end of input"
                                                           : json_tokener_error_desc(jerr));
                return NULL;
        }
        for (size_t i = used; i < len; i++) {
                if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t') {
                        json_object_put(obj);
                        cc_error_set(ret_err, -EINVAL, "%s: invalid JSON: trailing data at offset %zu",
                                     what, i);
                        return NULL;
                }
        }
        return obj;
}

json_object *cc_json_parse_file(const char *path, size_t max_len, cc_error **ret_err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        if (cc_read_file(path, max_len, &buf, &len, ret_err) < 0)
                return NULL;
        return cc_json_parse(buf, len, max_len, 64, path, ret_err);
}

static json_object *lookup(json_object *obj, const char *key, bool optional, int *r,
                           cc_error **ret_err)
{
        json_object *v = NULL;
        if (!obj || !json_object_is_type(obj, json_type_object) ||
            !json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
                *r = optional ? 0 : cc_error_set(ret_err, -ENOENT, "missing field '%s'", key);
                return NULL;
        }
        *r = 1;
        return v;
}

int cc_json_get_string(json_object *obj, const char *key, bool optional, const char **ret,
                       cc_error **ret_err)
{
        int r;
        json_object *v = lookup(obj, key, optional, &r, ret_err);
        if (!v)
                return r;
        if (!json_object_is_type(v, json_type_string))
                return cc_error_set(ret_err, -EINVAL, "field '%s' must be a string", key);
        *ret = json_object_get_string(v);
        return 0;
}

int cc_json_get_int64(json_object *obj, const char *key, bool optional, int64_t *ret,
                      cc_error **ret_err)
{
        int r;
        json_object *v = lookup(obj, key, optional, &r, ret_err);
        if (!v)
                return r;
        if (!json_object_is_type(v, json_type_int))
                return cc_error_set(ret_err, -EINVAL, "field '%s' must be an integer", key);
        errno = 0;
        int64_t x = json_object_get_int64(v);
        /* json-c clamps values past INT64_MAX without setting errno. */
        if (errno == EINVAL || errno == ERANGE ||
            (x == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX))
                return cc_error_set(ret_err, -ERANGE, "field '%s' is out of range", key);
        *ret = x;
        return 0;
}

int cc_json_get_bool(json_object *obj, const char *key, bool optional, bool *ret,
                     cc_error **ret_err)
{
        int r;
        json_object *v = lookup(obj, key, optional, &r, ret_err);
        if (!v)
                return r;
        if (!json_object_is_type(v, json_type_boolean))
                return cc_error_set(ret_err, -EINVAL, "field '%s' must be a boolean", key);
        *ret = json_object_get_boolean(v);
        return 0;
}

json_object *cc_json_get_typed(json_object *obj, const char *key, json_type type)
{
        json_object *v = NULL;
        if (!obj || !json_object_is_type(obj, json_type_object) ||
            !json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, type))
                return NULL;
        return v;
}

int cc_json_write_file(const char *path, json_object *obj, unsigned mode, cc_error **ret_err)
{
        size_t len = 0;
        const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &len);
        if (!s)
                return cc_error_set(ret_err, -ENOMEM, "serialise '%s': out of memory", path);
        return cc_write_file_atomic(path, s, len, mode, ret_err);
}
