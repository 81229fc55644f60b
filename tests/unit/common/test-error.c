/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/error.c: set-iff-fail, codes, prefix chaining,
 * propagation and the NULL ret_err contract. */
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

#include <cmocka.h>

#include "common/error.h"

/* A typical fallible function: fails iff x < 0. */
static int checked(int x, cc_error **ret_err)
{
        if (x < 0)
                return cc_error_set(ret_err, -EINVAL, "value %d is negative", x);
        return x;
}

static void test_set_iff_fail(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(checked(5, &err), 5);
        assert_null(err);
        assert_int_equal(checked(-3, &err), -EINVAL);
        assert_non_null(err);
        assert_int_equal(err->code, -EINVAL);
        assert_int_equal(err->grpc, 0);
        assert_string_equal(err->msg, "value -3 is negative");
        cc_error_free(err);
}

static void test_set_non_negative_code_becomes_eio(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(cc_error_set(&err, 0, "zero"), -EIO);
        assert_int_equal(err->code, -EIO);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cc_error_set(&err, ENOENT, "positive"), -EIO);
        assert_int_equal(err->code, -EIO);
        assert_string_equal(err->msg, "positive");
        cc_error_free(err);
}

static void test_set_null_ret_err(void **state)
{
        /* Callers that do not want the message pass NULL: only the code. */
        assert_int_equal(cc_error_set(NULL, -ENOENT, "nobody listens %s", "here"), -ENOENT);
        assert_int_equal(cc_error_set(NULL, 7, "x"), -EIO);
        assert_int_equal(checked(-1, NULL), -EINVAL);
        errno = EACCES;
        assert_int_equal(cc_error_errno(NULL, "open"), -EACCES);
}

static void test_set_twice_keeps_newest(void **state)
{
        /* Overwriting must free the old error (valgrind checks the leak). */
        cc_error *err = NULL;
        cc_error_set(&err, -ENOENT, "first");
        cc_error_set(&err, -EEXIST, "second");
        assert_int_equal(err->code, -EEXIST);
        assert_string_equal(err->msg, "second");
        cc_error_free(err);
}

static void test_set_percent_and_long(void **state)
{
        cc_error *err = NULL;
        cc_error_set(&err, -EINVAL, "%s", "100% sure %d");
        assert_string_equal(err->msg, "100% sure %d");
        cc_error_free(err);
        err = NULL;
        char *big = malloc(10001);
        assert_non_null(big);
        memset(big, 'x', 10000);
        big[10000] = 0;
        cc_error_set(&err, -EINVAL, "<%s>", big);
        assert_int_equal(strlen(err->msg), 10002);
        assert_int_equal(err->msg[0], '<');
        assert_int_equal(err->msg[10001], '>');
        free(big);
        cc_error_free(err);
}

static int call_setv(cc_error **ret_err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = cc_error_setv(ret_err, code, fmt, ap);
        va_end(ap);
        return r;
}

static void test_setv(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(call_setv(&err, -E2BIG, "%s=%d", "n", 42), -E2BIG);
        assert_string_equal(err->msg, "n=42");
        cc_error_free(err);
}

static void test_errno(void **state)
{
        cc_error *err = NULL;
        errno = ENOENT;
        assert_int_equal(cc_error_errno(&err, "open '%s'", "/x"), -ENOENT);
        assert_int_equal(err->code, -ENOENT);
        char want[256];
        snprintf(want, sizeof(want), "open '/x': %s", strerror(ENOENT));
        assert_string_equal(err->msg, want);
        cc_error_free(err);

        /* errno 0 at call time: still a failure, -EIO. */
        err = NULL;
        errno = 0;
        assert_int_equal(cc_error_errno(&err, "weird"), -EIO);
        assert_int_equal(err->code, -EIO);
        assert_non_null(strstr(err->msg, "weird: "));
        cc_error_free(err);
}

static void test_prefix_chain(void **state)
{
        cc_error *err = NULL;
        cc_error_set(&err, -EBADMSG, "c");
        assert_int_equal(cc_error_prefix(&err, "b"), -EBADMSG);
        assert_int_equal(cc_error_prefix(&err, "%s", "a"), -EBADMSG);
        assert_string_equal(err->msg, "a: b: c");
        assert_int_equal(err->code, -EBADMSG);
        /* The prefix is formatted, the old message is not re-interpreted. */
        cc_error_free(err);
        err = NULL;
        cc_error_set(&err, -EINVAL, "%s", "50%s done");
        cc_error_prefix(&err, "pull '%s'", "busybox");
        assert_string_equal(err->msg, "pull 'busybox': 50%s done");
        cc_error_free(err);
}

static void test_prefix_keeps_grpc(void **state)
{
        cc_error *err = NULL;
        cc_error_set(&err, -EINVAL, "m");
        err->grpc = 9;
        cc_error_prefix(&err, "ctx");
        assert_int_equal(err->grpc, 9);
        assert_string_equal(err->msg, "ctx: m");
        cc_error_free(err);
}

static void test_prefix_without_error(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(cc_error_prefix(&err, "ctx"), -EIO);
        assert_null(err);
        assert_int_equal(cc_error_prefix(NULL, "ctx"), -EIO);
}

static void test_propagate(void **state)
{
        cc_error *inner = NULL, *outer = NULL;
        cc_error_set(&inner, -ENOSPC, "disk full");
        assert_int_equal(cc_error_propagate(&outer, inner), -ENOSPC);
        assert_ptr_equal(outer, inner);
        assert_string_equal(outer->msg, "disk full");

        /* Propagating onto an existing error replaces (and frees) it. */
        cc_error *newer = NULL;
        cc_error_set(&newer, -EEXIST, "newer");
        assert_int_equal(cc_error_propagate(&outer, newer), -EEXIST);
        assert_ptr_equal(outer, newer);
        cc_error_free(outer);

        /* NULL destination: src is freed (valgrind checks), code returned. */
        cc_error *lost = NULL;
        cc_error_set(&lost, -EPERM, "dropped");
        assert_int_equal(cc_error_propagate(NULL, lost), -EPERM);

        /* NULL source: nothing to move, -EIO, destination untouched. */
        outer = NULL;
        assert_int_equal(cc_error_propagate(&outer, NULL), -EIO);
        assert_null(outer);
}

static void test_free_null(void **state)
{
        cc_error_free(NULL);
        _cleanup_error_ cc_error *a = NULL;
        _cleanup_error_ cc_error *b = NULL;
        cc_error_set(&b, -EINVAL, "freed by cleanup");
        (void)a;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_set_iff_fail),
                cmocka_unit_test(test_set_non_negative_code_becomes_eio),
                cmocka_unit_test(test_set_null_ret_err),
                cmocka_unit_test(test_set_twice_keeps_newest),
                cmocka_unit_test(test_set_percent_and_long),
                cmocka_unit_test(test_setv),
                cmocka_unit_test(test_errno),
                cmocka_unit_test(test_prefix_chain),
                cmocka_unit_test(test_prefix_keeps_grpc),
                cmocka_unit_test(test_prefix_without_error),
                cmocka_unit_test(test_propagate),
                cmocka_unit_test(test_free_null),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
