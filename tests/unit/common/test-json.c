/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/json.c: bounded parsing and typed getters. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/json.h"

#define CC_MIN(a, b) ((a) < (b) ? (a) : (b))

static json_object *parse(const char *s, cc_error **err)
{
        return cc_json_parse(s, strlen(s), 1 << 20, 32, "test doc", err);
}

static void expect_parse_error(const char *s, size_t len, size_t max_len, int depth, int code,
                               const char *needle)
{
        cc_error *err = NULL;
        json_object *o = cc_json_parse(s, len, max_len, depth, "the doc", &err);
        if (o) {
                fail_msg("'%.*s' parsed as %s", (int)CC_MIN(len, 80), s,
                         json_object_to_json_string(o));
        }
        assert_non_null(err);
        assert_int_equal(err->code, code);
        assert_non_null(strstr(err->msg, "the doc"));
        if (needle && !strstr(err->msg, needle))
                fail_msg("message '%s' lacks '%s'", err->msg, needle);
        cc_error_free(err);
        /* Without an error out-parameter: still NULL, no leak. */
        assert_null(cc_json_parse(s, len, max_len, depth, "the doc", NULL));
}

static void test_parse_valid(void **state)
{
        cc_error *err = NULL;
        _cleanup_json_ json_object *o = parse(" {\"a\": [1, 2, {\"b\": null}], \"s\": \"x\"}\n\t ", &err);
        assert_non_null(o);
        assert_null(err);
        assert_true(json_object_is_type(o, json_type_object));
        assert_int_equal(json_object_array_length(json_object_object_get(o, "a")), 3);

        /* Exactly len bytes: what follows in memory is not looked at. */
        static const char buf[] = "{\"k\":true}GARBAGE";
        _cleanup_json_ json_object *o2 = cc_json_parse(buf, 10, 10, 8, "doc", &err);
        assert_non_null(o2);
        assert_null(err);
}

static void test_parse_top_level_scalars(void **state)
{
        /* RFC 8259: any value is a JSON text, including a bare number or
         * literal whose end is the end of the input. */
        static const char *const docs[] = { "\"str\"", "123", "-1.5", "true", "false", "7" };
        for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
                cc_error *err = NULL;
                json_object *o = cc_json_parse(docs[i], strlen(docs[i]), 100, 8, "doc", &err);
                if (err)
                        fail_msg("'%s' rejected: %s", docs[i], err->msg);
                assert_non_null(o);
                json_object_put(o);
        }
}

static void test_parse_too_large(void **state)
{
        static const char s[] = "{\"a\":\"0123456789\"}";
        expect_parse_error(s, strlen(s), strlen(s) - 1, 32, -EFBIG, "limit");
        cc_error *err = NULL;
        _cleanup_json_ json_object *o = cc_json_parse(s, strlen(s), strlen(s), 32, "d", &err);
        assert_non_null(o); /* exactly at the limit is fine */
}

static char *nested(int depth)
{
        char *s = malloc((size_t)depth * 2 + 2);
        assert_non_null(s);
        for (int i = 0; i < depth; i++)
                s[i] = '[';
        s[depth] = '1';
        for (int i = 0; i < depth; i++)
                s[depth + 1 + i] = ']';
        s[2 * depth + 1] = 0;
        return s;
}

static void test_parse_too_deep(void **state)
{
        char *ok = nested(10);
        cc_error *err = NULL;
        _cleanup_json_ json_object *o = cc_json_parse(ok, strlen(ok), 1 << 20, 32, "d", &err);
        assert_non_null(o);
        free(ok);
        char *deep = nested(100);
        expect_parse_error(deep, strlen(deep), 1 << 20, 32, -EINVAL, "deep");
        free(deep);
        /* A hostile document far deeper than any stack would like. */
        char *hostile = nested(100000);
        expect_parse_error(hostile, strlen(hostile), 1 << 20, 64, -EINVAL, NULL);
        free(hostile);
        /* max_depth <= 0 means a default bound, not unbounded. */
        deep = nested(1000);
        expect_parse_error(deep, strlen(deep), 1 << 20, 0, -EINVAL, NULL);
        free(deep);
}

static void test_parse_trailing_and_invalid(void **state)
{
        expect_parse_error("{} x", 4, 100, 8, -EINVAL, NULL);
        expect_parse_error("{}{}", 4, 100, 8, -EINVAL, NULL);
        expect_parse_error("[1] [2]", 7, 100, 8, -EINVAL, NULL);
        /* An embedded NUL is not the end of the document. */
        expect_parse_error("{\"a\":1}\0{\"b\":2}", 15, 100, 8, -EINVAL, NULL);
        expect_parse_error("", 0, 100, 8, -EINVAL, NULL);
        expect_parse_error("   ", 3, 100, 8, -EINVAL, NULL);
        expect_parse_error("{", 1, 100, 8, -EINVAL, NULL);
        expect_parse_error("{\"a\":}", 6, 100, 8, -EINVAL, NULL);
        expect_parse_error("[1,]", 4, 100, 8, -EINVAL, NULL);
        expect_parse_error("{\"a\" 1}", 7, 100, 8, -EINVAL, NULL);
        expect_parse_error("\"unterminated", 13, 100, 8, -EINVAL, NULL);
        expect_parse_error("nul", 3, 100, 8, -EINVAL, NULL);
        expect_parse_error("\xff\xfe", 2, 100, 8, -EINVAL, NULL);
}

static void test_get_string(void **state)
{
        _cleanup_json_ json_object *o =
                parse("{\"s\":\"v\",\"n\":1,\"z\":null,\"e\":\"\"}", NULL);
        assert_non_null(o);
        cc_error *err = NULL;
        const char *s = "untouched";
        assert_int_equal(cc_json_get_string(o, "s", false, &s, &err), 0);
        assert_string_equal(s, "v");
        assert_int_equal(cc_json_get_string(o, "e", false, &s, &err), 0);
        assert_string_equal(s, "");
        assert_null(err);

        /* Missing: -ENOENT naming the key; optional: 0, output untouched. */
        s = "untouched";
        assert_int_equal(cc_json_get_string(o, "missing", false, &s, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "'missing'"));
        cc_error_free(err);
        err = NULL;
        assert_string_equal(s, "untouched");
        assert_int_equal(cc_json_get_string(o, "missing", true, &s, &err), 0);
        assert_null(err);
        assert_string_equal(s, "untouched");
        /* null counts as missing. */
        assert_int_equal(cc_json_get_string(o, "z", true, &s, &err), 0);
        assert_string_equal(s, "untouched");
        assert_int_equal(cc_json_get_string(o, "z", false, &s, &err), -ENOENT);
        cc_error_free(err);
        err = NULL;
        /* Wrong type: -EINVAL naming the key, even when optional. */
        assert_int_equal(cc_json_get_string(o, "n", false, &s, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "'n'"));
        assert_non_null(strstr(err->msg, "string"));
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cc_json_get_string(o, "n", true, &s, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        assert_string_equal(s, "untouched");

        /* Not an object: every key is missing. */
        _cleanup_json_ json_object *arr = parse("[1]", NULL);
        assert_int_equal(cc_json_get_string(arr, "s", false, &s, &err), -ENOENT);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cc_json_get_string(NULL, "s", true, &s, NULL), 0);
        assert_int_equal(cc_json_get_string(NULL, "s", false, &s, NULL), -ENOENT);
}

static void test_get_int64(void **state)
{
        _cleanup_json_ json_object *o = parse(
                "{\"i\":42,\"neg\":-7,\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                "\"d\":1.5,\"s\":\"5\",\"b\":true}",
                NULL);
        assert_non_null(o);
        cc_error *err = NULL;
        int64_t x = 99;
        assert_int_equal(cc_json_get_int64(o, "i", false, &x, &err), 0);
        assert_int_equal(x, 42);
        assert_int_equal(cc_json_get_int64(o, "neg", false, &x, &err), 0);
        assert_int_equal(x, -7);
        assert_int_equal(cc_json_get_int64(o, "max", false, &x, &err), 0);
        assert_true(x == INT64_MAX);
        assert_int_equal(cc_json_get_int64(o, "min", false, &x, &err), 0);
        assert_true(x == INT64_MIN);
        assert_null(err);
        x = 99;
        static const char *const wrong[] = { "d", "s", "b" };
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(cc_json_get_int64(o, wrong[i], false, &x, &err), -EINVAL);
                assert_non_null(strstr(err->msg, wrong[i]));
                assert_non_null(strstr(err->msg, "integer"));
                cc_error_free(err);
                err = NULL;
        }
        assert_int_equal(x, 99);
        assert_int_equal(cc_json_get_int64(o, "none", true, &x, &err), 0);
        assert_int_equal(x, 99);
        assert_int_equal(cc_json_get_int64(o, "none", false, &x, &err), -ENOENT);
        cc_error_free(err);
}

static void test_get_int64_out_of_range(void **state)
{
        /* Values beyond int64 must not be silently clamped to INT64_MAX (a
         * hostile size or count would pass as "huge but valid"). */
        static const char *const docs[] = {
                "{\"v\":9223372036854775808}",
                "{\"v\":18446744073709551615}",
                "{\"v\":99999999999999999999999}",
        };
        for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
                _cleanup_json_ json_object *o = parse(docs[i], NULL);
                if (!o)
                        continue; /* rejecting at parse time is fine too */
                cc_error *err = NULL;
                int64_t x = 99;
                int r = cc_json_get_int64(o, "v", false, &x, &err);
                if (r != -ERANGE)
                        fail_msg("%s: got r=%d x=%lld, want -ERANGE", docs[i], r, (long long)x);
                assert_int_equal(x, 99);
                assert_non_null(strstr(err->msg, "'v'"));
                cc_error_free(err);
        }
}

static void test_get_bool(void **state)
{
        _cleanup_json_ json_object *o = parse("{\"t\":true,\"f\":false,\"i\":1,\"s\":\"true\"}", NULL);
        cc_error *err = NULL;
        bool b = false;
        assert_int_equal(cc_json_get_bool(o, "t", false, &b, &err), 0);
        assert_true(b);
        assert_int_equal(cc_json_get_bool(o, "f", false, &b, &err), 0);
        assert_false(b);
        b = true;
        assert_int_equal(cc_json_get_bool(o, "i", false, &b, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "'i'"));
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cc_json_get_bool(o, "s", true, &b, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        assert_true(b);
        assert_int_equal(cc_json_get_bool(o, "x", true, &b, &err), 0);
        assert_null(err);
        assert_true(b);
        assert_int_equal(cc_json_get_bool(o, "x", false, &b, NULL), -ENOENT);
}

static void test_get_typed(void **state)
{
        _cleanup_json_ json_object *o = parse("{\"a\":[1],\"o\":{},\"n\":null,\"i\":3}", NULL);
        assert_non_null(cc_json_get_typed(o, "a", json_type_array));
        assert_null(cc_json_get_typed(o, "a", json_type_object));
        assert_non_null(cc_json_get_typed(o, "o", json_type_object));
        assert_non_null(cc_json_get_typed(o, "i", json_type_int));
        assert_null(cc_json_get_typed(o, "i", json_type_double));
        assert_null(cc_json_get_typed(o, "missing", json_type_array));
        assert_null(cc_json_get_typed(NULL, "a", json_type_array));
        json_object *arr = cc_json_get_typed(o, "a", json_type_array);
        assert_null(cc_json_get_typed(arr, "a", json_type_array));
}

static void test_file_roundtrip(void **state)
{
        char dir[] = "/tmp/test-json-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[128], bad[128], missing[128];
        snprintf(path, sizeof(path), "%s/state.json", dir);
        snprintf(bad, sizeof(bad), "%s/bad.json", dir);
        snprintf(missing, sizeof(missing), "%s/missing.json", dir);

        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string("abc\"\n\\"));
        json_object_object_add(o, "pid", json_object_new_int64(1234567890123LL));
        cc_error *err = NULL;
        assert_int_equal(cc_json_write_file(path, o, 0600, &err), 0);
        assert_null(err);
        json_object_put(o);

        _cleanup_json_ json_object *back = cc_json_parse_file(path, 4096, &err);
        assert_non_null(back);
        const char *id = NULL;
        int64_t pid = 0;
        assert_int_equal(cc_json_get_string(back, "id", false, &id, &err), 0);
        assert_string_equal(id, "abc\"\n\\");
        assert_int_equal(cc_json_get_int64(back, "pid", false, &pid, &err), 0);
        assert_true(pid == 1234567890123LL);

        /* File larger than the limit. */
        assert_null(cc_json_parse_file(path, 10, &err));
        assert_int_equal(err->code, -EFBIG);
        cc_error_free(err);
        err = NULL;
        /* Missing file. */
        assert_null(cc_json_parse_file(missing, 4096, &err));
        assert_int_equal(err->code, -ENOENT);
        cc_error_free(err);
        err = NULL;
        /* Invalid content: the message names the file. */
        FILE *f = fopen(bad, "w");
        assert_non_null(f);
        fputs("{\"a\":", f);
        fclose(f);
        assert_null(cc_json_parse_file(bad, 4096, &err));
        assert_int_equal(err->code, -EINVAL);
        assert_non_null(strstr(err->msg, bad));
        cc_error_free(err);

        unlink(path);
        unlink(bad);
        assert_int_equal(rmdir(dir), 0); /* nothing else left behind */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_valid),
                cmocka_unit_test(test_parse_top_level_scalars),
                cmocka_unit_test(test_parse_too_large),
                cmocka_unit_test(test_parse_too_deep),
                cmocka_unit_test(test_parse_trailing_and_invalid),
                cmocka_unit_test(test_get_string),
                cmocka_unit_test(test_get_int64),
                cmocka_unit_test(test_get_int64_out_of_range),
                cmocka_unit_test(test_get_bool),
                cmocka_unit_test(test_get_typed),
                cmocka_unit_test(test_file_roundtrip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
