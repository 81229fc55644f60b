/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/id.c: id generation and validation, name rules. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/id.h"

static int cmp_ids(const void *a, const void *b) { return strcmp(a, b); }

static void test_new_valid_and_unique(void **state)
{
        enum { N = 1000 };
        char(*ids)[CC_ID_LEN + 1] = calloc(N, sizeof(*ids));
        assert_non_null(ids);
        for (int i = 0; i < N; i++) {
                cc_error *err = NULL;
                memset(ids[i], 'Z', sizeof(ids[i]));
                assert_int_equal(cc_id_new(ids[i], &err), 0);
                assert_null(err);
                assert_int_equal(strlen(ids[i]), CC_ID_LEN);
                assert_true(cc_id_is_valid(ids[i]));
                assert_true(cc_id_is_prefix(ids[i]));
        }
        qsort(ids, N, sizeof(*ids), cmp_ids);
        for (int i = 1; i < N; i++)
                assert_string_not_equal(ids[i - 1], ids[i]);
        /* Every hex digit shows up somewhere (the output is not stuck). */
        for (const char *h = "0123456789abcdef"; *h; h++) {
                bool seen = false;
                for (int i = 0; i < N && !seen; i++)
                        seen = strchr(ids[i], *h) != NULL;
                assert_true(seen);
        }
        free(ids);
}

static char *repeat(char c, size_t n)
{
        char *s = malloc(n + 1);
        assert_non_null(s);
        memset(s, c, n);
        s[n] = 0;
        return s;
}

static void test_is_valid(void **state)
{
        char *ok = repeat('a', CC_ID_LEN);
        assert_true(cc_id_is_valid(ok));
        ok[0] = '0';
        ok[63] = 'f';
        assert_true(cc_id_is_valid(ok));
        ok[10] = 'A'; /* uppercase */
        assert_false(cc_id_is_valid(ok));
        ok[10] = 'g'; /* non-hex letter */
        assert_false(cc_id_is_valid(ok));
        ok[10] = '/';
        assert_false(cc_id_is_valid(ok));
        ok[10] = ' ';
        assert_false(cc_id_is_valid(ok));
        free(ok);

        char *shortid = repeat('b', CC_ID_LEN - 1);
        assert_false(cc_id_is_valid(shortid));
        free(shortid);
        char *longid = repeat('b', CC_ID_LEN + 1);
        assert_false(cc_id_is_valid(longid));
        free(longid);
        char *huge = repeat('c', 4096);
        assert_false(cc_id_is_valid(huge));
        free(huge);

        assert_false(cc_id_is_valid(NULL));
        assert_false(cc_id_is_valid(""));
        assert_false(cc_id_is_valid("../../etc/passwd"));
}

static void test_is_prefix(void **state)
{
        assert_true(cc_id_is_prefix("a"));
        assert_true(cc_id_is_prefix("0123abcdef"));
        assert_false(cc_id_is_prefix(NULL));
        assert_false(cc_id_is_prefix(""));
        assert_false(cc_id_is_prefix("ABC"));
        assert_false(cc_id_is_prefix("abcx"));
        assert_false(cc_id_is_prefix("ab/"));
        assert_false(cc_id_is_prefix("ab."));
        char *full = repeat('e', CC_ID_LEN);
        assert_true(cc_id_is_prefix(full));
        free(full);
        char *over = repeat('e', CC_ID_LEN + 1);
        assert_false(cc_id_is_prefix(over));
        free(over);
}

static void test_name_valid(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(cc_name_validate("pod name", "nginx-7b9f_x.1", 63, &err), 0);
        assert_null(err);
        assert_int_equal(cc_name_validate("pod name", "A", 1, &err), 0);
        assert_int_equal(cc_name_validate("pod name", "...", 63, &err), 0);
        assert_int_equal(cc_name_validate("pod name", ".hidden", 63, &err), 0);
        assert_null(err);
        /* Exactly max_len is fine. */
        char *s = repeat('x', 253);
        assert_int_equal(cc_name_validate("namespace", s, 253, &err), 0);
        assert_null(err);
        free(s);
}

static void expect_invalid(const char *what, const char *s, size_t max, const char *needle1,
                           const char *needle2)
{
        cc_error *err = NULL;
        assert_int_equal(cc_name_validate(what, s, max, &err), -EINVAL);
        assert_non_null(err);
        assert_int_equal(err->code, -EINVAL);
        if (!strstr(err->msg, what) || (needle1 && !strstr(err->msg, needle1)) ||
            (needle2 && !strstr(err->msg, needle2)))
                fail_msg("message '%s' lacks '%s'/'%s'/'%s'", err->msg, what,
                         needle1 ? needle1 : "", needle2 ? needle2 : "");
        cc_error_free(err);
        /* Same verdict without an error out-parameter. */
        assert_int_equal(cc_name_validate(what, s, max, NULL), -EINVAL);
}

static void test_name_invalid(void **state)
{
        expect_invalid("pod name", "", 63, "empty", NULL);
        expect_invalid("pod name", NULL, 63, "empty", NULL);
        expect_invalid("container name", ".", 63, "'.'", NULL);
        expect_invalid("container name", "..", 63, "'..'", NULL);
        /* The offending character and its offset are named. */
        expect_invalid("pod namespace", "kube/system", 63, "0x2f", "offset 4");
        expect_invalid("pod uid", "a b", 63, "0x20", "offset 1");
        expect_invalid("pod name", "x\n", 63, "0x0a", "offset 1");
        expect_invalid("pod name", "caf\xc3\xa9", 63, "0xc3", "offset 3");
        expect_invalid("pod name", "$(reboot)", 63, "0x24", "offset 0");
        char *s = repeat('x', 64);
        expect_invalid("pod name", s, 63, "63", NULL);
        free(s);
        /* A huge hostile name is bounded in the message. */
        char *huge = repeat('y', 100000);
        huge[99999] = '!';
        cc_error *err = NULL;
        assert_int_equal(cc_name_validate("pod name", huge, 200000, &err), -EINVAL);
        assert_true(strlen(err->msg) < 512);
        assert_non_null(strstr(err->msg, "offset 99999"));
        cc_error_free(err);
        free(huge);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_new_valid_and_unique),
                cmocka_unit_test(test_is_valid),
                cmocka_unit_test(test_is_prefix),
                cmocka_unit_test(test_name_valid),
                cmocka_unit_test(test_name_invalid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
