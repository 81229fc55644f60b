/* SPDX-License-Identifier: Apache-2.0 */
/* CNI execution against fake plugins (shell scripts that log their stdin and
 * environment): chaining, runtimeConfig filtering, the result cache, DEL
 * order, error replies and timeouts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "net-cni/exec.h"

static char tmp[64];
static char bindir[128], logdir[128], cachedir[128];

static const char *RESULT =
        "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/run/netns/fake\"}],"
        "\"ips\":[{\"interface\":0,\"address\":\"10.9.0.2/24\",\"gateway\":\"10.9.0.1\"}]}";

static void write_plugin(const char *name, const char *body)
{
        char p[256];
        snprintf(p, sizeof p, "%s/%s", bindir, name);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fprintf(f, "#!/bin/sh\nd='%s'\ncat > \"$d/%s-$CNI_COMMAND.stdin\"\nenv > \"$d/%s-$CNI_COMMAND.env\"\n"
                   "echo \"%s-$CNI_COMMAND\" >> \"$d/order\"\n%s\n",
                logdir, name, name, name, body);
        fclose(f);
        assert_int_equal(chmod(p, 0755), 0);
}

static int setup(void **state)
{
        strcpy(tmp, "/tmp/test-netcni-exec-XXXXXX");
        assert_non_null(mkdtemp(tmp));
        snprintf(bindir, sizeof bindir, "%s/bin", tmp);
        snprintf(logdir, sizeof logdir, "%s/log", tmp);
        snprintf(cachedir, sizeof cachedir, "%s/cache", tmp);
        mkdir(bindir, 0755);
        mkdir(logdir, 0755);
        char body[1024];
        snprintf(body, sizeof body, "[ \"$CNI_COMMAND\" = ADD ] && echo '%s'\nexit 0", RESULT);
        write_plugin("p1", body);
        write_plugin("p2", "[ \"$CNI_COMMAND\" = ADD ] && sed -n 's/.*\"prevResult\":\\(.*\\)}$/\\1/p' "
                           "\"$d/p2-ADD.stdin\"\nexit 0");
        write_plugin("failer", "echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"boom\",\"details\":\"no bridge\"}'\n"
                               "[ \"$CNI_COMMAND\" = DEL ] && exit 0\nexit 1");
        write_plugin("hang", "[ \"$CNI_COMMAND\" = DEL ] && exit 0\nexec sleep 30");
        write_plugin("garbage", "[ \"$CNI_COMMAND\" = DEL ] && exit 0\necho 'not json'\nexit 0");
        return 0;
}

static int teardown(void **state)
{
        assert_int_equal(cc_rm_rf(tmp, NULL), 0);
        return 0;
}

static char *slurp(const char *name)
{
        char p[256];
        snprintf(p, sizeof p, "%s/%s", logdir, name);
        char *buf = NULL;
        size_t len;
        if (cc_read_file(p, 1 << 20, &buf, &len, NULL) < 0)
                return NULL;
        return buf;
}

static void reset_log(void)
{
        char p[256];
        snprintf(p, sizeof p, "%s/order", logdir);
        unlink(p);
}

static cni_netconf *net_of(const char *types_json)
{
        char buf[2048];
        snprintf(buf, sizeof buf, "{\"cniVersion\":\"1.0.0\",\"name\":\"testnet\",\"plugins\":%s}", types_json);
        cc_error *err = NULL;
        cni_netconf *n = cni_netconf_parse(buf, strlen(buf), true, "test", &err);
        assert_non_null(n);
        return n;
}

static char *bin_dirs[3];
static cni_exec_ctx ctx_of(int timeout_ms)
{
        bin_dirs[0] = "/nonexistent-bin";
        bin_dirs[1] = bindir;
        bin_dirs[2] = NULL;
        cni_exec_ctx c = { .bin_dirs = bin_dirs, .cache_dir = cachedir, .timeout_ms = timeout_ms };
        return c;
}

static const cni_pod POD = { .container_id = "abc123", .netns = "/run/netns/fake", .pod_namespace = "default",
                             .pod_name = "web", .pod_uid = "u-1" };

static void test_cni_args(void **state)
{
        char *s = NULL;
        assert_int_equal(cni_args_build(&POD, &s, NULL), 0);
        assert_string_equal(s, "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                               "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1");
        free(s);
        cni_pod p = { .container_id = "x" };
        assert_int_equal(cni_args_build(&p, &s, NULL), 0);
        assert_string_equal(s, "IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=x");
        free(s);
        p.pod_name = "a;b=c";
        cc_error *err = NULL;
        assert_int_equal(cni_args_build(&p, &s, &err), -EINVAL);
        cc_error_free(err);
}

static void test_runtime_filter(void **state)
{
        cni_netconf *n = net_of("[{\"type\":\"p1\"},{\"type\":\"p2\",\"capabilities\":{\"portMappings\":true}}]");
        cni_port_mapping pm = { .host_port = 8080, .container_port = 80 };
        const char *ips[] = { "10.9.0.9/24", NULL };
        cni_runtime_conf rt = { .port_mappings = &pm, .n_port_mappings = 1, .has_bandwidth = true,
                                .ingress_rate = 1000, .ips = ips, .mac = "02:00:00:00:00:09" };
        json_object *full = cni_runtime_conf_to_json(&rt, NULL);
        assert_int_equal(json_object_object_length(full), 4);
        json_object *f1 = cni_runtime_json_filter(full, &n->plugins[0]);
        assert_int_equal(json_object_object_length(f1), 0);
        json_object *f2 = cni_runtime_json_filter(full, &n->plugins[1]);
        assert_int_equal(json_object_object_length(f2), 1);
        assert_string_equal(json_object_to_json_string_ext(f2, JSON_C_TO_STRING_PLAIN),
                            "{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\"}]}");
        json_object *in = cni_plugin_stdin(n, 1, NULL, f2);
        json_object *v;
        assert_true(json_object_object_get_ex(in, "name", &v));
        assert_string_equal(json_object_get_string(v), "testnet");
        assert_true(json_object_object_get_ex(in, "cniVersion", &v));
        assert_true(json_object_object_get_ex(in, "runtimeConfig", &v));
        assert_false(json_object_object_get_ex(in, "prevResult", &v));
        json_object_put(in);
        json_object_put(f1);
        json_object_put(f2);
        json_object_put(full);
        cni_netconf_unref(n);
}

static void test_find_plugin(void **state)
{
        char *dirs[] = { "/nonexistent-a", bindir, NULL };
        char *p = NULL;
        cc_error *err = NULL;
        assert_int_equal(cni_find_plugin(dirs, "p1", &p, &err), 0);
        assert_non_null(strstr(p, "/bin/p1"));
        free(p);
        assert_int_equal(cni_find_plugin(dirs, "nope", &p, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "plugin 'nope' not found in /nonexistent-a:"));
        assert_non_null(strstr(err->msg, bindir));
        cc_error_free(err);
}

static void test_add_check_del(void **state)
{
        reset_log();
        cni_netconf *n = net_of("[{\"type\":\"p1\",\"x\":1},{\"type\":\"p2\",\"capabilities\":{\"portMappings\":true}}]");
        cni_exec_ctx ctx = ctx_of(5000);
        cni_port_mapping pm = { .host_port = 8080, .container_port = 80, .protocol = "udp" };
        cni_runtime_conf rt = { .port_mappings = &pm, .n_port_mappings = 1 };
        cni_result *res = NULL;
        cc_error *err = NULL;
        if (cni_add(&ctx, n, &POD, &rt, &res, &err) < 0)
                fail_msg("add: %s", err->msg);
        assert_string_equal(res->ips[0].address, "10.9.0.2/24");
        cni_result_free(res);

        _cleanup_free_ char *env = slurp("p1-ADD.env");
        assert_non_null(strstr(env, "CNI_COMMAND=ADD\n"));
        assert_non_null(strstr(env, "CNI_CONTAINERID=abc123\n"));
        assert_non_null(strstr(env, "CNI_NETNS=/run/netns/fake\n"));
        assert_non_null(strstr(env, "CNI_IFNAME=eth0\n"));
        assert_non_null(strstr(env, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                                    "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1\n"));
        assert_non_null(strstr(env, "CNI_PATH=/nonexistent-bin:"));
        _cleanup_free_ char *in1 = slurp("p1-ADD.stdin");
        assert_non_null(strstr(in1, "\"name\":\"testnet\""));
        assert_non_null(strstr(in1, "\"x\":1"));
        assert_null(strstr(in1, "runtimeConfig"));
        assert_null(strstr(in1, "prevResult"));
        _cleanup_free_ char *in2 = slurp("p2-ADD.stdin");
        assert_non_null(strstr(in2, "\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80,"
                                    "\"protocol\":\"udp\"}]}"));
        assert_non_null(strstr(in2, "\"prevResult\":{\"cniVersion\":\"1.0.0\""));

        char *cache = NULL;
        assert_int_equal(cni_cache_path(cachedir, "testnet", "abc123", "eth0", &cache, NULL), 0);
        assert_int_equal(access(cache, F_OK), 0);
        struct stat st;
        assert_int_equal(stat(cache, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        /* CHECK: every plugin in order, with the cached result. */
        if (cni_check(&ctx, n, &POD, NULL, &err) < 0)
                fail_msg("check: %s", err->msg);
        _cleanup_free_ char *chk = slurp("p2-CHECK.stdin");
        assert_non_null(strstr(chk, "\"prevResult\":{\"cniVersion\":\"1.0.0\""));
        assert_non_null(strstr(chk, "portMappings"));

        /* DEL after "a restart" with a changed config: the cached one is used. */
        cni_netconf *changed = net_of("[{\"type\":\"p1\"}]");
        reset_log();
        if (cni_del(&ctx, changed, &POD, NULL, &err) < 0)
                fail_msg("del: %s", err->msg);
        _cleanup_free_ char *order = slurp("order");
        assert_string_equal(order, "p2-DEL\np1-DEL\n");
        _cleanup_free_ char *del2 = slurp("p2-DEL.stdin");
        assert_non_null(strstr(del2, "\"prevResult\":{\"cniVersion\":\"1.0.0\""));
        assert_non_null(strstr(del2, "portMappings"));
        assert_int_equal(access(cache, F_OK), -1);

        /* DEL again: no cache, still runs (best effort), succeeds. */
        reset_log();
        assert_int_equal(cni_del(&ctx, n, &POD, NULL, &err), 0);
        _cleanup_free_ char *order2 = slurp("order");
        assert_string_equal(order2, "p2-DEL\np1-DEL\n");
        _cleanup_free_ char *del3 = slurp("p1-DEL.stdin");
        assert_null(strstr(del3, "prevResult"));
        /* CHECK without a cached result. */
        assert_int_equal(cni_check(&ctx, n, &POD, NULL, &err), -ENOENT);
        cc_error_free(err);
        free(cache);
        cni_netconf_unref(n);
        cni_netconf_unref(changed);
}

static void test_failing_plugin(void **state)
{
        reset_log();
        cni_netconf *n = net_of("[{\"type\":\"p1\"},{\"type\":\"failer\"}]");
        cni_exec_ctx ctx = ctx_of(5000);
        cni_result *res = NULL;
        cc_error *err = NULL;
        cni_pod pod = POD;
        pod.container_id = "fail1";
        assert_int_equal(cni_add(&ctx, n, &pod, NULL, &res, &err), -EIO);
        assert_non_null(strstr(err->msg, "plugin failer failed: boom: no bridge"));
        cc_error_free(err);
        _cleanup_free_ char *order = slurp("order");
        assert_string_equal(order, "p1-ADD\nfailer-ADD\nfailer-DEL\np1-DEL\n");
        char *cache = NULL;
        assert_int_equal(cni_cache_path(cachedir, "testnet", "fail1", "eth0", &cache, NULL), 0);
        assert_int_equal(access(cache, F_OK), -1);
        free(cache);
        cni_netconf_unref(n);
}

static void test_missing_and_garbage(void **state)
{
        cni_netconf *n = net_of("[{\"type\":\"p1\"},{\"type\":\"nosuchplugin\"}]");
        cni_exec_ctx ctx = ctx_of(5000);
        cni_result *res = NULL;
        cc_error *err = NULL;
        assert_int_equal(cni_add(&ctx, n, &POD, NULL, &res, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "plugin 'nosuchplugin' not found in /nonexistent-bin:"));
        cc_error_free(err);
        err = NULL;
        cni_netconf_unref(n);
        n = net_of("[{\"type\":\"garbage\"}]");
        assert_int_equal(cni_add(&ctx, n, &POD, NULL, &res, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "plugin garbage"));
        cc_error_free(err);
        cni_netconf_unref(n);
}

static void test_hanging_plugin(void **state)
{
        reset_log();
        cni_netconf *n = net_of("[{\"type\":\"hang\"}]");
        cni_exec_ctx ctx = ctx_of(300);
        cni_result *res = NULL;
        cc_error *err = NULL;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(cni_add(&ctx, n, &POD, NULL, &res, &err), -ETIMEDOUT);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_non_null(strstr(err->msg, "plugin hang (ADD) killed: no reply within 300 ms"));
        assert_true(t1.tv_sec - t0.tv_sec < 5);
        cc_error_free(err);
        _cleanup_free_ char *order = slurp("order");
        assert_string_equal(order, "hang-ADD\nhang-DEL\n");
        cni_netconf_unref(n);
}

static void test_invalid_pod(void **state)
{
        cni_netconf *n = net_of("[{\"type\":\"p1\"}]");
        cni_exec_ctx ctx = ctx_of(5000);
        cni_result *res = NULL;
        cc_error *err = NULL;
        cni_pod p = POD;
        p.container_id = "../etc";
        assert_int_equal(cni_add(&ctx, n, &p, NULL, &res, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        p = POD;
        p.ifname = "a/b";
        assert_int_equal(cni_del(&ctx, n, &p, NULL, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        p = POD;
        p.netns = "relative";
        assert_int_equal(cni_add(&ctx, n, &p, NULL, &res, &err), -EINVAL);
        cc_error_free(err);
        cni_netconf_unref(n);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cni_args),          cmocka_unit_test(test_runtime_filter),
                cmocka_unit_test(test_find_plugin),       cmocka_unit_test(test_add_check_del),
                cmocka_unit_test(test_failing_plugin),    cmocka_unit_test(test_missing_and_garbage),
                cmocka_unit_test(test_hanging_plugin),    cmocka_unit_test(test_invalid_pod),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
