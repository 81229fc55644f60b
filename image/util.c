/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "image/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/cleanup.h"

#define IMAGE_JSON_MAX_DEPTH 32

bool image_digest_valid(const char *s)
{
        if (!s || strncmp(s, "sha256:", 7) != 0)
                return false;
        const char *h = s + 7;
        size_t n = 0;
        for (; h[n]; n++) {
                char c = h[n];
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
                if (n >= 64)
                        return false;
        }
        return n == 64;
}

int image_digest_check(const char *s, const char *what, cc_error **ret_err)
{
        if (!s)
                return cc_error_set(ret_err, -EINVAL, "%s: missing digest", what);
        if (image_digest_valid(s))
                return 0;
        const char *colon = strchr(s, ':');
        if (!colon)
                return cc_error_set(ret_err, -EINVAL, "%s: invalid digest '%.80s': no algorithm",
                                    what, s);
        if ((size_t)(colon - s) != 6 || strncmp(s, "sha256", 6) != 0)
                return cc_error_set(ret_err, -EINVAL,
                                    "%s: unsupported digest algorithm in '%.80s' (only sha256)",
                                    what, s);
        return cc_error_set(ret_err, -EINVAL,
                            "%s: invalid digest '%.80s': expected 64 lowercase hex digits", what,
                            s);
}

void image_digest_format(const unsigned char md[32], char out[IMAGE_DIGEST_BUFSIZE])
{
        static const char hex[] = "0123456789abcdef";
        memcpy(out, "sha256:", 7);
        for (int i = 0; i < 32; i++) {
                out[7 + 2 * i] = hex[md[i] >> 4];
                out[8 + 2 * i] = hex[md[i] & 0xf];
        }
        out[IMAGE_DIGEST_STRLEN] = '\0';
}

int image_sha256_buf(const void *buf, size_t len, char out[IMAGE_DIGEST_BUFSIZE])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
                return -EIO;
        image_digest_format(md, out);
        return 0;
}

int image_mkdir_p_at(int dirfd, const char *path, unsigned mode)
{
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdirat(dirfd, p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdirat(dirfd, p, mode) < 0 && errno != EEXIST)
                return -errno;
        struct stat st;
        if (fstatat(dirfd, p, &st, 0) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int rm_rf_children(int fd, int depth)
{
        if (depth > 4096)
                return -ELOOP;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        _cleanup_closedir_ DIR *dd = d;
        int r = 0;
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT)
                        continue;
                if (errno != EISDIR && errno != EPERM) {
                        r = r ?: -errno;
                        continue;
                }
                int cfd = openat(dirfd(d), de->d_name,
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd < 0) {
                        r = r ?: -errno;
                        continue;
                }
                int k = rm_rf_children(cfd, depth + 1);
                if (k < 0)
                        r = r ?: k;
                if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        r = r ?: -errno;
        }
        return r;
}

int image_rm_rf_at(int dirfd, const char *name)
{
        if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR && errno != EPERM)
                return -errno;
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        int r = rm_rf_children(fd, 0);
        if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return r ?: -errno;
        return r;
}

int image_random_hex(char *buf, size_t len)
{
        static const char hex[] = "0123456789abcdef";
        unsigned char raw[64];
        if (len > sizeof(raw))
                return -EINVAL;
        size_t got = 0;
        while (got < len) {
                ssize_t n = getrandom(raw + got, len - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t)n;
        }
        for (size_t i = 0; i < len; i++)
                buf[i] = hex[raw[i] & 0xf];
        buf[len] = '\0';
        return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int image_write_file_atomic_at(int dirfd, const char *name, const void *buf, size_t len,
                               unsigned mode)
{
        char rnd[17];
        int r = image_random_hex(rnd, 16);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, ".tmp-%s", rnd) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd =
                openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        r = write_all(fd, buf, len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(dirfd, tmp, 0);
                return r;
        }
        if (dirfd != AT_FDCWD)
                (void)fsync(dirfd);
        return 0;
}

int image_json_parse(const char *buf, size_t len, size_t max_len, json_object **ret,
                     cc_error **ret_err)
{
        if (!buf || len == 0)
                return cc_error_set(ret_err, -EINVAL, "empty JSON document");
        if (len > max_len)
                return cc_error_set(ret_err, -E2BIG, "JSON document too large (%zu > %zu bytes)",
                                    len, max_len);
        if (len > INT32_MAX)
                return cc_error_set(ret_err, -E2BIG, "JSON document too large");
        if (memchr(buf, '\0', len))
                return cc_error_set(ret_err, -EINVAL, "JSON document contains a NUL byte");
        json_tokener *tok = json_tokener_new_ex(IMAGE_JSON_MAX_DEPTH);
        if (!tok)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t used = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (!o || jerr != json_tokener_success) {
                if (o)
                        json_object_put(o);
                return cc_error_set(ret_err, -EINVAL, "invalid JSON: %s",
                                    jerr == json_tokener_continue
                                            ? "unexpected end of document"
                                            : json_tokener_error_desc(jerr));
        }
        for (size_t i = used; i < len; i++) {
                char c = buf[i];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                        json_object_put(o);
                        return cc_error_set(ret_err, -EINVAL,
                                            "invalid JSON: trailing data after document");
                }
        }
        *ret = o;
        return 0;
}

json_object *image_json_member(json_object *obj, const char *key)
{
        json_object *v = NULL;
        if (!obj || !json_object_is_type(obj, json_type_object))
                return NULL;
        if (!json_object_object_get_ex(obj, key, &v))
                return NULL;
        if (json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

int image_json_string_dup(json_object *v, size_t max_len, const char *ctx, char **ret,
                          cc_error **ret_err)
{
        if (!json_object_is_type(v, json_type_string))
                return cc_error_set(ret_err, -EINVAL, "%s: expected a string", ctx);
        const char *s = json_object_get_string(v);
        size_t n = (size_t)json_object_get_string_len(v);
        if (strlen(s) != n)
                return cc_error_set(ret_err, -EINVAL, "%s: string contains a NUL byte", ctx);
        if (n > max_len)
                return cc_error_set(ret_err, -EINVAL, "%s: string too long (%zu > %zu)", ctx, n,
                                    max_len);
        char *d = strdup(s);
        if (!d)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = d;
        return 0;
}

int image_json_get_string(json_object *obj, const char *key, bool required, size_t max_len,
                          const char *ctx, char **ret, cc_error **ret_err)
{
        json_object *v = image_json_member(obj, key);
        if (!v) {
                if (required)
                        return cc_error_set(ret_err, -EINVAL, "%s: missing field '%s'", ctx, key);
                return 0;
        }
        _cleanup_free_ char *c = NULL;
        if (asprintf(&c, "%s.%s", ctx, key) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        char *s = NULL;
        int r = image_json_string_dup(v, max_len, c, &s, ret_err);
        if (r < 0)
                return r;
        free(*ret);
        *ret = s;
        return 0;
}

int image_json_get_int64(json_object *obj, const char *key, bool required, const char *ctx,
                         int64_t *ret, cc_error **ret_err)
{
        json_object *v = image_json_member(obj, key);
        if (!v) {
                if (required)
                        return cc_error_set(ret_err, -EINVAL, "%s: missing field '%s'", ctx, key);
                return 0;
        }
        if (!json_object_is_type(v, json_type_int))
                return cc_error_set(ret_err, -EINVAL, "%s.%s: expected an integer", ctx, key);
        errno = 0;
        int64_t x = json_object_get_int64(v);
        if (errno == ERANGE || x == INT64_MAX || x == INT64_MIN)
                return cc_error_set(ret_err, -ERANGE, "%s.%s: integer out of range", ctx, key);
        *ret = x;
        return 0;
}

static int strv_from_array(json_object *arr, size_t max_items, size_t max_len, const char *ctx,
                           char ***ret, cc_error **ret_err)
{
        size_t n = json_object_array_length(arr);
        if (n > max_items)
                return cc_error_set(ret_err, -E2BIG, "%s: too many items (%zu > %zu)", ctx, n,
                                    max_items);
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        _cleanup_strv_free_ char **vv = v;
        for (size_t i = 0; i < n; i++) {
                char c[256];
                snprintf(c, sizeof(c), "%s[%zu]", ctx, i);
                int r = image_json_string_dup(json_object_array_get_idx(arr, i), max_len, c,
                                              &v[i], ret_err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(vv);
        return 0;
}

int image_json_get_strv(json_object *obj, const char *key, size_t max_items, size_t max_len,
                        const char *ctx, char ***ret, cc_error **ret_err)
{
        json_object *v = image_json_member(obj, key);
        if (!v)
                return 0;
        _cleanup_free_ char *c = NULL;
        if (asprintf(&c, "%s.%s", ctx, key) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        if (!json_object_is_type(v, json_type_array))
                return cc_error_set(ret_err, -EINVAL, "%s: expected an array of strings", c);
        char **out = NULL;
        int r = strv_from_array(v, max_items, max_len, c, &out, ret_err);
        if (r < 0)
                return r;
        cc_strv_free(*ret);
        *ret = out;
        return 0;
}

int image_json_get_keys(json_object *obj, const char *key, size_t max_items, size_t max_len,
                        const char *ctx, char ***ret, cc_error **ret_err)
{
        json_object *v = image_json_member(obj, key);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "%s.%s: expected an object", ctx, key);
        size_t n = (size_t)json_object_object_length(v);
        if (n > max_items)
                return cc_error_set(ret_err, -E2BIG, "%s.%s: too many items (%zu > %zu)", ctx,
                                    key, n, max_items);
        char **out = calloc(n + 1, sizeof(char *));
        if (!out)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        _cleanup_strv_free_ char **vv = out;
        size_t i = 0;
        json_object_object_foreach(v, k, val) {
                (void)val;
                if (i >= n)
                        break;
                if (strlen(k) > max_len)
                        return cc_error_set(ret_err, -EINVAL, "%s.%s: key too long", ctx, key);
                out[i] = strdup(k);
                if (!out[i])
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                i++;
        }
        cc_strv_free(*ret);
        *ret = TAKE_PTR(vv);
        return 0;
}
