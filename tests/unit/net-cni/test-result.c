/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net-cni/result.h"

/* Golden results as the reference plugins print them, per spec version. */
static const char *R030 =
        "{\"cniVersion\":\"0.3.0\",\"interfaces\":[{\"name\":\"cni0\",\"mac\":\"0a:58:0a:16:00:01\"},"
        "{\"name\":\"veth1\",\"mac\":\"aa:bb:cc:00:00:01\"},"
        "{\"name\":\"eth0\",\"mac\":\"0a:58:0a:16:00:05\",\"sandbox\":\"/run/netns/p1\"}],"
        "\"ips\":[{\"version\":\"4\",\"interface\":2,\"address\":\"10.22.0.5/16\",\"gateway\":\"10.22.0.1\"}],"
        "\"routes\":[{\"dst\":\"0.0.0.0/0\"}],\"dns\":{}}";
static const char *R031 =
        "{\"cniVersion\":\"0.3.1\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/run/netns/p1\"}],"
        "\"ips\":[{\"version\":\"4\",\"interface\":0,\"address\":\"10.1.0.2/24\",\"gateway\":\"10.1.0.1\"},"
        "{\"version\":\"6\",\"interface\":0,\"address\":\"fd00::2/64\",\"gateway\":\"fd00::1\"}],"
        "\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.1.0.1\"},{\"dst\":\"::/0\"}],"
        "\"dns\":{\"nameservers\":[\"10.1.0.10\"],\"domain\":\"cluster.local\",\"search\":[\"svc.cluster.local\"],"
        "\"options\":[\"ndots:5\"]}}";
static const char *R040 =
        "{\"cniVersion\":\"0.4.0\",\"interfaces\":[{\"name\":\"eth0\",\"mac\":\"02:00:00:00:00:01\","
        "\"sandbox\":\"/run/netns/x\"}],\"ips\":[{\"version\":\"4\",\"address\":\"192.168.1.9/24\"}]}";
static const char *R100 =
        "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"ccbr1\",\"mac\":\"de:ad:be:ef:00:01\"},"
        "{\"name\":\"veth9\",\"mac\":\"de:ad:be:ef:00:02\"},"
        "{\"name\":\"eth0\",\"mac\":\"de:ad:be:ef:00:03\",\"mtu\":1450,\"sandbox\":\"/run/netns/p9\"}],"
        "\"ips\":[{\"interface\":2,\"address\":\"10.222.3.4/24\",\"gateway\":\"10.222.3.1\"}],"
        "\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.222.3.1\"}],\"dns\":{\"nameservers\":[\"fd00::53\"]}}";

static cni_result *parse(const char *s)
{
        cc_error *err = NULL;
        cni_result *r = cni_result_parse(s, strlen(s), &err);
        if (!r) {
                fprintf(stderr, "parse: %s\n", err->msg);
                cc_error_free(err);
        }
        return r;
}

static void test_v030(void **state)
{
        cni_result *r = parse(R030);
        assert_non_null(r);
        assert_string_equal(r->cni_version, "0.3.0");
        assert_int_equal(r->n_interfaces, 3);
        assert_string_equal(r->interfaces[0].sandbox, "");
        assert_string_equal(r->interfaces[2].sandbox, "/run/netns/p1");
        assert_int_equal(r->n_ips, 1);
        assert_int_equal(r->ips[0].family, AF_INET);
        assert_int_equal(r->ips[0].interface, 2);
        assert_string_equal(r->ips[0].gateway, "10.22.0.1");
        assert_int_equal(r->n_routes, 1);
        assert_string_equal(r->routes[0].gw, "");
        assert_null(r->dns.nameservers[0]);
        const cni_ip *ip = cni_result_first_ip(r, AF_INET);
        assert_non_null(ip);
        assert_string_equal(ip->address, "10.22.0.5/16");
        assert_null(cni_result_first_ip(r, AF_INET6));
        cni_result_free(r);
}

static void test_v031(void **state)
{
        cni_result *r = parse(R031);
        assert_non_null(r);
        assert_int_equal(r->n_ips, 2);
        assert_int_equal(r->ips[1].family, AF_INET6);
        assert_string_equal(r->ips[1].address, "fd00::2/64");
        assert_int_equal(r->routes[1].family, AF_INET6);
        assert_string_equal(r->dns.nameservers[0], "10.1.0.10");
        assert_string_equal(r->dns.domain, "cluster.local");
        assert_string_equal(r->dns.search[0], "svc.cluster.local");
        assert_string_equal(r->dns.options[0], "ndots:5");
        cni_result_free(r);
}

static void test_v040(void **state)
{
        cni_result *r = parse(R040);
        assert_non_null(r);
        assert_int_equal(r->ips[0].interface, -1);
        assert_string_equal(r->ips[0].gateway, "");
        assert_int_equal(r->n_routes, 0);
        assert_non_null(cni_result_first_ip(r, AF_INET));
        cni_result_free(r);
}

static void test_v100(void **state)
{
        cni_result *r = parse(R100);
        assert_non_null(r);
        assert_string_equal(r->cni_version, "1.0.0");
        assert_int_equal(r->interfaces[2].mtu, 1450);
        assert_int_equal(r->ips[0].family, AF_INET);
        assert_string_equal(r->dns.nameservers[0], "fd00::53");
        assert_non_null(r->raw);
        cni_result_free(r);
}

static void test_invalid(void **state)
{
        const char *bad[] = {
                "[]",
                "{}",
                "{\"cniVersion\":\"0.2.0\",\"ip4\":{\"ip\":\"10.0.0.2/24\"}}",
                "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.300/24\"}]}",
                "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.3\"}]}",
                "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.3/33\"}]}",
                "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.3/24\",\"gateway\":\"fd00::1\"}]}",
                "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.3/24\",\"interface\":0}]}",
                "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"e\"}],\"ips\":[{\"address\":\"10.0.0.3/24\",\"interface\":-1}]}",
                "{\"cniVersion\":\"0.4.0\",\"ips\":[{\"version\":\"6\",\"address\":\"10.0.0.3/24\"}]}",
                "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"mac\":\"x\"}]}",
                "{\"cniVersion\":\"1.0.0\",\"interfaces\":{}}",
                "{\"cniVersion\":\"1.0.0\",\"routes\":[{\"dst\":\"nope\"}]}",
                "{\"cniVersion\":\"1.0.0\",\"dns\":{\"nameservers\":[\"not-an-ip\"]}}",
                "{\"cniVersion\":\"1.0.0\",\"dns\":{\"nameservers\":[1]}}",
                "{\"cniVersion\":\"1.0.0\"} trailing",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                cc_error *err = NULL;
                cni_result *r = cni_result_parse(bad[i], strlen(bad[i]), &err);
                if (r)
                        fail_msg("accepted: %s", bad[i]);
                assert_non_null(err);
                assert_true(err->code < 0);
                cc_error_free(err);
        }
}

static void test_error_reply(void **state)
{
        unsigned code = 0;
        char *msg = NULL;
        const char *e1 = "{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"invalid config\",\"details\":\"no bridge\"}";
        assert_int_equal(cni_error_reply_parse(e1, strlen(e1), &code, &msg), 0);
        assert_int_equal(code, 7);
        assert_string_equal(msg, "invalid config: no bridge");
        free(msg);
        const char *e2 = "{\"code\":11,\"msg\":\"busy\\nline\"}";
        assert_int_equal(cni_error_reply_parse(e2, strlen(e2), &code, &msg), 0);
        assert_int_equal(code, 11);
        assert_string_equal(msg, "busy?line");
        free(msg);
        assert_int_equal(cni_error_reply_parse("garbage", 7, &code, &msg), -EINVAL);
        assert_int_equal(cni_error_reply_parse("{}", 2, &code, &msg), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_v030),     cmocka_unit_test(test_v031),
                cmocka_unit_test(test_v040),     cmocka_unit_test(test_v100),
                cmocka_unit_test(test_invalid),  cmocka_unit_test(test_error_reply),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
