/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cri-server/status.c: errno → gRPC code table, explicit
 * overrides on cc_error, and code names. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cri-server/status.h"

static void test_errno_table(void **state)
{
        static const struct {
                int err;
                int code;
        } cases[] = {
                { 0, CRI_OK },
                { ECANCELED, CRI_CANCELLED },
                { EINVAL, CRI_INVALID_ARGUMENT },
                { EBADMSG, CRI_INVALID_ARGUMENT },
                { ENAMETOOLONG, CRI_INVALID_ARGUMENT },
                { EDOM, CRI_INVALID_ARGUMENT },
                { EILSEQ, CRI_INVALID_ARGUMENT },
                { EPROTO, CRI_INVALID_ARGUMENT },
                { ETIMEDOUT, CRI_DEADLINE_EXCEEDED },
                { ETIME, CRI_DEADLINE_EXCEEDED },
                { ENOENT, CRI_NOT_FOUND },
                { ESRCH, CRI_NOT_FOUND },
                { ENXIO, CRI_NOT_FOUND },
                { ENODEV, CRI_NOT_FOUND },
                { EEXIST, CRI_ALREADY_EXISTS },
                { EPERM, CRI_PERMISSION_DENIED },
                { EACCES, CRI_PERMISSION_DENIED },
                { EROFS, CRI_PERMISSION_DENIED },
                { ENOMEM, CRI_RESOURCE_EXHAUSTED },
                { ENOSPC, CRI_RESOURCE_EXHAUSTED },
                { EFBIG, CRI_RESOURCE_EXHAUSTED },
                { E2BIG, CRI_RESOURCE_EXHAUSTED },
                { EMSGSIZE, CRI_RESOURCE_EXHAUSTED },
                { EDQUOT, CRI_RESOURCE_EXHAUSTED },
                { EMFILE, CRI_RESOURCE_EXHAUSTED },
                { ENFILE, CRI_RESOURCE_EXHAUSTED },
                { EOVERFLOW, CRI_RESOURCE_EXHAUSTED },
                { EBUSY, CRI_FAILED_PRECONDITION },
                { ENOTEMPTY, CRI_FAILED_PRECONDITION },
                { ENOTDIR, CRI_FAILED_PRECONDITION },
                { EISDIR, CRI_FAILED_PRECONDITION },
                { ESTALE, CRI_FAILED_PRECONDITION },
                { ENOTCONN, CRI_FAILED_PRECONDITION },
                { EDEADLK, CRI_ABORTED },
                { ERANGE, CRI_OUT_OF_RANGE },
                { ENOSYS, CRI_UNIMPLEMENTED },
                { EOPNOTSUPP, CRI_UNIMPLEMENTED },
                { ENOTSUP, CRI_UNIMPLEMENTED },
                { EAGAIN, CRI_UNAVAILABLE },
                { EWOULDBLOCK, CRI_UNAVAILABLE },
                { ECONNREFUSED, CRI_UNAVAILABLE },
                { ECONNRESET, CRI_UNAVAILABLE },
                { ECONNABORTED, CRI_UNAVAILABLE },
                { EHOSTUNREACH, CRI_UNAVAILABLE },
                { ENETUNREACH, CRI_UNAVAILABLE },
                { ENETDOWN, CRI_UNAVAILABLE },
                { EPIPE, CRI_UNAVAILABLE },
                { ESHUTDOWN, CRI_UNAVAILABLE },
                { EKEYREJECTED, CRI_UNAUTHENTICATED },
                { EKEYEXPIRED, CRI_UNAUTHENTICATED },
                /* Everything else is a bug on our side. */
                { EIO, CRI_INTERNAL },
                { EBADF, CRI_INTERNAL },
                { EFAULT, CRI_INTERNAL },
                { EXDEV, CRI_INTERNAL },
                { 4095, CRI_INTERNAL },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int got = cri_status_from_errno(-cases[i].err);
                if (got != cases[i].code)
                        fail_msg("-%s: got %s, want %s", strerrorname_np(cases[i].err) ?: "?",
                                 cri_status_name(got), cri_status_name(cases[i].code));
        }
}

static void test_from_error(void **state)
{
        assert_int_equal(cri_status_from_error(NULL), CRI_OK);
        cc_error e = { .code = -ENOENT, .grpc = 0, .msg = "x" };
        assert_int_equal(cri_status_from_error(&e), CRI_NOT_FOUND);
        /* An explicit code wins over the errno. */
        e.grpc = CRI_FAILED_PRECONDITION;
        assert_int_equal(cri_status_from_error(&e), CRI_FAILED_PRECONDITION);
        e.grpc = CRI_UNAUTHENTICATED;
        assert_int_equal(cri_status_from_error(&e), CRI_UNAUTHENTICATED);
        e.grpc = CRI_CANCELLED;
        assert_int_equal(cri_status_from_error(&e), CRI_CANCELLED);
        /* Out-of-range overrides are ignored. */
        e.grpc = 17;
        assert_int_equal(cri_status_from_error(&e), CRI_NOT_FOUND);
        e.grpc = -3;
        assert_int_equal(cri_status_from_error(&e), CRI_NOT_FOUND);
        /* An error is never reported as OK. */
        e.grpc = 0;
        e.code = 0;
        assert_int_equal(cri_status_from_error(&e), CRI_UNKNOWN);
        e.code = -EIO;
        assert_int_equal(cri_status_from_error(&e), CRI_INTERNAL);

        /* Through the error API. */
        cc_error *err = NULL;
        cc_error_set(&err, -EEXIST, "pod exists");
        assert_int_equal(cri_status_from_error(err), CRI_ALREADY_EXISTS);
        cc_error_free(err);
}

static void test_names(void **state)
{
        static const char *const want[] = {
                "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                "UNAUTHENTICATED",
        };
        for (int i = 0; i <= CRI_UNAUTHENTICATED; i++)
                assert_string_equal(cri_status_name(i), want[i]);
        assert_string_equal(cri_status_name(CRI_NOT_FOUND), "NOT_FOUND");
        assert_string_equal(cri_status_name(-1), "UNKNOWN");
        assert_string_equal(cri_status_name(17), "UNKNOWN");
        assert_string_equal(cri_status_name(1 << 30), "UNKNOWN");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_errno_table),
                cmocka_unit_test(test_from_error),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
