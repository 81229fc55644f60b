/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "image/util.h"

#define HEX64 "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"

static void test_digest(void **state)
{
        assert_true(image_digest_valid("sha256:" HEX64));
        assert_false(image_digest_valid("sha256:" HEX64 "0"));
        assert_false(image_digest_valid("sha256:7CC4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"));
        assert_false(image_digest_valid("sha512:" HEX64));
        assert_false(image_digest_valid(NULL));
        cc_error *e = NULL;
        assert_int_equal(image_digest_check("sha512:" HEX64, "layer", &e), -EINVAL);
        assert_non_null(strstr(e->msg, "unsupported digest algorithm"));
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_digest_check("sha256:xyz", "layer", &e), -EINVAL);
        assert_non_null(strstr(e->msg, "64 lowercase hex"));
        cc_error_free(e);

        char d[IMAGE_DIGEST_BUFSIZE];
        assert_int_equal(image_sha256_buf("", 0, d), 0);
        assert_string_equal(
                d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_fs(void **state)
{
        char tmpl[] = "/tmp/image-util-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        int dfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(image_mkdir_p_at(dfd, "a/b/c", 0755), 0);
        assert_int_equal(image_mkdir_p_at(dfd, "a/b/c", 0755), 0);
        int sub = openat(dfd, "a/b", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(image_write_file_atomic_at(sub, "file", "hello", 5, 0600), 0);
        char buf[16] = {0};
        int fd = openat(sub, "file", O_RDONLY | O_CLOEXEC);
        assert_int_equal(read(fd, buf, sizeof(buf)), 5);
        assert_string_equal(buf, "hello");
        close(fd);
        close(sub);
        /* a symlink to outside must be removed, not followed */
        assert_int_equal(mkdirat(dfd, "outside", 0755), 0);
        assert_int_equal(mknodat(dfd, "outside/keep", S_IFREG | 0600, 0), 0);
        assert_int_equal(symlinkat("../../outside", dfd, "a/b/link"), 0);
        assert_int_equal(fchmodat(dfd, "a/b/c", 0, 0), 0);
        assert_int_equal(image_rm_rf_at(dfd, "a"), 0);
        assert_int_equal(faccessat(dfd, "a", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(faccessat(dfd, "outside/keep", F_OK, 0), 0);
        assert_int_equal(image_rm_rf_at(dfd, "missing"), 0);
        close(dfd);
        assert_int_equal(image_rm_rf_at(AT_FDCWD, tmpl), 0);
}

static void test_json(void **state)
{
        json_object *o = NULL;
        cc_error *e = NULL;
        const char *doc = "{\"s\":\"x\",\"i\":5,\"a\":[\"p\",\"q\"],\"m\":{\"k1\":{},\"k2\":{}},"
                          "\"n\":null,\"bad\":1.5}";
        assert_int_equal(image_json_parse(doc, strlen(doc), 1024, &o, &e), 0);
        char *s = NULL;
        assert_int_equal(image_json_get_string(o, "s", true, 10, "doc", &s, &e), 0);
        assert_string_equal(s, "x");
        free(s);
        s = NULL;
        assert_int_equal(image_json_get_string(o, "n", false, 10, "doc", &s, &e), 0);
        assert_null(s);
        assert_int_equal(image_json_get_string(o, "i", false, 10, "doc", &s, &e), -EINVAL);
        assert_non_null(strstr(e->msg, "doc.i: expected a string"));
        cc_error_free(e);
        e = NULL;
        int64_t i = 0;
        assert_int_equal(image_json_get_int64(o, "i", true, "doc", &i, &e), 0);
        assert_int_equal(i, 5);
        assert_int_equal(image_json_get_int64(o, "bad", true, "doc", &i, &e), -EINVAL);
        cc_error_free(e);
        e = NULL;
        char **v = NULL;
        assert_int_equal(image_json_get_strv(o, "a", 10, 10, "doc", &v, &e), 0);
        assert_string_equal(v[0], "p");
        assert_string_equal(v[1], "q");
        assert_null(v[2]);
        cc_strv_free(v);
        v = NULL;
        assert_int_equal(image_json_get_strv(o, "a", 1, 10, "doc", &v, &e), -E2BIG);
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_json_get_keys(o, "m", 10, 10, "doc", &v, &e), 0);
        assert_string_equal(v[0], "k1");
        assert_string_equal(v[1], "k2");
        cc_strv_free(v);
        json_object_put(o);

        o = NULL;
        assert_int_equal(image_json_parse("{} x", 4, 1024, &o, &e), -EINVAL);
        assert_non_null(strstr(e->msg, "invalid JSON"));
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_json_parse("{\"a\":", 5, 1024, &o, &e), -EINVAL);
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_json_parse("{}", 2, 1, &o, &e), -E2BIG);
        cc_error_free(e);
        e = NULL;
        char deep[200];
        memset(deep, '[', 100);
        memset(deep + 100, ']', 100);
        assert_int_equal(image_json_parse(deep, 200, 1024, &o, &e), -EINVAL);
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_json_parse("{\"a\":\"\\u0000\"}", 14, 1024, &o, &e), 0);
        s = NULL;
        assert_int_equal(image_json_get_string(o, "a", true, 10, "doc", &s, &e), -EINVAL);
        assert_non_null(strstr(e->msg, "NUL"));
        cc_error_free(e);
        json_object_put(o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_digest),
                cmocka_unit_test(test_fs),
                cmocka_unit_test(test_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
