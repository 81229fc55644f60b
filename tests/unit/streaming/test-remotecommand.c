/* SPDX-License-Identifier: Apache-2.0 */
/* The final status written on the error channel, byte for byte as the
 * kubelet writes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "cri-server/streaming/internal.h"
#include "cri-server/streaming/remotecommand.h"

static void check(int version, int code, const char *internal, const char *want)
{
        char *s = rc_status_message(version, code, internal);
        assert_non_null(s);
        assert_string_equal(s, want);
        free(s);
}

static void test_status_v4(void **state)
{
        check(4, 0, NULL, "{\"metadata\":{},\"status\":\"Success\"}");
        check(5, 7, NULL,
              "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated with non-zero exit code: "
              "exit status 7\",\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":[{\"reason\":\"ExitCode\","
              "\"message\":\"7\"}]}}");
        check(4, 0, "container \"x\" <gone>\n",
              "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"Internal error occurred: container \\\"x\\\" "
              "\\u003cgone\\u003e\\n\",\"reason\":\"InternalError\",\"details\":{\"causes\":[{\"message\":"
              "\"container \\\"x\\\" \\u003cgone\\u003e\\n\"}]},\"code\":500}");
}

static void test_status_pre_v4(void **state)
{
        check(1, 0, NULL, "");
        check(3, 2, NULL, "command terminated with non-zero exit code: exit status 2");
        check(2, 0, "boom", "Internal error occurred: boom");
}

static void test_versions(void **state)
{
        assert_int_equal(rc_protocol_version("v5.channel.k8s.io"), 5);
        assert_int_equal(rc_protocol_version("v4.channel.k8s.io"), 4);
        assert_int_equal(rc_protocol_version("v3.channel.k8s.io"), 3);
        assert_int_equal(rc_protocol_version("v2.channel.k8s.io"), 2);
        assert_int_equal(rc_protocol_version("channel.k8s.io"), 1);
        assert_int_equal(rc_protocol_version("v6.channel.k8s.io"), 0);
        assert_int_equal(rc_protocol_version(NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_v4),
                cmocka_unit_test(test_status_pre_v4),
                cmocka_unit_test(test_versions),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
